/* SPDX-License-Identifier: MIT */
/*
 * The block store: a compressed RAM disk of a fixed size, as an array of
 * 4 KiB slots, each empty, same-filled (one 8-byte word repeated, held in
 * the slot itself), or an object in a libzspool pool (compressed, or raw
 * when it does not compress below the huge threshold).
 *
 * Front ends (FUSE, NBD) turn requests into the calls below; the store
 * compresses with the codec layer and asks the allocator for space.  The
 * store never calls back into a front end.
 *
 * Threads: every function is thread-safe.  Requests on different slots run
 * in parallel; requests overlapping the same slot are serialised per slot,
 * and each slot's content is always that of one whole write (no torn
 * pages).  Compression and decompression run outside any lock shared
 * between slots, with a codec context per calling thread that the store
 * keeps for it (see store_thread_prepare()).
 *
 * Conventions: functions return 0 (or a count) or a negative errno;
 * store_new() returns NULL and sets errno.  Nothing here logs.
 */
#ifndef UZRAM_STORE_H
#define UZRAM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

struct backing;

#define STORE_PAGE_SIZE 4096u
/*
 * A page that does not compress to fewer bytes than store_config's
 * huge_threshold is stored raw.  The default is zs_huge_class_size()
 * (3841 B): an object that large lives alone in a page whatever it holds,
 * so compressing it saves nothing and costs a decompression on every read.
 * zram draws the line at the same place, its allocator's huge class size.
 * A lower line stores many more pages raw and holds more memory
 * (doc/store.md, "Pages stored raw", has the figures;
 * tools/bench/uzramd-compare reports huge_pages and mem_used_total).
 */
/* Largest device: 2^52 bytes keeps slot counts and offsets well inside 64 bits. */
#define STORE_MAX_SIZE (UINT64_C(1) << 52)

struct store;

struct store_config {
    uint64_t size;                 /* bytes; a multiple of 4096, 4096..STORE_MAX_SIZE */
    const struct codec_type *codec;/* NULL: lz4 */
    int level;                     /* 0: the codec's default level */
    uint64_t mem_limit;            /* bytes of allocator memory; 0: none */
    unsigned huge_threshold;       /* 0: zs_huge_class_size() */
    /*
     * Automatic compaction: a background thread compacts when wasted memory
     * (mem_used_total - compr_data_size) passes this many percent of
     * mem_used_total.  0 disables the thread.  Default in uzramd: 10.
     */
    unsigned compact_threshold_pct;
    /* Codec contexts made up front for threads to come; 0: none. */
    unsigned prealloc_threads;

    /*
     * The I/O path never waits for memory (doc/store.md, "The
     * reserve").  With reserve > 0 (bytes, at most ZS_RESERVE_MAX), the
     * store populates its tables and that much memory for the allocator up
     * front, and a thread of its own keeps the reserve full; a write that
     * finds it empty fails at once with -ENOSPC.  Thread contexts are then
     * made only by store_thread_prepare(), never on a request.  0: memory is
     * faulted in as it is needed (no table is populated ahead: cheaper for
     * large devices, but a daemon serving swap may hang under pressure).
     * reserve_thread_init, if not NULL, is called first thing in the refill
     * thread (uzramd lets it wait on reclaim, unlike its I/O threads).
     */
    uint64_t reserve;
    void (*reserve_thread_init)(void);
    /* No refill thread: the caller refills with store_reserve_refill() (tests). */
    bool reserve_manual;
    /*
     * Free memory on the machine (bytes) under which it is short: then a
     * store that has seen no request for a while gives its reserve back
     * to the kernel (doc/store.md, "The reserve").  uzramd: twice
     * vm.min_free_kbytes.  0: only a stalled refill counts.
     */
    uint64_t low_free;

