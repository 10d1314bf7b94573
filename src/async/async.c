/* The async connection: asynchat done over the sans-I/O pieces. Input goes
 * through the message splitter, the handshake through mpci_hs, output
 * through a queue flushed with one writev; writes go out at once when
 * nothing is queued before them. All I/O goes through a transport
 * (net/transport.h): the plain fd, or another that may hold bytes back
 * (delivered through the adapter's pending pass) or need the other
 * direction to go on (asked of the adapter as interest). */
#include "async_internal.h"
#include "tls/tls_transport.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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
#define HIGH_DEFAULT 65536
#define LOW_DEFAULT 16384

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

/* Input read but not yet taken (reading paused meanwhile). */
typedef struct held {
    size_t n, off;
    uint8_t data[];
} held;

/* A Unix connect refused for a full backlog (EAGAIN), tried again on the
 * timer, as a blocking connect waits for room. */
typedef struct retry {
    socklen_t len;
    double at, wait;
    struct sockaddr_storage sa;
} retry;

/* What only connecting and the handshake need: made with the connection,
 * freed when it opens, so an open one carries none of it. Every accepted
 * peer in its handshake has one, so what few need is apart (retry). */
typedef struct setup {
    mpci_hs *hs;
    struct mpconn_opts *own_opts; /* a client's copy for its handshake */
    double deadline;              /* of the connect or the handshake; 0: none */
    double started;
    mpci_async_hs_done hs_done; /* set while an accepting listener waits */
    void *owner;
    double hs_timeout; /* the handshake's, counted from the end of the connect */
    retry *retry;      /* NULL unless a connect waits for room */
    int tls_phase;     /* the TLS handshake comes first (then hs, if any) */
} setup;

/* A setup with a handshake has it in the same block, right behind. */
typedef struct setup_hs {
    setup su;
    mpci_hs hs;
} setup_hs;

/* What few connections use, made at its first use: timeouts, watermarks
 * and decoding limits other than the defaults, passed descriptors, the
 * peer's name, an error message. An idle connection of the defaults has
 * none. */
typedef struct extra {
    double idle_to, read_to; /* < 0: off */
    double last_io, msg_start;
    double armed_for; /* the deadline the timer is armed for */
    size_t high, low;
    int has_lim;
    mpci_pickle_limits lim;
    /* Passed descriptors: the one that came with the byte at stream offset
     * rfd_at (the kernel ends a read with the byte that carries them). */
    int rfd;        /* or -1 */
    uint64_t inpos; /* stream offset of the next byte to take */
    uint64_t rfd_at;
    size_t dropped_fds;
    char *peer; /* mpconn_async_peer's answer */
    char *errmsg;
    mpci_tls_transport *tls; /* a TLS connection's transport (tp points into it) */
} extra;

/* Laid out small: idle memory per connection is one of the loop's rows in
 * make bench. */
struct mpconn_async {
    mpconn_ev ev;
    uint8_t state;
    uint8_t sock;        /* a socket, else a pipe */
    uint8_t paused;      /* reading paused by the user */
    uint8_t above;       /* the queue passed the high watermark */
    uint8_t producer;    /* ask cbs.produce for more */
    uint8_t framed;      /* sends get the multiprocessing header */
    uint8_t local;       /* a Unix socket: descriptors may come and go */
    uint8_t fdpass;      /* reads take descriptors (recvmsg); else the kernel drops them */
    uint8_t want_fd;     /* the next input byte is a descriptor's count byte */
    uint8_t timer_armed; /* a deadline is armed */
    uint8_t protocol;    /* pickle protocol of send_value */
    uint32_t sends;      /* sends ever taken: tells a producer's progress */
    mpconn_async_cbs cbs;
    void *data;
    mpci_split split;
    held *held;
    chunk *head, *tail;
    size_t queued;
    setup *su;
    extra *x;
    mpci_fd_transport fdt; /* the plain transport over ev.fd */
    mpci_transport *tp;    /* what reads and writes go through: &fdt.base or another */
};

static void on_io(mpconn_ev *ev, int events);
static void on_timeout(mpconn_ev *ev);

static void drop_rfd(mpconn_async *a);

static void su_release(mpconn_async *a)
{
    setup *su = a->su;
    if (!su)
        return;
    if (su->hs)
        mpci_hs_clear(su->hs); /* in su's block */
    if (su->own_opts) {
        mpci_opts_clear(su->own_opts);
        free(su->own_opts);
    }
    free(su->retry);
    free(su);
    a->su = NULL;
}

static void destroy(mpconn_ev *ev)
{
    mpconn_async *a = (mpconn_async *)ev;
    su_release(a);
    if (a->x) {
        if (a->x->rfd >= 0)
            close(a->x->rfd);
        free(a->x->peer);
        free(a->x->errmsg);
        mpci_tlst_free(a->x->tls);
        free(a->x);
    }
    mpci_split_free(&a->split);
    free(a->held);
    free(a);
}

