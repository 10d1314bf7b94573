/* make bench, event-loop part: one epoll load generator against four echo
 * servers of the multiprocessing framing (hand-written epoll, libuv, Python
 * asyncio, mpconn's async listener), plus idle memory, handshake floods and
 * accept rates. Uses only mpconn's public headers. */
#define _GNU_SOURCE /* accept4, mkdtemp */
#include "mpconn.h"
#include "mpconn/async.h"
#include "mpconn/loop.h"
#include "mpconn/proto.h"
#include "bench_util.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#ifdef MPCONN_HAVE_LIBUV
#include <uv.h>
#endif

#define KEY "bench authkey"
#define BACKLOG 1024
#define SCRATCH 65536

enum transport { T_UNIX, T_TCP };
static const char *const tnames[] = {"unix", "tcp"};

/* The servers: the four echo servers, and the blocking listener of the
 * accept rows. */
enum kind { S_RAW, S_UV, S_PY, S_MP, S_BLOCK };
static const char *const snames[] = {"raw", "uv", "py", "mpconn", "blocking"};

static const char *python = NULL, *pyserver = NULL;
static char tmpdir[64];

static void sample(const char *id, const char *col, double v, const char *unit)
{
    printf("SAMPLE\t%s\t%s\t%.6g\t%s\n", id, col, v, unit);
    fflush(stdout);
}

static void missing(const char *what)
{
    printf("MISSING\t%s\n", what);
    fflush(stdout);
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Frame length of the 4-byte header at p (the bench never sends the
 * 12-byte form). */
static size_t hdr_len(const uint8_t *p)
{
    return (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
}

/* The length of the run of whole messages at the start of p[0..n). */
static size_t whole_prefix(const uint8_t *p, size_t n)
{
    size_t pos = 0;
    while (n - pos >= 4) {
        size_t len = hdr_len(p + pos);
        if (n - pos - 4 < len)
            break;
        pos += 4 + len;
    }
    return pos;
}

/* Room a partial message needs in all: its whole frame once the header is
 * in, else enough for the header. */
static size_t frame_room(const uint8_t *p, size_t have)
{
    return have >= 4 ? 4 + hdr_len(p) : 16;
}

/* Keeps p[pos..n), the start of a message, in *in (sized for its whole
 * frame); p is the scratch buffer or *in itself. An empty rest frees *in.
 * -1 when out of memory. */
static int keep_rest(uint8_t **in, size_t *have, size_t *cap, uint8_t *p, size_t pos, size_t n)
{
    size_t left = n - pos;
    if (left == 0) {
        if (p == *in) {
            free(*in);
            *in = NULL;
            *have = *cap = 0;
        }
        return 0;
    }
    size_t room = frame_room(p + pos, left);
    if (p == *in) {
        memmove(*in, p + pos, left);
    } else {
        free(*in);
        if (!(*in = malloc(room)))
            return -1;
        *cap = room;
        memcpy(*in, p + pos, left);
    }
    *have = left;
    if (room > *cap) {
        uint8_t *b = realloc(*in, room);
        if (!b)
            return -1;
        *in = b;
        *cap = room;
    }
    return 0;
}

/* 1 when *in holds less than its message and has room for more of it. */
static int still_partial(const uint8_t *in, size_t have, size_t cap)
{
    return have >= 4 && have < 4 + hdr_len(in) && have < cap;
}

/* An address of mpconn's syntax as a sockaddr: a path, or HOST:PORT. */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *sl)
{
    memset(ss, 0, sizeof *ss);
    if (addr[0] == '/') {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof un->sun_path, "%s", addr);
        *sl = sizeof *un;
        return 0;
    }
    const char *colon = strrchr(addr, ':');
    if (!colon)
        return -EINVAL;
    char host[64];
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
        return -EINVAL;
    *sl = sizeof *in;
    return 0;
}

static int listen_on(const char *addr, char *bound, size_t blen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (parse_addr(addr, &ss, &sl) < 0)
        return -EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, BACKLOG) < 0)
        return -errno;
    if (ss.ss_family == AF_INET) {
        sl = sizeof ss;
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        snprintf(bound, blen, "127.0.0.1:%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    } else {
        snprintf(bound, blen, "%s", addr);
    }
    return fd;
}

static void report_addr(int wfd, const char *addr)
{
    char line[160];
    int n = snprintf(line, sizeof line, "%s\n", addr);
    if (write(wfd, line, (size_t)n) != n)
        _exit(1);
    close(wfd);
}

/* ------------------------------------------ (a) the hand-written server */

/* One connection of the epoll server. Whole messages are echoed straight
 * from the buffer they were read into; only a message split across reads,
 * or output the socket did not take, is kept per connection, so an idle
 * connection holds no buffer. */
typedef struct rconn {
    uint8_t *in; /* a message begun: have bytes, room for its frame */
    size_t have, cap;
    uint8_t *out; /* output the socket did not take: [woff, wlen) */
    size_t woff, wlen;
} rconn;

typedef struct raw_srv {
    int ep, lfd;
    rconn **conns; /* by fd */
    size_t nconns;
    uint8_t scratch[SCRATCH];
} raw_srv;

static void raw_drop(raw_srv *s, int fd)
{
    rconn *c = s->conns[fd];
    s->conns[fd] = NULL;
    epoll_ctl(s->ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(c->in);
    free(c->out);
    free(c);
}

static void raw_watch(raw_srv *s, int fd, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.fd = fd};
    epoll_ctl(s->ep, EPOLL_CTL_MOD, fd, &e);
}

