/* Servers on tls: addresses. LOOP accepts through an async listener, whose
 * TLS and authkey handshakes run on the server's loop; THREADS and FORK
 * accept through a blocking listener driven without blocking, its
 * handshakes watched on the loop, so a silent TLS peer holds up nobody. */
#include "server_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_reject(void *data, int code, const char *message)
{
    mpconn_server *s = data;
    if (!atomic_load(&s->stopping))
        srv_error(s, NULL, code, "%s", message);
    /* Out of descriptors or memory with no handshake to give back, the
     * blocking listener stops accepting for a moment; its socket stays
     * readable (the backlog), so the loop stops watching it as well rather
     * than spin, and looks again when the retry timer fires. */
    if (s->listener && !atomic_load(&s->stopping) &&
        (code == -EMFILE || code == -ENFILE || code == -ENOBUFS || code == -ENOMEM)) {
        srv_retry_later(s);
    }
}

static void on_accept(mpconn_async_listener *l, mpconn_async *a, void *data)
{
    (void)l;
    mpconn_server *s = data;
    mpconn_request *r = atomic_load(&s->stopping) ? NULL : calloc(1, sizeof *r);
    if (!r) {
        if (!atomic_load(&s->stopping))
            srv_error(s, NULL, -ENOMEM, "server: out of memory for a connection");
        mpconn_async_close(a);
        return;
    }
    r->server = s;
    r->async = a;
    r->fd = mpconn_async_fileno(a);
    snprintf(r->peer, sizeof r->peer, "%s", mpconn_async_peer(a, &r->pid, &r->uid, &r->gid));
    r->peer_done = 1;
    srv_request_seen(s);
    if (!srv_verify(s, r)) {
        mpconn_async_close(a); /* no callbacks of ours yet */
        free(r);
        return;
    }
    srv_loop_adopt(s, r);
}

int srv_tls_open(mpconn_server *s, const char *address, char *errmsg, size_t errlen)
{
    mpconn_opts *o = s->opts;
    int r = 0;
    if (s->form == MPCONN_HANDLER_RAW) {
        /* RAW streams have no authkey handshake, even when opts has a key. */
        r = mpconn_opts_dup(&o, s->opts);
        if (r == 0)
            r = mpconn_opts_set_authkey(o, NULL, 0);
        if (r < 0) {
            mpconn_opts_free(o);
            if (errmsg && errlen)
                snprintf(errmsg, errlen, "server: %s", mpconn_strerror(r));
            return r;
        }
    }
    if (s->kind == MPCONN_SERVER_LOOP) {
        /* Bound now (the address is known at once), attached to a loop at
         * the start. */
        r = mpconn_async_listener_open(&s->alistener, address, o, NULL, NULL, on_accept, s, errmsg,
                                       errlen);
        if (r == 0) {
            mpconn_async_listener_on_reject(s->alistener, on_reject, s);
            snprintf(s->address, sizeof s->address, "%s",
                     mpconn_async_listener_address(s->alistener));
        }
    } else {
        r = mpconn_listener_open(&s->listener, address, o, errmsg, errlen);
        if (r == 0) {
            mpconn_listener_on_reject(s->listener, on_reject, s);
            s->lfd = mpconn_listener_fileno(s->listener);
            snprintf(s->address, sizeof s->address, "%s", mpconn_listener_address(s->listener));
        }
    }
    if (o != s->opts)
        mpconn_opts_free(o);
    return r;
}

/* A handshake's descriptor is ready, or the first watcher's timer (the
 * oldest deadline) expired: the listener moves them on. */
static void on_handshake(mpconn_watch *w, int events, void *data)
{
    (void)w;
    (void)events;
    mpconn_server *s = data;
    if (!atomic_load(&s->stopping))
        srv_kind_readable(s);
}

/* The listener's handshakes: n of them into fresh arrays (*fds and *events
 * the caller's to free; NULL when there are none or no memory). */
