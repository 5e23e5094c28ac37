/* SPDX-License-Identifier: MIT */
/*
 * FUSE over io_uring (doc/fuse.md, "Transports"): the kernel hands each
 * request to a ring entry the daemon registered in advance, on the queue
 * of the CPU the request was made on, and takes the reply and the next
 * request in one command.  Where /dev/fuse costs a read(), a write() and
 * two wake-ups of a thread on another CPU per request, this costs one
 * io_uring_enter() on a thread pinned to the submitter's CPU.
 *
 * libfuse 3.14 knows nothing of it, and keeps doing what it does well:
 * mounting, FUSE_INIT and the decoding of every operation.  fuse-export.c
 * gives the session a custom io that offers the transport in the INIT
 * reply; from then on each queue thread here copies a ring request's
 * headers in front of its payload, so that fuse_session_process_buf()
 * sees the same contiguous request read() would have given it, and the
 * handler's reply, which libfuse writes through the custom io, lands here
 * (fx_ring_reply()) instead of in /dev/fuse: the out header into the
 * entry's header area, the rest into its payload buffer.  A read handler
 * that decompressed into the payload buffer itself (fx_ring_payload())
 * costs no copy at all.
 *
 * Memory: everything is made before the INIT reply offers the transport,
 * rings and buffers populated, so that nothing on the request path
 * allocates, and so that a failure can still fall back to /dev/fuse: once
 * the kernel has agreed, it holds every request until each queue has an
 * entry.  A queue is depth entries of one header page and one payload
 * buffer of max_write bytes (fx_ring_bytes()).
 *
 * Threads: two per queue, each the only one to touch its own ring, made
 * with the rings and waiting until the INIT reply is sent.  The kernel
 * puts a request on the queue of the CPU it was made on, and a thread
 * serves one request at a time: a queue with a single thread would serve
 * a loop device's whole stream, which its one kworker makes on one CPU,
 * on one CPU (sequential reads at 1.8 GB/s where /dev/fuse's workers did
 * 3.3).  So each queue has a main ring, whose thread is pinned to the
 * queue's CPU, and an overflow ring, whose thread runs where the
 * scheduler finds room; they register half of the queue's entries each.
 * The kernel hands a request to the entry that came back last, so a main
 * thread that keeps up keeps its work on its CPU, and the overflow thread
 * takes what it cannot (uzramd-compare --quick: random reads 112k IOPS against
 * 82k with one thread a queue, sequential reads 3.1 GB/s).  A thread ends
 * when its ring reports the connection gone (the kernel completes every
 * entry with ENOTCONN when the connection ends or is aborted) or when
 * fx_ring_free() writes the stop eventfd, which every ring watches with a
 * poll of its own.
 */
#include "fuse-internal.h"

#include <errno.h>
#include <liburing.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "populate.h"

/*
 * The kernel's FUSE-over-io_uring interface (include/uapi/linux/fuse.h,
 * protocol 7.42), which Debian 12's kernel headers predate.
 */
#define FXR_HEADER_AREA 128
struct fxr_ent_in_out {
    uint64_t flags;
    uint64_t commit_id;  /* the request's, to name it in the commit */
    uint32_t payload_sz; /* bytes in the payload buffer, either way */
    uint32_t padding;
    uint64_t reserved;
};
struct fxr_req_header {
    uint8_t in_out[FXR_HEADER_AREA]; /* fuse_in_header, then fuse_out_header */
    uint8_t op_in[FXR_HEADER_AREA];  /* the operation's own header */
    struct fxr_ent_in_out ent;
};
struct fxr_cmd_req { /* in the SQE's 80-byte command area */
    uint64_t flags;
    uint64_t commit_id;
    uint16_t qid;
    uint8_t padding[6];
};
enum { FXR_CMD_REGISTER = 1, FXR_CMD_COMMIT_AND_FETCH = 2 };
_Static_assert(sizeof(struct fxr_req_header) == 288, "the kernel's header layout");

/*
 * An entry's mapping: the header area in its first page, the payload from
 * the second, so that a request's headers can be put just in front of its
 * payload (at most a fuse_in_header and FXR_HEADER_AREA bytes).
 */
#define FXR_ROOM 4096u
_Static_assert(sizeof(struct fxr_req_header) + sizeof(struct fuse_in_header) + FXR_HEADER_AREA <=
                   FXR_ROOM,
               "room in front of the payload");
/* A poll on the stop eventfd is every queue's user_data ~0. */
#define FXR_STOP_TAG UINT64_MAX

