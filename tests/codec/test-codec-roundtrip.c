/* SPDX-License-Identifier: MIT */
/*
 * codec_compress() then codec_decompress() gives back the input, for every
 * codec built in, at its lowest, default, highest and a few other levels, on
 * pages of text, binary (a shared library), zeros and random bytes, and on
 * inputs shorter than a page down to none; a context made for large blocks
 * works on them too.  The output depends only on the input and the level:
 * not on what the context compressed before, nor on which context decodes it.
 */
#include "codectest.h"

/* Pages of each kind per level; the highest zstd levels are slow-ish. */
#define PAGES_PER_KIND 6
/* Room for any codec's worst case on a page: lz4's is 4,112 bytes. */
#define DST_CAP (2 * CT_PAGE)

/* Compress len bytes of src with ctx, decompress with dctx, and compare. */
static size_t round_trip(struct codec_ctx *ctx, struct codec_ctx *dctx,
                         const void *src, size_t len, const char *what)
{
    static unsigned char comp[DST_CAP], out[CT_PAGE * 16];
    size_t cap = len * 2 + 64 < sizeof(comp) ? len * 2 + 64 : sizeof(comp);

    ssize_t n = codec_compress(ctx, src, len, comp, cap);
    CHECKF(n > 0 && (size_t)n <= cap, "%s: compress %zu bytes = %zd", what, len, n);
    memset(out, 0x5a, len);
    ssize_t m = codec_decompress(dctx, comp, (size_t)n, out, len);
    CHECKF(m == (ssize_t)len, "%s: decompress %zd bytes to %zu = %zd", what, n, len, m);
    CHECKF(memcmp(out, src, len) == 0, "%s: round trip of %zu bytes differs", what, len);
    return (size_t)n;
}

static void test_pages_every_level(void)
{
    const struct codec_type *t;
    unsigned char page[CT_PAGE];
    char what[128];

    for (size_t c = 0; (t = codec_get(c)); c++) {
        int levels[7];
        size_t nl = ct_levels(t, levels);
        for (size_t l = 0; l < nl; l++) {
            struct codec_ctx *ctx = ct_ctx(t, levels[l], CT_PAGE);
            size_t total[CT_KIND_MAX] = { 0 }, pages[CT_KIND_MAX] = { 0 };
            for (int k = 0; k < CT_KIND_MAX; k++) {
                size_t np = ct_page_count(k);
                for (size_t i = 0; i < PAGES_PER_KIND && i < np; i++) {
                    /* Spread over the file: its start is all headers. */
                    size_t idx = np == SIZE_MAX ? i : i * np / PAGES_PER_KIND;
                    ct_page(k, idx, page, CT_PAGE);
                    snprintf(what, sizeof(what), "%s level %d, %s page %zu",
                             codec_name(t), levels[l], ct_kind_names[k], idx);
                    total[k] += round_trip(ctx, ctx, page, CT_PAGE, what);
                    pages[k]++;
                }
            }
            printf("  %-5s level %7d: bytes per page: text %5zu binary %5zu"
                   " zeros %4zu random %5zu\n", codec_name(t), levels[l],
                   total[CT_TEXT] / pages[CT_TEXT], total[CT_BINARY] / pages[CT_BINARY],
                   total[CT_ZEROS] / pages[CT_ZEROS], total[CT_RANDOM] / pages[CT_RANDOM]);
            CHECKF(total[CT_RANDOM] >= pages[CT_RANDOM] * CT_PAGE,
                   "%s level %d: random pages shrank", codec_name(t), levels[l]);
            codec_ctx_free(ctx);
        }
    }
}

static void test_short_inputs(void)
{
    static const size_t lens[] = { 0, 1, 2, 3, 4, 5, 7, 12, 13, 16, 100, 255, 256,
                                   1000, 2048, 4000, 4095 };
    const struct codec_type *t;
    unsigned char page[CT_PAGE];
    char what[128];

    for (size_t c = 0; (t = codec_get(c)); c++) {
        int min, max, def;
        codec_level_range(t, &min, &max, &def);
        int levels[] = { min, def, max };
        for (size_t l = 0; l < 3; l++) {
            struct codec_ctx *ctx = ct_ctx(t, levels[l], CT_PAGE);
            for (int k = 0; k < CT_KIND_MAX; k++) {
                ct_page(k, 1, page, CT_PAGE);
                for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
                    snprintf(what, sizeof(what), "%s level %d, %zu bytes of %s",
                             codec_name(t), levels[l], lens[i], ct_kind_names[k]);
                    round_trip(ctx, ctx, page, lens[i], what);
                }
            }
            codec_ctx_free(ctx);
        }
    }
}

/*
 * A context for 64 KiB blocks: text and binary of that size go through, and
 * a context that only decompresses (codec_dctx_new()) reads them too.
 */
