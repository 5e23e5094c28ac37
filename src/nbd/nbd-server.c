/* SPDX-License-Identifier: MIT */
/*
 * The NBD server's sockets and threads (doc/nbd.md, "Threads", "Ownership
 * and stopping"): one accept thread, one thread per client, which calls
 * store_thread_prepare() and touches its stack before serving, and the
 * worker pool (nbd-pool.c).  A client's thread closes its socket under
 * clients_lock, so that nbd_export_free() never shuts down a reused
 * descriptor, and wakes the accept thread to join it.
 *
 * --max-connections is a cap per listener, not one for the export (doc/
 * nbd.md, "Bounds"): a client past its listener's cap is closed at once,
 * and counted as refused, but clients of one socket never take the slots
 * of another.  With one cap for all, anyone who could reach a TCP port
 * could fill it with idle connections and lock the Unix socket's users
 * (root's swap among them) out.  Each listener's count is kept apart
 * rather than slots reserved out of one total: it needs no arithmetic
 * between listeners, and a socket activated listener is one more like
 * the rest.  The price is that the daemon may serve up to the cap times
 * the number of listeners (NBD_MAX_LISTENERS at most).
 *
 * The handshake has a deadline (handshake_ms from accept()), so that a
 * client that connects and says nothing, or trickles its options a byte
 * at a time, gives its slot back.  The accept thread keeps it: each
 * client in its handshake has its deadline in the client list, the accept
 * thread's poll() waits no longer than the nearest one, and a client past
 * it has its socket shut down (under clients_lock, as nbd_export_free()
 * does), which ends its thread's recv() or sendmsg() like a hang-up.  The
 * connection's code (nbd-conn.c) calls io->established() as transmission
 * begins, which clears the deadline under the same lock, so a client is
 * either shut down before its transmission begins or not for this.  A per-socket
 * SO_RCVTIMEO would be less code but is no deadline: it bounds each recv(),
 * and a client sending a byte just within it would keep its slot for ever.
 *
 * The deadline covers NBD_OPT_STARTTLS's TLS handshake too: it runs on the
 * same socket, in the client's thread, before established().
 *
 * A Unix listener checks who connected (SO_PEERCRED, SO_PEERGROUPS) as
 * it accepts: root, the daemon's own user and the members of the
 * listener's group (--nbd-group) are served, anyone else is closed at once
 * and counted as a stranger, before a byte is read or sent.  The socket
 * file's mode says the same thing, so this is the second lock on the same
 * door: it still holds when the mode is widened by mistake (a chmod, a
 * socket unit's SocketMode=), and a socket passed by the service manager
 * gets the same check, with --nbd-group's group.  Nothing is logged per
 * client: whoever can connect could fill the log; the count is in the
 * daemon's line at stop.  TCP has no peer credentials: TLS is its check.
 *
 * In transmission the bounds are the socket's own timeouts, set as it
 * begins (sock_established()), because there they mean exactly what is
 * wanted: SO_SNDTIMEO is "a reply made no progress for send_timeout"
 * (nbd-reply.c drops the client), SO_RCVTIMEO "nothing received for
 * idle_timeout" (nbd-input.c closes the connection if nothing is in
 * flight).  A deadline kept here by the accept thread would need every
 * send to report its progress under clients_lock; the kernel already
 * keeps the clock, per call, in the thread that waits.
 *
 * The idle timeout is off by default, on purpose: the kernel's NBD client
 * serving swap sends nothing for as long as nothing is swapped, and
 * dropping it would take the swap device away (doc/nbd.md, "Bounds").
 * The send timeout is on by default on TCP, where anyone the port and TLS
 * let in may connect, and off on Unix sockets unless asked for: that is
 * where the kernel's client serving swap connects, and a reply that waits
 * long under memory pressure must not cost the swap device.  A client of a
 * Unix socket that does not read costs the others little anyway: it never
 * holds the spare job buffer (nbd-pool.c).
 */
#include "nbd-internal.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "populate.h"
#include "socket.h"
#include "store.h"

/* Listening sockets: a Unix and a TCP one, with room to spare. */
#define NBD_MAX_LISTENERS 8
/* After accept() fails for want of descriptors or memory, pause this long. */
#define NBD_ACCEPT_BACKOFF_MS 100

