/* SPDX-License-Identifier: MIT */
/*
 * The control socket server.
 *
 * The protocol (PROTOCOL.md has the full text).  A client sends request
 * lines and gets exactly one response line for each, in order.  A request is
 * words separated by spaces and ended by "\n" ("\r\n" is accepted), at most
 * CONTROL_LINE_MAX bytes with its newline, printable ASCII only.  A response
 * is either
 *     ok[ key=value]...
 *     error ERRNAME free text
 * where ERRNAME is an errno name (EINVAL, ENOSPC...), so that a client can
 * map it back to strerror() without a table of our own.  Values that could
 * hold a space, '%' or a byte outside printable ASCII (paths) are
 * percent-encoded; numbers are plain decimal integers.  The verbs are hello,
 * info, stat, compact, set, idle, writeback, recompress and help.  "hello 1" is optional (a client that
 * skips it speaks version 1); it lets a later server speak an older
 * protocol to an older client and lets a client refuse a server it does not
 * understand.
 *
 * The thread.  One thread runs a poll() loop over the listening socket, an
 * eventfd that control_free() writes to, and every client.  Nothing here
 * blocks: clients are non-blocking, each has its own input and output
 * buffer, and a client that sends half a line, or stops reading its
 * answers, only ever holds up itself.  Requests are cheap except compact,
 * which runs store_compact() inline; it takes milliseconds to tens of
 * milliseconds, and the others wait that long, which is fine for a control
 * plane (the data path never goes through here).
 *
 * Long requests.  writeback and recompress walk the whole device and may
 * write gigabytes to a backing store: minutes, not milliseconds, and
 * `uzramctl stat` must still answer meanwhile.  They run on a job thread,
 * one job at a time (a second request meanwhile gets EBUSY: two passes
 * over the same slots would only race each other for them).  The client
 * that asked waits, its connection parked: it is neither read from nor
 * timed out, and its answer is built when the job thread, which touches
 * nothing but the store and its own result, says through an eventfd that
 * it is done.  A client that hangs up meanwhile only loses its answer; the
 * job runs to its end, since the store has no way to stop one halfway, and
 * control_free() waits for it.  A thread per job rather than one kept
 * waiting: jobs are rare, and a thread that exists only while it works
 * needs no protocol to be stopped.
 *
 * Limits, since every resource a client controls is bounded: at most
 * CONTROL_MAX_CLIENTS connections (one more is told "error EUSERS" and
 * closed, so that it is not left hanging in the backlog); a request line of
 * CONTROL_LINE_MAX bytes (a longer one gets "error E2BIG" and the
 * connection is closed, since there is no telling where the next request
 * would start); a client that makes no progress for CONTROL_IDLE_MS, reading
 * or writing, is dropped.  A client pipelining requests is served one
 * response at a time: the next line is not read from its buffer until the
 * previous answer has gone out, so its buffers never grow.
 *
 * The socket file.  bind() creates it with the process's umask, but nobody
 * can connect before listen(), so chmod() and chown() between the two leave
 * no window in which the socket is reachable with the wrong mode (fchmod()
 * on a socket does not reach the file).  A socket file left by a daemon that
 * died is recognised by connect() failing with ECONNREFUSED and replaced; a
 * live one is left alone.  control_free() unlinks the file only if it is
 * still the one we bound (same inode), not one another daemon has put there
 * since.
 */
#include "control.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"
#include "socket.h"
#include "store.h"
#include "util.h"

#define CONTROL_PROTOCOL 1
/* Enough for any request of protocol 1 many times over; small enough to
 * keep per-client memory trivial. */
#define CONTROL_LINE_MAX 4096
/* A response holds at most two paths, percent-encoded (3 bytes per byte in
 * the worst case); real paths are short, so 8 KiB is plenty. */
#define CONTROL_RESP_MAX 8192
/* uzramctl talks to one daemon at a time; 64 leaves room for scripts and
 * monitoring without letting a runaway client take every descriptor. */
#define CONTROL_MAX_CLIENTS 64
#define CONTROL_IDLE_MS 30000
/* After EMFILE and the like, stop accepting for a while rather than spin
 * on a listening socket that stays readable. */
#define CONTROL_ACCEPT_PAUSE_MS 1000
/* What set takes, as help and its errors list it. */
#define CONTROL_SETTINGS "mem-limit,compact-threshold,mem-used-max,high-watermark,low-watermark"
/* Words in one request: a verb and its arguments. */
#define CONTROL_MAX_WORDS 16
/* How much of a client's bad input an error message echoes. */
#define CONTROL_ECHO_MAX 64

