/* What the async objects share: the event base an adapter drives, and the
 * connection's internal constructor for the listener and the client. */
#ifndef MPCI_ASYNC_INTERNAL_H
#define MPCI_ASYNC_INTERNAL_H

#include <mpconn/async.h>

#include "base/clock.h"
#include "base/err.h"
#include "conn/conn_internal.h"
#include "conn/handshake_io.h"
#include "conn/listener_internal.h"
#include "conn/opts.h"
#include "net/address.h"
#include "net/socket.h"
#include "net/transport.h"
#include "proto/frame.h"
#include "proto/pickle.h"
#include "proto/split.h"

/* What an object does with its events: one table per kind of object, so
 * each object carries one pointer for the three. */
typedef struct mpci_ev_ops {
    void (*on_io)(mpconn_ev *ev, int events);
    void (*on_timeout)(mpconn_ev *ev);
    void (*destroy)(mpconn_ev *ev);
} mpci_ev_ops;

struct mpconn_ev {
    int fd;
    int want;        /* interest last asked of the adapter */
    int pins;        /* entry points on the stack */
    uint8_t doomed;  /* free once the last pin is gone */
    uint8_t pending; /* last said to the adapter's set_pending */
    const mpconn_adapter *ad;
    void *st; /* the adapter's state; NULL until attached, and after cleanup */
    const mpci_ev_ops *ops;
};

int mpci_ev_attach(mpconn_ev *ev, const mpconn_adapter *ad, void *loop);
void mpci_ev_change_io(mpconn_ev *ev, int events);
void mpci_ev_change_pending(mpconn_ev *ev, int pending);
void mpci_ev_set_timer(mpconn_ev *ev, double seconds);

/* Asked after every event: inline, and the adapter is called only for a
 * change (its hooks are idempotent, so nothing else is lost). */
static inline void mpci_ev_set_io(mpconn_ev *ev, int events)
{
    if (ev->st && events != ev->want)
        mpci_ev_change_io(ev, events);
}

static inline void mpci_ev_set_pending(mpconn_ev *ev, int pending)
{
    if (ev->st && (pending != 0) != ev->pending)
        mpci_ev_change_pending(ev, pending != 0);
}
/* Frees the object now, or when the last entry point on the stack returns;
 * the adapter's cleanup runs first. */
void mpci_ev_doom(mpconn_ev *ev);
/* An entry point on the stack returns (it took ev->pins++ on entry): the
 * object is freed if it was doomed meanwhile and this was the last. */
static inline void mpci_ev_unpin(mpconn_ev *ev)
{
    if (--ev->pins == 0 && ev->doomed)
        ev->ops->destroy(ev);
}
/* Hands from's attachment (interest and pending mark with it) to to, an
 * object not attached, on the same fd: through the adapter's rebind, else
 * by a cleanup and a new attach to loop. from is no longer attached after,
 * either way; 0 or -ENOMEM (to then is not attached). */
int mpci_ev_move(mpconn_ev *from, mpconn_ev *to, void *loop);

/* The listener's hand in a connection it accepted: told when the handshake
 * ends either way. */
typedef void (*mpci_async_hs_done)(mpconn_async *a, int code, const char *errmsg, void *owner);

/* mpci_async_accepted's flags: the peer speaks TLS first. */
#define MPCI_ASYNC_TLS 1

/* A server-side connection whose handshake borrows opts (which must outlive
 * it); done is called once, with 0 when the connection is open. kind
 * (MPCI_FD_UNIX or _INET) is the socket's family; flags is 0 or
 * MPCI_ASYNC_TLS (then opts has a server TLS config). The handshake's
 * deadline is the caller's to keep: the connection arms no timer for it. */
int mpci_async_accepted(mpconn_async **out, int fd, int kind, int flags,
                        const struct mpconn_opts *opts, mpci_async_hs_done done, void *owner);
/* A server-side connection whose plain handshake ran elsewhere (the
 * listener's record for it, watched through from), open at once: it takes
 * from's fd and attachment (mpci_ev_move, with loop for an adapter that
 * cannot rebind) and the bytes read behind the handshake (hs, which stays
 * the caller's and is cleared), then done is called with 0 (or with an
 * error, when those bytes already break the framing), inside. 0, or
 * -ENOMEM with the fd still the caller's (from may be detached). */
int mpci_async_adopt(mpconn_ev *from, void *loop, int kind, const struct mpconn_opts *opts,
                     mpci_hs *hs, mpci_async_hs_done done, void *owner);
/* Drops a connection still in its handshake, without calling done. */
void mpci_async_drop(mpconn_async *a, int reason, const char *why);
/* Monotonic seconds when the handshake began (for dropping the oldest). */
double mpci_async_started(const mpconn_async *a);

/* Before attach: the connection speaks TLS with cfg (a client verifies
 * the config's server name, else host), its handshake first; 0, -ENOMEM,
 * MPCONN_ERR_TLSCONFIG, or -EINVAL for a client without a name to verify. */
int mpci_async_start_tls(mpconn_async *a, mpconn_tls_config *cfg, const char *host);

/* For tests only (tests/hooks/mpci_test.h declares it for them). */
int mpci_test_async_set_transport(mpconn_async *a, mpci_transport *t);

#endif
