/* Async connections and listeners: the multiprocessing protocol (or a line,
 * count or raw framing) without blocking, on any event loop. An async object
 * knows no loop; an adapter attaches it (mpconn's own loop here; libuv and
 * libevent in <mpconn/uv.h> and <mpconn/event.h>). Everything of one object
 * runs on its loop's thread. Reference: mpconn_async(3). */
#ifndef MPCONN_ASYNC_H
#define MPCONN_ASYNC_H

#include <mpconn.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ----------------------------------------------------------- the adapter */

/* What an adapter sees of an async object: an fd to watch, and the entry
 * points it calls when the fd is ready or the object's timer expires. The
 * entry points are called on the loop's thread only. */
typedef struct mpconn_ev mpconn_ev;

/* The fd to watch; the object owns it and closes it after cleanup. */
MPCONN_API int mpconn_ev_fd(const mpconn_ev *ev);
/* The fd is ready for events (MPCONN_READABLE | MPCONN_WRITABLE); an error
 * or hang-up is passed as the events of the interest, so the read or write
 * that follows sees it. Read and write readiness of one event go in this
 * one call. The object may close and free itself inside: when the
 * adapter's cleanup ran during the call, ev is gone once it returns, and
 * the adapter must not touch it again. */
MPCONN_API void mpconn_ev_handle(mpconn_ev *ev, int events);
/* The one-shot timer the object asked for has expired. Same rule. */
MPCONN_API void mpconn_ev_timeout(mpconn_ev *ev);

/* An adapter: the hooks an async object calls, every one required but
 * set_pending. size is sizeof(mpconn_adapter) of the header the table was
 * compiled with (0 is taken as this one's), so hooks added later are known
 * absent from an older table; a size that does not reach cleanup fails
 * with -EINVAL at attach. The table is used in place: it outlives every
 * object attached through it (a static table does). `attach`
 * makes the adapter's state for one object (NULL on failure); the other
 * hooks get that state, and may be called from inside the entry points.
 * set_io replaces the interest (idempotent); set_timer arms the one-shot
 * timer (seconds >= 0, replacing one armed before) or cancels it (< 0);
 * set_pending says bytes are buffered in user space (input held while
 * reading was paused, later TLS records): while it is set and the interest
 * includes MPCONN_READABLE, the loop calls mpconn_ev_handle with
 * MPCONN_READABLE without waiting for the fd, before it sleeps; cleanup
 * runs exactly once, before the object closes its fd, after which no entry
 * point may be called for ev — it may run from inside mpconn_ev_handle or
 * mpconn_ev_timeout, or outside both (mpconn_async_close). rebind (may be
 * NULL, or absent from an older table) hands the state to another object
 * on the same fd, with its interest, pending mark and timer as they are:
 * the entry points are called for ev from then on, and never again for the
 * object it served before. It may run inside that object's
 * mpconn_ev_handle. The async listener uses it to pass a peer from its
 * handshake record to the connection without the loop unwatching and
 * rewatching the fd; without it the state is cleaned up and a new one
 * attached. */
typedef struct mpconn_adapter {
    size_t size; /* sizeof(mpconn_adapter): lets the table grow */
    void *(*attach)(void *loop, mpconn_ev *ev);
    void (*set_io)(void *state, int events);
    void (*set_timer)(void *state, double seconds);
    void (*set_pending)(void *state, int pending);
    void (*cleanup)(void *state);
    void (*rebind)(void *state, mpconn_ev *ev);
} mpconn_adapter;

/* The adapter for mpconn's own loop (<mpconn/loop.h>); its loop argument
 * is an mpconn_loop *. Static; never freed. */
MPCONN_API const mpconn_adapter *mpconn_loop_adapter(void);

/* ------------------------------------------------------------- watchers */

/* A watcher of one descriptor, with a one-shot timer, on the loop an
 * adapter drives: the event base every async object is made of, bare, for
 * descriptors of the caller's that must live on the same loop (a server's
 * listening socket, an eventfd). */
typedef struct mpconn_watch mpconn_watch;

/* events: MPCONN_READABLE and/or MPCONN_WRITABLE (an error or hang-up on
 * the fd reads as the interest), or MPCONN_WATCH_TIMER when the timer
 * expired. */
