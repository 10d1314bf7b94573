/* mpconn_server in one process: shutdown from another thread, from a
 * handler and before serving, in each kind, leaving no thread or
 * descriptor; verify_request before any byte; handle_timeout; the idle
 * timeout; no thread kept per connection; every request handed over by a
 * busy pool; the peer's name when asked;
 * addresses and settings; each kind on a tls: address. */
#define _GNU_SOURCE
#include "testlib.h"

#include <mpconn/server.h>
#include <mpconn/tls.h>

#include "tls_certs.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char KEY[] = "server test key";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static char *tmp_sock(char *buf, size_t cap)
{
    char dir[] = "/tmp/mpconn-server-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    snprintf(buf, cap, "%s/sock", dir);
    return buf;
}

static void remove_dir_of(const char *path)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    rmdir(dir);
}

typedef struct fixture {
    atomic_int handled, verified, timeouts, stop_in_handler;
    pid_t peer_pid;
} fixture;

/* FRAMED echo: bytes back as they came, for THREADS and FORK. */
static int echo_handle(mpconn_request *r, void *data)
{
    fixture *f = data;
    atomic_fetch_add(&f->handled, 1);
    if (atomic_load(&f->stop_in_handler)) {
        mpconn_server_shutdown(mpconn_request_server(r));
        return 0;
    }
    mpconn_conn *c = mpconn_request_conn(r);
    for (;;) {
        void *msg;
        size_t len;
        int rc = mpconn_conn_recv_bytes(c, &msg, &len, 0);
        if (rc < 0)
            return rc == MPCONN_ERR_EOF ? 0 : rc;
        rc = mpconn_conn_send_bytes(c, msg, len);
        free(msg);
        if (rc < 0)
            return rc;
    }
}

static int echo_message(mpconn_request *r, const void *msg, size_t len, void *data)
{
    fixture *f = data;
    atomic_fetch_add(&f->handled, 1);
    if (atomic_load(&f->stop_in_handler))
        mpconn_server_shutdown(mpconn_request_server(r));
    return mpconn_async_send(mpconn_request_async(r), msg, len);
}

static mpconn_opts *keyed_opts(void)
{
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_authkey(o, KEY, strlen(KEY)), 0);
    return o;
}

/* A FORK server's child dies with the thread that forked it (the serving
 * one, which ends after reaping it): a test that fails leaves no child
 * behind to hold its output open, so ctest sees the failure at once. */
static void die_with_server(mpconn_request *r, void *data)
{
    (void)r;
    (void)data;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* A FRAMED echo server with hooks h (NULL: none but the echo) and the
 * options o (taken; NULL: the key alone). */
static mpconn_server *make_opts(int kind, const char *address, fixture *f, mpconn_server_hooks *h,
                                mpconn_opts *o)
{
    mpconn_server_hooks base = {.size = sizeof base};
    if (!h)
        h = &base;
    if (kind == MPCONN_SERVER_LOOP)
        h->on_message = h->on_message ? h->on_message : echo_message;
    else
        h->handle = h->handle ? h->handle : echo_handle;
    if (kind == MPCONN_SERVER_FORK && !h->after_fork)
        h->after_fork = die_with_server;
    if (!o)
        o = keyed_opts();
    mpconn_server *s;
    char err[256];
    int rc = mpconn_server_new(&s, address, kind, MPCONN_HANDLER_FRAMED, h, f, o, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "server_new: %s\n", err);
    CHECK_INT(rc, 0);
    mpconn_opts_free(o);
    return s;
}

static mpconn_server *make(int kind, const char *address, fixture *f, mpconn_server_hooks *h)
{
    return make_opts(kind, address, f, h, NULL);
}

/* A client of address with the options o (taken). */
static mpconn_conn *connect_with(const char *address, mpconn_opts *o)
{
    mpconn_conn *c;
    char err[256];
    int rc = mpconn_client(&c, address, o, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "client: %s\n", err);
    CHECK_INT(rc, 0);
    mpconn_opts_free(o);
    CHECK_INT(mpconn_conn_set_timeouts(c, 10, 10), 0);
    return c;
}

static mpconn_conn *connect_to(const char *address)
{
    return connect_with(address, keyed_opts());
}

static void exchange(mpconn_conn *c)
{
    CHECK_INT(mpconn_conn_send_bytes(c, "ping", 4), 0);
    void *msg;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(c, &msg, &len, 0), 0);
    CHECK_MEM(msg, "ping", 4);
    CHECK_INT(len, 4);
    free(msg);
}

typedef struct serving {
    mpconn_server *s;
    pthread_t t;
    int rc;
    atomic_int done;
    double ended;
} serving;

static void *serve_main(void *arg)
{
    serving *v = arg;
    v->rc = mpconn_server_serve_forever(v->s);
    v->ended = now();
    atomic_store(&v->done, 1);
    return NULL;
}

static void serve_in_thread(serving *v, mpconn_server *s)
{
    memset(v, 0, sizeof *v);
    v->s = s;
    atomic_init(&v->done, 0);
    CHECK_INT(pthread_create(&v->t, NULL, serve_main, v), 0);
}

/* Clients in a process of their own. A FORK server forks the process that
 * runs serve_forever, and the child has the serving thread only: a lock
 * another thread held at that moment stays held in the child for good.
 * With the clients on this process's main thread, a child forked while a
 * client was in AddressSanitizer's malloc (which has no fork handlers)
 * hung in its own first malloc of that size; OpenSSL's locks are the same
 * trap. So the tests run their clients, fn(arg), in a process forked
 * while this one has no other thread: after the server is made, before
 * serve_in_thread. The server's children then hold none of the clients'
 * sockets either. A failed CHECK there exits it with 1. */
static pid_t clients_start(void (*fn)(const void *), const void *arg)
{
    pid_t parent = getpid(), pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives a failed test */
        if (getppid() != parent)
            _exit(1);
        fn(arg);
        _exit(0);
    }
    return pid;
}

/* Waits (bounded) for the clients' process, which passed its checks. */
static void clients_end(pid_t pid)
{
    int st = 0;
    pid_t p = 0;
    for (int i = 0; i < 6000 && (p = waitpid(pid, &st, WNOHANG)) == 0; i++)
        usleep(10000);
    if (p == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    CHECK_INT(p, pid);
    CHECK(WIFEXITED(st));
    CHECK_INT(WEXITSTATUS(st), 0);
}

/* Waits (bounded) for serve_forever to return; its latency since t0. */
static double join_serving(serving *v, double t0)
{
    for (int i = 0; i < 1000 && !atomic_load(&v->done); i++)
        usleep(10000);
    CHECK(atomic_load(&v->done));
    pthread_join(v->t, NULL);
    CHECK_INT(v->rc, 0);
    return v->ended - t0;
}

/* Shuts the server down, waits for serve_forever, frees, removes the
 * socket's directory. */
static void stop_serving(mpconn_server *s, serving *v, const char *path)
{
    mpconn_server_shutdown(s);
    join_serving(v, now());
    mpconn_server_free(s);
    remove_dir_of(path);
}

typedef struct until_shutdown {
    const char *path;
    int ready; /* written once every client is answered */
} until_shutdown;

/* Three clients answered, then the end of each one's stream (the
 * shutdown's; the receive would time out without it). */
static void clients_until_shutdown(const void *arg)
{
    const until_shutdown *u = arg;
    mpconn_conn *c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = connect_to(u->path);
        exchange(c[i]);
    }
    CHECK(write(u->ready, "r", 1) == 1);
    for (int i = 0; i < 3; i++) {
        void *msg;
        size_t len;
        CHECK_INT(mpconn_conn_recv_bytes(c[i], &msg, &len, 0), MPCONN_ERR_EOF);
        mpconn_conn_free(c[i]);
    }
}

/* Clients connected and answered, then mpconn_server_shutdown from this
 * thread: serve_forever returns promptly (bounded generously), the clients
 * see the end of their streams, and once the server is freed nothing of it
 * is left. */
