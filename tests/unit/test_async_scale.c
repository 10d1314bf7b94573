/* The async layer at scale and against hostile peers: a thousand
 * authenticated clients at once (in clear and through TLS), silent connections held while others
 * are served, idle timeouts by the hundred, a reader that never reads, a writer that pipelines and
 * never reads, running out of descriptors, churn that reuses descriptors, headers claiming huge
 * messages, descriptors passed unasked, a full Unix backlog, and a loop with more ready descriptors
 * than one batch holds. Counts and times are bounded; CPU and memory are measured here, loosely. */
#include "testlib.h"
#include "tls_certs.h"

#include <mpconn/async.h>
#include <mpconn/loop.h>
#include <mpconn/tls.h>
#ifdef MPCONN_HAVE_LIBUV
#include <mpconn/uv.h>
#endif
#ifdef MPCONN_HAVE_LIBEVENT
#include <mpconn/event.h>
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SKIP_CODE 77 /* CTest's skip status for unit tests */

/* ------------------------------------------------------------ measuring */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* User and system CPU seconds of this process. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* A size line of /proc/self/status ("VmRSS:", resident; "VmData:", the
 * heap and private mappings, touched or not), in KiB. */
static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f != NULL);
    char line[128];
    long kb = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0)
            kb = strtol(line + n, NULL, 10);
    fclose(f);
    CHECK(kb > 0);
    return kb;
}

static long rss_kb(void)
{
    return status_kb("VmRSS:");
}

_Noreturn static void skip(const char *why)
{
    fprintf(stderr, "skipped: %s\n", why);
    exit(SKIP_CODE);
}

/* Raises the soft descriptor limit to n when the hard one allows. */
static void need_fds(rlim_t n)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= n)
        return;
    if (rl.rlim_cur == RLIM_INFINITY)
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < n) {
        char why[160];
        snprintf(why, sizeof why, "needs %lu descriptors, RLIMIT_NOFILE's hard limit is %lu",
                 (unsigned long)n, (unsigned long)rl.rlim_max);
        skip(why);
    }
    rl.rlim_cur = n;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        skip("cannot raise RLIMIT_NOFILE");
}

/* ---------------------------------------------------------------- loops */

/* One loop of some kind, owned by one thread: mpconn's (epoll or poll),
 * libuv's or libevent's. A keep-alive timer makes every slice wait. */
enum { K_EPOLL, K_POLL, K_UV, K_EVENT, K_COUNT };
#define K_OWN ((1 << K_EPOLL) | (1 << K_POLL))
#define K_ALL ((1 << K_COUNT) - 1)

static const char *const kind_names[K_COUNT] = {"mpconn loop, epoll", "mpconn loop, poll", "libuv",
                                                "libevent"};

typedef struct tloop {
    int kind;
    mpconn_loop *own;
    mpconn_timer *keep;
#ifdef MPCONN_HAVE_LIBUV
    uv_loop_t uv;
    uv_timer_t uv_keep, uv_stop;
#endif
#ifdef MPCONN_HAVE_LIBEVENT
    struct event_base *eb;
    struct event *ev_keep;
#endif
} tloop;

static int kind_built(int kind)
{
    switch (kind) {
    case K_EPOLL:
    case K_POLL: return 1;
#ifdef MPCONN_HAVE_LIBUV
    case K_UV: return 1;
#endif
#ifdef MPCONN_HAVE_LIBEVENT
    case K_EVENT: return 1;
#endif
    default: return 0;
    }
}

static void own_keep(mpconn_timer *t, void *data)
{
    (void)t, (void)data;
}

#ifdef MPCONN_HAVE_LIBUV
static void uv_nothing(uv_timer_t *t)
{
    (void)t;
}
static void uv_stop_cb(uv_timer_t *t)
{
    uv_stop(t->loop);
}
#endif

#ifdef MPCONN_HAVE_LIBEVENT
static void ev_nothing(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}
#endif

static tloop *tloop_new(int kind)
{
    tloop *t = calloc(1, sizeof *t);
    CHECK(t != NULL);
    t->kind = kind;
    if (kind == K_EPOLL || kind == K_POLL) {
        CHECK_INT(mpconn_loop_new(&t->own, kind == K_EPOLL ? "epoll" : "poll"), 0);
        CHECK_INT(mpconn_timer_new(&t->keep, t->own, own_keep, NULL), 0);
        CHECK_INT(mpconn_timer_start(t->keep, 1, 1), 0);
    }
#ifdef MPCONN_HAVE_LIBUV
    if (kind == K_UV) {
        CHECK_INT(uv_loop_init(&t->uv), 0);
        uv_timer_init(&t->uv, &t->uv_keep);
        uv_timer_init(&t->uv, &t->uv_stop);
        uv_timer_start(&t->uv_keep, uv_nothing, 1000, 1000);
    }
#endif
#ifdef MPCONN_HAVE_LIBEVENT
    if (kind == K_EVENT) {
        t->eb = event_base_new();
        CHECK(t->eb != NULL);
        t->ev_keep = event_new(t->eb, -1, EV_PERSIST, ev_nothing, NULL);
        struct timeval second = {1, 0};
        CHECK_INT(event_add(t->ev_keep, &second), 0);
    }
#endif
    return t;
}

static void *tloop_arg(tloop *t)
{
#ifdef MPCONN_HAVE_LIBUV
    if (t->kind == K_UV)
        return &t->uv;
#endif
#ifdef MPCONN_HAVE_LIBEVENT
    if (t->kind == K_EVENT)
        return t->eb;
#endif
    return t->own;
}

static const mpconn_adapter *tloop_adapter(tloop *t)
{
#ifdef MPCONN_HAVE_LIBUV
    if (t->kind == K_UV)
        return mpconn_uv_adapter();
#endif
#ifdef MPCONN_HAVE_LIBEVENT
    if (t->kind == K_EVENT)
        return mpconn_event_adapter();
#endif
    return mpconn_loop_adapter();
}

/* Runs the loop for at most `seconds`. */
static void tloop_slice(tloop *t, double seconds)
{
#ifdef MPCONN_HAVE_LIBUV
    if (t->kind == K_UV) {
        uv_timer_start(&t->uv_stop, uv_stop_cb, (uint64_t)(seconds * 1000) + 1, 0);
        uv_run(&t->uv, UV_RUN_DEFAULT);
        uv_timer_stop(&t->uv_stop);
        return;
    }
#endif
#ifdef MPCONN_HAVE_LIBEVENT
    if (t->kind == K_EVENT) {
        struct timeval tv = {0, (suseconds_t)(seconds * 1e6)};
        event_base_loopexit(t->eb, &tv);
        event_base_dispatch(t->eb);
        return;
    }
#endif
    CHECK(mpconn_loop_run_for(t->own, seconds) >= 0);
}

static void tloop_free(tloop *t)
{
    if (t->own) {
        mpconn_timer_close(t->keep, NULL);
        mpconn_loop_free(t->own);
    }
#ifdef MPCONN_HAVE_LIBUV
    if (t->kind == K_UV) {
        uv_close((uv_handle_t *)&t->uv_keep, NULL);
        uv_close((uv_handle_t *)&t->uv_stop, NULL);
        int r = uv_loop_close(&t->uv);
        for (int i = 0; i < 100 && r == UV_EBUSY; i++) {
            uv_run(&t->uv, UV_RUN_NOWAIT);
            r = uv_loop_close(&t->uv);
        }
        CHECK_INT(r, 0); /* every handle of the adapter was closed */
    }
#endif
#ifdef MPCONN_HAVE_LIBEVENT
    if (t->kind == K_EVENT) {
        event_free(t->ev_keep);
        event_base_free(t->eb);
    }
#endif
    free(t);
}

/* Runs t until done(arg) or max seconds; returns done(arg). */
static int run_until(tloop *t, int (*done)(void *), void *arg, double max)
{
    double t0 = now_s();
    while (!done(arg) && now_s() - t0 < max)
        tloop_slice(t, 0.01);
    return done(arg);
}

static int flag_set(void *arg)
{
    return *(volatile int *)arg;
}

static int never(void *arg)
{
    (void)arg;
    return 0;
}

/* Runs fn once for each kind in mask that this build has. */
static void on_kinds(int mask, void (*fn)(int kind))
{
    signal(SIGPIPE, SIG_IGN);
    for (int k = 0; k < K_COUNT; k++) {
        if (!(mask & (1 << k)) || !kind_built(k))
            continue;
        fprintf(stderr, "loop: %s\n", kind_names[k]);
        double t0 = now_s();
        fn(k);
        fprintf(stderr, "loop: %s done in %.2f s\n", kind_names[k], now_s() - t0);
    }
}

static mpconn_opts *keyed_opts(void)
{
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_authkey(o, "scale secret", 12), 0);
    CHECK_INT(mpconn_opts_set_handshake_timeout(o, 60), 0);
    CHECK_INT(mpconn_opts_set_backlog(o, 1024), 0);
    return o;
}

/* ------------------------------------------------- the request server */

/* Answers every request with its bytes each plus one, so a client can tell
 * its own answer from any other. */
typedef struct rsrv {
    tloop *lp;
    mpconn_async_listener *l;
    int open_now, open_peak, accepted, answered, rejects;
    int bad_close; /* a connection closed other than by its peer between messages */
    int last_bad;
    char why[256];
    size_t dropped_fds; /* descriptors passed unasked, of connections gone */
    double idle;        /* > 0: the idle timeout each accepted connection gets */
    int timed_out;      /* closed by that timeout (not counted in bad_close) */
    double first_accept, first_timeout;
    int fdpass; /* accepted connections take passed descriptors in */
} rsrv;

static void answer(uint8_t *dst, const uint8_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (uint8_t)(src[i] + 1);
}

