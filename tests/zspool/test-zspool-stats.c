/* SPDX-License-Identifier: MIT */
/*
 * zs_get_stats() and the per-class figures after a known sequence: object
 * and byte counts, zspages filled before new ones are opened, resident pages
 * between what the bytes need and what the zspages span, fullness groups,
 * mem_used = pages * 4096 + metadata_bytes, and all back to zero at the end;
 * zs_meta_growth() bounds the metadata each allocation adds.
 */
#include "zstest.h"

static struct zs_pool *pool;

static uint64_t div_up(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

/* Fill one class object by object and check its figures at each step. */
static void fill_class(size_t size, unsigned zspages_wanted)
{
    unsigned idx = zt_class_for(pool, size);
    struct zs_class_stats c = zt_class(pool, idx);
    unsigned opz = c.objs_per_zspage, ppz = c.pages_per_zspage;
    unsigned n = opz * zspages_wanted;
    uint64_t *h = calloc(n, sizeof(*h));
    CHECK(h);
    struct zs_pool_stats base = zt_stats(pool);
    CHECK_EQU(c.objects, 0);

    printf("size %zu: class %u (slot %u), %u objects in %u pages per zspage\n",
           size, idx, c.size, opz, ppz);
    for (unsigned i = 0; i < n; i++) {
        h[i] = zs_malloc(pool, size);
        CHECKF(h[i], "zs_malloc(%zu): %m", size);
        unsigned k = i + 1; /* objects now */
        struct zs_pool_stats s = zt_check_consistent(pool);
        c = zt_class(pool, idx);
        CHECK_EQU(s.objects, base.objects + k);
        CHECK_EQU(s.bytes_stored, base.bytes_stored + (uint64_t)k * size);
        CHECK_EQU(c.objects, k);
        CHECK_EQU(c.bytes_stored, (uint64_t)k * size);
        CHECKF(c.zspages == div_up(k, opz), "%u objects of %zu bytes, %u per zspage, "
               "take %" PRIu64 " zspages: partly used zspages must fill first",
               k, size, opz, c.zspages);
        CHECK_EQU(s.zspages, base.zspages + c.zspages);
        /* Resident pages: at least what the bytes need, at most what is spanned. */
        uint64_t lo = div_up((uint64_t)k * size, ZT_PAGE);
        uint64_t hi = c.zspages * ppz;
        CHECKF(c.pages >= lo && c.pages <= hi, "%u objects of %zu bytes: %" PRIu64
               " resident pages, want %" PRIu64 "..%" PRIu64, k, size, c.pages, lo, hi);
        CHECK_EQU(s.pages, base.pages + c.pages);
        /* Full zspages sit in group 10; at most one partly used one. */
        CHECKF(c.fullness[ZS_FULLNESS_GROUPS - 1] == k / opz,
               "%u objects, %u per zspage: %" PRIu64 " zspages in the full group",
               k, opz, c.fullness[ZS_FULLNESS_GROUPS - 1]);
    }
    /* Full zspages are resident throughout. */
    c = zt_class(pool, idx);
    CHECKF(c.pages == (uint64_t)zspages_wanted * ppz, "%u full zspages of %u pages: %"
           PRIu64 " resident pages", zspages_wanted, ppz, c.pages);

    /* Free one object of the first zspage: it leaves the full group. */
    zs_free(pool, h[0]);
    c = zt_class(pool, idx);
    CHECK_EQU(c.fullness[ZS_FULLNESS_GROUPS - 1], zspages_wanted - 1);
    CHECK_EQU(c.objects, n - 1);
    if (opz > 1)
        CHECK_EQU(c.zspages, zspages_wanted);
    zt_check_consistent(pool);

    /* Free the rest: the class empties, every zspage and page goes. */
    for (unsigned i = 1; i < n; i++) {
        zs_free(pool, h[i]);
        if (i % 7 == 0)
            zt_check_consistent(pool);
    }
    c = zt_class(pool, idx);
    CHECK_EQU(c.objects, 0);
    CHECK_EQU(c.bytes_stored, 0);
    CHECK_EQU(c.zspages, 0);
    CHECK_EQU(c.pages, 0);
    struct zs_pool_stats s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, base.objects);
    CHECK_EQU(s.pages, base.pages);
    CHECK_EQU(s.zspages, base.zspages);
    free(h);
}

static void test_fill_classes(void)
{
    static const size_t sizes[] = { 1, 17, 100, 700, 1000, 1500, 2048, 3000, 3500,
                                    4095, 4096 };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        fill_class(sizes[i], 3);
}

