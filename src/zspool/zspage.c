/* SPDX-License-Identifier: MIT */
/*
 * Zspages: descriptors, ids, fullness groups, the LRU, slots and the pages
 * under them (doc/zspool.md, "Size classes", "Descriptors", "Fullness
 * groups").
 *
 * Everything here runs under the lock of the zspage's class, and takes the
 * arena and frontier locks (to make or free a run) or the id lock inside
 * it, never the reverse.  Descriptors and ids are never given back to the
 * OS: a freed descriptor waits on its class's list, a freed id on the id
 * free list.  Lazy mode counts a page as the pool's when an object is
 * first placed on it (slot_touch()); reserve mode counts the whole zspage
 * when it is made.  pool->pages and each class's pages_held are exactly
 * the pages that the pool has resident.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "zspool-internal.h"

/* ---- descriptors --------------------------------------------------------- */

/*
 * A zspage descriptor for class c: a freed one of the class, or the next
 * bytes of the descriptor table.  The class lock held.  Lazy mode grows the
 * table as needed; reserve mode takes only what the refill populated, and
 * returns NULL when that is used up.
 */
static struct zspage *desc_get(struct zs_pool *pool, struct size_class *c)
{
    struct zspage *z = c->desc_free;

    if (z) {
        c->desc_free = (struct zspage *)(void *)z->base;
        return z;
    }
    uint64_t off = load(&pool->desc_top);
    for (;;) {
        uint64_t end = off + desc_bytes(c);
        if (end > pool->descs.reserved)
            return NULL;
        if (end > atomic_load_explicit(&pool->descs.committed, memory_order_acquire) &&
            (pool->rsv.on || vtable_grow(pool, &pool->descs, end) < 0))
            return NULL;
        if (atomic_compare_exchange_weak_explicit(&pool->desc_top, &off, end,
                                                  memory_order_relaxed, memory_order_relaxed))
            return (struct zspage *)(void *)(pool->descs.base + off);
    }
}

/* Keep a descriptor for the class's next zspage.  The class lock held. */
static void desc_put(struct size_class *c, struct zspage *z)
{
    z->base = (char *)(void *)c->desc_free;
    c->desc_free = z;
}

/* ---- zspage ids ---------------------------------------------------------- */

/* Free ids are linked through the table as odd values: (next + 1) << 1 | 1. */
static int id_alloc(struct zs_pool *pool, struct zspage *z)
{
    LOCK_GUARD(&pool->id_lock);
    uint32_t id;

    if (pool->id_free) {
        id = pool->id_free - 1;
        pool->id_free = (uint32_t)((uintptr_t)*id_slot(pool, id) >> 1);
    } else {
        if (pool->id_top >= MAX_ZSPAGE_IDS)
            return -ENOMEM;
        size_t need = (pool->id_top + 1) * sizeof(struct zspage *);
        /* Reserve mode: only what the refill populated. */
        int r = pool->rsv.on ? (atomic_load_explicit(&pool->ids.committed, memory_order_acquire) >=
                                        need ? 0 : -ENOMEM)
                             : vtable_grow(pool, &pool->ids, need);
        if (r < 0)
            return r;
        id = pool->id_top++;
    }
    *id_slot(pool, id) = z;
    z->id = id;
    return 0;
}

static void id_release(struct zs_pool *pool, uint32_t id)
{
    LOCK_GUARD(&pool->id_lock);
    *id_slot(pool, id) = (struct zspage *)(((uintptr_t)pool->id_free << 1) | 1);
    pool->id_free = id + 1;
}

/* ---- zspages ------------------------------------------------------------- */

