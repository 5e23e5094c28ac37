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
 * Memory: 24 bytes per 4 KiB block (0.59%, 6 MiB per GiB of backing),
 * an anonymous mapping populated at open, so that no write or read later
 * faults it in while memory is short.  The key, its expanded schedule and
 * the GHASH table sit in a mapping of their own, locked, left out of core
 * dumps and wiped at close.
 *
 * Threads: sealing needs no lock.  The ciphertext of a write is built in
 * a per-thread block (static TLS: allocated with the thread, never on the
 * I/O path); a read is opened in place in the caller's buffer.  A block's
 * seal entry is written only by the write to the block and read only by a
 * read of it, and its owner (the store, under a slot lock) never runs the
 * two at once, so the entry needs no lock either; the counter is atomic.
 */
#include <errno.h>
#include <nettle/aes.h>
#include <nettle/gcm.h>
#include <nettle/memops.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "backing-internal.h"
#include "populate.h"

/* What a read checks a block against: its last write's counter and tag. */
struct seal {
    uint64_t counter; /* 0: never sealed, nothing opens */
    uint8_t tag[GCM_DIGEST_SIZE];
};

struct crypt_key {
    struct aes256_ctx aes;
    struct gcm_key gcm;
};

struct backing_crypt {
    struct crypt_key *key; /* a locked mapping of its own */
    struct seal *seals;    /* one per block */
    size_t seals_bytes;
    _Atomic uint64_t counter; /* the last counter taken */
};

/* The calling thread's ciphertext block: static TLS, made with the thread. */
static __thread uint8_t tls_sealed[BACKING_BLOCK_SIZE] __attribute__((aligned(64)));

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

size_t backing_crypt_bytes(uint64_t blocks)
{
    return page_round(sizeof(struct crypt_key)) +
           page_round((size_t)blocks * sizeof(struct seal));
}

struct backing_crypt *backing_crypt_new(uint64_t blocks)
{
    if (blocks > SIZE_MAX / sizeof(struct seal)) {
        errno = ENOMEM;
        return NULL;
    }
    struct backing_crypt *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->seals_bytes = page_round((size_t)blocks * sizeof(struct seal));
    c->key = map_anon(page_round(sizeof(struct crypt_key)));
    c->seals = map_anon(c->seals_bytes);
    if (!c->key || !c->seals)
        goto fail;
    /* Best effort on top of the daemon's mlockall(): never in swap, never in a core. */
    (void)mlock(c->key, page_round(sizeof(struct crypt_key)));
    (void)madvise(c->key, page_round(sizeof(struct crypt_key)), MADV_DONTDUMP);
    if (mem_populate(c->seals, c->seals_bytes) < 0)
        goto fail;

    uint8_t raw[AES256_KEY_SIZE];
    /* Blocks until the kernel's pool is seeded, once per boot. */
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        int e = errno;
        backing_crypt_free(c);
        errno = e ? e : EIO;
        return NULL;
    }
    aes256_set_encrypt_key(&c->key->aes, raw);
    explicit_bzero(raw, sizeof(raw));
    gcm_set_key(&c->key->gcm, &c->key->aes, (nettle_cipher_func *)aes256_encrypt);
    return c;

fail:
    backing_crypt_free(c);
    errno = ENOMEM;
    return NULL;
}

void backing_crypt_free(struct backing_crypt *c)
{
    if (!c)
        return;
    if (c->key) {
        explicit_bzero(c->key, sizeof(*c->key));
        munmap(c->key, page_round(sizeof(struct crypt_key)));
    }
    if (c->seals)
        munmap(c->seals, c->seals_bytes);
    free(c);
}

/* Start the GCM state of a message: nonce from counter, blk and len as associated data. */
static void crypt_begin(const struct backing_crypt *c, struct gcm_ctx *g, uint64_t counter,
                        uint64_t blk, size_t len)
{
    uint8_t nonce[GCM_IV_SIZE] = { 0 };
    uint8_t ad[12];
    memcpy(nonce, &counter, sizeof(counter));
    memcpy(ad, &blk, sizeof(blk));
    uint32_t len32 = (uint32_t)len;
    memcpy(ad + 8, &len32, sizeof(len32));
    gcm_set_iv(g, &c->key->gcm, sizeof(nonce), nonce);
    gcm_update(g, &c->key->gcm, sizeof(ad), ad);
}

const void *backing_crypt_seal(struct backing_crypt *c, uint64_t blk, const void *src,
                               size_t len, struct backing_seal_pending *ret)
{
    uint64_t counter = atomic_fetch_add_explicit(&c->counter, 1, memory_order_relaxed) + 1;
    struct gcm_ctx g;
    crypt_begin(c, &g, counter, blk, len);
    gcm_encrypt(&g, &c->key->gcm, &c->key->aes, (nettle_cipher_func *)aes256_encrypt, len,
                tls_sealed, src);
    gcm_digest(&g, &c->key->gcm, &c->key->aes, (nettle_cipher_func *)aes256_encrypt,
               GCM_DIGEST_SIZE, ret->tag);
    ret->counter = counter;
    return tls_sealed;
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
    struct gcm_ctx g;
    uint8_t tag[GCM_DIGEST_SIZE];
    crypt_begin(c, &g, s->counter, blk, len);
    gcm_decrypt(&g, &c->key->gcm, &c->key->aes, (nettle_cipher_func *)aes256_encrypt, len,
                buf, buf);
    gcm_digest(&g, &c->key->gcm, &c->key->aes, (nettle_cipher_func *)aes256_encrypt,
               GCM_DIGEST_SIZE, tag);
    if (!memeql_sec(tag, s->tag, sizeof(tag))) {
        /* What failed to open is nobody's data: do not hand it on. */
        memset(buf, 0, len);
        return -EBADMSG;
    }
    return 0;
}
