/* SPDX-License-Identifier: MIT */
/*
 * zs_write() and zs_read(): a round trip at every size 1..4096 with all the
 * objects live at once (so an object that overlaps its neighbour, or a read
 * that copies too much, shows), partial writes that leave the tail alone,
 * and writes longer than the object.
 */
#include "zstest.h"

#define MAXS ZS_MAX_ALLOC_SIZE
#define GUARD 64

static struct zs_pool *pool;
static uint64_t handles[MAXS + 1]; /* handles[size] */
static unsigned version[MAXS + 1];

/* Read object size and compare with the pattern of (size, version[size]). */
static void verify(size_t size)
{
    static unsigned char got[MAXS + GUARD], want[MAXS];
    memset(got, 0xa5, sizeof(got));
    test_pattern(want, size, size, version[size]);
    int r = zs_read(pool, handles[size], got);
    CHECKF(r == (int)size, "zs_read(object of size %zu) = %d", size, r);
    for (size_t i = 0; i < size; i++)
        CHECKF(got[i] == want[i], "object of size %zu, version %u: byte %zu is %#x, "
               "want %#x", size, version[size], i, got[i], want[i]);
    for (size_t i = size; i < sizeof(got); i++)
        CHECKF(got[i] == 0xa5, "zs_read(object of size %zu) wrote past the object, "
               "at byte %zu of dst", size, i);
    CHECK_EQ(zs_size(pool, handles[size]), size);
}

static void write_version(size_t size, unsigned v)
{
    static unsigned char buf[MAXS];
    version[size] = v;
    test_pattern(buf, size, size, v);
    CHECK_EQ(zs_write(pool, handles[size], buf, size), 0);
}

static void test_every_size(void)
{
    for (size_t size = 1; size <= MAXS; size++) {
        handles[size] = zs_malloc(pool, size);
        CHECKF(handles[size], "zs_malloc(%zu): %m", size);
        write_version(size, 1);
        verify(size);
    }
    /* All live at once: none may have overwritten another. */
    for (size_t size = 1; size <= MAXS; size++)
        verify(size);
    /* Rewrite in the other order, to catch overlap in either direction. */
    for (size_t size = MAXS; size >= 1; size--)
        write_version(size, 2);
    for (size_t size = 1; size <= MAXS; size++)
        verify(size);
    struct zs_pool_stats s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, MAXS);
    CHECK_EQU(s.bytes_stored, (uint64_t)MAXS * (MAXS + 1) / 2);
}

/* A write shorter than the object changes its start and nothing else. */
static void test_partial_write(void)
{
    static unsigned char want[MAXS], buf[MAXS], got[MAXS];
    struct test_rng rng;
    rng_seed(&rng, 7);
    for (size_t size = 1; size <= MAXS; size += 1 + size / 8) {
        test_pattern(want, size, size, version[size]);
        for (int k = 0; k < 4; k++) {
            size_t len = k == 0 ? 0 : k == 1 ? size : rng_below(&rng, size + 1);
            rng_fill(&rng, buf, len);
            CHECK_EQ(zs_write(pool, handles[size], buf, len), 0);
            memcpy(want, buf, len);
            CHECK_EQ(zs_read(pool, handles[size], got), size);
            CHECKF(memcmp(got, want, size) == 0, "object of size %zu after a "
                   "write of %zu bytes: contents differ", size, len);
        }
        /* Back to the pattern, for the other tests. */
        write_version(size, version[size]);
        verify(size);
    }
}

/* len > size: -EINVAL, and the object is untouched. */
static void test_write_too_long(void)
{
    static unsigned char buf[2 * MAXS];
    memset(buf, 0xee, sizeof(buf));
    static const size_t sizes[] = { 1, 16, 17, 1000, 4095, 4096 };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t size = sizes[i];
        static const size_t extra[] = { 1, 2, 16, 4096 };
        for (size_t j = 0; j < sizeof(extra) / sizeof(extra[0]); j++) {
            int r = zs_write(pool, handles[size], buf, size + extra[j]);
            CHECKF(r == -EINVAL, "zs_write(object of size %zu, len %zu) = %d, "
                   "want -EINVAL", size, size + extra[j], r);
        }
        CHECK_EQ(zs_write(pool, handles[size], buf, SIZE_MAX), -EINVAL);
        verify(size);
    }
}

static void test_free_all(void)
{
    for (size_t size = 1; size <= MAXS; size++) {
        zs_free(pool, handles[size]);
        /* The neighbours of the freed object are intact. */
        if (size % 97 == 0)
            for (size_t other = size + 1; other <= MAXS; other += 61)
                verify(other);
    }
    struct zs_pool_stats s = zt_check_consistent(pool);
    CHECK_EQU(s.objects, 0);
    CHECK_EQU(s.bytes_stored, 0);
    CHECK_EQU(s.pages, 0);
    CHECK_EQU(s.zspages, 0);
    CHECK_EQU(s.bad_handles, 0);
}

int main(void)
{
    pool = zs_create(NULL, NULL);
    CHECKF(pool, "zs_create: %m");
    RUN_TEST(test_every_size);
    RUN_TEST(test_partial_write);
    RUN_TEST(test_write_too_long);
    RUN_TEST(test_free_all);
    zs_destroy(pool);
    return 0;
}
