/* SPDX-License-Identifier: MIT */
/*
 * The pool against a reference model.
 *
 * The model is a plain map from handle to the bytes the object should hold,
 * plus a side store for objects the evict callback moved out (as zram moves
 * pages to its backing device).  A fixed seed drives a million random
 * operations on both: allocations with a realistic spread of sizes (1% of
 * them above a page, as the store's compressed bundles are), frees,
 * full and partial writes, reads, maps that read and modify in place, stale
 * and doubled frees, and now and then a compaction or a small shrink.  After
 * every operation the object it touched is compared byte for byte, and the
 * pool's object and byte counts must equal the model's; after every
 * compaction and shrink, and every 50,000 operations, every live object is.
 *
 * The live set grows to 20,000 objects and drains again in turns, so that
 * compaction has fragmented zspages to work on.
 *
 * With UZRAM_MODEL_RESERVE=<bytes> the pool runs in reserve mode, with a
 * refill now and then: an allocation may then fail (the reserve ran dry),
 * and must fail cleanly, leaving pool and model as they were.
 *
 * Replay a failure with the seed it prints:
 *   UZRAM_TEST_SEED=<seed> ./test-zspool-model     (or the seed as argv[1])
 * UZRAM_MODEL_OPS=<n> changes the number of operations.
 */
#include "zstest.h"
#include "u64map.h"

#define DEFAULT_SEED 0x75a4a3ull
#define DEFAULT_OPS 1000000
#define MAX_LIVE 20000
#define MAX_EVICTED 5000
#define PHASE_OPS 100000    /* ops per grow or drain phase */
#define FULL_CHECK_OPS 50000
#define STALE_RING 64

struct mobj {
    uint64_t h;
    uint32_t size;
    unsigned char *data;
};

static struct {
    struct zs_pool *pool;
    struct test_rng rng;
    uint64_t seed, op, nops;
    const char *what;           /* the operation under way */
    uint64_t what_h;

    struct mobj live[MAX_LIVE]; /* in the pool */
    size_t nlive;
    struct u64map index;        /* handle -> index in live[] */
    uint64_t bytes;             /* sum of live sizes */

    struct mobj evicted[MAX_EVICTED]; /* moved out by the callback */
    size_t nevicted;

    uint64_t stale[STALE_RING]; /* recently freed handles */
    unsigned nstale;

    /* evict callback */
    unsigned calls, freed_by_evict;
    unsigned fail_at;           /* fail this call (1-based); 0: never */

    uint64_t reserve;           /* reserve mode's target; 0: lazy */

    /* counts for the summary */
    uint64_t n_miss, n_refill;
    uint64_t n_alloc, n_free, n_write, n_read, n_map, n_stale, n_swapin;
    uint64_t n_compact, n_shrink, n_shrink_failed, pages_compacted, pages_evicted;
    size_t max_live;
} m;

static void print_context(void)
{
    fprintf(stderr, "  seed %#" PRIx64 ", operation %" PRIu64 " of %" PRIu64
            " (%s, handle %#" PRIx64 "), %zu live, %zu evicted\n"
            "  replay: UZRAM_TEST_SEED=%#" PRIx64 " UZRAM_MODEL_OPS=%" PRIu64
            " ./test-zspool-model\n",
            m.seed, m.op, m.nops, m.what ? m.what : "-", m.what_h, m.nlive,
            m.nevicted, m.seed, m.op + 1);
    if (m.pool) {
        struct zs_pool_stats s = zt_stats(m.pool);
        zt_print_stats("  pool", &s);
        fprintf(stderr, "  model: objects %zu bytes_stored %" PRIu64 "\n", m.nlive,
                m.bytes);
    }
}

/* A size as a compressed-page store sees them, bundles of pages included. */
static size_t random_size(void)
{
    uint64_t r = rng_below(&m.rng, 100);
    if (r < 10)
        return rng_range(&m.rng, 1, 64);
    if (r < 20)
        return rng_range(&m.rng, 65, 1023);
    if (r < 65)
        return rng_range(&m.rng, 1024, 3072);
    if (r < 80)
        return rng_range(&m.rng, 3073, 4095);
    if (r < 90)
        return ZS_MAX_ALLOC_SIZE;
    if (r == 99)
        return rng_range(&m.rng, ZS_MAX_ALLOC_SIZE + 1, ZS_MAX_OBJECT_SIZE);
    return rng_range(&m.rng, 1, ZS_MAX_ALLOC_SIZE);
}

