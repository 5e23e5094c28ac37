/* SPDX-License-Identifier: MIT */
/*
 * Threads racing each other through the store, and the store's own
 * compaction thread, for ThreadSanitizer and for lost updates:
 *   - owners: each writes and reads its own region (full and partial
 *     pages, every kind of data), keeping a private copy to compare with;
 *   - sharers: several threads write random parts of their own quarter of
 *     the same few pages, so every write is a read-modify-write racing the
 *     others' on the same slot; a lost update shows as a quarter reverted;
 *   - a churner writes and discards a scratch region in a scattered way,
 *     compacts by hand, seeks, and changes the settings, while the
 *     background thread compacts when waste passes 5%;
 *   - a cold thread bundles idle or all pages (the cold tier) over and over,
 *     so that everyone's reads, partial writes and discards meet bundles
 *     being made, read, unpacked and emptied; the store's own cold thread
 *     (cold_after, which the churner changes) bundles pages a second old
 *     or more, taking turns with it.
 * Then all of it again with writeback: a backing file and a memory limit a
 * fraction of the data, so the eviction thread writes pages back under
 * everyone's feet (by the clock, then by zs_shrink()), every write that
 * finds the pool full waits for it, reads come from the backing file and
 * promote pages, and the churner also marks slots idle, writes back and
 * recompresses by hand.
 * All work is counted in operations, not time; a watchdog turns a deadlock
 * into a failure that says so.
 *
 * Replay with UZRAM_TEST_SEED=<seed>; UZRAM_STRESS_OPS scales the work.
 */
#include <pthread.h>
#include <stdatomic.h>

#include <fcntl.h>
#include <unistd.h>

#include "backing.h"
#include "storetest.h"

#define DEFAULT_SEED 0xc0ffeeull
#define OWNERS 3
#define OWNER_BYTES (2u << 20)
#define SHARERS 4
#define SHARED_PAGES 8
#define SCRATCH_BYTES (4u << 20)
#define SHARED_OFF ((uint64_t)OWNERS * OWNER_BYTES)
#define SCRATCH_OFF (SHARED_OFF + SHARED_PAGES * PG)
#define SIZE (SCRATCH_OFF + SCRATCH_BYTES)
#define QUARTER (PG / SHARERS)

static struct store *s;
static bool writeback;
static uint64_t seed, nops;
static _Atomic unsigned sharers_left;
static _Atomic uint64_t bundled;

static void fail_hook(void)
{
    fprintf(stderr, "  seed %#jx (UZRAM_TEST_SEED=%#jx to replay)\n", (uintmax_t)seed,
            (uintmax_t)seed);
}

static void fill(struct test_rng *r, unsigned char *p, size_t len)
{
    switch (rng_below(r, 4)) {
    case 0:
        rng_fill(r, p, len);
        break;
    case 1:
        st_fill_word(p, len, rng_one_in(r, 2) ? 0 : rng_next(r));
        break;
    default:
        st_text(r, p, len);
        break;
    }
}

static void *owner_main(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    struct test_rng r;
    rng_seed(&r, seed * 31 + id);
    uint64_t base = (uint64_t)id * OWNER_BYTES;
    unsigned char *ref = calloc(1, OWNER_BYTES);
    unsigned char *buf = malloc(8 * PG);
    CHECK(ref && buf);
    if (id == 0)
        CHECK_EQ(store_thread_prepare(s), 0);
    for (uint64_t op = 0; op < nops; op++) {
        uint64_t len = rng_one_in(&r, 2) ? rng_range(&r, 1, 4) * PG : rng_range(&r, 1, 3 * PG);
        uint64_t off = rng_one_in(&r, 2) ? rng_below(&r, OWNER_BYTES / PG) * PG
                                         : rng_below(&r, OWNER_BYTES);
        if (len > OWNER_BYTES - off)
            len = OWNER_BYTES - off;
        if (rng_one_in(&r, 3)) {
            CHECK_EQ(store_read(s, buf, len, base + off), 0);
            CHECKF(memcmp(buf, ref + off, len) == 0, "owner %u: off %ju len %ju", id,
                   (uintmax_t)off, (uintmax_t)len);
        } else if (rng_one_in(&r, 10)) {
            CHECK_EQ(store_write_zeroes(s, len, base + off, 0), 0);
            memset(ref + off, 0, len);
        } else {
            fill(&r, buf, len);
            CHECK_EQ(store_write(s, buf, len, base + off), 0);
            memcpy(ref + off, buf, len);
        }
    }
    for (uint64_t off = 0; off < OWNER_BYTES; off += 8 * PG) {
        CHECK_EQ(store_read(s, buf, 8 * PG, base + off), 0);
        CHECKF(memcmp(buf, ref + off, 8 * PG) == 0, "owner %u: final check at %ju", id,
               (uintmax_t)off);
    }
    free(ref);
    free(buf);
    return NULL;
}

