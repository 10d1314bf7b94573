/* mpconn_pipe: two connected connections, as multiprocessing.Pipe makes
 * them: a Unix socketpair for a duplex pipe, a pipe(2) otherwise. */
#define _GNU_SOURCE /* pipe2 */
#include "conn/conn_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

int mpconn_pipe(mpconn_conn **a, mpconn_conn **b, int duplex, const mpconn_opts *opts)
{
    int fds[2];
    int r;
    if (duplex)
        r = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
    else
        r = pipe2(fds, O_CLOEXEC);
    if (r < 0)
        return -errno;
    int fa = duplex ? MPCONN_READABLE | MPCONN_WRITABLE : MPCONN_READABLE;
    int fb = duplex ? MPCONN_READABLE | MPCONN_WRITABLE : MPCONN_WRITABLE;
    int kind = duplex ? MPCI_FD_UNIX : MPCI_FD_PIPE;
    if ((r = mpci_conn_new(a, fds[0], fa, opts, kind)) < 0) {
        close(fds[0]);
        close(fds[1]);
        return r;
    }
    if ((r = mpci_conn_new(b, fds[1], fb, opts, kind)) < 0) {
        mpconn_conn_free(*a);
        *a = NULL;
        close(fds[1]);
        return r;
    }
    return 0;
}
