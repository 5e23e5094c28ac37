/* SPDX-License-Identifier: MIT */
/*
 * The FUSE front end: the store as one regular file that behaves as a block
 * device would (doc/fuse.md, "Shape"): fixed size, short reads and writes
 * across the end, ENOSPC past it, O_TRUNC ignored.  Every open is direct_io,
 * so no page is held twice ("Why direct_io").  A fixed set of workers, each
 * with its stack, buffers and codec context resident before its first
 * request, runs each handler start to end; the only lock shared between
 * requests guards the file's mode, owner and times ("Threads").  Stopping
 * detaches the mount lazily and serves on until the last user lets go
 * ("Stopping").
 */
#include "fuse-internal.h"

#include "fuse-export.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "populate.h"
#include "store.h"
#include "unlink-same.h"

#define UNUSED __attribute__((unused))

/* The largest request asked for: libfuse 3.14's buffers hold 256 pages. */
#define FX_MAX_IO (1u << 20)
/*
 * A worker's receive buffer: the largest write and its headers (libfuse's
 * FUSE_BUFFER_HEADER_SIZE is one page).  fx_init() never lets max_write
 * grow past FX_MAX_IO, and the kernel refuses a read into a buffer too
 * small for max_write (EINVAL) rather than cut a request short.
 */
#define FX_RECV_SIZE (FX_MAX_IO + 4096u)
/*
 * Asynchronous requests in flight (a loop device's direct I/O): enough to
 * keep every worker busy; the kernel caps it for unprivileged mounts.
 */
#define FX_MAX_BACKGROUND 64
#define FX_DEFAULT_THREADS 4
/* The size never changes; only st_blocks and times go a second stale. */
#define FX_ATTR_TIMEOUT 1.0
/* FUSE_INIT is the kernel's first message: it is waiting already. */
#define FX_INIT_TIMEOUT_S 30
#define FX_FUSECTL "/sys/fs/fuse/connections"
#define FX_URING_PARAM "/sys/module/fuse/parameters/enable_uring"
/*
 * The io_uring transport (doc/fuse.md, "Transports"): each entry holds a
 * request of up to max_write, so max_write is smaller there than on
 * /dev/fuse, and the entries of all queues share one budget, so that a
 * machine with many CPUs does not lock hundreds of MiB for them.
 */
#define FX_URING_MAX_IO (256u << 10)
#define FX_URING_BUDGET (64u << 20)
#define FX_URING_MAX_DEPTH 16u
/* fuse_init_out.flags2 bit of FUSE_OVER_IO_URING (1 << 41), and FUSE_INIT_EXT. */
#define FX_INIT2_OVER_IO_URING (1u << 9)
#define FX_INIT_EXT (1u << 30)
#define FX_FUSE_MAGIC 0x65735546   /* statfs f_type of any FUSE file system */

extern char **environ;

struct fuse_export {
    struct store *store;
    uint64_t size;
    char *file;
    struct fuse_session *se;
    unsigned threads;
    int done_fd;
    enum fuse_export_transport want;
    struct fx_ring *ring; /* made before INIT; NULL on /dev/fuse */
    bool ring_started;
    char note[160]; /* why auto chose /dev/fuse: fuse_export_get_conn() */

    pthread_t thread;
    bool started;
    bool stopped;
    dev_t dev;                  /* the mount's device, for fusectl; 0 if unknown */
    bool created;               /* fuse_export_new() made file: removed again by _free() */
    atomic_uint opens;          /* OPENs less RELEASEs: fuse_export_opens() */
    dev_t file_dev;             /* the file under the mount, as made */
    ino_t file_ino;

    pthread_mutex_t lock;       /* guards the fields below */
    pthread_cond_t cond;
    bool init_done;
    bool loop_ended;
    struct fuse_export_conn conn;
    mode_t mode;
    uid_t uid;
    gid_t gid;
    struct timespec atime, mtime, ctime;
};

/* ---- per-thread state ---------------------------------------------------- */

/*
 * A worker's read buffer, kept for the thread's life (doc/fuse.md,
 * "Threads").  The key's destructor frees it when a thread exits.
 */
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static __thread void *tls_buf;
static __thread size_t tls_buf_len;
static __thread const struct store *tls_prepared;

