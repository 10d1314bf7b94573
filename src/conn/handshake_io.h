/* A handshake without blocking: the byte side (proto/handshake.h) given its
 * nonce and the opts' MAC cache, and moved through a transport
 * (net/transport.h), so many run under one poll() and none can stall a
 * listener, and a TLS session carries one as the plain fd does. Deadlines
 * are the caller's. */
#ifndef MPCI_CONN_HANDSHAKE_IO_H
#define MPCI_CONN_HANDSHAKE_IO_H

#include "conn/opts.h"
#include "net/transport.h"
#include "proto/handshake.h"

/* role is MPCI_AUTH_SERVER or a client role; the nonce comes from the
 * opts' cache (or the kernel), whose keyed MACs the machine borrows. */
int mpci_hs_init(mpci_hs *h, int role, const struct mpconn_opts *o);
/* poll() events the handshake waits for on a plain socket. */
short mpci_hs_events(const mpci_hs *h);
/* The same through t: a transport may have to read to write, or the
 * other way round. */
short mpci_hs_wants(const mpci_hs *h, const mpci_transport *t);
/* Does what t allows, reading only when readable (poll() said so) or t
 * holds bytes already (pending); with blocking_reads a read may block,
 * bounded by the fd's SO_RCVTIMEO. Passed descriptors are seen on the
 * plain-fd transport only (one right behind the last handshake message is
 * kept in h). Returns h->state: DONE only once all output is written;
 * FAILED after a best-effort flush. */
int mpci_hs_step(mpci_hs *h, mpci_transport *t, int readable, int blocking_reads);
/* mpci_hs_step over the socket fd itself, each call with MSG_DONTWAIT (but
 * for blocking reads), so the fd stays as the connection wants it and no
 * fcntl() is spent switching. */
int mpci_hs_progress(mpci_hs *h, int fd, int readable, int blocking_reads);
/* mpci_hs_step through t (a TLS session) on a non-blocking fd, reading
 * at once (a poll() said so, or nothing was tried yet); t's events() say
 * what to poll for. */
int mpci_hs_progress_tp(mpci_hs *h, mpci_transport *t);

#endif
