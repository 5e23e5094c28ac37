/* SPDX-License-Identifier: MIT */
/*
 * Handles and pins, and the accesses that need nothing else: zs_size(),
 * zs_write(), zs_read(), zs_map(), zs_unmap() (doc/zspool.md, "Handles",
 * "Pinning").
 *
 * A handle's entry is the one word that says where its object is.  Only
 * the holder of the exclusive pin (a mover, or zs_free()) rewrites it, and
 * storing the new entry, with release ordering, drops that pin.  Readers
 * and writers take a shared pin and no lock; they live here, beside the
 * pins, so that the hot path is one translation unit.  A handle that is
 * not live is answered with -ESTALE or counted in bad_handles, never
 * trusted.  Free handle indices form a lock-free stack whose head carries
 * a tag against ABA.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "zspool-internal.h"

/*
 * The entry a handle names, or NULL if the handle cannot be one of this
 * pool's.  Whether it is live is for the caller to check, with the pin.
 */
_Atomic uint64_t *handle_entry(struct zs_pool *pool, uint64_t handle,
                               uint32_t *ret_idx, uint64_t *ret_gen)
{
    uint64_t idx1 = handle & 0xffffffffu, gen = handle >> 32;

    if (idx1 == 0 || gen > E_GEN_MASK)
        return NULL;
    uint32_t idx = (uint32_t)(idx1 - 1);
    size_t committed = atomic_load_explicit(&pool->handles.committed, memory_order_acquire);
    if ((uint64_t)idx >= committed / sizeof(uint64_t))
        return NULL;
    *ret_idx = idx;
    *ret_gen = gen;
    return entry_at(pool, idx);
}

/* Take a free handle index: the stack's top, or a never-used one. */
int handle_alloc(struct zs_pool *pool, uint32_t *ret_idx)
{
    uint64_t head = atomic_load_explicit(&pool->handle_free, memory_order_acquire);

    while ((uint32_t)head) {
        uint32_t idx = (uint32_t)head - 1;
        /* May read a stale link if idx was popped meanwhile: the tag catches it. */
        uint64_t next = atomic_load_explicit(entry_at(pool, idx), memory_order_relaxed) >> E_NEXT_SHIFT;
        uint64_t nhead = ((head >> 32) + 1) << 32 | next;
        if (atomic_compare_exchange_weak_explicit(&pool->handle_free, &head, nhead,
                                                  memory_order_acquire, memory_order_acquire)) {
            *ret_idx = idx;
            return 0;
        }
    }

    if (pool->rsv.on) {
        /* Only entries the refill populated; the top moves by CAS against that limit. */
        uint64_t idx = atomic_load_explicit(&pool->handle_top, memory_order_relaxed);
        do {
            size_t have = atomic_load_explicit(&pool->handles.committed, memory_order_acquire);
            if (idx >= have / sizeof(uint64_t) || idx >= MAX_HANDLES)
                return -ENOMEM;
        } while (!atomic_compare_exchange_weak_explicit(&pool->handle_top, &idx, idx + 1,
                                                        memory_order_relaxed,
                                                        memory_order_relaxed));
        *ret_idx = (uint32_t)idx;
        return 0;
    }
    uint64_t idx = atomic_fetch_add_explicit(&pool->handle_top, 1, memory_order_relaxed);
    if (idx >= MAX_HANDLES) {
        atomic_fetch_sub_explicit(&pool->handle_top, 1, memory_order_relaxed);
        return -ENOMEM;
    }
    int r = vtable_grow(pool, &pool->handles, (idx + 1) * sizeof(uint64_t));
    if (r < 0)
        return r; /* the index is lost; the table cannot grow anyway */
    *ret_idx = (uint32_t)idx;
    return 0;
}

/*
 * Put idx back on the free stack with generation gen.  Storing the free
 * entry also drops any pin the caller held.
 */
void handle_release(struct zs_pool *pool, uint32_t idx, uint64_t gen)
{
    _Atomic uint64_t *ep = entry_at(pool, idx);
    uint64_t head = atomic_load_explicit(&pool->handle_free, memory_order_relaxed);

    for (;;) {
        atomic_store_explicit(ep, (uint64_t)(uint32_t)head << E_NEXT_SHIFT |
                                      (gen & E_GEN_MASK) << E_GEN_SHIFT,
                              memory_order_release);
        uint64_t nhead = ((head >> 32) + 1) << 32 | ((uint64_t)idx + 1);
        if (atomic_compare_exchange_weak_explicit(&pool->handle_free, &head, nhead,
                                                  memory_order_release, memory_order_relaxed))
            return;
    }
}

static void spin_pause(unsigned *spins)
{
    if (++*spins < 128) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        sched_yield();
    }
}

