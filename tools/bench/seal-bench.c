/* SPDX-License-Identifier: MIT */
/*
 * seal-bench: what sealing and opening a written-back block costs, the
 * cipher alone (src/backing/backing-crypt.c), without the backing store's
 * I/O around it: MiB/s of one thread sealing, then opening, blocks of a
 * full page (a raw page) and of 1400 bytes (a compressed one).  The
 * figures in doc/backing.md, "What it costs", come from it; evict-bench
 * measures the same cost inside eviction.
 *
 *   seal-bench [blocks per measure, default 200000] [rounds, default 3]
 *
 * Each figure is the best of its rounds: on a shared machine the best is
 * the one least disturbed.  Exit status 0, or 1 when the cipher failed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backing-internal.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Blocks of the seal table the measures cycle over: the table stays in cache. */
#define BLOCKS 1024u

static unsigned char page[BACKING_BLOCK_SIZE], sealed[BACKING_BLOCK_SIZE];

/* Seal n blocks of len bytes, or open them again: MiB/s, or a negative number on failure. */
static double measure(struct backing_crypt *c, size_t len, uint64_t n, int open)
{
    struct backing_seal_pending p;
    /* The block that every open opens, sealed once. */
    if (backing_crypt_seal(c, 0, page, len, &p) < 0)
        return -1;
    backing_crypt_commit(c, 0, &p);
    memcpy(sealed, p.sealed, len);
    double t = now();
    for (uint64_t i = 0; i < n; i++) {
        if (!open) {
            if (backing_crypt_seal(c, i % BLOCKS, page, len, &p) < 0)
                return -1;
        } else {
            /* The ciphertext is opened in place: give it back each time. */
            memcpy(page, sealed, len);
            if (backing_crypt_open(c, 0, page, len) < 0)
                return -1;
        }
    }
    t = now() - t;
    return (double)n * (double)len / t / (1024.0 * 1024.0);
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
    unsigned rounds = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 3;
    if (n == 0 || rounds == 0) {
        fprintf(stderr, "usage: seal-bench [blocks per measure] [rounds]\n");
        return 2;
    }
    struct backing_crypt *c = backing_crypt_new(BLOCKS);
    if (!c) {
        perror("seal-bench: backing_crypt_new");
        return 1;
    }
    for (size_t i = 0; i < sizeof(page); i++)
        page[i] = (unsigned char)(i * 131 >> 3);
    static const size_t lens[] = { BACKING_BLOCK_SIZE, 1400 };
    printf("| block | seal MiB/s | open MiB/s (with a copy of the block) |\n|---|---|---|\n");
    for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
        double best[2] = { 0, 0 };
        for (unsigned r = 0; r < rounds; r++) {
            for (int open = 0; open < 2; open++) {
                double m = measure(c, lens[l], n, open);
                if (m < 0) {
                    fprintf(stderr, "seal-bench: the cipher failed\n");
                    backing_crypt_free(c);
                    return 1;
                }
                if (m > best[open])
                    best[open] = m;
            }
        }
        printf("| %zu bytes | %.0f | %.0f |\n", lens[l], best[0], best[1]);
    }
    backing_crypt_free(c);
    return 0;
}