    /*
     * Writeback (doc/store.md).  backing: where cold pages go, or
     * NULL; the caller opens it, and closes it only after store_free().
     * With a backing store and a mem_limit, a background thread writes the
     * least recently used pages back whenever mem_used_total passes
     * high_wm_pct of the limit, until it is under low_wm_pct; a write that
     * finds the pool full waits for it (up to STORE_EVICT_WAIT_MS) instead
     * of failing.
     */
    struct backing *backing;
    bool backing_raw;              /* write pages back uncompressed */
    unsigned high_wm_pct;          /* 0: 90 */
    unsigned low_wm_pct;           /* 0: 80; below high_wm_pct */
    enum store_evict_policy {
        STORE_EVICT_LRU = 0,       /* per-slot access bits, a clock over the slots */
        STORE_EVICT_ZSPAGE,        /* zs_shrink(): whole zspages, oldest allocated first */
    } evict_policy;
    /* Second codec for store_recompress(), or NULL (no recompression). */
    const struct codec_type *recomp_codec;
    int recomp_level;              /* 0: its default */
    /*
     * The cold tier (doc/store.md, "Bundles"): idle neighbouring pages
     * compressed together by store_bundle() with cold_codec, or NULL (no
     * bundles), at cold_level (0: STORE_COLD_LEVEL for zstd, else the
     * codec's default), bundle_pages at most in one (0: STORE_BUNDLE_MAX).
     */
    const struct codec_type *cold_codec;
    int cold_level;
    unsigned bundle_pages; /* 2..STORE_BUNDLE_MAX */
    /*
     * With a cold codec: a thread of the store's own runs the cold pass on
     * its own, every cold_after / 4 seconds (1 to 60), over the pages not
     * read or written for cold_after seconds; 0: only on request
     * (store_bundle()); at most STORE_COLD_AFTER_MAX.  The idle marks are
     * left alone.  cold_thread_init, if not NULL, is called first thing in
     * that thread (uzramd lowers its priority: the pass gives way to the
     * I/O path).
     */
    unsigned cold_after;
    void (*cold_thread_init)(void);
};

/* The most pages one bundle holds, and the cold codec's default zstd level. */
#define STORE_BUNDLE_MAX 16u
#define STORE_COLD_LEVEL 6
/* The longest cold_after, in seconds: a year. */
#define STORE_COLD_AFTER_MAX 31536000u

/* The longest a write waits for eviction to make room, in milliseconds. */
#define STORE_EVICT_WAIT_MS 10000

/*
 * Create a store.  Returns NULL with errno EINVAL (size 0, not a multiple
 * of 4096 or above STORE_MAX_SIZE; level outside the codec's range;
 * huge_threshold above 4096; compact_threshold_pct above 100) or ENOMEM.
 */
struct store *store_new(const struct store_config *cfg) __attribute__((nonnull));

/*
 * Stop the compaction thread and free everything, the contexts of threads
 * still alive included.  Accepts NULL.  No call on the store may be running,
 * and threads that used it must not be exiting at the same time (their
 * context's destructor touches the store).
 */
void store_free(struct store *s);

/* The device size in bytes. */
uint64_t store_size(const struct store *s) __attribute__((nonnull));

/*
 * Make sure the calling thread has its codec context and bounce buffers,
 * so that its later requests allocate nothing.  Front ends call this once in
 * each worker thread before it serves; a thread that does not gets them on
 * its first request (without a reserve; with one, such requests fail with
 * -ENOMEM).  They are given back when the thread exits.  -ENOMEM when they
 * cannot be had.
 */
int store_thread_prepare(struct store *s) __attribute__((nonnull));

/*
 * Fill the reserve up to its target now, as the refill thread does; may
 * wait for memory.  0, -ENOMEM (what could be had was populated), or
 * -EINVAL for a store without a reserve.
 */
int store_reserve_refill(struct store *s) __attribute__((nonnull));

/*
 * Read len bytes at off into buf.  Never-written and discarded ranges read
 * as zeros without allocating.
 * -EINVAL  off + len overflows or passes the device's end (counted in
 *          invalid_io);
 * -EIO     a stored page failed to decompress (counted in failed_reads; the
 *          rest of buf is unspecified);
 * -ENOMEM  the calling thread had no codec context and none could be made
 *          (failed_reads); never after store_thread_prepare() succeeded.
 */
