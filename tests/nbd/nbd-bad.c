/* SPDX-License-Identifier: MIT */
/*
 * The server's answers to requests a careful client never sends, through
 * libnbd with strict mode off (so libnbd forwards what it would refuse):
 *
 *   nbd-bad edges URI [CASE] past the end, crossing it, overflowing offsets,
 *                            zero lengths, unaligned I/O, unknown flags,
 *                            reads over the largest block size, hole
 *                            chunks, DF, and replies out of order
 *   nbd-bad readonly URI     an export served with --read-only: EPERM
 *   nbd-bad memlimit URI     a device with --mem-limit 16M: ENOSPC, and the
 *                            data stored before it intact
 *   nbd-bad conns URI MAX EXTRA
 *                            MAX connections serve at once; EXTRA more are
 *                            refused or closed, and do not disturb them;
 *                            once some close, new ones are served
 *
 * Error numbers are those the issue and the NBD protocol ask for: EINVAL
 * for reads, trims, block status and cache past the end and for unknown
 * flags, ENOSPC for writes past the end and at the memory limit, EPERM for
 * writes to a read-only export.  After every refused request the same
 * connection must still serve: a refusal is an answer, not a disconnect.
 */
#include "nbd-test.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>

#define MiB ((uint64_t)1 << 20)

static const char *uri;

/* Run only this case of "edges" (the optional last argument), to debug. */
static const char *only;

