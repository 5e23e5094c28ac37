/* SPDX-License-Identifier: MIT */
/*
 * Objects larger than a page (ZS_MAX_ALLOC_SIZE + 1..ZS_MAX_OBJECT_SIZE),
 * the store's compressed bundles: each case keeps its own record of what
 * it stored (a key and an exact size per handle, the bytes made again by
 * test_pattern()) and checks the pool against it.
 *   - every class boundary from 1 to 64 KiB and random sizes: zs_size() is
 *     exact, zs_read() copies that many bytes and no more, zs_map() gives
 *     them in place, zs_write() refuses more than the size;
 *   - many-page objects among small ones, written through zs_map();
 *   - compaction moves large objects, keeps their bytes, and gives memory
 *     back;
 *   - zs_shrink() hands large objects to the evict callback, exact size and
 *     bytes;
 *   - in reserve mode large objects come from the reserve without a page
 *     fault, and fail at once, without one, when it is empty.
 */
#include <sys/resource.h>

#include "u64map.h"
#include "zstest.h"

/* An object the test made: its handle, its exact size, the key of its bytes. */
struct obj {
    uint64_t h;
    size_t size;
    uint64_t key;
};

static unsigned char want[ZS_MAX_OBJECT_SIZE], got[ZS_MAX_OBJECT_SIZE + 64];

static uint64_t make(struct zs_pool *pool, struct obj *o, size_t size, uint64_t key)
{
    o->h = zs_malloc(pool, size);
    CHECKF(o->h, "zs_malloc(%zu): %m", size);
    o->size = size;
    o->key = key;
    test_pattern(want, size, key, 1);
    CHECK_EQ(zs_write(pool, o->h, want, size), 0);
    return o->h;
}

/* The object holds its bytes: through zs_read() (exactly size, no more) and zs_map(). */
static void check_obj(struct zs_pool *pool, const struct obj *o)
{
    test_pattern(want, o->size, o->key, 1);
    CHECK_EQ(zs_size(pool, o->h), o->size);
    memset(got, 0xa5, o->size + 64);
    CHECK_EQ(zs_read(pool, o->h, got), o->size);
    CHECKF(memcmp(got, want, o->size) == 0, "object of %zu bytes (key %" PRIu64 ") changed",
           o->size, o->key);
    for (size_t i = o->size; i < o->size + 64; i++)
        CHECKF(got[i] == 0xa5, "zs_read() of %zu bytes wrote byte %zu", o->size, i);
    size_t sz = 0;
    const unsigned char *p = zs_map(pool, o->h, &sz);
    CHECKF(p, "zs_map: %m");
    CHECK_EQU(sz, o->size);
    CHECKF(memcmp(p, want, o->size) == 0, "mapped object of %zu bytes differs", o->size);
    if (o->size > ZS_MAX_ALLOC_SIZE)
        CHECKF((uintptr_t)p % 64 == 0, "a large object at %p is not 64-byte aligned",
               (const void *)p);
    zs_unmap(pool, o->h);
}

/* Every class boundary, its neighbours, and random sizes up to 64 KiB. */
static void test_every_size(void)
{
    struct zs_pool *pool = zs_create(NULL, NULL);
    enum { CAP = 3 * 1024 + 1000 };
    static struct obj o[CAP];
    struct test_rng rng;
    size_t n = 0;
    uint64_t bytes = 0;

    rng_seed(&rng, 11);
    CHECK(pool);
    for (unsigned i = 0; i < zs_class_count(); i++) {
        size_t size = zt_class(pool, i).size;
        CHECK(n + 3 <= CAP);
        make(pool, &o[n], size - 1 ? size - 1 : 1, n), n++;
        make(pool, &o[n], size, n), n++;
        if (size < ZS_MAX_OBJECT_SIZE)
            make(pool, &o[n], size + 1, n), n++;
    }
    while (n < CAP) {
        make(pool, &o[n], rng_range(&rng, 1, ZS_MAX_OBJECT_SIZE), n);
        n++;
    }
    for (size_t i = 0; i < n; i++) {
        check_obj(pool, &o[i]);
        bytes += o[i].size;
        /* Writing past the size is refused; a shorter write keeps the rest. */
        CHECK_EQ(zs_write(pool, o[i].h, want, o[i].size + 1), -EINVAL);
    }
    struct zs_pool_stats s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, n);
    CHECK_EQU(s.bytes_stored, bytes);
    CHECKF(s.pages * ZT_PAGE >= bytes, "%" PRIu64 " bytes in %" PRIu64 " pages", bytes,
           s.pages);
    for (size_t i = 0; i < n; i++)
        zs_free(pool, o[i].h);
    s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, 0);
    CHECK_EQU(s.pages, 0);
    CHECK_EQU(s.bad_handles, 0);

    errno = 0;
    CHECK_EQU(zs_malloc(pool, ZS_MAX_OBJECT_SIZE + 1), 0);
    CHECK_EQ(errno, EINVAL);
    zs_destroy(pool);
}

