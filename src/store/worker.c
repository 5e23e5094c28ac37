/* SPDX-License-Identifier: MIT */
/*
 * The store's background threads (compaction, eviction, the reserve's
 * refill and watchdog): each sleeps on its own condition variable, under
 * its own lock, and is told to stop through the flag under that lock.
 * The condition variables use CLOCK_MONOTONIC (deadline_in_ms()).
 */
#include <errno.h>

#include "cleanup.h"
#include "store-internal.h"

/* Start w's thread, running fn(arg), unless it runs.  0 or a negative errno. */
int worker_start(struct worker *w, void *(*fn)(void *), void *arg)
{
    LOCK_GUARD(&w->lock);
    if (w->running)
        return 0;
    w->stop = false;
    int r = pthread_create(&w->thread, NULL, fn, arg);
    if (r != 0)
        return -r;
    w->running = true;
    return 0;
}

/*
 * Tell w's thread to stop, waking it (and the waiters on waiters_cond, if
 * not NULL, who must look at w->stop), and join it.
 */
void worker_stop(struct worker *w, pthread_cond_t *waiters_cond)
{
    mutex_lock(&w->lock);
    bool running = w->running;
    w->stop = true;
    pthread_cond_broadcast(&w->cond);
    if (waiters_cond)
        pthread_cond_broadcast(waiters_cond);
    mutex_unlock(&w->lock);
    if (running)
        pthread_join(w->thread, NULL);
}

void worker_init(struct worker *w, const pthread_condattr_t *ca)
{
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, ca);
}

void worker_destroy(struct worker *w)
{
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

bool worker_sleep(struct worker *w, const bool *wanted, long period_ms)
{
    if (w->stop)
        return false;
    if (!wanted || !*wanted) {
        struct timespec ts = deadline_in_ms(period_ms);
        pthread_cond_timedwait(&w->cond, &w->lock, &ts);
    }
    return !w->stop;
}

void worker_pause(struct worker *w, const bool *wanted, long period_ms)
{
    struct timespec ts = deadline_in_ms(period_ms);
    while (!w->stop && !(wanted && *wanted) &&
           pthread_cond_timedwait(&w->cond, &w->lock, &ts) != ETIMEDOUT)
        ;
}