static void tls_free(void *p)
{
    free(p);
}

static void tls_init(void)
{
    /* Cannot fail short of a process out of keys; then buffers just leak. */
    (void)pthread_key_create(&tls_key, tls_free);
}

/* The store's per-thread state (its codec context) for the calling thread, once. */
static void thread_prepare(struct fuse_export *fe)
{
    if (tls_prepared != fe->store) {
        /* On failure the store tries again on each request; nothing to add. */
        (void)store_thread_prepare(fe->store);
        tls_prepared = fe->store;
    }
}

/* The calling worker's buffer, of at least len bytes; NULL if out of memory. */
static void *thread_buffer(struct fuse_export *fe, size_t len)
{
    thread_prepare(fe);
    /* On a ring thread, the request's own payload buffer: the reply needs no copy. */
    size_t ring_len;
    void *ring_buf = fx_ring_payload(&ring_len);
    if (ring_buf && len <= ring_len)
        return ring_buf;
    if (len <= tls_buf_len)
        return tls_buf;

    size_t want = len < FX_MAX_IO ? FX_MAX_IO : len;
    void *p;
    /* Page-aligned, so that the store copies whole pages on aligned offsets. */
    if (posix_memalign(&p, STORE_PAGE_SIZE, want) != 0)
        return NULL;
    free(tls_buf);
    tls_buf = p;
    tls_buf_len = want;
    (void)pthread_setspecific(tls_key, p);
    return p;
}

/* ---- attributes ---------------------------------------------------------- */

static void fill_stat(struct fuse_export *fe, struct stat *st)
{
    struct store_stats stats;
    store_get_stats(fe->store, &stats);

    memset(st, 0, sizeof(*st));
    st->st_ino = FUSE_ROOT_ID;
    st->st_nlink = 1;
    st->st_size = (off_t)fe->size;
    st->st_blksize = STORE_PAGE_SIZE;
    /* What du shows: the data stored, before compression. */
    st->st_blocks = (blkcnt_t)(stats.orig_data_size / 512);

    LOCK_GUARD(&fe->lock);
    st->st_mode = S_IFREG | fe->mode;
    st->st_uid = fe->uid;
    st->st_gid = fe->gid;
    st->st_atim = fe->atime;
    st->st_mtim = fe->mtime;
    st->st_ctim = fe->ctime;
}

static void fx_getattr(fuse_req_t req, fuse_ino_t ino UNUSED, struct fuse_file_info *fi UNUSED)
{
    struct fuse_export *fe = fuse_req_userdata(req);
    struct stat st;

    fill_stat(fe, &st);
    fuse_reply_attr(req, &st, FX_ATTR_TIMEOUT);
}

static void fx_setattr(fuse_req_t req, fuse_ino_t ino UNUSED, struct stat *attr, int to_set,
                       struct fuse_file_info *fi UNUSED)
{
    struct fuse_export *fe = fuse_req_userdata(req);
    struct timespec now;
    struct stat st;