/* Echoes the whole messages at the start of p[0..n) and keeps the rest;
 * p is either the scratch buffer or c->in (whose ownership may pass to the
 * output). Returns -1 when the connection broke. */
static int raw_process(raw_srv *s, int fd, rconn *c, uint8_t *p, size_t n)
{
    size_t pos = whole_prefix(p, n);
    if (pos) {
        ssize_t w = send(fd, p, pos, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN)
            return -1;
        size_t done = w < 0 ? 0 : (size_t)w;
        if (done < pos) {
            if (p == c->in && pos == n) {
                c->out = c->in; /* hand the buffer over: no copy */
                c->in = NULL;
                c->have = c->cap = 0;
                c->woff = done;
                c->wlen = pos;
                raw_watch(s, fd, EPOLLOUT);
                return 0;
            }
            if (!(c->out = malloc(pos - done)))
                return -1;
            memcpy(c->out, p + done, pos - done);
            c->woff = 0;
            c->wlen = pos - done;
            raw_watch(s, fd, EPOLLOUT);
        }
    }
    return keep_rest(&c->in, &c->have, &c->cap, p, pos, n);
}

static int raw_readable(raw_srv *s, int fd, rconn *c)
{
    uint8_t *dst = c->in ? c->in + c->have : s->scratch;
    size_t room = c->in ? c->cap - c->have : sizeof s->scratch;
    ssize_t n = read(fd, dst, room);
    if (n < 0)
        return errno == EAGAIN ? 0 : -1;
    if (n == 0)
        return -1;
    if (c->in) {
        c->have += (size_t)n;
        if (still_partial(c->in, c->have, c->cap))
            return 0;
        return raw_process(s, fd, c, c->in, c->have);
    }
    return raw_process(s, fd, c, s->scratch, (size_t)n);
}

static int raw_writable(raw_srv *s, int fd, rconn *c)
{
    ssize_t w = send(fd, c->out + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
    if (w < 0)
        return errno == EAGAIN ? 0 : -1;
    c->woff += (size_t)w;
    if (c->woff < c->wlen)
        return 0;
    free(c->out);
    c->out = NULL;
    raw_watch(s, fd, EPOLLIN);
    if (c->in && c->have >= 4 && c->have >= 4 + hdr_len(c->in))
        return raw_process(s, fd, c, c->in, c->have);
    return 0;
}

static void raw_accept(raw_srv *s)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return;
        nodelay(fd);
        if ((size_t)fd >= s->nconns) {
            size_t n = (size_t)fd * 2 + 64;
            rconn **t = realloc(s->conns, n * sizeof *t);
            if (!t)
                _exit(1);
            memset(t + s->nconns, 0, (n - s->nconns) * sizeof *t);
            s->conns = t;
            s->nconns = n;
        }
        rconn *c = calloc(1, sizeof *c);
        if (!c)
            _exit(1);
        s->conns[fd] = c;
        struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &e);
    }
}

static void serve_raw(const char *addr, int wfd)
{
    static raw_srv s;
    char bound[128];
    s.lfd = listen_on(addr, bound, sizeof bound);
    s.ep = epoll_create1(EPOLL_CLOEXEC);
    if (s.lfd < 0 || s.ep < 0)
        _exit(1);
    struct epoll_event e = {.events = EPOLLIN, .data.fd = s.lfd};
    epoll_ctl(s.ep, EPOLL_CTL_ADD, s.lfd, &e);
    report_addr(wfd, bound);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(s.ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == s.lfd) {
                raw_accept(&s);
                continue;
            }
            rconn *c = s.conns[fd];
            if (!c)
                continue;
            int r = c->out ? raw_writable(&s, fd, c) : raw_readable(&s, fd, c);
            if (r < 0)
                raw_drop(&s, fd);
        }
    }
}

/* ----------------------------------------------------- (b) on libuv */

#ifdef MPCONN_HAVE_LIBUV
/* The same server on libuv: the same buffers, uv_try_write for the common
 * case and uv_write (reading stopped meanwhile) for what it leaves. With an
 * authkey the handshake runs through mpconn's sans-I/O machine
 * (<mpconn/proto.h>), as a libuv user of mpconn would do it. */
typedef struct uconn {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    uint8_t *in;
    size_t have, cap;
    uint8_t *out;
    uv_write_t *wreq;
    mpconn_auth *auth; /* while the handshake runs */
} uconn;

static uint8_t uv_scratch[SCRATCH];
static const char *uv_key;

static void uv_closed(uv_handle_t *h)
{
    uconn *c = (uconn *)h;
    free(c->in);
    free(c->out);
    free(c->wreq);
    mpconn_auth_free(c->auth);
    free(c);
}

static void uv_drop(uconn *c)
{
    if (!uv_is_closing(&c->h.handle))
        uv_close(&c->h.handle, uv_closed);
}

static void uv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    uconn *c = (uconn *)h;
    if (c->in)
        *buf = uv_buf_init((char *)c->in + c->have, (unsigned)(c->cap - c->have));
    else
        *buf = uv_buf_init((char *)uv_scratch, sizeof uv_scratch);
}

static void uv_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);
static int uv_process(uconn *c, uint8_t *p, size_t n);

