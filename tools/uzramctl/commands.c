/* SPDX-License-Identifier: MIT */
/*
 * uzramctl's commands on one device: stat, compact, set, idle, writeback
 * and recompress (which show their progress on a terminal), and stop.
 * Each checks its arguments' form before asking the daemon (a bad one is a
 * usage error, exit 2), sends its requests through device.c and prints
 * what came back; the daemon judges the values.  The request words are
 * proto.h's, so that both ends spell them alike.
 */
#include "uzramctl.h"

#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"

static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* The statistics as a JSON object: the figures as integers, the rest as strings. */
static void stat_print_json(const struct device *d, const struct uz_reply *r)
{
    printf("{\n   ");
    json_string("name");
    printf(": ");
    json_string(d->name);
    for (size_t i = 0; i < r->npairs; i++) {
        uint64_t v;
        /* "name" is ours, above: a key appears once in a JSON object. */
        if (strcmp(r->pairs[i].key, "name") == 0)
            continue;
        printf(",\n   ");
        json_string(r->pairs[i].key);
        printf(": ");
        /* Printed from the value parsed, so "007" becomes 7, valid JSON. */
        if (parse_u64(r->pairs[i].val, &v) == 0)
            printf("%" PRIu64, v);
        else
            json_string(r->pairs[i].val);
    }
    printf("\n}\n");
}

/* The statistics as "KEY VALUE" lines, the values in one column. */
static void stat_print_text(const struct device *d, const struct uz_reply *r)
{
    int w = 4;

    for (size_t i = 0; i < r->npairs; i++)
        if ((int)strlen(r->pairs[i].key) > w)
            w = (int)strlen(r->pairs[i].key);
    printf("%-*s %s\n", w, "name", d->name);
    for (size_t i = 0; i < r->npairs; i++)
        if (strcmp(r->pairs[i].key, "name") != 0)
            printf("%-*s %s\n", w, r->pairs[i].key, r->pairs[i].val);
}

/*
 * The loop devices whose backing file is path (the FUSE file), as
 * "/dev/loop0,/dev/loop3" into buf, "" for none: what holds the file open.
 * From sysfs, which any user may read; a device that goes meanwhile is
 * passed over.
 */
static void loop_devices_of(const char *path, char *buf, size_t len)
{
    glob_t g;
    size_t n = 0;

    buf[0] = '\0';
    if (!*path || glob("/sys/block/loop*/loop/backing_file", 0, NULL, &g) != 0)
        return;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char file[PATH_MAX + 2], dev[64];
        ssize_t k = read_small_file(g.gl_pathv[i], 0, file, sizeof(file));
        if (k <= 0)
            continue;
        file[strcspn(file, "\n")] = '\0';
        if (strcmp(file, path) != 0)
            continue;
        /* /sys/block/loopN/loop/backing_file: N's name is the fourth part. */
        if (sscanf(g.gl_pathv[i], "/sys/block/%63[^/]/", dev) != 1)
            continue;
        int w = snprintf(buf + n, len - n, "%s/dev/%s", n ? "," : "", dev);
        if (w < 0 || (size_t)w >= len - n)
            break;
        n += (size_t)w;
    }
    globfree(&g);
}

int cmd_stat(const struct cmdline *cl)
{
    const char *verb = proto_verb_name(PROTO_STAT);
    struct device d;
    struct uz_reply *r = malloc(sizeof(*r));
    int status = EXIT_FAILURE;
    char loops[512];

    device_resolve(&d, cl->args[0]);
    if (!r) {
        warn("%s", strerror(ENOMEM));
        return EXIT_FAILURE;
    }
    if (device_open(&d, TIMEOUT_QUERY, false) < 0 || device_call(&d, verb, verb, r) < 0)
        goto out;
    /* What holds the FUSE file open, from this machine's side: after fuse. */
    for (size_t i = 0; i < r->npairs && r->npairs < UZ_MAX_PAIRS; i++) {
        if (strcmp(r->pairs[i].key, "fuse") != 0)
            continue;
        loop_devices_of(r->pairs[i].val, loops, sizeof(loops));
        memmove(&r->pairs[i + 2], &r->pairs[i + 1], (r->npairs - i - 1) * sizeof(r->pairs[0]));
        r->pairs[i + 1].key = "loop_devices";
        r->pairs[i + 1].val = loops;
        r->npairs++;
        break;
    }
    if (cl->list->json)
        stat_print_json(&d, r);
    else
        stat_print_text(&d, r);
    status = fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
out:
    device_close(&d);
    free(r);
    return status;
}

