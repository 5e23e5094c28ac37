/* SPDX-License-Identifier: MIT */
/*
 * The backing store where root is needed to set it up: a file on a tmpfs
 * that fills up (the full local tier), and a block device (a loop device).
 * Skips (77) when not root or when mounting or losetup is not possible.
 */
#include "backingtest.h"

#include <sys/mount.h>

static char mnt[128];
static char loopdev[64];

static void device_cleanup(void)
{
    if (loopdev[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "losetup -d %s", loopdev);
        if (system(cmd) != 0)
            fprintf(stderr, "could not detach %s\n", loopdev);
        loopdev[0] = '\0';
    }
    if (mnt[0]) {
        if (umount2(mnt, MNT_DETACH) < 0)
            fprintf(stderr, "could not unmount %s: %s\n", mnt, strerror(errno));
        mnt[0] = '\0';
    }
}

/*
 * 1 MiB of backing file on a 256 KiB tmpfs: backing_open succeeds (the
 * file is sparse), writes succeed until the tmpfs is full and then fail
 * with -ENOSPC, counted, while everything written before reads back.
 * Freeing blocks with discard gives the space back.
 */
static void test_full_tmpfs(void)
{
    snprintf(mnt, sizeof(mnt), "%s/mnt", bt_dir);
    CHECK_EQ(mkdir(mnt, 0700), 0);
    if (mount("tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=256k,mode=0700") < 0) {
        int e = errno;
        mnt[0] = '\0';
        if (e == EPERM || e == EACCES) {
            printf("SKIP cannot mount a tmpfs: %s\n", strerror(e));
            exit(TEST_SKIP);
        }
        CHECKF(0, "mount tmpfs: %s", strerror(e));
    }
    char path[160];
    snprintf(path, sizeof(path), "%s/backing", mnt);
    struct backing *b = bt_open(path, 1024 * 1024);
    CHECK_EQU(backing_blocks(b), 256);

    unsigned char in[4096], out[4096];
    uint64_t good = 0, blk = 0;
    int r = 0;
    for (;;) {
        CHECK_EQ(backing_alloc(b, &blk), 0);
        test_pattern(in, sizeof(in), blk, 1);
        r = backing_write(b, blk, in, sizeof(in));
        if (r < 0)
            break;
        good++;
    }
    printf("   %ju blocks written before the tmpfs filled\n", (uintmax_t)good);
    CHECK_EQ(r, -ENOSPC);
    /* 256 KiB is 64 pages; the tmpfs takes none for an empty sparse file. */
    CHECKF(good >= 32 && good <= 64, "%ju blocks fit in 256 KiB", (uintmax_t)good);
    struct backing_stats s = bt_stats(b);
    CHECK_EQU(s.write_errors, 1);
    CHECK_EQ(s.last_error, -ENOSPC);
    CHECK_EQU(s.writes, good);
    CHECK_EQU(s.blocks_used, good + 1);   /* the failed block is still the caller's */

    /* Small writes fail too, and are counted; nothing crashes. */
    CHECK_EQ(backing_write(b, blk, in, 100), -ENOSPC);
    uint64_t other;
    CHECK_EQ(backing_alloc(b, &other), 0);
    CHECK_EQ(backing_write(b, other, in, 1), -ENOSPC);
    CHECK_EQU(bt_stats(b).write_errors, 3);
    backing_free(b, other, true);
    backing_free(b, blk, true);

    /* What was written reads back. */
    for (uint64_t i = 0; i < good; i++) {
        test_pattern(in, sizeof(in), i, 1);
        CHECK_EQ(backing_read(b, i, out, sizeof(out)), 0);
        CHECKF(memcmp(in, out, sizeof(out)) == 0, "block %ju after ENOSPC", (uintmax_t)i);
    }
    CHECK_EQU(bt_stats(b).read_errors, 0);

    /* Discarding gives the tmpfs its pages back: writes work again. */
    for (uint64_t i = 0; i < 8; i++)
        backing_free(b, i, true);
    CHECK_EQ(backing_alloc(b, &blk), 0);
    CHECK_EQ(backing_write(b, blk, in, sizeof(in)), 0);
    CHECK_EQ(backing_flush(b), 0);
    backing_close(b);
    CHECK_EQ(umount2(mnt, 0), 0);
    mnt[0] = '\0';
}

static void test_loop_device(void)
{
    const char *img = BT_PATH("loop.img");
    int fd = open(img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK_EQ(ftruncate(fd, 4 * 1024 * 1024), 0);
    close(fd);

    char cmd[256];
    snprintf(cmd, sizeof(cmd), "losetup --find --show %s 2>&1", img);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    char line[128] = "";
    char *got = fgets(line, sizeof(line), f);
    int rc = pclose(f);
    if (!got || rc != 0 || strncmp(line, "/dev/loop", 9) != 0) {
        printf("SKIP no loop device: %s\n", got ? line : "(no output)");
        exit(TEST_SKIP);
    }
    line[strcspn(line, "\n")] = '\0';
    snprintf(loopdev, sizeof(loopdev), "%s", line);

    /* The device's size, less its header block, caps the blocks; so does the store's. */
    struct backing *b = bt_open(loopdev, 64ull * 1024 * 1024);
    CHECK_EQU(backing_blocks(b), 1023);
    backing_close(b);
    b = bt_open(loopdev, 1024 * 1024);
    CHECK_EQU(backing_blocks(b), 256);

    unsigned char in[4096], out[4096];
    for (uint64_t i = 0; i < 16; i++) {
        uint64_t blk;
        CHECK_EQ(backing_alloc(b, &blk), 0);
        CHECK_EQU(blk, i);
        size_t len = 1 + (size_t)(i * 273 % 4096);
        test_pattern(in, len, blk, 2);
        CHECK_EQ(backing_write(b, blk, in, len), 0);
        CHECK_EQ(backing_read(b, blk, out, len), 0);
        CHECK(memcmp(in, out, len) == 0);
    }
    CHECK_EQ(backing_flush(b), 0);
    for (uint64_t i = 0; i < 16; i++)
        backing_free(b, i, true);   /* BLKDISCARD; its errors are ignored */
    CHECK_EQU(bt_stats(b).blocks_used, 0);
    CHECK_EQU(bt_stats(b).write_errors + bt_stats(b).read_errors, 0);
    backing_close(b);
    device_cleanup();
}

int main(void)
{
    if (geteuid() != 0) {
        printf("SKIP needs root (mount, losetup)\n");
        return TEST_SKIP;
    }
    bt_make_dir();
    bt_extra_cleanup = device_cleanup;
    RUN_TEST(test_full_tmpfs);
    RUN_TEST(test_loop_device);
    return 0;
}
