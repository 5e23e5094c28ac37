/* SPDX-License-Identifier: MIT */
/*
 * store_read and store_write: any alignment, partial pages, ranges across
 * pages, never-written ranges, same-filled and incompressible pages, range
 * checks, store_new's argument checks, the codecs and the statistics that
 * follow from what was written.
 */
#include "storetest.h"

#define SIZE (4u << 20)

static void test_new_args(void)
{
    struct store_config cfg = { .size = SIZE };
    struct store *s;

    cfg.size = 0;
    errno = 0;
    CHECK(!store_new(&cfg) && errno == EINVAL);
    cfg.size = SIZE + 1;
    errno = 0;
    CHECK(!store_new(&cfg) && errno == EINVAL);
    cfg.size = STORE_MAX_SIZE + PG;
    errno = 0;
    CHECK(!store_new(&cfg) && errno == EINVAL);
    cfg.size = SIZE;
    cfg.huge_threshold = PG + 1;
    errno = 0;
    CHECK(!store_new(&cfg) && errno == EINVAL);
    cfg.huge_threshold = 0;
    cfg.compact_threshold_pct = 101;
    errno = 0;
    CHECK(!store_new(&cfg) && errno == EINVAL);
    cfg.compact_threshold_pct = 0;
    int lmin, lmax;
    codec_level_range(codec_find("lz4"), &lmin, &lmax, NULL);
    cfg.level = lmax + 1;
    errno = 0;
    CHECK(!store_new(&cfg) && errno == EINVAL);
    cfg.level = 0;

    /* Smallest device, and a terabyte that costs nothing until written. */
    cfg.size = PG;
    s = store_new(&cfg);
    CHECK(s);
    CHECK_EQU(store_size(s), PG);
    store_free(s);
    cfg.size = UINT64_C(1) << 40;
    cfg.prealloc_threads = 2;
    cfg.compact_threshold_pct = 10;
    uint64_t rss0 = test_rss();
    s = store_new(&cfg);
    CHECK(s);
    CHECK(test_rss() - rss0 < (64u << 20));
    CHECK_EQ(store_thread_prepare(s), 0);
    char buf[PG];
    memset(buf, 7, sizeof(buf));
    CHECK_EQ(store_write(s, buf, sizeof(buf), (UINT64_C(1) << 40) - PG), 0);
    store_free(s);
    store_free(NULL);
}

static void test_unwritten_reads_zero(void)
{
    struct store *s = st_new(SIZE, NULL, 0, 0, 0);
    uint64_t used0 = st_stats(s).mem_used_total;
    _cleanup_free_ unsigned char *buf = malloc(SIZE);
    memset(buf, 0xee, SIZE);
    CHECK_EQ(store_read(s, buf, SIZE, 0), 0);
    CHECK(st_all_zero(buf, SIZE));
    memset(buf, 0xee, 100);
    CHECK_EQ(store_read(s, buf, 100, 12345), 0);
    CHECK(st_all_zero(buf, 100));
    struct store_stats st = st_stats(s);
    CHECK_EQU(st.mem_used_total, used0);
    CHECK_EQU(st.orig_data_size, 0);
    CHECK_EQU(st.compr_data_size, 0);
    CHECK_EQU(st.read_reqs, 2);
    CHECK_EQU(st.read_bytes, SIZE + 100);
    /* Zero-length requests at the end are valid and do nothing. */
    CHECK_EQ(store_read(s, buf, 0, SIZE), 0);
    CHECK_EQ(store_write(s, buf, 0, SIZE), 0);
    store_free(s);
}

/*
 * Writes at every kind of alignment against a reference copy: inside one
 * page, across a boundary, whole pages at odd offsets, long runs.
 */
