/* mpconn_conn: multiprocessing.connection's Connection over one fd. The
 * message decoder (proto/frame.h) frames; the transport (net/transport.h)
 * moves the bytes; this file is the blocking API between them: one write
 * for header+payload, a read-ahead buffer for small messages, direct reads
 * for large ones, and state that survives timeouts so the stream never
 * loses its place. */
#include "conn/conn_internal.h"
#include "conn/handshake_io.h"
#include "base/clock.h"
#include "net/transport.h"
#include "net/socket.h"
#include "proto/auth.h"
#include "tls/tls_transport.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define RBUF_SIZE (64 * 1024)

enum { PASS_NONE, PASS_FD, PASS_LOST };

struct mpconn_conn {
    int fd;
    mpci_fd_transport fdt;    /* the plain transport over fd */
    mpci_transport *tp;       /* what reads and writes go through */
    mpci_tls_transport *tlst; /* the TLS transport over fd, while TLS is on */
    int flags;                /* MPCONN_READABLE | MPCONN_WRITABLE, cleared as CPython does */
    int is_unix;
    int closed;
    int read_broken;  /* stream position lost: no further reads */
    int write_broken; /* a message was cut short: no further writes */
    int nonblocking;  /* fd is O_NONBLOCK (a timeout is set) */
    int fdflags;      /* the fd's status flags as last set, to skip F_GETFL */
    int check_first;  /* no authkey here: a first #CHALLENGE# means the peer wants one */
    int check_send;   /* the same, looked for once before the first send */
    int nokey;        /* that challenge came: every later call says so again */
    int rcvtimeo;     /* SO_RCVTIMEO left set by the client's handshake */
    double send_timeout, recv_timeout;
    uint64_t max_message;
    struct mpconn_opts opts; /* plain settings only: owns nothing */
    int use_lock;
    pthread_mutex_t lock;
    char errmsg[MPCI_ERRMSG_MAX];

    /* read side */
    uint8_t *rbuf;
    size_t rpos, rend;
    /* The message being read: its payload so far survives a timeout, and a
     * whole one is kept after MPCONN_ERR_SHORTBUF. */
    mpci_msgdec dec;
    /* A passed descriptor waits only while its count byte sits unread in
     * rbuf, at pass_pos: the one recv_fd would take next. Once that byte is
     * read as part of a message, the descriptor is closed. */
    int pass_state; /* PASS_NONE, PASS_FD (pass_fd held), PASS_LOST (kernel discarded it) */
    int pass_fd;
    size_t pass_pos;
    size_t dropped_fds; /* descriptors closed because nobody asked for them */

    uint8_t *sbuf; /* reused by mpconn_conn_send for pickles */
    size_t scap;
};

void mpci_conn_seterr(mpconn_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mpci_verr(c->errmsg, sizeof c->errmsg, 0, fmt, ap);
    va_end(ap);
}

static int fail(mpconn_conn *c, int code, const char *what)
{
    if (c->tlst && mpci_tls_code(code))
        mpci_conn_seterr(c, "%s: %s", what, mpci_tlst_errmsg(c->tlst));
    else if (code > MPCONN_ERR_BASE && code < 0)
        mpci_conn_seterr(c, "%s: %s", what, strerror(-code));
    else
        mpci_conn_seterr(c, "%s: %s", what, mpconn_strerror(code));
    return code;
}

/* Blocking I/O without timeouts costs one system call per read or write;
 * with a timeout the fd turns non-blocking and poll() bounds the wait. */
static int apply_timeouts(mpconn_conn *c)
{
    int want = c->send_timeout >= 0 || c->recv_timeout >= 0;
    if (want == c->nonblocking || c->closed)
        return 0;
    int fl = want ? c->fdflags | O_NONBLOCK : c->fdflags & ~O_NONBLOCK;
    if (fcntl(c->fd, F_SETFL, fl) < 0)
        return -errno;
    c->fdflags = fl;
    c->nonblocking = want;
    return 0;
}

static void clear_rcvtimeo(mpconn_conn *c)
{
    if (!c->rcvtimeo)
        return;
    struct timeval none = {0, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
    c->rcvtimeo = 0;
}

int mpci_conn_new(mpconn_conn **out, int fd, int flags, const struct mpconn_opts *opts, int kind)
{
    mpconn_conn *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    /* The key and the uid list served the handshake: a connection keeps
     * only the plain settings. */
    if (opts)
        mpci_opts_copy_plain(&c->opts, opts);
    else
        mpci_opts_defaults(&c->opts);
    int is_socket;
    if ((kind & MPCI_FD_KIND) == MPCI_FD_UNKNOWN) {
        int family = mpci_sock_family(fd);
        is_socket = family >= 0;
        c->is_unix = family == AF_UNIX;
        c->fdflags = fcntl(fd, F_GETFL);
        if (c->fdflags < 0)
            c->fdflags = 0;
    } else {
        /* Made by the library: what it is and how it is set is known. */
        is_socket = (kind & MPCI_FD_KIND) != MPCI_FD_PIPE;
        c->is_unix = (kind & MPCI_FD_KIND) == MPCI_FD_UNIX;
        c->fdflags = kind & MPCI_FD_NONBLOCK ? O_NONBLOCK : 0;
        c->rcvtimeo = (kind & MPCI_FD_RCVTIMEO) != 0;
    }
    c->nonblocking = (c->fdflags & O_NONBLOCK) != 0;
    c->fd = fd;
    mpci_fdt_init(&c->fdt, fd, is_socket, c->is_unix);
    c->tp = &c->fdt.base;
    mpci_msgdec_init(&c->dec, 0); /* the limits are checked here, per call */
    c->flags = flags & (MPCONN_READABLE | MPCONN_WRITABLE);
    c->send_timeout = c->opts.send_timeout;
    c->recv_timeout = c->opts.recv_timeout;
    c->max_message = c->opts.max_message;
    pthread_mutex_init(&c->lock, NULL);
    int r = apply_timeouts(c);
    if (r < 0) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return r;
    }
    *out = c;
    return 0;
}

