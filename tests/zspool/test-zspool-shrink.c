/* SPDX-License-Identifier: MIT */
/*
 * zs_shrink() and ops->evict: -ENOTSUP without a callback; with one that
 * copies each object out into a side store and frees it, at least the pages
 * asked for come back (or everything), oldest zspages first; a callback
 * error stops the shrink with every object still readable, in the pool or
 * in the side store, bytes unchanged; a callback that frees nothing makes
 * the shrink give up with -EBUSY.
 */
#include "zstest.h"
#include "u64map.h"

struct obj {
    uint64_t h;
    size_t size;
};

/* What the evict callback does and what it has seen. */
struct ctx {
    struct zs_pool *pool;
    struct u64map known; /* handle -> size, every object the test made */
    struct u64map saved; /* handle -> index in data[] */
    unsigned char **data;
    size_t ndata, cap;
    uint64_t *order;     /* handles in the order they were evicted */
    size_t norder;
    unsigned calls;
    unsigned fail_at;    /* fail this call (1-based) with fail_err; 0: never */
    int fail_err;
    bool keep;           /* return 0 without freeing */
    bool use_map;        /* copy out through zs_map() instead of zs_read() */
    struct obj *victims; /* freed by the first call, as if by another thread */
    size_t nvictims;
};

static int evict(struct zs_pool *pool, uint64_t h, void *arg)
{
    struct ctx *c = arg;
    static unsigned char buf[ZS_MAX_ALLOC_SIZE];
    uint64_t size;

    CHECKF(pool == c->pool, "evict called with pool %p, want %p", (void *)pool,
           (void *)c->pool);
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at)
        return c->fail_err;
    if (c->keep)
        return 0;
    if (c->victims) {
        for (size_t i = 0; i < c->nvictims; i++)
            if (c->victims[i].h != h)
                zs_free(pool, c->victims[i].h);
        c->victims = NULL;
    }
    if (c->use_map) {
        size_t sz = 0;
        void *p = zs_map(pool, h, &sz);
        if (!p) {
            CHECKF(errno == ESTALE, "zs_map in evict: %m");
            return 0;
        }
        memcpy(buf, p, sz);
        zs_unmap(pool, h);
        size = sz;
    } else {
        int r = zs_read(pool, h, buf);
        if (r == -ESTALE)
            return 0;
        CHECKF(r > 0, "zs_read(%#" PRIx64 ") in evict = %d", h, r);
        size = (uint64_t)r;
    }
    uint64_t want;
    CHECKF(u64map_get(&c->known, h, &want), "evict got handle %#" PRIx64
           " that the test never allocated", h);
    CHECKF(size == want, "evict: object %#" PRIx64 " has size %" PRIu64 ", want %"
           PRIu64, h, size, want);
    CHECKF(!u64map_find(&c->saved, h), "evict got handle %#" PRIx64 " twice", h);
    if (c->ndata == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->data = realloc(c->data, c->cap * sizeof(*c->data));
        c->order = realloc(c->order, c->cap * sizeof(*c->order));
        CHECK(c->data && c->order);
    }
    c->data[c->ndata] = malloc(size);
    CHECK(c->data[c->ndata]);
    memcpy(c->data[c->ndata], buf, size);
    u64map_put(&c->saved, h, c->ndata++);
    c->order[c->norder++] = h;
    zs_free(pool, h);
    CHECKF(zs_size(pool, h) == -ESTALE, "object %#" PRIx64 " still live after zs_free "
           "in evict", h);
    return 0;
}

static const struct zs_ops ops = { .evict = evict };

static void ctx_init(struct ctx *c)
{
    memset(c, 0, sizeof(*c));
    c->pool = zs_create(&ops, c);
    CHECKF(c->pool, "zs_create: %m");
    u64map_init(&c->known, 1024);
    u64map_init(&c->saved, 1024);
}

static void ctx_fini(struct ctx *c)
{
    zs_destroy(c->pool);
    for (size_t i = 0; i < c->ndata; i++)
        free(c->data[i]);
    free(c->data);
    free(c->order);
    u64map_free(&c->known);
    u64map_free(&c->saved);
}

