/* Datagram sockets for the servers: the "udp:HOST:PORT" / "udp:[V6]:PORT"
 * and "unixgram:PATH" / "unixgram:@NAME" addresses, receiving with
 * MSG_TRUNC so a datagram longer than the buffer is told, never cut,
 * replies, and the socket of a client that expects them. The parser keeps the stream addresses'
 * rules (bracketed IPv6, a decimal port, '@' for the abstract namespace); it belongs with the
 * address parser of the stream listener once that has a datagram form. */
#define _GNU_SOURCE
#include "server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int bad(char *errmsg, size_t errlen, int code, const char *address, const char *why)
{
    if (errmsg && errlen)
        snprintf(errmsg, errlen, "address \"%s\": %s", address, why);
    return code;
}

static int parse_udp(const char *address, const char *rest, struct sockaddr_storage *ss,
                     socklen_t *sl, char *errmsg, size_t errlen)
{
    char host[256];
    const char *port;
    if (rest[0] == '[') {
        const char *end = strchr(rest, ']');
        if (!end || end[1] != ':')
            return bad(errmsg, errlen, MPCONN_ERR_ADDR, address, "expected [V6]:PORT");
        if ((size_t)(end - rest - 1) >= sizeof host)
            return bad(errmsg, errlen, MPCONN_ERR_ADDR, address, "host too long");
        memcpy(host, rest + 1, (size_t)(end - rest - 1));
        host[end - rest - 1] = 0;
        port = end + 2;
    } else {
        const char *colon = strrchr(rest, ':');
        if (!colon)
            return bad(errmsg, errlen, MPCONN_ERR_ADDR, address, "missing port");
        if (memchr(rest, ':', (size_t)(colon - rest)))
            return bad(errmsg, errlen, MPCONN_ERR_ADDR, address, "an IPv6 host goes in brackets");
        if ((size_t)(colon - rest) >= sizeof host)
            return bad(errmsg, errlen, MPCONN_ERR_ADDR, address, "host too long");
        memcpy(host, rest, (size_t)(colon - rest));
        host[colon - rest] = 0;
        port = colon + 1;
    }
    if (!host[0])
        return bad(errmsg, errlen, MPCONN_ERR_ADDR, address, "missing host");
    unsigned long p = 0;
    if (!*port || strlen(port) > 5)
        return bad(errmsg, errlen, MPCONN_ERR_ADDR, address, "port must be 0..65535");
    for (const char *c = port; *c; c++) {
        if (*c < '0' || *c > '9')
            return bad(errmsg, errlen, MPCONN_ERR_ADDR, address, "port must be 0..65535");
        p = p * 10 + (unsigned long)(*c - '0');
    }
    if (p > 65535)
        return bad(errmsg, errlen, MPCONN_ERR_ADDR, address, "port must be 0..65535");
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = rest[0] == '[' ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g != 0 || !ai) {
        if (errmsg && errlen)
            snprintf(errmsg, errlen, "address \"%s\": %s", address, gai_strerror(g));
        return MPCONN_ERR_ADDR;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *sl = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/* A socket file at path: stale (no socket answers there) is removed. */
static int clear_path(const char *address, const char *path, char *errmsg, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : bad(errmsg, errlen, -errno, address, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return bad(errmsg, errlen, -EEXIST, address, "a file that is not a socket is in the way");
    int probe = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return bad(errmsg, errlen, -errno, address, strerror(errno));
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    memcpy(un.sun_path, path, strlen(path));
    /* Only a refusal says nobody is bound there: anything else (a live
     * socket of either type, no permission) leaves the file alone. */
    int stale = connect(probe, (struct sockaddr *)&un, sizeof un) < 0 && errno == ECONNREFUSED;
    close(probe);
    if (!stale)
        return bad(errmsg, errlen, MPCONN_ERR_ADDRINUSE, address, "a live socket is bound there");
    unlink(path);
    return 0;
}

/* The socket address of a "udp:" or "unixgram:" address: 1 when address is
 * one (*path set for a socket file, else NULL), 0 when it is not,
 * negative when it does not parse. */
static int parse_dgram(const char *address, struct sockaddr_storage *ss, socklen_t *sl,
                       const char **path, char *errmsg, size_t errlen)
{
    memset(ss, 0, sizeof *ss);
    *path = NULL;
    if (strncmp(address, "udp:", 4) == 0) {
        int r = parse_udp(address, address + 4, ss, sl, errmsg, errlen);
        return r < 0 ? r : 1;
    }
    if (strncmp(address, "unixgram:", 9) != 0)
        return 0;
    const char *name = address + 9;
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    un->sun_family = AF_UNIX;
    size_t n = strlen(name);
    if (n == 0 || (name[0] == '@' && n == 1))
        return bad(errmsg, errlen, MPCONN_ERR_ADDR, address, "empty name");
    if (n >= sizeof un->sun_path)
        return bad(errmsg, errlen, MPCONN_ERR_ADDR, address, "name too long");
    if (name[0] == '@') {
        memcpy(un->sun_path + 1, name + 1, n - 1);
        *sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        memcpy(un->sun_path, name, n);
        *sl = (socklen_t)sizeof *un;
        *path = name;
    }
    return 1;
}

/* The socket file gets exactly mode. Linux gives a bound socket's file the
 * socket's own mode less the umask, so an fchmod before bind means the file
 * never has wider bits than asked; the bits the umask took are given back
 * here, on the file just bound (a socket file, and the one this socket
 * made: same inode as a stat right after bind). */
static int restore_mode(const char *address, const char *path, mode_t mode, char *errmsg,
                        size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return bad(errmsg, errlen, -errno, address, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return bad(errmsg, errlen, -EEXIST, address, "the socket file was replaced");
    if ((st.st_mode & 07777) != mode && fchmodat(AT_FDCWD, path, mode, 0) < 0)
        return bad(errmsg, errlen, -errno, address, strerror(errno));
    return 0;
}

int srv_dgram_open(mpconn_server *s, const char *address, char *errmsg, size_t errlen)
{
    if (!address)
        return 0;
    struct sockaddr_storage ss;
    socklen_t sl;
    const char *path;
    int r = parse_dgram(address, &ss, &sl, &path, errmsg, errlen);
    if (r <= 0)
        return r;
    if (path && (r = clear_path(address, path, errmsg, errlen)) < 0)
        return r;
    int mode = path ? mpconn_opts_mode(s->opts) : -1;
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return bad(errmsg, errlen, -errno, address, strerror(errno));
    int one = 1;
    if (ss.ss_family != AF_UNIX && mpconn_opts_reuse_address(s->opts))
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* Each Unix datagram then comes with its sender's credentials, bound
     * sender or not: the uid policy needs them, and so do the handlers. */
    if (ss.ss_family == AF_UNIX && setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0) {
        int e = errno;
        close(fd);
        return bad(errmsg, errlen, -e, address, strerror(e));
    }
    if (mode >= 0 && fchmod(fd, (mode_t)mode) < 0) {
        int e = errno;
        close(fd);
        return bad(errmsg, errlen, -e, address, strerror(e));
    }
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0) {
        int e = errno;
        close(fd);
        return bad(errmsg, errlen, e == EADDRINUSE ? MPCONN_ERR_ADDRINUSE : -e, address,
                   strerror(e));
    }
    if (mode >= 0 && (r = restore_mode(address, path, (mode_t)mode, errmsg, errlen)) < 0) {
        close(fd);
        unlink(path);
        return r;
    }
    if (path && !(s->unlink_path = strdup(path))) {
        close(fd);
        unlink(path);
        return bad(errmsg, errlen, -ENOMEM, address, "out of memory");
    }
    s->lfd = fd;
    s->family = ss.ss_family;
    s->abstract = ss.ss_family == AF_UNIX && address[9] == '@';
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    char text[SRV_PEER_MAX];
    if (getsockname(fd, (struct sockaddr *)&bound, &bl) == 0)
        srv_format_addr(&bound, bl, text, sizeof text);
    else
        snprintf(text, sizeof text, "%s", strchr(address, ':') + 1);
    snprintf(s->address, sizeof s->address, "%s:%s", ss.ss_family == AF_UNIX ? "unixgram" : "udp",
             text);
    return 1;
}

int mpconn_dgram_connect(int *fd, const char *address, char *errmsg, size_t errlen)
{
    *fd = -1;
    if (errmsg && errlen)
        errmsg[0] = 0;
    struct sockaddr_storage ss;
    socklen_t sl;
    const char *path;
    int r = parse_dgram(address, &ss, &sl, &path, errmsg, errlen);
    if (r == 0)
        return bad(errmsg, errlen, MPCONN_ERR_ADDR, address,
                   "not a datagram address (udp:HOST:PORT, unixgram:PATH or unixgram:@NAME)");
    if (r < 0)
        return r;
    int s = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return bad(errmsg, errlen, -errno, address, strerror(errno));
    /* A Unix datagram sender with no name cannot be answered: binding only
     * the family makes Linux choose a free abstract name (autobind). */
    struct sockaddr_un self = {.sun_family = AF_UNIX};
    if (ss.ss_family == AF_UNIX && bind(s, (struct sockaddr *)&self, sizeof(sa_family_t)) < 0) {
        int e = errno;
        close(s);
        return bad(errmsg, errlen, -e, address, strerror(e));
    }
    if (connect(s, (struct sockaddr *)&ss, sl) < 0) {
        int e = errno;
        close(s);
        return bad(errmsg, errlen, -e, address, strerror(e));
    }
    *fd = s;
    return 0;
}

/* The sender's credentials from a Unix datagram's control data. The
 * buffer has room for them alone, so a descriptor a sender attaches is
 * never installed here (the kernel closes what does not fit); one that
 * were is closed all the same. */
static void sender_creds(mpconn_request *r, struct msghdr *m)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET)
            continue;
        if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
            struct ucred cr;
            memcpy(&cr, CMSG_DATA(c), sizeof cr);
            r->pid = cr.pid;
            r->uid = cr.uid;
            r->gid = cr.gid;
        } else if (c->cmsg_type == SCM_RIGHTS) {
            size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < nfd; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof fd, sizeof fd);
                close(fd);
            }
        }
    }
}