static void shutdown_from_thread(int kind)
{
    int tasks0 = testlib_count_dir("/proc/self/task"), fds0 = testlib_count_dir("/proc/self/fd");
    char path[256];
    tmp_sock(path, sizeof path);
    fixture f = {0};
    mpconn_server *s = make(kind, path, &f, NULL);
    int ready[2];
    CHECK_INT(pipe(ready), 0);
    until_shutdown u = {path, ready[1]};
    pid_t clients = clients_start(clients_until_shutdown, &u);
    close(ready[1]);
    serving v;
    serve_in_thread(&v, s);
    struct pollfd p = {.fd = ready[0], .events = POLLIN};
    CHECK_INT(poll(&p, 1, 30000), 1);
    char b;
    CHECK_INT(read(ready[0], &b, 1), 1);
    close(ready[0]);
    double t0 = now();
    mpconn_server_shutdown(s);
    double took = join_serving(&v, t0);
    CHECK(took < 5.0);
    struct stat st;
    CHECK(stat(path, &st) < 0 && errno == ENOENT);
    clients_end(clients);
    mpconn_server_free(s);
    CHECK_INT(testlib_count_dir("/proc/self/task"), tasks0);
    CHECK_INT(testlib_count_dir("/proc/self/fd"), fds0);
    remove_dir_of(path);
}

TEST(shutdown_from_thread_loop)
{
    shutdown_from_thread(MPCONN_SERVER_LOOP);
}

TEST(shutdown_from_thread_threads)
{
    shutdown_from_thread(MPCONN_SERVER_THREADS);
}

TEST(shutdown_from_thread_fork)
{
    shutdown_from_thread(MPCONN_SERVER_FORK);
}

TEST(shutdown_before_serving)
{
    fixture f = {0};
    mpconn_server *s = make(MPCONN_SERVER_THREADS, "127.0.0.1:0", &f, NULL);
    mpconn_server_shutdown(s);
    double t0 = now();
    CHECK_INT(mpconn_server_serve_forever(s), 0);
    CHECK(now() - t0 < 5.0);
    CHECK_INT(mpconn_server_serve_forever(s), MPCONN_ERR_CLOSED);
    mpconn_server_free(s);
}

/* A handler asks for the shutdown (in LOOP from the serving thread itself,
 * socketserver's deadlock): it returns at once and serve_forever ends. */
static void shutdown_from_handler(int kind)
{
    char path[256];
    tmp_sock(path, sizeof path);
    fixture f = {0};
    atomic_store(&f.stop_in_handler, 1);
    mpconn_server *s = make(kind, path, &f, NULL);
    serving v;
    serve_in_thread(&v, s);
    mpconn_conn *c = connect_to(path);
    if (kind == MPCONN_SERVER_LOOP)
        CHECK_INT(mpconn_conn_send_bytes(c, "stop", 4), 0);
    double took = join_serving(&v, now());
    CHECK(took < 10.0);
    CHECK_INT(atomic_load(&f.handled), 1);
    mpconn_conn_free(c);
    mpconn_server_free(s);
    remove_dir_of(path);
}

TEST(shutdown_from_handler_loop)
{
    shutdown_from_handler(MPCONN_SERVER_LOOP);
}

TEST(shutdown_from_handler_threads)
{
    shutdown_from_handler(MPCONN_SERVER_THREADS);
}

/* A peer that says nothing, and three clients served while it waits. */
static void silent_then_three(const void *arg)
{
    const char *path = arg;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memcpy(un.sun_path, path, strlen(path));
    CHECK_INT(connect(fd, (struct sockaddr *)&un, sizeof un), 0);
    for (int i = 0; i < 3; i++) {
        mpconn_conn *c = connect_to(path);
        exchange(c);
        mpconn_conn_free(c);
    }
    close(fd);
}

/* A peer that connects and never answers the challenge holds up no one:
 * the next client is served while it waits. */
static void silent_peer(int kind)
{
    char path[256];
    tmp_sock(path, sizeof path);
    fixture f = {0};
    mpconn_server *s = make(kind, path, &f, NULL);
    pid_t clients = clients_start(silent_then_three, path);
    serving v;
    serve_in_thread(&v, s);
    clients_end(clients);
    stop_serving(s, &v, path);
}

TEST(silent_peer_blocks_no_one_loop)
{
    silent_peer(MPCONN_SERVER_LOOP);
}

TEST(silent_peer_blocks_no_one_threads)
{
    silent_peer(MPCONN_SERVER_THREADS);
}

TEST(silent_peer_blocks_no_one_fork)
{
    silent_peer(MPCONN_SERVER_FORK);
}

/* A plain socket connected to path sees the end of the stream with no
 * byte before it (a server with an authkey would send its challenge). */
static void connect_closed_unanswered(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memcpy(un.sun_path, path, strlen(path));
    CHECK_INT(connect(fd, (struct sockaddr *)&un, sizeof un), 0);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK_INT(poll(&p, 1, 10000), 1);
    char b;
    CHECK_INT(read(fd, &b, 1), 0);
    close(fd);
}

static int refuse(mpconn_request *r, void *data)
{
    fixture *f = data;
    pid_t pid;
    mpconn_request_peer(r, &pid, NULL, NULL);
    f->peer_pid = pid;
    atomic_fetch_add(&f->verified, 1);
    return 1;
}

/* With an authkey the server speaks first (its challenge): a refused peer
 * must see the end of the stream with no byte before it. */
static void verify_refuses(int kind)
{
    char path[256];
    tmp_sock(path, sizeof path);
    fixture f = {0};
    mpconn_server_hooks h = {.size = sizeof h, .verify_request = refuse};
    mpconn_server *s = make(kind, path, &f, &h);
    serving v;
    serve_in_thread(&v, s);
    connect_closed_unanswered(path);
    CHECK_INT(atomic_load(&f.verified), 1);
    CHECK_INT(f.peer_pid, getpid());
    CHECK_INT(atomic_load(&f.handled), 0);
    stop_serving(s, &v, path);
}

TEST(verify_refuses_before_any_byte_loop)
{
    verify_refuses(MPCONN_SERVER_LOOP);
}

TEST(verify_refuses_before_any_byte_threads)
{
    verify_refuses(MPCONN_SERVER_THREADS);
}

TEST(verify_refuses_before_any_byte_fork)
{
    verify_refuses(MPCONN_SERVER_FORK);
}

static void count_error(mpconn_server *s, mpconn_request *r, int code, const char *message,
                        void *data)
{
    (void)s;
    (void)r;
    (void)message;
    fixture *f = data;
    if (code == MPCONN_ERR_PEER)
        atomic_fetch_add(&f->verified, 1);
    if (code == -ETIMEDOUT)
        atomic_fetch_add(&f->timeouts, 1);
}

/* The listener's uid policy holds for the server's own accept: a peer whose
 * uid is not on the list is closed before any byte and reported. */
static void uid_refused(int kind)
{
    char path[256];
    tmp_sock(path, sizeof path);
    fixture f = {0};
    mpconn_server_hooks h = {.size = sizeof h, .handle_error = count_error};
    mpconn_opts *o = keyed_opts();
    uid_t other = getuid() + 1;
    CHECK_INT(mpconn_opts_set_allowed_uids(o, &other, 1), 0);
    mpconn_server *s = make_opts(kind, path, &f, &h, o);
    serving v;
    serve_in_thread(&v, s);
    connect_closed_unanswered(path);
    CHECK_INT(atomic_load(&f.verified), 1);
    CHECK_INT(atomic_load(&f.handled), 0);
    stop_serving(s, &v, path);
}

TEST(uid_policy_loop)
{
    uid_refused(MPCONN_SERVER_LOOP);
}

TEST(uid_policy_threads)
{
    uid_refused(MPCONN_SERVER_THREADS);
}

TEST(uid_policy_fork)
{
    uid_refused(MPCONN_SERVER_FORK);
}

