/* The event base of every async object: what an adapter drives, and the
 * rule that an object closed inside its own callback is freed only when the
 * stack unwinds. Also the adapter for mpconn's own loop. */
#include "async_internal.h"

#include <mpconn/loop.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

int mpconn_ev_fd(const mpconn_ev *ev)
{
    return ev->fd;
}

void mpconn_ev_handle(mpconn_ev *ev, int events)
{
    if (ev->doomed)
        return;
    ev->pins++;
    ev->ops->on_io(ev, events);
    mpci_ev_unpin(ev);
}

void mpconn_ev_timeout(mpconn_ev *ev)
{
    if (ev->doomed)
        return;
    ev->pins++;
    ev->ops->on_timeout(ev);
    mpci_ev_unpin(ev);
}

/* Whether ad's table, as its size says, reaches hook m. */
#define HAS_HOOK(ad, m)                                                                            \
    ((ad)->size == 0 || (ad)->size >= offsetof(mpconn_adapter, m) + sizeof(ad)->m)

int mpci_ev_attach(mpconn_ev *ev, const mpconn_adapter *ad, void *loop)
{
    if (!HAS_HOOK(ad, cleanup))
        return -EINVAL;
    void *st = ad->attach(loop, ev);
    if (!st)
        return -ENOMEM;
    ev->ad = ad;
    ev->st = st;
    ev->want = 0;
    ev->pending = 0;
    return 0;
}

void mpci_ev_change_io(mpconn_ev *ev, int events)
{
    ev->want = events;
    ev->ad->set_io(ev->st, events);
}

void mpci_ev_set_timer(mpconn_ev *ev, double seconds)
{
    if (ev->st)
        ev->ad->set_timer(ev->st, seconds);
}

void mpci_ev_change_pending(mpconn_ev *ev, int pending)
{
    ev->pending = (uint8_t)pending;
    if (HAS_HOOK(ev->ad, set_pending) && ev->ad->set_pending)
        ev->ad->set_pending(ev->st, pending);
}

int mpci_ev_move(mpconn_ev *from, mpconn_ev *to, void *loop)
{
    const mpconn_adapter *ad = from->ad;
    void *st = from->st;
    int want = from->want, pending = from->pending;
    from->st = NULL;
    if (HAS_HOOK(ad, rebind) && ad->rebind) {
        to->ad = ad;
        to->st = st;
        to->want = want;
        to->pending = (uint8_t)pending;
        ad->rebind(st, to);
        return 0;
    }
    ad->cleanup(st);
    int r = mpci_ev_attach(to, ad, loop);
    if (r < 0)
        return r;
    mpci_ev_set_io(to, want);
    mpci_ev_set_pending(to, pending);
    return 0;
}

void mpci_ev_doom(mpconn_ev *ev)
{
    if (ev->doomed)
        return;
    ev->doomed = 1;
    /* The adapter lets go at once, before the owner closes the fd: the
     * loop must not watch a number the kernel may hand out again. */
    if (ev->st) {
        ev->ad->cleanup(ev->st);
        ev->st = NULL;
    }
    if (ev->pins == 0)
        ev->ops->destroy(ev);
}

/* ------------------------------------------------ adapter: mpconn_loop */

/* Three pointers: with malloc's header, its smallest chunk but one. */
typedef struct loop_att {
    mpconn_ev *ev;
    mpconn_io *io;
    mpconn_timer *timer; /* made at the first set_timer */
} loop_att;

/* The watcher carries the object itself: an event reaches it without a
 * look at the attachment (one cache line fewer per event). Timers are
 * rare, and go through the attachment, so that a rebind has one pointer
 * to change. */
static void att_io(mpconn_io *io, int events, void *data)
{
    (void)io;
    mpconn_ev_handle(data, events);
}

static void att_timer(mpconn_timer *t, void *data)
{
    (void)t;
    loop_att *a = data;
    mpconn_ev_timeout(a->ev);
}

static void *att_attach(void *loop, mpconn_ev *ev)
{
    loop_att *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->ev = ev;
    if (mpconn_io_new(&a->io, loop, ev->fd, att_io, ev) < 0) {
        free(a);
        return NULL;
    }
    return a;
}

static void att_set_io(void *st, int events)
{
    loop_att *a = st;
    mpconn_io_set(a->io, events);
}

static void att_set_timer(void *st, double seconds)
{
    loop_att *a = st;
    if (seconds < 0) {
        /* Freed, not kept stopped: an idle connection holds no timer. */
        if (a->timer)
            mpconn_timer_close(a->timer, NULL);
        a->timer = NULL;
        return;
    }
    if (!a->timer && mpconn_timer_new(&a->timer, mpconn_io_loop(a->io), att_timer, a) < 0)
        return; /* out of memory: the deadline is lost, the connection is not */
    mpconn_timer_start(a->timer, seconds, 0);
}

static void att_set_pending(void *st, int pending)
{
    loop_att *a = st;
    mpconn_io_set_pending(a->io, pending);
}

static void att_cleanup(void *st)
{
    loop_att *a = st;
    if (a->timer)
        mpconn_timer_close(a->timer, NULL);
    /* Closed handles get no callback, and those never read the
     * attachment: it goes at once, the handles after this iteration. */
    mpconn_io_close(a->io, NULL);
    free(a);
}

static void att_rebind(void *st, mpconn_ev *ev)
{
    loop_att *a = st;
    a->ev = ev;
    mpconn_io_set_data(a->io, ev);
}

static const mpconn_adapter loop_adapter = {
    sizeof(mpconn_adapter), att_attach,  att_set_io, att_set_timer,
    att_set_pending,        att_cleanup, att_rebind};

const mpconn_adapter *mpconn_loop_adapter(void)
{
    return &loop_adapter;
}
