/* mpconn serve through mpconn_server: --kind threads|fork, the loop kind's
 * printing and echo as a blocking handler per client, on a worker thread or
 * in a child process (--max-clients is the server's cap on them); and
 * datagram addresses, each datagram printed and echoed as it comes. */
#define _GNU_SOURCE
#include "serve.h"

#include <mpconn/loop.h>
#include <mpconn/server.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* What a FORK child tells the parent through the pipe: a client served to
 * its end (for --count), standard output gone (the server's exit status). */
#define CHILD_SERVED 'd'
#define CHILD_NO_OUTPUT 'o'

typedef struct kinds {
    const serve_cfg *cfg;
    mpconn_server *srv;
    serve_lines lines;
    atomic_long served;
    atomic_int status;
    atomic_int stopping; /* no more lines about peers: the shutdown ends them */
    int in_child;        /* FORK: this copy is a child's */
    int pipe[2];         /* FORK: children write, the parent reads */
} kinds;

static void stop(kinds *k)
{
    atomic_store(&k->stopping, 1);
    mpconn_server_shutdown(k->srv);
}

static void tell_parent(kinds *k, char what)
{
    ssize_t n;
    do
        n = write(k->pipe[1], &what, 1);
    while (n < 0 && errno == EINTR);
}

static void output_failed(kinds *k)
{
    if (atomic_exchange(&k->status, CLI_FAIL) == CLI_OK)
        cli_error("cannot write to standard output: %s", strerror(errno));
    if (k->in_child)
        tell_parent(k, CHILD_NO_OUTPUT);
    else
        stop(k);
}

static void end_of(kinds *k, const char *peer, int reason, const char *errmsg)
{
    if (!atomic_load(&k->stopping))
        serve_report_end(k->cfg, &k->lines, peer, reason, errmsg);
}

/* Writes all of buf; the peer's pace is the handler's. */
static int send_all(int fd, const unsigned char *buf, size_t len)
{
    while (len) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Multiprocessing messages on the request's connection (authenticated
 * already when there is a key). */
static void serve_messages(kinds *k, mpconn_request *r, const char *peer)
{
    mpconn_conn *c = mpconn_request_conn(r);
    for (;;) {
        void *msg;
        size_t len;
        int rc = mpconn_conn_recv_bytes(c, &msg, &len, 0);
        if (rc < 0) {
            end_of(k, peer, rc, mpconn_conn_errmsg(c));
            return;
        }
        if (serve_show(k->cfg, msg, len) < 0) {
            free(msg);
            output_failed(k);
            return;
        }
        rc = k->cfg->echo ? mpconn_conn_send_bytes(c, msg, len) : 0;
        free(msg);
        if (rc < 0) {
            end_of(k, peer, rc, mpconn_conn_errmsg(c));
            return;
        }
    }
}

/* Lines ending in the terminator, read from the socket itself; a line's
 * echo is its bytes and the terminator, as they arrived. */
static void serve_lines_of(kinds *k, mpconn_request *r, const char *peer)
{
    const serve_cfg *c = k->cfg;
    int fd = mpconn_request_fd(r);
    size_t cap = 4096, have = 0, scan = 0;
    unsigned char *buf = malloc(cap);
    int reason = buf ? 0 : -ENOMEM;
    while (buf) {
        unsigned char *hit =
            have - scan >= c->termlen ? memmem(buf + scan, have - scan, c->term, c->termlen) : NULL;
        if (hit) {
            size_t n = (size_t)(hit - buf), whole = n + c->termlen;
            if (c->max_message && n > c->max_message) {
                reason = MPCONN_ERR_MSGSIZE;
                break;
            }
            if (serve_show(c, buf, n) < 0) {
                output_failed(k);
                break;
            }
            if (c->echo && (reason = send_all(fd, buf, whole)) < 0)
                break;
            have -= whole;
            memmove(buf, buf + whole, have);
            scan = 0;
            continue;
        }
        /* No terminator in what came: the line is at least this long. */
        scan = have >= c->termlen ? have - c->termlen + 1 : 0;
        if (c->max_message && scan > c->max_message) {
            reason = MPCONN_ERR_MSGSIZE;
            break;
        }
        if (have == cap) {
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) {
                reason = -ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t got = recv(fd, buf + have, cap - have, 0);
        if (got > 0) {
            have += (size_t)got;
        } else if (got == 0) {
            reason = have ? MPCONN_ERR_EOFMSG : MPCONN_ERR_EOF;
            break;
        } else if (errno != EINTR) {
            /* The idle timeout is the socket's receive timeout. */
            reason = errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
            break;
        }
    }
    free(buf);
    end_of(k, peer, reason, NULL);
}

static void name_of(const mpconn_request *r, char *buf, size_t cap)
{
    pid_t pid;
    uid_t uid;
    const char *addr = mpconn_request_peer(r, &pid, &uid, NULL);
    serve_peer_name(buf, cap, addr, pid, uid);
}

static void on_finish(mpconn_request *r, void *data);

/* One datagram, on the serving thread (loop) or a worker (threads). */
static int on_datagram(mpconn_request *r, void *data)
{
    kinds *k = data;
    size_t len;
    const void *msg = mpconn_request_data(r, &len);
    pid_t pid;
    uid_t uid;
    const char *peer = mpconn_request_peer(r, &pid, &uid, NULL);
    if (k->cfg->verbose) {
        char who[64] = "";
        if (pid != -1)
            snprintf(who, sizeof who, " (pid %ld uid %ld)", (long)pid, (long)uid);
        cli_error("datagram of %zu byte%s from %s%s", len, len == 1 ? "" : "s",
                  *peer ? peer : "an unbound sender", who);
    }
    if (serve_show(k->cfg, msg, len) < 0) {
        output_failed(k);
        return 0;
    }
    /* A reply that fails is reported to on_error by the server. */
    if (k->cfg->echo)
        mpconn_request_reply(r, msg, len);
    on_finish(r, k);
    return 0;
}

static int on_handle(mpconn_request *r, void *data)
{
    kinds *k = data;
    char peer[160];
    name_of(r, peer, sizeof peer);
    if (k->cfg->verbose)
        serve_report_connection(
            peer, mpconn_request_conn(r) ? mpconn_conn_tls(mpconn_request_conn(r)) : NULL);
    if (k->cfg->termlen)
        serve_lines_of(k, r, peer);
    else
        serve_messages(k, r, peer);
    return 0;
}

static void on_finish(mpconn_request *r, void *data)
{
    (void)r;
    kinds *k = data;
    if (k->in_child) {
        tell_parent(k, CHILD_SERVED);
        return;
    }
    long n = atomic_fetch_add(&k->served, 1) + 1;
    if (k->cfg->count > 0 && n == k->cfg->count)
        stop(k);
}

static void on_error(mpconn_server *s, mpconn_request *r, int code, const char *message, void *data)
{
    (void)s;
    (void)r;
    (void)code;
    kinds *k = data;
    if (!atomic_load(&k->stopping))
        serve_line(&k->lines, "%s", message);
}

static void on_after_fork(mpconn_request *r, void *data)
{
    (void)r;
    kinds *k = data;
    k->in_child = 1;
    close(k->pipe[0]);
    /* A ^C reaches the whole process group: the parent ends its children
     * itself (SIGTERM), none dies of the key on its own. */
    signal(SIGINT, SIG_IGN);
}

/* FORK: the parent's end of the children's pipe. */
static void on_child_news(mpconn_io *io, int events, void *data)
{
    (void)io;
    (void)events;
    kinds *k = data;
    char news[64];
    ssize_t n;
    while ((n = read(k->pipe[0], news, sizeof news)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (news[i] == CHILD_NO_OUTPUT) {
                atomic_store(&k->status, CLI_FAIL);
                stop(k);
            } else if (news[i] == CHILD_SERVED) {
                long done = atomic_fetch_add(&k->served, 1) + 1;
                if (k->cfg->count > 0 && done == k->cfg->count)
                    stop(k);
            }
        }
    }
}

static void on_stop_signal(mpconn_signal *sig, int signum, void *data)
{
    (void)sig;
    (void)signum;
    stop(data);
}

static void on_flush(mpconn_timer *t, void *data)
{
    (void)t;
    kinds *k = data;
    serve_lines_flush(&k->lines, 0);
}

/* The loop's watchers of the serving thread: signals, the line limiter's
 * window, FORK's pipe. They are closed with the loop. */
static int watch(kinds *k)
{
    mpconn_loop *loop = mpconn_server_loop(k->srv);
    static const int signums[2] = {SIGINT, SIGTERM};
    mpconn_signal *sig;
    mpconn_timer *flush;
    int r;
    for (int i = 0; i < 2; i++)
        if ((r = mpconn_signal_new(&sig, loop, signums[i], on_stop_signal, k)) < 0) {
            cli_error("cannot watch signal %d: %s", signums[i], mpconn_strerror(r));
            return r;
        }
    if ((r = mpconn_timer_new(&flush, loop, on_flush, k)) < 0 ||
        (r = mpconn_timer_start(flush, SERVE_PEER_WINDOW, SERVE_PEER_WINDOW)) < 0) {
        cli_error("cannot create a timer: %s", mpconn_strerror(r));
        return r;
    }
    if (k->pipe[0] >= 0) {
        mpconn_io *io;
        if ((r = mpconn_io_new(&io, loop, k->pipe[0], on_child_news, k)) < 0 ||
            (r = mpconn_io_set(io, MPCONN_READABLE)) < 0) {
            cli_error("cannot watch the children: %s", mpconn_strerror(r));
            return r;
        }
    }
    return 0;
}

int serve_kinds_run(const serve_cfg *cfg)
{
    kinds k;
    memset(&k, 0, sizeof k);
    k.cfg = cfg;
    k.pipe[0] = k.pipe[1] = -1;
    atomic_init(&k.served, 0);
    atomic_init(&k.status, CLI_OK);
    atomic_init(&k.stopping, 0);
    serve_lines_init(&k.lines);
    int status = CLI_FAIL;
    if (cfg->kind == SERVE_FORK) {
        if (pipe2(k.pipe, O_CLOEXEC) < 0 || fcntl(k.pipe[0], F_SETFL, O_NONBLOCK) < 0) {
            cli_error("cannot make a pipe: %s", strerror(errno));
            goto out;
        }
    }
    int dgram = cfg->address && dgram_address(cfg->address);
    mpconn_server_hooks hooks = {.size = sizeof hooks,
                                 .handle = on_handle,
                                 .finish = on_finish,
                                 .handle_error = on_error,
                                 .after_fork = on_after_fork};
    if (dgram) {
        hooks.handle = on_datagram;
        hooks.finish = NULL; /* on_datagram counts */
    }
    char errmsg[256];
    static const int kinds_of[] = {MPCONN_SERVER_LOOP, MPCONN_SERVER_THREADS, MPCONN_SERVER_FORK};
    int form = cfg->termlen ? MPCONN_HANDLER_RAW : MPCONN_HANDLER_FRAMED;
    int r = mpconn_server_new(&k.srv, cfg->address, kinds_of[cfg->kind], form, &hooks, &k,
                              cfg->opts, errmsg, sizeof errmsg);
    if (r == MPCONN_ERR_ADDR) {
        status = cli_usage_error("serve", "%s", errmsg);
        goto out;
    }
    if (r < 0) {
        cli_error("%s", errmsg[0] ? errmsg : mpconn_strerror(r));
        goto out;
    }
    if (dgram)
        mpconn_server_set_max_datagram(k.srv, dgram_cap(cfg->max_message));
    if (cfg->max_clients)
        mpconn_server_set_max_connections(k.srv, cfg->max_clients);
    if (cfg->timeout >= 0)
        mpconn_server_set_idle_timeout(k.srv, cfg->timeout);
    if (watch(&k) < 0)
        goto out;
    fprintf(stderr, "listening on %s\n", mpconn_server_address(k.srv));
    fflush(stderr);
    r = mpconn_server_serve_forever(k.srv);
    if (r < 0 && atomic_load(&k.status) == CLI_OK) {
        cli_error("server: %s", mpconn_strerror(r));
        atomic_store(&k.status, CLI_FAIL);
    }
    serve_lines_flush(&k.lines, 1);
    status = atomic_load(&k.status);
out:
    mpconn_server_free(k.srv); /* also the watchers on its loop, and the socket file */
    if (k.pipe[0] >= 0)
        close(k.pipe[0]);
    if (k.pipe[1] >= 0)
        close(k.pipe[1]);
    serve_lines_destroy(&k.lines);
    return status;
}
