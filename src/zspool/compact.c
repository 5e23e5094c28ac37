/* SPDX-License-Identifier: MIT */
/*
 * Compaction: zs_compact() (doc/zspool.md, "Fullness groups").
 *
 * A class is compacted under its own lock, dropped between zspages so
 * that allocations and frees of the class go on.  Objects move from the
 * emptiest zspage into the fullest ones while the class's free slots
 * could hold a whole zspage; what is left partly used is packed towards
 * its start and, in lazy mode, trimmed.  A mover only tries the exclusive
 * pin and passes a pinned object by, so compaction never waits on a user;
 * a zspage it gave up on is skipped for the rest of the pass.  Pages freed
 * are counted net of the pages that moved objects touched.
 */
#include <errno.h>
#include <string.h>

#include "cleanup.h"
#include "zspool-internal.h"

/*
 * Move objects from src into dst until src is empty or dst full.  Class lock
 * held.  Returns -EBUSY on meeting a pinned object (left in place).
 */
static int migrate(struct zs_pool *pool, struct size_class *c, struct zspage *src,
                   struct zspage *dst)
{
    for (uint32_t slot = 0; slot < src->bump && src->inuse && dst->inuse < c->objs; slot++) {
        uint32_t owner = src->slots[slot];
        if (owner & SLOT_FREE)
            continue;
        _Atomic uint64_t *ep = entry_at(pool, owner);
        uint64_t e;
        if (!pin_try_exclusive(ep, &e))
            return -EBUSY;
        uint32_t nslot = slot_take(pool, c, dst, owner);
        memcpy(dst->base + (size_t)nslot * c->size, src->base + (size_t)slot * c->size,
               entry_size(e));
        slot_put(src, slot);
        /* Publishing the new location drops the pin. */
        atomic_store_explicit(ep, entry_make(dst->id, nslot, entry_size(e), entry_gen(e)),
                              memory_order_release);
    }
    return 0;
}

/* Can the class's free slots hold a whole zspage's worth of objects? */
static bool class_can_free(const struct size_class *c)
{
    uint64_t objects = atomic_load_explicit(&c->objects, memory_order_relaxed);
    return (uint64_t)c->zspages * c->objs - objects >= c->objs;
}

/*
 * Move z's objects down into its lowest free slots, so that its free slots
 * gather at the end, then give back the pages no object touches.  Compaction
 * calls it on the few zspages left partly used in a class.  Class lock held.
 */
static void zspage_pack(struct zs_pool *pool, struct size_class *c, struct zspage *z)
{
    uint32_t lo = 0, hi = z->bump;

    for (;;) {
        while (lo < hi && !(z->slots[lo] & SLOT_FREE))
            lo++;
        while (hi > lo && (z->slots[hi - 1] & SLOT_FREE))
            hi--;
        if (lo >= hi)
            break;
        uint32_t owner = z->slots[hi - 1];
        _Atomic uint64_t *ep = entry_at(pool, owner);
        uint64_t e;
        if (!pin_try_exclusive(ep, &e))
            break;
        slot_touch(pool, c, z, lo);
        memcpy(z->base + (size_t)lo * c->size, z->base + (size_t)(hi - 1) * c->size,
               entry_size(e));
        z->slots[lo] = owner;
        z->slots[hi - 1] = SLOT_FREE;
        atomic_store_explicit(ep, entry_make(z->id, lo, entry_size(e), entry_gen(e)),
                              memory_order_release);
    }
    /* Forget the free slots at the end and relink the rest, lowest first. */
    while (z->bump && (z->slots[z->bump - 1] & SLOT_FREE))
        z->bump--;
    z->free_head = SLOT_NONE;
    for (uint32_t slot = z->bump; slot-- > 0;) {
        if (z->slots[slot] & SLOT_FREE) {
            z->slots[slot] = SLOT_FREE | z->free_head;
            z->free_head = (uint16_t)slot;
        }
    }
    /*
     * Reserve mode keeps every page of a zspage resident: a page given back
     * here would have to be faulted in again by the allocation that reuses
     * its slots, which is what the reserve is there to prevent.
     */
    if (!pool->rsv.on)
        (void)zspage_trim(pool, c, z);
}

/*
 * Empty the emptiest zspage of c into the fullest ones.  Class lock held.
 * Returns false when there is nothing more to do.
 */
static bool compact_step(struct zs_pool *pool, struct size_class *c)
{
    if (!class_can_free(c))
        return false;
    struct zspage *src = pick_source(pool, c);
    if (!src)
        return false;
    /* Off the lists, so that it is not picked as a target of itself. */
    group_del(pool, c, src);
    while (src->inuse) {
        struct zspage *dst = pick_target(pool, c);
        if (!dst)
            break;
        int r = migrate(pool, c, src, dst);
        regroup(pool, c, dst);
        if (r < 0)
            break;
    }
    if (src->inuse == 0) {
        zspage_destroy(pool, c, src);
    } else {
        src->skip_pass = c->pass;
        regroup(pool, c, src);
    }
    return true;
}

/*
 * Compact one class.  The pages freed are counted as the fall in the class's
 * resident pages across each stretch under the lock: migration also touches
 * pages of the targets, and the count is what goes back to the OS, net.
 */
static int64_t class_compact(struct zs_pool *pool, struct size_class *c)
{
    int64_t freed = 0, before;
    LOCK_GUARD(&c->lock);

    c->pass++;
    for (;;) {
        before = (int64_t)load(&c->pages_held);
        bool more = compact_step(pool, c);
        freed += before - (int64_t)load(&c->pages_held);
        if (!more)
            break;
        /* Let allocations and frees of this class in between zspages. */
        mutex_unlock(&c->lock);
        mutex_lock(&c->lock);
    }
    /*
     * What is left partly used (at most a zspage's worth of free slots, or
     * zspages with pinned objects) is packed towards its start.
     */
    before = (int64_t)load(&c->pages_held);
    for (unsigned g = 1; g < GROUP_FULL; g++) {
        struct zspage *z = zspage_by_id(pool, c->groups[g].first);
        for (; z; z = zspage_by_id(pool, z->link[LINK_GROUP].next))
            zspage_pack(pool, c, z);
    }
    freed += before - (int64_t)load(&c->pages_held);
    if (freed < 0)
        freed = 0; /* moved objects touched more pages than emptied ones freed */
    c->compacted += (uint64_t)freed;
    return freed;
}

ZS_EXPORT int64_t zs_compact(struct zs_pool *pool)
{
    int64_t freed = 0;

    for (uint32_t i = 0; i < num_classes; i++)
        freed += class_compact(pool, &pool->classes[i]);
    atomic_fetch_add_explicit(&pool->pages_compacted, (uint64_t)freed, memory_order_relaxed);
    return freed;
}
