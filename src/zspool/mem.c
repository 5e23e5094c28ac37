/* SPDX-License-Identifier: MIT */
/*
 * Memory from the OS, and the tables and lists over it (doc/zspool.md,
 * "Zspages are contiguous", "The reserve").
 *
 * Address space is reserved PROT_NONE, without huge pages, and made
 * accessible as it fills; pages given back read as zeros.  Every byte of
 * metadata the pool maps or mallocs is added to pool->metadata when it is
 * taken (meta_add()), so that zs_mem_used() counts it.  Nothing here takes
 * a lock but a table's own, to grow it, or the one a caller names.  In
 * reserve mode only the refill grows a table or populates memory; the
 * paths that must not allocate call runs_push() with grow false.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cleanup.h"
#include "populate.h"
#include "zspool-internal.h"

void *vm_reserve(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    /*
     * A transparent huge page would make one touched byte cost 2 MiB and
     * defeat both the page accounting and madvise() of single pages.
     */
    (void)madvise(p, bytes, MADV_NOHUGEPAGE);
    return p;
}

/* Return pages to the OS; they read back as zeros (mem_release()). */
void release_pages(void *p, size_t bytes)
{
    mem_release(p, bytes);
}

int64_t malloc_cost(void *p)
{
    /* usable size plus glibc's chunk header */
    return p ? (int64_t)(malloc_usable_size(p) + sizeof(size_t)) : 0;
}

int populate(void *p, size_t bytes)
{
    return mem_populate(p, bytes);
}

int vtable_init(struct vtable *t, size_t bytes)
{
    t->base = vm_reserve(bytes);
    if (!t->base)
        return -ENOMEM;
    t->reserved = bytes;
    atomic_init(&t->committed, 0);
    pthread_mutex_init(&t->lock, NULL);
    return 0;
}

void vtable_fini(struct vtable *t)
{
    if (t->base)
        munmap(t->base, t->reserved);
    pthread_mutex_destroy(&t->lock);
}

/*
 * Make the first need bytes of t accessible, and with populate resident
 * too (the refill, in reserve mode, before anyone may use them).  Takes
 * t->lock; 0 or -ENOMEM.
 */
int vtable_grow_(struct zs_pool *pool, struct vtable *t, size_t need, bool populate_too)
{
    if (atomic_load_explicit(&t->committed, memory_order_acquire) >= need)
        return 0;
    LOCK_GUARD(&t->lock);
    size_t have = atomic_load_explicit(&t->committed, memory_order_relaxed);
    if (have >= need)
        return 0;
    if (need > t->reserved)
        return -ENOMEM;
    size_t want = (need + TABLE_COMMIT_STEP - 1) / TABLE_COMMIT_STEP * TABLE_COMMIT_STEP;
    if (want > t->reserved)
        want = t->reserved;
    if (mprotect(t->base + have, want - have, PROT_READ | PROT_WRITE) != 0)
        return -ENOMEM;
    if (populate_too && populate(t->base + have, want - have) < 0)
        return -ENOMEM;     /* accessible but not published: the next refill retries */
    meta_add(pool, (int64_t)(want - have));
    atomic_store_explicit(&t->committed, want, memory_order_release);
    return 0;
}

int vtable_grow(struct zs_pool *pool, struct vtable *t, size_t need)
{
    return vtable_grow_(pool, t, need, false);
}

/* Push p on r, growing it (and accounting its memory) if grow allows. */
int runs_push(struct zs_pool *pool, struct runs *r, char *p, bool grow)
{
    if (r->n == r->cap) {
        if (!grow)
            return -ENOSPC;
        size_t ncap = r->cap ? r->cap * 2 : 64;
        int64_t before = malloc_cost(r->v);
        char **nv = realloc(r->v, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        r->v = nv;
        r->cap = ncap;
        meta_add(pool, malloc_cost(nv) - before);
    }
    r->v[r->n++] = p;
    return 0;
}

/*
 * Grow r, outside its lock, until it has room for want more entries; the
 * new array is touched, so that pushes into it never fault.  For the
 * refill only.
 */
int runs_grow_unlocked(struct zs_pool *pool, pthread_mutex_t *lock, struct runs *r,
                       size_t want)
{
    mutex_lock(lock);
    size_t n = r->n, cap = r->cap;
    mutex_unlock(lock);
    if (cap - n >= want)
        return 0;
    size_t ncap = cap ? cap : 64;
    while (ncap - n < want)
        ncap *= 2;
    char **nv = malloc(ncap * sizeof(*nv));
    if (!nv)
        return -ENOMEM;
    memset(nv, 0, ncap * sizeof(*nv));
    char **old = nv;
    mutex_lock(lock);
    if (r->cap - r->n < want && ncap > r->n) {
        if (r->n)
            memcpy(nv, r->v, r->n * sizeof(*nv));
        old = r->v;
        meta_add(pool, malloc_cost(nv) - malloc_cost(old));
        r->v = nv;
        r->cap = ncap;
    }
    mutex_unlock(lock);
    free(old);
    return 0;
}
