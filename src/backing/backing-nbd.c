/* SPDX-License-Identifier: MIT */
/*
 * The NBD backend: one libnbd handle, shared by every thread, behind a
 * rwlock (doc/backing.md, "NBD and reconnecting").  I/O runs under the
 * read lock; the handle is swapped or closed only under the write lock,
 * by the thread that saw it die or the one that reconnects, so nobody
 * uses a freed handle.  Reconnecting waits for nothing: one thread at a
 * time, at most once per second, outside the rwlock, and everyone else
 * fails at once with -ENOTCONN meanwhile.  A server is accepted only
 * writable, with a minimum block size that divides 4 KiB, and, on a
 * reconnect, no smaller than it was at open.
 *
 * Deadlines (doc/backing.md, "A server that stops answering").  libnbd's
 * synchronous calls wait for a reply for ever, holding the handle, so one
 * server that stopped answering would hang every thread that touches the
 * backing store.  Requests and connects here are libnbd's asynchronous
 * ones, driven by nbd_poll() with what is left of a deadline, one request
 * at a time on a connection (as the synchronous calls were: libnbd holds
 * the handle for the whole of one).  A request whose deadline passes
 * leaves its command in libnbd, pointing at the caller's buffer: so the
 * connection is marked dead at once, nothing but nbd_close() touches its
 * handle again, and it is dropped as a connection that died is.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backing-internal.h"
#include "cleanup.h"
#include "clock.h"
#include "counter.h"

/* One connection to the backing server and what it said it can do; replaced as a whole. */
struct nbd_server_link {
    struct nbd_handle *h;
    bool can_trim, can_flush;
    uint32_t min_block;     /* transfers are whole multiples of this */

    pthread_mutex_t lock; /* guards busy and dead; never held while waiting for the server */
    pthread_cond_t turn;  /* busy went false or dead true; waits on CLOCK_MONOTONIC */
    bool busy;            /* a request is on h: one at a time */
    bool dead;            /* a request timed out: only nbd_close() may touch h now */
};

struct backing_nbd {
    struct backing b;
    char *uri;
    uint64_t size;              /* the server's size at open: never less after */
    unsigned timeout_ms;        /* each request's and each connect's; set at open */

    pthread_rwlock_t rw;        /* read: I/O on conn; write: swapping conn */
    struct nbd_server_link *conn;      /* NULL while disconnected */
    /* conn != NULL, for stats without the rwlock; atomic, relaxed. */
    atomic_bool connected;

    pthread_mutex_t reconnecting;   /* held (trylock) by the one reconnecting */
    uint64_t last_try_ms;           /* monotonic_ms(); under reconnecting */
    /* When the last connection was dropped (monotonic_ms()); atomic, relaxed. */
    _Atomic uint64_t dropped_ms;
};

/* At most one connect attempt per second while the server is away. */
#define NBD_RECONNECT_INTERVAL_MS 1000u

