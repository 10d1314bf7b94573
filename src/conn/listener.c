/* mpconn_listener: binds an address, accepts peers and authenticates them.
 * Handshakes run side by side on non-blocking fds under one poll(), so a
 * slow or silent peer delays nobody; accept() hands out only peers that
 * passed. */
#define _GNU_SOURCE /* accept4 */
#include "conn/listener_internal.h"
#include "conn/conn_internal.h"
#include "conn/handshake_io.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/random.h"
#include "net/address.h"
#include "net/socket.h"
#include "tls/tls_transport.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Handshakes under way at once unless mpconn_listener_set_max_handshakes
 * says otherwise: as many as the async listener's. */
#define DEFAULT_MAX_HANDSHAKES 4096
/* How long accepting stops when the process is out of descriptors and no
 * handshake is left to make room. */
#define EMFILE_PAUSE 0.1

/* Who a peer is; turned into text only when somebody asks. */
typedef struct peer_id {
    struct sockaddr_storage ss;
    socklen_t sl;
    pid_t pid;
    uid_t uid;
    gid_t gid;
} peer_id;

typedef struct pending {
    mpci_hs hs;
    int fd;
    double deadline; /* of the handshake; < 0: none */
    uint64_t seq;    /* arrival order: the smallest is dropped first at the cap */
    peer_id who;
    /* A TLS listener's peer: its session (the authkey handshake runs inside
     * it), and whether the TLS handshake is still under way. */
    mpci_tls_transport *tls;
    int tls_phase;
} pending;

struct mpconn_listener {
    int fd;
    mpci_addr addr;
    struct mpconn_opts opts;
    char address[160];
    char errmsg[MPCI_ERRMSG_MAX];
    /* A socket file we created, removed on close if it is still ours. */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t dev;
    ino_t ino;
    char tmpdir[64]; /* the temporary directory made for an unnamed listener */
    /* Handshakes under way, in no order (removal swaps the last in); seq
     * finds the oldest, which is only looked for at the cap. */
    pending **pend;
    size_t npend, pend_cap, max_hs;
    uint64_t next_seq;
    double accept_pause; /* out of descriptors: not accepting before this; 0: accepting */
    peer_id last;
    int has_last;
    char last_text[224]; /* last, formatted by mpconn_listener_last_accepted */
    mpconn_reject_cb on_reject;
    void *on_reject_data;
};