int store_read(struct store *s, void *buf, uint64_t len, uint64_t off)
    __attribute__((nonnull));

/*
 * Write len bytes from buf at off.  Partial pages are read, modified and
 * written back.  Pages are stored in order; on failure, the pages before
 * the one that failed hold the new data, that one and those after it still
 * hold exactly what they held before.
 * -EINVAL  out of range (invalid_io);
 * -ENOSPC  storing a page would take the allocator past mem_limit even
 *          after a compaction, or the reserve was empty (failed_writes,
 *          reserve_misses);
 * -ENOMEM  the allocator could not get memory from the OS, or the thread
 *          had no codec context and none could be made (failed_writes);
 * -EIO     a partial page's old content failed to decompress (failed_writes).
 */
int store_write(struct store *s, const void *buf, uint64_t len, uint64_t off)
    __attribute__((nonnull));

/* Flags of store_write_zeroes(). */
enum store_zero_flags {
    /*
     * Leave no hole: whole slots become zero-filled pages (which take no
     * allocator memory either, but count as data for store_seek(), as
     * ZERO but not HOLE for store_extent(), and in same_pages), and edges
     * that end up all zeros stay so.  NBD's NO_HOLE, and fallocate's
     * ZERO_RANGE, which leaves the range allocated.
     */
    STORE_ZERO_NO_HOLE = 1u << 0,
};

/*
 * Make [off, off + len) read as zeros.  Whole slots in the range are
 * emptied and their memory freed (with STORE_ZERO_NO_HOLE: made
 * zero-filled pages); partial slots at the edges are zeroed by
 * read-modify-write, and emptied if that leaves them all zeros.
 *   store_discard():      counts the emptied slots in notify_free (a trim,
 *                         FUSE PUNCH_HOLE, NBD_CMD_TRIM);
 *   store_write_zeroes(): counts a write request (FUSE ZERO_RANGE,
 *                         NBD_CMD_WRITE_ZEROES); flags from store_zero_flags.
 * Errors as store_write(); the edges are the only part that can fail.
 */
int store_discard(struct store *s, uint64_t len, uint64_t off) __attribute__((nonnull));
int store_write_zeroes(struct store *s, uint64_t len, uint64_t off, unsigned flags)
    __attribute__((nonnull));

/*
 * Counted, and otherwise nothing to do: every write is complete when it
 * returns, and the backing store only holds what memory cannot, for a
 * device that does not outlive the daemon, so there is nothing to make
 * durable (an fdatasync per flush would only cost).  Returns 0.
 */
int store_flush(struct store *s) __attribute__((nonnull));

/*
 * lseek's SEEK_DATA and SEEK_HOLE at slot granularity: the first offset at
 * or after off that is in a slot holding data (data = true) or in an empty
 * slot (data = false).  Same-filled slots are data, zero-filled ones too
 * (as the file's content is what was written).  The device's end counts as
 * a hole.  -ENXIO when off >= the device size, or when data is true and
 * there is no data at or after off.
 */
int store_seek(struct store *s, uint64_t off, bool data, uint64_t *ret_off)
    __attribute__((nonnull));

/* Status bits of an extent, as NBD's base:allocation context has them. */
enum store_extent_flags {
    STORE_EXTENT_HOLE = 1u << 0,  /* never written or discarded: takes nothing */
    STORE_EXTENT_ZERO = 1u << 1,  /* reads as zeros (holes, and zero-filled pages) */
};

/*
 * The extent that starts at off: *ret_len is the length, at most len and
 * never past the device's end, of the run of slots from off on that share
 * one status, and *ret_flags that status: HOLE | ZERO for empty slots, ZERO
 * for slots that hold a zero-filled page, 0 for data.  off need not be
 * aligned; the run ends on a slot boundary unless len or the device's end
 * cut it first.  A snapshot: writes racing the call may change it.
 * -EINVAL when len is 0 or off is at or past the device's end.
 */
int store_extent(struct store *s, uint64_t off, uint64_t len,
                 uint64_t *ret_len, unsigned *ret_flags)
    __attribute__((nonnull));

