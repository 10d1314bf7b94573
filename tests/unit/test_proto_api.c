/* The public sans-I/O protocol (include/mpconn/proto.h): the reader against
 * CPython's frames in every split, its limits and its end-of-stream count;
 * the auth machine against CPython's vectors and transcripts, two machines
 * talking through memory; and both speaking over real sockets to the
 * blocking API and to CPython, which shows they are the same protocol. */
#include <mpconn/proto.h>

#include "testlib.h"

#include <errno.h>
#include <pthread.h>
#include <poll.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define CH "#CHALLENGE#"
#define CH_LEN 11

static const char *const digest_names[] = {"sha256",   "md5",      "sha384",
                                           "sha3_256", "sha3_384", "legacy"};
#define NDIGESTS (sizeof digest_names / sizeof digest_names[0])

static const uint8_t nonce_a[40] = "0123456789abcdefghijABCDEFGHIJ0123456789";
static const uint8_t nonce_b[40] = "zyxwvutsrqponmlkjihgZYXWVUTSRQPONMLKJIHG";

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

static mpconn_reader *reader(uint64_t max)
{
    mpconn_reader *r;
    CHECK_INT(mpconn_reader_new(&r, max), 0);
    return r;
}

static void feed(mpconn_reader *r, const void *p, size_t n)
{
    CHECK_INT(mpconn_reader_feed(r, p, n), 0);
}

/* The next message must be want[0..n). */
static void expect_msg(mpconn_reader *r, const void *want, size_t n)
{
    void *m;
    size_t len;
    CHECK_INT(mpconn_reader_get(r, &m, &len), 1);
    CHECK(m != NULL);
    CHECK_INT(len, n);
    CHECK(n == 0 || memcmp(m, want, n) == 0);
    free(m);
}

static void expect_none(mpconn_reader *r)
{
    void *m = (void *)1;
    size_t len = 1;
    CHECK_INT(mpconn_reader_get(r, &m, &len), 0);
    CHECK(m == NULL);
    CHECK_INT(len, 0);
}

static mpconn_auth *auth(int role, const void *key, size_t keylen, const char *digest,
                         const uint8_t *nonce)
{
    mpconn_auth *a;
    CHECK_INT(mpconn_auth_new(&a, role, key, keylen, digest, 1), 0);
    if (nonce)
        CHECK_INT(mpconn_auth_set_nonce(a, nonce, strcmp(digest, "legacy") == 0 ? 20 : 40), 0);
    CHECK_INT(mpconn_auth_start(a), 0);
    CHECK_INT(mpconn_auth_done(a), 0);
    return a;
}

static void expect_out(mpconn_auth *a, const void *want, size_t n)
{
    const void *m;
    size_t len;
    CHECK_INT(mpconn_auth_next(a, &m, &len), 1);
    CHECK_INT(len, n);
    CHECK_MEM(m, want, n);
}

static void expect_no_out(mpconn_auth *a)
{
    const void *m;
    size_t len;
    CHECK_INT(mpconn_auth_next(a, &m, &len), 0);
}

static size_t challenge_msg(uint8_t *out, const void *body, size_t len)
{
    memcpy(out, CH, CH_LEN);
    memcpy(out + CH_LEN, body, len);
    return CH_LEN + len;
}

/* The nonce inside a vector's challenge ("{digest}" + 40 bytes, or 20). */
static const uint8_t *vector_nonce(const bytes *challenge, const char *digest)
{
    if (!digest)
        return challenge->p;
    return challenge->p + strlen(digest) + 2;
}

static void expect_failed(mpconn_auth *a, int code, const char *msg_part)
{
    CHECK_INT(mpconn_auth_done(a), code);
    const char *e = mpconn_auth_errmsg(a);
    if (!strstr(e, msg_part)) {
        fprintf(stderr, "errmsg \"%s\" lacks \"%s\"\n", e, msg_part);
        exit(1);
    }
}

/* ---------------------------------------------------------------- frames */

TEST(frame_header_vectors)
{
    char *text, *lines[32];
    size_t n = testlib_read_lines("frames.jsonl", &text, lines, 32);
    CHECK(n >= 10);
    for (size_t i = 0; i < n; i++) {
        long long plen = testlib_json_int(lines[i], "payload_len");
        bytes wire = field(lines[i], "wire_hex"), hdr = field(lines[i], "header_hex");
        const uint8_t *want = wire.p ? wire.p : hdr.p;
        size_t hl_want = wire.p ? wire.n - (size_t)plen : hdr.n;
        uint8_t h[MPCONN_FRAME_HEADER_MAX];
        CHECK_INT(mpconn_frame_header((uint64_t)plen, h), hl_want);
        CHECK_MEM(h, want, hl_want);
        free(wire.p);
        free(hdr.p);
    }
    uint8_t h[MPCONN_FRAME_HEADER_MAX];
    CHECK_INT(mpconn_frame_header(0x7fffffff, h), 4);
    CHECK_INT(mpconn_frame_header(0x80000000u, h), 12);
    free(text);
}

/* One frame cut at c: nothing before the last byte, then the payload. */
static void one_cut(const bytes *wire, const bytes *payload, size_t c)
{
    mpconn_reader *r = reader(0);
    feed(r, wire->p, c);
    if (c < wire->n) {
        expect_none(r);
        CHECK_INT(mpconn_reader_pending(r), c);
        feed(r, wire->p + c, wire->n - c);
    }
    expect_msg(r, payload->p, payload->n);
    expect_none(r);
    CHECK_INT(mpconn_reader_pending(r), 0);
    mpconn_reader_free(r);
}

