/* SPDX-License-Identifier: MIT */
/*
 * Allocation under the limit (doc/store.md, "The memory limit").
 *
 * A write checks the limit before it allocates, counting the metadata the
 * allocation may add, and again after, frees what it took if either
 * fails, compacts once if objects were freed since the last compaction,
 * and retries once; with a backing store it then waits
 * for eviction, at most STORE_EVICT_WAIT_MS.  Same-filled pages take no
 * memory.  With a reserve, an empty one fails the write with -ENOSPC after
 * a wait for the refill bounded by RESERVE_STALL_MS (reserve.c).
 */
#include <errno.h>

#include "cleanup.h"
#include "store-internal.h"

void mem_used_max_update(struct store *s, uint64_t used)
{
    uint64_t cur = counter_get(&s->mem_used_max);
    while (used > cur &&
           !atomic_compare_exchange_weak_explicit(&s->mem_used_max, &cur, used,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}



/*
 * An object of n bytes within mem_limit (doc/store.md).  Returns 0 and the
 * handle, -ENOSPC, or -ENOMEM.  With wait, and a backing store, a pool at
 * its limit makes the caller wait for eviction (STORE_EVICT_WAIT_MS at
 * most) rather than fail.  May be called with a slot lock held: eviction
 * passes locked slots by.
 */
int obj_alloc(struct store *s, size_t n, uint64_t *ret_h, bool wait)
{
    bool compacted = false, waited = false, gave_up = false, refilled = false;
    uint64_t refill_deadline = 0;
    struct timespec deadline;
    for (;;) {
        uint64_t limit = mem_limit(s);
        /* A table the allocation grows stays grown when the object is freed: count it first. */
        if (limit && mem_used(s) + n + zs_meta_growth(s->pool, n) > limit)
            goto over;
        uint64_t h = zs_malloc(s->pool, n);
        if (!h && !s->reserved)
            return -ENOMEM;
        if (!h) {
            /* The reserve is empty: a refill under way may save the write (doc/store.md). */
            if (reserve_wait(s, &refill_deadline)) {
                if (!refilled)
                    counter_add(&s->reserve_waits, 1);
                refilled = true;
                continue;
            }
            counter_add(&s->reserve_misses, 1);
            return -ENOSPC;
        }
        uint64_t used = mem_used(s);
        if (limit && used > limit) {
            zs_free(s->pool, h);
            goto over;
        }
        mem_used_max_update(s, used);
        if (s->backing && limit && used > watermark(limit, &s->high_pct))
            evict_kick(s);
        *ret_h = h;
        return 0;
    over:
        if (!compacted && compact_useful(s)) {
            compacted = true;
            compact_now(s);
            continue;
        }
        /* After a wait that did not help, one last try: memory may have come back meanwhile. */
        if (!wait || !s->backing || gave_up) {
            counter_add(&s->limit_rejects, 1);
            return -ENOSPC;
        }
        if (!waited) {
            waited = true;
            counter_add(&s->write_waits, 1);
            deadline = deadline_in_ms(STORE_EVICT_WAIT_MS);
        }
        gave_up = !evict_wait(s, &deadline);
    }
}

int page_compress(struct store *s, struct tctx *t, const void *page, const void **ret_src,
                  size_t *ret_n)
{
    *ret_src = page;
    *ret_n = PAGE;
    size_t cap = s->huge_threshold - 1;
    if (cap == 0)
        return 0;
    ssize_t r = codec_compress(t->codec, page, PAGE, t->cbuf, cap);
    if (r > 0) {
        *ret_src = t->cbuf;
        *ret_n = (size_t)r;
    } else if (r != -E2BIG) {
        return -EIO; /* a codec bug; refuse rather than store garbage */
    }
    return 0;
}

/*
 * Turn a page into an entry: same-filled, or compressed (with t's codec, into
 * t->cbuf) and stored in a new object, raw if it does not compress below the
 * huge threshold.  No slot lock needed.  0, -ENOSPC, -ENOMEM, -EIO.
 */
int entry_make(struct store *s, struct tctx *t, const void *page, struct entry *ret,
                      bool wait)
{
    uint64_t w;
    if (page_same(page, &w)) {
        *ret = (struct entry){ .state = SLOT_SAME, .flags = SF_ACCESSED, .val = w };
        return 0;
    }
    const void *src;
    size_t n;
    if (page_compress(s, t, page, &src, &n) < 0)
        return -EIO;
    uint8_t state = n < PAGE ? SLOT_OBJ : SLOT_HUGE;
    uint64_t h;
    int r = obj_alloc(s, n, &h, wait);
    if (r < 0)
        return r;
    r = zs_write(s->pool, h, src, n);
    if (r < 0) {
        zs_free(s->pool, h);
        return -EIO;
    }
    *ret = (struct entry){ .state = state, .flags = SF_ACCESSED, .size = (uint16_t)n, .val = h };
    return 0;
}
