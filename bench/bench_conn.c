/* make bench, connection part: mpconn against the raw C baseline (the same
 * framing done by hand with the fewest syscalls) for round trips, one-way
 * throughput, peak memory of a large allocating receive, and setup rate. */
#define _GNU_SOURCE /* mkdtemp */
#include "mpconn.h"
#include "bench_util.h"
#include "mpci.h" /* struct mpconn_opts: the internal no_pipeline switch */

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#define KEY "bench authkey"

enum transport { T_PAIR, T_UNIX, T_TCP };
static const char *const tnames[] = {"socketpair", "unix", "tcp"};

enum mode { M_ECHO_INTO, M_ECHO_ALLOC, M_SEND };

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ------------------------------------------------------ raw peers */

static char tmpdir[64];

static const char *sock_path(const char *name)
{
    static char path[100];
    if (!tmpdir[0]) {
        strcpy(tmpdir, "/tmp/mpconn-bench-XXXXXX");
        if (!mkdtemp(tmpdir))
            bench_die("mkdtemp", -errno);
    }
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    return path;
}

/* A listening socket on a fresh Unix path or 127.0.0.1:0. */
static int raw_listen(enum transport t, struct sockaddr_storage *sa, socklen_t *salen)
{
    int fd = socket(t == T_UNIX ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        bench_die("socket", -errno);
    memset(sa, 0, sizeof *sa);
    if (t == T_UNIX) {
        static int seq;
        char name[32];
        snprintf(name, sizeof name, "raw%d", seq++);
        struct sockaddr_un *un = (struct sockaddr_un *)sa;
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof un->sun_path, "%s", sock_path(name));
        *salen = sizeof *un;
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *salen = sizeof *in;
    }
    if (bind(fd, (struct sockaddr *)sa, *salen) < 0 || listen(fd, 128) < 0)
        bench_die("bind/listen", -errno);
    if (getsockname(fd, (struct sockaddr *)sa, salen) < 0)
        bench_die("getsockname", -errno);
    return fd;
}

static int raw_connect(const struct sockaddr_storage *sa, socklen_t salen)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    while (connect(fd, (const struct sockaddr *)sa, salen) < 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return -e;
        }
    }
    return fd;
}

/* Two connected raw sockets of transport t. */
static void raw_pair(enum transport t, int fds[2])
{
    if (t == T_PAIR) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
            bench_die("socketpair", -errno);
        return;
    }
    struct sockaddr_storage sa;
    socklen_t salen = sizeof sa;
    int l = raw_listen(t, &sa, &salen);
    fds[1] = raw_connect(&sa, salen);
    if (fds[1] < 0)
        bench_die("connect", fds[1]);
    fds[0] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (fds[0] < 0)
        bench_die("accept", -errno);
    close(l);
    if (t == T_UNIX)
        unlink(((struct sockaddr_un *)&sa)->sun_path);
    if (t == T_TCP) {
        nodelay(fds[0]);
        nodelay(fds[1]);
    }
}

/* The raw peer: echoes each message (header and payload in one write), or
 * sends size-byte messages until the parent hangs up. */
static void raw_peer(int fd, enum mode m, size_t size)
{
    size_t cap = size + 4;
    uint8_t *buf = malloc(cap);
    if (!buf)
        _exit(1);
    memset(buf, 'x', cap);
    if (m == M_SEND) {
        raw_put_header(buf, size);
        while (raw_write_all(fd, buf, cap) == 0) {
        }
        _exit(0);
    }
    for (;;) {
        long n = raw_recv(fd, buf + 4, size);
        if (n < 0)
            _exit(0);
        raw_put_header(buf, (size_t)n);
        if (raw_write_all(fd, buf, (size_t)n + 4) < 0)
            _exit(0);
    }
}

static pid_t spawn_raw(enum transport t, enum mode m, size_t size, int *parent_fd)
{
    int fds[2];
    raw_pair(t, fds);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork", -errno);
    if (pid == 0) {
        bench_close_others(fds[1]);
        raw_peer(fds[1], m, size);
    }
    close(fds[1]);
    *parent_fd = fds[0];
    return pid;
}

/* ------------------------------------------------------ mpconn peers */

