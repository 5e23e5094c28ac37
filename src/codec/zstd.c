/* SPDX-License-Identifier: MIT */
/*
 * The zstd backend.  A context holds a ZSTD_CCtx whose parameters are set
 * once (level, and no content size, checksum or dictionary id in the frame
 * header: doc/codec.md, "Why these zstd frame flags") and a ZSTD_DCtx.
 * Only zstd's stable API is used.
 *
 * zstd allocates a compression context's tables lazily, on the first
 * compression, sized for that input (its window and tables shrink to fit a
 * small input); a later input that needs more makes it grow them.
 * ctx_new() therefore compresses max_len bytes once, so that the tables are
 * there, sized for a full page, before the context is handed out.  zstd also
 * shrinks them, when an input needs under a third of them and they have
 * served more than 128 calls; full pages never do, so a store that
 * compresses whole pages never allocates after ctx_new().  Decompressing a
 * whole frame into a buffer with ZSTD_decompressDCtx() needs no memory beyond
 * the ZSTD_DCtx itself.
 *
 * zstd reports errors as size_t values that ZSTD_isError() recognises;
 * ZSTD_getErrorCode() says which.
 */
#include "codec-internal.h"

#include <errno.h>
#include <stdlib.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "cleanup.h"

struct zstd_ctx {
    struct codec_ctx c;
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
};

static void zstd_levels(int *ret_min, int *ret_max, int *ret_default)
{
    *ret_min = ZSTD_minCLevel();
    *ret_max = ZSTD_maxCLevel();
    /* ZSTD_CLEVEL_DEFAULT, which zstd.h keeps to its static-linking API. */
    *ret_default = 3;
}

static void zstd_ctx_free(struct codec_ctx *c)
{
    struct zstd_ctx *ctx = (struct zstd_ctx *)c;

    ZSTD_freeCCtx(ctx->cctx);
    ZSTD_freeDCtx(ctx->dctx);
    free(ctx);
}

static void zstd_ctx_freep(struct zstd_ctx **ctx)
{
    if (*ctx)
        zstd_ctx_free(&(*ctx)->c);
}

static int zstd_errno(size_t r)
{
    switch (ZSTD_getErrorCode(r)) {
    case ZSTD_error_dstSize_tooSmall:
        return -E2BIG;
    case ZSTD_error_memory_allocation:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

/* Set the context's parameters once; ZSTD_compress2() keeps them. */
static int zstd_set_params(ZSTD_CCtx *cctx, int level)
{
    static const struct {
        ZSTD_cParameter param;
        int value;
    } flags[] = {
        { ZSTD_c_contentSizeFlag, 0 },
        { ZSTD_c_checksumFlag, 0 },
        { ZSTD_c_dictIDFlag, 0 },
    };

    if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)))
        return -EINVAL;
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, flags[i].param, flags[i].value)))
            return -EINVAL;
    }
    return 0;
}

/* Make zstd allocate what inputs of max_len bytes need, and check it works. */
static int zstd_warm_up(struct zstd_ctx *ctx, size_t max_len)
{
    size_t bound = ZSTD_compressBound(max_len);
    _cleanup_free_ void *src = calloc(1, max_len);
    _cleanup_free_ void *dst = malloc(bound);
    if (!src || !dst)
        return -ENOMEM;

    size_t n = ZSTD_compress2(ctx->cctx, dst, bound, src, max_len);
    if (ZSTD_isError(n))
        return zstd_errno(n);
    size_t r = ZSTD_decompressDCtx(ctx->dctx, src, max_len, dst, n);
    if (ZSTD_isError(r))
        return zstd_errno(r);
    return r == max_len ? 0 : -EIO;
}

static struct codec_ctx *zstd_ctx_new(int level, size_t max_len)
{
    _cleanup_(zstd_ctx_freep) struct zstd_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return NULL;
    ctx->cctx = ZSTD_createCCtx();
    ctx->dctx = ZSTD_createDCtx();
    if (!ctx->cctx || !ctx->dctx) {
        errno = ENOMEM;
        return NULL;
    }
    int r = zstd_set_params(ctx->cctx, level);
    /* A context that only decompresses never compresses: no tables to warm. */
    if (r >= 0 && max_len)
        r = zstd_warm_up(ctx, max_len);
    if (r < 0) {
        errno = -r;
        return NULL;
    }
    return &TAKE_PTR(ctx)->c;
}

static ssize_t zstd_compress(struct codec_ctx *c, const void *src, size_t src_len,
                             void *dst, size_t dst_cap)
{
    struct zstd_ctx *ctx = (struct zstd_ctx *)c;
    size_t r = ZSTD_compress2(ctx->cctx, dst, dst_cap, src, src_len);
    return ZSTD_isError(r) ? zstd_errno(r) : (ssize_t)r;
}

static ssize_t zstd_decompress(struct codec_ctx *c, const void *src, size_t src_len,
                               void *dst, size_t dst_len)
{
    struct zstd_ctx *ctx = (struct zstd_ctx *)c;
    size_t r = ZSTD_decompressDCtx(ctx->dctx, dst, dst_len, src, src_len);
    /* Whatever zstd's reason, src is not a block that fits dst. */
    return ZSTD_isError(r) ? -EIO : (ssize_t)r;
}

const struct codec_type codec_zstd = {
    .name = "zstd",
    .level_range = zstd_levels,
    .ctx_new = zstd_ctx_new,
    .ctx_free = zstd_ctx_free,
    .compress = zstd_compress,
    .decompress = zstd_decompress,
};