static void uv_wrote(uv_write_t *req, int status)
{
    uconn *c = req->data;
    free(c->out);
    c->out = NULL;
    if (status < 0 || uv_is_closing(&c->h.handle)) {
        uv_drop(c);
        return;
    }
    if (c->in && c->have >= 4 && c->have >= 4 + hdr_len(c->in) &&
        uv_process(c, c->in, c->have) < 0) {
        uv_drop(c);
        return;
    }
    if (!c->out)
        uv_read_start(&c->h.stream, uv_alloc, uv_on_read);
}

/* Writes p[0..n): at once what the socket takes, the rest with uv_write
 * from out (taken over when it is c->in, else a copy). */
static int uv_send(uconn *c, uint8_t *p, size_t n, int take)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int w = uv_try_write(&c->h.stream, &b, 1);
    if (w == UV_EAGAIN)
        w = 0;
    if (w < 0)
        return -1;
    if ((size_t)w == n)
        return 0;
    if (!c->wreq && !(c->wreq = malloc(sizeof *c->wreq)))
        return -1;
    uint8_t *rest;
    if (take) {
        rest = p;
        c->in = NULL;
        c->have = c->cap = 0;
    } else {
        rest = malloc(n - (size_t)w);
        if (!rest)
            return -1;
        memcpy(rest, p + w, n - (size_t)w);
    }
    c->out = rest;
    c->wreq->data = c;
    b = uv_buf_init((char *)rest + (take ? w : 0), (unsigned)(n - (size_t)w));
    uv_read_stop(&c->h.stream);
    return uv_write(c->wreq, &c->h.stream, &b, 1, uv_wrote) < 0 ? -1 : 0;
}

static int uv_auth_flush(uconn *c)
{
    const void *m;
    size_t len;
    while (mpconn_auth_next_framed(c->auth, &m, &len)) {
        uv_buf_t b = uv_buf_init((char *)m, (unsigned)len);
        if (uv_try_write(&c->h.stream, &b, 1) != (int)len)
            return -1; /* a few dozen bytes into an empty socket buffer */
    }
    int done = mpconn_auth_done(c->auth);
    if (done == 1) {
        mpconn_auth_free(c->auth);
        c->auth = NULL;
    }
    return done < 0 ? -1 : 0;
}

/* Feeds handshake messages to the machine, echoes whole messages after
 * it, keeps the rest (as raw_process). */
static int uv_process(uconn *c, uint8_t *p, size_t n)
{
    size_t off = 0;
    while (c->auth && n - off >= 4 && n - off - 4 >= hdr_len(p + off)) {
        size_t len = hdr_len(p + off);
        mpconn_auth_feed(c->auth, p + off + 4, len);
        off += 4 + len;
        if (uv_auth_flush(c) < 0)
            return -1;
    }
    size_t pos = c->auth ? 0 : whole_prefix(p + off, n - off);
    if (pos) {
        int take = p == c->in && off + pos == n && off == 0;
        if (uv_send(c, p + off, pos, take) < 0)
            return -1;
        if (take && c->out == p)
            return 0;
    }
    return keep_rest(&c->in, &c->have, &c->cap, p, off + pos, n);
}

static void uv_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    uconn *c = (uconn *)st;
    if (n < 0) {
        uv_drop(c);
        return;
    }
    if (n == 0)
        return;
    int r;
    if ((uint8_t *)buf->base == uv_scratch) {
        r = uv_process(c, uv_scratch, (size_t)n);
    } else {
        c->have += (size_t)n;
        if (still_partial(c->in, c->have, c->cap))
            return;
        r = uv_process(c, c->in, c->have);
    }
    if (r < 0)
        uv_drop(c);
}

static int uv_is_tcp;

static void uv_on_conn(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    uconn *c = calloc(1, sizeof *c);
    if (!c)
        _exit(1);
    if (uv_is_tcp)
        uv_tcp_init(server->loop, &c->h.tcp);
    else
        uv_pipe_init(server->loop, &c->h.pipe, 0);
    if (uv_accept(server, &c->h.stream) < 0) {
        uv_drop(c);
        return;
    }
    if (uv_is_tcp)
        uv_tcp_nodelay(&c->h.tcp, 1);
    if (uv_key) {
        if (mpconn_auth_new(&c->auth, MPCONN_AUTH_SERVER, uv_key, strlen(uv_key), "sha256", 1) <
                0 ||
            mpconn_auth_start(c->auth) < 0 || uv_auth_flush(c) < 0) {
            uv_drop(c);
            return;
        }
    }
    uv_read_start(&c->h.stream, uv_alloc, uv_on_read);
}

