/* What the server kinds share: the server and request structures, the
 * acceptor's entry points each kind provides, and the helpers in server.c.
 * Built on the public headers only. */
#ifndef MPCONN_SERVER_INTERNAL_H
#define MPCONN_SERVER_INTERNAL_H

#include <mpconn.h>
#include <mpconn/async.h>
#include <mpconn/loop.h>
#include <mpconn/server.h>

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/types.h>

#define SRV_ERRMSG_MAX 256
#define SRV_PEER_MAX 112

struct mpconn_request {
    mpconn_server *server;
    int fd;              /* the accepted socket; -1 once closed */
    mpconn_conn *conn;   /* THREADS/FORK, FRAMED */
    mpconn_async *async; /* LOOP */
    void *user;
    const void *dgram; /* datagrams: the bytes */
    size_t dgram_len;
    struct sockaddr_storage ss;
    socklen_t sl;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    char peer[SRV_PEER_MAX];
    int peer_done; /* peer is formatted (only when asked: it costs) */
    /* THREADS: a request slot of the pool. */
    unsigned char *buf; /* datagrams: max_datagram bytes, kept with the slot */
    int busy;           /* taken by a worker (its fd may be shut down) */
    /* LOOP: list of open connections, and reentrancy of the free. */
    mpconn_request *prev, *next;
    int opened, depth, dead;
};

/* THREADS: a worker thread. An idle one waits on its own semaphore for
 * the request the acceptor hands it (NULL: the pool is ending), so a
 * hand-off wakes exactly that thread and no lock is taken on its way. */
typedef struct srv_worker {
    pthread_t thread;
    sem_t wake;
    mpconn_request *req;
    mpconn_server *server;
} srv_worker;

typedef struct srv_child {
    pid_t pid; /* 0: free slot */
    int pidfd;
    mpconn_watch *io;
    char peer[SRV_PEER_MAX];
    mpconn_server *server;
} srv_child;

struct mpconn_server {
    int kind, form, dgram;
    int family;   /* datagrams: of the socket */
    int abstract; /* datagrams: a Unix socket bound to an abstract name */
    mpconn_server_hooks hooks;
    void *data;
    mpconn_opts *opts;
    int has_key; /* FRAMED streams run the handshake */
    mpconn_listener *listener;
    int lfd;           /* listening or datagram socket */
    char *unlink_path; /* unixgram socket file to remove */
    char address[128];
    mpconn_loop *loop; /* the server's own: serve_forever runs it */
    /* The loop everything is watched on: the own one through its adapter,
     * or the caller's (mpconn_server_start). */
    const mpconn_adapter *ad;
    void *adloop;
    int foreign;        /* started on the caller's loop */
    mpconn_watch *lio;  /* the listening socket; its timer: accepting again after EMFILE */
    int wake_fd;        /* eventfd: a worker freed a slot, or the shutdown */
    mpconn_watch *wake; /* on wake_fd; its timer: handle_timeout */
    size_t cap;
    double idle, timeout;
    int drain;
    size_t max_dgram;
    int started, ended, ended_kind;
    atomic_int stopping;
    int paused; /* the acceptor stopped watching lfd at the cap */
    size_t active;
    /* THREADS */
    pthread_mutex_t mu;
    int quit;
    mpconn_request *reqs;     /* cap slots */
    mpconn_request **free_rq; /* stack of free slots */
    size_t nfree;
    mpconn_request **queue; /* ring of requests waiting for a busy worker */
    size_t qhead, qlen;
    srv_worker *workers;  /* cap of them, nthreads started */
    srv_worker **waiting; /* stack of the nidle idle ones, the last to finish on top */
    size_t nthreads, nidle;
    /* FORK */
    srv_child *children;
    /* LOOP */
    mpconn_request *conns;
    /* datagrams in LOOP */
    unsigned char *dbuf;
    /* tls: addresses. LOOP: the async listener runs the handshakes. THREADS
     * and FORK: s->listener does, and the loop watches its handshakes. */
    int tls;
    mpconn_async_listener *alistener;
    mpconn_watch **hs_io; /* the first one's timer: the oldest handshake's deadline */
    size_t hs_n, hs_cap;
};

