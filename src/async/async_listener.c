/* The async listener: accepts on the loop, runs every handshake with its
 * deadline, and hands over only open connections. The socket, its file and
 * the peer policy come from an mpconn_listener. */
#define _GNU_SOURCE /* accept4 */
#include "async_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Accepts per readable event at most: each starts a handshake (a few
 * microseconds with its challenge), and the connections already open
 * that are ready in the same wake-up wait for all of them. More peers are
 * taken at the next turn of the loop. */
#define ACCEPTS_PER_EVENT 8
#define PROBE_EVERY_MAX 64 /* wake-ups between asking whether a second peer waits */
#define EMFILE_PAUSE 0.1   /* seconds without accepting when no spare fd is left */

/* One per peer in its handshake. The authkey handshake of a plain socket
 * runs in the node itself, with the machine and a watcher of its own: a
 * silent peer costs that and no more, and the connection is made only
 * once the peer is in (mpci_async_adopt hands it the fd and the watcher).
 * A TLS handshake runs in its connection (a), made at once, as does a
 * connection without an authkey, which opens inside accept_one. The peer
 * is kept as the kernel named it (its address, and a Unix peer's pid and
 * uid), and put into words only if a message is about it. */
typedef struct hs_node {
    mpconn_ev ev; /* the node's own: fd -1 once a connection has it */
    mpconn_async_listener *l;
    struct hs_node *prev, *next;
    double deadline; /* of the handshake; 0: none */
    union {
        mpconn_async *a; /* in_conn: the connection that runs the handshake */
        mpci_hs hs;      /* else: the node runs it */
    };
    uint8_t in_conn;
    uint8_t local; /* a Unix socket */
    uint8_t sl;    /* the length of the peer's address */
    /* The address, then a Unix peer's pid and uid (-1: not asked yet):
     * a TCP peer's record holds no credentials it cannot have. */
    unsigned char tail[];
} hs_node;

typedef struct {
    pid_t pid;
    uid_t uid;
} creds;

#define PEER_MAX MPCI_PEER_TEXT_MAX

struct mpconn_async_listener {
    mpconn_ev ev;
    mpconn_listener *base;
    const mpconn_adapter *ad;
    void *loop;
    mpconn_accept_cb on_accept;
    void *data;
    mpconn_reject_cb on_reject;
    void *reject_data;
    hs_node *oldest, *newest;
    size_t nhs, max_hs;
    int paused;  /* by the user */
    int backoff; /* out of descriptors, waiting on the timer */
    int spare;   /* a descriptor kept to shed peers when there are no others */
    int freed;   /* mpconn_async_listener_free was called */
    int burst;   /* accepts to try at the next wake-up */
    /* With a burst of 1, whether a second peer waits is asked only every
     * probe_every wake-ups (doubling while the answer is no), so peers
     * that come one at a time cost no accept that says EAGAIN. */
    int probe_every, probe_in;
    double resume_at; /* when accepting resumes after a backoff; 0: not paused */
    double timer_at;  /* what the timer is armed for; 0: not armed */
};