static void mp_peer(mpconn_conn *c, enum mode m, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        _exit(1);
    memset(buf, 'x', size);
    if (m == M_SEND) {
        while (mpconn_conn_send_bytes(c, buf, size) == 0) {
        }
        _exit(0);
    }
    for (;;) {
        size_t len;
        if (m == M_ECHO_INTO) {
            if (mpconn_conn_recv_bytes_into(c, buf, size, 0, &len) < 0 ||
                mpconn_conn_send_bytes(c, buf, len) < 0)
                _exit(0);
        } else {
            void *p;
            if (mpconn_conn_recv_bytes(c, &p, &len, 0) < 0)
                _exit(0);
            int r = mpconn_conn_send_bytes(c, p, len);
            free(p);
            if (r < 0)
                _exit(0);
        }
    }
}

/* An mpconn connection of transport t whose other end is served by an
 * mpconn peer in a child: a duplex mpconn_pipe, or mpconn_listener_accept
 * on this side and mpconn_client in the child. */
static pid_t spawn_mp(enum transport t, enum mode m, size_t size, const mpconn_opts *opts,
                      mpconn_conn **parent)
{
    char err[256] = "";
    int r;
    pid_t pid;
    if (t == T_PAIR) {
        mpconn_conn *a, *b;
        if ((r = mpconn_pipe(&a, &b, 1, opts)) < 0)
            bench_die("mpconn_pipe", r);
        if ((pid = fork()) < 0)
            bench_die("fork", -errno);
        if (pid == 0) {
            bench_close_others(mpconn_conn_fileno(b));
            mp_peer(b, m, size);
        }
        mpconn_conn_free(b);
        *parent = a;
        return pid;
    }
    mpconn_listener *l;
    if ((r = mpconn_listener_open(&l, t == T_UNIX ? "" : "127.0.0.1:0", opts, err, sizeof err)) <
        0) {
        fprintf(stderr, "bench: %s\n", err);
        bench_die("mpconn_listener_open", r);
    }
    char addr[160];
    snprintf(addr, sizeof addr, "%s", mpconn_listener_address(l));
    if ((pid = fork()) < 0)
        bench_die("fork", -errno);
    if (pid == 0) {
        bench_close_others(-1);
        mpconn_conn *c;
        if (mpconn_client(&c, addr, opts, err, sizeof err) < 0) {
            fprintf(stderr, "bench: client: %s\n", err);
            _exit(1);
        }
        if (t == T_TCP)
            nodelay(mpconn_conn_fileno(c));
        mp_peer(c, m, size);
    }
    if ((r = mpconn_listener_accept(l, parent, 10.0)) < 0)
        bench_die("mpconn_listener_accept", r);
    mpconn_listener_free(l);
    if (t == T_TCP)
        nodelay(mpconn_conn_fileno(*parent));
    return pid;
}

/* ------------------------------------------------------ round trips */

typedef struct side {
    int fd;
    mpconn_conn *c;
    uint8_t *sbuf, *rbuf; /* sbuf: 4 header bytes, then the payload */
    size_t size;
    long long sum; /* keeps received bytes observable */
} side;

static int op_raw_pingpong(void *p)
{
    side *s = p;
    raw_put_header(s->sbuf, s->size);
    int r = raw_write_all(s->fd, s->sbuf, s->size + 4);
    if (r < 0)
        return r;
    long n = raw_recv(s->fd, s->rbuf, s->size);
    if (n < 0)
        return (int)n;
    return n == (long)s->size ? 0 : -EPROTO;
}

static int op_mp_pingpong_into(void *p)
{
    side *s = p;
    size_t len;
    int r = mpconn_conn_send_bytes(s->c, s->sbuf + 4, s->size);
    if (r == 0)
        r = mpconn_conn_recv_bytes_into(s->c, s->rbuf, s->size, 0, &len);
    return r < 0 ? r : len == s->size ? 0 : -EPROTO;
}

static int op_mp_pingpong_alloc(void *p)
{
    side *s = p;
    void *m;
    size_t len;
    int r = mpconn_conn_send_bytes(s->c, s->sbuf + 4, s->size);
    if (r == 0)
        r = mpconn_conn_recv_bytes(s->c, &m, &len, 0);
    if (r < 0)
        return r;
    s->sum += ((uint8_t *)m)[len ? len - 1 : 0];
    free(m);
    return len == s->size ? 0 : -EPROTO;
}

static void side_init(side *s, size_t size)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->size = size;
    s->sbuf = malloc(size + 4);
    s->rbuf = malloc(size ? size : 1);
    if (!s->sbuf || !s->rbuf)
        bench_die("malloc", -ENOMEM);
    memset(s->sbuf, 'x', size + 4);
    memset(s->rbuf, 0, size ? size : 1);
}

