/* SPDX-License-Identifier: MIT */
/*
 * zs_create() and zs_destroy(): a new pool is empty, destroy accepts NULL and
 * pools holding objects, and destroying gives back every mapping the pool
 * made (repeated create/fill/destroy cycles must not grow the process).
 */
#include "zstest.h"

static void test_create_empty(void)
{
    struct zs_pool *pool = zs_create(NULL, NULL);
    CHECKF(pool, "zs_create(NULL, NULL): %m");
    struct zs_pool_stats s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, 0);
    CHECK_EQU(s.bytes_stored, 0);
    CHECK_EQU(s.zspages, 0);
    CHECK_EQU(s.pages, 0);
    CHECK_EQU(s.pages_compacted, 0);
    CHECK_EQU(s.pages_evicted, 0);
    CHECK_EQU(s.objects_evicted, 0);
    CHECK_EQU(s.bad_handles, 0);
    zs_destroy(pool);
}

static int evict_nothing(struct zs_pool *pool, uint64_t handle, void *arg)
{
    (void)pool, (void)handle, (void)arg;
    return -EIO;
}

static void test_create_with_ops(void)
{
    /* ops is copied: the struct may go away after zs_create(). */
    struct zs_ops *ops = calloc(1, sizeof(*ops));
    CHECK(ops);
    ops->evict = evict_nothing;
    struct zs_pool *pool = zs_create(ops, &ops);
    CHECKF(pool, "zs_create(ops, arg): %m");
    memset(ops, 0xff, sizeof(*ops));
    free(ops);
    uint64_t h = zs_malloc(pool, 100);
    CHECK(h != 0);
    /* The callback refuses, so the shrink fails and nothing is lost. */
    CHECK_EQ(zs_shrink(pool, 1), -EIO);
    CHECK_EQ(zs_size(pool, h), 100);
    zs_destroy(pool);

    /* ops with no evict member is a pool without eviction. */
    struct zs_ops none = { 0 };
    pool = zs_create(&none, NULL);
    CHECKF(pool, "zs_create(&{0}, NULL): %m");
    zs_destroy(pool);
}

static void test_destroy_null(void)
{
    zs_destroy(NULL);
}

/* Fill a pool with objects of many classes and big and small zspages. */
static void fill(struct zs_pool *pool, struct test_rng *rng, unsigned n)
{
    static unsigned char buf[ZS_MAX_ALLOC_SIZE];
    for (unsigned i = 0; i < n; i++) {
        size_t size = rng_range(rng, 1, ZS_MAX_ALLOC_SIZE);
        uint64_t h = zs_malloc(pool, size);
        CHECKF(h != 0, "zs_malloc(%zu): %m", size);
        memset(buf, (int)i, size);
        CHECK_EQ(zs_write(pool, h, buf, size), 0);
        /* Free some, so that destroy meets partly used zspages. */
        if (i % 3 == 0)
            zs_free(pool, h);
    }
}

static void test_destroy_returns_memory(void)
{
    struct test_rng rng;
    rng_seed(&rng, 1);
    uint64_t vm0 = 0, rss0 = 0, vm = 0, rss = 0, peak_vm = 0, peak_rss = 0;
    enum { CYCLES = 20 };

    /* A first cycle, so that one-time set-up (libc, tables) is not counted. */
    struct zs_pool *pool = zs_create(NULL, NULL);
    CHECK(pool);
    fill(pool, &rng, 3000);
    zs_destroy(pool);

    CHECK_EQ(test_statm(&vm0, &rss0), 0);
    for (int c = 0; c < CYCLES; c++) {
        uint64_t vm_start = 0, rss_start = 0;
        CHECK_EQ(test_statm(&vm_start, &rss_start), 0);
        pool = zs_create(NULL, NULL);
        CHECK(pool);
        fill(pool, &rng, 3000);
        CHECK_EQ(test_statm(&vm, &rss), 0);
        /* What one pool adds, measured from this cycle's start. */
        if (vm > vm_start && vm - vm_start > peak_vm)
            peak_vm = vm - vm_start;
        if (rss > rss_start && rss - rss_start > peak_rss)
            peak_rss = rss - rss_start;
        zs_destroy(pool);
    }
    CHECK_EQ(test_statm(&vm, &rss), 0);
    printf("one live pool: +%.1f MiB virtual, +%.1f MiB resident; after %d "
           "cycles: %+.1f MiB virtual, %+.1f MiB resident\n",
           test_mib(peak_vm), test_mib(peak_rss), CYCLES,
           (double)(int64_t)(vm - vm0) / 1048576.0,
           (double)(int64_t)(rss - rss0) / 1048576.0);
    /*
     * A pool that leaks its mappings leaks them every cycle: 20 times what
     * one pool holds.  Allow what one pool held plus 8 MiB of libc noise.
     */
    CHECKF(vm <= vm0 + peak_vm + (8u << 20),
           "virtual size grew by %.1f MiB over %d create/destroy cycles (one pool "
           "maps %.1f MiB): zs_destroy() does not unmap everything",
           (double)(int64_t)(vm - vm0) / 1048576.0, CYCLES, test_mib(peak_vm));
    CHECKF(rss <= rss0 + peak_rss / 2 + (4u << 20),
           "resident set grew by %.1f MiB over %d create/destroy cycles (one pool "
           "held %.1f MiB): zs_destroy() does not return memory",
           (double)(int64_t)(rss - rss0) / 1048576.0, CYCLES, test_mib(peak_rss));
}

static void test_many_pools(void)
{
    /* Pools are independent: the same sizes in two pools, different data. */
    enum { N = 64 };
    struct zs_pool *pools[N];
    uint64_t handles[N];
    for (int i = 0; i < N; i++) {
        pools[i] = zs_create(NULL, NULL);
        CHECKF(pools[i], "pool %d: %m", i);
        handles[i] = zs_malloc(pools[i], 333);
        CHECK(handles[i] != 0);
        unsigned char buf[333];
        memset(buf, i, sizeof(buf));
        CHECK_EQ(zs_write(pools[i], handles[i], buf, sizeof(buf)), 0);
    }
    for (int i = 0; i < N; i++) {
        unsigned char buf[ZS_MAX_ALLOC_SIZE], want[333];
        memset(want, i, sizeof(want));
        CHECK_EQ(zs_read(pools[i], handles[i], buf), 333);
        CHECKF(memcmp(buf, want, sizeof(want)) == 0, "pool %d holds another pool's data", i);
        struct zs_pool_stats s = zt_check_consistent(pools[i]);
        CHECK_EQU(s.objects, 1);
    }
    for (int i = 0; i < N; i++)
        zs_destroy(pools[i]);
}

int main(void)
{
    RUN_TEST(test_create_empty);
    RUN_TEST(test_create_with_ops);
    RUN_TEST(test_destroy_null);
    RUN_TEST(test_many_pools);
    RUN_TEST(test_destroy_returns_memory);
    return 0;
}
