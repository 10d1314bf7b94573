/* Why a TLS connection failed, in words: libssl's verify callback and alert
 * notes are gathered per engine, and a failed call is turned into one of
 * mpconn's codes with a message naming the reason. Also the peer
 * certificate's subject and subjectAltName entries as text. */
#include "tls_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *mpci_tls_queue_text(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r)
        snprintf(buf, cap, "%s", r);
    else if (e)
        snprintf(buf, cap, "error %lu", e);
    else
        snprintf(buf, cap, "unknown reason");
    return buf;
}

int mpci_tls_fail(mpconn_tls *t, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->errmsg, sizeof t->errmsg, fmt, ap);
    va_end(ap);
    if (code == MPCONN_ERR_TLS || code == MPCONN_ERR_TLSVERIFY || code == MPCONN_ERR_TRUNCATED)
        t->err = code;
    return code;
}

/* Bytes from a certificate shown in a message: printable ASCII only, so a
 * hostile name cannot forge the text around it. */
static void printable(char *dst, size_t cap, const unsigned char *src, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; i < len && j + 1 < cap; i++)
        dst[j++] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : '?';
    if (cap)
        dst[j] = 0;
}

static void name_text(X509_NAME *name, char *dst, size_t cap)
{
    dst[0] = 0;
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        if (n > 0)
            printable(dst, cap, (const unsigned char *)p, (size_t)n);
    }
    BIO_free(b);
}

int mpci_tls_on_verify(int ok, X509_STORE_CTX *store)
{
    if (ok)
        return ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    mpconn_tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
    if (t && !t->verr) { /* the first failure is the reason; later ones follow from it */
        t->verr = X509_STORE_CTX_get_error(store);
        t->vdepth = X509_STORE_CTX_get_error_depth(store);
        X509 *c = X509_STORE_CTX_get_current_cert(store);
        if (c)
            name_text(X509_get_subject_name(c), t->vsubject, sizeof t->vsubject);
    }
    return ok;
}

void mpci_tls_on_info(const SSL *ssl, int where, int ret)
{
    if (!(where & SSL_CB_READ_ALERT) || ((ret >> 8) & 0xff) != SSL3_AL_FATAL)
        return;
    mpconn_tls *t = SSL_get_app_data(ssl);
    if (t && t->alert_in < 0)
        t->alert_in = ret & 0xff;
}

static int verify_failure(mpconn_tls *t)
{
    long vr = SSL_get_verify_result(t->ssl);
    int code = t->verr ? t->verr : (int)vr;
    const char *why = X509_verify_cert_error_string(code);
    char expected[300] = "";
    if (t->name && (code == X509_V_ERR_HOSTNAME_MISMATCH || code == X509_V_ERR_IP_ADDRESS_MISMATCH))
        snprintf(expected, sizeof expected, ": the certificate is not for \"%s\"", t->name);
    return mpci_tls_fail(t, MPCONN_ERR_TLSVERIFY,
                         "certificate verify failed: %s%s (depth %d, subject \"%s\")", why,
                         expected, t->vdepth, t->vsubject[0] ? t->vsubject : "?");
}

static void version_range(const mpconn_tls *t, char *buf, size_t cap)
{
    long lo = SSL_get_min_proto_version(t->ssl), hi = SSL_get_max_proto_version(t->ssl);
    snprintf(buf, cap, "%s to %s", lo == TLS1_3_VERSION ? "TLSv1.3" : "TLSv1.2",
             hi == TLS1_2_VERSION ? "TLSv1.2" : "TLSv1.3");
}

static int alert_failure(mpconn_tls *t, const char *rtext)
{
    int a = t->alert_in;
    const char *desc = SSL_alert_desc_string_long(a);
    char range[64];
    switch (a) {
    case 116: /* certificate_required (TLS 1.3) */
        return mpci_tls_fail(t, MPCONN_ERR_TLSVERIFY,
                             "the server requires a client certificate and none was sent "
                             "(alert \"certificate required\")");
    case SSL3_AD_BAD_CERTIFICATE:
    case SSL3_AD_UNSUPPORTED_CERTIFICATE:
    case SSL3_AD_CERTIFICATE_REVOKED:
    case SSL3_AD_CERTIFICATE_EXPIRED:
    case SSL3_AD_CERTIFICATE_UNKNOWN:
    case TLS1_AD_UNKNOWN_CA:
        return mpci_tls_fail(t, MPCONN_ERR_TLSVERIFY,
                             "the peer refused this side's certificate (alert \"%s\")", desc);
    case TLS1_AD_PROTOCOL_VERSION:
        version_range(t, range, sizeof range);
        return mpci_tls_fail(t, MPCONN_ERR_TLS,
                             "no TLS version in common with the peer (alert \"protocol "
                             "version\"); this side accepts %s",
                             range);
    default:
        return mpci_tls_fail(t, MPCONN_ERR_TLS,
                             "the peer ended the connection with the alert \"%s\" (%s)", desc,
                             rtext);
    }
}

