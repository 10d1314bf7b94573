/* TLS on blocking connections: socketpairs wrapped on both sides, listener
 * and client over tls: addresses with and without authkey, every
 * verification failure by code and message, plaintext and TLS peers that
 * meet (never a hang), truncation, unwrap, STARTTLS, plaintext held in the
 * engine seen by mpconn_wait, and silent peers that delay nobody. */
#define _GNU_SOURCE
#include "base/clock.h"
#include "tls/tls_transport.h"
#include "testlib.h"
#include "tls_certs.h"

#include <mpconn/async.h>
#include <mpconn/loop.h>
#include <mpconn/server.h>
#include <mpconn/tls.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

static int contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle)) {
        fprintf(stderr, "\"%s\" does not contain \"%s\"\n", hay ? hay : "(null)", needle);
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- configs */

static mpconn_tls_config *server_cfg(const char *name, int verify_client)
{
    mpconn_tls_config *cfg;
    char pem[64], key[64];
    snprintf(pem, sizeof pem, "%s.pem", name);
    snprintf(key, sizeof key, "%s.key", name);
    CHECK_INT(mpconn_tls_config_new(&cfg, MPCONN_TLS_SERVER), 0);
    CHECK_INT(mpconn_tls_config_set_cert_file(cfg, cert(pem), cert(key)), 0);
    if (verify_client) {
        CHECK_INT(mpconn_tls_config_set_ca_file(cfg, cert("ca.pem")), 0);
        CHECK_INT(mpconn_tls_config_set_verify_client(cfg, verify_client), 0);
    }
    return cfg;
}

/* A client trusting the test CA; with_cert: it presents the client
 * certificate. */
static mpconn_tls_config *client_cfg(int with_cert)
{
    mpconn_tls_config *cfg;
    CHECK_INT(mpconn_tls_config_new(&cfg, MPCONN_TLS_CLIENT), 0);
    CHECK_INT(mpconn_tls_config_set_ca_file(cfg, cert("ca.pem")), 0);
    if (with_cert)
        CHECK_INT(mpconn_tls_config_set_cert_file(cfg, cert("client.pem"), cert("client.key")), 0);
    return cfg;
}

static mpconn_opts *opts_with(mpconn_tls_config *cfg, const char *key, double hs_timeout)
{
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    if (cfg)
        CHECK_INT(mpconn_opts_set_tls(o, cfg), 0);
    if (key)
        CHECK_INT(mpconn_opts_set_authkey(o, key, strlen(key)), 0);
    if (hs_timeout >= 0)
        CHECK_INT(mpconn_opts_set_handshake_timeout(o, hs_timeout), 0);
    return o;
}

/* ---------------------------------------------------- socketpairs wrapped */

struct wrap_job {
    mpconn_conn *c;
    mpconn_tls_config *cfg;
    const char *name;
    int result;
};

static void *start_tls_thread(void *arg)
{
    struct wrap_job *j = arg;
    j->result = mpconn_conn_start_tls(j->c, j->cfg, j->name);
    return NULL;
}

static void *unwrap_thread(void *arg)
{
    struct wrap_job *j = arg;
    j->result = mpconn_conn_unwrap_tls(j->c);
    return NULL;
}

static void plain_pair(mpconn_conn **a, mpconn_conn **b)
{
    int sv[2];
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    CHECK_INT(mpconn_conn_from_fd(a, sv[0], MPCONN_READABLE | MPCONN_WRITABLE, NULL), 0);
    CHECK_INT(mpconn_conn_from_fd(b, sv[1], MPCONN_READABLE | MPCONN_WRITABLE, NULL), 0);
}

/* Wraps *a as the client (name "localhost") and *b as the server, the
 * server's handshake in a thread. */
static void wrap_pair(mpconn_conn *a, mpconn_conn *b, mpconn_tls_config *cc, mpconn_tls_config *sc)
{
    struct wrap_job s = {b, sc, NULL, -1};
    pthread_t t;
    pthread_create(&t, NULL, start_tls_thread, &s);
    int r = mpconn_conn_start_tls(a, cc, "localhost");
    if (r != 0)
        fprintf(stderr, "client: %s\n", mpconn_conn_errmsg(a));
    pthread_join(t, NULL);
    if (s.result != 0)
        fprintf(stderr, "server: %s\n", mpconn_conn_errmsg(b));
    CHECK_INT(r, 0);
    CHECK_INT(s.result, 0);
}

static void tls_pair(mpconn_conn **a, mpconn_conn **b, mpconn_tls_config **cc,
                     mpconn_tls_config **sc)
{
    *cc = client_cfg(0);
    *sc = server_cfg("server", 0);
    plain_pair(a, b);
    wrap_pair(*a, *b, *cc, *sc);
}

static void send_recv(mpconn_conn *from, mpconn_conn *to, const char *text)
{
    CHECK_INT(mpconn_conn_send_string(from, text), 0);
    char *s = NULL;
    int r = mpconn_conn_recv_string(to, &s, 0);
    if (r != 0)
        fprintf(stderr, "recv: %s\n", mpconn_conn_errmsg(to));
    CHECK_INT(r, 0);
    CHECK_STR(s, text);
    free(s);
}

static void free_all(mpconn_conn *a, mpconn_conn *b, mpconn_tls_config *cc, mpconn_tls_config *sc)
{
    mpconn_conn_free(a);
    mpconn_conn_free(b);
    mpconn_tls_config_free(cc);
    mpconn_tls_config_free(sc);
}

TEST(socketpair_wrapped_both_sides)
{
    mpconn_conn *a, *b;
    mpconn_tls_config *cc, *sc;
    tls_pair(&a, &b, &cc, &sc);
    send_recv(a, b, "hello over TLS");
    send_recv(b, a, "and back");
    mpconn_tls *ct = mpconn_conn_tls(a), *st = mpconn_conn_tls(b);
    CHECK(ct && st);
    CHECK(contains(mpconn_tls_version(ct), "TLSv1."));
    int bits = 0;
    CHECK(mpconn_tls_cipher(ct, &bits) != NULL);
    CHECK(bits >= 128);
    CHECK_INT(mpconn_tls_peer_verified(ct), 1);
    CHECK_INT(mpconn_tls_peer_verified(st), 0); /* asked for no client certificate */
    CHECK(contains(mpconn_tls_peer_subject(ct), "CN=localhost"));
    CHECK_STR(mpconn_tls_peer_san(ct, 0), "DNS:localhost");
    CHECK_STR(mpconn_tls_server_name(st), "localhost");

    /* descriptors cannot go through TLS, even on a Unix socket */
    CHECK_INT(mpconn_conn_send_fd(a, 0, 0), MPCONN_ERR_NOTSUP);
    CHECK(contains(mpconn_conn_errmsg(a), "cannot go through TLS"));
    int fd;
    CHECK_INT(mpconn_conn_recv_fd(b, &fd, 0), MPCONN_ERR_NOTSUP);
    free_all(a, b, cc, sc);
}

struct big_send {
    mpconn_conn *c;
    const unsigned char *p;
    size_t n;
    int r;
};

static void *big_sender(void *arg)
{
    struct big_send *j = arg;
    j->r = mpconn_conn_send_bytes(j->c, j->p, j->n);
    return NULL;
}

static void big_message(double timeout)
{
    mpconn_conn *a, *b;
    mpconn_tls_config *cc, *sc;
    tls_pair(&a, &b, &cc, &sc);
    if (timeout >= 0) {
        /* non-blocking fds under poll() */
        CHECK_INT(mpconn_conn_set_timeouts(a, timeout, timeout), 0);
        CHECK_INT(mpconn_conn_set_timeouts(b, timeout, timeout), 0);
    }
    size_t n = 3 * 1024 * 1024 + 7;
    unsigned char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (unsigned char)(i * 31 + 7);
    struct big_send j = {a, big, n, -1};
    pthread_t t;
    pthread_create(&t, NULL, big_sender, &j);
    void *got;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(b, &got, &len, 0), 0);
    pthread_join(t, NULL);
    CHECK_INT(j.r, 0);
    CHECK_INT(len, n);
    CHECK_MEM(got, big, n);
    free(got);
    free(big);
    send_recv(a, b, "after the big one");
    free_all(a, b, cc, sc);
}