static void srv_message(mpconn_async *a, const void *msg, size_t len, void *data)
{
    rsrv *s = data;
    uint8_t *back = malloc(len ? len : 1);
    CHECK(back != NULL);
    answer(back, msg, len);
    CHECK_INT(mpconn_async_send(a, back, len), 0);
    free(back);
    s->answered++;
}

static void srv_close(mpconn_async *a, int reason, const char *why, void *data)
{
    rsrv *s = data;
    s->open_now--;
    s->dropped_fds += mpconn_async_dropped_fds(a);
    if (reason == -ETIMEDOUT && s->idle > 0) {
        if (s->timed_out++ == 0)
            s->first_timeout = now_s();
    } else if (reason != MPCONN_ERR_EOF && reason != 0) {
        s->bad_close++;
        s->last_bad = reason;
        snprintf(s->why, sizeof s->why, "%s", why);
    }
}

static const mpconn_async_cbs srv_cbs = {
    .size = sizeof(mpconn_async_cbs), .on_message = srv_message, .on_close = srv_close};

static void srv_accept(mpconn_async_listener *l, mpconn_async *a, void *data)
{
    (void)l;
    rsrv *s = data;
    if (s->accepted++ == 0)
        s->first_accept = now_s();
    if (++s->open_now > s->open_peak)
        s->open_peak = s->open_now;
    mpconn_async_set_callbacks(a, &srv_cbs, s);
    if (s->fdpass)
        CHECK_INT(mpconn_async_set_fd_passing(a, 1), 0);
    if (s->idle > 0)
        CHECK_INT(mpconn_async_set_timeouts(a, s->idle, -1), 0);
}

static void srv_reject(void *data, int code, const char *msg)
{
    rsrv *s = data;
    s->rejects++;
    s->last_bad = code;
    snprintf(s->why, sizeof s->why, "%s", msg);
}

static void rsrv_open(rsrv *s, tloop *lp, const char *address, const mpconn_opts *o)
{
    memset(s, 0, sizeof *s);
    s->lp = lp;
    char err[256];
    int r = mpconn_async_listener_open(&s->l, address, o, tloop_adapter(lp), tloop_arg(lp),
                                       srv_accept, s, err, sizeof err);
    if (r < 0)
        fprintf(stderr, "listener: %s\n", err);
    CHECK_INT(r, 0);
    mpconn_async_listener_on_reject(s->l, srv_reject, s);
}

/* ------------------------------------- a thousand authenticated clients */

#define MANY_CLIENTS 1000
#define MANY_THREADS 2
#define MANY_REQUESTS 5

typedef struct herd herd;

typedef struct cli {
    herd *h;
    int id;
    int sent, answered;
    int opened, closed, reason;
    int wrong; /* an answer that was not the answer to this client's request */
    mpconn_async *a;
} cli;

/* Clients on one thread's own loop. */
typedef struct crowd {
    herd *h;
    int first, n;
    cli *c;
    int connect_failed;
    char err[256];
    pthread_t th;
} crowd;

struct herd {
    int kind;
    char address[160];
    const mpconn_opts *o;
    atomic_int done;    /* clients that have every answer */
    atomic_int release; /* set by the server's thread: close now */
    atomic_int failed;  /* clients closed before the end, or never started */
    crowd crowds[MANY_THREADS];
};

static herd *herd_new(int kind, const mpconn_opts *o, const char *address)
{
    herd *h = calloc(1, sizeof *h);
    CHECK(h != NULL);
    h->kind = kind;
    h->o = o;
    snprintf(h->address, sizeof h->address, "%s", address);
    atomic_init(&h->done, 0);
    atomic_init(&h->release, 0);
    atomic_init(&h->failed, 0);
    return h;
}

/* Request seq of client id: mostly small, a few of 256 KiB so that
 * writes come out in parts on both sides. */
static size_t request_len(int id, int seq)
{
    if (id % 50 == 7 && seq == 2)
        return 256 * 1024;
    return 8 + (size_t)((id * 37 + seq * 101) % 2000);
}

static void fill_request(uint8_t *p, size_t n, int id, int seq)
{
    memcpy(p, &id, 4);
    memcpy(p + 4, &seq, 4);
    for (size_t k = 8; k < n; k++)
        p[k] = (uint8_t)(k * 31 + (size_t)id + (size_t)seq);
}

static void cli_send_next(cli *c)
{
    size_t n = request_len(c->id, c->sent);
    uint8_t *p = malloc(n);
    CHECK(p != NULL);
    fill_request(p, n, c->id, c->sent);
    CHECK_INT(mpconn_async_send(c->a, p, n), 0);
    free(p);
    c->sent++;
}

static void cli_open(mpconn_async *a, void *data)
{
    cli *c = data;
    c->a = a;
    c->opened = 1;
    cli_send_next(c);
}

static void cli_message(mpconn_async *a, const void *msg, size_t len, void *data)
{
    (void)a;
    cli *c = data;
    size_t n = request_len(c->id, c->answered);
    uint8_t *want = malloc(n), *req = malloc(n);
    CHECK(want && req);
    fill_request(req, n, c->id, c->answered);
    answer(want, req, n);
    if (len != n || memcmp(msg, want, n) != 0)
        c->wrong++;
    free(want);
    free(req);
    c->answered++;
    if (c->answered < MANY_REQUESTS)
        cli_send_next(c);
    else
        atomic_fetch_add(&c->h->done, 1);
}

static void cli_close(mpconn_async *a, int reason, const char *why, void *data)
{
    (void)a;
    cli *c = data;
    c->closed = 1;
    c->reason = reason;
    c->a = NULL;
    if (reason != 0) {
        atomic_fetch_add(&c->h->failed, 1);
        fprintf(stderr, "client %d closed (%d): %s\n", c->id, reason, why);
    }
}

static const mpconn_async_cbs cli_cbs = {.size = sizeof(mpconn_async_cbs),
                                         .on_open = cli_open,
                                         .on_message = cli_message,
                                         .on_close = cli_close};

static int released(void *arg)
{
    crowd *f = arg;
    if (atomic_load(&f->h->release))
        return 1;
    for (int i = 0; i < f->n; i++)
        if (f->c[i].closed)
            return 1; /* one died early: the test fails, stop waiting */
    return 0;
}

static void *crowd_run(void *arg)
{
    crowd *f = arg;
    tloop *lp = tloop_new(f->h->kind);
    for (int i = 0; i < f->n; i++) {
        cli *c = &f->c[i];
        c->h = f->h;
        c->id = f->first + i;
        mpconn_async *a;
        int r = mpconn_async_connect(&a, f->h->address, f->h->o, &cli_cbs, c, tloop_adapter(lp),
                                     tloop_arg(lp), f->err, sizeof f->err);
        if (r < 0) {
            atomic_fetch_add(&f->h->failed, 1);
            f->connect_failed++;
            c->closed = 1;
            c->reason = r;
            continue;
        }
        c->a = a;
        if (i % 100 == 99)
            tloop_slice(lp, 0); /* let the first handshakes start meanwhile */
    }
    run_until(lp, released, f, 90);
    for (int i = 0; i < f->n; i++)
        if (f->c[i].a)
            mpconn_async_close(f->c[i].a);
    tloop_slice(lp, 0.01);
    tloop_free(lp);
    return NULL;
}

typedef struct {
    herd *h;
    rsrv *s;
    int want; /* clients to have all their answers */
} herd_watch;

static int herd_done(void *arg)
{
    herd_watch *w = arg;
    return atomic_load(&w->h->done) == w->want || atomic_load(&w->h->failed) || w->s->bad_close ||
           w->s->rejects;
}

static int herd_gone(void *arg)
{
    herd_watch *w = arg;
    return w->s->open_now == 0 && w->s->accepted > 0;
}

/* With tls, both sides speak TLS (the server's certificate ECDSA, so that
 * a thousand handshakes stay quick) and authenticate inside it. */
