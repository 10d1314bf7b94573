/* The plain-fd transport: a connection's bytes over a socket or a pipe,
 * SIGPIPE kept away from the process, and descriptors passed over Unix
 * sockets (SCM_RIGHTS): one kept where mpconn_conn_send_fd's count byte
 * says, every other closed as it arrives. */
#define _GNU_SOURCE /* MSG_CMSG_CLOEXEC */
#include "net/transport.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static ssize_t neg_errno(ssize_t r)
{
    if (r >= 0)
        return r;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

ssize_t mpci_recv_fds(int fd, void *dst, size_t cap, int flags, int keep, mpci_fdin *in)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * MPCI_FD_ROOM)];
    } ctl;
    struct iovec iov = {dst, cap};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    in->fd = -1;
    in->dropped = 0;
    in->truncated = 0;
    ssize_t n = recvmsg(fd, &m, flags | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return n;
    in->truncated = (m.msg_flags & MSG_CTRUNC) != 0;
    if (m.msg_controllen == 0)
        return n;
    int first = -1;
    size_t count = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfd = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int got;
            memcpy(&got, CMSG_DATA(h) + i * sizeof(int), sizeof got);
            if (count++ == 0) {
                first = got;
                continue;
            }
            close(got);
            in->dropped++;
        }
    }
    if (first < 0)
        return n;
    if (keep && count == 1 && !in->truncated && n > 0 && ((const uint8_t *)dst)[n - 1] == 1) {
        in->fd = first;
    } else {
        close(first);
        in->dropped++;
    }
    return n;
}

static ssize_t fdt_read(mpci_transport *base, void *dst, size_t cap)
{
    mpci_fd_transport *t = (mpci_fd_transport *)base;
    if (!t->is_unix) {
        t->in = (mpci_fdin){.fd = -1};
        if (t->is_socket) /* recv() skips the checks read() makes in the VFS */
            return neg_errno(recv(base->fd, dst, cap, t->dontwait ? MSG_DONTWAIT : 0));
        return neg_errno(read(base->fd, dst, cap));
    }
    return neg_errno(
        mpci_recv_fds(base->fd, dst, cap, t->dontwait ? MSG_DONTWAIT : 0, t->keep_fd, &t->in));
}

/* Writes to a pipe with SIGPIPE blocked for this thread only; a SIGPIPE the
 * write raised is consumed so the process never sees it. Not inlined: its
 * signal sets would give every socket write their stack frame. */
__attribute__((noinline)) static ssize_t pipe_writev(int fd, const struct iovec *iov, int n)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);
    ssize_t w = writev(fd, iov, n);
    int saved = errno;
    if (w < 0 && saved == EPIPE && !was_pending) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return w;
}

static ssize_t fdt_writev(mpci_transport *base, const struct iovec *iov, int n)
{
    mpci_fd_transport *t = (mpci_fd_transport *)base;
    if (!t->is_socket)
        return neg_errno(pipe_writev(base->fd, iov, n));
    int flags = MSG_NOSIGNAL | (t->dontwait ? MSG_DONTWAIT : 0);
    if (n == 1) /* the kernel's send() skips copying in a message header */
        return neg_errno(send(base->fd, iov[0].iov_base, iov[0].iov_len, flags));
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    return neg_errno(sendmsg(base->fd, &m, flags));
}

static int fdt_close(mpci_transport *base)
{
    if (base->fd < 0)
        return 0;
    int r = close(base->fd) < 0 && errno != EINTR ? -errno : 0;
    base->fd = -1;
    return r;
}

static size_t fdt_pending(const mpci_transport *base)
{
    (void)base;
    return 0;
}

static short fdt_events(const mpci_transport *base, short want)
{
    (void)base;
    return want;
}

const mpci_transport_ops mpci_fd_transport_ops = {
    .read = fdt_read,
    .writev = fdt_writev,
    .close = fdt_close,
    .pending = fdt_pending,
    .events = fdt_events,
};

void mpci_fdt_init(mpci_fd_transport *t, int fd, int is_socket, int is_unix)
{
    t->base.ops = &mpci_fd_transport_ops;
    t->base.fd = fd;
    t->is_socket = is_socket != 0;
    t->is_unix = is_unix != 0;
    t->keep_fd = 0;
    t->dontwait = 0;
    t->in = (mpci_fdin){.fd = -1};
}

int mpci_fdt_release(mpci_fd_transport *t)
{
    int fd = t->base.fd;
    t->base.fd = -1;
    return fd;
}

ssize_t mpci_fdt_send_fd(mpci_fd_transport *t, int fd, unsigned char count)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {&count, 1};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &fd, sizeof fd);
    return neg_errno(sendmsg(t->base.fd, &m, MSG_NOSIGNAL | (t->dontwait ? MSG_DONTWAIT : 0)));
}
