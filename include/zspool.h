/* SPDX-License-Identifier: MIT */
/*
 * libzspool: a compressed-object allocator after the kernel's zsmalloc.
 *
 * A pool stores many small objects (1 to 4096 bytes, typically compressed
 * pages; up to 64 KiB for compressed bundles of pages) densely in "zspages":
 * runs of 1 to 32 pages of 4 KiB, one size class per zspage, objects packed
 * back to back and allowed to straddle page boundaries.  Callers hold opaque 64-bit handles; the pool may move an object
 * (compaction) at any time the object is not being accessed, and the handle
 * keeps pointing at it.
 *
 * Conventions: functions return 0 (or a count) on success and a negative
 * errno on failure; constructors return NULL and set errno.  Nothing here
 * logs or aborts on bad input.  Every function is thread-safe unless its
 * comment says otherwise; the pool itself must outlive all calls on it.
 */
#ifndef ZSPOOL_H
#define ZSPOOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Largest per-page object: one uncompressed page.  Classes up to this size
 * step by 16 bytes; zs_huge_class_size() is at most this.
 */
#define ZS_MAX_ALLOC_SIZE 4096u
/*
 * Largest object a pool stores: a compressed bundle of pages.  Classes above
 * ZS_MAX_ALLOC_SIZE step by 1/64 of their size's power of two (64 bytes from
 * 4 KiB, 512 bytes from 32 KiB).
 */
#define ZS_MAX_OBJECT_SIZE (64u << 10)
/* Longest zspage of a class up to ZS_MAX_ALLOC_SIZE, in 4 KiB pages. */
#define ZS_MAX_PAGES_PER_ZSPAGE 16u
/*
 * Longest zspage of a class above ZS_MAX_ALLOC_SIZE, in 4 KiB pages: a
 * reserve (zs_reserve_set()) smaller than this many pages cannot serve them.
 */
#define ZS_MAX_PAGES_PER_LARGE_ZSPAGE 32u
/*
 * Fullness groups of a class.  Group 0 holds empty zspages (never listed: an
 * empty zspage is freed at once), groups 1..9 hold partly used zspages by
 * tenths of their capacity (1: at most 1/9 used, 9: nearly full), group 10
 * holds full zspages.
 */
#define ZS_FULLNESS_GROUPS 11u

struct zs_pool;

/*
 * Callbacks a pool calls back into its user.  Any member may be NULL.
 *
 * evict: called by zs_shrink(), with no pool lock held, once for each live
 *   object in a zspage being reclaimed.  The callback should copy the object
 *   elsewhere (zs_read() and zs_map() work as usual) and zs_free() the handle.
 *   It may also find that the handle was freed meanwhile by another thread
 *   (zs_read() then fails with -ESTALE) and return 0.  A negative errno stops
 *   the shrink: the zspage is put back with every object it still holds
 *   intact, and zs_shrink() returns.  The callback must not call zs_shrink()
 *   or zs_compact() on the same pool.
 */
struct zs_ops {
    int (*evict)(struct zs_pool *pool, uint64_t handle, void *arg);
    /*
     * reserve_low: called by an allocation (no pool lock held) when the
     *   reserve, or the room in one of the pool's tables, has fallen under
     *   half its target, or an allocation failed for want of it; once, until
     *   zs_reserve_refill() next runs.  It must not block: wake the thread
     *   that refills.
     * handles_grow: called by zs_reserve_refill() before handle indices
     *   below handles may be handed out, so that the user can populate its
     *   own tables indexed by zs_handle_index() first.  May block.  A
     *   negative errno stops the refill.
     */
    void (*reserve_low)(struct zs_pool *pool, void *arg);
    int (*handles_grow)(struct zs_pool *pool, uint64_t handles, void *arg);
};

/*
 * Create an empty pool.  ops may be NULL (no eviction); it is copied.  arg is
 * passed to the callbacks as is.  Returns NULL with errno ENOMEM if the
 * pool's bookkeeping cannot be mapped.
 */
struct zs_pool *zs_create(const struct zs_ops *ops, void *arg);

