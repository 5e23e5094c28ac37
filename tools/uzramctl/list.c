/* SPDX-License-Identifier: MIT */
/*
 * uzramctl list: a table of devices, in the manner of zramctl's.  With no
 * DEVICE, every *.sock in the run directory is asked for its info and
 * statistics; a socket nobody answers on was left by a daemon that died and
 * is passed over in silence, as zramctl passes over reset devices.  The
 * columns are zramctl's (less STREAMS) and then uzram's own; libsmartcols
 * draws the table, raw or as JSON.
 */
#include "uzramctl.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <libsmartcols.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

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
    COL_BUNDLED,
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
    [COL_MIGRATED] = { "MIGRATED", "pages_compacted", COL_COUNT, 3,
                       "pages freed by compaction" },
    [COL_MOUNTPOINT] = { "MOUNTPOINT", NULL, COL_STRING, 0.10,
                         "the FUSE file (or NBD address) served" },
    /* Not zramctl's: after its columns, and not in the default set. */
    [COL_BACKING] = { "BACKING", "backing", COL_STRING, 0.10,
                      "the backing store (file or NBD URI) cold pages go to" },
    [COL_WRITTEN_BACK] = { "WRITTEN-BACK", "bd_count", COL_PAGES, 5,
                           "data on the backing store now" },
    [COL_BUNDLED] = { "BUNDLED", "bundled_pages", COL_PAGES, 5,
                      "data held in bundles (the cold tier), uncompressed" },
};

/* As zramctl's default, less STREAMS, which uzram has no use for. */
static const int default_columns[] = {
    COL_NAME, COL_ALGORITHM, COL_DISKSIZE, COL_DATA, COL_COMPR, COL_TOTAL, COL_MOUNTPOINT,
};

_Static_assert(LIST_MAX_COLS == COL_MAX * 2, "--output takes each column twice over");

void list_output_all(struct list_opts *o)
{
    o->ncols = 0;
    for (int i = 0; i < COL_MAX; i++)
        o->cols[o->ncols++] = i;
}

void list_print_columns(void)
{
    for (int i = 0; i < COL_MAX; i++)
        printf(" %11s  %s\n", columns[i].name, columns[i].help);
}

static int column_by_name(const char *name, size_t len)
{
    for (int i = 0; i < COL_MAX; i++)
        if (strlen(columns[i].name) == len && strncasecmp(columns[i].name, name, len) == 0)
            return i;
    return -1;
}

void list_opts_init(struct list_opts *o)
{
    o->ncols = 0;
    for (size_t i = 0; i < sizeof(default_columns) / sizeof(default_columns[0]); i++)
        o->cols[o->ncols++] = default_columns[i];
}

/* "+LIST" adds to the default columns, as in util-linux. */
void list_parse_output(struct list_opts *o, const char *list)
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
        ret = quiet_missing && device_missing(e) ? 0 : -1;
        goto out;
    }
    const char *vinfo = proto_verb_name(PROTO_INFO), *vstat = proto_verb_name(PROTO_STAT);
    if (device_call(d, vinfo, vinfo, info) < 0 || device_call(d, vstat, vstat, st) < 0)
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

/* The table with o's columns; NULL when memory is short. */
static struct libscols_table *list_table_new(const struct list_opts *o)
{
    struct libscols_table *tb;

    scols_init_debug(0);
    tb = scols_new_table();
    if (!tb)
        return NULL;
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
            scols_unref_table(tb);
            return NULL;
        }
        /* JSON numbers where the value is a number: counts always, sizes
         * with --bytes (otherwise they are "1.5G", a string), as zramctl. */
        bool size = ci->kind == COL_SIZE || ci->kind == COL_PAGES;
        if (o->json && (ci->kind == COL_COUNT || (size && o->bytes)))
            scols_column_set_json_type(cl, SCOLS_JSON_NUMBER);
    }
    return tb;
}

/* Ask each device named on the command line; *rows counts those added. */
static int list_named(struct libscols_table *tb, const struct list_opts *o, struct device *devs,
                      int ndevs, int *rows)
{
    int status = EXIT_SUCCESS;

    for (int i = 0; i < ndevs; i++) {
        int r = list_one(tb, o, &devs[i], false);
        if (r < 0)
            status = EXIT_FAILURE;
        else
            *rows += r;
    }
    return status;
}

