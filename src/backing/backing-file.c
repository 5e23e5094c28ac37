/* SPDX-License-Identifier: MIT */
/*
 * The file or block device backend: pread/pwrite at block offsets through
 * the page cache, or, while memory is short after backing_use_direct(),
 * whole blocks through a bounce block of the calling thread's on a second
 * descriptor opened with O_DIRECT (doc/backing.md, "The page cache, or
 * not").  Transfers continue after a short count and retry EINTR; a
 * transfer of nothing is -EIO.  Discards are best effort.  An open never
 * shortens a file, never creates one under /dev/, and removes a file it
 * created when a later step fails.
 *
 * Whose file it is: the path is taken as given, never through a symbolic
 * link (which whoever can write its directory may point anywhere); a
 * block device is opened O_EXCL, so that one mounted or held by another
 * program is refused; and the open file is locked (flock), so that two
 * daemons never share one.  A file the open created is removed again at
 * close, while its path still names it: evicted pages do not outlive the
 * daemon there.  A file or device that was there already is left as it
 * is (doc/backing.md), but for its first block.
 *
 * The header.  The first block holds a header (magic, version, a random
 * id), and block n of the store lives at (n + 1) * 4096.  An existing
 * file or device whose first block holds anything but zeros or a header
 * is refused unless BACKING_FORCE: a path given by mistake (a disk with a
 * file system on it that is not mounted, a user's file) is not silently
 * overwritten.  The header is written at every open.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backing-internal.h"
#include "cleanup.h"
#include "populate.h"
#include "unlink-same.h"

struct backing_file {
    struct backing b;
    int fd;
    int dfd;                    /* the same file with O_DIRECT; -1 until backing_use_direct() */
    bool blockdev;
    _Atomic bool pressure;      /* memory is short: use dfd */
    char *created;              /* the path of a file the open created, removed at close */
};

/* The first block: a header, then zeros to the end of the block. */
#define HEADER_BYTES BACKING_BLOCK_SIZE
#define HEADER_VERSION 1u
static const char header_magic[8] = { 'U', 'Z', 'R', 'A', 'M', 'B', 'K', '\n' };

struct header {
    char magic[8];
    uint32_t version; /* little-endian, as every field */
    uint32_t block_size;
    uint8_t id[16]; /* random, new at every open */
};

/* The calling thread's bounce block for O_DIRECT, freed when it exits. */
static pthread_key_t bounce_key;
static pthread_once_t bounce_once = PTHREAD_ONCE_INIT;
static __thread unsigned char *tls_bounce;

static void bounce_init(void)
{
    /* Cannot fail short of a process out of keys; then blocks just leak. */
    (void)pthread_key_create(&bounce_key, free);
}

/* This thread's block-aligned bounce block, resident; NULL if out of memory. */
static unsigned char *bounce_block(void)
{
    if (tls_bounce)
        return tls_bounce;
    pthread_once(&bounce_once, bounce_init);
    void *p;
    if (posix_memalign(&p, BACKING_BLOCK_SIZE, BACKING_BLOCK_SIZE) != 0)
        return NULL;
    if (mem_populate(p, BACKING_BLOCK_SIZE) < 0) {
        free(p);
        return NULL;
    }
    tls_bounce = p;
    (void)pthread_setspecific(bounce_key, p);
    return tls_bounce;
}

/*
 * Move all of len bytes between buf and the file at off, in one direction.
 * A short transfer is continued rather than failed: on a file system that
 * runs out of room midway, the next pwrite returns the ENOSPC that explains
 * it, which tells the store more than EIO would.  A transfer of nothing is
 * -EIO: for a read, the end of the file inside the store's range (the file
 * was cut short behind our back).  buf is only read when is_write.
 */
static int file_transfer(int fd, bool is_write, void *buf, size_t len, uint64_t off)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = is_write ? pwrite(fd, p, len, (off_t)off) : pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Whether this transfer goes the direct way (see "The page cache, or not"). */
static bool file_direct_now(struct backing_file *f)
{
    return f->dfd >= 0 && atomic_load_explicit(&f->pressure, memory_order_relaxed);
}

