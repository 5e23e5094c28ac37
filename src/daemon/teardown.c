/* SPDX-License-Identifier: MIT */
/*
 * Stopping: undo what startup.c built, in reverse, whether it finished or
 * not (a field still NULL or -1 was never built).
 *
 * The front ends go first, so that no request arrives at a store being
 * freed, and NBD before FUSE: its clients are disconnected (requests being
 * served are answered first).  Then the FUSE file is detached, and the
 * daemon waits for its users to let go (a loop device must be detached
 * first, a swap area swapped off); a second SIGTERM or SIGINT aborts the
 * connection, which those users see as I/O errors, and so does a
 * "uzramctl stop --force" at once.  The backing store is closed after the
 * store, which writes to it until it is freed.
 *
 * "uzramctl stop" comes on the control thread (request_stop()), which
 * reads the front ends' counts: teardown() marks itself begun under
 * stop_lock before it frees any of them.
 */
#include "uzramd.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "backing.h"
#include "cleanup.h"
#include "control.h"
#include "fuse-export.h"
#include "nbd-export.h"
#include "store.h"

/* How long a stop waits before saying that the FUSE file is still in use. */
#define STOP_NOTICE_MS 2000

static void stop_nbd(struct daemon *d)
{
    struct nbd_export_stats st;

    nbd_export_get_stats(d->nbd, &st);
    nbd_export_free(d->nbd);
    d->nbd = NULL;
    log_info("NBD stopped: %llu connections, %llu refused (--max-connections), "
             "%llu refused as strangers (not root, uzramd's user or --nbd-group), "
             "%llu dropped for breaking the protocol, %llu for a handshake too slow "
             "(--handshake-timeout), %llu for not reading replies (--send-timeout), "
             "%llu closed idle (--idle-timeout)",
             (unsigned long long)st.connections, (unsigned long long)st.refused,
             (unsigned long long)st.strangers, (unsigned long long)st.dropped,
             (unsigned long long)st.timed_out, (unsigned long long)st.send_timeouts,
             (unsigned long long)st.idle_timeouts);
}

/*
 * The NBD figures for stat, on the control thread: under stop_lock, as
 * request_stop() looks at d->nbd, so that teardown cannot free it meanwhile.
 */
void daemon_nbd_stats(void *daemon, struct control_nbd_stats *ret)
{
    struct daemon *d = daemon;
    struct nbd_export_stats st;

    *ret = (struct control_nbd_stats){ 0 };
    LOCK_GUARD(&d->stop_lock);
    if (!d->serving || d->stopping || !d->nbd)
        return;
    nbd_export_get_stats(d->nbd, &st);
    *ret = (struct control_nbd_stats){
        .active = st.active,
        .connections = st.connections,
        .refused = st.refused,
        .strangers = st.strangers,
        .dropped = st.dropped,
        .timed_out = st.timed_out,
        .send_timeouts = st.send_timeouts,
        .idle_timeouts = st.idle_timeouts,
        .queued_bytes = st.queued_bytes,
    };
}

int request_stop(void *daemon, bool force, char *why, size_t len)
{
    struct daemon *d = daemon;
    int r = 0;

    mutex_lock(&d->stop_lock);
    if (!d->serving && !d->stopping) {
        /* The front ends are still being built: nothing to look at yet. */
        snprintf(why, len, "still starting; try again");
        r = -EAGAIN;
    } else if (!d->stopping && !force) {
        unsigned opens = d->fuse ? fuse_export_opens(d->fuse) : 0;
        struct nbd_export_stats st = { 0 };
        if (d->nbd)
            nbd_export_get_stats(d->nbd, &st);
        if (opens || st.active) {
            int n = 0;
            if (opens)
                n = snprintf(why, len,
                             "the FUSE file %s is open %u time%s: a loop device? "
                             "swapoff, umount, losetup -d first",
                             d->opt.fuse_file, opens, opens == 1 ? "" : "s");
            if (st.active && n >= 0 && (size_t)n < len)
                n += snprintf(why + n, len - (size_t)n, "%s%u NBD client%s connected",
                              n ? "; " : "", st.active, st.active == 1 ? "" : "s");
            if (n >= 0 && (size_t)n < len)
                snprintf(why + n, len - (size_t)n, "; or stop --force");
            r = -EBUSY;
        }
    }
    if (r == 0) {
        if (force)
            atomic_store(&d->stop_force, true);
        if (eventfd_write(d->stop_fd, 1) < 0)
            r = -errno;
    }
    mutex_unlock(&d->stop_lock);
    return r;
}

/* Abort the FUSE connection: its users get I/O errors.  True if done. */
static bool abort_fuse(struct daemon *d)
{
    int r = fuse_export_abort(d->fuse);

    if (r < 0) {
        log_err("%s: cannot abort the FUSE connection: %s", d->opt.fuse_file, strerror(-r));
        return false;
    }
    log_warn("%s: FUSE connection aborted; its users get I/O errors", d->opt.fuse_file);
    return true;
}

/*
 * Detach the FUSE mount and wait for its users to let go; a second stop
 * signal aborts the connection instead, and so does "uzramctl stop
 * --force", given before or during the wait.
 */
static void stop_fuse(struct daemon *d)
{
    bool noticed = false, aborted = false;
    int r;

    r = fuse_export_stop(d->fuse);
    if (r < 0)
        log_warn("%s: cannot unmount: %s", d->opt.fuse_file, strerror(-r));
    if (atomic_load(&d->stop_force) && fuse_export_opens(d->fuse))
        aborted = abort_fuse(d);
    for (;;) {
        struct pollfd fds[3] = {
            { .fd = fuse_export_done_fd(d->fuse), .events = POLLIN },
            { .fd = d->sigfd, .events = POLLIN },
            { .fd = d->stop_fd, .events = POLLIN },
        };
        int n = poll(fds, 3, noticed ? -1 : STOP_NOTICE_MS);
        if (n < 0 && errno != EINTR) {
            log_err("poll: %s", strerror(errno));
            break;
        }
        if (fds[0].revents)
            break;
        if (n == 0 && !noticed) {
            log_warn("%s is still in use (a loop device, swap?): serving it until it is "
                     "released; send SIGTERM again (or uzramctl stop --force) to abort it",
                     d->opt.fuse_file);
            noticed = true;
            continue;
        }
        if (fds[2].revents) {
            eventfd_t v;
            (void)eventfd_read(d->stop_fd, &v);
            if (atomic_load(&d->stop_force) && !aborted)
                aborted = abort_fuse(d);
        }
        int sig = fds[1].revents ? signals_take(d) : 0;
        if ((sig == SIGTERM || sig == SIGINT) && !aborted)
            aborted = abort_fuse(d);
    }
    fuse_export_free(d->fuse);
    d->fuse = NULL;
}

void teardown(struct daemon *d)
{
    mutex_lock(&d->stop_lock);
    d->stopping = true;
    mutex_unlock(&d->stop_lock);
    if (d->nbd)
        stop_nbd(d);
    /* After the export, which uses them; also when it never started. */
    nbd_tls_creds_free(d->tls_creds);
    d->tls_creds = NULL;
    if (d->fuse)
        stop_fuse(d);
    control_free(d->control);
    store_free(d->store);
    /* After the store, which writes to it until it is freed. */
    backing_close(d->backing);
    if (d->pidfile_fd >= 0) {
        pidfile_remove(d->opt.pidfile);
        close(d->pidfile_fd);
    }
    if (d->sigfd >= 0)
        close(d->sigfd);
    if (d->stop_fd >= 0)
        close(d->stop_fd);
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