    if ((to_set & FUSE_SET_ATTR_SIZE) && (attr->st_size < 0 || (uint64_t)attr->st_size != fe->size)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    {
        /* The kernel has checked permissions (default_permissions). */
        LOCK_GUARD(&fe->lock);
        if (to_set & FUSE_SET_ATTR_MODE)
            fe->mode = attr->st_mode & 07777;
        if (to_set & FUSE_SET_ATTR_UID)
            fe->uid = attr->st_uid;
        if (to_set & FUSE_SET_ATTR_GID)
            fe->gid = attr->st_gid;
        if (to_set & FUSE_SET_ATTR_ATIME_NOW)
            fe->atime = now;
        else if (to_set & FUSE_SET_ATTR_ATIME)
            fe->atime = attr->st_atim;
        if (to_set & FUSE_SET_ATTR_MTIME_NOW)
            fe->mtime = now;
        else if (to_set & FUSE_SET_ATTR_MTIME)
            fe->mtime = attr->st_mtim;
        fe->ctime = (to_set & FUSE_SET_ATTR_CTIME) ? attr->st_ctim : now;
    }
    fill_stat(fe, &st);
    fuse_reply_attr(req, &st, FX_ATTR_TIMEOUT);
}

/* ---- data ---------------------------------------------------------------- */

static void fx_open(fuse_req_t req, fuse_ino_t ino UNUSED, struct fuse_file_info *fi)
{
    /* O_TRUNC is ignored, as a block device ignores it (doc/fuse.md, "Shape"). */
    struct fuse_export *fe = fuse_req_userdata(req);

    fi->direct_io = 1;
    fi->keep_cache = 0;
    /* Counted before the reply: the RELEASE cannot come before it. */
    atomic_fetch_add(&fe->opens, 1);
    if (fuse_reply_open(req, fi) < 0)
        atomic_fetch_sub(&fe->opens, 1);
}

static void fx_read(fuse_req_t req, fuse_ino_t ino UNUSED, size_t size, off_t off,
                    struct fuse_file_info *fi UNUSED)
{
    struct fuse_export *fe = fuse_req_userdata(req);

    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if ((uint64_t)off >= fe->size || size == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    uint64_t len = fe->size - (uint64_t)off;
    if (len > size)
        len = size;

    void *buf = thread_buffer(fe, len);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    int r = store_read(fe->store, buf, len, (uint64_t)off);
    if (r < 0)
        fuse_reply_err(req, -r);
    else
        fuse_reply_buf(req, buf, len);
}

static void fx_write(fuse_req_t req, fuse_ino_t ino UNUSED, const char *buf, size_t size,
                     off_t off, struct fuse_file_info *fi UNUSED)
{
    struct fuse_export *fe = fuse_req_userdata(req);

    if (off < 0) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (size == 0) {
        fuse_reply_write(req, 0);
        return;
    }
    /* The file cannot grow: a block device answers ENOSPC past its end. */
    if ((uint64_t)off >= fe->size) {
        fuse_reply_err(req, ENOSPC);
        return;
    }
    uint64_t len = fe->size - (uint64_t)off;
    if (len > size)
        len = size;

    (void)thread_buffer(fe, 0);  /* codec context before the first write */
    int r = store_write(fe->store, buf, len, (uint64_t)off);
    if (r < 0)
        fuse_reply_err(req, -r);
    else
        fuse_reply_write(req, len);
}

/*
 * The kernel passes only KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE (it refuses
 * the other modes itself).  Without KEEP_SIZE a range past the end would
 * make the kernel grow the file, which cannot be: ENOSPC.
 */
static void fx_fallocate(fuse_req_t req, fuse_ino_t ino UNUSED, int mode, off_t off,
                         off_t length, struct fuse_file_info *fi UNUSED)
{
    struct fuse_export *fe = fuse_req_userdata(req);
    const int known = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
    uint64_t end;
    int r = 0;

    if (mode & ~known) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    if (off < 0 || length <= 0 ||
        __builtin_add_overflow((uint64_t)off, (uint64_t)length, &end)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (end > fe->size) {
        if (!(mode & FALLOC_FL_KEEP_SIZE)) {
            fuse_reply_err(req, ENOSPC);
            return;
        }
        end = fe->size;     /* beyond the end there is nothing to free */
    }
    if ((uint64_t)off >= end) {
        fuse_reply_err(req, 0);
        return;
    }

    (void)thread_buffer(fe, 0);
    if (mode & FALLOC_FL_PUNCH_HOLE)
        r = store_discard(fe->store, end - (uint64_t)off, (uint64_t)off);
    else if (mode & FALLOC_FL_ZERO_RANGE)
        /* fallocate(2): the range stays allocated, so no holes. */
        r = store_write_zeroes(fe->store, end - (uint64_t)off, (uint64_t)off,
                               STORE_ZERO_NO_HOLE);
    /* else: plain allocation.  A RAM store cannot reserve ahead; succeed. */
    fuse_reply_err(req, -r);
}

static void fx_flush(fuse_req_t req, fuse_ino_t ino UNUSED, struct fuse_file_info *fi UNUSED)
{
    struct fuse_export *fe = fuse_req_userdata(req);

    fuse_reply_err(req, -store_flush(fe->store));
}

static void fx_fsync(fuse_req_t req, fuse_ino_t ino UNUSED, int datasync UNUSED,
                     struct fuse_file_info *fi UNUSED)
{
    struct fuse_export *fe = fuse_req_userdata(req);

    fuse_reply_err(req, -store_flush(fe->store));
}

static void fx_release(fuse_req_t req, fuse_ino_t ino UNUSED, struct fuse_file_info *fi UNUSED)
{
    struct fuse_export *fe = fuse_req_userdata(req);

    atomic_fetch_sub(&fe->opens, 1);
    fuse_reply_err(req, 0);
}

/* The kernel answers SEEK_SET, SEEK_CUR and SEEK_END itself. */
static void fx_lseek(fuse_req_t req, fuse_ino_t ino UNUSED, off_t off, int whence,
                     struct fuse_file_info *fi UNUSED)
{
    struct fuse_export *fe = fuse_req_userdata(req);
    uint64_t pos;

    if (whence != SEEK_DATA && whence != SEEK_HOLE) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (off < 0) {
        fuse_reply_err(req, ENXIO);
        return;
    }
    int r = store_seek(fe->store, (uint64_t)off, whence == SEEK_DATA, &pos);
    if (r < 0)
        fuse_reply_err(req, -r);
    else
        fuse_reply_lseek(req, (off_t)pos);
}

/*
 * A file system of one file: blocks are the device's pages, free ones
 * those holding no data.  loop takes its discard granularity from f_bsize.
 */
static void fx_statfs(fuse_req_t req, fuse_ino_t ino UNUSED)
{
    struct fuse_export *fe = fuse_req_userdata(req);
    struct store_stats stats;
    struct statvfs sv = {0};

    store_get_stats(fe->store, &stats);
    uint64_t blocks = fe->size / STORE_PAGE_SIZE;
    uint64_t used = stats.orig_data_size / STORE_PAGE_SIZE;
    sv.f_bsize = STORE_PAGE_SIZE;
    sv.f_frsize = STORE_PAGE_SIZE;
    sv.f_blocks = blocks;
    sv.f_bfree = sv.f_bavail = used < blocks ? blocks - used : 0;
    sv.f_files = 1;
    sv.f_namemax = 255;
    fuse_reply_statfs(req, &sv);
}

static void fx_init(void *userdata, struct fuse_conn_info *conn)
{
    struct fuse_export *fe = userdata;

    /*
     * libfuse lowers max_write to what its buffers hold, after this; a
     * ring entry holds FX_URING_MAX_IO.  fe->ring is settled by now: the
     * INIT request was seen (worker_main) before libfuse called us.
     */
    conn->max_write = fe->ring ? FX_URING_MAX_IO : FX_MAX_IO;
    conn->max_read = 0;                         /* no limit beyond max_pages */
    conn->max_background = FX_MAX_BACKGROUND;
    conn->congestion_threshold = FX_MAX_BACKGROUND * 3 / 4;
    conn->want |= conn->capable & (FUSE_CAP_ASYNC_DIO | FUSE_CAP_ASYNC_READ |
                                   FUSE_CAP_ATOMIC_O_TRUNC);
    /* Splicing buys nothing: the store copies every byte anyway. */
    conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE |
                    FUSE_CAP_WRITEBACK_CACHE);

    LOCK_GUARD(&fe->lock);
    fe->conn = (struct fuse_export_conn){
        .proto_major = conn->proto_major,
        .proto_minor = conn->proto_minor,
        .max_write = conn->max_write,
        .max_readahead = conn->max_readahead,
        .max_background = conn->max_background,
        .async_dio = (conn->want & FUSE_CAP_ASYNC_DIO) != 0,
        .uring = fe->ring != NULL,
        .uring_queues = fe->ring ? fx_ring_queues(fe->ring) : 0,
        .uring_bytes = fe->ring ? fx_ring_bytes(fe->ring) : 0,
    };
    fe->init_done = true;
    pthread_cond_broadcast(&fe->cond);
}

static const struct fuse_lowlevel_ops fx_ops = {
    .init = fx_init,
    .getattr = fx_getattr,
    .setattr = fx_setattr,
    .open = fx_open,
    .read = fx_read,
    .write = fx_write,
    .flush = fx_flush,
    .release = fx_release,
    .fsync = fx_fsync,
    .statfs = fx_statfs,
    .fallocate = fx_fallocate,
    .lseek = fx_lseek,
};

/* ---- transport ----------------------------------------------------------- */

/*
 * The kernel's FUSE_INIT, seen by the worker that read it before libfuse
 * dispatches it (and so before fx_init()): does the kernel offer io_uring?
 * If not, the rings go: auto falls back to /dev/fuse, and uring fails the
 * start (fuse_export_start()).
 */
static void init_seen(struct fuse_export *fe, const void *mem, size_t n)
{
    const struct fuse_in_header *in = mem;
    struct fuse_init_in ii = { 0 };
    bool offered;

    if (!fe->ring)
        return;
    memcpy(&ii, in + 1, n - sizeof(*in) < sizeof(ii) ? n - sizeof(*in) : sizeof(ii));
    offered = (ii.flags & FX_INIT_EXT) && (ii.flags2 & FX_INIT2_OVER_IO_URING);
    if (offered)
        return;
    snprintf(fe->note, sizeof(fe->note),
             "the kernel did not offer io_uring in FUSE_INIT (protocol 7.%u)", ii.minor);
    fx_ring_free(fe->ring);
    fe->ring = NULL;
}

/* The opcode of the request this thread is dispatching from /dev/fuse. */
static __thread uint32_t tls_dev_opcode;

static ssize_t fx_io_read(int fd, void *buf, size_t len, void *userdata UNUSED)
{
    return read(fd, buf, len);
}

/*
 * Every reply libfuse sends.  A ring request's goes to its entry.  The
 * INIT reply, when the rings are ready, offers the transport; once the
 * kernel has taken it, the queue threads register their entries.
 */
static ssize_t fx_io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    struct fuse_export *fe = userdata;
    ssize_t n;

