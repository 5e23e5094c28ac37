/* SPDX-License-Identifier: MIT */
/*
 * libzspool: zsmalloc, made for user space.
 *
 * The problem.  A compressed block device stores one object per 4 KiB page,
 * of any size from a few bytes to a whole page.  malloc() rounds such sizes to
 * its bins, scatters them over its arenas and, once half of them are freed at
 * random, keeps nearly every page resident, because a page is returned only
 * when every object on it is gone.  The kernel's zsmalloc answers with size
 * classes and "zspages"; this file follows it and adds what user space makes
 * cheap.
 *
 * Size classes.  Object sizes are rounded up to 16-byte steps (256 classes,
 * so rounding wastes at most 15 bytes, under 1% for objects over 1.6 KiB).
 * Each class packs its objects back to back into zspages of 1 to 16 pages;
 * the length is chosen per class to waste the fewest bytes at the zspage's
 * tail (a 3,008-byte object wastes 26% of one page but 0.3% of a 14-page
 * zspage).  Classes whose zspages come out the same (pages and objects per
 * zspage) are merged into the larger one.  Objects from 3,841 bytes up land
 * in classes of one object per page: the "huge" classes.
 *
 * Zspages are contiguous.  In the kernel a zspage is a chain of scattered
 * physical pages and an object that straddles two pages must be copied to be
 * read.  Here a zspage is a run of virtual pages carved, in order, from 1 GiB
 * regions (one mapping per region, not per zspage: Linux caps a process near
 * 65,000 mappings; runs of every length share the regions).  Every object,
 * straddling or not, is therefore addressable in place, and zs_map() never
 * copies.  Pages of a new zspage are touched only as objects are placed on
 * them, in order, so a half-filled 16-page zspage holds 8 pages of memory,
 * not 16; the pool counts exactly the pages it has touched.  A freed
 * zspage's pages go back to the OS at once with madvise(MADV_DONTNEED) and
 * its virtual run is kept for the next zspage of the same length.
 * Compaction also gives back the pages inside a zspage it could only partly
 * empty, where no live object lies.
 *
 * The reserve.  All of the above faults memory in as it goes, which a block
 * device serving swap cannot afford: when the machine is out of memory, the
 * page a write needs can only come from reclaim, and reclaim waits on that
 * write (Linux retries such a fault for ever rather than kill anyone when
 * the faulting task may not do I/O).  zs_reserve_set() switches a pool,
 * before its first allocation, to never faulting: a refill the user runs in
 * a thread of its own keeps a target of memory populated ahead (the
 * frontier: the next stretch of the current region, then of the next one),
 * and the tables (handles, zspage ids, descriptors) populated past their
 * tops.  An allocation takes only from that; a new zspage gets all its
 * pages at once, resident, as in the kernel (so compaction no longer trims
 * inside zspages, whose pages a later allocation would have to fault in
 * again); a freed zspage's run stays resident as part of the reserve while
 * such runs hold under a quarter of the target, its length's next zspage
 * taking it first.  When something has run out, zs_malloc() fails at once,
 * the way zram's allocation fails when the kernel has no page to give it,
 * and the user hears (ops.reserve_low) that a refill is due.
 *
 * Descriptors.  Each zspage has a descriptor (48 bytes plus 4 per slot)
 * carved from a table of its own, in order; a freed one waits on its class's
 * list for the class's next zspage, so the table never shrinks, like the
 * handle table.  That keeps malloc() out of allocation altogether.
 *
 * Handles.  A handle is an index into a table of 64-bit entries, one per
 * object, plus a 6-bit generation that catches most uses of a freed handle.
 * An entry packs the object's location (zspage id, slot), its exact size, its
 * generation and a pin count.  Moving an object rewrites only its entry.
 * Each zspage keeps, per slot, the index of the handle that owns it, so that
 * compaction and eviction can walk a zspage and find the handles to update
 * (the kernel stores the handle in the object itself; a side array keeps the
 * object bytes exactly the caller's and costs 4 bytes per slot).
 *
 * Pinning.  Readers and writers (zs_read, zs_write, zs_map) raise the entry's
 * pin count with a compare-and-swap; movers (compaction, free) need it at
 * zero and set it to the exclusive value.  Compaction only ever tries, and
 * passes a pinned object by, so it never waits on a user.  zs_free() waits
 * for the count to drop, which is short because compaction pins only across
 * one memcpy.
 *
 * Fullness groups.  A class keeps its zspages in 11 lists by how full they
 * are (empty, nine tenths-bands, full).  Allocation takes the fullest zspage
 * that has room, so holes are refilled before a new zspage is made;
 * compaction moves objects from the emptiest zspage into the fullest ones
 * until the emptiest is empty, then frees it.
 *
 * Eviction.  Each class keeps its zspages in least-recently-allocated order
 * (a zspage moves to the front when an object is placed in it, as in the
 * kernel's 2014 shrinking patch).  zs_shrink() takes the oldest zspage of any
 * class, isolates it (no allocation or compaction touches it), and hands each
 * live object to the user's evict callback, which stores it elsewhere and
 * frees the handle.  When the zspage is empty it is freed; if the callback
 * fails, the zspage goes back with whatever it still holds.
 *
 * Locking.  One mutex per class guards its zspages, lists, slot arrays and
 * freed descriptors.  Each zspage length has a mutex for its freed runs, the
 * frontier one, the zspage id table one; they are taken only to make or
 * free a zspage, with a class lock held (order: class, then arena, then
 * frontier; or class, then ids).  The refill holds none of them while it
 * waits for memory.  Handles come from a lock-free stack.
 * Object bytes are guarded by the pins, not by locks, so reads and writes of
 * objects in the same class run in parallel.
 */
