/* SPDX-License-Identifier: MIT */
/*
 * A pool's life: zs_create() and zs_destroy().
 *
 * zs_create() makes all a pool needs up front (its locks, its classes, the
 * address space of its three tables) and touches no table yet.
 * zs_destroy() accepts NULL and a pool zs_create() could only partly make,
 * and gives back every region, table and list; no other call on the pool
 * may run or follow.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "zspool-internal.h"

ZS_EXPORT struct zs_pool *zs_create(const struct zs_ops *ops, void *arg)
{
    geometry_ensure();

    struct zs_pool *pool;
    size_t bytes = sizeof(*pool) + num_classes * sizeof(struct size_class);
    int r = posix_memalign((void **)&pool, 64, bytes);
    if (r != 0) {
        errno = r;
        return NULL;
    }
    memset(pool, 0, bytes);
    if (ops)
        pool->ops = *ops;
    pool->arg = arg;
    pthread_mutex_init(&pool->id_lock, NULL);
    pthread_mutex_init(&pool->shrink_lock, NULL);
    pthread_mutex_init(&pool->frontier.lock, NULL);
    pthread_mutex_init(&pool->rsv.refill_lock, NULL);
    atomic_init(&pool->rsv.low, UINT64_MAX);
    for (uint32_t k = 0; k <= MAX_ZSPAGE_PAGES; k++)
        pthread_mutex_init(&pool->arenas[k].lock, NULL);
    for (uint32_t i = 0; i < NUM_SIZES; i++) {
        if (geometry[i].merged_into != i)
            continue;
        struct size_class *c = &pool->classes[geometry[i].dense];
        const struct class_geometry *g = &geometry[i];
        pthread_mutex_init(&c->lock, NULL);
        c->size = g->size;
        c->pages = (uint16_t)g->pages;
        c->objs = (uint16_t)g->objs;
        for (unsigned j = 0; j < ZS_FULLNESS_GROUPS; j++)
            ihead_init(&c->groups[j]);
        ihead_init(&c->lru);
    }
    atomic_init(&pool->metadata, (uint64_t)malloc_cost(pool));
    if (vtable_init(&pool->handles, (size_t)MAX_HANDLES * sizeof(uint64_t)) < 0 ||
        vtable_init(&pool->ids, (size_t)MAX_ZSPAGE_IDS * sizeof(struct zspage *)) < 0 ||
        vtable_init(&pool->descs, DESC_TABLE_BYTES) < 0) {
        zs_destroy(pool);
        errno = ENOMEM;
        return NULL;
    }
    /*
     * The list of regions, with room for 64 (64 GiB of addresses) from the
     * start: a zs_malloc() that grew it would add metadata that
     * zs_meta_growth() does not count.
     */
    struct runs *regions = &pool->frontier.regions;
    regions->v = malloc(64 * sizeof(*regions->v));
    if (!regions->v) {
        zs_destroy(pool);
        errno = ENOMEM;
        return NULL;
    }
    regions->cap = 64;
    meta_add(pool, malloc_cost(regions->v));
    return pool;
}

ZS_EXPORT void zs_destroy(struct zs_pool *pool)
{
    if (!pool)
        return;
    for (size_t i = 0; i < pool->frontier.regions.n; i++)
        munmap(pool->frontier.regions.v[i], REGION_BYTES);
    free(pool->frontier.regions.v);
    pthread_mutex_destroy(&pool->frontier.lock);
    pthread_mutex_destroy(&pool->rsv.refill_lock);
    for (uint32_t k = 0; k <= MAX_ZSPAGE_PAGES; k++) {
        struct arena *a = &pool->arenas[k];
        free(a->warm.v);
        free(a->cold.v);
        pthread_mutex_destroy(&a->lock);
    }
    for (uint32_t i = 0; i < num_classes; i++)
        pthread_mutex_destroy(&pool->classes[i].lock);
    vtable_fini(&pool->handles);
    vtable_fini(&pool->ids);
    vtable_fini(&pool->descs);
    pthread_mutex_destroy(&pool->id_lock);
    pthread_mutex_destroy(&pool->shrink_lock);
    free(pool);
}
