/* SPDX-License-Identifier: MIT */
/*
 * Reads, writes, discards, zeroes, seek and extents (doc/store.md,
 * "Locking").
 *
 * A full-page write compresses outside any lock and locks the slot only to
 * swap the entry.  A read copies the object out under the lock and
 * decompresses after.  A partial-page write (and each edge of a discard)
 * keeps the slot locked across read, modify, compress and swap.  Every
 * request is checked against the device's size first (-EINVAL, counted in
 * invalid_io), and a failed page fails the request with nothing after it
 * touched.
 */
#include <errno.h>
#include <string.h>

#include "store-internal.h"

/* -EINVAL (counted) unless [off, off + len) lies within the device. */
static int check_range(struct store *s, uint64_t len, uint64_t off)
{
    if (len > s->size || off > s->size - len) {
        counter_add(&s->invalid_io, 1);
        return -EINVAL;
    }
    return 0;
}

static void page_fill(void *page, uint64_t w)
{
    if (w == 0) {
        memset(page, 0, PAGE);
        return;
    }
    unsigned char *p = page;
    for (size_t i = 0; i < PAGE; i += 8)
        memcpy(p + i, &w, 8);
}

/*
 * Slot i's page into dst (PAGE bytes), slot locked by the caller, who keeps
 * it locked throughout.  0 or -EIO.
 */
static int page_read_locked(struct store *s, struct tctx *t, uint64_t i, void *dst)
{
    struct slot *sl = &s->slots[i];
    switch (sl->state) {
    case SLOT_EMPTY:
        memset(dst, 0, PAGE);
        return 0;
    case SLOT_SAME:
        page_fill(dst, sl->val);
        return 0;
    case SLOT_WB:
        return wb_read_locked(s, t, i, dst);
    case SLOT_BUNDLE:
        return bundle_read_locked(s, t, i, dst);
    default:
        return slot_obj_read(s, t, sl, dst);
    }
}

/* Slot i's page into dst, decompressing outside the slot lock.  0 or -EIO. */
static int page_read(struct store *s, struct tctx *t, uint64_t i, void *dst)
{
    struct slot *sl = &s->slots[i];
    slot_lock(sl);
    if (sl->state != SLOT_OBJ) {
        if (sl->state == SLOT_EMPTY || sl->state == SLOT_SAME) {
            int r = page_read_locked(s, t, i, dst);
            slot_unlock(sl);
            return r;
        }
        slot_touch(s, i);
        if (sl->state == SLOT_BUNDLE)
            return bundle_read(s, t, i, dst);
        int r = page_read_locked(s, t, i, dst);
        if (r == 0 && sl->state == SLOT_WB)
            wb_maybe_promote(s, t, i, dst);
        slot_unlock(sl);
        return r;
    }
    slot_touch(s, i);
    uint16_t size = sl->size;
    unsigned flags = sl->flags;
    int n = zs_read(s->pool, sl->val, t->cbuf);
    slot_unlock(sl);
    if (n != size)
        return -EIO;
    return slot_decompress(t, flags, t->cbuf, size, dst);
}

/* Store a whole page into slot i: compress first, lock only to swap. */
static int page_write(struct store *s, struct tctx *t, uint64_t i, const void *page)
{
    struct entry e, old;
    int r = entry_make(s, t, page, &e, true);
    if (r < 0)
        return r;
    slot_lock(&s->slots[i]);
    old = slot_swap(s, i, &e);
    slot_unlock(&s->slots[i]);
    entry_release(s, &old, false);
    return 0;
}

/*
 * Read-modify-write part of slot i under its lock: src (len bytes at pofs in
 * the page), or zeros when src is NULL.  Zeroing leaves an empty slot empty,
 * and empties a slot whose page becomes all zeros (a discard makes holes).
 */
