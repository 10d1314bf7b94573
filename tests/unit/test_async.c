/* Async connections and the async listener on every loop the build has
 * (mpconn's on epoll and poll, libuv, libevent):
 * echo against the blocking API, the handshake in both roles, watermarks
 * and on_drain, pause and resume, close_when_done, each close reason, the
 * producer, the listener's handshake cap, and transports that hold bytes
 * back or must write to read (the seam a TLS session uses). The peer side
 * runs in a thread with the blocking API, or as raw socket calls. */
#include "mpci_test.h"
#include "net/transport.h"
#include "loop_drivers.h"
#include "testlib.h"
#include "tls_certs.h"

#include <mpconn/async.h>
#include <mpconn/loop.h>
#include <mpconn/proto.h>
#include <mpconn/tls.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* What a test's connection saw. */
typedef struct {
    int messages;
    size_t bytes;
    char last[256];
    size_t lastlen;
    int closed;
    int reason;
    char why[256];
    int drains;
    int opened;
    int echo;        /* send every message back */
    int pause_after; /* pause reading after this many messages */
    mpconn_async *a;
    size_t produce_left, max_queued;
    int produced;
    int fds[4];
    int nfds;
    int expect_after; /* expect a descriptor after this many messages */
} seen;

static void on_open(mpconn_async *a, void *data)
{
    seen *s = data;
    s->a = a;
    s->opened++;
}

static void on_message(mpconn_async *a, const void *msg, size_t len, void *data)
{
    seen *s = data;
    s->messages++;
    s->bytes += len;
    s->lastlen = len < sizeof s->last ? len : sizeof s->last;
    memcpy(s->last, msg, s->lastlen);
    if (s->echo)
        CHECK_INT(mpconn_async_send(a, msg, len), 0);
    if (s->pause_after && s->messages == s->pause_after)
        mpconn_async_pause_reading(a);
    if (s->expect_after && s->messages == s->expect_after)
        CHECK_INT(mpconn_async_expect_fd(a), 0);
}

static void on_close(mpconn_async *a, int reason, const char *why, void *data)
{
    (void)a;
    seen *s = data;
    s->closed++;
    s->reason = reason;
    snprintf(s->why, sizeof s->why, "%s", why);
    s->a = NULL;
}

static void on_drain(mpconn_async *a, void *data)
{
    (void)a;
    ((seen *)data)->drains++;
}

static int produce(mpconn_async *a, void *data)
{
    seen *s = data;
    static char block[4096];
    if (s->produce_left == 0)
        return 0;
    CHECK_INT(mpconn_async_send(a, block, sizeof block), 0);
    s->produce_left--;
    s->produced++;
    if (mpconn_async_queued(a) > s->max_queued)
        s->max_queued = mpconn_async_queued(a);
    return 1;
}

static void on_fd(mpconn_async *a, int fd, void *data)
{
    (void)a;
    seen *s = data;
    s->fds[s->nfds++] = fd;
}

static const mpconn_async_cbs cbs = {
    sizeof(mpconn_async_cbs), on_open, on_message, on_close, on_drain, produce, on_fd};

/* An async connection on one end of a socketpair, the other end returned. */
static mpconn_async *async_pair(void *loop, seen *s, int *peer)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    mpconn_async *a;
    CHECK_INT(mpconn_async_from_fd(&a, sv[0], MPCONN_ASYNC_PLAIN, NULL, &cbs, s), 0);
    CHECK_INT(mpconn_async_attach(a, adapter(), loop_arg(cur, loop)), 0);
    s->a = a;
    *peer = sv[1];
    return a;
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        CHECK(w > 0);
        c += w;
        n -= (size_t)w;
    }
}

/* ------------------------------------------------- echo against blocking */

typedef struct {
    int fd;
    int ok;
    volatile int done;
} peer_job;

static void *echo_peer(void *data)
{
    peer_job *j = data;
    mpconn_conn *c;
    CHECK_INT(mpconn_conn_from_fd(&c, j->fd, MPCONN_READABLE | MPCONN_WRITABLE, NULL), 0);
    static const size_t sizes[] = {0, 1, 64, 4095, 65536, 100000, 1 << 20, 7};
    int ok = 1;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            char *buf = malloc(n + 1);
            for (size_t k = 0; k < n; k++)
                buf[k] = (char)(k * 7 + i + round);
            CHECK_INT(mpconn_conn_send_bytes(c, buf, n), 0);
            void *back;
            size_t blen;
            CHECK_INT(mpconn_conn_recv_bytes(c, &back, &blen, 0), 0);
            ok &= blen == n && memcmp(back, buf, n) == 0;
            free(back);
            free(buf);
        }
    }
    mpconn_conn_free(c); /* EOF between messages */
    j->ok = ok;
    j->done = 1;
    return NULL;
}

static void echo_against_blocking_on(void)
{
    void *loop = new_loop();
    seen s = {0};
    s.echo = 1;
    peer_job j = {0};
    async_pair(loop, &s, &j.fd);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, echo_peer, &j) == 0);
    CHECK(run_until(loop, &s.closed, 30));
    pthread_join(th, NULL);
    CHECK(j.ok);
    CHECK_INT(s.messages, 24);
    CHECK_INT(s.reason, MPCONN_ERR_EOF);
    free_loop(loop);
}

TEST(adapter_size_checked)
{
    /* A table whose size does not reach cleanup is refused before any hook
     * is called; size 0 stands for this header's sizeof. */
    mpconn_loop *loop;
    CHECK_INT(mpconn_loop_new(&loop, NULL), 0);
    mpconn_adapter small = *mpconn_loop_adapter(), zero = small;
    small.size = offsetof(mpconn_adapter, cleanup);
    zero.size = 0;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    mpconn_async *a;
    CHECK_INT(mpconn_async_from_fd(&a, sv[0], MPCONN_ASYNC_PLAIN, NULL, NULL, NULL), 0);
    CHECK_INT(mpconn_async_attach(a, &small, loop), -EINVAL);
    CHECK_INT(mpconn_async_attach(a, &zero, loop), 0);
    mpconn_async_close(a);
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_NOWAIT) >= 0, 1);
    close(sv[1]);
    mpconn_loop_free(loop);
}

TEST(echo_against_blocking)
{
    each_loop(echo_against_blocking_on);
}

/* ---------------------------------------------------- close reasons */

static void reason_case(const void *bytes, size_t n, uint64_t max, int want_reason,
                        const char *want_why)
{
    void *loop = new_loop();
    seen s = {0};
    int peer;
    mpconn_async *a = async_pair(loop, &s, &peer);
    if (max)
        mpconn_async_set_max_message(a, max);
    write_all(peer, bytes, n);
    shutdown(peer, SHUT_WR);
    CHECK(run_until(loop, &s.closed, 10));
    CHECK_INT(s.reason, want_reason);
    CHECK(s.why[0] != '\0');
    if (want_why && !strstr(s.why, want_why)) {
        fprintf(stderr, "why: %s\n", s.why);
        CHECK(!"the reason names what happened");
    }
    close(peer);
    free_loop(loop);
}

static void close_reasons_on(void)
{
    reason_case("\0\0\0\2hi", 6, 0, MPCONN_ERR_EOF, NULL);
    reason_case("\0\0\0\5hi", 6, 0, MPCONN_ERR_EOFMSG, "during message");
    reason_case("\0\0", 2, 0, MPCONN_ERR_EOFMSG, NULL);
    reason_case("\x80\0\0\0", 4, 0, MPCONN_ERR_PROTO, NULL);
    reason_case("\0\0\1\0", 4, 16, MPCONN_ERR_MSGSIZE, "256 bytes announced, over the limit of 16");
}

TEST(each_close_reason)
{
    each_loop(close_reasons_on);
}

static void local_close_cb(mpconn_async *a, const void *msg, size_t len, void *data)
{
    on_message(a, msg, len, data);
    mpconn_async_close(a);                                      /* inside its own callback */
    CHECK_INT(mpconn_async_send(a, "x", 1), MPCONN_ERR_CLOSED); /* still valid until it returns */
}

static void local_close_inside_callback_on(void)
{
    void *loop = new_loop();
    seen s = {0};
    int peer;
    mpconn_async *a = async_pair(loop, &s, &peer);
    mpconn_async_cbs c = cbs;
    c.on_message = local_close_cb;
    mpconn_async_set_callbacks(a, &c, &s);
    pid_t pid;
    uid_t uid;
    CHECK_STR(mpconn_async_peer(a, &pid, &uid, NULL), ""); /* an unbound Unix peer */
    CHECK_INT(pid, getpid());
    CHECK_INT(uid, getuid());
    write_all(peer, "\0\0\0\1a\0\0\0\1b", 10);
    CHECK(run_until(loop, &s.closed, 10));
    CHECK_INT(s.reason, 0);
    CHECK_INT(s.messages, 1); /* the second message was not delivered */
    char buf[4];
    CHECK(read(peer, buf, sizeof buf) == 0); /* closed: EOF */
    close(peer);
    free_loop(loop);
}