int mpconn_conn_from_fd(mpconn_conn **out, int fd, int flags, const mpconn_opts *opts)
{
    if (!out || fd < 0 || !(flags & (MPCONN_READABLE | MPCONN_WRITABLE)))
        return -EINVAL;
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0)
        return -errno;
    if (!(fdfl & FD_CLOEXEC)) /* an accepted socket mostly has it already */
        fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC);
    return mpci_conn_new(out, fd, flags, opts, MPCI_FD_UNKNOWN);
}

void mpci_conn_set_check_first(mpconn_conn *c)
{
    c->check_first = 1;
    c->check_send = 1;
}

/* The read-ahead buffer comes with the first read: a connection that only
 * sends, or is closed right away, never needs it. */
static int need_rbuf(mpconn_conn *c)
{
    if (!c->rbuf && !(c->rbuf = malloc(RBUF_SIZE)))
        return -ENOMEM;
    return 0;
}

int mpci_conn_prefill(mpconn_conn *c, const uint8_t *p, size_t n)
{
    if (need_rbuf(c) < 0)
        return -ENOMEM;
    if (n > RBUF_SIZE - c->rend)
        return -ENOBUFS;
    memcpy(c->rbuf + c->rend, p, n);
    c->rend += n;
    return 0;
}

/* Records what a read brought besides bytes: the closed descriptors are
 * counted and said in errmsg. */
static void note_fds(mpconn_conn *c, const mpci_fdin *in)
{
    if (in->dropped) {
        c->dropped_fds += in->dropped;
        mpci_conn_seterr(c, "closed %zu descriptor(s) the peer passed unasked (%zu so far)",
                         in->dropped, c->dropped_fds);
    }
    if (in->truncated)
        mpci_conn_seterr(c,
                         "the kernel discarded descriptors the peer passed (MSG_CTRUNC: more "
                         "than %d in one read, or this process is out of descriptors)",
                         MPCI_FD_ROOM);
}

static void drop_pass(mpconn_conn *c)
{
    if (c->pass_state == PASS_FD) {
        close(c->pass_fd);
        mpci_fdin in = {.fd = -1, .dropped = 1};
        note_fds(c, &in);
    }
    c->pass_state = PASS_NONE;
}

/* A held descriptor whose count byte was read as message bytes was not
 * passed for recv_fd: it goes now. */
static void settle_pass(mpconn_conn *c)
{
    if (c->pass_state != PASS_NONE && c->pass_pos < c->rpos)
        drop_pass(c);
}

void mpci_conn_prefill_fd(mpconn_conn *c, int fd, size_t dropped)
{
    mpci_fdin in = {.fd = -1, .dropped = dropped};
    note_fds(c, &in);
    if (fd < 0)
        return;
    if (c->rend == 0 || c->pass_state != PASS_NONE) {
        close(fd);
        in.dropped = 1;
        note_fds(c, &in);
        return;
    }
    c->pass_state = PASS_FD;
    c->pass_fd = fd;
    c->pass_pos = c->rend - 1;
}

size_t mpconn_conn_dropped_fds(const mpconn_conn *c)
{
    return c->dropped_fds;
}

int mpconn_conn_close(mpconn_conn *c)
{
    if (!c || c->closed)
        return 0;
    c->closed = 1;
    drop_pass(c);
    int r = c->tp->ops->close(c->tp);
    c->fd = -1;
    return r;
}

