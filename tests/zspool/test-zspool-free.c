/* SPDX-License-Identifier: MIT */
/*
 * zs_free(): a freed handle is stale for zs_read/zs_size/zs_write/zs_map,
 * freeing it again is counted in bad_handles and harms nothing, even after
 * its slot has been given to a new object; zs_free(0) does nothing; handles
 * that were never issued are refused the same way.
 */
#include "zstest.h"
#include "u64map.h"

static struct zs_pool *pool;

static void test_stale(void)
{
    unsigned char buf[ZS_MAX_ALLOC_SIZE];
    uint64_t h = zs_malloc(pool, 1234);
    CHECK(h);
    memset(buf, 0x11, 1234);
    CHECK_EQ(zs_write(pool, h, buf, 1234), 0);
    zs_free(pool, h);

    memset(buf, 0x22, sizeof(buf));
    CHECK_EQ(zs_read(pool, h, buf), -ESTALE);
    for (size_t i = 0; i < sizeof(buf); i++)
        CHECKF(buf[i] == 0x22, "zs_read(stale) wrote dst[%zu]", i);
    CHECK_EQ(zs_size(pool, h), -ESTALE);
    CHECK_EQ(zs_write(pool, h, buf, 10), -ESTALE);
    errno = 0;
    CHECK(zs_map(pool, h, NULL) == NULL);
    CHECK_EQ(errno, ESTALE);

    struct zs_pool_stats s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, 0);
    CHECK_EQU(s.bytes_stored, 0);
    CHECK_EQU(s.pages, 0);
    CHECK_EQU(s.zspages, 0);
    CHECK_EQU(s.bad_handles, 0);
}

static void test_double_free(void)
{
    unsigned char buf[ZS_MAX_ALLOC_SIZE], got[ZS_MAX_ALLOC_SIZE];
    uint64_t keep = zs_malloc(pool, 300);
    CHECK(keep);
    memset(buf, 0x33, 300);
    CHECK_EQ(zs_write(pool, keep, buf, 300), 0);

    uint64_t h = zs_malloc(pool, 300);
    CHECK(h);
    zs_free(pool, h);
    struct zs_pool_stats s0 = zt_stats(pool);
    zs_free(pool, h);
    struct zs_pool_stats s1 = zt_check_consistent(pool);
    CHECK_EQU(s1.bad_handles, s0.bad_handles + 1);
    CHECK_EQU(s1.objects, 1);
    CHECK_EQU(s1.bytes_stored, 300);
    CHECK_EQ(zs_read(pool, keep, got), 300);
    CHECKF(memcmp(got, buf, 300) == 0, "freeing a stale handle changed another object");

    /*
     * The pool will likely give the freed slot to the next object of the same
     * size; the old handle must not reach it (the generation differs).
     */
    for (int round = 0; round < 100; round++) {
        uint64_t h2 = zs_malloc(pool, 300);
        CHECK(h2);
        CHECKF(h2 != h, "round %d: zs_malloc() handed out the freed handle %#" PRIx64
               " again", round, h);
        memset(buf, round, 300);
        CHECK_EQ(zs_write(pool, h2, buf, 300), 0);
        uint64_t bad0 = zt_stats(pool).bad_handles;
        zs_free(pool, h);
        CHECK_EQ(zs_read(pool, h, got), -ESTALE);
        CHECK_EQU(zt_stats(pool).bad_handles, bad0 + 1);
        CHECKF(zs_read(pool, h2, got) == 300 && memcmp(got, buf, 300) == 0,
               "round %d: zs_free(stale handle %#" PRIx64 ") freed or changed the "
               "new object %#" PRIx64 " in its slot", round, h, h2);
        zs_free(pool, h2);
        h = h2;
    }
    zs_free(pool, keep);
    struct zs_pool_stats s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, 0);
    CHECK_EQU(s.bad_handles, s0.bad_handles + 1 + 100);
}

static void test_free_zero(void)
{
    uint64_t h = zs_malloc(pool, 50);
    CHECK(h);
    struct zs_pool_stats s0 = zt_stats(pool);
    zs_free(pool, 0);
    struct zs_pool_stats s1 = zt_check_consistent(pool);
    CHECKF(s1.bad_handles == s0.bad_handles, "zs_free(0) counted as a bad handle");
    CHECK_EQU(s1.objects, s0.objects);
    CHECK_EQ(zs_size(pool, h), 50);
    CHECK_EQ(zs_size(pool, 0), -ESTALE);
    zs_free(pool, h);
}

/*
 * Values that were never handed out: refused (-ESTALE), and zs_free()
 * counts them and touches no live object.  A bogus value could in principle
 * equal a live handle; those are skipped.
 */