TEST(local_close_inside_callback)
{
    each_loop(local_close_inside_callback_on);
}

static void timeouts_on(void)
{
    /* Idle: nothing either way. */
    void *loop = new_loop();
    seen s = {0};
    int peer;
    mpconn_async *a = async_pair(loop, &s, &peer);
    CHECK_INT(mpconn_async_set_timeouts(a, 0.05, -1), 0);
    double t0 = now_s();
    CHECK(run_until(loop, &s.closed, 10));
    CHECK_INT(s.reason, -ETIMEDOUT);
    CHECK(now_s() - t0 >= 0.045);
    close(peer);
    /* Read: a message begun and not finished, though bytes keep coming. */
    seen s2 = {0};
    a = async_pair(loop, &s2, &peer);
    CHECK_INT(mpconn_async_set_timeouts(a, 5, 0.1), 0);
    write_all(peer, "\0\0\0\x10", 4);
    t0 = now_s();
    for (int i = 0; i < 8 && !s2.closed; i++) {
        write_all(peer, "x", 1);
        volatile int never = 0;
        run_until(loop, &never, 0.03);
    }
    CHECK(run_until(loop, &s2.closed, 10));
    CHECK_INT(s2.reason, -ETIMEDOUT);
    CHECK(strstr(s2.why, "read timeout") != NULL);
    close(peer);
    free_loop(loop);
}

TEST(idle_and_read_timeouts)
{
    each_loop(timeouts_on);
}

/* ------------------------------------------ back-pressure and draining */

static void watermarks_on(void)
{
    void *loop = new_loop();
    seen s = {0};
    int peer;
    mpconn_async *a = async_pair(loop, &s, &peer);
    int small = 4096;
    setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    CHECK_INT(mpconn_async_set_watermarks(a, 65536, 16384), 0);
    static char block[32768];
    int sends = 0;
    while (!mpconn_async_above_high(a) && sends < 1000) {
        CHECK_INT(mpconn_async_send(a, block, sizeof block), 0);
        sends++;
    }
    CHECK(mpconn_async_above_high(a));
    CHECK(mpconn_async_queued(a) > 65536);
    volatile int never = 0;
    run_until(loop, &never, 0.05); /* the peer reads nothing: no drain */
    CHECK_INT(s.drains, 0);
    /* The peer reads everything: the queue drains, on_drain once. */
    size_t want = (size_t)sends * (sizeof block + 4), got = 0;
    fcntl(peer, F_SETFL, O_NONBLOCK);
    double t0 = now_s();
    while (got < want && now_s() - t0 < 10) {
        char buf[65536];
        ssize_t n = read(peer, buf, sizeof buf);
        if (n > 0)
            got += (size_t)n;
        step(loop);
    }
    CHECK_INT(got, want);
    run_until(loop, &never, 0.02);
    CHECK_INT(s.drains, 1);
    CHECK_INT(mpconn_async_queued(a), 0);
    CHECK(!mpconn_async_above_high(a));
    mpconn_async_close(a);
    close(peer);
    free_loop(loop);
}

TEST(watermarks_and_on_drain)
{
    each_loop(watermarks_on);
}

static void producer_on(void)
{
    void *loop = new_loop();
    seen s = {0};
    int peer;
    mpconn_async *a = async_pair(loop, &s, &peer);
    s.produce_left = 2000; /* 8 MiB in all, to a reader that reads slowly */
    CHECK_INT(mpconn_async_set_watermarks(a, 65536, 16384), 0);
    mpconn_async_set_producer(a, 1);
    fcntl(peer, F_SETFL, O_NONBLOCK);
    size_t want = 2000 * (4096 + 4), got = 0;
    double t0 = now_s();
    while (got < want && now_s() - t0 < 20) {
        char buf[16384];
        ssize_t n = read(peer, buf, sizeof buf);
        if (n > 0)
            got += (size_t)n;
        step(loop);
    }
    CHECK_INT(got, want);
    CHECK_INT(s.produced, 2000);
    /* Bounded by the low watermark plus one block, whatever was to give. */
    CHECK(s.max_queued <= 16384 + 4100);
    mpconn_async_close(a);
    close(peer);
    free_loop(loop);
}

TEST(producer_keeps_memory_bounded)
{
    each_loop(producer_on);
}

static void pause_resume_on(void)
{
    void *loop = new_loop();
    seen s = {0};
    s.pause_after = 1;
    int peer;
    mpconn_async *a = async_pair(loop, &s, &peer);
    /* Three messages in one write: the pause lands inside one read. */
    write_all(peer, "\0\0\0\1a\0\0\0\1b\0\0\0\1c", 15);
    volatile int never = 0;
    run_until(loop, &never, 0.05);
    CHECK_INT(s.messages, 1);
    mpconn_async_resume_reading(a);
    s.pause_after = 0;
    /* Held bytes are delivered without any new byte from the peer. */
    run_until(loop, &never, 0.05);
    CHECK_INT(s.messages, 3);
    CHECK_INT(s.last[0], 'c');
    mpconn_async_close(a);
    close(peer);
    free_loop(loop);
}

TEST(pause_and_resume_reading)
{
    each_loop(pause_resume_on);
}

static void close_when_done_on(void)
{
    void *loop = new_loop();
    seen s = {0};
    int peer;
    mpconn_async *a = async_pair(loop, &s, &peer);
    static char block[100000];
    for (int i = 0; i < 20; i++)
        CHECK_INT(mpconn_async_send(a, block, sizeof block), 0);
    mpconn_async_close_when_done(a);
    CHECK_INT(mpconn_async_send(a, "late", 4), MPCONN_ERR_CLOSED);
    CHECK_INT(s.closed, 0); /* not before the queue is written */
    fcntl(peer, F_SETFL, O_NONBLOCK);
    size_t got = 0;
    int eof = 0;
    double t0 = now_s();
    while (!eof && now_s() - t0 < 10) {
        char buf[65536];
        ssize_t n = read(peer, buf, sizeof buf);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            eof = 1;
        step(loop);
    }
    CHECK(eof);
    CHECK_INT(got, 20 * (sizeof block + 4));
    CHECK_INT(s.closed, 1);
    CHECK_INT(s.reason, 0);
    close(peer);
    free_loop(loop);
}

TEST(close_when_done_delivers_everything_queued)
{
    each_loop(close_when_done_on);
}

static void delimited_framing_on(void)
{
    void *loop = new_loop();
    seen s = {0};
    s.echo = 1;
    int peer;
    mpconn_async *a = async_pair(loop, &s, &peer);
    CHECK_INT(mpconn_async_set_framing(a, MPCONN_FRAME_DELIM, "\r\n", 2), 0);
    mpconn_async_set_max_message(a, 10);
    write_all(peer, "hel", 3);
    volatile int never = 0;
    run_until(loop, &never, 0.02);
    write_all(peer, "lo\r\nwor", 7);
    run_until(loop, &never, 0.02);
    write_all(peer, "ld\r\n", 4);
    run_until(loop, &never, 0.02);
    CHECK_INT(s.messages, 2);
    char buf[64];
    ssize_t n = read(peer, buf, sizeof buf); /* echoed as raw bytes, no header */
    CHECK_INT(n, 10);
    CHECK_MEM(buf, "helloworld", 10);
    write_all(peer, "much too long a line\r\n", 22);
    CHECK(run_until(loop, &s.closed, 10));
    CHECK_INT(s.reason, MPCONN_ERR_MSGSIZE);
    close(peer);
    free_loop(loop);
}

TEST(delimited_framing_over_a_socket)
{
    each_loop(delimited_framing_on);
}

/* ------------------------------------------------ listener and client */

typedef struct {
    void *loop;
    seen conns[64];
    int accepted;
    int rejects;
    int last_reject;
    char last_msg[512];
} server;

static void accept_cb(mpconn_async_listener *l, mpconn_async *a, void *data)
{
    server *sv = data;
    CHECK(sv->accepted < 64);
    seen *s = &sv->conns[sv->accepted++];
    const char *peer = mpconn_async_peer(a, NULL, NULL, NULL);
    CHECK(strncmp(peer, "127.0.0.1:", 10) == 0); /* the peer's own port, not ours */
    CHECK(strcmp(peer, mpconn_async_listener_address(l)) != 0);
    s->echo = 1;
    s->a = a;
    mpconn_async_set_callbacks(a, &cbs, s);
}

