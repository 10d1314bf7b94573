/* HMAC over OpenSSL libcrypto and kernel randomness (getrandom), the only two
 * cryptographic needs of the authentication handshake. */
#include "mpci.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

/* CPython's digest names differ from OpenSSL's for SHA-3. */
static const char *openssl_name(const char *digest)
{
    static const struct {
        const char *ours, *theirs;
    } names[] = {
        {"md5", "MD5"},           {"sha256", "SHA256"},     {"sha384", "SHA384"},
        {"sha3_256", "SHA3-256"}, {"sha3_384", "SHA3-384"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(digest, names[i].ours) == 0)
            return names[i].theirs;
    return NULL;
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
