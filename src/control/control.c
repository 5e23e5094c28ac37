/* SPDX-License-Identifier: MIT */
/*
 * The control socket server: the socket file, the clients and the poll
 * loop (doc/control.md; the protocol is PROTOCOL.md).  One thread serves
 * every client and never blocks: clients are non-blocking, each with its
 * own buffers, and one that stalls holds up only itself ("The thread").
 * Every client is bounded: CONTROL_MAX_CLIENTS of them, PROTO_LINE_MAX a
 * line, CONTROL_IDLE_MS without progress, one answer pending ("Limits").
 * A client whose request runs on the job thread is parked, neither read
 * nor timed out, until the job's eventfd fires ("Long requests").  The
 * socket's mode is set between bind() and listen(), and the file is
 * unlinked only while it is still ours ("The socket file").
 *
 * Who a client is comes from the kernel, once: SO_PEERCRED and
 * SO_PEERGROUPS at accept give the uid that connected and its groups
 * ("Who may do what").  Root, the daemon's own user and the members of
 * the admin group (--admin-group) may change the device; the members of
 * the watch group (--control-group) may only watch; anyone else is sent
 * one error line naming who may connect and closed, before a byte of
 * theirs is read.  A client whose credentials cannot be read is refused
 * rather than guessed at.
 *
 * The socket file's mode follows the groups: 0600 with none, 0660 and the
 * group with one (or the same group twice).  A file has only one group,
 * so with two different ones it is 0666, and the check at accept is what
 * admits: every local user can reach the listening socket, and is told
 * at once to go unless the kernel vouches for them.  Making the file
 * group-owned by one and leaving the other to a setgid helper or an ACL
 * would be more moving parts for the same rule (service managers do the
 * same for sockets meant for several kinds of clients).
 */
#include "control-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "socket.h"
#include "store.h"
#include "util.h"

/* ---- clients ------------------------------------------------------------ */

static void client_close(struct control *ctl, unsigned i)
{
    struct client *c = ctl->clients[i];

    if (ctl->job.client == c)
        ctl->job.client = NULL;
    close(c->fd);
    free(c);
    ctl->clients[i] = NULL;
}

/* Send what is pending.  -errno if the client is gone. */
static int client_flush(struct client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        c->out_off += (size_t)n;
        c->deadline_ms = monotonic_ms() + CONTROL_IDLE_MS;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

static void client_respond(struct control *ctl, struct client *c, char *line, size_t len)
{
    struct resp r = { .buf = c->out, .cap = sizeof(c->out) - 1 };

    control_handle(ctl, c, line, len, &r);
    if (c->waiting)
        return;
    if (r.overflow)
        resp_error(&r, EOVERFLOW, "response longer than %d bytes", PROTO_RESP_MAX);
    c->out[r.len++] = '\n';
    c->out_len = r.len;
    c->out_off = 0;
}

/*
 * Answer the complete lines buffered, one at a time while each answer goes
 * out at once.  Returns -1 when the client is to be closed now.
 */
static int client_process(struct control *ctl, struct client *c)
{
    while (c->out_len == 0 && !c->closing && !c->waiting) {
        char *nl = memchr(c->in, '\n', c->in_len);
        size_t len;

        if (!nl) {
            if (c->in_len == sizeof(c->in)) {
                struct resp r = { .buf = c->out, .cap = sizeof(c->out) - 1 };
                resp_error(&r, E2BIG, "request longer than %d bytes", PROTO_LINE_MAX);
                c->out[r.len++] = '\n';
                c->out_len = r.len;
                c->closing = true;
            } else if (c->eof) {
                /* A last request without its newline still gets its answer. */
                if (c->in_len > 0) {
                    char line[PROTO_LINE_MAX + 1];
                    memcpy(line, c->in, c->in_len);
                    line[c->in_len] = '\0';
                    client_respond(ctl, c, line, c->in_len);
                    c->in_len = 0;
                }
                c->closing = true;
            }
        } else {
            len = (size_t)(nl - c->in);
            *nl = '\0';
            client_respond(ctl, c, c->in, len);
            c->in_len -= len + 1;
            memmove(c->in, nl + 1, c->in_len);
        }
        if (client_flush(c) < 0)
            return -1;
        if (!nl)
            break;
    }
    if (c->closing && c->out_len == 0 && !c->waiting)
        return -1;
    return 0;
}

/*
 * The job thread said it is done: join it and answer the client that
 * waits, if it is still there.
 */
static void job_finish(struct control *ctl)
{
    struct client *c = ctl->job.client;
    uint64_t v;

    if (read(ctl->job.done_fd, &v, sizeof(v)) != (ssize_t)sizeof(v) || !ctl->job.running)
        return;
    pthread_join(ctl->job.thread, NULL);
    ctl->job.running = false;
    ctl->job.client = NULL;
    if (!c)
        return;

    struct resp r = { .buf = c->out, .cap = sizeof(c->out) - 1 };
    job_reply(&ctl->job, &r);
    c->out[r.len++] = '\n';
    c->out_len = r.len;
    c->out_off = 0;
    c->waiting = false;
    c->deadline_ms = monotonic_ms() + CONTROL_IDLE_MS;
    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        if (ctl->clients[i] != c)
            continue;
        if (client_flush(c) < 0 || client_process(ctl, c) < 0)
            client_close(ctl, i);
        break;
    }
}