static int file_pread(struct backing *b, void *buf, size_t len, uint64_t off)
{
    struct backing_file *f = (struct backing_file *)b;
    off += HEADER_BYTES;
    if (file_direct_now(f)) {
        unsigned char *blk = bounce_block();
        if (!blk)
            return -ENOMEM;
        int r = file_transfer(f->dfd, false, blk, BACKING_BLOCK_SIZE, off);
        if (r == 0)
            memcpy(buf, blk, len);
        return r;
    }
    return file_transfer(f->fd, false, buf, len, off);
}

static int file_pwrite(struct backing *b, const void *buf, size_t len, uint64_t off)
{
    struct backing_file *f = (struct backing_file *)b;
    off += HEADER_BYTES;
    const char *p = buf;
    int fd = f->fd;
    if (file_direct_now(f)) {
        unsigned char *blk = bounce_block();
        if (!blk)
            return -ENOMEM;
        /* The block is ours alone: pad it with zeros. */
        memcpy(blk, buf, len);
        memset(blk + len, 0, BACKING_BLOCK_SIZE - len);
        p = (const char *)blk;
        len = BACKING_BLOCK_SIZE;
        fd = f->dfd;
    }
    return file_transfer(fd, true, (void *)p, len, off);
}

/* Best effort: a file system without hole punching simply keeps the data. */
static void file_discard(struct backing *b, uint64_t off, uint64_t len)
{
    struct backing_file *f = (struct backing_file *)b;
    off += HEADER_BYTES;
    if (f->blockdev) {
        uint64_t range[2] = { off, len };
        (void)ioctl(f->fd, BLKDISCARD, range);
    } else {
        (void)fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                        (off_t)off, (off_t)len);
    }
}

static int file_flush(struct backing *b)
{
    struct backing_file *f = (struct backing_file *)b;
    return fdatasync(f->fd) < 0 ? -errno : 0;
}

/* Remove path if it still names the file open on fd. */
static void unlink_if_open(const char *path, int fd)
{
    struct stat st;

    if (fstat(fd, &st) == 0)
        (void)unlink_if_same(path, st.st_dev, st.st_ino);
}

static void file_close(struct backing *b)
{
    struct backing_file *f = (struct backing_file *)b;
    if (f->created && f->fd >= 0)
        unlink_if_open(f->created, f->fd);
    free(f->created);
    if (f->fd >= 0)
        close(f->fd);
    if (f->dfd >= 0)
        close(f->dfd);
}

/* backing_use_direct(): the second descriptor, and a bounce block for this thread. */
static int file_use_direct(struct backing *b)
{
    struct backing_file *f = (struct backing_file *)b;
    if (f->dfd >= 0)
        return 0;
    /* The file we have open, not whatever its path names now. */
    char self[64];
    snprintf(self, sizeof(self), "/proc/self/fd/%d", f->fd);
    _cleanup_close_ int dfd = open(self, O_RDWR | O_DIRECT | O_CLOEXEC | O_NOCTTY);
    if (dfd < 0)
        return -errno;  /* tmpfs, among others: EINVAL */
    unsigned char *blk = bounce_block();
    if (!blk)
        return -ENOMEM;
    /* A file system may take the flag and refuse the transfers: try one. */
    int r = file_transfer(dfd, false, blk, BACKING_BLOCK_SIZE, 0);
    if (r < 0)
        return r;
    f->dfd = TAKE_FD(dfd);
    return 0;
}

static void file_set_pressure(struct backing *b, bool short_of_memory)
{
    atomic_store_explicit(&((struct backing_file *)b)->pressure, short_of_memory,
                          memory_order_relaxed);
}

/* Only the direct way needs a bounce block. */
static int file_thread_prepare(struct backing *b)
{
    if (((struct backing_file *)b)->dfd < 0)
        return 0;
    return bounce_block() ? 0 : -ENOMEM;
}

