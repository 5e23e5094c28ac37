/* SPDX-License-Identifier: MIT */
/*
 * What the NBD test programs share: a connection through libnbd with the
 * client's own checks switched off, and data that can be checked at any
 * offset.
 *
 * The data is a function of (seed, absolute byte position), not a stream:
 * a program that wrote [a, b) can check any sub-range later, from another
 * connection or another process, without keeping a copy.  Every 8-byte word
 * is splitmix64 of the seed and the word's index, so it does not compress
 * (each page costs the store a whole page) and two seeds never agree.
 */
#ifndef UZRAM_NBD_TEST_H
#define UZRAM_NBD_TEST_H

#include "test.h"

#include <libnbd.h>

/* The byte at absolute position pos of the data for seed. */
static inline unsigned char nbdt_byte(uint64_t seed, uint64_t pos)
{
    struct test_rng r = { seed * 0x100000001b3ull ^ (pos / 8) };
    uint64_t w = rng_next(&r);
    return (unsigned char)(w >> (8 * (pos % 8)));
}

static inline void nbdt_fill(void *buf, size_t len, uint64_t off, uint64_t seed)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = nbdt_byte(seed, off + i);
}

/* The first position in buf that is not the data for seed, or -1. */
static inline int64_t nbdt_mismatch(const void *buf, size_t len, uint64_t off, uint64_t seed)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i] != nbdt_byte(seed, off + i))
            return (int64_t)i;
    return -1;
}

/* The first position in buf that is not c, or -1. */
static inline int64_t nbdt_not_byte(const void *buf, size_t len, unsigned char c)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i] != c)
            return (int64_t)i;
    return -1;
}

/*
 * A connection to uri.  Strict mode is off so that libnbd sends what it
 * would refuse itself (past the end, zero length, unknown flags, writes to
 * a read-only export): the server's answer is what these tests check.
 * Aborts the test if the connection fails.
 */
static inline struct nbd_handle *nbdt_connect(const char *uri)
{
    struct nbd_handle *h = nbd_create();
    CHECKF(h, "nbd_create: %s", nbd_get_error());
    CHECKF(nbd_set_strict_mode(h, 0) == 0, "nbd_set_strict_mode: %s", nbd_get_error());
    CHECKF(nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0,
           "nbd_add_meta_context: %s", nbd_get_error());
    CHECKF(nbd_connect_uri(h, uri) == 0, "connecting to %s: %s", uri, nbd_get_error());
    return h;
}

/* An NBD call that must fail with errno want. */
#define CHECK_NBD_ERR(call, want)                                                 \
    do {                                                                          \
        int r_ = (call);                                                          \
        int e_ = nbd_get_errno();                                                 \
        CHECKF(r_ == -1 && e_ == (want),                                          \
               "%s: want -1 with %s, got %d with %s (%s)", #call,                 \
               strerrorname_np(want), r_, e_ ? strerrorname_np(e_) ?: "?" : "0",  \
               r_ == -1 ? nbd_get_error() : "succeeded");                          \
    } while (0)

/* An NBD call that must succeed. */
#define CHECK_NBD_OK(call)                                                        \
    do {                                                                          \
        int r_ = (call);                                                          \
        CHECKF(r_ != -1, "%s failed: %s", #call, nbd_get_error());                \
    } while (0)

#endif