static void *sharer_main(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    struct test_rng r;
    rng_seed(&r, seed * 37 + id);
    unsigned char ref[SHARED_PAGES][QUARTER] = { { 0 } };
    unsigned char buf[QUARTER];
    for (uint64_t op = 0; op < nops; op++) {
        unsigned p = (unsigned)rng_below(&r, SHARED_PAGES);
        uint64_t o = rng_below(&r, QUARTER);
        uint64_t len = rng_range(&r, 1, QUARTER - o);
        uint64_t at = SHARED_OFF + p * PG + id * QUARTER;
        if (rng_one_in(&r, 3)) {
            CHECK_EQ(store_read(s, buf, QUARTER, at), 0);
            CHECKF(memcmp(buf, ref[p], QUARTER) == 0, "sharer %u: page %u lost an update", id, p);
        } else {
            fill(&r, buf, len);
            CHECK_EQ(store_write(s, buf, len, at + o), 0);
            memcpy(ref[p] + o, buf, len);
        }
    }
    for (unsigned p = 0; p < SHARED_PAGES; p++) {
        CHECK_EQ(store_read(s, buf, QUARTER, SHARED_OFF + p * PG + id * QUARTER), 0);
        CHECKF(memcmp(buf, ref[p], QUARTER) == 0, "sharer %u: page %u at the end", id, p);
    }
    atomic_fetch_sub(&sharers_left, 1);
    return NULL;
}

static void *churner_main(void *arg)
{
    (void)arg;
    struct test_rng r;
    rng_seed(&r, seed * 41);
    unsigned char page[PG];
    uint64_t pages = SCRATCH_BYTES / PG;
    for (uint64_t op = 0; op < nops / 4 || atomic_load(&sharers_left) > 0; op++) {
        uint64_t i = rng_below(&r, pages);
        switch (rng_below(&r, 10)) {
        case 0:
            CHECK(store_compact(s) >= 0);
            break;
        case 1: {
            uint64_t got;
            int ret = store_seek(s, SCRATCH_OFF + i * PG, rng_one_in(&r, 2), &got);
            CHECK(ret == 0 || ret == -ENXIO);
            break;
        }
        case 2: {
            uint64_t len = rng_range(&r, 1, 3 * PG);
            if (len > SIZE - (SCRATCH_OFF + i * PG))
                len = SIZE - (SCRATCH_OFF + i * PG);
            CHECK_EQ(store_discard(s, len, SCRATCH_OFF + i * PG), 0);
            break;
        }
        case 3:
            if (writeback && rng_one_in(&r, 10)) {
                switch (rng_below(&r, 3)) {
                case 0:
                    CHECK(store_mark_idle(s, 0) >= 0);
                    break;
                case 1:
                    CHECK(store_writeback(s, rng_one_in(&r, 2) ? STORE_SEL_IDLE : STORE_SEL_ALL,
                                          rng_range(&r, 1, 64)) >= 0);
                    break;
                default:
                    CHECK(store_recompress(s, STORE_SEL_IDLE, 0) >= 0);
                    break;
                }
            }
            if (rng_one_in(&r, 50)) {
                CHECK_EQ(store_set_compact_threshold(s, (unsigned)rng_below(&r, 20)), 0);
                store_reset_mem_used_max(s);
                /* The store's cold thread: its pass ends, another starts (or none). */
                CHECK_EQ(store_set_cold_after(s, (unsigned)rng_below(&r, 3)), 0);
            }
            break;
        default:
            st_text(&r, page, PG);
            CHECK_EQ(store_write(s, page, PG, SCRATCH_OFF + i * PG), 0);
            break;
        }
        if (op % 64 == 0) {
            struct store_stats st = st_stats(s);
            CHECK(st.compact_threshold_pct < 20);
        }
    }
    return NULL;
}

static void *cold_main(void *arg)
{
    (void)arg;
    struct test_rng r;
    rng_seed(&r, seed * 43);
    while (atomic_load(&sharers_left) > 0) {
        unsigned sel = STORE_SEL_ALL;
        if (rng_one_in(&r, 2)) {
            CHECK(store_mark_idle(s, 0) >= 0);
            sel = STORE_SEL_IDLE;
        }
        int64_t n = store_bundle(s, sel);
        /* With a limit, the pool may have no room for a bundle. */
        CHECKF(n >= 0 || (writeback && n == -ENOSPC), "store_bundle = %jd", (intmax_t)n);
        atomic_fetch_add(&bundled, n > 0 ? (uint64_t)n : 0);
    }
    return NULL;
}

