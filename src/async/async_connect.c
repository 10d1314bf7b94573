/* The async client: a non-blocking connect to a Unix path, an abstract name
 * or a numeric TCP address, then the handshake, all on the loop. */
#include "async_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int mpci_async_connecting(mpconn_async **out, int fd, const struct mpconn_opts *opts,
                          double connect_deadline, const struct sockaddr *retry_sa,
                          socklen_t retry_len, const mpconn_async_cbs *cbs, void *data);

int mpconn_async_connect(mpconn_async **out, const char *address, const mpconn_opts *opts,
                         const mpconn_async_cbs *cbs, void *data, const mpconn_adapter *ad,
                         void *loop, char *errmsg, size_t errlen)
{
    *out = NULL;
    struct mpconn_opts defaults;
    if (!opts) {
        mpci_opts_defaults(&defaults);
        opts = &defaults;
    }
    mpci_addr addr;
    int r = mpci_addr_parse(&addr, address, errmsg, errlen);
    if (r < 0)
        return r;
    if (addr.need_resolve)
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR,
                        "%s: async connections take numeric addresses; resolve the name first "
                        "(the loop must not block in getaddrinfo)",
                        address);
    int fd = socket(addr.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return mpci_err(errmsg, errlen, -errno, "socket: %s", strerror(errno));
    if (addr.family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int in_progress = 0, backlog_full = 0;
    if (connect(fd, (struct sockaddr *)&addr.sa, addr.salen) < 0) {
        if (errno == EINPROGRESS) {
            in_progress = 1;
        } else if (errno == EAGAIN && addr.family == AF_UNIX) {
            backlog_full = 1; /* no room in the listener's backlog yet: try again */
        } else {
            int e = errno;
            close(fd);
            return mpci_err(errmsg, errlen, -e, "connect to %s: %s", address, strerror(e));
        }
    }
    mpconn_async *a;
    r = mpci_async_connecting(&a, fd, opts, mpci_deadline(opts->connect_timeout),
                              backlog_full ? (struct sockaddr *)&addr.sa : NULL, addr.salen, cbs,
                              data);
    if (r < 0) {
        close(fd);
        return mpci_err(errmsg, errlen, r, "%s", mpconn_strerror(r));
    }
    (void)in_progress; /* a connect done at once reports writable right away */
    r = mpconn_async_attach(a, ad, loop);
    if (r < 0) {
        mpconn_async_close(a);
        return mpci_err(errmsg, errlen, r, "cannot watch the connection: %s", mpconn_strerror(r));
    }
    *out = a;
    return 0;
}
