/* SPDX-License-Identifier: MIT */
/*
 * What the files of the NBD front end share.  Dependencies run one way:
 * nbd-server.c (sockets, client threads, the export's life) starts
 * connections in nbd-conn.c, which runs nbd-handshake.c and then
 * nbd-transmit.c over nbd-input.c and nbd-reply.c; nbd-pool.c holds the
 * worker pool and the resident buffers and calls back into no one (its
 * workers run each job through ne->job_run).
 *
 * Locking: a connection's lock guards its job count and its sender's
 * queue; its send lock makes each sendmsg() whole replies, and is what
 * serializes the senders of a TLS session (GnuTLS allows one sender and
 * one receiver at once, not two senders); pool_lock
 * guards the pool's queue and free job buffers; clients_lock the client
 * list.  No thread holds two of them at once, except that a reply batch is
 * given back (nbd_job_put(), taking pool_lock) under the connection's lock.
 *
 * A client that does not read (doc/nbd.md, "Bounds"): its socket has
 * SO_SNDTIMEO from transmission on (nbd-server.c), so a sendv() that makes
 * no progress for send_timeout returns; the transport shuts the socket
 * down (nbd-transport.c, nbd-tls.c), which marks the connection broken
 * (sendv_all()) and ends its thread's recv().  Its sender then gives every
 * queued batch back unsent, and each job buffer with it.  Nothing new is
 * locked for it: the shutdown runs in the sending thread, under the send
 * lock, on a descriptor that stays open until every sender has ended.
 */
#ifndef UZRAM_NBD_INTERNAL_H
#define UZRAM_NBD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "nbd-export.h"

struct nbd_listener;
struct nbd_client;
struct nbd_job;

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
    size_t queued;              /* bytes counted in ne->queued_bytes while with the sender */
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
    bool tls_active; /* NBD_OPT_STARTTLS succeeded: io goes through TLS */
    uint16_t tflags;
    atomic_bool broken;         /* a send failed: stop serving */
    bool send_timed_out;        /* and for want of progress: counted once (send lock) */
    bool wait_request;          /* rx_fill() waits for a request: may end idle (c's thread) */

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

    /* The sender (doc/nbd.md, "The request path"); all under lock. */
    pthread_t sender;
    bool sender_running, sender_stop;
    struct nbd_tx *queue_head, *queue_tail;
    struct nbd_tx *free_txs;
};

/* A request as it arrived: host byte order. */
struct nbd_req {
    uint16_t flags, type;
    uint64_t cookie, off;
    uint32_t len;
};

/*
 * Requests up to this size that are too large to serve inline go to the
 * worker pool, in one of the export's job buffers; larger ones are served
 * by their connection's thread in pieces (nbd-transmit.c, serve_large()).
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
    unsigned max_connections; /* per listener (nbd-server.c) */
    unsigned handshake_ms;    /* from accept() to transmission (nbd-server.c) */
    unsigned nthreads;
    unsigned send_timeout_s; /* SO_SNDTIMEO in transmission, TCP; 0: none (nbd-server.c) */
    unsigned send_timeout_unix_s; /* the same on Unix sockets */
    unsigned idle_timeout_s;      /* SO_RCVTIMEO in transmission; 0: none (nbd-input.c) */
    /* Job buffers one connection may hold, so that one stays for the others (nbd-pool.c). */
    unsigned conn_jobs_max;
    void (*sender_init)(void);  /* nbd_export_options.sender_init */
    enum nbd_tls_mode tls;      /* for every client (nbd-server.c) */
    const struct nbd_tls_creds *tls_creds;  /* the caller's; NULL when tls is OFF */
    void (*job_run)(struct nbd_job *j);     /* nbd_job_run(), for the pool's workers */

    /* The worker pool: jobs queued by connection threads (nbd-pool.c). */
    pthread_mutex_t pool_lock;
    pthread_cond_t pool_cond;
    struct nbd_job *queue_head, *queue_tail;
    struct nbd_job *jobs;       /* every job buffer */
    unsigned njobs;             /* one more than the workers (nbd-pool.c) */
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

    atomic_uint_fast64_t n_connections, n_refused, n_strangers, n_dropped, n_timed_out;
    atomic_uint_fast64_t n_send_timeouts, n_idle_timeouts;
    atomic_uint_fast64_t queued_bytes; /* of batches with a sender (nbd-reply.c) */
    /* geteuid() at nbd_export_new(): its user may connect to a Unix socket. */
    uid_t owner;
    atomic_uint active;
    /* Sends under way, and when one last completed (ms, CLOCK_MONOTONIC): nbd-reply.c. */
    atomic_uint sends_active;
    atomic_uint_fast64_t send_done_ms;
};

