/* The epoll backend (Linux). Each registration carries its watcher, so a
 * batch names watchers, never bare fd numbers.
 *
 * A small loop does without epoll: up to SMALL_MAX watchers are kept in a
 * poll set and waited on with one poll(), so that a connection that comes
 * and goes within its handshake (an accepting server's common case) costs
 * neither EPOLL_CTL_ADD nor EPOLL_CTL_DEL, which is what a blocking
 * accept-and-poll server saves over a loop. A watcher beyond that moves
 * every one to epoll, and a busy loop sleeps in epoll_wait alone; when no
 * more than half of that are left they go back to the poll set (the gap keeps
 * a loop near the limit from moving them at every change). Both sets are
 * level triggered, so where a watcher sits changes nothing it sees.
 * MPCONN_LOOP_POLL_MAX lowers the limit (0: every watcher on epoll, as the
 * loop tests run it too). */
#ifdef __linux__
#include "loop_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define SMALL_MAX 8 /* watchers a loop polls without epoll, at most */

typedef struct {
    int epfd;
    size_t nepoll; /* watchers registered with epoll */
    int npolled;   /* in the poll set: all of a small loop's, or what epoll refused */
    int small_max; /* SMALL_MAX, or less by MPCONN_LOOP_POLL_MAX */
    int small_low; /* a loop on epoll with this few goes back to polling them */
    mpconn_io *polled[SMALL_MAX];
    struct pollfd pfd[SMALL_MAX + 1];
    struct epoll_event ev[256];
} epoll_state;

static int epoll_init(mpconn_loop *loop)
{
    epoll_state *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    const char *env = getenv("MPCONN_LOOP_POLL_MAX");
    char *end = NULL;
    long v = env ? strtol(env, &end, 10) : SMALL_MAX;
    st->small_max = env && *env && !*end && v >= 0 && v <= SMALL_MAX ? (int)v : SMALL_MAX;
    st->small_low = st->small_max / 2;
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (st->epfd < 0) {
        int e = errno;
        free(st);
        return -e;
    }
    loop->be_state = st;
    return 0;
}

static void epoll_fini(mpconn_loop *loop)
{
    epoll_state *st = loop->be_state;
    close(st->epfd);
    free(st);
    loop->be_state = NULL;
}

static int ctl(epoll_state *st, int op, mpconn_io *io, int events)
{
    struct epoll_event ev = {0};
    ev.data.ptr = io;
    if (events & MPCONN_READABLE)
        ev.events |= EPOLLIN;
    if (events & MPCONN_WRITABLE)
        ev.events |= EPOLLOUT;
    if (epoll_ctl(st->epfd, op, io->fd, &ev) < 0)
        return -errno; /* -EPERM for a regular file: epoll cannot watch one */
    st->nepoll += op == EPOLL_CTL_ADD;
    return 0;
}

static void poll_add(epoll_state *st, mpconn_io *io)
{
    st->polled[st->npolled] = io;
    io->be_slot = (uint8_t)++st->npolled;
}

static void poll_remove(epoll_state *st, mpconn_io *io)
{
    int i = io->be_slot - 1, last = --st->npolled;
    if (i != last) {
        st->polled[i] = st->polled[last];
        st->polled[i]->be_slot = (uint8_t)(i + 1);
    }
    io->be_slot = 0;
}

/* The poll set overflows: its watchers go to epoll, but for what epoll
 * refuses, which stays polled as the poll backend would poll it. */
static void to_epoll(epoll_state *st)
{
    for (int i = 0; i < st->npolled;) {
        mpconn_io *io = st->polled[i];
        if (ctl(st, EPOLL_CTL_ADD, io, io->events) == 0)
            poll_remove(st, io); /* moves the last one into slot i */
        else
            i++;
    }
}

/* Few watchers are left on epoll (leaving is one, whose interest the loop
 * clears after this): the others come back to the poll set. */
static void to_poll(mpconn_loop *loop, epoll_state *st, const mpconn_io *leaving)
{
    for (size_t fd = 0; fd < loop->fdcap && st->nepoll > 0; fd++) {
        mpconn_io *io = loop->fdtab[fd];
        if (!io || io == leaving || !io->events || io->be_slot || st->npolled == st->small_max)
            continue;
        st->nepoll--;
        if (ctl(st, EPOLL_CTL_DEL, io, 0) == 0)
            poll_add(st, io);
        else
            st->nepoll++; /* still there: leave it */
    }
}

static int epoll_change(mpconn_loop *loop, mpconn_io *io, int old_events, int new_events)
{
    epoll_state *st = loop->be_state;
    if (io->be_slot) { /* poll() reads the interest from the watcher */
        if (!new_events)
            poll_remove(st, io);
        return 0;
    }
    if (old_events && new_events)
        return ctl(st, EPOLL_CTL_MOD, io, new_events);
    if (!new_events) {
        st->nepoll--; /* gone even if DEL fails: its fd was closed first */
        int r = ctl(st, EPOLL_CTL_DEL, io, 0);
        if (st->nepoll + (size_t)st->npolled <= (size_t)st->small_low)
            to_poll(loop, st, io);
        return r;
    }
    if (!st->nepoll && st->npolled < st->small_max) {
        poll_add(st, io);
        return 0;
    }
    if (!st->nepoll)
        to_epoll(st);
    int r = ctl(st, EPOLL_CTL_ADD, io, new_events);
    if (r == -EPERM && st->npolled < st->small_max) { /* a regular file: polled, always ready */
        poll_add(st, io);
        return 0;
    }
    return r;
}

static int from_epoll(epoll_state *st, int timeout_ms, mpci_event *out, int max)
{
    int n = epoll_wait(st->epfd, st->ev, max, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        uint32_t e = st->ev[i].events;
        int mask = 0;
        if (e & (EPOLLIN | EPOLLPRI))
            mask |= MPCONN_READABLE;
        if (e & EPOLLOUT)
            mask |= MPCONN_WRITABLE;
        if (e & (EPOLLERR | EPOLLHUP))
            mask |= MPCONN_READABLE | MPCONN_WRITABLE;
        out[i].io = st->ev[i].data.ptr;
        out[i].events = mask;
    }
    return n;
}

static int epoll_wait_events(mpconn_loop *loop, int timeout_ms, mpci_event *out, int max)
{
    epoll_state *st = loop->be_state;
    if (max > 256)
        max = 256;
    if (!st->npolled)
        return from_epoll(st, timeout_ms, out, max);
    /* The poll set, after the epoll fd when epoll has watchers. */
    int np = st->npolled, e = st->nepoll > 0;
    struct pollfd *pfd = st->pfd + 1 - e;
    st->pfd[0] = (struct pollfd){.fd = st->epfd, .events = POLLIN};
    for (int i = 0; i < np; i++)
        st->pfd[i + 1] = (struct pollfd){.fd = st->polled[i]->fd,
                                         .events = mpci_poll_interest(st->polled[i]->events)};
    int r = poll(pfd, (nfds_t)(np + e), timeout_ms);
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    int n = 0;
    for (int i = 0; i < np && n < max; i++)
        if (st->pfd[i + 1].revents)
            out[n++] = (mpci_event){st->polled[i], mpci_poll_ready(st->pfd[i + 1].revents)};
    if (e && (st->pfd[0].revents & POLLIN) && n < max) {
        int m = from_epoll(st, 0, out + n, max - n);
        if (m < 0)
            return m;
        n += m;
    }
    return n;
}

const mpci_backend mpci_backend_epoll = {"epoll", epoll_init, epoll_fini, epoll_change,
                                         epoll_wait_events};
#else
typedef int mpci_no_epoll_here;
#endif
