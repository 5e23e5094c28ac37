/* SPDX-License-Identifier: MIT */
/*
 * uzramd's command line.  Every value is checked here, before anything is
 * created, so that a typo costs one line on stderr and exit status 2, never
 * a half-started daemon.  A message names the option, quotes the value and
 * says what is wanted.
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
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backing.h"
#include "cleanup.h"
#include "codec.h"
#include "config.h"
#include "nbd-export.h"
#include "store.h"
#include "util.h"
#include "zspool.h"

/* More workers than this only add memory: each holds a 1 MiB buffer. */
#define MAX_THREADS 256
#define DEFAULT_NAME "uzram0"
#define DEFAULT_COMPACT_PCT 10
/*
 * Eviction starts at 90% of --mem-limit and stops at 80%: the gap makes
 * each pass free a batch (10% of the limit) rather than one page per
 * write, and the 10% left above leaves writes room while a pass runs.
 */
#define DEFAULT_HIGH_WM 90
#define DEFAULT_LOW_WM 80
/*
 * The reserve (uzramd(8), SWAP): memory held ready so that no request
 * waits for the kernel to find a page.  What a burst of writes takes
 * before the refill thread catches up, and one zspage for each size class
 * that is first used meanwhile; more with a larger --mem-limit, since such
 * a device takes larger bursts.  The figures behind the default are in
 * uzramd(8), measured by tests/vm.
 */
#define DEFAULT_RESERVE_MIN (8ull << 20)
#define DEFAULT_RESERVE_MAX (64ull << 20)
#define DEFAULT_RESERVE_LIMIT_SHARE 64

enum {
    OPT_NAME = 'n', OPT_SIZE = 's', OPT_ALGORITHM = 'a', OPT_LEVEL = 'l',
    OPT_FUSE = 'F', OPT_CONTROL = 'c', OPT_GROUP = 'g', OPT_MEM_LIMIT = 'm',
    OPT_PIDFILE = 'p', OPT_FOREGROUND = 'f', OPT_THREADS = 't',
    OPT_HELP = 'h', OPT_VERSION = 'V',
    OPT_COMPACT = 0x100, OPT_NBD_UNIX, OPT_NBD_TCP, OPT_READ_ONLY, OPT_MAX_CONNECTIONS,
    OPT_CONFIG, OPT_BACKING, OPT_BACKING_FORMAT, OPT_HIGH_WM, OPT_LOW_WM, OPT_EVICT_POLICY,
    OPT_RECOMP_ALGORITHM, OPT_RECOMP_LEVEL, OPT_RESERVE,
};
#define SHORT_OPTS ":n:s:a:l:F:c:g:m:p:ft:hV"

/* --nbd-tcp without a host listens on loopback only: nothing is exposed unasked. */
#define DEFAULT_NBD_HOST "127.0.0.1"

static const struct option long_opts[] = {
    { "name",              required_argument, NULL, OPT_NAME },
    { "size",              required_argument, NULL, OPT_SIZE },
    { "algorithm",         required_argument, NULL, OPT_ALGORITHM },
    { "level",             required_argument, NULL, OPT_LEVEL },
    { "fuse",              required_argument, NULL, OPT_FUSE },
    { "control",           required_argument, NULL, OPT_CONTROL },
    { "group",             required_argument, NULL, OPT_GROUP },
    { "mem-limit",         required_argument, NULL, OPT_MEM_LIMIT },
    { "compact-threshold", required_argument, NULL, OPT_COMPACT },
    { "pidfile",           required_argument, NULL, OPT_PIDFILE },
    { "foreground",        no_argument,       NULL, OPT_FOREGROUND },
    { "threads",           required_argument, NULL, OPT_THREADS },
    { "nbd-unix",          required_argument, NULL, OPT_NBD_UNIX },
    { "nbd-tcp",           required_argument, NULL, OPT_NBD_TCP },
    { "read-only",         no_argument,       NULL, OPT_READ_ONLY },
    { "max-connections",   required_argument, NULL, OPT_MAX_CONNECTIONS },
    { "config",            required_argument, NULL, OPT_CONFIG },
    { "backing",           required_argument, NULL, OPT_BACKING },
    { "backing-format",    required_argument, NULL, OPT_BACKING_FORMAT },
    { "high-watermark",    required_argument, NULL, OPT_HIGH_WM },
    { "low-watermark",     required_argument, NULL, OPT_LOW_WM },
    { "evict-policy",      required_argument, NULL, OPT_EVICT_POLICY },
    { "recompress-algorithm", required_argument, NULL, OPT_RECOMP_ALGORITHM },
    { "recompress-level",  required_argument, NULL, OPT_RECOMP_LEVEL },
    { "reserve",           required_argument, NULL, OPT_RESERVE },
    { "help",              no_argument,       NULL, OPT_HELP },
    { "version",           no_argument,       NULL, OPT_VERSION },
    { NULL, 0, NULL, 0 },
};

