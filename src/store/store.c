/* SPDX-License-Identifier: MIT */
/*
 * The block store's life cycle, settings and statistics.  The design is
 * doc/store.md; what the files of src/store/ share, and the locking rules,
 * are in store-internal.h.
 *
 * store_new() checks every setting before it makes anything, and undoes
 * all it made on failure (store_free() takes a half-made store).  Settings
 * changed later are single atomics, read by each request as it comes.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "backing.h"
#include "cleanup.h"
#include "store-internal.h"


/* The levels store_new() uses, once cfg is checked. */
struct levels {
    const struct codec_type *codec;
    int level, level2, level3;
    unsigned high_pct, low_pct, bundle_pages;
};

/* A codec's level: 0 asks for its default.  -EINVAL out of its range. */
static int pick_level(const struct codec_type *c, int asked, int *ret)
{
    int lmin, lmax, ldef;
    codec_level_range(c, &lmin, &lmax, &ldef);
    *ret = asked ? asked : ldef;
    return *ret < lmin || *ret > lmax ? -EINVAL : 0;
}

/* Every setting of cfg checked, defaults filled in.  0 or -EINVAL. */
static int config_check(const struct store_config *cfg, struct levels *ret)
{
    ret->codec = cfg->codec ? cfg->codec : codec_find("lz4");
    ret->level2 = 0;
    ret->level3 = 0;
    ret->bundle_pages = cfg->bundle_pages ? cfg->bundle_pages : STORE_BUNDLE_MAX;
    ret->high_pct = cfg->high_wm_pct ? cfg->high_wm_pct : 90;
    ret->low_pct = cfg->low_wm_pct ? cfg->low_wm_pct : 80;
    if (!ret->codec || cfg->size == 0 || cfg->size % PAGE != 0 || cfg->size > STORE_MAX_SIZE ||
        cfg->huge_threshold > PAGE || cfg->compact_threshold_pct > 100)
        return -EINVAL;
    if (pick_level(ret->codec, cfg->level, &ret->level) < 0 ||
        (cfg->recomp_codec && pick_level(cfg->recomp_codec, cfg->recomp_level, &ret->level2) < 0))
        return -EINVAL;
    if (cfg->cold_codec) {
        bool zstd = codec_find("zstd") == cfg->cold_codec;
        int asked = !cfg->cold_level && zstd ? STORE_COLD_LEVEL : cfg->cold_level;
        if (pick_level(cfg->cold_codec, asked, &ret->level3) < 0)
            return -EINVAL;
    }
    if (ret->bundle_pages < 2 || ret->bundle_pages > STORE_BUNDLE_MAX ||
        (cfg->cold_after && !cfg->cold_codec) || cfg->cold_after > STORE_COLD_AFTER_MAX)
        return -EINVAL;
    if (ret->high_pct > 100 || ret->low_pct >= ret->high_pct ||
        (cfg->evict_policy != STORE_EVICT_LRU && cfg->evict_policy != STORE_EVICT_ZSPAGE))
        return -EINVAL;
    return 0;
}

/* The locks and condition variables, all on CLOCK_MONOTONIC. */
static void sync_init(struct store *s)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->tctx_lock, NULL);
    worker_init(&s->compactor, &ca);
    worker_init(&s->evictor, &ca);
    worker_init(&s->refiller, &ca);
    worker_init(&s->watchdog, &ca);
    worker_init(&s->cold, &ca);
    pthread_mutex_init(&s->bundle_lock, NULL);
    pthread_cond_init(&s->refill_cond, &ca);
    pthread_cond_init(&s->evict_done, &ca);
    pthread_condattr_destroy(&ca);
}

