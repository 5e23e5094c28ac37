/* SPDX-License-Identifier: MIT */
/*
 * The backing store on a regular file: open and its refusals, the block
 * allocator (next-fit, full, wrap), reads and writes of every length, hole
 * punching, direct I/O under memory pressure, argument checks, counters,
 * and threads sharing one store.
 */
#include "backingtest.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>

#define MiB (1024ull * 1024)

/* A file backing_open() created is gone after backing_close(). */
static void bt_check_removed(const char *p)
{
    struct stat st;
    CHECKF(lstat(p, &st) < 0 && errno == ENOENT, "%s outlived backing_close()", p);
}

static void test_open_creates_sparse(void)
{
    const char *p = BT_PATH("new");
    struct backing *b = bt_open(p, 1 * MiB);
    struct stat st;
    CHECK_EQ(stat(p, &st), 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK_EQ(st.st_mode & 07777, 0600);
    /* The header block, then the store's 1 MiB. */
    CHECK_EQU(st.st_size, 1 * MiB + 4096);
    CHECKF(st.st_blocks <= 8,
           "a new backing file should be sparse but for its header, has %jd blocks",
           (intmax_t)st.st_blocks);
    CHECK_EQU(backing_blocks(b), 256);
    CHECK(strcmp(backing_spec(b), p) == 0);
    struct backing_stats s = bt_stats(b);
    CHECK_EQU(s.blocks, 256);
    CHECK_EQU(s.blocks_used, 0);
    CHECK(s.connected);
    backing_close(b);
    bt_check_removed(p);
}

/* Not a multiple of the block size: the tail is never handed out. */
static void test_open_odd_size(void)
{
    const char *p = BT_PATH("odd");
    struct backing *b = bt_open(p, 10 * 4096 + 100);
    CHECK_EQU(backing_blocks(b), 10);
    backing_close(b);
    bt_check_removed(p);
}

static void make_file(const char *p, uint64_t size)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

static void test_existing_sizes(void)
{
    struct stat st;
    /* Larger than the store needs: kept, only the first size bytes used. */
    const char *big = BT_PATH("big");
    make_file(big, 2 * MiB);
    struct backing *b = bt_open(big, 1 * MiB);
    CHECK_EQU(backing_blocks(b), 256);
    backing_close(b);
    CHECK_EQ(stat(big, &st), 0);
    CHECK_EQU(st.st_size, 2 * MiB);
    CHECK_EQ(unlink(big), 0);

    /* Shorter, and data in its first block: refused without a header. */
    const char *small = BT_PATH("small");
    int fd = open(small, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, "hello", 5), 5);
    close(fd);
    char err[256];
    CHECK(backing_open(small, 1 * MiB, BACKING_TIMEOUT_DEFAULT_MS, 0, err, sizeof(err)) ==
          NULL);
    CHECK_EQ(errno, EEXIST);
    CHECKF(strstr(err, "--backing-force") != NULL,
           "the reason does not name --backing-force: %s", err);
    printf("   refused %s: %s\n", small, err);
    CHECK_EQ(stat(small, &st), 0);
    CHECK_EQU(st.st_size, 5); /* untouched */
    /* Forced: adopted, extended, the header written over what was there. */
    b = backing_open(small, 1 * MiB, BACKING_TIMEOUT_DEFAULT_MS, BACKING_FORCE, err,
                     sizeof(err));
    CHECKF(b != NULL, "BACKING_FORCE: %s", err);
    CHECK_EQU(backing_blocks(b), 256);
    backing_close(b);
    char buf[8];
    fd = open(small, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    CHECK_EQ(pread(fd, buf, 8, 0), 8);
    close(fd);
    CHECK(memcmp(buf, "UZRAMBK\n", 8) == 0);
    CHECK_EQ(stat(small, &st), 0);
    CHECK_EQU(st.st_size, 1 * MiB + 4096);
    CHECK_EQ((int)(st.st_mode & 07777), 0644);
    /* With the header: adopted without force. */
    b = bt_open(small, 1 * MiB);
    CHECK_EQU(backing_blocks(b), 256);
    backing_close(b);
    /*
     * Data past the first block only (zeros there): adopted too, and the
     * open discards every block of the store's, so the data is gone.
     */
    fd = open(small, O_RDWR | O_CLOEXEC);
    CHECK(fd >= 0);
    CHECK_EQ(pwrite(fd, (char[4096]){ 0 }, 4096, 0), 4096);
    CHECK_EQ(pwrite(fd, "data", 4, 8192), 4);
    CHECK_EQ(pwrite(fd, "more", 4, 1 * MiB), 4);
    b = bt_open(small, 1 * MiB);
    CHECK_EQ(pread(fd, buf, 4, 8192), 4);
    CHECK(memcmp(buf, "\0\0\0\0", 4) == 0);
    CHECK_EQ(pread(fd, buf, 4, 1 * MiB), 4);
    CHECK(memcmp(buf, "\0\0\0\0", 4) == 0);
    CHECK_EQ(pread(fd, buf, 8, 0), 8);
    CHECK(memcmp(buf, "UZRAMBK\n", 8) == 0);
    backing_close(b);
    close(fd);
    CHECK_EQ(unlink(small), 0);
}

static void expect_refused(const char *spec, uint64_t size, int want_errno)
{
    char err[256] = "unset";
    errno = 0;
    struct backing *b = backing_open(spec, size, BACKING_TIMEOUT_DEFAULT_MS, 0, err,
                                     sizeof(err));
    CHECKF(b == NULL, "backing_open(%s) should have failed", spec);
    CHECKF(errno == want_errno, "backing_open(%s): errno %s, want %s", spec,
           strerrorname_np(errno) ?: "?", strerrorname_np(want_errno) ?: "?");
    CHECKF(err[0] != '\0' && strcmp(err, "unset") != 0, "no reason for %s", spec);
    CHECKF(strstr(err, spec) == NULL || spec[0] == '\0', "the reason repeats the spec: %s", err);
    printf("   refused %s: %s\n", spec, err);
    /* err may be NULL. */
    CHECK(backing_open(spec, size, BACKING_TIMEOUT_DEFAULT_MS, 0, NULL, 0) == NULL);
    CHECK_EQ(errno, want_errno);
}

/*
 * Whose file it is (backing-file.c): a symbolic link is refused, not
 * followed; an open file is locked against a second open, which is refused
 * with EBUSY; a file that was there already is kept at close.
 */
static void test_ownership(void)
{
    const char *target = BT_PATH("target"), *link = BT_PATH("link");
    make_file(target, 1 * MiB);
    CHECK_EQ(symlink(target, link), 0);
    expect_refused(link, 1 * MiB, ELOOP);
    CHECK_EQ(unlink(link), 0);

    struct backing *b = bt_open(target, 1 * MiB);
    expect_refused(target, 1 * MiB, EBUSY);
    backing_close(b);
    b = bt_open(target, 1 * MiB); /* free again */
    backing_close(b);
    CHECK_EQ(unlink(target), 0); /* kept: it was not ours */
}

static void test_bad_spec(void)
{
    expect_refused(bt_dir, 1 * MiB, EINVAL);                     /* a directory */
    expect_refused("/nonexistent/dir/file", 1 * MiB, ENOENT);
    /* A missing device is not created as a file on /dev's tmpfs. */
    expect_refused("/dev/uzram-no-such-disk", 1 * MiB, ENOENT);
    CHECKF(access("/dev/uzram-no-such-disk", F_OK) < 0, "a file was created under /dev");
    expect_refused("/dev/null", 1 * MiB, EINVAL);                /* a char device */
    expect_refused("", 1 * MiB, EINVAL);
    const char *p = BT_PATH("tiny");
    expect_refused(p, 4095, EINVAL);                             /* under a block */
    struct stat st;
    CHECKF(stat(p, &st) < 0 && errno == ENOENT, "a refused open left %s behind", p);
    /* A FIFO is refused before it is opened (which could block or take data). */
    const char *fifo = BT_PATH("fifo");
    CHECK_EQ(mkfifo(fifo, 0600), 0);
    expect_refused(fifo, 1 * MiB, EINVAL);
    CHECK_EQ(unlink(fifo), 0);
}

static void test_alloc_next_fit(void)
{
    const char *p = BT_PATH("nf");
    struct backing *b = bt_open(p, 64 * 1024);   /* 16 blocks */
    CHECK_EQU(backing_blocks(b), 16);
    uint64_t blk;
    for (uint64_t i = 0; i < 8; i++) {
        CHECK_EQ(backing_alloc(b, &blk), 0);
        CHECK_EQU(blk, i);
    }
    /* Freed behind the cursor: next-fit keeps going forward. */
    backing_free(b, 2, false);
    backing_free(b, 3, false);
    CHECK_EQ(backing_alloc(b, &blk), 0);
    CHECK_EQU(blk, 8);
    for (uint64_t i = 9; i < 16; i++) {
        CHECK_EQ(backing_alloc(b, &blk), 0);
        CHECK_EQU(blk, i);
    }
    /* The cursor wraps and finds the holes. */
    CHECK_EQ(backing_alloc(b, &blk), 0);
    CHECK_EQU(blk, 2);
    CHECK_EQ(backing_alloc(b, &blk), 0);
    CHECK_EQU(blk, 3);
    CHECK_EQ(backing_alloc(b, &blk), -ENOSPC);
    CHECK_EQU(bt_stats(b).blocks_used, 16);
    /* Full: one block freed is the one handed out next. */
    backing_free(b, 5, true);
    CHECK_EQU(bt_stats(b).blocks_used, 15);
    CHECK_EQ(backing_alloc(b, &blk), 0);
    CHECK_EQU(blk, 5);
    CHECK_EQ(backing_alloc(b, &blk), -ENOSPC);

    /* Freeing a free block, or one out of range, changes nothing. */
    backing_free(b, 7, false);
    backing_free(b, 7, false);
    backing_free(b, 16, true);
    backing_free(b, UINT64_MAX, true);
    CHECK_EQU(bt_stats(b).blocks_used, 15);
    backing_close(b);
    bt_check_removed(p);
}

/* Across several bitmap words, with a tail that is not a whole word. */
static void test_alloc_words(void)
{
    const char *p = BT_PATH("words");
    const uint64_t n = 200;
    struct backing *b = bt_open(p, n * 4096);
    uint64_t blk;
    for (uint64_t i = 0; i < n; i++) {
        CHECK_EQ(backing_alloc(b, &blk), 0);
        CHECK_EQU(blk, i);
    }
    CHECK_EQ(backing_alloc(b, &blk), -ENOSPC);
    /* Free every third; they come back in order after the wrap, and
     * nothing at or past n ever does. */
    for (uint64_t i = 0; i < n; i += 3)
        backing_free(b, i, false);
    for (uint64_t i = 0; i < n; i += 3) {
        CHECK_EQ(backing_alloc(b, &blk), 0);
        CHECK_EQU(blk, i);
    }
    CHECK_EQ(backing_alloc(b, &blk), -ENOSPC);
    backing_close(b);
    bt_check_removed(p);
}

/*
 * Every length a block takes, on a file that was there before (so that it
 * stays when closed): reopened, the data is there but sealed under a key
 * that is gone.
 */
static void test_roundtrip(void)
{
    const char *p = BT_PATH("rt");
    make_file(p, 1 * MiB);
    struct backing *b = bt_open(p, 1 * MiB);
    unsigned char in[4096], out[4096];
    for (size_t len = 1; len <= 4096; len++) {
        uint64_t blk = len % 256;
        test_pattern(in, len, blk, len);
        CHECK_EQ(backing_write(b, blk, in, len), 0);
        memset(out, 0xa5, sizeof(out));
        CHECK_EQ(backing_read(b, blk, out, len), 0);
        CHECKF(memcmp(in, out, len) == 0, "len %zu differs", len);
        /* The read wrote len bytes and no more. */
        for (size_t i = len; i < sizeof(out); i++)
            CHECKF(out[i] == 0xa5, "read of %zu bytes wrote byte %zu", len, i);
    }
    /* Every block keeps its own data: the last write of each. */
    for (size_t len = 4096 - 255; len <= 4096; len++) {
        uint64_t blk = len % 256;
        test_pattern(in, len, blk, len);
        CHECK_EQ(backing_read(b, blk, out, len), 0);
        CHECKF(memcmp(in, out, len) == 0, "block %ju was overwritten", (uintmax_t)blk);
    }
    CHECK_EQ(backing_flush(b), 0);
    struct backing_stats s = bt_stats(b);
    CHECK_EQU(s.writes, 4096);
    CHECK_EQU(s.reads, 4096 + 256);
    CHECK_EQU(s.read_errors, 0);
    CHECK_EQU(s.write_errors, 0);
    CHECK_EQ(s.last_error, 0);
    backing_close(b);

    /* Reopened: a new key, and what the last open sealed does not open. */
    b = bt_open(p, 1 * MiB);
    CHECK_EQ(backing_read(b, 0, out, 4096), -EBADMSG);
    backing_close(b);
    CHECK_EQ(unlink(p), 0);
}

/* How many of the file's blocks 0 to npages - 1 are in the page cache. */
static unsigned cached_pages(const char *path, unsigned npages)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    /* Blocks 0 to npages - 1, after the header (which goes through the cache). */
    void *m = mmap(NULL, (size_t)npages * 4096, PROT_READ, MAP_SHARED, fd, 4096);
    CHECK(m != MAP_FAILED);
    unsigned char v[256];
    CHECK(npages <= sizeof(v));
    CHECK_EQ(mincore(m, (size_t)npages * 4096, v), 0);
    unsigned n = 0;
    for (unsigned i = 0; i < npages; i++)
        n += v[i] & 1;
    munmap(m, (size_t)npages * 4096);
    close(fd);
    return n;
}

