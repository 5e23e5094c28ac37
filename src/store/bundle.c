/* SPDX-License-Identifier: MIT */
/*
 * The cold tier's bundles (doc/store.md, "Bundles").
 *
 * A page compressed alone wastes what its codec could have learned from
 * its neighbours: on a corpus of real files, 4 KiB pages take 372 MiB per
 * GiB with zstd and 32 KiB blocks 327.  A bundle is up to bundle_pages
 * idle neighbours (an aligned group of slots) compressed together with the
 * cold codec into one object of the pool.  Each member slot keeps the
 * bundle's handle and the page's position in it (state SLOT_BUNDLE); the
 * object begins with a small header: a mask of the positions still in use
 * (the "live" mask), the page count and a checksum of the pages.
 *
 * Life of a bundle: the cold pass (store_bundle()) reads the members one
 * slot lock at a time, marking each SF_B_PEND; compresses them with no lock
 * held; stores the object; then installs it slot by slot, each only if the
 * slot still holds what was read (SF_B_PEND survives only while no write,
 * discard or read has replaced or touched the entry, so a reused handle
 * cannot fool it).  The live mask starts with a builder's bit, so that the
 * bundle outlives a member that leaves while others are being installed;
 * whoever clears the last bit frees the object.
 *
 * A member leaves by any path that frees a slot's entry (entry_release()):
 * writes, discards, zeroing, unpacking.  The live mask is changed with an
 * atomic operation on the object, pinned by zs_map() so that compaction
 * cannot move it meanwhile; a member's bit is set for as long as its slot
 * names the bundle, so a slot lock held over a member keeps the bundle
 * alive.
 *
 * Reads map the object under the slot lock, unlock, decompress all of it
 * into the thread's buffer (no allocation) and verify the checksum: a
 * bundle damaged in memory reads as -EIO, never as wrong data.  A page read
 * a second time since it was bundled is hot again: it is stored alone (an
 * "unpack"), and leaves the bundle; when that leaves half of the bundle or
 * less, the rest is unpacked too, from the pages just decompressed (a
 * "split"), so that a bundle gone hot gives its memory back at once.  A
 * thread keeps the last bundle it decompressed, so that reading one in
 * order decompresses it once.
 *
 * The pass runs on request (store_bundle(), over the idle-marked or all
 * slots) or on its own, in the store's cold thread, over the slots not
 * touched for cold_after seconds (their access times, not the idle marks,
 * which are the user's); one at a time, under bundle_lock.
 *
 * Writeback takes a member's page out of its bundle and writes it alone,
 * compressed with the I/O codec (writeback.c): the clock evicts bundled
 * pages as it does others, and the bundle's memory goes when its last
 * member has.  zs_shrink() (the zspage policy) passes bundles by.
 *
 * Left out for now: bundles emptied by writes and discards are not
 * rebuilt.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

#include "store-internal.h"


/*
 * A checksum of n bytes (a multiple of 32): four independent lanes, so that
 * it costs a few microseconds per bundle, not the latency of 8,192
 * multiplications in a row.  It finds damage, not an adversary.
 */
static uint64_t bundle_sum(const unsigned char *p, size_t n)
{
    uint64_t h[4] = { 0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full, 0x165667b19e3779f9ull, n };
    for (size_t i = 0; i < n; i += 32) {
        for (unsigned k = 0; k < 4; k++) {
            uint64_t w;
            memcpy(&w, p + i + 8 * k, 8);
            h[k] = (h[k] ^ w) * 0xff51afd7ed558ccdull;
            h[k] ^= h[k] >> 31;
        }
    }
    return h[0] ^ (h[1] * 3) ^ (h[2] * 5) ^ (h[3] * 7);
}

/*
 * Bundle h's pages (b, mapped, size bytes) in t->braw, checked: decompressed
 * now, or there already from the thread's last read of the same bundle
 * (the same handle and the same checksum of its pages; a bundle never
 * changes, and a handle freed and reused for another bundle would need
 * pages whose 64-bit checksum is the same).  The number of pages, or -EIO.
 */
