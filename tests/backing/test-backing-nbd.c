/* SPDX-License-Identifier: MIT */
/*
 * The backing store on NBD, against real nbdkit servers on Unix sockets:
 * I/O and trim, errors the server returns (the error filter), a server
 * killed mid-run and started again (reconnect), a server that comes back
 * smaller (refused), a read-only server (refused at open), a server that
 * stops answering (every call comes back within its deadline), and threads
 * doing I/O while the server goes away and returns.  Skips (77) without
 * nbdkit.
 */
#include "backingtest.h"

#include <pthread.h>
#include <sys/wait.h>

#define MiB (1024ull * 1024)

static pid_t server_pid = -1;
static char sock[100];   /* fits sun_path */
static char pidfile[100];
static char uri[200];

static void server_stop(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        (void)waitpid(server_pid, NULL, 0);
        server_pid = -1;
    }
    if (sock[0])
        (void)unlink(sock);
}

/* nbdkit writes its pidfile once it listens. */
static bool pidfile_written(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && st.st_size > 0;
}

/*
 * Start nbdkit in the foreground on sock with the given arguments after
 * the socket option (filters, plugin, parameters), and wait until it takes
 * connections (its pidfile appears).  --exit-with-parent: a test that
 * aborts leaves no server.
 */
static void server_start(const char *const *args)
{
    CHECK(server_pid < 0);
    (void)unlink(sock);
    (void)unlink(pidfile);
    const char *argv[32] = { "nbdkit", "--exit-with-parent", "--foreground", "-U", sock,
                             "-P", pidfile };
    size_t n = 7;
    for (; *args; args++) {
        CHECK(n < 31);
        argv[n++] = *args;
    }
    argv[n] = NULL;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        execvp("nbdkit", (char *const *)argv);
        _exit(127);
    }
    server_pid = pid;
    /* Readiness, not timing: 30 s is far more than nbdkit ever needs. */
    for (int i = 0; i < 3000; i++) {
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        CHECKF(w == 0, "nbdkit exited before it listened (status 0x%x)", status);
        if (pidfile_written(pidfile))
            return;
        usleep(10000);
    }
    CHECKF(0, "nbdkit did not listen on %s within 30 s", sock);
}

#define START(...) server_start((const char *const[]){ __VA_ARGS__, NULL })

/* More than the backing store's one second between reconnect tries. */
static void wait_reconnect_interval(void)
{
    usleep(1100 * 1000);
}

static void test_roundtrip_trim(void)
{
    START("memory", "16M");
    /* The smaller of the two sizes. */
    struct backing *b = bt_open(uri, 64 * MiB);
    CHECK_EQU(backing_blocks(b), 4096);
    backing_close(b);
    b = bt_open(uri, 8 * MiB);
    CHECK_EQU(backing_blocks(b), 2048);
    CHECK(strcmp(backing_spec(b), uri) == 0);

    unsigned char in[4096], out[4096];
    uint64_t blk;
    for (uint64_t i = 0; i < 300; i++) {
        CHECK_EQ(backing_alloc(b, &blk), 0);
        CHECK_EQU(blk, i);
        size_t len = i < 4 ? (size_t[]){ 1, 2, 4095, 4096 }[i] : 1 + (size_t)(i * 397 % 4096);
        test_pattern(in, len, blk, len);
        CHECK_EQ(backing_write(b, blk, in, len), 0);
        memset(out, 0xa5, sizeof(out));
        CHECK_EQ(backing_read(b, blk, out, len), 0);
        CHECKF(memcmp(in, out, len) == 0, "block %ju, %zu bytes", (uintmax_t)blk, len);
        for (size_t k = len; k < sizeof(out); k++)
            CHECK_EQ(out[k], 0xa5);
    }
    CHECK_EQ(backing_flush(b), 0);

    /* Trim: the block is gone, and what it held no longer opens. */
    memset(in, 0xff, sizeof(in));
    CHECK_EQ(backing_write(b, 10, in, sizeof(in)), 0);
    backing_free(b, 10, true);
    CHECK_EQ(backing_read(b, 10, out, sizeof(out)), -EBADMSG);
    CHECK_EQ(backing_alloc(b, &blk), 0);
    CHECK_EQU(blk, 300);

    struct backing_stats s = bt_stats(b);
    CHECK(s.connected);
    CHECK_EQU(s.blocks_used, 300);
    CHECK_EQU(s.writes, 301);
    CHECK_EQU(s.reads, 300);
    CHECK_EQU(s.read_errors, 1);
    CHECK_EQU(s.bad_seals, 1);
    CHECK_EQU(s.write_errors, 0);
    CHECK_EQU(s.reconnects, 0);
    CHECK_EQ(s.last_error, -EBADMSG);
    CHECK_EQ(backing_read(b, 2048, out, 1), -EINVAL);
    backing_close(b);
    server_stop();
}

