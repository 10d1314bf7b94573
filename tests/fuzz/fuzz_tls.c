/* libFuzzer target for the TLS engine: hostile records fed through its
 * memory BIOs, to a server, an unverifying client and a verifying one.
 * Byte 0 picks the role, byte 1 the size of the pieces fed; the rest is
 * the peer's byte stream. Errors must be sticky, reads bounded by their
 * buffer, and the output drained by pulls. */
#include <mpconn/tls.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static mpconn_tls_config *configs[3];

/* A throwaway P-256 key and self-signed certificate for the server role,
 * as PEM text in *cert and *key (caller frees). */
static int make_identity(char **cert, size_t *cert_len, char **key, size_t *key_len)
{
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
    if (!kctx || EVP_PKEY_keygen_init(kctx) != 1 ||
        EVP_PKEY_CTX_set_ec_paramgen_curve_nid(kctx, NID_X9_62_prime256v1) != 1 ||
        EVP_PKEY_keygen(kctx, &pkey) != 1)
        return -1;
    EVP_PKEY_CTX_free(kctx);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
    X509_set_pubkey(x, pkey);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    if (X509_sign(x, pkey, EVP_sha256()) <= 0)
        return -1;
    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(cb, x);
    PEM_write_bio_PrivateKey(kb, pkey, NULL, NULL, 0, NULL, NULL);
    char *p;
    *cert_len = (size_t)BIO_get_mem_data(cb, &p);
    *cert = malloc(*cert_len);
    memcpy(*cert, p, *cert_len);
    *key_len = (size_t)BIO_get_mem_data(kb, &p);
    *key = malloc(*key_len);
    memcpy(*key, p, *key_len);
    BIO_free(cb);
    BIO_free(kb);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char *cert, *key;
    size_t cert_len, key_len;
    if (make_identity(&cert, &cert_len, &key, &key_len) != 0)
        abort();
    if (mpconn_tls_config_new(&configs[0], MPCONN_TLS_SERVER) != 0 ||
        mpconn_tls_config_set_cert_mem(configs[0], cert, cert_len, key, key_len) != 0 ||
        mpconn_tls_config_new(&configs[1], MPCONN_TLS_CLIENT) != 0 ||
        mpconn_tls_config_set_insecure_no_verify(configs[1], 1) != 0 ||
        mpconn_tls_config_new(&configs[2], MPCONN_TLS_CLIENT) != 0)
        abort();
    free(cert);
    free(key);
    return 0;
}

static void drain_output(mpconn_tls *t)
{
    unsigned char out[4096];
    size_t n;
    for (int i = 0; i < 1000 && mpconn_tls_outgoing(t) > 0; i++) {
        if (mpconn_tls_pull(t, out, sizeof out, &n) != 0 || n == 0 || n > sizeof out)
            abort();
    }
    if (mpconn_tls_outgoing(t) != 0)
        abort();
}

/* One step of the engine: the handshake, then reads to "want read". */
static int drive(mpconn_tls *t)
{
    int r = mpconn_tls_handshake(t);
    unsigned char buf[512];
    for (int i = 0; r == 0 && i < 10000; i++) {
        size_t n = 0;
        r = mpconn_tls_read(t, buf, sizeof buf, &n);
        if (n > sizeof buf || (r != 0 && n != 0) || (r == 0 && n == 0))
            abort();
        if (r == 0 && i == 0) {
            size_t w;
            r = mpconn_tls_write(t, buf, n, &w);
            if (r == 0 && w != n)
                abort();
        }
    }
    if (mpconn_tls_pending(t) > 16384)
        abort();
    drain_output(t);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int role = data[0] % 3;
    size_t step = data[1] ? data[1] : 1;
    data += 2;
    size -= 2;
    mpconn_tls *t;
    if (mpconn_tls_new(&t, configs[role], role == 0 ? NULL : "localhost") != 0)
        abort();
    int sticky = 0;
    for (size_t pos = 0; pos < size; pos += step) {
        size_t k = size - pos < step ? size - pos : step;
        if (mpconn_tls_feed(t, data + pos, k) != 0)
            abort();
        int r = drive(t);
        if (sticky && r != sticky)
            abort(); /* a fatal error stays */
        if (r == MPCONN_ERR_TLS || r == MPCONN_ERR_TLSVERIFY || r == MPCONN_ERR_TRUNCATED)
            sticky = r;
        else if (r < 0 && r != MPCONN_ERR_EOF)
            abort(); /* nothing but TLS codes from bytes alone */
    }
    mpconn_tls_feed_eof(t);
    int r = drive(t);
    if (sticky && r != sticky)
        abort();
    r = mpconn_tls_shutdown(t);
    if (sticky && r != sticky)
        abort();
    drain_output(t);
    mpconn_tls_free(t);
    return 0;
}
