/* make bench's TLS rows: mpconn's TLS connections (public API only) against
 * the hand-written OpenSSL pair of bench_tls_ref (the limit) and CPython's
 * ssl under multiprocessing's framing (bench_tls_py.py), in rounds that
 * interleave the three; prints the table with medians and ranges.
 *
 *   bench_tls --certs DIR --ref PATH [--python PY --pyscript PATH]
 *             [--rounds N] [--time S]
 *   bench_tls --certs DIR --mpconn PART [--reps N] [--time S]   mpconn alone
 *
 * PART: rtt64 tput64M setup_full setup_resumed setup_addr setup_key
 * loop_plain loop_tls. */
#include "bench_util.h"

#include <mpconn.h>
#include <mpconn/async.h>
#include <mpconn/loop.h>
#include <mpconn/tls.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define MIB (1024 * 1024)
#define TPUT_SIZE (64 * MIB)
#define KEY "bench authkey"
/* More names than a client config keeps sessions for (32), used in turn:
 * each connection finds its name's session evicted, so it makes a full
 * handshake through the same calls that resume with one name. */
#define FULL_NAMES 40

static const char *certs = ".";

static const char *cert_file(const char *name)
{
    static char paths[4][4096];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, sizeof paths[0], "%s/%s", certs, name);
    return p;
}