TEST(reader_vectors_every_split)
{
    char *text, *lines[32];
    size_t n = testlib_read_lines("frames.jsonl", &text, lines, 32);
    bytes wires[32], payloads[32];
    size_t nw = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        bytes w = field(lines[i], "wire_hex");
        if (!w.p)
            continue;
        wires[nw] = w;
        payloads[nw] = field(lines[i], "payload_hex");
        if (!payloads[nw].p) /* the empty payload */
            payloads[nw].p = calloc(1, 1);
        total += w.n;
        nw++;
    }
    CHECK(nw >= 8);

    /* Each frame cut once at every point; past 4 KiB every point near the
     * header and the end, and every 61st in between (each cut copies the
     * whole message, so all of them would take minutes under ASan). */
    for (size_t i = 0; i < nw; i++)
        for (size_t c = 0; c <= wires[i].n; c++) {
            int near = c < 64 || wires[i].n - c < 64;
            if (wires[i].n <= 4096 || near || c % 61 == 0)
                one_cut(&wires[i], &payloads[i], c);
        }

    /* All frames in one stream, fed a byte at a time. */
    uint8_t *all = malloc(total);
    size_t off = 0;
    for (size_t i = 0; i < nw; i++) {
        memcpy(all + off, wires[i].p, wires[i].n);
        off += wires[i].n;
    }
    mpconn_reader *r = reader(0);
    size_t next = 0;
    for (size_t k = 0; k < total; k++) {
        feed(r, all + k, 1);
        void *m;
        size_t len;
        int g = mpconn_reader_get(r, &m, &len);
        CHECK(g == 0 || g == 1);
        if (g == 1) {
            CHECK(next < nw);
            CHECK_INT(len, payloads[next].n);
            CHECK(len == 0 || memcmp(m, payloads[next].p, len) == 0);
            free(m);
            next++;
            expect_none(r);
        }
    }
    CHECK_INT(next, nw);
    CHECK_INT(mpconn_reader_pending(r), 0);
    mpconn_reader_free(r);

    /* The small frames (up to 300 bytes) back to back, cut at every pair
     * of points. */
    size_t small = 0, nsmall = 0;
    while (nsmall < nw && wires[nsmall].n <= 300)
        small += wires[nsmall++].n;
    CHECK(nsmall >= 4);
    for (size_t a = 0; a <= small; a++)
        for (size_t b = a; b <= small; b++) {
            r = reader(0);
            size_t cuts[4] = {0, a, b, small}, got = 0;
            for (int k = 0; k < 3; k++) {
                feed(r, all + cuts[k], cuts[k + 1] - cuts[k]);
                void *m;
                size_t len;
                while (mpconn_reader_get(r, &m, &len) == 1) {
                    CHECK(got < nsmall);
                    CHECK_INT(len, payloads[got].n);
                    CHECK(len == 0 || memcmp(m, payloads[got].p, len) == 0);
                    free(m);
                    got++;
                }
            }
            CHECK_INT(got, nsmall);
            CHECK_INT(mpconn_reader_pending(r), 0);
            mpconn_reader_free(r);
        }

    free(all);
    for (size_t i = 0; i < nw; i++) {
        free(wires[i].p);
        free(payloads[i].p);
    }
    free(text);
}

/* The long-header vectors: accepted without a limit (and nothing of the
 * claim allocated), refused one byte under it, on the header alone. */
TEST(reader_long_headers)
{
    char *text, *lines[32];
    size_t n = testlib_read_lines("frames.jsonl", &text, lines, 32);
    int rows = 0;
    for (size_t i = 0; i < n; i++) {
        bytes h = field(lines[i], "header_hex");
        if (!h.p)
            continue;
        uint64_t plen = (uint64_t)testlib_json_int(lines[i], "payload_len");
        CHECK_INT(h.n, 12);
        mpconn_reader *r = reader(0);
        feed(r, h.p, h.n);
        feed(r, "abc", 3);
        expect_none(r);
        CHECK_INT(mpconn_reader_pending(r), 15);
        mpconn_reader_free(r);

        r = reader(plen);
        feed(r, h.p, h.n);
        expect_none(r);
        mpconn_reader_free(r);

        r = reader(plen - 1);
        feed(r, h.p, h.n);
        void *m;
        size_t len;
        CHECK_INT(mpconn_reader_get(r, &m, &len), MPCONN_ERR_MSGSIZE);
        mpconn_reader_free(r);
        free(h.p);
        rows++;
    }
    CHECK(rows >= 3);
    /* The 8-byte form is accepted at any size, as CPython's reader does. */
    const uint8_t w[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2, 'h', 'i'};
    mpconn_reader *r = reader(0);
    feed(r, w, sizeof w);
    expect_msg(r, "hi", 2);
    mpconn_reader_free(r);
    free(text);
}

/* A header claiming 2^62 bytes without a limit: a reader that allocated
 * the claim would fail with -ENOMEM here. */
TEST(reader_grows_with_arrival)
{
    const uint8_t w[] = {0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0};
    mpconn_reader *r = reader(0);
    feed(r, w, sizeof w);
    uint8_t chunk[1000];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 100; i++) {
        feed(r, chunk, sizeof chunk);
        expect_none(r);
    }
    CHECK_INT(mpconn_reader_pending(r), 12 + 100 * sizeof chunk);
    mpconn_reader_free(r);
}

TEST(reader_limit)
{
    /* 5 bytes pass a limit of 5, 6 do not, even before their payload. */
    mpconn_reader *r = reader(5);
    const uint8_t ok[] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'};
    const uint8_t big[] = {0, 0, 0, 6};
    feed(r, ok, sizeof ok);
    feed(r, big, sizeof big);
    expect_msg(r, "hello", 5); /* what came before the bad header comes first */
    void *m = (void *)1;
    size_t len = 1;
    CHECK_INT(mpconn_reader_get(r, &m, &len), MPCONN_ERR_MSGSIZE);
    CHECK(m == NULL);
    CHECK_INT(len, 0);
    CHECK(strstr(mpconn_reader_errmsg(r), "6 bytes exceeds the limit of 5") != NULL);
    /* Sticky: the stream has lost its place. */
    CHECK_INT(mpconn_reader_feed(r, ok, sizeof ok), MPCONN_ERR_MSGSIZE);
    CHECK_INT(mpconn_reader_get(r, &m, &len), MPCONN_ERR_MSGSIZE);
    mpconn_reader_free(r);
}

