/* SPDX-License-Identifier: MIT */
/*
 * The block store: a device of 4 KiB slots over a libzspool pool.
 *
 * The slot table.  The device is an array of 16-byte slots, one per 4 KiB
 * page, as in the kernel's zram: a 32-bit lock word, a state (empty,
 * same-filled, compressed object, raw "huge" object), the object's size,
 * and one 64-bit word that is either the pool handle or the fill word of a
 * same-filled page.  16 bytes per page is 0.4% of the data it describes, and
 * four slots share a cache line, so a sequential stream touches little.
 * The table is one anonymous MAP_NORESERVE mapping: all-zero is "empty and
 * unlocked", so a 1 TiB device whose user writes a few GiB costs only the
 * table pages those writes touch (4 MiB per GiB written), not 4 GiB up
 * front.
 *
 * Beside it, an occupancy bitmap (one bit per slot, set when the slot holds
 * anything) and a summary over it (one bit per 64-bit bitmap word) answer
 * SEEK_DATA and SEEK_HOLE without visiting slots: on an empty 1 TiB device
 * SEEK_DATA reads the 512 KiB summary, not 4 GiB of slots.  A summary bit
 * is a hint that may be set over an empty word (never clear over a
 * non-empty one): the scan rechecks the word, and clearing rechecks after
 * it clears (occ_clear()).
 *
 * Locking.  Each slot's lock word is a small futex mutex (0 free, 1 held,
 * 2 held with waiters), so there is a lock per page without a
 * pthread_mutex_t's 40 bytes per page, and it costs one compare-and-swap
 * when uncontended.  The slot lock guards the slot's fields and the
 * object its handle names: nobody frees an object while holding nothing,
 * and a reader copies an object out of the pool (zs_read) only under the
 * lock, so it can never see an object that a concurrent writer freed.
 *   Full-page write: compress outside any lock into the thread's bounce
 *   buffer, allocate and fill the new object, then lock the slot only to
 *   swap the entry, unlock, and free the old object.  The lock is held for
 *   a few dozen instructions.
 *   Read: lock, copy the compressed bytes (zs_read, ~1-2 KiB) into the
 *   thread's buffer, unlock, decompress.  Raw and same-filled pages are
 *   copied or filled straight into the caller's buffer.
 *   Partial-page write (and the edges of a discard): the slot stays locked
 *   across read, modify, compress and swap.  The alternative, an optimistic
 *   version check with retry, would let two partial writers of one page
 *   starve each other while each redoes a compression; a page lock taken
 *   only by requests that overlap the same 4 KiB is the simpler contract, and
 *   since the lock is per page it is never shared with other pages' I/O.
 * No path takes two slot locks at once, and the pool's own locks are always
 * taken inside a slot lock, never the reverse, so there is no lock order to
 * get wrong.  Compaction (zs_compact) moves objects under the pool's pins
 * and needs no slot lock: the handle keeps naming the moved object.
 *
 * Per-thread state.  Each thread gets a codec context and two 4 KiB buffers
 * (compressed bytes; a page being read-modify-written) through a pthread
 * key, so no codec state is ever shared.  cfg->prealloc_threads of them are
 * made by store_new() and kept on a free list that new threads take from
 * first, and a thread's are put back there when it exits (the key's
 * destructor), so a daemon that serves swap made its contexts before memory
 * got short.  Each is used once when made (a page compressed and
 * decompressed with each codec), so that its memory and the codecs' code
 * are in before a request needs them.
 *
 * The reserve.  Swap on a block device served from user space can deadlock
 * the machine: when memory is short, the kernel's reclaim writes pages out
 * to the device and waits for those writes, and if the daemon needs a new
 * page of memory to store one (a page fault on memory it has not touched
 * before) the fault can only be satisfied by reclaim.  A daemon marked
 * PR_SET_IO_FLUSHER at least does not recurse into I/O, but then the page
 * allocator retries for ever rather than call the OOM killer, and the
 * machine hangs (Linux's out_of_memory() does nothing for allocations that
 * may not do file system I/O).  The kernel's zram never waits there: it
 * allocates with flags that let the allocation fail, and fails the write.
 * With cfg->reserve, the store does the same.  Everything a request touches
 * is resident before the request comes: the slot table, the bitmaps and
 * the access times are populated when the store is made (4 MiB per GiB of
 * device for the table, as zram allocates its table up front), the
 * thread contexts when made, and the allocator is put in reserve mode
 * (libzspool's zs_reserve_set(): new zspages from memory populated in
 * advance, the allocation failing at once when there is none).  A thread of
 * the store's refills the reserve, woken by the allocator when it falls
 * under half (or a second has passed); it may wait for memory, and that
 * only delays the refill.  A write that finds the reserve empty fails with
 * -ENOSPC, as zram fails it; nothing stored is touched.  A kernel that
 * swaps keeps the page in memory and tries another swap slot or device,
 * and the program whose allocation is short meets the OOM killer rather
 * than a hang.
 *   An empty reserve does not always mean that memory is short: a burst of
 * writes on busy cores can empty it before the refill thread gets to run,
 * and failing a file system's write then would be a false alarm.  So the
 * first write to find it empty wakes the refill and waits for it, at most
 * RESERVE_WAIT_MS; if a refill completes in that time the write goes on.
 * If none does, memory is taken to be short: the refill is marked stalled
 * and from then on writes that find the reserve empty fail at once, until
 * a refill completes again.  No write ever waits longer than that one
 * bound, and only while a refill is under way.
 *   Memory that short can stop the I/O path outside the store, too: the
 * reply to a request is a socket buffer the kernel allocates in the
 * daemon's name, and with nothing left to reclaim without I/O that
 * allocation waits like any other (the VM suite saw exactly this: the
 * NBD connection thread retrying for an skb while every swap write waited
 * on it).  Only memory given back can end that, and the reserve is memory
 * that can be given back without allocating anything.  So a watchdog
 * thread looks at the refill every RESERVE_WATCH_MS: when a refill under
 * way has not grown the reserve for RESERVE_STALL_MS, memory is short, the
 * refill is marked stalled (writes fail at once, as above) and a quarter
 * of the reserve's target goes back to the kernel, once per
 * RESERVE_STALL_MS while it lasts.  The pages go to whoever is waiting for
 * one: in that state the daemon's replies, since the swapping program and
 * kswapd wait for those replies rather than for pages.  The refill may be
 * done, and the reserve full, while a reply waits like that: so the
 * watchdog also counts as a stall a machine short of free memory (under
 * cfg->low_free, by sysinfo()) on which no request has reached the store
 * for RESERVE_STALL_MS.  An idle device on a machine short of memory
 * passes for one too, and gives its reserve back: it was not using it.
 * The same signs tell the backing store to go around the page cache
 * (backing_set_pressure()), which would need memory too.
 * When memory comes back, the refill completes.  (A refill that left the
 * machine a floor of free memory was tried, and measured worse: the
 * reserve then ran dry as soon as the pressure began, and every write
 * failed.)
 *
 * The memory limit.  Before allocating, a write checks that what the pool
 * holds plus the new object stays within mem_limit, and after allocating
 * it checks again (the object may have opened a new zspage, and other
 * threads allocate too); if either check fails it frees what it took, runs
 * one compaction (only if objects were freed since the last one: otherwise
 * nothing can move) and tries once more, then fails with -ENOSPC with the
 * slot untouched.  Same-filled pages need no memory and always succeed.
 * The limit is thus never passed by more than the objects being allocated
 * at the same instant by other threads, each at most one zspage.
 *
 * Automatic compaction.  A background thread wakes every second, or sooner
 * when a discard frees objects (but never sooner than a second after its
 * last compaction), and compacts when the pool's waste (mem_used minus
 * compressed bytes: partly filled zspages, class rounding, metadata) is
 * above compact_threshold_pct of mem_used and at least 64 KiB, and objects
 * were freed since the last compaction: what compaction cannot improve
 * (rounding, metadata) would otherwise make it run every second for
 * nothing.
 *
 * Writeback.  With a backing store (src/backing/), a slot may hold, instead
 * of an object, the number of the 4 KiB block its page was written to
 * (SLOT_WB); the slot's size says how many bytes: 4096 for a raw page, less
 * for the compressed object as it was in the pool.  Block numbers fit in 40
 * bits (a device has at most 2^40 slots), and the 24 above them hold a
 * checksum of the bytes written: a backing server that restarted empty, or
 * a backing file that someone overwrote, then makes the read fail with
 * -EIO instead of handing back zeros or another page as this one.  Compressed is the
 * default: it writes and reads a third of the bytes for typical data and
 * needs no decompression to write back, where raw spares the decompression
 * on each read (tools/bench/uzramd-writeback-compare measures both).  A
 * written-back slot is read under its lock (so its block cannot be freed
 * and reused under the read); it is overwritten in memory like any other
 * slot and its block freed, and a discard also punches the block out of
 * the backing store.  Pages are written back with the slot locked across
 * the backing write: the slot's content cannot change between the copy and
 * the swap, at the cost of one backing write of waiting for a request that
 * wants that very page.
 *
 * What goes first.  Every read or write of an object sets the slot's
 * ACCESSED flag and its access time (seconds, in a separate array that only
 * idle marking reads).  Eviction, when mem_used_total passes the high
 * watermark, runs in its own thread until the pool is under the low one,
 * by one of two policies:
 *   lru     a clock over the slots: a slot with ACCESSED set loses it and is
 *           passed by, one without is written back.  Freed objects leave
 *           holes in zspages, so each batch is followed by a compaction.
 *   zspage  zs_shrink(): the pool hands over, object by object, the zspage
 *           least recently allocated into, and its pages are free when the
 *           callback has written back every object in it: no compaction,
 *           but the order is by allocation, not by use.  A reverse map from
 *           handle index to slot finds the slot of each object.  A slot that
 *           is locked (its writer may be the one waiting for this eviction)
 *           cannot be taken, which stops zs_shrink(); the pass then goes on
 *           with the clock.
 * A written-back page that is read a second time is brought back into
 * memory, but only into room under the high watermark: nothing is evicted
 * to make room for it.  One read of a cold page (a backup, a scan) should
 * not displace anything; a second says it is warm, and room comes back
 * whenever the pool is brought down to the low watermark.  Measured
 * (tools/bench/evict-bench, uzramd-writeback-compare): without promotion,
 * zipf reads over a device three quarters written back were served from
 * memory 48% of the time (29% with an NBD backing store, at a tenth of
 * the read rate); with this rule 93% (95%).  Promoting up to the limit
 * instead, evicting others to make room, got 96% but wrote back a page
 * for nearly every one it brought in: through FUSE it kept 89% of the
 * uniform random reads and 54% of the sequential ones of uzramd without a
 * limit in the same run, where this rule keeps 94% and 81%.  Without a
 * memory limit nothing is promoted (writeback was then asked for by hand,
 * and zram too leaves such pages where they are).
 *
 * A write that finds the pool at its limit, with a backing store, asks the
 * eviction thread for a pass and waits for it (at most STORE_EVICT_WAIT_MS
 * in all), and retries while passes free memory.  A pass that frees
 * nothing (the backing store is full, failing or away) makes the write
 * fail with -ENOSPC at once: memory is then truly full.  A failed backing
 * write leaves the slot as it was; a failed backing read fails the request
 * that wanted that page with -EIO, and nothing else.
 *
 * Idle marking and recompression are zram's: store_mark_idle() flags slots
 * not accessed for a while, an access clears the flag, and
 * store_writeback() or store_recompress() take the flagged (or the huge)
 * slots.  Recompression keeps its result only when it lands in a smaller
 * size class of the pool, and flags the slot (RECOMP) so that reads pick
 * the second codec.
 */