struct nbd_listener {
    int fd;
    bool tcp;
    /*
     * Its clients now, held against max_connections: the accept thread
     * adds, each client's thread takes away as it ends.
     */
    atomic_uint active;
    /* Unix: who may connect besides root and the owner; (gid_t)-1: nobody. */
    gid_t gid;
    char *path;                 /* Unix: the file, removed at the end if still ours */
    dev_t dev;
    ino_t ino;
};

struct nbd_client {
    struct nbd_client *next;
    struct nbd_export *ne;
    struct nbd_listener *l;     /* the one it came through: its slot is there */
    int fd;                     /* -1 once the thread closed it (clients_lock) */
    /* CLOCK_MONOTONIC ms by which the handshake must end; 0: it has (clients_lock) */
    uint64_t deadline_ms;
    bool done;                  /* the thread is finishing: join it (clients_lock) */
    pthread_t thread;
};


/* ---- clients ------------------------------------------------------------- */

/* What a client's nbd_io callbacks get: its transport, plain or TLS (nbd-transport.c). */
struct client_io {
    struct nbd_transport t;
    struct nbd_client *cl;
};

static ssize_t client_recv(void *ctx, void *buf, size_t len)
{
    struct nbd_transport *t = &((struct client_io *)ctx)->t;
    return t->ops->recv(t, buf, len);
}

static ssize_t client_sendv(void *ctx, const struct iovec *iov, int iovcnt)
{
    struct nbd_transport *t = &((struct client_io *)ctx)->t;
    return t->ops->sendv(t, iov, iovcnt);
}

static int client_starttls(void *ctx)
{
    struct client_io *cio = ctx;
    return nbd_tls_start(&cio->t, cio->cl->ne->tls_creds);
}

