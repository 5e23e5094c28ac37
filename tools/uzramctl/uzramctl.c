/* SPDX-License-Identifier: MIT */
/*
 * uzramctl: watch, compact and tune running uzramd daemons, in the manner
 * of util-linux's zramctl.
 *
 * Every daemon has a control socket; uzramctl knows daemons only through
 * them (device.c).  "list", the default, asks every daemon it finds
 * (list.c); the other commands name one device (commands.c).
 *
 * This file reads the command line and dispatches through one table of
 * commands, which also holds what each takes: its arguments, the options
 * that are its own, and its line of --help.  Usage errors and help come
 * from the table, so a command exists in one place.
 *
 * Exit status: 0 success, 1 a daemon could not be reached or refused the
 * request, 2 bad arguments.  Each error is one line on stderr.
 */
#include "uzramctl.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* The options that belong to some commands only. */
enum opt_group {
    OPTG_LIST,      /* --bytes, --noheadings, --output, --output-all, --raw */
    OPTG_JSON,      /* --json */
    OPTG_LIMIT,     /* --limit */
    OPTG_THRESHOLD, /* --threshold */
    OPTG_FORCE,     /* --force */
    OPTG_BUNDLE,    /* --bundle */
    OPTG_MAX
};
#define OPTG(g) (1u << (g))

struct command {
    const char *name;
    cmd_fn *run;
    int min_args;             /* words after the command, DEVICE first */
    int max_args;             /* -1: any number */
    const char *missing;      /* what is missing when DEVICE alone is given */
    unsigned opts;            /* OPTG() of each option group it takes */
    const char *usage;        /* its arguments, for --help */
    enum proto_verb selects;  /* the verb whose selections come next in usage
                               * (those of hello, none, for most commands) */
    const char *usage_tail;   /* and what comes after them */
};

/*
 * Every command, in the order --help lists them; the first is what runs
 * when none is named.  Adding one is its cmd_fn and its line here.
 */
static const struct command commands[] = {
    { "list", cmd_list, 0, -1, NULL, OPTG(OPTG_LIST) | OPTG(OPTG_JSON), "[DEVICE...]",
      PROTO_HELLO, NULL },
    { "stat", cmd_stat, 1, 1, NULL, OPTG(OPTG_JSON), "DEVICE [--json]", PROTO_HELLO, NULL },
    { "compact", cmd_compact, 1, 1, NULL, 0, "DEVICE", PROTO_HELLO, NULL },
    { "set", cmd_set, 2, -1, "KEY=VALUE", 0, "DEVICE KEY=VALUE...", PROTO_HELLO, NULL },
    { "idle", cmd_idle, 2, 2, "all or SECONDS", 0, "DEVICE all|SECONDS", PROTO_HELLO, NULL },
    { "writeback", cmd_writeback, 2, 2, "idle, huge... (which pages)",
      OPTG(OPTG_LIMIT) | OPTG(OPTG_JSON), "DEVICE", PROTO_WRITEBACK,
      "[--limit SIZE] [--json]" },
    { "recompress", cmd_recompress, 2, 2, "idle, huge... (which pages)",
      OPTG(OPTG_THRESHOLD) | OPTG(OPTG_BUNDLE) | OPTG(OPTG_JSON), "DEVICE", PROTO_RECOMPRESS,
      "[--threshold BYTES | --bundle] [--json]" },
    { "stop", cmd_stop, 1, 1, NULL, OPTG(OPTG_FORCE), "DEVICE [--force]", PROTO_HELLO, NULL },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *command_find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* The line of --help for c. */
static void usage_command(const struct command *c)
{
    char sel[64];

    if (c == &commands[0]) {
        printf(" uzramctl [options] [%s %s]\n", c->name, c->usage);
        return;
    }
    proto_select_names(c->selects, "|", "|", sel, sizeof(sel));
    printf(" uzramctl %s %s%s%s%s%s\n", c->name, c->usage, *sel ? " " : "", sel,
           c->usage_tail ? " " : "", c->usage_tail ? c->usage_tail : "");
}

static void usage(void)
{
    printf("Usage:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        usage_command(&commands[i]);
    /* One line of help to a line of source. */
    /* clang-format off */
    printf("\n"
           "Watch, compact and tune running uzramd devices.\n"
           "DEVICE is a device name (uzram0) or the path of its control socket;\n"
           "a DEVICE alone is listed, as 'list DEVICE'.\n"
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
           "     --bundle         recompress idle: idle neighbours together, in bundles\n"
           "     --force          stop: even while the device is in use\n"
           "     --reset DEVICE   the same as 'stop DEVICE', as zramctl's users type it\n"
           " -h, --help           display this help\n"
           " -V, --version        display version\n"
           "\n"
           "Settings (set):\n"
           " mem-limit=SIZE       most memory the device may hold (K, M, G, T; 0: none)\n"
           " compact-threshold=N  compact automatically when N%% of memory is wasted (0: never)\n"
           " mem-used-max=0       reset the MEM-USED high-water mark\n"
           " high-watermark=PCT   start evicting to the backing store at PCT%% of mem-limit\n"
           " low-watermark=PCT    stop evicting under PCT%% of mem-limit\n"
           " cold-after=SECONDS   bundle pages untouched this long, in the background (0: off)\n"
           "\n"
           "Available output columns:\n");
    /* clang-format on */
    list_print_columns();
    printf("\nSee uzramctl(8).\n");
}

/* The options given, the last of each group named as its long form. */
struct options {
    struct list_opts list;
    const char *limit, *threshold;
    bool bundle;
    bool force, reset;
    const char *given[OPTG_MAX];
};

enum {
    OPT_OUTPUT_ALL = 256,
    OPT_DIR,
    OPT_LIMIT,
    OPT_THRESHOLD,
    OPT_FORCE,
    OPT_RESET,
    OPT_BUNDLE
};

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
    { "bundle", no_argument, NULL, OPT_BUNDLE },
    { "force", no_argument, NULL, OPT_FORCE },
    { "reset", no_argument, NULL, OPT_RESET },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
};

/* One option other than --help and --version, c as getopt_long() gave it. */
static void parse_option(struct options *o, int c, char **argv)
{
    switch (c) {
    case 'b':
        o->list.bytes = true;
        o->given[OPTG_LIST] = "--bytes";
        break;
    case 'J':
        o->list.json = true;
        o->given[OPTG_JSON] = "--json";
        break;
    case 'n':
        o->list.noheadings = true;
        o->given[OPTG_LIST] = "--noheadings";
        break;
    case 'o':
        list_parse_output(&o->list, optarg);
        o->given[OPTG_LIST] = "--output";
        break;
    case OPT_OUTPUT_ALL:
        list_output_all(&o->list);
        o->given[OPTG_LIST] = "--output-all";
        break;
    case 'r':
        o->list.raw = true;
        o->given[OPTG_LIST] = "--raw";
        break;
    case OPT_DIR:
        if (!*optarg)
            die_usage("--dir needs a directory");
        device_set_run_dir(optarg);
        break;
    case OPT_LIMIT:
        o->limit = optarg;
        o->given[OPTG_LIMIT] = "--limit";
        break;
    case OPT_THRESHOLD:
        o->threshold = optarg;
        o->given[OPTG_THRESHOLD] = "--threshold";
        break;
    case OPT_BUNDLE:
        o->bundle = true;
        o->given[OPTG_BUNDLE] = "--bundle";
        break;
    case OPT_FORCE:
        o->force = true;
        o->given[OPTG_FORCE] = "--force";
        break;
    case OPT_RESET:
        o->reset = true;
        break;
    case ':':
        die_usage("option '%s' needs an argument", argv[optind - 1]);
    default:
        if (optopt)
            die_usage("unknown option '-%c'", optopt);
        die_usage("unknown option '%s'", argv[optind - 1]);
    }
}

/*
 * Read every option into o (getopt_long() moves the other words to the end,
 * from optind).  1 when the work is done (--help, --version), else 0.
 */
static int parse_options(struct options *o, int argc, char **argv)
{
    int c;

    list_opts_init(&o->list);
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":bJno:rhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage();
            return 1;
        case 'V':
            printf("uzramctl from uzram %s\n", UZRAM_VERSION);
            return 1;
        default:
            parse_option(o, c, argv);
        }
    }
    return 0;
}

