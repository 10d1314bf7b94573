/* The epoll backend (Linux). Each registration carries its watcher, so a
 * batch names watchers, never bare fd numbers.
 *
 * A new watcher does not enter the epoll set at once: it goes to a small
 * poll set, and a loop with no more watchers than that set holds polls
 * them all and leaves epoll empty. Once the loop has more, the overflow
 * goes to epoll, whose fd joins the poll set, and a watcher moves from
 * the poll set to epoll after a few waits. A connection that comes and
 * goes within its handshake (an accepting server's common case) then
 * costs neither EPOLL_CTL_ADD nor EPOLL_CTL_DEL, which is what a blocking
 * accept-and-poll server saves over a loop, and a busy loop still sleeps
 * in epoll_wait alone. Both sets are level triggered, so where a watcher
 * sits changes nothing it sees. */
#ifdef __linux__
#include "loop_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define FRESH_MAX 8   /* watchers in the poll set at most; more go to epoll at once */
#define FRESH_WAITS 4 /* waits there before a watcher moves to a non-empty epoll set */

typedef struct {
    int epfd;
    size_t nepoll; /* watchers registered with epoll */
    int nfresh;
    mpconn_io *fresh[FRESH_MAX];
    uint8_t age[FRESH_MAX]; /* waits survived; UINT8_MAX: epoll refused it, polled for good */
    struct pollfd pfd[FRESH_MAX + 1];
    struct epoll_event ev[256];
} epoll_state;

static int epoll_init(mpconn_loop *loop)
{
    epoll_state *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
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
    if (epoll_ctl(st->epfd, op, io->fd, &ev) == 0)
        return 0;
    return -errno; /* -EPERM for a regular file: epoll cannot watch one */
}

static void fresh_remove(epoll_state *st, mpconn_io *io)
{
    int i = io->be_slot - 1, last = --st->nfresh;
    if (i != last) {
        st->fresh[i] = st->fresh[last];
        st->age[i] = st->age[last];
        st->fresh[i]->be_slot = (uint8_t)(i + 1);
    }
    io->be_slot = 0;
}

static int epoll_change(mpconn_loop *loop, mpconn_io *io, int old_events, int new_events)
{
    epoll_state *st = loop->be_state;
    if (io->be_slot) { /* the poll set reads the interest from the watcher */
        if (!new_events)
            fresh_remove(st, io);
        return 0;
    }
    if (!old_events && st->nfresh < FRESH_MAX) {
        st->fresh[st->nfresh] = io;
        st->age[st->nfresh] = 0;
        io->be_slot = (uint8_t)++st->nfresh;
        return 0;
    }
    if (new_events && old_events)
        return ctl(st, EPOLL_CTL_MOD, io, new_events);
    if (new_events) {
        int r = ctl(st, EPOLL_CTL_ADD, io, new_events);
        st->nepoll += r == 0;
        return r;
    }
    st->nepoll--; /* gone even if DEL fails: its fd was closed first */
    return ctl(st, EPOLL_CTL_DEL, io, 0);
}

/* Watchers that have outlived their stay in the poll set move to epoll;
 * one that epoll refuses (a regular file) stays, as the poll backend
 * would watch it. */
static void migrate(epoll_state *st)
{
    for (int i = 0; i < st->nfresh;) {
        if (st->age[i] < FRESH_WAITS) {
            i++;
            continue;
        }
        mpconn_io *io = st->fresh[i];
        if (st->age[i] != UINT8_MAX && ctl(st, EPOLL_CTL_ADD, io, io->events) == 0) {
            st->nepoll++;
            fresh_remove(st, io); /* moves the last one into slot i */
            continue;
        }
        st->age[i] = UINT8_MAX;
        i++;
    }
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
    if (st->nepoll)
        migrate(st);
    if (!st->nfresh)
        return from_epoll(st, timeout_ms, out, max);
    /* The poll set, after the epoll fd when epoll has watchers. */
    int np = st->nfresh, e = st->nepoll > 0;
    struct pollfd *pfd = st->pfd + 1 - e;
    st->pfd[0] = (struct pollfd){.fd = st->epfd, .events = POLLIN};
    for (int i = 0; i < np; i++) {
        st->pfd[i + 1] = (struct pollfd){.fd = st->fresh[i]->fd,
                                         .events = mpci_poll_interest(st->fresh[i]->events)};
        if (st->age[i] < FRESH_WAITS)
            st->age[i]++;
    }
    int r = poll(pfd, (nfds_t)(np + e), timeout_ms);
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    int n = 0;
    for (int i = 0; i < np && n < max; i++)
        if (st->pfd[i + 1].revents)
            out[n++] = (mpci_event){st->fresh[i], mpci_poll_ready(st->pfd[i + 1].revents)};
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
