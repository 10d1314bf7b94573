/* What the listener, the client, wait and the object functions know of a
 * connection beyond the public API. */
#ifndef MPCI_CONN_CONN_INTERNAL_H
#define MPCI_CONN_CONN_INTERNAL_H

#include "base/err.h"
#include "conn/opts.h"
#include "proto/frame.h"

#include <stddef.h>
#include <stdint.h>

/* What the fd of a new connection is, when the library made it (saves
 * asking the kernel); MPCI_FD_NONBLOCK and MPCI_FD_RCVTIMEO (SO_RCVTIMEO is
 * still set from the handshake) may be or-ed in. */
enum { MPCI_FD_UNKNOWN = 0, MPCI_FD_PIPE = 1, MPCI_FD_INET = 2, MPCI_FD_UNIX = 3 };
#define MPCI_FD_KIND 3
#define MPCI_FD_NONBLOCK 4
#define MPCI_FD_RCVTIMEO 8

/* Internal access for the listener and client. */
int mpci_conn_new(mpconn_conn **out, int fd, int flags, const struct mpconn_opts *opts, int kind);
void mpci_conn_seterr(mpconn_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Bytes already buffered (for wait/poll). */
size_t mpci_conn_buffered(const mpconn_conn *c);
/* Bytes read past the handshake belong to the first message. */
int mpci_conn_prefill(mpconn_conn *c, const uint8_t *p, size_t n);
/* After mpci_conn_prefill: fd (>= 0; taken over) came with the last byte
 * prefilled, its count byte; dropped descriptors were closed before. */
void mpci_conn_prefill_fd(mpconn_conn *c, int fd, size_t dropped);
/* The send lock, when mpconn_conn_set_send_lock enabled it (else no-ops). */
void mpci_conn_lock(mpconn_conn *c);
void mpci_conn_unlock(mpconn_conn *c);
/* Sends payload bytes already placed at buf + MPCI_HDR_MAX (the header is
 * written in front of them): one contiguous write. The caller holds the
 * send lock. */
int mpci_conn_send_framed(mpconn_conn *c, uint8_t *buf, size_t len);
/* A reusable send buffer owned by the connection; used under the send lock. */
void mpci_conn_scratch(mpconn_conn *c, uint8_t ***buf, size_t **cap);
/* The next whole message, in place when it sits whole in the read-ahead
 * buffer (valid until the next receive; *owned NULL), else in a buffer the
 * caller frees (*owned). */
int mpci_conn_recv_view(mpconn_conn *c, const uint8_t **p, size_t *len, void **owned);
/* The options the connection was made with (pickle protocol, limits). */
const struct mpconn_opts *mpci_conn_opts(const mpconn_conn *c);
/* This side has no authkey: treat a first #CHALLENGE# as MPCONN_ERR_NOKEY. */
void mpci_conn_set_check_first(mpconn_conn *c);

/* For benchmarks and tests only (tests/hooks/mpci_test.h declares it for
 * them): mpconn_client with a client in CPython's order, its challenge sent
 * after #WELCOME# rather than right behind its answer. */
int mpci_test_client_serial(mpconn_conn **out, const char *address, const mpconn_opts *opts,
                            char *errmsg, size_t errlen);

#endif
