/* Tests of the authentication machine (src/proto/auth.c) and its HMAC: the
 * CPython vectors, CPython 3.11 transcripts replayed byte for byte, machine-to-
 * machine handshakes, and every failure path. */
#include "proto/auth.h"
#include "proto/handshake.h"
#include "testlib.h"

#include <errno.h>

#define CH "#CHALLENGE#"
#define CH_LEN 11

static const char *digest_names[] = {"sha256", "md5", "sha384", "sha3_256", "sha3_384", "legacy"};
#define NDIGESTS (sizeof digest_names / sizeof digest_names[0])

static const uint8_t nonce_a[MPCI_NONCE_LEN] = "0123456789abcdefghijABCDEFGHIJ0123456789";
static const uint8_t nonce_b[MPCI_NONCE_LEN] = "zyxwvutsrqponmlkjihgZYXWVUTSRQPONMLKJIHG";

/* --------------------------------------------------------------- helpers */

typedef struct {
    unsigned char *p;
    size_t n;
} bytes;

static bytes field(const char *line, const char *key)
{
    bytes b;
    b.p = testlib_json_hex(line, key, &b.n);
    return b;
}

static void expect_out(mpci_auth *a, const void *want, size_t wantlen)
{
    const uint8_t *m;
    size_t len;
    CHECK_INT(mpci_auth_next_out(a, &m, &len), 1);
    CHECK_INT(len, wantlen);
    CHECK_MEM(m, want, len);
}

static void expect_out_str(mpci_auth *a, const char *want)
{
    expect_out(a, want, strlen(want));
}

static void expect_no_out(mpci_auth *a)
{
    const uint8_t *m;
    size_t len;
    CHECK_INT(mpci_auth_next_out(a, &m, &len), 0);
}

static void expect_failed(mpci_auth *a, int code, const char *msg_part)
{
    CHECK_INT(a->state, MPCI_AUTH_FAILED);
    CHECK_INT(a->code, code);
    CHECK(a->errmsg[0] != 0);
    if (msg_part && !strstr(a->errmsg, msg_part)) {
        fprintf(stderr, "errmsg \"%s\" lacks \"%s\"\n", a->errmsg, msg_part);
        exit(1);
    }
    /* Sticky: more input changes nothing and produces nothing. */
    CHECK_INT(mpci_auth_feed(a, (const uint8_t *)"#WELCOME#", 9), MPCI_AUTH_FAILED);
    CHECK_INT(a->code, code);
}

static int feed(mpci_auth *a, const void *msg, size_t len)
{
    return mpci_auth_feed(a, (const uint8_t *)msg, len);
}

static int feed_str(mpci_auth *a, const char *s)
{
    return feed(a, s, strlen(s));
}

/* "#CHALLENGE#" + body as one message. */
static size_t challenge_msg(uint8_t *out, const void *body, size_t len)
{
    memcpy(out, CH, CH_LEN);
    memcpy(out + CH_LEN, body, len);
    return CH_LEN + len;
}

/* A machine borrows its key for its life: a test has a few machines alive
 * at once, each with a slot of this ring. */
static const mpci_auth_key *key_of(const uint8_t *key, size_t keylen)
{
    static mpci_auth_key ring[16];
    static unsigned next;
    mpci_auth_key *k = &ring[next++ % 16];
    *k = (mpci_auth_key){key, keylen, NULL, NULL};
    return k;
}

static void init_ok(mpci_auth *a, int role, const uint8_t *key, size_t keylen, const char *digest,
                    int allow_md5, const uint8_t *nonce)
{
    CHECK_INT(mpci_auth_init(a, role, key_of(key, keylen), digest, allow_md5, nonce), 0);
    CHECK_INT(a->state, MPCI_AUTH_NEED_INPUT);
}

/* A server whose challenge is exactly `challenge` (as in a vector row). */
static void server_for_challenge(mpci_auth *a, const bytes *challenge, const char *digest,
                                 const uint8_t *key, size_t keylen, int allow_md5)
{
    uint8_t nonce[MPCI_NONCE_LEN] = {0};
    if (strcmp(digest, "legacy") == 0) {
        CHECK_INT(challenge->n, MPCI_LEGACY_NONCE_LEN);
        memcpy(nonce, challenge->p, MPCI_LEGACY_NONCE_LEN);
    } else {
        size_t plen = strlen(digest) + 2;
        CHECK_INT(challenge->n, plen + MPCI_NONCE_LEN);
        memcpy(nonce, challenge->p + plen, MPCI_NONCE_LEN);
    }
    init_ok(a, MPCI_AUTH_SERVER, key, keylen, digest, allow_md5, nonce);
    uint8_t want[MPCI_AUTH_MSG_MAX];
    expect_out(a, want, challenge_msg(want, challenge->p, challenge->n));
}

/* Carries every queued message of each side to the other until neither
 * produces more. Returns the number of messages moved. */
static int pump(mpci_auth *s, mpci_auth *c)
{
    int moved = 0, progress = 1;
    while (progress) {
        progress = 0;
        const uint8_t *m;
        size_t len;
        while (mpci_auth_next_out(s, &m, &len)) {
            feed(c, m, len);
            moved++;
            progress = 1;
        }
        while (mpci_auth_next_out(c, &m, &len)) {
            feed(s, m, len);
            moved++;
            progress = 1;
        }
    }
    return moved;
}

/* A server that has accepted a good answer and now waits for the client's
 * challenge, with its output drained. */
static void server_after_welcome(mpci_auth *s, const uint8_t *key, size_t keylen)
{
    init_ok(s, MPCI_AUTH_SERVER, key, keylen, "sha256", 1, nonce_a);
    const uint8_t *m;
    size_t len;
    CHECK_INT(mpci_auth_next_out(s, &m, &len), 1);
    uint8_t mac[64];
    int n = mpci_hmac("sha256", key, keylen, m + CH_LEN, len - CH_LEN, mac);
    CHECK_INT(n, 32);
    uint8_t ans[64];
    memcpy(ans, "{sha256}", 8);
    memcpy(ans + 8, mac, 32);
    CHECK_INT(feed(s, ans, 40), MPCI_AUTH_NEED_INPUT);
    expect_out_str(s, "#WELCOME#");
}