static void thousand_clients(int kind, int tls)
{
    need_fds(2 * MANY_CLIENTS + 200);
    tloop *lp = tloop_new(kind);
    mpconn_opts *o = keyed_opts(), *co = o;
    mpconn_tls_config *scfg = NULL, *ccfg = NULL;
    if (tls) {
        CHECK_INT(mpconn_tls_config_new(&scfg, MPCONN_TLS_SERVER), 0);
        CHECK_INT(
            mpconn_tls_config_set_cert_file(scfg, cert("server_ec.pem"), cert("server_ec.key")), 0);
        CHECK_INT(mpconn_tls_config_new(&ccfg, MPCONN_TLS_CLIENT), 0);
        CHECK_INT(mpconn_tls_config_set_ca_file(ccfg, cert("ca.pem")), 0);
        CHECK_INT(mpconn_opts_set_tls(o, scfg), 0);
        co = keyed_opts();
        CHECK_INT(mpconn_opts_set_tls(co, ccfg), 0);
    }
    rsrv s;
    rsrv_open(&s, lp, tls ? "tls:127.0.0.1:0" : "127.0.0.1:0", o);
    herd *h = herd_new(kind, co, mpconn_async_listener_address(s.l));
    cli *all = calloc(MANY_CLIENTS, sizeof *all);
    CHECK(all != NULL);
    int per = MANY_CLIENTS / MANY_THREADS;
    for (int t = 0; t < MANY_THREADS; t++) {
        crowd *f = &h->crowds[t];
        f->h = h;
        f->first = t * per;
        f->n = per;
        f->c = all + t * per;
        CHECK(pthread_create(&f->th, NULL, crowd_run, f) == 0);
    }
    herd_watch w = {h, &s, MANY_CLIENTS};
    double t0 = now_s();
    int all_done = run_until(lp, herd_done, &w, 90);
    double took = now_s() - t0;
    atomic_store(&h->release, 1);
    run_until(lp, herd_gone, &w, 30);
    for (int t = 0; t < MANY_THREADS; t++)
        pthread_join(h->crowds[t].th, NULL);
    tloop_slice(lp, 0.01);
    fprintf(stderr, "%d clients x %d requests in %.2f s; %d open at once at the server\n",
            MANY_CLIENTS, MANY_REQUESTS, took, s.open_peak);
    if (s.rejects || s.bad_close)
        fprintf(stderr, "server: %d rejects, %d bad closes, last %d: %s\n", s.rejects, s.bad_close,
                s.last_bad, s.why);
    for (int t = 0; t < MANY_THREADS; t++)
        if (h->crowds[t].connect_failed)
            fprintf(stderr, "thread %d: %d connects failed: %s\n", t, h->crowds[t].connect_failed,
                    h->crowds[t].err);
    int wrong = 0, short_of = 0, early = 0;
    for (int i = 0; i < MANY_CLIENTS; i++) {
        wrong += all[i].wrong;
        short_of += all[i].answered != MANY_REQUESTS;
        early += all[i].reason != 0;
    }
    CHECK_INT(wrong, 0);
    CHECK_INT(short_of, 0);
    CHECK_INT(early, 0);
    CHECK(all_done);
    CHECK_INT(s.rejects, 0);
    CHECK_INT(s.bad_close, 0);
    CHECK_INT(s.accepted, MANY_CLIENTS);
    CHECK_INT(s.answered, MANY_CLIENTS * MANY_REQUESTS);
    /* Nobody closes before every client has all its answers: all were open
     * together. */
    CHECK_INT(s.open_peak, MANY_CLIENTS);
    CHECK_INT(s.open_now, 0);
    mpconn_async_listener_free(s.l);
    tloop_slice(lp, 0.01);
    tloop_free(lp);
    if (co != o)
        mpconn_opts_free(co);
    mpconn_opts_free(o);
    mpconn_tls_config_free(scfg);
    mpconn_tls_config_free(ccfg);
    free(all);
    free(h);
}

static void thousand_clients_on(int kind)
{
    thousand_clients(kind, 0);
}

TEST(thousand_authenticated_clients_request_response)
{
    on_kinds(K_ALL, thousand_clients_on);
}

static void thousand_tls_clients_on(int kind)
{
    thousand_clients(kind, 1);
}

/* A thousand TLS clients with an authkey at once against one server on
 * each loop, every one answered. */
TEST(thousand_tls_clients_with_authkey)
{
    on_kinds(K_ALL, thousand_tls_clients_on);
}

/* ----------------------- silent connections held while others are served */

#define SILENT_RAW 300   /* connected, never a byte: held in the handshake */
#define SILENT_IDLE 200  /* authenticated, then never a byte */
#define BUSY_CLIENTS 20  /* served meanwhile, one after the other */
#define BUSY_ROUNDS 10   /* round trips each */
#define PROMPT_BOUND 2.0 /* seconds for one handshake or round trip, loosely */

