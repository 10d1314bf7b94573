/* Listener and client in one process: every address family, the temporary
 * address, port 0, authentication outcomes, concurrent handshakes, socket
 * file handling and peer policy. */
#define _GNU_SOURCE
#include "base/clock.h"
#include "net/address.h"
#include "proto/auth.h"
#include "mpci_test.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static mpconn_opts *opts_key(const char *key, const char *digest)
{
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    if (key)
        CHECK_INT(mpconn_opts_set_authkey(o, key, strlen(key)), 0);
    if (digest)
        CHECK_INT(mpconn_opts_set_digest(o, digest), 0);
    return o;
}

struct client_job {
    const char *address;
    mpconn_opts *opts;
    int serial; /* the tests' client in CPython's order (mpci_test_client_serial) */
    int result;
    int recv_result;
    char errmsg[256];
    char reply[64];
    int client_nodelay; /* TCP_NODELAY on the client's socket */
};

/* Connects, sends "ping" right away, waits for one reply. */
static void *client_thread(void *arg)
{
    struct client_job *j = arg;
    mpconn_conn *c;
    j->result = j->serial
                    ? mpci_test_client_serial(&c, j->address, j->opts, j->errmsg, sizeof j->errmsg)
                    : mpconn_client(&c, j->address, j->opts, j->errmsg, sizeof j->errmsg);
    if (j->result < 0)
        return NULL;
    int on = 0;
    socklen_t len = sizeof on;
    j->client_nodelay =
        getsockopt(mpconn_conn_fileno(c), IPPROTO_TCP, TCP_NODELAY, &on, &len) == 0 && on;
    mpconn_conn_send_string(c, "ping");
    char *s;
    j->recv_result = mpconn_conn_recv_string(c, &s, 0);
    if (j->recv_result == 0) {
        snprintf(j->reply, sizeof j->reply, "%s", s);
        free(s);
    } else {
        snprintf(j->errmsg, sizeof j->errmsg, "%s", mpconn_conn_errmsg(c));
    }
    mpconn_conn_free(c);
    return NULL;
}

struct rejects {
    int count;
    int last_code;
    char last[256];
};

static void on_reject(void *data, int code, const char *message)
{
    struct rejects *r = data;
    r->count++;
    r->last_code = code;
    snprintf(r->last, sizeof r->last, "%s", message);
}

/* Serves one client that says "ping", answers "pong". */
static void serve_one(mpconn_listener *l)
{
    mpconn_conn *c;
    CHECK_INT(mpconn_listener_accept(l, &c, 10), 0);
    char *s;
    CHECK_INT(mpconn_conn_recv_string(c, &s, 0), 0);
    CHECK_STR(s, "ping");
    free(s);
    CHECK_INT(mpconn_conn_send_string(c, "pong"), 0);
    mpconn_conn_free(c);
}

static void exchange(const char *address, mpconn_opts *lo, mpconn_opts *co)
{
    mpconn_listener *l;
    char err[256];
    int r = mpconn_listener_open(&l, address, lo, err, sizeof err);
    if (r < 0)
        fprintf(stderr, "listener_open(%s): %s\n", address ? address : "(null)", err);
    CHECK_INT(r, 0);
    struct client_job j = {.address = mpconn_listener_address(l), .opts = co};
    pthread_t t;
    pthread_create(&t, NULL, client_thread, &j);
    serve_one(l);
    pthread_join(t, NULL);
    if (j.result < 0)
        fprintf(stderr, "client: %s\n", j.errmsg);
    CHECK_INT(j.result, 0);
    CHECK_INT(j.recv_result, 0);
    CHECK_STR(j.reply, "pong");
    mpconn_listener_free(l);
}

TEST(unix_path)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/mpconn-test-%d.sock", (int)getpid());
    exchange(path, NULL, NULL);
    CHECK(access(path, F_OK) != 0); /* removed on close */
}

TEST(temporary_address)
{
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, NULL, NULL, NULL, 0), 0);
    char path[256];
    snprintf(path, sizeof path, "%s", mpconn_listener_address(l));
    CHECK(strncmp(path, "/", 1) == 0);
    struct stat st;
    CHECK_INT(stat(path, &st), 0);
    CHECK(S_ISSOCK(st.st_mode));
    mpconn_listener_free(l);
    CHECK(access(path, F_OK) != 0);
    *strrchr(path, '/') = 0;
    CHECK(access(path, F_OK) != 0); /* and its directory */
    exchange(NULL, NULL, NULL);
}

TEST(tcp_port_zero)
{
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, "127.0.0.1:0", NULL, NULL, 0), 0);
    const char *a = mpconn_listener_address(l);
    CHECK(strncmp(a, "127.0.0.1:", 10) == 0);
    CHECK(atoi(a + 10) > 0);
    mpconn_listener_free(l);
    exchange("127.0.0.1:0", NULL, NULL);
}

static int nodelay(int fd)
{
    int on = 0;
    socklen_t len = sizeof on;
    CHECK_INT(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    return on != 0;
}

/* TCP without Nagle's algorithm on both ends: messages go out whole, and
 * with it the client's first message after the handshake, written right
 * behind its WELCOME, would wait for the listener's delayed ACK (40 ms on
 * Linux). The accepted socket has it from the listening one. */
TEST(tcp_no_delay_both_ends)
{
    mpconn_listener *l;
    char err[256];
    mpconn_opts *o = opts_key("nodelay key", NULL);
    CHECK_INT(mpconn_listener_open(&l, "127.0.0.1:0", o, err, sizeof err), 0);
    CHECK(nodelay(mpconn_listener_fileno(l)));
    struct client_job j = {.address = mpconn_listener_address(l), .opts = o};
    pthread_t t;
    pthread_create(&t, NULL, client_thread, &j);
    mpconn_conn *c;
    CHECK_INT(mpconn_listener_accept(l, &c, 10), 0);
    CHECK(nodelay(mpconn_conn_fileno(c)));
    char *msg;
    CHECK_INT(mpconn_conn_recv_string(c, &msg, 0), 0);
    free(msg);
    CHECK_INT(mpconn_conn_send_string(c, "pong"), 0);
    mpconn_conn_free(c);
    pthread_join(t, NULL);
    CHECK_INT(j.result, 0);
    CHECK(j.client_nodelay);
    mpconn_listener_free(l);
    mpconn_opts_free(o);
}

/* A port whose last connection the server closed first (so it lingers in
 * TIME_WAIT on the server's side) binds again at once with address reuse
 * (the default) and not without it. */
static void leave_time_wait(char *address, size_t cap)
{
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, "127.0.0.1:0", NULL, NULL, 0), 0);
    int one = 0;
    socklen_t ol = sizeof one;
    CHECK_INT(getsockopt(mpconn_listener_fileno(l), SOL_SOCKET, SO_REUSEADDR, &one, &ol), 0);
    CHECK(one != 0);
    snprintf(address, cap, "%s", mpconn_listener_address(l));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    in.sin_port = htons((uint16_t)atoi(address + 10));
    CHECK(connect(fd, (struct sockaddr *)&in, sizeof in) == 0);
    mpconn_conn *c;
    CHECK_INT(mpconn_listener_accept(l, &c, 10), 0);
    mpconn_conn_free(c); /* the server's side closes first */
    char b;
    CHECK(read(fd, &b, 1) == 0);
    close(fd);
    mpconn_listener_free(l);
}