static void *map_table(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void unmap_table(void *p, size_t bytes)
{
    if (p)
        munmap(p, bytes);
}

/*
 * The tables: slots, the occupancy bitmap and its summary, access times,
 * and for the zspage policy the reverse map (indexed by zs_handle_index():
 * 16 GiB of address space, touched as used, or populated ahead by
 * handles_grow() with a reserve).  0 or -ENOMEM.
 */
static int tables_map(struct store *s)
{
    s->nwords = (s->nslots + 63) / 64;
    s->nsum = (s->nwords + 63) / 64;
    s->slots_bytes = s->nslots * sizeof(struct slot);
    s->occ_bytes = s->nwords * sizeof(uint64_t);
    s->occ_summary_bytes = s->nsum * sizeof(uint64_t);
    s->atime_bytes = s->nslots * sizeof(uint32_t);
    s->slots = map_table(s->slots_bytes);
    s->occ = map_table(s->occ_bytes);
    s->occ_summary = map_table(s->occ_summary_bytes);
    s->atime = map_table(s->atime_bytes);
    if (s->backing && s->policy == STORE_EVICT_ZSPAGE) {
        s->rmap_bytes = ((size_t)1 << 31) * sizeof(uint64_t);
        s->rmap = map_table(s->rmap_bytes);
        if (!s->rmap)
            return -ENOMEM;
    }
    return s->slots && s->occ && s->occ_summary && s->atime ? 0 : -ENOMEM;
}

/* The pool, the reserve, the thread contexts and the threads.  0 or a negative errno. */
static int store_start(struct store *s, const struct store_config *cfg)
{
    struct zs_ops ops = { .reserve_low = reserve_low, .handles_grow = handles_grow };
    if (s->rmap)
        ops.evict = evict_handle;
    s->pool = zs_create(&ops, s);
    if (!s->pool)
        return -ENOMEM;
    int r;
    if (cfg->reserve && (r = reserve_setup(s, cfg->reserve)) < 0)
        return r;
    s->mem_used_max = mem_used(s);
    r = -pthread_key_create(&s->key, tctx_release);
    if (r < 0)
        return r;
    s->key_made = true;
    if ((r = tctx_prealloc(s, cfg->prealloc_threads)) < 0)
        return r;
    if (cfg->compact_threshold_pct > 0 && (r = worker_start(&s->compactor, compactor_main, s)) < 0)
        return r;
    if (s->backing && (r = worker_start(&s->evictor, evictor_main, s)) < 0)
        return r;
    if (s->reserved && !cfg->reserve_manual && (r = reserve_start(s)) < 0)
        return r;
    if (cfg->cold_after && (r = worker_start(&s->cold, cold_main, s)) < 0)
        return r;
    return 0;
}

struct store *store_new(const struct store_config *cfg)
{
    struct levels lv;
    int r = config_check(cfg, &lv);
    if (r < 0) {
        errno = -r;
        return NULL;
    }
    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->size = cfg->size;
    s->nslots = cfg->size >> PAGE_SHIFT;
    s->codec = lv.codec;
    s->level = lv.level;
    s->huge_threshold = cfg->huge_threshold ? cfg->huge_threshold
                                           : (unsigned)zs_huge_class_size();
    s->codec2 = cfg->recomp_codec;
    s->level2 = lv.level2;
    s->codec3 = cfg->cold_codec;
    s->level3 = lv.level3;
    s->bundle_pages = lv.bundle_pages;
    s->backing = cfg->backing;
    s->backing_raw = cfg->backing_raw;
    s->policy = cfg->evict_policy;
    s->reserve_thread_init = cfg->reserve_thread_init;
    s->low_free = cfg->low_free;
    s->cold_thread_init = cfg->cold_thread_init;
    atomic_init(&s->cold_after, cfg->cold_after);
    clock_gettime(CLOCK_MONOTONIC_COARSE, &s->t0);
    atomic_init(&s->high_pct, lv.high_pct);
    atomic_init(&s->low_pct, lv.low_pct);
    atomic_init(&s->mem_limit, cfg->mem_limit);
    atomic_init(&s->compact_pct, cfg->compact_threshold_pct);
    sync_init(s);
    if ((r = tables_map(s)) < 0 || (r = store_start(s, cfg)) < 0) {
        store_free(s);
        errno = -r;
        return NULL;
    }
    return s;
}

void store_free(struct store *s)
{
    if (!s)
        return;
    worker_stop(&s->cold, NULL);
    worker_stop(&s->evictor, &s->evict_done);
    worker_stop(&s->compactor, NULL);
    worker_stop(&s->watchdog, NULL);
    worker_stop(&s->refiller, &s->refill_cond);
    if (s->key_made)
        pthread_key_delete(s->key);
    tctx_free_all(s);
    zs_destroy(s->pool);
    unmap_table(s->slots, s->slots_bytes);
    unmap_table(s->occ, s->occ_bytes);
    unmap_table(s->occ_summary, s->occ_summary_bytes);
    unmap_table(s->atime, s->atime_bytes);
    unmap_table(s->rmap, s->rmap_bytes);
    pthread_cond_destroy(&s->evict_done);
    worker_destroy(&s->evictor);
    worker_destroy(&s->compactor);
    worker_destroy(&s->refiller);
    worker_destroy(&s->watchdog);
    worker_destroy(&s->cold);
    pthread_mutex_destroy(&s->bundle_lock);
    pthread_cond_destroy(&s->refill_cond);
    pthread_mutex_destroy(&s->tctx_lock);
    free(s);
}

uint64_t store_size(const struct store *s)
{
    return s->size;
}

int store_reserve_refill(struct store *s)
{
    if (!s->reserved)
        return -EINVAL;
    int r = zs_reserve_refill(s->pool);
    if (r < 0)
        counter_add(&s->reserve_failures, 1);
    return r;
}

int store_thread_prepare(struct store *s)
{
    if (!tctx_of_thread(s, true))
        return -ENOMEM;
    /* Its bounce buffer too, where the backing store does direct I/O. */
    return s->backing ? backing_thread_prepare(s->backing) : 0;
}

int64_t store_compact(struct store *s)
{
    return compact_now(s);
}

int store_set_mem_limit(struct store *s, uint64_t bytes)
{
    atomic_store_explicit(&s->mem_limit, bytes, memory_order_relaxed);
    return 0;
}

int store_set_compact_threshold(struct store *s, unsigned pct)
{
    if (pct > 100)
        return -EINVAL;
    if (pct > 0) {
        int r = worker_start(&s->compactor, compactor_main, s);
        if (r < 0)
            return r;
    }
    atomic_store_explicit(&s->compact_pct, pct, memory_order_relaxed);
    compactor_wake(s);
    return 0;
}

int store_set_cold_after(struct store *s, unsigned sec)
{
    if (!s->codec3)
        return -ENOTSUP;
    if (sec > STORE_COLD_AFTER_MAX)
        return -EINVAL;
    if (sec > 0) {
        int r = worker_start(&s->cold, cold_main, s);
        if (r < 0)
            return r;
    }
    atomic_store_explicit(&s->cold_after, sec, memory_order_relaxed);
    mutex_lock(&s->cold.lock);
    pthread_cond_signal(&s->cold.cond);
    mutex_unlock(&s->cold.lock);
    return 0;
}

int store_set_watermarks(struct store *s, unsigned high_pct, unsigned low_pct)
{
    if (low_pct == 0 || low_pct >= high_pct || high_pct > 100)
        return -EINVAL;
    atomic_store(&s->high_pct, high_pct);
    atomic_store(&s->low_pct, low_pct);
    if (s->backing)
        evict_kick(s);
    return 0;
}

void store_reset_mem_used_max(struct store *s)
{
    atomic_store_explicit(&s->mem_used_max, mem_used(s), memory_order_relaxed);
}

uint64_t store_requests_begun(struct store *s)
{
    return counter_get(&s->read_reqs) + counter_get(&s->write_reqs) +
           counter_get(&s->discard_reqs) + counter_get(&s->flush_reqs);
}

void store_get_stats(struct store *s, struct store_stats *ret)
{
    struct zs_pool_stats zst;
    zs_get_stats(s->pool, &zst);
    mem_used_max_update(s, zst.mem_used);
    *ret = (struct store_stats){ 0 };
#define STORE_COPY_COUNTER(name) ret->name = counter_get(&s->name);
#define STORE_COPY_DERIVED(name)
#define STORE_COPY(type, name, source) STORE_COPY_##source(name)
    STORE_STATS(STORE_COPY)
#undef STORE_COPY
#undef STORE_COPY_DERIVED
#undef STORE_COPY_COUNTER
    ret->disksize = s->size;
    ret->orig_data_size = counter_get(&s->pages_stored) << PAGE_SHIFT;
    ret->mem_used_total = zst.mem_used;
    ret->mem_limit = mem_limit(s);
    ret->pages_compacted = zst.pages_compacted;
    ret->compact_threshold_pct = atomic_load_explicit(&s->compact_pct, memory_order_relaxed);
    ret->cold_after = atomic_load_explicit(&s->cold_after, memory_order_relaxed);
    ret->has_backing = s->backing != NULL;
    ret->high_watermark = atomic_load(&s->high_pct);
    ret->low_watermark = atomic_load(&s->low_pct);
    ret->pages_evicted = zst.pages_evicted;
    if (s->reserved) {
        struct zs_reserve_stats rs;
        zs_reserve_get_stats(s->pool, &rs);
        ret->reserve = rs.target;
        ret->reserve_free = rs.available;
        ret->reserve_min = rs.low_water;
        ret->reserve_refills = rs.refills;
    }
    if (ret->mem_limit) {
        ret->wb_high = watermark(ret->mem_limit, &s->high_pct);
        ret->wb_low = watermark(ret->mem_limit, &s->low_pct);
    }
    if (s->backing) {
        struct backing_stats bs;
        backing_get_stats(s->backing, &bs);
        ret->bd_read_errors = bs.read_errors;
        ret->bd_write_errors = bs.write_errors;
        ret->bd_direct = bs.direct;
        ret->bd_pressure = bs.pressure;
        ret->bd_last_error = bs.last_error;
        ret->bd_connected = bs.connected;
        ret->bd_blocks = bs.blocks;
        ret->bd_meta_bytes = bs.meta_bytes;
        ret->bd_bad_sums = bs.bad_seals;
    }
}


