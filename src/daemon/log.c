/* SPDX-License-Identifier: MIT */
/*
 * Logging for uzramd: to stderr in the foreground, as "uzramd: message";
 * to syslog (facility daemon, with the pid) once in the background, where
 * stderr is /dev/null.  A message is one line; a trailing newline (libfuse
 * ends its messages with one) is dropped so that it is not doubled.
 *
 * Threads: safe to call from any thread (syslog() and one fprintf() of a
 * whole line are).
 */
#include "uzramd.h"

#include <stdio.h>
#include <string.h>
#include <syslog.h>

static bool use_syslog;

void log_use_syslog(void)
{
    openlog("uzramd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    use_syslog = true;
}

void log_msgv(int priority, const char *fmt, va_list ap)
{
    char line[1024];

    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';

    if (use_syslog)
        syslog(priority, "%s", line);
    else
        fprintf(stderr, "uzramd: %s%s\n", priority == LOG_WARNING ? "warning: " : "", line);
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
