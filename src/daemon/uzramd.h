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

/* ---- config.c ----------------------------------------------------------- */

/*
 * A configuration file's settings as the long options they stand for
 * ("--size=1G"), with the line each came from.
 */
struct config_args {
    char **argv;
    unsigned *lines;
    size_t n;
};

/*
 * Read the file at path (uzram.conf(5)).  On a syntax error, an unknown
 * key, a bad boolean or a relative path, logs one line naming FILE:LINE and
 * returns -EINVAL; the values themselves are checked by options_parse().
 */
int config_read(const char *path, struct config_args *ret) __attribute__((nonnull));
void config_args_free(struct config_args *a) __attribute__((nonnull));

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
    uint64_t reserve;                /* bytes held ready (store_config.reserve); 0: none */
    bool reserve_given;              /* --reserve was given: not the default */
    char *pidfile;                   /* absolute, or NULL */
    bool foreground;
    unsigned threads;
    /* NBD: a Unix socket (absolute), a TCP address, or neither. */
    char *nbd_unix;
    char *nbd_tcp_host;              /* without brackets; NULL: no TCP */
    uint16_t nbd_tcp_port;
    bool read_only;                  /* NBD clients may not write */
    unsigned max_connections;        /* NBD clients at once */
    /* The evict path (see uzramd(8), EVICTION). */
    char *backing;                   /* an absolute path or an NBD URI, or NULL */
    bool backing_raw;                /* --backing-format raw */
    unsigned high_wm_pct, low_wm_pct;
    unsigned evict_policy;           /* enum store_evict_policy */
    const struct codec_type *recomp_codec;   /* NULL: no recompression */
    int recomp_level;                /* 0: the codec's default */
    /* The last option given that means nothing without --backing, or NULL. */
    const char *backing_only;
    char *config_file;               /* absolute, or NULL */
    struct config_args config;       /* the file's settings; name may point into them */
};

/*
 * Parse the command line, and the --config file ahead of it, into *ret.
 * Returns 0 to go on; 1 when --help or --version has been answered (exit
 * 0); -EINVAL after logging one line naming the bad argument, or the file
 * and line of a bad setting (exit EXIT_USAGE).  Paths come back absolute,
 * resolved against the directory that was current at the first call:
 * the daemon changes to / before using them, and SIGHUP parses the same
 * argv again to re-read the file.  argv itself is not reordered.
 */
int options_parse(int argc, char **argv, struct options *ret) __attribute__((nonnull));
void options_free(struct options *o) __attribute__((nonnull));

/* ---- notify.c ----------------------------------------------------------- */

/*
 * Tell the service manager about our state (sd_notify(3)'s protocol):
 * state is one or more "KEY=value" lines.  A no-op (0) without
 * $NOTIFY_SOCKET; otherwise 0 or -errno.  Safe from any thread.
 */
int notify(const char *state) __attribute__((nonnull));
int notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Is a service manager listening? */
bool notify_enabled(void);

/* ---- listen.c ------------------------------------------------------------ */

/* At most this many sockets are taken from the service manager. */
#define LISTEN_FDS_MAX 8

struct listen_socket {
    int fd;
    int family;                  /* AF_UNIX, AF_INET or AF_INET6 */
    char address[128];           /* "unix:PATH" or "tcp:HOST:PORT", as uzramctl shows it */
    char path[108];              /* AF_UNIX: the socket's path */
    char host[64];               /* AF_INET/6: numeric, without brackets */
    uint16_t port;
};

/*
 * Take the listening sockets passed by socket activation ($LISTEN_PID,
 * $LISTEN_FDS, descriptors from 3): each made close-on-exec and described.
 * The variables are removed from the environment.  Returns how many (0:
 * none passed, or not to us), or -EINVAL after logging why (more than
 * LISTEN_FDS_MAX, or one is not a listening stream socket).  *ret is
 * allocated when the result is positive.
 */
int listen_fds_take(struct listen_socket **ret) __attribute__((nonnull));

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

/* What harden() was granted. */
struct hardening {
    bool memory_locked;         /* mlockall() in force */
    bool io_flusher;            /* PR_SET_IO_FLUSHER accepted */
    bool oom_protected;         /* oom_score_adj -1000 */
};

/*
 * Make the process fit to serve swap: lock its memory as it is touched,
 * mark it an I/O flusher, and keep the OOM killer off it.  Each step that
 * is not permitted is named in one warning; the daemon goes on without it,
 * and *ret says which were granted (uzramctl stat shows them).
 */
void harden(struct hardening *ret) __attribute__((nonnull));

/*
 * For the store's refill thread: give up the I/O flusher flag, so that its
 * allocations may do I/O and, when nothing else helps, call the OOM killer,
 * rather than retry for ever.  No request waits on that thread.  It also
 * asks for a higher priority (nice) than the I/O threads.
 */
void harden_refill_thread(void);

/*
 * For each NBD connection's reply sender: the lowest realtime priority, so
 * that the socket buffer its sendmsg() needs may come from below the min
 * watermark, where the program swapping cannot reach (harden.c).  Only
 * asked, never required.
 */
void harden_reply_thread(void);

/* Free memory under which the machine is short (store_config.low_free). */
uint64_t harden_low_free(void);

#endif /* UZRAMD_H */
