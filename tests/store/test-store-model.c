/* SPDX-License-Identifier: MIT */
/*
 * The store against a reference model.
 *
 * The model is a plain byte array the size of the device, plus one flag per
 * slot saying whether the slot should hold data (for SEEK_DATA/SEEK_HOLE and
 * orig_data_size).  A fixed seed drives random operations on both: writes
 * at any offset and length up to a few pages, of random, text-like,
 * same-filled and zero bytes; reads; discards and write-zeroes of any
 * range; seeks; compactions by hand, while the background thread compacts
 * on its own.  After every operation the range it touched (with a margin)
 * is read back and compared; the whole device is compared every few
 * thousand operations and at the end, as are the slot flags and the stats.
 * Offsets are drawn from a small hot region half the time, so slots are
 * overwritten often and the pool fragments.
 *
 * Each codec built runs its share of operations, then runs them again with
 * writeback: a backing file, a memory limit of a fraction of the data so
 * that the eviction thread writes pages back all along (by the clock for
 * one run, by zs_shrink() for the other; compressed or raw on the backing
 * file at random), and three more operations interleaved: marking idle,
 * writing back by hand (idle, huge, both or all, with a random limit) and
 * recompressing with zstd.  Every write must still succeed: with a backing
 * store a full pool waits for eviction instead of failing.
 *
 * Every run has a cold tier (zstd bundles, when zstd is built): one
 * operation in a hundred or so bundles the idle or all pages, so that the
 * reads, partial writes, discards, compactions, writeback and promotion
 * that follow meet bundled pages, and reads unpack them again.
 *
 * Last, each codec runs with a reserve (store_config.reserve) too small for
 * the load and no refill thread: the test refills now and then, so that
 * writes, discards and write-zeroes find it empty at times and fail with
 * -ENOSPC.  Such a failure must keep the store's promise: the pages before
 * the one that failed hold the new data, that one and those after it what
 * they held before (the model learns which from reading back), and the
 * failure is counted.
 *
 * Replay a failure with the seed it prints:
 *   UZRAM_TEST_SEED=<seed> ./test-store-model     (or the seed as argv[1])
 * UZRAM_MODEL_OPS=<n> sets the number of operations per codec.
 */
#include "storetest.h"

#include <fcntl.h>
#include <unistd.h>

#include "backing.h"

#define DEFAULT_SEED 0x5703eull
#define DEFAULT_OPS 60000
#define SIZE (16u << 20)
#define NSLOTS (SIZE / PG)
#define MAX_LEN (4 * PG + 100)
#define FULL_CHECK_OPS 5000
/* With writeback: about a quarter of what the model's data takes compressed. */
#define WB_MEM_LIMIT (1536u << 10)
/* Reserve runs: refilled every this many operations on average. */
#define RESERVE_BYTES (256u << 10)
#define REFILL_ONE_IN 40

static struct {
    struct store *s;
    struct test_rng rng;
    uint64_t seed, op;
    const char *codec;
    const char *mode;
    const char *what;
    uint64_t off, len;
    unsigned char *ref;
    bool used[NSLOTS];
    unsigned char *buf, *got;
    bool reserve;               /* the run has a reserve: writes may fail */
    uint64_t bundled;           /* pages the cold passes bundled */
    bool backed;                /* writeback, and a memory limit (WB_MEM_LIMIT) */
    uint64_t failed, partial;   /* operations failed with -ENOSPC; of them, part-done */
} m;

static void model_fail_hook(void)
{
    fprintf(stderr, "  seed %#jx (UZRAM_TEST_SEED=%#jx to replay), codec %s%s, op %ju: %s off %ju len %ju\n",
            (uintmax_t)m.seed, (uintmax_t)m.seed, m.codec, m.mode ? m.mode : "", (uintmax_t)m.op,
            m.what ? m.what : "-", (uintmax_t)m.off, (uintmax_t)m.len);
}

static void pick_range(uint64_t *ret_off, uint64_t *ret_len)
{
    uint64_t len, off;
    switch (rng_below(&m.rng, 4)) {
    case 0:     /* whole pages */
        len = rng_range(&m.rng, 1, 4) * PG;
        off = rng_below(&m.rng, NSLOTS) * PG;
        break;
    case 1:     /* small, anywhere */
        len = rng_range(&m.rng, 1, 64);
        off = rng_below(&m.rng, SIZE);
        break;
    default:    /* any length, any offset */
        len = rng_range(&m.rng, 1, MAX_LEN);
        off = rng_below(&m.rng, SIZE);
        break;
    }
    /* Half the time in the first 256 KiB, where it fragments. */
    if (rng_one_in(&m.rng, 2))
        off %= 256u << 10;
    if (len > SIZE - off)
        len = SIZE - off;
    if (len == 0)
        len = 1, off = SIZE - 1;
    *ret_off = off;
    *ret_len = len;
}

