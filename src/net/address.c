/* mpconn's address strings <-> socket addresses: "HOST:PORT", "[V6]:PORT",
 * paths, "@abstract" names, "tcp:"/"unix:" prefixes; and name resolution for
 * hosts given by name. */
#include "net/address.h"
#include "base/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define SUN_PATH_CAP (sizeof(((struct sockaddr_un *)0)->sun_path))

static int parse_port(const char *s, const char *text, char *errmsg, size_t errlen, uint16_t *out)
{
    unsigned long v = 0;
    size_t n = strlen(s);
    if (n == 0)
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR, "address \"%s\": missing port", text);
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR,
                            "address \"%s\": port \"%s\" is not a decimal number", text, s);
        v = v * 10 + (unsigned long)(s[i] - '0');
        if (v > 65535)
            return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR,
                            "address \"%s\": port %s is out of range 0..65535", text, s);
    }
    *out = (uint16_t)v;
    return 0;
}

/* Host names as DNS and /etc/hosts know them; anything else is a typo that
 * would otherwise surface as a puzzling resolver error. */
static int valid_hostname(const char *h)
{
    if (!*h)
        return 0;
    for (; *h; h++) {
        char c = *h;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return 1;
}

static int parse_unix(mpci_addr *a, const char *name, const char *text, char *errmsg, size_t errlen)
{
    struct sockaddr_un *su = (struct sockaddr_un *)&a->sa;
    su->sun_family = AF_UNIX;
    a->family = AF_UNIX;
    size_t n = strlen(name);
    if (name[0] == '@') {
        /* Abstract: a leading NUL, then exactly the name; its length is part
         * of the address, so no terminator is counted. */
        if (n == 1)
            return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR, "address \"%s\": empty abstract name",
                            text);
        if (n > SUN_PATH_CAP)
            return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR,
                            "address \"%s\": abstract name longer than %zu bytes", text,
                            SUN_PATH_CAP - 1);
        su->sun_path[0] = 0;
        memcpy(su->sun_path + 1, name + 1, n - 1);
        a->salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        a->abstract = 1;
        return 0;
    }
    if (n == 0)
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR, "address \"%s\": empty socket path", text);
    if (n >= SUN_PATH_CAP)
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR,
                        "address \"%s\": socket path longer than %zu bytes", text,
                        SUN_PATH_CAP - 1);
    memcpy(su->sun_path, name, n + 1);
    a->salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

static int parse_v6(mpci_addr *a, const char *s, const char *text, char *errmsg, size_t errlen)
{
    const char *close = strchr(s, ']');
    if (!close)
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR, "address \"%s\": missing ']'", text);
    if (close[1] != ':')
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR,
                        "address \"%s\": expected \":PORT\" after ']'", text);
    size_t hlen = (size_t)(close - s - 1);
    if (hlen == 0 || hlen >= sizeof a->host)
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR, "address \"%s\": bad IPv6 address", text);
    memcpy(a->host, s + 1, hlen);
    a->host[hlen] = 0;
    uint16_t port;
    int r = parse_port(close + 2, text, errmsg, errlen, &port);
    if (r < 0)
        return r;

    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;
    char addr[sizeof a->host];
    snprintf(addr, sizeof addr, "%s", a->host);
    char *zone = strchr(addr, '%');
    if (zone) {
        /* Link-local addresses carry their interface: fe80::1%eth0. */
        *zone++ = 0;
        char *end;
        unsigned long idx = strtoul(zone, &end, 10);
        if (*zone && *end == 0)
            sin6->sin6_scope_id = (uint32_t)idx;
        else if (*zone && (idx = if_nametoindex(zone)) != 0)
            sin6->sin6_scope_id = (uint32_t)idx;
        else
            return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR,
                            "address \"%s\": unknown network interface \"%s\"", text, zone);
    }
    if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1)
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR,
                        "address \"%s\": \"%s\" is not an IPv6 address", text, a->host);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    a->family = AF_INET6;
    a->salen = sizeof *sin6;
    return 0;
}

static int parse_tcp(mpci_addr *a, const char *s, const char *text, char *errmsg, size_t errlen)
{
    if (s[0] == '[')
        return parse_v6(a, s, text, errmsg, errlen);
    const char *colon = strrchr(s, ':');
    if (!colon)
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR, "address \"%s\": expected HOST:PORT",
                        text);
    size_t hlen = (size_t)(colon - s);
    if (hlen == 0)
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR, "address \"%s\": missing host before ':'",
                        text);
    if (hlen >= sizeof a->host)
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR, "address \"%s\": host name too long",
                        text);
    memcpy(a->host, s, hlen);
    a->host[hlen] = 0;
    if (strchr(a->host, ':'))
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR,
                        "address \"%s\": an IPv6 address needs brackets: [V6]:PORT", text);
    uint16_t port;
    int r = parse_port(colon + 1, text, errmsg, errlen, &port);
    if (r < 0)
        return r;

    struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    a->family = AF_INET;
    a->salen = sizeof *sin;
    if (inet_pton(AF_INET, a->host, &sin->sin_addr) == 1)
        return 0;
    if (!valid_hostname(a->host))
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR,
                        "address \"%s\": \"%s\" is neither an IPv4 address nor a host name", text,
                        a->host);
    a->need_resolve = 1;
    return 0;
}

