/* HMAC over OpenSSL libcrypto and kernel randomness (getrandom), the only two
 * cryptographic needs of the authentication handshake. */
#include "mpci.h"

#include <errno.h>
#include <limits.h>
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

/* OpenSSL 3 looks the MAC and the digest up by name on every one-shot
 * HMAC(); a listener computes two MACs per peer with the same key, so it
 * keys a context per digest once and copies it for each message. */
void mpci_mac_cache_init(mpci_mac_cache *c, const uint8_t *key, size_t keylen)
{
    memset(c, 0, sizeof *c);
    c->key = key;
    c->keylen = keylen;
}

void mpci_mac_cache_clear(mpci_mac_cache *c)
{
    for (int i = 0; i < MPCI_MAC_DIGESTS; i++)
        EVP_MAC_CTX_free(c->keyed[i]);
    EVP_MAC_free(c->mac);
    memset(c, 0, sizeof *c);
}

static EVP_MAC_CTX *keyed_ctx(mpci_mac_cache *c, int i)
{
    if (c->keyed[i])
        return c->keyed[i];
    static const uint8_t empty = 0;
    if (!c->mac && !(c->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)))
        return NULL;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(c->mac);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)names[i].theirs, 0),
        OSSL_PARAM_construct_end()};
    if (!ctx || !EVP_MAC_init(ctx, c->keylen ? c->key : &empty, c->keylen, params)) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return c->keyed[i] = ctx;
}

int mpci_hmac_cached(mpci_mac_cache *c, const char *digest, const uint8_t *key, size_t keylen,
                     const uint8_t *msg, size_t len, uint8_t *out)
{
    int i = digest ? digest_index(digest) : -1;
    EVP_MAC_CTX *base =
        c && i >= 0 && key == c->key && keylen == c->keylen ? keyed_ctx(c, i) : NULL;
    EVP_MAC_CTX *ctx = base ? EVP_MAC_CTX_dup(base) : NULL;
    if (!ctx)
        return mpci_hmac(digest, key, keylen, msg, len, out);
    size_t outlen = 0;
    int ok = EVP_MAC_update(ctx, msg, len) && EVP_MAC_final(ctx, out, &outlen, EVP_MAX_MD_SIZE);
    EVP_MAC_CTX_free(ctx);
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