static void test_large_blocks(void)
{
    enum { LEN = 16 * CT_PAGE };
    const struct codec_type *t;
    unsigned char *src = malloc(LEN), *comp = malloc(2 * LEN), *out = malloc(LEN);
    CHECK(src && comp && out);

    for (size_t c = 0; (t = codec_get(c)); c++) {
        int def;
        codec_level_range(t, NULL, NULL, &def);
        struct codec_ctx *ctx = ct_ctx(t, def, LEN);
        /* A context that only decompresses reads the same, and will not compress. */
        struct codec_ctx *dctx = codec_dctx_new(t);
        CHECKF(dctx, "codec_dctx_new(%s): %s", codec_name(t), strerror(errno));
        CHECK_EQ(codec_compress(dctx, src, CT_PAGE, comp, 2 * LEN), -EINVAL);
        CHECK_EQ(codec_compress(dctx, src, 0, comp, 2 * LEN), -EINVAL);
        for (int k = 0; k < CT_KIND_MAX; k++) {
            for (size_t p = 0; p < LEN / CT_PAGE; p++)
                ct_page(k, p, src + p * CT_PAGE, CT_PAGE);
            ssize_t n = codec_compress(ctx, src, LEN, comp, 2 * LEN);
            CHECKF(n > 0, "%s: 64 KiB of %s: %zd", codec_name(t), ct_kind_names[k], n);
            CHECK_EQ(codec_decompress(ctx, comp, (size_t)n, out, LEN), LEN);
            CHECK(memcmp(src, out, LEN) == 0);
            memset(out, 0, LEN);
            CHECK_EQ(codec_decompress(dctx, comp, (size_t)n, out, LEN), LEN);
            CHECK(memcmp(src, out, LEN) == 0);
            /* A page-sized input in the same context, and a page that was
             * compressed elsewhere, still work. */
            round_trip(ctx, ctx, src, CT_PAGE, "page after 64 KiB");
            round_trip(ctx, dctx, src, CT_PAGE, "page read by a decompress-only context");
        }
        codec_ctx_free(dctx);
        codec_ctx_free(ctx);
    }
    free(src);
    free(comp);
    free(out);
}

/*
 * The same page gives the same bytes from a fresh context and from one that
 * has compressed other pages (and failed on some) in between; and any context
 * of the codec, at any level, decodes it.
 */
static void test_deterministic_and_portable(void)
{
    const struct codec_type *t;
    unsigned char page[CT_PAGE], other[CT_PAGE], out[CT_PAGE];
    unsigned char first[DST_CAP], again[DST_CAP], junk[DST_CAP];

    for (size_t c = 0; (t = codec_get(c)); c++) {
        int levels[7];
        size_t nl = ct_levels(t, levels);
        for (size_t l = 0; l < nl; l++) {
            struct codec_ctx *ctx = ct_ctx(t, levels[l], CT_PAGE);
            /* Decodes with a context at another level. */
            struct codec_ctx *dctx = ct_ctx(t, levels[nl - 1 - l], CT_PAGE);
            for (int k = 0; k < CT_KIND_MAX; k++) {
                ct_page(k, 3, page, CT_PAGE);
                ssize_t n = codec_compress(ctx, page, CT_PAGE, first, sizeof(first));
                CHECK(n > 0);
                for (int j = 0; j < CT_KIND_MAX; j++) {
                    ct_page(j, 5, other, CT_PAGE);
                    CHECK(codec_compress(ctx, other, CT_PAGE, junk, sizeof(junk)) > 0);
                    codec_compress(ctx, other, CT_PAGE, junk, 100);
                    codec_compress(ctx, other, 1000, junk, sizeof(junk));
                }
                ssize_t m = codec_compress(ctx, page, CT_PAGE, again, sizeof(again));
                CHECKF(m == n && memcmp(first, again, (size_t)n) == 0,
                       "%s level %d, %s: %zd bytes, then %zd bytes after other work",
                       codec_name(t), levels[l], ct_kind_names[k], n, m);

                struct codec_ctx *fresh = ct_ctx(t, levels[l], CT_PAGE);
                m = codec_compress(fresh, page, CT_PAGE, again, sizeof(again));
                CHECKF(m == n && memcmp(first, again, (size_t)n) == 0,
                       "%s level %d, %s: %zd bytes, %zd from a fresh context",
                       codec_name(t), levels[l], ct_kind_names[k], n, m);
                codec_ctx_free(fresh);

                CHECK_EQ(codec_decompress(dctx, first, (size_t)n, out, CT_PAGE), CT_PAGE);
                CHECK(memcmp(out, page, CT_PAGE) == 0);
            }
            codec_ctx_free(dctx);
            codec_ctx_free(ctx);
        }
    }
}

/* lz4 and lz4hc write one format: either decodes the other's blocks. */
static void test_lz4_formats_agree(void)
{
    const struct codec_type *fast = codec_find("lz4"), *hc = codec_find("lz4hc");
    if (!fast || !hc)
        return;
    int hc_max;
    codec_level_range(hc, NULL, &hc_max, NULL);
    struct codec_ctx *a = ct_ctx(fast, 1, CT_PAGE), *b = ct_ctx(hc, hc_max, CT_PAGE);
    unsigned char page[CT_PAGE];
    for (int k = 0; k < CT_KIND_MAX; k++) {
        ct_page(k, 2, page, CT_PAGE);
        round_trip(a, b, page, CT_PAGE, "lz4 decoded by lz4hc");
        round_trip(b, a, page, CT_PAGE, "lz4hc decoded by lz4");
    }
    codec_ctx_free(a);
    codec_ctx_free(b);
}

int main(void)
{
    if (ct_codec_count() == 0) {
        printf("no codec built in\n");
        return TEST_SKIP;
    }
    ct_corpus_init();
    printf("text from %s, binary from %s\n", ct_corpus.text.path, ct_corpus.binary.path);
    RUN_TEST(test_pages_every_level);
    RUN_TEST(test_short_inputs);
    RUN_TEST(test_large_blocks);
    RUN_TEST(test_deterministic_and_portable);
    RUN_TEST(test_lz4_formats_agree);
    return 0;
}