static void fill_data(unsigned char *p, size_t len)
{
    switch (rng_below(&m.rng, 5)) {
    case 0:
        rng_fill(&m.rng, p, len);
        break;
    case 1:
    case 2:
        st_text(&m.rng, p, len);
        break;
    case 3:
        st_fill_word(p, len, rng_one_in(&m.rng, 2) ? 0x0101010101010101ull * (rng_next(&m.rng) & 0xff)
                                                    : rng_next(&m.rng));
        break;
    default:
        memset(p, 0, len);
        break;
    }
}

/* Compare [off, off + len) widened by up to a page each side. */
static void verify_range(uint64_t off, uint64_t len)
{
    uint64_t lo = off > PG ? off - rng_below(&m.rng, PG) : 0;
    uint64_t hi = off + len + rng_below(&m.rng, PG);
    if (hi > SIZE)
        hi = SIZE;
    CHECK_EQ(store_read(m.s, m.buf, hi - lo, lo), 0);
    for (uint64_t i = lo; i < hi; i++)
        CHECKF(m.buf[i - lo] == m.ref[i], "byte %ju: store %#x, model %#x", (uintmax_t)i,
               m.buf[i - lo], m.ref[i]);
}

static void verify_all(void)
{
    const char *what = m.what;
    m.what = "full check";
    for (uint64_t off = 0; off < SIZE; off += MAX_LEN * 4) {
        uint64_t n = SIZE - off < MAX_LEN * 4 ? SIZE - off : MAX_LEN * 4;
        CHECK_EQ(store_read(m.s, m.buf, n, off), 0);
        if (memcmp(m.buf, m.ref + off, n) != 0) {
            for (uint64_t i = 0; i < n; i++)
                CHECKF(m.buf[i] == m.ref[off + i], "byte %ju: store %#x, model %#x",
                       (uintmax_t)(off + i), m.buf[i], m.ref[off + i]);
        }
    }
    uint64_t nused = 0;
    for (uint64_t i = 0; i < NSLOTS; i++)
        nused += m.used[i];
    /*
     * orig_data_size counts the pages in memory, bd_count those written
     * back.  The eviction thread moves a page from one to the other in two
     * steps (each counter exact, the two not one snapshot), and with bundles
     * it may seldom be still, as they hold memory it cannot write back: lift
     * the limit so that it stops, count (again while a move ends), then set
     * the limit again.
     */
    if (m.backed)
        CHECK_EQ(store_set_mem_limit(m.s, 0), 0);
    struct store_stats st = st_stats(m.s);
    for (int tries = 0; tries < 1000 && st.orig_data_size + st.bd_count * PG != nused * PG;
         tries++) {
        usleep(1000);
        st = st_stats(m.s);
    }
    CHECK_EQU(st.orig_data_size + st.bd_count * PG, nused * PG);
    if (m.backed)
        CHECK_EQ(store_set_mem_limit(m.s, WB_MEM_LIMIT), 0);
    CHECK_EQU(st.failed_reads, 0);
    CHECK_EQU(st.failed_writes, m.failed);
    CHECK_EQU(st.invalid_io, 0);
    CHECK(st.mem_used_total >= st.compr_data_size);
    CHECK(st.compr_data_size >= st.bundle_bytes);
    /* A bundle lives while a page of it does. */
    CHECK(st.bundled_pages >= st.bundles);
    CHECK(st.mem_used_max >= st.mem_used_total);
    /* Walk data and holes with seek: they must match the slot flags. */
    uint64_t off = 0;
    while (off < SIZE) {
        uint64_t d, h;
        int r = store_seek(m.s, off, true, &d);
        if (r == -ENXIO) {
            for (uint64_t i = off / PG; i < NSLOTS; i++)
                CHECKF(!m.used[i], "slot %ju has data past the last SEEK_DATA", (uintmax_t)i);
            break;
        }
        CHECK_EQ(r, 0);
        for (uint64_t i = off / PG; i < d / PG; i++)
            CHECKF(!m.used[i], "slot %ju skipped by SEEK_DATA", (uintmax_t)i);
        CHECKF(m.used[d / PG], "SEEK_DATA landed on empty slot %ju", (uintmax_t)(d / PG));
        CHECK_EQ(store_seek(m.s, d, false, &h), 0);
        for (uint64_t i = d / PG; i < h / PG; i++)
            CHECKF(m.used[i], "slot %ju inside data is empty", (uintmax_t)i);
        CHECK(h == SIZE || !m.used[h / PG]);
        off = h;
    }
    m.what = what;
}

