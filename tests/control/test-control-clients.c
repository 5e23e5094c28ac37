/* SPDX-License-Identifier: MIT */
/*
 * Many clients at once: the connection limit, clients that stall half way
 * through a line or stop reading their answers while others are served,
 * and threads hammering the server while the store is written and compacted
 * under it (run under TSan in CI).
 */
#include "ctltest.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/ioctl.h>

#define LINE 16384
/* The server's limit (control.c); the test opens more than that. */
#define MAX_CLIENTS 64
#define NCONN 100

static struct ct t;

static void test_limit(void)
{
    int fds[NCONN];
    char r[LINE];
    int ok = 0, refused = 0;

    /* Connections complete in the backlog before the server accepts them;
     * it takes them in order, so the first 64 are served. */
    for (int i = 0; i < NCONN; i++)
        fds[i] = ct_connect(&t);
    for (int i = 0; i < NCONN; i++) {
        /* A refused client may find the server gone before it writes. */
        (void)!send(fds[i], "hello 1\n", 8, MSG_NOSIGNAL);
        CHECK(ct_read_line(fds[i], r, sizeof(r)) >= 0);
        if (ct_starts(r, "ok protocol=1 ")) {
            CHECKF(i < MAX_CLIENTS, "client %d served", i);
            ok++;
        } else {
            CHECKF(ct_starts(r, "error EUSERS "), "client %d got '%s'", i, r);
            CHECK(ct_at_eof(fds[i]));
            refused++;
        }
    }
    CHECK_EQ(ok, MAX_CLIENTS);
    CHECK_EQ(refused, NCONN - MAX_CLIENTS);

    /* Every served client is still served. */
    for (int i = 0; i < MAX_CLIENTS; i++) {
        ct_ask(fds[i], "info", r, sizeof(r));
        CHECK_RESP(r, "ok name=t0 ");
    }
    /* Hang up so that the server has closed its side when we see the end:
     * then its slots are free before it accepts anyone else. */
    for (int i = 0; i < NCONN; i++) {
        if (i < MAX_CLIENTS) {
            shutdown(fds[i], SHUT_WR);
            CHECK(ct_at_eof(fds[i]));
        }
        close(fds[i]);
    }
    for (int i = 0; i < MAX_CLIENTS; i++) {
        fds[i] = ct_connect(&t);
        ct_ask(fds[i], "hello 1", r, sizeof(r));
        CHECK_RESP(r, "ok ");
    }
    for (int i = 0; i < MAX_CLIENTS; i++) {
        shutdown(fds[i], SHUT_WR);
        CHECK(ct_at_eof(fds[i]));
        close(fds[i]);
    }
}

/* deaf: sends DEAF_REQS requests at once, reading nothing until told. */
#define DEAF_REQS 20000
static int deaf_fd;
static atomic_bool deaf_sent;

