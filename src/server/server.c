/* The server object: creation, settings, serve_forever and shutdown, and
 * what the kinds share (accepting with verify_request, the blocking
 * handshake of THREADS and FORK workers, peer addresses, error reports). */
#define _GNU_SOURCE
#include "server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const srv_kind *kind_of(const mpconn_server *s)
{
    if (s->dgram)
        return s->kind == MPCONN_SERVER_THREADS ? &srv_dgram_threads_kind : &srv_dgram_loop_kind;
    if (s->kind == MPCONN_SERVER_THREADS)
        return &srv_threads_kind;
    if (s->kind == MPCONN_SERVER_FORK)
        return &srv_fork_kind;
    return &srv_loop_kind;
}

void srv_kind_readable(mpconn_server *s)
{
    kind_of(s)->readable(s);
}

static int fail(char *errmsg, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *errmsg, size_t errlen, int code, const char *fmt, ...)
{
    if (errmsg && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errmsg, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

void srv_error(mpconn_server *s, mpconn_request *r, int code, const char *fmt, ...)
{
    if (!s->hooks.handle_error)
        return;
    char msg[SRV_ERRMSG_MAX + SRV_PEER_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->hooks.handle_error(s, r, code, msg, s->data);
}

int srv_hook_code(int rc)
{
    return rc < 0 ? rc : MPCONN_ERR_BROKEN;
}

int mpconn_server_new(mpconn_server **out, const char *address, int kind, int form,
                      const mpconn_server_hooks *hooks, void *data, const mpconn_opts *opts,
                      char *errmsg, size_t errlen)
{
    *out = NULL;
    if (errmsg && errlen)
        errmsg[0] = 0;
    if (kind != MPCONN_SERVER_LOOP && kind != MPCONN_SERVER_THREADS && kind != MPCONN_SERVER_FORK)
        return fail(errmsg, errlen, -EINVAL, "server: unknown kind %d", kind);
    if (form != MPCONN_HANDLER_FRAMED && form != MPCONN_HANDLER_RAW)
        return fail(errmsg, errlen, -EINVAL, "server: unknown handler form %d", form);
    /* A THREADS or FORK RAW handler reads the socket itself, which would
     * bypass the TLS session. */
    if (address && strncmp(address, "tls:", 4) == 0 && kind != MPCONN_SERVER_LOOP &&
        form == MPCONN_HANDLER_RAW)
        return fail(errmsg, errlen, MPCONN_ERR_NOTSUP,
                    "server: %s: RAW handlers on tls: run in the LOOP kind only", address);
    mpconn_server *s = calloc(1, sizeof *s);
    if (!s)
        return fail(errmsg, errlen, -ENOMEM, "server: out of memory");
    s->kind = kind;
    s->form = form;
    if (hooks) {
        size_t n = hooks->size && hooks->size < sizeof s->hooks ? hooks->size : sizeof s->hooks;
        memcpy(&s->hooks, hooks, n);
    }
    s->data = data;
    s->lfd = -1;
    /* Made now, so that a shutdown from any thread, at any time, has a
     * descriptor to write to; closed only by the free. */
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->wake_fd < 0) {
        int e = errno;
        free(s);
        return fail(errmsg, errlen, -e, "server: eventfd: %s", strerror(e));
    }
    s->cap = kind == MPCONN_SERVER_LOOP ? 4096 : 64;
    s->idle = -1;
    s->timeout = -1;
    s->max_dgram = 65536;
    atomic_init(&s->stopping, 0);
    pthread_mutex_init(&s->mu, NULL);
    int r = mpconn_opts_dup(&s->opts, opts);
    if (r < 0) {
        mpconn_server_free(s);
        return fail(errmsg, errlen, r, "server: out of memory");
    }
    mpconn_auth *probe = NULL;
    s->has_key = form == MPCONN_HANDLER_FRAMED &&
                 mpconn_opts_new_auth(&probe, s->opts, MPCONN_AUTH_SERVER) == 0;
    mpconn_auth_free(probe);
    s->tls = address && strncmp(address, "tls:", 4) == 0;
    if (s->tls) {
        r = srv_tls_open(s, address, errmsg, errlen);
        if (r < 0) {
            mpconn_server_free(s);
            return r;
        }
        *out = s;
        return 0;
    }
    r = srv_dgram_open(s, address, errmsg, errlen);
    if (r == 0) {
        r = mpconn_listener_open(&s->listener, address, s->opts, errmsg, errlen);
        if (r == 0) {
            s->lfd = mpconn_listener_fileno(s->listener);
            snprintf(s->address, sizeof s->address, "%s", mpconn_listener_address(s->listener));
        }
    } else if (r > 0) {
        s->dgram = 1;
        if (kind == MPCONN_SERVER_FORK) {
            mpconn_server_free(s);
            return fail(errmsg, errlen, -EINVAL, "server: datagram servers have no fork kind");
        }
        r = 0;
    }
    if (r < 0) {
        mpconn_server_free(s);
        return r;
    }
    *out = s;
    return 0;
}

#define BEFORE_START(s)                                                                            \
    do {                                                                                           \
        if ((s)->started)                                                                          \
            return -EBUSY;                                                                         \
    } while (0)

int mpconn_server_set_max_connections(mpconn_server *s, size_t n)
{
    BEFORE_START(s);
    if (n == 0)
        return -EINVAL;
    s->cap = n;
    return 0;
}

int mpconn_server_set_idle_timeout(mpconn_server *s, double seconds)
{
    BEFORE_START(s);
    s->idle = isnan(seconds) ? -1 : seconds;
    return 0;
}

int mpconn_server_set_timeout(mpconn_server *s, double seconds)
{
    BEFORE_START(s);
    s->timeout = isnan(seconds) ? -1 : seconds;
    return 0;
}

int mpconn_server_set_drain(mpconn_server *s, int drain)
{
    BEFORE_START(s);
    s->drain = drain != 0;
    return 0;
}

int mpconn_server_set_max_datagram(mpconn_server *s, size_t bytes)
{
    BEFORE_START(s);
    if (bytes == 0)
        return -EINVAL;
    s->max_dgram = bytes;
    return 0;
}

mpconn_loop *mpconn_server_loop(mpconn_server *s)
{
    /* Made when first asked for (here or by serve_forever): a server on a
     * caller's loop never has one. */
    if (!s->loop && !s->foreign)
        mpconn_loop_new(&s->loop, NULL); /* NULL on failure */
    return s->foreign ? NULL : s->loop;
}

const char *mpconn_server_address(const mpconn_server *s)
{
    return s->address;
}

void mpconn_server_shutdown(mpconn_server *s)
{
    atomic_store(&s->stopping, 1);
    /* The loop's thread takes it from there (on_wake), whichever loop it
     * is; the eventfd is the server's until the free. */
    uint64_t one = 1;
    ssize_t n = write(s->wake_fd, &one, sizeof one);
    (void)n; /* a full counter has woken the loop already */
}

/* ------------------------------------------------------------ acceptor */

static void end(mpconn_server *s);

/* The listening socket; its timer: accepting again after EMFILE. */
static void on_listen(mpconn_watch *w, int events, void *data)
{
    (void)w;
    mpconn_server *s = data;
    if (events & MPCONN_WATCH_TIMER)
        kind_of(s)->woken(s);
    else if (!atomic_load(&s->stopping))
        kind_of(s)->readable(s);
}

/* The eventfd: a worker freed a slot, or the shutdown; its timer:
 * handle_timeout. */
static void on_wake(mpconn_watch *w, int events, void *data)
{
    mpconn_server *s = data;
    if (events & MPCONN_WATCH_TIMER) {
        if (!atomic_load(&s->stopping)) {
            mpconn_watch_set_timer(w, s->timeout);
            if (s->hooks.handle_timeout)
                s->hooks.handle_timeout(s, s->data);
        }
        return;
    }
    uint64_t n;
    while (read(s->wake_fd, &n, sizeof n) > 0) {
    }
    if (!atomic_load(&s->stopping))
        kind_of(s)->woken(s);
    else if (s->foreign)
        end(s);
    else
        mpconn_loop_stop(s->loop);
}

void srv_pause(mpconn_server *s, int pause)
{
    if (s->lio)
        mpconn_watch_set(s->lio, pause ? 0 : MPCONN_READABLE);
    if (s->alistener) {
        if (pause)
            mpconn_async_listener_pause(s->alistener);
        else
            mpconn_async_listener_resume(s->alistener);
    }
    if (s->listener && s->tls)
        srv_tls_watch(s, !pause);
}

void srv_request_seen(mpconn_server *s)
{
    if (s->wake && s->timeout >= 0)
        mpconn_watch_set_timer(s->wake, s->timeout);
}

void srv_retry_later(mpconn_server *s)
{
    srv_pause(s, 1);
    if (s->lio)
        mpconn_watch_set_timer(s->lio, 0.1);
}

static void peer_creds(mpconn_request *r)
{
    r->pid = -1;
    r->uid = (uid_t)-1;
    r->gid = (gid_t)-1;
    if (r->ss.ss_family != AF_UNIX)
        return;
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(r->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0) {
        r->pid = cr.pid;
        r->uid = cr.uid;
        r->gid = cr.gid;
    }
}

int srv_accept(mpconn_server *s, mpconn_request *r)
{
    if (s->tls)
        return srv_tls_accept(s, r);
    int fd, refused = 0;
    /* A LOOP connection is made non-blocking anyway: asked here, it costs
     * no fcntl. THREADS and FORK handlers read a blocking socket. */
    int flags = SOCK_CLOEXEC | (s->kind == MPCONN_SERVER_LOOP ? SOCK_NONBLOCK : 0);
again:
    r->sl = sizeof r->ss;
    fd = accept4(s->lfd, (struct sockaddr *)&r->ss, &r->sl, flags);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
            return 0;
        int e = errno;
        /* Out of descriptors or memory: accepting again at once would spin;
         * peers wait in the backlog a moment instead. */
        srv_retry_later(s);
        srv_error(s, NULL, -e, "accept on %s: %s (accepting again in 0.1 s)", s->address,
                  strerror(e));
        return -e;
    }
    r->fd = fd;
    r->conn = NULL;
    r->async = NULL;
    r->user = NULL;
    r->dgram = NULL;
    r->dgram_len = 0;
    r->peer[0] = 0;
    r->peer_done = 0; /* formatted when a hook or a report asks for it */
    peer_creds(r);
    /* The listener's uid policy, as mpconn_listener_accept applies it. */
    if (r->ss.ss_family == AF_UNIX &&
        !mpconn_opts_peer_allowed(s->opts, s->address[0] == '@', s->has_key, r->uid)) {
        srv_error(s, r, MPCONN_ERR_PEER, "refused peer pid %ld uid %ld on %s: uid not allowed",
                  (long)r->pid, (long)r->uid, s->address);
        close(fd);
        r->fd = -1;
        if (++refused < 64)
            goto again;
        return 0; /* the rest next time round the loop */
    }
    srv_request_seen(s);
    return 1;
}

int srv_verify(mpconn_server *s, mpconn_request *r)
{
    return !s->hooks.verify_request || s->hooks.verify_request(r, s->data) == 0;
}

const char *srv_peer(mpconn_request *r)
{
    if (!r->peer_done) {
        srv_format_addr(&r->ss, r->sl, r->peer, sizeof r->peer);
        r->peer_done = 1;
    }
    return r->peer;
}

const char *srv_peer_or(mpconn_request *r, const char *unnamed)
{
    const char *p = srv_peer(r);
    return *p ? p : unnamed;
}

void srv_format_addr(const struct sockaddr_storage *ss, socklen_t sl, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN];
    buf[0] = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(buf, cap, "%s:%u", host, ntohs(in->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(buf, cap, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else if (ss->ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        if (sl <= off)
            return;
        size_t n = sl - off;
        if (un->sun_path[0] == 0)
            snprintf(buf, cap, "@%.*s", (int)(n - 1), un->sun_path + 1);
        else
            snprintf(buf, cap, "%.*s", (int)strnlen(un->sun_path, n), un->sun_path);
    }
}

/* ------------------------------------------------ THREADS and FORK workers */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Waits for events on fd until deadline (< 0: none): 0, or -ETIMEDOUT. */
static int wait_fd(int fd, short events, double deadline)
{
    for (;;) {
        int ms = -1;
        if (deadline >= 0) {
            double left = deadline - now_s();
            if (left <= 0)
                return -ETIMEDOUT;
            ms = (int)ceil(left * 1000);
        }
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, ms);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* Moves n bytes; waits (poll) only when the socket has nothing now, so a
 * peer that keeps up costs one system call per message part. */
static int hs_io(int fd, void *buf, size_t n, int writing, double deadline)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t k =
            writing ? send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(fd, p, n, MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -errno;
            int r = wait_fd(fd, writing ? POLLOUT : POLLIN, deadline);
            if (r < 0)
                return r;
            continue;
        }
        if (k == 0)
            return MPCONN_ERR_EOF;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* The listener side's handshake. Each message is read to its exact length,
 * so no byte behind the handshake is taken from the connection's stream. */
static int handshake(mpconn_server *s, int fd, char *err, size_t cap)
{
    mpconn_auth *a;
    int r = mpconn_opts_new_auth(&a, s->opts, MPCONN_AUTH_SERVER);
    if (r < 0)
        return fail(err, cap, r, "handshake: %s", mpconn_strerror(r));
    double t = mpconn_opts_handshake_timeout(s->opts);
    double deadline = t < 0 ? -1 : now_s() + t;
    if ((r = mpconn_auth_start(a)) < 0)
        goto out;
    for (;;) {
        const void *msg;
        size_t len;
        while (mpconn_auth_next_framed(a, &msg, &len))
            if ((r = hs_io(fd, (void *)msg, len, 1, deadline)) < 0)
                goto out;
        if ((r = mpconn_auth_done(a)) != 0)
            break;
        unsigned char hdr[4], body[512];
        if ((r = hs_io(fd, hdr, 4, 0, deadline)) < 0)
            goto out;
        uint32_t n =
            (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        if (n > sizeof body) {
            r = fail(err, cap, MPCONN_ERR_AUTHPROTO, "handshake: message of %u bytes", n);
            mpconn_auth_free(a);
            return r;
        }
        if ((r = hs_io(fd, body, n, 0, deadline)) < 0)
            goto out;
        mpconn_auth_feed(a, body, n);
    }
out:
    if (r < 0) {
        const char *why = mpconn_auth_errmsg(a);
        fail(err, cap, r, "handshake: %s", why && *why ? why : mpconn_strerror(r));
    }
    mpconn_auth_free(a);
    return r < 0 ? r : 0;
}

void srv_close_fd_locked(mpconn_server *s, mpconn_request *r)
{
    if (r->conn)
        mpconn_conn_free(r->conn);
    else if (r->fd >= 0 && !s->dgram)
        close(r->fd);
    r->conn = NULL;
    r->fd = -1;
}

void srv_close_fd(mpconn_server *s, mpconn_request *r)
{
    /* Out of the shutdown's reach under the lock, closed after it: a TCP
     * close (a TLS one more so) takes a while, and the acceptor would wait
     * for the lock meanwhile. */
    pthread_mutex_lock(&s->mu);
    mpconn_conn *c = r->conn;
    int fd = s->dgram ? -1 : r->fd;
    r->conn = NULL;
    r->fd = -1;
    pthread_mutex_unlock(&s->mu);
    if (c)
        mpconn_conn_free(c);
    else if (fd >= 0)
        close(fd);
}

int srv_serve_stream(mpconn_server *s, mpconn_request *r)
{
    char err[SRV_ERRMSG_MAX];
    int rc;
    /* A TLS request comes with its connection: the listener ran both
     * handshakes. */
    if (!r->conn && s->has_key && (rc = handshake(s, r->fd, err, sizeof err)) < 0) {
        if (!atomic_load(&s->stopping))
            srv_error(s, r, rc, "%s: %s", srv_peer_or(r, "peer"), err);
        srv_close_fd(s, r);
        return 1;
    }
    if (r->conn) {
        if (s->idle >= 0)
            mpconn_conn_set_timeouts(r->conn, -1, s->idle);
    } else if (s->form == MPCONN_HANDLER_FRAMED) {
        mpconn_conn *c;
        rc = mpconn_conn_from_fd(&c, r->fd, MPCONN_READABLE | MPCONN_WRITABLE, s->opts);
        if (rc < 0) {
            srv_error(s, r, rc, "connection: %s", mpconn_strerror(rc));
            srv_close_fd(s, r);
            return 1;
        }
        r->conn = c; /* the shutdown only touches r->fd, under mu */
        if (s->idle >= 0)
            mpconn_conn_set_timeouts(c, -1, s->idle);
    } else if (s->idle >= 0) {
        struct timeval tv = {.tv_sec = (time_t)s->idle,
                             .tv_usec = (suseconds_t)((s->idle - floor(s->idle)) * 1e6)};
        setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    rc = s->hooks.setup ? s->hooks.setup(r, s->data) : 0;
    if (rc == 0 && s->hooks.handle)
        rc = s->hooks.handle(r, s->data);
    /* An abort cuts running handlers' sockets: what fails after that (a
     * TLS stream cut without its close_notify, say) is the shutdown's
     * doing, not the handler's. */
    if (rc != 0 && !(atomic_load(&s->stopping) && !s->drain))
        srv_error(s, r, srv_hook_code(rc), "handler for %s failed: %s", srv_peer_or(r, "peer"),
                  mpconn_strerror(srv_hook_code(rc)));
    if (s->hooks.finish)
        s->hooks.finish(r, s->data);
    srv_close_fd(s, r);
    return rc != 0;
}

void srv_serve_dgram(mpconn_server *s, mpconn_request *r)
{
    int rc = s->hooks.setup ? s->hooks.setup(r, s->data) : 0;
    if (rc == 0 && s->hooks.handle)
        rc = s->hooks.handle(r, s->data);
    if (rc != 0)
        srv_error(s, r, srv_hook_code(rc), "handler for datagram from %s failed: %s",
                  srv_peer_or(r, "an unbound sender"), mpconn_strerror(srv_hook_code(rc)));
    if (s->hooks.finish)
        s->hooks.finish(r, s->data);
}

int srv_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    /* Signals go to the serving thread's watchers, never to a worker. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -r;
}

/* ------------------------------------------------------- serve_forever */

static int start(mpconn_server *s)
{
    int r;
    s->started = 1;
    if ((r = mpconn_watch_new(&s->wake, s->wake_fd, s->ad, s->adloop, on_wake, s)) < 0)
        return r;
    mpconn_watch_set(s->wake, MPCONN_READABLE);
    if ((r = kind_of(s)->start(s)) < 0)
        return r;
    /* A LOOP server on tls: accepts through its async listener instead. */
    if (s->alistener && (r = mpconn_async_listener_attach(s->alistener, s->ad, s->adloop)) < 0)
        return r;
    if (s->lfd >= 0 && !s->alistener) {
        if ((r = mpconn_watch_new(&s->lio, s->lfd, s->ad, s->adloop, on_listen, s)) < 0)
            return r;
        mpconn_watch_set(s->lio, MPCONN_READABLE);
    }
    srv_request_seen(s);
    return 0;
}

/* Stops accepting and closes the listening socket (and its file): from
 * here on peers are refused, also while handlers drain. */
static void close_listening(mpconn_server *s)
{
    if (s->lio) {
        mpconn_watch_close(s->lio);
        s->lio = NULL;
    }
    srv_tls_close(s);
    if (s->dgram && s->started && !s->ended_kind)
        return; /* workers may still reply through it */
    if (s->listener) {
        mpconn_listener_free(s->listener);
        s->listener = NULL;
    } else if (s->lfd >= 0) {
        close(s->lfd);
        if (s->unlink_path)
            unlink(s->unlink_path);
    }
    s->lfd = -1;
}

static void end(mpconn_server *s)
{
    if (s->ended)
        return;
    s->ended = 1;
    atomic_store(&s->stopping, 1);
    close_listening(s);
    if (s->started)
        kind_of(s)->stop(s);
    s->ended_kind = 1;
    close_listening(s);
    mpconn_watch_close(s->wake);
    s->wake = NULL;
    if (s->loop && !s->foreign)
        mpconn_loop_run(s->loop, MPCONN_RUN_NOWAIT); /* the close callbacks */
}

int mpconn_server_serve_forever(mpconn_server *s)
{
    if (s->started)
        return MPCONN_ERR_CLOSED;
    int r = s->loop ? 0 : mpconn_loop_new(&s->loop, NULL);
    if (r < 0)
        return r;
    s->ad = mpconn_loop_adapter();
    s->adloop = s->loop;
    r = start(s);
    while (r >= 0 && !atomic_load(&s->stopping)) {
        r = mpconn_loop_run(s->loop, MPCONN_RUN_DEFAULT);
        if (r == 0)
            break;
    }
    end(s);
    return r < 0 ? r : 0;
}

int mpconn_server_start(mpconn_server *s, const mpconn_adapter *ad, void *loop)
{
    if (s->started)
        return MPCONN_ERR_CLOSED;
    if (!ad)
        return -EINVAL;
    s->ad = ad;
    s->adloop = loop;
    s->foreign = 1;
    int r = start(s);
    if (r < 0 || atomic_load(&s->stopping))
        end(s);
    return r < 0 ? r : 0;
}

void mpconn_server_free(mpconn_server *s)
{
    if (!s)
        return;
    end(s);
    srv_loop_close_all(s); /* what a drain on the caller's loop left */
    srv_pool_free(s);
    free(s->children);
    free(s->dbuf);
    free(s->unlink_path);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    mpconn_loop_free(s->loop);
    mpconn_opts_free(s->opts);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ------------------------------------------------------------ requests */

mpconn_server *mpconn_request_server(const mpconn_request *r)
{
    return r->server;
}

const char *mpconn_request_peer(const mpconn_request *r, pid_t *pid, uid_t *uid, gid_t *gid)
{
    if (pid)
        *pid = r->pid;
    if (uid)
        *uid = r->uid;
    if (gid)
        *gid = r->gid;
    /* Not const in fact: the text is made on first use. */
    return srv_peer((mpconn_request *)r);
}

mpconn_conn *mpconn_request_conn(const mpconn_request *r)
{
    return r->conn;
}

mpconn_async *mpconn_request_async(const mpconn_request *r)
{
    return r->async;
}

int mpconn_request_fd(const mpconn_request *r)
{
    return r->fd;
}

void mpconn_request_set_user(mpconn_request *r, void *user)
{
    r->user = user;
}

void *mpconn_request_user(const mpconn_request *r)
{
    return r->user;
}

const void *mpconn_request_data(const mpconn_request *r, size_t *len)
{
    if (len)
        *len = r->dgram_len;
    return r->dgram;
}
