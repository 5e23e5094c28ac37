/* SPDX-License-Identifier: MIT */
/*
 * The handshake: newstyle fixed negotiation (doc/proto.md in the NBD
 * project), options up to NBD_OPT_GO or NBD_OPT_EXPORT_NAME.  Every option
 * is bounded (doc/nbd.md, "Bounds"): its length by NBD_MAX_OPTION_LEN, the
 * options before transmission by NBD_MAX_OPTIONS; a client past either is
 * dropped.  Unknown options get NBD_REP_ERR_UNSUP and negotiation goes on.
 *
 * TLS (doc/nbd.md, "Transport and TLS"): NBD_OPT_STARTTLS is answered,
 * then the stream becomes a TLS session (io->starttls) and negotiation
 * goes on inside it, starting afresh: what was agreed in plain text
 * (structured replies, the metadata context) was agreed with someone not
 * yet authenticated, and is forgotten.  Input that came after the option,
 * before our answer, would be read as if it came through TLS (an attacker
 * on the path could inject it): such a client is dropped.  When TLS is
 * required, every other option before it gets NBD_REP_ERR_TLS_REQD, and
 * NBD_OPT_EXPORT_NAME, which has no way to fail, ends the connection.
 */
#include "nbd-internal.h"

#include <errno.h>
#include <string.h>

#include "nbd-proto.h"
#include "store.h"

static uint16_t transmission_flags(const struct nbd_conn *c)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN |
                 NBD_FLAG_SEND_CACHE;

    /* A RAM store is consistent across connections: a flush on one covers all. */
    if (c->ne->read_only)
        f |= NBD_FLAG_READ_ONLY;
    else
        f |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
             NBD_FLAG_SEND_FAST_ZERO;
    /* DF only means something with structured replies. */
    if (c->structured)
        f |= NBD_FLAG_SEND_DF;
    return f;
}

/*
 * An option reply: the header, then a (copied, small) and b (sent from
 * where it lies, the option's own data in rx).
 */
static void opt_reply(struct nbd_conn *c, uint32_t opt, uint32_t type,
                      const void *a, size_t alen, const void *b, size_t blen)
{
    struct nbd_tx *tx = c->tx;

    tx_reserve(tx, 2, 20 + alen);
    uint8_t *h = tx_hdr(tx, 20 + alen);
    nbd_put64(h, NBD_REP_MAGIC);
    nbd_put32(h + 8, opt);
    nbd_put32(h + 12, type);
    nbd_put32(h + 16, (uint32_t)(alen + blen));
    if (alen)
        memcpy(h + 20, a, alen);
    tx_data(tx, b, blen);
}

static void opt_ack(struct nbd_conn *c, uint32_t opt)
{
    opt_reply(c, opt, NBD_REP_ACK, NULL, 0, NULL, 0);
}

static void opt_error(struct nbd_conn *c, uint32_t opt, uint32_t err)
{
    opt_reply(c, opt, err, NULL, 0, NULL, 0);
}

static void info_reply(struct nbd_conn *c, uint32_t opt, uint16_t info, const void *s, size_t len)
{
    uint8_t t[2];
    nbd_put16(t, info);
    opt_reply(c, opt, NBD_REP_INFO, t, 2, s, len);
}

