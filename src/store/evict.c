/* SPDX-License-Identifier: MIT */
/*
 * The eviction thread and its policies (doc/store.md, "What goes first",
 * "Under the limit, with a backing store").
 *
 * A pass runs while the pool is over the low watermark: the zspage policy
 * shrinks the pool zspage by zspage and falls back on the clock when a
 * locked slot stops it; the clock writes back slots not accessed since it
 * last passed (bundled pages among them, each alone: writeback.c), and
 * compacts after each batch.  Locked slots are passed by
 * (their writer may be waiting for this very pass).  After a pass that
 * freed nothing the thread backs off a period.
 */
#include <errno.h>

#include "backing.h"
#include "cleanup.h"
#include "store-internal.h"

/* The eviction thread looks at the pool this often when nobody wakes it. */
#define EVICT_PERIOD_MS 200

/* Wake the eviction thread for a pass.  Cheap to call on every allocation. */
void evict_kick(struct store *s)
{
    if (atomic_load_explicit(&s->evict_kicked, memory_order_relaxed) ||
        atomic_exchange(&s->evict_kicked, true))
        return;
    LOCK_GUARD(&s->evictor.lock);
    s->evict_wanted = true;
    pthread_cond_signal(&s->evictor.cond);
}

/*
 * Ask for a pass and wait until one ends or *deadline passes.  True when a
 * pass ended that freed memory or found none to free (other writers may
 * have taken it since: the caller retries), false when eviction is stuck
 * (the backing store failing or full, nothing left to write back) or the
 * time is up.
 */
bool evict_wait(struct store *s, const struct timespec *deadline)
{
    LOCK_GUARD(&s->evictor.lock);
    if (!s->evictor.running || s->evictor.stop)
        return false;
    uint64_t pass = s->evict_passes;
    s->evict_wanted = true;
    pthread_cond_signal(&s->evictor.cond);
    /*
     * A pass under way when we arrived may have started before our want:
     * if it got stuck, wait for the one after it, which will have seen it.
     */
    while (!s->evictor.stop) {
        if (s->evict_passes > pass && (s->evict_progress || s->evict_passes > pass + 1))
            return s->evict_progress;
        if (pthread_cond_timedwait(&s->evict_done, &s->evictor.lock, deadline) == ETIMEDOUT)
            return false;
    }
    return false;
}

/*
 * One batch of the clock: from the hand on, write back pages in the pool
 * whose slot was not accessed since the hand last passed, until about
 * bytes of them are written or every slot in memory was seen twice.
 * Locked slots are passed by.  Returns the pages written back, or the
 * backing store's error if it failed before any.  The eviction thread
 * only.
 */
static int64_t clock_batch(struct store *s, struct tctx *t, uint64_t bytes)
{
    /* Twice round every occupied slot (written-back ones are on the way). */
    uint64_t budget = 2 * (counter_get(&s->pages_stored) + counter_get(&s->bd_count) + 64);
    uint64_t written = 0;
    int64_t n = 0;
    int err = 0;
    uint64_t i = s->clock_hand;

    while (written < bytes && budget > 0) {
        i = occ_next_set(s, i);
        if (i >= s->nslots) {
            i = occ_next_set(s, 0);
            if (i >= s->nslots)
                break;
        }
        budget--;
        struct slot *sl = &s->slots[i];
        if (!slot_trylock(sl)) {
            i++;
            continue;
        }
        if (slot_in_pool(sl)) {
            if (sl->flags & SF_ACCESSED) {
                sl->flags &= (uint8_t)~SF_ACCESSED;
            } else {
                /* A bundle's memory goes with its last member: count each its share. */
                uint64_t size = sl->state == SLOT_BUNDLE ? bundle_share(s, sl)
                                                         : zs_class_size(sl->size);
                err = slot_writeback_locked(s, t, i);
                if (err == 0) {
                    n++;
                    written += size;
                }
            }
        }
        slot_unlock(sl);
        i++;
        if (err < 0)
            break;
    }
    s->clock_hand = i;
    return n == 0 && err < 0 ? err : n;
}