static void conn_free(struct nbd_server_link *c)
{
    if (!c)
        return;
    nbdlib.close(c->h);
    pthread_cond_destroy(&c->turn);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/*
 * Let h's state machine make one step, waiting for the server until the
 * deadline (monotonic_ms()) at most: 0 (a step, or none yet before the
 * deadline), -ETIMEDOUT once it has passed, or libnbd's error.
 */
static int handle_poll(struct nbd_handle *h, uint64_t deadline)
{
    uint64_t now = monotonic_ms();
    if (now >= deadline)
        return -ETIMEDOUT;
    uint64_t left = deadline - now;
    if (nbdlib.poll(h, left > INT_MAX ? INT_MAX : (int)left) == -1)
        return -(nbdlib.get_errno() ?: EIO);
    return 0;
}

/* Connect h to uri and finish the handshake by the deadline: 0 or a negative errno. */
static int handle_connect(struct nbd_handle *h, const char *uri, uint64_t deadline)
{
    if (nbdlib.aio_connect_uri(h, uri) == -1)
        return -(nbdlib.get_errno() ?: ECONNREFUSED);
    while (nbdlib.aio_is_connecting(h) == 1) {
        int r = handle_poll(h, deadline);
        if (r < 0)
            return r;
    }
    return nbdlib.aio_is_ready(h) == 1 ? 0 : -(nbdlib.get_errno() ?: ECONNREFUSED);
}

/*
 * Connect h to uri by the deadline and check the export is one we can use:
 * writable, and with a minimum block size a 4 KiB block is a multiple of.
 * 0 with its size and minimum block size (0 or -1: the server did not say),
 * or a negative errno with errno and err set.
 */
static int conn_check(struct nbd_handle *h, const char *uri, uint64_t deadline,
                      int64_t *ret_size, int64_t *ret_min_block, char *err, size_t errlen)
{
    int r = handle_connect(h, uri, deadline);
    if (r < 0)
        return open_fail(err, errlen, -r, "cannot connect to the NBD server: %s", strerror(-r));
    if (nbdlib.is_read_only(h) != 0)
        return open_fail(err, errlen, ENOTSUP, "the NBD export is read-only");
    int64_t size = nbdlib.get_size(h);
    if (size < 0) {
        int e = nbdlib.get_errno() ?: EIO;
        return open_fail(err, errlen, e, "cannot get the NBD export's size: %s", strerror(e));
    }
    int64_t min_block = nbdlib.get_block_size(h, LIBNBD_SIZE_MINIMUM);
    if (min_block > 0 && (min_block > BACKING_BLOCK_SIZE || BACKING_BLOCK_SIZE % min_block != 0))
        return open_fail(err, errlen, ENOTSUP, "the NBD export's minimum block size %" PRId64
                         " does not divide %u", min_block, BACKING_BLOCK_SIZE);
    *ret_size = size;
    *ret_min_block = min_block;
    return 0;
}

/* A link for h, idle; NULL when out of memory. */
static struct nbd_server_link *conn_new(struct nbd_handle *h)
{
    struct nbd_server_link *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&c->turn, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&c->lock, NULL);
    c->h = h;
    return c;
}

/*
 * A connection to uri that conn_check() accepts, made by the deadline, with
 * the export's size in *ret_size.  On failure returns NULL with errno set
 * and the reason in err (when err is not NULL).
 */
static struct nbd_server_link *conn_open(const char *uri, uint64_t deadline,
                                         uint64_t *ret_size, char *err, size_t errlen)
{
    struct nbd_handle *h = nbdlib.create();
    if (!h) {
        int e = nbdlib.get_errno() ?: ENOMEM;
        open_fail(err, errlen, e, "cannot create an NBD handle: %s",
                  nbdlib.get_error() ?: strerror(e));
        return NULL;
    }

    int64_t size = 0, min_block = 1;
    struct nbd_server_link *c = NULL;
    if (conn_check(h, uri, deadline, &size, &min_block, err, errlen) == 0 && !(c = conn_new(h)))
        open_fail(err, errlen, ENOMEM, "out of memory");
    if (!c) {
        int e = errno;
        nbdlib.close(h);
        errno = e;
        return NULL;
    }
    c->can_trim = nbdlib.can_trim(h) == 1;
    c->can_flush = nbdlib.can_flush(h) == 1;
    /* 0 or -1: the server did not say, and any length goes. */
    c->min_block = min_block > 0 ? (uint32_t)min_block : 1;
    *ret_size = (uint64_t)size;
    return c;
}

static bool errno_means_gone(int e)
{
    return e == ENOTCONN || e == ECONNRESET || e == EPIPE || e == ESHUTDOWN;
}

/*
 * Drop conn if it is still the current connection.  Takes the write lock,
 * so it waits for the calls still using it (each bounded by its deadline);
 * the caller must not hold the read lock.
 */
static void nbd_disconnect(struct backing_nbd *n, struct nbd_server_link *conn)
{
    rwlock_wrlock(&n->rw);
    bool ours = n->conn == conn;
    if (ours) {
        n->conn = NULL;
        atomic_store_explicit(&n->connected, false, memory_order_relaxed);
        atomic_store_explicit(&n->dropped_ms, monotonic_ms(), memory_order_relaxed);
    }
    rwlock_unlock(&n->rw);
    if (ours)
        conn_free(conn);
}

