/* SPDX-License-Identifier: MIT */
/*
 * What the control tests share: a store and a control server on a socket in
 * a fresh temporary directory, and a raw client that speaks the protocol
 * byte by byte, so that the tests see exactly what goes over the wire.
 *
 * Every client socket has a receive timeout (CT_IO_TIMEOUT): not a timing
 * the test depends on, but a guard, so that a server that fails to answer
 * makes the test fail with a message instead of hanging until meson kills it.
 */
#ifndef UZRAM_CTLTEST_H
#define UZRAM_CTLTEST_H

#include "test.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>

#include "control.h"
#include "store.h"

#define CT_IO_TIMEOUT 20
#define CT_SIZE (16u << 20)

struct ct {
    char dir[64];
    char path[128];
    struct store *store;
    struct control *ctl;
};

static inline void ct_setup(struct ct *t)
{
    struct store_config cfg = { .size = CT_SIZE };
    struct control_info info = { .name = "t0", .algorithm = "lz4", .level = 1,
                                  .fuse_file = "/tmp/a file%" };

    info.log = "/var/log/t 0.log";

    snprintf(t->dir, sizeof(t->dir), "/tmp/uzram-ctltest-XXXXXX");
    CHECK(mkdtemp(t->dir) != NULL);
    snprintf(t->path, sizeof(t->path), "%s/t0.sock", t->dir);
    t->store = store_new(&cfg);
    CHECKF(t->store, "store_new: %s", strerror(errno));
    t->ctl = control_new(t->path, t->store, &info, (gid_t)-1, (gid_t)-1);
    CHECKF(t->ctl, "control_new: %s", strerror(errno));
    CHECK_EQ(control_start(t->ctl), 0);
}

static inline void ct_teardown(struct ct *t)
{
    struct stat st;

    control_free(t->ctl);
    /* control_free() removes the socket it made. */
    CHECK(lstat(t->path, &st) < 0 && errno == ENOENT);
    store_free(t->store);
    CHECK_EQ(rmdir(t->dir), 0);
}

/* A connected client, or -errno. */
static inline int ct_try_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = CT_IO_TIMEOUT };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    CHECK(fd >= 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static inline int ct_connect(const struct ct *t)
{
    int fd = ct_try_connect(t->path);
    CHECKF(fd >= 0, "connect %s: %s", t->path, strerror(-fd));
    return fd;
}

static inline void ct_send(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        CHECKF(n > 0, "send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

/*
 * Read one response line (without its newline) into buf.  Returns its
 * length, or -1 at end of file before any byte.  Reads a byte at a time so
 * that nothing of the next response is consumed.
 */
static inline ssize_t ct_read_line(int fd, char *buf, size_t len)
{
    size_t n = 0;

    for (;;) {
        char c;
        ssize_t r = recv(fd, &c, 1, 0);
        /* A server that closes with some of our bytes unread makes the
         * kernel report ECONNRESET rather than end of file. */
        CHECKF(r >= 0 || errno == ECONNRESET, "recv: %s (no answer within %d s?)",
               strerror(errno), CT_IO_TIMEOUT);
        if (r <= 0) {
            CHECKF(n == 0, "end of file in the middle of a response");
            return -1;
        }
        if (c == '\n')
            break;
        CHECK(n + 1 < len);
        buf[n++] = c;
    }
    buf[n] = '\0';
    return (ssize_t)n;
}

/* Is the next thing from the server the end of the connection? */
static inline bool ct_at_eof(int fd)
{
    char c;
    ssize_t r = recv(fd, &c, 1, 0);
    CHECKF(r >= 0 || errno == ECONNRESET, "recv: %s", strerror(errno));
    return r <= 0;
}

/* Send the line req (newline added) and read the answer into buf. */
static inline void ct_ask(int fd, const char *req, char *buf, size_t len)
{
    ct_send(fd, req, strlen(req));
    ct_send(fd, "\n", 1);
    CHECKF(ct_read_line(fd, buf, len) >= 0, "no answer to '%s'", req);
}

/* The value of key in an ok response, copied into out; false if absent. */
static inline bool ct_value(const char *resp, const char *key, char *out, size_t len)
{
    size_t kl = strlen(key);
    const char *p = resp;

    while ((p = strchr(p, ' '))) {
        p++;
        if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t vl = strcspn(p + kl + 1, " ");
            CHECK(vl < len);
            memcpy(out, p + kl + 1, vl);
            out[vl] = '\0';
            return true;
        }
    }
    return false;
}

static inline uint64_t ct_u64(const char *resp, const char *key)
{
    char v[32], *end;
    CHECKF(ct_value(resp, key, v, sizeof(v)), "no %s in '%s'", key, resp);
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    CHECKF(!errno && *end == '\0' && v[0] >= '0' && v[0] <= '9', "%s=%s is not an integer", key, v);
    return x;
}

static inline bool ct_starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

#define CHECK_RESP(resp, prefix) \
    CHECKF(ct_starts((resp), (prefix)), "expected '%s...', got '%s'", (prefix), (resp))

#endif
