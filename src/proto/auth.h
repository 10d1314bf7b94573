/* The challenge/response authentication of multiprocessing.connection as a
 * sans-I/O machine (both roles; legacy and {digest}), and the one-shot HMAC
 * it computes with when no faster MAC is lent to it. */
#ifndef MPCI_PROTO_AUTH_H
#define MPCI_PROTO_AUTH_H

#include "base/err.h"

#include <stddef.h>
#include <stdint.h>

#define MPCI_AUTH_MSG_MAX 256 /* the cap CPython puts on handshake messages */
#define MPCI_NONCE_LEN 40
#define MPCI_LEGACY_NONCE_LEN 20
#define MPCI_AUTH_CHALLENGE_LEN 11 /* "#CHALLENGE#" */

/* MPCI_AUTH_CLIENT_SERIAL is a client in CPython's order: its challenge
 * goes out only after #WELCOME#, a round trip later than MPCI_AUTH_CLIENT
 * sends it (right behind its answer). */
enum { MPCI_AUTH_SERVER, MPCI_AUTH_CLIENT, MPCI_AUTH_CLIENT_SERIAL };
enum { MPCI_AUTH_NEED_INPUT, MPCI_AUTH_DONE, MPCI_AUTH_FAILED };

#define MPCI_AUTH_QUEUE 3
/* The longest message the machine sends: its challenge, "#CHALLENGE#" +
 * "{sha3_384}" + the nonce (61 bytes); an answer is at most "{sha3_384}" +
 * a 48-byte MAC. The most it holds undrained: a server's challenge,
 * WELCOME and answer, or a client's answer, challenge and verdict. */
#define MPCI_AUTH_CHALLENGE_MAX (2 + 8 + MPCI_NONCE_LEN)
#define MPCI_AUTH_OUT_MAX 64
#define MPCI_AUTH_MAC_MAX 48 /* the longest MAC of the digests allowed (sha384, sha3_384) */
/* The room for a failure's reason: the longest the machine and the
 * handshake write is about 120 characters. */
#define MPCI_AUTH_ERRMSG_MAX 160

/* A MAC computed by the layer above (a cache of keyed contexts): the
 * machine's own mpci_hmac gives the same bytes, more slowly. Returns the
 * MAC's length or a negative code. */
typedef int (*mpci_mac_fn)(void *ctx, const char *digest, const uint8_t *key, size_t keylen,
                           const uint8_t *msg, size_t len, uint8_t *out);

/* The key, and the MAC the layer above lends for it (NULL: mpci_hmac): the
 * same for every machine of one authkey, so a listener's peers share one,
 * which each machine borrows for its life. */
typedef struct mpci_auth_key {
    const uint8_t *key;
    size_t keylen;
    mpci_mac_fn mac;
    void *mac_ctx;
} mpci_auth_key;

/* The challenge-response machine of one side. It consumes whole messages and
 * produces whole messages (at most MPCI_AUTH_QUEUE queued at a time: the
 * client sends its own challenge right behind its answer, saving a round
 * trip; a server fed without draining holds challenge, WELCOME and answer).
 * Randomness comes in through the nonce so the machine is deterministic.
 * A listener keeps one per peer in its handshake, so it is laid out small:
 * the queue names its messages (the challenge and the answer are kept once,
 * WELCOME and FAILURE are constants), and the failure's reason takes the
 * room of the challenge, the answer and the expected MAC, which a failed
 * machine no longer needs (a challenge or an answer not yet taken is
 * dropped when the machine fails: only WELCOME and FAILURE are left). */
typedef struct mpci_auth {
    uint8_t role, state, step;
    uint8_t allow_md5;
    int code;               /* failure code once FAILED */
    const mpci_auth_key *k; /* borrowed for the machine's life */
    uint8_t challenge_len, answer_len;
    uint8_t expect_len; /* 0: not made */
    uint8_t nout, outhead;
    uint8_t queue[MPCI_AUTH_QUEUE]; /* what each queued message is */
    uint8_t own_digest;             /* the digest our challenge asks for (auth.c's table) */
    union {
        struct {
            /* "#CHALLENGE#" right before the MESSAGE we delivered: the
             * challenge goes out from here. */
            uint8_t prefix[MPCI_AUTH_CHALLENGE_LEN];
            uint8_t challenge[MPCI_AUTH_CHALLENGE_MAX]; /* the MESSAGE (sans #CHALLENGE#) */
            uint8_t expect[MPCI_AUTH_MAC_MAX];          /* client: the MAC it wants back */
            uint8_t answer[MPCI_AUTH_OUT_MAX];          /* our answer to the peer's challenge */
        };
        char errmsg[MPCI_AUTH_ERRMSG_MAX]; /* failure reason once FAILED */
    };
} mpci_auth;

/* digest: "sha256", "md5", "sha384", "sha3_256", "sha3_384" or "legacy".
 * nonce must hold MPCI_NONCE_LEN bytes (the first 20 are used for legacy).
 * A server queues its challenge at once. Returns 0 or -EINVAL. */
int mpci_auth_init(mpci_auth *a, int role, const mpci_auth_key *k, const char *digest,
                   int allow_md5, const uint8_t *nonce);
/* Feeds one received message; returns the new state. */
int mpci_auth_feed(mpci_auth *a, const uint8_t *msg, size_t len);
/* Next message to send, in order; returns 0 when none is queued. The
 * pointer stays valid until the next feed. */
int mpci_auth_next_out(mpci_auth *a, const uint8_t **msg, size_t *len);

/* Whether a message is a server's challenge: what a side without an
 * authkey looks for in its first message, which starts with these
 * MPCI_AUTH_CHALLENGE_LEN bytes ("#CHALLENGE#"). */
int mpci_auth_is_challenge(const uint8_t *msg, size_t len);

/* The digests a MAC can be made with (CPython's names). */
#define MPCI_MAC_DIGESTS 5
/* The index of a digest name among them, or -1. */
int mpci_mac_digest_index(const char *digest);
/* OpenSSL's name of digest i. */
const char *mpci_mac_openssl_name(int i);

/* One-shot HMAC of msg with the named digest into out (EVP_MAX_MD_SIZE
 * room); returns its length or a negative code. */
int mpci_hmac(const char *digest, const uint8_t *key, size_t keylen, const uint8_t *msg, size_t len,
              uint8_t *out);

#endif
