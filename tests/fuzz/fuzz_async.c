/* libFuzzer target for an async connection on mpconn's loop, end to end: a
 * hostile peer on the other end of a socketpair writes the input's stream
 * in pieces (some carrying a descriptor), and the connection's on_message
 * does what the input's script says with each message: echo it, hand its
 * buffer back to send, decode it, pause reading, switch the framing, shrink
 * the limit, expect a descriptor, start a producer, close. With an authkey
 * the peer may first run its side of the handshake, so that the stream
 * reaches an authenticated connection. The connection is one end of a
 * socketpair, or comes from an async listener the peer connects to (whose
 * handshake runs in a record of the listener's own). Over TLS the listener
 * is on TCP loopback: the peer either writes the stream as it is (hostile
 * records for the TLS handshake) or runs its own TLS engine, so the stream
 * reaches the connection as plaintext cut into records the size of the
 * pieces, and may end with a close_notify. At the end the peer lets the
 * loop turn until nothing more comes, then shuts its side down: the EOF
 * may bring no message (none may wait for a later event), and the
 * connection must close within a bounded number of loop turns, with
 * exactly one on_close, and leave no descriptor open; ASan and UBSan see
 * the rest.
 *
 * Input: flags, step, max (x 7), script length (its low four bits; T_POLL,
 * T_TLS, T_TLS_PEER, T_CLOSE_NOTIFY above them), the script (one action
 * per message, cycling), then the stream. */
#include "testlib.h"
#include "tls_certs.h"

#include <mpconn.h>
#include <mpconn/async.h>
#include <mpconn/loop.h>
#include <mpconn/proto.h>
#include <mpconn/tls.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    F_AUTHKEY = 1,
    F_FD_PASSING = 2,
    F_PASS_FDS = 4, /* over TCP, which carries none: pieces in bursts of eight */
    F_WATERMARKS = 8,
    F_CLIENT = 16,   /* with F_AUTHKEY: the connection is the client */
    F_ANSWER = 32,   /* with F_AUTHKEY: the peer runs its side of the handshake first */
    F_LEGACY = 64,   /* the peer's challenge is the one of CPython <= 3.11 */
    F_LISTENER = 128 /* the connection comes from an async listener the peer connects to */
};

/* The bits of the script length's byte above the length. */
enum {
    T_CLOSE_NOTIFY = 0x10, /* with T_TLS_PEER: the peer's TLS ends with close_notify */
    T_TLS_PEER = 0x20,     /* with T_TLS: the peer runs a TLS client engine */
    T_TLS = 0x40,          /* the listener speaks TLS, on TCP loopback */
    T_POLL = 0x80          /* the poll backend instead of epoll */
};

/* The peer's end: a socket, and a TLS engine when it speaks TLS, whose
 * ciphertext the socket did not take yet waits in held. */
typedef struct peer {
    int fd;
    mpconn_tls *tls;
    size_t nheld;
    uint8_t held[1 << 17];
} peer;

typedef struct fz {
    mpconn_async *a;
    const uint8_t *script;
    size_t nscript, k;
    int closes, paused, produced, rejects, messages;
    uint8_t flags;
} fz;

static void release(void *buf, void *arg)
{
    (void)arg;
    free(buf);
}

static void on_message(mpconn_async *a, const void *msg, size_t len, void *data)
{
    fz *f = data;
    int act = f->nscript ? f->script[f->k++ % f->nscript] % 15 : 0;
    f->messages++;
    mpconn_value *v = NULL;
    void *mine;
    switch (act) {
    case 1: mpconn_async_send(a, msg, len); break;
    case 2:
        mpconn_async_pause_reading(a);
        f->paused = 1;
        break;
    case 3: mpconn_async_set_framing(a, MPCONN_FRAME_DELIM, "\r\n", 2); break;
    case 4: mpconn_async_set_framing(a, MPCONN_FRAME_COUNT, NULL, 3); break;
    case 5: mpconn_async_set_framing(a, MPCONN_FRAME_MP, NULL, 0); break;
    case 6: mpconn_async_set_framing(a, MPCONN_FRAME_RAW, NULL, 0); break;
    case 7:
        if (mpconn_async_decode(a, &v, msg, len) == 0) {
            mpconn_async_send_value(a, v);
            mpconn_value_unref(v);
        }
        break;
    case 8: mpconn_async_close_when_done(a); break;
    case 9: mpconn_async_close(a); break; /* a is gone once the stack unwinds */
    case 10:
        /* release runs whatever send_owned returns */
        if ((mine = mpconn_async_take_message(a, msg, len)))
            mpconn_async_send_owned(a, mine, len, release, NULL);
        else
            mpconn_async_send(a, msg, len);
        break;
    case 11: mpconn_async_expect_fd(a); break;
    case 12: mpconn_async_set_max_message(a, len / 2 + 1); break;
    case 13: mpconn_async_set_framing(a, MPCONN_FRAME_DELIM, "\0", 1); break;
    case 14: mpconn_async_set_producer(a, 1); break;
    default: break;
    }
}

