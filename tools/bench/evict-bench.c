/* SPDX-License-Identifier: MIT */
/*
 * evict-bench: the store's two eviction policies side by side, without a
 * front end in the way, to answer two questions the writeback issue asks:
 *
 *   Which frees memory faster?  The store is filled with the corpus and no
 *   limit; then the limit is set to half of what it holds and the time
 *   until the eviction thread has brought the pool under the low watermark
 *   is taken: MiB of memory given back per second, and MiB written to the
 *   backing file for it.
 *
 *   Which keeps hot data?  Then a mixed load runs under that limit: reads
 *   from a hot set (the first tenth of the device, which was written first
 *   and so sits in the oldest zspages) and writes of fresh data scattered
 *   over the whole device, which keep eviction busy.  The share of reads
 *   served from memory (1 - bd_reads / reads), measured over the second
 *   half of the load, says which policy kept the hot set (75% reads, 25%
 *   writes).
 *
 *   What do reads of written-back data cost, and do hot pages come back?
 *   Last, reads only, zipf-distributed (s = 1.2) over the whole device, of
 *   which three quarters is on the backing store by then: reads per
 *   second and the share served from memory over the second half, and the
 *   pages brought back into memory.
 *
 * Each policy runs with the backing store holding compressed and raw pages.
 *   evict-bench CORPUS [MiB of it to use, default 512] [ops, default 400000]
 *               [BACKING: an NBD URI; default a file made in /var/tmp]
 */
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backing.h"
#include "codec.h"
#include "store.h"

#define PG 4096u

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_state = 0x853c49e6748fea9bull;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Zipf over n items: the cumulative weights, drawn from by binary search. */
static double *zipf_cdf;
static uint64_t zipf_n;

static void zipf_init(uint64_t n, double theta)
{
    zipf_cdf = malloc(n * sizeof(double));
    if (!zipf_cdf)
        exit(1);
    double sum = 0;
    for (uint64_t i = 0; i < n; i++)
        zipf_cdf[i] = sum += 1.0 / pow((double)(i + 1), theta);
    for (uint64_t i = 0; i < n; i++)
        zipf_cdf[i] /= sum;
    zipf_n = n;
}

