/* The cache of keyed HMAC contexts and challenge nonces that an authkey
 * keeps between handshakes. */
#define _GNU_SOURCE /* MADV_WIPEONFORK */
#include "conn/authcache.h"
#include "base/random.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

/* The nonce pool has its own page so that the kernel can wipe it in a
 * forked child: two processes that share a listener (or a client's opts)
 * must never issue the same challenge, or an answer seen by one could be
 * replayed to the other. The child finds left == 0 and draws its own. */
typedef struct mpci_nonce_pool {
    size_t left;
    uint8_t bytes[32 * MPCI_NONCE_LEN];
} nonce_pool;

static nonce_pool *pool_new(void)
{
#ifdef MADV_WIPEONFORK
    void *p =
        mmap(NULL, sizeof(nonce_pool), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (madvise(p, sizeof(nonce_pool), MADV_WIPEONFORK) == 0)
        return p;
    munmap(p, sizeof(nonce_pool));
#endif
    return NULL;
}

mpci_auth_cache *mpci_auth_cache_new(const uint8_t *key, size_t keylen)
{
    mpci_auth_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return NULL;
    }
    c->key = key;
    c->keylen = keylen;
    c->pool = pool_new();
    return c;
}

void mpci_auth_cache_free(mpci_auth_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < MPCI_MAC_DIGESTS; i++)
        EVP_MAC_CTX_free(c->keyed[i]);
    if (c->pool)
        munmap(c->pool, sizeof *c->pool);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int mpci_nonce(mpci_auth_cache *c, uint8_t out[MPCI_NONCE_LEN])
{
    if (!c || !c->pool || pthread_mutex_trylock(&c->lock))
        return mpci_random(out, MPCI_NONCE_LEN);
    nonce_pool *p = c->pool;
    int r = 0;
    if (p->left < MPCI_NONCE_LEN) {
        r = mpci_random(p->bytes, sizeof p->bytes);
        p->left = r < 0 ? 0 : sizeof p->bytes;
    }
    if (r == 0) {
        p->left -= MPCI_NONCE_LEN;
        memcpy(out, p->bytes + p->left, MPCI_NONCE_LEN);
        /* A nonce leaves the pool once. */
        memset(p->bytes + p->left, 0, MPCI_NONCE_LEN);
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

/* The context keyed for digest i, made once; the caller holds the lock. */
static EVP_MAC_CTX *keyed_ctx(mpci_auth_cache *k, int i)
{
    if (k->keyed[i])
        return EVP_MAC_init(k->keyed[i], NULL, 0, NULL) ? k->keyed[i] : NULL;
    static const uint8_t empty = 0;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context holds its own reference */
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                            (char *)mpci_mac_openssl_name(i), 0),
                           OSSL_PARAM_construct_end()};
    if (!ctx || !EVP_MAC_init(ctx, k->keylen ? k->key : &empty, k->keylen, params)) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return k->keyed[i] = ctx;
}

int mpci_mac_compute(mpci_auth_cache *k, const char *digest, const uint8_t *key, size_t keylen,
                     const uint8_t *msg, size_t len, uint8_t *out)
{
    int i = digest ? mpci_mac_digest_index(digest) : -1;
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