TEST(large_message_blocking)
{
    big_message(-1);
}

TEST(large_message_nonblocking)
{
    big_message(30);
}

/* ------------------------------------------------------ listener, client */

/* A listener in a thread that accepts one connection (or times out) and
 * echoes one message on it, its rejects counted; the client's settings. */
struct fixture {
    mpconn_tls_config *sc, *cc;
    mpconn_opts *so, *co;
    mpconn_listener *l;
    double timeout;
    int result;
    mpconn_conn *c; /* what the listener accepted */
    int rejects;
    int reject_code;
    char reject_msg[512];
    pthread_t t;
};

static void on_reject(void *data, int code, const char *msg)
{
    struct fixture *f = data;
    if (f->rejects++ == 0) {
        f->reject_code = code;
        snprintf(f->reject_msg, sizeof f->reject_msg, "%s", msg);
    }
}

static void *accept_thread(void *arg)
{
    struct fixture *f = arg;
    f->result = mpconn_listener_accept(f->l, &f->c, f->timeout);
    if (f->result == 0) {
        char *s;
        if (mpconn_conn_recv_string(f->c, &s, 0) == 0) {
            mpconn_conn_send_string(f->c, s);
            free(s);
        }
    }
    return NULL;
}

/* Opens address with so (taken over, as sc and cc) and starts accepting
 * for accept_timeout seconds. */
static void fx_start(struct fixture *f, const char *address, mpconn_tls_config *sc, mpconn_opts *so,
                     mpconn_tls_config *cc, mpconn_opts *co, double accept_timeout)
{
    memset(f, 0, sizeof *f);
    f->sc = sc;
    f->cc = cc;
    f->so = so;
    f->co = co;
    char err[256];
    int r = mpconn_listener_open(&f->l, address, so, err, sizeof err);
    if (r != 0)
        fprintf(stderr, "listener: %s\n", err);
    CHECK_INT(r, 0);
    f->timeout = accept_timeout;
    f->result = 1;
    mpconn_listener_on_reject(f->l, on_reject, f);
    pthread_create(&f->t, NULL, accept_thread, f);
}

/* A TLS listener and client, both with key (may be NULL). */
static void fx_tls(struct fixture *f, const char *server_cert, int verify_client,
                   mpconn_tls_config *cc, const char *key, double hs_timeout)
{
    mpconn_tls_config *sc = server_cfg(server_cert, verify_client);
    fx_start(f, "tls:127.0.0.1:0", sc, opts_with(sc, key, hs_timeout), cc,
             opts_with(cc, key, hs_timeout), 20);
}

static void fx_end(struct fixture *f)
{
    pthread_join(f->t, NULL);
    mpconn_conn_free(f->c);
    mpconn_listener_free(f->l);
    mpconn_opts_free(f->so);
    mpconn_opts_free(f->co);
    mpconn_tls_config_free(f->sc);
    mpconn_tls_config_free(f->cc);
}

