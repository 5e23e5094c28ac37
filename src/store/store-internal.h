/* SPDX-License-Identifier: MIT */
/*
 * The block store's own header: what its files share, and nothing a front
 * end may see (they include store.h).  The design, with the measurements
 * behind it and the alternatives rejected, is doc/store.md; each file keeps
 * the rules its code obeys.
 *
 * Locking, in one place:
 *   - A slot's lock word guards the slot's fields and the object or backing
 *     block its val names.  No path holds two slot locks at once.
 *   - The pool's locks are taken inside a slot lock, never the reverse;
 *     compaction needs no slot lock (handles name objects that move).
 *   - Each worker's lock guards its running/stop flags and the fields
 *     marked "under X.lock" below; no slot lock is ever taken under one.
 *   - Counters are atomic and relaxed (counter.h): exact, never ordered
 *     against anything else.
 *
 * Sections below follow the file that defines each item, bottom layer
 * first: a file calls only into the sections above its own (doc/store.md,
 * "Where each part lives").
 */
#ifndef UZRAM_STORE_INTERNAL_H
#define UZRAM_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "clock.h"
#include "counter.h"
#include "store.h"
#include "zspool.h"

#define PAGE STORE_PAGE_SIZE
#define PAGE_SHIFT 12

enum slot_state {
    SLOT_EMPTY = 0,
    SLOT_SAME,   /* val is the fill word */
    SLOT_OBJ,    /* val is the handle of a compressed object */
    SLOT_HUGE,   /* val is the handle of a raw page */
    SLOT_WB,     /* on the backing store: val is the block */
    SLOT_BUNDLE, /* in a bundle: val is its handle, size the page's position in it */
};

/* SLOT_WB's val: the block (the backing store keeps its seal). */
#define WB_BLOCK(val) (val)

/* struct slot's flags, guarded by the slot lock like the rest of it. */
enum slot_flags {
    SF_ACCESSED = 1u << 0, /* read or written since the clock last passed */
    SF_IDLE = 1u << 1,     /* marked by store_mark_idle(), untouched since */
    SF_RECOMP = 1u << 2,   /* the data is in the second codec's format */
    SF_WB_REF = 1u << 3,   /* written back, and read once since */
    SF_B_REF = 1u << 4,    /* bundled, and read once since */
    SF_B_PEND = 1u << 5,   /* read by a cold pass that has not installed its bundle yet */
};

/* One 4 KiB page of the device (doc/store.md, "The slot table"). */
struct slot {
    _Atomic uint32_t lock;  /* 0 free, 1 held, 2 held with waiters (slot.c) */
    uint16_t size;      /* object bytes (SLOT_OBJ, SLOT_WB); PAGE for raw pages */
    uint8_t state;      /* slot_state */
    uint8_t flags;      /* slot_flags */
    uint64_t val;       /* pool handle, fill word (SLOT_SAME) or block (SLOT_WB) */
};
_Static_assert(sizeof(struct slot) == 16, "a slot grew: update doc/store.md");

/* A slot's content, moved around outside the table. */
struct entry {
    uint8_t state;
    uint8_t flags;
    uint16_t size;
    uint64_t val;
};

/*
 * The head of a bundle's object (bundle.c); the compressed pages follow.
 * The live mask is changed only with the object mapped (zs_map()), so
 * that compaction cannot move it meanwhile.
 */
#define BUNDLE_LIVE_BUILDER_POS 31u /* the cold pass is still installing it */
#define BUNDLE_LIVE_BUILDER (1u << BUNDLE_LIVE_BUILDER_POS)
#define BUNDLE_LIVE_SPLIT_POS 30u /* a read is unpacking what is left of it */
#define BUNDLE_LIVE_SPLIT (1u << BUNDLE_LIVE_SPLIT_POS)
#define BUNDLE_LIVE_PAGES ((1u << STORE_BUNDLE_MAX) - 1)
struct bundle_hdr {
    _Atomic uint32_t live; /* bit k: position k is still some slot's */
    uint16_t npages;       /* pages compressed in the object */
    uint16_t unused;
    uint64_t sum; /* bundle_sum() of the npages pages */
};
_Static_assert(sizeof(struct bundle_hdr) == 16, "the bundle header grew");
_Static_assert(STORE_BUNDLE_MAX < BUNDLE_LIVE_SPLIT_POS, "a position collides with a flag");