#include "zspool.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "cleanup.h"
#include "populate.h"

#define ZS_EXPORT __attribute__((visibility("default")))

#define PAGE_SHIFT 12
#define PAGE_SIZE 4096u
/* 16-byte steps: 256 classes, rounding waste under 1% above 1.6 KiB. */
#define CLASS_DELTA 16u
#define NUM_SIZES (ZS_MAX_ALLOC_SIZE / CLASS_DELTA)
#define MAX_OBJS_PER_ZSPAGE (ZS_MAX_PAGES_PER_ZSPAGE * PAGE_SIZE / CLASS_DELTA)
#define GROUP_FULL (ZS_FULLNESS_GROUPS - 1)

/*
 * Handle table entry.  Allocated:
 *   bits  0..3   pin count (0 none, 1..14 readers/writers, 15 exclusive)
 *   bit   4      allocated
 *   bits  5..10  generation
 *   bits 12..24  object size (1..4096)
 *   bits 25..36  slot in the zspage (up to 4096 slots)
 *   bits 37..63  zspage id
 * Free: bits 5..10 keep the generation, bits 32..63 link the free stack.
 */
#define E_PIN_MASK 0xfull
#define E_PIN_EXCL 0xfull
#define E_PIN_SHARED_MAX 14u
#define E_ALLOC (1ull << 4)
#define E_GEN_SHIFT 5
#define E_GEN_MASK 0x3full
#define E_SIZE_SHIFT 12
#define E_SIZE_MASK 0x1fffull
#define E_SLOT_SHIFT 25
#define E_SLOT_MASK 0xfffull
#define E_ID_SHIFT 37
#define E_NEXT_SHIFT 32
#define MAX_ZSPAGE_IDS (1u << 27)
/* Slot words use bit 31 to mark a free slot, so handle indices stay below. */
#define MAX_HANDLES (1u << 31)

#define SLOT_FREE (1u << 31)
#define SLOT_NONE 0xffffu

/* Slot indices must fit an entry (12 bits) and a zspage's 16-bit counters. */
_Static_assert(MAX_OBJS_PER_ZSPAGE - 1 <= E_SLOT_MASK, "slot index overflows an entry");
_Static_assert(MAX_OBJS_PER_ZSPAGE < SLOT_NONE, "slot index collides with SLOT_NONE");

/* Regions of virtual memory that zspage runs are carved from. */
#define REGION_BYTES (1ull << 30)
/* Regions become readable in steps of 2 MiB, tables in steps of 64 KiB. */
#define REGION_COMMIT_STEP (2ull << 20)
#define TABLE_COMMIT_STEP (64ull << 10)
/*
 * Descriptors: at most 48 + 4 * 256 bytes each (the most objects a zspage
 * holds is 256), one per zspage id.
 */
#define DESC_TABLE_BYTES ((size_t)MAX_ZSPAGE_IDS * 1088)
/*
 * The refill populates the reserve in steps of this much, with no lock held
 * while it waits for the memory, so that allocations go on meanwhile.
 */
#define RESERVE_STEP (256ull << 10)
/*
 * Table room the refill keeps populated past what is in use, in reserve
 * mode: a handle per 64 bytes of reserve (objects of a compressed page are
 * rarely smaller), a zspage id per page of it, and descriptor bytes for a
 * zspage per page of it (each at most 1088 bytes, a 16-page zspage's ~200).
 */
#define HANDLE_SLACK(target) ((target) / 64 + 4096)
#define ID_SLACK(target) ((target) / PAGE_SIZE + 256)
#define DESC_SLACK(target) ((target) / 8 + 64 * 1024)

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

/* The geometry of a size class, the same for every pool. */
struct class_geometry {
    uint32_t size;
    uint32_t pages;
    uint32_t objs;
    uint32_t merged_into;
};

static struct class_geometry geometry[NUM_SIZES];
static size_t huge_class_size;
static pthread_once_t geometry_once = PTHREAD_ONCE_INIT;

/*
 * A zspage.  Every field but the immutable ones (base, id, cls) is guarded by
 * the lock of class cls.
 */
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

struct zspage {
    struct ilink link[LINK_MAX]; /* in a fullness list; in the LRU */
    char *base;
    uint32_t stamp;         /* when an object was last placed here (~16 ms) */
    uint32_t id;
    uint16_t skip_pass;     /* compaction pass that gave up on it */
    uint16_t cls;
    uint16_t inuse;
    uint16_t bump;          /* slots [0, bump) have been handed out */
    uint16_t free_head;     /* freed slots, linked through slots[] */
    uint16_t resident;      /* bit p: page p has been touched */
    uint8_t group;          /* fullness group; 0 = not listed */
    bool isolated;          /* being evicted: off every list */
    uint32_t slots[];       /* owner handle index, or SLOT_FREE | next */
};
_Static_assert(sizeof(struct zspage) == 48, "the descriptor grew: update the comment above");