TEST(tcp_reuse_address)
{
    char address[64];
    leave_time_wait(address, sizeof address);
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_reuse_address(o), 1);
    CHECK_INT(mpconn_opts_set_reuse_address(o, 0), 0);
    CHECK_INT(mpconn_opts_reuse_address(o), 0);
    mpconn_listener *l;
    char err[256];
    CHECK_INT(mpconn_listener_open(&l, address, o, err, sizeof err), MPCONN_ERR_ADDRINUSE);
    CHECK(strstr(err, address) != NULL);
    CHECK_INT(mpconn_opts_set_reuse_address(o, 1), 0);
    CHECK_INT(mpconn_listener_open(&l, address, o, err, sizeof err), 0);
    mpconn_listener_free(l);
    mpconn_opts_free(o);
}

TEST(tcp_ipv6)
{
    exchange("[::1]:0", NULL, NULL);
}

TEST(tcp_prefix_and_localhost_name)
{
    exchange("tcp:localhost:0", NULL, NULL);
}

TEST(abstract_namespace)
{
    char name[64];
    snprintf(name, sizeof name, "@mpconn-test-%d", (int)getpid());
    exchange(name, NULL, NULL);
}

TEST(auth_every_digest)
{
    const char *digests[] = {"sha256", "md5", "sha384", "sha3_256", "sha3_384", "legacy"};
    for (size_t i = 0; i < sizeof digests / sizeof *digests; i++) {
        mpconn_opts *lo = opts_key("secret password", digests[i]);
        mpconn_opts *co = opts_key("secret password", "sha384");
        exchange("127.0.0.1:0", lo, co);
        mpconn_opts_free(lo);
        mpconn_opts_free(co);
    }
}

/* The client job j run in a thread against l, served once. */
static void serve_job(mpconn_listener *l, struct client_job *j)
{
    j->address = mpconn_listener_address(l);
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, client_thread, j), 0);
    serve_one(l);
    pthread_join(t, NULL);
}

/* A client thread with opts against l, served once; the client's result. */
static int serve_client(mpconn_listener *l, mpconn_opts *o)
{
    struct client_job j = {.opts = o};
    serve_job(l, &j);
    return j.result;
}

/* The benchmark's client in CPython's order (challenge after #WELCOME#)
 * authenticates against the listener as the default client does. */
TEST(serial_client_hook_authenticates)
{
    const char *digests[] = {"sha256", "legacy"};
    for (size_t i = 0; i < sizeof digests / sizeof *digests; i++) {
        mpconn_opts *o = opts_key("secret password", digests[i]);
        mpconn_listener *l;
        CHECK_INT(mpconn_listener_open(&l, "127.0.0.1:0", o, NULL, 0), 0);
        struct client_job j = {.opts = o, .serial = 1};
        serve_job(l, &j);
        CHECK_INT(j.result, 0);
        CHECK_STR(j.reply, "pong");
        mpconn_listener_free(l);
        mpconn_opts_free(o);
    }
}

/* One opts serves many clients, and keeps keyed HMAC state for its key:
 * a new key must replace that state, and a listener made from the opts
 * keeps working after the opts are changed or freed. */
TEST(opts_reused_across_key_changes)
{
    mpconn_opts *o = opts_key("first", NULL);
    mpconn_listener *l1, *l2;
    CHECK_INT(mpconn_listener_open(&l1, "127.0.0.1:0", o, NULL, 0), 0);
    CHECK_INT(serve_client(l1, o), 0);
    CHECK_INT(serve_client(l1, o), 0);
    CHECK_INT(mpconn_opts_set_authkey(o, "second", 6), 0);
    CHECK_INT(mpconn_listener_open(&l2, "127.0.0.1:0", o, NULL, 0), 0);
    CHECK_INT(serve_client(l2, o), 0);
    /* the first listener still wants the first key, even with o gone */
    mpconn_opts *again = opts_key("first", NULL);
    mpconn_opts_free(o);
    CHECK_INT(serve_client(l1, again), 0);
    mpconn_opts_free(again);
    mpconn_listener_free(l1);
    mpconn_listener_free(l2);
}

TEST(auth_empty_key)
{
    mpconn_opts *lo = opts_key("", NULL), *co = opts_key("", NULL);
    exchange(NULL, lo, co);
    mpconn_opts_free(lo);
    mpconn_opts_free(co);
}

/* Opens a keyed listener with a reject counter. */
static mpconn_listener *keyed_listener(const char *key, struct rejects *rj, double hs_timeout)
{
    mpconn_opts *o = opts_key(key, NULL);
    if (hs_timeout > 0)
        mpconn_opts_set_handshake_timeout(o, hs_timeout);
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, "127.0.0.1:0", o, NULL, 0), 0);
    mpconn_opts_free(o);
    mpconn_listener_on_reject(l, on_reject, rj);
    return l;
}

TEST(wrong_key_rejected_listener_keeps_serving)
{
    struct rejects rj = {0};
    mpconn_listener *l = keyed_listener("right", &rj, 0);
    mpconn_opts *bad = opts_key("wrong", NULL), *good = opts_key("right", NULL);
    struct client_job jb = {.address = mpconn_listener_address(l), .opts = bad};
    pthread_t t;
    pthread_create(&t, NULL, client_thread, &jb);
    mpconn_conn *c;
    CHECK_INT(mpconn_listener_accept(l, &c, 1), -ETIMEDOUT);
    pthread_join(t, NULL);
    CHECK_INT(jb.result, MPCONN_ERR_AUTH);
    CHECK(strstr(jb.errmsg, "rejected") != NULL);
    CHECK_INT(rj.count, 1);
    CHECK_INT(rj.last_code, MPCONN_ERR_AUTH);
    CHECK(strstr(rj.last, "127.0.0.1") != NULL);
    struct client_job jg = {.address = mpconn_listener_address(l), .opts = good};
    pthread_create(&t, NULL, client_thread, &jg);
    serve_one(l);
    pthread_join(t, NULL);
    CHECK_INT(jg.result, 0);
    CHECK_STR(jg.reply, "pong");
    mpconn_opts_free(bad);
    mpconn_opts_free(good);
    mpconn_listener_free(l);
}

