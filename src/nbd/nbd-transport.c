/* SPDX-License-Identifier: MIT */
/*
 * A client's byte stream, plain (doc/nbd.md, "Transport and TLS").  The
 * protocol code above sees only struct nbd_io; nbd-server.c points it at
 * the client's transport, whose table of operations NBD_OPT_STARTTLS
 * swaps for the TLS session's (nbd-tls.c).  The swap happens in the
 * handshake, in the connection's thread, before the sender thread exists,
 * so no one else is using the transport while it changes.
 *
 * In transmission the socket may have SO_SNDTIMEO and SO_RCVTIMEO
 * (nbd-server.c): a send that times out has made no progress for that
 * long, and the connection is given up (nbd_transport_stalled()); a
 * receive that times out returns EAGAIN for the connection to judge
 * whether it is idle (nbd-input.c).
 */
#include "nbd-internal.h"

#include <errno.h>
#include <sys/socket.h>

static ssize_t plain_recv(struct nbd_transport *t, void *buf, size_t len)
{
    for (;;) {
        ssize_t r = recv(t->fd, buf, len, 0);
        if (r >= 0 || errno != EINTR)
            return r;
    }
}

static ssize_t plain_sendv(struct nbd_transport *t, const struct iovec *iov, int iovcnt)
{
    struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };

    for (;;) {
        /* MSG_NOSIGNAL: a client that hangs up costs EPIPE, not SIGPIPE. */
        ssize_t r = sendmsg(t->fd, &m, MSG_NOSIGNAL);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            nbd_transport_stalled(t);
        if (r >= 0 || errno != EINTR)
            return r;
    }
}

void nbd_transport_stalled(struct nbd_transport *t)
{
    (void)shutdown(t->fd, SHUT_RDWR);
    errno = ETIMEDOUT;
}

static void plain_end(struct nbd_transport *t, bool clean)
{
    (void)t;
    (void)clean;
}

static const struct nbd_transport_ops plain_ops = {
    .recv = plain_recv,
    .sendv = plain_sendv,
    .end = plain_end,
};

void nbd_transport_init(struct nbd_transport *t, int fd)
{
    *t = (struct nbd_transport){ .ops = &plain_ops, .fd = fd };
}
