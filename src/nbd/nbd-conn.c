/* SPDX-License-Identifier: MIT */
/*
 * One NBD client: the handshake and the transmission phase, over a byte
 * stream given as two callbacks (struct nbd_io).  Nothing here knows about
 * sockets or threads beyond one mutex, so that the fuzzer drives exactly
 * the code that serves real clients.
 *
 * The request path.  A 4 KiB request costs the store a few microseconds
 * (lz4 on write, less on read); system calls and thread hand-offs cost as
 * much, so the path is built to make few of them:
 *   - Input is read in large gulps into a per-connection buffer (rx), and
 *     every complete request found in it is served before reading again.
 *     A client with 16 requests in flight typically sends them together,
 *     and they cost one recv().
 *   - Small requests (payload up to NBD_INLINE_MAX) are served right there
 *     by the connection's thread: a write is compressed straight from rx,
 *     a read decompresses into a per-connection data buffer.  Handing a
 *     4 KiB request to another thread would cost two context switches,
 *     more than serving it; with two connections on two cores, the
 *     connection threads already keep every core busy.
 *   - Replies are gathered as iovecs (headers in a small area, data where
 *     it lies) and go out in one sendmsg() when the thread is about to
 *     block for more input: one system call answers a whole batch, and no
 *     data is copied.
 *   - The sendmsg() is not the connection thread's but its sender's, a
 *     thread of the connection's own (when the export has a worker pool,
 *     as a daemon's does): the batch is handed over, with the buffer its
 *     read data lies in, and the connection thread goes on reading with
 *     the other of its two batches.  Under memory pressure a reply may
 *     wait in the kernel for a socket buffer; requests then still drain,
 *     and the memory the kernel took for them comes free, which is what
 *     the reply is waiting for (uzramd(8), SWAP).  Workers hand their
 *     replies to the sender too, and never wait on a client that does not
 *     read.
 *   - Large requests (up to NBD_JOB_BUF_SIZE) go to the worker pool
 *     (nbd-server.c) in one of its job buffers and are answered out of
 *     order as they finish, so a 1 MiB read does not hold up the small
 *     requests behind it and several run on several cores.  Each worker
 *     replies with its own iovec list.  Larger ones still are served here
 *     in pieces (serve_stream()), through the connection's own buffers.
 * Nothing on this path allocates: the buffers are made and populated when
 * the connection starts, the job buffers when the pool does.
 * No lock is shared between connections on this path; within one, the
 * only lock taken per batch is the send lock, which makes each sendmsg()
 * a whole number of replies (or structured chunks) when workers reply too.
 *
 * Bounds.  Everything the client controls is bounded: option length
 * (NBD_MAX_OPTION_LEN, else dropped), options before transmission
 * (NBD_MAX_OPTIONS), write payload (NBD_MAX_PAYLOAD: beyond it the
 * stream cannot be followed, so the client gets EINVAL and is dropped),
 * queued large requests per connection (NBD_MAX_JOBS: past it the
 * connection stops reading until workers catch up; their buffers are the
 * export's fixed set in any case), and block status descriptors per reply.  Reads and writes
 * past the end, unknown commands and flags get the errors the protocol
 * names and the connection goes on.  A client that breaks the framing
 * (bad magic, unknown client flags) is dropped.
 */
#include "nbd-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "populate.h"
#include "nbd-proto.h"
#include "store.h"

/* The maximum block size we announce, and the largest payload we take. */
#define NBD_MAX_PAYLOAD (32u << 20)
/* Longer options are no request any client sends; dropping costs nothing. */
#define NBD_MAX_OPTION_LEN (64u << 10)
/* qemu and libnbd use fewer than ten; a loop of options is not a client. */
#define NBD_MAX_OPTIONS 128
/* Requests with at most this much data are served by the connection's thread. */
#define NBD_INLINE_MAX (128u << 10)
/* Room for an inline write with its header, and for many small ones at once. */
#define NBD_RX_SIZE (256u << 10)
/* Read data of one batch: 64 reads of 4 KiB, or two of NBD_INLINE_MAX. */
#define NBD_DATA_SIZE (256u << 10)
/* Large requests queued per connection. */
#define NBD_MAX_JOBS 16
/* Descriptors per BLOCK_STATUS reply; clients ask again from where it ends. */
#define NBD_MAX_EXTENTS 1024
/* iovecs and header bytes gathered before a send (IOV_MAX is 1024). */
#define NBD_TX_IOV 128
#define NBD_TX_HDR 4096
/* A connection's batches: one with its sender, one being filled. */
#define NBD_CONN_TXS 2
/* Our id for base:allocation, the only metadata context. */
#define NBD_CONTEXT_ALLOCATION 1
#define NBD_ALLOCATION "base:allocation"

/*
 * A batch of replies waiting to be sent.  A connection has NBD_CONN_TXS of
 * its own, each with a buffer for the read data its replies point into;
 * each job buffer has one for its reply.
 */
struct nbd_tx {
    struct nbd_conn *c;
    struct nbd_tx *next;        /* the sender's queue, or the connection's free batches */
    struct nbd_job *job;        /* a job's reply: the job goes back once sent */
    uint8_t *data;              /* a connection's batch: its read data (NBD_DATA_SIZE) */
    int niov;
    size_t hdr_used;
    bool ext_busy;              /* ext is referenced by a pending iovec */
    struct iovec iov[NBD_TX_IOV];
    uint8_t hdr[NBD_TX_HDR];
    uint8_t ext[4 + 8 * NBD_MAX_EXTENTS];
};

struct nbd_conn {
    struct nbd_export *ne;
    const struct nbd_io *io;
    struct store *store;
    uint64_t size;

    bool structured;            /* NBD_OPT_STRUCTURED_REPLY agreed */
    bool meta_alloc;            /* base:allocation selected */
    bool no_zeroes;
    uint16_t tflags;
    atomic_bool broken;         /* a send failed: stop serving */