TEST(client_without_key_fails_promptly)
{
    struct rejects rj = {0};
    mpconn_listener *l = keyed_listener("right", &rj, 0);
    struct client_job j = {.address = mpconn_listener_address(l), .opts = NULL};
    pthread_t t;
    pthread_create(&t, NULL, client_thread, &j);
    mpconn_conn *c;
    double t0 = mpci_now();
    CHECK_INT(mpconn_listener_accept(l, &c, 5), -ETIMEDOUT);
    pthread_join(t, NULL);
    CHECK_INT(j.result, 0);
    CHECK_INT(j.recv_result, MPCONN_ERR_NOKEY);
    CHECK(strstr(j.errmsg, "authkey") != NULL);
    CHECK_INT(rj.count, 1); /* the listener saw it fail long before its timeout */
    CHECK(mpci_now() - t0 < 6);
    mpconn_listener_free(l);
}

TEST(listener_without_key_client_with_key_times_out)
{
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, "127.0.0.1:0", NULL, NULL, 0), 0);
    mpconn_opts *co = opts_key("k", NULL);
    mpconn_opts_set_handshake_timeout(co, 0.3);
    mpconn_conn *c;
    char err[256];
    double t0 = mpci_now();
    CHECK_INT(mpconn_client(&c, mpconn_listener_address(l), co, err, sizeof err), -ETIMEDOUT);
    double took = mpci_now() - t0;
    CHECK(took >= 0.29 && took < 3);
    CHECK(strstr(err, "no authkey") != NULL);
    mpconn_opts_free(co);
    mpconn_listener_free(l);
}

static void on_signal(int sig)
{
    (void)sig;
}

struct nagger {
    pthread_t target;
    volatile int stop;
};

/* Signals the target every 20 ms for at most 3 s. */
static void *nag(void *arg)
{
    struct nagger *n = arg;
    for (int i = 0; i < 150 && !n->stop; i++) {
        pthread_kill(n->target, SIGUSR1);
        usleep(20000);
    }
    return NULL;
}

/* The client reads blocking under SO_RCVTIMEO, which a signal interrupts:
 * the handshake's deadline must hold however often that happens. */
TEST(client_timeout_holds_under_signals)
{
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART */
    sigaction(SIGUSR1, &sa, NULL);
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, "127.0.0.1:0", NULL, NULL, 0), 0);
    mpconn_opts *co = opts_key("k", NULL);
    mpconn_opts_set_handshake_timeout(co, 0.5);
    struct nagger n = {.target = pthread_self()};
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, nag, &n), 0);
    mpconn_conn *c;
    char err[256];
    double t0 = mpci_now();
    int r = mpconn_client(&c, mpconn_listener_address(l), co, err, sizeof err);
    double took = mpci_now() - t0;
    n.stop = 1;
    pthread_join(t, NULL);
    CHECK_INT(r, -ETIMEDOUT);
    CHECK(took >= 0.49 && took < 2.5); /* not restarted by each signal */
    mpconn_opts_free(co);
    mpconn_listener_free(l);
}

static void *serve_late(void *l)
{
    mpconn_conn *c;
    CHECK_INT(mpconn_listener_accept(l, &c, 10), 0);
    usleep(600 * 1000); /* twice the client's handshake timeout */
    CHECK_INT(mpconn_conn_send_string(c, "late"), 0);
    mpconn_conn_free(c);
    return NULL;
}

static long rcvtimeo_us(int fd)
{
    struct timeval tv = {1, 1};
    socklen_t tl = sizeof tv;
    CHECK_INT(getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &tl), 0);
    return (long)tv.tv_sec * 1000000 + (long)tv.tv_usec;
}

/* The client's handshake bounds its reads with SO_RCVTIMEO and leaves it
 * for the connection to clear: a blocking read that outlasts it still gets
 * its message, and a detached fd comes back without it. */
TEST(client_handshake_bound_does_not_outlive_it)
{
    mpconn_opts *o = opts_key("k", NULL);
    mpconn_opts_set_handshake_timeout(o, 0.3);
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, "127.0.0.1:0", o, NULL, 0), 0);
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, serve_late, l), 0);
    mpconn_conn *c;
    char err[256];
    CHECK_INT(mpconn_client(&c, mpconn_listener_address(l), o, err, sizeof err), 0);
    char *s;
    CHECK_INT(mpconn_conn_recv_string(c, &s, 0), 0);
    CHECK_STR(s, "late");
    free(s);
    CHECK_INT(rcvtimeo_us(mpconn_conn_fileno(c)), 0);
    pthread_join(t, NULL);
    mpconn_conn_free(c);

    CHECK_INT(pthread_create(&t, NULL, serve_late, l), 0);
    CHECK_INT(mpconn_client(&c, mpconn_listener_address(l), o, err, sizeof err), 0);
    CHECK(rcvtimeo_us(mpconn_conn_fileno(c)) > 0); /* still set, to be cleared lazily */
    int fd = mpconn_conn_detach(c);
    CHECK(fd >= 0);
    CHECK_INT(rcvtimeo_us(fd), 0);
    pthread_join(t, NULL);
    close(fd);
    mpconn_opts_free(o);
    mpconn_listener_free(l);
}

/* A plain TCP socket connected to l, speaking no protocol. */
static int raw_connect(mpconn_listener *l)
{
    mpci_addr a;
    CHECK_INT(mpci_addr_parse(&a, mpconn_listener_address(l), NULL, 0), 0);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(s >= 0);
    CHECK_INT(connect(s, (struct sockaddr *)&a.sa, a.salen), 0);
    return s;
}

TEST(silent_peer_does_not_block_others)
{
    struct rejects rj = {0};
    mpconn_listener *l = keyed_listener("k", &rj, 3);
    int silent = raw_connect(l);
    mpconn_opts *co = opts_key("k", NULL);
    struct client_job j = {.address = mpconn_listener_address(l), .opts = co};
    pthread_t t;
    double t0 = mpci_now();
    pthread_create(&t, NULL, client_thread, &j);
    serve_one(l);
    CHECK(mpci_now() - t0 < 2); /* well before the silent peer's 3 s */
    pthread_join(t, NULL);
    CHECK_INT(j.result, 0);
    /* the silent one is dropped at its deadline and reported */
    mpconn_conn *c;
    CHECK_INT(mpconn_listener_accept(l, &c, 4), -ETIMEDOUT);
    CHECK_INT(rj.count, 1);
    CHECK_INT(rj.last_code, -ETIMEDOUT);
    close(silent);
    mpconn_opts_free(co);
    mpconn_listener_free(l);
}

