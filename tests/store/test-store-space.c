/* SPDX-License-Identifier: MIT */
/*
 * Where memory goes and comes back: discard and write-zeroes, SEEK_DATA and
 * SEEK_HOLE, the memory limit (fixed and changed at run time), the
 * background compaction thread, and the reserve given back.
 */
#include "storetest.h"

#define SIZE (8u << 20)

static void test_discard(void)
{
    struct store *s = st_new(SIZE, NULL, 0, 0, 0);
    struct test_rng r;
    rng_seed(&r, 1);
    _cleanup_free_ unsigned char *data = malloc(16 * PG);
    _cleanup_free_ unsigned char *buf = malloc(16 * PG);
    rng_fill(&r, data, 16 * PG);
    CHECK_EQ(store_write(s, data, 16 * PG, 0), 0);
    uint64_t used_full = st_stats(s).mem_used_total;

    /* Slots 2..5 whole, 100 bytes of slot 1's end and of slot 6's start. */
    CHECK_EQ(store_discard(s, 4 * PG + 200, 2 * PG - 100), 0);
    memset(data + 2 * PG - 100, 0, 4 * PG + 200);
    struct store_stats st = st_stats(s);
    CHECK_EQU(st.notify_free, 4);
    CHECK_EQU(st.orig_data_size, 12 * PG);
    CHECK_EQU(st.huge_pages, 12);
    CHECK(st.mem_used_total < used_full);
    CHECK_EQ(store_read(s, buf, 16 * PG, 0), 0);
    CHECK(memcmp(buf, data, 16 * PG) == 0);

    /* Write-zeroes: slots 8..9 freed, edges of 7 and 10 zeroed; no notify_free. */
    CHECK_EQ(store_write_zeroes(s, 3 * PG, 7 * PG + 2048, 0), 0);
    memset(data + 7 * PG + 2048, 0, 3 * PG);
    st = st_stats(s);
    CHECK_EQU(st.notify_free, 4);
    CHECK_EQU(st.orig_data_size, 10 * PG);
    CHECK_EQU(st.write_reqs, 2);
    CHECK_EQ(store_read(s, buf, 16 * PG, 0), 0);
    CHECK(memcmp(buf, data, 16 * PG) == 0);

    /* Zeroing the rest of a page that is partly zero already empties it. */
    CHECK_EQ(store_discard(s, 2048, 7 * PG), 0);
    CHECK_EQU(st_stats(s).orig_data_size, 9 * PG);
    /* Discarding an empty range is harmless and allocates nothing. */
    uint64_t used = st_stats(s).mem_used_total;
    CHECK_EQ(store_discard(s, 100, 3 * PG + 5), 0);
    CHECK_EQ(store_discard(s, 8 * PG, 100 * PG), 0);
    CHECK_EQU(st_stats(s).mem_used_total, used);
    /* Everything. */
    CHECK_EQ(store_discard(s, SIZE, 0), 0);
    st = st_stats(s);
    CHECK_EQU(st.orig_data_size, 0);
    CHECK_EQU(st.compr_data_size, 0);
    CHECK_EQU(st.huge_pages, 0);
    CHECK_EQ(store_read(s, buf, 16 * PG, 0), 0);
    CHECK(st_all_zero(buf, 16 * PG));
    store_free(s);
}

static void seek_is(struct store *s, uint64_t off, bool data, int ret, uint64_t want)
{
    uint64_t got = 0xdead;
    int r = store_seek(s, off, data, &got);
    CHECKF(r == ret, "seek(%ju, %s) = %d, want %d", (uintmax_t)off, data ? "data" : "hole", r, ret);
    if (ret == 0)
        CHECKF(got == want, "seek(%ju, %s) -> %ju, want %ju", (uintmax_t)off,
               data ? "data" : "hole", (uintmax_t)got, (uintmax_t)want);
}

