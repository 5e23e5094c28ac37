/* SPDX-License-Identifier: MIT */
/*
 * Eviction: zs_shrink() (doc/zspool.md, "Eviction").
 *
 * One shrink at a time (shrink_lock).  The least recently allocated-into
 * zspage of the pool is isolated, off every list, so that no allocation or
 * compaction touches it, and each live object in it is handed to
 * ops.evict with no pool lock held; the callback stores the object
 * elsewhere and frees its handle.  The zspage then goes back to its lists
 * with whatever it still holds, or is freed if it emptied.
 */
#include <errno.h>

#include "cleanup.h"
#include "zspool-internal.h"

/*
 * Take the least recently allocated-into zspage of the whole pool off every
 * list.  Classes are compared by the stamps of their oldest zspages, each
 * read under its own lock; the choice is exact within a class and as good
 * as the coarse clock across classes.
 */
static struct zspage *isolate_oldest(struct zs_pool *pool, struct size_class **ret_c)
{
    for (;;) {
        struct size_class *best = NULL;
        uint32_t now = now_stamp(), best_age = 0;

        for (uint32_t i = 0; i < num_classes; i++) {
            struct size_class *c = &pool->classes[i];
            LOCK_GUARD(&c->lock);
            if (ihead_empty(&c->lru))
                continue;
            uint32_t age = now - zspage_by_id(pool, c->lru.last)->stamp;
            if (!best || age > best_age) {
                best_age = age;
                best = c;
            }
        }
        if (!best)
            return NULL;

        LOCK_GUARD(&best->lock);
        if (ihead_empty(&best->lru))
            continue; /* emptied meanwhile: look again */
        struct zspage *z = zspage_by_id(pool, best->lru.last);
        group_del(pool, best, z);
        ilist_del(pool, &best->lru, z, LINK_LRU);
        z->isolated = true;
        *ret_c = best;
        return z;
    }
}

/* Return an isolated zspage to its lists, or free it if it emptied. */
static uint32_t putback(struct zs_pool *pool, struct size_class *c, struct zspage *z)
{
    LOCK_GUARD(&c->lock);
    if (z->inuse == 0) {
        uint32_t freed = zspage_pages(z);
        zspage_destroy(pool, c, z); /* still isolated: on no list */
        return freed;
    }
    z->isolated = false;
    ilist_add_tail(pool, &c->lru, z, LINK_LRU);
    regroup(pool, c, z);
    return 0;
}

/* The handle of slot's owner, or 0 if the slot is free.  Takes the class lock. */
static uint64_t slot_handle(struct zs_pool *pool, struct size_class *c, struct zspage *z,
                            uint32_t slot)
{
    LOCK_GUARD(&c->lock);
    uint32_t owner = z->slots[slot];
    if (owner & SLOT_FREE)
        return 0;
    uint64_t e = atomic_load_explicit(entry_at(pool, owner), memory_order_relaxed);
    return handle_make(owner, entry_gen(e));
}

/*
 * Hand every object of isolated zspage z to the evict callback, no lock held
 * during the calls.  Returns the pages freed, 0 if z could not be emptied, or
 * the callback's error.
 */
static int64_t evict_zspage(struct zs_pool *pool, struct size_class *c, struct zspage *z)
{
    /* bump cannot grow while z is isolated: nothing allocates into it. */
    for (uint32_t slot = 0; slot < z->bump; slot++) {
        uint64_t h = slot_handle(pool, c, z, slot);
        if (!h)
            continue;
        int r = pool->ops.evict(pool, h, pool->arg);
        if (r < 0) {
            (void)putback(pool, c, z);
            return r;
        }
        if (slot_handle(pool, c, z, slot) != h)
            atomic_fetch_add_explicit(&pool->objects_evicted, 1, memory_order_relaxed);
    }
    return putback(pool, c, z);
}

ZS_EXPORT int64_t zs_shrink(struct zs_pool *pool, uint64_t pages)
{
    if (!pool->ops.evict)
        return -ENOTSUP;

    LOCK_GUARD(&pool->shrink_lock);
    uint64_t freed = 0;
    int64_t r = 0;
    while (freed < pages) {
        struct size_class *c;
        struct zspage *z = isolate_oldest(pool, &c);
        if (!z)
            break;
        r = evict_zspage(pool, c, z);
        if (r <= 0) {
            if (r == 0)
                r = -EBUSY;
            break;
        }
        freed += (uint64_t)r;
    }
    atomic_fetch_add_explicit(&pool->pages_evicted, freed, memory_order_relaxed);
    return freed == 0 && r < 0 ? r : (int64_t)freed;
}