/*
 * Compact the pool now.  Returns the number of 4 KiB pages given back to
 * the OS (0 or more).
 */
int64_t store_compact(struct store *s) __attribute__((nonnull));

/*
 * Mark idle the slots not read or written for at least age_sec seconds
 * (0: every slot holding data), as writing to zram's idle file does.  A
 * read or write of a slot clears its mark.  Returns the number of slots
 * marked idle now (those marked before and untouched since included).
 */
int64_t store_mark_idle(struct store *s, uint64_t age_sec) __attribute__((nonnull));

/* Which slots store_writeback() and store_recompress() take. */
enum store_select {
    STORE_SEL_IDLE = 1u << 0,      /* slots marked idle */
    STORE_SEL_HUGE = 1u << 1,      /* slots holding a raw (incompressible) page */
    STORE_SEL_ALL  = 1u << 2,      /* every slot with an object */
};

/*
 * Write back now, to the backing store, the slots sel selects (IDLE, HUGE,
 * IDLE|HUGE: both at once, as zram's huge_idle, or ALL), at most
 * limit_pages of them (0: no limit).  Same-filled and empty slots are never
 * written back (they take no memory), nor slots written back already.
 * Returns the number of pages written back; -ENOTSUP without a backing
 * store; -EINVAL for a bad sel; -ENOMEM if the calling thread has no
 * context and none can be made (it makes one if need be, reserve or not:
 * a job is not on the I/O path); the backing store's error (-EIO, -ENOSPC,
 * -ENOTCONN) if it failed before any page was written.  A failure leaves the
 * page it was writing in memory, untouched.
 */
int64_t store_writeback(struct store *s, unsigned sel, uint64_t limit_pages)
    __attribute__((nonnull));

/*
 * Recompress with the second codec the slots sel selects (IDLE or HUGE,
 * or both) whose object is at least threshold bytes (0: any), keeping a
 * result only when it lands in a smaller size class of the pool than the
 * object it would replace (zram's rule).  Slots written back or recompressed
 * already are passed by.  Returns the number of pages whose new object was
 * kept; -ENOTSUP without a second codec; -EINVAL for a bad sel; -ENOMEM
 * as store_writeback().
 */
int64_t store_recompress(struct store *s, unsigned sel, unsigned threshold)
    __attribute__((nonnull));

/*
 * The cold pass: compress the slots sel selects (IDLE or ALL) that hold an
 * object of their own together with the cold codec, up to bundle_pages
 * neighbours (an aligned group of slots) in one object of the pool, when
 * that takes less memory than their objects did.  No slot lock is held
 * while it compresses; a slot written, read or discarded meanwhile stays
 * out of the bundle.  Returns the number of pages bundled; -ENOTSUP
 * without a cold codec; -EINVAL for a bad sel; -ENOMEM as
 * store_writeback().  A bundle the pool cannot hold (its limit, its
 * reserve) is not made, and the pass ends with what it has (-ENOSPC if
 * that is nothing); with a reserve, it also ends when half of the reserve
 * is in use, which is the I/O path's.
 */
int64_t store_bundle(struct store *s, unsigned sel) __attribute__((nonnull));

/*
 * How far the store_writeback() or store_recompress() under way has got,
 * or the last one when none runs (whether one runs is the caller's to
 * know: it started it): the pages it selected,
 * counted when it began (with writeback's limit applied; an estimate, as
 * writes move slots meanwhile), and the selected pages it has dealt with
 * (written back; tried for recompression).  For a progress display: any
 * thread, any time, relaxed reads.  One job at a time is assumed (the
 * control server runs one); two at once mix their figures.
 */
struct store_progress {
    uint64_t selected, done;
};
void store_progress(struct store *s, struct store_progress *ret) __attribute__((nonnull));

/*
 * Settings that can change while the store serves.  A new mem_limit below
 * what is used now is accepted: writes then fail until discards bring the
 * use under it.  0 removes the limit.  The threshold is as in
 * store_config (0 pauses automatic compaction).  -EINVAL when out of range.
 */
