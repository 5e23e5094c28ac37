/* SPDX-License-Identifier: MIT */
/*
 * Once codec_ctx_new() has returned, codec_compress() and codec_decompress()
 * never allocate memory (codec.h), so a daemon serving swap can compress a
 * page when memory is short.  This program counts calls to malloc() and its
 * relatives by defining them itself, over glibc's __libc_* entry points,
 * and runs every codec at several levels through pages of every kind,
 * outputs that do not fit, and corrupt input, expecting no call.
 *
 * Sanitizers replace malloc() themselves, so under them the test skips.
 */
#include "codectest.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define CT_SANITIZED 1
#endif
#endif

#ifndef CT_SANITIZED

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);

/*
 * Atomics, though the test has one thread: the compiler takes malloc() for
 * the C library's, which touches no variable of ours, and would otherwise
 * drop "counting = true" before a malloc() as a dead store.
 */
static bool counting;
static unsigned long allocations;

static void count(void)
{
    if (__atomic_load_n(&counting, __ATOMIC_SEQ_CST))
        __atomic_add_fetch(&allocations, 1, __ATOMIC_SEQ_CST);
}

void *malloc(size_t size)
{
    count();
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    count();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    count();
    return __libc_realloc(p, size);
}

void *aligned_alloc(size_t align, size_t size)
{
    count();
    return __libc_memalign(align, size);
}

void *memalign(size_t align, size_t size);
void *memalign(size_t align, size_t size)
{
    count();
    return __libc_memalign(align, size);
}

int posix_memalign(void **ret, size_t align, size_t size)
{
    count();
    if (align < sizeof(void *) || (align & (align - 1)))
        return EINVAL;
    void *p = __libc_memalign(align, size);
    if (!p)
        return ENOMEM;
    *ret = p;
    return 0;
}

static void start_counting(void)
{
    __atomic_store_n(&allocations, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&counting, true, __ATOMIC_SEQ_CST);
}

static unsigned long stop_counting(void)
{
    __atomic_store_n(&counting, false, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&allocations, __ATOMIC_SEQ_CST);
}

/* The counters count: a check of the test itself. */
static void test_counter_works(void)
{
    start_counting();
    /* volatile: the compiler may drop a malloc() whose result is unused. */
    void *volatile p = malloc(100);
    unsigned long n = stop_counting();
    free(p);
    CHECK_EQU(n, 1);
}

/*
 * Full pages only: the promise is for inputs of max_len bytes.  Shorter ones
 * may make zstd resize its tables (codec.h).  Enough rounds to pass the 128
 * calls after which zstd would shrink tables it thought too large.
 */
static void exercise(struct codec_ctx *ctx)
{
    unsigned char page[CT_PAGE], comp[2 * CT_PAGE], out[CT_PAGE];

    for (int round = 0; round < 4; round++) {
        for (int k = 0; k < CT_KIND_MAX; k++) {
            for (size_t i = 0; i < 8; i++) {
                ct_page(k, i, page, CT_PAGE);
                ssize_t n = codec_compress(ctx, page, CT_PAGE, comp, sizeof(comp));
                CHECK(n > 0);
                CHECK_EQ(codec_decompress(ctx, comp, (size_t)n, out, CT_PAGE), CT_PAGE);
                /* Too small a buffer, then corrupt and truncated input. */
                codec_compress(ctx, page, CT_PAGE, comp, 3072);
                comp[n / 2] ^= 0x10;
                codec_decompress(ctx, comp, (size_t)n, out, CT_PAGE);
                codec_decompress(ctx, comp, (size_t)n / 2, out, CT_PAGE);
            }
        }
    }
}

static void test_no_allocation(void)
{
    const struct codec_type *t;
    char what[96];

    for (size_t c = 0; (t = codec_get(c)); c++) {
        int levels[7];
        size_t nl = ct_levels(t, levels);
        for (size_t l = 0; l < nl; l++) {
            struct codec_ctx *ctx = ct_ctx(t, levels[l], CT_PAGE);
            snprintf(what, sizeof(what), "%s level %d", codec_name(t), levels[l]);
            start_counting();
            exercise(ctx);
            unsigned long n = stop_counting();
            CHECKF(n == 0, "%s: %lu allocations", what, n);
            codec_ctx_free(ctx);
        }
    }
}

int main(void)
{
    if (ct_codec_count() == 0) {
        printf("no codec built in\n");
        return TEST_SKIP;
    }
    ct_corpus_init();
    RUN_TEST(test_counter_works);
    RUN_TEST(test_no_allocation);
    return 0;
}

#else

int main(void)
{
    printf("malloc() belongs to the sanitizer in this build\n");
    return TEST_SKIP;
}

#endif