enum { MPCONN_WATCH_TIMER = 4 };
typedef void (*mpconn_watch_cb)(mpconn_watch *w, int events, void *data);

/* Watches fd (not taken: the caller closes it, after mpconn_watch_close)
 * for nothing yet. *out is the caller's, until mpconn_watch_close. -EINVAL
 * for fd < 0, a NULL adapter or cb, or a table too small; -ENOMEM. */
MPCONN_API int mpconn_watch_new(mpconn_watch **out, int fd, const mpconn_adapter *ad, void *loop,
                                mpconn_watch_cb cb, void *data);
/* Replaces the interest: 0, MPCONN_READABLE, MPCONN_WRITABLE or both. */
MPCONN_API void mpconn_watch_set(mpconn_watch *w, int events);
/* Arms the one-shot timer (seconds >= 0, replacing one armed before) or
 * cancels it (< 0). */
MPCONN_API void mpconn_watch_set_timer(mpconn_watch *w, double seconds);
/* The descriptor watched. */
MPCONN_API int mpconn_watch_fd(const mpconn_watch *w);
/* Stops watching at once (the adapter lets go of the fd, which the caller
 * may close right after) and frees w, or, inside its callback, when that
 * returns; cb never runs again. NULL is a no-op. */
MPCONN_API void mpconn_watch_close(mpconn_watch *w);

/* ------------------------------------------------------ async connection */

typedef struct mpconn_async mpconn_async;

/* Why a connection closed, as on_close's reason: 0 for a local close, else
 * MPCONN_ERR_EOF (peer closed between messages), MPCONN_ERR_EOFMSG (inside one),
 * -ECONNRESET, -EPIPE and other negative errno, MPCONN_ERR_PROTO (bad frame
 * header), MPCONN_ERR_MSGSIZE (message too large), -ETIMEDOUT (idle or read
 * timeout, or the connect's or handshake's deadline), MPCONN_ERR_AUTH /
 * MPCONN_ERR_AUTHPROTO / MPCONN_ERR_NOKEY. Each callback may be NULL. */
typedef struct mpconn_async_cbs {
    size_t size; /* sizeof(mpconn_async_cbs): lets the struct grow */
    /* The connection is open: connected and authenticated (when opts has
     * an authkey) for mpconn_async_connect, authenticated or, without a
     * handshake, attached (inside mpconn_async_attach) for
     * mpconn_async_from_fd. Accepted ones are handed over already open and
     * get no on_open. */
    void (*on_open)(mpconn_async *a, void *data);
    /* One whole message; msg is borrowed for the call only. */
    void (*on_message)(mpconn_async *a, const void *msg, size_t len, void *data);
    /* The last callback, for an attached connection only; a is freed when
     * it returns (or when the callback of a's that closed it returns). The
     * place to free data. errmsg says more (valid during the call). It may
     * run inside a function of a's: mpconn_async_close, a send whose write
     * fails. */
    void (*on_close)(mpconn_async *a, int reason, const char *errmsg, void *data);
    /* Queued output fell to the low watermark after passing the high one. */
    void (*on_drain)(mpconn_async *a, void *data);
    /* Called while the queue is at or below the low watermark and the
     * connection is open: send more (a producer, as asynchat's). Return 1
     * while there may be more, 0 when done (it is not called again until
     * mpconn_async_set_producer is called anew). A call that returns 1
     * without sending anything is taken as "nothing yet": call
     * mpconn_async_set_producer(a, 1) when there is. */
    int (*produce)(mpconn_async *a, void *data);
    /* A descriptor asked for with mpconn_async_expect_fd arrived; fd is the
     * callee's (close-on-exec). Without this callback it is closed. */
    void (*on_fd)(mpconn_async *a, int fd, void *data);
} mpconn_async_cbs;

enum {
    MPCONN_ASYNC_PLAIN = 0,  /* no handshake */
    MPCONN_ASYNC_CLIENT = 1, /* handshake as the client when opts has an authkey */
    MPCONN_ASYNC_SERVER = 2  /* handshake as the listener side when opts has an authkey */
};