/* policy: -1 no writeback, else a store_evict_policy. */
static void run(int policy)
{
    const struct codec_type *c = codec_find("lz4");
    CHECK(c);
    struct store_config cfg = {
        .size = SIZE,
        .codec = c,
        .compact_threshold_pct = 5,
        .prealloc_threads = 2,
        .cold_codec = codec_find("zstd"),
        .cold_after = 1,
    };
    struct backing *b = NULL;
    writeback = policy >= 0;
    if (writeback) {
        char path[] = "/tmp/uzram-conc-backing-XXXXXX", err[256] = "";
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        close(fd);
        b = backing_open(path, SIZE, BACKING_TIMEOUT_DEFAULT_MS, 0, err, sizeof(err));
        CHECKF(b, "backing_open: %s", err);
        unlink(path);
        cfg.backing = b;
        cfg.mem_limit = 2u << 20;
        cfg.evict_policy = (enum store_evict_policy)policy;
        cfg.recomp_codec = codec_find("zstd");
    }
    s = store_new(&cfg);
    CHECK(s);
    pthread_t th[OWNERS + SHARERS + 2];
    unsigned n = 0;
    atomic_store(&sharers_left, SHARERS);
    atomic_store(&bundled, 0);
    for (unsigned i = 0; i < OWNERS; i++)
        CHECK_EQ(pthread_create(&th[n++], NULL, owner_main, (void *)(uintptr_t)i), 0);
    for (unsigned i = 0; i < SHARERS; i++)
        CHECK_EQ(pthread_create(&th[n++], NULL, sharer_main, (void *)(uintptr_t)i), 0);
    CHECK_EQ(pthread_create(&th[n++], NULL, churner_main, NULL), 0);
    if (cfg.cold_codec)
        CHECK_EQ(pthread_create(&th[n++], NULL, cold_main, NULL), 0);
    for (unsigned i = 0; i < n; i++)
        CHECK_EQ(pthread_join(th[i], NULL), 0);

    struct store_stats st = st_stats(s);
    CHECK_EQU(st.failed_reads, 0);
    CHECK_EQU(st.failed_writes, 0);
    CHECK_EQU(st.invalid_io, 0);
    printf("%s: orig %ju compr %ju mem %ju compacted %ju compactions %ju\n",
           policy < 0 ? "plain" : policy == STORE_EVICT_LRU ? "writeback, clock" : "writeback, zspage",
           (uintmax_t)st.orig_data_size, (uintmax_t)st.compr_data_size,
           (uintmax_t)st.mem_used_total, (uintmax_t)st.pages_compacted,
           (uintmax_t)st.compactions);
    printf("  bundled %ju pages; %ju read out of bundles, %ju unpacked; %ju cold passes\n",
           (uintmax_t)atomic_load(&bundled), (uintmax_t)st.bundle_reads,
           (uintmax_t)st.bundle_unpacks, (uintmax_t)st.cold_passes);
    /* The cold thread raced the others, or the run proved nothing about it. */
    if (cfg.cold_codec)
        CHECK(atomic_load(&bundled) > 0 && st.bundle_reads > 0);
    if (writeback) {
        printf("  bd_writes %ju bd_reads %ju evictions %ju waits %ju promoted %ju mem_used_max %ju\n",
               (uintmax_t)st.bd_writes, (uintmax_t)st.bd_reads, (uintmax_t)st.evictions,
               (uintmax_t)st.write_waits, (uintmax_t)st.pages_promoted,
               (uintmax_t)st.mem_used_max);
        CHECK(st.bd_writes > 0 && st.bd_reads > 0);
    }
    st_check_drained(s);
    store_free(s);
    backing_close(b);
}

int main(int argc, char **argv)
{
    seed = test_seed(argc, argv, DEFAULT_SEED);
    nops = test_env_u64("UZRAM_STRESS_OPS", 20000);
    test_fail_hook = fail_hook;
    printf("seed %#jx, %ju ops per thread\n", (uintmax_t)seed, (uintmax_t)nops);
    test_watchdog(280);
    run(-1);
    run(STORE_EVICT_LRU);
    run(STORE_EVICT_ZSPAGE);
    return 0;
}