/* The handshake is over: its deadline no longer applies. */
static void sock_established(void *ctx)
{
    struct nbd_client *cl = ((struct client_io *)ctx)->cl;

    struct nbd_export *ne = cl->ne;

    LOCK_GUARD(&ne->clients_lock);
    cl->deadline_ms = 0;
    /* cl->fd is open: only this connection's thread closes it. */
    unsigned send_s = cl->l->tcp ? ne->send_timeout_s : ne->send_timeout_unix_s;
    if (send_s) {
        struct timeval tv = { .tv_sec = send_s };
        (void)setsockopt(cl->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    if (ne->idle_timeout_s) {
        struct timeval tv = { .tv_sec = ne->idle_timeout_s };
        (void)setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    }
}

static void *client_main(void *arg)
{
    struct nbd_client *cl = arg;
    struct nbd_export *ne = cl->ne;
    /* cl->fd is stable until we close it below. */
    struct client_io cio = { .cl = cl };
    const struct nbd_io io = {
        .recv = client_recv,
        .sendv = client_sendv,
        .established = sock_established,
        .starttls = ne->tls != NBD_TLS_OFF ? client_starttls : NULL,
        .tls = ne->tls,
        .ctx = &cio,
    };

    nbd_transport_init(&cio.t, cl->fd);
    stack_prefault(IO_STACK_BYTES);
    (void)store_thread_prepare(ne->store);
    int r = nbd_export_serve_io(ne, &io);
    /* A TLS session ends with close_notify only when the client ended it properly. */
    cio.t.ops->end(&cio.t, r == 0);

    mutex_lock(&ne->clients_lock);
    close(cl->fd);
    cl->fd = -1;
    cl->done = true;
    mutex_unlock(&ne->clients_lock);
    atomic_fetch_sub(&cl->l->active, 1);
    atomic_fetch_sub(&ne->active, 1);
    /* Wake the accept thread to join us. */
    uint64_t one = 1;
    (void)!write(ne->stop_fd, &one, sizeof(one));
    return NULL;
}

/* Join the threads of clients that have gone.  The accept thread only. */
static void reap_clients(struct nbd_export *ne, bool all)
{
    struct nbd_client *gone = NULL;

    mutex_lock(&ne->clients_lock);
    for (struct nbd_client **p = &ne->clients; *p;) {
        struct nbd_client *cl = *p;
        if (all || cl->done) {
            *p = cl->next;
            cl->next = gone;
            gone = cl;
        } else {
            p = &cl->next;
        }
    }
    mutex_unlock(&ne->clients_lock);
    while (gone) {
        struct nbd_client *cl = gone;
        gone = cl->next;
        pthread_join(cl->thread, NULL);
        free(cl);
    }
}

/* A client accepted on l.  The accept thread only. */
static void new_client(struct nbd_export *ne, struct nbd_listener *l, int fd)
{
    if (!l->tcp) {
        uid_t uid;
        uint32_t in;
        if (unix_peer(fd, &l->gid, 1, &uid, &in) < 0 ||
            (uid != 0 && uid != ne->owner && !(in & 1))) {
            atomic_fetch_add(&ne->n_strangers, 1);
            close(fd);
            return;
        }
    }
    if (atomic_load(&l->active) >= ne->max_connections) {
        atomic_fetch_add(&ne->n_refused, 1);
        close(fd);
        return;
    }
    if (l->tcp) {
        /* Replies are whole batches already: Nagle would only delay them. */
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    struct nbd_client *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        close(fd);
        return;
    }
    cl->ne = ne;
    cl->l = l;
    cl->fd = fd;
    cl->deadline_ms = monotonic_ms() + ne->handshake_ms;
    atomic_fetch_add(&l->active, 1);
    atomic_fetch_add(&ne->active, 1);
    mutex_lock(&ne->clients_lock);
    if (pthread_create(&cl->thread, NULL, client_main, cl) != 0) {
        mutex_unlock(&ne->clients_lock);
        atomic_fetch_sub(&l->active, 1);
        atomic_fetch_sub(&ne->active, 1);
        close(fd);
        free(cl);
        return;
    }
    cl->next = ne->clients;
    ne->clients = cl;
    mutex_unlock(&ne->clients_lock);
    atomic_fetch_add(&ne->n_connections, 1);
}

/*
 * Shut down the sockets of clients whose handshake is past its deadline.
 * Returns the ms until the nearest deadline still to come, or -1 if none
 * is.  The accept thread only.
 */
static int expire_handshakes(struct nbd_export *ne)
{
    uint64_t now = monotonic_ms(), next = UINT64_MAX;

    LOCK_GUARD(&ne->clients_lock);
    for (struct nbd_client *cl = ne->clients; cl; cl = cl->next) {
        if (!cl->deadline_ms || cl->fd < 0)
            continue;
        if (cl->deadline_ms <= now) {
            shutdown(cl->fd, SHUT_RDWR);
            cl->deadline_ms = 0;
            atomic_fetch_add(&ne->n_timed_out, 1);
        } else if (cl->deadline_ms - now < next) {
            next = cl->deadline_ms - now;
        }
    }
    /* handshake_ms fits an int (NBD_EXPORT_MAX_HANDSHAKE_TIMEOUT), and so does next. */
    return next == UINT64_MAX ? -1 : (int)next;
}

static void *accept_main(void *arg)
{
    struct nbd_export *ne = arg;
    struct pollfd fds[NBD_MAX_LISTENERS + 1];
    bool backoff = false;

    for (;;) {
        /* No longer than the nearest handshake deadline, or the backoff. */
        int timeout = expire_handshakes(ne);
        if (backoff && (timeout < 0 || timeout > NBD_ACCEPT_BACKOFF_MS))
            timeout = NBD_ACCEPT_BACKOFF_MS;
        backoff = false;
        fds[0] = (struct pollfd){ .fd = ne->stop_fd, .events = POLLIN };
        for (unsigned i = 0; i < ne->nlisteners; i++)
            fds[i + 1] = (struct pollfd){ .fd = ne->listeners[i].fd, .events = POLLIN };
        int n = poll(fds, ne->nlisteners + 1, timeout);
        if (n < 0 && errno != EINTR)
            break;
        if (fds[0].revents) {
            uint64_t v;
            (void)!read(ne->stop_fd, &v, sizeof(v));
            if (atomic_load(&ne->accept_stop))
                break;
            reap_clients(ne, false);
        }
        for (unsigned i = 0; n > 0 && i < ne->nlisteners; i++) {
            if (!fds[i + 1].revents)
                continue;
            int fd = accept4(ne->listeners[i].fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0)
                new_client(ne, &ne->listeners[i], fd);
            else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                backoff = true;
        }
    }
    return NULL;
}

/* ---- listening ----------------------------------------------------------- */

static int add_listener(struct nbd_export *ne, int fd, bool tcp, gid_t gid, const char *path)
{
    if (ne->nlisteners == NBD_MAX_LISTENERS)
        return -ENOSPC;
    struct nbd_listener *l = &ne->listeners[ne->nlisteners];
    *l = (struct nbd_listener){ .fd = fd, .tcp = tcp, .gid = gid };
    if (path) {
        struct stat st;
        l->path = strdup(path);
        if (!l->path)
            return -ENOMEM;
        if (stat(path, &st) == 0) {
            l->dev = st.st_dev;
            l->ino = st.st_ino;
        }
    }
    ne->nlisteners++;
    return 0;
}

int nbd_export_listen_unix(struct nbd_export *ne, const char *path, gid_t gid)
{
    int fd = unix_listen(path, gid, gid != (gid_t)-1 ? 0660 : 0600, 0);
    if (fd < 0)
        return fd;
    int r = add_listener(ne, fd, false, gid, path);
    if (r < 0) {
        close(fd);
        unlink(path);
        return r;
    }
    return 0;
}

static int listen_addr(const struct addrinfo *ai)
{
    int one = 1;
    _cleanup_close_ int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                                    ai->ai_protocol);

    if (fd < 0)
        return -errno;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* [::] means IPv6 only; 0.0.0.0 is asked for separately. */
    if (ai->ai_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0)
        return -errno;
    int r = fd;
    fd = -1;
    return r;
}

int nbd_export_listen_tcp(struct nbd_export *ne, const char *host, uint16_t port)
{
    const struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
    };
    struct addrinfo *res;
    char service[8];
    int r;

    if (port == 0)
        return -EINVAL;
    snprintf(service, sizeof(service), "%u", port);
    r = getaddrinfo(host, service, &hints, &res);
    if (r != 0)
        return r == EAI_SYSTEM ? -errno : r == EAI_MEMORY ? -ENOMEM : -ENOENT;
    /* The first address that takes it: a name means one host, not all its addresses. */
    r = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = listen_addr(ai);
        if (fd < 0) {
            r = fd;
            continue;
        }
        r = add_listener(ne, fd, true, (gid_t)-1, NULL);
        if (r < 0)
            close(fd);
        break;
    }
    freeaddrinfo(res);
    return r;
}

