/* SPDX-License-Identifier: MIT */
/*
 * Writeback through the store's API, on a backing file: writing back by
 * hand (all, idle, huge, with a limit), reads from the backing store, what
 * overwrites and discards give back, idle marking, promotion of pages read
 * twice, recompression, writes that wait for eviction, and a backing store
 * too small for what is asked of it.  The eviction policies themselves run
 * in the model test; faults of a real backing server in tests/integration.
 */
#include "storetest.h"

#include <fcntl.h>
#include <unistd.h>

#include "backing.h"

#define SIZE (8u << 20)
#define NPG (SIZE / PG)

/* A store with a fresh backing file of backing_size bytes; cfg fields beyond
 * size, codec and backing come from *extra (may be NULL). */
static struct st_backed wb_new(uint64_t backing_size, const struct store_config *extra)
{
    struct st_backed w;
    w.b = st_backing_new(w.path, backing_size);
    struct store_config cfg = extra ? *extra : (struct store_config){ 0 };
    cfg.size = SIZE;
    cfg.backing = w.b;
    w.s = store_new(&cfg);
    CHECKF(w.s, "store_new: %s", strerror(errno));
    return w;
}

static void check_content(struct store *s, const unsigned char *data, uint64_t len)
{
    _cleanup_free_ unsigned char *buf = malloc(len);
    CHECK(buf);
    CHECK_EQ(store_read(s, buf, len, 0), 0);
    for (uint64_t i = 0; i < len; i += PG)
        CHECKF(memcmp(buf + i, data + i, PG) == 0, "page %ju differs", (uintmax_t)(i / PG));
}

/* 64 pages: even ones text (compressible), odd ones random (huge), and one zero page. */
static unsigned char *make_data(void)
{
    struct test_rng r;
    rng_seed(&r, 7);
    unsigned char *data = malloc(64 * PG);
    CHECK(data);
    for (unsigned i = 0; i < 64; i++) {
        if (i % 2)
            rng_fill(&r, data + i * PG, PG);
        else
            st_text(&r, data + i * PG, PG);
    }
    memset(data + 10 * PG, 0, PG);
    return data;
}

static void test_writeback_by_hand(void)
{
    struct st_backed w = wb_new(SIZE, NULL);
    _cleanup_free_ unsigned char *data = make_data();
    CHECK_EQ(store_write(w.s, data, 64 * PG, 0), 0);
    struct store_stats st = st_stats(w.s);
    CHECK(st.has_backing);
    CHECK_EQU(st.bd_blocks, NPG);
    CHECK_EQU(st.huge_pages, 32);
    uint64_t mem_before = st.mem_used_total;

    /* Bad selections; a limit. */
    CHECK_EQ(store_writeback(w.s, 0, 0), -EINVAL);
    CHECK_EQ(store_writeback(w.s, STORE_SEL_ALL | STORE_SEL_HUGE, 0), -EINVAL);
    CHECK_EQ(store_writeback(w.s, 1u << 7, 0), -EINVAL);
    struct store_progress p = { .selected = 1, .done = 1 };
    store_progress(w.s, &p);
    CHECK(p.selected == 0 && p.done == 0);
    CHECK_EQ(store_writeback(w.s, STORE_SEL_HUGE, 5), 5);
    CHECK_EQU(st_stats(w.s).bd_count, 5);
    /* The progress of the last job: 32 huge pages, the limit's 5 selected. */
    store_progress(w.s, &p);
    CHECK_EQU(p.selected, 5);
    CHECK_EQU(p.done, 5);
    /* huge: only the random pages; the zero page never goes. */
    CHECK_EQ(store_writeback(w.s, STORE_SEL_HUGE, 0), 27);
    store_progress(w.s, &p);
    CHECK_EQU(p.selected, 27);
    CHECK_EQU(p.done, 27);
    CHECK_EQ(store_writeback(w.s, STORE_SEL_ALL, 0), 31);
    st = st_stats(w.s);
    CHECK_EQU(st.bd_count, 63);
    CHECK_EQU(st.bd_writes, 63);
    CHECK_EQU(st.orig_data_size, PG);   /* the zero page, in memory */
    CHECK_EQU(st.huge_pages, 0);
    CHECK_EQU(st.compr_data_size, 0);
    CHECK_EQU(st_blocks_used(w.b), 63);
    CHECK(store_compact(w.s) >= 0);
    CHECK(st_stats(w.s).mem_used_total < mem_before);
    CHECK_EQ(store_writeback(w.s, STORE_SEL_ALL, 0), 0);

    /* Everything reads back from the backing file; no limit: no promotion. */
    check_content(w.s, data, 64 * PG);
    check_content(w.s, data, 64 * PG);
    st = st_stats(w.s);
    CHECK_EQU(st.bd_reads, 126);
    CHECK_EQU(st.pages_promoted, 0);
    CHECK_EQU(st.bd_count, 63);

    /* Partial overwrite of a written-back page: read, modified, back in memory. */
    memset(data + 3 * PG + 100, 'z', 50);
    CHECK_EQ(store_write(w.s, data + 3 * PG + 100, 50, 3 * PG + 100), 0);
    /* Whole overwrite, and a discard: their blocks are given back. */
    memset(data + 4 * PG, 'y', PG);
    CHECK_EQ(store_write(w.s, data + 4 * PG, PG, 4 * PG), 0);
    CHECK_EQ(store_discard(w.s, 2 * PG, 20 * PG), 0);
    memset(data + 20 * PG, 0, 2 * PG);
    st = st_stats(w.s);
    CHECK_EQU(st.bd_count, 59);
    CHECK_EQU(st_blocks_used(w.b), 59);
    check_content(w.s, data, 64 * PG);

    CHECK_EQ(store_discard(w.s, SIZE, 0), 0);
    CHECK_EQU(st_stats(w.s).bd_count, 0);
    CHECK_EQU(st_blocks_used(w.b), 0);
    st_backed_free(&w);
}