/* Compare the pool's copy of live[i] with the model's. */
static void check_obj(size_t i)
{
    static unsigned char got[ZS_MAX_OBJECT_SIZE + 16];
    const struct mobj *o = &m.live[i];
    memset(got + o->size, 0xc3, 16);
    int r = zs_read(m.pool, o->h, got);
    CHECKF(r == (int)o->size, "zs_read(%#" PRIx64 ") = %d, model size %u", o->h, r,
           o->size);
    if (memcmp(got, o->data, o->size) != 0) {
        size_t k = 0;
        while (got[k] == o->data[k])
            k++;
        CHECKF(0, "object %#" PRIx64 " (size %u) differs from the model at byte %zu: "
               "%#x, want %#x", o->h, o->size, k, got[k], o->data[k]);
    }
    for (size_t k = o->size; k < o->size + 16; k++)
        CHECKF(got[k] == 0xc3, "zs_read(%#" PRIx64 ", size %u) wrote past the object",
               o->h, o->size);
    CHECK_EQ(zs_size(m.pool, o->h), o->size);
}

/* The pool's counts agree with the model: checked after every operation. */
static struct zs_pool_stats check_counts(void)
{
    struct zs_pool_stats s = zt_stats(m.pool);
    CHECKF(s.objects == m.nlive, "pool counts %" PRIu64 " objects, model %zu",
           s.objects, m.nlive);
    CHECKF(s.bytes_stored == m.bytes, "pool counts %" PRIu64 " bytes, model %" PRIu64,
           s.bytes_stored, m.bytes);
    CHECKF(s.mem_used == s.pages * ZT_PAGE + s.metadata_bytes, "mem_used %" PRIu64
           " != %" PRIu64 " pages + %" PRIu64 " metadata", s.mem_used, s.pages,
           s.metadata_bytes);
    return s;
}

static void check_all(void)
{
    for (size_t i = 0; i < m.nlive; i++)
        check_obj(i);
    for (size_t i = 0; i < m.nevicted; i++)
        if (!u64map_find(&m.index, m.evicted[i].h))
            CHECKF(zs_size(m.pool, m.evicted[i].h) == -ESTALE, "evicted handle %#"
                   PRIx64 " is live again", m.evicted[i].h);
    struct zs_pool_stats s = zt_check_consistent(m.pool);
    CHECK_EQU(s.objects, m.nlive);
    CHECK_EQU(s.bytes_stored, m.bytes);
}

static void remember_stale(uint64_t h)
{
    m.stale[m.nstale++ % STALE_RING] = h;
}

/* Take live[i] out of the model; returns its data (the caller owns it). */
static unsigned char *model_remove(size_t i)
{
    struct mobj o = m.live[i];
    CHECK(u64map_del(&m.index, o.h));
    m.bytes -= o.size;
    if (i != --m.nlive) {
        m.live[i] = m.live[m.nlive];
        u64map_put(&m.index, m.live[i].h, i);
    }
    return o.data;
}

/*
 * Add an object to pool and model with the given bytes (taken over, unless
 * it returns false: in reserve mode, when the reserve ran dry).
 */
static bool add(size_t size, unsigned char *data)
{
    m.what = "alloc";
    uint64_t h = zs_malloc(m.pool, size);
    m.what_h = h;
    if (!h && m.reserve && errno == ENOMEM) {
        /* A miss changes nothing: check_counts() after the operation says so. */
        m.n_miss++;
        return false;
    }
    CHECKF(h != 0, "zs_malloc(%zu): %m", size);
    CHECKF(!u64map_find(&m.index, h), "zs_malloc(%zu) returned %#" PRIx64
           ", the handle of a live object", size, h);
    CHECK_EQ(zs_size(m.pool, h), size);
    CHECK_EQ(zs_write(m.pool, h, data, size), 0);
    size_t i = m.nlive++;
    m.live[i] = (struct mobj){ .h = h, .size = (uint32_t)size, .data = data };
    u64map_put(&m.index, h, i);
    m.bytes += size;
    if (m.nlive > m.max_live)
        m.max_live = m.nlive;
    check_obj(i);
    m.n_alloc++;
    return true;
}

static void op_alloc(void)
{
    size_t size = random_size();
    unsigned char *data = malloc(size);
    CHECK(data);
    rng_fill(&m.rng, data, size);
    if (!add(size, data))
        free(data);
}

/* Reserve mode: refill, as the user's thread would when told. */
static void op_refill(void)
{
    m.what = "refill";
    m.what_h = 0;
    CHECK_EQ(zs_reserve_refill(m.pool), 0);
    struct zs_reserve_stats r;
    zs_reserve_get_stats(m.pool, &r);
    CHECKF(r.available >= m.reserve, "refilled to %" PRIu64 " of %" PRIu64, r.available,
           m.reserve);
    m.n_refill++;
}