/* Many classes at once: totals are sums; metadata is counted in mem_used. */
static void test_mixed(void)
{
    enum { N = 20000 };
    static uint64_t h[N];
    static size_t sz[N];
    struct test_rng rng;
    uint64_t bytes = 0;

    rng_seed(&rng, 3);
    struct zs_pool_stats s0 = zt_check_consistent(pool);
    for (int i = 0; i < N; i++) {
        sz[i] = rng_range(&rng, 1, ZS_MAX_ALLOC_SIZE);
        h[i] = zs_malloc(pool, sz[i]);
        CHECK(h[i]);
        bytes += sz[i];
    }
    struct zs_pool_stats s = zt_check_consistent(pool);
    zt_print_stats("20000 objects", &s);
    CHECK_EQU(s.objects, N);
    CHECK_EQU(s.bytes_stored, bytes);
    CHECKF(s.pages * ZT_PAGE >= bytes, "%" PRIu64 " bytes stored in %" PRIu64 " pages",
           bytes, s.pages);
    /* Random sizes waste at most a slot step each and some zspage tails. */
    CHECKF(s.pages * ZT_PAGE <= bytes + bytes / 4, "%" PRIu64 " bytes take %" PRIu64
           " pages (%.0f%% overhead)", bytes, s.pages,
           100.0 * ((double)s.pages * ZT_PAGE / (double)bytes - 1));
    CHECKF(s.metadata_bytes > 0, "20000 objects and no metadata counted");
    CHECKF(s.metadata_bytes < s.pages * ZT_PAGE / 4, "metadata %" PRIu64 " bytes for %"
           PRIu64 " pages", s.metadata_bytes, s.pages);
    CHECK(s.metadata_bytes >= s0.metadata_bytes);

    /* Free every second one: counts halve, nothing else changes. */
    for (int i = 0; i < N; i += 2) {
        zs_free(pool, h[i]);
        bytes -= sz[i];
    }
    s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, N / 2);
    CHECK_EQU(s.bytes_stored, bytes);
    CHECK_EQU(s.bad_handles, 0);
    CHECK_EQU(s.pages_evicted, 0);
    CHECK_EQU(s.objects_evicted, 0);
    for (int i = 1; i < N; i += 2)
        zs_free(pool, h[i]);
    s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, 0);
    CHECK_EQU(s.bytes_stored, 0);
    CHECK_EQU(s.pages, 0);
    CHECK_EQU(s.zspages, 0);
    CHECK_EQU(s.mem_used, s.metadata_bytes);
}

/*
 * zs_meta_growth() on a pool of its own: no allocation adds more metadata
 * than it said beforehand; some do add (tables fill and grow, so the check
 * is not vacuous), and nearly all are told 0 (the bound is not a constant).
 * One operation in four frees, so freed handles and zspages are reused.
 */
static void test_meta_growth(void)
{
    enum { N = 24000 };
    static uint64_t h[N];
    struct zs_pool *p = zs_create(NULL, NULL);
    CHECKF(p, "zs_create: %m");
    struct test_rng rng;
    unsigned live = 0, grew = 0, warned = 0;

    rng_seed(&rng, 5);
    for (unsigned i = 0; i < N; i++) {
        if (live && rng_below(&rng, 4) == 0) {
            unsigned k = (unsigned)rng_below(&rng, live);
            zs_free(p, h[k]);
            h[k] = h[--live];
        }
        size_t size = rng_below(&rng, 50) == 0
                          ? rng_range(&rng, ZS_MAX_ALLOC_SIZE + 1, ZS_MAX_OBJECT_SIZE)
                          : rng_range(&rng, 1, ZS_MAX_ALLOC_SIZE);
        uint64_t bound = zs_meta_growth(p, size);
        uint64_t before = zt_stats(p).metadata_bytes;
        h[live] = zs_malloc(p, size);
        CHECKF(h[live], "zs_malloc(%zu): %m", size);
        live++;
        uint64_t after = zt_stats(p).metadata_bytes;
        CHECKF(after <= before + bound,
               "allocation %u of %zu bytes added %" PRId64
               " bytes of metadata; zs_meta_growth() said at most %" PRIu64,
               i, size, (int64_t)(after - before), bound);
        grew += after > before;
        warned += bound > 0;
    }
    printf("%u allocations: %u grew the metadata, %u were told they might\n", N, grew, warned);
    CHECKF(grew >= 3, "only %u allocations grew a table", grew);
    CHECKF(warned < N / 20, "%u of %u allocations were told they might grow a table", warned,
           N);
    CHECK_EQU(zs_meta_growth(p, 0), 0);
    CHECK_EQU(zs_meta_growth(p, ZS_MAX_OBJECT_SIZE + 1), 0);
    while (live)
        zs_free(p, h[--live]);
    zs_destroy(p);
}

int main(void)
{
    pool = zs_create(NULL, NULL);
    CHECKF(pool, "zs_create: %m");
    RUN_TEST(test_fill_classes);
    RUN_TEST(test_mixed);
    RUN_TEST(test_meta_growth);
    zs_destroy(pool);
    return 0;
}
