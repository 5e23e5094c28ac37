/* SPDX-License-Identifier: MIT */
/*
 * codec_decompress() on bad input: truncated blocks, blocks decoded to the
 * wrong length and empty input always fail; flipped bits, overwritten bytes,
 * trailing junk and pure noise either fail or (neither codec checksums)
 * decode to exactly dst_len bytes.  In no case does it crash or write past
 * dst + dst_len: dst is followed by a checked guard region and then a page
 * that faults.
 *
 * Replay a failure with UZRAM_TEST_SEED=<seed printed>; UZRAM_CORRUPT_TRIALS
 * sets the number of random corruptions per codec and page kind.
 */
#include "codectest.h"

static uint64_t seed;
static uint64_t trials;

static void print_seed(void)
{
    fprintf(stderr, "  seed %#" PRIx64 "\n", seed);
}

struct sample {
    unsigned char comp[2 * CT_PAGE];
    size_t len;
};

/* Decompress src into a fresh guarded dst of dst_len bytes; check the guard. */
static ssize_t decode(struct codec_ctx *ctx, const void *src, size_t src_len,
                      size_t dst_len, const char *what)
{
    struct ct_buf dst = ct_buf_new(dst_len);
    ssize_t r = codec_decompress(ctx, src, src_len, dst.p, dst_len);
    CHECKF(ct_guard_ok(&dst), "%s: wrote past dst_len %zu (returned %zd)",
           what, dst_len, r);
    CHECKF(r < 0 || r == (ssize_t)dst_len, "%s: returned %zd for dst_len %zu",
           what, r, dst_len);
    ct_buf_free(&dst);
    return r;
}

static void compress_sample(struct codec_ctx *ctx, enum ct_kind kind, struct sample *s)
{
    unsigned char page[CT_PAGE];
    ct_page(kind, 7, page, CT_PAGE);
    ssize_t n = codec_compress(ctx, page, CT_PAGE, s->comp, sizeof(s->comp));
    CHECK(n > 0);
    s->len = (size_t)n;
}

static void test_truncated(void)
{
    const struct codec_type *t;
    char what[128];

    for (size_t c = 0; (t = codec_get(c)); c++) {
        int def;
        codec_level_range(t, NULL, NULL, &def);
        struct codec_ctx *ctx = ct_ctx(t, def, CT_PAGE);
        for (int k = 0; k < CT_KIND_MAX; k++) {
            struct sample s;
            compress_sample(ctx, k, &s);
            /* Every proper prefix, including none at all. */
            for (size_t cut = 0; cut < s.len; cut++) {
                snprintf(what, sizeof(what), "%s, %s page cut to %zu of %zu bytes",
                         codec_name(t), ct_kind_names[k], cut, s.len);
                ssize_t r = decode(ctx, s.comp, cut, CT_PAGE, what);
                CHECKF(r < 0, "%s: decoded", what);
            }
        }
        codec_ctx_free(ctx);
    }
}

static void test_wrong_length(void)
{
    static const size_t deltas[] = { 1, 2, 3, 16, 1000, CT_PAGE - 1 };
    const struct codec_type *t;
    char what[128];

    for (size_t c = 0; (t = codec_get(c)); c++) {
        int def;
        codec_level_range(t, NULL, NULL, &def);
        struct codec_ctx *ctx = ct_ctx(t, def, CT_PAGE);
        for (int k = 0; k < CT_KIND_MAX; k++) {
            struct sample s;
            compress_sample(ctx, k, &s);
            CHECK_EQ(decode(ctx, s.comp, s.len, CT_PAGE, "intact"), CT_PAGE);
            for (size_t i = 0; i < sizeof(deltas) / sizeof(deltas[0]); i++) {
                snprintf(what, sizeof(what), "%s, %s page into %zu bytes",
                         codec_name(t), ct_kind_names[k], CT_PAGE - deltas[i]);
                CHECKF(decode(ctx, s.comp, s.len, CT_PAGE - deltas[i], what) < 0,
                       "%s: decoded", what);
                snprintf(what, sizeof(what), "%s, %s page into %zu bytes",
                         codec_name(t), ct_kind_names[k], CT_PAGE + deltas[i]);
                CHECKF(decode(ctx, s.comp, s.len, CT_PAGE + deltas[i], what) < 0,
                       "%s: decoded", what);
            }
            CHECKF(decode(ctx, s.comp, s.len, 0, "into 0 bytes") < 0, "decoded");
        }
        codec_ctx_free(ctx);
    }
}