TEST(reader_bad_header)
{
    const uint8_t w[] = {0, 0, 0, 1, 'a', 0xff, 0xff, 0xff, 0xfe, 'b'};
    mpconn_reader *r = reader(0);
    CHECK_STR(mpconn_reader_errmsg(r), "");
    feed(r, w, sizeof w);
    expect_msg(r, "a", 1);
    void *m;
    size_t len;
    CHECK_INT(mpconn_reader_get(r, &m, &len), MPCONN_ERR_PROTO);
    CHECK(strstr(mpconn_reader_errmsg(r), "malformed message header") != NULL);
    CHECK_INT(mpconn_reader_get(r, &m, &len), MPCONN_ERR_PROTO);
    CHECK_INT(mpconn_reader_feed(r, "x", 1), MPCONN_ERR_PROTO);
    mpconn_reader_free(r);
}

/* What pending says at each point of a stream that ends there: 0 only
 * between messages. */
TEST(reader_eof_inside_message)
{
    const uint8_t w[] = {0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0};
    mpconn_reader *r = reader(0);
    CHECK_INT(mpconn_reader_pending(r), 0); /* nothing yet: a clean end */
    for (size_t k = 0; k < sizeof w; k++) {
        feed(r, w + k, 1);
        void *m;
        size_t len;
        int g = mpconn_reader_get(r, &m, &len);
        if (k == 6 || k == 10) {
            CHECK_INT(g, 1);
            free(m);
            CHECK_INT(mpconn_reader_pending(r), 0);
        } else {
            CHECK_INT(g, 0);
            CHECK_INT(mpconn_reader_pending(r), k < 7 ? k + 1 : k - 6);
        }
    }
    /* Fed but not yet taken counts too: get until 0 before asking. */
    feed(r, w, 7);
    CHECK_INT(mpconn_reader_pending(r), 7);
    expect_msg(r, "abc", 3);
    CHECK_INT(mpconn_reader_pending(r), 0);
    mpconn_reader_free(r);
}

/* Many messages in one feed, an empty one among them; what get returns is
 * the caller's and outlives the reader. */
TEST(reader_many_messages_and_ownership)
{
    uint8_t s[1000];
    size_t n = 0;
    for (int i = 0; i < 50; i++) {
        size_t len = (size_t)(i % 7);
        n += mpconn_frame_header(len, s + n);
        for (size_t k = 0; k < len; k++)
            s[n++] = (uint8_t)(i + k);
    }
    mpconn_reader *r = reader(0);
    feed(r, s, n);
    void *kept[50];
    size_t lens[50];
    for (int i = 0; i < 50; i++) {
        CHECK_INT(mpconn_reader_get(r, &kept[i], &lens[i]), 1);
        CHECK(kept[i] != NULL);
        CHECK_INT(lens[i], i % 7);
    }
    expect_none(r);
    mpconn_reader_free(r);
    for (int i = 0; i < 50; i++) {
        for (size_t k = 0; k < lens[i]; k++)
            CHECK_INT(((uint8_t *)kept[i])[k], (uint8_t)(i + k));
        free(kept[i]);
    }
}

TEST(reader_bad_arguments)
{
    mpconn_reader *r = reader(0);
    void *m;
    size_t len;
    CHECK_INT(mpconn_reader_new(NULL, 0), -EINVAL);
    CHECK_INT(mpconn_reader_feed(r, NULL, 3), -EINVAL);
    CHECK_INT(mpconn_reader_feed(r, NULL, 0), 0);
    CHECK_INT(mpconn_reader_get(r, NULL, &len), -EINVAL);
    CHECK_INT(mpconn_reader_get(NULL, &m, &len), -EINVAL);
    CHECK_INT(mpconn_reader_pending(NULL), 0);
    /* Bad arguments do not break the reader. */
    feed(r, "\0\0\0\1z", 5);
    expect_msg(r, "z", 1);
    mpconn_reader_free(r);
    mpconn_reader_free(NULL);
}

/* ------------------------------------------------------ auth: vectors */

/* The rows of tests/data/auth.jsonl; digest NULL for a legacy row. */
typedef struct {
    bytes key, challenge, response, legacy_response;
    char *digest;
} auth_row;

static size_t auth_rows(auth_row rows[], size_t max)
{
    char *text, *lines[64];
    size_t n = testlib_read_lines("auth.jsonl", &text, lines, max < 64 ? max : 64);
    for (size_t i = 0; i < n; i++) {
        rows[i].key = field(lines[i], "authkey_hex");
        rows[i].challenge = field(lines[i], "challenge_hex");
        rows[i].response = field(lines[i], "response_hex");
        rows[i].legacy_response = field(lines[i], "legacy_client_response_hex");
        rows[i].digest = testlib_json_str(lines[i], "digest");
        CHECK(rows[i].key.p && rows[i].challenge.p && rows[i].response.p);
    }
    free(text);
    CHECK(n >= 24);
    return n;
}

static void free_auth_rows(auth_row rows[], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rows[i].key.p);
        free(rows[i].challenge.p);
        free(rows[i].response.p);
        free(rows[i].legacy_response.p);
        free(rows[i].digest);
    }
}

TEST(auth_vectors_client)
{
    auth_row rows[64];
    size_t n = auth_rows(rows, 64);
    for (size_t i = 0; i < n; i++) {
        const auth_row *v = &rows[i];
        mpconn_auth *c = auth(MPCONN_AUTH_CLIENT, v->key.p, v->key.n, "sha256", nonce_b);
        expect_no_out(c);
        uint8_t msg[300];
        CHECK_INT(mpconn_auth_feed(c, msg, challenge_msg(msg, v->challenge.p, v->challenge.n)), 0);
        expect_out(c, v->response.p, v->response.n);
        uint8_t own[300], body[48] = "{sha256}";
        memcpy(body + 8, nonce_b, 40);
        expect_out(c, own, challenge_msg(own, body, sizeof body));
        expect_no_out(c);
        mpconn_auth_free(c);
    }
    free_auth_rows(rows, n);
}

