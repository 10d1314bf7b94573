/* Sockets as the connections need them: connect with a timeout, the
 * receive bound of a blocking read, a Unix peer's credentials. */
#ifndef MPCI_NET_SOCKET_H
#define MPCI_NET_SOCKET_H

#include "net/address.h"

#include <sys/types.h>

/* A connected stream socket for a (resolved) address, close-on-exec and
 * blocking; timeout < 0 waits as long as connect() does. 0 or a negative
 * code, with errmsg naming address. */
int mpci_sock_connect(const mpci_addr *a, const char *address, double timeout, int *out,
                      char *errmsg, size_t errlen);
/* SO_RCVTIMEO of seconds, rounded up to a microsecond (0 would mean
 * "forever"). 0 or a negative errno. */
int mpci_sock_set_rcvtimeo(int fd, double seconds);
/* What fd is, in one system call: its socket family (AF_UNIX, AF_INET,
 * ...), or -1 when it is not a socket (a pipe, a file) or not open. */
int mpci_sock_family(int fd);
/* The pid, uid and gid of a Unix socket's peer (SO_PEERCRED): 0 or a
 * negative errno (the outputs untouched). */
int mpci_sock_peercred(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

#endif
