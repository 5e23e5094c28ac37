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

/* One operation's arguments, parsed as far as every operation needs. */
struct op_args {
    struct nbd_handle *h;
    const char *text;           /* the operation as given, for messages */
    char *const *f;             /* its fields; f[0] is the name */
    uint64_t off, len;
    unsigned char *buf;         /* len bytes for a transfer, else 1 */
};

/* A handler's result when it has said what went wrong itself: the error
 * libnbd holds, if any, is not the reason and is not printed. */
#define OP_REPORTED (-2)

static int op_write(const struct op_args *a)
{
    memset(a->buf, (int)parse_num(a->f[3], a->text), a->len);
    return pwrite_all(a->h, a->buf, a->len, a->off);
}

static int op_rand(const struct op_args *a)
{
    nbdt_fill(a->buf, a->len, a->off, parse_num(a->f[3], a->text));
    return pwrite_all(a->h, a->buf, a->len, a->off);
}

static int op_read(const struct op_args *a)
{
    unsigned char c = (unsigned char)parse_num(a->f[3], a->text);
    int rc = pread_all(a->h, a->buf, a->len, a->off);
    int64_t bad = rc == 0 ? nbdt_not_byte(a->buf, a->len, c) : -1;
    if (bad >= 0) {
        fprintf(stderr, "nbd-io: %s: byte at %" PRIu64 " is 0x%02x, not 0x%02x\n",
                a->text, a->off + (uint64_t)bad, a->buf[bad], c);
        return OP_REPORTED;
    }
    return rc;
}

static int op_check(const struct op_args *a)
{
    uint64_t seed = parse_num(a->f[3], a->text);
    int rc = pread_all(a->h, a->buf, a->len, a->off);
    int64_t bad = rc == 0 ? nbdt_mismatch(a->buf, a->len, a->off, seed) : -1;
    if (bad >= 0) {
        fprintf(stderr, "nbd-io: %s: byte at %" PRIu64 " is 0x%02x, not 0x%02x\n",
                a->text, a->off + (uint64_t)bad, a->buf[bad],
                nbdt_byte(seed, a->off + (uint64_t)bad));
        return OP_REPORTED;
    }
    return rc;
}

static int op_zero(const struct op_args *a)
{
    return nbd_zero(a->h, a->len, a->off, 0);
}

static int op_zero_nohole(const struct op_args *a)
{
    return nbd_zero(a->h, a->len, a->off, LIBNBD_CMD_FLAG_NO_HOLE);
}

static int op_trim(const struct op_args *a)
{
    return nbd_trim(a->h, a->len, a->off, 0);
}

static int op_flush(const struct op_args *a)
{
    return nbd_flush(a->h, 0);
}

/* size:BYTES: BYTES was parsed as the offset field. */
static int op_size(const struct op_args *a)
{
    int64_t size = nbd_get_size(a->h);
    if (size < 0 || (uint64_t)size != a->off) {
        fprintf(stderr, "nbd-io: %s: the export's size is %" PRId64 "\n", a->text, size);
        return -1;
    }
    return 0;
}

static int op_fail_write(const struct op_args *a)
{
    int want = parse_errno(a->f[3]);
    nbdt_fill(a->buf, a->len, a->off, 1);
    int rc = nbd_pwrite(a->h, a->buf, a->len, a->off, 0);
    int e = nbd_get_errno();
    if (rc == 0 || e != want) {
        fprintf(stderr, "nbd-io: %s: want %s, got %s\n", a->text, strerrorname_np(want),
                rc == 0 ? "success" : strerrorname_np(e) ?: "?");
        return -1;
    }
    return 0;
}

/* The operations, as the usage at the top of the file lists them. */
static const struct nbd_io_op {
    const char *name;
    int fields;                 /* the name included */
    bool transfer;              /* needs a buffer of len bytes */
    int (*run)(const struct op_args *a);
} nbd_io_ops[] = {
    { "write", 4, true, op_write },
    { "rand", 4, true, op_rand },
    { "read", 4, true, op_read },
    { "check", 4, true, op_check },
    { "zero", 3, false, op_zero },
    { "zero-nohole", 3, false, op_zero_nohole },
    { "trim", 3, false, op_trim },
    { "flush", 1, false, op_flush },
    { "size", 2, false, op_size },
    { "fail-write", 4, true, op_fail_write },
};

static const struct nbd_io_op *find_op(const char *name)
{
    for (size_t i = 0; i < sizeof(nbd_io_ops) / sizeof(nbd_io_ops[0]); i++)
        if (!strcmp(name, nbd_io_ops[i].name))
            return &nbd_io_ops[i];
    return NULL;
}

static int run_op(struct nbd_handle *h, const char *text)
{
    char *copy = strdup(text), *f[4];
    CHECK(copy);
    int n = split(copy, f);
    /* In this order: a bad offset is the one reported, not a bad length. */
    uint64_t off = n > 1 ? parse_num(f[1], text) : 0;
    uint64_t len = n > 2 ? parse_num(f[2], text) : 0;
    struct op_args a = { .h = h, .text = text, .f = f, .off = off, .len = len };
    const struct nbd_io_op *op = find_op(f[0]);

    /* Only transfers need a buffer; trims and zeroes may cover the device. */
    bool transfer = op && op->transfer;
    if (transfer && a.len > 64ull << 20) {
        fprintf(stderr, "nbd-io: %s: at most 64M per transfer\n", text);
        exit(2);
    }
    a.buf = xmalloc(transfer ? a.len : 0);
    if (!op || op->fields != n) {
        fprintf(stderr, "nbd-io: unknown operation '%s'\n", text);
        exit(2);
    }
    int rc = op->run(&a);
    if (rc == -1 && nbd_get_error())
        fprintf(stderr, "nbd-io: %s: %s\n", text, nbd_get_error());
    free(a.buf);
    free(copy);
    return rc == OP_REPORTED ? -1 : rc;
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
