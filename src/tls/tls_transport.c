/* The TLS transport: mpconn_tls (no I/O) driven over a plain fd transport.
 * Ciphertext is read in bounded chunks and fed, pulled and written; plain
 * bytes count as written only once their records are in the kernel, so a
 * caller that stops at the end of its data leaves nothing in the engine. */
#include "tls/tls_transport.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* One TLS record and then some: the bytes asked of the socket per read. */
#define CHUNK 17408

/* TLS records begin with their content type: handshake (22) or alert (21)
 * is what a peer that speaks TLS sends first. */
#define REC_ALERT 21
#define REC_HANDSHAKE 22

static mpci_transport *inner(mpci_tls_transport *t)
{
    return &t->inner.base;
}

static int set_err(mpci_tls_transport *t, int code, const char *fmt, const char *arg)
{
    snprintf(t->errmsg, sizeof t->errmsg, fmt, arg);
    t->err = code;
    return code;
}

/* The peer's first bytes, before any of them reaches libssl, whose own
 * word for them ("wrong version number", "packet length too long") does
 * not say that the peer speaks another protocol. */
static int check_first(mpci_tls_transport *t, const uint8_t *p, size_t n)
{
    t->first_in = 0;
    if (p[0] == REC_HANDSHAKE || p[0] == REC_ALERT)
        return 0;
    static const char challenge[] = "#CHALLENGE#";
    size_t cl = sizeof challenge - 1;
    if (n >= 4 + cl && memcmp(p + 4, challenge, cl) == 0)
        return set_err(t, MPCONN_ERR_TLS, "%s",
                       "the peer did not speak TLS: it sent a multiprocessing authentication "
                       "challenge in clear (a listener without TLS?)");
    return set_err(t, MPCONN_ERR_TLS, "%s",
                   "the peer did not speak TLS: its first bytes are not a TLS record (a "
                   "plaintext peer?)");
}

/* Sends what the engine has for the peer: 1 when all of it is in the
 * kernel, 0 when the socket is full, or an error. */
static int flush(mpci_tls_transport *t)
{
    for (;;) {
        if (t->outpos == t->outlen) {
            t->outpos = t->outlen = 0;
            if (mpconn_tls_outgoing(t->tls) == 0)
                return 1;
            if (!t->out && !(t->out = malloc(MPCI_TLST_OUT)))
                return -ENOMEM;
            mpconn_tls_pull(t->tls, t->out, MPCI_TLST_OUT, &t->outlen);
            if (t->outlen == 0)
                return 1;
        }
        struct iovec iov = {t->out + t->outpos, t->outlen - t->outpos};
        ssize_t w = inner(t)->ops->writev(inner(t), &iov, 1);
        if (w == -EINTR)
            continue;
        if (w == -EAGAIN)
            return 0;
        if (w < 0)
            return (int)w;
        t->outpos += (size_t)w;
    }
}

/* Reads ciphertext from the socket into the engine: 1 when something (or
 * the end) was fed, -EAGAIN, or an error. */
static int more_input(mpci_tls_transport *t)
{
    uint8_t buf[CHUNK];
    for (;;) {
        ssize_t n = inner(t)->ops->read(inner(t), buf, sizeof buf);
        if (n == -EINTR)
            continue;
        if (n < 0)
            return (int)n;
        if (n == 0) {
            mpconn_tls_feed_eof(t->tls);
            return 1;
        }
        if (t->first_in && check_first(t, buf, (size_t)n) < 0)
            return t->err;
        return mpconn_tls_feed(t->tls, buf, (size_t)n) < 0 ? -ENOMEM : 1;
    }
}

/* more_input for a step that waits on *need: POLLIN when the socket is
 * empty. */
static int feed_more(mpci_tls_transport *t, short *need)
{
    int r = more_input(t);
    if (r == -EAGAIN)
        *need = POLLIN;
    return r;
}

/* After a step of the engine that returned r, with its output sent: r
 * when it is final (done, or failed: the alert went out if the socket took
 * it), -EAGAIN while the socket is full, 1 when the step wants input. */
static int settle(mpci_tls_transport *t, int r)
{
    int f = flush(t);
    if (r < 0)
        return r;
    if (f < 0)
        return f;
    if (f == 0) {
        t->need_read = POLLOUT;
        return -EAGAIN;
    }
    if (r == 0)
        t->need_read = 0;
    return r == 0 ? 0 : 1;
}

