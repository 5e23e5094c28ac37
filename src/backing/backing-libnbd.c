/* SPDX-License-Identifier: MIT */
/*
 * libnbd, loaded with dlopen() by the first NBD backing store opened, not
 * linked (doc/backing.md, "Loading libnbd").  It is loaded once per process
 * and never unloaded, so its functions stay valid for as long as any
 * handle might use them; a failure to load is kept too, and every later
 * open reports the same reason.  Each symbol looked up is one libnbd has
 * had since 1.0.  Only the asynchronous calls are used, with nbd_poll()'s
 * timeout, so that no wait for a server is without a deadline: the
 * synchronous ones wait for ever (backing-nbd.c).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "backing-internal.h"

struct nbdlib nbdlib;

static pthread_once_t nbdlib_once = PTHREAD_ONCE_INIT;
static char nbdlib_error[160];      /* why it could not be loaded; "" if it was */

static void nbdlib_dlopen(void)
{
    void *h = dlopen("libnbd.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(nbdlib_error, sizeof(nbdlib_error),
                 "cannot load libnbd (Debian: apt install libnbd0): %s", dlerror());
        return;
    }
#define NBDLIB_SYM(name)                                                                 \
    do {                                                                                 \
        if (!(*(void **)&nbdlib.name = dlsym(h, "nbd_" #name))) {                        \
            snprintf(nbdlib_error, sizeof(nbdlib_error), "libnbd has no nbd_%s", #name); \
            return;                                                                      \
        }                                                                                \
    } while (0)
    NBDLIB_SYM(create);
    NBDLIB_SYM(get_errno);
    NBDLIB_SYM(get_error);
    NBDLIB_SYM(is_read_only);
    NBDLIB_SYM(get_size);
    NBDLIB_SYM(get_block_size);
    NBDLIB_SYM(close);
    NBDLIB_SYM(can_trim);
    NBDLIB_SYM(can_flush);
    NBDLIB_SYM(poll);
    NBDLIB_SYM(aio_connect_uri);
    NBDLIB_SYM(aio_is_connecting);
    NBDLIB_SYM(aio_is_ready);
    NBDLIB_SYM(aio_is_dead);
    NBDLIB_SYM(aio_is_closed);
    NBDLIB_SYM(aio_pread);
    NBDLIB_SYM(aio_pwrite);
    NBDLIB_SYM(aio_trim);
    NBDLIB_SYM(aio_flush);
    NBDLIB_SYM(aio_command_completed);
    NBDLIB_SYM(aio_disconnect);
#undef NBDLIB_SYM
}

int nbdlib_load(char *err, size_t errlen)
{
    pthread_once(&nbdlib_once, nbdlib_dlopen);
    if (nbdlib_error[0])
        return open_fail(err, errlen, ENOTSUP, "%s", nbdlib_error);
    return 0;
}