    /* Unread input is rx[rx_pos, rx_len).  The connection's thread only. */
    uint8_t *rx;
    size_t rx_pos, rx_len;
    struct nbd_tx *tx;          /* the batch being gathered (connection's thread) */
    size_t data_used;           /* of tx->data */
    struct nbd_tx *txs[NBD_CONN_TXS];

    pthread_mutex_t send_lock;  /* one sendv() sequence at a time */
    pthread_mutex_t lock;       /* guards jobs and the sender's fields below */
    pthread_cond_t cond;        /* a job finished, a batch was sent or queued */
    unsigned jobs;

    /* The sender (see the top); all under lock. */
    pthread_t sender;
    bool sender_running, sender_stop;
    struct nbd_tx *queue_head, *queue_tail;
    struct nbd_tx *free_txs;
};

/* ---- replies ------------------------------------------------------------- */

struct nbd_tx *nbd_tx_new(void)
{
    struct nbd_tx *tx = calloc(1, sizeof(struct nbd_tx));
    /* Resident before the first reply (see "Nothing on this path allocates"). */
    if (tx && mem_populate_buf(tx, sizeof(*tx)) < 0) {
        free(tx);
        return NULL;
    }
    return tx;
}

void nbd_tx_free(struct nbd_tx *tx)
{
    if (tx)
        free(tx->data);
    free(tx);
}

/* A connection's batch: a tx with its read data buffer, both resident. */
static struct nbd_tx *conn_tx_new(struct nbd_conn *c)
{
    struct nbd_tx *tx = nbd_tx_new();
    if (!tx)
        return NULL;
    tx->c = c;
    tx->data = malloc(NBD_DATA_SIZE);
    if (!tx->data || mem_populate_buf(tx->data, NBD_DATA_SIZE) < 0) {
        nbd_tx_free(tx);
        return NULL;
    }
    return tx;
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * One sendv() call, counted in the export's sends under way (for
 * nbd_export_stats.send_stall_ms).
 */
static ssize_t sendv_counted(struct nbd_conn *c, const struct iovec *iov, int n)
{
    struct nbd_export *ne = c->ne;
    if (atomic_fetch_add(&ne->sends_active, 1) == 0)
        atomic_store(&ne->send_done_ms, monotonic_ms());
    ssize_t w = c->io->sendv(c->io->ctx, iov, n);
    atomic_store(&ne->send_done_ms, monotonic_ms());
    atomic_fetch_sub(&ne->sends_active, 1);
    return w;
}

/*
 * Send all of iov (which it consumes), the caller holding the send lock.
 * -EPIPE (and the connection marked broken) if the stream failed.
 */
