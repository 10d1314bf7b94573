/* The public face of the sans-I/O protocol (include/mpconn/proto.h): owned
 * buffers, sticky errors and a nonce drawn on demand around the framing
 * decoder and the authentication machine, which stay as they are. */
#include "mpconn/proto.h"
#include "base/random.h"
#include "proto/auth.h"
#include "proto/frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* ------------------------------------------------------------ frames */

size_t mpconn_frame_header(uint64_t len, uint8_t out[MPCONN_FRAME_HEADER_MAX])
{
    return mpci_frame_header(out, len);
}

/* An input buffer stands between feed and the decoder, as in hiredis: feed
 * cannot fail on the stream's content, and get hands out one message per
 * call while the rest waits. */
struct mpconn_reader {
    mpci_msgdec dec;
    uint8_t *in;
    size_t inpos, inlen, incap;
    int err; /* sticky once the stream has lost its place */
    char errmsg[MPCI_ERRMSG_MAX];
};

/* An input buffer larger than this is let go once drained, so one large
 * feed does not pin its memory for the reader's life. */
#define KEEP_INPUT (64 * 1024)

int mpconn_reader_new(mpconn_reader **out, uint64_t max_message)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    mpconn_reader *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
#if SIZE_MAX < UINT64_MAX
    /* A message must fit in memory to be handed out whole. */
    if (max_message == 0 || max_message > SIZE_MAX)
        max_message = SIZE_MAX;
#endif
    mpci_msgdec_init(&r->dec, max_message);
    *out = r;
    return 0;
}

void mpconn_reader_free(mpconn_reader *r)
{
    if (!r)
        return;
    mpci_msgdec_free(&r->dec);
    free(r->in);
    free(r);
}

int mpconn_reader_feed(mpconn_reader *r, const void *buf, size_t len)
{
    if (!r || (!buf && len))
        return -EINVAL;
    if (r->err)
        return r->err;
    if (len == 0)
        return 0;
    if (r->incap - r->inlen < len && r->inpos > 0) {
        memmove(r->in, r->in + r->inpos, r->inlen - r->inpos);
        r->inlen -= r->inpos;
        r->inpos = 0;
    }
    if (r->incap - r->inlen < len) {
        if (len > SIZE_MAX / 2 - r->inlen)
            return -ENOMEM;
        size_t cap = r->incap ? r->incap : 4096;
        while (cap < r->inlen + len)
            cap *= 2;
        uint8_t *p = realloc(r->in, cap);
        if (!p)
            return -ENOMEM;
        r->in = p;
        r->incap = cap;
    }
    memcpy(r->in + r->inlen, buf, len);
    r->inlen += len;
    return 0;
}

static int reader_fail(mpconn_reader *r, int code)
{
    if (code == MPCONN_ERR_MSGSIZE)
        mpci_err(r->errmsg, sizeof r->errmsg, code,
                 "message of %llu bytes exceeds the limit of %llu bytes",
                 (unsigned long long)r->dec.len, (unsigned long long)r->dec.max);
    else if (code == MPCONN_ERR_PROTO)
        mpci_err(r->errmsg, sizeof r->errmsg, code,
                 "malformed message header (a negative length other than -1)");
    else
        mpci_err(r->errmsg, sizeof r->errmsg, code, "%s", mpconn_strerror(code));
    r->err = code;
    return code;
}

int mpconn_reader_get(mpconn_reader *r, void **msg, size_t *len)
{
    if (!r || !msg || !len)
        return -EINVAL;
    *msg = NULL;
    *len = 0;
    if (r->err)
        return r->err;
    while (r->inpos < r->inlen) {
        size_t used;
        int rc = mpci_msgdec_feed(&r->dec, r->in + r->inpos, r->inlen - r->inpos, &used);
        r->inpos += used;
        if (rc == -ENOMEM)
            return rc; /* the decoder keeps its place: a retry goes on */
        if (rc < 0)
            return reader_fail(r, rc);
        if (rc == 1) {
            /* Never NULL: the decoder holds at least one byte for any
             * completed message, empty ones included. */
            *msg = mpci_msgdec_take(&r->dec, len);
            if (!*msg)
                return reader_fail(r, -ENOMEM);
            return 1;
        }
    }
    r->inpos = r->inlen = 0;
    if (r->incap > KEEP_INPUT) {
        free(r->in);
        r->in = NULL;
        r->incap = 0;
    }
    return 0;
}

size_t mpconn_reader_pending(const mpconn_reader *r)
{
    if (!r)
        return 0;
    return (r->inlen - r->inpos) + r->dec.hdr.have + r->dec.got;
}

const char *mpconn_reader_errmsg(const mpconn_reader *r)
{
    return r && r->err ? r->errmsg : "";
}

/* ---------------------------------------------------- authentication */

/* The machine borrows its key; here the key lives behind the struct, so
 * the caller's copy may go at once. The machine is set up at start, when
 * the nonce is known; new checks the setup with a stand-in nonce so that a
 * bad digest fails where it is given. */
