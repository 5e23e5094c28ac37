/* SPDX-License-Identifier: MIT */
/*
 * Size classes (doc/zspool.md, "Size classes").
 *
 * The geometry is the same for every pool: computed once, on first use,
 * under pthread_once (geometry_ensure()), and read-only after, so it is
 * read without a lock.  Sizes step by CLASS_DELTA; each class takes the
 * zspage length, 1 to ZS_MAX_PAGES_PER_ZSPAGE pages, that wastes the
 * smallest fraction of its bytes, and a class that packs exactly like the
 * next larger one is merged into it: only a class whose merged_into is its
 * own index holds zspages in a pool.
 */
#include <pthread.h>

#include "zspool-internal.h"

struct class_geometry geometry[NUM_SIZES];
static size_t huge_class_size;
static pthread_once_t geometry_once = PTHREAD_ONCE_INIT;

/* Pick the zspage length that wastes the smallest fraction of its bytes. */
static void geometry_pick(uint32_t size, uint32_t *ret_pages, uint32_t *ret_objs)
{
    uint32_t best_pages = 1, best_objs = PAGE_SIZE / size;
    uint64_t best_waste = PAGE_SIZE - best_objs * size;

    for (uint32_t k = 2; k <= ZS_MAX_PAGES_PER_ZSPAGE; k++) {
        uint32_t objs = k * PAGE_SIZE / size;
        uint64_t waste = k * PAGE_SIZE - (uint64_t)objs * size;
        /* waste / k < best_waste / best_pages, without division */
        if (waste * best_pages < best_waste * k) {
            best_pages = k;
            best_objs = objs;
            best_waste = waste;
        }
    }
    *ret_pages = best_pages;
    *ret_objs = best_objs;
}

static void geometry_init(void)
{
    for (uint32_t i = 0; i < NUM_SIZES; i++) {
        geometry[i].size = (i + 1) * CLASS_DELTA;
        geometry_pick(geometry[i].size, &geometry[i].pages, &geometry[i].objs);
    }
    /* Merge downwards: a class that packs like the next larger one joins it. */
    geometry[NUM_SIZES - 1].merged_into = NUM_SIZES - 1;
    for (uint32_t i = NUM_SIZES - 1; i-- > 0;) {
        const struct class_geometry *up = &geometry[geometry[i + 1].merged_into];
        if (up->pages == geometry[i].pages && up->objs == geometry[i].objs)
            geometry[i].merged_into = geometry[i + 1].merged_into;
        else
            geometry[i].merged_into = i;
    }
    huge_class_size = ZS_MAX_ALLOC_SIZE;
    for (uint32_t i = NUM_SIZES; i-- > 0;) {
        if (geometry[geometry[i].merged_into].objs != 1)
            break;
        huge_class_size = i * CLASS_DELTA + 1;
    }
}

void geometry_ensure(void)
{
    pthread_once(&geometry_once, geometry_init);
}

ZS_EXPORT unsigned zs_class_count(void)
{
    return NUM_SIZES;
}

ZS_EXPORT size_t zs_class_size(size_t size)
{
    if (size == 0 || size > ZS_MAX_ALLOC_SIZE)
        return 0;
    geometry_ensure();
    return geometry[geometry[(size - 1) / CLASS_DELTA].merged_into].size;
}

ZS_EXPORT size_t zs_huge_class_size(void)
{
    geometry_ensure();
    return huge_class_size;
}