/* RUN_TEST for cases that take arguments. */
#define RUN_TEST_H(fn, ...)                                           \
    do {                                                              \
        if (only && strcmp(only, #fn))                                \
            break;                                                    \
        test_current = #fn;                                           \
        printf("-- %s\n", #fn);                                       \
        fflush(stdout);                                               \
        fn(__VA_ARGS__);                                              \
        printf("ok %s\n", #fn);                                       \
        fflush(stdout);                                               \
        test_current = NULL;                                          \
    } while (0)

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    CHECK(p);
    return p;
}

/* The connection still answers: a 4 KiB write and read-back at off. */
static void still_serves(struct nbd_handle *h, uint64_t off, uint64_t seed)
{
    unsigned char buf[4096];

    nbdt_fill(buf, sizeof(buf), off, seed);
    CHECK_NBD_OK(nbd_pwrite(h, buf, sizeof(buf), off, 0));
    memset(buf, 0, sizeof(buf));
    CHECK_NBD_OK(nbd_pread(h, buf, sizeof(buf), off, 0));
    CHECKF(nbdt_mismatch(buf, sizeof(buf), off, seed) < 0,
           "4 KiB written at %" PRIu64 " did not read back", off);
}

/* ---- edges -------------------------------------------------------------- */

static void past_the_end(struct nbd_handle *h, uint64_t size)
{
    unsigned char *buf = xmalloc(8192);

    memset(buf, 0x5a, 8192);
    /* At the end, crossing it, and far past it. */
    CHECK_NBD_ERR(nbd_pread(h, buf, 4096, size, 0), EINVAL);
    CHECK_NBD_ERR(nbd_pread(h, buf, 8192, size - 4096, 0), EINVAL);
    CHECK_NBD_ERR(nbd_pread(h, buf, 1, size, 0), EINVAL);
    CHECK_NBD_ERR(nbd_pread(h, buf, 4096, size + 1000 * MiB, 0), EINVAL);
    CHECK_NBD_ERR(nbd_pwrite(h, buf, 4096, size, 0), ENOSPC);
    CHECK_NBD_ERR(nbd_pwrite(h, buf, 8192, size - 4096, 0), ENOSPC);
    CHECK_NBD_ERR(nbd_pwrite(h, buf, 1, size, 0), ENOSPC);
    CHECK_NBD_ERR(nbd_trim(h, 4096, size, 0), EINVAL);
    CHECK_NBD_ERR(nbd_trim(h, 8192, size - 4096, 0), EINVAL);
    CHECK_NBD_ERR(nbd_cache(h, 4096, size, 0), EINVAL);

    /* A write-zeroes past the end is a write (ENOSPC); EINVAL is also what
     * some servers say, and the protocol does not choose. */
    int r = nbd_zero(h, 4096, size, 0), e = nbd_get_errno();
    CHECKF(r == -1 && (e == ENOSPC || e == EINVAL),
           "WRITE_ZEROES past the end: got %d with %s", r, e ? strerrorname_np(e) : "0");

    /* offset + length wraps around 2^64: checked arithmetic, not a huge
     * in-range request. */
    uint64_t wrap = UINT64_MAX - 2047;
    CHECK_NBD_ERR(nbd_pread(h, buf, 4096, wrap, 0), EINVAL);
    CHECK_NBD_ERR(nbd_pwrite(h, buf, 4096, wrap, 0), ENOSPC);
    CHECK_NBD_ERR(nbd_trim(h, 4096, wrap, 0), EINVAL);

    /* The last byte is in range, and nothing past the end was written by
     * the refused requests that crossed it. */
    CHECK_NBD_OK(nbd_pread(h, buf, 4096, size - 4096, 0));
    CHECKF(nbdt_not_byte(buf, 4096, 0) < 0,
           "a refused write crossing the end changed the last page");
    CHECK_NBD_OK(nbd_pwrite(h, buf, 1, size - 1, 0));
    CHECK_NBD_OK(nbd_pread(h, buf, 1, size - 1, 0));
    free(buf);
    still_serves(h, 0, 1);
}

static int count_extent(void *user, const char *ctx, uint64_t off, uint32_t *ents,
                        size_t n, int *error)
{
    (void)ctx; (void)off; (void)ents; (void)error;
    *(size_t *)user += n;
    return 0;
}

static void block_status_past_the_end(struct nbd_handle *h, uint64_t size)
{
    size_t n = 0;
    nbd_extent_callback cb = { .callback = count_extent, .user_data = &n };

    CHECK(nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1);
    CHECK_NBD_ERR(nbd_block_status(h, 4096, size, cb, 0), EINVAL);
    n = 0;
    CHECK_NBD_OK(nbd_block_status(h, 4096, size - 4096, cb, 0));
    CHECK(n >= 1);
    still_serves(h, 4096, 2);
}

/* Zero-length requests: the protocol leaves the answer open (success or
 * EINVAL), but the connection must go on and nothing may change. */
static void zero_length(struct nbd_handle *h)
{
    unsigned char buf[4096];

    nbdt_fill(buf, sizeof(buf), 8 * MiB, 3);
    CHECK_NBD_OK(nbd_pwrite(h, buf, sizeof(buf), 8 * MiB, 0));

    struct { const char *what; int r; } res[4];
    res[0].what = "READ";
    res[0].r = nbd_pread(h, buf, 0, 8 * MiB, 0);
    res[1].what = "WRITE";
    res[1].r = nbd_pwrite(h, buf, 0, 8 * MiB, 0);
    res[2].what = "TRIM";
    res[2].r = nbd_trim(h, 0, 8 * MiB, 0);
    res[3].what = "WRITE_ZEROES";
    res[3].r = nbd_zero(h, 0, 8 * MiB, 0);
    for (int i = 0; i < 4; i++)
        printf("zero-length %s: %s\n", res[i].what, res[i].r == 0 ? "ok" : "refused");
    memset(buf, 0, sizeof(buf));
    CHECK_NBD_OK(nbd_pread(h, buf, sizeof(buf), 8 * MiB, 0));
    CHECKF(nbdt_mismatch(buf, sizeof(buf), 8 * MiB, 3) < 0,
           "zero-length requests at 8 MiB changed the data there");
    still_serves(h, 8 * MiB + 4096, 4);
}

/* Minimum block size 1: any offset and length, checked against a model. */
static void unaligned(struct nbd_handle *h)
{
    const uint64_t base = 16 * MiB, span = 64 * 1024;
    unsigned char *model = xmalloc(span), *buf = xmalloc(span);
    struct test_rng rng;

    CHECK_EQ(nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM), 1);
    CHECK_EQ(nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED), 4096);
    CHECK_EQ(nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM), 32 * MiB);

    rng_seed(&rng, 42);
    memset(model, 0, span);
    CHECK_NBD_OK(nbd_zero(h, span, base, 0));
    for (int i = 0; i < 200; i++) {
        uint64_t off = rng_below(&rng, span);
        uint64_t len = rng_range(&rng, 1, span - off < 9000 ? span - off : 9000);
        switch (rng_below(&rng, 4)) {
        case 0:
        case 1:
            rng_fill(&rng, model + off, len);
            CHECK_NBD_OK(nbd_pwrite(h, model + off, len, base + off, 0));
            break;
        case 2:
            memset(model + off, 0, len);
            CHECK_NBD_OK(nbd_zero(h, len, base + off, 0));
            break;
        case 3:
            CHECK_NBD_OK(nbd_pread(h, buf, len, base + off, 0));
            CHECKF(memcmp(buf, model + off, len) == 0,
                   "step %d: unaligned read of %" PRIu64 " at +%" PRIu64 " differs", i, len, off);
            break;
        }
    }
    CHECK_NBD_OK(nbd_pread(h, buf, span, base, 0));
    CHECKF(memcmp(buf, model, span) == 0, "the unaligned region differs from the model");
    free(model);
    free(buf);
}

