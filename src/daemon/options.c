/* SPDX-License-Identifier: MIT */
/*
 * uzramd's command line.  Every value is checked here, before anything is
 * created, so that a typo costs one line on stderr and exit status 2, never
 * a half-started daemon.  A message names the option, quotes the value and
 * says what is wanted.
 *
 * What each option is lives in one table (options-table.c): this file is
 * the engine that runs getopt over it, and the home of the rules between
 * options, checked once every option is in: the codec and its level, the
 * recompression codec and its level, the default reserve, the watermarks'
 * order, and the control socket's default path.  A rule between options
 * names the option given last, or the one given at all.
 *
 * The --config file.  config.c turns each of its lines into the long
 * option it names, and those go first in one argument vector, before the
 * command line: getopt takes the last of a repeated option, so the command
 * line overrides the file, and every value goes through the same checks
 * below whichever it came from.  Each argument remembers where it came
 * from, so that a bad value in the file is reported as FILE:LINE.  Finding
 * --config takes a first pass over the command line that looks at nothing
 * else.
 */
#include "uzramd.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "codec.h"
#include "nbd-export.h"
#include "util.h"

/* getopt_long()'s value for an option without a short form: past every char. */
#define LONG_ONLY_VAL 0x100

/*
 * What the command line gave for each option (indexed by enum option_id):
 * the last value, and the index in the merged vector of the argument that
 * ends it (0: not given).
 */
struct given {
    const char *arg[OPTION_MAX];
    int idx[OPTION_MAX];
};

/*
 * Where the arguments being parsed came from: the first nfile after
 * argv[0] are the config file's, from the lines given.  Set for the
 * duration of one options_parse() (one thread: the main one).
 */
static struct {
    const char *file;
    const unsigned *lines;
    int nfile;
} source;

/*
 * The bad value of option `name` (option_table's) at argv index idx, named
 * as the user wrote it: FILE:LINE and the key, or the option.  -EINVAL.
 */
static int bad_at(int idx, const char *name, const char *value, const char *want)
{
    if (source.file && idx >= 1 && idx <= source.nfile)
        log_err("%s:%u: %s: bad value '%s' (want %s)", source.file, source.lines[idx - 1],
                name, value, want);
    else
        log_err("--%s: bad value '%s' (want %s)", name, value, want);
    return -EINVAL;
}

/* The same, for option id where it was last given. */
static int bad_given(const struct given *g, int id, const char *value, const char *want)
{
    return bad_at(g->idx[id], option_table[id].name, value, want);
}

/* The level given for option id, checked against codec's range. */
static int parse_level(const struct codec_type *codec, const struct given *g, int id, int *ret)
{
    int min, max;
    char want[64];
    long v;

    codec_level_range(codec, &min, &max, NULL);
    snprintf(want, sizeof(want), "%d to %d for %s", min, max, codec_name(codec));
    if (option_parse_int(g->arg[id], min, max, &v) < 0)
        return bad_given(g, id, g->arg[id], want);
    *ret = (int)v;
    return 0;
}

static char *algorithms_list(void)
{
    char *list = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&list, &len);

    if (!f)
        return NULL;
    for (size_t i = 0; codec_get(i); i++)
        fprintf(f, "%s%s", i ? ", " : "", codec_name(codec_get(i)));
    fclose(f);
    return list;
}

/*
 * getopt_long()'s view of option_table: longs[] holds OPTION_MAX + 1
 * entries, shorts 2 + 2 * OPTION_MAX bytes.  The short options' string
 * starts with ':', so that a missing value is told from an unknown option.
 */
static void getopt_tables(struct option *longs, char *shorts)
{
    *shorts++ = ':';
    for (int i = 0; i < OPTION_MAX; i++) {
        const struct option_def *def = &option_table[i];
        longs[i] = (struct option){
            .name = def->name,
            .has_arg = def->metavar ? required_argument : no_argument,
            .val = def->short_name ? def->short_name : LONG_ONLY_VAL + i,
        };
        if (def->short_name) {
            *shorts++ = def->short_name;
            if (def->metavar)
                *shorts++ = ':';
        }
    }
    longs[OPTION_MAX] = (struct option){ 0 };
    *shorts = '\0';
}