static void reject(mpconn_async_listener *l, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reject(mpconn_async_listener *l, int code, const char *fmt, ...)
{
    if (!l->on_reject)
        return;
    char msg[MPCI_ERRMSG_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    l->on_reject(l->reject_data, code, msg);
}

/* The peer's name as the listener writes it. A Unix peer's credentials
 * are asked for here when the policy did not need them at accept. */
static const char *peer_of(hs_node *n, char *buf, size_t cap)
{
    creds c = {-1, (uid_t)-1};
    if (n->local) {
        memcpy(&c, n->tail + n->sl, sizeof c);
        if (c.pid < 0 && !n->in_conn && n->ev.fd >= 0) {
            gid_t gid;
            mpci_sock_peercred(n->ev.fd, &c.pid, &c.uid, &gid);
            memcpy(n->tail + n->sl, &c, sizeof c);
        }
    }
    return mpci_listener_peer_text(n->l->base, n->tail, n->sl, c.pid, c.uid, buf, cap);
}

static void unlink_node(mpconn_async_listener *l, hs_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->oldest = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->newest = n->prev;
    l->nhs--;
}

static void want_accept(mpconn_async_listener *l)
{
    mpci_ev_set_io(&l->ev, l->paused || l->backoff || l->freed ? 0 : MPCONN_READABLE);
}

/* The one timer serves the end of a backoff and every handshake's
 * deadline. Handshakes are kept in arrival order and share one timeout, so
 * the oldest has the earliest deadline: the timer is armed for it alone,
 * and moved only when it fires. A handshake that ends early costs no timer
 * operation. */
static void arm(mpconn_async_listener *l)
{
    double at = l->resume_at;
    if (l->oldest && l->oldest->deadline > 0 && (at == 0 || l->oldest->deadline < at))
        at = l->oldest->deadline;
    if (at == l->timer_at)
        return;
    l->timer_at = at;
    if (at == 0) {
        mpci_ev_set_timer(&l->ev, -1);
        return;
    }
    double left = at - mpci_now();
    mpci_ev_set_timer(&l->ev, left > 0 ? left : 0);
}

/* A handshake ended: the connection goes to the user, or its peer to the
 * reject callback. A node that ran the handshake itself is unlinked
 * already, and freed by its own watcher. */
static void done_cb(mpconn_async *a, int code, const char *errmsg, void *owner)
{
    hs_node *n = owner;
    mpconn_async_listener *l = n->l;
    if (n->in_conn)
        unlink_node(l, n);
    l->ev.pins++;
    if (code == 0) {
        if (l->on_accept && !l->freed)
            l->on_accept(l, a, l->data);
        else
            mpconn_async_close(a);
    } else {
        char peer[PEER_MAX];
        reject(l, code, "authentication of %s failed: %s", peer_of(n, peer, sizeof peer),
               errmsg ? errmsg : "");
    }
    if (n->in_conn)
        free(n);
    mpci_ev_unpin(&l->ev);
}

/* An unlinked node goes, its peer with it (reported by the caller first). */
static void drop_node(hs_node *n, int reason, const char *why)
{
    if (n->in_conn) {
        mpci_async_drop(n->a, reason, why);
        free(n);
        return;
    }
    mpci_ev_doom(&n->ev); /* node_destroy closes the fd */
}

static void node_destroy(mpconn_ev *ev)
{
    hs_node *n = (hs_node *)ev;
    mpci_hs_clear(&n->hs); /* never a connection's node: those are freed by done_cb */
    if (ev->fd >= 0)
        close(ev->fd);
    free(n);
}

static void node_timeout(mpconn_ev *ev)
{
    (void)ev; /* never armed: the listener's one timer keeps the deadlines */
}

/* The handshake the node ran has ended: the connection is made and goes
 * to done_cb, as does a failure. */
static void node_done(hs_node *n)
{
    mpconn_async_listener *l = n->l;
    unlink_node(l, n);
    l->ev.pins++;
    if (n->hs.state != MPCI_AUTH_DONE) {
        done_cb(NULL, n->hs.code, mpci_hs_errmsg(&n->hs), n);
    } else {
        int r = mpci_async_adopt(&n->ev, l->loop, n->local ? MPCI_FD_UNIX : MPCI_FD_INET,
                                 mpci_listener_opts(l->base), &n->hs, done_cb, n);
        if (r == 0) {
            n->ev.fd = -1; /* the connection's now */
        } else {
            char peer[PEER_MAX];
            reject(l, r, "cannot open the connection of %s: %s", peer_of(n, peer, sizeof peer),
                   mpconn_strerror(r));
        }
    }
    mpci_ev_doom(&n->ev);
    mpci_ev_unpin(&l->ev);
}

static void node_io(mpconn_ev *ev, int events)
{
    hs_node *n = (hs_node *)ev;
    mpci_fd_transport t;
    mpci_fdt_init(&t, ev->fd, 1, 0); /* descriptors passed meanwhile: dropped by the kernel */
    int st = mpci_hs_step(&n->hs, &t.base, events & MPCONN_READABLE, 0);
    if (st != MPCI_AUTH_NEED_INPUT) {
        node_done(n);
        return;
    }
    mpci_ev_set_io(ev, mpci_hs_events(&n->hs) & POLLOUT ? MPCONN_WRITABLE : MPCONN_READABLE);
}

static int open_spare(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void pause_accepting(mpconn_async_listener *l)
{
    l->backoff = 1;
    want_accept(l);
    l->resume_at = mpci_now() + EMFILE_PAUSE;
    arm(l);
}

/* Out of descriptors: the reserve-fd trick sheds the waiting peer (it sees
 * its connection closed, not a hang) without spinning; with no spare left,
 * accepting pauses for a moment on the timer. */
static void shed(mpconn_async_listener *l, int err)
{
    /* Silent peers in their handshakes may be what holds the descriptors:
     * the oldest makes room, as at the handshake cap, so that a flood of
     * them locks no real peer out. The caller accepts again. */
    if (l->oldest) {
        hs_node *old = l->oldest;
        unlink_node(l, old);
        char peer[PEER_MAX];
        reject(l, -err, "out of file descriptors (%s): dropped the handshake of %s to make room",
               strerror(err), peer_of(old, peer, sizeof peer));
        drop_node(old, -ETIMEDOUT, "dropped for a newer peer: out of descriptors");
        return;
    }
    if (l->spare >= 0) {
        close(l->spare);
        l->spare = -1;
        int fd = accept4(l->ev.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            close(fd);
            reject(l, -err, "out of file descriptors (%s): dropped a connection on %s",
                   strerror(err), mpconn_listener_address(l->base));
        }
        l->spare = open_spare();
        if (l->spare >= 0)
            return;
    }
    reject(l, -err, "out of file descriptors (%s): not accepting on %s for %g s", strerror(err),
           mpconn_listener_address(l->base), EMFILE_PAUSE);
    pause_accepting(l);
}

static void link_node(mpconn_async_listener *l, hs_node *n)
{
    n->prev = l->newest;
    if (l->newest)
        l->newest->next = n;
    else
        l->oldest = n;
    l->newest = n;
    l->nhs++;
    if (!l->timer_at)
        arm(l);
}

/* The node runs the plain authkey handshake itself; the challenge leaves
 * at once. */
static void start_node(mpconn_async_listener *l, hs_node *n, int fd, const struct mpconn_opts *o)
{
    n->ev.fd = fd;
    static const mpci_ev_ops ops = {node_io, node_timeout, node_destroy};
    n->ev.ops = &ops;
    char peer[PEER_MAX];
    int r = mpci_hs_init(&n->hs, MPCI_AUTH_SERVER, o);
    if (r < 0) {
        reject(l, r, "cannot start the handshake with %s: %s", peer_of(n, peer, sizeof peer),
               mpconn_strerror(r));
        node_destroy(&n->ev);
        return;
    }
    r = mpci_ev_attach(&n->ev, l->ad, l->loop);
    if (r < 0) {
        reject(l, r, "cannot watch the connection of %s: %s", peer_of(n, peer, sizeof peer),
               mpconn_strerror(r));
        node_destroy(&n->ev);
        return;
    }
    link_node(l, n);
    /* Watched before the challenge leaves: the peer, woken by it, may take
     * the CPU, and the answer should find the fd registered. */
    mpci_ev_set_io(&n->ev, MPCONN_READABLE);
    mpconn_ev_handle(&n->ev, 0);
}

static void accept_one(mpconn_async_listener *l, int fd, struct sockaddr_storage *ss, socklen_t sl)
{
    pid_t pid;
    uid_t uid;
    int r = mpci_listener_admit(l->base, fd, ss, sl, &pid, &uid);
    char peer[PEER_MAX];
    if (r < 0) {
        close(fd);
        reject(l, r, "refused peer %s: uid not allowed",
               mpci_listener_peer_text(l->base, ss, sl, pid, uid, peer, sizeof peer));
        return;
    }
    /* At the cap, the oldest handshake makes room: silent peers can delay
     * nobody for longer than it takes the others to arrive. */
    if (l->max_hs && l->nhs >= l->max_hs && l->oldest) {
        hs_node *old = l->oldest;
        unlink_node(l, old);
        reject(l, -ETIMEDOUT, "handshake of %s dropped: %zu handshakes under way",
               peer_of(old, peer, sizeof peer), l->max_hs);
        drop_node(old, -ETIMEDOUT, "dropped for a newer peer");
    }
    if (sl > sizeof *ss)
        sl = sizeof *ss;
    int local = ss->ss_family == AF_UNIX;
    hs_node *n = malloc(offsetof(hs_node, tail) + sl + (local ? sizeof(creds) : 0));
    if (!n) {
        close(fd);
        reject(l, -ENOMEM, "out of memory accepting %s",
               mpci_listener_peer_text(l->base, ss, sl, pid, uid, peer, sizeof peer));
        return;
    }
    memset(n, 0, offsetof(hs_node, tail));
    n->l = l;
    n->local = (uint8_t)local;
    n->sl = (uint8_t)sl;
    memcpy(n->tail, ss, sl);
    if (local)
        memcpy(n->tail + sl, &(creds){pid, uid}, sizeof(creds));
    const struct mpconn_opts *o = mpci_listener_opts(l->base);
    /* The base listener's address names TLS as a client must give it. */
    int flags = strncmp(mpconn_listener_address(l->base), "tls:", 4) == 0 ? MPCI_ASYNC_TLS : 0;
    if (o->authkey || flags) {
        double d = mpci_deadline(o->handshake_timeout);
        n->deadline = d > 0 ? d : 0;
    }
    if (o->authkey && !flags) {
        start_node(l, n, fd, o);
        return;
    }
    mpconn_async *a;
    r = mpci_async_accepted(&a, fd, ss->ss_family == AF_UNIX ? MPCI_FD_UNIX : MPCI_FD_INET, flags,
                            o, done_cb, n);
    if (r < 0) {
        close(fd);
        reject(l, r, "cannot start the handshake with %s: %s", peer_of(n, peer, sizeof peer),
               mpconn_strerror(r));
        free(n);
        return;
    }
    n->a = a;
    n->in_conn = 1;
    link_node(l, n);
    r = mpconn_async_attach(a, l->ad, l->loop); /* may finish at once (no authkey) */
    if (r < 0) {
        unlink_node(l, n);
        reject(l, r, "cannot watch the connection of %s: %s", peer_of(n, peer, sizeof peer),
               mpconn_strerror(r));
        free(n);
        mpconn_async_close(a);
    }
}

static void on_io(mpconn_ev *ev, int events)
{
    (void)events;
    mpconn_async_listener *l = (mpconn_async_listener *)ev;
    /* As many accepts as the last wake-up found peers, doubling while each
     * finds the backlog still full: one peer at a time costs no accept that
     * only says EAGAIN, and a burst is still taken in a few calls. */
    int tries = l->burst, got = 0;
    if (tries == 1 && --l->probe_in <= 0)
        tries = 2;
    for (int i = 0; i < tries && !l->paused && !l->backoff && !l->freed; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(ev->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            int e = errno;
            if (e == EINTR || e == ECONNABORTED)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK) {
                if (l->burst == 1 && got == 1) {
                    /* The probe found nobody behind: ask again later. */
                    if (l->probe_every < PROBE_EVERY_MAX)
                        l->probe_every *= 2;
                    l->probe_in = l->probe_every;
                }
                l->burst = got > 1 ? got : 1;
                return;
            }
            if (e == EMFILE || e == ENFILE) {
                shed(l, e);
                continue;
            }
            /* ENOBUFS, ENOMEM and the like: report and try again later. */
            reject(l, -e, "accept on %s: %s", mpconn_listener_address(l->base), strerror(e));
            pause_accepting(l);
            return;
        }
        accept_one(l, fd, &ss, sl);
        got++;
    }
    if (got == tries && tries > 1) {
        l->burst = tries < ACCEPTS_PER_EVENT ? 2 * tries : ACCEPTS_PER_EVENT;
        l->probe_every = l->probe_in = 1;
    }
}

/* Handshakes past their deadline, oldest first, and the end of a backoff. */
static void on_timeout(mpconn_ev *ev)
{
    mpconn_async_listener *l = (mpconn_async_listener *)ev;
    l->timer_at = 0;
    double t = mpci_now();
    if (l->backoff && t >= l->resume_at) {
        l->backoff = 0;
        l->resume_at = 0;
        if (l->spare < 0)
            l->spare = open_spare();
        want_accept(l);
    }
    while (l->oldest && l->oldest->deadline > 0 && t >= l->oldest->deadline) {
        hs_node *n = l->oldest;
        unlink_node(l, n);
        char peer[PEER_MAX];
        reject(l, -ETIMEDOUT, "authentication of %s failed: handshake timed out",
               peer_of(n, peer, sizeof peer));
        drop_node(n, -ETIMEDOUT, "handshake timed out");
    }
    arm(l);
}

static void destroy(mpconn_ev *ev)
{
    mpconn_async_listener *l = (mpconn_async_listener *)ev;
    mpconn_listener_free(l->base);
    if (l->spare >= 0)
        close(l->spare);
    free(l);
}

int mpconn_async_listener_open(mpconn_async_listener **out, const char *address,
                               const mpconn_opts *opts, const mpconn_adapter *ad, void *loop,
                               mpconn_accept_cb on_accept, void *data, char *errmsg, size_t errlen)
{
    *out = NULL;
    mpconn_async_listener *l = calloc(1, sizeof *l);
    if (!l)
        return mpci_err(errmsg, errlen, -ENOMEM, "out of memory");
    l->spare = -1;
    int r = mpconn_listener_open(&l->base, address, opts, errmsg, errlen);
    if (r < 0) {
        free(l);
        return r;
    }
    int fd = mpconn_listener_fileno(l->base);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    l->ev.fd = fd;
    static const mpci_ev_ops ops = {on_io, on_timeout, destroy};
    l->ev.ops = &ops;
    l->on_accept = on_accept;
    l->data = data;
    l->max_hs = 4096;
    l->burst = 1;
    l->probe_every = l->probe_in = 1;
    l->spare = open_spare();
    r = ad ? mpconn_async_listener_attach(l, ad, loop) : 0;
    if (r < 0) {
        destroy(&l->ev);
        return mpci_err(errmsg, errlen, r, "cannot watch the listening socket: %s",
                        mpconn_strerror(r));
    }
    *out = l;
    return 0;
}

int mpconn_async_listener_attach(mpconn_async_listener *l, const mpconn_adapter *ad, void *loop)
{
    if (l->ev.st)
        return -EBUSY;
    if (!ad)
        return -EINVAL;
    int r = mpci_ev_attach(&l->ev, ad, loop);
    if (r < 0)
        return r;
    l->ad = ad;
    l->loop = loop;
    want_accept(l);
    return 0;
}

void mpconn_async_listener_on_reject(mpconn_async_listener *l, mpconn_reject_cb cb, void *data)
{
    l->on_reject = cb;
    l->reject_data = data;
}

int mpconn_async_listener_set_max_handshakes(mpconn_async_listener *l, size_t n)
{
    if (n == 0)
        return -EINVAL;
    l->max_hs = n;
    return 0;
}

void mpconn_async_listener_pause(mpconn_async_listener *l)
{
    l->paused = 1;
    want_accept(l);
}

void mpconn_async_listener_resume(mpconn_async_listener *l)
{
    l->paused = 0;
    want_accept(l);
}

const char *mpconn_async_listener_address(const mpconn_async_listener *l)
{
    return mpconn_listener_address(l->base);
}

size_t mpconn_async_listener_handshakes(const mpconn_async_listener *l)
{
    return l->nhs;
}

void mpconn_async_listener_free(mpconn_async_listener *l)
{
    if (!l || l->freed)
        return;
    l->freed = 1;
    l->ev.pins++;
    while (l->oldest) {
        hs_node *n = l->oldest;
        unlink_node(l, n);
        drop_node(n, MPCONN_ERR_CLOSED, "listener closed");
    }
    l->ev.pins--;
    mpci_ev_doom(&l->ev);
}