TEST(uid_policy_of_opts)
{
    uid_t me = getuid(), other = me + 1;
    CHECK_INT(mpconn_opts_peer_allowed(NULL, 0, 0, other), 1);
    CHECK_INT(mpconn_opts_peer_allowed(NULL, 1, 0, other), 0);
    CHECK_INT(mpconn_opts_peer_allowed(NULL, 1, 0, me), 1);
    CHECK_INT(mpconn_opts_peer_allowed(NULL, 1, 1, other), 1);
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_abstract_any_uid(o, 1), 0);
    CHECK_INT(mpconn_opts_peer_allowed(o, 1, 0, other), 1);
    CHECK_INT(mpconn_opts_set_allowed_uids(o, &me, 1), 0);
    CHECK_INT(mpconn_opts_peer_allowed(o, 0, 1, other), 0);
    CHECK_INT(mpconn_opts_peer_allowed(o, 0, 1, me), 1);
    mpconn_opts_free(o);
}

/* The handshake's deadline holds in every kind: a peer that reads the
 * challenge and never answers is closed and reported (-ETIMEDOUT). */
static void handshake_deadline(int kind)
{
    char path[256];
    tmp_sock(path, sizeof path);
    fixture f = {0};
    mpconn_server_hooks h = {.size = sizeof h, .handle_error = count_error};
    mpconn_opts *o = keyed_opts();
    CHECK_INT(mpconn_opts_set_handshake_timeout(o, 0.05), 0);
    mpconn_server *s = make_opts(kind, path, &f, &h, o);
    serving v;
    serve_in_thread(&v, s);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memcpy(un.sun_path, path, strlen(path));
    CHECK_INT(connect(fd, (struct sockaddr *)&un, sizeof un), 0);
    char buf[256];
    size_t got = 0;
    for (int i = 0; i < 100; i++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        CHECK_INT(poll(&p, 1, 10000), 1);
        ssize_t n = read(fd, buf, sizeof buf);
        CHECK(n >= 0);
        if (n == 0)
            break;
        got += (size_t)n;
    }
    CHECK(got > 4); /* the challenge, then the end of the stream */
    close(fd);
    for (int i = 0; i < 500 && kind != MPCONN_SERVER_FORK && !atomic_load(&f.timeouts); i++)
        usleep(10000); /* the report may follow the close the peer saw */
    /* FORK reports it in the child, whose counters are its own. */
    CHECK_INT(atomic_load(&f.timeouts), kind == MPCONN_SERVER_FORK ? 0 : 1);
    CHECK_INT(atomic_load(&f.handled), 0);
    stop_serving(s, &v, path);
}

TEST(handshake_deadline_loop)
{
    handshake_deadline(MPCONN_SERVER_LOOP);
}

TEST(handshake_deadline_threads)
{
    handshake_deadline(MPCONN_SERVER_THREADS);
}

TEST(handshake_deadline_fork)
{
    handshake_deadline(MPCONN_SERVER_FORK);
}

/* What after_fork saw in the child, sent back through a pipe. */
typedef struct fork_report {
    pid_t pid;
    int listening; /* sockets in the listening state the child holds */
    int pidfds;    /* pidfds, of its siblings, it holds */
} fork_report;

static int report_fd = -1;

static void after_fork(mpconn_request *r, void *data)
{
    (void)r;
    (void)data;
    fork_report rep = {getpid(), 0, 0};
    for (int fd = 0; fd < 1024; fd++) {
        int on = 0;
        socklen_t len = sizeof on;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on)
            rep.listening++;
        char link[64], target[64] = "";
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0 && (target[n] = 0, strcmp(target, "anon_inode:[pidfd]") == 0))
            rep.pidfds++;
    }
    CHECK(write(report_fd, &rep, sizeof rep) == (ssize_t)sizeof rep);
}

static void one_client(const void *arg)
{
    mpconn_conn *c = connect_to(arg);
    exchange(c);
    mpconn_conn_free(c);
}

/* after_fork runs in the child, which holds no listening socket; the
 * socket file has the mode of the options. */
TEST(after_fork_in_child_without_listener)
{
    int p[2];
    CHECK_INT(pipe(p), 0);
    report_fd = p[1];
    char path[256];
    tmp_sock(path, sizeof path);
    fixture f = {0};
    mpconn_server_hooks h = {.size = sizeof h, .after_fork = after_fork};
    mpconn_opts *o = keyed_opts();
    CHECK_INT(mpconn_opts_set_mode(o, 0640), 0);
    mpconn_server *s = make_opts(MPCONN_SERVER_FORK, path, &f, &h, o);
    struct stat st;
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_mode & 0777, 0640);
    pid_t clients = clients_start(one_client, path);
    serving v;
    serve_in_thread(&v, s);
    fork_report rep;
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    CHECK_INT(poll(&pf, 1, 10000), 1);
    CHECK_INT(read(p[0], &rep, sizeof rep), sizeof rep);
    CHECK(rep.pid != getpid() && rep.pid != clients);
    CHECK_INT(rep.listening, 0);
    clients_end(clients);
    stop_serving(s, &v, path);
    close(p[0]);
    close(p[1]);
}

/* Two clients at once: the first stays connected until told (a byte on
 * the pipe), so its child lives while the second is forked. */
static int hold_fd = -1;

static void two_clients_one_holding(const void *arg)
{
    mpconn_conn *c1 = connect_to(arg);
    exchange(c1);
    mpconn_conn *c2 = connect_to(arg);
    exchange(c2);
    mpconn_conn_free(c2);
    char b;
    struct pollfd pf = {.fd = hold_fd, .events = POLLIN};
    CHECK_INT(poll(&pf, 1, 10000), 1);
    CHECK_INT(read(hold_fd, &b, 1), 1);
    mpconn_conn_free(c1);
}

/* A child holds no pidfd of a sibling that is still running (the parent
 * watches one per child; the child would inherit them all). */
TEST(fork_child_holds_no_sibling_pidfd)
{
    int p[2], h[2];
    CHECK_INT(pipe(p), 0);
    CHECK_INT(pipe(h), 0);
    report_fd = p[1];
    hold_fd = h[0];
    char path[256];
    tmp_sock(path, sizeof path);
    fixture f = {0};
    mpconn_server_hooks hk = {.size = sizeof hk, .after_fork = after_fork};
    mpconn_server *s = make_opts(MPCONN_SERVER_FORK, path, &f, &hk, keyed_opts());
    pid_t clients = clients_start(two_clients_one_holding, path);
    serving v;
    serve_in_thread(&v, s);
    fork_report rep[2];
    for (int i = 0; i < 2; i++) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        CHECK_INT(poll(&pf, 1, 10000), 1);
        CHECK_INT(read(p[0], &rep[i], sizeof rep[i]), sizeof rep[i]);
        CHECK_INT(rep[i].pidfds, 0);
    }
    CHECK(rep[0].pid != rep[1].pid);
    CHECK_INT(write(h[1], "x", 1), 1);
    clients_end(clients);
    stop_serving(s, &v, path);
    for (int i = 0; i < 2; i++) {
        close(p[i]);
        close(h[i]);
    }
}

/* Out of descriptors: accept fails with EMFILE while the peer waits in the
 * backlog. The server must not spin on the readable socket: it reports,
 * waits a moment, and serves the peer once descriptors are free again. */
static int fillers[4096], nfillers;
static atomic_int emfile_reports;

static void count_emfile(mpconn_server *s, mpconn_request *r, int code, const char *message,
                         void *data)
{
    (void)s;
    (void)r;
    (void)message;
    (void)data;
    if (code == -EMFILE)
        atomic_fetch_add(&emfile_reports, 1);
}

static int ready_fd = -1;

/* Once serving: every descriptor left is taken, and the parent told. */
static void take_fillers(mpconn_timer *t, void *data)
{
    (void)t;
    (void)data;
    struct rlimit rl = {256, 256};
    CHECK_INT(setrlimit(RLIMIT_NOFILE, &rl), 0);
    int fd;
    while (nfillers < 4096 && (fd = dup(0)) >= 0)
        fillers[nfillers++] = fd;
    CHECK(write(ready_fd, "r", 1) == 1);
}

static void free_fillers(mpconn_timer *t, void *data)
{
    (void)t;
    (void)data;
    while (nfillers)
        close(fillers[--nfillers]);
}

