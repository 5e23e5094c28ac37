/* SPDX-License-Identifier: MIT */
/*
 * zspool-bench: the experiment of the kernel commit "zsmalloc: support
 * compaction" (2015), run on libzspool alone.
 *
 * That commit filled zram with real files, deleted half of them (trim), and
 * reported the pool's used ratio (compressed bytes stored / memory held)
 * rising from 42.98% to 79.03% once the pool was compacted.  Run the same way
 * on this machine (lz4, 1 GiB of real files, half trimmed), the kernel's zram
 * goes from 47.6% to 95.3%, after filling at 97.7%.
 *
 * Here the "files" are a corpus (by default the first 256 MiB of a tar of
 * /usr/lib/x86_64-linux-gnu and /usr/share/doc, generated once and cached)
 * cut into 4 KiB pages.  Each page is compressed with lz4 and stored in a pool
 * as zram stores it: raw (4096 bytes) when lz4's output would land in a
 * huge class (one object per page), where compressing saves nothing.  Then a random half of the objects (fixed seed) is freed, the
 * pool is measured, compacted, and measured again.  The corpus is read one
 * page at a time, never held in memory, so that the growth of the process's
 * resident set is the pool's own: it is printed beside the pool's mem_used as
 * a check that the pool's accounting is honest.  The pool's mem_used counts
 * its metadata too; the kernel's mem_used_total counts zspage pages only, so
 * the ratios over pages alone are printed as well, for comparison.
 *
 * For contrast the same pages go through glibc malloc (malloc + memcpy, free
 * the same half, then malloc_trim), the fragmentation a naive store suffers.
 *
 * The libzspool experiment runs a second time on a pool in reserve mode
 * (zs_reserve_set(), --reserve; uzramd runs its pools so): a new zspage takes
 * all its pages at once from memory populated ahead, and compaction no
 * longer gives back the unused pages inside the zspages it could only partly
 * empty, so the pool holds more for the same objects (and the table room
 * populated ahead adds to its metadata).  The benchmark refills
 * the reserve itself, before each batch and after a miss (then retries the
 * allocation once), as uzramd's refill thread would keep up.  The reserve is
 * resident but outside mem_used: the RSS check adds what it has available.
 *
 * Each experiment runs in a fork()ed child that takes its own RSS baseline
 * and reports back through a pipe, so none pollutes another's figures.
 * Allocation and free costs are timed around the allocator calls alone:
 * pages are compressed BATCH at a time, then allocated in one timed loop.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "codec.h"
#include "zspool.h"
#include "util.h"

#define PAGE_BYTES 4096u
/* A slot of the staging buffer: one page, compressed or raw. */
#define SLOT_BYTES PAGE_BYTES
/*
 * Pages compressed ahead of one timed run of allocations: enough that the
 * clock's own cost (tens of ns) vanishes in the mean, few enough that the
 * staging buffer (1 MiB) stays in cache.
 */
#define BATCH 256u
#define MIB (1024.0 * 1024.0)

#define DEFAULT_CORPUS "/var/tmp/uzram-corpus-256M.tar"
#define DEFAULT_CORPUS_BYTES (UINT64_C(256) << 20)
#define CORPUS_SOURCES "/usr/lib/x86_64-linux-gnu /usr/share/doc"

/* uzramd's reserve for a device without --mem-limit. */
#define DEFAULT_RESERVE (UINT64_C(8) << 20)
/* A smaller reserve never holds the longest zspage: its class always misses. */
#define MIN_RESERVE ((uint64_t)ZS_MAX_PAGES_PER_ZSPAGE * PAGE_BYTES)

#define TARGET_FILL 0.985
#define TARGET_AFTER_COMPACT 0.97
/* Kernel figures, for comparison (see the comment at the top). */
#define KERNEL_COMMIT_BEFORE 0.4298
#define KERNEL_COMMIT_AFTER 0.7903
#define KERNEL_ZRAM_FILL 0.977
#define KERNEL_ZRAM_BEFORE 0.476
#define KERNEL_ZRAM_AFTER 0.953

/* An error, formatted where it happens and reported once, by main(). */
struct err {
    int code;                  /* negative errno */
    char msg[256];
};

struct opts {
    const char *corpus;        /* NULL: the default, cached corpus */
    uint64_t size;
    bool size_given;
    uint64_t seed;
    uint64_t reserve;          /* 0: no reserve-mode experiment */
    bool json;
};

/* What the experiments share, set up by the parent. */
struct job {
    char path[4096];
    int fd;
    uint64_t pages;
    uint64_t seed;
    uint64_t reserve;          /* the reserve-mode pool's target, bytes */
};