/* What each kind provides to server.c. */
typedef struct srv_kind {
    int (*start)(mpconn_server *s);
    /* lfd is readable (a peer or datagrams wait). */
    void (*readable)(mpconn_server *s);
    /* A worker freed a slot (the wake eventfd fired). */
    void (*woken)(mpconn_server *s);
    /* serve_forever is ending: stop, join, reap, close. */
    void (*stop)(mpconn_server *s);
} srv_kind;

extern const srv_kind srv_loop_kind, srv_threads_kind, srv_fork_kind, srv_dgram_loop_kind,
    srv_dgram_threads_kind;

/* server.c */
void srv_error(mpconn_server *s, mpconn_request *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The kind's readable entry: peers or handshakes can move. */
void srv_kind_readable(mpconn_server *s);
/* Accepts one peer into r (fd, address, credentials). 1 with r filled, 0
 * when none waits, negative on a failure the acceptor pauses for. */
int srv_accept(mpconn_server *s, mpconn_request *r);
/* verify_request; 1 to serve. */
int srv_verify(mpconn_server *s, mpconn_request *r);
/* Stops or resumes watching lfd. */
void srv_pause(mpconn_server *s, int pause);
/* Restarts the handle_timeout clock: a request arrived. */
void srv_request_seen(mpconn_server *s);
/* Out of descriptors or memory: stops accepting for 0.1 s. */
void srv_retry_later(mpconn_server *s);
/* LOOP: closes the connections still open (their finish runs). */
void srv_loop_close_all(mpconn_server *s);
/* THREADS and FORK streams: handshake (FRAMED with a key), setup, handle,
 * finish; the socket is closed on return. 1 when something failed (and
 * was reported), else 0. */
int srv_serve_stream(mpconn_server *s, mpconn_request *r);
/* Datagrams: setup, handle, finish. */
void srv_serve_dgram(mpconn_server *s, mpconn_request *r);
/* r's peer in mpconn syntax, formatted now if it was not yet ("" for a
 * peer without a name); the second gives unnamed for that. */
const char *srv_peer(mpconn_request *r);
const char *srv_peer_or(mpconn_request *r, const char *unnamed);
/* Formats a socket address in mpconn syntax. */
void srv_format_addr(const struct sockaddr_storage *ss, socklen_t sl, char *buf, size_t cap);
/* The value a hook's nonzero return is reported with. */
int srv_hook_code(int rc);
/* Closes r's socket, taken out of the shutdown's reach under the pool lock
 * first, so a shutdown never hits a reused number. */
void srv_close_fd(mpconn_server *s, mpconn_request *r);
/* The same with the pool lock already held; a datagram request's fd is the
 * server's socket and stays open. */
void srv_close_fd_locked(mpconn_server *s, mpconn_request *r);
/* Starts a thread with every signal blocked. */
int srv_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

/* dgram.c */
/* Opens the datagram socket for a "udp:" or "unixgram:" address: 1 when
 * address is one, 0 when it is a stream address, negative on failure. */
int srv_dgram_open(mpconn_server *s, const char *address, char *errmsg, size_t errlen);
/* Reads one datagram into r (buf of cap bytes): 1, 0 when none waits,
 * negative on failure. A truncated one is reported and skipped. */
int srv_dgram_recv(mpconn_server *s, mpconn_request *r, unsigned char *buf, size_t cap);

/* server_tls.c */
/* Opens a tls: address's listener (after the loop is made). */
int srv_tls_open(mpconn_server *s, const char *address, char *errmsg, size_t errlen);
/* THREADS and FORK: one peer whose TLS (and authkey) handshake passed,
 * from s->listener, without blocking; as srv_accept. */
int srv_tls_accept(mpconn_server *s, mpconn_request *r);
/* Watches the listener's handshakes under way (on 1) or none (on 0). */
void srv_tls_watch(mpconn_server *s, int on);
/* Stops watching and closes the TLS listeners. */
void srv_tls_close(mpconn_server *s);
/* FORK, in the child: closes the other peers' handshake sockets. */
void srv_tls_child(mpconn_server *s);

/* server_loop.c: serves an accepted LOOP connection (r->async set). */
void srv_loop_adopt(mpconn_server *s, mpconn_request *r);

/* server_threads.c: the pool, shared by streams and datagrams. */
int srv_pool_init(mpconn_server *s);
void srv_pool_free(mpconn_server *s);

#endif