static void test_idle(void)
{
    struct st_backed w = wb_new(SIZE, NULL);
    _cleanup_free_ unsigned char *data = make_data();
    unsigned char page[PG];
    CHECK_EQ(store_write(w.s, data, 64 * PG, 0), 0);
    /* Nothing is an hour old. */
    CHECK_EQ(store_mark_idle(w.s, 3600), 0);
    CHECK_EQU(st_stats(w.s).idle_pages, 0);
    /* all: every object (63: the zero page holds none). */
    CHECK_EQ(store_mark_idle(w.s, 0), 63);
    CHECK_EQU(st_stats(w.s).idle_pages, 63);
    /* Reading or writing a page makes it busy again. */
    CHECK_EQ(store_read(w.s, page, PG, 0), 0);
    CHECK_EQ(store_write(w.s, data + PG, PG, PG), 0);
    CHECK_EQ(store_read(w.s, page, 100, 2 * PG + 7), 0);
    CHECK_EQU(st_stats(w.s).idle_pages, 60);
    /* huge_idle: random pages still idle (odd ones but slot 1). */
    CHECK_EQ(store_writeback(w.s, STORE_SEL_HUGE | STORE_SEL_IDLE, 0), 31);
    /* idle: the text pages still idle (even ones but 0, 2 and the zero page 10). */
    CHECK_EQ(store_writeback(w.s, STORE_SEL_IDLE, 0), 29);
    struct store_stats st = st_stats(w.s);
    CHECK_EQU(st.bd_count, 60);
    CHECK_EQU(st.idle_pages, 0);
    CHECK_EQU(st.orig_data_size, 4 * PG);
    check_content(w.s, data, 64 * PG);
    st_backed_free(&w);
}

static void test_promotion(void)
{
    struct store_config cfg = { .mem_limit = 4u << 20 };
    struct st_backed w = wb_new(SIZE, &cfg);
    _cleanup_free_ unsigned char *data = make_data();
    unsigned char page[PG];
    CHECK_EQ(store_write(w.s, data, 64 * PG, 0), 0);
    CHECK_EQ(store_writeback(w.s, STORE_SEL_ALL, 0), 63);
    /* Once: served from the backing store, left there. */
    CHECK_EQ(store_read(w.s, page, PG, 5 * PG), 0);
    CHECK(memcmp(page, data + 5 * PG, PG) == 0);
    struct store_stats st = st_stats(w.s);
    CHECK_EQU(st.pages_promoted, 0);
    CHECK_EQU(st.bd_count, 63);
    /* Twice: brought back, its block freed; later reads come from memory. */
    CHECK_EQ(store_read(w.s, page, PG, 5 * PG), 0);
    CHECK(memcmp(page, data + 5 * PG, PG) == 0);
    st = st_stats(w.s);
    CHECK_EQU(st.pages_promoted, 1);
    CHECK_EQU(st.bd_count, 62);
    CHECK_EQU(st_blocks_used(w.b), 62);
    CHECK_EQ(store_read(w.s, page, PG, 5 * PG), 0);
    CHECK_EQU(st_stats(w.s).bd_reads, 2);
    check_content(w.s, data, 64 * PG);
    st_backed_free(&w);
}