static size_t handshakes(mpconn_server *s, int **fds, int **events, double *wait)
{
    size_t n = mpconn_listener_handshakes(s->listener, NULL, NULL, 0, wait);
    *fds = n ? malloc(n * sizeof **fds) : NULL;
    *events = n ? malloc(n * sizeof **events) : NULL;
    if (!*fds || !*events) {
        free(*fds);
        free(*events);
        *fds = *events = NULL;
        return 0;
    }
    return mpconn_listener_handshakes(s->listener, *fds, *events, n, wait);
}

void srv_tls_watch(mpconn_server *s, int on)
{
    if (!s->listener)
        return;
    int *fds = NULL, *events = NULL;
    double wait = -1;
    size_t n = on ? handshakes(s, &fds, &events, &wait) : 0;
    if (n > s->hs_cap) {
        mpconn_watch **v = realloc(s->hs_io, n * sizeof *v);
        if (v) {
            for (size_t i = s->hs_cap; i < n; i++)
                v[i] = NULL;
            s->hs_io = v;
            s->hs_cap = n;
        } else {
            n = s->hs_cap; /* the rest move whenever the listener is polled */
        }
    }
    /* Same fd: change what it waits for. Another: a new watcher, so that an
     * event of the old number is never taken for the new one. A watcher
     * stays at its index or goes, so only the first ever has its timer
     * armed. */
    for (size_t i = 0; i < s->hs_n; i++)
        if (s->hs_io[i] && (i >= n || mpconn_watch_fd(s->hs_io[i]) != fds[i])) {
            mpconn_watch_close(s->hs_io[i]);
            s->hs_io[i] = NULL;
        }
    for (size_t i = 0; i < n; i++) {
        if (!s->hs_io[i] &&
            mpconn_watch_new(&s->hs_io[i], fds[i], s->ad, s->adloop, on_handshake, s) < 0)
            s->hs_io[i] = NULL;
        if (s->hs_io[i])
            mpconn_watch_set(s->hs_io[i], events[i]);
    }
    s->hs_n = n;
    free(fds);
    free(events);
    /* Out of memory for the first watcher, the deadline waits for the next
     * event of the listener's. */
    if (n && s->hs_io[0])
        mpconn_watch_set_timer(s->hs_io[0], on && wait >= 0 ? wait : -1);
}

int srv_tls_accept(mpconn_server *s, mpconn_request *r)
{
    mpconn_conn *c;
    int rc = mpconn_listener_accept(s->listener, &c, 0);
    if (rc < 0) {
        if (rc != -ETIMEDOUT && !atomic_load(&s->stopping))
            srv_error(s, NULL, rc, "%s", mpconn_listener_errmsg(s->listener));
        srv_tls_watch(s, 1);
        return 0;
    }
    /* The connection's fd left the handshakes: no watcher of ours on it. */
    srv_tls_watch(s, 1);
    memset(&r->ss, 0, sizeof r->ss);
    r->sl = 0;
    r->conn = c;
    r->fd = mpconn_conn_fileno(c);
    r->async = NULL;
    r->user = NULL;
    r->dgram = NULL;
    r->dgram_len = 0;
    snprintf(r->peer, sizeof r->peer, "%s",
             mpconn_listener_last_accepted(s->listener, &r->pid, &r->uid, &r->gid));
    r->peer_done = 1;
    srv_request_seen(s);
    return 1;
}

void srv_tls_close(mpconn_server *s)
{
    for (size_t i = 0; i < s->hs_n; i++)
        mpconn_watch_close(s->hs_io[i]);
    s->hs_n = 0;
    free(s->hs_io);
    s->hs_io = NULL;
    s->hs_cap = 0;
    mpconn_async_listener_free(s->alistener);
    s->alistener = NULL;
}

void srv_tls_child(mpconn_server *s)
{
    if (!s->listener || !s->tls)
        return;
    int *fds, *events;
    size_t n = handshakes(s, &fds, &events, NULL);
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    free(events);
}
