/* SPDX-License-Identifier: MIT */
/*
 * uzramctl's end of the control socket (client.h).  The wire format's
 * rules (line limits, words, percent-decoding, errno names) are proto.c's,
 * shared with the daemon; here are the socket, the deadline and the reply's
 * parse into key=value pairs.
 */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include "util.h"

int uz_connect(const char *path, unsigned timeout_s)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = timeout_s };
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* The timeouts bound connect() too: on a Unix socket with a full
     * backlog it waits under SO_SNDTIMEO. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno == EAGAIN || errno == EINPROGRESS ? ETIMEDOUT : errno;
        close(fd);
        return -e;
    }
    return fd;
}

/*
 * Make s safe to print, in place: every byte that is not part of a
 * well-formed UTF-8 sequence, and every control character (C0, DEL, and C1,
 * U+0080..U+009F, which some terminals also obey), becomes '?'.  A daemon
 * can send any byte (values are percent-decoded): what uzramctl prints must
 * stay valid text, JSON above all, and must not drive the user's terminal.
 * The '?' keeps the length, so this works in place, as `ls -q` does.
 */
static void text_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s;

    while (*p) {
        size_t n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3
                 : (*p & 0xf8) == 0xf0 ? 4 : 0;
        uint32_t cp = n == 1 ? *p : n == 2 ? *p & 0x1fu : n == 3 ? *p & 0x0fu : *p & 0x07u;
        size_t i;

        for (i = 1; i < n && (p[i] & 0xc0) == 0x80; i++)
            cp = cp << 6 | (p[i] & 0x3fu);
        /* Truncated, overlong, a surrogate or past U+10FFFF: not text. */
        bool bad = n == 0 || i < n || (n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
                   (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
                   (cp >= 0xd800 && cp <= 0xdfff);
        if (bad || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
            /* A control character as a whole sequence: one '?' per byte. */
            size_t k = bad ? 1 : n;
            memset(p, '?', k);
            p += k;
            continue;
        }
        p += n;
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Split r->line into r's fields.  The line was made printable first (keys,
 * error names and messages are shown as sent); each value again after its
 * percent-decoding, which can bring back any byte.
 */
static int parse_reply(struct uz_reply *r)
{
    char *p = r->line;

    r->npairs = 0;
    text_sanitize(p);
    if (strncmp(p, "error ", 6) == 0) {
        r->ok = false;
        p += 6;
        r->errname = p;
        p += strcspn(p, " ");
        if (*p)
            *p++ = '\0';
        r->msg = p;
        r->err = proto_errno_from_name(r->errname);
        return 0;
    }
    if (strncmp(p, "ok", 2) != 0 || (p[2] && p[2] != ' '))
        return -EPROTO;
    r->ok = true;
    char *words[UZ_MAX_PAIRS];
    int n = proto_split(p + 2, words, UZ_MAX_PAIRS);
    if (n < 0)
        return -EPROTO;
    for (int i = 0; i < n; i++) {
        char *eq = strchr(words[i], '=');
        if (!eq || eq == words[i])
            return -EPROTO;
        *eq = '\0';
        if (proto_decode(eq + 1) < 0)
            return -EPROTO;
        text_sanitize(eq + 1);
        r->pairs[r->npairs].key = words[i];
        r->pairs[r->npairs].val = eq + 1;
        r->npairs++;
    }
    return 0;
}

int uz_request(int fd, const char *req, struct uz_reply *ret)
{
    return uz_request_tick(fd, req, ret, 0, NULL, NULL);
}

int uz_request_tick(int fd, const char *req, struct uz_reply *ret, unsigned tick_ms,
                    void (*tick)(void *arg), void *arg)
{
    char out[PROTO_LINE_MAX];
    size_t len = 0, n;
    int k = snprintf(out, sizeof(out), "%s\n", req);
    int send_err = 0;

    if (k < 0 || (size_t)k >= sizeof(out))
        return -E2BIG;
    for (size_t off = 0; off < (size_t)k;) {
        ssize_t s = send(fd, out + off, (size_t)k - off, MSG_NOSIGNAL);
        if (s < 0) {
            if (errno == EINTR)
                continue;
            /* A daemon that refused us may have said why before closing:
             * read that, and report the broken send only if there is none. */
            if (errno == EPIPE || errno == ECONNRESET) {
                send_err = -errno;
                break;
            }
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        }
        off += (size_t)s;
    }
    /*
     * One request at a time, so whatever comes is this request's answer;
     * read up to its newline and no further.  SO_RCVTIMEO bounds each
     * recv(), not the answer: a daemon that trickles a byte at a time could
     * hold us for thousands of timeouts.  So the whole answer gets the
     * socket's timeout, polled for, and SO_RCVTIMEO stays as it was for the
     * next request.
     */
    struct timeval tv;
    socklen_t tvlen = sizeof(tv);
    if (getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &tvlen) < 0)
        return -errno;
    int64_t limit_ms = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    int64_t deadline_ms = now_ms() + limit_ms;
    for (;;) {
        if (limit_ms > 0) {
            int64_t left = deadline_ms - now_ms();
            /* With a tick, wake every tick_ms to call it, until the deadline. */
            bool ticking = tick && tick_ms > 0 && left > (int64_t)tick_ms;
            struct pollfd pfd = { .fd = fd, .events = POLLIN };
            int pr = left > 0 ? poll(&pfd, 1, ticking ? (int)tick_ms : (int)left) : 0;
            if (pr < 0 && errno == EINTR)
                continue;
            if (pr < 0)
                return -errno;
            if (pr == 0 && ticking) {
                tick(arg);
                continue;
            }
            if (pr == 0)
                return -ETIMEDOUT;
        }
        ssize_t s = recv(fd, ret->line + len, sizeof(ret->line) - 1 - len, 0);
        if (s < 0) {
            if (errno == EINTR)
                continue;
            if (send_err)
                return send_err;
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        }
        if (s == 0)
            return send_err ? send_err : -ECONNRESET;
        char *nl = memchr(ret->line + len, '\n', (size_t)s);
        len += (size_t)s;
        if (nl) {
            n = proto_trim_cr(ret->line, (size_t)(nl - ret->line));
            break;
        }
        if (len == sizeof(ret->line) - 1)
            return -EPROTO;
    }
    if (memchr(ret->line, '\0', n))
        return -EPROTO;
    return parse_reply(ret);
}

const char *uz_get(const struct uz_reply *r, const char *key)
{
    for (size_t i = 0; i < r->npairs; i++)
        if (strcmp(r->pairs[i].key, key) == 0)
            return r->pairs[i].val;
    return NULL;
}

int uz_get_u64(const struct uz_reply *r, const char *key, uint64_t *ret)
{
    const char *v = uz_get(r, key);

    if (!v || parse_u64(v, ret) < 0)
        return -EPROTO;
    return 0;
}
