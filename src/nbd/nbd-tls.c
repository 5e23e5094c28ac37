/* SPDX-License-Identifier: MIT */
/*
 * TLS for NBD_OPT_STARTTLS (doc/nbd.md, "Transport and TLS"), with GnuTLS:
 * the credentials, read once at start, and a client's session, which
 * stands in for its plain socket (nbd-transport.c) once the handshake is
 * done.
 *
 * The credentials are read whole when the daemon starts, PSK keys
 * included (GnuTLS's own PSK file callback would read the file at each
 * handshake): a bad file is a start error rather than a refused client
 * later, and the daemon may lose the right to read the files afterwards.
 * With certificates, ca-cert.pem in the directory is what says that
 * clients must show a certificate signed by that CA, as qemu-nbd's
 * verify-peer does; without it anyone may connect over an encrypted
 * stream, which protects the data from others on the path but
 * authenticates no one (uzramd(8), SECURITY).
 *
 * Sending: struct nbd_io's sendv() takes iovecs, GnuTLS records.  Replies
 * are gathered into one record (the stage, 16 KiB of plaintext at most)
 * unless the first iovec fills a record by itself, which is then sent
 * from where it lies; what a record does not take is sent on the next
 * call (sendv_all() in nbd-reply.c loops).  GnuTLS lets one thread send
 * while another receives on a session, but not two send at once: every
 * sendv() runs under the connection's send lock, which already made each
 * sendmsg() whole replies.  The stage is the session's, used under that
 * lock only.
 *
 * The handshake has no timeout of its own: the connection's handshake
 * deadline (nbd-server.c) shuts the socket down, which ends it.  In
 * transmission GNUTLS_E_AGAIN means the socket's timeouts passed, as
 * EAGAIN does for a plain socket (nbd-transport.c).
 */
#include "nbd-internal.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

/* A TLS record's most plaintext (RFC 8446, 5.1): one record per sendv(). */
#define TLS_RECORD_MAX 16384
/* psktool writes 32-byte keys; GnuTLS takes up to 64 KiB, no real key is near it. */
#define PSK_KEY_MAX 512
/* Keys in a PSK file: one per client user, a handful in practice. */
#define PSK_MAX_KEYS 1024

struct psk_key {
    char *user;
    uint8_t *key;
    size_t len;
};

struct nbd_tls_creds {
    bool psk;
    bool verify_clients; /* ca-cert.pem was there */
    gnutls_psk_server_credentials_t psk_cred;
    gnutls_certificate_credentials_t cert_cred;
    struct psk_key *keys;
    size_t nkeys;
};

struct nbd_tls_session {
    gnutls_session_t s;
    uint8_t stage[TLS_RECORD_MAX]; /* under the connection's send lock */
};

/* ---- credentials --------------------------------------------------------- */

/* One line of a PSK file, USERNAME:HEXKEY, without its newline. */
static int psk_add(struct nbd_tls_creds *cr, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n);
    if (!colon || colon == line || cr->nkeys == PSK_MAX_KEYS)
        return -EINVAL;
    const char *hex = colon + 1;
    size_t hexlen = n - (size_t)(hex - line);
    if (hexlen == 0 || hexlen % 2 || hexlen / 2 > PSK_KEY_MAX)
        return -EINVAL;

    struct psk_key k = { .len = hexlen / 2 };
    int r = -ENOMEM;
    k.user = strndup(line, (size_t)(colon - line));
    k.key = malloc(k.len);
    if (!k.user || !k.key)
        goto fail;
    for (size_t i = 0; i < k.len; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            r = -EINVAL;
            goto fail;
        }
        k.key[i] = (uint8_t)(hi << 4 | lo);
    }
    struct psk_key *keys = realloc(cr->keys, (cr->nkeys + 1) * sizeof(*keys));
    if (!keys)
        goto fail;
    cr->keys = keys;
    cr->keys[cr->nkeys++] = k;
    return 0;

fail:
    if (k.key)
        explicit_bzero(k.key, k.len);
    free(k.user);
    free(k.key);
    return r;
}

/* GnuTLS asks for a user's key during a handshake; a user we lack fails it. */
static int psk_lookup(gnutls_session_t s, const char *user, gnutls_datum_t *key)
{
    const struct nbd_tls_creds *cr = gnutls_session_get_ptr(s);

    for (size_t i = 0; i < cr->nkeys; i++) {
        if (strcmp(cr->keys[i].user, user) != 0)
            continue;
        key->data = gnutls_malloc(cr->keys[i].len);
        if (!key->data)
            return -1;
        memcpy(key->data, cr->keys[i].key, cr->keys[i].len);
        key->size = (unsigned)cr->keys[i].len;
        return 0;
    }
    return -1;
}

