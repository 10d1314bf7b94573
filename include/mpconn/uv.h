/* mpconn's async connections and listeners on a libuv loop: the adapter,
 * header-only, so libmpconn itself does not depend on libuv.
 *
 *   uv_loop_t *loop = uv_default_loop();
 *   mpconn_async_connect(&a, "127.0.0.1:6000", opts, &cbs, data,
 *                        mpconn_uv_adapter(), loop, err, sizeof err);
 *
 * One uv_poll_t, uv_timer_t and uv_idle_t per object (the idle handle runs
 * only while bytes wait in user space). They are closed with uv_close on
 * cleanup, and their memory is freed in the last close callback, so libuv
 * never sees freed handles: let the loop run once more after the last
 * object closes, before uv_loop_close. Reference: mpconn_adapters(3). */
#ifndef MPCONN_UV_H
#define MPCONN_UV_H

#include <mpconn/async.h>

#include <stdlib.h>
#include <uv.h>

typedef struct mpconn_uv_state {
    mpconn_ev *ev; /* NULL once cleaned up */
    uv_poll_t poll;
    uv_timer_t timer;
    uv_idle_t idle;
    int events;
    int pending;
    int open_handles;
} mpconn_uv_state;

static void mpconn_uv_on_poll(uv_poll_t *h, int status, int uvev)
{
    mpconn_uv_state *st = (mpconn_uv_state *)h->data;
    int ev = 0;
    if (status < 0)
        ev = st->events; /* the read or write that follows sees the error */
    if (uvev & UV_READABLE)
        ev |= MPCONN_READABLE;
    if (uvev & UV_WRITABLE)
        ev |= MPCONN_WRITABLE;
    if (st->ev && ev)
        mpconn_ev_handle(st->ev, ev); /* st stays valid: freed only in a close callback */
}

static void mpconn_uv_on_timer(uv_timer_t *h)
{
    mpconn_uv_state *st = (mpconn_uv_state *)h->data;
    if (st->ev)
        mpconn_ev_timeout(st->ev);
}

static void mpconn_uv_on_idle(uv_idle_t *h)
{
    mpconn_uv_state *st = (mpconn_uv_state *)h->data;
    if (st->ev && st->pending && (st->events & MPCONN_READABLE))
        mpconn_ev_handle(st->ev, MPCONN_READABLE);
}

static void mpconn_uv_on_close(uv_handle_t *h)
{
    mpconn_uv_state *st = (mpconn_uv_state *)h->data;
    if (--st->open_handles == 0)
        free(st);
}

static void *mpconn_uv_attach(void *loop, mpconn_ev *ev)
{
    mpconn_uv_state *st = (mpconn_uv_state *)calloc(1, sizeof *st);
    if (!st)
        return NULL;
    if (uv_poll_init((uv_loop_t *)loop, &st->poll, mpconn_ev_fd(ev)) != 0) {
        free(st);
        return NULL;
    }
    uv_timer_init((uv_loop_t *)loop, &st->timer);
    uv_idle_init((uv_loop_t *)loop, &st->idle);
    st->poll.data = st->timer.data = st->idle.data = st;
    st->open_handles = 3;
    st->ev = ev;
    return st;
}

static void mpconn_uv_set_io(void *state, int events)
{
    mpconn_uv_state *st = (mpconn_uv_state *)state;
    st->events = events;
    int uvev = ((events & MPCONN_READABLE) ? UV_READABLE : 0) |
               ((events & MPCONN_WRITABLE) ? UV_WRITABLE : 0);
    if (uvev)
        uv_poll_start(&st->poll, uvev, mpconn_uv_on_poll);
    else
        uv_poll_stop(&st->poll);
    if (st->pending && (events & MPCONN_READABLE))
        uv_idle_start(&st->idle, mpconn_uv_on_idle);
}

static void mpconn_uv_set_timer(void *state, double seconds)
{
    mpconn_uv_state *st = (mpconn_uv_state *)state;
    if (seconds < 0) {
        uv_timer_stop(&st->timer);
        return;
    }
    double ms = seconds * 1000.0;
    uv_timer_start(&st->timer, mpconn_uv_on_timer, (uint64_t)(ms + 0.999), 0);
}

static void mpconn_uv_set_pending(void *state, int pending)
{
    mpconn_uv_state *st = (mpconn_uv_state *)state;
    st->pending = pending;
    if (pending)
        uv_idle_start(&st->idle, mpconn_uv_on_idle); /* keeps the loop from sleeping */
    else
        uv_idle_stop(&st->idle);
}

static void mpconn_uv_cleanup(void *state)
{
    mpconn_uv_state *st = (mpconn_uv_state *)state;
    st->ev = NULL;
    uv_close((uv_handle_t *)&st->poll, mpconn_uv_on_close);
    uv_close((uv_handle_t *)&st->timer, mpconn_uv_on_close);
    uv_close((uv_handle_t *)&st->idle, mpconn_uv_on_close);
}

/* The handles carry st, which names the object: one pointer to change. */
static void mpconn_uv_rebind(void *state, mpconn_ev *ev)
{
    ((mpconn_uv_state *)state)->ev = ev;
}

/* The adapter; its loop argument is a uv_loop_t *. */
static inline const mpconn_adapter *mpconn_uv_adapter(void)
{
    static const mpconn_adapter ad = {
        sizeof(mpconn_adapter), mpconn_uv_attach,  mpconn_uv_set_io, mpconn_uv_set_timer,
        mpconn_uv_set_pending,  mpconn_uv_cleanup, mpconn_uv_rebind};
    return &ad;
}

#endif
