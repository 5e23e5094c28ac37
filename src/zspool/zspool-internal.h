/* SPDX-License-Identifier: MIT */
/*
 * libzspool's own header: what the allocator's files share, and nothing a
 * user may see (include/zspool.h is the whole interface).  The design, with
 * the alternatives rejected, is doc/zspool.md; each file keeps the rules its
 * code obeys.
 *
 * Locking, in one place:
 *   - One mutex per class guards its zspages (all but their immutable
 *     fields base, id and cls), its lists, its slot arrays and its freed
 *     descriptors.
 *   - Each zspage length's arena lock guards its freed runs, the frontier
 *     lock the frontier, id_lock the zspage id table, and a table's own
 *     lock its growth.  They are taken to make or free a zspage, with a
 *     class lock held, and by the refill and zs_reserve_release() with
 *     none.  Order: class, then arena, then frontier; or class, then ids.
 *     Never two class locks at once.
 *   - The refill (refill_lock, one at a time) holds none of them while it
 *     waits for memory; shrink_lock lets one zs_shrink() run at a time.
 *   - Handles come from a lock-free stack.  Object bytes are guarded by the
 *     pins in the handle entries, not by locks (handle.c), so reads and
 *     writes of objects in the same class run in parallel.
 *   - Counters are atomic and relaxed: each exact, none ordered against
 *     another.
 *
 * Sections below: constants and structures, small inline helpers, then the
 * functions each file exports to the others, under the file's name.  Calls
 * go one way: mem.c is at the bottom; frontier.c and handle.c use it;
 * arena.c uses frontier.c; zspage.c uses arena.c; reserve.c uses arena.c
 * and frontier.c; class.c uses nothing.  The files that hold only zs_*
 * entry points (alloc.c, compact.c, shrink.c, pool.c, stats.c) are on top,
 * and nothing calls into them.
 */
#ifndef UZRAM_ZSPOOL_INTERNAL_H
#define UZRAM_ZSPOOL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zspool.h"

/* The zs_* functions of include/zspool.h; everything else stays hidden. */
#define ZS_EXPORT __attribute__((visibility("default")))

#define PAGE_SHIFT 12
#define PAGE_SIZE 4096u
/* 16-byte steps: 256 classes, rounding waste under 1% above 1.6 KiB. */
#define CLASS_DELTA 16u
#define NUM_SMALL (ZS_MAX_ALLOC_SIZE / CLASS_DELTA)
/*
 * Above a page, 64 steps per doubling of the size (64 bytes from 4 KiB to
 * 8 KiB, ..., 512 from 32 KiB to 64 KiB): rounding wastes under 1.6%, with
 * 64 classes per doubling where 16-byte steps would need 3,840 in all.
 */
#define LARGE_STEP_SHIFT 6
#define LARGE_STEPS (1u << LARGE_STEP_SHIFT)
#define LARGE_DOUBLINGS 4u
#define NUM_SIZES (NUM_SMALL + LARGE_DOUBLINGS * LARGE_STEPS)
_Static_assert(ZS_MAX_ALLOC_SIZE << LARGE_DOUBLINGS == ZS_MAX_OBJECT_SIZE,
               "the large classes must end at ZS_MAX_OBJECT_SIZE");
/* The longest zspage of any class: the arenas and the resident bitmap. */
#define MAX_ZSPAGE_PAGES ZS_MAX_PAGES_PER_LARGE_ZSPAGE
_Static_assert(MAX_ZSPAGE_PAGES >= ZS_MAX_PAGES_PER_ZSPAGE, "large zspages are the longest");
_Static_assert(MAX_ZSPAGE_PAGES <= 32, "a zspage's resident bitmap is 32 bits");
/* The most objects a zspage of a class up to a page, or above it, holds. */
#define MAX_OBJS_PER_ZSPAGE (ZS_MAX_PAGES_PER_ZSPAGE * PAGE_SIZE / CLASS_DELTA)
#define MAX_OBJS_PER_LARGE_ZSPAGE   \
    (MAX_ZSPAGE_PAGES * PAGE_SIZE / \
     (ZS_MAX_ALLOC_SIZE + (ZS_MAX_ALLOC_SIZE >> LARGE_STEP_SHIFT)))
