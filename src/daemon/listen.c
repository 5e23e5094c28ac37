/* SPDX-License-Identifier: MIT */
/*
 * Socket activation: listening sockets made by the service manager
 * (uzramd@.socket) and passed to us, as sd_listen_fds(3) describes, for
 * the NBD front end to accept on instead of binding its own.
 *
 * The protocol: descriptors 3 .. 3 + $LISTEN_FDS - 1, meant for the
 * process whose pid is $LISTEN_PID (a variable inherited by a child that
 * did not exec must not make it take its parent's descriptors).  We take
 * them only if the pid is ours, cap their number (a stray or hostile
 * environment must not make us walk the descriptor table), make each
 * close-on-exec, and check that each is a listening stream socket before
 * anything accepts on it.  Each is then told apart by its address, not by
 * $LISTEN_FDNAMES: a Unix socket's path is what --nbd-unix names, and a
 * TCP socket's address is what --nbd-tcp names.  The variables are
 * removed so that nothing we start later sees them.
 *
 * The daemon takes them before it could fork: a forked child's pid is not
 * $LISTEN_PID.  Socket activation therefore goes with --foreground (as
 * systemd runs us anyway).
 */
#include "uzramd.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_FDS_START 3

static int describe(struct listen_socket *ls)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int type = 0, listening = 0;
    socklen_t ilen = sizeof(int);

    if (getsockopt(ls->fd, SOL_SOCKET, SO_TYPE, &type, &ilen) < 0)
        return errno == ENOTSOCK ? -EINVAL : -errno;
    ilen = sizeof(int);
    if (getsockopt(ls->fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ilen) < 0)
        return -errno;
    if (type != SOCK_STREAM || !listening)
        return -EINVAL;
    if (getsockname(ls->fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    ls->family = ss.ss_family;

    if (ss.ss_family == AF_UNIX) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss;
        size_t n = len > offsetof(struct sockaddr_un, sun_path) ?
                   len - offsetof(struct sockaddr_un, sun_path) : 0;
        /* A path: an unnamed or abstract socket cannot be what --nbd-unix names. */
        if (n == 0 || sun->sun_path[0] != '/')
            return -EAFNOSUPPORT;
        snprintf(ls->path, sizeof(ls->path), "%.*s", (int)strnlen(sun->sun_path, n),
                 sun->sun_path);
        snprintf(ls->address, sizeof(ls->address), "unix:%s", ls->path);
        return 0;
    }
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
        char port[8];
        if (getnameinfo((struct sockaddr *)&ss, len, ls->host, sizeof(ls->host), port,
                        sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
            return -EINVAL;
        ls->port = (uint16_t)atoi(port);
        bool v6 = ss.ss_family == AF_INET6;
        snprintf(ls->address, sizeof(ls->address), "tcp:%s%s%s:%u", v6 ? "[" : "", ls->host,
                 v6 ? "]" : "", ls->port);
        return 0;
    }
    return -EAFNOSUPPORT;
}

int listen_fds_take(struct listen_socket **ret)
{
    const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
    char *end;
    long pid, n;
    int r = 0;

    if (!pid_s)
        return 0;
    errno = 0;
    pid = strtol(pid_s, &end, 10);
    bool ours = errno == 0 && *end == '\0' && pid == (long)getpid();
    errno = 0;
    n = fds_s ? strtol(fds_s, &end, 10) : 0;
    if (errno || !fds_s || *end)
        n = -1;
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (!ours || n == 0)
        return 0;
    if (n < 0 || n > LISTEN_FDS_MAX) {
        log_err("socket activation: LISTEN_FDS=%s (want 1 to %d sockets)", fds_s ? fds_s : "",
                LISTEN_FDS_MAX);
        return -EINVAL;
    }

    struct listen_socket *ls = calloc((size_t)n, sizeof(*ls));
    if (!ls) {
        log_err("out of memory");
        return -EINVAL;
    }
    for (long i = 0; i < n; i++) {
        int fd = LISTEN_FDS_START + (int)i;
        ls[i].fd = fd;
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
            log_err("socket activation: descriptor %d: %s", fd, strerror(errno));
            r = -EINVAL;
            break;
        }
        r = describe(&ls[i]);
        if (r < 0) {
            log_err("socket activation: descriptor %d: %s", fd,
                    r == -EINVAL ? "not a listening stream socket" :
                    r == -EAFNOSUPPORT ? "not a Unix socket with a path, nor TCP" : strerror(-r));
            r = -EINVAL;
            break;
        }
    }
    if (r < 0) {
        /* Ours all the same: nothing else will close them. */
        for (long i = 0; i < n; i++)
            close(LISTEN_FDS_START + (int)i);
        free(ls);
        return r;
    }
    *ret = ls;
    return (int)n;
}