/* More pending peers than accept's poll array holds on the stack. */
TEST(many_silent_peers_then_a_real_one)
{
    struct rejects rj = {0};
    mpconn_listener *l = keyed_listener("k", &rj, 1);
    enum { SILENT = 20 };
    int silent[SILENT];
    mpconn_conn *c;
    for (int i = 0; i < SILENT; i++)
        silent[i] = raw_connect(l);
    /* Take all of them in (one accept per wake-up), none answers. */
    for (int i = 0; i < SILENT && rj.count == 0; i++)
        CHECK_INT(mpconn_listener_accept(l, &c, 0.02), -ETIMEDOUT);
    mpconn_opts *co = opts_key("k", NULL);
    CHECK_INT(serve_client(l, co), 0);
    /* the silent ones are dropped at their deadline, each reported */
    CHECK_INT(mpconn_listener_accept(l, &c, 2), -ETIMEDOUT);
    CHECK_INT(rj.count, SILENT);
    for (int i = 0; i < SILENT; i++)
        close(silent[i]);
    mpconn_opts_free(co);
    mpconn_listener_free(l);
}

/* At the cap the oldest handshakes make room: ten silent peers against a
 * cap of four lock nobody out, and each one dropped is reported. */
TEST(handshake_cap_drops_the_oldest)
{
    struct rejects rj = {0};
    mpconn_listener *l = keyed_listener("k", &rj, 30);
    CHECK_INT(mpconn_listener_set_max_handshakes(l, 0), -EINVAL);
    CHECK_INT(mpconn_listener_set_max_handshakes(l, 4), 0);
    enum { SILENT = 10 };
    int silent[SILENT];
    mpconn_conn *c;
    for (int i = 0; i < SILENT; i++) {
        silent[i] = raw_connect(l);
        /* Each one taken in (one accept per wake-up); none answers. */
        CHECK_INT(mpconn_listener_accept(l, &c, 0.05), -ETIMEDOUT);
    }
    CHECK_INT(rj.count, SILENT - 4);
    CHECK_INT(rj.last_code, -ETIMEDOUT);
    CHECK(strstr(rj.last, "dropped for a newer peer") != NULL);
    /* The oldest went first: its peer sees its connection closed. */
    char b[64];
    struct timeval tv = {.tv_sec = 5};
    setsockopt(silent[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = read(silent[0], b, sizeof b); /* the challenge, then the end */
    CHECK(n > 0);
    while (n > 0)
        n = read(silent[0], b, sizeof b);
    CHECK_INT(n, 0);
    /* A real client gets through at once, long before any 30 s deadline. */
    mpconn_opts *co = opts_key("k", NULL);
    double t0 = mpci_now();
    CHECK_INT(serve_client(l, co), 0);
    CHECK(mpci_now() - t0 < 5);
    CHECK_INT(rj.count, SILENT - 4 + 1); /* it too pushed the oldest out */
    for (int i = 0; i < SILENT; i++)
        close(silent[i]);
    mpconn_opts_free(co);
    mpconn_listener_free(l);
}

/* Serves one ping/pong connection if accept hands one out. */
static void serve_ping(mpconn_listener *l, double timeout)
{
    mpconn_conn *c;
    if (mpconn_listener_accept(l, &c, timeout) < 0)
        return;
    char *s;
    if (mpconn_conn_recv_string(c, &s, 0) == 0) {
        mpconn_conn_send_string(c, "pong");
        free(s);
    }
    mpconn_conn_free(c);
}

/* A listener in a child allowed few descriptors, serving ping/pong until
 * its pipe closes. hoard: it takes every descriptor left for itself, so
 * that accept finds none and no handshake to drop, and waits with
 * mpconn_wait; a byte on the pipe gives 8 back. */
_Noreturn static void few_fds_server(const char *path, int ready, int stop, int hoard)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 32;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        _exit(5);
    mpconn_opts *o = opts_key("k", NULL);
    mpconn_opts_set_handshake_timeout(o, 60);
    mpconn_listener *l;
    if (mpconn_listener_open(&l, path, o, NULL, 0) < 0)
        _exit(6);
    int held[32], nheld = 0;
    while (hoard && nheld < 32 && (held[nheld] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        nheld++;
    if (write(ready, "r", 1) != 1)
        _exit(7);
    fcntl(stop, F_SETFL, O_NONBLOCK);
    char ch;
    /* Bounded in time rather than turns: a listener that spins shows as
     * CPU, not as an early exit. */
    double t0 = mpci_now();
    for (long i = 0; i < 100000000 && mpci_now() - t0 < 30; i++) {
        if (!hoard) {
            if (read(stop, &ch, 1) >= 0 || errno != EAGAIN)
                break;
            serve_ping(l, 0.1);
            continue;
        }
        mpconn_waitable w[2] = {{.listener = l}, {.fd = stop}};
        if (mpconn_wait(w, 2, 0.1) < 0)
            _exit(8);
        if (w[1].ready) {
            if (read(stop, &ch, 1) != 1)
                break;
            for (int k = 0; k < 8 && nheld > 0; k++)
                close(held[--nheld]);
        }
        if (w[0].ready)
            serve_ping(l, 0);
    }
    mpconn_listener_free(l);
    mpconn_opts_free(o);
    _exit(0);
}

typedef struct few_fds {
    pid_t pid;
    char dir[32], path[64];
    int ready, stop;
} few_fds;

static void few_fds_start(few_fds *f, int hoard)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/mpconn-lst-XXXXXX");
    CHECK(mkdtemp(f->dir) != NULL);
    snprintf(f->path, sizeof f->path, "%s/few.sock", f->dir);
    int ready[2], stop[2];
    CHECK(pipe(ready) == 0 && pipe(stop) == 0);
    fflush(stderr);
    f->pid = fork();
    CHECK(f->pid >= 0);
    if (f->pid == 0) {
        close(ready[0]);
        close(stop[1]);
        few_fds_server(f->path, ready[1], stop[0], hoard);
    }
    close(ready[1]);
    close(stop[0]);
    f->ready = ready[0];
    f->stop = stop[1];
    char ch;
    CHECK(read(f->ready, &ch, 1) == 1);
}

static void few_fds_stop(few_fds *f)
{
    close(f->stop);
    int status;
    CHECK(waitpid(f->pid, &status, 0) == f->pid);
    close(f->ready);
    unlink(f->path);
    rmdir(f->dir);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int unix_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    CHECK_INT(connect(fd, (struct sockaddr *)&un, sizeof un), 0);
    return fd;
}

/* A real client against the child: 0, or its failure; *took its time. */
static int few_fds_client(few_fds *f, double *took)
{
    mpconn_opts *co = opts_key("k", NULL);
    mpconn_opts_set_handshake_timeout(co, 10);
    struct client_job j = {.address = f->path, .opts = co};
    double t0 = mpci_now();
    client_thread(&j);
    *took = mpci_now() - t0;
    mpconn_opts_free(co);
    if (j.result < 0)
        fprintf(stderr, "client: %s\n", j.errmsg);
    else if (strcmp(j.reply, "pong") != 0)
        return MPCONN_ERR_PROTO;
    return j.result;
}

/* Out of descriptors with silent handshakes holding them: the listener
 * neither spins nor locks a real client out; the oldest makes room. */
TEST(out_of_descriptors_no_spin_no_lockout)
{
    few_fds f;
    few_fds_start(&f, 0);
    enum { SILENT = 60 }; /* more than the child's 32 descriptors */
    int silent[SILENT];
    for (int i = 0; i < SILENT; i++)
        silent[i] = unix_connect(f.path);
    usleep(300000); /* the child takes in what it can */
    double cpu0 = testlib_proc_cpu(f.pid);
    usleep(1000000);
    double cpu = testlib_proc_cpu(f.pid) - cpu0;
    double took;
    int r = few_fds_client(&f, &took);
    few_fds_stop(&f);
    for (int i = 0; i < SILENT; i++)
        close(silent[i]);
    fprintf(stderr, "%.2f s CPU in 1 s at the descriptor limit; a real client in %.2f s\n", cpu,
            took);
    CHECK(cpu < 0.3);
    CHECK_INT(r, 0);
    CHECK(took < 8);
}

/* Out of descriptors with no handshake to drop: accepting pauses, and a
 * loop on mpconn_wait does not spin on the backlog meanwhile; once
 * descriptors are free, the waiting peers and a real client get in. */
TEST(out_of_descriptors_nothing_to_drop_pauses)
{
    few_fds f;
    few_fds_start(&f, 1);
    int waiting[3];
    for (int i = 0; i < 3; i++)
        waiting[i] = unix_connect(f.path);
    usleep(300000);
    double cpu0 = testlib_proc_cpu(f.pid);
    usleep(1000000);
    double cpu = testlib_proc_cpu(f.pid) - cpu0;
    CHECK(write(f.stop, "f", 1) == 1); /* 8 descriptors free again */
    double took;
    int r = few_fds_client(&f, &took);
    few_fds_stop(&f);
    for (int i = 0; i < 3; i++)
        close(waiting[i]);
    fprintf(stderr, "%.2f s CPU in 1 s with no descriptor left; a real client in %.2f s\n", cpu,
            took);
    CHECK(cpu < 0.3);
    CHECK_INT(r, 0);
    CHECK(took < 8);
}

TEST(garbage_answer_rejected)
{
    struct rejects rj = {0};
    mpconn_listener *l = keyed_listener("k", &rj, 0);
    int s = raw_connect(l);
    CHECK_INT(write(s, "\0\0\0\5hello", 9), 9);
    mpconn_conn *c;
    CHECK_INT(mpconn_listener_accept(l, &c, 1), -ETIMEDOUT);
    CHECK_INT(rj.count, 1);
    CHECK(rj.last_code == MPCONN_ERR_NOKEY || rj.last_code == MPCONN_ERR_AUTH);
    /* and an oversized answer */
    int s2 = raw_connect(l);
    CHECK_INT(write(s2, "\0\0\x10\0", 4), 4);
    CHECK_INT(mpconn_listener_accept(l, &c, 1), -ETIMEDOUT);
    CHECK_INT(rj.count, 2);
    CHECK(strstr(rj.last, "4096") != NULL);
    close(s);
    close(s2);
    mpconn_listener_free(l);
}

/* Connects a raw socket to l, lets l accept it (the challenge leaves at
 * once; the answer never comes) and returns the challenge's nonce. */
static void raw_challenge(mpconn_listener *l, uint8_t nonce[MPCI_NONCE_LEN])
{
    int s = raw_connect(l);
    mpconn_conn *c;
    CHECK_INT(mpconn_listener_accept(l, &c, 0.1), -ETIMEDOUT);
    /* header, "#CHALLENGE#{sha256}", nonce */
    uint8_t msg[4 + 11 + 8 + MPCI_NONCE_LEN];
    size_t got = 0;
    while (got < sizeof msg) {
        ssize_t n = read(s, msg + got, sizeof msg - got);
        CHECK(n > 0);
        got += (size_t)n;
    }
    CHECK_MEM(msg + 4, "#CHALLENGE#{sha256}", 19);
    memcpy(nonce, msg + 4 + 19, MPCI_NONCE_LEN);
    close(s);
}

/* Forked workers sharing one listener must not issue the same challenge:
 * an answer seen by one could be replayed to the other. */
TEST(forked_listener_draws_fresh_nonces)
{
    struct rejects rj = {0};
    mpconn_listener *l = keyed_listener("k", &rj, 5);
    uint8_t first[MPCI_NONCE_LEN], in_child[MPCI_NONCE_LEN], in_parent[MPCI_NONCE_LEN];
    raw_challenge(l, first); /* the parent has drawn nonces before the fork */
    int fds[2];
    CHECK_INT(pipe(fds), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        raw_challenge(l, in_child);
        _exit(write(fds[1], in_child, sizeof in_child) == sizeof in_child ? 0 : 1);
    }
    int status;
    CHECK_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_INT(read(fds[0], in_child, sizeof in_child), sizeof in_child);
    raw_challenge(l, in_parent);
    CHECK(memcmp(first, in_parent, MPCI_NONCE_LEN) != 0);
    CHECK(memcmp(in_child, in_parent, MPCI_NONCE_LEN) != 0);
    close(fds[0]);
    close(fds[1]);
    mpconn_listener_free(l);
}

TEST(live_listener_not_stolen_stale_replaced)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/mpconn-test-live-%d.sock", (int)getpid());
    mpconn_listener *l1, *l2;
    CHECK_INT(mpconn_listener_open(&l1, path, NULL, NULL, 0), 0);
    char err[256];
    CHECK_INT(mpconn_listener_open(&l2, path, NULL, err, sizeof err), MPCONN_ERR_ADDRINUSE);
    CHECK(strstr(err, path) != NULL);
    /* telling live from stale did not knock on the live listener's door */
    mpconn_conn *c;
    CHECK_INT(mpconn_listener_accept(l1, &c, 0.1), -ETIMEDOUT);
    mpconn_listener_free(l1);
    /* a stale socket file: bound, never listening, left behind */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    CHECK_INT(bind(s, (struct sockaddr *)&un, sizeof un), 0);
    close(s);
    CHECK_INT(access(path, F_OK), 0);
    exchange(path, NULL, NULL);
    /* a regular file is never removed */
    FILE *f = fopen(path, "w");
    fclose(f);
    CHECK(mpconn_listener_open(&l2, path, NULL, err, sizeof err) < 0);
    CHECK_INT(access(path, F_OK), 0);
    unlink(path);
}

TEST(socket_file_mode)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/mpconn-test-mode-%d.sock", (int)getpid());
    mpconn_opts *o = opts_key(NULL, NULL);
    CHECK_INT(mpconn_opts_set_mode(o, 0600), 0);
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, path, o, NULL, 0), 0);
    struct stat st;
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    mpconn_listener_free(l);
    mpconn_opts_free(o);
}

