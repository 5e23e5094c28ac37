/* SPDX-License-Identifier: MIT */
/*
 * What uzramd's options are: one table, one entry per option, that the
 * command line (options.c), the configuration file (config.c) and --help
 * all read.  An entry names the option, its short form, whether it is a
 * key of the file and of what kind, its value as --help shows it, the
 * handler that checks a value and stores it, what a bad value should have
 * been, and its help text.  Adding an option is adding its entry here,
 * and its field in struct options.
 *
 * The rules this file's code obeys:
 *   - A handler looks at its own value only.  Rules between options (a
 *     level against the codec given, the low watermark under the high
 *     one) are options.c's, once every option is in; an entry without a
 *     handler only has its value recorded for those.
 *   - A handler neither logs nor exits: it returns -EINVAL and its entry's
 *     `want`, and options.c says where the value came from (the command
 *     line, or FILE:LINE).
 *   - Defaults live here beside the help text that states them, so that
 *     the two cannot drift apart.  The usage line at the top of --help is
 *     the one piece written by hand: it groups options by topic, not in
 *     the table's order.
 */
#include "uzramd.h"

#include <errno.h>
#include <grp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backing.h"
#include "codec.h"
#include "fuse-export.h"
#include "config.h"
#include "nbd-export.h"
#include "store.h"
#include "util.h"
#include "zspool.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* More workers than this only add memory: each holds a 1 MiB buffer. */
#define MAX_THREADS 256
#define DEFAULT_NAME "uzram0"
#define DEFAULT_COMPACT_PCT 10
/*
 * Eviction starts at 90% of --mem-limit and stops at 80%: the gap makes
 * each pass free a batch (10% of the limit) rather than one page per
 * write, and the 10% left above leaves writes room while a pass runs.
 */
/*
 * An NBD backing request that takes longer fails, and the connection is
 * dropped (uzramd(8), EVICTION): a healthy server answers in milliseconds,
 * and 30 s is still short of what makes a client of the device give up.
 * The top is an hour: past that, a read is as good as hung.
 */
#define DEFAULT_BACKING_TIMEOUT 30
#define MAX_BACKING_TIMEOUT 3600
_Static_assert(DEFAULT_BACKING_TIMEOUT * 1000u == BACKING_TIMEOUT_DEFAULT_MS,
               "--backing-timeout's default is the backing layer's");
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

/* --nbd-tcp without a host listens on loopback only: nothing is exposed unasked. */
#define DEFAULT_NBD_HOST "127.0.0.1"
/* sockaddr_un.sun_path, with its terminating NUL. */
#define UNIX_PATH_SIZE 108

/* Where the help text starts: the options and their values to the left. */
#define HELP_COLUMN 25
/* In a help text, stands for the list of codecs. */
#define HELP_CODECS "{codecs}"

/* A field of struct options, at def->field. */
#define FIELD(o, def, type) ((type *)(void *)((char *)(o) + (def)->field))

char *option_absolute(const char *path)
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

int option_parse_int(const char *s, long min, long max, long *ret)
{
    char *end;

    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -EINVAL;
    *ret = v;
    return 0;
}

static int default_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long n = cpus > 0 ? 2 * cpus : 4;
    if (n < 4)
        n = 4;
    return n > MAX_THREADS ? MAX_THREADS : (int)n;
}

void option_defaults(struct options *o)
{
    o->name = DEFAULT_NAME;
    o->gid = o->admin_gid = o->nbd_gid = (gid_t)-1;
    o->compact_threshold_pct = DEFAULT_COMPACT_PCT;
    o->threads = (unsigned)default_threads();
    o->max_connections = NBD_EXPORT_DEFAULT_CONNECTIONS;
    o->handshake_timeout = NBD_EXPORT_DEFAULT_HANDSHAKE_TIMEOUT;
    o->send_timeout = NBD_EXPORT_DEFAULT_SEND_TIMEOUT;
    o->backing_timeout = DEFAULT_BACKING_TIMEOUT;
    o->high_wm_pct = DEFAULT_HIGH_WM;
    o->low_wm_pct = DEFAULT_LOW_WM;
    o->evict_policy = STORE_EVICT_LRU;
}

