/* The FORK kind: a child process per connection, at most cap at once. Each
 * child has a pidfd watched on the loop, so it is reaped the moment it
 * exits (no zombie waits for the next request) and no SIGCHLD handler or
 * signal mask is needed. */
#define _GNU_SOURCE
#include "server_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static int fork_start(mpconn_server *s)
{
    s->children = calloc(s->cap, sizeof *s->children);
    return s->children ? 0 : -ENOMEM;
}

/* Reports how a child ended, unless it ended well (0) or reported its own
 * failure already (1), or was ended by the shutdown. */
static void report(mpconn_server *s, srv_child *c, int st)
{
    if (WIFSIGNALED(st)) {
        int sig = WTERMSIG(st);
        if (!(atomic_load(&s->stopping) && sig == SIGTERM))
            srv_error(s, NULL, MPCONN_ERR_BROKEN, "child %ld serving %s: killed by signal %d (%s)",
                      (long)c->pid, c->peer[0] ? c->peer : "a peer", sig, strsignal(sig));
    } else if (WIFEXITED(st) && WEXITSTATUS(st) > 1) {
        srv_error(s, NULL, MPCONN_ERR_BROKEN, "child %ld serving %s: exited with status %d",
                  (long)c->pid, c->peer[0] ? c->peer : "a peer", WEXITSTATUS(st));
    }
}

static void forget(mpconn_server *s, srv_child *c)
{
    mpconn_watch_close(c->io);
    close(c->pidfd);
    c->io = NULL;
    c->pidfd = -1;
    c->pid = 0;
    s->active--;
}

static void on_child(mpconn_watch *w, int events, void *data)
{
    (void)w;
    (void)events;
    srv_child *c = data;
    mpconn_server *s = c->server;
    int st;
    pid_t p = waitpid(c->pid, &st, WNOHANG);
    if (p == 0)
        return;
    if (p == c->pid)
        report(s, c, st);
    forget(s, c);
    if (s->paused && !atomic_load(&s->stopping)) {
        s->paused = 0;
        srv_pause(s, 0);
    }
}

static _Noreturn void child_main(mpconn_server *s, mpconn_request *r)
{
    /* The parent's signal watchers blocked signals in this thread; the
     * child takes SIGTERM (the shutdown) as a plain process does. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGTERM, SIG_DFL);
    close(s->lfd);
    /* The siblings' pidfds: a handler has no business signalling them,
     * and each one the child holds is one more file to put at its exit,
     * in the shutdown's time. Only the descriptors: the watchers are the
     * parent's, on an epoll set this child shares. */
    for (size_t k = 0; k < s->cap; k++)
        if (s->children[k].pid && s->children[k].pidfd >= 0)
            close(s->children[k].pidfd);
    srv_tls_child(s);
    if (s->hooks.after_fork)
        s->hooks.after_fork(r, s->data);
    int failed = srv_serve_stream(s, r);
    _exit(failed ? 1 : 0);
}

static void fork_readable(mpconn_server *s)
{
    for (int i = 0; i < 64; i++) {
        if (s->active >= s->cap) {
            s->paused = 1;
            srv_pause(s, 1);
            return;
        }
        mpconn_request r;
        memset(&r, 0, sizeof r);
        r.server = s;
        if (srv_accept(s, &r) <= 0)
            return;
        if (!srv_verify(s, &r)) {
            srv_close_fd(s, &r);
            continue;
        }
        srv_child *c = NULL;
        for (size_t k = 0; k < s->cap && !c; k++)
            if (!s->children[k].pid)
                c = &s->children[k];
        pid_t pid = fork();
        if (pid == 0)
            child_main(s, &r);
        int e = errno;
        /* The child owns the TLS session now: the parent's copy goes
         * without a close_notify, and without touching the socket's
         * stream. */
        if (r.conn)
            close(mpconn_conn_detach(r.conn));
        else
            close(r.fd);
        if (pid < 0) {
            srv_error(s, &r, -e, "fork for %s: %s", srv_peer_or(&r, "a peer"), strerror(e));
            return;
        }
        c->pid = pid;
        c->server = s;
        snprintf(c->peer, sizeof c->peer, "%s", srv_peer(&r));
        c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        int rc = c->pidfd < 0 ? -errno
                              : mpconn_watch_new(&c->io, c->pidfd, s->ad, s->adloop, on_child, c);
        if (rc == 0)
            mpconn_watch_set(c->io, MPCONN_READABLE);
        s->active++;
        if (rc < 0) {
            /* Unwatched, it could not be reaped in time: end it now. */
            srv_error(s, &r, rc, "watching child %ld: %s", (long)pid, mpconn_strerror(rc));
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            mpconn_watch_close(c->io);
            if (c->pidfd >= 0)
                close(c->pidfd);
            c->io = NULL;
            c->pid = 0;
            s->active--;
        }
    }
}

static void fork_woken(mpconn_server *s)
{
    if (s->active < s->cap) {
        s->paused = 0;
        srv_pause(s, 0);
    }
}

static void fork_stop(mpconn_server *s)
{
    if (!s->children)
        return;
    if (!s->drain)
        for (size_t k = 0; k < s->cap; k++)
            if (s->children[k].pid)
                kill(s->children[k].pid, SIGTERM);
    for (size_t k = 0; k < s->cap; k++) {
        srv_child *c = &s->children[k];
        if (!c->pid)
            continue;
        int st;
        pid_t p;
        while ((p = waitpid(c->pid, &st, 0)) < 0 && errno == EINTR) {
        }
        if (p == c->pid)
            report(s, c, st);
        forget(s, c);
    }
}

const srv_kind srv_fork_kind = {fork_start, fork_readable, fork_woken, fork_stop};
