/* mpconn_wait: which of many connections, listeners and fds are ready, on
 * poll() (no FD_SETSIZE limit), counting bytes a connection has buffered and
 * the handshakes a listener has under way. */
#include "conn/conn_internal.h"
#include "conn/listener_internal.h"
#include "base/clock.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>

static int item_fd(const mpconn_waitable *w)
{
    if (w->conn)
        return mpconn_conn_fileno(w->conn);
    if (w->listener)
        return mpconn_listener_fileno(w->listener);
    return w->fd;
}

int mpconn_wait(mpconn_waitable *items, size_t n, double seconds)
{
    /* A listener is ready when a peer knocks, and also when one of its
     * handshakes can move or has run out of time: accept() does that work. */
    size_t extra = 0;
    double wake = -1;
    int ready_now = 0;
    for (size_t i = 0; i < n; i++) {
        items[i].ready = 0;
        if (items[i].listener) {
            int done = 0;
            extra += mpci_listener_pending(items[i].listener, NULL, 0, &wake, &done);
            items[i].ready = done;
        } else if (items[i].conn && item_fd(&items[i]) >= 0 && mpci_conn_buffered(items[i].conn)) {
            items[i].ready = 1;
        }
        ready_now |= items[i].ready;
    }
    struct pollfd *p = calloc(n + extra ? n + extra : 1, sizeof *p);
    size_t *owner = calloc(extra ? extra : 1, sizeof *owner);
    if (!p || !owner) {
        free(p);
        free(owner);
        return -ENOMEM;
    }
    size_t k = n;
    for (size_t i = 0; i < n; i++) {
        p[i] = (struct pollfd){.fd = item_fd(&items[i]), .events = POLLIN};
        double paused = items[i].listener ? mpci_listener_paused_until(items[i].listener) : 0;
        if (paused > 0) {
            p[i].fd = -1; /* out of descriptors: its backlog waits */
            if (wake < 0 || paused < wake)
                wake = paused;
        }
        if (items[i].listener) {
            int done = 0;
            size_t m = mpci_listener_pending(items[i].listener, p + k, n + extra - k, &wake, &done);
            for (size_t j = 0; j < m; j++)
                owner[k - n + j] = i;
            k += m;
        }
    }
    double deadline = mpci_deadline(ready_now ? 0 : seconds);
    if (!ready_now && wake >= 0 && (deadline < 0 || wake < deadline))
        deadline = wake;
    int r;
    while ((r = poll(p, k, mpci_poll_ms(deadline))) < 0 && errno == EINTR) {
    }
    if (r < 0) {
        r = -errno;
        free(p);
        free(owner);
        return r;
    }
    int ready = 0;
    double now = mpci_now();
    for (size_t i = 0; i < n; i++)
        if (p[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))
            items[i].ready = 1;
    for (size_t j = n; j < k; j++)
        if (p[j].revents)
            items[owner[j - n]].ready = 1;
    if (wake >= 0 && now >= wake)
        for (size_t i = 0; i < n; i++)
            if (items[i].listener)
                items[i].ready = 1;
    for (size_t i = 0; i < n; i++)
        ready += items[i].ready;
    free(p);
    free(owner);
    return ready;
}