/* The option getopt_long() returned c for, or -1 if none (':', '?'). */
static int option_of(int c)
{
    if (c >= LONG_ONLY_VAL && c < LONG_ONLY_VAL + OPTION_MAX)
        return c - LONG_ONLY_VAL;
    for (int i = 0; i < OPTION_MAX; i++)
        if (option_table[i].short_name && option_table[i].short_name == c)
            return i;
    return -1;
}

/* The last --config FILE on the command line, or NULL.  Reports nothing. */
static const char *find_config(int argc, char **argv)
{
    _cleanup_free_ char **copy = calloc((size_t)argc + 1, sizeof(*copy));
    struct option longs[OPTION_MAX + 1];
    char shorts[2 + 2 * OPTION_MAX];
    const char *file = NULL;
    int c;

    if (!copy)
        return NULL;
    getopt_tables(longs, shorts);
    /* getopt reorders what it is given: work on a copy of the vector. */
    memcpy(copy, argv, (size_t)argc * sizeof(*copy));
    opterr = 0;
    optind = 0;
    while ((c = getopt_long(argc, copy, shorts, longs, NULL)) != -1)
        if (option_of(c) == OPT_CONFIG)
            file = optarg;
    return file;
}

/*
 * One vector: argv[0], the file's settings, then argv[1..].  The strings
 * stay where they are (the file's belong to ret->config).
 */
static char **merge_args(int argc, char **argv, const struct config_args *cfg)
{
    char **v = calloc((size_t)argc + cfg->n + 1, sizeof(*v));

    if (!v)
        return NULL;
    v[0] = argv[0];
    for (size_t i = 0; i < cfg->n; i++)
        v[1 + i] = cfg->argv[i];
    for (int i = 1; i < argc; i++)
        v[cfg->n + (size_t)i] = argv[i];
    return v;
}

static int parse_merged(int argc, char **argv, struct options *ret);

int options_parse(int argc, char **argv, struct options *ret)
{
    const char *config = find_config(argc, argv);
    int r;

    *ret = (struct options){ 0 };
    if (config) {
        ret->config_file = option_absolute(config);
        if (!ret->config_file) {
            log_err("out of memory");
            return -ENOMEM;
        }
        if (config_read(ret->config_file, &ret->config) < 0)
            return -EINVAL;
    }
    _cleanup_free_ char **merged = merge_args(argc, argv, &ret->config);
    if (!merged) {
        log_err("out of memory");
        return -ENOMEM;
    }
    source.file = ret->config_file;
    source.lines = ret->config.lines;
    source.nfile = (int)ret->config.n;
    r = parse_merged(argc + (int)ret->config.n, merged, ret);
    source.file = NULL;
    source.lines = NULL;
    source.nfile = 0;
    return r;
}

/*
 * Run getopt over argv: each value goes through its entry's handler and is
 * recorded in *g.  Returns 0 once every option is in; 1 when one answered
 * (--help, --version); -EINVAL after logging the first bad argument.
 */
