/* SPDX-License-Identifier: MIT */
/*
 * The control socket: a Unix stream socket on which uzramctl (or anyone
 * with socat) asks a running daemon for its statistics, compacts it and
 * changes its settings.  The protocol is line-based and versioned; it is
 * PROTOCOL.md beside this file, and the design doc/control.md.
 *
 * The server turns each request into store calls; it knows nothing of the
 * front ends beyond the strings the daemon gives it in control_info.
 *
 * Who may do what (PROTOCOL.md, "Roles"; doc/control.md, "Who may do
 * what"): the kernel says who connected (SO_PEERCRED, SO_PEERGROUPS, at
 * accept).  Root, the effective uid of the process that called
 * control_new() and the members of the admin group may use every verb;
 * the members of the watch group may only watch (hello, info, stat, help,
 * progress), and every verb that changes something gets EPERM; anyone
 * else is refused at accept, before a byte of theirs is read, whatever
 * the socket file's mode let through.
 *
 * Conventions: 0 or a negative errno; control_new() returns NULL and sets
 * errno.  Nothing here logs.
 */
#ifndef UZRAM_CONTROL_H
#define UZRAM_CONTROL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct store;
struct control;

/* The NBD front end's figures, for stat (PROTOCOL.md); all 0 without one. */
struct control_nbd_stats {
    uint64_t active;        /* clients connected now */
    uint64_t connections;   /* accepted since start */
    uint64_t refused;       /* past their socket's --max-connections */
    uint64_t strangers;     /* a Unix peer not root, uzramd's user or --nbd-group's */
    uint64_t dropped;       /* broke the protocol */
    uint64_t timed_out;     /* past --handshake-timeout */
    uint64_t send_timeouts; /* a reply made no progress for --send-timeout */
    uint64_t idle_timeouts; /* idle past --idle-timeout */
    uint64_t queued_bytes;  /* reply bytes handed to senders, not sent yet */
};

/* What the daemon tells the server about itself, copied by control_new(). */
struct control_info {
    const char *name;        /* device name, e.g. "uzram0" */
    const char *algorithm;   /* codec name */
    int level;
    const char *fuse_file;   /* FUSE file served, or NULL */
    const char *nbd;         /* NBD address served, or NULL (the NBD issue) */
    const char *backing;     /* the backing store's spec, or NULL without one */
    const char *log;         /* where the daemon logs: "syslog", "stderr", a path; or NULL */
    /* What the daemon was granted to serve swap safely (uzramd(8), SWAP). */
    bool memory_locked, io_flusher, oom_protected;
    /*
     * The daemon's answer to "stop" and "stop force", called on the
     * control thread with stop_arg: 0 once the daemon has been told to
     * stop (it then tears down, and the connection ends when the control
     * server is freed); -EBUSY with the reason in why (len bytes, NUL-
     * terminated) when the device is in use and force is false.  NULL: the
     * verb is refused (ENOTSUP).
     */
    int (*stop)(void *stop_arg, bool force, char *why, size_t len);
    void *stop_arg;
    /*
     * Fill *ret with the NBD front end's figures, on the control thread,
     * with stop_arg; it cannot fail.  NULL: all 0.
     */
    void (*nbd_stats)(void *stop_arg, struct control_nbd_stats *ret);
};

/*
 * Bind and listen on path (a stale socket left there by a dead daemon is
 * replaced; a live one is not: -EADDRINUSE).  The parent directory is
 * created (mode 0755) if missing.  watch_gid and admin_gid are the watch
 * and admin groups, (gid_t)-1 for none.  The socket's mode: 0600 with
 * neither; 0660 and that group with one (or both the same); 0666 with two,
 * since a file has one group, and then the check at accept is what keeps
 * everyone else out.  Serving starts with control_start().
 * errno: EADDRINUSE, ENAMETOOLONG (path over 107 bytes), EACCES, ENOMEM...
 */
struct control *control_new(const char *path, struct store *store,
                            const struct control_info *info, gid_t watch_gid, gid_t admin_gid)
    __attribute__((nonnull(1, 2, 3)));

/*
 * How the FUSE file is served, for stat (fuse_transport, fuse_buffer_bytes):
 * transport is a string that outlives the server (a literal), buffer_bytes
 * what its request buffers hold.  Any thread, any time after control_new().
 */
void control_set_fuse(struct control *ctl, const char *transport, uint64_t buffer_bytes)
    __attribute__((nonnull));

/* Start the server's thread.  -errno if it cannot be started. */
int control_start(struct control *ctl) __attribute__((nonnull));

/*
 * Stop serving (closing every client connection), join the thread, unlink
 * the socket and free.  Accepts NULL.  A writeback or recompression that a
 * client started is waited for: it runs on the store, which the caller
 * frees only after this returns.
 */
void control_free(struct control *ctl);

#endif /* UZRAM_CONTROL_H */
