/* SPDX-License-Identifier: MIT */
/*
 * The class table (zs_class_count, zs_get_class_stats) and the huge class
 * (zs_huge_class_size): sizes increase and cover 1..ZS_MAX_OBJECT_SIZE,
 * zspage geometry fits, merges point at a class that serves itself, the
 * classes above a page waste little (their table is printed), and each size
 * is served by the class the table says (allocate one and see whose count
 * rose).
 */
#include "zstest.h"

static struct zs_pool *pool;

static void test_table(void)
{
    unsigned n = zs_class_count();
    printf("%u classes\n", n);
    CHECKF(n >= 2 && n <= ZS_MAX_OBJECT_SIZE, "zs_class_count() = %u", n);
    CHECK_EQU(zs_class_count(), n);

    unsigned prev = 0, unmerged = 0;
    for (unsigned i = 0; i < n; i++) {
        struct zs_class_stats c = zt_class(pool, i);
        CHECKF(c.size > prev, "class %u has size %u after class size %u: sizes "
               "must increase", i, c.size, prev);
        CHECKF(c.size <= ZS_MAX_OBJECT_SIZE, "class %u has size %u", i, c.size);
        unsigned longest = c.size <= ZS_MAX_ALLOC_SIZE ? ZS_MAX_PAGES_PER_ZSPAGE
                                                       : ZS_MAX_PAGES_PER_LARGE_ZSPAGE;
        CHECKF(c.pages_per_zspage >= 1 && c.pages_per_zspage <= longest,
               "class %u (size %u): %u pages per zspage", i, c.size, c.pages_per_zspage);
        CHECKF(c.objs_per_zspage >= 1, "class %u (size %u): %u objects per zspage",
               i, c.size, c.objs_per_zspage);
        CHECKF((uint64_t)c.objs_per_zspage * c.size <= (uint64_t)c.pages_per_zspage * ZT_PAGE,
               "class %u: %u objects of %u bytes do not fit in %u pages", i,
               c.objs_per_zspage, c.size, c.pages_per_zspage);
        /* Packing must be tight: not a whole slot left over at the end. */
        CHECKF((uint64_t)(c.objs_per_zspage + 1) * c.size > (uint64_t)c.pages_per_zspage * ZT_PAGE,
               "class %u (size %u): %u objects per %u-page zspage leaves room for "
               "another", i, c.size, c.objs_per_zspage, c.pages_per_zspage);
        CHECKF(c.merged_into < n, "class %u merged into %u of %u", i, c.merged_into, n);
        if (c.merged_into == i) {
            unmerged++;
        } else {
            struct zs_class_stats t = zt_class(pool, c.merged_into);
            CHECKF(t.merged_into == c.merged_into, "class %u is merged into %u, "
                   "which is itself merged into %u", i, c.merged_into, t.merged_into);
            CHECKF(t.size >= c.size, "class %u (size %u) is merged into the smaller "
                   "class %u (size %u)", i, c.size, c.merged_into, t.size);
        }
        CHECK_EQU(c.zspages, 0);
        CHECK_EQU(c.objects, 0);
        CHECK_EQU(c.pages, 0);
        prev = c.size;
    }
    CHECKF(prev == ZS_MAX_OBJECT_SIZE, "largest class is %u bytes, want %u", prev,
           ZS_MAX_OBJECT_SIZE);
    printf("%u classes serve themselves\n", unmerged);

    /* Every size 1..4096 has a class, and that class is big enough. */
    for (size_t s = 1; s <= ZS_MAX_ALLOC_SIZE; s++) {
        unsigned idx = zt_class_for(pool, s);
        struct zs_class_stats c = zt_class(pool, idx);
        CHECKF(c.size >= s, "size %zu is served by class %u of size %u", s, idx, c.size);
        CHECKF(c.merged_into == idx, "size %zu is served by merged class %u", s, idx);
    }
}

/*
 * The classes above a page, as doc/zspool.md "Large objects" reports them:
 * for each, the worst share of its zspage's bytes that an object of the
 * smallest size it serves leaves unused (rounding and the zspage's tail).
 * Steps of 1/64 of the size and zspages of up to 32 pages keep it under 5%.
 */
