/* SPDX-License-Identifier: MIT */
/*
 * The reserve (zs_reserve_set, zs_reserve_refill): allocation that never
 * waits for memory.
 *
 * What it promises, and how each case checks it:
 *   - no page fault on the allocation path once refilled: the calling
 *     thread's minor-fault count (getrusage RUSAGE_THREAD) does not move
 *     across thousands of zs_malloc() and zs_write() calls, objects of
 *     every size, zspages of every length among them;
 *   - an empty reserve fails the allocation at once, counted as a miss,
 *     with reserve_low called once, and nothing already stored harmed;
 *   - a refill brings it back, and freed zspages return to the reserve;
 *   - handles_grow is told about handle indices before they are handed out;
 *   - the mode is set before the first allocation or not at all;
 *   - a refill thread and allocating threads together (run under TSan in
 *     CI: this test is in the concurrency suite too).
 */
#include <pthread.h>
#include <sys/resource.h>

#include "zstest.h"

#define TARGET (2u << 20)

static unsigned low_calls;
static uint64_t handles_told;

static void on_low(struct zs_pool *pool, void *arg)
{
    (void)pool;
    (void)arg;
    __atomic_add_fetch(&low_calls, 1, __ATOMIC_RELAXED);
}

static int on_grow(struct zs_pool *pool, uint64_t handles, void *arg)
{
    (void)pool;
    (void)arg;
    CHECKF(handles >= __atomic_load_n(&handles_told, __ATOMIC_RELAXED),
           "handles_grow went back from %" PRIu64 " to %" PRIu64, handles_told, handles);
    __atomic_store_n(&handles_told, handles, __ATOMIC_RELAXED);
    return 0;
}

static const struct zs_ops ops = { .reserve_low = on_low, .handles_grow = on_grow };

static struct zs_reserve_stats rstats(struct zs_pool *pool)
{
    struct zs_reserve_stats r;
    memset(&r, 0x5a, sizeof(r));
    zs_reserve_get_stats(pool, &r);
    return r;
}

static long thread_minflt(void)
{
    struct rusage ru;
    CHECK(getrusage(RUSAGE_THREAD, &ru) == 0);
    return ru.ru_minflt + ru.ru_majflt;
}

static struct zs_pool *reserved_pool(uint64_t target)
{
    handles_told = 0;
    struct zs_pool *pool = zs_create(&ops, NULL);
    CHECKF(pool, "zs_create: %m");
    CHECK_EQ(zs_reserve_set(pool, target), 0);
    CHECK_EQ(zs_reserve_refill(pool), 0);
    struct zs_reserve_stats r = rstats(pool);
    CHECKF(r.available >= target, "refilled to %" PRIu64 " of %" PRIu64, r.available, target);
    return pool;
}

static void test_modes(void)
{
    struct zs_pool *pool = zs_create(NULL, NULL);
    CHECK(pool);
    /* A lazy pool: 0 is a no-op, the stats are zero, a refill does nothing. */
    CHECK_EQ(zs_reserve_set(pool, 0), 0);
    CHECK_EQ(zs_reserve_refill(pool), 0);
    struct zs_reserve_stats r = rstats(pool);
    CHECK_EQU(r.target, 0);
    CHECK_EQU(r.available, 0);
    CHECK_EQU(r.misses, 0);
    /* Too large; and too late once the pool has allocated. */
    CHECK_EQ(zs_reserve_set(pool, ZS_RESERVE_MAX + 1), -EINVAL);
    uint64_t h = zs_malloc(pool, 100);
    CHECK(h);
    CHECK_EQ(zs_reserve_set(pool, TARGET), -EBUSY);
    zs_free(pool, h);
    CHECK_EQ(zs_reserve_set(pool, TARGET), -EBUSY);
    zs_destroy(pool);

    pool = zs_create(NULL, NULL);
    CHECK_EQ(zs_reserve_set(pool, TARGET), 0);
    /* Once on, it stays on: 0 is refused, other targets are taken. */
    CHECK_EQ(zs_reserve_set(pool, 0), -EINVAL);
    CHECK_EQ(zs_reserve_set(pool, TARGET / 2), 0);
    CHECK_EQU(rstats(pool).target, TARGET / 2);
    zs_destroy(pool);
}

