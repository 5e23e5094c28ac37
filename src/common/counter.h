/* SPDX-License-Identifier: MIT */
/*
 * Statistics counters: 64-bit atomics with relaxed ordering.  Each is exact
 * (no update is lost) but ordered against nothing else, which is all a
 * statistic needs; a reader sees each counter as of some recent moment,
 * not a snapshot of all of them at once.
 */
#ifndef UZRAM_COUNTER_H
#define UZRAM_COUNTER_H

#include <stdatomic.h>
#include <stdint.h>

static inline void counter_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline void counter_sub(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_sub_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t counter_get(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

#endif
