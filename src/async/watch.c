/* mpconn_watch: one descriptor and a one-shot timer on whatever loop an
 * adapter drives. The async objects are made of the same event base; this
 * is it bare, for descriptors of a caller's own (a server's listening
 * socket and wake-up eventfd) that must live on the loop its connections
 * are on. */
#include "async_internal.h"

#include <errno.h>
#include <stdlib.h>

struct mpconn_watch {
    mpconn_ev ev; /* first: the entry points hand back &ev */
    mpconn_watch_cb cb;
    void *data;
};

static void watch_io(mpconn_ev *ev, int events)
{
    mpconn_watch *w = (mpconn_watch *)ev;
    w->cb(w, events, w->data);
}

static void watch_timeout(mpconn_ev *ev)
{
    mpconn_watch *w = (mpconn_watch *)ev;
    w->cb(w, MPCONN_WATCH_TIMER, w->data);
}

static void watch_destroy(mpconn_ev *ev)
{
    free(ev);
}

int mpconn_watch_new(mpconn_watch **out, int fd, const mpconn_adapter *ad, void *loop,
                     mpconn_watch_cb cb, void *data)
{
    *out = NULL;
    if (fd < 0 || !ad || !cb)
        return -EINVAL;
    mpconn_watch *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    static const mpci_ev_ops ops = {watch_io, watch_timeout, watch_destroy};
    w->ev.fd = fd;
    w->ev.ops = &ops;
    w->cb = cb;
    w->data = data;
    int r = mpci_ev_attach(&w->ev, ad, loop);
    if (r < 0) {
        free(w);
        return r;
    }
    *out = w;
    return 0;
}

void mpconn_watch_set(mpconn_watch *w, int events)
{
    mpci_ev_set_io(&w->ev, events & (MPCONN_READABLE | MPCONN_WRITABLE));
}

void mpconn_watch_set_timer(mpconn_watch *w, double seconds)
{
    mpci_ev_set_timer(&w->ev, seconds);
}

int mpconn_watch_fd(const mpconn_watch *w)
{
    return w->ev.fd;
}

void mpconn_watch_close(mpconn_watch *w)
{
    if (w)
        mpci_ev_doom(&w->ev);
}