/* Read what the client sent.  -1 when it is to be closed now. */
static int client_read(struct client *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        }
        if (n == 0) {
            c->eof = true;
            return 0;
        }
        c->in_len += (size_t)n;
        c->deadline_ms = monotonic_ms() + CONTROL_IDLE_MS;
        return 0;
    }
}

/* Tell a client we cannot take it, without waiting for it, and close. */
static void refuse(int fd, int err, const char *msg)
{
    char line[320];
    int n = snprintf(line, sizeof(line), "error %s %s\n", strerrorname_np(err) ?: "EIO", msg);

    if (n > 0)
        (void)!send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

/*
 * A peer in neither group, let through by a mode wider than it (0666, for
 * two groups): say who may connect, in the words of uzramd(8).
 */
static void refuse_stranger(const struct control *ctl, int fd)
{
    char msg[256];
    int n = ctl->owner == 0 ? snprintf(msg, sizeof(msg), "not allowed: only root")
                            : snprintf(msg, sizeof(msg), "not allowed: only root, uid %u",
                                       (unsigned)ctl->owner);
    if (ctl->watch_gid != (gid_t)-1 && n > 0 && (size_t)n < sizeof(msg))
        n += snprintf(msg + n, sizeof(msg) - (size_t)n, ", members of %s (control-group)",
                      ctl->watch_group);
    if (ctl->admin_gid != (gid_t)-1 && n > 0 && (size_t)n < sizeof(msg))
        n += snprintf(msg + n, sizeof(msg) - (size_t)n, ", members of %s (admin-group)",
                      ctl->admin_group);
    if (n > 0 && (size_t)n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - (size_t)n, " may connect");
    refuse(fd, EACCES, msg);
}

/* Accept what is waiting.  Returns the time until which accepting pauses, or 0. */
static uint64_t control_accept(struct control *ctl)
{
    /* A bounded batch, so a flood of connections cannot starve the clients. */
    for (int k = 0; k < 16; k++) {
        int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            switch (errno) {
            case EINTR:
            case ECONNABORTED:
            case EPROTO:
                continue;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                return monotonic_ms() + CONTROL_ACCEPT_PAUSE_MS;
            default:
                return 0;
            }
        }
        /* Read now, for the whole connection: who connected, and its groups. */
        const gid_t want[2] = { ctl->watch_gid, ctl->admin_gid };
        uid_t uid;
        uint32_t in;
        if (unix_peer(fd, want, 2, &uid, &in) < 0) {
            refuse(fd, EACCES, "cannot tell who connected");
            continue;
        }
        bool may_change = uid == 0 || uid == ctl->owner || (in & 2);
        if (!may_change && !(in & 1)) {
            refuse_stranger(ctl, fd);
            continue;
        }
        unsigned i;
        for (i = 0; i < CONTROL_MAX_CLIENTS && ctl->clients[i]; i++)
            ;
        if (i == CONTROL_MAX_CLIENTS) {
            refuse(fd, EUSERS, "too many clients");
            continue;
        }
        struct client *c = malloc(sizeof(*c));
        if (!c) {
            refuse(fd, ENOMEM, "out of memory");
            continue;
        }
        c->fd = fd;
        c->uid = uid;
        c->may_change = may_change;
        c->eof = c->closing = c->waiting = false;
        c->in_len = c->out_len = c->out_off = 0;
        c->deadline_ms = monotonic_ms() + CONTROL_IDLE_MS;
        ctl->clients[i] = c;
    }
    return 0;
}

/*
 * What poll() said of client c (pfd, the events asked and returned):
 * read, write, answer, or time it out.  -1 when it is to be closed now.
 */
