/* SPDX-License-Identifier: MIT */
/*
 * The worker pool and the export's resident buffers (doc/nbd.md,
 * "Threads", "The request path").
 *
 * Workers take large requests from one queue shared by all connections,
 * under pool_lock, and run each through ne->job_run (nbd-transmit.c's
 * nbd_job_run()); the pool itself knows nothing of the protocol.  The job
 * buffers, one per worker, and every reply batch are made and populated
 * before serving, so that serving never allocates.  A connection takes a
 * job buffer with nbd_job_get(), waiting while all are in use; the reply's
 * sender gives it back with nbd_job_put() once the reply is sent.
 *
 * There is one job buffer more than there are workers, and one connection
 * holds at most conn_jobs_max of them (queued, running or with its
 * sender), one per worker: a single client still keeps every worker busy,
 * and a client that does not read, which keeps the buffers its unsent
 * replies hold until the send timeout drops it (nbd-reply.c), leaves the
 * last one to serve everybody else.  The spare costs NBD_JOB_BUF_SIZE.
 */
#include "nbd-internal.h"

#include <errno.h>
#include <stdlib.h>

#include "cleanup.h"
#include "populate.h"
#include "store.h"

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

struct nbd_job *nbd_job_get(struct nbd_export *ne)
{
    LOCK_GUARD(&ne->pool_lock);
    while (!ne->jobs_free && !ne->pool_stop)
        pthread_cond_wait(&ne->jobs_cond, &ne->pool_lock);
    struct nbd_job *j = ne->jobs_free;
    if (j)
        ne->jobs_free = j->next;
    return j;
}

void nbd_job_put(struct nbd_export *ne, struct nbd_job *j)
{
    LOCK_GUARD(&ne->pool_lock);
    j->next = ne->jobs_free;
    ne->jobs_free = j;
    pthread_cond_signal(&ne->jobs_cond);
}

void nbd_pool_push(struct nbd_export *ne, struct nbd_job *j)
{
    LOCK_GUARD(&ne->pool_lock);
    j->next = NULL;
    if (ne->queue_tail)
        ne->queue_tail->next = j;
    else
        ne->queue_head = j;
    ne->queue_tail = j;
    pthread_cond_signal(&ne->pool_cond);
}

static void *worker_main(void *arg)
{
    struct nbd_export *ne = arg;

    stack_prefault(IO_STACK_BYTES);
    (void)store_thread_prepare(ne->store);   /* else on the first request */
    for (;;) {
        mutex_lock(&ne->pool_lock);
        while (!ne->queue_head && !ne->pool_stop)
            pthread_cond_wait(&ne->pool_cond, &ne->pool_lock);
        struct nbd_job *j = ne->queue_head;
        if (j) {
            ne->queue_head = j->next;
            if (!ne->queue_head)
                ne->queue_tail = NULL;
        }
        mutex_unlock(&ne->pool_lock);
        if (!j)
            break;
        ne->job_run(j);
    }
    return NULL;
}

/* The job buffers, one per worker, made and populated before serving. */
static int jobs_make(struct nbd_export *ne)
{
    ne->njobs = ne->nthreads + 1;
    ne->jobs = calloc(ne->njobs, sizeof(*ne->jobs));
    if (!ne->jobs)
        return -ENOMEM;
    for (unsigned i = 0; i < ne->njobs; i++) {
        struct nbd_job *j = &ne->jobs[i];
        if (!(j->tx = nbd_tx_new()))
            return -ENOMEM;
        if (posix_memalign((void **)&j->buf, 4096, NBD_JOB_BUF_SIZE) != 0)
            return -ENOMEM;
        if (mem_populate(j->buf, NBD_JOB_BUF_SIZE) < 0)
            return -ENOMEM;
        j->next = ne->jobs_free;
        ne->jobs_free = j;
    }
    return 0;
}

static void jobs_free(struct nbd_export *ne)
{
    for (unsigned i = 0; ne->jobs && i < ne->njobs; i++) {
        free(ne->jobs[i].buf);
        nbd_tx_free(ne->jobs[i].tx);
    }
    free(ne->jobs);
    ne->jobs = ne->jobs_free = NULL;
}

int nbd_pool_start(struct nbd_export *ne)
{
    int r = jobs_make(ne);
    if (r < 0)
        return r;
    ne->conn_jobs_max = ne->nthreads;
    if (ne->conn_jobs_max > NBD_MAX_JOBS)
        ne->conn_jobs_max = NBD_MAX_JOBS;
    ne->workers = calloc(ne->nthreads, sizeof(*ne->workers));
    if (!ne->workers)
        return -ENOMEM;
    for (unsigned i = 0; i < ne->nthreads; i++) {
        int e = pthread_create(&ne->workers[i], NULL, worker_main, ne);
        if (e != 0)
            return -e;
        ne->nworkers++;
    }
    ne->pool_running = true;
    return 0;
}

void nbd_pool_stop(struct nbd_export *ne)
{
    mutex_lock(&ne->pool_lock);
    ne->pool_stop = true;
    pthread_cond_broadcast(&ne->pool_cond);
    pthread_cond_broadcast(&ne->jobs_cond);
    mutex_unlock(&ne->pool_lock);
    for (unsigned i = 0; i < ne->nworkers; i++)
        pthread_join(ne->workers[i], NULL);
    free(ne->workers);
    ne->workers = NULL;
    ne->nworkers = 0;
    jobs_free(ne);
}