/* The listener's port, for addresses of another form. */
static int port_of(const struct fixture *f)
{
    const char *a = mpconn_listener_address(f->l);
    return atoi(strrchr(a, ':') + 1);
}

/* address, or the listener's own when NULL: "host" becomes
 * tls:host:PORT. */
static int fx_client(struct fixture *f, const char *host, mpconn_conn **c, char *err, size_t cap)
{
    char address[96];
    if (host)
        snprintf(address, sizeof address, "%s:%d", host, port_of(f));
    else
        snprintf(address, sizeof address, "%s", mpconn_listener_address(f->l));
    return mpconn_client(c, address, f->co, err, cap);
}

/* One message to the echoing listener and its answer. */
static void echo(mpconn_conn *c, const char *text)
{
    CHECK_INT(mpconn_conn_send_string(c, text), 0);
    char *s;
    CHECK_INT(mpconn_conn_recv_string(c, &s, 0), 0);
    CHECK_STR(s, text);
    free(s);
}

static void wait_reject(struct fixture *f)
{
    double until = mpci_now() + 10;
    while (f->rejects == 0 && mpci_now() < until)
        usleep(5000);
    CHECK(f->rejects >= 1);
}

TEST(listener_client_without_authkey)
{
    struct fixture f;
    fx_tls(&f, "server", 0, client_cfg(0), NULL, -1);
    CHECK(strncmp(mpconn_listener_address(f.l), "tls:127.0.0.1:", 14) == 0);
    mpconn_conn *c;
    char err[256];
    CHECK_INT(fx_client(&f, NULL, &c, err, sizeof err), 0);
    echo(c, "ping");
    mpconn_conn_free(c);
    fx_end(&f);
    CHECK_INT(f.result, 0);
    CHECK_INT(f.rejects, 0);
}

TEST(listener_client_with_authkey)
{
    struct fixture f;
    fx_tls(&f, "server", 0, client_cfg(0), "secret key", -1);
    mpconn_conn *c;
    char err[256];
    CHECK_INT(fx_client(&f, NULL, &c, err, sizeof err), 0);
    CHECK_INT(mpconn_tls_peer_verified(mpconn_conn_tls(c)), 1);
    echo(c, "ping");
    mpconn_conn_free(c);
    fx_end(&f);
    CHECK_INT(f.result, 0);
    CHECK_INT(f.rejects, 0);
}

TEST(authkey_inside_tls_refuses_a_wrong_key)
{
    /* the certificate alone does not let a client in */
    mpconn_tls_config *sc = server_cfg("server", 0), *cc = client_cfg(0);
    struct fixture f;
    fx_start(&f, "tls:127.0.0.1:0", sc, opts_with(sc, "right", 5), cc, opts_with(cc, "wrong", 5),
             3);
    mpconn_conn *c;
    char err[256];
    CHECK_INT(fx_client(&f, NULL, &c, err, sizeof err), MPCONN_ERR_AUTH);
    CHECK(contains(err, "authentication with tls:127.0.0.1:"));
    wait_reject(&f);
    CHECK_INT(f.reject_code, MPCONN_ERR_AUTH);
    CHECK(contains(f.reject_msg, "authentication of peer 127.0.0.1:"));
    fx_end(&f);
}

TEST(keyless_client_meets_the_challenge_inside_tls)
{
    mpconn_tls_config *sc = server_cfg("server", 0), *cc = client_cfg(0);
    struct fixture f;
    fx_start(&f, "tls:127.0.0.1:0", sc, opts_with(sc, "key", 5), cc, opts_with(cc, NULL, 5), 3);
    mpconn_conn *c;
    char err[256];
    CHECK_INT(fx_client(&f, NULL, &c, err, sizeof err), 0);
    mpconn_conn_send_string(c, "hello");
    char *s;
    CHECK_INT(mpconn_conn_recv_string(c, &s, 0), MPCONN_ERR_NOKEY);
    CHECK(contains(mpconn_conn_errmsg(c), "this side has no authkey"));
    mpconn_conn_free(c);
    wait_reject(&f);
    fx_end(&f);
}

TEST(next_client_resumes_the_session)
{
    mpconn_tls_config *sc = server_cfg("server", 0), *cc = client_cfg(0);
    for (int round = 0; round < 2; round++) {
        struct fixture f;
        /* each fixture drops one reference of each config */
        fx_start(&f, "tls:127.0.0.1:0", mpconn_tls_config_ref(sc), opts_with(sc, "k", 5),
                 mpconn_tls_config_ref(cc), opts_with(cc, "k", 5), 5);
        mpconn_conn *c;
        char err[256];
        CHECK_INT(fx_client(&f, NULL, &c, err, sizeof err), 0);
        echo(c, "again");
        CHECK_INT(mpconn_tls_session_reused(mpconn_conn_tls(c)), round);
        mpconn_conn_free(c);
        fx_end(&f);
    }
    mpconn_tls_config_free(sc);
    mpconn_tls_config_free(cc);
}

TEST(listener_client_ipv6)
{
    mpconn_tls_config *sc = server_cfg("server", 0), *cc = client_cfg(0);
    mpconn_opts *so = opts_with(sc, "k", -1);
    mpconn_listener *l;
    char err[256];
    if (mpconn_listener_open(&l, "tls:[::1]:0", so, err, sizeof err) != 0) {
        fprintf(stderr, "skipped: no IPv6 loopback (%s)\n", err);
        exit(77);
    }
    mpconn_listener_free(l);
    struct fixture f;
    fx_start(&f, "tls:[::1]:0", sc, so, cc, opts_with(cc, "k", -1), 20);
    CHECK(strncmp(mpconn_listener_address(f.l), "tls:[::1]:", 10) == 0);
    mpconn_conn *c;
    CHECK_INT(fx_client(&f, NULL, &c, err, sizeof err), 0);
    echo(c, "v6");
    mpconn_conn_free(c);
    fx_end(&f);
}