static int unix_connect(const char *path)
{
    struct sockaddr_un sa = {0};
    sa.sun_family = AF_UNIX;
    CHECK(strlen(path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -errno;
    }
    return fd;
}

typedef struct holder {
    const char *address;
    const mpconn_opts *o;
    int n;
    atomic_int opened;
    atomic_int release;
    int failed;
    char err[256];
} holder;

/* Opens n authenticated connections and keeps them, silent, until told. */
static void *hold_idle(void *arg)
{
    holder *h = arg;
    mpconn_conn **c = calloc((size_t)h->n, sizeof *c);
    CHECK(c != NULL);
    for (int i = 0; i < h->n; i++) {
        if (mpconn_client(&c[i], h->address, h->o, h->err, sizeof h->err) < 0) {
            h->failed++;
            c[i] = NULL;
        }
        atomic_fetch_add(&h->opened, 1);
    }
    double t0 = now_s();
    while (!atomic_load(&h->release) && now_s() - t0 < 60) {
        struct timespec ms = {0, 10000000};
        nanosleep(&ms, NULL);
    }
    for (int i = 0; i < h->n; i++)
        mpconn_conn_free(c[i]);
    free(c);
    return NULL;
}

typedef struct busy {
    const char *address;
    const mpconn_opts *o;
    int ok;
    double worst; /* the slowest handshake or round trip, seconds */
    atomic_int done;
    char err[256];
} busy;

static void *busy_clients(void *arg)
{
    busy *b = arg;
    for (int i = 0; i < BUSY_CLIENTS; i++) {
        double t = now_s();
        mpconn_conn *c;
        if (mpconn_client(&c, b->address, b->o, b->err, sizeof b->err) < 0)
            break;
        if (now_s() - t > b->worst)
            b->worst = now_s() - t;
        for (int r = 0; r < BUSY_ROUNDS; r++) {
            uint8_t req[300], want[300];
            size_t n = 8 + request_len(i, r) % (sizeof req - 8);
            fill_request(req, n, i, r);
            answer(want, req, n);
            t = now_s();
            void *back = NULL;
            size_t blen = 0;
            if (mpconn_conn_send_bytes(c, req, n) == 0 &&
                mpconn_conn_recv_bytes(c, &back, &blen, 0) == 0)
                b->ok += blen == n && memcmp(back, want, n) == 0;
            free(back);
            if (now_s() - t > b->worst)
                b->worst = now_s() - t;
        }
        mpconn_conn_free(c);
    }
    atomic_store(&b->done, 1);
    return NULL;
}

typedef struct chatter chatter;

/* What the predicates of the next two scenarios look at. */
typedef struct {
    rsrv *s;
    holder *h;
    busy *b;
    chatter *ch;
} peers_watch;

static int idle_all_open(void *arg)
{
    peers_watch *w = arg;
    return atomic_load(&w->h->opened) == w->h->n && w->s->open_now == w->h->n - w->h->failed;
}

static int busy_done(void *arg)
{
    return atomic_load(&((peers_watch *)arg)->b->done);
}

/* Only the idle holders are open: every busy client's close was seen. */
static int busy_gone(void *arg)
{
    peers_watch *w = arg;
    return w->s->open_now == w->h->n - w->h->failed;
}

static int all_closed(void *arg)
{
    return ((peers_watch *)arg)->s->open_now == 0;
}

static void silent_connections_on(int kind)
{
    need_fds(2 * (SILENT_RAW + SILENT_IDLE) + 200);
    tloop *lp = tloop_new(kind);
    mpconn_opts *o = keyed_opts();
    CHECK_INT(mpconn_opts_set_recv_timeout(o, 20), 0); /* a stuck server fails, not hangs */
    rsrv s;
    rsrv_open(&s, lp, NULL, o); /* a fresh Unix socket */
    const char *address = mpconn_async_listener_address(s.l);
    int raw[SILENT_RAW];
    for (int i = 0; i < SILENT_RAW; i++) {
        raw[i] = unix_connect(address);
        CHECK(raw[i] >= 0);
        if (i % 50 == 49)
            tloop_slice(lp, 0);
    }
    holder h = {address, o, SILENT_IDLE, 0, 0, 0, ""};
    atomic_init(&h.opened, 0);
    atomic_init(&h.release, 0);
    busy b = {address, o, 0, 0, 0, ""};
    atomic_init(&b.done, 0);
    peers_watch w = {&s, &h, &b, NULL};
    pthread_t th_idle, th_busy;
    CHECK(pthread_create(&th_idle, NULL, hold_idle, &h) == 0);
    CHECK(run_until(lp, idle_all_open, &w, 60));
    CHECK_INT(h.failed, 0);
    CHECK_INT(mpconn_async_listener_handshakes(s.l), SILENT_RAW);
    CHECK_INT(s.open_now, SILENT_IDLE);
    double t0 = now_s();
    CHECK(pthread_create(&th_busy, NULL, busy_clients, &b) == 0);
    CHECK(run_until(lp, busy_done, &w, 60));
    pthread_join(th_busy, NULL);
    fprintf(stderr, "%d clients x %d round trips beside %d silent peers in %.2f s, worst %.3f s\n",
            BUSY_CLIENTS, BUSY_ROUNDS, SILENT_RAW + SILENT_IDLE, now_s() - t0, b.worst);
    if (b.ok != BUSY_CLIENTS * BUSY_ROUNDS)
        fprintf(stderr, "busy clients: %s\n", b.err);
    CHECK_INT(b.ok, BUSY_CLIENTS * BUSY_ROUNDS);
    CHECK(b.worst < PROMPT_BOUND);
    /* The silent ones are all still there: nobody was dropped to serve the
     * others, and they did not time out. The last busy client's end of
     * file may not have been read yet. */
    run_until(lp, busy_gone, &w, 10);
    CHECK_INT(mpconn_async_listener_handshakes(s.l), SILENT_RAW);
    CHECK_INT(s.open_now, SILENT_IDLE);
    CHECK_INT(s.rejects, 0);
    atomic_store(&h.release, 1);
    pthread_join(th_idle, NULL);
    for (int i = 0; i < SILENT_RAW; i++)
        close(raw[i]);
    CHECK(run_until(lp, all_closed, &w, 20));
    run_until(lp, never, NULL, 0.05); /* the handshakes see their end of file */
    CHECK_INT(mpconn_async_listener_handshakes(s.l), 0);
    CHECK_INT(s.bad_close, 0);
    mpconn_async_listener_free(s.l);
    tloop_slice(lp, 0.01);
    tloop_free(lp);
    mpconn_opts_free(o);
}

TEST(silent_connections_delay_nobody)
{
    on_kinds(K_ALL, silent_connections_on);
}

/* ------------------------------------------------ idle timeouts at scale */

#define IDLE_SILENT 500 /* say nothing after the handshake */
#define IDLE_CHATTY 100 /* a round trip each every CHAT_GAP seconds */
#define IDLE_TIMEOUT 0.5
#define CHAT_GAP 0.05
#define CHAT_ROUNDS 25 /* 1.25 s of chatter or more: past every silent one's timeout */

struct chatter {
    const char *address;
    const mpconn_opts *o;
    atomic_int opened, done;
    int ok, failed;
    char err[256];
};

static void chat_once(chatter *ch, mpconn_conn *c, int i, int r)
{
    uint8_t req[64], want[64];
    size_t len = 8 + request_len(i, r) % (sizeof req - 8);
    fill_request(req, len, i, r);
    answer(want, req, len);
    void *back = NULL;
    size_t blen = 0;
    if (mpconn_conn_send_bytes(c, req, len) == 0 &&
        mpconn_conn_recv_bytes(c, &back, &blen, 0) == 0 && blen == len &&
        memcmp(back, want, len) == 0)
        ch->ok++;
    else
        ch->failed++;
    free(back);
}

/* Keeps IDLE_CHATTY connections busy, each well inside the idle timeout
 * (from its handshake on: opening the others takes far less). */
static void *chatter_run(void *arg)
{
    chatter *ch = arg;
    mpconn_conn *c[IDLE_CHATTY];
    int n = 0;
    for (; n < IDLE_CHATTY; n++) {
        if (mpconn_client(&c[n], ch->address, ch->o, ch->err, sizeof ch->err) < 0)
            break;
        chat_once(ch, c[n], n, 0);
    }
    ch->failed += IDLE_CHATTY - n;
    atomic_store(&ch->opened, 1);
    for (int r = 1; r <= CHAT_ROUNDS && !ch->failed; r++) {
        for (int i = 0; i < n; i++)
            chat_once(ch, c[i], i, r);
        sleep_s(CHAT_GAP);
    }
    atomic_store(&ch->done, 1);
    /* Silent from now on: the server's timeout ends these too. */
    for (int i = 0; i < n; i++) {
        void *back = NULL;
        size_t blen;
        if (mpconn_conn_recv_bytes(c[i], &back, &blen, 0) != MPCONN_ERR_EOF)
            ch->failed++;
        free(back);
        mpconn_conn_free(c[i]);
    }
    return NULL;
}

static int idle_silent_gone(void *arg)
{
    peers_watch *w = arg;
    return w->s->timed_out >= IDLE_SILENT;
}

static int chatter_done(void *arg)
{
    return atomic_load(&((peers_watch *)arg)->ch->done);
}

static int idle_all_gone(void *arg)
{
    peers_watch *w = arg;
    return w->s->timed_out == IDLE_SILENT + IDLE_CHATTY && w->s->open_now == 0;
}

static int idle_holder_ready(void *arg)
{
    peers_watch *w = arg;
    return atomic_load(&w->h->opened) == w->h->n;
}

static int chatter_opened(void *arg)
{
    return atomic_load(&((peers_watch *)arg)->ch->opened);
}

/* Hundreds of connections with an idle timeout each: the silent ones are
 * closed once it passes (not before), the chatty ones only after they
 * fall silent too. One timer each, moved on every byte. */
static void idle_timeouts_on(int kind)
{
    need_fds(2 * (IDLE_SILENT + IDLE_CHATTY) + 100);
    tloop *lp = tloop_new(kind);
    mpconn_opts *o = keyed_opts();
    CHECK_INT(mpconn_opts_set_recv_timeout(o, 20), 0);
    rsrv s;
    rsrv_open(&s, lp, NULL, o);
    s.idle = IDLE_TIMEOUT;
    const char *address = mpconn_async_listener_address(s.l);
    holder h = {address, o, IDLE_SILENT, 0, 0, 0, ""};
    atomic_init(&h.opened, 0);
    atomic_init(&h.release, 0);
    chatter ch = {address, o, 0, 0, 0, 0, ""};
    atomic_init(&ch.opened, 0);
    atomic_init(&ch.done, 0);
    peers_watch w = {&s, &h, NULL, &ch};
    pthread_t th_idle, th_chat;
    CHECK(pthread_create(&th_idle, NULL, hold_idle, &h) == 0);
    CHECK(run_until(lp, idle_holder_ready, &w, 30));
    CHECK(pthread_create(&th_chat, NULL, chatter_run, &ch) == 0);
    CHECK(run_until(lp, chatter_opened, &w, 30));
    CHECK(run_until(lp, idle_silent_gone, &w, 10));
    int silent_gone_while_chatting = !atomic_load(&ch.done);
    CHECK(run_until(lp, chatter_done, &w, 30));
    int during = s.timed_out;
    CHECK(run_until(lp, idle_all_gone, &w, 10));
    atomic_store(&h.release, 1);
    pthread_join(th_idle, NULL);
    pthread_join(th_chat, NULL);
    fprintf(stderr,
            "%d silent and %d chatty connections, idle timeout %.1f s: first closed after "
            "%.3f s; %d closed while the chatty ones talked, then all; %d round trips\n",
            IDLE_SILENT, IDLE_CHATTY, IDLE_TIMEOUT, s.first_timeout - s.first_accept, during,
            ch.ok);
    if (ch.failed)
        fprintf(stderr, "chatty clients: %d failures: %s\n", ch.failed, ch.err);
    CHECK_INT(h.failed, 0);
    CHECK_INT(ch.failed, 0);
    CHECK_INT(ch.ok, IDLE_CHATTY * (CHAT_ROUNDS + 1));
    CHECK(silent_gone_while_chatting);
    CHECK_INT(during, IDLE_SILENT); /* no chatty one timed out while it talked */
    CHECK(s.first_timeout - s.first_accept >= IDLE_TIMEOUT - 0.01);
    CHECK_INT(s.bad_close, 0);
    CHECK_INT(s.rejects, 0);
    mpconn_async_listener_free(s.l);
    tloop_slice(lp, 0.01);
    tloop_free(lp);
    mpconn_opts_free(o);
}

TEST(idle_timeouts_by_the_hundred)
{
    on_kinds(K_ALL, idle_timeouts_on);
}

/* ------------------------------------------- a reader that never reads */

#define PUMP_MSG 65536
#define PUMP_WINDOW 1.0 /* seconds the reader does not read */
#define RSS_BOUND_KB (32 * 1024)
#define CPU_BOUND 0.3 /* seconds of CPU over the window */

enum { PUMP_PRODUCER, PUMP_DRAIN };

/* The server streams to whoever sends "go": from a producer, or by
 * filling up to the high watermark and waiting for on_drain. */
typedef struct pump {
    int mode;
    int started, closed, reason;
    uint64_t sent;
    size_t max_queued;
    int drains;
    mpconn_async *a;
} pump;

static uint8_t pump_block[PUMP_MSG];

static void pump_note(pump *p, mpconn_async *a)
{
    p->sent++;
    if (mpconn_async_queued(a) > p->max_queued)
        p->max_queued = mpconn_async_queued(a);
}

static int pump_produce(mpconn_async *a, void *data)
{
    pump *p = data;
    if (mpconn_async_send(a, pump_block, sizeof pump_block) < 0)
        return 0;
    pump_note(p, a);
    return 1;
}

static void pump_fill(pump *p, mpconn_async *a)
{
    for (int i = 0; i < 1000 && !mpconn_async_above_high(a); i++) {
        if (mpconn_async_send(a, pump_block, sizeof pump_block) < 0)
            return;
        pump_note(p, a);
    }
}

static void pump_drain(mpconn_async *a, void *data)
{
    pump *p = data;
    p->drains++;
    pump_fill(p, a);
}

static void pump_message(mpconn_async *a, const void *msg, size_t len, void *data)
{
    pump *p = data;
    if (len != 2 || memcmp(msg, "go", 2) != 0 || p->started)
        return;
    p->started = 1;
    if (p->mode == PUMP_PRODUCER)
        mpconn_async_set_producer(a, 1);
    else
        pump_fill(p, a);
}

static void pump_close(mpconn_async *a, int reason, const char *why, void *data)
{
    (void)a, (void)why;
    pump *p = data;
    p->closed = 1;
    p->reason = reason;
    p->a = NULL;
}

static const mpconn_async_cbs pump_cbs = {.size = sizeof(mpconn_async_cbs),
                                          .on_message = pump_message,
                                          .on_close = pump_close,
                                          .on_drain = pump_drain,
                                          .produce = pump_produce};

static void pump_accept(mpconn_async_listener *l, mpconn_async *a, void *data)
{
    (void)l;
    pump *p = data;
    p->a = a;
    mpconn_async_set_callbacks(a, &pump_cbs, p);
}

typedef struct sluggard {
    const char *address;
    const mpconn_opts *o;
    atomic_int release;
    int ok;
} sluggard;

/* Asks for the stream, then never reads; closes when told. */
static void *sluggard_run(void *arg)
{
    sluggard *g = arg;
    mpconn_conn *c;
    char err[256];
    if (mpconn_client(&c, g->address, g->o, err, sizeof err) < 0)
        return NULL;
    g->ok = mpconn_conn_send_bytes(c, "go", 2) == 0;
    double t0 = now_s();
    while (!atomic_load(&g->release) && now_s() - t0 < 60) {
        struct timespec ms = {0, 10000000};
        nanosleep(&ms, NULL);
    }
    mpconn_conn_free(c);
    return NULL;
}

static void slow_reader_case(int kind, int mode)
{
    tloop *lp = tloop_new(kind);
    mpconn_opts *o = keyed_opts();
    pump p = {0};
    p.mode = mode;
    mpconn_async_listener *l;
    char err[256];
    CHECK_INT(mpconn_async_listener_open(&l, NULL, o, tloop_adapter(lp), tloop_arg(lp), pump_accept,
                                         &p, err, sizeof err),
              0);
    sluggard g = {mpconn_async_listener_address(l), o, 0, 0};
    atomic_init(&g.release, 0);
    long rss0 = rss_kb();
    pthread_t th;
    CHECK(pthread_create(&th, NULL, sluggard_run, &g) == 0);
    CHECK(run_until(lp, flag_set, &p.started, 20));
    run_until(lp, never, NULL, 0.3); /* the socket's buffers fill up */
    uint64_t sent_before = p.sent;
    double cpu0 = cpu_s(), t0 = now_s();
    long peak = rss_kb();
    while (now_s() - t0 < PUMP_WINDOW) {
        tloop_slice(lp, 0.05);
        long r = rss_kb();
        if (r > peak)
            peak = r;
    }
    double cpu = cpu_s() - cpu0;
    fprintf(stderr,
            "%s: %llu messages of %d bytes queued, at most %zu bytes waiting; rss %ld -> %ld "
            "KiB; %.3f s CPU in %.1f s; %d drains\n",
            mode == PUMP_PRODUCER ? "producer" : "on_drain", (unsigned long long)p.sent, PUMP_MSG,
            p.max_queued, rss0, peak, cpu, PUMP_WINDOW, p.drains);
    CHECK(!p.closed);
    /* What is queued stays at the watermark plus one message. */
    if (mode == PUMP_PRODUCER)
        CHECK(p.max_queued <= 16384 + PUMP_MSG + 8);
    else
        CHECK(p.max_queued <= 65536 + PUMP_MSG + 8);
    /* The peer took nothing during the window: hardly anything was made. */
    CHECK(p.sent - sent_before <= 2);
    CHECK(peak - rss0 < RSS_BOUND_KB);
    CHECK(cpu < CPU_BOUND);
    atomic_store(&g.release, 1);
    CHECK(run_until(lp, flag_set, &p.closed, 20));
    pthread_join(th, NULL);
    CHECK(g.ok);
    CHECK(p.reason != 0); /* the peer went away, the server did not close */
    mpconn_async_listener_free(l);
    tloop_slice(lp, 0.01);
    tloop_free(lp);
    mpconn_opts_free(o);
}

static void slow_reader_producer_on(int kind)
{
    slow_reader_case(kind, PUMP_PRODUCER);
}

static void slow_reader_drain_on(int kind)
{
    slow_reader_case(kind, PUMP_DRAIN);
}

TEST(slow_reader_producer_keeps_the_server_small)
{
    on_kinds(K_ALL, slow_reader_producer_on);
}

TEST(slow_reader_on_drain_keeps_the_server_small)
{
    on_kinds(K_ALL, slow_reader_drain_on);
}

/* ------------------------- a writer that pipelines and never reads */

#define PIPELINED 200000 /* 8-byte frames: a 4-byte count in each */
#define PIPE_STALL 1.0   /* seconds the writer writes without reading */

/* An echo server as a careful user writes one: reading pauses while the
 * answers queued are above the high watermark, resumes on drain. */
typedef struct echoer {
    size_t max_queued;
    int pauses, resumes, closed, reason;
} echoer;

static void echoer_message(mpconn_async *a, const void *msg, size_t len, void *data)
{
    echoer *e = data;
    CHECK_INT(mpconn_async_send(a, msg, len), 0);
    if (mpconn_async_queued(a) > e->max_queued)
        e->max_queued = mpconn_async_queued(a);
    if (mpconn_async_above_high(a)) {
        mpconn_async_pause_reading(a);
        e->pauses++;
    }
}

static void echoer_drain(mpconn_async *a, void *data)
{
    echoer *e = data;
    e->resumes++;
    mpconn_async_resume_reading(a);
}

static void echoer_close(mpconn_async *a, int reason, const char *why, void *data)
{
    (void)a, (void)why;
    echoer *e = data;
    e->closed = 1;
    e->reason = reason;
}

static const mpconn_async_cbs echoer_cbs = {.size = sizeof(mpconn_async_cbs),
                                            .on_message = echoer_message,
                                            .on_close = echoer_close,
                                            .on_drain = echoer_drain};

static void echoer_accept(mpconn_async_listener *l, mpconn_async *a, void *data)
{
    (void)l;
    mpconn_async_set_callbacks(a, &echoer_cbs, data);
}

/* Moves what the socket takes of out[*sent..n) and what it gives into
 * in[*got..n); returns 0 when the socket failed. */
static int shuttle(int fd, const uint8_t *out, size_t *sent, uint8_t *in, size_t *got, size_t n,
                   int reading)
{
    if (*sent < n) {
        ssize_t w = send(fd, out + *sent, n - *sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0)
            *sent += (size_t)w;
        else if (w < 0 && errno != EAGAIN)
            return 0;
    }
    if (reading && *got < n) {
        ssize_t r = recv(fd, in + *got, n - *got, MSG_DONTWAIT);
        if (r > 0)
            *got += (size_t)r;
        else if (r == 0 || errno != EAGAIN)
            return 0;
    }
    return 1;
}

static void pipelined_on(int kind)
{
    tloop *lp = tloop_new(kind);
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    echoer e = {0};
    mpconn_async_listener *l;
    char err[256];
    CHECK_INT(mpconn_async_listener_open(&l, NULL, o, tloop_adapter(lp), tloop_arg(lp),
                                         echoer_accept, &e, err, sizeof err),
              0);
    size_t n = (size_t)PIPELINED * 8;
    uint8_t *out = malloc(n), *in = malloc(n);
    CHECK(out && in);
    for (uint32_t i = 0; i < PIPELINED; i++) {
        uint8_t f[8] = {
            0, 0, 0, 4, (uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
        memcpy(out + (size_t)i * 8, f, 8);
    }
    int fd = unix_connect(mpconn_async_listener_address(l));
    CHECK(fd >= 0);
    size_t sent = 0, got = 0;
    long rss0 = rss_kb(), peak = rss0;
    double t0 = now_s();
    while (now_s() - t0 < PIPE_STALL) {
        CHECK(shuttle(fd, out, &sent, in, &got, n, 0));
        tloop_slice(lp, 0.005);
        long r = rss_kb();
        peak = r > peak ? r : peak;
    }
    size_t stalled_at = sent, queued_then = e.max_queued;
    t0 = now_s();
    while (got < n && now_s() - t0 < 30 && !e.closed) {
        CHECK(shuttle(fd, out, &sent, in, &got, n, 1));
        tloop_slice(lp, 0);
    }
    fprintf(stderr,
            "%d frames pipelined: %zu bytes taken while the writer did not read, at most %zu "
            "bytes of answers queued, rss %ld -> %ld KiB; %d pauses, %d resumes\n",
            PIPELINED, stalled_at, queued_then, rss0, peak, e.pauses, e.resumes);
    CHECK(!e.closed);
    CHECK_INT(got, n);
    CHECK(memcmp(in, out, n) == 0); /* every answer, in order */
    CHECK(e.pauses >= 1 && e.resumes >= 1);
    CHECK(queued_then <= 65536 + 8);
    CHECK(e.max_queued <= 65536 + 8);
    CHECK(peak - rss0 < RSS_BOUND_KB);
    close(fd);
    CHECK(run_until(lp, flag_set, &e.closed, 10));
    free(out);
    free(in);
    mpconn_async_listener_free(l);
    tloop_slice(lp, 0.01);
    tloop_free(lp);
    mpconn_opts_free(o);
}

TEST(pipelining_writer_that_never_reads_is_paused_not_buffered)
{
    on_kinds(K_ALL, pipelined_on);
}

/* ----------------------------------------------- out of descriptors */

#define EMFILE_LIMIT 48    /* the server child's RLIMIT_NOFILE */
#define EMFILE_CLIENTS 200 /* connected at once, far more than it can hold */
#define EMFILE_WINDOW 2.0  /* seconds of CPU measured after the flood */
#define EMFILE_CPU_BOUND 0.3

typedef struct emfile_report {
    int rejects, emfile_rejects, accepted, answered, handshakes;
} emfile_report;

typedef struct {
    rsrv s;
    int emfile_rejects;
    int ctl;
} emfile_srv;

static void emfile_reject(void *data, int code, const char *msg)
{
    emfile_srv *e = data;
    if (code == -EMFILE || code == -ENFILE)
        e->emfile_rejects++;
    srv_reject(&e->s, code, msg);
}

static int told_to_stop(void *arg)
{
    emfile_srv *e = arg;
    char c;
    return read(e->ctl, &c, 1) != -1 || errno != EAGAIN;
}

/* The server, in a child with few descriptors: serves until a byte (or end
 * of file) on ctl, then writes its report to res. */
_Noreturn static void emfile_child(int kind, const char *path, int ctl, int res)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = EMFILE_LIMIT;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        _exit(5);
    tloop *lp = tloop_new(kind);
    mpconn_opts *o = keyed_opts();
    emfile_srv e = {0};
    e.ctl = ctl;
    fcntl(ctl, F_SETFL, O_NONBLOCK);
    rsrv_open(&e.s, lp, path, o);
    mpconn_async_listener_on_reject(e.s.l, emfile_reject, &e);
    CHECK(write(res, "r", 1) == 1);
    run_until(lp, told_to_stop, &e, 60);
    emfile_report rep = {e.s.rejects, e.emfile_rejects, e.s.accepted, e.s.answered,
                         (int)mpconn_async_listener_handshakes(e.s.l)};
    mpconn_async_listener_free(e.s.l);
    tloop_free(lp);
    mpconn_opts_free(o);
    CHECK(write(res, &rep, sizeof rep) == (ssize_t)sizeof rep);
    _exit(0);
}

static int read_timed(int fd, void *buf, size_t n, double max)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    size_t got = 0;
    double t0 = now_s();
    while (got < n && now_s() - t0 < max) {
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got == n;
}

/* The server child, seen from the test. */
typedef struct child_srv {
    pid_t pid;
    char dir[32], path[128];
    int ctl, res;
} child_srv;

static void child_start(child_srv *c, int kind)
{
    snprintf(c->dir, sizeof c->dir, "/tmp/mpconn-scale-XXXXXX");
    CHECK(mkdtemp(c->dir) != NULL);
    snprintf(c->path, sizeof c->path, "%s/emfile.sock", c->dir);
    int ctl[2], res[2];
    CHECK(pipe(ctl) == 0 && pipe(res) == 0);
    fflush(stderr);
    c->pid = fork();
    CHECK(c->pid >= 0);
    if (c->pid == 0) {
        close(ctl[1]);
        close(res[0]);
        emfile_child(kind, c->path, ctl[0], res[1]);
    }
    close(ctl[0]);
    close(res[1]);
    c->ctl = ctl[1];
    c->res = res[0];
    char ready;
    CHECK(read_timed(c->res, &ready, 1, 10));
}

static emfile_report child_stop(child_srv *c)
{
    CHECK(write(c->ctl, "s", 1) == 1);
    emfile_report rep;
    CHECK(read_timed(c->res, &rep, sizeof rep, 20));
    int status;
    CHECK(waitpid(c->pid, &status, 0) == c->pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(c->ctl);
    close(c->res);
    unlink(c->path);
    rmdir(c->dir);
    return rep;
}

/* One authenticated round trip as a real client; 0 or the failure. */
static int real_client(const char *path, double timeout, char *err, size_t errlen)
{
    mpconn_opts *o = keyed_opts();
    CHECK_INT(mpconn_opts_set_recv_timeout(o, timeout), 0);
    CHECK_INT(mpconn_opts_set_connect_timeout(o, timeout), 0);
    CHECK_INT(mpconn_opts_set_handshake_timeout(o, timeout), 0);
    mpconn_conn *c;
    int r = mpconn_client(&c, path, o, err, errlen);
    mpconn_opts_free(o);
    if (r < 0)
        return r;
    void *back = NULL;
    size_t blen = 0;
    r = mpconn_conn_send_bytes(c, "abc", 3);
    if (r == 0)
        r = mpconn_conn_recv_bytes(c, &back, &blen, 0);
    if (r < 0)
        snprintf(err, errlen, "%s", mpconn_conn_errmsg(c));
    else if (blen != 3 || memcmp(back, "bcd", 3) != 0)
        r = MPCONN_ERR_PROTO;
    free(back);
    mpconn_conn_free(c);
    return r;
}

static void emfile_on(int kind)
{
    need_fds(EMFILE_CLIENTS + 100);
    child_srv c;
    child_start(&c, kind);
    int fds[EMFILE_CLIENTS];
    for (int i = 0; i < EMFILE_CLIENTS; i++) {
        fds[i] = unix_connect(c.path);
        CHECK(fds[i] >= 0); /* the backlog holds them all */
    }
    sleep_s(0.5); /* the child accepts what it can and sheds the rest */
    double cpu0 = testlib_proc_cpu(c.pid);
    sleep_s(EMFILE_WINDOW);
    double cpu = testlib_proc_cpu(c.pid) - cpu0;
    for (int i = 0; i < EMFILE_CLIENTS; i++)
        close(fds[i]);
    sleep_s(0.3); /* the handshakes held see their end of file */
    /* Descriptors are free again: a real client is served. */
    char err[256] = "";
    int r = real_client(c.path, 10, err, sizeof err);
    if (r < 0)
        fprintf(stderr, "client after the flood: %s\n", err);
    CHECK_INT(r, 0);
    emfile_report rep = child_stop(&c);
    fprintf(stderr,
            "%d clients at a server allowed %d descriptors: %d accepted, %d rejects (%d for "
            "EMFILE); %.3f s CPU in %.1f s after the flood\n",
            EMFILE_CLIENTS, EMFILE_LIMIT, rep.accepted, rep.rejects, rep.emfile_rejects, cpu,
            EMFILE_WINDOW);
    CHECK(rep.emfile_rejects > 0); /* it did run out */
    /* Each shed peer is reported once; a pause without a spare adds one a
     * tenth of a second at most. */
    CHECK(rep.rejects <= EMFILE_CLIENTS + (int)(10 * (EMFILE_WINDOW + 2)));
    CHECK(cpu < EMFILE_CPU_BOUND);
    CHECK_INT(rep.answered, 1);
    CHECK_INT(rep.handshakes, 0);
}

TEST(out_of_descriptors_no_spin_and_recovery)
{
    on_kinds(K_OWN, emfile_on);
}

#define LOCKOUT_SILENT 100 /* more than the child has descriptors */
#define LOCKOUT_TRIES 3

/* Silent peers that hold every descriptor the server has, in their
 * handshakes (far below the handshake cap): a real client still gets in,
 * as it does when the cap is what is reached. */
static void lockout_on(int kind)
{
    need_fds(LOCKOUT_SILENT + 100);
    child_srv c;
    child_start(&c, kind);
    int fds[LOCKOUT_SILENT];
    for (int i = 0; i < LOCKOUT_SILENT; i++) {
        fds[i] = unix_connect(c.path);
        CHECK(fds[i] >= 0);
    }
    sleep_s(0.3);
    char err[256] = "";
    int r = -1, tries = 0;
    double t0 = now_s();
    for (; r < 0 && tries < LOCKOUT_TRIES; tries++)
        r = real_client(c.path, 2, err, sizeof err);
    double took = now_s() - t0;
    for (int i = 0; i < LOCKOUT_SILENT; i++)
        close(fds[i]);
    emfile_report rep = child_stop(&c);
    fprintf(stderr,
            "%d silent peers at a server allowed %d descriptors: a real client %s after %d "
            "tries, %.2f s%s%s; %d rejects (%d for EMFILE)\n",
            LOCKOUT_SILENT, EMFILE_LIMIT, r == 0 ? "served" : "refused", tries, took,
            r < 0 ? ": " : "", r < 0 ? err : "", rep.rejects, rep.emfile_rejects);
    CHECK(rep.emfile_rejects > 0); /* the descriptors did run out */
    CHECK_INT(r, 0);
}

TEST(silent_flood_at_the_descriptor_limit_locks_nobody_out)
{
    on_kinds(1 << K_EPOLL, lockout_on);
}

/* ------------------------------------ churn: descriptors used again */

#define CHURN_TOTAL 2000 /* connections made one after the other */
#define CHURN_SLOTS 100  /* of them open at any time */

/* The server answers one request, then closes when the answer is out; the
 * kernel hands the numbers out again while the loop is in mid-batch. */
static void churn_srv_message(mpconn_async *a, const void *msg, size_t len, void *data)
{
    srv_message(a, msg, len, data);
    mpconn_async_close_when_done(a);
}

static const mpconn_async_cbs churn_srv_cbs = {
    .size = sizeof(mpconn_async_cbs), .on_message = churn_srv_message, .on_close = srv_close};

static void churn_accept(mpconn_async_listener *l, mpconn_async *a, void *data)
{
    srv_accept(l, a, data);
    mpconn_async_set_callbacks(a, &churn_srv_cbs, data);
}

typedef struct churn {
    int kind;
    tloop *lp;
    const char *address;
    const mpconn_opts *o;
    int started, ok, wrong, failed;
    atomic_int finished;
    char err[256];
} churn;

typedef struct slot {
    churn *ch;
    int id, answered;
} slot;

static void churn_start(slot *sl);

static void slot_open(mpconn_async *a, void *data)
{
    slot *sl = data;
    size_t n = request_len(sl->id, 0);
    uint8_t *p = malloc(n);
    CHECK(p != NULL);
    fill_request(p, n, sl->id, 0);
    CHECK_INT(mpconn_async_send(a, p, n), 0);
    free(p);
}

static void slot_message(mpconn_async *a, const void *msg, size_t len, void *data)
{
    (void)a;
    slot *sl = data;
    size_t n = request_len(sl->id, 0);
    uint8_t *req = malloc(n), *want = malloc(n);
    CHECK(req && want);
    fill_request(req, n, sl->id, 0);
    answer(want, req, n);
    if (len == n && memcmp(msg, want, n) == 0)
        sl->answered++;
    else
        sl->ch->wrong++;
    free(req);
    free(want);
}

static void slot_close(mpconn_async *a, int reason, const char *why, void *data)
{
    (void)a;
    slot *sl = data;
    churn *ch = sl->ch;
    if (reason == MPCONN_ERR_EOF && sl->answered == 1) {
        ch->ok++;
    } else {
        ch->failed++;
        snprintf(ch->err, sizeof ch->err, "connection %d: %.200s (%d)", sl->id, why, reason);
    }
    if (ch->ok + ch->failed == CHURN_TOTAL)
        atomic_store(&ch->finished, 1);
    churn_start(sl); /* the next one, from inside the last one's callback */
}

static const mpconn_async_cbs slot_cbs = {.size = sizeof(mpconn_async_cbs),
                                          .on_open = slot_open,
                                          .on_message = slot_message,
                                          .on_close = slot_close};

static void churn_start(slot *sl)
{
    churn *ch = sl->ch;
    if (ch->started == CHURN_TOTAL || ch->failed)
        return;
    sl->id = ch->started++;
    sl->answered = 0;
    mpconn_async *a;
    char err[256];
    if (mpconn_async_connect(&a, ch->address, ch->o, &slot_cbs, sl, tloop_adapter(ch->lp),
                             tloop_arg(ch->lp), err, sizeof err) < 0) {
        ch->failed++;
        snprintf(ch->err, sizeof ch->err, "connect %d: %.200s", sl->id, err);
        atomic_store(&ch->finished, 1);
    }
}

static int churn_finished(void *arg)
{
    return atomic_load(&((churn *)arg)->finished);
}

static void *churn_run(void *arg)
{
    churn *ch = arg;
    ch->lp = tloop_new(ch->kind);
    slot *slots = calloc(CHURN_SLOTS, sizeof *slots);
    CHECK(slots != NULL);
    for (int i = 0; i < CHURN_SLOTS; i++) {
        slots[i].ch = ch;
        churn_start(&slots[i]);
    }
    run_until(ch->lp, churn_finished, ch, 90);
    tloop_slice(ch->lp, 0.01);
    tloop_free(ch->lp);
    free(slots);
    return NULL;
}

typedef struct {
    churn *ch;
    rsrv *s;
} churn_watch;

static int churn_served(void *arg)
{
    churn_watch *w = arg;
    return (atomic_load(&w->ch->finished) && w->s->open_now == 0) || w->s->bad_close ||
           w->s->rejects;
}

static void churn_on(int kind)
{
    need_fds(4 * CHURN_SLOTS + 100);
    tloop *lp = tloop_new(kind);
    mpconn_opts *o = keyed_opts();
    rsrv s;
    memset(&s, 0, sizeof s);
    s.lp = lp;
    char err[256];
    CHECK_INT(mpconn_async_listener_open(&s.l, NULL, o, tloop_adapter(lp), tloop_arg(lp),
                                         churn_accept, &s, err, sizeof err),
              0);
    mpconn_async_listener_on_reject(s.l, srv_reject, &s);
    churn ch;
    memset(&ch, 0, sizeof ch);
    ch.address = mpconn_async_listener_address(s.l);
    ch.o = o;
    atomic_init(&ch.finished, 0);
    ch.kind = kind;
    pthread_t th;
    double t0 = now_s();
    CHECK(pthread_create(&th, NULL, churn_run, &ch) == 0);
    churn_watch w = {&ch, &s};
    run_until(lp, churn_served, &w, 90);
    pthread_join(th, NULL);
    fprintf(stderr,
            "%d connections, %d at a time, in %.2f s: %d answered, %d wrong, %d failed%s%s\n",
            CHURN_TOTAL, CHURN_SLOTS, now_s() - t0, ch.ok, ch.wrong, ch.failed,
            ch.err[0] ? ": " : "", ch.err);
    if (s.rejects || s.bad_close)
        fprintf(stderr, "server: %d rejects, %d bad closes, last %d: %s\n", s.rejects, s.bad_close,
                s.last_bad, s.why);
    CHECK_INT(ch.wrong, 0);
    CHECK_INT(ch.failed, 0);
    CHECK_INT(ch.ok, CHURN_TOTAL);
    CHECK_INT(s.accepted, CHURN_TOTAL);
    CHECK_INT(s.answered, CHURN_TOTAL);
    CHECK_INT(s.rejects, 0);
    CHECK_INT(s.bad_close, 0);
    CHECK(s.open_peak <= CHURN_SLOTS);
    mpconn_async_listener_free(s.l);
    tloop_slice(lp, 0.01);
    tloop_free(lp);
    mpconn_opts_free(o);
}

TEST(churn_reuses_descriptors_without_crosstalk)
{
    on_kinds(K_ALL, churn_on);
}

/* ---------------------------------- claims of messages never sent */

#define CLAIMERS 200
#define CLAIM ((uint64_t)64 << 20) /* each header says 64 MiB */
#define CLAIM_SENT 3000            /* bytes of it each peer really sends */
#define CLAIM_BOUND_KB (64 * 1024)

static void send_claim_part(int fd, size_t n)
{
    static uint8_t junk[CLAIM_SENT];
    CHECK(write(fd, junk, n) == (ssize_t)n);
}

static int all_closed_rsrv(void *arg)
{
    rsrv *s = arg;
    return s->open_now == 0;
}

static int claims_closed(void *arg)
{
    rsrv *s = arg;
    return s->bad_close == CLAIMERS;
}

/* Many peers each begin a message that their header makes huge, then send
 * a trickle of it: what the server holds follows the bytes that came, not
 * what the headers claim (12.5 GiB in all here), resident or not. */
static void claims_on(int kind)
{
    need_fds(2 * CLAIMERS + 100);
    tloop *lp = tloop_new(kind);
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0); /* no key: the bytes go straight to the framing */
    CHECK_INT(mpconn_opts_set_backlog(o, 1024), 0);
    rsrv s;
    rsrv_open(&s, lp, NULL, o);
    long rss0 = rss_kb(), data0 = status_kb("VmData:");
    int fds[CLAIMERS];
    uint8_t hdr[12] = {0xff, 0xff, 0xff, 0xff};
    for (int k = 0; k < 8; k++)
        hdr[4 + k] = (uint8_t)(CLAIM >> (56 - 8 * k));
    for (int i = 0; i < CLAIMERS; i++) {
        fds[i] = unix_connect(mpconn_async_listener_address(s.l));
        CHECK(fds[i] >= 0);
        CHECK(write(fds[i], hdr, sizeof hdr) == (ssize_t)sizeof hdr);
        send_claim_part(fds[i], 1);
        if (i % 50 == 49)
            tloop_slice(lp, 0);
    }
    run_until(lp, never, NULL, 0.2);
    for (int i = 0; i < CLAIMERS; i++)
        send_claim_part(fds[i], CLAIM_SENT - 1); /* a second read for each */
    run_until(lp, never, NULL, 0.2);
    long rss = rss_kb() - rss0, data = status_kb("VmData:") - data0;
    fprintf(stderr,
            "%d peers each claiming %llu MiB and sending %d bytes: rss +%ld KiB, data +%ld "
            "KiB\n",
            CLAIMERS, (unsigned long long)(CLAIM >> 20), CLAIM_SENT, rss, data);
    CHECK_INT(s.open_now, CLAIMERS);
    CHECK_INT(s.bad_close, 0);
    CHECK(rss < CLAIM_BOUND_KB);
    CHECK(data < CLAIM_BOUND_KB);
    for (int i = 0; i < CLAIMERS; i++)
        close(fds[i]);
    CHECK(run_until(lp, claims_closed, &s, 20));
    CHECK_INT(s.last_bad, MPCONN_ERR_EOFMSG); /* each ended inside its message */
    CHECK_INT(s.open_now, 0);
    mpconn_async_listener_free(s.l);
    tloop_slice(lp, 0.01);
    tloop_free(lp);
    mpconn_opts_free(o);
}

TEST(claimed_message_sizes_cost_only_what_arrives)
{
    on_kinds(K_OWN, claims_on);
}

/* ---------------------------------- descriptors passed unasked */

#define PASSERS 100
#define PASSES 20  /* messages each, every one with descriptors attached */
#define PASS_FDS 4 /* descriptors with each message */

/* Sends a framed message with nfd copies of fd attached (SCM_RIGHTS). */
static void send_with_fds(int sock, const uint8_t *msg, size_t n, int fd, int nfd)
{
    uint8_t hdr[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    struct iovec iov[2] = {{hdr, 4}, {(void *)msg, n}};
    int fds[PASS_FDS];
    for (int i = 0; i < nfd; i++)
        fds[i] = fd;
    CHECK(testlib_send_fds(sock, iov, 2, fds, nfd, MSG_NOSIGNAL) == (ssize_t)(4 + n));
}

static int read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return 0;
        got += (size_t)r;
    }
    return 1;
}

static int answered_all(void *arg)
{
    return ((rsrv *)arg)->answered == PASSERS * PASSES;
}

/* Peers attach descriptors to every message they send, which the server
 * never asked for: each is closed as its message is read, none is kept,
 * and the messages themselves arrive intact. */
static void passed_fds_on(int kind)
{
    need_fds(3 * PASSERS + 2 * PASS_FDS * PASSERS + 100);
    tloop *lp = tloop_new(kind);
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_backlog(o, 1024), 0);
    for (int fdpass = 0; fdpass < 2; fdpass++) {
        rsrv s;
        rsrv_open(&s, lp, NULL, o);
        s.fdpass = fdpass;
        int decoy = open("/dev/null", O_RDONLY | O_CLOEXEC);
        CHECK(decoy >= 0);
        int base = testlib_count_dir("/proc/self/fd");
        int peers[PASSERS];
        for (int i = 0; i < PASSERS; i++) {
            peers[i] = unix_connect(mpconn_async_listener_address(s.l));
            CHECK(peers[i] >= 0);
            for (int k = 0; k < PASSES; k++) {
                uint8_t msg[64];
                size_t n = 8 + request_len(i, k) % (sizeof msg - 8);
                fill_request(msg, n, i, k);
                send_with_fds(peers[i], msg, n, decoy, PASS_FDS);
            }
            if (i % 10 == 9)
                tloop_slice(lp, 0); /* the descriptors in flight stay few */
        }
        CHECK(run_until(lp, answered_all, &s, 20));
        int peak = testlib_count_dir("/proc/self/fd");
        /* Every answer, in order, to every peer. */
        int ok = 0;
        for (int i = 0; i < PASSERS; i++) {
            for (int k = 0; k < PASSES; k++) {
                uint8_t msg[64], want[64], got[4 + 64];
                size_t n = 8 + request_len(i, k) % (sizeof msg - 8);
                fill_request(msg, n, i, k);
                answer(want, msg, n);
                CHECK(read_full(peers[i], got, 4 + n)); /* answered already: no wait */
                ok += got[3] == n && memcmp(got + 4, want, n) == 0;
            }
        }
        for (int i = 0; i < PASSERS; i++)
            close(peers[i]);
        CHECK(run_until(lp, all_closed_rsrv, &s, 20));
        tloop_slice(lp, 0.01);
        int after = testlib_count_dir("/proc/self/fd");
        fprintf(stderr,
                "%d peers x %d messages with %d descriptors each: %d answered; %zu descriptors "
                "dropped; open fds %d, at most %d meanwhile, %d after\n",
                PASSERS, PASSES, PASS_FDS, ok, s.dropped_fds, base, peak, after);
        CHECK_INT(ok, PASSERS * PASSES);
        CHECK_INT(s.bad_close, 0);
        /* Taken in and closed, counted; or, with plain reads, dropped by the
         * kernel before they reach the process. */
        CHECK_INT(s.dropped_fds, fdpass ? PASSERS * PASSES * PASS_FDS : 0);
        /* None kept: only the peers' own sockets came and went. */
        CHECK(peak <= base + 2 * PASSERS + PASSERS * PASS_FDS);
        CHECK_INT(after, base);
        close(decoy);
        mpconn_async_listener_free(s.l);
        tloop_slice(lp, 0.01);
    }
    tloop_slice(lp, 0.01);
    tloop_free(lp);
    mpconn_opts_free(o);
}

