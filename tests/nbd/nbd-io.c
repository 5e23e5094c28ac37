/* SPDX-License-Identifier: MIT */
/*
 * nbd-io: a scriptable NBD client for the shell tests.
 *
 *   nbd-io URI OP...
 *
 * runs the operations in order on one connection and exits 0 when all did
 * what they should, 1 (with a message naming the operation) otherwise.
 * Offsets and lengths take a K, M or G suffix (powers of 1024).
 *
 *   write:OFF:LEN:BYTE       WRITE LEN bytes (in requests of at most 32 MiB) of BYTE (0x.. or decimal)
 *   rand:OFF:LEN:SEED        WRITE the seeded data (nbd-test.h)
 *   read:OFF:LEN:BYTE        READ and check every byte is BYTE
 *   check:OFF:LEN:SEED       READ and check the seeded data
 *   zero:OFF:LEN             WRITE_ZEROES (the server may punch a hole)
 *   zero-nohole:OFF:LEN      WRITE_ZEROES with NO_HOLE
 *   trim:OFF:LEN             TRIM
 *   flush                    FLUSH
 *   size:BYTES               the export's size must be BYTES
 *   fail-write:OFF:LEN:ERRNO a WRITE that must fail with ERRNO (a name: ENOSPC)
 *
 * Strict mode is off: the server, not libnbd, judges each request.  With
 * NBD_IO_SIMPLE=1 in the environment the client asks for simple replies
 * only (no structured replies), as the kernel's NBD client does.
 */
#include "nbd-test.h"

#include <stdlib.h>
#include <string.h>

static uint64_t parse_num(const char *s, const char *op)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    uint64_t mul = 1;
    switch (*end) {
    case 'K': mul = 1ull << 10; end++; break;
    case 'M': mul = 1ull << 20; end++; break;
    case 'G': mul = 1ull << 30; end++; break;
    default: break;
    }
    if (errno || end == s || (*end && *end != ':')) {
        fprintf(stderr, "nbd-io: %s: bad number '%s'\n", op, s);
        exit(2);
    }
    return (uint64_t)v * mul;
}

static int parse_errno(const char *s)
{
    static const struct { const char *name; int e; } names[] = {
        { "EINVAL", EINVAL }, { "ENOSPC", ENOSPC }, { "EPERM", EPERM },
        { "EIO", EIO }, { "ENOMEM", ENOMEM }, { "EOVERFLOW", EOVERFLOW },
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i].name) == 0)
            return names[i].e;
    fprintf(stderr, "nbd-io: unknown errno name '%s'\n", s);
    exit(2);
}

/* Split "name:a:b:c" into at most 4 fields; returns the count. */
static int split(char *op, char *f[4])
{
    int n = 0;
    for (char *p = op; n < 4; n++) {
        f[n] = p;
        p = strchr(p, ':');
        if (!p)
            return n + 1;
        *p++ = '\0';
    }
    fprintf(stderr, "nbd-io: too many fields in '%s'\n", op);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    CHECK(p);
    return p;
}

/* The server's largest request (NBD_INFO_BLOCK_SIZE maximum) is 32 MiB:
 * longer transfers go as several requests. */
#define MAX_REQUEST (32u << 20)

static int pread_all(struct nbd_handle *h, unsigned char *buf, uint64_t len, uint64_t off)
{
    for (uint64_t done = 0; done < len; done += MAX_REQUEST) {
        uint64_t n = len - done < MAX_REQUEST ? len - done : MAX_REQUEST;
        if (nbd_pread(h, buf + done, n, off + done, 0) < 0)
            return -1;
    }
    return 0;
}

static int pwrite_all(struct nbd_handle *h, const unsigned char *buf, uint64_t len, uint64_t off)
{
    for (uint64_t done = 0; done < len; done += MAX_REQUEST) {
        uint64_t n = len - done < MAX_REQUEST ? len - done : MAX_REQUEST;
        if (nbd_pwrite(h, buf + done, n, off + done, 0) < 0)
            return -1;
    }
    return 0;
}