    if (fx_ring_reply(iov, count, &n)) {
        if (n < 0) {
            errno = (int)-n;
            return -1;
        }
        return n;
    }
    bool offer = tls_dev_opcode == FUSE_INIT && fe->ring && !fe->ring_started && count >= 2 &&
                 iov[1].iov_len >= offsetof(struct fuse_init_out, flags2) + sizeof(uint32_t);
    if (offer) {
        struct fuse_init_out *out = iov[1].iov_base;
        out->flags |= FX_INIT_EXT;
        out->flags2 |= FX_INIT2_OVER_IO_URING;
    }
    n = writev(fd, iov, count);
    if (offer && n >= 0) {
        fe->ring_started = true;
        fx_ring_start(fe->ring);
    }
    return n;
}

static const struct fuse_custom_io fx_io = {
    .read = fx_io_read,
    .writev = fx_io_writev,
};

/* Each ring thread, before its first request: what worker_main() does. */
static void ring_thread_init(void *arg)
{
    struct fuse_export *fe = arg;

    stack_prefault(IO_STACK_BYTES);
    thread_prepare(fe);
}

int fuse_export_uring_available(char *why, size_t len)
{
    char c = 0;

    /* Loads the fuse module if it is one, and with it its parameters. */
    int dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (dev >= 0)
        close(dev);
    _cleanup_close_ int fd = open(FX_URING_PARAM, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, len,
                 "this kernel has no FUSE over io_uring (it needs Linux 6.14 or "
                 "later with CONFIG_FUSE_IO_URING)");
        return 0;
    }
    if (read(fd, &c, 1) != 1 || (c != 'Y' && c != '1')) {
        snprintf(why, len,
                 "FUSE over io_uring is off in this kernel: as root, "
                 "echo Y > " FX_URING_PARAM " turns it on");
        return 0;
    }
    return 1;
}

