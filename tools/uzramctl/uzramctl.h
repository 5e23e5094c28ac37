/* SPDX-License-Identifier: MIT */
/*
 * What uzramctl's files share, sectioned by the file that exports each
 * item.  Calls go one way only, from the top of this list down:
 *   uzramctl.c   main: options, the command table, usage
 *   list.c       the list command and its table
 *   commands.c   the other commands
 *   device.c     a DEVICE argument to a connected, greeted daemon
 *   report.c     messages on stderr
 *   client.c     the socket exchange itself (client.h), on proto.c's rules
 * uzramctl is single-threaded; nothing here locks.
 */
#ifndef UZRAMCTL_H
#define UZRAMCTL_H

#include <stdbool.h>
#include <stddef.h>

#include "client.h"
#include "util.h"

#define EXIT_USAGE 2

/* Seconds to wait for a daemon.  Compaction of a large, fragmented pool
 * under load can take a while; everything else is answered at once. */
#define TIMEOUT_LIST 2
#define TIMEOUT_QUERY 5
#define TIMEOUT_COMPACT 30
/*
 * writeback and recompress walk the whole device, and a writeback of
 * gigabytes to a slow NBD server takes minutes: the daemon answers when it
 * is done (other clients are served meanwhile).  An hour is past any real
 * run and still ends a wait for a daemon that hung.
 */
#define TIMEOUT_LONG 3600
/* How often a long job's progress line is brought up to date, in ms. */
#define TICK_MS 200

/* ---- report.c ----------------------------------------------------------- */

/* "uzramctl: MESSAGE (try 'uzramctl --help')" and exit with EXIT_USAGE. */
void die_usage(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* "uzramctl: MESSAGE" on stderr. */
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- device.c ----------------------------------------------------------- */

struct device {
    const char *arg;      /* as the user gave it, for messages */
    char path[108];       /* the control socket (sun_path's size) */
    char name[UZRAM_NAME_MAX + 1];
    int fd;               /* -1 while not connected */
    unsigned timeout;
};

/* --dir: where sockets are looked for instead of uzram_run_dir(); dir is kept. */
void device_set_run_dir(const char *dir) __attribute__((nonnull));
/* --dir was given: its directory must exist, where the default one may not yet. */
bool device_run_dir_given(void);
/* The run directory in use into buf: 0 or -ENAMETOOLONG (or uzram_run_dir()'s error). */
int device_run_dir(char *buf, size_t len) __attribute__((nonnull));
/*
 * arg names a device whose control socket is there (a name in the run
 * directory, or a path): `uzramctl DEVICE` then lists it, as `zramctl
 * zram0` does.  Never exits.
 */
bool device_socket_exists(const char *arg) __attribute__((nonnull));
/* Work out DEVICE's socket; a bad DEVICE is a usage error (exits). */
void device_resolve(struct device *d, const char *arg) __attribute__((nonnull));
/*
 * Connect and agree on the protocol.  0, or -errno of the connection
 * (reported unless quiet_missing and there is no daemon), or -EPROTO for a
 * daemon that will not speak our protocol (reported).
 */
int device_open(struct device *d, unsigned timeout, bool quiet_missing) __attribute__((nonnull));
/* Whether device_open()'s error e means that no daemon is there. */
bool device_missing(int e);
/*
 * Send req and read its answer.  0 when the daemon answered ok; otherwise
 * the error has been reported (what names the request) and -1 returned.
 */
int device_call(struct device *d, const char *req, const char *what, struct uz_reply *r)
    __attribute__((nonnull));
/* device_call(), calling tick(arg) every TICK_MS until the answer comes. */
int device_call_tick(struct device *d, const char *req, const char *what, struct uz_reply *r,
                     void (*tick)(void *arg), void *arg) __attribute__((nonnull(1, 2, 3, 4)));
/* Report a failed exchange with d (err an errno) in one line. */
void device_error(const struct device *d, const char *what, int err) __attribute__((nonnull));
/* Close the connection, if any. */
void device_close(struct device *d) __attribute__((nonnull));

/* ---- uzramctl.c --------------------------------------------------------- */

/* What the command line says, for the command it names. */
struct cmdline {
    const struct list_opts *list;  /* list's options, and --json for stat */
    const char *limit;             /* writeback --limit, or NULL */
    const char *threshold;         /* recompress --threshold, or NULL */
    bool bundle;                   /* recompress --bundle */
    bool force;                    /* stop --force */
    int nargs;                     /* the words after the command */
    char **args;
};

/* A command: the exit status it returns. */
typedef int cmd_fn(const struct cmdline *cl);

/* ---- list.c ------------------------------------------------------------- */

/* Columns in one --output: room for each twice over (list.c checks). */
#define LIST_MAX_COLS 28

/* list's options (the table's columns and form), filled by main. */
struct list_opts {
    int cols[LIST_MAX_COLS];
    size_t ncols;
    bool bytes, raw, noheadings, json;
};

/* The default columns. */
void list_opts_init(struct list_opts *o) __attribute__((nonnull));
/* --output LIST; "+LIST" adds to the columns so far.  A bad LIST exits. */
void list_parse_output(struct list_opts *o, const char *list) __attribute__((nonnull));
/* --output-all. */
void list_output_all(struct list_opts *o) __attribute__((nonnull));
/* The columns' names and help, for --help. */
void list_print_columns(void);
cmd_fn cmd_list;

/* ---- commands.c --------------------------------------------------------- */

cmd_fn cmd_stat;
cmd_fn cmd_compact;
cmd_fn cmd_set;
cmd_fn cmd_idle;
cmd_fn cmd_writeback;
cmd_fn cmd_recompress;
cmd_fn cmd_stop;

#endif
