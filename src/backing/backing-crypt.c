/* SPDX-License-Identifier: MIT */
/*
 * Sealing blocks (doc/backing.md, "Sealed blocks"): every block the store
 * writes back is encrypted and authenticated with AES-256-GCM under a key
 * drawn when the backing store is opened and never written anywhere, so
 * that whoever can read the backing file, the device or the NBD export
 * learns nothing of the pages (swap: other programs' memory, their keys),
 * and whoever can write it cannot make uzramd return a page it did not
 * write there.
 *
 * What a block's seal binds.  The nonce is a 64-bit counter taken afresh
 * for every write from one counter of the backing store, so no nonce ever
 * repeats under the key (2^64 writes are out of reach).  The associated
 * data is the block's number and the length written.  The seal table
 * keeps, per block, the counter of its last write and the 16-byte tag; a
 * read checks the block against both.  So a block copied to another place
 * fails (other number), and so does an older content of the same block
 * (older counter), as does anything else not sealed by this process:
 * the key dies with it.
 *
 * The cipher is GnuTLS's (gnutls_aead_cipher_*), which uses AES-NI and
 * PCLMUL where the CPU has them: about twice as fast as Nettle 3.8's GCM
 * on the test machine (doc/backing.md has the figures).  Its errors are
 * turned into -errno here: a tag that does not match is -EBADMSG.
 *
 * Handles.  A GnuTLS cipher handle keeps the message under way in itself,
 * so two threads must never use one at once.  The backing store is called
 * by whichever threads serve the store (NBD workers, FUSE threads, the
 * eviction thread), as many as the daemon likes; a handle per thread would
 * be made on a thread's first transfer, an allocation on the I/O path.  So
 * a pool of handles is made at open: four per CPU, eight at least.  A
 * caller claims one with an atomic exchange, starting with the one it had
 * last, and gives it back when its block is sealed or opened: it holds it
 * for a few microseconds, never across I/O.  No lock and no allocation; a
 * caller that finds every handle taken (more callers in the middle of a
 * seal than four per CPU: many of them preempted there) yields and looks
 * again.
 *
 * The key.  It is drawn into a page of its own, locked and left out of
 * core dumps, and each handle is keyed from there; then the page is wiped
 * and unmapped, at the end of the open.  From then on the key exists only
 * as the expanded schedule and GHASH table inside GnuTLS's handles, in
 * memory GnuTLS allocated: locked by the daemon's mlockall() with the rest
 * of the heap, but not something this file can mark MADV_DONTDUMP.
 * gnutls_aead_cipher_deinit() zeroes a handle's cipher state before it
 * frees it, so closing wipes the key.
 *
 * Memory: 24 bytes per 4 KiB block (0.59%, 6 MiB per GiB of backing) for
 * the seal table, an anonymous mapping populated at open, so that no write
 * or read later faults it in while memory is short; and the handles, about
 * a kilobyte each.
 *
 * Threads: the ciphertext of a write is built in a per-thread block
 * (static TLS: allocated with the thread, never on the I/O path), with the
 * tag after it, as GnuTLS writes them; a read is opened in place in the
 * caller's buffer, the tag given apart.  A block's seal entry is written
 * only by the write to the block and read only by a read of it, and its
 * owner (the store, under a slot lock) never runs the two at once, so the
 * entry needs no lock; the counter is atomic.
 */
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "backing-internal.h"
#include "populate.h"

#define KEY_BYTES 32
#define TAG_BYTES 16
#define NONCE_BYTES 12

/* What a read checks a block against: its last write's counter and tag. */
struct seal {
    uint64_t counter; /* 0: never sealed, nothing opens */
    uint8_t tag[TAG_BYTES];
};

/* One of the pool's handles; a cache line each, so claims do not share one. */
struct crypt_handle {
    gnutls_aead_cipher_hd_t h;
    _Atomic bool busy;
} __attribute__((aligned(64)));