#define GROUP_FULL (ZS_FULLNESS_GROUPS - 1)

/*
 * Handle table entry.  Allocated, an object of 1..ZS_MAX_ALLOC_SIZE bytes:
 *   bits  0..3   pin count (0 none, 1..14 readers/writers, 15 exclusive)
 *   bit   4      allocated
 *   bits  5..10  generation
 *   bit   11     0: a per-page object
 *   bits 12..24  object size (1..4096)
 *   bits 25..36  slot in the zspage (up to 4096 slots)
 *   bits 37..63  zspage id
 * Allocated, an object of ZS_MAX_ALLOC_SIZE + 1..ZS_MAX_OBJECT_SIZE bytes,
 * whose zspage holds at most MAX_OBJS_PER_LARGE_ZSPAGE (31) objects:
 *   bits  0..10  as above
 *   bit   11     1: a large object
 *   bits 12..28  object size (4097..65536)
 *   bits 29..36  slot in the zspage (up to 256 slots)
 *   bits 37..63  zspage id
 * Free: bits 5..10 keep the generation, bits 32..63 link the free stack.
 */
#define E_PIN_MASK 0xfull
#define E_PIN_EXCL 0xfull
#define E_PIN_SHARED_MAX 14u
#define E_ALLOC (1ull << 4)
#define E_GEN_SHIFT 5
#define E_GEN_MASK 0x3full
#define E_LARGE (1ull << 11)
#define E_SIZE_SHIFT 12
#define E_SIZE_MASK 0x1fffull
#define E_SLOT_SHIFT 25
#define E_SLOT_MASK 0xfffull
#define E_LSIZE_MASK 0x1ffffull
#define E_LSLOT_SHIFT 29
#define E_LSLOT_MASK 0xffull
#define E_ID_SHIFT 37
#define E_NEXT_SHIFT 32
#define MAX_ZSPAGE_IDS (1u << 27)
/* Slot words use bit 31 to mark a free slot, so handle indices stay below. */
#define MAX_HANDLES (1u << 31)

#define SLOT_FREE (1u << 31)
#define SLOT_NONE 0xffffu

/* Sizes and slot indices must fit an entry and a zspage's 16-bit counters. */
_Static_assert(ZS_MAX_ALLOC_SIZE <= E_SIZE_MASK, "size overflows an entry");
_Static_assert(ZS_MAX_OBJECT_SIZE <= E_LSIZE_MASK, "large size overflows an entry");
_Static_assert(E_SIZE_SHIFT + 17 == E_LSLOT_SHIFT && E_LSLOT_SHIFT + 8 == E_ID_SHIFT &&
                   E_SLOT_SHIFT + 12 == E_ID_SHIFT,
               "the entry's fields overlap");
_Static_assert(MAX_OBJS_PER_ZSPAGE - 1 <= E_SLOT_MASK, "slot index overflows an entry");
_Static_assert(MAX_OBJS_PER_LARGE_ZSPAGE - 1 <= E_LSLOT_MASK,
               "large slot overflows an entry");
_Static_assert(MAX_OBJS_PER_ZSPAGE < SLOT_NONE, "slot index collides with SLOT_NONE");

/* Regions of virtual memory that zspage runs are carved from. */
#define REGION_BYTES (1ull << 30)
/* Tables become readable in steps of 64 KiB. */
#define TABLE_COMMIT_STEP (64ull << 10)
/*
 * Descriptors: at most 48 + 4 * 256 bytes each (the most objects a zspage
 * holds is 256, a page of 16-byte objects; a large class's hold at most
 * MAX_OBJS_PER_LARGE_ZSPAGE), one per zspage id.
 */