/* Check KEY=VALUE's form; the daemon judges the key and the value. */
static void check_setting(const char *s)
{
    const char *eq = strchr(s, '=');

    if (!eq)
        die_usage("expected KEY=VALUE, got '%s'", s);
    if (eq == s)
        die_usage("no setting name in '%s'", s);
    for (const char *p = s; p < eq; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            die_usage("bad setting name in '%s'", s);
    if (!eq[1])
        die_usage("no value in '%s'", s);
    if (!proto_setting_known(s, (size_t)(eq - s)))
        die_usage("unknown setting '%.*s' (%s)", (int)(eq - s), s, PROTO_SETTINGS);
}

static bool is_watermark(const char *s)
{
    static const char *const keys[] = { "high-watermark=", "high_watermark=",
                                        "low-watermark=", "low_watermark=" };

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strncmp(s, keys[i], strlen(keys[i])) == 0)
            return true;
    return false;
}

/* Append " KEY=VALUE", the value encoded, to the request in req. */
static int add_setting(char *req, size_t size, size_t *len, const char *setting)
{
    const char *eq = strchr(setting, '=');
    char val[2048];
    int n;

    if (proto_encode(eq + 1, val, sizeof(val)) < 0)
        return -ENAMETOOLONG;
    n = snprintf(req + *len, size - *len, " %.*s=%s", (int)(eq - setting), setting, val);
    if (n < 0 || (size_t)n >= size - *len)
        return -ENAMETOOLONG;
    *len += (size_t)n;
    return 0;
}

static bool is_mem_limit(const char *s)
{
    return strncmp(s, "mem-limit=", 10) == 0 || strncmp(s, "mem_limit=", 10) == 0;
}

/*
 * After a mem-limit was set: if the device holds as much already, say so
 * and what follows (the daemon says the same in its log at start, through
 * watch_limit()).  With a backing store, eviction writes pages back until
 * the use is under the low watermark, and writes that need memory wait
 * for it; without one, they fail with ENOSPC until discards (or a higher
 * limit) make room.  A stat that fails only costs the warning.
 */
static void warn_limit(struct device *d, struct uz_reply *r)
{
    const char *verb = proto_verb_name(PROTO_STAT), *backing;
    uint64_t limit, used, low;
    char slimit[32], sused[32];

    if (uz_request(d->fd, verb, r) < 0 || !r->ok || uz_get_u64(r, "mem_limit", &limit) < 0 ||
        uz_get_u64(r, "mem_used_total", &used) < 0 || limit == 0 || used < limit)
        return;
    format_size(limit, slimit, sizeof(slimit));
    format_size(used, sused, sizeof(sused));
    backing = uz_get(r, "backing");
    if (backing && *backing && uz_get_u64(r, "low_watermark", &low) == 0)
        warn("%s: mem-limit %s is not above what the device holds (%s): pages go to the "
             "backing store until it holds under %" PRIu64 "%% of the limit, and writes "
             "that need memory wait for them",
             d->arg, slimit, sused, low);
    else
        warn("%s: mem-limit %s is not above what the device holds (%s), and it has no "
             "backing store: writes that need memory fail with ENOSPC until discards bring "
             "it under the limit",
             d->arg, slimit, sused);
}