/*
 * Free the pool and every object in it, returning all memory to the OS.
 * Accepts NULL.  No other call on the pool may be running or follow.
 */
void zs_destroy(struct zs_pool *pool);

/*
 * Allocate an object of size bytes (1..ZS_MAX_OBJECT_SIZE).  Its contents are
 * unspecified until written.  Objects are 16-byte aligned, those above
 * ZS_MAX_ALLOC_SIZE 64-byte aligned; none is page aligned.  Returns the handle, or 0 with errno set:
 * EINVAL for a size out of range, ENOMEM when no memory can be had.
 */
uint64_t zs_malloc(struct zs_pool *pool, size_t size)
    __attribute__((nonnull(1)));

/*
 * Free an object.  0 is ignored.  Handles carry a 6-bit generation, so a
 * freed handle is recognised as stale until its table slot has been reused
 * 64 times.  A handle that is not live (already freed,
 * never allocated) is ignored too and counted in stats.bad_handles.  The
 * caller must not free an object that another of its threads is reading or
 * writing; the pool waits for its own users (compaction) to let go.
 */
void zs_free(struct zs_pool *pool, uint64_t handle) __attribute__((nonnull(1)));

/*
 * The size the object was allocated with, or -ESTALE for a handle that is not
 * live.
 */
int zs_size(struct zs_pool *pool, uint64_t handle) __attribute__((nonnull(1)));

/*
 * Copy len bytes from src into the start of the object.  Returns 0, -EINVAL
 * if len exceeds the object's size, -ESTALE for a handle that is not live.
 */
int zs_write(struct zs_pool *pool, uint64_t handle, const void *src, size_t len)
    __attribute__((nonnull(1, 3)));

/*
 * Copy the whole object into dst, which must have room for its size (at most
 * ZS_MAX_OBJECT_SIZE; at most ZS_MAX_ALLOC_SIZE for a user that allocates no
 * more).  Returns the number of bytes copied (the object's size) or -ESTALE
 * for a handle that is not live.  The object is pinned for the copy: a large
 * one is passed by compaction and eviction, and delays zs_free(), for that
 * long.
 */
int zs_read(struct zs_pool *pool, uint64_t handle, void *dst)
    __attribute__((nonnull(1, 3)));

/*
 * Zero-copy access.  zs_map() returns a pointer to the object's bytes, valid
 * for reading and writing until the matching zs_unmap(); if ret_size is not
 * NULL it receives the object's size.  Because a zspage is one contiguous
 * run of virtual memory, every object maps in place, including those that
 * straddle a page boundary.  While mapped, the object is pinned: compaction
 * and eviction pass it by.  Several threads may map the same object at once
 * (up to 14; a 15th waits).  Keep mappings short and never sleep on another
 * thread while holding one.  Returns NULL with errno ESTALE for a handle that
 * is not live.
 */
void *zs_map(struct zs_pool *pool, uint64_t handle, size_t *ret_size)
    __attribute__((nonnull(1)));
void zs_unmap(struct zs_pool *pool, uint64_t handle) __attribute__((nonnull(1)));

/*
 * Migrate objects from the emptiest zspages of each class into the fullest
 * ones, and free every zspage so emptied; then pack the few zspages left
 * partly used towards their start and give back the pages inside them that
 * hold no object (this alone may free pages when nothing can move; not in
 * reserve mode).  Freed pages go back to the OS before this returns (in
 * reserve mode those of a freed zspage may stay in the reserve instead:
 * see zs_reserve_set()).  Objects mapped or being read or written at the
 * time are left where they are.  Safe to call while other threads use the
 * pool; concurrent zs_compact() calls serialise per class.  Returns the net
 * number of 4 KiB pages the pool no longer holds: pages freed less the
 * pages that moved objects newly occupy (0 if nothing could be freed).
 */
int64_t zs_compact(struct zs_pool *pool) __attribute__((nonnull(1)));