TEST(descriptors_passed_unasked_are_closed_not_kept)
{
    on_kinds(K_ALL, passed_fds_on);
}

/* ----------------------------- more ready descriptors than one batch */

#define READY_FDS 300 /* a backend hands out at most 256 events at a time */
#define READY_ITERATIONS 10

static void count_cb(mpconn_io *io, int events, void *data)
{
    (void)io, (void)events;
    (*(int *)data)++; /* does not read: the fd stays ready */
}

static void every_ready_fd_on(int kind)
{
    need_fds(2 * READY_FDS + 50);
    mpconn_loop *loop;
    CHECK_INT(mpconn_loop_new(&loop, kind == K_EPOLL ? "epoll" : "poll"), 0);
    int sv[READY_FDS][2];
    int counts[READY_FDS] = {0};
    mpconn_io *io[READY_FDS];
    for (int i = 0; i < READY_FDS; i++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]) == 0);
        CHECK(write(sv[i][1], "x", 1) == 1);
        CHECK_INT(mpconn_io_new(&io[i], loop, sv[i][0], count_cb, &counts[i]), 0);
        CHECK_INT(mpconn_io_set(io[i], MPCONN_READABLE), 0);
    }
    for (int k = 0; k < READY_ITERATIONS; k++)
        CHECK(mpconn_loop_run(loop, MPCONN_RUN_ONCE) >= 0);
    int least = counts[0], most = counts[0], never_served = 0;
    for (int i = 0; i < READY_FDS; i++) {
        least = counts[i] < least ? counts[i] : least;
        most = counts[i] > most ? counts[i] : most;
        never_served += counts[i] == 0;
    }
    fprintf(stderr, "%d ready fds, %d iterations: %d to %d callbacks each, %d never served\n",
            READY_FDS, READY_ITERATIONS, least, most, never_served);
    /* 256 a batch: a fair backend serves each at least 8 times in 10. */
    CHECK_INT(never_served, 0);
    CHECK(least >= READY_ITERATIONS * 256 / READY_FDS - 1);
    for (int i = 0; i < READY_FDS; i++) {
        mpconn_io_close(io[i], NULL);
        close(sv[i][0]);
        close(sv[i][1]);
    }
    mpconn_loop_free(loop);
}