static void file_stats(struct backing *b, struct backing_stats *ret)
{
    struct backing_file *f = (struct backing_file *)b;
    ret->direct = f->dfd >= 0;
    ret->pressure = atomic_load(&f->pressure);
}

static const struct backing_ops file_ops = {
    .type = "file",
    .pread = file_pread,
    .pwrite = file_pwrite,
    .discard = file_discard,
    .flush = file_flush,
    .close = file_close,
    .use_direct = file_use_direct,
    .set_pressure = file_set_pressure,
    .thread_prepare = file_thread_prepare,
    .stats = file_stats,
};

/*
 * Open path, or create it when it is missing (sparse, mode 0600), except
 * under /dev/.  The type is checked before opening: opening a FIFO or a tty
 * has side effects.  Returns the descriptor, *ret_created saying whether
 * this call made the file; or a negative errno, with errno and err set.
 */
static int file_open_path(const char *path, bool *ret_created, char *err, size_t errlen)
{
    struct stat st;
    int fd = -1;
    *ret_created = false;
    if (lstat(path, &st) == 0) {
        if (S_ISLNK(st.st_mode))
            return open_fail(err, errlen, ELOOP,
                             "a symbolic link (give the file or device itself)");
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
            return open_fail(err, errlen, EINVAL, "not a regular file or a block device");
        /* O_EXCL on a block device: refused while mounted or held by another program. */
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW |
                            (S_ISBLK(st.st_mode) ? O_EXCL : 0));
        if (fd < 0 && errno == EBUSY)
            return open_fail(err, errlen, EBUSY,
                             "in use (mounted, or held by another program)");
    } else if (errno == ENOENT && strncmp(path, "/dev/", 5) == 0) {
        /*
         * A missing device (a typo, a disk not there yet) must not become
         * a file on /dev's tmpfs, in the very memory the tier is to spare.
         */
        return open_fail(err, errlen, ENOENT,
                         "no such device (files are not created under /dev)");
    } else if (errno == ENOENT) {
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_CREAT | O_EXCL, 0600);
        *ret_created = fd >= 0;
    }
    if (fd < 0) {
        int e = errno;
        return open_fail(err, errlen, e, "cannot open it: %s", strerror(e));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno == EWOULDBLOCK ? EBUSY : errno;
        if (*ret_created)
            unlink_if_open(path, fd);
        close(fd);
        if (e == EBUSY)
            return open_fail(err, errlen, e, "in use by another uzramd (locked)");
        return open_fail(err, errlen, e, "cannot lock it: %s", strerror(e));
    }
    return fd;
}

/*
 * The size of the open file fd, checked again on the descriptor (the path
 * may have changed since it was looked at): a block device's size, or a
 * regular file's, extended to size bytes when shorter (never shortened:
 * it may be larger on purpose).  *ret_have and *ret_blockdev, or a
 * negative errno with errno and err set; fewer than one usable block is
 * -EINVAL.
 */
static int file_measure(int fd, uint64_t size, uint64_t *ret_have, bool *ret_blockdev,
                        char *err, size_t errlen)
{
    struct stat st;
    uint64_t have = 0;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        return open_fail(err, errlen, e, "cannot stat it: %s", strerror(e));
    }
    if (S_ISBLK(st.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, &have) < 0) {
            int e = errno;
            return open_fail(err, errlen, e, "cannot get the block device's size: %s",
                             strerror(e));
        }
    } else if (S_ISREG(st.st_mode)) {
        have = (uint64_t)st.st_size;
        /* The front checked that size + HEADER_BYTES fits an off_t. */
        if (have < size + HEADER_BYTES) {
            if (ftruncate(fd, (off_t)(size + HEADER_BYTES)) < 0) {
                int e = errno;
                return open_fail(err, errlen, e, "cannot extend it to %" PRIu64 " bytes: %s",
                                 size + HEADER_BYTES, strerror(e));
            }
            have = size + HEADER_BYTES;
        }
    } else {
        return open_fail(err, errlen, EINVAL, "not a regular file or a block device");
    }
    if (have < HEADER_BYTES || usable_blocks(have - HEADER_BYTES, size) == 0)
        return open_fail(err, errlen, EINVAL,
                         "smaller than two %u-byte blocks (a header and one)",
                         BACKING_BLOCK_SIZE);
    *ret_have = have - HEADER_BYTES;
    *ret_blockdev = S_ISBLK(st.st_mode);
    return 0;
}

