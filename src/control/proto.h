/* SPDX-License-Identifier: MIT */
/*
 * The control protocol's wire format (PROTOCOL.md), the rules that both
 * ends must read alike: uzramd's server (control-*.c) and uzramctl link
 * this and nothing else of each other.  Each rule has its home here: the
 * version and line limits, how a line is cut into words, how values are
 * percent-encoded, how errors are named, which verbs exist and which pages
 * a writeback or recompress selects.
 *
 * It knows neither the store nor the socket: the daemon turns a selection
 * into store flags, uzramctl turns an errno into a message.  Nothing here
 * logs or allocates; every function is safe on any thread.
 */
#ifndef UZRAM_PROTO_H
#define UZRAM_PROTO_H

#include <stdbool.h>
#include <stddef.h>

/* The protocol version both ends speak ("hello 1"). */
#define PROTO_VERSION 1
/*
 * A request line's bytes, its newline included: enough for any request of
 * protocol 1 many times over, small enough to keep a server's memory per
 * client trivial.
 */
#define PROTO_LINE_MAX 4096
/*
 * A response line's bytes, its newline included.  A response holds at most
 * two paths, percent-encoded (3 bytes per byte in the worst case); real
 * paths are short, so 8 KiB is plenty.
 */
#define PROTO_RESP_MAX 8192
/* Words in one request: a verb and its arguments. */
#define PROTO_MAX_WORDS 16

/*
 * Every verb, declared once, in the order help lists them: X(ID, name on
 * the wire).  It makes enum proto_verb (PROTO_ID) and proto_verb_name();
 * the daemon's verb table (control-verbs.c) and uzramctl's command table
 * are indexed by or name these.
 */
/* clang-format off */
#define PROTO_VERBS(X)                                                                             \
    X(HELLO, "hello")                                                                              \
    X(INFO, "info")                                                                                \
    X(STAT, "stat")                                                                                \
    X(COMPACT, "compact")                                                                          \
    X(SET, "set")                                                                                  \
    X(IDLE, "idle")                                                                                \
    X(WRITEBACK, "writeback")                                                                      \
    X(RECOMPRESS, "recompress")                                                                    \
    X(PROGRESS, "progress")                                                                        \
    X(STOP, "stop")                                                                                \
    X(HELP, "help")
/* clang-format on */

enum proto_verb {
#define PROTO_VERB_ENUM(id, name) PROTO_##id,
    PROTO_VERBS(PROTO_VERB_ENUM)
#undef PROTO_VERB_ENUM
    PROTO_VERB_MAX
};

/* The verb's name on the wire.  v must be below PROTO_VERB_MAX. */
const char *proto_verb_name(enum proto_verb v);

/* What set takes, as help and its errors list it. */
#define PROTO_SETTINGS \
    "mem-limit,compact-threshold,mem-used-max,high-watermark,low-watermark,cold-after"
/*
 * key (len bytes, not terminated) is one of PROTO_SETTINGS, with '_' taken
 * as '-' (set's keys may be written either way).  uzramctl checks every key
 * before it sends any, so that a typo changes nothing.
 */
bool proto_setting_known(const char *key, size_t len) __attribute__((nonnull));

/*
 * Which slots a writeback or recompress takes, as zram's type names them:
 * a selection is PROTO_SEL_IDLE, PROTO_SEL_HUGE, both (slots that are both),
 * or PROTO_SEL_ALL alone.
 */
enum {
    PROTO_SEL_IDLE = 1u << 0,   /* slots marked idle ("idle" verb) */
    PROTO_SEL_HUGE = 1u << 1,   /* slots holding an incompressible (raw) page */
    PROTO_SEL_ALL  = 1u << 2,   /* every slot holding data */
};

/*
 * The selection named name for verb (PROTO_WRITEBACK or PROTO_RECOMPRESS):
 * 0 and *ret_sel set, or -EINVAL for a name verb does not take.
 */
int proto_select_parse(enum proto_verb verb, const char *name, unsigned *ret_sel)
    __attribute__((nonnull));

/*
 * The names verb takes, for a message: joined by sep, the last two by
 * last_sep ("idle|huge|huge_idle|all", "idle, huge or huge_idle").  Cut to
 * fit len bytes (a NUL always ends it); returns buf.
 */
const char *proto_select_names(enum proto_verb verb, const char *sep, const char *last_sep,
                               char *buf, size_t len) __attribute__((nonnull));

/*
 * Percent-encoding of values (PROTOCOL.md, "Values"): space, '%' and every
 * byte outside 0x21..0x7e are %XX, two upper-case hex digits.
 */

/* Whether byte b goes as it is. */
bool proto_plain(unsigned char b);

/* b as it goes on the wire into out (one or three bytes, no NUL): their count. */
size_t proto_encode_byte(unsigned char b, char out[3]) __attribute__((nonnull));

/* src encoded into dst of len bytes, NUL-terminated; -ENAMETOOLONG if it does not fit. */
int proto_encode(const char *src, char *dst, size_t len) __attribute__((nonnull));

/* Decode %XX escapes in place.  -EINVAL for a malformed escape or %00. */
int proto_decode(char *s) __attribute__((nonnull));

/*
 * Drop the '\r' that may end a line of len bytes (its '\n' already gone)
 * and NUL-terminate it there: the line's new length.
 */
size_t proto_trim_cr(char *line, size_t len) __attribute__((nonnull));

/*
 * Cut a NUL-terminated line in place into words: runs of spaces separate
 * them, leading and trailing spaces are ignored.  At most max words go to
 * words; the count, or -E2BIG if there are more.
 */
int proto_split(char *line, char **words, size_t max) __attribute__((nonnull));

/*
 * The name an error goes by in "error ERRNAME" (EINVAL, ENOTSUP...), or
 * NULL for a number without one.  Linux's ENOTSUP and EOPNOTSUPP are one
 * number, which glibc names EOPNOTSUPP; the protocol says ENOTSUP.
 */
const char *proto_errno_name(int err);

/* The errno a name from "error ERRNAME" stands for; EIO for one unknown here. */
int proto_errno_from_name(const char *name) __attribute__((nonnull));

#endif
