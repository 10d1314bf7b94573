/* One-shot HMAC over OpenSSL libcrypto, with CPython's digest names: what
 * the auth machine computes with when nobody lends it a faster MAC. */
#include "proto/auth.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

/* CPython's digest names differ from OpenSSL's for SHA-3. */
static const struct {
    const char *ours, *theirs;
} names[MPCI_MAC_DIGESTS] = {
    {"md5", "MD5"},           {"sha256", "SHA256"},     {"sha384", "SHA384"},
    {"sha3_256", "SHA3-256"}, {"sha3_384", "SHA3-384"},
};

int mpci_mac_digest_index(const char *digest)
{
    for (int i = 0; i < MPCI_MAC_DIGESTS; i++)
        if (strcmp(digest, names[i].ours) == 0)
            return i;
    return -1;
}

const char *mpci_mac_openssl_name(int i)
{
    return names[i].theirs;
}

int mpci_hmac(const char *digest, const uint8_t *key, size_t keylen, const uint8_t *msg, size_t len,
              uint8_t *out)
{
    /* OpenSSL treats a NULL key as "keep the previous key", so an empty key
     * must still be a real pointer. */
    static const uint8_t empty = 0;
    int i = digest ? mpci_mac_digest_index(digest) : -1;
    const char *name = i < 0 ? NULL : names[i].theirs;
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
