/* The limit of make bench's TLS rows: a blocking OpenSSL client and server
 * written by hand (SSL_read/SSL_write on blocking TCP sockets, a 4-byte
 * length before each message, nothing else), measured as bench_tls measures
 * mpconn and CPython, and reported in the same SAMPLE lines.
 *
 *   bench_tls_ref --certs DIR [--reps N] [--time S] PART...
 *   PART: rtt64 tput64M setup_full setup_resumed (none named: all)
 *
 * Same certificate and key exchange as the others: bench.pem (RSA-2048,
 * signed by ca.pem), libssl's default group, TLS 1.2-1.3 with the client
 * verifying the chain and the name "localhost". */
#include "bench_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#define MIB (1024 * 1024)
#define TPUT_SIZE (64 * MIB)

/* DIR/bench.pem, DIR/bench.key, DIR/ca.pem */
static char cert_pem[4200], key_pem[4200], ca_pem[4200];

static void die_ssl(const char *what)
{
    fprintf(stderr, "bench_tls_ref: %s failed:\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* What mpconn's configuration does by default, so both make the same
 * handshakes: TLS 1.2 and 1.3, its TLS 1.2 suites, no compression or
 * renegotiation; the server a session id context, the client a CA file. */
static SSL_CTX *make_ctx(int server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx)
        die_ssl("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20") != 1)
        die_ssl("cipher list");
    if (server) {
        static const unsigned char sid[] = "bench";
        SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_pem) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key_pem, SSL_FILETYPE_PEM) != 1)
            die_ssl("loading bench.pem");
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_load_verify_locations(ctx, ca_pem, NULL) != 1)
            die_ssl("loading ca.pem");
        /* Sessions are kept by hand below, one at a time. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    return ctx;
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ------------------------------------------------------------ framing */

static int ssl_write_all(SSL *s, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        size_t n = 0;
        if (SSL_write_ex(s, p, len, &n) != 1)
            return -EPIPE;
        p += n;
        len -= n;
    }
    return 0;
}

/* 1 when len bytes came, 0 at a clean end before the first one. */
static int ssl_read_exact(SSL *s, void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < len) {
        size_t n = 0;
        if (SSL_read_ex(s, p + got, len - got, &n) != 1)
            return got == 0 && SSL_get_error(s, 0) == SSL_ERROR_ZERO_RETURN ? 0 : -EPIPE;
        got += n;
    }
    return 1;
}

/* A message as CPython writes one: header and payload in one write up to
 * 16 KiB, in two above. */
static int send_msg(SSL *s, const uint8_t *payload, size_t len)
{
    uint8_t small[4 + 16384];
    if (len <= 16384) {
        raw_put_header(small, len);
        memcpy(small + 4, payload, len);
        return ssl_write_all(s, small, 4 + len);
    }
    uint8_t h[4];
    raw_put_header(h, len);
    int r = ssl_write_all(s, h, 4);
    return r < 0 ? r : ssl_write_all(s, payload, len);
}

/* Into buf (cap bytes): its length, 0-length messages included; -EPIPE at
 * the end of the stream. */
static long recv_msg(SSL *s, uint8_t *buf, size_t cap)
{
    uint8_t h[4];
    int r = ssl_read_exact(s, h, 4);
    if (r <= 0)
        return -EPIPE;
    size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    if (len > cap)
        return -EMSGSIZE;
    r = ssl_read_exact(s, buf, len);
    return r < 0 ? r : (long)len;
}

/* ------------------------------------------------------------ the server */

enum mode { ECHO, SOURCE };

/* A child serving one connection at a time: echo every message until the
 * client's close_notify, or send TPUT_SIZE messages until it goes. */
static void serve(int lfd, enum mode m)
{
    SSL_CTX *ctx = make_ctx(1);
    size_t cap = m == SOURCE ? TPUT_SIZE : 65536;
    uint8_t *buf = calloc(1, cap);
    if (!buf)
        exit(1);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            exit(1);
        }
        nodelay(fd);
        SSL *s = SSL_new(ctx);
        SSL_set_fd(s, fd);
        if (SSL_accept(s) == 1) {
            if (m == SOURCE) {
                while (send_msg(s, buf, TPUT_SIZE) == 0) {
                }
            } else {
                long n;
                while ((n = recv_msg(s, buf, cap)) >= 0 && send_msg(s, buf, (size_t)n) == 0) {
                }
                SSL_shutdown(s);
            }
        }
        ERR_clear_error();
        SSL_free(s);
        close(fd);
    }
}

static struct sockaddr_in server_addr;

static pid_t spawn_server(enum mode m)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 128) < 0 ||
        getsockname(lfd, (struct sockaddr *)&server_addr, &len) < 0)
        bench_die("listen", -errno);
    pid_t pid = fork();
    if (pid == 0) {
        bench_close_others(lfd);
        serve(lfd, m);
        _exit(0);
    }
    close(lfd);
    return pid;
}

