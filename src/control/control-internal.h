/* SPDX-License-Identifier: MIT */
/*
 * What the files of the control socket server share: control.c (the
 * socket, the clients and the poll loop), control-verbs.c (the verbs and
 * the job thread), control-resp.c (responses and the request tokenizer,
 * on the rules of proto.h, which uzramctl shares).  Everything but the
 * job thread runs on the control thread, which owns every field here; the
 * job thread touches only struct job's result and done_fd (doc/control.md,
 * "Long requests").
 *
 * Roles (doc/control.md, "Who may do what"): who a client is, it says
 * once, by connecting: its uid and groups are read with SO_PEERCRED and
 * SO_PEERGROUPS at accept and never again, so nothing it sends can change
 * them.  Root, the daemon's own user and the admin group's members may
 * use every verb; the watch group's members may only watch, and each verb
 * that changes something is marked so in the verb table, which refuses it
 * with EPERM before its handler runs; anyone else is not let in.
 */
#ifndef UZRAM_CONTROL_INTERNAL_H
#define UZRAM_CONTROL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "control.h"
#include "proto.h"

/* uzramctl talks to one daemon at a time; 64 leaves room for scripts and
 * monitoring without letting a runaway client take every descriptor. */
#define CONTROL_MAX_CLIENTS 64
#define CONTROL_IDLE_MS 30000
/* After EMFILE and the like, stop accepting for a while rather than spin
 * on a listening socket that stays readable. */
#define CONTROL_ACCEPT_PAUSE_MS 1000
/* How much of a client's bad input an error message echoes. */
#define CONTROL_ECHO_MAX 64

struct client {
    int fd;
    uid_t uid;          /* SO_PEERCRED at accept: who connected */
    bool may_change;    /* uid 0, the daemon's euid or a member of admin_gid */
    bool eof;           /* the client shut down its side */
    bool closing;       /* close once out is flushed */
    bool waiting;       /* its request runs on the job thread */
    size_t in_len;
    size_t out_len, out_off;
    uint64_t deadline_ms;
    char in[PROTO_LINE_MAX];
    char out[PROTO_RESP_MAX];
};

/* JOB_BUNDLE is `recompress idle bundle`: the cold pass (store_bundle()). */
enum job_kind { JOB_WRITEBACK, JOB_RECOMPRESS, JOB_BUNDLE };

/*
 * The one long request that may run (doc/control.md, "Long requests").
 * The control thread fills it and starts the thread; the job thread writes
 * only result, then done_fd; the control thread reads result after joining
 * it.
 */
struct job {
    bool running;
    pthread_t thread;
    struct store *store;
    enum job_kind kind;
    unsigned sel;
    uint64_t arg;              /* writeback: page limit; recompress: threshold */
    int64_t result;
    int done_fd;               /* eventfd */
    struct client *client;     /* who waits for the answer; NULL once it is gone */
};

struct control {
    char *path;
    /* The daemon's euid at control_new(): its clients may change, as root's may. */
    uid_t owner;
    /* The watch and admin groups ((gid_t)-1: none), and their names for errors. */
    gid_t watch_gid, admin_gid;
    char watch_group[64], admin_group[64];
    struct store *store;
    char *name, *algorithm, *fuse_file, *nbd, *backing, *log;
    /* control_set_fuse(): set by the main thread once FUSE serves. */
    _Atomic(const char *) fuse_transport;
    atomic_uint_fast64_t fuse_buffer_bytes;
    int level;
    bool memory_locked, io_flusher, oom_protected;  /* as control_info says */
    int (*stop)(void *stop_arg, bool force, char *why, size_t len);
    void *stop_arg;
    void (*nbd_stats)(void *stop_arg, struct control_nbd_stats *ret);
    int listen_fd;
    int wake_fd;
    struct job job;
    dev_t sock_dev;
    ino_t sock_ino;
    bool started;
    pthread_t thread;
    struct client *clients[CONTROL_MAX_CLIENTS];
};

/* A response under construction, in a client's output buffer. */
struct resp {
    char *buf;
    size_t len, cap;
    bool overflow;
};

/* ---- control-resp.c ------------------------------------------------------ */

/* Append to r; past its capacity, r is marked overflowed instead. */
void resp_printf(struct resp *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void resp_ok(struct resp *r);
void resp_u64(struct resp *r, const char *key, uint64_t v);
/* key=value with value percent-encoded: see PROTOCOL.md, "Values". */
void resp_str(struct resp *r, const char *key, const char *v);
/* Replace whatever was built with "error ERRNAME message" (one printable line). */
void resp_error(struct resp *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * Split a request line (without its "\n", NUL-terminated in place, len
 * bytes of anything a client sent) into at most PROTO_MAX_WORDS words.
 * 0, or a negative errno with the error answered into r.
 */
int request_split(char *line, size_t len, char **argv, int *ret_argc, struct resp *r);

/* ---- control-verbs.c ----------------------------------------------------- */

/* A verb's handler: argv[0] is the verb; c is the client asking. */
typedef void verb_fn(struct control *ctl, struct client *c, int argc, char **argv,
                     struct resp *r);
/*
 * Answer one request line into r; or, for a long request, start it and
 * leave r empty with c->waiting set.
 */
void control_handle(struct control *ctl, struct client *c, char *line, size_t len,
                    struct resp *r);
/* The answer to the job that has just ended. */
void job_reply(const struct job *j, struct resp *r);

#endif