static void reject_cb(void *data, int code, const char *msg)
{
    server *sv = data;
    sv->rejects++;
    sv->last_reject = code;
    snprintf(sv->last_msg, sizeof sv->last_msg, "%s", msg);
}

typedef struct {
    char address[128];
    const char *key;
    mpconn_tls_config *tls; /* for a tls: address */
    int junk;               /* write a bogus TLS record on the socket instead */
    int n;
    int ok;
    int err;
    volatile int done;
} client_job;

static void *blocking_clients(void *data)
{
    client_job *j = data;
    mpconn_opts *o;
    mpconn_opts_new(&o);
    if (j->key)
        mpconn_opts_set_authkey(o, j->key, strlen(j->key));
    if (j->tls)
        mpconn_opts_set_tls(o, j->tls);
    mpconn_opts_set_handshake_timeout(o, 5);
    for (int i = 0; i < j->n; i++) {
        mpconn_conn *c;
        char err[256];
        int r = mpconn_client(&c, j->address, o, err, sizeof err);
        if (r < 0) {
            j->err = r;
            continue;
        }
        if (j->junk) {
            write_all(mpconn_conn_fileno(c), "\x17\x03\x03\x00\x05junk!", 10);
            struct timeval tv = {10, 0}; /* the server closes long before */
            setsockopt(mpconn_conn_fileno(c), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            char b[64];
            for (int k = 0; k < 100 && read(mpconn_conn_fileno(c), b, sizeof b) > 0; k++) {
            }
            mpconn_conn_free(c);
            continue;
        }
        char msg[32];
        int len = snprintf(msg, sizeof msg, "hello %d", i);
        mpconn_conn_send_bytes(c, msg, (size_t)len);
        void *back;
        size_t blen;
        if (mpconn_conn_recv_bytes(c, &back, &blen, 0) == 0) {
            j->ok += blen == (size_t)len && memcmp(back, msg, blen) == 0;
            free(back);
        }
        mpconn_conn_free(c);
    }
    mpconn_opts_free(o);
    j->done = 1;
    return NULL;
}

/* An async listener on address with the key "secret" on a new loop of
 * sv's, rejects counted in sv; hs_timeout > 0 sets the handshake timeout. */
static mpconn_async_listener *keyed_listener_at(server *sv, mpconn_opts **o, const char *address,
                                                double hs_timeout)
{
    sv->loop = new_loop();
    mpconn_opts_new(o);
    mpconn_opts_set_authkey(*o, "secret", 6);
    if (hs_timeout > 0)
        mpconn_opts_set_handshake_timeout(*o, hs_timeout);
    mpconn_async_listener *l;
    char err[256];
    CHECK_INT(mpconn_async_listener_open(&l, address, *o, adapter(), loop_arg(cur, sv->loop),
                                         accept_cb, sv, err, sizeof err),
              0);
    mpconn_async_listener_on_reject(l, reject_cb, sv);
    return l;
}

static mpconn_async_listener *keyed_listener(server *sv, mpconn_opts **o, double hs_timeout)
{
    return keyed_listener_at(sv, o, "127.0.0.1:0", hs_timeout);
}

/* n blocking clients with the right key, one after the other, run against
 * l while its loop turns; how many echoed. */
static int good_clients(server *sv, mpconn_async_listener *l, int n)
{
    client_job good = {0};
    snprintf(good.address, sizeof good.address, "%s", mpconn_async_listener_address(l));
    good.key = "secret";
    good.n = n;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocking_clients, &good) == 0);
    volatile int never = 0;
    double t0 = now_s();
    while (!good.done && now_s() - t0 < 30)
        run_until(sv->loop, &never, 0.02);
    pthread_join(t, NULL);
    return good.ok;
}

static void listener_handshakes_on(void)
{
    server sv = {0};
    mpconn_opts *o;
    mpconn_async_listener *l = keyed_listener(&sv, &o, 0);
    client_job good = {0}, bad = {0};
    snprintf(good.address, sizeof good.address, "%s", mpconn_async_listener_address(l));
    good.key = "secret";
    good.n = 5;
    bad = good;
    bad.key = "wrong";
    bad.n = 1;
    pthread_t t1, t2;
    CHECK(pthread_create(&t1, NULL, blocking_clients, &good) == 0);
    CHECK(pthread_create(&t2, NULL, blocking_clients, &bad) == 0);
    volatile int both = 0;
    double t0 = now_s();
    while (!(good.done && bad.done) && now_s() - t0 < 30)
        run_until(sv.loop, &both, 0.02);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK_INT(good.ok, 5);
    CHECK_INT(bad.ok, 0);
    CHECK(bad.err == MPCONN_ERR_AUTH);
    CHECK_INT(sv.accepted, 5);
    CHECK(sv.rejects >= 1);
    CHECK_INT(sv.last_reject, MPCONN_ERR_AUTH);
    mpconn_async_listener_free(l);
    mpconn_opts_free(o);
    free_loop(sv.loop);
}

/* A Unix peer's credentials, not needed by the policy of a keyed
 * listener, are asked for when a rejection names the peer. */
static void listener_names_unix_peer_on(void)
{
    server sv = {0};
    mpconn_opts *o;
    char addr[64];
    snprintf(addr, sizeof addr, "@mpconn-test-async-%ld-peer", (long)getpid());
    mpconn_async_listener *l = keyed_listener_at(&sv, &o, addr, 0);
    client_job bad = {0};
    snprintf(bad.address, sizeof bad.address, "%s", addr);
    bad.key = "wrong";
    bad.n = 1;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocking_clients, &bad) == 0);
    volatile int never = 0;
    double t0 = now_s();
    while ((!bad.done || sv.rejects == 0) && now_s() - t0 < 10)
        run_until(sv.loop, &never, 0.02);
    pthread_join(t, NULL);
    CHECK_INT(sv.rejects, 1);
    char want[160];
    snprintf(want, sizeof want, "authentication of peer pid %ld uid %ld on %s failed",
             (long)getpid(), (long)getuid(), addr);
    CHECK(strncmp(sv.last_msg, want, strlen(want)) == 0);
    mpconn_async_listener_free(l);
    mpconn_opts_free(o);
    free_loop(sv.loop);
}

TEST(listener_names_a_unix_peer_when_it_rejects_one)
{
    each_loop(listener_names_unix_peer_on);
}

TEST(listener_runs_handshakes_on_the_loop)
{
    each_loop(listener_handshakes_on);
}

/* A listener opened unattached is bound (its address known) and accepts
 * nothing: the peer waits in the backlog until it is attached. */
static void listener_attached_later(void)
{
    server sv = {0};
    sv.loop = new_loop();
    mpconn_opts *o;
    mpconn_opts_new(&o);
    mpconn_opts_set_authkey(o, "secret", 6);
    mpconn_async_listener *l;
    char err[256];
    CHECK_INT(mpconn_async_listener_open(&l, "127.0.0.1:0", o, NULL, NULL, accept_cb, &sv, err,
                                         sizeof err),
              0);
    client_job good = {0};
    snprintf(good.address, sizeof good.address, "%s", mpconn_async_listener_address(l));
    good.key = "secret";
    good.n = 1;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocking_clients, &good) == 0);
    volatile int never = 0;
    run_until(sv.loop, &never, 0.2);
    CHECK_INT(sv.accepted, 0);
    CHECK_INT(mpconn_async_listener_handshakes(l), 0);
    CHECK_INT(mpconn_async_listener_attach(l, adapter(), loop_arg(cur, sv.loop)), 0);
    CHECK_INT(mpconn_async_listener_attach(l, adapter(), loop_arg(cur, sv.loop)), -EBUSY);
    double t0 = now_s();
    while (!good.done && now_s() - t0 < 30)
        run_until(sv.loop, &never, 0.02);
    pthread_join(t, NULL);
    CHECK_INT(good.ok, 1);
    CHECK_INT(sv.accepted, 1);
    mpconn_async_listener_free(l);
    mpconn_opts_free(o);
    free_loop(sv.loop);
}

TEST(listener_opened_unattached_accepts_once_attached)
{
    each_loop(listener_attached_later);
}

/* What a watcher's callback saw; it closes its watcher at close_at. */
typedef struct watched {
    int readable, timers, calls, close_at;
    int fd;
    mpconn_watch *w;
} watched;

static void watch_cb(mpconn_watch *w, int events, void *data)
{
    watched *m = data;
    CHECK(w == m->w);
    m->calls++;
    if (events & MPCONN_WATCH_TIMER)
        m->timers++;
    if (events & MPCONN_READABLE) {
        char b[16];
        m->readable += read(m->fd, b, sizeof b) > 0;
    }
    if (m->calls == m->close_at) {
        mpconn_watch_close(w);
        m->w = NULL;
    }
}