static int lerr(mpconn_listener *l, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int lerr(mpconn_listener *l, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mpci_verr(l->errmsg, sizeof l->errmsg, code, fmt, ap);
    va_end(ap);
    return code;
}

static void reject(mpconn_listener *l, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reject(mpconn_listener *l, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mpci_verr(l->errmsg, sizeof l->errmsg, code, fmt, ap);
    va_end(ap);
    if (l->on_reject)
        l->on_reject(l->on_reject_data, code, l->errmsg);
}

/* Which socket, if any, is bound to the socket file mine (lstat of path)?
 * /proc/net/unix lists every Unix socket, of any type and in any state,
 * with the path it was bound to. Asking this way leaves a live socket
 * alone: a probing connect() would land in a listener's backlog, and a
 * CPython listener fails its accept() on it. Returns NULL when none is (the
 * file is stale), else a description of what is bound there. */
static const char *bound_socket(const char *path, const struct stat *mine, char *buf, size_t cap)
{
    FILE *f = fopen("/proc/net/unix", "re");
    if (!f)
        return "perhaps a socket (/proc/net/unix cannot be read to tell)";
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char line[512];
    const char *found = NULL;
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long flags, type;
        int off = -1;
        if (sscanf(line, "%*s %*s %*s %lx %lx %*s %*s %n", &flags, &type, &off) != 2 || off < 0)
            continue;
        char *bound = line + off;
        bound[strcspn(bound, "\n")] = 0;
        if (!*bound || bound[0] == '@')
            continue;
        const char *bb = strrchr(bound, '/');
        bb = bb ? bb + 1 : bound;
        if (strcmp(bb, base) != 0)
            continue;
        struct stat st;
        /* A relative path bound by another process cannot be resolved from
         * here: a socket with the same file name counts as bound to it. So
         * does one bound by this very name, even if its file has moved. */
        if (bound[0] == '/' && strcmp(bound, path) != 0 &&
            (stat(bound, &st) != 0 || st.st_dev != mine->st_dev || st.st_ino != mine->st_ino))
            continue;
        const char *kind = type == SOCK_DGRAM       ? "datagram"
                           : type == SOCK_SEQPACKET ? "seqpacket"
                                                    : "stream";
        if (flags & 0x10000) /* __SO_ACCEPTCON: listening */
            snprintf(buf, cap, "a listening %s socket", kind);
        else if (type == SOCK_DGRAM)
            snprintf(buf, cap, "a datagram socket");
        else
            snprintf(buf, cap, "a %s socket (bound, not listening yet)", kind);
        found = buf;
    }
    fclose(f);
    return found;
}

/* What a non-socket in the way is, for the message. */
static const char *file_kind(mode_t m)
{
    return S_ISREG(m) ? "a regular file" : S_ISFIFO(m) ? "a FIFO" : "a device file";
}

/* bind() found path taken. Returns 0 when path may be tried again: no
 * socket of any kind was bound to it (stale) and it is gone, or it went
 * away by itself. Anything else is refused, saying what is there, and left
 * as it is: symlinks are neither followed nor removed. */
static int clear_stale(mpconn_listener *l, const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : lerr(l, -errno, "cannot bind %s: %s", path, strerror(errno));
    if (S_ISLNK(st.st_mode)) {
        char to[256];
        ssize_t n = readlink(path, to, sizeof to - 1);
        to[n > 0 ? n : 0] = 0;
        struct stat target;
        return lerr(l, -EEXIST, "cannot bind %s: a symbolic link is there (to %s%s); not followed",
                    path, to, stat(path, &target) < 0 ? ", dangling" : "");
    }
    if (S_ISDIR(st.st_mode))
        return lerr(l, -EISDIR, "cannot bind %s: a directory is there", path);
    if (!S_ISSOCK(st.st_mode))
        return lerr(l, -EEXIST, "cannot bind %s: %s is there, not a socket; it is left alone", path,
                    file_kind(st.st_mode));
    char what[64];
    const char *who = bound_socket(path, &st, what, sizeof what);
    if (who)
        return lerr(l, MPCONN_ERR_ADDRINUSE, "cannot bind %s: address in use: %s is bound to it",
                    path, who);
    /* Stale. It is moved aside under a fresh name first and removed only if
     * what was moved is the file found stale, and still no socket is bound
     * by this name (an inode number can be reused at once): a socket that
     * another process bound there meanwhile is put back, not deleted. */
    char aside[sizeof l->path + 40];
    uint8_t rnd[4] = {0};
    mpci_random(rnd, sizeof rnd);
    snprintf(aside, sizeof aside, "%s.stale-%ld-%02x%02x%02x%02x", path, (long)getpid(), rnd[0],
             rnd[1], rnd[2], rnd[3]);
    if (rename(path, aside) < 0)
        return errno == ENOENT ? 0 : lerr(l, -errno, "cannot bind %s: %s", path, strerror(errno));
    struct stat moved;
    if (lstat(aside, &moved) == 0 && moved.st_dev == st.st_dev && moved.st_ino == st.st_ino &&
        !bound_socket(path, &moved, what, sizeof what)) {
        unlink(aside);
        return 0;
    }
    if (link(aside, path) == 0)
        unlink(aside);
    return 0;
}

/* With a mode, the socket file is born with it: on Linux bind() gives the
 * file the socket inode's mode less the umask, so fchmod() before bind()
 * leaves no moment with wider permissions (changing the umask instead
 * would race with other threads). Bits the umask took are given back
 * before listen(), through an O_PATH descriptor (never a symlink). */
static int set_mode(mpconn_listener *l)
{
    mode_t want = (mode_t)l->opts.mode;
    struct stat st;
    if (lstat(l->path, &st) < 0)
        return lerr(l, -errno, "cannot set mode of %s: %s", l->path, strerror(errno));
    if ((st.st_mode & 07777) == want)
        return 0;
    int pf = open(l->path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (pf < 0)
        return lerr(l, -errno, "cannot set mode of %s: %s", l->path, strerror(errno));
    char proc[48];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", pf);
    int r = 0;
    if (fstat(pf, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_dev != l->dev || st.st_ino != l->ino)
        r = lerr(l, -EEXIST, "cannot set mode of %s: the file was replaced", l->path);
    else if (chmod(proc, want) < 0)
        r = lerr(l, -errno, "cannot set mode of %s: %s", l->path, strerror(errno));
    close(pf);
    return r;
}

static int bind_unix(mpconn_listener *l)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)&l->addr.sa;
    if (!l->addr.abstract && l->opts.mode >= 0 && fchmod(l->fd, (mode_t)l->opts.mode) < 0)
        return lerr(l, -errno, "cannot set mode of %s: %s", l->address, strerror(errno));
    for (int attempt = 0;; attempt++) {
        if (bind(l->fd, (const struct sockaddr *)&l->addr.sa, l->addr.salen) == 0)
            break;
        int e = errno;
        if (e != EADDRINUSE)
            return lerr(l, -e, "cannot bind %s: %s", l->address, strerror(e));
        if (l->addr.abstract)
            return lerr(l, MPCONN_ERR_ADDRINUSE,
                        "cannot bind %s: address in use: a socket is bound to this abstract name",
                        l->address);
        if (attempt == 3)
            return lerr(l, MPCONN_ERR_ADDRINUSE, "cannot bind %s: the path keeps being taken",
                        l->address);
        int r = clear_stale(l, un->sun_path);
        if (r < 0)
            return r;
    }
    if (l->addr.abstract)
        return 0;
    struct stat st;
    snprintf(l->path, sizeof l->path, "%s", un->sun_path);
    if (lstat(l->path, &st) == 0) {
        l->dev = st.st_dev;
        l->ino = st.st_ino;
    }
    return l->opts.mode >= 0 ? set_mode(l) : 0;
}

static void remove_socket_file(mpconn_listener *l)
{
    struct stat st;
    if (l->path[0] && lstat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
        unlink(l->path);
    l->path[0] = 0;
    if (l->tmpdir[0])
        rmdir(l->tmpdir);
    l->tmpdir[0] = 0;
}

static int temp_address(mpconn_listener *l, char *buf, size_t cap)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base || strlen(base) > 40)
        base = "/tmp";
    snprintf(l->tmpdir, sizeof l->tmpdir, "%s/mpconn-XXXXXX", base);
    if (!mkdtemp(l->tmpdir)) {
        int e = errno;
        l->tmpdir[0] = 0;
        return lerr(l, -e, "cannot create a temporary directory in %s: %s", base, strerror(e));
    }
    snprintf(buf, cap, "%s/listener", l->tmpdir);
    return 0;
}