int cmd_set(const struct cmdline *cl)
{
    const char *verb = proto_verb_name(PROTO_SET);
    int argc = cl->nargs - 1;
    char **argv = cl->args + 1;
    struct device d;
    struct uz_reply *r;
    int status = EXIT_FAILURE;

    device_resolve(&d, cl->args[0]);
    for (int i = 0; i < argc; i++)
        check_setting(argv[i]);
    r = malloc(sizeof(*r));
    if (!r) {
        warn("%s", strerror(ENOMEM));
        return EXIT_FAILURE;
    }
    if (device_open(&d, TIMEOUT_QUERY, false) < 0)
        goto out;
    /*
     * One request per setting, in order: an error names the one refused,
     * and those before it are in force.  The two watermarks go together, in
     * one request where the first of them stands, so that they can move past
     * each other (90/80 to 50/40) without an order to get right.
     */
    bool wm_sent = false;
    for (int i = 0; i < argc; i++) {
        char req[PROTO_LINE_MAX], what[128];
        size_t len = (size_t)snprintf(req, sizeof(req), "%s", verb);
        bool wm = is_watermark(argv[i]);

        if (wm && wm_sent)
            continue;
        snprintf(what, sizeof(what), "%s %.*s", verb, (int)(strchr(argv[i], '=') - argv[i]),
                 argv[i]);
        for (int j = i; j < argc; j++) {
            if (j > i && (!wm || !is_watermark(argv[j])))
                continue;
            if (add_setting(req, sizeof(req), &len, argv[j]) < 0) {
                warn("%s: %s: value too long", d.arg, what);
                goto out;
            }
            if (!wm)
                break;
        }
        if (wm) {
            wm_sent = true;
            snprintf(what, sizeof(what), "%s watermarks", verb);
        }
        if (device_call(&d, req, what, r) < 0)
            goto out;
    }
    for (int i = 0; i < argc; i++)
        if (is_mem_limit(argv[i])) {
            warn_limit(&d, r);
            break;
        }
    status = EXIT_SUCCESS;
out:
    device_close(&d);
    free(r);
    return status;
}

/*
 * Send req to the device at arg, and print "NAME: PREFIXN pages WHAT" from
 * the key of its answer (with the size when bytes is true).
 */
static int run_simple(const char *arg, const char *req, const char *verb, unsigned timeout,
                      const char *key, const char *prefix, const char *what, bool bytes)
{
    struct device d;
    struct uz_reply *r = malloc(sizeof(*r));
    int status = EXIT_FAILURE;
    uint64_t n;

    device_resolve(&d, arg);
    if (!r) {
        warn("%s", strerror(ENOMEM));
        return EXIT_FAILURE;
    }
    if (device_open(&d, timeout, false) < 0 || device_call(&d, req, verb, r) < 0)
        goto out;
    if (uz_get_u64(r, key, &n) < 0) {
        device_error(&d, verb, EPROTO);
        goto out;
    }
    printf("%s: %s%" PRIu64 " page%s %s", d.name, prefix, n, n == 1 ? "" : "s", what);
    if (bytes) {
        char human[32];
        format_size(n > UINT64_MAX / 4096 ? UINT64_MAX : n * 4096, human, sizeof(human));
        printf(" (%s)", human);
    }
    printf("\n");
    status = fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
out:
    device_close(&d);
    free(r);
    return status;
}

int cmd_compact(const struct cmdline *cl)
{
    const char *verb = proto_verb_name(PROTO_COMPACT);

    return run_simple(cl->args[0], verb, verb, TIMEOUT_COMPACT, "pages_freed", "compacted, ",
                      "freed", true);
}

int cmd_idle(const struct cmdline *cl)
{
    const char *verb = proto_verb_name(PROTO_IDLE), *age = cl->args[1];
    uint64_t v;
    char req[64];

    if (strcmp(age, "all") != 0 && parse_u64(age, &v) < 0)
        die_usage("%s: expected all or a number of seconds, got '%s'", verb, age);
    snprintf(req, sizeof(req), "%s %s", verb, strcmp(age, "all") == 0 ? "all" : age);
    return run_simple(cl->args[0], req, verb, TIMEOUT_COMPACT, "marked", "", "marked idle",
                      false);
}

/* A selection that verb does not take is a usage error (proto.c has the list). */
static void check_select(enum proto_verb verb, const char *mode)
{
    char names[64];
    unsigned sel;

    if (proto_select_parse(verb, mode, &sel) < 0)
        die_usage("%s: expected %s, got '%s'", proto_verb_name(verb),
                  proto_select_names(verb, ", ", " or ", names, sizeof(names)), mode);
}

/*
 * A long job (writeback, recompress) and what shows its progress.  The
 * job's own connection is parked until the answer, so a second one asks
 * "progress" (PROTOCOL.md) every TICK_MS; a daemon without that verb, or a
 * second connection that fails, only costs the progress line.
 */
struct job_watch {
    struct device peek; /* the second connection; fd -1 without one */
    struct uz_reply r;
    const char *verb;
    uint64_t t0; /* monotonic_usec() when the request went */
    bool live;   /* draw the progress line (a terminal, no --json) */
    bool drawn;  /* a progress line is on the screen */
    uint64_t selected, done;
    bool known; /* selected and done came from the daemon */
};

