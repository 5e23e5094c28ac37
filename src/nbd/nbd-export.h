/* SPDX-License-Identifier: MIT */
/*
 * The NBD front end: serves a store to NBD clients (nbd-client, qemu,
 * nbdcopy, fio's nbd engine, anything built on libnbd) over Unix and TCP
 * sockets, with the fixed newstyle handshake.  One export, of any name.
 *
 * Life cycle: nbd_export_new(); one or more nbd_export_listen_*() (each
 * listens when it returns, so a client may connect at once: the kernel
 * queues it); nbd_export_start() starts accepting and serving;
 * nbd_export_free() closes the listeners, disconnects every client, waits
 * for the threads and frees.  Only one thread (the daemon's main thread)
 * calls these, one at a time.
 *
 * nbd_export_serve_io() serves one client over callbacks in the calling
 * thread, without sockets or threads: for the fuzzer and for tests.
 *
 * TLS (doc/nbd.md, "Transport and TLS"): with NBD_TLS_ON or
 * NBD_TLS_REQUIRE, every listener offers NBD_OPT_STARTTLS with the
 * credentials given, which nbd_tls_creds_load() read once, at start.
 *
 * Conventions: 0 or a negative errno; nbd_export_new() returns NULL and
 * sets errno.  Nothing here logs: a client that breaks the protocol is
 * dropped silently, and counted.
 */
#ifndef UZRAM_NBD_EXPORT_H
#define UZRAM_NBD_EXPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct store;
struct nbd_export;
struct nbd_tls_creds;

/*
 * TLS, with nbdkit's meanings: OFF, no NBD_OPT_STARTTLS; ON, offered and
 * the client chooses; REQUIRE, every option but NBD_OPT_STARTTLS and
 * NBD_OPT_ABORT is refused with NBD_REP_ERR_TLS_REQD before TLS, and a
 * plain-text NBD_OPT_EXPORT_NAME ends the connection.
 */
enum nbd_tls_mode { NBD_TLS_OFF, NBD_TLS_ON, NBD_TLS_REQUIRE, NBD_TLS_MAX };

/*
 * Read TLS credentials, once: either a PSK file (psktool's format, lines
 * of USERNAME:HEXKEY) or a directory of certificates (server-cert.pem and
 * server-key.pem; with ca-cert.pem there too, every client must present a
 * certificate signed by that CA).  Exactly one of psk_file and cert_dir is
 * not NULL.  The files are read here and never again, so a daemon may
 * lose the right to read them afterwards.  On failure *ret_file names the
 * file at fault (one of cert_dir's, or psk_file) and *ret is untouched.
 * -ENOENT, -EACCES: a file missing or unreadable; -EINVAL: not a key file,
 * not PEM, or a key that is not the certificate's; -ENOMEM.
 */
int nbd_tls_creds_load(const char *psk_file, const char *cert_dir, struct nbd_tls_creds **ret,
                       const char **ret_file) __attribute__((nonnull(3, 4)));
/* "PSK" or "X.509", for the log. */
const char *nbd_tls_creds_kind(const struct nbd_tls_creds *cr) __attribute__((nonnull));
/* Accepts NULL.  Only once no export uses them. */
void nbd_tls_creds_free(struct nbd_tls_creds *cr);

#define NBD_EXPORT_DEFAULT_CONNECTIONS 16
#define NBD_EXPORT_MAX_CONNECTIONS 1024
/*
 * Seconds a client has from its connection to the end of the handshake.
 * Real clients take milliseconds (a few round trips); 10 s leaves room for
 * a loaded machine or a slow link, and frees an idle connection's slot
 * soon.  An hour is longer than any handshake could need.
 */
#define NBD_EXPORT_DEFAULT_HANDSHAKE_TIMEOUT 10
#define NBD_EXPORT_MAX_HANDSHAKE_TIMEOUT 3600
/*
 * Seconds a reply may make no progress (no byte taken by the socket)
 * before its client is dropped.  A client that reads does not come near
 * it: the kernel's NBD client under memory pressure has waited seconds
 * for a socket buffer (uzramd(8), SWAP), not a minute.  0: none.
 */
