/* What mpconn_wait needs of a listener: the handshakes it runs, so that a
 * loop built on wait never stalls one. */
#ifndef MPCI_CONN_LISTENER_INTERNAL_H
#define MPCI_CONN_LISTENER_INTERNAL_H

#include "mpconn.h"

#include <stddef.h>

/* The fds of the listener's handshakes under way (up to cap written to out;
 * the count is returned), the earliest handshake deadline folded into *wake
 * (< 0: none), *ready_now set when a finished handshake waits to be
 * accepted. */
struct pollfd;
size_t mpci_listener_pending(const mpconn_listener *l, struct pollfd *out, size_t cap, double *wake,
                             int *ready_now);

#endif
