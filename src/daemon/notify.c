/* SPDX-License-Identifier: MIT */
/*
 * Telling systemd (or any service manager that speaks sd_notify(3)'s
 * protocol) what the daemon is doing: READY=1 once every front end serves,
 * RELOADING=1 and READY=1 around a reload, STOPPING=1, and a STATUS= line.
 *
 * The protocol is one datagram of "KEY=value" lines sent to the Unix
 * socket named by $NOTIFY_SOCKET (an abstract one if the name starts with
 * '@'), from the main pid.  That is a few lines; libsystemd would be a
 * dependency for them.  The variable is left set: the daemon keeps sending
 * for as long as it runs.  A failed send is not an error worth stopping
 * for: the manager will time the start out, and that is its call.
 */
#include "uzramd.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"

bool notify_enabled(void)
{
    const char *e = getenv("NOTIFY_SOCKET");
    return e && (e[0] == '/' || e[0] == '@');
}

int notify(const char *state)
{
    const char *e = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len;

    if (!e || !e[0])
        return 0;
    len = strlen(e);
    if ((e[0] != '/' && e[0] != '@') || len >= sizeof(sa.sun_path))
        return -EINVAL;
    memcpy(sa.sun_path, e, len);
    if (e[0] == '@')
        sa.sun_path[0] = '\0';

    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* An abstract name is exactly len bytes long: no terminating NUL counts. */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                                  (e[0] == '@' ? 0 : 1));
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) < 0)
        return -errno;
    return 0;
}

int notifyf(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (!notify_enabled())
        return 0;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return notify(msg);
}