int srv_dgram_recv(mpconn_server *s, mpconn_request *r, unsigned char *buf, size_t cap)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct ucred))];
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr m = {.msg_name = &r->ss,
                       .msg_namelen = sizeof r->ss,
                       .msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = ctl.buf,
                       .msg_controllen = sizeof ctl.buf};
    memset(&r->ss, 0, sizeof r->ss);
    ssize_t n;
    /* recvfrom where there is no control data to take: it is measurably
     * cheaper than recvmsg per datagram. */
    if (s->family == AF_UNIX) {
        n = recvmsg(s->lfd, &m, MSG_TRUNC | MSG_CMSG_CLOEXEC);
        r->sl = m.msg_namelen;
    } else {
        r->sl = sizeof r->ss;
        n = recvfrom(s->lfd, buf, cap, MSG_TRUNC, (struct sockaddr *)&r->ss, &r->sl);
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        /* An ICMP error of an earlier reply (UDP) belongs to no request. */
        if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH)
            return 2;
        int e = errno;
        srv_error(s, NULL, -e, "receive on %s: %s", s->address, strerror(e));
        return -e;
    }
    r->server = s;
    r->fd = s->lfd;
    r->conn = NULL;
    r->async = NULL;
    r->user = NULL;
    r->pid = -1;
    r->uid = (uid_t)-1;
    r->gid = (gid_t)-1;
    r->peer_done = 0; /* formatted only when asked for */
    if (s->family == AF_UNIX) {
        sender_creds(r, &m);
        /* The stream listeners' uid policy; a datagram has no handshake. */
        if (!mpconn_opts_peer_allowed(s->opts, s->abstract, 0, r->uid)) {
            srv_error(s, r, MPCONN_ERR_PEER,
                      "datagram from pid %ld uid %ld on %s: uid not allowed: dropped", (long)r->pid,
                      (long)r->uid, s->address);
            return 2;
        }
    }
    srv_request_seen(s);
    if ((size_t)n > cap) {
        r->dgram = NULL;
        r->dgram_len = 0;
        srv_error(s, r, MPCONN_ERR_MSGSIZE,
                  "datagram of %zd bytes from %s is longer than the %zu-byte buffer: dropped", n,
                  srv_peer_or(r, "an unbound sender"), cap);
        return 2;
    }
    r->dgram = buf;
    r->dgram_len = (size_t)n;
    return 1;
}

int mpconn_request_reply(mpconn_request *r, const void *buf, size_t len)
{
    mpconn_server *s = r->server;
    if (!s->dgram)
        return -EINVAL;
    /* The kernel gives an unbound sender's address as the family alone, or
     * as nothing at all. */
    if (s->family == AF_UNIX && r->sl <= offsetof(struct sockaddr_un, sun_path)) {
        srv_error(s, r, MPCONN_ERR_ADDR,
                  "reply to a Unix datagram sender bound to no name: it cannot be answered");
        return MPCONN_ERR_ADDR;
    }
    ssize_t n = sendto(r->fd, buf, len, MSG_NOSIGNAL, (struct sockaddr *)&r->ss, r->sl);
    if (n < 0) {
        int e = errno;
        srv_error(s, r, -e, "reply to %s: %s", srv_peer(r), strerror(e));
        return -e;
    }
    return 0;
}
