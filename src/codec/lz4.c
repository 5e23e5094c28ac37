/* SPDX-License-Identifier: MIT */
/*
 * The lz4 and lz4hc backends.  Both write lz4's block format, so one decoder
 * (LZ4_decompress_safe(), which checks every length against both buffers)
 * serves them.  A context holds the compressor's state, which lz4 lets the
 * caller allocate: LZ4_sizeofState() bytes (16 KiB) for lz4,
 * LZ4_sizeofStateHC() (256 KiB) for lz4hc.  Decompression needs no state.
 *
 * lz4 reports failure as 0 (compression) or a negative number
 * (decompression) with no reason.  Since codec.c has checked the lengths, a
 * failed compression can only mean that the output did not fit: -E2BIG.
 */
#include "codec-internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include <lz4.h>
#include <lz4hc.h>

#include "cleanup.h"

/* LZ4_ACCELERATION_MAX, which lz4.c keeps to itself; beyond it lz4 clamps. */
#define LZ4_ACCEL_MAX 65537

struct lz4_ctx {
    struct codec_ctx c;
    void *state;            /* LZ4_stream_t or LZ4_streamHC_t */
};

static void lz4_levels(int *ret_min, int *ret_max, int *ret_default)
{
    *ret_min = 1;
    *ret_max = LZ4_ACCEL_MAX;
    *ret_default = 1;
}

/*
 * lz4hc documents every level from 1 up as valid (LZ4HC_CLEVEL_MIN, 3, is
 * merely the first that differs from its neighbour); below 1 it would
 * silently use the default.  Its top levels, LZ4HC_CLEVEL_OPT_MIN (10) to
 * LZ4HC_CLEVEL_MAX (12), run an optimal parser that mallocs a 64 KiB table
 * on every call in lz4 as distributions build it (LZ4HC_HEAPMODE), which
 * would break the promise that compression never allocates
 * (tests/codec/test-codec-noalloc.c), for a gain too small to pay for it
 * (doc/codec.md, "What a level means", has the figures).
 */
static void lz4hc_levels(int *ret_min, int *ret_max, int *ret_default)
{
    *ret_min = 1;
    *ret_max = LZ4HC_CLEVEL_OPT_MIN - 1;
    *ret_default = LZ4HC_CLEVEL_DEFAULT;
}

static struct codec_ctx *lz4_ctx_alloc(size_t state_size)
{
    _cleanup_free_ struct lz4_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return NULL;
    /* malloc's 16-byte alignment covers the states' (that of a pointer). */
    ctx->state = malloc(state_size);
    if (!ctx->state)
        return NULL;
    return &TAKE_PTR(ctx)->c;
}

static struct codec_ctx *lz4_ctx_new(int level, size_t max_len)
{
    (void)level, (void)max_len;
    return lz4_ctx_alloc((size_t)LZ4_sizeofState());
}

static struct codec_ctx *lz4hc_ctx_new(int level, size_t max_len)
{
    (void)level, (void)max_len;
    return lz4_ctx_alloc((size_t)LZ4_sizeofStateHC());
}

static void lz4_ctx_free(struct codec_ctx *c)
{
    struct lz4_ctx *ctx = (struct lz4_ctx *)c;

    free(ctx->state);
    free(ctx);
}

/* lz4 takes int lengths; a capacity beyond INT_MAX is as good as INT_MAX. */
static int cap_to_int(size_t cap)
{
    return cap > INT_MAX ? INT_MAX : (int)cap;
}

static ssize_t lz4_compress(struct codec_ctx *c, const void *src, size_t src_len,
                            void *dst, size_t dst_cap)
{
    struct lz4_ctx *ctx = (struct lz4_ctx *)c;
    int r = LZ4_compress_fast_extState(ctx->state, src, dst, (int)src_len,
                                       cap_to_int(dst_cap), c->level);
    return r > 0 ? r : -E2BIG;
}

static ssize_t lz4hc_compress(struct codec_ctx *c, const void *src, size_t src_len,
                              void *dst, size_t dst_cap)
{
    struct lz4_ctx *ctx = (struct lz4_ctx *)c;
    int r = LZ4_compress_HC_extStateHC(ctx->state, src, dst, (int)src_len,
                                       cap_to_int(dst_cap), c->level);
    return r > 0 ? r : -E2BIG;
}

static ssize_t lz4_decompress(struct codec_ctx *c, const void *src, size_t src_len,
                              void *dst, size_t dst_len)
{
    (void)c;
    /* No valid block of at most CODEC_MAX_LEN bytes is this long. */
    if (src_len > INT_MAX)
        return -EIO;
    int r = LZ4_decompress_safe(src, dst, (int)src_len, (int)dst_len);
    return r >= 0 ? r : -EIO;
}

const struct codec_type codec_lz4 = {
    .name = "lz4",
    .level_range = lz4_levels,
    .ctx_new = lz4_ctx_new,
    .ctx_free = lz4_ctx_free,
    .compress = lz4_compress,
    .decompress = lz4_decompress,
};

const struct codec_type codec_lz4hc = {
    .name = "lz4hc",
    .level_range = lz4hc_levels,
    .ctx_new = lz4hc_ctx_new,
    .ctx_free = lz4_ctx_free,
    .compress = lz4hc_compress,
    .decompress = lz4_decompress,
};