static void test_alignment(void)
{
    struct store *s = st_new(SIZE, NULL, 0, 0, 0);
    struct test_rng r;
    rng_seed(&r, 42);
    _cleanup_free_ unsigned char *ref = calloc(1, SIZE);
    _cleanup_free_ unsigned char *buf = malloc(SIZE);
    _cleanup_free_ unsigned char *data = malloc(5 * PG);
    static const uint64_t offs[] = { 0, 1, 7, 8, 511, 4095, 4096, 4097, 8191, 12288 - 3 };
    static const uint64_t lens[] = { 1, 2, 8, 100, 4095, 4096, 4097, 8192, 3 * PG + 5, 5 * PG };
    uint64_t base = 0;
    for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        for (size_t j = 0; j < sizeof(lens) / sizeof(lens[0]); j++) {
            uint64_t off = base + offs[i], len = lens[j];
            if ((i + j) % 2)
                rng_fill(&r, data, len);
            else
                st_text(&r, data, len);
            CHECK_EQ(store_write(s, data, len, off), 0);
            memcpy(ref + off, data, len);
            memset(buf, 0, len + 2);
            CHECK_EQ(store_read(s, buf, len + 2, off - (off ? 1 : 0)), 0);
            CHECKF(memcmp(buf, ref + off - (off ? 1 : 0), len + 2) == 0,
                   "off %ju len %ju", (uintmax_t)off, (uintmax_t)len);
            base = (base + 7 * PG) % (SIZE - 8 * PG);
        }
    }
    CHECK_EQ(store_read(s, buf, SIZE, 0), 0);
    CHECK(memcmp(buf, ref, SIZE) == 0);
    /* Odd-sized reads straddling pages. */
    for (int k = 0; k < 200; k++) {
        uint64_t off = rng_below(&r, SIZE), len = rng_range(&r, 1, 3 * PG);
        if (len > SIZE - off)
            len = SIZE - off;
        CHECK_EQ(store_read(s, buf, len, off), 0);
        CHECK(memcmp(buf, ref + off, len) == 0);
    }
    store_free(s);
}

static void test_same_filled(void)
{
    struct store *s = st_new(SIZE, NULL, 0, 0, 0);
    uint64_t used0 = st_stats(s).mem_used_total;
    unsigned char page[PG], buf[PG];
    static const uint64_t words[] = { 0, 0x0101010101010101ull, 0xdeadbeefcafef00dull, 1 };
    for (size_t i = 0; i < 4; i++) {
        st_fill_word(page, PG, words[i]);
        CHECK_EQ(store_write(s, page, PG, i * PG), 0);
    }
    /* A partial write that leaves the page same-filled stays same-filled. */
    st_fill_word(page, PG, words[2]);
    CHECK_EQ(store_write(s, page + 8, 16, 2 * PG + 8), 0);
    struct store_stats st = st_stats(s);
    CHECK_EQU(st.same_pages, 4);
    CHECK_EQU(st.orig_data_size, 4 * PG);
    CHECK_EQU(st.compr_data_size, 0);
    CHECK_EQU(st.huge_pages, 0);
    CHECK_EQU(st.mem_used_total, used0);
    for (size_t i = 0; i < 4; i++) {
        st_fill_word(page, PG, words[i]);
        CHECK_EQ(store_read(s, buf, PG, i * PG), 0);
        CHECK(memcmp(page, buf, PG) == 0);
    }
    /* Breaking the pattern stores an object; restoring it frees it again. */
    page[100] ^= 1;
    CHECK_EQ(store_write(s, page, PG, 3 * PG), 0);
    st = st_stats(s);
    CHECK_EQU(st.same_pages, 3);
    CHECK(st.compr_data_size > 0);
    CHECK(st.mem_used_total > used0);
    page[100] ^= 1;
    CHECK_EQ(store_write(s, page + 96, 8, 3 * PG + 96), 0);
    st = st_stats(s);
    CHECK_EQU(st.same_pages, 4);
    CHECK_EQU(st.compr_data_size, 0);
    CHECK_EQ(store_read(s, buf, PG, 3 * PG), 0);
    CHECK(memcmp(page, buf, PG) == 0);
    store_free(s);
}