#define NBD_EXPORT_DEFAULT_SEND_TIMEOUT 60
/* A day: past that a timeout is no bound.  The same for the idle timeout. */
#define NBD_EXPORT_MAX_TIMEOUT 86400

struct nbd_export_options {
    const char *description;  /* sent as NBD_INFO_DESCRIPTION, e.g. the device name; may be NULL */
    bool read_only;           /* NBD_FLAG_READ_ONLY: writes fail with EPERM */
    /*
     * Clients at once on each listener, 1..1024; 0: 16.  Each socket has
     * its own count, so that clients of one (TCP, say) cannot take the
     * slots of another (the Unix socket).
     */
    unsigned max_connections;
    /*
     * Seconds from accept() to the end of the handshake, 1..3600; 0: 10.
     * A client that has not reached the transmission phase by then is
     * disconnected.  Transmission has only send_timeout and idle_timeout
     * below, the second off unless asked for: the kernel's client serving
     * swap may be silent for hours.
     */
    unsigned handshake_timeout;
    /*
     * Seconds a connection in transmission may hold a reply that makes no
     * progress (its client does not read) before it is dropped, 0..86400;
     * 0: none.  Unlike the others, 0 here is no default: the caller gives
     * NBD_EXPORT_DEFAULT_SEND_TIMEOUT.
     */
    unsigned send_timeout;
    /*
     * The same for the clients of Unix sockets, 0..86400; 0: none.  Apart,
     * because a Unix socket is where the kernel's client serving swap
     * connects, and dropping it takes the swap device away: its caller
     * sets it only when asked to.
     */
    unsigned send_timeout_unix;
    /*
     * Seconds a connection in transmission may stay with no request in
     * flight and nothing received before it is closed, 0..86400; 0: never,
     * as the kernel's client serving swap needs (it may be silent for hours).
     */
    unsigned idle_timeout;
    /*
     * Worker threads for large requests (see nbd-pool.c); 0: none, every
     * request is served by its connection's thread.
     */
    unsigned threads;
    /*
     * If not NULL, called first thing in each connection's reply sender
     * (the thread whose sendmsg() may wait for a socket buffer when memory
     * is short), e.g. to raise its scheduling class.  It must not fail.
     */
    void (*sender_init)(void);
    /* TLS on every listener; tls_creds (not NULL unless OFF) must outlive the export. */
    enum nbd_tls_mode tls;
    const struct nbd_tls_creds *tls_creds;
};

/*
 * A new export of s, which must outlive it.  errno: EINVAL (bad options),
 * ENOMEM.
 */
struct nbd_export *nbd_export_new(struct store *s, const struct nbd_export_options *o)
    __attribute__((nonnull(1, 2)));

/*
 * Listen on the Unix socket path: created with mode 0600, or 0660 and group
 * gid when gid is not (gid_t)-1.  Whatever the file's mode, only root, the
 * export's user (geteuid() at nbd_export_new()) and members of gid are
 * served: anyone else is closed at accept and counted in strangers.  A
 * socket left by a dead server is replaced; a live one, or a file that is
 * not a socket, is not: -EADDRINUSE.  -ENAMETOOLONG for a path over 107
 * bytes; other -errno.  The file is removed by nbd_export_free().
 */
int nbd_export_listen_unix(struct nbd_export *ne, const char *path, gid_t gid)
    __attribute__((nonnull));

/*
 * Listen on TCP: host is a name or a numeric IPv4 or IPv6 address (no
 * brackets), port 1..65535.  -EADDRINUSE, -EADDRNOTAVAIL, -ENOENT (host
 * unknown), other -errno.
 */
int nbd_export_listen_tcp(struct nbd_export *ne, const char *host, uint16_t port)
    __attribute__((nonnull));

