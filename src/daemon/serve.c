/* SPDX-License-Identifier: MIT */
/*
 * The main thread's loop while the device is served.
 *
 * One poll() waits for everything the main thread answers: the signalfd
 * (signals.c), "uzramctl stop" (request_stop()), the FUSE front end's
 * "done" descriptor (the file was unmounted by someone else), and the PSI
 * trigger of the memory rescue (watch.c).  The NBD front end and the
 * control socket run threads of their own and need nothing from here.  The loop's timeout is the next
 * periodic look (watch.c); without a service manager, a backing store or a
 * reserve there is nothing to look at, and it sleeps until an event.
 *
 * The rules: this loop never blocks but in poll(), and it only decides;
 * what a signal means is done by reload.c (SIGHUP) or by returning to
 * main(), which tears down (SIGTERM, SIGINT).
 */
#include "uzramd.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>

#include "fuse-export.h"

/*
 * Serve until a stop signal, or until a front end ends by itself.  Every
 * STATUS_INTERVAL_MS, signals or not: the STATUS= line, the backing
 * store's health and the reserve's.  Without any of them there is nothing
 * to wake up for.
 */
void serve(struct daemon *d)
{
    bool periodic = notify_enabled() || d->backing || d->opt.reserve;
    uint64_t next = monotonic_usec() + STATUS_INTERVAL_MS * 1000u;
    uint64_t next_memory = monotonic_usec() + MEMORY_CHECK_MS * 1000u;

    for (;;) {
        struct pollfd fds[4] = {
            { .fd = d->sigfd, .events = POLLIN },
            { .fd = d->stop_fd, .events = POLLIN },
        };
        nfds_t n = 2, psi = 0;
        int timeout = -1;

        if (periodic) {
            uint64_t now = monotonic_usec();
            if (now >= next) {
                watch_status(d);
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
        if (fds[1].revents) {
            log_info("stop asked on the control socket%s; stopping",
                     atomic_load(&d->stop_force) ? " (force)" : "");
            return;
        }
        if (fuse && fds[fuse].revents) {
            log_info("%s was unmounted; stopping", d->opt.fuse_file);
            return;
        }
        int sig = signals_take(d);
        if (sig == SIGTERM || sig == SIGINT) {
            log_info("%s: stopping", strsignal(sig));
            return;
        }
        if (sig == SIGHUP)
            reload(d);
    }
}
