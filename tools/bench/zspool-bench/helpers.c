/* SPDX-License-Identifier: MIT */
/*
 * zspool-bench's helpers: errors, the clock, the resident set, whole reads
 * and writes, the checksum.
 *
 * An error is formatted where it happens, into a struct err, and reported
 * once by main(); functions return 0 or a negative errno.  The resident
 * set is read with open and read, not stdio, which would malloc and so
 * disturb the figure it takes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "zspool-bench.h"

__attribute__((format(printf, 4, 0)))
static int vset_err(struct err *e, int code, bool with_strerror, const char *fmt, va_list ap)
{
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);

    if (with_strerror && n >= 0 && (size_t)n < sizeof e->msg)
        snprintf(e->msg + n, sizeof e->msg - (size_t)n, ": %s", strerror(-code));
    e->code = code;
    return code;
}

/* Record "message: strerror(-code)" and return code, a negative errno. */
__attribute__((format(printf, 3, 4)))
int set_err(struct err *e, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    code = vset_err(e, code, true, fmt, ap);
    va_end(ap);
    return code;
}

/* The same for a message that says it all. */
__attribute__((format(printf, 3, 4)))
int set_err_msg(struct err *e, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    code = vset_err(e, code, false, fmt, ap);
    va_end(ap);
    return code;
}

__attribute__((format(printf, 2, 3)))
void note(struct result *r, const char *fmt, ...)
{
    size_t len = strlen(r->notes);
    va_list ap;

    if (len + 2 >= sizeof r->notes)
        return;
    va_start(ap, fmt);
    vsnprintf(r->notes + len, sizeof r->notes - len - 1, fmt, ap);
    va_end(ap);
    strcat(r->notes, "\n");
}

int neg_errno(void)
{
    return errno > 0 ? -errno : -EIO;
}

uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double ratio(uint64_t num, int64_t den)
{
    return den > 0 ? (double)num / (double)den : 0.0;
}

/*
 * Anonymous resident memory from /proc/self/statm: resident pages less the
 * file-backed and shared ones, so that code paged in along the way (libc,
 * libzspool) does not count; the pool's memory is private and anonymous.
 * Read with open/read rather than stdio, which would malloc.
 */
int rss_bytes(int64_t *ret)
{
    _cleanup_close_ int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    unsigned long long size, resident, shared;
    char buf[128];
    ssize_t n;

    if (fd < 0)
        return neg_errno();
    n = read(fd, buf, sizeof buf - 1);
    if (n <= 0)
        return n < 0 ? neg_errno() : -EIO;
    buf[n] = '\0';
    if (sscanf(buf, "%llu %llu %llu", &size, &resident, &shared) != 3)
        return -EIO;
    *ret = (int64_t)(resident - shared) * sysconf(_SC_PAGESIZE);
    return 0;
}

int rss_delta(int64_t base, int64_t *ret, struct err *e)
{
    int64_t now;
    int r = rss_bytes(&now);

    if (r < 0)
        return set_err(e, r, "/proc/self/statm");
    *ret = now - base;
    return 0;
}

int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return neg_errno();
        if (n == 0)
            return -ENODATA;   /* the corpus shrank under us */
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return neg_errno();
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Returns the bytes read, short only at end of file. */
ssize_t read_full(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t done = 0;

    while (done < len) {
        ssize_t n = read(fd, p + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return neg_errno();
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* A checksum to verify objects after compaction moved them. */
uint32_t hash32(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return (uint32_t)(h ^ (h >> 32));
}