struct client {
    int fd;
    bool eof;           /* the client shut down its side */
    bool closing;       /* close once out is flushed */
    bool waiting;       /* its request runs on the job thread */
    size_t in_len;
    size_t out_len, out_off;
    uint64_t deadline_ms;
    char in[CONTROL_LINE_MAX];
    char out[CONTROL_RESP_MAX];
};

enum job_kind { JOB_WRITEBACK, JOB_RECOMPRESS };

/*
 * The one long request that may run (see "Long requests").  The control
 * thread fills it and starts the thread; the job thread writes only
 * result, then done_fd; the control thread reads result after joining it.
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
    struct store *store;
    char *name, *algorithm, *fuse_file, *nbd, *backing;
    int level;
    bool memory_locked, io_flusher, oom_protected;  /* as control_info says */
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

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void resp_append(struct resp *r, const char *s, size_t n)
{
    if (r->overflow || n > r->cap - r->len) {
        r->overflow = true;
        return;
    }
    memcpy(r->buf + r->len, s, n);
    r->len += n;
}

static void resp_printf(struct resp *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void resp_printf(struct resp *r, const char *fmt, ...)
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

static void resp_ok(struct resp *r)
{
    resp_append(r, "ok", 2);
}

static void resp_u64(struct resp *r, const char *key, uint64_t v)
{
    resp_printf(r, " %s=%" PRIu64, key, v);
}

/* key=value with value percent-encoded: see PROTOCOL.md, "Values". */
static void resp_str(struct resp *r, const char *key, const char *v)
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
static void resp_error(struct resp *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void resp_error(struct resp *r, int err, const char *fmt, ...)
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
static int pct_decode(char *s)
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

/* ---- requests ----------------------------------------------------------- */

static void req_hello(struct control *ctl, int argc, char **argv, struct resp *r)
{
    bool ours = false;

    if (argc < 2) {
        resp_error(r, EINVAL, "usage: hello VERSION...");
        return;
    }
    /* The client lists the versions it speaks; we answer with the highest
     * we share.  There is one so far. */
    for (int i = 1; i < argc; i++) {
        uint64_t v;
        if (parse_u64(argv[i], &v) < 0) {
            resp_error(r, EINVAL, "bad protocol version '%.*s'", CONTROL_ECHO_MAX, argv[i]);
            return;
        }
        if (v == CONTROL_PROTOCOL)
            ours = true;
    }
    if (!ours) {
        resp_error(r, EPROTONOSUPPORT, "this server speaks protocol %d", CONTROL_PROTOCOL);
        return;
    }
    resp_ok(r);
    resp_u64(r, "protocol", CONTROL_PROTOCOL);
    resp_str(r, "server", "uzramd");
    resp_str(r, "version", UZRAM_VERSION);
    resp_str(r, "name", ctl->name);
}

static void req_info(struct control *ctl, struct resp *r)
{
    resp_ok(r);
    resp_str(r, "name", ctl->name);
    resp_str(r, "algorithm", ctl->algorithm);
    resp_printf(r, " level=%d", ctl->level);
    resp_u64(r, "disksize", store_size(ctl->store));
    resp_u64(r, "pid", (uint64_t)getpid());
    if (ctl->fuse_file)
        resp_str(r, "fuse", ctl->fuse_file);
    if (ctl->nbd)
        resp_str(r, "nbd", ctl->nbd);
    resp_str(r, "backing", ctl->backing ? ctl->backing : "");
}

static void req_stat(struct control *ctl, struct resp *r)
{
    struct store_stats st;

    store_get_stats(ctl->store, &st);
    resp_ok(r);
    resp_str(r, "algorithm", ctl->algorithm);
#define STAT(f) resp_u64(r, #f, st.f)
    STAT(disksize);
    STAT(orig_data_size);
    STAT(compr_data_size);
    STAT(mem_used_total);
    STAT(mem_limit);
    STAT(mem_used_max);
    STAT(same_pages);
    STAT(pages_compacted);
    STAT(huge_pages);
    STAT(huge_pages_since);
    STAT(failed_reads);
    STAT(failed_writes);
    STAT(invalid_io);
    STAT(notify_free);
    STAT(read_reqs);
    STAT(write_reqs);
    STAT(discard_reqs);
    STAT(flush_reqs);
    STAT(read_bytes);
    STAT(write_bytes);
    STAT(discard_bytes);
    STAT(compactions);
    STAT(compact_threshold_pct);
    resp_str(r, "backing", ctl->backing ? ctl->backing : "");
    STAT(bd_count);
    STAT(bd_reads);
    STAT(bd_writes);
    STAT(bd_read_errors);
    STAT(bd_write_errors);
    /* An errno name says more than a number, and is stable across systems. */
    const char *e = st.bd_last_error ? strerrorname_np(-st.bd_last_error) : NULL;
    if (e)
        resp_str(r, "bd_last_error", e);
    else
        resp_u64(r, "bd_last_error", (uint64_t)(st.bd_last_error ? -st.bd_last_error : 0));
    resp_u64(r, "bd_connected", st.bd_connected);
    resp_u64(r, "bd_direct", st.bd_direct);
    resp_u64(r, "bd_pressure", st.bd_pressure);
    STAT(bd_blocks);
    STAT(wb_high);
    STAT(wb_low);
    resp_u64(r, "high_watermark", st.wb_high_pct);
    resp_u64(r, "low_watermark", st.wb_low_pct);
    STAT(evictions);
    STAT(pages_evicted);
    STAT(pages_promoted);
    STAT(write_waits);
    STAT(idle_pages);
    STAT(recompressed);
    STAT(bd_bad_sums);
    STAT(reserve);
    STAT(reserve_free);
    STAT(reserve_min);
    STAT(reserve_misses);
    STAT(reserve_waits);
    STAT(reserve_released);
    STAT(reserve_refills);
    STAT(reserve_failures);
#undef STAT
    resp_u64(r, "memory_locked", ctl->memory_locked);
    resp_u64(r, "io_flusher", ctl->io_flusher);
    resp_u64(r, "oom_protected", ctl->oom_protected);
}

static void req_compact(struct control *ctl, struct resp *r)
{
    int64_t n = store_compact(ctl->store);

    if (n < 0) {
        resp_error(r, (int)-n, "compaction failed");
        return;
    }
    resp_ok(r);
    resp_u64(r, "pages_freed", (uint64_t)n);
}

/*
 * The watermarks, from "set high-watermark=H low-watermark=L" or one of
 * them: checked together, the one not given keeping its current value, so
 * that moving both past each other takes one request.
 */
static void set_watermarks(struct control *ctl, const char *high, const char *low,
                           struct resp *r)
{
    struct store_stats st;
    uint64_t h, l;
    int e;

    store_get_stats(ctl->store, &st);
    h = st.wb_high_pct;
    l = st.wb_low_pct;
    if (high && (parse_u64(high, &h) < 0 || h < 1 || h > 100)) {
        resp_error(r, EINVAL, "bad percentage '%.*s' for high-watermark (1 to 100)",
                   CONTROL_ECHO_MAX, high);
        return;
    }
    if (low && (parse_u64(low, &l) < 0 || l < 1 || l > 100)) {
        resp_error(r, EINVAL, "bad percentage '%.*s' for low-watermark (1 to 100)",
                   CONTROL_ECHO_MAX, low);
        return;
    }
    if (l >= h) {
        resp_error(r, EINVAL, "low-watermark %" PRIu64 " must be below high-watermark %" PRIu64,
                   l, h);
        return;
    }
    e = store_set_watermarks(ctl->store, (unsigned)h, (unsigned)l);
    if (e < 0)
        resp_error(r, -e, "watermarks %" PRIu64 "/%" PRIu64 " refused", h, l);
}

/*
 * One setting per request, so that an error names what it refused and
 * nothing is half applied; the two watermarks are the exception, being
 * one setting in two halves (see set_watermarks()).
 */
static void req_set(struct control *ctl, int argc, char **argv, struct resp *r)
{
    const char *high = NULL, *low = NULL;
    struct store_stats st;
    char *key = NULL, *val = NULL;
    uint64_t v;
    int e;

    if (argc < 2 || argc > 3) {
        resp_error(r, EINVAL, "usage: set KEY=VALUE");
        return;
    }
    for (int i = 1; i < argc; i++) {
        key = argv[i];
        val = strchr(key, '=');
        if (!val) {
            resp_error(r, EINVAL, "usage: set KEY=VALUE");
            return;
        }
        *val++ = '\0';
        for (char *p = key; *p; p++)
            if (*p == '_')
                *p = '-';
        if (pct_decode(val) < 0) {
            resp_error(r, EINVAL, "bad escape in value of %.*s", CONTROL_ECHO_MAX, key);
            return;
        }
        if (strcmp(key, "high-watermark") == 0 && !high)
            high = val;
        else if (strcmp(key, "low-watermark") == 0 && !low)
            low = val;
        else if (argc > 2) {
            resp_error(r, EINVAL, "only high-watermark and low-watermark can be set together");
            return;
        }
    }

    if (high || low) {
        set_watermarks(ctl, high, low, r);
        if (r->len > 0)
            return;
    } else if (strcmp(key, "mem-limit") == 0) {
        if (parse_size(val, &v) < 0) {
            resp_error(r, EINVAL, "bad size '%.*s'", CONTROL_ECHO_MAX, val);
            return;
        }
        e = store_set_mem_limit(ctl->store, v);
        if (e < 0) {
            resp_error(r, -e, "mem-limit %" PRIu64 " refused", v);
            return;
        }
    } else if (strcmp(key, "compact-threshold") == 0) {
        if (parse_u64(val, &v) < 0 || v > 100) {
            resp_error(r, EINVAL, "bad percentage '%.*s' (0 to 100)", CONTROL_ECHO_MAX, val);
            return;
        }
        e = store_set_compact_threshold(ctl->store, (unsigned)v);
        if (e < 0) {
            resp_error(r, -e, "compact-threshold %" PRIu64 " refused", v);
            return;
        }
    } else if (strcmp(key, "mem-used-max") == 0) {
        /* As zram's sysfs file: only a reset can be written. */
        if (strcmp(val, "0") != 0) {
            resp_error(r, EINVAL, "mem-used-max can only be reset, with 0");
            return;
        }
        store_reset_mem_used_max(ctl->store);
    } else {
        resp_error(r, EINVAL, "unknown setting '%.*s' (" CONTROL_SETTINGS ")",
                   CONTROL_ECHO_MAX, key);
        return;
    }

    store_get_stats(ctl->store, &st);
    resp_ok(r);
    resp_u64(r, "mem_limit", st.mem_limit);
    resp_u64(r, "compact_threshold_pct", st.compact_threshold_pct);
    resp_u64(r, "mem_used_max", st.mem_used_max);
    resp_u64(r, "high_watermark", st.wb_high_pct);
    resp_u64(r, "low_watermark", st.wb_low_pct);
}

/* idle all | idle SECONDS: mark the slots untouched for that long. */
static void req_idle(struct control *ctl, int argc, char **argv, struct resp *r)
{
    uint64_t age = 0;

    if (argc != 2 || (strcmp(argv[1], "all") != 0 && parse_u64(argv[1], &age) < 0)) {
        resp_error(r, EINVAL, "usage: idle all|SECONDS");
        return;
    }
    int64_t n = store_mark_idle(ctl->store, age);
    if (n < 0) {
        resp_error(r, (int)-n, "idle marking failed");
        return;
    }
    resp_ok(r);
    resp_u64(r, "marked", (uint64_t)n);
}

/* The slots a writeback or recompress takes, as zram's type names them. */
static int parse_select(const char *s, bool all_ok, unsigned *ret)
{
    if (strcmp(s, "idle") == 0)
        *ret = STORE_SEL_IDLE;
    else if (strcmp(s, "huge") == 0)
        *ret = STORE_SEL_HUGE;
    else if (strcmp(s, "huge_idle") == 0)
        *ret = STORE_SEL_HUGE | STORE_SEL_IDLE;
    else if (all_ok && strcmp(s, "all") == 0)
        *ret = STORE_SEL_ALL;
    else
        return -EINVAL;
    return 0;
}

static void *job_thread(void *arg)
{
    struct job *j = arg;
    uint64_t one = 1;

    if (j->kind == JOB_WRITEBACK)
        j->result = store_writeback(j->store, j->sel, j->arg);
    else
        j->result = store_recompress(j->store, j->sel, (unsigned)j->arg);
    /* An eventfd's counter cannot overflow from one write: it never fails. */
    (void)!write(j->done_fd, &one, sizeof(one));
    return NULL;
}

/*
 * writeback idle|huge|huge_idle|all [limit=BYTES]
 * recompress idle|huge|huge_idle [threshold=BYTES]
 * Checked here, run on the job thread; c waits for the answer.
 */
static void req_job(struct control *ctl, struct client *c, enum job_kind kind, int argc,
                    char **argv, struct resp *r)
{
    const char *verb = argv[0];
    const char *opt = kind == JOB_WRITEBACK ? "limit" : "threshold";
    size_t optlen = strlen(opt);
    uint64_t arg = 0;
    unsigned sel;

    if (argc < 2 || argc > 3 || parse_select(argv[1], kind == JOB_WRITEBACK, &sel) < 0) {
        if (kind == JOB_WRITEBACK)
            resp_error(r, EINVAL, "usage: writeback idle|huge|huge_idle|all [limit=BYTES]");
        else
            resp_error(r, EINVAL, "usage: recompress idle|huge|huge_idle [threshold=BYTES]");
        return;
    }
    if (argc == 3) {
        char *val = argv[2] + optlen + 1;
        if (strncmp(argv[2], opt, optlen) != 0 || argv[2][optlen] != '=') {
            resp_error(r, EINVAL, "%s: unknown argument '%.*s' (want %s=BYTES)", verb,
                       CONTROL_ECHO_MAX, argv[2], opt);
            return;
        }
        if (pct_decode(val) < 0 || parse_size(val, &arg) < 0) {
            resp_error(r, EINVAL, "%s: bad size '%.*s'", opt, CONTROL_ECHO_MAX, val);
            return;
        }
        if (kind == JOB_WRITEBACK) {
            /* 0 pages would mean no limit: the opposite of what limit=0 says. */
            if (arg == 0) {
                resp_error(r, EINVAL, "limit: 0 writes nothing (leave it out for no limit)");
                return;
            }
            /* Whole pages go back: a limit inside one still allows that one. */
            arg = arg / STORE_PAGE_SIZE + (arg % STORE_PAGE_SIZE != 0);
        } else if (arg > STORE_PAGE_SIZE) {
            resp_error(r, EINVAL, "threshold: %" PRIu64 " is above a page (%u)", arg,
                       STORE_PAGE_SIZE);
            return;
        }
    }
    if (ctl->job.running) {
        resp_error(r, EBUSY, "a %s is running; try again when it is done",
                   ctl->job.kind == JOB_WRITEBACK ? "writeback" : "recompression");
        return;
    }
    ctl->job.kind = kind;
    ctl->job.sel = sel;
    ctl->job.arg = arg;
    ctl->job.result = 0;
    ctl->job.client = c;
    int e = pthread_create(&ctl->job.thread, NULL, job_thread, &ctl->job);
    if (e != 0) {
        ctl->job.client = NULL;
        resp_error(r, e, "cannot start a thread for %s", verb);
        return;
    }
    ctl->job.running = true;
    c->waiting = true;
}

/* The answer to the job that has just ended. */
static void job_reply(const struct job *j, struct resp *r)
{
    int64_t n = j->result;

    if (n >= 0) {
        resp_ok(r);
        resp_u64(r, j->kind == JOB_WRITEBACK ? "written" : "recompressed", (uint64_t)n);
    } else if (n == -ENOTSUP) {
        resp_error(r, ENOTSUP, j->kind == JOB_WRITEBACK ? "no backing store"
                                                        : "no recompression algorithm");
    } else if (j->kind == JOB_WRITEBACK) {
        resp_error(r, (int)-n, "writeback failed before any page was written");
    } else {
        resp_error(r, (int)-n, "recompression failed");
    }
}

static void req_help(struct resp *r)
{
    resp_ok(r);
    resp_u64(r, "protocol", CONTROL_PROTOCOL);
    resp_str(r, "verbs", "hello,info,stat,compact,set,idle,writeback,recompress,help");
    resp_str(r, "settings", CONTROL_SETTINGS);
}

/*
 * Answer one request line (without its "\n", NUL-terminated in place, len
 * bytes of which may be anything a client sent) into r; or, for a long
 * request, start it and leave r empty with c->waiting set.
 */
static void control_handle(struct control *ctl, struct client *c, char *line, size_t len,
                           struct resp *r)
{
    char *argv[CONTROL_MAX_WORDS];
    int argc = 0;

    if (len > 0 && line[len - 1] == '\r')
        line[--len] = '\0';
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)line[i];
        if (b < ' ' || b >= 0x7f) {
            resp_error(r, EINVAL, "request holds byte 0x%02x at %zu: only printable ASCII", b, i);
            return;
        }
    }
    for (char *p = line; *p;) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        if (argc == CONTROL_MAX_WORDS) {
            resp_error(r, E2BIG, "more than %d words", CONTROL_MAX_WORDS);
            return;
        }
        argv[argc++] = p;
        p += strcspn(p, " ");
        if (*p)
            *p++ = '\0';
    }
    if (argc == 0) {
        resp_error(r, EINVAL, "empty request");
        return;
    }

    const char *verb = argv[0];
    if (strcmp(verb, "hello") == 0) {
        req_hello(ctl, argc, argv, r);
        return;
    }
    if (strcmp(verb, "set") == 0) {
        req_set(ctl, argc, argv, r);
        return;
    }
    if (strcmp(verb, "idle") == 0) {
        req_idle(ctl, argc, argv, r);
        return;
    }
    if (strcmp(verb, "writeback") == 0) {
        req_job(ctl, c, JOB_WRITEBACK, argc, argv, r);
        return;
    }
    if (strcmp(verb, "recompress") == 0) {
        req_job(ctl, c, JOB_RECOMPRESS, argc, argv, r);
        return;
    }

    /* The rest take no arguments. */
    void (*fn)(struct control *, struct resp *) = NULL;
    if (strcmp(verb, "info") == 0)
        fn = req_info;
    else if (strcmp(verb, "stat") == 0)
        fn = req_stat;
    else if (strcmp(verb, "compact") == 0)
        fn = req_compact;
    if (strcmp(verb, "help") == 0) {
        if (argc == 1)
            req_help(r);
        else
            resp_error(r, EINVAL, "help takes no arguments");
        return;
    }
    if (!fn) {
        resp_error(r, EINVAL, "unknown request '%.*s'", CONTROL_ECHO_MAX, verb);
        return;
    }
    if (argc != 1) {
        resp_error(r, EINVAL, "%s takes no arguments", verb);
        return;
    }
    fn(ctl, r);
}

