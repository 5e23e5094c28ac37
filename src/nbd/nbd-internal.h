/* SPDX-License-Identifier: MIT */
/*
 * What the two halves of the NBD front end share: nbd-conn.c speaks the
 * protocol to one client over a struct nbd_io; nbd-server.c owns sockets,
 * threads and the worker pool.
 */
#ifndef UZRAM_NBD_INTERNAL_H
#define UZRAM_NBD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nbd-export.h"

struct nbd_listener;
struct nbd_client;
struct nbd_tx;

struct nbd_conn;

/* A request as it arrived: host byte order. */
struct nbd_req {
    uint16_t flags, type;
    uint64_t cookie, off;
    uint32_t len;
};

/*
 * Requests up to this size that are too large to serve inline go to the
 * worker pool, in one of the export's job buffers; larger ones are served
 * by their connection's thread in pieces (nbd-conn.c, serve_stream()).
 * 1 MiB: qemu's and nbdcopy's usual requests fit, and the buffers (one per
 * worker, made and populated at start) stay a few MiB.
 */
#define NBD_JOB_BUF_SIZE (1u << 20)

/*
 * A large request handed to the worker pool, in one of the export's job
 * buffers: they are made when the pool starts and reused, so that serving
 * never allocates (a daemon serving swap must not wait for memory).
 */
struct nbd_job {
    struct nbd_job *next;       /* the pool's queue, or its free list (pool_lock) */
    struct nbd_conn *c;
    struct nbd_req req;
    uint8_t *buf;               /* NBD_JOB_BUF_SIZE bytes: the payload, or room for the data */
    struct nbd_tx *tx;          /* its reply, until sent */
};

struct nbd_export {
    struct store *store;
    uint64_t size;
    char *description;          /* NULL: none */
    bool read_only;
    unsigned max_connections;
    unsigned nthreads;
    void (*sender_init)(void);  /* nbd_export_options.sender_init */

    /* The worker pool: jobs queued by connection threads (nbd-server.c). */
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_cond;
    struct nbd_job *queue_head, *queue_tail;
    struct nbd_job *jobs;       /* every job buffer (nworkers of them) */
    struct nbd_job *jobs_free;  /* (pool_lock) */
    pthread_cond_t jobs_cond;   /* a job buffer came free (pool_lock) */
    bool pool_stop;
    bool pool_running;          /* workers exist: large requests are queued */
    pthread_t *workers;
    unsigned nworkers;

    /* Sockets and connection threads (nbd-server.c), main thread only... */
    struct nbd_listener *listeners;
    unsigned nlisteners;
    int stop_fd;                /* eventfd: wakes the accept thread (to quit, or reap) */
    atomic_bool accept_stop;
    pthread_t accept_thread;
    bool accepting;
    /* ...except the client list, shared with the accept thread. */
    pthread_mutex_t clients_lock;
    struct nbd_client *clients;

    atomic_uint_fast64_t n_connections, n_refused, n_dropped;
    atomic_uint active;
    /* Sends under way, and when one last completed (ms, CLOCK_MONOTONIC): nbd-conn.c. */
    atomic_uint sends_active;
    atomic_uint_fast64_t send_done_ms;
};

/* ---- nbd-conn.c ---------------------------------------------------------- */

/* A job's reply batch, made (resident) with the job.  NULL when out of memory. */
struct nbd_tx *nbd_tx_new(void);
void nbd_tx_free(struct nbd_tx *tx);

/*
 * Serve a queued job in a worker thread: the store call and the reply,
 * handed to the connection's sender, which gives the job back once the
 * reply is sent (without a sender: sent here, and given back).  Cannot
 * fail: errors go to the client.
 */
void nbd_job_run(struct nbd_job *j) __attribute__((nonnull));

/* ---- nbd-server.c -------------------------------------------------------- */

/* Queue a job for the workers; only when ne->pool_running. */
void nbd_pool_push(struct nbd_export *ne, struct nbd_job *j) __attribute__((nonnull));

/*
 * A free job buffer, waiting for one while all are in use; NULL when the
 * pool is stopping.  Only when ne->pool_running.  nbd_job_put() gives it
 * back (nbd_job_run() does).
 */
struct nbd_job *nbd_job_get(struct nbd_export *ne) __attribute__((nonnull));
void nbd_job_put(struct nbd_export *ne, struct nbd_job *j) __attribute__((nonnull));

#endif /* UZRAM_NBD_INTERNAL_H */