TEST(auth_vectors_server)
{
    auth_row rows[64];
    size_t n = auth_rows(rows, 64);
    int legacy_answers = 0;
    for (size_t i = 0; i < n; i++) {
        const auth_row *v = &rows[i];
        const char *d = v->digest ? v->digest : "legacy";
        const bytes *answers[2] = {&v->response, &v->legacy_response};
        for (int k = 0; k < 2; k++) {
            if (!answers[k]->p)
                continue;
            mpconn_auth *s = auth(MPCONN_AUTH_SERVER, v->key.p, v->key.n, d,
                                  vector_nonce(&v->challenge, v->digest));
            uint8_t want[300];
            expect_out(s, want, challenge_msg(want, v->challenge.p, v->challenge.n));
            CHECK_INT(mpconn_auth_feed(s, answers[k]->p, answers[k]->n), 0);
            expect_out(s, "#WELCOME#", 9);
            expect_no_out(s);
            mpconn_auth_free(s);
            legacy_answers += k;
        }
    }
    CHECK(legacy_answers >= 20); /* a CPython 3.11 client's raw MD5 answers */
    free_auth_rows(rows, n);
}

/* The k-th message of a transcript line. */
static bytes transcript_msg(const char *line, int k)
{
    const char *p = line;
    for (int i = 0; i < k; i++) {
        p = strstr(p, "\"payload_hex\"");
        CHECK(p != NULL);
        p++;
    }
    bytes b = field(p, "payload_hex");
    CHECK(b.p != NULL);
    return b;
}

/* Both roles replay CPython 3.11's handshake byte for byte. */
TEST(auth_transcript_legacy)
{
    char *text, *lines[4];
    CHECK_INT(testlib_read_lines("handshake-legacy.jsonl", &text, lines, 4), 2);
    bytes key = field(lines[0], "server_authkey_hex"), msg[6];
    for (int i = 0; i < 6; i++)
        msg[i] = transcript_msg(lines[0], i);
    mpconn_auth *s = auth(MPCONN_AUTH_SERVER, key.p, key.n, "legacy", msg[0].p + CH_LEN);
    expect_out(s, msg[0].p, msg[0].n);
    CHECK_INT(mpconn_auth_feed(s, msg[1].p, msg[1].n), 0);
    expect_out(s, msg[2].p, msg[2].n);
    CHECK_INT(mpconn_auth_feed(s, msg[3].p, msg[3].n), 0);
    expect_out(s, msg[4].p, msg[4].n);
    CHECK_INT(mpconn_auth_feed(s, msg[5].p, msg[5].n), 1);
    expect_no_out(s);

    mpconn_auth *c = auth(MPCONN_AUTH_CLIENT, key.p, key.n, "legacy", msg[3].p + CH_LEN);
    CHECK_INT(mpconn_auth_feed(c, msg[0].p, msg[0].n), 0);
    expect_out(c, msg[1].p, msg[1].n);
    expect_out(c, msg[3].p, msg[3].n);
    CHECK_INT(mpconn_auth_feed(c, msg[2].p, msg[2].n), 0);
    CHECK_INT(mpconn_auth_feed(c, msg[4].p, msg[4].n), 1);
    expect_out(c, msg[5].p, msg[5].n); /* the last WELCOME comes after done */
    expect_no_out(c);
    CHECK_STR(mpconn_auth_errmsg(c), "");

    mpconn_auth_free(s);
    mpconn_auth_free(c);
    for (int i = 0; i < 6; i++)
        free(msg[i].p);
    free(key.p);
    free(text);
}

TEST(auth_transcript_legacy_wrong_key)
{
    char *text, *lines[4];
    CHECK_INT(testlib_read_lines("handshake-legacy.jsonl", &text, lines, 4), 2);
    bytes skey = field(lines[1], "server_authkey_hex"),
          ckey = field(lines[1], "client_authkey_hex");
    bytes msg[3];
    for (int i = 0; i < 3; i++)
        msg[i] = transcript_msg(lines[1], i);
    mpconn_auth *s = auth(MPCONN_AUTH_SERVER, skey.p, skey.n, "legacy", msg[0].p + CH_LEN);
    expect_out(s, msg[0].p, msg[0].n);
    CHECK_INT(mpconn_auth_feed(s, msg[1].p, msg[1].n), MPCONN_ERR_AUTH);
    expect_out(s, msg[2].p, msg[2].n); /* #FAILURE#, to be sent after failing */
    expect_failed(s, MPCONN_ERR_AUTH, "digest received was wrong");

    mpconn_auth *c = auth(MPCONN_AUTH_CLIENT, ckey.p, ckey.n, "legacy", NULL);
    CHECK_INT(mpconn_auth_feed(c, msg[0].p, msg[0].n), 0);
    expect_out(c, msg[1].p, msg[1].n);
    CHECK_INT(mpconn_auth_feed(c, msg[2].p, msg[2].n), MPCONN_ERR_AUTH);
    expect_failed(c, MPCONN_ERR_AUTH, "digest sent was rejected");
    /* Failed is final. */
    CHECK_INT(mpconn_auth_feed(c, "#WELCOME#", 9), MPCONN_ERR_AUTH);

    mpconn_auth_free(s);
    mpconn_auth_free(c);
    for (int i = 0; i < 3; i++)
        free(msg[i].p);
    free(skey.p);
    free(ckey.p);
    free(text);
}

/* ------------------------------------------------ auth: through memory */

/* Moves the framed output of `from` into r one byte per feed, and `to`
 * takes every whole message r gives. Returns the messages moved. */
static int carry(mpconn_auth *from, mpconn_reader *r, mpconn_auth *to)
{
    const void *out;
    size_t outlen;
    int moved = 0;
    while (mpconn_auth_next_framed(from, &out, &outlen) == 1) {
        for (size_t k = 0; k < outlen; k++)
            feed(r, (const uint8_t *)out + k, 1);
        void *m;
        size_t len;
        while (mpconn_reader_get(r, &m, &len) == 1) {
            mpconn_auth_feed(to, m, len);
            free(m);
            moved++;
        }
    }
    return moved;
}

/* Runs a handshake between s and c through framed bytes and readers until
 * neither has anything to say. Returns the messages moved. */
static int converse(mpconn_auth *s, mpconn_auth *c)
{
    mpconn_reader *to_c = reader(256), *to_s = reader(256);
    int total = 0;
    for (int round = 0; round < 10; round++) {
        int moved = carry(s, to_c, c) + carry(c, to_s, s);
        if (moved == 0)
            break;
        total += moved;
    }
    CHECK_INT(mpconn_reader_pending(to_c), 0);
    CHECK_INT(mpconn_reader_pending(to_s), 0);
    mpconn_reader_free(to_c);
    mpconn_reader_free(to_s);
    return total;
}

