/* SPDX-License-Identifier: MIT */
#include "socket.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

/*
 * Is there a live server on sa?  0: no, and a dead socket there has been
 * removed; -EADDRINUSE: yes, or the path is not a socket at all; other
 * -errno: cannot tell.
 */
static int remove_stale(const struct sockaddr_un *sa)
{
    struct stat st;

    if (lstat(sa->sun_path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode))
        return -EADDRINUSE;
    /* Non-blocking: a live server with a full backlog answers EAGAIN
     * rather than making us wait. */
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
        return -EADDRINUSE;
    switch (errno) {
    case ECONNREFUSED:
        return unlink(sa->sun_path) < 0 && errno != ENOENT ? -errno : 0;
    case ENOENT:
        return 0;
    case EAGAIN:
    case EINPROGRESS:
        return -EADDRINUSE;
    default:
        return -errno;
    }
}

int unix_dir_check(const char *path, char *why, size_t len)
{
    _cleanup_free_ char *dir = path_parent(path);
    struct stat st;
    uid_t me = geteuid();

    if (why && len)
        *why = '\0';
    if (!dir)
        return -ENOMEM;
    if (stat(dir, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    if (st.st_uid != me && st.st_uid != 0) {
        if (why)
            snprintf(why, len, "%s is owned by uid %u, not by %s", dir, (unsigned)st.st_uid,
                     me == 0 ? "root" : "this user or root");
        return -EPERM;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) {
        if (why)
            snprintf(why, len, "%s (mode %04o) may be written by others than its owner", dir,
                     (unsigned)(st.st_mode & 07777));
        return -EPERM;
    }
    return 0;
}

int unix_listen(const char *path, gid_t gid, mode_t mode, int flags)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int r;

    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    r = unix_dir_check(path, NULL, 0);
    if (r < 0)
        return r;
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
    if (fd < 0)
        return -errno;
    /* bind() makes the file with the socket's mode less the umask. */
    if (fchmod(fd, 0600) < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (errno != EADDRINUSE)
            return -errno;
        r = remove_stale(&sa);
        if (r < 0)
            return r;
        /* Another server may have won the race to rebind: then this fails
         * with EADDRINUSE, which is the truth. */
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            return -errno;
    }
    /* Exactly this mode, whatever the umask took away. */
    if (gid != (gid_t)-1 && fchownat(AT_FDCWD, path, (uid_t)-1, gid, AT_SYMLINK_NOFOLLOW) < 0)
        goto fail;
    if (fchmodat(AT_FDCWD, path, mode, AT_SYMLINK_NOFOLLOW) < 0)
        goto fail;
    if (listen(fd, SOMAXCONN) < 0)
        goto fail;
    return TAKE_FD(fd);

fail:
    r = -errno;
    unlink(path);
    return r;
}

/* SO_PEERGROUPS's first guess: most users are in a handful of groups. */
#define PEER_GROUPS_FIRST 32
/* The kernel's NGROUPS_MAX: a longer answer is not one it would give. */
#define PEER_GROUPS_MAX 65536

int unix_peer(int fd, const gid_t *want, unsigned nwant, uid_t *ret_uid, uint32_t *ret_in)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    uint32_t in = 0, left = 0;

    if (nwant > 32)
        return -EINVAL;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -errno;
    if (len != sizeof(cred))
        return -EPROTO;
    for (unsigned i = 0; i < nwant; i++) {
        if (want[i] == (gid_t)-1)
            continue;
        if (want[i] == cred.gid)
            in |= 1u << i;
        else
            left |= 1u << i;
    }
    /* The supplementary groups only when the primary one did not settle it. */
    if (left) {
        _cleanup_free_ gid_t *groups = NULL;
        socklen_t cap = PEER_GROUPS_FIRST * sizeof(gid_t);
        for (;;) {
            gid_t *g = realloc(groups, cap);
            if (!g)
                return -ENOMEM;
            groups = g;
            len = cap;
            if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
                break;
            /* ERANGE: len is now what the kernel needs. */
            if (errno != ERANGE || len <= cap || len > PEER_GROUPS_MAX * sizeof(gid_t))
                return errno == ERANGE ? -EPROTO : -errno;
            cap = len;
        }
        for (size_t k = 0; k < len / sizeof(gid_t); k++)
            for (unsigned i = 0; i < nwant; i++)
                if ((left & (1u << i)) && groups[k] == want[i])
                    in |= 1u << i;
    }
    *ret_uid = cred.uid;
    *ret_in = in;
    return 0;
}
