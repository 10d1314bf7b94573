/* make bench, server part: mpconn_server's LOOP, THREADS and FORK kinds
 * against CPython's socketserver (ThreadingTCPServer, ForkingTCPServer,
 * bench_server_py.py) with the same echo handler, and against a small
 * epoll server written by hand (the ceiling); connection-per-request
 * rates; shutdown latency with 100 clients; UDP echo against a bare
 * recvfrom/sendto loop. Public headers only; SAMPLE lines for run.sh. */
#define _GNU_SOURCE
#include "bench_util.h"

#include <mpconn/server.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>

/* The implementations, in the order their repetitions interleave: the
 * three kinds first (their index is their place in mp_kind). */
enum { I_LOOP, I_THREADS, I_FORK, I_RAW, I_PY_THREADING, I_PY_FORKING, NIMPL };
static const char *const inames[NIMPL] = {"loop", "threads",      "fork",
                                          "raw",  "py_threading", "py_forking"};
static const int mp_kind[3] = {MPCONN_SERVER_LOOP, MPCONN_SERVER_THREADS, MPCONN_SERVER_FORK};

/* The mpconn kind of an implementation's name (loop, threads, fork). */
static int kind_named(const char *name)
{
    for (int k = 0; k < 3; k++)
        if (strcmp(name, inames[k]) == 0)
            return mp_kind[k];
    return MPCONN_SERVER_LOOP;
}

#define MSG 64
#define FRAME (MSG + 4)
#define CONNS 100
/* Above the 100 connections of the rows: at the default cap of 64 threads
 * or children, 36 clients would wait in the backlog for the whole run. */
#define CAP 256

static const char *python, *pyserver;

/* ------------------------------------------------------- mpconn servers */

/* THREADS and FORK: a multiprocessing frame in, the same frame back. An
 * accepted socket has TCP_NODELAY from mpconn's listening one, as the raw
 * server sets it by hand. */
static int echo_handle(mpconn_request *r, void *data)
{
    (void)data;
    mpconn_conn *c = mpconn_request_conn(r);
    unsigned char buf[65536];
    for (;;) {
        size_t len;
        int rc = mpconn_conn_recv_bytes_into(c, buf, sizeof buf, 0, &len);
        if (rc < 0)
            return rc == MPCONN_ERR_EOF ? 0 : rc;
        if ((rc = mpconn_conn_send_bytes(c, buf, len)) < 0)
            return rc;
    }
}

static int echo_message(mpconn_request *r, const void *msg, size_t len, void *data)
{
    (void)data;
    return mpconn_async_send(mpconn_request_async(r), msg, len);
}

static int dgram_echo(mpconn_request *r, void *data)
{
    (void)data;
    size_t len;
    const void *msg = mpconn_request_data(r, &len);
    return mpconn_request_reply(r, msg, len);
}

static mpconn_server *new_server(const char *addr, int kind, int dgram)
{
    mpconn_server_hooks h = {.size = sizeof h};
    if (dgram)
        h.handle = dgram_echo;
    else if (kind == MPCONN_SERVER_LOOP)
        h.on_message = echo_message;
    else
        h.handle = echo_handle;
    mpconn_server *s;
    char err[256];
    int r =
        mpconn_server_new(&s, addr, kind, MPCONN_HANDLER_FRAMED, &h, NULL, NULL, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, "bench_server: %s\n", err);
        bench_die("mpconn_server_new", r);
    }
    mpconn_server_set_max_connections(s, CAP);
    return s;
}

/* ------------------------------------------- the hand-written ceiling */

/* What a server has to do, and nothing more: one epoll loop that accepts
 * (TCP_NODELAY, as the others set it), reads frames of a 4-byte
 * big-endian length and a payload, writes each whole frame back, and
 * closes at end of stream. No handshake, no hooks, no caps. */
#define RAW_CAP (4 + 65536)

typedef struct rawconn {
    int fd;
    uint32_t events;  /* what ep watches: EPOLLIN, or EPOLLOUT while echo waits */
    size_t have;      /* bytes in buf */
    size_t out, sent; /* buf[sent..out) is echo the socket has not taken */
    unsigned char buf[RAW_CAP];
} rawconn;

static size_t raw_frame_len(const unsigned char *p)
{
    return 4 + ((size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3]);
}

