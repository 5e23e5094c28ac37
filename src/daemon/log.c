/* SPDX-License-Identifier: MIT */
/*
 * Logging for uzramd.  A message goes to one of three places (uzramd(8),
 * LOGGING), chosen once at start by main.c:
 *   stderr  "uzramd: message", as in the foreground;
 *   syslog  facility daemon, with the pid;
 *   a file  "2025-01-31T12:00:00.123+01:00 uzramd[42]: message", appended.
 * A message is one line; a trailing newline (libfuse ends its messages
 * with one) is dropped so that it is not doubled.
 *
 * The file.  Root writes it, at a path a user may have chosen, so it is
 * opened as nothing else would be written through: never through a
 * symbolic link (O_NOFOLLOW), and only a regular file (a FIFO would block
 * the daemon, a device would be written to).  Each line is one write() on
 * an O_APPEND descriptor: lines of different threads do not interleave,
 * and a `copytruncate` rotation leaves no half line behind.  Nothing is
 * logged per request, so the file grows by a line per event; log_reopen()
 * (SIGHUP) serves a rotation that moves the file instead.
 *
 * Threads: safe to call from any thread.  The place is set before any
 * thread exists; log_reopen() swaps the file under the same descriptor
 * number (dup3()), which is atomic for a write() racing with it.
 */
#include "uzramd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"

static enum log_target target = LOG_TARGET_STDERR;
/* LOG_TARGET_FILE: the descriptor and its path (main thread writes, before threads). */
static int file_fd = -1;
static char *file_path;

void log_use_syslog(void)
{
    openlog("uzramd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    target = LOG_TARGET_SYSLOG;
}

/* path opened for appending, or -errno (ELOOP: a symbolic link; EINVAL: not a regular file). */
static int open_log_file(const char *path)
{
    struct stat st;

    /* Looked at first: opening a FIFO for writing would wait for a reader. */
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return S_ISLNK(st.st_mode) ? -ELOOP : -EINVAL;
    int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
    _cleanup_close_ int fd = open(path, flags, 0600);
    if (fd < 0)
        return -errno;
    /* Whatever was put there between the look and the open. */
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    if (fcntl(fd, F_SETFL, O_APPEND) < 0)
        return -errno;
    return TAKE_FD(fd);
}

int log_use_file(const char *path)
{
    char *copy = strdup(path);
    int fd;

    if (!copy)
        return -ENOMEM;
    fd = open_log_file(path);
    if (fd < 0) {
        free(copy);
        return fd;
    }
    file_fd = fd;
    file_path = copy;
    target = LOG_TARGET_FILE;
    return 0;
}

int log_reopen(void)
{
    if (target != LOG_TARGET_FILE)
        return 0;
    int fd = open_log_file(file_path);
    if (fd < 0)
        return fd;
    int r = dup3(fd, file_fd, O_CLOEXEC) < 0 ? -errno : 0;
    close(fd);
    return r;
}

enum log_target log_target(void)
{
    return target;
}

int log_file_fd(void)
{
    return file_fd;
}

const char *log_where(void)
{
    switch (target) {
    case LOG_TARGET_SYSLOG:
        return "syslog";
    case LOG_TARGET_FILE:
        return file_path;
    default:
        return "stderr";
    }
}

/* "2025-01-31T12:00:00.123+01:00": local time, to the millisecond, and its offset. */
static void timestamp(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    char date[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    if (!localtime_r(&ts.tv_sec, &tm)) {
        snprintf(buf, len, "%lld", (long long)ts.tv_sec);
        return;
    }
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    /* An offset is under a day: the bounds keep each figure two digits. */
    unsigned off = (unsigned)(labs(tm.tm_gmtoff) / 60 % (24 * 60));
    snprintf(buf, len, "%s.%03u%c%02u:%02u", date, (unsigned)(ts.tv_nsec / 1000000 % 1000),
             tm.tm_gmtoff < 0 ? '-' : '+', off / 60, off % 60);
}

/* One line in the file, in one write(): O_APPEND puts it whole at the end. */
static void write_file_line(int priority, const char *msg)
{
    char stamp[64], line[1200];

    timestamp(stamp, sizeof(stamp));
    int n = snprintf(line, sizeof(line), "%s uzramd[%ld]: %s%s\n", stamp, (long)getpid(),
                     priority == LOG_WARNING ? "warning: " : "", msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    /* Nobody to tell if the log itself cannot be written. */
    (void)!write(file_fd, line, (size_t)n);
}

void log_msgv(int priority, const char *fmt, va_list ap)
{
    char line[1024];

    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';

    switch (target) {
    case LOG_TARGET_SYSLOG:
        syslog(priority, "%s", line);
        break;
    case LOG_TARGET_FILE:
        write_file_line(priority, line);
        break;
    default:
        fprintf(stderr, "uzramd: %s%s\n", priority == LOG_WARNING ? "warning: " : "", line);
        break;
    }
}

#define DEFINE_LOG(fn, priority)                 \
    void fn(const char *fmt, ...)                \
    {                                            \
        va_list ap;                              \
        va_start(ap, fmt);                       \
        log_msgv(priority, fmt, ap);             \
        va_end(ap);                              \
    }

DEFINE_LOG(log_info, LOG_INFO)
DEFINE_LOG(log_warn, LOG_WARNING)
DEFINE_LOG(log_err, LOG_ERR)