static void test_recompress(void)
{
    struct store_config cfg = { .recomp_codec = codec_find("zstd"), .recomp_level = 19 };
    if (!cfg.recomp_codec) {
        printf("  zstd not built: skipped\n");
        return;
    }
    /* Without a second codec: ENOTSUP; with no backing store, writeback too. */
    struct store *plain = st_new(SIZE, NULL, 0, 0, 0);
    CHECK_EQ(store_recompress(plain, STORE_SEL_IDLE, 0), -ENOTSUP);
    CHECK_EQ(store_writeback(plain, STORE_SEL_ALL, 0), -ENOTSUP);
    CHECK_EQ(store_mark_idle(plain, 0), 0);
    store_free(plain);

    struct st_backed w = wb_new(SIZE, &cfg);
    _cleanup_free_ unsigned char *data = make_data();
    CHECK_EQ(store_write(w.s, data, 64 * PG, 0), 0);
    CHECK_EQ(store_recompress(w.s, STORE_SEL_ALL, 0), -EINVAL);
    /* Nothing idle yet. */
    CHECK_EQ(store_recompress(w.s, STORE_SEL_IDLE, 0), 0);
    /* Random pages do not shrink. */
    CHECK_EQ(store_recompress(w.s, STORE_SEL_HUGE, 0), 0);
    uint64_t compr = st_stats(w.s).compr_data_size;
    CHECK_EQ(store_mark_idle(w.s, 0), 63);
    /* A threshold above every object: nothing taken. */
    CHECK_EQ(store_recompress(w.s, STORE_SEL_IDLE, PG + 1), 0);
    int64_t n = store_recompress(w.s, STORE_SEL_IDLE, 0);
    printf("  recompressed %jd of 31 text pages\n", (intmax_t)n);
    CHECK(n > 0 && n <= 31);
    /* Every idle page was tried, and counted as done, kept or not. */
    struct store_progress p;
    store_progress(w.s, &p);
    CHECK_EQU(p.selected, 63);
    CHECK_EQU(p.done, 63);
    struct store_stats st = st_stats(w.s);
    CHECK_EQU(st.recompressed, (uint64_t)n);
    CHECK(st.compr_data_size < compr);
    /* Done already: passed by. */
    CHECK_EQ(store_recompress(w.s, STORE_SEL_IDLE, 0), 0);
    check_content(w.s, data, 64 * PG);
    /* Recompressed pages go to the backing store and come back as they were. */
    CHECK_EQ(store_writeback(w.s, STORE_SEL_ALL, 0), 63);
    CHECK_EQU(st_stats(w.s).recompressed, 0);
    check_content(w.s, data, 64 * PG);
    st_backed_free(&w);
}

/* Random pages far beyond the limit: every write succeeds, by eviction. */
static void test_write_waits(void)
{
    struct store_config cfg = { .mem_limit = 1u << 20, .high_wm_pct = 99, .low_wm_pct = 50 };
    struct st_backed w = wb_new(SIZE, &cfg);
    struct test_rng r;
    rng_seed(&r, 3);
    _cleanup_free_ unsigned char *data = malloc(SIZE);
    CHECK(data);
    rng_fill(&r, data, SIZE);
    for (uint64_t off = 0; off < SIZE; off += 16 * PG)
        CHECK_EQ(store_write(w.s, data + off, 16 * PG, off), 0);
    struct store_stats st = st_stats(w.s);
    printf("  8 MiB through 1 MiB: bd_writes %ju, evictions %ju, write_waits %ju, mem_used_max %ju\n",
           (uintmax_t)st.bd_writes, (uintmax_t)st.evictions, (uintmax_t)st.write_waits,
           (uintmax_t)st.mem_used_max);
    CHECK(st.bd_writes > 0);
    CHECK_EQU(st.failed_writes, 0);
    /* Single-threaded, the limit is never passed. */
    CHECK(st.mem_used_max <= cfg.mem_limit);
    check_content(w.s, data, SIZE);
    /* Lowering the watermarks makes the thread evict down to the new low one. */
    CHECK_EQ(store_set_watermarks(w.s, 50, 50), -EINVAL);
    CHECK_EQ(store_set_watermarks(w.s, 101, 50), -EINVAL);
    CHECK_EQ(store_set_watermarks(w.s, 40, 0), -EINVAL);
    CHECK_EQ(store_set_watermarks(w.s, 40, 20), 0);
    st = st_stats(w.s);
    CHECK_EQU(st.high_watermark, 40);
    CHECK_EQU(st.low_watermark, 20);
    CHECK_EQU(st.wb_high, (1u << 20) / 100 * 40 + (1u << 20) % 100 * 40 / 100);
    st_backed_free(&w);
}