/* The commands that take the options of group g, for a message: "list and stat". */
static const char *group_owners(enum opt_group g, char *buf, size_t len)
{
    size_t n = 0, seen = 0, w = 0;

    for (size_t i = 0; i < NCOMMANDS; i++)
        n += (commands[i].opts & OPTG(g)) != 0;
    buf[0] = '\0';
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (!(commands[i].opts & OPTG(g)))
            continue;
        const char *sep = seen == 0 ? "" : seen == n - 1 ? " and " : ", ";
        int k = snprintf(buf + w, len - w, "%s%s", sep, commands[i].name);
        if (k < 0 || (size_t)k >= len - w)
            break;
        w += (size_t)k;
        seen++;
    }
    return buf;
}

/* An option of group g given to a command that does not take it is a usage error. */
static void check_group(const struct command *cmd, const struct options *o, enum opt_group g)
{
    char owners[128];

    if (o->given[g] && !(cmd->opts & OPTG(g)))
        die_usage("%s is an option of %s, not of %s", o->given[g],
                  group_owners(g, owners, sizeof(owners)), cmd->name);
}

/* The command line's form for cmd, checked before any daemon is asked. */
static void check_command(const struct command *cmd, const struct options *o,
                          const struct cmdline *cl)
{
    check_group(cmd, o, OPTG_LIMIT);
    check_group(cmd, o, OPTG_THRESHOLD);
    check_group(cmd, o, OPTG_FORCE);
    check_group(cmd, o, OPTG_BUNDLE);
    check_group(cmd, o, OPTG_LIST);
    if (cmd->min_args > 0 && cl->nargs < 1)
        die_usage("%s: no DEVICE given", cmd->name);
    /* After DEVICE: "compact --json" says first that the DEVICE is missing. */
    check_group(cmd, o, OPTG_JSON);
    if (cl->nargs < cmd->min_args)
        die_usage("%s: no %s given", cmd->name, cmd->missing);
    if (cmd->max_args >= 0 && cl->nargs > cmd->max_args)
        die_usage("%s: unexpected argument '%s'", cmd->name, cl->args[cmd->max_args]);
}

int main(int argc, char **argv)
{
    struct options o = { .limit = NULL };

    if (parse_options(&o, argc, argv) > 0)
        return EXIT_SUCCESS;

    /* zramctl --reset DEVICE: every word left is an argument of stop. */
    const char *name = o.reset ? "stop" : optind < argc ? argv[optind++] : commands[0].name;
    const struct command *cmd = command_find(name);
    struct cmdline cl = {
        .list = &o.list,
        .limit = o.limit,
        .threshold = o.threshold,
        .bundle = o.bundle,
        .force = o.force,
        .nargs = argc - optind,
        .args = argv + optind,
    };

    if (!cmd && device_socket_exists(name)) {
        /* `uzramctl DEVICE`: list that device, as `zramctl zram0` does. */
        cmd = command_find("list");
        cl.nargs++;
        cl.args--;
    }
    if (!cmd)
        die_usage("unknown command '%s'", name);
    check_command(cmd, &o, &cl);
    return cmd->run(&cl);
}