static void test_large_waste(void)
{
    unsigned n = zs_class_count(), count = 0;
    uint32_t prev = ZS_MAX_ALLOC_SIZE;
    double worst = 0, sum = 0;

    printf("  class  sizes          pages objs  worst waste\n");
    for (unsigned i = 0; i < n; i++) {
        struct zs_class_stats c = zt_class(pool, i);
        if (c.size <= ZS_MAX_ALLOC_SIZE)
            continue;
        CHECKF(c.size - prev <= c.size / 64, "class %u (size %u) steps %u bytes from %u", i,
               c.size, c.size - prev, prev);
        struct zs_class_stats t = zt_class(pool, c.merged_into);
        double bytes = (double)t.pages_per_zspage * ZT_PAGE;
        double waste = 1 - (double)t.objs_per_zspage * (prev + 1) / bytes;
        printf("  %5u  %5u..%5u  %5u %4u  %5.2f%%%s\n", i, prev + 1, c.size,
               t.pages_per_zspage, t.objs_per_zspage, 100 * waste,
               c.merged_into == i ? "" : " (merged)");
        if (waste > worst)
            worst = waste;
        sum += waste;
        count++;
        prev = c.size;
    }
    CHECK(count > 0);
    printf("%u classes above a page: waste at worst %.2f%%, mean %.2f%%\n", count,
           100 * worst, 100 * sum / count);
    CHECKF(worst < 0.05, "a large class wastes %.2f%%", 100 * worst);
}

static void test_out_of_range(void)
{
    unsigned n = zs_class_count();
    static const unsigned bad[] = { 0, 1, 1000, 0x7fffffff, 0xffffffff };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned idx = i == 0 ? n : i == 1 ? n + 1 : bad[i];
        struct zs_class_stats c, orig;
        memset(&c, 0x77, sizeof(c));
        orig = c;
        int r = zs_get_class_stats(pool, idx, &c);
        CHECKF(r == -EINVAL, "zs_get_class_stats(idx %u of %u) = %d, want -EINVAL",
               idx, n, r);
        CHECKF(memcmp(&c, &orig, sizeof(c)) == 0, "zs_get_class_stats(idx %u) "
               "failed but wrote *ret", idx);
    }
}

/*
 * The sizes test_served_by() allocates: every size up to a page, and above it
 * each class's size, one more, and one less.
 */
static size_t served_sizes(size_t *ret, size_t cap)
{
    size_t k = 0;
    for (size_t s = 1; s <= ZS_MAX_ALLOC_SIZE; s++)
        ret[k++] = s;
    for (unsigned i = 0; i < zs_class_count(); i++) {
        size_t size = zt_class(pool, i).size;
        if (size <= ZS_MAX_ALLOC_SIZE)
            continue;
        CHECK(k + 3 <= cap);
        ret[k++] = size - 1;
        ret[k++] = size;
        if (size < ZS_MAX_OBJECT_SIZE)
            ret[k++] = size + 1;
    }
    return k;
}