struct fxr_entry {
    struct fxr_req_header *hdr;
    uint8_t *payload;
    struct iovec iov[2]; /* what REGISTER names; read again by no one */
    bool replied;
};

/*
 * One thread and its io_uring.  Each queue (qid) has two: the main ring,
 * pinned to the queue's CPU, and the overflow ring, on any CPU; each
 * registers half of the queue's entries (main_share()).
 */
struct fxr_queue {
    struct fx_ring *ring;
    unsigned qid;
    unsigned depth; /* this ring's entries */
    bool pinned;
    struct io_uring uring;
    bool uring_made;
    struct fxr_entry *ents;
    pthread_t thread;
    bool thread_made;
    int setup_err; /* queue_setup()'s, under the ring's lock */
};

struct fx_ring {
    struct fuse_session *se;
    int fd;      /* /dev/fuse, the session's */
    int stop_fd; /* eventfd: every queue thread ends */
    unsigned nqueues, nrings, depth;
    size_t payload;
    void (*thread_init)(void *);
    void *arg;
    struct fxr_queue *queues;

    pthread_mutex_t lock; /* guards go and quit, for threads not yet serving */
    pthread_cond_t cond;
    unsigned ready; /* queues set up (or failed to) */
    bool go, quit;
};

/* The entry the calling thread serves, while its handler runs. */
static __thread struct fxr_entry *tls_entry;
static __thread size_t tls_payload;

static uint8_t *entry_base(const struct fxr_entry *e)
{
    return (uint8_t *)e->hdr;
}

static void *queue_main(void *arg);

/*
 * Of a queue's depth entries, the main ring's.  Half: a quarter or three
 * quarters served fewer random reads (88k and 92k IOPS against 112k).
 */
static unsigned main_share(unsigned depth)
{
    return depth / 2 > 0 ? depth / 2 : 1;
}

/*
 * Entries per queue: as many as the budget holds for every queue, within
 * 2 (one a ring) and max_depth.  Past 128 CPUs or so, 2 a queue is more
 * than a 64 MiB budget: the minimum wins.
 */
static unsigned depth_within(const struct fx_ring_options *o, unsigned nqueues)
{
    uint64_t d = o->budget / ((uint64_t)nqueues * (FXR_ROOM + o->payload));

    return d < 2 ? 2 : d > o->max_depth ? o->max_depth : (unsigned)d;
}

struct fx_ring *fx_ring_new(struct fuse_session *se, int fd, const struct fx_ring_options *o)
{
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);
    struct fx_ring *r;
    int err;

    if (ncpu < 1 || ncpu > 4096 || o->max_depth < 2 || o->payload < 8192) {
        errno = EINVAL;
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->se = se;
    r->fd = fd;
    r->nqueues = (unsigned)ncpu;
    r->nrings = 2 * r->nqueues;
    r->depth = depth_within(o, r->nqueues);
    r->payload = o->payload;
    r->thread_init = o->thread_init;
    r->arg = o->arg;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r->queues = calloc(r->nrings, sizeof(*r->queues));
    if (r->stop_fd < 0 || !r->queues)
        goto fail;

    /*
     * Each ring's thread makes its ring and buffers itself (a main ring's
     * on its queue's CPU, its pages near it; a ring's only submitter is
     * the thread that made it), says so, and waits for fx_ring_start().
     * Once the INIT reply has offered the transport nothing may fail
     * before every queue has registered, or the kernel would hold the
     * mount's requests for ever: so all of it happens here, before.
     */
    for (unsigned q = 0; q < r->nrings; q++) {
        struct fxr_queue *qu = &r->queues[q];
        unsigned main_depth = main_share(r->depth);
        qu->ring = r;
        qu->qid = q / 2;
        qu->pinned = q % 2 == 0;
        qu->depth = qu->pinned ? main_depth : r->depth - main_depth;
        err = pthread_create(&qu->thread, NULL, queue_main, qu);
        if (err != 0) {
            errno = err;
            goto fail;
        }
        qu->thread_made = true;
    }
    err = 0;
    pthread_mutex_lock(&r->lock);
    while (r->ready < r->nrings)
        pthread_cond_wait(&r->cond, &r->lock);
    for (unsigned q = 0; q < r->nrings && !err; q++)
        err = r->queues[q].setup_err;
    pthread_mutex_unlock(&r->lock);
    if (err) {
        errno = err;
        goto fail;
    }
    return r;

fail:
    err = errno;
    fx_ring_free(r);
    errno = err;
    return NULL;
}