static int run_op(struct nbd_handle *h, const char *text)
{
    char *copy = strdup(text), *f[4];
    CHECK(copy);
    int n = split(copy, f);
    const char *name = f[0];
    uint64_t off = n > 1 ? parse_num(f[1], text) : 0;
    uint64_t len = n > 2 ? parse_num(f[2], text) : 0;
    int rc = 0;

    /* Only transfers need a buffer; trims and zeroes may cover the device. */
    bool transfer = !strcmp(name, "write") || !strcmp(name, "rand") || !strcmp(name, "read") ||
                    !strcmp(name, "check") || !strcmp(name, "fail-write");
    if (transfer && len > 64ull << 20) {
        fprintf(stderr, "nbd-io: %s: at most 64M per transfer\n", text);
        exit(2);
    }
    unsigned char *buf = xmalloc(transfer ? len : 0);

    if (!strcmp(name, "write") && n == 4) {
        memset(buf, (int)parse_num(f[3], text), len);
        rc = pwrite_all(h, buf, len, off);
    } else if (!strcmp(name, "rand") && n == 4) {
        nbdt_fill(buf, len, off, parse_num(f[3], text));
        rc = pwrite_all(h, buf, len, off);
    } else if (!strcmp(name, "read") && n == 4) {
        unsigned char c = (unsigned char)parse_num(f[3], text);
        rc = pread_all(h, buf, len, off);
        int64_t bad = rc == 0 ? nbdt_not_byte(buf, len, c) : -1;
        if (bad >= 0) {
            fprintf(stderr, "nbd-io: %s: byte at %" PRIu64 " is 0x%02x, not 0x%02x\n",
                    text, off + (uint64_t)bad, buf[bad], c);
            free(buf);
            free(copy);
            return -1;
        }
    } else if (!strcmp(name, "check") && n == 4) {
        uint64_t seed = parse_num(f[3], text);
        rc = pread_all(h, buf, len, off);
        int64_t bad = rc == 0 ? nbdt_mismatch(buf, len, off, seed) : -1;
        if (bad >= 0) {
            fprintf(stderr, "nbd-io: %s: byte at %" PRIu64 " is 0x%02x, not 0x%02x\n",
                    text, off + (uint64_t)bad, buf[bad], nbdt_byte(seed, off + (uint64_t)bad));
            free(buf);
            free(copy);
            return -1;
        }
    } else if (!strcmp(name, "zero") && n == 3) {
        rc = nbd_zero(h, len, off, 0);
    } else if (!strcmp(name, "zero-nohole") && n == 3) {
        rc = nbd_zero(h, len, off, LIBNBD_CMD_FLAG_NO_HOLE);
    } else if (!strcmp(name, "trim") && n == 3) {
        rc = nbd_trim(h, len, off, 0);
    } else if (!strcmp(name, "flush") && n == 1) {
        rc = nbd_flush(h, 0);
    } else if (!strcmp(name, "size") && n == 2) {
        int64_t size = nbd_get_size(h);
        if (size < 0 || (uint64_t)size != off) {
            fprintf(stderr, "nbd-io: %s: the export's size is %" PRId64 "\n", text, size);
            rc = -1;
        }
    } else if (!strcmp(name, "fail-write") && n == 4) {
        int want = parse_errno(f[3]);
        nbdt_fill(buf, len, off, 1);
        rc = nbd_pwrite(h, buf, len, off, 0);
        int e = nbd_get_errno();
        if (rc == 0 || e != want) {
            fprintf(stderr, "nbd-io: %s: want %s, got %s\n", text, strerrorname_np(want),
                    rc == 0 ? "success" : strerrorname_np(e) ?: "?");
            rc = -1;
        } else {
            rc = 0;
        }
    } else {
        fprintf(stderr, "nbd-io: unknown operation '%s'\n", text);
        exit(2);
    }
    if (rc == -1 && nbd_get_error())
        fprintf(stderr, "nbd-io: %s: %s\n", text, nbd_get_error());
    free(buf);
    free(copy);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: nbd-io URI OP...\n");
        return 2;
    }
    struct nbd_handle *h = nbd_create();
    const char *simple = getenv("NBD_IO_SIMPLE");
    if (!h || nbd_set_strict_mode(h, 0) < 0 ||
        (simple && !strcmp(simple, "1") && nbd_set_request_structured_replies(h, false) < 0) ||
        nbd_connect_uri(h, argv[1]) < 0) {
        fprintf(stderr, "nbd-io: connecting to %s: %s\n", argv[1], nbd_get_error());
        nbd_close(h);
        return 1;
    }
    int status = 0;
    for (int i = 2; i < argc && status == 0; i++)
        if (run_op(h, argv[i]) != 0)
            status = 1;
    if (nbd_shutdown(h, 0) < 0 && status == 0) {
        fprintf(stderr, "nbd-io: shutdown: %s\n", nbd_get_error());
        status = 1;
    }
    nbd_close(h);
    return status;
}