/* A client that has answered a challenge and waits for the verdict. */
static void client_after_answer(mpci_auth *c)
{
    init_ok(c, MPCI_AUTH_CLIENT, (const uint8_t *)"k", 1, "sha256", 1, nonce_b);
    uint8_t msg[MPCI_AUTH_MSG_MAX];
    CHECK_INT(feed(c, msg,
                   challenge_msg(msg,
                                 "{sha256}"
                                 "0123456789012345678901234567890123456789",
                                 48)),
              MPCI_AUTH_NEED_INPUT);
    const uint8_t *m;
    size_t len;
    CHECK_INT(mpci_auth_next_out(c, &m, &len), 1);
    CHECK_INT(mpci_auth_next_out(c, &m, &len), 1);
    expect_no_out(c);
}

/* ------------------------------------------------------------------ HMAC */

TEST(hmac_known_answers)
{
    /* RFC 2202 / RFC 4231 test case 2: key "Jefe". */
    const uint8_t *key = (const uint8_t *)"Jefe";
    const uint8_t *msg = (const uint8_t *)"what do ya want for nothing?";
    uint8_t out[64];
    size_t n;
    unsigned char *want = testlib_unhex("750c783e6ab0b503eaa86e310a5db738", &n);
    CHECK_INT(mpci_hmac("md5", key, 4, msg, 28, out), 16);
    CHECK_MEM(out, want, n);
    free(want);
    want = testlib_unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", &n);
    CHECK_INT(mpci_hmac("sha256", key, 4, msg, 28, out), 32);
    CHECK_MEM(out, want, n);
    free(want);
    CHECK_INT(mpci_hmac("sha384", key, 4, msg, 28, out), 48);
    CHECK_INT(mpci_hmac("sha3_256", key, 4, msg, 28, out), 32);
    CHECK_INT(mpci_hmac("sha3_384", key, 4, msg, 28, out), 48);
    /* Empty key and empty message are legal (HMAC-MD5("", "")). */
    want = testlib_unhex("74e6f7298a9c2d168935f58c001bad88", &n);
    CHECK_INT(mpci_hmac("md5", NULL, 0, NULL, 0, out), 16);
    CHECK_MEM(out, want, n);
    free(want);
    CHECK_INT(mpci_hmac("sha1", key, 4, msg, 28, out), -EINVAL);
    CHECK_INT(mpci_hmac("SHA256", key, 4, msg, 28, out), -EINVAL);
    CHECK_INT(mpci_hmac("legacy", key, 4, msg, 28, out), -EINVAL);
}

/* --------------------------------------------------------------- vectors */

TEST(vectors_client_answers)
{
    char *text, *lines[64];
    size_t n = testlib_read_lines("auth.jsonl", &text, lines, 64);
    CHECK(n >= 24);
    for (size_t i = 0; i < n; i++) {
        bytes key = field(lines[i], "authkey_hex"), ch = field(lines[i], "challenge_hex"),
              resp = field(lines[i], "response_hex");
        CHECK(key.p && ch.p && resp.p);
        mpci_auth c;
        init_ok(&c, MPCI_AUTH_CLIENT, key.p, key.n, "sha256", 1, nonce_b);
        expect_no_out(&c);
        uint8_t msg[MPCI_AUTH_MSG_MAX];
        CHECK_INT(feed(&c, msg, challenge_msg(msg, ch.p, ch.n)), MPCI_AUTH_NEED_INPUT);
        expect_out(&c, resp.p, resp.n);
        /* Its own challenge follows right behind the answer. */
        uint8_t own[MPCI_AUTH_MSG_MAX];
        expect_out(&c, own,
                   challenge_msg(own,
                                 "{sha256}"
                                 "zyxwvutsrqponmlkjihgZYXWVUTSRQPONMLKJIHG",
                                 48));
        expect_no_out(&c);
        free(key.p);
        free(ch.p);
        free(resp.p);
    }
    free(text);
}

TEST(vectors_server_accepts)
{
    char *text, *lines[64];
    size_t n = testlib_read_lines("auth.jsonl", &text, lines, 64);
    CHECK(n >= 24);
    int legacy_rows = 0, legacy_client_rows = 0;
    for (size_t i = 0; i < n; i++) {
        bytes key = field(lines[i], "authkey_hex"), ch = field(lines[i], "challenge_hex"),
              resp = field(lines[i], "response_hex"),
              lresp = field(lines[i], "legacy_client_response_hex");
        char *digest = testlib_json_str(lines[i], "digest");
        const char *d = digest ? digest : "legacy";
        legacy_rows += !digest;

        mpci_auth s;
        server_for_challenge(&s, &ch, d, key.p, key.n, 1);
        CHECK_INT(feed(&s, resp.p, resp.n), MPCI_AUTH_NEED_INPUT);
        expect_out_str(&s, "#WELCOME#");
        expect_no_out(&s);

        if (lresp.p) {
            /* A CPython 3.11 client answers any challenge with raw MD5. */
            legacy_client_rows++;
            server_for_challenge(&s, &ch, d, key.p, key.n, 1);
            CHECK_INT(feed(&s, lresp.p, lresp.n), MPCI_AUTH_NEED_INPUT);
            expect_out_str(&s, "#WELCOME#");
        }
        free(key.p);
        free(ch.p);
        free(resp.p);
        free(lresp.p);
        free(digest);
    }
    CHECK(legacy_rows >= 4);
    CHECK(legacy_client_rows >= 20);
    free(text);
}