/* Three messages at a time while the queue is low, twelve in all. */
static int produce(mpconn_async *a, void *data)
{
    fz *f = data;
    for (int i = 0; i < 3 && f->produced < 12; i++, f->produced++)
        mpconn_async_send(a, "produced", 8);
    return f->produced < 12;
}

static void on_fd(mpconn_async *a, int fd, void *data)
{
    (void)a;
    (void)data;
    close(fd);
}

static void on_close(mpconn_async *a, int reason, const char *errmsg, void *data)
{
    (void)a;
    (void)reason;
    (void)errmsg;
    fz *f = data;
    f->closes++;
}

/* Sends what the engine has for the socket, keeping what it refuses. */
static void peer_flush(peer *p)
{
    size_t n = 1;
    while (p->tls && n > 0 && p->nheld < sizeof p->held &&
           mpconn_tls_pull(p->tls, p->held + p->nheld, sizeof p->held - p->nheld, &n) == 0)
        p->nheld += n;
    ssize_t w = p->nheld ? send(p->fd, p->held, p->nheld, MSG_NOSIGNAL) : 0;
    if (w > 0) {
        memmove(p->held, p->held + w, p->nheld - (size_t)w);
        p->nheld -= (size_t)w;
    }
}

/* Plaintext to the connection: how much was taken, or -1 (errno EAGAIN
 * while the engine's output waits, EPIPE once the engine has failed). */
static ssize_t peer_send(peer *p, const void *buf, size_t n)
{
    if (!p->tls)
        return send(p->fd, buf, n, MSG_NOSIGNAL);
    size_t took = 0;
    int r = p->nheld ? MPCONN_TLS_WANT_WRITE : mpconn_tls_write(p->tls, buf, n, &took);
    peer_flush(p);
    if (r == 0)
        return (ssize_t)took;
    errno = r == MPCONN_TLS_WANT_WRITE ? EAGAIN : EPIPE;
    return -1;
}

/* Ciphertext that came, into the engine: 0 when nothing did. */
static int peer_pump(peer *p)
{
    uint8_t buf[16384];
    ssize_t r = read(p->fd, buf, sizeof buf);
    if (r == 0)
        mpconn_tls_feed_eof(p->tls);
    else if (r > 0)
        mpconn_tls_feed(p->tls, buf, (size_t)r);
    return r > 0;
}

/* Plaintext from the connection into buf: how much, or -1 when none. */
static ssize_t peer_recv(peer *p, uint8_t *buf, size_t cap)
{
    if (!p->tls)
        return read(p->fd, buf, cap);
    size_t n = 0;
    int r = mpconn_tls_read(p->tls, buf, cap, &n);
    if (r == MPCONN_TLS_WANT_READ && peer_pump(p))
        r = mpconn_tls_read(p->tls, buf, cap, &n);
    peer_flush(p);
    return r == 0 ? (ssize_t)n : -1;
}

static void drain(peer *p)
{
    uint8_t sink[65536];
    while (peer_recv(p, sink, sizeof sink) > 0)
        ;
}

/* A few iterations of the loop, the peer reading all that came, reading
 * resumed after each: every turn delivers at least one message or ends. */
static void turn(mpconn_loop *loop, fz *f, peer *peer)
{
    for (int i = 0; i < 4; i++) {
        mpconn_loop_run(loop, MPCONN_RUN_NOWAIT);
        drain(peer);
        if (f->paused && !f->closes) {
            f->paused = 0;
            mpconn_async_resume_reading(f->a);
        }
    }
}

/* The peer's side of the handshake, with the sans-I/O machine, so that the
 * stream behind it reaches an authenticated connection. */
static void peer_handshake(mpconn_loop *loop, fz *f, peer *peer, uint8_t flags)
{
    mpconn_auth *au;
    mpconn_reader *rd;
    int role = flags & F_CLIENT ? MPCONN_AUTH_SERVER : MPCONN_AUTH_CLIENT;
    if (mpconn_auth_new(&au, role, "key", 3, flags & F_LEGACY ? "legacy" : NULL, 1) != 0 ||
        mpconn_reader_new(&rd, 4096) != 0)
        abort();
    for (int i = 0; i < 64 && !f->closes; i++) {
        const void *out;
        size_t n;
        int sent = 1;
        while (sent && mpconn_auth_next_framed(au, &out, &n))
            sent = peer_send(peer, out, n) == (ssize_t)n;
        if (!sent || mpconn_auth_done(au) != 0)
            break;
        mpconn_loop_run(loop, MPCONN_RUN_NOWAIT);
        uint8_t buf[4096];
        ssize_t r = peer_recv(peer, buf, sizeof buf);
        if (r > 0 && mpconn_reader_feed(rd, buf, (size_t)r) == 0) {
            void *m;
            size_t len;
            while (mpconn_auth_done(au) == 0 && mpconn_reader_get(rd, &m, &len) == 1) {
                mpconn_auth_feed(au, m, len);
                free(m);
            }
        }
    }
    mpconn_reader_free(rd);
    mpconn_auth_free(au);
}