/* Counts a writable event, then stops asking (a pipe stays writable). */
static void writable_cb(mpconn_watch *w, int events, void *data)
{
    watched *m = data;
    CHECK(events == MPCONN_WRITABLE);
    m->calls++;
    mpconn_watch_set(w, 0);
}

/* A watcher's fd events (readable, writable) and its one-shot timer, on
 * every loop: armed, replaced, cancelled; closed inside its callback, it
 * is called no more. */
static void watch_fd_and_timer(void)
{
    void *loop = new_loop();
    void *la = loop_arg(cur, loop);
    int p[2];
    CHECK_INT(pipe(p), 0);
    watched m = {.fd = p[0]};
    mpconn_watch *bad;
    CHECK_INT(mpconn_watch_new(&bad, -1, adapter(), la, watch_cb, &m), -EINVAL);
    CHECK(bad == NULL);
    CHECK_INT(mpconn_watch_new(&m.w, p[0], adapter(), la, watch_cb, &m), 0);
    CHECK_INT(mpconn_watch_fd(m.w), p[0]);
    volatile int never = 0;
    /* No interest: a byte waits. */
    CHECK_INT(write(p[1], "a", 1), 1);
    run_until(loop, &never, 0.05);
    CHECK_INT(m.calls, 0);
    mpconn_watch_set(m.w, MPCONN_READABLE);
    double t0 = now_s();
    while (m.readable < 1 && now_s() - t0 < 5)
        step(loop), cur->wait(loop, 1);
    CHECK_INT(m.readable, 1);
    /* The timer, armed twice (the second replaces the first), fires once;
     * armed and cancelled, never. */
    mpconn_watch_set(m.w, 0);
    mpconn_watch_set_timer(m.w, 5);
    mpconn_watch_set_timer(m.w, 0.02);
    t0 = now_s();
    while (m.timers < 1 && now_s() - t0 < 5)
        cur->wait(loop, 1);
    CHECK_INT(m.timers, 1);
    run_until(loop, &never, 0.1);
    CHECK_INT(m.timers, 1);
    mpconn_watch_set_timer(m.w, 0.02);
    mpconn_watch_set_timer(m.w, -1);
    run_until(loop, &never, 0.1);
    CHECK_INT(m.timers, 1);
    /* Closed inside the callback that a byte brings: a second byte and a
     * timer armed before find nobody. */
    m.close_at = m.calls + 1;
    mpconn_watch_set(m.w, MPCONN_READABLE);
    mpconn_watch_set_timer(m.w, 0.03);
    CHECK_INT(write(p[1], "b", 1), 1);
    t0 = now_s();
    while (m.w && now_s() - t0 < 5)
        cur->wait(loop, 1);
    CHECK(m.w == NULL);
    int calls = m.calls;
    CHECK_INT(write(p[1], "c", 1), 1);
    run_until(loop, &never, 0.1);
    CHECK_INT(m.calls, calls);
    /* Closed outside a callback, with the fd's number taken again at once
     * by another pipe: the old watcher sees none of the new one's bytes. */
    close(p[0]);
    close(p[1]);
    CHECK_INT(pipe(p), 0);
    watched m2 = {.fd = p[0]};
    CHECK_INT(mpconn_watch_new(&m2.w, p[0], adapter(), la, watch_cb, &m2), 0);
    mpconn_watch_set(m2.w, MPCONN_READABLE);
    mpconn_watch_close(m2.w);
    close(p[0]);
    int q[2];
    CHECK_INT(pipe(q), 0);
    CHECK_INT(write(q[1], "d", 1), 1);
    run_until(loop, &never, 0.05);
    CHECK_INT(m2.calls, 0);
    mpconn_watch_close(NULL);
    close(q[0]);
    close(q[1]);
    close(p[1]);
    /* Writable: a pipe's empty write end is, at once. */
    CHECK_INT(pipe(p), 0);
    watched m3 = {.fd = -1};
    CHECK_INT(mpconn_watch_new(&m3.w, p[1], adapter(), la, writable_cb, &m3), 0);
    mpconn_watch_set(m3.w, MPCONN_WRITABLE);
    t0 = now_s();
    while (m3.calls < 1 && now_s() - t0 < 5)
        cur->wait(loop, 1);
    CHECK_INT(m3.calls, 1);
    mpconn_watch_close(m3.w);
    close(p[0]);
    close(p[1]);
    free_loop(loop);
}

TEST(watch_fd_and_timer)
{
    each_loop(watch_fd_and_timer);
}

/* The loop's adapter, counting attaches: a peer's handshake runs in the
 * listener's record of it, whose watcher passes to the connection once
 * the peer is in, through rebind, or, for a table without it, by a
 * cleanup and a new attach. */
static const mpconn_adapter *handed_inner;
static int handed_attaches;

static void *handed_attach(void *loop, mpconn_ev *ev)
{
    handed_attaches++;
    return handed_inner->attach(loop, ev);
}

static void handed_over_with(int with_rebind)
{
    server sv = {0};
    sv.loop = new_loop();
    handed_inner = adapter();
    mpconn_adapter ad = *handed_inner;
    ad.attach = handed_attach;
    if (!with_rebind)
        ad.size = offsetof(mpconn_adapter, rebind); /* as a table built before it */
    handed_attaches = 0;
    mpconn_opts *o;
    mpconn_opts_new(&o);
    mpconn_opts_set_authkey(o, "secret", 6);
    mpconn_async_listener *l;
    char err[256];
    CHECK_INT(mpconn_async_listener_open(&l, "127.0.0.1:0", o, &ad, loop_arg(cur, sv.loop),
                                         accept_cb, &sv, err, sizeof err),
              0);
    CHECK_INT(good_clients(&sv, l, 3), 3);
    CHECK_INT(sv.accepted, 3);
    /* The listener's socket, then each peer once, or twice without rebind. */
    CHECK_INT(handed_attaches, 1 + 3 * (with_rebind ? 1 : 2));
    mpconn_async_listener_free(l);
    mpconn_opts_free(o);
    free_loop(sv.loop);
}

static void handed_over_on(void)
{
    handed_over_with(1);
    handed_over_with(0);
}

TEST(listener_hands_the_watcher_over)
{
    each_loop(handed_over_on);
}

/* A plain TCP socket to the port of a 127.0.0.1:PORT or
 * tls:127.0.0.1:PORT address. */
static int tcp_connect_to(const char *address)
{
    int fd = testlib_tcp_connect(address);
    CHECK(fd >= 0);
    return fd;
}

/* A client that speaks the handshake by hand (the sans-I/O machine) and
 * writes its last handshake message and its first message in one send: the
 * listener, which runs the handshake in a record of its own, must hand the
 * bytes behind it to the connection it makes. */
typedef struct eager_job {
    char address[64];
    volatile int done, ok;
} eager_job;

