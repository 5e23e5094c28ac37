/* SPDX-License-Identifier: MIT */
/*
 * zs_compact(): after most objects of a class are freed at random, it gives
 * pages back (counted in its return value, pages_compacted and the class's
 * pages_compacted), leaves the class about as dense as it can be, and every
 * survivor keeps its handle, size and bytes.  Mapped objects are not moved.
 */
#include "zstest.h"

static struct zs_pool *pool;

struct obj {
    uint64_t h;
    size_t size;
    unsigned version;
    bool live;
};

static void verify(const struct obj *o, const char *when)
{
    static unsigned char got[ZS_MAX_ALLOC_SIZE], want[ZS_MAX_ALLOC_SIZE];
    test_pattern(want, o->size, o->h, o->version);
    int r = zs_read(pool, o->h, got);
    CHECKF(r == (int)o->size, "%s: zs_read(handle %#" PRIx64 ", size %zu) = %d",
           when, o->h, o->size, r);
    CHECKF(memcmp(got, want, o->size) == 0, "%s: object %#" PRIx64 " (size %zu) "
           "has the wrong bytes", when, o->h, o->size);
}

static struct obj *alloc_objs(unsigned n, size_t size_lo, size_t size_hi,
                              struct test_rng *rng)
{
    static unsigned char buf[ZS_MAX_ALLOC_SIZE];
    struct obj *o = calloc(n, sizeof(*o));
    CHECK(o);
    for (unsigned i = 0; i < n; i++) {
        o[i].size = rng_range(rng, size_lo, size_hi);
        o[i].h = zs_malloc(pool, o[i].size);
        CHECKF(o[i].h, "zs_malloc(%zu): %m", o[i].size);
        o[i].version = 1;
        o[i].live = true;
        test_pattern(buf, o[i].size, o[i].h, 1);
        CHECK_EQ(zs_write(pool, o[i].h, buf, o[i].size), 0);
    }
    return o;
}

/* Free all but one in keep_one_in, chosen at random. */
static unsigned thin(struct obj *o, unsigned n, unsigned keep_one_in,
                     struct test_rng *rng)
{
    unsigned kept = 0;
    for (unsigned i = 0; i < n; i++) {
        if (rng_one_in(rng, keep_one_in)) {
            kept++;
            continue;
        }
        zs_free(pool, o[i].h);
        o[i].live = false;
    }
    return kept;
}

