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

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "clock.h"

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
    unsigned fuse_transport;         /* enum fuse_export_transport */
    char *control_path;              /* absolute */
    gid_t gid;                       /* --control-group (watch); -1: none */
    gid_t admin_gid;                 /* --admin-group (change); -1: none */
    gid_t nbd_gid;                   /* --nbd-group: the NBD Unix socket's; -1: none */
    uint64_t mem_limit;              /* 0: none */
    unsigned compact_threshold_pct;
    uint64_t reserve;                /* bytes held ready (store_config.reserve); 0: none */
    bool reserve_given;              /* --reserve was given: not the default */
    char *pidfile;                   /* absolute, or NULL */
    bool foreground;
    /* --log: "syslog", "stderr" or an absolute path; NULL: the default (main.c) */
    char *log;
    unsigned threads;
    /* NBD: a Unix socket (absolute), a TCP address, or neither. */
    char *nbd_unix;
    char *nbd_tcp_host;              /* without brackets; NULL: no TCP */
    uint16_t nbd_tcp_port;
    bool read_only;                  /* NBD clients may not write */
    unsigned max_connections;        /* NBD clients at once, on each socket */
    unsigned handshake_timeout;      /* seconds an NBD client has to finish its handshake */
    unsigned send_timeout;           /* seconds a reply may make no progress; 0: none */
    bool send_timeout_given;         /* --send-timeout given: it holds on Unix sockets too */
    unsigned idle_timeout;           /* seconds an NBD client may idle; 0: for ever */
    unsigned tls;                    /* enum nbd_tls_mode, for every NBD listener */
    bool tls_given;                  /* --tls was given: required with --nbd-tcp */
    char *tls_psk;                   /* absolute, or NULL */
    char *tls_certificates;          /* a directory, absolute, or NULL */
    /* The evict path (see uzramd(8), EVICTION). */
    char *backing;                   /* an absolute path or an NBD URI, or NULL */
    bool backing_raw;                /* --backing-format raw */
    unsigned backing_timeout;        /* seconds an NBD backing request may take */
    bool backing_force;              /* adopt a file or device without uzram's header */
    unsigned high_wm_pct, low_wm_pct;
    unsigned evict_policy;           /* enum store_evict_policy */
    const struct codec_type *recomp_codec;   /* NULL: no recompression */
    int recomp_level;                /* 0: the codec's default */
    const struct codec_type *cold_codec; /* bundles' codec; NULL: no bundles */
    int cold_level;                      /* 0: the store's default */
    unsigned cold_after;                 /* seconds; 0: bundles on request only */
    /*
     * The name (option_table's, without "--") of the last option given
     * that means nothing without --backing, or NULL.
     */
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

/* ---- options-table.c ----------------------------------------------------- */

/* uzramd's options, in the order --help lists them (in rows: clang-format would make 29 lines). */
/* clang-format off */
enum option_id {
    OPT_CONFIG, OPT_NAME, OPT_SIZE, OPT_ALGORITHM, OPT_LEVEL, OPT_FUSE, OPT_FUSE_TRANSPORT,
    OPT_NBD_UNIX, OPT_NBD_GROUP, OPT_NBD_TCP, OPT_READ_ONLY, OPT_MAX_CONNECTIONS,
    OPT_HANDSHAKE_TIMEOUT, OPT_SEND_TIMEOUT, OPT_IDLE_TIMEOUT, OPT_TLS,
    OPT_TLS_PSK, OPT_TLS_CERTIFICATES, OPT_CONTROL,
    OPT_CONTROL_GROUP, OPT_GROUP, OPT_ADMIN_GROUP, OPT_MEM_LIMIT, OPT_COMPACT, OPT_RESERVE, OPT_BACKING, OPT_BACKING_FORCE, OPT_BACKING_FORMAT, OPT_BACKING_TIMEOUT,
    OPT_HIGH_WM, OPT_LOW_WM, OPT_EVICT_POLICY, OPT_RECOMP_ALGORITHM, OPT_RECOMP_LEVEL,
    OPT_COLD_ALGORITHM, OPT_COLD_LEVEL, OPT_COLD_AFTER,
    OPT_PIDFILE, OPT_FOREGROUND, OPT_LOG, OPT_THREADS, OPT_HELP, OPT_VERSION,
    OPTION_MAX
};
/* clang-format on */

