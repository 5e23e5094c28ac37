/* SPDX-License-Identifier: MIT */
/*
 * zspool-bench: the experiment of the kernel commit "zsmalloc: support
 * compaction" (2015), run on libzspool alone, beside glibc malloc and a
 * pool in reserve mode.  What it measures and why is in doc/zspool.md,
 * "The benchmark".
 *
 * main() parses the arguments, opens the corpus, runs the three
 * experiments one after another, each in a child of its own (child.c),
 * and prints the report (report.c).  Exit status: 0 when the run
 * completed, targets met or not; 1 on an error, reported once here; 2 on
 * bad arguments.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"
#include "zspool-bench.h"

/* uzramd's reserve for a device without --mem-limit. */
#define DEFAULT_RESERVE (UINT64_C(8) << 20)
/* A smaller reserve never holds the longest zspage: its class always misses. */
#define MIN_RESERVE ((uint64_t)ZS_MAX_PAGES_PER_ZSPAGE * PAGE_BYTES)

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: zspool-bench [--corpus FILE] [--size BYTES] [--seed N] [--reserve SIZE]\n"
            "                    [--json]\n"
            "\n"
            "Fill a libzspool pool with the lz4-compressed 4 KiB pages of a corpus, free a\n"
            "random half, compact, and report the pool's used ratio at each step (the\n"
            "experiment of the kernel commit \"zsmalloc: support compaction\"), beside the\n"
            "same experiment through glibc malloc, and on a pool in reserve mode (memory\n"
            "populated ahead, as uzramd runs its pools).\n"
            "\n"
            "  --corpus FILE  pages to store (default: the first 256 MiB of a tar of\n"
            "                 " CORPUS_SOURCES ", cached in\n"
            "                 $UZRAM_CORPUS or " DEFAULT_CORPUS ")\n"
            "  --size BYTES   use only the first BYTES of the corpus; K, M, G suffixes\n"
            "                 (default 256M)\n"
            "  --seed N       seed of the random half freed (default 1)\n"
            "  --reserve SIZE the reserve of the pool in reserve mode, 64K to 512M with an\n"
            "                 optional K, M or G (default 8M, uzramd's without\n"
            "                 --mem-limit); 0 skips that experiment\n"
            "  --json         print one JSON object on stdout\n"
            "  --help         print this help\n"
            "\n"
            "Exit status: 0 when the run completed (targets met or not), 1 on an error,\n"
            "2 on bad arguments.\n");
}

/* An integer in C notation (decimal, 0x hex or 0 octal), for seeds. */
static int parse_seed(const char *s, uint64_t *ret, char **end)
{
    unsigned long long v;

    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    v = strtoull(s, end, 0);
    if (errno)
        return -errno;
    *ret = v;
    return 0;
}

static int bad_arg(const char *opt, const char *arg, const char *why)
{
    fprintf(stderr, "zspool-bench: %s: bad value '%s' (%s)\n", opt, arg, why);
    return -EINVAL;
}

static int parse_option(int c, const char *arg, struct opts *o)
{
    char *end;

    switch (c) {
    case 'c':
        o->corpus = arg;
        return 0;
    case 's':
        o->size_given = true;
        if (parse_size(arg, &o->size) < 0 || o->size < PAGE_BYTES)
            return bad_arg("--size", arg, "want bytes, at least 4096, with an optional K, M or G");
        return 0;
    case 'S':
        if (parse_seed(arg, &o->seed, &end) < 0 || *end)
            return bad_arg("--seed", arg, "want a non-negative integer");
        return 0;
    case 'r':
        if (parse_size(arg, &o->reserve) < 0 || o->reserve > ZS_RESERVE_MAX ||
            (o->reserve && o->reserve < MIN_RESERVE))
            return bad_arg("--reserve", arg, "want a size from 64K to 512M, or 0 for none");
        return 0;
    case 'j':
        o->json = true;
        return 0;
    }
    return -EINVAL;
}

/* Returns 1 for --help, 0 to run, -EINVAL (already reported) for bad arguments. */
static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        { "corpus", required_argument, NULL, 'c' },
        { "size", required_argument, NULL, 's' },
        { "seed", required_argument, NULL, 'S' },
        { "reserve", required_argument, NULL, 'r' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    *o = (struct opts){ .size = DEFAULT_CORPUS_BYTES, .seed = 1, .reserve = DEFAULT_RESERVE };
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == 'h')
            return 1;
        if (c == ':') {
            fprintf(stderr, "zspool-bench: %s: missing argument\n", argv[optind - 1]);
            return -EINVAL;
        }
        if (c == '?') {
            fprintf(stderr, "zspool-bench: %s: bad option (try --help)\n", argv[optind - 1]);
            return -EINVAL;
        }
        if (parse_option(c, optarg, o) < 0)
            return -EINVAL;
    }
    if (optind < argc) {
        fprintf(stderr, "zspool-bench: %s: unexpected argument (try --help)\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct result zres, rres, mres;
    struct job job = { .fd = -1 };
    struct err e = { 0 };
    struct opts o;
    int r;

    r = parse_args(argc, argv, &o);
    if (r < 0)
        return 2;
    if (r > 0) {
        usage(stdout);
        return 0;
    }
    job.seed = o.seed;
    job.reserve = o.reserve;
    r = open_corpus(&o, &job, &e);
    /* One child after another: no experiment's memory or CPU is in another's figures. */
    if (r >= 0)
        r = run_child(malloc_experiment, "the glibc malloc experiment", &job, &mres, &e);
    if (r >= 0)
        r = run_child(zspool_experiment, "the libzspool experiment", &job, &zres, &e);
    if (r >= 0 && job.reserve)
        r = run_child(zspool_reserve_experiment, "the reserve-mode experiment", &job, &rres, &e);
    if (job.fd >= 0)
        close(job.fd);
    if (r < 0) {
        fprintf(stderr, "zspool-bench: %s\n", e.msg);
        return 1;
    }
    if (zres.t.compr_bytes != mres.t.compr_bytes || zres.t.live_bytes != mres.t.live_bytes)
        note(&zres, "the two experiments stored different bytes: corpus changed?");
    if (job.reserve && (rres.t.compr_bytes != zres.t.compr_bytes ||
                        rres.t.live_bytes != zres.t.live_bytes))
        note(&rres, "stored different bytes from the lazy pool: corpus changed?");
    if (o.json)
        print_json(&job, &zres, &rres, &mres);
    else
        print_human(&job, &zres, &rres, &mres);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "zspool-bench: writing the report: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
