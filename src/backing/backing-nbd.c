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
 */
#include <errno.h>
#include <inttypes.h>
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
};

struct backing_nbd {
    struct backing b;
    char *uri;
    uint64_t size;              /* the server's size at open: never less after */

    pthread_rwlock_t rw;        /* read: I/O on conn; write: swapping conn */
    struct nbd_server_link *conn;      /* NULL while disconnected */

    pthread_mutex_t reconnecting;   /* held (trylock) by the one reconnecting */
    uint64_t last_try_ms;           /* monotonic_ms(); under reconnecting */
};

/* At most one connect attempt per second while the server is away. */
#define NBD_RECONNECT_INTERVAL_MS 1000u

static void conn_free(struct nbd_server_link *c)
{
    if (!c)
        return;
    nbdlib.close(c->h);
    free(c);
}

/*
 * Connect h to uri and check the export is one we can use: writable, and
 * with a minimum block size a 4 KiB block is a multiple of.  0 with its
 * size and minimum block size (0 or -1: the server did not say), or a
 * negative errno with errno and err set.
 */
static int conn_check(struct nbd_handle *h, const char *uri, int64_t *ret_size,
                      int64_t *ret_min_block, char *err, size_t errlen)
{
    if (nbdlib.connect_uri(h, uri) == -1) {
        int e = nbdlib.get_errno() ?: ECONNREFUSED;
        return open_fail(err, errlen, e, "cannot connect to the NBD server: %s", strerror(e));
    }
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

/*
 * A connection to uri that conn_check() accepts, with the export's size
 * in *ret_size.  On failure returns NULL with errno set and the reason in
 * err (when err is not NULL).
 */
static struct nbd_server_link *conn_open(const char *uri, uint64_t *ret_size, char *err, size_t errlen)
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
    if (conn_check(h, uri, &size, &min_block, err, errlen) == 0 && !(c = calloc(1, sizeof(*c))))
        open_fail(err, errlen, ENOMEM, "out of memory");
    if (!c) {
        int e = errno;
        nbdlib.close(h);
        errno = e;
        return NULL;
    }
    c->h = h;
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
 * so it waits for the calls still using it; the caller must not hold the
 * read lock.
 */
static void nbd_disconnect(struct backing_nbd *n, struct nbd_server_link *conn)
{
    rwlock_wrlock(&n->rw);
    bool ours = n->conn == conn;
    if (ours)
        n->conn = NULL;
    rwlock_unlock(&n->rw);
    if (ours)
        conn_free(conn);
}

/*
 * One try to connect again, under n->reconnecting: 0 when a connection is
 * in place afterwards (ours or another thread's), else -ENOTCONN, also when
 * the last try was less than a second ago.
 */
static int nbd_try_connect(struct backing_nbd *n)
{
    rwlock_rdlock(&n->rw);
    bool connected = n->conn != NULL;
    rwlock_unlock(&n->rw);
    if (connected)
        return 0;

    uint64_t now = monotonic_ms();
    if (now - n->last_try_ms < NBD_RECONNECT_INTERVAL_MS)
        return -ENOTCONN;
    n->last_try_ms = now;

    uint64_t size = 0;
    struct nbd_server_link *c = conn_open(n->uri, &size, NULL, 0);
    if (c && size < n->size) {
        /* Blocks we wrote may lie past its end: not the server we had. */
        conn_free(c);
        c = NULL;
    }
    if (!c)
        return -ENOTCONN;
    rwlock_wrlock(&n->rw);
    n->conn = c;
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

enum nbd_op { NBD_OP_READ, NBD_OP_WRITE, NBD_OP_TRIM, NBD_OP_FLUSH };

/*
 * Run one request on the current connection, reconnecting first if there
 * is none (at most once per second).  Lengths that are not a multiple of
 * the server's minimum block size are padded through a bounce buffer: a
 * 4 KiB block is ours alone, so padding a write with zeros harms nothing.
 */
static int nbd_do(struct backing_nbd *n, enum nbd_op op, void *buf, size_t len, uint64_t off)
{
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

    int r = 0;
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

    switch (op) {
    case NBD_OP_READ:
        r = nbdlib.pread(c->h, xbuf, xlen, off, 0);
        if (r == 0 && xbuf != buf)
            memcpy(buf, bounce, len);
        break;
    case NBD_OP_WRITE:
        r = nbdlib.pwrite(c->h, xbuf, xlen, off, 0);
        break;
    case NBD_OP_TRIM:
        r = c->can_trim ? nbdlib.trim(c->h, len, off, 0) : 0;
        break;
    case NBD_OP_FLUSH:
        r = c->can_flush ? nbdlib.flush(c->h, 0) : 0;
        break;
    }

    bool gone = false;
    if (r == -1) {
        int e = nbdlib.get_errno();
        gone = nbdlib.aio_is_dead(c->h) == 1 || nbdlib.aio_is_closed(c->h) == 1 ||
               errno_means_gone(e);
        r = gone ? -ENOTCONN : -(e ?: EIO);
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

static void nbd_backend_close(struct backing *b)
{
    struct backing_nbd *n = (struct backing_nbd *)b;
    if (n->conn) {
        /* Tell the server we are leaving; a dead one cannot hear it. */
        (void)nbdlib.shutdown(n->conn->h, 0);
        conn_free(n->conn);
    }
    pthread_rwlock_destroy(&n->rw);
    pthread_mutex_destroy(&n->reconnecting);
    free(n->uri);
}

static void nbd_backend_stats(struct backing *b, struct backing_stats *ret)
{
    struct backing_nbd *n = (struct backing_nbd *)b;
    rwlock_rdlock(&n->rw);
    ret->connected = n->conn != NULL;
    rwlock_unlock(&n->rw);
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

struct backing *backing_nbd_open(const char *uri, uint64_t size, char *err, size_t errlen)
{
    uint64_t have = 0;
    if (nbdlib_load(err, errlen) < 0)
        return NULL;
    struct nbd_server_link *c = conn_open(uri, &have, err, errlen);
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
    n->conn = c;
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
