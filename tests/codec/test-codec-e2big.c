/* SPDX-License-Identifier: MIT */
/*
 * codec_compress() answers -E2BIG when the output does not fit in dst_cap,
 * and never writes past dst_cap doing so: random pages with the store's kind
 * of limit (3 KiB), every kind of page with limits just below and at the
 * size it compresses to, and a limit of 0.
 */
#include "codectest.h"

#define E2BIG_CAP 3072u

static void test_random_pages_do_not_fit(void)
{
    const struct codec_type *t;
    unsigned char page[CT_PAGE], big[2 * CT_PAGE], out[CT_PAGE];
    struct ct_buf dst = ct_buf_new(E2BIG_CAP);

    for (size_t c = 0; (t = codec_get(c)); c++) {
        int levels[7];
        size_t nl = ct_levels(t, levels);
        for (size_t l = 0; l < nl; l++) {
            struct codec_ctx *ctx = ct_ctx(t, levels[l], CT_PAGE);
            for (size_t i = 0; i < 16; i++) {
                ct_page(CT_RANDOM, i, page, CT_PAGE);
                ssize_t r = codec_compress(ctx, page, CT_PAGE, dst.p, dst.len);
                CHECKF(r == -E2BIG, "%s level %d, random page %zu in %u bytes: %zd",
                       codec_name(t), levels[l], i, E2BIG_CAP, r);
                CHECKF(ct_guard_ok(&dst), "%s level %d wrote past dst_cap",
                       codec_name(t), levels[l]);
            }
            /* The context is still good for a page that fits. */
            ct_page(CT_TEXT, 0, page, CT_PAGE);
            ssize_t r = codec_compress(ctx, page, CT_PAGE, big, sizeof(big));
            CHECKF(r > 0, "%s level %d, text page: %zd", codec_name(t), levels[l], r);
            CHECK_EQ(codec_decompress(ctx, big, (size_t)r, out, CT_PAGE), CT_PAGE);
            CHECK(memcmp(out, page, CT_PAGE) == 0);
            codec_ctx_free(ctx);
        }
    }
    ct_buf_free(&dst);
}

static void test_zero_cap(void)
{
    const struct codec_type *t;
    unsigned char page[CT_PAGE];
    struct ct_buf dst = ct_buf_new(0);

    ct_page(CT_ZEROS, 0, page, CT_PAGE);
    for (size_t c = 0; (t = codec_get(c)); c++) {
        int def;
        codec_level_range(t, NULL, NULL, &def);
        struct codec_ctx *ctx = ct_ctx(t, def, CT_PAGE);
        CHECK_EQ(codec_compress(ctx, page, CT_PAGE, dst.p, 0), -E2BIG);
        CHECK_EQ(codec_compress(ctx, page, 0, dst.p, 0), -E2BIG);
        CHECK(ct_guard_ok(&dst));
        codec_ctx_free(ctx);
    }
    ct_buf_free(&dst);
}

/*
 * A page that compresses to n bytes with room to spare: with dst_cap below n
 * the answer is -E2BIG and nothing past dst_cap is touched; with dst_cap n,
 * or a few bytes more, the same n bytes come out.  zstd wants up to ~8 bytes
 * of room beyond what it writes when it compresses a block (lz4 wants none),
 * so it may say -E2BIG for caps just above n: the most is printed.
 */
static void test_cap_boundary(void)
{
    const struct codec_type *t;
    unsigned char page[CT_PAGE], ref[2 * CT_PAGE];

    for (size_t c = 0; (t = codec_get(c)); c++) {
        int levels[7];
        size_t nl = ct_levels(t, levels);
        size_t worst_slack = 0;
        for (size_t l = 0; l < nl; l++) {
            struct codec_ctx *ctx = ct_ctx(t, levels[l], CT_PAGE);
            for (int k = 0; k < CT_KIND_MAX; k++) {
                for (size_t i = 0; i < 4; i++) {
                    ct_page(k, i * 3, page, CT_PAGE);
                    ssize_t n = codec_compress(ctx, page, CT_PAGE, ref, sizeof(ref));
                    CHECK(n > 0);
                    /* Below n: never fits; a few sizes near n and far below. */
                    size_t caps[] = { (size_t)n - 1, (size_t)n - 2, (size_t)n / 2, 1 };
                    for (size_t j = 0; j < 4; j++) {
                        if (caps[j] == 0 || caps[j] >= (size_t)n)
                            continue;
                        struct ct_buf dst = ct_buf_new(caps[j]);
                        ssize_t r = codec_compress(ctx, page, CT_PAGE, dst.p, dst.len);
                        CHECKF(r == -E2BIG, "%s level %d, %s page: %zd bytes fit in %zu?",
                               codec_name(t), levels[l], ct_kind_names[k], r, caps[j]);
                        CHECKF(ct_guard_ok(&dst), "%s level %d wrote past dst_cap %zu",
                               codec_name(t), levels[l], caps[j]);
                        ct_buf_free(&dst);
                    }
                    /* From n up: fits, byte for byte, once past the slack. */
                    for (size_t cap = (size_t)n;; cap++) {
                        struct ct_buf dst = ct_buf_new(cap);
                        ssize_t r = codec_compress(ctx, page, CT_PAGE, dst.p, dst.len);
                        CHECK(ct_guard_ok(&dst));
                        if (r == -E2BIG) {
                            CHECKF(cap - (size_t)n < 32, "%s level %d: %zd bytes do not "
                                   "fit in %zu", codec_name(t), levels[l], n, cap);
                            ct_buf_free(&dst);
                            continue;
                        }
                        CHECKF(r == n && memcmp(dst.p, ref, (size_t)n) == 0,
                               "%s level %d, %s page: %zd bytes with cap %zu, "
                               "%zd with room to spare", codec_name(t), levels[l],
                               ct_kind_names[k], r, cap, n);
                        if (cap - (size_t)n > worst_slack)
                            worst_slack = cap - (size_t)n;
                        ct_buf_free(&dst);
                        break;
                    }
                }
            }
            codec_ctx_free(ctx);
        }
        printf("  %s: needs at most %zu bytes of dst_cap beyond its output\n",
               codec_name(t), worst_slack);
        /* lz4 fills its buffer to the last byte. */
        if (strncmp(codec_name(t), "lz4", 3) == 0)
            CHECK_EQU(worst_slack, 0);
    }
}

int main(void)
{
    if (ct_codec_count() == 0) {
        printf("no codec built in\n");
        return TEST_SKIP;
    }
    ct_corpus_init();
    RUN_TEST(test_random_pages_do_not_fit);
    RUN_TEST(test_zero_cap);
    RUN_TEST(test_cap_boundary);
    return 0;
}