/*
 * Direct I/O under memory pressure (doc/backing.md, "The page cache, or
 * not"):
 * with the pressure on, writes and reads bypass the page cache and keep
 * the data; with it off they go through it again; and data written one way
 * reads back the other.  The test's directory is on /tmp: where its file
 * system refuses O_DIRECT (tmpfs), backing_use_direct() says so and
 * nothing changes, which is checked instead.
 */
static void test_direct(void)
{
    const char *p = BT_PATH("direct");
    struct backing *b = bt_open(p, 1 * MiB);
    unsigned char in[4096], out[4096];
    int r = backing_use_direct(b);
    if (r == -EINVAL) {
        printf("no direct I/O on this file system: checking the fallback\n");
        CHECK(!bt_stats(b).direct);
        backing_set_pressure(b, true);
        test_pattern(in, 1000, 1, 1);
        CHECK_EQ(backing_write(b, 1, in, 1000), 0);
        CHECK_EQ(backing_read(b, 1, out, 1000), 0);
        CHECK(memcmp(in, out, 1000) == 0);
        backing_close(b);
        bt_check_removed(p);
        return;
    }
    CHECK_EQ(r, 0);
    CHECK_EQ(backing_use_direct(b), 0);     /* twice is once */
    CHECK_EQ(backing_thread_prepare(b), 0);
    CHECK(bt_stats(b).direct && !bt_stats(b).pressure);

    /* Pressure: 64 blocks of every length written and read, none cached. */
    backing_set_pressure(b, true);
    CHECK(bt_stats(b).pressure);
    for (uint64_t blk = 0; blk < 64; blk++) {
        size_t len = 1 + blk * 64;
        test_pattern(in, len, blk, 7);
        CHECK_EQ(backing_write(b, blk, in, len), 0);
        memset(out, 0xa5, sizeof(out));
        CHECK_EQ(backing_read(b, blk, out, len), 0);
        CHECKF(memcmp(in, out, len) == 0, "block %ju read back wrong", (uintmax_t)blk);
        for (size_t i = len; i < sizeof(out); i++)
            CHECKF(out[i] == 0xa5, "a read of %zu bytes wrote byte %zu", len, i);
    }
    unsigned cached = cached_pages(p, 64);
    CHECKF(cached == 0, "%u of 64 pages written and read with the pressure on are cached", cached);

    /* No pressure: the page cache again, and both ways agree. */
    backing_set_pressure(b, false);
    test_pattern(in, 4096, 100, 8);
    CHECK_EQ(backing_write(b, 100, in, 4096), 0);
    CHECK(cached_pages(p, 128) > 0);
    backing_set_pressure(b, true);
    CHECK_EQ(backing_read(b, 100, out, 4096), 0);   /* written cached, read direct */
    CHECK(memcmp(in, out, 4096) == 0);
    test_pattern(in, 4096, 101, 9);
    CHECK_EQ(backing_write(b, 101, in, 4096), 0);
    backing_set_pressure(b, false);
    CHECK_EQ(backing_read(b, 101, out, 4096), 0);   /* written direct, read cached */
    CHECK(memcmp(in, out, 4096) == 0);
    CHECK_EQU(bt_stats(b).write_errors + bt_stats(b).read_errors, 0);
    backing_close(b);
    bt_check_removed(p);
}