static int take_options(int argc, char **argv, struct options *o, struct given *g)
{
    struct option longs[OPTION_MAX + 1];
    char shorts[2 + 2 * OPTION_MAX];
    int c;

    getopt_tables(longs, shorts);
    opterr = 0;
    optind = 0;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        int id = option_of(c);
        if (c == ':') {
            log_err("%s: missing value", argv[optind - 1]);
            return -EINVAL;
        }
        if (id < 0) {
            const char *arg = argv[optind - 1];
            int given = option_of(optopt);
            /* getopt's answer to --flag=VALUE: the option, in optopt. */
            if (given >= 0 && !option_table[given].metavar && strncmp(arg, "--", 2) == 0 &&
                strchr(arg, '='))
                log_err("option '--%s' takes no value (see uzramd --help)",
                        option_table[given].name);
            else if (optopt && optopt < LONG_ONLY_VAL)
                log_err("unknown option '-%c' (see uzramd --help)", optopt);
            else
                log_err("unknown option '%s' (see uzramd --help)", argv[optind - 1]);
            return -EINVAL;
        }
        const struct option_def *def = &option_table[id];
        g->arg[id] = optarg;
        g->idx[id] = optind - 1;
        int r = def->set ? def->set(def, o, optarg) : 0;
        if (r < 0)
            return bad_at(optind - 1, def->name, optarg, def->want);
        if (r > 0)
            return 1;
        if (def->flags & OPTION_BACKING_ONLY)
            o->backing_only = def->name;
    }
    if (optind < argc) {
        log_err("unexpected argument '%s' (see uzramd --help)", argv[optind]);
        return -EINVAL;
    }
    return 0;
}

/* The codec called name, given for option id. */
static int find_codec(const struct given *g, int id, const char *name,
                      const struct codec_type **ret)
{
    *ret = codec_find(name);
    if (!*ret) {
        _cleanup_free_ char *list = algorithms_list();
        return bad_given(g, id, name, list ? list : "a built-in codec");
    }
    return 0;
}

/*
 * Option id's level for codec c, if the option was given: it needs a codec
 * (needs says which option gives it).  0 or -EINVAL, said.
 */
static int check_level_of(const struct codec_type *c, const struct given *g, int id,
                          const char *needs, int *ret)
{
    if (!g->arg[id])
        return 0;
    if (!c)
        return bad_given(g, id, g->arg[id], needs);
    return parse_level(c, g, id, ret) < 0 ? -EINVAL : 0;
}

/* The codec, the recompression codec and the cold codec, each with its level. */
static int check_codecs(struct options *o, const struct given *g)
{
    const char *algorithm = g->arg[OPT_ALGORITHM] ? g->arg[OPT_ALGORITHM] : OPTION_DEFAULT_CODEC;

    if (find_codec(g, OPT_ALGORITHM, algorithm, &o->codec) < 0)
        return -EINVAL;
    if (g->arg[OPT_LEVEL] && parse_level(o->codec, g, OPT_LEVEL, &o->level) < 0)
        return -EINVAL;
    if (g->arg[OPT_RECOMP_ALGORITHM] &&
        find_codec(g, OPT_RECOMP_ALGORITHM, g->arg[OPT_RECOMP_ALGORITHM], &o->recomp_codec) < 0)
        return -EINVAL;
    if (check_level_of(o->recomp_codec, g, OPT_RECOMP_LEVEL,
                       "a level, with --recompress-algorithm", &o->recomp_level) < 0)
        return -EINVAL;
    /* Bundles are on unless asked off: zstd, where it is built. */
    const char *cold = g->arg[OPT_COLD_ALGORITHM];
    o->cold_codec = NULL;
    if (!cold)
        o->cold_codec = codec_find("zstd");
    else if (strcmp(cold, "none") != 0 &&
             find_codec(g, OPT_COLD_ALGORITHM, cold, &o->cold_codec) < 0)
        return -EINVAL;
    if (o->cold_after && !o->cold_codec)
        return bad_given(g, OPT_COLD_AFTER, g->arg[OPT_COLD_AFTER],
                         "0, with --cold-algorithm none");
    return check_level_of(o->cold_codec, g, OPT_COLD_LEVEL,
                          "a level, with a --cold-algorithm", &o->cold_level);
}

/* The low watermark under the high one; the message names the one given last. */
static int check_watermarks(const struct options *o, const struct given *g)
{
    char want[64], val[16];

    if (o->low_wm_pct < o->high_wm_pct)
        return 0;
    /* Name the one given last, or the one given at all. */
    if (g->idx[OPT_LOW_WM] >= g->idx[OPT_HIGH_WM]) {
        snprintf(want, sizeof(want), "below --high-watermark, %u", o->high_wm_pct);
        snprintf(val, sizeof(val), "%u", o->low_wm_pct);
        return bad_given(g, OPT_LOW_WM, val, want);
    }
    snprintf(want, sizeof(want), "above --low-watermark, %u", o->low_wm_pct);
    snprintf(val, sizeof(val), "%u", o->high_wm_pct);
    return bad_given(g, OPT_HIGH_WM, val, want);
}