static void test_one_class(void)
{
    enum { N = 8000 };
    const size_t size = 1000;
    struct test_rng rng;
    rng_seed(&rng, 11);
    unsigned idx = zt_class_for(pool, size);
    struct zs_class_stats c = zt_class(pool, idx);

    CHECK_EQ(zs_compact(pool), 0); /* empty pool: nothing to do */
    struct obj *o = alloc_objs(N, size, size, &rng);
    CHECK_EQ(zs_compact(pool), 0); /* all zspages full: nothing to do */
    unsigned kept = thin(o, N, 10, &rng);
    struct zs_pool_stats before = zt_check_consistent(pool);
    struct zs_class_stats cb = zt_class(pool, idx);

    int64_t r = zs_compact(pool);
    struct zs_pool_stats after = zt_check_consistent(pool);
    struct zs_class_stats ca = zt_class(pool, idx);
    printf("class size %u (%u objects, %u pages per zspage): %u of %u objects kept; "
           "pages %" PRIu64 " -> %" PRIu64 ", zspages %" PRIu64 " -> %" PRIu64
           ", zs_compact() = %" PRId64 "\n", c.size, c.objs_per_zspage,
           c.pages_per_zspage, kept, N, before.pages, after.pages, cb.zspages,
           ca.zspages, r);

    CHECKF(r > 0, "zs_compact() = %" PRId64 " with 90%% of the class free", r);
    CHECKF((uint64_t)r == before.pages - after.pages, "zs_compact() = %" PRId64
           " but pages went from %" PRIu64 " to %" PRIu64, r, before.pages, after.pages);
    CHECK_EQU(after.pages_compacted, before.pages_compacted + (uint64_t)r);
    CHECK_EQU(ca.pages_compacted, cb.pages_compacted + (uint64_t)r);
    CHECK_EQU(after.objects, kept);
    /* As dense as it gets, give or take one zspage left partly used. */
    uint64_t ideal = (kept + c.objs_per_zspage - 1) / c.objs_per_zspage;
    CHECKF(ca.zspages <= ideal + 1, "after compaction %u objects (%u per zspage) "
           "still take %" PRIu64 " zspages, ideal %" PRIu64, kept,
           c.objs_per_zspage, ca.zspages, ideal);
    for (unsigned i = 0; i < N; i++) {
        if (o[i].live) {
            verify(&o[i], "after compaction");
            CHECK_EQ(zs_size(pool, o[i].h), size);
        } else {
            CHECK_EQ(zs_size(pool, o[i].h), -ESTALE);
        }
    }
    CHECK_EQ(zs_compact(pool), 0); /* already compact */

    /* Moved objects still work in every way: map, write, free. */
    static unsigned char buf[ZS_MAX_ALLOC_SIZE];
    for (unsigned i = 0; i < N; i++) {
        if (!o[i].live)
            continue;
        unsigned char *p = zs_map(pool, o[i].h, NULL);
        CHECK(p);
        test_pattern(buf, size, o[i].h, 1);
        CHECKF(memcmp(p, buf, size) == 0, "moved object %u maps to the wrong bytes", i);
        zs_unmap(pool, o[i].h);
        o[i].version = 2;
        test_pattern(buf, size, o[i].h, 2);
        CHECK_EQ(zs_write(pool, o[i].h, buf, size), 0);
    }
    for (unsigned i = 0; i < N; i++)
        if (o[i].live) {
            verify(&o[i], "after rewriting the moved objects");
            zs_free(pool, o[i].h);
        }
    struct zs_pool_stats s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, 0);
    CHECK_EQU(s.pages, 0);
    CHECK_EQU(s.bad_handles, 0);
    free(o);
}

static void test_all_classes(void)
{
    enum { N = 40000 };
    struct test_rng rng;
    rng_seed(&rng, 12);
    struct obj *o = alloc_objs(N, 1, ZS_MAX_ALLOC_SIZE, &rng);
    unsigned kept = thin(o, N, 5, &rng);
    struct zs_pool_stats before = zt_check_consistent(pool);
    int64_t r = zs_compact(pool);
    struct zs_pool_stats after = zt_check_consistent(pool);
    printf("random sizes: %u of %u objects kept; pages %" PRIu64 " -> %" PRIu64
           " (%" PRIu64 " bytes stored), zs_compact() = %" PRId64 "\n", kept, N,
           before.pages, after.pages, after.bytes_stored, r);
    CHECKF(r > 0 && (uint64_t)r == before.pages - after.pages, "zs_compact() = %"
           PRId64 ", pages %" PRIu64 " -> %" PRIu64, r, before.pages, after.pages);
    CHECK_EQU(after.pages_compacted, before.pages_compacted + (uint64_t)r);
    /* Each class may keep one partly used zspage (up to 16 pages). */
    unsigned classes = 0, n = zs_class_count();
    uint64_t slack = 0;
    for (unsigned i = 0; i < n; i++) {
        struct zs_class_stats c = zt_class(pool, i);
        if (c.zspages) {
            classes++;
            slack += c.pages_per_zspage;
            uint64_t ideal = (c.objects + c.objs_per_zspage - 1) / c.objs_per_zspage;
            CHECKF(c.zspages <= ideal + 1, "class %u (size %u): %" PRIu64 " objects "
                   "in %" PRIu64 " zspages after compaction, ideal %" PRIu64,
                   i, c.size, c.objects, c.zspages, ideal);
        }
    }
    uint64_t need = (after.bytes_stored + ZT_PAGE - 1) / ZT_PAGE;
    CHECKF(after.pages <= need + need / 5 + slack, "%" PRIu64 " pages hold %" PRIu64
           " bytes after compaction (%u classes in use)", after.pages,
           after.bytes_stored, classes);
    for (unsigned i = 0; i < N; i++)
        if (o[i].live)
            verify(&o[i], "after compacting all classes");
    for (unsigned i = 0; i < N; i++)
        if (o[i].live)
            zs_free(pool, o[i].h);
    struct zs_pool_stats s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, 0);
    CHECK_EQU(s.pages, 0);
    free(o);
}

