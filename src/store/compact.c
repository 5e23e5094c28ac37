/* SPDX-License-Identifier: MIT */
/*
 * Automatic compaction (doc/store.md, "Automatic compaction").
 *
 * The compaction thread compacts when the waste passes the threshold and
 * objects were freed since the last compaction, then sleeps a whole
 * period whatever wakes it.  Everything here calls only the pool.
 */
#include "cleanup.h"
#include "store-internal.h"

/* Waste below this is not worth a compaction pass: 16 pages. */
#define COMPACT_MIN_WASTE (16u * PAGE)
#define COMPACT_PERIOD_SEC 1

int64_t compact_now(struct store *s)
{
    uint64_t f = counter_get(&s->frees);
    int64_t r = zs_compact(s->pool);
    atomic_store_explicit(&s->frees_at_compact, f, memory_order_relaxed);
    counter_add(&s->compactions, 1);
    return r;
}

/* Objects freed since the last compaction began: only then can one help. */
bool compact_useful(struct store *s)
{
    return counter_get(&s->frees) != counter_get(&s->frees_at_compact);
}

void compactor_wake(struct store *s)
{
    /* Without compactor.lock: a lost wakeup costs at most one period. */
    pthread_cond_signal(&s->compactor.cond);
}

/* Compact if the waste is worth it (doc/store.md).  True if it ran. */
static bool compact_if_worth(struct store *s)
{
    unsigned pct = atomic_load_explicit(&s->compact_pct, memory_order_relaxed);
    if (pct == 0 || !compact_useful(s))
        return false;
    uint64_t used = mem_used(s);
    uint64_t data = counter_get(&s->compr_data_size);
    if (used <= data)
        return false;
    uint64_t waste = used - data;
    /* waste * 100 cannot overflow: used is far below 2^57. */
    if (waste < COMPACT_MIN_WASTE || waste * 100 <= (uint64_t)pct * used)
        return false;
    compact_now(s);
    return true;
}


/*
 * The compaction thread.  A discard wakes it early, but after a compaction
 * it sleeps a whole period whatever happens: an fstrim sends thousands of
 * discards, and one compaction after them does what one per discard would.
 */
void *compactor_main(void *arg)
{
    struct store *s = arg;
    mutex_lock(&s->compactor.lock);
    while (worker_sleep(&s->compactor, NULL, COMPACT_PERIOD_SEC * 1000)) {
        mutex_unlock(&s->compactor.lock);
        bool ran = compact_if_worth(s);
        mutex_lock(&s->compactor.lock);
        if (ran)
            worker_pause(&s->compactor, NULL, COMPACT_PERIOD_SEC * 1000);
    }
    mutex_unlock(&s->compactor.lock);
    return NULL;
}
