/* SPDX-License-Identifier: MIT */
/*
 * The control protocol's wire format, shared by uzramd and uzramctl
 * (proto.h).  Two tables, the verbs and the selections, and the codings
 * every value and line goes through.  A rule changed here changes for both
 * ends at once, which is the point: before, each end had its own copy.
 */
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static const char *const verb_names[PROTO_VERB_MAX] = {
#define PROTO_VERB_NAME(id, name) [PROTO_##id] = name,
    PROTO_VERBS(PROTO_VERB_NAME)
#undef PROTO_VERB_NAME
};

const char *proto_verb_name(enum proto_verb v)
{
    return verb_names[v];
}

bool proto_setting_known(const char *key, size_t len)
{
    const char *p = PROTO_SETTINGS;

    for (;;) {
        size_t n = strcspn(p, ",");
        bool same = n == len;
        for (size_t i = 0; same && i < n; i++)
            same = p[i] == (key[i] == '_' ? '-' : key[i]);
        if (same)
            return true;
        if (!p[n])
            return false;
        p += n + 1;
    }
}

#define VERB_BIT(v) (1u << (v))

/* The selections, in the order messages list them.  recompress takes no "all". */
static const struct select {
    const char *name;
    unsigned sel;
    unsigned verbs;   /* VERB_BIT of each verb that takes it */
} selects[] = {
    { "idle", PROTO_SEL_IDLE, VERB_BIT(PROTO_WRITEBACK) | VERB_BIT(PROTO_RECOMPRESS) },
    { "huge", PROTO_SEL_HUGE, VERB_BIT(PROTO_WRITEBACK) | VERB_BIT(PROTO_RECOMPRESS) },
    { "huge_idle", PROTO_SEL_HUGE | PROTO_SEL_IDLE,
      VERB_BIT(PROTO_WRITEBACK) | VERB_BIT(PROTO_RECOMPRESS) },
    { "all", PROTO_SEL_ALL, VERB_BIT(PROTO_WRITEBACK) },
};

#define NSELECTS (sizeof(selects) / sizeof(selects[0]))

int proto_select_parse(enum proto_verb verb, const char *name, unsigned *ret_sel)
{
    for (size_t i = 0; i < NSELECTS; i++) {
        if ((selects[i].verbs & VERB_BIT(verb)) && strcmp(selects[i].name, name) == 0) {
            *ret_sel = selects[i].sel;
            return 0;
        }
    }
    return -EINVAL;
}

const char *proto_select_names(enum proto_verb verb, const char *sep, const char *last_sep,
                               char *buf, size_t len)
{
    size_t n = 0, left = 0, w = 0;

    for (size_t i = 0; i < NSELECTS; i++)
        n += (selects[i].verbs & VERB_BIT(verb)) != 0;
    if (len == 0)
        return buf;
    buf[0] = '\0';
    for (size_t i = 0; i < NSELECTS; i++) {
        if (!(selects[i].verbs & VERB_BIT(verb)))
            continue;
        const char *s = left == 0 ? "" : left == n - 1 ? last_sep : sep;
        int k = snprintf(buf + w, len - w, "%s%s", s, selects[i].name);
        if (k < 0 || (size_t)k >= len - w)
            break;
        w += (size_t)k;
        left++;
    }
    return buf;
}

bool proto_plain(unsigned char b)
{
    return b > ' ' && b < 0x7f && b != '%';
}

size_t proto_encode_byte(unsigned char b, char out[3])
{
    static const char hex[] = "0123456789ABCDEF";

    if (proto_plain(b)) {
        out[0] = (char)b;
        return 1;
    }
    out[0] = '%';
    out[1] = hex[b >> 4];
    out[2] = hex[b & 15];
    return 3;
}

int proto_encode(const char *src, char *dst, size_t len)
{
    size_t w = 0;

    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        char e[3];
        size_t k = proto_encode_byte(*p, e);
        if (w + k >= len)
            return -ENAMETOOLONG;
        memcpy(dst + w, e, k);
        w += k;
    }
    if (w >= len)
        return -ENAMETOOLONG;
    dst[w] = '\0';
    return 0;
}

int proto_decode(char *s)
{
    char *w = s;

    for (const char *p = s; *p; p++) {
        if (*p != '%') {
            *w++ = *p;
            continue;
        }
        /* hi first: a NUL in its place ends the string, never read past. */
        int hi = hex_digit(p[1]), lo = hi < 0 ? -1 : hex_digit(p[2]);
        if (lo < 0 || (hi | lo) == 0)
            return -EINVAL;
        *w++ = (char)(hi * 16 + lo);
        p += 2;
    }
    *w = '\0';
    return 0;
}

size_t proto_trim_cr(char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    line[len] = '\0';
    return len;
}

int proto_split(char *line, char **words, size_t max)
{
    size_t n = 0;

    for (char *p = line; *p;) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        if (n == max)
            return -E2BIG;
        words[n++] = p;
        p += strcspn(p, " ");
        if (*p)
            *p++ = '\0';
    }
    return (int)n;
}

const char *proto_errno_name(int err)
{
    return err == ENOTSUP ? "ENOTSUP" : strerrorname_np(err);
}

int proto_errno_from_name(const char *name)
{
    if (strcmp(name, "ENOTSUP") == 0)
        return ENOTSUP;
    /* Linux's errno values end well below 200.  glibc's own names count
     * too: a server may say EOPNOTSUPP. */
    for (int e = 1; e < 200; e++) {
        const char *n = strerrorname_np(e);
        if (n && strcmp(n, name) == 0)
            return e;
    }
    return EIO;
}