uint64_t option_default_reserve(uint64_t mem_limit)
{
    uint64_t r = DEFAULT_RESERVE_MIN + mem_limit / DEFAULT_RESERVE_LIMIT_SHARE;
    return r < DEFAULT_RESERVE_MAX ? r : DEFAULT_RESERVE_MAX;
}

/* ---- Handlers: each checks one value and stores it ------------------------ */

static int set_name(const struct option_def *def, struct options *o, const char *arg)
{
    (void)def;
    if (uzram_check_name(arg) < 0)
        return -EINVAL;
    o->name = arg;
    return 0;
}

static int set_size(const struct option_def *def, struct options *o, const char *arg)
{
    (void)def;
    if (parse_size(arg, &o->size) < 0 || o->size == 0 || o->size % STORE_PAGE_SIZE ||
        o->size > STORE_MAX_SIZE)
        return -EINVAL;
    return 0;
}

static int set_mem_limit(const struct option_def *def, struct options *o, const char *arg)
{
    (void)def;
    return parse_size(arg, &o->mem_limit) < 0 ? -EINVAL : 0;
}

static int set_reserve(const struct option_def *def, struct options *o, const char *arg)
{
    (void)def;
    /* Under 128 KiB it could not hold one zspage of the longest kind (a bundle's). */
    if (parse_size(arg, &o->reserve) < 0 || o->reserve > ZS_RESERVE_MAX ||
        (o->reserve && o->reserve < ZS_MAX_PAGES_PER_LARGE_ZSPAGE * STORE_PAGE_SIZE))
        return -EINVAL;
    o->reserve_given = true;
    return 0;
}

/* An unsigned field, from def->min to def->max. */
static int set_uint(const struct option_def *def, struct options *o, const char *arg)
{
    long v;

    if (option_parse_int(arg, def->min, def->max, &v) < 0)
        return -EINVAL;
    *FIELD(o, def, unsigned) = (unsigned)v;
    return 0;
}

/* --send-timeout: given, it reaches the Unix sockets too (uzramd(8)). */
static int set_send_timeout(const struct option_def *def, struct options *o, const char *arg)
{
    int r = set_uint(def, o, arg);
    if (r == 0)
        o->send_timeout_given = true;
    return r;
}

static int set_flag(const struct option_def *def, struct options *o, const char *arg)
{
    (void)arg;
    *FIELD(o, def, bool) = true;
    return 0;
}

/* A path field, made absolute; the one it replaces is freed. */
static int set_path(const struct option_def *def, struct options *o, const char *arg)
{
    char **field = FIELD(o, def, char *);

    free(*field);
    *field = option_absolute(arg);
    return *field ? 0 : -EINVAL;
}

static int set_socket_path(const struct option_def *def, struct options *o, const char *arg)
{
    if (set_path(def, o, arg) < 0 || strlen(*FIELD(o, def, char *)) >= UNIX_PATH_SIZE)
        return -EINVAL;
    return 0;
}

/* A gid_t field, from a group's name or number. */
static int set_group(const struct option_def *def, struct options *o, const char *arg)
{
    struct group *g = getgrnam(arg);
    uint64_t v;

    if (g) {
        *FIELD(o, def, gid_t) = g->gr_gid;
        return 0;
    }
    if (parse_u64(arg, &v) == 0 && v < (gid_t)-1) {
        *FIELD(o, def, gid_t) = (gid_t)v;
        return 0;
    }
    return -EINVAL;
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
    if (option_parse_int(port, 1, 65535, &v) < 0)
        return -EINVAL;
    *ret_host = strndup(host, host_len);
    if (!*ret_host)
        return -ENOMEM;
    *ret_port = (uint16_t)v;
    return 0;
}

static int set_tls(const struct option_def *def, struct options *o, const char *arg)
{
    static const char *const modes[NBD_TLS_MAX] = {
        [NBD_TLS_OFF] = "off",
        [NBD_TLS_ON] = "on",
        [NBD_TLS_REQUIRE] = "require",
    };

    (void)def;
    for (unsigned i = 0; i < NBD_TLS_MAX; i++) {
        if (strcmp(arg, modes[i]) == 0) {
            o->tls = i;
            o->tls_given = true;
            return 0;
        }
    }
    return -EINVAL;
}