/* The model's side of zeroing: whole slots empty, edges empty if now zero. */
static void model_zero(uint64_t off, uint64_t len)
{
    memset(m.ref + off, 0, len);
    for (uint64_t i = off / PG; i <= (off + len - 1) / PG; i++) {
        if (i * PG >= off && (i + 1) * PG <= off + len)
            m.used[i] = false;
        else if (m.used[i] && st_all_zero(m.ref + i * PG, PG))
            m.used[i] = false;
    }
}

static void seek_check(void)
{
    uint64_t off = rng_below(&m.rng, SIZE), got;
    bool data = rng_one_in(&m.rng, 2);
    m.off = off;
    int r = store_seek(m.s, off, data, &got);
    uint64_t i = off / PG;
    while (i < NSLOTS && m.used[i] != data)
        i++;
    if (i == NSLOTS) {
        if (data) {
            CHECK_EQ(r, -ENXIO);
        } else {
            CHECK_EQ(r, 0);
            CHECK_EQU(got, SIZE);
        }
        return;
    }
    CHECK_EQ(r, 0);
    CHECK_EQU(got, i == off / PG ? off : i * PG);
}

/*
 * An operation on [off, off + len) failed with -ENOSPC (an empty reserve).
 * want is what it would have written (NULL: zeros).  Read the range back:
 * a prefix of its pieces (up to each page boundary) holds the new bytes,
 * the rest the old ones (still in the model).  Returns where the new bytes
 * end, for the caller to apply the operation's effect up to there; slots
 * whose bytes did not change either way take the store's own word for
 * whether they hold data (SEEK_DATA), which must be the old or the new.
 */
/* Whether the store says slot i holds data (SEEK_DATA lands in it). */
static bool store_has_data(uint64_t i)
{
    uint64_t d;
    return store_seek(m.s, i * PG, true, &d) == 0 && d < (i + 1) * PG;
}

/*
 * After an operation that failed part way, the slots of the done prefix
 * [off, done): where it did not change the bytes (zeros written over an
 * empty slot, a discard of a zero-filled page), whether the store did the
 * page or failed before it cannot be told from the bytes, so the store's
 * word stands; failed_split() has checked it against the old and the new.
 */
static void model_used_from_store(uint64_t off, uint64_t done)
{
    for (uint64_t i = off / PG; i <= (done - 1) / PG; i++)
        m.used[i] = store_has_data(i);
}

/* A write's done prefix [off, done) holds data (failed: as the store says). */
static void model_written(uint64_t off, uint64_t done, bool failed)
{
    if (failed) {
        model_used_from_store(off, done);
        return;
    }
    for (uint64_t i = off / PG; i <= (done - 1) / PG; i++)
        m.used[i] = true;
}

static uint64_t failed_split(uint64_t off, uint64_t len, const unsigned char *want, bool new_used)
{
    CHECK_EQ(store_read(m.s, m.got, len, off), 0);
    uint64_t pos = off, split = off;
    bool in_prefix = true;
    while (pos < off + len) {
        uint64_t end = (pos / PG + 1) * PG;
        if (end > off + len)
            end = off + len;
        const unsigned char *now = m.got + (pos - off);
        bool is_new = want ? memcmp(now, want + (pos - off), end - pos) == 0
                           : st_all_zero(now, end - pos);
        bool is_old = memcmp(now, m.ref + pos, end - pos) == 0;
        if (in_prefix && is_new && !is_old)
            split = end;
        else if (!is_old)
            CHECKF(0, "after a failed %s, bytes %ju..%ju hold neither the old nor (as a "
                   "prefix) the new data", m.what, (uintmax_t)pos, (uintmax_t)end);
        else if (!(is_new && is_old))
            in_prefix = false;
        else if (in_prefix)
            split = end;    /* the same either way: the seek check below decides */
        pos = end;
    }
    /* Slots of unchanged bytes: old or new "holds data", as the store says. */
    for (uint64_t i = off / PG; i <= (off + len - 1) / PG; i++) {
        bool has = store_has_data(i);
        CHECKF(has == m.used[i] || has == new_used || (!new_used && !has),
               "after a failed %s, slot %ju holds %s", m.what, (uintmax_t)i,
               has ? "data" : "nothing");
        if (i * PG >= split)
            CHECKF(has == m.used[i], "after a failed %s, slot %ju past where it failed "
                   "changed its data flag", m.what, (uintmax_t)i);
    }
    m.failed++;
    m.partial += split > off;
    return split;
}

