/* mpconn_server_start: a server on a loop of the caller's, on every loop
 * the build has (mpconn's on epoll and poll, libuv, libevent), in each
 * kind: framed echo with the handshake, tls:, datagrams, handle_timeout;
 * shutdown from this thread and from a handler, drain, a free with
 * connections open; afterwards no descriptor of the server's is left and
 * (libuv) no handle. The clients run in a process of their own (a FORK
 * server forks this one: no thread of its may be a client), with the
 * blocking API; what they and the hooks (in FORK, the children's) count is
 * in shared memory. */
#define _GNU_SOURCE
#include "loop_drivers.h"
#include "testlib.h"
#include "tls_certs.h"

#include <mpconn/server.h>
#include <mpconn/tls.h>

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEY "loops key"

static int count_fds(void)
{
    return testlib_count_dir("/proc/self/fd");
}

/* The descriptors open before a scenario: after a loop of the driver's has
 * been made and freed once, since libuv keeps a pipe of its own for good
 * from its first loop. */
static int fds_before(void)
{
    free_loop(new_loop());
    return count_fds();
}

/* What the server's hooks saw. */
typedef struct seen {
    atomic_int setups, finishes, messages, errors, timeouts;
    atomic_int stop_on_message; /* "stop" shuts the server down from the handler */
} seen;

static int on_setup(mpconn_request *r, void *data)
{
    (void)r;
    atomic_fetch_add(&((seen *)data)->setups, 1);
    return 0;
}

static int on_message(mpconn_request *r, const void *msg, size_t len, void *data)
{
    seen *v = data;
    atomic_fetch_add(&v->messages, 1);
    if (len == 4 && memcmp(msg, "stop", 4) == 0)
        mpconn_server_shutdown(mpconn_request_server(r));
    return mpconn_async_send(mpconn_request_async(r), msg, len);
}

/* THREADS and FORK streams: every message back until the end of the
 * stream; datagrams (any kind): the datagram back. */
static int on_handle(mpconn_request *r, void *data)
{
    seen *v = data;
    mpconn_conn *c = mpconn_request_conn(r);
    if (!c) {
        atomic_fetch_add(&v->messages, 1);
        size_t len;
        const void *msg = mpconn_request_data(r, &len);
        return mpconn_request_reply(r, msg, len);
    }
    void *msg;
    size_t len;
    int rc;
    while ((rc = mpconn_conn_recv_bytes(c, &msg, &len, 0)) == 0) {
        atomic_fetch_add(&v->messages, 1);
        rc = mpconn_conn_send_bytes(c, msg, len);
        free(msg);
        if (rc < 0)
            return rc;
    }
    return rc == MPCONN_ERR_EOF ? 0 : rc;
}

/* A FORK child dies with the process that serves (its parent). */
static void die_with_parent(mpconn_request *r, void *data)
{
    (void)r, (void)data;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static void on_finish(mpconn_request *r, void *data)
{
    (void)r;
    atomic_fetch_add(&((seen *)data)->finishes, 1);
}

static void on_error(mpconn_server *s, mpconn_request *r, int code, const char *message, void *data)
{
    (void)s, (void)r, (void)code;
    fprintf(stderr, "server error: %s\n", message);
    atomic_fetch_add(&((seen *)data)->errors, 1);
}

static void on_timeout(mpconn_server *s, void *data)
{
    (void)s;
    atomic_fetch_add(&((seen *)data)->timeouts, 1);
}

static mpconn_opts *keyed(void)
{
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_authkey(o, KEY, strlen(KEY)), 0);
    CHECK_INT(mpconn_opts_set_handshake_timeout(o, 10), 0);
    return o;
}

static mpconn_opts *tls_opts(int role)
{
    mpconn_opts *o = keyed();
    mpconn_tls_config *cfg = cert_config(role);
    CHECK_INT(mpconn_opts_set_tls(o, cfg), 0);
    mpconn_tls_config_free(cfg);
    return o;
}

