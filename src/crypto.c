/* HMAC over OpenSSL libcrypto and kernel randomness (getrandom), the only two
 * cryptographic needs of the authentication handshake. */
#include "mpci.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* CPython's digest names differ from OpenSSL's for SHA-3. */
static const struct {
    const char *ours, *theirs;
} names[MPCI_MAC_DIGESTS] = {
    {"md5", "MD5"},           {"sha256", "SHA256"},     {"sha384", "SHA384"},
    {"sha3_256", "SHA3-256"}, {"sha3_384", "SHA3-384"},
};

static int digest_index(const char *digest)
{
    for (int i = 0; i < MPCI_MAC_DIGESTS; i++)
        if (strcmp(digest, names[i].ours) == 0)
            return i;
    return -1;
}

static const char *openssl_name(const char *digest)
{
    int i = digest_index(digest);
    return i < 0 ? NULL : names[i].theirs;
}

int mpci_hmac(const char *digest, const uint8_t *key, size_t keylen, const uint8_t *msg, size_t len,
              uint8_t *out)
{
    /* OpenSSL treats a NULL key as "keep the previous key", so an empty key
     * must still be a real pointer. */
    static const uint8_t empty = 0;
    const char *name = digest ? openssl_name(digest) : NULL;
    if (!name || !out || (!key && keylen) || (!msg && len) || keylen > INT_MAX)
        return -EINVAL;
    const EVP_MD *md = EVP_get_digestbyname(name);
    if (!md)
        return -ENOTSUP; /* e.g. MD5 in a FIPS-only configuration */
    unsigned int outlen = 0;
    if (!HMAC(md, keylen ? key : &empty, (int)keylen, len ? msg : &empty, len, out, &outlen))
        return -ENOTSUP;
    return (int)outlen;
}

mpci_mac_keys *mpci_mac_keys_new(const uint8_t *key, size_t keylen)
{
    mpci_mac_keys *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    if (pthread_mutex_init(&k->lock, NULL) != 0) {
        free(k);
        return NULL;
    }
    k->key = key;
    k->keylen = keylen;
    return k;
}

void mpci_mac_keys_free(mpci_mac_keys *k)
{
    if (!k)
        return;
    for (int i = 0; i < MPCI_MAC_DIGESTS; i++)
        EVP_MAC_CTX_free(k->keyed[i]);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

/* The context keyed for digest i, made once; the caller holds the lock. */
static EVP_MAC_CTX *keyed_ctx(mpci_mac_keys *k, int i)
{
    if (k->keyed[i])
        return EVP_MAC_init(k->keyed[i], NULL, 0, NULL) ? k->keyed[i] : NULL;
    static const uint8_t empty = 0;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context holds its own reference */
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)names[i].theirs, 0),
        OSSL_PARAM_construct_end()};
    if (!ctx || !EVP_MAC_init(ctx, k->keylen ? k->key : &empty, k->keylen, params)) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return k->keyed[i] = ctx;
}

int mpci_mac_compute(mpci_mac_keys *k, const char *digest, const uint8_t *key, size_t keylen,
                     const uint8_t *msg, size_t len, uint8_t *out)
{
    int i = digest ? digest_index(digest) : -1;
    if (!k || i < 0 || key != k->key || keylen != k->keylen || pthread_mutex_trylock(&k->lock))
        return mpci_hmac(digest, key, keylen, msg, len, out);
    EVP_MAC_CTX *ctx = keyed_ctx(k, i);
    size_t outlen = 0;
    int ok =
        ctx && EVP_MAC_update(ctx, msg, len) && EVP_MAC_final(ctx, out, &outlen, EVP_MAX_MD_SIZE);
    if (ctx && !ok) {
        /* Its state is unknown now: key a fresh one next time. */
        EVP_MAC_CTX_free(ctx);
        k->keyed[i] = NULL;
    }
    pthread_mutex_unlock(&k->lock);
    return ok ? (int)outlen : mpci_hmac(digest, key, keylen, msg, len, out);
}

int mpci_random(uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(buf, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}