static int load_psk(struct nbd_tls_creds *cr, const char *path)
{
    FILE *f = fopen(path, "re");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int r = 0;

    if (!f)
        return -errno;
    while (r == 0 && (n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            n--;
        if (n > 0)
            r = psk_add(cr, line, (size_t)n);
    }
    if (r == 0 && ferror(f))
        r = -EIO;
    if (line) {
        explicit_bzero(line, cap);
        free(line);
    }
    fclose(f);
    if (r == 0 && cr->nkeys == 0)
        r = -EINVAL;
    if (r < 0)
        return r;
    if (gnutls_psk_allocate_server_credentials(&cr->psk_cred) < 0)
        return -ENOMEM;
    gnutls_psk_set_server_credentials_function(cr->psk_cred, psk_lookup);
    cr->psk = true;
    return 0;
}

/* A client certificate that does not chain to ca-cert.pem fails the handshake. */
static int verify_client(gnutls_session_t s)
{
    unsigned status = 0;

    if (gnutls_certificate_verify_peers2(s, &status) < 0 || status != 0)
        return GNUTLS_E_CERTIFICATE_ERROR;
    return 0;
}

/* dir/name, readable: 0, or a negative errno with *ret_file set to name. */
static int cert_file(const char *dir, const char *name, char *buf, size_t cap,
                     const char **ret_file)
{
    *ret_file = name;
    if ((size_t)snprintf(buf, cap, "%s/%s", dir, name) >= cap)
        return -ENAMETOOLONG;
    return access(buf, R_OK) == 0 ? 0 : -errno;
}

static int load_certs(struct nbd_tls_creds *cr, const char *dir, const char **ret_file)
{
    char cert[4096], key[4096], ca[4096];
    int r;

    if ((r = cert_file(dir, "server-cert.pem", cert, sizeof(cert), ret_file)) < 0 ||
        (r = cert_file(dir, "server-key.pem", key, sizeof(key), ret_file)) < 0)
        return r;
    r = cert_file(dir, "ca-cert.pem", ca, sizeof(ca), ret_file);
    if (r < 0 && r != -ENOENT)
        return r;
    cr->verify_clients = r == 0;
    if (gnutls_certificate_allocate_credentials(&cr->cert_cred) < 0)
        return -ENOMEM;
    if (cr->verify_clients) {
        if (gnutls_certificate_set_x509_trust_file(cr->cert_cred, ca, GNUTLS_X509_FMT_PEM) <= 0)
            return -EINVAL;
        gnutls_certificate_set_verify_function(cr->cert_cred, verify_client);
    }
    *ret_file = "server-cert.pem";
    r = gnutls_certificate_set_x509_key_file(cr->cert_cred, cert, key, GNUTLS_X509_FMT_PEM);
    if (r == GNUTLS_E_MEMORY_ERROR)
        return -ENOMEM;
    return r < 0 ? -EINVAL : 0;
}

int nbd_tls_creds_load(const char *psk_file, const char *cert_dir, struct nbd_tls_creds **ret,
                       const char **ret_file)
{
    if (!psk_file == !cert_dir)
        return -EINVAL;
    struct nbd_tls_creds *cr = calloc(1, sizeof(*cr));
    if (!cr)
        return -ENOMEM;
    *ret_file = psk_file;
    int r = psk_file ? load_psk(cr, psk_file) : load_certs(cr, cert_dir, ret_file);
    if (r < 0) {
        nbd_tls_creds_free(cr);
        return r;
    }
    *ret = cr;
    return 0;
}

const char *nbd_tls_creds_kind(const struct nbd_tls_creds *cr)
{
    if (cr->psk)
        return "PSK";
    return cr->verify_clients ? "X.509, client certificates checked" : "X.509";
}

void nbd_tls_creds_free(struct nbd_tls_creds *cr)
{
    if (!cr)
        return;
    for (size_t i = 0; i < cr->nkeys; i++) {
        explicit_bzero(cr->keys[i].key, cr->keys[i].len);
        free(cr->keys[i].key);
        free(cr->keys[i].user);
    }
    free(cr->keys);
    if (cr->psk_cred)
        gnutls_psk_free_server_credentials(cr->psk_cred);
    if (cr->cert_cred)
        gnutls_certificate_free_credentials(cr->cert_cred);
    free(cr);
}

/* ---- a client's session -------------------------------------------------- */

static ssize_t tls_recv(struct nbd_transport *t, void *buf, size_t len)
{
    for (;;) {
        ssize_t r = gnutls_record_recv(t->tls->s, buf, len);
        if (r >= 0)
            return r;
        /* SO_RCVTIMEO passed (nbd-transport.c): the caller judges; a retry resumes the record. */
        if (r == GNUTLS_E_AGAIN) {
            errno = EAGAIN;
            return -1;
        }
        /* A renegotiation is refused: TLS 1.3 has none, and we need none. */
        if (r != GNUTLS_E_REHANDSHAKE && !gnutls_error_is_fatal((int)r))
            continue;
        errno = ECONNRESET;
        return -1;
    }
}

static ssize_t tls_sendv(struct nbd_transport *t, const struct iovec *iov, int iovcnt)
{
    struct nbd_tls_session *ts = t->tls;
    const void *p = ts->stage;
    size_t n = 0;

    if (iov[0].iov_len >= TLS_RECORD_MAX || (iovcnt == 1 && iov[0].iov_len > 0)) {
        p = iov[0].iov_base;
        n = iov[0].iov_len < TLS_RECORD_MAX ? iov[0].iov_len : TLS_RECORD_MAX;
    } else {
        for (int i = 0; i < iovcnt && n < TLS_RECORD_MAX; i++) {
            size_t take = iov[i].iov_len < TLS_RECORD_MAX - n ? iov[i].iov_len
                                                              : TLS_RECORD_MAX - n;
            memcpy(ts->stage + n, iov[i].iov_base, take);
            n += take;
        }
    }
    for (;;) {
        ssize_t r = gnutls_record_send(ts->s, p, n);
        if (r >= 0)
            return r;
        if (r == GNUTLS_E_AGAIN) {
            /* SO_SNDTIMEO passed: no progress; the record can never be finished. */
            nbd_transport_stalled(t);
            return -1;
        }
        if (r != GNUTLS_E_INTERRUPTED) {
            errno = EPIPE;
            return -1;
        }
    }
}

static void tls_end(struct nbd_transport *t, bool clean)
{
    struct nbd_tls_session *ts = t->tls;

    /* close_notify, so that the client knows the end was meant; only ours to send. */
    if (clean)
        (void)gnutls_bye(ts->s, GNUTLS_SHUT_WR);
    gnutls_deinit(ts->s);
    free(ts);
    t->tls = NULL;
}

static const struct nbd_transport_ops tls_ops = {
    .recv = tls_recv,
    .sendv = tls_sendv,
    .end = tls_end,
};

/* A session's priorities and credentials.  A GnuTLS error. */
static int tls_setup(gnutls_session_t s, const struct nbd_tls_creds *cr)
{
    int r;

    gnutls_session_set_ptr(s, (void *)cr);
    if (cr->psk) {
        r = gnutls_set_default_priority_append(s, "+ECDHE-PSK:+DHE-PSK:+PSK", NULL, 0);
        if (r >= 0)
            r = gnutls_credentials_set(s, GNUTLS_CRD_PSK, cr->psk_cred);
        return r;
    }
    r = gnutls_set_default_priority(s);
    if (r >= 0)
        r = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cr->cert_cred);
    if (r >= 0 && cr->verify_clients)
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
    return r;
}

