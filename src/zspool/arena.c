/* SPDX-License-Identifier: MIT */
/*
 * Freed runs, per zspage length (doc/zspool.md, "Zspages are contiguous",
 * "The reserve").
 *
 * A freed zspage's run waits for the next zspage of its length: cold (its
 * pages given back) in lazy mode; in reserve mode warm (still resident,
 * part of the reserve) while warm runs hold under a quarter of the target,
 * cold beyond.  arena_put() never allocates in reserve mode: a run with no
 * room on the cold list is dropped, and the refill grows the list.  The
 * arena's lock is held only to push or pop, and before the frontier's.
 */
#include "cleanup.h"
#include "zspool-internal.h"

/*
 * Warm runs serve only zspages of their own length, so they may sit there
 * while the frontier, which serves every length, runs dry: they are kept to
 * a quarter of the target, and the frontier is filled to the rest.
 */
uint64_t rsv_warm_max(uint64_t target)
{
    return target / 4;
}

/*
 * A run of k pages for a new zspage.  Lazy mode: a freed run (its pages
 * given back) or a fresh one, neither touched.  Reserve mode: a warm run or
 * populated frontier, or NULL (the caller counts a miss) if the refill has
 * not caught up; never a page fault.  Takes the arena lock, then the
 * frontier lock.
 */
char *arena_get(struct zs_pool *pool, uint32_t k)
{
    struct arena *a = &pool->arenas[k];
    size_t bytes = (size_t)k * PAGE_SIZE;
    char *p;

    mutex_lock(&a->lock);
    if (pool->rsv.on) {
        if (a->warm.n) {
            p = a->warm.v[--a->warm.n];
            mutex_unlock(&a->lock);
            atomic_fetch_sub_explicit(&pool->rsv.warm, bytes, memory_order_relaxed);
            return p;
        }
        bool cold_waits = a->cold.n > 0;
        mutex_unlock(&a->lock);
        p = frontier_take(pool, bytes);
        /* Address space would have served: ask the refill to warm a cold run. */
        if (p && cold_waits)
            atomic_fetch_add_explicit(&pool->rsv.rewarm[k], 1, memory_order_relaxed);
        return p;
    }
    if (a->cold.n) {
        p = a->cold.v[--a->cold.n];
        mutex_unlock(&a->lock);
        return p;
    }
    mutex_unlock(&a->lock);
    LOCK_GUARD(&pool->frontier.lock);
    return frontier_carve(pool, bytes);
}

/*
 * A zspage's run is free.  Reserve mode keeps it resident, as part of the
 * reserve, while warm runs hold under a quarter of the target (the frontier
 * keeps the rest, for runs of any length); otherwise its pages go back to
 * the OS and the run waits, cold, for the next zspage of its length.  Never
 * allocates: if the cold list is full, the addresses are lost (the refill
 * grows it).
 */
void arena_put(struct zs_pool *pool, uint32_t k, char *base, bool touched)
{
    struct arena *a = &pool->arenas[k];
    size_t bytes = (size_t)k * PAGE_SIZE;
    LOCK_GUARD(&a->lock);

    if (pool->rsv.on) {
        uint64_t warm = load(&pool->rsv.warm);
        if (warm + bytes <= rsv_warm_max(load(&pool->rsv.target)) &&
            runs_push(pool, &a->warm, base, false) == 0) {
            atomic_fetch_add_explicit(&pool->rsv.warm, bytes, memory_order_relaxed);
            return;
        }
        touched = true;
    }
    if (touched)
        release_pages(base, bytes);
    /* Lazy mode may grow the list; reserve mode must not allocate here. */
    if (runs_push(pool, &a->cold, base, !pool->rsv.on) < 0)
        a->cold_full = true;
}
