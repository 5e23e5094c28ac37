/* SPDX-License-Identifier: MIT */
/*
 * Threads against each other and against the pool's own reclaim.
 *
 * Four workers allocate, write, read, map and free objects at random, each
 * in its own slots; a fifth thread loops zs_compact() and zs_shrink() and
 * reads the stats.  An object's bytes are a pattern of (handle, version), so
 * a read that returns another object, a stale copy, or half of an old and
 * half of a new version is caught.  A few shared objects are read (mapped)
 * by all workers at once while compaction may move them.
 *
 * Ownership, so that the test itself is race-free:
 *   - each slot has a mutex; its owner holds it for every pool call on the
 *     slot's object, and the evict callback (in the fifth thread) takes it
 *     before touching the object, so the two never use one object at once;
 *   - a global map from handle to slot, under its own mutex, lets the
 *     callback find the slot.  The owner publishes a handle after writing it
 *     and unpublishes it before freeing it; a handle the callback cannot find
 *     (or finds reassigned once it holds the slot) is left alone with 0, as
 *     zs_shrink() allows.  Lock order: slot, then map.
 *   - shared objects have a rwlock: readers hold it shared while they read
 *     or map; the callback holds it exclusive to move the object to a fresh
 *     handle (read, allocate, write, free the old one).
 *
 * Bounded by time (UZRAM_CONC_SECONDS, default 3) and by operations per
 * worker; a watchdog fails the test if the threads do not finish (a
 * deadlock) and says what each was doing.  Must pass under ThreadSanitizer.
 */
#include "zstest.h"
#include "u64map.h"
#include "cleanup.h" /* mutex_lock(), mutex_unlock(): abort on failure */

#include <pthread.h>

#define NWORKERS 4
#define NSLOTS 512          /* per worker */
#define NSHARED 16
#define MAX_OPS_PER_WORKER 3000000
#define DEFAULT_SECONDS 3
#define JOIN_GRACE_SECONDS 120

enum kind { SLOT = 1, SHARED };
enum state { EMPTY, LIVE, EVICTED };

struct slot {
    enum kind kind;
    pthread_mutex_t lock;
    enum state state;
    uint64_t h;             /* LIVE: the object; EVICTED: its last handle */
    uint32_t size, version;
    unsigned char *side;    /* EVICTED: the bytes the callback saved */
};

struct shared {
    enum kind kind;
    pthread_rwlock_t lock;
    uint64_t h;
    uint32_t size, version;
};

struct worker {
    pthread_t thread;
    int id;
    struct test_rng rng;
    struct slot slots[NSLOTS];
    unsigned char buf[ZS_MAX_ALLOC_SIZE], want[ZS_MAX_ALLOC_SIZE];
    /* progress, read by the watchdog */
    uint64_t ops;
    const char *doing;
    uint64_t n_alloc, n_free, n_read, n_write, n_map, n_shared, n_swapin;
};

/* What a worker is doing, for the watchdog's report. */
#define DOING(w, what) __atomic_store_n(&(w)->doing, (what), __ATOMIC_RELAXED)

static struct zs_pool *pool;
static struct worker workers[NWORKERS];
static struct shared shared[NSHARED];
static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;
static struct u64map owners; /* handle -> struct slot * or struct shared * */
static int stop;
static uint64_t seed;

/* reclaimer's figures */
static const char *reclaim_doing;
static uint64_t n_compact, n_shrink, n_busy, n_evicted, n_evict_missed;
static uint64_t pages_compacted, pages_evicted;

static void publish(uint64_t h, void *owner)
{
    mutex_lock(&map_lock);
    CHECKF(!u64map_find(&owners, h), "zs_malloc returned live handle %#" PRIx64, h);
    u64map_put(&owners, h, (uint64_t)(uintptr_t)owner);
    mutex_unlock(&map_lock);
}

static void unpublish(uint64_t h)
{
    mutex_lock(&map_lock);
    CHECK(u64map_del(&owners, h));
    mutex_unlock(&map_lock);
}

static void *lookup(uint64_t h)
{
    uint64_t v = 0;
    mutex_lock(&map_lock);
    u64map_get(&owners, h, &v);
    mutex_unlock(&map_lock);
    return (void *)(uintptr_t)v;
}