/* What an option is in the configuration file (uzram.conf(5)). */
enum option_key {
    OPTION_KEY_NONE,            /* not a key: the command line only */
    OPTION_KEY_VALUE,           /* "key = value" stands for "--key=value" */
    OPTION_KEY_PATH,            /* the same, and the value must be an absolute path */
    OPTION_KEY_SPEC,            /* an absolute path, or an NBD URI (backing_spec_is_uri) */
    OPTION_KEY_BOOL,            /* yes or no: "--key" when yes, nothing when no */
};

/* The codec when --algorithm is not given. */
#define OPTION_DEFAULT_CODEC "lz4"

/* The option means nothing without --backing (see options.backing_only). */
#define OPTION_BACKING_ONLY (1u << 0)

/*
 * One option: everything the command line, the configuration file and
 * --help know about it.
 */
struct option_def {
    const char *name;           /* the long option, and the file's key */
    char short_name;            /* 0: none */
    const char *metavar;        /* the value as --help names it; NULL: takes none */
    enum option_key key;
    unsigned flags;             /* OPTION_* */
    /*
     * Check arg and store it in *o.  Returns 0; 1 when the option has
     * answered (--help, --version: exit 0); or -EINVAL, for options.c to
     * report arg as a bad value that should have been `want`.  NULL: the
     * value is only recorded, and options.c checks it once every option
     * is in (the codec, the levels, the control socket).
     */
    int (*set)(const struct option_def *def, struct options *o, const char *arg)
        __attribute__((nonnull(1, 2)));
    size_t field;               /* set's target: an offset in struct options */
    long min, max;              /* set_uint's range */
    const char *want;           /* what a bad value should have been */
    /* --help's text: '\n' starts an indented line, {codecs} lists the codecs. */
    const char *help;
};

extern const struct option_def option_table[OPTION_MAX];

/* The entry whose configuration-file key is key, or NULL if it is none. */
const struct option_def *option_key_find(const char *key) __attribute__((nonnull));

/* Set every field of *o that has a fixed default; the rest is left alone. */
void option_defaults(struct options *o) __attribute__((nonnull));
/* The reserve when --reserve is not given: it grows with --mem-limit. */
uint64_t option_default_reserve(uint64_t mem_limit);

/* A decimal in [min, max]: 0, or -EINVAL (*ret untouched). */
int option_parse_int(const char *s, long min, long max, long *ret) __attribute__((nonnull));
/*
 * path made absolute against the directory that was current at the first
 * call (see options_parse()); NULL if out of memory.
 */
char *option_absolute(const char *path) __attribute__((nonnull));

/* --help, on stdout. */
void option_usage(void);

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

/* Where messages go: stderr until told otherwise (uzramd(8), LOGGING). */
enum log_target {
    LOG_TARGET_STDERR,
    LOG_TARGET_SYSLOG, /* facility daemon, ident "uzramd", with the pid */
    LOG_TARGET_FILE,   /* timestamped lines appended to a file */
    LOG_TARGET_MAX
};

/*
 * Send messages to syslog from now on.  Once, on the main thread, after
 * daemonize() (which would close its socket).
 */
void log_use_syslog(void);
/*
 * Send messages to the file at path (absolute) from now on: opened for
 * appending, created with mode 0600 (its directory must exist).  Once, on
 * the main thread, before any thread exists.  0, or -errno: ELOOP for a
 * symbolic link, EINVAL for anything but a regular file, open()'s
 * errors; nothing changes then.
 */
int log_use_file(const char *path) __attribute__((nonnull));
/*
 * Open the log file's path again and write there from now on (SIGHUP,
 * after a rotation moved the file).  0, also when not logging to a file;
 * or -errno as log_use_file(), and the old file stays in use.
 */
int log_reopen(void);
enum log_target log_target(void);
/* The log file's descriptor, or -1 when not logging to a file. */
int log_file_fd(void);
/* "stderr", "syslog" or the file's path: what uzramctl stat shows. */
const char *log_where(void);