/* The peer's TLS handshake, the listener's side of it run by the loop. */
static int peer_start_tls(mpconn_loop *loop, fz *f, peer *p)
{
    int r = MPCONN_TLS_WANT_READ;
    for (int i = 0; i < 64 && r == MPCONN_TLS_WANT_READ && !f->rejects; i++) {
        r = mpconn_tls_handshake(p->tls);
        peer_flush(p);
        mpconn_loop_run(loop, MPCONN_RUN_NOWAIT);
        peer_pump(p);
    }
    return r;
}

static const mpconn_async_cbs cbs = {.size = sizeof cbs,
                                     .on_message = on_message,
                                     .on_close = on_close,
                                     .on_fd = on_fd,
                                     .produce = produce};

static void setup(fz *f, mpconn_async *a)
{
    f->a = a;
    if (f->flags & F_FD_PASSING)
        mpconn_async_set_fd_passing(a, 1);
    if (f->flags & F_WATERMARKS)
        mpconn_async_set_watermarks(a, 64, 16);
}

static void on_accept(mpconn_async_listener *l, mpconn_async *a, void *data)
{
    (void)l;
    mpconn_async_set_callbacks(a, &cbs, data);
    setup(data, a);
}

static void on_reject(void *data, int code, const char *message)
{
    (void)code;
    (void)message;
    ((fz *)data)->rejects++;
}

/* A connection on one end of a socketpair; the other end is returned. */
static int open_pair(fz *f, mpconn_loop *loop, const mpconn_opts *o)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    /* With an authkey the peer is a client to answer, or a server whose
     * challenge and welcome the connection must judge. */
    int role = !(f->flags & F_AUTHKEY) ? MPCONN_ASYNC_PLAIN
               : f->flags & F_CLIENT   ? MPCONN_ASYNC_CLIENT
                                       : MPCONN_ASYNC_SERVER;
    mpconn_async *a;
    if (mpconn_async_from_fd(&a, sv[0], role, o, &cbs, f) != 0)
        abort();
    setup(f, a);
    if (mpconn_async_attach(a, mpconn_loop_adapter(), loop) != 0)
        abort();
    return sv[1];
}

/* The configs of both ends of TLS: made once, before the first input's
 * descriptors are counted (they hold none). */
static mpconn_tls_config *tls_config(int role)
{
    static mpconn_tls_config *cfg[2];
    mpconn_tls_config **c = &cfg[role == MPCONN_TLS_SERVER];
    if (!*c) {
        if (mpconn_tls_config_new(c, role) != 0)
            abort();
        int r =
            role == MPCONN_TLS_SERVER
                ? mpconn_tls_config_set_cert_file(*c, cert("server_ec.pem"), cert("server_ec.key"))
                : mpconn_tls_config_set_insecure_no_verify(*c, 1);
        if (r != 0)
            abort();
    }
    return *c;
}

/* A listener on an abstract Unix name (over TLS: on TCP loopback), and a
 * peer connected to it. */
