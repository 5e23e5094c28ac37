/* SPDX-License-Identifier: MIT */
/*
 * The backing store's front (doc/backing.md): what the store sees above
 * the backends' table.  Space is one bit per block under b->lock, handed
 * out next-fit ("Space").  Every block number and length is checked here
 * before a backend sees it, and no backend is called under b->lock.  A
 * block stays allocated when a write to it fails: only its owner gives it
 * back ("A full file system").  Every call's outcome is counted here, in
 * relaxed atomics written without the lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backing-internal.h"
#include "cleanup.h"
#include "counter.h"

/* Set the bits past the last block so no search ever returns them. */
static int bitmap_init(struct backing *b)
{
    b->words = (b->blocks + 63) / 64;
    b->bitmap = calloc(b->words, sizeof(uint64_t));
    if (!b->bitmap)
        return -ENOMEM;
    unsigned tail = (unsigned)(b->blocks % 64);
    if (tail)
        b->bitmap[b->words - 1] = ~0ull << tail;
    return 0;
}

/*
 * The longest discard sent at once: 2^18 blocks (1 GiB), under NBD's
 * 32-bit request length.
 */
#define DISCARD_RUN_MAX (UINT64_C(1) << 18)

/*
 * Discard blocks [start, start + n) in requests of DISCARD_RUN_MAX at
 * most.  Best effort; an NBD server that is away, or stops answering,
 * ends it after one request rather than costing a timeout per request:
 * false then, the rest left alone.
 */
static bool discard_run(struct backing *b, uint64_t start, uint64_t n)
{
    while (n > 0) {
        uint64_t k = n < DISCARD_RUN_MAX ? n : DISCARD_RUN_MAX;
        b->ops->discard(b, start * BACKING_BLOCK_SIZE, k * BACKING_BLOCK_SIZE);
        struct backing_stats st = { .connected = true };
        if (b->ops->stats)
            b->ops->stats(b, &st);
        if (!st.connected)
            return false;
        start += k;
        n -= k;
    }
    return true;
}

struct backing *backing_open(const char *spec, uint64_t size, unsigned timeout_ms,
                             unsigned flags, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (spec[0] == '\0') {
        open_fail(err, errlen, EINVAL, "empty backing store name");
        return NULL;
    }
    /* off_t is signed: the last byte, after a file's header block, must be addressable. */
    if (size < BACKING_BLOCK_SIZE || size > (uint64_t)INT64_MAX - BACKING_BLOCK_SIZE) {
        open_fail(err, errlen, EINVAL, "size %" PRIu64 " out of range", size);
        return NULL;
    }
    if (timeout_ms == 0) {
        open_fail(err, errlen, EINVAL, "a timeout of 0");
        return NULL;
    }

    struct backing *b = backing_spec_is_uri(spec)
                            ? backing_nbd_open(spec, size, timeout_ms, err, errlen)
                            : backing_file_open(spec, size, flags, err, errlen);
    if (!b)
        return NULL;

    pthread_mutex_init(&b->lock, NULL);
    if (bitmap_init(b) < 0 || !(b->spec = strdup(spec)) ||
        !(b->crypt = backing_crypt_new(b->blocks))) {
        backing_close(b);
        open_fail(err, errlen, ENOMEM, "out of memory");
        return NULL;
    }
    /*
     * Whatever an earlier run left in the blocks is sealed under a key that
     * is gone, and the header (or --backing-force) said they are ours to
     * lose: discard them all, best effort, so a kept device does not carry
     * them on (doc/backing.md, "Whose file it is").
     */
    (void)discard_run(b, 0, b->blocks);
    return b;
}

/*
 * Discard every block still in use, a run of consecutive ones at a time:
 * at a clean stop the pages in them mean nothing any more (their key dies
 * with the process), and a device or file that is kept should not keep
 * them.
 */
static void discard_in_use(struct backing *b)
{
    uint64_t start = 0, n = 0;
    for (uint64_t blk = 0; blk < b->blocks; blk++) {
        if (b->bitmap[blk / 64] & (1ull << (blk % 64))) {
            if (n++ == 0)
                start = blk;
        } else if (n > 0) {
            if (!discard_run(b, start, n))
                return;
            n = 0;
        }
    }
    if (n > 0)
        (void)discard_run(b, start, n);
}

void backing_close(struct backing *b)
{
    if (!b)
        return;
    if (b->bitmap)
        discard_in_use(b);
    b->ops->close(b);
    backing_crypt_free(b->crypt);
    pthread_mutex_destroy(&b->lock);
    free(b->bitmap);
    free(b->spec);
    free(b);
}

int backing_use_direct(struct backing *b)
{
    return b->ops->use_direct ? b->ops->use_direct(b) : -ENOTSUP;
}

void backing_set_pressure(struct backing *b, bool short_of_memory)
{
    if (b->ops->set_pressure)
        b->ops->set_pressure(b, short_of_memory);
}

int backing_thread_prepare(struct backing *b)
{
    return b->ops->thread_prepare ? b->ops->thread_prepare(b) : 0;
}

uint64_t backing_blocks(const struct backing *b)
{
    return b->blocks;
}

