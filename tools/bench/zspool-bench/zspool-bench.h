/* SPDX-License-Identifier: MIT */
/*
 * zspool-bench's own header: the constants and structures its files share,
 * and what each file exports, sectioned by file.  What the benchmark
 * measures, and the kernel's figures it prints beside its own, are in
 * doc/zspool.md, "The benchmark".
 *
 * Calls go one way: main.c uses every other file; corpus.c uses child.c;
 * the experiments (exp-malloc.c, exp-zspool.c) use workload.c; all use
 * helpers.c, which uses none.  The experiments run in child processes and
 * hand back a struct result, by value, through a pipe: it holds no
 * pointers.
 */
#ifndef UZRAM_ZSPOOL_BENCH_H
#define UZRAM_ZSPOOL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "codec.h"
#include "zspool.h"

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

/* Stores the loaded batch; first is the index of its first page in the corpus. */
typedef int (*store_fn)(void *ctx, struct workload *w, uint64_t first, struct err *e);

typedef int (*experiment_fn)(const struct job *job, struct result *r);

/* ---- helpers.c: errors, the clock, the resident set, I/O ----------------- */

/* Record "message: strerror(-code)" and return code, a negative errno. */
__attribute__((format(printf, 3, 4)))
int set_err(struct err *e, int code, const char *fmt, ...);
/* The same for a message that says it all. */
__attribute__((format(printf, 3, 4)))
int set_err_msg(struct err *e, int code, const char *fmt, ...);
/* Add a line to r's consistency notes (dropped when they are full). */
__attribute__((format(printf, 2, 3)))
void note(struct result *r, const char *fmt, ...);
/* -errno, or -EIO if errno is not set. */
int neg_errno(void);
uint64_t now_ns(void);
/* num / den, or 0 when den is not positive. */
double ratio(uint64_t num, int64_t den);
/* Anonymous resident bytes of the process.  0 or a negative errno. */
int rss_bytes(int64_t *ret);
/* Growth of rss_bytes() since base.  0 or a negative errno, set in *e. */
int rss_delta(int64_t base, int64_t *ret, struct err *e);
/* Exactly len bytes at off, or -ENODATA if the file ends first. */
int pread_full(int fd, void *buf, size_t len, uint64_t off);
int write_full(int fd, const void *buf, size_t len);
/* Up to len bytes, short only at end of file; or a negative errno. */
ssize_t read_full(int fd, void *buf, size_t len);
/* A checksum to verify objects after compaction moved them. */
uint32_t hash32(const uint8_t *p, size_t len);

/* ---- workload.c: the working set, filling a store ------------------------ */

void workload_free(struct workload *w);
/* Allocate and touch w's working set for job.  0 or -ENOMEM, set in *e. */
int workload_init(struct workload *w, const struct job *job, struct err *e);
/*
 * An experiment's start: w's working set (workload_init()), then the RSS
 * the experiment's growth is measured from, in *ret_base.  0, or a
 * negative errno set in *e with nothing left to free.
 */
int workload_start(struct workload *w, const struct job *job, int64_t *ret_base, struct err *e);
/* Read, compress and store every page, BATCH at a time, through store. */
int fill(struct workload *w, store_fn store, void *ctx, struct totals *t, struct err *e);
/* Sum the sizes of the half about to be freed: live bytes after freeing. */
void count_freed(const struct workload *w, struct totals *t);

/* ---- exp-malloc.c, exp-zspool.c: the experiments ------------------------- */

int malloc_experiment(const struct job *job, struct result *r);
int zspool_experiment(const struct job *job, struct result *r);
int zspool_reserve_experiment(const struct job *job, struct result *r);

/* ---- child.c: an experiment in a child process --------------------------- */

/* Wait for a child; what names it in the error ("the zspool experiment"). */
int child_status(pid_t pid, const char *what, struct err *e);
/* Run fn(job) in a child and copy its result into *ret.  0 or its error. */
int run_child(experiment_fn fn, const char *what, const struct job *job, struct result *ret,
              struct err *e);

/* ---- corpus.c: the corpus ------------------------------------------------ */

/* Find, or generate, the corpus and open it into job.  0 or an error in *e. */
int open_corpus(const struct opts *o, struct job *job, struct err *e);

/* ---- report.c: the report ------------------------------------------------ */

/* z: the lazy pool, v: the pool in reserve mode, m: glibc malloc. */
void print_json(const struct job *job, const struct result *z, const struct result *v,
                const struct result *m);
void print_human(const struct job *job, const struct result *z, const struct result *v,
                 const struct result *m);

#endif
