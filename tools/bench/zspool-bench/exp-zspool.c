/* SPDX-License-Identifier: MIT */
/*
 * The experiment on a libzspool pool, lazy or in reserve mode: fill, free
 * a random half, compact, and read every live object back.
 *
 * After each phase the pool's own figures are checked against what the
 * benchmark knows it stored and against the resident set (plus the
 * reserve's available bytes, resident but outside mem_used); a mismatch
 * is a note in the report, never an error.  In reserve mode the benchmark
 * refills before each batch and once after a miss, as uzramd's refill
 * thread would, and that time is kept apart from zs_malloc()'s.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>

#include "zspool-bench.h"

struct zs_run {
    struct zs_pool *pool;
    bool reserve;              /* refill before each batch and after a miss */
    uint64_t alloc_ns, write_ns, refill_ns;
};

/* What uzramd's refill thread does; timed apart from the allocations. */
static int zs_refill(struct zs_run *z, struct err *e)
{
    uint64_t t0 = now_ns();
    int r = zs_reserve_refill(z->pool);

    z->refill_ns += now_ns() - t0;
    return r < 0 ? set_err(e, r, "zs_reserve_refill") : 0;
}

/*
 * In reserve mode a miss (ENOMEM) is what the refill thread is woken for:
 * refill, and try once more.  A second miss means the refill did not bring
 * back what one allocation needs.
 */
static int zs_alloc(struct zs_run *z, uint32_t size, uint64_t *ret, struct err *e)
{
    uint64_t h = zs_malloc(z->pool, size);
    int r;

    if (!h && errno == ENOMEM && z->reserve) {
        r = zs_refill(z, e);
        if (r < 0)
            return r;
        h = zs_malloc(z->pool, size);
        if (!h)
            return set_err(e, neg_errno(), "zs_malloc(%" PRIu32 ") after a refill", size);
    }
    if (!h)
        return set_err(e, neg_errno(), "zs_malloc(%" PRIu32 ")", size);
    *ret = h;
    return 0;
}

static int zs_store(void *ctx, struct workload *w, uint64_t first, struct err *e)
{
    struct zs_run *z = ctx;
    const struct batch *b = w->batch;
    struct page_rec *rec = w->recs + first;
    uint64_t t0, t1, refill_ns;
    int r;

    if (z->reserve) {
        r = zs_refill(z, e);
        if (r < 0)
            return r;
    }
    refill_ns = z->refill_ns;
    t0 = now_ns();
    for (uint32_t i = 0; i < b->count; i++) {
        r = zs_alloc(z, b->size[i], &rec[i].ref, e);
        if (r < 0)
            return r;
    }
    t1 = now_ns();
    for (uint32_t i = 0; i < b->count; i++) {
        r = zs_write(z->pool, rec[i].ref, b->data[i], b->size[i]);
        if (r < 0)
            return set_err(e, r, "zs_write(%" PRIu32 " bytes)", b->size[i]);
    }
    /* Refills after a miss are the refill thread's time, not zs_malloc()'s. */
    z->alloc_ns += t1 - t0 - (z->refill_ns - refill_ns);
    z->write_ns += now_ns() - t1;
    return 0;
}

static double zs_free_half(struct zs_pool *pool, struct workload *w, uint64_t freed)
{
    uint64_t t0 = now_ns();

    for (uint64_t i = 0; i < freed; i++) {
        struct page_rec *rec = &w->recs[w->order[i]];

        zs_free(pool, rec->ref);
        rec->ref = 0;
    }
    return freed ? (double)(now_ns() - t0) / (double)freed : 0.0;
}

/* Sum the per-class figures and compare them with the pool's totals. */
static void check_classes(struct zs_pool *pool, const struct zs_pool_stats *st,
                          const char *when, struct result *r)
{
    uint64_t pages = 0, objects = 0, bytes = 0, zspages = 0;
    struct zs_class_stats cs;

    for (unsigned i = 0; i < zs_class_count(); i++) {
        if (zs_get_class_stats(pool, i, &cs) < 0) {
            note(r, "%s: zs_get_class_stats(%u) failed", when, i);
            return;
        }
        pages += cs.pages;
        objects += cs.objects;
        bytes += cs.bytes_stored;
        zspages += cs.zspages;
    }
    if (pages != st->pages || objects != st->objects ||
        bytes != st->bytes_stored || zspages != st->zspages)
        note(r, "%s: classes sum to %" PRIu64 " pages, %" PRIu64 " objects, %" PRIu64
             " bytes, %" PRIu64 " zspages; pool says %" PRIu64 ", %" PRIu64 ", %" PRIu64
             ", %" PRIu64, when, pages, objects, bytes, zspages,
             st->pages, st->objects, st->bytes_stored, st->zspages);
}

