/* SPDX-License-Identifier: MIT */
/*
 * The server's side of the wire format (PROTOCOL.md; the rules both ends
 * share are in proto.c): request lines checked and split into words, and
 * responses built in a client's fixed output buffer.  A response that does
 * not fit is marked overflowed, never cut silently; an error message is
 * made one printable line whatever the client's words it quotes hold.
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
    resp_printf(r, " %s=", key);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        char e[3];
        resp_append(r, e, proto_encode_byte(*p, e));
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
    const char *name = proto_errno_name(err);
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

int request_split(char *line, size_t len, char **argv, int *ret_argc, struct resp *r)
{
    int argc;

    len = proto_trim_cr(line, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)line[i];
        if (b < ' ' || b >= 0x7f) {
            resp_error(r, EINVAL, "request holds byte 0x%02x at %zu: only printable ASCII", b, i);
            return -EINVAL;
        }
    }
    argc = proto_split(line, argv, PROTO_MAX_WORDS);
    if (argc == -E2BIG) {
        resp_error(r, E2BIG, "more than %d words", PROTO_MAX_WORDS);
        return -E2BIG;
    }
    if (argc == 0) {
        resp_error(r, EINVAL, "empty request");
        return -EINVAL;
    }
    *ret_argc = argc;
    return 0;
}