/* MB/s (10^6 bytes) of pages 4 KiB pages in usec. */
static double job_rate(uint64_t pages, uint64_t usec)
{
    return usec ? (double)pages * 4096.0 / (double)usec : 0.0;
}

/* Ask the daemon how far the job has got; false (and the peek closed) if it cannot say. */
static bool job_ask(struct job_watch *w)
{
    const char *verb = proto_verb_name(PROTO_PROGRESS);

    if (w->peek.fd < 0)
        return false;
    if (uz_request(w->peek.fd, verb, &w->r) < 0 || !w->r.ok ||
        uz_get_u64(&w->r, "selected", &w->selected) < 0 ||
        uz_get_u64(&w->r, "done", &w->done) < 0) {
        device_close(&w->peek);
        w->known = false;
        return false;
    }
    w->known = true;
    return true;
}

/* Every TICK_MS while the job runs: redraw its line in place. */
static void job_tick(void *arg)
{
    struct job_watch *w = arg;
    const char *job;

    if (!w->live || !job_ask(w) || !(job = uz_get(&w->r, "job")) || strcmp(job, w->verb) != 0)
        return;
    uint64_t usec = monotonic_usec() - w->t0;
    printf("\r%s: %s: %" PRIu64 " of %" PRIu64 " pages, %.1f MB/s\033[K", w->peek.name,
           w->verb, w->done, w->selected, job_rate(w->done, usec));
    fflush(stdout);
    w->drawn = true;
}

/*
 * Send req (a writeback or recompress request) to the device at arg and
 * wait for its answer, with a progress line on a terminal; then print the
 * summary: "NAME: N pages WHAT (SIZE) in T s, R MB/s", or with --json one
 * object.  key is the answer's count.
 */
static int run_job(const struct cmdline *cl, const char *req, const char *verb,
                   const char *key, const char *what)
{
    struct device d;
    struct job_watch *w = calloc(1, sizeof(*w));
    struct uz_reply *r = malloc(sizeof(*r));
    int status = EXIT_FAILURE;
    uint64_t n, usec;
    char human[32];

    device_resolve(&d, cl->args[0]);
    if (!r || !w) {
        warn("%s", strerror(ENOMEM));
        goto out_free;
    }
    w->verb = verb;
    w->live = !cl->list->json && isatty(STDOUT_FILENO);
    device_resolve(&w->peek, cl->args[0]);
    if (device_open(&d, TIMEOUT_LONG, false) < 0)
        goto out;
    if (device_open(&w->peek, TIMEOUT_QUERY, true) < 0)
        device_close(&w->peek);
    w->t0 = monotonic_usec();
    int e = device_call_tick(&d, req, verb, r, job_tick, w);
    usec = monotonic_usec() - w->t0;
    if (w->drawn) {
        printf("\r\033[K");
        fflush(stdout);
    }
    if (e < 0)
        goto out;
    if (uz_get_u64(r, key, &n) < 0) {
        device_error(&d, verb, EPROTO);
        goto out;
    }
    /* The pages the job went through (recompression tries more than it keeps). */
    uint64_t done = job_ask(w) ? w->done : n;
    format_size(n > UINT64_MAX / 4096 ? UINT64_MAX : n * 4096, human, sizeof(human));
    if (cl->list->json) {
        printf("{\n   \"name\": ");
        json_string(d.name);
        printf(",\n   \"%s\": %" PRIu64 ",\n   \"bytes\": %" PRIu64, key, n,
               n > UINT64_MAX / 4096 ? UINT64_MAX : n * 4096);
        if (w->known)
            printf(",\n   \"selected\": %" PRIu64 ",\n   \"done\": %" PRIu64, w->selected,
                   w->done);
        printf(",\n   \"seconds\": %.3f,\n   \"mb_per_s\": %.1f\n}\n", (double)usec / 1e6,
               job_rate(done, usec));
    } else {
        printf("%s: %" PRIu64 " page%s %s (%s)", d.name, n, n == 1 ? "" : "s", what, human);
        if (w->known && w->done != n)
            printf(" of %" PRIu64 " tried", w->done);
        printf(" in %.1f s, %.1f MB/s\n", (double)usec / 1e6, job_rate(done, usec));
    }
    status = fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
out:
    device_close(&w->peek);
    device_close(&d);
out_free:
    free(w);
    free(r);
    return status;
}