static int page_update(struct store *s, struct tctx *t, uint64_t i, const void *src,
                       size_t pofs, size_t len)
{
    struct slot *sl = &s->slots[i];
    struct entry e, old;
    uint64_t w;

    slot_lock(sl);
    if (!src && sl->state == SLOT_EMPTY) {
        slot_unlock(sl);
        return 0;
    }
    int r = page_read_locked(s, t, i, t->page);
    if (r < 0)
        goto out;
    if (src)
        memcpy(t->page + pofs, src, len);
    else
        memset(t->page + pofs, 0, len);
    if (!src && page_same(t->page, &w) && w == 0)
        e = (struct entry){ .state = SLOT_EMPTY };
    else if ((r = entry_make(s, t, t->page, &e, true)) < 0)
        goto out;
    old = slot_swap(s, i, &e);
    slot_unlock(sl);
    entry_release(s, &old, !src);
    return 0;
out:
    slot_unlock(sl);
    return r;
}

/*
 * The pages a request covers, one at a time: slot i, n bytes from pofs in
 * it, done bytes of the request before it.  for (span_init(&sp, off, len);
 * span_next(&sp);) visits them in order.
 */
struct span {
    uint64_t off, end;
    uint64_t i, done;
    size_t pofs, n;
};

static void span_init(struct span *sp, uint64_t off, uint64_t len)
{
    *sp = (struct span){ .off = off, .end = off + len };
}

static bool span_next(struct span *sp)
{
    sp->done += sp->n;
    sp->off += sp->n;
    if (sp->off >= sp->end)
        return false;
    sp->i = sp->off >> PAGE_SHIFT;
    sp->pofs = sp->off & (PAGE - 1);
    sp->n = PAGE - sp->pofs < sp->end - sp->off ? PAGE - sp->pofs : (size_t)(sp->end - sp->off);
    return true;
}

/*
 * A read or a write begins: its range checked, the request counted, and
 * the calling thread's context in *ret_t.  0 or a negative errno.
 */
static int request_begin(struct store *s, uint64_t len, uint64_t off, bool write,
                         struct tctx **ret_t)
{
    int r = check_range(s, len, off);
    if (r < 0)
        return r;
    counter_add(write ? &s->write_reqs : &s->read_reqs, 1);
    counter_add(write ? &s->write_bytes : &s->read_bytes, len);
    *ret_t = tctx_get(s);
    if (!*ret_t) {
        counter_add(write ? &s->failed_writes : &s->failed_reads, 1);
        return -ENOMEM;
    }
    return 0;
}

int store_read(struct store *s, void *buf, uint64_t len, uint64_t off)
{
    struct tctx *t;
    int r = request_begin(s, len, off, false, &t);
    if (r < 0)
        return r;
    struct span sp;
    for (span_init(&sp, off, len); span_next(&sp);) {
        unsigned char *p = (unsigned char *)buf + sp.done;
        if (sp.n == PAGE) {
            r = page_read(s, t, sp.i, p);
        } else {
            r = page_read(s, t, sp.i, t->page);
            if (r == 0)
                memcpy(p, t->page + sp.pofs, sp.n);
        }
        if (r < 0) {
            counter_add(&s->failed_reads, 1);
            return r;
        }
    }
    return 0;
}

int store_write(struct store *s, const void *buf, uint64_t len, uint64_t off)
{
    struct tctx *t;
    int r = request_begin(s, len, off, true, &t);
    if (r < 0)
        return r;
    struct span sp;
    for (span_init(&sp, off, len); span_next(&sp);) {
        const unsigned char *p = (const unsigned char *)buf + sp.done;
        r = sp.n == PAGE ? page_write(s, t, sp.i, p) : page_update(s, t, sp.i, p, sp.pofs, sp.n);
        if (r < 0) {
            counter_add(&s->failed_writes, 1);
            return r;
        }
    }
    return 0;
}

/*
 * Zero [off, off + len): empty whole slots, read-modify-write the edges.
 * The work of store_discard() (discard: count notify_free) and
 * store_write_zeroes() (no_hole: leave zero-filled pages, not holes).
 */