/* Whether a slot in this state holds an object of the pool (its val a handle). */
static inline bool state_has_object(unsigned state)
{
    return state == SLOT_OBJ || state == SLOT_HUGE;
}

static inline bool slot_has_object(const struct slot *sl)
{
    return state_has_object(sl->state);
}

static inline bool entry_has_object(const struct entry *e)
{
    return state_has_object(e->state);
}

/* Whether slot sl's page is in memory, in an object of its own or in a bundle. */
static inline bool slot_in_pool(const struct slot *sl)
{
    return state_has_object(sl->state) || sl->state == SLOT_BUNDLE;
}

/* A thread's codec state and buffers (tctx.c); only its thread uses them. */
struct tctx {
    struct store *s;
    struct tctx *next;          /* on the free list; under store.tctx_lock */
    struct tctx *all_next;      /* every context, for store_free(); under store.tctx_lock */
    struct codec_ctx *codec;
    struct codec_ctx *codec2;   /* the recompression codec's, or NULL */
    struct codec_ctx *codec3;   /* the cold codec's decompressor (bundles), or NULL */
    unsigned char *braw;        /* a bundle's pages (bundle_pages * PAGE), or NULL */
    uint64_t braw_h, braw_sum;  /* whose they are: its handle (0: none) and checksum */
    unsigned braw_n;            /* and how many */
    unsigned char cbuf[PAGE];   /* compressed bytes */
    unsigned char page[PAGE];   /* a page being read-modify-written */
};

/* A background thread of the store, woken through cond, told to stop by stop. */
struct worker {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    bool running, stop;         /* under lock */
};

struct store {
    /* Set by store_new(), read-only after. */
    uint64_t size, nslots;
    uint64_t nwords, nsum;      /* words of occ and of its summary */
    struct zs_pool *pool;
    const struct codec_type *codec;
    int level;
    unsigned huge_threshold;
    const struct codec_type *codec2;    /* recompression's, or NULL */
    int level2;
    const struct codec_type *codec3; /* the cold codec (bundles), or NULL */
    int level3;
    unsigned bundle_pages;      /* pages per bundle at most (2..STORE_BUNDLE_MAX) */
    struct backing *backing;    /* or NULL */
    bool backing_raw;           /* write back decompressed pages */
    enum store_evict_policy policy;
    struct timespec t0;         /* access times count seconds from here */
    bool reserved;              /* cfg->reserve > 0: the I/O path never faults */
    void (*reserve_thread_init)(void);
    uint64_t low_free;          /* free memory under which the machine is short */

    /* The tables (slot.c); each an anonymous mapping of *_bytes. */
    struct slot *slots;         /* fields under each slot's lock */
    _Atomic uint64_t *occ;      /* bit per slot: holds something */
    _Atomic uint64_t *occ_summary;  /* bit per occ word: may be non-zero */
    _Atomic uint32_t *atime;    /* per slot: seconds since t0 of the last access */
    _Atomic uint64_t *rmap;     /* per handle index: the owning slot (zspage policy) */
    size_t slots_bytes, occ_bytes, occ_summary_bytes, atime_bytes, rmap_bytes;

    /* Settings, changed at any time (store.c). */
    _Atomic uint64_t mem_limit;         /* bytes; 0: none */
    _Atomic unsigned compact_pct;       /* 0: no automatic compaction */
    _Atomic unsigned high_pct, low_pct; /* eviction watermarks, % of mem_limit */

    /* Thread contexts (tctx.c). */
    pthread_key_t key;
    bool key_made;
    pthread_mutex_t tctx_lock;
    struct tctx *free_list, *all_list;  /* under tctx_lock */

    /* Compaction (alloc.c). */
    struct worker compactor;
    _Atomic uint64_t frees;             /* stored objects freed, ever */
    _Atomic uint64_t frees_at_compact;  /* frees when the last compaction began */