static void side_close(side *s)
{
    if (s->fd >= 0)
        close(s->fd);
    mpconn_conn_free(s->c);
    free(s->sbuf);
    free(s->rbuf);
}

static void bench_pingpong(enum transport t, size_t size)
{
    side raw, into, alloc;
    side_init(&raw, size);
    side_init(&into, size);
    side_init(&alloc, size);
    pid_t p1 = spawn_raw(t, M_ECHO_INTO, size, &raw.fd);
    pid_t p2 = spawn_mp(t, M_ECHO_INTO, size, NULL, &into.c);
    pid_t p3 = spawn_mp(t, M_ECHO_ALLOC, size, NULL, &alloc.c);
    char id[64];
    snprintf(id, sizeof id, "rtt_%s_%zu", tnames[t], size);
    const char *const impls[] = {"raw", "mpconn", "mpconn_alloc"};
    const bench_op ops[] = {op_raw_pingpong, op_mp_pingpong_into, op_mp_pingpong_alloc};
    void *const ctxs[] = {&raw, &into, &alloc};
    bench_compare(id, 3, impls, ops, ctxs, 1e-3, "k round trips/s", 10000000);
    side_close(&raw);
    side_close(&into);
    side_close(&alloc);
    bench_reap(p1);
    bench_reap(p2);
    bench_reap(p3);
}

/* ------------------------------------------------------ throughput */

static int op_raw_recv(void *p)
{
    side *s = p;
    long n = raw_recv(s->fd, s->rbuf, s->size);
    if (n < 0)
        return (int)n;
    s->sum += s->rbuf[n - 1];
    return n == (long)s->size ? 0 : -EPROTO;
}

static int op_mp_recv_into(void *p)
{
    side *s = p;
    size_t len;
    int r = mpconn_conn_recv_bytes_into(s->c, s->rbuf, s->size, 0, &len);
    if (r < 0)
        return r;
    s->sum += s->rbuf[len - 1];
    return len == s->size ? 0 : -EPROTO;
}

static void bench_throughput(enum transport t, size_t size)
{
    side raw, mp;
    side_init(&raw, size);
    side_init(&mp, size);
    pid_t p1 = spawn_raw(t, M_SEND, size, &raw.fd);
    pid_t p2 = spawn_mp(t, M_SEND, size, NULL, &mp.c);
    char id[64];
    snprintf(id, sizeof id, "tput_%s_%zuMiB", tnames[t], size >> 20);
    const char *const impls[] = {"raw", "mpconn"};
    const bench_op ops[] = {op_raw_recv, op_mp_recv_into};
    void *const ctxs[] = {&raw, &mp};
    bench_compare(id, 2, impls, ops, ctxs, (double)size / (1 << 20), "MiB/s", 1000000);
    /* Closing the receiving ends makes the senders' writes fail: they exit. */
    side_close(&raw);
    side_close(&mp);
    bench_reap(p1);
    bench_reap(p2);
}

/* ------------------------------------------------------ peak memory */

/* Receives one size-byte message in a fresh child and reports how much its
 * peak RSS grew: raw (malloc of the announced size, then read) or mpconn's
 * allocating recv_bytes. */
