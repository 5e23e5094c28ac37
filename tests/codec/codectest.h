/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the codec tests: the codecs built in and the levels worth
 * testing for each, real-ish pages to compress (text, binary, zeros, random),
 * and buffers with a guard region behind them that catches a write past
 * their end, first by checking a pattern and, beyond that, by a page that
 * cannot be touched at all.
 */
#ifndef UZRAM_CODECTEST_H
#define UZRAM_CODECTEST_H

#include "test.h"
#include "codec.h"

#include <sys/mman.h>

#define CT_PAGE 4096u
/* Pattern bytes checked after a buffer; then an inaccessible page. */
#define CT_GUARD 64u
#define CT_GUARD_BYTE 0xa5

/* ---- codecs and levels --------------------------------------------------- */

/* Number of codecs built in. */
static inline size_t ct_codec_count(void)
{
    size_t n = 0;
    while (codec_get(n))
        n++;
    return n;
}

/*
 * Levels worth testing for type: min, min + 1, default, default + 1, a
 * middle one, max - 1 and max, without duplicates, ascending.  Returns the
 * count (at most 7).
 */
static inline size_t ct_levels(const struct codec_type *type, int levels[7])
{
    int min, max, def;
    codec_level_range(type, &min, &max, &def);
    CHECKF(min <= def && def <= max, "%s: levels %d..%d, default %d",
           codec_name(type), min, max, def);

    int want[] = { min, min + 1, def, def + 1, def + (max - def) / 2, max - 1, max };
    size_t n = 0;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int l = want[i];
        if (l < min || l > max)
            continue;
        size_t j = 0;
        while (j < n && levels[j] < l)
            j++;
        if (j < n && levels[j] == l)
            continue;
        memmove(&levels[j + 1], &levels[j], (n - j) * sizeof(int));
        levels[j] = l;
        n++;
    }
    return n;
}

static inline struct codec_ctx *ct_ctx(const struct codec_type *type, int level,
                                       size_t max_len)
{
    struct codec_ctx *ctx = codec_ctx_new(type, level, max_len);
    CHECKF(ctx, "codec_ctx_new(%s, %d, %zu): %m", codec_name(type), level, max_len);
    return ctx;
}

/* ---- pages ----------------------------------------------------------------- */

enum ct_kind { CT_TEXT, CT_BINARY, CT_ZEROS, CT_RANDOM, CT_KIND_MAX };

static const char *const ct_kind_names[CT_KIND_MAX] = {
    [CT_TEXT] = "text", [CT_BINARY] = "binary",
    [CT_ZEROS] = "zeros", [CT_RANDOM] = "random",
};

struct ct_file {
    unsigned char *data;
    size_t len;
    const char *path;
};

/* The first max bytes of the first of paths that holds at least min. */
static inline bool ct_load(struct ct_file *f, const char *const *paths,
                           size_t min, size_t max)
{
    for (; *paths; paths++) {
        FILE *fp = fopen(*paths, "rbe");
        if (!fp)
            continue;
        unsigned char *buf = malloc(max);
        CHECK(buf);
        size_t n = fread(buf, 1, max, fp);
        fclose(fp);
        if (n >= min) {
            f->data = buf;
            f->len = n;
            f->path = *paths;
            return true;
        }
        free(buf);
    }
    return false;
}

/* English-like text from a small vocabulary, when no text file is found. */
static inline void ct_make_text(struct ct_file *f, size_t len)
{
    static const char *const words[] = {
        "the", "page", "is", "compressed", "when", "written", "and", "a",
        "store", "keeps", "it", "in", "memory", "of", "swap", "device",
        "block", "thread", "owns", "context", "level", "faster", "smaller",
        "License", "Software", "distribute", "copy", "without", "warranty",
    };
    struct test_rng r = { 42 };
    f->data = malloc(len);
    CHECK(f->data);
    size_t n = 0, col = 0;
    while (n < len) {
        const char *w = words[rng_below(&r, sizeof(words) / sizeof(words[0]))];
        for (; *w && n < len; w++, col++)
            f->data[n++] = (unsigned char)*w;
        if (n < len) {
            f->data[n++] = col > 70 ? '\n' : ' ';
            col = col > 70 ? 0 : col + 1;
        }
    }
    f->len = len;
    f->path = "(generated text)";
}