/*
 * Whether fd's first block may be taken for a header: it holds one of
 * ours, or zeros (or the file is shorter: what is missing reads as zeros),
 * or force.  0, or EEXIST with errno and err set; an I/O error as itself.
 */
static int file_check_header(int fd, bool force, char *err, size_t errlen)
{
    unsigned char blk[HEADER_BYTES] = { 0 };
    ssize_t n;
    do
        n = pread(fd, blk, sizeof(blk), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        return open_fail(err, errlen, e, "cannot read its first block: %s", strerror(e));
    }
    if (force || memcmp(blk, header_magic, sizeof(header_magic)) == 0)
        return 0;
    for (size_t i = 0; i < sizeof(blk); i++)
        if (blk[i] != 0)
            return open_fail(err, errlen, EEXIST,
                             "holds data and no uzram header (not a backing store of "
                             "uzramd's); --backing-force adopts it, overwriting it");
    return 0;
}

/* Write a fresh header into fd's first block.  0, or a negative errno with errno and err set. */
static int file_write_header(int fd, char *err, size_t errlen)
{
    unsigned char blk[HEADER_BYTES] = { 0 };
    struct header h = { .version = htole32(HEADER_VERSION),
                        .block_size = htole32(BACKING_BLOCK_SIZE) };
    memcpy(h.magic, header_magic, sizeof(h.magic));
    if (getrandom(h.id, sizeof(h.id), 0) != (ssize_t)sizeof(h.id)) {
        int e = errno ? errno : EIO;
        return open_fail(err, errlen, e, "cannot draw its id: %s", strerror(e));
    }
    memcpy(blk, &h, sizeof(h));
    int r = file_transfer(fd, true, blk, sizeof(blk), 0);
    if (r < 0)
        return open_fail(err, errlen, -r, "cannot write its header: %s", strerror(-r));
    return 0;
}

/*
 * Open or create the file and work out how many blocks of it the store may
 * use (backing-internal.h).  A file this call created is removed again if a later step fails,
 * so a failed start leaves nothing behind.
 */
struct backing *backing_file_open(const char *path, uint64_t size, unsigned flags, char *err,
                                  size_t errlen)
{
    bool created, blockdev = false;
    uint64_t have = 0;
    struct backing_file *f;
    _cleanup_close_ int fd = file_open_path(path, &created, err, errlen);
    if (fd < 0)
        return NULL;

    if (!created && file_check_header(fd, flags & BACKING_FORCE, err, errlen) < 0)
        goto fail;
    if (file_measure(fd, size, &have, &blockdev, err, errlen) < 0 ||
        file_write_header(fd, err, errlen) < 0)
        goto fail;
    f = calloc(1, sizeof(*f));
    if (!f) {
        open_fail(err, errlen, errno, "out of memory");
        goto fail;
    }
    f->b.ops = &file_ops;
    f->b.blocks = usable_blocks(have, size);
    if (created) {
        f->created = strdup(path);
        if (!f->created) {
            free(f);
            open_fail(err, errlen, ENOMEM, "out of memory");
            goto fail;
        }
    }
    f->fd = TAKE_FD(fd);
    f->dfd = -1;
    f->blockdev = blockdev;
    return &f->b;

fail:
    if (created) {
        int e = errno;
        (void)unlink(path);
        errno = e;
    }
    return NULL;
}