int mpci_tls_result(mpconn_tls *t, int r)
{
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        t->starved = 1;
        return MPCONN_TLS_WANT_READ;
    }
    if (e == SSL_ERROR_WANT_WRITE)
        return MPCONN_TLS_WANT_WRITE;
    if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(t->errmsg, sizeof t->errmsg, "the peer closed the TLS stream (close_notify)");
        return MPCONN_ERR_EOF;
    }
    unsigned long ec = ERR_peek_error();
    int reason = ec ? ERR_GET_REASON(ec) : 0;
    char rtext[200];
    mpci_tls_queue_text(rtext, sizeof rtext);
    int eof = 0;
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
    eof = reason == SSL_R_UNEXPECTED_EOF_WHILE_READING;
#endif
    if (e == SSL_ERROR_SYSCALL && t->eof_in)
        eof = 1; /* libssl before 3.0 says so for an end of stream */
    if (eof) {
        if (!t->hs_done)
            return mpci_tls_fail(t, MPCONN_ERR_TLS,
                                 "the peer closed the stream during the TLS handshake");
        return mpci_tls_fail(t, MPCONN_ERR_TRUNCATED,
                             "the peer's stream ended without close_notify: what came may "
                             "be truncated");
    }
    if (e == SSL_ERROR_SYSCALL && !ec)
        return mpci_tls_fail(t, MPCONN_ERR_TLS, "TLS failure with no reason given");
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED)
        return verify_failure(t);
    if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
        return mpci_tls_fail(t, MPCONN_ERR_TLSVERIFY,
                             "the client sent no certificate and this server requires one");
    if (t->alert_in >= 0)
        return alert_failure(t, rtext);
    if (reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_NO_PROTOCOLS_AVAILABLE) {
        char range[64];
        version_range(t, range, sizeof range);
        return mpci_tls_fail(t, MPCONN_ERR_TLS,
                             "no TLS version in common with the peer (%s); this side accepts %s",
                             rtext, range);
    }
    return mpci_tls_fail(t, MPCONN_ERR_TLS, "TLS error: %s", rtext);
}

X509 *mpci_tls_peer_cert(const mpconn_tls *t)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    return SSL_get0_peer_certificate(t->ssl);
#else
    X509 *c = SSL_get_peer_certificate(t->ssl);
    X509_free(c); /* the session keeps its own reference */
    return c;
#endif
}

int mpci_tls_peer_info(mpconn_tls *t)
{
    if (t->info_done || !t->hs_done)
        return 0;
    t->info_done = 1;
    X509 *c = mpci_tls_peer_cert(t);
    if (!c)
        return 0;
    char buf[512];
    name_text(X509_get_subject_name(c), buf, sizeof buf);
    t->subject = strdup(buf);
    GENERAL_NAMES *names = X509_get_ext_d2i(c, NID_subject_alt_name, NULL, NULL);
    int n = names ? sk_GENERAL_NAME_num(names) : 0;
    if (n > 0)
        t->sans = calloc((size_t)n, sizeof *t->sans);
    for (int i = 0; t->sans && i < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type == GEN_DNS) {
            char v[256];
            printable(v, sizeof v, ASN1_STRING_get0_data(g->d.dNSName),
                      (size_t)ASN1_STRING_length(g->d.dNSName));
            snprintf(buf, sizeof buf, "DNS:%s", v);
        } else if (g->type == GEN_IPADD) {
            char v[INET6_ADDRSTRLEN];
            int len = ASN1_STRING_length(g->d.iPAddress);
            const unsigned char *p = ASN1_STRING_get0_data(g->d.iPAddress);
            if ((len != 4 && len != 16) ||
                !inet_ntop(len == 4 ? AF_INET : AF_INET6, p, v, sizeof v))
                continue;
            snprintf(buf, sizeof buf, "IP:%s", v);
        } else {
            continue;
        }
        char *s = strdup(buf);
        if (s)
            t->sans[t->nsans++] = s;
    }
    GENERAL_NAMES_free(names);
    return 0;
}

void mpci_tls_peer_info_free(mpconn_tls *t)
{
    free(t->subject);
    for (size_t i = 0; i < t->nsans; i++)
        free(t->sans[i]);
    free(t->sans);
}
