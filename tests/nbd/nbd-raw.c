/* SPDX-License-Identifier: MIT */
/*
 * nbd-raw: an NBD client written from the protocol, byte by byte, for what
 * no library will send: unknown commands, a payload announced too large, a
 * write cut off in the middle, broken magic numbers, options the server
 * does not know.
 *
 *   nbd-raw TEST SOCKET
 *
 * TEST is one of the names in the table at the bottom.  It exits 0 when the
 * server answered as the protocol says; otherwise a CHECK says what came
 * instead.  Whether the server still serves others afterwards is the
 * calling script's business (it connects again with libnbd).
 *
 * Every read has a 60 s timeout (SO_RCVTIMEO): a server that neither
 * answers nor closes is a failure, not a hang.  Transmission uses simple
 * replies (structured replies are never negotiated here): the reply to an
 * error is then a fixed 16 bytes, and the libnbd tests cover structured
 * ones.
 */
#include "test.h"

#include <endian.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#define NBD_MAGIC           0x4e42444d41474943ull /* "NBDMAGIC" */
#define NBD_IHAVEOPT        0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_REP_MAGIC       0x3e889045565a9ull
#define NBD_REQUEST_MAGIC   0x25609513u
#define NBD_SIMPLE_MAGIC    0x67446698u

#define NBD_FLAG_FIXED_NEWSTYLE 1u
#define NBD_FLAG_NO_ZEROES      2u

#define NBD_OPT_EXPORT_NAME 1u
#define NBD_OPT_ABORT       2u
#define NBD_OPT_LIST        3u
#define NBD_OPT_INFO        6u
#define NBD_OPT_GO          7u
#define NBD_OPT_LIST_META_CONTEXT 9u

#define NBD_REP_ACK         1u
#define NBD_REP_SERVER      2u
#define NBD_REP_INFO        3u
#define NBD_REP_META_CONTEXT 4u
#define NBD_REP_ERR_UNSUP   (1u << 31 | 1u)

#define NBD_INFO_EXPORT     0u
#define NBD_INFO_BLOCK_SIZE 3u

/* Transmission flags the issue asks for. */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_READ_ONLY         (1u << 1)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF           (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8)
#define NBD_FLAG_SEND_CACHE        (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO    (1u << 11)

#define NBD_CMD_READ  0u
#define NBD_CMD_WRITE 1u
#define NBD_CMD_DISC  2u

#define MiB (1u << 20)

static const char *sock_path;
/* Each test writes only in its own 64 KiB, so that all can run at once. */
static uint64_t slot_base;

struct conn {
    int fd;
    uint64_t size;
    uint16_t flags;
    uint32_t min_block, pref_block, max_block;
};

static int raw_connect(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = 60 };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    CHECK(fd >= 0);
    CHECK(strlen(sock_path) < sizeof(sa.sun_path));
    strcpy(sa.sun_path, sock_path);
    CHECKF(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s", sock_path,
           strerror(errno));
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
    CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0);
    return fd;
}

/* Read exactly n bytes: 0, or -1 at end of stream, or -errno. */
static int recv_full(int fd, void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t r = recv(fd, p, n, 0);
        if (r == 0)
            return -1;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void must_recv(int fd, void *buf, size_t n, const char *what)
{
    int r = recv_full(fd, buf, n);
    CHECKF(r == 0, "reading %s: %s", what,
           r == -1 ? "the server closed the connection" : strerror(-r));
}

/* Send all of buf; false if the peer is gone (EPIPE, ECONNRESET). */
static bool send_full(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            CHECKF(errno == EPIPE || errno == ECONNRESET, "send: %s", strerror(errno));
            return false;
        }
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static void must_send(int fd, const void *buf, size_t n)
{
    CHECKF(send_full(fd, buf, n), "the server closed the connection while we sent");
}

static uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return be64toh(v); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return be32toh(v); }
static uint16_t get16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return be16toh(v); }
static void put64(unsigned char *p, uint64_t v) { v = htobe64(v); memcpy(p, &v, 8); }
static void put32(unsigned char *p, uint32_t v) { v = htobe32(v); memcpy(p, &v, 4); }
static void put16(unsigned char *p, uint16_t v) { v = htobe16(v); memcpy(p, &v, 2); }

