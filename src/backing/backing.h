/* SPDX-License-Identifier: MIT */
/*
 * The backing store: where the store writes pages back when its memory
 * limit is reached.  A local file or block device, or any NBD server
 * (through libnbd), seen as an array of 4 KiB blocks with a bitmap that
 * says which are in use.
 *
 * The store is the only user: it allocates a block, writes a page (or a
 * compressed page, up to 4 KiB) into it, reads it back later and frees the
 * block when the page is overwritten or discarded.  The daemon opens the
 * backing store and hands it to the store; nothing here knows the store.
 *
 * Faults.  I/O errors are returned as they come (-EIO, -ENOSPC from a full
 * file system, -ENOTCONN while an NBD server is away) and counted; none is
 * fatal.  An NBD connection that died is reopened by the next call that
 * needs it, at most once per second (calls in between fail at once with
 * -ENOTCONN), so a server that comes back is used again without anyone
 * asking.  An NBD server that stops answering costs a deadline, not a
 * thread: every NBD request, and every connect, has one (timeout_ms of
 * backing_open()); the request that passes it fails with -ETIMEDOUT and
 * the connection counts as dead from then on, so the calls after it fail
 * at once with -ENOTCONN until a reconnect works.  A call waits at most
 * about twice the timeout: once for a reconnect or for the request ahead
 * of it on the connection, once for its own request.  A file has no deadline: the kernel
 * does not let one be put on pread/pwrite.
 *
 * Threads: every function is thread-safe.  Reads and writes of different
 * blocks run in parallel on a file (pread/pwrite); on NBD they take turns
 * on the one connection, a request at a time, as libnbd's synchronous
 * calls did.
 *
 * Conventions: 0 or a negative errno; backing_open() returns NULL and sets
 * errno.  Nothing here logs.
 */
#ifndef UZRAM_BACKING_H
#define UZRAM_BACKING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BACKING_BLOCK_SIZE 4096u

/*
 * How long an NBD request may wait for its reply unless told otherwise
 * (uzramd's --backing-timeout): far longer than a healthy server ever
 * needs, even over a slow network, yet short enough that a client of the
 * device sees an I/O error rather than a hung read.
 */
#define BACKING_TIMEOUT_DEFAULT_MS 30000u

struct backing;

/* backing_open()'s flags. */
enum backing_open_flags {
    /* Adopt a file or device that holds data and no uzram header (uzramd's --backing-force). */
    BACKING_FORCE = 1u << 0,
};

/*
 * Open spec: a path (a regular file, created sparse with mode 0600 when
 * missing, except under /dev/, and extended to size bytes when shorter;
 * or a block device, of whatever size it has), or an NBD URI as libnbd takes it
 * ("nbd+unix:///?socket=PATH", "nbd://HOST:PORT/EXPORT").  size is the
 * most the store will ever write back (its device size); the backing store
 * may be smaller or larger: backing_blocks() says how many blocks it has
 * (min(size, its size) / 4096).  An existing file is never shortened.
 * timeout_ms (1 or more; BACKING_TIMEOUT_DEFAULT_MS unless the user says)
 * is how long each NBD request, and each connect including this one, may
 * take; a file ignores it.
 *
 * A file or block device keeps a header in its first block (magic,
 * version, a random id: doc/backing.md, "The header"), and the store's
 * blocks come after it, so the file is extended to size + 4096 bytes and
 * a device gives one block less.  One that exists, holds data in its
 * first block and has no header is refused with EEXIST unless flags has
 * BACKING_FORCE; one with the header, or all zeros there, is adopted.
 * Either way the header is written anew.  An NBD export has no header
 * (the server owns it).  Every block is then discarded (punch hole,
 * BLKDISCARD, NBD_CMD_TRIM; best effort), so that nothing an earlier run
 * left stays on a device that is kept.
 *
 * On failure returns NULL, sets errno (ENOENT, EACCES, EEXIST, EINVAL for a spec
 * that is neither or a timeout of 0, ECONNREFUSED, ETIMEDOUT for an NBD
 * server that did not finish the handshake in time, ENOTSUP for one that
 * is read-only...) and, when err is not NULL, writes a one-line reason
 * (without the spec itself) into err[errlen].
 */
struct backing *backing_open(const char *spec, uint64_t size, unsigned timeout_ms,
                             unsigned flags, char *err, size_t errlen)
    __attribute__((nonnull(1)));

/*
 * Whether backing_open() takes spec as an NBD URI (its scheme is nbd or
 * nbds, with +unix or +vsock or neither) rather than a path.  Callers that
 * turn a relative path into an absolute one ask this first.
 */
