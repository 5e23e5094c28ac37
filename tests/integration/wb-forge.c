/* SPDX-License-Identifier: MIT */
/*
 * wb-forge: the attack of issue 12's finding 6, for test-writeback-seal.sh.
 *
 *   wb-forge FILE BLOCK
 *       Replace the 4 KiB block BLOCK of FILE with a different block that
 *       has the same 24-bit checksum as the one there, as uzram computed
 *       it before blocks were sealed (a multiply-xorshift over 8-byte
 *       words, unkeyed: anyone can compute it).  Prints "tries=N".
 *
 * Before sealing, the store kept that checksum in the slot and returned a
 * raw page whose block matched it: a forged page read back as the user's
 * data.  Sealed, the forged block must read as EIO.  The first byte is
 * flipped and the last word searched, from the hash state after the
 * others, so each try costs one word: at most a few million tries.
 *
 * Exit status: 0 forged, 1 could not (I/O, no match in 2^32 tries), 2 bad
 * arguments.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK 4096u

/* The old sum of len bytes at p, the multiply-xorshift that uzram used. */
static uint64_t sum_prefix(const unsigned char *p, size_t words, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ len;
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, p + 8 * i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    return h;
}

static uint32_t sum_finish(uint64_t h, uint64_t last)
{
    h = (h ^ last) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
    h ^= h >> 29;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 32;
    return (uint32_t)(h & 0xffffff);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: wb-forge FILE BLOCK\n");
        return 2;
    }
    uint64_t blk = strtoull(argv[2], NULL, 10);
    int fd = open(argv[1], O_RDWR | O_CLOEXEC);
    unsigned char b[BLOCK];
    if (fd < 0 || pread(fd, b, BLOCK, (off_t)(blk * BLOCK)) != (ssize_t)BLOCK) {
        perror(argv[1]);
        return 1;
    }
    uint64_t last;
    memcpy(&last, b + BLOCK - 8, 8);
    uint32_t want = sum_finish(sum_prefix(b, BLOCK / 8 - 1, BLOCK), last);
    b[0] ^= 0xff;
    uint64_t h = sum_prefix(b, BLOCK / 8 - 1, BLOCK);
    for (uint64_t t = 0; t < (UINT64_C(1) << 32); t++) {
        if (sum_finish(h, t) != want)
            continue;
        memcpy(b + BLOCK - 8, &t, 8);
        if (pwrite(fd, b, BLOCK, (off_t)(blk * BLOCK)) != (ssize_t)BLOCK) {
            perror(argv[1]);
            return 1;
        }
        printf("tries=%" PRIu64 "\n", t + 1);
        close(fd);
        return 0;
    }
    fprintf(stderr, "wb-forge: no match\n");
    return 1;
}
