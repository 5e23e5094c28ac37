/* SPDX-License-Identifier: MIT */
/*
 * Populating memory ahead of use: the allocator's reserve, the store's
 * tables, the front ends' buffers.  A header of its own (no library) so
 * that libzspool, which links nothing of uzram's, can use it too.
 */
#ifndef UZRAM_POPULATE_H
#define UZRAM_POPULATE_H

#include <alloca.h>
#include <errno.h>
#include <stddef.h>
#include <sys/mman.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/*
 * Make the pages of [p, p + bytes) resident, as writes would, without
 * changing their contents; under mlockall() they are then locked too.
 * p must be page-aligned.  This is the step that may wait for memory: do it
 * where waiting is harmless.  Returns 0, or -ENOMEM if the memory could not
 * be had (or the range is not mapped writable).
 */
static inline int mem_populate(void *p, size_t bytes)
{
    for (;;) {
        if (madvise(p, bytes, MADV_POPULATE_WRITE) == 0)
            return 0;
        if (errno != EINTR)
            break;
    }
    if (errno != EINVAL)
        return -ENOMEM;
    /*
     * Before Linux 5.14: write each page.  Reading and writing back the
     * same byte keeps the contents, and the compiler may not drop it.
     */
    for (size_t off = 0; off < bytes; off += 4096) {
        volatile char *c = (volatile char *)p + off;
        *c = *c;
    }
    return 0;
}

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

/*
 * Give [p, p + bytes) back to the kernel: the pages read as zeros after.
 * Under mlockall() plain MADV_DONTNEED refuses locked pages (EINVAL);
 * MADV_DONTNEED_LOCKED (Linux 5.18) takes locked and unlocked alike, and
 * is tried first.  Allocates nothing; a kernel that refuses both keeps the
 * pages.
 */
static inline void mem_release(void *p, size_t bytes)
{
    if (bytes && madvise(p, bytes, MADV_DONTNEED_LOCKED) != 0)
        (void)madvise(p, bytes, MADV_DONTNEED);
}

/*
 * The same for a buffer from malloc() (any alignment): the pages it covers.
 * Touching a page it shares with other data is harmless, its bytes are
 * kept.
 */
static inline int mem_populate_buf(void *p, size_t bytes)
{
    if (bytes == 0)
        return 0;
    char *start = (char *)((size_t)p & ~(size_t)4095);
    char *end = (char *)p + bytes;
    return mem_populate(start, (size_t)(end - start));
}

/* What stack_prefault() is given in threads that serve requests. */
#define IO_STACK_BYTES (256u << 10)

/*
 * Touch bytes of the calling thread's stack below the caller's frame, so
 * that a thread that serves requests has its stack resident (and, under
 * mlockall(), locked) before its first request: a stack page first touched
 * under memory pressure is a page fault like any other.  Not inlined: the
 * space is the callee's and is given back on return.
 */
static __attribute__((noinline, unused)) void stack_prefault(size_t bytes)
{
    volatile char *p = alloca(bytes);
    for (size_t off = 0; off < bytes; off += 4096)
        p[off] = 0;
    __asm__ volatile("" : : "r"(p) : "memory");
}

#endif /* UZRAM_POPULATE_H */