/*
 * Reclaim zspages, the one least recently allocated into first, through
 * ops->evict until
 * at least pages 4 KiB pages have gone back to the OS or nothing is left.
 * Returns the number of pages freed; -ENOTSUP if the pool has no evict
 * callback; the callback's negative errno if it failed before any page was
 * freed (after that, the count so far).  The shrink also stops, returning
 * the count so far (or -EBUSY if that is 0), when a zspage cannot be emptied
 * because the callback returned 0 without freeing an object.  Objects that
 * are mapped delay their eviction (zs_free() waits for zs_unmap()).  The
 * order is exact within a size class; across classes it is as fine as a
 * clock of ~17 ms ticks.
 */
int64_t zs_shrink(struct zs_pool *pool, uint64_t pages) __attribute__((nonnull(1)));

/*
 * The reserve: allocation that never waits for memory.
 *
 * A pool serves allocations from memory it faults in as they come (lazy
 * mode, the default): a zspage's pages are touched as objects land on them,
 * tables grow as they fill.  A user that must not wait on the kernel's
 * page allocator at that point (a block device serving swap: the fault may
 * need the very memory its write would free) sets a reserve before the
 * first allocation.  From then on:
 *   - zs_malloc() never faults in memory: a new zspage is made from pages
 *     populated in advance (all of them at once, and they count as the
 *     pool's from then on, as in the kernel's zsmalloc), and handles, zspage
 *     ids and descriptors come from table room populated in advance;
 *   - when any of that has run out, zs_malloc() fails at once with ENOMEM
 *     (counted as a miss) rather than wait;
 *   - zs_reserve_refill(), called from a thread of the user's that may block,
 *     populates memory back up to the target; freed zspages' pages go back
 *     into the reserve (up to a quarter of the target, for zspages of their
 *     length) before they go back to the OS;
 *   - compaction no longer gives back the unused pages inside a zspage it
 *     could only partly empty (zspages are resident whole).
 * The reserve is held outside zs_pool_stats.mem_used.
 */

/* Largest reserve target, bytes. */
#define ZS_RESERVE_MAX (512ull << 20)

/*
 * Set the reserve's target in bytes (at most ZS_RESERVE_MAX).  The first
 * call with a non-zero target puts the pool in reserve mode, and must come
 * before the first allocation (-EBUSY after); nothing is populated until
 * zs_reserve_refill().  Later calls change the target (0 is refused:
 * -EINVAL; the mode stays).  A call with 0 on a lazy pool does nothing.
 */
int zs_reserve_set(struct zs_pool *pool, uint64_t bytes) __attribute__((nonnull));

/*
 * Populate the reserve up to its target, and the tables' room: may block
 * for as long as the kernel takes to find the memory, so call it from a
 * thread that nothing urgent waits on, after ops.reserve_low and now and
 * then.  Allocations go on meanwhile.  One refill runs at a time (a second
 * caller waits).  Returns 0, or -ENOMEM if memory could not be had (what
 * was populated stays), or handles_grow's error.  0 at once on a lazy pool.
 */
int zs_reserve_refill(struct zs_pool *pool) __attribute__((nonnull));


/*
 * Give up to bytes of the reserve's unused memory back to the OS now, and
 * return how much was given.  For a user that finds memory so short that
 * something else it needs (a kernel buffer for its reply, say) cannot be
 * had: this frees pages without allocating anything.  The next refill
 * brings the reserve back.  Any thread; takes the frontier and arena
 * locks briefly.  0 on a lazy pool.
 */
uint64_t zs_reserve_release(struct zs_pool *pool, uint64_t bytes) __attribute__((nonnull));

struct zs_reserve_stats {
    uint64_t target;          /* bytes the refill keeps populated */
    uint64_t available;       /* bytes populated and unused now */
    uint64_t low_water;       /* the fewest available since the first refill */
    uint64_t misses;          /* allocations refused for want of reserve */
    uint64_t refills;         /* refill calls that populated memory */
};

/* The reserve's figures; all zero on a lazy pool. */
void zs_reserve_get_stats(struct zs_pool *pool, struct zs_reserve_stats *ret)
    __attribute__((nonnull));