static int set_fuse_transport(const struct option_def *def, struct options *o, const char *arg)
{
    static const char *const names[] = {
        [FUSE_EXPORT_AUTO] = "auto",
        [FUSE_EXPORT_URING] = "uring",
        [FUSE_EXPORT_DEV] = "dev",
    };

    (void)def;
    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(arg, names[i]) == 0) {
            o->fuse_transport = i;
            return 0;
        }
    }
    return -EINVAL;
}

static int set_nbd_tcp(const struct option_def *def, struct options *o, const char *arg)
{
    (void)def;
    free(o->nbd_tcp_host);
    o->nbd_tcp_host = NULL;
    return parse_tcp(arg, &o->nbd_tcp_host, &o->nbd_tcp_port) < 0 ? -EINVAL : 0;
}

/*
 * An NBD URI goes as it is (the backing layer says what is one); anything
 * else is a path, made absolute.
 */
static int set_backing(const struct option_def *def, struct options *o, const char *arg)
{
    (void)def;
    free(o->backing);
    o->backing = NULL;
    if (*arg)
        o->backing = backing_spec_is_uri(arg) ? strdup(arg) : option_absolute(arg);
    return o->backing ? 0 : -EINVAL;
}

static int set_backing_format(const struct option_def *def, struct options *o, const char *arg)
{
    (void)def;
    if (strcmp(arg, "compressed") == 0)
        o->backing_raw = false;
    else if (strcmp(arg, "raw") == 0)
        o->backing_raw = true;
    else
        return -EINVAL;
    return 0;
}

static int set_evict_policy(const struct option_def *def, struct options *o, const char *arg)
{
    (void)def;
    if (strcmp(arg, "lru") == 0)
        o->evict_policy = STORE_EVICT_LRU;
    else if (strcmp(arg, "zspage") == 0)
        o->evict_policy = STORE_EVICT_ZSPAGE;
    else
        return -EINVAL;
    return 0;
}

/*
 * syslog, stderr, or a file by its absolute path: a relative one would be
 * a file called "syslog" in the current directory one typo away.
 */
static int set_log(const struct option_def *def, struct options *o, const char *arg)
{
    (void)def;
    if (strcmp(arg, "syslog") != 0 && strcmp(arg, "stderr") != 0 && arg[0] != '/')
        return -EINVAL;
    free(o->log);
    o->log = strdup(arg);
    return o->log ? 0 : -EINVAL;
}

static int show_help(const struct option_def *def, struct options *o, const char *arg)
{
    (void)def, (void)o, (void)arg;
    option_usage();
    return 1;
}

static int show_version(const struct option_def *def, struct options *o, const char *arg)
{
    (void)def, (void)o, (void)arg;
    printf("uzramd %s\n", UZRAM_VERSION);
    return 1;
}

/* ---- The table ------------------------------------------------------------- */

#define PERCENT_OF_LIMIT "a percentage of --mem-limit, 1-100"

