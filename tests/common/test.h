/* SPDX-License-Identifier: MIT */
/*
 * What every uzram test program shares: checks that survive release builds
 * and say where and why they failed, a seeded PRNG so a failure can be
 * replayed, and the process's memory figures from /proc/self/statm.
 *
 * A check that fails prints file:line, the expression, the values it compared
 * and whatever context the test registered (seed, step number), then aborts,
 * so meson reports the test as failed and a core or sanitizer report shows
 * where.  Exit status 77 means "skipped" to meson; use it only when a
 * prerequisite of the test is truly missing.
 */
#ifndef UZRAM_TEST_H
#define UZRAM_TEST_H

/* Tests keep their asserts in release builds (-Db_ndebug=true). */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TEST_SKIP 77

/* Name of the test case running, for failure messages. */
static const char *test_current __attribute__((unused));
/* Called on failure before aborting, to print context such as seed and step. */
static void (*test_fail_hook)(void) __attribute__((unused));

static void test_failed(const char *file, int line, const char *expr,
                        const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5), unused));

static void test_failed(const char *file, int line, const char *expr,
                        const char *fmt, ...)
{
    /* Several threads may fail at once; let the first one speak. */
    static int failing;
    if (__atomic_exchange_n(&failing, 1, __ATOMIC_SEQ_CST)) {
        for (;;)
            pause();
    }
    fflush(stdout);
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, expr);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs("  ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    if (test_current)
        fprintf(stderr, "  in test case %s\n", test_current);
    if (test_fail_hook)
        test_fail_hook();
    fflush(stderr);
    abort();
}

#define CHECK(expr)                                                   \
    do {                                                              \
        if (!(expr))                                                  \
            test_failed(__FILE__, __LINE__, #expr, NULL);             \
    } while (0)

/* CHECK with a printf-style explanation of what was expected. */
#define CHECKF(expr, ...)                                             \
    do {                                                              \
        if (!(expr))                                                  \
            test_failed(__FILE__, __LINE__, #expr, __VA_ARGS__);      \
    } while (0)

/* Compare two integers as signed (return values, negative errnos). */
#define CHECK_EQ(a, b)                                                \
    do {                                                              \
        intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);              \
        if (a_ != b_)                                                 \
            test_failed(__FILE__, __LINE__, #a " == " #b,             \
                        "left %jd, right %jd%s%s", a_, b_,            \
                        a_ < 0 && a_ > -4096 ? ", left is -" : "",    \
                        a_ < 0 && a_ > -4096 ? strerrorname_np((int)-a_) ?: "?" : ""); \
    } while (0)

/* Compare two integers as unsigned (counters, sizes). */
#define CHECK_EQU(a, b)                                               \
    do {                                                              \
        uintmax_t a_ = (uintmax_t)(a), b_ = (uintmax_t)(b);           \
        if (a_ != b_)                                                 \
            test_failed(__FILE__, __LINE__, #a " == " #b,             \
                        "left %ju, right %ju", a_, b_);               \
    } while (0)

/*
 * A hang (a deadlock in the code under test) should say where it hung rather
 * than wait for meson's timeout: after the given seconds, print the test
 * case and the fail hook's context, and abort.  0 disarms it.
 */
static __attribute__((unused)) void test_alarm(int sig)
{
    static const char msg[] = "TIMEOUT: the test made no progress; deadlock?\n";
    (void)sig;
    if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
        _exit(1);
    if (test_current)
        fprintf(stderr, "  in test case %s\n", test_current);
    /* Not async-signal-safe, but the process is stuck and about to die. */
    if (test_fail_hook)
        test_fail_hook();
    fflush(stderr);
    abort();
}

static inline void test_watchdog(unsigned seconds)
{
    signal(SIGALRM, test_alarm);
    alarm(seconds);
}

/* Seconds one unit test case may take, sanitizers included. */
#define TEST_CASE_TIMEOUT 90

/* Run one named test case of a program. */
#define RUN_TEST(fn)                                                  \
    do {                                                              \
        double t0_ = test_now();                                      \
        test_current = #fn;                                           \
        printf("-- %s\n", #fn);                                       \
        fflush(stdout);                                               \
        test_watchdog(TEST_CASE_TIMEOUT);                             \
        fn();                                                         \
        test_watchdog(0);                                             \
        printf("ok %s (%.3f s)\n", #fn, test_now() - t0_);            \
        fflush(stdout);                                               \
        test_current = NULL;                                          \
    } while (0)

static inline double test_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * splitmix64 (Steele, Lea, Flood 2014): one 64-bit word of state, passes
 * BigCrush, and any seed, 0 included, is a good one.
 */
struct test_rng {
    uint64_t s;
};

static inline uint64_t rng_next(struct test_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void rng_seed(struct test_rng *r, uint64_t seed)
{
    r->s = seed;
}

/* Uniform in [0, n); n > 0.  Lemire's multiply-shift, bias below 2^-32. */
static inline uint64_t rng_below(struct test_rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* Uniform in [lo, hi]. */
static inline uint64_t rng_range(struct test_rng *r, uint64_t lo, uint64_t hi)
{
    return lo + rng_below(r, hi - lo + 1);
}

/* True with probability 1/n. */
static inline bool rng_one_in(struct test_rng *r, uint64_t n)
{
    return rng_below(r, n) == 0;
}

static inline void rng_fill(struct test_rng *r, void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len >= 8) {
        uint64_t v = rng_next(r);
        memcpy(p, &v, 8);
        p += 8;
        len -= 8;
    }
    if (len) {
        uint64_t v = rng_next(r);
        memcpy(p, &v, len);
    }
}

/* The bytes a test stores for (key, version): reproducible without a copy. */
static inline void test_pattern(void *buf, size_t len, uint64_t key, uint64_t version)
{
    struct test_rng r = { key * 0xd1342543de82ef95ull ^ version ^ (uint64_t)len << 48 };
    rng_fill(&r, buf, len);
}

/*
 * Seed for a randomised test: argv[1] if given, else $UZRAM_TEST_SEED,
 * else def.  Printed so that a failure in CI can be replayed.
 */
static inline uint64_t test_seed(int argc, char **argv, uint64_t def)
{
    const char *s = argc > 1 ? argv[1] : getenv("UZRAM_TEST_SEED");
    if (s && *s) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (errno || *end) {
            fprintf(stderr, "bad seed '%s'\n", s);
            exit(2);
        }
        return v;
    }
    return def;
}

/* An unsigned number from the environment, or def. */
static inline uint64_t test_env_u64(const char *name, uint64_t def)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end) {
        fprintf(stderr, "bad %s '%s'\n", name, s);
        exit(2);
    }
    return v;
}

/*
 * The process's virtual size and resident set, in bytes, from
 * /proc/self/statm.  Returns 0 or a negative errno.
 */
static inline int test_statm(uint64_t *ret_vm, uint64_t *ret_rss)
{
    char buf[256];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int e = errno;
    close(fd);
    if (n <= 0)
        return n < 0 ? -e : -EIO;
    buf[n] = '\0';
    unsigned long long vm, rss;
    if (sscanf(buf, "%llu %llu", &vm, &rss) != 2)
        return -EIO;
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    if (ret_vm)
        *ret_vm = vm * page;
    if (ret_rss)
        *ret_rss = rss * page;
    return 0;
}

/* Resident set in bytes; fails the test if statm cannot be read. */
static inline uint64_t test_rss(void)
{
    uint64_t rss = 0;
    int r = test_statm(NULL, &rss);
    CHECKF(r == 0, "reading /proc/self/statm: %s", strerror(-r));
    return rss;
}

static inline double test_mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

#endif