/* Wraps a connected stream socket or pipe end, made non-blocking. Takes the
 * fd on success only (closed with the connection). cbs (may be NULL: no
 * callbacks) is copied; opts (may be NULL) gives the authkey, handshake
 * timeout (counted from this call), max message, pickle protocol and
 * decoding limits, and is not kept. -EINVAL for an unknown role. The
 * connection does nothing until attached. *out belongs to the library
 * after attach: it is freed after on_close returns. */
MPCONN_API int mpconn_async_from_fd(mpconn_async **out, int fd, int role, const mpconn_opts *opts,
                                    const mpconn_async_cbs *cbs, void *data);
/* Attaches a to a loop through an adapter and starts it: a server's
 * challenge or a plain connection's queued messages go out, and on_open
 * (or, on a write error, on_close) may run inside the call, so a may be
 * gone when it returns 0. -EBUSY when a is attached already, -ENOMEM when
 * the adapter's attach fails, -EINVAL when ad's size is too small. Before this succeeds, a is still
 * the caller's (mpconn_async_close frees it). */
MPCONN_API int mpconn_async_attach(mpconn_async *a, const mpconn_adapter *ad, void *loop);
/* Replaces the callbacks and their data (e.g. in the accept callback). */
MPCONN_API void mpconn_async_set_callbacks(mpconn_async *a, const mpconn_async_cbs *cbs,
                                           void *data);
/* The fd, still owned by a; -1 once closed. */
MPCONN_API int mpconn_async_fileno(const mpconn_async *a);
/* The peer's address in mpconn syntax ("127.0.0.1:5000", "[::1]:5000",
 * "@name", a path, or "" for an unbound Unix peer, as CPython gives it),
 * owned by a until the next call or the close; pid, uid and gid (each may
 * be NULL) get the peer's credentials on a Unix socket, else -1. */
MPCONN_API const char *mpconn_async_peer(mpconn_async *a, pid_t *pid, uid_t *uid, gid_t *gid);
/* What went wrong last (owned by a). */
MPCONN_API const char *mpconn_async_errmsg(const mpconn_async *a);

/* Queues one message, copied; never blocks. Writes at once when nothing is
 * queued before it; before the connection is open (not attached,
 * connecting, in the handshake) it waits in the queue. MPCONN_ERR_CLOSED once
 * closing. A write error closes the connection inside the call: on_close
 * runs, and outside a's own callbacks a is freed, before the error is
 * returned. The same holds for the two sends below. */
MPCONN_API int mpconn_async_send(mpconn_async *a, const void *buf, size_t len);
/* Queues buf without copying: release(buf, arg) runs once it is written or
 * dropped (also when this call fails). Outside MPCONN_FRAME_MP an empty
 * message has no byte to write: it is not queued, and release runs inside
 * the call. */
MPCONN_API int mpconn_async_send_owned(mpconn_async *a, void *buf, size_t len,
                                       void (*release)(void *buf, void *arg), void *arg);
/* From on_message: the message as a buffer of the caller's, freed with
 * free() or handed on (mpconn_async_send_owned with a release that frees
 * it, for an echo without a copy). A message that came in more than one
 * read (a long one) is taken from a without a copy; a short one, which
 * lies in the read buffer, is copied. msg and len are on_message's; NULL
 * when out of memory. */
MPCONN_API void *mpconn_async_take_message(mpconn_async *a, const void *msg, size_t len);
/* Pickles v with the connection's protocol and queues it. */
MPCONN_API int mpconn_async_send_value(mpconn_async *a, const mpconn_value *v);
/* Decodes a message (from on_message) with the connection's limits. */
MPCONN_API int mpconn_async_decode(mpconn_async *a, mpconn_value **out, const void *msg,
                                   size_t len);

