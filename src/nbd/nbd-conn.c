/* SPDX-License-Identifier: MIT */
/*
 * One NBD client: the handshake and the transmission phase, over a byte
 * stream given as two callbacks (struct nbd_io).  Nothing here knows about
 * sockets or threads beyond one mutex, so that the fuzzer drives exactly
 * the code that serves real clients.  This file holds a connection's life;
 * its phases are nbd-handshake.c and nbd-transmit.c, its input
 * nbd-input.c, its replies nbd-reply.c, and the worker pool nbd-pool.c.
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
 *     (nbd-pool.c) in one of its job buffers and are answered out of
 *     order as they finish, so a 1 MiB read does not hold up the small
 *     requests behind it and several run on several cores.  Each worker
 *     replies with its own iovec list.  Larger ones still are served here
 *     in pieces (serve_large()), through the connection's own buffers.
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
 * export's fixed set in any case), and block status descriptors per
 * reply.  Reads and writes past the end, unknown commands and flags get
 * the errors the protocol names and the connection goes on.  A client
 * that breaks the framing (bad magic, unknown client flags) is dropped.
 */
#include "nbd-internal.h"

#include <errno.h>
#include <stdlib.h>

#include "cleanup.h"
#include "populate.h"

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

    r = conn_handshake(c);
    /* The sender from the first request on: the conn_handshake's replies point into rx. */
    if (r == 0 && ne->pool_running && pthread_create(&c->sender, NULL, conn_sender_main, c) == 0)
        c->sender_running = true;
    if (r == 0)
        r = conn_transmission(c);
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