static int zero_range(struct store *s, uint64_t len, uint64_t off, bool discard,
                      bool no_hole)
{
    static const unsigned char zeros[PAGE];

    struct tctx *t = NULL;
    uint64_t freed = 0;
    int r = 0;
    struct span sp;
    for (span_init(&sp, off, len); span_next(&sp);) {
        if (sp.n == PAGE) {
            struct entry e = { .state = no_hole ? SLOT_SAME : SLOT_EMPTY,
                               .flags = no_hole ? SF_ACCESSED : 0 }, old;
            slot_lock(&s->slots[sp.i]);
            old = slot_swap(s, sp.i, &e);
            slot_unlock(&s->slots[sp.i]);
            entry_release(s, &old, true);
            freed += entry_has_object(&old);
            if (discard)
                counter_add(&s->notify_free, 1);
        } else {
            if (!t && !(t = tctx_get(s))) {
                r = -ENOMEM;
                break;
            }
            /* Zeros written as data keep the page a page. */
            r = page_update(s, t, sp.i, no_hole ? zeros + sp.pofs : NULL, sp.pofs, sp.n);
            if (r < 0)
                break;
        }
    }
    if (freed)
        compactor_wake(s);
    if (r < 0)
        counter_add(&s->failed_writes, 1);
    return r;
}

int store_discard(struct store *s, uint64_t len, uint64_t off)
{
    int r = check_range(s, len, off);
    if (r < 0)
        return r;
    counter_add(&s->discard_reqs, 1);
    counter_add(&s->discard_bytes, len);
    return zero_range(s, len, off, true, false);
}

int store_write_zeroes(struct store *s, uint64_t len, uint64_t off, unsigned flags)
{
    int r = check_range(s, len, off);
    if (r < 0)
        return r;
    if (flags & ~(unsigned)STORE_ZERO_NO_HOLE)
        return -EINVAL;
    counter_add(&s->write_reqs, 1);
    counter_add(&s->write_bytes, len);
    return zero_range(s, len, off, false, flags & STORE_ZERO_NO_HOLE);
}

int store_flush(struct store *s)
{
    counter_add(&s->flush_reqs, 1);
    return 0;
}

int store_seek(struct store *s, uint64_t off, bool data, uint64_t *ret_off)
{
    if (off >= s->size)
        return -ENXIO;
    uint64_t i = off >> PAGE_SHIFT;
    uint64_t j = data ? occ_next_set(s, i) : occ_next_clear(s, i);
    if (j >= s->nslots) {
        if (data)
            return -ENXIO;
        *ret_off = s->size;
        return 0;
    }
    *ret_off = j == i ? off : j << PAGE_SHIFT;
    return 0;
}

/* A slot's extent flags, read under its lock (the state is not atomic). */
static unsigned slot_extent_flags(struct store *s, uint64_t i)
{
    struct slot *sl = &s->slots[i];
    unsigned flags;

    slot_lock(sl);
    if (sl->state == SLOT_EMPTY)
        flags = STORE_EXTENT_HOLE | STORE_EXTENT_ZERO;
    else if (sl->state == SLOT_SAME && sl->val == 0)
        flags = STORE_EXTENT_ZERO;
    else
        flags = 0;
    slot_unlock(sl);
    return flags;
}

int store_extent(struct store *s, uint64_t off, uint64_t len,
                 uint64_t *ret_len, unsigned *ret_flags)
{
    if (len == 0 || off >= s->size)
        return -EINVAL;
    uint64_t end = len > s->size - off ? s->size : off + len;
    uint64_t i = off >> PAGE_SHIFT;
    uint64_t last = (end - 1) >> PAGE_SHIFT;    /* the last slot in range */
    unsigned flags = slot_extent_flags(s, i);
    uint64_t j;

    if (flags & STORE_EXTENT_HOLE) {
        /* A run of holes ends where the bitmap says data starts. */
        j = occ_next_set(s, i + 1);
    } else {
        /* Data and zero pages: slot by slot while the status holds. */
        for (j = i + 1; j <= last; j++)
            if (slot_extent_flags(s, j) != flags)
                break;
    }
    uint64_t run_end = j > last ? end : j << PAGE_SHIFT;
    *ret_len = run_end - off;
    *ret_flags = flags;
    return 0;
}