struct ct_corpus {
    struct ct_file text, binary;
};

static struct ct_corpus ct_corpus;

/* Load the text and binary sources once; call before ct_page(). */
static inline void ct_corpus_init(void)
{
    static const char *const text[] = {
        "/usr/share/common-licenses/GPL-3",
        "/usr/share/common-licenses/Apache-2.0",
        "/usr/share/common-licenses/GFDL-1.3",
        NULL,
    };
    static const char *const binary[] = {
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/aarch64-linux-gnu/libc.so.6",
        "/usr/lib64/libc.so.6",
        "/usr/lib/libc.so.6",
        "/proc/self/exe",
        NULL,
    };
    if (ct_corpus.text.data)
        return;
    if (!ct_load(&ct_corpus.text, text, 4 * CT_PAGE, 64 * CT_PAGE))
        ct_make_text(&ct_corpus.text, 16 * CT_PAGE);
    CHECKF(ct_load(&ct_corpus.binary, binary, 4 * CT_PAGE, 256 * CT_PAGE),
           "no binary file to read pages from");
}

/* Number of distinct pages ct_page() makes of a kind. */
static inline size_t ct_page_count(enum ct_kind kind)
{
    switch (kind) {
    case CT_TEXT:
        return ct_corpus.text.len / CT_PAGE;
    case CT_BINARY:
        return ct_corpus.binary.len / CT_PAGE;
    case CT_ZEROS:
        return 1;
    default:
        return SIZE_MAX;
    }
}

/* Fill buf with len bytes (at most CT_PAGE) of page i of a kind. */
static inline void ct_page(enum ct_kind kind, size_t i, void *buf, size_t len)
{
    const struct ct_file *f;

    switch (kind) {
    case CT_TEXT:
        f = &ct_corpus.text;
        break;
    case CT_BINARY:
        f = &ct_corpus.binary;
        break;
    case CT_ZEROS:
        memset(buf, 0, len);
        return;
    default:
        test_pattern(buf, len, i, 0);
        return;
    }
    size_t n = f->len / CT_PAGE;
    memcpy(buf, f->data + (i % n) * CT_PAGE, len);
}

/* ---- guarded buffers ------------------------------------------------------- */

/*
 * len usable bytes at p, followed by CT_GUARD bytes of CT_GUARD_BYTE and then
 * a PROT_NONE page, so a small overrun shows in ct_guard_ok() and a large
 * one faults at once.
 */
struct ct_buf {
    unsigned char *p;
    size_t len;
    void *map;
    size_t map_len;
};

static inline struct ct_buf ct_buf_new(size_t len)
{
    size_t rw = (len + CT_GUARD + CT_PAGE - 1) / CT_PAGE * CT_PAGE;
    struct ct_buf b = { .len = len, .map_len = rw + CT_PAGE };

    b.map = mmap(NULL, b.map_len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECKF(b.map != MAP_FAILED, "mmap: %m");
    CHECKF(mprotect((char *)b.map + rw, CT_PAGE, PROT_NONE) == 0, "mprotect: %m");
    b.p = (unsigned char *)b.map + rw - CT_GUARD - len;
    memset(b.p + len, CT_GUARD_BYTE, CT_GUARD);
    return b;
}

static inline bool ct_guard_ok(const struct ct_buf *b)
{
    for (size_t i = 0; i < CT_GUARD; i++) {
        if (b->p[b->len + i] != CT_GUARD_BYTE)
            return false;
    }
    return true;
}

static inline void ct_buf_free(struct ct_buf *b)
{
    munmap(b->map, b->map_len);
    *b = (struct ct_buf){ 0 };
}

#endif