/* The command of entry idx: REGISTER, or COMMIT_AND_FETCH of commit_id. */
static void queue_cmd(struct fxr_queue *qu, unsigned idx, uint32_t op, uint64_t commit_id)
{
    struct fxr_entry *e = &qu->ents[idx];
    struct io_uring_sqe *sqe;

    /* The SQ has a slot for each entry, each queued once; if not, make room. */
    while (!(sqe = io_uring_get_sqe(&qu->uring)))
        (void)io_uring_submit(&qu->uring);

    /* SQE128: the command area runs on into the slot's second half. */
    memset(sqe, 0, sizeof(*sqe));
    memset(sqe + 1, 0, sizeof(*sqe));
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = qu->ring->fd;
    sqe->cmd_op = op;
    sqe->addr = (uint64_t)(uintptr_t)e->iov;
    sqe->len = 2;
    sqe->user_data = idx;
    struct fxr_cmd_req *cmd = (struct fxr_cmd_req *)sqe->cmd;
    cmd->commit_id = commit_id;
    cmd->qid = (uint16_t)qu->qid;
}

/*
 * Serve one request in entry idx, and queue its commit.  The request is
 * the kernel's: its lengths are checked against the buffers before use.
 */
static void serve_entry(struct fxr_queue *qu, unsigned idx)
{
    struct fx_ring *r = qu->ring;
    struct fxr_entry *e = &qu->ents[idx];
    struct fuse_in_header in;
    uint64_t commit_id = e->hdr->ent.commit_id;
    uint32_t payload_sz = e->hdr->ent.payload_sz;
    size_t op_len;

    memcpy(&in, e->hdr->in_out, sizeof(in));
    if (in.len < sizeof(in) || payload_sz > r->payload || in.len - sizeof(in) < payload_sz ||
        (op_len = in.len - sizeof(in) - payload_sz) > FXR_HEADER_AREA) {
        /* Not a request the kernel makes: answer EIO rather than guess. */
        struct fuse_out_header out = { .len = sizeof(out), .error = -EIO, .unique = in.unique };
        memcpy(e->hdr->in_out, &out, sizeof(out));
        e->hdr->ent.payload_sz = 0;
        queue_cmd(qu, idx, FXR_CMD_COMMIT_AND_FETCH, commit_id);
        return;
    }
    uint8_t *req = e->payload - sizeof(in) - op_len;
    memcpy(req, &in, sizeof(in));
    memcpy(req + sizeof(in), e->hdr->op_in, op_len);

    struct fuse_buf buf = { .mem = req, .size = in.len };
    e->replied = false;
    tls_entry = e;
    fuse_session_process_buf(r->se, &buf);
    tls_entry = NULL;
    if (!e->replied) {
        /* Every request that comes by the ring has a reply; libfuse failed to send one. */
        struct fuse_out_header out = { .len = sizeof(out), .error = -EIO, .unique = in.unique };
        memcpy(e->hdr->in_out, &out, sizeof(out));
        e->hdr->ent.payload_sz = 0;
    }
    queue_cmd(qu, idx, FXR_CMD_COMMIT_AND_FETCH, commit_id);
}

/* A ring and its entries, made by its thread.  0 or an errno. */
static int queue_setup(struct fxr_queue *qu)
{
    struct fx_ring *r = qu->ring;
    struct io_uring_params p = {
        .flags = IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
    };

    /* An SQ slot per entry and one for the stop poll. */
    int err = io_uring_queue_init_params(qu->depth + 1, &qu->uring, &p);
    if (err < 0)
        return -err;
    qu->uring_made = true;
    qu->ents = calloc(qu->depth, sizeof(*qu->ents));
    if (!qu->ents)
        return ENOMEM;
    for (unsigned i = 0; i < qu->depth; i++) {
        struct fxr_entry *e = &qu->ents[i];
        uint8_t *b = mmap(NULL, FXR_ROOM + r->payload, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b == MAP_FAILED)
            return errno;
        e->hdr = (struct fxr_req_header *)b;
        e->payload = b + FXR_ROOM;
        e->iov[0] = (struct iovec){ e->hdr, sizeof(*e->hdr) };
        e->iov[1] = (struct iovec){ e->payload, r->payload };
        err = mem_populate(b, FXR_ROOM + r->payload);
        if (err < 0)
            return -err;
    }
    return 0;
}