static void serve_uv(const char *addr, const char *key, int wfd)
{
    uv_loop_t *loop = uv_default_loop();
    static union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
    } srv;
    char bound[128];
    uv_key = key;
    if (addr[0] == '/') {
        uv_pipe_init(loop, &srv.pipe, 0);
        if (uv_pipe_bind(&srv.pipe, addr) < 0)
            _exit(1);
        snprintf(bound, sizeof bound, "%s", addr);
    } else {
        uv_is_tcp = 1;
        struct sockaddr_storage ss;
        socklen_t sl;
        if (parse_addr(addr, &ss, &sl) < 0)
            _exit(1);
        uv_tcp_init(loop, &srv.tcp);
        if (uv_tcp_bind(&srv.tcp, (struct sockaddr *)&ss, 0) < 0)
            _exit(1);
        int len = sizeof ss;
        uv_tcp_getsockname(&srv.tcp, (struct sockaddr *)&ss, &len);
        snprintf(bound, sizeof bound, "127.0.0.1:%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
    if (uv_listen(&srv.stream, BACKLOG, uv_on_conn) < 0)
        _exit(1);
    report_addr(wfd, bound);
    uv_run(loop, UV_RUN_DEFAULT);
    _exit(0);
}
#endif

/* ------------------------------------------------ (d) mpconn's server */

static void mp_release(void *buf, void *arg)
{
    (void)arg;
    free(buf);
}

static void mp_on_message(mpconn_async *a, const void *msg, size_t len, void *data)
{
    (void)data;
    /* A long message goes back from the buffer it was collected in. */
    void *own = len > 65536 ? mpconn_async_take_message(a, msg, len) : NULL;
    if ((own ? mpconn_async_send_owned(a, own, len, mp_release, NULL)
             : mpconn_async_send(a, msg, len)) < 0)
        return;
    /* Back-pressure: a peer that does not read stops being read. */
    if (mpconn_async_above_high(a))
        mpconn_async_pause_reading(a);
}

static void mp_on_drain(mpconn_async *a, void *data)
{
    (void)data;
    mpconn_async_resume_reading(a);
}

static void mp_on_accept(mpconn_async_listener *l, mpconn_async *a, void *data)
{
    (void)l;
    if (data) { /* the accept rows: the handshake is all there is */
        mpconn_async_close(a);
        return;
    }
    const mpconn_async_cbs cbs = {
        .size = sizeof cbs, .on_message = mp_on_message, .on_drain = mp_on_drain};
    mpconn_async_set_callbacks(a, &cbs, NULL);
}

static mpconn_opts *server_opts(const char *key)
{
    mpconn_opts *o;
    if (mpconn_opts_new(&o) < 0)
        _exit(1);
    if (key)
        mpconn_opts_set_authkey(o, key, strlen(key));
    mpconn_opts_set_backlog(o, BACKLOG);
    return o;
}

static void serve_mp(const char *addr, const char *key, int close_at_once, int wfd)
{
    mpconn_loop *loop;
    mpconn_async_listener *l;
    char err[256];
    mpconn_opts *o = server_opts(key);
    if (mpconn_loop_new(&loop, NULL) < 0 ||
        mpconn_async_listener_open(&l, addr, o, mpconn_loop_adapter(), loop, mp_on_accept,
                                   close_at_once ? (void *)1 : NULL, err, sizeof err) < 0) {
        fprintf(stderr, "bench: async listener: %s\n", err);
        _exit(1);
    }
    report_addr(wfd, mpconn_async_listener_address(l));
    mpconn_loop_run(loop, MPCONN_RUN_DEFAULT);
    _exit(0);
}

static void serve_blocking(const char *addr, const char *key, int wfd)
{
    mpconn_listener *l;
    char err[256];
    mpconn_opts *o = server_opts(key);
    if (mpconn_listener_open(&l, addr, o, err, sizeof err) < 0) {
        fprintf(stderr, "bench: listener: %s\n", err);
        _exit(1);
    }
    report_addr(wfd, mpconn_listener_address(l));
    for (;;) {
        mpconn_conn *c;
        if (mpconn_listener_accept(l, &c, -1) == 0)
            mpconn_conn_free(c);
    }
}

/* ------------------------------------------------ spawning a server */

typedef struct server {
    enum kind kind;
    pid_t pid;
    char addr[160];
} server;

static const char *fresh_addr(enum transport t, const char *name)
{
    static char buf[128];
    static int seq;
    if (t == T_TCP)
        return "127.0.0.1:0";
    if (!tmpdir[0]) {
        strcpy(tmpdir, "/tmp/mpconn-bloop-XXXXXX");
        if (!mkdtemp(tmpdir))
            bench_die("mkdtemp", -errno);
    }
    snprintf(buf, sizeof buf, "%s/%s%d", tmpdir, name, seq++);
    return buf;
}

/* A pipe and a child that keeps only its write end (child_writes) or its
 * read end of it; the parent's end stays open in p, the child's is closed
 * in the parent. */
static pid_t fork_piped(int p[2], int child_writes)
{
    if (pipe(p) < 0)
        bench_die("pipe", -errno);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork", -errno);
    if (pid == 0)
        bench_close_others(p[child_writes ? 1 : 0]);
    return pid;
}

/* Starts a server of kind k in a child (Python: exec'd) and waits for the
 * address it bound. 0, or -1 when it cannot run here. */
static int spawn(server *s, enum kind k, enum transport t, const char *key, int close_at_once)
{
    s->kind = k;
    s->pid = -1;
#ifndef MPCONN_HAVE_LIBUV
    if (k == S_UV)
        return -1;
#endif
    if (k == S_PY && (!python || !pyserver))
        return -1;
    const char *addr = fresh_addr(t, snames[k]);
    int p[2];
    pid_t pid = fork_piped(p, 1);
    if (pid == 0) {
        char fdarg[16];
        snprintf(fdarg, sizeof fdarg, "%d", p[1]);
        if (k == S_PY)
            execlp(python, python, pyserver, "--listen", addr, "--fd", fdarg,
                   key ? "--authkey" : NULL, key, (char *)NULL);
        else /* a fresh process: nothing of this one's heap in its RSS */
            execl("/proc/self/exe", "bench_loop", "--serve", snames[k], addr, fdarg,
                  close_at_once ? "close" : "echo", key, (char *)NULL);
        _exit(127);
        _exit(1);
    }
    close(p[1]);
    char who[64];
    snprintf(who, sizeof who, "bench: the %s server", snames[k]);
    if (bench_child_addr(p[0], pid, s->addr, sizeof s->addr, who) < 0)
        return -1;
    s->pid = pid;
    return 0;
}

static void stop(server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        bench_reap(s->pid);
        s->pid = -1;
    }
    if (s->addr[0] == '/')
        unlink(s->addr);
}