/* ---- nbd-transport.c, nbd-tls.c ------------------------------------------ */

/*
 * A client's byte stream (doc/nbd.md, "Transport and TLS"): its socket,
 * plain, or inside a TLS session once NBD_OPT_STARTTLS succeeded.  recv()
 * is the connection's thread's; sendv() runs in one thread at a time (the
 * caller holds the connection's send lock) and may run while recv() does.
 * Both return what struct nbd_io's do.
 */
struct nbd_transport;
struct nbd_transport_ops {
    ssize_t (*recv)(struct nbd_transport *t, void *buf, size_t len);
    ssize_t (*sendv)(struct nbd_transport *t, const struct iovec *iov, int iovcnt);
    /* The end: a TLS session says goodbye if clean, and is freed; the socket stays. */
    void (*end)(struct nbd_transport *t, bool clean);
};
struct nbd_transport {
    const struct nbd_transport_ops *ops;
    int fd;                      /* the socket; its owner closes it */
    struct nbd_tls_session *tls; /* NULL while plain */
};
/* A plain transport over socket fd. */
void nbd_transport_init(struct nbd_transport *t, int fd) __attribute__((nonnull));
/*
 * A send made no progress for the socket's SO_SNDTIMEO: shut the socket
 * down, so that the connection's recv() ends too, and set errno to
 * ETIMEDOUT for the failed sendv() to return.
 */
void nbd_transport_stalled(struct nbd_transport *t) __attribute__((nonnull));
/*
 * Run the TLS handshake on t's socket with cr and switch t to the session.
 * -EACCES: the peer's credentials were refused (a wrong PSK, a certificate
 * of another CA); -ECONNRESET: the stream failed; -ENOMEM.  t stays plain
 * on failure.  Bounded in time by the handshake's deadline only: the
 * accept thread shuts the socket down (nbd-server.c).
 */
int nbd_tls_start(struct nbd_transport *t, const struct nbd_tls_creds *cr)
    __attribute__((nonnull));

/* ---- nbd-pool.c ---------------------------------------------------------- */

/* A reply batch, made resident.  NULL when out of memory. */
struct nbd_tx *nbd_tx_new(void);
void nbd_tx_free(struct nbd_tx *tx);
/* The job buffers and the workers.  0 or a negative errno (then nbd_pool_stop()). */
int nbd_pool_start(struct nbd_export *ne) __attribute__((nonnull));
/*
 * Stop the workers (once no connection has jobs) and free the buffers;
 * also after nbd_pool_start() failed, or when it never ran.
 */
void nbd_pool_stop(struct nbd_export *ne) __attribute__((nonnull));
/* Queue a job for the workers; only when ne->pool_running. */
void nbd_pool_push(struct nbd_export *ne, struct nbd_job *j) __attribute__((nonnull));
/*
 * A free job buffer, waiting for one while all are in use; NULL when the
 * pool is stopping.  Only when ne->pool_running.  nbd_job_put() gives it
 * back (the reply's sender does, once the reply is sent).
 */
struct nbd_job *nbd_job_get(struct nbd_export *ne) __attribute__((nonnull));
void nbd_job_put(struct nbd_export *ne, struct nbd_job *j) __attribute__((nonnull));

