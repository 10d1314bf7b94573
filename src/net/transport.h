/* The transport behind a connection: a small vtable that moves bytes, so
 * that a TLS session is another implementation of the same five calls and
 * the blocking and the coming async connections share them. The plain-fd
 * transport (sockets and pipes, fd passing on Unix sockets) is below. */
#ifndef MPCI_NET_TRANSPORT_H
#define MPCI_NET_TRANSPORT_H

#include <stddef.h>
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
} mpci_transport_ops;

struct mpci_transport {
    const mpci_transport_ops *ops;
    int fd; /* what poll() watches */
};

/* -------------------------------------------------------- the plain fd */

#define MPCI_MAX_PASSED_FDS 16

/* Reads and writes the fd itself: writev with MSG_NOSIGNAL on sockets and
 * with SIGPIPE blocked for the thread on pipes; on Unix sockets reads go
 * through recvmsg, which keeps the fds that arrive (a read without room for
 * them would make the kernel drop them) until mpci_fdt_take_fd. */
typedef struct mpci_fd_transport {
    mpci_transport base;
    int is_socket, is_unix;
    int passed[MPCI_MAX_PASSED_FDS]; /* received fds not yet taken, owned */
    int npassed;
} mpci_fd_transport;

extern const mpci_transport_ops mpci_fd_transport_ops;

void mpci_fdt_init(mpci_fd_transport *t, int fd, int is_socket, int is_unix);
/* Gives the fd back without closing it (passed fds not taken are closed);
 * the transport is closed afterwards. */
int mpci_fdt_release(mpci_fd_transport *t);
/* The first fd passed and not yet taken, now the caller's: 0, or -ENOENT
 * when none has come. */
int mpci_fdt_take_fd(mpci_fd_transport *t, int *fd);
/* Sends fd over the Unix socket of t with SCM_RIGHTS, along with one byte
 * (count) as CPython's reduction.sendfds does: 1 or a negative errno. */
ssize_t mpci_fdt_send_fd(mpci_fd_transport *t, int fd, unsigned char count);

#endif