/* VmRSS of a process in bytes, or -1. */
static long rss_bytes(pid_t pid)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* CPU time a process has run, in nanoseconds (the scheduler's count, far
 * finer than the clock ticks of /proc/PID/stat), or -1. */
static double cpu_ns(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    double ns = -1;
    if (fscanf(f, "%lf", &ns) != 1)
        ns = -1;
    fclose(f);
    return ns;
}

/* --------------------------------------------------- the load generator */

/* One client connection: a closed loop of one request out, its echo back. */
typedef struct gconn {
    int fd;
    size_t sent, got; /* bytes of the request written, of its echo read */
    double t0;
    int writing; /* EPOLLOUT is asked for */
    int busy;
} gconn;

typedef struct gen {
    int ep;
    gconn *c;
    int n;
    mpconn_conn **mp; /* authenticated connections whose fds c uses */
    uint8_t *req;     /* header and payload */
    size_t reqlen;
    uint8_t *scratch;
    size_t scratchcap;
    float *lat;
    size_t nlat, latcap;
} gen;

static void gen_init(gen *g, size_t size, int n)
{
    memset(g, 0, sizeof *g);
    g->ep = epoll_create1(EPOLL_CLOEXEC);
    g->c = calloc((size_t)n, sizeof *g->c);
    g->mp = calloc((size_t)n, sizeof *g->mp);
    g->reqlen = size + 4;
    g->req = malloc(g->reqlen);
    g->scratchcap = g->reqlen < 262144 ? g->reqlen : 262144;
    g->scratch = malloc(g->scratchcap);
    g->latcap = 1 << 21;
    g->lat = malloc(g->latcap * sizeof *g->lat);
    if (g->ep < 0 || !g->c || !g->mp || !g->req || !g->scratch || !g->lat)
        bench_die("gen_init", -ENOMEM);
    memset(g->req, 'x', g->reqlen);
    raw_put_header(g->req, size);
}

static void gen_add(gen *g, int fd, mpconn_conn *mp)
{
    set_nonblock(fd);
    gconn *c = &g->c[g->n];
    memset(c, 0, sizeof *c);
    c->fd = fd;
    g->mp[g->n] = mp;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &e) < 0)
        bench_die("epoll_ctl", -errno);
    g->n++;
}

static int connect_to(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (parse_addr(addr, &ss, &sl) < 0)
        return -EINVAL;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    while (connect(fd, (struct sockaddr *)&ss, sl) < 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return -e;
        }
    }
    if (ss.ss_family == AF_INET)
        nodelay(fd);
    return fd;
}

/* n plain connections, or authenticated ones with key. */
static void gen_connect(gen *g, const char *addr, int n, const char *key)
{
    mpconn_opts *o = NULL;
    if (key) {
        if (mpconn_opts_new(&o) < 0)
            bench_die("mpconn_opts_new", -ENOMEM);
        mpconn_opts_set_authkey(o, key, strlen(key));
    }
    for (int i = 0; i < n; i++) {
        if (!key) {
            int fd = connect_to(addr);
            if (fd < 0)
                bench_die("connect", fd);
            gen_add(g, fd, NULL);
            continue;
        }
        mpconn_conn *c;
        char err[256];
        int r = mpconn_client(&c, addr, o, err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "bench: client %d of %d: %s\n", i, n, err);
            bench_die("mpconn_client", r);
        }
        if (addr[0] != '/')
            nodelay(mpconn_conn_fileno(c));
        gen_add(g, mpconn_conn_fileno(c), c);
    }
    mpconn_opts_free(o);
}

static void gen_close(gen *g)
{
    for (int i = 0; i < g->n; i++) {
        if (g->mp[i])
            mpconn_conn_free(g->mp[i]);
        else
            close(g->c[i].fd);
    }
    close(g->ep);
    free(g->c);
    free(g->mp);
    free(g->req);
    free(g->scratch);
    free(g->lat);
}

static void gen_watch(gen *g, gconn *c, int out)
{
    if (c->writing == out)
        return;
    c->writing = out;
    struct epoll_event e = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void gen_write(gen *g, gconn *c)
{
    while (c->sent < g->reqlen) {
        ssize_t w = send(c->fd, g->req + c->sent, g->reqlen - c->sent, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN)
                break;
            bench_die("load generator: send", -errno);
        }
        c->sent += (size_t)w;
    }
    gen_watch(g, c, c->sent < g->reqlen);
}

static void gen_start(gen *g, gconn *c, double t)
{
    c->sent = c->got = 0;
    c->t0 = t;
    c->busy = 1;
    gen_write(g, c);
}