/*
 * After the mount, before INIT is answered: the rings for auto or uring.
 * auto notes why it falls back (fe->note); uring fails with -EOPNOTSUPP
 * (the reason in fe->note) or what making the rings failed with.
 */
static int transport_prepare(struct fuse_export *fe)
{
    int r;

    if (fe->want == FUSE_EXPORT_DEV)
        return 0;
    if (!fuse_export_uring_available(fe->note, sizeof(fe->note)))
        return fe->want == FUSE_EXPORT_URING ? -EOPNOTSUPP : 0;
    const struct fx_ring_options ro = {
        .payload = FX_URING_MAX_IO,
        .budget = FX_URING_BUDGET,
        .max_depth = FX_URING_MAX_DEPTH,
        .thread_init = ring_thread_init,
        .arg = fe,
    };
    fe->ring = fx_ring_new(fe->se, fuse_session_fd(fe->se), &ro);
    if (!fe->ring) {
        r = -errno;
        snprintf(fe->note, sizeof(fe->note), "io_uring rings could not be made: %s",
                 strerror(-r));
        return fe->want == FUSE_EXPORT_URING ? r : 0;
    }
    if (fuse_session_custom_io(fe->se, &fx_io, fuse_session_fd(fe->se)) != 0) {
        fx_ring_free(fe->ring);
        fe->ring = NULL;
        snprintf(fe->note, sizeof(fe->note), "libfuse refused a custom io");
        return fe->want == FUSE_EXPORT_URING ? -EOPNOTSUPP : 0;
    }
    return 0;
}