static int client_event(struct control *ctl, struct client *c, const struct pollfd *pfd,
                        uint64_t now)
{
    short re = pfd->revents;
    int res = 0;

    if (re & POLLNVAL)
        return -1;
    if (re & POLLOUT)
        res = client_flush(c);
    if (res == 0 && (re & (POLLIN | POLLHUP | POLLERR)) && pfd->events == POLLIN)
        res = client_read(c);
    if (res == 0 && (re & (POLLERR | POLLHUP)) && pfd->events == POLLOUT)
        res = -1;   /* it will never read what we have for it */
    if (res == 0)
        res = client_process(ctl, c);
    if (res == 0 && !c->waiting && c->deadline_ms <= now) {
        /* Say why, if the line is free; the client may be gone. */
        if (c->out_len == 0)
            (void)!send(c->fd, "error ETIMEDOUT idle too long\n", 30,
                        MSG_NOSIGNAL | MSG_DONTWAIT);
        res = -1;
    }
    return res;
}

static void *control_thread(void *arg)
{
    struct control *ctl = arg;
    /* pfd[0]: wake, pfd[1]: listening socket, pfd[2]: the job's end, then
     * one per client. */
    enum { NFIXED = 3 };
    struct pollfd pfd[NFIXED + CONTROL_MAX_CLIENTS];
    unsigned idx[CONTROL_MAX_CLIENTS];
    uint64_t accept_paused_until = 0;

    for (;;) {
        uint64_t now = monotonic_ms(), next = now + CONTROL_IDLE_MS;
        nfds_t n = NFIXED;

        pfd[0] = (struct pollfd){ .fd = ctl->wake_fd, .events = POLLIN };
        pfd[1] = (struct pollfd){ .fd = ctl->listen_fd, .events = POLLIN };
        pfd[2] = (struct pollfd){ .fd = ctl->job.done_fd, .events = POLLIN };
        if (accept_paused_until > now) {
            pfd[1].fd = -1;
            next = accept_paused_until;
        }
        for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
            struct client *c = ctl->clients[i];
            if (!c)
                continue;
            short events = c->out_len > c->out_off ? POLLOUT
                     : c->eof || c->closing   ? 0
                                               : POLLIN;
            /* A waiting client that shut its side down has nothing more to
             * say, and its POLLHUP would only spin the loop until the job ends. */
            int fd = c->waiting && c->eof ? -1 : c->fd;
            idx[n - NFIXED] = i;
            pfd[n++] = (struct pollfd){ .fd = fd, .events = events };
            if (!c->waiting && c->deadline_ms < next)
                next = c->deadline_ms;
        }

        int timeout = next > now ? (int)(next - now) : 0;
        if (poll(pfd, n, timeout) < 0 && errno != EINTR)
            continue;
        if (pfd[0].revents)
            break;

        now = monotonic_ms();
        for (nfds_t k = NFIXED; k < n; k++) {
            unsigned i = idx[k - NFIXED];
            if (client_event(ctl, ctl->clients[i], &pfd[k], now) < 0)
                client_close(ctl, i);
        }
        if (pfd[2].revents)
            job_finish(ctl);
        if (pfd[1].revents)
            accept_paused_until = control_accept(ctl);
    }

    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
        if (ctl->clients[i])
            client_close(ctl, i);
    return NULL;
}

/* ---- the socket --------------------------------------------------------- */

static int control_bind(struct control *ctl)
{
    gid_t gid = ctl->watch_gid != (gid_t)-1 ? ctl->watch_gid : ctl->admin_gid;
    bool two = ctl->watch_gid != (gid_t)-1 && ctl->admin_gid != (gid_t)-1 &&
               ctl->watch_gid != ctl->admin_gid;
    mode_t mode = two ? 0666 : gid != (gid_t)-1 ? 0660 : 0600;
    struct stat st;
    int r;

    /* 0755 when others must reach the socket (root's /run/uzram, or a
     * group's), else 0700.  Whether the last one is safe to use is
     * unix_listen()'s to check. */
    r = make_parent_dirs(ctl->path, geteuid() == 0 || gid != (gid_t)-1 ? 0755 : 0700);
    if (r < 0)
        return r;
    /* With two groups the file has neither: the check at accept admits. */
    _cleanup_close_ int fd = unix_listen(ctl->path, two ? (gid_t)-1 : gid, mode, SOCK_NONBLOCK);
    if (fd < 0)
        return fd;
    /* control_free() removes the file only while it is still this one. */
    if (lstat(ctl->path, &st) < 0) {
        r = -errno;
        unlink(ctl->path);
        return r;
    }
    ctl->sock_dev = st.st_dev;
    ctl->sock_ino = st.st_ino;
    ctl->listen_fd = TAKE_FD(fd);
    return 0;
}

