/* mpconn's async connections and listeners on a libevent event_base: the
 * adapter, header-only, so libmpconn itself does not depend on libevent.
 *
 *   struct event_base *base = event_base_new();
 *   mpconn_async_connect(&a, "127.0.0.1:6000", opts, &cbs, data,
 *                        mpconn_event_adapter(), base, err, sizeof err);
 *
 * One persistent I/O event, one timer and one zero-delay event for bytes
 * waiting in user space. An object may free itself inside mpconn_ev_handle:
 * the callbacks learn of it through a flag on their own stack.
 * Reference: mpconn_adapters(3). */
#ifndef MPCONN_EVENT_H
#define MPCONN_EVENT_H

#include <mpconn/async.h>

#include <event2/event.h>
#include <stdlib.h>

typedef struct mpconn_event_state {
    mpconn_ev *ev;
    struct event_base *base;
    struct event *io, *timer, *pend;
    int events;
    int pending;
    int *gone; /* set while a callback runs: cleanup marks it */
} mpconn_event_state;

static void mpconn_event_release(mpconn_event_state *st)
{
    event_free(st->io);
    event_free(st->timer);
    event_free(st->pend);
    free(st);
}

/* Runs one entry point; returns 0 when st was cleaned up meanwhile. */
static int mpconn_event_enter(mpconn_event_state *st, int events, int timeout)
{
    int gone = 0;
    st->gone = &gone;
    if (timeout)
        mpconn_ev_timeout(st->ev);
    else
        mpconn_ev_handle(st->ev, events);
    if (gone)
        return 0;
    st->gone = NULL;
    return 1;
}

static void mpconn_event_rearm_pending(mpconn_event_state *st)
{
    if (st->pending && (st->events & MPCONN_READABLE)) {
        struct timeval zero = {0, 0};
        event_add(st->pend, &zero);
    }
}

static void mpconn_event_on_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    mpconn_event_state *st = (mpconn_event_state *)arg;
    int ev = ((what & EV_READ) ? MPCONN_READABLE : 0) | ((what & EV_WRITE) ? MPCONN_WRITABLE : 0);
    if (st->ev && ev)
        mpconn_event_enter(st, ev, 0);
}

static void mpconn_event_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    mpconn_event_state *st = (mpconn_event_state *)arg;
    if (st->ev)
        mpconn_event_enter(st, 0, 1);
}

static void mpconn_event_on_pend(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    mpconn_event_state *st = (mpconn_event_state *)arg;
    if (st->ev && st->pending && (st->events & MPCONN_READABLE) &&
        mpconn_event_enter(st, MPCONN_READABLE, 0))
        mpconn_event_rearm_pending(st); /* still buffered: again next round */
}

static void *mpconn_event_attach(void *loop, mpconn_ev *ev)
{
    mpconn_event_state *st = (mpconn_event_state *)calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->base = (struct event_base *)loop;
    st->ev = ev;
    st->io = event_new(st->base, mpconn_ev_fd(ev), EV_PERSIST, mpconn_event_on_io, st);
    st->timer = evtimer_new(st->base, mpconn_event_on_timer, st);
    st->pend = evtimer_new(st->base, mpconn_event_on_pend, st);
    if (!st->io || !st->timer || !st->pend) {
        mpconn_event_release(st);
        return NULL;
    }
    return st;
}

static void mpconn_event_set_io(void *state, int events)
{
    mpconn_event_state *st = (mpconn_event_state *)state;
    st->events = events;
    short what = (short)(((events & MPCONN_READABLE) ? EV_READ : 0) |
                         ((events & MPCONN_WRITABLE) ? EV_WRITE : 0));
    event_del(st->io);
    if (what) {
        event_assign(st->io, st->base, mpconn_ev_fd(st->ev), (short)(what | EV_PERSIST),
                     mpconn_event_on_io, st);
        event_add(st->io, NULL);
    }
    mpconn_event_rearm_pending(st);
}

static void mpconn_event_set_timer(void *state, double seconds)
{
    mpconn_event_state *st = (mpconn_event_state *)state;
    if (seconds < 0) {
        evtimer_del(st->timer);
        return;
    }
    struct timeval tv;
    tv.tv_sec = (long)seconds;
    tv.tv_usec = (long)((seconds - (double)tv.tv_sec) * 1e6);
    evtimer_add(st->timer, &tv);
}

static void mpconn_event_set_pending(void *state, int pending)
{
    mpconn_event_state *st = (mpconn_event_state *)state;
    st->pending = pending;
    if (pending)
        mpconn_event_rearm_pending(st);
    else
        evtimer_del(st->pend);
}

static void mpconn_event_cleanup(void *state)
{
    mpconn_event_state *st = (mpconn_event_state *)state;
    if (st->gone)
        *st->gone = 1;
    /* libevent allows freeing an event from inside its own callback. */
    mpconn_event_release(st);
}

/* The events carry st, which names the object: one pointer to change. */
static void mpconn_event_rebind(void *state, mpconn_ev *ev)
{
    ((mpconn_event_state *)state)->ev = ev;
}

/* The adapter; its loop argument is a struct event_base *. */
static inline const mpconn_adapter *mpconn_event_adapter(void)
{
    static const mpconn_adapter ad = {
        sizeof(mpconn_adapter),   mpconn_event_attach,  mpconn_event_set_io, mpconn_event_set_timer,
        mpconn_event_set_pending, mpconn_event_cleanup, mpconn_event_rebind};
    return &ad;
}

#endif