static double mem_growth(int use_mpconn, size_t size)
{
    int fds[2], rep[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0 || pipe(rep) < 0)
        bench_die("socketpair/pipe", -errno);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork", -errno);
    if (pid == 0) {
        long before = bench_maxrss_kib(), after;
        if (use_mpconn) {
            mpconn_conn *c;
            void *m;
            size_t len;
            if (mpconn_conn_from_fd(&c, fds[1], MPCONN_READABLE | MPCONN_WRITABLE, NULL) < 0 ||
                mpconn_conn_recv_bytes(c, &m, &len, 0) < 0 || len != size)
                _exit(1);
            after = bench_maxrss_kib();
            free(m);
        } else {
            uint8_t h[4];
            if (raw_read_exact(fds[1], h, 4) != 1)
                _exit(1);
            size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
            uint8_t *m = malloc(len);
            if (!m || raw_read_exact(fds[1], m, len) != 1)
                _exit(1);
            after = bench_maxrss_kib();
            free(m);
        }
        long growth = after - before;
        if (raw_write_all(rep[1], &growth, sizeof growth) < 0)
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    close(rep[1]);
    uint8_t *msg = malloc(size + 4);
    if (!msg)
        bench_die("malloc", -ENOMEM);
    memset(msg, 'm', size + 4);
    raw_put_header(msg, size);
    int r = raw_write_all(fds[0], msg, size + 4);
    free(msg);
    long growth = -1;
    if (r < 0 || raw_read_exact(rep[0], &growth, sizeof growth) != 1)
        growth = -1;
    close(fds[0]);
    close(rep[0]);
    bench_reap(pid);
    if (growth < 0)
        bench_die("memory measurement", -EIO);
    return (double)growth / 1024.0;
}

static void bench_memory(void)
{
    size_t size = (size_t)64 << 20;
    double raw = 1e30, mp = 1e30;
    for (int i = 0; i < 2; i++) {
        double g = mem_growth(0, size);
        raw = g < raw ? g : raw;
        g = mem_growth(1, size);
        mp = g < mp ? g : mp;
    }
    bench_result("mem_recv_64MiB", "raw", raw, raw, "MiB");
    bench_result("mem_recv_64MiB", "mpconn", mp, mp, "MiB");
}

/* ------------------------------------------------------ setup rate */

typedef struct setup {
    enum transport t;
    struct sockaddr_storage sa; /* raw */
    socklen_t salen;
    char addr[160]; /* mpconn */
    mpconn_opts *opts;
} setup;

/* Raw: connect, wait for the one byte the server writes after accept,
 * close. No authentication: the floor under any handshake. */
static int op_raw_setup(void *p)
{
    setup *s = p;
    int fd = raw_connect(&s->sa, s->salen);
    if (fd < 0)
        return fd;
    uint8_t b;
    int r = raw_read_exact(fd, &b, 1);
    close(fd);
    return r == 1 ? 0 : -EPROTO;
}

static int op_mp_setup(void *p)
{
    setup *s = p;
    mpconn_conn *c;
    char err[256];
    int r = mpconn_client(&c, s->addr, s->opts, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, "bench: client: %s\n", err);
        return r;
    }
    mpconn_conn_free(c);
    return 0;
}

/* A raw listener in a child: serve runs once per accepted fd. */
static pid_t spawn_raw_server(setup *s, void (*serve)(int fd))
{
    int l = raw_listen(s->t, &s->sa, &s->salen);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork", -errno);
    if (pid == 0) {
        bench_close_others(l);
        for (;;) {
            int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED)
                    continue;
                _exit(1);
            }
            serve(fd);
            close(fd);
        }
    }
    close(l);
    return pid;
}

static void serve_one_byte(int fd)
{
    uint8_t b = 1;
    raw_write_all(fd, &b, 1);
}

/* The handshake's messages by hand, without crypto or framing logic: the
 * sizes mpconn puts on the wire for a {sha256} handshake (challenge;
 * answer + the client's challenge; WELCOME + answer; WELCOME), each side
 * reading exactly what it expects. The floor under any implementation of
 * this protocol on this machine. */
enum { HS_CHALLENGE = 4 + 11 + 8 + 40, HS_ANSWER = 4 + 8 + 32, HS_WELCOME = 4 + 9 };

static int op_raw_handshake(void *p)
{
    setup *s = p;
    uint8_t buf[256] = {0};
    int fd = raw_connect(&s->sa, s->salen);
    if (fd < 0)
        return fd;
    int r = raw_read_exact(fd, buf, HS_CHALLENGE);
    if (r > 0)
        r = raw_write_all(fd, buf, HS_ANSWER + HS_CHALLENGE);
    if (r >= 0)
        r = raw_read_exact(fd, buf, HS_WELCOME + HS_ANSWER);
    if (r > 0)
        r = raw_write_all(fd, buf, HS_WELCOME);
    close(fd);
    return r < 0 ? r : 0;
}

static void serve_raw_handshake(int fd)
{
    uint8_t buf[256] = {0};
    if (raw_write_all(fd, buf, HS_CHALLENGE) >= 0 &&
        raw_read_exact(fd, buf, HS_ANSWER + HS_CHALLENGE) > 0 &&
        raw_write_all(fd, buf, HS_WELCOME + HS_ANSWER) >= 0)
        raw_read_exact(fd, buf, HS_WELCOME);
}

