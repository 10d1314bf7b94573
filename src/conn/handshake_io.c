/* The I/O half of a handshake: its byte side (proto/handshake.c) moved over
 * a socket. Each call is made non-blocking (MSG_DONTWAIT), so the fd itself
 * stays as the connection wants it and no fcntl() is spent switching. */
#define _GNU_SOURCE /* MSG_DONTWAIT */
#include "conn/handshake_io.h"
#include "conn/authcache.h"
#include "net/transport.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int cache_mac(void *cache, const char *digest, const uint8_t *key, size_t keylen,
                     const uint8_t *msg, size_t len, uint8_t *out)
{
    return mpci_mac_compute(cache, digest, key, keylen, msg, len, out);
}

int mpci_hs_init(mpci_hs *h, int role, const struct mpconn_opts *o)
{
    uint8_t nonce[MPCI_NONCE_LEN];
    int r = mpci_nonce(o->cache, nonce);
    if (r < 0) {
        memset(h, 0, sizeof *h);
        return r;
    }
    r = mpci_hs_start(h, role, o->authkey, o->authkey_len, o->digest, o->allow_md5, nonce);
    if (r < 0)
        return r;
    if (o->cache) {
        h->auth.mac = cache_mac;
        h->auth.mac_ctx = o->cache;
    }
    return 0;
}

short mpci_hs_events(const mpci_hs *h)
{
    return mpci_hs_has_output(h) ? POLLOUT : POLLIN;
}

static int flush(mpci_hs *h, int fd)
{
    while (h->outpos < h->outlen) {
        ssize_t w =
            send(fd, h->out + h->outpos, h->outlen - h->outpos, MSG_NOSIGNAL | MSG_DONTWAIT);
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

int mpci_hs_progress(mpci_hs *h, int fd, int readable, int blocking_reads)
{
    if (h->state == MPCI_AUTH_FAILED) {
        flush(h, fd); /* best effort: let the peer read #FAILURE# */
        return h->state;
    }
    for (;;) {
        int r = flush(h, fd);
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
        ssize_t n = mpci_recv_fds(fd, buf, sizeof buf, blocking_reads ? 0 : MSG_DONTWAIT, 1, &in);
        if (n < 0) {
            /* A blocking read returns to its caller, who re-arms the bound:
             * retrying here would restart it at every signal. */
            if (errno == EINTR && !blocking_reads)
                continue;
            if (errno == EINTR)
                return h->state;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return h->state;
            mpci_hs_fail(h, -errno, "handshake: %s", strerror(errno));
            return h->state;
        }
        if (n == 0) {
            mpci_hs_fail(h, MPCONN_ERR_AUTH,
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
            flush(h, fd);
            return h->state;
        }
        readable = (size_t)n == sizeof buf; /* a full read may have left more */
    }
}
