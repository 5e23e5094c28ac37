/* SPDX-License-Identifier: MIT */
/*
 * codec_find(), codec_get(), codec_name(), codec_level_range(), and the
 * argument checks of codec_ctx_new(), codec_compress() and
 * codec_decompress(): the codecs built in are found by name and listed in
 * order, no other name is found, and every out-of-range level or length is
 * refused with EINVAL.
 */
#include "config.h"

#include <limits.h>

#include "codectest.h"

struct expect {
    const char *name;
    bool built;
};

static const struct expect expected[] = {
    { "lz4", HAVE_LZ4 },
    { "lz4hc", HAVE_LZ4 },
    { "zstd", HAVE_ZSTD },
};

static void test_find_known(void)
{
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        const struct codec_type *t = codec_find(expected[i].name);
        CHECKF(!t == !expected[i].built, "codec_find(\"%s\") = %p, built %d",
               expected[i].name, (const void *)t, expected[i].built);
        if (t)
            CHECK(strcmp(codec_name(t), expected[i].name) == 0);
    }
}

static void test_get_lists_built_in_order(void)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        if (!expected[i].built)
            continue;
        const struct codec_type *t = codec_get(n);
        CHECKF(t, "codec_get(%zu) = NULL, expected %s", n, expected[i].name);
        CHECKF(t == codec_find(expected[i].name), "codec_get(%zu) is %s, expected %s",
               n, codec_name(t), expected[i].name);
        n++;
    }
    CHECK(codec_get(n) == NULL);
    CHECK(codec_get(n + 1) == NULL);
    CHECK(codec_get(SIZE_MAX) == NULL);
    CHECK_EQU(ct_codec_count(), n);
}

static void test_find_unknown(void)
{
    static const char *const names[] = {
        "", "LZ4", "Zstd", "lz", "lz4 ", " lz4", "lz4\n", "zstd-1", "lz4hc9",
        "raw", "lzo", "lzo-rle", "deflate", "842", "none",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        CHECKF(codec_find(names[i]) == NULL, "codec_find(\"%s\") found a codec", names[i]);
}

static void test_level_ranges(void)
{
    const struct codec_type *t;
    int min = 0, max = 0, def = 0;

    if ((t = codec_find("lz4"))) {
        codec_level_range(t, &min, &max, &def);
        CHECK_EQ(min, 1);
        CHECK_EQ(max, 65537);
        CHECK_EQ(def, 1);
    }
    if ((t = codec_find("lz4hc"))) {
        codec_level_range(t, &min, &max, &def);
        CHECK_EQ(min, 1);
        /* 10..12 allocate on every call (lz4.c). */
        CHECK_EQ(max, 9);
        CHECK_EQ(def, 9);
    }
    if ((t = codec_find("zstd"))) {
        codec_level_range(t, &min, &max, &def);
        CHECKF(min < 0, "zstd has fast (negative) levels, min %d", min);
        CHECKF(max >= 19, "zstd max level %d", max);
        CHECK_EQ(def, 3);
    }
    /* Every ret_ pointer is optional. */
    for (size_t i = 0; (t = codec_get(i)); i++) {
        int d2 = INT_MIN;
        codec_level_range(t, NULL, NULL, NULL);
        codec_level_range(t, NULL, NULL, &d2);
        codec_level_range(t, &min, &max, &def);
        CHECK_EQ(d2, def);
    }
}

static void check_einval(const struct codec_type *t, int level, size_t max_len)
{
    errno = 0;
    struct codec_ctx *ctx = codec_ctx_new(t, level, max_len);
    CHECKF(!ctx && errno == EINVAL,
           "codec_ctx_new(%s, %d, %zu) = %p, errno %d, expected NULL/EINVAL",
           codec_name(t), level, max_len, (void *)ctx, errno);
}

static void test_ctx_new_checks_level(void)
{
    const struct codec_type *t;
    for (size_t i = 0; (t = codec_get(i)); i++) {
        int min, max, def;
        codec_level_range(t, &min, &max, &def);
        check_einval(t, min - 1, CT_PAGE);
        check_einval(t, max + 1, CT_PAGE);
        check_einval(t, INT_MIN, CT_PAGE);
        check_einval(t, INT_MAX, CT_PAGE);
        int ok[] = { min, def, max };
        for (size_t j = 0; j < 3; j++)
            codec_ctx_free(ct_ctx(t, ok[j], CT_PAGE));
    }
}

static void test_ctx_new_checks_max_len(void)
{
    const struct codec_type *t;
    for (size_t i = 0; (t = codec_get(i)); i++) {
        int def;
        codec_level_range(t, NULL, NULL, &def);
        check_einval(t, def, 0);
        check_einval(t, def, (size_t)CODEC_MAX_LEN + 1);
        check_einval(t, def, SIZE_MAX);
        codec_ctx_free(ct_ctx(t, def, 1));
    }
}

static void test_ctx_free_null(void)
{
    codec_ctx_free(NULL);
}

static void test_lengths_checked(void)
{
    const struct codec_type *t;
    static unsigned char src[2 * CT_PAGE], dst[2 * CT_PAGE];

    for (size_t i = 0; (t = codec_get(i)); i++) {
        int def;
        codec_level_range(t, NULL, NULL, &def);
        struct codec_ctx *ctx = ct_ctx(t, def, CT_PAGE);
        /* The context was made for pages: a longer input is refused. */
        CHECK_EQ(codec_compress(ctx, src, CT_PAGE + 1, dst, sizeof(dst)), -EINVAL);
        CHECK_EQ(codec_compress(ctx, src, SIZE_MAX, dst, sizeof(dst)), -EINVAL);
        CHECK(codec_compress(ctx, src, CT_PAGE, dst, sizeof(dst)) > 0);
        /* Before looking at src: a dst_len this large cannot be valid. */
        CHECK_EQ(codec_decompress(ctx, src, 16, dst, (size_t)CODEC_MAX_LEN + 1), -EINVAL);
        CHECK_EQ(codec_decompress(ctx, src, 16, dst, SIZE_MAX), -EINVAL);
        codec_ctx_free(ctx);
    }
}

int main(void)
{
    RUN_TEST(test_find_known);
    RUN_TEST(test_get_lists_built_in_order);
    RUN_TEST(test_find_unknown);
    RUN_TEST(test_level_ranges);
    RUN_TEST(test_ctx_new_checks_level);
    RUN_TEST(test_ctx_new_checks_max_len);
    RUN_TEST(test_ctx_free_null);
    RUN_TEST(test_lengths_checked);
    return 0;
}