static void test_bad_args(void)
{
    const char *p = BT_PATH("args");
    struct backing *b = bt_open(p, 64 * 1024);
    char buf[4097] = { 0 };
    CHECK_EQ(backing_write(b, 16, buf, 1), -EINVAL);
    CHECK_EQ(backing_read(b, 16, buf, 1), -EINVAL);
    CHECK_EQ(backing_write(b, UINT64_MAX, buf, 1), -EINVAL);
    CHECK_EQ(backing_read(b, UINT64_MAX / 4096 + 1, buf, 1), -EINVAL);
    CHECK_EQ(backing_write(b, 0, buf, 0), -EINVAL);
    CHECK_EQ(backing_read(b, 0, buf, 0), -EINVAL);
    CHECK_EQ(backing_write(b, 0, buf, 4097), -EINVAL);
    CHECK_EQ(backing_read(b, 0, buf, 4097), -EINVAL);
    CHECK_EQ(backing_write(b, 15, buf, 4096), 0);
    struct backing_stats s = bt_stats(b);
    CHECK_EQU(s.write_errors, 4);
    CHECK_EQU(s.read_errors, 4);
    CHECK_EQU(s.writes, 1);
    CHECK_EQ(s.last_error, -EINVAL);
    backing_close(b);
    bt_check_removed(p);
}