#define DESC_TABLE_BYTES ((size_t)MAX_ZSPAGE_IDS * 1088)
_Static_assert(48 + 4 * MAX_OBJS_PER_LARGE_ZSPAGE <= 1088,
               "a large descriptor outgrows the table");
/*
 * The refill populates the reserve in steps of this much, with no lock held
 * while it waits for the memory, so that allocations go on meanwhile.
 */
#define RESERVE_STEP (256ull << 10)

/* The geometry of a size class, the same for every pool (class.c). */
struct class_geometry {
    uint32_t size;
    uint32_t pages;
    uint32_t objs;
    uint32_t merged_into;
    uint32_t dense; /* index in pool->classes of the class that serves it */
};

/*
 * Every class's geometry, and the number of classes not merged into another
 * (those a pool has a struct size_class for), valid once geometry_ensure()
 * has run (class.c).
 */
extern struct class_geometry geometry[NUM_SIZES];
extern uint32_t num_classes;
/* Bit k: some class has zspages of k pages (the refill keeps run lists for those alone). */
extern uint64_t zspage_lengths;

/*
 * Zspages are linked into their class's lists by id rather than by pointer,
 * which halves the links: a descriptor is 48 bytes plus 4 per slot.
 */
#define ID_NONE UINT32_MAX
enum { LINK_GROUP, LINK_LRU, LINK_MAX };

struct ilink {
    uint32_t next, prev;
};

struct ihead {
    uint32_t first, last;
};

/*
 * A zspage.  Every field but the immutable ones (base, id, cls) is guarded by
 * the lock of class cls.
 */
struct zspage {
    struct ilink link[LINK_MAX]; /* in a fullness list; in the LRU */
    char *base;
    uint32_t stamp;         /* when an object was last placed here (~16 ms) */
    uint32_t id;
    uint16_t skip_pass;     /* compaction pass that gave up on it */
    uint16_t cls;
    uint16_t inuse;
    uint16_t bump;          /* slots [0, bump) have been handed out */
    uint32_t resident;      /* bit p: page p has been touched (MAX_ZSPAGE_PAGES) */
    uint16_t free_head;     /* freed slots, linked through slots[] */
    uint8_t group;          /* fullness group; 0 = not listed */
    bool isolated;          /* being evicted: off every list */
    uint32_t slots[];       /* owner handle index, or SLOT_FREE | next */
};
_Static_assert(sizeof(struct zspage) == 48, "the descriptor grew: update the comment above");

/*
 * A size class of one pool.  Set by zs_create(), then under lock.  Kept to
 * three cache lines: a pool has one per class that serves itself (360),
 * and the pool's own struct is in every mem_used (zspool-bench's ratios).
 */
struct size_class {
    pthread_mutex_t lock;
    uint32_t size;          /* the class's geometry: immutable */
    uint16_t pages, objs;   /* at most MAX_ZSPAGE_PAGES, 256: immutable */
    uint32_t zspages;       /* zspages of the class, isolated ones too (< MAX_ZSPAGE_IDS) */
    uint16_t pass;          /* compaction passes, for skip marks */
    struct zspage *desc_free; /* freed descriptors of this class, linked by link[0].next */
    struct ihead groups[ZS_FULLNESS_GROUPS];
    struct ihead lru;       /* first: most recently allocated into */
    uint64_t compacted;     /* pages compaction freed, net */
    /* Written under the lock, read without it by zs_get_stats(). */
    _Atomic uint64_t objects, bytes, pages_held;
} __attribute__((aligned(64)));
_Static_assert(sizeof(struct size_class) == 192, "struct size_class outgrew three lines");

/* A descriptor's size for class c, rounded to 8 for its pointer. */
static inline size_t desc_bytes(const struct size_class *c)
{
    return (sizeof(struct zspage) + c->objs * sizeof(uint32_t) + 7) & ~(size_t)7;
}

