/* SPDX-License-Identifier: MIT */
/*
 * Starting: the pieces and their order.  Each piece is a library that
 * neither logs nor knows about the others:
 *   signals -> harden -> backing store -> store -> control socket
 *   -> front ends (FUSE, NBD) -> pidfile
 * Front ends come last so that the device is only reachable once
 * everything behind it exists; teardown.c undoes them in reverse.
 *
 * The rules this file's code obeys: every failure is reported once,
 * through startup_failed(), which logs it and sends the same line to the
 * background parent to print (daemonize.c); a function that fails leaves
 * what it built in *d for teardown() and returns -1, and nothing here
 * frees.  A front end's start returns only once it serves.
 *
 * NBD.  The listeners exist and listen before the parent is told the
 * daemon is ready, so a client can connect on the script's next line.
 * Under a service manager the NBD front end may take its listening
 * sockets from it (socket activation, see listen.c): a passed Unix socket
 * whose path is the --nbd-unix path, or a TCP one on the --nbd-tcp
 * address, is used instead of binding that address; any other passed
 * socket is served as well.
 *
 * Groups (uzramd(8), SECURITY).  Each Unix socket has its own: the
 * control socket --control-group (--group, its older name), whose members
 * may only watch, and --admin-group, whose members may change settings
 * too (the control server tells them apart by SO_PEERCRED and
 * SO_PEERGROUPS, doc/control.md, "Who may do what"); --nbd-group the NBD
 * socket, whose members may read and write the disk.  One group for both
 * sockets gave whoever was meant to watch the whole device's data as
 * well.  A socket passed by the service manager keeps the mode and group
 * it was given there, and its clients are checked against --nbd-group
 * all the same.
 *
 * The evict path.  With --backing, the backing store is opened once the
 * size is known and before the store, which writes cold pages to it.
 */
#include "uzramd.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backing.h"
#include "cleanup.h"
#include "codec.h"
#include "control.h"
#include "fuse-export.h"
#include "nbd-export.h"
#include "socket.h"
#include "store.h"
#include "util.h"

/*
 * Report a startup failure: logged, and sent to the waiting parent as the
 * one line it prints.  Returns -1 for the caller to pass up.
 */
__attribute__((format(printf, 1, 2)))
static int startup_failed(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_err("%s", msg);
    daemonize_failed(msg);
    return -1;
}

/*
 * Make the missing directories above a path given to --fuse, --nbd-unix
 * or --backing, as control_new() does for --control: 0755 where others may
 * have to reach what is in them (a root daemon's, or one with a group for
 * that socket, gid), else 0700, and 0700 always for the backing file
 * (private_data), which holds the device's data.  They are left at exit,
 * as /run/uzram is.
 */
static int make_parent(const char *option, const char *path, bool private_data, gid_t gid)
{
    bool shared = !private_data && (geteuid() == 0 || gid != (gid_t)-1);
    int r = make_parent_dirs(path, shared ? 0755 : 0700);

    if (r < 0)
        return startup_failed("%s %s: cannot make its directory: %s", option, path,
                              strerror(-r));
    return 0;
}

/* Open --backing, for at most the device's size. */
static int start_backing(struct daemon *d)
{
    char err[256] = "";

    if (!d->opt.backing)
        return 0;
    /* A file's directory; not an NBD URI's, nor anything under /dev,
     * where a missing path is the user's mistake to hear about. */
    if (d->opt.backing[0] == '/' && strncmp(d->opt.backing, "/dev/", 5) != 0 &&
        make_parent("--backing", d->opt.backing, true, (gid_t)-1) < 0)
        return -1;
    d->backing = backing_open(d->opt.backing, d->opt.size, d->opt.backing_timeout * 1000u,
                              d->opt.backing_force ? BACKING_FORCE : 0, err, sizeof(err));
    if (!d->backing)
        return startup_failed("--backing %s: %s", d->opt.backing, err[0] ? err : strerror(errno));
    d->bd_connected = true;
    /*
     * With a reserve, writing back must not need memory either: direct
     * I/O, no page cache (uzramd(8), EVICTION).  Where it cannot be had the
     * device works all the same, but say what that costs.
     */
    if (d->opt.reserve) {
        int r = backing_use_direct(d->backing);
        if (r == -ENOTSUP)
            log_warn("--backing %s: an NBD server: libnbd allocates for each request, so "
                     "under memory pressure writing back and reading pages back may wait "
                     "for memory", d->opt.backing);
        else if (r < 0)
            log_warn("--backing %s: no direct I/O there (%s): pages written back go "
                     "through the page cache, which under memory pressure may wait for "
                     "memory", d->opt.backing, strerror(-r));
    }
    return 0;
}