    /* Eviction (evict.c). */
    struct worker evictor;              /* its cond wakes it */
    pthread_cond_t evict_done;          /* a pass ended; with evictor.lock */
    bool evict_wanted;                  /* a pass is asked for; under evictor.lock */
    uint64_t evict_passes;              /* under evictor.lock */
    bool evict_progress;    /* the last pass freed memory or had none to free; under evictor.lock */
    _Atomic bool evict_kicked;          /* a pass is asked for; spares the lock */
    uint64_t clock_hand;                /* the clock's position; eviction thread only */

    /* The reserve (reserve.c). */
    struct worker refiller;
    bool refill_wanted;                 /* the allocator asked for a refill; under refiller.lock */
    uint64_t refills_done;              /* refills completed; under refiller.lock */
    pthread_cond_t refill_cond;         /* a refill completed; with refiller.lock */
    /* The refill under way has not grown the reserve for RESERVE_STALL_MS (the watchdog's). */
    _Atomic bool refill_stalled;
    _Atomic uint64_t refill_busy_since; /* ms (monotonic) a refill began; 0 when none runs */
    struct worker watchdog;

    /* The cold pass (bundle.c): one at a time; on its own every so often with cold_after. */
    pthread_mutex_t bundle_lock;
    _Atomic unsigned bundle_waiters; /* passes on request waiting for it: the thread's gives way */
    struct worker cold;
    _Atomic unsigned cold_after; /* seconds; 0: the thread waits to be given one */
    void (*cold_thread_init)(void);

    /* The writeback or recompression under way, or the last (store_progress()): atomic. */
    _Atomic uint64_t job_selected, job_done;

    /*
     * Statistics, atomic (counter.h): the COUNTER entries of STORE_STATS
     * (store.h, where each is described), and pages_stored, from which
     * orig_data_size is worked out.
     */
    _Atomic uint64_t pages_stored;      /* slots in memory: same-filled and objects */
#define STORE_COUNTER_COUNTER(name) _Atomic uint64_t name;
#define STORE_COUNTER_DERIVED(name)
#define STORE_COUNTER(type, name, source) STORE_COUNTER_##source(name)
    STORE_STATS(STORE_COUNTER)
#undef STORE_COUNTER
#undef STORE_COUNTER_DERIVED
#undef STORE_COUNTER_COUNTER
};

/* On every allocation (the limit, mem_used_max): two loads, not a stats walk. */
static inline uint64_t mem_used(struct store *s)
{
    return zs_mem_used(s->pool);
}

/* The memory limit in bytes, 0 for none: a setting, read relaxed. */
static inline uint64_t mem_limit(struct store *s)
{
    return atomic_load_explicit(&s->mem_limit, memory_order_relaxed);
}

/* A watermark in bytes: pct percent of limit (limit below 2^57, no overflow). */
static inline uint64_t watermark(uint64_t limit, _Atomic unsigned *pct)
{
    unsigned p = atomic_load_explicit(pct, memory_order_relaxed);
    return limit / 100 * p + limit % 100 * p / 100;
}

/* ---- slot.c: slot locks, the occupancy bitmap, entries ------------------------ */

bool slot_trylock(struct slot *sl);
void slot_lock(struct slot *sl);
void slot_unlock(struct slot *sl);
/* The first slot >= i that holds something (or that is empty), or nslots. */
uint64_t occ_next_set(struct store *s, uint64_t i);
uint64_t occ_next_clear(struct store *s, uint64_t i);
/*
 * Free the object or backing block an entry held, once it is out of the
 * table.  discard: tell the backing store too (a discard, not an overwrite).
 */
void entry_release(struct store *s, const struct entry *e, bool discard);
/*
 * Set or clear bits of bundle h's live mask (setting none reads it); the
 * mask as it was (0 if h is not live).  Any lock or none.
 */