/* A tls: listener needs a server config that can work: an engine made
 * now says so at once (and makes the config final), not at the first peer. */
static int check_tls(mpconn_listener *l)
{
    if (!l->opts.tls)
        return lerr(l, MPCONN_ERR_TLSCONFIG,
                    "%s: a tls: address needs a TLS configuration (mpconn_opts_set_tls)",
                    l->address);
    if (mpci_tls_config_role(l->opts.tls) != MPCONN_TLS_SERVER)
        return lerr(l, MPCONN_ERR_TLSCONFIG,
                    "%s: a listener needs a server TLS configuration, not a client's", l->address);
    mpconn_tls *e;
    int r = mpconn_tls_new(&e, l->opts.tls, NULL);
    if (r == MPCONN_ERR_TLSCONFIG)
        return lerr(l, r, "%s: %s", l->address, mpconn_tls_config_errmsg(l->opts.tls));
    if (r < 0)
        return lerr(l, r, "%s: cannot start TLS: %s", l->address, mpconn_strerror(r));
    mpconn_tls_free(e);
    return 0;
}

static int open_socket(mpconn_listener *l, const char *address)
{
    char tmp[128];
    int r;
    if (l->opts.authkey && !l->opts.allow_md5 &&
        (strcmp(l->opts.digest, "md5") == 0 || strcmp(l->opts.digest, "legacy") == 0))
        return lerr(l, -EINVAL, "the %s challenge needs MD5, which these options refuse",
                    l->opts.digest);
    if (!address || !*address) {
        if ((r = temp_address(l, tmp, sizeof tmp)) < 0)
            return r;
        address = tmp;
    }
    snprintf(l->address, sizeof l->address, "%s", address);
    if ((r = mpci_addr_parse(&l->addr, address, l->errmsg, sizeof l->errmsg)) < 0)
        return r;
    if (l->addr.need_resolve && (r = mpci_addr_resolve(&l->addr, l->errmsg, sizeof l->errmsg)) < 0)
        return r;
    if (l->addr.tls && (r = check_tls(l)) < 0)
        return r;
    l->fd = socket(l->addr.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (l->fd < 0)
        return lerr(l, -errno, "cannot create a socket for %s: %s", address, strerror(errno));
    if (l->addr.family == AF_UNIX) {
        if ((r = bind_unix(l)) < 0)
            return r;
    } else {
        int one = 1;
        if (l->opts.reuse_address)
            setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* Accepted sockets inherit it (as a client's, see mpci_sock_connect):
         * no system call per connection. */
        setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (bind(l->fd, (const struct sockaddr *)&l->addr.sa, l->addr.salen) < 0) {
            int e = errno;
            return lerr(l, e == EADDRINUSE ? MPCONN_ERR_ADDRINUSE : -e, "cannot bind %s: %s",
                        address, strerror(e));
        }
    }
    if (listen(l->fd, l->opts.backlog) < 0)
        return lerr(l, -errno, "cannot listen on %s: %s", address, strerror(errno));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (l->addr.family != AF_UNIX && getsockname(l->fd, (struct sockaddr *)&ss, &sl) == 0) {
        size_t pre = l->addr.tls ? 4 : 0; /* the address a client is given */
        memcpy(l->address, "tls:", pre);
        mpci_addr_format((struct sockaddr *)&ss, sl, l->address + pre, sizeof l->address - pre);
    } else if (l->addr.family == AF_UNIX)
        mpci_addr_format((struct sockaddr *)&l->addr.sa, l->addr.salen, l->address,
                         sizeof l->address);
    return 0;
}

int mpconn_listener_open(mpconn_listener **out, const char *address, const mpconn_opts *opts,
                         char *errmsg, size_t errlen)
{
    mpconn_listener *l = calloc(1, sizeof *l);
    if (!l)
        return mpci_err(errmsg, errlen, -ENOMEM, "out of memory");
    l->fd = -1;
    l->max_hs = DEFAULT_MAX_HANDSHAKES;
    mpci_opts_defaults(&l->opts);
    int r = opts ? mpci_opts_copy(&l->opts, opts) : 0;
    if (r == 0)
        r = open_socket(l, address);
    if (r < 0) {
        mpci_copy_msg(errmsg, errlen, r == -ENOMEM && !l->errmsg[0] ? "out of memory" : l->errmsg);
        mpconn_listener_free(l);
        return r;
    }
    *out = l;
    return 0;
}

static void drop_pending(mpconn_listener *l, size_t i)
{
    pending *p = l->pend[i];
    close(p->fd);
    mpci_tlst_free(p->tls);
    mpci_hs_clear(&p->hs);
    free(p);
    l->pend[i] = l->pend[--l->npend];
}

void mpconn_listener_free(mpconn_listener *l)
{
    if (!l)
        return;
    while (l->npend)
        drop_pending(l, l->npend - 1);
    free(l->pend);
    if (l->fd >= 0)
        close(l->fd);
    remove_socket_file(l);
    mpci_opts_clear(&l->opts);
    free(l);
}

const char *mpconn_listener_address(const mpconn_listener *l)
{
    return l->address;
}
int mpconn_listener_fileno(const mpconn_listener *l)
{
    return l->fd;
}
const char *mpconn_listener_errmsg(const mpconn_listener *l)
{
    return l->errmsg;
}

/* The peer's own address in mpconn syntax, as CPython's last_accepted
 * has it: a Unix peer's bound name, "" for the usual peer bound to none. */
static void peer_address(const peer_id *w, char *buf, size_t cap)
{
    mpci_addr_format_peer((const struct sockaddr *)&w->ss, w->sl, buf, cap);
}

/* How messages name a peer. A Unix peer rarely has a name of its own, so
 * it goes by pid and uid, with the listener's address after "on": the
 * message then reads as about the peer, not about the listener. */
static const char *peer_text(const mpconn_listener *l, const peer_id *w, char *buf, size_t cap)
{
    char name[sizeof l->address];
    peer_address(w, name, sizeof name);
    if (l->addr.family == AF_UNIX)
        snprintf(buf, cap, "peer pid %ld uid %ld%s%s on %s", (long)w->pid, (long)w->uid,
                 name[0] ? " at " : "", name, l->address);
    else
        snprintf(buf, cap, "peer %s", name);
    return buf;
}

const char *mpconn_listener_last_accepted(const mpconn_listener *l, pid_t *pid, uid_t *uid,
                                          gid_t *gid)
{
    if (pid)
        *pid = l->has_last ? l->last.pid : -1;
    if (uid)
        *uid = l->has_last ? l->last.uid : (uid_t)-1;
    if (gid)
        *gid = l->has_last ? l->last.gid : (gid_t)-1;
    if (!l->has_last)
        return "";
    /* Formatted here rather than at every accept: most servers never ask.
     * The text is the listener's own storage, so it is written through a
     * non-const pointer; the listener itself was never const. */
    mpconn_listener *m = (mpconn_listener *)l;
    peer_address(&l->last, m->last_text, sizeof m->last_text);
    return m->last_text;
}

void mpconn_listener_on_reject(mpconn_listener *l, mpconn_reject_cb cb, void *data)
{
    l->on_reject = cb;
    l->on_reject_data = data;
}

int mpconn_listener_set_max_handshakes(mpconn_listener *l, size_t n)
{
    if (n == 0)
        return -EINVAL;
    l->max_hs = n;
    return 0;
}

/* The rule is mpconn_opts_peer_allowed's, which the servers apply too. */
static int policy_needs_uid(const mpconn_listener *l)
{
    return l->addr.family == AF_UNIX &&
           mpci_opts_uid_decides(&l->opts, l->addr.abstract, l->opts.authkey != NULL);
}

static int peer_allowed(mpconn_listener *l, const pending *p)
{
    return l->addr.family != AF_UNIX ||
           mpconn_opts_peer_allowed(&l->opts, l->addr.abstract, l->opts.authkey != NULL,
                                    p->who.uid);
}

static int make_conn(mpconn_listener *l, pending *p, mpconn_conn **out)
{
    mpconn_conn *c;
    int kind = l->addr.family == AF_UNIX ? MPCI_FD_UNIX : MPCI_FD_INET;
    if (p->tls)
        kind |= MPCI_FD_NONBLOCK;
    int r = mpci_conn_new(&c, p->fd, MPCONN_READABLE | MPCONN_WRITABLE, &l->opts, kind);
    if (r < 0)
        return r;
    if (p->tls) {
        mpci_conn_adopt_tls(c, p->tls);
        p->tls = NULL;
    }
    if (p->hs.nleft && (r = mpci_conn_prefill(c, p->hs.left, p->hs.nleft)) < 0) {
        mpconn_conn_free(c);
        return r;
    }
    mpci_conn_prefill_fd(c, p->hs.has_left_fd ? p->hs.left_fd : -1, p->hs.dropped_fds);
    p->hs.has_left_fd = 0;
    l->last = p->who;
    l->has_last = 1;
    *out = c;
    return 0;
}

/* A TLS peer's entry: its engine, and the TLS handshake first, on a
 * non-blocking fd, within the handshake timeout (authkey or not). */
static int start_tls(mpconn_listener *l, pending *p)
{
    char peer[2 * sizeof l->address];
    p->deadline = mpci_deadline(l->opts.handshake_timeout);
    int fl = fcntl(p->fd, F_GETFL);
    mpconn_tls *e;
    int r = fl < 0 || fcntl(p->fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
    if (r == 0)
        r = mpconn_tls_new(&e, l->opts.tls, NULL);
    if (r == 0)
        r = mpci_tlst_new(&p->tls, p->fd, 1, e);
    if (r < 0) {
        reject(l, r, "cannot start TLS with %s: %s", peer_text(l, &p->who, peer, sizeof peer),
               mpconn_strerror(r));
        return r;
    }
    p->tls_phase = 1;
    p->hs.state = MPCI_AUTH_NEED_INPUT;
    return 0;
}

/* What a handshake under way waits for. */
static short pending_events(const pending *p)
{
    if (!p->tls)
        return mpci_hs_events(&p->hs);
    return p->tls->base.ops->events(&p->tls->base, p->tls_phase ? POLLIN : mpci_hs_events(&p->hs));
}

/* Moves a handshake on after poll() said revents: the TLS one, then the
 * authkey's inside it; a plain peer's as before. */
static void progress(mpconn_listener *l, pending *p, short revents)
{
    if (!p->tls) {
        mpci_hs_progress(&p->hs, p->fd, revents & (POLLIN | POLLHUP | POLLERR), 0);
        return;
    }
    mpci_transport *t = &p->tls->base;
    if (p->tls_phase) {
        int r = t->ops->handshake(t);
        if (r == -EAGAIN)
            return;
        if (r < 0) {
            mpci_hs_fail(&p->hs, r, "%s",
                         mpci_tls_code(r) ? mpci_tlst_errmsg(p->tls) : mpconn_strerror(r));
            return;
        }
        p->tls_phase = 0;
        if (!l->opts.authkey) {
            p->hs.state = MPCI_AUTH_DONE;
            return;
        }
        if ((r = mpci_hs_init(&p->hs, MPCI_AUTH_SERVER, &l->opts)) < 0) {
            mpci_hs_fail(&p->hs, r, "cannot start the handshake: %s", mpconn_strerror(r));
            return;
        }
    }
    mpci_hs_progress_tp(&p->hs, t);
    if (p->hs.state == MPCI_AUTH_FAILED && mpci_tls_code(p->hs.code))
        mpci_hs_fail(&p->hs, p->hs.code, "%s", mpci_tlst_errmsg(p->tls));
}

/* The handshake that has waited longest. */
static size_t oldest_pending(const mpconn_listener *l)
{
    size_t old = 0;
    for (size_t i = 1; i < l->npend; i++)
        if (l->pend[i]->seq < l->pend[old]->seq)
            old = i;
    return old;
}

/* The oldest handshake makes room for a newer peer: silent peers delay
 * nobody for longer than it takes the others to arrive, and a flood of
 * them never locks a real one out. */
static void drop_oldest(mpconn_listener *l, int err)
{
    size_t i = oldest_pending(l);
    char peer[2 * sizeof l->address];
    peer_text(l, &l->pend[i]->who, peer, sizeof peer);
    if (err)
        reject(l, -ETIMEDOUT,
               "out of file descriptors (%s): dropped the handshake of %s to make room",
               strerror(err), peer);
    else
        reject(l, -ETIMEDOUT, "handshake of %s dropped for a newer peer: %zu handshakes under way",
               peer, l->npend);
    drop_pending(l, i);
}

/* Accepts one peer from the backlog, without blocking. One per wake-up:
 * the next poll() says whether more wait, and draining to EAGAIN would cost
 * a system call per accepted peer. */
static int accept_new(mpconn_listener *l)
{
    for (int round = 0; round < 4; round++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EINTR || e == ECONNABORTED)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return 0;
            if ((e == EMFILE || e == ENFILE) && l->npend) {
                /* Silent handshakes may be what holds the descriptors. */
                drop_oldest(l, e);
                continue;
            }
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                /* Out of resources with nothing to give back: report, and
                 * stop polling the socket for a moment rather than spin on
                 * a backlog that stays readable. */
                reject(l, -e, "accept on %s: %s; not accepting for %g s", l->address, strerror(e),
                       EMFILE_PAUSE);
                l->accept_pause = mpci_now() + EMFILE_PAUSE;
                return 0;
            }
            return lerr(l, -e, "accept on %s: %s", l->address, strerror(e));
        }
        pending *p = calloc(1, sizeof *p);
        if (!p) {
            close(fd);
            reject(l, -ENOMEM, "out of memory accepting a peer on %s", l->address);
            continue;
        }
        p->who.ss = ss;
        p->who.sl = sl;
        p->who.pid = -1;
        p->who.uid = (uid_t)-1;
        p->who.gid = (gid_t)-1;
        if (l->addr.family == AF_UNIX) {
            mpci_sock_peercred(fd, &p->who.pid, &p->who.uid, &p->who.gid);
        }
        char peer[2 * sizeof l->address];
        if (!peer_allowed(l, p)) {
            reject(l, MPCONN_ERR_PEER, "refused %s: uid not allowed",
                   peer_text(l, &p->who, peer, sizeof peer));
            close(fd);
            free(p);
            continue;
        }
        while (l->npend >= l->max_hs)
            drop_oldest(l, 0);
        pending **grown = l->npend < l->pend_cap
                              ? l->pend
                              : mpci_grow(l->pend, &l->pend_cap, l->npend + 1, sizeof *l->pend, 16);
        if (!grown) {
            reject(l, -ENOMEM, "out of memory accepting %s",
                   peer_text(l, &p->who, peer, sizeof peer));
            close(fd);
            free(p);
            continue;
        }
        l->pend = grown;
        p->fd = fd;
        p->deadline = -1;
        p->seq = l->next_seq++;
        if (l->addr.tls) {
            if (start_tls(l, p) < 0) {
                mpci_tlst_free(p->tls);
                close(fd);
                free(p);
                continue;
            }
        } else if (l->opts.authkey) {
            p->deadline = mpci_deadline(l->opts.handshake_timeout);
            int r = mpci_hs_init(&p->hs, MPCI_AUTH_SERVER, &l->opts);
            if (r < 0) {
                reject(l, r, "cannot start the handshake with %s: %s",
                       peer_text(l, &p->who, peer, sizeof peer), mpconn_strerror(r));
                close(fd);
                free(p);
                continue;
            }
            mpci_hs_progress(&p->hs, fd, 0, 0); /* the challenge leaves now, not a poll later */
        } else {
            p->hs.state = MPCI_AUTH_DONE;
        }
        l->pend[l->npend++] = p;
        return 0;
    }
    return 0;
}