TEST(tls_address_needs_a_config_of_the_right_role)
{
    mpconn_tls_config *sc = server_cfg("server", 0), *cc = client_cfg(0);
    mpconn_opts *none = opts_with(NULL, NULL, -1), *so = opts_with(sc, NULL, -1),
                *co = opts_with(cc, NULL, -1);
    mpconn_listener *l;
    mpconn_conn *c;
    char err[256];
    CHECK_INT(mpconn_listener_open(&l, "tls:127.0.0.1:0", none, err, sizeof err),
              MPCONN_ERR_TLSCONFIG);
    CHECK(contains(err, "tls: address needs a TLS configuration"));
    CHECK_INT(mpconn_client(&c, "tls:127.0.0.1:1", none, err, sizeof err), MPCONN_ERR_TLSCONFIG);
    CHECK(contains(err, "tls: address needs a TLS configuration"));
    CHECK_INT(mpconn_listener_open(&l, "tls:127.0.0.1:0", co, err, sizeof err),
              MPCONN_ERR_TLSCONFIG);
    CHECK(contains(err, "server TLS configuration"));
    CHECK_INT(mpconn_client(&c, "tls:127.0.0.1:1", so, err, sizeof err), MPCONN_ERR_TLSCONFIG);
    CHECK(contains(err, "client TLS configuration"));
    /* a server config that cannot work says so at open */
    mpconn_tls_config *bare;
    CHECK_INT(mpconn_tls_config_new(&bare, MPCONN_TLS_SERVER), 0);
    mpconn_opts *bo = opts_with(bare, NULL, -1);
    CHECK_INT(mpconn_listener_open(&l, "tls:127.0.0.1:0", bo, err, sizeof err),
              MPCONN_ERR_TLSCONFIG);
    CHECK(contains(err, "certificate"));
    /* opts hold a reference: the caller's may go first */
    mpconn_tls_config_free(sc);
    CHECK_INT(mpconn_listener_open(&l, "tls:127.0.0.1:0", so, err, sizeof err), 0);
    mpconn_listener_free(l);
    mpconn_opts_free(none);
    mpconn_opts_free(so);
    mpconn_opts_free(co);
    mpconn_opts_free(bo);
    mpconn_tls_config_free(cc);
    mpconn_tls_config_free(bare);
}

/* A client (cc) that must fail against a server with server_cert
 * (verify_client its mode) at tls:host:PORT: its code and message, and the
 * listener's reject; the listener goes on serving. */
static void client_refused(const char *server_cert, int verify_client, const char *host,
                           mpconn_tls_config *cc, int code, const char *client_says,
                           const char *listener_says)
{
    struct fixture f;
    fx_tls(&f, server_cert, verify_client, cc, NULL, 5);
    f.timeout = 10;
    char err[512];
    mpconn_conn *c = NULL;
    int r = fx_client(&f, host, &c, err, sizeof err);
    if (r == 0) {
        /* TLS 1.3: the client's handshake is over before the server
         * refuses it; the refusal comes with the first read. */
        mpconn_conn_send_string(c, "hello");
        char *s;
        r = mpconn_conn_recv_string(c, &s, 0);
        CHECK(r != 0);
        snprintf(err, sizeof err, "%s", mpconn_conn_errmsg(c));
        mpconn_conn_free(c);
    }
    CHECK_INT(r, code);
    CHECK(contains(err, client_says));
    wait_reject(&f);
    if (listener_says)
        CHECK(contains(f.reject_msg, listener_says));
    if (!verify_client) {
        /* and a client that trusts what it gets is served */
        mpconn_tls_config *loose;
        CHECK_INT(mpconn_tls_config_new(&loose, MPCONN_TLS_CLIENT), 0);
        CHECK_INT(mpconn_tls_config_set_insecure_no_verify(loose, 1), 0);
        mpconn_opts *lo = opts_with(loose, NULL, 5);
        CHECK_INT(mpconn_client(&c, mpconn_listener_address(f.l), lo, err, sizeof err), 0);
        CHECK_INT(mpconn_tls_peer_verified(mpconn_conn_tls(c)), 0);
        echo(c, "x");
        mpconn_conn_free(c);
        mpconn_opts_free(lo);
        mpconn_tls_config_free(loose);
    }
    fx_end(&f);
}

TEST(verify_self_signed)
{
    client_refused("self", 0, "tls:127.0.0.1", client_cfg(0), MPCONN_ERR_TLSVERIFY,
                   "certificate verify failed: self-signed certificate", "TLS with peer");
}

TEST(verify_untrusted_issuer)
{
    client_refused("untrusted", 0, "tls:127.0.0.1", client_cfg(0), MPCONN_ERR_TLSVERIFY,
                   "unable to get local issuer certificate", NULL);
}

TEST(verify_expired)
{
    client_refused("expired", 0, "tls:127.0.0.1", client_cfg(0), MPCONN_ERR_TLSVERIFY,
                   "certificate has expired", NULL);
}

TEST(verify_not_yet_valid)
{
    client_refused("future", 0, "tls:127.0.0.1", client_cfg(0), MPCONN_ERR_TLSVERIFY,
                   "certificate is not yet valid", NULL);
}

TEST(verify_hostname_mismatch)
{
    client_refused("other", 0, "tls:localhost", client_cfg(0), MPCONN_ERR_TLSVERIFY,
                   "hostname mismatch", NULL);
}