int nbd_export_listen_fd(struct nbd_export *ne, int fd, gid_t gid)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int type = 0, listening = 0;
    socklen_t ilen = sizeof(int);

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &ilen) < 0)
        return -errno;
    ilen = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ilen) < 0)
        return -errno;
    if (type != SOCK_STREAM || !listening)
        return -EINVAL;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    if (ss.ss_family != AF_UNIX && ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
        return -EAFNOSUPPORT;
    /* No path: the file is the socket unit's to remove, not ours. */
    bool tcp = ss.ss_family != AF_UNIX;
    return add_listener(ne, fd, tcp, tcp ? (gid_t)-1 : gid, NULL);
}

/* ---- life cycle ---------------------------------------------------------- */

struct nbd_export *nbd_export_new(struct store *s, const struct nbd_export_options *o)
{
    unsigned maxc = o->max_connections ? o->max_connections : NBD_EXPORT_DEFAULT_CONNECTIONS;

    if (maxc > NBD_EXPORT_MAX_CONNECTIONS ||
        o->handshake_timeout > NBD_EXPORT_MAX_HANDSHAKE_TIMEOUT ||
        o->send_timeout > NBD_EXPORT_MAX_TIMEOUT ||
        o->send_timeout_unix > NBD_EXPORT_MAX_TIMEOUT ||
        o->idle_timeout > NBD_EXPORT_MAX_TIMEOUT || o->tls >= NBD_TLS_MAX ||
        (o->tls != NBD_TLS_OFF && !o->tls_creds)) {
        errno = EINVAL;
        return NULL;
    }
    struct nbd_export *ne = calloc(1, sizeof(*ne));
    if (!ne)
        return NULL;
    ne->store = s;
    ne->owner = geteuid();
    ne->size = store_size(s);
    ne->read_only = o->read_only;
    ne->max_connections = maxc;
    ne->handshake_ms = 1000u * (o->handshake_timeout ? o->handshake_timeout
                                                     : NBD_EXPORT_DEFAULT_HANDSHAKE_TIMEOUT);
    ne->send_timeout_s = o->send_timeout;
    ne->send_timeout_unix_s = o->send_timeout_unix;
    ne->idle_timeout_s = o->idle_timeout;
    ne->nthreads = o->threads;
    ne->sender_init = o->sender_init;
    ne->tls = o->tls;
    ne->tls_creds = o->tls_creds;
    ne->job_run = nbd_job_run;
    ne->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ne->listeners = calloc(NBD_MAX_LISTENERS, sizeof(*ne->listeners));
    if (o->description)
        ne->description = strdup(o->description);
    pthread_mutex_init(&ne->pool_lock, NULL);
    pthread_cond_init(&ne->pool_cond, NULL);
    pthread_cond_init(&ne->jobs_cond, NULL);
    pthread_mutex_init(&ne->clients_lock, NULL);
    if (ne->stop_fd < 0 || !ne->listeners || (o->description && !ne->description)) {
        int e = ne->stop_fd < 0 ? errno : ENOMEM;
        nbd_export_free(ne);
        errno = e;
        return NULL;
    }
    return ne;
}

