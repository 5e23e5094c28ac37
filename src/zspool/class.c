/* SPDX-License-Identifier: MIT */
/*
 * Size classes (doc/zspool.md, "Size classes").
 *
 * The geometry is the same for every pool: computed once, on first use,
 * under pthread_once (geometry_ensure()), and read-only after, so it is
 * read without a lock.  Sizes step by CLASS_DELTA up to a page, and by
 * LARGE_STEPS steps per doubling above it (size_index()); each class takes
 * the zspage length that wastes the smallest fraction of its bytes, 1 to
 * ZS_MAX_PAGES_PER_ZSPAGE pages up to a page, up to MAX_ZSPAGE_PAGES above
 * (a 33,280-byte object alone wastes 10% of the 9 pages it needs, three
 * of them 2.5% of 25 pages), and a class that packs exactly like the next
 * larger one is merged into it: only a class whose merged_into is its own
 * index holds zspages in a pool.  The per-page classes are as they were
 * before the large ones came: a user of small objects sees no change.
 */
#include <pthread.h>

#include "zspool-internal.h"

struct class_geometry geometry[NUM_SIZES];
uint32_t num_classes;
uint64_t zspage_lengths;
static size_t huge_class_size;
static pthread_once_t geometry_once = PTHREAD_ONCE_INIT;

/*
 * Pick the zspage length, up to max_pages, that wastes the smallest fraction
 * of its bytes; the shortest among equals.
 */
static void geometry_pick(uint32_t size, uint32_t max_pages, uint32_t *ret_pages,
                          uint32_t *ret_objs)
{
    /* The shortest zspage that holds one object, to begin with. */
    uint32_t best_pages = (size + PAGE_SIZE - 1) / PAGE_SIZE;
    uint32_t best_objs = best_pages * PAGE_SIZE / size;
    uint64_t best_waste = best_pages * PAGE_SIZE - (uint64_t)best_objs * size;

    for (uint32_t k = best_pages + 1; k <= max_pages; k++) {
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

/* The slot size of class step i, before merging (the inverse of size_index()). */
static uint32_t step_size(uint32_t i)
{
    if (i < NUM_SMALL)
        return (i + 1) * CLASS_DELTA;
    uint32_t d = (i - NUM_SMALL) / LARGE_STEPS, j = (i - NUM_SMALL) % LARGE_STEPS;
    return (ZS_MAX_ALLOC_SIZE << d) + (j + 1) * ((ZS_MAX_ALLOC_SIZE << d) / LARGE_STEPS);
}

static void geometry_init(void)
{
    for (uint32_t i = 0; i < NUM_SIZES; i++) {
        geometry[i].size = step_size(i);
        geometry_pick(geometry[i].size,
                      i < NUM_SMALL ? ZS_MAX_PAGES_PER_ZSPAGE : MAX_ZSPAGE_PAGES,
                      &geometry[i].pages, &geometry[i].objs);
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
    /* Only classes that serve themselves get a struct size_class, in order. */
    for (uint32_t i = 0; i < NUM_SIZES; i++)
        if (geometry[i].merged_into == i) {
            geometry[i].dense = num_classes++;
            zspage_lengths |= 1ull << geometry[i].pages;
        }
    for (uint32_t i = 0; i < NUM_SIZES; i++)
        geometry[i].dense = geometry[geometry[i].merged_into].dense;
    /* The huge class is among the per-page ones: large classes share zspages. */
    huge_class_size = ZS_MAX_ALLOC_SIZE;
    for (uint32_t i = NUM_SMALL; i-- > 0;) {
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
    if (size == 0 || size > ZS_MAX_OBJECT_SIZE)
        return 0;
    geometry_ensure();
    return geometry[geometry[size_index(size)].merged_into].size;
}

ZS_EXPORT size_t zs_huge_class_size(void)
{
    geometry_ensure();
    return huge_class_size;
}