static void raw_watch(int ep, rawconn *c, uint32_t events)
{
    if (c->events == events)
        return;
    c->events = events;
    struct epoll_event e = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

/* Writes back what is due, then echoes the whole frames read and keeps the
 * rest at the start of buf; reading waits while the socket is full. 0, or
 * -1 when the connection is done. */
static int raw_echo(int ep, rawconn *c)
{
    for (;;) {
        while (c->sent < c->out) {
            ssize_t w = send(c->fd, c->buf + c->sent, c->out - c->sent, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN)
                return -1;
            if (w < 0) {
                raw_watch(ep, c, EPOLLOUT);
                return 0;
            }
            c->sent += (size_t)w;
        }
        if (c->out) {
            memmove(c->buf, c->buf + c->out, c->have - c->out);
            c->have -= c->out;
            c->out = c->sent = 0;
        }
        raw_watch(ep, c, EPOLLIN);
        size_t whole = 0;
        while (c->have - whole >= 4 && c->have - whole >= raw_frame_len(c->buf + whole))
            whole += raw_frame_len(c->buf + whole);
        if (whole == 0) /* a frame begun, unless it can never fit */
            return c->have >= 4 && raw_frame_len(c->buf) > RAW_CAP ? -1 : 0;
        c->out = whole;
    }
}

static void raw_readable(int ep, rawconn *c)
{
    ssize_t n = read(c->fd, c->buf + c->have, RAW_CAP - c->have);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n > 0) {
        c->have += (size_t)n;
        if (raw_echo(ep, c) == 0)
            return;
    }
    close(c->fd); /* which takes it out of ep */
    free(c);
}

/* A TCP listener of the hand-written servers on 127.0.0.1, port 0 (flags:
 * SOCK_NONBLOCK or 0); its address goes to wfd as the servers' line. */
static int raw_listen(int flags, int wfd, const char *who)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t sl = sizeof in;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&in, sizeof in) < 0 || listen(lfd, 128) < 0 ||
        getsockname(lfd, (struct sockaddr *)&in, &sl) < 0)
        bench_die(who, -errno);
    char line[64];
    int len = snprintf(line, sizeof line, "127.0.0.1:%u\n", ntohs(in.sin_port));
    raw_write_all(wfd, line, (size_t)len);
    return lfd;
}

static _Noreturn void serve_raw(int wfd)
{
    int lfd = raw_listen(SOCK_NONBLOCK, wfd, "raw server");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le) < 0)
        bench_die("raw server", -errno);
    close(wfd);
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            rawconn *c = evs[i].data.ptr;
            if (c && c->events == EPOLLOUT) {
                if (raw_echo(ep, c) < 0) {
                    close(c->fd);
                    free(c);
                }
            } else if (c) {
                raw_readable(ep, c);
            } else {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
                    bench_nodelay(fd);
                    if (!(c = malloc(sizeof *c)))
                        bench_die("raw server", -ENOMEM);
                    c->fd = fd;
                    c->events = EPOLLIN;
                    c->have = c->out = c->sent = 0;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
            }
        }
    }
}

/* The child that serves: kind (loop, threads, fork, udp_loop, udp_threads,
 * udp_raw), the bound address written to wfd, then serve until killed. */
static int serve_child(const char *kind, int wfd)
{
    int udp = strncmp(kind, "udp_", 4) == 0;
    const char *k = udp ? kind + 4 : kind;
    char line[160];
    if (!udp && strcmp(k, "raw") == 0)
        serve_raw(wfd);
    if (udp && strcmp(k, "raw") == 0) {
        /* The floor: recvfrom and sendto, nothing else. */
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
        socklen_t sl = sizeof in;
        if (fd < 0 || bind(fd, (struct sockaddr *)&in, sizeof in) < 0 ||
            getsockname(fd, (struct sockaddr *)&in, &sl) < 0)
            bench_die("udp raw server", -errno);
        int n = snprintf(line, sizeof line, "udp:127.0.0.1:%u\n", ntohs(in.sin_port));
        raw_write_all(wfd, line, (size_t)n);
        close(wfd);
        unsigned char buf[65536];
        for (;;) {
            struct sockaddr_storage peer;
            socklen_t pl = sizeof peer;
            ssize_t got = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &pl);
            if (got >= 0)
                sendto(fd, buf, (size_t)got, 0, (struct sockaddr *)&peer, pl);
        }
    }
    mpconn_server *s = new_server(udp ? "udp:127.0.0.1:0" : "127.0.0.1:0", kind_named(k), udp);
    int n = snprintf(line, sizeof line, "%s\n", mpconn_server_address(s));
    raw_write_all(wfd, line, (size_t)n);
    close(wfd);
    mpconn_server_serve_forever(s);
    mpconn_server_free(s);
    return 0;
}

