/* SPDX-License-Identifier: MIT */
/*
 * uzramd: serve one compressed RAM block device.
 *
 * The daemon owns the pieces and their order; each piece is a library that
 * neither logs nor knows about the others:
 *   options -> (fork) -> signals -> harden -> backing store -> store
 *   -> control socket -> front ends (FUSE, NBD) -> pidfile -> ready
 * and shutdown undoes them in reverse.  Front ends come last so that the
 * device is only reachable once everything behind it exists, and go first
 * so that no request arrives at a store being freed.
 *
 * Signals.  SIGTERM, SIGINT and SIGHUP are blocked before any thread
 * exists (threads inherit the mask), and the main thread takes them from a
 * signalfd in its poll loop, beside each front end's "done" descriptor: no
 * handler runs at an arbitrary point, and no worker thread is ever
 * interrupted.  SIGPIPE is ignored: a control client that hangs up must
 * cost an EPIPE, not the daemon.
 *
 * NBD.  The listeners exist and listen before the parent is told the
 * daemon is ready, so a client can connect on the script's next line.  On
 * a stop, NBD goes first: its clients are disconnected (requests being
 * served are answered first), then FUSE is detached and waited for.
 *
 * systemd.  Under a service manager (uzramd@.service, Type=notify) the
 * daemon runs in the foreground and says READY=1 where the background
 * fork tells its parent, STOPPING=1 when it begins to stop, and keeps a
 * STATUS= line: the device, then its figures every few seconds.  The NBD
 * front end may take its listening sockets from the manager (socket
 * activation, see listen.c): a passed Unix socket whose path is the
 * --nbd-unix path, or a TCP one on the --nbd-tcp address, is used instead
 * of binding that address; any other passed socket is served as well.
 *
 * The evict path.  With --backing, the backing store is opened once the
 * size is known and before the store, which writes cold pages to it; it is
 * closed after the store is freed.  Its faults are the store's to absorb
 * (a page that cannot go back stays in memory) and the daemon's to report:
 * the libraries only count them, so the main loop looks at the counts
 * every STATUS_INTERVAL_MS and logs one line per burst of errors, one when
 * an NBD server becomes unreachable and one when it is back.  Comparing
 * counts once a period, rather than logging each error, is what keeps a
 * dead server from flooding the log with one line per page.  That loop
 * runs in the background as in the foreground, with or without systemd.
 *
 * Reload.  SIGHUP parses the same command line again, which re-reads the
 * --config file, and applies what can change while serving: the memory
 * limit, the compaction threshold and the eviction watermarks.  Anything else that changed is named
 * in a warning and waits for a restart (the size, the codec, the front
 * ends: changing those would mean a new device).  A file that no longer
 * parses changes nothing.
 *
 * Stopping.  SIGTERM or SIGINT detaches the FUSE mount and waits for its
 * users to let go (a loop device must be detached first, a swap area
 * swapped off); a second one aborts the connection, which those users see
 * as I/O errors.  The file being unmounted by someone else also stops the
 * daemon.  Exit status: 0 after a stop, 1 if startup failed, 2 for bad
 * arguments.
 */
#define FUSE_USE_VERSION 314

#include "uzramd.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_log.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "backing.h"
#include "codec.h"
#include "control.h"
#include "fuse-export.h"
#include "nbd-export.h"
#include "store.h"
#include "util.h"

/* How long a stop waits before saying that the FUSE file is still in use. */
#define STOP_NOTICE_MS 2000
/*
 * How often the STATUS= line's figures are renewed: often enough for
 * `systemctl status` to be current, rarely enough to cost nothing.
 */
#define STATUS_INTERVAL_MS 5000
/*
 * The last resort against a machine out of memory whose swap waits on us
 * (see watch_memory()): how long NBD replies must have been stuck, with the
 * reserve all given back, before the kernel's OOM killer is asked to act,
 * how often it may be asked, and how often the daemon looks.
 */
#define OOM_STALL_MS 3000
#define OOM_AGAIN_MS 10000
#define MEMORY_CHECK_MS 1000
#define PSI_FULL_US 200000
#define PSI_WINDOW_US 1000000