struct totals {
    uint64_t objects;          /* pages stored */
    uint64_t compr_bytes;      /* sum of their stored sizes */
    uint64_t raw_pages;        /* stored uncompressed: lz4 output in a huge class */
    uint64_t freed;            /* objects freed at random */
    uint64_t live_bytes;       /* sum of the sizes of the others */
};

struct zs_figures {
    uint64_t mem_used_fill, mem_used_before_compact, mem_used_after_compact;
    uint64_t metadata_fill, metadata_after_compact;
    uint64_t pages_fill, pages_before_compact, pages_after_compact;
    int64_t rss_fill, rss_before_compact, rss_after_compact, rss_after_destroy;
    int64_t pages_compacted;
    uint64_t stats_pages_compacted;
    int64_t pages_net;         /* fall of stats.pages across zs_compact() */
    double compact_seconds, alloc_ns, write_ns, free_ns;
    uint64_t verify_errors;
};

/* A pool in reserve mode: its reserve, resident beside mem_used. */
struct rsv_figures {
    uint64_t target;           /* 0: a lazy pool */
    uint64_t avail_fill, avail_before_compact, avail_after_compact;
    uint64_t misses, refills;  /* zs_reserve_stats at the end */
    double refill_seconds;     /* in zs_reserve_refill() while filling */
};

struct malloc_figures {
    int64_t rss_fill, rss_after_free, rss_after_trim;
    double alloc_ns, write_ns, free_ns;
};

/* What a child sends back through its pipe. */
struct result {
    struct err err;
    struct totals t;
    struct zs_figures zs;
    struct rsv_figures rsv;
    struct malloc_figures m;
    char notes[2048];          /* consistency problems, one per line */
};

/* A stored page: its zspool handle or malloc pointer, size and checksum. */
struct page_rec {
    uint64_t ref;
    uint32_t size;
    uint32_t hash;
};

struct batch {
    uint32_t count;
    uint32_t size[BATCH];
    uint8_t data[BATCH][SLOT_BYTES];
};

/* An experiment's working set, all of it touched before the RSS baseline. */
struct workload {
    const struct job *job;
    struct page_rec *recs;
    uint32_t *order;           /* shuffled indices: the first half is freed */
    struct batch *batch;
    struct codec_ctx *lz4;     /* the codec layer's lz4, as the store uses it */
    uint8_t page[PAGE_BYTES];
};

__attribute__((format(printf, 4, 0)))
static int vset_err(struct err *e, int code, bool with_strerror, const char *fmt, va_list ap)
{
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);

    if (with_strerror && n >= 0 && (size_t)n < sizeof e->msg)
        snprintf(e->msg + n, sizeof e->msg - (size_t)n, ": %s", strerror(-code));
    e->code = code;
    return code;
}

/* Record "message: strerror(-code)" and return code, a negative errno. */
__attribute__((format(printf, 3, 4)))
static int set_err(struct err *e, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    code = vset_err(e, code, true, fmt, ap);
    va_end(ap);
    return code;
}

/* The same for a message that says it all. */
__attribute__((format(printf, 3, 4)))
static int set_err_msg(struct err *e, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    code = vset_err(e, code, false, fmt, ap);
    va_end(ap);
    return code;
}

__attribute__((format(printf, 2, 3)))
static void note(struct result *r, const char *fmt, ...)
{
    size_t len = strlen(r->notes);
    va_list ap;

    if (len + 2 >= sizeof r->notes)
        return;
    va_start(ap, fmt);
    vsnprintf(r->notes + len, sizeof r->notes - len - 1, fmt, ap);
    va_end(ap);
    strcat(r->notes, "\n");
}