/* ------------------------------------------------------ spawning them */

typedef struct peer {
    pid_t pid;
    char addr[160];
    struct sockaddr_storage ss;
    socklen_t sl;
} peer;

static void to_sockaddr(peer *p)
{
    const char *a = strncmp(p->addr, "udp:", 4) == 0 ? p->addr + 4 : p->addr;
    const char *colon = strrchr(a, ':');
    struct sockaddr_in *in = (struct sockaddr_in *)&p->ss;
    memset(&p->ss, 0, sizeof p->ss);
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)atoi(colon + 1));
    char host[64];
    snprintf(host, sizeof host, "%.*s", (int)(colon - a), a);
    inet_pton(AF_INET, host, &in->sin_addr);
    p->sl = sizeof *in;
}

/* A server child of the given kind (a CPython one is exec'd). 0, or -1
 * when it cannot run here. */
static int spawn(peer *p, const char *kind)
{
    int py = strncmp(kind, "py_", 3) == 0;
    p->pid = -1;
    if (py && (!python || !pyserver))
        return -1;
    int fds[2];
    if (pipe(fds) < 0)
        bench_die("pipe", -errno);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork", -errno);
    if (pid == 0) {
        bench_close_others(fds[1]);
        char fdarg[16];
        snprintf(fdarg, sizeof fdarg, "%d", fds[1]);
        if (py)
            execlp(python, python, pyserver, "--kind", kind + 3, "--fd", fdarg, (char *)NULL);
        else /* a fresh process, as the CPython ones are */
            execl("/proc/self/exe", "bench_server", "--serve", kind, fdarg, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char who[64];
    snprintf(who, sizeof who, "bench_server: the %s server", kind);
    if (bench_child_addr(fds[0], pid, p->addr, sizeof p->addr, who) < 0)
        return -1;
    p->pid = pid;
    to_sockaddr(p);
    return 0;
}

static void stop(peer *p)
{
    if (p->pid > 0) {
        /* A forking server's children end at their clients' end of
         * stream (closed before this), or with it (PR_SET_PDEATHSIG). */
        kill(p->pid, SIGKILL);
        bench_reap(p->pid);
        p->pid = -1;
    }
}

static int tcp_connect(const peer *p)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    while (connect(fd, (const struct sockaddr *)&p->ss, p->sl) < 0)
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return -e;
        }
    bench_nodelay(fd);
    return fd;
}

/* ------------------------------------------ (a) 64 B echo, 100 clients */

typedef struct gclient {
    int fd;
    size_t sent, got;
} gclient;

typedef struct load {
    int ep;
    gclient c[CONNS];
    unsigned char req[FRAME];
} load;

static void load_open(load *l, const peer *p)
{
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    if (l->ep < 0)
        bench_die("epoll_create1", -errno);
    raw_put_header(l->req, MSG);
    memset(l->req + 4, 'e', MSG);
    for (int i = 0; i < CONNS; i++) {
        int fd = tcp_connect(p);
        if (fd < 0)
            bench_die("connect", fd);
        fcntl(fd, F_SETFL, O_NONBLOCK);
        l->c[i] = (gclient){fd, 0, 0};
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &l->c[i]};
        epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &e);
    }
}

static void load_close(load *l)
{
    for (int i = 0; i < CONNS; i++)
        close(l->c[i].fd);
    close(l->ep);
}

static void request(load *l, gclient *c)
{
    c->got = 0;
    ssize_t n = send(c->fd, l->req, FRAME, MSG_NOSIGNAL);
    if (n != FRAME) /* 68 bytes into an empty socket buffer */
        bench_die("load: send", n < 0 ? -errno : -EIO);
}