/* ---- nbd-reply.c --------------------------------------------------------- */

/* A connection's batch: a tx with its read data buffer, both resident. */
struct nbd_tx *conn_tx_new(struct nbd_conn *c);
/*
 * Send all of iov (consumed), the caller holding c's send lock.  -EPIPE
 * (and c marked broken) if the stream failed.
 */
int sendv_all(struct nbd_conn *c, struct iovec *iov, int n);
/* Send what tx gathered, under the send lock.  -EPIPE if the stream failed. */
int tx_flush(struct nbd_tx *tx);
/* A batch was sent or dropped: give it (or its job) back.  c->lock held. */
void tx_done_locked(struct nbd_conn *c, struct nbd_tx *tx);
/* Hand a gathered batch to the sender.  c->lock not held. */
void tx_submit(struct nbd_conn *c, struct nbd_tx *tx);
/* The connection's sender thread. */
void *conn_sender_main(void *arg);
/*
 * Between requests only: send (or hand over) the connection's replies and
 * start a new batch.  -ECONNRESET if the stream failed.
 */
int conn_flush(struct nbd_conn *c);
/* Room for a reply of niov iovecs and hdr_len header bytes, flushing if need be. */
void tx_reserve(struct nbd_tx *tx, int niov, size_t hdr_len);
/* len bytes of header, within what tx_reserve() made room for. */
uint8_t *tx_hdr(struct nbd_tx *tx, size_t len);
/* Data sent from where it lies: it must stay put until the next flush. */
void tx_data(struct nbd_tx *tx, const void *p, size_t len);
void reply_simple(struct nbd_tx *tx, uint64_t cookie, uint32_t error, const void *data,
                  size_t len);
/* A structured chunk's header, with extra bytes of header payload after it (returned). */
uint8_t *chunk_hdr(struct nbd_tx *tx, uint64_t cookie, uint16_t flags, uint16_t type,
                   uint32_t len, size_t extra);
/* An error reply, structured where the request must have one. */
void reply_error(struct nbd_tx *tx, const struct nbd_req *req, uint32_t error);
/* The store's -errno as an NBD error. */
uint32_t nbd_errno(int r);

/* ---- nbd-input.c --------------------------------------------------------- */

/* n bytes (at most NBD_RX_SIZE) of input at rx + rx_pos.  -ECONNRESET at the end. */
int rx_fill(struct nbd_conn *c, size_t n);
/* Consume n buffered bytes (the caller made sure they are). */
void rx_consume(struct nbd_conn *c, size_t n);
/* n bytes into buf: what is buffered, then straight from the stream. */
int rx_read_into(struct nbd_conn *c, uint8_t *buf, size_t n);
/* Throw away n bytes of input. */
int rx_skip(struct nbd_conn *c, uint64_t n);

/* ---- nbd-handshake.c ----------------------------------------------------- */

/*
 * 0: go to transmission; -ECONNABORTED: the client gave up; -EACCES: TLS
 * required and not had; -EPROTO, -ECONNRESET.
 */
int conn_handshake(struct nbd_conn *c);

/* ---- nbd-transmit.c ------------------------------------------------------ */

/*
 * Serve a queued job in a worker thread: the store call and the reply,
 * handed to the connection's sender, which gives the job back once the
 * reply is sent (without a sender: sent here, and given back).  Cannot
 * fail: errors go to the client.
 */
void nbd_job_run(struct nbd_job *j) __attribute__((nonnull));
/*
 * Wait until fewer than max_jobs jobs of c are queued, running or waiting
 * to be sent (c's thread).
 */
void wait_jobs(struct nbd_conn *c, unsigned max_jobs);
/* Requests until the client leaves or breaks the framing.  0 or a negative errno. */
int conn_transmission(struct nbd_conn *c);

#endif /* UZRAM_NBD_INTERNAL_H */