static int echo_then_stop(mpconn_request *r, const void *msg, size_t len, void *data)
{
    (void)data;
    mpconn_server_shutdown(mpconn_request_server(r));
    return mpconn_async_send(mpconn_request_async(r), msg, len);
}

TEST(out_of_descriptors_no_spin)
{
    char path[256];
    tmp_sock(path, sizeof path);
    int ready[2];
    CHECK_INT(pipe(ready), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        fixture f = {0};
        mpconn_server_hooks h = {
            .size = sizeof h, .on_message = echo_then_stop, .handle_error = count_emfile};
        mpconn_server *s = make(MPCONN_SERVER_LOOP, path, &f, &h);
        ready_fd = ready[1];
        mpconn_timer *take, *give;
        CHECK_INT(mpconn_timer_new(&take, mpconn_server_loop(s), take_fillers, NULL), 0);
        CHECK_INT(mpconn_timer_new(&give, mpconn_server_loop(s), free_fillers, NULL), 0);
        CHECK_INT(mpconn_timer_start(take, 0.01, 0), 0);
        CHECK_INT(mpconn_timer_start(give, 0.5, 0), 0);
        int rc = mpconn_server_serve_forever(s);
        mpconn_timer_close(take, NULL);
        mpconn_timer_close(give, NULL);
        mpconn_server_free(s);
        int n = atomic_load(&emfile_reports);
        _exit(rc == 0 && n >= 1 && n <= 20 ? 0 : 10 + (n > 99 ? 99 : n));
    }
    char b;
    struct pollfd pf = {.fd = ready[0], .events = POLLIN};
    CHECK_INT(poll(&pf, 1, 10000), 1);
    CHECK_INT(read(ready[0], &b, 1), 1);
    mpconn_conn *c = connect_to(path);
    exchange(c);
    mpconn_conn_free(c);
    int st;
    CHECK_INT(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st));
    CHECK_INT(WEXITSTATUS(st), 0);
    close(ready[0]);
    close(ready[1]);
    remove_dir_of(path);
}

static void on_timeout(mpconn_server *s, void *data)
{
    fixture *f = data;
    if (atomic_fetch_add(&f->timeouts, 1) + 1 == 2)
        mpconn_server_shutdown(s);
}

TEST(handle_timeout)
{
    fixture f = {0};
    mpconn_server_hooks h = {.size = sizeof h, .handle_timeout = on_timeout};
    mpconn_server *s = make(MPCONN_SERVER_LOOP, "127.0.0.1:0", &f, &h);
    CHECK_INT(mpconn_server_set_timeout(s, 0.02), 0);
    double t0 = now();
    CHECK_INT(mpconn_server_serve_forever(s), 0);
    CHECK_INT(atomic_load(&f.timeouts), 2);
    CHECK(now() - t0 < 10.0);
    CHECK_INT(mpconn_server_set_timeout(s, 1), -EBUSY);
    mpconn_server_free(s);
}

/* A connection silent for longer than the idle timeout is closed (LOOP)
 * or its handler's receive times out (THREADS): the client sees the end. */
static void idle_timeout(int kind)
{
    char path[256];
    tmp_sock(path, sizeof path);
    fixture f = {0};
    mpconn_server *s = make(kind, path, &f, NULL);
    CHECK_INT(mpconn_server_set_idle_timeout(s, 0.05), 0);
    serving v;
    serve_in_thread(&v, s);
    mpconn_conn *c = connect_to(path);
    void *msg;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(c, &msg, &len, 0), MPCONN_ERR_EOF);
    mpconn_conn_free(c);
    stop_serving(s, &v, path);
}

TEST(idle_timeout_loop)
{
    idle_timeout(MPCONN_SERVER_LOOP);
}

TEST(idle_timeout_threads)
{
    idle_timeout(MPCONN_SERVER_THREADS);
}

/* Clients of a THREADS server with a cap of 3: each thread of them makes
 * rounds connections one after the other, and the pool never holds more
 * threads than the cap. */
typedef struct burst {
    const char *path;
    int rounds, tasks_max;
} burst;

static void *burst_client(void *arg)
{
    burst *b = arg;
    for (int i = 0; i < b->rounds; i++) {
        mpconn_conn *c = connect_to(b->path);
        exchange(c);
        mpconn_conn_free(c);
        CHECK(testlib_count_dir("/proc/self/task") <= b->tasks_max);
    }
    return NULL;
}

static void pool_of_three(int clients, int rounds)
{
    int tasks0 = testlib_count_dir("/proc/self/task");
    char path[256];
    tmp_sock(path, sizeof path);
    fixture f = {0};
    mpconn_server *s = make(MPCONN_SERVER_THREADS, path, &f, NULL);
    CHECK_INT(mpconn_server_set_max_connections(s, 3), 0);
    serving v;
    serve_in_thread(&v, s);
    burst b = {path, rounds, tasks0 + 1 + 3 + (clients > 1 ? clients : 0)};
    pthread_t t[8];
    CHECK(clients >= 1 && clients <= 8);
    if (clients == 1)
        burst_client(&b);
    for (int i = 0; clients > 1 && i < clients; i++)
        CHECK_INT(pthread_create(&t[i], NULL, burst_client, &b), 0);
    for (int i = 0; clients > 1 && i < clients; i++)
        pthread_join(t[i], NULL);
    mpconn_server_shutdown(s);
    join_serving(&v, now());
    CHECK_INT(atomic_load(&f.handled), clients * rounds);
    mpconn_server_free(s);
    CHECK_INT(testlib_count_dir("/proc/self/task"), tasks0);
    remove_dir_of(path);
}

/* bpo-37193: nothing is kept per finished connection. */
TEST(no_thread_kept_per_connection)
{
    pool_of_three(1, 60);
}

/* Clients at once, more than the pool: each request is handed to an idle
 * worker or queued for a busy one, and none is lost (a lost hand-off
 * would leave its client waiting). */
TEST(pool_hands_every_request_over)
{
    pool_of_three(6, 40);
}

/* The peer's name is made when asked for (not at accept): in
 * verify_request and in the handler (which sends it back, FORK's from its
 * child) it is the client's own address; so it is in the report of a
 * handler that failed before anyone asked, also from a THREADS pool slot
 * whose previous peer was named (cap 1). */
typedef struct naming {
    char verified[128], reported[512];
    atomic_int errors;
} naming;

/* Asks for the name of the first peer only. */
static int name_in_verify(mpconn_request *r, void *data)
{
    naming *n = data;
    if (!n->verified[0])
        snprintf(n->verified, sizeof n->verified, "%s", mpconn_request_peer(r, NULL, NULL, NULL));
    return 0;
}

/* The peer's name for "who", a failure for "fail". */
static int name_reply(mpconn_request *r, const void *msg, size_t len, mpconn_conn *c)
{
    if (len == 4 && memcmp(msg, "fail", 4) == 0)
        return -EPROTO;
    const char *peer = mpconn_request_peer(r, NULL, NULL, NULL);
    if (c)
        return mpconn_conn_send_bytes(c, peer, strlen(peer));
    return mpconn_async_send(mpconn_request_async(r), peer, strlen(peer));
}

static int name_message(mpconn_request *r, const void *msg, size_t len, void *data)
{
    (void)data;
    return name_reply(r, msg, len, NULL);
}

static int name_handle(mpconn_request *r, void *data)
{
    (void)data;
    mpconn_conn *c = mpconn_request_conn(r);
    for (;;) {
        char buf[64];
        size_t len;
        int rc = mpconn_conn_recv_bytes_into(c, buf, sizeof buf, 0, &len);
        if (rc < 0)
            return rc == MPCONN_ERR_EOF ? 0 : rc;
        if ((rc = name_reply(r, buf, len, c)) != 0)
            return rc;
    }
}

static void name_error(mpconn_server *s, mpconn_request *r, int code, const char *message,
                       void *data)
{
    (void)s;
    (void)r;
    naming *n = data;
    if (code == -EPROTO) {
        snprintf(n->reported, sizeof n->reported, "%s", message);
        atomic_fetch_add(&n->errors, 1);
    }
}

typedef struct naming_run {
    const char *address;
    int kind;
    naming *n;
} naming_run;