static int neg_errno(void)
{
    return errno > 0 ? -errno : -EIO;
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double ratio(uint64_t num, int64_t den)
{
    return den > 0 ? (double)num / (double)den : 0.0;
}

/*
 * Anonymous resident memory from /proc/self/statm: resident pages less the
 * file-backed and shared ones, so that code paged in along the way (libc,
 * libzspool) does not count; the pool's memory is private and anonymous.
 * Read with open/read rather than stdio, which would malloc.
 */
static int rss_bytes(int64_t *ret)
{
    _cleanup_close_ int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    unsigned long long size, resident, shared;
    char buf[128];
    ssize_t n;

    if (fd < 0)
        return neg_errno();
    n = read(fd, buf, sizeof buf - 1);
    if (n <= 0)
        return n < 0 ? neg_errno() : -EIO;
    buf[n] = '\0';
    if (sscanf(buf, "%llu %llu %llu", &size, &resident, &shared) != 3)
        return -EIO;
    *ret = (int64_t)(resident - shared) * sysconf(_SC_PAGESIZE);
    return 0;
}

static int rss_delta(int64_t base, int64_t *ret, struct err *e)
{
    int64_t now;
    int r = rss_bytes(&now);

    if (r < 0)
        return set_err(e, r, "/proc/self/statm");
    *ret = now - base;
    return 0;
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return neg_errno();
        if (n == 0)
            return -ENODATA;   /* the corpus shrank under us */
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return neg_errno();
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Returns the bytes read, short only at end of file. */
static ssize_t read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t done = 0;

    while (done < len) {
        ssize_t n = read(fd, p + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return neg_errno();
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* A checksum to verify objects after compaction moved them. */
static uint32_t hash32(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return (uint32_t)(h ^ (h >> 32));
}

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

static void workload_free(struct workload *w)
{
    free(w->recs);
    free(w->order);
    free(w->batch);
    codec_ctx_free(w->lz4);
}

static int workload_init(struct workload *w, const struct job *job, struct err *e)
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

/* Stores the loaded batch; first is the index of its first page in the corpus. */
typedef int (*store_fn)(void *ctx, struct workload *w, uint64_t first, struct err *e);

static int fill(struct workload *w, store_fn store, void *ctx, struct totals *t, struct err *e)
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
static void count_freed(const struct workload *w, struct totals *t)
{
    uint64_t freed_bytes = 0;

    t->freed = w->job->pages / 2;
    for (uint64_t i = 0; i < t->freed; i++)
        freed_bytes += w->recs[w->order[i]].size;
    t->live_bytes = t->compr_bytes - freed_bytes;
}

/* ---- glibc malloc ---- */

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

static int malloc_experiment(const struct job *job, struct result *r)
{
    struct workload w;
    int64_t base;
    int ret;

    ret = workload_init(&w, job, &r->err);
    if (ret < 0)
        return ret;
    ret = rss_bytes(&base);
    if (ret < 0)
        ret = set_err(&r->err, ret, "/proc/self/statm");
    else
        ret = malloc_phases(&w, base, r);
    malloc_free_rest(&w);
    workload_free(&w);
    return ret;
}

/* ---- libzspool ---- */

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

    ret = workload_init(&w, job, &r->err);
    if (ret < 0)
        return ret;
    ret = rss_bytes(&base);
    if (ret < 0)
        ret = set_err(&r->err, ret, "/proc/self/statm");
    else if (!(pool = zs_create(NULL, NULL)))
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

static int zspool_experiment(const struct job *job, struct result *r)
{
    return zspool_run(job, 0, r);
}

static int zspool_reserve_experiment(const struct job *job, struct result *r)
{
    return zspool_run(job, job->reserve, r);
}

/* ---- running an experiment in a child ---- */

typedef int (*experiment_fn)(const struct job *job, struct result *r);

static void child_main(experiment_fn fn, const struct job *job, int fd)
{
    static struct result r;

    r.err.code = fn(job, &r);
    _exit(write_full(fd, &r, sizeof r) < 0 ? 1 : 0);
}

/* Wait for a child; what names it in the error ("the zspool experiment"). */
static int child_status(pid_t pid, const char *what, struct err *e)
{
    int status;

    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return set_err(e, neg_errno(), "waitpid");
    if (WIFSIGNALED(status))
        return set_err_msg(e, -ECHILD, "%s was killed by signal %d (%s)",
                       what, WTERMSIG(status), strsignal(WTERMSIG(status)));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return set_err_msg(e, -ECHILD, "%s exited with status %d", what, WEXITSTATUS(status));
    return 0;
}

static int run_child(experiment_fn fn, const char *what, const struct job *job,
                     struct result *ret, struct err *e)
{
    int fds[2], r;
    ssize_t n;
    pid_t pid;

    if (pipe2(fds, O_CLOEXEC) < 0)
        return set_err(e, neg_errno(), "pipe");
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        r = neg_errno();
        close(fds[0]);
        close(fds[1]);
        return set_err(e, r, "fork");
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(fn, job, fds[1]);
    }
    close(fds[1]);
    n = read_full(fds[0], ret, sizeof *ret);
    close(fds[0]);
    r = child_status(pid, what, e);
    if (r < 0)
        return r;
    if (n != (ssize_t)sizeof *ret)
        return set_err(e, n < 0 ? (int)n : -EPIPE, "reading the report of %s", what);
    if (ret->err.code < 0) {
        *e = ret->err;
        return e->code;
    }
    return 0;
}

/* ---- the corpus ---- */

static int generate_corpus(const char *path, struct err *e)
{
    static const char script[] =
        "tar -cf - " CORPUS_SOURCES " 2>/dev/null | head -c \"$1\" > \"$2\" && mv \"$2\" \"$3\"";
    char bytes[32], tmp[4200];
    pid_t pid;
    int r;

    fprintf(stderr, "zspool-bench: generating the corpus %s (the first %" PRIu64
            " MiB of a tar of " CORPUS_SOURCES "); it is cached for later runs\n",
            path, DEFAULT_CORPUS_BYTES >> 20);
    snprintf(bytes, sizeof bytes, "%" PRIu64, DEFAULT_CORPUS_BYTES);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    fflush(stderr);
    pid = fork();
    if (pid < 0)
        return set_err(e, neg_errno(), "fork");
    if (pid == 0) {
        /* stdout is the JSON's: the script must not write there. */
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execl("/bin/sh", "sh", "-c", script, "sh", bytes, tmp, path, (char *)NULL);
        _exit(127);
    }
    r = child_status(pid, "generating the corpus", e);
    if (r < 0)
        unlink(tmp);
    return r;
}

/* The default corpus, generated unless a cached copy of the right size exists. */
static int default_corpus(struct job *job, struct err *e)
{
    const char *path = getenv("UZRAM_CORPUS");
    struct stat st;

    if (!path || !*path)
        path = DEFAULT_CORPUS;
    if (strlen(path) >= sizeof job->path)
        return set_err(e, -ENAMETOOLONG, "UZRAM_CORPUS");
    strcpy(job->path, path);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size == DEFAULT_CORPUS_BYTES)
        return 0;
    return generate_corpus(path, e);
}

static int corpus_path(const struct opts *o, struct job *job, struct err *e)
{
    if (!o->corpus)
        return default_corpus(job, e);
    if (strlen(o->corpus) >= sizeof job->path)
        return set_err(e, -ENAMETOOLONG, "%s", o->corpus);
    strcpy(job->path, o->corpus);
    return 0;
}

static int open_corpus(const struct opts *o, struct job *job, struct err *e)
{
    struct stat st;
    uint64_t bytes;
    int r;

    r = corpus_path(o, job, e);
    if (r < 0)
        return r;
    job->fd = open(job->path, O_RDONLY | O_CLOEXEC);
    if (job->fd < 0 || fstat(job->fd, &st) < 0)
        return set_err(e, neg_errno(), "%s", job->path);
    if (!S_ISREG(st.st_mode))
        return set_err_msg(e, -EINVAL, "%s: not a regular file", job->path);
    bytes = (uint64_t)st.st_size;
    if (!o->corpus && bytes < DEFAULT_CORPUS_BYTES)
        fprintf(stderr, "zspool-bench: warning: the corpus %s holds only %" PRIu64
                " bytes; it will be generated again next time\n", job->path, bytes);
    if (o->size_given && o->size > bytes)
        fprintf(stderr, "zspool-bench: %s holds only %" PRIu64 " bytes; using all of it\n",
                job->path, bytes);
    bytes = o->size < bytes ? o->size : bytes;
    job->pages = bytes / PAGE_BYTES;
    if (job->pages == 0)
        return set_err_msg(e, -EINVAL, "%s: less than one 4 KiB page to use", job->path);
    if (job->pages > UINT32_MAX)
        return set_err_msg(e, -EFBIG, "%s: more than 2^32 pages", job->path);
    return 0;
}

/* ---- output ---- */

static bool targets_met(const struct result *z)
{
    return ratio(z->t.compr_bytes, (int64_t)z->zs.mem_used_fill) >= TARGET_FILL &&
           ratio(z->t.live_bytes, (int64_t)z->zs.mem_used_after_compact) >= TARGET_AFTER_COMPACT;
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* The "consistency_notes" array, without a comma after it. */
static void json_notes_list(const char *notes)
{
    const char *nl;
    bool first = true;

    printf("\"consistency_notes\":[");
    for (; (nl = strchr(notes, '\n')); notes = nl + 1, first = false) {
        char line[512];

        snprintf(line, sizeof line, "%.*s", (int)(nl - notes), notes);
        printf("%s", first ? "" : ",");
        json_string(line);
    }
    printf("]");
}

static void json_notes(const char *notes)
{
    json_notes_list(notes);
    printf(",");
}

/* A pool's figures, each followed by a comma. */
static void json_zs_figures(const struct result *z)
{
    const struct totals *t = &z->t;
    const struct zs_figures *f = &z->zs;

    printf("\"fill_ratio\":%.4f,\"ratio_before_compact\":%.4f,\"ratio_after_compact\":%.4f,",
           ratio(t->compr_bytes, (int64_t)f->mem_used_fill),
           ratio(t->live_bytes, (int64_t)f->mem_used_before_compact),
           ratio(t->live_bytes, (int64_t)f->mem_used_after_compact));
    /* As the kernel's zram counts mem_used_total: zspage pages, no metadata. */
    printf("\"fill_ratio_pages\":%.4f,\"ratio_before_compact_pages\":%.4f,"
           "\"ratio_after_compact_pages\":%.4f,",
           ratio(t->compr_bytes, (int64_t)(f->pages_fill * PAGE_BYTES)),
           ratio(t->live_bytes, (int64_t)(f->pages_before_compact * PAGE_BYTES)),
           ratio(t->live_bytes, (int64_t)(f->pages_after_compact * PAGE_BYTES)));
    printf("\"pages_compacted\":%" PRId64 ",\"stats_pages_compacted\":%" PRIu64
           ",\"pages_net\":%" PRId64 ",\"compact_seconds\":%.4f,\"alloc_ns\":%.1f,"
           "\"write_ns\":%.1f,\"free_ns\":%.1f,",
           f->pages_compacted, f->stats_pages_compacted, f->pages_net, f->compact_seconds,
           f->alloc_ns, f->write_ns, f->free_ns);
    printf("\"mem_used_fill\":%" PRIu64 ",\"mem_used_before_compact\":%" PRIu64
           ",\"mem_used_after_compact\":%" PRIu64 ",\"metadata_bytes\":%" PRIu64
           ",\"metadata_bytes_after_compact\":%" PRIu64 ",",
           f->mem_used_fill, f->mem_used_before_compact, f->mem_used_after_compact,
           f->metadata_fill, f->metadata_after_compact);
    printf("\"rss_fill\":%" PRId64 ",\"rss_before_compact\":%" PRId64 ",\"rss_after_compact\":%"
           PRId64 ",\"rss_after_destroy\":%" PRId64 ",\"verify_errors\":%" PRIu64 ",",
           f->rss_fill, f->rss_before_compact, f->rss_after_compact, f->rss_after_destroy,
           f->verify_errors);
}

static void json_zspool(const struct result *z)
{
    const struct totals *t = &z->t;

    printf("\"objects\":%" PRIu64 ",\"compr_bytes\":%" PRIu64 ",\"raw_pages\":%" PRIu64
           ",\"freed_objects\":%" PRIu64 ",\"live_bytes\":%" PRIu64 ",",
           t->objects, t->compr_bytes, t->raw_pages, t->freed, t->live_bytes);
    json_zs_figures(z);
}

/* "reserve": the pool in reserve mode, under the lazy pool's names; null if not run. */
static void json_reserve(const struct result *v)
{
    const struct rsv_figures *f = &v->rsv;

    printf("\"reserve\":");
    if (!f->target) {
        printf("null,");
        return;
    }
    printf("{");
    json_zs_figures(v);
    printf("\"reserve_target\":%" PRIu64 ",\"reserve_available_fill\":%" PRIu64
           ",\"reserve_available_before_compact\":%" PRIu64
           ",\"reserve_available_after_compact\":%" PRIu64 ",\"reserve_misses\":%" PRIu64
           ",\"reserve_refills\":%" PRIu64 ",\"refill_seconds\":%.4f,",
           f->target, f->avail_fill, f->avail_before_compact, f->avail_after_compact,
           f->misses, f->refills, f->refill_seconds);
    json_notes_list(v->notes);
    printf("},");
}

static void json_malloc(const struct result *m, const struct totals *t)
{
    const struct malloc_figures *f = &m->m;

    printf("\"malloc_fill_ratio\":%.4f,\"malloc_ratio_after_free\":%.4f,"
           "\"malloc_ratio_after_trim\":%.4f,",
           ratio(t->compr_bytes, f->rss_fill), ratio(t->live_bytes, f->rss_after_free),
           ratio(t->live_bytes, f->rss_after_trim));
    printf("\"malloc_rss_fill\":%" PRId64 ",\"malloc_rss_after_free\":%" PRId64
           ",\"malloc_rss_after_trim\":%" PRId64 ",\"malloc_alloc_ns\":%.1f,"
           "\"malloc_write_ns\":%.1f,\"malloc_free_ns\":%.1f,",
           f->rss_fill, f->rss_after_free, f->rss_after_trim, f->alloc_ns, f->write_ns,
           f->free_ns);
}

static void print_json(const struct job *job, const struct result *z, const struct result *v,
                       const struct result *m)
{
    bool fill_ok = ratio(z->t.compr_bytes, (int64_t)z->zs.mem_used_fill) >= TARGET_FILL;
    bool compact_ok = ratio(z->t.live_bytes, (int64_t)z->zs.mem_used_after_compact) >=
                      TARGET_AFTER_COMPACT;

    printf("{\"corpus\":");
    json_string(job->path);
    printf(",\"corpus_bytes\":%" PRIu64 ",\"pages\":%" PRIu64 ",\"seed\":%" PRIu64 ",",
           job->pages * PAGE_BYTES, job->pages, job->seed);
    json_zspool(z);
    json_malloc(m, &z->t);
    json_reserve(v);
    json_notes(z->notes);
    printf("\"targets\":{\"fill_ratio\":%.3f,\"ratio_after_compact\":%.3f},"
           "\"fill_ratio_met\":%s,\"ratio_after_compact_met\":%s,\"targets_met\":%s,",
           TARGET_FILL, TARGET_AFTER_COMPACT, fill_ok ? "true" : "false",
           compact_ok ? "true" : "false", targets_met(z) ? "true" : "false");
    printf("\"kernel\":{\"compaction_commit_before\":%.4f,\"compaction_commit_after\":%.4f,"
           "\"zram_fill_ratio\":%.3f,\"zram_ratio_before_compact\":%.3f,"
           "\"zram_ratio_after_compact\":%.3f}}\n",
           KERNEL_COMMIT_BEFORE, KERNEL_COMMIT_AFTER, KERNEL_ZRAM_FILL,
           KERNEL_ZRAM_BEFORE, KERNEL_ZRAM_AFTER);
}

/* A row without its end of line; reserve: the reserve column, or < 0 for none. */
static void human_cells(const char *what, uint64_t mem_used, int64_t rss, uint64_t bytes,
                        int64_t reserve)
{
    char mem[32] = "";

    if (mem_used)
        snprintf(mem, sizeof mem, "%9.1f MiB", (double)mem_used / MIB);
    printf("  %-22s %13s %9.1f MiB %9.1f%%", what, mem, (double)rss / MIB,
           100.0 * ratio(bytes, mem_used ? (int64_t)mem_used : rss));
    if (reserve >= 0)
        printf(" %9.1f MiB", (double)reserve / MIB);
}

static void human_row(const char *what, uint64_t mem_used, int64_t rss, uint64_t bytes)
{
    human_cells(what, mem_used, rss, bytes, -1);
    putchar('\n');
}

/* The three phases of a pool: lazy, or with the reserve's column. */
static void human_phases(const struct result *z)
{
    const struct totals *t = &z->t;
    const struct zs_figures *f = &z->zs;
    const struct rsv_figures *v = &z->rsv;
    bool rsv = v->target != 0;

    if (rsv)
        printf("\nlibzspool, reserve mode       mem_used     RSS delta  used ratio"
               "      reserve\n");
    else
        printf("\nlibzspool                     mem_used     RSS delta  used ratio\n");
    human_cells("after filling", f->mem_used_fill, f->rss_fill, t->compr_bytes,
                rsv ? (int64_t)v->avail_fill : -1);
    putchar('\n');
    human_cells("after freeing half", f->mem_used_before_compact, f->rss_before_compact,
                t->live_bytes, rsv ? (int64_t)v->avail_before_compact : -1);
    putchar('\n');
    human_cells("after compaction", f->mem_used_after_compact, f->rss_after_compact,
                t->live_bytes, rsv ? (int64_t)v->avail_after_compact : -1);
    putchar('\n');
}

static void human_zspool(const struct result *z)
{
    const struct totals *t = &z->t;
    const struct zs_figures *f = &z->zs;

    human_phases(z);
    printf("  metadata               %9.1f MiB after filling, %.1f MiB after compaction\n",
           (double)f->metadata_fill / MIB, (double)f->metadata_after_compact / MIB);
    printf("  pages only, as the kernel counts: %.1f%%, %.1f%%, %.1f%%\n",
           100 * ratio(t->compr_bytes, (int64_t)(f->pages_fill * PAGE_BYTES)),
           100 * ratio(t->live_bytes, (int64_t)(f->pages_before_compact * PAGE_BYTES)),
           100 * ratio(t->live_bytes, (int64_t)(f->pages_after_compact * PAGE_BYTES)));
    printf("  compaction             %" PRId64 " pages freed (the pool shrank by %" PRId64
           ") in %.3f s\n", f->pages_compacted, f->pages_net, f->compact_seconds);
    printf("  zs_malloc / zs_write / zs_free   %.1f / %.1f / %.1f ns per object\n",
           f->alloc_ns, f->write_ns, f->free_ns);
    printf("  RSS after zs_destroy   %9.1f MiB; objects read back wrong: %" PRIu64 "\n",
           (double)f->rss_after_destroy / MIB, f->verify_errors);
}

/* The pool in reserve mode, and what the mode costs against the lazy pool z. */
static void human_reserve(const struct result *v, const struct result *z)
{
    const struct rsv_figures *f = &v->rsv;

    if (!f->target) {
        printf("\nlibzspool, reserve mode: not run (--reserve 0)\n");
        return;
    }
    human_zspool(v);
    printf("  reserve                %9.1f MiB target (resident, outside mem_used)\n",
           (double)f->target / MIB);
    printf("  misses / refills       %" PRIu64 " / %" PRIu64 " (refilling took %.3f s)\n",
           f->misses, f->refills, f->refill_seconds);
    printf("  against lazy mode      mem_used %+.1f MiB after filling, %+.1f MiB after"
           " compaction;\n                         RSS %+.1f MiB and %+.1f MiB, the reserve"
           " included\n",
           ((double)v->zs.mem_used_fill - (double)z->zs.mem_used_fill) / MIB,
           ((double)v->zs.mem_used_after_compact - (double)z->zs.mem_used_after_compact) / MIB,
           (double)(v->zs.rss_fill - z->zs.rss_fill) / MIB,
           (double)(v->zs.rss_after_compact - z->zs.rss_after_compact) / MIB);
}

static void human_malloc(const struct result *m, const struct totals *t)
{
    const struct malloc_figures *f = &m->m;

    printf("\nglibc malloc                               RSS delta  used ratio\n");
    human_row("after filling", 0, f->rss_fill, t->compr_bytes);
    human_row("after freeing half", 0, f->rss_after_free, t->live_bytes);
    human_row("after malloc_trim(0)", 0, f->rss_after_trim, t->live_bytes);
    printf("  malloc / memcpy / free           %.1f / %.1f / %.1f ns per object\n",
           f->alloc_ns, f->write_ns, f->free_ns);
}

static void human_notes(const char *title, const char *notes)
{
    const char *nl;

    if (*notes)
        printf("\n%s:\n", title);
    for (; (nl = strchr(notes, '\n')); notes = nl + 1)
        printf("  %.*s\n", (int)(nl - notes), notes);
}

static void human_footer(const struct result *z, const struct result *v)
{
    double fill = ratio(z->t.compr_bytes, (int64_t)z->zs.mem_used_fill);
    double after = ratio(z->t.live_bytes, (int64_t)z->zs.mem_used_after_compact);

    printf("\nkernel, for comparison\n");
    printf("  zsmalloc compaction commit (2015)       %.2f%% -> %.2f%%\n",
           100 * KERNEL_COMMIT_BEFORE, 100 * KERNEL_COMMIT_AFTER);
    printf("  zram on this machine (lz4, 1 GiB)       fill %.1f%%, %.1f%% -> %.1f%%"
           " (pages only)\n",
           100 * KERNEL_ZRAM_FILL, 100 * KERNEL_ZRAM_BEFORE, 100 * KERNEL_ZRAM_AFTER);
    printf("\ntargets: fill >= %.1f%%: %s (%.2f%%); after compaction >= %.1f%%: %s (%.2f%%)\n",
           100 * TARGET_FILL, fill >= TARGET_FILL ? "met" : "NOT met", 100 * fill,
           100 * TARGET_AFTER_COMPACT, after >= TARGET_AFTER_COMPACT ? "met" : "NOT met",
           100 * after);
    printf("targets met: %s\n", targets_met(z) ? "yes" : "no");
    human_notes("consistency problems", z->notes);
    human_notes("consistency problems in reserve mode", v->notes);
}

static void print_human(const struct job *job, const struct result *z, const struct result *v,
                        const struct result *m)
{
    const struct totals *t = &z->t;

    printf("corpus     %s: %" PRIu64 " pages (%.1f MiB), seed %" PRIu64 "\n", job->path,
           job->pages, (double)(job->pages * PAGE_BYTES) / MIB, job->seed);
    printf("stored     %" PRIu64 " objects, %.1f MiB (%.1f%% of the corpus); %" PRIu64
           " stored raw (huge class)\n", t->objects,
           (double)t->compr_bytes / MIB,
           100.0 * (double)t->compr_bytes / (double)(job->pages * PAGE_BYTES),
           t->raw_pages);
    printf("freed      %" PRIu64 " objects at random; %.1f MiB live\n", t->freed,
           (double)t->live_bytes / MIB);
    human_zspool(z);
    human_malloc(m, t);
    human_reserve(v, z);
    human_footer(z, v);
}

/* ---- arguments ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: zspool-bench [--corpus FILE] [--size BYTES] [--seed N] [--reserve SIZE]\n"
            "                    [--json]\n"
            "\n"
            "Fill a libzspool pool with the lz4-compressed 4 KiB pages of a corpus, free a\n"
            "random half, compact, and report the pool's used ratio at each step (the\n"
            "experiment of the kernel commit \"zsmalloc: support compaction\"), beside the\n"
            "same experiment through glibc malloc, and on a pool in reserve mode (memory\n"
            "populated ahead, as uzramd runs its pools).\n"
            "\n"
            "  --corpus FILE  pages to store (default: the first 256 MiB of a tar of\n"
            "                 " CORPUS_SOURCES ", cached in\n"
            "                 $UZRAM_CORPUS or " DEFAULT_CORPUS ")\n"
            "  --size BYTES   use only the first BYTES of the corpus; K, M, G suffixes\n"
            "                 (default 256M)\n"
            "  --seed N       seed of the random half freed (default 1)\n"
            "  --reserve SIZE the reserve of the pool in reserve mode, 64K to 512M with an\n"
            "                 optional K, M or G (default 8M, uzramd's without\n"
            "                 --mem-limit); 0 skips that experiment\n"
            "  --json         print one JSON object on stdout\n"
            "  --help         print this help\n"
            "\n"
            "Exit status: 0 when the run completed (targets met or not), 1 on an error,\n"
            "2 on bad arguments.\n");
}

/* An integer in C notation (decimal, 0x hex or 0 octal), for seeds. */
static int parse_seed(const char *s, uint64_t *ret, char **end)
{
    unsigned long long v;

    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    v = strtoull(s, end, 0);
    if (errno)
        return -errno;
    *ret = v;
    return 0;
}

static int bad_arg(const char *opt, const char *arg, const char *why)
{
    fprintf(stderr, "zspool-bench: %s: bad value '%s' (%s)\n", opt, arg, why);
    return -EINVAL;
}

static int parse_option(int c, const char *arg, struct opts *o)
{
    char *end;

    switch (c) {
    case 'c':
        o->corpus = arg;
        return 0;
    case 's':
        o->size_given = true;
        if (parse_size(arg, &o->size) < 0 || o->size < PAGE_BYTES)
            return bad_arg("--size", arg, "want bytes, at least 4096, with an optional K, M or G");
        return 0;
    case 'S':
        if (parse_seed(arg, &o->seed, &end) < 0 || *end)
            return bad_arg("--seed", arg, "want a non-negative integer");
        return 0;
    case 'r':
        if (parse_size(arg, &o->reserve) < 0 || o->reserve > ZS_RESERVE_MAX ||
            (o->reserve && o->reserve < MIN_RESERVE))
            return bad_arg("--reserve", arg, "want a size from 64K to 512M, or 0 for none");
        return 0;
    case 'j':
        o->json = true;
        return 0;
    }
    return -EINVAL;
}

/* Returns 1 for --help, 0 to run, -EINVAL (already reported) for bad arguments. */
static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        { "corpus", required_argument, NULL, 'c' },
        { "size", required_argument, NULL, 's' },
        { "seed", required_argument, NULL, 'S' },
        { "reserve", required_argument, NULL, 'r' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    *o = (struct opts){ .size = DEFAULT_CORPUS_BYTES, .seed = 1, .reserve = DEFAULT_RESERVE };
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == 'h')
            return 1;
        if (c == ':') {
            fprintf(stderr, "zspool-bench: %s: missing argument\n", argv[optind - 1]);
            return -EINVAL;
        }
        if (c == '?') {
            fprintf(stderr, "zspool-bench: %s: bad option (try --help)\n", argv[optind - 1]);
            return -EINVAL;
        }
        if (parse_option(c, optarg, o) < 0)
            return -EINVAL;
    }
    if (optind < argc) {
        fprintf(stderr, "zspool-bench: %s: unexpected argument (try --help)\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct result zres, rres, mres;
    struct job job = { .fd = -1 };
    struct err e = { 0 };
    struct opts o;
    int r;

    r = parse_args(argc, argv, &o);
    if (r < 0)
        return 2;
    if (r > 0) {
        usage(stdout);
        return 0;
    }
    job.seed = o.seed;
    job.reserve = o.reserve;
    r = open_corpus(&o, &job, &e);
    /* One child after another: no experiment's memory or CPU is in another's figures. */
    if (r >= 0)
        r = run_child(malloc_experiment, "the glibc malloc experiment", &job, &mres, &e);
    if (r >= 0)
        r = run_child(zspool_experiment, "the libzspool experiment", &job, &zres, &e);
    if (r >= 0 && job.reserve)
        r = run_child(zspool_reserve_experiment, "the reserve-mode experiment", &job, &rres, &e);
    if (job.fd >= 0)
        close(job.fd);
    if (r < 0) {
        fprintf(stderr, "zspool-bench: %s\n", e.msg);
        return 1;
    }
    if (zres.t.compr_bytes != mres.t.compr_bytes || zres.t.live_bytes != mres.t.live_bytes)
        note(&zres, "the two experiments stored different bytes: corpus changed?");
    if (job.reserve && (rres.t.compr_bytes != zres.t.compr_bytes ||
                        rres.t.live_bytes != zres.t.live_bytes))
        note(&rres, "stored different bytes from the lazy pool: corpus changed?");
    if (o.json)
        print_json(&job, &zres, &rres, &mres);
    else
        print_human(&job, &zres, &rres, &mres);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "zspool-bench: writing the report: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