TEST(verify_ip_mismatch)
{
    client_refused("other", 0, "tls:127.0.0.1", client_cfg(0), MPCONN_ERR_TLSVERIFY,
                   "IP address mismatch", NULL);
}

TEST(client_message_names_the_address)
{
    client_refused("self", 0, "tls:127.0.0.1", client_cfg(0), MPCONN_ERR_TLSVERIFY,
                   "TLS with 127.0.0.1:", NULL);
}

TEST(client_certificate_required_and_missing)
{
    client_refused("server", MPCONN_TLS_VERIFY_REQUIRED, "tls:localhost", client_cfg(0),
                   MPCONN_ERR_TLSVERIFY, "requires a client certificate",
                   "the client sent no certificate and this server requires one");
}

TEST(server_name_from_the_config)
{
    /* the config's name wins over the address's host */
    mpconn_tls_config *cc = client_cfg(0);
    CHECK_INT(mpconn_tls_config_set_server_name(cc, "other.example"), 0);
    client_refused("server", 0, "tls:localhost", cc, MPCONN_ERR_TLSVERIFY,
                   "certificate is not for \"other.example\"", NULL);
}

TEST(mutual_tls)
{
    struct fixture f;
    fx_tls(&f, "server", MPCONN_TLS_VERIFY_REQUIRED, client_cfg(1), "key", -1);
    mpconn_conn *c;
    char err[256];
    CHECK_INT(fx_client(&f, "tls:localhost", &c, err, sizeof err), 0);
    echo(c, "m");
    pthread_join(f.t, NULL);
    f.t = pthread_self();
    CHECK_INT(f.result, 0);
    mpconn_tls *st = mpconn_conn_tls(f.c);
    CHECK_INT(mpconn_tls_peer_verified(st), 1);
    CHECK(contains(mpconn_tls_peer_subject(st), "CN=client"));
    CHECK_STR(mpconn_tls_server_name(st), "localhost");
    mpconn_conn_free(c);
    fx_end(&f);
}

/* ------------------------------------------------- plaintext meets TLS */

TEST(plaintext_client_sending_first_on_a_tls_listener)
{
    struct fixture f;
    mpconn_tls_config *sc = server_cfg("server", 0);
    fx_start(&f, "tls:127.0.0.1:0", sc, opts_with(sc, NULL, 20), NULL, NULL, 5);
    mpconn_conn *c;
    char err[256];
    double t0 = mpci_now();
    CHECK_INT(fx_client(&f, "127.0.0.1", &c, err, sizeof err), 0);
    CHECK_INT(mpconn_conn_send_string(c, "hello in clear"), 0);
    char *s;
    int r = mpconn_conn_recv_string(c, &s, 0);
    CHECK(r == MPCONN_ERR_EOF || r == -ECONNRESET);
    wait_reject(&f);
    CHECK(mpci_now() - t0 < 10); /* at once, long before the handshake timeout */
    CHECK_INT(f.reject_code, MPCONN_ERR_TLS);
    CHECK(contains(f.reject_msg, "did not speak TLS"));
    mpconn_conn_free(c);
    fx_end(&f);
    CHECK_INT(f.result, -ETIMEDOUT);
}

TEST(plaintext_client_waiting_for_a_challenge_on_a_tls_listener)
{
    struct fixture f;
    mpconn_tls_config *sc = server_cfg("server", 0);
    fx_start(&f, "tls:127.0.0.1:0", sc, opts_with(sc, "key", 0.5), NULL, opts_with(NULL, "key", 10),
             5);
    mpconn_conn *c;
    char err[256];
    double t0 = mpci_now();
    CHECK(fx_client(&f, "127.0.0.1", &c, err, sizeof err) < 0);
    CHECK(mpci_now() - t0 < 8); /* the listener's deadline, not the client's */
    fx_end(&f);
    CHECK_INT(f.reject_code, -ETIMEDOUT);
    CHECK(contains(f.reject_msg, "TLS handshake"));
    CHECK(contains(f.reject_msg, "sent nothing"));
}

static void tls_client_on_plain_listener(const char *key, int code, const char *says)
{
    struct fixture f;
    mpconn_tls_config *cc = client_cfg(0);
    fx_start(&f, "127.0.0.1:0", NULL, opts_with(NULL, key, 20), cc, opts_with(cc, key, 0.5), 3);
    mpconn_conn *c;
    char err[256];
    double t0 = mpci_now();
    CHECK_INT(fx_client(&f, "tls:127.0.0.1", &c, err, sizeof err), code);
    CHECK(mpci_now() - t0 < 5);
    CHECK(contains(err, says));
    fx_end(&f);
}

TEST(tls_client_on_a_plain_listener_with_authkey)
{
    /* its challenge comes in clear: known from the bytes, at once */
    tls_client_on_plain_listener("key", MPCONN_ERR_TLS, "challenge in clear");
}

TEST(tls_client_on_a_plain_listener_without_authkey)
{
    /* it waits silently: the handshake deadline ends it */
    tls_client_on_plain_listener(NULL, -ETIMEDOUT, "timed out");
}

/* --------------------------------------------- end of stream, unwrap */

TEST(clean_close_is_eof)
{
    mpconn_conn *a, *b;
    mpconn_tls_config *cc, *sc;
    tls_pair(&a, &b, &cc, &sc);
    send_recv(a, b, "last");
    mpconn_conn_close(a); /* close_notify */
    char *s;
    CHECK_INT(mpconn_conn_recv_string(b, &s, 0), MPCONN_ERR_EOF);
    free_all(a, b, cc, sc);
}

