/* The mutual HMAC challenge/response of multiprocessing.connection as a
 * sans-I/O machine: whole messages in, whole messages out, both roles, the
 * legacy (CPython <= 3.11, raw HMAC-MD5) and the {digest} (>= 3.12) forms. */
#include "proto/auth.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define CHALLENGE "#CHALLENGE#"
#define WELCOME "#WELCOME#"
#define FAILURE "#FAILURE#"
#define CHALLENGE_LEN (sizeof CHALLENGE - 1)
#define MD5_LEN 16
#define NAME_MAX_LEN 8 /* "sha3_384" */
_Static_assert(CHALLENGE_LEN == MPCI_AUTH_CHALLENGE_LEN, "the prefix a keyless side looks for");
_Static_assert(CHALLENGE_LEN + MPCI_AUTH_CHALLENGE_MAX <= MPCI_AUTH_OUT_MAX,
               "our challenge is a message the machine may send");
_Static_assert(2 + NAME_MAX_LEN + MPCI_AUTH_MAC_MAX <= MPCI_AUTH_OUT_MAX,
               "the answer's room holds \"{sha3_384}\" and its MAC");
_Static_assert(offsetof(mpci_auth, challenge) == offsetof(mpci_auth, prefix) + CHALLENGE_LEN,
               "the challenge goes out as one message from its prefix");
#define WELCOME_LEN (sizeof WELCOME - 1)
#define FAILURE_LEN (sizeof FAILURE - 1)

/* What a queued message is: its bytes are the machine's (the challenge,
 * the answer) or constants. */
enum { OUT_CHALLENGE, OUT_ANSWER, OUT_WELCOME, OUT_FAILURE };

/* Where each role is in its sequence. The server delivers first, then
 * answers; the client answers first, then delivers. */
enum {
    SERVER_WAIT_ANSWER,
    SERVER_WAIT_CHALLENGE,
    SERVER_WAIT_RESULT,
    CLIENT_WAIT_CHALLENGE,
    CLIENT_WAIT_RESULT,
    CLIENT_WAIT_ANSWER,
    SERIAL_WAIT_CHALLENGE, /* MPCI_AUTH_CLIENT_SERIAL: answer only */
    SERIAL_WAIT_RESULT     /* then its challenge after #WELCOME# */
};

/* The names CPython accepts inside the braces; anything else is refused
 * before it reaches OpenSSL, whose name space is far larger. md5 comes
 * first: it is also legacy's. A machine keeps its own as an index. */
static const char *const digests[] = {"md5", "sha256", "sha384", "sha3_256", "sha3_384"};

/* The index of a known digest's name in digests, or -1. */
static int digest_index(const uint8_t *name, size_t len)
{
    for (size_t i = 0; i < sizeof digests / sizeof digests[0]; i++)
        if (strlen(digests[i]) == len && memcmp(digests[i], name, len) == 0)
            return (int)i;
    return -1;
}

static const char *known_digest(const uint8_t *name, size_t len)
{
    int i = digest_index(name, len);
    return i < 0 ? NULL : digests[i];
}

static const char *own_digest(const mpci_auth *a)
{
    return digests[a->own_digest];
}

/* A "{name}" prefix: returns the prefix length with *name set to a known
 * digest (NULL when the name is not one), or 0 when there is no prefix. */
static size_t brace_prefix(const uint8_t *msg, size_t len, const char **name)
{
    *name = NULL;
    if (len < 2 || msg[0] != '{')
        return 0;
    for (size_t i = 1; i < len && i <= NAME_MAX_LEN + 1; i++) {
        if (msg[i] == '}') {
            *name = known_digest(msg + 1, i - 1);
            return i + 1;
        }
    }
    return 0;
}

/* Peer bytes quoted in a message, made safe to print. */
static const char *printable(char *dst, size_t cap, const uint8_t *src, size_t n)
{
    size_t i = 0;
    for (; i < n && i + 1 < cap; i++)
        dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? (char)src[i] : '?';
    dst[i] = 0;
    return dst;
}

