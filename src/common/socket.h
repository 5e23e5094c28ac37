/* SPDX-License-Identifier: MIT */
/*
 * Listening Unix sockets for the daemon's servers (the control socket, NBD),
 * made the one way they all need: a socket left by a server that died is
 * replaced, a live one never is.
 */
#ifndef UZRAM_SOCKET_H
#define UZRAM_SOCKET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * May a server of this user put a socket in the directory that holds path?
 * Only if nobody but this user and root can replace what is there: the
 * directory must be owned by the effective user or root, and nobody else
 * may write to it, unless its sticky bit keeps each name to its owner (as
 * in /tmp).  Otherwise another user could swap the socket for an impostor
 * of their own, or remove it.  Returns 0, -EPERM with the reason in why
 * ("owned by uid 1000", ...; len bytes, always terminated; why may be
 * NULL), or what stat() said (-ENOENT: there is no such directory).
 */
int unix_dir_check(const char *path, char *why, size_t len) __attribute__((nonnull(1)));

/*
 * Bind and listen on the Unix stream socket at path and return its
 * descriptor (always SOCK_CLOEXEC; flags may add SOCK_NONBLOCK), or a
 * negative errno:
 *   -EADDRINUSE    a server answers on path, or path is not a socket (what
 *                  is not ours is never removed); a dead socket there is
 *                  removed and replaced;
 *   -ENAMETOOLONG  path does not fit in sockaddr_un;
 *   -EPERM         its directory fails unix_dir_check();
 *   other          from socket(), bind(), chown(), chmod(), listen().
 * The socket file is made mode 0600 (the mode is set on the socket before
 * bind(), so it never exists wider), then given group gid when gid is not
 * (gid_t)-1 and mode (0600, 0660 or 0666), before listen(), so nobody
 * connects under another mode.  The
 * file is changed by name without following a symlink, in a directory the
 * check above says nobody else controls.  On failure the socket file this
 * call made, if any, is removed.
 */
int unix_listen(const char *path, gid_t gid, mode_t mode, int flags) __attribute__((nonnull));

/*
 * Who is at the other end of the connected Unix socket fd, as the kernel
 * recorded it at connect(): its uid (SO_PEERCRED) in *ret_uid, and in
 * *ret_in bit i set when it is a member of want[i] (i < 32), by its primary
 * gid (SO_PEERCRED) or a supplementary one (SO_PEERGROUPS, read into a
 * buffer that grows while the kernel says ERANGE).  A want[i] of (gid_t)-1
 * matches nobody.  Returns 0 or a negative errno (-ENOPROTOOPT: a kernel
 * without SO_PEERGROUPS, older than 4.13); a caller refuses a peer it
 * cannot tell.
 */
int unix_peer(int fd, const gid_t *want, unsigned nwant, uid_t *ret_uid, uint32_t *ret_in)
    __attribute__((nonnull(4, 5)));

#endif