/* The listener runs accept in a child until it is killed; the parent keeps
 * the listener object only to remove its socket file afterwards. */
static pid_t spawn_mp_server(setup *s, mpconn_listener **lp)
{
    char err[256];
    int r = mpconn_listener_open(lp, s->t == T_UNIX ? "" : "127.0.0.1:0", s->opts, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, "bench: %s\n", err);
        bench_die("mpconn_listener_open", r);
    }
    snprintf(s->addr, sizeof s->addr, "%s", mpconn_listener_address(*lp));
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork", -errno);
    if (pid == 0) {
        bench_close_others(mpconn_listener_fileno(*lp));
        for (;;) {
            mpconn_conn *c;
            r = mpconn_listener_accept(*lp, &c, -1);
            if (r == 0)
                mpconn_conn_free(c);
        }
    }
    return pid;
}

static void bench_setup(enum transport t)
{
    setup raw = {.t = t}, mp = {.t = t}, legacy = {.t = t}, rawhs = {.t = t};
    if (mpconn_opts_new(&mp.opts) < 0 || mpconn_opts_new(&legacy.opts) < 0)
        bench_die("mpconn_opts_new", -ENOMEM);
    mpconn_opts_set_authkey(mp.opts, KEY, strlen(KEY));
    mpconn_opts_set_authkey(legacy.opts, KEY, strlen(KEY));
    mpconn_opts_set_digest(legacy.opts, "legacy");
    mpconn_listener *l1, *l2;
    pid_t p0 = spawn_raw_server(&raw, serve_one_byte);
    pid_t p3 = spawn_raw_server(&rawhs, serve_raw_handshake);
    pid_t p1 = spawn_mp_server(&mp, &l1);
    pid_t p2 = spawn_mp_server(&legacy, &l2);
    /* The same listener, a client that waits for #WELCOME# before sending
     * its own challenge as CPython's does: what pipelining saves. */
    setup nopipe = mp;
    if (mpconn_opts_new(&nopipe.opts) < 0)
        bench_die("mpconn_opts_new", -ENOMEM);
    mpconn_opts_set_authkey(nopipe.opts, KEY, strlen(KEY));
    nopipe.opts->no_pipeline = 1;
    char id[64];
    snprintf(id, sizeof id, "setup_%s", tnames[t]);
    const char *const impls[] = {"raw", "mpconn", "mpconn_legacy", "mpconn_nopipe",
                                 "raw_handshake"};
    const bench_op ops[] = {op_raw_setup, op_mp_setup, op_mp_setup, op_mp_setup, op_raw_handshake};
    void *const ctxs[] = {&raw, &mp, &legacy, &nopipe, &rawhs};
    bench_compare(id, 5, impls, ops, ctxs, 1.0, "connections/s", 200000);
    mpconn_opts_free(nopipe.opts);
    pid_t pids[] = {p0, p1, p2, p3};
    for (int i = 0; i < 4; i++) {
        kill(pids[i], SIGTERM);
        bench_reap(pids[i]);
    }
    mpconn_listener_free(l1);
    mpconn_listener_free(l2);
    if (t == T_UNIX) {
        unlink(((struct sockaddr_un *)&raw.sa)->sun_path);
        unlink(((struct sockaddr_un *)&rawhs.sa)->sun_path);
    }
    mpconn_opts_free(mp.opts);
    mpconn_opts_free(legacy.opts);
}

/* ------------------------------------------------------ main */

int main(int argc, char **argv)
{
    bench_parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    /* First, while this process is small: children start with a low peak. */
    if (bench_wants(argc, argv, "memory"))
        bench_memory();
    if (bench_wants(argc, argv, "rtt")) {
        const size_t sizes[] = {1, 64, 4096};
        for (int t = T_PAIR; t <= T_TCP; t++)
            for (int i = 0; i < 3; i++)
                bench_pingpong((enum transport)t, sizes[i]);
    }
    if (bench_wants(argc, argv, "throughput")) {
        const size_t sizes[] = {(size_t)1 << 20, (size_t)64 << 20};
        for (int t = T_PAIR; t <= T_UNIX; t++)
            for (int i = 0; i < 2; i++)
                bench_throughput((enum transport)t, sizes[i]);
    }
    if (bench_wants(argc, argv, "setup")) {
        bench_setup(T_UNIX);
        bench_setup(T_TCP);
    }
    if (tmpdir[0])
        rmdir(tmpdir);
    return 0;
}
