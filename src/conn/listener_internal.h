/* What mpconn_wait and the async listener need of a listener: the
 * handshakes it runs (so that a loop built on wait never stalls one), its
 * options and its peer policy. */
#ifndef MPCI_CONN_LISTENER_INTERNAL_H
#define MPCI_CONN_LISTENER_INTERNAL_H

#include "conn/opts.h"

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/* The fds of the listener's handshakes under way (up to cap written to out;
 * the count is returned), the earliest handshake deadline folded into *wake
 * (< 0: none), *ready_now set when a finished handshake waits to be
 * accepted. */
struct pollfd;
size_t mpci_listener_pending(const mpconn_listener *l, struct pollfd *out, size_t cap, double *wake,
                             int *ready_now);
/* When accepting resumes after running out of descriptors (0: it is not
 * paused): until then the listening socket is not to be polled, or a loop
 * on mpconn_wait would spin on a backlog that stays readable. */
double mpci_listener_paused_until(const mpconn_listener *l);
/* For the async listener, which uses a listener for its socket and its
 * peer policy: the listener's options, and the policy applied to one
 * accepted fd (0, or MPCONN_ERR_PEER; *pid and *uid get the credentials of
 * a Unix peer when the policy asked for them, -1 otherwise). A peer is put
 * into words only when a message names it: mpci_listener_peer_text writes
 * at most cap bytes of it. */
const struct mpconn_opts *mpci_listener_opts(const mpconn_listener *l);
int mpci_listener_admit(mpconn_listener *l, int fd, const struct sockaddr_storage *ss, socklen_t sl,
                        pid_t *pid, uid_t *uid);
const char *mpci_listener_peer_text(const mpconn_listener *l, const void *sa, socklen_t sl,
                                    pid_t pid, uid_t uid, char *buf, size_t cap);
#define MPCI_PEER_TEXT_MAX 320 /* what a listener writes for a peer, at most */

#endif
