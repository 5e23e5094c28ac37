/* SPDX-License-Identifier: MIT */
/*
 * The cold tier's bundles (src/store/bundle.c), page by page:
 *   - what store_bundle() takes (objects only, groups of two or more, the
 *     selection) and what it counts;
 *   - reads: once out of the bundle, a second time unpacked, and the rest
 *     of a bundle unpacked with the page that leaves it half empty;
 *   - partial writes, discards and write-zeroes take pages out, and the
 *     last page out frees the bundle;
 *   - a bundle damaged in memory reads as -EIO, never as other bytes (this
 *     test reaches into the store's internals, store-internal.h, to plant
 *     the damage: no request can);
 *   - a pool at its limit makes no bundle, loses nothing, and a later pass
 *     bundles the same pages;
 *   - the cold thread (cold_after) bundles pages old enough on its own, and
 *     leaves younger pages and the idle marks alone;
 *   - with a backing file, bundled pages are marked idle and written back
 *     (idle, all, with a limit) page by page, a bundle going with its last
 *     page, and a lowered limit makes the eviction thread write them back
 *     until the pool is under its low watermark.
 */
#include "storetest.h"

#include "store-internal.h"

#define SIZE (1u << 20)

static unsigned char ref[SIZE / PG][PG];

static struct store *bundle_store(unsigned pages, uint64_t mem_limit)
{
    struct store_config cfg = {
        .size = SIZE,
        .codec = codec_find("lz4"),
        .cold_codec = codec_find("zstd"),
        .bundle_pages = pages,
        .mem_limit = mem_limit,
    };
    struct store *s = store_new(&cfg);
    CHECKF(s, "store_new: %s", strerror(errno));
    return s;
}

/* Text in slots [first, first + n), kept in ref. */
static void put_text(struct store *s, struct test_rng *r, uint64_t first, uint64_t n)
{
    for (uint64_t i = first; i < first + n; i++) {
        st_text(r, ref[i], PG);
        CHECK_EQ(store_write(s, ref[i], PG, i * PG), 0);
    }
}

static void check_page(struct store *s, uint64_t i)
{
    unsigned char got[PG];
    CHECK_EQ(store_read(s, got, PG, i * PG), 0);
    CHECKF(memcmp(got, ref[i], PG) == 0, "slot %ju differs", (uintmax_t)i);
}

/* The store holds bundles bundles of pages pages in all; none: no bundle bytes either. */
static void check_bundled(struct store *s, uint64_t bundles, uint64_t pages)
{
    struct store_stats st = st_stats(s);
    CHECK_EQU(st.bundles, bundles);
    CHECK_EQU(st.bundled_pages, pages);
    if (bundles == 0)
        CHECK_EQU(st.bundle_bytes, 0);
}

static void test_bundle_life(void)
{
    struct test_rng r;
    rng_seed(&r, 1);
    struct store *s = bundle_store(16, 0);
    put_text(s, &r, 0, 32);
    /* One same-filled page and one raw page alone in the third group. */
    memset(ref[40], 0x11, PG);
    CHECK_EQ(store_write(s, ref[40], PG, 40 * PG), 0);
    rng_fill(&r, ref[41], PG);
    CHECK_EQ(store_write(s, ref[41], PG, 41 * PG), 0);
    uint64_t compr = st_stats(s).compr_data_size;

    /* Nothing idle: nothing to bundle. */
    CHECK_EQ(store_bundle(s, STORE_SEL_IDLE), 0);
    CHECK_EQ(store_bundle(s, STORE_SEL_HUGE), -EINVAL);
    /* Two groups of 16 objects; the raw page alone in its group stays. */
    CHECK_EQ(store_bundle(s, STORE_SEL_ALL), 32);
    check_bundled(s, 2, 32);
    struct store_stats st = st_stats(s);
    CHECK(st.bundle_bytes > 0 && st.bundle_bytes <= st.compr_data_size);
    CHECKF(st.compr_data_size < compr, "compr_data_size %ju, %ju before bundling",
           (uintmax_t)st.compr_data_size, (uintmax_t)compr);
    CHECK_EQU(st.orig_data_size, 34 * PG);
    /* Bundled pages are no longer objects of their own: a second pass takes none. */
    CHECK_EQ(store_bundle(s, STORE_SEL_ALL), 0);

    for (uint64_t i = 0; i < 42; i++)
        check_page(s, i);
    st = st_stats(s);
    CHECK_EQU(st.bundle_reads, 32);
    CHECK_EQU(st.bundle_unpacks, 0);

    /* Read twice: hot again, stored alone. */
    check_page(s, 0);
    CHECK_EQU(st_stats(s).bundle_unpacks, 1);
    check_bundled(s, 2, 31);

    /* A partial write, a discard and zeroes take their pages out. */
    memset(ref[1] + 1000, 'x', 100);
    CHECK_EQ(store_write(s, ref[1] + 1000, 100, PG + 1000), 0);
    CHECK_EQ(store_discard(s, PG, 2 * PG), 0);
    memset(ref[2], 0, PG);
    CHECK_EQ(store_write_zeroes(s, PG, 3 * PG, 0), 0);
    memset(ref[3], 0, PG);
    for (uint64_t i = 1; i < 4; i++)
        check_page(s, i);
    check_bundled(s, 2, 28);

    /* The second bundle emptied by discards: it goes with its last page. */
    for (uint64_t i = 16; i < 32; i++)
        CHECK_EQ(store_discard(s, PG, i * PG), 0);
    check_bundled(s, 1, 12);
    /* The first by second reads, each unpacking its page... */
    for (uint64_t i = 4; i < 7; i++)
        check_page(s, i);
    check_bundled(s, 1, 9);
    /* ...until half of it or less is left: then the rest goes at once. */
    check_page(s, 7);
    check_bundled(s, 0, 0);
    for (uint64_t i = 8; i < 16; i++)
        check_page(s, i);
    check_bundled(s, 0, 0);
    CHECK_EQU(st_stats(s).bundle_unpacks, 13);
    st_check_drained(s);
    store_free(s);
}