/* ---- life cycle ---------------------------------------------------------- */

/*
 * Make file if missing; it must end up a regular file, and not one that
 * FUSE serves already: a second mount would stack on the first, and each
 * daemon's unmount would then detach the other's.  Not a symlink either
 * (-ELOOP): the mount would cover its target, wherever someone who can
 * write the link's directory points it.
 */
static int prepare_file(struct fuse_export *fe, const char *file)
{
    const int flags = O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW;
    struct statfs sfs;
    struct stat st;

    if (statfs(file, &sfs) == 0 && sfs.f_type == FX_FUSE_MAGIC)
        return -EBUSY;

    /* Made here, or there already: only what is made here is removed later. */
    _cleanup_close_ int fd = open(file, flags | O_CREAT | O_EXCL, 0600);
    fe->created = fd >= 0;
    if (fd < 0 && errno == EEXIST)
        fd = open(file, flags);
    if (fd < 0) {
        /* O_WRONLY fails on a directory with EISDIR: say "not a file". */
        return errno == EISDIR ? -EINVAL : -errno;
    }
    if (fstat(fd, &st) < 0)
        return -errno;
    fe->file_dev = st.st_dev;
    fe->file_ino = st.st_ino;
    return S_ISREG(st.st_mode) ? 0 : -EINVAL;
}

struct fuse_export *fuse_export_new(struct store *s, const char *file,
                                    const struct fuse_export_options *o)
{
    _cleanup_free_ char *opts = NULL;
    struct fuse_export *fe;
    bool mounted = false;
    int r;

    pthread_once(&tls_once, tls_init);
    fe = calloc(1, sizeof(*fe));
    if (!fe)
        return NULL;
    fe->done_fd = -1;
    pthread_mutex_init(&fe->lock, NULL);
    pthread_cond_init(&fe->cond, NULL);
    r = prepare_file(fe, file);
    if (r < 0) {
        errno = -r;
        goto fail;
    }
    fe->store = s;
    fe->size = store_size(s);
    fe->threads = o->threads ? o->threads : FX_DEFAULT_THREADS;
    if (fe->threads > FUSE_EXPORT_MAX_THREADS)
        fe->threads = FUSE_EXPORT_MAX_THREADS;
    fe->mode = 0600;
    fe->uid = geteuid();
    fe->gid = getegid();
    clock_gettime(CLOCK_REALTIME, &fe->mtime);
    fe->atime = fe->ctime = fe->mtime;

    fe->file = strdup(file);
    if (!fe->file)
        goto fail;
    fe->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fe->done_fd < 0)
        goto fail;

    if (asprintf(&opts, "fsname=uzram:%s,subtype=uzram,default_permissions%s",
                 o->name, o->allow_other ? ",allow_other" : "") < 0) {
        opts = NULL;
        errno = ENOMEM;
        goto fail;
    }
    char *argv[] = { (char *)"uzramd", (char *)"-o", opts, NULL };
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);

    errno = 0;
    fe->se = fuse_session_new(&args, &fx_ops, sizeof(fx_ops), fe);
    fuse_opt_free_args(&args);
    if (!fe->se) {
        if (errno == 0)
            errno = EIO;
        goto fail;
    }
    errno = 0;
    if (fuse_session_mount(fe->se, fe->file) != 0) {
        /* libfuse does not always leave errno meaningful. */
        if (errno == 0)
            errno = EIO;
        goto fail;
    }
    mounted = true;
    fe->want = o->transport;
    r = transport_prepare(fe);
    if (r < 0) {
        errno = -r;
        goto fail;
    }
    return fe;

