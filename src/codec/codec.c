/* SPDX-License-Identifier: MIT */
/*
 * The codec layer's front (doc/codec.md): the table of codecs built in,
 * and the checks every call passes before a backend sees it (a level in
 * the codec's range, max_len 1..CODEC_MAX_LEN, src_len within the
 * context's max_len, dst_len within CODEC_MAX_LEN), so that the backends
 * convert their library's errors and nothing else ("Backends").  A
 * context belongs to one thread at a time, and once made it never
 * allocates for a full page ("A context per thread";
 * tests/codec/test-codec-noalloc.c).  -E2BIG is the store's "keep it raw",
 * not a failure ("Why -E2BIG"; tests/codec/test-codec-e2big.c).  A block
 * that decodes to any length but dst_len is -EIO.
 */
#include "codec-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* In codec_get() order; NULL-terminated so the list is never empty. */
static const struct codec_type *const codecs[] = {
#if HAVE_LZ4
    &codec_lz4,
    &codec_lz4hc,
#endif
#if HAVE_ZSTD
    &codec_zstd,
#endif
    NULL,
};

const struct codec_type *codec_find(const char *name)
{
    for (const struct codec_type *const *t = codecs; *t; t++) {
        if (strcmp((*t)->name, name) == 0)
            return *t;
    }
    return NULL;
}

const struct codec_type *codec_get(size_t i)
{
    if (i >= sizeof(codecs) / sizeof(codecs[0]))
        return NULL;
    return codecs[i];
}

const char *codec_name(const struct codec_type *type)
{
    return type->name;
}

void codec_level_range(const struct codec_type *type,
                       int *ret_min, int *ret_max, int *ret_default)
{
    int min, max, def;

    type->level_range(&min, &max, &def);
    if (ret_min)
        *ret_min = min;
    if (ret_max)
        *ret_max = max;
    if (ret_default)
        *ret_default = def;
}

struct codec_ctx *codec_ctx_new(const struct codec_type *type, int level,
                                size_t max_len)
{
    int min, max;

    codec_level_range(type, &min, &max, NULL);
    if (level < min || level > max || max_len == 0 || max_len > CODEC_MAX_LEN) {
        errno = EINVAL;
        return NULL;
    }
    struct codec_ctx *ctx = type->ctx_new(level, max_len);
    if (!ctx)
        return NULL;
    ctx->type = type;
    ctx->level = level;
    ctx->max_len = max_len;
    return ctx;
}

struct codec_ctx *codec_dctx_new(const struct codec_type *type)
{
    int def;

    codec_level_range(type, NULL, NULL, &def);
    struct codec_ctx *ctx = type->ctx_new(def, 0);
    if (!ctx)
        return NULL;
    ctx->type = type;
    ctx->level = def;
    ctx->max_len = 0;
    return ctx;
}

void codec_ctx_free(struct codec_ctx *ctx)
{
    if (ctx)
        ctx->type->ctx_free(ctx);
}

ssize_t codec_compress(struct codec_ctx *ctx, const void *src, size_t src_len,
                       void *dst, size_t dst_cap)
{
    if (src_len > ctx->max_len || ctx->max_len == 0)
        return -EINVAL;
    return ctx->type->compress(ctx, src, src_len, dst, dst_cap);
}

ssize_t codec_decompress(struct codec_ctx *ctx, const void *src, size_t src_len,
                         void *dst, size_t dst_len)
{
    if (dst_len > CODEC_MAX_LEN)
        return -EINVAL;
    ssize_t r = ctx->type->decompress(ctx, src, src_len, dst, dst_len);
    /* A block of any other length is not the one that was compressed. */
    if (r >= 0 && (size_t)r != dst_len)
        return -EIO;
    return r;
}