/*
 * The zspage policy's evict callback: write back the object h, which
 * zs_shrink() is taking out of its zspage.  0 whether or not it could (a
 * slot that is busy or no longer holds h is left alone), or the backing
 * store's error, which stops the shrink.
 */
int evict_handle(struct zs_pool *pool, uint64_t h, void *arg)
{
    (void)pool;
    struct store *s = arg;
    struct tctx *t = tctx_get(s);
    if (!t)
        return -ENOMEM;
    uint64_t i = atomic_load_explicit(&s->rmap[zs_handle_index(h)], memory_order_relaxed);
    if (i >= s->nslots)
        return 0;
    struct slot *sl = &s->slots[i];
    if (!slot_trylock(sl))
        return 0;
    int r = 0;
    if (slot_has_object(sl) && sl->val == h)
        r = slot_writeback_locked(s, t, i);
    slot_unlock(sl);
    return r;
}

/*
 * One eviction pass: until the pool is under the low watermark, or nothing
 * more can go.  Returns the 4 KiB pages of memory it freed, 0 if the pool
 * was under the low watermark already, or, when it could free nothing,
 * the backing store's error or -ENOSPC (nothing left to write back).
 */
static int64_t evict_pass(struct store *s, struct tctx *t)
{
    uint64_t limit = mem_limit(s);
    if (!limit)
        return 0;
    uint64_t low = watermark(limit, &s->low_pct);
    uint64_t start = mem_used(s);
    int64_t r = 0;

    counter_add(&s->evictions, 1);
    for (;;) {
        uint64_t used = mem_used(s);
        if (used <= low)
            break;
        uint64_t excess = used - low;
        if (s->policy == STORE_EVICT_ZSPAGE) {
            r = zs_shrink(s->pool, (excess + PAGE - 1) / PAGE);
            if (r > 0)
                continue;
            if (r < 0 && r != -EBUSY)
                break;
        }
        r = clock_batch(s, t, excess);
        if (r <= 0)
            break;
        compact_now(s);
    }
    uint64_t end = mem_used(s);
    if (end < start)
        return (int64_t)((start - end + PAGE - 1) / PAGE);
    if (start <= low)
        return 0;
    return r < 0 ? r : -ENOSPC;
}

/*
 * The eviction thread: a pass whenever the pool is over the high watermark
 * (looked at every EVICT_PERIOD_MS, or at once when an allocation passes
 * it) or a writer waits.  After a pass that freed nothing it backs off a
 * period, so a failing backing store is not hammered.
 */
void *evictor_main(void *arg)
{
    struct store *s = arg;
    struct tctx *t = tctx_of_thread(s, true);
    (void)backing_thread_prepare(s->backing);   /* else on the first write */

    mutex_lock(&s->evictor.lock);
    while (worker_sleep(&s->evictor, &s->evict_wanted, EVICT_PERIOD_MS)) {
        bool want = s->evict_wanted;
        s->evict_wanted = false;
        mutex_unlock(&s->evictor.lock);

        atomic_store(&s->evict_kicked, false);
        uint64_t limit = mem_limit(s);
        bool over = limit && mem_used(s) > watermark(limit, &s->high_pct);
        int64_t freed = 0;
        if ((want || over) && t)
            freed = evict_pass(s, t);
        else if (want)
            freed = -ENOMEM;    /* no context: cannot write anything back */

        mutex_lock(&s->evictor.lock);
        s->evict_passes++;
        /* Waiting writers retry unless eviction is stuck. */
        s->evict_progress = freed >= 0;
        pthread_cond_broadcast(&s->evict_done);
        /* Writers asking meanwhile are answered by the next pass. */
        if (freed < 0)
            worker_pause(&s->evictor, &s->evict_wanted, EVICT_PERIOD_MS);
    }
    pthread_cond_broadcast(&s->evict_done);
    mutex_unlock(&s->evictor.lock);
    return NULL;
}

