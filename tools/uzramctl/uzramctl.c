/* SPDX-License-Identifier: MIT */
/*
 * uzramctl: watch, compact and tune running uzramd daemons, in the manner
 * of util-linux's zramctl.
 *
 * Every daemon has a control socket; uzramctl knows daemons only through
 * them.  "list" looks for *.sock in the run directory and asks each for its
 * info and statistics; a socket nobody answers on was left by a daemon that
 * died and is passed over in silence, as zramctl passes over reset devices.
 * The other verbs name one device, by name (its socket is then
 * uzram_run_dir()/NAME.sock) or by the socket's path (anything with a '/').
 *
 * Every exchange starts with "hello 1", so that a daemon of another protocol
 * version is refused with a clear message rather than misread.  Every
 * socket carries a send and receive timeout, so that a hung daemon cannot
 * hang its caller.
 *
 * Exit status: 0 success, 1 a daemon could not be reached or refused the
 * request, 2 bad arguments.  Each error is one line on stderr.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libsmartcols.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "client.h"
#include "config.h"
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

static const char *run_dir_opt;   /* --dir */

static void die_usage(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die_usage(const char *fmt, ...)
{
    va_list ap;

    fputs("uzramctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (try 'uzramctl --help')\n", stderr);
    exit(EXIT_USAGE);
}

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...)
{
    va_list ap;

    fputs("uzramctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- devices ------------------------------------------------------------ */

struct device {
    const char *arg;      /* as the user gave it, for messages */
    char path[108];       /* the control socket */
    char name[UZRAM_NAME_MAX + 1];
    int fd;
    unsigned timeout;
};

static int run_dir(char *buf, size_t len)
{
    if (run_dir_opt) {
        int n = snprintf(buf, len, "%s", run_dir_opt);
        return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
    }
    return uzram_run_dir(buf, len);
}

/* Work out DEVICE's socket; a bad DEVICE is a usage error. */
static void device_resolve(struct device *d, const char *arg)
{
    int r;

    d->arg = arg;
    d->fd = -1;
    snprintf(d->name, sizeof(d->name), "%s", arg);
    if (strchr(arg, '/')) {
        if (strlen(arg) >= sizeof(d->path))
            die_usage("socket path too long: '%s'", arg);
        strcpy(d->path, arg);
        /* Until the daemon tells its name: the file name less ".sock". */
        const char *base = strrchr(arg, '/') + 1;
        size_t n = strlen(base);
        if (n > 5 && strcmp(base + n - 5, ".sock") == 0)
            n -= 5;
        snprintf(d->name, sizeof(d->name), "%.*s", (int)n, base);
        return;
    }
    r = uzram_check_name(arg);
    if (r < 0)
        die_usage("bad device name '%s'", arg);
    if (run_dir_opt) {
        int n = snprintf(d->path, sizeof(d->path), "%s/%s.sock", run_dir_opt, arg);
        r = n < 0 || (size_t)n >= sizeof(d->path) ? -ENAMETOOLONG : 0;
    } else {
        r = uzram_control_path(arg, d->path, sizeof(d->path));
    }
    if (r < 0)
        die_usage("device name '%s': %s", arg, strerror(-r));
}

/* Report a failed exchange with d in one line. */
static void device_error(const struct device *d, const char *what, int err)
{
    switch (err) {
    case ENOENT:
    case ECONNREFUSED:
        warn("%s: no such device (no daemon at %s)", d->arg, d->path);
        break;
    case ETIMEDOUT:
        warn("%s: %s: the daemon did not answer within %u s", d->arg, what, d->timeout);
        break;
    case ECONNRESET:
    case EPIPE:
        warn("%s: %s: the daemon closed the connection", d->arg, what);
        break;
    case EPROTO:
        warn("%s: %s: the daemon's answer makes no sense to this uzramctl", d->arg, what);
        break;
    default:
        warn("%s: %s: %s", d->arg, what, strerror(err));
    }
}

/*
 * Send req and read its answer.  0 when the daemon answered ok; otherwise
 * the error has been reported (what names the request) and -1 returned.
 */
static int device_call(struct device *d, const char *req, const char *what, struct uz_reply *r)
{
    int e = uz_request(d->fd, req, r);

    if (e < 0) {
        device_error(d, what, -e);
        return -1;
    }
    if (!r->ok) {
        if (*r->msg)
            warn("%s: %s: %s (%s)", d->arg, what, strerror(r->err), r->msg);
        else
            warn("%s: %s: %s", d->arg, what, strerror(r->err));
        return -1;
    }
    return 0;
}

/*
 * Connect and agree on the protocol.  0, or -errno of the connection
 * (reported unless quiet_missing and there is no daemon), or -EPROTO for a
 * daemon that will not speak our protocol (reported).
 */
static int device_open(struct device *d, unsigned timeout, bool quiet_missing)
{
    struct uz_reply *r = malloc(sizeof(*r));
    uint64_t proto;
    int fd;

    if (!r) {
        warn("%s: %s", d->arg, strerror(ENOMEM));
        return -ENOMEM;
    }
    d->timeout = timeout;
    fd = uz_connect(d->path, timeout);
    if (fd < 0) {
        if (!(quiet_missing && (fd == -ENOENT || fd == -ECONNREFUSED || fd == -ENOTSOCK)))
            device_error(d, "connect", -fd);
        free(r);
        return fd;
    }
    d->fd = fd;
    char hello[32];
    snprintf(hello, sizeof(hello), "hello %d", UZ_PROTOCOL);
    int e = uz_request(fd, hello, r);
    if (e < 0) {
        device_error(d, "hello", -e);
    } else if (!r->ok) {
        if (r->err == EPROTONOSUPPORT)
            warn("%s: the daemon does not speak protocol %d (%s)", d->arg, UZ_PROTOCOL, r->msg);
        else
            warn("%s: hello: %s (%s)", d->arg, strerror(r->err), r->msg);
        e = -EPROTO;
    } else if (uz_get_u64(r, "protocol", &proto) < 0 || proto != UZ_PROTOCOL) {
        warn("%s: the daemon answered with another protocol than %d", d->arg, UZ_PROTOCOL);
        e = -EPROTO;
    } else {
        const char *name = uz_get(r, "name");
        if (name && *name)
            snprintf(d->name, sizeof(d->name), "%s", name);
    }
    free(r);
    if (e < 0) {
        close(fd);
        d->fd = -1;
    }
    return e;
}

static void device_close(struct device *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
}

/* ---- list --------------------------------------------------------------- */

enum col_kind {
    COL_STRING,
    COL_SIZE,
    COL_COUNT,
    COL_PAGES,     /* a count of 4 KiB pages, shown as a size */
};

struct colinfo {
    const char *name;
    const char *key;      /* in the info or stat reply */
    enum col_kind kind;
    double whint;
    const char *help;
};

enum {
    COL_NAME,
    COL_ALGORITHM,
    COL_DISKSIZE,
    COL_DATA,
    COL_COMPR,
    COL_TOTAL,
    COL_ZERO_PAGES,
    COL_MEMLIMIT,
    COL_MEMUSED,
    COL_MIGRATED,
    COL_MOUNTPOINT,
    COL_BACKING,
    COL_WRITTEN_BACK,
    COL_MAX
};

static const struct colinfo columns[COL_MAX] = {
    [COL_NAME] = { "NAME", "name", COL_STRING, 0.25, "device name" },
    [COL_ALGORITHM] = { "ALGORITHM", "algorithm", COL_STRING, 3, "compression algorithm" },
    [COL_DISKSIZE] = { "DISKSIZE", "disksize", COL_SIZE, 5, "size of the device" },
    [COL_DATA] = { "DATA", "orig_data_size", COL_SIZE, 5, "data stored, uncompressed" },
    [COL_COMPR] = { "COMPR", "compr_data_size", COL_SIZE, 5, "data stored, compressed" },
    [COL_TOTAL] = { "TOTAL", "mem_used_total", COL_SIZE, 5,
                    "memory held, allocator waste and metadata included" },
    [COL_ZERO_PAGES] = { "ZERO-PAGES", "same_pages", COL_COUNT, 3,
                         "pages of one repeated word, stored without memory" },
    [COL_MEMLIMIT] = { "MEM-LIMIT", "mem_limit", COL_SIZE, 5, "memory limit (0: none)" },
    [COL_MEMUSED] = { "MEM-USED", "mem_used_max", COL_SIZE, 5, "the most memory held so far" },
    [COL_MIGRATED] = { "MIGRATED", "pages_compacted", COL_COUNT, 3, "pages freed by compaction" },
    [COL_MOUNTPOINT] = { "MOUNTPOINT", NULL, COL_STRING, 0.10, "the FUSE file (or NBD address) served" },
    /* Not zramctl's: after its columns, and not in the default set. */
    [COL_BACKING] = { "BACKING", "backing", COL_STRING, 0.10,
                      "the backing store (file or NBD URI) cold pages go to" },
    [COL_WRITTEN_BACK] = { "WRITTEN-BACK", "bd_count", COL_PAGES, 5,
                           "data on the backing store now" },
};

/* As zramctl's default, less STREAMS, which uzram has no use for. */
static const int default_columns[] = {
    COL_NAME, COL_ALGORITHM, COL_DISKSIZE, COL_DATA, COL_COMPR, COL_TOTAL, COL_MOUNTPOINT,
};

struct list_opts {
    int cols[COL_MAX * 2];
    size_t ncols;
    bool bytes, raw, noheadings, json;
};

static int column_by_name(const char *name, size_t len)
{
    for (int i = 0; i < COL_MAX; i++)
        if (strlen(columns[i].name) == len && strncasecmp(columns[i].name, name, len) == 0)
            return i;
    return -1;
}

/* --output LIST; "+LIST" adds to the default columns, as in util-linux. */
static void parse_output(struct list_opts *o, const char *list)
{
    const char *p = list;

    if (*p == '+')
        p++;
    else
        o->ncols = 0;
    for (;;) {
        size_t len = strcspn(p, ",");
        int c = column_by_name(p, len);
        if (c < 0)
            die_usage("unknown column '%.*s' in --output", (int)len, p);
        if (o->ncols == sizeof(o->cols) / sizeof(o->cols[0]))
            die_usage("too many columns in --output");
        o->cols[o->ncols++] = c;
        if (!p[len])
            break;
        p += len + 1;
    }
}

static int add_row(struct libscols_table *tb, const struct list_opts *o,
                   const struct uz_reply *info, const struct uz_reply *st)
{
    struct libscols_line *ln = scols_table_new_line(tb, NULL);

    if (!ln)
        return -ENOMEM;
    for (size_t i = 0; i < o->ncols; i++) {
        const struct colinfo *ci = &columns[o->cols[i]];
        char buf[64];
        const char *v;
        uint64_t n;

        if (o->cols[i] == COL_MOUNTPOINT) {
            v = uz_get(info, "fuse");
            if (!v)
                v = uz_get(info, "nbd");
        } else {
            v = uz_get(info, ci->key);
            if (!v)
                v = uz_get(st, ci->key);
        }
        /*
         * A figure is printed from its parsed value, or not at all: what a
         * daemon sent ("007", "1e5") must not reach a JSON number as is.
         */
        if (v && ci->kind != COL_STRING) {
            bool size = ci->kind == COL_SIZE || ci->kind == COL_PAGES;
            if (parse_u64(v, &n) < 0 || (ci->kind == COL_PAGES && n > UINT64_MAX / 4096)) {
                v = NULL;
            } else {
                if (ci->kind == COL_PAGES)
                    n *= 4096;
                if (size && !o->bytes)
                    format_size(n, buf, sizeof(buf));
                else
                    snprintf(buf, sizeof(buf), "%" PRIu64, n);
                v = buf;
            }
        }
        if (v && scols_line_set_data(ln, i, v) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* Ask one daemon and add its row.  1 if it was added, 0 if skipped, -1 on error. */
static int list_one(struct libscols_table *tb, const struct list_opts *o, struct device *d,
                    bool quiet_missing)
{
    struct uz_reply *info = malloc(sizeof(*info)), *st = malloc(sizeof(*st));
    int ret = -1;

    if (!info || !st) {
        warn("%s", strerror(ENOMEM));
        goto out;
    }
    int e = device_open(d, TIMEOUT_LIST, quiet_missing);
    if (e < 0) {
        ret = quiet_missing && (e == -ENOENT || e == -ECONNREFUSED || e == -ENOTSOCK) ? 0 : -1;
        goto out;
    }
    if (device_call(d, "info", "info", info) < 0 || device_call(d, "stat", "stat", st) < 0)
        goto out;
    if (add_row(tb, o, info, st) < 0) {
        warn("%s", strerror(ENOMEM));
        goto out;
    }
    ret = 1;
out:
    device_close(d);
    free(info);
    free(st);
    return ret;
}

static int cmd_list(const struct list_opts *o, int argc, char **argv)
{
    struct libscols_table *tb;
    int status = EXIT_SUCCESS, rows = 0;

    /* Check every DEVICE before asking any daemon. */
    struct device *devs = calloc((size_t)argc + 1, sizeof(*devs));
    if (!devs) {
        warn("%s", strerror(ENOMEM));
        return EXIT_FAILURE;
    }
    for (int i = 0; i < argc; i++)
        device_resolve(&devs[i], argv[i]);

    scols_init_debug(0);
    tb = scols_new_table();
    if (!tb) {
        warn("%s", strerror(ENOMEM));
        free(devs);
        return EXIT_FAILURE;
    }
    scols_table_enable_raw(tb, o->raw);
    scols_table_enable_json(tb, o->json);
    scols_table_enable_noheadings(tb, o->noheadings);
    if (o->json)
        scols_table_set_name(tb, "uzramdevices");
    for (size_t i = 0; i < o->ncols; i++) {
        const struct colinfo *ci = &columns[o->cols[i]];
        int fl = ci->kind == COL_STRING ? 0 : SCOLS_FL_RIGHT;
        if (o->cols[i] == COL_MOUNTPOINT || o->cols[i] == COL_BACKING)
            fl |= SCOLS_FL_TRUNC;
        struct libscols_column *cl = scols_table_new_column(tb, ci->name, ci->whint, fl);
        if (!cl) {
            warn("%s", strerror(ENOMEM));
            scols_unref_table(tb);
            free(devs);
            return EXIT_FAILURE;
        }
        /* JSON numbers where the value is a number: counts always, sizes
         * with --bytes (otherwise they are "1.5G", a string), as zramctl. */
        bool size = ci->kind == COL_SIZE || ci->kind == COL_PAGES;
        if (o->json && (ci->kind == COL_COUNT || (size && o->bytes)))
            scols_column_set_json_type(cl, SCOLS_JSON_NUMBER);
    }

    if (argc > 0) {
        for (int i = 0; i < argc; i++) {
            int r = list_one(tb, o, &devs[i], false);
            if (r < 0)
                status = EXIT_FAILURE;
            else
                rows += r;
        }
    } else {
        char dir[256];
        struct dirent **ents = NULL;
        int n, r = run_dir(dir, sizeof(dir));

        if (r < 0) {
            warn("run directory: %s", strerror(-r));
            status = EXIT_FAILURE;
            n = 0;
        } else {
            n = scandir(dir, &ents, NULL, alphasort);
            if (n < 0) {
                /* No run directory: no daemon has ever run. */
                if (errno != ENOENT) {
                    warn("%s: %s", dir, strerror(errno));
                    status = EXIT_FAILURE;
                }
                n = 0;
            }
        }
        for (int i = 0; i < n; i++) {
            const char *f = ents[i]->d_name;
            size_t len = strlen(f);
            if (len > 5 && f[0] != '.' && strcmp(f + len - 5, ".sock") == 0) {
                char path[512];
                struct device d = { .fd = -1 };
                snprintf(path, sizeof(path), "%s/%s", dir, f);
                if (strlen(path) < sizeof(d.path)) {
                    strcpy(d.path, path);
                    d.arg = d.path;
                    snprintf(d.name, sizeof(d.name), "%.*s", (int)(len - 5), f);
                    r = list_one(tb, o, &d, true);
                    if (r < 0)
                        status = EXIT_FAILURE;
                    else
                        rows += r;
                }
            }
            free(ents[i]);
        }
        free(ents);
    }

    /* As zramctl: no devices, no output (but JSON is always an object). */
    if (rows > 0 || o->json)
        scols_print_table(tb);
    scols_unref_table(tb);
    free(devs);
    return status;
}

/* ---- stat, compact, set ------------------------------------------------- */

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

static int cmd_stat(const char *arg, bool json)
{
    struct device d;
    struct uz_reply *r = malloc(sizeof(*r));
    int status = EXIT_FAILURE;

    device_resolve(&d, arg);
    if (!r) {
        warn("%s", strerror(ENOMEM));
        return EXIT_FAILURE;
    }
    if (device_open(&d, TIMEOUT_QUERY, false) < 0 || device_call(&d, "stat", "stat", r) < 0)
        goto out;

    if (json) {
        /* The figures as integers, the rest (algorithm) as strings. */
        printf("{\n   ");
        json_string("name");
        printf(": ");
        json_string(d.name);
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
    } else {
        int w = 4;
        for (size_t i = 0; i < r->npairs; i++)
            if ((int)strlen(r->pairs[i].key) > w)
                w = (int)strlen(r->pairs[i].key);
        printf("%-*s %s\n", w, "name", d.name);
        for (size_t i = 0; i < r->npairs; i++)
            if (strcmp(r->pairs[i].key, "name") != 0)
                printf("%-*s %s\n", w, r->pairs[i].key, r->pairs[i].val);
    }
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

    if (uz_encode(eq + 1, val, sizeof(val)) < 0)
        return -ENAMETOOLONG;
    n = snprintf(req + *len, size - *len, " %.*s=%s", (int)(eq - setting), setting, val);
    if (n < 0 || (size_t)n >= size - *len)
        return -ENAMETOOLONG;
    *len += (size_t)n;
    return 0;
}

static int cmd_set(const char *arg, int argc, char **argv)
{
    struct device d;
    struct uz_reply *r;
    int status = EXIT_FAILURE;

    device_resolve(&d, arg);
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
        char req[4096], what[128];
        size_t len = (size_t)snprintf(req, sizeof(req), "set");
        bool wm = is_watermark(argv[i]);

        if (wm && wm_sent)
            continue;
        snprintf(what, sizeof(what), "set %.*s", (int)(strchr(argv[i], '=') - argv[i]), argv[i]);
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
            snprintf(what, sizeof(what), "set watermarks");
        }
        if (device_call(&d, req, what, r) < 0)
            goto out;
    }
    status = EXIT_SUCCESS;
out:
    device_close(&d);
    free(r);
    return status;
}

/* ---- idle, writeback, recompress ----------------------------------------- */

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

static int cmd_compact(const char *arg)
{
    return run_simple(arg, "compact", "compact", TIMEOUT_COMPACT, "pages_freed", "compacted, ",
                      "freed", true);
}

static int cmd_idle(const char *arg, const char *age)
{
    uint64_t v;
    char req[64];

    if (strcmp(age, "all") != 0 && parse_u64(age, &v) < 0)
        die_usage("idle: expected all or a number of seconds, got '%s'", age);
    snprintf(req, sizeof(req), "idle %s", strcmp(age, "all") == 0 ? "all" : age);
    return run_simple(arg, req, "idle", TIMEOUT_COMPACT, "marked", "", "marked idle", false);
}

static bool one_of(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

static int cmd_writeback(const char *arg, const char *mode, const char *limit)
{
    static const char *const modes[] = { "idle", "huge", "huge_idle", "all", NULL };
    char req[128];
    uint64_t v = 0;

    if (!one_of(mode, modes))
        die_usage("writeback: expected idle, huge, huge_idle or all, got '%s'", mode);
    if (limit && (parse_size(limit, &v) < 0 || v == 0))
        die_usage("--limit: bad size '%s' (want a size above 0, e.g. 256M)", limit);
    if (limit)
        snprintf(req, sizeof(req), "writeback %s limit=%" PRIu64, mode, v);
    else
        snprintf(req, sizeof(req), "writeback %s", mode);
    return run_simple(arg, req, "writeback", TIMEOUT_LONG, "written", "", "written back", true);
}

static int cmd_recompress(const char *arg, const char *mode, const char *threshold)
{
    static const char *const modes[] = { "idle", "huge", "huge_idle", NULL };
    char req[128];
    uint64_t v = 0;

    if (!one_of(mode, modes))
        die_usage("recompress: expected idle, huge or huge_idle, got '%s'", mode);
    if (threshold && (parse_size(threshold, &v) < 0 || v > 4096))
        die_usage("--threshold: bad size '%s' (want 0 to 4096 bytes)", threshold);
    if (threshold)
        snprintf(req, sizeof(req), "recompress %s threshold=%" PRIu64, mode, v);
    else
        snprintf(req, sizeof(req), "recompress %s", mode);
    return run_simple(arg, req, "recompress", TIMEOUT_LONG, "recompressed", "",
                      "recompressed", false);
}

/* ---- main --------------------------------------------------------------- */

static void usage(void)
{
    printf("Usage:\n"
           " uzramctl [options] [list [DEVICE...]]\n"
           " uzramctl stat DEVICE [--json]\n"
           " uzramctl compact DEVICE\n"
           " uzramctl set DEVICE KEY=VALUE...\n"
           " uzramctl idle DEVICE all|SECONDS\n"
           " uzramctl writeback DEVICE idle|huge|huge_idle|all [--limit SIZE]\n"
           " uzramctl recompress DEVICE idle|huge|huge_idle [--threshold BYTES]\n"
           "\n"
           "Watch, compact and tune running uzramd devices.\n"
           "DEVICE is a device name (uzram0) or the path of its control socket.\n"
           "\n"
           "Options:\n"
           " -b, --bytes          print sizes in bytes rather than in a human-readable form\n"
           " -J, --json           use JSON output format\n"
           " -n, --noheadings     do not print a header line\n"
           " -o, --output LIST    columns to print (+LIST adds to the default)\n"
           "     --output-all     print every column\n"
           " -r, --raw            use the raw output format\n"
           "     --dir DIR        look for control sockets in DIR\n"
           "     --limit SIZE     writeback: write back at most SIZE\n"
           "     --threshold N    recompress: only objects of at least N bytes\n"
           " -h, --help           display this help\n"
           " -V, --version        display version\n"
           "\n"
           "Settings (set):\n"
           " mem-limit=SIZE       most memory the device may hold (K, M, G, T; 0: none)\n"
           " compact-threshold=N  compact automatically when N%% of memory is wasted (0: never)\n"
           " mem-used-max=0       reset the MEM-USED high-water mark\n"
           " high-watermark=PCT   start evicting to the backing store at PCT%% of mem-limit\n"
           " low-watermark=PCT    stop evicting under PCT%% of mem-limit\n"
           "\n"
           "Available output columns:\n");
    for (int i = 0; i < COL_MAX; i++)
        printf(" %11s  %s\n", columns[i].name, columns[i].help);
    printf("\nSee uzramctl(8).\n");
}

int main(int argc, char **argv)
{
    enum { OPT_OUTPUT_ALL = 256, OPT_DIR, OPT_LIMIT, OPT_THRESHOLD };
    static const struct option longopts[] = {
        { "bytes", no_argument, NULL, 'b' },
        { "json", no_argument, NULL, 'J' },
        { "noheadings", no_argument, NULL, 'n' },
        { "output", required_argument, NULL, 'o' },
        { "output-all", no_argument, NULL, OPT_OUTPUT_ALL },
        { "raw", no_argument, NULL, 'r' },
        { "dir", required_argument, NULL, OPT_DIR },
        { "limit", required_argument, NULL, OPT_LIMIT },
        { "threshold", required_argument, NULL, OPT_THRESHOLD },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    struct list_opts o = { .ncols = 0 };
    /* Options that only list takes, for the message when given to another verb. */
    const char *list_only = NULL;
    const char *limit = NULL, *threshold = NULL;
    int c;

    for (size_t i = 0; i < sizeof(default_columns) / sizeof(default_columns[0]); i++)
        o.cols[o.ncols++] = default_columns[i];

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":bJno:rhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'b':
            o.bytes = true;
            list_only = "--bytes";
            break;
        case 'J':
            o.json = true;
            break;
        case 'n':
            o.noheadings = true;
            list_only = "--noheadings";
            break;
        case 'o':
            parse_output(&o, optarg);
            list_only = "--output";
            break;
        case OPT_OUTPUT_ALL:
            o.ncols = 0;
            for (int i = 0; i < COL_MAX; i++)
                o.cols[o.ncols++] = i;
            list_only = "--output-all";
            break;
        case 'r':
            o.raw = true;
            list_only = "--raw";
            break;
        case OPT_DIR:
            if (!*optarg)
                die_usage("--dir needs a directory");
            run_dir_opt = optarg;
            break;
        case OPT_LIMIT:
            limit = optarg;
            break;
        case OPT_THRESHOLD:
            threshold = optarg;
            break;
        case 'h':
            usage();
            return EXIT_SUCCESS;
        case 'V':
            printf("uzramctl from uzram %s\n", UZRAM_VERSION);
            return EXIT_SUCCESS;
        case ':':
            die_usage("option '%s' needs an argument", argv[optind - 1]);
        default:
            if (optopt)
                die_usage("unknown option '-%c'", optopt);
            die_usage("unknown option '%s'", argv[optind - 1]);
        }
    }

    const char *verb = optind < argc ? argv[optind++] : "list";
    int nargs = argc - optind;
    char **args = argv + optind;

    static const char *const verbs[] = { "stat", "compact", "set", "idle", "writeback",
                                         "recompress", NULL };
    if (strcmp(verb, "list") != 0 && !one_of(verb, verbs))
        die_usage("unknown command '%s'", verb);
    if (limit && strcmp(verb, "writeback") != 0)
        die_usage("--limit is an option of writeback, not of %s", verb);
    if (threshold && strcmp(verb, "recompress") != 0)
        die_usage("--threshold is an option of recompress, not of %s", verb);
    if (strcmp(verb, "list") == 0)
        return cmd_list(&o, nargs, args);

    if (list_only)
        die_usage("%s is an option of list, not of %s", list_only, verb);
    if (nargs < 1)
        die_usage("%s: no DEVICE given", verb);

    if (strcmp(verb, "stat") == 0) {
        if (nargs > 1)
            die_usage("stat: unexpected argument '%s'", args[1]);
        return cmd_stat(args[0], o.json);
    }
    if (o.json)
        die_usage("--json is an option of list and stat, not of %s", verb);
    if (strcmp(verb, "compact") == 0) {
        if (nargs > 1)
            die_usage("compact: unexpected argument '%s'", args[1]);
        return cmd_compact(args[0]);
    }
    if (strcmp(verb, "set") == 0) {
        if (nargs < 2)
            die_usage("set: no KEY=VALUE given");
        return cmd_set(args[0], nargs - 1, args + 1);
    }
    /* idle, writeback, recompress: DEVICE and one word. */
    if (nargs < 2)
        die_usage("%s: no %s given", verb,
                  strcmp(verb, "idle") == 0 ? "all or SECONDS" : "idle, huge... (which pages)");
    if (nargs > 2)
        die_usage("%s: unexpected argument '%s'", verb, args[2]);
    if (strcmp(verb, "idle") == 0)
        return cmd_idle(args[0], args[1]);
    if (strcmp(verb, "writeback") == 0)
        return cmd_writeback(args[0], args[1], limit);
    return cmd_recompress(args[0], args[1], threshold);
}