static ssize_t tlst_read(mpci_transport *base, void *dst, size_t cap)
{
    mpci_tls_transport *t = (mpci_tls_transport *)base;
    if (t->err)
        return t->err;
    /* A failed send does not stop the reading: the peer's last records,
     * or its close_notify, may still be there to read. */
    flush(t);
    for (;;) {
        size_t n = 0;
        int r = mpconn_tls_read(t->tls, dst, cap, &n);
        flush(t);
        if (r == 0) {
            t->need_read = 0;
            return (ssize_t)n;
        }
        if (r == MPCONN_ERR_EOF)
            return 0;
        if (r != MPCONN_TLS_WANT_READ || (r = feed_more(t, &t->need_read)) < 0)
            return r;
    }
}

/* Plain bytes gathered into one record: a message's header and a small
 * payload go as one record, not two. */
#define GATHER 16384

/* Encrypts len bytes at p: all of them (0), none while the engine holds
 * as much as it will (MPCONN_TLS_WANT_WRITE), or a failure. Up to one
 * record's worth the engine takes whole or not at all. */
static int put(mpci_tls_transport *t, const char *p, size_t len, size_t *taken)
{
    while (len > 0) {
        size_t k = 0;
        int r = mpconn_tls_write(t->tls, p, len, &k);
        if (r != 0)
            return r;
        p += k;
        len -= k;
        *taken += k;
    }
    return 0;
}

/* Encrypts from the vector until it is used up or the engine holds as
 * much as it will; *taken says how many plain bytes it took. 0, or what
 * stopped it before it took any: MPCONN_TLS_WANT_READ (the handshake waits
 * for the peer) or a failure. */
static int encrypt(mpci_tls_transport *t, const struct iovec *iov, int n, size_t *taken)
{
    char gather[GATHER];
    size_t have = 0;
    int r = 0;
    *taken = 0;
    for (int i = 0; i < n && r == 0; i++) {
        const char *p = iov[i].iov_base;
        size_t len = iov[i].iov_len;
        if (have + len <= sizeof gather) {
            memcpy(gather + have, p, len);
            have += len;
            continue;
        }
        if (have && (r = put(t, gather, have, taken)) == 0)
            have = 0;
        if (r == 0)
            r = put(t, p, len, taken);
    }
    if (r == 0 && have)
        r = put(t, gather, have, taken);
    return r == MPCONN_TLS_WANT_WRITE || *taken > 0 ? 0 : r;
}

static ssize_t tlst_writev(mpci_transport *base, const struct iovec *iov, int n)
{
    mpci_tls_transport *t = (mpci_tls_transport *)base;
    if (t->err)
        return t->err;
    for (;;) {
        int f = flush(t);
        if (f < 0)
            return f;
        if (f == 0) {
            t->need_write = POLLOUT;
            return -EAGAIN;
        }
        if (t->held) {
            /* The caller repeats a write that said -EAGAIN: its first held
             * bytes went out as records already. */
            size_t k = t->held;
            t->held = 0;
            t->need_write = 0;
            return (ssize_t)k;
        }
        size_t k;
        int r = encrypt(t, iov, n, &k);
        if (r == MPCONN_TLS_WANT_READ) {
            /* the handshake is not done: it needs the peer first */
            if ((r = feed_more(t, &t->need_write)) < 0)
                return r;
            continue;
        }
        if (r < 0)
            return r;
        f = flush(t);
        if (f < 0)
            return f;
        if (f == 0 && k > 0) {
            t->held = k;
            t->need_write = POLLOUT;
            return -EAGAIN;
        }
        if (k == 0 && n > 0 && iov[0].iov_len > 0) {
            t->need_write = POLLOUT; /* the engine is full: its records go first */
            return -EAGAIN;
        }
        t->need_write = 0;
        return (ssize_t)k;
    }
}

static int tlst_handshake(mpci_transport *base)
{
    mpci_tls_transport *t = (mpci_tls_transport *)base;
    if (t->err)
        return t->err;
    for (;;) {
        int r = settle(t, mpconn_tls_handshake(t->tls));
        if (r != 1 || (r = feed_more(t, &t->need_read)) < 0)
            return r;
    }
}

