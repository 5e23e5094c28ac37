/* SPDX-License-Identifier: MIT */
/*
 * zs_malloc() and zs_free() (doc/zspool.md, "Fullness groups", "Eviction").
 *
 * An allocation takes a handle index first, then the class lock, and
 * places the object in the fullest zspage with room, or in a new one,
 * which moves to the front of its class's LRU.  The entry is stored last,
 * so that the handle names nothing until its object exists.  A free waits
 * for the object's pins to drop, frees the slot under the class lock, and
 * frees the zspage with its last object unless the zspage is isolated
 * (eviction frees it then).  The handle goes back with its generation
 * raised, so that the old one is refused.
 */
#include <errno.h>

#include "cleanup.h"
#include "zspool-internal.h"

static uint64_t zs_malloc_(struct zs_pool *pool, size_t size);

ZS_EXPORT uint64_t zs_malloc(struct zs_pool *pool, size_t size)
{
    uint64_t h = zs_malloc_(pool, size);
    if (pool->rsv.on && size > 0 && size <= ZS_MAX_OBJECT_SIZE) {
        int e = errno;
        rsv_after(pool, h == 0);
        errno = e;
    }
    return h;
}

static uint64_t zs_malloc_(struct zs_pool *pool, size_t size)
{
    if (size == 0 || size > ZS_MAX_OBJECT_SIZE) {
        errno = EINVAL;
        return 0;
    }
    struct size_class *c = class_for(pool, size);
    uint32_t idx;
    int r = handle_alloc(pool, &idx);
    if (r < 0) {
        errno = -r;
        return 0;
    }
    _Atomic uint64_t *ep = entry_at(pool, idx);
    uint64_t gen = entry_gen(atomic_load_explicit(ep, memory_order_relaxed));

    mutex_lock(&c->lock);
    struct zspage *z = pick_target(pool, c);
    if (!z) {
        z = zspage_create(pool, c, (uint16_t)(c - pool->classes));
        if (!z) {
            mutex_unlock(&c->lock);
            handle_release(pool, idx, gen);
            errno = ENOMEM;
            return 0;
        }
    }
    uint32_t slot = slot_take(pool, c, z, idx);
    regroup(pool, c, z);
    if (c->lru.first != z->id) {
        ilist_del(pool, &c->lru, z, LINK_LRU);
        ilist_add(pool, &c->lru, z, LINK_LRU);
    }
    z->stamp = now_stamp();
    atomic_fetch_add_explicit(&c->objects, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->bytes, size, memory_order_relaxed);
    atomic_store_explicit(ep, entry_make(z->id, slot, (uint32_t)size, gen), memory_order_release);
    mutex_unlock(&c->lock);
    return handle_make(idx, gen);
}

ZS_EXPORT void zs_free(struct zs_pool *pool, uint64_t handle)
{
    uint32_t idx;
    uint64_t gen, e;

    if (handle == 0)
        return;
    _Atomic uint64_t *ep = handle_entry(pool, handle, &idx, &gen);
    if (!ep || pin_exclusive(ep, gen, &e) < 0) {
        atomic_fetch_add_explicit(&pool->bad_handles, 1, memory_order_relaxed);
        return;
    }
    struct zspage *z = entry_zspage(pool, e);
    struct size_class *c = &pool->classes[z->cls];

    mutex_lock(&c->lock);
    slot_put(z, entry_slot(e));
    atomic_fetch_sub_explicit(&c->objects, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&c->bytes, entry_size(e), memory_order_relaxed);
    if (!z->isolated) {
        if (z->inuse == 0)
            zspage_destroy(pool, c, z);
        else
            regroup(pool, c, z);
    }
    mutex_unlock(&c->lock);
    handle_release(pool, idx, gen + 1);
}