uint32_t bundle_live_update(struct store *s, uint64_t h, uint32_t bits, bool set);
/* A slot left bundle h (its page at pos): the last to leave frees it.  Any lock or none. */
void bundle_drop(struct store *s, uint64_t h, unsigned pos);
/* Replace slot i's entry with *e and return the old one.  Slot i is locked. */
struct entry slot_swap(struct store *s, uint64_t i, const struct entry *e);
/* An access to slot i, locked: it is no longer idle, and the clock spares it. */
void slot_touch(struct store *s, uint64_t i);
/* Seconds since the store was made, for access times. */
uint32_t now_sec(struct store *s);
/*
 * Call fn on each slot that holds something, in order, each under its
 * lock, until fn returns non-zero: that value is returned (else 0).  fn
 * must not take another slot lock.
 */
typedef int slot_fn(struct store *s, uint64_t i, struct slot *sl, void *arg);
int slot_walk(struct store *s, slot_fn *fn, void *arg);

/* ---- tctx.c: per-thread contexts --------------------------------------------- */

/* Make n contexts ahead, on the free list.  0 or -ENOMEM. */
int tctx_prealloc(struct store *s, unsigned n);
/* The calling thread's context; made if none is free and may_make. NULL if none. */
struct tctx *tctx_of_thread(struct store *s, bool may_make);
/* A request's context: never made on the spot with a reserve. */
struct tctx *tctx_get(struct store *s);
/* The pthread key's destructor: a thread's context goes back to the store. */
void tctx_release(void *p);
void tctx_free_all(struct store *s);

/* ---- worker.c: the store's background threads --------------------------------- */

void worker_init(struct worker *w, const pthread_condattr_t *ca);
/* Start w's thread, running fn(arg), unless it runs.  0 or a negative errno. */
int worker_start(struct worker *w, void *(*fn)(void *), void *arg);
/*
 * Tell w's thread to stop, waking it (and the waiters on waiters_cond, if
 * not NULL, who must look at w->stop), and join it.
 */
void worker_stop(struct worker *w, pthread_cond_t *waiters_cond);
void worker_destroy(struct worker *w);
/*
 * In w's thread, w->lock held: sleep until woken or period_ms pass (not at
 * all if *wanted, when wanted is not NULL).  False when told to stop.
 */
bool worker_sleep(struct worker *w, const bool *wanted, long period_ms);
/*
 * In w's thread, w->lock held: sleep period_ms whatever wakes the thread,
 * unless it is told to stop or *wanted becomes set (wanted may be NULL).
 */
void worker_pause(struct worker *w, const bool *wanted, long period_ms);

/* ---- page.c: same-filled pages, decompression ---------------------------------- */

/* Whether a page is one 8-byte word repeated; if so, the word. */
bool page_same(const void *page, uint64_t *ret_word);
/* Decompress n bytes at src into dst (PAGE bytes) with the codec flags name. */
int slot_decompress(struct tctx *t, unsigned flags, const void *src, size_t n, void *dst);
/*
 * The page of slot sl, locked and holding an object (SLOT_OBJ, SLOT_HUGE),
 * into dst (PAGE bytes), through t->cbuf.  0 or -EIO.
 */
int slot_obj_read(struct store *s, struct tctx *t, const struct slot *sl, void *dst);

/* ---- compact.c: automatic compaction ------------------------------------------- */

int64_t compact_now(struct store *s);
/* Whether objects were freed since the last compaction began: only then can one help. */
bool compact_useful(struct store *s);
/* Wake the compaction thread early (after objects were freed). */
void compactor_wake(struct store *s);
void *compactor_main(void *arg);
/* The background cold pass's thread (bundle.c), with cold_after. */
void *cold_main(void *arg);

/* ---- reserve.c: the reserve, its refill thread and its watchdog -------------- */

/* zs_ops callbacks. */
void reserve_low(struct zs_pool *pool, void *arg);
int handles_grow(struct zs_pool *pool, uint64_t handles, void *arg);
/* Populate the tables and fill the reserve once.  0 or a negative errno. */
int reserve_setup(struct store *s, uint64_t bytes);
int reserve_start(struct store *s);
/*
 * A write found the reserve empty: true if the refill grew it meanwhile
 * (*deadline_ms: 0 at the write's first call, the wait's end after).
 */
