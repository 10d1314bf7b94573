/* Servers, as Python's socketserver: a program names an address, a kind and
 * its handler hooks, and the library accepts, runs the handlers, caps them,
 * reaps them and shuts down. Stream servers (TCP, Unix paths, abstract,
 * TLS) and datagram servers (UDP, Unix datagram); see docs/server.md. */
#ifndef MPCONN_SERVER_H
#define MPCONN_SERVER_H

#include <mpconn.h>
#include <mpconn/async.h>
#include <mpconn/loop.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpconn_server mpconn_server;
/* One accepted client, or one received datagram, as the hooks see it. It
 * belongs to the server: valid from verify_request (or setup) to the end
 * of finish, and not to be kept after. */
typedef struct mpconn_request mpconn_request;

/* How handlers run, chosen when the server is made.
 *  LOOP     callbacks on the server's event loop, with async connections
 *           (the default);
 *  THREADS  one thread per connection (per datagram) from a pool capped by
 *           mpconn_server_set_max_connections;
 *  FORK     one child process per connection, capped the same way; streams
 *           only. The child is a fork() of the process that calls
 *           mpconn_server_serve_forever and has that thread alone: a lock
 *           another thread held at the fork stays held in the child for
 *           good (POSIX). So while serve_forever runs, no other thread of
 *           that process may be inside OpenSSL (a tls: client or
 *           listener, an authkey handshake), inside a malloc that has no
 *           fork handlers (AddressSanitizer's has none), or hold a lock
 *           the handlers need: do that work in another process, forked
 *           before any thread starts, or serve with THREADS or LOOP. */
enum { MPCONN_SERVER_LOOP = 0, MPCONN_SERVER_THREADS = 1, MPCONN_SERVER_FORK = 2 };

/* What a stream handler is given.
 *  FRAMED   messages: an mpconn_conn (THREADS, FORK) or an mpconn_async
 *           (LOOP), authenticated when opts has an authkey;
 *  RAW      the stream itself: the socket (THREADS, FORK) or an
 *           mpconn_async in MPCONN_FRAME_RAW (LOOP; setup may choose
 *           another framing, a line delimiter say). No handshake.
 * Datagram servers ignore it. */
enum { MPCONN_HANDLER_FRAMED = 0, MPCONN_HANDLER_RAW = 1 };

/* The hooks, with socketserver's meaning. Any may be NULL. `data` is the
 * pointer given to mpconn_server_new. verify_request, handle_timeout and
 * LOOP's hooks run on the thread of mpconn_server_serve_forever; in
 * THREADS setup, handle and finish run on worker threads, several at once;
 * in FORK they and after_fork run in the child; handle_error runs where
 * the failure is seen (the serving thread, a worker, a child).
 *
 * Streams, THREADS and FORK: verify_request, then (once the handshake has
 * passed) setup, handle, finish. Streams, LOOP: verify_request, setup once
 * the connection is open, on_message for each message, finish at close.
 * Datagrams: verify_request, then setup, handle, finish per datagram. */
typedef struct mpconn_server_hooks {
    size_t size; /* sizeof(mpconn_server_hooks): lets the struct grow */
    /* Before any byte is read or written (on tls: addresses, once the TLS
     * and authkey handshakes have passed): return 0 to serve the peer,
     * anything else to close it (or drop the datagram) unanswered. */
    int (*verify_request)(mpconn_request *r, void *data);
    /* Nonzero: the request failed (handle_error), handle is skipped,
     * finish still runs. */
    int (*setup)(mpconn_request *r, void *data);
    /* The request itself (THREADS, FORK, datagrams). Nonzero reports it
     * to handle_error; the server goes on. */
    int (*handle)(mpconn_request *r, void *data);
    /* LOOP streams: one whole message (FRAMED), one chunk (RAW) or one
     * frame of the framing setup chose; msg is borrowed for the call.
     * Nonzero reports it to handle_error and closes the connection. */
    int (*on_message)(mpconn_request *r, const void *msg, size_t len, void *data);
    /* After setup, whether it failed or not, and after handle: the place
     * to release what setup made (mpconn_request_set_user). */
    void (*finish)(mpconn_request *r, void *data);
    /* A request failed: a hook returned nonzero (code is what it returned
     * when negative, else MPCONN_ERR_BROKEN), a handshake failed, a datagram
     * was truncated (MPCONN_ERR_MSGSIZE), a reply could not be sent, a child
     * died of a signal or exited with a status other than 0 and 1 (r is
     * NULL then; message names the pid and peer). message is valid during
     * the call. r may be NULL. In FORK it runs in the child for failures
     * there (the child then exits with status 1). */
    void (*handle_error)(mpconn_server *s, mpconn_request *r, int code, const char *message,
                         void *data);
    /* No request arrived for mpconn_server_set_timeout seconds. */
    void (*handle_timeout)(mpconn_server *s, void *data);
    /* FORK: in the child right after fork, before setup; the listening
     * socket is already closed there. The child ends with _exit: what it
     * wrote to stdio is flushed by the handler or lost. */
    void (*after_fork)(mpconn_request *r, void *data);
} mpconn_server_hooks;

