/* SPDX-License-Identifier: MIT */
/*
 * The control protocol's verbs (PROTOCOL.md): one handler each, found
 * through one table that also gives help its list.  Handlers run on the
 * control thread and answer into a struct resp; each checks its own
 * arguments and echoes at most CONTROL_ECHO_MAX bytes of what the client
 * sent.  writeback and recompress start the job thread instead and leave
 * the client waiting (doc/control.md, "Long requests").
 *
 * Roles (doc/control.md, "Who may do what"): a verb that changes anything
 * (a setting, the pool, the slots' marks, the backing store, the daemon's
 * life) is marked `changes` in the table, and control_handle() refuses it
 * with EPERM, before its arguments are even looked at, to a client that
 * may only watch.  The check is the table's, not each handler's, so that a
 * verb added later is one flag away from being right, and the unit test
 * can check every verb.  Watching is everything else: hello, info, stat and
 * help, which read figures and names and change nothing.
 */
#include "control-internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "store.h"
#include "util.h"

static void resp_verb_names(struct resp *r, const char *key);

static void req_hello(struct control *ctl, struct client *c, int argc, char **argv,
                      struct resp *r)
{
    bool ours = false;

    (void)c;
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
        if (v == PROTO_VERSION)
            ours = true;
    }
    if (!ours) {
        resp_error(r, EPROTONOSUPPORT, "this server speaks protocol %d", PROTO_VERSION);
        return;
    }
    resp_ok(r);
    resp_u64(r, "protocol", PROTO_VERSION);
    resp_str(r, "server", "uzramd");
    resp_str(r, "version", UZRAM_VERSION);
    resp_str(r, "name", ctl->name);
}

static void req_info(struct control *ctl, struct client *c, int argc, char **argv,
                     struct resp *r)
{
    (void)c;
    (void)argc;
    (void)argv;
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
    resp_str(r, "log", ctl->log ? ctl->log : "");
}

/* How `stat` prints each type of STORE_STATS (store.h). */
#define STAT_u64(r, key, v) resp_u64(r, key, v)
#define STAT_u32(r, key, v) resp_u64(r, key, v)
#define STAT_bool(r, key, v) resp_u64(r, key, v)
#define STAT_err(r, key, v) resp_errno(r, key, v)

/*
 * An errno by its name, which says more than a number and is the same
 * across systems; 0 for none, and the number if it has no name.
 */
static void resp_errno(struct resp *r, const char *key, int neg)
{
    const char *e = neg ? strerrorname_np(-neg) : NULL;

    if (e)
        resp_str(r, key, e);
    else
        resp_u64(r, key, (uint64_t)(neg ? -neg : 0));
}

static void req_stat(struct control *ctl, struct client *c, int argc, char **argv,
                     struct resp *r)
{
    struct store_stats st;

    (void)c;
    (void)argc;
    (void)argv;
    store_get_stats(ctl->store, &st);
    resp_ok(r);
    resp_str(r, "algorithm", ctl->algorithm);
    resp_str(r, "backing", ctl->backing ? ctl->backing : "");
    /* Who serves, and through what: as info says. */
    resp_u64(r, "pid", (uint64_t)getpid());
    resp_str(r, "fuse", ctl->fuse_file ? ctl->fuse_file : "");
    const char *transport = atomic_load(&ctl->fuse_transport);
    resp_str(r, "fuse_transport", transport ? transport : "");
    resp_u64(r, "fuse_buffer_bytes", atomic_load(&ctl->fuse_buffer_bytes));
    resp_str(r, "nbd", ctl->nbd ? ctl->nbd : "");
    resp_str(r, "log", ctl->log ? ctl->log : "");
#define STAT(type, name, source) STAT_##type(r, #name, st.name);
    STORE_STATS(STAT)
#undef STAT
    struct control_nbd_stats ns = { 0 };
    if (ctl->nbd_stats)
        ctl->nbd_stats(ctl->stop_arg, &ns);
    resp_u64(r, "nbd_active", ns.active);
    resp_u64(r, "nbd_connections", ns.connections);
    resp_u64(r, "nbd_refused", ns.refused);
    resp_u64(r, "nbd_strangers", ns.strangers);
    resp_u64(r, "nbd_dropped", ns.dropped);
    resp_u64(r, "nbd_timed_out", ns.timed_out);
    resp_u64(r, "nbd_send_timeouts", ns.send_timeouts);
    resp_u64(r, "nbd_idle_timeouts", ns.idle_timeouts);
    resp_u64(r, "nbd_queued_bytes", ns.queued_bytes);
    resp_u64(r, "memory_locked", ctl->memory_locked);
    resp_u64(r, "io_flusher", ctl->io_flusher);
    resp_u64(r, "oom_protected", ctl->oom_protected);
}