static int bundle_load(struct store *s, struct tctx *t, uint64_t h,
                       const struct bundle_hdr *b, size_t size)
{
    size_t raw = (size_t)b->npages * PAGE;
    if (size <= sizeof(*b) || b->npages > s->bundle_pages || !t->codec3)
        return -EIO;
    if (t->braw_h == h && t->braw_sum == b->sum && t->braw_n == b->npages)
        return b->npages;
    t->braw_h = 0;
    ssize_t n = codec_decompress(t->codec3, b + 1, size - sizeof(*b), t->braw, raw);
    if (n != (ssize_t)raw || bundle_sum(t->braw, raw) != b->sum)
        return -EIO;
    t->braw_h = h;
    t->braw_sum = b->sum;
    t->braw_n = b->npages;
    return b->npages;
}

/* Bundle h, mapped: its page at pos into dst.  0 or -EIO. */
static int bundle_copy(struct store *s, struct tctx *t, uint64_t h,
                       const struct bundle_hdr *b, size_t size, unsigned pos, void *dst)
{
    int n = bundle_load(s, t, h, b, size);
    if (n <= (int)pos)
        return -EIO;
    memcpy(dst, t->braw + (size_t)pos * PAGE, PAGE);
    counter_add(&s->bundle_reads, 1);
    return 0;
}

int bundle_read_locked(struct store *s, struct tctx *t, uint64_t i, void *dst)
{
    struct slot *sl = &s->slots[i];
    size_t size;
    const struct bundle_hdr *b = zs_map(s->pool, sl->val, &size);
    if (!b)
        return -EIO;
    int r = bundle_copy(s, t, sl->val, b, size, sl->size, dst);
    zs_unmap(s->pool, sl->val);
    return r;
}

size_t bundle_share(struct store *s, const struct slot *sl)
{
    size_t size;
    const struct bundle_hdr *b = zs_map(s->pool, sl->val, &size);
    if (!b)
        return 0;
    unsigned n = b->npages ? b->npages : 1;
    zs_unmap(s->pool, sl->val);
    size_t share = zs_class_size(size) / n;
    return share ? share : 1;
}

/*
 * Store page (slot j's, at pos of bundle h) alone, if slot j still holds
 * that position.  entry_make() runs unlocked and does not wait (this is a
 * read): on failure the page stays in the bundle.  If split is not NULL,
 * decide under the slot's lock whether the bundle is to be split, and if
 * so take its BUNDLE_LIVE_SPLIT bit, which keeps it alive until
 * bundle_split() ends.
 */
static void unpack_one(struct store *s, struct tctx *t, uint64_t j, uint64_t h, unsigned pos,
                       const void *page, bool *split)
{
    struct slot *sl = &s->slots[j];
    struct entry e, old;
    if (entry_make(s, t, page, &e, false) < 0)
        return;
    slot_lock(sl);
    if (sl->state != SLOT_BUNDLE || sl->val != h || sl->size != pos) {
        slot_unlock(sl);
        entry_release(s, &e, false);
        return;
    }
    if (split) {
        /*
         * Half of it or less left once this page is out: take the split
         * bit, unless another read holds it (then that read splits).
         */
        uint32_t m = bundle_live_update(s, h, 0, true);
        unsigned left = (unsigned)__builtin_popcount(m & BUNDLE_LIVE_PAGES & ~(1u << pos));
        *split = 2 * left <= t->braw_n &&
                 !(bundle_live_update(s, h, BUNDLE_LIVE_SPLIT, true) & BUNDLE_LIVE_SPLIT);
    }
    old = slot_swap(s, j, &e);
    slot_unlock(sl);
    entry_release(s, &old, false);
    counter_add(&s->bundle_unpacks, 1);
}

/*
 * Bundle h (in t->braw, its BUNDLE_LIVE_SPLIT bit ours) has lost half its
 * pages or more: unpack the rest, so that its memory goes now rather than
 * when the last of them is read or written.  Slot i is one of the group.
 */
