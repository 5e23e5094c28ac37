/* SPDX-License-Identifier: MIT */
/*
 * The backing store: a far tier of 4 KiB blocks under the block store.
 *
 * Two backends sit behind a table of five functions (read, write, discard,
 * flush, close), each embedding struct backing first: a local file or block
 * device, driven with pread/pwrite, and any NBD server, driven through one
 * libnbd handle.  Everything the store sees above that table (the block
 * allocator, the counters, argument checks) is shared.
 *
 * Space.  One bit per block, under one mutex, with a next-fit cursor that
 * only moves forward and wraps.  The store writes pages back in bursts
 * (an evict pass, a writeback command), and next-fit hands such a burst
 * consecutive blocks, so the backing file sees a sequential stream that the
 * file system can lay out in long extents and read ahead; first-fit would
 * instead keep filling the holes the store leaves behind it, because it
 * frees blocks all over the device as pages are overwritten or discarded.
 * A call costs O(1) while the cursor sits in free space and at worst a scan
 * of every bitmap word (64 blocks per word: a 64 GiB backing store is 256 KiB
 * of bitmap) when the store is nearly full.  Bits past the last block of
 * the last word are set at open, so the scan never needs a bounds check.
 *
 * The page cache, or not.  The file is opened without O_DIRECT.  The
 * store writes compressed objects of a few hundred bytes to 4 KiB at
 * block-aligned offsets; O_DIRECT would want every buffer, length and
 * offset aligned to the device's logical block and would turn each small
 * write into a synchronous device write.  Through the page cache a write-back pass costs
 * a copy, and the kernel writes the dirty pages out in large batches.  The
 * cached copy is not a second copy the memory limit forgets: once written
 * out, those pages are clean file pages, which the kernel may drop under
 * pressure whenever it likes, unlike the store's anonymous memory, which
 * can only leave by being written back here.  That asymmetry is the whole
 * point of the tier.  (A cgroup charges page cache to the daemon, but
 * reclaims it before it OOM-kills anything.)
 *   Except when the machine itself is short of memory and swaps to the
 * device: then a write into the page cache needs a page the kernel may not
 * find (and the thread that waits for it holds the page's slot), and frees
 * nothing until writeback has run; a read of a block not cached needs a
 * page too.  So backing_use_direct() opens the file a second time with
 * O_DIRECT, and while the store says memory is short
 * (backing_set_pressure()) transfers go that way: one whole 4 KiB block
 * through a bounce buffer of the calling thread's, made and populated by
 * backing_thread_prepare() (or on first use), needing no memory, and a
 * write frees the store's memory as soon as it returns.  The kernel keeps
 * the two ways coherent (a direct read writes back dirty cached pages of
 * its range first, a direct write drops them).  The rest of the time the
 * page cache serves, as above: direct 4 KiB writes measured twice as slow
 * in the writeback tests.
 *
 * A full file system.  The file is sparse, so a block that the bitmap calls
 * free may still need space on the disk when it is first written, and
 * pwrite can fail with ENOSPC although backing_alloc succeeded.  That error
 * is returned and counted like any other; the block stays allocated to the
 * caller, who gives it back with backing_free (a discard also releases any
 * pages the failed write did manage to take).  Freeing it here would hand
 * the caller a block number that someone else may already own.  The store
 * keeps the page in memory and ends its pass: retrying the next block would
 * only fail the same way.
 *
 * NBD and reconnecting.  The connection is a pointer to the current libnbd
 * handle behind a rwlock: I/O holds the read lock (libnbd handles are
 * thread-safe, and requests from several threads share the socket), and the
 * handle is only swapped or closed under the write lock, so no thread ever
 * uses a freed handle.  When a call fails because the connection is gone
 * (libnbd says the handle is dead or closed, or the errno is ENOTCONN,
 * ECONNRESET, EPIPE or ESHUTDOWN), the handle is closed and the backing store
 * becomes disconnected: every call fails at once with -ENOTCONN, except
 * that one call per second tries to connect again, to the same URI.  The
 * connect runs outside the rwlock (a slow TCP connect must not stall the
 * calls that fail fast meanwhile) under a mutex taken with trylock, so at
 * most one thread waits for it.  A server that comes back read-only, or
 * smaller than it was, is refused and the next try waits another second.
 * A server that comes back empty (nbdkit memory after a restart) is
 * accepted: this layer cannot tell, and reads will return whatever the
 * server holds.  Whether that data is still trustworthy is the store's
 * question, which it can answer with backing_get_stats()'s reconnects.
 *
 * Counters are atomics written without the bitmap lock: they are
 * statistics, and each is exact on its own.
 */