static void op_free(size_t i)
{
    uint64_t h = m.live[i].h;
    m.what = "free";
    m.what_h = h;
    zs_free(m.pool, h);
    free(model_remove(i));
    CHECK_EQ(zs_size(m.pool, h), -ESTALE);
    remember_stale(h);
    m.n_free++;
}

static void op_write(size_t i)
{
    static unsigned char buf[ZS_MAX_OBJECT_SIZE + 100];
    struct mobj *o = &m.live[i];
    m.what = "write";
    m.what_h = o->h;
    if (rng_one_in(&m.rng, 50)) {
        /* Too long: refused, nothing changes. */
        size_t len = o->size + rng_range(&m.rng, 1, 100);
        rng_fill(&m.rng, buf, len);
        int r = zs_write(m.pool, o->h, buf, len);
        CHECKF(r == -EINVAL, "zs_write(object of %u bytes, len %zu) = %d", o->size,
               len, r);
    } else {
        size_t len = rng_one_in(&m.rng, 3) ? rng_below(&m.rng, o->size + 1) : o->size;
        rng_fill(&m.rng, buf, len);
        int r = zs_write(m.pool, o->h, buf, len);
        CHECKF(r == 0, "zs_write(object of %u bytes, len %zu) = %d", o->size, len, r);
        memcpy(o->data, buf, len);
    }
    check_obj(i);
    m.n_write++;
}

static void op_read(size_t i)
{
    m.what = "read";
    m.what_h = m.live[i].h;
    check_obj(i);
    m.n_read++;
}

static void op_map(size_t i)
{
    struct mobj *o = &m.live[i];
    size_t size = 0;
    m.what = "map";
    m.what_h = o->h;
    unsigned char *p = zs_map(m.pool, o->h, rng_one_in(&m.rng, 4) ? NULL : &size);
    CHECKF(p, "zs_map(%#" PRIx64 "): %m", o->h);
    CHECKF(size == 0 || size == o->size, "zs_map gave size %zu, model %u", size, o->size);
    CHECKF(memcmp(p, o->data, o->size) == 0, "mapped object %#" PRIx64 " (size %u) "
           "differs from the model", o->h, o->size);
    if (rng_one_in(&m.rng, 2)) {
        size_t off = rng_below(&m.rng, o->size);
        size_t len = rng_range(&m.rng, 1, o->size - off);
        rng_fill(&m.rng, o->data + off, len);
        memcpy(p + off, o->data + off, len);
    }
    zs_unmap(m.pool, o->h);
    check_obj(i);
    m.n_map++;
}

/* A recently freed handle: stale, and freeing it again harms nothing. */
static void op_stale(void)
{
    if (m.nstale == 0)
        return;
    uint64_t h = m.stale[rng_below(&m.rng, m.nstale < STALE_RING ? m.nstale : STALE_RING)];
    /* Handed out again after many reuses of its slot: live, leave it. */
    if (u64map_find(&m.index, h))
        return;
    m.what = "stale";
    m.what_h = h;
    static unsigned char buf[ZS_MAX_ALLOC_SIZE];
    CHECK_EQ(zs_size(m.pool, h), -ESTALE);
    CHECK_EQ(zs_read(m.pool, h, buf), -ESTALE);
    CHECK_EQ(zs_write(m.pool, h, buf, 1), -ESTALE);
    if (rng_one_in(&m.rng, 2)) {
        uint64_t bad = zt_stats(m.pool).bad_handles;
        zs_free(m.pool, h);
        CHECK_EQU(zt_stats(m.pool).bad_handles, bad + 1);
    }
    m.n_stale++;
}

/* Bring an evicted object back into the pool under a new handle. */
static void op_swapin(void)
{
    if (m.nevicted == 0 || m.nlive == MAX_LIVE)
        return;
    size_t i = rng_below(&m.rng, m.nevicted);
    struct mobj o = m.evicted[i];
    if (!add(o.size, o.data))
        return;     /* no room in the reserve: it stays out */
    m.evicted[i] = m.evicted[--m.nevicted];
    m.n_swapin++;
}