/* Reserve runs: an operation's result, -ENOSPC allowed; true if it completed. */
static bool op_done(int r)
{
    if (r == 0)
        return true;
    CHECKF(m.reserve && r == -ENOSPC, "%s: %d (%s)", m.what, r, strerror(-r));
    return false;
}

/* After a failed zeroing, slots of the done prefix: as model_zero() would. */
static void model_zero(uint64_t off, uint64_t len);

/* The cold pass: mark everything idle and bundle it, or bundle every object. */
static void bundle_op(void)
{
    m.what = "bundle";
    if (!codec_find("zstd"))
        return;
    unsigned sel = STORE_SEL_ALL;
    if (rng_one_in(&m.rng, 2)) {
        CHECK(store_mark_idle(m.s, 0) >= 0);
        sel = STORE_SEL_IDLE;
    }
    int64_t n = store_bundle(m.s, sel);
    /* A reserve or a memory limit may leave no room for a bundle: then none is made. */
    CHECKF(n >= 0 || ((m.reserve || m.backed) && n == -ENOSPC), "store_bundle(%#x) = %jd",
           sel, (intmax_t)n);
    m.bundled += n > 0 ? (uint64_t)n : 0;
}

/* The operations only a store with writeback has. */
static void writeback_op(unsigned k)
{
    static const unsigned sels[] = {
        STORE_SEL_IDLE, STORE_SEL_HUGE, STORE_SEL_IDLE | STORE_SEL_HUGE, STORE_SEL_ALL,
    };
    if (k < 30) {
        m.what = "mark idle";
        CHECK(store_mark_idle(m.s, rng_below(&m.rng, 2)) >= 0);
    } else if (k < 70) {
        m.what = "writeback";
        unsigned sel = sels[rng_below(&m.rng, 4)];
        uint64_t limit = rng_below(&m.rng, 64);
        int64_t n = store_writeback(m.s, sel, limit);
        CHECKF(n >= 0 && (limit == 0 || (uint64_t)n <= limit),
               "store_writeback(%#x, %ju) = %jd", sel, (uintmax_t)limit, (intmax_t)n);
    } else {
        m.what = "recompress";
        unsigned sel = rng_one_in(&m.rng, 2) ? STORE_SEL_IDLE : STORE_SEL_HUGE;
        int64_t n = store_recompress(m.s, sel, (unsigned)rng_below(&m.rng, 3000));
        CHECKF(n >= 0, "store_recompress = %jd", (intmax_t)n);
    }
}

/*
 * A store for the run: plain, or with writeback to a fresh backing file
 * (policy: 0 the clock, 1 zs_shrink()).
 */
static struct store *model_store(const char *codec, int policy, struct backing **ret_b)
{
    *ret_b = NULL;
    if (policy == -2) {
        struct store_config cfg = {
            .size = SIZE,
            .codec = codec_find(codec),
            .compact_threshold_pct = 10,
            .reserve = RESERVE_BYTES,
            .reserve_manual = true,
            .cold_codec = codec_find("zstd"),
        };
        struct store *s = store_new(&cfg);
        CHECKF(s, "store_new with a reserve: %s", strerror(errno));
        /* With a reserve, a request never makes its thread's context. */
        CHECK_EQ(store_thread_prepare(s), 0);
        return s;
    }
    if (policy < 0) {
        struct store_config cfg = {
            .size = SIZE,
            .codec = codec_find(codec),
            .compact_threshold_pct = 10,
            .cold_codec = codec_find("zstd"),
            /* Small bundles here, the largest in the other runs. */
            .bundle_pages = 4,
        };
        struct store *s = store_new(&cfg);
        CHECKF(s, "store_new: %s", strerror(errno));
        return s;
    }
    char path[64];
    struct backing *b = st_backing_new(path, SIZE);
    unlink(path);
    struct store_config cfg = {
        .size = SIZE,
        .codec = codec_find(codec),
        .mem_limit = WB_MEM_LIMIT,
        .compact_threshold_pct = 10,
        .backing = b,
        .backing_raw = rng_one_in(&m.rng, 2),
        .evict_policy = policy ? STORE_EVICT_ZSPAGE : STORE_EVICT_LRU,
        .recomp_codec = codec_find("zstd"),
        .cold_codec = codec_find("zstd"),
    };
    struct store *s = store_new(&cfg);
    CHECKF(s, "store_new with writeback: %s", strerror(errno));
    *ret_b = b;
    return s;
}