/*
 * Accept on fd, a stream socket (Unix, TCP) that is listening already, made
 * by someone else: systemd's socket activation.  On success the export owns
 * fd and closes it at the end, but never removes a Unix socket's file: its
 * maker (the socket unit) keeps it for the next start.  -EINVAL if fd is
 * not a listening stream socket, -EAFNOSUPPORT for another family, -ENOSPC
 * past 8 listeners, other -errno; fd is the caller's then.  A Unix socket's
 * clients are checked as nbd_export_listen_unix()'s, with gid.
 */
int nbd_export_listen_fd(struct nbd_export *ne, int fd, gid_t gid) __attribute__((nonnull));

/* Start accepting clients and the worker threads.  -errno if a thread cannot start. */
int nbd_export_start(struct nbd_export *ne) __attribute__((nonnull));

/* Counters for the daemon's log and `stat`; approximate while serving. */
struct nbd_export_stats {
    uint64_t connections;       /* accepted since start */
    uint64_t refused;           /* closed at once: its listener's max_connections reached */
    uint64_t strangers;         /* closed at once: a Unix peer not root, ours or gid's */
    uint64_t dropped;           /* broke the protocol, or hung up mid-request */
    uint64_t timed_out;         /* still in the handshake at handshake_timeout: closed */
    uint64_t send_timeouts;     /* a reply made no progress for send_timeout: dropped */
    uint64_t idle_timeouts;     /* nothing asked nor received for idle_timeout: closed */
    uint64_t queued_bytes;      /* reply bytes handed to senders and not yet sent, now */
    unsigned active;            /* connected now, on all listeners */
    /*
     * How long replies have been waiting to go out, in ms: 0 when no send
     * is under way, else the time since the last send completed.  A send
     * stuck this long under memory pressure is the kernel failing to find
     * a socket buffer (see uzramd(8), SWAP); a client that does not read
     * its replies looks the same, so judge it with the machine's memory.
     */
    uint64_t send_stall_ms;
};
void nbd_export_get_stats(struct nbd_export *ne, struct nbd_export_stats *ret)
    __attribute__((nonnull));

/*
 * Stop: close the listeners (unlinking Unix sockets), shut every client's
 * connection down (requests being served finish first), join every thread
 * and free.  Accepts NULL.
 */
void nbd_export_free(struct nbd_export *ne);

/*
 * One client's byte stream.  recv() reads at most len bytes into buf and
 * returns how many (blocking until at least one arrives), 0 at the end of
 * the stream, or -1.  sendv() writes from iov and returns how many bytes it
 * wrote (at least one), or -1.  Called from one thread at a time per
 * connection (sendv() from several in turn, under the connection's lock).
 * established(), if not NULL, is called once, when the handshake is over
 * and transmission begins, before the first request is read: the sockets'
 * layer ends the handshake's deadline there.
 *
 * tls is the policy for NBD_OPT_STARTTLS (NBD_TLS_OFF when starttls is
 * NULL).  starttls() is called at most once, from the handshake, after
 * the option's NBD_REP_ACK went out and with no input left unread; it
 * runs the TLS handshake on the stream and returns 0, after which recv()
 * and sendv() go through TLS, or a negative errno (-EACCES: the peer's
 * credentials were refused), after which the connection ends.
 */
struct nbd_io {
    ssize_t (*recv)(void *ctx, void *buf, size_t len);
    ssize_t (*sendv)(void *ctx, const struct iovec *iov, int iovcnt);
    void (*established)(void *ctx);
    int (*starttls)(void *ctx);
    enum nbd_tls_mode tls;
    void *ctx;
};

/*
 * Serve one client through io in the calling thread, handshake and
 * transmission, until it disconnects.  Large requests go to the worker
 * threads if nbd_export_start() started them, else run here.  Returns 0
 * when the client ended properly (NBD_OPT_ABORT, NBD_CMD_DISC), -ECONNRESET
 * when the stream ended or failed, -EPROTO when the client broke the
 * protocol (it is dropped), -EACCES when TLS was required and the client
 * asked for the export without it, or its TLS credentials were refused,
 * -ENOMEM.
 */
int nbd_export_serve_io(struct nbd_export *ne, const struct nbd_io *io)
    __attribute__((nonnull));

#endif /* UZRAM_NBD_EXPORT_H */