/* Virtual memory reserved up front and made accessible as it fills. */
struct vtable {
    char *base;             /* immutable once made */
    size_t reserved;        /* immutable once made */
    _Atomic size_t committed;   /* accessible; in reserve mode also populated */
    pthread_mutex_t lock;   /* serialises growth; readers load committed */
};

/* A growable array of run or region bases, under its owner's lock. */
struct runs {
    char **v;
    size_t n, cap;
};

/*
 * Part of a region that runs are carved from: [next, populated) is ready
 * for the taking (in reserve mode: resident), [populated, end) is not yet.
 */
struct span {
    char *base;             /* the region's start: the span's identity */
    char *next, *populated, *end;
};

/*
 * Where new zspage runs come from, for every length alike: runs are carved
 * from cur in order.  In reserve mode the refill populates cur to its end
 * and then a second region, nxt, which allocation moves on to when cur
 * cannot fit a run.  Lazy mode uses cur only and makes it accessible in
 * REGION_COMMIT_STEP steps (commit_end).  Every field under lock.
 */
struct frontier {
    pthread_mutex_t lock;
    struct span cur, nxt;
    char *commit_end;
    struct runs regions;    /* every region, for zs_destroy() */
};

/* Freed runs of one zspage length, kept for the next zspage of that length. */
struct arena {
    pthread_mutex_t lock;   /* guards the three fields below */
    struct runs warm;       /* reserve mode: still resident, part of the reserve */
    struct runs cold;       /* pages given back to the OS; the addresses kept */
    bool cold_full;         /* a run was dropped for want of room; the refill grows cold */
};

/*
 * The reserve (zs_reserve_set()): memory populated in advance so that an
 * allocation never has to fault in a page.  Byte counts are of populated,
 * unused memory; every field is atomic or written by the refill alone.
 */
struct reserve {
    bool on;                        /* set before the first allocation, never cleared */
    _Atomic uint64_t target;        /* what the refill keeps populated */
    _Atomic uint64_t frontier;      /* in the frontier's spans */
    _Atomic uint64_t warm;          /* in warm runs */
    _Atomic uint64_t low;           /* lowest frontier + warm seen by an allocation */
    _Atomic uint64_t misses;        /* allocations refused: something ran out */
    _Atomic uint64_t refills;       /* refill calls that populated memory */
    _Atomic bool kicked;            /* ops.reserve_low called, no refill since */
    /* Runs of length k taken from the frontier while cold ones waited. */
    _Atomic uint32_t rewarm[MAX_ZSPAGE_PAGES + 1];
    pthread_mutex_t refill_lock;    /* one refill at a time */
};

struct zs_pool {
    struct zs_ops ops;              /* immutable after zs_create() */
    void *arg;

    struct vtable handles;          /* _Atomic uint64_t entries */
    _Atomic uint64_t handle_free;   /* stack head: tag << 32 | (index + 1) */
    _Atomic uint64_t handle_top;    /* next never-used index */

    struct vtable ids;              /* struct zspage * by id */
    pthread_mutex_t id_lock;
    uint32_t id_free;               /* free id + 1, linked through the table; under id_lock */
    _Atomic uint32_t id_top;        /* written under id_lock; read without by rsv_low() */

    struct vtable descs;            /* zspage descriptors, carved in order */
    _Atomic uint64_t desc_top;      /* bytes of descs handed out */

    pthread_mutex_t shrink_lock;

    /*
     * Counters, atomic and relaxed.  pages: zspage pages resident;
     * metadata: bytes of the tables made accessible and of the run lists,
     * the pool's own struct included; zspages: zspages in the pool.
     */
    _Atomic uint64_t pages, metadata, zspages;
    /*
     * Pages compaction freed (net) and eviction freed, objects the evict
     * callback took away, handles refused as not live.
     */
    _Atomic uint64_t pages_compacted, pages_evicted, objects_evicted;
    _Atomic uint64_t bad_handles;

    struct frontier frontier;
    struct reserve rsv;
    struct arena arenas[MAX_ZSPAGE_PAGES + 1];
    /* One per class not merged into another (num_classes), by size. */
    struct size_class classes[];
};

