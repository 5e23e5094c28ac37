/* SPDX-License-Identifier: MIT */
/*
 * The slot table (doc/store.md, "The slot table", "Locking").
 *
 * A slot's lock word is a futex mutex: 0 free, 1 held, 2 held with
 * waiters; an unlock that finds 2 wakes one sleeper.  Nothing holds two
 * slot locks at once, so there is no order to keep.
 *
 * slot_swap() is the one place a slot's content changes: it keeps the
 * occupancy bitmap, the access time, the reverse map and the statistics in
 * step with the table.  The caller frees the old content (entry_release())
 * after it unlocks.
 *
 * The occupancy bitmap's summary bit may be set over an empty word, never
 * clear over a non-empty one: scans recheck the word, and occ_clear()
 * rechecks after it clears.
 */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backing.h"
#include "store-internal.h"

/* Spins before sleeping on a slot lock: covers one short swap or zs_read. */
#define SLOT_SPINS 64

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void futex_wait(_Atomic uint32_t *w, uint32_t val)
{
    syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w)
{
    syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Take the slot lock only if it is free: eviction passes busy slots by. */
bool slot_trylock(struct slot *sl)
{
    uint32_t c = 0;
    return atomic_compare_exchange_strong_explicit(&sl->lock, &c, 1, memory_order_acquire,
                                                   memory_order_relaxed);
}

void slot_lock(struct slot *sl)
{
    uint32_t c;
    if (slot_trylock(sl))
        return;
    for (unsigned i = 0; i < SLOT_SPINS; i++) {
        cpu_relax();
        c = 0;
        if (atomic_load_explicit(&sl->lock, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&sl->lock, &c, 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
    }
    /* Mark it contended; whoever unlocks then wakes one sleeper. */
    while (atomic_exchange_explicit(&sl->lock, 2, memory_order_acquire) != 0)
        futex_wait(&sl->lock, 2);
}

void slot_unlock(struct slot *sl)
{
    if (atomic_exchange_explicit(&sl->lock, 0, memory_order_release) == 2)
        futex_wake(&sl->lock);
}

static void occ_set(struct store *s, uint64_t i)
{
    uint64_t w = i >> 6;
    uint64_t old = atomic_fetch_or(&s->occ[w], UINT64_C(1) << (i & 63));
    if (old == 0)
        atomic_fetch_or(&s->occ_summary[w >> 6], UINT64_C(1) << (w & 63));
}

static void occ_clear(struct store *s, uint64_t i)
{
    uint64_t w = i >> 6;
    uint64_t bit = UINT64_C(1) << (i & 63);
    if (atomic_fetch_and(&s->occ[w], ~bit) != bit)
        return;
    /*
     * The word went empty.  Clear its summary bit, then look again: a
     * concurrent occ_set() that found the word empty sets the summary bit
     * itself, but may have done so just before we cleared it.  All
     * sequentially consistent, so either we see its bit or it sets the
     * summary after our clear.
     */
    uint64_t sbit = UINT64_C(1) << (w & 63);
    atomic_fetch_and(&s->occ_summary[w >> 6], ~sbit);
    if (atomic_load(&s->occ[w]) != 0)
        atomic_fetch_or(&s->occ_summary[w >> 6], sbit);
}

/* The first slot >= i that holds something, or nslots. */
uint64_t occ_next_set(struct store *s, uint64_t i)
{
    uint64_t w = i >> 6;
    if (i >= s->nslots)
        return s->nslots;
    uint64_t bits = atomic_load_explicit(&s->occ[w], memory_order_relaxed) &
                    (~UINT64_C(0) << (i & 63));
    for (;;) {
        if (bits) {
            uint64_t r = (w << 6) + (uint64_t)__builtin_ctzll(bits);
            return r < s->nslots ? r : s->nslots;
        }
        w++;
        uint64_t sw = w >> 6;
        if (sw >= s->nsum)
            return s->nslots;
        uint64_t sb = atomic_load_explicit(&s->occ_summary[sw], memory_order_relaxed) &
                      (~UINT64_C(0) << (w & 63));
        while (!sb) {
            if (++sw >= s->nsum)
                return s->nslots;
            sb = atomic_load_explicit(&s->occ_summary[sw], memory_order_relaxed);
        }
        w = (sw << 6) + (uint64_t)__builtin_ctzll(sb);
        if (w >= s->nwords)
            return s->nslots;
        bits = atomic_load_explicit(&s->occ[w], memory_order_relaxed);
    }
}

/* The first empty slot >= i, or nslots. */
uint64_t occ_next_clear(struct store *s, uint64_t i)
{
    if (i >= s->nslots)
        return s->nslots;
    uint64_t w = i >> 6;
    uint64_t bits = ~atomic_load_explicit(&s->occ[w], memory_order_relaxed) &
                    (~UINT64_C(0) << (i & 63));
    while (!bits) {
        if (++w >= s->nwords)
            return s->nslots;
        bits = ~atomic_load_explicit(&s->occ[w], memory_order_relaxed);
    }
    /* Bits past the last slot are never set, so they read as a hole: the end. */
    uint64_t r = (w << 6) + (uint64_t)__builtin_ctzll(bits);
    return r < s->nslots ? r : s->nslots;
}

uint32_t bundle_live_update(struct store *s, uint64_t h, uint32_t bits, bool set)
{
    struct bundle_hdr *b = zs_map(s->pool, h, NULL);
    if (!b)
        return 0;
    uint32_t old = set ? atomic_fetch_or(&b->live, bits) : atomic_fetch_and(&b->live, ~bits);
    zs_unmap(s->pool, h);
    return old;
}

void bundle_drop(struct store *s, uint64_t h, unsigned pos)
{
    uint32_t bit = 1u << pos;
    if (bundle_live_update(s, h, bit, false) != bit)
        return;
    /* The last member left: the bundle goes, counted as it came (bundle.c). */
    int size = zs_size(s->pool, h);
    if (size > 0) {
        counter_sub(&s->bundle_bytes, (uint64_t)size);
        counter_sub(&s->compr_data_size, (uint64_t)size);
    }
    counter_sub(&s->bundles, 1);
    zs_free(s->pool, h);
    counter_add(&s->frees, 1);
}

/*
 * Free the object or backing block an entry held, once it is out of the
 * table.  discard: tell the backing store too (a discard, not an overwrite).
 */
void entry_release(struct store *s, const struct entry *e, bool discard)
{
    if (entry_has_object(e)) {
        zs_free(s->pool, e->val);
        counter_add(&s->frees, 1);
    } else if (e->state == SLOT_WB) {
        backing_free(s->backing, WB_BLOCK(e->val), discard);
    } else if (e->state == SLOT_BUNDLE) {
        bundle_drop(s, e->val, e->size);
    }
}

/* Stats for an entry entering (+) or leaving (-) the table. */
static void entry_account(struct store *s, const struct entry *e, bool in)
{
    void (*op)(_Atomic uint64_t *, uint64_t) = in ? counter_add : counter_sub;
    if (e->flags & SF_IDLE)
        op(&s->idle_pages, 1);
    if (e->state == SLOT_EMPTY)
        return;
    if (e->state == SLOT_WB) {
        /* As in zram: orig_data_size counts what is in memory, bd_count the rest. */
        op(&s->bd_count, 1);
        return;
    }
    op(&s->pages_stored, 1);
    switch (e->state) {
    case SLOT_SAME:
        op(&s->same_pages, 1);
        break;
    case SLOT_HUGE:
        op(&s->huge_pages, 1);
        if (in)
            counter_add(&s->huge_pages_since, 1);
        op(&s->compr_data_size, PAGE);
        break;
    case SLOT_OBJ:
        op(&s->compr_data_size, e->size);
        if (e->flags & SF_RECOMP)
            op(&s->recompressed, 1);
        break;
    case SLOT_BUNDLE:
        /* compr_data_size counts the bundle's bytes once, as it is made and freed. */
        op(&s->bundled_pages, 1);
        break;
    }
}

/* Seconds since the store was made, for access times. */
uint32_t now_sec(struct store *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t)(ts.tv_sec - s->t0.tv_sec);
}

/*
 * Slot i was accessed now.  Accesses to a page come in bursts, so the time
 * is stored only when its second has changed: the array's cache line is
 * read on every access but written at most once a second per page.
 */
static void atime_touch(struct store *s, uint64_t i)
{
    uint32_t now = now_sec(s);
    if (atomic_load_explicit(&s->atime[i], memory_order_relaxed) != now)
        atomic_store_explicit(&s->atime[i], now, memory_order_relaxed);
}

/* An access to slot i, locked: it is no longer idle, and the clock spares it. */
void slot_touch(struct store *s, uint64_t i)
{
    struct slot *sl = &s->slots[i];
    if (sl->flags & SF_IDLE)
        counter_sub(&s->idle_pages, 1);
    sl->flags = (uint8_t)((sl->flags & ~SF_IDLE) | SF_ACCESSED);
    atime_touch(s, i);
}

/* Replace slot i's entry with *e and return the old one.  Slot i is locked. */
struct entry slot_swap(struct store *s, uint64_t i, const struct entry *e)
{
    struct slot *sl = &s->slots[i];
    struct entry old = { sl->state, sl->flags, sl->size, sl->val };
    sl->state = e->state;
    sl->flags = e->flags;
    sl->size = e->size;
    sl->val = e->val;
    if (entry_has_object(e) && s->rmap)
        atomic_store_explicit(&s->rmap[zs_handle_index(e->val)], i, memory_order_relaxed);
    if (e->flags & SF_ACCESSED)
        atime_touch(s, i);
    if (old.state == SLOT_EMPTY && e->state != SLOT_EMPTY)
        occ_set(s, i);
    else if (old.state != SLOT_EMPTY && e->state == SLOT_EMPTY)
        occ_clear(s, i);
    entry_account(s, &old, false);
    entry_account(s, e, true);
    return old;
}

int slot_walk(struct store *s, slot_fn *fn, void *arg)
{
    for (uint64_t i = occ_next_set(s, 0); i < s->nslots; i = occ_next_set(s, i + 1)) {
        struct slot *sl = &s->slots[i];
        slot_lock(sl);
        int r = fn(s, i, sl, arg);
        slot_unlock(sl);
        if (r != 0)
            return r;
    }
    return 0;
}