void log_msgv(int priority, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- daemonize.c ---------------------------------------------------------- */

/*
 * Fork into the background.  The parent stays here, waiting for the child
 * to report, and exits: 0 once the child called daemonize_ready() (after
 * printing note as "uzramd: NOTE", unless note is NULL), 1 (after printing
 * the child's error) otherwise.  The child returns 0 as the leader of a
 * new session, in /, with stdin and stdout on /dev/null, and stderr too
 * unless the log goes there (log_target()); the log file stays open.
 * Call it before any thread exists.  -errno if the fork fails (nothing has
 * changed then).
 */
int daemonize(const char *note);

/* Tell the waiting parent that every front end is ready.  No-op in the foreground. */
void daemonize_ready(void);

/*
 * Tell the waiting parent that startup failed, with msg as the one line to
 * print.  In the foreground, print it on stderr if the log goes elsewhere
 * (the user is there to read it).
 */
void daemonize_failed(const char *msg) __attribute__((nonnull));

/*
 * Refuse a pidfile that names a live process: -EEXIST with *ret_pid set.
 * A missing, unreadable or stale one is fine (0).
 */
int pidfile_check(const char *path, pid_t *ret_pid) __attribute__((nonnull));
/*
 * Write our pid to path, atomically (a temporary file of a random name,
 * made with O_EXCL, then a rename) and return its descriptor, which holds
 * an exclusive flock() on it: keep it open while the daemon lives.  Or
 * -errno.
 */
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
 * The same, and the lowest realtime priority on top (harden_reply_thread()):
 * for a device served over NBD only (harden.c says why not with FUSE).
 */
void harden_refill_thread_rt(void);

/* For the store's cold thread (--cold-after): the lowest priority (nice 19). */
void harden_cold_thread(void);

/*
 * For each NBD connection's reply sender: the lowest realtime priority, so
 * that the socket buffer its sendmsg() needs may come from below the min
 * watermark, where the program swapping cannot reach (harden.c).  Only
 * asked, never required.
 */
void harden_reply_thread(void);

/* Free memory under which the machine is short (store_config.low_free). */
uint64_t harden_low_free(void);

/* ---- The daemon's state: main.c and the files of its phases --------------- */

/*
 * main() starts the daemon (startup.c), serves (serve.c, which looks at
 * the device's health through watch.c and re-reads the settings through
 * reload.c) and stops it (teardown.c).  Calls go one way, down this list:
 * main.c, startup.c, serve.c, reload.c, teardown.c, watch.c, signals.c; a
 * file never calls one above it.
 */

struct store;
struct control;
struct fuse_export;
struct nbd_export;
struct backing;

/*
 * How often the STATUS= line's figures are renewed and the backing store
 * and the reserve are looked at: often enough for `systemctl status` to be
 * current, rarely enough to cost nothing.
 */
#define STATUS_INTERVAL_MS 5000
/* How often the memory rescue looks (watch_memory()). */
#define MEMORY_CHECK_MS 1000

/*
 * Everything the daemon holds, on main()'s stack.  Only the main thread
 * reads or writes it: the store and the front ends run threads of their
 * own, behind their own interfaces.
 */
struct daemon {
    int argc;                   /* the command line, parsed again by a reload */
    char **argv;
    struct options opt;
    int level;                  /* the codec level in effect */
    int sigfd;
    struct store *store;
    struct control *control;
    struct fuse_export *fuse;   /* NULL without --fuse */
    struct nbd_export *nbd;     /* NULL without --nbd-unix or --nbd-tcp */
    struct nbd_tls_creds *tls_creds; /* --tls-psk or --tls-certificates, read at start */
    char *nbd_address;          /* what uzramctl shows: "unix:PATH,tcp:HOST:PORT" */
    int pidfile_fd;             /* locked while we live; -1: none written */
    struct listen_socket *passed;   /* socket activation: the manager's sockets */
    int npassed;                /* how many; those the NBD export took have fd -1 */
    bool passed_unix;           /* one of them is the --nbd-unix path */
    bool passed_tcp;            /* one of them is the --nbd-tcp address */
    struct backing *backing;    /* NULL without --backing */
    struct hardening hardening; /* what harden() was granted */
    /* What the last look at the backing store's counts saw (watch_backing()). */
    uint64_t bd_read_errors, bd_write_errors;
    bool bd_connected;
    /* What the last look at the reserve saw (watch_reserve()). */
    uint64_t reserve_misses, reserve_released;
    /* /proc/sysrq-trigger, opened at start (root only); -1: no OOM rescue. */
    int sysrq_fd;
    /* A PSI trigger on /proc/pressure/memory (full stalls), or -1. */
    int psi_fd;
    uint64_t psi_full_usec;     /* when it last fired */
    uint64_t oom_asked_usec;    /* when watch_memory() last asked */
    /* watch_memory()'s second sign: the machine's low mark, and the stretch. */
    uint64_t low_free;          /* harden_low_free(), for the store too */
    uint64_t starve_misses;     /* reserve_misses at the last look */
    uint64_t starve_since_usec; /* when writes began to fail (0: no stretch) */
    uint64_t starve_last_usec;  /* the last look that saw one fail */
    /* watch_memory()'s third sign: requests begun at the last look, and the
     * look after which none came, while memory stalled (0: none such). */
    uint64_t silent_reqs;
    uint64_t silent_since_usec;
    /*
     * "uzramctl stop" (request_stop(), on the control thread): it writes
     * stop_fd, an eventfd that serve() polls.  stop_lock keeps it off the
     * front ends until startup() has built them all and once teardown() has
     * begun to free them.
     */
    int stop_fd;
    pthread_mutex_t stop_lock;
    bool serving;           /* under stop_lock: startup() is done */
    bool stopping;          /* under stop_lock: teardown() has begun */
    atomic_bool stop_force; /* abort the FUSE file's users at once */
};

/* ---- teardown.c ----------------------------------------------------------- */

/*
 * control_info.stop: tell serve() to stop, unless the device is in use
 * (the FUSE file open, an NBD client connected) and force is false: then
 * -EBUSY and what uses it in why.  With force, teardown() aborts the FUSE
 * file's users at once rather than wait for them.  Control thread.
 */
int request_stop(void *daemon, bool force, char *why, size_t len);
/* control_info.nbd_stats: the NBD export's figures, 0 before it serves and once it stops. */
struct control_nbd_stats;
void daemon_nbd_stats(void *daemon, struct control_nbd_stats *ret);

/* ---- startup.c ------------------------------------------------------------ */

/*
 * Take the sockets the service manager passed (listen.c) and match them
 * with --nbd-unix and --nbd-tcp, and refuse a daemon with no front end.
 * Before any fork: they are for this pid.
 * 0, or -EINVAL after logging why (exit EXIT_USAGE); d->passed may hold
 * sockets either way, for teardown() to close.
 */
int startup_sockets(struct daemon *d) __attribute__((nonnull));

/*
 * Build the device: signals, hardening, the backing store, the store, the
 * control socket, the front ends, the pidfile.  0 once every front end
 * serves; -1 after reporting the failure (logged, and sent to the waiting
 * parent).  Whatever was built is left in *d for teardown().
 */
int startup(struct daemon *d) __attribute__((nonnull));

/* ---- signals.c ------------------------------------------------------------ */

/*
 * Block SIGTERM, SIGINT and SIGHUP and open d->sigfd to take them; ignore
 * SIGPIPE.  Before any thread exists (threads inherit the mask).  -errno.
 */
int signals_open(struct daemon *d) __attribute__((nonnull));
/* The next pending signal, 0 if none. */
int signals_take(struct daemon *d) __attribute__((nonnull));

/* ---- serve.c -------------------------------------------------------------- */

/* Serve until a stop signal, or until a front end ends by itself. */
void serve(struct daemon *d) __attribute__((nonnull));

/* ---- reload.c ------------------------------------------------------------- */

/* SIGHUP: re-read the configuration and apply what can change now. */
void reload(struct daemon *d) __attribute__((nonnull));

/* ---- watch.c -------------------------------------------------------------- */

/* Open what watch_memory() needs (root, with a reserve); without it, no rescue. */
void watch_memory_open(struct daemon *d) __attribute__((nonnull));
/* Renew the STATUS= line (a no-op without a service manager). */
void watch_status(struct daemon *d) __attribute__((nonnull));
/* Once a period: log what changed in the backing store's health. */
void watch_backing(struct daemon *d) __attribute__((nonnull));
/* Once a period: log how short of reserve memory was. */
void watch_reserve(struct daemon *d) __attribute__((nonnull));
/*
 * Warn once when --mem-limit is not above what the device holds now (at
 * start, its metadata alone can pass a tiny limit; after a reload, the data
 * may): writes then fail.  when prefixes the message ("" or "reload: ").
 */
void watch_limit(struct daemon *d, const char *when) __attribute__((nonnull));
/* Every MEMORY_CHECK_MS: the last resort against a machine out of memory. */
void watch_memory(struct daemon *d) __attribute__((nonnull));

/* ---- teardown.c ----------------------------------------------------------- */

/*
 * Undo whatever startup() built, in reverse: the front ends first (NBD,
 * then FUSE, waiting for its users), the store last.  After a failed or
 * partial startup too.
 */
void teardown(struct daemon *d) __attribute__((nonnull));

#endif /* UZRAMD_H */