TEST(vectors_server_rejects_flipped_bytes)
{
    char *text, *lines[64];
    size_t n = testlib_read_lines("auth.jsonl", &text, lines, 64);
    for (size_t i = 0; i < n; i++) {
        bytes key = field(lines[i], "authkey_hex"), ch = field(lines[i], "challenge_hex"),
              resp = field(lines[i], "response_hex");
        char *digest = testlib_json_str(lines[i], "digest");
        const char *d = digest ? digest : "legacy";
        size_t mac_at = digest ? strlen(digest) + 2 : 0;
        for (size_t at = mac_at; at < resp.n; at++) {
            mpci_auth s;
            server_for_challenge(&s, &ch, d, key.p, key.n, 1);
            resp.p[at] ^= 0x01;
            CHECK_INT(feed(&s, resp.p, resp.n), MPCI_AUTH_FAILED);
            resp.p[at] ^= 0x01;
            expect_out_str(&s, "#FAILURE#");
            expect_no_out(&s);
            expect_failed(&s, MPCONN_ERR_AUTH, "digest received was wrong");
        }
        /* A MAC cut short or extended is wrong too. */
        mpci_auth s;
        if (digest) {
            server_for_challenge(&s, &ch, d, key.p, key.n, 1);
            CHECK_INT(feed(&s, resp.p, resp.n - 1), MPCI_AUTH_FAILED);
            expect_failed(&s, MPCONN_ERR_AUTH, "digest received was wrong");
        }
        /* The right answer under another key is wrong. */
        server_for_challenge(&s, &ch, d, (const uint8_t *)"other", 5, 1);
        CHECK_INT(feed(&s, resp.p, resp.n), MPCI_AUTH_FAILED);
        expect_out_str(&s, "#FAILURE#");
        expect_failed(&s, MPCONN_ERR_AUTH, "digest received was wrong");
        free(key.p);
        free(ch.p);
        free(resp.p);
        free(digest);
    }
    free(text);
}

TEST(vectors_server_refuses_md5)
{
    char *text, *lines[64];
    size_t n = testlib_read_lines("auth.jsonl", &text, lines, 64);
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        bytes key = field(lines[i], "authkey_hex"), ch = field(lines[i], "challenge_hex"),
              resp = field(lines[i], "response_hex"),
              lresp = field(lines[i], "legacy_client_response_hex");
        char *digest = testlib_json_str(lines[i], "digest");
        if (digest && strcmp(digest, "md5") != 0) {
            mpci_auth s;
            server_for_challenge(&s, &ch, digest, key.p, key.n, 0);
            CHECK_INT(feed(&s, resp.p, resp.n), MPCI_AUTH_NEED_INPUT);
            expect_out_str(&s, "#WELCOME#");

            server_for_challenge(&s, &ch, digest, key.p, key.n, 0);
            CHECK_INT(feed(&s, lresp.p, lresp.n), MPCI_AUTH_FAILED);
            expect_out_str(&s, "#FAILURE#");
            expect_failed(&s, MPCONN_ERR_AUTH, "MD5 is refused");

            /* A correct {md5} answer to the same challenge is refused too. */
            uint8_t ans[64] = "{md5}";
            CHECK_INT(mpci_hmac("md5", key.p, key.n, ch.p, ch.n, ans + 5), 16);
            server_for_challenge(&s, &ch, digest, key.p, key.n, 1);
            CHECK_INT(feed(&s, ans, 21), MPCI_AUTH_NEED_INPUT); /* allowed: accepted */
            server_for_challenge(&s, &ch, digest, key.p, key.n, 0);
            CHECK_INT(feed(&s, ans, 21), MPCI_AUTH_FAILED);
            expect_out_str(&s, "#FAILURE#");
            expect_failed(&s, MPCONN_ERR_AUTH, "MD5 is refused");
            checked++;
        }
        free(key.p);
        free(ch.p);
        free(resp.p);
        free(lresp.p);
        free(digest);
    }
    CHECK(checked >= 16);
    free(text);
}

TEST(client_refuses_md5)
{
    mpci_auth c;
    uint8_t msg[MPCI_AUTH_MSG_MAX];
    /* Legacy 20-byte challenge. */
    init_ok(&c, MPCI_AUTH_CLIENT, (const uint8_t *)"k", 1, "sha256", 0, nonce_b);
    CHECK_INT(feed(&c, msg, challenge_msg(msg, nonce_a, 20)), MPCI_AUTH_FAILED);
    expect_no_out(&c);
    expect_failed(&c, MPCONN_ERR_AUTH, "MD5 is refused");
    /* {md5} challenge. */
    init_ok(&c, MPCI_AUTH_CLIENT, (const uint8_t *)"k", 1, "sha256", 0, nonce_b);
    uint8_t body[64] = "{md5}";
    memcpy(body + 5, nonce_a, 40);
    CHECK_INT(feed(&c, msg, challenge_msg(msg, body, 45)), MPCI_AUTH_FAILED);
    expect_no_out(&c);
    expect_failed(&c, MPCONN_ERR_AUTH, "MD5 is refused");
    /* The same with MD5 allowed is answered. */
    init_ok(&c, MPCI_AUTH_CLIENT, (const uint8_t *)"k", 1, "sha256", 1, nonce_b);
    CHECK_INT(feed(&c, msg, challenge_msg(msg, body, 45)), MPCI_AUTH_NEED_INPUT);
    uint8_t want[32] = "{md5}";
    CHECK_INT(mpci_hmac("md5", (const uint8_t *)"k", 1, body, 45, want + 5), 16);
    expect_out(&c, want, 21);
}

/* --------------------------------------------------- whole handshakes */

TEST(handshake_equal_keys_every_digest)
{
    const uint8_t key[] = "a shared secret";
    for (size_t i = 0; i < NDIGESTS; i++) {
        for (size_t j = 0; j < NDIGESTS; j++) {
            mpci_auth s, c;
            init_ok(&s, MPCI_AUTH_SERVER, key, sizeof key - 1, digest_names[i], 1, nonce_a);
            init_ok(&c, MPCI_AUTH_CLIENT, key, sizeof key - 1, digest_names[j], 1, nonce_b);
            /* challenge, answer + challenge, WELCOME, answer, WELCOME */
            CHECK_INT(pump(&s, &c), 6);
            CHECK_INT(s.state, MPCI_AUTH_DONE);
            CHECK_INT(c.state, MPCI_AUTH_DONE);
            CHECK_INT(s.code, 0);
            CHECK_INT(c.code, 0);
        }
    }
}