static mpconn_server *new_server(const char *address, int kind, seen *v, mpconn_opts *o)
{
    mpconn_server_hooks h = {.size = sizeof h,
                             .setup = on_setup,
                             .on_message = on_message,
                             .handle = on_handle,
                             .finish = on_finish,
                             .handle_error = on_error,
                             .handle_timeout = on_timeout,
                             .after_fork = die_with_parent};
    mpconn_server *s;
    char err[256];
    int rc = mpconn_server_new(&s, address, kind, MPCONN_HANDLER_FRAMED, &h, v, o, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "server_new: %s\n", err);
    CHECK_INT(rc, 0);
    mpconn_opts_free(o);
    return s;
}

/* The clients: n connections one after the other, each a round trip; then
 * one that stays (held) and, when asked, a last message. */
typedef struct clients {
    char address[160];
    int tls, n;
    atomic_int ok, done, held_open, held_eof, release;
    int hold;         /* keep one connection open at the end until release */
    const char *last; /* sent on the held connection, if any */
} clients;

static mpconn_conn *client(clients *c)
{
    mpconn_opts *o = c->tls ? tls_opts(MPCONN_TLS_CLIENT) : keyed();
    mpconn_conn *conn = NULL;
    char err[256];
    int rc = mpconn_client(&conn, c->address, o, err, sizeof err);
    mpconn_opts_free(o);
    if (rc < 0) {
        fprintf(stderr, "client: %s\n", err);
        return NULL;
    }
    mpconn_conn_set_timeouts(conn, 10, 10);
    return conn;
}

static int round_trip(mpconn_conn *conn, const char *msg)
{
    size_t len = strlen(msg);
    void *back;
    size_t blen;
    if (mpconn_conn_send_bytes(conn, msg, len) < 0 ||
        mpconn_conn_recv_bytes(conn, &back, &blen, 0) < 0)
        return 0;
    int ok = blen == len && memcmp(back, msg, len) == 0;
    free(back);
    return ok;
}

static void run_clients(clients *c)
{
    for (int i = 0; i < c->n; i++) {
        mpconn_conn *conn = client(c);
        char msg[32];
        snprintf(msg, sizeof msg, "hello %d", i);
        if (conn && round_trip(conn, msg))
            atomic_fetch_add(&c->ok, 1);
        mpconn_conn_free(conn);
    }
    if (c->hold) {
        mpconn_conn *conn = client(c);
        if (conn && round_trip(conn, "held"))
            atomic_store(&c->held_open, 1);
        for (int i = 0; i < 3000 && !atomic_load(&c->release); i++)
            usleep(10000);
        if (conn && c->last)
            round_trip(conn, c->last);
        void *m;
        size_t l;
        /* The end: a TLS one cut by a THREADS abort, whose worker owns the
         * session, comes without its close_notify. */
        int end = conn ? mpconn_conn_recv_bytes(conn, &m, &l, 0) : 0;
        if (end == MPCONN_ERR_EOF || (c->tls && end == MPCONN_ERR_TRUNCATED))
            atomic_store(&c->held_eof, 1);
        mpconn_conn_free(conn);
    }
    atomic_store(&c->done, 1);
}

/* Turns the loop until *n reaches want, max seconds at most. */
static void turn_until(void *loop, atomic_int *n, int want, double max)
{
    double t0 = now_s();
    while (atomic_load(n) < want && now_s() - t0 < max)
        cur->wait(loop, 1);
}

/* A scenario: a loop of the driver's, a server on it and the clients'
 * process; the counts in a mapping shared with the clients and a FORK
 * server's children. */
typedef struct shared {
    seen v;
    clients c;
} shared;

typedef struct scene {
    int fds0;
    void *loop;
    mpconn_server *s;
    shared *m;
    seen *v;
    clients *c;
    pid_t pid;
} scene;

/* The server at address of kind with o (taken), set up by settings (may be
 * NULL), started on the loop. */
static void scene_serve(scene *sc, const char *address, int kind, mpconn_opts *o,
                        void (*settings)(mpconn_server *))
{
    sc->fds0 = fds_before();
    sc->m = mmap(NULL, sizeof *sc->m, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sc->m != MAP_FAILED);
    memset(sc->m, 0, sizeof *sc->m);
    sc->v = &sc->m->v;
    sc->c = &sc->m->c;
    sc->loop = new_loop();
    sc->s = new_server(address, kind, sc->v, o);
    if (settings)
        settings(sc->s);
    CHECK_INT(mpconn_server_start(sc->s, adapter(), loop_arg(cur, sc->loop)), 0);
}