struct size_class {
    pthread_mutex_t lock;
    uint32_t size, pages, objs;
    uint32_t desc_bytes;    /* a descriptor's size, rounded to 8 */
    struct zspage *desc_free; /* freed descriptors of this class, linked by link[0].next */
    uint16_t pass;          /* compaction passes, for skip marks */
    struct ihead groups[ZS_FULLNESS_GROUPS];
    struct ihead lru;       /* first: most recently allocated into */
    uint64_t ngroup[ZS_FULLNESS_GROUPS];
    uint64_t zspages;
    uint64_t compacted;
    /* Written under the lock, read without it by zs_get_stats(). */
    _Atomic uint64_t objects, bytes, pages_held;
} __attribute__((aligned(64)));

/* Virtual memory reserved up front and made accessible as it fills. */
struct vtable {
    char *base;
    size_t reserved;
    _Atomic size_t committed;   /* accessible; in reserve mode also populated */
    pthread_mutex_t lock;
};

/* A growable array of run or region bases. */
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
 * REGION_COMMIT_STEP steps (commit_end).
 */
struct frontier {
    pthread_mutex_t lock;
    struct span cur, nxt;
    char *commit_end;
    struct runs regions;    /* every region, for zs_destroy() */
};

/* Freed runs of one zspage length, kept for the next zspage of that length. */
struct arena {
    pthread_mutex_t lock;
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
    _Atomic uint32_t rewarm[ZS_MAX_PAGES_PER_ZSPAGE + 1];
    pthread_mutex_t refill_lock;    /* one refill at a time */
};

struct zs_pool {
    struct zs_ops ops;
    void *arg;

    struct vtable handles;          /* _Atomic uint64_t entries */
    _Atomic uint64_t handle_free;   /* stack head: tag << 32 | (index + 1) */
    _Atomic uint64_t handle_top;    /* next never-used index */

    struct vtable ids;              /* struct zspage * by id */
    pthread_mutex_t id_lock;
    uint32_t id_free;               /* free id + 1, linked through the table */
    _Atomic uint32_t id_top;        /* written under id_lock; read without by rsv_low() */

    struct vtable descs;            /* zspage descriptors, carved in order */
    _Atomic uint64_t desc_top;      /* bytes of descs handed out */

    pthread_mutex_t shrink_lock;

    _Atomic uint64_t pages, metadata, zspages;
    _Atomic uint64_t pages_compacted, pages_evicted, objects_evicted;
    _Atomic uint64_t bad_handles;

    struct frontier frontier;
    struct reserve rsv;
    struct arena arenas[ZS_MAX_PAGES_PER_ZSPAGE + 1];
    struct size_class classes[NUM_SIZES];
};

/* ---- class geometry ---------------------------------------------------- */

/* Pick the zspage length that wastes the smallest fraction of its bytes. */
static void geometry_pick(uint32_t size, uint32_t *ret_pages, uint32_t *ret_objs)
{
    uint32_t best_pages = 1, best_objs = PAGE_SIZE / size;
    uint64_t best_waste = PAGE_SIZE - best_objs * size;

    for (uint32_t k = 2; k <= ZS_MAX_PAGES_PER_ZSPAGE; k++) {
        uint32_t objs = k * PAGE_SIZE / size;
        uint64_t waste = k * PAGE_SIZE - (uint64_t)objs * size;
        /* waste / k < best_waste / best_pages, without division */
        if (waste * best_pages < best_waste * k) {
            best_pages = k;
            best_objs = objs;
            best_waste = waste;
        }
    }
    *ret_pages = best_pages;
    *ret_objs = best_objs;
}

static void geometry_init(void)
{
    for (uint32_t i = 0; i < NUM_SIZES; i++) {
        geometry[i].size = (i + 1) * CLASS_DELTA;
        geometry_pick(geometry[i].size, &geometry[i].pages, &geometry[i].objs);
    }
    /* Merge downwards: a class that packs like the next larger one joins it. */
    geometry[NUM_SIZES - 1].merged_into = NUM_SIZES - 1;
    for (uint32_t i = NUM_SIZES - 1; i-- > 0;) {
        const struct class_geometry *up = &geometry[geometry[i + 1].merged_into];
        if (up->pages == geometry[i].pages && up->objs == geometry[i].objs)
            geometry[i].merged_into = geometry[i + 1].merged_into;
        else
            geometry[i].merged_into = i;
    }
    huge_class_size = ZS_MAX_ALLOC_SIZE;
    for (uint32_t i = NUM_SIZES; i-- > 0;) {
        if (geometry[geometry[i].merged_into].objs != 1)
            break;
        huge_class_size = i * CLASS_DELTA + 1;
    }
}

static struct size_class *class_for(struct zs_pool *pool, size_t size)
{
    return &pool->classes[geometry[(size - 1) / CLASS_DELTA].merged_into];
}

/* ---- memory from the OS ------------------------------------------------ */

static void *reserve(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    /*
     * A transparent huge page would make one touched byte cost 2 MiB and
     * defeat both the page accounting and madvise() of single pages.
     */
    (void)madvise(p, bytes, MADV_NOHUGEPAGE);
    return p;
}

/*
 * Set once plain MADV_DONTNEED has been refused and MADV_DONTNEED_LOCKED
 * taken instead: the process runs under mlockall(), which covers every
 * pool and is seldom undone, so later releases go straight to the call that
 * works instead of failing first each time.
 */
