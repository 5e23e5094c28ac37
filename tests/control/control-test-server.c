/* SPDX-License-Identifier: MIT */
/*
 * A stand-in for uzramd that needs neither root nor FUSE: a small store with
 * some data in it and the real control server on the socket given, so that
 * the real uzramctl can be tested against it.
 *
 *   control-test-server SOCKET [FUSE-FILE]
 *
 * Prints "ready" on stdout once the socket listens; SIGTERM or SIGINT stops
 * it cleanly (the socket is removed).  The device's name is the socket's
 * file name less ".sock".  It has zstd as its recompression codec, and no
 * backing store.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "store.h"

int main(int argc, char **argv)
{
    static unsigned char page[STORE_PAGE_SIZE];
    /* A second codec, so that recompress has something to do; no backing store. */
    struct store_config cfg = { .size = 64u << 20, .recomp_codec = codec_find("zstd") };
    struct control_info info = { .algorithm = "lz4" };
    char name[128];
    sigset_t set;
    int sig;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s SOCKET [FUSE-FILE]\n", argv[0]);
        return 2;
    }
    const char *base = strrchr(argv[1], '/') ? strrchr(argv[1], '/') + 1 : argv[1];
    snprintf(name, sizeof(name), "%s", base);
    char *dot = strstr(name, ".sock");
    if (dot)
        *dot = '\0';
    info.name = name;
    info.fuse_file = argc > 2 ? argv[2] : NULL;

    /* Signals are taken by sigwait() below, not by the server's thread. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct store *s = store_new(&cfg);
    if (!s) {
        fprintf(stderr, "store_new: %s\n", strerror(errno));
        return 1;
    }
    /* Something in every kind of slot: compressible, same-filled, random. */
    for (unsigned i = 0; i < 64; i++) {
        for (unsigned j = 0; j < sizeof(page); j++)
            page[j] = i % 3 == 0 ? (unsigned char)(j / 64) : i % 3 == 1 ? 0 : (unsigned char)(j * 2654435761u >> 13);
        int r = store_write(s, page, sizeof(page), (uint64_t)i * sizeof(page));
        if (r < 0) {
            fprintf(stderr, "store_write: %s\n", strerror(-r));
            return 1;
        }
    }
    struct control *ctl = control_new(argv[1], s, &info, (gid_t)-1, (gid_t)-1);
    if (!ctl) {
        fprintf(stderr, "control_new %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    int r = control_start(ctl);
    if (r < 0) {
        fprintf(stderr, "control_start: %s\n", strerror(-r));
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    sigwait(&set, &sig);
    control_free(ctl);
    store_free(s);
    return 0;
}