/*
 * One try to connect again, under n->reconnecting: 0 when a connection is
 * in place afterwards (ours or another thread's), else -ENOTCONN, also when
 * the last try, or the drop of the last connection, was less than a second
 * ago.  Counting from the end of a try that timed out, not its start, keeps
 * a server that accepts connections but never answers from holding up
 * every call after it for a whole timeout.
 */
static int nbd_try_connect(struct backing_nbd *n)
{
    rwlock_rdlock(&n->rw);
    bool connected = n->conn != NULL;
    rwlock_unlock(&n->rw);
    if (connected)
        return 0;

    uint64_t now = monotonic_ms();
    uint64_t dropped = atomic_load_explicit(&n->dropped_ms, memory_order_relaxed);
    if (now - n->last_try_ms < NBD_RECONNECT_INTERVAL_MS ||
        now - dropped < NBD_RECONNECT_INTERVAL_MS)
        return -ENOTCONN;

    uint64_t size = 0;
    struct nbd_server_link *c = conn_open(n->uri, now + n->timeout_ms, &size, NULL, 0);
    n->last_try_ms = monotonic_ms();
    if (c && size < n->size) {
        /* Blocks we wrote may lie past its end: not the server we had. */
        conn_free(c);
        c = NULL;
    }
    if (!c)
        return -ENOTCONN;
    rwlock_wrlock(&n->rw);
    n->conn = c;
    atomic_store_explicit(&n->connected, true, memory_order_relaxed);
    rwlock_unlock(&n->rw);
    counter_add(&n->b.reconnects, 1);
    return 0;
}

/*
 * Called with no lock held when the backing store is disconnected.  Returns
 * 0 when a connection is in place afterwards, -ENOTCONN otherwise, without
 * waiting: if another thread is connecting, it fails at once.
 */
static int nbd_reconnect(struct backing_nbd *n)
{
    if (!mutex_trylock(&n->reconnecting))
        return -ENOTCONN;
    int r = nbd_try_connect(n);
    mutex_unlock(&n->reconnecting);
    return r;
}

/*
 * Take c for one request, waiting for the one on it until the deadline:
 * 0 (c is ours until conn_put), -ETIMEDOUT when the deadline came first,
 * -ENOTCONN when a request on c timed out meanwhile.  The caller holds the
 * rwlock for reading, which keeps c alive.
 */
static int conn_take(struct nbd_server_link *c, uint64_t deadline)
{
    struct timespec ts = { .tv_sec = (time_t)(deadline / 1000),
                           .tv_nsec = (long)(deadline % 1000) * 1000000L };
    LOCK_GUARD(&c->lock);
    while (c->busy && !c->dead)
        if (pthread_cond_timedwait(&c->turn, &c->lock, &ts) == ETIMEDOUT && c->busy && !c->dead)
            return -ETIMEDOUT;
    if (c->dead)
        return -ENOTCONN;
    c->busy = true;
    return 0;
}

/* Give c back after a request; dead: it timed out or found c gone, and nobody may use c again. */
static void conn_put(struct nbd_server_link *c, bool dead)
{
    LOCK_GUARD(&c->lock);
    c->busy = false;
    c->dead = dead;
    if (dead)
        pthread_cond_broadcast(&c->turn);
    else
        pthread_cond_signal(&c->turn);
}

enum nbd_op { NBD_OP_READ, NBD_OP_WRITE, NBD_OP_TRIM, NBD_OP_FLUSH };

/* Send op on c's handle: its cookie, or -1 with libnbd's error. */
static int64_t conn_send(struct nbd_server_link *c, enum nbd_op op, void *buf, size_t len,
                         uint64_t off)
{
    switch (op) {
    case NBD_OP_READ:
        return nbdlib.aio_pread(c->h, buf, len, off, NBD_NULL_COMPLETION, 0);
    case NBD_OP_WRITE:
        return nbdlib.aio_pwrite(c->h, buf, len, off, NBD_NULL_COMPLETION, 0);
    case NBD_OP_TRIM:
        return nbdlib.aio_trim(c->h, len, off, NBD_NULL_COMPLETION, 0);
    case NBD_OP_FLUSH:
        return nbdlib.aio_flush(c->h, NBD_NULL_COMPLETION, 0);
    }
    abort();
}