/* The reserve's populated, unused bytes now; 0 for a lazy pool. */
static uint64_t reserve_available(struct zs_pool *pool)
{
    struct zs_reserve_stats rs;

    zs_reserve_get_stats(pool, &rs);
    return rs.available;
}

/*
 * Check the pool's figures against what the benchmark knows it stored.
 * reserve is the reserve's available bytes, measured with rss: resident, but
 * outside mem_used, so the process should hold the sum of the two.
 */
static void check_stats(struct zs_pool *pool, const struct zs_pool_stats *st, int64_t rss,
                        uint64_t reserve, uint64_t objects, uint64_t bytes, const char *when,
                        struct result *r)
{
    uint64_t held = st->pages * PAGE_BYTES + st->metadata_bytes;
    int64_t resident = (int64_t)(st->mem_used + reserve);
    /*
     * RSS may differ from that by the stack and glibc's own state (well
     * under 1 MiB), and no more than 0.4%: the targets are that close.
     */
    int64_t slack = resident / 256 > (1 << 20) ? resident / 256 : (1 << 20);
    bool off = rss - resident > slack || resident - rss > slack;

    if (st->objects != objects || st->bytes_stored != bytes)
        note(r, "%s: pool holds %" PRIu64 " objects of %" PRIu64 " bytes; expected %" PRIu64
             " of %" PRIu64, when, st->objects, st->bytes_stored, objects, bytes);
    if (st->mem_used != held)
        note(r, "%s: mem_used %" PRIu64 " != pages*4096 + metadata_bytes = %" PRIu64,
             when, st->mem_used, held);
    if (off && reserve)
        note(r, "%s: RSS grew by %.1f MiB but mem_used is %.1f MiB and the reserve %.1f MiB",
             when, (double)rss / MIB, (double)st->mem_used / MIB, (double)reserve / MIB);
    else if (off)
        note(r, "%s: RSS grew by %.1f MiB but mem_used is %.1f MiB", when,
             (double)rss / MIB, (double)st->mem_used / MIB);
    if (st->bad_handles)
        note(r, "%s: %" PRIu64 " bad handles", when, st->bad_handles);
    check_classes(pool, st, when, r);
}

/* Read every live object back: compaction must have moved them intact. */
static uint64_t zs_verify(struct zs_pool *pool, struct workload *w)
{
    uint64_t bad = 0;

    for (uint64_t i = 0; i < w->job->pages; i++) {
        const struct page_rec *rec = &w->recs[i];
        int n;

        if (!rec->ref)
            continue;
        n = zs_read(pool, rec->ref, w->page);
        bad += n != (int)rec->size || hash32(w->page, rec->size) != rec->hash;
    }
    return bad;
}

static int zs_fill_phase(struct zs_pool *pool, struct workload *w, int64_t base, struct result *r)
{
    struct zs_run run = { .pool = pool, .reserve = r->rsv.target != 0 };
    struct zs_figures *z = &r->zs;
    struct zs_pool_stats st;
    int ret;

    ret = fill(w, zs_store, &run, &r->t, &r->err);
    r->rsv.refill_seconds = (double)run.refill_ns / 1e9;
    if (ret >= 0)
        ret = rss_delta(base, &z->rss_fill, &r->err);
    if (ret < 0)
        return ret;
    z->alloc_ns = (double)run.alloc_ns / (double)r->t.objects;
    z->write_ns = (double)run.write_ns / (double)r->t.objects;
    zs_get_stats(pool, &st);
    r->rsv.avail_fill = reserve_available(pool);
    z->mem_used_fill = st.mem_used;
    z->metadata_fill = st.metadata_bytes;
    z->pages_fill = st.pages;
    check_stats(pool, &st, z->rss_fill, r->rsv.avail_fill, r->t.objects, r->t.compr_bytes,
                "after fill", r);
    return 0;
}

static int zs_free_phase(struct zs_pool *pool, struct workload *w, int64_t base, struct result *r)
{
    struct zs_figures *z = &r->zs;
    struct zs_pool_stats st;
    int ret;

    count_freed(w, &r->t);
    z->free_ns = zs_free_half(pool, w, r->t.freed);
    ret = rss_delta(base, &z->rss_before_compact, &r->err);
    if (ret < 0)
        return ret;
    zs_get_stats(pool, &st);
    r->rsv.avail_before_compact = reserve_available(pool);
    z->mem_used_before_compact = st.mem_used;
    z->pages_before_compact = st.pages;
    check_stats(pool, &st, z->rss_before_compact, r->rsv.avail_before_compact,
                r->t.objects - r->t.freed, r->t.live_bytes, "after freeing half", r);
    return 0;
}