TEST(handshake_empty_key)
{
    for (size_t i = 0; i < NDIGESTS; i++) {
        mpci_auth s, c;
        init_ok(&s, MPCI_AUTH_SERVER, NULL, 0, digest_names[i], 1, nonce_a);
        init_ok(&c, MPCI_AUTH_CLIENT, (const uint8_t *)"", 0, digest_names[i], 1, nonce_b);
        pump(&s, &c);
        CHECK_INT(s.state, MPCI_AUTH_DONE);
        CHECK_INT(c.state, MPCI_AUTH_DONE);
        /* Empty against non-empty fails. */
        init_ok(&s, MPCI_AUTH_SERVER, NULL, 0, digest_names[i], 1, nonce_a);
        init_ok(&c, MPCI_AUTH_CLIENT, (const uint8_t *)"x", 1, digest_names[i], 1, nonce_b);
        pump(&s, &c);
        expect_failed(&s, MPCONN_ERR_AUTH, "digest received was wrong");
        expect_failed(&c, MPCONN_ERR_AUTH, "digest sent was rejected");
    }
}

TEST(handshake_different_keys)
{
    for (size_t i = 0; i < NDIGESTS; i++) {
        mpci_auth s, c;
        init_ok(&s, MPCI_AUTH_SERVER, (const uint8_t *)"right", 5, digest_names[i], 1, nonce_a);
        init_ok(&c, MPCI_AUTH_CLIENT, (const uint8_t *)"wrong", 5, digest_names[i], 1, nonce_b);
        /* challenge, answer + challenge (the latter to a failed server),
         * FAILURE: the FAILURE is sent although the server has failed. */
        CHECK_INT(pump(&s, &c), 4);
        expect_failed(&s, MPCONN_ERR_AUTH, "digest received was wrong");
        expect_failed(&c, MPCONN_ERR_AUTH, "digest sent was rejected");
    }
}

TEST(handshake_client_rejects_server_answer)
{
    /* The server's answer is tampered with in transit: the client refuses it
     * and tells the server, which then fails as well. */
    const uint8_t key[] = "k";
    mpci_auth s, c;
    init_ok(&s, MPCI_AUTH_SERVER, key, 1, "sha256", 1, nonce_a);
    init_ok(&c, MPCI_AUTH_CLIENT, key, 1, "sha384", 1, nonce_b);
    const uint8_t *m;
    size_t len;
    CHECK_INT(mpci_auth_next_out(&s, &m, &len), 1);
    CHECK_INT(feed(&c, m, len), MPCI_AUTH_NEED_INPUT);
    for (int k = 0; k < 2; k++) {
        CHECK_INT(mpci_auth_next_out(&c, &m, &len), 1);
        CHECK_INT(feed(&s, m, len), MPCI_AUTH_NEED_INPUT);
    }
    CHECK_INT(mpci_auth_next_out(&s, &m, &len), 1); /* WELCOME */
    CHECK_INT(feed(&c, m, len), MPCI_AUTH_NEED_INPUT);
    CHECK_INT(mpci_auth_next_out(&s, &m, &len), 1); /* {sha384} answer */
    CHECK_INT(len, 8 + 48);
    uint8_t bad[64];
    memcpy(bad, m, len);
    bad[len - 1] ^= 0x80;
    CHECK_INT(feed(&c, bad, len), MPCI_AUTH_FAILED);
    expect_out_str(&c, "#FAILURE#");
    expect_failed(&c, MPCONN_ERR_AUTH, "digest received was wrong");
    CHECK_INT(feed_str(&s, "#FAILURE#"), MPCI_AUTH_FAILED);
    expect_failed(&s, MPCONN_ERR_AUTH, "digest sent was rejected");
}

/* A server may answer the client's challenge with another digest than the
 * one asked for (CPython's verify uses whatever digest the answer names);
 * a wrong MAC is refused under any of them. */
TEST(client_verifies_answers_in_any_digest)
{
    const char *answers[] = {"sha256", "sha384", "md5", "sha3_256"};
    for (size_t i = 0; i < 2 * sizeof answers / sizeof *answers; i++) {
        const char *d = answers[i / 2];
        int corrupt = i % 2;
        mpci_auth c;
        client_after_answer(&c);
        uint8_t mac[64], ans[80];
        int n = mpci_hmac(d, (const uint8_t *)"k", 1, c.challenge, c.challenge_len, mac);
        CHECK(n > 0);
        if (corrupt)
            mac[n - 1] ^= 1;
        size_t dl = strlen(d);
        ans[0] = '{';
        memcpy(ans + 1, d, dl);
        ans[dl + 1] = '}';
        memcpy(ans + dl + 2, mac, (size_t)n);
        CHECK_INT(feed_str(&c, "#WELCOME#"), MPCI_AUTH_NEED_INPUT);
        CHECK_INT(feed(&c, ans, dl + 2 + (size_t)n), corrupt ? MPCI_AUTH_FAILED : MPCI_AUTH_DONE);
        if (corrupt)
            CHECK_INT(c.code, MPCONN_ERR_AUTH);
    }
}

TEST(output_queue_order_without_draining)
{
    /* A server fed before its challenge was taken keeps every message in
     * order: challenge, WELCOME, answer. */
    const uint8_t key[] = "k";
    mpci_auth s, c;
    init_ok(&s, MPCI_AUTH_SERVER, key, 1, "sha256", 1, nonce_a);
    init_ok(&c, MPCI_AUTH_CLIENT, key, 1, "sha256", 1, nonce_b);
    uint8_t chal[MPCI_AUTH_MSG_MAX];
    size_t chal_len = challenge_msg(chal, "{sha256}", 8);
    memcpy(chal + chal_len, nonce_a, 40);
    chal_len += 40;
    CHECK_INT(feed(&c, chal, chal_len), MPCI_AUTH_NEED_INPUT);
    const uint8_t *m;
    size_t len;
    uint8_t answer[64], cchal[MPCI_AUTH_MSG_MAX];
    size_t alen, clen;
    CHECK_INT(mpci_auth_next_out(&c, &m, &len), 1);
    memcpy(answer, m, alen = len);
    CHECK_INT(mpci_auth_next_out(&c, &m, &len), 1);
    memcpy(cchal, m, clen = len);
    CHECK_INT(feed(&s, answer, alen), MPCI_AUTH_NEED_INPUT);
    CHECK_INT(feed(&s, cchal, clen), MPCI_AUTH_NEED_INPUT);
    expect_out(&s, chal, chal_len);
    expect_out_str(&s, "#WELCOME#");
    CHECK_INT(mpci_auth_next_out(&s, &m, &len), 1);
    CHECK_INT(len, 40);
    CHECK_MEM(m, "{sha256}", 8);
    expect_no_out(&s);
}

