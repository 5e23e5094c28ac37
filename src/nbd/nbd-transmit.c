/* SPDX-License-Identifier: MIT */
/*
 * The transmission phase: each request checked (doc/nbd.md, "Bounds"),
 * then served inline (payload up to NBD_INLINE_MAX), by the worker pool
 * in a job buffer (up to NBD_JOB_BUF_SIZE), or here in pieces (larger
 * still).  Errors from the store become the NBD error numbers; a request
 * that fails never ends the connection, a broken framing does.
 */
#include "nbd-internal.h"

#include <errno.h>
#include <string.h>

#include "cleanup.h"
#include "nbd-proto.h"
#include "store.h"

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
void wait_jobs(struct nbd_conn *c, unsigned max_jobs)
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

    wait_jobs(c, c->ne->conn_jobs_max);
    /* Dropped while it waited (the send timeout): serve nothing more. */
    if (atomic_load_explicit(&c->broken, memory_order_relaxed))
        return -ECONNRESET;
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

int conn_transmission(struct nbd_conn *c)
{
    for (;;) {
        if (atomic_load_explicit(&c->broken, memory_order_relaxed))
            return -ECONNRESET;
        c->wait_request = true;
        int r = rx_fill(c, NBD_REQUEST_SIZE);
        c->wait_request = false;
        if (r == -ETIMEDOUT) {
            /* Idle past the idle timeout: a clean end (nbd-input.c). */
            atomic_fetch_add(&c->ne->n_idle_timeouts, 1);
            return 0;
        }
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

