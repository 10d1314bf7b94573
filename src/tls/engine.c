/* The TLS engine: one SSL over two memory BIOs, so no I/O happens here.
 * Ciphertext from the peer is fed into one BIO, ciphertext to send is
 * pulled from the other; handshake, read, write and shutdown say "want
 * read" or "want write" instead of blocking. */
#include "tls_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

/* Records carry at most 16 KiB; writing one at a time keeps the output
 * bounded by MPCI_TLS_OUT_MAX plus one record. */
#define RECORD_MAX 16384

static int is_ip_literal(const char *name)
{
    unsigned char a[16];
    return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

/* SNI goes out even unverified (the server may choose its certificate by
 * it); the name is checked against the certificate only when verifying. */
static int set_peer_name(mpconn_tls *t, const char *name, int verify)
{
    X509_VERIFY_PARAM *p = SSL_get0_param(t->ssl);
    if (is_ip_literal(name)) {
        /* RFC 6066: SNI carries host names only, never addresses. */
        if (verify && X509_VERIFY_PARAM_set1_ip_asc(p, name) != 1)
            return mpci_tls_fail(t, -EINVAL, "bad IP address \"%s\"", name);
        return 0;
    }
    if (SSL_set_tlsext_host_name(t->ssl, name) != 1)
        return mpci_tls_fail(t, -EINVAL, "server name \"%s\" cannot be sent as SNI", name);
    if (!verify)
        return 0;
    /* A wildcard stands for one whole label, as browsers and CPython have it. */
    X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (X509_VERIFY_PARAM_set1_host(p, name, 0) != 1)
        return mpci_tls_fail(t, -EINVAL, "bad host name \"%s\"", name);
    return 0;
}

static int engine_setup(mpconn_tls *t)
{
    mpconn_tls_config *cfg = t->cfg;
    int rc = mpci_tls_config_ready(cfg);
    if (rc < 0)
        return rc;
    t->ssl = SSL_new(cfg->ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        t->rbio = t->wbio = NULL;
        return mpci_tls_fail(t, -ENOMEM, "out of memory");
    }
    /* An empty BIO means "not yet" until the transport reports the end. */
    BIO_set_mem_eof_return(t->rbio, -1);
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_app_data(t->ssl, t);
    SSL_set_info_callback(t->ssl, mpci_tls_on_info);
    if (cfg->role == MPCONN_TLS_SERVER) {
        SSL_set_accept_state(t->ssl);
        return 0;
    }
    SSL_set_connect_state(t->ssl);
    if (!t->name)
        return 0;
    if ((rc = set_peer_name(t, t->name, !cfg->insecure)) < 0)
        return rc;
    SSL_SESSION *s = mpci_tls_session_find(cfg, t->name);
    if (s) {
        SSL_set_session(t->ssl, s);
        SSL_SESSION_free(s);
    }
    return 0;
}

int mpconn_tls_new(mpconn_tls **out, mpconn_tls_config *cfg, const char *peer_name)
{
    *out = NULL;
    if (!cfg)
        return -EINVAL;
    if (cfg->role == MPCONN_TLS_SERVER && peer_name)
        return -EINVAL;
    if (cfg->role == MPCONN_TLS_CLIENT && !peer_name && !cfg->insecure)
        return -EINVAL;
    mpconn_tls *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    mpci_tls_config_ref(cfg);
    t->cfg = cfg;
    t->alert_in = -1;
    t->starved = 1;
    if (peer_name && !(t->name = strdup(peer_name))) {
        mpconn_tls_free(t);
        return -ENOMEM;
    }
    ERR_clear_error();
    int rc = engine_setup(t);
    ERR_clear_error();
    if (rc < 0) {
        mpconn_tls_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void mpconn_tls_free(mpconn_tls *t)
{
    if (!t)
        return;
    /* libssl forgets the session of a connection freed before its
     * close_notify. Only a failure should: a client that ends with its
     * last message keeps the ticket for its next connection. */
    if (t->ssl && !t->err && t->hs_done)
        SSL_set_shutdown(t->ssl, SSL_get_shutdown(t->ssl) | SSL_SENT_SHUTDOWN);
    SSL_free(t->ssl); /* and the BIOs */
    mpci_tls_peer_info_free(t);
    free(t->name);
    mpconn_tls_config_free(t->cfg);
    free(t);
}

const char *mpconn_tls_errmsg(const mpconn_tls *t)
{
    return t ? t->errmsg : "";
}

int mpconn_tls_handshake(mpconn_tls *t)
{
    if (t->err)
        return t->err;
    if (t->hs_done)
        return 0;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->hs_done = 1;
        /* nothing left to read unless the peer's first data came along */
        if (!t->eof_in && BIO_ctrl_pending(t->rbio) == 0 && !SSL_has_pending(t->ssl))
            t->starved = 1;
        return 0;
    }
    return mpci_tls_result(t, r);
}

int mpconn_tls_feed(mpconn_tls *t, const void *buf, size_t len)
{
    if (t->eof_in)
        return mpci_tls_fail(t, -EINVAL, "bytes fed after the end of the stream");
    const char *p = buf;
    while (len > 0) {
        int n = len > INT_MAX ? INT_MAX : (int)len;
        int w = BIO_write(t->rbio, p, n);
        if (w <= 0)
            return mpci_tls_fail(t, -ENOMEM, "out of memory buffering ciphertext");
        p += w;
        len -= (size_t)w;
        t->starved = 0;
    }
    return 0;
}

int mpconn_tls_feed_eof(mpconn_tls *t)
{
    if (!t->eof_in) {
        t->eof_in = 1;
        BIO_set_mem_eof_return(t->rbio, 0);
        t->starved = 0; /* a read now has the end to report */
    }
    return 0;
}

size_t mpconn_tls_outgoing(const mpconn_tls *t)
{
    return BIO_ctrl_pending(t->wbio);
}

int mpconn_tls_pull(mpconn_tls *t, void *buf, size_t cap, size_t *n)
{
    *n = 0;
    if (cap == 0 || BIO_ctrl_pending(t->wbio) == 0)
        return 0;
    int r = BIO_read(t->wbio, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (r > 0)
        *n = (size_t)r;
    return 0;
}

int mpconn_tls_read(mpconn_tls *t, void *buf, size_t cap, size_t *n)
{
    *n = 0;
    if (cap == 0)
        return mpci_tls_fail(t, -EINVAL, "read into an empty buffer");
    int rc = mpconn_tls_handshake(t);
    if (rc != 0)
        return rc;
    char *p = buf;
    size_t got = 0;
    /* One record per SSL_read: go on until the buffer is full or the input
     * runs out, so a caller that reads until "want read" strands nothing. */
    while (got < cap) {
        size_t k = 0;
        ERR_clear_error();
        int r = SSL_read_ex(t->ssl, p + got, cap - got, &k);
        if (r == 1) {
            got += k;
            continue;
        }
        rc = mpci_tls_result(t, r);
        if (got == 0) {
            t->starved = 1;
            return rc;
        }
        /* The data goes out now; an end or an error found behind it is
         * reported by the next read (the error is sticky, EOF repeats). */
        if (rc != MPCONN_TLS_WANT_READ)
            t->starved = 0;
        break;
    }
    *n = got;
    return 0;
}

int mpconn_tls_write(mpconn_tls *t, const void *buf, size_t len, size_t *n)
{
    *n = 0;
    int rc = mpconn_tls_handshake(t);
    if (rc != 0)
        return rc;
    if (t->shut_sent)
        return mpci_tls_fail(t, -EPIPE, "write after shutdown");
    const char *p = buf;
    size_t done = 0;
    while (done < len && BIO_ctrl_pending(t->wbio) < MPCI_TLS_OUT_MAX) {
        size_t chunk = len - done < RECORD_MAX ? len - done : RECORD_MAX, k = 0;
        ERR_clear_error();
        int r = SSL_write_ex(t->ssl, p + done, chunk, &k);
        if (r != 1) {
            rc = mpci_tls_result(t, r);
            if (done == 0)
                return rc;
            break;
        }
        done += k;
    }
    if (done == 0 && len > 0)
        return MPCONN_TLS_WANT_WRITE;
    *n = done;
    return 0;
}

size_t mpconn_tls_pending(const mpconn_tls *t)
{
    int n = SSL_pending(t->ssl);
    return n > 0 ? (size_t)n : 0;
}

int mpconn_tls_readable(const mpconn_tls *t)
{
    return SSL_pending(t->ssl) > 0 || !t->starved;
}

int mpconn_tls_shutdown(mpconn_tls *t)
{
    if (t->err)
        return t->err;
    if (t->shut_done)
        return 0;
    if (!t->hs_done)
        return mpci_tls_fail(t, -EINVAL, "shutdown before the handshake completed");
    int r;
    if (!t->shut_sent) {
        t->shut_sent = 1;
        ERR_clear_error();
        r = SSL_shutdown(t->ssl);
        if (r < 0)
            return mpci_tls_result(t, r);
    }
    if (!(SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN)) {
        /* Peek rather than read: plaintext the peer sent before its
         * close_notify stays for mpconn_tls_read, never thrown away. */
        char c;
        size_t k;
        ERR_clear_error();
        r = SSL_peek_ex(t->ssl, &c, 1, &k);
        if (r == 1) {
            t->starved = 0;
            return MPCONN_TLS_WANT_READ;
        }
        int rc = mpci_tls_result(t, r);
        if (rc != MPCONN_ERR_EOF)
            return rc;
    }
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
    t->shut_done = 1;
    return 0;
}

int mpconn_tls_unwrap(mpconn_tls *t, void *buf, size_t cap, size_t *n)
{
    *n = 0;
    if (!t->shut_done)
        return mpci_tls_fail(t, -EINVAL, "unwrap before the shutdown is complete both ways");
    if (cap == 0 || BIO_ctrl_pending(t->rbio) == 0)
        return 0;
    int r = BIO_read(t->rbio, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (r > 0)
        *n = (size_t)r;
    return 0;
}

const char *mpconn_tls_version(const mpconn_tls *t)
{
    return t->hs_done ? SSL_get_version(t->ssl) : NULL;
}

const char *mpconn_tls_cipher(const mpconn_tls *t, int *bits)
{
    const SSL_CIPHER *c = t->hs_done ? SSL_get_current_cipher(t->ssl) : NULL;
    if (bits)
        *bits = c ? SSL_CIPHER_get_bits(c, NULL) : 0;
    return c ? SSL_CIPHER_get_name(c) : NULL;
}

int mpconn_tls_peer_verified(const mpconn_tls *t)
{
    if (!t->hs_done || t->err)
        return 0;
    const mpconn_tls_config *cfg = t->cfg;
    if (cfg->role == MPCONN_TLS_CLIENT ? cfg->insecure
                                       : cfg->verify_client == MPCONN_TLS_VERIFY_NONE)
        return 0;
    return mpci_tls_peer_cert(t) && SSL_get_verify_result(t->ssl) == X509_V_OK;
}

const char *mpconn_tls_peer_subject(mpconn_tls *t)
{
    mpci_tls_peer_info(t);
    return t->subject;
}

const char *mpconn_tls_peer_san(mpconn_tls *t, size_t i)
{
    mpci_tls_peer_info(t);
    return i < t->nsans ? t->sans[i] : NULL;
}

const char *mpconn_tls_server_name(const mpconn_tls *t)
{
    if (t->cfg->role == MPCONN_TLS_CLIENT)
        return t->name;
    return t->hs_done ? SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}

int mpconn_tls_session_reused(const mpconn_tls *t)
{
    return t->hs_done && SSL_session_reused(t->ssl);
}