fail:
    r = errno;
    if (mounted)
        fuse_session_unmount(fe->se);
    if (fe->se)
        fuse_session_destroy(fe->se);
    if (fe->done_fd >= 0)
        close(fe->done_fd);
    if (fe->created)
        (void)unlink_if_same(file, fe->file_dev, fe->file_ino);
    free(fe->file);
    pthread_cond_destroy(&fe->cond);
    pthread_mutex_destroy(&fe->lock);
    free(fe);
    errno = r;
    return NULL;
}

/*
 * One worker (doc/fuse.md, "Threads"): read a request, let libfuse
 * dispatch it, until the connection goes away (ENODEV: unmounted and
 * released, or aborted) or the session is told to exit.
 */
static void *worker_main(void *arg)
{
    struct fuse_export *fe = arg;
    int fd = fuse_session_fd(fe->se);
    void *mem = NULL;

    stack_prefault(IO_STACK_BYTES);
    if (!thread_buffer(fe, FX_MAX_IO) || posix_memalign(&mem, 4096, FX_RECV_SIZE) != 0 ||
        mem_populate(mem, FX_RECV_SIZE) < 0 || mem_populate(tls_buf, tls_buf_len) < 0) {
        /* The other workers serve; with none, the mount is unusable, and stopping says so. */
        free(mem);
        return NULL;
    }
    while (!fuse_session_exited(fe->se)) {
        ssize_t n = read(fd, mem, FX_RECV_SIZE);
        if (n < 0) {
            /* Interrupted, or a request withdrawn before we took it: read again. */
            if (errno == EINTR || errno == EAGAIN || errno == ENOENT)
                continue;
            fuse_session_exit(fe->se);
            break;
        }
        if ((size_t)n < sizeof(struct fuse_in_header)) {
            fuse_session_exit(fe->se);      /* not the kernel speaking */
            break;
        }
        const struct fuse_in_header *in = mem;
        if (in->opcode == FUSE_INIT)
            init_seen(fe, mem, (size_t)n);
        struct fuse_buf fbuf = { .mem = mem, .size = (size_t)n };
        tls_dev_opcode = in->opcode;
        fuse_session_process_buf(fe->se, &fbuf);
        tls_dev_opcode = 0;
    }
    free(mem);
    return NULL;
}

static void *serve(void *arg)
{
    struct fuse_export *fe = arg;
    pthread_t workers[FUSE_EXPORT_MAX_THREADS];
    unsigned n = 0;

    for (; n < fe->threads; n++)
        if (pthread_create(&workers[n], NULL, worker_main, fe) != 0)
            break;
    for (unsigned i = 0; i < n; i++)
        pthread_join(workers[i], NULL);

    {
        LOCK_GUARD(&fe->lock);
        fe->loop_ended = true;
        pthread_cond_broadcast(&fe->cond);
    }
    (void)eventfd_write(fe->done_fd, 1);
    return NULL;
}