TEST(more_ready_fds_than_a_batch_all_served_epoll)
{
    on_kinds(1 << K_EPOLL, every_ready_fd_on);
}

TEST(more_ready_fds_than_a_batch_all_served_poll)
{
    on_kinds(1 << K_POLL, every_ready_fd_on);
}

/* ---------------------------------- a Unix listener's backlog full */

#define BACKLOG_SMALL 4
#define BACKLOG_CLIENTS 20

/* More async clients than the backlog holds, while the listener is not
 * accepting: like the blocking client (and like TCP, whose SYNs are
 * retried), each connect waits for room instead of failing at once. */
static void backlog_full_on(int kind)
{
    tloop *lp = tloop_new(kind);
    mpconn_opts *o = keyed_opts();
    CHECK_INT(mpconn_opts_set_backlog(o, BACKLOG_SMALL), 0);
    CHECK_INT(mpconn_opts_set_connect_timeout(o, 20), 0);
    rsrv s;
    rsrv_open(&s, lp, NULL, o);
    mpconn_async_listener_pause(s.l);
    herd *h = herd_new(kind, o, mpconn_async_listener_address(s.l));
    cli c[BACKLOG_CLIENTS];
    memset(c, 0, sizeof c);
    int refused = 0;
    char err[256] = "";
    for (int i = 0; i < BACKLOG_CLIENTS; i++) {
        c[i].h = h;
        c[i].id = i;
        mpconn_async *a;
        int r = mpconn_async_connect(&a, h->address, o, &cli_cbs, &c[i], tloop_adapter(lp),
                                     tloop_arg(lp), err, sizeof err);
        if (r < 0) {
            if (!refused)
                fprintf(stderr, "connect %d of %d (backlog %d): %s\n", i + 1, BACKLOG_CLIENTS,
                        BACKLOG_SMALL, err);
            refused++;
            c[i].closed = 1;
        } else {
            c[i].a = a;
        }
    }
    CHECK_INT(refused, 0);
    run_until(lp, never, NULL, 0.2);
    mpconn_async_listener_resume(s.l);
    herd_watch w = {h, &s, BACKLOG_CLIENTS};
    run_until(lp, herd_done, &w, 30);
    int early = 0;
    for (int i = 0; i < BACKLOG_CLIENTS; i++) {
        early += c[i].closed;
        if (c[i].a)
            mpconn_async_close(c[i].a);
    }
    tloop_slice(lp, 0.01);
    CHECK_INT(early, 0);
    CHECK_INT(atomic_load(&h->done), BACKLOG_CLIENTS);
    mpconn_async_listener_free(s.l);
    tloop_slice(lp, 0.01);
    tloop_free(lp);
    mpconn_opts_free(o);
    free(h);
}

