/* SPDX-License-Identifier: MIT */
/*
 * Reading written-back pages, and bringing them back into memory
 * (doc/store.md, "Writeback").
 *
 * A written-back page is read under its slot lock; the backing store
 * checks it against the seal of the block's last write (backing.h) and
 * says -EBADMSG when it holds anything else, and counts it (bd_bad_sums).
 * It comes back into memory on its second read, and only into room under
 * the high watermark, so that promotion never makes eviction run.
 */
#include <errno.h>

#include "backing.h"
#include "store-internal.h"

/* Slot i's written-back page into dst, slot locked.  0 or -EIO. */
int wb_read_locked(struct store *s, struct tctx *t, uint64_t i, void *dst)
{
    struct slot *sl = &s->slots[i];
    bool raw = sl->size == PAGE;
    void *buf = raw ? dst : t->cbuf;
    /* -EBADMSG (a block that fails its seal) counts in the backing's bad_seals: bd_bad_sums. */
    if (backing_read(s->backing, WB_BLOCK(sl->val), buf, sl->size) < 0)
        return -EIO;
    counter_add(&s->bd_reads, 1);
    return raw ? 0 : slot_decompress(t, sl->flags, t->cbuf, sl->size, dst);
}

/*
 * After a read of written-back slot i (locked) whose page is in page: the
 * second such read brings the page back into memory if the pool stays
 * under the high watermark (doc/store.md).  Failing to is not an error.
 */
void wb_maybe_promote(struct store *s, struct tctx *t, uint64_t i, const void *page)
{
    struct slot *sl = &s->slots[i];
    if (!(sl->flags & SF_WB_REF)) {
        sl->flags |= SF_WB_REF;
        return;
    }
    uint64_t limit = mem_limit(s);
    if (!limit || mem_used(s) + PAGE > watermark(limit, &s->high_pct))
        return;
    struct entry e, old;
    if (entry_make(s, t, page, &e, false) < 0)
        return;
    old = slot_swap(s, i, &e);
    entry_release(s, &old, false);
    counter_add(&s->pages_promoted, 1);
}
