/* SPDX-License-Identifier: MIT */
/*
 * uzramd: serve one compressed RAM block device.
 *
 * main() is the daemon's life in order, one file per phase:
 *   options (options.c) -> socket activation -> (fork, daemonize.c)
 *   -> startup (startup.c) -> ready -> serve (serve.c) -> teardown
 *   (teardown.c)
 * and it alone turns the outcome into an exit status: 0 after a stop, 1
 * if startup failed, 2 for bad arguments.  The state all phases share is
 * one struct daemon (uzramd.h), on this function's stack.
 *
 * systemd.  Under a service manager (uzramd@.service, Type=notify) the
 * daemon runs in the foreground and says READY=1 where the background
 * fork tells its parent, STOPPING=1 when it begins to stop, and keeps a
 * STATUS= line: the device, then its figures every few seconds (watch.c).
 *
 * Stopping.  SIGTERM or SIGINT ends serve(); so does the FUSE file being
 * unmounted by someone else.  What a stop waits for is teardown.c's.
 *
 * Where messages go (log_setup()) is chosen before the fork, so that a
 * log file that cannot be opened is reported to the user, and only after
 * the usage errors and the warnings about the options, which are for the
 * user at the terminal.  In the background without --log the default is
 * syslog, but containers often have none (no /dev/log), and there every
 * message would be lost: the log then goes to a file beside the control
 * socket, and the command says so once, when it returns.
 */
#define FUSE_USE_VERSION 314

#include "uzramd.h"

#include <errno.h>
#include <fuse_log.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "cleanup.h"
#include "codec.h"
#include "util.h"

/* libfuse's messages go where ours go; its debug chatter is dropped. */
static void fuse_log_forward(enum fuse_log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
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

/* Is a syslog daemon listening?  Its socket is /dev/log. */
static bool syslog_here(void)
{
    struct stat st;

    return stat("/dev/log", &st) == 0 && S_ISSOCK(st.st_mode);
}

/* The default log file: the control socket's path with ".log" for ".sock". */
static char *default_log_path(const char *control)
{
    size_t n = strlen(control);
    char *p;

    if (n > 5 && strcmp(control + n - 5, ".sock") == 0)
        n -= 5;
    if (asprintf(&p, "%.*s.log", (int)n, control) < 0)
        return NULL;
    return p;
}

/*
 * Open the log file at path, making its missing directories with mode:
 * 0, or -1 after saying why on stderr (still the log here).
 */
static int log_setup_file(const char *path, mode_t mode)
{
    int r = make_parent_dirs(path, mode);

    if (r < 0) {
        log_err("--log %s: cannot make its directory: %s", path, strerror(-r));
        return -1;
    }
    r = log_use_file(path);
    if (r == -ELOOP)
        log_err("--log %s: a symbolic link: give the file itself", path);
    else if (r == -EINVAL)
        log_err("--log %s: not a regular file", path);
    else if (r < 0)
        log_err("--log %s: cannot open: %s", path, strerror(-r));
    return r < 0 ? -1 : 0;
}

/*
 * Choose where messages go (uzramd(8), LOGGING) and open the log file, if
 * it is one.  *ret_syslog: switch to syslog once in the background (after
 * the fork, which would close its socket).  *ret_note: what the command
 * says when it returns, or NULL; static.  0, or -1 after saying why.
 */
static int log_setup(const struct options *o, bool *ret_syslog, const char **ret_note)
{
    static char note[PATH_MAX + 64];
    const char *log = o->log;

    *ret_syslog = false;
    *ret_note = NULL;
    if (!log && o->foreground)
        return 0;
    if (!log && syslog_here()) {
        *ret_syslog = true;
        return 0;
    }
    if (!log) {
        /* Beside the control socket, made as control_new() makes its directory. */
        _cleanup_free_ char *path = default_log_path(o->control_path);
        if (!path) {
            log_err("out of memory");
            return -1;
        }
        if (log_setup_file(path,
                           geteuid() == 0 || o->gid != (gid_t)-1 || o->admin_gid != (gid_t)-1
                               ? 0755
                               : 0700) < 0)
            return -1;
        snprintf(note, sizeof(note), "logging to %s (no syslog here)", path);
        *ret_note = note;
        return 0;
    }
    if (strcmp(log, "stderr") == 0)
        return 0;
    if (strcmp(log, "syslog") == 0) {
        *ret_syslog = true;
        return 0;
    }
    return log_setup_file(log, 0700);
}

int main(int argc, char **argv)
{
    struct daemon d = {
        .sigfd = -1,
        .sysrq_fd = -1,
        .pidfile_fd = -1,
        .psi_fd = -1,
        .stop_fd = -1,
        .stop_lock = PTHREAD_MUTEX_INITIALIZER,
        .argc = argc,
        .argv = argv,
    };
    int r;

    r = options_parse(argc, argv, &d.opt);
    if (r != 0) {
        options_free(&d.opt);
        return r > 0 ? EXIT_SUCCESS : EXIT_USAGE;
    }
    fuse_set_log_func(fuse_log_forward);
    /* Said once, at startup: a reload that keeps the setting would say it again. */
    if (d.opt.backing_only && !d.opt.backing)
        log_warn("--%s has no effect without --backing", d.opt.backing_only);
    if (d.opt.backing && !d.opt.mem_limit)
        log_warn("--backing without --mem-limit: nothing is written back by itself, "
                 "only by 'uzramctl writeback'");

    /* Before any fork: the sockets are for this pid. */
    if (startup_sockets(&d) < 0) {
        teardown(&d);
        options_free(&d.opt);
        return EXIT_USAGE;
    }
    /* A Unix socket from the service manager is checked against --nbd-group too. */
    bool nbd_unix = d.opt.nbd_unix;
    for (int i = 0; i < d.npassed; i++)
        nbd_unix |= d.passed[i].family == AF_UNIX;
    if (d.opt.nbd_gid != (gid_t)-1 && !nbd_unix)
        log_warn("--nbd-group has no effect without an NBD Unix socket");

    bool use_syslog;
    const char *note;
    if (log_setup(&d.opt, &use_syslog, &note) < 0) {
        teardown(&d);
        options_free(&d.opt);
        return EXIT_STARTUP;
    }
    if (!d.opt.foreground) {
        r = daemonize(note);
        if (r < 0) {
            log_err("cannot go to the background: %s", strerror(-r));
            options_free(&d.opt);
            return EXIT_STARTUP;
        }
    }
    if (use_syslog)
        log_use_syslog();

    r = startup(&d);
    if (r == 0) {
        char size[16];
        format_size(d.opt.size, size, sizeof(size));
        log_info("serving %s: %s, %s level %d, control socket %s", d.opt.name, size,
                 codec_name(d.opt.codec), d.level, d.opt.control_path);
        mutex_lock(&d.stop_lock);
        d.serving = true;
        mutex_unlock(&d.stop_lock);
        daemonize_ready();
        notify("READY=1");
        watch_status(&d);
        serve(&d);
        notify("STOPPING=1");
    }
    teardown(&d);
    if (r == 0)
        log_info("stopped");
    options_free(&d.opt);
    return r == 0 ? EXIT_SUCCESS : EXIT_STARTUP;
}
