/* libFuzzer target for the byte side of a handshake (mpci_hs_consume):
 * how a peer's bytes are cut into messages, whole in one read or split
 * across many, and what is kept behind the last one.
 *
 * The first byte picks the role, the digest and a mode. Hostile mode feeds
 * the rest as the peer's bytes in chunks whose sizes the input chooses.
 * Honest mode plays a correct peer (an auth machine with the same key, in
 * lockstep with the handshake under test), cuts its byte stream where the
 * input says and appends the remaining input as the first bytes of the
 * connection: the handshake must finish and keep exactly the bytes that
 * came with its last message. Either way: a defined state, failed stays
 * failed, nothing kept beyond the buffer. */
#include "proto/handshake.h"

#include <stdlib.h>
#include <string.h>

static const mpci_auth_key key = {(const uint8_t *)"key", 3, NULL, NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const digests[] = {"sha256", "md5", "sha384", "sha3_256", "sha3_384", "legacy"};

static void check_state(const mpci_hs *h, int *failed)
{
    if (h->state != MPCI_AUTH_NEED_INPUT && h->state != MPCI_AUTH_DONE &&
        h->state != MPCI_AUTH_FAILED)
        abort();
    if (*failed && h->state != MPCI_AUTH_FAILED)
        abort();
    if (h->state == MPCI_AUTH_FAILED) {
        *failed = 1;
        if (h->code >= 0 || !mpci_hs_errmsg(h)[0])
            abort();
    }
    if (h->nleft > MPCI_HS_LEFT_MAX || (h->nleft && !h->left))
        abort();
}

/* Chunk sizes come from the input, one byte each (1..64), cycling. */
typedef struct cutter {
    const uint8_t *sizes;
    size_t n, i;
} cutter;

static size_t next_cut(cutter *c)
{
    if (!c->n)
        return 7;
    return (size_t)c->sizes[c->i++ % c->n] % 64 + 1;
}

/* Feeds chunks until the auth machine is through (the I/O side stops
 * there too: what follows belongs to the connection). */
static void feed_cut(mpci_hs *h, const uint8_t *p, size_t n, cutter *c, int *failed)
{
    while (n > 0 && h->state == MPCI_AUTH_NEED_INPUT && h->auth.state == MPCI_AUTH_NEED_INPUT) {
        size_t k = next_cut(c);
        if (k > n)
            k = n;
        mpci_hs_consume(h, p, k);
        check_state(h, failed);
        p += k;
        n -= k;
    }
}

/* Moves the handshake's framed output to the peer machine, and the peer's
 * answers, framed, to out. Returns the bytes added to out. */
static size_t relay(mpci_hs *h, mpci_auth *peer, uint8_t *out, size_t cap)
{
    size_t len = 0;
    mpci_msgdec dec;
    mpci_msgdec_init(&dec, MPCI_AUTH_MSG_MAX);
    size_t n = mpci_hs_has_output(h) ? (size_t)(h->outlen - h->outpos) : 0, sent = n;
    const uint8_t *p = n ? h->out + h->outpos : NULL;
    while (n > 0) {
        size_t used;
        int r = mpci_msgdec_feed(&dec, p, n, &used);
        p += used;
        n -= used;
        if (r < 0)
            abort(); /* our own output must frame correctly */
        if (r == 0)
            break;
        size_t ml;
        uint8_t *m = mpci_msgdec_take(&dec, &ml);
        if (!m)
            abort();
        mpci_auth_feed(peer, m, ml);
        free(m);
    }
    mpci_msgdec_free(&dec);
    mpci_hs_sent(h, sent); /* as if flushed */
    const uint8_t *m;
    size_t ml;
    while (mpci_auth_next_out(peer, &m, &ml)) {
        if (len + MPCI_HDR_MAX + ml > cap)
            abort();
        len += mpci_frame_header(out + len, ml);
        memcpy(out + len, m, ml);
        len += ml;
    }
    return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int role = data[0] & 1 ? MPCI_AUTH_CLIENT : MPCI_AUTH_SERVER;
    const char *digest = digests[(data[0] >> 1) % 6];
    int honest = (data[0] >> 4) & 1;
    size_t ncuts = data[1] % 16;
    data += 2;
    size = size - 2;
    if (ncuts > size)
        ncuts = size;
    cutter cut = {data, ncuts, 0};
    data += ncuts;
    size -= ncuts;

    /* A fixed nonce keeps runs reproducible; the byte side never draws one. */
    static const uint8_t own_nonce[MPCI_NONCE_LEN] = "0123456789abcdefghijABCDEFGHIJ0123456789";
    mpci_hs h;
    if (mpci_hs_start(&h, role, &key, digest, 1, own_nonce) != 0)
        abort();
    int failed = 0;
    if (!honest) {
        feed_cut(&h, data, size, &cut, &failed);
    } else {
        static const uint8_t nonce[MPCI_NONCE_LEN] = "zyxwvutsrqponmlkjihgZYXWVUTSRQPONMLKJIHG";
        mpci_auth peer;
        int peer_role = role == MPCI_AUTH_CLIENT ? MPCI_AUTH_SERVER : MPCI_AUTH_CLIENT;
        if (mpci_auth_init(&peer, peer_role, &key, "sha256", 1, nonce) != 0)
            abort();
        /* Two exchanges finish either role (the client pipelines); the
         * second carries the handshake's last message, and behind it the
         * rest of the input as the connection's first bytes. */
        uint8_t stream[4 * (MPCI_HDR_MAX + MPCI_AUTH_MSG_MAX + 16) + 4096];
        for (int round = 0; round < 2; round++) {
            size_t len = relay(&h, &peer, stream, sizeof stream - 4096);
            size_t behind = 0;
            if (round == 1) {
                behind = size < 4096 ? size : 4096;
                memcpy(stream + len, data, behind);
            }
            feed_cut(&h, stream, len + behind, &cut, &failed);
        }
        if (h.auth.state != MPCI_AUTH_DONE)
            abort(); /* an honest peer with the same key always gets through */
        /* consume stops at the last message: what rode in the same chunk
         * is kept, later chunks are the caller's */
        if (h.nleft > size || (h.nleft && memcmp(h.left, data, h.nleft) != 0))
            abort();
    }
    mpci_hs_clear(&h);
    return 0;
}