TEST(cut_stream_is_truncation)
{
    mpconn_conn *a, *b;
    mpconn_tls_config *cc, *sc;
    tls_pair(&a, &b, &cc, &sc);
    send_recv(a, b, "last");
    /* No close_notify: the end of the stream alone (a close with unread
     * session tickets would be a reset instead). */
    int fd = mpconn_conn_detach(a);
    CHECK(fd >= 0);
    shutdown(fd, SHUT_WR);
    char *s;
    CHECK_INT(mpconn_conn_recv_string(b, &s, 0), MPCONN_ERR_TRUNCATED);
    CHECK(contains(mpconn_conn_errmsg(b), "without close_notify"));
    close(fd);
    free_all(NULL, b, cc, sc);
}

TEST(cut_inside_a_message_is_truncation)
{
    mpconn_conn *a, *b;
    mpconn_tls_config *cc, *sc;
    tls_pair(&a, &b, &cc, &sc);
    /* a header that announces more than comes */
    CHECK_INT(mpconn_conn_send_string(a, "x"), 0);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), 0);
    free(m);
    /* the header of a message of 100 bytes, then one byte of it */
    CHECK_INT(mpconn_conn_set_timeouts(b, 10, 10), 0);
    mpconn_tls *t = mpconn_conn_tls(a);
    unsigned char part[] = {0, 0, 0, 100, 'x'};
    size_t k;
    CHECK_INT(mpconn_tls_write(t, part, sizeof part, &k), 0);
    CHECK_INT(k, sizeof part);
    unsigned char out[4096];
    size_t on;
    CHECK_INT(mpconn_tls_pull(t, out, sizeof out, &on), 0);
    int fd = mpconn_conn_detach(a);
    CHECK_INT(write(fd, out, on), (ssize_t)on);
    shutdown(fd, SHUT_WR);
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), MPCONN_ERR_TRUNCATED);
    CHECK(!mpconn_conn_readable(b));
    close(fd);
    free_all(NULL, b, cc, sc);
}

TEST(unwrap_and_go_on_in_clear)
{
    mpconn_conn *a, *b;
    mpconn_tls_config *cc, *sc;
    tls_pair(&a, &b, &cc, &sc);
    send_recv(a, b, "in TLS");
    /* b's last TLS message is still unread when a unwraps */
    CHECK_INT(mpconn_conn_send_string(b, "last in TLS"), 0);
    struct wrap_job j = {b, NULL, NULL, -1};
    pthread_t t;
    pthread_create(&t, NULL, unwrap_thread, &j);
    int r = mpconn_conn_unwrap_tls(a);
    if (r != 0)
        fprintf(stderr, "a: %s\n", mpconn_conn_errmsg(a));
    CHECK_INT(r, 0);
    /* right behind a's close_notify, in clear, before b is done */
    CHECK_INT(mpconn_conn_send_string(a, "first in clear"), 0);
    pthread_join(t, NULL);
    CHECK_INT(j.result, 0);
    CHECK(mpconn_conn_tls(a) == NULL && mpconn_conn_tls(b) == NULL);
    char *s;
    CHECK_INT(mpconn_conn_recv_string(a, &s, 0), 0);
    CHECK_STR(s, "last in TLS");
    free(s);
    CHECK_INT(mpconn_conn_recv_string(b, &s, 0), 0);
    CHECK_STR(s, "first in clear");
    free(s);
    /* what goes now is clear on the wire */
    CHECK_INT(mpconn_conn_send_string(b, "plain bytes"), 0);
    char raw[64];
    ssize_t n = read(mpconn_conn_fileno(a), raw, sizeof raw);
    CHECK_INT(n, 4 + 11);
    CHECK_MEM(raw + 4, "plain bytes", 11);
    CHECK_INT(mpconn_conn_unwrap_tls(a), -EINVAL);
    free_all(a, b, cc, sc);
}

TEST(starttls_on_an_existing_connection)
{
    mpconn_conn *a, *b;
    plain_pair(&a, &b);
    send_recv(a, b, "clear hello");
    /* The client starts its handshake right behind its request: its first
     * flight may be read ahead with the request, and must reach TLS. */
    mpconn_tls_config *cc = client_cfg(0), *sc = server_cfg("server", 0);
    CHECK_INT(mpconn_conn_send_string(a, "STARTTLS"), 0);
    struct wrap_job cj = {a, cc, "localhost", -1};
    pthread_t t;
    pthread_create(&t, NULL, start_tls_thread, &cj);
    usleep(50000); /* the ClientHello is in the socket behind STARTTLS */
    char *s;
    CHECK_INT(mpconn_conn_recv_string(b, &s, 0), 0);
    CHECK_STR(s, "STARTTLS");
    free(s);
    int r = mpconn_conn_start_tls(b, sc, NULL);
    if (r != 0)
        fprintf(stderr, "server: %s\n", mpconn_conn_errmsg(b));
    CHECK_INT(r, 0);
    pthread_join(t, NULL);
    CHECK_INT(cj.result, 0);
    send_recv(a, b, "now in TLS");
    send_recv(b, a, "indeed");
    CHECK_INT(mpconn_conn_start_tls(a, cc, "localhost"), -EINVAL);
    free_all(a, b, cc, sc);
}

TEST(start_tls_failure_is_reported)
{
    mpconn_conn *a, *b;
    plain_pair(&a, &b);
    mpconn_tls_config *cc = client_cfg(0), *sc = server_cfg("self", 0);
    struct wrap_job s = {b, sc, NULL, -1};
    pthread_t t;
    pthread_create(&t, NULL, start_tls_thread, &s);
    CHECK_INT(mpconn_conn_start_tls(a, cc, "localhost"), MPCONN_ERR_TLSVERIFY);
    CHECK(contains(mpconn_conn_errmsg(a), "self-signed certificate"));
    pthread_join(t, NULL);
    CHECK(s.result < 0);
    CHECK(!mpconn_conn_writable(a));
    free_all(a, b, cc, sc);
}