static void test_discard_punches(void)
{
    const char *p = BT_PATH("punch");
    struct backing *b = bt_open(p, 1 * MiB);
    unsigned char buf[4096];
    memset(buf, 0x5a, sizeof(buf));
    uint64_t blk;
    for (int i = 0; i < 64; i++) {
        CHECK_EQ(backing_alloc(b, &blk), 0);
        CHECK_EQ(backing_write(b, blk, buf, sizeof(buf)), 0);
    }
    CHECK_EQ(backing_flush(b), 0);
    struct stat st;
    CHECK_EQ(stat(p, &st), 0);
    blkcnt_t full = st.st_blocks;
    CHECKF(full >= 64 * 8, "64 written blocks take only %jd sectors", (intmax_t)full);

    /* Freed without discard: the data stays on disk. */
    for (uint64_t i = 0; i < 32; i++)
        backing_free(b, i, false);
    CHECK_EQ(stat(p, &st), 0);
    CHECK_EQ(st.st_blocks, full);
    /* A freed block no longer opens, whatever the file still holds. */
    CHECK_EQ(backing_read(b, 0, buf, sizeof(buf)), -EBADMSG);

    /* Freed with discard: a hole, which reads as zeros. */
    for (uint64_t i = 32; i < 64; i++)
        backing_free(b, i, true);
    CHECK_EQ(stat(p, &st), 0);
    CHECKF(st.st_blocks <= full - 32 * 8, "punching 32 blocks left %jd of %jd sectors",
           (intmax_t)st.st_blocks, (intmax_t)full);
    CHECK_EQU(st.st_size, 1 * MiB + 4096);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    CHECK_EQ(pread(fd, buf, sizeof(buf), (40 + 1) * 4096), (ssize_t)sizeof(buf));
    close(fd);
    for (size_t i = 0; i < sizeof(buf); i++)
        CHECK_EQ(buf[i], 0);
    CHECK_EQU(bt_stats(b).blocks_used, 0);
    backing_close(b);
    bt_check_removed(p);
}