int fuse_export_start(struct fuse_export *fe)
{
    struct timespec deadline;
    bool ready;
    int r;

    if (fe->started)
        return -EINVAL;
    r = pthread_create(&fe->thread, NULL, serve, fe);
    if (r != 0)
        return -r;
    fe->started = true;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += FX_INIT_TIMEOUT_S;
    {
        LOCK_GUARD(&fe->lock);
        while (!fe->init_done && !fe->loop_ended) {
            if (pthread_cond_timedwait(&fe->cond, &fe->lock, &deadline) == ETIMEDOUT)
                return -ETIMEDOUT;
        }
        ready = fe->init_done && !fe->loop_ended;
    }
    if (!ready)
        return -EIO;
    /*
     * uring made its rings (or fuse_export_new() failed), so none now means
     * the kernel did not offer io_uring after all (init_seen()): the note
     * says so.
     */
    if (fe->want == FUSE_EXPORT_URING && !fe->ring)
        return -EOPNOTSUPP;

    /*
     * The mount's device names its fusectl directory.  This stat is served
     * by the workers (INIT is done); failure only disables abort.
     */
    struct stat st;
    if (stat(fe->file, &st) == 0)
        fe->dev = st.st_dev;
    return 0;
}

void fuse_export_get_conn(const struct fuse_export *fe, struct fuse_export_conn *ret)
{
    LOCK_GUARD((pthread_mutex_t *)&fe->lock);
    *ret = fe->conn;
    ret->note = fe->note;
}

unsigned fuse_export_opens(const struct fuse_export *fe)
{
    return atomic_load(&fe->opens);
}

int fuse_export_done_fd(const struct fuse_export *fe)
{
    return fe->done_fd;
}

/* Lazy unmount as an unprivileged user: only fusermount3 may. */
static int run_fusermount(const char *file)
{
    char *argv[] = { (char *)"fusermount3", (char *)"-u", (char *)"-z", (char *)"-q",
                     (char *)"--", (char *)file, NULL };
    pid_t pid;
    int status;

    int r = posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ);
    if (r != 0)
        return -r;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

int fuse_export_stop(struct fuse_export *fe)
{
    if (fe->stopped)
        return 0;
    fe->stopped = true;

    {
        LOCK_GUARD(&fe->lock);
        if (fe->loop_ended)
            return 0;   /* unmounted or aborted already */
    }
    /*
     * Unmount only our own mount: if something was mounted over the file
     * since, detaching the top one would take someone else's.
     */
    struct stat st;
    if (stat(fe->file, &st) < 0)
        return -errno;
    if (fe->dev == 0 || st.st_dev != fe->dev)
        return -EBUSY;
    if (geteuid() != 0)
        return run_fusermount(fe->file);
    if (umount2(fe->file, MNT_DETACH | UMOUNT_NOFOLLOW) < 0) {
        /* EINVAL: not a mount point any more, someone unmounted it. */
        return errno == EINVAL ? 0 : -errno;
    }
    return 0;
}

int fuse_export_abort(struct fuse_export *fe)
{
    char path[64];

    /* fusectl names connections by the kernel's dev_t: anonymous, major 0. */
    if (fe->dev == 0 || major(fe->dev) != 0)
        return -ENOENT;
    snprintf(path, sizeof(path), FX_FUSECTL "/%u/abort", minor(fe->dev));
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && geteuid() == 0) {
        /*
         * fusectl is not mounted (systemd mounts it at boot; containers
         * and minimal systems may not): mount it, as that boot step would.
         */
        if (mount("fusectl", FX_FUSECTL, "fusectl", 0, NULL) == 0)
            fd = open(path, O_WRONLY | O_CLOEXEC);
        else
            errno = ENOENT;
    }
    if (fd < 0)
        return -errno;
    if (write(fd, "1", 1) != 1)
        return -errno;
    return 0;
}

void fuse_export_free(struct fuse_export *fe)
{
    if (!fe)
        return;
    if (fe->started) {
        (void)fuse_export_stop(fe);
        pthread_join(fe->thread, NULL);
    }
    /*
     * Closes the device; also unmounts when serving never started (the
     * mount is then idle: the kernel waits on INIT).
     */
    fuse_session_unmount(fe->se);
    /* The connection is gone: the queue threads have ended or end now. */
    fx_ring_free(fe->ring);
    fuse_session_destroy(fe->se);
    close(fe->done_fd);
    /* Unmounted (or detached while a loop device holds it): the path names
     * the file underneath again, and goes if it was made here. */
    if (fe->created)
        (void)unlink_if_same(fe->file, fe->file_dev, fe->file_ino);
    free(fe->file);
    pthread_cond_destroy(&fe->cond);
    pthread_mutex_destroy(&fe->lock);
    free(fe);
}
