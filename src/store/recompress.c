/* SPDX-License-Identifier: MIT */
/*
 * Recompression (doc/store.md, "Idle marking and recompression"): an
 * object is recompressed with the second codec under its slot lock, and
 * the result kept only when it lands in a smaller size class; the slot is
 * then flagged SF_RECOMP so that reads pick the second codec.
 */
#include <errno.h>

#include "store-internal.h"

/*
 * Recompress slot i's object (slot locked, holding an object of the first
 * codec) with the second codec; keep the result if its size class is
 * smaller.  1 if kept, 0 if not, -EIO if the object would not decompress.
 */
static int slot_recompress_locked(struct store *s, struct tctx *t, uint64_t i)
{
    struct slot *sl = &s->slots[i];
    if (slot_obj_read(s, t, sl, t->page) < 0)
        return -EIO;
    ssize_t n = codec_compress(t->codec2, t->page, PAGE, t->cbuf, s->huge_threshold - 1);
    if (n <= 0 || zs_class_size((size_t)n) >= zs_class_size(sl->size))
        return 0;
    uint64_t h;
    if (obj_alloc(s, (size_t)n, &h, false) < 0)
        return 0;
    if (zs_write(s->pool, h, t->cbuf, (size_t)n) < 0) {
        zs_free(s->pool, h);
        return 0;
    }
    struct entry e = {
        .state = SLOT_OBJ,
        .flags = (uint8_t)(SF_RECOMP | (sl->flags & (SF_IDLE | SF_ACCESSED))),
        .size = (uint16_t)n,
        .val = h,
    };
    struct entry old = slot_swap(s, i, &e);
    entry_release(s, &old, false);
    return 1;
}

struct recompress {
    struct tctx *t;
    unsigned sel, threshold;
    int64_t kept;
};

/* Whether recompression takes slot sl (locked). */
static bool recompress_pick(const struct slot *sl, const void *arg)
{
    const struct recompress *r = arg;
    return slot_selected(sl, r->sel) && !(sl->flags & SF_RECOMP) && sl->size >= r->threshold;
}

static int recompress_one(struct store *s, uint64_t i, struct slot *sl, void *arg)
{
    struct recompress *r = arg;
    if (recompress_pick(sl, r)) {
        r->kept += slot_recompress_locked(s, r->t, i) > 0;
        counter_add(&s->job_done, 1);
    }
    return 0;
}

int64_t store_recompress(struct store *s, unsigned sel, unsigned threshold)
{
    if (!s->codec2)
        return -ENOTSUP;
    if (!sel_valid(sel, STORE_SEL_IDLE | STORE_SEL_HUGE))
        return -EINVAL;
    /* A job, not a request: it may make its context, as store_writeback() does. */
    struct recompress r = { .t = tctx_of_thread(s, true), .sel = sel, .threshold = threshold };
    if (!r.t)
        return -ENOMEM;
    job_begin(s, recompress_pick, &r, 0);
    slot_walk(s, recompress_one, &r);
    if (r.kept > 0)
        compactor_wake(s);
    return r.kept;
}
