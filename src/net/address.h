/* mpconn's address syntax ("host:port", "[v6]:port", "tls:host:port", a
 * Unix path, "@name" for the abstract namespace) to and from socket
 * addresses. */
#ifndef MPCI_NET_ADDRESS_H
#define MPCI_NET_ADDRESS_H

#include <stddef.h>
#include <sys/socket.h>

typedef struct mpci_addr {
    int family; /* AF_INET, AF_INET6, AF_UNIX */
    struct sockaddr_storage sa;
    socklen_t salen;
    int abstract;     /* AF_UNIX in the abstract namespace */
    char host[256];   /* host part as written (for name resolution) */
    int need_resolve; /* host is a name, not a numeric address */
    int tls;          /* "tls:HOST:PORT": TLS over TCP */
} mpci_addr;

/* Parses mpconn's address syntax. Names are not resolved here. */
int mpci_addr_parse(mpci_addr *a, const char *text, char *errmsg, size_t errlen);
/* Formats a socket address in mpconn syntax. */
void mpci_addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t cap);
/* A peer's own address, as CPython's last_accepted gives it: as above, but
 * "" for a Unix peer bound to no name (most are). */
void mpci_addr_format_peer(const struct sockaddr *sa, socklen_t len, char *out, size_t cap);
/* Fills a->sa for a need_resolve host with getaddrinfo (IPv4, as CPython's
 * (host, port) addresses are; first result). No-op for other addresses.
 * Errors name the host. */
int mpci_addr_resolve(mpci_addr *a, char *errmsg, size_t errlen);

#endif