/* The extras, made with their defaults at the first need; NULL when out
 * of memory. */
static extra *x_of(mpconn_async *a)
{
    if (a->x)
        return a->x;
    extra *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->idle_to = x->read_to = -1;
    x->high = HIGH_DEFAULT;
    x->low = LOW_DEFAULT;
    x->rfd = -1;
    a->x = x;
    return x;
}

static size_t high_of(const mpconn_async *a)
{
    return a->x ? a->x->high : HIGH_DEFAULT;
}

static size_t low_of(const mpconn_async *a)
{
    return a->x ? a->x->low : LOW_DEFAULT;
}

static int idle_timed(const mpconn_async *a)
{
    return a->x && a->x->idle_to >= 0;
}

static void seterr(mpconn_async *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(mpconn_async *a, const char *fmt, ...)
{
    char buf[MPCI_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    extra *x = x_of(a);
    char *m = x ? strdup(buf) : NULL;
    if (m) {
        free(x->errmsg);
        x->errmsg = m;
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
    extra *x = x_of(a);
    char *m = x ? strdup(text) : NULL;
    if (!m)
        return "";
    free(x->peer);
    x->peer = m;
    return m;
}

const char *mpconn_async_errmsg(const mpconn_async *a)
{
    return a->x && a->x->errmsg ? a->x->errmsg : "";
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

/* A descriptor that arrived and was not asked for: closed as soon as the
 * byte it came with is taken as data, and counted. */
static void drop_rfd(mpconn_async *a)
{
    if (a->x && a->x->rfd >= 0) {
        close(a->x->rfd);
        a->x->rfd = -1;
        a->x->dropped_fds++;
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
    mpci_async_hs_done done = a->su && !was_open ? a->su->hs_done : NULL;
    void *owner = a->su ? a->su->owner : NULL;
    su_release(a);
    /* Detach from the loop before the number is given back to the kernel. */
    int attached = a->ev.st != NULL;
    mpconn_ev *ev = &a->ev;
    if (ev->st) {
        ev->ad->cleanup(ev->st);
        ev->st = NULL;
    }
    a->tp->ops->close(a->tp);
    ev->pins++; /* keep a alive through the callback below */
    if (done)
        done(a, reason ? reason : MPCONN_ERR_CLOSED, mpconn_async_errmsg(a), owner);
    else if (attached && a->cbs.on_close)
        a->cbs.on_close(a, reason, mpconn_async_errmsg(a), a->data);
    ev->pins--;
    mpci_ev_doom(ev);
}

void mpconn_async_close(mpconn_async *a)
{
    if (!a)
        return;
    if (a->state == ST_NEW && !a->ev.st) {
        a->state = ST_CLOSED;
        a->tp->ops->close(a->tp);
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

/* Notes traffic for the idle timeout. */
static void touch(mpconn_async *a)
{
    if (idle_timed(a))
        a->x->last_io = now();
}

/* The earliest of the deadlines in force, 0 when none. */
static double next_deadline(const mpconn_async *a)
{
    double d = 0;
    const setup *su = a->su;
    if (su && su->deadline > 0)
        d = su->deadline;
    if (su && su->retry && (d == 0 || su->retry->at < d))
        d = su->retry->at;
    const extra *x = a->x;
    if (a->state >= ST_OPEN && x) {
        if (x->idle_to >= 0 && (d == 0 || x->last_io + x->idle_to < d))
            d = x->last_io + x->idle_to;
        if (x->read_to >= 0 && x->msg_start > 0 && (d == 0 || x->msg_start + x->read_to < d))
            d = x->msg_start + x->read_to;
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
    if (a->x)
        a->x->armed_for = d;
}

static void retry_connect(mpconn_async *a);

static void on_timeout(mpconn_ev *ev)
{
    mpconn_async *a = (mpconn_async *)ev;
    double t = now();
    setup *su = a->su;
    if (su && su->deadline > 0 && t >= su->deadline) {
        close_with(a, -ETIMEDOUT,
                   a->state == ST_CONNECTING ? "connect timed out" : "handshake timed out");
        return;
    }
    if (a->state == ST_CONNECTING && su && su->retry && t >= su->retry->at) {
        retry_connect(a);
        return;
    }
    const extra *x = a->x;
    if (a->state >= ST_OPEN && x) {
        if (x->idle_to >= 0 && t >= x->last_io + x->idle_to) {
            close_with(a, -ETIMEDOUT, "idle timeout: nothing sent or received");
            return;
        }
        if (x->read_to >= 0 && x->msg_start > 0 && t >= x->msg_start + x->read_to) {
            close_with(a, -ETIMEDOUT, "read timeout: a message begun was not finished");
            return;
        }
    }
    arm(a);
}

int mpconn_async_set_timeouts(mpconn_async *a, double idle, double read)
{
    if ((idle < 0 && read < 0 && !a->x))
        return 0; /* the default: nothing to keep */
    extra *x = x_of(a);
    if (!x)
        return -ENOMEM;
    x->idle_to = idle >= 0 ? idle : -1;
    x->read_to = read >= 0 ? read : -1;
    x->last_io = now();
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
    if (a->queued > high_of(a))
        a->above = 1;
}

/* Writes what the transport takes; returns 0 or a negative errno. */
static int write_some(mpconn_async *a, const struct iovec *iov, int n, size_t *done)
{
    ssize_t w;
    do
        w = a->tp->ops->writev(a->tp, iov, n);
    while (w == -EINTR);
    if (w < 0) {
        *done = 0;
        return w == -EAGAIN ? 0 : (int)w;
    }
    *done = (size_t)w;
    return 0;
}

static void after_drain(mpconn_async *a);

/* The count byte and its descriptor, as multiprocessing.reduction's
 * sendfds does. 1 when sent, 0 when the socket is full, or -errno. */
static int send_fd_chunk(mpconn_async *a, chunk *c)
{
    mpci_fd_transport *ft = mpci_fdt_of(a->tp);
    if (!ft)
        return MPCONN_ERR_NOTSUP;
    ssize_t w;
    do
        w = mpci_fdt_send_fd(ft, c->fd, c->data[0]);
    while (w == -EINTR);
    if (w == 1)
        return 1;
    if (w == -EAGAIN)
        return 0;
    return w < 0 ? (int)w : -EIO;
}

/* Why a step through the transport failed: a TLS session's own words for
 * its codes. */
static const char *tp_why(const mpconn_async *a, int code, const char *other)
{
    return a->x && a->x->tls && mpci_tls_code(code) ? mpci_tlst_errmsg(a->x->tls) : other;
}

static void write_failed(mpconn_async *a, int r)
{
    close_with(a, r,
               r == -EPIPE || r == -ECONNRESET ? "peer closed the connection"
                                               : tp_why(a, r, mpconn_strerror(r)));
}

/* Writes the queue until the transport is full; closes on a write error. */
static void flush(mpconn_async *a)
{
    while (a->head && a->state >= ST_OPEN && a->state != ST_CLOSED) {
        if (a->head->fd >= 0) {
            int r = send_fd_chunk(a, a->head);
            if (r < 0) {
                write_failed(a, r);
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
            write_failed(a, r);
            return;
        }
        if (w == 0)
            break;
        a->queued -= w;
        touch(a);
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
    if (a->above && a->queued <= low_of(a)) {
        a->above = 0;
        if (a->cbs.on_drain)
            a->cbs.on_drain(a, a->data);
        if (a->state == ST_CLOSED)
            return;
    }
    /* A producer fills the queue back up to the low watermark, no more, so
     * that memory stays bounded whatever it has to give. */
    while (a->producer && a->state == ST_OPEN && a->queued <= low_of(a) && a->cbs.produce) {
        uint32_t before = a->sends;
        if (!a->cbs.produce(a, a->data)) {
            a->producer = 0;
            break;
        }
        if (a->sends == before)
            break; /* nothing for now: mpconn_async_set_producer asks again */
    }
    if (a->state == ST_CLOSING && !a->head) {
        close_with(a, 0, NULL);
        return;
    }
    if (a->state != ST_CLOSED)
        want_io(a);
}

/* Keeps what a write left of a message (done bytes went out): the inline
 * part copied, ext by reference. Not inlined into enqueue, whose common
 * case queues nothing. */
__attribute__((noinline)) static int keep_rest(mpconn_async *a, const uint8_t *hdr, size_t hl,
                                               const uint8_t *p, size_t n, uint8_t *ext,
                                               size_t extlen, void (*release)(void *, void *),
                                               void *arg, size_t done)
{
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

/* Queues (or writes at once) the hl bytes at hdr (a header, or a whole
 * frame), then p[0..n), then ext[0..extlen) without copying it. Inline:
 * each kind of send gets its own copy, the unused parts folded away. */
static inline int enqueue(mpconn_async *a, const uint8_t *hdr, size_t hl, const uint8_t *p,
                          size_t n, uint8_t *ext, size_t extlen, void (*release)(void *, void *),
                          void *arg)
{
    if (a->state == ST_CLOSING || a->state == ST_CLOSED) {
        if (release)
            release(ext, arg);
        return MPCONN_ERR_CLOSED;
    }
    size_t done = 0;
    a->sends++;
    if (hl + n + extlen == 0) {
        /* An empty message without a frame: nothing to write, so nothing
         * queued (flush would find no byte to retire it with). */
        if (release)
            release(ext, arg);
        return 0;
    }
    if (!a->head && a->state == ST_OPEN) {
        struct iovec iov[3];
        int k = 0;
        if (hl)
            iov[k++] = (struct iovec){(void *)hdr, hl};
        if (n)
            iov[k++] = (struct iovec){(void *)p, n};
        if (extlen)
            iov[k++] = (struct iovec){ext, extlen};
        int r = write_some(a, iov, k, &done);
        if (r < 0) {
            if (release)
                release(ext, arg);
            write_failed(a, r);
            return r;
        }
        if (done)
            touch(a);
        if (done == hl + n + extlen) {
            if (release)
                release(ext, arg);
            return 0;
        }
    }
    return keep_rest(a, hdr, hl, p, n, ext, extlen, release, arg, done);
}

int mpconn_async_send(mpconn_async *a, const void *buf, size_t len)
{
    if (a->framed && !a->head && len <= SMALL_SEND - MPCI_HDR_MAX) {
        /* A small message goes out as one buffer, built here: the copy
         * costs less than the kernel's walk over two iovecs. */
        uint8_t one[SMALL_SEND];
        size_t hl = mpci_frame_header(one, len);
        memcpy(one + hl, buf, len);
        return enqueue(a, one, hl + len, NULL, 0, NULL, 0, NULL, NULL);
    }
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
    /* The header goes in the room left before the pickle: one buffer. */
    uint8_t hdr[MPCI_HDR_MAX];
    size_t hl = a->framed ? mpci_frame_header(hdr, len) : 0;
    memcpy(buf + MPCI_HDR_MAX - hl, hdr, hl);
    r = enqueue(a, buf + MPCI_HDR_MAX - hl, hl + len, NULL, 0, NULL, 0, NULL, NULL);
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
    a->sends++;
    queue_chunk(a, c);
    if (a->state == ST_OPEN)
        flush(a);
    return 0;
}

int mpconn_async_set_fd_passing(mpconn_async *a, int enable)
{
    if (!a->local || a->tp != &a->fdt.base)
        return MPCONN_ERR_NOTSUP;
    if (enable && !x_of(a))
        return -ENOMEM;
    a->fdpass = enable != 0;
    /* Reads see descriptors (recvmsg) only while they are taken: otherwise
     * the kernel discards them before they reach the process. */
    a->fdt.is_unix = a->fdt.keep_fd = a->fdpass;
    if (!a->fdpass)
        drop_rfd(a);
    return 0;
}

int mpconn_async_expect_fd(mpconn_async *a)
{
    if (!a->fdpass)
        return a->local ? -EINVAL : MPCONN_ERR_NOTSUP;
    if (a->state == ST_CLOSED)
        return MPCONN_ERR_CLOSED;
    a->want_fd = 1;
    if (a->ev.st && a->state == ST_OPEN && a->held)
        want_io(a);
    return 0;
}

void *mpconn_async_take_message(mpconn_async *a, const void *msg, size_t len)
{
    void *b = mpci_split_take(&a->split, msg);
    if (b)
        return b;
    if ((b = malloc(len ? len : 1)) && len)
        memcpy(b, msg, len);
    return b;
}

size_t mpconn_async_dropped_fds(const mpconn_async *a)
{
    return a->x ? a->x->dropped_fds : 0;
}

int mpconn_async_decode(mpconn_async *a, mpconn_value **out, const void *msg, size_t len)
{
    char err[MPCI_ERRMSG_MAX];
    int r = mpci_pickle_decode(msg, len, a->x && a->x->has_lim ? &a->x->lim : NULL, out, err,
                               sizeof err);
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
    if (high == HIGH_DEFAULT && low == LOW_DEFAULT && !a->x) {
        /* the default: nothing to keep */
    } else {
        extra *x = x_of(a);
        if (!x)
            return -ENOMEM;
        x->high = high;
        x->low = low;
    }
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

/* The adapter's interest for what the connection wants of its transport
 * (POLLIN, POLLOUT): a transport may need the other direction to go on. */
static int poll_mask(short ev)
{
    return ((ev & POLLIN) ? MPCONN_READABLE : 0) | ((ev & POLLOUT) ? MPCONN_WRITABLE : 0);
}

static int tp_interest(const mpconn_async *a, short want)
{
    short ev = 0;
    if (want & POLLIN)
        ev |= a->tp->ops->events(a->tp, POLLIN);
    if (want & POLLOUT)
        ev |= a->tp->ops->events(a->tp, POLLOUT);
    return poll_mask(ev);
}

/* Inline: the plain fd wants what is asked, and this runs on every event. */
static inline int interest(const mpconn_async *a, short want)
{
    return a->tp == &a->fdt.base ? poll_mask(want) : tp_interest(a, want);
}

/* The plain fd holds nothing back. */
static int held_by_transport(const mpconn_async *a)
{
    return a->tp != &a->fdt.base && a->tp->ops->pending(a->tp) > 0;
}

/* want_io of an open or closing connection; inline, as it runs after
 * every event. */
static inline void want_io_open(mpconn_async *a)
{
    int reading = a->state == ST_OPEN && !a->paused;
    mpci_ev_set_io(&a->ev, interest(a, (short)((reading ? POLLIN : 0) | (a->head ? POLLOUT : 0))));
    /* Bytes already in user space (held here, or inside the transport)
     * come through the loop's pending pass: no kernel event announces
     * them. */
    mpci_ev_set_pending(&a->ev, reading && (a->held || held_by_transport(a)));
}

static void want_io(mpconn_async *a)
{
    int ev = 0, pending = 0;
    if (a->state == ST_OPEN || a->state == ST_CLOSING) {
        want_io_open(a);
        return;
    }
    if (a->state == ST_CONNECTING) {
        ev = a->su->retry ? 0 : MPCONN_WRITABLE; /* the timer tries again */
    } else if (a->state == ST_HANDSHAKE) {
        short w = a->su->tls_phase ? POLLIN : mpci_hs_events(a->su->hs);
        ev = interest(a, w);
        pending = !a->su->tls_phase && (w & POLLIN) && held_by_transport(a);
    }
    mpci_ev_set_io(&a->ev, ev);
    mpci_ev_set_pending(&a->ev, pending);
}

/* The count byte of a passed descriptor: it must be the byte the
 * descriptor came with. */
static void take_fd(mpconn_async *a, uint8_t count)
{
    a->want_fd = 0;
    extra *x = a->x;
    if (!x || x->rfd < 0 || x->rfd_at != x->inpos) {
        close_with(a, MPCONN_ERR_PROTO, "expected a passed descriptor, got a byte without one");
        return;
    }
    if (count != 1) {
        drop_rfd(a);
        close_with(a, MPCONN_ERR_PROTO, "expected one passed descriptor");
        return;
    }
    int fd = x->rfd;
    x->rfd = -1;
    if (a->cbs.on_fd)
        a->cbs.on_fd(a, fd, a->data);
    else
        close(fd);
}

/* Closes on what the splitter refused. Not inlined: its message buffer
 * would enlarge the frame of the input path. */
__attribute__((noinline)) static void split_failed(mpconn_async *a, int r)
{
    char why[160];
    const mpci_msgdec *d = &a->split.dec;
    if (r == MPCONN_ERR_MSGSIZE && a->split.mode == MPCI_SPLIT_FRAME)
        snprintf(why, sizeof why,
                 "bad message length: %llu bytes announced, over the limit of %llu",
                 (unsigned long long)d->len, (unsigned long long)d->max);
    else if (r == MPCONN_ERR_MSGSIZE)
        snprintf(why, sizeof why, "message too large: longer than the limit of %llu bytes",
                 (unsigned long long)d->max);
    else
        snprintf(why, sizeof why, "%s", r == MPCONN_ERR_PROTO ? "bad frame header" : strerror(-r));
    close_with(a, r, why);
}

/* Cuts messages out of p[0..n) and hands them out; returns how many bytes
 * it took (fewer when reading was paused or the connection closed). */
static size_t take_input(mpconn_async *a, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (a->state == ST_OPEN && !a->paused) {
        if (a->want_fd) {
            if (off == n)
                break;
            take_fd(a, p[off]);
            off++;
            if (a->x)
                a->x->inpos++;
            continue;
        }
        /* Nothing left yields no message; the feed would only drop the
         * buffer of one handed out, which must not outlive its call. */
        if (off == n && !a->split.delivered)
            break;
        const uint8_t *msg;
        size_t len, used;
        int r = mpci_split_feed(&a->split, p + off, n - off, &used, &msg, &len);
        off += used;
        if (a->fdpass) {
            extra *x = a->x;
            x->inpos += used;
            if (x->rfd >= 0 && x->rfd_at < x->inpos)
                drop_rfd(a); /* its byte was taken as data: nobody asked */
        }
        if (r < 0) {
            split_failed(a, r);
            break;
        }
        if (r == 0)
            break;
        if (a->cbs.on_message)
            a->cbs.on_message(a, msg, len, a->data);
    }
    extra *x = a->x;
    if (x && x->read_to >= 0 && a->state == ST_OPEN) {
        size_t part = mpci_split_partial(&a->split);
        if (part && x->msg_start == 0) {
            x->msg_start = now();
            if (!a->timer_armed || x->msg_start + x->read_to < x->armed_for)
                arm(a);
        } else if (!part)
            x->msg_start = 0;
    }
    return off;
}

/* Input read while reading was paused (or behind a pause inside one read)
 * waits here; the loop is told it is there, so no kernel event is needed. */
static void hold(mpconn_async *a, const uint8_t *p, size_t n)
{
    if (n == 0)
        return;
    size_t keep = a->held ? a->held->n : 0;
    held *h = malloc(sizeof *h + keep + n);
    if (!h) {
        close_with(a, -ENOMEM, "out of memory holding input");
        return;
    }
    if (keep)
        memcpy(h->data, a->held->data, keep);
    memcpy(h->data + keep, p, n);
    h->n = keep + n;
    free(a->held);
    a->held = h;
}

/* What the plain transport's last read brought besides bytes: the kernel
 * ends a read with the byte a descriptor came with. */
static void note_fd(mpconn_async *a, size_t n)
{
    const mpci_fdin *in = &a->fdt.in;
    extra *x = a->x;
    x->dropped_fds += in->dropped + (in->truncated ? 1 : 0);
    if (in->fd < 0)
        return;
    drop_rfd(a); /* an earlier one was never asked for */
    x->rfd = in->fd;
    /* Every byte before this read has been taken (held input is taken
     * before reading). */
    x->rfd_at = x->inpos + (uint64_t)n - 1;
}

static void read_input(mpconn_async *a)
{
    if (a->held) {
        /* Held bytes first; they may hold a pause or a close of their own. */
        held *h = a->held;
        a->held = NULL;
        size_t took = take_input(a, h->data, h->n);
        if (a->state == ST_OPEN && took < h->n)
            hold(a, h->data + took, h->n - took);
        free(h);
        if (a->state != ST_OPEN || a->paused || a->held)
            return;
    }
    uint8_t buf[READ_CHUNK];
    for (int round = 0; round < READS_PER_EVENT && a->state == ST_OPEN && !a->paused; round++) {
        size_t room = sizeof buf;
        /* Only a payload under way can be read in place: no call otherwise. */
        uint8_t *dst = a->split.dec.in_body ? mpci_split_direct(&a->split, &room) : NULL;
        if (!dst) {
            dst = buf;
            room = sizeof buf;
        }
        ssize_t n;
        do
            n = a->tp->ops->read(a->tp, dst, room);
        while (n == -EINTR);
        if (n < 0) {
            if (n == -EAGAIN)
                return;
            close_with(a, (int)n,
                       n == -ECONNRESET ? "connection reset by peer"
                                        : tp_why(a, (int)n, mpconn_strerror((int)n)));
            return;
        }
        if (n == 0) {
            int inside = mpci_split_partial(&a->split) > 0;
            close_with(a, inside ? MPCONN_ERR_EOFMSG : MPCONN_ERR_EOF,
                       inside ? "got end of file during message" : "peer closed the connection");
            return;
        }
        if (a->fdpass && a->tp == &a->fdt.base)
            note_fd(a, (size_t)n);
        touch(a);
        size_t took = take_input(a, dst, (size_t)n);
        if (a->state == ST_OPEN && took < (size_t)n)
            hold(a, dst + took, (size_t)n - took);
        /* A short read drained the socket; what a transport still holds
         * comes through the pending pass. */
        if ((size_t)n < room)
            return;
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
    a->split.dec.max = bytes;
}

/* ------------------------------------------------------ handshake, open */

static void opened(mpconn_async *a)
{
    setup *su = a->su;
    if (su && su->hs && su->hs->nleft) {
        /* The first message's bytes, read with the handshake's; a failure
         * here still counts as the handshake's. */
        hold(a, su->hs->left, su->hs->nleft);
        if (a->state == ST_CLOSED)
            return;
    }
    a->state = ST_OPEN;
    mpci_async_hs_done done = su ? su->hs_done : NULL;
    void *owner = su ? su->owner : NULL;
    su_release(a);
    if (a->x)
        a->x->last_io = now();
    if (done)
        done(a, 0, NULL, owner);
    else if (a->cbs.on_open)
        a->cbs.on_open(a, a->data);
    if (a->state == ST_CLOSED)
        return;
    arm(a);
    flush(a); /* anything sent while the handshake ran */
}

/* The TLS handshake (when the connection has one), then the authkey's
 * inside it, all within the one handshake deadline. */
static void handshake(mpconn_async *a, int readable)
{
    setup *su = a->su;
    if (su->tls_phase) {
        int r = a->tp->ops->handshake(a->tp);
        if (r == -EAGAIN) {
            want_io(a);
            return;
        }
        if (r < 0) {
            close_with(a, r, tp_why(a, r, mpconn_strerror(r)));
            return;
        }
        su->tls_phase = 0;
        if (!su->hs) {
            opened(a);
            return;
        }
        readable = 1; /* the peer's first message may have come with its last flight */
    }
    mpci_hs *hs = su->hs;
    int st = mpci_hs_step(hs, a->tp, readable, 0);
    if (st == MPCI_AUTH_DONE) {
        opened(a);
        return;
    }
    if (st == MPCI_AUTH_FAILED) {
        close_with(a, hs->code, tp_why(a, hs->code, mpci_hs_errmsg(hs)));
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
    setup *su = a->su;
    su->deadline = 0;
    if (su->hs || su->tls_phase) {
        a->state = ST_HANDSHAKE;
        double d = mpci_deadline(su->hs_timeout);
        su->deadline = d > 0 ? d : 0;
        arm(a);
        handshake(a, 0);
        return;
    }
    opened(a);
}

static void retry_connect(mpconn_async *a)
{
    setup *su = a->su;
    retry *rt = su->retry;
    int r;
    do
        r = connect(a->ev.fd, (struct sockaddr *)&rt->sa, rt->len);
    while (r < 0 && errno == EINTR);
    if (r == 0 || errno == EISCONN) {
        free(rt);
        su->retry = NULL;
        connected(a);
        return;
    }
    if (errno != EAGAIN) {
        int e = errno;
        close_with(a, -e, strerror(e));
        return;
    }
    rt->wait = rt->wait * 2 < 0.1 ? rt->wait * 2 : 0.1;
    rt->at = now() + rt->wait;
    arm(a);
}

static void on_io(mpconn_ev *ev, int events)
{
    mpconn_async *a = (mpconn_async *)ev;
    switch (a->state) {
    case ST_CONNECTING: connected(a); return;
    case ST_HANDSHAKE:
        handshake(a, (events & (MPCONN_READABLE | interest(a, POLLIN))) != 0);
        return;
    case ST_OPEN:
    case ST_CLOSING:
        /* An event in the direction the transport asked for counts for
         * the side that asked. */
        if (a->state == ST_OPEN && (events & (MPCONN_READABLE | interest(a, POLLIN))))
            read_input(a);
        if (a->head && a->state != ST_CLOSED && (events & (MPCONN_WRITABLE | interest(a, POLLOUT))))
            flush(a);
        if (a->state == ST_OPEN || a->state == ST_CLOSING)
            want_io_open(a);
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

static const mpci_ev_ops conn_ops = {on_io, on_timeout, destroy};

/* kind: MPCI_FD_UNIX or _INET when the caller knows the socket's family
 * (the listener does, from accept), else MPCI_FD_UNKNOWN: asked here (a
 * pipe or any other fd is not a socket). */
static mpconn_async *alloc_async(int fd, int kind, const struct mpconn_opts *o)
{
    if (kind == MPCI_FD_UNKNOWN) {
        int family = mpci_sock_family(fd);
        kind = family == AF_UNIX ? MPCI_FD_UNIX : family >= 0 ? MPCI_FD_INET : MPCI_FD_PIPE;
    }
    mpconn_async *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->ev.fd = fd;
    a->ev.ops = &conn_ops;
    a->sock = kind != MPCI_FD_PIPE;
    a->framed = 1;
    a->protocol = (uint8_t)o->pickle_protocol;
    mpci_fdt_init(&a->fdt, fd, a->sock, 0);
    a->tp = &a->fdt.base;
    a->local = kind == MPCI_FD_UNIX;
    mpci_split_init(&a->split, o->max_message);
    const mpci_pickle_limits def = MPCI_PICKLE_LIMITS_DEFAULT;
    if (memcmp(&o->limits, &def, sizeof def) != 0) {
        extra *x = x_of(a);
        if (!x) {
            free(a);
            return NULL;
        }
        x->lim = o->limits;
        x->has_lim = 1;
    }
    return a;
}

static setup *su_of(mpconn_async *a)
{
    if (!a->su && (a->su = calloc(1, sizeof *a->su)))
        a->su->started = mpci_now();
    return a->su;
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
    setup *su = su_of(a);
    if (!su)
        return -ENOMEM;
    if (copy) {
        su->own_opts = malloc(sizeof *su->own_opts);
        if (!su->own_opts)
            return -ENOMEM;
        mpci_opts_defaults(su->own_opts);
        int r = mpci_opts_copy(su->own_opts, o);
        if (r < 0) {
            free(su->own_opts);
            su->own_opts = NULL;
            return r;
        }
        o = su->own_opts;
    }
    setup_hs *grown = realloc(su, sizeof *grown);
    if (!grown)
        return -ENOMEM;
    a->su = su = &grown->su;
    su->hs = &grown->hs;
    int r = mpci_hs_init(su->hs, role, o);
    if (r < 0) {
        su->hs = NULL;
        return r;
    }
    double d = mpci_deadline(o->handshake_timeout);
    su->deadline = d > 0 ? d : 0;
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
    mpconn_async *a = alloc_async(fd, MPCI_FD_UNKNOWN, opts);
    if (!a)
        return -ENOMEM;
    if (role != MPCONN_ASYNC_PLAIN && opts->authkey) {
        r = start_hs(a, role == MPCONN_ASYNC_CLIENT ? MPCI_AUTH_CLIENT : MPCI_AUTH_SERVER, opts, 1);
        if (r < 0) {
            destroy(&a->ev); /* the fd stays the caller's */
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
    } else if (a->su && (a->su->hs || a->su->tls_phase)) {
        a->state = ST_HANDSHAKE;
        arm(a);
        /* Watched before the challenge leaves: the peer, woken by it, may
         * take the CPU, and the answer should find the fd registered. */
        if (a->su->hs && a->su->hs->auth.role == MPCI_AUTH_SERVER)
            mpci_ev_set_io(&a->ev, MPCONN_READABLE);
        handshake(a, 0); /* a server's challenge leaves now */
    } else {
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
    mpci_ev_unpin(&a->ev);
    return 0;
}

int mpci_async_accepted(mpconn_async **out, int fd, int kind, int flags,
                        const struct mpconn_opts *opts, mpci_async_hs_done done, void *owner)
{
    *out = NULL;
    mpconn_async *a = alloc_async(fd, kind, opts);
    if (!a)
        return -ENOMEM;
    int r = su_of(a) ? 0 : -ENOMEM;
    if (r == 0 && opts->authkey)
        r = start_hs(a, MPCI_AUTH_SERVER, opts, 0);
    if (r == 0 && (flags & MPCI_ASYNC_TLS))
        r = mpci_async_start_tls(a, opts->tls, NULL);
    if (r == 0) {
        /* The listener keeps every handshake's deadline (TLS and authkey)
         * with one timer of its own: its handshakes are in arrival order,
         * which is the order of their deadlines. */
        a->su->deadline = 0;
    }
    if (r < 0) {
        destroy(&a->ev);
        return r;
    }
    a->su->hs_done = done;
    a->su->owner = owner;
    *out = a;
    return 0;
}

int mpci_async_adopt(mpconn_ev *from, void *loop, int kind, const struct mpconn_opts *opts,
                     mpci_hs *hs, mpci_async_hs_done done, void *owner)
{
    mpconn_async *a = alloc_async(from->fd, kind, opts);
    if (!a)
        return -ENOMEM;
    setup *su = su_of(a);
    int r = su ? mpci_ev_move(from, &a->ev, loop) : -ENOMEM;
    if (r < 0) {
        destroy(&a->ev); /* the fd stays the caller's */
        return r;
    }
    /* Borrowed for opened(), which takes the bytes behind the handshake;
     * su_release clears it and frees only su. */
    su->hs = hs;
    su->hs_done = done;
    su->owner = owner;
    a->state = ST_HANDSHAKE;
    a->ev.pins++; /* done may close a */
    opened(a);
    mpci_ev_unpin(&a->ev);
    return 0;
}

void mpci_async_drop(mpconn_async *a, int reason, const char *why)
{
    if (a->su)
        a->su->hs_done = NULL;
    close_with(a, reason, why);
}

double mpci_async_started(const mpconn_async *a)
{
    return a->su ? a->su->started : 0;
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
    mpconn_async *a = alloc_async(fd, MPCI_FD_UNKNOWN, opts);
    if (!a)
        return -ENOMEM;
    int r = su_of(a) ? 0 : -ENOMEM;
    if (r == 0 && opts->authkey)
        r = start_hs(a, MPCI_AUTH_CLIENT, opts, 1); /* its clock starts when the connect is done */
    if (r == 0 && retry_sa && !(a->su->retry = malloc(sizeof *a->su->retry)))
        r = -ENOMEM;
    if (r < 0) {
        destroy(&a->ev);
        return r;
    }
    setup *su = a->su;
    su->hs_timeout = opts->handshake_timeout;
    if (retry_sa) {
        retry *rt = su->retry;
        memcpy(&rt->sa, retry_sa, retry_len);
        rt->len = retry_len;
        rt->wait = 0.001;
        rt->at = now() + rt->wait;
    }
    a->state = ST_CONNECTING;
    su->deadline = connect_deadline > 0 ? connect_deadline : 0;
    mpconn_async_set_callbacks(a, cbs, data);
    *out = a;
    return 0;
}

int mpci_async_start_tls(mpconn_async *a, mpconn_tls_config *cfg, const char *host)
{
    const char *name = NULL;
    if (mpci_tls_config_role(cfg) == MPCONN_TLS_CLIENT) {
        name = mpci_tls_config_server_name(cfg);
        if (!name)
            name = host;
    }
    extra *x = x_of(a);
    setup *su = su_of(a);
    if (!x || !su)
        return -ENOMEM;
    mpconn_tls *e;
    int r = mpconn_tls_new(&e, cfg, name);
    if (r == 0)
        r = mpci_tlst_new(&x->tls, a->ev.fd, a->sock, e); /* frees e when it fails */
    if (r < 0)
        return r;
    a->tp = &x->tls->base;
    a->local = 0; /* descriptors cannot be messages of a TLS session */
    su->tls_phase = 1;
    return 0;
}

int mpci_test_async_set_transport(mpconn_async *a, mpci_transport *t)
{
    if (a->ev.st || a->state == ST_CLOSED || a->fdpass)
        return -EBUSY;
    a->tp = t;
    a->local = 0; /* descriptors pass over the plain fd only */
    return 0;
}

mpconn_tls *mpconn_async_tls(const mpconn_async *a)
{
    return a && a->x && a->x->tls ? a->x->tls->tls : NULL;
}
