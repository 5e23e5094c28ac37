/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the zspool tests: stats snapshots, the class that is
 * meant to serve a size (read off the class table), and a check of every
 * invariant that ties the pool's totals to its per-class figures.  The
 * invariant check is exact only while no other thread uses the pool.
 */
#ifndef UZRAM_ZSTEST_H
#define UZRAM_ZSTEST_H

#include "test.h"
#include "zspool.h"

#define ZT_PAGE 4096u

static inline struct zs_pool_stats zt_stats(struct zs_pool *pool)
{
    struct zs_pool_stats s;
    memset(&s, 0x5a, sizeof(s));
    zs_get_stats(pool, &s);
    return s;
}

static inline struct zs_class_stats zt_class(struct zs_pool *pool, unsigned idx)
{
    struct zs_class_stats c;
    memset(&c, 0x5a, sizeof(c));
    int r = zs_get_class_stats(pool, idx, &c);
    CHECKF(r == 0, "zs_get_class_stats(%u) = %d", idx, r);
    return c;
}

/*
 * Index of the class that serves objects of size bytes: the smallest class
 * at least that large, or the class it is merged into.
 */
static inline unsigned zt_class_for(struct zs_pool *pool, size_t size)
{
    unsigned n = zs_class_count();
    for (unsigned i = 0; i < n; i++) {
        struct zs_class_stats c = zt_class(pool, i);
        if (c.size >= size)
            return c.merged_into;
    }
    CHECKF(0, "no class serves size %zu", size);
}

static inline void zt_print_stats(const char *what, const struct zs_pool_stats *s)
{
    fprintf(stderr,
            "%s: mem_used %" PRIu64 " pages %" PRIu64 " metadata %" PRIu64
            " objects %" PRIu64 " bytes_stored %" PRIu64 " zspages %" PRIu64
            " compacted %" PRIu64 " evicted pages %" PRIu64 " objects %" PRIu64
            " bad_handles %" PRIu64 "\n",
            what, s->mem_used, s->pages, s->metadata_bytes, s->objects,
            s->bytes_stored, s->zspages, s->pages_compacted, s->pages_evicted,
            s->objects_evicted, s->bad_handles);
}

/*
 * Check that the pool's totals agree with each other and with the sum of its
 * classes, and that each class's figures are possible.  Only for a pool no
 * other thread is using.  Returns the pool's stats.
 */
static inline struct zs_pool_stats zt_check_consistent(struct zs_pool *pool)
{
    struct zs_pool_stats s = zt_stats(pool);
    unsigned n = zs_class_count();
    uint64_t objects = 0, bytes = 0, zspages = 0, pages = 0, compacted = 0;

    CHECKF(s.mem_used == s.pages * ZT_PAGE + s.metadata_bytes,
           "mem_used %" PRIu64 " != pages %" PRIu64 " * 4096 + metadata %" PRIu64,
           s.mem_used, s.pages, s.metadata_bytes);
    CHECKF(zs_mem_used(pool) == s.mem_used, "zs_mem_used() %" PRIu64 " != mem_used %" PRIu64,
           zs_mem_used(pool), s.mem_used);
    for (unsigned i = 0; i < n; i++) {
        struct zs_class_stats c = zt_class(pool, i);
        uint64_t listed = 0;
        for (unsigned g = 0; g < ZS_FULLNESS_GROUPS; g++)
            listed += c.fullness[g];
        CHECKF(c.fullness[0] == 0, "class %u (size %u) lists %" PRIu64
               " zspages as empty", i, c.size, c.fullness[0]);
        CHECKF(listed == c.zspages, "class %u (size %u): fullness groups hold %" PRIu64
               " zspages, zspages = %" PRIu64, i, c.size, listed, c.zspages);
        CHECKF(c.objects <= c.zspages * c.objs_per_zspage,
               "class %u (size %u): %" PRIu64 " objects in %" PRIu64
               " zspages of %u", i, c.size, c.objects, c.zspages, c.objs_per_zspage);
        CHECKF(c.pages <= c.zspages * c.pages_per_zspage,
               "class %u (size %u): %" PRIu64 " pages in %" PRIu64
               " zspages of %u pages", i, c.size, c.pages, c.zspages, c.pages_per_zspage);
        CHECKF(c.bytes_stored <= c.objects * c.size,
               "class %u (size %u): %" PRIu64 " bytes in %" PRIu64 " objects",
               i, c.size, c.bytes_stored, c.objects);
        CHECKF(c.bytes_stored >= c.objects, "class %u: %" PRIu64 " bytes in %"
               PRIu64 " objects", i, c.bytes_stored, c.objects);
        CHECKF((c.objects == 0) == (c.zspages == 0),
               "class %u (size %u): %" PRIu64 " objects but %" PRIu64
               " zspages (an empty zspage must be freed at once)",
               i, c.size, c.objects, c.zspages);
        CHECKF(c.zspages <= c.pages, "class %u: %" PRIu64 " zspages but %" PRIu64
               " resident pages", i, c.zspages, c.pages);
        if (c.merged_into != i)
            CHECKF(c.zspages == 0 && c.objects == 0 && c.pages == 0,
                   "class %u is merged into %u yet holds %" PRIu64 " zspages, %"
                   PRIu64 " objects", i, c.merged_into, c.zspages, c.objects);
        objects += c.objects;
        bytes += c.bytes_stored;
        zspages += c.zspages;
        pages += c.pages;
        compacted += c.pages_compacted;
    }
    CHECKF(objects == s.objects, "classes hold %" PRIu64 " objects, pool says %" PRIu64,
           objects, s.objects);
    CHECKF(bytes == s.bytes_stored, "classes hold %" PRIu64 " bytes, pool says %" PRIu64,
           bytes, s.bytes_stored);
    CHECKF(zspages == s.zspages, "classes hold %" PRIu64 " zspages, pool says %" PRIu64,
           zspages, s.zspages);
    CHECKF(pages == s.pages, "classes hold %" PRIu64 " pages, pool says %" PRIu64,
           pages, s.pages);
    CHECKF(compacted == s.pages_compacted, "classes compacted %" PRIu64
           " pages, pool says %" PRIu64, compacted, s.pages_compacted);
    return s;
}

#endif