/* zs_compact()'s count against the pool's statistics around it. */
static void check_compaction(const struct zs_pool_stats *before,
                             const struct zs_pool_stats *after, struct result *r)
{
    int64_t ret = r->zs.pages_compacted;

    if (after->pages_compacted - before->pages_compacted != (uint64_t)ret)
        note(r, "zs_compact returned %" PRId64 " but stats.pages_compacted grew by %" PRIu64,
             ret, after->pages_compacted - before->pages_compacted);
    /* Moving objects may touch fresh pages of the targets: gross or net? */
    if (r->zs.pages_net != ret)
        note(r, "zs_compact returned %" PRId64 " but stats.pages fell by %" PRId64,
             ret, r->zs.pages_net);
}

static int zs_compact_phase(struct zs_pool *pool, struct workload *w, int64_t base, struct result *r)
{
    struct zs_figures *z = &r->zs;
    struct zs_pool_stats before, st;
    struct zs_reserve_stats rs;
    uint64_t t0;
    int ret;

    zs_get_stats(pool, &before);
    t0 = now_ns();
    z->pages_compacted = zs_compact(pool);
    z->compact_seconds = (double)(now_ns() - t0) / 1e9;
    if (z->pages_compacted < 0)
        return set_err(&r->err, (int)z->pages_compacted, "zs_compact");
    ret = rss_delta(base, &z->rss_after_compact, &r->err);
    if (ret < 0)
        return ret;
    zs_get_stats(pool, &st);
    zs_reserve_get_stats(pool, &rs);
    r->rsv.avail_after_compact = rs.available;
    r->rsv.misses = rs.misses;
    r->rsv.refills = rs.refills;
    z->mem_used_after_compact = st.mem_used;
    z->metadata_after_compact = st.metadata_bytes;
    z->pages_after_compact = st.pages;
    z->stats_pages_compacted = st.pages_compacted;
    z->pages_net = (int64_t)(before.pages - st.pages);
    check_compaction(&before, &st, r);
    check_stats(pool, &st, z->rss_after_compact, rs.available, r->t.objects - r->t.freed,
                r->t.live_bytes, "after compaction", r);
    z->verify_errors = zs_verify(pool, w);
    if (z->verify_errors)
        note(r, "%" PRIu64 " objects read back wrong after compaction", z->verify_errors);
    return 0;
}

static int zs_phases(struct zs_pool *pool, struct workload *w, int64_t base, struct result *r)
{
    int ret = zs_fill_phase(pool, w, base, r);

    if (ret >= 0)
        ret = zs_free_phase(pool, w, base, r);
    if (ret >= 0)
        ret = zs_compact_phase(pool, w, base, r);
    return ret;
}

/* Put the pool in reserve mode with target bytes, and populate it; 0: stay lazy. */
static int zs_reserve_start(struct zs_pool *pool, uint64_t target, struct result *r)
{
    int ret;

    if (!target)
        return 0;
    ret = zs_reserve_set(pool, target);
    if (ret < 0)
        return set_err(&r->err, ret, "zs_reserve_set(%" PRIu64 ")", target);
    ret = zs_reserve_refill(pool);
    if (ret < 0)
        return set_err(&r->err, ret, "zs_reserve_refill");
    r->rsv.target = target;
    return 0;
}

/* The experiment on one pool: lazy, or in reserve mode with reserve bytes. */
static int zspool_run(const struct job *job, uint64_t reserve, struct result *r)
{
    struct zs_pool *pool = NULL;
    struct workload w;
    int64_t base;
    int ret;

    ret = workload_start(&w, job, &base, &r->err);
    if (ret < 0)
        return ret;
    if (!(pool = zs_create(NULL, NULL)))
        ret = set_err(&r->err, neg_errno(), "zs_create");
    else if ((ret = zs_reserve_start(pool, reserve, r)) >= 0)
        ret = zs_phases(pool, &w, base, r);
    zs_destroy(pool);
    /* What glibc keeps of the freed descriptors is not the pool's leak. */
    malloc_trim(0);
    if (ret >= 0)
        ret = rss_delta(base, &r->zs.rss_after_destroy, &r->err);
    workload_free(&w);
    return ret;
}

int zspool_experiment(const struct job *job, struct result *r)
{
    return zspool_run(job, 0, r);
}

int zspool_reserve_experiment(const struct job *job, struct result *r)
{
    return zspool_run(job, job->reserve, r);
}