/* 1 when the echo is whole. */
static int gen_read(gen *g, gconn *c)
{
    for (;;) {
        size_t want = g->reqlen - c->got;
        ssize_t n = read(c->fd, g->scratch, want < g->scratchcap ? want : g->scratchcap);
        if (n < 0) {
            if (errno == EAGAIN)
                return 0;
            bench_die("load generator: read", -errno);
        }
        if (n == 0)
            bench_die("load generator: the server closed a connection", -EPIPE);
        c->got += (size_t)n;
        if (c->got == g->reqlen)
            return 1;
        if ((size_t)n < want && (size_t)n < g->scratchcap)
            return 0;
    }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

typedef struct window {
    double rate, p50, p99; /* round trips/s, microseconds */
    long done;
} window;

/* Every connection runs its closed loop for secs seconds; then the echoes
 * still out are awaited and not counted. */
static window gen_run(gen *g, double secs)
{
    struct epoll_event evs[512];
    double t0 = bench_now(), end = t0 + secs, t = t0;
    long done = 0;
    int busy = g->n, stopping = 0;
    g->nlat = 0;
    for (int i = 0; i < g->n; i++)
        gen_start(g, &g->c[i], t0);
    while (busy > 0) {
        if (!stopping && t >= end)
            stopping = 1;
        if (stopping && t > end + 10)
            bench_die("load generator: echoes did not come back", -ETIMEDOUT);
        int n = epoll_wait(g->ep, evs, 512, 100);
        for (int i = 0; i < n; i++) {
            gconn *c = evs[i].data.ptr;
            if ((evs[i].events & EPOLLOUT) && c->sent < g->reqlen)
                gen_write(g, c);
            if (!(evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) || !gen_read(g, c))
                continue;
            t = bench_now();
            if (t < end) {
                done++;
                if (g->nlat < g->latcap)
                    g->lat[g->nlat++] = (float)((t - c->t0) * 1e6);
                gen_start(g, c, t);
            } else {
                c->busy = 0;
                busy--;
            }
        }
        t = bench_now();
    }
    window w = {(double)done / secs, 0, 0, done};
    if (g->nlat) {
        qsort(g->lat, g->nlat, sizeof *g->lat, cmp_float);
        w.p50 = g->lat[g->nlat / 2];
        w.p99 = g->lat[(size_t)((double)g->nlat * 0.99)];
    }
    return w;
}

/* ------------------------------------------------------------ the rows */

#define NSRV 4

/* Echo of size bytes over n connections per server, every server's
 * repetitions interleaved; samples of each repetition, and the ratios of
 * mpconn to the others within it. */
static void bench_echo(enum transport t, size_t size, const int *ns, int nn, const char *tag)
{
    server s[NSRV];
    int up[NSRV];
    for (int k = 0; k < NSRV; k++) {
        up[k] = spawn(&s[k], (enum kind)k, t, NULL, 0) == 0;
        if (!up[k]) {
            char what[96];
            snprintf(what, sizeof what, "%s echo, %s: the %s server", tag, tnames[t], snames[k]);
            missing(what);
        }
    }
    for (int j = 0; j < nn; j++) {
        gen g[NSRV];
        char id[64], idl[80];
        snprintf(id, sizeof id, "%s_%s_%d", tag, tnames[t], ns[j]);
        for (int k = 0; k < NSRV; k++)
            if (up[k]) {
                gen_init(&g[k], size, ns[j]);
                gen_connect(&g[k], s[k].addr, ns[j], NULL);
                gen_run(&g[k], bench_secs / 3);
            }
        for (int rep = 0; rep < bench_reps; rep++) {
            window w[NSRV];
            double cpu[NSRV];
            for (int k = 0; k < NSRV; k++) {
                if (!up[k])
                    continue;
                double c0 = cpu_ns(s[k].pid);
                w[k] = gen_run(&g[k], bench_secs);
                double c1 = cpu_ns(s[k].pid);
                sample(id, snames[k], w[k].rate, "round trips/s");
                snprintf(idl, sizeof idl, "%s_cpu", id);
                cpu[k] = c0 >= 0 && c1 >= c0 && w[k].done ? (c1 - c0) / 1e3 / w[k].done : 0;
                if (cpu[k] > 0)
                    sample(idl, snames[k], cpu[k], "us");
                snprintf(idl, sizeof idl, "%s_p50", id);
                sample(idl, snames[k], w[k].p50, "us");
                snprintf(idl, sizeof idl, "%s_p99", id);
                sample(idl, snames[k], w[k].p99, "us");
            }
            if (up[S_MP] && up[S_RAW])
                sample(id, "mpconn/raw", w[S_MP].rate / w[S_RAW].rate, "ratio");
            if (up[S_MP] && up[S_UV])
                sample(id, "mpconn/uv", w[S_MP].rate / w[S_UV].rate, "ratio");
            snprintf(idl, sizeof idl, "%s_cpu", id);
            if (up[S_MP] && up[S_RAW] && cpu[S_MP] > 0 && cpu[S_RAW] > 0)
                sample(idl, "mpconn/raw", cpu[S_MP] / cpu[S_RAW], "ratio");
            if (up[S_MP] && up[S_UV] && cpu[S_MP] > 0 && cpu[S_UV] > 0)
                sample(idl, "mpconn/uv", cpu[S_MP] / cpu[S_UV], "ratio");
        }
        for (int k = 0; k < NSRV; k++)
            if (up[k])
                gen_close(&g[k]);
    }
    for (int k = 0; k < NSRV; k++)
        stop(&s[k]);
}

/* 10,000 authenticated connections held open and silent: the server's
 * VmRSS growth per connection. */
static void bench_idle(int want)
{
    const enum kind kinds[] = {S_MP, S_UV, S_PY};
    for (int i = 0; i < 3; i++) {
        server s;
        if (spawn(&s, kinds[i], T_UNIX, KEY, 0) < 0) {
            char what[64];
            snprintf(what, sizeof what, "idle connections: the %s server", snames[kinds[i]]);
            missing(what);
            continue;
        }
        gen g;
        gen_init(&g, 64, want);
        /* A few connections first, so that what every server allocates
         * once (buffers, tables sized at the first peer) is not counted. */
        gen_connect(&g, s.addr, 16, KEY);
        usleep(100000);
        long before = rss_bytes(s.pid);
        gen_connect(&g, s.addr, want - 16, KEY);
        usleep(300000); /* the server takes the last #WELCOME# */
        long after = rss_bytes(s.pid);
        fprintf(stderr, "bench: idle connections, %s server: VmRSS %ld -> %ld KiB\n",
                snames[kinds[i]], before / 1024, after / 1024);
        sample("idle_unix", snames[kinds[i]], (double)(after - before) / (want - 16), "bytes/conn");
        sample("idle_unix_conns", snames[kinds[i]], want, "connections");
        gen_close(&g);
        stop(&s);
    }
}

/* Pinned to one CPU (as run.sh pins everything), moves to the other
 * CPUs: a flood from another host costs the server's CPU nothing of its
 * own. Stays where it is when there is no other CPU. */
static void move_to_another_cpu(void)
{
    cpu_set_t mine, rest;
    if (sched_getaffinity(0, sizeof mine, &mine) < 0 || CPU_COUNT(&mine) != 1)
        return;
    CPU_ZERO(&rest);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    for (int c = 0; c < n && c < CPU_SETSIZE; c++)
        if (!CPU_ISSET(c, &mine))
            CPU_SET(c, &rest);
    if (CPU_COUNT(&rest) > 0)
        sched_setaffinity(0, sizeof rest, &rest);
}

/* A flood in a child of its own, as another host's would be: n peers
 * connect at an even pace over secs seconds and say nothing (half: send
 * half a frame header and stall); they hang up when the parent closes the
 * pipe whose other end it gets back. */
static pid_t flood_start(const char *addr, int n, int half, int apart, double secs, int *ctl)
{
    int p[2];
    pid_t pid = fork_piped(p, 0);
    if (pid == 0) {
        if (apart)
            move_to_another_cpu();
        struct sockaddr_storage ss;
        socklen_t sl;
        parse_addr(addr, &ss, &sl);
        double t0 = bench_now();
        for (int i = 0; i < n; i++) {
            double due = t0 + secs * i / n, left = due - bench_now();
            if (left > 0)
                usleep((useconds_t)(left * 1e6));
            int fd = socket(ss.ss_family, SOCK_STREAM, 0);
            if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) < 0)
                _exit(1);
            if (half && write(fd, "\0\0", 2) != 2)
                _exit(1);
        }
        char c;
        while (read(p[0], &c, 1) > 0) {
        }
        _exit(0);
    }
    close(p[0]);
    *ctl = p[1];
    return pid;
}