/* Descriptor passing on a Unix socket, the wire form of
 * multiprocessing.reduction.send_handle / recv_handle (one count byte with
 * SCM_RIGHTS; no 'A' acknowledgement, which CPython uses only on macOS).
 * Receiving needs mpconn_async_set_fd_passing(a, 1) first, before the peer
 * may send one: reads then take descriptors in (recvmsg). Without it reads
 * are plain, and the kernel closes any descriptor a peer passes before it
 * reaches this process (nothing is held, nothing is counted).
 * send_fd queues a duplicate of fd (fd stays the caller's) in order with
 * the messages around it; it needs no setting. expect_fd says the next
 * byte of input is such a count byte: its descriptor goes to on_fd, a byte
 * without one closes the connection with MPCONN_ERR_PROTO; -EINVAL without
 * fd passing on. With fd passing on, descriptors that arrive unasked are
 * closed as soon as the byte they came with is read, and counted
 * (mpconn_async_dropped_fds). MPCONN_ERR_NOTSUP on anything but a Unix
 * socket; set_fd_passing may also return -ENOMEM. */
MPCONN_API int mpconn_async_set_fd_passing(mpconn_async *a, int enable);
MPCONN_API int mpconn_async_send_fd(mpconn_async *a, int fd);
/* The next input byte not yet taken is a count byte; from on_message, the
 * one right after that message. */
MPCONN_API int mpconn_async_expect_fd(mpconn_async *a);
/* Descriptors closed unasked, plus one for each read whose descriptors
 * beyond 8 the kernel closed. */
MPCONN_API size_t mpconn_async_dropped_fds(const mpconn_async *a);

/* Bytes queued and not yet written. */
MPCONN_API size_t mpconn_async_queued(const mpconn_async *a);
/* Default 64 KiB / 16 KiB. low <= high. */
MPCONN_API int mpconn_async_set_watermarks(mpconn_async *a, size_t high, size_t low);
/* 1 when the queue has passed the high watermark and not yet drained. */
MPCONN_API int mpconn_async_above_high(const mpconn_async *a);
/* enable 1: produce is called (at once when a is open and attached, then
 * as the queue drains) until it returns 0; 0 stops calling it. */
MPCONN_API void mpconn_async_set_producer(mpconn_async *a, int enable);

/* No on_message after pause, even for the rest of bytes already read (they
 * wait in a); after resume the loop delivers them (set_pending), never the
 * call itself. */
MPCONN_API void mpconn_async_pause_reading(mpconn_async *a);
MPCONN_API void mpconn_async_resume_reading(mpconn_async *a);

/* Framing of what is received (what is sent is framed the same way only
 * in MPCONN_FRAME_MP; in the other modes send writes the bytes as given).
 * MPCONN_FRAME_DELIM: messages end with arg[0..n) (1 to 32 bytes, not part
 * of the message); MPCONN_FRAME_COUNT: n bytes each; MPCONN_FRAME_RAW:
 * whatever arrives. */
enum { MPCONN_FRAME_MP = 0, MPCONN_FRAME_DELIM = 1, MPCONN_FRAME_COUNT = 2, MPCONN_FRAME_RAW = 3 };
/* Sets the framing; -EINVAL for an unknown mode, a delimiter of 0 or more
 * than 32 bytes, or a count of 0. May be called from on_message: it applies
 * to the next message (a message begun in another mode is dropped). */
MPCONN_API int mpconn_async_set_framing(mpconn_async *a, int mode, const void *arg, size_t n);
/* 0: no limit (raw mode delivers at most this much at a time). */
MPCONN_API void mpconn_async_set_max_message(mpconn_async *a, uint64_t bytes);
/* idle: no byte either way for that long closes with -ETIMEDOUT; read: a
 * message begun and not finished for that long does too. < 0 (default)
 * off. 0, or -ENOMEM. */
MPCONN_API int mpconn_async_set_timeouts(mpconn_async *a, double idle, double read);

/* Closes now, dropping what is queued (release runs for owned buffers)
 * and closing the fd; on_close(0) runs before it returns, the free when
 * the stack unwinds. Before attach: frees at once, without on_close. */
MPCONN_API void mpconn_async_close(mpconn_async *a);
/* Stops reading, writes everything queued, then closes (on_close(0)).
 * With nothing queued, or before the connection is open, it closes at
 * once, as mpconn_async_close. */
MPCONN_API void mpconn_async_close_when_done(mpconn_async *a);

/* -------------------------------------------------------- async listener */