/* Allocate each size once; only the class the table names may gain it. */
static void test_served_by(void)
{
    enum { CAP = ZS_MAX_ALLOC_SIZE + 3 * 1024 };
    static size_t sizes[CAP];
    static uint64_t h[CAP];
    size_t count = served_sizes(sizes, CAP);
    for (size_t k = 0; k < count; k++) {
        size_t s = sizes[k];
        unsigned idx = zt_class_for(pool, s);
        struct zs_class_stats before = zt_class(pool, idx);
        uint64_t total = zt_stats(pool).objects;
        h[k] = zs_malloc(pool, s);
        CHECKF(h[k], "zs_malloc(%zu): %m", s);
        struct zs_class_stats after = zt_class(pool, idx);
        CHECKF(after.objects == before.objects + 1 &&
               after.bytes_stored == before.bytes_stored + s,
               "an object of %zu bytes did not land in class %u (size %u) that "
               "the table says serves it", s, idx, after.size);
        CHECK_EQU(zt_stats(pool).objects, total + 1);
    }
    zt_check_consistent(pool);
    for (size_t k = 0; k < count; k++) {
        CHECK_EQ(zs_size(pool, h[k]), sizes[k]);
        zs_free(pool, h[k]);
    }
    struct zs_pool_stats st = zt_check_consistent(pool);
    CHECK_EQU(st.objects, 0);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* zs_class_size() names the class where an object lands; zs_handle_index() is dense. */
static void test_class_size_and_index(void)
{
    CHECK_EQU(zs_class_size(0), 0);
    CHECK_EQU(zs_class_size(ZS_MAX_OBJECT_SIZE + 1), 0);
    /* Walk the table beside the sizes: the first class at least s, resolved. */
    unsigned ci = 0;
    struct zs_class_stats c = zt_class(pool, ci);
    for (size_t s = 1; s <= ZS_MAX_OBJECT_SIZE; s++) {
        while (c.size < s)
            c = zt_class(pool, ++ci);
        struct zs_class_stats t = zt_class(pool, c.merged_into);
        CHECKF(zs_class_size(s) == t.size,
               "zs_class_size(%zu) = %zu, objects land in class size %u", s, zs_class_size(s),
               t.size);
        CHECK(zs_class_size(s) >= s);
    }
    CHECK_EQU(zs_class_size(ZS_MAX_ALLOC_SIZE), ZS_MAX_ALLOC_SIZE);
    CHECK_EQU(zs_class_size(ZS_MAX_OBJECT_SIZE), ZS_MAX_OBJECT_SIZE);

    /*
     * 1000 live handles get 1000 distinct indexes, within the handles the
     * pool ever had live at once (earlier tests took a few thousand); a
     * freed one is reused.
     */
    enum { N = 1000 };
    static uint64_t h[N];
    static uint32_t idx[N];
    for (unsigned i = 0; i < N; i++) {
        h[i] = zs_malloc(pool, 100);
        CHECK(h[i]);
        idx[i] = zs_handle_index(h[i]);
        CHECKF(idx[i] < (1u << 16), "handle %u: index %u", i, idx[i]);
    }
    qsort(idx, N, sizeof(idx[0]), cmp_u32);
    for (unsigned i = 1; i < N; i++)
        CHECKF(idx[i] != idx[i - 1], "index %u given twice", idx[i]);
    uint32_t freed = zs_handle_index(h[N / 2]);
    zs_free(pool, h[N / 2]);
    h[N / 2] = zs_malloc(pool, 200);
    CHECK_EQU(zs_handle_index(h[N / 2]), freed);
    for (unsigned i = 0; i < N; i++)
        zs_free(pool, h[i]);
}

static void test_huge(void)
{
    size_t huge = zs_huge_class_size();
    printf("huge class size %zu\n", huge);
    /* Below half a page two objects share a page, so that cannot be huge. */
    CHECKF(huge > ZT_PAGE / 2 && huge <= ZS_MAX_ALLOC_SIZE,
           "zs_huge_class_size() = %zu", huge);

    /* Every size from there up lives alone in one page: by the table... */
    for (size_t s = huge; s <= ZS_MAX_ALLOC_SIZE; s++) {
        struct zs_class_stats c = zt_class(pool, zt_class_for(pool, s));
        CHECKF(c.objs_per_zspage == 1 && c.pages_per_zspage == 1,
               "size %zu >= huge class size %zu is served by class size %u with %u "
               "objects in %u pages", s, huge, c.size, c.objs_per_zspage,
               c.pages_per_zspage);
    }
    /* ...and by where objects land: find the class whose count rose. */
    static const size_t extra[] = { 0, 1, 16, 100, ZS_MAX_ALLOC_SIZE };
    unsigned n = zs_class_count();
    for (size_t k = 0; k < sizeof(extra) / sizeof(extra[0]); k++) {
        size_t s = extra[k] == ZS_MAX_ALLOC_SIZE ? ZS_MAX_ALLOC_SIZE : huge + extra[k];
        if (s > ZS_MAX_ALLOC_SIZE)
            continue;
        uint64_t before[ZS_MAX_ALLOC_SIZE];
        CHECK(n <= ZS_MAX_ALLOC_SIZE);
        for (unsigned i = 0; i < n; i++)
            before[i] = zt_class(pool, i).objects;
        uint64_t pages0 = zt_stats(pool).pages;
        uint64_t h1 = zs_malloc(pool, s), h2 = zs_malloc(pool, s);
        CHECK(h1 && h2);
        int found = -1;
        for (unsigned i = 0; i < n; i++) {
            uint64_t now = zt_class(pool, i).objects;
            if (now != before[i]) {
                CHECKF(found < 0 && now == before[i] + 2, "two objects of %zu bytes "
                       "changed class %u's count from %" PRIu64 " to %" PRIu64, s, i,
                       before[i], now);
                found = (int)i;
            }
        }
        CHECKF(found >= 0, "no class counts the objects of size %zu", s);
        struct zs_class_stats c = zt_class(pool, (unsigned)found);
        CHECKF(c.objs_per_zspage == 1, "objects of %zu bytes (huge is %zu) went to class "
               "%d (size %u) with %u objects per zspage", s, huge, found, c.size,
               c.objs_per_zspage);
        CHECKF(zt_stats(pool).pages == pages0 + 2, "two objects of %zu bytes took %"
               PRIu64 " pages, want one each", s, zt_stats(pool).pages - pages0);
        zs_free(pool, h1);
        zs_free(pool, h2);
    }
    /* Just below: not alone, or the threshold would be lower. */
    struct zs_class_stats below = zt_class(pool, zt_class_for(pool, huge - 1));
    printf("size %zu: class size %u, %u objects in %u pages\n", huge - 1, below.size,
           below.objs_per_zspage, below.pages_per_zspage);
    CHECKF(below.objs_per_zspage > below.pages_per_zspage, "size %zu, just below the "
           "huge class size %zu, is stored one per page too: the huge size is too high",
           huge - 1, huge);
    zt_check_consistent(pool);
}

int main(void)
{
    pool = zs_create(NULL, NULL);
    CHECKF(pool, "zs_create: %m");
    RUN_TEST(test_table);
    RUN_TEST(test_large_waste);
    RUN_TEST(test_out_of_range);
    RUN_TEST(test_served_by);
    RUN_TEST(test_huge);
    RUN_TEST(test_class_size_and_index);
    zs_destroy(pool);
    return 0;
}