/* Binds and listens on address (the syntax of mpconn_listener_open for
 * streams; "udp:HOST:PORT", "udp:[V6]:PORT", "unixgram:PATH" or
 * "unixgram:@NAME" for datagrams). opts (may be NULL, copied) gives the
 * backlog (default 128), the Unix socket file's mode, the authkey and
 * handshake settings, and the connections' limits. hooks is copied.
 * "tls:HOST:PORT" serves TLS in every kind with opts' server TLS config
 * (mpconn_opts_set_tls), the handshake deadline counting the TLS handshake
 * too; RAW handlers on it are LOOP's only (MPCONN_ERR_NOTSUP for THREADS
 * and FORK, whose handlers would read the socket under the session).
 * Datagrams have no TLS. -EINVAL for FORK with datagrams, MPCONN_ERR_ADDR
 * for a bad address, MPCONN_ERR_TLSCONFIG for a tls: address without a
 * server config; errmsg (may be NULL) says more. *out is the caller's,
 * freed with mpconn_server_free. */
MPCONN_API int mpconn_server_new(mpconn_server **out, const char *address, int kind, int form,
                                 const mpconn_server_hooks *hooks, void *data,
                                 const mpconn_opts *opts, char *errmsg, size_t errlen);
/* Setters, before mpconn_server_serve_forever only (-EBUSY after).
 * max_connections: handlers at once (threads, children, LOOP connections;
 * datagrams being handled in THREADS); beyond it connections wait in the
 * backlog. Default 64 (LOOP 4096); 0 is -EINVAL. */
MPCONN_API int mpconn_server_set_max_connections(mpconn_server *s, size_t n);
/* A connection that sends nothing for this long: LOOP closes it; THREADS
 * and FORK make the handler's waiting receive fail with -ETIMEDOUT (a
 * read on a RAW socket with EAGAIN). < 0 (default): none. */
MPCONN_API int mpconn_server_set_idle_timeout(mpconn_server *s, double seconds);
/* handle_timeout runs after this long without a new request, and again
 * each time as long. < 0 (default): never. */
MPCONN_API int mpconn_server_set_timeout(mpconn_server *s, double seconds);
/* drain 1: at shutdown the listening socket closes at once (new peers are
 * refused) and running handlers are left to finish. drain 0 (default):
 * running handlers' connections are shut down (their receives see the end
 * of the stream; serve_forever still waits for a handler that does not
 * read until it returns), children are sent SIGTERM. */
MPCONN_API int mpconn_server_set_drain(mpconn_server *s, int drain);
/* Datagrams: the largest one taken whole (default 65536). A longer one is
 * reported to handle_error as MPCONN_ERR_MSGSIZE, never handled cut. */
MPCONN_API int mpconn_server_set_max_datagram(mpconn_server *s, size_t bytes);

/* Serves until mpconn_server_shutdown, then ends everything it started
 * before it returns: no worker thread, child, connection, descriptor or
 * socket file is left. Returns 0, or a negative code when the loop fails
 * (after the same cleanup). Once only: MPCONN_ERR_CLOSED after. */
MPCONN_API int mpconn_server_serve_forever(mpconn_server *s);
/* Instead of serve_forever: starts serving on a loop of the caller's, which
 * an adapter drives (mpconn_loop_adapter() with an mpconn_loop,
 * mpconn_uv_adapter() with a uv_loop_t, mpconn_event_adapter() with an
 * event_base; the table outlives s), and returns; call it on the loop's
 * thread. The caller runs the loop, and every callback of s but THREADS'
 * and FORK's handlers runs on that thread. 0; -EINVAL for a NULL ad, MPCONN_ERR_CLOSED when s has
 * started already, -ENOMEM (s is then ended). After mpconn_server_shutdown
 * the loop's thread ends the serving at its next turn: the listening
 * socket and the server's watchers close, and every LOOP connection
 * (finish runs), or with drain each as it ends; THREADS' workers are
 * joined and FORK's children reaped there, as serve_forever does. The
 * loop then has nothing of s's left. */