static int open_listener(fz *f, mpconn_loop *loop, const mpconn_opts *o, int tls,
                         mpconn_async_listener **l)
{
    char name[64], err[256];
    if (tls)
        snprintf(name, sizeof name, "tls:127.0.0.1:0");
    else
        snprintf(name, sizeof name, "@mpconn-fuzz-async-%d", (int)getpid());
    if (mpconn_async_listener_open(l, name, o, mpconn_loop_adapter(), loop, on_accept, f, err,
                                   sizeof err) != 0)
        abort();
    mpconn_async_listener_on_reject(*l, on_reject, f);
    int peer, one = 1;
    if (tls) {
        /* Without TCP_NODELAY each small record after the first would wait
         * for the listener's delayed acknowledgement, and every piece for
         * the EOF. */
        peer = testlib_tcp_connect(mpconn_async_listener_address(*l));
        if (peer < 0 || setsockopt(peer, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
            abort();
    } else {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        size_t n = strlen(name);
        memcpy(un.sun_path + 1, name + 1, n - 1); /* sun_path[0] = 0: abstract */
        peer = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (peer < 0 || connect(peer, (struct sockaddr *)&un,
                                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) != 0)
            abort();
    }
    /* Connected before it turns non-blocking: the loop is not running yet. */
    if (fcntl(peer, F_SETFL, O_NONBLOCK) != 0)
        abort();
    return peer;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint8_t flags = data[0], mode = data[3];
    size_t step = data[1] ? data[1] : 1, nscript = mode % 16;
    if (size < 4 + nscript)
        return 0;
    fz f = {.script = data + 4, .nscript = nscript, .flags = flags};
    const uint8_t *stream = data + 4 + nscript;
    size_t len = size - 4 - nscript;
    int tls = mode & T_TLS;
    if (tls)
        tls_config(MPCONN_TLS_SERVER), tls_config(MPCONN_TLS_CLIENT);

    int before = testlib_count_dir("/proc/self/fd");
    mpconn_loop *loop;
    if (mpconn_loop_new(&loop, mode & T_POLL ? "poll" : NULL) != 0)
        abort();
    mpconn_opts *o = NULL;
    if (mpconn_opts_new(&o) != 0)
        abort();
    if (flags & F_AUTHKEY)
        mpconn_opts_set_authkey(o, "key", 3);
    if (data[2])
        mpconn_opts_set_max_message(o, (uint64_t)data[2] * 7);
    if (tls)
        mpconn_opts_set_tls(o, tls_config(MPCONN_TLS_SERVER));
    mpconn_async_listener *l = NULL;
    static peer pr; /* its buffer is too big for the stack */
    pr.nheld = 0;
    pr.tls = NULL;
    pr.fd =
        tls || flags & F_LISTENER ? open_listener(&f, loop, o, tls, &l) : open_pair(&f, loop, o);
    mpconn_opts_free(o);
    int spare = open("/dev/null", O_RDONLY | O_CLOEXEC);

    if (tls && mode & T_TLS_PEER) {
        if (mpconn_tls_new(&pr.tls, tls_config(MPCONN_TLS_CLIENT), NULL) != 0)
            abort();
        if (peer_start_tls(loop, &f, &pr) != 0)
            abort(); /* the listener failed a peer that did nothing wrong */
    }
    if ((flags & (F_AUTHKEY | F_ANSWER)) == (F_AUTHKEY | F_ANSWER))
        peer_handshake(loop, &f, &pr, flags);
    size_t pos = 0;
    for (int stuck = 0, piece = 0; pos < len && !f.closes && !f.rejects && stuck < 64; piece++) {
        size_t n = len - pos < step ? len - pos : step;
        /* One byte with a descriptor, as multiprocessing.reduction sends
         * one (not over TCP, which carries none). */
        struct iovec one = {(void *)(stream + pos), 1};
        ssize_t w = !tls && flags & F_PASS_FDS && stream[pos] & 1
                        ? testlib_send_fds(pr.fd, &one, 1, &spare, 1, MSG_DONTWAIT | MSG_NOSIGNAL)
                        : peer_send(&pr, stream + pos, n);
        if (w > 0) {
            pos += (size_t)w;
            stuck = 0;
        } else if (w < 0 && errno != EAGAIN) {
            break; /* the connection is gone */
        } else {
            stuck++;
        }
        /* A burst leaves several records for one read to feed the engine. */
        if (!(tls && flags & F_PASS_FDS) || piece % 8 == 7 || w <= 0)
            turn(loop, &f, &pr);
    }
    /* Turns until three in a row deliver nothing: all that was sent is in
     * (no byte waits in a buffer the loop does not know about), so the EOF
     * behind it may end the connection but brings no message. */
    for (size_t i = 0, idle = 0; i < len + 64 && idle < 3 && !f.closes && !f.rejects; i++) {
        int had = f.messages;
        turn(loop, &f, &pr);
        idle = f.messages == had ? idle + 1 : 0;
    }
    int delivered = f.messages;
    if (pr.tls && mode & T_CLOSE_NOTIFY) {
        mpconn_tls_shutdown(pr.tls);
        peer_flush(&pr);
    }
    shutdown(pr.fd, SHUT_WR);
    /* Each message takes at least one byte: a turn per byte is enough. */
    for (size_t i = 0; i < len + 64 && !f.closes && !f.rejects; i++)
        turn(loop, &f, &pr);
    /* Once the peer's EOF is in, the connection has closed, or the
     * listener has refused the peer and made none. */
    if (f.a ? f.closes != 1 : f.rejects != 1)
        abort();
    if (f.messages != delivered)
        abort(); /* a message that had come waited for the EOF */
    mpconn_async_listener_free(l);
    mpconn_loop_run(loop, MPCONN_RUN_NOWAIT);
    mpconn_loop_free(loop);
    mpconn_tls_free(pr.tls);
    close(pr.fd);
    close(spare);
    if (testlib_count_dir("/proc/self/fd") != before)
        abort(); /* a descriptor the connection took in was not closed */
    return 0;
}
