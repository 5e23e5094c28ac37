/* SPDX-License-Identifier: MIT */
/*
 * The frontier: where new zspage runs are carved from, for every length
 * alike (doc/zspool.md, "Zspages are contiguous", "The reserve").
 *
 * Runs are taken in order from 1 GiB regions, which stay mapped until
 * zs_destroy().  Lazy mode carves from cur and makes it accessible in
 * REGION_COMMIT_STEP steps, under the frontier lock its caller holds.
 * Reserve mode takes only what the refill populated (frontier_take(),
 * which makes no system call but madvise()); the refill populates with the
 * lock dropped, past what allocations may take, and then publishes it.
 * rsv.frontier is always the populated, unused bytes of the two spans.
 */
#include <errno.h>
#include <sys/mman.h>

#include "cleanup.h"
#include "zspool-internal.h"

/* Regions become readable in steps of 2 MiB. */
#define REGION_COMMIT_STEP (2ull << 20)

/* A new region, recorded for zs_destroy().  The frontier lock held. */
static char *region_new(struct zs_pool *pool)
{
    char *r = vm_reserve(REGION_BYTES);
    if (!r)
        return NULL;
    if (runs_push(pool, &pool->frontier.regions, r, true) < 0) {
        munmap(r, REGION_BYTES);
        return NULL;
    }
    return r;
}

static struct span span_of(char *r)
{
    return (struct span){ .base = r, .next = r, .populated = r, .end = r + REGION_BYTES };
}

/*
 * Lazy mode: bytes of the frontier, made accessible but not touched.  The
 * frontier lock held.
 */
char *frontier_carve(struct zs_pool *pool, size_t bytes)
{
    struct frontier *f = &pool->frontier;
    struct span *s = &f->cur;

    if (!s->base || (size_t)(s->end - s->next) < bytes) {
        /* The tail of the old region, under a run's length, stays unused. */
        char *r = region_new(pool);
        if (!r)
            return NULL;
        *s = span_of(r);
        f->commit_end = r;
    }
    if (s->next + bytes > f->commit_end) {
        size_t grow = REGION_COMMIT_STEP;
        if ((size_t)(s->end - f->commit_end) < grow)
            grow = (size_t)(s->end - f->commit_end);
        if (mprotect(f->commit_end, grow, PROT_READ | PROT_WRITE) != 0)
            return NULL;
        f->commit_end += grow;
    }
    char *p = s->next;
    s->next += bytes;
    return p;
}

/*
 * Reserve mode: bytes of populated frontier, or NULL if the refill has not
 * caught up.  Never makes a system call but madvise() to give back the
 * unused end of a region it leaves.  Takes the frontier lock.
 */
char *frontier_take(struct zs_pool *pool, size_t bytes)
{
    struct frontier *f = &pool->frontier;
    LOCK_GUARD(&f->lock);
    struct span *s = &f->cur;

    if ((size_t)(s->populated - s->next) < bytes) {
        /* Move on to nxt only when cur cannot ever fit the run. */
        struct span *n = &f->nxt;
        if ((size_t)(s->end - s->next) >= bytes || (size_t)(n->populated - n->next) < bytes)
            return NULL;
        size_t left = (size_t)(s->populated - s->next);
        release_pages(s->next, left);
        atomic_fetch_sub_explicit(&pool->rsv.frontier, left, memory_order_relaxed);
        *s = *n;
        *n = (struct span){ 0 };
    }
    char *p = s->next;
    s->next += bytes;
    atomic_fetch_sub_explicit(&pool->rsv.frontier, bytes, memory_order_relaxed);
    return p;
}

/*
 * The refill's step on the frontier: populate up to RESERVE_STEP more of
 * cur, or of nxt once cur is populated to its end (making nxt's region if
 * there is none).  The lock is not held while the memory is populated: the
 * range is beyond what allocations may take until it is published.
 * Returns the bytes added, 0 if both spans are full, or -ENOMEM.
 */
int64_t frontier_grow(struct zs_pool *pool)
{
    struct frontier *f = &pool->frontier;
    struct span *s;
    char *from, *base;
    size_t len;

    mutex_lock(&f->lock);
    if (!f->cur.base || (f->cur.populated == f->cur.end && !f->nxt.base)) {
        /*
         * A new region, made with the lock dropped.  Only the refill adds
         * regions in reserve mode, and it holds the refill lock: the spans
         * cannot gain one meanwhile, only lose cur to nxt.
         */
        mutex_unlock(&f->lock);
        char *r = vm_reserve(REGION_BYTES);
        if (!r || runs_push(pool, &f->regions, r, true) < 0) {
            if (r)
                munmap(r, REGION_BYTES);
            return -ENOMEM;
        }
        mutex_lock(&f->lock);
        *(f->cur.base ? &f->nxt : &f->cur) = span_of(r);
    }
    s = f->cur.populated < f->cur.end ? &f->cur : &f->nxt;
    if (s->populated == s->end) {
        mutex_unlock(&f->lock);
        return 0;
    }
    from = s->populated;
    base = s->base;
    len = (size_t)(s->end - s->populated);
    if (len > RESERVE_STEP)
        len = RESERVE_STEP;
    mutex_unlock(&f->lock);

    if (mprotect(from, len, PROT_READ | PROT_WRITE) != 0 || populate(from, len) < 0) {
        release_pages(from, len);
        return -ENOMEM;
    }

    LOCK_GUARD(&f->lock);
    s = f->cur.base == base ? &f->cur : f->nxt.base == base ? &f->nxt : NULL;
    if (!s || s->populated != from) {
        /* The span was left behind meanwhile: its tail is of no use. */
        release_pages(from, len);
        return (int64_t)len;
    }
    s->populated += len;
    atomic_fetch_add_explicit(&pool->rsv.frontier, len, memory_order_relaxed);
    return (int64_t)len;
}

/*
 * The refill's trim, when the target was lowered, and zs_reserve_release():
 * give back up to excess bytes of the populated end of the frontier.
 * Returns what was given back, counted here: allocations and the refill
 * move the frontier's total meanwhile.
 */
uint64_t frontier_shrink(struct zs_pool *pool, uint64_t excess)
{
    struct frontier *f = &pool->frontier;
    LOCK_GUARD(&f->lock);
    struct span *spans[] = { &f->nxt, &f->cur };
    uint64_t released = 0;

    for (unsigned i = 0; i < 2 && excess; i++) {
        struct span *s = spans[i];
        size_t have = (size_t)(s->populated - s->next) & ~(size_t)(PAGE_SIZE - 1);
        size_t cut = have < excess ? have : (size_t)excess;
        if (!s->base || cut == 0)
            continue;
        s->populated -= cut;
        release_pages(s->populated, cut);
        atomic_fetch_sub_explicit(&pool->rsv.frontier, cut, memory_order_relaxed);
        excess -= cut;
        released += cut;
    }
    return released;
}