/* A handshake that must succeed in its six messages (challenge, answer +
 * challenge, WELCOME + answer, WELCOME); frees both machines. */
static void converse_ok(mpconn_auth *s, mpconn_auth *c)
{
    CHECK_INT(converse(s, c), 6);
    CHECK_INT(mpconn_auth_done(s), 1);
    CHECK_INT(mpconn_auth_done(c), 1);
    mpconn_auth_free(s);
    mpconn_auth_free(c);
}

TEST(auth_machines_talk_every_digest)
{
    const char key[] = "a shared secret";
    for (size_t i = 0; i < NDIGESTS; i++)
        for (size_t j = 0; j < NDIGESTS; j++) {
            mpconn_auth *s = auth(MPCONN_AUTH_SERVER, key, sizeof key - 1, digest_names[i], NULL);
            mpconn_auth *c = auth(MPCONN_AUTH_CLIENT, key, sizeof key - 1, digest_names[j], NULL);
            converse_ok(s, c);
        }
}

TEST(auth_wrong_key)
{
    for (size_t i = 0; i < NDIGESTS; i++) {
        mpconn_auth *s = auth(MPCONN_AUTH_SERVER, "right", 5, digest_names[i], NULL);
        mpconn_auth *c = auth(MPCONN_AUTH_CLIENT, "wrong", 5, digest_names[i], NULL);
        /* challenge, answer + challenge, FAILURE */
        CHECK_INT(converse(s, c), 4);
        expect_failed(s, MPCONN_ERR_AUTH, "digest received was wrong");
        expect_failed(c, MPCONN_ERR_AUTH, "digest sent was rejected");
        mpconn_auth_free(s);
        mpconn_auth_free(c);
    }
}

/* The key is copied: the caller's buffer may change or go right away. */
TEST(auth_key_copied)
{
    char k1[] = "secret", k2[] = "secret";
    mpconn_auth *s, *c;
    CHECK_INT(mpconn_auth_new(&s, MPCONN_AUTH_SERVER, k1, 6, "sha256", 0), 0);
    CHECK_INT(mpconn_auth_new(&c, MPCONN_AUTH_CLIENT, k2, 6, NULL, 0), 0);
    memset(k1, 'x', sizeof k1);
    memset(k2, 'y', sizeof k2);
    /* Not started by hand: the first next and feed start them. */
    converse_ok(s, c);
}

/* Without set_nonce each machine draws its own: two challenges differ. */
TEST(auth_drawn_nonces)
{
    const void *m1, *m2;
    size_t l1, l2;
    mpconn_auth *a = auth(MPCONN_AUTH_SERVER, "k", 1, "sha256", NULL);
    mpconn_auth *b = auth(MPCONN_AUTH_SERVER, "k", 1, "sha256", NULL);
    CHECK_INT(mpconn_auth_next(a, &m1, &l1), 1);
    CHECK_INT(mpconn_auth_next(b, &m2, &l2), 1);
    CHECK_INT(l1, CH_LEN + 8 + 40);
    CHECK_INT(l2, l1);
    CHECK_MEM(m1, CH "{sha256}", CH_LEN + 8);
    CHECK(memcmp(m1, m2, l1) != 0);
    mpconn_auth_free(a);
    mpconn_auth_free(b);
    a = auth(MPCONN_AUTH_SERVER, "k", 1, "legacy", NULL);
    CHECK_INT(mpconn_auth_next(a, &m1, &l1), 1);
    CHECK_INT(l1, CH_LEN + 20);
    mpconn_auth_free(a);
}

TEST(auth_next_framed)
{
    mpconn_auth *a = auth(MPCONN_AUTH_SERVER, "k", 1, "sha384", nonce_a);
    const void *m;
    size_t len;
    CHECK_INT(mpconn_auth_next_framed(a, &m, &len), 1);
    uint8_t want[100];
    size_t hl = mpconn_frame_header(CH_LEN + 8 + 40, want);
    memcpy(want + hl, CH "{sha384}", CH_LEN + 8);
    memcpy(want + hl + CH_LEN + 8, nonce_a, 40);
    CHECK_INT(len, hl + CH_LEN + 48);
    CHECK_MEM(m, want, len);
    CHECK_INT(mpconn_auth_next_framed(a, &m, &len), 0);
    mpconn_auth_free(a);
}

TEST(auth_bad_setup)
{
    mpconn_auth *a = (mpconn_auth *)1;
    CHECK_INT(mpconn_auth_new(&a, 0, "k", 1, "sha256", 1), -EINVAL);
    CHECK(a == NULL);
    CHECK_INT(mpconn_auth_new(&a, 3, "k", 1, "sha256", 1), -EINVAL);
    CHECK_INT(mpconn_auth_new(&a, MPCONN_AUTH_SERVER, "k", 1, "sha1", 1), -EINVAL);
    CHECK_INT(mpconn_auth_new(&a, MPCONN_AUTH_SERVER, "k", 1, "{sha256}", 1), -EINVAL);
    CHECK_INT(mpconn_auth_new(&a, MPCONN_AUTH_SERVER, "k", 1, "a digest name far too long", 1),
              -EINVAL);
    CHECK_INT(mpconn_auth_new(&a, MPCONN_AUTH_SERVER, "k", 1, "md5", 0), -EINVAL);
    CHECK_INT(mpconn_auth_new(&a, MPCONN_AUTH_CLIENT, "k", 1, "legacy", 0), -EINVAL);
    CHECK_INT(mpconn_auth_new(&a, MPCONN_AUTH_CLIENT, NULL, 2, "sha256", 1), -EINVAL);
    CHECK_INT(mpconn_auth_new(NULL, MPCONN_AUTH_CLIENT, "k", 1, "sha256", 1), -EINVAL);
    /* An empty key is a key. */
    CHECK_INT(mpconn_auth_new(&a, MPCONN_AUTH_CLIENT, NULL, 0, "sha256", 1), 0);
    CHECK_INT(mpconn_auth_set_nonce(a, nonce_a, 20), -EINVAL); /* 40 for {sha256} */
    CHECK_INT(mpconn_auth_set_nonce(a, NULL, 40), -EINVAL);
    CHECK_INT(mpconn_auth_set_nonce(a, nonce_a, 40), 0);
    CHECK_INT(mpconn_auth_start(a), 0);
    CHECK_INT(mpconn_auth_start(a), 0);
    CHECK_INT(mpconn_auth_set_nonce(a, nonce_b, 40), -EINVAL); /* too late */
    mpconn_auth_free(a);
    CHECK_INT(mpconn_auth_new(&a, MPCONN_AUTH_SERVER, "k", 1, "legacy", 1), 0);
    CHECK_INT(mpconn_auth_set_nonce(a, nonce_a, 40), -EINVAL);
    CHECK_INT(mpconn_auth_set_nonce(a, nonce_a, 20), 0);
    mpconn_auth_free(a);
    mpconn_auth_free(NULL);
    CHECK_INT(mpconn_auth_done(NULL), -EINVAL);
    CHECK_STR(mpconn_auth_errmsg(NULL), "");
}