static int sendv_all(struct nbd_conn *c, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = sendv_counted(c, iov, n);
        if (w <= 0) {
            atomic_store(&c->broken, true);
            return -EPIPE;
        }
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/*
 * Send everything gathered, as whole replies, under the connection's send
 * lock.  -EPIPE (and the connection marked broken) if the stream failed.
 */
static int tx_flush(struct nbd_tx *tx)
{
    struct nbd_conn *c = tx->c;
    int r = 0;

    if (tx->niov == 0)
        return 0;
    if (atomic_load_explicit(&c->broken, memory_order_relaxed)) {
        r = -EPIPE;
    } else {
        LOCK_GUARD(&c->send_lock);
        r = sendv_all(c, tx->iov, tx->niov);
    }
    tx->niov = 0;
    tx->hdr_used = 0;
    tx->ext_busy = false;
    return r;
}

/* A batch was sent (or dropped, the stream having failed): give it back.  c->lock held. */
static void tx_done_locked(struct nbd_conn *c, struct nbd_tx *tx)
{
    tx->niov = 0;
    tx->hdr_used = 0;
    tx->ext_busy = false;
    if (tx->job) {
        struct nbd_job *j = tx->job;
        tx->job = NULL;
        nbd_job_put(c->ne, j);
        c->jobs--;
    } else {
        tx->next = c->free_txs;
        c->free_txs = tx;
    }
    pthread_cond_broadcast(&c->cond);
}

/* Hand a gathered batch to the sender.  c->lock not held. */
static void tx_submit(struct nbd_conn *c, struct nbd_tx *tx)
{
    LOCK_GUARD(&c->lock);
    tx->next = NULL;
    if (c->queue_tail)
        c->queue_tail->next = tx;
    else
        c->queue_head = tx;
    c->queue_tail = tx;
    pthread_cond_broadcast(&c->cond);
}

/*
 * The sender (see the top): send each batch handed over, in order, under
 * the send lock, and give it back.  Once the stream has failed, batches
 * are given back unsent.  Ends when told to and the queue is empty.
 */
static void *sender_main(void *arg)
{
    struct nbd_conn *c = arg;

    if (c->ne->sender_init)
        c->ne->sender_init();
    stack_prefault(64u << 10);
    mutex_lock(&c->lock);
    for (;;) {
        while (!c->queue_head && !c->sender_stop)
            pthread_cond_wait(&c->cond, &c->lock);
        struct nbd_tx *tx = c->queue_head;
        if (!tx)
            break;
        c->queue_head = tx->next;
        if (!c->queue_head)
            c->queue_tail = NULL;
        mutex_unlock(&c->lock);
        if (!atomic_load_explicit(&c->broken, memory_order_relaxed)) {
            LOCK_GUARD(&c->send_lock);
            (void)sendv_all(c, tx->iov, tx->niov);  /* a failure marks c broken */
        }
        mutex_lock(&c->lock);
        tx_done_locked(c, tx);
    }
    mutex_unlock(&c->lock);
    return NULL;
}

/*
 * Between requests only: send the connection thread's replies (hand them
 * to the sender, and go on with a free batch, waiting for one if both are
 * with it; or, without a sender, send them here) and start a new batch of
 * read data.  Not within a reply, whose later chunks may still point into
 * the batch's data.  -ECONNRESET if the stream failed.
 */
static int conn_flush(struct nbd_conn *c)
{
    int r = 0;

    c->data_used = 0;
    if (!c->sender_running) {
        r = tx_flush(c->tx);
    } else if (c->tx->niov > 0) {
        tx_submit(c, c->tx);
        LOCK_GUARD(&c->lock);
        while (!c->free_txs)
            pthread_cond_wait(&c->cond, &c->lock);
        c->tx = c->free_txs;
        c->free_txs = c->tx->next;
    }
    if (atomic_load_explicit(&c->broken, memory_order_relaxed))
        r = -EPIPE;
    return r < 0 ? -ECONNRESET : 0;
}

/*
 * Make room for one reply or chunk of niov iovecs and hdr_len header bytes,
 * flushing what is gathered if needed: a reply is never split between two
 * sends, which could let another thread's reply in between.
 */
static void tx_reserve(struct nbd_tx *tx, int niov, size_t hdr_len)
{
    if (tx->niov + niov > NBD_TX_IOV || tx->hdr_used + hdr_len > NBD_TX_HDR)
        (void)tx_flush(tx);     /* a failure shows as c->broken */
}

/* len bytes of header space (reserved); consecutive headers share an iovec. */
static uint8_t *tx_hdr(struct nbd_tx *tx, size_t len)
{
    uint8_t *p = tx->hdr + tx->hdr_used;

    if (tx->niov > 0 && (uint8_t *)tx->iov[tx->niov - 1].iov_base +
                        tx->iov[tx->niov - 1].iov_len == p)
        tx->iov[tx->niov - 1].iov_len += len;
    else
        tx->iov[tx->niov++] = (struct iovec){ .iov_base = p, .iov_len = len };
    tx->hdr_used += len;
    return p;
}

/* Data sent from where it lies: it must stay put until the next flush. */
static void tx_data(struct nbd_tx *tx, const void *p, size_t len)
{
    if (len > 0)
        tx->iov[tx->niov++] = (struct iovec){ .iov_base = (void *)p, .iov_len = len };
}

static void reply_simple(struct nbd_tx *tx, uint64_t cookie, uint32_t error,
                         const void *data, size_t len)
{
    tx_reserve(tx, 2, NBD_SIMPLE_SIZE);
    uint8_t *h = tx_hdr(tx, NBD_SIMPLE_SIZE);
    nbd_put32(h, NBD_SIMPLE_MAGIC);
    nbd_put32(h + 4, error);
    nbd_put64(h + 8, cookie);
    if (error == 0)
        tx_data(tx, data, len);
}

/* A structured chunk's header, with extra bytes of header payload after it. */
static uint8_t *chunk_hdr(struct nbd_tx *tx, uint64_t cookie, uint16_t flags, uint16_t type,
                          uint32_t len, size_t extra)
{
    uint8_t *h = tx_hdr(tx, NBD_CHUNK_SIZE + extra);
    nbd_put32(h, NBD_STRUCTURED_MAGIC);
    nbd_put16(h + 4, flags);
    nbd_put16(h + 6, type);
    nbd_put64(h + 8, cookie);
    nbd_put32(h + 16, len);
    return h + NBD_CHUNK_SIZE;
}

/*
 * An error reply: a structured error chunk where the request must have a
 * structured reply (READ and BLOCK_STATUS once negotiated), else simple.
 */
static void reply_error(struct nbd_tx *tx, const struct nbd_req *req, uint32_t error)
{
    struct nbd_conn *c = tx->c;

    if (c->structured && (req->type == NBD_CMD_READ || req->type == NBD_CMD_BLOCK_STATUS)) {
        tx_reserve(tx, 1, NBD_CHUNK_SIZE + 6);
        uint8_t *p = chunk_hdr(tx, req->cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, 6, 6);
        nbd_put32(p, error);
        nbd_put16(p + 4, 0);    /* no message */
        return;
    }
    reply_simple(tx, req->cookie, error, NULL, 0);
}

/* The store's -errno as an NBD error: the wire has only a few numbers. */
static uint32_t nbd_errno(int r)
{
    switch (-r) {
    case EPERM:
        return NBD_EPERM;
    case EINVAL:
        return NBD_EINVAL;
    case ENOSPC:
        return NBD_ENOSPC;
    case ENOMEM:
        return NBD_ENOMEM;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    default:
        return NBD_EIO;
    }
}

/* ---- input --------------------------------------------------------------- */

/*
 * Make n bytes (at most NBD_RX_SIZE) of input available at rx + rx_pos.
 * Replies gathered so far are sent before blocking.  -ECONNRESET at the end
 * of the stream or on failure.
 */
static int rx_fill(struct nbd_conn *c, size_t n)
{
    while (c->rx_len - c->rx_pos < n) {
        if (c->rx_pos > 0 && c->rx_pos + n > NBD_RX_SIZE) {
            memmove(c->rx, c->rx + c->rx_pos, c->rx_len - c->rx_pos);
            c->rx_len -= c->rx_pos;
            c->rx_pos = 0;
        }
        if (conn_flush(c) < 0)
            return -ECONNRESET;
        ssize_t r = c->io->recv(c->io->ctx, c->rx + c->rx_len, NBD_RX_SIZE - c->rx_len);
        if (r <= 0)
            return -ECONNRESET;
        c->rx_len += (size_t)r;
    }
    return 0;
}

/* Consume n bytes of what is buffered (the caller made sure they are). */
static void rx_consume(struct nbd_conn *c, size_t n)
{
    c->rx_pos += n;
    if (c->rx_pos == c->rx_len)
        c->rx_pos = c->rx_len = 0;
}

/* Read n bytes into buf: what is buffered, then straight from the stream. */
static int rx_read_into(struct nbd_conn *c, uint8_t *buf, size_t n)
{
    size_t have = c->rx_len - c->rx_pos;

    if (have > n)
        have = n;
    memcpy(buf, c->rx + c->rx_pos, have);
    rx_consume(c, have);
    if (have < n && conn_flush(c) < 0)
        return -ECONNRESET;
    while (have < n) {
        ssize_t r = c->io->recv(c->io->ctx, buf + have, n - have);
        if (r <= 0)
            return -ECONNRESET;
        have += (size_t)r;
    }
    return 0;
}

/* Throw away n bytes of input (the payload of a refused write). */
static int rx_skip(struct nbd_conn *c, uint64_t n)
{
    while (n > 0) {
        size_t step = n < NBD_RX_SIZE ? (size_t)n : NBD_RX_SIZE;
        size_t have = c->rx_len - c->rx_pos;
        if (have == 0) {
            int r = rx_fill(c, 1);
            if (r < 0)
                return r;
            have = c->rx_len - c->rx_pos;
        }
        if (step > have)
            step = have;
        rx_consume(c, step);
        n -= step;
    }
    return 0;
}

/* ---- handshake ----------------------------------------------------------- */

static uint16_t transmission_flags(const struct nbd_conn *c)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN |
                 NBD_FLAG_SEND_CACHE;

    /* A RAM store is consistent across connections: a flush on one covers all. */
    if (c->ne->read_only)
        f |= NBD_FLAG_READ_ONLY;
    else
        f |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
             NBD_FLAG_SEND_FAST_ZERO;
    /* DF only means something with structured replies. */
    if (c->structured)
        f |= NBD_FLAG_SEND_DF;
    return f;
}

