/* SPDX-License-Identifier: MIT */
/*
 * The reserve (doc/store.md, "The reserve").
 *
 * The refill thread populates the allocator's reserve back to its target
 * when the allocator says it is low, and every REFILL_PERIOD_MS; it may
 * wait for memory, and no request waits on it except for the bounded wait
 * of reserve_wait().  The watchdog allocates nothing: when a refill stalls
 * it marks it so, and when that refill stalls while no request arrives on
 * a machine short of memory it gives a quarter of the reserve back to the
 * kernel, once per RESERVE_STALL_MS.
 */
#include <errno.h>

#include "backing.h"
#include "cleanup.h"
#include "populate.h"
#include "store-internal.h"
#include "util.h"

/* How often the refill thread looks at the reserve when nobody wakes it. */
#define REFILL_PERIOD_MS 1000
/*
 * How often a write that found the reserve empty looks again while the
 * refill grows it (doc/store.md, "The reserve"): a step of the refill
 * takes well under a millisecond when memory is free.
 */
#define RESERVE_POLL_MS 1
/*
 * The watchdog's period, and how long a refill may go without growing the
 * reserve before memory counts as short (doc/store.md, "The reserve"): far
 * longer than a step of the reserve takes to populate when memory is free.
 */
#define RESERVE_WATCH_MS 20
#define RESERVE_STALL_MS 100


/* ops.reserve_low: from an allocation, with no pool lock held.  Must not block long. */
void reserve_low(struct zs_pool *pool, void *arg)
{
    (void)pool;
    struct store *s = arg;
    LOCK_GUARD(&s->refiller.lock);
    s->refill_wanted = true;
    pthread_cond_signal(&s->refiller.cond);
}

/*
 * ops.handles_grow: the zspage policy's reverse map is indexed by handle
 * index; populate it before the allocator hands such handles out.
 */
int handles_grow(struct zs_pool *pool, uint64_t handles, void *arg)
{
    (void)pool;
    struct store *s = arg;
    if (!s->rmap)
        return 0;
    size_t bytes = (size_t)handles * sizeof(*s->rmap);
    if (bytes > s->rmap_bytes)
        bytes = s->rmap_bytes;
    return mem_populate(s->rmap, bytes);
}

/*
 * The refill thread: when the allocator says the reserve is low, and every
 * REFILL_PERIOD_MS in any case, populate it back to its target.  The refill
 * may wait for memory as long as the kernel takes; no request waits on it.
 */
static void *refill_main(void *arg)
{
    struct store *s = arg;
    if (s->reserve_thread_init)
        s->reserve_thread_init();
    mutex_lock(&s->refiller.lock);
    while (worker_sleep(&s->refiller, &s->refill_wanted, REFILL_PERIOD_MS)) {
        s->refill_wanted = false;
        mutex_unlock(&s->refiller.lock);
        atomic_store(&s->refill_busy_since, monotonic_ms());
        int r = zs_reserve_refill(s->pool);
        atomic_store(&s->refill_busy_since, 0);
        if (r < 0)
            counter_add(&s->reserve_failures, 1);
        mutex_lock(&s->refiller.lock);
        if (r == 0) {
            s->refills_done++;
            atomic_store(&s->refill_stalled, false);
            pthread_cond_broadcast(&s->refill_cond);
        }
    }
    mutex_unlock(&s->refiller.lock);
    return NULL;
}

/*
 * The reserve's watchdog (doc/store.md, "The reserve"): a refill under way
 * that has not grown the reserve for RESERVE_STALL_MS is marked stalled,
 * and unmarked when it grows the reserve again.  With the refill stalled,
 * the machine short of memory and no request for RESERVE_STALL_MS, a
 * quarter of the target goes back to the kernel, once per
 * RESERVE_STALL_MS.  A stalled refill alone gives nothing back (the pages
 * would go to the program that is swapping), nor does an idle device (its
 * reserve is what the first swap writes will need).  It allocates nothing
 * and touches only what is resident.
 */