/* Two clients, one after the other: the name the handler sends back, and
 * (but for FORK, whose child reports its own) the name in the report of a
 * handler that failed before anyone asked. */
static void name_clients(const void *arg)
{
    const naming_run *r = arg;
    for (int i = 0; i < 2; i++) {
        mpconn_opts *o;
        CHECK_INT(mpconn_opts_new(&o), 0);
        mpconn_conn *c = connect_with(r->address, o);
        struct sockaddr_in in;
        socklen_t sl = sizeof in;
        CHECK_INT(getsockname(mpconn_conn_fileno(c), (struct sockaddr *)&in, &sl), 0);
        char want[64];
        snprintf(want, sizeof want, "127.0.0.1:%u", ntohs(in.sin_port));
        void *msg;
        size_t len;
        if (i == 0) {
            CHECK_INT(mpconn_conn_send_bytes(c, "who", 3), 0);
            CHECK_INT(mpconn_conn_recv_bytes(c, &msg, &len, 0), 0);
            CHECK_INT(len, strlen(want));
            CHECK_MEM(msg, want, len);
            free(msg);
            if (r->kind != MPCONN_SERVER_FORK)            /* else in the parent's memory */
                CHECK(strcmp(r->n->verified, want) == 0); /* verified before served */
        } else if (r->kind != MPCONN_SERVER_FORK) {       /* FORK's child reports its own */
            /* Nobody asked before this report: it names the peer itself. */
            CHECK_INT(mpconn_conn_send_bytes(c, "fail", 4), 0);
            CHECK_INT(mpconn_conn_recv_bytes(c, &msg, &len, 0), MPCONN_ERR_EOF);
            for (int t = 0; t < 1000 && atomic_load(&r->n->errors) < 1; t++)
                usleep(10000);
            CHECK_INT(atomic_load(&r->n->errors), 1);
            CHECK(strstr(r->n->reported, want) != NULL);
        }
        mpconn_conn_free(c);
    }
}

static void peer_named(int kind)
{
    naming n;
    memset(&n, 0, sizeof n);
    atomic_init(&n.errors, 0);
    mpconn_server_hooks h = {
        .size = sizeof h, .verify_request = name_in_verify, .handle_error = name_error};
    if (kind == MPCONN_SERVER_LOOP)
        h.on_message = name_message;
    else
        h.handle = name_handle;
    mpconn_server *s;
    char err[256];
    CHECK_INT(mpconn_server_new(&s, "127.0.0.1:0", kind, MPCONN_HANDLER_FRAMED, &h, &n, NULL, err,
                                sizeof err),
              0);
    /* FORK's children hold copies of this process's client sockets, so
     * the first would never see its end of stream: no cap of 1 there. */
    if (kind != MPCONN_SERVER_FORK)
        CHECK_INT(mpconn_server_set_max_connections(s, 1), 0);
    char address[128];
    snprintf(address, sizeof address, "%s", mpconn_server_address(s));
    naming_run run = {address, kind, &n};
    serving v;
    if (kind == MPCONN_SERVER_FORK) {
        /* Clients in a process of their own: the server forks while they
         * run (see FORK and threads in docs/server.md). */
        pid_t pid = clients_start(name_clients, &run);
        serve_in_thread(&v, s);
        clients_end(pid);
        CHECK(strncmp(n.verified, "127.0.0.1:", 10) == 0); /* verify runs in the parent */
    } else {
        serve_in_thread(&v, s);
        name_clients(&run);
    }
    mpconn_server_shutdown(s);
    join_serving(&v, now());
    mpconn_server_free(s);
}

TEST(peer_named_when_asked_loop)
{
    peer_named(MPCONN_SERVER_LOOP);
}

TEST(peer_named_when_asked_threads)
{
    peer_named(MPCONN_SERVER_THREADS);
}

TEST(peer_named_when_asked_fork)
{
    peer_named(MPCONN_SERVER_FORK);
}

static int new_server(const char *address, int kind)
{
    mpconn_server *s = NULL;
    char err[256];
    int rc = mpconn_server_new(&s, address, kind, MPCONN_HANDLER_FRAMED, NULL, NULL, NULL, err,
                               sizeof err);
    if (rc == 0) {
        CHECK(strncmp(mpconn_server_address(s), address, 4) == 0);
        mpconn_server_free(s);
    } else {
        CHECK(err[0] != 0);
    }
    return rc;
}

/* Whether a second UDP socket that asks for address reuse can bind the
 * port of a UDP server made with reuse (Linux lets both have it only when
 * both asked). */
static int udp_port_shared(int reuse)
{
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_reuse_address(o, reuse), 0);
    mpconn_server *s;
    char err[256];
    CHECK_INT(mpconn_server_new(&s, "udp:127.0.0.1:0", MPCONN_SERVER_LOOP, MPCONN_HANDLER_FRAMED,
                                NULL, NULL, o, err, sizeof err),
              0);
    const char *a = mpconn_server_address(s);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    in.sin_port = htons((uint16_t)atoi(strrchr(a, ':') + 1));
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int one = 1;
    CHECK_INT(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    int shared = bind(fd, (struct sockaddr *)&in, sizeof in) == 0;
    close(fd);
    mpconn_server_free(s);
    mpconn_opts_free(o);
    return shared;
}

TEST(datagram_reuse_address)
{
    CHECK_INT(udp_port_shared(1), 1);
    CHECK_INT(udp_port_shared(0), 0);
}

TEST(datagram_addresses)
{
    CHECK_INT(new_server("udp:127.0.0.1:0", MPCONN_SERVER_LOOP), 0);
    CHECK_INT(new_server("udp:127.0.0.1:0", MPCONN_SERVER_THREADS), 0);
    CHECK_INT(new_server("udp:127.0.0.1:0", MPCONN_SERVER_FORK), -EINVAL);
    CHECK_INT(new_server("udp:127.0.0.1", MPCONN_SERVER_LOOP), MPCONN_ERR_ADDR);
    CHECK_INT(new_server("udp:::1:5000", MPCONN_SERVER_LOOP), MPCONN_ERR_ADDR);
    CHECK_INT(new_server("udp:[::1]:70000", MPCONN_SERVER_LOOP), MPCONN_ERR_ADDR);
    CHECK_INT(new_server("udp:[::1:80", MPCONN_SERVER_LOOP), MPCONN_ERR_ADDR);
    CHECK_INT(new_server("udp::80", MPCONN_SERVER_LOOP), MPCONN_ERR_ADDR);
    CHECK_INT(new_server("udp:127.0.0.1:8x", MPCONN_SERVER_LOOP), MPCONN_ERR_ADDR);
    CHECK_INT(new_server("unixgram:", MPCONN_SERVER_LOOP), MPCONN_ERR_ADDR);
    CHECK_INT(new_server("unixgram:@", MPCONN_SERVER_LOOP), MPCONN_ERR_ADDR);
    char abstract[64];
    snprintf(abstract, sizeof abstract, "unixgram:@mpconn-test-%d", (int)getpid());
    CHECK_INT(new_server(abstract, MPCONN_SERVER_LOOP), 0);
    /* A socket file left by a server that is gone is taken over; a file
     * that is no socket is left alone. */
    char path[256], addr[300];
    tmp_sock(path, sizeof path);
    snprintf(addr, sizeof addr, "unixgram:%s", path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memcpy(un.sun_path, path, strlen(path));
    CHECK_INT(bind(fd, (struct sockaddr *)&un, sizeof un), 0);
    CHECK_INT(new_server(addr, MPCONN_SERVER_LOOP), MPCONN_ERR_ADDRINUSE);
    close(fd);
    CHECK_INT(new_server(addr, MPCONN_SERVER_LOOP), 0);
    struct stat st;
    CHECK(stat(path, &st) < 0 && errno == ENOENT);
    FILE *plain = fopen(path, "w");
    CHECK(plain != NULL);
    fclose(plain);
    CHECK_INT(new_server(addr, MPCONN_SERVER_LOOP), -EEXIST);
    CHECK_INT(stat(path, &st), 0);
    unlink(path);
    remove_dir_of(path);
}

/* The mode of opts is the unixgram socket file's, whatever the umask. */
TEST(datagram_socket_mode)
{
    char path[256], addr[300];
    tmp_sock(path, sizeof path);
    snprintf(addr, sizeof addr, "unixgram:%s", path);
    mode_t old = umask(077);
    unsigned modes[] = {0600, 0666, 0640};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        mpconn_opts *o;
        CHECK_INT(mpconn_opts_new(&o), 0);
        CHECK_INT(mpconn_opts_mode(o), -1);
        CHECK_INT(mpconn_opts_set_mode(o, modes[i]), 0);
        CHECK_INT(mpconn_opts_mode(o), (int)modes[i]);
        mpconn_server *s;
        char err[256];
        CHECK_INT(mpconn_server_new(&s, addr, MPCONN_SERVER_LOOP, MPCONN_HANDLER_FRAMED, NULL, NULL,
                                    o, err, sizeof err),
                  0);
        struct stat st;
        CHECK_INT(stat(path, &st), 0);
        CHECK_INT(st.st_mode & 07777, modes[i]);
        mpconn_server_free(s);
        mpconn_opts_free(o);
        CHECK(stat(path, &st) < 0 && errno == ENOENT);
    }
    umask(old);
    CHECK_INT(mpconn_opts_mode(NULL), -1);
    remove_dir_of(path);
}