static void stop_server(pid_t pid)
{
    kill(pid, SIGKILL);
    bench_reap(pid);
}

/* ------------------------------------------------------------ the client */

typedef struct {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
    SSL_SESSION *session; /* the latest ticket, offered by the next connection */
    int resume;
    long resumed;
    uint8_t *buf;
    size_t cap;
} client;

static int tls_connect(client *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&server_addr, sizeof server_addr) < 0)
        return -errno;
    nodelay(c->fd);
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    SSL_set1_host(c->ssl, "localhost");
    if (c->resume && c->session)
        SSL_set_session(c->ssl, c->session);
    if (SSL_connect(c->ssl) != 1)
        die_ssl("SSL_connect");
    return 0;
}

static void tls_close(client *c)
{
    SSL_shutdown(c->ssl); /* our close_notify; the server answers, nobody waits */
    SSL_free(c->ssl);
    close(c->fd);
    c->ssl = NULL;
}

/* Connect, handshake, one 1-byte message each way (which also takes in
 * the server's tickets), close. */
static int op_setup(void *p)
{
    client *c = p;
    int r = tls_connect(c);
    if (r < 0)
        return r;
    uint8_t one = 1;
    if (send_msg(c->ssl, &one, 1) < 0 || recv_msg(c->ssl, c->buf, c->cap) != 1)
        return -EPIPE;
    if (!c->resume && SSL_session_reused(c->ssl))
        bench_die("a full handshake (a session was resumed)", -EPROTO);
    if (c->resume) {
        c->resumed += SSL_session_reused(c->ssl);
        SSL_SESSION_free(c->session);
        c->session = SSL_get1_session(c->ssl);
    }
    tls_close(c);
    return 0;
}

static int op_rtt(void *p)
{
    client *c = p;
    if (send_msg(c->ssl, c->buf, 64) < 0)
        return -EPIPE;
    return recv_msg(c->ssl, c->buf, c->cap) == 64 ? 0 : -EPIPE;
}

static int op_recv(void *p)
{
    client *c = p;
    return recv_msg(c->ssl, c->buf, c->cap) == TPUT_SIZE ? 0 : -EPIPE;
}

static void sample(const char *id, const char *suffix, double value)
{
    printf("SAMPLE\t%s%s\tref\t%.6g\n", id, suffix, value);
    fflush(stdout);
}

static void measure(const char *id, enum mode m, bench_op op, int resume, double scale)
{
    pid_t pid = spawn_server(m);
    client c = {.ctx = make_ctx(0), .resume = resume, .cap = m == SOURCE ? TPUT_SIZE : 65536};
    c.buf = calloc(1, c.cap);
    if (!c.buf)
        bench_die("calloc", -ENOMEM);
    int connected = op != op_setup;
    if (connected && tls_connect(&c) < 0)
        bench_die("connect", -errno);
    bench_run_for(op, &c, bench_secs / 3, 1000000); /* warm-up */
    c.resumed = 0;
    for (int rep = 0; rep < bench_reps; rep++) {
        long before = c.resumed;
        double c0 = bench_cpu_ns(0) + bench_cpu_ns(pid), t0 = bench_now();
        double rate = bench_run_for(op, &c, bench_secs, 1000000);
        double elapsed = bench_now() - t0, c1 = bench_cpu_ns(0) + bench_cpu_ns(pid);
        if (resume && c.resumed == before)
            bench_die("resumption (no session was resumed)", -EPROTO);
        sample(id, "", rate * scale);
        /* both ends' CPU per operation, in microseconds */
        sample(id, "_cpu", (c1 - c0) / 1e3 / (rate * elapsed));
    }
    if (connected)
        tls_close(&c);
    SSL_SESSION_free(c.session);
    SSL_CTX_free(c.ctx);
    free(c.buf);
    stop_server(pid);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    bench_parse_args(argc, argv);
    const char *certs = ".";
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--certs") == 0)
            certs = argv[i + 1];
    snprintf(cert_pem, sizeof cert_pem, "%s/bench.pem", certs);
    snprintf(key_pem, sizeof key_pem, "%s/bench.key", certs);
    snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", certs);
    if (bench_wants(argc, argv, "rtt64"))
        measure("tls_rtt64", ECHO, op_rtt, 0, 1);
    if (bench_wants(argc, argv, "tput64M"))
        measure("tls_tput64M", SOURCE, op_recv, 0, (double)TPUT_SIZE / MIB);
    if (bench_wants(argc, argv, "setup_full"))
        measure("tls_setup_full", ECHO, op_setup, 0, 1);
    if (bench_wants(argc, argv, "setup_resumed"))
        measure("tls_setup_resumed", ECHO, op_setup, 1, 1);
    return 0;
}