/* Unknown command flags (libnbd sends what it is given with strict mode off). */
static void unknown_flags(struct nbd_handle *h)
{
    unsigned char buf[4096];
    const uint32_t unknown = 1u << 12;

    CHECK_NBD_ERR(nbd_pread(h, buf, sizeof(buf), 0, unknown), EINVAL);
    memset(buf, 1, sizeof(buf));
    CHECK_NBD_ERR(nbd_pwrite(h, buf, sizeof(buf), 0, unknown), EINVAL);
    CHECK_NBD_ERR(nbd_flush(h, unknown), EINVAL);
    still_serves(h, 0, 5);
}

/* Reads over the maximum block size: refused (EINVAL or EOVERFLOW), and
 * the connection goes on. */
static void oversized_read(struct nbd_handle *h)
{
    size_t len = 33 * MiB;
    unsigned char *buf = xmalloc(len);

    int r = nbd_pread(h, buf, len, 0, 0), e = nbd_get_errno();
    CHECKF(r == -1 && (e == EINVAL || e == EOVERFLOW || e == ENOMEM),
           "a 33 MiB read (maximum block size 32 MiB): got %d with %s", r,
           e ? strerrorname_np(e) : "0");
    /* 32 MiB exactly is allowed. */
    CHECK_NBD_OK(nbd_pread(h, buf, 32 * MiB, 0, 0));
    free(buf);
    still_serves(h, 0, 6);
}

struct chunks {
    uint64_t data, hole, other;
    uint64_t covered;
};

static int on_chunk(void *user, const void *sub, size_t count, uint64_t off,
                    unsigned status, int *error)
{
    struct chunks *c = user;
    (void)sub; (void)off; (void)error;
    if (status == LIBNBD_READ_DATA)
        c->data++;
    else if (status == LIBNBD_READ_HOLE)
        c->hole++;
    else
        c->other++;
    c->covered += count;
    return 0;
}

/* Structured reads: a never-written range comes as OFFSET_HOLE chunks, and
 * with DF as exactly one data chunk. */
static void hole_chunks(struct nbd_handle *h)
{
    const uint64_t base = 32 * MiB;
    size_t len = MiB;
    unsigned char *buf = xmalloc(len);
    struct chunks c = { 0 };
    nbd_chunk_callback cb = { .callback = on_chunk, .user_data = &c };

    CHECK_EQ(nbd_get_structured_replies_negotiated(h), 1);
    CHECK(nbd_can_df(h) == 1);
    CHECK_NBD_OK(nbd_trim(h, len, base, 0));
    memset(buf, 0xee, len);
    CHECK_NBD_OK(nbd_pread_structured(h, buf, len, base, cb, 0));
    CHECKF(c.hole >= 1 && c.other == 0 && c.covered == len,
           "reading 1 MiB of holes: %" PRIu64 " data chunks, %" PRIu64 " hole chunks, "
           "%" PRIu64 " bytes covered", c.data, c.hole, c.covered);
    CHECK(nbdt_not_byte(buf, len, 0) < 0);

    /* Half data, half hole. */
    unsigned char page[4096];
    nbdt_fill(page, sizeof(page), base + 8192, 7);
    CHECK_NBD_OK(nbd_pwrite(h, page, sizeof(page), base + 8192, 0));
    c = (struct chunks){ 0 };
    memset(buf, 0xee, len);
    CHECK_NBD_OK(nbd_pread_structured(h, buf, 65536, base, cb, 0));
    CHECKF(c.data >= 1 && c.hole >= 1 && c.covered == 65536,
           "64 KiB with one data page: %" PRIu64 " data, %" PRIu64 " hole chunks",
           c.data, c.hole);
    CHECK(nbdt_not_byte(buf, 8192, 0) < 0);
    CHECK(nbdt_mismatch(buf + 8192, 4096, base + 8192, 7) < 0);
    CHECK(nbdt_not_byte(buf + 12288, 65536 - 12288, 0) < 0);

    /* DF: one content chunk, a data chunk, as the area mixes data and hole. */
    c = (struct chunks){ 0 };
    memset(buf, 0xee, len);
    CHECK_NBD_OK(nbd_pread_structured(h, buf, 65536, base, cb, LIBNBD_CMD_FLAG_DF));
    CHECKF(c.data == 1 && c.hole == 0 && c.covered == 65536,
           "DF read: %" PRIu64 " data, %" PRIu64 " hole chunks", c.data, c.hole);
    CHECK(nbdt_not_byte(buf, 8192, 0) < 0);
    CHECK(nbdt_mismatch(buf + 8192, 4096, base + 8192, 7) < 0);
    free(buf);
}