/* The clients c (their address filled in) in their process, which keeps
 * none of this one's descriptors (a copy of the listening socket would
 * keep it listening), the loop turning until the held connection is open. */
static void scene_clients(scene *sc, clients c)
{
    *sc->c = c;
    snprintf(sc->c->address, sizeof sc->c->address, "%s", mpconn_server_address(sc->s));
    pid_t parent = getpid();
    sc->pid = fork();
    CHECK(sc->pid >= 0);
    if (sc->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        close_range(3, ~0U, 0);
        run_clients(sc->c);
        _exit(0);
    }
    turn_until(sc->loop, &sc->c->held_open, 1, 30);
    CHECK_INT(atomic_load(&sc->c->held_open), 1);
}

/* Lets the held connection go on, turns the loop until the clients are
 * done and their process has exited well. */
static void scene_release(scene *sc)
{
    atomic_store(&sc->c->release, 1);
    turn_until(sc->loop, &sc->c->done, 1, 30);
    int st = 0;
    pid_t p = 0;
    for (int i = 0; i < 3000 && (p = waitpid(sc->pid, &st, WNOHANG)) == 0; i++)
        cur->wait(sc->loop, 1);
    if (p == 0) {
        kill(sc->pid, SIGKILL);
        waitpid(sc->pid, &st, 0);
    }
    CHECK(p == sc->pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* The server freed (if still there) and the loop: no descriptor and no
 * child left, and (libuv's destroy checks it) no handle. */
static void scene_end(scene *sc)
{
    mpconn_server_free(sc->s);
    free_loop(sc->loop);
    CHECK_INT(count_fds(), sc->fds0);
    CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
    munmap(sc->m, sizeof *sc->m);
}

/* Whether a child of this process has exited and waits to be reaped
 * (asked without reaping it). */
static int zombie_waits(void)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    return waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid != 0;
}

/* n round trips on fresh connections and one held open, then a shutdown
 * from this thread (not the loop's callbacks): the held connection sees
 * the end, every finish runs (but in the FORK child ended by SIGTERM). */
static void echo_and_shutdown(const char *address, int tls, int kind)
{
    scene sc = {0};
    scene_serve(&sc, address, kind, tls ? tls_opts(MPCONN_TLS_SERVER) : keyed(), NULL);
    void *la = loop_arg(cur, sc.loop);
    CHECK(mpconn_server_loop(sc.s) == NULL);
    CHECK_INT(mpconn_server_start(sc.s, adapter(), la), MPCONN_ERR_CLOSED);
    CHECK_INT(mpconn_server_serve_forever(sc.s), MPCONN_ERR_CLOSED);
    scene_clients(&sc, (clients){.tls = tls, .n = 20, .hold = 1});
    CHECK_INT(atomic_load(&sc.c->ok), 20);
    /* FORK: the children of the 20 are reaped as they exit, through their
     * pidfds on this loop, not at the shutdown. */
    if (kind == MPCONN_SERVER_FORK)
        turn_until(sc.loop, &sc.v->finishes, 20, 10);
    for (int i = 0; i < 20 && zombie_waits(); i++)
        cur->wait(sc.loop, 1);
    CHECK(!zombie_waits());
    mpconn_server_shutdown(sc.s);
    scene_release(&sc);
    CHECK_INT(atomic_load(&sc.c->held_eof), 1);
    CHECK_INT(atomic_load(&sc.v->setups), 21);
    CHECK_INT(atomic_load(&sc.v->finishes), kind == MPCONN_SERVER_FORK ? 20 : 21);
    CHECK_INT(atomic_load(&sc.v->errors), 0);
    mpconn_server_shutdown(sc.s); /* again, after the end: nothing happens */
    step(sc.loop);
    scene_end(&sc);
}

/* The echo scenario of one address and kind, on every loop. */
typedef struct echo_case {
    const char *address;
    int tls, kind;
} echo_case;

static const echo_case *echo_now;

static void echo_now_on(void)
{
    echo_and_shutdown(echo_now->address, echo_now->tls, echo_now->kind);
}

static void echo_on_every_loop(const char *address, int tls, int kind)
{
    echo_case c = {address, tls, kind};
    echo_now = &c;
    each_loop(echo_now_on);
}

TEST(framed_echo_then_shutdown)
{
    echo_on_every_loop("127.0.0.1:0", 0, MPCONN_SERVER_LOOP);
}

/* tls: accepts through the async listener, opened at mpconn_server_new
 * and attached to the caller's loop at the start. */
TEST(tls_echo_then_shutdown)
{
    echo_on_every_loop("tls:127.0.0.1:0", 1, MPCONN_SERVER_LOOP);
}

/* Workers' wake-ups through the eventfd the caller's loop watches. */
TEST(threads_echo_then_shutdown)
{
    echo_on_every_loop("127.0.0.1:0", 0, MPCONN_SERVER_THREADS);
}

/* The blocking listener's TLS and authkey handshakes, watched there. */
TEST(threads_tls_echo_then_shutdown)
{
    echo_on_every_loop("tls:127.0.0.1:0", 1, MPCONN_SERVER_THREADS);
}

/* Children reaped through pidfds the caller's loop watches. */
TEST(fork_echo_then_shutdown)
{
    echo_on_every_loop("127.0.0.1:0", 0, MPCONN_SERVER_FORK);
}

/* The shutdown from inside a handler: the reply to "stop" still goes out,
 * then the server ends on the loop's next turn. */
static void shutdown_in_handler(void)
{
    scene sc = {0};
    scene_serve(&sc, "127.0.0.1:0", MPCONN_SERVER_LOOP, keyed(), NULL);
    scene_clients(&sc, (clients){.n = 1, .hold = 1, .last = "stop"});
    scene_release(&sc);
    CHECK_INT(atomic_load(&sc.c->ok), 1);
    CHECK_INT(atomic_load(&sc.c->held_eof), 1);
    CHECK_INT(atomic_load(&sc.v->messages), 3);
    CHECK_INT(atomic_load(&sc.v->finishes), 2);
    /* Refused now: the listening socket is closed. */
    CHECK(client(sc.c) == NULL);
    scene_end(&sc);
}

TEST(shutdown_from_a_handler)
{
    each_loop(shutdown_in_handler);
}

static void drain(mpconn_server *s)
{
    CHECK_INT(mpconn_server_set_drain(s, 1), 0);
}

/* Drain: after the shutdown new peers are refused while the connection
 * under way goes on, on the caller's loop, until its peer closes it or
 * the free ends it. */
static void drain_on_loop(void)
{
    scene sc = {0};
    scene_serve(&sc, "127.0.0.1:0", MPCONN_SERVER_LOOP, keyed(), drain);
    scene_clients(&sc, (clients){.hold = 1, .last = "after the shutdown"});
    mpconn_server_shutdown(sc.s);
    for (int i = 0; i < 5; i++)
        step(sc.loop);
    CHECK(client(sc.c) == NULL);
    /* The held connection is answered after the shutdown. */
    atomic_store(&sc.c->release, 1);
    turn_until(sc.loop, &sc.v->messages, 2, 30);
    CHECK_INT(atomic_load(&sc.v->messages), 2);
    CHECK_INT(atomic_load(&sc.v->finishes), 0);
    mpconn_server_free(sc.s); /* what is left: the held connection */
    sc.s = NULL;
    CHECK_INT(atomic_load(&sc.v->finishes), 1);
    scene_release(&sc);
    CHECK_INT(atomic_load(&sc.c->held_eof), 1);
    scene_end(&sc);
}

TEST(drain_on_the_callers_loop)
{
    each_loop(drain_on_loop);
}

/* Freed on the loop's thread with connections open and no shutdown: they
 * close (finish runs), nothing stays behind. */
static void free_while_serving(void)
{
    scene sc = {0};
    scene_serve(&sc, "127.0.0.1:0", MPCONN_SERVER_LOOP, keyed(), NULL);
    scene_clients(&sc, (clients){.n = 2, .hold = 1});
    mpconn_server_free(sc.s);
    sc.s = NULL;
    CHECK_INT(atomic_load(&sc.v->finishes), 3);
    scene_release(&sc);
    CHECK_INT(atomic_load(&sc.c->held_eof), 1);
    scene_end(&sc);
}

TEST(free_while_serving)
{
    each_loop(free_while_serving);
}

static void timeout(mpconn_server *s)
{
    CHECK_INT(mpconn_server_set_timeout(s, 0.05), 0);
}

/* Datagrams on the caller's loop, and handle_timeout on its timers. */
static void datagrams_and_timeout(void)
{
    scene sc = {0};
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    scene_serve(&sc, "udp:127.0.0.1:0", MPCONN_SERVER_LOOP, o, timeout);
    mpconn_server *s = sc.s;
    void *loop = sc.loop;
    seen *v = sc.v;
    int fd;
    char err[256];
    CHECK_INT(mpconn_dgram_connect(&fd, mpconn_server_address(s), err, sizeof err), 0);
    for (int i = 0; i < 3; i++) {
        char out[16], in[16];
        int n = snprintf(out, sizeof out, "dgram %d", i);
        CHECK_INT(send(fd, out, (size_t)n, 0), n);
        ssize_t got = -1;
        double t0 = now_s();
        while (got < 0 && now_s() - t0 < 10) {
            cur->wait(loop, 1);
            got = recv(fd, in, sizeof in, MSG_DONTWAIT);
        }
        CHECK_INT(got, n);
        CHECK_MEM(in, out, (size_t)n);
    }
    turn_until(loop, &v->timeouts, 2, 10);
    CHECK(atomic_load(&v->timeouts) >= 2);
    close(fd);
    mpconn_server_shutdown(s);
    for (int i = 0; i < 5; i++)
        step(loop);
    int timeouts = atomic_load(&v->timeouts);
    for (int i = 0; i < 10; i++)
        cur->wait(loop, 1); /* a tick (10 ms) each: the timer is gone */
    CHECK_INT(atomic_load(&v->timeouts), timeouts);
    scene_end(&sc);
}

TEST(datagrams_and_handle_timeout)
{
    each_loop(datagrams_and_timeout);
}

/* What start refuses, and a server shut down before it starts. A server
 * holds no loop of its own until serve_forever or mpconn_server_loop asks
 * for one, and one started on a caller's loop never does. */
TEST(start_refuses)
{
    void *loop = own_make("epoll");
    mpconn_server *s;
    char err[256];
    int fds0 = count_fds();
    CHECK_INT(mpconn_server_new(&s, "127.0.0.1:0", MPCONN_SERVER_LOOP, MPCONN_HANDLER_RAW, NULL,
                                NULL, NULL, err, sizeof err),
              0);
    CHECK_INT(count_fds(), fds0 + 2); /* the listening socket, the wake-up eventfd */
    CHECK_INT(mpconn_server_start(s, NULL, NULL), -EINVAL);
    /* Shut down before the start: it starts and ends at once. */
    mpconn_server_shutdown(s);
    CHECK_INT(mpconn_server_start(s, mpconn_loop_adapter(), ((own_loop *)loop)->loop), 0);
    CHECK(mpconn_server_loop(s) == NULL);
    mpconn_conn *c;
    CHECK(mpconn_client(&c, mpconn_server_address(s), NULL, err, sizeof err) < 0);
    mpconn_server_free(s);
    CHECK_INT(count_fds(), fds0);
    CHECK_INT(mpconn_server_new(&s, "127.0.0.1:0", MPCONN_SERVER_THREADS, MPCONN_HANDLER_RAW, NULL,
                                NULL, NULL, err, sizeof err),
              0);
    CHECK(mpconn_server_loop(s) != NULL);
    CHECK(count_fds() > fds0 + 2);
    mpconn_server_free(s);
    CHECK_INT(count_fds(), fds0);
    own_destroy(loop);
}

TESTLIB_MAIN