/*
 * The peer must close the connection (having sent at most a few replies
 * first, which are skipped): a clean refusal.  A timeout fails the test.
 */
static void expect_close(int fd, const char *why)
{
    unsigned char buf[4096];
    size_t skipped = 0;

    for (;;) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            break;
        CHECKF(r > 0 || errno == EINTR, "%s: want the server to close the connection, "
               "got %s", why, errno == EAGAIN ? "nothing for 60 s" : strerror(errno));
        if (r > 0)
            skipped += (size_t)r;
        CHECKF(skipped <= 1 * MiB, "%s: the server keeps sending instead of closing", why);
    }
    printf("%s: the server closed the connection (%zu bytes before)\n", why, skipped);
}

static void greeting(int fd, uint32_t client_flags)
{
    unsigned char b[18], cf[4];

    must_recv(fd, b, sizeof(b), "the greeting");
    CHECKF(get64(b) == NBD_MAGIC, "greeting magic %#" PRIx64, get64(b));
    CHECKF(get64(b + 8) == NBD_IHAVEOPT, "not newstyle: %#" PRIx64, get64(b + 8));
    uint16_t hflags = get16(b + 16);
    CHECKF(hflags & NBD_FLAG_FIXED_NEWSTYLE, "handshake flags %#x: not fixed newstyle", hflags);
    CHECKF(hflags & NBD_FLAG_NO_ZEROES, "handshake flags %#x: no NO_ZEROES", hflags);
    put32(cf, client_flags);
    must_send(fd, cf, sizeof(cf));
}

static void send_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
    unsigned char h[16];
    put64(h, NBD_IHAVEOPT);
    put32(h + 8, opt);
    put32(h + 12, len);
    must_send(fd, h, sizeof(h));
    if (len)
        must_send(fd, data, len);
}

struct opt_reply {
    uint32_t opt, type, len;
    unsigned char data[4096];
};

static void recv_opt_reply(int fd, struct opt_reply *r)
{
    unsigned char h[20];
    must_recv(fd, h, sizeof(h), "an option reply");
    CHECKF(get64(h) == NBD_REP_MAGIC, "option reply magic %#" PRIx64, get64(h));
    r->opt = get32(h + 8);
    r->type = get32(h + 12);
    r->len = get32(h + 16);
    CHECKF(r->len <= sizeof(r->data), "option reply of %u bytes", r->len);
    must_recv(fd, r->data, r->len, "an option reply's data");
}

/* NBD_OPT_GO (or INFO) for the default export, asking for block sizes. */
static void go(struct conn *c, uint32_t opt)
{
    unsigned char d[8];
    struct opt_reply r;
    bool have_export = false, have_sizes = false;

    put32(d, 0);                    /* name length: the default export */
    put16(d + 4, 1);                /* one information request */
    put16(d + 6, NBD_INFO_BLOCK_SIZE);
    send_opt(c->fd, opt, d, sizeof(d));
    for (;;) {
        recv_opt_reply(c->fd, &r);
        CHECKF(r.opt == opt, "reply to option %u, not %u", r.opt, opt);
        if (r.type == NBD_REP_ACK)
            break;
        CHECKF(r.type == NBD_REP_INFO, "reply type %#x to GO/INFO", r.type);
        CHECK(r.len >= 2);
        uint16_t info = get16(r.data);
        if (info == NBD_INFO_EXPORT) {
            CHECK_EQ(r.len, 12);
            c->size = get64(r.data + 2);
            c->flags = get16(r.data + 10);
            have_export = true;
        } else if (info == NBD_INFO_BLOCK_SIZE) {
            CHECK_EQ(r.len, 14);
            c->min_block = get32(r.data + 2);
            c->pref_block = get32(r.data + 6);
            c->max_block = get32(r.data + 10);
            have_sizes = true;
        }
    }
    CHECKF(have_export, "GO/INFO acknowledged without NBD_INFO_EXPORT");
    CHECKF(have_sizes, "GO/INFO acknowledged without NBD_INFO_BLOCK_SIZE");
}

