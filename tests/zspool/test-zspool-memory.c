/* SPDX-License-Identifier: MIT */
/*
 * What the process really holds, against what the pool says.
 *
 * Fill a pool with ~300 MiB of objects of realistic sizes, free 90% of them
 * at random, compact, and read the resident set from /proc/self/statm at
 * each step.  The pool claims that pages of a zspage are resident only once
 * objects sit on them and that freed pages go back to the OS before
 * zs_compact() returns, so:
 *   - RSS must grow by about stats.pages * 4096 (plus metadata) when filled,
 *   - after free + compact, RSS must have fallen by at least 80% of the bytes
 *     the freed objects held,
 *   - and RSS must track stats.pages at every step, down to (almost) nothing
 *     when the pool is empty and after zs_destroy().
 * UZRAM_MEMORY_OBJECTS sets the number of objects (default 160,000).
 */
#include "zstest.h"

#include <malloc.h>

#define DEFAULT_OBJECTS 160000
#define MIB (1024.0 * 1024.0)

static struct zs_pool *pool;
static uint64_t rss_base;

static size_t random_size(struct test_rng *rng)
{
    uint64_t r = rng_below(rng, 100);
    if (r < 15)
        return rng_range(rng, 1, 128);
    if (r < 75)
        return rng_range(rng, 1024, 2560);
    if (r < 90)
        return rng_range(rng, 2561, 4095);
    return ZS_MAX_ALLOC_SIZE;
}

static void fill_bytes(unsigned char *buf, size_t size, uint64_t i)
{
    memset(buf, (int)(i * 131 + 7), size);
    memcpy(buf, &i, size < 8 ? size : 8);
}

/*
 * RSS after asking malloc to give back what it keeps of freed chunks: the
 * pool mallocs some metadata, and what glibc caches after the pool frees it
 * is glibc's, not a leak.  Prints how much that was.
 */
static uint64_t trimmed_rss(void)
{
    uint64_t before = test_rss();
    malloc_trim(0);
    uint64_t after = test_rss();
    if (before > after + (256u << 10))
        printf("  (malloc_trim gave back %.1f MiB of freed heap)\n",
               (double)(before - after) / MIB);
    return after;
}

/* Print the step and check that RSS matches what the pool reports. */
static uint64_t step(const char *what)
{
    uint64_t rss = trimmed_rss();
    struct zs_pool_stats s = zt_check_consistent(pool);
    int64_t held = (int64_t)rss - (int64_t)rss_base;
    printf("%-26s RSS %+8.1f MiB   pages %8" PRIu64 " = %7.1f MiB   metadata %6.1f "
           "MiB   objects %7" PRIu64 " bytes %7.1f MiB\n", what, (double)held / MIB,
           s.pages, (double)s.pages * ZT_PAGE / MIB, (double)s.metadata_bytes / MIB,
           s.objects, (double)s.bytes_stored / MIB);
    /*
     * The pool's pages are resident (it put objects there), and nothing much
     * beyond pages + metadata is: 3% and 4 MiB for the rest of the process.
     */
    double pages = (double)s.pages * ZT_PAGE;
    CHECKF((double)held >= pages * 0.97 - 4 * MIB, "%s: RSS grew by %.1f MiB but the pool "
           "claims %.1f MiB of pages", what, (double)held / MIB, pages / MIB);
    CHECKF((double)held <= (double)s.mem_used * 1.03 + 4 * MIB, "%s: RSS grew by %.1f MiB "
           "but the pool claims to hold %.1f MiB (pages %.1f + metadata %.1f): memory "
           "it does not count, or freed pages not given back", what, (double)held / MIB,
           (double)s.mem_used / MIB, pages / MIB, (double)s.metadata_bytes / MIB);
    return rss;
}

/* The objects: the pool's handle, size and whether it survives the free. */
struct objects {
    size_t n;
    uint64_t *h;
    uint16_t *size;
    bool *keep;
};

/* Bookkeeping first and resident, so it is in the baseline. */
static void objects_init(struct objects *o, size_t n, struct test_rng *rng)
{
    o->n = n;
    o->h = calloc(n, sizeof(*o->h));
    o->size = calloc(n, sizeof(*o->size));
    o->keep = calloc(n, sizeof(*o->keep));
    CHECK(o->h && o->size && o->keep);
    memset(o->h, 0, n * sizeof(*o->h));
    memset(o->size, 0, n * sizeof(*o->size));
    memset(o->keep, 0, n * sizeof(*o->keep));
    for (size_t i = 0; i < n; i++) {
        o->size[i] = (uint16_t)random_size(rng);
        o->keep[i] = rng_one_in(rng, 10);
    }
}

/* Allocate and write every object; returns the bytes they hold. */
static uint64_t fill_pool(struct objects *o)
{
    static unsigned char buf[ZS_MAX_ALLOC_SIZE];
    uint64_t bytes = 0;

    for (size_t i = 0; i < o->n; i++) {
        o->h[i] = zs_malloc(pool, o->size[i]);
        CHECKF(o->h[i], "zs_malloc(%u) #%zu: %m", o->size[i], i);
        fill_bytes(buf, o->size[i], i);
        CHECK_EQ(zs_write(pool, o->h[i], buf, o->size[i]), 0);
        bytes += o->size[i];
    }
    printf("%zu objects, %.1f MiB\n", o->n, (double)bytes / MIB);
    return bytes;
}

