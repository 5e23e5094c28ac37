/* SPDX-License-Identifier: MIT */
/*
 * uzramd's internal header, one section per file of src/daemon/.
 *
 * The daemon is the only part of uzram that logs and the only one that
 * decides what a failure means: the libraries below it (store, control,
 * FUSE front end) return errors, and the daemon turns them into one line
 * for the user and an exit status.
 */
#ifndef UZRAMD_H
#define UZRAMD_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Exit statuses, as the man page lists them. */
#define EXIT_STARTUP 1   /* startup or serving failed */
#define EXIT_USAGE 2     /* bad arguments */

/* ---- options.c ---------------------------------------------------------- */

struct codec_type;

struct options {
    const char *name;                /* device name, default "uzram0" */
    uint64_t size;                   /* bytes, a multiple of 4096 */
    const struct codec_type *codec;
    int level;                       /* 0: the codec's default */
    char *fuse_file;                 /* absolute, or NULL */
    char *control_path;              /* absolute */
    gid_t gid;                       /* (gid_t)-1: none */
    uint64_t mem_limit;              /* 0: none */
    unsigned compact_threshold_pct;
    char *pidfile;                   /* absolute, or NULL */
    bool foreground;
    unsigned threads;
    /* NBD: a Unix socket (absolute), a TCP address, or neither. */
    char *nbd_unix;
    char *nbd_tcp_host;              /* without brackets; NULL: no TCP */
    uint16_t nbd_tcp_port;
    bool read_only;                  /* NBD clients may not write */
    unsigned max_connections;        /* NBD clients at once */
};

/*
 * Parse the command line into *ret.  Returns 0 to go on; 1 when --help or
 * --version has been answered (exit 0); -EINVAL after printing one line
 * naming the bad argument to stderr (exit EXIT_USAGE).  Paths come back
 * absolute, because the daemon changes to / before using them.
 */
int options_parse(int argc, char **argv, struct options *ret) __attribute__((nonnull));
void options_free(struct options *o) __attribute__((nonnull));

/* ---- log.c --------------------------------------------------------------- */

/*
 * Send messages to syslog (facility daemon, ident "uzramd") instead of
 * stderr.  Called once, by the background child.
 */
void log_use_syslog(void);

void log_msgv(int priority, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- daemonize.c ---------------------------------------------------------- */

/*
 * Fork into the background.  The parent stays here, waiting for the child
 * to report, and exits: 0 once the child called daemonize_ready(), 1 (after
 * printing the child's error) otherwise.  The child returns 0 as the leader
 * of a new session, in /, with stdin, stdout and stderr on /dev/null and
 * logging to syslog.  Call it before any thread exists.  -errno if the fork
 * fails (nothing has changed then).
 */
int daemonize(void);

/* Tell the waiting parent that every front end is ready.  No-op in the foreground. */
void daemonize_ready(void);

/*
 * Tell the waiting parent that startup failed, with msg as the one line to
 * print.  No-op in the foreground.
 */
void daemonize_failed(const char *msg) __attribute__((nonnull));

/*
 * Refuse a pidfile that names a live process: -EEXIST with *ret_pid set.
 * A missing, unreadable or stale one is fine (0).
 */
int pidfile_check(const char *path, pid_t *ret_pid) __attribute__((nonnull));
/* Write our pid to path, atomically (a temporary file and a rename). */
int pidfile_write(const char *path) __attribute__((nonnull));
void pidfile_remove(const char *path) __attribute__((nonnull));

/* ---- harden.c ------------------------------------------------------------ */

/*
 * Make the process fit to serve swap: lock its memory as it is touched,
 * mark it an I/O flusher, and keep the OOM killer off it.  Each step that
 * is not permitted is named in one warning; the daemon goes on without it.
 */
void harden(void);

#endif /* UZRAMD_H */