#include "store.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "backing.h"
#include "cleanup.h"
#include "populate.h"
#include "zspool.h"

#define PAGE STORE_PAGE_SIZE
#define PAGE_SHIFT 12
/* Waste below this is not worth a compaction pass: 16 pages. */
#define COMPACT_MIN_WASTE (16u * PAGE)
#define COMPACT_PERIOD_SEC 1
/* Spins before sleeping on a slot lock: covers one short swap or zs_read. */
#define SLOT_SPINS 64
/* The eviction thread looks at the pool this often when nobody wakes it. */
#define EVICT_PERIOD_MS 200

enum slot_state {
    SLOT_EMPTY = 0,
    SLOT_SAME,
    SLOT_OBJ,
    SLOT_HUGE,
    SLOT_WB,            /* on the backing store: val is the block and a checksum */
};

/* SLOT_WB's val: the block in the low 40 bits, a 24-bit checksum above. */
#define WB_BLOCK_BITS 40
#define WB_BLOCK(val) ((val) & ((UINT64_C(1) << WB_BLOCK_BITS) - 1))
#define WB_SUM(val) ((uint32_t)((val) >> WB_BLOCK_BITS))

/* struct slot's flags, guarded by the slot lock like the rest of it. */
enum slot_flags {
    SF_ACCESSED = 1u << 0,  /* read or written since the clock last passed */
    SF_IDLE     = 1u << 1,  /* marked by store_mark_idle(), untouched since */
    SF_RECOMP   = 1u << 2,  /* the data is in the second codec's format */
    SF_WB_REF   = 1u << 3,  /* written back, and read once since */
};

struct slot {
    _Atomic uint32_t lock;
    uint16_t size;      /* object bytes (SLOT_OBJ, SLOT_WB); PAGE for raw pages */
    uint8_t state;
    uint8_t flags;      /* slot_flags */
    uint64_t val;       /* pool handle, fill word (SLOT_SAME) or block (SLOT_WB) */
};
_Static_assert(sizeof(struct slot) == 16, "a slot grew: update the essay");

/* A slot's content, moved around outside the table. */
struct entry {
    uint8_t state;
    uint8_t flags;
    uint16_t size;
    uint64_t val;
};

struct tctx {
    struct store *s;
    struct tctx *next;          /* on the free list */
    struct tctx *all_next;      /* every context, for store_free() */
    struct codec_ctx *codec;
    struct codec_ctx *codec2;   /* the recompression codec's, or NULL */
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
    uint64_t size, nslots, nwords, nsum;
    struct slot *slots;
    _Atomic uint64_t *occ;      /* bit per slot: holds something */
    _Atomic uint64_t *sum;      /* bit per occ word: may be non-zero */
    size_t slots_bytes, occ_bytes, sum_bytes;

    struct zs_pool *pool;
    const struct codec_type *codec;
    int level;
    unsigned huge_threshold;
    const struct codec_type *codec2;
    int level2;

    struct backing *backing;
    bool backing_raw;
    enum store_evict_policy policy;
    _Atomic uint32_t *atime;    /* per slot: seconds since t0 of the last access */
    _Atomic uint64_t *rmap;     /* per handle index: the owning slot (zspage policy) */
    size_t atime_bytes, rmap_bytes;
    struct timespec t0;
    _Atomic unsigned high_pct, low_pct;
    uint64_t hand;              /* the clock's position; eviction thread only */

    struct worker ev;           /* the eviction thread; its cond wakes it */
    pthread_cond_t ev_done;     /* a pass ended */
    bool ev_want;               /* a pass is asked for; under ev.lock */
    uint64_t ev_passes;         /* under ev.lock */
    bool ev_progress;           /* the last pass freed memory or had none to free; under ev.lock */
    _Atomic bool ev_kicked;

    pthread_key_t key;
    bool key_made;
    pthread_mutex_t tctx_lock;
    struct tctx *free_list, *all_list;

    _Atomic uint64_t mem_limit;
    _Atomic unsigned compact_pct;
    _Atomic uint64_t frees;             /* stored objects freed, ever */
    _Atomic uint64_t frees_at_compact;  /* frees when the last compaction began */

    struct worker bg;                   /* the compaction thread */
    struct worker rf;                   /* the reserve's refill thread */
    bool rf_want;                       /* the allocator asked for a refill; under rf.lock */
    uint64_t rf_done;                   /* refills completed; under rf.lock */
    pthread_cond_t rf_cond;             /* a refill completed; with rf.lock */
    _Atomic bool rf_stalled;            /* a write waited RESERVE_WAIT_MS for none */
    _Atomic uint64_t reserve_waits;     /* writes that waited for a refill and went on */
    _Atomic uint64_t reserve_misses;    /* writes failed for an empty reserve */
    _Atomic uint64_t rf_busy_since;     /* ms (monotonic) a refill began; 0 when none runs */
    struct worker rw;                   /* the reserve's watchdog */
    _Atomic uint64_t reserve_released;  /* bytes the watchdog gave back to the kernel */
    bool reserved;                      /* cfg->reserve > 0: the I/O path never faults */
    void (*reserve_thread_init)(void);
    uint64_t low_free;                  /* free memory under which the machine is short */
    _Atomic uint64_t reserve_failures;  /* refills that could not get the memory */

    _Atomic uint64_t pages_stored, compr_data_size, same_pages, huge_pages,
        huge_pages_since, mem_used_max, failed_reads, failed_writes,
        invalid_io, notify_free, read_reqs, write_reqs, discard_reqs,
        flush_reqs, read_bytes, write_bytes, discard_bytes, compactions,
        bd_count, bd_reads, bd_writes, evictions, pages_promoted, write_waits,
        idle_pages, recompressed, bd_bad_sums;
};

/* ---- small helpers ---------------------------------------------------------- */