/* Before the first refill nothing is populated: allocation fails at once. */
static void test_empty(void)
{
    low_calls = 0;
    struct zs_pool *pool = zs_create(&ops, NULL);
    CHECK_EQ(zs_reserve_set(pool, TARGET), 0);
    for (int i = 0; i < 3; i++) {
        errno = 0;
        CHECK_EQU(zs_malloc(pool, 1000), 0);
        CHECK_EQ(errno, ENOMEM);
    }
    struct zs_reserve_stats r = rstats(pool);
    CHECK_EQU(r.misses, 3);
    CHECK_EQU(r.available, 0);
    /* Told once, not once per miss. */
    CHECK_EQ(low_calls, 1);
    CHECK_EQ(zs_reserve_refill(pool), 0);
    CHECK(zs_malloc(pool, 1000) != 0);
    zt_check_consistent(pool);
    zs_destroy(pool);
}

/*
 * The point of it all: with the reserve refilled, allocating and writing
 * touches no page the kernel has to find.  Sizes cover every class, so
 * zspages of every length are made; the source buffer is touched first.
 */
enum { NOFAULT_N = 1500 };

/*
 * Allocate and write NOFAULT_N objects; returns how many before the first
 * failure, and their handles in h.
 */
static size_t fill_every_class(struct zs_pool *pool, uint64_t *h, uint64_t *ret_bytes)
{
    static unsigned char src[ZS_MAX_ALLOC_SIZE];
    size_t n = 0;

    memset(src, 0x6b, sizeof(src));
    *ret_bytes = 0;
    for (size_t i = 0; i < NOFAULT_N; i++) {
        /* Every 16-byte class once, then sizes from small to whole pages. */
        size_t size = i < 256 ? (i + 1) * 16 : 1 + (i * 2654435761u) % ZS_MAX_ALLOC_SIZE;
        uint64_t k = zs_malloc(pool, size);
        if (!k)
            break;
        CHECK_EQ(zs_write(pool, k, src, size), 0);
        h[n++] = k;
        *ret_bytes += size;
    }
    return n;
}

static void test_no_faults(void)
{
    static uint64_t h[NOFAULT_N];
    uint64_t bytes;

    /*
     * A first pool runs the same code once: the first call of a function
     * faults its text page in, and clock_gettime() the vDSO's data page.
     * That is the program's business (uzramd locks its text at start), not
     * the allocation's.
     */
    struct zs_pool *pool = reserved_pool(16u << 20);
    size_t n = fill_every_class(pool, h, &bytes);
    for (size_t i = 0; i < n; i++)
        zs_free(pool, h[i]);
    zs_destroy(pool);

    /* One zspage per class at least: 193 classes of up to 16 pages. */
    pool = reserved_pool(16u << 20);
    long before = thread_minflt();
    n = fill_every_class(pool, h, &bytes);
    long faults = thread_minflt() - before;
    struct zs_reserve_stats r = rstats(pool);
    printf("%zu objects (%" PRIu64 " bytes) from a 16 MiB reserve: %ld page faults, "
           "%" PRIu64 " misses, %" PRIu64 " bytes left\n",
           n, bytes, faults, r.misses, r.available);
    CHECKF(n == NOFAULT_N, "only %zu allocations before the reserve ran out", n);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* The sanitizers' shadow memory is faulted in as the pool's is touched. */
    (void)faults;
#else
    CHECKF(faults == 0, "%ld page faults on the allocation path", faults);
#endif
    for (size_t i = 0; i < n; i++)
        zs_free(pool, h[i]);
    zt_check_consistent(pool);
    zs_destroy(pool);
}

/*
 * Run the reserve dry without refilling: allocations fail fast and count
 * as misses; what was stored before is intact; freeing returns memory to
 * the reserve; a refill makes allocation work again.
 */