int store_set_mem_limit(struct store *s, uint64_t bytes) __attribute__((nonnull));
int store_set_compact_threshold(struct store *s, unsigned pct) __attribute__((nonnull));
/*
 * The background cold pass's age (store_config.cold_after): a pass under
 * way ends, and one with the new age starts (none with 0).  -ENOTSUP
 * without a cold codec, -EINVAL above STORE_COLD_AFTER_MAX.
 */
int store_set_cold_after(struct store *s, unsigned sec) __attribute__((nonnull));
/* Watermarks in percent of mem_limit: 0 < low < high <= 100, else -EINVAL. */
int store_set_watermarks(struct store *s, unsigned high_pct, unsigned low_pct)
    __attribute__((nonnull));
/* Reset mem_used_max to mem_used_total, as writing 0 to zram's mem_used_max does. */
void store_reset_mem_used_max(struct store *s) __attribute__((nonnull));

/*
 * Every statistic of the store, declared once, in the order the control
 * verb `stat` prints them: X(type, name, source).  The names and meanings
 * are the kernel zram's mm_stat, io_stat and bd_stat
 * (Documentation/admin-guide/blockdev/zram.rst) where zram has them; sizes
 * are in bytes unless the name says pages.
 *
 *   type    u64, u32 or bool; err is a negative errno (0: none), which the
 *           control socket prints by its name
 *   source  COUNTER: an atomic counter in struct store of the same name,
 *           which the code bumps with counter_add() and store_get_stats()
 *           copies; DERIVED: store_get_stats() works it out
 *
 * This one list makes the fields of struct store_stats, the store's
 * counters, their copy and the keys of `stat`: adding a counter is one line
 * here and a counter_add() where the event happens.
 */
