/* SPDX-License-Identifier: MIT */
/*
 * The codec layer: compress and decompress one block (typically a 4 KiB page)
 * with lz4, lz4hc or zstd, behind one interface, for the block store.
 *
 * A codec type is a constant, named entry in a table (codec_find(),
 * codec_get()); a context is the state one thread needs to run it at one
 * level.  Each thread that compresses or decompresses owns its own context,
 * so no lock is shared between threads; a context may move between threads
 * but must never be used by two at once.  Everything else here is
 * thread-safe.
 *
 * Conventions: functions return a length or 0 on success and a negative
 * errno on failure; constructors return NULL and set errno.  Nothing here
 * logs or aborts on bad input, and corrupt compressed data is bad input.
 */
#ifndef UZRAM_CODEC_H
#define UZRAM_CODEC_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Largest block a context compresses or decompresses: 1 GiB keeps every
 * length and lz4's worst-case output (len + len/255 + 16) inside an int.
 */
#define CODEC_MAX_LEN (1u << 30)

struct codec_type;
struct codec_ctx;

/*
 * The codec called name ("lz4", "lz4hc", "zstd"), or NULL if there is none
 * by that name or it was not built in.
 */
const struct codec_type *codec_find(const char *name) __attribute__((nonnull));

/*
 * The i-th codec built in, for listing them; NULL once i is past the last.
 * The order is stable within a build: lz4, lz4hc, zstd, less those missing.
 */
const struct codec_type *codec_get(size_t i);

/* The codec's name, as codec_find() takes it. */
const char *codec_name(const struct codec_type *type) __attribute__((nonnull));

/*
 * The levels the codec accepts, [*ret_min, *ret_max], and the level it is
 * meant to be used at.  Any ret_ pointer may be NULL.  For lz4 the level is
 * an acceleration: higher is faster and compresses less.  For lz4hc and
 * zstd, higher is slower and compresses more.  doc/codec.md, "What a level
 * means", has the details and the figures.
 */
void codec_level_range(const struct codec_type *type,
                       int *ret_min, int *ret_max, int *ret_default)
    __attribute__((nonnull(1)));

/*
 * A context to run type at level, for inputs of at most max_len bytes (the
 * store's page size).  Everything the context needs is allocated here:
 * after this, codec_compress() of max_len bytes and codec_decompress() of
 * anything never allocate, so a thread with a context can make progress
 * when memory is short.  Shorter inputs work as well, but zstd may then
 * resize its tables (free and malloc): it shrinks them for an input that
 * needs under a third of them once they have served 128 calls, and grows
 * them back for the next full-sized input.
 *
 * Returns NULL with errno EINVAL for a level outside codec_level_range() or
 * max_len 0 or above CODEC_MAX_LEN, ENOMEM when memory cannot be had.
 */
struct codec_ctx *codec_ctx_new(const struct codec_type *type, int level,
                                size_t max_len)
    __attribute__((nonnull(1)));

/*
 * A context that only decompresses (codec_compress() answers -EINVAL): for
 * a thread that reads what another compressed, without the compressor's
 * tables (zstd's take about a MiB at the levels and sizes of bundles).
 * NULL with errno ENOMEM.
 */
struct codec_ctx *codec_dctx_new(const struct codec_type *type) __attribute__((nonnull));
/* Free a context.  Accepts NULL. */
void codec_ctx_free(struct codec_ctx *ctx);

/*
 * Compress src_len bytes (at most the context's max_len) from src into dst,
 * a buffer of dst_cap bytes that must not overlap src.  Returns the
 * compressed length (at most dst_cap), or:
 *   -E2BIG   the output does not fit in dst_cap.  The store passes the
 *            largest size worth storing, so this means "store it raw"; it is
 *            an answer, not a failure, and costs no more than compressing.
 *            zstd wants up to ~8 bytes of room beyond its output, so it may
 *            answer this for an output just under dst_cap (lz4 never does);
 *   -EINVAL  src_len exceeds the context's max_len;
 *   -EIO, -ENOMEM  the library failed for another reason, which once
 *            codec_ctx_new() has succeeded means a bug.
 * Bytes of dst past the returned length, or all of dst on failure, are
 * unspecified; nothing past dst + dst_cap is written.  Output depends only on
 * the input, the codec and the level, not on the context's history.
 */
ssize_t codec_compress(struct codec_ctx *ctx, const void *src, size_t src_len,
                       void *dst, size_t dst_cap)
    __attribute__((nonnull(1, 2, 4)));

/*
 * Decompress the block of src_len bytes at src into dst, which must not
 * overlap it.  The block must decode to exactly dst_len bytes: the length
 * that was compressed.  Any context of the same codec type decompresses what
 * another compressed, at any level.  Returns dst_len, or:
 *   -EIO     src is not a complete block of exactly dst_len bytes (corrupt,
 *            truncated, or decoding to another length);
 *   -EINVAL  dst_len exceeds CODEC_MAX_LEN.
 * Corrupt input never makes this crash or write past dst + dst_len, but on
 * failure dst holds garbage.  Neither codec checksums its blocks (doc/codec.md,
 * "Why these zstd frame flags"): some corruptions decode "successfully" to
 * the wrong bytes.
 */
ssize_t codec_decompress(struct codec_ctx *ctx, const void *src, size_t src_len,
                         void *dst, size_t dst_len)
    __attribute__((nonnull(1, 2, 4)));

#endif /* UZRAM_CODEC_H */
