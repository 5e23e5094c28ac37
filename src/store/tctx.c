/* SPDX-License-Identifier: MIT */
/*
 * Per-thread contexts (doc/store.md, "Per-thread state").
 *
 * A context belongs to one thread at a time, found through the store's
 * pthread key; the free list and the list of all contexts are under
 * tctx_lock.  With a reserve, a request never makes a context: it takes
 * one made ahead (tctx_prealloc(), store_thread_prepare()) or fails.
 * Every context is used once when made, so that its pages are in.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "store-internal.h"

/*
 * Use a codec once on a page that compresses (half of it a repeated
 * pattern), so that its state is written and its code run before a request
 * needs them.  A codec that fails here fails later too: -EIO.
 */
static int codec_warm(struct codec_ctx *c, unsigned char *page, unsigned char *cbuf)
{
    for (size_t i = 0; i < PAGE; i++)
        page[i] = (unsigned char)(i < PAGE / 2 ? i * 131 >> 3 : 0x5a);
    ssize_t n = codec_compress(c, page, PAGE, cbuf, PAGE - 1);
    if (n <= 0 || codec_decompress(c, cbuf, (size_t)n, page, PAGE) != PAGE)
        return -EIO;
    return 0;
}

/* Free a context's codecs and buffers, and the context. */
static void tctx_free_one(struct tctx *t)
{
    codec_ctx_free(t->codec);
    codec_ctx_free(t->codec2);
    codec_ctx_free(t->codec3);
    free(t->braw);
    free(t);
}

/*
 * What reading bundles takes: the cold codec's decompressor and a buffer
 * for a bundle's pages, touched now so that its pages are in.  (Only the
 * cold pass compresses, with a context of its own.)  0 or -ENOMEM.
 */
static int tctx_cold_new(struct store *s, struct tctx *t)
{
    size_t raw = (size_t)s->bundle_pages * PAGE;
    t->codec3 = codec_dctx_new(s->codec3);
    t->braw = malloc(raw);
    if (!t->codec3 || !t->braw)
        return -ENOMEM;
    memset(t->braw, 0, raw);
    return 0;
}

/* A new context, on the store's list of all (not on the free list).  NULL if none. */
static struct tctx *tctx_new(struct store *s)
{
    struct tctx *t;
    /* Cache-line aligned: the buffers of two threads never share a line. */
    if (posix_memalign((void **)&t, 64, sizeof(*t)) != 0)
        return NULL;
    /* All of it, the buffers too: their pages are in from now on. */
    memset(t, 0, sizeof(*t));
    t->s = s;
    t->codec = codec_ctx_new(s->codec, s->level, PAGE);
    if (s->codec2)
        t->codec2 = codec_ctx_new(s->codec2, s->level2, PAGE);
    if (s->codec3 && tctx_cold_new(s, t) < 0)
        goto fail;
    if (!t->codec || (s->codec2 && !t->codec2) || codec_warm(t->codec, t->page, t->cbuf) < 0 ||
        (t->codec2 && codec_warm(t->codec2, t->page, t->cbuf) < 0))
        goto fail;
    pthread_mutex_lock(&s->tctx_lock);
    t->all_next = s->all_list;
    s->all_list = t;
    pthread_mutex_unlock(&s->tctx_lock);
    return t;
fail:
    tctx_free_one(t);
    return NULL;
}

static void tctx_put(struct tctx *t)
{
    struct store *s = t->s;
    LOCK_GUARD(&s->tctx_lock);
    t->next = s->free_list;
    s->free_list = t;
}

/* The key's destructor: a thread exits, its context goes back to the store. */
void tctx_release(void *p)
{
    tctx_put(p);
}

/*
 * The calling thread's context, taken from the free list on first use, or
 * made if may_make allows (requests with a reserve do not: making one needs
 * memory).  NULL when there is none.
 */
struct tctx *tctx_of_thread(struct store *s, bool may_make)
{
    struct tctx *t = pthread_getspecific(s->key);
    if (t)
        return t;
    mutex_lock(&s->tctx_lock);
    t = s->free_list;
    if (t)
        s->free_list = t->next;
    mutex_unlock(&s->tctx_lock);
    if (!t) {
        if (!may_make)
            return NULL;
        t = tctx_new(s);
        if (!t)
            return NULL;
    }
    if (pthread_setspecific(s->key, t) != 0) {
        tctx_put(t);
        return NULL;
    }
    return t;
}

/* A request's context: never made on the spot with a reserve. */
struct tctx *tctx_get(struct store *s)
{
    return tctx_of_thread(s, !s->reserved);
}

int tctx_prealloc(struct store *s, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct tctx *t = tctx_new(s);
        if (!t)
            return -ENOMEM;
        tctx_put(t);
    }
    return 0;
}

/* Every context the store made; no thread may use one any more. */
void tctx_free_all(struct store *s)
{
    for (struct tctx *t = s->all_list, *next; t; t = next) {
        next = t->all_next;
        tctx_free_one(t);
    }
    s->all_list = s->free_list = NULL;
}
