/* SPDX-License-Identifier: MIT */
/*
 * An experiment's working set, and filling a store with the corpus.
 *
 * Everything the experiment needs (page records, the shuffled order, the
 * staging batch, the lz4 context) is allocated and touched before the RSS
 * baseline, so that the growth measured after is the store's own.  Pages
 * are read, compressed and checksummed BATCH at a time, outside the timed
 * loops; the store callback times only its own calls.  The order of the
 * freed half depends on the seed alone.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "zspool-bench.h"

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fisher-Yates over 0..n-1; the same seed gives the same order. */
static void shuffle(uint32_t *v, uint64_t n, uint64_t seed)
{
    for (uint64_t i = 0; i < n; i++)
        v[i] = (uint32_t)i;
    for (uint64_t i = n - 1; i > 0; i--) {
        uint64_t j = (uint64_t)(((unsigned __int128)splitmix64(&seed) * (i + 1)) >> 64);
        uint32_t tmp = v[i];

        v[i] = v[j];
        v[j] = tmp;
    }
}

/*
 * Zeroed memory with every page faulted in, so that it is in the baseline.
 * memset() after malloc() would not do: the compiler turns the pair into
 * calloc(), which leaves fresh mmap()ed pages untouched.
 */
static void *alloc_touched(size_t bytes)
{
    volatile uint8_t *p = calloc(1, bytes);

    for (size_t off = 0; p && off < bytes; off += PAGE_BYTES)
        p[off] = 0;
    return (void *)p;
}

void workload_free(struct workload *w)
{
    free(w->recs);
    free(w->order);
    free(w->batch);
    codec_ctx_free(w->lz4);
}

int workload_init(struct workload *w, const struct job *job, struct err *e)
{
    *w = (struct workload){ .job = job };
    w->recs = alloc_touched(job->pages * sizeof *w->recs);
    w->order = alloc_touched(job->pages * sizeof *w->order);
    w->batch = alloc_touched(sizeof *w->batch);
    w->lz4 = codec_ctx_new(codec_find("lz4"), 1, PAGE_BYTES);
    if (!w->recs || !w->order || !w->batch || !w->lz4) {
        workload_free(w);
        return set_err(e, -ENOMEM, "allocating the page table");
    }
    shuffle(w->order, job->pages, job->seed);
    /* Fault in lz4's code and stack before the baseline. */
    (void)codec_compress(w->lz4, w->page, PAGE_BYTES, w->batch->data[0], SLOT_BYTES);
    return 0;
}

int workload_start(struct workload *w, const struct job *job, int64_t *ret_base, struct err *e)
{
    int r = workload_init(w, job, e);
    if (r < 0)
        return r;
    r = rss_bytes(ret_base);
    if (r < 0) {
        workload_free(w);
        return set_err(e, r, "/proc/self/statm");
    }
    return 0;
}

/* Read, compress and checksum pages [first, first + count) into the batch. */
static int batch_load(struct workload *w, uint64_t first, struct totals *t, struct err *e)
{
    struct batch *b = w->batch;

    for (uint32_t i = 0; i < b->count; i++) {
        uint64_t idx = first + i;
        ssize_t n;
        int r;

        r = pread_full(w->job->fd, w->page, PAGE_BYTES, idx * PAGE_BYTES);
        if (r < 0)
            return set_err(e, r, "reading %s at %" PRIu64, w->job->path, idx * PAGE_BYTES);
        /* zram's rule: what would land in a huge class is kept uncompressed. */
        n = codec_compress(w->lz4, w->page, PAGE_BYTES, b->data[i], zs_huge_class_size() - 1);
        if (n == -E2BIG) {
            memcpy(b->data[i], w->page, PAGE_BYTES);
            n = PAGE_BYTES;
        } else if (n < 0) {
            return set_err(e, (int)n, "compressing page %" PRIu64, idx);
        }
        b->size[i] = (uint32_t)n;
        w->recs[idx].size = (uint32_t)n;
        w->recs[idx].hash = hash32(b->data[i], (size_t)n);
        t->objects++;
        t->compr_bytes += (uint64_t)n;
        t->raw_pages += n == (int)PAGE_BYTES;
    }
    return 0;
}

int fill(struct workload *w, store_fn store, void *ctx, struct totals *t, struct err *e)
{
    for (uint64_t first = 0; first < w->job->pages; first += BATCH) {
        uint64_t left = w->job->pages - first;
        int r;

        w->batch->count = left < BATCH ? (uint32_t)left : BATCH;
        r = batch_load(w, first, t, e);
        if (r < 0)
            return r;
        r = store(ctx, w, first, e);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Sum the sizes of the half about to be freed: live bytes after freeing. */
void count_freed(const struct workload *w, struct totals *t)
{
    uint64_t freed_bytes = 0;

    t->freed = w->job->pages / 2;
    for (uint64_t i = 0; i < t->freed; i++)
        freed_bytes += w->recs[w->order[i]].size;
    t->live_bytes = t->compr_bytes - freed_bytes;
}