/* Flip one byte of bundle h at off (from the object's start). */
static void flip(struct store *s, uint64_t h, size_t off)
{
    size_t size;
    unsigned char *p = zs_map(s->pool, h, &size);
    CHECK(p && off < size);
    p[off] ^= 0x40;
    zs_unmap(s->pool, h);
}

static void test_bundle_corrupt(void)
{
    struct test_rng r;
    rng_seed(&r, 2);
    struct store *s = bundle_store(16, 0);
    /* Two bundles: reading the second makes the thread forget the first. */
    put_text(s, &r, 0, 32);
    CHECK_EQ(store_bundle(s, STORE_SEL_ALL), 32);
    CHECK_EQ(s->slots[0].state, SLOT_BUNDLE);
    uint64_t other = 16;
    uint64_t h = s->slots[0].val;
    size_t size;
    CHECK(zs_map(s->pool, h, &size));
    zs_unmap(s->pool, h);
    unsigned char got[PG];

    /* The checksum disagrees: the pages decompress, and still read -EIO. */
    flip(s, h, offsetof(struct bundle_hdr, sum));
    CHECK_EQ(store_read(s, got, PG, 5 * PG), -EIO);
    flip(s, h, offsetof(struct bundle_hdr, sum));
    check_page(s, 6);
    /* Compressed bytes damaged: -EIO, whoever notices, zstd or the checksum. */
    for (size_t off = sizeof(struct bundle_hdr); off < size; off += size / 7) {
        check_page(s, other++);
        flip(s, h, off);
        CHECKF(store_read(s, got, PG, 7 * PG) == -EIO, "damage at %zu of %zu read back", off,
               size);
        /* A partial write must read the page first: it fails, and says so. */
        CHECK_EQ(store_write(s, "y", 1, 8 * PG + 9), -EIO);
        flip(s, h, off);
    }
    struct store_stats st = st_stats(s);
    CHECK(st.failed_reads >= 2 && st.failed_writes >= 1);
    /* A whole page over a damaged bundle needs nothing of it. */
    flip(s, h, size / 2);
    rng_fill(&r, ref[9], PG);
    CHECK_EQ(store_write(s, ref[9], PG, 9 * PG), 0);
    check_page(s, 9);
    flip(s, h, size / 2);
    check_page(s, other++);
    check_page(s, 10);
    st_check_drained(s);
    store_free(s);
}

static void test_bundle_limit(void)
{
    struct test_rng r;
    rng_seed(&r, 3);
    struct store *s = bundle_store(16, 0);
    put_text(s, &r, 0, 32);
    /* Not a byte more: the bundle's object cannot be had. */
    CHECK_EQ(store_set_mem_limit(s, st_stats(s).mem_used_total), 0);
    CHECK_EQ(store_bundle(s, STORE_SEL_ALL), -ENOSPC);
    check_bundled(s, 0, 0);
    for (uint64_t i = 0; i < 32; i++)
        check_page(s, i);
    /* The pass left no mark behind: the same pages bundle once there is room. */
    CHECK_EQ(store_set_mem_limit(s, 0), 0);
    CHECK_EQ(store_mark_idle(s, 0), 32);
    CHECK_EQ(store_bundle(s, STORE_SEL_IDLE), 32);
    CHECK_EQU(st_stats(s).idle_pages, 32);
    for (uint64_t i = 0; i < 32; i++)
        check_page(s, i);
    st_check_drained(s);
    store_free(s);
}

