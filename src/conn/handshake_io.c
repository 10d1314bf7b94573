/* The I/O half of a handshake: its byte side (proto/handshake.c) moved
 * through a transport, written as far as it takes and read only when there
 * is something to read, so it never blocks a loop. */
#include "conn/handshake_io.h"
#include "conn/authcache.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

int mpci_hs_init(mpci_hs *h, int role, const struct mpconn_opts *o)
{
    uint8_t nonce[MPCI_NONCE_LEN];
    int r = mpci_nonce(o->cache, nonce);
    if (r < 0) {
        memset(h, 0, sizeof *h);
        return r;
    }
    return mpci_hs_start(h, role, &o->akey, o->digest, o->allow_md5, nonce);
}

short mpci_hs_events(const mpci_hs *h)
{
    return mpci_hs_has_output(h) ? POLLOUT : POLLIN;
}

short mpci_hs_wants(const mpci_hs *h, const mpci_transport *t)
{
    return t->ops->events(t, mpci_hs_events(h));
}

/* 1 when all output is written, 0 when t takes no more now, or -errno. */
static int flush(mpci_hs *h, mpci_transport *t)
{
    while (mpci_hs_has_output(h)) {
        struct iovec iov = {h->out + h->outpos, (size_t)(h->outlen - h->outpos)};
        ssize_t w = t->ops->writev(t, &iov, 1);
        if (w == -EINTR)
            continue;
        if (w == -EAGAIN)
            return 0;
        if (w < 0)
            return (int)w;
        mpci_hs_sent(h, (size_t)w);
    }
    return 1;
}

/* One read; on the plain fd with recvmsg, a descriptor allowed. */
static ssize_t read_in(mpci_transport *t, uint8_t *buf, size_t cap, int blocking, mpci_fdin *in)
{
    mpci_fd_transport *ft = mpci_fdt_of(t);
    if (!ft) {
        *in = (mpci_fdin){.fd = -1};
        return t->ops->read(t, buf, cap);
    }
    uint8_t dontwait = ft->dontwait, keep = ft->keep_fd;
    ft->keep_fd = 1;
    if (blocking)
        ft->dontwait = 0;
    ssize_t n = t->ops->read(t, buf, cap);
    ft->dontwait = dontwait;
    ft->keep_fd = keep;
    *in = ft->in;
    return n;
}

int mpci_hs_step(mpci_hs *h, mpci_transport *t, int readable, int blocking_reads)
{
    if (h->state == MPCI_AUTH_FAILED) {
        flush(h, t); /* best effort: let the peer read #FAILURE# */
        return h->state;
    }
    for (;;) {
        int r = flush(h, t);
        if (r < 0) {
            mpci_hs_fail(h, r, "peer went away during the handshake: %s", mpconn_strerror(r));
            return h->state;
        }
        if (r == 0)
            return h->state; /* wait for the transport to take more */
        if (h->auth.state == MPCI_AUTH_DONE) {
            h->state = MPCI_AUTH_DONE;
            return h->state;
        }
        /* Only read what poll() announced (or the transport holds): a read
         * that finds nothing is a system call spent on every step of every
         * handshake. */
        if (!readable && !t->ops->pending(t))
            return h->state;
        uint8_t buf[512];
        mpci_fdin in;
        ssize_t n = read_in(t, buf, sizeof buf, blocking_reads, &in);
        if (n < 0) {
            /* A blocking read returns to its caller, who re-arms the bound:
             * retrying here would restart it at every signal. */
            if (n == -EINTR && !blocking_reads)
                continue;
            if (n == -EINTR || n == -EAGAIN)
                return h->state;
            mpci_hs_fail(h, (int)n, "handshake: %s", mpconn_strerror((int)n));
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
            flush(h, t);
            return h->state;
        }
        readable = (size_t)n == sizeof buf; /* a full read may have left more */
    }
}

int mpci_hs_progress(mpci_hs *h, int fd, int readable, int blocking_reads)
{
    mpci_fd_transport t;
    mpci_fdt_init(&t, fd, 1, 1);
    t.dontwait = 1;
    return mpci_hs_step(h, &t.base, readable, blocking_reads);
}

int mpci_hs_progress_tp(mpci_hs *h, mpci_transport *t)
{
    return mpci_hs_step(h, t, 1, 0);
}