static void *watch_main(void *arg)
{
    struct store *s = arg;
    uint64_t last_avail = 0, last_progress = 0, last_release = 0;
    uint64_t last_reqs = 0, last_io = 0;

    stack_prefault(64u << 10);
    mutex_lock(&s->watchdog.lock);
    while (worker_sleep(&s->watchdog, NULL, RESERVE_WATCH_MS)) {
        mutex_unlock(&s->watchdog.lock);

        struct zs_reserve_stats rs;
        zs_reserve_get_stats(s->pool, &rs);
        uint64_t now = monotonic_ms();
        uint64_t since = atomic_load_explicit(&s->refill_busy_since, memory_order_relaxed);
        uint64_t reqs = store_requests_begun(s);
        bool low = machine_short(s->low_free);
        if (since == 0 || rs.available > last_avail) {
            last_progress = now;
            atomic_store(&s->refill_stalled, false);
        }
        if (reqs != last_reqs || !low)
            last_io = now;
        bool refill_stuck = now - last_progress >= RESERVE_STALL_MS;
        bool io_stuck = now - last_io >= RESERVE_STALL_MS;
        /* Writing back and reading back go without memory now too
         * (doc/backing.md, "The page cache, or not"). */
        if (s->backing)
            backing_set_pressure(s->backing, refill_stuck || low);
        if (refill_stuck)
            atomic_store(&s->refill_stalled, true);
        if (io_stuck && refill_stuck && now - last_release >= RESERVE_STALL_MS) {
            counter_add(&s->reserve_released, zs_reserve_release(s->pool, rs.target / 4));
            last_release = now;
        }
        last_avail = rs.available;
        last_reqs = reqs;
        mutex_lock(&s->watchdog.lock);
    }
    mutex_unlock(&s->watchdog.lock);
    return NULL;
}

/*
 * A write found the reserve empty: wake the refill and wait for it to put
 * more back, looking every RESERVE_POLL_MS, until *deadline_ms (set
 * at the write's first call, RESERVE_STALL_MS on).  A refill that stalls
 * (the watchdog says so) ends the wait at once, and a write never waits
 * while one is known to stall (doc/store.md).  True if the reserve grew,
 * or a refill completed: the caller tries again.
 */
bool reserve_wait(struct store *s, uint64_t *deadline_ms)
{
    if (!s->refiller.running)
        return false;
    if (*deadline_ms == 0)
        *deadline_ms = monotonic_ms() + RESERVE_STALL_MS;
    LOCK_GUARD(&s->refiller.lock);
    uint64_t done = s->refills_done;
    s->refill_wanted = true;
    pthread_cond_signal(&s->refiller.cond);
    /* What it holds now did not serve this write (runs of other lengths). */
    struct zs_reserve_stats rs;
    zs_reserve_get_stats(s->pool, &rs);
    uint64_t seen = rs.available;
    for (;;) {
        zs_reserve_get_stats(s->pool, &rs);
        if (rs.available > seen || s->refills_done != done)
            return true;
        if (atomic_load(&s->refill_stalled) || s->refiller.stop ||
            monotonic_ms() >= *deadline_ms)
            return false;
        struct timespec poll = deadline_in_ms(RESERVE_POLL_MS);
        (void)pthread_cond_timedwait(&s->refill_cond, &s->refiller.lock, &poll);
    }
}

/*
 * With a reserve: the tables every request touches, populated now, and the
 * reserve filled once before the store serves.
 */
int reserve_setup(struct store *s, uint64_t bytes)
{
    int r = zs_reserve_set(s->pool, bytes);
    if (r < 0)
        return r;
    if (mem_populate(s->slots, s->slots_bytes) < 0 || mem_populate(s->occ, s->occ_bytes) < 0 ||
        mem_populate(s->occ_summary, s->occ_summary_bytes) < 0 ||
        mem_populate(s->atime, s->atime_bytes) < 0)
        return -ENOMEM;
    s->reserved = true;
    return zs_reserve_refill(s->pool);
}

/* The refill thread and the watchdog.  0 or a negative errno. */
int reserve_start(struct store *s)
{
    int r = worker_start(&s->refiller, refill_main, s);
    return r < 0 ? r : worker_start(&s->watchdog, watch_main, s);
}