/* A socket of type bound (not listening) at path; the caller closes it. */
static int bound_socket_at(const char *path, int type)
{
    int s = socket(AF_UNIX, type, 0);
    CHECK(s >= 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    CHECK_INT(bind(s, (struct sockaddr *)&un, sizeof un), 0);
    return s;
}

/* Opening at path fails with code and a message containing what; whatever
 * is at path stays, with the same inode. */
static void refused_at(const char *path, int code, const char *what)
{
    struct stat before, after;
    CHECK_INT(lstat(path, &before), 0);
    mpconn_listener *l;
    char err[256];
    CHECK_INT(mpconn_listener_open(&l, path, NULL, err, sizeof err), code);
    if (!strstr(err, what))
        fprintf(stderr, "message: %s\n", err);
    CHECK(strstr(err, what) != NULL);
    CHECK(strstr(err, path) != NULL);
    CHECK_INT(lstat(path, &after), 0);
    CHECK_INT(after.st_ino, before.st_ino);
}

/* Only a path no socket of any kind is bound to is stale: a datagram
 * socket, or a stream socket bound but not listening yet, keeps it. */
TEST(bound_sockets_of_any_kind_not_taken)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/mpconn-test-bound-%d.sock", (int)getpid());
    int d = bound_socket_at(path, SOCK_DGRAM);
    refused_at(path, MPCONN_ERR_ADDRINUSE, "a datagram socket is bound");
    /* and it still receives at its name */
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    CHECK_INT(sendto(s, "x", 1, 0, (struct sockaddr *)&un, sizeof un), 1);
    close(s);
    close(d);
    unlink(path);
    int st = bound_socket_at(path, SOCK_STREAM);
    refused_at(path, MPCONN_ERR_ADDRINUSE, "not listening");
    CHECK_INT(listen(st, 1), 0); /* the owner could go on to listen */
    refused_at(path, MPCONN_ERR_ADDRINUSE, "a listening stream socket");
    close(st);
    /* closed: now stale, and taken */
    exchange(path, NULL, NULL);
    CHECK(access(path, F_OK) != 0);
}

