/* The async connection: asynchat done over the sans-I/O pieces. Input goes
 * through the message splitter, the handshake through mpci_hs, output
 * through a queue flushed with one writev; writes go out at once when
 * nothing is queued before them. */
#define _GNU_SOURCE /* MSG_CMSG_CLOEXEC */
#include "async_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

enum { ST_NEW, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING, ST_CLOSED };

#define READ_CHUNK 65536
#define READS_PER_EVENT 4 /* then let the other connections have their turn */
#define IOV_BATCH 64
#define SMALL_SEND 2048 /* header and payload copied into one send below this */
#define MAX_FDS 4       /* descriptors taken with one read; more are closed by the kernel */

typedef struct chunk {
    struct chunk *next;
    int fd;       /* >= 0: a descriptor to pass with this chunk's one byte */
    size_t len;   /* inline bytes, then ext */
    size_t off;   /* written so far */
    uint8_t *ext; /* a buffer handed over by send_owned */
    size_t extlen;
    void (*release)(void *, void *);
    void *arg;
    uint8_t data[]; /* inline: a header, or a header and a copied payload */
} chunk;

struct mpconn_async {
    mpconn_ev ev;
    uint8_t state;
    uint8_t sock;     /* a socket (send with MSG_NOSIGNAL), else a pipe */
    uint8_t paused;   /* reading paused by the user */
    uint8_t above;    /* the queue passed the high watermark */
    uint8_t producer; /* ask cbs.produce for more */
    uint8_t framed;   /* sends get the multiprocessing header */
    uint8_t local;    /* a Unix socket: descriptors may come and go */
    uint8_t fdpass;   /* reads take descriptors (recvmsg); else the kernel drops them */
    uint8_t want_fd;  /* the next input byte is a descriptor's count byte */
    mpconn_async_cbs cbs;
    void *data;
    mpci_split split;
    uint8_t *held; /* input read but not yet taken (reading paused meanwhile) */
    size_t nheld, heldoff;
    chunk *head, *tail;
    size_t queued;
    size_t high, low;
    double idle_to, read_to, deadline; /* deadline: connect or handshake */
    double last_io, msg_start;
    int timer_armed;
    double armed_for;  /* the deadline the timer is armed for */
    uint64_t accepted; /* bytes ever taken by send: tells a producer's progress */
    /* Passed descriptors: those that came with the byte at stream offset
     * rfd_at (the kernel ends a read with the byte that carries them). */
    uint64_t inpos; /* stream offset of the next byte to take */
    uint64_t rfd_at;
    int rfd[MAX_FDS];
    int nrfd;
    size_t dropped_fds;
    mpci_hs *hs;
    struct mpconn_opts *own_opts; /* a client's copy for its handshake */
    int protocol;
    mpci_pickle_limits lim;     /* decoding limits */
    mpci_async_hs_done hs_done; /* set while an accepting listener waits */
    void *owner;
    double started;
    char *errmsg;
    char *peer; /* mpconn_async_peer's answer */
    /* A Unix connect refused for a full backlog (EAGAIN), tried again on
     * the timer, as a blocking connect waits for room. */
    struct sockaddr_storage *retry_sa;
    socklen_t retry_len;
    double retry_at, retry_wait;
};

static void on_io(mpconn_ev *ev, int events);
static void on_timeout(mpconn_ev *ev);

static void destroy(mpconn_ev *ev)
{
    mpconn_async *a = (mpconn_async *)ev;
    for (int i = 0; i < a->nrfd; i++)
        close(a->rfd[i]);
    mpci_split_free(&a->split);
    free(a->held);
    free(a->errmsg);
    free(a->peer);
    free(a->retry_sa);
    free(a);
}

