/* SPDX-License-Identifier: MIT */
/*
 * Replies (doc/nbd.md, "The request path"): gathered as iovecs in a batch
 * (struct nbd_tx), headers in the batch's own area and data where it lies,
 * and sent in one sendmsg() when the connection's thread is about to
 * block.  Each sendmsg() is a whole number of replies or chunks, under the
 * connection's send lock.  With a sender thread, the connection hands its
 * batch over and goes on with its other one; workers hand theirs over too,
 * so nothing that serves ever waits on a client that does not read.  A
 * failed send marks the connection broken; later batches are given back
 * unsent.  A send that made no progress for the send timeout failed too
 * (the transport shut the socket down, nbd-transport.c), and is counted:
 * that is how a client that never reads gives its buffers back.  Bytes
 * with a sender are counted in ne->queued_bytes from tx_submit() until
 * sent or dropped, so that a stalled client shows in the statistics.
 */
#include "nbd-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "clock.h"
#include "populate.h"
#include "nbd-proto.h"

/* A connection's batch: a tx with its read data buffer, both resident. */
struct nbd_tx *conn_tx_new(struct nbd_conn *c)
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

/*
 * One sendv() call, counted in the export's sends under way (for
 * nbd_export_stats.send_stall_ms).
 */
static ssize_t sendv_counted(struct nbd_conn *c, const struct iovec *iov, int n)
{
    struct nbd_export *ne = c->ne;
    if (atomic_fetch_add(&ne->sends_active, 1) == 0)
        atomic_store(&ne->send_done_ms, monotonic_coarse_ms());
    ssize_t w = c->io->sendv(c->io->ctx, iov, n);
    int e = errno;
    atomic_store(&ne->send_done_ms, monotonic_coarse_ms());
    atomic_fetch_sub(&ne->sends_active, 1);
    errno = e;
    return w;
}

/*
 * Send all of iov (which it consumes), the caller holding the send lock.
 * -EPIPE (and the connection marked broken) if the stream failed.
 */
int sendv_all(struct nbd_conn *c, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = sendv_counted(c, iov, n);
        if (w <= 0) {
            if (w < 0 && errno == ETIMEDOUT && !c->send_timed_out) {
                c->send_timed_out = true;
                atomic_fetch_add(&c->ne->n_send_timeouts, 1);
            }
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
int tx_flush(struct nbd_tx *tx)
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
void tx_done_locked(struct nbd_conn *c, struct nbd_tx *tx)
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
void tx_submit(struct nbd_conn *c, struct nbd_tx *tx)
{
    tx->queued = 0;
    for (int i = 0; i < tx->niov; i++)
        tx->queued += tx->iov[i].iov_len;
    atomic_fetch_add_explicit(&c->ne->queued_bytes, tx->queued, memory_order_relaxed);
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
 * The sender (doc/nbd.md, "The request path"): send each batch handed over, in order, under
 * the send lock, and give it back.  Once the stream has failed, batches
 * are given back unsent.  Ends when told to and the queue is empty.
 */
void *conn_sender_main(void *arg)
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
        atomic_fetch_sub_explicit(&c->ne->queued_bytes, tx->queued, memory_order_relaxed);
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
int conn_flush(struct nbd_conn *c)
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
void tx_reserve(struct nbd_tx *tx, int niov, size_t hdr_len)
{
    if (tx->niov + niov > NBD_TX_IOV || tx->hdr_used + hdr_len > NBD_TX_HDR)
        (void)tx_flush(tx);     /* a failure shows as c->broken */
}

/* len bytes of header space (reserved); consecutive headers share an iovec. */
uint8_t *tx_hdr(struct nbd_tx *tx, size_t len)
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
void tx_data(struct nbd_tx *tx, const void *p, size_t len)
{
    if (len > 0)
        tx->iov[tx->niov++] = (struct iovec){ .iov_base = (void *)p, .iov_len = len };
}

void reply_simple(struct nbd_tx *tx, uint64_t cookie, uint32_t error,
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
uint8_t *chunk_hdr(struct nbd_tx *tx, uint64_t cookie, uint16_t flags, uint16_t type,
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
void reply_error(struct nbd_tx *tx, const struct nbd_req *req, uint32_t error)
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
uint32_t nbd_errno(int r)
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