static void bundle_split(struct store *s, struct tctx *t, uint64_t i, uint64_t h)
{
    uint64_t g = i - i % s->bundle_pages;
    for (uint64_t j = g; j < g + s->bundle_pages && j < s->nslots; j++) {
        struct slot *sl = &s->slots[j];
        slot_lock(sl);
        /* Alive while the split bit is ours: a slot naming h is one of its pages. */
        bool member = sl->state == SLOT_BUNDLE && sl->val == h;
        unsigned pos = sl->size;
        slot_unlock(sl);
        if (member && pos < t->braw_n)
            unpack_one(s, t, j, h, pos, t->braw + (size_t)pos * PAGE, NULL);
    }
    bundle_drop(s, h, BUNDLE_LIVE_SPLIT_POS);
}

int bundle_read(struct store *s, struct tctx *t, uint64_t i, void *dst)
{
    struct slot *sl = &s->slots[i];
    uint64_t h = sl->val;
    unsigned pos = sl->size;
    bool again = sl->flags & SF_B_REF;
    sl->flags |= SF_B_REF;
    size_t size;
    /* Mapped, the object can be neither moved nor freed: the lock can go. */
    const struct bundle_hdr *b = zs_map(s->pool, h, &size);
    slot_unlock(sl);
    if (!b)
        return -EIO;
    int r = bundle_copy(s, t, h, b, size, pos, dst);
    zs_unmap(s->pool, h);
    if (r < 0 || !again)
        return r;
    /* Read twice: hot again.  t->braw holds the bundle's pages for a split. */
    bool split = false;
    unpack_one(s, t, i, h, pos, dst, &split);
    if (split)
        bundle_split(s, t, i, h);
    return 0;
}

/* One aligned group of slots being bundled by the cold pass. */
struct group {
    unsigned n;                      /* members read */
    uint64_t slot[STORE_BUNDLE_MAX]; /* their slots, in order */
    uint64_t val[STORE_BUNDLE_MAX];  /* what each held when read */
    size_t held;                     /* memory their objects take (class sizes) */
};

/*
 * Whether the pass may take memory now: with a reserve, only while half of
 * it is there.  The reserve is the I/O path's; a bundle saves memory in
 * the end, but takes its zspage (up to 128 KiB) from the reserve first.
 */
static bool reserve_spare(struct store *s)
{
    if (!s->reserved)
        return true;
    struct zs_reserve_stats rs;
    zs_reserve_get_stats(s->pool, &rs);
    return rs.available >= rs.target / 2;
}

/*
 * A cold pass: what it takes, and what it compresses with (its own codec
 * context, not the I/O path's).
 */
struct pass {
    unsigned sel;
    uint32_t age;         /* with it, only slots untouched this many seconds */
    uint32_t now;         /* when the pass began, in access-time seconds */
    bool job;             /* on request: counted in store_progress() */
    struct codec_ctx *cc; /* the cold codec, at its level, for a bundle */
    unsigned char *out;   /* a bundle's object: ZS_MAX_OBJECT_SIZE */
};

static void pass_done(struct pass *ps)
{
    codec_ctx_free(ps->cc);
    free(ps->out);
}

/* Whether the cold pass takes slot sl (locked): an object of its own, selected. */
static bool bundle_pick(const struct slot *sl, const void *arg)
{
    return slot_selected(sl, *(const unsigned *)arg);
}

/*
 * Read the members of the group at slot g (each under its lock, marked
 * SF_B_PEND) into t->braw.  -EIO if an object would not read.
 */
static int group_read(struct store *s, struct tctx *t, const struct pass *ps, uint64_t g,
                      struct group *gr)
{
    gr->n = 0;
    gr->held = 0;
    t->braw_h = 0; /* t->braw is the pass's from here */
    for (uint64_t i = g; i < g + s->bundle_pages && i < s->nslots; i++) {
        struct slot *sl = &s->slots[i];
        slot_lock(sl);
        /* A slot touched since the pass began has an atime past ps->now. */
        uint32_t atime = atomic_load_explicit(&s->atime[i], memory_order_relaxed);
        bool old = !ps->age || (atime <= ps->now && ps->now - atime >= ps->age);
        if (bundle_pick(sl, &ps->sel) && old) {
            if (ps->job)
                counter_add(&s->job_done, 1);
            int r = slot_obj_read(s, t, sl, t->braw + (size_t)gr->n * PAGE);
            if (r < 0) {
                slot_unlock(sl);
                return r;
            }
            sl->flags |= SF_B_PEND;
            gr->slot[gr->n] = i;
            gr->val[gr->n] = sl->val;
            gr->held += zs_class_size(sl->state == SLOT_HUGE ? PAGE : sl->size);
            gr->n++;
        }
        slot_unlock(sl);
    }
    return 0;
}