/* 1 when c's echo is whole. */
static int echoed(gclient *c)
{
    unsigned char buf[FRAME];
    ssize_t n = read(c->fd, buf, FRAME - c->got);
    if (n < 0 && errno == EAGAIN)
        return 0;
    if (n <= 0)
        bench_die("load: the server closed a connection", n < 0 ? -errno : -EPIPE);
    c->got += (size_t)n;
    return c->got == FRAME;
}

/* Every client runs a closed loop of one request and its echo for secs;
 * round trips per second. */
static double load_run(load *l, double secs)
{
    struct epoll_event evs[CONNS];
    double t = bench_now(), end = t + secs;
    long done = 0;
    int busy = CONNS;
    for (int i = 0; i < CONNS; i++)
        request(l, &l->c[i]);
    while (busy > 0) {
        if (t > end + 10)
            bench_die("load: echoes did not come back", -ETIMEDOUT);
        int n = epoll_wait(l->ep, evs, CONNS, 100);
        t = bench_now();
        for (int i = 0; i < n; i++) {
            gclient *c = evs[i].data.ptr;
            if (!echoed(c))
                continue;
            if (t < end) {
                done++;
                request(l, c);
            } else {
                busy--;
            }
        }
    }
    return (double)done / secs;
}

/* ----------------------------------- (b) connect, one request, close */

static int one_request(const peer *p)
{
    int fd = tcp_connect(p);
    if (fd < 0)
        return fd;
    unsigned char req[FRAME], buf[FRAME];
    raw_put_header(req, MSG);
    memset(req + 4, 'c', MSG);
    int r = raw_write_all(fd, req, FRAME) < 0 || raw_read_exact(fd, buf, FRAME) != 1 ? -EIO : 0;
    close(fd);
    return r;
}

static double conn_rate(const peer *p, double secs)
{
    double t0 = bench_now(), t = t0;
    long n = 0;
    while (t - t0 < secs || n == 0) {
        if (one_request(p) < 0)
            bench_die("connection per request", -EIO);
        n++;
        t = bench_now();
    }
    return (double)n / (t - t0);
}

/* CPU time every thread of process pid has run, in nanoseconds (the
 * scheduler's count: exact, and blind to the other processes that share
 * the machine), or -1. A forking server's children are not counted. */
static double cpu_ns(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    double sum = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char stat[320];
        snprintf(stat, sizeof stat, "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
        FILE *f = fopen(stat, "r");
        double ns = 0;
        if (f && fscanf(f, "%lf", &ns) == 1)
            sum += ns;
        if (f)
            fclose(f);
    }
    closedir(d);
    return sum;
}

/* One repetition of implementation k: a rate. */
typedef double (*rate_fn)(int k, const peer *p, double secs, void *ctx);

/* Every implementation's server, a warm-up each, then bench_reps rounds in
 * which they take turns; the rates, and mpconn's kinds over CPython's
 * within each round. kept: the rows of long-lived connections, which also
 * get the kinds over the loop kind and the server CPU per operation. */
static void compare(const char *id, const char *what, const char *unit, rate_fn fn, void *ctx,
                    int kept)
{
    peer p[NIMPL];
    int up[NIMPL];
    for (int k = 0; k < NIMPL; k++) {
        up[k] = spawn(&p[k], inames[k]) == 0;
        if (up[k]) {
            fn(k, &p[k], bench_secs / 3, ctx);
            continue;
        }
        char line[128];
        snprintf(line, sizeof line, "%s: the %s server", what, inames[k]);
        bench_missing(line);
    }
    for (int rep = 0; rep < bench_reps; rep++) {
        double rate[NIMPL];
        for (int k = 0; k < NIMPL; k++)
            if (up[k]) {
                double c0 = cpu_ns(p[k].pid);
                rate[k] = fn(k, &p[k], bench_secs, ctx);
                double c1 = cpu_ns(p[k].pid);
                bench_sample(id, inames[k], rate[k], unit);
                char cid[48];
                snprintf(cid, sizeof cid, "%s_cpu", id);
                /* Per operation, of the threads still there at the end: a
                 * forking server's work is in its children, and the threads
                 * ThreadingTCPServer starts per connection are gone (so the
                 * connection rows have none). */
                if (kept && k != I_FORK && k != I_PY_FORKING && c0 >= 0 && c1 > c0 && rate[k] > 0)
                    bench_sample(cid, inames[k], (c1 - c0) / 1e3 / (rate[k] * bench_secs), "us");
            }
        for (int k = 0; k < 3; k++) {
            char col[32];
            if (kept && k != I_LOOP && up[k] && up[I_LOOP]) {
                snprintf(col, sizeof col, "%s/loop", inames[k]);
                bench_sample(id, col, rate[k] / rate[I_LOOP], "ratio");
            }
            int py = k == I_FORK ? I_PY_FORKING : I_PY_THREADING;
            snprintf(col, sizeof col, "%s/py", inames[k]);
            if (up[k] && up[py])
                bench_sample(id, col, rate[k] / rate[py], "ratio");
            snprintf(col, sizeof col, "%s/raw", inames[k]);
            if (up[k] && up[I_RAW])
                bench_sample(id, col, rate[k] / rate[I_RAW], "ratio");
        }
        /* The ceiling of the targets over CPython's threading server. */
        if (up[I_RAW] && up[I_PY_THREADING])
            bench_sample(id, "raw/py", rate[I_RAW] / rate[I_PY_THREADING], "ratio");
    }
    for (int k = 0; k < NIMPL; k++)
        stop(&p[k]);
}