static void req_compact(struct control *ctl, struct client *c, int argc, char **argv,
                        struct resp *r)
{
    int64_t n = store_compact(ctl->store);

    (void)c;
    (void)argc;
    (void)argv;

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
    h = st.high_watermark;
    l = st.low_watermark;
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

/* Any setting but the watermarks; an error answered into r, else r left empty. */
static void set_one(struct control *ctl, const char *key, const char *val, struct resp *r)
{
    uint64_t v;
    int e;

    if (strcmp(key, "mem-limit") == 0) {
        if (parse_size(val, &v) < 0) {
            resp_error(r, EINVAL, "bad size '%.*s'", CONTROL_ECHO_MAX, val);
            return;
        }
        e = store_set_mem_limit(ctl->store, v);
        if (e < 0)
            resp_error(r, -e, "mem-limit %" PRIu64 " refused", v);
    } else if (strcmp(key, "compact-threshold") == 0) {
        if (parse_u64(val, &v) < 0 || v > 100) {
            resp_error(r, EINVAL, "bad percentage '%.*s' (0 to 100)", CONTROL_ECHO_MAX, val);
            return;
        }
        e = store_set_compact_threshold(ctl->store, (unsigned)v);
        if (e < 0)
            resp_error(r, -e, "compact-threshold %" PRIu64 " refused", v);
    } else if (strcmp(key, "cold-after") == 0) {
        if (parse_u64(val, &v) < 0 || v > STORE_COLD_AFTER_MAX) {
            resp_error(r, EINVAL, "bad number of seconds '%.*s' (0 to %u)", CONTROL_ECHO_MAX,
                       val, STORE_COLD_AFTER_MAX);
            return;
        }
        e = store_set_cold_after(ctl->store, (unsigned)v);
        if (e == -ENOTSUP)
            resp_error(r, ENOTSUP,
                       "cold-after needs a cold algorithm (uzramd --cold-algorithm)");
        else if (e < 0)
            resp_error(r, -e, "cold-after %" PRIu64 " refused", v);
    } else if (strcmp(key, "mem-used-max") == 0) {
        /* As zram's sysfs file: only a reset can be written. */
        if (strcmp(val, "0") != 0)
            resp_error(r, EINVAL, "mem-used-max can only be reset, with 0");
        else
            store_reset_mem_used_max(ctl->store);
    } else {
        resp_error(r, EINVAL, "unknown setting '%.*s' (" PROTO_SETTINGS ")", CONTROL_ECHO_MAX,
                   key);
    }
}

/*
 * One setting per request, so that an error names what it refused and
 * nothing is half applied; the two watermarks are the exception, being
 * one setting in two halves (see set_watermarks()).
 */
static void req_set(struct control *ctl, struct client *c, int argc, char **argv,
                    struct resp *r)
{
    const char *high = NULL, *low = NULL;
    struct store_stats st;
    char *key = NULL, *val = NULL;

    (void)c;
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
        if (proto_decode(val) < 0) {
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

    if (high || low)
        set_watermarks(ctl, high, low, r);
    else
        set_one(ctl, key, val, r);
    if (r->len > 0)
        return;

    store_get_stats(ctl->store, &st);
    resp_ok(r);
    resp_u64(r, "mem_limit", st.mem_limit);
    resp_u64(r, "compact_threshold_pct", st.compact_threshold_pct);
    resp_u64(r, "mem_used_max", st.mem_used_max);
    resp_u64(r, "high_watermark", st.high_watermark);
    resp_u64(r, "low_watermark", st.low_watermark);
    resp_u64(r, "cold_after", st.cold_after);
}

/* idle all | idle SECONDS: mark the slots untouched for that long. */
static void req_idle(struct control *ctl, struct client *c, int argc, char **argv,
                     struct resp *r)
{
    uint64_t age = 0;