static struct obj *make(struct ctx *c, unsigned n, size_t lo, size_t hi,
                        struct test_rng *rng)
{
    static unsigned char buf[ZS_MAX_ALLOC_SIZE];
    struct obj *o = calloc(n, sizeof(*o));
    CHECK(o);
    for (unsigned i = 0; i < n; i++) {
        o[i].size = rng_range(rng, lo, hi);
        o[i].h = zs_malloc(c->pool, o[i].size);
        CHECKF(o[i].h, "zs_malloc(%zu): %m", o[i].size);
        test_pattern(buf, o[i].size, o[i].h, 0);
        CHECK_EQ(zs_write(c->pool, o[i].h, buf, o[i].size), 0);
        u64map_put(&c->known, o[i].h, o[i].size);
    }
    return o;
}

/* Each object is in exactly one place, pool or side store, bytes intact. */
static unsigned verify(struct ctx *c, const struct obj *o, unsigned n, const char *when)
{
    static unsigned char got[ZS_MAX_ALLOC_SIZE], want[ZS_MAX_ALLOC_SIZE];
    unsigned in_pool = 0;
    for (unsigned i = 0; i < n; i++) {
        uint64_t idx;
        test_pattern(want, o[i].size, o[i].h, 0);
        if (u64map_get(&c->saved, o[i].h, &idx)) {
            CHECKF(zs_size(c->pool, o[i].h) == -ESTALE, "%s: object %u was evicted "
                   "but is still live in the pool", when, i);
            CHECKF(memcmp(c->data[idx], want, o[i].size) == 0, "%s: object %u (size "
                   "%zu) reached the evict callback with the wrong bytes", when, i,
                   o[i].size);
        } else {
            int r = zs_read(c->pool, o[i].h, got);
            CHECKF(r == (int)o[i].size, "%s: object %u (size %zu) neither in the pool "
                   "(zs_read = %d) nor evicted: lost", when, i, o[i].size, r);
            CHECKF(memcmp(got, want, o[i].size) == 0, "%s: object %u (size %zu) has "
                   "the wrong bytes", when, i, o[i].size);
            in_pool++;
        }
    }
    return in_pool;
}

static void test_no_evict(void)
{
    struct zs_pool *pool = zs_create(NULL, NULL);
    CHECK(pool);
    CHECK_EQ(zs_shrink(pool, 1), -ENOTSUP);
    uint64_t h = zs_malloc(pool, 100);
    CHECK(h);
    CHECK_EQ(zs_shrink(pool, 1), -ENOTSUP);
    CHECK_EQ(zs_shrink(pool, UINT64_MAX), -ENOTSUP);
    CHECK_EQ(zs_size(pool, h), 100);
    zs_destroy(pool);

    struct zs_ops none = { .evict = NULL };
    pool = zs_create(&none, NULL);
    CHECK(pool);
    h = zs_malloc(pool, 100);
    CHECK(h);
    CHECK_EQ(zs_shrink(pool, 1), -ENOTSUP);
    CHECK_EQ(zs_size(pool, h), 100);
    CHECK_EQU(zt_stats(pool).pages_evicted, 0);
    zs_destroy(pool);
}

