/* SPDX-License-Identifier: MIT */
/*
 * zs_map() and zs_unmap(): the pointer shows the object's bytes and its size,
 * writes through it are what zs_read() returns, objects that straddle a page
 * boundary map in place too, the same object may be mapped several times at
 * once, and a stale handle maps to NULL with ESTALE.
 */
#include "zstest.h"

static struct zs_pool *pool;

/* Sizes whose objects, packed back to back, straddle page boundaries. */
static const size_t sizes[] = { 1, 24, 100, 1000, 1500, 2730, 3000, 3264,
                                4000, 4095, 4096 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))
#define PER_SIZE 40

static uint64_t handles[NSIZES][PER_SIZE];

static void test_map_contents(void)
{
    static unsigned char want[ZS_MAX_ALLOC_SIZE], got[ZS_MAX_ALLOC_SIZE];
    unsigned straddlers = 0;

    for (size_t i = 0; i < NSIZES; i++) {
        for (unsigned j = 0; j < PER_SIZE; j++) {
            size_t size = sizes[i];
            uint64_t h = zs_malloc(pool, size);
            CHECKF(h, "zs_malloc(%zu): %m", size);
            handles[i][j] = h;
            test_pattern(want, size, h, 1);
            CHECK_EQ(zs_write(pool, h, want, size), 0);
        }
    }
    for (size_t i = 0; i < NSIZES; i++) {
        for (unsigned j = 0; j < PER_SIZE; j++) {
            size_t size = sizes[i], ret_size = 12345;
            uint64_t h = handles[i][j];
            unsigned char *p = zs_map(pool, h, &ret_size);
            CHECKF(p, "zs_map(object of size %zu): %m", size);
            CHECKF(ret_size == size, "zs_map(object of size %zu) gave ret_size %zu",
                   size, ret_size);
            if ((uintptr_t)p / ZT_PAGE != ((uintptr_t)p + size - 1) / ZT_PAGE)
                straddlers++;
            test_pattern(want, size, h, 1);
            CHECKF(memcmp(p, want, size) == 0, "mapped object of size %zu (#%u) does "
                   "not hold what zs_write() put there", size, j);
            /* Write every byte through the map: a new version. */
            test_pattern(p, size, h, 2);
            zs_unmap(pool, h);

            test_pattern(want, size, h, 2);
            CHECK_EQ(zs_read(pool, h, got), size);
            CHECKF(memcmp(got, want, size) == 0, "zs_read() of object of size %zu "
                   "(#%u) does not see what was written through zs_map()", size, j);
        }
    }
    printf("%u of %zu mapped objects straddle a page boundary\n", straddlers,
           NSIZES * PER_SIZE);
    /* 40 objects of 1000 bytes cannot all sit inside single pages. */
    CHECKF(straddlers > 0, "no mapped object straddles a page; the test expects "
           "back-to-back packing to produce some");

    /* Neighbours unharmed by the writes through the maps. */
    for (size_t i = 0; i < NSIZES; i++)
        for (unsigned j = 0; j < PER_SIZE; j++) {
            test_pattern(want, sizes[i], handles[i][j], 2);
            CHECK_EQ(zs_read(pool, handles[i][j], got), sizes[i]);
            CHECKF(memcmp(got, want, sizes[i]) == 0, "object of size %zu (#%u) was "
                   "changed by a write through another object's map", sizes[i], j);
        }
}

/* ret_size may be NULL; a zs_write() shows through a fresh map. */
static void test_map_null_size(void)
{
    static unsigned char want[ZS_MAX_ALLOC_SIZE];
    for (size_t i = 0; i < NSIZES; i++) {
        uint64_t h = handles[i][PER_SIZE / 2];
        test_pattern(want, sizes[i], h, 3);
        CHECK_EQ(zs_write(pool, h, want, sizes[i]), 0);
        unsigned char *p = zs_map(pool, h, NULL);
        CHECKF(p, "zs_map(object of size %zu, NULL): %m", sizes[i]);
        CHECKF(memcmp(p, want, sizes[i]) == 0, "map of object of size %zu does not "
               "show what zs_write() wrote", sizes[i]);
        zs_unmap(pool, h);
    }
}

/* Up to 14 maps of one object at once, from one thread: same pointer. */
static void test_map_nested(void)
{
    for (size_t i = 0; i < NSIZES; i++) {
        uint64_t h = handles[i][1];
        void *p[14];
        for (int k = 0; k < 14; k++) {
            size_t sz = 0;
            p[k] = zs_map(pool, h, &sz);
            CHECKF(p[k], "map %d of the same object: %m", k + 1);
            CHECKF(p[k] == p[0], "map %d of an object gave %p, map 1 gave %p",
                   k + 1, p[k], p[0]);
            CHECK_EQU(sz, sizes[i]);
        }
        /* Several different objects mapped at once too. */
        void *q = zs_map(pool, handles[i][2], NULL);
        CHECK(q);
        CHECKF((char *)q + sizes[i] <= (char *)p[0] || (char *)p[0] + sizes[i] <= (char *)q,
               "two objects of size %zu mapped at %p and %p overlap", sizes[i], q, p[0]);
        zs_unmap(pool, handles[i][2]);
        for (int k = 0; k < 14; k++)
            zs_unmap(pool, h);
        /* Fully unmapped: it can be freed without waiting. */
    }
}

static void test_map_stale(void)
{
    uint64_t h = zs_malloc(pool, 500);
    CHECK(h);
    zs_free(pool, h);
    errno = 0;
    size_t sz = 777;
    void *p = zs_map(pool, h, &sz);
    CHECKF(p == NULL, "zs_map(freed handle) = %p, want NULL", p);
    CHECKF(errno == ESTALE, "zs_map(freed handle) set errno %d (%s), want ESTALE",
           errno, strerrorname_np(errno) ?: "?");
    CHECKF(sz == 777, "zs_map(freed handle) changed *ret_size to %zu", sz);
}

static void test_free_mapped_later(void)
{
    /* Map, unmap, free: the free goes through and the slot can be reused. */
    for (size_t i = 0; i < NSIZES; i++)
        for (unsigned j = 0; j < PER_SIZE; j++) {
            uint64_t h = handles[i][j];
            CHECK(zs_map(pool, h, NULL));
            zs_unmap(pool, h);
            zs_free(pool, h);
            CHECK_EQ(zs_size(pool, h), -ESTALE);
        }
    struct zs_pool_stats s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, 0);
    CHECK_EQU(s.pages, 0);
}

int main(void)
{
    pool = zs_create(NULL, NULL);
    CHECKF(pool, "zs_create: %m");
    RUN_TEST(test_map_contents);
    RUN_TEST(test_map_null_size);
    RUN_TEST(test_map_nested);
    RUN_TEST(test_map_stale);
    RUN_TEST(test_free_mapped_later);
    zs_destroy(pool);
    return 0;
}
