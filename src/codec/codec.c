/* SPDX-License-Identifier: MIT */
/*
 * The codec layer: one interface to lz4, lz4hc and zstd for the block store.
 *
 * The job.  The store compresses one page at a time as it is written and
 * decompresses one page at a time as it is read, from several threads (one
 * per FUSE or NBD worker), in a daemon that may be serving swap.  So the
 * layer is shaped by three things: blocks are small (4 KiB), calls are many
 * and concurrent, and the write path must not need memory.
 *
 * Backends.  Each codec is a constant struct codec_type of function pointers
 * with a name, and each backend's context embeds struct codec_ctx first, as
 * nbdkit's allocators embed struct allocator (codec-internal.h).  This file
 * checks arguments and dispatches; lz4.c and zstd.c turn their library's
 * conventions into negative errnos at the boundary: lz4 returns 0 or a
 * negative int where it fails, zstd a size_t that ZSTD_isError() recognises.
 *
 * Why a context per thread.  Both libraries need working memory to compress:
 * lz4 a 16 KiB hash table, lz4hc 256 KiB of hash and chain tables, zstd a
 * ZSTD_CCtx (72-270 KiB for a 4 KiB input, by level) and, to decompress, a
 * ZSTD_DCtx of 94 KiB.  Making it per call costs an allocation and its page
 * faults on every page, and may fail when memory is short, which is exactly
 * when a swap device is written to.  One shared context needs a lock held
 * across the whole compression, which serialises the costly part of every
 * write.  A pool of contexts needs a lock (or a lock-free list) on the hot
 * path and a policy for when it runs dry.  A context owned by each thread
 * needs none of that: it is made with the thread, costs the memory above
 * times the number of threads, and nothing else ever touches it, which
 * ThreadSanitizer can check.  codec_ctx_new() takes the largest input the
 * context will see and has zstd allocate for it at once, by compressing
 * max_len zero bytes: zstd sizes its tables to each input, so the first real
 * page would otherwise allocate on the write path.  lz4's tables do not
 * depend on the input.  After that, compressing a full page and
 * decompressing anything never allocate (tests/codec/test-codec-noalloc.c
 * counts malloc calls).  That rules out lz4hc's levels 10..12, which malloc
 * on every call (lz4.c).
 *
 * Why -E2BIG.  A page that compresses to the allocator's huge class size
 * (3,841 bytes; zs_huge_class_size()) or more takes a whole page in the pool
 * anyway, so the store keeps it uncompressed, which also makes it free to
 * read back.  The store therefore passes the largest useful output size as
 * dst_cap, and "did not fit" must cost no more than compressing and be
 * unmistakable.  It costs no more: lz4 in its limited-output mode stops when
 * the output would pass dst_cap, zstd when neither its compressed block nor
 * the raw one fits (on a random page, either takes what a full compression
 * does, 1 us for lz4 and 4 us for zstd), with no worst-case-sized buffer
 * (lz4's bound for 4 KiB is 4,112 bytes) and no second comparison.  It is
 * unmistakable: an errno of its own, apart from real failures, which are
 * bugs.  lz4 fills dst_cap to the last byte; zstd wants up to ~8 bytes of
 * room beyond what it writes, so it may refuse an output just under the
 * limit, which costs the store nothing worth having.
 *
 * Why these zstd frame flags.  A zstd frame is meant to stand alone, so by
 * default it records the content size, and can carry a 4-byte XXH64
 * checksum and a dictionary id.  The store keeps each page's length itself
 * and only ever decompresses into a buffer of exactly that length, which
 * zstd fills without the size from the frame; leaving it out saves a byte
 * per page (a 2-byte size field replaces a 1-byte window descriptor).  The
 * dictionary id is written only when a dictionary is used, which we do not
 * yet do; the flag keeps it out should we start, since the store would know
 * its dictionary anyway.  The checksum would be 4 bytes on every object of
 * ~1-2 KiB, plus an XXH64 of every page on both paths, to catch corruption
 * of memory that only this process writes; lz4 blocks have no checksum
 * either, so the store has one integrity story for every codec (none, as in
 * the kernel's zram).  What is left is a 6-byte frame header (magic,
 * descriptor, window byte) and a 3-byte block header; the 4-byte magic could
 * go too with zstd's magicless format, which is experimental API, so not yet.
 *
 * What a level means.  The figures are for 4 KiB pages of a tar of
 * /usr/lib on one core of the development machine, where the defaults
 * compress lz4 1.74:1 at 760 MB/s, lz4hc 1.88:1 at 115 MB/s, zstd 2.37:1 at
 * 220 MB/s; lz4 and lz4hc decompress at 3.1-3.4 GB/s, zstd at 0.7 GB/s.
 *   lz4    1..65537, default 1: the "acceleration" of LZ4_compress_fast().
 *          1 is lz4's normal search; each step up lets the match finder skip
 *          ahead faster over bytes that do not match: faster, and larger.
 *          At 8 it runs 1.8 times as fast and a fifth of the pages no longer
 *          shrink below the huge class; at 64, 60%; from 1,024 up, 95% or
 *          more.  65537 is lz4's own ceiling (LZ4_ACCELERATION_MAX, private
 *          to lz4.c).
 *   lz4hc  1..9, default 9: lz4's format (the same decoder, as fast) found
 *          by a slower, better search that follows hash chains, 2 (levels 1
 *          and 2 alike in lz4 1.9), 4, 8, ... 256 attempts per position.
 *          lz4hc's levels 10..12, its optimal parser, are left out: they
 *          malloc on every call and gain 0.1% at a third of the speed.
 *   zstd   ZSTD_minCLevel()..ZSTD_maxCLevel() (-131072..22 in zstd 1.5),
 *          default 3.  Negative levels are zstd's fast mode, whose magnitude
 *          is an acceleration like lz4's (the lowest store everything raw);
 *          1..19 search ever harder with larger tables; 20..22 add mostly
 *          window, which a 4 KiB input cannot use, and change a few bytes of
 *          one page in ten over 19.  Level 0 means the default, as in zstd.
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

void codec_ctx_free(struct codec_ctx *ctx)
{
    if (ctx)
        ctx->type->ctx_free(ctx);
}

ssize_t codec_compress(struct codec_ctx *ctx, const void *src, size_t src_len,
                       void *dst, size_t dst_cap)
{
    if (src_len > ctx->max_len)
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
