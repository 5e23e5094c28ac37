/* SPDX-License-Identifier: MIT */
/*
 * Writeback and idle marking (doc/store.md, "Writeback", "What goes
 * first", "Idle marking and recompression").
 *
 * A slot is written back with its lock held across the backing write, so
 * its content cannot change between the copy and the swap; a failed
 * backing write leaves it as it was.  Nothing here allocates from the pool:
 * eviction calls it to make room.  What reaches the backing store is
 * sealed there (backing.h): the slot keeps only the block's number.
 */
#include <errno.h>
#include <string.h>

#include "backing.h"
#include "store-internal.h"

/*
 * A bundled page (slot sl, locked) as a block: taken out of its bundle and
 * compressed alone with the I/O codec into t->cbuf, or left raw in t->page
 * (the backing store wants raw pages, or it does not compress below the
 * huge threshold).  *buf and *len say which; 0 or -EIO.
 */
static int bundled_block(struct store *s, struct tctx *t, uint64_t i, const void **buf,
                         size_t *len)
{
    if (bundle_read_locked(s, t, i, t->page) < 0)
        return -EIO;
    if (s->backing_raw) {
        *buf = t->page;
        *len = PAGE;
        return 0;
    }
    return page_compress(s, t, t->page, buf, len);
}

/*
 * Write slot i's page (the slot locked by the caller, in the pool: an
 * object, or a bundle's member) to a new backing block and make the slot
 * point there.  Returns 0, or the backing store's error with the slot
 * untouched.
 */
int slot_writeback_locked(struct store *s, struct tctx *t, uint64_t i)
{
    struct slot *sl = &s->slots[i];
    const void *buf = t->cbuf;
    size_t len = sl->size;
    uint8_t recomp = (uint8_t)(sl->flags & SF_RECOMP);

    if (sl->state == SLOT_BUNDLE) {
        recomp = 0;
        if (bundled_block(s, t, i, &buf, &len) < 0)
            return -EIO;
    } else if (zs_read(s->pool, sl->val, t->cbuf) != sl->size) {
        return -EIO;
    } else if (s->backing_raw && sl->state == SLOT_OBJ) {
        if (slot_decompress(t, sl->flags, t->cbuf, sl->size, t->page) < 0)
            return -EIO;
        buf = t->page;
        len = PAGE;
    }
    uint64_t blk;
    int r = backing_alloc(s->backing, &blk);
    if (r < 0)
        return r;
    r = backing_write(s->backing, blk, buf, len);
    if (r < 0) {
        /* Discard: on a full file system, give back what the write did take. */
        backing_free(s->backing, blk, true);
        return r;
    }
    struct entry e = {
        .state = SLOT_WB,
        .flags = len == PAGE ? 0 : recomp,
        .size = (uint16_t)len,
        .val = blk,
    };
    struct entry old = slot_swap(s, i, &e);
    entry_release(s, &old, false);
    counter_add(&s->bd_writes, 1);
    return 0;
}

/*
 * Whether slot sl (locked), in the pool, is one that sel selects: an
 * object of its own, or with bundles, a bundle's member too.
 */
static bool sel_match(const struct slot *sl, unsigned sel, bool bundles)
{
    if (!(bundles ? slot_in_pool(sl) : slot_has_object(sl)))
        return false;
    if (sel & STORE_SEL_ALL)
        return true;
    if ((sel & STORE_SEL_IDLE) && !(sl->flags & SF_IDLE))
        return false;
    if ((sel & STORE_SEL_HUGE) && sl->state != SLOT_HUGE)
        return false;
    return true;
}

/* Whether slot i (locked) is one that sel selects for recompression or bundling. */
bool slot_selected(const struct slot *sl, unsigned sel)
{
    return sel_match(sl, sel, false);
}

struct mark_idle {
    uint32_t now;
    uint64_t age_sec;
    int64_t marked;
};