/* NBD_OPT_INFO and NBD_OPT_GO.  Returns 1 when GO succeeded. */
static int opt_info(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    uint8_t b[18];

    if (len < 6)
        goto invalid;
    uint32_t name_len = nbd_get32(d);
    if (name_len > len - 6)
        goto invalid;
    uint16_t nreq = nbd_get16(d + 4 + name_len);
    if ((uint64_t)len != 6 + (uint64_t)name_len + 2 * (uint64_t)nreq)
        goto invalid;

    c->tflags = transmission_flags(c);
    nbd_put16(b, NBD_INFO_EXPORT);
    nbd_put64(b + 2, c->size);
    nbd_put16(b + 10, c->tflags);
    opt_reply(c, opt, NBD_REP_INFO, b, 12, NULL, 0);

    /* Each kind of information once, however often it is asked for. */
    bool name = false, description = false;
    for (uint16_t i = 0; i < nreq; i++) {
        uint16_t type = nbd_get16(d + 6 + name_len + 2 * i);
        if (type == NBD_INFO_NAME && !name) {
            info_reply(c, opt, NBD_INFO_NAME, d + 4, name_len);
            name = true;
        } else if (type == NBD_INFO_DESCRIPTION && !description && c->ne->description) {
            info_reply(c, opt, NBD_INFO_DESCRIPTION, c->ne->description,
                       strlen(c->ne->description));
            description = true;
        }
    }
    /* Sent unasked: any size and alignment is served, 4 KiB is best. */
    nbd_put16(b, NBD_INFO_BLOCK_SIZE);
    nbd_put32(b + 2, 1);
    nbd_put32(b + 6, STORE_PAGE_SIZE);
    nbd_put32(b + 10, NBD_MAX_PAYLOAD);
    opt_reply(c, opt, NBD_REP_INFO, b, 14, NULL, 0);
    opt_ack(c, opt);
    return opt == NBD_OPT_GO;

invalid:
    opt_error(c, opt, NBD_REP_ERR_INVALID);
    return 0;
}

/* Does a query name base:allocation?  "base:" asks for every base context. */
static bool query_matches(const uint8_t *q, uint32_t len, bool list)
{
    if (len == strlen(NBD_ALLOCATION) && memcmp(q, NBD_ALLOCATION, len) == 0)
        return true;
    return list && len == 5 && memcmp(q, "base:", 5) == 0;
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. */
static void opt_meta(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    bool list = opt == NBD_OPT_LIST_META_CONTEXT, found = false;

    if (!list && !c->structured) {
        opt_error(c, opt, NBD_REP_ERR_INVALID);
        return;
    }
    /* Check the whole option before answering any of it. */
    if (len < 8)
        goto invalid;
    uint32_t name_len = nbd_get32(d);
    if (name_len > len - 8)
        goto invalid;
    uint32_t nq = nbd_get32(d + 4 + name_len);
    uint64_t pos = 8 + (uint64_t)name_len;
    for (uint32_t i = 0; i < nq; i++) {
        if (len - pos < 4)
            goto invalid;
        uint32_t qlen = nbd_get32(d + pos);
        if (qlen > len - pos - 4)
            goto invalid;
        if (query_matches(d + pos + 4, qlen, list))
            found = true;
        pos += 4 + (uint64_t)qlen;
    }
    if (pos != len)
        goto invalid;

    if (!list)
        c->meta_alloc = false;
    if (list && nq == 0)
        found = true;
    if (found) {
        uint8_t id[4];
        /* In a list the id means nothing; 0 says so. */
        nbd_put32(id, list ? 0 : NBD_CONTEXT_ALLOCATION);
        opt_reply(c, opt, NBD_REP_META_CONTEXT, id, 4, NBD_ALLOCATION, strlen(NBD_ALLOCATION));
        if (!list)
            c->meta_alloc = true;
    }
    opt_ack(c, opt);
    return;

invalid:
    opt_error(c, opt, NBD_REP_ERR_INVALID);
}

/*
 * NBD_OPT_STARTTLS, whose len bytes of data are the last input in rx.
 * 0 to go on negotiating (in TLS, or in plain text after an error reply),
 * -EPROTO, -EACCES or -ECONNRESET to end.
 */
static int opt_starttls(struct nbd_conn *c, uint32_t len)
{
    const struct nbd_io *io = c->io;

    if (io->tls == NBD_TLS_OFF || !io->starttls) {
        opt_error(c, NBD_OPT_STARTTLS, len ? NBD_REP_ERR_INVALID : NBD_REP_ERR_UNSUP);
        return 0;
    }
    if (len != 0 || c->tls_active) {
        opt_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID);
        return 0;
    }
    /* Nothing may follow before our answer: it would pass for TLS input. */
    if (c->rx_len - c->rx_pos != 0)
        return -EPROTO;
    opt_ack(c, NBD_OPT_STARTTLS);
    if (conn_flush(c) < 0)
        return -ECONNRESET;
    int r = io->starttls(io->ctx);
    if (r < 0)
        return r == -EACCES ? -EACCES : -ECONNRESET;
    c->tls_active = true;
    c->structured = false;
    c->meta_alloc = false;
    return 0;
}

