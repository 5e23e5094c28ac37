/* SPDX-License-Identifier: MIT */
/*
 * Time for timeouts, intervals and rates: CLOCK_MONOTONIC, which no one can
 * set, in the unit the caller counts in.  The coarse reading costs no
 * system call and is a tick (1 to 4 ms) behind: for stamps and stall
 * checks, not for deadlines.  Condition variables that wait against these
 * deadlines must be made with pthread_condattr_setclock(CLOCK_MONOTONIC).
 */
#ifndef UZRAM_CLOCK_H
#define UZRAM_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t monotonic_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline uint64_t monotonic_ms(void)
{
    return monotonic_usec() / 1000u;
}

static inline uint64_t monotonic_coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ms milliseconds from now on CLOCK_MONOTONIC, for pthread_cond_timedwait(). */
static inline struct timespec deadline_in_ms(long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += ms % 1000 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

#endif