static void seterr(mpconn_async *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(mpconn_async *a, const char *fmt, ...)
{
    char buf[MPCI_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *m = strdup(buf);
    if (m) {
        free(a->errmsg);
        a->errmsg = m;
    }
}

const char *mpconn_async_peer(mpconn_async *a, pid_t *pid, uid_t *uid, gid_t *gid)
{
    if (pid)
        *pid = -1;
    if (uid)
        *uid = (uid_t)-1;
    if (gid)
        *gid = (gid_t)-1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char text[160] = "";
    if (a->sock && a->state != ST_CLOSED &&
        getpeername(a->ev.fd, (struct sockaddr *)&ss, &sl) == 0) {
        mpci_addr_format_peer((struct sockaddr *)&ss, sl, text, sizeof text);
        pid_t p;
        uid_t u;
        gid_t g;
        if (ss.ss_family == AF_UNIX && mpci_sock_peercred(a->ev.fd, &p, &u, &g) == 0) {
            if (pid)
                *pid = p;
            if (uid)
                *uid = u;
            if (gid)
                *gid = g;
        }
    }
    /* Kept with the connection, as its error message is. */
    char *m = strdup(text);
    if (!m)
        return "";
    free(a->peer);
    a->peer = m;
    return m;
}

const char *mpconn_async_errmsg(const mpconn_async *a)
{
    return a->errmsg ? a->errmsg : "";
}

int mpconn_async_fileno(const mpconn_async *a)
{
    return a->state == ST_CLOSED ? -1 : a->ev.fd;
}

static void release_queue(mpconn_async *a)
{
    chunk *c = a->head;
    while (c) {
        chunk *next = c->next;
        if (c->release)
            c->release(c->ext, c->arg);
        if (c->fd >= 0)
            close(c->fd);
        free(c);
        c = next;
    }
    a->head = a->tail = NULL;
    a->queued = 0;
}

/* Descriptors that arrived and were not asked for: closed as soon as the
 * byte they came with is taken as data, and counted. */
static void drop_rfds(mpconn_async *a)
{
    for (int i = 0; i < a->nrfd; i++)
        close(a->rfd[i]);
    a->dropped_fds += (size_t)a->nrfd;
    a->nrfd = 0;
}

static void hs_release(mpconn_async *a)
{
    if (a->hs) {
        mpci_hs_clear(a->hs);
        free(a->hs);
        a->hs = NULL;
    }
    if (a->own_opts) {
        mpci_opts_clear(a->own_opts);
        free(a->own_opts);
        a->own_opts = NULL;
    }
}

/* The end: no callback after on_close, the free when the stack unwinds. */
static void close_with(mpconn_async *a, int reason, const char *why)
{
    if (a->state == ST_CLOSED)
        return;
    int was_open = a->state >= ST_OPEN;
    a->state = ST_CLOSED;
    if (why)
        seterr(a, "%s", why);
    mpci_ev_set_io(&a->ev, 0);
    mpci_ev_set_timer(&a->ev, -1);
    mpci_ev_set_pending(&a->ev, 0);
    release_queue(a);
    hs_release(a);
    /* Detach from the loop before the number is given back to the kernel. */
    int attached = a->ev.st != NULL;
    mpconn_ev *ev = &a->ev;
    if (ev->st) {
        ev->ad->cleanup(ev->st);
        ev->st = NULL;
    }
    close(ev->fd);
    ev->pins++; /* keep a alive through the callback below */
    if (a->hs_done && !was_open) {
        mpci_async_hs_done done = a->hs_done;
        a->hs_done = NULL;
        done(a, reason ? reason : MPCONN_ERR_CLOSED, mpconn_async_errmsg(a), a->owner);
    } else if (attached && a->cbs.on_close) {
        a->cbs.on_close(a, reason, mpconn_async_errmsg(a), a->data);
    }
    ev->pins--;
    mpci_ev_doom(ev);
}

void mpconn_async_close(mpconn_async *a)
{
    if (!a)
        return;
    if (a->state == ST_NEW && !a->ev.st) {
        a->state = ST_CLOSED;
        close(a->ev.fd);
        hs_release(a);
        release_queue(a);
        destroy(&a->ev);
        return;
    }
    close_with(a, 0, NULL);
}

/* -------------------------------------------------------------- timers */

static double now(void)
{
    return mpci_now();
}

/* The earliest of the deadlines in force, 0 when none. */
static double next_deadline(const mpconn_async *a)
{
    double d = 0;
    if (a->deadline > 0)
        d = a->deadline;
    if (a->retry_sa && (d == 0 || a->retry_at < d))
        d = a->retry_at;
    if (a->state >= ST_OPEN) {
        if (a->idle_to >= 0 && (d == 0 || a->last_io + a->idle_to < d))
            d = a->last_io + a->idle_to;
        if (a->read_to >= 0 && a->msg_start > 0 && (d == 0 || a->msg_start + a->read_to < d))
            d = a->msg_start + a->read_to;
    }
    return d;
}

/* Arms the one timer for the earliest deadline; activity only moves the
 * deadlines, and the timer re-arms itself when it finds them moved. */
static void arm(mpconn_async *a)
{
    double d = next_deadline(a);
    if (d == 0) {
        if (a->timer_armed)
            mpci_ev_set_timer(&a->ev, -1);
        a->timer_armed = 0;
        return;
    }
    double left = d - now();
    mpci_ev_set_timer(&a->ev, left > 0 ? left : 0);
    a->timer_armed = 1;
    a->armed_for = d;
}

static void retry_connect(mpconn_async *a);

static void on_timeout(mpconn_ev *ev)
{
    mpconn_async *a = (mpconn_async *)ev;
    double t = now();
    if (a->deadline > 0 && t >= a->deadline) {
        close_with(a, -ETIMEDOUT,
                   a->state == ST_CONNECTING ? "connect timed out" : "handshake timed out");
        return;
    }
    if (a->state == ST_CONNECTING && a->retry_sa && t >= a->retry_at) {
        retry_connect(a);
        return;
    }
    if (a->state >= ST_OPEN) {
        if (a->idle_to >= 0 && t >= a->last_io + a->idle_to) {
            close_with(a, -ETIMEDOUT, "idle timeout: nothing sent or received");
            return;
        }
        if (a->read_to >= 0 && a->msg_start > 0 && t >= a->msg_start + a->read_to) {
            close_with(a, -ETIMEDOUT, "read timeout: a message begun was not finished");
            return;
        }
    }
    arm(a);
}

int mpconn_async_set_timeouts(mpconn_async *a, double idle, double read)
{
    a->idle_to = idle >= 0 ? idle : -1;
    a->read_to = read >= 0 ? read : -1;
    a->last_io = now();
    if (a->state != ST_NEW)
        arm(a);
    return 0;
}

/* --------------------------------------------------------------- output */

static void want_io(mpconn_async *a);

static void queue_chunk(mpconn_async *a, chunk *c)
{
    c->next = NULL;
    if (a->tail)
        a->tail->next = c;
    else
        a->head = c;
    a->tail = c;
    a->queued += c->len + c->extlen - c->off;
    if (a->queued > a->high)
        a->above = 1;
}

/* Writes what the fd takes; returns 0 or a negative errno. */
static int write_some(mpconn_async *a, const struct iovec *iov, int n, size_t *done)
{
    ssize_t w;
    if (a->sock && n == 1) {
        do
            w = send(a->ev.fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (w < 0 && errno == EINTR);
    } else if (a->sock) {
        struct msghdr m = {0};
        m.msg_iov = (struct iovec *)iov;
        m.msg_iovlen = (size_t)n;
        do
            w = sendmsg(a->ev.fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (w < 0 && errno == EINTR);
    } else {
        /* A pipe has no MSG_NOSIGNAL: keep SIGPIPE pending for this thread
         * and take it back, so the process never dies of a reader gone. */
        sigset_t pipe_set, old;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
        do
            w = writev(a->ev.fd, iov, n);
        while (w < 0 && errno == EINTR);
        int e = errno;
        if (w < 0 && e == EPIPE) {
            struct timespec zero = {0, 0};
            sigtimedwait(&pipe_set, NULL, &zero);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        errno = e;
    }
    if (w < 0) {
        *done = 0;
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    }
    *done = (size_t)w;
    return 0;
}

static void after_drain(mpconn_async *a);

/* The count byte and its descriptor, as multiprocessing.reduction's
 * sendfds does. 1 when sent, 0 when the socket is full, or -errno. */
static int send_fd_chunk(mpconn_async *a, chunk *c)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {c->data, 1};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.buf;
    m.msg_controllen = sizeof ctl.buf;
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &c->fd, sizeof c->fd);
    ssize_t w;
    do
        w = sendmsg(a->ev.fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w < 0 && errno == EINTR);
    if (w == 1)
        return 1;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    return w < 0 ? -errno : -EIO;
}

/* Writes the queue until the fd is full; closes on a write error. */
static void flush(mpconn_async *a)
{
    while (a->head && a->state >= ST_OPEN && a->state != ST_CLOSED) {
        if (a->head->fd >= 0) {
            int r = send_fd_chunk(a, a->head);
            if (r < 0) {
                close_with(a, r, strerror(-r));
                return;
            }
            if (r == 0)
                break;
            chunk *c = a->head;
            a->head = c->next;
            if (!a->head)
                a->tail = NULL;
            a->queued -= 1;
            close(c->fd);
            free(c);
            continue;
        }
        struct iovec iov[IOV_BATCH];
        int n = 0;
        for (chunk *c = a->head; c && c->fd < 0 && n < IOV_BATCH - 1; c = c->next) {
            size_t off = c->off;
            if (off < c->len) {
                iov[n].iov_base = c->data + off;
                iov[n].iov_len = c->len - off;
                n++;
                off = c->len;
            }
            if (c->extlen && off - c->len < c->extlen) {
                iov[n].iov_base = c->ext + (off - c->len);
                iov[n].iov_len = c->extlen - (off - c->len);
                n++;
            }
        }
        size_t w;
        int r = write_some(a, iov, n, &w);
        if (r < 0) {
            close_with(a, r,
                       r == -EPIPE || r == -ECONNRESET ? "peer closed the connection"
                                                       : strerror(-r));
            return;
        }
        if (w == 0)
            break;
        a->queued -= w;
        if (a->idle_to >= 0)
            a->last_io = now();
        while (w > 0) {
            chunk *c = a->head;
            size_t left = c->len + c->extlen - c->off;
            if (w < left) {
                c->off += w;
                break;
            }
            w -= left;
            a->head = c->next;
            if (!a->head)
                a->tail = NULL;
            if (c->release)
                c->release(c->ext, c->arg);
            free(c);
        }
    }
    if (a->state == ST_CLOSED)
        return;
    after_drain(a);
}

static void after_drain(mpconn_async *a)
{
    if (a->above && a->queued <= a->low) {
        a->above = 0;
        if (a->cbs.on_drain)
            a->cbs.on_drain(a, a->data);
        if (a->state == ST_CLOSED)
            return;
    }
    /* A producer fills the queue back up to the low watermark, no more, so
     * that memory stays bounded whatever it has to give. */
    while (a->producer && a->state == ST_OPEN && a->queued <= a->low && a->cbs.produce) {
        uint64_t before = a->accepted;
        if (!a->cbs.produce(a, a->data)) {
            a->producer = 0;
            break;
        }
        if (a->accepted == before)
            break; /* nothing for now: mpconn_async_set_producer asks again */
    }
    if (a->state == ST_CLOSING && !a->head) {
        close_with(a, 0, NULL);
        return;
    }
    if (a->state != ST_CLOSED)
        want_io(a);
}

/* Queues (or writes at once) the header hl bytes at hdr, then p[0..n), then
 * ext[0..extlen) without copying it. */
static int enqueue(mpconn_async *a, const uint8_t *hdr, size_t hl, const uint8_t *p, size_t n,
                   uint8_t *ext, size_t extlen, void (*release)(void *, void *), void *arg)
{
    if (a->state == ST_CLOSING || a->state == ST_CLOSED) {
        if (release)
            release(ext, arg);
        return MPCONN_ERR_CLOSED;
    }
    size_t done = 0;
    a->accepted += hl + n + extlen;
    if (!a->head && a->state == ST_OPEN) {
        struct iovec iov[3];
        int k = 0;
        /* A small message goes out as one buffer: the copy costs less than
         * the kernel's walk over two iovecs. */
        uint8_t one[SMALL_SEND];
        if (hl && n && !extlen && hl + n <= sizeof one) {
            memcpy(one, hdr, hl);
            memcpy(one + hl, p, n);
            iov[k++] = (struct iovec){one, hl + n};
        } else {
            if (hl)
                iov[k++] = (struct iovec){(void *)hdr, hl};
            if (n)
                iov[k++] = (struct iovec){(void *)p, n};
        }
        if (extlen)
            iov[k++] = (struct iovec){ext, extlen};
        if (k == 0)
            return 0;
        int r = write_some(a, iov, k, &done);
        if (r < 0) {
            if (release)
                release(ext, arg);
            close_with(a, r,
                       r == -EPIPE || r == -ECONNRESET ? "peer closed the connection"
                                                       : strerror(-r));
            return r;
        }
        if (done && a->idle_to >= 0)
            a->last_io = now();
        if (done == hl + n + extlen) {
            if (release)
                release(ext, arg);
            return 0;
        }
    }
    /* Keep what is left: the inline part copied, ext by reference. */
    size_t inl = hl + n > done ? hl + n - done : 0;
    size_t skip_ext = done > hl + n ? done - hl - n : 0;
    chunk *c = malloc(sizeof *c + inl);
    if (!c) {
        if (release)
            release(ext, arg);
        return -ENOMEM;
    }
    size_t off = done;
    uint8_t *dst = c->data;
    if (off < hl) {
        memcpy(dst, hdr + off, hl - off);
        dst += hl - off;
        off = hl;
    }
    if (off < hl + n)
        memcpy(dst, p + (off - hl), hl + n - off);
    c->fd = -1;
    c->len = inl;
    c->off = 0;
    c->ext = ext;
    c->extlen = extlen;
    c->release = release;
    c->arg = arg;
    if (skip_ext)
        c->off = skip_ext; /* inl is 0 here: off counts into ext */
    queue_chunk(a, c);
    want_io(a);
    return 0;
}

int mpconn_async_send(mpconn_async *a, const void *buf, size_t len)
{
    uint8_t hdr[MPCI_HDR_MAX];
    size_t hl = a->framed ? mpci_frame_header(hdr, len) : 0;
    return enqueue(a, hdr, hl, buf, len, NULL, 0, NULL, NULL);
}

int mpconn_async_send_owned(mpconn_async *a, void *buf, size_t len,
                            void (*release)(void *buf, void *arg), void *arg)
{
    uint8_t hdr[MPCI_HDR_MAX];
    size_t hl = a->framed ? mpci_frame_header(hdr, len) : 0;
    return enqueue(a, hdr, hl, NULL, 0, buf, len, release, arg);
}

int mpconn_async_send_value(mpconn_async *a, const mpconn_value *v)
{
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    int r = mpci_pickle_encode_into(v, a->protocol, &buf, &cap, MPCI_HDR_MAX, &len);
    if (r < 0) {
        free(buf);
        return r;
    }
    uint8_t hdr[MPCI_HDR_MAX];
    size_t hl = a->framed ? mpci_frame_header(hdr, len) : 0;
    r = enqueue(a, hdr, hl, buf + MPCI_HDR_MAX, len, NULL, 0, NULL, NULL);
    free(buf);
    return r;
}

int mpconn_async_send_fd(mpconn_async *a, int fd)
{
    if (!a->local)
        return MPCONN_ERR_NOTSUP;
    if (a->state == ST_CLOSING || a->state == ST_CLOSED)
        return MPCONN_ERR_CLOSED;
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0)
        return -errno;
    chunk *c = malloc(sizeof *c + 1);
    if (!c) {
        close(dup);
        return -ENOMEM;
    }
    memset(c, 0, sizeof *c);
    c->fd = dup;
    c->data[0] = 1; /* the count byte, as multiprocessing.reduction.sendfds */
    c->len = 1;
    a->accepted += 1;
    queue_chunk(a, c);
    if (a->state == ST_OPEN)
        flush(a);
    return 0;
}

int mpconn_async_set_fd_passing(mpconn_async *a, int enable)
{
    if (!a->local)
        return MPCONN_ERR_NOTSUP;
    a->fdpass = enable != 0;
    if (!a->fdpass && a->nrfd)
        drop_rfds(a);
    return 0;
}

int mpconn_async_expect_fd(mpconn_async *a)
{
    if (!a->fdpass)
        return a->local ? -EINVAL : MPCONN_ERR_NOTSUP;
    if (a->state == ST_CLOSED)
        return MPCONN_ERR_CLOSED;
    a->want_fd = 1;
    if (a->ev.st && a->state == ST_OPEN && a->nheld > a->heldoff)
        want_io(a);
    return 0;
}

size_t mpconn_async_dropped_fds(const mpconn_async *a)
{
    return a->dropped_fds;
}

int mpconn_async_decode(mpconn_async *a, mpconn_value **out, const void *msg, size_t len)
{
    char err[MPCI_ERRMSG_MAX];
    int r = mpci_pickle_decode(msg, len, &a->lim, out, err, sizeof err);
    if (r < 0)
        seterr(a, "%s", err);
    return r;
}

size_t mpconn_async_queued(const mpconn_async *a)
{
    return a->queued;
}

int mpconn_async_set_watermarks(mpconn_async *a, size_t high, size_t low)
{
    if (low > high)
        return -EINVAL;
    a->high = high;
    a->low = low;
    if (a->queued > high)
        a->above = 1;
    return 0;
}

int mpconn_async_above_high(const mpconn_async *a)
{
    return a->above;
}

void mpconn_async_set_producer(mpconn_async *a, int enable)
{
    a->producer = enable != 0;
    if (a->producer && a->state == ST_OPEN && a->ev.st)
        after_drain(a);
}

/* ---------------------------------------------------------------- input */

static void want_io(mpconn_async *a)
{
    int ev = 0;
    if (a->state == ST_CONNECTING)
        ev = a->retry_sa ? 0 : MPCONN_WRITABLE; /* the timer tries again */
    else if (a->state == ST_HANDSHAKE)
        ev = (mpci_hs_events(a->hs) & POLLOUT) ? MPCONN_WRITABLE : MPCONN_READABLE;
    else if (a->state == ST_OPEN || a->state == ST_CLOSING) {
        if (a->state == ST_OPEN && !a->paused)
            ev |= MPCONN_READABLE;
        if (a->head)
            ev |= MPCONN_WRITABLE;
    }
    mpci_ev_set_io(&a->ev, ev);
    mpci_ev_set_pending(&a->ev, a->state == ST_OPEN && !a->paused && a->nheld > a->heldoff);
}

/* Cuts messages out of p[0..n) and hands them out; returns how many bytes
 * it took (fewer when reading was paused or the connection closed). */
/* The count byte of a passed descriptor: it must be the byte the
 * descriptors came with. */
static void take_fd(mpconn_async *a, uint8_t count)
{
    a->want_fd = 0;
    if (a->nrfd == 0 || a->rfd_at != a->inpos) {
        close_with(a, MPCONN_ERR_PROTO, "expected a passed descriptor, got a byte without one");
        return;
    }
    if (count != 1 || a->nrfd != 1) {
        drop_rfds(a);
        close_with(a, MPCONN_ERR_PROTO, "expected one passed descriptor");
        return;
    }
    int fd = a->rfd[0];
    a->nrfd = 0;
    if (a->cbs.on_fd)
        a->cbs.on_fd(a, fd, a->data);
    else
        close(fd);
}

static size_t take_input(mpconn_async *a, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (a->state == ST_OPEN && !a->paused) {
        if (a->want_fd) {
            if (off == n)
                break;
            take_fd(a, p[off]);
            off++;
            a->inpos++;
            continue;
        }
        const uint8_t *msg;
        size_t len, used;
        int r = mpci_split_feed(&a->split, p + off, n - off, &used, &msg, &len);
        off += used;
        a->inpos += used;
        if (a->nrfd && a->rfd_at < a->inpos)
            drop_rfds(a); /* their byte was taken as data: nobody asked */
        if (r < 0) {
            char why[160];
            if (r == MPCONN_ERR_MSGSIZE && a->split.mode == MPCI_SPLIT_FRAME)
                snprintf(why, sizeof why,
                         "bad message length: %llu bytes announced, over the limit of %llu",
                         (unsigned long long)a->split.want, (unsigned long long)a->split.max);
            else if (r == MPCONN_ERR_MSGSIZE)
                snprintf(why, sizeof why, "message too large: longer than the limit of %llu bytes",
                         (unsigned long long)a->split.max);
            else
                snprintf(why, sizeof why, "%s",
                         r == MPCONN_ERR_PROTO ? "bad frame header" : strerror(-r));
            close_with(a, r, why);
            break;
        }
        if (r == 0)
            break;
        if (a->cbs.on_message)
            a->cbs.on_message(a, msg, len, a->data);
    }
    if (a->read_to >= 0 && a->state == ST_OPEN) {
        size_t part = mpci_split_partial(&a->split);
        if (part && a->msg_start == 0) {
            a->msg_start = now();
            if (!a->timer_armed || a->msg_start + a->read_to < a->armed_for)
                arm(a);
        } else if (!part)
            a->msg_start = 0;
    }
    return off;
}

/* Input read while reading was paused (or behind a pause inside one read)
 * waits here; the loop is told it is there, so no kernel event is needed. */
static void hold(mpconn_async *a, const uint8_t *p, size_t n)
{
    if (n == 0)
        return;
    size_t keep = a->nheld - a->heldoff;
    uint8_t *b = malloc(keep + n);
    if (!b) {
        close_with(a, -ENOMEM, "out of memory holding input");
        return;
    }
    if (keep)
        memcpy(b, a->held + a->heldoff, keep);
    memcpy(b + keep, p, n);
    free(a->held);
    a->held = b;
    a->nheld = keep + n;
    a->heldoff = 0;
}

/* A read; on a Unix socket with recvmsg, so that passed descriptors are
 * received (and closed unless asked for), never left to the kernel. */
static ssize_t read_from(mpconn_async *a, uint8_t *dst, size_t room)
{
    ssize_t n;
    if (!a->fdpass) {
        do
            n = read(a->ev.fd, dst, room);
        while (n < 0 && errno == EINTR);
        return n;
    }
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
    } ctl;
    struct iovec iov = {dst, room};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.buf;
    m.msg_controllen = sizeof ctl.buf;
    do
        n = recvmsg(a->ev.fd, &m, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return n;
    if (m.msg_flags & MSG_CTRUNC)
        a->dropped_fds++; /* the kernel closed some: more than MAX_FDS at once */
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        if (a->nrfd)
            drop_rfds(a); /* an earlier group was never asked for */
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
            if (a->nrfd < MAX_FDS)
                a->rfd[a->nrfd++] = fd;
            else {
                close(fd);
                a->dropped_fds++;
            }
        }
        /* The read ends with the byte they were sent with; every byte before
         * this read has been taken (held input is taken before reading). */
        a->rfd_at = a->inpos + (uint64_t)n - 1;
    }
    return n;
}