/*
 * One option, whose data d of len bytes is in rx.  Returns 0 to go on
 * negotiating, 1 to enter transmission, -ECONNABORTED for NBD_OPT_ABORT,
 * -EACCES for NBD_OPT_EXPORT_NAME when TLS is required and not had.
 */
static int handle_option(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
    if (c->io->tls == NBD_TLS_REQUIRE && !c->tls_active && opt != NBD_OPT_STARTTLS &&
        opt != NBD_OPT_ABORT) {
        if (opt == NBD_OPT_EXPORT_NAME)
            return -EACCES;
        opt_error(c, opt, NBD_REP_ERR_TLS_REQD);
        return 0;
    }
    switch (opt) {
    case NBD_OPT_EXPORT_NAME: {
        /* Any name is this export; there is no way to refuse here anyway. */
        static const uint8_t zeroes[124];
        uint8_t b[10];
        c->tflags = transmission_flags(c);
        nbd_put64(b, c->size);
        nbd_put16(b + 8, c->tflags);
        tx_reserve(c->tx, 2, sizeof(b));
        memcpy(tx_hdr(c->tx, sizeof(b)), b, sizeof(b));
        if (!c->no_zeroes)
            tx_data(c->tx, zeroes, sizeof(zeroes));
        return 1;
    }
    case NBD_OPT_ABORT:
        opt_ack(c, opt);
        return -ECONNABORTED;
    case NBD_OPT_LIST: {
        static const uint8_t empty_name[4];   /* length 0: the export "" */
        if (len != 0) {
            opt_error(c, opt, NBD_REP_ERR_INVALID);
            return 0;
        }
        opt_reply(c, opt, NBD_REP_SERVER, empty_name, sizeof(empty_name), NULL, 0);
        opt_ack(c, opt);
        return 0;
    }
    case NBD_OPT_STARTTLS:
        return opt_starttls(c, len);
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return opt_info(c, opt, d, len);
    case NBD_OPT_STRUCTURED_REPLY:
        if (len != 0) {
            opt_error(c, opt, NBD_REP_ERR_INVALID);
            return 0;
        }
        c->structured = true;
        opt_ack(c, opt);
        return 0;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        opt_meta(c, opt, d, len);
        return 0;
    default:
        opt_error(c, opt, NBD_REP_ERR_UNSUP);
        return 0;
    }
}

/*
 * 0: go to transmission; -ECONNABORTED: the client gave up; -EACCES: TLS
 * required and not had; -EPROTO, -ECONNRESET.
 */
int conn_handshake(struct nbd_conn *c)
{
    uint8_t *h = tx_hdr(c->tx, 18);
    int r;

    nbd_put64(h, NBD_MAGIC);
    nbd_put64(h + 8, NBD_IHAVEOPT);
    nbd_put16(h + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    r = rx_fill(c, 4);
    if (r < 0)
        return r;
    uint32_t cflags = nbd_get32(c->rx + c->rx_pos);
    rx_consume(c, 4);
    /* Unknown flags, or a client that cannot do fixed newstyle: drop it. */
    if (cflags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES) ||
        !(cflags & NBD_FLAG_C_FIXED_NEWSTYLE))
        return -EPROTO;
    c->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;

    for (unsigned n = 0; n < NBD_MAX_OPTIONS; n++) {
        r = rx_fill(c, 16);
        if (r < 0)
            return r;
        const uint8_t *p = c->rx + c->rx_pos;
        uint64_t magic = nbd_get64(p);
        uint32_t opt = nbd_get32(p + 8), len = nbd_get32(p + 12);
        if (magic != NBD_IHAVEOPT || len > NBD_MAX_OPTION_LEN)
            return -EPROTO;
        rx_consume(c, 16);
        r = rx_fill(c, len);
        if (r < 0)
            return r;
        r = handle_option(c, opt, c->rx + c->rx_pos, len);
        /* The reply may point into the option's data: send before consuming. */
        if (conn_flush(c) < 0)
            return -ECONNRESET;
        rx_consume(c, len);
        if (r != 0)
            return r > 0 ? 0 : r;
    }
    return -EPROTO;
}