static void nodelay(mpconn_conn *c)
{
    int one = 1;
    setsockopt(mpconn_conn_fileno(c), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void check_tls(int r, mpconn_tls_config *cfg, const char *what)
{
    if (r < 0) {
        fprintf(stderr, "bench_tls: %s: %s\n", what, mpconn_tls_config_errmsg(cfg));
        bench_die(what, r);
    }
}

/* A server and a client config as a user makes them: bench.pem (RSA-2048)
 * and its key; the CA that signed it; every default kept. */
static mpconn_tls_config *make_config(int role)
{
    mpconn_tls_config *cfg;
    int r = mpconn_tls_config_new(&cfg, role);
    if (r < 0)
        bench_die("mpconn_tls_config_new", r);
    if (role == MPCONN_TLS_SERVER)
        r = mpconn_tls_config_set_cert_file(cfg, cert_file("bench.pem"), cert_file("bench.key"));
    else
        r = mpconn_tls_config_set_ca_file(cfg, cert_file("ca.pem"));
    check_tls(r, cfg, "loading the certificates");
    return cfg;
}

static mpconn_opts *make_opts(mpconn_tls_config *cfg, int key)
{
    mpconn_opts *o;
    if (mpconn_opts_new(&o) < 0)
        bench_die("mpconn_opts_new", -ENOMEM);
    if (cfg && mpconn_opts_set_tls(o, cfg) < 0)
        bench_die("mpconn_opts_set_tls", -EINVAL);
    if (key)
        mpconn_opts_set_authkey(o, KEY, strlen(KEY));
    return o;
}

/* ------------------------------------------------------------ the server */

enum mode { ECHO, SOURCE };

/* A tls: listener in a child, one connection at a time: echo every message
 * until the client goes, or send TPUT_SIZE messages until it goes. *port
 * gets its address without the "tls:". */
static pid_t spawn_server(enum mode m, int key, char *addr, size_t cap)
{
    mpconn_tls_config *cfg = make_config(MPCONN_TLS_SERVER);
    mpconn_opts *o = make_opts(cfg, key);
    mpconn_listener *l;
    char err[256];
    int r = mpconn_listener_open(&l, "tls:127.0.0.1:0", o, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, "bench_tls: %s\n", err);
        bench_die("mpconn_listener_open", r);
    }
    const char *a = mpconn_listener_address(l);
    snprintf(addr, cap, "%s", strncmp(a, "tls:", 4) == 0 ? a + 4 : a);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork", -errno);
    if (pid == 0) {
        bench_close_others(mpconn_listener_fileno(l));
        size_t bcap = m == SOURCE ? TPUT_SIZE : 65536;
        uint8_t *buf = calloc(1, bcap);
        if (!buf)
            _exit(1);
        for (;;) {
            mpconn_conn *c;
            if (mpconn_listener_accept(l, &c, -1) < 0)
                continue;
            nodelay(c);
            size_t len;
            if (m == SOURCE)
                while (mpconn_conn_send_bytes(c, buf, TPUT_SIZE) == 0) {
                }
            else
                while (mpconn_conn_recv_bytes_into(c, buf, bcap, 0, &len) == 0 &&
                       mpconn_conn_send_bytes(c, buf, len) == 0) {
                }
            mpconn_conn_free(c);
        }
    }
    mpconn_listener_free(l);
    mpconn_opts_free(o);
    mpconn_tls_config_free(cfg);
    return pid;
}

/* ------------------------------------------------------------ the client */

typedef struct {
    char addr[160];     /* HOST:PORT */
    char tls_addr[170]; /* tls:HOST:PORT */
    mpconn_tls_config *cfg;
    mpconn_opts *plain, *tls;
    mpconn_conn *c;
    int names; /* start_tls: 1 (resumes), FULL_NAMES (never does); 0: a tls: address */
    int next;
    int resume;
    long resumed, full;
    uint8_t *buf;
    size_t cap;
} client;

static void client_error(const char *what, const char *msg, int r)
{
    fprintf(stderr, "bench_tls: %s: %s\n", what, msg);
    bench_die(what, r);
}

static void tls_connect(client *k)
{
    char err[256];
    int r;
    if (!k->names) {
        if ((r = mpconn_client(&k->c, k->tls_addr, k->tls, err, sizeof err)) < 0)
            client_error("mpconn_client", err, r);
        nodelay(k->c);
        return;
    }
    /* A plain connection made TLS: the way to choose the name per
     * connection, which a tls: address takes from its host. */
    if ((r = mpconn_client(&k->c, k->addr, k->plain, err, sizeof err)) < 0)
        client_error("mpconn_client", err, r);
    nodelay(k->c);
    char name[64];
    if (k->names == 1)
        snprintf(name, sizeof name, "localhost");
    else
        snprintf(name, sizeof name, "n%d.bench.test", k->next++ % k->names);
    if ((r = mpconn_conn_start_tls(k->c, k->cfg, name)) < 0)
        client_error("mpconn_conn_start_tls", mpconn_conn_errmsg(k->c), r);
}

/* Connect, handshake, one 1-byte message each way (which also takes in
 * the server's tickets), close. */
static int op_setup(void *p)
{
    client *k = p;
    tls_connect(k);
    uint8_t one = 1;
    size_t len;
    int r = mpconn_conn_send_bytes(k->c, &one, 1);
    if (r == 0)
        r = mpconn_conn_recv_bytes_into(k->c, k->buf, k->cap, 0, &len);
    if (r < 0)
        client_error("a message", mpconn_conn_errmsg(k->c), r);
    if (mpconn_tls_session_reused(mpconn_conn_tls(k->c)))
        k->resumed++;
    else
        k->full++;
    mpconn_conn_free(k->c);
    k->c = NULL;
    return 0;
}

static int op_rtt(void *p)
{
    client *k = p;
    size_t len;
    int r = mpconn_conn_send_bytes(k->c, k->buf, 64);
    return r < 0 ? r : mpconn_conn_recv_bytes_into(k->c, k->buf, k->cap, 0, &len);
}

static int op_recv(void *p)
{
    client *k = p;
    size_t len;
    return mpconn_conn_recv_bytes_into(k->c, k->buf, k->cap, 0, &len);
}

static void loop_part(int tls, void (*out)(const char *, const char *, double));

/* One part, measured reps times: rtt64 tput64M setup_full setup_resumed
 * setup_addr (a tls: address, which resumes) setup_key (the same with an
 * authkey inside TLS). Calls out(id, value) per sample. */
static void measure_mpconn(const char *part, int reps,
                           void (*out)(const char *, const char *, double))
{
    if (strncmp(part, "loop_", 5) == 0) {
        for (int rep = 0; rep < reps; rep++)
            loop_part(strcmp(part, "loop_tls") == 0, out);
        return;
    }
    enum mode m = strcmp(part, "tput64M") == 0 ? SOURCE : ECHO;
    int key = strcmp(part, "setup_key") == 0;
    client k = {.cap = m == SOURCE ? TPUT_SIZE : 65536};
    pid_t pid = spawn_server(m, key, k.addr, sizeof k.addr);
    snprintf(k.tls_addr, sizeof k.tls_addr, "tls:%s", k.addr);
    k.cfg = make_config(MPCONN_TLS_CLIENT);
    k.plain = make_opts(NULL, 0);
    k.tls = make_opts(k.cfg, key);
    k.buf = calloc(1, k.cap);
    if (!k.buf)
        bench_die("calloc", -ENOMEM);
    bench_op op = op_setup;
    double scale = 1;
    if (strcmp(part, "setup_full") == 0)
        k.names = FULL_NAMES;
    else if (strcmp(part, "setup_resumed") == 0)
        k.names = 1;
    else if (strcmp(part, "rtt64") == 0)
        op = op_rtt;
    else if (m == SOURCE)
        op = op_recv, scale = (double)TPUT_SIZE / MIB;
    else if (strcmp(part, "setup_addr") != 0 && !key)
        bench_die("unknown part", -EINVAL);
    if (op != op_setup)
        tls_connect(&k);
    bench_run_for(op, &k, bench_secs / 3, 1000000); /* warm-up */
    char id[64];
    snprintf(id, sizeof id, "tls_%s", part);
    char idcpu[80];
    snprintf(idcpu, sizeof idcpu, "%s_cpu", id);
    for (int rep = 0; rep < reps; rep++) {
        k.resumed = k.full = 0;
        double c0 = bench_cpu_ns(0) + bench_cpu_ns(pid), t0 = bench_now();
        double rate = bench_run_for(op, &k, bench_secs, 1000000);
        double elapsed = bench_now() - t0, c1 = bench_cpu_ns(0) + bench_cpu_ns(pid);
        /* What is measured is what the row says. */
        if (op == op_setup && (k.names == FULL_NAMES ? k.resumed != 0 : k.full != 0)) {
            fprintf(stderr, "bench_tls: %s: %ld full and %ld resumed handshakes\n", part, k.full,
                    k.resumed);
            bench_die("the kind of handshake", -EPROTO);
        }
        out(id, "mpconn", rate * scale);
        out(idcpu, "mpconn", (c1 - c0) / 1e3 / (rate * elapsed));
    }
    mpconn_conn_free(k.c);
    mpconn_opts_free(k.plain);
    mpconn_opts_free(k.tls);
    mpconn_tls_config_free(k.cfg);
    free(k.buf);
    kill(pid, SIGKILL);
    bench_reap(pid);
}

/* ------------------------------------------------------------ on the loop */

/* 1,000 connections, each keeping one 64-byte message out, against mpconn's
 * async listener on its loop: plain, and on a tls: address. The load
 * generator is OpenSSL's non-blocking client (or plain sockets) on epoll in
 * this process. */
#define LOOP_CONNS 1000

static void loop_echo(mpconn_async *a, const void *msg, size_t len, void *data)
{
    (void)data;
    mpconn_async_send(a, msg, len);
}

static void loop_accept(mpconn_async_listener *l, mpconn_async *a, void *data)
{
    (void)l;
    (void)data;
    static const mpconn_async_cbs cbs = {.size = sizeof cbs, .on_message = loop_echo};
    mpconn_async_set_callbacks(a, &cbs, NULL);
}

/* The server in a child; addr gets its HOST:PORT. 0 when the async
 * listener refuses the address (a tls: one in a build without async TLS). */
static pid_t spawn_loop_server(int tls, char *addr, size_t cap)
{
    int p[2];
    if (pipe(p) < 0)
        bench_die("pipe", -errno);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork", -errno);
    if (pid == 0) {
        bench_close_others(p[1]);
        mpconn_tls_config *cfg = tls ? make_config(MPCONN_TLS_SERVER) : NULL;
        mpconn_opts *o = make_opts(cfg, 0);
        mpconn_opts_set_backlog(o, LOOP_CONNS);
        mpconn_loop *loop;
        mpconn_async_listener *l;
        char err[256] = "", line[300];
        if (mpconn_loop_new(&loop, NULL) < 0 ||
            mpconn_async_listener_open(&l, tls ? "tls:127.0.0.1:0" : "127.0.0.1:0", o,
                                       mpconn_loop_adapter(), loop, loop_accept, NULL, err,
                                       sizeof err) < 0) {
            snprintf(line, sizeof line, "-%s\n", err);
            if (write(p[1], line, strlen(line)) < 0)
                _exit(1);
            _exit(0);
        }
        const char *a = mpconn_async_listener_address(l);
        snprintf(line, sizeof line, "%s\n", strncmp(a, "tls:", 4) == 0 ? a + 4 : a);
        if (write(p[1], line, strlen(line)) < 0)
            _exit(1);
        close(p[1]);
        mpconn_loop_run(loop, MPCONN_RUN_DEFAULT);
        _exit(0);
    }
    close(p[1]);
    char line[300] = "";
    ssize_t n = read(p[0], line, sizeof line - 1);
    close(p[0]);
    line[n > 0 ? n : 0] = 0;
    line[strcspn(line, "\n")] = 0;
    if (line[0] == '-' || line[0] == 0) {
        fprintf(stderr, "bench_tls: the async listener refused a %s address: %s\n",
                tls ? "tls:" : "TCP", line[0] ? line + 1 : "(no reason)");
        bench_reap(pid);
        return 0;
    }
    snprintf(addr, cap, "%s", line);
    return pid;
}

typedef struct {
    int fd;
    SSL *ssl;
    size_t got; /* bytes of the echo received */
} gconn;

static int gen_send(gconn *g)
{
    uint8_t msg[68] = {0};
    raw_put_header(msg, 64);
    g->got = 0;
    if (!g->ssl)
        return raw_write_all(g->fd, msg, sizeof msg);
    return SSL_write(g->ssl, msg, sizeof msg) == (int)sizeof msg ? 0 : -EPIPE;
}

/* Reads what has come; 1 when the echo is whole, 0 when more must come. */
static int gen_recv(gconn *g)
{
    uint8_t buf[256];
    for (;;) {
        int n;
        if (g->ssl) {
            n = SSL_read(g->ssl, buf, sizeof buf);
            if (n <= 0)
                return SSL_get_error(g->ssl, n) == SSL_ERROR_WANT_READ ? 0 : -EPIPE;
        } else {
            n = (int)read(g->fd, buf, sizeof buf);
            if (n < 0)
                return errno == EAGAIN ? 0 : -errno;
            if (n == 0)
                return -EPIPE;
        }
        g->got += (size_t)n;
        if (g->got >= 68)
            return 1;
    }
}

/* Round trips per second and the server's CPU per round trip. */
static void loop_part(int tls, void (*out)(const char *, const char *, double))
{
    char addr[160];
    pid_t pid = spawn_loop_server(tls, addr, sizeof addr);
    if (!pid)
        return;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char *colon = strrchr(addr, ':');
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    SSL_CTX *ctx = NULL;
    if (tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (!ctx || SSL_CTX_load_verify_locations(ctx, cert_file("ca.pem"), NULL) != 1)
            bench_die("the load generator's TLS context", MPCONN_ERR_TLS);
    }
    gconn *g = calloc(LOOP_CONNS, sizeof *g);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!g || ep < 0)
        bench_die("the load generator", -ENOMEM);
    for (int i = 0; i < LOOP_CONNS; i++) {
        g[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (g[i].fd < 0 || connect(g[i].fd, (struct sockaddr *)&sa, sizeof sa) < 0)
            bench_die("connect", -errno);
        int one = 1;
        setsockopt(g[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (tls) {
            g[i].ssl = SSL_new(ctx);
            SSL_set_fd(g[i].ssl, g[i].fd);
            SSL_set1_host(g[i].ssl, "localhost");
            if (SSL_connect(g[i].ssl) != 1)
                bench_die("SSL_connect", MPCONN_ERR_TLS);
        }
        fcntl(g[i].fd, F_SETFL, fcntl(g[i].fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &g[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, g[i].fd, &ev);
    }
    const char *id = tls ? "tls_loop1000_tls" : "tls_loop1000_plain";
    char idcpu[64];
    snprintf(idcpu, sizeof idcpu, "%s_cpu", id);
    struct epoll_event evs[256];
    for (int phase = 0; phase < 2; phase++) { /* a warm-up, then the sample */
        double secs = phase ? bench_secs : bench_secs / 3;
        for (int i = 0; i < LOOP_CONNS; i++)
            if (gen_send(&g[i]) < 0)
                bench_die("a send", -EPIPE);
        long trips = 0, inflight = LOOP_CONNS;
        double c0 = bench_cpu_ns(pid), t0 = bench_now(), t = t0;
        while (inflight > 0) {
            int n = epoll_wait(ep, evs, 256, 1000);
            if (n < 0 && errno != EINTR)
                bench_die("epoll_wait", -errno);
            int more = t - t0 < secs;
            for (int k = 0; k < n; k++) {
                gconn *c = evs[k].data.ptr;
                int r = gen_recv(c);
                if (r < 0)
                    bench_die("an echo", r);
                if (r == 0)
                    continue;
                trips++;
                if (more) {
                    if (gen_send(c) < 0)
                        bench_die("a send", -EPIPE);
                } else {
                    inflight--;
                }
            }
            t = bench_now();
        }
        double c1 = bench_cpu_ns(pid);
        if (phase) {
            out(id, "mpconn", (double)trips / (t - t0));
            if (c0 >= 0 && c1 >= c0)
                out(idcpu, "mpconn", (c1 - c0) / 1e3 / (double)trips);
        }
    }
    for (int i = 0; i < LOOP_CONNS; i++) {
        SSL_free(g[i].ssl);
        close(g[i].fd);
    }
    free(g);
    close(ep);
    SSL_CTX_free(ctx);
    kill(pid, SIGKILL);
    bench_reap(pid);
}

/* ------------------------------------------------------------ samples */

#define MAX_SAMPLES 64
#define MAX_KEYS 64

static struct {
    char id[48], impl[16];
    double v[MAX_SAMPLES];
    int n;
} keys[MAX_KEYS];
static int nkeys;

static void add_sample(const char *id, const char *impl, double v)
{
    int i;
    for (i = 0; i < nkeys; i++)
        if (strcmp(keys[i].id, id) == 0 && strcmp(keys[i].impl, impl) == 0)
            break;
    if (i == nkeys) {
        if (nkeys == MAX_KEYS) {
            fprintf(stderr, "bench_tls: more than %d kinds of sample; %s %s dropped\n", MAX_KEYS,
                    id, impl);
            return;
        }
        snprintf(keys[i].id, sizeof keys[i].id, "%s", id);
        snprintf(keys[i].impl, sizeof keys[i].impl, "%s", impl);
        nkeys++;
    }
    if (keys[i].n < MAX_SAMPLES)
        keys[i].v[keys[i].n++] = v;
}

static void print_sample(const char *id, const char *impl, double v)
{
    printf("SAMPLE\t%s\t%s\t%.6g\n", id, impl, v);
    fflush(stdout);
}

/* The SAMPLE lines (id, impl, value) of another program; its other lines
 * go on to stderr. */
static void read_samples(FILE *f)
{
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char id[64], impl[32];
        double v;
        if (sscanf(line, "SAMPLE\t%63[^\t]\t%31[^\t]\t%lf", id, impl, &v) == 3)
            add_sample(id, impl, v);
        else
            fputs(line, stderr);
    }
}

static void run_program(const char *cmd)
{
    FILE *f = popen(cmd, "r");
    if (!f) {
        fprintf(stderr, "bench_tls: cannot run %s\n", cmd);
        return;
    }
    read_samples(f);
    if (pclose(f) != 0)
        fprintf(stderr, "bench_tls: failed: %s\n", cmd);
}

/* ------------------------------------------------------------ the table */

static const double *samples(const char *id, const char *impl, int *n)
{
    for (int i = 0; i < nkeys; i++)
        if (strcmp(keys[i].id, id) == 0 && strcmp(keys[i].impl, impl) == 0) {
            *n = keys[i].n;
            return keys[i].v;
        }
    *n = 0;
    return NULL;
}

typedef struct {
    double med, lo, hi;
    int n;
} stat;

static stat stats_of(const double *v, int n)
{
    stat s = {.n = n};
    if (n == 0)
        return s;
    double sorted[MAX_SAMPLES];
    memcpy(sorted, v, (size_t)n * sizeof *v);
    qsort(sorted, (size_t)n, sizeof *sorted, bench_cmp_double);
    s.lo = sorted[0];
    s.hi = sorted[n - 1];
    s.med = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    return s;
}

static stat stat_of(const char *id, const char *impl)
{
    int n;
    const double *v = samples(id, impl, &n);
    return stats_of(v, n);
}

/* a op b, round by round (a[i] and b[i] ran one right after the other):
 * their ratio; for two rates the time one adds per operation (us); or
 * their difference. */
enum { RATIO, COST_US, DIFF };
static stat paired(const char *ida, const char *impla, const char *idb, const char *implb, int kind)
{
    int na, nb;
    const double *a = samples(ida, impla, &na), *b = samples(idb, implb, &nb);
    double v[MAX_SAMPLES];
    int n = na < nb ? na : nb;
    for (int i = 0; i < n; i++)
        v[i] = kind == RATIO     ? (b[i] > 0 ? a[i] / b[i] : 0)
               : kind == COST_US ? 1e6 / a[i] - 1e6 / b[i]
                                 : a[i] - b[i];
    return stats_of(v, n);
}

static const char *num(char *buf, size_t cap, double x)
{
    double ax = x < 0 ? -x : x;
    snprintf(buf, cap, ax >= 100 ? "%.0f" : ax >= 10 ? "%.1f" : "%.2f", x);
    return buf;
}

static const char *cell(stat s)
{
    static char bufs[8][96];
    static int next;
    char *out = bufs[next++ % 8], a[32], b[32], c[32];
    if (s.n == 0)
        return "n/a";
    if (s.lo == s.hi)
        return num(out, 96, s.med);
    snprintf(out, 96, "%s (%s–%s)", num(a, sizeof a, s.med), num(b, sizeof b, s.lo),
             num(c, sizeof c, s.hi));
    return out;
}

static int npass, nmiss, nna;

static const char *verdict(stat s, double target)
{
    if (s.n == 0) {
        nna++;
        return "n/a";
    }
    if (s.med >= target) {
        npass++;
        return "PASS";
    }
    nmiss++;
    return "MISS";
}

static void row(const char *what, const char *unit, const char *id, double target)
{
    char idcpu[80];
    snprintf(idcpu, sizeof idcpu, "%s_cpu", id);
    stat ratio = paired(id, "mpconn", id, "ref", RATIO);
    char tgt[32] = "";
    if (target > 0)
        snprintf(tgt, sizeof tgt, "mpconn/OpenSSL ≥ %.2f", target);
    printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", what, unit, cell(stat_of(id, "ref")),
           cell(stat_of(id, "mpconn")), cell(stat_of(id, "py")), cell(ratio),
           cell(paired(idcpu, "ref", idcpu, "mpconn", RATIO)), tgt,
           target > 0 ? verdict(ratio, target) : "");
}

/* A row of mpconn (and CPython) alone: the other cells are given. */
static void info_row(const char *what, const char *unit, const char *mp, const char *py)
{
    printf("| %s | %s | | %s | %s | | | | |\n", what, unit, mp, py);
}

static void print_table(int rounds)
{
    printf("| TLS 1.3, RSA-2048 certificate, TCP loopback | unit | OpenSSL by hand | mpconn | "
           "CPython | mpconn/OpenSSL | the same by CPU time | Target | Result |\n"
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |\n");
    row("round trip 64 B", "round trips/s", "tls_rtt64", 0.90);
    row("one-way 64 MiB messages", "MiB/s", "tls_tput64M", 0.90);
    row("connection setup, full handshake", "connections/s", "tls_setup_full", 0.90);
    row("connection setup, resumed (TLS 1.3 ticket)", "connections/s", "tls_setup_resumed", 0.90);
    stat rf[3];
    const char *impls[] = {"ref", "mpconn", "py"};
    for (int i = 0; i < 3; i++)
        rf[i] = paired("tls_setup_resumed", impls[i], "tls_setup_full", impls[i], RATIO);
    printf("| resumed / full, each its own | ratio | %s | %s | %s | | | mpconn ≥ 1.5 | %s |\n",
           cell(rf[0]), cell(rf[1]), cell(rf[2]), verdict(rf[1], 1.5));
    info_row("connection setup, mpconn_client on a tls: address (resumes)", "connections/s",
             cell(stat_of("tls_setup_addr", "mpconn")), "");
    info_row("the same with an authkey inside TLS", "connections/s",
             cell(stat_of("tls_setup_key", "mpconn")), cell(stat_of("tls_setup_key", "py")));
    info_row("the authkey's added cost per connection", "us",
             cell(paired("tls_setup_key", "mpconn", "tls_setup_addr", "mpconn", COST_US)),
             cell(paired("tls_setup_key", "py", "tls_setup_resumed", "py", COST_US)));
    info_row("the same in CPU time, both ends", "us",
             cell(paired("tls_setup_key_cpu", "mpconn", "tls_setup_addr_cpu", "mpconn", DIFF)),
             cell(paired("tls_setup_key_cpu", "py", "tls_setup_resumed_cpu", "py", DIFF)));
    info_row("1,000 concurrent 64 B echo connections on the loop, plain TCP", "round trips/s",
             cell(stat_of("tls_loop1000_plain", "mpconn")), "");
    info_row("the same over TLS", "round trips/s", cell(stat_of("tls_loop1000_tls", "mpconn")), "");
    info_row("server CPU per round trip, plain TCP", "us",
             cell(stat_of("tls_loop1000_plain_cpu", "mpconn")), "");
    info_row("server CPU per round trip, TLS", "us",
             cell(stat_of("tls_loop1000_tls_cpu", "mpconn")), "");
    printf("\nRates: median (lowest–highest) over %d rounds of %.2gs per implementation and "
           "row; in each round the three ran one after the other, each round starting with "
           "another. Ratios and costs are taken within each round, the targets checked on "
           "their median. By CPU time: the CPU both ends used per operation (the client's "
           "own, the server child's from /proc/PID/schedstat), OpenSSL's over mpconn's, which "
           "load from elsewhere on the machine disturbs less than the rates. "
           "Setup: connect, handshake, one 1-byte message each way, close. Full handshakes come "
           "from a client naming the server by %d names in turn (*.bench.test), more than the "
           "32 whose sessions a config keeps; resumed ones name it the same each time. "
           "The authkey's cost is the same connection with and without it (CPython: its "
           "resumed row). %d PASS, %d MISS, %d n/a.\n",
           rounds, bench_secs, FULL_NAMES, npass, nmiss, nna);
    if (stat_of("tls_loop1000_tls", "mpconn").n == 0)
        printf("\nNot measured: the 1,000-connection rows over TLS: the async listener refused "
               "a tls: address.\n");
}

/* ------------------------------------------------------------ main */

static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    /* Two ends of 1,000 connections in the loop rows. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    bench_parse_args(argc, argv);
    if (opt(argc, argv, "--certs"))
        certs = opt(argc, argv, "--certs");
    const char *one = opt(argc, argv, "--mpconn");
    if (one) {
        measure_mpconn(one, bench_reps, print_sample);
        return 0;
    }
    const char *ref = opt(argc, argv, "--ref"), *py = opt(argc, argv, "--python");
    const char *pyscript = opt(argc, argv, "--pyscript");
    const char *r = opt(argc, argv, "--rounds");
    int rounds = r ? atoi(r) : 3;
    if (!ref || rounds < 1 || rounds > MAX_SAMPLES) {
        fprintf(stderr, "usage: bench_tls --certs DIR --ref PATH [--python PY --pyscript PATH] "
                        "[--rounds N] [--time S]\n");
        return 2;
    }
    static const char *const parts[] = {"rtt64",      "tput64M",   "setup_full", "setup_resumed",
                                        "setup_addr", "setup_key", "loop_plain", "loop_tls"};
    char cmd[8192];
    for (int round = 1; round <= rounds; round++) {
        fprintf(stderr, "bench: TLS round %d/%d...\n", round, rounds);
        for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
            /* Each round starts with another of the three, so none is
             * always the one that meets a burst of load first. */
            for (int k = 0; k < 3; k++) {
                int who = (k + round) % 3;
                if (who == 0 && i < 4) {
                    snprintf(cmd, sizeof cmd, "'%s' --certs '%s' --reps 1 --time %g %s", ref, certs,
                             bench_secs, parts[i]);
                    run_program(cmd);
                } else if (who == 1) {
                    measure_mpconn(parts[i], 1, add_sample);
                } else if (who == 2 && py && pyscript && i < 6 &&
                           strcmp(parts[i], "setup_addr") != 0) {
                    snprintf(cmd, sizeof cmd, "'%s' '%s' --certs '%s' --reps 1 --time %g %s", py,
                             pyscript, certs, bench_secs, parts[i]);
                    run_program(cmd);
                }
            }
        }
    }
    print_table(rounds);
    return 0;
}