static int start_store(struct daemon *d)
{
    struct store_config cfg = {
        .size = d->opt.size,
        .codec = d->opt.codec,
        .level = d->opt.level,
        .mem_limit = d->opt.mem_limit,
        .compact_threshold_pct = d->opt.compact_threshold_pct,
        /* One codec context per FUSE worker, made before serving. */
        .prealloc_threads = d->opt.threads,
        .backing = d->backing,
        .backing_raw = d->opt.backing_raw,
        .high_wm_pct = d->opt.high_wm_pct,
        .low_wm_pct = d->opt.low_wm_pct,
        .evict_policy = (enum store_evict_policy)d->opt.evict_policy,
        .recomp_codec = d->opt.recomp_codec,
        .recomp_level = d->opt.recomp_level,
        .cold_codec = d->opt.cold_codec,
        .cold_level = d->opt.cold_level,
        .cold_after = d->opt.cold_after,
        .cold_thread_init = harden_cold_thread,
        .reserve = d->opt.reserve,
        .reserve_thread_init = d->opt.fuse_file ? harden_refill_thread
                                                : harden_refill_thread_rt,
        .low_free = d->low_free,
    };

    codec_level_range(d->opt.codec, NULL, NULL, &d->level);
    if (d->opt.level != 0)
        d->level = d->opt.level;
    d->store = store_new(&cfg);
    if (!d->store)
        return startup_failed("cannot create the store: %s", strerror(errno));
    watch_limit(d, "");
    return 0;
}

/*
 * Match the passed sockets with the addresses asked for: a Unix socket by
 * its path, a TCP one by its port and numeric address (a host name is not
 * resolved: give the address the socket unit listens on).
 */
static void match_passed(struct daemon *d)
{
    const struct options *o = &d->opt;

    for (int i = 0; i < d->npassed; i++) {
        const struct listen_socket *ls = &d->passed[i];
        if (ls->family == AF_UNIX && o->nbd_unix && strcmp(ls->path, o->nbd_unix) == 0)
            d->passed_unix = true;
        if (ls->family != AF_UNIX && o->nbd_tcp_host && ls->port == o->nbd_tcp_port &&
            strcmp(ls->host, o->nbd_tcp_host) == 0)
            d->passed_tcp = true;
    }
}

static bool want_nbd(const struct daemon *d)
{
    return d->opt.nbd_unix || d->opt.nbd_tcp_host || d->npassed > 0;
}

int startup_sockets(struct daemon *d)
{
    int r = listen_fds_take(&d->passed);

    if (r > 0) {
        d->npassed = r;
        if (!d->opt.foreground) {
            log_err("socket activation (LISTEN_FDS) needs --foreground");
            r = -EINVAL;
        }
    }
    if (r < 0)
        return r;
    match_passed(d);
    /* A daemon that serves nothing only holds memory: a mistake, said now. */
    if (!d->opt.fuse_file && !want_nbd(d)) {
        log_err("nothing to serve: give --fuse FILE, --nbd-unix SOCKET or --nbd-tcp "
                "[HOST]:PORT (see uzramd --help)");
        return -EINVAL;
    }
    return 0;
}

