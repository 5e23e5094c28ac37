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
 */
#define FUSE_USE_VERSION 314

#include "uzramd.h"

#include <fuse_log.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

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
    if (d.opt.nbd_gid != (gid_t)-1 && !d.opt.nbd_unix)
        log_warn("--nbd-group has no effect without --nbd-unix");
    if (d.opt.backing && !d.opt.mem_limit)
        log_warn("--backing without --mem-limit: nothing is written back by itself, "
                 "only by 'uzramctl writeback'");

    /* Before any fork: the sockets are for this pid. */
    if (startup_sockets(&d) < 0) {
        teardown(&d);
        options_free(&d.opt);
        return EXIT_USAGE;
    }

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