static size_t random_size(struct test_rng *rng)
{
    uint64_t r = rng_below(rng, 10);
    if (r < 2)
        return rng_range(rng, 1, 256);
    if (r < 7)
        return rng_range(rng, 1024, 3072);
    if (r < 8)
        return ZS_MAX_ALLOC_SIZE;
    return rng_range(rng, 1, ZS_MAX_ALLOC_SIZE);
}

static void check_bytes(const unsigned char *got, uint64_t h, uint32_t size,
                        uint32_t version, unsigned char *scratch, const char *what)
{
    test_pattern(scratch, size, h, version);
    if (memcmp(got, scratch, size) == 0)
        return;
    size_t k = 0;
    while (got[k] == scratch[k])
        k++;
    /* Which version is it, if any: a stale or torn copy? */
    int found = -1;
    for (uint32_t v = version > 8 ? version - 8 : 0; v < version + 2 && found < 0; v++) {
        test_pattern(scratch, size, h, v);
        if (memcmp(got + k, scratch + k, size - k) == 0)
            found = (int)v;
    }
    if (found >= 0)
        CHECKF(0, "%s: object %#" PRIx64 " (size %u, version %u) differs at byte %zu; "
               "from there on it holds version %d (stale or torn)", what, h, size,
               version, k, found);
    CHECKF(0, "%s: object %#" PRIx64 " (size %u, version %u) differs at byte %zu, and "
           "is no recent version of itself (another object's bytes, or garbage)",
           what, h, size, version, k);
}

/* Read the slot's object and compare.  Slot lock held. */
static void verify_slot(struct worker *w, struct slot *s, const char *what)
{
    int r = zs_read(pool, s->h, w->buf);
    CHECKF(r == (int)s->size, "%s: zs_read(%#" PRIx64 ") = %d, size %u", what, s->h,
           r, s->size);
    check_bytes(w->buf, s->h, s->size, s->version, w->want, what);
}

static void write_slot(struct worker *w, struct slot *s)
{
    s->version++;
    test_pattern(w->buf, s->size, s->h, s->version);
    if (rng_one_in(&w->rng, 4)) {
        size_t size = 0;
        unsigned char *p = zs_map(pool, s->h, &size);
        CHECKF(p, "zs_map(%#" PRIx64 "): %m", s->h);
        CHECK_EQU(size, s->size);
        memcpy(p, w->buf, size);
        zs_unmap(pool, s->h);
    } else {
        CHECK_EQ(zs_write(pool, s->h, w->buf, s->size), 0);
    }
}

static void slot_alloc(struct worker *w, struct slot *s, uint32_t size)
{
    DOING(w, "zs_malloc");
    uint64_t h = zs_malloc(pool, size);
    CHECKF(h, "zs_malloc(%u): %m", size);
    s->h = h;
    s->size = size;
    s->version = 0;
    DOING(w, "first write");
    write_slot(w, s);
    verify_slot(w, s, "after allocation");
    s->state = LIVE;
    publish(h, s);
    w->n_alloc++;
}

static void shared_read(struct worker *w)
{
    struct shared *sh = &shared[rng_below(&w->rng, NSHARED)];
    DOING(w, "shared read");
    if (pthread_rwlock_rdlock(&sh->lock) != 0)
        abort();
    if (rng_one_in(&w->rng, 2)) {
        size_t size = 0;
        unsigned char *p = zs_map(pool, sh->h, &size);
        CHECKF(p, "zs_map(shared %#" PRIx64 "): %m", sh->h);
        CHECK_EQU(size, sh->size);
        /* Hold the map a little while others map it too. */
        check_bytes(p, sh->h, sh->size, sh->version, w->want, "shared map");
        zs_unmap(pool, sh->h);
    } else {
        int r = zs_read(pool, sh->h, w->buf);
        CHECKF(r == (int)sh->size, "zs_read(shared %#" PRIx64 ") = %d", sh->h, r);
        check_bytes(w->buf, sh->h, sh->size, sh->version, w->want, "shared read");
    }
    pthread_rwlock_unlock(&sh->lock);
    w->n_shared++;
}