struct daemon {
    int argc;                   /* the command line, parsed again by a reload */
    char **argv;
    struct options opt;
    int level;                  /* the codec level in effect */
    int sigfd;
    struct store *store;
    struct control *control;
    struct fuse_export *fuse;   /* NULL without --fuse */
    struct nbd_export *nbd;     /* NULL without --nbd-unix or --nbd-tcp */
    char *nbd_address;          /* what uzramctl shows: "unix:PATH,tcp:HOST:PORT" */
    bool pidfile_written;
    struct listen_socket *passed;   /* socket activation: the manager's sockets */
    int npassed;                /* how many; those the NBD export took have fd -1 */
    bool passed_unix;           /* one of them is the --nbd-unix path */
    bool passed_tcp;            /* one of them is the --nbd-tcp address */
    struct backing *backing;    /* NULL without --backing */
    struct hardening hardening; /* what harden() was granted */
    /* What the last look at the backing store's counts saw (watch_backing()). */
    uint64_t bd_read_errors, bd_write_errors;
    bool bd_connected;
    /* What the last look at the reserve saw (watch_reserve()). */
    uint64_t reserve_misses, reserve_released;
    /* /proc/sysrq-trigger, opened at start (root only); -1: no OOM rescue. */
    int sysrq_fd;
    /* A PSI trigger on /proc/pressure/memory (full stalls), or -1. */
    int psi_fd;
    uint64_t psi_full_usec;     /* when it last fired */
    uint64_t oom_asked_usec;    /* when watch_memory() last asked */
};

static uint64_t monotonic_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

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

/* libfuse's messages go where ours go; its debug chatter is dropped. */
static void fuse_log_forward(enum fuse_log_level level, const char *fmt, va_list ap)
{
    int priority;

    if (level <= FUSE_LOG_ERR)
        priority = LOG_ERR;
    else if (level == FUSE_LOG_WARNING)
        priority = LOG_WARNING;
    else if (level <= FUSE_LOG_INFO)
        priority = LOG_INFO;
    else
        return;
    log_msgv(priority, fmt, ap);
}

static int setup_signals(struct daemon *d)
{
    sigset_t set;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -errno;
    d->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return d->sigfd < 0 ? -errno : 0;
}

/* The next pending signal, 0 if none. */
static int take_signal(struct daemon *d)
{
    struct signalfd_siginfo si;

    if (read(d->sigfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return 0;
    return (int)si.ssi_signo;
}

/* Open --backing, for at most the device's size. */
static int start_backing(struct daemon *d)
{
    char err[256] = "";

    if (!d->opt.backing)
        return 0;
    d->backing = backing_open(d->opt.backing, d->opt.size, err, sizeof(err));
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
        .reserve = d->opt.reserve,
        .reserve_thread_init = harden_refill_thread,
        .low_free = harden_low_free(),
    };

    codec_level_range(d->opt.codec, NULL, NULL, &d->level);
    if (d->opt.level != 0)
        d->level = d->opt.level;
    d->store = store_new(&cfg);
    if (!d->store)
        return startup_failed("cannot create the store: %s", strerror(errno));
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
        .memory_locked = d->hardening.memory_locked,
        .io_flusher = d->hardening.io_flusher,
        .oom_protected = d->hardening.oom_protected,
    };

    d->control = control_new(d->opt.control_path, d->store, &info, d->opt.gid);
    if (!d->control) {
        if (errno == EADDRINUSE)
            return startup_failed("%s: a daemon is already listening there "
                                  "(choose another --name or --control)", d->opt.control_path);
        return startup_failed("%s: cannot listen: %s", d->opt.control_path, strerror(errno));
    }
    int r = control_start(d->control);
    if (r < 0)
        return startup_failed("cannot start the control server: %s", strerror(-r));
    return 0;
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
    };
    struct fuse_export_conn conn;
    int r;

    d->fuse = fuse_export_new(d->store, d->opt.fuse_file, &o);
    if (!d->fuse) {
        if (errno == EINVAL)
            return startup_failed("%s: not a regular file", d->opt.fuse_file);
        if (errno == EBUSY)
            return startup_failed("%s: already served by FUSE (another uzramd?)",
                                  d->opt.fuse_file);
        if (errno == ENOTCONN)
            return startup_failed("%s: a dead FUSE mount is there (fusermount3 -u %s)",
                                  d->opt.fuse_file, d->opt.fuse_file);
        return startup_failed("%s: cannot mount: %s", d->opt.fuse_file, strerror(errno));
    }
    r = fuse_export_start(d->fuse);
    if (r < 0)
        return startup_failed("%s: FUSE did not start: %s", d->opt.fuse_file, strerror(-r));

    fuse_export_get_conn(d->fuse, &conn);
    log_info("FUSE %u.%u on %s: max_write %u, max_background %u, async direct I/O %s",
             conn.proto_major, conn.proto_minor, d->opt.fuse_file, conn.max_write,
             conn.max_background, conn.async_dio ? "on" : "off");
    return 0;
}