/* Mapped objects are pinned: compaction leaves them (and their maps) be. */
static void test_pinned(void)
{
    enum { N = 4000 };
    const size_t size = 600;
    struct test_rng rng;
    rng_seed(&rng, 13);
    struct obj *o = alloc_objs(N, size, size, &rng);
    unsigned kept = thin(o, N, 8, &rng);
    unsigned char **p = calloc(N, sizeof(*p));
    CHECK(p);
    for (unsigned i = 0; i < N; i++)
        if (o[i].live) {
            p[i] = zs_map(pool, o[i].h, NULL);
            CHECK(p[i]);
        }
    struct zs_pool_stats before = zt_check_consistent(pool);
    int64_t r = zs_compact(pool);
    struct zs_pool_stats after = zt_check_consistent(pool);
    printf("%u objects all mapped: zs_compact() = %" PRId64 ", zspages %" PRIu64
           " -> %" PRIu64 "\n", kept, r, before.zspages, after.zspages);
    /*
     * Nothing can move, so no zspage can empty; the pool may still give back
     * pages inside zspages where no object lies (zspool does), but not one
     * under a mapped object: the bytes are checked through the maps below.
     */
    CHECKF(after.zspages == before.zspages, "zs_compact() emptied zspages (%" PRIu64
           " -> %" PRIu64 ") while every object was mapped", before.zspages,
           after.zspages);
    CHECKF(r >= 0 && (uint64_t)r == before.pages - after.pages, "zs_compact() = %"
           PRId64 ", pages %" PRIu64 " -> %" PRIu64, r, before.pages, after.pages);

    static unsigned char want[ZS_MAX_ALLOC_SIZE];
    for (unsigned i = 0; i < N; i++)
        if (o[i].live) {
            test_pattern(want, size, o[i].h, 1);
            CHECKF(memcmp(p[i], want, size) == 0, "mapped object %u changed under "
                   "its map during compaction", i);
            void *again = zs_map(pool, o[i].h, NULL);
            CHECKF(again == p[i], "mapped object %u moved during compaction", i);
            zs_unmap(pool, o[i].h);
        }
    /* Unpin half: those may move now, the others must stay. */
    for (unsigned i = 0; i < N; i++)
        if (o[i].live && (i & 1)) {
            zs_unmap(pool, o[i].h);
            p[i] = NULL;
        }
    before = zt_stats(pool);
    r = zs_compact(pool);
    after = zt_check_consistent(pool);
    printf("half unmapped: zs_compact() = %" PRId64 "\n", r);
    CHECK((uint64_t)r == before.pages - after.pages);
    for (unsigned i = 0; i < N; i++)
        if (p[i]) {
            void *again = zs_map(pool, o[i].h, NULL);
            CHECKF(again == p[i], "mapped object %u moved during compaction", i);
            zs_unmap(pool, o[i].h);
            zs_unmap(pool, o[i].h);
        }
    r = zs_compact(pool);
    after = zt_check_consistent(pool);
    printf("all unmapped: zs_compact() = %" PRId64 "\n", r);
    CHECKF(r > 0, "zs_compact() = %" PRId64 " once 7/8 of the class is free and "
           "nothing is mapped", r);
    for (unsigned i = 0; i < N; i++)
        if (o[i].live) {
            verify(&o[i], "after compaction with pinned objects");
            zs_free(pool, o[i].h);
        }
    struct zs_pool_stats s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, 0);
    CHECK_EQU(s.pages, 0);
    free(p);
    free(o);
}

int main(void)
{
    pool = zs_create(NULL, NULL);
    CHECKF(pool, "zs_create: %m");
    RUN_TEST(test_one_class);
    RUN_TEST(test_all_classes);
    RUN_TEST(test_pinned);
    zs_destroy(pool);
    return 0;
}
