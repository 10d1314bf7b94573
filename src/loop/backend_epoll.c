/* The epoll backend (Linux). Each registration carries its watcher, so a
 * batch names watchers, never bare fd numbers. */
#ifdef __linux__
#include "loop_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

typedef struct {
    int epfd;
    struct epoll_event ev[256];
} epoll_state;

static int epoll_init(mpconn_loop *loop)
{
    epoll_state *st = malloc(sizeof *st);
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

static int epoll_change(mpconn_loop *loop, mpconn_io *io, int old_events, int new_events)
{
    epoll_state *st = loop->be_state;
    struct epoll_event ev = {0};
    ev.data.ptr = io;
    if (new_events & MPCONN_READABLE)
        ev.events |= EPOLLIN;
    if (new_events & MPCONN_WRITABLE)
        ev.events |= EPOLLOUT;
    int op = !old_events ? EPOLL_CTL_ADD : !new_events ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(st->epfd, op, io->fd, &ev) == 0)
        return 0;
    return -errno; /* -EPERM for a regular file: epoll cannot watch one */
}

static int epoll_wait_events(mpconn_loop *loop, int timeout_ms, mpci_event *out, int max)
{
    epoll_state *st = loop->be_state;
    if (max > 256)
        max = 256;
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

const mpci_backend mpci_backend_epoll = {"epoll", epoll_init, epoll_fini, epoll_change,
                                         epoll_wait_events};
#else
typedef int mpci_no_epoll_here;
#endif
