/* SPDX-License-Identifier: MIT */
/*
 * The pool must not cost a mapping per zspage: Linux caps a process near
 * 65,530 mappings (vm.max_map_count), and a 64 GiB device holds about a
 * million zspages.  Make more zspages than that cap (one-page objects, one
 * zspage each), punch holes by freeing every other one, compact, and count
 * the lines of /proc/self/maps before and after.
 */
#include "zstest.h"

/* More zspages than the default vm.max_map_count of 65,530. */
#define ZSPAGES 70000u
/* Regions, the handle and id tables, libc's own: a few dozen at most. */
#define MAX_NEW_MAPPINGS 64u

static unsigned count_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    CHECKF(f, "/proc/self/maps: %m");
    unsigned n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static void test_many_zspages(void)
{
    unsigned before = count_mappings();
    struct zs_pool *pool = zs_create(NULL, NULL);
    CHECKF(pool, "zs_create: %m");
    uint64_t *h = calloc(ZSPAGES, sizeof(*h));
    CHECK(h);
    unsigned char page[ZS_MAX_ALLOC_SIZE];

    for (unsigned i = 0; i < ZSPAGES; i++) {
        h[i] = zs_malloc(pool, sizeof(page));
        CHECKF(h[i], "zs_malloc #%u: %m", i);
        memset(page, (int)i, sizeof(page));
        CHECK_EQ(zs_write(pool, h[i], page, sizeof(page)), 0);
    }
    struct zs_pool_stats s = zt_stats(pool);
    CHECK(s.zspages >= ZSPAGES);
    unsigned full = count_mappings();
    printf("%u zspages: %u mappings before the pool, %u with it\n",
           (unsigned)s.zspages, before, full);
    CHECKF(full < before + MAX_NEW_MAPPINGS, "%u zspages took %u mappings",
           (unsigned)s.zspages, full - before);

    /* Holes everywhere: madvise must not split the regions. */
    for (unsigned i = 0; i < ZSPAGES; i += 2)
        zs_free(pool, h[i]);
    (void)zs_compact(pool);
    unsigned holed = count_mappings();
    printf("after freeing every other zspage: %u mappings\n", holed);
    CHECKF(holed < before + MAX_NEW_MAPPINGS, "holes took %u mappings", holed - before);

    /* And the freed runs are reused, not new address space. */
    for (unsigned i = 0; i < ZSPAGES; i += 2) {
        h[i] = zs_malloc(pool, sizeof(page));
        CHECKF(h[i], "zs_malloc again #%u: %m", i);
    }
    CHECKF(count_mappings() < before + MAX_NEW_MAPPINGS, "refilling took new mappings");
    for (unsigned i = 1; i < ZSPAGES; i += 2) {
        CHECK_EQ(zs_read(pool, h[i], page), (int)sizeof(page));
        CHECKF(page[0] == (unsigned char)i && page[sizeof(page) - 1] == (unsigned char)i,
               "object %u lost its bytes", i);
    }
    free(h);
    zs_destroy(pool);
}

int main(void)
{
    RUN_TEST(test_many_zspages);
    return 0;
}