/*
 * Random damage: flip one bit, overwrite a byte, overwrite a run, append
 * junk, or cut and append.  Any outcome but a crash, an overrun or a length
 * other than dst_len is allowed.
 */
static void test_random_damage(void)
{
    const struct codec_type *t;
    struct test_rng rng;
    char what[160];

    rng_seed(&rng, seed);
    for (size_t c = 0; (t = codec_get(c)); c++) {
        int def;
        codec_level_range(t, NULL, NULL, &def);
        struct codec_ctx *ctx = ct_ctx(t, def, CT_PAGE);
        unsigned long failed = 0, decoded = 0;
        for (int k = 0; k < CT_KIND_MAX; k++) {
            struct sample s, bad;
            compress_sample(ctx, k, &s);
            for (uint64_t i = 0; i < trials; i++) {
                bad = s;
                unsigned how = (unsigned)rng_below(&rng, 5);
                size_t pos = rng_below(&rng, s.len);
                switch (how) {
                case 0:
                    bad.comp[pos] ^= (unsigned char)(1u << rng_below(&rng, 8));
                    break;
                case 1:
                    bad.comp[pos] = (unsigned char)rng_next(&rng);
                    break;
                case 2: {
                    size_t n = rng_range(&rng, 1, s.len - pos);
                    rng_fill(&rng, bad.comp + pos, n);
                    break;
                }
                case 3: {
                    size_t n = rng_range(&rng, 1, 64);
                    rng_fill(&rng, bad.comp + s.len, n);
                    bad.len += n;
                    break;
                }
                default: {
                    size_t n = rng_range(&rng, 1, 64);
                    rng_fill(&rng, bad.comp + pos, n);
                    bad.len = pos + n;
                    break;
                }
                }
                snprintf(what, sizeof(what), "%s, %s page, trial %" PRIu64
                         " (damage %u at %zu, %zu bytes)", codec_name(t),
                         ct_kind_names[k], i, how, pos, bad.len);
                if (decode(ctx, bad.comp, bad.len, CT_PAGE, what) < 0)
                    failed++;
                else
                    decoded++;
            }
        }
        printf("  %s: %lu damaged blocks refused, %lu decoded to some page\n",
               codec_name(t), failed, decoded);
        codec_ctx_free(ctx);
    }
}

/* Noise of every length up to two pages. */
static void test_noise(void)
{
    const struct codec_type *t;
    struct test_rng rng;
    unsigned char noise[2 * CT_PAGE];
    char what[128];

    rng_seed(&rng, seed ^ 0x6e6f697365);
    for (size_t c = 0; (t = codec_get(c)); c++) {
        int def;
        codec_level_range(t, NULL, NULL, &def);
        struct codec_ctx *ctx = ct_ctx(t, def, CT_PAGE);
        for (size_t len = 0; len <= sizeof(noise); len += 1 + len / 8) {
            rng_fill(&rng, noise, len);
            snprintf(what, sizeof(what), "%s, %zu bytes of noise", codec_name(t), len);
            decode(ctx, noise, len, CT_PAGE, what);
            decode(ctx, noise, len, 100, what);
        }
        codec_ctx_free(ctx);
    }
}

int main(int argc, char **argv)
{
    if (ct_codec_count() == 0) {
        printf("no codec built in\n");
        return TEST_SKIP;
    }
    seed = test_seed(argc, argv, 0xc0dec);
    trials = test_env_u64("UZRAM_CORRUPT_TRIALS", 2000);
    printf("seed %#" PRIx64 ", %" PRIu64 " trials\n", seed, trials);
    test_fail_hook = print_seed;
    ct_corpus_init();
    RUN_TEST(test_truncated);
    RUN_TEST(test_wrong_length);
    RUN_TEST(test_random_damage);
    RUN_TEST(test_noise);
    return 0;
}
