/* SPDX-License-Identifier: MIT */
/*
 * Threads that each own a context compress and decompress at the same time
 * and get the same bytes as one thread alone: for each codec, two threads at
 * the default level; then one thread per codec and level (lowest, default,
 * highest) all at once.  CI runs this under ThreadSanitizer, which would
 * report any state the backends share behind the contexts' backs.
 *
 * UZRAM_CODEC_ROUNDS sets the number of passes each thread makes over its
 * pages.
 */
#include <pthread.h>

#include "codectest.h"

#define NPAGES 32
#define MAX_WORKERS 16

struct job {
    const struct codec_type *type;
    int level;
    /* Reference output of one thread alone, per page. */
    unsigned char ref[NPAGES][2 * CT_PAGE];
    size_t ref_len[NPAGES];
};

struct worker {
    pthread_t thread;
    struct job *job;
    unsigned start;              /* first page; workers start apart */
    pthread_barrier_t *barrier;
    unsigned long pages_done;
};

static unsigned char pages[NPAGES][CT_PAGE];
static uint64_t rounds;

static void make_pages(void)
{
    for (size_t i = 0; i < NPAGES; i++)
        ct_page((enum ct_kind)(i % CT_KIND_MAX), i, pages[i], CT_PAGE);
}

static struct job *job_new(const struct codec_type *type, int level)
{
    struct job *job = calloc(1, sizeof(*job));
    CHECK(job);
    job->type = type;
    job->level = level;
    struct codec_ctx *ctx = ct_ctx(type, level, CT_PAGE);
    for (size_t i = 0; i < NPAGES; i++) {
        ssize_t n = codec_compress(ctx, pages[i], CT_PAGE, job->ref[i], sizeof(job->ref[i]));
        CHECK(n > 0);
        job->ref_len[i] = (size_t)n;
    }
    codec_ctx_free(ctx);
    return job;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    struct job *job = w->job;
    unsigned char comp[2 * CT_PAGE], out[CT_PAGE];

    /* The context is made in the thread that owns it, as the store will. */
    struct codec_ctx *ctx = ct_ctx(job->type, job->level, CT_PAGE);
    pthread_barrier_wait(w->barrier);
    for (uint64_t r = 0; r < rounds; r++) {
        for (unsigned j = 0; j < NPAGES; j++) {
            unsigned i = (w->start + j) % NPAGES;
            ssize_t n = codec_compress(ctx, pages[i], CT_PAGE, comp, sizeof(comp));
            CHECKF(n == (ssize_t)job->ref_len[i] && memcmp(comp, job->ref[i], (size_t)n) == 0,
                   "%s level %d, page %u: %zd bytes, %zu alone", codec_name(job->type),
                   job->level, i, n, job->ref_len[i]);
            /* Decode the reference, not our own output: shares nothing. */
            memset(out, 0, sizeof(out));
            CHECK_EQ(codec_decompress(ctx, job->ref[i], job->ref_len[i], out, CT_PAGE), CT_PAGE);
            CHECKF(memcmp(out, pages[i], CT_PAGE) == 0, "%s level %d, page %u differs",
                   codec_name(job->type), job->level, i);
            w->pages_done++;
        }
    }
    codec_ctx_free(ctx);
    return NULL;
}

static void run(struct job **jobs, size_t njobs, size_t per_job)
{
    struct worker workers[MAX_WORKERS];
    pthread_barrier_t barrier;
    size_t n = njobs * per_job;

    CHECK(n <= MAX_WORKERS);
    CHECK(pthread_barrier_init(&barrier, NULL, (unsigned)n) == 0);
    for (size_t i = 0; i < n; i++) {
        workers[i] = (struct worker){
            .job = jobs[i / per_job],
            .start = (unsigned)(i * NPAGES / per_job % NPAGES),
            .barrier = &barrier,
        };
        CHECK(pthread_create(&workers[i].thread, NULL, work, &workers[i]) == 0);
    }
    for (size_t i = 0; i < n; i++) {
        CHECK(pthread_join(workers[i].thread, NULL) == 0);
        CHECK_EQU(workers[i].pages_done, rounds * NPAGES);
    }
    pthread_barrier_destroy(&barrier);
}

static void test_two_threads_per_codec(void)
{
    const struct codec_type *t;
    for (size_t c = 0; (t = codec_get(c)); c++) {
        int def;
        codec_level_range(t, NULL, NULL, &def);
        struct job *job = job_new(t, def);
        run(&job, 1, 2);
        printf("  %s: 2 threads x %" PRIu64 " pages\n", codec_name(t), rounds * NPAGES);
        free(job);
    }
}

static void test_all_codecs_at_once(void)
{
    struct job *jobs[MAX_WORKERS];
    size_t njobs = 0;
    const struct codec_type *t;

    for (size_t c = 0; (t = codec_get(c)); c++) {
        int min, max, def;
        codec_level_range(t, &min, &max, &def);
        int levels[] = { min, def, max };
        for (size_t l = 0; l < 3 && njobs < MAX_WORKERS; l++)
            jobs[njobs++] = job_new(t, levels[l]);
    }
    run(jobs, njobs, 1);
    printf("  %zu threads, one per codec and level\n", njobs);
    for (size_t i = 0; i < njobs; i++)
        free(jobs[i]);
}

int main(void)
{
    if (ct_codec_count() == 0) {
        printf("no codec built in\n");
        return TEST_SKIP;
    }
    rounds = test_env_u64("UZRAM_CODEC_ROUNDS", 100);
    ct_corpus_init();
    make_pages();
    RUN_TEST(test_two_threads_per_codec);
    RUN_TEST(test_all_codecs_at_once);
    return 0;
}
