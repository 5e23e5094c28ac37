/* SPDX-License-Identifier: MIT */
/*
 * The FUSE front end: serves a store as one regular file, mounted with
 * FUSE on top of a regular file (the mountpoint is the file itself), so
 * that `losetup --direct-io=on` can turn it into a block device.
 *
 * Life cycle: fuse_export_new() mounts; fuse_export_start() starts the
 * worker threads and returns once the kernel's FUSE_INIT is answered;
 * fuse_export_stop() asks for an unmount; fuse_export_free() waits for the
 * serving to end and frees.  Only the daemon's main thread calls these, one
 * at a time.
 *
 * Conventions: 0 or a negative errno; fuse_export_new() returns NULL and
 * sets errno.  Nothing here logs (libfuse itself may print to stderr).
 */
#ifndef UZRAM_FUSE_EXPORT_H
#define UZRAM_FUSE_EXPORT_H

#include <stdbool.h>
#include <stdint.h>

struct store;
struct fuse_export;

#define FUSE_EXPORT_MAX_THREADS 256

/* How requests reach the workers (doc/fuse.md, "Transports"). */
enum fuse_export_transport {
    FUSE_EXPORT_AUTO,  /* io_uring where the kernel offers it, else /dev/fuse */
    FUSE_EXPORT_URING, /* io_uring or fail */
    FUSE_EXPORT_DEV,   /* read() and write() on /dev/fuse */
};

struct fuse_export_options {
    const char *name;        /* device name, for fsname=uzram:NAME */
    /*
     * Worker threads, all started (with their buffers in memory) before
     * the mount serves, and never more: a thread made while memory is
     * short could wait for it.  0: 4; at most FUSE_EXPORT_MAX_THREADS.
     */
    unsigned threads;
    /*
     * Let users other than the daemon's open the file (still subject to
     * its mode, as the mount uses default_permissions).  Needs root or
     * user_allow_other in /etc/fuse.conf.
     */
    bool allow_other;
    enum fuse_export_transport transport;
};

/* What the kernel agreed to in FUSE_INIT, for the daemon to report. */
struct fuse_export_conn {
    unsigned proto_major, proto_minor;
    unsigned max_write;      /* bytes per write request */
    unsigned max_readahead;
    unsigned max_background; /* asynchronous requests in flight */
    bool async_dio;          /* the kernel splits large direct I/O in parallel */
    bool uring;              /* requests come by io_uring */
    unsigned uring_queues;   /* one per possible CPU */
    uint64_t uring_bytes;    /* the entries' buffers, all queues, resident */
    const char *note;        /* why auto chose /dev/fuse; "" if it did not */
};

/*
 * Whether this kernel would serve FUSE over io_uring now: 1, or 0 with
 * the reason (and what turns it on) in why.  Opens /dev/fuse once, so
 * that a fuse module not yet loaded shows its parameters.
 */
int fuse_export_uring_available(char *why, size_t len) __attribute__((nonnull));

/*
 * Mount a FUSE file system on file, whose only inode is a regular file of
 * store_size(s) bytes.  file is created (empty, mode 0600) if missing, and
 * then removed again by fuse_export_free() (or by a failed call); it
 * must be a regular file, not a symbolic link.  s must outlive the export.
 * errno: ENOENT or EACCES (file), EINVAL (file is not a regular file),
 * ELOOP (file is a symbolic link),
 * EBUSY (file is served by FUSE already), ENOTCONN (a dead FUSE mount),
 * EPERM (mounting not permitted), ENOMEM, EIO (libfuse failed without
 * saying why).
 */
struct fuse_export *fuse_export_new(struct store *s, const char *file,
                                    const struct fuse_export_options *o)
    __attribute__((nonnull));

/*
 * Start serving and wait until the kernel's FUSE_INIT has been answered, so
 * that the file is usable when this returns.  -EIO if the session ended
 * before (the connection failed), -errno if a thread cannot be started.
 */
int fuse_export_start(struct fuse_export *fe) __attribute__((nonnull));

/* The settings negotiated in FUSE_INIT; zeros before fuse_export_start(). */
void fuse_export_get_conn(const struct fuse_export *fe, struct fuse_export_conn *ret)
    __attribute__((nonnull));

/*
 * How many times the file is open now, as the kernel has told us (OPEN
 * and RELEASE; a loop device holds one open, and the kernel sends RELEASE
 * shortly after the last close, not at once).  Any thread.
 */
unsigned fuse_export_opens(const struct fuse_export *fe) __attribute__((nonnull));

/*
 * A descriptor that becomes readable when serving has ended, whatever the
 * cause: fuse_export_stop(), someone unmounting the file, or the connection
 * being aborted.  Owned by the export.
 */
int fuse_export_done_fd(const struct fuse_export *fe) __attribute__((nonnull));

/*
 * Detach the mount (lazily: users that hold the file open, such as a loop
 * device, go on being served until they close it; the file system then
 * ends and the done descriptor fires).  Returns at once.  Calling it again
 * does nothing.  -EBUSY if something else is mounted over the file now
 * (then only fuse_export_abort() ends serving), -errno if the unmount
 * failed.
 */
int fuse_export_stop(struct fuse_export *fe) __attribute__((nonnull));

/*
 * Abort the connection through /sys/fs/fuse/connections (as root, the
 * fusectl file system is mounted there first if it is not): every request
 * in flight and to come fails with ENOTCONN, so users of the file see I/O
 * errors.  For a second SIGTERM when the file is still held open.  -errno
 * on failure.
 */
int fuse_export_abort(struct fuse_export *fe) __attribute__((nonnull));

/*
 * Stop (if not done), wait for serving to end, and free.  Blocks while the
 * file is held open, unless fuse_export_abort() was called.  Accepts NULL.
 */
void fuse_export_free(struct fuse_export *fe);

#endif /* UZRAM_FUSE_EXPORT_H */