/* Whether to poll the listening socket: not while accepting is paused for
 * want of descriptors (the pause's end is folded into *wake). */
static int accepting(mpconn_listener *l, double *wake)
{
    if (l->accept_pause <= 0)
        return 1;
    if (mpci_now() >= l->accept_pause) {
        l->accept_pause = 0;
        return 1;
    }
    if (*wake < 0 || l->accept_pause < *wake)
        *wake = l->accept_pause;
    return 0;
}

/* Returns a finished peer if there is one, dropping failed and late ones. */
static int harvest(mpconn_listener *l, mpconn_conn **out)
{
    double now = mpci_now();
    char peer[2 * sizeof l->address];
    for (size_t i = 0; i < l->npend;) {
        pending *p = l->pend[i];
        if (p->hs.state == MPCI_AUTH_DONE) {
            int r = make_conn(l, p, out);
            if (r < 0) {
                reject(l, r, "cannot set up the connection of %s: %s",
                       peer_text(l, &p->who, peer, sizeof peer), mpconn_strerror(r));
                drop_pending(l, i);
                continue;
            }
            mpci_hs_clear(&p->hs);
            free(p);
            l->pend[i] = l->pend[--l->npend];
            return 1;
        }
        if (p->hs.state == MPCI_AUTH_FAILED) {
            reject(l, p->hs.code, "%s %s failed: %s",
                   p->tls_phase ? "TLS with" : "authentication of",
                   peer_text(l, &p->who, peer, sizeof peer), mpci_hs_errmsg(&p->hs));
            drop_pending(l, i);
            continue;
        }
        if (p->deadline >= 0 && now >= p->deadline) {
            reject(l, -ETIMEDOUT, "%s %s timed out%s",
                   p->tls_phase ? "the TLS handshake of" : "authentication of",
                   peer_text(l, &p->who, peer, sizeof peer),
                   p->tls_phase && p->tls->first_in
                       ? " (it sent nothing: a plaintext client waiting for a challenge?)"
                       : "");
            drop_pending(l, i);
            continue;
        }
        i++;
    }
    return 0;
}