/*
 * Run op on c, taken, until its reply or the deadline: 0, -ETIMEDOUT, or
 * the errno libnbd gives (the server's error, or the connection's).
 */
static int conn_run(struct nbd_server_link *c, enum nbd_op op, void *buf, size_t len,
                    uint64_t off, uint64_t deadline)
{
    if ((op == NBD_OP_TRIM && !c->can_trim) || (op == NBD_OP_FLUSH && !c->can_flush))
        return 0;
    int64_t cookie = conn_send(c, op, buf, len, off);
    if (cookie == -1)
        return -(nbdlib.get_errno() ?: EIO);
    for (;;) {
        int done = nbdlib.aio_command_completed(c->h, (uint64_t)cookie);
        if (done == 1)
            return 0;
        if (done == -1)
            return -(nbdlib.get_errno() ?: EIO);
        int r = handle_poll(c->h, deadline);
        if (r < 0)
            return r;
    }
}

/*
 * One request on c, taken: lengths that are not a multiple of the server's
 * minimum block size are padded through a bounce buffer (a 4 KiB block is
 * ours alone, so padding a write with zeros harms nothing).  Its deadline
 * starts now, not when the caller did: time spent waiting for c is the
 * request ahead's, and must not make this one time out and kill a
 * connection that answers.
 */
static int conn_request(struct nbd_server_link *c, unsigned timeout_ms, enum nbd_op op,
                        void *buf, size_t len, uint64_t off)
{
    unsigned char bounce[BACKING_BLOCK_SIZE];
    size_t xlen = len;
    if ((op == NBD_OP_READ || op == NBD_OP_WRITE) && len % c->min_block != 0) {
        xlen = (len / c->min_block + 1) * c->min_block;
        if (op == NBD_OP_WRITE) {
            memcpy(bounce, buf, len);
            memset(bounce + len, 0, xlen - len);
        }
    }
    void *xbuf = xlen == len ? buf : bounce;
    int r = conn_run(c, op, xbuf, xlen, off, monotonic_ms() + timeout_ms);
    if (r == 0 && op == NBD_OP_READ && xbuf != buf)
        memcpy(buf, bounce, len);
    return r;
}

/*
 * Run one request on the current connection, reconnecting first if there
 * is none (at most once per second).  The wait for the connection, the
 * reconnect included, and the request each have the timeout: a call takes
 * at most about twice it.  A request that times out kills the connection
 * (see the top of this file); one that only waited too long for its turn
 * does not, as the request ahead will have timed out itself.
 */
static int nbd_do(struct backing_nbd *n, enum nbd_op op, void *buf, size_t len, uint64_t off)
{
    uint64_t deadline = monotonic_ms() + n->timeout_ms;
    rwlock_rdlock(&n->rw);
    struct nbd_server_link *c = n->conn;
    if (!c) {
        rwlock_unlock(&n->rw);
        int r = nbd_reconnect(n);
        if (r < 0)
            return r;
        rwlock_rdlock(&n->rw);
        c = n->conn;
        if (!c) {
            rwlock_unlock(&n->rw);
            return -ENOTCONN;
        }
    }

    int r = conn_take(c, deadline);
    bool gone = r == -ENOTCONN;
    if (r == 0) {
        r = conn_request(c, n->timeout_ms, op, buf, len, off);
        gone = r == -ETIMEDOUT;
        if (r < 0 && !gone &&
            (nbdlib.aio_is_dead(c->h) == 1 || nbdlib.aio_is_closed(c->h) == 1 ||
             errno_means_gone(-r))) {
            gone = true;
            r = -ENOTCONN;
        }
        conn_put(c, gone);
    }
    rwlock_unlock(&n->rw);
    if (gone)
        nbd_disconnect(n, c);
    return r;
}

static int nbd_backend_pread(struct backing *b, void *buf, size_t len, uint64_t off)
{
    return nbd_do((struct backing_nbd *)b, NBD_OP_READ, buf, len, off);
}

static int nbd_backend_pwrite(struct backing *b, const void *buf, size_t len, uint64_t off)
{
    /* nbd_do only reads through buf for a write. */
    return nbd_do((struct backing_nbd *)b, NBD_OP_WRITE, (void *)buf, len, off);
}

