/* SPDX-License-Identifier: MIT */
/*
 * Shared by the backing store's tests: a private temporary directory that
 * is removed on every way out (normal exit, a failed CHECK, the watchdog),
 * and a hook the test can add to for its own cleanup (kill a server,
 * unmount a tmpfs) that runs before the directory goes.
 */
#ifndef UZRAM_BACKINGTEST_H
#define UZRAM_BACKINGTEST_H

#include "test.h"

#include <ftw.h>
#include <sys/stat.h>

#include "backing.h"

static char bt_dir[64];
static void (*bt_extra_cleanup)(void);

static int bt_rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st; (void)type; (void)ftw;
    (void)remove(path);
    return 0;
}

static void bt_cleanup(void)
{
    static int done;
    if (__atomic_exchange_n(&done, 1, __ATOMIC_SEQ_CST))
        return;
    if (bt_extra_cleanup)
        bt_extra_cleanup();
    if (bt_dir[0])
        (void)nftw(bt_dir, bt_rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/*
 * An abort() that no CHECK made (the code under test found a bug in
 * itself) cleans up too.  Not async-signal-safe, but the process is dying.
 */
static void bt_on_abort(int sig)
{
    bt_cleanup();
    raise(sig);
}

/* Short: the NBD test puts a Unix socket in it (108 bytes at most). */
static inline void bt_make_dir(void)
{
    snprintf(bt_dir, sizeof(bt_dir), "/tmp/uzbk.XXXXXX");
    CHECKF(mkdtemp(bt_dir) != NULL, "mkdtemp: %s", strerror(errno));
    atexit(bt_cleanup);
    test_fail_hook = bt_cleanup;
    struct sigaction sa = { .sa_handler = bt_on_abort, .sa_flags = SA_RESETHAND };
    sigaction(SIGABRT, &sa, NULL);
}

/* bt_dir/name, in a static buffer of each call's own. */
#define BT_PATH(name) ({                                              \
        static char p_[128];                                          \
        snprintf(p_, sizeof(p_), "%s/%s", bt_dir, (name));            \
        p_; })

/* Open or fail the test, saying why. */
static inline struct backing *bt_open(const char *spec, uint64_t size)
{
    char err[256];
    struct backing *b = backing_open(spec, size, BACKING_TIMEOUT_DEFAULT_MS, 0, err,
                                     sizeof(err));
    CHECKF(b != NULL, "backing_open(%s): %s (%s)", spec, strerror(errno), err);
    return b;
}

static inline struct backing_stats bt_stats(struct backing *b)
{
    struct backing_stats s;
    backing_get_stats(b, &s);
    return s;
}

#endif