bool reserve_wait(struct store *s, uint64_t *deadline_ms);

/* ---- writeback.c: writing slots back, idle marking ------------------------------ */

/*
 * Write slot i's object (slot locked, holding an object) to a new backing
 * block and point the slot there.  0, or the backing store's error with
 * the slot untouched.
 */
int slot_writeback_locked(struct store *s, struct tctx *t, uint64_t i);
/* Whether slot sl (locked) is one that sel selects. */
bool slot_selected(const struct slot *sl, unsigned sel);
/* Whether sel is a selection made only of allowed bits. */
bool sel_valid(unsigned sel, unsigned allowed);
/*
 * A job (writeback, recompression) begins: count the slots pick() takes
 * (each under its lock), at most limit of them (0: no limit), as the
 * figure store_progress() shows; done back to 0.
 */
void job_begin(struct store *s, bool (*pick)(const struct slot *sl, const void *arg),
               const void *arg, uint64_t limit);

/* ---- evict.c: the eviction thread and its two policies ----------------------- */

/* zs_ops.evict, for the zspage policy. */
int evict_handle(struct zs_pool *pool, uint64_t h, void *arg);
void *evictor_main(void *arg);
/* Wake the eviction thread for a pass.  Cheap to call on every allocation. */
void evict_kick(struct store *s);
/*
 * Ask for a pass and wait until one ends or *deadline passes.  True when a
 * pass freed memory or found none to free; false when eviction is stuck
 * or the time is up.
 */
bool evict_wait(struct store *s, const struct timespec *deadline);

/* ---- alloc.c: allocation under the limit ---------------------------------------- */

void mem_used_max_update(struct store *s, uint64_t used);
/*
 * An object of n bytes within mem_limit.  0 and the handle, -ENOSPC or
 * -ENOMEM.  With wait and a backing store, a pool at its limit waits for
 * eviction (STORE_EVICT_WAIT_MS at most).  May hold a slot lock.
 */
int obj_alloc(struct store *s, size_t n, uint64_t *ret_h, bool wait);
/*
 * A page compressed with t's codec into t->cbuf, if that takes it below the
 * huge threshold: *ret_src is t->cbuf and *ret_n its size; else the page
 * itself, PAGE bytes.  0, or -EIO when the codec fails otherwise.
 */
int page_compress(struct store *s, struct tctx *t, const void *page, const void **ret_src,
                  size_t *ret_n);
/*
 * A page as an entry: same-filled, or compressed with t's codec (into
 * t->cbuf) and stored in a new object, raw when it does not compress below
 * the huge threshold.  No slot lock needed.  0, -ENOSPC, -ENOMEM, -EIO.
 */
int entry_make(struct store *s, struct tctx *t, const void *page, struct entry *ret, bool wait);

/* ---- bundle.c: the cold tier's bundles ------------------------------------------ */

/*
 * Slot i's bundled page into dst, slot locked by the caller throughout
 * (read-modify-write).  0 or -EIO.
 */
int bundle_read_locked(struct store *s, struct tctx *t, uint64_t i, void *dst);
/*
 * The memory slot sl's page (locked, SLOT_BUNDLE) takes in its bundle: the
 * bundle's class size over its pages, at least 1 byte; 0 if it will not map.
 */
size_t bundle_share(struct store *s, const struct slot *sl);
/*
 * Slot i's bundled page into dst for a read: the slot is locked on entry
 * and unlocked on return (the bundle is decompressed outside the lock,
 * pinned).  A page read for the second time since it was bundled is
 * unpacked to an object of its own.  0 or -EIO.
 */
int bundle_read(struct store *s, struct tctx *t, uint64_t i, void *dst);

/* ---- promote.c: reading written-back pages, promotion ---------------------------- */

/* Slot i's written-back page into dst, slot locked.  0 or -EIO. */
int wb_read_locked(struct store *s, struct tctx *t, uint64_t i, void *dst);
/* After a read of written-back slot i (locked): maybe bring it back. */
void wb_maybe_promote(struct store *s, struct tctx *t, uint64_t i, const void *page);

#endif