/* The failure's reason takes the room of the challenge and the answer: a
 * machine that fails with them still queued sends #FAILURE# alone, and its
 * reason is whole. */
TEST(failure_with_untaken_output_sends_failure_alone)
{
    mpci_auth s;
    init_ok(&s, MPCI_AUTH_SERVER, (const uint8_t *)"k", 1, "sha256", 1, nonce_a);
    CHECK_INT(feed_str(&s, "{sha256}0123456789abcdef0123456789abcdef"), MPCI_AUTH_FAILED);
    CHECK_INT(s.code, MPCONN_ERR_AUTH);
    CHECK(strcmp(s.errmsg, "digest received was wrong") == 0);
    expect_out_str(&s, "#FAILURE#");
    expect_no_out(&s);
}

/* ------------------------------------------------------ CPython transcripts */

/* The k-th "payload_hex" of a transcript line, and who sent it. */
static bytes transcript_msg(const char *line, int k, int *from_server)
{
    const char *p = line;
    for (int i = 0; i <= k; i++) {
        p = strstr(p, "\"from\": \"");
        CHECK(p != NULL);
        p += 9;
    }
    *from_server = strncmp(p, "server", 6) == 0;
    p = strstr(p, "\"payload_hex\": \"");
    CHECK(p != NULL);
    p += 16;
    const char *end = strchr(p, '"');
    CHECK(end != NULL);
    char hex[1024];
    CHECK((size_t)(end - p) < sizeof hex);
    memcpy(hex, p, (size_t)(end - p));
    hex[end - p] = 0;
    bytes b;
    b.p = testlib_unhex(hex, &b.n);
    return b;
}

static int transcript_len(const char *line)
{
    int n = 0;
    for (const char *p = line; (p = strstr(p, "\"payload_hex\"")) != NULL; p++)
        n++;
    return n;
}

TEST(transcript_legacy_ok)
{
    char *text, *lines[4];
    CHECK_INT(testlib_read_lines("handshake-legacy.jsonl", &text, lines, 4), 2);
    const char *line = lines[0];
    CHECK_INT(transcript_len(line), 6);
    bytes skey = field(line, "server_authkey_hex"), ckey = field(line, "client_authkey_hex");
    bytes msg[6];
    int from_server[6];
    for (int i = 0; i < 6; i++)
        msg[i] = transcript_msg(line, i, &from_server[i]);
    CHECK(from_server[0] && !from_server[1] && from_server[2] && !from_server[3] &&
          from_server[4] && !from_server[5]);
    uint8_t snonce[MPCI_NONCE_LEN] = {0}, cnonce[MPCI_NONCE_LEN] = {0};
    CHECK_INT(msg[0].n, CH_LEN + 20);
    CHECK_INT(msg[3].n, CH_LEN + 20);
    memcpy(snonce, msg[0].p + CH_LEN, 20);
    memcpy(cnonce, msg[3].p + CH_LEN, 20);

    /* The server side, as a CPython 3.11 Listener: every byte it emits
     * equals the transcript. */
    mpci_auth s;
    init_ok(&s, MPCI_AUTH_SERVER, skey.p, skey.n, "legacy", 1, snonce);
    expect_out(&s, msg[0].p, msg[0].n);
    CHECK_INT(feed(&s, msg[1].p, msg[1].n), MPCI_AUTH_NEED_INPUT);
    expect_out(&s, msg[2].p, msg[2].n);
    CHECK_INT(feed(&s, msg[3].p, msg[3].n), MPCI_AUTH_NEED_INPUT);
    expect_out(&s, msg[4].p, msg[4].n);
    CHECK_INT(feed(&s, msg[5].p, msg[5].n), MPCI_AUTH_DONE);
    expect_no_out(&s);

    /* The client side, as a CPython 3.11 Client (its challenge pipelined). */
    mpci_auth c;
    init_ok(&c, MPCI_AUTH_CLIENT, ckey.p, ckey.n, "legacy", 1, cnonce);
    CHECK_INT(feed(&c, msg[0].p, msg[0].n), MPCI_AUTH_NEED_INPUT);
    expect_out(&c, msg[1].p, msg[1].n);
    expect_out(&c, msg[3].p, msg[3].n);
    CHECK_INT(feed(&c, msg[2].p, msg[2].n), MPCI_AUTH_NEED_INPUT);
    expect_no_out(&c);
    CHECK_INT(feed(&c, msg[4].p, msg[4].n), MPCI_AUTH_DONE);
    expect_out(&c, msg[5].p, msg[5].n);
    expect_no_out(&c);

    for (int i = 0; i < 6; i++)
        free(msg[i].p);
    free(skey.p);
    free(ckey.p);
    free(text);
}

TEST(transcript_legacy_wrong_key)
{
    char *text, *lines[4];
    CHECK_INT(testlib_read_lines("handshake-legacy.jsonl", &text, lines, 4), 2);
    const char *line = lines[1];
    CHECK_INT(transcript_len(line), 3);
    bytes skey = field(line, "server_authkey_hex"), ckey = field(line, "client_authkey_hex");
    bytes msg[3];
    int from_server[3];
    for (int i = 0; i < 3; i++)
        msg[i] = transcript_msg(line, i, &from_server[i]);
    CHECK(from_server[0] && !from_server[1] && from_server[2]);
    uint8_t snonce[MPCI_NONCE_LEN] = {0};
    memcpy(snonce, msg[0].p + CH_LEN, 20);

    mpci_auth s;
    init_ok(&s, MPCI_AUTH_SERVER, skey.p, skey.n, "legacy", 1, snonce);
    expect_out(&s, msg[0].p, msg[0].n);
    CHECK_INT(feed(&s, msg[1].p, msg[1].n), MPCI_AUTH_FAILED);
    expect_out(&s, msg[2].p, msg[2].n);
    expect_failed(&s, MPCONN_ERR_AUTH, "digest received was wrong");

    mpci_auth c;
    init_ok(&c, MPCI_AUTH_CLIENT, ckey.p, ckey.n, "legacy", 1, nonce_b);
    CHECK_INT(feed(&c, msg[0].p, msg[0].n), MPCI_AUTH_NEED_INPUT);
    expect_out(&c, msg[1].p, msg[1].n);
    CHECK_INT(feed(&c, msg[2].p, msg[2].n), MPCI_AUTH_FAILED);
    expect_failed(&c, MPCONN_ERR_AUTH, "digest sent was rejected");

    for (int i = 0; i < 3; i++)
        free(msg[i].p);
    free(skey.p);
    free(ckey.p);
    free(text);
}