/*
 * An option reply: the header, then a (copied, small) and b (sent from
 * where it lies, the option's own data in rx).
 */
static void opt_reply(struct nbd_conn *c, uint32_t opt, uint32_t type,
                      const void *a, size_t alen, const void *b, size_t blen)
{
    struct nbd_tx *tx = c->tx;

    tx_reserve(tx, 2, 20 + alen);
    uint8_t *h = tx_hdr(tx, 20 + alen);
    nbd_put64(h, NBD_REP_MAGIC);
    nbd_put32(h + 8, opt);
    nbd_put32(h + 12, type);
    nbd_put32(h + 16, (uint32_t)(alen + blen));
    if (alen)
        memcpy(h + 20, a, alen);
    tx_data(tx, b, blen);
}

static void opt_ack(struct nbd_conn *c, uint32_t opt)
{
    opt_reply(c, opt, NBD_REP_ACK, NULL, 0, NULL, 0);
}

static void opt_error(struct nbd_conn *c, uint32_t opt, uint32_t err)
{
    opt_reply(c, opt, err, NULL, 0, NULL, 0);
}

static void info_reply(struct nbd_conn *c, uint32_t opt, uint16_t info, const void *s, size_t len)
{
    uint8_t t[2];
    nbd_put16(t, info);
    opt_reply(c, opt, NBD_REP_INFO, t, 2, s, len);
}

/* NBD_OPT_INFO and NBD_OPT_GO.  Returns 1 when GO succeeded. */
static int opt_info(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    uint8_t b[18];

    if (len < 6)
        goto invalid;
    uint32_t name_len = nbd_get32(d);
    if (name_len > len - 6)
        goto invalid;
    uint16_t nreq = nbd_get16(d + 4 + name_len);
    if ((uint64_t)len != 6 + (uint64_t)name_len + 2 * (uint64_t)nreq)
        goto invalid;

    c->tflags = transmission_flags(c);
    nbd_put16(b, NBD_INFO_EXPORT);
    nbd_put64(b + 2, c->size);
    nbd_put16(b + 10, c->tflags);
    opt_reply(c, opt, NBD_REP_INFO, b, 12, NULL, 0);

    /* Each kind of information once, however often it is asked for. */
    bool name = false, description = false;
    for (uint16_t i = 0; i < nreq; i++) {
        uint16_t type = nbd_get16(d + 6 + name_len + 2 * i);
        if (type == NBD_INFO_NAME && !name) {
            info_reply(c, opt, NBD_INFO_NAME, d + 4, name_len);
            name = true;
        } else if (type == NBD_INFO_DESCRIPTION && !description && c->ne->description) {
            info_reply(c, opt, NBD_INFO_DESCRIPTION, c->ne->description,
                       strlen(c->ne->description));
            description = true;
        }
    }
    /* Sent unasked: any size and alignment is served, 4 KiB is best. */
    nbd_put16(b, NBD_INFO_BLOCK_SIZE);
    nbd_put32(b + 2, 1);
    nbd_put32(b + 6, STORE_PAGE_SIZE);
    nbd_put32(b + 10, NBD_MAX_PAYLOAD);
    opt_reply(c, opt, NBD_REP_INFO, b, 14, NULL, 0);
    opt_ack(c, opt);
    return opt == NBD_OPT_GO;

invalid:
    opt_error(c, opt, NBD_REP_ERR_INVALID);
    return 0;
}