static void test_seek(void)
{
    struct store *s = st_new(SIZE, NULL, 0, 0, 0);
    unsigned char page[PG];
    memset(page, 'x', PG);
    seek_is(s, 0, true, -ENXIO, 0);
    seek_is(s, 0, false, 0, 0);
    seek_is(s, 12345, false, 0, 12345);
    seek_is(s, SIZE, false, -ENXIO, 0);
    seek_is(s, SIZE, true, -ENXIO, 0);

    CHECK_EQ(store_write(s, page, PG, 5 * PG), 0);
    CHECK_EQ(store_write(s, page, 1, 300 * PG + 7), 0);     /* partial: data */
    memset(page, 0, PG);
    CHECK_EQ(store_write(s, page, PG, 301 * PG), 0);        /* zeros are data */
    CHECK_EQ(store_write(s, page, PG, SIZE - PG), 0);        /* the last slot */
    seek_is(s, 0, true, 0, 5 * PG);
    seek_is(s, 5 * PG + 10, true, 0, 5 * PG + 10);
    seek_is(s, 5 * PG + 10, false, 0, 6 * PG);
    seek_is(s, 6 * PG, true, 0, 300 * PG);
    seek_is(s, 300 * PG, false, 0, 302 * PG);
    seek_is(s, 302 * PG, true, 0, SIZE - PG);
    seek_is(s, SIZE - 1, true, 0, SIZE - 1);
    seek_is(s, SIZE - PG, false, 0, SIZE);
    CHECK_EQ(store_discard(s, PG, SIZE - PG), 0);
    seek_is(s, 302 * PG, true, -ENXIO, 0);
    seek_is(s, SIZE - PG, false, 0, SIZE - PG);
    store_free(s);

    /* A device whose slot count is not a multiple of 64: the end is a hole. */
    s = st_new(67 * PG, NULL, 0, 0, 0);
    memset(page, 1, PG);
    for (uint64_t i = 0; i < 67; i++)
        CHECK_EQ(store_write(s, page, PG, i * PG), 0);
    seek_is(s, 0, false, 0, 67 * PG);
    seek_is(s, 66 * PG, true, 0, 66 * PG);
    CHECK_EQ(store_discard(s, PG, 64 * PG), 0);
    seek_is(s, 0, false, 0, 64 * PG);
    seek_is(s, 64 * PG, true, 0, 65 * PG);
    store_free(s);

    /* 1 TiB, nearly empty: far data is found by the summary, not a crawl. */
    uint64_t big = UINT64_C(1) << 40;
    s = st_new(big, NULL, 0, 0, 0);
    CHECK_EQ(store_write(s, page, PG, big - 2 * PG), 0);
    seek_is(s, 0, true, 0, big - 2 * PG);
    seek_is(s, big - 2 * PG, false, 0, big - PG);
    CHECK_EQ(store_discard(s, PG, big - 2 * PG), 0);
    seek_is(s, 0, true, -ENXIO, 0);
    store_free(s);
}

/* Random pages until the limit bites; everything before it reads back. */
static void extent_is(struct store *s, uint64_t off, uint64_t len, int want_r,
                      uint64_t want_len, unsigned want_flags)
{
    uint64_t got_len = 0xdead;
    unsigned got_flags = 0xbeef;
    int r = store_extent(s, off, len, &got_len, &got_flags);
    CHECKF(r == want_r, "store_extent(%ju, %ju) = %d, want %d",
           (uintmax_t)off, (uintmax_t)len, r, want_r);
    if (r < 0)
        return;
    CHECKF(got_len == want_len && got_flags == want_flags,
           "store_extent(%ju, %ju): len %ju flags %u, want len %ju flags %u",
           (uintmax_t)off, (uintmax_t)len, (uintmax_t)got_len, got_flags,
           (uintmax_t)want_len, want_flags);
}

