/* SPDX-License-Identifier: MIT */
/*
 * What the files of the backing store share, and nothing the store may see
 * (it includes backing.h).  The design is doc/backing.md; each file keeps
 * the rules its code obeys.
 *
 * Dependencies run one way: backing.c (the front) opens a backend in
 * backing-file.c or backing-nbd.c and then calls it only through its
 * struct backing_ops; backing-nbd.c calls libnbd through what
 * backing-libnbd.c loads.  No backend calls back into backing.c: what they
 * share with it is inline here.
 *
 * Locking, in one place:
 *   - struct backing's lock guards the bitmap, the cursor and the count of
 *     blocks in use, and nothing else.  No path holds it while it calls a
 *     backend, so it never nests with a backend's own locks.
 *   - The NBD backend's rwlock guards its current connection (read: I/O on
 *     it; write: swapping or closing it); its reconnect mutex, taken only
 *     with trylock, makes one thread at a time try to connect, outside the
 *     rwlock.  Each connection's own mutex, taken under the read lock and
 *     never held while waiting for the server, hands the connection to one
 *     request at a time.  Every wait for the server has a deadline.
 *   - Counters are atomic and relaxed (counter.h): exact, never ordered
 *     against anything else.
 *
 * Sections below follow the file that defines each item.
 */
#ifndef UZRAM_BACKING_INTERNAL_H
#define UZRAM_BACKING_INTERNAL_H

#include <errno.h>
#include <libnbd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "backing.h"

/*
 * A backend.  Offsets and lengths are in bytes, whole blocks' worth or
 * less (the front has checked them).  Every function may run on several
 * threads at once, except close.
 */
struct backing_ops {
    const char *type;
    /* len bytes at off: 0 or a negative errno.  A short transfer is -EIO. */
    int (*pread)(struct backing *b, void *buf, size_t len, uint64_t off);
    int (*pwrite)(struct backing *b, const void *buf, size_t len, uint64_t off);
    /* Best effort: the data may stay. */
    void (*discard)(struct backing *b, uint64_t off, uint64_t len);
    int (*flush)(struct backing *b);
    /* Release what the backend holds, not b itself.  Nothing else running. */
    void (*close)(struct backing *b);
    /*
     * Optional (NULL: the backend has no such thing): backing.h's
     * backing_use_direct(), backing_set_pressure(), backing_thread_prepare(),
     * and the fields of struct backing_stats that are the backend's
     * (connected, direct, pressure), which the front sets to true, false,
     * false before it calls stats.
     */
    int (*use_direct)(struct backing *b);
    void (*set_pressure)(struct backing *b, bool short_of_memory);
    int (*thread_prepare)(struct backing *b);
    void (*stats)(struct backing *b, struct backing_stats *ret);
};

/* The part every backend embeds first.  The backend sets ops and blocks. */
struct backing {
    const struct backing_ops *ops;
    char *spec;                 /* what it was opened with */
    uint64_t blocks;            /* usable_blocks() of the store's size and its own */

    pthread_mutex_t lock;       /* guards the four fields below */
    uint64_t *bitmap;           /* bit set: block in use (or past the end) */
    uint64_t words;
    uint64_t cursor;            /* next-fit: where the next search starts */
    uint64_t used;              /* blocks in use */

    _Atomic uint64_t reads, writes;             /* successful calls */
    _Atomic uint64_t read_errors, write_errors; /* failed ones; a failed flush is a write error */
    _Atomic uint64_t reconnects;                /* NBD connections reopened (backing-nbd.c) */
    _Atomic int last_error;                     /* the last error returned, or 0 */
    _Atomic uint64_t bad_seals;                 /* reads whose block failed to open */

    struct backing_crypt *crypt; /* the key and the seal table (backing-crypt.c) */
};