/*
 * Objects of many pages among small ones, written in place through
 * zs_map(); freeing the small ones leaves the large ones whole.
 */
static void test_mixed(void)
{
    struct zs_pool *pool = zs_create(NULL, NULL);
    enum { N = 2000 };
    static struct obj o[N];
    struct test_rng rng;

    rng_seed(&rng, 12);
    for (size_t i = 0; i < N; i++) {
        bool large = i % 3 == 0;
        size_t size = large ? rng_range(&rng, 16 * ZT_PAGE - 4096, ZS_MAX_OBJECT_SIZE)
                            : rng_range(&rng, 1, ZS_MAX_ALLOC_SIZE);
        o[i] = (struct obj){ .h = zs_malloc(pool, size), .size = size, .key = i };
        CHECKF(o[i].h, "zs_malloc(%zu): %m", size);
        size_t sz;
        unsigned char *p = zs_map(pool, o[i].h, &sz);
        CHECK(p && sz == size);
        test_pattern(p, size, i, 1);
        zs_unmap(pool, o[i].h);
    }
    for (size_t i = 0; i < N; i++)
        check_obj(pool, &o[i]);
    for (size_t i = 0; i < N; i++)
        if (o[i].size <= ZS_MAX_ALLOC_SIZE)
            zs_free(pool, o[i].h);
    for (size_t i = 0; i < N; i++)
        if (o[i].size > ZS_MAX_ALLOC_SIZE)
            check_obj(pool, &o[i]);
    zt_check_consistent(pool);
    zs_destroy(pool);
}

/*
 * Fill classes of large objects, free a random half, compact: some large
 * objects move (their address changes), every survivor keeps its bytes,
 * and the pool holds less.
 */
static void test_compact(void)
{
    struct zs_pool *pool = zs_create(NULL, NULL);
    enum { N = 1200 };
    static struct obj o[N];
    static const unsigned char *addr[N];
    struct test_rng rng;

    rng_seed(&rng, 13);
    for (size_t i = 0; i < N; i++)
        make(pool, &o[i], rng_range(&rng, 5000, 24000), i);
    for (size_t i = 0; i < N; i++) {
        if (rng_one_in(&rng, 2)) {
            zs_free(pool, o[i].h);
            o[i].h = 0;
            continue;
        }
        addr[i] = zs_map(pool, o[i].h, NULL);
        zs_unmap(pool, o[i].h);
    }
    struct zs_pool_stats before = zt_check_consistent(pool);
    int64_t freed = zs_compact(pool);
    struct zs_pool_stats after = zt_check_consistent(pool);
    size_t moved = 0;
    for (size_t i = 0; i < N; i++) {
        if (!o[i].h)
            continue;
        check_obj(pool, &o[i]);
        const unsigned char *p = zs_map(pool, o[i].h, NULL);
        moved += p != addr[i];
        zs_unmap(pool, o[i].h);
    }
    printf("  compaction freed %" PRId64 " pages, moved %zu objects; mem_used %" PRIu64
           " -> %" PRIu64 "\n",
           freed, moved, before.mem_used, after.mem_used);
    CHECK(moved > 0);
    CHECK(freed > 0);
    CHECKF(after.mem_used < before.mem_used && after.pages == before.pages - (uint64_t)freed,
           "pages %" PRIu64 " -> %" PRIu64 " after %" PRId64 " freed", before.pages,
           after.pages, freed);
    CHECK_EQU(after.objects, before.objects);
    zs_destroy(pool);
}

/* The evict callback: each object's exact size and bytes, then freed. */
struct evict_ctx {
    struct u64map known; /* handle -> index in o[] */
    struct obj *o;
    size_t evicted, large;
};

static int evict(struct zs_pool *pool, uint64_t h, void *arg)
{
    struct evict_ctx *c = arg;
    uint64_t i;

    CHECKF(u64map_get(&c->known, h, &i), "evict got handle %#" PRIx64 " never made", h);
    check_obj(pool, &c->o[i]);
    zs_free(pool, h);
    c->o[i].h = 0;
    c->evicted++;
    c->large += c->o[i].size > ZS_MAX_ALLOC_SIZE;
    return 0;
}