/* p99 of 100 echo connections, quiet and while 1,000 peers connect and say
 * nothing (or half a header): to mpconn's listener with an authkey; to the
 * hand-written server without one (the floor: it only accepts and watches
 * each peer, so what it shows on the flooder's CPU is that CPU's share of
 * the flood, which no server can refuse); and to the libuv server with the
 * same authkey (what the handshake's challenge adds to the floor when a
 * libuv program runs it). The three take turns in every repetition. */
static void bench_flood(enum transport t, int nflood)
{
    const enum kind kinds[] = {S_MP, S_RAW, S_UV};
    const char *const suffix[] = {"", "_raw", "_uv"};
    enum { NK = 3 };
    server s[NK];
    gen g[NK];
    int up[NK];
    for (int i = 0; i < NK; i++) {
        const char *key = kinds[i] == S_RAW ? NULL : KEY;
        up[i] = spawn(&s[i], kinds[i], t, key, 0) == 0;
        if (!up[i]) {
            if (kinds[i] != S_UV) /* libuv is optional; the others are not */
                bench_die("the flooded server", -1);
            char what[96];
            snprintf(what, sizeof what, "flood, %s: the %s server", tnames[t], snames[kinds[i]]);
            missing(what);
            continue;
        }
        gen_init(&g[i], 64, 100);
        gen_connect(&g[i], s[i].addr, 100, key);
        gen_run(&g[i], bench_secs / 3);
    }
    for (int rep = 0; rep < bench_reps; rep++)
        for (int i = 0; i < NK; i++) {
            if (!up[i])
                continue;
            window quiet = gen_run(&g[i], bench_secs);
            /* The flooder on the server's CPU (its own CPU time slows
             * everybody there); for mpconn also on another CPU (what the
             * server alone makes of it). */
            int nf = kinds[i] == S_MP ? 4 : 2;
            for (int k = 0; k < nf; k++) {
                int ctl, half = k & 1;
                char id[64];
                snprintf(id, sizeof id, "flood_%s_%s%s%s", half ? "half" : "silent", tnames[t],
                         k & 2 ? "_apart" : "", suffix[i]);
                /* The server's first flood is the one whose handshakes
                 * find no freed memory to reuse: its growth is their cost. */
                long rss0 = kinds[i] == S_MP && rep == 0 && k == 0 ? rss_bytes(s[i].pid) : -1;
                pid_t pid = flood_start(s[i].addr, nflood, half, k >> 1, bench_secs * 0.8, &ctl);
                window w = gen_run(&g[i], bench_secs);
                if (rss0 >= 0) {
                    long rss1 = rss_bytes(s[i].pid);
                    char mid[64];
                    snprintf(mid, sizeof mid, "hsmem_%s", tnames[t]);
                    if (rss1 >= 0)
                        sample(mid, "mpconn", (double)(rss1 - rss0) / nflood, "bytes/handshake");
                }
                close(ctl);
                bench_reap(pid);
                sample(id, "quiet", quiet.p99, "us");
                sample(id, "flood", w.p99, "us");
                sample(id, "flood/quiet", w.p99 / quiet.p99, "ratio");
                usleep(50000); /* the server sees the flood go */
            }
        }
    for (int i = 0; i < NK; i++)
        if (up[i]) {
            gen_close(&g[i]);
            stop(&s[i]);
        }
}