/* Totals for a pool.  Every figure is in bytes unless its name says pages. */
struct zs_pool_stats {
    uint64_t mem_used;        /* all memory held from the OS: pages + metadata */
    uint64_t pages;           /* 4 KiB pages of zspages that hold data */
    uint64_t metadata_bytes;  /* handle table, zspage descriptors, tables */
    uint64_t objects;         /* live objects */
    uint64_t bytes_stored;    /* sum of live objects' sizes as allocated */
    uint64_t zspages;         /* zspages in use */
    uint64_t pages_compacted; /* pages freed by zs_compact() since creation */
    uint64_t pages_evicted;   /* pages freed by zs_shrink() since creation */
    uint64_t objects_evicted; /* objects handed to ops->evict and gone after it */
    uint64_t bad_handles;     /* zs_free() calls on a handle not live */
};

/* One size class.  Classes merged into a larger one report no zspages. */
struct zs_class_stats {
    uint32_t size;            /* object slot size in bytes */
    uint32_t pages_per_zspage;
    uint32_t objs_per_zspage;
    uint32_t merged_into;     /* index of the class that serves this one */
    uint64_t zspages;
    uint64_t pages;           /* resident pages of this class's zspages */
    uint64_t objects;
    uint64_t bytes_stored;
    uint64_t pages_compacted;
    uint64_t fullness[ZS_FULLNESS_GROUPS]; /* zspages per fullness group */
};

/*
 * Fill *ret with the pool's totals.  Lock-free: each figure is exact when it
 * is read, but they are not one atomic snapshot while other threads work.
 */
void zs_get_stats(struct zs_pool *pool, struct zs_pool_stats *ret)
    __attribute__((nonnull(1, 2)));

/*
 * All memory the pool holds from the OS, in bytes: zs_pool_stats.mem_used
 * without the rest.  Two loads, where zs_get_stats() sums every class: cheap
 * enough for a caller that checks a memory limit on every allocation.
 */
uint64_t zs_mem_used(struct zs_pool *pool) __attribute__((nonnull));

/*
 * At most how many bytes of metadata a zs_malloc(pool, size) made now may
 * add to zs_mem_used(), beyond the zspage it may open: 0 but every few
 * thousand allocations, when a table of handles, zspage ids or descriptors
 * is full and grows by a step of 64 KiB.  A zs_free() of the object gives
 * its zspage back but not that growth, so a caller that keeps
 * zs_mem_used() under a limit adds this to the object's size before it
 * allocates.  Lock-free; an upper bound for this thread's next allocation,
 * which another thread's may use up first.  0 in reserve mode, where only
 * the refill grows a table; 0 for a size zs_malloc() refuses.
 */
uint64_t zs_meta_growth(struct zs_pool *pool, size_t size) __attribute__((nonnull));

/* Number of size classes, counting merged ones.  Constant for all pools. */
unsigned zs_class_count(void);

/*
 * Fill *ret with class idx's figures (a consistent snapshot under the class
 * lock, held while the class's listed zspages are counted by fullness).  Returns 0, or -EINVAL for idx >= zs_class_count().
 */
int zs_get_class_stats(struct zs_pool *pool, unsigned idx, struct zs_class_stats *ret)
    __attribute__((nonnull(1, 3)));

/*
 * The slot size of the class that stores objects of size bytes
 * (1..ZS_MAX_OBJECT_SIZE), merged classes resolved: two sizes with the same
 * answer take the same room in the pool.  0 for a size out of range.
 */
size_t zs_class_size(size_t size);

/*
 * A dense number for a live handle: below 2^31, unique among the handles
 * live at one time, and reused once the handle is freed.  A user that keeps
 * something per object (the slot that owns it, for an evict callback) can
 * index a table by it instead of hashing handles.
 */
uint32_t zs_handle_index(uint64_t handle);

/*
 * Objects of this size or larger, up to ZS_MAX_ALLOC_SIZE, live alone in one
 * page (the "huge" class): a caller that compresses pages may as well store
 * such a page uncompressed.  (Classes above ZS_MAX_ALLOC_SIZE share zspages
 * of up to ZS_MAX_PAGES_PER_LARGE_ZSPAGE pages and are not huge.)
 */
size_t zs_huge_class_size(void);

#ifdef __cplusplus
}
#endif
#endif /* ZSPOOL_H */