/* Datagram echo for mpconn_dgram_connect's clients. */
static int dgram_echo(mpconn_request *r, void *data)
{
    (void)data;
    size_t len;
    const void *msg = mpconn_request_data(r, &len);
    return mpconn_request_reply(r, msg, len);
}

static void dgram_client_round(const char *address)
{
    mpconn_server_hooks h = {.size = sizeof h, .handle = dgram_echo};
    mpconn_server *s;
    char err[256];
    CHECK_INT(mpconn_server_new(&s, address, MPCONN_SERVER_LOOP, MPCONN_HANDLER_FRAMED, &h, NULL,
                                NULL, err, sizeof err),
              0);
    serving v;
    serve_in_thread(&v, s);
    int fd;
    CHECK_INT(mpconn_dgram_connect(&fd, mpconn_server_address(s), err, sizeof err), 0);
    struct timeval tv = {.tv_sec = 10};
    CHECK_INT(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    for (int i = 0; i < 3; i++) {
        char out[16], in[16];
        int n = snprintf(out, sizeof out, "dgram %d", i);
        CHECK_INT(send(fd, out, (size_t)n, 0), n);
        CHECK_INT(recv(fd, in, sizeof in, 0), n);
        CHECK_MEM(in, out, (size_t)n);
    }
    close(fd);
    mpconn_server_shutdown(s);
    join_serving(&v, now());
    mpconn_server_free(s);
}

/* A client socket a server can answer: UDP, and Unix datagrams, whose
 * sender must have a name (autobound). */
TEST(datagram_client)
{
    int fds0 = testlib_count_dir("/proc/self/fd");
    dgram_client_round("udp:127.0.0.1:0");
    char name[64];
    snprintf(name, sizeof name, "unixgram:@mpconn-test-client-%d", (int)getpid());
    dgram_client_round(name);
    char path[256], addr[300];
    tmp_sock(path, sizeof path);
    snprintf(addr, sizeof addr, "unixgram:%s", path);
    dgram_client_round(addr);
    remove_dir_of(path);
    int fd;
    char err[256];
    CHECK_INT(mpconn_dgram_connect(&fd, "127.0.0.1:80", err, sizeof err), MPCONN_ERR_ADDR);
    CHECK_INT(fd, -1);
    CHECK(err[0] != 0);
    CHECK_INT(mpconn_dgram_connect(&fd, "udp:127.0.0.1", err, sizeof err), MPCONN_ERR_ADDR);
    CHECK_INT(mpconn_dgram_connect(&fd, "unixgram:/nonexistent/mpconn/sock", err, sizeof err),
              -ENOENT);
    CHECK_INT(testlib_count_dir("/proc/self/fd"), fds0);
}

/* What the credentials handler saw of its last sender, and the uid
 * refusals reported. */
static atomic_long seen_pid, seen_uid, seen_gid;
static atomic_int seen_count, peer_refusals;

static int dgram_creds(mpconn_request *r, void *data)
{
    (void)data;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    mpconn_request_peer(r, &pid, &uid, &gid);
    atomic_store(&seen_pid, (long)pid);
    atomic_store(&seen_uid, (long)uid);
    atomic_store(&seen_gid, (long)gid);
    atomic_fetch_add(&seen_count, 1);
    size_t len;
    const void *msg = mpconn_request_data(r, &len);
    int rc = mpconn_request_reply(r, msg, len);
    return rc == MPCONN_ERR_ADDR ? 0 : rc; /* an unbound sender: reported */
}

static void count_refusals(mpconn_server *s, mpconn_request *r, int code, const char *message,
                           void *data)
{
    (void)s;
    (void)r;
    (void)message;
    (void)data;
    if (code == MPCONN_ERR_PEER)
        atomic_fetch_add(&peer_refusals, 1);
}

/* Until *n reaches want, 10 s at most. */
static void wait_count(atomic_int *n, int want)
{
    for (int i = 0; i < 1000 && atomic_load(n) < want; i++)
        usleep(10000);
    CHECK_INT(atomic_load(n), want);
}

static mpconn_server *creds_server(int kind, const char *address, mpconn_opts *o)
{
    mpconn_server_hooks h = {
        .size = sizeof h, .handle = dgram_creds, .handle_error = count_refusals};
    mpconn_server *s;
    char err[256];
    int rc =
        mpconn_server_new(&s, address, kind, MPCONN_HANDLER_FRAMED, &h, NULL, o, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "server_new: %s\n", err);
    CHECK_INT(rc, 0);
    atomic_store(&seen_count, 0);
    atomic_store(&peer_refusals, 0);
    return s;
}

/* A process of its own sends one datagram to path from an unbound socket,
 * as uid when uid is not -1; its pid. */
static pid_t send_from_child(const char *path, uid_t uid)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (uid != (uid_t)-1 && setresuid(uid, uid, uid) < 0)
            _exit(1);
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        socklen_t sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
        memcpy(un.sun_path, path, strlen(path));
        if (path[0] == '@')
            un.sun_path[0] = 0;
        else
            sl++;
        _exit(fd >= 0 && sendto(fd, "child", 5, 0, (struct sockaddr *)&un, sl) == 5 ? 0 : 1);
    }
    int st;
    CHECK_INT(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return pid;
}

/* A Unix datagram's handler knows its sender, bound or not: pid, uid and
 * gid as the kernel gives them. A descriptor a sender attaches is never
 * installed in the server's process. */
static void sender_credentials(int kind)
{
    char path[256], addr[300];
    tmp_sock(path, sizeof path);
    snprintf(addr, sizeof addr, "unixgram:%s", path);
    mpconn_server *s = creds_server(kind, addr, NULL);
    serving v;
    serve_in_thread(&v, s);
    int fd;
    char err[256], in[16];
    CHECK_INT(mpconn_dgram_connect(&fd, addr, err, sizeof err), 0);
    struct timeval tv = {.tv_sec = 10};
    CHECK_INT(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    CHECK_INT(send(fd, "bound", 5, 0), 5);
    CHECK_INT(recv(fd, in, sizeof in, 0), 5);
    CHECK_INT(atomic_load(&seen_pid), (long)getpid());
    CHECK_INT(atomic_load(&seen_uid), (long)getuid());
    CHECK_INT(atomic_load(&seen_gid), (long)getgid());
    /* Unbound, from another process: its own pid. */
    pid_t child = send_from_child(path, (uid_t)-1);
    wait_count(&seen_count, 2);
    CHECK_INT(atomic_load(&seen_pid), (long)child);
    CHECK_INT(atomic_load(&seen_uid), (long)getuid());
    /* A pipe's end along with the datagram. */
    int p[2];
    CHECK_INT(pipe(p), 0);
    int fds0 = testlib_count_dir("/proc/self/fd");
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {.iov_base = "with fd", .iov_len = 7};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &p[0], sizeof(int));
    CHECK_INT(sendmsg(fd, &m, 0), 7);
    CHECK_INT(recv(fd, in, sizeof in, 0), 7);
    CHECK_MEM(in, "with fd", 7);
    CHECK_INT(testlib_count_dir("/proc/self/fd"), fds0);
    close(p[0]);
    close(p[1]);
    close(fd);
    CHECK_INT(atomic_load(&peer_refusals), 0);
    mpconn_server_shutdown(s);
    join_serving(&v, now());
    mpconn_server_free(s);
    remove_dir_of(path);
}