static int read_frame(int fd, unsigned char *buf, size_t cap, size_t *len)
{
    unsigned char h[4];
    size_t got = 0;
    while (got < 4) {
        ssize_t n = read(fd, h + got, 4 - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    *len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    if (*len > cap)
        return -1;
    for (got = 0; got < *len;) {
        ssize_t n = read(fd, buf + got, *len - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static void *eager_client(void *arg)
{
    eager_job *j = arg;
    int fd = tcp_connect_to(j->address);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    mpconn_auth *m;
    CHECK_INT(mpconn_auth_new(&m, MPCONN_AUTH_CLIENT, "secret", 6, NULL, 1), 0);
    unsigned char in[512], out[1024];
    for (int round = 0; round < 8 && mpconn_auth_done(m) == 0; round++) {
        size_t len, n = 0;
        if (read_frame(fd, in, sizeof in, &len) < 0)
            break;
        mpconn_auth_feed(m, in, len);
        const void *msg;
        size_t mlen;
        while (mpconn_auth_next_framed(m, &msg, &mlen) == 1 && n + mlen <= sizeof out) {
            memcpy(out + n, msg, mlen);
            n += mlen;
        }
        if (mpconn_auth_done(m) == 1) /* the first message rides with the last one */
            memcpy(out + n, "\0\0\0\5hello", 9), n += 9;
        write_all(fd, out, n);
    }
    size_t len;
    j->ok = mpconn_auth_done(m) == 1 && read_frame(fd, in, sizeof in, &len) == 0 && len == 5 &&
            memcmp(in, "hello", 5) == 0;
    mpconn_auth_free(m);
    close(fd);
    j->done = 1;
    return NULL;
}

static void bytes_behind_handshake_on(void)
{
    server sv = {0};
    mpconn_opts *o;
    mpconn_async_listener *l = keyed_listener(&sv, &o, 0);
    eager_job j = {0};
    snprintf(j.address, sizeof j.address, "%s", mpconn_async_listener_address(l));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, eager_client, &j) == 0);
    volatile int never = 0;
    double t0 = now_s();
    while (!j.done && now_s() - t0 < 30)
        run_until(sv.loop, &never, 0.02);
    pthread_join(t, NULL);
    CHECK(j.ok);
    CHECK_INT(sv.accepted, 1);
    mpconn_async_listener_free(l);
    mpconn_opts_free(o);
    free_loop(sv.loop);
}

TEST(listener_keeps_the_bytes_behind_the_handshake)
{
    each_loop(bytes_behind_handshake_on);
}

static void silent_flood_on(void)
{
    server sv = {0};
    mpconn_opts *o;
    /* the silent ones never time out here */
    mpconn_async_listener *l = keyed_listener(&sv, &o, 60);
    CHECK_INT(mpconn_async_listener_set_max_handshakes(l, 50), 0);
    int silent[120];
    volatile int never = 0;
    for (int i = 0; i < 120; i++) {
        silent[i] = tcp_connect_to(mpconn_async_listener_address(l));
        if (i % 10 == 9)
            run_until(sv.loop, &never, 0.005);
    }
    run_until(sv.loop, &never, 0.05);
    CHECK(mpconn_async_listener_handshakes(l) <= 50);
    CHECK(sv.rejects >= 70); /* the oldest made room */
    CHECK_INT(sv.last_reject, -ETIMEDOUT);
    /* A real client still gets in at once. */
    CHECK_INT(good_clients(&sv, l, 3), 3);
    for (int i = 0; i < 120; i++)
        close(silent[i]);
    mpconn_async_listener_free(l);
    mpconn_opts_free(o);
    free_loop(sv.loop);
}

TEST(silent_flood_locks_nobody_out)
{
    each_loop(silent_flood_on);
}

/* Handshake deadlines, kept by the listener with one timer: silent peers
 * that came at different times each go at their own deadline, reported,
 * and a real client in between is served. */
static void deadlines_on(void)
{
    server sv = {0};
    mpconn_opts *o;
    mpconn_async_listener *l = keyed_listener(&sv, &o, 1.0);
    volatile int never = 0;
    int early = tcp_connect_to(mpconn_async_listener_address(l));
    run_until(sv.loop, &never, 0.6);
    int late = tcp_connect_to(mpconn_async_listener_address(l));
    double late_at = now_s();
    run_until(sv.loop, &never, 0.05);
    CHECK_INT(mpconn_async_listener_handshakes(l), 2);
    /* The first goes at its deadline; the second, 0.6 s younger, stays
     * (unless the machine stalled past its deadline too). */
    double t0 = now_s();
    while (sv.rejects == 0 && now_s() - t0 < 5)
        run_until(sv.loop, &never, 0.01);
    CHECK_INT(sv.rejects, 1);
    CHECK_INT(sv.last_reject, -ETIMEDOUT);
    if (now_s() - late_at < 0.9)
        CHECK_INT(mpconn_async_listener_handshakes(l), 1);
    CHECK_INT(good_clients(&sv, l, 1), 1);
    t0 = now_s();
    while (mpconn_async_listener_handshakes(l) > 0 && now_s() - t0 < 5)
        run_until(sv.loop, &never, 0.02);
    CHECK_INT(mpconn_async_listener_handshakes(l), 0);
    CHECK_INT(sv.rejects, 2);
    CHECK_INT(sv.last_reject, -ETIMEDOUT);
    /* each peer sees its connection closed */
    char b[128];
    CHECK(read(early, b, sizeof b) > 0); /* the challenge */
    CHECK_INT(read(early, b, sizeof b), 0);
    CHECK(read(late, b, sizeof b) > 0);
    CHECK_INT(read(late, b, sizeof b), 0);
    close(early);
    close(late);
    mpconn_async_listener_free(l);
    mpconn_opts_free(o);
    free_loop(sv.loop);
}

TEST(listener_handshake_deadlines_one_by_one)
{
    each_loop(deadlines_on);
}

/* A backlog of peers is taken a few per turn of the loop: connections
 * already open that are ready in the same turn wait for a few handshakes
 * to start, not for the whole backlog. */
static void accept_batches_on(void)
{
    server sv = {0};
    mpconn_opts *o;
    mpconn_async_listener *l = keyed_listener(&sv, &o, 60);
    enum { PEERS = 100 };
    int fds[PEERS];
    for (int i = 0; i < PEERS; i++)
        fds[i] = tcp_connect_to(mpconn_async_listener_address(l));
    size_t before = 0, most = 0;
    double t0 = now_s();
    for (int turns = 0; before < PEERS && turns < 10000 && now_s() - t0 < 10; turns++) {
        cur->wait(sv.loop, 1); /* one turn: the peers are there already */
        size_t n = mpconn_async_listener_handshakes(l);
        if (n - before > most)
            most = n - before;
        before = n;
    }
    fprintf(stderr, "at most %zu handshakes started in one turn\n", most);
    CHECK_INT(before, PEERS);
    CHECK(most <= 8);
    for (int i = 0; i < PEERS; i++)
        close(fds[i]);
    mpconn_async_listener_free(l);
    mpconn_opts_free(o);
    free_loop(sv.loop);
}

TEST(listener_takes_a_backlog_a_few_per_turn)
{
    each_loop(accept_batches_on);
}

typedef struct {
    mpconn_listener *l;
    int ok;
    volatile int done;
} blocking_server;

static void *serve_one(void *data)
{
    blocking_server *b = data;
    mpconn_conn *c;
    if (mpconn_listener_accept(b->l, &c, 10) == 0) {
        void *m;
        size_t n;
        if (mpconn_conn_recv_bytes(c, &m, &n, 0) == 0) {
            b->ok = mpconn_conn_send_bytes(c, m, n) == 0;
            free(m);
        }
        mpconn_conn_free(c);
    }
    b->done = 1;
    return NULL;
}

static void async_client_on(void)
{
    void *loop = new_loop();
    mpconn_opts *o;
    mpconn_opts_new(&o);
    mpconn_opts_set_authkey(o, "k", 1);
    blocking_server b = {0};
    char err[256];
    CHECK_INT(mpconn_listener_open(&b.l, NULL, o, err, sizeof err), 0); /* a Unix socket */
    pthread_t t;
    CHECK(pthread_create(&t, NULL, serve_one, &b) == 0);
    seen s = {0};
    mpconn_async *a;
    CHECK_INT(mpconn_async_connect(&a, mpconn_listener_address(b.l), o, &cbs, &s, adapter(),
                                   loop_arg(cur, loop), err, sizeof err),
              0);
    mpconn_opts_free(o);                             /* the connection keeps its own copy */
    CHECK_INT(mpconn_async_send(a, "queued", 6), 0); /* before the handshake is done */
    volatile int *got = &s.messages;
    CHECK(run_until(loop, got, 10));
    CHECK_INT(s.opened, 1);
    CHECK_INT(s.lastlen, 6);
    CHECK_MEM(s.last, "queued", 6);
    CHECK(run_until(loop, &s.closed, 10));
    CHECK_INT(s.reason, MPCONN_ERR_EOF);
    pthread_join(t, NULL);
    CHECK(b.ok);
    mpconn_listener_free(b.l);
    /* A connect nobody answers: refused at once, or reported on close. */
    CHECK(mpconn_async_connect(&a, "127.0.0.1:1", NULL, &cbs, &s, adapter(), loop_arg(cur, loop),
                               err, sizeof err) < 0 ||
          run_until(loop, &s.closed, 10));
    CHECK(mpconn_async_connect(&a, "localhost:80", NULL, &cbs, &s, adapter(), loop_arg(cur, loop),
                               err, sizeof err) == MPCONN_ERR_ADDR);
    free_loop(loop);
}

TEST(async_client_connects_and_authenticates)
{
    each_loop(async_client_on);
}

/* ------------------------------------------------------ descriptors */

static void fd_passing_on(void)
{
    void *loop = new_loop();
    seen s = {0};
    s.expect_after = 1;
    int peer;
    mpconn_async *a = async_pair(loop, &s, &peer);
    CHECK_INT(mpconn_async_expect_fd(a), -EINVAL); /* not without fd passing on */
    CHECK_INT(mpconn_async_set_fd_passing(a, 1), 0);
    mpconn_conn *c;
    CHECK_INT(mpconn_conn_from_fd(&c, peer, MPCONN_READABLE | MPCONN_WRITABLE, NULL), 0);
    int p[2];
    CHECK(pipe(p) == 0);
    /* A message, then a descriptor, then a message: in one stream. */
    CHECK_INT(mpconn_conn_send_bytes(c, "here", 4), 0);
    CHECK_INT(mpconn_conn_send_fd(c, p[1], 0), 0);
    CHECK_INT(mpconn_conn_send_bytes(c, "after", 5), 0);
    volatile int *two = &s.messages;
    double t0 = now_s();
    while (*two < 2 && now_s() - t0 < 10)
        cur->wait(loop, 1);
    CHECK_INT(s.messages, 2);
    CHECK_INT(s.nfds, 1);
    CHECK_MEM(s.last, "after", 5);
    CHECK(write(s.fds[0], "!", 1) == 1); /* it is the pipe's write end */
    char ch;
    CHECK(read(p[0], &ch, 1) == 1 && ch == '!');
    close(s.fds[0]);
    /* A descriptor sent unasked, with message bytes: closed and counted. */
    {
        struct iovec iov = {(void *)"\0\0\0\1x", 5};
        CHECK(testlib_send_fds(mpconn_conn_fileno(c), &iov, 1, &p[1], 1, 0) == 5);
    }
    t0 = now_s();
    while (s.messages < 3 && now_s() - t0 < 10)
        cur->wait(loop, 1);
    CHECK_INT(s.messages, 3);
    CHECK_INT(mpconn_async_dropped_fds(a), 1);
    CHECK_INT(s.nfds, 1);
    /* The other way: async send_fd, blocking recv_fd. */
    CHECK_INT(mpconn_async_send(a, "fd next", 7), 0);
    CHECK_INT(mpconn_async_send_fd(a, p[1]), 0);
    void *m;
    size_t mlen;
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &mlen, 0), 0);
    free(m);
    int got = -1;
    t0 = now_s();
    mpconn_conn_set_timeouts(c, -1, 5);
    CHECK_INT(mpconn_conn_recv_fd(c, &got, 0), 0);
    CHECK(write(got, "?", 1) == 1);
    CHECK(read(p[0], &ch, 1) == 1 && ch == '?');
    close(got);
    /* A count byte without a descriptor is a protocol error. */
    s.expect_after = 4;
    CHECK_INT(mpconn_conn_send_bytes(c, "4th", 3), 0);
    write_all(mpconn_conn_fileno(c), "\1", 1);
    CHECK(run_until(loop, &s.closed, 10));
    CHECK_INT(s.reason, MPCONN_ERR_PROTO);
    mpconn_conn_free(c);
    close(p[0]);
    close(p[1]);
    free_loop(loop);
}

TEST(descriptors_passed_both_ways)
{
    each_loop(fd_passing_on);
}

/* ------------------------------------------------ transports of a test */

/* A transport over the socket as a TLS session behaves: it reads all there
 * is at once but hands out at most `dose` bytes per read, holding the rest
 * (records decrypted ahead), which no poll() announces; with must_write
 * set, each batch it reads is handed out only once the socket has been
 * writable (a session that has to write to go on reading). */
typedef struct test_tp {
    mpci_transport base;
    uint8_t buf[65536];
    size_t have, off;
    size_t dose;
    int must_write, owe;
    int closed;
    int writes, most_iov; /* writev calls, and the most iovecs one had */
} test_tp;

static ssize_t ttp_read(mpci_transport *base, void *dst, size_t cap)
{
    test_tp *t = (test_tp *)base;
    if (t->owe) {
        t->owe = 0; /* called again once writable: go on */
    } else if (t->off == t->have) {
        ssize_t n = read(base->fd, t->buf, sizeof t->buf);
        if (n <= 0)
            return n < 0 ? -errno : 0;
        t->have = (size_t)n;
        t->off = 0;
        if (t->must_write) {
            t->owe = 1;
            return -EAGAIN;
        }
    }
    size_t k = t->have - t->off;
    if (k > cap)
        k = cap;
    if (k > t->dose)
        k = t->dose;
    memcpy(dst, t->buf + t->off, k);
    t->off += k;
    return (ssize_t)k;
}

static ssize_t ttp_writev(mpci_transport *base, const struct iovec *iov, int n)
{
    test_tp *t = (test_tp *)base;
    t->writes++;
    if (n > t->most_iov)
        t->most_iov = n;
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    ssize_t w = sendmsg(base->fd, &m, MSG_NOSIGNAL);
    return w < 0 ? -errno : w;
}

static int ttp_close(mpci_transport *base)
{
    test_tp *t = (test_tp *)base;
    t->closed++;
    return close(base->fd) < 0 ? -errno : 0;
}

static size_t ttp_pending(const mpci_transport *base)
{
    const test_tp *t = (const test_tp *)base;
    return t->owe ? 0 : t->have - t->off;
}

static short ttp_events(const mpci_transport *base, short want)
{
    const test_tp *t = (const test_tp *)base;
    return (want & POLLIN) && t->owe ? (short)((want & ~POLLIN) | POLLOUT) : want;
}

static const mpci_transport_ops ttp_ops = {.read = ttp_read,
                                           .writev = ttp_writev,
                                           .close = ttp_close,
                                           .pending = ttp_pending,
                                           .events = ttp_events};

static test_tp *ttp_new(int fd, size_t dose, int must_write)
{
    test_tp *t = calloc(1, sizeof *t);
    t->base.ops = &ttp_ops;
    t->base.fd = fd;
    t->dose = dose;
    t->must_write = must_write;
    return t;
}

/* An async connection on one end of a socketpair through a test
 * transport; the other end returned. */
static mpconn_async *async_pair_tp(void *loop, seen *s, test_tp **tp, size_t dose, int must_write,
                                   int *peer)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    mpconn_async *a;
    CHECK_INT(mpconn_async_from_fd(&a, sv[0], MPCONN_ASYNC_PLAIN, NULL, &cbs, s), 0);
    *tp = ttp_new(sv[0], dose, must_write);
    CHECK_INT(mpci_test_async_set_transport(a, &(*tp)->base), 0);
    CHECK_INT(mpconn_async_set_fd_passing(a, 1), MPCONN_ERR_NOTSUP);
    CHECK_INT(mpconn_async_attach(a, adapter(), loop_arg(cur, loop)), 0);
    CHECK_INT(mpci_test_async_set_transport(a, &(*tp)->base), -EBUSY);
    s->a = a;
    *peer = sv[1];
    return a;
}