static int fail(mpci_auth *a, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Through the MAC lent by the caller when there is one. */
static int mac_of(const mpci_auth *a, const char *digest, const uint8_t *msg, size_t len,
                  uint8_t *out)
{
    const mpci_auth_key *k = a->k;
    if (k->mac)
        return k->mac(k->mac_ctx, digest, k->key, k->keylen, msg, len, out);
    return mpci_hmac(digest, k->key, k->keylen, msg, len, out);
}

int mpci_auth_is_challenge(const uint8_t *msg, size_t len)
{
    return len >= CHALLENGE_LEN && memcmp(msg, CHALLENGE, CHALLENGE_LEN) == 0;
}

static void drop_untaken(mpci_auth *a);

static int fail(mpci_auth *a, int code, const char *fmt, ...)
{
    /* The reason takes the room of the challenge and the answer: those
     * still queued go. */
    drop_untaken(a);
    va_list ap;
    va_start(ap, fmt);
    mpci_verr(a->errmsg, sizeof a->errmsg, code, fmt, ap);
    va_end(ap);
    a->code = code;
    a->state = MPCI_AUTH_FAILED;
    return a->state;
}

static int queue(mpci_auth *a, int what)
{
    if (a->nout == MPCI_AUTH_QUEUE)
        return -1;
    a->queue[a->nout++] = (uint8_t)what;
    return 0;
}

/* Messages already handed out are dropped here, not in next_out, so the
 * pointer next_out returned stays valid until the next feed. */
static void compact(mpci_auth *a)
{
    int keep = a->nout - a->outhead;
    memmove(a->queue, a->queue + a->outhead, (size_t)keep);
    a->nout = (uint8_t)keep;
    a->outhead = 0;
}

static void drop_untaken(mpci_auth *a)
{
    int k = a->outhead;
    for (int i = a->outhead; i < a->nout; i++)
        if (a->queue[i] == OUT_WELCOME || a->queue[i] == OUT_FAILURE)
            a->queue[k++] = a->queue[i];
    a->nout = (uint8_t)k;
}

static int queue_failure(mpci_auth *a)
{
    /* Told to the peer before failing, as CPython does; the I/O layer
     * flushes it before closing. */
    return queue(a, OUT_FAILURE);
}

/* Checks the peer's answer to the challenge we delivered and queues WELCOME
 * or FAILURE. Returns 0 when accepted, else the failed state. */
static int verify_answer(mpci_auth *a, const uint8_t *msg, size_t len)
{
    const char *name = NULL;
    const uint8_t *mac = msg;
    size_t maclen = len;

    /* Length first, as CPython does: a 16-byte legacy MAC may begin with '{'. */
    if (len == MD5_LEN) {
        name = "md5";
        if (!a->allow_md5) {
            queue_failure(a);
            return fail(a, MPCONN_ERR_AUTH,
                        "peer answered with a legacy HMAC-MD5 digest (CPython <= 3.11), "
                        "but MD5 is refused (allow_md5 is off)");
        }
    } else {
        size_t plen = brace_prefix(msg, len, &name);
        if (plen == 0) {
            queue_failure(a);
            return fail(a, MPCONN_ERR_NOKEY,
                        "peer did not answer the challenge (does it have the authkey?)");
        }
        if (!name) {
            queue_failure(a);
            char shown[NAME_MAX_LEN + 3];
            return fail(a, MPCONN_ERR_AUTHPROTO, "peer answered with an unsupported digest %s",
                        printable(shown, sizeof shown, msg, plen));
        }
        if (strcmp(name, "md5") == 0 && !a->allow_md5) {
            queue_failure(a);
            return fail(a, MPCONN_ERR_AUTH,
                        "peer answered with an {md5} digest, but MD5 is refused "
                        "(allow_md5 is off)");
        }
        mac += plen;
        maclen -= plen;
    }

    uint8_t made[EVP_MAX_MD_SIZE];
    const uint8_t *expect = made;
    int n;
    if (a->expect_len > 0 && strcmp(name, own_digest(a)) == 0) {
        expect = a->expect;
        n = a->expect_len;
    } else {
        n = mac_of(a, name, a->challenge, a->challenge_len, made);
    }
    if (n < 0) {
        queue_failure(a);
        return fail(a, n, "cannot compute HMAC-%s: %s", name, mpconn_strerror(n));
    }
    if ((size_t)n != maclen || CRYPTO_memcmp(expect, mac, maclen) != 0) {
        queue_failure(a);
        return fail(a, MPCONN_ERR_AUTH, "digest received was wrong");
    }
    if (queue(a, OUT_WELCOME) < 0)
        return fail(a, -ENOBUFS, "authentication output queue full");
    return 0;
}

/* Answers a "#CHALLENGE#"-prefixed message (prefix already checked).
 * Returns 0 when the answer is queued, else the failed state. */
static int answer_challenge(mpci_auth *a, const uint8_t *msg, size_t len)
{
    const uint8_t *m = msg + CHALLENGE_LEN;
    size_t mlen = len - CHALLENGE_LEN;
    if (mlen < MPCI_LEGACY_NONCE_LEN)
        return fail(a, MPCONN_ERR_AUTHPROTO,
                    "challenge too short: %zu bytes (at least %d expected)", mlen,
                    MPCI_LEGACY_NONCE_LEN);

    const char *name = NULL;
    size_t plen = 0;
    /* CPython >= 3.12 reads 20 bytes as legacy whatever they hold: a random
     * legacy nonce starts with '{' once in 256 handshakes. */
    if (mlen != MPCI_LEGACY_NONCE_LEN) {
        plen = brace_prefix(m, mlen, &name);
        if (m[0] == '{' && !name) {
            char shown[NAME_MAX_LEN + 3];
            return fail(a, MPCONN_ERR_AUTHPROTO, "challenge asks for an unsupported digest: %s",
                        printable(shown, sizeof shown, m, plen ? plen : sizeof shown - 1));
        }
    }
    if (!name) {
        /* Unprefixed: a CPython <= 3.11 server, which wants raw HMAC-MD5. */
        if (!a->allow_md5)
            return fail(a, MPCONN_ERR_AUTH,
                        "peer sent a legacy challenge (CPython <= 3.11) that must be answered "
                        "with HMAC-MD5, but MD5 is refused (allow_md5 is off)");
        name = "md5";
        plen = 0;
    } else if (strcmp(name, "md5") == 0 && !a->allow_md5) {
        return fail(a, MPCONN_ERR_AUTH,
                    "peer's challenge asks for an {md5} answer, but MD5 is refused "
                    "(allow_md5 is off)");
    }

    uint8_t mac[EVP_MAX_MD_SIZE];
    int n = mac_of(a, name, m, mlen, mac);
    if (n < 0)
        return fail(a, n, "cannot compute HMAC-%s: %s", name, mpconn_strerror(n));
    if (plen + (size_t)n > sizeof a->answer || queue(a, OUT_ANSWER) < 0)
        return fail(a, -ENOBUFS, "authentication output queue full");
    memcpy(a->answer, m, plen);
    memcpy(a->answer + plen, mac, (size_t)n);
    a->answer_len = (uint8_t)(plen + (size_t)n);
    return 0;
}

static int has_prefix(const uint8_t *msg, size_t len, const char *prefix, size_t plen)
{
    return len >= plen && memcmp(msg, prefix, plen) == 0;
}

static int is_exactly(const uint8_t *msg, size_t len, const char *word, size_t wlen)
{
    return len == wlen && memcmp(msg, word, wlen) == 0;
}

static int queue_own_challenge(mpci_auth *a)
{
    if (queue(a, OUT_CHALLENGE) < 0)
        return fail(a, -ENOBUFS, "authentication output queue full");
    /* The client makes the answer it expects now, right behind the MAC of
     * its own answer: a MAC costs a few times more as the first thing after
     * a wake-up, when the network stack has pushed OpenSSL out of the
     * caches, than as the second in a row. On failure verify_answer
     * computes again and reports. */
    if (a->role == MPCI_AUTH_CLIENT) {
        uint8_t mac[EVP_MAX_MD_SIZE];
        int n = mac_of(a, own_digest(a), a->challenge, a->challenge_len, mac);
        a->expect_len = n > 0 && (size_t)n <= sizeof a->expect ? (uint8_t)n : 0;
        if (a->expect_len)
            memcpy(a->expect, mac, a->expect_len);
    }
    return 0;
}

int mpci_auth_init(mpci_auth *a, int role, const mpci_auth_key *k, const char *digest,
                   int allow_md5, const uint8_t *nonce)
{
    if (!a)
        return -EINVAL;
    memset(a, 0, sizeof *a);
    a->state = MPCI_AUTH_FAILED;
    a->code = -EINVAL;
    if ((role != MPCI_AUTH_SERVER && role != MPCI_AUTH_CLIENT && role != MPCI_AUTH_CLIENT_SERIAL) ||
        !k || (!k->key && k->keylen) || !nonce || !digest)
        return mpci_err(a->errmsg, sizeof a->errmsg, -EINVAL, "invalid authentication setup");

    int legacy = strcmp(digest, "legacy") == 0;
    int own = legacy ? 0 : digest_index((const uint8_t *)digest, strlen(digest));
    if (own < 0)
        return mpci_err(a->errmsg, sizeof a->errmsg, -EINVAL, "unknown digest \"%s\"", digest);
    const char *name = digests[own];
    if (!allow_md5 && strcmp(name, "md5") == 0)
        return mpci_err(a->errmsg, sizeof a->errmsg, -EINVAL,
                        "digest \"%s\" needs MD5, which allow_md5 = 0 refuses", digest);

    a->role = role == MPCI_AUTH_SERVER ? MPCI_AUTH_SERVER : MPCI_AUTH_CLIENT;
    a->own_digest = (uint8_t)own;
    a->k = k;
    a->allow_md5 = allow_md5 != 0;
    memcpy(a->prefix, CHALLENGE, CHALLENGE_LEN);
    if (legacy) {
        memcpy(a->challenge, nonce, MPCI_LEGACY_NONCE_LEN);
        a->challenge_len = (uint8_t)MPCI_LEGACY_NONCE_LEN;
    } else {
        size_t nlen = strlen(name);
        a->challenge[0] = '{';
        memcpy(a->challenge + 1, name, nlen);
        a->challenge[nlen + 1] = '}';
        memcpy(a->challenge + nlen + 2, nonce, MPCI_NONCE_LEN);
        a->challenge_len = (uint8_t)(nlen + 2 + MPCI_NONCE_LEN);
    }
    a->state = MPCI_AUTH_NEED_INPUT;
    a->code = 0;
    if (role == MPCI_AUTH_SERVER) {
        a->step = SERVER_WAIT_ANSWER;
        if (queue_own_challenge(a) != 0)
            return a->code;
    } else {
        a->step = role == MPCI_AUTH_CLIENT_SERIAL ? SERIAL_WAIT_CHALLENGE : CLIENT_WAIT_CHALLENGE;
    }
    return 0;
}

/* WELCOME or FAILURE from the peer about our answer. */
static int read_verdict(mpci_auth *a, const uint8_t *msg, size_t len)
{
    if (is_exactly(msg, len, WELCOME, WELCOME_LEN))
        return 0;
    if (is_exactly(msg, len, FAILURE, FAILURE_LEN))
        return fail(a, MPCONN_ERR_AUTH, "digest sent was rejected");
    return fail(a, MPCONN_ERR_AUTHPROTO,
                "expected #WELCOME# or #FAILURE# from the peer, got a %zu-byte message", len);
}

int mpci_auth_feed(mpci_auth *a, const uint8_t *msg, size_t len)
{
    if (a->state != MPCI_AUTH_NEED_INPUT)
        return a->state;
    compact(a);
    if (!msg && len)
        return fail(a, -EINVAL, "no message given");
    int first = a->step == SERVER_WAIT_ANSWER || a->step == CLIENT_WAIT_CHALLENGE ||
                a->step == SERIAL_WAIT_CHALLENGE;
    if (len > MPCI_AUTH_MSG_MAX)
        return fail(a, MPCONN_ERR_AUTHPROTO, "handshake message of %zu bytes exceeds %d bytes%s",
                    len, MPCI_AUTH_MSG_MAX, first ? " (does the peer have the authkey?)" : "");

    switch (a->step) {
    case SERVER_WAIT_ANSWER:
        if (verify_answer(a, msg, len) != 0)
            return a->state;
        a->step = SERVER_WAIT_CHALLENGE;
        break;
    case SERVER_WAIT_CHALLENGE:
        if (!has_prefix(msg, len, CHALLENGE, CHALLENGE_LEN))
            return fail(a, MPCONN_ERR_AUTHPROTO,
                        "expected the peer's #CHALLENGE#, got a %zu-byte message without it", len);
        if (answer_challenge(a, msg, len) != 0)
            return a->state;
        a->step = SERVER_WAIT_RESULT;
        break;
    case SERVER_WAIT_RESULT:
        if (read_verdict(a, msg, len) != 0)
            return a->state;
        a->state = MPCI_AUTH_DONE;
        break;
    case CLIENT_WAIT_CHALLENGE:
    case SERIAL_WAIT_CHALLENGE: {
        int serial = a->step == SERIAL_WAIT_CHALLENGE;
        if (!has_prefix(msg, len, CHALLENGE, CHALLENGE_LEN))
            return fail(a, MPCONN_ERR_NOKEY,
                        "peer sent data instead of a challenge (it has no authkey?)");
        if (answer_challenge(a, msg, len) != 0 || (!serial && queue_own_challenge(a) != 0))
            return a->state;
        a->step = serial ? SERIAL_WAIT_RESULT : CLIENT_WAIT_RESULT;
        break;
    }
    case CLIENT_WAIT_RESULT:
    case SERIAL_WAIT_RESULT:
        if (read_verdict(a, msg, len) != 0 ||
            (a->step == SERIAL_WAIT_RESULT && queue_own_challenge(a) != 0))
            return a->state;
        a->step = CLIENT_WAIT_ANSWER;
        break;
    case CLIENT_WAIT_ANSWER:
        if (verify_answer(a, msg, len) != 0)
            return a->state;
        a->state = MPCI_AUTH_DONE;
        break;
    default: return fail(a, -EINVAL, "authentication machine in an unknown step");
    }
    return a->state;
}

int mpci_auth_next_out(mpci_auth *a, const uint8_t **msg, size_t *len)
{
    if (a->outhead >= a->nout)
        return 0;
    switch (a->queue[a->outhead++]) {
    case OUT_CHALLENGE:
        *msg = a->prefix; /* the challenge follows it */
        *len = CHALLENGE_LEN + a->challenge_len;
        break;
    case OUT_ANSWER:
        *msg = a->answer;
        *len = a->answer_len;
        break;
    case OUT_WELCOME:
        *msg = (const uint8_t *)WELCOME;
        *len = WELCOME_LEN;
        break;
    default:
        *msg = (const uint8_t *)FAILURE;
        *len = FAILURE_LEN;
        break;
    }
    return 1;
}