/* ---- clients ------------------------------------------------------------ */

static void client_close(struct control *ctl, unsigned i)
{
    struct client *c = ctl->clients[i];

    if (ctl->job.client == c)
        ctl->job.client = NULL;
    close(c->fd);
    free(c);
    ctl->clients[i] = NULL;
}

/* Send what is pending.  -errno if the client is gone. */
static int client_flush(struct client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        c->out_off += (size_t)n;
        c->deadline_ms = now_ms() + CONTROL_IDLE_MS;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

static void client_respond(struct control *ctl, struct client *c, char *line, size_t len)
{
    struct resp r = { .buf = c->out, .cap = sizeof(c->out) - 1 };

    control_handle(ctl, c, line, len, &r);
    if (c->waiting)
        return;
    if (r.overflow)
        resp_error(&r, EOVERFLOW, "response longer than %d bytes", CONTROL_RESP_MAX);
    c->out[r.len++] = '\n';
    c->out_len = r.len;
    c->out_off = 0;
}

/*
 * Answer the complete lines buffered, one at a time while each answer goes
 * out at once.  Returns -1 when the client is to be closed now.
 */
static int client_process(struct control *ctl, struct client *c)
{
    while (c->out_len == 0 && !c->closing && !c->waiting) {
        char *nl = memchr(c->in, '\n', c->in_len);
        size_t len;

        if (!nl) {
            if (c->in_len == sizeof(c->in)) {
                struct resp r = { .buf = c->out, .cap = sizeof(c->out) - 1 };
                resp_error(&r, E2BIG, "request longer than %d bytes", CONTROL_LINE_MAX);
                c->out[r.len++] = '\n';
                c->out_len = r.len;
                c->closing = true;
            } else if (c->eof) {
                /* A last request without its newline still gets its answer. */
                if (c->in_len > 0) {
                    char line[CONTROL_LINE_MAX + 1];
                    memcpy(line, c->in, c->in_len);
                    line[c->in_len] = '\0';
                    client_respond(ctl, c, line, c->in_len);
                    c->in_len = 0;
                }
                c->closing = true;
            }
        } else {
            len = (size_t)(nl - c->in);
            *nl = '\0';
            client_respond(ctl, c, c->in, len);
            c->in_len -= len + 1;
            memmove(c->in, nl + 1, c->in_len);
        }
        if (client_flush(c) < 0)
            return -1;
        if (!nl)
            break;
    }
    if (c->closing && c->out_len == 0 && !c->waiting)
        return -1;
    return 0;
}

/*
 * The job thread said it is done: join it and answer the client that
 * waits, if it is still there.
 */
static void job_finish(struct control *ctl)
{
    struct client *c = ctl->job.client;
    uint64_t v;

    if (read(ctl->job.done_fd, &v, sizeof(v)) != (ssize_t)sizeof(v) || !ctl->job.running)
        return;
    pthread_join(ctl->job.thread, NULL);
    ctl->job.running = false;
    ctl->job.client = NULL;
    if (!c)
        return;

    struct resp r = { .buf = c->out, .cap = sizeof(c->out) - 1 };
    job_reply(&ctl->job, &r);
    c->out[r.len++] = '\n';
    c->out_len = r.len;
    c->out_off = 0;
    c->waiting = false;
    c->deadline_ms = now_ms() + CONTROL_IDLE_MS;
    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        if (ctl->clients[i] != c)
            continue;
        if (client_flush(c) < 0 || client_process(ctl, c) < 0)
            client_close(ctl, i);
        break;
    }
}