/* A write of random data; on -ENOSPC the model takes the part that was done. */
static void step_write(uint64_t off, uint64_t len)
{
    m.what = "write";
    fill_data(m.buf, len);
    uint64_t done = off + len;
    bool failed = !op_done(store_write(m.s, m.buf, len, off));
    if (failed)
        done = failed_split(off, len, m.buf, true);
    if (done > off) {
        memcpy(m.ref + off, m.buf, done - off);
        model_written(off, done, failed);
    }
    verify_range(off, len);
}

/* A discard or a write-zeroes that may leave holes. */
static void step_zero(uint64_t off, uint64_t len, bool discard)
{
    m.what = discard ? "discard" : "write_zeroes";
    int r = discard ? store_discard(m.s, len, off) : store_write_zeroes(m.s, len, off, 0);
    uint64_t done = off + len;
    bool failed = !op_done(r);
    if (failed)
        done = failed_split(off, len, NULL, false);
    if (done > off)
        model_zero(off, done - off);
    if (failed && done > off)
        model_used_from_store(off, done);
    verify_range(off, len);
}

/* Zeros as data: every slot touched holds something after. */
static void step_zero_no_hole(uint64_t off, uint64_t len)
{
    m.what = "write_zeroes no_hole";
    uint64_t done = off + len;
    bool failed = !op_done(store_write_zeroes(m.s, len, off, STORE_ZERO_NO_HOLE));
    if (failed)
        done = failed_split(off, len, NULL, true);
    if (done > off) {
        memset(m.ref + off, 0, done - off);
        model_written(off, done, failed);
    }
    verify_range(off, len);
}

/* One random operation, k in [0, 100) choosing which; backed: writeback on. */
static void run_step(unsigned k, uint64_t off, uint64_t len, bool backed)
{
    if (k < 45) {
        step_write(off, len);
    } else if (k < 65) {
        m.what = "read";
        verify_range(off, len);
    } else if (k < 80) {
        step_zero(off, len, k < 77);
    } else if (k < 83) {
        step_zero_no_hole(off, len);
    } else if (k < 94 || (k < 96 && !backed)) {
        m.what = "seek";
        seek_check();
    } else if (k < 95 || (k < 98 && !backed)) {
        bundle_op();
    } else if (k < 98) {
        writeback_op((unsigned)rng_below(&m.rng, 100));
    } else {
        m.what = "compact";
        CHECK(store_compact(m.s) >= 0);
    }
}

/* The run's figures, and proof that it exercised what it is for. */
static void report_run(const char *codec, uint64_t nops, bool backed)
{
    struct store_stats st = st_stats(m.s);
    printf("%s%s: %ju ops, orig %ju compr %ju mem %ju same %ju huge %ju compacted %ju compactions %ju\n",
           codec, m.mode, (uintmax_t)nops, (uintmax_t)st.orig_data_size,
           (uintmax_t)st.compr_data_size, (uintmax_t)st.mem_used_total,
           (uintmax_t)st.same_pages, (uintmax_t)st.huge_pages,
           (uintmax_t)st.pages_compacted, (uintmax_t)st.compactions);
    printf("  bundled %ju pages; now %ju bundles of %ju pages in %ju bytes, %ju reads, %ju "
           "unpacks\n",
           (uintmax_t)m.bundled, (uintmax_t)st.bundles, (uintmax_t)st.bundled_pages,
           (uintmax_t)st.bundle_bytes, (uintmax_t)st.bundle_reads,
           (uintmax_t)st.bundle_unpacks);
    /* Bundles were made, read and unpacked, or the run proved nothing about them. */
    if (codec_find("zstd"))
        CHECK(m.bundled > 0 && st.bundle_reads > 0 && st.bundle_unpacks > 0);
    if (m.reserve) {
        printf("  reserve %ju: %ju operations failed (%ju part-done), %ju misses, %ju "
               "refills, low water %ju\n", (uintmax_t)st.reserve, (uintmax_t)m.failed,
               (uintmax_t)m.partial, (uintmax_t)st.reserve_misses,
               (uintmax_t)st.reserve_refills, (uintmax_t)st.reserve_min);
        /* It ran dry and recovered, or the run proved nothing about it. */
        CHECK(m.failed > 0 && st.reserve_misses >= m.failed && st.reserve_refills > 0);
    }
    if (backed) {
        printf("  bd_count %ju bd_reads %ju bd_writes %ju evictions %ju promoted %ju waits %ju recompressed %ju mem_used_max %ju\n",
               (uintmax_t)st.bd_count, (uintmax_t)st.bd_reads, (uintmax_t)st.bd_writes,
               (uintmax_t)st.evictions, (uintmax_t)st.pages_promoted,
               (uintmax_t)st.write_waits, (uintmax_t)st.recompressed,
               (uintmax_t)st.mem_used_max);
        /* The model must have exercised what it is for. */
        CHECK(st.bd_writes > 0 && st.bd_reads > 0 && st.evictions > 0);
        CHECK_EQU(st.bd_read_errors + st.bd_write_errors, 0);
    }
}

