/* What the handshakes of one authkey keep between them: a keyed HMAC
 * context per digest, made on first use and re-initialised for each MAC
 * (which keeps the key), and a pool of nonces drawn from the kernel in
 * batches, in a page the kernel wipes in a forked child. A MAC or a nonce
 * is one call, so a mutex serialises the few threads that may share a
 * cache; a thread that finds it taken goes one-shot instead of waiting. */
#ifndef MPCI_CONN_AUTHCACHE_H
#define MPCI_CONN_AUTHCACHE_H

#include "base/random.h"
#include "proto/auth.h"

#include <pthread.h>

typedef struct mpci_auth_cache {
    const uint8_t *key; /* borrowed */
    size_t keylen;
    pthread_mutex_t lock;
    void *keyed[MPCI_MAC_DIGESTS]; /* EVP_MAC_CTX */
    struct mpci_nonce_pool *pool;  /* NULL: a getrandom() per nonce */
} mpci_auth_cache;

/* NULL when out of memory (callers then go without). */
mpci_auth_cache *mpci_auth_cache_new(const uint8_t *key, size_t keylen);
void mpci_auth_cache_free(mpci_auth_cache *c);
/* mpci_hmac through c when c (may be NULL) holds this key. */
int mpci_mac_compute(mpci_auth_cache *c, const char *digest, const uint8_t *key, size_t keylen,
                     const uint8_t *msg, size_t len, uint8_t *out);
/* A fresh challenge nonce, from c's pool when c (may be NULL) has one. */
int mpci_nonce(mpci_auth_cache *c, uint8_t out[MPCI_NONCE_LEN]);

#endif
