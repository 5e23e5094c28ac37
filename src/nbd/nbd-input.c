/* SPDX-License-Identifier: MIT */
/*
 * A connection's input: read in large gulps into rx, and every complete
 * request in it served before reading again (doc/nbd.md, "The request
 * path").  Replies gathered so far are sent before any read that may
 * block, so that a client waiting for them is never deadlocked with us.
 * The connection's thread only.
 *
 * The idle timeout is the socket's SO_RCVTIMEO (set in transmission by
 * nbd-server.c): "nothing received for that long" is what it measures, per
 * recv(), with no clock of ours.  A recv() that times out ends the
 * connection only between requests, with nothing of the next one received
 * and none in flight (queued, running, or its reply not yet sent);
 * otherwise the wait goes on, for the send timeout to judge a reply that
 * does not leave.
 */
#include "nbd-internal.h"

#include <errno.h>
#include <string.h>

#include "cleanup.h"

/* Whether a recv() that timed out finds c idle: see above. */
static bool conn_idle(struct nbd_conn *c)
{
    unsigned free_txs = 0;

    if (!c->wait_request || c->rx_len != c->rx_pos)
        return false;
    LOCK_GUARD(&c->lock);
    /* Every batch but the one being gathered (flushed, so empty) is free: none is sending. */
    for (const struct nbd_tx *tx = c->free_txs; tx; tx = tx->next)
        free_txs++;
    return c->jobs == 0 && (!c->sender_running || free_txs == NBD_CONN_TXS - 1);
}

/* recv() into buf; -ETIMEDOUT when idle past the idle timeout, -ECONNRESET at the end. */
static int conn_recv(struct nbd_conn *c, void *buf, size_t len, size_t *ret_n)
{
    for (;;) {
        ssize_t r = c->io->recv(c->io->ctx, buf, len);
        if (r > 0) {
            *ret_n = (size_t)r;
            return 0;
        }
        if (r == 0 || errno != EAGAIN || !c->ne->idle_timeout_s)
            return -ECONNRESET;
        if (conn_idle(c))
            return -ETIMEDOUT;
    }
}

/*
 * Make n bytes (at most NBD_RX_SIZE) of input available at rx + rx_pos.
 * Replies gathered so far are sent before blocking.  -ECONNRESET at the end
 * of the stream or on failure; -ETIMEDOUT: idle past the idle timeout
 * (only with c->wait_request).
 */
int rx_fill(struct nbd_conn *c, size_t n)
{
    while (c->rx_len - c->rx_pos < n) {
        if (c->rx_pos > 0 && c->rx_pos + n > NBD_RX_SIZE) {
            memmove(c->rx, c->rx + c->rx_pos, c->rx_len - c->rx_pos);
            c->rx_len -= c->rx_pos;
            c->rx_pos = 0;
        }
        if (conn_flush(c) < 0)
            return -ECONNRESET;
        size_t got;
        int r = conn_recv(c, c->rx + c->rx_len, NBD_RX_SIZE - c->rx_len, &got);
        if (r < 0)
            return r;
        c->rx_len += got;
    }
    return 0;
}

/* Consume n bytes of what is buffered (the caller made sure they are). */
void rx_consume(struct nbd_conn *c, size_t n)
{
    c->rx_pos += n;
    if (c->rx_pos == c->rx_len)
        c->rx_pos = c->rx_len = 0;
}

/* Read n bytes into buf: what is buffered, then straight from the stream. */
int rx_read_into(struct nbd_conn *c, uint8_t *buf, size_t n)
{
    size_t have = c->rx_len - c->rx_pos;

    if (have > n)
        have = n;
    memcpy(buf, c->rx + c->rx_pos, have);
    rx_consume(c, have);
    if (have < n && conn_flush(c) < 0)
        return -ECONNRESET;
    while (have < n) {
        size_t got;
        if (conn_recv(c, buf + have, n - have, &got) < 0)
            return -ECONNRESET;
        have += got;
    }
    return 0;
}

/* Throw away n bytes of input (the payload of a refused write). */
int rx_skip(struct nbd_conn *c, uint64_t n)
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