/* Empty the store: nothing left on the backing store, then free both. */
static void drain_and_free(struct backing *b)
{
    st_check_drained(m.s);
    struct store_stats st = st_stats(m.s);
    CHECK_EQU(st.bd_count, 0);
    CHECK_EQU(st.idle_pages, 0);
    CHECK_EQU(st.recompressed, 0);
    CHECK_EQU(st.bundles, 0);
    CHECK_EQU(st.bundled_pages, 0);
    CHECK_EQU(st.bundle_bytes, 0);
    if (b) {
        struct backing_stats bs;
        backing_get_stats(b, &bs);
        CHECK_EQU(bs.blocks_used, 0);
    }
    store_free(m.s);
    backing_close(b);
    m.s = NULL;
}

/*
 * One run: policy -1 plain, 0 writeback by the clock, 1 by zs_shrink(),
 * -2 with a small reserve refilled by hand.
 */
static void run(const char *codec, uint64_t nops, int policy)
{
    static const char *const modes[] = { " reserve", "", " writeback clock",
                                         " writeback zspage" };
    struct backing *b;
    m.codec = codec;
    m.mode = modes[policy + 2];
    m.reserve = policy == -2;
    m.backed = policy >= 0;
    m.failed = m.partial = m.bundled = 0;
    m.s = model_store(codec, policy, &b);
    memset(m.ref, 0, SIZE);
    memset(m.used, 0, sizeof(m.used));
    for (m.op = 0; m.op < nops; m.op++) {
        uint64_t off, len;
        unsigned k = (unsigned)rng_below(&m.rng, 100);
        pick_range(&off, &len);
        m.off = off;
        m.len = len;
        if (m.reserve && rng_one_in(&m.rng, REFILL_ONE_IN)) {
            m.what = "refill";
            CHECK_EQ(store_reserve_refill(m.s), 0);
            continue;
        }
        run_step(k, off, len, b != NULL);
        if (m.op % FULL_CHECK_OPS == FULL_CHECK_OPS - 1)
            verify_all();
    }
    verify_all();
    report_run(codec, nops, b != NULL);
    drain_and_free(b);
}

int main(int argc, char **argv)
{
    m.seed = test_seed(argc, argv, DEFAULT_SEED);
    uint64_t nops = test_env_u64("UZRAM_MODEL_OPS", DEFAULT_OPS);
    rng_seed(&m.rng, m.seed);
    test_fail_hook = model_fail_hook;
    printf("seed %#jx, %ju ops per codec\n", (uintmax_t)m.seed, (uintmax_t)nops);
    m.ref = malloc(SIZE);
    m.buf = malloc(SIZE);
    m.got = malloc(SIZE);
    CHECK(m.ref && m.buf && m.got);
    /* Not under RUN_TEST's watchdog: the run's length depends on the ops asked for. */
    for (size_t i = 0; codec_get(i); i++)
        run(codec_name(codec_get(i)), nops, -1);
    /* With writeback: each policy once, with lz4 (the default) and the last codec. */
    run("lz4", nops, 0);
    for (size_t i = 0; codec_get(i); i++)
        if (!codec_get(i + 1))
            run(codec_name(codec_get(i)), nops, 1);
    /* With a reserve that runs dry: every codec. */
    for (size_t i = 0; codec_get(i); i++)
        run(codec_name(codec_get(i)), nops, -2);
    free(m.ref);
    free(m.buf);
    free(m.got);
    return 0;
}
