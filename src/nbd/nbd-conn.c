/* SPDX-License-Identifier: MIT */
/*
 * One NBD client's life (doc/nbd.md, "The request path"), over a byte
 * stream given as two callbacks (struct nbd_io), so that the fuzzer drives
 * the code that serves real clients.  The receive buffer and the reply
 * batches are made and populated before the handshake (nbd-handshake.c),
 * so serving never allocates; the sender starts only after it, since the
 * handshake's replies point into rx; then the transmission phase
 * (nbd-transmit.c), once io->established() has told the socket layer that
 * the handshake's deadline no longer applies (nbd-server.c).  On the way
 * out, requests being served still answer and every job in the pool is
 * waited for before the buffers go.
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
    if (r == 0 && io->established)
        io->established(io->ctx);
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

