/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the store tests: making a store that must exist, a
 * backing file, stats snapshots, and page contents of the kinds the store
 * tells apart (random, compressible text, same-filled).
 */
#ifndef UZRAM_STORETEST_H
#define UZRAM_STORETEST_H

#include "test.h"
#include "backing.h"
#include "store.h"
#include "cleanup.h"

#define PG 4096u

/* A backing store on a fresh file of size bytes, its path (a temporary name) in path. */
static inline struct backing *st_backing_new(char path[64], uint64_t size)
{
    snprintf(path, 64, "/tmp/uzram-store-test-XXXXXX");
    int fd = mkstemp(path);
    CHECKF(fd >= 0, "mkstemp: %s", strerror(errno));
    close(fd);
    char err[256] = "";
    struct backing *b = backing_open(path, size, BACKING_TIMEOUT_DEFAULT_MS, 0, err,
                                     sizeof(err));
    CHECKF(b, "backing_open: %s", err);
    return b;
}

/* A store on a backing file of its own (st_backing_new()). */
struct st_backed {
    struct store *s;
    struct backing *b;
    char path[64];
};

static inline void st_backed_free(struct st_backed *w)
{
    store_free(w->s);
    backing_close(w->b);
    unlink(w->path);
}

static inline uint64_t st_blocks_used(struct backing *b)
{
    struct backing_stats bs;
    backing_get_stats(b, &bs);
    return bs.blocks_used;
}

static inline struct store *st_new(uint64_t size, const char *codec, int level,
                                   uint64_t mem_limit, unsigned pct)
{
    const struct codec_type *c = codec ? codec_find(codec) : NULL;
    CHECKF(!codec || c, "codec %s not built", codec);
    struct store_config cfg = {
        .size = size,
        .codec = c,
        .level = level,
        .mem_limit = mem_limit,
        .compact_threshold_pct = pct,
    };
    struct store *s = store_new(&cfg);
    CHECKF(s, "store_new(%ju): %s", (uintmax_t)size, strerror(errno));
    return s;
}

static inline struct store_stats st_stats(struct store *s)
{
    struct store_stats st;
    memset(&st, 0x5a, sizeof(st));
    store_get_stats(s, &st);
    return st;
}

/* Text-like bytes: words from a small vocabulary, compress about 2-3:1. */
static inline void st_text(struct test_rng *r, void *buf, size_t len)
{
    static const char *const words[] = {
        "the ", "block ", "store ", "compresses ", "pages ", "of ", "memory ",
        "and ", "a ", "slot ", "holds ", "each ", "one\n", "zram ", "0x1f ",
        "int ", "return ", "{ ", "} ", "uint64_t ", "lock ", "free ",
    };
    unsigned char *p = buf;
    size_t i = 0;
    while (i < len) {
        const char *w = words[rng_below(r, sizeof(words) / sizeof(words[0]))];
        size_t n = strlen(w);
        if (n > len - i)
            n = len - i;
        memcpy(p + i, w, n);
        i += n;
        if (rng_one_in(r, 8) && i < len)
            p[i++] = (unsigned char)rng_next(r);
    }
}

static inline void st_fill_word(void *buf, size_t len, uint64_t w)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(w >> (8 * (i % 8)));
}

static inline bool st_all_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

/*
 * Discard the whole device and check that the figures that describe what it
 * holds all went back to 0: a count that drifts under some interleaving of
 * writes, discards and compactions shows here, after a random workload.
 */
static inline void st_check_drained(struct store *s)
{
    uint64_t size = store_size(s), got;
    CHECK_EQ(store_discard(s, size, 0), 0);
    CHECK(store_compact(s) >= 0);
    struct store_stats st = st_stats(s);
    CHECK_EQU(st.orig_data_size, 0);
    CHECK_EQU(st.compr_data_size, 0);
    CHECK_EQU(st.same_pages, 0);
    CHECK_EQU(st.huge_pages, 0);
    CHECK_EQU(st.bundles, 0);
    CHECK_EQU(st.bundled_pages, 0);
    CHECK_EQU(st.bundle_bytes, 0);
    CHECK_EQ(store_seek(s, 0, true, &got), -ENXIO);
}

#endif