static _Atomic bool release_locked_first;

/* Return pages to the OS; they read back as zeros. */
static void release_pages(void *p, size_t bytes)
{
    if (bytes == 0)
        return;
    /*
     * Under mlockall() plain MADV_DONTNEED refuses locked pages (EINVAL);
     * MADV_DONTNEED_LOCKED (Linux 5.18) takes locked and unlocked alike.
     */
    if (atomic_load_explicit(&release_locked_first, memory_order_relaxed) &&
        madvise(p, bytes, MADV_DONTNEED_LOCKED) == 0)
        return;
    if (madvise(p, bytes, MADV_DONTNEED) == 0)
        return;
    if (madvise(p, bytes, MADV_DONTNEED_LOCKED) == 0)
        atomic_store_explicit(&release_locked_first, true, memory_order_relaxed);
}

static uint64_t load(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void meta_add(struct zs_pool *pool, int64_t bytes)
{
    atomic_fetch_add_explicit(&pool->metadata, (uint64_t)bytes, memory_order_relaxed);
}

static int64_t malloc_cost(void *p)
{
    /* usable size plus glibc's chunk header */
    return p ? (int64_t)(malloc_usable_size(p) + sizeof(size_t)) : 0;
}

static int vtable_init(struct vtable *t, size_t bytes)
{
    t->base = reserve(bytes);
    if (!t->base)
        return -ENOMEM;
    t->reserved = bytes;
    atomic_init(&t->committed, 0);
    pthread_mutex_init(&t->lock, NULL);
    return 0;
}

static void vtable_fini(struct vtable *t)
{
    if (t->base)
        munmap(t->base, t->reserved);
    pthread_mutex_destroy(&t->lock);
}

static int populate(void *p, size_t bytes);

/*
 * Make the first need bytes of t accessible, and with populate resident
 * too (the refill, in reserve mode, before anyone may use them).  Takes
 * t->lock; 0 or -ENOMEM.
 */
static int vtable_grow_(struct zs_pool *pool, struct vtable *t, size_t need, bool populate_too)
{
    if (atomic_load_explicit(&t->committed, memory_order_acquire) >= need)
        return 0;
    LOCK_GUARD(&t->lock);
    size_t have = atomic_load_explicit(&t->committed, memory_order_relaxed);
    if (have >= need)
        return 0;
    if (need > t->reserved)
        return -ENOMEM;
    size_t want = (need + TABLE_COMMIT_STEP - 1) / TABLE_COMMIT_STEP * TABLE_COMMIT_STEP;
    if (want > t->reserved)
        want = t->reserved;
    if (mprotect(t->base + have, want - have, PROT_READ | PROT_WRITE) != 0)
        return -ENOMEM;
    if (populate_too && populate(t->base + have, want - have) < 0)
        return -ENOMEM;     /* accessible but not published: the next refill retries */
    meta_add(pool, (int64_t)(want - have));
    atomic_store_explicit(&t->committed, want, memory_order_release);
    return 0;
}

static int vtable_grow(struct zs_pool *pool, struct vtable *t, size_t need)
{
    return vtable_grow_(pool, t, need, false);
}

static int populate(void *p, size_t bytes)
{
    return mem_populate(p, bytes);
}

/* Push p on r, growing it (and accounting its memory) if grow allows. */
static int runs_push(struct zs_pool *pool, struct runs *r, char *p, bool grow)
{
    if (r->n == r->cap) {
        if (!grow)
            return -ENOSPC;
        size_t ncap = r->cap ? r->cap * 2 : 64;
        int64_t before = malloc_cost(r->v);
        char **nv = realloc(r->v, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        r->v = nv;
        r->cap = ncap;
        meta_add(pool, malloc_cost(nv) - before);
    }
    r->v[r->n++] = p;
    return 0;
}

/* ---- the frontier and freed runs ------------------------------------------ */

static uint64_t rsv_avail(struct zs_pool *pool)
{
    return load(&pool->rsv.frontier) + load(&pool->rsv.warm);
}

/*
 * Warm runs serve only zspages of their own length, so they may sit there
 * while the frontier, which serves every length, runs dry: they are kept to
 * a quarter of the target, and the frontier is filled to the rest.
 */
static uint64_t rsv_warm_max(uint64_t target)
{
    return target / 4;
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

/* A new region, recorded for zs_destroy().  The frontier lock held. */
static char *region_new(struct zs_pool *pool)
{
    char *r = reserve(REGION_BYTES);
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
static char *frontier_carve(struct zs_pool *pool, size_t bytes)
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
static char *frontier_take(struct zs_pool *pool, size_t bytes)
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
static int64_t frontier_grow(struct zs_pool *pool)
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
        char *r = reserve(REGION_BYTES);
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
 * The refill's trim, when the target was lowered: give back the populated
 * end of the frontier beyond what the target wants.
 */
static void frontier_shrink(struct zs_pool *pool, uint64_t excess)
{
    struct frontier *f = &pool->frontier;
    LOCK_GUARD(&f->lock);
    struct span *spans[] = { &f->nxt, &f->cur };

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
    }
}

/*
 * A run of k pages for a new zspage.  Lazy mode: a freed run (its pages
 * given back) or a fresh one, neither touched.  Reserve mode: a warm run or
 * populated frontier, or NULL (the caller counts a miss) if the refill has
 * not caught up; never a page fault.  Takes the arena lock, then the
 * frontier lock.
 */
static char *arena_get(struct zs_pool *pool, uint32_t k)
{
    struct arena *a = &pool->arenas[k];
    size_t bytes = (size_t)k * PAGE_SIZE;
    char *p;

    mutex_lock(&a->lock);
    if (pool->rsv.on) {
        if (a->warm.n) {
            p = a->warm.v[--a->warm.n];
            mutex_unlock(&a->lock);
            atomic_fetch_sub_explicit(&pool->rsv.warm, bytes, memory_order_relaxed);
            return p;
        }
        bool cold_waits = a->cold.n > 0;
        mutex_unlock(&a->lock);
        p = frontier_take(pool, bytes);
        /* Address space would have served: ask the refill to warm a cold run. */
        if (p && cold_waits)
            atomic_fetch_add_explicit(&pool->rsv.rewarm[k], 1, memory_order_relaxed);
        return p;
    }
    if (a->cold.n) {
        p = a->cold.v[--a->cold.n];
        mutex_unlock(&a->lock);
        return p;
    }
    mutex_unlock(&a->lock);
    LOCK_GUARD(&pool->frontier.lock);
    return frontier_carve(pool, bytes);
}

/*
 * A zspage's run is free.  Reserve mode keeps it resident, as part of the
 * reserve, while warm runs hold under a quarter of the target (the frontier
 * keeps the rest, for runs of any length); otherwise its pages go back to
 * the OS and the run waits, cold, for the next zspage of its length.  Never
 * allocates: if the cold list is full, the addresses are lost (the refill
 * grows it).
 */
static void arena_put(struct zs_pool *pool, uint32_t k, char *base, bool touched)
{
    struct arena *a = &pool->arenas[k];
    size_t bytes = (size_t)k * PAGE_SIZE;
    LOCK_GUARD(&a->lock);

    if (pool->rsv.on) {
        uint64_t warm = load(&pool->rsv.warm);
        if (warm + bytes <= rsv_warm_max(load(&pool->rsv.target)) &&
            runs_push(pool, &a->warm, base, false) == 0) {
            atomic_fetch_add_explicit(&pool->rsv.warm, bytes, memory_order_relaxed);
            return;
        }
        touched = true;
    }
    if (touched)
        release_pages(base, bytes);
    /* Lazy mode may grow the list; reserve mode must not allocate here. */
    if (runs_push(pool, &a->cold, base, !pool->rsv.on) < 0)
        a->cold_full = true;
}

/* ---- descriptors ----------------------------------------------------------- */

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
        uint64_t end = off + c->desc_bytes;
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

/* ---- zspage ids ----------------------------------------------------------- */

static struct zspage **id_slot(struct zs_pool *pool, uint32_t id)
{
    return &((struct zspage **)pool->ids.base)[id];
}

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

/* ---- handles -------------------------------------------------------------- */

static _Atomic uint64_t *entry_at(struct zs_pool *pool, uint32_t idx)
{
    return &((_Atomic uint64_t *)pool->handles.base)[idx];
}

static uint64_t handle_make(uint32_t idx, uint64_t gen)
{
    return gen << 32 | ((uint64_t)idx + 1);
}

static uint64_t entry_gen(uint64_t e)
{
    return (e >> E_GEN_SHIFT) & E_GEN_MASK;
}

static uint32_t entry_size(uint64_t e)
{
    return (uint32_t)((e >> E_SIZE_SHIFT) & E_SIZE_MASK);
}

static uint32_t entry_slot(uint64_t e)
{
    return (uint32_t)((e >> E_SLOT_SHIFT) & E_SLOT_MASK);
}

static uint32_t entry_id(uint64_t e)
{
    return (uint32_t)(e >> E_ID_SHIFT);
}

static uint64_t entry_make(uint32_t id, uint32_t slot, uint32_t size, uint64_t gen)
{
    return (uint64_t)id << E_ID_SHIFT | (uint64_t)slot << E_SLOT_SHIFT |
           (uint64_t)size << E_SIZE_SHIFT | gen << E_GEN_SHIFT | E_ALLOC;
}

static bool entry_live(uint64_t e, uint64_t gen)
{
    return (e & E_ALLOC) && entry_gen(e) == gen;
}

/*
 * The entry a handle names, or NULL if the handle cannot be one of this
 * pool's.  Whether it is live is for the caller to check, with the pin.
 */
static _Atomic uint64_t *handle_entry(struct zs_pool *pool, uint64_t handle,
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
static int handle_alloc(struct zs_pool *pool, uint32_t *ret_idx)
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
static void handle_release(struct zs_pool *pool, uint32_t idx, uint64_t gen)
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
static int pin_exclusive(_Atomic uint64_t *ep, uint64_t gen, uint64_t *ret_e)
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
static bool pin_try_exclusive(_Atomic uint64_t *ep, uint64_t *ret_e)
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

/*
 * The zspage of a pinned entry.  Its immutable fields (base, cls) may be read
 * without the class lock: the pin keeps the zspage alive.
 */
static struct zspage *entry_zspage(struct zs_pool *pool, uint64_t e)
{
    return *id_slot(pool, entry_id(e));
}

static char *entry_addr(struct zs_pool *pool, uint64_t e)
{
    struct zspage *z = entry_zspage(pool, e);
    return z->base + (size_t)entry_slot(e) * pool->classes[z->cls].size;
}

/* ---- id-linked lists (class lock held) ------------------------------------- */

static struct zspage *zspage_by_id(struct zs_pool *pool, uint32_t id)
{
    return id == ID_NONE ? NULL : *id_slot(pool, id);
}

static void ihead_init(struct ihead *h)
{
    h->first = h->last = ID_NONE;
}

static bool ihead_empty(const struct ihead *h)
{
    return h->first == ID_NONE;
}

static void ilist_add(struct zs_pool *pool, struct ihead *h, struct zspage *z, int w)
{
    z->link[w].prev = ID_NONE;
    z->link[w].next = h->first;
    if (h->first != ID_NONE)
        zspage_by_id(pool, h->first)->link[w].prev = z->id;
    else
        h->last = z->id;
    h->first = z->id;
}

static void ilist_add_tail(struct zs_pool *pool, struct ihead *h, struct zspage *z, int w)
{
    z->link[w].next = ID_NONE;
    z->link[w].prev = h->last;
    if (h->last != ID_NONE)
        zspage_by_id(pool, h->last)->link[w].next = z->id;
    else
        h->first = z->id;
    h->last = z->id;
}

static void ilist_del(struct zs_pool *pool, struct ihead *h, struct zspage *z, int w)
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

/* ---- zspages (class lock held) -------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* LRU stamps count ~16.8 ms ticks: 32 bits last over two years. */
static uint32_t now_stamp(void)
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

static void group_del(struct zs_pool *pool, struct size_class *c, struct zspage *z)
{
    if (z->group) {
        ilist_del(pool, &c->groups[z->group], z, LINK_GROUP);
        c->ngroup[z->group]--;
        z->group = 0;
    }
}

/* Put z in the fullness list its use calls for (none if empty or isolated). */
static void regroup(struct zs_pool *pool, struct size_class *c, struct zspage *z)
{
    unsigned g = z->isolated ? 0 : fullness(c, z);

    if (g == z->group)
        return;
    group_del(pool, c, z);
    if (g) {
        ilist_add(pool, &c->groups[g], z, LINK_GROUP);
        c->ngroup[g]++;
        z->group = (uint8_t)g;
    }
}

static void pages_add(struct zs_pool *pool, struct size_class *c, int64_t n);

/*
 * A new, empty zspage for class c (class lock held), or NULL: out of
 * memory, or in reserve mode out of reserve.  In reserve mode every page
 * of it is resident already and counts as the pool's at once, as in the
 * kernel's zsmalloc; lazy mode counts pages as objects first touch them.
 */
static struct zspage *zspage_create(struct zs_pool *pool, struct size_class *c, uint16_t cls)
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
        z->resident = (uint16_t)((1u << c->pages) - 1);
        pages_add(pool, c, c->pages);
    }
    return z;

fail_base:
    arena_put(pool, c->pages, base, false);
fail_z:
    desc_put(c, z);
    return NULL;
}

static void pages_add(struct zs_pool *pool, struct size_class *c, int64_t n)
{
    atomic_fetch_add_explicit(&c->pages_held, (uint64_t)n, memory_order_relaxed);
    atomic_fetch_add_explicit(&pool->pages, (uint64_t)n, memory_order_relaxed);
}

/* Resident pages of z. */
static uint32_t zspage_pages(const struct zspage *z)
{
    return (uint32_t)__builtin_popcount(z->resident);
}

static void zspage_destroy(struct zs_pool *pool, struct size_class *c, struct zspage *z)
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

/* The pages slot covers, as a bitmap. */
static uint16_t slot_pages(const struct size_class *c, uint32_t slot)
{
    uint32_t first = slot * c->size >> PAGE_SHIFT;
    uint32_t last = ((slot + 1) * c->size - 1) >> PAGE_SHIFT;
    return (uint16_t)(((2u << last) - 1) & ~((1u << first) - 1));
}

/* Count the pages under slot as resident: it is about to be written. */
static void slot_touch(struct zs_pool *pool, struct size_class *c, struct zspage *z,
                       uint32_t slot)
{
    uint16_t fresh = slot_pages(c, slot) & ~z->resident;

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
static uint32_t zspage_trim(struct zs_pool *pool, struct size_class *c, struct zspage *z)
{
    uint16_t used = 0;

    for (uint32_t slot = 0; slot < z->bump; slot++)
        if (!(z->slots[slot] & SLOT_FREE))
            used |= slot_pages(c, slot);
    uint16_t idle = z->resident & ~used;
    for (uint32_t p = 0; idle >> p; p++) {
        if (!(idle >> p & 1))
            continue;
        uint32_t run = 0;
        while (idle >> (p + run) & 1)
            run++;
        release_pages(z->base + (size_t)p * PAGE_SIZE, (size_t)run * PAGE_SIZE);
        p += run;
    }
    z->resident &= used;
    pages_add(pool, c, -(int64_t)__builtin_popcount(idle));
    return (uint32_t)__builtin_popcount(idle);
}

/* Hand out a slot of z to handle index owner; z must have room. */
static uint32_t slot_take(struct zs_pool *pool, struct size_class *c, struct zspage *z,
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

static void slot_put(struct zspage *z, uint32_t slot)
{
    z->slots[slot] = SLOT_FREE | z->free_head;
    z->free_head = (uint16_t)slot;
    z->inuse--;
}

/* The fullest listed zspage with a free slot, or NULL. */
static struct zspage *pick_target(struct zs_pool *pool, struct size_class *c)
{
    for (unsigned g = GROUP_FULL - 1; g > 0; g--)
        if (!ihead_empty(&c->groups[g]))
            return zspage_by_id(pool, c->groups[g].first);
    return NULL;
}

/* The emptiest listed zspage that this compaction pass has not given up on. */
static struct zspage *pick_source(struct zs_pool *pool, struct size_class *c)
{
    for (unsigned g = 1; g < GROUP_FULL; g++) {
        struct zspage *z = zspage_by_id(pool, c->groups[g].last);
        for (; z; z = zspage_by_id(pool, z->link[LINK_GROUP].prev))
            if (z->skip_pass != c->pass)
                return z;
    }
    return NULL;
}

/* ---- allocation ------------------------------------------------------------ */

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
static void rsv_after(struct zs_pool *pool, bool missed)
{
    if (missed)
        atomic_fetch_add_explicit(&pool->rsv.misses, 1, memory_order_relaxed);
    rsv_taken(pool);
    if (missed || rsv_low(pool))
        rsv_kick(pool);
}

static uint64_t zs_malloc_(struct zs_pool *pool, size_t size);

ZS_EXPORT uint64_t zs_malloc(struct zs_pool *pool, size_t size)
{
    uint64_t h = zs_malloc_(pool, size);
    if (pool->rsv.on && size > 0 && size <= ZS_MAX_ALLOC_SIZE) {
        int e = errno;
        rsv_after(pool, h == 0);
        errno = e;
    }
    return h;
}

static uint64_t zs_malloc_(struct zs_pool *pool, size_t size)
{
    if (size == 0 || size > ZS_MAX_ALLOC_SIZE) {
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

/* ---- access ---------------------------------------------------------------- */

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

/* ---- compaction ------------------------------------------------------------ */

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
    return c->zspages * c->objs - objects >= c->objs;
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

    for (uint32_t i = 0; i < NUM_SIZES; i++)
        if (geometry[i].merged_into == i)
            freed += class_compact(pool, &pool->classes[i]);
    atomic_fetch_add_explicit(&pool->pages_compacted, (uint64_t)freed, memory_order_relaxed);
    return freed;
}

/* ---- eviction -------------------------------------------------------------- */

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

        for (uint32_t i = 0; i < NUM_SIZES; i++) {
            if (geometry[i].merged_into != i)
                continue;
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

/* ---- pool ------------------------------------------------------------------ */

ZS_EXPORT struct zs_pool *zs_create(const struct zs_ops *ops, void *arg)
{
    pthread_once(&geometry_once, geometry_init);

    struct zs_pool *pool;
    int r = posix_memalign((void **)&pool, 64, sizeof(*pool));
    if (r != 0) {
        errno = r;
        return NULL;
    }
    memset(pool, 0, sizeof(*pool));
    if (ops)
        pool->ops = *ops;
    pool->arg = arg;
    pthread_mutex_init(&pool->id_lock, NULL);
    pthread_mutex_init(&pool->shrink_lock, NULL);
    pthread_mutex_init(&pool->frontier.lock, NULL);
    pthread_mutex_init(&pool->rsv.refill_lock, NULL);
    atomic_init(&pool->rsv.low, UINT64_MAX);
    for (uint32_t k = 0; k <= ZS_MAX_PAGES_PER_ZSPAGE; k++)
        pthread_mutex_init(&pool->arenas[k].lock, NULL);
    for (uint32_t i = 0; i < NUM_SIZES; i++) {
        struct size_class *c = &pool->classes[i];
        const struct class_geometry *g = &geometry[geometry[i].merged_into];
        pthread_mutex_init(&c->lock, NULL);
        c->size = g->size;
        c->pages = g->pages;
        c->objs = g->objs;
        /* 8-aligned, for the descriptor's pointer. */
        c->desc_bytes = (uint32_t)((sizeof(struct zspage) + g->objs * sizeof(uint32_t) + 7) & ~7u);
        for (unsigned j = 0; j < ZS_FULLNESS_GROUPS; j++)
            ihead_init(&c->groups[j]);
        ihead_init(&c->lru);
    }
    atomic_init(&pool->metadata, (uint64_t)malloc_cost(pool));
    if (vtable_init(&pool->handles, (size_t)MAX_HANDLES * sizeof(uint64_t)) < 0 ||
        vtable_init(&pool->ids, (size_t)MAX_ZSPAGE_IDS * sizeof(struct zspage *)) < 0 ||
        vtable_init(&pool->descs, DESC_TABLE_BYTES) < 0) {
        zs_destroy(pool);
        errno = ENOMEM;
        return NULL;
    }
    return pool;
}

ZS_EXPORT void zs_destroy(struct zs_pool *pool)
{
    if (!pool)
        return;
    for (size_t i = 0; i < pool->frontier.regions.n; i++)
        munmap(pool->frontier.regions.v[i], REGION_BYTES);
    free(pool->frontier.regions.v);
    pthread_mutex_destroy(&pool->frontier.lock);
    pthread_mutex_destroy(&pool->rsv.refill_lock);
    for (uint32_t k = 0; k <= ZS_MAX_PAGES_PER_ZSPAGE; k++) {
        struct arena *a = &pool->arenas[k];
        free(a->warm.v);
        free(a->cold.v);
        pthread_mutex_destroy(&a->lock);
    }
    for (uint32_t i = 0; i < NUM_SIZES; i++)
        pthread_mutex_destroy(&pool->classes[i].lock);
    vtable_fini(&pool->handles);
    vtable_fini(&pool->ids);
    vtable_fini(&pool->descs);
    pthread_mutex_destroy(&pool->id_lock);
    pthread_mutex_destroy(&pool->shrink_lock);
    free(pool);
}

/* ---- the reserve ----------------------------------------------------------- */

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
 * Grow r, outside its lock, until it has room for want more entries; the
 * new array is touched, so that pushes into it never fault.  For the
 * refill only.
 */
static int runs_grow_unlocked(struct zs_pool *pool, pthread_mutex_t *lock, struct runs *r,
                              size_t want)
{
    mutex_lock(lock);
    size_t n = r->n, cap = r->cap;
    mutex_unlock(lock);
    if (cap - n >= want)
        return 0;
    size_t ncap = cap ? cap : 64;
    while (ncap - n < want)
        ncap *= 2;
    char **nv = malloc(ncap * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    memset(nv, 0, ncap * sizeof(*nv));
    char **old = nv;
    mutex_lock(lock);
    if (r->cap - r->n < want && ncap > r->n) {
        if (r->n)
            memcpy(nv, r->v, r->n * sizeof(*nv));
        old = r->v;
        meta_add(pool, malloc_cost(nv) - malloc_cost(old));
        r->v = nv;
        r->cap = ncap;
    }
    mutex_unlock(lock);
    free(old);
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
    for (uint32_t k = 1; k <= ZS_MAX_PAGES_PER_ZSPAGE; k++) {
        struct arena *a = &pool->arenas[k];
        size_t bytes = (size_t)k * PAGE_SIZE;

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
    uint64_t released = 0;

    if (!pool->rsv.on)
        return 0;
    /* The frontier first: it is the larger part, and one call frees it. */
    uint64_t before = load(&pool->rsv.frontier);
    frontier_shrink(pool, bytes);
    released = before - load(&pool->rsv.frontier);
    for (uint32_t k = ZS_MAX_PAGES_PER_ZSPAGE; k >= 1 && released < bytes; k--) {
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

/* ---- statistics ------------------------------------------------------------ */

ZS_EXPORT uint64_t zs_mem_used(struct zs_pool *pool)
{
    return load(&pool->pages) * PAGE_SIZE + load(&pool->metadata);
}

ZS_EXPORT void zs_get_stats(struct zs_pool *pool, struct zs_pool_stats *ret)
{
    struct zs_pool_stats s = {0};

    for (uint32_t i = 0; i < NUM_SIZES; i++) {
        if (geometry[i].merged_into != i)
            continue;
        s.objects += load(&pool->classes[i].objects);
        s.bytes_stored += load(&pool->classes[i].bytes);
    }
    s.pages = load(&pool->pages);
    s.metadata_bytes = load(&pool->metadata);
    s.mem_used = s.pages * PAGE_SIZE + s.metadata_bytes;
    s.zspages = load(&pool->zspages);
    s.pages_compacted = load(&pool->pages_compacted);
    s.pages_evicted = load(&pool->pages_evicted);
    s.objects_evicted = load(&pool->objects_evicted);
    s.bad_handles = load(&pool->bad_handles);
    *ret = s;
}

ZS_EXPORT unsigned zs_class_count(void)
{
    return NUM_SIZES;
}

ZS_EXPORT int zs_get_class_stats(struct zs_pool *pool, unsigned idx, struct zs_class_stats *ret)
{
    if (idx >= NUM_SIZES)
        return -EINVAL;
    const struct class_geometry *g = &geometry[idx];
    struct zs_class_stats s = {
        .size = g->size,
        .pages_per_zspage = g->pages,
        .objs_per_zspage = g->objs,
        .merged_into = g->merged_into,
    };
    if (g->merged_into == idx) {
        struct size_class *c = &pool->classes[idx];
        LOCK_GUARD(&c->lock);
        s.zspages = c->zspages;
        s.pages = load(&c->pages_held);
        s.objects = load(&c->objects);
        s.bytes_stored = load(&c->bytes);
        s.pages_compacted = c->compacted;
        for (unsigned j = 0; j < ZS_FULLNESS_GROUPS; j++)
            s.fullness[j] = c->ngroup[j];
    }
    *ret = s;
    return 0;
}

ZS_EXPORT size_t zs_class_size(size_t size)
{
    if (size == 0 || size > ZS_MAX_ALLOC_SIZE)
        return 0;
    pthread_once(&geometry_once, geometry_init);
    return geometry[geometry[(size - 1) / CLASS_DELTA].merged_into].size;
}

ZS_EXPORT uint32_t zs_handle_index(uint64_t handle)
{
    /* handle_make() keeps index + 1 in the low half, so 0 is never a handle. */
    return (uint32_t)handle - 1;
}

ZS_EXPORT size_t zs_huge_class_size(void)
{
    pthread_once(&geometry_once, geometry_init);
    return huge_class_size;
}