/*
 * TLS: a mode with its credentials, and TCP only with TLS or an explicit
 * --tls=off (uzramd(8), SECURITY): a TCP port on loopback is open to every
 * local user, who could otherwise read and rewrite the device, swap and
 * all.
 */
static int check_tls(const struct options *o)
{
    const char *creds = o->tls_psk ? "--tls-psk" : "--tls-certificates";

    if (o->tls_psk && o->tls_certificates) {
        log_err("--tls-psk and --tls-certificates: give one of them, not both");
        return -EINVAL;
    }
    if ((o->tls_psk || o->tls_certificates) && o->tls == NBD_TLS_OFF) {
        log_err("%s: needs --tls=on or --tls=require", creds);
        return -EINVAL;
    }
    if (o->tls != NBD_TLS_OFF && !o->tls_psk && !o->tls_certificates) {
        log_err("--tls=%s: needs --tls-psk FILE or --tls-certificates DIR",
                o->tls == NBD_TLS_ON ? "on" : "require");
        return -EINVAL;
    }
    if (o->nbd_tcp_host && !o->tls_given) {
        log_err("--nbd-tcp: without TLS any local user can read and write the device: "
                "add --tls=require with --tls-psk FILE or --tls-certificates DIR, "
                "or --tls=off to serve it unauthenticated anyway");
        return -EINVAL;
    }
    return 0;
}

/*
 * The default control socket for the device's name, unless --control gave
 * one (the option table's set_socket_path() made it absolute and checked
 * its length, as for --nbd-unix).
 */
static int set_control_path(struct options *o, const char *control)
{
    char path[108];

    if (control)
        return 0;
    if (uzram_control_path(o->name, path, sizeof(path)) < 0) {
        log_err("--name: the control socket path for '%s' is too long (use --control)",
                o->name);
        return -EINVAL;
    }
    o->control_path = strdup(path);
    if (!o->control_path) {
        log_err("out of memory");
        return -ENOMEM;
    }
    return 0;
}

static int parse_merged(int argc, char **argv, struct options *ret)
{
    struct given g = { 0 };
    int r;

    /* Keep what options_parse() put there. */
    struct options kept = *ret;
    *ret = (struct options){ .config_file = kept.config_file, .config = kept.config };
    option_defaults(ret);

    r = take_options(argc, argv, ret, &g);
    if (r != 0)
        return r;
    if (!g.idx[OPT_SIZE]) {
        if (ret->config_file)
            log_err("%s: size: missing (want the device size, e.g. size = 1G)", ret->config_file);
        else
            log_err("--size: missing (want the device size, e.g. --size 1G)");
        return -EINVAL;
    }
    if (check_codecs(ret, &g) < 0)
        return -EINVAL;
    if (!ret->reserve_given)
        ret->reserve = option_default_reserve(ret->mem_limit);
    if (check_watermarks(ret, &g) < 0)
        return -EINVAL;
    if (check_tls(ret) < 0)
        return -EINVAL;
    return set_control_path(ret, g.arg[OPT_CONTROL]);
}

void options_free(struct options *o)
{
    free(o->fuse_file);
    free(o->control_path);
    free(o->pidfile);
    free(o->log);
    free(o->nbd_unix);
    free(o->nbd_tcp_host);
    free(o->tls_psk);
    free(o->tls_certificates);
    free(o->backing);
    free(o->config_file);
    config_args_free(&o->config);
    o->fuse_file = o->control_path = o->pidfile = o->nbd_unix = o->nbd_tcp_host = NULL;
    o->config_file = NULL;
    o->tls_psk = o->tls_certificates = NULL;
    o->backing = NULL;
    o->log = NULL;
}