/* The NBD addresses as one string, or NULL without NBD. */
static char *nbd_address(const struct daemon *d)
{
    const struct options *o = &d->opt;
    const char *sep = "";
    char *s = NULL;
    size_t len = 0;
    FILE *f;

    if (!want_nbd(d))
        return NULL;
    f = open_memstream(&s, &len);
    if (!f)
        return NULL;
    if (o->nbd_unix && !d->passed_unix) {
        fprintf(f, "unix:%s", o->nbd_unix);
        sep = ",";
    }
    if (o->nbd_tcp_host && !d->passed_tcp) {
        bool v6 = strchr(o->nbd_tcp_host, ':');
        fprintf(f, "%stcp:%s%s%s:%u", sep, v6 ? "[" : "", o->nbd_tcp_host, v6 ? "]" : "",
                o->nbd_tcp_port);
        sep = ",";
    }
    for (int i = 0; i < d->npassed; i++) {
        fprintf(f, "%s%s", sep, d->passed[i].address);
        sep = ",";
    }
    if (fclose(f) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

/* "a regular file", "a directory"... for a message. */
static const char *file_kind(mode_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG:
        return "a regular file";
    case S_IFDIR:
        return "a directory";
    case S_IFLNK:
        return "a symbolic link";
    case S_IFIFO:
        return "a FIFO";
    case S_IFCHR:
    case S_IFBLK:
        return "a device";
    default:
        return "something else";
    }
}

/*
 * A Unix socket that could not be made at path (err: -errno): say why.  A
 * directory unix_listen() refused gets its reason: that is for the user to
 * fix, not a failure of ours.  What is already at path is named.
 */
static int listen_failed(const char *path, int err, const char *busy_hint)
{
    char why[PATH_MAX + 64];
    struct stat st;

    if (err == -EADDRINUSE && lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
        return startup_failed("%s: not a socket but %s; only a socket a dead server left "
                              "is replaced",
                              path, file_kind(st.st_mode));
    if (err == -EADDRINUSE)
        return startup_failed("%s: a server is already listening there (%s)", path, busy_hint);
    if (err == -EPERM && unix_dir_check(path, why, sizeof(why)) == -EPERM)
        return startup_failed("%s: refused: %s (someone else could replace the socket)", path,
                              why);
    return startup_failed("%s: cannot listen: %s", path, strerror(-err));
}

static int start_control(struct daemon *d)
{
    d->nbd_address = nbd_address(d);
    const struct control_info info = {
        .name = d->opt.name,
        .algorithm = codec_name(d->opt.codec),
        .level = d->level,
        .fuse_file = d->opt.fuse_file,
        .nbd = d->nbd_address,
        .backing = d->backing ? backing_spec(d->backing) : NULL,
        .log = log_where(),
        .memory_locked = d->hardening.memory_locked,
        .io_flusher = d->hardening.io_flusher,
        .oom_protected = d->hardening.oom_protected,
        .stop = request_stop,
        .stop_arg = d,
        .nbd_stats = daemon_nbd_stats,
    };

    d->control = control_new(d->opt.control_path, d->store, &info, d->opt.gid,
                             d->opt.admin_gid);
    if (!d->control) {
        return listen_failed(d->opt.control_path, -errno,
                             "another uzramd? choose another --name or --control");
    }
    int r = control_start(d->control);
    if (r < 0)
        return startup_failed("cannot start the control server: %s", strerror(-r));
    return 0;
}

/*
 * The FUSE file could not be mounted for EACCES or EPERM: when /dev/fuse
 * is what this user may not open, say so and show its mode and owner.
 */
static int fuse_denied(const char *path, int err)
{
    struct stat st;

    if (access("/dev/fuse", R_OK | W_OK) < 0 && errno == EACCES && stat("/dev/fuse", &st) == 0)
        return startup_failed("%s: cannot open /dev/fuse (mode %04o, uid %u, gid %u): this "
                              "user needs read and write access to it (most systems make it "
                              "0666), or run uzramd as root",
                              path, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
                              (unsigned)st.st_gid);
    return startup_failed("%s: cannot mount: %s", path, strerror(err));
}

/* Each front end: set up, start, and return only once it serves. */
static int start_fuse(struct daemon *d)
{
    const struct fuse_export_options o = {
        .name = d->opt.name,
        .threads = d->opt.threads,
        /*
         * As root, let other users open the file too, as they could a
         * block device: the file's mode (0600, root's) still decides.
         */
        .allow_other = geteuid() == 0,
        .transport = d->opt.fuse_transport,
    };
    struct fuse_export_conn conn;
    char why[160];
    int r;

    if (o.transport == FUSE_EXPORT_URING && !fuse_export_uring_available(why, sizeof(why)))
        return startup_failed("--fuse-transport=uring: %s", why);

    /* Only root's FUSE file is open to others (allow_other), whatever the
     * groups: no group has anything to reach there. */
    if (make_parent("--fuse", d->opt.fuse_file, false, (gid_t)-1) < 0)
        return -1;
    d->fuse = fuse_export_new(d->store, d->opt.fuse_file, &o);
    if (!d->fuse) {
        if (errno == EINVAL)
            return startup_failed("%s: not a regular file", d->opt.fuse_file);
        if (errno == ELOOP)
            return startup_failed("%s: a symbolic link: give the file itself",
                                  d->opt.fuse_file);
        if (errno == EBUSY)
            return startup_failed("%s: already served by FUSE (another uzramd?)",
                                  d->opt.fuse_file);
        if (errno == ENOTCONN)
            return startup_failed(
                "%s: a dead FUSE mount is there (losetup -j %s shows a "
                "loop device on it: losetup -d that first; then umount -l %s)",
                d->opt.fuse_file, d->opt.fuse_file, d->opt.fuse_file);
        if (errno == EACCES || errno == EPERM)
            return fuse_denied(d->opt.fuse_file, errno);
        return startup_failed("%s: cannot mount: %s", d->opt.fuse_file, strerror(errno));
    }
    r = fuse_export_start(d->fuse);
    fuse_export_get_conn(d->fuse, &conn);
    if (r == -EOPNOTSUPP)
        return startup_failed("--fuse-transport=uring: %s", conn.note);
    if (r < 0)
        return startup_failed("%s: FUSE did not start: %s", d->opt.fuse_file, strerror(-r));

    if (d->control)
        control_set_fuse(d->control, conn.uring ? "uring" : "dev", conn.uring_bytes);
    if (conn.uring)
        log_info(
            "FUSE %u.%u on %s over io_uring: %u queues, %llu KiB of buffers, max_write %u",
            conn.proto_major, conn.proto_minor, d->opt.fuse_file, conn.uring_queues,
            (unsigned long long)(conn.uring_bytes >> 10), conn.max_write);
    else
        log_info("FUSE %u.%u on %s over /dev/fuse: max_write %u, max_background %u, "
                 "async direct I/O %s%s%s",
                 conn.proto_major, conn.proto_minor, d->opt.fuse_file, conn.max_write,
                 conn.max_background, conn.async_dio ? "on" : "off",
                 conn.note[0] ? "; not io_uring: " : "", conn.note);
    return 0;
}

/*
 * --tls-psk or --tls-certificates, read once, here, before any client;
 * with --tls=off on TCP, the warning, at every start (uzramd(8), SECURITY).
 */
static int start_tls(struct daemon *d)
{
    const char *file = NULL;
    bool tcp = d->opt.nbd_tcp_host;

    for (int i = 0; i < d->npassed; i++)
        tcp |= d->passed[i].family != AF_UNIX;
    if (d->opt.tls == NBD_TLS_OFF) {
        if (tcp && d->opt.tls_given)
            log_warn("--tls=off: NBD over TCP without authentication: any local user, and "
                     "anyone who can reach the port, can read and write the device");
        else if (tcp)
            return startup_failed("NBD on a TCP socket from the service manager: give "
                                  "--tls=require with --tls-psk or --tls-certificates, or "
                                  "--tls=off");
        return 0;
    }
    const char *opt = d->opt.tls_psk ? "--tls-psk" : "--tls-certificates";
    const char *path = d->opt.tls_psk ? d->opt.tls_psk : d->opt.tls_certificates;
    int r = nbd_tls_creds_load(d->opt.tls_psk, d->opt.tls_certificates, &d->tls_creds, &file);
    if (r == -EINVAL && d->opt.tls_psk)
        return startup_failed("%s %s: not a PSK file (lines of USERNAME:HEXKEY, as psktool "
                              "writes)",
                              opt, path);
    if (r == -EINVAL)
        return startup_failed("%s %s: %s: not a PEM certificate or key, or the key is not "
                              "the certificate's",
                              opt, path, file ? file : "?");
    if (r < 0 && d->opt.tls_psk)
        return startup_failed("%s %s: %s", opt, path, strerror(-r));
    if (r < 0)
        return startup_failed("%s %s: %s: %s", opt, path, file ? file : "?", strerror(-r));
    return 0;
}

static int start_nbd(struct daemon *d)
{
    if (start_tls(d) < 0)
        return -1;
    const struct nbd_export_options o = {
        .description = d->opt.name,
        .read_only = d->opt.read_only,
        .max_connections = d->opt.max_connections,
        .handshake_timeout = d->opt.handshake_timeout,
        .send_timeout = d->opt.send_timeout,
        /* Not unasked on Unix sockets: the kernel's client serving swap is there. */
        .send_timeout_unix = d->opt.send_timeout_given ? d->opt.send_timeout : 0,
        .idle_timeout = d->opt.idle_timeout,
        .threads = d->opt.threads,
        .sender_init = harden_reply_thread,
        .tls = d->opt.tls,
        .tls_creds = d->tls_creds,
    };
    int r;

    d->nbd = nbd_export_new(d->store, &o);
    if (!d->nbd)
        return startup_failed("cannot create the NBD server: %s", strerror(errno));
    for (int i = 0; i < d->npassed; i++) {
        /* A passed Unix socket's clients are checked against --nbd-group too. */
        r = nbd_export_listen_fd(d->nbd, d->passed[i].fd, d->opt.nbd_gid);
        if (r < 0)
            return startup_failed("socket activation: %s: %s", d->passed[i].address,
                                  strerror(-r));
        d->passed[i].fd = -1;
    }
    if (d->opt.nbd_unix && !d->passed_unix) {
        if (make_parent("--nbd-unix", d->opt.nbd_unix, false, d->opt.nbd_gid) < 0)
            return -1;
        /* --nbd-group's, not --group's: watching is not reading the disk. */
        r = nbd_export_listen_unix(d->nbd, d->opt.nbd_unix, d->opt.nbd_gid);
        if (r < 0)
            return listen_failed(d->opt.nbd_unix, r, "another NBD server");
    }
    if (d->opt.nbd_tcp_host && !d->passed_tcp) {
        r = nbd_export_listen_tcp(d->nbd, d->opt.nbd_tcp_host, d->opt.nbd_tcp_port);
        if (r == -ENOENT)
            return startup_failed("--nbd-tcp: unknown host '%s'", d->opt.nbd_tcp_host);
        if (r < 0)
            return startup_failed("--nbd-tcp %s port %u: cannot listen: %s",
                                  d->opt.nbd_tcp_host, d->opt.nbd_tcp_port, strerror(-r));
    }
    r = nbd_export_start(d->nbd);
    if (r < 0)
        return startup_failed("cannot start the NBD server: %s", strerror(-r));
    const char *tls = d->opt.tls == NBD_TLS_REQUIRE ? "required"
                      : d->opt.tls == NBD_TLS_ON    ? "offered"
                                                    : "off";
    log_info(
        "NBD on %s%s%s, at most %u clients per socket, handshakes within %u s, TLS %s%s%s",
        d->nbd_address ? d->nbd_address : "?",
        d->npassed ? " (sockets from the service manager)" : "",
        d->opt.read_only ? ", read-only" : "", d->opt.max_connections,
        d->opt.handshake_timeout, tls, d->tls_creds ? " with " : "",
        d->tls_creds ? nbd_tls_creds_kind(d->tls_creds) : "");
    return 0;
}

static int start_frontends(struct daemon *d)
{
    if (d->opt.fuse_file && start_fuse(d) < 0)
        return -1;
    if (want_nbd(d) && start_nbd(d) < 0)
        return -1;
    return 0;
}

int startup(struct daemon *d)
{
    pid_t other;
    int r;

    r = signals_open(d);
    if (r < 0)
        return startup_failed("cannot set up signals: %s", strerror(-r));
    if (d->opt.pidfile && pidfile_check(d->opt.pidfile, &other) < 0)
        return startup_failed("%s: process %ld is running (another uzramd?)",
                              d->opt.pidfile, (long)other);
    harden(&d->hardening);
    d->low_free = harden_low_free();
    watch_memory_open(d);
    if (start_backing(d) < 0 || start_store(d) < 0 || start_control(d) < 0 ||
        start_frontends(d) < 0)
        return -1;
    if (d->opt.pidfile) {
        r = pidfile_write(d->opt.pidfile);
        if (r < 0)
            return startup_failed("%s: cannot write the pidfile: %s", d->opt.pidfile,
                                  strerror(-r));
        d->pidfile_fd = r;
    }
    return 0;
}