static int start_nbd(struct daemon *d)
{
    const struct nbd_export_options o = {
        .description = d->opt.name,
        .read_only = d->opt.read_only,
        .max_connections = d->opt.max_connections,
        .threads = d->opt.threads,
        .sender_init = harden_reply_thread,
    };
    int r;

    d->nbd = nbd_export_new(d->store, &o);
    if (!d->nbd)
        return startup_failed("cannot create the NBD server: %s", strerror(errno));
    for (int i = 0; i < d->npassed; i++) {
        r = nbd_export_listen_fd(d->nbd, d->passed[i].fd);
        if (r < 0)
            return startup_failed("socket activation: %s: %s", d->passed[i].address,
                                  strerror(-r));
        d->passed[i].fd = -1;
    }
    if (d->opt.nbd_unix && !d->passed_unix) {
        r = nbd_export_listen_unix(d->nbd, d->opt.nbd_unix, d->opt.gid);
        if (r == -EADDRINUSE)
            return startup_failed("%s: in use (a live NBD server, or not a socket)",
                                  d->opt.nbd_unix);
        if (r < 0)
            return startup_failed("%s: cannot listen: %s", d->opt.nbd_unix, strerror(-r));
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
    log_info("NBD on %s%s%s, at most %u clients", d->nbd_address ? d->nbd_address : "?",
             d->npassed ? " (sockets from the service manager)" : "",
             d->opt.read_only ? ", read-only" : "", d->opt.max_connections);
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

static void stop_nbd(struct daemon *d)
{
    struct nbd_export_stats st;

    nbd_export_get_stats(d->nbd, &st);
    nbd_export_free(d->nbd);
    d->nbd = NULL;
    log_info("NBD stopped: %llu connections, %llu refused (--max-connections), "
             "%llu dropped for breaking the protocol", (unsigned long long)st.connections,
             (unsigned long long)st.refused, (unsigned long long)st.dropped);
}

/* A PSI trigger on full memory stalls (see watch_memory()), or -1. */
static int psi_trigger(void)
{
    char spec[64];
    int fd = open("/proc/pressure/memory", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int n = snprintf(spec, sizeof(spec), "full %d %d", PSI_FULL_US, PSI_WINDOW_US);
    if (write(fd, spec, (size_t)n + 1) != n + 1) {
        close(fd);
        return -1;
    }
    return fd;
}

static int startup(struct daemon *d)
{
    pid_t other;
    int r;

    r = setup_signals(d);
    if (r < 0)
        return startup_failed("cannot set up signals: %s", strerror(-r));
    if (d->opt.pidfile && pidfile_check(d->opt.pidfile, &other) < 0)
        return startup_failed("%s: process %ld is running (another uzramd?)",
                              d->opt.pidfile, (long)other);
    harden(&d->hardening);
    /* For watch_memory(); root only, and only worth it with a reserve. */
    if (d->opt.reserve && geteuid() == 0) {
        d->sysrq_fd = open("/proc/sysrq-trigger", O_WRONLY | O_CLOEXEC);
        d->psi_fd = psi_trigger();
        if (d->psi_fd < 0 && d->sysrq_fd >= 0) {
            close(d->sysrq_fd);     /* no way to tell a stall: no rescue */
            d->sysrq_fd = -1;
        }
    }
    if (start_backing(d) < 0 || start_store(d) < 0 || start_control(d) < 0 ||
        start_frontends(d) < 0)
        return -1;
    if (d->opt.pidfile) {
        r = pidfile_write(d->opt.pidfile);
        if (r < 0)
            return startup_failed("%s: cannot write the pidfile: %s", d->opt.pidfile,
                                  strerror(-r));
        d->pidfile_written = true;
    }
    return 0;
}

/*
 * The STATUS= line: what the device is, then what it holds.  For
 * `systemctl status`; uzramctl has the full figures.
 */
static void notify_status(struct daemon *d)
{
    struct store_stats st;
    char size[16], data[16], compr[16], mem[16], wb[48] = "";

    if (!notify_enabled())
        return;
    store_get_stats(d->store, &st);
    format_size(d->opt.size, size, sizeof(size));
    format_size(st.orig_data_size, data, sizeof(data));
    format_size(st.compr_data_size, compr, sizeof(compr));
    format_size(st.mem_used_total, mem, sizeof(mem));
    if (d->backing) {
        char b[16];
        format_size(st.bd_count * STORE_PAGE_SIZE, b, sizeof(b));
        snprintf(wb, sizeof(wb), ", written back %s%s", b, st.bd_connected ? "" : " (unreachable)");
    }
    notifyf("STATUS=%s: %s %s%s%s%s%s; data %s, compressed %s, memory %s%s", d->opt.name, size,
            codec_name(d->opt.codec), d->opt.fuse_file ? ", fuse " : "",
            d->opt.fuse_file ? d->opt.fuse_file : "", d->nbd_address ? ", nbd " : "",
            d->nbd_address ? d->nbd_address : "", data, compr, mem, wb);
}

static const char *errno_text(int neg)
{
    return neg ? strerror(-neg) : "unknown error";
}

/*
 * Once a period: one line if the backing store failed since the last look,
 * one when it went away, one when it came back (see the essay above).
 */
static void watch_backing(struct daemon *d)
{
    struct store_stats st;

    if (!d->backing)
        return;
    store_get_stats(d->store, &st);
    if (st.bd_connected != d->bd_connected) {
        if (st.bd_connected)
            log_info("backing store %s: reachable again", d->opt.backing);
        else
            log_err("backing store %s: unreachable (%s); pages stay in memory, reads of "
                    "pages written back fail until it returns", d->opt.backing,
                    errno_text(st.bd_last_error));
        d->bd_connected = st.bd_connected;
    }
    if (st.bd_write_errors > d->bd_write_errors || st.bd_read_errors > d->bd_read_errors)
        log_err("backing store %s: %llu write errors, %llu read errors in the last %d s "
                "(last: %s)", d->opt.backing,
                (unsigned long long)(st.bd_write_errors - d->bd_write_errors),
                (unsigned long long)(st.bd_read_errors - d->bd_read_errors),
                STATUS_INTERVAL_MS / 1000, errno_text(st.bd_last_error));
    d->bd_write_errors = st.bd_write_errors;
    d->bd_read_errors = st.bd_read_errors;
}

/*
 * Say when memory was short enough for the reserve to run dry (writes
 * failed, as zram's fail) or to be given back to the kernel, once per look
 * (STATUS_INTERVAL_MS), with the counts since the last.
 */
static void watch_reserve(struct daemon *d)
{
    struct store_stats st;

    store_get_stats(d->store, &st);
    if (st.reserve_misses > d->reserve_misses || st.reserve_released > d->reserve_released)
        log_warn("memory short: %llu writes failed for want of reserve, %llu KiB of it given "
                 "back to the kernel, in the last %d s (see uzramd(8), SWAP)",
                 (unsigned long long)(st.reserve_misses - d->reserve_misses),
                 (unsigned long long)(st.reserve_released - d->reserve_released) / 1024,
                 STATUS_INTERVAL_MS / 1000);
    d->reserve_misses = st.reserve_misses;
    d->reserve_released = st.reserve_released;
}

/*
 * The last resort (uzramd(8), SWAP).  When swap on our NBD export waits
 * for replies that the kernel cannot find memory to send, the reserve
 * given back is the only memory the daemon can add; if that is gone and
 * the replies are still stuck OOM_STALL_MS later, while the kernel says
 * the machine is stalling on memory (a PSI trigger: every runnable task
 * waiting for memory PSI_FULL_US in PSI_WINDOW_US), nothing will move
 * until something is killed, and the kernel will not decide it alone (the
 * allocations waiting may not do I/O, and for those it never calls the OOM
 * killer).  Ask it to, as SysRq-F does: it kills the process with the
 * highest OOM score, never this one (oom_score_adj -1000).  At most once
 * per OOM_AGAIN_MS; logged.
 */
static void watch_memory(struct daemon *d)
{
    struct nbd_export_stats ns;
    struct store_stats st;

    if (d->sysrq_fd < 0 || !d->nbd)
        return;
    nbd_export_get_stats(d->nbd, &ns);
    if (ns.send_stall_ms < OOM_STALL_MS)
        return;
    uint64_t now = monotonic_usec();
    if (!d->psi_full_usec || now - d->psi_full_usec > 2 * PSI_WINDOW_US)
        return;
    store_get_stats(d->store, &st);
    if (st.reserve_free != 0)
        return;
    if (d->oom_asked_usec && now - d->oom_asked_usec < OOM_AGAIN_MS * 1000u)
        return;
    d->oom_asked_usec = now;
    if (write(d->sysrq_fd, "f", 1) == 1)
        log_err("memory exhausted: NBD replies stuck for %llu ms with the reserve given back; "
                "asked the kernel's OOM killer to act (see uzramd(8), SWAP)",
                (unsigned long long)ns.send_stall_ms);
}

static bool str_differ(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

/* Name each setting in n that differs from the running one and needs a restart. */
static void warn_restart(const struct options *o, const struct options *n)
{
    const struct {
        const char *key;
        bool changed;
    } keys[] = {
        { "name", strcmp(o->name, n->name) != 0 },
        { "size", o->size != n->size },
        { "algorithm", o->codec != n->codec },
        { "level", o->level != n->level },
        { "fuse", str_differ(o->fuse_file, n->fuse_file) },
        { "nbd-unix", str_differ(o->nbd_unix, n->nbd_unix) },
        { "nbd-tcp", str_differ(o->nbd_tcp_host, n->nbd_tcp_host) ||
                     o->nbd_tcp_port != n->nbd_tcp_port },
        { "read-only", o->read_only != n->read_only },
        { "max-connections", o->max_connections != n->max_connections },
        { "threads", o->threads != n->threads },
        { "group", o->gid != n->gid },
        { "control", str_differ(o->control_path, n->control_path) },
        { "backing", str_differ(o->backing, n->backing) },
        { "backing-format", o->backing_raw != n->backing_raw },
        { "evict-policy", o->evict_policy != n->evict_policy },
        { "recompress-algorithm", o->recomp_codec != n->recomp_codec },
        { "recompress-level", o->recomp_level != n->recomp_level },
    };

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (keys[i].changed)
            log_warn("reload: %s changed: it takes effect when the device is restarted",
                     keys[i].key);
}

/* SIGHUP: re-read the configuration and apply what can change now. */
static void reload(struct daemon *d)
{
    struct options n;
    char from[16], to[16];
    int r;

    notifyf("RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)monotonic_usec());
    if (!d->opt.config_file) {
        log_info("SIGHUP: no --config file to re-read; nothing changed");
        goto done;
    }
    r = options_parse(d->argc, d->argv, &n);
    if (r != 0) {
        log_err("reload: %s: the running settings stay", d->opt.config_file);
        options_free(&n);
        goto done;
    }
    bool changed = false;
    if (n.mem_limit != d->opt.mem_limit) {
        r = store_set_mem_limit(d->store, n.mem_limit);
        format_size(d->opt.mem_limit, from, sizeof(from));
        format_size(n.mem_limit, to, sizeof(to));
        if (r < 0) {
            log_err("reload: mem-limit %s: %s", to, strerror(-r));
        } else {
            log_info("reload: mem-limit %s -> %s", d->opt.mem_limit ? from : "none",
                     n.mem_limit ? to : "none");
            d->opt.mem_limit = n.mem_limit;
            changed = true;
        }
    }
    if (n.compact_threshold_pct != d->opt.compact_threshold_pct) {
        r = store_set_compact_threshold(d->store, n.compact_threshold_pct);
        if (r < 0) {
            log_err("reload: compact-threshold %u: %s", n.compact_threshold_pct, strerror(-r));
        } else {
            log_info("reload: compact-threshold %u%% -> %u%%", d->opt.compact_threshold_pct,
                     n.compact_threshold_pct);
            d->opt.compact_threshold_pct = n.compact_threshold_pct;
            changed = true;
        }
    }
    if (n.high_wm_pct != d->opt.high_wm_pct || n.low_wm_pct != d->opt.low_wm_pct) {
        r = store_set_watermarks(d->store, n.high_wm_pct, n.low_wm_pct);
        if (r < 0) {
            log_err("reload: watermarks %u%%/%u%%: %s", n.high_wm_pct, n.low_wm_pct,
                    strerror(-r));
        } else {
            log_info("reload: watermarks %u%%/%u%% -> %u%%/%u%%", d->opt.high_wm_pct,
                     d->opt.low_wm_pct, n.high_wm_pct, n.low_wm_pct);
            d->opt.high_wm_pct = n.high_wm_pct;
            d->opt.low_wm_pct = n.low_wm_pct;
            changed = true;
        }
    }
    warn_restart(&d->opt, &n);
    if (!changed)
        log_info("reload: %s: nothing to change now", d->opt.config_file);
    options_free(&n);
done:
    notify("READY=1");
    notify_status(d);
}

/*
 * Serve until a stop signal, or until a front end ends by itself.  Every
 * STATUS_INTERVAL_MS, signals or not: the STATUS= line, the backing
 * store's health and the reserve's.  Without any of them there is nothing
 * to wake up for.
 */
static void serve(struct daemon *d)
{
    bool periodic = notify_enabled() || d->backing || d->opt.reserve;
    uint64_t next = monotonic_usec() + STATUS_INTERVAL_MS * 1000u;
    uint64_t next_memory = monotonic_usec() + MEMORY_CHECK_MS * 1000u;

    for (;;) {
        struct pollfd fds[3] = { { .fd = d->sigfd, .events = POLLIN } };
        nfds_t n = 1, psi = 0;
        int timeout = -1;

        if (periodic) {
            uint64_t now = monotonic_usec();
            if (now >= next) {
                notify_status(d);
                watch_backing(d);
                watch_reserve(d);
                next = now + STATUS_INTERVAL_MS * 1000u;
            }
            if (d->sysrq_fd >= 0 && now >= next_memory) {
                watch_memory(d);
                next_memory = now + MEMORY_CHECK_MS * 1000u;
            }
            uint64_t wake = d->sysrq_fd >= 0 && next_memory < next ? next_memory : next;
            timeout = (int)((wake - now + 999) / 1000);
        }
        nfds_t fuse = 0;
        if (d->fuse) {
            fuse = n;
            fds[n++] = (struct pollfd){ .fd = fuse_export_done_fd(d->fuse), .events = POLLIN };
        }
        if (d->psi_fd >= 0) {
            psi = n;
            fds[n++] = (struct pollfd){ .fd = d->psi_fd, .events = POLLPRI };
        }
        int ready = poll(fds, n, timeout);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            log_err("poll: %s", strerror(errno));
            return;
        }
        if (ready == 0)
            continue;
        if (psi && (fds[psi].revents & POLLPRI)) {
            d->psi_full_usec = monotonic_usec();
            if (--ready == 0)
                continue;
        }
        if (fuse && fds[fuse].revents) {
            log_info("%s was unmounted; stopping", d->opt.fuse_file);
            return;
        }
        int sig = take_signal(d);
        if (sig == SIGTERM || sig == SIGINT) {
            log_info("%s: stopping", strsignal(sig));
            return;
        }
        if (sig == SIGHUP)
            reload(d);
    }
}

/*
 * Detach the FUSE mount and wait for its users to let go; a second stop
 * signal aborts the connection instead.
 */
static void stop_fuse(struct daemon *d)
{
    bool noticed = false, aborted = false;
    int r;

    r = fuse_export_stop(d->fuse);
    if (r < 0)
        log_warn("%s: cannot unmount: %s", d->opt.fuse_file, strerror(-r));
    for (;;) {
        struct pollfd fds[2] = {
            { .fd = fuse_export_done_fd(d->fuse), .events = POLLIN },
            { .fd = d->sigfd, .events = POLLIN },
        };
        int n = poll(fds, 2, noticed ? -1 : STOP_NOTICE_MS);
        if (n < 0 && errno != EINTR) {
            log_err("poll: %s", strerror(errno));
            break;
        }
        if (fds[0].revents)
            break;
        if (n == 0 && !noticed) {
            log_warn("%s is still in use (a loop device, swap?): serving it until it is "
                     "released; send SIGTERM again to abort it", d->opt.fuse_file);
            noticed = true;
            continue;
        }
        int sig = fds[1].revents ? take_signal(d) : 0;
        if ((sig == SIGTERM || sig == SIGINT) && !aborted) {
            r = fuse_export_abort(d->fuse);
            if (r < 0) {
                log_err("%s: cannot abort the FUSE connection: %s", d->opt.fuse_file,
                        strerror(-r));
            } else {
                log_warn("%s: FUSE connection aborted; its users get I/O errors",
                         d->opt.fuse_file);
                aborted = true;
            }
        }
    }
    fuse_export_free(d->fuse);
    d->fuse = NULL;
}

static void teardown(struct daemon *d)
{
    if (d->nbd)
        stop_nbd(d);
    if (d->fuse)
        stop_fuse(d);
    control_free(d->control);
    store_free(d->store);
    /* After the store, which writes to it until it is freed. */
    backing_close(d->backing);
    if (d->pidfile_written)
        pidfile_remove(d->opt.pidfile);
    if (d->sigfd >= 0)
        close(d->sigfd);
    if (d->sysrq_fd >= 0)
        close(d->sysrq_fd);
    if (d->psi_fd >= 0)
        close(d->psi_fd);
    for (int i = 0; i < d->npassed; i++)
        if (d->passed[i].fd >= 0)
            close(d->passed[i].fd);
    free(d->passed);
    free(d->nbd_address);
}

int main(int argc, char **argv)
{
    struct daemon d = { .sigfd = -1, .sysrq_fd = -1, .psi_fd = -1, .argc = argc, .argv = argv };
    int r;

    r = options_parse(argc, argv, &d.opt);
    if (r != 0) {
        options_free(&d.opt);
        return r > 0 ? EXIT_SUCCESS : EXIT_USAGE;
    }
    fuse_set_log_func(fuse_log_forward);
    /* Said once, at startup: a reload that keeps the setting would say it again. */
    if (d.opt.backing_only && !d.opt.backing)
        log_warn("%s has no effect without --backing", d.opt.backing_only);

    /* Before any fork: the sockets are for this pid. */
    r = listen_fds_take(&d.passed);
    if (r > 0) {
        d.npassed = r;
        if (!d.opt.foreground) {
            log_err("socket activation (LISTEN_FDS) needs --foreground");
            r = -EINVAL;
        }
    }
    if (r < 0) {
        teardown(&d);
        options_free(&d.opt);
        return EXIT_USAGE;
    }
    match_passed(&d);

    if (!d.opt.foreground) {
        r = daemonize();
        if (r < 0) {
            log_err("cannot go to the background: %s", strerror(-r));
            options_free(&d.opt);
            return EXIT_STARTUP;
        }
    }

    r = startup(&d);
    if (r == 0) {
        char size[16];
        format_size(d.opt.size, size, sizeof(size));
        log_info("serving %s: %s, %s level %d, control socket %s", d.opt.name, size,
                 codec_name(d.opt.codec), d.level, d.opt.control_path);
        daemonize_ready();
        notify("READY=1");
        notify_status(&d);
        serve(&d);
        notify("STOPPING=1");
    }
    teardown(&d);
    if (r == 0)
        log_info("stopped");
    options_free(&d.opt);
    return r == 0 ? EXIT_SUCCESS : EXIT_STARTUP;
}
