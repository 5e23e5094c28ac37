/* SPDX-License-Identifier: MIT */
/*
 * The reserve: its target, its refill and release, and what an allocation
 * tells it (doc/zspool.md, "The reserve").
 *
 * One refill runs at a time (refill_lock), and it holds no other lock
 * while it waits for memory.  It grows each table HANDLE_SLACK, ID_SLACK or
 * DESC_SLACK past its top (the handles after the user's own per-handle
 * tables, through ops.handles_grow), makes room in the run lists, warms
 * the cold runs that allocations passed by, and fills the frontier to the
 * target less the warm runs.  An allocation only notes the level
 * (rsv.low) and, when it missed or something is under half its goal, calls
 * ops.reserve_low, once until the next refill.
 */
#include <errno.h>

#include "cleanup.h"
#include "populate.h"
#include "zspool-internal.h"

/*
 * Table room the refill keeps populated past what is in use, in reserve
 * mode: a handle per 64 bytes of reserve (objects of a compressed page are
 * rarely smaller), a zspage id per page of it, and descriptor bytes for a
 * zspage per page of it (each at most 1088 bytes, a 16-page zspage's ~200,
 * a large class's at most 172).
 */
#define HANDLE_SLACK(target) ((target) / 64 + 4096)
#define ID_SLACK(target) ((target) / PAGE_SIZE + 256)
#define DESC_SLACK(target) ((target) / 8 + 64 * 1024)

/* ---- what an allocation tells the reserve -------------------------------- */

static uint64_t rsv_avail(struct zs_pool *pool)
{
    return load(&pool->rsv.frontier) + load(&pool->rsv.warm);
}

/* What the refill fills the frontier to: the target less the warm runs. */
static uint64_t rsv_frontier_goal(struct zs_pool *pool, uint64_t target)
{
    uint64_t warm = load(&pool->rsv.warm);
    return warm < target ? target - warm : 0;
}

