/* SPDX-License-Identifier: MIT */
/*
 * The daemon's signals.
 *
 * SIGTERM, SIGINT and SIGHUP are blocked before any thread exists (threads
 * inherit the mask), and the main thread takes them from a signalfd in its
 * poll loops (serve.c, and teardown.c while FUSE lets go), beside each
 * front end's "done" descriptor: no handler runs at an arbitrary point,
 * and no worker thread is ever interrupted.  SIGPIPE is ignored: a control
 * client that hangs up must cost an EPIPE, not the daemon.
 */
#include "uzramd.h"

#include <errno.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

int signals_open(struct daemon *d)
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
    if (d->sigfd < 0)
        return -errno;
    /* The other way to stop: "uzramctl stop" (request_stop()). */
    d->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return d->stop_fd < 0 ? -errno : 0;
}

int signals_take(struct daemon *d)
{
    struct signalfd_siginfo si;

    if (read(d->sigfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
        return 0;
    return (int)si.ssi_signo;
}