#include "backing.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libnbd.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "populate.h"

struct backing_ops {
    const char *type;
    int (*pread)(struct backing *b, void *buf, size_t len, uint64_t off);
    int (*pwrite)(struct backing *b, const void *buf, size_t len, uint64_t off);
    void (*discard)(struct backing *b, uint64_t off, uint64_t len);
    int (*flush)(struct backing *b);
    void (*close)(struct backing *b);
};

struct backing {
    const struct backing_ops *ops;
    char *spec;
    uint64_t blocks;

    pthread_mutex_t lock;       /* guards the four fields below */
    uint64_t *bitmap;           /* bit set: block in use (or past the end) */
    uint64_t words;
    uint64_t cursor;            /* next-fit: where the next search starts */
    uint64_t used;

    /* Atomics. */
    uint64_t reads, writes, read_errors, write_errors, reconnects;
    int last_error;
};

static void set_reason(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_reason(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint64_t stat_get(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void stat_inc(uint64_t *p)
{
    __atomic_add_fetch(p, 1, __ATOMIC_RELAXED);
}

/* ---- The file or block device backend ---- */

struct backing_file {
    struct backing b;
    int fd;
    int dfd;                    /* the same file with O_DIRECT, or -1 */
    bool blockdev;
    _Atomic bool pressure;      /* memory is short: use dfd */
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

static int file_pread_raw(int fd, void *buf, size_t len, uint64_t off);

/* Whether this transfer goes the direct way (see "The page cache, or not"). */
static bool file_direct_now(struct backing_file *f)
{
    return f->dfd >= 0 && atomic_load_explicit(&f->pressure, memory_order_relaxed);
}

static int file_pread(struct backing *b, void *buf, size_t len, uint64_t off)
{
    struct backing_file *f = (struct backing_file *)b;
    if (file_direct_now(f)) {
        unsigned char *blk = bounce_block();
        if (!blk)
            return -ENOMEM;
        int r = file_pread_raw(f->dfd, blk, BACKING_BLOCK_SIZE, off);
        if (r == 0)
            memcpy(buf, blk, len);
        return r;
    }
    return file_pread_raw(f->fd, buf, len, off);
}

static int file_pread_raw(int fd, void *buf, size_t len, uint64_t off)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        /* End of file inside the store's range: the file was cut short
         * behind our back. */
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/*
 * A short write is continued rather than failed at once: on a file system
 * that runs out of room midway, the next pwrite returns the ENOSPC that
 * explains it, which tells the store more than EIO would.
 */
static int file_pwrite(struct backing *b, const void *buf, size_t len, uint64_t off)
{
    struct backing_file *f = (struct backing_file *)b;
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
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
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

/* Best effort: a file system without hole punching simply keeps the data. */
static void file_discard(struct backing *b, uint64_t off, uint64_t len)
{
    struct backing_file *f = (struct backing_file *)b;
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

static void file_close(struct backing *b)
{
    struct backing_file *f = (struct backing_file *)b;
    if (f->fd >= 0)
        close(f->fd);
    if (f->dfd >= 0)
        close(f->dfd);
}

static const struct backing_ops file_ops = {
    .type = "file",
    .pread = file_pread,
    .pwrite = file_pwrite,
    .discard = file_discard,
    .flush = file_flush,
    .close = file_close,
};

/*
 * Open or create the file and work out how many bytes of it the store may
 * use.  The type is checked before opening (opening a FIFO or a tty has
 * side effects) and again on the descriptor (the path may have changed in
 * between).  A file this call created is removed again if a later step
 * fails, so a failed start leaves nothing behind.
 */
static struct backing *file_open(const char *path, uint64_t size, char *err, size_t errlen)
{
    struct stat st;
    bool created = false;
    _cleanup_close_ int fd = -1;

    if (stat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
            set_reason(err, errlen, "not a regular file or a block device");
            errno = EINVAL;
            return NULL;
        }
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
    } else if (errno == ENOENT && strncmp(path, "/dev/", 5) == 0) {
        /*
         * A missing device (a typo, a disk not there yet) must not become
         * a file on /dev's tmpfs, in the very memory the tier is to spare.
         */
        set_reason(err, errlen, "no such device (files are not created under /dev)");
        errno = ENOENT;
        return NULL;
    } else if (errno == ENOENT) {
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_CREAT | O_EXCL, 0600);
        created = fd >= 0;
    }
    if (fd < 0) {
        int e = errno;
        set_reason(err, errlen, "cannot open it: %s", strerror(e));
        errno = e;
        return NULL;
    }

    int e = 0;
    uint64_t have = 0;
    bool blockdev = false;
    if (fstat(fd, &st) < 0) {
        e = errno;
        set_reason(err, errlen, "cannot stat it: %s", strerror(e));
    } else if (S_ISBLK(st.st_mode)) {
        blockdev = true;
        if (ioctl(fd, BLKGETSIZE64, &have) < 0) {
            e = errno;
            set_reason(err, errlen, "cannot get the block device's size: %s", strerror(e));
        }
    } else if (S_ISREG(st.st_mode)) {
        have = (uint64_t)st.st_size;
        /* Never shortened: the file may be larger on purpose. */
        if (have < size) {
            if (ftruncate(fd, (off_t)size) < 0) {
                e = errno;
                set_reason(err, errlen, "cannot extend it to %" PRIu64 " bytes: %s",
                           size, strerror(e));
            } else {
                have = size;
            }
        }
    } else {
        e = EINVAL;
        set_reason(err, errlen, "not a regular file or a block device");
    }
    if (e == 0 && (have < size ? have : size) < BACKING_BLOCK_SIZE) {
        e = EINVAL;
        set_reason(err, errlen, "smaller than one %u-byte block", BACKING_BLOCK_SIZE);
    }
    if (e) {
        if (created)
            (void)unlink(path);
        errno = e;
        return NULL;
    }

    struct backing_file *f = calloc(1, sizeof(*f));
    if (!f) {
        e = errno;
        if (created)
            (void)unlink(path);
        set_reason(err, errlen, "out of memory");
        errno = e;
        return NULL;
    }
    f->b.ops = &file_ops;
    f->b.blocks = (have < size ? have : size) / BACKING_BLOCK_SIZE;
    f->fd = TAKE_FD(fd);
    f->dfd = -1;
    f->blockdev = blockdev;
    return &f->b;
}

int backing_use_direct(struct backing *b)
{
    if (b->ops != &file_ops)
        return -ENOTSUP;
    struct backing_file *f = (struct backing_file *)b;
    if (f->dfd >= 0)
        return 0;
    /* The file we have open, not whatever its path names now. */
    char self[64];
    snprintf(self, sizeof(self), "/proc/self/fd/%d", f->fd);
    _cleanup_close_ int dfd = open(self, O_RDWR | O_DIRECT | O_CLOEXEC | O_NOCTTY);
    if (dfd < 0)
        return errno == EINVAL ? -EINVAL : -errno;  /* tmpfs, among others: EINVAL */
    unsigned char *blk = bounce_block();
    if (!blk)
        return -ENOMEM;
    /* A file system may take the flag and refuse the transfers: try one. */
    int r = file_pread_raw(dfd, blk, BACKING_BLOCK_SIZE, 0);
    if (r < 0)
        return r;
    f->dfd = TAKE_FD(dfd);
    return 0;
}

void backing_set_pressure(struct backing *b, bool short_of_memory)
{
    if (b->ops == &file_ops)
        atomic_store_explicit(&((struct backing_file *)b)->pressure, short_of_memory,
                              memory_order_relaxed);
}

int backing_thread_prepare(struct backing *b)
{
    if (b->ops != &file_ops || ((struct backing_file *)b)->dfd < 0)
        return 0;
    return bounce_block() ? 0 : -ENOMEM;
}

/* ---- The NBD backend ---- */

/*
 * libnbd is loaded when the first NBD backing store is opened, not linked:
 * with the TLS and XML libraries it pulls in it maps about 40 MiB, which
 * uzramd would otherwise have to lock in memory at start (it locks what is
 * mapped, so that serving swap never waits for a page of its own code)
 * whether or not it ever talks to an NBD server.
 */
static struct {
    pthread_once_t once;
    char error[160];            /* why it could not be loaded; "" if it was */
#define LIBNBD_FN(name) __typeof__(&nbd_##name) name
    LIBNBD_FN(create);
    LIBNBD_FN(get_errno);
    LIBNBD_FN(get_error);
    LIBNBD_FN(connect_uri);
    LIBNBD_FN(is_read_only);
    LIBNBD_FN(get_size);
    LIBNBD_FN(get_block_size);
    LIBNBD_FN(close);
    LIBNBD_FN(can_trim);
    LIBNBD_FN(can_flush);
    LIBNBD_FN(pread);
    LIBNBD_FN(pwrite);
    LIBNBD_FN(trim);
    LIBNBD_FN(flush);
    LIBNBD_FN(aio_is_dead);
    LIBNBD_FN(aio_is_closed);
    LIBNBD_FN(shutdown);
#undef LIBNBD_FN
} lib = { .once = PTHREAD_ONCE_INIT };

static void lib_load(void)
{
    void *h = dlopen("libnbd.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(lib.error, sizeof(lib.error), "cannot load libnbd (Debian: apt install libnbd0): %s",
                 dlerror());
        return;
    }
    /* Each symbol is one libnbd has had since 1.0. */
#define LIBNBD_SYM(name)                                                                   \
    if (!(*(void **)&lib.name = dlsym(h, "nbd_" #name))) {                                 \
        snprintf(lib.error, sizeof(lib.error), "libnbd has no nbd_%s", #name);             \
        return;                                                                            \
    }
    LIBNBD_SYM(create) LIBNBD_SYM(get_errno) LIBNBD_SYM(get_error) LIBNBD_SYM(connect_uri)
    LIBNBD_SYM(is_read_only) LIBNBD_SYM(get_size) LIBNBD_SYM(get_block_size)
    LIBNBD_SYM(close) LIBNBD_SYM(can_trim) LIBNBD_SYM(can_flush) LIBNBD_SYM(pread)
    LIBNBD_SYM(pwrite) LIBNBD_SYM(trim) LIBNBD_SYM(flush) LIBNBD_SYM(aio_is_dead)
    LIBNBD_SYM(aio_is_closed) LIBNBD_SYM(shutdown)
#undef LIBNBD_SYM
}

/* Load libnbd once; 0, or -ENOTSUP with the reason in err. */
static int lib_ready(char *err, size_t errlen)
{
    pthread_once(&lib.once, lib_load);
    if (lib.error[0]) {
        set_reason(err, errlen, "%s", lib.error);
        return -ENOTSUP;
    }
    return 0;
}

/* One connection to the backing server and what it said it can do; replaced as a whole. */
struct nbd_server_link {
    struct nbd_handle *h;
    bool can_trim, can_flush;
    uint32_t min_block;     /* transfers are whole multiples of this */
};

struct backing_nbd {
    struct backing b;
    char *uri;
    uint64_t size;              /* the server's size at open: never less after */

    pthread_rwlock_t rw;        /* read: I/O on conn; write: swapping conn */
    struct nbd_server_link *conn;      /* NULL while disconnected */

    pthread_mutex_t reconnecting;   /* held (trylock) by the one reconnecting */
    double last_try;                /* monotonic seconds; under reconnecting */
};

/* At most one connect attempt per second while the server is away. */
#define NBD_RECONNECT_INTERVAL 1.0

static double now_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void conn_free(struct nbd_server_link *c)
{
    if (!c)
        return;
    lib.close(c->h);
    free(c);
}

/*
 * Connect to uri and check the export is one we can use: writable, and
 * with a minimum block size a 4 KiB block is a multiple of.  On failure
 * returns NULL with errno set and the reason in err.
 */
static struct nbd_server_link *conn_open(const char *uri, uint64_t *ret_size, char *err, size_t errlen)
{
    struct nbd_handle *h = lib.create();
    if (!h) {
        int e = lib.get_errno() ?: ENOMEM;
        set_reason(err, errlen, "cannot create an NBD handle: %s", lib.get_error() ?: strerror(e));
        errno = e;
        return NULL;
    }

    int e = 0;
    int64_t size = -1, min_block = 1;
    if (lib.connect_uri(h, uri) == -1) {
        e = lib.get_errno() ?: ECONNREFUSED;
        set_reason(err, errlen, "cannot connect to the NBD server: %s", strerror(e));
    } else if (lib.is_read_only(h) != 0) {
        e = ENOTSUP;
        set_reason(err, errlen, "the NBD export is read-only");
    } else if ((size = lib.get_size(h)) < 0) {
        e = lib.get_errno() ?: EIO;
        set_reason(err, errlen, "cannot get the NBD export's size: %s", strerror(e));
    } else if ((min_block = lib.get_block_size(h, LIBNBD_SIZE_MINIMUM)) > 0 &&
               (min_block > BACKING_BLOCK_SIZE || BACKING_BLOCK_SIZE % min_block != 0)) {
        e = ENOTSUP;
        set_reason(err, errlen, "the NBD export's minimum block size %" PRId64
                   " does not divide %u", min_block, BACKING_BLOCK_SIZE);
    }
    if (e) {
        lib.close(h);
        errno = e;
        return NULL;
    }

    struct nbd_server_link *c = calloc(1, sizeof(*c));
    if (!c) {
        lib.close(h);
        set_reason(err, errlen, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    c->h = h;
    c->can_trim = lib.can_trim(h) == 1;
    c->can_flush = lib.can_flush(h) == 1;
    /* 0 or -1: the server did not say, and any length goes. */
    c->min_block = min_block > 0 ? (uint32_t)min_block : 1;
    *ret_size = (uint64_t)size;
    return c;
}

static bool errno_means_gone(int e)
{
    return e == ENOTCONN || e == ECONNRESET || e == EPIPE || e == ESHUTDOWN;
}

static void rw_rdlock(pthread_rwlock_t *rw)
{
    if (pthread_rwlock_rdlock(rw) != 0)
        abort();
}

static void rw_wrlock(pthread_rwlock_t *rw)
{
    if (pthread_rwlock_wrlock(rw) != 0)
        abort();
}

static void rw_unlock(pthread_rwlock_t *rw)
{
    if (pthread_rwlock_unlock(rw) != 0)
        abort();
}

/*
 * Drop conn if it is still the current connection.  Takes the write lock,
 * so it waits for the calls still using it; the caller must not hold the
 * read lock.
 */
static void nbd_disconnect(struct backing_nbd *n, struct nbd_server_link *conn)
{
    rw_wrlock(&n->rw);
    bool ours = n->conn == conn;
    if (ours)
        n->conn = NULL;
    rw_unlock(&n->rw);
    if (ours)
        conn_free(conn);
}

/*
 * Called with no lock held when the backing store is disconnected.  Returns
 * 0 when a connection is in place afterwards (ours or another thread's),
 * -ENOTCONN otherwise, without waiting: if another thread is connecting,
 * or the last try was less than a second ago, it fails at once.
 */
static int nbd_reconnect(struct backing_nbd *n)
{
    int r = pthread_mutex_trylock(&n->reconnecting);
    if (r == EBUSY)
        return -ENOTCONN;
    if (r != 0)
        abort();

    rw_rdlock(&n->rw);
    bool connected = n->conn != NULL;
    rw_unlock(&n->rw);
    if (connected) {
        mutex_unlock(&n->reconnecting);
        return 0;
    }

    double now = now_monotonic();
    if (now - n->last_try < NBD_RECONNECT_INTERVAL) {
        mutex_unlock(&n->reconnecting);
        return -ENOTCONN;
    }
    n->last_try = now;

    uint64_t size = 0;
    struct nbd_server_link *c = conn_open(n->uri, &size, NULL, 0);
    if (c && size < n->size) {
        /* Blocks we wrote may lie past its end: not the server we had. */
        conn_free(c);
        c = NULL;
    }
    if (c) {
        rw_wrlock(&n->rw);
        n->conn = c;
        rw_unlock(&n->rw);
        stat_inc(&n->b.reconnects);
    }
    mutex_unlock(&n->reconnecting);
    return c ? 0 : -ENOTCONN;
}

enum nbd_op { NBD_OP_READ, NBD_OP_WRITE, NBD_OP_TRIM, NBD_OP_FLUSH };

/*
 * Run one request on the current connection, reconnecting first if there
 * is none (at most once per second).  Lengths that are not a multiple of
 * the server's minimum block size are padded through a bounce buffer: a
 * 4 KiB block is ours alone, so padding a write with zeros harms nothing.
 */
static int nbd_do(struct backing_nbd *n, enum nbd_op op, void *buf, size_t len, uint64_t off)
{
    rw_rdlock(&n->rw);
    struct nbd_server_link *c = n->conn;
    if (!c) {
        rw_unlock(&n->rw);
        int r = nbd_reconnect(n);
        if (r < 0)
            return r;
        rw_rdlock(&n->rw);
        c = n->conn;
        if (!c) {
            rw_unlock(&n->rw);
            return -ENOTCONN;
        }
    }

    int r = 0;
    unsigned char bounce[BACKING_BLOCK_SIZE];
    size_t xlen = len;
    if ((op == NBD_OP_READ || op == NBD_OP_WRITE) && len % c->min_block != 0) {
        xlen = (len / c->min_block + 1) * c->min_block;
        if (op == NBD_OP_WRITE) {
            memcpy(bounce, buf, len);
            memset(bounce + len, 0, xlen - len);
        }
    }
    void *xbuf = xlen == len ? buf : bounce;

    switch (op) {
    case NBD_OP_READ:
        r = lib.pread(c->h, xbuf, xlen, off, 0);
        if (r == 0 && xbuf != buf)
            memcpy(buf, bounce, len);
        break;
    case NBD_OP_WRITE:
        r = lib.pwrite(c->h, xbuf, xlen, off, 0);
        break;
    case NBD_OP_TRIM:
        r = c->can_trim ? lib.trim(c->h, len, off, 0) : 0;
        break;
    case NBD_OP_FLUSH:
        r = c->can_flush ? lib.flush(c->h, 0) : 0;
        break;
    }

    bool gone = false;
    if (r == -1) {
        int e = lib.get_errno();
        gone = lib.aio_is_dead(c->h) == 1 || lib.aio_is_closed(c->h) == 1 ||
               errno_means_gone(e);
        r = gone ? -ENOTCONN : -(e ?: EIO);
    }
    rw_unlock(&n->rw);
    if (gone)
        nbd_disconnect(n, c);
    return r;
}

static int nbd_backend_pread(struct backing *b, void *buf, size_t len, uint64_t off)
{
    return nbd_do((struct backing_nbd *)b, NBD_OP_READ, buf, len, off);
}

static int nbd_backend_pwrite(struct backing *b, const void *buf, size_t len, uint64_t off)
{
    /* nbd_do only reads through buf for a write. */
    return nbd_do((struct backing_nbd *)b, NBD_OP_WRITE, (void *)buf, len, off);
}

static void nbd_backend_discard(struct backing *b, uint64_t off, uint64_t len)
{
    (void)nbd_do((struct backing_nbd *)b, NBD_OP_TRIM, NULL, (size_t)len, off);
}

static int nbd_backend_flush(struct backing *b)
{
    return nbd_do((struct backing_nbd *)b, NBD_OP_FLUSH, NULL, 0, 0);
}

static void nbd_backend_close(struct backing *b)
{
    struct backing_nbd *n = (struct backing_nbd *)b;
    if (n->conn) {
        /* Tell the server we are leaving; a dead one cannot hear it. */
        (void)lib.shutdown(n->conn->h, 0);
        conn_free(n->conn);
    }
    pthread_rwlock_destroy(&n->rw);
    pthread_mutex_destroy(&n->reconnecting);
    free(n->uri);
}

static const struct backing_ops nbd_ops = {
    .type = "nbd",
    .pread = nbd_backend_pread,
    .pwrite = nbd_backend_pwrite,
    .discard = nbd_backend_discard,
    .flush = nbd_backend_flush,
    .close = nbd_backend_close,
};

static struct backing *nbd_backend_open(const char *uri, uint64_t size, char *err, size_t errlen)
{
    uint64_t have = 0;
    int r = lib_ready(err, errlen);
    if (r < 0) {
        errno = -r;
        return NULL;
    }
    struct nbd_server_link *c = conn_open(uri, &have, err, errlen);
    if (!c)
        return NULL;
    if ((have < size ? have : size) < BACKING_BLOCK_SIZE) {
        conn_free(c);
        set_reason(err, errlen, "the NBD export is smaller than one %u-byte block",
                   BACKING_BLOCK_SIZE);
        errno = EINVAL;
        return NULL;
    }

    struct backing_nbd *n = calloc(1, sizeof(*n));
    char *u = strdup(uri);
    if (!n || !u) {
        conn_free(c);
        free(n);
        free(u);
        set_reason(err, errlen, "out of memory");
        errno = ENOMEM;
        return NULL;
    }

    /*
     * Prefer writers: when a connection dies, the thread that closes it
     * must not wait behind a stream of readers that keep failing on it.
     */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&n->rw, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&n->reconnecting, NULL);

    n->b.ops = &nbd_ops;
    n->b.blocks = (have < size ? have : size) / BACKING_BLOCK_SIZE;
    n->uri = u;
    n->size = have;
    n->conn = c;
    n->last_try = now_monotonic();
    return &n->b;
}

/*
 * An NBD URI as libnbd takes it: the scheme is nbd or nbds, optionally
 * with +unix or +vsock.  Anything else is a path, so a file named
 * "nbd-backing" in the current directory is still a file.
 */
bool backing_spec_is_uri(const char *spec)
{
    static const char *const schemes[] = {
        "nbd:", "nbds:", "nbd+unix:", "nbds+unix:", "nbd+vsock:", "nbds+vsock:",
    };
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (strncmp(spec, schemes[i], strlen(schemes[i])) == 0)
            return true;
    return false;
}

/* ---- The shared part: bitmap, checks, counters ---- */

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

struct backing *backing_open(const char *spec, uint64_t size, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (spec[0] == '\0') {
        set_reason(err, errlen, "empty backing store name");
        errno = EINVAL;
        return NULL;
    }
    /* off_t is signed: the last byte must be addressable. */
    if (size < BACKING_BLOCK_SIZE || size > (uint64_t)INT64_MAX) {
        set_reason(err, errlen, "size %" PRIu64 " out of range", size);
        errno = EINVAL;
        return NULL;
    }

    struct backing *b = backing_spec_is_uri(spec) ? nbd_backend_open(spec, size, err, errlen)
                                          : file_open(spec, size, err, errlen);
    if (!b)
        return NULL;

    int e = 0;
    pthread_mutex_init(&b->lock, NULL);
    if (bitmap_init(b) < 0 || !(b->spec = strdup(spec)))
        e = ENOMEM;
    if (e) {
        set_reason(err, errlen, "out of memory");
        backing_close(b);
        errno = e;
        return NULL;
    }
    return b;
}

void backing_close(struct backing *b)
{
    if (!b)
        return;
    b->ops->close(b);
    pthread_mutex_destroy(&b->lock);
    free(b->bitmap);
    free(b->spec);
    free(b);
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

    LOCK_GUARD(&b->lock);
    uint64_t bit = 1ull << (blk % 64);
    if (b->bitmap[blk / 64] & bit) {
        b->bitmap[blk / 64] &= ~bit;
        b->used--;
    }
}

static int record(struct backing *b, int r, uint64_t *ok, uint64_t *failed)
{
    if (r == 0) {
        stat_inc(ok);
    } else {
        stat_inc(failed);
        __atomic_store_n(&b->last_error, r, __ATOMIC_RELAXED);
    }
    return r;
}

static bool io_args_ok(const struct backing *b, uint64_t blk, size_t len)
{
    return blk < b->blocks && len >= 1 && len <= BACKING_BLOCK_SIZE;
}

int backing_write(struct backing *b, uint64_t blk, const void *buf, size_t len)
{
    int r = io_args_ok(b, blk, len) ? b->ops->pwrite(b, buf, len, blk * BACKING_BLOCK_SIZE)
                                    : -EINVAL;
    return record(b, r, &b->writes, &b->write_errors);
}

int backing_read(struct backing *b, uint64_t blk, void *buf, size_t len)
{
    int r = io_args_ok(b, blk, len) ? b->ops->pread(b, buf, len, blk * BACKING_BLOCK_SIZE)
                                    : -EINVAL;
    return record(b, r, &b->reads, &b->read_errors);
}

/* A failed flush is a write that did not reach stable storage. */
int backing_flush(struct backing *b)
{
    int r = b->ops->flush(b);
    if (r < 0) {
        stat_inc(&b->write_errors);
        __atomic_store_n(&b->last_error, r, __ATOMIC_RELAXED);
    }
    return r;
}

void backing_get_stats(struct backing *b, struct backing_stats *ret)
{
    uint64_t used;
    {
        LOCK_GUARD(&b->lock);
        used = b->used;
    }
    bool connected = true;
    if (b->ops == &nbd_ops) {
        struct backing_nbd *n = (struct backing_nbd *)b;
        rw_rdlock(&n->rw);
        connected = n->conn != NULL;
        rw_unlock(&n->rw);
    }
    *ret = (struct backing_stats){
        .blocks = b->blocks,
        .blocks_used = used,
        .reads = stat_get(&b->reads),
        .writes = stat_get(&b->writes),
        .read_errors = stat_get(&b->read_errors),
        .write_errors = stat_get(&b->write_errors),
        .last_error = __atomic_load_n(&b->last_error, __ATOMIC_RELAXED),
        .reconnects = stat_get(&b->reconnects),
        .connected = connected,
        .direct = b->ops == &file_ops && ((struct backing_file *)b)->dfd >= 0,
        .pressure = b->ops == &file_ops && atomic_load(&((struct backing_file *)b)->pressure),
    };
}