typedef struct mpconn_async_listener mpconn_async_listener;

/* a is open (authenticated when the listener has an authkey) and attached
 * to the listener's loop, with no callbacks yet: set them here. a belongs
 * to the library, as after mpconn_async_attach. */
typedef void (*mpconn_accept_cb)(mpconn_async_listener *l, mpconn_async *a, void *data);

/* Listens on address (the syntax of mpconn_listener_open) and accepts on
 * the loop: handshakes run concurrently on the loop with their deadline;
 * only authenticated connections reach on_accept; refused peers go to the
 * reject callback. A tls:HOST:PORT address needs a server TLS config in
 * opts (mpconn_opts_set_tls; MPCONN_ERR_TLSCONFIG otherwise): every peer's
 * TLS handshake runs on the loop first, then the authkey's inside TLS,
 * both within the handshake timeout. opts (may be NULL) is copied. *out is the caller's,
 * freed with mpconn_async_listener_free. errmsg (may be NULL) receives the
 * reason on failure. */
MPCONN_API int mpconn_async_listener_open(mpconn_async_listener **out, const char *address,
                                          const mpconn_opts *opts, const mpconn_adapter *ad,
                                          void *loop, mpconn_accept_cb on_accept, void *data,
                                          char *errmsg, size_t errlen);
/* A NULL ad above opens the listener unattached: bound and listening (its
 * address known, peers waiting in the backlog), accepting nothing until
 * attached here. -EBUSY when l is attached already, -ENOMEM, -EINVAL when
 * ad's table is too small. */
MPCONN_API int mpconn_async_listener_attach(mpconn_async_listener *l, const mpconn_adapter *ad,
                                            void *loop);
/* Called for each refused peer (uid policy, failed or timed-out handshake,
 * dropped for a newer one, out of descriptors) with the code and a message
 * naming the peer; the message is valid during the call only. */
MPCONN_API void mpconn_async_listener_on_reject(mpconn_async_listener *l, mpconn_reject_cb cb,
                                                void *data);
/* Handshakes under way at once (default 4096; 0 is -EINVAL). At the cap,
 * the oldest is dropped (reported -ETIMEDOUT) to make room: a flood of
 * silent peers never locks a real one out. */
MPCONN_API int mpconn_async_listener_set_max_handshakes(mpconn_async_listener *l, size_t n);
/* Stops and resumes accepting (peers then wait in the backlog). */
MPCONN_API void mpconn_async_listener_pause(mpconn_async_listener *l);
MPCONN_API void mpconn_async_listener_resume(mpconn_async_listener *l);
/* The real address, as mpconn_listener_address; owned by l. */
MPCONN_API const char *mpconn_async_listener_address(const mpconn_async_listener *l);
/* Handshakes under way now. */
MPCONN_API size_t mpconn_async_listener_handshakes(const mpconn_async_listener *l);
/* Closes the socket (and its file), drops handshakes under way; accepted
 * connections live on. Safe inside its callbacks (the free then waits
 * until they return). NULL is a no-op. */
MPCONN_API void mpconn_async_listener_free(mpconn_async_listener *l);

/* ---------------------------------------------------------- async client */

/* Connects without blocking (a Unix path, @abstract, or a numeric
 * HOST:PORT — resolving names is the caller's, so the loop never blocks in
 * getaddrinfo: MPCONN_ERR_ADDR for a name), then runs the handshake; on_open
 * when done, on_close on failure (the connect timeout is opts' connect
 * timeout, the handshake's its handshake timeout, counted from the
 * connect). tls:HOST:PORT speaks TLS with opts' client config (checking
 * the certificate against HOST unless the config names a server), its
 * handshake first, within the handshake timeout. A failure found at once
 * (the address, a connect refused outright) is returned, with errmsg (may
 * be NULL), and no callback runs. opts (may be NULL) is copied. *out
 * belongs to the library as after attach. */
MPCONN_API int mpconn_async_connect(mpconn_async **out, const char *address,
                                    const mpconn_opts *opts, const mpconn_async_cbs *cbs,
                                    void *data, const mpconn_adapter *ad, void *loop, char *errmsg,
                                    size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
