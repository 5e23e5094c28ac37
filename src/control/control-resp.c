/* SPDX-License-Identifier: MIT */
/*
 * The control protocol's wire format (PROTOCOL.md): request lines split
 * into words, percent-decoding of values, and responses built in a
 * client's fixed output buffer.  A response that does not fit is marked
 * overflowed, never cut silently; an error message is made one printable
 * line whatever the client's words it quotes hold.
 */
#include "control-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void resp_append(struct resp *r, const char *s, size_t n)
{
    if (r->overflow || n > r->cap - r->len) {
        r->overflow = true;
        return;
    }
    memcpy(r->buf + r->len, s, n);
    r->len += n;
}

void resp_printf(struct resp *r, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (r->overflow)
        return;
    va_start(ap, fmt);
    n = vsnprintf(r->buf + r->len, r->cap - r->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= r->cap - r->len) {
        r->overflow = true;
        return;
    }
    r->len += (size_t)n;
}

void resp_ok(struct resp *r)
{
    resp_append(r, "ok", 2);
}

void resp_u64(struct resp *r, const char *key, uint64_t v)
{
    resp_printf(r, " %s=%" PRIu64, key, v);
}

/* key=value with value percent-encoded: see PROTOCOL.md, "Values". */
void resp_str(struct resp *r, const char *key, const char *v)
{
    static const char hex[] = "0123456789ABCDEF";

    resp_printf(r, " %s=", key);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p > ' ' && *p < 0x7f && *p != '%') {
            resp_append(r, (const char *)p, 1);
        } else {
            char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
            resp_append(r, e, 3);
        }
    }
}

/*
 * Replace whatever was built with "error ERRNAME message".  The message is
 * ours, but it may quote the client's words, and a quoted value has been
 * percent-decoded: it may hold a newline or any other byte.  Those become
 * '?', so that the answer stays one printable line.
 */
void resp_error(struct resp *r, int err, const char *fmt, ...)
{
    /*
     * Linux's ENOTSUP and EOPNOTSUPP are one number, which glibc names
     * EOPNOTSUPP, a socket operation's error; ENOTSUP is what we mean.
     */
    const char *name = err == ENOTSUP ? "ENOTSUP" : strerrorname_np(err);
    va_list ap;
    int n;

    r->len = 0;
    r->overflow = false;
    resp_printf(r, "error %s ", name ? name : "EIO");
    va_start(ap, fmt);
    n = vsnprintf(r->buf + r->len, r->cap - r->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    /* A message too long for the buffer is cut; the code still stands. */
    size_t end = r->len + ((size_t)n < r->cap - r->len ? (size_t)n : r->cap - r->len - 1);
    for (; r->len < end; r->len++) {
        unsigned char c = (unsigned char)r->buf[r->len];
        if (c < ' ' || c >= 0x7f)
            r->buf[r->len] = '?';
    }
}

/* Decode %XX escapes in place.  -EINVAL for a malformed escape or a NUL. */
int pct_decode(char *s)
{
    char *w = s;

    for (const char *p = s; *p; p++) {
        if (*p != '%') {
            *w++ = *p;
            continue;
        }
        unsigned v = 0;
        for (int i = 1; i <= 2; i++) {
            char c = p[i];
            unsigned d;
            if (c >= '0' && c <= '9')
                d = (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                d = (unsigned)(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                d = (unsigned)(c - 'A' + 10);
            else
                return -EINVAL;
            v = v * 16 + d;
        }
        if (v == 0)
            return -EINVAL;
        *w++ = (char)v;
        p += 2;
    }
    *w = '\0';
    return 0;
}

int request_split(char *line, size_t len, char **argv, int *ret_argc, struct resp *r)
{
    int argc = 0;

    if (len > 0 && line[len - 1] == '\r')
        line[--len] = '\0';
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)line[i];
        if (b < ' ' || b >= 0x7f) {
            resp_error(r, EINVAL, "request holds byte 0x%02x at %zu: only printable ASCII", b, i);
            return -EINVAL;
        }
    }
    for (char *p = line; *p;) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        if (argc == CONTROL_MAX_WORDS) {
            resp_error(r, E2BIG, "more than %d words", CONTROL_MAX_WORDS);
            return -E2BIG;
        }
        argv[argc++] = p;
        p += strcspn(p, " ");
        if (*p)
            *p++ = '\0';
    }
    if (argc == 0) {
        resp_error(r, EINVAL, "empty request");
        return -EINVAL;
    }
    *ret_argc = argc;
    return 0;
}