static int mark_idle_one(struct store *s, uint64_t i, struct slot *sl, void *arg)
{
    struct mark_idle *m = arg;
    if (!slot_in_pool(sl))
        return 0;
    /* A slot touched since the walk began has an atime past m->now: young. */
    uint32_t atime = atomic_load_explicit(&s->atime[i], memory_order_relaxed);
    if (m->age_sec && (atime > m->now || m->now - atime < m->age_sec))
        return 0;
    if (!(sl->flags & SF_IDLE)) {
        sl->flags |= SF_IDLE;
        counter_add(&s->idle_pages, 1);
    }
    m->marked++;
    return 0;
}

int64_t store_mark_idle(struct store *s, uint64_t age_sec)
{
    struct mark_idle m = { .now = now_sec(s), .age_sec = age_sec };
    slot_walk(s, mark_idle_one, &m);
    return m.marked;
}

/* The selections store_writeback() and store_recompress() accept. */
bool sel_valid(unsigned sel, unsigned allowed)
{
    if (sel == 0 || (sel & ~allowed))
        return false;
    return !(sel & STORE_SEL_ALL) || sel == STORE_SEL_ALL;
}

struct job_count {
    bool (*pick)(const struct slot *sl, const void *arg);
    const void *arg;
    uint64_t n, limit;
};

static int job_count_one(struct store *s, uint64_t i, struct slot *sl, void *arg)
{
    struct job_count *c = arg;
    (void)s;
    (void)i;
    if (c->limit && c->n >= c->limit)
        return 1;
    c->n += c->pick(sl, c->arg);
    return 0;
}

void job_begin(struct store *s, bool (*pick)(const struct slot *sl, const void *arg),
               const void *arg, uint64_t limit)
{
    struct job_count c = { .pick = pick, .arg = arg, .limit = limit };
    atomic_store_explicit(&s->job_done, 0, memory_order_relaxed);
    atomic_store_explicit(&s->job_selected, 0, memory_order_relaxed);
    slot_walk(s, job_count_one, &c);
    atomic_store_explicit(&s->job_selected, c.n, memory_order_relaxed);
}

void store_progress(struct store *s, struct store_progress *ret)
{
    *ret = (struct store_progress){
        .selected = counter_get(&s->job_selected),
        .done = counter_get(&s->job_done),
    };
}

/* Writeback takes bundled pages too: a bundle's member is not huge, but may be idle. */
static bool writeback_pick(const struct slot *sl, const void *arg)
{
    return sel_match(sl, *(const unsigned *)arg, true);
}

struct writeback {
    struct tctx *t;
    unsigned sel;
    uint64_t limit_pages;       /* 0: no limit */
    int64_t written;
};

/* 1 to stop at the limit, the backing store's error to stop on it. */
static int writeback_one(struct store *s, uint64_t i, struct slot *sl, void *arg)
{
    struct writeback *w = arg;
    if (w->limit_pages && (uint64_t)w->written >= w->limit_pages)
        return 1;
    if (!writeback_pick(sl, &w->sel))
        return 0;
    int r = slot_writeback_locked(s, w->t, i);
    if (r < 0)
        return r;
    w->written++;
    counter_add(&s->job_done, 1);
    return 0;
}

int64_t store_writeback(struct store *s, unsigned sel, uint64_t limit_pages)
{
    if (!s->backing)
        return -ENOTSUP;
    if (!sel_valid(sel, STORE_SEL_IDLE | STORE_SEL_HUGE | STORE_SEL_ALL))
        return -EINVAL;
    /* A job, not a request: it may make its context (with a reserve, those made
     * ahead may all be held by the front end's threads). */
    struct writeback w = { .t = tctx_of_thread(s, true),
                           .sel = sel,
                           .limit_pages = limit_pages };
    if (!w.t)
        return -ENOMEM;
    job_begin(s, writeback_pick, &sel, limit_pages);
    int err = slot_walk(s, writeback_one, &w);
    if (w.written > 0)
        compactor_wake(s);
    return w.written == 0 && err < 0 ? err : w.written;
}