static int tlst_close(mpci_transport *base)
{
    mpci_tls_transport *t = (mpci_tls_transport *)base;
    if (inner(t)->fd < 0)
        return 0;
    if (!t->err && mpconn_tls_version(t->tls)) {
        /* close_notify, best effort: the fd goes now, so the send must
         * not wait for a peer that reads nothing. */
        int fl = fcntl(inner(t)->fd, F_GETFL);
        if (fl >= 0 && !(fl & O_NONBLOCK))
            fcntl(inner(t)->fd, F_SETFL, fl | O_NONBLOCK);
        if (t->outpos == t->outlen && mpconn_tls_shutdown(t->tls) >= 0)
            flush(t);
    }
    return inner(t)->ops->close(inner(t));
}

static size_t tlst_pending(const mpci_transport *base)
{
    const mpci_tls_transport *t = (const mpci_tls_transport *)base;
    size_t n = mpconn_tls_pending(t->tls);
    return n ? n : (size_t)mpconn_tls_readable(t->tls);
}

static short tlst_events(const mpci_transport *base, short want)
{
    const mpci_tls_transport *t = (const mpci_tls_transport *)base;
    short need = want & POLLOUT ? t->need_write : t->need_read;
    if (!need)
        need = want;
    /* Records waiting to go: whatever the engine waits for, the socket
     * taking them is progress too. */
    if (t->outpos < t->outlen || mpconn_tls_outgoing(t->tls))
        need |= POLLOUT;
    return need;
}

const mpci_transport_ops mpci_tls_transport_ops = {
    .read = tlst_read,
    .writev = tlst_writev,
    .close = tlst_close,
    .pending = tlst_pending,
    .events = tlst_events,
    .handshake = tlst_handshake,
};

int mpci_tlst_new(mpci_tls_transport **out, int fd, int is_socket, mpconn_tls *engine)
{
    *out = NULL;
    mpci_tls_transport *t = calloc(1, sizeof *t);
    if (!t) {
        mpconn_tls_free(engine);
        return -ENOMEM;
    }
    /* Never a Unix-socket reader: a descriptor passed to a TLS connection
     * cannot be one of its messages, and the plain reader closes it. */
    mpci_fdt_init(&t->inner, fd, is_socket, 0);
    /* A message or a handshake's end leaves as several small records, each
     * its own send (a server's session tickets, then its authkey
     * challenge): with Nagle's algorithm the second waits out the peer's
     * delayed ACK, 40 ms a round trip. Not a TCP socket: the call fails,
     * harmlessly. */
    if (is_socket)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    t->base.ops = &mpci_tls_transport_ops;
    t->base.fd = fd;
    t->tls = engine;
    t->first_in = 1;
    *out = t;
    return 0;
}

void mpci_tlst_free(mpci_tls_transport *t)
{
    if (!t)
        return;
    mpconn_tls_free(t->tls);
    free(t->out);
    free(t);
}

int mpci_tlst_feed(mpci_tls_transport *t, const void *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (t->first_in && check_first(t, buf, len) < 0)
        return t->err;
    return mpconn_tls_feed(t->tls, buf, len);
}

int mpci_tlst_shutdown(mpci_tls_transport *t, int (*keep)(void *, const uint8_t *, size_t),
                       void *data)
{
    if (t->err)
        return t->err;
    for (;;) {
        int r = settle(t, mpconn_tls_shutdown(t->tls));
        if (r != 1)
            return r;
        uint8_t buf[4096];
        size_t n = 0;
        r = mpconn_tls_read(t->tls, buf, sizeof buf, &n);
        if (r == 0) {
            if ((r = keep(data, buf, n)) < 0)
                return r;
            continue;
        }
        if (r == MPCONN_ERR_EOF)
            continue; /* the close_notify came: the shutdown completes */
        if (r != MPCONN_TLS_WANT_READ || (r = feed_more(t, &t->need_read)) < 0)
            return r;
    }
}

int mpci_tlst_unwrap(mpci_tls_transport *t, void *buf, size_t cap, size_t *n)
{
    return mpconn_tls_unwrap(t->tls, buf, cap, n);
}

const char *mpci_tlst_errmsg(const mpci_tls_transport *t)
{
    return t->err && t->errmsg[0] ? t->errmsg : mpconn_tls_errmsg(t->tls);
}

int mpci_tls_code(int code)
{
    return code <= MPCONN_ERR_TLS && code >= MPCONN_ERR_TLSCONFIG;
}