/* A live socket that takes race_path between the library's check and its
 * removal of the stale file: the first unlink() or rename() of race_path
 * finds it there. Other calls pass through unchanged. */
static const char *race_path;
static int race_fd = -1;

static void race_in(const char *p)
{
    if (!race_path || strcmp(p, race_path) != 0)
        return;
    race_path = NULL;
    CHECK_INT(syscall(SYS_unlinkat, AT_FDCWD, p, 0), 0);
    race_fd = bound_socket_at(p, SOCK_STREAM);
    CHECK_INT(listen(race_fd, 4), 0);
}

int unlink(const char *p)
{
    race_in(p);
    return (int)syscall(SYS_unlinkat, AT_FDCWD, p, 0);
}

int rename(const char *from, const char *to)
{
    race_in(from);
    return (int)syscall(SYS_renameat, AT_FDCWD, from, AT_FDCWD, to);
}

/* The stale file found is removed only if it is still the one found: a
 * socket bound there meanwhile keeps the path, and nothing is left aside. */
TEST(stale_check_not_fooled_by_a_race)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/mpconn-test-race-%d.sock", (int)getpid());
    close(bound_socket_at(path, SOCK_STREAM)); /* stale */
    race_path = path;
    mpconn_listener *l;
    char err[256];
    CHECK_INT(mpconn_listener_open(&l, path, NULL, err, sizeof err), MPCONN_ERR_ADDRINUSE);
    CHECK(race_fd >= 0);
    CHECK(strstr(err, "a listening stream socket") != NULL);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    CHECK_INT(connect(s, (struct sockaddr *)&un, sizeof un), 0);
    close(s);
    DIR *d = opendir("/tmp");
    CHECK(d != NULL);
    struct dirent *e;
    size_t plen = strlen(path + 5);
    while ((e = readdir(d)))
        CHECK(strncmp(e->d_name, path + 5, plen) != 0 || e->d_name[plen] == 0);
    closedir(d);
    close(race_fd);
    unlink(path);
}

/* What is not a socket is said for what it is, never removed or followed. */
TEST(non_socket_paths_named_and_left_alone)
{
    char path[64], target[80];
    snprintf(path, sizeof path, "/tmp/mpconn-test-other-%d.sock", (int)getpid());
    snprintf(target, sizeof target, "%s.target", path);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fclose(f);
    refused_at(path, -EEXIST, "a regular file is there, not a socket");
    unlink(path);
    CHECK_INT(mkdir(path, 0700), 0);
    refused_at(path, -EISDIR, "a directory is there");
    rmdir(path);
    CHECK_INT(symlink(target, path), 0);
    refused_at(path, -EEXIST, "dangling");
    /* a symlink to a stale socket: neither followed nor the target taken */
    close(bound_socket_at(target, SOCK_STREAM));
    refused_at(path, -EEXIST, "a symbolic link is there");
    struct stat st;
    CHECK_INT(lstat(target, &st), 0);
    CHECK(S_ISSOCK(st.st_mode));
    unlink(path);
    unlink(target);
}

/* Another uid (nobody) tries to connect to path for as long as the parent
 * lets it (at most 20 s); its exit status is how often it got in. */
static pid_t spin_connects_as_nobody(const char *path)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid > 0)
        return pid;
    if (setgid(65534) < 0 || setuid(65534) < 0)
        _exit(100);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    int got_in = 0;
    double end = mpci_now() + 20;
    while (mpci_now() < end && got_in < 99) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(s, (struct sockaddr *)&un, sizeof un) == 0)
            got_in++;
        close(s);
    }
    _exit(got_in);
}

/* The library's bind(), watched: right after the real call, the mode of
 * the file at watched_path. Every call passes through unchanged. */
static const char *watched_path;
static int mode_after_bind = -1;

int bind(int fd, __CONST_SOCKADDR_ARG sa, socklen_t len)
{
    int r = (int)syscall(SYS_bind, fd, sa.__sockaddr__, len);
    int saved = errno;
    struct stat st;
    if (r == 0 && watched_path && lstat(watched_path, &st) == 0)
        mode_after_bind = (int)(st.st_mode & 07777);
    errno = saved;
    return r;
}

/* --mode 600 under umask 000: the file is never reachable by another uid,
 * not even between bind() and chmod(), for any start. */