size_t mpci_listener_pending(const mpconn_listener *l, struct pollfd *out, size_t cap, double *wake,
                             int *ready_now)
{
    for (size_t i = 0; i < l->npend; i++) {
        const pending *p = l->pend[i];
        if (p->hs.state != MPCI_AUTH_NEED_INPUT)
            *ready_now = 1;
        if (p->deadline >= 0 && (*wake < 0 || p->deadline < *wake))
            *wake = p->deadline;
        if (i < cap)
            out[i] = (struct pollfd){.fd = p->fd, .events = pending_events(p)};
    }
    return l->npend;
}

int mpconn_listener_accept(mpconn_listener *l, mpconn_conn **out, double timeout)
{
    if (l->fd < 0)
        return lerr(l, MPCONN_ERR_CLOSED, "accept: listener is closed");
    double deadline = mpci_deadline(timeout);
    /* Room for the usual few pending peers without an allocation per call. */
    struct pollfd few[8], *pfd = few;
    size_t pfd_cap = sizeof few / sizeof *few;
    int result;
    for (;;) {
        if (harvest(l, out)) {
            result = 0;
            break;
        }
        if (pfd_cap < l->npend + 1) {
            struct pollfd *np = malloc((l->npend + 1) * sizeof *np);
            if (!np) {
                result = lerr(l, -ENOMEM, "accept: out of memory");
                break;
            }
            if (pfd != few)
                free(pfd);
            pfd = np;
            pfd_cap = l->npend + 1;
        }
        /* Sleep until the earliest of: the caller's deadline, a handshake's. */
        double wake = deadline;
        size_t n = 0;
        int listening = accepting(l, &wake);
        if (listening)
            pfd[n++] = (struct pollfd){.fd = l->fd, .events = POLLIN};
        for (size_t i = 0; i < l->npend; i++) {
            pfd[n++] = (struct pollfd){.fd = l->pend[i]->fd, .events = pending_events(l->pend[i])};
            double d = l->pend[i]->deadline;
            if (d >= 0 && (wake < 0 || d < wake))
                wake = d;
        }
        int pr = poll(pfd, n, mpci_poll_ms(wake));
        if (pr < 0 && errno != EINTR) {
            result = lerr(l, -errno, "accept: poll: %s", strerror(errno));
            break;
        }
        size_t base = listening ? 1 : 0;
        size_t npend_polled = l->npend;
        if (pr > 0) {
            for (size_t i = 0; i < npend_polled; i++)
                if (pfd[base + i].revents)
                    progress(l, l->pend[i], pfd[base + i].revents);
            if (base && pfd[0].revents && (result = accept_new(l)) < 0)
                break;
        }
        if (deadline >= 0 && mpci_now() >= deadline) {
            if (harvest(l, out))
                result = 0;
            else
                result = lerr(l, -ETIMEDOUT, "accept on %s: timed out", l->address);
            break;
        }
    }
    if (pfd != few)
        free(pfd);
    return result;
}