static void read_input(mpconn_async *a)
{
    if (a->nheld > a->heldoff) {
        /* Held bytes first; they may hold a pause or a close of their own. */
        uint8_t *held = a->held;
        size_t n = a->nheld - a->heldoff;
        a->held = NULL;
        a->nheld = a->heldoff = 0;
        size_t took = take_input(a, held, n);
        if (a->state == ST_OPEN && took < n)
            hold(a, held + took, n - took);
        free(held);
        if (a->state != ST_OPEN || a->paused || a->nheld)
            return;
    }
    uint8_t buf[READ_CHUNK];
    for (int round = 0; round < READS_PER_EVENT && a->state == ST_OPEN && !a->paused; round++) {
        size_t room = sizeof buf;
        uint8_t *dst = mpci_split_direct(&a->split, &room);
        if (!dst) {
            dst = buf;
            room = sizeof buf;
        }
        ssize_t n = read_from(a, dst, room);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            int e = errno;
            close_with(a, -e, e == ECONNRESET ? "connection reset by peer" : strerror(e));
            return;
        }
        if (n == 0) {
            int inside = mpci_split_partial(&a->split) > 0;
            close_with(a, inside ? MPCONN_ERR_EOFMSG : MPCONN_ERR_EOF,
                       inside ? "got end of file during message" : "peer closed the connection");
            return;
        }
        if (a->idle_to >= 0)
            a->last_io = now();
        size_t took = take_input(a, dst, (size_t)n);
        if (a->state == ST_OPEN && took < (size_t)n)
            hold(a, dst + took, (size_t)n - took);
        if ((size_t)n < room)
            return; /* the socket is drained */
    }
}

