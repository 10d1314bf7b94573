/* A handshake over a socket without blocking: the byte side (proto/handshake.h)
 * given its nonce and the opts' MAC cache, and moved over the fd with
 * MSG_DONTWAIT per call, so many run under one poll() and none can stall a
 * listener. Deadlines are the caller's. */
#ifndef MPCI_CONN_HANDSHAKE_IO_H
#define MPCI_CONN_HANDSHAKE_IO_H

#include "conn/opts.h"
#include "proto/handshake.h"

/* role is MPCI_AUTH_SERVER or a client role; the nonce comes from the
 * opts' cache (or the kernel), whose keyed MACs the machine borrows. */
int mpci_hs_init(mpci_hs *h, int role, const struct mpconn_opts *o);
/* poll() events the handshake waits for. */
short mpci_hs_events(const mpci_hs *h);
/* Does what fd allows, reading only when readable (poll() said so); with
 * blocking_reads a read may block, bounded by the fd's SO_RCVTIMEO.
 * Returns h->state: DONE only once all output is written; FAILED after a
 * best-effort flush. */
int mpci_hs_progress(mpci_hs *h, int fd, int readable, int blocking_reads);
/* The same over a transport (a TLS session) whose fd is non-blocking:
 * reads until it says -EAGAIN; its events() say what to poll for. No
 * descriptors pass through it. */
struct mpci_transport;
int mpci_hs_progress_tp(mpci_hs *h, struct mpci_transport *t);

#endif
