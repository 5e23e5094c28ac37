/* SPDX-License-Identifier: MIT */
/*
 * Statistics: zs_mem_used(), zs_get_stats(), zs_get_class_stats().
 *
 * The pool's counters are atomic and relaxed: each is exact, but several
 * are not read at one instant.  A class's figures are read under its lock,
 * so they agree with each other; its fullness groups are counted by walking
 * their lists, which takes time in the class's zspages under its lock.
 * mem_used is the resident zspage pages plus the metadata; the reserve's
 * unused memory is outside it (zs_reserve_get_stats(), reserve.c).
 */
#include <errno.h>

#include "cleanup.h"
#include "zspool-internal.h"

ZS_EXPORT uint64_t zs_mem_used(struct zs_pool *pool)
{
    return load(&pool->pages) * PAGE_SIZE + load(&pool->metadata);
}

/* Would a table, committed up to its committed bytes, have to grow to hold need bytes? */
static uint64_t table_step_for(struct vtable *t, uint64_t need)
{
    return need > atomic_load_explicit(&t->committed, memory_order_relaxed) ? TABLE_COMMIT_STEP
                                                                            : 0;
}

/*
 * An upper bound, read without a lock: a handle entry when the free stack is
 * empty; an id and a descriptor as if the allocation opened a zspage (the
 * free ids and a class's freed descriptors are under locks, and left out).
 */
ZS_EXPORT uint64_t zs_meta_growth(struct zs_pool *pool, size_t size)
{
    if (pool->rsv.on || size == 0 || size > ZS_MAX_OBJECT_SIZE)
        return 0; /* reserve mode: only the refill grows a table */
    uint64_t grow = 0;
    if ((uint32_t)atomic_load_explicit(&pool->handle_free, memory_order_relaxed) == 0)
        grow += table_step_for(&pool->handles,
                               (load(&pool->handle_top) + 1) * sizeof(uint64_t));
    uint32_t ids = atomic_load_explicit(&pool->id_top, memory_order_relaxed);
    grow += table_step_for(&pool->ids, ((uint64_t)ids + 1) * sizeof(struct zspage *));
    grow += table_step_for(&pool->descs,
                           load(&pool->desc_top) + desc_bytes(class_for(pool, size)));
    return grow;
}

ZS_EXPORT void zs_get_stats(struct zs_pool *pool, struct zs_pool_stats *ret)
{
    struct zs_pool_stats s = {0};

    for (uint32_t i = 0; i < num_classes; i++) {
        s.objects += load(&pool->classes[i].objects);
        s.bytes_stored += load(&pool->classes[i].bytes);
    }
    s.pages = load(&pool->pages);
    s.metadata_bytes = load(&pool->metadata);
    s.mem_used = s.pages * PAGE_SIZE + s.metadata_bytes;
    s.zspages = load(&pool->zspages);
    s.pages_compacted = load(&pool->pages_compacted);
    s.pages_evicted = load(&pool->pages_evicted);
    s.objects_evicted = load(&pool->objects_evicted);
    s.bad_handles = load(&pool->bad_handles);
    *ret = s;
}

ZS_EXPORT int zs_get_class_stats(struct zs_pool *pool, unsigned idx, struct zs_class_stats *ret)
{
    if (idx >= NUM_SIZES)
        return -EINVAL;
    const struct class_geometry *g = &geometry[idx];
    struct zs_class_stats s = {
        .size = g->size,
        .pages_per_zspage = g->pages,
        .objs_per_zspage = g->objs,
        .merged_into = g->merged_into,
    };
    if (g->merged_into == idx) {
        struct size_class *c = &pool->classes[g->dense];
        LOCK_GUARD(&c->lock);
        s.zspages = c->zspages;
        s.pages = load(&c->pages_held);
        s.objects = load(&c->objects);
        s.bytes_stored = load(&c->bytes);
        s.pages_compacted = c->compacted;
        /* Counted here rather than kept: a class's struct stays small. */
        for (unsigned j = 1; j < ZS_FULLNESS_GROUPS; j++)
            for (struct zspage *z = zspage_by_id(pool, c->groups[j].first); z;
                 z = zspage_by_id(pool, z->link[LINK_GROUP].next))
                s.fullness[j]++;
    }
    *ret = s;
    return 0;
}
