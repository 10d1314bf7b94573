/* mpconn_client: connect (with an optional timeout) and, with an authkey,
 * run the client side of the handshake before handing out the connection. */
#include "conn/conn_internal.h"
#include "conn/handshake_io.h"
#include "base/clock.h"
#include "net/address.h"
#include "net/socket.h"
#include "tls/tls_transport.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The client has one peer to wait for, so it reads blocking, bounded by
 * SO_RCVTIMEO, rather than poll() before every read: a system call and a
 * wait-queue round fewer per step. The bound is re-armed only when more
 * than a millisecond of the handshake's time has gone (the kernel rounds
 * SO_RCVTIMEO up to its clock tick anyway, a few milliseconds). It stays set when the connection
 * takes the fd, which clears it the first time it runs out (or when the fd is detached): one system
 * call fewer per connection. Returns 1 when it is set, 0, or < 0. */
#define REARM_SLACK 0.001

static int handshake(int fd, int role, const struct mpconn_opts *o, const char *address,
                     mpci_hs *hs, char *errmsg, size_t errlen)
{
    double deadline = mpci_deadline(o->handshake_timeout);
    int r = mpci_hs_init(hs, role, o);
    if (r < 0)
        return mpci_err(errmsg, errlen, r, "cannot start the handshake: %s", mpconn_strerror(r));
    double armed = -1; /* the time left when SO_RCVTIMEO was last set */
    int readable = 0;
    while (mpci_hs_progress(hs, fd, readable, 1) == MPCI_AUTH_NEED_INPUT) {
        double left = deadline < 0 ? -1 : deadline - mpci_now();
        if (deadline >= 0 && left <= 0)
            return mpci_err(errmsg, errlen, -ETIMEDOUT,
                            "handshake with %s timed out (does the listener have no authkey?)",
                            address);
        if (mpci_hs_events(hs) & POLLOUT) {
            /* A full send buffer: wait for room, not for the peer. */
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, mpci_poll_ms(deadline)) < 0 && errno != EINTR)
                return mpci_err(errmsg, errlen, -errno, "handshake with %s: %s", address,
                                strerror(errno));
            readable = 0;
            continue;
        }
        if (left >= 0 && (armed < 0 || armed - left > REARM_SLACK)) {
            if ((r = mpci_sock_set_rcvtimeo(fd, left)) < 0)
                return mpci_err(errmsg, errlen, r, "handshake with %s: %s", address, strerror(-r));
            armed = left;
        }
        readable = 1;
    }
    if (hs->state == MPCI_AUTH_FAILED)
        return mpci_err(errmsg, errlen, hs->code, "authentication with %s failed: %s", address,
                        mpci_hs_errmsg(hs));
    return armed >= 0;
}

/* The connection's message without the prefix the handshake gave it. */
static const char *reason(const mpconn_conn *c)
{
    static const char prefix[] = "TLS handshake failed: ";
    const char *m = mpconn_conn_errmsg(c);
    return strncmp(m, prefix, sizeof prefix - 1) == 0 ? m + sizeof prefix - 1 : m;
}

/* A tls: address: the TLS handshake, then the authkey's inside it, both
 * within the handshake timeout. */
static int tls_client(mpconn_conn **out, int fd, int role, const mpci_addr *a, const char *address,
                      const struct mpconn_opts *opts, char *errmsg, size_t errlen)
{
    double deadline = mpci_deadline(opts->handshake_timeout);
    mpconn_conn *c;
    int r = mpci_conn_new(&c, fd, MPCONN_READABLE | MPCONN_WRITABLE, opts, MPCI_FD_INET);
    if (r < 0) {
        close(fd);
        return mpci_err(errmsg, errlen, r, "cannot set up the connection: %s", mpconn_strerror(r));
    }
    if ((r = mpci_conn_start_tls(c, opts->tls, a->host, deadline)) < 0) {
        if (r == -ETIMEDOUT)
            mpci_err(errmsg, errlen, r,
                     "TLS with %s failed: the handshake timed out (a listener without TLS?)",
                     address + 4);
        else
            mpci_err(errmsg, errlen, r, "TLS with %s failed: %s", address + 4, reason(c));
        mpconn_conn_free(c);
        return r;
    }
    if (opts->authkey) {
        mpci_hs hs;
        r = mpci_conn_handshake(c, role, opts, deadline, &hs);
        if (r < 0)
            mpci_err(errmsg, errlen, r, "authentication with %s failed: %s", address,
                     hs.state == MPCI_AUTH_FAILED ? mpci_hs_errmsg(&hs) : mpconn_strerror(r));
        mpci_hs_clear(&hs);
        if (r < 0) {
            mpconn_conn_free(c);
            return r;
        }
    } else {
        mpci_conn_set_check_first(c);
    }
    *out = c;
    return 0;
}

