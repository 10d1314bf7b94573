/* The poll() backend: portable POSIX, and the one the tests also run on
 * Linux. The pollfd array is rebuilt from the fd table only after a change. */
#include "loop_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>

typedef struct {
    struct pollfd *fds;
    mpconn_io **ios;
    size_t n, cap;
    size_t next; /* where the next scan of revents starts */
    int dirty;
} poll_state;

static int poll_init(mpconn_loop *loop)
{
    poll_state *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    loop->be_state = st;
    return 0;
}

static void poll_fini(mpconn_loop *loop)
{
    poll_state *st = loop->be_state;
    free(st->fds);
    free(st->ios);
    free(st);
    loop->be_state = NULL;
}

static int poll_change(mpconn_loop *loop, mpconn_io *io, int old_events, int new_events)
{
    (void)io, (void)old_events, (void)new_events;
    poll_state *st = loop->be_state;
    st->dirty = 1;
    return 0;
}

static int rebuild(mpconn_loop *loop, poll_state *st)
{
    st->n = 0;
    for (size_t fd = 0; fd < loop->fdcap; fd++) {
        mpconn_io *io = loop->fdtab[fd];
        if (!io || !io->events)
            continue;
        if (st->n == st->cap) {
            size_t cap = st->cap ? st->cap * 2 : 64;
            struct pollfd *fds = realloc(st->fds, cap * sizeof *fds);
            if (!fds)
                return -ENOMEM;
            st->fds = fds;
            mpconn_io **ios = realloc(st->ios, cap * sizeof *ios);
            if (!ios)
                return -ENOMEM;
            st->ios = ios;
            st->cap = cap;
        }
        st->fds[st->n].fd = io->fd;
        st->fds[st->n].events = mpci_poll_interest(io->events);
        st->ios[st->n] = io;
        st->n++;
    }
    st->dirty = 0;
    return 0;
}

static int poll_wait(mpconn_loop *loop, int timeout_ms, mpci_event *out, int max)
{
    poll_state *st = loop->be_state;
    if (st->dirty) {
        int rc = rebuild(loop, st);
        if (rc < 0)
            return rc;
    }
    int r = poll(st->fds, (nfds_t)st->n, timeout_ms);
    if (r < 0)
        return errno == EINTR ? 0 : -errno;
    int n = 0;
    /* Events beyond max wait for the next call, which poll reports again;
     * the scan starts where the last full batch stopped, so every ready fd
     * has its turn however many lower ones stay ready. */
    size_t start = st->next < st->n ? st->next : 0, k = 0;
    for (; k < st->n && n < max && r > 0; k++) {
        size_t i = (start + k) % st->n;
        short re = st->fds[i].revents;
        if (!re)
            continue;
        r--;
        out[n].io = st->ios[i];
        out[n].events = mpci_poll_ready(re);
        n++;
    }
    st->next = n == max ? (start + k) % st->n : 0;
    return n;
}

const mpci_backend mpci_backend_poll = {"poll", poll_init, poll_fini, poll_change, poll_wait};