/* ------------------------------------------------ pending, many peers */

TEST(plaintext_held_by_the_engine_is_seen_by_wait)
{
    mpconn_conn *a, *b;
    mpconn_tls_config *cc, *sc;
    tls_pair(&a, &b, &cc, &sc);
    send_recv(a, b, "first");
    /* The records of two messages are taken from b's socket into its
     * engine, as a read of ciphertext ahead of the plaintext asked for
     * does: the socket has nothing more to say, the engine holds both. */
    CHECK_INT(mpconn_conn_send_string(a, "second"), 0);
    CHECK_INT(mpconn_conn_send_string(a, "third"), 0);
    int fd = mpconn_conn_fileno(b);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK_INT(poll(&p, 1, 5000), 1);
    usleep(20000);
    unsigned char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    CHECK(n > 0);
    CHECK_INT(mpconn_tls_feed(mpconn_conn_tls(b), buf, (size_t)n), 0);
    CHECK_INT(poll(&p, 1, 0), 0);
    mpconn_waitable w = {.conn = b, .fd = -1};
    CHECK_INT(mpconn_wait(&w, 1, 0), 1);
    CHECK_INT(w.ready, 1);
    CHECK_INT(mpconn_conn_poll(b, 0), 1);
    char *s;
    CHECK_INT(mpconn_conn_recv_string(b, &s, 0), 0);
    CHECK_STR(s, "second");
    free(s);
    /* the next one came with it and waits, decrypted or not, in TLS */
    CHECK_INT(poll(&p, 1, 0), 0);
    CHECK_INT(mpconn_wait(&w, 1, 0), 1);
    CHECK_INT(mpconn_conn_recv_string(b, &s, 0), 0);
    CHECK_STR(s, "third");
    free(s);
    free_all(a, b, cc, sc);
}

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_INT(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    return fd;
}

TEST(silent_tls_peers_delay_nobody)
{
    struct fixture f;
    fx_tls(&f, "server", 0, client_cfg(0), "key", 30);
    int silent[50];
    for (int i = 0; i < 50; i++)
        silent[i] = tcp_connect(port_of(&f));
    usleep(100000); /* the listener has taken them in */
    double t0 = mpci_now();
    mpconn_conn *c;
    char err[256];
    CHECK_INT(fx_client(&f, NULL, &c, err, sizeof err), 0);
    echo(c, "through");
    CHECK(mpci_now() - t0 < 5); /* generous: it takes milliseconds */
    mpconn_conn_free(c);
    fx_end(&f);
    CHECK_INT(f.result, 0);
    for (int i = 0; i < 50; i++)
        close(silent[i]);
}

TEST(what_does_not_speak_tls_refuses_tls_addresses)
{
    /* rather than hand a THREADS RAW handler the socket under the session
     * (servers speak TLS otherwise: test_server) */
    mpconn_tls_config *sc = server_cfg("server", 0), *cc = client_cfg(0);
    mpconn_opts *so = opts_with(sc, NULL, -1), *co = opts_with(cc, NULL, -1);
    char err[256];
    mpconn_server *srv;
    mpconn_server_hooks hooks = {.size = sizeof hooks};
    CHECK_INT(mpconn_server_new(&srv, "tls:127.0.0.1:0", MPCONN_SERVER_THREADS, MPCONN_HANDLER_RAW,
                                &hooks, NULL, so, err, sizeof err),
              MPCONN_ERR_NOTSUP);
    mpconn_opts_free(so);
    mpconn_opts_free(co);
    mpconn_tls_config_free(sc);
    mpconn_tls_config_free(cc);
}

/* ------------------------------------------- the transport, non-blocking */

/* Two TLS transports over a non-blocking socketpair, as async connections
 * use them: c the client (name localhost), s the server. */
static void nb_pair(mpci_tls_transport **c, mpci_tls_transport **s, mpconn_tls_config **cc,
                    mpconn_tls_config **sc)
{
    int sv[2];
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    *cc = client_cfg(0);
    *sc = server_cfg("server", 0);
    mpconn_tls *ce, *se;
    CHECK_INT(mpconn_tls_new(&ce, *cc, "localhost"), 0);
    CHECK_INT(mpconn_tls_new(&se, *sc, NULL), 0);
    CHECK_INT(mpci_tlst_new(c, sv[0], 1, ce), 0);
    CHECK_INT(mpci_tlst_new(s, sv[1], 1, se), 0);
}

static void nb_free(mpci_tls_transport *c, mpci_tls_transport *s, mpconn_tls_config *cc,
                    mpconn_tls_config *sc)
{
    c->base.ops->close(&c->base);
    s->base.ops->close(&s->base);
    mpci_tlst_free(c);
    mpci_tlst_free(s);
    mpconn_tls_config_free(cc);
    mpconn_tls_config_free(sc);
}

/* Both handshakes, each step as far as its socket allows. */
static void nb_handshake(mpci_transport *ct, mpci_transport *st)
{
    int cr = -EAGAIN, sr = -EAGAIN;
    for (int i = 0; i < 20 && (cr != 0 || sr != 0); i++) {
        if (sr)
            sr = st->ops->handshake(st);
        if (cr)
            cr = ct->ops->handshake(ct);
        CHECK(cr == 0 || cr == -EAGAIN);
        CHECK(sr == 0 || sr == -EAGAIN);
    }
    CHECK_INT(cr, 0);
    CHECK_INT(sr, 0);
}