void mpconn_async_pause_reading(mpconn_async *a)
{
    if (a->state > ST_OPEN)
        return;
    a->paused = 1;
    if (a->ev.st && a->state == ST_OPEN)
        want_io(a);
}

void mpconn_async_resume_reading(mpconn_async *a)
{
    if (!a->paused)
        return;
    a->paused = 0;
    if (a->ev.st && a->state == ST_OPEN)
        want_io(a); /* held input is announced as pending, not run from here */
}

int mpconn_async_set_framing(mpconn_async *a, int mode, const void *arg, size_t n)
{
    static const int map[] = {MPCI_SPLIT_FRAME, MPCI_SPLIT_DELIM, MPCI_SPLIT_COUNT, MPCI_SPLIT_RAW};
    if (mode < 0 || mode > MPCONN_FRAME_RAW)
        return -EINVAL;
    int r = mpci_split_set(&a->split, map[mode], arg, n);
    if (r == 0)
        a->framed = mode == MPCONN_FRAME_MP;
    return r;
}

void mpconn_async_set_max_message(mpconn_async *a, uint64_t bytes)
{
    a->split.max = bytes;
}

/* ------------------------------------------------------ handshake, open */

static void opened(mpconn_async *a)
{
    a->state = ST_OPEN;
    a->deadline = 0;
    a->last_io = now();
    const uint8_t *left = NULL;
    size_t nleft = 0;
    if (a->hs && a->hs->nleft) {
        left = a->hs->left;
        nleft = a->hs->nleft;
    }
    if (nleft)
        hold(a, left, nleft); /* the first message's bytes, read with the handshake's */
    hs_release(a);
    if (a->hs_done) {
        mpci_async_hs_done done = a->hs_done;
        a->hs_done = NULL;
        done(a, 0, NULL, a->owner);
    } else if (a->cbs.on_open) {
        a->cbs.on_open(a, a->data);
    }
    if (a->state == ST_CLOSED)
        return;
    arm(a);
    flush(a); /* anything sent while the handshake ran */
}

