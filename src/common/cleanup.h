/* SPDX-License-Identifier: MIT */
/*
 * Scope-based cleanup for uzram's C code, in the manner of systemd's
 * cleanup-fundamental.h and nbdkit's cleanup.h.  A variable declared with
 * one of these attributes is released when it goes out of scope, on every
 * return path; TAKE_PTR() hands ownership out of the scope.
 */
#ifndef UZRAM_CLEANUP_H
#define UZRAM_CLEANUP_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void cleanup_freep(void *p)
{
    free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(cleanup_freep)

static inline void cleanup_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}
#define _cleanup_close_ _cleanup_(cleanup_closep)

/* Return *pp and clear it, so that the cleanup of its scope does nothing. */
#define TAKE_PTR(p)                        \
    ({                                     \
        __typeof__(p) *_pp = &(p);         \
        __typeof__(p) _p = *_pp;           \
        *_pp = NULL;                       \
        _p;                                \
    })

/* Return fd and set it to -1, so that the cleanup of its scope does nothing. */
#define TAKE_FD(fd)                        \
    ({                                     \
        int *_fdp = &(fd);                 \
        int _fd = *_fdp;                   \
        *_fdp = -1;                        \
        _fd;                               \
    })

/*
 * A failed lock or unlock means a corrupted or misused mutex or rwlock: a
 * bug, not a condition to recover from.
 */
static inline void mutex_lock(pthread_mutex_t *m)
{
    if (pthread_mutex_lock(m) != 0)
        abort();
}

static inline void mutex_unlock(pthread_mutex_t *m)
{
    if (pthread_mutex_unlock(m) != 0)
        abort();
}

/* true with m held, false when someone else holds it. */
static inline bool mutex_trylock(pthread_mutex_t *m)
{
    int r = pthread_mutex_trylock(m);
    if (r != 0 && r != EBUSY)
        abort();
    return r == 0;
}

static inline void rwlock_rdlock(pthread_rwlock_t *rw)
{
    if (pthread_rwlock_rdlock(rw) != 0)
        abort();
}

static inline void rwlock_wrlock(pthread_rwlock_t *rw)
{
    if (pthread_rwlock_wrlock(rw) != 0)
        abort();
}

static inline void rwlock_unlock(pthread_rwlock_t *rw)
{
    if (pthread_rwlock_unlock(rw) != 0)
        abort();
}

static inline void cleanup_mutex_unlockp(pthread_mutex_t **m)
{
    if (*m)
        mutex_unlock(*m);
}

/* Hold m until the end of the enclosing scope. */
#define LOCK_GUARD(m)                                                        \
    pthread_mutex_t *_cleanup_(cleanup_mutex_unlockp) __attribute__((unused)) \
        UZ_UNIQ(_guard_) = (mutex_lock(m), (m))
#define UZ_UNIQ(x) UZ_CAT(x, __COUNTER__)
#define UZ_CAT(a, b) UZ_CAT2(a, b)
#define UZ_CAT2(a, b) a##b

#endif