static void test_huge(void)
{
    struct store *s = st_new(SIZE, NULL, 0, 0, 0);
    struct test_rng r;
    rng_seed(&r, 7);
    unsigned char page[PG], buf[PG];
    for (int i = 0; i < 10; i++) {
        rng_fill(&r, page, PG);
        CHECK_EQ(store_write(s, page, PG, (uint64_t)i * PG), 0);
        CHECK_EQ(store_read(s, buf, PG, (uint64_t)i * PG), 0);
        CHECK(memcmp(page, buf, PG) == 0);
    }
    struct store_stats st = st_stats(s);
    CHECK_EQU(st.huge_pages, 10);
    CHECK_EQU(st.huge_pages_since, 10);
    CHECK_EQU(st.compr_data_size, 10 * PG);
    CHECK_EQU(st.orig_data_size, 10 * PG);
    CHECK(st.mem_used_total >= 10 * PG);
    /* Overwritten with text: no longer huge, but huge_pages_since remembers. */
    st_text(&r, page, PG);
    CHECK_EQ(store_write(s, page, PG, 0), 0);
    st = st_stats(s);
    CHECK_EQU(st.huge_pages, 9);
    CHECK_EQU(st.huge_pages_since, 10);
    CHECK(st.compr_data_size < 10 * PG);
    CHECK(st.compr_data_size > 9 * PG);
    store_free(s);

    /* A huge threshold of one page: only what compresses below it is kept compressed. */
    struct store_config cfg = { .size = SIZE, .huge_threshold = 1 };
    s = store_new(&cfg);
    CHECK(s);
    st_text(&r, page, PG);
    CHECK_EQ(store_write(s, page, PG, 0), 0);
    CHECK_EQU(st_stats(s).huge_pages, 1);
    CHECK_EQ(store_read(s, buf, PG, 0), 0);
    CHECK(memcmp(page, buf, PG) == 0);
    store_free(s);
}

static void test_invalid(void)
{
    struct store *s = st_new(SIZE, NULL, 0, 0, 0);
    char buf[PG] = { 0 };
    uint64_t seek;
    CHECK_EQ(store_read(s, buf, 1, SIZE), -EINVAL);
    CHECK_EQ(store_write(s, buf, 2, SIZE - 1), -EINVAL);
    CHECK_EQ(store_read(s, buf, PG, UINT64_MAX - 10), -EINVAL);
    CHECK_EQ(store_write(s, buf, UINT64_MAX, 1), -EINVAL);
    CHECK_EQ(store_discard(s, UINT64_MAX - PG + 1, PG), -EINVAL);
    CHECK_EQ(store_write_zeroes(s, PG, UINT64_MAX - PG + 1, 0), -EINVAL);
    CHECK_EQ(store_read(s, buf, 1, UINT64_MAX), -EINVAL);
    CHECK_EQ(store_seek(s, SIZE, true, &seek), -ENXIO);
    CHECK_EQ(store_seek(s, UINT64_MAX, false, &seek), -ENXIO);
    struct store_stats st = st_stats(s);
    CHECK_EQU(st.invalid_io, 7);
    CHECK_EQU(st.failed_writes, 0);
    CHECK_EQU(st.failed_reads, 0);
    CHECK_EQU(st.orig_data_size, 0);
    /* A request ending exactly at the end is fine. */
    CHECK_EQ(store_write(s, buf, 10, SIZE - 10), 0);
    CHECK_EQ(store_read(s, buf, PG, SIZE - PG), 0);
    store_free(s);
}