TEST(socket_file_mode_never_wider)
{
    if (getuid() != 0) {
        fprintf(stderr, "skipped: needs root to switch to another uid\n");
        return;
    }
    umask(0);
    char dir[] = "/tmp/mpconn-test-mode-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK_INT(chmod(dir, 0755), 0);
    char path[64];
    snprintf(path, sizeof path, "%s/s", dir);
    mpconn_opts *o = opts_key(NULL, NULL);
    CHECK_INT(mpconn_opts_set_mode(o, 0600), 0);
    /* the moment it exists, the file has the mode */
    watched_path = path;
    mpconn_listener *first;
    CHECK_INT(mpconn_listener_open(&first, path, o, NULL, 0), 0);
    watched_path = NULL;
    CHECK_INT(mode_after_bind, 0600);
    mpconn_listener_free(first);
    pid_t spinner = spin_connects_as_nobody(path);
    double end = mpci_now() + 10;
    for (int i = 0; i < 400 && mpci_now() < end; i++) {
        mpconn_listener *l;
        CHECK_INT(mpconn_listener_open(&l, path, o, NULL, 0), 0);
        struct stat st;
        CHECK_INT(lstat(path, &st), 0);
        CHECK(S_ISSOCK(st.st_mode));
        CHECK_INT(st.st_mode & 07777, 0600);
        mpconn_conn *c;
        if (mpconn_listener_accept(l, &c, 0) == 0) {
            uid_t uid;
            mpconn_listener_last_accepted(l, NULL, &uid, NULL);
            CHECK_INT(uid, 65534); /* the only one connecting: it must not */
            mpconn_conn_free(c);
        }
        mpconn_listener_free(l);
        CHECK(access(path, F_OK) != 0);
    }
    kill(spinner, SIGKILL);
    int status;
    CHECK_INT(waitpid(spinner, &status, 0), spinner);
    /* killed while trying: it never got in, else it would have exited */
    CHECK(WIFSIGNALED(status));
    mpconn_opts_free(o);
    CHECK_INT(rmdir(dir), 0);
    umask(022);
}

/* The mode asked for, exactly, whatever the umask took away. */
TEST(socket_file_mode_exact_under_umask)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/mpconn-test-umask-%d.sock", (int)getpid());
    mpconn_opts *o = opts_key(NULL, NULL);
    CHECK_INT(mpconn_opts_set_mode(o, 0666), 0);
    umask(077);
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, path, o, NULL, 0), 0);
    umask(022);
    struct stat st;
    CHECK_INT(lstat(path, &st), 0);
    CHECK_INT(st.st_mode & 07777, 0666);
    CHECK_STR(mpconn_listener_address(l), path);
    mpconn_conn *c;
    CHECK_INT(mpconn_client(&c, path, NULL, NULL, 0), 0);
    mpconn_conn *s;
    CHECK_INT(mpconn_listener_accept(l, &s, 5), 0);
    mpconn_conn_free(s);
    mpconn_conn_free(c);
    mpconn_listener_free(l);
    CHECK(access(path, F_OK) != 0);
    mpconn_opts_free(o);
}

TEST(peer_credentials_and_uid_policy)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/mpconn-test-cred-%d.sock", (int)getpid());
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, path, NULL, NULL, 0), 0);
    struct client_job j = {.address = path};
    pthread_t t;
    pthread_create(&t, NULL, client_thread, &j);
    serve_one(l);
    pthread_join(t, NULL);
    pid_t pid;
    uid_t uid;
    gid_t gid;
    mpconn_listener_last_accepted(l, &pid, &uid, &gid);
    CHECK_INT(pid, getpid());
    CHECK_INT(uid, getuid());
    CHECK_INT(gid, getgid());
    mpconn_listener_free(l);

    mpconn_opts *o = opts_key(NULL, NULL);
    uid_t other = getuid() + 1;
    CHECK_INT(mpconn_opts_set_allowed_uids(o, &other, 1), 0);
    struct rejects rj = {0};
    CHECK_INT(mpconn_listener_open(&l, path, o, NULL, 0), 0);
    mpconn_listener_on_reject(l, on_reject, &rj);
    struct client_job j2 = {.address = path};
    pthread_create(&t, NULL, client_thread, &j2);
    mpconn_conn *c;
    CHECK_INT(mpconn_listener_accept(l, &c, 1), -ETIMEDOUT);
    pthread_join(t, NULL);
    CHECK_INT(rj.count, 1);
    CHECK_INT(rj.last_code, MPCONN_ERR_PEER);
    char who[128];
    snprintf(who, sizeof who, "refused peer pid %ld uid %ld on %s:", (long)getpid(), (long)getuid(),
             path);
    CHECK(strstr(rj.last, who) == rj.last);
    CHECK(j2.recv_result < 0);
    mpconn_listener_free(l);
    mpconn_opts_free(o);
}

/* A Unix client socket bound to name (NULL: unbound) and connected to l. */
static int unix_client_named(mpconn_listener *l, const char *name)
{
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(s >= 0);
    if (name) {
        mpci_addr a;
        CHECK_INT(mpci_addr_parse(&a, name, NULL, 0), 0);
        CHECK_INT(bind(s, (struct sockaddr *)&a.sa, a.salen), 0);
    }
    mpci_addr a;
    CHECK_INT(mpci_addr_parse(&a, mpconn_listener_address(l), NULL, 0), 0);
    CHECK_INT(connect(s, (struct sockaddr *)&a.sa, a.salen), 0);
    return s;
}

/* last_accepted is the peer's address, as CPython's: its bound name, or ""
 * for an unbound Unix peer; credentials only through their outputs. */
TEST(last_accepted_is_the_peer_address)
{
    char path[64], named[64], abstract[64];
    snprintf(path, sizeof path, "/tmp/mpconn-test-last-%d.sock", (int)getpid());
    snprintf(named, sizeof named, "/tmp/mpconn-test-last-%d.client", (int)getpid());
    snprintf(abstract, sizeof abstract, "@mpconn-test-last-%d", (int)getpid());
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, path, NULL, NULL, 0), 0);
    CHECK_STR(mpconn_listener_last_accepted(l, NULL, NULL, NULL), "");
    const char *names[] = {NULL, named, abstract};
    for (int i = 0; i < 3; i++) {
        int s = unix_client_named(l, names[i]);
        mpconn_conn *c;
        CHECK_INT(mpconn_listener_accept(l, &c, 5), 0);
        pid_t pid;
        uid_t uid;
        CHECK_STR(mpconn_listener_last_accepted(l, &pid, &uid, NULL), names[i] ? names[i] : "");
        CHECK_INT(pid, getpid());
        CHECK_INT(uid, getuid());
        mpconn_conn_free(c);
        close(s);
    }
    unlink(named);
    mpconn_listener_free(l);

    CHECK_INT(mpconn_listener_open(&l, "127.0.0.1:0", NULL, NULL, 0), 0);
    int s = raw_connect(l);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    CHECK_INT(getsockname(s, (struct sockaddr *)&ss, &sl), 0);
    char mine[64];
    mpci_addr_format((struct sockaddr *)&ss, sl, mine, sizeof mine);
    mpconn_conn *c;
    CHECK_INT(mpconn_listener_accept(l, &c, 5), 0);
    pid_t pid;
    CHECK_STR(mpconn_listener_last_accepted(l, &pid, NULL, NULL), mine);
    CHECK_INT(pid, -1);
    mpconn_conn_free(c);
    close(s);
    mpconn_listener_free(l);
}

