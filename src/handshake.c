/* The authentication handshake without blocking: the layer-1 auth machine
 * fed by the layer-1 message decoder, with queued output and a deadline, so
 * a listener can run many at once and none can stall it. Each call is made
 * non-blocking (MSG_DONTWAIT), so the fd itself stays as the connection
 * wants it and no fcntl() is spent switching. */
#define _GNU_SOURCE /* MSG_DONTWAIT */
#include "mpci.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void mpci_hs_fail(mpci_hs *h, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->errmsg, sizeof h->errmsg, fmt, ap);
    va_end(ap);
    h->code = code;
    h->state = MPCI_AUTH_FAILED;
}

/* Moves the machine's queued messages, framed, to the output buffer. */
static void take_output(mpci_hs *h)
{
    const uint8_t *m;
    size_t n;
    while (mpci_auth_next_out(&h->auth, &m, &n)) {
        if (h->outpos == h->outlen)
            h->outpos = h->outlen = 0;
        if (h->outlen + MPCI_HDR_MAX + n > sizeof h->out) {
            mpci_hs_fail(h, -ENOBUFS, "handshake output overflow");
            return;
        }
        h->outlen += mpci_frame_header(h->out + h->outlen, n);
        memcpy(h->out + h->outlen, m, n);
        h->outlen += n;
    }
}

int mpci_hs_init(mpci_hs *h, int fd, int role, const struct mpconn_opts *o)
{
    memset(h, 0, sizeof *h);
    h->fd = fd;
    h->deadline = mpci_deadline(o->handshake_timeout);
    mpci_msgdec_init(&h->dec, MPCI_AUTH_MSG_MAX);
    uint8_t nonce[MPCI_NONCE_LEN];
    int r = mpci_nonce(o->cache, nonce);
    if (r < 0)
        return r;
    r = mpci_auth_init(&h->auth, role, o->authkey, o->authkey_len, o->digest, o->allow_md5, nonce);
    if (r < 0)
        return r;
    h->auth.cache = o->cache;
    h->auth.no_pipeline = o->no_pipeline;
    take_output(h);
    return 0;
}

void mpci_hs_clear(mpci_hs *h)
{
    mpci_msgdec_free(&h->dec);
    if (h->has_left_fd)
        close(h->left_fd);
    h->has_left_fd = 0;
}

short mpci_hs_events(const mpci_hs *h)
{
    return h->outpos < h->outlen ? POLLOUT : POLLIN;
}

static int flush(mpci_hs *h)
{
    while (h->outpos < h->outlen) {
        ssize_t w =
            send(h->fd, h->out + h->outpos, h->outlen - h->outpos, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -errno;
        }
        h->outpos += (size_t)w;
    }
    return 1;
}

static void auth_failed(mpci_hs *h)
{
    h->code = h->auth.code;
    snprintf(h->errmsg, sizeof h->errmsg, "%s", h->auth.errmsg);
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
    if (h->dec.in_body || h->dec.hdr.have)
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
            size_t used;
            int r = mpci_msgdec_feed(&h->dec, p, n, &used);
            p += used;
            n -= used;
            if (r == MPCONN_EMSGSIZE) {
                mpci_hs_fail(h, MPCONN_EAUTHPROTO,
                             "peer sent a %llu-byte message where the handshake allows at most %d "
                             "(does it have the authkey?)",
                             (unsigned long long)h->dec.len, MPCI_AUTH_MSG_MAX);
                return;
            }
            if (r < 0) {
                mpci_hs_fail(h, r == MPCONN_EPROTO ? MPCONN_EAUTHPROTO : r,
                             "malformed message header during the handshake");
                return;
            }
            if (r == 0)
                continue;
            uint8_t *msg = mpci_msgdec_take(&h->dec, &len);
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
            if (n > sizeof h->left) {
                mpci_hs_fail(h, MPCONN_EAUTHPROTO, "too many bytes behind the handshake");
                return;
            }
            memcpy(h->left, p, n);
            h->nleft = n;
            return;
        }
    }
}

int mpci_hs_progress(mpci_hs *h, int readable)
{
    if (h->state == MPCI_AUTH_FAILED) {
        flush(h); /* best effort: let the peer read #FAILURE# */
        return h->state;
    }
    for (;;) {
        int r = flush(h);
        if (r < 0) {
            mpci_hs_fail(h, r, "peer went away during the handshake: %s", strerror(-r));
            return h->state;
        }
        if (r == 0)
            return h->state; /* wait for POLLOUT */
        if (h->auth.state == MPCI_AUTH_DONE) {
            h->state = MPCI_AUTH_DONE;
            return h->state;
        }
        /* Only read what poll() announced: a read that finds nothing is a
         * system call spent on every step of every handshake. */
        if (!readable)
            return h->state;
        uint8_t buf[512];
        mpci_fdin in;
        ssize_t n =
            mpci_recv_fds(h->fd, buf, sizeof buf, h->blocking_reads ? 0 : MSG_DONTWAIT, 1, &in);
        if (n < 0) {
            /* A blocking read returns to its caller, who re-arms the bound:
             * retrying here would restart it at every signal. */
            if (errno == EINTR && !h->blocking_reads)
                continue;
            if (errno == EINTR)
                return h->state;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return h->state;
            mpci_hs_fail(h, -errno, "handshake: %s", strerror(errno));
            return h->state;
        }
        if (n == 0) {
            mpci_hs_fail(h, MPCONN_EAUTH,
                         "peer closed the connection during the handshake (wrong or missing "
                         "authkey?)");
            return h->state;
        }
        mpci_hs_consume(h, buf, (size_t)n);
        h->dropped_fds += in.dropped;
        if (in.fd >= 0) {
            /* A descriptor passed right behind the peer's last handshake
             * message belongs to the connection; one sent inside the
             * handshake is nobody's. */
            if (h->state != MPCI_AUTH_FAILED && h->auth.state == MPCI_AUTH_DONE && h->nleft &&
                !h->has_left_fd) {
                h->left_fd = in.fd;
                h->has_left_fd = 1;
            } else {
                close(in.fd);
                h->dropped_fds++;
            }
        }
        if (h->state == MPCI_AUTH_FAILED) {
            flush(h);
            return h->state;
        }
        readable = (size_t)n == sizeof buf; /* a full read may have left more */
    }
}