static void test_stats(void)
{
    struct store *s = st_new(SIZE, NULL, 0, 0, 0);
    struct test_rng r;
    rng_seed(&r, 99);
    unsigned char page[PG];
    struct store_stats st = st_stats(s);
    CHECK_EQU(st.disksize, SIZE);
    CHECK_EQU(st.mem_limit, 0);
    CHECK_EQU(st.mem_used_max, st.mem_used_total);
    for (int i = 0; i < 100; i++) {
        st_text(&r, page, PG);
        CHECK_EQ(store_write(s, page, PG, (uint64_t)i * PG), 0);
    }
    st = st_stats(s);
    CHECK_EQU(st.orig_data_size, 100 * PG);
    CHECK(st.compr_data_size > 0 && st.compr_data_size < 100 * PG);
    CHECK(st.mem_used_total >= st.compr_data_size);
    CHECK(st.mem_used_max >= st.mem_used_total);
    CHECK_EQU(st.write_reqs, 100);
    CHECK_EQU(st.write_bytes, 100 * PG);
    CHECK_EQU(st.same_pages, 0);
    uint64_t max = st.mem_used_max;
    CHECK_EQ(store_discard(s, 100 * PG, 0), 0);
    store_compact(s);
    st = st_stats(s);
    CHECK_EQU(st.orig_data_size, 0);
    CHECK_EQU(st.compr_data_size, 0);
    CHECK_EQU(st.notify_free, 100);
    CHECK_EQU(st.discard_reqs, 1);
    CHECK_EQU(st.discard_bytes, 100 * PG);
    CHECK_EQU(st.mem_used_max, max);
    CHECK(st.mem_used_total < max);
    CHECK(st.compactions >= 1);
    store_reset_mem_used_max(s);
    CHECK_EQU(st_stats(s).mem_used_max, st_stats(s).mem_used_total);
    CHECK_EQ(store_flush(s), 0);
    CHECK_EQU(st_stats(s).flush_reqs, 1);
    CHECK_EQ(store_set_compact_threshold(s, 101), -EINVAL);
    CHECK_EQ(store_set_compact_threshold(s, 25), 0);
    CHECK_EQU(st_stats(s).compact_threshold_pct, 25);
    CHECK_EQ(store_set_mem_limit(s, 1u << 20), 0);
    CHECK_EQU(st_stats(s).mem_limit, 1u << 20);
    store_free(s);
}

/* Every codec built, at a few levels: data round-trips and compresses. */
static void test_codecs(void)
{
    static const struct { const char *name; int level; } cases[] = {
        { "lz4", 0 }, { "lz4", 1 }, { "lz4", 8 },
        { "lz4hc", 0 }, { "lz4hc", 4 }, { "lz4hc", 9 },
        { "zstd", 0 }, { "zstd", -5 }, { "zstd", 1 }, { "zstd", 19 },
    };
    struct test_rng r;
    rng_seed(&r, 5);
    _cleanup_free_ unsigned char *data = malloc(64 * PG);
    _cleanup_free_ unsigned char *buf = malloc(64 * PG);
    st_text(&r, data, 48 * PG);
    rng_fill(&r, data + 48 * PG, 16 * PG);
    unsigned tested = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct codec_type *c = codec_find(cases[i].name);
        if (!c)
            continue;   /* not built */
        tested++;
        struct store *s = st_new(SIZE, cases[i].name, cases[i].level, 0, 0);
        CHECK_EQ(store_write(s, data, 64 * PG, 3), 0);
        CHECK_EQ(store_read(s, buf, 64 * PG, 3), 0);
        CHECKF(memcmp(buf, data, 64 * PG) == 0, "%s level %d", cases[i].name, cases[i].level);
        struct store_stats st = st_stats(s);
        CHECK(st.huge_pages >= 16);
        CHECKF(st.compr_data_size < 16 * PG + 48 * PG * 3 / 4, "%s: %ju", cases[i].name,
               (uintmax_t)st.compr_data_size);
        store_free(s);
    }
    CHECK(tested > 0);
}

int main(void)
{
    RUN_TEST(test_new_args);
    RUN_TEST(test_unwritten_reads_zero);
    RUN_TEST(test_alignment);
    RUN_TEST(test_same_filled);
    RUN_TEST(test_huge);
    RUN_TEST(test_invalid);
    RUN_TEST(test_stats);
    RUN_TEST(test_codecs);
    return 0;
}