typedef struct setup {
    const char *addr;
    mpconn_opts *opts;
} setup;

static int op_connect(void *p)
{
    setup *s = p;
    mpconn_conn *c;
    int r = mpconn_client(&c, s->addr, s->opts, NULL, 0);
    if (r == 0)
        mpconn_conn_free(c);
    return r;
}

/* Authenticated connections per second, a client connecting and closing
 * in a loop: the async listener against the blocking one. */
static void bench_accept(enum transport t)
{
    server s[2];
    if (spawn(&s[0], S_BLOCK, t, KEY, 1) < 0 || spawn(&s[1], S_MP, t, KEY, 1) < 0)
        bench_die("the accept servers", -1);
    setup st[2];
    for (int k = 0; k < 2; k++) {
        st[k].addr = s[k].addr;
        if (mpconn_opts_new(&st[k].opts) < 0)
            bench_die("mpconn_opts_new", -ENOMEM);
        mpconn_opts_set_authkey(st[k].opts, KEY, strlen(KEY));
        bench_run_for(op_connect, &st[k], bench_secs / 3, 1000000);
    }
    char id[64];
    snprintf(id, sizeof id, "accept_%s", tnames[t]);
    for (int rep = 0; rep < bench_reps; rep++) {
        double r[2];
        for (int k = 0; k < 2; k++) {
            r[k] = bench_run_for(op_connect, &st[k], bench_secs, 1000000);
            sample(id, k ? "mpconn" : "blocking", r[k], "connections/s");
        }
        sample(id, "mpconn/blocking", r[1] / r[0], "ratio");
    }
    for (int k = 0; k < 2; k++) {
        mpconn_opts_free(st[k].opts);
        stop(&s[k]);
    }
}

/* ------------------------------------------------------------ main */

/* The child side of spawn: bench_loop --serve KIND ADDR FD MODE [KEY]. */
static int serve(int argc, char **argv)
{
    if (argc < 6)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    const char *addr = argv[3], *key = argc > 6 ? argv[6] : NULL;
    int wfd = atoi(argv[4]), close_at_once = strcmp(argv[5], "close") == 0;
    if (strcmp(argv[2], "raw") == 0)
        serve_raw(addr, wfd);
#ifdef MPCONN_HAVE_LIBUV
    else if (strcmp(argv[2], "uv") == 0)
        serve_uv(addr, key, wfd);
#endif
    else if (strcmp(argv[2], "mpconn") == 0)
        serve_mp(addr, key, close_at_once, wfd);
    else if (strcmp(argv[2], "blocking") == 0)
        serve_blocking(addr, key, wfd);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--serve") == 0)
        return serve(argc, argv);
    bench_parse_args(argc, argv);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--python") == 0)
            python = argv[i + 1];
        else if (strcmp(argv[i], "--pyserver") == 0)
            pyserver = argv[i + 1];
    }
    signal(SIGPIPE, SIG_IGN);
    /* 10,000 connections on each side: as many descriptors as allowed,
     * in this process and in the servers it starts. */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (bench_wants(argc, argv, "echo")) {
        const int ns[] = {100, 1000};
        for (int t = T_UNIX; t <= T_TCP; t++)
            bench_echo((enum transport)t, 64, ns, 2, "echo64");
    }
    if (bench_wants(argc, argv, "bulk")) {
        const int ns[] = {1, 10};
        for (int t = T_UNIX; t <= T_TCP; t++)
            bench_echo((enum transport)t, (size_t)1 << 20, ns, 2, "echo1M");
    }
    if (bench_wants(argc, argv, "idle")) {
        /* The other side of every connection, and a few to spare. */
        long room = (long)rl.rlim_cur - 64;
        int want = room >= 10000 ? 10000 : (int)room;
        if (want < 10000)
            fprintf(stderr, "bench: RLIMIT_NOFILE's hard limit is %ld: %d idle connections\n",
                    (long)rl.rlim_max, want);
        bench_idle(want);
    }
    if (bench_wants(argc, argv, "flood"))
        for (int t = T_UNIX; t <= T_TCP; t++)
            bench_flood((enum transport)t, 1000);
    if (bench_wants(argc, argv, "accept"))
        for (int t = T_UNIX; t <= T_TCP; t++)
            bench_accept((enum transport)t);
    if (tmpdir[0])
        rmdir(tmpdir);
    return 0;
}