/* Pages first..last of a zspage as a bitmap; last < MAX_ZSPAGE_PAGES (32). */
static uint32_t page_span(uint32_t first, uint32_t last)
{
    return (uint32_t)(((2ull << last) - 1) & ~((1ull << first) - 1));
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* LRU stamps count ~16.8 ms ticks: 32 bits last over two years. */
uint32_t now_stamp(void)
{
    return (uint32_t)(now_ns() >> 24);
}

static unsigned fullness(const struct size_class *c, const struct zspage *z)
{
    if (z->inuse == 0)
        return 0;
    if (z->inuse == c->objs)
        return GROUP_FULL;
    return 1 + z->inuse * 9u / c->objs;
}

void group_del(struct zs_pool *pool, struct size_class *c, struct zspage *z)
{
    if (z->group) {
        ilist_del(pool, &c->groups[z->group], z, LINK_GROUP);
        z->group = 0;
    }
}

/* Put z in the fullness list its use calls for (none if empty or isolated). */
void regroup(struct zs_pool *pool, struct size_class *c, struct zspage *z)
{
    unsigned g = z->isolated ? 0 : fullness(c, z);

    if (g == z->group)
        return;
    group_del(pool, c, z);
    if (g) {
        ilist_add(pool, &c->groups[g], z, LINK_GROUP);
        z->group = (uint8_t)g;
    }
}

static void pages_add(struct zs_pool *pool, struct size_class *c, int64_t n)
{
    atomic_fetch_add_explicit(&c->pages_held, (uint64_t)n, memory_order_relaxed);
    atomic_fetch_add_explicit(&pool->pages, (uint64_t)n, memory_order_relaxed);
}

/*
 * A new, empty zspage for class c (class lock held), or NULL: out of
 * memory, or in reserve mode out of reserve.  In reserve mode every page
 * of it is resident already and counts as the pool's at once, as in the
 * kernel's zsmalloc; lazy mode counts pages as objects first touch them.
 */
struct zspage *zspage_create(struct zs_pool *pool, struct size_class *c, uint16_t cls)
{
    struct zspage *z = desc_get(pool, c);
    if (!z)
        return NULL;
    char *base = arena_get(pool, c->pages);
    if (!base)
        goto fail_z;
    memset(z, 0, sizeof(*z));
    z->base = base;
    z->cls = cls;
    z->free_head = SLOT_NONE;
    if (id_alloc(pool, z) < 0)
        goto fail_base;
    ilist_add(pool, &c->lru, z, LINK_LRU);
    c->zspages++;
    atomic_fetch_add_explicit(&pool->zspages, 1, memory_order_relaxed);
    if (pool->rsv.on) {
        z->resident = page_span(0, c->pages - 1);
        pages_add(pool, c, c->pages);
    }
    return z;

fail_base:
    arena_put(pool, c->pages, base, false);
fail_z:
    desc_put(c, z);
    return NULL;
}

/* Resident pages of z. */
uint32_t zspage_pages(const struct zspage *z)
{
    return (uint32_t)__builtin_popcount(z->resident);
}

void zspage_destroy(struct zs_pool *pool, struct size_class *c, struct zspage *z)
{
    group_del(pool, c, z);
    if (!z->isolated)
        ilist_del(pool, &c->lru, z, LINK_LRU);
    pages_add(pool, c, -(int64_t)zspage_pages(z));
    c->zspages--;
    atomic_fetch_sub_explicit(&pool->zspages, 1, memory_order_relaxed);
    id_release(pool, z->id);
    arena_put(pool, c->pages, z->base, z->resident != 0);
    desc_put(c, z);
}

/* ---- slots and the pages under them -------------------------------------- */


/* The pages slot covers, as a bitmap; a large object covers up to 17. */
static uint32_t slot_pages(const struct size_class *c, uint32_t slot)
{
    uint32_t first = slot * c->size >> PAGE_SHIFT;
    uint32_t last = ((slot + 1) * c->size - 1) >> PAGE_SHIFT;
    return page_span(first, last);
}

/* Count the pages under slot as resident: it is about to be written. */
void slot_touch(struct zs_pool *pool, struct size_class *c, struct zspage *z,
                uint32_t slot)
{
    uint32_t fresh = slot_pages(c, slot) & ~z->resident;

    if (fresh) {
        z->resident |= fresh;
        pages_add(pool, c, __builtin_popcount(fresh));
    }
}

/*
 * Give back the pages of z that no live object touches.  Compaction calls it
 * on zspages it could only partly empty, whose holes would otherwise stay
 * resident until refilled.  Returns the number of pages released.
 */
uint32_t zspage_trim(struct zs_pool *pool, struct size_class *c, struct zspage *z)
{
    uint32_t used = 0;

    for (uint32_t slot = 0; slot < z->bump; slot++)
        if (!(z->slots[slot] & SLOT_FREE))
            used |= slot_pages(c, slot);
    uint32_t idle = z->resident & ~used;
    /* p and run count to MAX_ZSPAGE_PAGES (32): shift a 64-bit copy. */
    for (uint32_t p = 0; (uint64_t)idle >> p; p++) {
        if (!((uint64_t)idle >> p & 1))
            continue;
        uint32_t run = 0;
        while ((uint64_t)idle >> (p + run) & 1)
            run++;
        release_pages(z->base + (size_t)p * PAGE_SIZE, (size_t)run * PAGE_SIZE);
        p += run;
    }
    z->resident &= used;
    pages_add(pool, c, -(int64_t)__builtin_popcount(idle));
    return (uint32_t)__builtin_popcount(idle);
}

/* Hand out a slot of z to handle index owner; z must have room. */
uint32_t slot_take(struct zs_pool *pool, struct size_class *c, struct zspage *z,
                   uint32_t owner)
{
    uint32_t slot;

    if (z->free_head != SLOT_NONE) {
        slot = z->free_head;
        z->free_head = (uint16_t)(z->slots[slot] & 0xffffu);
    } else {
        slot = z->bump++;
    }
    z->slots[slot] = owner;
    z->inuse++;
    slot_touch(pool, c, z, slot);
    return slot;
}

void slot_put(struct zspage *z, uint32_t slot)
{
    z->slots[slot] = SLOT_FREE | z->free_head;
    z->free_head = (uint16_t)slot;
    z->inuse--;
}

/* ---- picking zspages ----------------------------------------------------- */

/* The fullest listed zspage with a free slot, or NULL. */
struct zspage *pick_target(struct zs_pool *pool, struct size_class *c)
{
    for (unsigned g = GROUP_FULL - 1; g > 0; g--)
        if (!ihead_empty(&c->groups[g]))
            return zspage_by_id(pool, c->groups[g].first);
    return NULL;
}

/* The emptiest listed zspage that this compaction pass has not given up on. */
struct zspage *pick_source(struct zs_pool *pool, struct size_class *c)
{
    for (unsigned g = 1; g < GROUP_FULL; g++) {
        struct zspage *z = zspage_by_id(pool, c->groups[g].last);
        for (; z; z = zspage_by_id(pool, z->link[LINK_GROUP].prev))
            if (z->skip_pass != c->pass)
                return z;
    }
    return NULL;
}