TEST(datagram_sender_credentials_loop)
{
    sender_credentials(MPCONN_SERVER_LOOP);
}

TEST(datagram_sender_credentials_threads)
{
    sender_credentials(MPCONN_SERVER_THREADS);
}

/* The stream listeners' uid policy holds for Unix datagrams: a list of
 * uids, and on an abstract name the server's own uid by default (a
 * datagram has no handshake). A refused datagram is reported and dropped;
 * the handler never sees it. */
TEST(datagram_uid_policy)
{
    char path[256], addr[300];
    tmp_sock(path, sizeof path);
    snprintf(addr, sizeof addr, "unixgram:%s", path);
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    uid_t other = getuid() + 1;
    CHECK_INT(mpconn_opts_set_allowed_uids(o, &other, 1), 0);
    mpconn_server *s = creds_server(MPCONN_SERVER_LOOP, addr, o);
    mpconn_opts_free(o);
    serving v;
    serve_in_thread(&v, s);
    send_from_child(path, (uid_t)-1);
    wait_count(&peer_refusals, 1);
    CHECK_INT(atomic_load(&seen_count), 0);
    mpconn_server_shutdown(s);
    join_serving(&v, now());
    mpconn_server_free(s);
    remove_dir_of(path);

    /* An abstract name: this uid only, unless any uid is let in. */
    char name[80];
    snprintf(name, sizeof name, "@mpconn-test-uid-%d", (int)getpid());
    snprintf(addr, sizeof addr, "unixgram:%s", name);
    for (int any = 0; any < 2; any++) {
        CHECK_INT(mpconn_opts_new(&o), 0);
        CHECK_INT(mpconn_opts_set_abstract_any_uid(o, any), 0);
        s = creds_server(MPCONN_SERVER_LOOP, addr, o);
        mpconn_opts_free(o);
        serve_in_thread(&v, s);
        send_from_child(name, (uid_t)-1);
        wait_count(&seen_count, 1);
        if (geteuid() == 0) {
            send_from_child(name, 65534);
            if (any) {
                wait_count(&seen_count, 2);
                CHECK_INT(atomic_load(&seen_uid), 65534);
            } else {
                wait_count(&peer_refusals, 1);
                CHECK_INT(atomic_load(&seen_count), 1);
            }
        } else if (any) {
            printf("not root: no sender of another uid was tried\n");
        }
        mpconn_server_shutdown(s);
        join_serving(&v, now());
        mpconn_server_free(s);
    }
}

TEST(settings)
{
    mpconn_server *s;
    CHECK_INT(mpconn_server_new(&s, "127.0.0.1:0", 7, 0, NULL, NULL, NULL, NULL, 0), -EINVAL);
    CHECK_INT(mpconn_server_new(&s, "127.0.0.1:0", 0, 7, NULL, NULL, NULL, NULL, 0), -EINVAL);
    CHECK_INT(mpconn_server_new(&s, "127.0.0.1:0", MPCONN_SERVER_THREADS, MPCONN_HANDLER_RAW, NULL,
                                NULL, NULL, NULL, 0),
              0);
    CHECK_INT(mpconn_server_set_max_connections(s, 0), -EINVAL);
    CHECK_INT(mpconn_server_set_max_datagram(s, 0), -EINVAL);
    CHECK_INT(mpconn_server_set_max_connections(s, 2), 0);
    CHECK(mpconn_server_loop(s) != NULL);
    mpconn_server_free(s);
    mpconn_server_free(NULL);
}

/* ----------------------------------------------------------------- TLS */

/* opts with the authkey (or none) and a TLS config of role, the test
 * CA's server certificate or trust in it. */
static mpconn_opts *tls_opts(int role, int keyed, double hs_timeout)
{
    mpconn_opts *o;
    mpconn_tls_config *cfg;
    CHECK_INT(mpconn_opts_new(&o), 0);
    if (keyed)
        CHECK_INT(mpconn_opts_set_authkey(o, KEY, strlen(KEY)), 0);
    if (hs_timeout >= 0)
        CHECK_INT(mpconn_opts_set_handshake_timeout(o, hs_timeout), 0);
    cfg = cert_config(role);
    CHECK_INT(mpconn_opts_set_tls(o, cfg), 0);
    mpconn_tls_config_free(cfg);
    return o;
}