int nbd_tls_start(struct nbd_transport *t, const struct nbd_tls_creds *cr)
{
    struct nbd_tls_session *ts = calloc(1, sizeof(*ts));
    int r;

    if (!ts)
        return -ENOMEM;
    if (gnutls_init(&ts->s, GNUTLS_SERVER | GNUTLS_NO_SIGNAL) < 0) {
        free(ts);
        return -ENOMEM;
    }
    if (tls_setup(ts->s, cr) < 0) {
        r = -ENOMEM;
        goto fail;
    }
    gnutls_transport_set_int(ts->s, t->fd);
    gnutls_handshake_set_timeout(ts->s, GNUTLS_INDEFINITE_TIMEOUT);
    do
        r = gnutls_handshake(ts->s);
    while (r < 0 && !gnutls_error_is_fatal(r));
    if (r < 0) {
        bool io = r == GNUTLS_E_PULL_ERROR || r == GNUTLS_E_PUSH_ERROR ||
                  r == GNUTLS_E_PREMATURE_TERMINATION;
        /* Tell the client why, if the stream still works. */
        if (!io)
            (void)gnutls_alert_send_appropriate(ts->s, r);
        r = io ? -ECONNRESET : -EACCES;
        goto fail;
    }
    t->tls = ts;
    t->ops = &tls_ops;
    return 0;

fail:
    gnutls_deinit(ts->s);
    free(ts);
    return r;
}