/* Three messages in one write; the transport takes them from the socket
 * at the first read and gives out 3 bytes at a time: everything after the
 * first 3 bytes comes only through the pending pass. */
static void pending_pass_on(void)
{
    void *loop = new_loop();
    seen s = {0};
    s.echo = 1;
    int peer;
    test_tp *tp;
    mpconn_async *a = async_pair_tp(loop, &s, &tp, 3, 0, &peer);
    write_all(peer, "\0\0\0\5hello\0\0\0\0\0\0\0\3abc", 20);
    volatile int *n = &s.messages;
    double t0 = now_s();
    while (*n < 3 && now_s() - t0 < 10)
        cur->wait(loop, 1);
    CHECK_INT(s.messages, 3);
    CHECK_MEM(s.last, "abc", 3);
    CHECK_INT(ttp_pending(&tp->base), 0);
    /* The echoes went out through the transport too. */
    char back[20];
    size_t got = 0;
    fcntl(peer, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 1000 && got < sizeof back; i++) {
        ssize_t r = read(peer, back + got, sizeof back - got);
        if (r > 0)
            got += (size_t)r;
        else
            step(loop);
    }
    CHECK_INT(got, 20);
    CHECK_MEM(back, "\0\0\0\5hello\0\0\0\0\0\0\0\3abc", 20);
    mpconn_async_close(a);
    CHECK_INT(tp->closed, 1); /* closed through the transport */
    close(peer);
    free(tp);
    free_loop(loop);
}

/* ------------------------------------------------ taking a message */

static void free_buf(void *buf, void *arg)
{
    (void)arg;
    free(buf);
}

typedef struct {
    seen s;
    int taken_in_place; /* long messages taken without a copy */
} taker;

/* Echoes every message from a buffer taken out of the connection. */
static void take_and_echo(mpconn_async *a, const void *msg, size_t len, void *data)
{
    taker *t = data;
    t->s.messages++;
    t->s.bytes += len;
    void *own = mpconn_async_take_message(a, msg, len);
    CHECK(own != NULL);
    CHECK(len == 0 || memcmp(own, msg, len) == 0 || own == msg);
    t->taken_in_place += own == msg;
    CHECK_INT(mpconn_async_send_owned(a, own, len, free_buf, NULL), 0);
}

static void take_message_on(void)
{
    void *loop = new_loop();
    taker t = {0};
    mpconn_async_cbs tcbs = {
        .size = sizeof tcbs, .on_message = take_and_echo, .on_close = on_close};
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    mpconn_async *a;
    CHECK_INT(mpconn_async_from_fd(&a, sv[0], MPCONN_ASYNC_PLAIN, NULL, &tcbs, &t), 0);
    CHECK_INT(mpconn_async_attach(a, adapter(), loop_arg(cur, loop)), 0);
    peer_job j = {.fd = sv[1]};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, echo_peer, &j) == 0);
    CHECK(run_until(loop, &t.s.closed, 30));
    pthread_join(th, NULL);
    CHECK(j.ok); /* every size came back whole, short ones copied, long ones not */
    CHECK_INT(t.s.messages, 24);
    /* 64 KiB, 100000 bytes and 1 MiB, three rounds: each more than one 64 KiB
     * read with its header. */
    CHECK_INT(t.taken_in_place, 9);
    free_loop(loop);
}