/* Read what the client sent.  -1 when it is to be closed now. */
static int client_read(struct client *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        }
        if (n == 0) {
            c->eof = true;
            return 0;
        }
        c->in_len += (size_t)n;
        c->deadline_ms = now_ms() + CONTROL_IDLE_MS;
        return 0;
    }
}

/* Tell a client we cannot take it, without waiting for it, and close. */
static void refuse(int fd, int err, const char *msg)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "error %s %s\n", strerrorname_np(err) ?: "EIO", msg);

    if (n > 0)
        (void)!send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

/* Accept what is waiting.  Returns the time until which accepting pauses, or 0. */
static uint64_t control_accept(struct control *ctl)
{
    /* A bounded batch, so a flood of connections cannot starve the clients. */
    for (int k = 0; k < 16; k++) {
        int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            switch (errno) {
            case EINTR:
            case ECONNABORTED:
            case EPROTO:
                continue;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                return now_ms() + CONTROL_ACCEPT_PAUSE_MS;
            default:
                return 0;
            }
        }
        unsigned i;
        for (i = 0; i < CONTROL_MAX_CLIENTS && ctl->clients[i]; i++)
            ;
        if (i == CONTROL_MAX_CLIENTS) {
            refuse(fd, EUSERS, "too many clients");
            continue;
        }
        struct client *c = malloc(sizeof(*c));
        if (!c) {
            refuse(fd, ENOMEM, "out of memory");
            continue;
        }
        c->fd = fd;
        c->eof = c->closing = c->waiting = false;
        c->in_len = c->out_len = c->out_off = 0;
        c->deadline_ms = now_ms() + CONTROL_IDLE_MS;
        ctl->clients[i] = c;
    }
    return 0;
}