TEST(transport_nonblocking_handshake_says_what_it_waits_for)
{
    mpci_tls_transport *c, *s;
    mpconn_tls_config *cc, *sc;
    nb_pair(&c, &s, &cc, &sc);
    mpci_transport *ct = &c->base, *st = &s->base;
    /* The ClientHello goes; then the client waits for the server. */
    CHECK_INT(ct->ops->handshake(ct), -EAGAIN);
    CHECK_INT(ct->ops->events(ct, POLLIN), POLLIN);
    nb_handshake(ct, st);
    /* Nothing to read: -EAGAIN, waiting to read. */
    char buf[64];
    CHECK_INT(st->ops->read(st, buf, sizeof buf), -EAGAIN);
    CHECK_INT(st->ops->events(st, POLLIN), POLLIN);
    /* A short read leaves the rest of the record decrypted in the engine:
     * pending() says so, while the socket is empty. */
    struct iovec iov = {"0123456789", 10};
    CHECK_INT(ct->ops->writev(ct, &iov, 1), 10);
    struct pollfd p = {.fd = st->fd, .events = POLLIN};
    CHECK_INT(poll(&p, 1, 5000), 1);
    CHECK_INT(st->ops->read(st, buf, 3), 3);
    CHECK_MEM(buf, "012", 3);
    CHECK_INT(st->ops->pending(st), 7);
    CHECK_INT(poll(&p, 1, 0), 0);
    CHECK_INT(st->ops->read(st, buf, sizeof buf), 7);
    CHECK_MEM(buf, "3456789", 7);
    CHECK_INT(st->ops->pending(st), 0);
    nb_free(c, s, cc, sc);
}

TEST(transport_write_counts_bytes_once_their_records_are_sent)
{
    mpci_tls_transport *c, *s;
    mpconn_tls_config *cc, *sc;
    nb_pair(&c, &s, &cc, &sc);
    mpci_transport *ct = &c->base, *st = &s->base;
    nb_handshake(ct, st);
    /* The socket fills: a write whose records cannot all go says -EAGAIN
     * and waits for POLLOUT. */
    static unsigned char data[256 * 1024];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 7);
    size_t sent = 0;
    ssize_t w = 0;
    for (int i = 0;
         i < 1000 &&
         (w = ct->ops->writev(ct, &(struct iovec){data + sent, sizeof data - sent}, 1)) > 0;
         i++)
        sent += (size_t)w;
    CHECK_INT(w, -EAGAIN);
    CHECK(ct->ops->events(ct, POLLOUT) & POLLOUT);
    CHECK(c->held > 0 || c->outpos < c->outlen);
    /* The reader drains; the same write, repeated, then counts what went. */
    static unsigned char got[256 * 1024];
    size_t have = 0;
    for (int i = 0; i < 100000 && have < sizeof got; i++) {
        ssize_t n = st->ops->read(st, got + have, sizeof got - have);
        if (n > 0)
            have += (size_t)n;
        if (sent < sizeof data) {
            w = ct->ops->writev(ct, &(struct iovec){data + sent, sizeof data - sent}, 1);
            if (w > 0)
                sent += (size_t)w;
            CHECK(w > 0 || w == -EAGAIN);
        }
        if (n == -EAGAIN && w == -EAGAIN) {
            struct pollfd p[2] = {{.fd = st->fd, .events = st->ops->events(st, POLLIN)},
                                  {.fd = ct->fd, .events = ct->ops->events(ct, POLLOUT)}};
            CHECK(poll(p, 2, 5000) > 0);
        }
    }
    CHECK_INT(sent, sizeof data);
    CHECK_INT(have, sizeof got);
    CHECK_MEM(got, data, sizeof data);
    nb_free(c, s, cc, sc);
}

TEST(transport_small_message_is_one_record)
{
    mpci_tls_transport *c, *s;
    mpconn_tls_config *cc, *sc;
    nb_pair(&c, &s, &cc, &sc);
    mpci_transport *ct = &c->base, *st = &s->base;
    nb_handshake(ct, st);
    /* The server's session tickets, read, so the socket then holds only
     * what the client writes next. */
    char buf[4096];
    CHECK_INT(st->ops->writev(st, &(struct iovec){"x", 1}, 1), 1);
    struct pollfd p = {.fd = ct->fd, .events = POLLIN};
    CHECK_INT(poll(&p, 1, 5000), 1);
    CHECK_INT(ct->ops->read(ct, buf, sizeof buf), 1);
    /* A header and its payload, as a connection sends them: one record. */
    struct iovec iov[2] = {{"\0\0\0\x0a", 4}, {"0123456789", 10}};
    CHECK_INT(ct->ops->writev(ct, iov, 2), 14);
    p.fd = st->fd;
    CHECK_INT(poll(&p, 1, 5000), 1);
    ssize_t n = read(st->fd, buf, sizeof buf);
    size_t records = 0;
    for (ssize_t at = 0; at + 5 <= n; records++)
        at += 5 + (((unsigned char)buf[at + 3] << 8) | (unsigned char)buf[at + 4]);
    CHECK_INT(records, 1);
    nb_free(c, s, cc, sc);
}

/* The certificate set, complete; its directory is printed for the CLI
 * tests (tests/cli/test_cli_tls.py), which use the same set. */
TEST(make_certificates)
{
    static const char *const names[] = {"ca", "server", "self", "client", "other", "untrusted"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char pem[32], key[32];
        snprintf(pem, sizeof pem, "%s.pem", names[i]);
        snprintf(key, sizeof key, "%s.key", names[i]);
        CHECK_INT(access(cert(pem), R_OK), 0);
        CHECK_INT(access(cert(key), R_OK), 0);
    }
    printf("certificates: %s\n", cert_dir());
}

TESTLIB_MAIN