/* Note the reserve's level after an allocation took from it. */
static void rsv_taken(struct zs_pool *pool)
{
    uint64_t now = rsv_avail(pool), low = load(&pool->rsv.low);
    while (now < low &&
           !atomic_compare_exchange_weak_explicit(&pool->rsv.low, &low, now,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* Whether the reserve or a table's slack is under half its target. */
static bool rsv_low(struct zs_pool *pool)
{
    uint64_t target = load(&pool->rsv.target);
    size_t handles = atomic_load_explicit(&pool->handles.committed, memory_order_relaxed);
    size_t ids = atomic_load_explicit(&pool->ids.committed, memory_order_relaxed);
    size_t descs = atomic_load_explicit(&pool->descs.committed, memory_order_relaxed);

    /* The frontier under half its goal: warm runs of other lengths do not count. */
    return load(&pool->rsv.frontier) * 2 < rsv_frontier_goal(pool, target) ||
           handles / sizeof(uint64_t) - load(&pool->handle_top) < HANDLE_SLACK(target) / 2 ||
           ids / sizeof(struct zspage *) -
                   atomic_load_explicit(&pool->id_top, memory_order_relaxed) <
               ID_SLACK(target) / 2 ||
           descs - load(&pool->desc_top) < DESC_SLACK(target) / 2;
}

/* Tell the user the refill is wanted, once until it has run. */
static void rsv_kick(struct zs_pool *pool)
{
    if (atomic_load_explicit(&pool->rsv.kicked, memory_order_relaxed) ||
        atomic_exchange(&pool->rsv.kicked, true))
        return;
    if (pool->ops.reserve_low)
        pool->ops.reserve_low(pool, pool->arg);
}

/* After an allocation in reserve mode: note the level, ask for a refill if low. */
void rsv_after(struct zs_pool *pool, bool missed)
{
    if (missed)
        atomic_fetch_add_explicit(&pool->rsv.misses, 1, memory_order_relaxed);
    rsv_taken(pool);
    if (missed || rsv_low(pool))
        rsv_kick(pool);
}

/* ---- the reserve's own calls --------------------------------------------- */

ZS_EXPORT int zs_reserve_set(struct zs_pool *pool, uint64_t bytes)
{
    if (bytes > ZS_RESERVE_MAX || (pool->rsv.on && bytes == 0))
        return -EINVAL;
    if (!pool->rsv.on) {
        if (bytes == 0)
            return 0;
        /* Lazy zspages may have untouched pages: no switching once used. */
        if (load(&pool->handle_top) != 0 || pool->frontier.regions.n != 0)
            return -EBUSY;
        pool->rsv.on = true;
    }
    atomic_store_explicit(&pool->rsv.target, bytes, memory_order_relaxed);
    return 0;
}

/*
 * The tables an allocation writes: handles (with the user's per-handle
 * tables first, through ops.handles_grow), zspage ids and descriptors,
 * each populated HANDLE_SLACK, ID_SLACK or DESC_SLACK past its top.
 */
static int rsv_refill_tables(struct zs_pool *pool, uint64_t target)
{
    size_t need = (size_t)(load(&pool->handle_top) + HANDLE_SLACK(target)) * sizeof(uint64_t);
    if (need > pool->handles.reserved)
        need = pool->handles.reserved;
    if (need > atomic_load_explicit(&pool->handles.committed, memory_order_acquire)) {
        size_t want = (need + TABLE_COMMIT_STEP - 1) / TABLE_COMMIT_STEP * TABLE_COMMIT_STEP;
        if (want > pool->handles.reserved)
            want = pool->handles.reserved;
        if (pool->ops.handles_grow) {
            int r = pool->ops.handles_grow(pool, want / sizeof(uint64_t), pool->arg);
            if (r < 0)
                return r;
        }
        if (vtable_grow_(pool, &pool->handles, want, true) < 0)
            return -ENOMEM;
    }
    need = ((size_t)atomic_load_explicit(&pool->id_top, memory_order_relaxed) + ID_SLACK(target)) *
           sizeof(struct zspage *);
    if (need > pool->ids.reserved)
        need = pool->ids.reserved;
    if (vtable_grow_(pool, &pool->ids, need, true) < 0)
        return -ENOMEM;
    need = (size_t)(load(&pool->desc_top) + DESC_SLACK(target));
    if (need > pool->descs.reserved)
        need = pool->descs.reserved;
    if (vtable_grow_(pool, &pool->descs, need, true) < 0)
        return -ENOMEM;
    return 0;
}

/*
 * Freed runs: room in the lists for what the I/O path may push (warm runs
 * up to their share of the target; cold ones as many as there are now
 * again), and cold runs of the lengths allocations took from the frontier
 * made warm again, within that share, so that the address space is reused.
 */
static int rsv_refill_runs(struct zs_pool *pool, uint64_t target)
{
    for (uint32_t k = 1; k <= MAX_ZSPAGE_PAGES; k++) {
        struct arena *a = &pool->arenas[k];
        size_t bytes = (size_t)k * PAGE_SIZE;

        if (!(zspage_lengths >> k & 1))
            continue; /* no zspage has this length: no run will come */
        mutex_lock(&a->lock);
        size_t cold = a->cold.n;
        a->cold_full = false;
        mutex_unlock(&a->lock);
        if (runs_grow_unlocked(pool, &a->lock, &a->warm, rsv_warm_max(target) / bytes + 1) < 0 ||
            runs_grow_unlocked(pool, &a->lock, &a->cold, cold + 64) < 0)
            return -ENOMEM;

        while (atomic_load_explicit(&pool->rsv.rewarm[k], memory_order_relaxed) > 0 &&
               load(&pool->rsv.warm) + bytes <= rsv_warm_max(target)) {
            atomic_fetch_sub_explicit(&pool->rsv.rewarm[k], 1, memory_order_relaxed);
            mutex_lock(&a->lock);
            char *run = a->cold.n && a->warm.n < a->warm.cap ? a->cold.v[--a->cold.n] : NULL;
            mutex_unlock(&a->lock);
            if (!run)
                break;
            int r = populate(run, bytes);
            LOCK_GUARD(&a->lock);
            if (r == 0 && runs_push(pool, &a->warm, run, false) == 0) {
                atomic_fetch_add_explicit(&pool->rsv.warm, bytes, memory_order_relaxed);
                continue;
            }
            /* Back to cold (frees meanwhile may have filled its room: then it is lost). */
            release_pages(run, bytes);
            if (runs_push(pool, &a->cold, run, false) < 0)
                a->cold_full = true;
            if (r < 0)
                return r;
            break;
        }
        atomic_store_explicit(&pool->rsv.rewarm[k], 0, memory_order_relaxed);
    }
    return 0;
}

ZS_EXPORT int zs_reserve_refill(struct zs_pool *pool)
{
    struct reserve *rv = &pool->rsv;

    if (!rv->on)
        return 0;
    LOCK_GUARD(&rv->refill_lock);
    atomic_store(&rv->kicked, false);
    uint64_t target = load(&rv->target), grown = 0;
    int r = rsv_refill_tables(pool, target);
    if (r == 0)
        r = rsv_refill_runs(pool, target);
    while (r == 0 && load(&rv->frontier) < rsv_frontier_goal(pool, target)) {
        int64_t n = frontier_grow(pool);
        if (n <= 0) {
            r = (int)n;
            break;
        }
        grown += (uint64_t)n;
    }
    /* A lowered target: give back the frontier's excess (warm runs go as they are reused). */
    uint64_t frontier = load(&rv->frontier), goal = rsv_frontier_goal(pool, target);
    if (r == 0 && frontier > goal + RESERVE_STEP)
        frontier_shrink(pool, frontier - goal);
    if (grown)
        atomic_fetch_add_explicit(&rv->refills, 1, memory_order_relaxed);
    if (r == 0 && atomic_load_explicit(&rv->low, memory_order_relaxed) == UINT64_MAX)
        atomic_store_explicit(&rv->low, rsv_avail(pool), memory_order_relaxed);
    return r;
}

ZS_EXPORT uint64_t zs_reserve_release(struct zs_pool *pool, uint64_t bytes)
{
    if (!pool->rsv.on)
        return 0;
    /* The frontier first: it is the larger part, and one call frees it. */
    uint64_t released = frontier_shrink(pool, bytes);
    for (uint32_t k = MAX_ZSPAGE_PAGES; k >= 1 && released < bytes; k--) {
        struct arena *a = &pool->arenas[k];
        size_t run = (size_t)k * PAGE_SIZE;
        LOCK_GUARD(&a->lock);
        while (a->warm.n && released < bytes) {
            char *p = a->warm.v[--a->warm.n];
            release_pages(p, run);
            atomic_fetch_sub_explicit(&pool->rsv.warm, run, memory_order_relaxed);
            released += run;
            if (runs_push(pool, &a->cold, p, false) < 0)
                a->cold_full = true;
        }
    }
    return released;
}

ZS_EXPORT void zs_reserve_get_stats(struct zs_pool *pool, struct zs_reserve_stats *ret)
{
    uint64_t avail = rsv_avail(pool), low = load(&pool->rsv.low);

    *ret = (struct zs_reserve_stats){
        .target = load(&pool->rsv.target),
        .available = avail,
        .low_water = low < avail ? low : avail,
        .misses = load(&pool->rsv.misses),
        .refills = load(&pool->rsv.refills),
    };
}