static void *control_thread(void *arg)
{
    struct control *ctl = arg;
    /* pfd[0]: wake, pfd[1]: listening socket, pfd[2]: the job's end, then
     * one per client. */
    enum { NFIXED = 3 };
    struct pollfd pfd[NFIXED + CONTROL_MAX_CLIENTS];
    unsigned idx[CONTROL_MAX_CLIENTS];
    uint64_t accept_paused_until = 0;

    for (;;) {
        uint64_t now = now_ms(), next = now + CONTROL_IDLE_MS;
        nfds_t n = NFIXED;

        pfd[0] = (struct pollfd){ .fd = ctl->wake_fd, .events = POLLIN };
        pfd[1] = (struct pollfd){ .fd = ctl->listen_fd, .events = POLLIN };
        pfd[2] = (struct pollfd){ .fd = ctl->job.done_fd, .events = POLLIN };
        if (accept_paused_until > now) {
            pfd[1].fd = -1;
            next = accept_paused_until;
        }
        for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
            struct client *c = ctl->clients[i];
            if (!c)
                continue;
            short ev = c->out_len > c->out_off ? POLLOUT
                     : c->eof || c->closing   ? 0
                                               : POLLIN;
            /* A waiting client that shut its side down has nothing more to
             * say, and its POLLHUP would only spin the loop until the job ends. */
            int fd = c->waiting && c->eof ? -1 : c->fd;
            idx[n - NFIXED] = i;
            pfd[n++] = (struct pollfd){ .fd = fd, .events = ev };
            if (!c->waiting && c->deadline_ms < next)
                next = c->deadline_ms;
        }

        int timeout = next > now ? (int)(next - now) : 0;
        if (poll(pfd, n, timeout) < 0 && errno != EINTR)
            continue;
        if (pfd[0].revents)
            break;

        now = now_ms();
        for (nfds_t k = NFIXED; k < n; k++) {
            unsigned i = idx[k - NFIXED];
            struct client *c = ctl->clients[i];
            short re = pfd[k].revents;
            int res = 0;

            if (re & POLLNVAL) {
                client_close(ctl, i);
                continue;
            }
            if (re & POLLOUT)
                res = client_flush(c);
            if (res == 0 && (re & (POLLIN | POLLHUP | POLLERR)) && pfd[k].events == POLLIN)
                res = client_read(c);
            if (res == 0 && (re & (POLLERR | POLLHUP)) && pfd[k].events == POLLOUT)
                res = -1;   /* it will never read what we have for it */
            if (res == 0)
                res = client_process(ctl, c);
            if (res == 0 && !c->waiting && c->deadline_ms <= now) {
                /* Say why, if the line is free; the client may be gone. */
                if (c->out_len == 0)
                    (void)!send(c->fd, "error ETIMEDOUT idle too long\n", 30,
                                MSG_NOSIGNAL | MSG_DONTWAIT);
                res = -1;
            }
            if (res < 0)
                client_close(ctl, i);
        }
        if (pfd[2].revents)
            job_finish(ctl);
        if (pfd[1].revents)
            accept_paused_until = control_accept(ctl);
    }

    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
        if (ctl->clients[i])
            client_close(ctl, i);
    return NULL;
}