/* ---- inline helpers: counters, tables, entries, id-linked lists ---------- */

/* A counter or level, read relaxed. */
static inline uint64_t load(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static inline void meta_add(struct zs_pool *pool, int64_t bytes)
{
    atomic_fetch_add_explicit(&pool->metadata, (uint64_t)bytes, memory_order_relaxed);
}

/* The zspage id table (zspage.c allocates ids; a pin or the class lock keeps one valid). */
static inline struct zspage **id_slot(struct zs_pool *pool, uint32_t id)
{
    return &((struct zspage **)pool->ids.base)[id];
}

static inline struct zspage *zspage_by_id(struct zs_pool *pool, uint32_t id)
{
    return id == ID_NONE ? NULL : *id_slot(pool, id);
}

/* The handle table and its entries, laid out as above (handle.c). */
static inline _Atomic uint64_t *entry_at(struct zs_pool *pool, uint32_t idx)
{
    return &((_Atomic uint64_t *)pool->handles.base)[idx];
}

static inline uint64_t handle_make(uint32_t idx, uint64_t gen)
{
    return gen << 32 | ((uint64_t)idx + 1);
}

static inline uint64_t entry_gen(uint64_t e)
{
    return (e >> E_GEN_SHIFT) & E_GEN_MASK;
}

static inline uint32_t entry_size(uint64_t e)
{
    uint64_t mask = (e & E_LARGE) ? E_LSIZE_MASK : E_SIZE_MASK;
    return (uint32_t)((e >> E_SIZE_SHIFT) & mask);
}

static inline uint32_t entry_slot(uint64_t e)
{
    if (e & E_LARGE)
        return (uint32_t)((e >> E_LSLOT_SHIFT) & E_LSLOT_MASK);
    return (uint32_t)((e >> E_SLOT_SHIFT) & E_SLOT_MASK);
}

static inline uint32_t entry_id(uint64_t e)
{
    return (uint32_t)(e >> E_ID_SHIFT);
}

/* The layout follows the size: a large object lives only in a large class. */
static inline uint64_t entry_make(uint32_t id, uint32_t slot, uint32_t size, uint64_t gen)
{
    uint64_t where = size > ZS_MAX_ALLOC_SIZE ? E_LARGE | (uint64_t)slot << E_LSLOT_SHIFT
                                              : (uint64_t)slot << E_SLOT_SHIFT;
    return (uint64_t)id << E_ID_SHIFT | where | (uint64_t)size << E_SIZE_SHIFT |
           gen << E_GEN_SHIFT | E_ALLOC;
}

static inline bool entry_live(uint64_t e, uint64_t gen)
{
    return (e & E_ALLOC) && entry_gen(e) == gen;
}

/*
 * The zspage of a pinned entry.  Its immutable fields (base, cls) may be read
 * without the class lock: the pin keeps the zspage alive.
 */
static inline struct zspage *entry_zspage(struct zs_pool *pool, uint64_t e)
{
    return *id_slot(pool, entry_id(e));
}

static inline char *entry_addr(struct zs_pool *pool, uint64_t e)
{
    struct zspage *z = entry_zspage(pool, e);
    return z->base + (size_t)entry_slot(e) * pool->classes[z->cls].size;
}

/*
 * The index of the class step that size falls in, 1 <= size <=
 * ZS_MAX_OBJECT_SIZE, before merging: 16-byte steps up to a page, then
 * LARGE_STEPS steps per doubling.
 */
static inline uint32_t size_index(size_t size)
{
    if (size <= ZS_MAX_ALLOC_SIZE)
        return (uint32_t)((size - 1) / CLASS_DELTA);
    /* 0 for 4097..8192, 1 for 8193..16384, ... */
    uint32_t d = (uint32_t)(31 - __builtin_clz((uint32_t)size - 1)) - PAGE_SHIFT;
    uint32_t step_shift = PAGE_SHIFT + d - LARGE_STEP_SHIFT;
    size_t from = (size_t)ZS_MAX_ALLOC_SIZE << d;
    return NUM_SMALL + d * LARGE_STEPS + (uint32_t)((size - from - 1) >> step_shift);
}

/* The class that objects of size bytes go to: 1 <= size <= ZS_MAX_OBJECT_SIZE. */
static inline struct size_class *class_for(struct zs_pool *pool, size_t size)
{
    return &pool->classes[geometry[size_index(size)].dense];
}

/* Id-linked lists of zspages: the class lock held. */
static inline void ihead_init(struct ihead *h)
{
    h->first = h->last = ID_NONE;
}

static inline bool ihead_empty(const struct ihead *h)
{
    return h->first == ID_NONE;
}

static inline void ilist_add(struct zs_pool *pool, struct ihead *h, struct zspage *z, int w)
{
    z->link[w].prev = ID_NONE;
    z->link[w].next = h->first;
    if (h->first != ID_NONE)
        zspage_by_id(pool, h->first)->link[w].prev = z->id;
    else
        h->last = z->id;
    h->first = z->id;
}

static inline void ilist_add_tail(struct zs_pool *pool, struct ihead *h, struct zspage *z, int w)
{
    z->link[w].next = ID_NONE;
    z->link[w].prev = h->last;
    if (h->last != ID_NONE)
        zspage_by_id(pool, h->last)->link[w].next = z->id;
    else
        h->first = z->id;
    h->last = z->id;
}

static inline void ilist_del(struct zs_pool *pool, struct ihead *h, struct zspage *z, int w)
{
    struct ilink *l = &z->link[w];

    if (l->prev != ID_NONE)
        zspage_by_id(pool, l->prev)->link[w].next = l->next;
    else
        h->first = l->next;
    if (l->next != ID_NONE)
        zspage_by_id(pool, l->next)->link[w].prev = l->prev;
    else
        h->last = l->prev;
    l->next = l->prev = ID_NONE;
}

/* ---- class.c: size classes ----------------------------------------------- */

/* Compute the geometry, once per process; cheap after the first call. */
void geometry_ensure(void);

/* ---- mem.c: memory from the OS, tables, run lists ------------------------ */

/* Address space of bytes, PROT_NONE, no huge pages; NULL if none. */
void *vm_reserve(size_t bytes);
/* Give pages back to the OS; they read back as zeros.  Never fails. */
void release_pages(void *p, size_t bytes);
/* What a malloc()ed block costs, its header included; 0 for NULL. */
int64_t malloc_cost(void *p);
/* Make p resident, as writes would.  May wait for memory.  0 or -ENOMEM. */
int populate(void *p, size_t bytes);
/* Reserve a table's address space.  0 or -ENOMEM. */
int vtable_init(struct vtable *t, size_t bytes);
void vtable_fini(struct vtable *t);
/*
 * Make the first need bytes of t accessible (and resident, with
 * populate_too), accounting them as metadata.  Takes t->lock.  0 or -ENOMEM.
 */
int vtable_grow_(struct zs_pool *pool, struct vtable *t, size_t need, bool populate_too);
int vtable_grow(struct zs_pool *pool, struct vtable *t, size_t need);
/*
 * Push p on r, under r's owner's lock.  With grow, r may be reallocated:
 * 0 or -ENOMEM; without, 0 or -ENOSPC, and nothing is allocated.
 */
int runs_push(struct zs_pool *pool, struct runs *r, char *p, bool grow);
/* The refill's: room in r for want more pushes, allocated outside lock. */
int runs_grow_unlocked(struct zs_pool *pool, pthread_mutex_t *lock, struct runs *r,
                       size_t want);

/* ---- frontier.c: where new runs come from -------------------------------- */

/* Lazy mode: bytes of fresh, accessible address space.  Frontier lock held. */
char *frontier_carve(struct zs_pool *pool, size_t bytes);
/* Reserve mode: bytes of populated frontier, or NULL.  Takes the frontier lock. */
char *frontier_take(struct zs_pool *pool, size_t bytes);
/* The refill's step: bytes populated, 0 if both spans are full, or -ENOMEM. */
int64_t frontier_grow(struct zs_pool *pool);
/* Give back up to excess bytes of the populated frontier; what it gave.  Takes its lock. */
uint64_t frontier_shrink(struct zs_pool *pool, uint64_t excess);

/* ---- arena.c: freed runs ------------------------------------------------- */

/* The most that warm runs may hold, for a reserve of target bytes. */
uint64_t rsv_warm_max(uint64_t target);
/*
 * A run of k pages for a new zspage, or NULL (out of memory; in reserve
 * mode, out of reserve).  Never faults a page in reserve mode.
 */
char *arena_get(struct zs_pool *pool, uint32_t k);
/* A zspage's run of k pages is free (touched: some page is resident).  Never fails. */
void arena_put(struct zs_pool *pool, uint32_t k, char *base, bool touched);

/* ---- zspage.c: zspages and their slots (the class lock held throughout) -- */

/* The time in LRU stamps (~16.8 ms ticks). */
uint32_t now_stamp(void);
/* Take z off its fullness list, if on one. */
void group_del(struct zs_pool *pool, struct size_class *c, struct zspage *z);
/* Put z in the fullness list its use calls for (none if empty or isolated). */
void regroup(struct zs_pool *pool, struct size_class *c, struct zspage *z);
/* A new, empty zspage for class c, number cls, on the LRU; NULL if out of memory or reserve. */
struct zspage *zspage_create(struct zs_pool *pool, struct size_class *c, uint16_t cls);
/* Resident pages of z. */
uint32_t zspage_pages(const struct zspage *z);
/* Free z, which holds no object: its run, id and descriptor go back. */
void zspage_destroy(struct zs_pool *pool, struct size_class *c, struct zspage *z);
/* Count the pages under slot as resident: it is about to be written. */
void slot_touch(struct zs_pool *pool, struct size_class *c, struct zspage *z, uint32_t slot);
/* Give back z's pages that no live object touches; returns how many. */
uint32_t zspage_trim(struct zs_pool *pool, struct size_class *c, struct zspage *z);
/* Hand out a slot of z, which has room, to handle index owner. */
uint32_t slot_take(struct zs_pool *pool, struct size_class *c, struct zspage *z,
                   uint32_t owner);
void slot_put(struct zspage *z, uint32_t slot);
/* The fullest listed zspage with a free slot, or NULL. */
struct zspage *pick_target(struct zs_pool *pool, struct size_class *c);
/* The emptiest listed zspage that this compaction pass has not given up on. */
struct zspage *pick_source(struct zs_pool *pool, struct size_class *c);

/* ---- handle.c: handles and pins ------------------------------------------ */

/* The entry a handle names, or NULL if it cannot be one of this pool's. */
_Atomic uint64_t *handle_entry(struct zs_pool *pool, uint64_t handle, uint32_t *ret_idx,
                               uint64_t *ret_gen);
/* A free handle index.  0, or -ENOMEM (in reserve mode: none populated). */
int handle_alloc(struct zs_pool *pool, uint32_t *ret_idx);
/* Free idx with generation gen; drops any pin the caller held. */
void handle_release(struct zs_pool *pool, uint32_t idx, uint64_t gen);
/* Pin a live entry exclusively, waiting for readers.  0 or -ESTALE. */
int pin_exclusive(_Atomic uint64_t *ep, uint64_t gen, uint64_t *ret_e);
/* One try at an exclusive pin, for movers that must not wait. */
bool pin_try_exclusive(_Atomic uint64_t *ep, uint64_t *ret_e);

/* ---- reserve.c: the reserve ---------------------------------------------- */

/* After an allocation in reserve mode: note the level, ask for a refill if due. */
void rsv_after(struct zs_pool *pool, bool missed);

#endif