double mpci_listener_paused_until(const mpconn_listener *l)
{
    return l->accept_pause > 0 && mpci_now() < l->accept_pause ? l->accept_pause : 0;
}

const struct mpconn_opts *mpci_listener_opts(const mpconn_listener *l)
{
    return &l->opts;
}

int mpci_listener_admit(mpconn_listener *l, int fd, const struct sockaddr_storage *ss, socklen_t sl,
                        pid_t *pid, uid_t *uid)
{
    pending p;
    memset(&p.who, 0, sizeof p.who);
    p.who.ss = *ss;
    p.who.sl = sl;
    p.who.pid = -1;
    p.who.uid = (uid_t)-1;
    p.who.gid = (gid_t)-1;
    /* The async listener asks for a Unix peer's credentials only when its
     * policy needs them; a message that names the peer asks later. */
    if (policy_needs_uid(l))
        mpci_sock_peercred(fd, &p.who.pid, &p.who.uid, &p.who.gid);
    *pid = p.who.pid;
    *uid = p.who.uid;
    return peer_allowed(l, &p) ? 0 : MPCONN_ERR_PEER;
}

const char *mpci_listener_peer_text(const mpconn_listener *l, const void *sa, socklen_t sl,
                                    pid_t pid, uid_t uid, char *buf, size_t cap)
{
    peer_id w;
    memset(&w, 0, sizeof w);
    w.sl = sl < sizeof w.ss ? sl : sizeof w.ss;
    memcpy(&w.ss, sa, w.sl);
    w.pid = pid;
    w.uid = uid;
    return peer_text(l, &w, buf, cap);
}

size_t mpconn_listener_handshakes(const mpconn_listener *l, int *fds, int *events, size_t cap,
                                  double *wait)
{
    double wake = -1, now = mpci_now();
    int ready = 0;
    for (size_t i = 0; i < l->npend; i++) {
        const pending *p = l->pend[i];
        if (p->hs.state != MPCI_AUTH_NEED_INPUT || (p->deadline >= 0 && p->deadline <= now))
            ready = 1;
        if (p->deadline >= 0 && (wake < 0 || p->deadline < wake))
            wake = p->deadline;
        if (i < cap) {
            short ev = pending_events(p);
            fds[i] = p->fd;
            events[i] = (ev & POLLIN ? MPCONN_READABLE : 0) | (ev & POLLOUT ? MPCONN_WRITABLE : 0);
        }
    }
    if (wait)
        *wait = ready ? 0 : wake < 0 ? -1 : wake - now;
    return l->npend;
}