static void test_extent(void)
{
    const unsigned HZ = STORE_EXTENT_HOLE | STORE_EXTENT_ZERO, Z = STORE_EXTENT_ZERO;
    struct store *s = st_new(SIZE, NULL, 0, 0, 0);
    unsigned char page[PG];

    extent_is(s, 0, SIZE, 0, SIZE, HZ);
    extent_is(s, 100, 50, 0, 50, HZ);                   /* cut by len */
    extent_is(s, SIZE - 10, 1000, 0, 10, HZ);           /* cut by the end */
    extent_is(s, 0, 0, -EINVAL, 0, 0);
    extent_is(s, SIZE, 1, -EINVAL, 0, 0);

    memset(page, 'x', PG);
    CHECK_EQ(store_write(s, page, PG, 5 * PG), 0);
    CHECK_EQ(store_write(s, page, PG, 6 * PG), 0);
    memset(page, 0, PG);
    CHECK_EQ(store_write(s, page, PG, 7 * PG), 0);      /* zero-filled: ZERO, not HOLE */
    CHECK_EQ(store_write(s, page, PG, 8 * PG), 0);
    memset(page, 0xff, PG);
    CHECK_EQ(store_write(s, page, PG, 9 * PG), 0);      /* same-filled but not zero: data */

    extent_is(s, 0, SIZE, 0, 5 * PG, HZ);
    extent_is(s, 3 * PG + 1, SIZE, 0, 2 * PG - 1, HZ);  /* unaligned start */
    extent_is(s, 5 * PG, SIZE, 0, 2 * PG, 0);
    extent_is(s, 5 * PG + 100, PG, 0, PG, 0);
    extent_is(s, 7 * PG, SIZE, 0, 2 * PG, Z);
    extent_is(s, 9 * PG, SIZE, 0, PG, 0);
    extent_is(s, 10 * PG, SIZE, 0, SIZE - 10 * PG, HZ);

    CHECK_EQ(store_discard(s, PG, 6 * PG), 0);
    extent_is(s, 5 * PG, SIZE, 0, PG, 0);
    extent_is(s, 6 * PG, SIZE, 0, PG, HZ);

    /* NO_HOLE: zero pages, even over holes and at partial edges, never holes. */
    struct store_stats before = st_stats(s);
    CHECK_EQ(store_write_zeroes(s, 3 * PG + 100, 20 * PG - 50, STORE_ZERO_NO_HOLE), 0);
    extent_is(s, 19 * PG, SIZE, 0, 5 * PG, Z);
    extent_is(s, 24 * PG, SIZE, 0, SIZE - 24 * PG, HZ);
    CHECK_EQ(st_stats(s).same_pages, before.same_pages + 5);
    CHECK_EQ(st_stats(s).mem_used_total, before.mem_used_total);
    CHECK_EQ(store_write_zeroes(s, 2 * PG, 5 * PG, STORE_ZERO_NO_HOLE), 0);
    extent_is(s, 5 * PG, 2 * PG, 0, 2 * PG, Z);
    CHECK_EQ(store_write_zeroes(s, PG, 0, 2), -EINVAL);
    store_free(s);
}

static void test_mem_limit(void)
{
    const uint64_t limit = 2u << 20;
    struct store *s = st_new(SIZE, NULL, 0, limit, 0);
    struct test_rng r;
    unsigned char page[PG], buf[PG];
    uint64_t n = 0;
    int ret = 0;
    for (; n < SIZE / PG; n++) {
        test_pattern(page, PG, n, 1);
        ret = store_write(s, page, PG, n * PG);
        if (ret < 0)
            break;
    }
    CHECK_EQ(ret, -ENOSPC);
    CHECK(n > 100);
    struct store_stats st = st_stats(s);
    CHECK(st.mem_used_total <= limit);
    CHECK(st.mem_used_max <= limit);
    CHECK_EQU(st.failed_writes, 1);
    CHECK_EQU(st.orig_data_size, n * PG);
    /* The slot that failed still reads as zeros; same-filled pages still fit. */
    CHECK_EQ(store_read(s, buf, PG, n * PG), 0);
    CHECK(st_all_zero(buf, PG));
    memset(page, 0x11, PG);
    CHECK_EQ(store_write(s, page, PG, n * PG), 0);
    /* A failing overwrite leaves the old content. */
    test_pattern(page, PG, 12345, 9);
    CHECK_EQ(store_write(s, page + 1, 10, 3 * PG + 5), -ENOSPC);
    for (uint64_t i = 0; i < n; i++) {
        test_pattern(page, PG, i, 1);
        CHECK_EQ(store_read(s, buf, PG, i * PG), 0);
        CHECKF(memcmp(page, buf, PG) == 0, "page %ju of %ju", (uintmax_t)i, (uintmax_t)n);
    }
    /* Text compresses: with the limit lifted, it all fits. */
    CHECK_EQ(store_set_mem_limit(s, 0), 0);
    rng_seed(&r, 3);
    st_text(&r, page, PG);
    CHECK_EQ(store_write(s, page, PG, (n + 1) * PG), 0);
    /* A limit below the use: writes fail until discards make room. */
    uint64_t used = st_stats(s).mem_used_total;
    CHECK_EQ(store_set_mem_limit(s, used / 2), 0);
    CHECK_EQ(store_write(s, page, PG, (n + 2) * PG), -ENOSPC);
    CHECK_EQ(store_discard(s, n * 3 / 4 * PG, 0), 0);
    CHECK_EQ(store_write(s, page, PG, (n + 2) * PG), 0);
    CHECK(st_stats(s).mem_used_total <= used / 2);
    store_free(s);
}

