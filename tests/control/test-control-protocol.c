/* SPDX-License-Identifier: MIT */
/*
 * The control protocol over a real socket: every verb, every malformed
 * request we can think of, and the socket file's life (mode, stale sockets,
 * live ones).  Statistics are checked against store_get_stats() after data
 * was written through the store API, with nothing else running, so they
 * must be equal, not just plausible.  As root, a client of another uid
 * (the socket's group) checks the read-only role against every verb.
 */
#include "ctltest.h"

#include <grp.h>
#include <sys/wait.h>

#include "config.h"
#include "proto.h"

#define LINE 16384

static struct ct t;

static void test_hello(void)
{
    char r[LINE];
    int fd = ct_connect(&t);

    ct_ask(fd, "hello 1", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    CHECK_EQU(ct_u64(r, "protocol"), 1);
    char v[64];
    CHECK(ct_value(r, "version", v, sizeof(v)));
    CHECK(strcmp(v, UZRAM_VERSION) == 0);
    CHECK(ct_value(r, "server", v, sizeof(v)) && strcmp(v, "uzramd") == 0);
    CHECK(ct_value(r, "name", v, sizeof(v)) && strcmp(v, "t0") == 0);

    ct_ask(fd, "hello 2", r, sizeof(r));
    CHECK_RESP(r, "error EPROTONOSUPPORT ");
    /* A client that speaks several versions gets the one we share. */
    ct_ask(fd, "hello 3 2 1", r, sizeof(r));
    CHECK_RESP(r, "ok protocol=1 ");
    ct_ask(fd, "hello", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL ");
    ct_ask(fd, "hello one", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL ");
    ct_ask(fd, "hello 99999999999999999999999", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL ");
    /* Still serving after errors. */
    ct_ask(fd, "hello 1", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    close(fd);
}

static void test_info(void)
{
    char r[LINE], v[256];
    int fd = ct_connect(&t);

    ct_ask(fd, "info", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    CHECK(ct_value(r, "name", v, sizeof(v)) && strcmp(v, "t0") == 0);
    CHECK(ct_value(r, "algorithm", v, sizeof(v)) && strcmp(v, "lz4") == 0);
    CHECK_EQU(ct_u64(r, "level"), 1);
    CHECK_EQU(ct_u64(r, "disksize"), CT_SIZE);
    CHECK_EQU(ct_u64(r, "pid"), (uint64_t)getpid());
    /* The space and the '%' of the path are encoded. */
    CHECK(ct_value(r, "fuse", v, sizeof(v)));
    CHECKF(strcmp(v, "/tmp/a%20file%25") == 0, "fuse=%s", v);
    CHECK(!ct_value(r, "nbd", v, sizeof(v)));
    /* Where the daemon logs, encoded as any path is. */
    CHECK(ct_value(r, "log", v, sizeof(v)));
    CHECKF(strcmp(v, "/var/log/t%200.log") == 0, "log=%s", v);
    ct_ask(fd, "info extra", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL ");
    close(fd);
}

static void check_stats_equal(const char *r)
{
    struct store_stats st;

    store_get_stats(t.store, &st);
#define EQ(f) CHECK_EQU(ct_u64(r, #f), st.f)
    EQ(disksize);
    EQ(orig_data_size);
    EQ(compr_data_size);
    EQ(mem_used_total);
    EQ(mem_limit);
    EQ(mem_used_max);
    EQ(same_pages);
    EQ(pages_compacted);
    EQ(huge_pages);
    EQ(huge_pages_since);
    EQ(failed_reads);
    EQ(failed_writes);
    EQ(invalid_io);
    EQ(notify_free);
    EQ(read_reqs);
    EQ(write_reqs);
    EQ(discard_reqs);
    EQ(flush_reqs);
    EQ(read_bytes);
    EQ(write_bytes);
    EQ(discard_bytes);
    EQ(compactions);
    EQ(compact_threshold_pct);
#undef EQ
}

static void test_stat(void)
{
    static unsigned char page[STORE_PAGE_SIZE];
    struct test_rng rng;
    char r[LINE], v[64];
    int fd = ct_connect(&t);

    ct_ask(fd, "stat", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    CHECK(ct_value(r, "algorithm", v, sizeof(v)) && strcmp(v, "lz4") == 0);
    CHECK(ct_value(r, "log", v, sizeof(v)) && strcmp(v, "/var/log/t%200.log") == 0);
    check_stats_equal(r);
    CHECK_EQU(ct_u64(r, "orig_data_size"), 0);

    /* Same-filled, compressible and incompressible pages, then a discard,
     * a read and an out-of-range request. */
    rng_seed(&rng, 42);
    memset(page, 0, sizeof(page));
    CHECK_EQ(store_write(t.store, page, sizeof(page), 0), 0);
    for (unsigned i = 1; i < 40; i++) {
        for (size_t j = 0; j < sizeof(page); j++)
            page[j] = (unsigned char)(j / 32 + i);
        CHECK_EQ(store_write(t.store, page, sizeof(page), (uint64_t)i * sizeof(page)), 0);
    }
    rng_fill(&rng, page, sizeof(page));
    CHECK_EQ(store_write(t.store, page, sizeof(page), 100 * sizeof(page)), 0);
    CHECK_EQ(store_discard(t.store, 2 * sizeof(page), 2 * sizeof(page)), 0);
    CHECK_EQ(store_read(t.store, page, sizeof(page), 0), 0);
    CHECK_EQ(store_read(t.store, page, sizeof(page), CT_SIZE), -EINVAL);

    ct_ask(fd, "stat", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    check_stats_equal(r);
    CHECK_EQU(ct_u64(r, "orig_data_size"), 39 * STORE_PAGE_SIZE);
    CHECK(ct_u64(r, "same_pages") >= 1);
    CHECK_EQU(ct_u64(r, "huge_pages"), 1);
    CHECK_EQU(ct_u64(r, "invalid_io"), 1);
    CHECK_EQU(ct_u64(r, "notify_free"), 2);

    ct_ask(fd, "stat now", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL ");
    close(fd);
}

static void test_compact(void)
{
    static unsigned char page[STORE_PAGE_SIZE];
    struct store_stats before, after;
    char r[LINE];
    int fd = ct_connect(&t);

    /* Fragment the pool: fill, then discard every other page. */
    for (unsigned i = 0; i < 512; i++) {
        for (size_t j = 0; j < sizeof(page); j++)
            page[j] = (unsigned char)((j * (i + 7)) / 512);
        CHECK_EQ(store_write(t.store, page, sizeof(page), (uint64_t)i * sizeof(page)), 0);
    }
    for (unsigned i = 0; i < 512; i += 2)
        CHECK_EQ(store_discard(t.store, sizeof(page), (uint64_t)i * sizeof(page)), 0);

    store_get_stats(t.store, &before);
    ct_ask(fd, "compact", r, sizeof(r));
    CHECK_RESP(r, "ok pages_freed=");
    store_get_stats(t.store, &after);
    uint64_t freed = ct_u64(r, "pages_freed");
    CHECK_EQU(after.compactions, before.compactions + 1);
    CHECK_EQU(after.pages_compacted - before.pages_compacted, freed);
    CHECK(after.mem_used_total <= before.mem_used_total);

    ct_ask(fd, "compact all", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL ");
    close(fd);
}

static void test_set(void)
{
    struct store_stats st;
    char r[LINE];
    int fd = ct_connect(&t);

    ct_ask(fd, "set mem-limit=64M", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    CHECK_EQU(ct_u64(r, "mem_limit"), 64u << 20);
    store_get_stats(t.store, &st);
    CHECK_EQU(st.mem_limit, 64u << 20);
    ct_ask(fd, "set mem_limit=4096", r, sizeof(r));
    CHECK_RESP(r, "ok mem_limit=4096 ");
    ct_ask(fd, "set mem-limit=0", r, sizeof(r));
    CHECK_RESP(r, "ok mem_limit=0 ");

    static const char *const bad[] = {
        "set mem-limit=x", "set mem-limit=", "set mem-limit=-1", "set mem-limit=1Q",
        "set mem-limit=99999999999999999999", "set mem-limit=%zz", "set mem-limit",
        "set", "set mem-limit=1 compact-threshold=2", "set =5", "set foo=1",
        "set compact-threshold=101", "set compact-threshold=x", "set compact-threshold=",
        "set mem-used-max=5", "set mem-used-max=",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ct_ask(fd, bad[i], r, sizeof(r));
        CHECKF(ct_starts(r, "error EINVAL "), "'%s' got '%s'", bad[i], r);
    }
    store_get_stats(t.store, &st);
    CHECK_EQU(st.mem_limit, 0);

    /*
     * A value that decodes to a newline or another control byte is quoted
     * in the error: the response must stay one printable line, or every
     * later answer on the connection is off by one.
     */
    static const char *const escaped[] = {
        "set mem-limit=1%0Aok", "set mem-limit=%0D%0A", "set compact-threshold=%1b[2J",
        "set mem-limit=%FF%FE",
    };
    for (size_t i = 0; i < sizeof(escaped) / sizeof(escaped[0]); i++) {
        ct_ask(fd, escaped[i], r, sizeof(r));
        CHECKF(ct_starts(r, "error EINVAL "), "'%s' got '%s'", escaped[i], r);
        for (const char *p = r; *p; p++)
            CHECKF(*p >= ' ' && *p < 0x7f, "'%s' got byte %#x in '%s'", escaped[i],
                   (unsigned char)*p, r);
        ct_ask(fd, "help", r, sizeof(r));
        CHECKF(ct_starts(r, "ok protocol=1 "), "after '%s', help got '%s'", escaped[i], r);
    }

    ct_ask(fd, "set compact-threshold=25", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    CHECK_EQU(ct_u64(r, "compact_threshold_pct"), 25);
    store_get_stats(t.store, &st);
    CHECK_EQU(st.compact_threshold_pct, 25);
    ct_ask(fd, "set compact-threshold=0", r, sizeof(r));
    CHECK_RESP(r, "ok ");

    ct_ask(fd, "set mem-used-max=0", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    store_get_stats(t.store, &st);
    CHECK_EQU(ct_u64(r, "mem_used_max"), st.mem_used_max);
    close(fd);
}

static void test_malformed(void)
{
    char r[LINE];
    int fd = ct_connect(&t);

    ct_ask(fd, "frobnicate", r, sizeof(r));
    CHECKF(strcmp(r, "error EINVAL unknown request 'frobnicate'") == 0, "got '%s'", r);
    ct_ask(fd, "", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL ");
    ct_ask(fd, "   ", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL ");
    ct_ask(fd, "STAT", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL ");
    ct_ask(fd, "help me", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL ");
    ct_ask(fd, "a b c d e f g h i j k l m n o p q", r, sizeof(r));
    CHECK_RESP(r, "error E2BIG ");
    /* Extra spaces and CRLF are tolerated. */
    ct_ask(fd, "  help  \r", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    ct_ask(fd, "help", r, sizeof(r));
    CHECK_RESP(r, "ok protocol=1 verbs=");
    /* stop: its argument checked; a server given no stop callback refuses. */
    ct_ask(fd, "stop now", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL usage: stop [force]");
    ct_ask(fd, "stop", r, sizeof(r));
    CHECK_RESP(r, "error ENOTSUP ");

    /* NUL bytes, high bytes, escapes: one error per line, still serving. */
    static const char garbage[] = "st\0at\n\xff\xfe\x01\n\tstat\n\x1b[2J\n";
    ct_send(fd, garbage, sizeof(garbage) - 1);
    for (int i = 0; i < 4; i++) {
        CHECK(ct_read_line(fd, r, sizeof(r)) >= 0);
        CHECK_RESP(r, "error EINVAL ");
    }
    ct_ask(fd, "hello 1", r, sizeof(r));
    CHECK_RESP(r, "ok ");

    /* An unknown verb as long as a line may be: its echo is cut short. */
    char *line = malloc(4096);
    memset(line, 'x', 4095);
    line[4095] = '\0';
    ct_ask(fd, line, r, sizeof(r));
    CHECK_RESP(r, "error EINVAL unknown request 'xxx");
    CHECK(strlen(r) < 200);
    ct_ask(fd, "stat", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    free(line);
    close(fd);
}

static void test_oversized(void)
{
    char r[LINE];
    int fd = ct_connect(&t);
    char *big = malloc(10000);

    /* 4096 bytes without a newline: the server cannot know where the next
     * request would start, so it answers and hangs up. */
    memset(big, 'a', 10000);
    ct_send(fd, big, 4096);
    CHECK(ct_read_line(fd, r, sizeof(r)) >= 0);
    CHECK_RESP(r, "error E2BIG ");
    CHECK(ct_at_eof(fd));
    close(fd);

    /* The same with a newline far past the limit. */
    fd = ct_connect(&t);
    big[9999] = '\n';
    (void)!send(fd, big, 10000, MSG_NOSIGNAL);
    CHECK(ct_read_line(fd, r, sizeof(r)) >= 0);
    CHECK_RESP(r, "error E2BIG ");
    CHECK(ct_at_eof(fd));
    close(fd);
    free(big);
}

static void test_random_garbage(void)
{
    struct test_rng rng;
    char r[LINE];
    unsigned char *buf = malloc(65536);

    rng_seed(&rng, 7);
    for (int round = 0; round < 20; round++) {
        int fd = ct_connect(&t);
        size_t len = (size_t)rng_range(&rng, 1, 65536);
        rng_fill(&rng, buf, len);
        /* The server may hang up part way (a line too long): fine. */
        (void)!send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        shutdown(fd, SHUT_WR);
        /* Read whatever comes back until the server closes: only whole
         * response lines, each ok or error. */
        for (;;) {
            ssize_t n = ct_read_line(fd, r, sizeof(r));
            if (n < 0)
                break;
            CHECKF(ct_starts(r, "ok") || ct_starts(r, "error E"), "got '%s'", r);
        }
        close(fd);
    }
    free(buf);
    int fd = ct_connect(&t);
    ct_ask(fd, "hello 1", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    close(fd);
}

static void test_pipelined(void)
{
    char r[LINE];
    int fd = ct_connect(&t);
    static const char reqs[] = "help\nbogus\ninfo\r\nstat\nhello 1\n";

    ct_send(fd, reqs, sizeof(reqs) - 1);
    CHECK(ct_read_line(fd, r, sizeof(r)) >= 0);
    CHECK_RESP(r, "ok protocol=1 verbs=");
    CHECK(ct_read_line(fd, r, sizeof(r)) >= 0);
    CHECK_RESP(r, "error EINVAL unknown request 'bogus'");
    CHECK(ct_read_line(fd, r, sizeof(r)) >= 0);
    CHECK_RESP(r, "ok name=t0 ");
    CHECK(ct_read_line(fd, r, sizeof(r)) >= 0);
    CHECK_RESP(r, "ok algorithm=lz4 ");
    CHECK(ct_read_line(fd, r, sizeof(r)) >= 0);
    CHECK_RESP(r, "ok protocol=1 ");
    close(fd);
}

static void test_eof(void)
{
    char r[LINE];
    int fd = ct_connect(&t);

    /* A last request without a newline is still answered. */
    ct_send(fd, "help", 4);
    shutdown(fd, SHUT_WR);
    CHECK(ct_read_line(fd, r, sizeof(r)) >= 0);
    CHECK_RESP(r, "ok ");
    CHECK(ct_at_eof(fd));
    close(fd);

    /* Clients that go away at once, or before reading their answer. */
    for (int i = 0; i < 50; i++) {
        fd = ct_connect(&t);
        if (i % 3 == 1)
            ct_send(fd, "stat\ncompact\nst", 15);
        if (i % 3 == 2)
            ct_send(fd, "sta", 3);
        close(fd);
    }
    fd = ct_connect(&t);
    ct_ask(fd, "stat", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    close(fd);
}

/* The daemon's own socket: mode 0600, and not taken over while it is live. */
static void socket_check_live(const struct control_info *info)
{
    struct stat st;

    CHECK_EQ(lstat(t.path, &st), 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECKF((st.st_mode & 07777) == 0600, "mode %o", st.st_mode & 07777);

    /* A live socket is not taken over, whatever the caller's umask. */
    errno = 0;
    CHECK(control_new(t.path, t.store, info, (gid_t)-1, (gid_t)-1) == NULL);
    CHECK_EQ(errno, EADDRINUSE);
    CHECK_EQ(lstat(t.path, &st), 0);
    int fd = ct_connect(&t);
    close(fd);
}

/* With a group: 0660 and that group; missing parents are made 0755. */
static void socket_check_group(const char *path, struct store *s,
                               const struct control_info *info)
{
    struct stat st;

    struct control *c = control_new(path, s, info, getgid(), (gid_t)-1);
    CHECKF(c, "control_new %s: %s", path, strerror(errno));
    CHECK_EQ(lstat(path, &st), 0);
    CHECKF((st.st_mode & 07777) == 0660, "mode %o", st.st_mode & 07777);
    CHECK_EQU(st.st_gid, getgid());
    char sub[256];
    snprintf(sub, sizeof(sub), "%s/sub/dir", t.dir);
    CHECK_EQ(lstat(sub, &st), 0);
    CHECKF((st.st_mode & 07777) == 0755, "mode %o", st.st_mode & 07777);

    /* Not started: a client can connect (the backlog) but gets no answer;
     * freeing it unlinks the socket. */
    control_free(c);
    CHECK(lstat(path, &st) < 0 && errno == ENOENT);
}

/*
 * The mode with the admin group: alone, or the same as the watch group,
 * 0660 and its; with a different watch group, 0666 (the check at accept
 * admits).
 */
static void socket_check_groups(const char *path, struct store *s,
                                const struct control_info *info)
{
    const gid_t g = getgid();
    const struct {
        gid_t watch, admin;
        unsigned mode;
    } cases[] = {
        { (gid_t)-1, g, 0660 },
        { g, g, 0660 },
        { g, g + 1, 0666 },
    };
    struct stat st;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct control *c = control_new(path, s, info, cases[i].watch, cases[i].admin);
        CHECKF(c, "control_new %s: %s", path, strerror(errno));
        CHECK_EQ(lstat(path, &st), 0);
        CHECKF((st.st_mode & 07777) == cases[i].mode, "case %zu: mode %o", i,
               st.st_mode & 07777);
        control_free(c);
    }
}

/* Bind a Unix socket at path and close it, as a dead daemon leaves it. */
static void socket_make_stale(const char *path, bool listening)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    CHECK(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int sfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_EQ(bind(sfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    if (listening)
        CHECK_EQ(listen(sfd, 1), 0);
    close(sfd);
}

/* A stale socket, as a dead daemon leaves it, is replaced. */
static void socket_check_stale(const char *path, struct store *s,
                               const struct control_info *info)
{
    struct stat st;
    char r[LINE], v[256];

    socket_make_stale(path, true);
    CHECK_EQ(lstat(path, &st), 0);
    CHECK_EQ(ct_try_connect(path), -ECONNREFUSED);
    struct control *c = control_new(path, s, info, (gid_t)-1, (gid_t)-1);
    CHECKF(c, "control_new over a stale socket: %s", strerror(errno));
    CHECK_EQ(control_start(c), 0);
    CHECK_EQ(control_start(c), -EALREADY);
    int fd = ct_try_connect(path);
    CHECK(fd >= 0);
    ct_ask(fd, "hello 1", r, sizeof(r));
    CHECK_RESP(r, "ok protocol=1 server=uzramd ");
    CHECK(ct_value(r, "name", v, sizeof(v)) && strcmp(v, "t1") == 0);
    /* control_free() with a client still connected and mid-line. */
    ct_send(fd, "sta", 3);
    control_free(c);
    CHECK(ct_at_eof(fd));
    close(fd);
    CHECK(lstat(path, &st) < 0 && errno == ENOENT);
}

/* control_new() at path fails with EADDRINUSE and leaves it a file of type. */
static void socket_check_refused(const char *path, struct store *s,
                                 const struct control_info *info, mode_t type)
{
    struct stat st;

    errno = 0;
    CHECK(control_new(path, s, info, (gid_t)-1, (gid_t)-1) == NULL);
    CHECK_EQ(errno, EADDRINUSE);
    CHECK_EQ(lstat(path, &st), 0);
    CHECK((st.st_mode & S_IFMT) == type);
}

/* Something that is not a socket is never removed. */
static void socket_check_not_socket(const char *path, struct store *s,
                                    const struct control_info *info)
{
    struct stat st;

    int ffd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    CHECK(ffd >= 0);
    close(ffd);
    socket_check_refused(path, s, info, S_IFREG);
    CHECK_EQ(unlink(path), 0);

    /*
     * Nor is a directory, or a symbolic link, even one to a stale socket:
     * the check looks at the link itself, and neither the link nor what it
     * names is removed.
     */
    CHECK_EQ(mkdir(path, 0700), 0);
    socket_check_refused(path, s, info, S_IFDIR);
    CHECK_EQ(rmdir(path), 0);
    char target[256];
    snprintf(target, sizeof(target), "%s/target.sock", t.dir);
    socket_make_stale(target, false);
    CHECK_EQ(symlink(target, path), 0);
    socket_check_refused(path, s, info, S_IFLNK);
    CHECK_EQ(lstat(target, &st), 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK_EQ(unlink(path), 0);
    CHECK_EQ(unlink(target), 0);
}

/* Paths that cannot be a Unix socket's. */
static void socket_check_long_path(struct store *s, const struct control_info *info)
{
    char longp[200];

    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    errno = 0;
    CHECK(control_new(longp, s, info, (gid_t)-1, (gid_t)-1) == NULL);
    CHECK_EQ(errno, ENAMETOOLONG);
    control_free(NULL);
}

static void test_socket_file(void)
{
    struct store_config cfg = { .size = CT_SIZE };
    struct control_info info = { .name = "t1", .algorithm = "lz4" };
    char path[256], sub[256];

    socket_check_live(&info);
    snprintf(path, sizeof(path), "%s/sub/dir/g.sock", t.dir);
    struct store *s = store_new(&cfg);
    CHECK(s);
    socket_check_group(path, s, &info);
    socket_check_groups(path, s, &info);
    socket_check_stale(path, s, &info);
    socket_check_not_socket(path, s, &info);
    socket_check_long_path(s, &info);

    store_free(s);
    snprintf(sub, sizeof(sub), "%s/sub/dir", t.dir);
    CHECK_EQ(rmdir(sub), 0);
    snprintf(sub, sizeof(sub), "%s/sub", t.dir);
    CHECK_EQ(rmdir(sub), 0);
}

/* The evict path's figures, as the store has them with nothing running. */
static void check_evict_stats_equal(const char *r)
{
    struct store_stats st;
    char v[64];

    store_get_stats(t.store, &st);
#define EQ(f) CHECK_EQU(ct_u64(r, #f), st.f)
    EQ(bd_count);
    EQ(bd_reads);
    EQ(bd_writes);
    EQ(bd_read_errors);
    EQ(bd_write_errors);
    EQ(bd_blocks);
    EQ(wb_high);
    EQ(wb_low);
    EQ(evictions);
    EQ(pages_evicted);
    EQ(pages_promoted);
    EQ(write_waits);
    EQ(idle_pages);
    EQ(recompressed);
    EQ(bd_bad_sums);
    EQ(bd_meta_bytes);
#undef EQ
    CHECK_EQU(ct_u64(r, "bd_connected"), st.bd_connected);
    CHECK_EQU(ct_u64(r, "high_watermark"), st.high_watermark);
    CHECK_EQU(ct_u64(r, "low_watermark"), st.low_watermark);
    /* No backing store: no error, and an empty spec. */
    CHECK_EQU(ct_u64(r, "bd_last_error"), 0);
    CHECK(ct_value(r, "backing", v, sizeof(v)) && v[0] == '\0');
}

static void test_evict_verbs(void)
{
    char r[LINE], v[128];
    int fd = ct_connect(&t);

    ct_ask(fd, "stat", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    check_evict_stats_equal(r);
    ct_ask(fd, "info", r, sizeof(r));
    CHECK(ct_value(r, "backing", v, sizeof(v)) && v[0] == '\0');

    /* test_stat left data in the store: every slot holding some is marked. */
    ct_ask(fd, "idle all", r, sizeof(r));
    CHECK_RESP(r, "ok marked=");
    uint64_t marked = ct_u64(r, "marked");
    CHECK(marked > 0);
    ct_ask(fd, "stat", r, sizeof(r));
    CHECK_EQU(ct_u64(r, "idle_pages"), marked);
    ct_ask(fd, "idle 86400", r, sizeof(r));
    CHECK_RESP(r, "ok marked=");
    ct_ask(fd, "idle", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL ");
    ct_ask(fd, "idle soon", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL ");
    ct_ask(fd, "idle all now", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL ");

    /* No job has run: none, and nothing done. */
    ct_ask(fd, "progress", r, sizeof(r));
    CHECK_RESP(r, "ok job=none selected=0 done=0");
    ct_ask(fd, "progress now", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL progress takes no arguments");

    /* No backing store, no second codec: said, and not as a usage error. */
    ct_ask(fd, "writeback all", r, sizeof(r));
    CHECK_RESP(r, "error ENOTSUP no backing store");
    ct_ask(fd, "writeback huge_idle limit=1M", r, sizeof(r));
    CHECK_RESP(r, "error ENOTSUP no backing store");
    ct_ask(fd, "recompress idle", r, sizeof(r));
    CHECK_RESP(r, "error ENOTSUP no recompression algorithm");
    ct_ask(fd, "recompress huge threshold=2000", r, sizeof(r));
    CHECK_RESP(r, "error ENOTSUP no recompression algorithm");
    static const char *const bad[] = {
        "writeback", "writeback cold", "writeback all limit=0", "writeback all limit=lots",
        "writeback all threshold=1", "writeback all limit=1M more", "writeback all limit",
        "recompress", "recompress all", "recompress huge threshold=5000",
        "recompress idle limit=1M", "recompress idle threshold=%zz",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ct_ask(fd, bad[i], r, sizeof(r));
        CHECKF(ct_starts(r, "error EINVAL "), "'%s' got '%s'", bad[i], r);
    }

    /* A long verb and the requests behind it, pipelined: answered in order. */
    const char pipe[] = "writeback idle\nstat\nrecompress huge\nhelp\n";
    ct_send(fd, pipe, sizeof(pipe) - 1);
    CHECK(ct_read_line(fd, r, sizeof(r)) >= 0);
    CHECK_RESP(r, "error ENOTSUP ");
    CHECK(ct_read_line(fd, r, sizeof(r)) >= 0);
    CHECK_RESP(r, "ok algorithm=");
    CHECK(ct_read_line(fd, r, sizeof(r)) >= 0);
    CHECK_RESP(r, "error ENOTSUP ");
    CHECK(ct_read_line(fd, r, sizeof(r)) >= 0);
    CHECK_RESP(r, "ok protocol=1 ");
    CHECK(ct_value(r, "verbs", v, sizeof(v)));
    CHECK(strstr(v, "idle") && strstr(v, "writeback") && strstr(v, "recompress"));
    close(fd);

    /* A client that shuts its side after a last request without newline
     * still gets its answer; one that hangs up without reading it only
     * loses it (its job may still run: others may get EBUSY meanwhile). */
    fd = ct_connect(&t);
    ct_send(fd, "recompress idle", 15);
    CHECK_EQ(shutdown(fd, SHUT_WR), 0);
    CHECK(ct_read_line(fd, r, sizeof(r)) >= 0);
    CHECK_RESP(r, "error ENOTSUP ");
    CHECK(ct_at_eof(fd));
    close(fd);
    fd = ct_connect(&t);
    ct_send(fd, "writeback all\n", 14);
    close(fd);
    fd = ct_connect(&t);
    ct_ask(fd, "stat", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    close(fd);
}

static void test_watermarks(void)
{
    char r[LINE];
    int fd = ct_connect(&t);

    /* Both at once, past each other: one request, checked together. */
    ct_ask(fd, "set low-watermark=40 high-watermark=50", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    CHECK_EQU(ct_u64(r, "high_watermark"), 50);
    CHECK_EQU(ct_u64(r, "low_watermark"), 40);
    ct_ask(fd, "set high_watermark=95", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    CHECK_EQU(ct_u64(r, "high_watermark"), 95);
    CHECK_EQU(ct_u64(r, "low_watermark"), 40);
    static const char *const bad[] = {
        "set low-watermark=95", "set high-watermark=40", "set high-watermark=30 low-watermark=30",
        "set high-watermark=101", "set low-watermark=0", "set high-watermark=x",
        "set high-watermark=90 high-watermark=80", "set high-watermark=90 mem-limit=1M",
        "set mem-limit=1M compact-threshold=5", "set high-watermark=90 low-watermark=80 x=1",
        "set high-watermark",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ct_ask(fd, bad[i], r, sizeof(r));
        CHECKF(ct_starts(r, "error EINVAL "), "'%s' got '%s'", bad[i], r);
    }
    /* Nothing half applied. */
    ct_ask(fd, "stat", r, sizeof(r));
    CHECK_EQU(ct_u64(r, "high_watermark"), 95);
    CHECK_EQU(ct_u64(r, "low_watermark"), 40);
    ct_ask(fd, "set high-watermark=90 low-watermark=80", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    close(fd);
}

/* The uid and group of a member of the socket's group: nobody's, on most systems. */
#define WATCHER_ID 65534

/*
 * As a member of the socket's group at path, not its owner: every verb
 * that changes something is refused with EPERM before its arguments are
 * looked at, the others are served.  Runs in a child; exits on a failed check.
 */
static void roles_watch(const char *path)
{
    static const char *const changes[] = { "compact",   "set",        "idle",
                                           "writeback", "recompress", "stop" };
    gid_t g = WATCHER_ID;
    char r[LINE];

    CHECK_EQ(setgroups(1, &g), 0);
    CHECK_EQ(setgid(g), 0);
    CHECK_EQ(setuid(WATCHER_ID), 0);
    int fd = ct_try_connect(path);
    CHECKF(fd >= 0, "connect %s as uid %d: %s", path, WATCHER_ID, strerror(-fd));

    ct_ask(fd, "hello 1", r, sizeof(r));
    CHECK_RESP(r, "ok protocol=1 ");
    ct_ask(fd, "stat", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    ct_ask(fd, "info", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    ct_ask(fd, "help", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    /* Each verb of the table, bare: refused as a change, or not refused. */
    for (int i = 0; i < PROTO_VERB_MAX; i++) {
        const char *verb = proto_verb_name(i);
        bool changing = false;
        for (size_t k = 0; k < sizeof(changes) / sizeof(changes[0]); k++)
            changing |= strcmp(verb, changes[k]) == 0;
        ct_ask(fd, verb, r, sizeof(r));
        CHECKF(ct_starts(r, "error EPERM ") == changing, "%s: %s", verb, r);
    }
    /* With arguments, good or bad, the same: the role is checked first. */
    ct_ask(fd, "set mem-limit=0", r, sizeof(r));
    CHECK_RESP(r, "error EPERM read-only: changing the device needs root (no admin-group)");
    ct_ask(fd, "set nonsense", r, sizeof(r));
    CHECK_RESP(r, "error EPERM ");
    ct_ask(fd, "writeback all limit=4096", r, sizeof(r));
    CHECK_RESP(r, "error EPERM ");
    ct_ask(fd, "stop force", r, sizeof(r));
    CHECK_RESP(r, "error EPERM ");
    /* A watcher's requests are still checked as anyone's. */
    ct_ask(fd, "stat now", r, sizeof(r));
    CHECK_RESP(r, "error EINVAL ");
    close(fd);
    _exit(0);
}

/* Roles by SO_PEERCRED: needs root, to connect as another uid. */
static void test_roles(void)
{
    struct control_info info = { .name = "t2", .algorithm = "lz4" };
    struct store_stats before, after;
    char path[256], r[LINE];
    int status;

    if (geteuid() != 0) {
        printf("  (skipped: needs root to connect as another uid)\n");
        return;
    }
    snprintf(path, sizeof(path), "%s/roles.sock", t.dir);
    struct control *c = control_new(path, t.store, &info, WATCHER_ID, (gid_t)-1);
    CHECKF(c, "control_new %s: %s", path, strerror(errno));
    CHECK_EQ(control_start(c), 0);
    /* The watcher must reach the socket: through the directory, not into it. */
    CHECK_EQ(chmod(t.dir, 0711), 0);
    store_get_stats(t.store, &before);

    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        roles_watch(path);
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK_EQ(chmod(t.dir, 0700), 0);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the watcher failed (status %#x)",
           status);

    store_get_stats(t.store, &after);
    CHECK_EQU(after.mem_limit, before.mem_limit);
    /* Root, on the same socket, may still change it. */
    int fd = ct_try_connect(path);
    CHECK(fd >= 0);
    ct_ask(fd, "set compact-threshold=17", r, sizeof(r));
    CHECK_RESP(r, "ok ");
    CHECK_EQU(ct_u64(r, "compact_threshold_pct"), 17);
    char set[64];
    snprintf(set, sizeof(set), "set compact-threshold=%u", before.compact_threshold_pct);
    ct_ask(fd, set, r, sizeof(r));
    CHECK_RESP(r, "ok ");
    close(fd);
    control_free(c);
}

int main(void)
{
    /* A umask that would make the socket world-writable must not matter. */
    umask(0);
    ct_setup(&t);
    RUN_TEST(test_hello);
    RUN_TEST(test_info);
    RUN_TEST(test_stat);
    RUN_TEST(test_compact);
    RUN_TEST(test_set);
    RUN_TEST(test_evict_verbs);
    RUN_TEST(test_watermarks);
    RUN_TEST(test_malformed);
    RUN_TEST(test_oversized);
    RUN_TEST(test_random_garbage);
    RUN_TEST(test_pipelined);
    RUN_TEST(test_eof);
    RUN_TEST(test_socket_file);
    RUN_TEST(test_roles);
    ct_teardown(&t);
    return 0;
}