/* One option to a paragraph, grouped as --help shows them. */
/* clang-format off */
const struct option_def option_table[OPTION_MAX] = {
    [OPT_CONFIG] = {
        .name = "config", .metavar = "FILE",
        .help = "read settings from FILE (uzram.conf(5)); options\n"
                "given here override it; SIGHUP re-reads it" },
    [OPT_NAME] = {
        .name = "name", .short_name = 'n', .metavar = "NAME", .key = OPTION_KEY_VALUE,
        .set = set_name, .want = "1-64 of A-Z a-z 0-9 _ . -, not starting with '.'",
        .help = "device name (default " DEFAULT_NAME ")" },
    [OPT_SIZE] = {
        .name = "size", .short_name = 's', .metavar = "SIZE", .key = OPTION_KEY_VALUE,
        .set = set_size, .want = "a multiple of 4K up to 4096T, e.g. 1G",
        .help = "device size, a multiple of 4K (suffixes K M G T)" },
    [OPT_ALGORITHM] = {
        .name = "algorithm", .short_name = 'a', .metavar = "ALGO", .key = OPTION_KEY_VALUE,
        .help = "codec: " HELP_CODECS " (default " OPTION_DEFAULT_CODEC ")" },
    [OPT_LEVEL] = {
        .name = "level", .short_name = 'l', .metavar = "N", .key = OPTION_KEY_VALUE,
        .help = "codec level (default: the codec's)" },
    [OPT_FUSE] = {
        .name = "fuse", .short_name = 'F', .metavar = "FILE", .key = OPTION_KEY_PATH,
        .set = set_path, .field = offsetof(struct options, fuse_file), .want = "a path",
        .help = "serve the device as the regular file FILE" },
    [OPT_FUSE_TRANSPORT] = {
        .name = "fuse-transport", .metavar = "auto|uring|dev", .key = OPTION_KEY_VALUE,
        .set = set_fuse_transport, .want = "auto, uring or dev",
        .help = "how FUSE requests arrive: io_uring where the kernel\n"
                "offers it (auto, the default), io_uring or fail\n"
                "(uring), or /dev/fuse (dev)" },
    [OPT_NBD_UNIX] = {
        .name = "nbd-unix", .metavar = "SOCKET", .key = OPTION_KEY_PATH,
        .set = set_socket_path, .field = offsetof(struct options, nbd_unix),
        .want = "a socket path of at most 107 bytes",
        .help = "serve it over NBD on the Unix socket SOCKET" },
    [OPT_NBD_GROUP] = {
        .name = "nbd-group", .metavar = "GROUP", .key = OPTION_KEY_VALUE,
        .set = set_group, .field = offsetof(struct options, nbd_gid),
        .want = "a group name or number",
        .help = "let GROUP read and write the device through\n"
                "the NBD Unix socket (mode 0660); no one else but\n"
                "root and uzramd's user is served there" },
    [OPT_NBD_TCP] = {
        .name = "nbd-tcp", .metavar = "[HOST]:PORT", .key = OPTION_KEY_VALUE,
        .set = set_nbd_tcp, .want = "[HOST]:PORT with PORT 1-65535, e.g. :10809",
        .help = "serve it over NBD on TCP (HOST default " DEFAULT_NBD_HOST ";\n"
                "IPv6 as [::1]:PORT)" },
    [OPT_READ_ONLY] = {
        .name = "read-only", .key = OPTION_KEY_BOOL,
        .set = set_flag, .field = offsetof(struct options, read_only),
        .help = "NBD clients may read only" },
    [OPT_MAX_CONNECTIONS] = {
        .name = "max-connections", .metavar = "N", .key = OPTION_KEY_VALUE,
        .set = set_uint, .field = offsetof(struct options, max_connections),
        .min = 1, .max = NBD_EXPORT_MAX_CONNECTIONS, .want = "1-" STR(NBD_EXPORT_MAX_CONNECTIONS),
        .help = "NBD clients at once on each socket, 1-" STR(NBD_EXPORT_MAX_CONNECTIONS)
                "\n(default " STR(NBD_EXPORT_DEFAULT_CONNECTIONS) ")" },
    [OPT_HANDSHAKE_TIMEOUT] = {
        .name = "handshake-timeout", .metavar = "SECONDS", .key = OPTION_KEY_VALUE,
        .set = set_uint, .field = offsetof(struct options, handshake_timeout),
        .min = 1, .max = NBD_EXPORT_MAX_HANDSHAKE_TIMEOUT,
        .want = "1-" STR(NBD_EXPORT_MAX_HANDSHAKE_TIMEOUT),
        .help = "disconnect an NBD client that has not finished\n"
                "its handshake after SECONDS (default "
                STR(NBD_EXPORT_DEFAULT_HANDSHAKE_TIMEOUT) ")" },
    [OPT_SEND_TIMEOUT] = {
        .name = "send-timeout", .metavar = "SECONDS", .key = OPTION_KEY_VALUE,
        .set = set_send_timeout, .field = offsetof(struct options, send_timeout),
        .min = 0, .max = NBD_EXPORT_MAX_TIMEOUT, .want = "0-" STR(NBD_EXPORT_MAX_TIMEOUT),
        .help = "drop an NBD client whose reply has made no\n"
                "progress for SECONDS: it does not read (default "
                STR(NBD_EXPORT_DEFAULT_SEND_TIMEOUT) "\n"
                "on TCP, none on Unix sockets unless given;\n0: never)" },
    [OPT_IDLE_TIMEOUT] = {
        .name = "idle-timeout", .metavar = "SECONDS", .key = OPTION_KEY_VALUE,
        .set = set_uint, .field = offsetof(struct options, idle_timeout),
        .min = 0, .max = NBD_EXPORT_MAX_TIMEOUT, .want = "0-" STR(NBD_EXPORT_MAX_TIMEOUT),
        .help = "disconnect an NBD client that has asked for\n"
                "nothing for SECONDS (default 0: never; keep it\n"
                "off for swap through the kernel's NBD client)" },
    [OPT_TLS] = {
        .name = "tls", .metavar = "off|on|require", .key = OPTION_KEY_VALUE,
        .set = set_tls, .want = "off, on or require",
        .help = "TLS on every NBD socket: offered (on) or the only\n"
                "way in (require); with --nbd-tcp, give --tls=off\n"
                "to serve TCP without it" },
    [OPT_TLS_PSK] = {
        .name = "tls-psk", .metavar = "FILE", .key = OPTION_KEY_PATH,
        .set = set_path, .field = offsetof(struct options, tls_psk), .want = "a path",
        .help = "TLS pre-shared keys, USERNAME:HEXKEY lines (psktool)" },
    [OPT_TLS_CERTIFICATES] = {
        .name = "tls-certificates", .metavar = "DIR", .key = OPTION_KEY_PATH,
        .set = set_path, .field = offsetof(struct options, tls_certificates),
        .want = "a directory",
        .help = "TLS certificates: server-cert.pem, server-key.pem,\n"
                "and ca-cert.pem to require client certificates" },
    [OPT_CONTROL] = {
        .name = "control", .short_name = 'c', .metavar = "SOCKET", .key = OPTION_KEY_PATH,
        .set = set_socket_path, .field = offsetof(struct options, control_path),
        .want = "a socket path of at most 107 bytes",
        .help = "control socket (default RUNDIR/NAME.sock)" },
    [OPT_CONTROL_GROUP] = {
        .name = "control-group", .metavar = "GROUP", .key = OPTION_KEY_VALUE,
        .set = set_group, .field = offsetof(struct options, gid),
        .want = "a group name or number",
        .help = "let GROUP watch the device through the control\n"
                "socket: stat and list, not change" },
    /* The older name of --control-group, kept for the files and units that use it. */
    [OPT_GROUP] = {
        .name = "group", .short_name = 'g', .metavar = "GROUP", .key = OPTION_KEY_VALUE,
        .set = set_group, .field = offsetof(struct options, gid),
        .want = "a group name or number",
        .help = "the same as --control-group" },
    [OPT_ADMIN_GROUP] = {
        .name = "admin-group", .metavar = "GROUP", .key = OPTION_KEY_VALUE,
        .set = set_group, .field = offsetof(struct options, admin_gid),
        .want = "a group name or number",
        .help = "let GROUP change the device's settings through\n"
                "the control socket (set, compact, idle, writeback,\n"
                "recompress, stop)" },
    [OPT_MEM_LIMIT] = {
        .name = "mem-limit", .short_name = 'm', .metavar = "SIZE", .key = OPTION_KEY_VALUE,
        .set = set_mem_limit, .want = "a size, e.g. 512M; 0 for none",
        .help = "most memory for stored data (default: none)" },
    [OPT_COMPACT] = {
        .name = "compact-threshold", .metavar = "PCT", .key = OPTION_KEY_VALUE,
        .set = set_uint, .field = offsetof(struct options, compact_threshold_pct),
        .min = 0, .max = 100, .want = "a percentage, 0-100",
        .help = "compact when this % of memory is wasted\n"
                "(default " STR(DEFAULT_COMPACT_PCT) "; 0: never automatically)" },
    [OPT_RESERVE] = {
        .name = "reserve", .metavar = "SIZE", .key = OPTION_KEY_VALUE,
        .set = set_reserve, .want = "a size from 128K to 512M, e.g. 16M; 0 for none",
        .help = "memory held ready so that no request waits for\n"
                "memory (default: 8M plus 1/64 of --mem-limit, at\n"
                "most 64M; 0: none, not safe for swap)" },
    [OPT_BACKING] = {
        .name = "backing", .metavar = "FILE|NBD-URI", .key = OPTION_KEY_SPEC,
        .set = set_backing, .want = "a file, a block device or an NBD URI",
        .help = "write cold pages back to FILE (created sparse) or\n"
                "to an NBD server (nbd://HOST:PORT/EXPORT,\n"
                "nbd+unix:///EXPORT?socket=PATH)" },
    [OPT_BACKING_FORCE] = {
        .name = "backing-force", .key = OPTION_KEY_BOOL, .flags = OPTION_BACKING_ONLY,
        .set = set_flag, .field = offsetof(struct options, backing_force),
        .help = "adopt a --backing file or device that holds\n"
                "data and no uzram header (overwriting it)" },
    [OPT_BACKING_FORMAT] = {
        .name = "backing-format", .metavar = "compressed|raw", .key = OPTION_KEY_VALUE,
        .flags = OPTION_BACKING_ONLY, .set = set_backing_format, .want = "compressed or raw",
        .help = "how pages are written back (default compressed)" },
    [OPT_BACKING_TIMEOUT] = {
        .name = "backing-timeout", .metavar = "SECONDS", .key = OPTION_KEY_VALUE,
        .flags = OPTION_BACKING_ONLY, .set = set_uint,
        .field = offsetof(struct options, backing_timeout),
        .min = 1, .max = MAX_BACKING_TIMEOUT, .want = "1-" STR(MAX_BACKING_TIMEOUT) " seconds",
        .help = "an NBD backing server that takes longer to\n"
                "answer fails the request (default "
                STR(DEFAULT_BACKING_TIMEOUT) ")" },
    [OPT_HIGH_WM] = {
        .name = "high-watermark", .metavar = "PCT", .key = OPTION_KEY_VALUE,
        .set = set_uint, .field = offsetof(struct options, high_wm_pct),
        .min = 1, .max = 100, .want = PERCENT_OF_LIMIT,
        .help = "evict when memory passes PCT% of --mem-limit\n"
                "(default " STR(DEFAULT_HIGH_WM) ")" },
    [OPT_LOW_WM] = {
        .name = "low-watermark", .metavar = "PCT", .key = OPTION_KEY_VALUE,
        .set = set_uint, .field = offsetof(struct options, low_wm_pct),
        .min = 1, .max = 100, .want = PERCENT_OF_LIMIT,
        .help = "until it is under PCT% (default " STR(DEFAULT_LOW_WM) ")" },
    [OPT_EVICT_POLICY] = {
        .name = "evict-policy", .metavar = "lru|zspage", .key = OPTION_KEY_VALUE,
        .flags = OPTION_BACKING_ONLY, .set = set_evict_policy, .want = "lru or zspage",
        .help = "least recently used pages, or whole zspages\n"
                "(default lru)" },
    [OPT_RECOMP_ALGORITHM] = {
        .name = "recompress-algorithm", .metavar = "ALGO", .key = OPTION_KEY_VALUE,
        .help = "second codec, for `uzramctl recompress`" },
    [OPT_RECOMP_LEVEL] = {
        .name = "recompress-level", .metavar = "N", .key = OPTION_KEY_VALUE,
        .help = "its level (default: the codec's)" },
    [OPT_COLD_ALGORITHM] = {
        .name = "cold-algorithm", .metavar = "ALGO|none", .key = OPTION_KEY_VALUE,
        .help = "codec that compresses idle pages together, in\n"
                "bundles (uzramctl recompress; default zstd)" },
    [OPT_COLD_LEVEL] = {
        .name = "cold-level", .metavar = "N", .key = OPTION_KEY_VALUE,
        .help = "its level (default " STR(STORE_COLD_LEVEL) " for zstd, else the codec's)" },
    [OPT_COLD_AFTER] = {
        .name = "cold-after", .metavar = "SECONDS", .key = OPTION_KEY_VALUE,
        .set = set_uint, .field = offsetof(struct options, cold_after),
        .min = 0, .max = STORE_COLD_AFTER_MAX, .want = "0-31536000 seconds (a year)",
        .help = "bundle pages untouched this long, in the\n"
                "background (default 0: only on request)" },
    [OPT_PIDFILE] = {
        .name = "pidfile", .short_name = 'p', .metavar = "FILE",
        .set = set_path, .field = offsetof(struct options, pidfile), .want = "a path",
        .help = "write the daemon's pid to FILE once ready" },
    [OPT_FOREGROUND] = {
        .name = "foreground", .short_name = 'f',
        .set = set_flag, .field = offsetof(struct options, foreground),
        .help = "stay in the foreground, log to stderr" },
    [OPT_LOG] = {
        .name = "log", .metavar = "syslog|stderr|FILE", .key = OPTION_KEY_VALUE,
        .set = set_log, .want = "syslog, stderr or an absolute path",
        .help = "where messages go; FILE is an absolute path\n"
                "(default: stderr with --foreground; else syslog,\n"
                "or without /dev/log the control socket's path\n"
                "with .log for .sock: RUNDIR/NAME.log)" },
    [OPT_THREADS] = {
        .name = "threads", .short_name = 't', .metavar = "N", .key = OPTION_KEY_VALUE,
        .set = set_uint, .field = offsetof(struct options, threads),
        .min = 1, .max = MAX_THREADS, .want = "1-" STR(MAX_THREADS),
        .help = "FUSE worker threads, and NBD workers for large\n"
                "requests, 1-" STR(MAX_THREADS) " (default: 2 per CPU, at least 4)" },
    [OPT_HELP] = {
        .name = "help", .short_name = 'h', .set = show_help,
        .help = "show this help" },
    [OPT_VERSION] = {
        .name = "version", .short_name = 'V', .set = show_version,
        .help = "show the version" },
};
/* clang-format on */

