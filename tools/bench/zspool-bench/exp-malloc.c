/* SPDX-License-Identifier: MIT */
/*
 * The experiment through glibc malloc: malloc + memcpy each page, free the
 * same random half as the pool does, then malloc_trim(0).  Figures are the
 * growth of the resident set; what malloc and free cost is timed around
 * those calls alone.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "zspool-bench.h"

struct malloc_run {
    uint64_t alloc_ns, write_ns;
};

static int malloc_store(void *ctx, struct workload *w, uint64_t first, struct err *e)
{
    struct malloc_run *m = ctx;
    const struct batch *b = w->batch;
    struct page_rec *rec = w->recs + first;
    uint64_t t0 = now_ns(), t1;

    for (uint32_t i = 0; i < b->count; i++) {
        void *p = malloc(b->size[i]);

        if (!p)
            return set_err(e, -ENOMEM, "malloc(%" PRIu32 ")", b->size[i]);
        rec[i].ref = (uint64_t)(uintptr_t)p;
    }
    t1 = now_ns();
    for (uint32_t i = 0; i < b->count; i++)
        memcpy((void *)(uintptr_t)rec[i].ref, b->data[i], b->size[i]);
    m->alloc_ns += t1 - t0;
    m->write_ns += now_ns() - t1;
    return 0;
}

static double malloc_free_half(struct workload *w, uint64_t freed)
{
    uint64_t t0 = now_ns();

    for (uint64_t i = 0; i < freed; i++) {
        struct page_rec *rec = &w->recs[w->order[i]];

        free((void *)(uintptr_t)rec->ref);
        rec->ref = 0;
    }
    return freed ? (double)(now_ns() - t0) / (double)freed : 0.0;
}

static void malloc_free_rest(struct workload *w)
{
    for (uint64_t i = 0; i < w->job->pages; i++)
        free((void *)(uintptr_t)w->recs[i].ref);
}

static int malloc_phases(struct workload *w, int64_t base, struct result *r)
{
    struct malloc_run run = { 0 };
    struct malloc_figures *m = &r->m;
    int ret;

    ret = fill(w, malloc_store, &run, &r->t, &r->err);
    if (ret >= 0)
        ret = rss_delta(base, &m->rss_fill, &r->err);
    if (ret < 0)
        return ret;
    m->alloc_ns = (double)run.alloc_ns / (double)r->t.objects;
    m->write_ns = (double)run.write_ns / (double)r->t.objects;
    count_freed(w, &r->t);
    m->free_ns = malloc_free_half(w, r->t.freed);
    ret = rss_delta(base, &m->rss_after_free, &r->err);
    if (ret < 0)
        return ret;
    malloc_trim(0);
    return rss_delta(base, &m->rss_after_trim, &r->err);
}

int malloc_experiment(const struct job *job, struct result *r)
{
    struct workload w;
    int64_t base;
    int ret;

    ret = workload_start(&w, job, &base, &r->err);
    if (ret < 0)
        return ret;
    ret = malloc_phases(&w, base, r);
    malloc_free_rest(&w);
    workload_free(&w);
    return ret;
}