static int evict(struct zs_pool *pool, uint64_t h, void *arg)
{
    static unsigned char buf[ZS_MAX_OBJECT_SIZE];
    (void)arg;
    m.calls++;
    if (m.fail_at && m.calls == m.fail_at)
        return -EIO;
    uint64_t i;
    CHECKF(u64map_get(&m.index, h, &i), "evict called for %#" PRIx64 ", which the "
           "model does not hold", h);
    const struct mobj *o = &m.live[i];
    int r = zs_read(pool, h, buf);
    CHECKF(r == (int)o->size, "zs_read(%#" PRIx64 ") in evict = %d, model size %u",
           h, r, o->size);
    CHECKF(memcmp(buf, o->data, o->size) == 0, "object %#" PRIx64 " (size %u) handed "
           "to evict differs from the model", h, o->size);
    uint32_t size = o->size;
    unsigned char *data = model_remove(i);
    if (m.nevicted == MAX_EVICTED) {
        /* The side store is full: forget one. */
        size_t k = rng_below(&m.rng, MAX_EVICTED);
        free(m.evicted[k].data);
        m.evicted[k] = m.evicted[--m.nevicted];
    }
    m.evicted[m.nevicted++] = (struct mobj){ .h = h, .size = size, .data = data };
    zs_free(pool, h);
    m.freed_by_evict++;
    return 0;
}

static void op_compact(void)
{
    m.what = "compact";
    m.what_h = 0;
    struct zs_pool_stats b = zt_stats(m.pool);
    int64_t r = zs_compact(m.pool);
    struct zs_pool_stats a = check_counts();
    CHECKF(r >= 0 && (uint64_t)r == b.pages - a.pages, "zs_compact() = %" PRId64
           ", pages %" PRIu64 " -> %" PRIu64, r, b.pages, a.pages);
    CHECK_EQU(a.pages_compacted, b.pages_compacted + (uint64_t)r);
    check_all();
    m.n_compact++;
    m.pages_compacted += (uint64_t)r;
}

static void op_shrink(void)
{
    m.what = "shrink";
    m.what_h = 0;
    uint64_t want = rng_range(&m.rng, 1, 32);
    bool fail = rng_one_in(&m.rng, 4);
    m.calls = 0;
    m.freed_by_evict = 0;
    m.fail_at = fail ? (unsigned)rng_range(&m.rng, 1, 40) : 0;
    struct zs_pool_stats b = zt_stats(m.pool);
    int64_t r = zs_shrink(m.pool, want);
    struct zs_pool_stats a = check_counts();
    CHECK_EQU(a.objects_evicted, b.objects_evicted + m.freed_by_evict);
    if (r == -EIO) {
        CHECKF(fail && m.calls == m.fail_at, "zs_shrink() = -EIO, but the callback "
               "did not fail");
        CHECKF(a.pages == b.pages && a.pages_evicted == b.pages_evicted,
               "zs_shrink() failed yet pages went from %" PRIu64 " to %" PRIu64,
               b.pages, a.pages);
        m.n_shrink_failed++;
    } else {
        CHECKF(r >= 0, "zs_shrink(%" PRIu64 ") = %" PRId64, want, r);
        CHECKF((uint64_t)r == b.pages - a.pages, "zs_shrink() = %" PRId64 ", pages %"
               PRIu64 " -> %" PRIu64, r, b.pages, a.pages);
        CHECK_EQU(a.pages_evicted, b.pages_evicted + (uint64_t)r);
        if (fail && m.calls == m.fail_at)
            m.n_shrink_failed++; /* failed after freeing some: the count so far */
        else
            CHECKF((uint64_t)r >= want || a.pages == 0, "zs_shrink(%" PRIu64 ") = %"
                   PRId64 " with %" PRIu64 " pages left", want, r, a.pages);
        m.pages_evicted += (uint64_t)r;
    }
    m.fail_at = 0;
    check_all();
    m.n_shrink++;
}

/* Now and then, reclaim or refill instead of an object operation: true if so. */
static bool step_reclaim(void)
{
    if (rng_one_in(&m.rng, 5000)) {
        op_compact();
        return true;
    }
    if (rng_one_in(&m.rng, 5000)) {
        op_shrink();
        return true;
    }
    if (m.reserve && rng_one_in(&m.rng, 100)) {
        op_refill();
        return true;
    }
    return false;
}

/* One operation on an object, weighted towards allocation while growing. */
static void step_object(bool grow)
{
    uint64_t r = rng_below(&m.rng, 1000);
    unsigned alloc_w = grow ? 350 : 170, free_w = grow ? 170 : 350;
    if (m.nlive == 0 || (r < alloc_w && m.nlive < MAX_LIVE)) {
        op_alloc();
        return;
    }
    size_t i = rng_below(&m.rng, m.nlive);
    r -= r < alloc_w ? 0 : alloc_w;     /* now 0..1000-alloc_w */
    if (r < free_w)
        op_free(i);
    else if ((r -= free_w) < 150)
        op_write(i);
    else if ((r -= 150) < 150)
        op_read(i);
    else if ((r -= 150) < 110)
        op_map(i);
    else if ((r -= 110) < 20)
        op_stale();
    else
        op_swapin();
}