TEST(accept_timeout)
{
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, "127.0.0.1:0", NULL, NULL, 0), 0);
    mpconn_conn *c;
    double t0 = mpci_now();
    CHECK_INT(mpconn_listener_accept(l, &c, 0.1), -ETIMEDOUT);
    CHECK(mpci_now() - t0 >= 0.09);
    CHECK_INT(mpconn_listener_accept(l, &c, 0), -ETIMEDOUT);
    mpconn_listener_free(l);
}

TEST(bad_addresses)
{
    mpconn_listener *l;
    char err[256];
    CHECK_INT(mpconn_listener_open(&l, "\\\\.\\pipe\\foo", NULL, err, sizeof err),
              MPCONN_ERR_NOTSUP);
    CHECK(strstr(err, "not available") != NULL);
    CHECK_INT(mpconn_listener_open(&l, "127.0.0.1:99999", NULL, err, sizeof err), MPCONN_ERR_ADDR);
    mpconn_conn *c;
    CHECK_INT(mpconn_client(&c, "/nonexistent/dir/sock", NULL, err, sizeof err), -ENOENT);
    CHECK(strstr(err, "/nonexistent/dir/sock") != NULL);
    CHECK_INT(mpconn_client(&c, "", NULL, err, sizeof err), MPCONN_ERR_ADDR);
}

TEST(connect_refused_names_address)
{
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, "127.0.0.1:0", NULL, NULL, 0), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "%s", mpconn_listener_address(l));
    mpconn_listener_free(l);
    mpconn_conn *c;
    char err[256];
    CHECK_INT(mpconn_client(&c, addr, NULL, err, sizeof err), -ECONNREFUSED);
    CHECK(strstr(err, addr) != NULL);
}

TEST(wait_on_listener)
{
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, NULL, NULL, NULL, 0), 0);
    mpconn_waitable w = {.listener = l, .fd = -1};
    CHECK_INT(mpconn_wait(&w, 1, 0.01), 0);
    mpconn_conn *c;
    CHECK_INT(mpconn_client(&c, mpconn_listener_address(l), NULL, NULL, 0), 0);
    CHECK_INT(mpconn_wait(&w, 1, 5), 1);
    mpconn_conn *s;
    CHECK_INT(mpconn_listener_accept(l, &s, 5), 0);
    mpconn_conn_free(s);
    mpconn_conn_free(c);
    mpconn_listener_free(l);
}

TEST(wait_sees_handshakes_under_way)
{
    struct rejects rj = {0};
    mpconn_listener *l = keyed_listener("k", &rj, 0);
    mpconn_opts *co = opts_key("k", NULL);
    struct client_job j = {.address = mpconn_listener_address(l), .opts = co};
    pthread_t t;
    pthread_create(&t, NULL, client_thread, &j);
    mpconn_waitable w = {.listener = l, .fd = -1};
    mpconn_conn *c = NULL;
    double t0 = mpci_now();
    /* An event loop: wait, then accept without blocking. Each wait must
     * wake for the handshake's own traffic, not sleep out its timeout. */
    for (int round = 0; round < 50 && !c; round++) {
        CHECK_INT(mpconn_wait(&w, 1, 5), 1);
        int r = mpconn_listener_accept(l, &c, 0);
        CHECK(r == 0 || r == -ETIMEDOUT);
    }
    CHECK(c != NULL);
    CHECK(mpci_now() - t0 < 3);
    char *s;
    CHECK_INT(mpconn_conn_recv_string(c, &s, 0), 0);
    CHECK_STR(s, "ping");
    free(s);
    CHECK_INT(mpconn_conn_send_string(c, "pong"), 0);
    pthread_join(t, NULL);
    CHECK_INT(j.result, 0);
    mpconn_conn_free(c);
    mpconn_opts_free(co);
    mpconn_listener_free(l);
}

TEST(connect_timeout_on_full_backlog)
{
    /* A listener that never accepts, its backlog filled: a Unix connect()
     * would wait for room, and the connect timeout bounds that wait. */
    char path[64];
    snprintf(path, sizeof path, "/tmp/mpconn-test-full-%d.sock", (int)getpid());
    mpconn_opts *o = opts_key(NULL, NULL);
    CHECK_INT(mpconn_opts_set_backlog(o, 1), 0);
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, path, o, NULL, 0), 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    int fillers[64], n = 0;
    while (n < 64) {
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (connect(s, (struct sockaddr *)&un, sizeof un) < 0) {
            CHECK_INT(errno, EAGAIN);
            close(s);
            break;
        }
        fillers[n++] = s;
    }
    CHECK(n < 64);
    CHECK_INT(mpconn_opts_set_connect_timeout(o, 0.2), 0);
    mpconn_conn *c;
    char err[256];
    double t0 = mpci_now();
    CHECK_INT(mpconn_client(&c, path, o, err, sizeof err), -ETIMEDOUT);
    CHECK(mpci_now() - t0 >= 0.15);
    CHECK(strstr(err, path) != NULL);
    for (int i = 0; i < n; i++)
        close(fillers[i]);
    mpconn_listener_free(l);
    mpconn_opts_free(o);
}

TEST(connect_timeout_tcp)
{
    /* A TCP listener whose accept queue is full drops new SYNs: the
     * connect is left waiting, and the timeout ends it. */
    mpconn_opts *o = opts_key(NULL, NULL);
    CHECK_INT(mpconn_opts_set_backlog(o, 0), 0);
    mpconn_listener *l;
    CHECK_INT(mpconn_listener_open(&l, "127.0.0.1:0", o, NULL, 0), 0);
    mpci_addr a;
    CHECK_INT(mpci_addr_parse(&a, mpconn_listener_address(l), NULL, 0), 0);
    int fillers[8];
    for (int i = 0; i < 8; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&a.sa, a.salen);
    }
    CHECK_INT(mpconn_opts_set_connect_timeout(o, 0.3), 0);
    mpconn_conn *c;
    char err[256];
    double t0 = mpci_now();
    CHECK_INT(mpconn_client(&c, mpconn_listener_address(l), o, err, sizeof err), -ETIMEDOUT);
    CHECK(mpci_now() - t0 >= 0.25);
    CHECK(strstr(err, "timed out") != NULL);
    for (int i = 0; i < 8; i++)
        close(fillers[i]);
    mpconn_listener_free(l);
    mpconn_opts_free(o);
}

TESTLIB_MAIN