struct mpconn_auth {
    mpci_auth m;
    int role; /* MPCI_AUTH_SERVER or MPCI_AUTH_CLIENT */
    int started;
    int have_nonce;
    int allow_md5;
    char digest[16];
    uint8_t nonce[MPCI_NONCE_LEN];
    uint8_t framed[MPCI_HDR_MAX + MPCI_AUTH_OUT_MAX];
    mpci_auth_key k; /* the machine's: key and keylen below */
    size_t keylen;
    uint8_t key[];
};

int mpconn_auth_new(mpconn_auth **out, int role, const void *key, size_t keylen, const char *digest,
                    int allow_md5)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!digest)
        digest = "sha256";
    int mrole = role == MPCONN_AUTH_SERVER   ? MPCI_AUTH_SERVER
                : role == MPCONN_AUTH_CLIENT ? MPCI_AUTH_CLIENT
                                             : -1;
    if (mrole < 0 || (!key && keylen) || strlen(digest) >= sizeof((mpconn_auth *)0)->digest ||
        keylen > SIZE_MAX - sizeof(mpconn_auth))
        return -EINVAL;
    mpconn_auth *a = calloc(1, sizeof *a + keylen);
    if (!a)
        return -ENOMEM;
    static const uint8_t stand_in[MPCI_NONCE_LEN];
    a->k = (mpci_auth_key){key, keylen, NULL, NULL}; /* a trial run, to check the setup */
    int r = mpci_auth_init(&a->m, mrole, &a->k, digest, allow_md5 != 0, stand_in);
    if (r < 0) {
        free(a);
        return r;
    }
    memset(&a->m, 0, sizeof a->m);
    a->role = mrole;
    a->allow_md5 = allow_md5 != 0;
    strcpy(a->digest, digest);
    if (keylen)
        memcpy(a->key, key, keylen);
    a->keylen = keylen;
    a->k = (mpci_auth_key){a->key, keylen, NULL, NULL};
    *out = a;
    return 0;
}

void mpconn_auth_free(mpconn_auth *a)
{
    if (!a)
        return;
    /* The machine keeps MACs and our challenge, the struct keeps the key. */
    OPENSSL_cleanse(a, sizeof *a + a->keylen);
    free(a);
}

static size_t nonce_len(const mpconn_auth *a)
{
    return strcmp(a->digest, "legacy") == 0 ? MPCI_LEGACY_NONCE_LEN : MPCI_NONCE_LEN;
}

int mpconn_auth_set_nonce(mpconn_auth *a, const void *nonce, size_t len)
{
    if (!a || !nonce || a->started || len != nonce_len(a))
        return -EINVAL;
    memset(a->nonce, 0, sizeof a->nonce);
    memcpy(a->nonce, nonce, len);
    a->have_nonce = 1;
    return 0;
}

int mpconn_auth_start(mpconn_auth *a)
{
    if (!a)
        return -EINVAL;
    if (a->started)
        return 0;
    a->started = 1;
    int r = a->have_nonce ? 0 : mpci_random(a->nonce, sizeof a->nonce);
    if (r == 0)
        r = mpci_auth_init(&a->m, a->role, &a->k, a->digest, a->allow_md5, a->nonce);
    OPENSSL_cleanse(a->nonce, sizeof a->nonce); /* the machine has its copy */
    if (r < 0) {
        a->m.state = MPCI_AUTH_FAILED;
        a->m.code = r;
        if (!a->m.errmsg[0])
            mpci_err(a->m.errmsg, sizeof a->m.errmsg, r, "cannot draw a challenge nonce: %s",
                     mpconn_strerror(r));
    }
    return r;
}

int mpconn_auth_done(const mpconn_auth *a)
{
    if (!a)
        return -EINVAL;
    if (a->m.state == MPCI_AUTH_DONE)
        return 1;
    if (a->m.state == MPCI_AUTH_FAILED)
        return a->m.code < 0 ? a->m.code : MPCONN_ERR_AUTH;
    return 0;
}

int mpconn_auth_feed(mpconn_auth *a, const void *msg, size_t len)
{
    if (!a)
        return -EINVAL;
    int r = mpconn_auth_start(a);
    if (r < 0)
        return r;
    mpci_auth_feed(&a->m, msg, len);
    return mpconn_auth_done(a);
}

int mpconn_auth_next(mpconn_auth *a, const void **msg, size_t *len)
{
    if (!a || !msg || !len)
        return -EINVAL;
    *msg = NULL;
    *len = 0;
    (void)mpconn_auth_start(a); /* a failure shows in mpconn_auth_done */
    const uint8_t *m;
    if (!mpci_auth_next_out(&a->m, &m, len))
        return 0;
    *msg = m;
    return 1;
}

int mpconn_auth_next_framed(mpconn_auth *a, const void **msg, size_t *len)
{
    const void *m;
    size_t n;
    int r = mpconn_auth_next(a, &m, &n);
    if (r <= 0)
        return r;
    size_t hl = mpci_frame_header(a->framed, n);
    memcpy(a->framed + hl, m, n);
    *msg = a->framed;
    *len = hl + n;
    return 1;
}

const char *mpconn_auth_errmsg(const mpconn_auth *a)
{
    return a && a->m.state == MPCI_AUTH_FAILED ? a->m.errmsg : "";
}