static void nbd_backend_discard(struct backing *b, uint64_t off, uint64_t len)
{
    (void)nbd_do((struct backing_nbd *)b, NBD_OP_TRIM, NULL, (size_t)len, off);
}

static int nbd_backend_flush(struct backing *b)
{
    return nbd_do((struct backing_nbd *)b, NBD_OP_FLUSH, NULL, 0, 0);
}

/*
 * Tell the server we are leaving, and wait for it to close until the
 * deadline at most: one that stopped answering must not keep uzramd from
 * stopping.  Not on a connection a request timed out on, whose handle
 * nobody may drive again.
 */
static void conn_goodbye(struct nbd_server_link *c, uint64_t deadline)
{
    if (c->dead || nbdlib.aio_disconnect(c->h, 0) == -1)
        return;
    while (nbdlib.aio_is_closed(c->h) != 1 && nbdlib.aio_is_dead(c->h) != 1)
        if (handle_poll(c->h, deadline) < 0)
            return;
}

static void nbd_backend_close(struct backing *b)
{
    struct backing_nbd *n = (struct backing_nbd *)b;
    if (n->conn) {
        conn_goodbye(n->conn, monotonic_ms() + n->timeout_ms);
        conn_free(n->conn);
    }
    pthread_rwlock_destroy(&n->rw);
    pthread_mutex_destroy(&n->reconnecting);
    free(n->uri);
}

static void nbd_backend_stats(struct backing *b, struct backing_stats *ret)
{
    struct backing_nbd *n = (struct backing_nbd *)b;
    /* Not the rwlock: the daemon's main loop asks, and must not wait for the server. */
    ret->connected = atomic_load_explicit(&n->connected, memory_order_relaxed);
}

/* No direct I/O: libnbd allocates for each request whatever we do. */
static const struct backing_ops nbd_ops = {
    .type = "nbd",
    .pread = nbd_backend_pread,
    .pwrite = nbd_backend_pwrite,
    .discard = nbd_backend_discard,
    .flush = nbd_backend_flush,
    .close = nbd_backend_close,
    .stats = nbd_backend_stats,
};

struct backing *backing_nbd_open(const char *uri, uint64_t size, unsigned timeout_ms,
                                 char *err, size_t errlen)
{
    uint64_t have = 0;
    if (nbdlib_load(err, errlen) < 0)
        return NULL;
    struct nbd_server_link *c = conn_open(uri, monotonic_ms() + timeout_ms, &have, err, errlen);
    if (!c)
        return NULL;
    if (usable_blocks(have, size) == 0) {
        conn_free(c);
        open_fail(err, errlen, EINVAL, "the NBD export is smaller than one %u-byte block",
                  BACKING_BLOCK_SIZE);
        return NULL;
    }

    struct backing_nbd *n = calloc(1, sizeof(*n));
    char *u = strdup(uri);
    if (!n || !u) {
        conn_free(c);
        free(n);
        free(u);
        open_fail(err, errlen, ENOMEM, "out of memory");
        return NULL;
    }

    /*
     * Prefer writers: when a connection dies, the thread that closes it
     * must not wait behind a stream of readers that keep failing on it.
     */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&n->rw, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&n->reconnecting, NULL);

    n->b.ops = &nbd_ops;
    n->b.blocks = usable_blocks(have, size);
    n->uri = u;
    n->size = have;
    n->timeout_ms = timeout_ms;
    n->conn = c;
    atomic_init(&n->connected, true);
    n->last_try_ms = monotonic_ms();
    return &n->b;
}

/*
 * An NBD URI as libnbd takes it: the scheme is nbd or nbds, optionally
 * with +unix or +vsock.  Anything else is a path, so a file named
 * "nbd-backing" in the current directory is still a file.
 */
bool backing_spec_is_uri(const char *spec)
{
    static const char *const schemes[] = {
        "nbd:", "nbds:", "nbd+unix:", "nbds+unix:", "nbd+vsock:", "nbds+vsock:",
    };
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (strncmp(spec, schemes[i], strlen(schemes[i])) == 0)
            return true;
    return false;
}