/* allow_md5 = 0: a client refuses a CPython 3.11 server's challenge. */
TEST(auth_refuses_md5)
{
    mpconn_auth *s = auth(MPCONN_AUTH_SERVER, "k", 1, "legacy", NULL), *c;
    CHECK_INT(mpconn_auth_new(&c, MPCONN_AUTH_CLIENT, "k", 1, "sha256", 0), 0);
    converse(s, c);
    expect_failed(c, MPCONN_ERR_AUTH, "MD5 is refused");
    CHECK_INT(mpconn_auth_done(s), 0); /* the peer hangs up on it */
    mpconn_auth_free(s);
    mpconn_auth_free(c);
}

/* A peer without a key sends data where the challenge should be. */
TEST(auth_peer_without_key)
{
    mpconn_auth *c = auth(MPCONN_AUTH_CLIENT, "k", 1, "sha256", NULL);
    CHECK_INT(mpconn_auth_feed(c, "\x80\x04N.", 4), MPCONN_ERR_NOKEY);
    CHECK(strstr(mpconn_auth_errmsg(c), "no authkey") != NULL);
    expect_no_out(c);
    mpconn_auth_free(c);
}

/* --------------------------------------- interop with the blocking API */

static void no_hang(int fd)
{
    struct timeval tv = {.tv_sec = 20};
    CHECK_INT(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    CHECK_INT(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
}

static void send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        CHECK(w > 0);
        b += w;
        n -= (size_t)w;
    }
}

/* One message, framed with the public header writer. */
static void send_msg(int fd, const char *text)
{
    uint8_t buf[64];
    size_t n = strlen(text), hl = mpconn_frame_header(n, buf);
    CHECK(hl + n <= sizeof buf);
    memcpy(buf + hl, text, n);
    send_all(fd, buf, hl + n);
}

/* Reads from fd into r until a whole message is there (bounded). */
static int read_msg(int fd, mpconn_reader *r, void **m, size_t *len)
{
    for (int i = 0; i < 10000; i++) {
        int g = mpconn_reader_get(r, m, len);
        if (g != 0)
            return g;
        uint8_t buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            return n == 0 ? (mpconn_reader_pending(r) ? MPCONN_ERR_EOFMSG : MPCONN_ERR_EOF)
                          : -errno;
        feed(r, buf, (size_t)n);
    }
    return -ETIMEDOUT;
}

/* One side's handshake over fd with the public machine: what a user's own
 * loop does. Returns mpconn_auth_done's final value. */
static int handshake(int fd, mpconn_auth *a, mpconn_reader *r)
{
    for (int step = 0; step < 20; step++) {
        /* All that is queued in one write: a peer that fails on the first
         * message may close before a second write. */
        uint8_t buf[1024];
        size_t n = 0;
        const void *out;
        size_t outlen;
        while (mpconn_auth_next_framed(a, &out, &outlen) == 1) {
            CHECK(n + outlen <= sizeof buf);
            memcpy(buf + n, out, outlen);
            n += outlen;
        }
        send_all(fd, buf, n);
        int d = mpconn_auth_done(a);
        if (d != 0)
            return d;
        void *m;
        size_t len;
        int g = read_msg(fd, r, &m, &len);
        if (g < 0)
            return g;
        mpconn_auth_feed(a, m, len);
        free(m);
    }
    return -ETIMEDOUT;
}

/* Frames made by the public API and by mpconn_conn are the same bytes. */
TEST(interop_frames_with_conn)
{
    int sp[2];
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    no_hang(sp[1]);
    mpconn_conn *c;
    CHECK_INT(mpconn_conn_from_fd(&c, sp[0], MPCONN_READABLE | MPCONN_WRITABLE, NULL), 0);
    CHECK_INT(mpconn_conn_set_timeouts(c, 20, 20), 0);
    const size_t sizes[] = {0, 1, 255, 16384, 16385, 70000};
    uint8_t *payload = malloc(70000), *wire = malloc(70000 + 12);
    for (size_t i = 0; i < 70000; i++)
        payload[i] = (uint8_t)(i * 13 + 7);
    mpconn_reader *r = reader(0);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        /* conn -> raw: the bytes on the wire are header + payload. */
        CHECK_INT(mpconn_conn_send_bytes(c, payload, n), 0);
        size_t hl = mpconn_frame_header(n, wire), got = 0;
        memcpy(wire + hl, payload, n);
        uint8_t *seen = malloc(hl + n);
        while (got < hl + n) {
            ssize_t k = recv(sp[1], seen + got, hl + n - got, 0);
            CHECK(k > 0);
            got += (size_t)k;
        }
        CHECK_MEM(seen, wire, hl + n);
        feed(r, seen, got);
        expect_msg(r, payload, n);
        free(seen);
        /* raw -> conn. */
        send_all(sp[1], wire, hl + n);
        void *m;
        size_t len;
        CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), 0);
        CHECK_INT(len, n);
        CHECK(n == 0 || memcmp(m, payload, n) == 0);
        free(m);
    }
    /* The conn's clean end and the reader's agree. */
    mpconn_conn_free(c);
    void *m;
    size_t len;
    CHECK_INT(read_msg(sp[1], r, &m, &len), MPCONN_ERR_EOF);
    mpconn_reader_free(r);
    close(sp[1]);
    free(payload);
    free(wire);
}