const char *backing_spec(const struct backing *b)
{
    return b->spec;
}

/*
 * Next-fit: the first free bit at or after the cursor, wrapping.  The first
 * word is looked at twice, its upper part first and its lower part last, so
 * that a wrap finds the blocks just below the cursor too.
 */
int backing_alloc(struct backing *b, uint64_t *ret_blk)
{
    LOCK_GUARD(&b->lock);
    if (b->used >= b->blocks)
        return -ENOSPC;

    uint64_t start = b->cursor / 64;
    uint64_t first_mask = ~0ull << (b->cursor % 64);
    for (uint64_t i = 0; i <= b->words; i++) {
        uint64_t w = (start + i) % b->words;
        uint64_t free_bits = ~b->bitmap[w];
        if (i == 0)
            free_bits &= first_mask;
        if (free_bits == 0)
            continue;
        uint64_t blk = w * 64 + (uint64_t)__builtin_ctzll(free_bits);
        b->bitmap[w] |= 1ull << (blk % 64);
        b->used++;
        b->cursor = blk + 1 < b->blocks ? blk + 1 : 0;
        *ret_blk = blk;
        return 0;
    }
    /* used < blocks promised a free bit. */
    abort();
}

static bool block_in_use(struct backing *b, uint64_t blk)
{
    LOCK_GUARD(&b->lock);
    return b->bitmap[blk / 64] & (1ull << (blk % 64));
}

/*
 * The discard goes out before the bit is cleared: once it is clear, another
 * thread may take the block and write it, and a late punch or trim would
 * erase that write.
 */
void backing_free(struct backing *b, uint64_t blk, bool discard)
{
    if (blk >= b->blocks || !block_in_use(b, blk))
        return;
    if (discard)
        b->ops->discard(b, blk * BACKING_BLOCK_SIZE, BACKING_BLOCK_SIZE);
    backing_crypt_forget(b->crypt, blk);

    LOCK_GUARD(&b->lock);
    uint64_t bit = 1ull << (blk % 64);
    if (b->bitmap[blk / 64] & bit) {
        b->bitmap[blk / 64] &= ~bit;
        b->used--;
    }
}

/* Count the outcome r of a call: in ok, or in failed and as the last error. */
static int record(struct backing *b, int r, _Atomic uint64_t *ok, _Atomic uint64_t *failed)
{
    if (r == 0) {
        if (ok)
            counter_add(ok, 1);
    } else {
        counter_add(failed, 1);
        atomic_store_explicit(&b->last_error, r, memory_order_relaxed);
    }
    return r;
}

static bool io_args_ok(const struct backing *b, uint64_t blk, size_t len)
{
    return blk < b->blocks && len >= 1 && len <= BACKING_BLOCK_SIZE;
}

/*
 * Sealed on the way out, opened on the way in (backing-crypt.c): the
 * backends only ever see ciphertext.  The seal counts once the block is
 * written; until then a read of the block still checks against the last
 * one, which a failed write has made stale anyway.
 */
int backing_write(struct backing *b, uint64_t blk, const void *buf, size_t len)
{
    if (!io_args_ok(b, blk, len))
        return record(b, -EINVAL, &b->writes, &b->write_errors);
    struct backing_seal_pending seal;
    int r = backing_crypt_seal(b->crypt, blk, buf, len, &seal);
    if (r == 0)
        r = b->ops->pwrite(b, seal.sealed, len, blk * BACKING_BLOCK_SIZE);
    if (r == 0)
        backing_crypt_commit(b->crypt, blk, &seal);
    return record(b, r, &b->writes, &b->write_errors);
}

int backing_read(struct backing *b, uint64_t blk, void *buf, size_t len)
{
    int r = io_args_ok(b, blk, len) ? b->ops->pread(b, buf, len, blk * BACKING_BLOCK_SIZE)
                                    : -EINVAL;
    if (r == 0) {
        r = backing_crypt_open(b->crypt, blk, buf, len);
        if (r == -EBADMSG)
            counter_add(&b->bad_seals, 1);
    }
    return record(b, r, &b->reads, &b->read_errors);
}

/* A failed flush is a write that did not reach stable storage. */
int backing_flush(struct backing *b)
{
    return record(b, b->ops->flush(b), NULL, &b->write_errors);
}

void backing_get_stats(struct backing *b, struct backing_stats *ret)
{
    uint64_t used;
    {
        LOCK_GUARD(&b->lock);
        used = b->used;
    }
    *ret = (struct backing_stats){
        .blocks = b->blocks,
        .blocks_used = used,
        .reads = counter_get(&b->reads),
        .writes = counter_get(&b->writes),
        .read_errors = counter_get(&b->read_errors),
        .write_errors = counter_get(&b->write_errors),
        .last_error = atomic_load_explicit(&b->last_error, memory_order_relaxed),
        .reconnects = counter_get(&b->reconnects),
        .bad_seals = counter_get(&b->bad_seals),
        .meta_bytes = backing_crypt_bytes(b->blocks),
        .connected = true,
    };
    if (b->ops->stats)
        b->ops->stats(b, ret);
}