struct backing_crypt {
    struct seal *seals; /* one per block */
    size_t seals_bytes;
    _Atomic uint64_t counter; /* the last counter taken */
    unsigned nhandles;
    struct crypt_handle handles[];
};

/* The calling thread's ciphertext block and its tag: static TLS, made with the thread. */
static __thread uint8_t tls_sealed[BACKING_BLOCK_SIZE + TAG_BYTES]
    __attribute__((aligned(64)));
/* The handle the calling thread claimed last: where it looks first. */
static __thread unsigned tls_hint;

static size_t page_round(size_t n)
{
    size_t pg = 4096;
    return (n + pg - 1) / pg * pg;
}

static void *map_anon(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* GnuTLS's error as a negative errno. */
static int gnutls_errno(int r)
{
    switch (r) {
    case GNUTLS_E_DECRYPTION_FAILED:
        return -EBADMSG;
    case GNUTLS_E_MEMORY_ERROR:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

/* Four handles per CPU, eight at least: see "Handles" above. */
static unsigned handle_count(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_CONF);
    if (cpus < 2)
        return 8;
    if (cpus > 1024)
        cpus = 1024;
    return (unsigned)cpus * 4;
}

size_t backing_crypt_bytes(uint64_t blocks)
{
    return page_round((size_t)blocks * sizeof(struct seal));
}

/*
 * Draw a key and make every handle with it, the key in a locked page left
 * out of core dumps and wiped before it is unmapped.  0 or a negative errno.
 */
static int handles_init(struct backing_crypt *c)
{
    size_t kbytes = page_round(KEY_BYTES);
    uint8_t *key = map_anon(kbytes);
    if (!key)
        return -ENOMEM;
    /* Best effort on top of the daemon's mlockall(): never in swap, never in a core. */
    (void)mlock(key, kbytes);
    (void)madvise(key, kbytes, MADV_DONTDUMP);

    int r = 0;
    /* Blocks until the kernel's pool is seeded, once per boot. */
    if (getrandom(key, KEY_BYTES, 0) != KEY_BYTES) {
        r = errno ? -errno : -EIO;
        goto out;
    }
    const gnutls_datum_t k = { .data = key, .size = KEY_BYTES };
    for (unsigned i = 0; i < c->nhandles; i++) {
        int g = gnutls_aead_cipher_init(&c->handles[i].h, GNUTLS_CIPHER_AES_256_GCM, &k);
        if (g < 0) {
            c->handles[i].h = NULL;
            r = gnutls_errno(g);
            goto out;
        }
    }
out:
    explicit_bzero(key, KEY_BYTES);
    munmap(key, kbytes);
    return r;
}

struct backing_crypt *backing_crypt_new(uint64_t blocks)
{
    if (blocks > SIZE_MAX / sizeof(struct seal)) {
        errno = ENOMEM;
        return NULL;
    }
    unsigned n = handle_count();
    struct backing_crypt *c;
    if (posix_memalign((void **)&c, 64, sizeof(*c) + n * sizeof(struct crypt_handle)) != 0) {
        errno = ENOMEM;
        return NULL;
    }
    memset(c, 0, sizeof(*c) + n * sizeof(struct crypt_handle));
    c->nhandles = n;
    c->seals_bytes = page_round((size_t)blocks * sizeof(struct seal));
    int r = -ENOMEM;
    c->seals = map_anon(c->seals_bytes);
    if (!c->seals || mem_populate(c->seals, c->seals_bytes) < 0)
        goto fail;
    r = handles_init(c);
    if (r < 0)
        goto fail;
    return c;

fail:
    backing_crypt_free(c);
    errno = -r;
    return NULL;
}

void backing_crypt_free(struct backing_crypt *c)
{
    if (!c)
        return;
    /* GnuTLS zeroes each handle's key schedule and GHASH table as it frees them. */
    for (unsigned i = 0; i < c->nhandles; i++)
        if (c->handles[i].h)
            gnutls_aead_cipher_deinit(c->handles[i].h);
    if (c->seals)
        munmap(c->seals, c->seals_bytes);
    free(c);
}

/* A handle for the calling thread alone until handle_put(); waits only if all are taken. */
static struct crypt_handle *handle_get(struct backing_crypt *c)
{
    for (;;) {
        for (unsigned k = 0; k < c->nhandles; k++) {
            unsigned i = (tls_hint + k) % c->nhandles;
            struct crypt_handle *ch = &c->handles[i];
            if (!atomic_load_explicit(&ch->busy, memory_order_relaxed) &&
                !atomic_exchange_explicit(&ch->busy, true, memory_order_acquire)) {
                tls_hint = i;
                return ch;
            }
        }
        sched_yield();
    }
}

static void handle_put(struct crypt_handle *ch)
{
    atomic_store_explicit(&ch->busy, false, memory_order_release);
}

/* A message's nonce (from its counter) and associated data (blk and len). */
static void crypt_params(uint64_t counter, uint64_t blk, size_t len,
                         uint8_t nonce[NONCE_BYTES], uint8_t ad[12])
{
    memset(nonce, 0, NONCE_BYTES);
    memcpy(nonce, &counter, sizeof(counter));
    memcpy(ad, &blk, sizeof(blk));
    uint32_t len32 = (uint32_t)len;
    memcpy(ad + 8, &len32, sizeof(len32));
}

int backing_crypt_seal(struct backing_crypt *c, uint64_t blk, const void *src, size_t len,
                       struct backing_seal_pending *ret)
{
    uint64_t counter = atomic_fetch_add_explicit(&c->counter, 1, memory_order_relaxed) + 1;
    uint8_t nonce[NONCE_BYTES], ad[12];
    crypt_params(counter, blk, len, nonce, ad);
    size_t out = sizeof(tls_sealed);
    struct crypt_handle *ch = handle_get(c);
    int g = gnutls_aead_cipher_encrypt(ch->h, nonce, sizeof(nonce), ad, sizeof(ad), TAG_BYTES,
                                       src, len, tls_sealed, &out);
    handle_put(ch);
    if (g < 0)
        return gnutls_errno(g);
    if (out != len + TAG_BYTES)
        return -EIO;
    memcpy(ret->tag, tls_sealed + len, TAG_BYTES);
    ret->counter = counter;
    ret->sealed = tls_sealed;
    return 0;
}

void backing_crypt_commit(struct backing_crypt *c, uint64_t blk,
                          const struct backing_seal_pending *p)
{
    struct seal *s = &c->seals[blk];
    memcpy(s->tag, p->tag, sizeof(s->tag));
    s->counter = p->counter;
}

void backing_crypt_forget(struct backing_crypt *c, uint64_t blk)
{
    c->seals[blk].counter = 0;
}

int backing_crypt_open(struct backing_crypt *c, uint64_t blk, void *buf, size_t len)
{
    const struct seal *s = &c->seals[blk];
    if (s->counter == 0) {
        memset(buf, 0, len);
        return -EBADMSG;
    }
    uint8_t nonce[NONCE_BYTES], ad[12];
    crypt_params(s->counter, blk, len, nonce, ad);
    const giovec_t ad_iov = { .iov_base = ad, .iov_len = sizeof(ad) };
    const giovec_t data_iov = { .iov_base = buf, .iov_len = len };
    struct crypt_handle *ch = handle_get(c);
    /* In place; GnuTLS compares the tag in constant time. */
    int g = gnutls_aead_cipher_decryptv2(ch->h, nonce, sizeof(nonce), &ad_iov, 1, &data_iov,
                                         1, (void *)s->tag, TAG_BYTES);
    handle_put(ch);
    if (g < 0) {
        /* What failed to open is nobody's data: do not hand it on. */
        memset(buf, 0, len);
        return gnutls_errno(g);
    }
    return 0;
}