int cmd_writeback(const struct cmdline *cl)
{
    const char *verb = proto_verb_name(PROTO_WRITEBACK), *mode = cl->args[1];
    char req[128];
    uint64_t v = 0;

    check_select(PROTO_WRITEBACK, mode);
    if (cl->limit && (parse_size(cl->limit, &v) < 0 || v == 0))
        die_usage("--limit: bad size '%s' (want a size above 0, e.g. 256M)", cl->limit);
    if (cl->limit)
        snprintf(req, sizeof(req), "%s %s limit=%" PRIu64, verb, mode, v);
    else
        snprintf(req, sizeof(req), "%s %s", verb, mode);
    return run_job(cl, req, verb, "written", "written back");
}

int cmd_recompress(const struct cmdline *cl)
{
    const char *verb = proto_verb_name(PROTO_RECOMPRESS), *mode = cl->args[1];
    char req[128];
    uint64_t v = 0;

    check_select(PROTO_RECOMPRESS, mode);
    if (cl->bundle) {
        if (cl->threshold)
            die_usage("recompress: --bundle and --threshold do not go together");
        if (strcmp(mode, "idle") != 0)
            die_usage("recompress: --bundle takes idle pages only, not '%s'", mode);
        snprintf(req, sizeof(req), "%s %s bundle", verb, mode);
        return run_job(cl, req, verb, "bundled", "bundled");
    }
    if (cl->threshold && (parse_size(cl->threshold, &v) < 0 || v > 4096))
        die_usage("--threshold: bad size '%s' (want 0 to 4096 bytes)", cl->threshold);
    if (cl->threshold)
        snprintf(req, sizeof(req), "%s %s threshold=%" PRIu64, verb, mode, v);
    else
        snprintf(req, sizeof(req), "%s %s", verb, mode);
    return run_job(cl, req, verb, "recompressed", "recompressed");
}

/*
 * Wait until the daemon that answered on d has gone: first the end of the
 * connection (it frees its control server once its front ends are down),
 * then its process (/proc/PID, which any user may see; the pidfile is the
 * last thing it removes), so that the next command may start a daemon of
 * the same name.  0, or -ETIMEDOUT after timeout seconds.
 */
static int wait_gone(struct device *d, uint64_t pid, unsigned timeout)
{
    uint64_t deadline = monotonic_usec() + (uint64_t)timeout * 1000000u;
    char path[32], buf[256];

    for (;;) {
        uint64_t now = monotonic_usec();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd p = { .fd = d->fd, .events = POLLIN };
        int n = poll(&p, 1, (int)((deadline - now + 999) / 1000));
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n > 0 && read(d->fd, buf, sizeof(buf)) <= 0)
            break;
    }
    snprintf(path, sizeof(path), "/proc/%" PRIu64, pid);
    while (pid > 0 && access(path, F_OK) == 0) {
        if (monotonic_usec() >= deadline)
            return -ETIMEDOUT;
        usleep(20 * 1000);
    }
    return 0;
}

int cmd_stop(const struct cmdline *cl)
{
    const char *verb = proto_verb_name(PROTO_STOP);
    struct uz_reply *r = malloc(sizeof(*r));
    int status = EXIT_FAILURE;
    struct device d;
    uint64_t pid = 0;
    char req[32];
    int e;

    device_resolve(&d, cl->args[0]);
    if (!r) {
        warn("%s", strerror(ENOMEM));
        return EXIT_FAILURE;
    }
    if (device_open(&d, TIMEOUT_QUERY, false) < 0)
        goto out;
    const char *info = proto_verb_name(PROTO_INFO);
    if (device_call(&d, info, info, r) < 0)
        goto out;
    (void)uz_get_u64(r, "pid", &pid);
    snprintf(req, sizeof(req), "%s%s", verb, cl->force ? " force" : "");
    if (device_call(&d, req, verb, r) < 0)
        goto out;
    e = wait_gone(&d, pid, TIMEOUT_COMPACT);
    if (e == -ETIMEDOUT) {
        warn("%s: asked to stop, and still stopping after %u s", d.arg, TIMEOUT_COMPACT);
        goto out;
    }
    if (e < 0) {
        device_error(&d, verb, -e);
        goto out;
    }
    printf("%s: stopped\n", d.name);
    status = fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
out:
    device_close(&d);
    free(r);
    return status;
}
