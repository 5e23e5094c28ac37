/* SPDX-License-Identifier: MIT */
/*
 * Between codec.c and the backends (lz4.c, zstd.c); not for users of the
 * layer, who see only codec.h.
 *
 * codec.c checks every argument a caller can get wrong (level, lengths)
 * before it calls a backend, so the backends convert their library's error
 * style and nothing else.
 */
#ifndef UZRAM_CODEC_INTERNAL_H
#define UZRAM_CODEC_INTERNAL_H

#include "config.h"

#include <stddef.h>
#include <sys/types.h>

#include "codec.h"

/*
 * A backend: one per codec, constant.  Each backend's context type embeds
 * struct codec_ctx as its first member, so that a struct codec_ctx * and a
 * pointer to the backend's own struct are the same pointer.
 */
struct codec_type {
    const char *name;

    void (*level_range)(int *ret_min, int *ret_max, int *ret_default);

    /*
     * Allocate a context with everything it will need for inputs of up to
     * max_len bytes; level and max_len are valid.  The backend fills in only
     * its own part; codec.c sets the base struct.  NULL with errno on
     * failure.
     */
    /* max_len 0: a context for codec_dctx_new(), that only decompresses. */
    struct codec_ctx *(*ctx_new)(int level, size_t max_len);
    void (*ctx_free)(struct codec_ctx *ctx);       /* never given NULL */

    /* src_len <= ctx->max_len <= CODEC_MAX_LEN; returns as codec_compress(). */
    ssize_t (*compress)(struct codec_ctx *ctx, const void *src, size_t src_len,
                        void *dst, size_t dst_cap);
    /*
     * dst_len <= CODEC_MAX_LEN; returns the length decoded (at most dst_len)
     * or -EIO.  codec_decompress() turns any length but dst_len into -EIO.
     */
    ssize_t (*decompress)(struct codec_ctx *ctx, const void *src, size_t src_len,
                          void *dst, size_t dst_len);
};

struct codec_ctx {
    const struct codec_type *type;
    int level;
    size_t max_len;
};

#if HAVE_LZ4
extern const struct codec_type codec_lz4;
extern const struct codec_type codec_lz4hc;
#endif
#if HAVE_ZSTD
extern const struct codec_type codec_zstd;
#endif

#endif /* UZRAM_CODEC_INTERNAL_H */
