/* SPDX-License-Identifier: MIT */
/*
 * Inside the FUSE front end: fuse-export.c (the file, its operations, the
 * session's life) and the io_uring transport it may hand requests to
 * (fuse-uring.c).  The transport knows libfuse's session and nothing of
 * the store; it calls back into the front end only through
 * fuse_session_process_buf() and the thread_init hook.
 */
#ifndef UZRAM_FUSE_INTERNAL_H
#define UZRAM_FUSE_INTERNAL_H

#define FUSE_USE_VERSION 314

#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct fx_ring;

struct fx_ring_options {
    size_t payload;     /* bytes per entry: at least max_write and 8192 */
    uint64_t budget;    /* the entries of all queues (one per possible CPU) together */
    unsigned max_depth; /* entries per queue, split between its two rings; 2 at least */
    void (*thread_init)(void *arg); /* run first by each queue thread */
    void *arg;
};

/*
 * Rings, populated buffers and waiting threads for every queue of the
 * connection on fd, before FUSE_INIT is answered (this is the step that
 * may wait for memory or fail).  NULL with errno: ENOMEM, or what io_uring_setup() says when
 * io_uring is unavailable (ENOSYS, EPERM with kernel.io_uring_disabled).
 */
struct fx_ring *fx_ring_new(struct fuse_session *se, int fd, const struct fx_ring_options *o);

/*
 * After the kernel accepted the INIT reply that offered the transport:
 * the queue threads (made by fx_ring_new(), waiting) register their
 * entries.  The kernel holds every request until all queues have one.
 */
void fx_ring_start(struct fx_ring *r);

/*
 * For the session's custom writev: if the calling thread is serving a
 * ring request, take iov as its reply, set *ret to what writev would have
 * returned, and return true; false on any other thread.
 */
bool fx_ring_reply(const struct iovec *iov, int count, ssize_t *ret);

/*
 * The payload buffer of the ring request the calling thread serves, and
 * its size in *len; NULL on any other thread.  A reply whose data is
 * already there is not copied.
 */
void *fx_ring_payload(size_t *len);

unsigned fx_ring_queues(const struct fx_ring *r);
uint64_t fx_ring_bytes(const struct fx_ring *r); /* buffers, all queues */

/*
 * Stop the queue threads, close the rings (the kernel cancels what it
 * holds) and free the buffers.  NULL is a no-op.
 */
void fx_ring_free(struct fx_ring *r);

#endif /* UZRAM_FUSE_INTERNAL_H */