    (void)c;
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

/* The store's flags for the slots verb's word name selects (proto.h). */
static int parse_select(enum proto_verb verb, const char *name, unsigned *ret)
{
    unsigned sel;

    if (proto_select_parse(verb, name, &sel) < 0)
        return -EINVAL;
    *ret = (sel & PROTO_SEL_IDLE ? STORE_SEL_IDLE : 0) |
           (sel & PROTO_SEL_HUGE ? STORE_SEL_HUGE : 0) |
           (sel & PROTO_SEL_ALL ? STORE_SEL_ALL : 0);
    return 0;
}

static void *job_thread(void *arg)
{
    struct job *j = arg;
    uint64_t one = 1;

    if (j->kind == JOB_WRITEBACK)
        j->result = store_writeback(j->store, j->sel, j->arg);
    else if (j->kind == JOB_BUNDLE)
        j->result = store_bundle(j->store, j->sel);
    else
        j->result = store_recompress(j->store, j->sel, (unsigned)j->arg);
    /* An eventfd's counter cannot overflow from one write: it never fails. */
    (void)!write(j->done_fd, &one, sizeof(one));
    return NULL;
}

/*
 * writeback idle|huge|huge_idle|all [limit=BYTES]
 * recompress idle|huge|huge_idle [threshold=BYTES]
 * recompress idle bundle
 * Checked here, run on the job thread; c waits for the answer.
 */
static void req_job(struct control *ctl, struct client *c, enum job_kind kind, int argc,
                    char **argv, struct resp *r)
{
    enum proto_verb pverb = kind == JOB_WRITEBACK ? PROTO_WRITEBACK : PROTO_RECOMPRESS;
    const char *verb = proto_verb_name(pverb);
    const char *opt = kind == JOB_WRITEBACK ? "limit" : "threshold";
    size_t optlen = strlen(opt);
    uint64_t arg = 0;
    unsigned sel;

    if (argc < 2 || argc > 3 || parse_select(pverb, argv[1], &sel) < 0) {
        char names[64];
        resp_error(r, EINVAL, "usage: %s %s [%s=BYTES%s]", verb,
                   proto_select_names(pverb, "|", "|", names, sizeof(names)), opt,
                   kind == JOB_RECOMPRESS ? "|bundle" : "");
        return;
    }
    if (argc == 3 && kind == JOB_RECOMPRESS && strcmp(argv[2], "bundle") == 0) {
        if (sel != STORE_SEL_IDLE) {
            resp_error(r, EINVAL, "%s: bundle takes idle pages only", verb);
            return;
        }
        kind = JOB_BUNDLE;
    } else if (argc == 3) {
        char *val = argv[2] + optlen + 1;
        if (strncmp(argv[2], opt, optlen) != 0 || argv[2][optlen] != '=') {
            resp_error(r, EINVAL, "%s: unknown argument '%.*s' (want %s=BYTES%s)", verb,
                       CONTROL_ECHO_MAX, argv[2], opt,
                       kind == JOB_RECOMPRESS ? " or bundle" : "");
            return;
        }
        if (proto_decode(val) < 0 || parse_size(val, &arg) < 0) {
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

static void req_writeback(struct control *ctl, struct client *c, int argc, char **argv,
                          struct resp *r)
{
    req_job(ctl, c, JOB_WRITEBACK, argc, argv, r);
}

static void req_recompress(struct control *ctl, struct client *c, int argc, char **argv,
                           struct resp *r)
{
    req_job(ctl, c, JOB_RECOMPRESS, argc, argv, r);
}

/*
 * "progress": how far the writeback or recompression that runs has got
 * (store_progress()), for a client that waits for one on another
 * connection.  job=none when none runs, with the last one's figures.
 */
static void req_progress(struct control *ctl, struct client *c, int argc, char **argv,
                         struct resp *r)
{
    struct store_progress p;

    (void)c;
    (void)argc;
    (void)argv;
    store_progress(ctl->store, &p);
    resp_ok(r);
    resp_str(r, "job",
             !ctl->job.running                ? "none"
             : ctl->job.kind == JOB_WRITEBACK ? "writeback"
                                              : "recompress");
    resp_u64(r, "selected", p.selected);
    resp_u64(r, "done", p.done);
}

/* The count a job's answer carries. */
static const char *job_key(enum job_kind kind)
{
    return kind == JOB_WRITEBACK ? "written"
           : kind == JOB_BUNDLE  ? "bundled"
                                 : "recompressed";
}

/* The answer to the job that has just ended. */
void job_reply(const struct job *j, struct resp *r)
{
    int64_t n = j->result;

    if (n >= 0) {
        resp_ok(r);
        resp_u64(r, job_key(j->kind), (uint64_t)n);
    } else if (n == -ENOTSUP) {
        resp_error(r, ENOTSUP,
                   j->kind == JOB_WRITEBACK ? "no backing store"
                   : j->kind == JOB_BUNDLE  ? "no cold algorithm"
                                            : "no recompression algorithm");
    } else if (j->kind == JOB_BUNDLE) {
        resp_error(r, (int)-n, "bundling failed before any page was bundled");
    } else if (j->kind == JOB_WRITEBACK) {
        resp_error(r, (int)-n, "writeback failed before any page was written");
    } else {
        resp_error(r, (int)-n, "recompression failed");
    }
}

static void req_help(struct control *ctl, struct client *c, int argc, char **argv,
                     struct resp *r)
{
    (void)ctl;
    (void)c;
    (void)argc;
    (void)argv;
    resp_ok(r);
    resp_u64(r, "protocol", PROTO_VERSION);
    resp_verb_names(r, "verbs");
    resp_str(r, "settings", PROTO_SETTINGS);
}

/*
 * "stop [force]": the daemon decides (control_info.stop).  After ok the
 * client keeps its connection, which ends when the daemon, stopping,
 * frees this server: uzramctl waits for that end.
 */
static void req_stop(struct control *ctl, struct client *c, int argc, char **argv,
                     struct resp *r)
{
    char why[256] = "";
    bool force = false;
    int err;

    (void)c;
    if (argc > 2 || (argc == 2 && strcmp(argv[1], "force") != 0)) {
        resp_error(r, EINVAL, "usage: stop [force]");
        return;
    }
    force = argc == 2;
    if (!ctl->stop) {
        resp_error(r, ENOTSUP, "this server cannot be stopped from here");
        return;
    }
    err = ctl->stop(ctl->stop_arg, force, why, sizeof(why));
    if (err < 0) {
        resp_error(r, -err, "%s", why[0] ? why : "cannot stop");
        return;
    }
    resp_ok(r);
}

/*
 * Every verb's handler, by its name in proto.h (whose order help keeps).
 * Adding one is its name there, its handler and its line here (and its
 * section of PROTOCOL.md).  A new verb that changes anything must say so:
 * `changes` is what keeps it from the watch group.
 */
static const struct verb {
    bool no_args;           /* anything after the verb is refused here */
    bool changes;           /* only root, the daemon's user and the admin group may use it */
    verb_fn *fn;
} verbs[PROTO_VERB_MAX] = {
    [PROTO_HELLO] = { false, false, req_hello },
    [PROTO_INFO] = { true, false, req_info },
    [PROTO_STAT] = { true, false, req_stat },
    [PROTO_COMPACT] = { true, true, req_compact },
    [PROTO_SET] = { false, true, req_set },
    [PROTO_IDLE] = { false, true, req_idle },
    [PROTO_WRITEBACK] = { false, true, req_writeback },
    [PROTO_RECOMPRESS] = { false, true, req_recompress },
    [PROTO_PROGRESS] = { true, false, req_progress },
    [PROTO_STOP] = { false, true, req_stop },
    [PROTO_HELP] = { true, false, req_help },
};

/* key=the names of every verb, comma-separated. */
static void resp_verb_names(struct resp *r, const char *key)
{
    resp_printf(r, " %s=", key);
    for (int i = 0; i < PROTO_VERB_MAX; i++)
        resp_printf(r, "%s%s", i ? "," : "", proto_verb_name(i));
}

/*
 * EPERM for a client that may only watch, naming who may: root, the
 * daemon's uid, and the admin group if there is one.
 */
static void resp_refuse_change(const struct control *ctl, struct resp *r)
{
    char who[160];

    if (ctl->owner == 0)
        snprintf(who, sizeof(who), "root");
    else
        snprintf(who, sizeof(who), "root, uid %u", (unsigned)ctl->owner);
    if (ctl->admin_gid != (gid_t)-1)
        resp_error(r, EPERM, "read-only: changing the device needs %s or group admin-group %s",
                   who, ctl->admin_group);
    else
        resp_error(r, EPERM, "read-only: changing the device needs %s (no admin-group)", who);
}

void control_handle(struct control *ctl, struct client *c, char *line, size_t len,
                    struct resp *r)
{
    char *argv[PROTO_MAX_WORDS];
    int argc;

    if (request_split(line, len, argv, &argc, r) < 0)
        return;
    for (int i = 0; i < PROTO_VERB_MAX; i++) {
        const struct verb *v = &verbs[i];
        if (strcmp(argv[0], proto_verb_name(i)) != 0)
            continue;
        /* A name in proto.h without its handler here is a bug. */
        assert(v->fn);
        if (v->changes && !c->may_change)
            resp_refuse_change(ctl, r);
        else if (v->no_args && argc != 1)
            resp_error(r, EINVAL, "%s takes no arguments", argv[0]);
        else
            v->fn(ctl, c, argc, argv, r);
        return;
    }
    resp_error(r, EINVAL, "unknown request '%.*s'", CONTROL_ECHO_MAX, argv[0]);
}