static void count_release(void *buf, void *arg)
{
    free(buf);
    (*(int *)arg)++;
}

/* An empty message sent unframed writes nothing and is not queued: an
 * owned buffer comes back at once, and a queue with empty messages between
 * and behind real ones drains and lets close_when_done close. */
static void empty_unframed_on(void)
{
    void *loop = new_loop();
    seen s = {0};
    int peer, released = 0;
    mpconn_async *a = async_pair(loop, &s, &peer);
    CHECK_INT(mpconn_async_set_framing(a, MPCONN_FRAME_DELIM, "\n", 1), 0);
    CHECK_INT(mpconn_async_send_owned(a, malloc(1), 0, count_release, &released), 0);
    CHECK_INT(released, 1);
    CHECK_INT(mpconn_async_queued(a), 0);
    mpconn_async_close(a);
    close(peer);

    seen s2 = {0};
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    CHECK_INT(mpconn_async_from_fd(&a, sv[0], MPCONN_ASYNC_PLAIN, NULL, &cbs, &s2), 0);
    CHECK_INT(mpconn_async_set_framing(a, MPCONN_FRAME_RAW, NULL, 0), 0);
    CHECK_INT(mpconn_async_send(a, "x", 1), 0); /* queued until the attach */
    CHECK_INT(mpconn_async_send_owned(a, malloc(1), 0, count_release, &released), 0);
    CHECK_INT(released, 2);
    CHECK_INT(mpconn_async_send(a, "", 0), 0);
    CHECK_INT(mpconn_async_send(a, "y", 1), 0);
    CHECK_INT(mpconn_async_send(a, "", 0), 0); /* last in the queue */
    CHECK_INT(mpconn_async_queued(a), 2);
    CHECK_INT(mpconn_async_attach(a, adapter(), loop_arg(cur, loop)), 0);
    mpconn_async_close_when_done(a);
    CHECK(run_until(loop, &s2.closed, 5));
    CHECK_INT(s2.reason, 0);
    char got[3];
    CHECK(read(sv[1], got, sizeof got) == 2 && memcmp(got, "xy", 2) == 0);
    close(sv[1]);
    free_loop(loop);
}

TEST(empty_unframed_messages_are_not_queued)
{
    each_loop(empty_unframed_on);
}

TEST(take_message_echoes_long_messages_without_a_copy)
{
    each_loop(take_message_on);
}

TEST(pending_pass_delivers_what_the_transport_holds)
{
    each_loop(pending_pass_on);
}

/* A small message, and a value of a few KiB, each leave in one write of
 * one buffer: the header built in front of the payload, not beside it. */
static void one_buffer_per_send_on(void)
{
    void *loop = new_loop();
    seen s = {0};
    int peer;
    test_tp *tp;
    mpconn_async *a = async_pair_tp(loop, &s, &tp, 65536, 0, &peer);
    static char big[5000];
    memset(big, 'v', sizeof big);
    mpconn_value *v = mpconn_value_bytes(big, sizeof big);
    CHECK(v != NULL);
    int before = tp->writes;
    CHECK_INT(mpconn_async_send(a, "hello", 5), 0);
    CHECK_INT(mpconn_async_send_value(a, v), 0);
    mpconn_value_unref(v);
    CHECK_INT(tp->writes - before, 2);
    CHECK_INT(tp->most_iov, 1);
    char hello[9];
    CHECK(read(peer, hello, sizeof hello) == (ssize_t)sizeof hello);
    CHECK_MEM(hello, "\0\0\0\5hello", 9);
    mpconn_async_close(a);
    close(peer);
    free(tp);
    free_loop(loop);
}

TEST(one_buffer_per_send)
{
    each_loop(one_buffer_per_send_on);
}

/* The loop's adapter, counting the interest and pending calls it gets. */
static const mpconn_adapter *counted_inner;
static int counted_io, counted_pending;

static void counted_set_io(void *st, int events)
{
    counted_io++;
    counted_inner->set_io(st, events);
}

static void counted_set_pending(void *st, int pending)
{
    counted_pending++;
    counted_inner->set_pending(st, pending);
}

/* An echo of one message at a time, as a busy server sees it: after the
 * first event, the adapter hears nothing, since nothing changes. */
static void adapter_told_changes_only_on(void)
{
    void *loop = new_loop();
    counted_inner = adapter();
    mpconn_adapter counting = *counted_inner;
    counting.set_io = counted_set_io;
    counting.set_pending = counted_set_pending;
    counted_io = counted_pending = 0;
    seen s = {0};
    s.echo = 1;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    mpconn_async *a;
    CHECK_INT(mpconn_async_from_fd(&a, sv[0], MPCONN_ASYNC_PLAIN, NULL, &cbs, &s), 0);
    CHECK_INT(mpconn_async_attach(a, &counting, loop_arg(cur, loop)), 0);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 100; i++) {
        write_all(sv[1], "\0\0\0\2hi", 6);
        char back[6];
        size_t got = 0;
        for (int k = 0; k < 1000 && got < sizeof back; k++) {
            ssize_t r = read(sv[1], back + got, sizeof back - got);
            if (r > 0)
                got += (size_t)r;
            else
                cur->wait(loop, 1);
        }
        CHECK_INT(got, sizeof back);
    }
    CHECK_INT(s.messages, 100);
    CHECK(counted_io <= 2);
    CHECK_INT(counted_pending, 0);
    mpconn_async_close(a);
    close(sv[1]);
    free_loop(loop);
}

TEST(adapter_told_changes_only)
{
    each_loop(adapter_told_changes_only_on);
}

/* The transport has drained the socket but must see it writable before it
 * hands the bytes out: only an interest in writing, asked of the adapter
 * because the transport said so, gets the message delivered. */
static void must_write_on(void)
{
    void *loop = new_loop();
    seen s = {0};
    int peer;
    test_tp *tp;
    mpconn_async *a = async_pair_tp(loop, &s, &tp, 65536, 1, &peer);
    write_all(peer, "\0\0\0\4ping", 8);
    CHECK(run_until(loop, &s.messages, 10));
    CHECK_INT(s.messages, 1);
    CHECK_MEM(s.last, "ping", 4);
    write_all(peer, "\0\0\0\4pong", 8);
    volatile int *n = &s.messages;
    double t0 = now_s();
    while (*n < 2 && now_s() - t0 < 10)
        cur->wait(loop, 1);
    CHECK_INT(s.messages, 2);
    CHECK_MEM(s.last, "pong", 4);
    mpconn_async_close(a);
    close(peer);
    free(tp);
    free_loop(loop);
}

TEST(transport_that_writes_to_read_gets_a_writable_event)
{
    each_loop(must_write_on);
}

/* Both handshakes of a socketpair on one loop, the server's through a
 * transport that hands out one byte per read: every step of it comes
 * through the pending pass, and the first message after it too. */
static void handshake_pending_on(void)
{
    void *loop = new_loop();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_authkey(o, "secret", 6), 0);
    CHECK_INT(mpconn_opts_set_handshake_timeout(o, 10), 0);
    seen ss = {0}, cs = {0};
    mpconn_async *srv, *cli;
    CHECK_INT(mpconn_async_from_fd(&srv, sv[0], MPCONN_ASYNC_SERVER, o, &cbs, &ss), 0);
    CHECK_INT(mpconn_async_from_fd(&cli, sv[1], MPCONN_ASYNC_CLIENT, o, &cbs, &cs), 0);
    test_tp *tp = ttp_new(sv[0], 1, 0);
    CHECK_INT(mpci_test_async_set_transport(srv, &tp->base), 0);
    CHECK_INT(mpconn_async_attach(srv, adapter(), loop_arg(cur, loop)), 0);
    CHECK_INT(mpconn_async_attach(cli, adapter(), loop_arg(cur, loop)), 0);
    CHECK_INT(mpconn_async_send(cli, "first", 5), 0); /* queued behind the handshake */
    volatile int *n = &ss.messages;
    double t0 = now_s();
    while (*n < 1 && !ss.closed && !cs.closed && now_s() - t0 < 10)
        cur->wait(loop, 1);
    CHECK_INT(ss.opened + cs.opened, 2);
    CHECK_INT(ss.messages, 1);
    CHECK_MEM(ss.last, "first", 5);
    mpconn_async_close(srv);
    mpconn_async_close(cli);
    mpconn_opts_free(o);
    free(tp);
    free_loop(loop);
}