static void usage(void)
{
    printf("Usage: uzramd [--config FILE] [--name NAME] --size SIZE [--algorithm ALGO]\n"
           "              [--level N]\n"
           "              [--fuse FILE] [--control SOCKET] [--group GROUP]\n"
           "              [--mem-limit SIZE] [--compact-threshold PCT] [--reserve SIZE]\n"
           "              [--pidfile FILE] [--foreground] [--threads N]\n"
           "              [--nbd-unix SOCKET] [--nbd-tcp [HOST]:PORT] [--read-only]\n"
           "              [--max-connections N]\n"
           "              [--backing FILE|NBD-URI] [--backing-format compressed|raw]\n"
           "              [--high-watermark PCT] [--low-watermark PCT]\n"
           "              [--evict-policy lru|zspage]\n"
           "              [--recompress-algorithm ALGO] [--recompress-level N]\n"
           "\n"
           "Serve a compressed RAM block device.\n"
           "\n"
           "      --config FILE      read settings from FILE (uzram.conf(5)); options\n"
           "                         given here override it; SIGHUP re-reads it\n"
           "  -n, --name NAME        device name (default " DEFAULT_NAME ")\n"
           "  -s, --size SIZE        device size, a multiple of 4K (suffixes K M G T)\n"
           "  -a, --algorithm ALGO   codec:");
    for (size_t i = 0; codec_get(i); i++)
        printf(" %s", codec_name(codec_get(i)));
    printf(" (default lz4)\n"
           "  -l, --level N          codec level (default: the codec's)\n"
           "  -F, --fuse FILE        serve the device as the regular file FILE\n"
           "      --nbd-unix SOCKET  serve it over NBD on the Unix socket SOCKET\n"
           "      --nbd-tcp [HOST]:PORT\n"
           "                         serve it over NBD on TCP (HOST default 127.0.0.1;\n"
           "                         IPv6 as [::1]:PORT)\n"
           "      --read-only        NBD clients may read only\n"
           "      --max-connections N\n"
           "                         NBD clients at once, 1-%d (default %d)\n"
           "  -c, --control SOCKET   control socket (default RUNDIR/NAME.sock)\n"
           "  -g, --group GROUP      let GROUP use the control socket (mode 0660)\n"
           "  -m, --mem-limit SIZE   most memory for stored data (default: none)\n"
           "      --compact-threshold PCT\n"
           "                         compact when this %% of memory is wasted\n"
           "                         (default %d; 0: never automatically)\n"
           "      --reserve SIZE     memory held ready so that no request waits for\n"
           "                         memory (default: 8M plus 1/64 of --mem-limit, at\n"
           "                         most 64M; 0: none, not safe for swap)\n"
           "      --backing FILE|NBD-URI\n"
           "                         write cold pages back to FILE (created sparse) or\n"
           "                         to an NBD server (nbd://HOST:PORT/EXPORT,\n"
           "                         nbd+unix:///EXPORT?socket=PATH)\n"
           "      --backing-format compressed|raw\n"
           "                         how pages are written back (default compressed)\n"
           "      --high-watermark PCT\n"
           "                         evict when memory passes PCT%% of --mem-limit\n"
           "                         (default %d)\n"
           "      --low-watermark PCT\n"
           "                         until it is under PCT%% (default %d)\n"
           "      --evict-policy lru|zspage\n"
           "                         least recently used pages, or whole zspages\n"
           "                         (default lru)\n"
           "      --recompress-algorithm ALGO\n"
           "                         second codec, for `uzramctl recompress`\n"
           "      --recompress-level N\n"
           "                         its level (default: the codec's)\n"
           "  -p, --pidfile FILE     write the daemon's pid to FILE once ready\n"
           "  -f, --foreground       stay in the foreground, log to stderr\n"
           "  -t, --threads N        FUSE worker threads, and NBD workers for large\n"
           "                         requests, 1-%d (default: 2 per CPU, at least 4)\n"
           "  -h, --help             show this help\n"
           "  -V, --version          show the version\n"
           "\n"
           "See uzramd(8).\n", NBD_EXPORT_MAX_CONNECTIONS, NBD_EXPORT_DEFAULT_CONNECTIONS,
           DEFAULT_COMPACT_PCT, DEFAULT_HIGH_WM, DEFAULT_LOW_WM, MAX_THREADS);
}

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