static mpconn_conn *tls_connect(const char *address, int keyed)
{
    mpconn_conn *c = connect_with(address, tls_opts(MPCONN_TLS_CLIENT, keyed, -1));
    CHECK(mpconn_conn_tls(c) != NULL);
    /* A message goes as several records: Nagle's algorithm would hold the
     * later ones for the peer's delayed ACK. */
    int nodelay = 0;
    socklen_t len = sizeof nodelay;
    CHECK_INT(getsockopt(mpconn_conn_fileno(c), IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    CHECK(nodelay != 0);
    return c;
}

static mpconn_server *tls_server(int kind, fixture *f, double hs_timeout)
{
    return make_opts(kind, "tls:127.0.0.1:0", f, NULL, tls_opts(MPCONN_TLS_SERVER, 1, hs_timeout));
}

/* A plain TCP socket connected to a tls: address that says nothing. */
static int silent_tcp(const char *address)
{
    int fd = testlib_tcp_connect(address);
    CHECK(fd >= 0);
    return fd;
}

/* 20 TLS clients with the authkey, all connected before any of them
 * talks, each answered twice. */
static void twenty_tls_clients(const void *arg)
{
    enum { N = 20 };
    mpconn_conn *c[N];
    for (int i = 0; i < N; i++)
        c[i] = tls_connect(arg, 1);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < N; i++)
            exchange(c[i]);
    for (int i = 0; i < N; i++)
        mpconn_conn_free(c[i]);
}

/* TLS clients served at once (twenty_tls_clients); then nothing is left:
 * no thread, descriptor or child. */
static void tls_clients(int kind)
{
    int tasks0 = testlib_count_dir("/proc/self/task"), fds0 = testlib_count_dir("/proc/self/fd");
    fixture f = {0};
    mpconn_server *s = tls_server(kind, &f, -1);
    const char *address = mpconn_server_address(s);
    CHECK(strncmp(address, "tls:127.0.0.1:", 14) == 0);
    pid_t clients = clients_start(twenty_tls_clients, address);
    serving v;
    serve_in_thread(&v, s);
    clients_end(clients);
    mpconn_server_shutdown(s);
    join_serving(&v, now());
    mpconn_server_free(s);
    CHECK_INT(testlib_count_dir("/proc/self/task"), tasks0);
    CHECK_INT(testlib_count_dir("/proc/self/fd"), fds0);
    CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
}

TEST(tls_clients_loop)
{
    tls_clients(MPCONN_SERVER_LOOP);
}

TEST(tls_clients_threads)
{
    tls_clients(MPCONN_SERVER_THREADS);
}

TEST(tls_clients_fork)
{
    tls_clients(MPCONN_SERVER_FORK);
}

/* Five silent TCP peers, three TLS clients served meanwhile, then the end
 * of each silent peer's stream. */
static void silent_then_tls(const void *arg)
{
    const char *address = arg;
    int silent[5];
    for (int i = 0; i < 5; i++)
        silent[i] = silent_tcp(address);
    double t0 = now();
    for (int i = 0; i < 3; i++) {
        mpconn_conn *c = tls_connect(address, 1);
        exchange(c);
        mpconn_conn_free(c);
    }
    CHECK(now() - t0 < 5.0);
    for (int i = 0; i < 5; i++) {
        struct pollfd p = {.fd = silent[i], .events = POLLIN};
        CHECK_INT(poll(&p, 1, 10000), 1);
        char b;
        CHECK(recv(silent[i], &b, 1, 0) <= 0);
        close(silent[i]);
    }
}

/* Peers that open TCP and never send a ClientHello hold up no one, and the
 * handshake deadline drops them (their sockets see the end of the stream). */
static void tls_silent_peers(int kind)
{
    fixture f = {0};
    mpconn_server *s = tls_server(kind, &f, 0.5);
    pid_t clients = clients_start(silent_then_tls, mpconn_server_address(s));
    serving v;
    serve_in_thread(&v, s);
    clients_end(clients);
    mpconn_server_shutdown(s);
    join_serving(&v, now());
    mpconn_server_free(s);
}

/* Out of descriptors, a THREADS server on tls: (whose blocking listener
 * stops accepting for a moment) must stop watching the listening socket
 * too: the backlog keeps it readable, and the loop would spin on it. */
TEST(tls_out_of_descriptors_no_spin)
{
    int ready[2];
    CHECK_INT(pipe(ready), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives a failed test */
        close(ready[0]);
        fixture f = {0};
        mpconn_server *s = tls_server(MPCONN_SERVER_THREADS, &f, -1);
        char address[128];
        snprintf(address, sizeof address, "%s", mpconn_server_address(s));
        serving v;
        serve_in_thread(&v, s);
        /* Served once: the loop is up before the descriptors run out. */
        mpconn_conn *c = tls_connect(address, 1);
        exchange(c);
        mpconn_conn_free(c);
        /* Every descriptor below a limit a little above those in use. */
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = (rlim_t)testlib_count_dir("/proc/self/fd") + 16;
        setrlimit(RLIMIT_NOFILE, &rl);
        for (int i = 0; i < 64 && dup(0) >= 0; i++)
            ;
        size_t n = strlen(address) + 1;
        if (write(ready[1], address, n) != (ssize_t)n)
            _exit(1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    char address[128] = {0};
    CHECK(read(ready[0], address, sizeof address - 1) > 0);
    close(ready[0]);
    int waiting[3];
    for (int i = 0; i < 3; i++)
        waiting[i] = silent_tcp(address);
    usleep(300000);
    double cpu0 = testlib_proc_cpu(pid);
    usleep(1000000);
    double cpu = testlib_proc_cpu(pid) - cpu0;
    kill(pid, SIGKILL);
    CHECK_INT(waitpid(pid, NULL, 0), pid);
    for (int i = 0; i < 3; i++)
        close(waiting[i]);
    fprintf(stderr, "%.2f s of CPU in 1 s with no descriptor left\n", cpu);
    CHECK(cpu < 0.3);
}

TEST(tls_silent_peers_loop)
{
    tls_silent_peers(MPCONN_SERVER_LOOP);
}

TEST(tls_silent_peers_threads)
{
    tls_silent_peers(MPCONN_SERVER_THREADS);
}

TEST(tls_silent_peers_fork)
{
    tls_silent_peers(MPCONN_SERVER_FORK);
}

/* One TLS client that goes on talking after a pause. */
static void tls_client_talking_on(const void *arg)
{
    mpconn_conn *c = tls_connect(arg, 1);
    exchange(c);
    usleep(100000); /* the parent has long dropped its copy */
    for (int i = 0; i < 5; i++)
        exchange(c);
    mpconn_conn_free(c);
}

/* FORK: the parent drops its copy of the session without a close_notify,
 * so the child's goes on (a close_notify would end the client's stream
 * after its first exchange); the child is reaped as it ends. */
TEST(tls_fork_child_owns_session)
{
    fixture f = {0};
    mpconn_server *s = tls_server(MPCONN_SERVER_FORK, &f, -1);
    pid_t clients = clients_start(tls_client_talking_on, mpconn_server_address(s));
    serving v;
    serve_in_thread(&v, s);
    clients_end(clients);
    /* The child ends when the client goes; nothing is left to reap. */
    mpconn_server_shutdown(s);
    join_serving(&v, now());
    mpconn_server_free(s);
    CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
}

typedef struct second_client {
    const char *address;
    atomic_int done;
} second_client;

static void *second_main(void *arg)
{
    second_client *sc = arg;
    mpconn_conn *c = tls_connect(sc->address, 1);
    exchange(c);
    mpconn_conn_free(c);
    atomic_store(&sc->done, 1);
    return NULL;
}

/* The first client holds the one handler while a second one waits. */
static void second_waits_for_first(const void *arg)
{
    mpconn_conn *first = tls_connect(arg, 1);
    exchange(first);
    second_client sc = {arg, 0};
    pthread_t t;
    CHECK_INT(pthread_create(&t, NULL, second_main, &sc), 0);
    usleep(200000);
    CHECK_INT(atomic_load(&sc.done), 0); /* the one handler is busy */
    exchange(first);
    mpconn_conn_free(first);
    pthread_join(t, NULL);
    CHECK_INT(atomic_load(&sc.done), 1);
}

/* At the cap the server stops driving TLS handshakes, and when a handler
 * ends it takes them up again: the waiting client is served then. */
static void tls_at_the_cap(int kind)
{
    fixture f = {0};
    mpconn_server *s = tls_server(kind, &f, -1);
    CHECK_INT(mpconn_server_set_max_connections(s, 1), 0);
    pid_t clients = clients_start(second_waits_for_first, mpconn_server_address(s));
    serving v;
    serve_in_thread(&v, s);
    clients_end(clients);
    mpconn_server_shutdown(s);
    join_serving(&v, now());
    mpconn_server_free(s);
}

TEST(tls_at_the_cap_threads)
{
    tls_at_the_cap(MPCONN_SERVER_THREADS);
}

TEST(tls_at_the_cap_fork)
{
    tls_at_the_cap(MPCONN_SERVER_FORK);
}

TEST(tls_at_the_cap_loop)
{
    tls_at_the_cap(MPCONN_SERVER_LOOP);
}

static int raw_echo(mpconn_request *r, const void *msg, size_t len, void *data)
{
    (void)data;
    return mpconn_async_send(mpconn_request_async(r), msg, len);
}

/* RAW handlers on tls: LOOP's get the decrypted stream (the echo of a
 * framed message comes back whole); THREADS and FORK, which would read the
 * socket under the TLS session, are refused. */
TEST(tls_raw_handlers)
{
    mpconn_server *s;
    mpconn_opts *o = tls_opts(MPCONN_TLS_SERVER, 0, -1);
    char err[256];
    for (int kind = MPCONN_SERVER_THREADS; kind <= MPCONN_SERVER_FORK; kind++) {
        CHECK_INT(mpconn_server_new(&s, "tls:127.0.0.1:0", kind, MPCONN_HANDLER_RAW, NULL, NULL, o,
                                    err, sizeof err),
                  MPCONN_ERR_NOTSUP);
        CHECK(strstr(err, "LOOP") != NULL);
    }
    /* Without a server config there is no TLS to serve, in any kind. */
    for (int kind = MPCONN_SERVER_LOOP; kind <= MPCONN_SERVER_FORK; kind++)
        CHECK_INT(mpconn_server_new(&s, "tls:127.0.0.1:0", kind, MPCONN_HANDLER_FRAMED, NULL, NULL,
                                    NULL, err, sizeof err),
                  MPCONN_ERR_TLSCONFIG);
    mpconn_server_hooks h = {.size = sizeof h, .on_message = raw_echo};
    CHECK_INT(mpconn_server_new(&s, "tls:127.0.0.1:0", MPCONN_SERVER_LOOP, MPCONN_HANDLER_RAW, &h,
                                NULL, o, err, sizeof err),
              0);
    mpconn_opts_free(o);
    serving v;
    serve_in_thread(&v, s);
    mpconn_conn *c = tls_connect(mpconn_server_address(s), 0);
    exchange(c);
    mpconn_conn_free(c);
    mpconn_server_shutdown(s);
    join_serving(&v, now());
    mpconn_server_free(s);
}

TESTLIB_MAIN
