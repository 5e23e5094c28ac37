/* SPDX-License-Identifier: MIT */
/*
 * Pages and their codecs: what every layer of the store above the slot
 * table needs, and nothing it calls back.  Pure functions of their
 * arguments and the calling thread's context; no lock, no allocation.
 */
#include <errno.h>
#include <string.h>

#include "store-internal.h"

bool page_same(const void *page, uint64_t *ret_word)
{
    const unsigned char *p = page;
    uint64_t w;
    memcpy(&w, p, 8);
    for (size_t i = 8; i < PAGE; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        if (v != w)
            return false;
    }
    *ret_word = w;
    return true;
}

/* Decompress a slot's n bytes at src into dst (PAGE bytes) with the codec its flags name. */
int slot_decompress(struct tctx *t, unsigned flags, const void *src, size_t n, void *dst)
{
    struct codec_ctx *c = flags & SF_RECOMP ? t->codec2 : t->codec;
    if (!c)
        return -EIO;
    return codec_decompress(c, src, n, dst, PAGE) == PAGE ? 0 : -EIO;
}

int slot_obj_read(struct store *s, struct tctx *t, const struct slot *sl, void *dst)
{
    if (sl->state == SLOT_HUGE)
        return zs_read(s->pool, sl->val, dst) == (int)PAGE ? 0 : -EIO;
    if (zs_read(s->pool, sl->val, t->cbuf) != sl->size)
        return -EIO;
    return slot_decompress(t, sl->flags, t->cbuf, sl->size, dst);
}