static void worker_op(struct worker *w)
{
    if (rng_one_in(&w->rng, 10)) {
        shared_read(w);
        return;
    }
    struct slot *s = &w->slots[rng_below(&w->rng, NSLOTS)];
    mutex_lock(&s->lock);
    switch (s->state) {
    case EMPTY:
        slot_alloc(w, s, (uint32_t)random_size(&w->rng));
        break;
    case EVICTED:
        /* The callback's copy must be what we last wrote. */
        DOING(w, "check evicted copy");
        check_bytes(s->side, s->h, s->size, s->version, w->want, "evicted copy");
        free(s->side);
        s->side = NULL;
        s->state = EMPTY;
        if (rng_one_in(&w->rng, 2)) {
            slot_alloc(w, s, s->size); /* swap it back in */
            w->n_swapin++;
        }
        break;
    case LIVE: {
        uint64_t r = rng_below(&w->rng, 100);
        if (r < 25) {
            DOING(w, "zs_read");
            verify_slot(w, s, "read");
            CHECK_EQ(zs_size(pool, s->h), s->size);
            w->n_read++;
        } else if (r < 45) {
            DOING(w, "zs_write");
            write_slot(w, s);
            verify_slot(w, s, "after write");
            w->n_write++;
        } else if (r < 70) {
            DOING(w, "zs_map");
            size_t size = 0;
            unsigned char *p = zs_map(pool, s->h, &size);
            CHECKF(p, "zs_map(%#" PRIx64 "): %m", s->h);
            CHECK_EQU(size, s->size);
            check_bytes(p, s->h, s->size, s->version, w->want, "map");
            if (rng_one_in(&w->rng, 2)) {
                s->version++;
                test_pattern(p, s->size, s->h, s->version);
            }
            zs_unmap(pool, s->h);
            verify_slot(w, s, "after map");
            w->n_map++;
        } else {
            DOING(w, "zs_free");
            unpublish(s->h);
            zs_free(pool, s->h);
            s->state = EMPTY;
            w->n_free++;
        }
        break;
    }
    }
    DOING(w, "idle");
    mutex_unlock(&s->lock);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (uint64_t i = 0; i < MAX_OPS_PER_WORKER; i++) {
        if (__atomic_load_n(&stop, __ATOMIC_RELAXED))
            break;
        worker_op(w);
        __atomic_store_n(&w->ops, i + 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static int evict_slot(struct slot *s, uint64_t h)
{
    mutex_lock(&s->lock);
    if (s->state != LIVE || s->h != h) {
        /* Freed (and maybe the slot reused) since we looked it up. */
        mutex_unlock(&s->lock);
        __atomic_fetch_add(&n_evict_missed, 1, __ATOMIC_RELAXED);
        return 0;
    }
    unsigned char *copy = malloc(s->size);
    static unsigned char want[ZS_MAX_ALLOC_SIZE]; /* fifth thread only */
    CHECK(copy);
    int r = zs_read(pool, h, copy);
    CHECKF(r == (int)s->size, "zs_read(%#" PRIx64 ") in evict = %d, size %u", h, r,
           s->size);
    check_bytes(copy, h, s->size, s->version, want, "evict");
    unpublish(h);
    zs_free(pool, h);
    s->side = copy;
    s->state = EVICTED;
    mutex_unlock(&s->lock);
    __atomic_fetch_add(&n_evicted, 1, __ATOMIC_RELAXED);
    return 0;
}

/* Move a shared object to a new handle, as a cache would rotate it. */
static int evict_shared(struct shared *sh, uint64_t h)
{
    static unsigned char buf[ZS_MAX_ALLOC_SIZE], want[ZS_MAX_ALLOC_SIZE];
    if (pthread_rwlock_wrlock(&sh->lock) != 0)
        abort();
    if (sh->h != h) {
        pthread_rwlock_unlock(&sh->lock);
        __atomic_fetch_add(&n_evict_missed, 1, __ATOMIC_RELAXED);
        return 0;
    }
    int r = zs_read(pool, h, buf);
    CHECKF(r == (int)sh->size, "zs_read(shared %#" PRIx64 ") in evict = %d", h, r);
    check_bytes(buf, h, sh->size, sh->version, want, "evict shared");
    uint64_t h2 = zs_malloc(pool, sh->size);
    CHECKF(h2, "zs_malloc in evict: %m");
    test_pattern(buf, sh->size, h2, sh->version + 1);
    CHECK_EQ(zs_write(pool, h2, buf, sh->size), 0);
    publish(h2, sh);
    unpublish(h);
    zs_free(pool, h);
    sh->h = h2;
    sh->version++;
    pthread_rwlock_unlock(&sh->lock);
    __atomic_fetch_add(&n_evicted, 1, __ATOMIC_RELAXED);
    return 0;
}

static int evict(struct zs_pool *p, uint64_t h, void *arg)
{
    (void)arg;
    CHECK(p == pool);
    enum kind *k = lookup(h);
    if (!k) {
        /* Freed by its owner, or not yet published: leave it. */
        __atomic_fetch_add(&n_evict_missed, 1, __ATOMIC_RELAXED);
        return 0;
    }
    return *k == SLOT ? evict_slot((struct slot *)k, h)
                      : evict_shared((struct shared *)k, h);
}

static void *reclaimer_main(void *arg)
{
    struct test_rng rng;
    (void)arg;
    rng_seed(&rng, seed ^ 0x5eed);
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        __atomic_store_n(&reclaim_doing, "zs_compact", __ATOMIC_RELAXED);
        int64_t r = zs_compact(pool);
        CHECKF(r >= 0, "zs_compact() = %" PRId64, r);
        __atomic_fetch_add(&pages_compacted, (uint64_t)r, __ATOMIC_RELAXED);
        __atomic_fetch_add(&n_compact, 1, __ATOMIC_RELAXED);

        __atomic_store_n(&reclaim_doing, "zs_shrink", __ATOMIC_RELAXED);
        uint64_t want = rng_range(&rng, 1, 16);
        r = zs_shrink(pool, want);
        CHECKF(r >= 0 || r == -EBUSY, "zs_shrink(%" PRIu64 ") = %" PRId64, want, r);
        if (r == -EBUSY)
            __atomic_fetch_add(&n_busy, 1, __ATOMIC_RELAXED);
        else
            __atomic_fetch_add(&pages_evicted, (uint64_t)r, __ATOMIC_RELAXED);
        __atomic_fetch_add(&n_shrink, 1, __ATOMIC_RELAXED);

        /* Stats are lock-free; each figure must at least be sane. */
        __atomic_store_n(&reclaim_doing, "stats", __ATOMIC_RELAXED);
        struct zs_pool_stats s = zt_stats(pool);
        CHECKF(s.objects <= (uint64_t)NWORKERS * NSLOTS + NSHARED + 64,
               "stats.objects = %" PRIu64, s.objects);
        struct zs_class_stats c;
        unsigned idx = (unsigned)rng_below(&rng, zs_class_count());
        CHECK_EQ(zs_get_class_stats(pool, idx, &c), 0);
        uint64_t listed = 0;
        for (unsigned g = 0; g < ZS_FULLNESS_GROUPS; g++)
            listed += c.fullness[g];
        CHECKF(listed == c.zspages, "class %u snapshot: %" PRIu64 " zspages listed of %"
               PRIu64, idx, listed, c.zspages);

        __atomic_store_n(&reclaim_doing, "sleep", __ATOMIC_RELAXED);
        struct timespec ts = { 0, (long)rng_range(&rng, 100, 2000) * 1000 };
        nanosleep(&ts, NULL);
    }
    __atomic_store_n(&reclaim_doing, "done", __ATOMIC_RELAXED);
    return NULL;
}

static void print_progress(void)
{
    for (int i = 0; i < NWORKERS; i++)
        fprintf(stderr, "  worker %d: %" PRIu64 " ops, doing %s\n", i,
                __atomic_load_n(&workers[i].ops, __ATOMIC_RELAXED),
                __atomic_load_n(&workers[i].doing, __ATOMIC_RELAXED));
    fprintf(stderr, "  reclaimer: %" PRIu64 " compactions, %" PRIu64 " shrinks, "
            "doing %s\n  seed %#" PRIx64 " (UZRAM_TEST_SEED)\n",
            __atomic_load_n(&n_compact, __ATOMIC_RELAXED),
            __atomic_load_n(&n_shrink, __ATOMIC_RELAXED),
            __atomic_load_n(&reclaim_doing, __ATOMIC_RELAXED), seed);
}

static void join_or_fail(pthread_t t, const char *name, double deadline)
{
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        int r = pthread_timedjoin_np(t, NULL, &ts);
        if (r == 0)
            return;
        CHECKF(r == ETIMEDOUT, "pthread_timedjoin_np: %s", strerror(r));
        CHECKF(test_now() < deadline, "%s has not finished %d s after it was told to "
               "stop: deadlock or livelock in the pool", name, JOIN_GRACE_SECONDS);
    }
}

/* The shared objects, one version each, published before any thread runs. */
static void setup_shared(void)
{
    static unsigned char buf[ZS_MAX_ALLOC_SIZE];
    struct test_rng rng;

    rng_seed(&rng, seed);
    for (int i = 0; i < NSHARED; i++) {
        struct shared *sh = &shared[i];
        sh->kind = SHARED;
        pthread_rwlock_init(&sh->lock, NULL);
        sh->size = (uint32_t)rng_range(&rng, 500, ZS_MAX_ALLOC_SIZE);
        sh->h = zs_malloc(pool, sh->size);
        CHECK(sh->h);
        sh->version = 1;
        test_pattern(buf, sh->size, sh->h, 1);
        CHECK_EQ(zs_write(pool, sh->h, buf, sh->size), 0);
        publish(sh->h, sh);
    }
}

static void setup_workers(void)
{
    for (int i = 0; i < NWORKERS; i++) {
        struct worker *w = &workers[i];
        w->id = i;
        DOING(w, "starting");
        rng_seed(&w->rng, seed + (uint64_t)i + 1);
        for (int j = 0; j < NSLOTS; j++) {
            w->slots[j].kind = SLOT;
            pthread_mutex_init(&w->slots[j].lock, NULL);
        }
    }
}

static bool all_workers_done(void)
{
    for (int i = 0; i < NWORKERS; i++)
        if (__atomic_load_n(&workers[i].ops, __ATOMIC_RELAXED) < MAX_OPS_PER_WORKER)
            return false;
    return true;
}

/*
 * Start the reclaimer and the workers, let them run for the time given
 * (unless every worker finishes its ops first), stop and join them.
 * Returns the seconds they ran.
 */
static double run_threads(double seconds)
{
    double t0 = test_now();
    pthread_t reclaimer;
    CHECK_EQ(pthread_create(&reclaimer, NULL, reclaimer_main, NULL), 0);
    for (int i = 0; i < NWORKERS; i++)
        CHECK_EQ(pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]), 0);

    while (test_now() - t0 < seconds) {
        if (all_workers_done())
            break;
        struct timespec ts = { 0, 20 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    double deadline = test_now() + JOIN_GRACE_SECONDS;
    for (int i = 0; i < NWORKERS; i++)
        join_or_fail(workers[i].thread, "a worker", deadline);
    join_or_fail(reclaimer, "the reclaimer", deadline);
    return test_now() - t0;
}

/* What the final check found, for the summary line. */
struct final_counts {
    uint64_t live, evicted_now, total_ops;
};

/* One worker's slots: live objects read back, evicted copies intact. */
static void verify_worker(struct worker *w, struct final_counts *fc)
{
    for (int j = 0; j < NSLOTS; j++) {
        struct slot *s = &w->slots[j];
        if (s->state == LIVE) {
            verify_slot(w, s, "final check");
            fc->live++;
        } else if (s->state == EVICTED) {
            check_bytes(s->side, s->h, s->size, s->version, w->want,
                        "final check of evicted copy");
            /* Stale, unless its slot was reused until the generation wrapped. */
            if (!lookup(s->h))
                CHECK_EQ(zs_size(pool, s->h), -ESTALE);
            fc->evicted_now++;
        }
    }
}

/* Quiet now: every object is where its owner thinks, bytes intact. */
static struct final_counts verify_all(void)
{
    struct final_counts fc = { 0, 0, 0 };

    for (int i = 0; i < NWORKERS; i++) {
        struct worker *w = &workers[i];
        fc.total_ops += w->ops;
        printf("worker %d: %" PRIu64 " ops: %" PRIu64 " alloc, %" PRIu64 " free, %"
               PRIu64 " read, %" PRIu64 " write, %" PRIu64 " map, %" PRIu64
               " shared, %" PRIu64 " swap-in\n", i, w->ops, w->n_alloc, w->n_free,
               w->n_read, w->n_write, w->n_map, w->n_shared, w->n_swapin);
        verify_worker(w, &fc);
    }
    for (int i = 0; i < NSHARED; i++) {
        static unsigned char buf[ZS_MAX_ALLOC_SIZE], want[ZS_MAX_ALLOC_SIZE];
        CHECK_EQ(zs_read(pool, shared[i].h, buf), shared[i].size);
        check_bytes(buf, shared[i].h, shared[i].size, shared[i].version, want,
                    "final check of shared object");
    }
    return fc;
}

/* The pool's own figures agree with what the threads counted. */
static void check_pool_stats(double elapsed, const struct final_counts *fc)
{
    struct zs_pool_stats st = zt_check_consistent(pool);
    printf("%.1f s, %" PRIu64 " worker ops; reclaimer: %" PRIu64 " compactions (%"
           PRIu64 " pages), %" PRIu64 " shrinks (%" PRIu64 " pages, %" PRIu64
           " -EBUSY), %" PRIu64 " objects evicted, %" PRIu64 " evict calls left "
           "alone; now %" PRIu64 " live, %" PRIu64 " evicted\n", elapsed, fc->total_ops,
           n_compact, pages_compacted, n_shrink, pages_evicted, n_busy, n_evicted,
           n_evict_missed, fc->live, fc->evicted_now);
    zt_print_stats("pool", &st);
    CHECK_EQU(st.objects, fc->live + NSHARED);
    /*
     * The pool counts an object as evicted when it is gone after its
     * callback, which includes objects their owner freed while the callback
     * stood aside (the calls "left alone").
     */
    CHECKF(st.objects_evicted >= n_evicted &&
           st.objects_evicted <= n_evicted + n_evict_missed,
           "stats.objects_evicted = %" PRIu64 ", but the callback freed %" PRIu64
           " objects and left %" PRIu64 " alone", st.objects_evicted, n_evicted,
           n_evict_missed);
    CHECK_EQU(st.pages_compacted, pages_compacted);
    CHECK_EQU(st.pages_evicted, pages_evicted);
    CHECK_EQU(st.bad_handles, 0);
    CHECKF(n_evicted > 0, "no object was evicted in %" PRIu64 " shrinks", n_shrink);
    if (pages_compacted == 0)
        printf("note: no compaction freed pages in this run\n");
}

/* Free everything: the pool empties completely. */
static void free_all(void)
{
    for (int i = 0; i < NWORKERS; i++)
        for (int j = 0; j < NSLOTS; j++) {
            struct slot *s = &workers[i].slots[j];
            if (s->state == LIVE)
                zs_free(pool, s->h);
            free(s->side);
            pthread_mutex_destroy(&s->lock);
        }
    for (int i = 0; i < NSHARED; i++) {
        zs_free(pool, shared[i].h);
        pthread_rwlock_destroy(&shared[i].lock);
    }
    struct zs_pool_stats st = zt_check_consistent(pool);
    CHECK_EQU(st.objects, 0);
    CHECK_EQU(st.pages, 0);
    CHECK_EQU(st.zspages, 0);
}

int main(int argc, char **argv)
{
    seed = test_seed(argc, argv, 0xc0c0a);
    double seconds = (double)test_env_u64("UZRAM_CONC_SECONDS", DEFAULT_SECONDS);
    test_fail_hook = print_progress;
    test_watchdog((unsigned)test_env_u64("UZRAM_TEST_WATCHDOG", 280));
    printf("seed %#" PRIx64 ", %d workers, %.0f s\n", seed, NWORKERS, seconds);

    static const struct zs_ops ops = { .evict = evict };
    u64map_init(&owners, NWORKERS * NSLOTS + NSHARED);
    pool = zs_create(&ops, NULL);
    CHECKF(pool, "zs_create: %m");

    setup_shared();
    setup_workers();
    double elapsed = run_threads(seconds);

    test_fail_hook = NULL;
    struct final_counts fc = verify_all();
    check_pool_stats(elapsed, &fc);
    free_all();
    zs_destroy(pool);
    u64map_free(&owners);
    return 0;
}