static void test_shrink_amounts(void)
{
    enum { N = 3000 };
    struct ctx c;
    struct test_rng rng;
    rng_seed(&rng, 21);
    ctx_init(&c);

    CHECK_EQ(zs_shrink(c.pool, 10), 0); /* empty pool */
    struct obj *o = make(&c, N, 1, ZS_MAX_ALLOC_SIZE, &rng);
    CHECK_EQ(zs_shrink(c.pool, 0), 0);
    CHECK_EQU(c.calls, 0);

    static const uint64_t asks[] = { 1, 5, 20, 100, 300 };
    for (size_t k = 0; k < sizeof(asks) / sizeof(asks[0]); k++) {
        struct zs_pool_stats b = zt_check_consistent(c.pool);
        size_t saved0 = c.ndata;
        int64_t r = zs_shrink(c.pool, asks[k]);
        struct zs_pool_stats a = zt_check_consistent(c.pool);
        size_t evicted = c.ndata - saved0;
        printf("zs_shrink(%" PRIu64 ") = %" PRId64 ": %zu objects evicted, pages %"
               PRIu64 " -> %" PRIu64 "\n", asks[k], r, evicted, b.pages, a.pages);
        CHECKF(r >= (int64_t)asks[k], "zs_shrink(%" PRIu64 ") = %" PRId64 " with %"
               PRIu64 " pages in the pool", asks[k], r, b.pages);
        CHECKF((uint64_t)r == b.pages - a.pages, "zs_shrink() = %" PRId64 " but pages "
               "went from %" PRIu64 " to %" PRIu64, r, b.pages, a.pages);
        /* It stops soon after the target: within the last zspage's pages. */
        CHECKF((uint64_t)r < asks[k] + ZS_MAX_PAGES_PER_ZSPAGE, "zs_shrink(%" PRIu64
               ") freed %" PRId64 " pages: more than asked for", asks[k], r);
        CHECK_EQU(a.pages_evicted, b.pages_evicted + (uint64_t)r);
        CHECK_EQU(a.objects_evicted, b.objects_evicted + evicted);
        CHECK_EQU(a.objects, b.objects - evicted);
        verify(&c, o, N, "after a shrink");
    }

    struct zs_pool_stats b = zt_stats(c.pool);
    int64_t r = zs_shrink(c.pool, UINT64_MAX);
    struct zs_pool_stats a = zt_check_consistent(c.pool);
    printf("zs_shrink(max) = %" PRId64 " with %" PRIu64 " pages in use\n", r, b.pages);
    CHECKF(r >= 0 && (uint64_t)r == b.pages, "zs_shrink(max) = %" PRId64 " with %"
           PRIu64 " pages in use", r, b.pages);
    CHECK_EQU(a.pages, 0);
    CHECK_EQU(a.objects, 0);
    CHECK_EQU(a.zspages, 0);
    CHECK_EQU(a.objects_evicted, N);
    CHECK_EQU(verify(&c, o, N, "after shrinking everything"), 0);
    CHECK_EQ(zs_shrink(c.pool, 1), 0);
    free(o);
    ctx_fini(&c);
}

/* Check that every object of a (the older batch) was evicted before any other. */
static void check_a_before_b(struct ctx *c, const struct obj *a, unsigned na,
                             const char *what)
{
    struct u64map in_a;
    u64map_init(&in_a, na);
    for (unsigned i = 0; i < na; i++)
        u64map_put(&in_a, a[i].h, 1);
    size_t a_seen = 0;
    for (size_t i = 0; i < c->norder; i++) {
        if (u64map_find(&in_a, c->order[i]))
            a_seen++;
        else
            CHECKF(a_seen == na, "%s: eviction %zu took a younger object while "
                   "only %zu of the %u older ones had gone", what, i, a_seen, na);
    }
    u64map_free(&in_a);
}

static void test_lru_same_class(void)
{
    struct ctx c;
    struct test_rng rng;
    rng_seed(&rng, 22);
    ctx_init(&c);
    const size_t size = 1000;
    struct zs_class_stats cl = zt_class(c.pool, zt_class_for(c.pool, size));
    unsigned na = 4 * cl.objs_per_zspage, nb = 4 * cl.objs_per_zspage;

    struct obj *a = make(&c, na, size, size, &rng);
    struct obj *b = make(&c, nb, size, size, &rng);
    int64_t r = zs_shrink(c.pool, 1);
    printf("class size %u, %u objects in %u pages per zspage: zs_shrink(1) = %"
           PRId64 ", %zu objects evicted\n", cl.size, cl.objs_per_zspage,
           cl.pages_per_zspage, r, c.norder);
    CHECKF(r >= 1 && r <= (int64_t)cl.pages_per_zspage, "zs_shrink(1) = %" PRId64, r);
    CHECKF(c.norder == cl.objs_per_zspage, "zs_shrink(1) evicted %zu objects; the "
           "oldest zspage holds %u", c.norder, cl.objs_per_zspage);
    check_a_before_b(&c, a, na, "zs_shrink(1)");
    /* The rest of A, then B. */
    r = zs_shrink(c.pool, UINT64_MAX);
    CHECKF(r > 0, "zs_shrink(max) = %" PRId64, r);
    CHECK_EQU(c.norder, na + nb);
    check_a_before_b(&c, a, na, "zs_shrink(max)");
    CHECK_EQ(verify(&c, a, na, "LRU"), 0);
    CHECK_EQ(verify(&c, b, nb, "LRU"), 0);
    free(a);
    free(b);
    ctx_fini(&c);
}