TEST(async_unix_connect_waits_for_room_in_the_backlog)
{
    on_kinds(1 << K_EPOLL, backlog_full_on);
}

/* ----------------------------------------- handshakes in progress, heap */

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#define HS_WARM 20
#define HS_PEERS 200
/* What the async listener's heap grows by per silent peer whose handshake
 * waits for the answer to its challenge, in malloc's chunks: the
 * listener's node, which runs the handshake itself (352: its watcher's
 * base, the list links and deadline, the machine of 248 bytes, the peer's
 * name), the loop's watcher of its descriptor (32 + 96), and a share of
 * the loop's descriptor table. It was 1578 bytes; 955 while every
 * handshake ran in a connection of its own; 506 when this bound was set. */
#define HS_HEAP_MAX 512

#ifndef UNDER_ASAN
static size_t heap_used(void)
{
    return mallinfo2().uordblks;
}

/* Connects n silent peers to path without blocking (the loop runs while
 * the backlog is full), and turns the loop until the listener has them all
 * in their handshakes; bounded in turns and time. */
static void silent_peers(mpconn_loop *loop, mpconn_async_listener *l, const char *path, int *fds,
                         int n, size_t want)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    double end = now_s() + 20;
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        CHECK(fds[i] >= 0);
        while (connect(fds[i], (struct sockaddr *)&sa, sizeof sa) < 0) {
            CHECK(errno == EAGAIN && now_s() < end);
            mpconn_loop_run(loop, MPCONN_RUN_NOWAIT);
        }
        if (i % 16 == 15)
            mpconn_loop_run(loop, MPCONN_RUN_NOWAIT);
    }
    for (int k = 0; k < 100000 && mpconn_async_listener_handshakes(l) < want && now_s() < end; k++)
        mpconn_loop_run(loop, MPCONN_RUN_NOWAIT);
    CHECK_INT(mpconn_async_listener_handshakes(l), want);
}