/*
 * The row of file f of the run directory dir, if f is a control socket
 * (NAME.sock, not hidden): list_one()'s answer, or 0 for a file passed over.
 */
static int list_entry(struct libscols_table *tb, const struct list_opts *o, const char *dir,
                      const char *f)
{
    size_t len = strlen(f);
    struct device d = { .fd = -1 };
    char path[512];

    if (len <= 5 || f[0] == '.' || strcmp(f + len - 5, ".sock") != 0)
        return 0;
    snprintf(path, sizeof(path), "%s/%s", dir, f);
    if (strlen(path) >= sizeof(d.path))
        return 0;
    strcpy(d.path, path);
    d.arg = d.path;
    snprintf(d.name, sizeof(d.name), "%.*s", (int)(len - 5), f);
    return list_one(tb, o, &d, true);
}

/*
 * A user other than root lists a run directory of their own, so root's
 * daemons are not among what they see.  When that list is empty and
 * root's directory holds control sockets, say where they are: on stderr,
 * so that the output stays empty as zramctl's does.
 */
static void hint_root_devices(void)
{
    struct dirent *e;
    unsigned n = 0;
    DIR *d;

    if (geteuid() == 0 || device_run_dir_given())
        return;
    d = opendir(UZRAM_ROOT_RUN_DIR);
    if (!d)
        return;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".sock") == 0)
            n++;
    }
    closedir(d);
    if (n)
        warn("no device of this user's; %s has %u control socket%s of root's daemons "
             "(uzramctl --dir %s, as root or a member of their --control-group)",
             UZRAM_ROOT_RUN_DIR, n, n == 1 ? "" : "s", UZRAM_ROOT_RUN_DIR);
}

/* Ask every daemon with a socket in the run directory, in name order. */
static int list_run_dir(struct libscols_table *tb, const struct list_opts *o, int *rows)
{
    struct dirent **ents = NULL;
    int status = EXIT_SUCCESS;
    char dir[256];
    int n, r = device_run_dir(dir, sizeof(dir));

    if (r < 0) {
        warn("run directory: %s", strerror(-r));
        return EXIT_FAILURE;
    }
    n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) {
        /* No default run directory: no daemon has ever run.  A --dir is a typo. */
        if (errno == ENOENT && !device_run_dir_given())
            return EXIT_SUCCESS;
        warn("%s: %s", dir, errno == ENOENT ? "no such directory" : strerror(errno));
        return EXIT_FAILURE;
    }
    for (int i = 0; i < n; i++) {
        r = list_entry(tb, o, dir, ents[i]->d_name);
        if (r < 0)
            status = EXIT_FAILURE;
        else
            *rows += r;
        free(ents[i]);
    }
    free(ents);
    return status;
}

int cmd_list(const struct cmdline *cl)
{
    const struct list_opts *o = cl->list;
    struct libscols_table *tb;
    int status, rows = 0;

    /* Check every DEVICE before asking any daemon. */
    struct device *devs = calloc((size_t)cl->nargs + 1, sizeof(*devs));
    if (!devs) {
        warn("%s", strerror(ENOMEM));
        return EXIT_FAILURE;
    }
    for (int i = 0; i < cl->nargs; i++)
        device_resolve(&devs[i], cl->args[i]);

    tb = list_table_new(o);
    if (!tb) {
        warn("%s", strerror(ENOMEM));
        free(devs);
        return EXIT_FAILURE;
    }
    if (cl->nargs > 0)
        status = list_named(tb, o, devs, cl->nargs, &rows);
    else
        status = list_run_dir(tb, o, &rows);

    if (rows == 0 && cl->nargs == 0 && status == EXIT_SUCCESS)
        hint_root_devices();
    /* As zramctl: no devices, no output (but JSON is always an object). */
    if (rows > 0 || o->json)
        scols_print_table(tb);
    scols_unref_table(tb);
    free(devs);
    return status;
}