/* Wait, up to a minute (against a hang, not a timing), until cond(s) holds. */
static bool wait_for(struct store *s, bool (*cond)(struct store *s))
{
    for (int i = 0; i < 600; i++) {
        if (cond(s))
            return true;
        usleep(100 * 1000);
    }
    return cond(s);
}

static bool cold_passed(struct store *s)
{
    return st_stats(s).cold_passes > 0;
}

static bool all_bundled(struct store *s)
{
    return st_stats(s).bundled_pages == 64;
}

/*
 * The cold thread, started at run time: with an hour's age it passes over
 * pages written just now; with a second's it bundles them all, without
 * marking anything idle, and they read back.
 */
static void test_cold_after(void)
{
    struct store *s = bundle_store(16, 0);
    struct test_rng r;
    rng_seed(&r, 31);
    put_text(s, &r, 0, 64);
    CHECK_EQU(st_stats(s).cold_after, 0);
    CHECK_EQ(store_set_cold_after(s, 3600), 0);
    CHECK_EQU(st_stats(s).cold_after, 3600);
    CHECKF(wait_for(s, cold_passed), "no cold pass in a minute");
    check_bundled(s, 0, 0);
    CHECK_EQ(store_set_cold_after(s, 1), 0);
    CHECKF(wait_for(s, all_bundled), "%ju of 64 pages bundled after a minute",
           (uintmax_t)st_stats(s).bundled_pages);
    CHECK_EQ(store_set_cold_after(s, 0), 0);
    check_bundled(s, 4, 64);
    CHECK_EQU(st_stats(s).idle_pages, 0);
    for (uint64_t i = 0; i < 64; i++)
        check_page(s, i);
    store_free(s);
}

/*
 * A store of bundles of 16 pages on a fresh backing file of SIZE bytes,
 * with text in its first n slots (rng seed), all of them bundled.
 */
static struct st_backed backed_bundled(uint64_t seed, uint64_t n)
{
    struct st_backed w;
    w.b = st_backing_new(w.path, SIZE);
    struct store_config cfg = {
        .size = SIZE,
        .codec = codec_find("lz4"),
        .cold_codec = codec_find("zstd"),
        .bundle_pages = 16,
        .backing = w.b,
    };
    w.s = store_new(&cfg);
    CHECKF(w.s, "store_new: %s", strerror(errno));
    struct test_rng r;
    rng_seed(&r, seed);
    put_text(w.s, &r, 0, n);
    CHECK_EQ(store_bundle(w.s, STORE_SEL_ALL), (int64_t)n);
    check_bundled(w.s, n / 16, n);
    return w;
}

/*
 * Writeback by hand: bundled pages can be marked idle, are not huge, and go
 * to the backing store page by page, compressed alone; a bundle's memory
 * goes with its last page.
 */
static void test_bundle_writeback(void)
{
    struct st_backed w = backed_bundled(41, 64);
    struct store *s = w.s;
    struct backing *b = w.b;
    uint64_t mem = st_stats(s).mem_used_total;

    CHECK_EQ(store_writeback(s, STORE_SEL_HUGE, 0), 0);
    CHECK_EQ(store_writeback(s, STORE_SEL_IDLE, 0), 0);
    CHECK_EQ(store_mark_idle(s, 0), 64);
    CHECK_EQU(st_stats(s).idle_pages, 64);
    /* The first bundle whole, and 4 pages of the second. */
    CHECK_EQ(store_writeback(s, STORE_SEL_IDLE, 20), 20);
    check_bundled(s, 3, 44);
    struct store_stats st = st_stats(s);
    CHECK_EQU(st.bd_count, 20);
    CHECK_EQU(st_blocks_used(b), 20);
    CHECK_EQU(st.orig_data_size, 44 * PG);
    CHECK_EQU(st.idle_pages, 44);
    CHECK_EQU(st.bd_writes, 20);
    /* Compressed alone with the I/O codec, not raw: each block holds less than a page. */
    for (uint64_t i = 0; i < 16; i++)
        CHECKF(s->slots[i].state == SLOT_WB && s->slots[i].size < PG && s->slots[i].flags == 0,
               "slot %ju: state %u, %u bytes, flags %#x", (uintmax_t)i, s->slots[i].state,
               s->slots[i].size, s->slots[i].flags);
    for (uint64_t i = 0; i < 64; i++)
        check_page(s, i);

    CHECK_EQ(store_writeback(s, STORE_SEL_ALL, 0), 44);
    check_bundled(s, 0, 0);
    CHECK(store_compact(s) >= 0);
    st = st_stats(s);
    CHECK_EQU(st.bd_count, 64);
    CHECK_EQU(st.orig_data_size, 0);
    CHECKF(st.mem_used_total < mem, "mem_used_total %ju, %ju with the bundles",
           (uintmax_t)st.mem_used_total, (uintmax_t)mem);
    for (uint64_t i = 0; i < 64; i++)
        check_page(s, i);
    st_check_drained(s);
    CHECK_EQU(st_blocks_used(b), 0);
    st_backed_free(&w);
}