/*
 * Errors from a server that stays up: returned as they are, counted, and
 * the connection kept.  The error filter fails writes only while the
 * trigger file exists.
 */
static void test_server_errors(void)
{
    const char *trigger = BT_PATH("fail-writes");
    char file_arg[160];
    snprintf(file_arg, sizeof(file_arg), "error-pwrite-file=%s", trigger);
    START("--filter=error", "memory", "16M", "error-pwrite=EIO", "error-pwrite-rate=100%",
          file_arg);
    struct backing *b = bt_open(uri, 16 * MiB);
    unsigned char in[4096], out[4096];
    test_pattern(in, sizeof(in), 1, 1);
    CHECK_EQ(backing_write(b, 1, in, sizeof(in)), 0);

    int fd = open(trigger, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    close(fd);
    unsigned char junk[4096];
    memset(junk, 0x11, sizeof(junk));
    CHECK_EQ(backing_write(b, 1, junk, sizeof(junk)), -EIO);
    CHECK_EQ(backing_write(b, 2, junk, 100), -EIO);
    struct backing_stats s = bt_stats(b);
    CHECK_EQU(s.write_errors, 2);
    CHECK_EQ(s.last_error, -EIO);
    CHECK(s.connected);
    /* Reads still work, and the failed write changed nothing. */
    CHECK_EQ(backing_read(b, 1, out, sizeof(out)), 0);
    CHECK(memcmp(in, out, sizeof(out)) == 0);

    CHECK_EQ(unlink(trigger), 0);
    CHECK_EQ(backing_write(b, 2, in, sizeof(in)), 0);
    CHECK_EQ(backing_read(b, 2, out, sizeof(out)), 0);
    CHECK(memcmp(in, out, sizeof(out)) == 0);
    s = bt_stats(b);
    CHECK_EQU(s.write_errors, 2);
    CHECK_EQU(s.read_errors, 0);
    CHECK_EQU(s.reconnects, 0);
    backing_close(b);
    server_stop();

    /* ENOSPC from the server comes through as ENOSPC. */
    START("--filter=error", "memory", "16M", "error-pwrite=ENOSPC", "error-pwrite-rate=100%");
    b = bt_open(uri, 16 * MiB);
    CHECK_EQ(backing_write(b, 0, in, 512), -ENOSPC);
    CHECK_EQ(bt_stats(b).last_error, -ENOSPC);
    CHECK(bt_stats(b).connected);
    backing_close(b);
    server_stop();
}

static void test_kill_and_restart(void)
{
    START("memory", "16M");
    struct backing *b = bt_open(uri, 16 * MiB);
    unsigned char in[4096], out[4096];
    test_pattern(in, sizeof(in), 0, 0);
    CHECK_EQ(backing_write(b, 0, in, sizeof(in)), 0);

    server_stop();
    /* The call that finds the server gone, then those after it. */
    CHECK_EQ(backing_write(b, 1, in, sizeof(in)), -ENOTCONN);
    struct backing_stats s = bt_stats(b);
    CHECK(!s.connected);
    CHECK_EQ(s.last_error, -ENOTCONN);
    CHECK_EQ(backing_read(b, 0, out, sizeof(out)), -ENOTCONN);
    CHECK_EQ(backing_flush(b), -ENOTCONN);
    wait_reconnect_interval();
    /* A reconnect try while nobody listens: still away. */
    CHECK_EQ(backing_read(b, 0, out, sizeof(out)), -ENOTCONN);
    s = bt_stats(b);
    CHECK(!s.connected);
    CHECK_EQU(s.reconnects, 0);
    CHECK_EQU(s.write_errors, 2);   /* the write and the flush */
    CHECK_EQU(s.read_errors, 2);
    backing_free(b, 0, true);       /* a trim while away is dropped, quietly */

    START("memory", "16M");
    wait_reconnect_interval();
    CHECK_EQ(backing_write(b, 1, in, sizeof(in)), 0);
    s = bt_stats(b);
    CHECK(s.connected);
    CHECK_EQU(s.reconnects, 1);
    CHECK_EQ(backing_read(b, 1, out, sizeof(out)), 0);
    CHECK(memcmp(in, out, sizeof(out)) == 0);
    /* A fresh server: block 0 is gone (and freed), and does not open. */
    CHECK_EQ(backing_read(b, 0, out, sizeof(out)), -EBADMSG);

    /* Back smaller than before: refused, stays away. */
    server_stop();
    START("memory", "8M");
    CHECK_EQ(backing_read(b, 1, out, 1), -ENOTCONN);
    wait_reconnect_interval();
    CHECK_EQ(backing_read(b, 1, out, 1), -ENOTCONN);
    CHECK(!bt_stats(b).connected);
    CHECK_EQU(bt_stats(b).reconnects, 1);

    /* Back read-only: refused too. */
    server_stop();
    START("-r", "memory", "16M");
    wait_reconnect_interval();
    CHECK_EQ(backing_read(b, 1, out, 1), -ENOTCONN);
    CHECK_EQU(bt_stats(b).reconnects, 1);

    /* Back as it was (larger is fine). */
    server_stop();
    START("memory", "32M");
    wait_reconnect_interval();
    CHECK_EQ(backing_write(b, 3, in, 10), 0);
    CHECK_EQU(bt_stats(b).reconnects, 2);
    CHECK(bt_stats(b).connected);
    backing_close(b);
    server_stop();
}

/*
 * A server that stops answering: nbdkit stopped with SIGSTOP keeps its
 * sockets, the kernel still queues new connections on them, and nothing
 * replies, as a hung or wedged server's would not.  Every call must come
 * back within its deadline (HANG_TIMEOUT_MS, at most about twice it per
 * call, backing.h); HANG_BOUND_S is a generous bound on that, to name the
 * call that hung, not a measure of speed.
 */
#define HANG_TIMEOUT_MS 1000u
#define HANG_BOUND_S (2 * HANG_TIMEOUT_MS / 1000 + 20)

/*
 * Stop (SIGSTOP) or continue (SIGCONT) the server, and wait until it has:
 * kill() returns before the signal takes effect.
 */
static void server_signal(int sig)
{
    CHECK(server_pid > 0);
    CHECK_EQ(kill(server_pid, sig), 0);
    int status;
    CHECK_EQ(waitpid(server_pid, &status, sig == SIGSTOP ? WUNTRACED : WCONTINUED), server_pid);
    CHECKF(sig == SIGSTOP ? WIFSTOPPED(status) : WIFCONTINUED(status), "nbdkit status 0x%x",
           status);
}

/* Run call, and check that it came back within HANG_BOUND_S. */
#define WITHIN_BOUND(call)                                                                \
    ({                                                                                    \
        double t0_ = test_now();                                                          \
        __auto_type r_ = (call);                                                          \
        double dt_ = test_now() - t0_;                                                    \
        CHECKF(dt_ < HANG_BOUND_S, "%s took %.1f s with the server stopped", #call, dt_); \
        r_;                                                                               \
    })

struct hang_arg {
    struct backing *b;
    uint64_t blk;
    int r;
};

static void *hang_reader(void *p)
{
    struct hang_arg *a = p;
    unsigned char out[4096];
    a->r = WITHIN_BOUND(backing_read(a->b, a->blk, out, sizeof(out)));
    return NULL;
}

static void test_server_hangs(void)
{
    char err[256] = "";
    START("memory", "16M");
    struct backing *b = backing_open(uri, 16 * MiB, HANG_TIMEOUT_MS, 0, err, sizeof(err));
    CHECKF(b != NULL, "backing_open: %s", err);
    unsigned char in[4][4096], out[4096];
    for (uint64_t i = 0; i < 4; i++) {
        test_pattern(in[i], sizeof(in[i]), i, 7);
        CHECK_EQ(backing_write(b, i, in[i], sizeof(in[i])), 0);
    }

    /* The request that meets the silence times out, and drops the connection. */
    server_signal(SIGSTOP);
    CHECK_EQ(WITHIN_BOUND(backing_read(b, 0, out, sizeof(out))), -ETIMEDOUT);
    struct backing_stats s = bt_stats(b);
    CHECK(!s.connected);
    CHECK_EQ(s.last_error, -ETIMEDOUT);
    CHECK_EQU(s.read_errors, 1);
    /* Those right after fail at once: no reconnect within the second. */
    CHECK_EQ(backing_write(b, 4, in[0], sizeof(in[0])), -ENOTCONN);
    CHECK_EQ(backing_read(b, 1, out, sizeof(out)), -ENOTCONN);
    /* A reconnect the kernel accepts but nobody answers has its deadline too. */
    wait_reconnect_interval();
    CHECK_EQ(WITHIN_BOUND(backing_read(b, 1, out, sizeof(out))), -ENOTCONN);
    CHECK_EQU(bt_stats(b).reconnects, 0);

    /* Back: reconnected, and what it held is there. */
    server_signal(SIGCONT);
    wait_reconnect_interval();
    CHECK_EQ(backing_read(b, 0, out, sizeof(out)), 0);
    CHECK(memcmp(in[0], out, sizeof(out)) == 0);
    s = bt_stats(b);
    CHECK(s.connected);
    CHECK_EQU(s.reconnects, 1);

    /*
     * Threads queued behind a request that hangs: each comes back, timed
     * out itself or failed at once when the one ahead timed out.
     */
    server_signal(SIGSTOP);
    pthread_t th[4];
    struct hang_arg args[4];
    for (unsigned i = 0; i < 4; i++) {
        args[i] = (struct hang_arg){ .b = b, .blk = i };
        CHECK_EQ(pthread_create(&th[i], NULL, hang_reader, &args[i]), 0);
    }
    unsigned timed_out = 0;
    for (unsigned i = 0; i < 4; i++) {
        CHECK_EQ(pthread_join(th[i], NULL), 0);
        CHECKF(args[i].r == -ETIMEDOUT || args[i].r == -ENOTCONN, "reader %u: %d", i,
               args[i].r);
        timed_out += args[i].r == -ETIMEDOUT;
    }
    CHECK(timed_out >= 1);
    CHECK(!bt_stats(b).connected);

    /* Back again; then closing while it is stopped, with a connection up. */
    server_signal(SIGCONT);
    wait_reconnect_interval();
    CHECK_EQ(backing_read(b, 3, out, sizeof(out)), 0);
    CHECK(memcmp(in[3], out, sizeof(out)) == 0);
    CHECK_EQU(bt_stats(b).reconnects, 2);
    server_signal(SIGSTOP);
    WITHIN_BOUND((backing_close(b), 0));

    /* Opening fails in time too, with the reason. */
    errno = 0;
    b = WITHIN_BOUND(backing_open(uri, 16 * MiB, HANG_TIMEOUT_MS, 0, err, sizeof(err)));
    CHECK(b == NULL);
    CHECK_EQ(errno, ETIMEDOUT);
    printf("   stopped server: %s\n", err);
    server_signal(SIGCONT);
    server_stop();
}

static void test_refused_at_open(void)
{
    char err[256] = "";
    START("-r", "memory", "16M");
    errno = 0;
    CHECK(backing_open(uri, 16 * MiB, BACKING_TIMEOUT_DEFAULT_MS, 0, err, sizeof(err)) == NULL);
    CHECK_EQ(errno, ENOTSUP);
    printf("   read-only: %s\n", err);
    CHECK(err[0] != '\0');
    server_stop();

    /* Nobody listening. */
    errno = 0;
    err[0] = '\0';
    CHECK(backing_open(uri, 16 * MiB, BACKING_TIMEOUT_DEFAULT_MS, 0, err, sizeof(err)) == NULL);
    CHECK(errno != 0);
    printf("   no server: %s (%s)\n", err, strerrorname_np(errno) ?: "?");
    CHECK(err[0] != '\0');
    CHECK(strstr(err, sock) == NULL);

    /* An export under one block. */
    START("memory", "1000");
    errno = 0;
    CHECK(backing_open(uri, 16 * MiB, BACKING_TIMEOUT_DEFAULT_MS, 0, err, sizeof(err)) == NULL);
    CHECK_EQ(errno, EINVAL);
    server_stop();
}

/*
 * Threads keep reading and writing their own blocks while the server is
 * killed and started again: under the sanitizers this is what would show
 * a handle used after it was closed.  Each thread checks its data whenever
 * a read succeeds after a write that succeeded on the same connection
 * generation.
 */
#define NT 4

struct nt_arg {
    struct backing *b;
    unsigned id;
    uint64_t ok, failed;
};

static int nt_stop;

static void *nt_worker(void *p)
{
    struct nt_arg *a = p;
    unsigned char in[512], out[512];
    uint64_t blk = a->id, v = 0;
    while (!__atomic_load_n(&nt_stop, __ATOMIC_ACQUIRE)) {
        v++;
        test_pattern(in, sizeof(in), blk, v);
        int r = backing_write(a->b, blk, in, sizeof(in));
        CHECKF(r == 0 || r == -ENOTCONN, "write: %d", r);
        if (r == 0)
            r = backing_read(a->b, blk, out, sizeof(out));
        CHECKF(r == 0 || r == -ENOTCONN, "read: %d", r);
        /* A server that restarted between the two reads zeros: both fine. */
        if (r == 0)
            CHECK(memcmp(in, out, sizeof(out)) == 0 || out[0] == 0);
        if (r == 0)
            a->ok++;
        else
            a->failed++;
        if (r != 0)
            usleep(1000);
    }
    return NULL;
}

static void test_threads_across_restart(void)
{
    START("memory", "16M");
    struct backing *b = bt_open(uri, 16 * MiB);
    pthread_t th[NT];
    struct nt_arg args[NT];
    __atomic_store_n(&nt_stop, 0, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < NT; i++) {
        args[i] = (struct nt_arg){ .b = b, .id = i };
        CHECK_EQ(pthread_create(&th[i], NULL, nt_worker, &args[i]), 0);
    }
    usleep(200 * 1000);
    for (int round = 0; round < 2; round++) {
        server_stop();
        usleep(300 * 1000);
        START("memory", "16M");
        /* Readiness: until the threads' calls have reconnected. */
        for (int i = 0; i < 3000 && bt_stats(b).reconnects < (uint64_t)round + 1; i++)
            usleep(10000);
        CHECK_EQU(bt_stats(b).reconnects, round + 1);
        usleep(200 * 1000);
    }
    __atomic_store_n(&nt_stop, 1, __ATOMIC_RELEASE);
    uint64_t ok = 0, failed = 0;
    for (unsigned i = 0; i < NT; i++) {
        CHECK_EQ(pthread_join(th[i], NULL), 0);
        ok += args[i].ok;
        failed += args[i].failed;
    }
    printf("   %ju calls succeeded, %ju failed with ENOTCONN\n", (uintmax_t)ok, (uintmax_t)failed);
    CHECK(ok > 0 && failed > 0);
    CHECK(bt_stats(b).connected);
    backing_close(b);
    server_stop();
}

int main(void)
{
    if (system("nbdkit --version >/dev/null 2>&1") != 0) {
        printf("SKIP nbdkit is not installed\n");
        return TEST_SKIP;
    }
    bt_make_dir();
    bt_extra_cleanup = server_stop;
    snprintf(sock, sizeof(sock), "%s/nbd.sock", bt_dir);
    snprintf(pidfile, sizeof(pidfile), "%s/nbdkit.pid", bt_dir);
    snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock);
    RUN_TEST(test_roundtrip_trim);
    RUN_TEST(test_server_errors);
    RUN_TEST(test_kill_and_restart);
    RUN_TEST(test_refused_at_open);
    RUN_TEST(test_server_hangs);
    RUN_TEST(test_threads_across_restart);
    return 0;
}