/* Every live object compared, and a progress line. */
static void full_check(double t0)
{
    m.what = "full check";
    check_all();
    struct zs_pool_stats s = zt_stats(m.pool);
    printf("%7" PRIu64 " ops, %.1f s: %zu live, %zu evicted, %" PRIu64
           " pages, %" PRIu64 " bytes stored\n", m.op + 1, test_now() - t0,
           m.nlive, m.nevicted, s.pages, s.bytes_stored);
    fflush(stdout);
}

static void run_ops(double t0)
{
    for (m.op = 0; m.op < m.nops; m.op++) {
        bool grow = (m.op / PHASE_OPS) % 2 == 0;
        if (step_reclaim())
            continue;
        step_object(grow);
        check_counts();
        if ((m.op + 1) % FULL_CHECK_OPS == 0)
            full_check(t0);
    }
    m.what = "final check";
    check_all();
}

/* The summary, and proof that a full-length run exercised every path. */
static void report(double t0)
{
    printf("done in %.1f s: %" PRIu64 " allocs, %" PRIu64 " frees, %" PRIu64 " writes, %"
           PRIu64 " reads, %" PRIu64 " maps, %" PRIu64 " stale, %" PRIu64 " swap-ins, %"
           PRIu64 " compactions (%" PRIu64 " pages), %" PRIu64 " shrinks (%" PRIu64
           " failed by the callback, %" PRIu64 " pages); at most %zu live\n",
           test_now() - t0, m.n_alloc, m.n_free, m.n_write, m.n_read, m.n_map,
           m.n_stale, m.n_swapin, m.n_compact, m.pages_compacted, m.n_shrink,
           m.n_shrink_failed, m.pages_evicted, m.max_live);
    if (m.reserve)
        printf("reserve: %" PRIu64 " refills, %" PRIu64 " allocations missed\n", m.n_refill,
               m.n_miss);
    /* A run that never exercised a path proves nothing about it. */
    if (m.nops >= DEFAULT_OPS) {
        CHECKF(m.n_compact > 0 && m.pages_compacted > 0, "no compaction freed pages");
        CHECKF(m.n_shrink > 0 && m.pages_evicted > 0, "no shrink freed pages");
        CHECKF(m.n_swapin > 0 && m.n_stale > 0, "no swap-in or stale-handle operation");
        if (m.reserve)
            CHECKF(m.n_miss > 0 && m.n_miss < m.n_alloc / 4, "%" PRIu64 " misses in %"
                   PRIu64 " allocations: the reserve was never or always dry", m.n_miss,
                   m.n_alloc);
    }
}

/* Empty the pool: everything resident goes. */
static void teardown(void)
{
    while (m.nlive)
        op_free(m.nlive - 1);
    struct zs_pool_stats s = zt_check_consistent(m.pool);
    CHECK_EQU(s.objects, 0);
    CHECK_EQU(s.pages, 0);
    CHECK_EQU(s.zspages, 0);
    zs_destroy(m.pool);
    m.pool = NULL;
    for (size_t i = 0; i < m.nevicted; i++)
        free(m.evicted[i].data);
    u64map_free(&m.index);
}

int main(int argc, char **argv)
{
    m.seed = test_seed(argc, argv, DEFAULT_SEED);
    m.nops = argc > 2 ? strtoull(argv[2], NULL, 0)
                      : test_env_u64("UZRAM_MODEL_OPS", DEFAULT_OPS);
    rng_seed(&m.rng, m.seed);
    test_fail_hook = print_context;
    /* Under meson's 300 s, to say which operation hung, if one does. */
    test_watchdog((unsigned)test_env_u64("UZRAM_TEST_WATCHDOG", 280));
    printf("seed %#" PRIx64 ", %" PRIu64 " operations\n", m.seed, m.nops);

    static const struct zs_ops ops = { .evict = evict };
    m.pool = zs_create(&ops, NULL);
    CHECKF(m.pool, "zs_create: %m");
    m.reserve = test_env_u64("UZRAM_MODEL_RESERVE", 0);
    if (m.reserve) {
        printf("reserve mode, target %" PRIu64 " bytes\n", m.reserve);
        CHECK_EQ(zs_reserve_set(m.pool, m.reserve), 0);
        op_refill();
    }
    u64map_init(&m.index, MAX_LIVE);
    double t0 = test_now();

    run_ops(t0);
    report(t0);
    teardown();
    return 0;
}