static int client(mpconn_conn **out, int role, const char *address, const mpconn_opts *opts,
                  char *errmsg, size_t errlen)
{
    struct mpconn_opts defaults;
    if (!opts) {
        mpci_opts_defaults(&defaults);
        opts = &defaults;
    }
    if (!address || !*address)
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR, "no address given");
    mpci_addr a;
    int r = mpci_addr_parse(&a, address, errmsg, errlen);
    if (r < 0)
        return r;
    if (a.tls && (r = mpci_tls_client_check(opts, address, errmsg, errlen)) < 0)
        return r;
    if (a.need_resolve && (r = mpci_addr_resolve(&a, errmsg, errlen)) < 0)
        return r;
    int fd = -1;
    if ((r = mpci_sock_connect(&a, address, opts->connect_timeout, &fd, errmsg, errlen)) < 0)
        return r;
    mpci_hs hs;
    int kind = a.family == AF_UNIX ? MPCI_FD_UNIX : MPCI_FD_INET;
    if (a.tls)
        return tls_client(out, fd, role, &a, address, opts, errmsg, errlen);
    if (opts->authkey) {
        r = handshake(fd, role, opts, address, &hs, errmsg, errlen);
        if (r < 0) {
            mpci_hs_clear(&hs);
            close(fd);
            return r;
        }
        if (r > 0)
            kind |= MPCI_FD_RCVTIMEO;
    }
    mpconn_conn *c;
    if ((r = mpci_conn_new(&c, fd, MPCONN_READABLE | MPCONN_WRITABLE, opts, kind)) < 0) {
        if (opts->authkey)
            mpci_hs_clear(&hs);
        close(fd);
        return mpci_err(errmsg, errlen, r, "cannot set up the connection: %s", mpconn_strerror(r));
    }
    if (opts->authkey) {
        if (hs.nleft)
            mpci_conn_prefill(c, hs.left, hs.nleft);
        mpci_hs_clear(&hs); /* after its bytes are the connection's */
    }
    if (!opts->authkey)
        mpci_conn_set_check_first(c);
    *out = c;
    return 0;
}

int mpci_tls_client_check(const struct mpconn_opts *opts, const char *address, char *errmsg,
                          size_t errlen)
{
    if (!opts->tls)
        return mpci_err(errmsg, errlen, MPCONN_ERR_TLSCONFIG,
                        "%s: a tls: address needs a TLS configuration (mpconn_opts_set_tls)",
                        address);
    if (mpci_tls_config_role(opts->tls) != MPCONN_TLS_CLIENT)
        return mpci_err(errmsg, errlen, MPCONN_ERR_TLSCONFIG,
                        "%s: a client needs a client TLS configuration, not a server's", address);
    return 0;
}

int mpconn_client(mpconn_conn **out, const char *address, const mpconn_opts *opts, char *errmsg,
                  size_t errlen)
{
    return client(out, MPCI_AUTH_CLIENT, address, opts, errmsg, errlen);
}

int mpci_test_client_serial(mpconn_conn **out, const char *address, const mpconn_opts *opts,
                            char *errmsg, size_t errlen)
{
    return client(out, MPCI_AUTH_CLIENT_SERIAL, address, opts, errmsg, errlen);
}