static struct conn open_conn(void)
{
    struct conn c = { .fd = raw_connect() };
    greeting(c.fd, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    go(&c, NBD_OPT_GO);
    return c;
}

static void send_req(int fd, uint16_t flags, uint16_t type, uint64_t handle, uint64_t off,
                     uint32_t len)
{
    unsigned char h[28];
    put32(h, NBD_REQUEST_MAGIC);
    put16(h + 4, flags);
    put16(h + 6, type);
    put64(h + 8, handle);
    put64(h + 16, off);
    put32(h + 24, len);
    must_send(fd, h, sizeof(h));
}

/* A simple reply's error; its handle must be handle.  -1: the server closed. */
static int recv_reply(int fd, uint64_t handle)
{
    unsigned char h[16];
    int r = recv_full(fd, h, sizeof(h));
    if (r == -1 || r == -ECONNRESET)
        return -1;
    CHECKF(r == 0, "reading a reply: %s", strerror(-r));
    CHECKF(get32(h) == NBD_SIMPLE_MAGIC, "reply magic %#x (structured replies were not "
           "negotiated)", get32(h));
    CHECKF(get64(h + 8) == handle, "reply for handle %#" PRIx64 ", want %#" PRIx64,
           get64(h + 8), handle);
    return (int)get32(h + 4);
}

/* A 4 KiB write and read-back on the raw connection. */
static void raw_still_serves(struct conn *c, uint64_t off, unsigned char fill)
{
    unsigned char buf[4096];

    off += slot_base;
    memset(buf, fill, sizeof(buf));
    send_req(c->fd, 0, NBD_CMD_WRITE, 0x5151, off, sizeof(buf));
    must_send(c->fd, buf, sizeof(buf));
    CHECK_EQ(recv_reply(c->fd, 0x5151), 0);
    send_req(c->fd, 0, NBD_CMD_READ, 0x5252, off, sizeof(buf));
    CHECK_EQ(recv_reply(c->fd, 0x5252), 0);
    must_recv(c->fd, buf, sizeof(buf), "the read's data");
    for (size_t i = 0; i < sizeof(buf); i++)
        CHECKF(buf[i] == fill, "byte %zu read back as %#x, not %#x", i, buf[i], fill);
}

static void disconnect(struct conn *c)
{
    send_req(c->fd, 0, NBD_CMD_DISC, 0x6666, 0, 0);
    expect_close(c->fd, "after NBD_CMD_DISC");
    close(c->fd);
}

/* ---- the tests ------------------------------------------------------------ */

/* Option haggling: unknown options, LIST, INFO, LIST_META_CONTEXT, then GO
 * with the flags and block sizes the issue asks for. */
static void t_options(void)
{
    struct conn c = { .fd = raw_connect() };
    struct opt_reply r;
    int servers = 0;

    greeting(c.fd, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);

    send_opt(c.fd, 0x4242, "abc", 3);
    recv_opt_reply(c.fd, &r);
    CHECK_EQU(r.opt, 0x4242);
    CHECKF(r.type == NBD_REP_ERR_UNSUP, "an unknown option got reply type %#x", r.type);

    send_opt(c.fd, NBD_OPT_LIST, NULL, 0);
    for (;;) {
        recv_opt_reply(c.fd, &r);
        CHECK_EQU(r.opt, NBD_OPT_LIST);
        if (r.type == NBD_REP_ACK)
            break;
        CHECKF(r.type == NBD_REP_SERVER, "LIST reply type %#x", r.type);
        CHECK(r.len >= 4 && get32(r.data) <= r.len - 4);
        servers++;
    }
    CHECKF(servers >= 1, "LIST named no export");

    go(&c, NBD_OPT_INFO);
    uint64_t info_size = c.size;

    unsigned char q[4 + 4 + 4 + 15];
    put32(q, 0);                     /* export name length */
    put32(q + 4, 1);                 /* one query */
    put32(q + 8, 15);
    memcpy(q + 12, "base:allocation", 15);
    send_opt(c.fd, NBD_OPT_LIST_META_CONTEXT, q, sizeof(q));
    int contexts = 0;
    for (;;) {
        recv_opt_reply(c.fd, &r);
        CHECK_EQU(r.opt, NBD_OPT_LIST_META_CONTEXT);
        if (r.type == NBD_REP_ACK)
            break;
        CHECKF(r.type == NBD_REP_META_CONTEXT, "LIST_META_CONTEXT reply type %#x", r.type);
        CHECKF(r.len == 4 + 15 && memcmp(r.data + 4, "base:allocation", 15) == 0,
               "LIST_META_CONTEXT returned something other than base:allocation");
        contexts++;
    }
    CHECK_EQ(contexts, 1);

    go(&c, NBD_OPT_GO);
    CHECK_EQU(c.size, info_size);
    CHECK_EQU(c.min_block, 1);
    CHECK_EQU(c.pref_block, 4096);
    CHECK_EQU(c.max_block, 32 * MiB);
    uint16_t want = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                    NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
                    NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_FAST_ZERO;
    CHECKF((c.flags & want) == want, "transmission flags %#x lack %#x", c.flags,
           want & ~c.flags);
    CHECKF(!(c.flags & NBD_FLAG_READ_ONLY), "READ_ONLY set without --read-only");
    /* DF is for structured replies only, which this client did not ask for. */
    CHECKF(!(c.flags & NBD_FLAG_SEND_DF), "SEND_DF set without structured replies");
    raw_still_serves(&c, 0, 0x31);
    disconnect(&c);
}

/* The oldest way in: NBD_OPT_EXPORT_NAME, without NO_ZEROES (124 zero
 * bytes follow the flags). */
static void t_export_name(void)
{
    struct conn c = { .fd = raw_connect() };
    unsigned char b[8 + 2 + 124];

    greeting(c.fd, NBD_FLAG_FIXED_NEWSTYLE);
    send_opt(c.fd, NBD_OPT_EXPORT_NAME, NULL, 0);
    must_recv(c.fd, b, sizeof(b), "the EXPORT_NAME answer");
    c.size = get64(b);
    c.flags = get16(b + 8);
    CHECK(c.size > 0);
    CHECK(c.flags & NBD_FLAG_HAS_FLAGS);
    for (size_t i = 10; i < sizeof(b); i++)
        CHECKF(b[i] == 0, "reserved byte %zu is %#x", i - 10, b[i]);
    raw_still_serves(&c, 4096, 0x32);
    disconnect(&c);
}

/* NBD_OPT_ABORT: acknowledged (or not), then closed. */
static void t_abort(void)
{
    struct conn c = { .fd = raw_connect() };
    greeting(c.fd, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    send_opt(c.fd, NBD_OPT_ABORT, NULL, 0);
    expect_close(c.fd, "after NBD_OPT_ABORT");
    close(c.fd);
}

/* An unknown command: EINVAL, and the connection serves on. */
static void t_unknown_cmd(void)
{
    struct conn c = open_conn();

    send_req(c.fd, 0, 42, 0xabcd, 0, 512);
    CHECK_EQ(recv_reply(c.fd, 0xabcd), EINVAL);
    send_req(c.fd, 0, 0xffff, 0xabce, 0, 0);
    CHECK_EQ(recv_reply(c.fd, 0xabce), EINVAL);
    raw_still_serves(&c, 0, 0x33);
    disconnect(&c);
}

/* Unknown flags: EINVAL; on a write the payload is still consumed (the
 * header says how long it is), so the stream stays in step. */
static void t_unknown_flags(void)
{
    struct conn c = open_conn();
    unsigned char buf[4096];

    send_req(c.fd, 1u << 13, NBD_CMD_READ, 0x1001, 0, 4096);
    CHECK_EQ(recv_reply(c.fd, 0x1001), EINVAL);
    memset(buf, 0x77, sizeof(buf));
    send_req(c.fd, 1u << 13, NBD_CMD_WRITE, 0x1002, slot_base + 8192, sizeof(buf));
    must_send(c.fd, buf, sizeof(buf));
    CHECK_EQ(recv_reply(c.fd, 0x1002), EINVAL);
    raw_still_serves(&c, 8192, 0x34);
    disconnect(&c);
}

/* Past the end with simple replies: no data may follow an error reply. */
static void t_past_end(void)
{
    struct conn c = open_conn();

    send_req(c.fd, 0, NBD_CMD_READ, 0x2001, c.size, 4096);
    CHECK_EQ(recv_reply(c.fd, 0x2001), EINVAL);
    raw_still_serves(&c, 0, 0x35);
    disconnect(&c);
}

/* A write announcing 64 MiB of payload (the maximum is 32 MiB): refused,
 * and the connection dropped, since the stream cannot be trusted after it;
 * if an error reply comes first it must carry the handle and an error. */
static void t_oversized_write(void)
{
    struct conn c = open_conn();
    unsigned char *buf = calloc(1, MiB);
    CHECK(buf);

    send_req(c.fd, 0, NBD_CMD_WRITE, 0x3001, slot_base, 64 * MiB);
    /* Some of the payload: a server that swallowed it would now wait for
     * the other 63 MiB and never close. */
    (void)send_full(c.fd, buf, MiB);
    unsigned char h[16];
    int r = recv_full(c.fd, h, sizeof(h));
    if (r == 0) {
        CHECKF(get32(h) == NBD_SIMPLE_MAGIC, "reply magic %#x", get32(h));
        CHECKF(get64(h + 8) == 0x3001, "reply handle %#" PRIx64, get64(h + 8));
        CHECKF(get32(h + 4) != 0, "a 64 MiB write was answered with success");
        printf("oversized write: error %u, then ", get32(h + 4));
        expect_close(c.fd, "after the error for a 64 MiB write");
    } else {
        CHECKF(r == -1 || r == -ECONNRESET, "after a 64 MiB write header: %s",
               r == -EAGAIN ? "neither an answer nor a close in 60 s" : strerror(-r));
        printf("oversized write: closed without a reply\n");
    }
    close(c.fd);
    free(buf);
}

/* A read asking for 64 MiB: it carries no payload, so the server can
 * refuse it and go on (closing is also allowed). */
static void t_oversized_read(void)
{
    struct conn c = open_conn();

    send_req(c.fd, 0, NBD_CMD_READ, 0x3002, 0, 64 * MiB);
    int e = recv_reply(c.fd, 0x3002);
    if (e == -1) {
        printf("oversized read: the server closed the connection\n");
        close(c.fd);
        return;
    }
    CHECKF(e == EINVAL || e == EOVERFLOW || e == ENOMEM,
           "a 64 MiB read got error %d, not EINVAL or EOVERFLOW", e);
    raw_still_serves(&c, 0, 0x36);
    disconnect(&c);
}

/* A client that goes away in the middle of a write's payload. */
static void t_half_write(void)
{
    struct conn c = open_conn();
    unsigned char *buf = malloc(MiB);
    CHECK(buf);
    memset(buf, 0x99, MiB);

    send_req(c.fd, 0, NBD_CMD_WRITE, 0x4001, 2 * MiB + slot_base, MiB);
    must_send(c.fd, buf, 300 * 1024);
    close(c.fd);
    free(buf);
}

/* A client that goes away in the middle of a request header. */
static void t_half_header(void)
{
    struct conn c = open_conn();
    unsigned char h[12] = { 0x25, 0x60, 0x95, 0x13 };
    must_send(c.fd, h, sizeof(h));
    close(c.fd);
}

/* Unknown client flags: the server MUST close. */
static void t_bad_client_flags(void)
{
    int fd = raw_connect();
    unsigned char b[18], cf[4];

    must_recv(fd, b, sizeof(b), "the greeting");
    put32(cf, 0xdeadbeef);
    must_send(fd, cf, sizeof(cf));
    expect_close(fd, "after unknown client flags");
    close(fd);
}

/* An option without the IHAVEOPT magic. */
static void t_bad_opt_magic(void)
{
    int fd = raw_connect();
    unsigned char o[16];

    greeting(fd, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    put64(o, 0x0123456789abcdefull);
    put32(o + 8, NBD_OPT_GO);
    put32(o + 12, 0);
    must_send(fd, o, sizeof(o));
    expect_close(fd, "after an option with bad magic");
    close(fd);
}

/* An option announcing 4 GiB of data: refused without reading it all. */
static void t_huge_option(void)
{
    int fd = raw_connect();
    unsigned char o[16];
    struct opt_reply r;

    greeting(fd, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    put64(o, NBD_IHAVEOPT);
    put32(o + 8, NBD_OPT_GO);
    put32(o + 12, 0xffffffffu);
    must_send(fd, o, sizeof(o));
    unsigned char junk[4096] = { 0 };
    (void)send_full(fd, junk, sizeof(junk));
    /* Either an error reply (bit 31 set) and then a close, or a close. */
    unsigned char h[20];
    int rc = recv_full(fd, h, sizeof(h));
    if (rc == 0) {
        CHECKF(get64(h) == NBD_REP_MAGIC, "reply magic %#" PRIx64, get64(h));
        r.type = get32(h + 12);
        CHECKF(r.type & (1u << 31), "a 4 GiB option got reply type %#x", r.type);
        expect_close(fd, "after the error for a 4 GiB option");
    } else {
        CHECKF(rc == -1 || rc == -ECONNRESET, "after a 4 GiB option: %s",
               rc == -EAGAIN ? "neither an answer nor a close in 60 s" : strerror(-rc));
    }
    close(fd);
}

/* Garbage instead of client flags and options: dropped. */
static void t_garbage(void)
{
    int fd = raw_connect();
    unsigned char b[18], junk[256];

    must_recv(fd, b, sizeof(b), "the greeting");
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (unsigned char)(i * 37 + 11);
    (void)send_full(fd, junk, sizeof(junk));
    expect_close(fd, "after 256 bytes of garbage");
    close(fd);
}

/* A request with a bad magic number after the handshake. */
static void t_bad_request_magic(void)
{
    struct conn c = open_conn();
    unsigned char h[28] = { 0xde, 0xad, 0xbe, 0xef };
    must_send(c.fd, h, sizeof(h));
    expect_close(c.fd, "after a request with bad magic");
    close(c.fd);
}

/* Connect and leave at once, before the greeting is read. */
static void t_hangup(void)
{
    close(raw_connect());
}

static const struct {
    const char *name;
    void (*fn)(void);
} tests[] = {
    { "options", t_options },
    { "export-name", t_export_name },
    { "abort", t_abort },
    { "unknown-cmd", t_unknown_cmd },
    { "unknown-flags", t_unknown_flags },
    { "past-end", t_past_end },
    { "oversized-write", t_oversized_write },
    { "oversized-read", t_oversized_read },
    { "half-write", t_half_write },
    { "half-header", t_half_header },
    { "bad-client-flags", t_bad_client_flags },
    { "bad-opt-magic", t_bad_opt_magic },
    { "huge-option", t_huge_option },
    { "garbage", t_garbage },
    { "bad-request-magic", t_bad_request_magic },
    { "hangup", t_hangup },
};

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--list")) {
        for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: nbd-raw TEST SOCKET | nbd-raw --list\n");
        return 2;
    }
    sock_path = argv[2];
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        if (!strcmp(argv[1], tests[i].name)) {
            test_current = tests[i].name;
            slot_base = i * 65536;
            test_watchdog(300);
            tests[i].fn();
            printf("nbd-raw %s: ok\n", tests[i].name);
            return 0;
        }
    }
    fprintf(stderr, "nbd-raw: unknown test '%s'\n", argv[1]);
    return 2;
}