/* The pass gave up on a group: clear the marks it left. */
static void group_unmark(struct store *s, const struct group *gr)
{
    for (unsigned k = 0; k < gr->n; k++) {
        struct slot *sl = &s->slots[gr->slot[k]];
        slot_lock(sl);
        sl->flags &= (uint8_t)~SF_B_PEND;
        slot_unlock(sl);
    }
}

/*
 * Store the group's pages (in t->braw) as one bundle, if it takes less
 * memory than their objects, and install it in each slot that still holds
 * what was read.  The pages bundled, or a negative errno (the pool's:
 * nothing changed).
 */
static int64_t group_store(struct store *s, struct tctx *t, struct pass *ps,
                           const struct group *gr)
{
    unsigned sel = ps->sel;
    size_t raw = (size_t)gr->n * PAGE;
    size_t hdr = sizeof(struct bundle_hdr);
    size_t cap = gr->held < ZS_MAX_OBJECT_SIZE ? gr->held : ZS_MAX_OBJECT_SIZE;
    if (cap <= hdr)
        return 0;
    ssize_t n = codec_compress(ps->cc, t->braw, raw, ps->out + hdr, cap - hdr);
    if (n <= 0 || zs_class_size(hdr + (size_t)n) >= gr->held)
        return 0; /* -E2BIG: not worth it; other errors: leave the pages be */
    size_t size = hdr + (size_t)n;
    struct bundle_hdr b = { .npages = (uint16_t)gr->n, .sum = bundle_sum(t->braw, raw) };
    atomic_init(&b.live, BUNDLE_LIVE_BUILDER);
    memcpy(ps->out, &b, hdr);
    uint64_t h;
    int r = obj_alloc(s, size, &h, false);
    if (r < 0)
        return r;
    if ((r = zs_write(s->pool, h, ps->out, size)) < 0) {
        zs_free(s->pool, h);
        return r;
    }
    counter_add(&s->bundles, 1);
    counter_add(&s->bundle_bytes, size);
    counter_add(&s->compr_data_size, size);

    int64_t moved = 0;
    for (unsigned k = 0; k < gr->n; k++) {
        struct slot *sl = &s->slots[gr->slot[k]];
        struct entry old;
        slot_lock(sl);
        if (!(sl->flags & SF_B_PEND) || sl->val != gr->val[k] || !bundle_pick(sl, &sel)) {
            sl->flags &= (uint8_t)~SF_B_PEND;
            slot_unlock(sl);
            continue;
        }
        struct entry e = {
            .state = SLOT_BUNDLE,
            .flags = (uint8_t)(sl->flags & SF_IDLE),
            .size = (uint16_t)k,
            .val = h,
        };
        bundle_live_update(s, h, 1u << k, true);
        old = slot_swap(s, gr->slot[k], &e);
        slot_unlock(sl);
        entry_release(s, &old, false);
        moved++;
    }
    /* The builder leaves like a member: if nobody was installed, that frees the bundle. */
    bundle_drop(s, h, BUNDLE_LIVE_BUILDER_POS);
    return moved;
}

/*
 * The cold thread's pass ends early, between groups, when the thread is
 * being stopped, when cold_after has changed (0 turns it off at once; a
 * new age starts a new pass), or when a pass on request waits for it.
 */
static bool cold_pass_over(struct store *s, const struct pass *ps)
{
    if (atomic_load_explicit(&s->cold_after, memory_order_relaxed) != ps->age ||
        atomic_load_explicit(&s->bundle_waiters, memory_order_relaxed) > 0)
        return true;
    LOCK_GUARD(&s->cold.lock);
    return s->cold.stop;
}

/*
 * The cold pass: ps says which slots; a pass on request (ps->job) is
 * counted in store_progress().  Takes bundle_lock, so that one pass runs at
 * a time.  As store_bundle().
 */