static void handshake(mpconn_async *a, int readable)
{
    int st = mpci_hs_progress(a->hs, a->ev.fd, readable, 0);
    if (st == MPCI_AUTH_DONE) {
        opened(a);
        return;
    }
    if (st == MPCI_AUTH_FAILED) {
        close_with(a, a->hs->code, a->hs->errmsg);
        return;
    }
    want_io(a);
}

static void connected(mpconn_async *a)
{
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(a->ev.fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
        err = errno;
    if (err) {
        close_with(a, -err, strerror(err));
        return;
    }
    a->deadline = 0;
    if (a->hs) {
        a->state = ST_HANDSHAKE;
        double d = mpci_deadline(a->own_opts->handshake_timeout);
        a->deadline = d > 0 ? d : 0;
        arm(a);
        handshake(a, 0);
        return;
    }
    opened(a);
}

static void retry_connect(mpconn_async *a)
{
    int r;
    do
        r = connect(a->ev.fd, (struct sockaddr *)a->retry_sa, a->retry_len);
    while (r < 0 && errno == EINTR);
    if (r == 0 || errno == EISCONN) {
        free(a->retry_sa);
        a->retry_sa = NULL;
        connected(a);
        return;
    }
    if (errno != EAGAIN) {
        int e = errno;
        close_with(a, -e, strerror(e));
        return;
    }
    a->retry_wait = a->retry_wait * 2 < 0.1 ? a->retry_wait * 2 : 0.1;
    a->retry_at = now() + a->retry_wait;
    arm(a);
}

static void on_io(mpconn_ev *ev, int events)
{
    mpconn_async *a = (mpconn_async *)ev;
    switch (a->state) {
    case ST_CONNECTING: connected(a); return;
    case ST_HANDSHAKE: handshake(a, (events & MPCONN_READABLE) != 0); return;
    case ST_OPEN:
    case ST_CLOSING:
        if ((events & MPCONN_READABLE) && a->state == ST_OPEN)
            read_input(a);
        if ((events & MPCONN_WRITABLE) && a->head && a->state != ST_CLOSED)
            flush(a);
        if (a->state == ST_OPEN || a->state == ST_CLOSING)
            want_io(a);
        return;
    default: return;
    }
}

void mpconn_async_close_when_done(mpconn_async *a)
{
    if (a->state == ST_CLOSED || a->state == ST_CLOSING)
        return;
    if (a->state < ST_OPEN || !a->head) {
        close_with(a, 0, NULL);
        return;
    }
    a->state = ST_CLOSING;
    mpci_ev_set_pending(&a->ev, 0);
    want_io(a);
}

/* ------------------------------------------------------------- creation */

static int is_socket(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* kind: MPCI_FD_UNIX or _INET when the caller knows the socket's family
 * (the listener does, from accept), else MPCI_FD_UNKNOWN: asked here. */
static mpconn_async *alloc_async(int fd, int sock, int kind, const struct mpconn_opts *o)
{
    mpconn_async *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->ev.fd = fd;
    a->ev.on_io = on_io;
    a->ev.on_timeout = on_timeout;
    a->ev.destroy = destroy;
    a->sock = (uint8_t)sock;
    a->framed = 1;
    a->high = 65536;
    a->low = 16384;
    a->idle_to = a->read_to = -1;
    a->protocol = o->pickle_protocol;
    a->lim = o->limits;
    a->started = mpci_now();
    if (sock && kind != MPCI_FD_UNKNOWN) {
        a->local = kind == MPCI_FD_UNIX;
    } else if (sock) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        a->local = getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_UNIX;
    }
    mpci_split_init(&a->split, o->max_message);
    return a;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
        return -errno;
    return 0;
}

static int start_hs(mpconn_async *a, int role, const struct mpconn_opts *o, int copy)
{
    if (copy) {
        a->own_opts = malloc(sizeof *a->own_opts);
        if (!a->own_opts)
            return -ENOMEM;
        mpci_opts_defaults(a->own_opts);
        int r = mpci_opts_copy(a->own_opts, o);
        if (r < 0) {
            free(a->own_opts);
            a->own_opts = NULL;
            return r;
        }
        o = a->own_opts;
    }
    a->hs = malloc(sizeof *a->hs);
    if (!a->hs)
        return -ENOMEM;
    int r = mpci_hs_init(a->hs, role, o);
    if (r < 0) {
        free(a->hs);
        a->hs = NULL;
        return r;
    }
    double d = mpci_deadline(o->handshake_timeout);
    a->deadline = d > 0 ? d : 0;
    return 0;
}

int mpconn_async_from_fd(mpconn_async **out, int fd, int role, const mpconn_opts *opts,
                         const mpconn_async_cbs *cbs, void *data)
{
    *out = NULL;
    struct mpconn_opts defaults;
    if (!opts) {
        mpci_opts_defaults(&defaults);
        opts = &defaults;
    }
    if (role != MPCONN_ASYNC_PLAIN && role != MPCONN_ASYNC_CLIENT && role != MPCONN_ASYNC_SERVER)
        return -EINVAL;
    int r = set_nonblock(fd);
    if (r < 0)
        return r;
    mpconn_async *a = alloc_async(fd, is_socket(fd), MPCI_FD_UNKNOWN, opts);
    if (!a)
        return -ENOMEM;
    if (role != MPCONN_ASYNC_PLAIN && opts->authkey) {
        r = start_hs(a, role == MPCONN_ASYNC_CLIENT ? MPCI_AUTH_CLIENT : MPCI_AUTH_SERVER, opts, 1);
        if (r < 0) {
            hs_release(a);
            mpci_split_free(&a->split);
            free(a);
            return r;
        }
    }
    mpconn_async_set_callbacks(a, cbs, data);
    *out = a;
    return 0;
}

void mpconn_async_set_callbacks(mpconn_async *a, const mpconn_async_cbs *cbs, void *data)
{
    memset(&a->cbs, 0, sizeof a->cbs);
    if (cbs) {
        size_t n = cbs->size && cbs->size < sizeof a->cbs ? cbs->size : sizeof a->cbs;
        memcpy(&a->cbs, cbs, n);
    }
    a->data = data;
}

/* Starts what the state calls for once a loop watches the fd. */
static void start(mpconn_async *a)
{
    if (a->state == ST_CONNECTING) {
        arm(a);
        want_io(a);
    } else if (a->hs) {
        a->state = ST_HANDSHAKE;
        arm(a);
        /* Watched before the challenge leaves: the peer, woken by it, may
         * take the CPU, and the answer should find the fd registered. */
        if (a->hs->auth.role == MPCI_AUTH_SERVER)
            mpci_ev_set_io(&a->ev, MPCONN_READABLE);
        handshake(a, 0); /* a server's challenge leaves now */
    } else {
        a->state = ST_OPEN;
        opened(a);
    }
}

int mpconn_async_attach(mpconn_async *a, const mpconn_adapter *ad, void *loop)
{
    if (a->ev.st || a->state == ST_CLOSED)
        return -EBUSY;
    int r = mpci_ev_attach(&a->ev, ad, loop);
    if (r < 0)
        return r;
    a->ev.pins++; /* a callback inside start may close a */
    start(a);
    a->ev.pins--;
    if (a->ev.doomed && a->ev.pins == 0)
        destroy(&a->ev);
    return 0;
}

int mpci_async_accepted(mpconn_async **out, int fd, int kind, const struct mpconn_opts *opts,
                        mpci_async_hs_done done, void *owner)
{
    *out = NULL;
    mpconn_async *a = alloc_async(fd, 1, kind, opts);
    if (!a)
        return -ENOMEM;
    if (opts->authkey) {
        int r = start_hs(a, MPCI_AUTH_SERVER, opts, 0);
        if (r < 0) {
            hs_release(a);
            mpci_split_free(&a->split);
            free(a);
            return r;
        }
        /* The listener keeps every handshake's deadline with one timer of
         * its own: its handshakes are in arrival order, which is the order
         * of their deadlines. */
        a->deadline = 0;
    }
    a->hs_done = done;
    a->owner = owner;
    *out = a;
    return 0;
}

void mpci_async_drop(mpconn_async *a, int reason, const char *why)
{
    a->hs_done = NULL;
    close_with(a, reason, why);
}

double mpci_async_started(const mpconn_async *a)
{
    return a->started;
}

/* Used by the client: a socket whose connect() is under way. */
int mpci_async_connecting(mpconn_async **out, int fd, const struct mpconn_opts *opts,
                          double connect_deadline, const struct sockaddr *retry_sa,
                          socklen_t retry_len, const mpconn_async_cbs *cbs, void *data);
int mpci_async_connecting(mpconn_async **out, int fd, const struct mpconn_opts *opts,
                          double connect_deadline, const struct sockaddr *retry_sa,
                          socklen_t retry_len, const mpconn_async_cbs *cbs, void *data)
{
    *out = NULL;
    mpconn_async *a = alloc_async(fd, 1, MPCI_FD_UNKNOWN, opts);
    if (!a)
        return -ENOMEM;
    if (opts->authkey) {
        int r = start_hs(a, MPCI_AUTH_CLIENT, opts, 1);
        if (r < 0) {
            hs_release(a);
            mpci_split_free(&a->split);
            free(a);
            return r;
        }
        /* the handshake's clock starts when the connect is done */
    }
    if (retry_sa) {
        a->retry_sa = malloc(sizeof *a->retry_sa);
        if (!a->retry_sa) {
            hs_release(a);
            mpci_split_free(&a->split);
            free(a);
            return -ENOMEM;
        }
        memcpy(a->retry_sa, retry_sa, retry_len);
        a->retry_len = retry_len;
        a->retry_wait = 0.001;
        a->retry_at = now() + a->retry_wait;
    }
    a->state = ST_CONNECTING;
    a->deadline = connect_deadline > 0 ? connect_deadline : 0;
    mpconn_async_set_callbacks(a, cbs, data);
    *out = a;
    return 0;
}