/* A rank, 0 the most popular, scattered over the device by a fixed permutation. */
static uint64_t zipf_page(void)
{
    double u = (double)(rng() >> 11) / 9007199254740992.0;
    uint64_t lo = 0, hi = zipf_n - 1;
    while (lo < hi) {
        uint64_t mid = (lo + hi) / 2;
        if (zipf_cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* An odd multiplier permutes 0..2^k-1; zipf_n is a power of two here. */
    return (lo * 0x9e3779b97f4a7c15ull) & (zipf_n - 1);
}

static const char *backing_arg;

static struct store_stats stats(struct store *s)
{
    struct store_stats st;
    store_get_stats(s, &st);
    return st;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "evict-bench: %s: %s\n", what, strerror(err));
    exit(1);
}

/* What one run measured: a row of the table. */
struct row {
    double freed_mib, evict_s, written_mib;     /* eviction to the low watermark */
    double hit, ops_s;                          /* the mixed load's second half */
    double zhit, zops_s;                        /* the zipf reads' second half */
    uint64_t promoted;                          /* pages the zipf reads brought back */
    double mem_mib;                             /* memory held at the end */
};

/* The backing store: backing_arg, or a file in /var/tmp, unlinked once open. */
static struct backing *backing_make(uint64_t size)
{
    char path[] = "/var/tmp/uzram-evict-bench-XXXXXX", err[256] = "";
    if (!backing_arg) {
        int fd = mkstemp(path);
        if (fd < 0)
            die("mkstemp", errno);
        close(fd);
    }
    struct backing *b = backing_open(backing_arg ? backing_arg : path, size,
                                     BACKING_TIMEOUT_DEFAULT_MS, 0, err, sizeof(err));
    if (!b) {
        fprintf(stderr, "evict-bench: backing_open: %s\n", err);
        exit(1);
    }
    if (!backing_arg)
        unlink(path);
    return b;
}

static struct store *store_make(struct backing *b, uint64_t size,
                                enum store_evict_policy policy, bool raw)
{
    struct store_config cfg = {
        .size = size,
        .codec = codec_find("lz4"),
        .compact_threshold_pct = 10,
        .backing = b,
        .backing_raw = raw,
        .evict_policy = policy,
    };
    struct store *s = store_new(&cfg);
    if (!s)
        die("store_new", errno);
    return s;
}

/* Fill the store, then time how fast eviction frees memory down to half. */
static void fill_and_evict(struct store *s, const unsigned char *data, uint64_t size,
                           struct row *row)
{
    for (uint64_t off = 0; off < size; off += 256 * 1024) {
        int r = store_write(s, data + off, 256 * 1024, off);
        if (r < 0)
            die("fill", -r);
    }
    store_compact(s);
    struct store_stats st = stats(s);
    uint64_t full = st.mem_used_total;

    /* Memory freed per second: limit at half, until under the low watermark. */
    uint64_t limit = full / 2;
    store_set_mem_limit(s, limit);
    double t0 = now();
    store_set_watermarks(s, 90, 80);    /* wakes the eviction thread */
    uint64_t low = stats(s).wb_low;
    while (stats(s).mem_used_total > low) {
        if (now() - t0 > 120) {
            fprintf(stderr, "evict-bench: eviction did not reach the low watermark in 120 s\n");
            exit(1);
        }
        usleep(1000);
    }
    row->evict_s = now() - t0;
    st = stats(s);
    row->freed_mib = (double)(full - st.mem_used_total) / 1048576.0;
    row->written_mib = (double)st.bd_writes * PG / 1048576.0;
}

/*
 * The mixed load: 75% reads of the hot tenth, 25% fresh writes anywhere.
 * Returns the pages promoted so far, for the zipf reads to count from.
 */
static uint64_t mixed_load(struct store *s, const unsigned char *data, uint64_t size,
                           uint64_t ops, struct row *row)
{
    uint64_t npages = size / PG, hot = npages / 10;
    unsigned char page[PG];
    uint64_t reads = 0, bd0 = 0, reads0 = 0;
    double t_half = now();
    for (uint64_t op = 0; op < ops; op++) {
        if (op == ops / 2) {
            bd0 = stats(s).bd_reads;
            reads0 = reads;
            t_half = now();
        }
        if (rng() % 4 != 0) {
            uint64_t i = rng() % hot;
            int r = store_read(s, page, PG, i * PG);
            if (r < 0)
                die("read", -r);
            reads++;
        } else {
            uint64_t i = rng() % npages, from = rng() % npages;
            int r = store_write(s, data + from * PG, PG, i * PG);
            if (r < 0)
                die("write", -r);
        }
    }
    double t_end = now();
    struct store_stats st = stats(s);
    row->hit = 1.0 - (double)(st.bd_reads - bd0) / (double)(reads - reads0);
    row->ops_s = (double)(ops - ops / 2) / (t_end - t_half);
    return st.pages_promoted;
}

/* Reads only, zipf over the whole device. */
static void zipf_load(struct store *s, uint64_t ops, uint64_t promoted0, struct row *row)
{
    unsigned char page[PG];
    uint64_t zbd0 = 0;
    double tz = 0;
    for (uint64_t op = 0; op < ops; op++) {
        if (op == ops / 2) {
            zbd0 = stats(s).bd_reads;
            tz = now();
        }
        int r = store_read(s, page, PG, zipf_page() * PG);
        if (r < 0)
            die("zipf read", -r);
    }
    double tz_end = now();
    struct store_stats zst = stats(s);
    row->zhit = 1.0 - (double)(zst.bd_reads - zbd0) / (double)(ops - ops / 2);
    row->zops_s = (double)(ops - ops / 2) / (tz_end - tz);
    row->promoted = zst.pages_promoted - promoted0;
    row->mem_mib = (double)zst.mem_used_total / 1048576.0;
}

static void print_row(enum store_evict_policy policy, bool raw, const struct row *w)
{
    printf("| %-6s | %-10s | %4.0f MiB in %4.2f s | %4.0f MiB/s | %4.0f MiB | %5.1f%% | %7.0f | %5.1f%% | %7.0f | %7ju | %5.1f MiB |\n",
           policy == STORE_EVICT_LRU ? "lru" : "zspage", raw ? "raw" : "compressed",
           w->freed_mib, w->evict_s, w->freed_mib / w->evict_s, w->written_mib, 100.0 * w->hit,
           w->ops_s, 100.0 * w->zhit, w->zops_s, (uintmax_t)w->promoted, w->mem_mib);
}

/* One run: fill, evict to half, mixed load, zipf reads.  Prints one table row. */
static void run(const unsigned char *data, uint64_t size, uint64_t ops,
                enum store_evict_policy policy, bool raw)
{
    struct backing *b = backing_make(size);
    struct store *s = store_make(b, size, policy, raw);
    struct row row = { 0 };

    fill_and_evict(s, data, size, &row);
    uint64_t promoted0 = mixed_load(s, data, size, ops, &row);
    zipf_load(s, ops, promoted0, &row);
    print_row(policy, raw, &row);
    store_free(s);
    backing_close(b);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 5) {
        fprintf(stderr, "usage: evict-bench CORPUS [MiB] [ops] [BACKING-NBD-URI]\n");
        return 2;
    }
    uint64_t mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 512;
    uint64_t ops = argc > 3 ? strtoull(argv[3], NULL, 10) : 400000;
    backing_arg = argc > 4 ? argv[4] : NULL;
    uint64_t size = mib << 20;
    if (mib == 0 || (mib & (mib - 1))) {
        fprintf(stderr, "evict-bench: MiB must be a power of two\n");
        return 2;
    }
    zipf_init(size / PG, 1.2);
    unsigned char *data = malloc(size);
    if (!data)
        die("malloc", errno);
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0)
        die(argv[1], errno);
    for (uint64_t got = 0; got < size;) {
        ssize_t n = pread(fd, data + got, size - got, (off_t)got);
        if (n <= 0)
            die("short corpus", n < 0 ? errno : EINVAL);
        got += (uint64_t)n;
    }
    close(fd);
    printf("%ju MiB of %s, lz4, backing store %s; eviction from all in memory to a limit of half;\n"
           "then %ju ops: 75%% 4 KiB reads of the first tenth, 25%% 4 KiB writes anywhere;\n"
           "then %ju 4 KiB reads, zipf 1.2 over the device\n\n",
           (uintmax_t)mib, argv[1], backing_arg ? backing_arg : "a file in /var/tmp",
           (uintmax_t)ops, (uintmax_t)ops);
    printf("| policy | format | memory freed to the low mark | rate | pages written back (as MiB) | mixed: hot reads from memory | mixed: ops/s | zipf: reads from memory | zipf: reads/s | zipf: promoted | memory after |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int p = 0; p < 2; p++)
        for (int raw = 0; raw < 2; raw++)
            run(data, size, ops, p ? STORE_EVICT_ZSPAGE : STORE_EVICT_LRU, raw);
    free(data);
    return 0;
}