static void test_exhaust(void)
{
    low_calls = 0;
    struct zs_pool *pool = reserved_pool(1u << 20);
    enum { N = 4096 };
    static uint64_t h[N];
    static unsigned char buf[ZS_MAX_ALLOC_SIZE], got[ZS_MAX_ALLOC_SIZE];
    size_t n = 0;

    while (n < N) {
        uint64_t k = zs_malloc(pool, 3000);
        if (!k) {
            CHECK_EQ(errno, ENOMEM);
            break;
        }
        test_pattern(buf, 3000, n, 1);
        CHECK_EQ(zs_write(pool, k, buf, 3000), 0);
        h[n++] = k;
    }
    CHECKF(n < N, "a 1 MiB reserve held %zu objects of 3000 bytes", n);
    struct zs_reserve_stats r = rstats(pool);
    CHECKF(r.misses == 1 && r.low_water < ZS_MAX_PAGES_PER_ZSPAGE * ZT_PAGE,
           "misses %" PRIu64 ", low water %" PRIu64, r.misses, r.low_water);
    CHECKF(low_calls >= 1, "reserve_low was not called as the reserve ran out");
    /* Failing again costs nothing and harms nothing. */
    CHECK_EQU(zs_malloc(pool, 3000), 0);
    CHECK_EQU(rstats(pool).misses, 2);
    for (size_t i = 0; i < n; i++) {
        test_pattern(buf, 3000, i, 1);
        CHECK_EQ(zs_read(pool, h[i], got), 3000);
        CHECKF(memcmp(buf, got, 3000) == 0, "object %zu changed while the reserve ran out", i);
    }
    struct zs_pool_stats before = zt_check_consistent(pool);
    CHECK_EQU(before.objects, n);

    /* Freeing whole zspages puts their pages back in the reserve (to a quarter of the target). */
    for (size_t i = 0; i < n; i++)
        zs_free(pool, h[i]);
    r = rstats(pool);
    CHECKF(r.available >= (1u << 20) / 4 - ZS_MAX_PAGES_PER_ZSPAGE * ZT_PAGE,
           "freed zspages left %" PRIu64 " bytes in the reserve", r.available);
    struct zs_pool_stats after = zt_check_consistent(pool);
    CHECK_EQU(after.pages, 0);
    CHECK_EQ(zs_reserve_refill(pool), 0);
    CHECKF(rstats(pool).available >= (1u << 20), "refill after the drain");
    CHECK(zs_malloc(pool, 3000) != 0);
    zs_destroy(pool);
}

/* handles_grow hears of each index before it is handed out. */
static void test_handles_grow(void)
{
    struct zs_pool *pool = reserved_pool(256u << 10);
    CHECKF(handles_told > 0, "handles_grow was not called by the first refill");
    enum { N = 50000 };
    static uint64_t h[N];
    size_t n = 0;
    for (unsigned round = 0; round < 200 && n < N; round++) {
        while (n < N) {
            uint64_t k = zs_malloc(pool, 16);
            if (!k)
                break;
            CHECKF(zs_handle_index(k) < handles_told, "handle index %u handed out, "
                   "handles_grow told of %" PRIu64, zs_handle_index(k), handles_told);
            h[n++] = k;
        }
        CHECK_EQ(zs_reserve_refill(pool), 0);
    }
    CHECKF(n == N, "only %zu of %u small objects in 200 refills", n, N);
    for (size_t i = 0; i < n; i++)
        zs_free(pool, h[i]);
    zt_check_consistent(pool);
    zs_destroy(pool);
}

/* A lowered target gives memory back at the next refill. */
static void test_lower_target(void)
{
    struct zs_pool *pool = reserved_pool(8u << 20);
    CHECK_EQ(zs_reserve_set(pool, 1u << 20), 0);
    CHECK_EQ(zs_reserve_refill(pool), 0);
    struct zs_reserve_stats r = rstats(pool);
    CHECKF(r.available >= (1u << 20) && r.available <= (1u << 20) + (256u << 10),
           "after lowering the target to 1 MiB: %" PRIu64 " bytes held", r.available);
    zs_destroy(pool);
}

/*
 * Threads allocate, write, check and free while one refills whenever told:
 * a miss is allowed, a wrong byte or a crash is not.
 */
static struct {
    struct zs_pool *pool;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool want, stop;
    unsigned long allocs, misses;
} th = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void th_low(struct zs_pool *pool, void *arg)
{
    (void)pool;
    (void)arg;
    pthread_mutex_lock(&th.lock);
    th.want = true;
    pthread_cond_signal(&th.cond);
    pthread_mutex_unlock(&th.lock);
}