/* A backing store of 16 blocks and a limit: writes fail only when both are full. */
static void test_backing_full(void)
{
    struct store_config cfg = { .mem_limit = 512u << 10 };
    struct st_backed w = wb_new(16 * PG, &cfg);
    CHECK_EQU(st_stats(w.s).bd_blocks, 16);
    struct test_rng r;
    rng_seed(&r, 5);
    _cleanup_free_ unsigned char *data = malloc(SIZE);
    CHECK(data);
    rng_fill(&r, data, SIZE);
    uint64_t off = 0;
    int ret = 0;
    for (; off < SIZE; off += PG)
        if ((ret = store_write(w.s, data + off, PG, off)) != 0)
            break;
    CHECK_EQ(ret, -ENOSPC);
    struct store_stats st = st_stats(w.s);
    printf("  %ju pages stored before ENOSPC, %ju written back\n", (uintmax_t)(off / PG),
           (uintmax_t)st.bd_count);
    CHECK_EQU(st.bd_count, 16);
    CHECK(off / PG > 16);
    /* Nothing stored before was lost. */
    check_content(w.s, data, off);
    /* Discarding frees room in both tiers: writes work again. */
    CHECK_EQ(store_discard(w.s, off, 0), 0);
    CHECK_EQU(st_blocks_used(w.b), 0);
    CHECK_EQ(store_write(w.s, data, 64 * PG, 0), 0);
    check_content(w.s, data, 64 * PG);
    st_backed_free(&w);
}

/*
 * A backing store that lost or changed data (a server restarted empty, a
 * file overwritten with another page in clear): the blocks' seals turn
 * those pages' reads into EIO, counted in bd_bad_sums, and only theirs.
 */
static void test_checksum(void)
{
    struct st_backed w = wb_new(SIZE, NULL);
    _cleanup_free_ unsigned char *data = make_data();
    unsigned char page[PG];
    CHECK_EQ(store_write(w.s, data, 64 * PG, 0), 0);
    CHECK_EQ(store_writeback(w.s, STORE_SEL_ALL, 0), 63);
    /*
     * Blocks are handed out in order: slot 0 is in block 0, slot 1 in block
     * 1, at 4096 and 8192 in the file (after the header).
     */
    int fd = open(w.path, O_WRONLY);
    CHECK(fd >= 0);
    static const unsigned char zeros[PG];
    CHECK_EQ(pwrite(fd, zeros, PG, PG), (ssize_t)PG);             /* lost: zeros */
    CHECK_EQ(pwrite(fd, data + 3 * PG, PG, 2 * PG), (ssize_t)PG); /* another page */
    close(fd);
    CHECK_EQ(store_read(w.s, page, PG, 0), -EIO);
    CHECK_EQ(store_read(w.s, page, 100, PG + 5), -EIO);
    struct store_stats st = st_stats(w.s);
    CHECK_EQU(st.bd_bad_sums, 2);
    CHECK_EQU(st.failed_reads, 2);
    /* The other pages are intact, and the two can be written anew. */
    _cleanup_free_ unsigned char *buf = malloc(62 * PG);
    CHECK(buf);
    CHECK_EQ(store_read(w.s, buf, 62 * PG, 2 * PG), 0);
    CHECK(memcmp(buf, data + 2 * PG, 62 * PG) == 0);
    CHECK_EQ(store_write(w.s, data, 2 * PG, 0), 0);
    check_content(w.s, data, 64 * PG);
    st_backed_free(&w);
}

int main(void)
{
    RUN_TEST(test_writeback_by_hand);
    RUN_TEST(test_idle);
    RUN_TEST(test_promotion);
    RUN_TEST(test_recompress);
    RUN_TEST(test_write_waits);
    RUN_TEST(test_backing_full);
    RUN_TEST(test_checksum);
    return 0;
}