static void test_shrink(void)
{
    enum { N = 600 };
    static struct obj o[N];
    struct evict_ctx c = { .o = o };
    const struct zs_ops ops = { .evict = evict };
    struct zs_pool *pool = zs_create(&ops, &c);
    struct test_rng rng;

    rng_seed(&rng, 14);
    u64map_init(&c.known, N);
    for (size_t i = 0; i < N; i++) {
        size_t size = i % 4 ? rng_range(&rng, ZS_MAX_ALLOC_SIZE + 1, ZS_MAX_OBJECT_SIZE)
                            : rng_range(&rng, 1, ZS_MAX_ALLOC_SIZE);
        u64map_put(&c.known, make(pool, &o[i], size, i), i);
    }
    struct zs_pool_stats before = zt_check_consistent(pool);
    int64_t r = zs_shrink(pool, 256);
    struct zs_pool_stats after = zt_check_consistent(pool);
    printf("  zs_shrink(256) = %" PRId64 ": %zu objects evicted, %zu of them large\n", r,
           c.evicted, c.large);
    CHECKF(r >= 256, "zs_shrink(256) = %" PRId64, r);
    CHECK(c.large > 0);
    CHECK_EQU(after.pages, before.pages - (uint64_t)r);
    CHECK_EQU(after.objects_evicted, c.evicted);
    CHECK_EQU(after.objects, N - c.evicted);
    for (size_t i = 0; i < N; i++)
        if (o[i].h)
            check_obj(pool, &o[i]);
    /* Everything goes: all of it through the callback. */
    zs_shrink(pool, UINT64_MAX);
    after = zt_check_consistent(pool);
    CHECK_EQU(after.objects, 0);
    CHECK_EQU(c.evicted, N);
    u64map_free(&c.known);
    zs_destroy(pool);
}

static long thread_faults(void)
{
    struct rusage ru;
    CHECK(getrusage(RUSAGE_THREAD, &ru) == 0);
    return ru.ru_minflt + ru.ru_majflt;
}

/*
 * Reserve mode: large objects come from a refilled reserve with no page
 * fault, until it runs out; then the allocation fails at once, still with
 * no fault, counted as a miss; a refill brings it back.
 */
static void test_reserve(void)
{
    enum { N = 256, TARGET = 2u << 20 };
    static struct obj o[N];
    struct zs_pool *pool = zs_create(NULL, NULL);
    struct zs_reserve_stats rs;
    struct test_rng rng;
    size_t n = 0;

    CHECK(pool);
    CHECK_EQ(zs_reserve_set(pool, TARGET), 0);
    CHECK_EQ(zs_reserve_refill(pool), 0);
    rng_seed(&rng, 15);
    /* Touch the buffers first: only the pool's own faults count. */
    memset(want, 1, sizeof(want));
    memset(got, 1, sizeof(got));
    long faults = thread_faults();
    for (; n < N; n++) {
        size_t size = rng_range(&rng, ZS_MAX_ALLOC_SIZE + 1, ZS_MAX_OBJECT_SIZE);
        o[n] = (struct obj){ .h = zs_malloc(pool, size), .size = size, .key = n };
        if (!o[n].h) {
            CHECK_EQ(errno, ENOMEM);
            break;
        }
        test_pattern(want, size, n, 1);
        CHECK_EQ(zs_write(pool, o[n].h, want, size), 0);
    }
    long used = thread_faults() - faults;
    zs_reserve_get_stats(pool, &rs);
    printf("  %zu large objects from a %u-byte reserve, %ld faults; misses %" PRIu64 "\n", n,
           TARGET, used, rs.misses);
    CHECKF(n > 0 && n < N, "%zu large objects from a 2 MiB reserve", n);
    CHECK_EQ(used, 0);
    CHECK_EQU(rs.misses, 1);

    /* Too empty for that size: fails again at once, faulting nothing. */
    faults = thread_faults();
    for (int i = 0; i < 3; i++) {
        errno = 0;
        CHECK_EQU(zs_malloc(pool, o[n].size), 0);
        CHECK_EQ(errno, ENOMEM);
    }
    CHECK_EQ(thread_faults() - faults, 0);
    zs_reserve_get_stats(pool, &rs);
    CHECK_EQU(rs.misses, 4);

    CHECK_EQ(zs_reserve_refill(pool), 0);
    struct obj more;
    make(pool, &more, o[n].size, N);
    check_obj(pool, &more);
    for (size_t i = 0; i < n; i++)
        check_obj(pool, &o[i]);
    zt_check_consistent(pool);
    zs_destroy(pool);
}

int main(void)
{
    RUN_TEST(test_every_size);
    RUN_TEST(test_mixed);
    RUN_TEST(test_compact);
    RUN_TEST(test_shrink);
    RUN_TEST(test_reserve);
    return 0;
}