static void *th_refill(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&th.lock);
    while (!th.stop) {
        while (!th.want && !th.stop)
            pthread_cond_wait(&th.cond, &th.lock);
        th.want = false;
        pthread_mutex_unlock(&th.lock);
        CHECK_EQ(zs_reserve_refill(th.pool), 0);
        pthread_mutex_lock(&th.lock);
    }
    pthread_mutex_unlock(&th.lock);
    return NULL;
}

static void *th_worker(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    struct test_rng rng;
    rng_seed(&rng, 0x9e37 + id);
    enum { KEEP = 256 };
    uint64_t h[KEEP] = { 0 };
    uint32_t sz[KEEP] = { 0 };
    unsigned char buf[ZS_MAX_ALLOC_SIZE], got[ZS_MAX_ALLOC_SIZE];
    unsigned long allocs = 0, misses = 0;

    for (unsigned i = 0; i < 40000; i++) {
        unsigned k = (unsigned)rng_below(&rng, KEEP);
        if (h[k]) {
            test_pattern(buf, sz[k], id << 32 | k, sz[k]);
            CHECK_EQ(zs_read(th.pool, h[k], got), (int)sz[k]);
            CHECKF(memcmp(buf, got, sz[k]) == 0, "thread %" PRIu64 " object %u changed", id, k);
            zs_free(th.pool, h[k]);
            h[k] = 0;
            continue;
        }
        uint32_t size = (uint32_t)rng_range(&rng, 1, ZS_MAX_ALLOC_SIZE);
        h[k] = zs_malloc(th.pool, size);
        if (!h[k]) {
            misses++;
            continue;
        }
        allocs++;
        sz[k] = size;
        test_pattern(buf, size, id << 32 | k, size);
        CHECK_EQ(zs_write(th.pool, h[k], buf, size), 0);
    }
    for (unsigned k = 0; k < KEEP; k++)
        zs_free(th.pool, h[k]);
    __atomic_add_fetch(&th.allocs, allocs, __ATOMIC_RELAXED);
    __atomic_add_fetch(&th.misses, misses, __ATOMIC_RELAXED);
    return NULL;
}

static void test_threads(void)
{
    static const struct zs_ops tops = { .reserve_low = th_low };
    th.pool = zs_create(&tops, NULL);
    CHECK(th.pool);
    CHECK_EQ(zs_reserve_set(th.pool, 8u << 20), 0);
    CHECK_EQ(zs_reserve_refill(th.pool), 0);
    pthread_t refiller, w[4];
    CHECK_EQ(pthread_create(&refiller, NULL, th_refill, NULL), 0);
    for (uintptr_t i = 0; i < 4; i++)
        CHECK_EQ(pthread_create(&w[i], NULL, th_worker, (void *)i), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(w[i], NULL);
    pthread_mutex_lock(&th.lock);
    th.stop = true;
    pthread_cond_signal(&th.cond);
    pthread_mutex_unlock(&th.lock);
    pthread_join(refiller, NULL);
    struct zs_reserve_stats r = rstats(th.pool);
    printf("4 threads: %lu allocations, %lu misses (pool: %" PRIu64 "), %" PRIu64
           " refills, low water %" PRIu64 "\n",
           th.allocs, th.misses, r.misses, r.refills, r.low_water);
    CHECK_EQU(r.misses, th.misses);
    /* The reserve is small enough that the refill thread had to run during the test. */
    CHECKF(r.refills >= 2, "%" PRIu64 " refills: the test did not exercise the refill thread",
           r.refills);
    CHECKF(th.allocs > 10 * th.misses, "%lu misses for %lu allocations: the refill "
           "does not keep up at all", th.misses, th.allocs);
    struct zs_pool_stats s = zt_check_consistent(th.pool);
    CHECK_EQU(s.objects, 0);
    zs_destroy(th.pool);
}

int main(void)
{
    RUN_TEST(test_modes);
    RUN_TEST(test_empty);
    RUN_TEST(test_no_faults);
    RUN_TEST(test_exhaust);
    RUN_TEST(test_handles_grow);
    RUN_TEST(test_lower_target);
    RUN_TEST(test_threads);
    return 0;
}
