/* SPDX-License-Identifier: MIT */
/*
 * uzramctl's side of the control protocol (src/control/PROTOCOL.md): open a
 * daemon's socket with a deadline, send one request line, read and parse its
 * one response line.  Nothing here prints; device.c and the commands decide
 * what the user sees.
 */
#ifndef UZRAMCTL_CLIENT_H
#define UZRAMCTL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/*
 * Pairs kept from one reply; a reply with more is -EPROTO.  stat's is the
 * longest, with about 60 (STORE_STATS in src/store/store.h and a few of the
 * daemon's): twice that leaves room for a newer daemon's figures.
 */
#define UZ_MAX_PAIRS 128

struct uz_reply {
    bool ok;
    int err;               /* when !ok: the errno the daemon named (EIO if unknown) */
    const char *errname;   /* when !ok: the name as the daemon sent it */
    const char *msg;       /* when !ok: the daemon's message, maybe "" */
    size_t npairs;
    struct {
        const char *key;
        const char *val;   /* percent-decoded; bad UTF-8 made '?' */
    } pairs[UZ_MAX_PAIRS];
    char line[PROTO_RESP_MAX + 1];
};

/*
 * Connect to the socket at path; every later send on the returned
 * descriptor, and every answer uz_request() waits for, as a whole, fails
 * with -ETIMEDOUT after timeout_s seconds.
 * Returns the descriptor or -errno (-ENOENT or -ECONNREFUSED: no daemon
 * there).
 */
int uz_connect(const char *path, unsigned timeout_s) __attribute__((nonnull));

/*
 * Send req (one line, without its newline) and read the answer into *ret.
 * Returns 0 when an answer came (ret->ok says which kind), or -errno:
 * -ETIMEDOUT, -EPROTO (the answer was not a response line), -ECONNRESET
 * (the daemon closed the connection), or what send/recv said.
 */
int uz_request(int fd, const char *req, struct uz_reply *ret) __attribute__((nonnull));

/*
 * uz_request(), calling tick(arg) every tick_ms while the answer has not
 * come (a long job's progress, asked on another connection).  The deadline
 * is the same; tick may not use fd.
 */
int uz_request_tick(int fd, const char *req, struct uz_reply *ret, unsigned tick_ms,
                    void (*tick)(void *arg), void *arg) __attribute__((nonnull(2, 3)));

/* The value of key in an ok reply, or NULL. */
const char *uz_get(const struct uz_reply *r, const char *key) __attribute__((nonnull));

/* The value of key as an unsigned integer: 0, or -EPROTO if missing or not one. */
int uz_get_u64(const struct uz_reply *r, const char *key, uint64_t *ret) __attribute__((nonnull));

#endif
