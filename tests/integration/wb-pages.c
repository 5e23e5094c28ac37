/* SPDX-License-Identifier: MIT */
/*
 * wb-pages: an NBD client for the writeback fault tests, which need to know
 * what happened to each page, not only whether a copy as a whole worked.
 *
 *   wb-pages write URI FILE OFF LEN
 *       Write FILE's bytes [OFF, OFF + LEN) to the export at OFF, in 1 MiB
 *       requests one after another, and stop at the first that fails.
 *       Prints "written=BYTES error=NAME" (NAME the errno's name, or
 *       "none"): the store keeps pages in order, so every byte before
 *       OFF + BYTES holds the new data whatever happened after.
 *
 *   wb-pages trim URI OFF LEN
 *       TRIM [OFF, OFF + LEN) in one request; prints "error=NAME".
 *
 *   wb-pages check URI FILE OFF LEN [LIST]
 *       Read [OFF, OFF + LEN) one 4 KiB page per request and compare each
 *       with FILE.  Prints "ok=N eio=N error=N mismatch=N first_error=NAME":
 *       pages read and equal, pages refused with EIO, pages refused with
 *       another error, pages that came back different.  With LIST, writes
 *       there one line "PAGE-INDEX STATE" per page that was not ok.
 *
 * Why page by page and one request at a time: a fault test asserts that
 * only the pages on a broken backing store fail, so one failed page must
 * not hide its neighbours (as it would inside a 1 MiB read), and a
 * sequence of single requests keeps the output a plain function of the
 * store's state.  65,536 requests over a Unix socket take a few seconds.
 *
 * Exit status: 0 when the run completed (whatever it found: the script
 * judges), 1 when it could not run (no connection, FILE too short), 2 bad
 * arguments.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libnbd.h>

#define PAGE 4096u
/* Large enough to look like a copy, small enough that a failure is localised. */
#define CHUNK (1u << 20)

static void usage(void)
{
    fputs("usage: wb-pages write URI FILE OFF LEN\n"
          "       wb-pages trim URI OFF LEN\n"
          "       wb-pages check URI FILE OFF LEN [LIST]\n", stderr);
    exit(2);
}

static uint64_t parse_num(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    uint64_t shift = 0;
    switch (*end) {
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    default: break;
    }
    if (errno || end == s || *end || v > (UINT64_MAX >> shift)) {
        fprintf(stderr, "wb-pages: bad number '%s'\n", s);
        exit(2);
    }
    return (uint64_t)v << shift;
}

static const char *errname(int e)
{
    const char *n = e ? strerrorname_np(e) : "none";
    return n ? n : "unknown";
}

/* The error of the last failed libnbd call; EIO when the server gave none. */
static int nbd_err(void)
{
    int e = nbd_get_errno();
    return e ? e : EIO;
}

static struct nbd_handle *connect_uri(const char *uri)
{
    struct nbd_handle *h = nbd_create();
    if (!h) {
        fprintf(stderr, "wb-pages: %s\n", nbd_get_error());
        exit(1);
    }
    /* The server, not libnbd, is being tested: let every request through. */
    nbd_set_strict_mode(h, 0);
    if (nbd_connect_uri(h, uri) == -1) {
        fprintf(stderr, "wb-pages: %s: %s\n", uri, nbd_get_error());
        exit(1);
    }
    return h;
}

static int open_ref(const char *path, uint64_t off, uint64_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "wb-pages: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    if ((uint64_t)st.st_size < off || (uint64_t)st.st_size - off < len) {
        fprintf(stderr, "wb-pages: %s is shorter than %" PRIu64 " + %" PRIu64 "\n",
                path, off, len);
        exit(1);
    }
    return fd;
}

static void read_ref(int fd, void *buf, size_t n, uint64_t off)
{
    ssize_t r = pread(fd, buf, n, (off_t)off);
    if (r != (ssize_t)n) {
        fprintf(stderr, "wb-pages: reading the reference file at %" PRIu64 " failed\n", off);
        exit(1);
    }
}

static int do_write(struct nbd_handle *h, int fd, uint64_t off, uint64_t len)
{
    char *buf = malloc(CHUNK);
    if (!buf)
        exit(1);
    uint64_t done = 0;
    int err = 0;
    while (done < len) {
        size_t n = len - done < CHUNK ? (size_t)(len - done) : CHUNK;
        read_ref(fd, buf, n, off + done);
        if (nbd_pwrite(h, buf, n, off + done, 0) == -1) {
            err = nbd_err();
            break;
        }
        done += n;
    }
    printf("written=%" PRIu64 " error=%s\n", done, errname(err));
    free(buf);
    return 0;
}

static int do_check(struct nbd_handle *h, int fd, uint64_t off, uint64_t len,
                    const char *list_path)
{
    FILE *list = NULL;
    if (list_path && !(list = fopen(list_path, "we"))) {
        fprintf(stderr, "wb-pages: %s: %s\n", list_path, strerror(errno));
        exit(1);
    }
    static char got[PAGE], want[PAGE];
    uint64_t ok = 0, eio = 0, other = 0, mismatch = 0;
    int first_err = 0;
    for (uint64_t p = 0; p < len; p += PAGE) {
        size_t n = len - p < PAGE ? (size_t)(len - p) : PAGE;
        const char *state;
        if (nbd_pread(h, got, n, off + p, 0) == -1) {
            int e = nbd_err();
            if (!first_err)
                first_err = e;
            if (e == EIO) {
                eio++;
                state = "EIO";
            } else {
                other++;
                state = errname(e);
            }
            /* A dead connection fails every page after it: say so once. */
            if (nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) {
                fprintf(stderr, "wb-pages: the connection is gone: %s\n", nbd_get_error());
                exit(1);
            }
        } else {
            read_ref(fd, want, n, off + p);
            if (memcmp(got, want, n) == 0) {
                ok++;
                continue;
            }
            mismatch++;
            state = "mismatch";
        }
        if (list)
            fprintf(list, "%" PRIu64 " %s\n", (off + p) / PAGE, state);
    }
    if (list && fclose(list) != 0) {
        fprintf(stderr, "wb-pages: %s: %s\n", list_path, strerror(errno));
        exit(1);
    }
    printf("ok=%" PRIu64 " eio=%" PRIu64 " error=%" PRIu64 " mismatch=%" PRIu64
           " first_error=%s\n", ok, eio, other, mismatch, errname(first_err));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "trim") == 0) {
        uint64_t off = parse_num(argv[3]), len = parse_num(argv[4]);
        struct nbd_handle *h = connect_uri(argv[2]);
        int err = nbd_trim(h, len, off, 0) == -1 ? nbd_err() : 0;
        printf("error=%s\n", errname(err));
        nbd_shutdown(h, 0);
        nbd_close(h);
        return 0;
    }
    if (argc < 6)
        usage();
    bool write = strcmp(argv[1], "write") == 0;
    if (!write && strcmp(argv[1], "check") != 0)
        usage();
    if ((write && argc != 6) || (!write && argc > 7))
        usage();
    uint64_t off = parse_num(argv[4]), len = parse_num(argv[5]);
    int fd = open_ref(argv[3], off, len);
    struct nbd_handle *h = connect_uri(argv[2]);
    int r = write ? do_write(h, fd, off, len)
                  : do_check(h, fd, off, len, argc == 7 ? argv[6] : NULL);
    fflush(stdout);
    nbd_shutdown(h, 0);
    nbd_close(h);
    close(fd);
    return r;
}