/* Does a query name base:allocation?  "base:" asks for every base context. */
static bool query_matches(const uint8_t *q, uint32_t len, bool list)
{
    if (len == strlen(NBD_ALLOCATION) && memcmp(q, NBD_ALLOCATION, len) == 0)
        return true;
    return list && len == 5 && memcmp(q, "base:", 5) == 0;
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. */
static void opt_meta(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    bool list = opt == NBD_OPT_LIST_META_CONTEXT, found = false;

    if (!list && !c->structured) {
        opt_error(c, opt, NBD_REP_ERR_INVALID);
        return;
    }
    /* Check the whole option before answering any of it. */
    if (len < 8)
        goto invalid;
    uint32_t name_len = nbd_get32(d);
    if (name_len > len - 8)
        goto invalid;
    uint32_t nq = nbd_get32(d + 4 + name_len);
    uint64_t pos = 8 + (uint64_t)name_len;
    for (uint32_t i = 0; i < nq; i++) {
        if (len - pos < 4)
            goto invalid;
        uint32_t qlen = nbd_get32(d + pos);
        if (qlen > len - pos - 4)
            goto invalid;
        if (query_matches(d + pos + 4, qlen, list))
            found = true;
        pos += 4 + (uint64_t)qlen;
    }
    if (pos != len)
        goto invalid;

    if (!list)
        c->meta_alloc = false;
    if (list && nq == 0)
        found = true;
    if (found) {
        uint8_t id[4];
        /* In a list the id means nothing; 0 says so. */
        nbd_put32(id, list ? 0 : NBD_CONTEXT_ALLOCATION);
        opt_reply(c, opt, NBD_REP_META_CONTEXT, id, 4, NBD_ALLOCATION, strlen(NBD_ALLOCATION));
        if (!list)
            c->meta_alloc = true;
    }
    opt_ack(c, opt);
    return;

invalid:
    opt_error(c, opt, NBD_REP_ERR_INVALID);
}

/*
 * One option, whose data d of len bytes is in rx.  Returns 0 to go on
 * negotiating, 1 to enter transmission, -ECONNABORTED for NBD_OPT_ABORT.
 */
static int handle_option(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    switch (opt) {
    case NBD_OPT_EXPORT_NAME: {
        /* Any name is this export; there is no way to refuse here anyway. */
        static const uint8_t zeroes[124];
        uint8_t b[10];
        c->tflags = transmission_flags(c);
        nbd_put64(b, c->size);
        nbd_put16(b + 8, c->tflags);
        tx_reserve(c->tx, 2, sizeof(b));
        memcpy(tx_hdr(c->tx, sizeof(b)), b, sizeof(b));
        if (!c->no_zeroes)
            tx_data(c->tx, zeroes, sizeof(zeroes));
        return 1;
    }
    case NBD_OPT_ABORT:
        opt_ack(c, opt);
        return -ECONNABORTED;
    case NBD_OPT_LIST: {
        static const uint8_t empty_name[4];   /* length 0: the export "" */
        if (len != 0) {
            opt_error(c, opt, NBD_REP_ERR_INVALID);
            return 0;
        }
        opt_reply(c, opt, NBD_REP_SERVER, empty_name, sizeof(empty_name), NULL, 0);
        opt_ack(c, opt);
        return 0;
    }
    case NBD_OPT_STARTTLS:
        opt_error(c, opt, len ? NBD_REP_ERR_INVALID : NBD_REP_ERR_UNSUP);
        return 0;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return opt_info(c, opt, d, len);
    case NBD_OPT_STRUCTURED_REPLY:
        if (len != 0) {
            opt_error(c, opt, NBD_REP_ERR_INVALID);
            return 0;
        }
        c->structured = true;
        opt_ack(c, opt);
        return 0;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        opt_meta(c, opt, d, len);
        return 0;
    default:
        opt_error(c, opt, NBD_REP_ERR_UNSUP);
        return 0;
    }
}

/* 0: go to transmission; -ECONNABORTED: the client gave up; -EPROTO, -ECONNRESET. */
static int handshake(struct nbd_conn *c)
{
    uint8_t *h = tx_hdr(c->tx, 18);
    int r;

    nbd_put64(h, NBD_MAGIC);
    nbd_put64(h + 8, NBD_IHAVEOPT);
    nbd_put16(h + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    r = rx_fill(c, 4);
    if (r < 0)
        return r;
    uint32_t cflags = nbd_get32(c->rx + c->rx_pos);
    rx_consume(c, 4);
    /* Unknown flags, or a client that cannot do fixed newstyle: drop it. */
    if (cflags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) ||
        !(cflags & NBD_FLAG_C_FIXED_NEWSTYLE))
        return -EPROTO;
    c->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;

    for (unsigned n = 0; n < NBD_MAX_OPTIONS; n++) {
        r = rx_fill(c, 16);
        if (r < 0)
            return r;
        const uint8_t *p = c->rx + c->rx_pos;
        uint64_t magic = nbd_get64(p);
        uint32_t opt = nbd_get32(p + 8), len = nbd_get32(p + 12);
        if (magic != NBD_IHAVEOPT || len > NBD_MAX_OPTION_LEN)
            return -EPROTO;
        rx_consume(c, 16);
        r = rx_fill(c, len);
        if (r < 0)
            return r;
        r = handle_option(c, opt, c->rx + c->rx_pos, len);
        /* The reply may point into the option's data: send before consuming. */
        if (conn_flush(c) < 0)
            return -ECONNRESET;
        rx_consume(c, len);
        if (r != 0)
            return r > 0 ? 0 : r;
    }
    return -EPROTO;
}

/* ---- transmission -------------------------------------------------------- */

/* The NBD error for a request, 0 if it may be served. */
static uint32_t check_request(const struct nbd_conn *c, const struct nbd_req *req)
{
    uint16_t allowed;
    bool writes = false;

    switch (req->type) {
    case NBD_CMD_READ:
        allowed = c->tflags & NBD_FLAG_SEND_DF ? NBD_CMD_FLAG_DF : 0;
        break;
    case NBD_CMD_WRITE:
    case NBD_CMD_TRIM:
        allowed = NBD_CMD_FLAG_FUA;
        writes = true;
        break;
    case NBD_CMD_WRITE_ZEROES:
        allowed = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
        writes = true;
        break;
    case NBD_CMD_BLOCK_STATUS:
        if (!c->meta_alloc)
            return NBD_EINVAL;
        allowed = NBD_CMD_FLAG_REQ_ONE;
        break;
    case NBD_CMD_FLUSH:
    case NBD_CMD_DISC:
        return req->flags ? NBD_EINVAL : 0;
    case NBD_CMD_CACHE:
        allowed = 0;
        break;
    default:
        return NBD_EINVAL;
    }
    if (req->flags & ~allowed)
        return NBD_EINVAL;
    if (writes && c->ne->read_only)
        return NBD_EPERM;
    if (req->len == 0)
        return NBD_EINVAL;
    if (req->type == NBD_CMD_READ && req->len > NBD_MAX_PAYLOAD)
        return req->flags & NBD_CMD_FLAG_DF ? NBD_EOVERFLOW : NBD_EINVAL;
    if (req->off > c->size || req->len > c->size - req->off)
        return req->type == NBD_CMD_WRITE || req->type == NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC
                                                                              : NBD_EINVAL;
    return 0;
}

static void emit_read_chunk(struct nbd_tx *tx, const struct nbd_req *req, bool hole,
                            uint64_t off, uint64_t len, const uint8_t *data, bool done)
{
    uint16_t flags = done ? NBD_REPLY_FLAG_DONE : 0;

    if (hole) {
        tx_reserve(tx, 1, NBD_CHUNK_SIZE + 12);
        uint8_t *p = chunk_hdr(tx, req->cookie, flags, NBD_REPLY_TYPE_OFFSET_HOLE, 12, 12);
        nbd_put64(p, off);
        nbd_put32(p + 8, (uint32_t)len);
    } else {
        tx_reserve(tx, 2, NBD_CHUNK_SIZE + 8);
        uint8_t *p = chunk_hdr(tx, req->cookie, flags, NBD_REPLY_TYPE_OFFSET_DATA,
                               (uint32_t)(8 + len), 8);
        nbd_put64(p, off);
        tx_data(tx, data + (off - req->off), len);
    }
}

/*
 * The structured reply to a read whose data is in buf: runs that read as
 * zeros (holes and zero pages) as OFFSET_HOLE chunks, the rest as
 * OFFSET_DATA, or one data chunk when the client asked not to fragment.
 */
static void reply_read_structured(struct nbd_tx *tx, const struct nbd_req *req,
                                  const uint8_t *buf)
{
    struct nbd_conn *c = tx->c;
    uint64_t pos = req->off, end = req->off + req->len;
    uint64_t run_off = pos, run_len = 0;
    bool run_hole = false;

    if (req->flags & NBD_CMD_FLAG_DF) {
        emit_read_chunk(tx, req, false, req->off, req->len, buf, true);
        return;
    }
    while (pos < end) {
        uint64_t len;
        unsigned flags;
        if (store_extent(c->store, pos, end - pos, &len, &flags) < 0 || len == 0) {
            len = end - pos;
            flags = 0;
        }
        bool hole = flags & STORE_EXTENT_ZERO;
        if (run_len > 0 && hole != run_hole) {
            emit_read_chunk(tx, req, run_hole, run_off, run_len, buf, false);
            run_len = 0;
        }
        if (run_len == 0) {
            run_off = pos;
            run_hole = hole;
        }
        run_len += len;
        pos += len;
    }
    emit_read_chunk(tx, req, run_hole, run_off, run_len, buf, true);
}

static void serve_read(struct nbd_tx *tx, const struct nbd_req *req, uint8_t *buf)
{
    struct nbd_conn *c = tx->c;
    int r = store_read(c->store, buf, req->len, req->off);

    if (r < 0)
        reply_error(tx, req, nbd_errno(r));
    else if (c->structured)
        reply_read_structured(tx, req, buf);
    else
        reply_simple(tx, req->cookie, 0, buf, req->len);
}

static void serve_block_status(struct nbd_tx *tx, const struct nbd_req *req)
{
    struct nbd_conn *c = tx->c;
    uint64_t pos = req->off, end = req->off + req->len;
    unsigned n = 0;

    /* ext is one buffer per sender: a reply still pending holds it. */
    if (tx->ext_busy)
        (void)tx_flush(tx);
    uint8_t *e = tx->ext + 4;
    uint32_t last_flags = 0;
    while (pos < end) {
        uint64_t len;
        unsigned flags;
        if (store_extent(c->store, pos, end - pos, &len, &flags) < 0 || len == 0)
            break;
        flags &= NBD_STATE_HOLE | NBD_STATE_ZERO;
        if (n > 0 && flags == last_flags) {
            nbd_put32(e + 8 * (n - 1), nbd_get32(e + 8 * (n - 1)) + (uint32_t)len);
        } else {
            if (n == NBD_MAX_EXTENTS)
                break;
            nbd_put32(e + 8 * n, (uint32_t)len);
            nbd_put32(e + 8 * n + 4, flags);
            last_flags = flags;
            n++;
        }
        pos += len;
        if (req->flags & NBD_CMD_FLAG_REQ_ONE)
            break;
    }
    if (n == 0) {
        reply_error(tx, req, NBD_EIO);
        return;
    }
    nbd_put32(tx->ext, NBD_CONTEXT_ALLOCATION);
    tx_reserve(tx, 2, NBD_CHUNK_SIZE);
    chunk_hdr(tx, req->cookie, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS,
              4 + 8 * n, 0);
    tx_data(tx, tx->ext, 4 + 8 * (size_t)n);
    tx->ext_busy = true;
}

/* Serve a checked request; buf holds a write's payload, or room for a read. */
static void serve(struct nbd_tx *tx, const struct nbd_req *req, uint8_t *buf)
{
    struct nbd_conn *c = tx->c;
    int r = 0;

    switch (req->type) {
    case NBD_CMD_READ:
        serve_read(tx, req, buf);
        return;
    case NBD_CMD_BLOCK_STATUS:
        serve_block_status(tx, req);
        return;
    case NBD_CMD_WRITE:
        /* FUA: every write is complete when the store returns. */
        r = store_write(c->store, buf, req->len, req->off);
        break;
    case NBD_CMD_TRIM:
        r = store_discard(c->store, req->len, req->off);
        break;
    case NBD_CMD_WRITE_ZEROES:
        /*
         * Holes, or with NO_HOLE zero-filled pages: neither takes memory,
         * and both are as fast as zeroing gets (FAST_ZERO).
         */
        r = store_write_zeroes(c->store, req->len, req->off,
                               req->flags & NBD_CMD_FLAG_NO_HOLE ? STORE_ZERO_NO_HOLE : 0);
        break;
    case NBD_CMD_FLUSH:
        r = store_flush(c->store);
        break;
    case NBD_CMD_CACHE:
        /* Everything is in memory already. */
        break;
    }
    reply_simple(tx, req->cookie, r < 0 ? nbd_errno(r) : 0, NULL, 0);
}

void nbd_job_run(struct nbd_job *j)
{
    struct nbd_conn *c = j->c;
    struct nbd_tx *tx = j->tx;

    tx->c = c;
    tx->job = j;
    serve(tx, &j->req, j->buf);
    if (c->sender_running) {
        /* The sender sends it and gives the job back: a worker never waits on a client. */
        tx_submit(c, tx);
        return;
    }
    (void)tx_flush(tx);
    LOCK_GUARD(&c->lock);
    tx_done_locked(c, tx);
}

/* Wait until fewer than max_jobs jobs of c are queued or running.  The connection's thread only. */
static void wait_jobs(struct nbd_conn *c, unsigned max_jobs)
{
    LOCK_GUARD(&c->lock);
    while (c->jobs >= max_jobs)
        pthread_cond_wait(&c->cond, &c->lock);
}

/*
 * A write too large for a job buffer: its payload is read and stored a
 * piece of NBD_INLINE_MAX at a time.  After a piece fails the rest is read
 * and dropped, and the reply says what failed (the pieces before it are
 * written, as a failed store_write() leaves them).
 */
static int stream_write(struct nbd_conn *c, const struct nbd_req *req)
{
    int err = 0;

    for (uint64_t done = 0; done < req->len;) {
        size_t n = req->len - done < NBD_INLINE_MAX ? (size_t)(req->len - done) : NBD_INLINE_MAX;
        int r = rx_fill(c, n);
        if (r < 0)
            return r;
        if (err == 0)
            err = store_write(c->store, c->rx + c->rx_pos, n, req->off + done);
        rx_consume(c, n);
        done += n;
    }
    reply_simple(c->tx, req->cookie, err < 0 ? nbd_errno(err) : 0, NULL, 0);
    return conn_flush(c);
}

/*
 * A read too large for a job buffer: read a piece of NBD_DATA_SIZE at a
 * time into the connection's data buffer and send it at once, the send
 * lock held throughout so that no other reply lands inside this one.  One
 * reply header (simple, or one structured data chunk) announces the whole
 * length, so a piece that fails after the first has gone out cannot be
 * reported: the protocol then wants the connection closed, and it is.
 * With structured replies each piece is a chunk of its own, and a failure
 * is an error chunk.
 */
static int stream_read(struct nbd_conn *c, const struct nbd_req *req)
{
    bool chunks = c->structured && !(req->flags & NBD_CMD_FLAG_DF);
    uint8_t hdr[NBD_CHUNK_SIZE + 8];
    int r = 0;

    LOCK_GUARD(&c->send_lock);
    for (uint64_t done = 0; done < req->len && r == 0;) {
        size_t n = req->len - done < NBD_DATA_SIZE ? (size_t)(req->len - done) : NBD_DATA_SIZE;
        bool last = done + n == req->len;
        int e = store_read(c->store, c->tx->data, n, req->off + done);
        struct iovec iov[2] = { { hdr, 0 }, { c->tx->data, n } };

        if (e < 0 && (chunks || done == 0)) {
            /* Nothing of this reply sent yet, or a chunk can say it: report it. */
            struct nbd_tx *tx = c->tx;
            reply_error(tx, req, nbd_errno(e));
            r = sendv_all(c, tx->iov, tx->niov);
            tx->niov = 0;
            tx->hdr_used = 0;
            return r;
        }
        if (e < 0) {
            atomic_store(&c->broken, true);
            return -ECONNRESET;
        }
        if (chunks) {
            nbd_put32(hdr, NBD_STRUCTURED_MAGIC);
            nbd_put16(hdr + 4, last ? NBD_REPLY_FLAG_DONE : 0);
            nbd_put16(hdr + 6, NBD_REPLY_TYPE_OFFSET_DATA);
            nbd_put64(hdr + 8, req->cookie);
            nbd_put32(hdr + 16, (uint32_t)(8 + n));
            nbd_put64(hdr + NBD_CHUNK_SIZE, req->off + done);
            iov[0].iov_len = NBD_CHUNK_SIZE + 8;
        } else if (done == 0 && c->structured) {
            /* DF: one data chunk for the whole read. */
            nbd_put32(hdr, NBD_STRUCTURED_MAGIC);
            nbd_put16(hdr + 4, NBD_REPLY_FLAG_DONE);
            nbd_put16(hdr + 6, NBD_REPLY_TYPE_OFFSET_DATA);
            nbd_put64(hdr + 8, req->cookie);
            nbd_put32(hdr + 16, (uint32_t)(8 + req->len));
            nbd_put64(hdr + NBD_CHUNK_SIZE, req->off);
            iov[0].iov_len = NBD_CHUNK_SIZE + 8;
        } else if (done == 0) {
            nbd_put32(hdr, NBD_SIMPLE_MAGIC);
            nbd_put32(hdr + 4, 0);
            nbd_put64(hdr + 8, req->cookie);
            iov[0].iov_len = NBD_SIMPLE_SIZE;
        }
        r = iov[0].iov_len ? sendv_all(c, iov, 2) : sendv_all(c, iov + 1, 1);
        done += n;
    }
    return r < 0 ? -ECONNRESET : 0;
}

/*
 * A request too large to serve from the connection's buffers: to the
 * workers in a job buffer if it fits one, else in pieces here.
 */
static int serve_large(struct nbd_conn *c, const struct nbd_req *req)
{
    int r;

    /* Replies gathered so far go out before this may wait, or stream. */
    if (conn_flush(c) < 0)
        return -ECONNRESET;
    if (!c->ne->pool_running || req->len > NBD_JOB_BUF_SIZE)
        return req->type == NBD_CMD_WRITE ? stream_write(c, req) : stream_read(c, req);

    wait_jobs(c, NBD_MAX_JOBS);
    struct nbd_job *j = nbd_job_get(c->ne);
    if (!j)
        return -ECONNRESET;     /* the export is stopping */
    j->c = c;
    j->req = *req;
    if (req->type == NBD_CMD_WRITE && (r = rx_read_into(c, j->buf, req->len)) < 0) {
        nbd_job_put(c->ne, j);
        return r;
    }
    mutex_lock(&c->lock);
    c->jobs++;
    mutex_unlock(&c->lock);
    nbd_pool_push(c->ne, j);
    return 0;
}

/* One request whose header has been consumed.  1 after NBD_CMD_DISC. */
static int handle_request(struct nbd_conn *c, const struct nbd_req *req)
{
    int r;

    if (req->type == NBD_CMD_WRITE && req->len > NBD_MAX_PAYLOAD) {
        /* Reading 4 GiB to stay in step is no option: answer, then drop. */
        reply_error(c->tx, req, NBD_EINVAL);
        (void)conn_flush(c);
        return -EPROTO;
    }
    uint32_t err = check_request(c, req);
    if (req->type == NBD_CMD_DISC && err == 0)
        return 1;
    if (err) {
        if (req->type == NBD_CMD_WRITE && (r = rx_skip(c, req->len)) < 0)
            return r;
        reply_error(c->tx, req, err);
        return 0;
    }
    if ((req->type == NBD_CMD_READ || req->type == NBD_CMD_WRITE) && req->len > NBD_INLINE_MAX)
        return serve_large(c, req);

    if (req->type == NBD_CMD_WRITE) {
        r = rx_fill(c, req->len);
        if (r < 0)
            return r;
        serve(c->tx, req, c->rx + c->rx_pos);
        rx_consume(c, req->len);
        return 0;
    }
    if (req->type == NBD_CMD_READ && c->data_used + req->len > NBD_DATA_SIZE &&
        conn_flush(c) < 0)
        return -ECONNRESET;
    uint8_t *buf = c->tx->data + c->data_used;
    if (req->type == NBD_CMD_READ)
        c->data_used += req->len;
    serve(c->tx, req, buf);
    return 0;
}

static int transmission(struct nbd_conn *c)
{
    for (;;) {
        if (atomic_load_explicit(&c->broken, memory_order_relaxed))
            return -ECONNRESET;
        int r = rx_fill(c, NBD_REQUEST_SIZE);
        if (r < 0)
            return r;
        const uint8_t *p = c->rx + c->rx_pos;
        if (nbd_get32(p) != NBD_REQUEST_MAGIC)
            return -EPROTO;
        struct nbd_req req = {
            .flags = nbd_get16(p + 4),
            .type = nbd_get16(p + 6),
            .cookie = nbd_get64(p + 8),
            .off = nbd_get64(p + 16),
            .len = nbd_get32(p + 24),
        };
        rx_consume(c, NBD_REQUEST_SIZE);
        r = handle_request(c, &req);
        if (r != 0)
            return r > 0 ? 0 : r;
    }
}

int nbd_export_serve_io(struct nbd_export *ne, const struct nbd_io *io)
{
    struct nbd_conn *c = calloc(1, sizeof(*c));
    int r = -ENOMEM;

    if (!c)
        return -ENOMEM;
    c->ne = ne;
    c->io = io;
    c->store = ne->store;
    c->size = ne->size;
    pthread_mutex_init(&c->send_lock, NULL);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->rx = malloc(NBD_RX_SIZE);
    /* In memory before the first request: serving must not fault them in. */
    if (!c->rx || mem_populate_buf(c->rx, NBD_RX_SIZE) < 0)
        goto out;
    for (unsigned i = 0; i < NBD_CONN_TXS; i++) {
        if (!(c->txs[i] = conn_tx_new(c)))
            goto out;
        c->txs[i]->next = c->free_txs;
        c->free_txs = c->txs[i];
    }
    c->tx = c->free_txs;
    c->free_txs = c->tx->next;

    r = handshake(c);
    /* The sender from the first request on: the handshake's replies point into rx. */
    if (r == 0 && ne->pool_running && pthread_create(&c->sender, NULL, sender_main, c) == 0)
        c->sender_running = true;
    if (r == 0)
        r = transmission(c);
    else if (r == -ECONNABORTED)
        r = 0;
    /* Requests being served still answer (if the stream allows) before we go. */
    (void)conn_flush(c);
    wait_jobs(c, 1);
    if (c->sender_running) {
        mutex_lock(&c->lock);
        c->sender_stop = true;
        pthread_cond_broadcast(&c->cond);
        mutex_unlock(&c->lock);
        pthread_join(c->sender, NULL);
    }
    if (r == -EPROTO)
        atomic_fetch_add(&ne->n_dropped, 1);

out:
    for (unsigned i = 0; i < NBD_CONN_TXS; i++)
        nbd_tx_free(c->txs[i]);
    free(c->rx);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->send_lock);
    free(c);
    return r;
}
