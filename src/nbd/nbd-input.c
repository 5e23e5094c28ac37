/* SPDX-License-Identifier: MIT */
/*
 * A connection's input: read in large gulps into rx, and every complete
 * request in it served before reading again (doc/nbd.md, "The request
 * path").  Replies gathered so far are sent before any read that may
 * block, so that a client waiting for them is never deadlocked with us.
 * The connection's thread only.
 */
#include "nbd-internal.h"

#include <errno.h>
#include <string.h>

/*
 * Make n bytes (at most NBD_RX_SIZE) of input available at rx + rx_pos.
 * Replies gathered so far are sent before blocking.  -ECONNRESET at the end
 * of the stream or on failure.
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
        ssize_t r = c->io->recv(c->io->ctx, c->rx + c->rx_len, NBD_RX_SIZE - c->rx_len);
        if (r <= 0)
            return -ECONNRESET;
        c->rx_len += (size_t)r;
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
        ssize_t r = c->io->recv(c->io->ctx, buf + have, n - have);
        if (r <= 0)
            return -ECONNRESET;
        have += (size_t)r;
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