static int unix_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    CHECK(strlen(path) < sizeof un.sun_path);
    strcpy(un.sun_path, path);
    CHECK_INT(connect(fd, (struct sockaddr *)&un, sizeof un), 0);
    no_hang(fd);
    return fd;
}

struct proto_client {
    const char *path, *key, *digest;
    int done;         /* out: mpconn_auth_done at the end */
    char errmsg[256]; /* out */
    char reply[64];   /* out: the listener's reply */
};

/* A client made of proto.h alone: handshake, one message each way. */
static void *proto_client_thread(void *arg)
{
    struct proto_client *pc = arg;
    int fd = unix_connect(pc->path);
    mpconn_auth *a;
    CHECK_INT(mpconn_auth_new(&a, MPCONN_AUTH_CLIENT, pc->key, strlen(pc->key), pc->digest, 1), 0);
    mpconn_reader *r = reader(1 << 20);
    pc->done = handshake(fd, a, r);
    snprintf(pc->errmsg, sizeof pc->errmsg, "%s", mpconn_auth_errmsg(a));
    if (pc->done == 1) {
        send_msg(fd, "hello");
        void *m;
        size_t len;
        CHECK_INT(read_msg(fd, r, &m, &len), 1);
        CHECK(len < sizeof pc->reply);
        memcpy(pc->reply, m, len);
        free(m);
    }
    mpconn_reader_free(r);
    mpconn_auth_free(a);
    close(fd);
    return NULL;
}

static mpconn_opts *keyed_opts(const char *key, const char *digest)
{
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_authkey(o, key, strlen(key)), 0);
    CHECK_INT(mpconn_opts_set_digest(o, digest), 0);
    CHECK_INT(mpconn_opts_set_handshake_timeout(o, 20), 0);
    return o;
}

/* A real mpconn_listener accepts a client that is only proto.h. */
TEST(interop_proto_client_to_listener)
{
    for (size_t i = 0; i < NDIGESTS; i++) {
        mpconn_opts *o = keyed_opts("secret password", digest_names[i]);
        mpconn_listener *l;
        char err[256];
        CHECK_INT(mpconn_listener_open(&l, NULL, o, err, sizeof err), 0);
        struct proto_client pc = {.path = mpconn_listener_address(l),
                                  .key = "secret password",
                                  .digest = digest_names[NDIGESTS - 1 - i]};
        pthread_t t;
        CHECK_INT(pthread_create(&t, NULL, proto_client_thread, &pc), 0);
        mpconn_conn *c;
        CHECK_INT(mpconn_listener_accept(l, &c, 20), 0);
        void *m;
        size_t len;
        CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), 0);
        CHECK_INT(len, 5);
        CHECK_MEM(m, "hello", 5);
        free(m);
        CHECK_INT(mpconn_conn_send_string(c, "hello yourself"), 0);
        pthread_join(t, NULL);
        CHECK_INT(pc.done, 1);
        CHECK_STR(pc.reply, "hello yourself");
        mpconn_conn_free(c);
        mpconn_listener_free(l);
        mpconn_opts_free(o);
    }
}

struct rejects {
    int n, code;
};

static void on_reject(void *data, int code, const char *message)
{
    (void)message;
    struct rejects *rj = data;
    rj->n++;
    rj->code = code;
}

/* The listener refuses a proto.h client with the wrong key, and the client
 * learns it from the listener's #FAILURE#. */
TEST(interop_wrong_key_refused_by_listener)
{
    mpconn_opts *o = keyed_opts("right", "sha256");
    mpconn_listener *l;
    char err[256];
    CHECK_INT(mpconn_listener_open(&l, NULL, o, err, sizeof err), 0);
    struct rejects rj = {0};
    mpconn_listener_on_reject(l, on_reject, &rj);
    struct proto_client pc = {.path = mpconn_listener_address(l), .key = "wrong"};
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, proto_client_thread, &pc), 0);
    for (int i = 0; i < 200 && rj.n == 0; i++) {
        mpconn_waitable w = {.listener = l, .fd = -1};
        CHECK(mpconn_wait(&w, 1, 0.1) >= 0);
        mpconn_conn *c = NULL;
        CHECK_INT(mpconn_listener_accept(l, &c, 0), -ETIMEDOUT);
    }
    pthread_join(t, NULL);
    CHECK_INT(rj.n, 1);
    CHECK_INT(rj.code, MPCONN_ERR_AUTH);
    CHECK_INT(pc.done, MPCONN_ERR_AUTH);
    CHECK(strstr(pc.errmsg, "rejected") != NULL);
    mpconn_listener_free(l);
    mpconn_opts_free(o);
}

struct blocking_client {
    const char *path, *digest;
    int rc;
    char reply[64];
};

static void *blocking_client_thread(void *arg)
{
    struct blocking_client *bc = arg;
    mpconn_opts *o = keyed_opts("secret password", bc->digest);
    mpconn_conn *c;
    char err[256];
    bc->rc = mpconn_client(&c, bc->path, o, err, sizeof err);
    if (bc->rc == 0) {
        CHECK_INT(mpconn_conn_send_string(c, "ping"), 0);
        char *s;
        CHECK_INT(mpconn_conn_recv_string(c, &s, sizeof bc->reply - 1), 0);
        strcpy(bc->reply, s);
        free(s);
        mpconn_conn_free(c);
    } else {
        fprintf(stderr, "mpconn_client: %s\n", err);
    }
    mpconn_opts_free(o);
    return NULL;
}

/* A listening Unix socket at a fresh path under dir (a mkdtemp template). */
static int unix_listen(char *dir, char *path, size_t cap)
{
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, cap, "%s/s", dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    CHECK(strlen(path) < sizeof un.sun_path);
    strcpy(un.sun_path, path);
    CHECK_INT(bind(lfd, (struct sockaddr *)&un, sizeof un), 0);
    CHECK_INT(listen(lfd, 8), 0);
    return lfd;
}

