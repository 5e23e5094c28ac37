/* SPDX-License-Identifier: MIT */
/*
 * Listening Unix sockets for the daemon's servers (the control socket, NBD),
 * made the one way they all need: a socket left by a server that died is
 * replaced, a live one never is.
 */
#ifndef UZRAM_SOCKET_H
#define UZRAM_SOCKET_H

#include <sys/types.h>

/*
 * Bind and listen on the Unix stream socket at path and return its
 * descriptor (always SOCK_CLOEXEC; flags may add SOCK_NONBLOCK), or a
 * negative errno:
 *   -EADDRINUSE    a server answers on path, or path is not a socket (what
 *                  is not ours is never removed); a dead socket there is
 *                  removed and replaced;
 *   -ENAMETOOLONG  path does not fit in sockaddr_un;
 *   other          from socket(), bind(), chown(), chmod(), listen().
 * The socket gets mode 0600, or 0660 and group gid when gid is not
 * (gid_t)-1, before listen(), so nobody connects under another mode.  On
 * failure the socket file this call made, if any, is removed.
 */
int unix_listen(const char *path, gid_t gid, int flags) __attribute__((nonnull));

#endif