static void *queue_main(void *arg)
{
    struct fxr_queue *qu = arg;
    struct fx_ring *r = qu->ring;
    cpu_set_t set;

    if (qu->pinned) {
        CPU_ZERO(&set);
        CPU_SET(qu->qid, &set);
        /* Not pinned (a CPU outside our cpuset) is slower, not wrong. */
        (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    tls_payload = r->payload;
    if (r->thread_init)
        r->thread_init(r->arg);
    int err = queue_setup(qu);
    {
        pthread_mutex_lock(&r->lock);
        qu->setup_err = err;
        r->ready++;
        pthread_cond_broadcast(&r->cond);
        while (!r->go && !r->quit)
            pthread_cond_wait(&r->cond, &r->lock);
        bool quit = r->quit;
        pthread_mutex_unlock(&r->lock);
        if (quit)
            return NULL;
    }

    struct io_uring_sqe *sqe;
    while (!(sqe = io_uring_get_sqe(&qu->uring)))
        (void)io_uring_submit(&qu->uring);
    io_uring_prep_poll_add(sqe, r->stop_fd, POLLIN);
    sqe->user_data = FXR_STOP_TAG;
    for (unsigned i = 0; i < qu->depth; i++)
        queue_cmd(qu, i, FXR_CMD_REGISTER, 0);

    /*
     * Each entry is always either with the kernel or being served here,
     * so the SQ (one slot per entry and the poll's) never runs out.  An
     * entry the kernel completes with an error is gone from the queue: the
     * connection has ended (ENOTCONN, ECANCELED), or the kernel refused a
     * command, which it then reports in its log; the queue serves on with
     * the entries it has left, and ends with the last.
     */
    unsigned held = qu->depth;
    bool stop = false;
    while (!stop && held > 0) {
        struct io_uring_cqe *cqe;
        err = io_uring_submit_and_wait(&qu->uring, 1);
        if (err < 0 && err != -EINTR) {
            break;
        }
        while (!stop && io_uring_peek_cqe(&qu->uring, &cqe) == 0) {
            uint64_t tag = cqe->user_data;
            int res = cqe->res;
            io_uring_cqe_seen(&qu->uring, cqe);
            if (tag == FXR_STOP_TAG) {
                stop = true;
            } else if (tag >= qu->depth) {
                continue; /* not ours: nothing else is submitted */
            } else if (res < 0) {
                held--;
                stop = res == -ENOTCONN || res == -ECANCELED || res == -ENODEV;
            } else {
                serve_entry(qu, (unsigned)tag);
            }
        }
    }
    return NULL;
}

void fx_ring_start(struct fx_ring *r)
{
    pthread_mutex_lock(&r->lock);
    r->go = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

bool fx_ring_reply(const struct iovec *iov, int count, ssize_t *ret)
{
    struct fxr_entry *e = tls_entry;
    size_t off = 0;

    if (!e)
        return false;
    if (count < 1 || iov[0].iov_len != sizeof(struct fuse_out_header)) {
        *ret = -EINVAL;
        return true;
    }
    for (int i = 1; i < count; i++) {
        if (iov[i].iov_len > tls_payload - off) {
            *ret = -EINVAL;
            return true;
        }
        /* A read decompressed in place is there already. */
        if ((const uint8_t *)iov[i].iov_base != e->payload + off)
            memcpy(e->payload + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    memcpy(e->hdr->in_out, iov[0].iov_base, sizeof(struct fuse_out_header));
    e->hdr->ent.payload_sz = (uint32_t)off;
    e->replied = true;
    *ret = (ssize_t)(off + iov[0].iov_len);
    return true;
}

void *fx_ring_payload(size_t *len)
{
    if (!tls_entry)
        return NULL;
    *len = tls_payload;
    return tls_entry->payload;
}

unsigned fx_ring_queues(const struct fx_ring *r)
{
    return r->nqueues;
}

uint64_t fx_ring_bytes(const struct fx_ring *r)
{
    return (uint64_t)r->nqueues * r->depth * (FXR_ROOM + r->payload);
}

void fx_ring_free(struct fx_ring *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->quit = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if (r->stop_fd >= 0)
        (void)eventfd_write(r->stop_fd, 1);
    for (unsigned q = 0; r->queues && q < r->nrings; q++) {
        struct fxr_queue *qu = &r->queues[q];
        if (qu->thread_made)
            pthread_join(qu->thread, NULL);
        /* Closing the ring cancels what the kernel still holds of it. */
        if (qu->uring_made)
            io_uring_queue_exit(&qu->uring);
        for (unsigned i = 0; qu->ents && i < qu->depth; i++) {
            if (qu->ents[i].hdr)
                munmap(entry_base(&qu->ents[i]), FXR_ROOM + r->payload);
        }
        free(qu->ents);
    }
    free(r->queues);
    if (r->stop_fd >= 0)
        close(r->stop_fd);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