/*
 * Threads allocate, write, read back and free at once.  Any block handed
 * to two threads shows up as a mismatch; a lost or doubled count shows in
 * blocks_used at the end.
 */
#define T_THREADS 4
#define T_ROUNDS 3000
#define T_HELD 8

struct t_arg {
    struct backing *b;
    unsigned id;
};

static void *t_worker(void *p)
{
    struct t_arg *a = p;
    struct test_rng rng;
    rng_seed(&rng, a->id);
    uint64_t held[T_HELD];
    size_t lens[T_HELD];
    unsigned nheld = 0;
    unsigned char in[4096], out[4096];
    for (unsigned r = 0; r < T_ROUNDS; r++) {
        if (nheld < T_HELD && !rng_one_in(&rng, 3)) {
            uint64_t blk;
            int e = backing_alloc(a->b, &blk);
            if (e == -ENOSPC)
                continue;
            CHECK_EQ(e, 0);
            size_t len = (size_t)rng_range(&rng, 1, 4096);
            test_pattern(in, len, blk, a->id);
            CHECK_EQ(backing_write(a->b, blk, in, len), 0);
            held[nheld] = blk;
            lens[nheld++] = len;
        } else if (nheld > 0) {
            unsigned i = (unsigned)rng_below(&rng, nheld);
            test_pattern(in, lens[i], held[i], a->id);
            CHECK_EQ(backing_read(a->b, held[i], out, lens[i]), 0);
            CHECKF(memcmp(in, out, lens[i]) == 0, "thread %u block %ju: someone else wrote it",
                   a->id, (uintmax_t)held[i]);
            backing_free(a->b, held[i], rng_one_in(&rng, 2));
            held[i] = held[--nheld];
            lens[i] = lens[nheld];
        }
    }
    while (nheld > 0)
        backing_free(a->b, held[--nheld], false);
    return NULL;
}

