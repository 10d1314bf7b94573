/* The transport behind a connection: a small vtable that moves bytes, so
 * that a TLS session is another implementation of the same calls and
 * the blocking and the coming async connections share them. The plain-fd
 * transport (sockets and pipes, fd passing on Unix sockets) is below. */
#ifndef MPCI_NET_TRANSPORT_H
#define MPCI_NET_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct mpci_transport mpci_transport;

typedef struct mpci_transport_ops {
    /* One read of up to cap bytes: the count, 0 at end of stream, or a
     * negative errno (-EAGAIN: nothing now, -EINTR: try again). */
    ssize_t (*read)(mpci_transport *t, void *dst, size_t cap);
    /* One write of the vector: the bytes taken (maybe fewer) or a negative
     * errno (-EAGAIN: no room now). Never raises SIGPIPE. */
    ssize_t (*writev)(mpci_transport *t, const struct iovec *iov, int n);
    /* Releases what the transport holds and closes its fd: 0 or a
     * negative errno. */
    int (*close)(mpci_transport *t);
    /* Bytes the transport already holds for the reader, which a poll() on
     * its fd would not announce (a TLS record decrypted ahead). */
    size_t (*pending)(const mpci_transport *t);
    /* The poll() events to wait for when the caller wants events (POLLIN
     * or POLLOUT): a TLS session may have to read to write, or write to
     * read. */
    short (*events)(const mpci_transport *t, short want);
    /* A session set-up of the transport's own (a TLS handshake), run as
     * far as the fd allows: 0 once done, -EAGAIN (events() says for what),
     * or an error. NULL: nothing to set up. */
    int (*handshake)(mpci_transport *t);
} mpci_transport_ops;

struct mpci_transport {
    const mpci_transport_ops *ops;
    int fd; /* what poll() watches */
};

/* -------------------------------------------------- passed descriptors */

/* Room for descriptors in one recvmsg(); the kernel discards any more in
 * one read (MSG_CTRUNC) without installing them. */
#define MPCI_FD_ROOM 8

/* What one recvmsg() brought besides its bytes. */
typedef struct mpci_fdin {
    int fd;         /* the one descriptor kept, or -1 */
    int truncated;  /* MSG_CTRUNC: the kernel discarded some */
    size_t dropped; /* descriptors closed here */
} mpci_fdin;

/* One recvmsg() of up to cap bytes into dst with flags (MSG_CMSG_CLOEXEC
 * added); -1 with errno as recvmsg. A descriptor is kept only when keep is
 * set and it came the way mpconn_conn_send_fd sends one: alone, with the
 * count byte 1 as the last byte read (the kernel ends a read behind the
 * message that carries descriptors). Every other descriptor is closed at
 * once and counted. */
ssize_t mpci_recv_fds(int fd, void *dst, size_t cap, int flags, int keep, mpci_fdin *in);

/* -------------------------------------------------------- the plain fd */

/* Reads and writes the fd itself: writev with MSG_NOSIGNAL on sockets and
 * with SIGPIPE blocked for the thread on pipes. With is_unix set reads go
 * through mpci_recv_fds, so a passed descriptor is seen (a read without
 * room for it would let the kernel drop it): the caller says before a read
 * whether it may keep one (keep_fd) and finds after it what came (in). An
 * async connection sets is_unix only while it takes descriptors, so that
 * otherwise the kernel discards them unseen and reads stay plain recv()s.
 * Small fields: every idle async connection holds one. */
typedef struct mpci_fd_transport {
    mpci_transport base;
    uint8_t is_socket, is_unix;
    uint8_t keep_fd;  /* the next read may keep a passed descriptor */
    uint8_t dontwait; /* sockets only: each call with MSG_DONTWAIT, the fd left as it is */
    mpci_fdin in;     /* what the last read brought besides bytes */
} mpci_fd_transport;

extern const mpci_transport_ops mpci_fd_transport_ops;

void mpci_fdt_init(mpci_fd_transport *t, int fd, int is_socket, int is_unix);
/* t as the plain-fd transport, or NULL when it is another kind (fd passing
 * and the calls above are the plain fd's alone). */
static inline mpci_fd_transport *mpci_fdt_of(mpci_transport *t)
{
    return t->ops == &mpci_fd_transport_ops ? (mpci_fd_transport *)t : NULL;
}
/* Gives the fd back without closing it; the transport is closed after. */
int mpci_fdt_release(mpci_fd_transport *t);
/* Sends fd over the Unix socket of t with SCM_RIGHTS, along with one byte
 * (count) as CPython's reduction.sendfds does: 1 or a negative errno. */
ssize_t mpci_fdt_send_fd(mpci_fd_transport *t, int fd, unsigned char count);

#endif