static void add(_Atomic uint64_t *v, uint64_t n)
{
    atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

static void sub(_Atomic uint64_t *v, uint64_t n)
{
    atomic_fetch_sub_explicit(v, n, memory_order_relaxed);
}

static uint64_t get(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* Milliseconds on CLOCK_MONOTONIC. */
static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ms milliseconds from now on CLOCK_MONOTONIC, the clock of the store's condvars. */
static struct timespec deadline_in_ms(long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += ms % 1000 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* On every allocation (the limit, mem_used_max): two loads, not a stats walk. */
static uint64_t mem_used(struct store *s)
{
    return zs_mem_used(s->pool);
}

static void mem_used_max_update(struct store *s, uint64_t used)
{
    uint64_t cur = get(&s->mem_used_max);
    while (used > cur &&
           !atomic_compare_exchange_weak_explicit(&s->mem_used_max, &cur, used,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

/* -EINVAL (counted) unless [off, off + len) lies within the device. */
static int check_range(struct store *s, uint64_t len, uint64_t off)
{
    if (len > s->size || off > s->size - len) {
        add(&s->invalid_io, 1);
        return -EINVAL;
    }
    return 0;
}

static bool page_same(const void *page, uint64_t *ret_word)
{
    const unsigned char *p = page;
    uint64_t w;
    memcpy(&w, p, 8);
    for (size_t i = 8; i < PAGE; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        if (v != w)
            return false;
    }
    *ret_word = w;
    return true;
}

static void page_fill(void *page, uint64_t w)
{
    if (w == 0) {
        memset(page, 0, PAGE);
        return;
    }
    unsigned char *p = page;
    for (size_t i = 0; i < PAGE; i += 8)
        memcpy(p + i, &w, 8);
}

/* ---- slot locks --------------------------------------------------------------- */

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
static bool slot_trylock(struct slot *sl)
{
    uint32_t c = 0;
    return atomic_compare_exchange_strong_explicit(&sl->lock, &c, 1, memory_order_acquire,
                                                   memory_order_relaxed);
}

static void slot_lock(struct slot *sl)
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

static void slot_unlock(struct slot *sl)
{
    if (atomic_exchange_explicit(&sl->lock, 0, memory_order_release) == 2)
        futex_wake(&sl->lock);
}

/* ---- occupancy bitmap ----------------------------------------------------------- */

static void occ_set(struct store *s, uint64_t i)
{
    uint64_t w = i >> 6;
    uint64_t old = atomic_fetch_or(&s->occ[w], UINT64_C(1) << (i & 63));
    if (old == 0)
        atomic_fetch_or(&s->sum[w >> 6], UINT64_C(1) << (w & 63));
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
    atomic_fetch_and(&s->sum[w >> 6], ~sbit);
    if (atomic_load(&s->occ[w]) != 0)
        atomic_fetch_or(&s->sum[w >> 6], sbit);
}

/* The first slot >= i that holds something, or nslots. */
static uint64_t occ_next_set(struct store *s, uint64_t i)
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
        uint64_t sb = atomic_load_explicit(&s->sum[sw], memory_order_relaxed) &
                      (~UINT64_C(0) << (w & 63));
        while (!sb) {
            if (++sw >= s->nsum)
                return s->nslots;
            sb = atomic_load_explicit(&s->sum[sw], memory_order_relaxed);
        }
        w = (sw << 6) + (uint64_t)__builtin_ctzll(sb);
        if (w >= s->nwords)
            return s->nslots;
        bits = atomic_load_explicit(&s->occ[w], memory_order_relaxed);
    }
}

/* The first empty slot >= i, or nslots. */
static uint64_t occ_next_clear(struct store *s, uint64_t i)
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

/* ---- per-thread contexts ---------------------------------------------------------- */

/*
 * Use a codec once on a page that compresses (half of it a repeated
 * pattern), so that its state is written and its code run before a request
 * needs them.  A codec that fails here fails later too: -EIO.
 */
static int codec_warm(struct codec_ctx *c, unsigned char *page, unsigned char *cbuf)
{
    for (size_t i = 0; i < PAGE; i++)
        page[i] = (unsigned char)(i < PAGE / 2 ? i * 131 >> 3 : 0x5a);
    ssize_t n = codec_compress(c, page, PAGE, cbuf, PAGE - 1);
    if (n <= 0 || codec_decompress(c, cbuf, (size_t)n, page, PAGE) != PAGE)
        return -EIO;
    return 0;
}

static struct tctx *tctx_new(struct store *s)
{
    struct tctx *t;
    /* Cache-line aligned: the buffers of two threads never share a line. */
    if (posix_memalign((void **)&t, 64, sizeof(*t)) != 0)
        return NULL;
    /* All of it, the buffers too: their pages are in from now on. */
    memset(t, 0, sizeof(*t));
    t->s = s;
    t->codec = codec_ctx_new(s->codec, s->level, PAGE);
    if (s->codec2)
        t->codec2 = codec_ctx_new(s->codec2, s->level2, PAGE);
    if (!t->codec || (s->codec2 && !t->codec2) || codec_warm(t->codec, t->page, t->cbuf) < 0 ||
        (t->codec2 && codec_warm(t->codec2, t->page, t->cbuf) < 0)) {
        codec_ctx_free(t->codec);
        codec_ctx_free(t->codec2);
        free(t);
        return NULL;
    }
    return t;
}

static void tctx_put(struct tctx *t)
{
    struct store *s = t->s;
    LOCK_GUARD(&s->tctx_lock);
    t->next = s->free_list;
    s->free_list = t;
}

/* The key's destructor: a thread exits, its context goes back to the store. */
static void tctx_release(void *p)
{
    tctx_put(p);
}

/*
 * The calling thread's context, taken from the free list on first use, or
 * made if make allows (requests with a reserve do not: making one needs
 * memory).  NULL when there is none.
 */
static struct tctx *tctx_get_(struct store *s, bool make)
{
    struct tctx *t = pthread_getspecific(s->key);
    if (t)
        return t;
    mutex_lock(&s->tctx_lock);
    t = s->free_list;
    if (t)
        s->free_list = t->next;
    mutex_unlock(&s->tctx_lock);
    if (!t) {
        if (!make)
            return NULL;
        t = tctx_new(s);
        if (!t)
            return NULL;
        mutex_lock(&s->tctx_lock);
        t->all_next = s->all_list;
        s->all_list = t;
        mutex_unlock(&s->tctx_lock);
    }
    if (pthread_setspecific(s->key, t) != 0) {
        tctx_put(t);
        return NULL;
    }
    return t;
}

/* A request's context: never made on the spot with a reserve. */
static struct tctx *tctx_get(struct store *s)
{
    return tctx_get_(s, !s->reserved);
}

/* ---- entries ----------------------------------------------------------------------- */

static bool entry_has_object(const struct entry *e)
{
    return e->state == SLOT_OBJ || e->state == SLOT_HUGE;
}

/*
 * Free the object or backing block an entry held, once it is out of the
 * table.  discard: tell the backing store too (a discard, not an overwrite).
 */
static void entry_release(struct store *s, const struct entry *e, bool discard)
{
    if (entry_has_object(e)) {
        zs_free(s->pool, e->val);
        add(&s->frees, 1);
    } else if (e->state == SLOT_WB) {
        backing_free(s->backing, WB_BLOCK(e->val), discard);
    }
}

/* Stats for an entry entering (+) or leaving (-) the table. */
static void entry_account(struct store *s, const struct entry *e, bool in)
{
    void (*op)(_Atomic uint64_t *, uint64_t) = in ? add : sub;
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
            add(&s->huge_pages_since, 1);
        op(&s->compr_data_size, PAGE);
        break;
    case SLOT_OBJ:
        op(&s->compr_data_size, e->size);
        if (e->flags & SF_RECOMP)
            op(&s->recompressed, 1);
        break;
    }
}

/* Seconds since the store was made, for access times. */
static uint32_t now_sec(struct store *s)
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
static void slot_touch(struct store *s, uint64_t i)
{
    struct slot *sl = &s->slots[i];
    if (sl->flags & SF_IDLE)
        sub(&s->idle_pages, 1);
    sl->flags = (uint8_t)((sl->flags & ~SF_IDLE) | SF_ACCESSED);
    atime_touch(s, i);
}

/* Replace slot i's entry with *e and return the old one.  Slot i is locked. */
static struct entry slot_swap(struct store *s, uint64_t i, const struct entry *e)
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

/* ---- compaction ----------------------------------------------------------------- */

static int64_t compact_now(struct store *s)
{
    uint64_t f = get(&s->frees);
    int64_t r = zs_compact(s->pool);
    atomic_store_explicit(&s->frees_at_compact, f, memory_order_relaxed);
    add(&s->compactions, 1);
    return r;
}

/* Objects freed since the last compaction began: only then can one help. */
static bool compact_useful(struct store *s)
{
    return get(&s->frees) != get(&s->frees_at_compact);
}

static void bg_wake(struct store *s)
{
    /* Without bg_lock: a lost wakeup costs at most one period. */
    pthread_cond_signal(&s->bg.cond);
}

/* Compact if the waste is worth it (see the essay).  True if it ran. */
static bool bg_maybe_compact(struct store *s)
{
    unsigned pct = atomic_load_explicit(&s->compact_pct, memory_order_relaxed);
    if (pct == 0 || !compact_useful(s))
        return false;
    uint64_t used = mem_used(s);
    uint64_t data = get(&s->compr_data_size);
    if (used <= data)
        return false;
    uint64_t waste = used - data;
    /* waste * 100 cannot overflow: used is far below 2^57. */
    if (waste < COMPACT_MIN_WASTE || waste * 100 <= (uint64_t)pct * used)
        return false;
    compact_now(s);
    return true;
}


/*
 * The compaction thread.  A discard wakes it early, but after a compaction
 * it sleeps a whole period whatever happens: an fstrim sends thousands of
 * discards, and one compaction after them does what one per discard would.
 */
static void *bg_main(void *arg)
{
    struct store *s = arg;
    mutex_lock(&s->bg.lock);
    while (!s->bg.stop) {
        struct timespec ts = deadline_in_ms(COMPACT_PERIOD_SEC * 1000);
        pthread_cond_timedwait(&s->bg.cond, &s->bg.lock, &ts);
        if (s->bg.stop)
            break;
        mutex_unlock(&s->bg.lock);
        bool ran = bg_maybe_compact(s);
        mutex_lock(&s->bg.lock);
        if (!ran)
            continue;
        ts = deadline_in_ms(COMPACT_PERIOD_SEC * 1000);
        while (!s->bg.stop && pthread_cond_timedwait(&s->bg.cond, &s->bg.lock, &ts) != ETIMEDOUT)
            ;
    }
    mutex_unlock(&s->bg.lock);
    return NULL;
}

/* Start w's thread, running fn(arg), unless it runs.  0 or a negative errno. */
static int worker_start(struct worker *w, void *(*fn)(void *), void *arg)
{
    LOCK_GUARD(&w->lock);
    if (w->running)
        return 0;
    w->stop = false;
    int r = pthread_create(&w->thread, NULL, fn, arg);
    if (r != 0)
        return -r;
    w->running = true;
    return 0;
}

/*
 * Tell w's thread to stop, waking it (and the waiters on also, when not
 * NULL, who must look at w->stop), and join it.
 */
static void worker_stop(struct worker *w, pthread_cond_t *also)
{
    mutex_lock(&w->lock);
    bool running = w->running;
    w->stop = true;
    pthread_cond_broadcast(&w->cond);
    if (also)
        pthread_cond_broadcast(also);
    mutex_unlock(&w->lock);
    if (running)
        pthread_join(w->thread, NULL);
}

static void worker_init(struct worker *w, const pthread_condattr_t *ca)
{
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, ca);
}

static void worker_destroy(struct worker *w)
{
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

/* ---- the reserve ---------------------------------------------------------------- */

/* How often the refill thread looks at the reserve when nobody wakes it. */
#define REFILL_PERIOD_MS 1000
/*
 * The longest a write that found the reserve empty waits for a refill
 * (see the essay).  Populating a reserve of a few MiB takes a millisecond
 * when memory is free; twenty leave room for a busy machine to schedule the
 * refill thread.
 */
#define RESERVE_WAIT_MS 20
/*
 * The watchdog's period, and how long a refill may go without growing the
 * reserve before memory counts as short (see the essay): populating a step
 * of the reserve takes well under a millisecond when memory is free.
 */
#define RESERVE_WATCH_MS 20
#define RESERVE_STALL_MS 100


/* ops.reserve_low: from an allocation, with no pool lock held.  Must not block long. */
static void reserve_low(struct zs_pool *pool, void *arg)
{
    (void)pool;
    struct store *s = arg;
    LOCK_GUARD(&s->rf.lock);
    s->rf_want = true;
    pthread_cond_signal(&s->rf.cond);
}

/*
 * ops.handles_grow: the zspage policy's reverse map is indexed by handle
 * index; populate it before the allocator hands such handles out.
 */
static int handles_grow(struct zs_pool *pool, uint64_t handles, void *arg)
{
    (void)pool;
    struct store *s = arg;
    if (!s->rmap)
        return 0;
    size_t bytes = (size_t)handles * sizeof(*s->rmap);
    if (bytes > s->rmap_bytes)
        bytes = s->rmap_bytes;
    return mem_populate(s->rmap, bytes);
}

/*
 * The refill thread: when the allocator says the reserve is low, and every
 * REFILL_PERIOD_MS in any case, populate it back to its target.  The refill
 * may wait for memory as long as the kernel takes; no request waits on it.
 */
/* Free memory on the machine, bytes (sysinfo(2): no allocation, no file). */
static uint64_t machine_free(void)
{
    struct sysinfo si;
    if (sysinfo(&si) != 0)
        return UINT64_MAX;
    return (uint64_t)si.freeram * si.mem_unit;
}

static void *refill_main(void *arg)
{
    struct store *s = arg;
    if (s->reserve_thread_init)
        s->reserve_thread_init();
    mutex_lock(&s->rf.lock);
    while (!s->rf.stop) {
        if (!s->rf_want) {
            struct timespec ts = deadline_in_ms(REFILL_PERIOD_MS);
            pthread_cond_timedwait(&s->rf.cond, &s->rf.lock, &ts);
        }
        if (s->rf.stop)
            break;
        s->rf_want = false;
        mutex_unlock(&s->rf.lock);
        atomic_store(&s->rf_busy_since, now_ms());
        int r = zs_reserve_refill(s->pool);
        atomic_store(&s->rf_busy_since, 0);
        if (r < 0)
            add(&s->reserve_failures, 1);
        mutex_lock(&s->rf.lock);
        if (r == 0) {
            s->rf_done++;
            atomic_store(&s->rf_stalled, false);
            pthread_cond_broadcast(&s->rf_cond);
        }
    }
    mutex_unlock(&s->rf.lock);
    return NULL;
}

/*
 * The reserve's watchdog (see the essay): when a refill under way has not
 * grown the reserve for RESERVE_STALL_MS, give a quarter of the target back
 * to the kernel, once per RESERVE_STALL_MS.  It allocates nothing and
 * touches only what is resident.
 */
/* Requests begun, all kinds: the watchdog's sign that I/O still flows. */
static uint64_t requests_begun(struct store *s)
{
    return get(&s->read_reqs) + get(&s->write_reqs) + get(&s->discard_reqs) +
           get(&s->flush_reqs);
}

static void *watch_main(void *arg)
{
    struct store *s = arg;
    uint64_t last_avail = 0, last_progress = 0, last_release = 0;
    uint64_t last_reqs = 0, last_io = 0;

    stack_prefault(64u << 10);
    mutex_lock(&s->rw.lock);
    while (!s->rw.stop) {
        struct timespec ts = deadline_in_ms(RESERVE_WATCH_MS);
        pthread_cond_timedwait(&s->rw.cond, &s->rw.lock, &ts);
        if (s->rw.stop)
            break;
        mutex_unlock(&s->rw.lock);

        struct zs_reserve_stats rs;
        zs_reserve_get_stats(s->pool, &rs);
        uint64_t now = now_ms(), since = get(&s->rf_busy_since), reqs = requests_begun(s);
        bool low = s->low_free && machine_free() < s->low_free;
        if (since == 0 || rs.available > last_avail)
            last_progress = now;
        if (reqs != last_reqs || !low)
            last_io = now;
        bool refill_stuck = now - last_progress >= RESERVE_STALL_MS;
        bool io_stuck = now - last_io >= RESERVE_STALL_MS;
        /* Writing back and reading back too go without memory now (backing.c). */
        if (s->backing)
            backing_set_pressure(s->backing, refill_stuck || low);
        if (refill_stuck)
            atomic_store(&s->rf_stalled, true);
        if ((refill_stuck || io_stuck) && now - last_release >= RESERVE_STALL_MS) {
            add(&s->reserve_released, zs_reserve_release(s->pool, rs.target / 4));
            last_release = now;
        }
        last_avail = rs.available;
        last_reqs = reqs;
        mutex_lock(&s->rw.lock);
    }
    mutex_unlock(&s->rw.lock);
    return NULL;
}

/*
 * A write found the reserve empty: wake the refill and wait for one to
 * complete, at most RESERVE_WAIT_MS, unless refills are known to stall
 * (see the essay).  True if one completed: the caller tries again.
 */
static bool reserve_wait(struct store *s)
{
    if (atomic_load(&s->rf_stalled) || !s->rf.running)
        return false;
    struct timespec deadline = deadline_in_ms(RESERVE_WAIT_MS);
    LOCK_GUARD(&s->rf.lock);
    uint64_t done = s->rf_done;
    s->rf_want = true;
    pthread_cond_signal(&s->rf.cond);
    while (s->rf_done == done && !s->rf.stop) {
        if (pthread_cond_timedwait(&s->rf_cond, &s->rf.lock, &deadline) == ETIMEDOUT) {
            atomic_store(&s->rf_stalled, true);
            return false;
        }
    }
    return s->rf_done != done;
}

/*
 * With a reserve: the tables every request touches, populated now, and the
 * reserve filled once before the store serves.
 */
static int reserve_setup(struct store *s, uint64_t bytes)
{
    int r = zs_reserve_set(s->pool, bytes);
    if (r < 0)
        return r;
    if (mem_populate(s->slots, s->slots_bytes) < 0 || mem_populate(s->occ, s->occ_bytes) < 0 ||
        mem_populate(s->sum, s->sum_bytes) < 0 || mem_populate(s->atime, s->atime_bytes) < 0)
        return -ENOMEM;
    s->reserved = true;
    return zs_reserve_refill(s->pool);
}

/* ---- asking the eviction thread ------------------------------------------------- */

/* A watermark in bytes: pct percent of limit (limit below 2^57, no overflow). */
static uint64_t watermark(uint64_t limit, _Atomic unsigned *pct)
{
    return limit / 100 * atomic_load_explicit(pct, memory_order_relaxed) +
           limit % 100 * atomic_load_explicit(pct, memory_order_relaxed) / 100;
}

/* Wake the eviction thread for a pass.  Cheap to call on every allocation. */
static void evict_kick(struct store *s)
{
    if (atomic_load_explicit(&s->ev_kicked, memory_order_relaxed) ||
        atomic_exchange(&s->ev_kicked, true))
        return;
    LOCK_GUARD(&s->ev.lock);
    s->ev_want = true;
    pthread_cond_signal(&s->ev.cond);
}

/*
 * Ask for a pass and wait until one ends or *deadline passes.  True when a
 * pass ended that freed memory or found none to free (other writers may
 * have taken it since: the caller retries), false when eviction is stuck
 * (the backing store failing or full, nothing left to write back) or the
 * time is up.
 */
static bool evict_wait(struct store *s, const struct timespec *deadline)
{
    LOCK_GUARD(&s->ev.lock);
    if (!s->ev.running || s->ev.stop)
        return false;
    uint64_t pass = s->ev_passes;
    s->ev_want = true;
    pthread_cond_signal(&s->ev.cond);
    /*
     * A pass under way when we arrived may have started before our want:
     * if it got stuck, wait for the one after it, which will have seen it.
     */
    while (!s->ev.stop) {
        if (s->ev_passes > pass && (s->ev_progress || s->ev_passes > pass + 1))
            return s->ev_progress;
        if (pthread_cond_timedwait(&s->ev_done, &s->ev.lock, deadline) == ETIMEDOUT)
            return false;
    }
    return false;
}

/* ---- allocation under the limit ----------------------------------------------------- */

/*
 * An object of n bytes within mem_limit (see the essay).  Returns 0 and the
 * handle, -ENOSPC, or -ENOMEM.  With wait, and a backing store, a pool at
 * its limit makes the caller wait for eviction (STORE_EVICT_WAIT_MS at
 * most) rather than fail.  May be called with a slot lock held: eviction
 * passes locked slots by.
 */
static int obj_alloc(struct store *s, size_t n, uint64_t *ret_h, bool wait)
{
    bool compacted = false, waited = false, gave_up = false, refilled = false;
    struct timespec deadline;
    for (;;) {
        uint64_t limit = get(&s->mem_limit);
        if (limit && mem_used(s) + n > limit)
            goto over;
        uint64_t h = zs_malloc(s->pool, n);
        if (!h && !s->reserved)
            return -ENOMEM;
        if (!h) {
            /* The reserve is empty: a refill under way may save the write (see the essay). */
            if (!refilled && (refilled = reserve_wait(s))) {
                add(&s->reserve_waits, 1);
                continue;
            }
            add(&s->reserve_misses, 1);
            return -ENOSPC;
        }
        uint64_t used = mem_used(s);
        if (limit && used > limit) {
            zs_free(s->pool, h);
            goto over;
        }
        mem_used_max_update(s, used);
        if (s->backing && limit && used > watermark(limit, &s->high_pct))
            evict_kick(s);
        *ret_h = h;
        return 0;
    over:
        if (!compacted && compact_useful(s)) {
            compacted = true;
            compact_now(s);
            continue;
        }
        /* After a wait that did not help, one last try: memory may have come back meanwhile. */
        if (!wait || !s->backing || gave_up)
            return -ENOSPC;
        if (!waited) {
            waited = true;
            add(&s->write_waits, 1);
            deadline = deadline_in_ms(STORE_EVICT_WAIT_MS);
        }
        gave_up = !evict_wait(s, &deadline);
    }
}

/*
 * Turn a page into an entry: same-filled, or compressed (with t's codec, into
 * t->cbuf) and stored in a new object, raw if it does not compress below the
 * huge threshold.  No slot lock needed.  0, -ENOSPC, -ENOMEM, -EIO.
 */
static int entry_make(struct store *s, struct tctx *t, const void *page, struct entry *ret,
                      bool wait)
{
    uint64_t w;
    if (page_same(page, &w)) {
        *ret = (struct entry){ .state = SLOT_SAME, .flags = SF_ACCESSED, .val = w };
        return 0;
    }
    const void *src = page;
    size_t n = PAGE;
    uint8_t state = SLOT_HUGE;
    size_t cap = s->huge_threshold - 1;
    if (cap > 0) {
        ssize_t r = codec_compress(t->codec, page, PAGE, t->cbuf, cap);
        if (r > 0) {
            src = t->cbuf;
            n = (size_t)r;
            state = SLOT_OBJ;
        } else if (r != -E2BIG) {
            return -EIO;        /* a codec bug; refuse rather than store garbage */
        }
    }
    uint64_t h;
    int r = obj_alloc(s, n, &h, wait);
    if (r < 0)
        return r;
    r = zs_write(s->pool, h, src, n);
    if (r < 0) {
        zs_free(s->pool, h);
        return -EIO;
    }
    *ret = (struct entry){ .state = state, .flags = SF_ACCESSED, .size = (uint16_t)n, .val = h };
    return 0;
}

/* ---- reading pages ----------------------------------------------------------------- */

/* Decompress a slot's n bytes at src into dst (PAGE bytes) with the codec its flags name. */
static int slot_decompress(struct tctx *t, unsigned flags, const void *src, size_t n, void *dst)
{
    struct codec_ctx *c = flags & SF_RECOMP ? t->codec2 : t->codec;
    if (!c)
        return -EIO;
    return codec_decompress(c, src, n, dst, PAGE) == PAGE ? 0 : -EIO;
}

/*
 * A 24-bit checksum of what is written back: a multiply-xorshift over
 * 8-byte words, about 0.3 ns a byte, so it costs less than the write.  Not
 * cryptographic: it catches a block that holds something else (zeros from
 * a server that lost its data, another page), not an adversary.
 */
static uint32_t wb_sum(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    for (; i < len; i++)
        h = (h ^ p[i]) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 32;
    return (uint32_t)(h & 0xffffff);
}

/* Slot i's written-back page into dst, slot locked.  0 or -EIO. */
static int wb_read_locked(struct store *s, struct tctx *t, uint64_t i, void *dst)
{
    struct slot *sl = &s->slots[i];
    bool raw = sl->size == PAGE;
    void *buf = raw ? dst : t->cbuf;
    if (backing_read(s->backing, WB_BLOCK(sl->val), buf, sl->size) < 0)
        return -EIO;
    add(&s->bd_reads, 1);
    if (wb_sum(buf, sl->size) != WB_SUM(sl->val)) {
        add(&s->bd_bad_sums, 1);
        return -EIO;
    }
    return raw ? 0 : slot_decompress(t, sl->flags, t->cbuf, sl->size, dst);
}

/*
 * After a read of written-back slot i (locked) whose page is in page: the
 * second such read brings the page back into memory if the pool stays
 * under the high watermark (see the essay).  Failing to is not an error.
 */
static void wb_maybe_promote(struct store *s, struct tctx *t, uint64_t i, const void *page)
{
    struct slot *sl = &s->slots[i];
    if (!(sl->flags & SF_WB_REF)) {
        sl->flags |= SF_WB_REF;
        return;
    }
    uint64_t limit = get(&s->mem_limit);
    if (!limit || mem_used(s) + PAGE > watermark(limit, &s->high_pct))
        return;
    struct entry e, old;
    if (entry_make(s, t, page, &e, false) < 0)
        return;
    old = slot_swap(s, i, &e);
    entry_release(s, &old, false);
    add(&s->pages_promoted, 1);
}

/*
 * Slot i's page into dst (PAGE bytes), slot locked by the caller, who keeps
 * it locked throughout.  0 or -EIO.
 */
static int page_read_locked(struct store *s, struct tctx *t, uint64_t i, void *dst)
{
    struct slot *sl = &s->slots[i];
    switch (sl->state) {
    case SLOT_EMPTY:
        memset(dst, 0, PAGE);
        return 0;
    case SLOT_SAME:
        page_fill(dst, sl->val);
        return 0;
    case SLOT_HUGE:
        return zs_read(s->pool, sl->val, dst) == (int)PAGE ? 0 : -EIO;
    case SLOT_WB:
        return wb_read_locked(s, t, i, dst);
    default:
        if (zs_read(s->pool, sl->val, t->cbuf) != sl->size)
            return -EIO;
        return slot_decompress(t, sl->flags, t->cbuf, sl->size, dst);
    }
}

/* Slot i's page into dst, decompressing outside the slot lock.  0 or -EIO. */
static int page_read(struct store *s, struct tctx *t, uint64_t i, void *dst)
{
    struct slot *sl = &s->slots[i];
    slot_lock(sl);
    if (sl->state != SLOT_OBJ) {
        if (sl->state == SLOT_EMPTY || sl->state == SLOT_SAME) {
            int r = page_read_locked(s, t, i, dst);
            slot_unlock(sl);
            return r;
        }
        slot_touch(s, i);
        int r = page_read_locked(s, t, i, dst);
        if (r == 0 && sl->state == SLOT_WB)
            wb_maybe_promote(s, t, i, dst);
        slot_unlock(sl);
        return r;
    }
    slot_touch(s, i);
    uint16_t size = sl->size;
    unsigned flags = sl->flags;
    int n = zs_read(s->pool, sl->val, t->cbuf);
    slot_unlock(sl);
    if (n != size)
        return -EIO;
    return slot_decompress(t, flags, t->cbuf, size, dst);
}

/* ---- writing pages ----------------------------------------------------------------- */

/* Store a whole page into slot i: compress first, lock only to swap. */
static int page_write(struct store *s, struct tctx *t, uint64_t i, const void *page)
{
    struct entry e, old;
    int r = entry_make(s, t, page, &e, true);
    if (r < 0)
        return r;
    slot_lock(&s->slots[i]);
    old = slot_swap(s, i, &e);
    slot_unlock(&s->slots[i]);
    entry_release(s, &old, false);
    return 0;
}

/*
 * Read-modify-write part of slot i under its lock: src (len bytes at pofs in
 * the page), or zeros when src is NULL.  Zeroing leaves an empty slot empty,
 * and empties a slot whose page becomes all zeros (a discard makes holes).
 */
static int page_update(struct store *s, struct tctx *t, uint64_t i, const void *src,
                       size_t pofs, size_t len)
{
    struct slot *sl = &s->slots[i];
    struct entry e, old;
    uint64_t w;

    slot_lock(sl);
    if (!src && sl->state == SLOT_EMPTY) {
        slot_unlock(sl);
        return 0;
    }
    int r = page_read_locked(s, t, i, t->page);
    if (r < 0)
        goto out;
    if (src)
        memcpy(t->page + pofs, src, len);
    else
        memset(t->page + pofs, 0, len);
    if (!src && page_same(t->page, &w) && w == 0)
        e = (struct entry){ .state = SLOT_EMPTY };
    else if ((r = entry_make(s, t, t->page, &e, true)) < 0)
        goto out;
    old = slot_swap(s, i, &e);
    slot_unlock(sl);
    entry_release(s, &old, !src);
    return 0;
out:
    slot_unlock(sl);
    return r;
}

/* ---- writeback ------------------------------------------------------------------- */

/*
 * Write slot i's object (the slot locked by the caller, holding an object)
 * to a new backing block and make the slot point there.  Returns 0, or the
 * backing store's error with the slot untouched.
 */
static int slot_writeback_locked(struct store *s, struct tctx *t, uint64_t i)
{
    struct slot *sl = &s->slots[i];
    const void *buf = t->cbuf;
    size_t len = sl->size;

    if (zs_read(s->pool, sl->val, t->cbuf) != sl->size)
        return -EIO;
    if (s->backing_raw && sl->state == SLOT_OBJ) {
        if (slot_decompress(t, sl->flags, t->cbuf, sl->size, t->page) < 0)
            return -EIO;
        buf = t->page;
        len = PAGE;
    }
    uint64_t blk;
    int r = backing_alloc(s->backing, &blk);
    if (r < 0)
        return r;
    r = backing_write(s->backing, blk, buf, len);
    if (r < 0) {
        /* Discard: on a full file system, give back what the write did take. */
        backing_free(s->backing, blk, true);
        return r;
    }
    struct entry e = {
        .state = SLOT_WB,
        .flags = len == PAGE ? 0 : (uint8_t)(sl->flags & SF_RECOMP),
        .size = (uint16_t)len,
        .val = blk | (uint64_t)wb_sum(buf, len) << WB_BLOCK_BITS,
    };
    struct entry old = slot_swap(s, i, &e);
    entry_release(s, &old, false);
    add(&s->bd_writes, 1);
    return 0;
}

/* Whether slot i (locked) is one that sel selects for writeback or recompression. */
static bool slot_selected(const struct slot *sl, unsigned sel)
{
    if (sl->state != SLOT_OBJ && sl->state != SLOT_HUGE)
        return false;
    if (sel & STORE_SEL_ALL)
        return true;
    if ((sel & STORE_SEL_IDLE) && !(sl->flags & SF_IDLE))
        return false;
    if ((sel & STORE_SEL_HUGE) && sl->state != SLOT_HUGE)
        return false;
    return true;
}

/*
 * One batch of the clock: from the hand on, write back objects whose slot
 * was not accessed since the hand last passed, until about bytes of them
 * are written or every slot in memory was seen twice.  Locked slots are
 * passed by.  Returns the pages written back, or the backing store's
 * error if it failed before any.  The eviction thread only.
 */
static int64_t clock_batch(struct store *s, struct tctx *t, uint64_t bytes)
{
    /* Twice round every occupied slot (written-back ones are on the way). */
    uint64_t budget = 2 * (get(&s->pages_stored) + get(&s->bd_count) + 64), written = 0;
    int64_t n = 0;
    int err = 0;
    uint64_t i = s->hand;

    while (written < bytes && budget > 0) {
        i = occ_next_set(s, i);
        if (i >= s->nslots) {
            i = occ_next_set(s, 0);
            if (i >= s->nslots)
                break;
        }
        budget--;
        struct slot *sl = &s->slots[i];
        if (!slot_trylock(sl)) {
            i++;
            continue;
        }
        if (sl->state == SLOT_OBJ || sl->state == SLOT_HUGE) {
            if (sl->flags & SF_ACCESSED) {
                sl->flags &= (uint8_t)~SF_ACCESSED;
            } else {
                uint64_t size = zs_class_size(sl->size);
                err = slot_writeback_locked(s, t, i);
                if (err == 0) {
                    n++;
                    written += size;
                }
            }
        }
        slot_unlock(sl);
        i++;
        if (err < 0)
            break;
    }
    s->hand = i;
    return n == 0 && err < 0 ? err : n;
}

/*
 * The zspage policy's evict callback: write back the object h, which
 * zs_shrink() is taking out of its zspage.  0 whether or not it could (a
 * slot that is busy or no longer holds h is left alone), or the backing
 * store's error, which stops the shrink.
 */
static int evict_handle(struct zs_pool *pool, uint64_t h, void *arg)
{
    (void)pool;
    struct store *s = arg;
    struct tctx *t = tctx_get(s);
    if (!t)
        return -ENOMEM;
    uint64_t i = atomic_load_explicit(&s->rmap[zs_handle_index(h)], memory_order_relaxed);
    if (i >= s->nslots)
        return 0;
    struct slot *sl = &s->slots[i];
    if (!slot_trylock(sl))
        return 0;
    int r = 0;
    if ((sl->state == SLOT_OBJ || sl->state == SLOT_HUGE) && sl->val == h)
        r = slot_writeback_locked(s, t, i);
    slot_unlock(sl);
    return r;
}

/*
 * One eviction pass: until the pool is under the low watermark, or nothing
 * more can go.  Returns the 4 KiB pages of memory it freed, 0 if the pool
 * was under the low watermark already, or, when it could free nothing,
 * the backing store's error or -ENOSPC (nothing left to write back).
 */
static int64_t evict_pass(struct store *s, struct tctx *t)
{
    uint64_t limit = get(&s->mem_limit);
    if (!limit)
        return 0;
    uint64_t low = watermark(limit, &s->low_pct);
    uint64_t start = mem_used(s);
    int64_t r = 0;

    add(&s->evictions, 1);
    for (;;) {
        uint64_t used = mem_used(s);
        if (used <= low)
            break;
        uint64_t excess = used - low;
        if (s->policy == STORE_EVICT_ZSPAGE) {
            r = zs_shrink(s->pool, (excess + PAGE - 1) / PAGE);
            if (r > 0)
                continue;
            if (r < 0 && r != -EBUSY)
                break;
        }
        r = clock_batch(s, t, excess);
        if (r <= 0)
            break;
        compact_now(s);
    }
    uint64_t end = mem_used(s);
    if (end < start)
        return (int64_t)((start - end + PAGE - 1) / PAGE);
    if (start <= low)
        return 0;
    return r < 0 ? r : -ENOSPC;
}

/*
 * The eviction thread: a pass whenever the pool is over the high watermark
 * (looked at every EVICT_PERIOD_MS, or at once when an allocation passes
 * it) or a writer waits.  After a pass that freed nothing it backs off a
 * period, so a failing backing store is not hammered.
 */
static void *evict_main(void *arg)
{
    struct store *s = arg;
    struct tctx *t = tctx_get_(s, true);
    (void)backing_thread_prepare(s->backing);   /* else on the first write */

    mutex_lock(&s->ev.lock);
    while (!s->ev.stop) {
        if (!s->ev_want) {
            struct timespec ts = deadline_in_ms(EVICT_PERIOD_MS);
            pthread_cond_timedwait(&s->ev.cond, &s->ev.lock, &ts);
        }
        if (s->ev.stop)
            break;
        bool want = s->ev_want;
        s->ev_want = false;
        mutex_unlock(&s->ev.lock);

        atomic_store(&s->ev_kicked, false);
        uint64_t limit = get(&s->mem_limit);
        bool over = limit && mem_used(s) > watermark(limit, &s->high_pct);
        int64_t freed = 0;
        if ((want || over) && t)
            freed = evict_pass(s, t);
        else if (want)
            freed = -ENOMEM;    /* no context: cannot write anything back */

        mutex_lock(&s->ev.lock);
        s->ev_passes++;
        /* Waiting writers retry unless eviction is stuck. */
        s->ev_progress = freed >= 0;
        pthread_cond_broadcast(&s->ev_done);
        if (freed < 0 && !s->ev.stop) {
            struct timespec ts = deadline_in_ms(EVICT_PERIOD_MS);
            /* Writers asking meanwhile are answered by the next pass. */
            while (!s->ev.stop && !s->ev_want &&
                   pthread_cond_timedwait(&s->ev.cond, &s->ev.lock, &ts) != ETIMEDOUT)
                ;
        }
    }
    pthread_cond_broadcast(&s->ev_done);
    mutex_unlock(&s->ev.lock);
    return NULL;
}


/* ---- recompression ------------------------------------------------------------------ */

/*
 * Recompress slot i's object (slot locked, holding an object of the first
 * codec) with the second codec; keep the result if its size class is
 * smaller.  1 if kept, 0 if not, -EIO if the object would not decompress.
 */
static int slot_recompress_locked(struct store *s, struct tctx *t, uint64_t i)
{
    struct slot *sl = &s->slots[i];
    if (sl->state == SLOT_HUGE) {
        if (zs_read(s->pool, sl->val, t->page) != (int)PAGE)
            return -EIO;
    } else {
        if (zs_read(s->pool, sl->val, t->cbuf) != sl->size ||
            slot_decompress(t, sl->flags, t->cbuf, sl->size, t->page) < 0)
            return -EIO;
    }
    ssize_t n = codec_compress(t->codec2, t->page, PAGE, t->cbuf, s->huge_threshold - 1);
    if (n <= 0 || zs_class_size((size_t)n) >= zs_class_size(sl->size))
        return 0;
    uint64_t h;
    if (obj_alloc(s, (size_t)n, &h, false) < 0)
        return 0;
    if (zs_write(s->pool, h, t->cbuf, (size_t)n) < 0) {
        zs_free(s->pool, h);
        return 0;
    }
    struct entry e = {
        .state = SLOT_OBJ,
        .flags = (uint8_t)(SF_RECOMP | (sl->flags & (SF_IDLE | SF_ACCESSED))),
        .size = (uint16_t)n,
        .val = h,
    };
    struct entry old = slot_swap(s, i, &e);
    entry_release(s, &old, false);
    return 1;
}

/* ---- the API ---------------------------------------------------------------------- */

static void *map_table(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

struct store *store_new(const struct store_config *cfg)
{
    const struct codec_type *codec = cfg->codec ? cfg->codec : codec_find("lz4");
    int lmin, lmax, ldef;

    if (!codec || cfg->size == 0 || cfg->size % PAGE != 0 || cfg->size > STORE_MAX_SIZE ||
        cfg->huge_threshold > PAGE || cfg->compact_threshold_pct > 100) {
        errno = EINVAL;
        return NULL;
    }
    codec_level_range(codec, &lmin, &lmax, &ldef);
    int level = cfg->level ? cfg->level : ldef;
    if (level < lmin || level > lmax) {
        errno = EINVAL;
        return NULL;
    }
    int level2 = 0;
    if (cfg->recomp_codec) {
        codec_level_range(cfg->recomp_codec, &lmin, &lmax, &ldef);
        level2 = cfg->recomp_level ? cfg->recomp_level : ldef;
        if (level2 < lmin || level2 > lmax) {
            errno = EINVAL;
            return NULL;
        }
    }
    unsigned high = cfg->high_wm_pct ? cfg->high_wm_pct : 90;
    unsigned low = cfg->low_wm_pct ? cfg->low_wm_pct : 80;
    /* SLOT_WB keeps block numbers in 40 bits. */
    if (cfg->backing && backing_blocks(cfg->backing) > (UINT64_C(1) << WB_BLOCK_BITS)) {
        errno = EINVAL;
        return NULL;
    }
    if (high > 100 || low >= high ||
        (cfg->evict_policy != STORE_EVICT_LRU && cfg->evict_policy != STORE_EVICT_ZSPAGE)) {
        errno = EINVAL;
        return NULL;
    }

    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->size = cfg->size;
    s->nslots = cfg->size >> PAGE_SHIFT;
    s->nwords = (s->nslots + 63) / 64;
    s->nsum = (s->nwords + 63) / 64;
    s->codec = codec;
    s->level = level;
    s->huge_threshold = cfg->huge_threshold ? cfg->huge_threshold
                                           : (unsigned)zs_huge_class_size();
    s->codec2 = cfg->recomp_codec;
    s->level2 = level2;
    s->backing = cfg->backing;
    s->backing_raw = cfg->backing_raw;
    s->policy = cfg->evict_policy;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &s->t0);
    atomic_init(&s->high_pct, high);
    atomic_init(&s->low_pct, low);
    atomic_init(&s->mem_limit, cfg->mem_limit);
    atomic_init(&s->compact_pct, cfg->compact_threshold_pct);
    pthread_mutex_init(&s->tctx_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    worker_init(&s->bg, &ca);
    worker_init(&s->ev, &ca);
    worker_init(&s->rf, &ca);
    worker_init(&s->rw, &ca);
    pthread_cond_init(&s->rf_cond, &ca);
    pthread_cond_init(&s->ev_done, &ca);
    pthread_condattr_destroy(&ca);

    int err = ENOMEM;
    s->slots_bytes = s->nslots * sizeof(struct slot);
    s->occ_bytes = s->nwords * sizeof(uint64_t);
    s->sum_bytes = s->nsum * sizeof(uint64_t);
    s->slots = map_table(s->slots_bytes);
    s->occ = map_table(s->occ_bytes);
    s->sum = map_table(s->sum_bytes);
    s->atime_bytes = s->nslots * sizeof(uint32_t);
    s->atime = map_table(s->atime_bytes);
    struct zs_ops ops = { .reserve_low = reserve_low, .handles_grow = handles_grow };
    if (s->backing && s->policy == STORE_EVICT_ZSPAGE) {
        /*
         * Indexed by zs_handle_index(): 16 GiB of address space, touched
         * as used (with a reserve, populated ahead by handles_grow()).
         */
        s->rmap_bytes = ((size_t)1 << 31) * sizeof(uint64_t);
        s->rmap = map_table(s->rmap_bytes);
        if (!s->rmap)
            goto fail;
        ops.evict = evict_handle;
    }
    s->pool = zs_create(&ops, s);
    if (!s->slots || !s->occ || !s->sum || !s->atime || !s->pool)
        goto fail;
    s->reserve_thread_init = cfg->reserve_thread_init;
    s->low_free = cfg->low_free;
    if (cfg->reserve && (err = -reserve_setup(s, cfg->reserve)) != 0)
        goto fail;
    s->mem_used_max = mem_used(s);
    err = pthread_key_create(&s->key, tctx_release);
    if (err != 0)
        goto fail;
    s->key_made = true;
    for (unsigned i = 0; i < cfg->prealloc_threads; i++) {
        struct tctx *t = tctx_new(s);
        if (!t) {
            err = ENOMEM;
            goto fail;
        }
        t->all_next = s->all_list;
        s->all_list = t;
        t->next = s->free_list;
        s->free_list = t;
    }
    if (cfg->compact_threshold_pct > 0 && (err = -worker_start(&s->bg, bg_main, s)) != 0)
        goto fail;
    if (s->backing && (err = -worker_start(&s->ev, evict_main, s)) != 0)
        goto fail;
    if (s->reserved && !cfg->reserve_manual &&
        ((err = -worker_start(&s->rf, refill_main, s)) != 0 ||
         (err = -worker_start(&s->rw, watch_main, s)) != 0))
        goto fail;
    return s;
fail:
    store_free(s);
    errno = err;
    return NULL;
}

void store_free(struct store *s)
{
    if (!s)
        return;
    worker_stop(&s->ev, &s->ev_done);
    worker_stop(&s->bg, NULL);
    worker_stop(&s->rw, NULL);
    worker_stop(&s->rf, &s->rf_cond);
    if (s->key_made)
        pthread_key_delete(s->key);
    for (struct tctx *t = s->all_list, *next; t; t = next) {
        next = t->all_next;
        codec_ctx_free(t->codec);
        codec_ctx_free(t->codec2);
        free(t);
    }
    zs_destroy(s->pool);
    if (s->slots)
        munmap(s->slots, s->slots_bytes);
    if (s->occ)
        munmap(s->occ, s->occ_bytes);
    if (s->sum)
        munmap(s->sum, s->sum_bytes);
    if (s->atime)
        munmap(s->atime, s->atime_bytes);
    if (s->rmap)
        munmap(s->rmap, s->rmap_bytes);
    pthread_cond_destroy(&s->ev_done);
    worker_destroy(&s->ev);
    worker_destroy(&s->bg);
    worker_destroy(&s->rf);
    worker_destroy(&s->rw);
    pthread_cond_destroy(&s->rf_cond);
    pthread_mutex_destroy(&s->tctx_lock);
    free(s);
}

uint64_t store_size(const struct store *s)
{
    return s->size;
}

int store_reserve_refill(struct store *s)
{
    if (!s->reserved)
        return -EINVAL;
    int r = zs_reserve_refill(s->pool);
    if (r < 0)
        add(&s->reserve_failures, 1);
    return r;
}

int store_thread_prepare(struct store *s)
{
    if (!tctx_get_(s, true))
        return -ENOMEM;
    /* Its bounce buffer too, where the backing store does direct I/O. */
    return s->backing ? backing_thread_prepare(s->backing) : 0;
}

int store_read(struct store *s, void *buf, uint64_t len, uint64_t off)
{
    int r = check_range(s, len, off);
    if (r < 0)
        return r;
    add(&s->read_reqs, 1);
    add(&s->read_bytes, len);
    struct tctx *t = tctx_get(s);
    if (!t) {
        add(&s->failed_reads, 1);
        return -ENOMEM;
    }
    unsigned char *p = buf;
    while (len > 0) {
        uint64_t i = off >> PAGE_SHIFT;
        size_t pofs = off & (PAGE - 1);
        size_t n = PAGE - pofs < len ? PAGE - pofs : (size_t)len;
        if (n == PAGE) {
            r = page_read(s, t, i, p);
        } else {
            r = page_read(s, t, i, t->page);
            if (r == 0)
                memcpy(p, t->page + pofs, n);
        }
        if (r < 0) {
            add(&s->failed_reads, 1);
            return r;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

int store_write(struct store *s, const void *buf, uint64_t len, uint64_t off)
{
    int r = check_range(s, len, off);
    if (r < 0)
        return r;
    add(&s->write_reqs, 1);
    add(&s->write_bytes, len);
    struct tctx *t = tctx_get(s);
    if (!t) {
        add(&s->failed_writes, 1);
        return -ENOMEM;
    }
    const unsigned char *p = buf;
    while (len > 0) {
        uint64_t i = off >> PAGE_SHIFT;
        size_t pofs = off & (PAGE - 1);
        size_t n = PAGE - pofs < len ? PAGE - pofs : (size_t)len;
        r = n == PAGE ? page_write(s, t, i, p) : page_update(s, t, i, p, pofs, n);
        if (r < 0) {
            add(&s->failed_writes, 1);
            return r;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Zero [off, off + len): empty whole slots, RMW the edges. */
/*
 * The work of store_discard() (discard: count notify_free) and
 * store_write_zeroes() (no_hole: leave zero-filled pages, not holes).
 */
static int zero_range(struct store *s, uint64_t len, uint64_t off, bool discard,
                      bool no_hole)
{
    static const unsigned char zeros[PAGE];

    struct tctx *t = NULL;
    uint64_t freed = 0;
    int r = 0;
    while (len > 0) {
        uint64_t i = off >> PAGE_SHIFT;
        size_t pofs = off & (PAGE - 1);
        size_t n = PAGE - pofs < len ? PAGE - pofs : (size_t)len;
        if (n == PAGE) {
            struct entry e = { .state = no_hole ? SLOT_SAME : SLOT_EMPTY,
                               .flags = no_hole ? SF_ACCESSED : 0 }, old;
            slot_lock(&s->slots[i]);
            old = slot_swap(s, i, &e);
            slot_unlock(&s->slots[i]);
            entry_release(s, &old, true);
            freed += entry_has_object(&old);
            if (discard)
                add(&s->notify_free, 1);
        } else {
            if (!t && !(t = tctx_get(s))) {
                r = -ENOMEM;
                break;
            }
            /* Zeros written as data keep the page a page. */
            r = page_update(s, t, i, no_hole ? zeros + pofs : NULL, pofs, n);
            if (r < 0)
                break;
        }
        off += n;
        len -= n;
    }
    if (freed)
        bg_wake(s);
    if (r < 0)
        add(&s->failed_writes, 1);
    return r;
}

int store_discard(struct store *s, uint64_t len, uint64_t off)
{
    int r = check_range(s, len, off);
    if (r < 0)
        return r;
    add(&s->discard_reqs, 1);
    add(&s->discard_bytes, len);
    return zero_range(s, len, off, true, false);
}

int store_write_zeroes(struct store *s, uint64_t len, uint64_t off, unsigned flags)
{
    int r = check_range(s, len, off);
    if (r < 0)
        return r;
    if (flags & ~(unsigned)STORE_ZERO_NO_HOLE)
        return -EINVAL;
    add(&s->write_reqs, 1);
    add(&s->write_bytes, len);
    return zero_range(s, len, off, false, flags & STORE_ZERO_NO_HOLE);
}

int store_flush(struct store *s)
{
    add(&s->flush_reqs, 1);
    return 0;
}

int store_seek(struct store *s, uint64_t off, bool data, uint64_t *ret_off)
{
    if (off >= s->size)
        return -ENXIO;
    uint64_t i = off >> PAGE_SHIFT;
    uint64_t j = data ? occ_next_set(s, i) : occ_next_clear(s, i);
    if (j >= s->nslots) {
        if (data)
            return -ENXIO;
        *ret_off = s->size;
        return 0;
    }
    *ret_off = j == i ? off : j << PAGE_SHIFT;
    return 0;
}

/* A slot's extent flags, read under its lock (the state is not atomic). */
static unsigned slot_extent_flags(struct store *s, uint64_t i)
{
    struct slot *sl = &s->slots[i];
    unsigned flags;

    slot_lock(sl);
    if (sl->state == SLOT_EMPTY)
        flags = STORE_EXTENT_HOLE | STORE_EXTENT_ZERO;
    else if (sl->state == SLOT_SAME && sl->val == 0)
        flags = STORE_EXTENT_ZERO;
    else
        flags = 0;
    slot_unlock(sl);
    return flags;
}

int store_extent(struct store *s, uint64_t off, uint64_t len,
                 uint64_t *ret_len, unsigned *ret_flags)
{
    if (len == 0 || off >= s->size)
        return -EINVAL;
    uint64_t end = len > s->size - off ? s->size : off + len;
    uint64_t i = off >> PAGE_SHIFT;
    uint64_t last = (end - 1) >> PAGE_SHIFT;    /* the last slot in range */
    unsigned flags = slot_extent_flags(s, i);
    uint64_t j;

    if (flags & STORE_EXTENT_HOLE) {
        /* A run of holes ends where the bitmap says data starts. */
        j = occ_next_set(s, i + 1);
    } else {
        /* Data and zero pages: slot by slot while the status holds. */
        for (j = i + 1; j <= last; j++)
            if (slot_extent_flags(s, j) != flags)
                break;
    }
    uint64_t run_end = j > last ? end : j << PAGE_SHIFT;
    *ret_len = run_end - off;
    *ret_flags = flags;
    return 0;
}

int64_t store_compact(struct store *s)
{
    return compact_now(s);
}

int store_set_mem_limit(struct store *s, uint64_t bytes)
{
    atomic_store_explicit(&s->mem_limit, bytes, memory_order_relaxed);
    return 0;
}

int store_set_compact_threshold(struct store *s, unsigned pct)
{
    if (pct > 100)
        return -EINVAL;
    if (pct > 0) {
        int r = worker_start(&s->bg, bg_main, s);
        if (r < 0)
            return r;
    }
    atomic_store_explicit(&s->compact_pct, pct, memory_order_relaxed);
    bg_wake(s);
    return 0;
}

int store_set_watermarks(struct store *s, unsigned high_pct, unsigned low_pct)
{
    if (low_pct == 0 || low_pct >= high_pct || high_pct > 100)
        return -EINVAL;
    atomic_store(&s->high_pct, high_pct);
    atomic_store(&s->low_pct, low_pct);
    if (s->backing)
        evict_kick(s);
    return 0;
}

int64_t store_mark_idle(struct store *s, uint64_t age_sec)
{
    uint32_t now = now_sec(s);
    int64_t n = 0;
    for (uint64_t i = occ_next_set(s, 0); i < s->nslots; i = occ_next_set(s, i + 1)) {
        struct slot *sl = &s->slots[i];
        slot_lock(sl);
        if ((sl->state == SLOT_OBJ || sl->state == SLOT_HUGE) &&
            (age_sec == 0 ||
             now - atomic_load_explicit(&s->atime[i], memory_order_relaxed) >= age_sec)) {
            if (!(sl->flags & SF_IDLE)) {
                sl->flags |= SF_IDLE;
                add(&s->idle_pages, 1);
            }
            n++;
        }
        slot_unlock(sl);
    }
    return n;
}

/* The selections store_writeback() and store_recompress() accept. */
static bool sel_valid(unsigned sel, unsigned allowed)
{
    if (sel == 0 || (sel & ~allowed))
        return false;
    return !(sel & STORE_SEL_ALL) || sel == STORE_SEL_ALL;
}

int64_t store_writeback(struct store *s, unsigned sel, uint64_t limit_pages)
{
    if (!s->backing)
        return -ENOTSUP;
    if (!sel_valid(sel, STORE_SEL_IDLE | STORE_SEL_HUGE | STORE_SEL_ALL))
        return -EINVAL;
    struct tctx *t = tctx_get(s);
    if (!t)
        return -ENOMEM;
    int64_t n = 0;
    int err = 0;
    for (uint64_t i = occ_next_set(s, 0); i < s->nslots; i = occ_next_set(s, i + 1)) {
        if (limit_pages && (uint64_t)n >= limit_pages)
            break;
        struct slot *sl = &s->slots[i];
        slot_lock(sl);
        if (slot_selected(sl, sel)) {
            err = slot_writeback_locked(s, t, i);
            n += err == 0;
        }
        slot_unlock(sl);
        if (err < 0)
            break;
    }
    if (n > 0)
        bg_wake(s);
    return n == 0 && err < 0 ? err : n;
}

int64_t store_recompress(struct store *s, unsigned sel, unsigned threshold)
{
    if (!s->codec2)
        return -ENOTSUP;
    if (!sel_valid(sel, STORE_SEL_IDLE | STORE_SEL_HUGE))
        return -EINVAL;
    struct tctx *t = tctx_get(s);
    if (!t)
        return -ENOMEM;
    int64_t n = 0;
    for (uint64_t i = occ_next_set(s, 0); i < s->nslots; i = occ_next_set(s, i + 1)) {
        struct slot *sl = &s->slots[i];
        slot_lock(sl);
        if (slot_selected(sl, sel) && !(sl->flags & SF_RECOMP) && sl->size >= threshold)
            n += slot_recompress_locked(s, t, i) > 0;
        slot_unlock(sl);
    }
    if (n > 0)
        bg_wake(s);
    return n;
}

void store_reset_mem_used_max(struct store *s)
{
    atomic_store_explicit(&s->mem_used_max, mem_used(s), memory_order_relaxed);
}

void store_get_stats(struct store *s, struct store_stats *ret)
{
    struct zs_pool_stats zst;
    zs_get_stats(s->pool, &zst);
    mem_used_max_update(s, zst.mem_used);
    *ret = (struct store_stats){
        .disksize = s->size,
        .orig_data_size = get(&s->pages_stored) << PAGE_SHIFT,
        .compr_data_size = get(&s->compr_data_size),
        .mem_used_total = zst.mem_used,
        .mem_limit = get(&s->mem_limit),
        .mem_used_max = get(&s->mem_used_max),
        .same_pages = get(&s->same_pages),
        .pages_compacted = zst.pages_compacted,
        .huge_pages = get(&s->huge_pages),
        .huge_pages_since = get(&s->huge_pages_since),
        .failed_reads = get(&s->failed_reads),
        .failed_writes = get(&s->failed_writes),
        .invalid_io = get(&s->invalid_io),
        .notify_free = get(&s->notify_free),
        .read_reqs = get(&s->read_reqs),
        .write_reqs = get(&s->write_reqs),
        .discard_reqs = get(&s->discard_reqs),
        .flush_reqs = get(&s->flush_reqs),
        .read_bytes = get(&s->read_bytes),
        .write_bytes = get(&s->write_bytes),
        .discard_bytes = get(&s->discard_bytes),
        .compactions = get(&s->compactions),
        .compact_threshold_pct = atomic_load_explicit(&s->compact_pct, memory_order_relaxed),
        .has_backing = s->backing != NULL,
        .bd_count = get(&s->bd_count),
        .bd_reads = get(&s->bd_reads),
        .bd_writes = get(&s->bd_writes),
        .wb_high_pct = atomic_load(&s->high_pct),
        .wb_low_pct = atomic_load(&s->low_pct),
        .evictions = get(&s->evictions),
        .pages_evicted = zst.pages_evicted,
        .pages_promoted = get(&s->pages_promoted),
        .write_waits = get(&s->write_waits),
        .idle_pages = get(&s->idle_pages),
        .recompressed = get(&s->recompressed),
        .bd_bad_sums = get(&s->bd_bad_sums),
        .reserve_failures = get(&s->reserve_failures),
    };
    if (s->reserved) {
        struct zs_reserve_stats rs;
        zs_reserve_get_stats(s->pool, &rs);
        ret->reserve = rs.target;
        ret->reserve_free = rs.available;
        ret->reserve_min = rs.low_water;
        ret->reserve_misses = get(&s->reserve_misses);
        ret->reserve_waits = get(&s->reserve_waits);
        ret->reserve_released = get(&s->reserve_released);
        ret->reserve_refills = rs.refills;
    }
    if (ret->mem_limit) {
        ret->wb_high = watermark(ret->mem_limit, &s->high_pct);
        ret->wb_low = watermark(ret->mem_limit, &s->low_pct);
    }
    if (s->backing) {
        struct backing_stats bs;
        backing_get_stats(s->backing, &bs);
        ret->bd_read_errors = bs.read_errors;
        ret->bd_write_errors = bs.write_errors;
        ret->bd_direct = bs.direct;
        ret->bd_pressure = bs.pressure;
        ret->bd_last_error = bs.last_error;
        ret->bd_connected = bs.connected;
        ret->bd_blocks = bs.blocks;
    }
}