/* The echo rows keep each server's 100 connections across repetitions. */
static double echo_rate(int k, const peer *p, double secs, void *ctx)
{
    load *l = &((load *)ctx)[k];
    if (l->ep <= 0)
        load_open(l, p);
    return load_run(l, secs);
}

static double conn_rate_of(int k, const peer *p, double secs, void *ctx)
{
    (void)k;
    (void)ctx;
    return conn_rate(p, secs);
}

static void bench_echo(void)
{
    load *l = calloc(NIMPL, sizeof *l);
    if (!l)
        bench_die("bench_echo", -ENOMEM);
    compare("srv_echo64", "64 B echo", "round trips/s", echo_rate, l, 1);
    for (int k = 0; k < NIMPL; k++)
        if (l[k].ep > 0)
            load_close(&l[k]);
    free(l);
}

static void bench_conn_rate(void)
{
    compare("srv_conn", "connection per request", "connections/s", conn_rate_of, NULL, 0);
}

/* ---------------------------------------- (c) shutdown, 100 clients on */

typedef struct serving {
    mpconn_server *s;
    double ended;
} serving;

static void *serve_main(void *arg)
{
    serving *v = arg;
    mpconn_server_serve_forever(v->s);
    v->ended = bench_now();
    return NULL;
}

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* Children of this process that are still there (zombies included). */
static int children_left(void)
{
    DIR *d = opendir("/proc");
    int n = 0;
    pid_t me = getpid();
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[300], buf[512];
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t got = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[got] = 0;
        char *close_paren = strrchr(buf, ')');
        int ppid;
        char state;
        if (close_paren && sscanf(close_paren + 1, " %c %d", &state, &ppid) == 2 && ppid == me)
            n++;
    }
    if (d)
        closedir(d);
    return n;
}

/* A child talking with this process through two pipes: it writes up[1]
 * and reads down[0], this process the other ends (the child's ends are
 * closed here, ours there). The child dies with this process. */
static pid_t fork_talking(int up[2], int down[2])
{
    if (pipe(up) < 0 || pipe(down) < 0)
        bench_die("pipe", -errno);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork", -errno);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(up[0]);
        close(down[1]);
    } else {
        close(up[1]);
        close(down[0]);
    }
    return pid;
}

/* A child with n clients of p, each served once; it writes a byte to wfd
 * when they are, then keeps them until rfd reaches its end. Apart from the
 * server, so the server's children inherit none of the clients. */
static pid_t clients_child(const peer *p, int n, int *ready, int *hold)
{
    int up[2], down[2];
    pid_t pid = fork_talking(up, down);
    if (pid == 0) {
        unsigned char req[FRAME], buf[FRAME];
        raw_put_header(req, MSG);
        memset(req + 4, 's', MSG);
        for (int i = 0; i < n; i++) {
            int fd = tcp_connect(p);
            if (fd < 0 || raw_write_all(fd, req, FRAME) < 0 || raw_read_exact(fd, buf, FRAME) != 1)
                _exit(1);
        }
        raw_write_all(up[1], "r", 1);
        raw_read_exact(down[0], buf, 1); /* until the parent closes it */
        _exit(0);
    }
    *ready = up[0];
    *hold = down[1];
    return pid;
}