/*
 * Sealed blocks (backing-crypt.c): the file holds no plaintext, and a block
 * opens only with what its last write put there, at that place, with that
 * length; anything else is -EBADMSG, counted in bad_seals, buf zeroed.
 */
static void test_sealed(void)
{
    const char *p = BT_PATH("sealed");
    struct backing *b = bt_open(p, 1 * MiB);
    unsigned char a[4096], c[4096], out[4096], disk[4096], old[4096];
    memset(a, 0x5a, sizeof(a));
    memcpy(a, "UZRAM-PLAINTEXT", 15);
    memset(c, 0x3c, sizeof(c));
    int fd = open(p, O_RDWR | O_CLOEXEC);
    CHECK(fd >= 0);

    CHECK_EQ(backing_write(b, 1, a, sizeof(a)), 0);
    CHECK_EQ(backing_write(b, 2, c, sizeof(c)), 0);
    CHECK_EQ(pread(fd, disk, sizeof(disk), 2 * 4096), (ssize_t)sizeof(disk));
    CHECK(memcmp(disk, a, sizeof(a)) != 0);
    CHECK(memmem(disk, sizeof(disk), "UZRAM-PLAINTEXT", 15) == NULL);
    CHECK(memmem(disk, sizeof(disk), "\x5a\x5a\x5a\x5a\x5a\x5a\x5a\x5a", 8) == NULL);
    CHECK_EQ(backing_read(b, 1, out, sizeof(out)), 0);
    CHECK(memcmp(out, a, sizeof(a)) == 0);
    memcpy(old, disk, sizeof(old));

    /* Another length than the one written. */
    CHECK_EQ(backing_read(b, 1, out, 100), -EBADMSG);
    /* One bit flipped. */
    disk[7] ^= 1;
    CHECK_EQ(pwrite(fd, disk, sizeof(disk), 2 * 4096), (ssize_t)sizeof(disk));
    CHECK_EQ(backing_read(b, 1, out, sizeof(out)), -EBADMSG);
    for (size_t i = 0; i < sizeof(out); i++)
        CHECK_EQ(out[i], 0);
    /* Block 2 is untouched. */
    CHECK_EQ(backing_read(b, 2, out, sizeof(out)), 0);
    CHECK(memcmp(out, c, sizeof(c)) == 0);
    /* Another block's sealed content copied over it. */
    CHECK_EQ(pread(fd, disk, sizeof(disk), 3 * 4096), (ssize_t)sizeof(disk));
    CHECK_EQ(pwrite(fd, disk, sizeof(disk), 2 * 4096), (ssize_t)sizeof(disk));
    CHECK_EQ(backing_read(b, 1, out, sizeof(out)), -EBADMSG);
    /* An older write of the same block put back after a newer one. */
    CHECK_EQ(backing_write(b, 1, a, sizeof(a)), 0);
    CHECK_EQ(pread(fd, disk, sizeof(disk), 2 * 4096), (ssize_t)sizeof(disk));
    CHECK(memcmp(disk, old, sizeof(old)) != 0); /* a fresh nonce: new ciphertext */
    CHECK_EQ(backing_read(b, 1, out, sizeof(out)), 0);
    CHECK_EQ(pwrite(fd, old, sizeof(old), 2 * 4096), (ssize_t)sizeof(old));
    CHECK_EQ(backing_read(b, 1, out, sizeof(out)), -EBADMSG);
    /* A block never written. */
    CHECK_EQ(backing_read(b, 3, out, sizeof(out)), -EBADMSG);

    struct backing_stats s = bt_stats(b);
    CHECK_EQU(s.bad_seals, 5);
    CHECK_EQ(s.last_error, -EBADMSG);
    /* 24 bytes a block, in whole pages, and the key's page(s). */
    CHECK(s.meta_bytes >= 256 * 24 && s.meta_bytes <= 256 * 24 + 3 * 4096 + 4096);
    close(fd);
    backing_close(b);
    bt_check_removed(p);
}