/* Many requests in flight on one connection; the replies may come in any
 * order, and each must carry its own data. */
static void in_flight(struct nbd_handle *h)
{
    enum { N = 64, LEN = 16384 };
    const uint64_t base = 40 * MiB;
    unsigned char *bufs = xmalloc((size_t)N * LEN);
    int64_t cookies[N];

    for (int i = 0; i < N; i++) {
        nbdt_fill(bufs + (size_t)i * LEN, LEN, base + (uint64_t)i * LEN, 8);
        cookies[i] = nbd_aio_pwrite(h, bufs + (size_t)i * LEN, LEN, base + (uint64_t)i * LEN,
                                    NBD_NULL_COMPLETION, 0);
        CHECKF(cookies[i] > 0, "nbd_aio_pwrite: %s", nbd_get_error());
    }
    while (nbd_aio_in_flight(h) > 0)
        CHECKF(nbd_poll(h, -1) >= 0, "nbd_poll: %s", nbd_get_error());
    for (int i = 0; i < N; i++)
        CHECKF(nbd_aio_command_completed(h, (uint64_t)cookies[i]) == 1,
               "write %d: %s", i, nbd_get_error());
    memset(bufs, 0, (size_t)N * LEN);
    for (int i = N - 1; i >= 0; i--) {
        cookies[i] = nbd_aio_pread(h, bufs + (size_t)i * LEN, LEN, base + (uint64_t)i * LEN,
                                   NBD_NULL_COMPLETION, 0);
        CHECKF(cookies[i] > 0, "nbd_aio_pread: %s", nbd_get_error());
    }
    while (nbd_aio_in_flight(h) > 0)
        CHECKF(nbd_poll(h, -1) >= 0, "nbd_poll: %s", nbd_get_error());
    for (int i = 0; i < N; i++) {
        CHECKF(nbd_aio_command_completed(h, (uint64_t)cookies[i]) == 1,
               "read %d: %s", i, nbd_get_error());
        CHECKF(nbdt_mismatch(bufs + (size_t)i * LEN, LEN, base + (uint64_t)i * LEN, 8) < 0,
               "in-flight read %d got another request's data", i);
    }
    free(bufs);
}

static void run_edges(void)
{
    struct nbd_handle *h = nbdt_connect(uri);
    int64_t size = nbd_get_size(h);

    CHECKF(size >= 64 * (int64_t)MiB, "the export must be at least 64 MiB, not %" PRId64, size);
    RUN_TEST_H(past_the_end, h, (uint64_t)size);
    RUN_TEST_H(block_status_past_the_end, h, (uint64_t)size);
    RUN_TEST_H(zero_length, h);
    RUN_TEST_H(unaligned, h);
    RUN_TEST_H(unknown_flags, h);
    RUN_TEST_H(oversized_read, h);
    RUN_TEST_H(hole_chunks, h);
    RUN_TEST_H(in_flight, h);
    CHECK_NBD_OK(nbd_shutdown(h, 0));
    nbd_close(h);
}

/* ---- read-only ----------------------------------------------------------- */