/* ---- the socket --------------------------------------------------------- */

/* mkdir -p of path's parent, the directories made 0755. */
static int make_parent(const char *path)
{
    _cleanup_free_ char *dir = strdup(path);
    char *slash;

    if (!dir)
        return -ENOMEM;
    slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        /* chmod: the umask must not keep a --group's members out. */
        if (mkdir(dir, 0755) == 0) {
            if (chmod(dir, 0755) < 0)
                return -errno;
        } else if (errno != EEXIST) {
            return -errno;
        }
        *p = c;
        if (!c)
            break;
    }
    return 0;
}

static int control_bind(struct control *ctl, gid_t gid)
{
    struct stat st;
    int r;

    r = make_parent(ctl->path);
    if (r < 0)
        return r;
    _cleanup_close_ int fd = unix_listen(ctl->path, gid, SOCK_NONBLOCK);
    if (fd < 0)
        return fd;
    /* control_free() removes the file only while it is still this one. */
    if (stat(ctl->path, &st) < 0) {
        r = -errno;
        unlink(ctl->path);
        return r;
    }
    ctl->sock_dev = st.st_dev;
    ctl->sock_ino = st.st_ino;
    ctl->listen_fd = TAKE_FD(fd);
    return 0;
}

struct control *control_new(const char *path, struct store *store,
                            const struct control_info *info, gid_t gid)
{
    struct control *ctl = calloc(1, sizeof(*ctl));
    int r = -ENOMEM;

    if (!ctl)
        return NULL;
    ctl->listen_fd = ctl->wake_fd = ctl->job.done_fd = -1;
    ctl->store = store;
    ctl->job.store = store;
    ctl->level = info->level;
    ctl->memory_locked = info->memory_locked;
    ctl->io_flusher = info->io_flusher;
    ctl->oom_protected = info->oom_protected;
    ctl->path = strdup(path);
    ctl->name = strdup(info->name ? info->name : "");
    ctl->algorithm = strdup(info->algorithm ? info->algorithm : "");
    if (info->fuse_file)
        ctl->fuse_file = strdup(info->fuse_file);
    if (info->nbd)
        ctl->nbd = strdup(info->nbd);
    if (info->backing)
        ctl->backing = strdup(info->backing);
    if (!ctl->path || !ctl->name || !ctl->algorithm ||
        (info->fuse_file && !ctl->fuse_file) || (info->nbd && !ctl->nbd) ||
        (info->backing && !ctl->backing))
        goto fail;

    ctl->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ctl->job.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ctl->wake_fd < 0 || ctl->job.done_fd < 0) {
        r = -errno;
        goto fail;
    }
    r = control_bind(ctl, gid);
    if (r < 0)
        goto fail;
    return ctl;