/* Free the objects not kept; returns the bytes they held, sets *ret_kept. */
static uint64_t free_unkept(const struct objects *o, size_t *ret_kept)
{
    uint64_t freed_bytes = 0;
    size_t kept = 0;

    for (size_t i = 0; i < o->n; i++) {
        if (o->keep[i]) {
            kept++;
            continue;
        }
        zs_free(pool, o->h[i]);
        freed_bytes += o->size[i];
    }
    *ret_kept = kept;
    return freed_bytes;
}

/*
 * Compact: the pages it reports are the pages gone, RSS falls by most of
 * what the freed objects held, and what is left is about as dense as before.
 */
static void compact_and_check(uint64_t rss_full, uint64_t bytes, uint64_t freed_bytes,
                              size_t kept, double t0)
{
    struct zs_pool_stats before = zt_stats(pool);
    int64_t r = zs_compact(pool);
    uint64_t rss_compact = step("compacted");
    struct zs_pool_stats after = zt_stats(pool);
    CHECKF(r > 0 && (uint64_t)r == before.pages - after.pages, "zs_compact() = %" PRId64
           ", pages %" PRIu64 " -> %" PRIu64, r, before.pages, after.pages);

    double fell = (double)rss_full - (double)rss_compact;
    printf("freed objects held %.1f MiB; RSS fell %.1f MiB (%.0f%%); zs_compact() "
           "returned %" PRId64 " pages (%.1f MiB); %.2f s\n", (double)freed_bytes / MIB,
           fell / MIB, 100.0 * fell / (double)freed_bytes, r,
           (double)r * ZT_PAGE / MIB, test_now() - t0);
    CHECKF(fell >= 0.8 * (double)freed_bytes, "RSS fell by only %.1f MiB after freeing "
           "%.1f MiB of objects and compacting (want at least 80%%)", fell / MIB,
           (double)freed_bytes / MIB);
    /* What is left is about as dense as what was there. */
    uint64_t kept_bytes = bytes - freed_bytes;
    CHECKF((double)after.pages * ZT_PAGE <= (double)kept_bytes * 1.25 + 8 * MIB,
           "%zu objects of %.1f MiB take %.1f MiB of pages after compaction", kept,
           (double)kept_bytes / MIB, (double)after.pages * ZT_PAGE / MIB);
}

/* The kept objects survived compaction intact; then they go too. */
static void verify_and_free_kept(const struct objects *o)
{
    static unsigned char buf[ZS_MAX_ALLOC_SIZE], got[ZS_MAX_ALLOC_SIZE];

    for (size_t i = 0; i < o->n; i++) {
        if (!o->keep[i])
            continue;
        fill_bytes(buf, o->size[i], i);
        CHECK_EQ(zs_read(pool, o->h[i], got), o->size[i]);
        CHECKF(memcmp(got, buf, o->size[i]) == 0, "object %zu (size %u) damaged by "
               "compaction", i, o->size[i]);
        zs_free(pool, o->h[i]);
    }
}

/* An empty pool holds no pages, and destroying it gives back the rest. */
static void destroy_and_check(void)
{
    struct zs_pool_stats s = zt_stats(pool);
    CHECK_EQU(s.pages, 0);
    zs_destroy(pool);
    uint64_t rss_end = trimmed_rss();
    printf("%-26s RSS %+8.1f MiB\n", "destroyed", ((double)rss_end - (double)rss_base) / MIB);
    CHECKF(rss_end <= rss_base + (4u << 20), "RSS is %.1f MiB above where it was before "
           "the pool was filled, after zs_destroy()",
           ((double)rss_end - (double)rss_base) / MIB);
}

int main(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* Shadow memory and quarantines make RSS say nothing about the pool. */
    printf("SKIP: RSS is not the pool's alone under a sanitizer\n");
    return TEST_SKIP;
#endif
    size_t n = test_env_u64("UZRAM_MEMORY_OBJECTS", DEFAULT_OBJECTS);
    test_watchdog((unsigned)test_env_u64("UZRAM_TEST_WATCHDOG", 280));
    struct test_rng rng;
    rng_seed(&rng, 0x3e3);
    struct objects o;
    objects_init(&o, n, &rng);

    pool = zs_create(NULL, NULL);
    CHECKF(pool, "zs_create: %m");
    rss_base = trimmed_rss();
    double t0 = test_now();
    step("empty pool");

    uint64_t bytes = fill_pool(&o);
    uint64_t rss_full = step("filled");
    size_t kept;
    uint64_t freed_bytes = free_unkept(&o, &kept);
    step("90% freed");
    compact_and_check(rss_full, bytes, freed_bytes, kept, t0);
    verify_and_free_kept(&o);
    step("all freed");
    destroy_and_check();
    free(o.h);
    free(o.size);
    free(o.keep);
    return 0;
}