/* --------------------------------------------------------- failure paths */

TEST(init_rejects_bad_setup)
{
    mpci_auth a;
    CHECK_INT(
        mpci_auth_init(&a, MPCI_AUTH_SERVER, key_of((const uint8_t *)"k", 1), "sha1", 1, nonce_a),
        -EINVAL);
    CHECK(strstr(a.errmsg, "sha1") != NULL);
    CHECK_INT(mpci_auth_init(&a, MPCI_AUTH_SERVER, key_of((const uint8_t *)"k", 1), "{sha256}", 1,
                             nonce_a),
              -EINVAL);
    CHECK_INT(
        mpci_auth_init(&a, MPCI_AUTH_SERVER, key_of((const uint8_t *)"k", 1), "md5", 0, nonce_a),
        -EINVAL);
    CHECK_INT(
        mpci_auth_init(&a, MPCI_AUTH_CLIENT, key_of((const uint8_t *)"k", 1), "legacy", 0, nonce_a),
        -EINVAL);
    CHECK_INT(mpci_auth_init(&a, 7, key_of((const uint8_t *)"k", 1), "sha256", 1, nonce_a),
              -EINVAL);
    CHECK_INT(mpci_auth_init(&a, MPCI_AUTH_SERVER, key_of(NULL, 3), "sha256", 1, nonce_a), -EINVAL);
    CHECK_INT(mpci_auth_init(&a, MPCI_AUTH_SERVER, key_of(NULL, 0), "sha256", 1, NULL), -EINVAL);
    CHECK_INT(mpci_auth_init(&a, MPCI_AUTH_SERVER, NULL, "sha256", 1, nonce_a), -EINVAL);
    /* A machine whose init failed refuses input. */
    CHECK_INT(feed_str(&a, "#WELCOME#"), MPCI_AUTH_FAILED);
    expect_no_out(&a);
    /* Server challenges have the documented shape. */
    init_ok(&a, MPCI_AUTH_SERVER, NULL, 0, "sha3_384", 1, nonce_a);
    uint8_t want[MPCI_AUTH_MSG_MAX];
    size_t n = challenge_msg(want, "{sha3_384}", 10);
    memcpy(want + n, nonce_a, 40);
    expect_out(&a, want, n + 40);
    init_ok(&a, MPCI_AUTH_SERVER, NULL, 0, "legacy", 1, nonce_a);
    expect_out(&a, want, challenge_msg(want, nonce_a, 20));
}

TEST(oversize_messages)
{
    uint8_t big[MPCI_AUTH_MSG_MAX + 1];
    memset(big, 'x', sizeof big);
    memcpy(big, CH "{sha256}", CH_LEN + 8);
    mpci_auth a;
    /* Client: 257 bytes is refused, 256 is a valid challenge. */
    init_ok(&a, MPCI_AUTH_CLIENT, (const uint8_t *)"k", 1, "sha256", 1, nonce_b);
    CHECK_INT(feed(&a, big, sizeof big), MPCI_AUTH_FAILED);
    expect_no_out(&a);
    expect_failed(&a, MPCONN_ERR_AUTHPROTO, "exceeds 256");
    init_ok(&a, MPCI_AUTH_CLIENT, (const uint8_t *)"k", 1, "sha256", 1, nonce_b);
    CHECK_INT(feed(&a, big, MPCI_AUTH_MSG_MAX), MPCI_AUTH_NEED_INPUT);
    uint8_t want[64] = "{sha256}";
    CHECK_INT(mpci_hmac("sha256", (const uint8_t *)"k", 1, big + CH_LEN, MPCI_AUTH_MSG_MAX - CH_LEN,
                        want + 8),
              32);
    expect_out(&a, want, 40);
    /* Server answer, client challenge, verdict: each capped. */
    init_ok(&a, MPCI_AUTH_SERVER, (const uint8_t *)"k", 1, "sha256", 1, nonce_a);
    CHECK_INT(feed(&a, big, sizeof big), MPCI_AUTH_FAILED);
    expect_failed(&a, MPCONN_ERR_AUTHPROTO, "exceeds 256");
    server_after_welcome(&a, (const uint8_t *)"k", 1);
    CHECK_INT(feed(&a, big, sizeof big), MPCI_AUTH_FAILED);
    expect_failed(&a, MPCONN_ERR_AUTHPROTO, "exceeds 256");
    client_after_answer(&a);
    CHECK_INT(feed(&a, big, sizeof big), MPCI_AUTH_FAILED);
    expect_failed(&a, MPCONN_ERR_AUTHPROTO, "exceeds 256");
}

TEST(missing_challenge_prefix)
{
    mpci_auth a;
    uint8_t msg[MPCI_AUTH_MSG_MAX];
    /* The server's second step: the client's challenge must be one. */
    server_after_welcome(&a, (const uint8_t *)"k", 1);
    size_t n = challenge_msg(msg, nonce_b, 40);
    msg[1] = 'c'; /* "#cHALLENGE#" */
    CHECK_INT(feed(&a, msg, n), MPCI_AUTH_FAILED);
    expect_no_out(&a);
    expect_failed(&a, MPCONN_ERR_AUTHPROTO, "#CHALLENGE#");
    server_after_welcome(&a, (const uint8_t *)"k", 1);
    CHECK_INT(feed(&a, "#CHALLENGE", 10), MPCI_AUTH_FAILED);
    expect_failed(&a, MPCONN_ERR_AUTHPROTO, NULL);
}