static inline int open_fail(char *err, size_t errlen, int e, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * How every step of an open fails: the reason into err[errlen] when err is
 * not NULL (backing_open()'s contract), errno set to e.  Returns -e.
 */
static inline int open_fail(char *err, size_t errlen, int e, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    errno = e;
    return -e;
}

/*
 * How many blocks the store may use of a backing store of have bytes when
 * it asks for size: the smaller, in whole blocks.  0 makes an open fail.
 */
static inline uint64_t usable_blocks(uint64_t have, uint64_t size)
{
    return (have < size ? have : size) / BACKING_BLOCK_SIZE;
}

/*
 * The backends' opens: path (backing-file.c), uri (backing-nbd.c; a spec
 * that backing_spec_is_uri() accepts).  size is checked by the front.  On
 * failure NULL, with errno set and the reason in err, as backing_open();
 * on success the front still has to set up the rest of struct backing.
 */

/* ---- backing-file.c ---- */

/* flags: backing.h's enum backing_open_flags. */
struct backing *backing_file_open(const char *path, uint64_t size, unsigned flags, char *err,
                                  size_t errlen) __attribute__((nonnull(1)));

/* ---- backing-crypt.c ---- */

struct backing_crypt;

/* A write's seal, kept until the write has succeeded. */
struct backing_seal_pending {
    const void *sealed; /* the ciphertext: the calling thread's block */
    uint64_t counter;
    uint8_t tag[16];
};

/*
 * A fresh key, and a seal table for blocks blocks, all of it resident.
 * NULL with errno set (ENOMEM; getrandom()'s error).
 */
struct backing_crypt *backing_crypt_new(uint64_t blocks);
/* Wipe the key and free.  Accepts NULL. */
void backing_crypt_free(struct backing_crypt *c);
/* The memory backing_crypt_new(blocks) maps, for the statistics. */
size_t backing_crypt_bytes(uint64_t blocks);
/*
 * Encrypt len bytes (1..4096) of src for block blk into the calling
 * thread's block (ret->sealed, valid until the thread's next seal), with
 * the seal in *ret.  0, or a negative errno from the cipher, which does
 * not fail with valid arguments (-EIO, -ENOMEM; *ret untouched).  blk is
 * in range (the front checked).  Any thread; no lock, no allocation.
 */
int backing_crypt_seal(struct backing_crypt *c, uint64_t blk, const void *src, size_t len,
                       struct backing_seal_pending *ret) __attribute__((nonnull));
/* The write of a sealed block succeeded: from now on, reads check against this seal. */
void backing_crypt_commit(struct backing_crypt *c, uint64_t blk,
                          const struct backing_seal_pending *p) __attribute__((nonnull));
/* Block blk holds nothing of ours any more (freed): nothing opens it. */
void backing_crypt_forget(struct backing_crypt *c, uint64_t blk) __attribute__((nonnull));
/*
 * Decrypt the len bytes read from block blk in place and check them: 0, or
 * -EBADMSG (wrong tag, another block's or an older write's content, a block
 * never sealed, a length other than the one written) with buf zeroed; any
 * other error of the cipher (which it has no reason to give) as -EIO, buf
 * zeroed too.  Any thread; no lock, no allocation.
 */
int backing_crypt_open(struct backing_crypt *c, uint64_t blk, void *buf, size_t len)
    __attribute__((nonnull));

/* ---- backing-nbd.c ---- */

/* timeout_ms: how long each request and each connect may take (backing.h). */
struct backing *backing_nbd_open(const char *uri, uint64_t size, unsigned timeout_ms,
                                 char *err, size_t errlen) __attribute__((nonnull(1)));

/* ---- backing-libnbd.c ---- */

/*
 * The libnbd functions the NBD backend uses, valid once nbdlib_load() has
 * returned 0 (and never unloaded).
 */
struct nbdlib {
#define NBDLIB_FN(name) __typeof__(&nbd_##name) name
    NBDLIB_FN(create);
    NBDLIB_FN(get_errno);
    NBDLIB_FN(get_error);
    NBDLIB_FN(is_read_only);
    NBDLIB_FN(get_size);
    NBDLIB_FN(get_block_size);
    NBDLIB_FN(close);
    NBDLIB_FN(can_trim);
    NBDLIB_FN(can_flush);
    NBDLIB_FN(poll);
    NBDLIB_FN(aio_connect_uri);
    NBDLIB_FN(aio_is_connecting);
    NBDLIB_FN(aio_is_ready);
    NBDLIB_FN(aio_is_dead);
    NBDLIB_FN(aio_is_closed);
    NBDLIB_FN(aio_pread);
    NBDLIB_FN(aio_pwrite);
    NBDLIB_FN(aio_trim);
    NBDLIB_FN(aio_flush);
    NBDLIB_FN(aio_command_completed);
    NBDLIB_FN(aio_disconnect);
#undef NBDLIB_FN
};

extern struct nbdlib nbdlib;

/*
 * Load libnbd, the first time only; any thread.  0, or -ENOTSUP with errno
 * set and the reason in err (the same on every later call).
 */
int nbdlib_load(char *err, size_t errlen);

#endif /* UZRAM_BACKING_INTERNAL_H */
