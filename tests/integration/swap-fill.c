/* SPDX-License-Identifier: MIT */
/*
 * swap-fill: make a process swap, then check that every word came back.
 *
 * Run inside a memory cgroup smaller than --size, it fills --size bytes of
 * anonymous memory with a pattern, which forces the kernel to push most of
 * it out to swap; then it walks the memory again and checks every 8-byte
 * word, which pulls it all back in.  A swap device that loses, misplaces or
 * corrupts a page shows up as a mismatch naming the page and the word.
 *
 * The pattern is recomputable from the page index and the seed, so nothing
 * but the memory under test holds it.  Each 4 KiB page is half random (a
 * xorshift64* stream seeded from the seed and the index) and half one
 * repeated 8-byte value that differs per page: lz4 stores such a page in
 * about half its size, like the mixed data a real workload swaps, and no
 * page is same-filled, so every page goes through the codec.
 *
 * With --passes N it does it N times over the same memory, each pass with
 * the next seed, so the second pass overwrites pages that are out on swap
 * and reads back pages that have been there and back.
 *
 * Transparent huge pages are refused (MADV_NOHUGEPAGE) so the memory is
 * swapped as 4 KiB pages, as zram's users see it.
 *
 * Prints one line, for scripts (seconds and KiB; fill and verify summed
 * over the passes):
 *   swap-fill: size=BYTES seed=N passes=N fill=S verify=S total=S vmswap_max_kb=K
 * Exit status: 0 every word matched, 1 a mismatch (or a system call
 * failed), 2 bad arguments.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define PATTERN_PAGE 4096u
#define PAGE_WORDS (PATTERN_PAGE / 8)
/* The first half of each page is random, the second half one value. */
#define RANDOM_WORDS (PAGE_WORDS / 2)

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t xorshift64s(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* The page's random stream starts here; never 0, which xorshift keeps. */
static uint64_t page_state(uint64_t seed, uint64_t page)
{
    return splitmix64(seed ^ splitmix64(page)) | 1;
}

static uint64_t page_fill_value(uint64_t seed, uint64_t page)
{
    return splitmix64(seed + page * 0x632be59bd9b4e019ull);
}

static void fill_page(uint64_t *w, uint64_t seed, uint64_t page)
{
    uint64_t st = page_state(seed, page);
    uint64_t v = page_fill_value(seed, page);

    for (unsigned i = 0; i < RANDOM_WORDS; i++)
        w[i] = xorshift64s(&st);
    for (unsigned i = RANDOM_WORDS; i < PAGE_WORDS; i++)
        w[i] = v;
}

/* Number of words of the page that differ from the pattern; prints the
 * first few. */
static uint64_t check_page(const uint64_t *w, uint64_t seed, uint64_t page,
                           uint64_t *reported)
{
    uint64_t st = page_state(seed, page);
    uint64_t v = page_fill_value(seed, page);
    uint64_t bad = 0;

    for (unsigned i = 0; i < PAGE_WORDS; i++) {
        uint64_t want = i < RANDOM_WORDS ? xorshift64s(&st) : v;
        if (w[i] == want)
            continue;
        bad++;
        if (*reported < 10) {
            fprintf(stderr,
                    "swap-fill: page %" PRIu64 " word %u: got 0x%016" PRIx64
                    ", want 0x%016" PRIx64 "\n",
                    page, i, w[i], want);
            ++*reported;
        }
    }
    return bad;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* VmSwap of this process in KiB, or 0 if /proc says nothing. */
static uint64_t vmswap_kb(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    uint64_t kb = 0;

    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmSwap: %" SCNu64, &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void usage(FILE *out)
{
    fputs("Usage: swap-fill [--size SIZE] [--seed N] [--passes N]\n"
          "Fill SIZE (default 512M) of memory with a half-compressible pattern,\n"
          "then verify every 8-byte word; N times (default 1), with seeds N,\n"
          "N+1, ...  Run it in a memory cgroup smaller than SIZE to make it swap.\n",
          out);
}

struct fill_args {
    uint64_t size, seed, passes;
};

/*
 * Parse the command line into *a.  Returns -1 to go on, or the exit status
 * to return at once (0 after --help, 2 for bad arguments).
 */
static int parse_args(int argc, char **argv, struct fill_args *a)
{
    static const struct option opts[] = {
        { "size", required_argument, NULL, 's' },
        { "seed", required_argument, NULL, 'S' },
        { "passes", required_argument, NULL, 'P' },
        { "help", no_argument, NULL, 'h' },
        {},
    };
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (parse_size(optarg, &a->size) < 0 || a->size == 0 || a->size % PATTERN_PAGE) {
                fprintf(stderr, "swap-fill: --size: not a multiple of 4096: %s\n", optarg);
                return 2;
            }
            break;
        case 'S':
            if (parse_u64(optarg, &a->seed) < 0) {
                fprintf(stderr, "swap-fill: --seed: not a number: %s\n", optarg);
                return 2;
            }
            break;
        case 'P':
            if (parse_u64(optarg, &a->passes) < 0 || a->passes == 0 || a->passes > 1000) {
                fprintf(stderr, "swap-fill: --passes: not a number from 1 to 1000: %s\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "swap-fill: unexpected argument: %s\n", argv[optind]);
        return 2;
    }
    return -1;
}

/* What the passes found, summed over them. */
struct fill_result {
    double fill, verify;        /* seconds */
    uint64_t swap_max;          /* highest VmSwap seen, KiB */
    uint64_t bad, bad_pages, reported;
};

static void note_swap(struct fill_result *r)
{
    uint64_t s = vmswap_kb();
    if (s > r->swap_max)
        r->swap_max = s;
}

/* One pass: fill every page with seed ps's pattern, then check every word. */
static void run_pass(uint8_t *mem, uint64_t pages, uint64_t ps, struct fill_result *r)
{
    double t0 = now();
    for (uint64_t p = 0; p < pages; p++)
        fill_page((uint64_t *)(mem + p * PATTERN_PAGE), ps, p);
    double t1 = now();
    note_swap(r);
    for (uint64_t p = 0; p < pages; p++) {
        uint64_t b = check_page((const uint64_t *)(mem + p * PATTERN_PAGE), ps, p,
                                &r->reported);
        r->bad += b;
        r->bad_pages += b != 0;
        /* Sample halfway too: pages come and go while verifying. */
        if (p == pages / 2)
            note_swap(r);
    }
    r->fill += t1 - t0;
    r->verify += now() - t1;
}

int main(int argc, char **argv)
{
    struct fill_args a = { .size = 512ull << 20, .seed = 1, .passes = 1 };
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;

    uint64_t pages = a.size / PATTERN_PAGE;
    uint8_t *mem = mmap(NULL, a.size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
        fprintf(stderr, "swap-fill: mmap %" PRIu64 " bytes: %s\n", a.size, strerror(errno));
        return 1;
    }
    /* Not fatal: without THP there is nothing to refuse. */
    (void)madvise(mem, a.size, MADV_NOHUGEPAGE);

    struct fill_result r = { 0 };
    double start = now();
    for (uint64_t pass = 0; pass < a.passes; pass++)
        run_pass(mem, pages, a.seed + pass, &r);
    double t2 = now();

    printf("swap-fill: size=%" PRIu64 " seed=%" PRIu64 " passes=%" PRIu64
           " fill=%.3f verify=%.3f total=%.3f vmswap_max_kb=%" PRIu64 "\n",
           a.size, a.seed, a.passes, r.fill, r.verify, t2 - start, r.swap_max);
    fflush(stdout);
    munmap(mem, a.size);
    if (r.bad) {
        fprintf(stderr, "swap-fill: %" PRIu64 " words wrong in %" PRIu64 " of %" PRIu64
                " pages over %" PRIu64 " passes\n", r.bad, r.bad_pages, pages, a.passes);
        return 1;
    }
    return 0;
}
