/* The byte side of a handshake: the auth machine fed by the message
 * decoder, its answers framed into an output buffer. No I/O, so a fuzzer
 * drives it alone and conn/handshake_io.c runs many at once over sockets. */
#include "proto/handshake.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The reason goes into the machine's buffer: once the handshake fails the
 * machine is done with too, and one buffer serves both. */
void mpci_hs_fail(mpci_hs *h, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    h->code = mpci_verr(h->auth.errmsg, sizeof h->auth.errmsg, code, fmt, ap);
    va_end(ap);
    h->state = MPCI_AUTH_FAILED;
}

/* Moves the machine's queued messages, framed, to the output buffer,
 * which exists only while it holds bytes to send. */
static void take_output(mpci_hs *h)
{
    const uint8_t *m;
    size_t n;
    while (mpci_auth_next_out(&h->auth, &m, &n)) {
        if (!h->out) {
            if (!(h->out = malloc(MPCI_HS_OUT_MAX))) {
                mpci_hs_fail(h, -ENOMEM, "out of memory during the handshake");
                return;
            }
            h->outpos = h->outlen = 0;
        } else if (h->outpos == h->outlen) {
            h->outpos = h->outlen = 0;
        }
        if (h->outlen + MPCI_HDR_MAX + n > MPCI_HS_OUT_MAX) {
            mpci_hs_fail(h, -ENOBUFS, "handshake output overflow");
            return;
        }
        h->outlen = (uint16_t)(h->outlen + mpci_frame_header(h->out + h->outlen, n));
        memcpy(h->out + h->outlen, m, n);
        h->outlen = (uint16_t)(h->outlen + n);
    }
}

void mpci_hs_sent(mpci_hs *h, size_t n)
{
    h->outpos = (uint16_t)(h->outpos + n);
    if (h->outpos >= h->outlen) {
        free(h->out);
        h->out = NULL;
        h->outpos = h->outlen = 0;
    }
}

static void auth_failed(mpci_hs *h)
{
    h->code = h->auth.code;
    h->state = MPCI_AUTH_FAILED;
}

/* Gives one whole message to the machine; 1 while the handshake goes on. */
static int deliver(mpci_hs *h, const uint8_t *msg, size_t len)
{
    int st = mpci_auth_feed(&h->auth, msg, len);
    take_output(h);
    if (st == MPCI_AUTH_FAILED) {
        auth_failed(h);
        return 0;
    }
    return st != MPCI_AUTH_DONE;
}

/* Whether p starts with a whole message (and nothing is half-read before
 * it): then *hl is its header's length and *len its payload's. */
static int whole_message(const mpci_hs *h, const uint8_t *p, size_t n, size_t *hl, size_t *len)
{
    if (h->dec && (h->dec->in_body || h->dec->hdr.have))
        return 0;
    mpci_hdr hdr;
    mpci_hdr_reset(&hdr);
    uint64_t l;
    if (mpci_hdr_feed(&hdr, p, n, hl, &l) != 1 || l > MPCI_AUTH_MSG_MAX || n - *hl < l)
        return 0;
    *len = (size_t)l;
    return 1;
}

/* Feeds bytes to the machine, whole messages straight from p when they
 * are there (the usual case), else through the decoder. */
void mpci_hs_consume(mpci_hs *h, const uint8_t *p, size_t n)
{
    while (n > 0 && h->state == MPCI_AUTH_NEED_INPUT) {
        size_t hl, len;
        int more;
        if (whole_message(h, p, n, &hl, &len)) {
            more = deliver(h, p + hl, len);
            p += hl + len;
            n -= hl + len;
        } else {
            if (!h->dec) {
                if (!(h->dec = malloc(sizeof *h->dec))) {
                    mpci_hs_fail(h, -ENOMEM, "out of memory during the handshake");
                    return;
                }
                mpci_msgdec_init(h->dec, MPCI_AUTH_MSG_MAX);
            }
            size_t used;
            int r = mpci_msgdec_feed(h->dec, p, n, &used);
            p += used;
            n -= used;
            if (r == MPCONN_ERR_MSGSIZE) {
                mpci_hs_fail(h, MPCONN_ERR_AUTHPROTO,
                             "peer sent a %llu-byte message where the handshake allows at most %d "
                             "(does it have the authkey?)",
                             (unsigned long long)h->dec->len, MPCI_AUTH_MSG_MAX);
                return;
            }
            if (r < 0) {
                mpci_hs_fail(h, r == MPCONN_ERR_PROTO ? MPCONN_ERR_AUTHPROTO : r,
                             "malformed message header during the handshake");
                return;
            }
            if (r == 0)
                continue;
            uint8_t *msg = mpci_msgdec_take(h->dec, &len);
            if (!msg) {
                mpci_hs_fail(h, -ENOMEM, "out of memory during the handshake");
                return;
            }
            more = deliver(h, msg, len);
            free(msg);
        }
        if (!more) {
            if (h->state == MPCI_AUTH_FAILED)
                return;
            /* Done: what follows is the first message of the connection. */
            if (n > MPCI_HS_LEFT_MAX) {
                mpci_hs_fail(h, MPCONN_ERR_AUTHPROTO, "too many bytes behind the handshake");
                return;
            }
            if (n && !(h->left = malloc(n))) {
                mpci_hs_fail(h, -ENOMEM, "out of memory during the handshake");
                return;
            }
            if (n)
                memcpy(h->left, p, n);
            h->nleft = (uint16_t)n;
            return;
        }
    }
}

int mpci_hs_start(mpci_hs *h, int role, const mpci_auth_key *k, const char *digest, int allow_md5,
                  const uint8_t nonce[MPCI_NONCE_LEN])
{
    memset(h, 0, sizeof *h);
    int r = mpci_auth_init(&h->auth, role, k, digest, allow_md5, nonce);
    if (r < 0)
        return r;
    take_output(h);
    return 0;
}

void mpci_hs_clear(mpci_hs *h)
{
    free(h->out);
    h->out = NULL;
    h->outpos = h->outlen = 0;
    if (h->dec) {
        mpci_msgdec_free(h->dec);
        free(h->dec);
        h->dec = NULL;
    }
    free(h->left);
    h->left = NULL;
    h->nleft = 0;
    if (h->has_left_fd)
        close(h->left_fd);
    h->has_left_fd = 0;
}