static void *deaf_thread(void *arg)
{
    static const char req[] = "help\n";
    char *buf = malloc(DEAF_REQS * 5);
    (void)arg;

    CHECK(buf);
    for (int i = 0; i < DEAF_REQS; i++)
        memcpy(buf + i * 5, req, 5);
    /* Blocks once the server stops reading: 20000 answers are far more
     * than socket buffers hold.  No send timeout here: the test's watchdog
     * catches a server that never reads again. */
    struct timeval tv = { 0 };
    /* Unix sockets count what is in flight against the sender's buffer:
     * keep it small so that the kernel cannot hold all the requests. */
    int sz = 4096;
    CHECK_EQ(setsockopt(deaf_fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
    CHECK_EQ(setsockopt(deaf_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
    ct_send(deaf_fd, buf, DEAF_REQS * 5);
    atomic_store(&deaf_sent, true);
    free(buf);
    return NULL;
}

static void test_stalled(void)
{
    char r[LINE];
    int half = ct_connect(&t), deaf = ct_connect(&t), other = ct_connect(&t);
    pthread_t th;

    /* half stops in the middle of a request. */
    ct_send(half, "st", 2);
    /* deaf sends requests and does not read the answers: the server's
     * buffer towards it fills and the server must stop reading it. */
    deaf_fd = deaf;
    CHECK_EQ(pthread_create(&th, NULL, deaf_thread, NULL), 0);
    for (;;) {
        int queued = 0;
        CHECK_EQ(ioctl(deaf, FIONREAD, &queued), 0);
        if (queued >= 8192)
            break;
        sched_yield();
    }

    /* Others are served meanwhile. */
    for (int i = 0; i < 20; i++) {
        ct_ask(other, i % 2 ? "stat" : "hello 1", r, sizeof(r));
        CHECK_RESP(r, "ok ");
    }
    int fresh = ct_connect(&t);
    ct_ask(fresh, "compact", r, sizeof(r));
    CHECK_RESP(r, "ok pages_freed=");
    close(fresh);

    /* half finishes its line and gets its answer. */
    ct_send(half, "at\n", 3);
    CHECK(ct_read_line(half, r, sizeof(r)) >= 0);
    CHECK_RESP(r, "ok algorithm=");

    /* The server cannot have read all of deaf's requests: their answers
     * would not fit anywhere. */
    CHECK(!atomic_load(&deaf_sent));

    /* deaf reads after all: every answer is there, whole and in order. */
    size_t answers = 0, have = 0;
    char *buf = malloc(LINE);
    while (answers < DEAF_REQS) {
        ssize_t n = recv(deaf, buf + have, LINE - have, 0);
        CHECKF(n > 0, "recv: %s", n < 0 ? strerror(errno) : "end of file");
        have += (size_t)n;
        char *p = buf, *nl;
        while ((nl = memchr(p, '\n', have - (size_t)(p - buf)))) {
            *nl = '\0';
            CHECK_RESP(p, "ok protocol=1 verbs=");
            answers++;
            p = nl + 1;
        }
        have -= (size_t)(p - buf);
        memmove(buf, p, have);
    }
    CHECK_EQU(have, 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK(atomic_load(&deaf_sent));
    shutdown(deaf, SHUT_WR);
    CHECK(ct_at_eof(deaf));
    free(buf);

    close(half);
    close(deaf);
    close(other);
}

#define NTHREADS 6
#define ROUNDS 300

static atomic_bool writers_stop;

static void *client_thread(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    static const char *const reqs[] = { "stat", "info", "hello 1", "compact", "help",
                                        "set compact-threshold=0", "bogus" };
    char r[LINE];
    int fd = ct_connect(&t);

    for (unsigned i = 0; i < ROUNDS; i++) {
        const char *q = reqs[(i + id) % (sizeof(reqs) / sizeof(reqs[0]))];
        ct_ask(fd, q, r, sizeof(r));
        if (strcmp(q, "bogus") == 0)
            CHECKF(ct_starts(r, "error EINVAL "), "'%s' got '%s'", q, r);
        else
            CHECKF(ct_starts(r, "ok"), "'%s' got '%s'", q, r);
        /* Now and then a new connection, to exercise accept and close. */
        if (i % 50 == 49) {
            close(fd);
            fd = ct_connect(&t);
        }
    }
    close(fd);
    return NULL;
}

static void *writer_thread(void *arg)
{
    static unsigned char page[STORE_PAGE_SIZE];
    struct test_rng rng;
    (void)arg;

    rng_seed(&rng, 99);
    CHECK_EQ(store_thread_prepare(t.store), 0);
    while (!atomic_load(&writers_stop)) {
        uint64_t slot = rng_below(&rng, CT_SIZE / STORE_PAGE_SIZE);
        memset(page, (int)(slot & 0xff), sizeof(page));
        page[slot % STORE_PAGE_SIZE] ^= 0x5a;
        if (rng_one_in(&rng, 4))
            CHECK_EQ(store_discard(t.store, STORE_PAGE_SIZE, slot * STORE_PAGE_SIZE), 0);
        else
            CHECK_EQ(store_write(t.store, page, sizeof(page), slot * STORE_PAGE_SIZE), 0);
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t th[NTHREADS], w;

    CHECK_EQ(pthread_create(&w, NULL, writer_thread, NULL), 0);
    for (unsigned i = 0; i < NTHREADS; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, client_thread, (void *)(uintptr_t)i), 0);
    for (unsigned i = 0; i < NTHREADS; i++)
        CHECK_EQ(pthread_join(th[i], NULL), 0);
    atomic_store(&writers_stop, true);
    CHECK_EQ(pthread_join(w, NULL), 0);
}

int main(void)
{
    ct_setup(&t);
    RUN_TEST(test_limit);
    RUN_TEST(test_stalled);
    RUN_TEST(test_threads);
    ct_teardown(&t);
    return 0;
}
