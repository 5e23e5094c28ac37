/* SPDX-License-Identifier: MIT */
/*
 * zs_malloc() and zs_size(): the sizes at the edges of the range, of the
 * 16-byte classes and of the large ones, sizes out of range (0 with EINVAL),
 * and handles that are nonzero and distinct.
 */
#include "zstest.h"
#include "u64map.h"

static struct zs_pool *pool;

static void test_edge_sizes(void)
{
    static const size_t sizes[] = { 1,    2,    15,   16,   17,    31,    32,    33,
                                    2047, 2048, 2049, 4080, 4081,  4095,  4096,  4097,
                                    4160, 4161, 8192, 8193, 32768, 32769, 65535, 65536 };
    uint64_t h[sizeof(sizes) / sizeof(sizes[0])];
    uint64_t bytes = 0;

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        errno = 0;
        h[i] = zs_malloc(pool, sizes[i]);
        CHECKF(h[i] != 0, "zs_malloc(%zu) failed: %m", sizes[i]);
        for (size_t j = 0; j < i; j++)
            CHECKF(h[i] != h[j], "zs_malloc(%zu) returned the handle of the live "
                   "object of size %zu", sizes[i], sizes[j]);
        CHECK_EQ(zs_size(pool, h[i]), sizes[i]);
        bytes += sizes[i];
    }
    struct zs_pool_stats s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, sizeof(sizes) / sizeof(sizes[0]));
    CHECK_EQU(s.bytes_stored, bytes);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        CHECK_EQ(zs_size(pool, h[i]), sizes[i]);
        zs_free(pool, h[i]);
    }
    s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, 0);
}

static void test_out_of_range(void)
{
    static const size_t bad[] = { 0,      ZS_MAX_OBJECT_SIZE + 1, ZS_MAX_OBJECT_SIZE + 4096,
                                  131072, (size_t)INT32_MAX + 1,  SIZE_MAX };
    struct zs_pool_stats before = zt_stats(pool);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        uint64_t h = zs_malloc(pool, bad[i]);
        CHECKF(h == 0, "zs_malloc(%zu) returned handle %#" PRIx64 ", want 0",
               bad[i], h);
        CHECKF(errno == EINVAL, "zs_malloc(%zu) set errno %d (%s), want EINVAL",
               bad[i], errno, strerrorname_np(errno) ?: "?");
    }
    struct zs_pool_stats after = zt_check_consistent(pool);
    CHECK_EQU(after.objects, before.objects);
    CHECK_EQU(after.bytes_stored, before.bytes_stored);
    CHECK_EQU(after.pages, before.pages);
}

/* Many objects of random sizes: every handle nonzero, distinct, sized right. */
static void test_many_distinct(void)
{
    enum { N = 50000 };
    struct test_rng rng;
    struct u64map live;
    uint64_t bytes = 0;

    rng_seed(&rng, 42);
    u64map_init(&live, N);
    for (unsigned i = 0; i < N; i++) {
        size_t size = rng_range(&rng, 1, ZS_MAX_ALLOC_SIZE);
        uint64_t h = zs_malloc(pool, size);
        CHECKF(h != 0, "zs_malloc(%zu) #%u failed: %m", size, i);
        CHECKF(!u64map_find(&live, h), "zs_malloc(%zu) #%u returned handle %#" PRIx64
               " which is already live", size, i, h);
        u64map_put(&live, h, size);
    }
    for (size_t i = 0; i <= live.mask; i++) {
        if (!live.keys[i])
            continue;
        CHECK_EQ(zs_size(pool, live.keys[i]), live.vals[i]);
        bytes += live.vals[i];
    }
    struct zs_pool_stats s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, N);
    CHECK_EQU(s.bytes_stored, bytes);
    for (size_t i = 0; i <= live.mask; i++)
        if (live.keys[i])
            zs_free(pool, live.keys[i]);
    s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, 0);
    CHECK_EQU(s.pages, 0);
    CHECK_EQU(s.bad_handles, 0);
    u64map_free(&live);
}

/* The allocator must reuse what is freed rather than grow without bound. */
static void test_reuse(void)
{
    uint64_t peak = 0;
    for (int round = 0; round < 50; round++) {
        uint64_t h[1000];
        for (int i = 0; i < 1000; i++) {
            h[i] = zs_malloc(pool, 700 + (size_t)i);
            CHECK(h[i] != 0);
        }
        struct zs_pool_stats s = zt_stats(pool);
        if (round == 0)
            peak = s.mem_used;
        CHECKF(s.mem_used <= peak + (peak >> 3),
               "round %d: mem_used %" PRIu64 " after the same allocations that "
               "took %" PRIu64 " in round 0", round, s.mem_used, peak);
        for (int i = 0; i < 1000; i++)
            zs_free(pool, h[i]);
    }
}

int main(void)
{
    pool = zs_create(NULL, NULL);
    CHECKF(pool, "zs_create: %m");
    RUN_TEST(test_edge_sizes);
    RUN_TEST(test_out_of_range);
    RUN_TEST(test_many_distinct);
    RUN_TEST(test_out_of_range);
    RUN_TEST(test_reuse);
    zs_destroy(pool);
    return 0;
}