const struct option_def *option_key_find(const char *key)
{
    for (size_t i = 0; i < OPTION_MAX; i++)
        if (option_table[i].key != OPTION_KEY_NONE && strcmp(key, option_table[i].name) == 0)
            return &option_table[i];
    return NULL;
}

/* ---- --help ---------------------------------------------------------------- */

/* The usage line groups options by topic; the table orders the list below it. */
static const char synopsis[] =
    "Usage: uzramd [--config FILE] [--name NAME] --size SIZE [--algorithm ALGO]\n"
    "              [--level N]\n"
    "              [--fuse FILE] [--fuse-transport auto|uring|dev]\n"
    "              [--control SOCKET] [--control-group GROUP] [--admin-group GROUP]\n"
    "              [--mem-limit SIZE] [--compact-threshold PCT] [--reserve SIZE]\n"
    "              [--pidfile FILE] [--foreground] [--log syslog|stderr|FILE]\n"
    "              [--threads N]\n"
    "              [--nbd-unix SOCKET] [--nbd-group GROUP] [--nbd-tcp [HOST]:PORT]\n"
    "              [--read-only] [--max-connections N] [--handshake-timeout SECONDS]\n"
    "              [--send-timeout SECONDS] [--idle-timeout SECONDS]\n"
    "              [--tls off|on|require] [--tls-psk FILE] [--tls-certificates DIR]\n"
    "              [--backing FILE|NBD-URI] [--backing-force]\n"
    "              [--backing-format compressed|raw] [--backing-timeout SECONDS]\n"
    "              [--high-watermark PCT] [--low-watermark PCT]\n"
    "              [--evict-policy lru|zspage]\n"
    "              [--recompress-algorithm ALGO] [--recompress-level N]\n"
    "              [--cold-algorithm ALGO|none] [--cold-level N] [--cold-after SECONDS]\n"
    "\n"
    "Serve a compressed RAM block device.\n"
    "\n";