TEST(short_challenge)
{
    mpci_auth a;
    uint8_t msg[MPCI_AUTH_MSG_MAX];
    init_ok(&a, MPCI_AUTH_CLIENT, (const uint8_t *)"k", 1, "sha256", 1, nonce_b);
    CHECK_INT(feed(&a, msg, challenge_msg(msg, nonce_a, 19)), MPCI_AUTH_FAILED);
    expect_no_out(&a);
    expect_failed(&a, MPCONN_ERR_AUTHPROTO, "too short: 19 bytes");
    init_ok(&a, MPCI_AUTH_CLIENT, (const uint8_t *)"k", 1, "sha256", 1, nonce_b);
    CHECK_INT(feed(&a, msg, challenge_msg(msg, nonce_a, 0)), MPCI_AUTH_FAILED);
    expect_failed(&a, MPCONN_ERR_AUTHPROTO, "too short: 0 bytes");
    server_after_welcome(&a, (const uint8_t *)"k", 1);
    CHECK_INT(feed(&a, msg, challenge_msg(msg, nonce_a, 19)), MPCI_AUTH_FAILED);
    expect_failed(&a, MPCONN_ERR_AUTHPROTO, "too short");
    /* Exactly 20 is a legacy challenge, answered with raw HMAC-MD5. */
    server_after_welcome(&a, (const uint8_t *)"k", 1);
    CHECK_INT(feed(&a, msg, challenge_msg(msg, nonce_a, 20)), MPCI_AUTH_NEED_INPUT);
    uint8_t want[16];
    CHECK_INT(mpci_hmac("md5", (const uint8_t *)"k", 1, nonce_a, 20, want), 16);
    expect_out(&a, want, 16);
}

TEST(legacy_challenge_starting_with_brace)
{
    /* 20 bytes are legacy whatever they hold, as in CPython 3.12: even
     * "{sha256}..." is answered with raw HMAC-MD5 of all 20 bytes. */
    const uint8_t body[20] = "{sha256}abcdefghijkl";
    mpci_auth a;
    uint8_t msg[MPCI_AUTH_MSG_MAX];
    init_ok(&a, MPCI_AUTH_CLIENT, (const uint8_t *)"k", 1, "sha256", 1, nonce_b);
    CHECK_INT(feed(&a, msg, challenge_msg(msg, body, 20)), MPCI_AUTH_NEED_INPUT);
    uint8_t want[16];
    CHECK_INT(mpci_hmac("md5", (const uint8_t *)"k", 1, body, 20, want), 16);
    expect_out(&a, want, 16);
}

TEST(legacy_answer_starting_with_brace)
{
    /* A 16-byte answer is legacy MD5 even when its first byte is '{'. Find
     * a legacy nonce whose HMAC-MD5 starts with '{' (about 1 in 256). */
    const uint8_t key[] = "k";
    uint8_t nonce[MPCI_NONCE_LEN] = {0}, mac[16];
    int found = 0;
    for (unsigned i = 0; i < 100000 && !found; i++) {
        memcpy(nonce, &i, sizeof i);
        CHECK_INT(mpci_hmac("md5", key, 1, nonce, 20, mac), 16);
        found = mac[0] == '{';
    }
    CHECK(found);
    mpci_auth s;
    init_ok(&s, MPCI_AUTH_SERVER, key, 1, "legacy", 1, nonce);
    uint8_t want[MPCI_AUTH_MSG_MAX];
    expect_out(&s, want, challenge_msg(want, nonce, 20));
    CHECK_INT(feed(&s, mac, 16), MPCI_AUTH_NEED_INPUT);
    expect_out_str(&s, "#WELCOME#");
}

TEST(unknown_digest)
{
    mpci_auth a;
    uint8_t msg[MPCI_AUTH_MSG_MAX], body[64];
    /* In a challenge: unknown name, unclosed brace, empty name. */
    const char *bad[] = {"{sha1}", "{sha256", "{}", "{SHA256}", "{sha3_512}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t pl = strlen(bad[i]);
        memcpy(body, bad[i], pl);
        memcpy(body + pl, nonce_a, 40);
        init_ok(&a, MPCI_AUTH_CLIENT, (const uint8_t *)"k", 1, "sha256", 1, nonce_b);
        CHECK_INT(feed(&a, msg, challenge_msg(msg, body, pl + 40)), MPCI_AUTH_FAILED);
        expect_no_out(&a);
        expect_failed(&a, MPCONN_ERR_AUTHPROTO, "unsupported digest");
    }
    /* In an answer: the server tells the peer FAILURE. */
    init_ok(&a, MPCI_AUTH_SERVER, (const uint8_t *)"k", 1, "sha256", 1, nonce_a);
    const uint8_t *m;
    size_t len;
    CHECK_INT(mpci_auth_next_out(&a, &m, &len), 1);
    memcpy(body, "{sha1}", 6);
    memset(body + 6, 0x55, 20);
    CHECK_INT(feed(&a, body, 26), MPCI_AUTH_FAILED);
    expect_out_str(&a, "#FAILURE#");
    expect_failed(&a, MPCONN_ERR_AUTHPROTO, "unsupported digest {sha1}");
}

TEST(garbage_instead_of_verdict)
{
    mpci_auth a;
    const char *bad[] = {"#WELCOME", "#WELCOME##", "#welcome#", "", "#FAILURE", "hello"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        client_after_answer(&a);
        CHECK_INT(feed_str(&a, bad[i]), MPCI_AUTH_FAILED);
        expect_no_out(&a);
        expect_failed(&a, MPCONN_ERR_AUTHPROTO, "#WELCOME# or #FAILURE#");
    }
    /* The server's last step. */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        server_after_welcome(&a, (const uint8_t *)"k", 1);
        uint8_t msg[MPCI_AUTH_MSG_MAX];
        CHECK_INT(feed(&a, msg, challenge_msg(msg, nonce_b, 20)), MPCI_AUTH_NEED_INPUT);
        const uint8_t *m;
        size_t len;
        CHECK_INT(mpci_auth_next_out(&a, &m, &len), 1);
        CHECK_INT(feed_str(&a, bad[i]), MPCI_AUTH_FAILED);
        expect_no_out(&a);
        expect_failed(&a, MPCONN_ERR_AUTHPROTO, "#WELCOME# or #FAILURE#");
    }
}