static void test_lru_across_classes(void)
{
    struct ctx c;
    struct test_rng rng;
    rng_seed(&rng, 23);
    ctx_init(&c);
    struct obj *a = make(&c, 300, 900, 1100, &rng);
    /*
     * zspool orders zspages of different classes by a clock of ~16.8 ms
     * ticks (exact within a class), so B must come a few ticks later.
     */
    struct timespec ts = { 0, 60 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    struct obj *b = make(&c, 300, 300, 600, &rng);
    int64_t r = zs_shrink(c.pool, UINT64_MAX);
    CHECKF(r > 0, "zs_shrink(max) = %" PRId64, r);
    CHECK_EQU(c.norder, 600);
    /* A and B share no class, so every A zspage is older than every B one. */
    check_a_before_b(&c, a, 300, "two batches in different classes");
    free(a);
    free(b);
    ctx_fini(&c);
}

static void test_callback_error(void)
{
    struct ctx c;
    struct test_rng rng;
    rng_seed(&rng, 24);
    ctx_init(&c);
    const size_t size = 1000;
    struct zs_class_stats cl = zt_class(c.pool, zt_class_for(c.pool, size));
    CHECK(cl.objs_per_zspage >= 3);
    unsigned n = 6 * cl.objs_per_zspage;
    struct obj *o = make(&c, n, size, size, &rng);

    /* Fails on its 3rd call, before any zspage is empty. */
    c.fail_at = 3;
    c.fail_err = -EIO;
    struct zs_pool_stats b = zt_stats(c.pool);
    int64_t r = zs_shrink(c.pool, 1);
    struct zs_pool_stats a = zt_check_consistent(c.pool);
    printf("evict fails on call 3: zs_shrink(1) = %" PRId64 ", %zu evicted\n", r,
           c.ndata);
    CHECKF(r == -EIO, "zs_shrink() = %" PRId64 " when the callback failed (-EIO) "
           "before any page was freed", r);
    CHECK_EQU(c.calls, 3);
    CHECK_EQU(c.ndata, 2);
    CHECK_EQU(a.objects, n - 2);
    CHECK_EQU(a.pages_evicted, b.pages_evicted);
    CHECK_EQU(a.objects_evicted, b.objects_evicted + 2);
    CHECK(a.pages <= b.pages);
    CHECK_EQ(verify(&c, o, n, "after a failed shrink"), n - 2);

    /* Fails in the second zspage: the first one's pages count. */
    c.calls = 0;
    c.fail_at = cl.objs_per_zspage + 2;
    b = zt_stats(c.pool);
    size_t saved0 = c.ndata;
    r = zs_shrink(c.pool, UINT64_MAX);
    a = zt_check_consistent(c.pool);
    printf("evict fails on call %u: zs_shrink(max) = %" PRId64 ", %zu evicted\n",
           c.fail_at, r, c.ndata - saved0);
    CHECKF(r > 0 && (uint64_t)r == b.pages - a.pages, "zs_shrink() = %" PRId64
           " when the callback failed after a zspage was freed; pages %" PRIu64
           " -> %" PRIu64, r, b.pages, a.pages);
    CHECK_EQU(c.calls, c.fail_at);
    CHECK_EQU(a.objects, b.objects - (c.ndata - saved0));
    verify(&c, o, n, "after a shrink that failed later");

    /* Returns 0 without freeing: the shrink cannot progress. */
    c.fail_at = 0;
    c.keep = true;
    b = zt_stats(c.pool);
    r = zs_shrink(c.pool, 1);
    a = zt_check_consistent(c.pool);
    CHECKF(r == -EBUSY, "zs_shrink() = %" PRId64 " when the callback frees nothing, "
           "want -EBUSY", r);
    CHECK_EQU(a.objects, b.objects);
    CHECK_EQU(a.pages, b.pages);
    verify(&c, o, n, "after a shrink that could not free");

    /* And a working callback takes everything. */
    c.keep = false;
    r = zs_shrink(c.pool, UINT64_MAX);
    a = zt_check_consistent(c.pool);
    CHECKF(r > 0 && a.objects == 0 && a.pages == 0, "zs_shrink(max) = %" PRId64
           ", %" PRIu64 " objects left", r, a.objects);
    CHECK_EQ(verify(&c, o, n, "after the final shrink"), 0);
    free(o);
    ctx_fini(&c);
}

static void test_callback_maps(void)
{
    struct ctx c;
    struct test_rng rng;
    rng_seed(&rng, 25);
    ctx_init(&c);
    c.use_map = true;
    struct obj *o = make(&c, 2000, 1, ZS_MAX_ALLOC_SIZE, &rng);
    int64_t r = zs_shrink(c.pool, 50);
    CHECKF(r >= 50, "zs_shrink(50) = %" PRId64, r);
    verify(&c, o, 2000, "after shrinking through zs_map");
    r = zs_shrink(c.pool, UINT64_MAX);
    CHECK(r > 0);
    CHECK_EQ(verify(&c, o, 2000, "after shrinking all through zs_map"), 0);
    CHECK_EQU(zt_check_consistent(c.pool).pages, 0);
    free(o);
    ctx_fini(&c);
}

/*
 * Objects freed by someone else while the shrink is under way: the callback
 * sees -ESTALE (or is not called for them) and the shrink carries on.
 */
static void test_freed_meanwhile(void)
{
    struct ctx c;
    struct test_rng rng;
    rng_seed(&rng, 26);
    ctx_init(&c);
    const size_t size = 500;
    struct zs_class_stats cl = zt_class(c.pool, zt_class_for(c.pool, size));
    unsigned na = 2 * cl.objs_per_zspage;
    struct obj *a = make(&c, na, size, size, &rng);
    /* Same class, so that A's zspages are surely the oldest. */
    struct obj *b = make(&c, 1000, size, size, &rng);
    c.victims = a;
    c.nvictims = na;
    struct zs_pool_stats before = zt_stats(c.pool);
    int64_t r = zs_shrink(c.pool, 1);
    struct zs_pool_stats after = zt_check_consistent(c.pool);
    printf("zs_shrink(1) with the rest of its zspage freed meanwhile = %" PRId64
           " (%u calls)\n", r, c.calls);
    CHECKF(r >= 1, "zs_shrink(1) = %" PRId64 " after the callback freed its "
           "zspage's other objects", r);
    CHECK_EQU(c.ndata, 1);
    CHECK_EQU(after.objects, before.objects - na);
    for (unsigned i = 0; i < na; i++)
        CHECK_EQ(zs_size(c.pool, a[i].h), -ESTALE);
    CHECK_EQ(verify(&c, b, 1000, "after freeing meanwhile"), 1000);
    free(a);
    free(b);
    ctx_fini(&c);
}

int main(void)
{
    RUN_TEST(test_no_evict);
    RUN_TEST(test_shrink_amounts);
    RUN_TEST(test_lru_same_class);
    RUN_TEST(test_lru_across_classes);
    RUN_TEST(test_callback_error);
    RUN_TEST(test_callback_maps);
    RUN_TEST(test_freed_meanwhile);
    return 0;
}