/* In a fresh process (the cost of ending forked children grows with the
 * memory of the process they were forked from, and this benchmark's own
 * has grown): a server of kind; its address to wfd; at a byte on rfd,
 * mpconn_server_shutdown from this thread, and the milliseconds until
 * serve_forever returned on the serving one to wfd, or -1 when a thread
 * or child of the server was left. */
/* The floor of FORK's row: in the same kind of fresh process, a forking
 * server written by hand (accept, fork, the child echoes one frame and
 * waits on its client), then at the byte on rfd the milliseconds to
 * SIGTERM and reap its children: what the kernel's exit of that many
 * processes of this program, each with its TCP connection, costs. */
static int fork_floor_child(int rfd, int wfd)
{
    int lfd = raw_listen(0, wfd, "fork floor");
    pid_t kids[CONNS];
    for (int i = 0; i < CONNS; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0 || (kids[i] = fork()) < 0)
            bench_die("fork floor", -errno);
        if (kids[i] == 0) {
            unsigned char buf[FRAME];
            close(lfd);
            if (raw_read_exact(fd, buf, FRAME) == 1)
                raw_write_all(fd, buf, FRAME);
            while (read(fd, buf, sizeof buf) > 0) {
            }
            _exit(0);
        }
        close(fd);
    }
    char c;
    if (raw_read_exact(rfd, &c, 1) != 1)
        _exit(1);
    double t0 = bench_now();
    for (int i = 0; i < CONNS; i++)
        kill(kids[i], SIGTERM);
    for (int i = 0; i < CONNS; i++)
        while (waitpid(kids[i], NULL, 0) < 0 && errno == EINTR) {
        }
    char line[64];
    int n = snprintf(line, sizeof line, "%.6f\n", (bench_now() - t0) * 1e3);
    raw_write_all(wfd, line, (size_t)n);
    close(lfd);
    return 0;
}

static int shutdown_child(const char *kind, int rfd, int wfd)
{
    if (strcmp(kind, "fork_floor") == 0)
        return fork_floor_child(rfd, wfd);
    int k = kind_named(kind);
    int tasks0 = count_dir("/proc/self/task");
    mpconn_server *s = new_server("127.0.0.1:0", k, 0);
    char line[160];
    int n = snprintf(line, sizeof line, "%s\n", mpconn_server_address(s));
    raw_write_all(wfd, line, (size_t)n);
    serving v = {s, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, serve_main, &v) != 0)
        bench_die("pthread_create", -EAGAIN);
    char c;
    if (raw_read_exact(rfd, &c, 1) != 1)
        _exit(1);
    double t0 = bench_now();
    mpconn_server_shutdown(s);
    pthread_join(t, NULL);
    double ms = (v.ended - t0) * 1e3;
    mpconn_server_free(s);
    if (count_dir("/proc/self/task") != tasks0 || children_left() != 0)
        ms = -1;
    n = snprintf(line, sizeof line, "%.6f\n", ms);
    raw_write_all(wfd, line, (size_t)n);
    return 0;
}

/* Milliseconds from mpconn_server_shutdown (on one thread) to
 * serve_forever's return on the serving one, 100 clients connected and
 * served once, everything reaped; or -1. */
static double shutdown_ms(const char *kind)
{
    int down[2], up[2];
    pid_t pid = fork_talking(up, down);
    if (pid == 0) {
        char r[16], w[16];
        snprintf(r, sizeof r, "%d", down[0]);
        snprintf(w, sizeof w, "%d", up[1]);
        execl("/proc/self/exe", "bench_server", "--shutdown", kind, r, w, (char *)NULL);
        _exit(127);
    }
    FILE *f = fdopen(up[0], "r");
    peer p = {0};
    double ms = -1;
    if (f && fgets(p.addr, sizeof p.addr, f)) {
        p.addr[strcspn(p.addr, "\n")] = 0;
        to_sockaddr(&p);
        int ready, hold;
        pid_t clients = clients_child(&p, CONNS, &ready, &hold);
        char c, line[64];
        if (raw_read_exact(ready, &c, 1) == 1 && raw_write_all(down[1], "g", 1) == 0 &&
            fgets(line, sizeof line, f))
            ms = atof(line);
        close(ready);
        close(hold);
        bench_reap(clients);
    }
    if (f)
        fclose(f);
    close(down[1]);
    bench_reap(pid);
    return ms;
}