int mpci_addr_parse(mpci_addr *a, const char *text, char *errmsg, size_t errlen)
{
    memset(a, 0, sizeof *a);
    if (!text || !*text)
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR, "empty address");
    if (strncmp(text, "\\\\", 2) == 0)
        return mpci_err(errmsg, errlen, MPCONN_ERR_NOTSUP,
                        "address \"%s\": named pipes are not available on this platform", text);
    if (strncmp(text, "unix:", 5) == 0)
        return parse_unix(a, text + 5, text, errmsg, errlen);
    if (strncmp(text, "tcp:", 4) == 0)
        return parse_tcp(a, text + 4, text, errmsg, errlen);
    if (text[0] == '@' || strchr(text, '/'))
        return parse_unix(a, text, text, errmsg, errlen);
    if (text[0] == '[' || strchr(text, ':'))
        return parse_tcp(a, text, text, errmsg, errlen);
    return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR,
                    "address \"%s\": expected HOST:PORT, [V6]:PORT, a path containing '/', "
                    "@NAME, or unix:NAME",
                    text);
}

int mpconn_address_kind(const char *address, char *errmsg, size_t errlen)
{
    mpci_addr a;
    int r = mpci_addr_parse(&a, address, errmsg, errlen);
    if (r < 0)
        return r;
    if (a.family != AF_UNIX)
        return MPCONN_ADDR_TCP;
    return a.abstract ? MPCONN_ADDR_ABSTRACT : MPCONN_ADDR_UNIX;
}

int mpci_addr_resolve(mpci_addr *a, char *errmsg, size_t errlen)
{
    if (!a->need_resolve)
        return 0;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    /* parse_tcp left the port in place for a name too */
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)ntohs(((struct sockaddr_in *)&a->sa)->sin_port));
    int r = getaddrinfo(a->host, port, &hints, &res);
    if (r != 0) {
        int code = r == EAI_MEMORY ? -ENOMEM : r == EAI_SYSTEM ? -errno : MPCONN_ERR_ADDR;
        if (code == 0)
            code = MPCONN_ERR_ADDR;
        return mpci_err(errmsg, errlen, code, "cannot resolve host \"%s\": %s", a->host,
                        r == EAI_SYSTEM ? mpconn_strerror(code) : gai_strerror(r));
    }
    if (!res || res->ai_addrlen > sizeof a->sa) {
        freeaddrinfo(res);
        return mpci_err(errmsg, errlen, MPCONN_ERR_ADDR, "cannot resolve host \"%s\": no address",
                        a->host);
    }
    memcpy(&a->sa, res->ai_addr, res->ai_addrlen);
    a->salen = (socklen_t)res->ai_addrlen;
    a->family = res->ai_family;
    a->need_resolve = 0;
    freeaddrinfo(res);
    return 0;
}

static void format_unix(const struct sockaddr_un *su, socklen_t len, char *out, size_t cap)
{
    size_t off = offsetof(struct sockaddr_un, sun_path);
    if (len <= off) {
        snprintf(out, cap, "unix:");
        return;
    }
    size_t n = len - off;
    if (n > SUN_PATH_CAP)
        n = SUN_PATH_CAP;
    if (su->sun_path[0] == 0) {
        /* Abstract names may hold any byte; shown as ss(8) does, NULs as '@'. */
        char name[SUN_PATH_CAP + 1];
        size_t k = 0;
        for (size_t i = 1; i < n; i++)
            name[k++] = su->sun_path[i] ? su->sun_path[i] : '@';
        name[k] = 0;
        snprintf(out, cap, "@%s", name);
        return;
    }
    char path[SUN_PATH_CAP + 1];
    memcpy(path, su->sun_path, n);
    path[n] = 0;
    /* A path without '/' would not parse back as a path. */
    if (strchr(path, '/'))
        snprintf(out, cap, "%s", path);
    else if (path[0] == '@')
        snprintf(out, cap, "./%s", path);
    else
        snprintf(out, cap, "unix:%s", path);
}

void mpci_addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t cap)
{
    if (!out || cap == 0)
        return;
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    if (!sa || len < (socklen_t)sizeof(sa_family_t)) {
        snprintf(out, cap, "?");
        return;
    }
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        if (len < (socklen_t)sizeof *sin || !inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host))
            break;
        snprintf(out, cap, "%s:%u", host, (unsigned)ntohs(sin->sin_port));
        return;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        if (len < (socklen_t)sizeof *sin6 ||
            !inet_ntop(AF_INET6, &sin6->sin6_addr, host, INET6_ADDRSTRLEN))
            break;
        if (sin6->sin6_scope_id) {
            char ifname[IF_NAMESIZE];
            size_t hl = strlen(host);
            if (if_indextoname(sin6->sin6_scope_id, ifname))
                snprintf(host + hl, sizeof host - hl, "%%%s", ifname);
            else
                snprintf(host + hl, sizeof host - hl, "%%%u", (unsigned)sin6->sin6_scope_id);
        }
        snprintf(out, cap, "[%s]:%u", host, (unsigned)ntohs(sin6->sin6_port));
        return;
    }
    case AF_UNIX: format_unix((const struct sockaddr_un *)sa, len, out, cap); return;
    default: break;
    }
    snprintf(out, cap, "(address family %d)", (int)sa->sa_family);
}

void mpci_addr_format_peer(const struct sockaddr *sa, socklen_t len, char *out, size_t cap)
{
    if (sa && sa->sa_family == AF_UNIX && len <= offsetof(struct sockaddr_un, sun_path)) {
        if (out && cap)
            out[0] = 0;
        return;
    }
    mpci_addr_format(sa, len, out, cap);
}