/*
 * Close discards the blocks still in use, on a file that stays: the pages
 * there outlive neither the daemon nor its key.  A block freed without
 * discard before is not the close's business, and keeps its bytes.
 */
static void test_close_discards(void)
{
    const char *p = BT_PATH("keep");
    make_file(p, 1 * MiB);
    struct backing *b = bt_open(p, 1 * MiB);
    unsigned char buf[4096];
    memset(buf, 0x77, sizeof(buf));
    static const uint64_t blks[] = { 3, 4, 5, 70, 255 };
    for (size_t i = 0; i < sizeof(blks) / sizeof(blks[0]); i++) {
        uint64_t got;
        do
            CHECK_EQ(backing_alloc(b, &got), 0);
        while (got != blks[i]);
        CHECK_EQ(backing_write(b, blks[i], buf, sizeof(buf)), 0);
    }
    CHECK_EQ(backing_flush(b), 0);
    backing_free(b, 4, false);
    backing_close(b);

    int fd = open(p, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    for (size_t i = 0; i < sizeof(blks) / sizeof(blks[0]); i++) {
        CHECK_EQ(pread(fd, buf, sizeof(buf), (off_t)((blks[i] + 1) * 4096)),
                 (ssize_t)sizeof(buf));
        bool zero = true;
        for (size_t k = 0; k < sizeof(buf); k++)
            zero = zero && buf[k] == 0;
        CHECKF(zero == (blks[i] != 4), "block %ju after close: %s", (uintmax_t)blks[i],
               zero ? "zeros" : "still holds data");
    }
    close(fd);
    struct stat st;
    CHECK_EQ(stat(p, &st), 0);
    /* The header, block 4 (freed without discard), and one block of slack. */
    CHECKF(st.st_blocks <= 8 * 3, "%jd sectors still allocated", (intmax_t)st.st_blocks);
    CHECK_EQ(unlink(p), 0);
}

static void test_threads(void)
{
    const char *p = BT_PATH("threads");
    /* Fewer blocks than the threads could hold: they meet ENOSPC too. */
    struct backing *b = bt_open(p, 24 * 4096);
    pthread_t th[T_THREADS];
    struct t_arg args[T_THREADS];
    for (unsigned i = 0; i < T_THREADS; i++) {
        args[i] = (struct t_arg){ b, i + 1 };
        CHECK_EQ(pthread_create(&th[i], NULL, t_worker, &args[i]), 0);
    }
    for (unsigned i = 0; i < T_THREADS; i++)
        CHECK_EQ(pthread_join(th[i], NULL), 0);
    struct backing_stats s = bt_stats(b);
    CHECK_EQU(s.blocks_used, 0);
    CHECK_EQU(s.read_errors + s.write_errors, 0);
    CHECK(s.writes > 0 && s.reads > 0);
    backing_close(b);
    bt_check_removed(p);
}

int main(void)
{
    bt_make_dir();
    backing_close(NULL);
    RUN_TEST(test_open_creates_sparse);
    RUN_TEST(test_open_odd_size);
    RUN_TEST(test_existing_sizes);
    RUN_TEST(test_bad_spec);
    RUN_TEST(test_ownership);
    RUN_TEST(test_alloc_next_fit);
    RUN_TEST(test_alloc_words);
    RUN_TEST(test_roundtrip);
    RUN_TEST(test_direct);
    RUN_TEST(test_bad_args);
    RUN_TEST(test_discard_punches);
    RUN_TEST(test_sealed);
    RUN_TEST(test_close_discards);
    RUN_TEST(test_threads);
    return 0;
}
