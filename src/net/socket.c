/* Sockets as the connections need them: connect with a timeout, the
 * receive bound of a blocking read, a Unix peer's credentials. */
#define _GNU_SOURCE /* SO_PEERCRED, struct ucred */
#include "net/socket.h"
#include "base/clock.h"
#include "base/err.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Without a timeout connect() simply blocks: one system call. With one,
 * TCP connects non-blocking under poll(), and a Unix connect() (which either
 * succeeds, is refused at once, or waits for room in the backlog) is bounded
 * by SO_SNDTIMEO. The fd comes out blocking, as the connection wants it. */
int mpci_sock_connect(const mpci_addr *a, const char *address, double timeout, int *out,
                      char *errmsg, size_t errlen)
{
    int is_unix = a->family == AF_UNIX;
    int poll_connect = !is_unix && timeout >= 0;
    int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC | (poll_connect ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return mpci_err(errmsg, errlen, -errno, "cannot create a socket for %s: %s", address,
                        strerror(errno));
    /* Messages go out whole (one writev each), so Nagle's algorithm only
     * ever holds back a message that follows another: the first one after
     * the handshake would wait for the peer's delayed ACK of WELCOME. */
    if (!is_unix)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
    int r = 0, sndtimeo = is_unix && timeout >= 0;
    if (sndtimeo) {
        struct timeval tv = {(time_t)timeout,
                             (suseconds_t)((timeout - (double)(time_t)timeout) * 1e6)};
        if (tv.tv_sec == 0 && tv.tv_usec == 0)
            tv.tv_usec = 1000;
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (connect(fd, (const struct sockaddr *)&a->sa, a->salen) < 0) {
        r = -errno;
        if (r == -EAGAIN && is_unix)
            r = -ETIMEDOUT;
        /* Interrupted or in progress: the connection goes on; wait for it. */
        if (r == -EINPROGRESS || (r == -EINTR && !is_unix)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            double deadline = mpci_deadline(timeout);
            int pr;
            while ((pr = poll(&p, 1, mpci_poll_ms(deadline))) < 0 && errno == EINTR) {
            }
            if (pr == 0) {
                r = -ETIMEDOUT;
            } else if (pr < 0) {
                r = -errno;
            } else {
                int soerr = 0;
                socklen_t sl = sizeof soerr;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                r = -soerr;
            }
        }
    }
    if (r == 0 && sndtimeo) {
        struct timeval zero = {0, 0};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof zero);
    }
    /* A fresh socket has no other status flags to keep. */
    if (r == 0 && poll_connect && fcntl(fd, F_SETFL, 0) < 0)
        r = -errno;
    if (r < 0) {
        close(fd);
        return mpci_err(errmsg, errlen, r, "cannot connect to %s: %s", address, strerror(-r));
    }
    *out = fd;
    return 0;
}

/* SO_RCVTIMEO of seconds, rounded up to a microsecond (0 would mean
 * "forever"). */
int mpci_sock_set_rcvtimeo(int fd, double seconds)
{
    double us = ceil(seconds * 1e6);
    if (us < 1)
        us = 1;
    if (us > 1e15)
        us = 1e15;
    struct timeval tv = {(time_t)(us / 1e6), 0};
    tv.tv_usec = (suseconds_t)(us - (double)tv.tv_sec * 1e6);
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ? -errno : 0;
}

int mpci_sock_family(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    return getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 ? ss.ss_family : -1;
}

int mpci_sock_peercred(int fd, pid_t *pid, uid_t *uid, gid_t *gid)
{
    struct ucred cr;
    socklen_t cl = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0)
        return -errno;
    *pid = cr.pid;
    *uid = cr.uid;
    *gid = cr.gid;
    return 0;
}