TEST(detects_peer_without_authkey)
{
    /* A server whose peer sends ordinary data (a pickle) instead of an
     * answer, or nothing at all. */
    static const uint8_t pickle[] = {0x80, 0x04, 0x95, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                     0x00, 0x8c, 0x05, 'h',  'e',  'l',  'l',  'o',  0x94, 0x2e};
    const void *msgs[] = {pickle, "", "{sha256", "hello world"};
    size_t lens[] = {sizeof pickle, 0, 7, 11};
    for (size_t i = 0; i < 4; i++) {
        mpci_auth s;
        init_ok(&s, MPCI_AUTH_SERVER, (const uint8_t *)"k", 1, "sha256", 1, nonce_a);
        const uint8_t *m;
        size_t len;
        CHECK_INT(mpci_auth_next_out(&s, &m, &len), 1);
        CHECK_INT(feed(&s, msgs[i], lens[i]), MPCI_AUTH_FAILED);
        expect_out_str(&s, "#FAILURE#");
        expect_failed(&s, MPCONN_ERR_NOKEY,
                      "peer did not answer the challenge (does it have the authkey?)");
    }
    /* A client whose server sends data first. */
    mpci_auth c;
    init_ok(&c, MPCI_AUTH_CLIENT, (const uint8_t *)"k", 1, "sha256", 1, nonce_b);
    CHECK_INT(feed(&c, pickle, sizeof pickle), MPCI_AUTH_FAILED);
    expect_no_out(&c);
    expect_failed(&c, MPCONN_ERR_NOKEY,
                  "peer sent data instead of a challenge (it has no authkey?)");
    init_ok(&c, MPCI_AUTH_CLIENT, (const uint8_t *)"k", 1, "sha256", 1, nonce_b);
    CHECK_INT(feed_str(&c, "#WELCOME#"), MPCI_AUTH_FAILED);
    expect_failed(&c, MPCONN_ERR_NOKEY, NULL);
}

TEST(done_is_final)
{
    const uint8_t key[] = "k";
    mpci_auth s, c;
    init_ok(&s, MPCI_AUTH_SERVER, key, 1, "sha256", 1, nonce_a);
    init_ok(&c, MPCI_AUTH_CLIENT, key, 1, "sha256", 1, nonce_b);
    pump(&s, &c);
    CHECK_INT(s.state, MPCI_AUTH_DONE);
    CHECK_INT(c.state, MPCI_AUTH_DONE);
    CHECK_INT(feed_str(&s, "#FAILURE#"), MPCI_AUTH_DONE);
    CHECK_INT(feed_str(&c, "#FAILURE#"), MPCI_AUTH_DONE);
    expect_no_out(&s);
    expect_no_out(&c);
}

TEST(client_without_pipelining)
{
    /* CPython's order: the client's challenge only after #WELCOME#. */
    mpci_auth c, srv;
    init_ok(&c, MPCI_AUTH_CLIENT_SERIAL, (const uint8_t *)"k", 1, "sha256", 1, nonce_b);
    init_ok(&srv, MPCI_AUTH_SERVER, (const uint8_t *)"k", 1, "sha256", 1, nonce_a);
    const uint8_t *m;
    size_t len;
    CHECK_INT(mpci_auth_next_out(&srv, &m, &len), 1);
    CHECK_INT(feed(&c, m, len), MPCI_AUTH_NEED_INPUT);
    CHECK_INT(mpci_auth_next_out(&c, &m, &len), 1); /* the answer */
    CHECK(len == 8 + 32 && memcmp(m, "{sha256}", 8) == 0);
    CHECK_INT(feed(&srv, m, len), MPCI_AUTH_NEED_INPUT);
    expect_no_out(&c);
    expect_out_str(&srv, "#WELCOME#");
    CHECK_INT(feed_str(&c, "#WELCOME#"), MPCI_AUTH_NEED_INPUT);
    CHECK_INT(mpci_auth_next_out(&c, &m, &len), 1); /* now the challenge */
    CHECK(len > CH_LEN && memcmp(m, CH, CH_LEN) == 0);
    CHECK_INT(feed(&srv, m, len), MPCI_AUTH_NEED_INPUT);
    CHECK_INT(pump(&srv, &c), 2);
    CHECK_INT(srv.state, MPCI_AUTH_DONE);
    CHECK_INT(c.state, MPCI_AUTH_DONE);
}

/* A handshake in progress is its struct and nothing more while it waits:
 * the decoder of a split message and the bytes behind the last one are
 * allocated when such bytes come, the framed output only until it is
 * sent. The bound is what a listener pays per silent peer (it was 3.5 KB,
 * then 688 and 288; the key and its MAC are a listener's, shared). */
TEST(handshake_in_progress_is_small)
{
    CHECK(sizeof(mpci_hs) <= 248);
    static const uint8_t nonce[MPCI_NONCE_LEN] = "0123456789abcdefghijABCDEFGHIJ0123456789";
    mpci_hs h;
    CHECK_INT(
        mpci_hs_start(&h, MPCI_AUTH_SERVER, key_of((const uint8_t *)"k", 1), "sha256", 1, nonce),
        0);
    CHECK(mpci_hs_has_output(&h)); /* the challenge, framed */
    CHECK(h.dec == NULL && h.left == NULL);
    mpci_hs_sent(&h, 4 + 11 + 8 + 40); /* the whole challenge went out */
    CHECK(!mpci_hs_has_output(&h) && h.out == NULL);
    mpci_hs_consume(&h, (const uint8_t *)"\0\0", 2); /* half a header */
    CHECK_INT(h.state, MPCI_AUTH_NEED_INPUT);
    CHECK(h.dec != NULL);
    mpci_hs_consume(&h, (const uint8_t *)"\0\x05", 2);
    mpci_hs_consume(&h, (const uint8_t *)"hello", 5); /* not an answer */
    CHECK_INT(h.state, MPCI_AUTH_FAILED);
    CHECK(mpci_hs_errmsg(&h)[0] != 0);
    mpci_hs_clear(&h);
    CHECK(h.dec == NULL);
}

TESTLIB_MAIN