static void bench_shutdown(void)
{
    for (int k = 0; k < 3; k++)
        shutdown_ms(inames[k]);
    for (int rep = 0; rep < bench_reps; rep++) {
        for (int k = 0; k < 3; k++) {
            double ms = shutdown_ms(inames[k]);
            if (ms < 0)
                bench_die("shutdown: the server left a thread or a child, or failed", -EBUSY);
            bench_sample("srv_shutdown", inames[k], ms, "ms");
        }
        double floor = shutdown_ms("fork_floor");
        if (floor > 0)
            bench_sample("srv_shutdown", "fork_floor", floor, "ms");
    }
}

/* ------------------------------------------------------ (d) UDP echo */

/* A window of datagrams in flight from one socket; a lost one (none on
 * loopback unless a buffer overflows) is sent again after 50 ms. */
#define WINDOW 16

static double udp_rate(const peer *p, double secs)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)&p->ss, p->sl) < 0)
        bench_die("udp client", -errno);
    struct timeval tv = {.tv_usec = 50000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    unsigned char msg[MSG], buf[MSG];
    memset(msg, 'u', sizeof msg);
    for (int i = 0; i < WINDOW; i++)
        send(fd, msg, sizeof msg, 0);
    double t0 = bench_now(), t = t0;
    long done = 0;
    while (t - t0 < secs) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno != EINTR) {
            for (int i = 0; i < WINDOW; i++) /* lost: fill the window again */
                send(fd, msg, sizeof msg, 0);
        } else if (n > 0) {
            done++;
            send(fd, msg, sizeof msg, 0);
        }
        if ((done & 63) == 0)
            t = bench_now();
    }
    t = bench_now();
    close(fd);
    return (double)done / (t - t0);
}

static void bench_udp(void)
{
    static const char *const kinds[] = {"udp_raw", "udp_loop", "udp_threads"};
    static const char *const cols[] = {"raw", "loop", "threads"};
    peer p[3];
    int up[3];
    for (int k = 0; k < 3; k++) {
        up[k] = spawn(&p[k], kinds[k]) == 0;
        if (up[k])
            udp_rate(&p[k], bench_secs / 3);
    }
    for (int rep = 0; rep < bench_reps; rep++) {
        double rate[3];
        for (int k = 0; k < 3; k++)
            if (up[k]) {
                double c0 = cpu_ns(p[k].pid);
                rate[k] = udp_rate(&p[k], bench_secs);
                double c1 = cpu_ns(p[k].pid);
                bench_sample("srv_udp64", cols[k], rate[k], "datagrams/s");
                if (c0 >= 0 && c1 > c0 && rate[k] > 0)
                    bench_sample("srv_udp64_cpu", cols[k], (c1 - c0) / 1e3 / (rate[k] * bench_secs),
                                 "us");
            }
        if (up[0] && up[1])
            bench_sample("srv_udp64", "loop/raw", rate[1] / rate[0], "ratio");
        if (up[0] && up[2])
            bench_sample("srv_udp64", "threads/raw", rate[2] / rate[0], "ratio");
    }
    for (int k = 0; k < 3; k++)
        stop(&p[k]);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--serve") == 0)
        return serve_child(argv[2], atoi(argv[3]));
    if (argc == 5 && strcmp(argv[1], "--shutdown") == 0)
        return shutdown_child(argv[2], atoi(argv[3]), atoi(argv[4]));
    signal(SIGPIPE, SIG_IGN);
    bench_parse_args(argc, argv);
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--python") == 0)
            python = argv[i + 1];
        else if (strcmp(argv[i], "--pyserver") == 0)
            pyserver = argv[i + 1];
    }
    if (bench_wants(argc, argv, "echo"))
        bench_echo();
    if (bench_wants(argc, argv, "conn"))
        bench_conn_rate();
    if (bench_wants(argc, argv, "shutdown"))
        bench_shutdown();
    if (bench_wants(argc, argv, "udp"))
        bench_udp();
    return 0;
}