void mpconn_conn_free(mpconn_conn *c)
{
    if (!c)
        return;
    mpconn_conn_close(c);
    drop_pass(c); /* also after detach */
    free(c->rbuf);
    mpci_msgdec_free(&c->dec);
    free(c->sbuf);
    mpci_tlst_free(c->tlst);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int mpconn_conn_detach(mpconn_conn *c)
{
    if (!c || c->closed)
        return -EBADF;
    clear_rcvtimeo(c); /* the fd leaves as the caller would expect it */
    if (c->tlst) {
        /* the TLS session goes with the connection, without close_notify */
        c->tlst->inner.base.fd = -1;
        c->tp = &c->fdt.base;
    }
    int fd = mpci_fdt_release(&c->fdt);
    c->closed = 1;
    c->fd = -1;
    mpconn_conn_free(c);
    return fd;
}

int mpconn_conn_fileno(const mpconn_conn *c)
{
    return c && !c->closed ? c->fd : -1;
}
int mpconn_conn_readable(const mpconn_conn *c)
{
    return !c->closed && (c->flags & MPCONN_READABLE) && !c->read_broken;
}
int mpconn_conn_writable(const mpconn_conn *c)
{
    return !c->closed && (c->flags & MPCONN_WRITABLE) && !c->write_broken;
}
int mpconn_conn_closed(const mpconn_conn *c)
{
    return c->closed;
}
const char *mpconn_conn_errmsg(const mpconn_conn *c)
{
    return c->errmsg;
}
/* A whole message waits in dec (kept after MPCONN_ERR_SHORTBUF). */
static int kept(const mpconn_conn *c)
{
    return mpci_msgdec_complete(&c->dec);
}

size_t mpci_conn_buffered(const mpconn_conn *c)
{
    return (c->rend - c->rpos) + (kept(c) ? 1 : 0) + c->tp->ops->pending(c->tp);
}

int mpconn_conn_set_timeouts(mpconn_conn *c, double send_seconds, double recv_seconds)
{
    c->send_timeout = send_seconds;
    c->recv_timeout = recv_seconds;
    return apply_timeouts(c);
}

int mpconn_conn_set_max_message(mpconn_conn *c, uint64_t bytes)
{
    c->max_message = bytes;
    return 0;
}

int mpconn_conn_set_send_lock(mpconn_conn *c, int enable)
{
    c->use_lock = enable != 0;
    return 0;
}

/* Waits until the transport can go on with events (POLLIN or POLLOUT) or
 * the deadline passes. */
static int wait_ready(mpconn_conn *c, short events, double deadline)
{
    struct pollfd p = {.fd = c->fd, .events = c->tp->ops->events(c->tp, events)};
    for (;;) {
        int r = poll(&p, 1, mpci_poll_ms(deadline));
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

/* ------------------------------------------------------------- writing */

static int write_all(mpconn_conn *c, struct iovec *iov, int n, size_t total)
{
    double deadline = mpci_deadline(c->send_timeout);
    size_t sent = 0;
    while (n > 0) {
        ssize_t w = c->tp->ops->writev(c->tp, iov, n);
        if (w < 0) {
            int e = (int)-w;
            if (e == EINTR)
                continue;
            if (e == EAGAIN) {
                int r = wait_ready(c, POLLOUT, deadline);
                if (r == 0)
                    continue;
                e = -r;
            }
            /* Part of a TLS record may be out even when no byte counts as
             * sent: the stream cannot go on after it. */
            if ((sent > 0 && sent < total) || c->tlst)
                c->write_broken = 1;
            if (e == EPIPE || e == ECONNRESET)
                return fail(c, -e, "send: the peer has closed the connection");
            return fail(c, -e,
                        e == ETIMEDOUT && sent > 0 ? "send timed out inside a message" : "send");
        }
        sent += (size_t)w;
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* A keyless client whose listener wants a key: the listener's challenge is
 * its first message, sent at accept. When it is already here at the first
 * send (in the read-ahead buffer or, peeked without blocking, in the
 * socket), that send would only be taken as a wrong answer, so it fails
 * before writing a byte. Later challenges are caught by the first recv. */
static int challenge_waiting(mpconn_conn *c)
{
    if (!c->check_send)
        return 0;
    c->check_send = 0;
    if (!c->check_first)
        return 0; /* a message was read first: it was no challenge */
    const size_t pl = MPCI_AUTH_CHALLENGE_LEN;
    uint8_t head[4 + MPCI_AUTH_CHALLENGE_LEN];
    size_t have = c->rend - c->rpos;
    if (have >= sizeof head) {
        memcpy(head, c->rbuf + c->rpos, sizeof head);
    } else if (have > 0) {
        return 0; /* too short to tell: the first recv decides */
    } else {
        ssize_t n = recv(c->fd, head, sizeof head, MSG_PEEK | MSG_DONTWAIT);
        if (n < (ssize_t)sizeof head)
            return 0;
    }
    /* A 4-byte header of a length that holds at least the prefix. */
    mpci_hdr hdr;
    mpci_hdr_reset(&hdr);
    size_t used;
    uint64_t len;
    if (mpci_hdr_feed(&hdr, head, 4, &used, &len) != 1 || len < pl ||
        !mpci_auth_is_challenge(head + 4, pl))
        return 0;
    c->check_first = 0;
    c->read_broken = 1;
    c->write_broken = 1;
    c->nokey = 1;
    shutdown(c->fd, SHUT_RDWR);
    mpci_conn_seterr(c, "the listener sent an authentication challenge but this side has no "
                        "authkey (found before sending: nothing was sent)");
    return MPCONN_ERR_NOKEY;
}

static int check_send(mpconn_conn *c)
{
    if (c->closed)
        return fail(c, MPCONN_ERR_CLOSED, "send");
    if (!(c->flags & MPCONN_WRITABLE))
        return fail(c, MPCONN_ERR_NOTWRITABLE, "send");
    if (c->nokey)
        return MPCONN_ERR_NOKEY; /* the message that said why stays */
    if (c->write_broken)
        return fail(c, MPCONN_ERR_BROKEN, "send: an earlier send stopped inside a message");
    return 0;
}

void mpci_conn_lock(mpconn_conn *c)
{
    if (c->use_lock)
        pthread_mutex_lock(&c->lock);
}

void mpci_conn_unlock(mpconn_conn *c)
{
    if (c->use_lock)
        pthread_mutex_unlock(&c->lock);
}

int mpconn_conn_send_bytes(mpconn_conn *c, const void *buf, size_t len)
{
    int r = check_send(c);
    if (r < 0)
        return r;
    if (!buf && len)
        return fail(c, -EINVAL, "send");
    uint8_t hdr[MPCI_HDR_MAX];
    struct iovec iov[2] = {{hdr, mpci_frame_header(hdr, len)}, {(void *)buf, len}};
    mpci_conn_lock(c);
    r = challenge_waiting(c);
    if (r == 0)
        r = write_all(c, iov, len ? 2 : 1, iov[0].iov_len + len);
    mpci_conn_unlock(c);
    return r;
}

void mpci_conn_scratch(mpconn_conn *c, uint8_t ***buf, size_t **cap)
{
    *buf = &c->sbuf;
    *cap = &c->scap;
}

int mpci_conn_send_framed(mpconn_conn *c, uint8_t *buf, size_t len)
{
    int r = check_send(c);
    if (r < 0)
        return r;
    uint8_t hdr[MPCI_HDR_MAX];
    size_t hl = mpci_frame_header(hdr, len);
    memcpy(buf + MPCI_HDR_MAX - hl, hdr, hl);
    if ((r = challenge_waiting(c)) < 0)
        return r;
    struct iovec iov = {buf + MPCI_HDR_MAX - hl, hl + len};
    return write_all(c, &iov, 1, hl + len);
}

int mpconn_conn_send_slice(mpconn_conn *c, const void *buf, size_t buflen, size_t offset,
                           size_t size)
{
    if (offset > buflen) {
        mpci_conn_seterr(c, "send: buffer length < offset");
        return -EINVAL;
    }
    if (size == (size_t)-1)
        size = buflen - offset;
    if (size > buflen - offset) {
        mpci_conn_seterr(c, "send: buffer length < offset + size");
        return -EINVAL;
    }
    return mpconn_conn_send_bytes(c, (const uint8_t *)buf + offset, size);
}

int mpconn_conn_send_string(mpconn_conn *c, const char *s)
{
    if (!s)
        return fail(c, -EINVAL, "send_string");
    return mpconn_conn_send_bytes(c, s, strlen(s));
}

/* ------------------------------------------------------------- reading */

/* One read of up to cap bytes through the transport. On Unix sockets the
 * plain transport sees any passed descriptor: in (NULL: keep none)
 * receives what came. */
static ssize_t raw_read(mpconn_conn *c, void *dst, size_t cap, mpci_fdin *in)
{
    c->fdt.keep_fd = in != NULL;
    ssize_t n = c->tp->ops->read(c->tp, dst, cap);
    int fds = c->is_unix && !c->tlst;
    if (n >= 0 && fds)
        note_fds(c, &c->fdt.in);
    if (in)
        *in = fds && n >= 0 ? c->fdt.in : (mpci_fdin){.fd = -1};
    return n;
}

/* Reads at least one byte into dst; 0 at end of stream. */
static ssize_t read_some(mpconn_conn *c, void *dst, size_t cap, double deadline, mpci_fdin *in)
{
    for (;;) {
        ssize_t n = raw_read(c, dst, cap, in);
        if (n >= 0)
            return n;
        if (n == -EINTR)
            continue;
        if (n == -EAGAIN && c->rcvtimeo) {
            /* The handshake's bound ran out on a read of ours: it is no
             * longer wanted, and clearing it here rather than after every
             * handshake saves a system call per connection. */
            clear_rcvtimeo(c);
            continue;
        }
        if (n == -EAGAIN) {
            int r = wait_ready(c, POLLIN, deadline);
            if (r == 0)
                continue;
            return r;
        }
        return n;
    }
}

/* Reads more into the read-ahead buffer; returns bytes read, 0 at EOF. */
static ssize_t fill(mpconn_conn *c, double deadline)
{
    if (need_rbuf(c) < 0)
        return -ENOMEM;
    settle_pass(c);
    if (c->rpos == c->rend) {
        c->rpos = c->rend = 0;
    } else if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rend - c->rpos);
        c->rend -= c->rpos;
        c->pass_pos -= c->pass_state != PASS_NONE ? c->rpos : 0;
        c->rpos = 0;
    }
    mpci_fdin in;
    ssize_t n = read_some(c, c->rbuf + c->rend, RBUF_SIZE - c->rend, deadline, &in);
    if (n > 0) {
        c->rend += (size_t)n;
        if (in.fd >= 0 || (in.truncated && c->rbuf[c->rend - 1] == 1)) {
            drop_pass(c); /* one at a time: the newer one ends this read */
            c->pass_state = in.fd >= 0 ? PASS_FD : PASS_LOST;
            c->pass_fd = in.fd;
            c->pass_pos = c->rend - 1;
        }
    }
    return n;
}

static int read_error(mpconn_conn *c, ssize_t r, const char *what)
{
    if (r == 0) {
        c->read_broken = 1;
        return fail(c, MPCONN_ERR_EOFMSG, what);
    }
    if (r != -ETIMEDOUT && r != -EAGAIN)
        c->read_broken = 1;
    return fail(c, (int)r, what);
}

static int check_recv(mpconn_conn *c)
{
    if (c->closed)
        return fail(c, MPCONN_ERR_CLOSED, "recv");
    if (!(c->flags & MPCONN_READABLE))
        return fail(c, MPCONN_ERR_NOTREADABLE, "recv");
    if (c->nokey)
        return MPCONN_ERR_NOKEY;
    if (c->read_broken)
        return fail(c, MPCONN_ERR_BROKEN, "recv: the stream lost its place after an earlier error");
    return 0;
}

/* CPython's _bad_message_length: the stream position is lost. */
static int bad_length(mpconn_conn *c, uint64_t len, uint64_t limit, const char *which)
{
    c->flags &= ~MPCONN_READABLE;
    c->read_broken = 1;
    mpci_conn_seterr(c,
                     "bad message length: %llu bytes announced, %s is %llu; the connection is "
                     "no longer readable",
                     (unsigned long long)len, which, (unsigned long long)limit);
    return MPCONN_ERR_MSGSIZE;
}

/* Completes the header of the next message. */
static int read_header(mpconn_conn *c, double deadline, size_t maxlength)
{
    if (c->dec.in_body)
        return 0;
    for (;;) {
        if (c->rpos < c->rend) {
            size_t used;
            int r = mpci_msgdec_header(&c->dec, c->rbuf + c->rpos, c->rend - c->rpos, &used);
            c->rpos += used;
            if (r < 0) {
                c->read_broken = 1;
                return fail(c, r, "recv: negative message length in header");
            }
            if (r == 1)
                break;
        }
        ssize_t n = fill(c, deadline);
        if (n == 0 && c->dec.hdr.have == 0) {
            mpci_conn_seterr(c, "recv: end of file (the peer closed the connection)");
            return MPCONN_ERR_EOF;
        }
        if (n <= 0)
            return read_error(c, n, "recv");
    }
    uint64_t len = c->dec.len;
    if (maxlength && len > maxlength)
        return bad_length(c, len, maxlength, "maxlength");
    if (c->max_message && len > c->max_message)
        return bad_length(c, len, c->max_message, "the connection's maximum");
    if (len > SIZE_MAX / 2)
        return bad_length(c, len, SIZE_MAX / 2, "this platform's limit");
    return 0;
}

/* Moves payload bytes into dst[*got..want): first from the read-ahead
 * buffer, then straight from the fd when the rest is large, through the
 * buffer when it is small (which also picks up the next header). */
static int read_payload(mpconn_conn *c, uint8_t *dst, size_t *got, size_t want, double deadline)
{
    while (*got < want) {
        size_t avail = c->rend - c->rpos;
        if (avail) {
            size_t k = want - *got < avail ? want - *got : avail;
            memcpy(dst + *got, c->rbuf + c->rpos, k);
            c->rpos += k;
            *got += k;
            continue;
        }
        ssize_t n;
        if (want - *got >= RBUF_SIZE / 2) {
            n = read_some(c, dst + *got, want - *got, deadline, NULL);
            if (n > 0)
                *got += (size_t)n;
        } else {
            n = fill(c, deadline);
        }
        if (n <= 0)
            return read_error(c, n, "recv");
    }
    return 0;
}

/* Reads the rest of the current payload into the decoder's buffer, which
 * grows only as the bytes that really arrived fill it, so a header that
 * claims much and sends little costs little. */
static int read_into_dec(mpconn_conn *c, double deadline)
{
    mpci_msgdec *d = &c->dec;
    while (d->got < d->len) {
        size_t room;
        if (!mpci_msgdec_room(d, RBUF_SIZE, &room))
            return fail(c, -ENOMEM, "recv");
        int r = read_payload(c, d->data, &d->got, d->got + room, deadline);
        if (r < 0)
            return r;
    }
    return 0;
}

/* A client without authkey: a challenge as first message means the
 * listener wants one. Say so and hang up so the listener fails at once. */
static int check_first_message(mpconn_conn *c, const uint8_t *p, size_t len)
{
    if (!c->check_first)
        return 0;
    c->check_first = 0;
    if (!mpci_auth_is_challenge(p, len))
        return 0;
    c->read_broken = 1;
    c->write_broken = 1;
    c->nokey = 1;
    shutdown(c->fd, SHUT_RDWR);
    mpci_conn_seterr(c,
                     "the listener sent an authentication challenge but this side has no authkey");
    return MPCONN_ERR_NOKEY;
}

int mpconn_conn_recv_bytes(mpconn_conn *c, void **out, size_t *len, size_t maxlength)
{
    int r = check_recv(c);
    if (r < 0)
        return r;
    double deadline = mpci_deadline(c->recv_timeout);
    if (!kept(c)) {
        if ((r = read_header(c, deadline, maxlength)) < 0)
            return r;
        if ((r = read_into_dec(c, deadline)) < 0)
            return r;
    } else if (maxlength && c->dec.len > maxlength) {
        return bad_length(c, c->dec.len, maxlength, "maxlength");
    }
    size_t n;
    uint8_t *msg = mpci_msgdec_take(&c->dec, &n);
    settle_pass(c);
    if (!msg)
        return fail(c, -ENOMEM, "recv");
    if ((r = check_first_message(c, msg, n)) < 0) {
        free(msg);
        return r;
    }
    *out = msg;
    *len = n;
    return 0;
}

int mpci_conn_recv_view(mpconn_conn *c, const uint8_t **p, size_t *len, void **owned)
{
    *owned = NULL;
    int r = check_recv(c);
    if (r < 0)
        return r;
    if (!kept(c)) {
        if ((r = read_header(c, mpci_deadline(c->recv_timeout), 0)) < 0)
            return r;
        size_t n = (size_t)c->dec.len;
        if (c->dec.got == 0 && c->rend - c->rpos >= n) {
            /* Whole in the read-ahead buffer: no copy, no allocation. */
            const uint8_t *m = c->rbuf + c->rpos;
            c->rpos += n;
            mpci_msgdec_next(&c->dec);
            settle_pass(c);
            if ((r = check_first_message(c, m, n)) < 0)
                return r;
            *p = m;
            *len = n;
            return 0;
        }
    }
    void *msg;
    if ((r = mpconn_conn_recv_bytes(c, &msg, len, 0)) < 0)
        return r;
    *owned = msg;
    *p = msg;
    return 0;
}

int mpconn_conn_recv_bytes_into(mpconn_conn *c, void *buf, size_t buflen, size_t offset,
                                size_t *len)
{
    int r = check_recv(c);
    if (r < 0)
        return r;
    if (offset > buflen) {
        mpci_conn_seterr(c, "recv_bytes_into: offset larger than the buffer");
        return -EINVAL;
    }
    double deadline = mpci_deadline(c->recv_timeout);
    if (!kept(c) && (r = read_header(c, deadline, 0)) < 0)
        return r;
    size_t n = (size_t)c->dec.len, room = buflen - offset;
    if (n > room) {
        /* CPython's BufferTooShort: the message is consumed whole and kept. */
        if (!kept(c)) {
            if ((r = read_into_dec(c, deadline)) < 0)
                return r;
            if ((r = check_first_message(c, c->dec.data, n)) < 0) {
                mpci_msgdec_next(&c->dec);
                settle_pass(c);
                return r;
            }
        }
        *len = n;
        mpci_conn_seterr(c,
                         "recv_bytes_into: message of %zu byte%s does not fit in %zu; it is "
                         "kept for the next receive",
                         n, n == 1 ? "" : "s", room);
        return MPCONN_ERR_SHORTBUF;
    }
    uint8_t *dst = (uint8_t *)buf + offset;
    size_t got = c->dec.got;
    if (got)
        memcpy(dst, c->dec.data, got);
    if (!kept(c)) {
        r = read_payload(c, dst, &got, n, deadline);
        if (r < 0) {
            /* Keep what arrived so the next call continues this message. */
            if (r == -ETIMEDOUT && got > c->dec.got &&
                mpci_msgdec_append(&c->dec, dst + c->dec.got, got - c->dec.got) < 0) {
                c->read_broken = 1;
                return fail(c, -ENOMEM, "recv");
            }
            return r;
        }
    }
    mpci_msgdec_free(&c->dec); /* the message is the caller's now */
    settle_pass(c);
    if ((r = check_first_message(c, dst, n)) < 0)
        return r;
    *len = n;
    return 0;
}

int mpconn_conn_recv_string(mpconn_conn *c, char **out, size_t maxlength)
{
    void *msg;
    size_t len;
    int r = mpconn_conn_recv_bytes(c, &msg, &len, maxlength);
    if (r < 0)
        return r;
    char *s = realloc(msg, len + 1);
    if (!s) {
        free(msg);
        return fail(c, -ENOMEM, "recv_string");
    }
    s[len] = 0;
    *out = s;
    return 0;
}

int mpconn_conn_poll(mpconn_conn *c, double seconds)
{
    int r = check_recv(c);
    if (r < 0)
        return r;
    if (c->rpos < c->rend || kept(c) || c->tp->ops->pending(c->tp))
        return 1;
    r = wait_ready(c, POLLIN, mpci_deadline(seconds));
    if (r == 0)
        return 1;
    if (r == -ETIMEDOUT)
        return 0;
    return fail(c, r, "poll");
}

/* ----------------------------------------------------------- fd passing */

static int need_unix(mpconn_conn *c, const char *what)
{
    if (c->closed)
        return fail(c, MPCONN_ERR_CLOSED, what);
    if (!c->is_unix) {
        mpci_conn_seterr(c, "%s: fd passing needs a Unix socket", what);
        return MPCONN_ERR_NOTSUP;
    }
    if (c->tlst) {
        mpci_conn_seterr(c, "%s: descriptors cannot go through TLS", what);
        return MPCONN_ERR_NOTSUP;
    }
    return 0;
}

int mpconn_conn_send_fd(mpconn_conn *c, int fd, int ack)
{
    int r = need_unix(c, "send_fd");
    if (r < 0)
        return r;
    double deadline = mpci_deadline(c->send_timeout);
    for (;;) {
        ssize_t w = mpci_fdt_send_fd(&c->fdt, fd, 1);
        if (w == 1)
            break;
        if (w == -EINTR)
            continue;
        if (w == -EAGAIN) {
            if ((r = wait_ready(c, POLLOUT, deadline)) < 0)
                return fail(c, r, "send_fd");
            continue;
        }
        return fail(c, w < 0 ? (int)w : -EIO, "send_fd");
    }
    if (!ack)
        return 0;
    uint8_t a = 0;
    size_t got = 0;
    double rd = mpci_deadline(c->recv_timeout);
    if ((r = read_payload(c, &a, &got, 1, rd)) < 0)
        return r;
    if (a != 'A') {
        mpci_conn_seterr(c, "send_fd: did not receive acknowledgement of fd");
        return MPCONN_ERR_PROTO;
    }
    return 0;
}

int mpconn_conn_recv_fd(mpconn_conn *c, int *fd, int ack)
{
    int r = need_unix(c, "recv_fd");
    if (r < 0)
        return r;
    settle_pass(c);
    uint8_t count = 0;
    int got = -1, lost = 0;
    if (c->rpos < c->rend) {
        if (c->pass_state != PASS_NONE && c->pass_pos == c->rpos) {
            got = c->pass_state == PASS_FD ? c->pass_fd : -1;
            lost = c->pass_state == PASS_LOST;
            c->pass_state = PASS_NONE;
        }
        count = c->rbuf[c->rpos++];
    } else {
        /* One byte: the kernel hands over the descriptors of the message
         * this byte begins, and nothing behind it is read. */
        mpci_fdin in;
        ssize_t n = read_some(c, &count, 1, mpci_deadline(c->recv_timeout), &in);
        if (n == 0) {
            mpci_conn_seterr(c, "recv_fd: end of file");
            return MPCONN_ERR_EOF;
        }
        if (n < 0)
            return read_error(c, n, "recv_fd");
        got = in.fd;
        lost = in.truncated && got < 0 && count == 1;
    }
    if (got < 0 && lost) {
        mpci_conn_seterr(c, "recv_fd: the kernel discarded the descriptor sent with the count "
                            "byte (is this process out of descriptors?)");
        return -EMFILE;
    }
    if (got < 0) {
        mpci_conn_seterr(c, "recv_fd: count byte %u arrived without a descriptor", count);
        return MPCONN_ERR_PROTO;
    }
    if (ack) {
        uint8_t a = 'A';
        struct iovec iov = {&a, 1};
        if ((r = write_all(c, &iov, 1, 1)) < 0) {
            close(got);
            return r;
        }
    }
    *fd = got;
    return 0;
}

const struct mpconn_opts *mpci_conn_opts(const mpconn_conn *c)
{
    return &c->opts;
}

/* ------------------------------------------------------------------ TLS */

/* Runs step (a transport op: 0 done, -EAGAIN, or an error) until it is
 * done, with the fd non-blocking for the time and poll() bounding it. */
static int drive(mpconn_conn *c, int (*step)(mpconn_conn *), double deadline)
{
    int was = c->nonblocking;
    if (!was && fcntl(c->fd, F_SETFL, c->fdflags | O_NONBLOCK) < 0)
        return -errno;
    int r;
    while ((r = step(c)) == -EAGAIN || r == -EINTR)
        if (r == -EAGAIN && (r = wait_ready(c, POLLIN, deadline)) < 0)
            break;
    if (!was)
        fcntl(c->fd, F_SETFL, c->fdflags);
    return r;
}

static int tls_handshake_step(mpconn_conn *c)
{
    return c->tp->ops->handshake(c->tp);
}

int mpci_conn_start_tls(mpconn_conn *c, mpconn_tls_config *cfg, const char *server_name,
                        double deadline)
{
    const char *name = NULL;
    if (mpci_tls_config_role(cfg) == MPCONN_TLS_CLIENT) {
        name = mpci_tls_config_server_name(cfg);
        if (!name)
            name = server_name;
    }
    mpconn_tls *e;
    int r = mpconn_tls_new(&e, cfg, name);
    if (r == MPCONN_ERR_TLSCONFIG) {
        mpci_conn_seterr(c, "TLS configuration: %s", mpconn_tls_config_errmsg(cfg));
        return r;
    }
    if (r == -EINVAL) {
        mpci_conn_seterr(c, "TLS: a client needs the server's name (or IP address) to verify "
                            "its certificate");
        return r;
    }
    if (r < 0)
        return fail(c, r, "TLS");
    struct stat st;
    int is_socket = fstat(c->fd, &st) == 0 && S_ISSOCK(st.st_mode);
    if ((r = mpci_tlst_new(&c->tlst, c->fd, is_socket, e)) < 0)
        return fail(c, r, "TLS");
    c->tp = &c->tlst->base;
    /* What was read ahead in clear is the peer's first flight; a passed
     * descriptor waiting in it can no longer be asked for. */
    drop_pass(c);
    if (c->rpos < c->rend) {
        r = mpci_tlst_feed(c->tlst, c->rbuf + c->rpos, c->rend - c->rpos);
        c->rpos = c->rend = 0;
    }
    if (r == 0)
        r = drive(c, tls_handshake_step, deadline);
    if (r < 0) {
        c->read_broken = c->write_broken = 1;
        if (r == -ETIMEDOUT)
            mpci_conn_seterr(c, "TLS handshake timed out (does the peer speak TLS?)");
        else
            fail(c, r, "TLS handshake failed");
    }
    return r;
}

void mpci_conn_adopt_tls(mpconn_conn *c, mpci_tls_transport *t)
{
    c->tlst = t;
    c->tp = &t->base;
}

int mpconn_conn_start_tls(mpconn_conn *c, mpconn_tls_config *cfg, const char *server_name)
{
    if (!c || c->closed)
        return c ? fail(c, MPCONN_ERR_CLOSED, "start_tls") : -EINVAL;
    if (!cfg || c->tlst) {
        mpci_conn_seterr(c, "start_tls: %s", cfg ? "the connection is TLS already" : "no config");
        return -EINVAL;
    }
    return mpci_conn_start_tls(c, cfg, server_name, mpci_deadline(c->recv_timeout));
}

static int keep_plain(void *data, const uint8_t *p, size_t n)
{
    return mpci_conn_prefill(data, p, n);
}

static int tls_shutdown_step(mpconn_conn *c)
{
    return mpci_tlst_shutdown(c->tlst, keep_plain, c);
}

int mpconn_conn_unwrap_tls(mpconn_conn *c)
{
    if (!c->tlst) {
        mpci_conn_seterr(c, "unwrap_tls: the connection is not TLS");
        return -EINVAL;
    }
    if (c->closed)
        return fail(c, MPCONN_ERR_CLOSED, "unwrap_tls");
    int r = need_rbuf(c);
    if (r == 0 && c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rend - c->rpos);
        c->rend -= c->rpos;
        c->rpos = 0;
    }
    if (r == 0)
        r = drive(c, tls_shutdown_step, mpci_deadline(c->recv_timeout));
    /* Behind what came in TLS: the clear bytes behind the close_notify. */
    while (r == 0) {
        uint8_t buf[4096];
        size_t n = 0;
        mpci_tlst_unwrap(c->tlst, buf, sizeof buf, &n);
        if (n == 0)
            break;
        r = mpci_conn_prefill(c, buf, n);
    }
    if (r < 0) {
        c->read_broken = c->write_broken = 1;
        if (r != -ETIMEDOUT)
            return fail(c, r, "unwrap_tls");
        mpci_conn_seterr(c, "unwrap_tls: the peer sent no close_notify in time");
        return r;
    }
    mpci_tlst_free(c->tlst);
    c->tlst = NULL;
    c->tp = &c->fdt.base;
    return 0;
}

mpconn_tls *mpconn_conn_tls(const mpconn_conn *c)
{
    return c && c->tlst ? c->tlst->tls : NULL;
}

int mpci_conn_handshake(mpconn_conn *c, int role, const struct mpconn_opts *o, double deadline,
                        mpci_hs *hs)
{
    int r = mpci_hs_init(hs, role, o);
    if (r < 0)
        return r;
    int was = c->nonblocking;
    if (!was && fcntl(c->fd, F_SETFL, c->fdflags | O_NONBLOCK) < 0)
        return -errno;
    while (mpci_hs_progress_tp(hs, c->tp) == MPCI_AUTH_NEED_INPUT) {
        struct pollfd p = {.fd = c->fd, .events = c->tp->ops->events(c->tp, mpci_hs_events(hs))};
        int n = poll(&p, 1, mpci_poll_ms(deadline));
        if (n == 0) {
            mpci_hs_fail(hs, -ETIMEDOUT, "the handshake timed out");
            break;
        }
        if (n < 0 && errno != EINTR) {
            mpci_hs_fail(hs, -errno, "poll: %s", strerror(errno));
            break;
        }
    }
    if (!was)
        fcntl(c->fd, F_SETFL, c->fdflags);
    if (hs->state == MPCI_AUTH_FAILED && c->tlst && mpci_tls_code(hs->code))
        mpci_hs_fail(hs, hs->code, "%s", mpci_tlst_errmsg(c->tlst));
    if (hs->state == MPCI_AUTH_FAILED)
        return hs->code;
    if (hs->nleft)
        return mpci_conn_prefill(c, hs->left, hs->nleft);
    return 0;
}