/* The bad value of the argument at argv index idx, named as the user wrote it. */
static int bad_at(int idx, const char *opt, const char *value, const char *want)
{
    if (source.file && idx >= 1 && idx <= source.nfile)
        log_err("%s:%u: %s: bad value '%s' (want %s)", source.file, source.lines[idx - 1],
                opt + 2, value, want);
    else
        log_err("%s: bad value '%s' (want %s)", opt, value, want);
    return -EINVAL;
}

/* The argument just taken by getopt_long() ends at optind - 1. */
static int bad(const char *opt, const char *value, const char *want)
{
    return bad_at(optind - 1, opt, value, want);
}

/*
 * A path made absolute against the directory that was current at the
 * first call (see options_parse()); NULL if out of memory.
 */
static char *absolute(const char *path)
{
    static char *base;
    char *p;

    if (path[0] == '/')
        return strdup(path);
    if (!base)
        base = getcwd(NULL, 0);
    if (!base || asprintf(&p, "%s/%s", base, path) < 0)
        return NULL;
    return p;
}

static int parse_int(const char *s, long min, long max, long *ret)
{
    char *end;

    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -EINVAL;
    *ret = v;
    return 0;
}

static int parse_group(const char *s, gid_t *ret)
{
    struct group *g = getgrnam(s);
    uint64_t v;

    if (g) {
        *ret = g->gr_gid;
        return 0;
    }
    if (parse_u64(s, &v) == 0 && v < (gid_t)-1) {
        *ret = (gid_t)v;
        return 0;
    }
    return -EINVAL;
}

static int default_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long n = cpus > 0 ? 2 * cpus : 4;
    if (n < 4)
        n = 4;
    return n > MAX_THREADS ? MAX_THREADS : (int)n;
}

/*
 * [HOST]:PORT, [IPV6]:PORT, or PORT alone; HOST defaults to loopback.  A
 * bare IPv6 address needs its brackets: "::1:80" could be read two ways.
 * *ret_host is allocated.
 */
static int parse_tcp(const char *s, char **ret_host, uint16_t *ret_port)
{
    const char *port = s, *host = DEFAULT_NBD_HOST;
    size_t host_len = strlen(DEFAULT_NBD_HOST);
    long v;

    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || end == s + 1)
            return -EINVAL;
        host = s + 1;
        host_len = (size_t)(end - host);
        port = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon) {
            if (memchr(s, ':', (size_t)(colon - s)))
                return -EINVAL;
            if (colon > s) {
                host = s;
                host_len = (size_t)(colon - s);
            }
            port = colon + 1;
        }
    }
    /* Port 0 would be a port nobody knows. */
    if (parse_int(port, 1, 65535, &v) < 0)
        return -EINVAL;
    *ret_host = strndup(host, host_len);
    if (!*ret_host)
        return -ENOMEM;
    *ret_port = (uint16_t)v;
    return 0;
}