static void unix_unlisten(int lfd, const char *dir, const char *path)
{
    close(lfd);
    unlink(path);
    rmdir(dir);
}

/* A server made of proto.h: accepts one peer, authenticates it with the
 * digest given, expects one message and answers with another. */
static void serve_one(int lfd, const char *digest, const char *expect, const char *answer)
{
    int fd = accept(lfd, NULL, NULL);
    CHECK(fd >= 0);
    no_hang(fd);
    mpconn_auth *a = auth(MPCONN_AUTH_SERVER, "secret password", 15, digest, NULL);
    mpconn_reader *r = reader(1 << 20);
    CHECK_INT(handshake(fd, a, r), 1);
    void *m;
    size_t len;
    CHECK_INT(read_msg(fd, r, &m, &len), 1);
    CHECK_INT(len, strlen(expect));
    CHECK_MEM(m, expect, len);
    free(m);
    send_msg(fd, answer);
    mpconn_reader_free(r);
    mpconn_auth_free(a);
    close(fd);
}

/* mpconn_client authenticates with a server made of proto.h alone. */
TEST(interop_mpconn_client_to_proto_server)
{
    char dir[] = "/tmp/mpconn-proto-XXXXXX", path[64];
    int lfd = unix_listen(dir, path, sizeof path);
    for (size_t i = 0; i < NDIGESTS; i++) {
        struct blocking_client bc = {.path = path, .digest = digest_names[i]};
        pthread_t t;
        CHECK_INT(pthread_create(&t, NULL, blocking_client_thread, &bc), 0);
        serve_one(lfd, digest_names[NDIGESTS - 1 - i], "ping", "pong");
        pthread_join(t, NULL);
        CHECK_INT(bc.rc, 0);
        CHECK_STR(bc.reply, "pong");
    }
    unix_unlisten(lfd, dir, path);
}

/* ------------------------------------------------ interop with CPython */

/* The interpreter: $MPCONN_PYTHON (e.g. a CPython >= 3.12, which speaks
 * the {sha256} handshake), else the python3 on PATH. */
static const char *python(void)
{
    const char *p = getenv("MPCONN_PYTHON");
    return p && *p ? p : "python3";
}

/* Runs `python -c script arg` with its stdout on *out (read end). */
static pid_t spawn_python(const char *script, const char *arg, int *out)
{
    int p[2];
    CHECK_INT(pipe(p), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execlp(python(), python(), "-c", script, arg, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    *out = p[0];
    return pid;
}

/* After the child ended without doing its part: only a missing
 * interpreter (exit 127) is a skip. */
static void skipped(pid_t pid)
{
    int status;
    CHECK_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 127);
    fprintf(stderr, "%s not found: skipped\n", python());
}

/* Waits (bounded) until fd is readable; 0 when the child ended first. */
static int wait_readable(int fd, pid_t pid)
{
    for (int i = 0; i < 400; i++) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) > 0)
            return 1;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 127);
            fprintf(stderr, "%s not found: skipped\n", python());
            return 0;
        }
    }
    CHECK(!"the Python side did not start");
    return 0;
}

static void python_succeeded(pid_t pid)
{
    int status;
    CHECK_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status));
    CHECK_INT(WEXITSTATUS(status), 0);
}

/* CPython's Client authenticates with a server made of proto.h. */
TEST(cpython_client_to_proto_server)
{
    static const char script[] = "import sys\n"
                                 "from multiprocessing.connection import Client\n"
                                 "with Client(sys.argv[1], authkey=b'secret password') as c:\n"
                                 "    c.send_bytes(b'from python')\n"
                                 "    assert c.recv_bytes() == b'from C'\n";
    for (int legacy = 0; legacy < 2; legacy++) {
        char dir[] = "/tmp/mpconn-proto-XXXXXX", path[64];
        int lfd = unix_listen(dir, path, sizeof path), out;
        pid_t pid = spawn_python(script, path, &out);
        int ready = wait_readable(lfd, pid);
        if (ready) {
            serve_one(lfd, legacy ? "legacy" : "sha256", "from python", "from C");
            python_succeeded(pid);
        }
        close(out);
        unix_unlisten(lfd, dir, path);
        if (!ready)
            return;
    }
}

/* A client made of proto.h authenticates with CPython's Listener. */
TEST(proto_client_to_cpython_listener)
{
    static const char script[] = "import sys\n"
                                 "from multiprocessing.connection import Listener\n"
                                 "with Listener(sys.argv[1], authkey=b'secret password') as l:\n"
                                 "    print('ready', flush=True)\n"
                                 "    with l.accept() as c:\n"
                                 "        c.send_bytes(c.recv_bytes()[::-1])\n";
    for (size_t i = 0; i < NDIGESTS; i++) {
        char dir[] = "/tmp/mpconn-proto-XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        char path[64];
        snprintf(path, sizeof path, "%s/s", dir);
        int out;
        pid_t pid = spawn_python(script, path, &out);
        char line[16] = {0};
        int ready = wait_readable(out, pid);
        if (ready && read(out, line, sizeof line - 1) == 0) {
            skipped(pid); /* the end of its output: it has gone */
            ready = 0;
        }
        if (!ready) {
            close(out);
            rmdir(dir);
            return;
        }
        CHECK(strncmp(line, "ready", 5) == 0);
        int fd = unix_connect(path);
        mpconn_auth *a = auth(MPCONN_AUTH_CLIENT, "secret password", 15, digest_names[i], NULL);
        mpconn_reader *r = reader(1 << 20);
        CHECK_INT(handshake(fd, a, r), 1);
        send_msg(fd, "abc");
        void *m;
        size_t len;
        CHECK_INT(read_msg(fd, r, &m, &len), 1);
        CHECK_INT(len, 3);
        CHECK_MEM(m, "cba", 3);
        free(m);
        python_succeeded(pid);
        mpconn_reader_free(r);
        mpconn_auth_free(a);
        close(fd);
        close(out);
        rmdir(dir);
    }
}

TESTLIB_MAIN