/* Raise the pin count of a live entry; waits while a mover holds it. */
static int pin_shared(_Atomic uint64_t *ep, uint64_t gen, uint64_t *ret_e)
{
    uint64_t e = atomic_load_explicit(ep, memory_order_acquire);
    unsigned spins = 0;

    for (;;) {
        if (!entry_live(e, gen))
            return -ESTALE;
        if ((e & E_PIN_MASK) < E_PIN_SHARED_MAX) {
            if (atomic_compare_exchange_weak_explicit(ep, &e, e + 1, memory_order_acquire,
                                                      memory_order_acquire)) {
                *ret_e = e + 1;
                return 0;
            }
            continue;
        }
        spin_pause(&spins);
        e = atomic_load_explicit(ep, memory_order_acquire);
    }
}

static void unpin_shared(_Atomic uint64_t *ep)
{
    atomic_fetch_sub_explicit(ep, 1, memory_order_release);
}

/* Take a live entry exclusively, waiting for its readers to finish. */
int pin_exclusive(_Atomic uint64_t *ep, uint64_t gen, uint64_t *ret_e)
{
    uint64_t e = atomic_load_explicit(ep, memory_order_acquire);
    unsigned spins = 0;

    for (;;) {
        if (!entry_live(e, gen))
            return -ESTALE;
        if ((e & E_PIN_MASK) == 0) {
            if (atomic_compare_exchange_weak_explicit(ep, &e, e | E_PIN_EXCL,
                                                      memory_order_acquire,
                                                      memory_order_acquire)) {
                *ret_e = e;
                return 0;
            }
            continue;
        }
        spin_pause(&spins);
        e = atomic_load_explicit(ep, memory_order_acquire);
    }
}

/* One attempt at an exclusive pin, for movers that must not wait. */
bool pin_try_exclusive(_Atomic uint64_t *ep, uint64_t *ret_e)
{
    uint64_t e = atomic_load_explicit(ep, memory_order_relaxed);

    if (!(e & E_ALLOC) || (e & E_PIN_MASK))
        return false;
    if (!atomic_compare_exchange_strong_explicit(ep, &e, e | E_PIN_EXCL, memory_order_acquire,
                                                 memory_order_relaxed))
        return false;
    *ret_e = e;
    return true;
}

/* ---- access: pinned, never locked ---------------------------------------- */

ZS_EXPORT int zs_size(struct zs_pool *pool, uint64_t handle)
{
    uint32_t idx;
    uint64_t gen;
    _Atomic uint64_t *ep = handle_entry(pool, handle, &idx, &gen);
    if (!ep)
        return -ESTALE;
    uint64_t e = atomic_load_explicit(ep, memory_order_acquire);
    return entry_live(e, gen) ? (int)entry_size(e) : -ESTALE;
}

ZS_EXPORT int zs_write(struct zs_pool *pool, uint64_t handle, const void *src, size_t len)
{
    uint32_t idx;
    uint64_t gen, e;
    _Atomic uint64_t *ep = handle_entry(pool, handle, &idx, &gen);
    if (!ep || pin_shared(ep, gen, &e) < 0)
        return -ESTALE;
    int r = 0;
    if (len > entry_size(e))
        r = -EINVAL;
    else
        memcpy(entry_addr(pool, e), src, len);
    unpin_shared(ep);
    return r;
}

ZS_EXPORT int zs_read(struct zs_pool *pool, uint64_t handle, void *dst)
{
    uint32_t idx;
    uint64_t gen, e;
    _Atomic uint64_t *ep = handle_entry(pool, handle, &idx, &gen);
    if (!ep || pin_shared(ep, gen, &e) < 0)
        return -ESTALE;
    uint32_t size = entry_size(e);
    memcpy(dst, entry_addr(pool, e), size);
    unpin_shared(ep);
    return (int)size;
}

ZS_EXPORT void *zs_map(struct zs_pool *pool, uint64_t handle, size_t *ret_size)
{
    uint32_t idx;
    uint64_t gen, e;
    _Atomic uint64_t *ep = handle_entry(pool, handle, &idx, &gen);
    if (!ep || pin_shared(ep, gen, &e) < 0) {
        errno = ESTALE;
        return NULL;
    }
    if (ret_size)
        *ret_size = entry_size(e);
    return entry_addr(pool, e);
}

ZS_EXPORT void zs_unmap(struct zs_pool *pool, uint64_t handle)
{
    uint32_t idx;
    uint64_t gen;
    _Atomic uint64_t *ep = handle_entry(pool, handle, &idx, &gen);
    if (!ep)
        return;
    uint64_t e = atomic_load_explicit(ep, memory_order_relaxed);
    uint64_t pin = e & E_PIN_MASK;
    /* Unmapping what is not mapped would corrupt the entry: refuse. */
    if (!entry_live(e, gen) || pin == 0 || pin == E_PIN_EXCL) {
        atomic_fetch_add_explicit(&pool->bad_handles, 1, memory_order_relaxed);
        return;
    }
    unpin_shared(ep);
}

ZS_EXPORT uint32_t zs_handle_index(uint64_t handle)
{
    /* handle_make() keeps index + 1 in the low half, so 0 is never a handle. */
    return (uint32_t)handle - 1;
}