static void run_readonly(void)
{
    struct nbd_handle *h = nbdt_connect(uri);
    unsigned char buf[4096];

    CHECK_EQ(nbd_is_read_only(h), 1);
    CHECK_EQ(nbd_can_trim(h), 0);
    CHECK_EQ(nbd_can_zero(h), 0);
    memset(buf, 0x11, sizeof(buf));
    CHECK_NBD_ERR(nbd_pwrite(h, buf, sizeof(buf), 0, 0), EPERM);
    CHECK_NBD_ERR(nbd_trim(h, 4096, 0, 0), EPERM);
    CHECK_NBD_ERR(nbd_zero(h, 4096, 0, 0), EPERM);
    CHECK_NBD_OK(nbd_pread(h, buf, sizeof(buf), 0, 0));
    CHECK(nbdt_not_byte(buf, sizeof(buf), 0) < 0);
    CHECK_NBD_OK(nbd_flush(h, 0));
    CHECK_NBD_OK(nbd_shutdown(h, 0));
    nbd_close(h);
}

/* ---- memory limit ---------------------------------------------------------- */

/* Random data does not compress: each page costs a page, and a 16 MiB limit
 * is reached well before 64 MiB. */
static void run_memlimit(void)
{
    struct nbd_handle *h = nbdt_connect(uri);
    const size_t chunk = MiB;
    unsigned char *buf = xmalloc(chunk);
    uint64_t off, stored;
    int e = 0;

    /* Room for 68 MiB, and the writes at 100 and 200 MiB below, so that
     * only the limit can stop the writes. */
    CHECKF(nbd_get_size(h) >= 256 * (int64_t)MiB, "memlimit needs a device of 256 MiB or more");

    /* The first 4 MiB fits. */
    for (off = 0; off < 4 * MiB; off += chunk) {
        nbdt_fill(buf, chunk, off, 11);
        CHECK_NBD_OK(nbd_pwrite(h, buf, chunk, off, 0));
    }
    for (; off < 68 * MiB; off += chunk) {
        nbdt_fill(buf, chunk, off, 11);
        if (nbd_pwrite(h, buf, chunk, off, 0) == -1) {
            e = nbd_get_errno();
            break;
        }
    }
    stored = off;
    printf("memlimit: %" PRIu64 " MiB stored before the write at %" PRIu64 " MiB failed\n",
           stored / MiB, off / MiB);
    CHECKF(off < 68 * MiB, "64 MiB of random data went into a 16 MiB limit");
    CHECKF(e == ENOSPC, "the write over the limit failed with %s, not ENOSPC",
           e ? strerrorname_np(e) : "0");
    CHECKF(stored <= 16 * MiB, "%" PRIu64 " MiB of random data stored under a 16 MiB limit",
           stored / MiB);

    /* Later writes keep failing the same way, and the connection serves. */
    nbdt_fill(buf, chunk, off, 11);
    CHECK_NBD_ERR(nbd_pwrite(h, buf, chunk, off, 0), ENOSPC);

    /* What was stored before is intact. */
    for (uint64_t o = 0; o < stored; o += chunk) {
        CHECK_NBD_OK(nbd_pread(h, buf, chunk, o, 0));
        CHECKF(nbdt_mismatch(buf, chunk, o, 11) < 0, "the MiB at %" PRIu64 " changed", o / MiB);
    }
    /* Zeros take no memory: they still go in, and trimming frees room. */
    memset(buf, 0, chunk);
    CHECK_NBD_OK(nbd_pwrite(h, buf, chunk, 100 * MiB, 0));
    CHECK_NBD_OK(nbd_zero(h, chunk, 101 * MiB, 0));
    CHECK_NBD_OK(nbd_trim(h, 4 * MiB, 0, 0));
    nbdt_fill(buf, chunk, 200 * MiB, 12);
    CHECK_NBD_OK(nbd_pwrite(h, buf, chunk, 200 * MiB, 0));
    memset(buf, 0, chunk);
    CHECK_NBD_OK(nbd_pread(h, buf, chunk, 200 * MiB, 0));
    CHECK(nbdt_mismatch(buf, chunk, 200 * MiB, 12) < 0);
    CHECK_NBD_OK(nbd_shutdown(h, 0));
    nbd_close(h);
    free(buf);
}

/* ---- connections ----------------------------------------------------------- */

/* Drive an aio connection until it is ready or dead (or the deadline, a
 * guard against a server that leaves it hanging: a failure). */
static int settle(struct nbd_handle *h)
{
    for (int ms = 0; ms < 60000; ms += 100) {
        if (nbd_aio_is_ready(h))
            return 1;
        if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h))
            return 0;
        int r = nbd_poll(h, 100);
        if (r < 0)
            return 0;
    }
    return -1;
}