/*
 * An NBD URI goes as it is (the backing layer says what is one); anything
 * else is a path, made absolute.  NULL if out of memory.
 */
static char *backing_arg(const char *s)
{
    return backing_spec_is_uri(s) ? strdup(s) : absolute(s);
}

/* A --level value for codec, checked against its range; idx for the message. */
static int parse_level(const struct codec_type *codec, const char *opt, const char *arg,
                       int idx, int *ret)
{
    int min, max;
    char want[64];
    long v;

    codec_level_range(codec, &min, &max, NULL);
    snprintf(want, sizeof(want), "%d to %d for %s", min, max, codec_name(codec));
    if (parse_int(arg, min, max, &v) < 0)
        return bad_at(idx, opt, arg, want);
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

/* The last --config FILE on the command line, or NULL.  Reports nothing. */
static const char *find_config(int argc, char **argv)
{
    _cleanup_free_ char **copy = calloc((size_t)argc + 1, sizeof(*copy));
    const char *file = NULL;
    int c;

    if (!copy)
        return NULL;
    /* getopt reorders what it is given: work on a copy of the vector. */
    memcpy(copy, argv, (size_t)argc * sizeof(*copy));
    opterr = 0;
    optind = 0;
    while ((c = getopt_long(argc, copy, SHORT_OPTS, long_opts, NULL)) != -1)
        if (c == OPT_CONFIG)
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
        ret->config_file = absolute(config);
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

static int parse_merged(int argc, char **argv, struct options *ret)
{
    const char *algorithm = "lz4", *level_arg = NULL, *control = NULL;
    const char *recomp = NULL, *recomp_level = NULL;
    int algorithm_idx = 0, level_idx = 0, recomp_idx = 0, recomp_level_idx = 0;
    int high_idx = 0, low_idx = 0;
    bool have_size = false;
    long v;
    int c;

    /* Keep what options_parse() put there. */
    struct options kept = *ret;
    *ret = (struct options){
        .config_file = kept.config_file,
        .config = kept.config,
        .name = DEFAULT_NAME,
        .gid = (gid_t)-1,
        .compact_threshold_pct = DEFAULT_COMPACT_PCT,
        .threads = (unsigned)default_threads(),
        .max_connections = NBD_EXPORT_DEFAULT_CONNECTIONS,
        .high_wm_pct = DEFAULT_HIGH_WM,
        .low_wm_pct = DEFAULT_LOW_WM,
        .evict_policy = STORE_EVICT_LRU,
    };

    opterr = 0;
    optind = 0;
    while ((c = getopt_long(argc, argv, SHORT_OPTS, long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_NAME:
            if (uzram_check_name(optarg) < 0)
                return bad("--name", optarg, "1-64 of A-Z a-z 0-9 _ . -, not starting with '.'");
            ret->name = optarg;
            break;
        case OPT_SIZE:
            if (parse_size(optarg, &ret->size) < 0 || ret->size == 0 ||
                ret->size % STORE_PAGE_SIZE || ret->size > STORE_MAX_SIZE)
                return bad("--size", optarg, "a multiple of 4K up to 4096T, e.g. 1G");
            have_size = true;
            break;
        case OPT_ALGORITHM:
            algorithm = optarg;
            algorithm_idx = optind - 1;
            break;
        case OPT_LEVEL:
            level_arg = optarg;
            level_idx = optind - 1;
            break;
        case OPT_CONFIG:
            break;      /* read by options_parse() */
        case OPT_FUSE:
            free(ret->fuse_file);
            ret->fuse_file = absolute(optarg);
            if (!ret->fuse_file)
                return bad("--fuse", optarg, "a path");
            break;
        case OPT_CONTROL:
            control = optarg;
            break;
        case OPT_GROUP:
            if (parse_group(optarg, &ret->gid) < 0)
                return bad("--group", optarg, "a group name or number");
            break;
        case OPT_MEM_LIMIT:
            if (parse_size(optarg, &ret->mem_limit) < 0)
                return bad("--mem-limit", optarg, "a size, e.g. 512M; 0 for none");
            break;
        case OPT_RESERVE:
            /* Under 64 KiB it could not hold one zspage of the longest kind. */
            if (parse_size(optarg, &ret->reserve) < 0 || ret->reserve > ZS_RESERVE_MAX ||
                (ret->reserve && ret->reserve < ZS_MAX_PAGES_PER_ZSPAGE * STORE_PAGE_SIZE))
                return bad("--reserve", optarg, "a size from 64K to 512M, e.g. 16M; 0 for none");
            ret->reserve_given = true;
            break;
        case OPT_COMPACT:
            if (parse_int(optarg, 0, 100, &v) < 0)
                return bad("--compact-threshold", optarg, "a percentage, 0-100");
            ret->compact_threshold_pct = (unsigned)v;
            break;
        case OPT_PIDFILE:
            free(ret->pidfile);
            ret->pidfile = absolute(optarg);
            if (!ret->pidfile)
                return bad("--pidfile", optarg, "a path");
            break;
        case OPT_FOREGROUND:
            ret->foreground = true;
            break;
        case OPT_THREADS:
            if (parse_int(optarg, 1, MAX_THREADS, &v) < 0) {
                char want[32];
                snprintf(want, sizeof(want), "1-%d", MAX_THREADS);
                return bad("--threads", optarg, want);
            }
            ret->threads = (unsigned)v;
            break;
        case OPT_NBD_UNIX:
            free(ret->nbd_unix);
            ret->nbd_unix = absolute(optarg);
            if (!ret->nbd_unix || strlen(ret->nbd_unix) >= 108)
                return bad("--nbd-unix", optarg, "a socket path of at most 107 bytes");
            break;
        case OPT_NBD_TCP:
            free(ret->nbd_tcp_host);
            ret->nbd_tcp_host = NULL;
            if (parse_tcp(optarg, &ret->nbd_tcp_host, &ret->nbd_tcp_port) < 0)
                return bad("--nbd-tcp", optarg, "[HOST]:PORT with PORT 1-65535, e.g. :10809");
            break;
        case OPT_READ_ONLY:
            ret->read_only = true;
            break;
        case OPT_MAX_CONNECTIONS:
            if (parse_int(optarg, 1, NBD_EXPORT_MAX_CONNECTIONS, &v) < 0) {
                char want[32];
                snprintf(want, sizeof(want), "1-%d", NBD_EXPORT_MAX_CONNECTIONS);
                return bad("--max-connections", optarg, want);
            }
            ret->max_connections = (unsigned)v;
            break;
        case OPT_BACKING:
            free(ret->backing);
            ret->backing = *optarg ? backing_arg(optarg) : NULL;
            if (!ret->backing)
                return bad("--backing", optarg, "a file, a block device or an NBD URI");
            break;
        case OPT_BACKING_FORMAT:
            if (strcmp(optarg, "compressed") == 0)
                ret->backing_raw = false;
            else if (strcmp(optarg, "raw") == 0)
                ret->backing_raw = true;
            else
                return bad("--backing-format", optarg, "compressed or raw");
            ret->backing_only = "--backing-format";
            break;
        case OPT_HIGH_WM:
        case OPT_LOW_WM:
            if (parse_int(optarg, 1, 100, &v) < 0)
                return bad(c == OPT_HIGH_WM ? "--high-watermark" : "--low-watermark", optarg,
                           "a percentage of --mem-limit, 1-100");
            if (c == OPT_HIGH_WM) {
                ret->high_wm_pct = (unsigned)v;
                high_idx = optind - 1;
            } else {
                ret->low_wm_pct = (unsigned)v;
                low_idx = optind - 1;
            }
            break;
        case OPT_EVICT_POLICY:
            if (strcmp(optarg, "lru") == 0)
                ret->evict_policy = STORE_EVICT_LRU;
            else if (strcmp(optarg, "zspage") == 0)
                ret->evict_policy = STORE_EVICT_ZSPAGE;
            else
                return bad("--evict-policy", optarg, "lru or zspage");
            ret->backing_only = "--evict-policy";
            break;
        case OPT_RECOMP_ALGORITHM:
            recomp = optarg;
            recomp_idx = optind - 1;
            break;
        case OPT_RECOMP_LEVEL:
            recomp_level = optarg;
            recomp_level_idx = optind - 1;
            break;
        case OPT_HELP:
            usage();
            return 1;
        case OPT_VERSION:
            printf("uzramd %s\n", UZRAM_VERSION);
            return 1;
        case ':':
            log_err("%s: missing value", argv[optind - 1]);
            return -EINVAL;
        default:
            if (optopt)
                log_err("unknown option '-%c' (see uzramd --help)", optopt);
            else
                log_err("unknown option '%s' (see uzramd --help)", argv[optind - 1]);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        log_err("unexpected argument '%s' (see uzramd --help)", argv[optind]);
        return -EINVAL;
    }
    if (!have_size) {
        if (ret->config_file)
            log_err("%s: size: missing (want the device size, e.g. size = 1G)", ret->config_file);
        else
            log_err("--size: missing (want the device size, e.g. --size 1G)");
        return -EINVAL;
    }

    ret->codec = codec_find(algorithm);
    if (!ret->codec) {
        _cleanup_free_ char *list = algorithms_list();
        return bad_at(algorithm_idx, "--algorithm", algorithm, list ? list : "a built-in codec");
    }
    if (level_arg && parse_level(ret->codec, "--level", level_arg, level_idx, &ret->level) < 0)
        return -EINVAL;
    if (recomp) {
        ret->recomp_codec = codec_find(recomp);
        if (!ret->recomp_codec) {
            _cleanup_free_ char *list = algorithms_list();
            return bad_at(recomp_idx, "--recompress-algorithm", recomp,
                          list ? list : "a built-in codec");
        }
    }
    if (recomp_level) {
        if (!ret->recomp_codec)
            return bad_at(recomp_level_idx, "--recompress-level", recomp_level,
                          "a level, with --recompress-algorithm");
        if (parse_level(ret->recomp_codec, "--recompress-level", recomp_level,
                        recomp_level_idx, &ret->recomp_level) < 0)
            return -EINVAL;
    }
    if (!ret->reserve_given) {
        uint64_t r = DEFAULT_RESERVE_MIN + ret->mem_limit / DEFAULT_RESERVE_LIMIT_SHARE;
        ret->reserve = r < DEFAULT_RESERVE_MAX ? r : DEFAULT_RESERVE_MAX;
    }
    if (ret->low_wm_pct >= ret->high_wm_pct) {
        char want[64];
        snprintf(want, sizeof(want), "below --high-watermark, %u", ret->high_wm_pct);
        /* Name the one given last, or the one given at all. */
        if (low_idx >= high_idx) {
            char val[16];
            snprintf(val, sizeof(val), "%u", ret->low_wm_pct);
            return bad_at(low_idx, "--low-watermark", val, want);
        }
        char val[16];
        snprintf(want, sizeof(want), "above --low-watermark, %u", ret->low_wm_pct);
        snprintf(val, sizeof(val), "%u", ret->high_wm_pct);
        return bad_at(high_idx, "--high-watermark", val, want);
    }

    if (control) {
        ret->control_path = absolute(control);
    } else {
        char path[108];
        int r = uzram_control_path(ret->name, path, sizeof(path));
        if (r < 0) {
            log_err("--name: the control socket path for '%s' is too long (use --control)",
                    ret->name);
            return -EINVAL;
        }
        ret->control_path = strdup(path);
    }
    if (!ret->control_path) {
        log_err("out of memory");
        return -ENOMEM;
    }
    return 0;
}

void options_free(struct options *o)
{
    free(o->fuse_file);
    free(o->control_path);
    free(o->pidfile);
    free(o->nbd_unix);
    free(o->nbd_tcp_host);
    free(o->backing);
    free(o->config_file);
    config_args_free(&o->config);
    o->fuse_file = o->control_path = o->pidfile = o->nbd_unix = o->nbd_tcp_host = NULL;
    o->config_file = NULL;
    o->backing = NULL;
}