static uint64_t evict_low;

static bool under_low(struct store *s)
{
    return st_stats(s).mem_used_total <= evict_low;
}

/* Every one of test_bundle_evict()'s pages counted, in a bundle or on the backing file. */
static bool evict_settled(struct store *s)
{
    struct store_stats st = st_stats(s);
    return st.bd_count + st.bundled_pages == 128;
}

/*
 * Eviction: a pool held by bundles, its limit lowered below what they
 * take, comes back under the low watermark by writing bundled pages back.
 * The low watermark leaves room for the pool's tables, which stay grown,
 * and half the bundles' pages.
 */
static void test_bundle_evict(void)
{
    struct st_backed w = backed_bundled(43, 128);
    struct store *s = w.s;
    CHECK(store_compact(s) >= 0);
    struct zs_pool_stats zst;
    zs_get_stats(s->pool, &zst);
    uint64_t mem = zst.mem_used;
    evict_low = zst.metadata_bytes + (mem - zst.metadata_bytes) / 2;
    CHECK_EQ(store_set_watermarks(s, 55, 50), 0);
    CHECK_EQ(store_set_mem_limit(s, 2 * evict_low), 0);
    CHECKF(wait_for(s, under_low), "mem_used_total %ju after a minute, low watermark %ju",
           (uintmax_t)st_stats(s).mem_used_total, (uintmax_t)evict_low);
    /*
     * The thread may still be in its batch, between a page's two counters:
     * lift the limit so that it stops, then count.
     */
    CHECK_EQ(store_set_mem_limit(s, 0), 0);
    CHECKF(wait_for(s, evict_settled), "%ju pages bundled and %ju written back, of 128",
           (uintmax_t)st_stats(s).bundled_pages, (uintmax_t)st_stats(s).bd_count);
    struct store_stats st = st_stats(s);
    printf("  %ju bytes (%ju of tables) brought under %ju: %ju pages written back, %ju "
           "bundles left\n",
           (uintmax_t)mem, (uintmax_t)zst.metadata_bytes, (uintmax_t)evict_low,
           (uintmax_t)st.bd_writes, (uintmax_t)st.bundles);
    CHECK(st.bd_writes > 0 && st.bundles < 8);
    CHECK_EQU(st.failed_writes, 0);
    for (uint64_t i = 0; i < 128; i++)
        check_page(s, i);
    st_backed_free(&w);
}

/* No cold codec: no bundles, no cold thread; bad page counts refused. */
static void test_bundle_config(void)
{
    struct store *s = st_new(SIZE, "lz4", 0, 0, 0);
    CHECK_EQ(store_bundle(s, STORE_SEL_ALL), -ENOTSUP);
    CHECK_EQ(store_set_cold_after(s, 10), -ENOTSUP);
    store_free(s);
    struct store_config cfg = {
        .size = SIZE,
        .cold_codec = codec_find("zstd"),
        .bundle_pages = 1,
    };
    errno = 0;
    CHECK(!store_new(&cfg) && errno == EINVAL);
    cfg.bundle_pages = STORE_BUNDLE_MAX + 1;
    CHECK(!store_new(&cfg) && errno == EINVAL);
    cfg.bundle_pages = 2;
    cfg.cold_level = 1000;
    CHECK(!store_new(&cfg) && errno == EINVAL);
    cfg = (struct store_config){ .size = SIZE, .cold_after = 10 };
    CHECK(!store_new(&cfg) && errno == EINVAL);
}

int main(void)
{
    if (!codec_find("zstd"))
        return 77;
    RUN_TEST(test_bundle_config);
    RUN_TEST(test_bundle_life);
    RUN_TEST(test_bundle_corrupt);
    RUN_TEST(test_bundle_limit);
    RUN_TEST(test_cold_after);
    RUN_TEST(test_bundle_writeback);
    RUN_TEST(test_bundle_evict);
    return 0;
}