bool backing_spec_is_uri(const char *spec) __attribute__((nonnull));

/*
 * Make direct I/O (O_DIRECT) ready for a file or block device, for serving
 * swap: while backing_set_pressure() says memory is short, transfers then
 * bypass the page cache, so that a write needs no memory and frees the
 * caller's at once, and a read needs none either (doc/backing.md, "The
 * page cache, or not"); they are whole blocks through a bounce buffer of the
 * calling thread's.  0; -EINVAL where the file system refuses direct I/O
 * (tmpfs), nothing changing; -ENOTSUP for an NBD server; -ENOMEM.
 */
int backing_use_direct(struct backing *b) __attribute__((nonnull));

/*
 * Whether memory is short now: transfers go the direct way while it is
 * (after backing_use_direct()).  Cheap; any thread.
 */
void backing_set_pressure(struct backing *b, bool short_of_memory) __attribute__((nonnull));

/*
 * Make the calling thread's bounce buffer now, populated, so that its
 * transfers need no memory later; 0 (also when none is needed) or
 * -ENOMEM.  A thread that does not gets it on its first transfer.
 */
int backing_thread_prepare(struct backing *b) __attribute__((nonnull));

/*
 * Close and free.  The blocks still in use are discarded first (punch
 * hole, BLKDISCARD, NBD_CMD_TRIM; best effort), so that the pages the
 * store left there do not outlive it on a file, device or server that is
 * kept.  Accepts NULL.  No other call may be running.
 */
void backing_close(struct backing *b);

/* How many 4 KiB blocks can be allocated. */
uint64_t backing_blocks(const struct backing *b) __attribute__((nonnull));

/* The spec it was opened with, for display. */
const char *backing_spec(const struct backing *b) __attribute__((nonnull));

/*
 * Take a free block: 0 and its number in *ret_blk, or -ENOSPC when every
 * block is in use.  Next-fit, so consecutive calls give consecutive blocks
 * while there are any (which keeps writes sequential on the backing file).
 */
int backing_alloc(struct backing *b, uint64_t *ret_blk) __attribute__((nonnull));

/*
 * Give a block back.  With discard true the backing store is also told the
 * data is no longer needed (punch hole on a file, NBD_CMD_TRIM), where it
 * supports that; errors of that are ignored.  A block not in use is ignored.
 */
void backing_free(struct backing *b, uint64_t blk, bool discard) __attribute__((nonnull));

/*
 * Write len bytes (1..4096) from buf at the start of block blk / read them
 * back.  What reaches the backend is sealed (AES-256-GCM under a key of
 * this process's, bound to blk and to this write: doc/backing.md, "Sealed
 * blocks"); a read opens it, and fails with -EBADMSG, buf zeroed, when the
 * block holds anything but what the last write to it wrote with the same
 * len (altered, another block's, an older write's), or was freed or never
 * written.  The seal of each block lives in memory (meta_bytes of
 * struct backing_stats); nothing of the key leaves the process.
 * 0, or -EBADMSG (reads only), -EIO, -ENOSPC, -ENOTCONN (NBD server away), -ETIMEDOUT (the
 * NBD server did not answer within the timeout; the connection is then
 * dropped), -EINVAL (blk out of range, len 0 or above 4096).  A short read
 * or write is -EIO.  A read that failed left buf's contents undefined.
 * A failed write leaves blk allocated: the caller gives it back with
 * backing_free (with discard, to release what the write did manage to
 * store).
 */
int backing_write(struct backing *b, uint64_t blk, const void *buf, size_t len)
    __attribute__((nonnull));
int backing_read(struct backing *b, uint64_t blk, void *buf, size_t len)
    __attribute__((nonnull));

/* Make writes so far durable (fdatasync, NBD_CMD_FLUSH).  0 or -errno, as backing_write(). */
int backing_flush(struct backing *b) __attribute__((nonnull));

struct backing_stats {
    uint64_t blocks;        /* backing_blocks() */
    uint64_t blocks_used;   /* allocated now */
    uint64_t reads, writes; /* successful calls */
    uint64_t read_errors, write_errors;
    int last_error;         /* the last error returned (negative errno), or 0 */
    uint64_t reconnects;    /* NBD connections reopened */
    uint64_t bad_seals;     /* reads that failed with -EBADMSG */
    uint64_t meta_bytes;    /* memory of the seal table: 24 bytes a block */
    bool connected;         /* false while an NBD server is away */
    bool direct;            /* backing_use_direct() succeeded */
    bool pressure;          /* transfers go the direct way now */
};

void backing_get_stats(struct backing *b, struct backing_stats *ret) __attribute__((nonnull));

#endif /* UZRAM_BACKING_H */