static void run_conns(int max, int extra)
{
    int n = max + extra;
    struct nbd_handle **hs = calloc((size_t)n, sizeof(*hs));
    int served = 0, refused = 0;
    CHECK(hs);

    for (int i = 0; i < max; i++) {
        hs[i] = nbdt_connect(uri);
        still_serves(hs[i], (uint64_t)i * MiB, 100 + (uint64_t)i);
    }
    /* The extra ones: the connection is accepted by the kernel; the server
     * must then refuse it (close, or refuse the handshake). */
    for (int i = max; i < n; i++) {
        hs[i] = nbd_create();
        CHECK(hs[i]);
        CHECK_NBD_OK(nbd_set_strict_mode(hs[i], 0));
        int r = nbd_aio_connect_uri(hs[i], uri);
        int s = r < 0 ? 0 : settle(hs[i]);
        CHECKF(s >= 0, "connection %d: neither served nor refused after 60 s", i + 1);
        if (s == 1) {
            /* Served after all?  Only if it really works; then it counts. */
            unsigned char b[512];
            if (nbd_pread(hs[i], b, sizeof(b), 0, 0) == 0)
                served++;
            else
                refused++;
        } else {
            refused++;
        }
    }
    printf("conns: %d over the limit of %d: %d refused, %d served\n", extra, max, refused,
           served);
    CHECKF(served == 0, "%d connections over --max-connections %d were served", served, max);

    /* The first ones were not disturbed. */
    for (int i = 0; i < max; i++) {
        unsigned char buf[4096];
        CHECK_NBD_OK(nbd_pread(hs[i], buf, sizeof(buf), (uint64_t)i * MiB, 0));
        CHECKF(nbdt_mismatch(buf, sizeof(buf), (uint64_t)i * MiB, 100 + (uint64_t)i) < 0,
               "connection %d lost its data", i + 1);
        still_serves(hs[i], (uint64_t)i * MiB + 4096, 200 + (uint64_t)i);
    }
    for (int i = max; i < n; i++) {
        nbd_close(hs[i]);
        hs[i] = NULL;
    }

    /* Close some; as many new ones are served.  The server learns of a
     * close asynchronously, so a new connection may be refused for a
     * moment: retry each for up to 30 s. */
    int closed = extra < max ? extra : max;
    for (int i = 0; i < closed; i++) {
        CHECK_NBD_OK(nbd_shutdown(hs[i], 0));
        nbd_close(hs[i]);
        hs[i] = NULL;
    }
    for (int i = 0; i < closed; i++) {
        int tries;
        for (tries = 0; tries < 300; tries++) {
            struct nbd_handle *h = nbd_create();
            CHECK(h);
            CHECK_NBD_OK(nbd_set_strict_mode(h, 0));
            unsigned char b[512];
            if (nbd_connect_uri(h, uri) == 0 && nbd_pread(h, b, sizeof(b), 0, 0) == 0) {
                hs[i] = h;
                break;
            }
            nbd_close(h);
            poll(NULL, 0, 100);
        }
        CHECKF(hs[i], "after closing %d connections, new connection %d was not served",
               closed, i + 1);
        still_serves(hs[i], (uint64_t)i * MiB + 8192, 300 + (uint64_t)i);
    }
    for (int i = 0; i < max; i++) {
        CHECK_NBD_OK(nbd_shutdown(hs[i], 0));
        nbd_close(hs[i]);
    }
    free(hs);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: nbd-bad edges|readonly|memlimit URI | conns URI MAX EXTRA\n");
        return 2;
    }
    uri = argv[2];
    test_watchdog(600);
    if (!strcmp(argv[1], "edges") && argc <= 4) {
        only = argc == 4 ? argv[3] : NULL;
        run_edges();
    }
    else if (!strcmp(argv[1], "readonly"))
        run_readonly();
    else if (!strcmp(argv[1], "memlimit"))
        run_memlimit();
    else if (!strcmp(argv[1], "conns") && argc == 5)
        run_conns(atoi(argv[3]), atoi(argv[4]));
    else {
        fprintf(stderr, "nbd-bad: unknown test '%s'\n", argv[1]);
        return 2;
    }
    printf("nbd-bad %s: ok\n", argv[1]);
    return 0;
}
