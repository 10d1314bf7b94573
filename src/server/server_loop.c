/* The LOOP kind: every connection is an mpconn_async on the server's loop,
 * its handshake included, so a slow peer never holds up another; and the
 * datagram LOOP kind, which handles each datagram as it is read. */
#define _GNU_SOURCE
#include "server_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void link_conn(mpconn_server *s, mpconn_request *r)
{
    r->prev = NULL;
    r->next = s->conns;
    if (s->conns)
        s->conns->prev = r;
    s->conns = r;
    s->active++;
}

static void unlink_conn(mpconn_server *s, mpconn_request *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        s->conns = r->next;
    if (r->next)
        r->next->prev = r->prev;
    s->active--;
}

/* A request is freed when its connection closed and no call into the
 * user's hooks for it is still on the stack. */
static int settle(mpconn_request *r)
{
    if (r->dead && r->depth == 0) {
        free(r);
        return 1;
    }
    return r->dead;
}

/* Once per connection: after the handshake, or at once without one. */
static void opened(mpconn_server *s, mpconn_request *r)
{
    if (r->opened)
        return;
    r->opened = 1;
    if (!s->hooks.setup)
        return;
    r->depth++;
    int rc = s->hooks.setup(r, s->data);
    r->depth--;
    if (settle(r))
        return;
    if (rc != 0) {
        srv_error(s, r, srv_hook_code(rc), "setup for %s failed: %s", srv_peer_or(r, "peer"),
                  mpconn_strerror(srv_hook_code(rc)));
        mpconn_async_close(r->async);
    }
}

static void on_open(mpconn_async *a, void *data)
{
    (void)a;
    mpconn_request *r = data;
    opened(r->server, r);
}

static void on_message(mpconn_async *a, const void *msg, size_t len, void *data)
{
    mpconn_request *r = data;
    mpconn_server *s = r->server;
    if (!s->hooks.on_message)
        return;
    r->depth++;
    int rc = s->hooks.on_message(r, msg, len, s->data);
    r->depth--;
    if (settle(r))
        return;
    if (rc != 0) {
        srv_error(s, r, srv_hook_code(rc), "handler for %s failed: %s", srv_peer_or(r, "peer"),
                  mpconn_strerror(srv_hook_code(rc)));
        mpconn_async_close(a);
    }
}

static void on_close(mpconn_async *a, int reason, const char *errmsg, void *data)
{
    (void)a;
    mpconn_request *r = data;
    mpconn_server *s = r->server;
    if (!r->opened && reason != 0 && !atomic_load(&s->stopping))
        srv_error(s, r, reason, "%s: %s", srv_peer_or(r, "peer"),
                  errmsg && *errmsg ? errmsg : mpconn_strerror(reason));
    if (r->opened && s->hooks.finish) {
        r->depth++;
        s->hooks.finish(r, s->data);
        r->depth--;
    }
    unlink_conn(s, r);
    r->async = NULL;
    r->dead = 1;
    settle(r);
    if (s->paused && s->active < s->cap && !atomic_load(&s->stopping)) {
        s->paused = 0;
        srv_pause(s, 0);
    }
}

static int loop_start(mpconn_server *s)
{
    (void)s;
    return 0;
}

static const mpconn_async_cbs cbs = {
    .size = sizeof cbs, .on_open = on_open, .on_message = on_message, .on_close = on_close};

/* The server's settings on a new connection, which joins the list. */
static void enlist(mpconn_server *s, mpconn_request *r)
{
    if (s->form == MPCONN_HANDLER_RAW)
        mpconn_async_set_framing(r->async, MPCONN_FRAME_RAW, NULL, 0);
    if (s->idle >= 0)
        mpconn_async_set_timeouts(r->async, s->idle, -1);
    link_conn(s, r);
}

void srv_loop_adopt(mpconn_server *s, mpconn_request *r)
{
    mpconn_async_set_callbacks(r->async, &cbs, r);
    enlist(s, r);
    r->depth++;
    opened(s, r);
    r->depth--;
    if (settle(r))
        return;
    if (s->active >= s->cap && !atomic_load(&s->stopping)) {
        s->paused = 1;
        srv_pause(s, 1);
    }
}

static void admit(mpconn_server *s, mpconn_request *r)
{
    int role = s->has_key ? MPCONN_ASYNC_SERVER : MPCONN_ASYNC_PLAIN;
    int rc = mpconn_async_from_fd(&r->async, r->fd, role, s->opts, &cbs, r);
    if (rc < 0) {
        srv_error(s, r, rc, "connection from %s: %s", srv_peer_or(r, "peer"), mpconn_strerror(rc));
        close(r->fd);
        free(r);
        return;
    }
    enlist(s, r);
    r->depth++;
    rc = mpconn_async_attach(r->async, s->ad, s->adloop);
    r->depth--;
    if (rc < 0) {
        if (!r->dead) {
            srv_error(s, r, rc, "connection from %s: %s", srv_peer_or(r, "peer"),
                      mpconn_strerror(rc));
            mpconn_async_close(r->async); /* not attached: freed without on_close */
            unlink_conn(s, r);
            r->dead = 1;
        }
        settle(r);
        return;
    }
    if (settle(r))
        return;
    if (!s->has_key)
        opened(s, r);
}

static void loop_readable(mpconn_server *s)
{
    for (int i = 0; i < 64; i++) {
        if (s->active >= s->cap) {
            s->paused = 1;
            srv_pause(s, 1);
            return;
        }
        mpconn_request *r = calloc(1, sizeof *r);
        if (!r) {
            srv_error(s, NULL, -ENOMEM, "server: out of memory for a connection");
            return;
        }
        r->server = s;
        if (srv_accept(s, r) <= 0) {
            free(r);
            return;
        }
        if (!srv_verify(s, r)) {
            close(r->fd);
            free(r);
            continue;
        }
        admit(s, r);
    }
}

static void loop_woken(mpconn_server *s)
{
    if (s->active < s->cap) {
        s->paused = 0;
        srv_pause(s, 0);
    }
}

void srv_loop_close_all(mpconn_server *s)
{
    while (s->conns)
        mpconn_async_close(s->conns->async);
}

static void loop_stop(mpconn_server *s)
{
    if (s->drain && s->foreign)
        return; /* the caller's loop runs them to their end */
    if (s->drain) {
        while (s->conns && mpconn_loop_run(s->loop, MPCONN_RUN_ONCE) > 0) {
        }
    }
    srv_loop_close_all(s);
}

const srv_kind srv_loop_kind = {loop_start, loop_readable, loop_woken, loop_stop};

/* ------------------------------------------------------------ datagrams */

static int dgram_loop_start(mpconn_server *s)
{
    s->dbuf = malloc(s->max_dgram);
    return s->dbuf ? 0 : -ENOMEM;
}

static void dgram_loop_readable(mpconn_server *s)
{
    for (int i = 0; i < 64; i++) {
        mpconn_request r;
        memset(&r, 0, sizeof r);
        r.server = s;
        int n = srv_dgram_recv(s, &r, s->dbuf, s->max_dgram);
        if (n <= 0)
            return;
        if (n == 1 && srv_verify(s, &r))
            srv_serve_dgram(s, &r);
    }
}

static void dgram_loop_stop(mpconn_server *s)
{
    (void)s;
}

const srv_kind srv_dgram_loop_kind = {dgram_loop_start, dgram_loop_readable, loop_woken,
                                      dgram_loop_stop};
