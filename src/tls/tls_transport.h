/* The TLS transport: the sans-I/O engine (mpconn/tls.h) run over a plain fd
 * transport, as another implementation of net/transport.h. It works on
 * blocking and non-blocking fds alike: on the latter every op may return
 * -EAGAIN, and events() says which poll() direction the engine needs. */
#ifndef MPCI_TLS_TLS_TRANSPORT_H
#define MPCI_TLS_TLS_TRANSPORT_H

#include "mpconn/tls.h"
#include "net/transport.h"

#include <stddef.h>
#include <stdint.h>

/* Ciphertext pulled from the engine and not yet taken by the socket. */
#define MPCI_TLST_OUT 16384

typedef struct mpci_tls_transport {
    mpci_transport base;
    mpci_fd_transport inner; /* the fd underneath, read and written in ciphertext */
    mpconn_tls *tls;         /* owned */
    uint8_t *out;            /* MPCI_TLST_OUT bytes, allocated at the first output */
    size_t outpos, outlen;
    size_t held;      /* plaintext encrypted by a writev whose records are not all sent */
    short need_read;  /* what the last read that said -EAGAIN waits for */
    short need_write; /* the same for writev */
    int first_in;     /* no ciphertext has come from the peer yet */
    int err;          /* sticky: the transport's own finding (errmsg) */
    char errmsg[256]; /* a failure the transport found itself (the peer spoke no TLS) */
} mpci_tls_transport;

extern const mpci_transport_ops mpci_tls_transport_ops;

/* A transport over fd (not closed here unless close() is called) running
 * engine, which it takes over (freed with the transport, also on failure).
 * -ENOMEM. */
int mpci_tlst_new(mpci_tls_transport **out, int fd, int is_socket, mpconn_tls *engine);
/* Frees t and its engine without touching the fd. NULL is a no-op. */
void mpci_tlst_free(mpci_tls_transport *t);
/* Feeds ciphertext that was read before the transport existed (a STARTTLS
 * peer's first flight, read ahead in clear). */
int mpci_tlst_feed(mpci_tls_transport *t, const void *buf, size_t len);
/* Closes TLS both ways: sends close_notify and reads until the peer's.
 * Plaintext the peer sent before it goes to keep(data, bytes, n) (never
 * lost); then 0, -EAGAIN (events() says what for), or an error. */
int mpci_tlst_shutdown(mpci_tls_transport *t, int (*keep)(void *, const uint8_t *, size_t),
                       void *data);
/* After mpci_tlst_shutdown returned 0: the clear bytes read behind the
 * peer's close_notify, as mpconn_tls_unwrap. */
int mpci_tlst_unwrap(mpci_tls_transport *t, void *buf, size_t cap, size_t *n);
/* Why the last step failed: the transport's own finding, else the engine's. */
const char *mpci_tlst_errmsg(const mpci_tls_transport *t);
/* Whether code is one of the TLS layer's (its message is mpci_tlst_errmsg). */
int mpci_tls_code(int code);
/* The role of a config: MPCONN_TLS_CLIENT or MPCONN_TLS_SERVER. */
int mpci_tls_config_role(const mpconn_tls_config *cfg);
/* The server name a client config sets for every connection, or NULL. */
const char *mpci_tls_config_server_name(const mpconn_tls_config *cfg);

#endif
