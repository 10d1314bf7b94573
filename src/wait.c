/* mpconn_wait: which of many connections, listeners and fds are ready, on
 * poll() (no FD_SETSIZE limit), counting bytes a connection has buffered. */
#include "mpci.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>

int mpconn_wait(mpconn_waitable *items, size_t n, double seconds)
{
    struct pollfd *p = calloc(n ? n : 1, sizeof *p);
    if (!p)
        return -ENOMEM;
    int buffered = 0;
    for (size_t i = 0; i < n; i++) {
        mpconn_waitable *w = &items[i];
        w->ready = 0;
        int fd = w->conn ? mpconn_conn_fileno(w->conn)
                 : w->listener ? mpconn_listener_fileno(w->listener)
                               : w->fd;
        p[i] = (struct pollfd){.fd = fd, .events = POLLIN};
        if (w->conn && fd >= 0 && mpci_conn_buffered(w->conn)) {
            w->ready = 1;
            buffered++;
        }
    }
    /* Buffered data is ready now: only look, don't sleep. */
    double deadline = mpci_deadline(buffered ? 0 : seconds);
    int r;
    while ((r = poll(p, n, mpci_poll_ms(deadline))) < 0 && errno == EINTR) {
    }
    if (r < 0) {
        r = -errno;
        free(p);
        return r;
    }
    int ready = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))
            items[i].ready = 1;
        ready += items[i].ready;
    }
    free(p);
    return ready;
}