fail:
    /* listen_fd is -1: control_free() unlinks nothing. */
    control_free(ctl);
    errno = -r;
    return NULL;
}

int control_start(struct control *ctl)
{
    int r;

    if (ctl->started)
        return -EALREADY;
    r = pthread_create(&ctl->thread, NULL, control_thread, ctl);
    if (r != 0)
        return -r;
    ctl->started = true;
    return 0;
}

void control_free(struct control *ctl)
{
    struct stat st;

    if (!ctl)
        return;
    if (ctl->started) {
        uint64_t one = 1;
        /* The eventfd counter cannot overflow from one write: it never fails. */
        (void)!write(ctl->wake_fd, &one, sizeof(one));
        pthread_join(ctl->thread, NULL);
    }
    /* The control thread is gone: nobody else looks at the job now. */
    if (ctl->job.running)
        pthread_join(ctl->job.thread, NULL);
    if (ctl->path && ctl->listen_fd >= 0 && stat(ctl->path, &st) == 0 &&
        st.st_dev == ctl->sock_dev && st.st_ino == ctl->sock_ino)
        unlink(ctl->path);
    if (ctl->listen_fd >= 0)
        close(ctl->listen_fd);
    if (ctl->wake_fd >= 0)
        close(ctl->wake_fd);
    if (ctl->job.done_fd >= 0)
        close(ctl->job.done_fd);
    free(ctl->path);
    free(ctl->name);
    free(ctl->algorithm);
    free(ctl->fuse_file);
    free(ctl->nbd);
    free(ctl->backing);
    free(ctl);
}