/* The group's name for messages, or its number where it has none. */
static void group_name(gid_t gid, char *buf, size_t len)
{
    struct group g, *res = NULL;
    char tmp[1024];

    if (gid != (gid_t)-1 && getgrgid_r(gid, &g, tmp, sizeof(tmp), &res) == 0 && res)
        snprintf(buf, len, "%s", g.gr_name);
    else
        snprintf(buf, len, "%u", (unsigned)gid);
}

struct control *control_new(const char *path, struct store *store,
                            const struct control_info *info, gid_t watch_gid, gid_t admin_gid)
{
    struct control *ctl = calloc(1, sizeof(*ctl));
    int r = -ENOMEM;

    if (!ctl)
        return NULL;
    ctl->listen_fd = ctl->wake_fd = ctl->job.done_fd = -1;
    ctl->owner = geteuid();
    ctl->watch_gid = watch_gid;
    ctl->admin_gid = admin_gid;
    group_name(watch_gid, ctl->watch_group, sizeof(ctl->watch_group));
    group_name(admin_gid, ctl->admin_group, sizeof(ctl->admin_group));
    ctl->store = store;
    ctl->job.store = store;
    ctl->level = info->level;
    ctl->memory_locked = info->memory_locked;
    ctl->io_flusher = info->io_flusher;
    ctl->oom_protected = info->oom_protected;
    ctl->stop = info->stop;
    ctl->stop_arg = info->stop_arg;
    ctl->nbd_stats = info->nbd_stats;
    ctl->path = strdup(path);
    ctl->name = strdup(info->name ? info->name : "");
    ctl->algorithm = strdup(info->algorithm ? info->algorithm : "");
    if (info->fuse_file)
        ctl->fuse_file = strdup(info->fuse_file);
    if (info->nbd)
        ctl->nbd = strdup(info->nbd);
    if (info->backing)
        ctl->backing = strdup(info->backing);
    if (info->log)
        ctl->log = strdup(info->log);
    if (!ctl->path || !ctl->name || !ctl->algorithm || (info->fuse_file && !ctl->fuse_file) ||
        (info->nbd && !ctl->nbd) || (info->backing && !ctl->backing) ||
        (info->log && !ctl->log))
        goto fail;

    ctl->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ctl->job.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ctl->wake_fd < 0 || ctl->job.done_fd < 0) {
        r = -errno;
        goto fail;
    }
    r = control_bind(ctl);
    if (r < 0)
        goto fail;
    return ctl;

fail:
    /* listen_fd is -1: control_free() unlinks nothing. */
    control_free(ctl);
    errno = -r;
    return NULL;
}

int control_start(struct control *ctl)
{
    int r;

    if (ctl->started)
        return -EALREADY;
    r = pthread_create(&ctl->thread, NULL, control_thread, ctl);
    if (r != 0)
        return -r;
    ctl->started = true;
    return 0;
}

void control_set_fuse(struct control *ctl, const char *transport, uint64_t buffer_bytes)
{
    atomic_store(&ctl->fuse_buffer_bytes, buffer_bytes);
    atomic_store(&ctl->fuse_transport, transport);
}

void control_free(struct control *ctl)
{
    struct stat st;

    if (!ctl)
        return;
    if (ctl->started) {
        uint64_t one = 1;
        /* The eventfd counter cannot overflow from one write: it never fails. */
        (void)!write(ctl->wake_fd, &one, sizeof(one));
        pthread_join(ctl->thread, NULL);
    }
    /* The control thread is gone: nobody else looks at the job now. */
    if (ctl->job.running)
        pthread_join(ctl->job.thread, NULL);
    if (ctl->path && ctl->listen_fd >= 0 && stat(ctl->path, &st) == 0 &&
        st.st_dev == ctl->sock_dev && st.st_ino == ctl->sock_ino)
        unlink(ctl->path);
    if (ctl->listen_fd >= 0)
        close(ctl->listen_fd);
    if (ctl->wake_fd >= 0)
        close(ctl->wake_fd);
    if (ctl->job.done_fd >= 0)
        close(ctl->job.done_fd);
    free(ctl->path);
    free(ctl->name);
    free(ctl->algorithm);
    free(ctl->fuse_file);
    free(ctl->nbd);
    free(ctl->backing);
    free(ctl->log);
    free(ctl);
}