MPCONN_API int mpconn_server_start(mpconn_server *s, const mpconn_adapter *ad, void *loop);
/* Asks serve_forever (or a started server) to end; returns at once, never
 * waits, so it is safe from any thread, from a handler (also in the
 * serving thread), from a signal watcher on the loop, and before the
 * server starts (which then returns at once). Not from an asynchronous
 * signal handler, and not from a FORK child, whose copy of the server is
 * its own (it ends the parent's nothing). */
MPCONN_API void mpconn_server_shutdown(mpconn_server *s);
/* The event loop serve_forever runs (the handlers' loop in LOOP), made at
 * the first call: add a signal watcher there (SIGTERM calling
 * mpconn_server_shutdown, say). Worker threads block every signal. Owned
 * by s. NULL once started on a loop of the caller's (such a server has no
 * loop of its own), or when the loop cannot be made. */
MPCONN_API mpconn_loop *mpconn_server_loop(mpconn_server *s);
/* The bound address in mpconn syntax (owned by s). */
MPCONN_API const char *mpconn_server_address(const mpconn_server *s);
/* Closes what serve_forever left (all of it, when it never ran), removes a
 * socket file, frees s. Not while serve_forever runs. Started on a loop of
 * the caller's: on the loop's thread, outside s's callbacks, while the
 * loop exists; it ends what is left, drained connections included. NULL
 * is a no-op. */
MPCONN_API void mpconn_server_free(mpconn_server *s);

/* ------------------------------------------------------------- requests */

/* The server the request came to (for mpconn_server_shutdown from a
 * handler, say). */
MPCONN_API mpconn_server *mpconn_request_server(const mpconn_request *r);
/* The peer in mpconn syntax ("HOST:PORT", "[V6]:PORT", a Unix peer's
 * bound name or "" when it has none), owned by r. pid, uid and gid (each
 * may be NULL) receive a Unix peer's credentials (a stream peer's as it
 * connected, a datagram's sender's, bound or not, as it sent), -1
 * otherwise. */
MPCONN_API const char *mpconn_request_peer(const mpconn_request *r, pid_t *pid, uid_t *uid,
                                           gid_t *gid);
/* FRAMED streams in THREADS and FORK: the connection, owned by the server
 * (closed after finish; not to be freed). NULL otherwise. */
MPCONN_API mpconn_conn *mpconn_request_conn(const mpconn_request *r);
/* LOOP streams: the async connection, owned by the server's loop (closing
 * it with mpconn_async_close or _close_when_done ends the request; its
 * callbacks are the server's, not to be replaced). NULL otherwise. */
MPCONN_API mpconn_async *mpconn_request_async(const mpconn_request *r);
/* The request's socket, owned by the server (not to be closed): RAW
 * streams read and write it (write with send(..., MSG_NOSIGNAL): a peer
 * gone must not raise SIGPIPE); for FRAMED ones it is the connection's;
 * for datagrams the server's own socket. */
MPCONN_API int mpconn_request_fd(const mpconn_request *r);
/* A pointer of the handler's, kept with the request (NULL at first). */
MPCONN_API void mpconn_request_set_user(mpconn_request *r, void *user);
/* The pointer set last, or NULL. */
MPCONN_API void *mpconn_request_user(const mpconn_request *r);
/* Datagrams: the bytes received (borrowed for the request), NULL for
 * streams. */
MPCONN_API const void *mpconn_request_data(const mpconn_request *r, size_t *len);
/* Datagrams: sends buf back to the sender. MPCONN_ERR_ADDR when the sender
 * cannot be answered (a Unix datagram socket that is bound to no name);
 * -errno when sendto fails. Also reported to handle_error. */
MPCONN_API int mpconn_request_reply(mpconn_request *r, const void *buf, size_t len);

/* ------------------------------------------------------ datagram clients */

/* A datagram socket connected to a datagram server's address ("udp:HOST:PORT",
 * "udp:[V6]:PORT", "unixgram:PATH", "unixgram:@NAME"): send() and recv()
 * then talk to that server only. A Unix datagram socket is first bound to
 * an abstract name the kernel chooses (Linux autobind), so the server can
 * reply. Blocking and close-on-exec; *fd is the caller's to close (-1 on
 * failure). MPCONN_ERR_ADDR for an address that is not a datagram one or does
 * not parse, -errno when the socket cannot be made or connected; errmsg
 * (may be NULL) says more. */
MPCONN_API int mpconn_dgram_connect(int *fd, const char *address, char *errmsg, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