/* Fill a new store with pages that do not compress until a write fails; the pages written. */
static uint64_t fill_to_limit(struct store *s, uint64_t size, uint64_t *ret_used)
{
    unsigned char page[PG];
    uint64_t prev = st_stats(s).mem_used_total, n;
    for (n = 0; n < size / PG; n++) {
        test_pattern(page, PG, n, 1);
        if (store_write(s, page, PG, n * PG) < 0)
            break;
        uint64_t used = st_stats(s).mem_used_total;
        if (ret_used)
            ret_used[n] = prev;
        prev = used;
    }
    return n;
}

/*
 * Limits just past where a write grows one of the allocator's tables by a
 * 64 KiB step, which freeing the object does not give back (the handle
 * table at 8192 objects, the descriptors every 1,200 zspages of a page): the
 * first three such writes and the last one in 40 MiB, found on a store
 * without a limit.  Each limit, on a new store filled until a write
 * fails, leaves the pool within it.
 */
static void test_mem_limit_table_step(void)
{
    const uint64_t size = 40u << 20, pages = size / PG;
    uint64_t *before = calloc(pages, sizeof(*before));
    CHECK(before);
    struct store *s = st_new(size, NULL, 0, 0, 0);
    CHECK_EQU(fill_to_limit(s, size, before), pages);
    uint64_t used_end = st_stats(s).mem_used_total;
    store_free(s);

    uint64_t steps[4];
    unsigned found = 0;
    for (uint64_t n = 0; n < pages; n++) {
        uint64_t after = n + 1 < pages ? before[n + 1] : used_end;
        if (after - before[n] > PG)
            steps[found < 4 ? found++ : 3] = before[n]; /* the last one seen stays fourth */
    }
    free(before);
    CHECKF(found == 4, "only %u writes grew a table in %ju pages", found, (uintmax_t)pages);
    printf("tables grew at %ju, %ju, %ju and %ju bytes used\n", (uintmax_t)steps[0],
           (uintmax_t)steps[1], (uintmax_t)steps[2], (uintmax_t)steps[3]);
    const uint64_t offsets[] = { PG, PG + 100, PG + (20u << 10), PG + (64u << 10) - 1 };
    for (unsigned k = 0; k < 4; k++)
        for (unsigned o = 0; o < 4; o++) {
            uint64_t limit = steps[k] + offsets[o];
            s = st_new(size, NULL, 0, limit, 0);
            uint64_t n = fill_to_limit(s, size, NULL);
            struct store_stats st = st_stats(s);
            CHECKF(n < pages && st.mem_used_total <= limit && st.mem_used_max <= limit,
                   "limit %ju: %ju pages in, mem_used_total %ju, mem_used_max %ju",
                   (uintmax_t)limit, (uintmax_t)n, (uintmax_t)st.mem_used_total,
                   (uintmax_t)st.mem_used_max);
            store_free(s);
        }
}

/*
 * Fill, discard three pages of four in a scattered way, and wait for the
 * background thread to notice.  The bound is only against a hang: the
 * thread looks every second.
 */