int nbd_export_start(struct nbd_export *ne)
{
    int r;

    if (ne->nthreads > 0) {
        r = nbd_pool_start(ne);
        if (r < 0)
            return r;
    }
    r = pthread_create(&ne->accept_thread, NULL, accept_main, ne);
    if (r != 0)
        return -r;
    ne->accepting = true;
    return 0;
}

void nbd_export_get_stats(struct nbd_export *ne, struct nbd_export_stats *ret)
{
    *ret = (struct nbd_export_stats){
        .connections = atomic_load(&ne->n_connections),
        .refused = atomic_load(&ne->n_refused),
        .strangers = atomic_load(&ne->n_strangers),
        .dropped = atomic_load(&ne->n_dropped),
        .timed_out = atomic_load(&ne->n_timed_out),
        .send_timeouts = atomic_load(&ne->n_send_timeouts),
        .idle_timeouts = atomic_load(&ne->n_idle_timeouts),
        .queued_bytes = atomic_load(&ne->queued_bytes),
        .active = atomic_load(&ne->active),
    };
    if (atomic_load(&ne->sends_active) > 0) {
        uint64_t now = monotonic_coarse_ms();
        uint64_t done = atomic_load(&ne->send_done_ms);
        ret->send_stall_ms = now > done ? now - done : 0;
    }
}

void nbd_export_free(struct nbd_export *ne)
{
    if (!ne)
        return;
    if (ne->accepting) {
        uint64_t one = 1;
        atomic_store(&ne->accept_stop, true);
        (void)!write(ne->stop_fd, &one, sizeof(one));
        pthread_join(ne->accept_thread, NULL);
    }
    for (unsigned i = 0; i < ne->nlisteners; i++) {
        struct nbd_listener *l = &ne->listeners[i];
        struct stat st;
        close(l->fd);
        /* Remove the socket only if it is still ours. */
        if (l->path && stat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
            unlink(l->path);
        free(l->path);
    }

    mutex_lock(&ne->clients_lock);
    for (struct nbd_client *cl = ne->clients; cl; cl = cl->next)
        if (cl->fd >= 0)
            shutdown(cl->fd, SHUT_RDWR);
    mutex_unlock(&ne->clients_lock);
    reap_clients(ne, true);

    nbd_pool_stop(ne);  /* also the buffers of a pool that failed to start */
    if (ne->stop_fd >= 0)
        close(ne->stop_fd);
    pthread_mutex_destroy(&ne->clients_lock);
    pthread_cond_destroy(&ne->pool_cond);
    pthread_cond_destroy(&ne->jobs_cond);
    pthread_mutex_destroy(&ne->pool_lock);
    free(ne->listeners);
    free(ne->description);
    free(ne);
}