static void never_accept(mpconn_async_listener *l, mpconn_async *a, void *data)
{
    (void)l;
    (void)data;
    mpconn_async_close(a);
}
#endif

/* A silent peer costs the listener's heap a few hundred bytes while its
 * handshake waits: malloc's own count over 200 of them, after a few to
 * warm the allocator and the loop's tables. */
TEST(handshake_in_progress_heap_per_peer)
{
#ifdef UNDER_ASAN
    skip("the sanitizer's allocator is not malloc's: mallinfo2 does not see it");
#else
    need_fds(2 * (HS_WARM + HS_PEERS) + 64);
    char dir[32], path[64];
    snprintf(dir, sizeof dir, "/tmp/mpconn-hsmem-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/l.sock", dir);
    mpconn_loop *loop;
    CHECK_INT(mpconn_loop_new(&loop, NULL), 0);
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_authkey(o, "secret", 6), 0);
    mpconn_async_listener *l;
    char err[256];
    CHECK_INT(mpconn_async_listener_open(&l, path, o, mpconn_loop_adapter(), loop, never_accept,
                                         NULL, err, sizeof err),
              0);
    int fds[HS_WARM + HS_PEERS];
    silent_peers(loop, l, path, fds, HS_WARM, HS_WARM);
    size_t before = heap_used();
    silent_peers(loop, l, path, fds + HS_WARM, HS_PEERS, HS_WARM + HS_PEERS);
    size_t after = heap_used();
    double per = (double)(after - before) / HS_PEERS;
    fprintf(stderr, "heap per handshake in progress: %.0f bytes (at most %d)\n", per, HS_HEAP_MAX);
    CHECK(after > before);
    CHECK(per <= HS_HEAP_MAX);
    for (int i = 0; i < HS_WARM + HS_PEERS; i++)
        close(fds[i]);
    mpconn_async_listener_free(l);
    mpconn_loop_run(loop, MPCONN_RUN_NOWAIT);
    mpconn_loop_free(loop);
    mpconn_opts_free(o);
    unlink(path);
    rmdir(dir);
#endif
}

TESTLIB_MAIN