TEST(handshake_through_a_transport_that_holds_bytes)
{
    each_loop(handshake_pending_on);
}

/* ------------------------------------------------------------------ TLS */

static mpconn_opts *tls_opts(mpconn_tls_config *cfg, const char *key)
{
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_tls(o, cfg), 0);
    if (key)
        CHECK_INT(mpconn_opts_set_authkey(o, key, strlen(key)), 0);
    CHECK_INT(mpconn_opts_set_handshake_timeout(o, 10), 0);
    return o;
}

/* An async TLS listener on a new loop, and the configs of both sides. */
typedef struct {
    server sv;
    mpconn_tls_config *scfg, *ccfg;
    mpconn_opts *so;
    mpconn_async_listener *l;
    const char *address;
} tls_fixture;

static void tls_start(tls_fixture *f, const char *key, double hs_timeout)
{
    memset(f, 0, sizeof *f);
    f->sv.loop = new_loop();
    f->scfg = cert_config(MPCONN_TLS_SERVER);
    f->ccfg = cert_config(MPCONN_TLS_CLIENT);
    f->so = tls_opts(f->scfg, key);
    CHECK_INT(mpconn_opts_set_handshake_timeout(f->so, hs_timeout), 0);
    char err[256];
    CHECK_INT(mpconn_async_listener_open(&f->l, "tls:127.0.0.1:0", f->so, adapter(),
                                         loop_arg(cur, f->sv.loop), accept_cb, &f->sv, err,
                                         sizeof err),
              0);
    mpconn_async_listener_on_reject(f->l, reject_cb, &f->sv);
    f->address = mpconn_async_listener_address(f->l);
    CHECK(strncmp(f->address, "tls:127.0.0.1:", 14) == 0);
}

static void tls_end(tls_fixture *f)
{
    volatile int never = 0;
    mpconn_async_listener_free(f->l);
    run_until(f->sv.loop, &never, 0.05);
    mpconn_opts_free(f->so);
    mpconn_tls_config_free(f->scfg);
    mpconn_tls_config_free(f->ccfg);
    free_loop(f->sv.loop);
}

/* An async TLS listener on the loop, with and without an authkey: an async
 * client on the same loop and blocking clients in a thread are answered
 * through TLS; a wrong key and a client without TLS are refused. */
static void tls_on_key(const char *key)
{
    tls_fixture f;
    tls_start(&f, key, 10);
    const char *address = f.address;
    mpconn_opts *co = tls_opts(f.ccfg, key);
    char err[256];
    /* The async client, its message queued before either handshake. */
    seen cs = {0};
    mpconn_async *a;
    CHECK_INT(mpconn_async_connect(&a, address, co, &cbs, &cs, adapter(), loop_arg(cur, f.sv.loop),
                                   err, sizeof err),
              0);
    CHECK_INT(mpconn_async_send(a, "through TLS", 11), 0);
    CHECK(run_until(f.sv.loop, &cs.messages, 20));
    CHECK_INT(cs.opened, 1);
    CHECK_MEM(cs.last, "through TLS", 11);
    CHECK_INT(f.sv.accepted, 1);
    /* A big message both ways: many records, the pending pass between. */
    static char big[300000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 13);
    CHECK_INT(mpconn_async_send(a, big, sizeof big), 0);
    volatile int *two = &cs.messages;
    double t0 = now_s();
    while (*two < 2 && now_s() - t0 < 20)
        cur->wait(f.sv.loop, 1);
    CHECK_INT(cs.messages, 2);
    CHECK_INT(cs.bytes, 11 + sizeof big);
    CHECK_MEM(cs.last, big, sizeof cs.last);
    mpconn_async_close(a);
    /* Blocking clients, and a wrong key. */
    client_job good = {0}, bad = {0};
    snprintf(good.address, sizeof good.address, "%s", address);
    good.key = key;
    good.tls = f.ccfg;
    good.n = 3;
    bad = good;
    bad.key = "wrong";
    bad.n = key ? 1 : 0;
    pthread_t t1, t2;
    CHECK(pthread_create(&t1, NULL, blocking_clients, &good) == 0);
    CHECK(pthread_create(&t2, NULL, blocking_clients, &bad) == 0);
    volatile int never = 0;
    t0 = now_s();
    while (!(good.done && bad.done) && now_s() - t0 < 30)
        run_until(f.sv.loop, &never, 0.02);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK_INT(good.ok, 3);
    CHECK_INT(f.sv.accepted, 4);
    if (key) {
        CHECK_INT(bad.ok, 0);
        CHECK_INT(bad.err, MPCONN_ERR_AUTH);
        CHECK_INT(f.sv.last_reject, MPCONN_ERR_AUTH);
    }
    /* Garbage where records should come closes the connection with the
     * session's reason. */
    client_job junk = good;
    junk.n = 1;
    junk.junk = 1;
    CHECK(pthread_create(&t1, NULL, blocking_clients, &junk) == 0);
    seen *victim = &f.sv.conns[4];
    t0 = now_s();
    while (!(junk.done && victim->closed) && now_s() - t0 < 20)
        run_until(f.sv.loop, &never, 0.02);
    pthread_join(t1, NULL);
    CHECK_INT(f.sv.accepted, 5);
    CHECK_INT(victim->closed, 1);
    CHECK(victim->reason < 0 && victim->reason != MPCONN_ERR_EOF);
    CHECK(victim->why[0] && !strstr(victim->why, "nknown error"));
    /* A peer that speaks no TLS is refused, and nothing is answered in
     * clear. */
    int rejects = f.sv.rejects;
    int fd = tcp_connect_to(address);
    write_all(fd, "\0\0\0\5hello", 9);
    t0 = now_s();
    while (f.sv.rejects == rejects && now_s() - t0 < 10)
        run_until(f.sv.loop, &never, 0.02);
    CHECK_INT(f.sv.rejects, rejects + 1);
    CHECK_INT(f.sv.last_reject, MPCONN_ERR_TLS);
    char back[16];
    CHECK(read(fd, back, sizeof back) <= 0);
    close(fd);
    CHECK_INT(f.sv.accepted, 5);
    mpconn_opts_free(co);
    tls_end(&f);
}

static void tls_with_key_on(void)
{
    tls_on_key("secret");
}

static void tls_without_key_on(void)
{
    tls_on_key(NULL);
}

TEST(tls_listener_and_client_with_authkey)
{
    each_loop(tls_with_key_on);
}

TEST(tls_listener_and_client_without_authkey)
{
    each_loop(tls_without_key_on);
}

/* The TLS handshake is inside the handshake deadline: a peer that connects
 * and says nothing is dropped when it passes; a tls: address without a
 * config, or with a config of the wrong role, is refused at once. */
static void tls_deadline_on(void)
{
    tls_fixture f;
    tls_start(&f, NULL, 0.2);
    const char *address = f.address;
    char err[256];
    int fd = tcp_connect_to(address);
    volatile int never = 0;
    double t0 = now_s();
    while (f.sv.rejects == 0 && now_s() - t0 < 10)
        run_until(f.sv.loop, &never, 0.02);
    CHECK_INT(f.sv.rejects, 1);
    CHECK_INT(f.sv.last_reject, -ETIMEDOUT);
    CHECK(now_s() - t0 >= 0.15);
    CHECK_INT(mpconn_async_listener_handshakes(f.l), 0);
    close(fd);
    /* Configs that cannot work. */
    seen cs = {0};
    mpconn_async *a;
    mpconn_opts *none;
    CHECK_INT(mpconn_opts_new(&none), 0);
    CHECK_INT(mpconn_async_connect(&a, address, none, &cbs, &cs, adapter(),
                                   loop_arg(cur, f.sv.loop), err, sizeof err),
              MPCONN_ERR_TLSCONFIG);
    CHECK_INT(mpconn_async_connect(&a, address, f.so, &cbs, &cs, adapter(),
                                   loop_arg(cur, f.sv.loop), err, sizeof err),
              MPCONN_ERR_TLSCONFIG);
    mpconn_async_listener *l2;
    mpconn_opts *co = tls_opts(f.ccfg, NULL);
    CHECK_INT(mpconn_async_listener_open(&l2, "tls:127.0.0.1:0", co, adapter(),
                                         loop_arg(cur, f.sv.loop), accept_cb, &f.sv, err,
                                         sizeof err),
              MPCONN_ERR_TLSCONFIG);
    mpconn_opts_free(none);
    mpconn_opts_free(co);
    tls_end(&f);
}

TEST(tls_handshake_counts_in_the_deadline)
{
    each_loop(tls_deadline_on);
}

TESTLIB_MAIN