static void test_auto_compact(void)
{
    struct store *s = st_new(32u << 20, NULL, 0, 0, 10);
    struct test_rng r;
    rng_seed(&r, 11);
    unsigned char page[PG];
    const uint64_t pages = (32u << 20) / PG;
    for (uint64_t i = 0; i < pages; i++) {
        st_text(&r, page, PG);
        CHECK_EQ(store_write(s, page, PG, i * PG), 0);
    }
    CHECK_EQU(st_stats(s).pages_compacted, 0);
    for (uint64_t i = 0; i < pages; i++)
        if (i % 4 != 1)
            CHECK_EQ(store_discard(s, PG, i * PG), 0);
    struct store_stats st;
    for (int waited = 0;; waited++) {
        st = st_stats(s);
        if (st.pages_compacted > 0)
            break;
        CHECKF(waited < 200, "no automatic compaction after 20 s");
        usleep(100 * 1000);
    }
    CHECK(st.compactions >= 1);
    /* The data survived the moves. */
    rng_seed(&r, 11);
    unsigned char buf[PG];
    for (uint64_t i = 0; i < pages; i++) {
        st_text(&r, page, PG);
        if (i % 4 != 1)
            continue;
        CHECK_EQ(store_read(s, buf, PG, i * PG), 0);
        CHECK(memcmp(page, buf, PG) == 0);
    }
    store_free(s);

    /* Started later by setting the threshold. */
    s = st_new(8u << 20, NULL, 0, 0, 0);
    for (uint64_t i = 0; i < 2048; i++) {
        st_text(&r, page, PG);
        CHECK_EQ(store_write(s, page, PG, i * PG), 0);
    }
    for (uint64_t i = 0; i < 2048; i++)
        if (i % 4 != 3)
            CHECK_EQ(store_discard(s, PG, i * PG), 0);
    CHECK_EQ(store_set_compact_threshold(s, 5), 0);
    for (int waited = 0; st_stats(s).pages_compacted == 0; waited++) {
        CHECKF(waited < 200, "no automatic compaction after 20 s");
        usleep(100 * 1000);
    }
    store_free(s);
}

/* A store with a reserve of 1 MiB and the given low_free (store.h). */
static struct store *st_new_reserved(uint64_t low_free)
{
    struct store_config cfg = {
        .size = 8u << 20,
        .reserve = 1u << 20,
        .low_free = low_free,
    };
    struct store *s = store_new(&cfg);
    CHECKF(s, "store_new: %s", strerror(errno));
    return s;
}

/*
 * The reserve's watchdog (doc/store.md, "The reserve"): an idle device
 * keeps its reserve, on a machine short of memory (a low_free no machine
 * has) as on one that is not (1 byte, less than any machine has free); a
 * write then gets memory from it at once.  A second without a request is
 * ten times what the watchdog waits before it gives back when the refill
 * stalls; here the refill finds the reserve full, so nothing may go.
 */
static void test_reserve_idle_kept(void)
{
    const uint64_t low_free[] = { 1, UINT64_MAX };

    for (size_t k = 0; k < sizeof(low_free) / sizeof(low_free[0]); k++) {
        struct store *s = st_new_reserved(low_free[k]);
        for (int looks = 0; looks < 10; looks++) {
            usleep(100 * 1000);
            CHECK_EQU(st_stats(s).reserve_released, 0);
        }
        CHECK_EQU(st_stats(s).reserve_free, 1u << 20);
        unsigned char page[PG];
        memset(page, 0x5c, PG);
        page[7] = 1;
        CHECK_EQ(store_thread_prepare(s), 0);
        CHECK_EQ(store_write(s, page, PG, 0), 0);
        unsigned char back[PG];
        CHECK_EQ(store_read(s, back, PG, 0), 0);
        CHECK(memcmp(page, back, PG) == 0);
        CHECK_EQU(st_stats(s).reserve_misses, 0);
        store_free(s);
    }
}

int main(void)
{
    RUN_TEST(test_discard);
    RUN_TEST(test_seek);
    RUN_TEST(test_extent);
    RUN_TEST(test_mem_limit);
    RUN_TEST(test_mem_limit_table_step);
    RUN_TEST(test_auto_compact);
    RUN_TEST(test_reserve_idle_kept);
    return 0;
}