static void test_bogus_handles(void)
{
    enum { N = 2000 };
    static uint64_t live[N];
    static unsigned char buf[ZS_MAX_ALLOC_SIZE];
    struct u64map set;
    struct test_rng rng;

    rng_seed(&rng, 99);
    u64map_init(&set, N);
    for (int i = 0; i < N; i++) {
        size_t size = 1 + (size_t)i % ZS_MAX_ALLOC_SIZE;
        live[i] = zs_malloc(pool, size);
        CHECK(live[i]);
        test_pattern(buf, size, live[i], 0);
        CHECK_EQ(zs_write(pool, live[i], buf, size), 0);
        u64map_put(&set, live[i], size);
    }
    /* Free every other one, so stale slots sit among live ones. */
    for (int i = 0; i < N; i += 2) {
        zs_free(pool, live[i]);
        u64map_del(&set, live[i]);
    }

    uint64_t bogus[64 * 3 + 16];
    unsigned nb = 0;
    static const uint64_t fixed[] = { 1, 2, 3, 0xff, 0xffffffffull, 0x100000000ull,
                                      0xdeadbeefdeadbeefull, 0x8000000000000000ull,
                                      UINT64_MAX, UINT64_MAX - 1 };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        bogus[nb++] = fixed[i];
    /* Live handles with one bit flipped: a neighbouring slot or generation. */
    for (int b = 0; b < 64; b++) {
        bogus[nb++] = live[1] ^ (1ull << b);
        bogus[nb++] = live[N - 1] ^ (1ull << b);
        bogus[nb++] = rng_next(&rng);
    }

    unsigned tried = 0;
    for (unsigned i = 0; i < nb; i++) {
        uint64_t b = bogus[i];
        if (b == 0 || u64map_find(&set, b))
            continue;
        tried++;
        CHECKF(zs_size(pool, b) == -ESTALE, "zs_size(never issued %#" PRIx64 ") = %d",
               b, zs_size(pool, b));
        CHECKF(zs_read(pool, b, buf) == -ESTALE, "zs_read(never issued %#" PRIx64
               ") did not fail with -ESTALE", b);
        uint64_t bad0 = zt_stats(pool).bad_handles;
        zs_free(pool, b);
        CHECKF(zt_stats(pool).bad_handles == bad0 + 1, "zs_free(never issued %#"
               PRIx64 ") not counted as a bad handle", b);
    }
    printf("%u bogus handles refused\n", tried);

    struct zs_pool_stats s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, set.count);
    for (int i = 1; i < N; i += 2) {
        static unsigned char want[ZS_MAX_ALLOC_SIZE];
        size_t size = 1 + (size_t)i % ZS_MAX_ALLOC_SIZE;
        test_pattern(want, size, live[i], 0);
        CHECK_EQ(zs_read(pool, live[i], buf), size);
        CHECKF(memcmp(buf, want, size) == 0, "live object %d damaged by bogus frees", i);
        zs_free(pool, live[i]);
    }
    s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, 0);
    CHECK_EQU(s.pages, 0);
    u64map_free(&set);
}

/* Frees in every order leave the pool empty with nothing resident. */
static void test_free_orders(void)
{
    enum { N = 5000 };
    static uint64_t h[N];
    struct test_rng rng;
    rng_seed(&rng, 5);
    for (int order = 0; order < 3; order++) {
        for (int i = 0; i < N; i++) {
            h[i] = zs_malloc(pool, rng_range(&rng, 1, ZS_MAX_ALLOC_SIZE));
            CHECK(h[i]);
        }
        if (order == 2) /* shuffle */
            for (int i = N - 1; i > 0; i--) {
                int j = (int)rng_below(&rng, (uint64_t)i + 1);
                uint64_t t = h[i];
                h[i] = h[j];
                h[j] = t;
            }
        for (int i = 0; i < N; i++)
            zs_free(pool, h[order == 1 ? N - 1 - i : i]);
        struct zs_pool_stats s = zt_check_consistent(pool);
        CHECKF(s.objects == 0 && s.pages == 0 && s.zspages == 0 && s.bytes_stored == 0,
               "order %d: after freeing everything: %" PRIu64 " objects, %" PRIu64
               " pages, %" PRIu64 " zspages", order, s.objects, s.pages, s.zspages);
    }
}

int main(void)
{
    pool = zs_create(NULL, NULL);
    CHECKF(pool, "zs_create: %m");
    RUN_TEST(test_stale);
    RUN_TEST(test_double_free);
    RUN_TEST(test_free_zero);
    RUN_TEST(test_bogus_handles);
    RUN_TEST(test_free_orders);
    zs_destroy(pool);
    return 0;
}
