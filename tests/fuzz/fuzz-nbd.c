/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the NBD server's handshake and request parser, fed an
 * arbitrary byte stream as one client's, through nbd_export_serve_io()
 * against a small real store.  No sockets and no threads: the stream is
 * served by the calling thread, large requests included (no worker pool),
 * so a run is deterministic and a crash replays from its input alone.
 *
 * Each input gets a new store and export, so that it replays alone.
 *
 * The input's first byte is not stream but setup: bit 0 picks the
 * read-only export, bits 1-5 how many bytes each recv() hands out (0: as
 * many as asked), so that requests split across reads at every boundary
 * are tried too, and bits 6-7 the TLS mode (off, on, require, require).
 * The rest is what the client sends.
 *
 * TLS is pretended: NBD_OPT_STARTTLS's handshake takes one byte of the
 * stream, 0 for a refused client and anything else for a session, after
 * which the stream goes on as the session's plaintext.  So the option's
 * rules (TLS required, input after it, a second STARTTLS, state forgotten)
 * are fuzzed, and GnuTLS, which has fuzzers of its own, is not.
 *
 * Replies are copied to a sink, byte by byte of every iovec, so that a
 * reply pointing at freed or stale memory shows under AddressSanitizer.
 *
 * Built twice (meson.build): as a libFuzzer target with clang, and always
 * as fuzz-nbd-replay, which runs this entry point over the regression
 * inputs in corpus/nbd/ as a unit test.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "nbd-export.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small enough to write all over, big enough for requests to span pages. */
#define FUZZ_STORE_SIZE (1u << 20)

struct feed {
    const uint8_t *p;
    size_t len;
    size_t chunk;               /* most bytes per recv(); 0: no limit */
};

static ssize_t feed_recv(void *ctx, void *buf, size_t len)
{
    struct feed *f = ctx;

    if (f->chunk && len > f->chunk)
        len = f->chunk;
    if (len > f->len)
        len = f->len;
    memcpy(buf, f->p, len);
    f->p += len;
    f->len -= len;
    return (ssize_t)len;
}

static ssize_t feed_sendv(void *ctx, const struct iovec *iov, int iovcnt)
{
    static uint8_t sink[4096];
    size_t total = 0;

    (void)ctx;
    for (int i = 0; i < iovcnt; i++) {
        const uint8_t *p = iov[i].iov_base;
        for (size_t left = iov[i].iov_len; left > 0;) {
            size_t n = left < sizeof(sink) ? left : sizeof(sink);
            memcpy(sink, p, n);
            p += n;
            left -= n;
        }
        total += iov[i].iov_len;
    }
    return (ssize_t)total;
}

static int feed_starttls(void *ctx)
{
    uint8_t ok = 0;

    if (feed_recv(ctx, &ok, 1) != 1)
        return -ECONNRESET;
    return ok ? 0 : -EACCES;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const enum nbd_tls_mode modes[4] = { NBD_TLS_OFF, NBD_TLS_ON, NBD_TLS_REQUIRE,
                                                NBD_TLS_REQUIRE };
    struct feed f = { .p = data + 1, .len = size - 1, .chunk = (data[0] >> 1) & 31 };
    const struct nbd_io io = {
        .recv = feed_recv,
        .sendv = feed_sendv,
        .starttls = feed_starttls,
        .tls = modes[data[0] >> 6],
        .ctx = &f,
    };

    /*
     * A fresh store and export per input: runs do not depend on each
     * other, and the leak checker sees everything given back.
     */
    const struct store_config cfg = { .size = FUZZ_STORE_SIZE };
    struct store *s = store_new(&cfg);
    if (!s)
        abort();
    const struct nbd_export_options o = { .description = "fuzz", .read_only = data[0] & 1 };
    struct nbd_export *ne = nbd_export_new(s, &o);
    if (!ne)
        abort();
    (void)nbd_export_serve_io(ne, &io);
    nbd_export_free(ne);
    store_free(s);
    return 0;
}