/* A help text: its lines indented to HELP_COLUMN, HELP_CODECS expanded. */
static void help_text(const char *s)
{
    for (; *s; s++) {
        if (*s == '\n') {
            printf("\n%*s", HELP_COLUMN, "");
        } else if (strncmp(s, HELP_CODECS, strlen(HELP_CODECS)) == 0) {
            for (size_t i = 0; codec_get(i); i++)
                printf("%s%s", i ? " " : "", codec_name(codec_get(i)));
            s += strlen(HELP_CODECS) - 1;
        } else {
            putchar(*s);
        }
    }
    putchar('\n');
}

void option_usage(void)
{
    fputs(synopsis, stdout);
    for (size_t i = 0; i < OPTION_MAX; i++) {
        const struct option_def *def = &option_table[i];
        int n;

        if (def->short_name)
            n = printf("  -%c, --%s", def->short_name, def->name);
        else
            n = printf("      --%s", def->name);
        if (def->metavar)
            n += printf(" %s", def->metavar);
        /* Two spaces at least between an option and its text, or a line of its own. */
        if (n <= HELP_COLUMN - 2)
            printf("%*s", HELP_COLUMN - n, "");
        else
            printf("\n%*s", HELP_COLUMN, "");
        help_text(def->help);
    }
    fputs("\nSee uzramd(8).\n", stdout);
}