static int64_t bundle_pass(struct store *s, struct pass *ps)
{
    /* Not on the I/O path: it may make its context, as store_writeback() does. */
    struct tctx *t = tctx_of_thread(s, true);
    if (!t)
        return -ENOMEM;
    ps->cc = codec_ctx_new(s->codec3, s->level3, (size_t)s->bundle_pages * PAGE);
    ps->out = malloc(ZS_MAX_OBJECT_SIZE);
    if (!ps->cc || !ps->out)
        return -ENOMEM;
    /* A pass on request makes the thread's end early (cold_pass_over()). */
    if (ps->job)
        atomic_fetch_add_explicit(&s->bundle_waiters, 1, memory_order_relaxed);
    LOCK_GUARD(&s->bundle_lock);
    if (ps->job)
        atomic_fetch_sub_explicit(&s->bundle_waiters, 1, memory_order_relaxed);
    ps->now = now_sec(s);
    if (ps->job)
        job_begin(s, bundle_pick, &ps->sel, 0);
    int64_t bundled = 0;
    struct group gr;
    uint64_t step = s->bundle_pages;
    for (uint64_t g = 0; g < s->nslots; g += step) {
        uint64_t next = occ_next_set(s, g);
        if (next >= s->nslots)
            break;
        g = next - next % step;
        if (!reserve_spare(s)) {
            /* Stop with what is done, as a pool at its limit would. */
            if (bundled == 0)
                return -ENOSPC;
            break;
        }
        if (!ps->job && cold_pass_over(s, ps))
            break;
        if (group_read(s, t, ps, g, &gr) < 0 || gr.n < 2) {
            group_unmark(s, &gr);
            continue;
        }
        int64_t r = group_store(s, t, ps, &gr);
        if (r <= 0)
            group_unmark(s, &gr);
        if (r < 0 && bundled == 0)
            return r;
        if (r < 0)
            break;
        bundled += r;
    }
    if (bundled > 0)
        compactor_wake(s);
    return bundled;
}

int64_t store_bundle(struct store *s, unsigned sel)
{
    if (!s->codec3)
        return -ENOTSUP;
    if (!sel_valid(sel, STORE_SEL_IDLE | STORE_SEL_ALL) || !sel)
        return -EINVAL;
    _cleanup_(pass_done) struct pass ps = { .sel = sel, .job = true };
    return bundle_pass(s, &ps);
}

/* How often the cold thread looks, for an age of after seconds: a quarter of it, 1 to 60 s. */
static long cold_period_ms(unsigned after)
{
    unsigned sec = after / 4;
    return (sec < 1 ? 1 : sec > 60 ? 60 : sec) * 1000L;
}

/*
 * The cold thread: a pass over the pages untouched for cold_after seconds
 * when it starts, and then every cold_period_ms(); with cold_after 0 it
 * waits to be given one (store_set_cold_after() wakes it).  A new
 * cold_after ends the pass under way, and the next starts at once.  A
 * pass that fails (the pool full, a reserve in use) is tried again a
 * period later.
 */
void *cold_main(void *arg)
{
    struct store *s = arg;
    if (s->cold_thread_init)
        s->cold_thread_init();
    mutex_lock(&s->cold.lock);
    for (;;) {
        unsigned after = atomic_load_explicit(&s->cold_after, memory_order_relaxed);
        if (after) {
            mutex_unlock(&s->cold.lock);
            _cleanup_(pass_done) struct pass ps = { .sel = STORE_SEL_ALL, .age = after };
            (void)bundle_pass(s, &ps);
            counter_add(&s->cold_passes, 1);
            mutex_lock(&s->cold.lock);
        }
        if (atomic_load_explicit(&s->cold_after, memory_order_relaxed) != after &&
            !s->cold.stop)
            continue;
        /* Off: the longest period, unless store_set_cold_after() wakes it. */
        if (!worker_sleep(&s->cold, NULL, cold_period_ms(after ? after : STORE_COLD_AFTER_MAX)))
            break;
    }
    mutex_unlock(&s->cold.lock);
    return NULL;
}