/* clang-format off */
#define STORE_STATS(X)                                                                         \
    X(u64, disksize, DERIVED)               /* the device's size */                             \
    X(u64, orig_data_size, DERIVED)         /* uncompressed bytes stored, same-filled too */    \
    X(u64, compr_data_size, COUNTER)        /* compressed bytes stored (raw pages count 4096) */ \
    X(u64, mem_used_total, DERIVED)         /* memory the allocator holds: pages and metadata */ \
    X(u64, mem_limit, DERIVED)              /* 0: none */                                       \
    X(u64, mem_used_max, COUNTER)           /* the highest mem_used_total seen */               \
    X(u64, same_pages, COUNTER)             /* slots holding a same-filled page */              \
    X(u64, pages_compacted, DERIVED)        /* pages freed by compaction since creation */      \
    X(u64, huge_pages, COUNTER)             /* slots holding a raw (incompressible) page */     \
    X(u64, huge_pages_since, COUNTER)       /* raw pages stored since creation */               \
    X(u64, failed_reads, COUNTER)           /* requests that failed */                          \
    X(u64, failed_writes, COUNTER)                                                              \
    X(u64, invalid_io, COUNTER)             /* requests out of range */                         \
    X(u64, notify_free, COUNTER)            /* slots emptied by discard */                      \
    X(u64, read_reqs, COUNTER)                                                                  \
    X(u64, write_reqs, COUNTER)                                                                 \
    X(u64, discard_reqs, COUNTER)                                                               \
    X(u64, flush_reqs, COUNTER)                                                                 \
    X(u64, read_bytes, COUNTER)                                                                 \
    X(u64, write_bytes, COUNTER)                                                                \
    X(u64, discard_bytes, COUNTER)                                                              \
    X(u64, compactions, COUNTER)            /* compactions run, by hand or automatically */     \
    X(u64, limit_rejects, COUNTER)          /* allocations refused at mem_limit (-ENOSPC) */    \
    X(u32, compact_threshold_pct, DERIVED)  /* automatic compaction's threshold; 0: off */      \
    X(u64, bd_count, COUNTER)               /* slots whose page is on the backing store now */  \
    X(u64, bd_reads, COUNTER)               /* pages read from the backing store */             \
    X(u64, bd_writes, COUNTER)              /* pages written to the backing store */            \
    X(u64, bd_read_errors, DERIVED)                                                             \
    X(u64, bd_write_errors, DERIVED)                                                            \
    X(err, bd_last_error, DERIVED)          /* the last backing error, or 0 */                  \
    X(bool, bd_connected, DERIVED)          /* false while an NBD backing server is away */     \
    X(bool, bd_direct, DERIVED)             /* the backing store can do direct I/O... */        \
    X(bool, bd_pressure, DERIVED)           /* ...and does now: memory is short */              \
    X(u64, bd_blocks, DERIVED)              /* blocks the backing store has */                  \
    X(u64, wb_high, DERIVED)                /* the watermarks in bytes (0 without a limit) */   \
    X(u64, wb_low, DERIVED)                                                                     \
    X(u32, high_watermark, DERIVED)         /* the same in percent of mem_limit */              \
    X(u32, low_watermark, DERIVED)                                                              \
    X(u64, evictions, COUNTER)              /* eviction passes run */                           \
    X(u64, pages_evicted, DERIVED)          /* pool pages freed whole by zs_shrink() */         \
    X(u64, pages_promoted, COUNTER)         /* written-back pages brought back to memory */     \
    X(u64, write_waits, COUNTER)            /* writes that waited for eviction */               \
    X(u64, idle_pages, COUNTER)             /* slots marked idle now */                         \
    X(u64, recompressed, COUNTER)           /* slots holding an object of the second codec */   \
    X(u64, bundles, COUNTER)                /* bundles held (cold tier) */                      \
    X(u64, bundled_pages, COUNTER)          /* slots whose page is in a bundle */               \
    X(u64, bundle_bytes, COUNTER)           /* bytes of the bundles' objects */                 \
    X(u64, bundle_reads, COUNTER)           /* pages read out of a bundle */                    \
    X(u64, bundle_unpacks, COUNTER)         /* bundled pages read twice, stored alone again */  \
    X(u32, cold_after, DERIVED)             /* the background cold pass's age, s; 0: off */     \
    X(u64, cold_passes, COUNTER)            /* cold passes the store ran on its own */          \
    X(u64, bd_bad_sums, DERIVED)            /* backing reads whose seal failed (-EIO) */        \
    X(u64, bd_meta_bytes, DERIVED)          /* memory of the backing's seal table */            \
    X(u64, reserve, DERIVED)                /* the reserve's target, bytes (0: no reserve) */   \
    X(u64, reserve_free, DERIVED)           /* populated and unused now */                      \
    X(u64, reserve_min, DERIVED)            /* the least reserve_free has been */               \
    X(u64, reserve_misses, COUNTER)         /* writes failed for an empty reserve (-ENOSPC) */  \
    X(u64, reserve_waits, COUNTER)          /* writes that waited for a refill and went on */   \
    X(u64, reserve_released, COUNTER)       /* bytes given back to the kernel, memory short */  \
    X(u64, reserve_refills, DERIVED)        /* refills that populated memory */                 \
    X(u64, reserve_failures, COUNTER)       /* refills that could not get the memory */
/* clang-format on */

#define STORE_STAT_TYPE_u64 uint64_t
#define STORE_STAT_TYPE_u32 uint32_t
#define STORE_STAT_TYPE_bool bool
#define STORE_STAT_TYPE_err int

struct store_stats {
#define STORE_STAT_FIELD(type, name, source) STORE_STAT_TYPE_##type name;
    STORE_STATS(STORE_STAT_FIELD)
#undef STORE_STAT_FIELD
    bool has_backing;                       /* not printed: `backing` says more */
};

/*
 * Fill *ret.  Lock-free: each figure is exact when read, but they are not
 * one atomic snapshot while requests run.
 */
void store_get_stats(struct store *s, struct store_stats *ret) __attribute__((nonnull));
/*
 * Requests begun so far, of every kind (reads, writes, discards, flushes):
 * whether I/O still reaches the store, for the reserve's watchdog and
 * uzramd's last resort.  Lock-free; reads four counters.
 */
uint64_t store_requests_begun(struct store *s) __attribute__((nonnull));

#endif /* UZRAM_STORE_H */
