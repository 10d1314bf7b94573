/* mpconn: Python's multiprocessing.connection for C.
 * The one public header. Every function that can fail returns 0 (or a
 * documented non-negative result) on success and a negative code on failure.
 *
 * Every object is an opaque handle (mpconn_opts, mpconn_conn, mpconn_value,
 * mpconn_loop, ...), made by a constructor and released by its _free or
 * _unref. The few structs whose members are public are plain records the
 * caller fills in:
 *   mpconn_waitable      one entry of mpconn_wait's array (a fixed layout:
 *                        it never grows, so arrays of it stay valid)
 *   mpconn_async_cbs     callbacks of an async connection  <mpconn/async.h>
 *   mpconn_adapter       the hooks of an event-loop adapter <mpconn/async.h>
 *   mpconn_server_hooks  the hooks of a server             <mpconn/server.h>
 * The last three may grow: each starts with a size field the caller sets to
 * its sizeof, so the library knows which members a program compiled against
 * an older header has. mpconn_uv_state and mpconn_event_state in the
 * header-only adapters <mpconn/uv.h>, <mpconn/event.h> belong to those
 * adapters, not to the library's ABI. */
#ifndef MPCONN_H
#define MPCONN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MPCONN_BUILDING)
#define MPCONN_API __attribute__((visibility("default")))
#else
#define MPCONN_API
#endif

#define MPCONN_VERSION_MAJOR 0
#define MPCONN_VERSION_MINOR 2
#define MPCONN_VERSION_PATCH 0
#define MPCONN_VERSION_STRING "0.2.0"

/* The library's version as "MAJOR.MINOR.PATCH" (static). It differs from
 * MPCONN_VERSION_STRING when a program runs with another build than the
 * header it was compiled with. */
MPCONN_API const char *mpconn_version(void);

/* ------------------------------------------------------------------ errors */

/* Negative errno values (-ECONNREFUSED, -ETIMEDOUT, -ENOMEM, ...) report OS
 * errors. The library's own codes live below MPCONN_ERR_BASE; this one list,
 * X(name, value, text), makes their enum, mpconn_strerror and
 * mpconn_errname, so the three cannot drift apart. */
#define MPCONN_ERROR_LIST(X)                                                                       \
    /* peer closed between messages (EOFError) */                                                  \
    X(ERR_EOF, -10001, "end of file: the peer closed the connection")                              \
    /* end of stream inside a message; connection broken */                                        \
    X(ERR_EOFMSG, -10002, "got end of file during message")                                        \
    /* message longer than maxlength / max message size */                                         \
    X(ERR_MSGSIZE, -10003, "bad message length")                                                   \
    /* recv_bytes_into: buffer too short; message kept */                                          \
    X(ERR_SHORTBUF, -10004, "buffer too short for the message")                                    \
    /* authentication failed (wrong key, rejected) */                                              \
    X(ERR_AUTH, -10005, "authentication failed")                                                   \
    X(ERR_AUTHPROTO, -10006, "authentication protocol error")                                      \
    /* one side has an authkey, the other none */                                                  \
    X(ERR_NOKEY, -10007, "authkey on one side only")                                               \
    X(ERR_PROTO, -10008, "malformed message header")                                               \
    X(ERR_BROKEN, -10009, "connection broken by an earlier error")                                 \
    X(ERR_CLOSED, -10010, "handle is closed")                                                      \
    X(ERR_NOTREADABLE, -10011, "connection is write-only")                                         \
    X(ERR_NOTWRITABLE, -10012, "connection is read-only")                                          \
    X(ERR_ADDR, -10013, "bad address")                                                             \
    X(ERR_NOTSUP, -10014, "not available on this platform")                                        \
    /* a live socket (any type) is bound to the address */                                         \
    X(ERR_ADDRINUSE, -10015, "address in use by a live socket")                                    \
    /* peer credentials refused (uid policy) */                                                    \
    X(ERR_PEER, -10016, "peer refused by policy")                                                  \
    X(ERR_PICKLE, -10017, "malformed pickle")                                                      \
    X(ERR_REFUSED, -10018, "pickle refused: it would import or call something")                    \
    X(ERR_LIMIT, -10019, "decoder limit exceeded")                                                 \
    /* pack/unpack/accessors */                                                                    \
    X(ERR_TYPE, -10020, "value of the wrong type")                                                 \
    /* Python literal syntax error */                                                              \
    X(ERR_SYNTAX, -10021, "syntax error")                                                          \
    /* integer does not fit the requested C type */                                                \
    X(ERR_RANGE, -10022, "integer out of range")                                                   \
    X(ERR_RECURSIVE, -10023, "value contains itself")                                              \
    /* unhashable dict key or set item */                                                          \
    X(ERR_UNHASHABLE, -10024, "unhashable value")                                                  \
    /* TLS (<mpconn/tls.h>): an alert, a bad record, no common version */                          \
    X(ERR_TLS, -10100, "TLS protocol failure")                                                     \
    /* the peer's certificate was refused, or a required one missing */                            \
    X(ERR_TLSVERIFY, -10101, "TLS certificate verification failed")                                \
    /* the stream ended without close_notify */                                                    \
    X(ERR_TRUNCATED, -10102, "TLS stream truncated: no close_notify")                              \
    /* unusable certificate, key, trust anchors or option */                                       \
    X(ERR_TLSCONFIG, -10103, "unusable TLS configuration")

#define MPCONN_ERROR_ENUM(name, value, text) MPCONN_##name = value,
enum { MPCONN_ERR_BASE = -10000, MPCONN_ERROR_LIST(MPCONN_ERROR_ENUM) };
#undef MPCONN_ERROR_ENUM

/* A short static description of any code (negative errno included). */
MPCONN_API const char *mpconn_strerror(int code);
/* The code's symbolic name, static: "MPCONN_ERR_EOF", "ECONNREFUSED" for
 * -ECONNREFUSED, "0" for success, "UNKNOWN" for a code that is neither. */
MPCONN_API const char *mpconn_errname(int code);

/* ----------------------------------------------------------------- options */

/* Options shared by listeners, clients and connections. Copied when passed to
 * a constructor, so the caller may free or reuse them right after.
 * The setters are not thread-safe; once set, one opts may be passed to
 * constructors in several threads at once. An opts with an authkey keeps
 * keyed HMAC state and a pool of challenge nonces between handshakes: a
 * client that connects often should reuse one opts rather than build one
 * per connection. */
typedef struct mpconn_opts mpconn_opts;

/* *out receives new options with the defaults below; the caller frees them
 * with mpconn_opts_free. -ENOMEM when out of memory. */
MPCONN_API int mpconn_opts_new(mpconn_opts **out);
/* *out receives a copy of o (the defaults when o is NULL), freed with
 * mpconn_opts_free. -ENOMEM when out of memory. */
MPCONN_API int mpconn_opts_dup(mpconn_opts **out, const mpconn_opts *o);
/* Wipes the authkey copy and frees o. NULL is a no-op. */
MPCONN_API void mpconn_opts_free(mpconn_opts *o);

/* The authkey enables the mutual HMAC handshake. The bytes are copied. */
MPCONN_API int mpconn_opts_set_authkey(mpconn_opts *o, const void *key, size_t len);
/* Digest of the challenge this side delivers: "sha256" (default), "md5",
 * "sha384", "sha3_256", "sha3_384"; or "legacy" for the 20-byte challenge of
 * CPython <= 3.11 (answered with raw HMAC-MD5). */
MPCONN_API int mpconn_opts_set_digest(mpconn_opts *o, const char *name);
/* 0 refuses MD5 in any form (legacy answers, {md5} challenges). Default 1. */
MPCONN_API int mpconn_opts_set_allow_md5(mpconn_opts *o, int allow);
/* Seconds for the whole handshake of one connection; < 0 waits forever.
 * Default 20. */
MPCONN_API int mpconn_opts_set_handshake_timeout(mpconn_opts *o, double seconds);
/* Seconds for connect(); < 0 (default) waits as long as the OS does. */
MPCONN_API int mpconn_opts_set_connect_timeout(mpconn_opts *o, double seconds);
/* Per-call timeouts of the connections made, for sends and for receives;
 * < 0 (default) blocks. */
MPCONN_API int mpconn_opts_set_send_timeout(mpconn_opts *o, double seconds);
MPCONN_API int mpconn_opts_set_recv_timeout(mpconn_opts *o, double seconds);
/* Largest message a connection accepts; 0 (default) is no limit. */
MPCONN_API int mpconn_opts_set_max_message(mpconn_opts *o, uint64_t bytes);
/* listen() backlog; default 128. */
MPCONN_API int mpconn_opts_set_backlog(mpconn_opts *o, int backlog);
/* SO_REUSEADDR on a TCP or UDP socket a listener or server binds: 1
 * (default, as CPython's Listener and socketserver's allow_reuse_address
 * do) binds a port whose old connections linger in TIME_WAIT; 0 refuses
 * it while they do. */
MPCONN_API int mpconn_opts_set_reuse_address(mpconn_opts *o, int reuse);
/* Permission bits of a Unix socket file, exactly, whatever the umask; the
 * file never exists with wider ones. Default: as the umask leaves them. */
MPCONN_API int mpconn_opts_set_mode(mpconn_opts *o, unsigned mode);
/* Accept only Unix-socket peers whose uid is in the list (copied); n = 0
 * clears the list. Without a list an abstract-namespace listener that has
 * no authkey accepts only its own uid. Unix datagram servers apply the same
 * rule to each datagram's sender (they have no authkey). */
MPCONN_API int mpconn_opts_set_allowed_uids(mpconn_opts *o, const uid_t *uids, size_t n);
/* Let an abstract-namespace listener without authkey accept any uid. */
MPCONN_API int mpconn_opts_set_abstract_any_uid(mpconn_opts *o, int allow);
/* Pickle protocol used by mpconn_conn_send (2..5); default 4. */
MPCONN_API int mpconn_opts_set_pickle_protocol(mpconn_opts *o, int protocol);
/* Decoder limits used by mpconn_conn_recv and mpconn_value_decode; 0 keeps
 * the default. A pickle that exceeds one fails with MPCONN_ERR_LIMIT.
 *   max_depth  nesting of containers, and open MARKs; default 1000
 *   max_items  values made (each opcode that pushes one); default 10,000,000
 *   max_memo   highest memo index + 1; default 1,000,000
 *   max_alloc  bytes of memory the decode holds; default 1 GiB
 * max_alloc counts what is really allocated, as malloc hands it out (its
 * header and 16-byte rounding included): each value's struct at its own
 * size with inline text or items (ints and floats 32 bytes; None, bools and
 * ints -5..256 are shared and cost nothing), item and entry arrays and
 * dict/set index tables as they grow, the decoder's stack, memo and
 * bookkeeping arrays, the table of compared key pairs, and scratch buffers
 * of text conversions. A string or a big int is checked before it is
 * allocated; a container's growth right after (so by at most one array).
 * Work is bounded too: a dict or set probe run stops at 512 slots (keys
 * crafted to collide fail with MPCONN_ERR_LIMIT), and key comparisons
 * remember the pairs of shared sub-values already compared. */
MPCONN_API int mpconn_opts_set_decode_limits(mpconn_opts *o, size_t max_depth, size_t max_items,
                                             size_t max_memo, size_t max_alloc);
/* What a Python 2 str in a pickle (protocol 0-2 STRING opcodes, which
 * Python 2 writes for its str) becomes, as CPython's Unpickler encoding=:
 * MPCONN_PY2_STR_ASCII (the default, CPython's too): a str when ASCII,
 * else MPCONN_ERR_PICKLE; MPCONN_PY2_STR_BYTES: bytes, always (binary data
 * from Python 2); MPCONN_PY2_STR_LATIN1: a str, each byte the code point
 * of its value. */
enum { MPCONN_PY2_STR_ASCII = 0, MPCONN_PY2_STR_BYTES = 1, MPCONN_PY2_STR_LATIN1 = 2 };
/* Sets what a Python 2 str becomes (MPCONN_PY2_STR_*, above) for decoders
 * given o; -EINVAL for another value (nothing is changed). */
MPCONN_API int mpconn_opts_set_py2_str(mpconn_opts *o, int as);
/* A print limit of this value is lifted. */
#define MPCONN_UNLIMITED SIZE_MAX
/* Print limits used by the _opts forms of repr, JSON and the literal parser;
 * 0 keeps the default, MPCONN_UNLIMITED lifts the limit.
 * max_bytes bounds the text of one repr or JSON (default 64 MiB): a value
 * that shares containers (x = [x, x] nested 32 deep is a 68-byte pickle)
 * expands to more text than memory holds, so the writer stops at the limit,
 * having done work in proportion to what it wrote.
 * max_int_digits bounds the decimal digits of one int, printed or parsed
 * (default 4300, CPython's sys.get_int_max_str_digits()); at least 640,
 * as in CPython, else -EINVAL (nothing is changed). Conversion takes
 * O(n^1.6 log n) time. */
MPCONN_API int mpconn_opts_set_print_limits(mpconn_opts *o, size_t max_bytes,
                                            size_t max_int_digits);
/* truncate 1: repr and JSON text longer than max_bytes is cut at a
 * character boundary at most max_bytes long and returned with 1 instead
 * of failing with MPCONN_ERR_LIMIT. Default 0. An int over max_int_digits
 * fails all the same. */
MPCONN_API int mpconn_opts_set_print_truncate(mpconn_opts *o, int truncate);

/* For code that runs the handshake itself (the server kinds, a transport
 * of its own): a machine of <mpconn/proto.h> for role MPCONN_AUTH_SERVER or
 * MPCONN_AUTH_CLIENT with o's authkey, digest and MD5 policy. *out is the
 * caller's (mpconn_auth_free). MPCONN_ERR_NOKEY when o (may be NULL) has no
 * authkey. */
typedef struct mpconn_auth mpconn_auth;
MPCONN_API int mpconn_opts_new_auth(mpconn_auth **out, const mpconn_opts *o, int role);
/* o's handshake timeout in seconds (< 0: none); the default for NULL. */
MPCONN_API double mpconn_opts_handshake_timeout(const mpconn_opts *o);
/* o's Unix socket file mode (mpconn_opts_set_mode), or -1 when none was
 * set (and for NULL): for code that binds a socket file itself. */
MPCONN_API int mpconn_opts_mode(const mpconn_opts *o);
/* o's address reuse (mpconn_opts_set_reuse_address): 1 or 0; 1 for NULL. */
MPCONN_API int mpconn_opts_reuse_address(const mpconn_opts *o);
/* The uid policy of a listener with o, for code that accepts Unix peers
 * itself: 1 when a peer of uid may connect, else 0. With an allowed-uid
 * list, uid must be in it; otherwise on an abstract socket (abstract != 0)
 * whose peers pass no handshake (authenticated == 0) only this process's
 * uid may, unless mpconn_opts_set_abstract_any_uid. o may be NULL. */
MPCONN_API int mpconn_opts_peer_allowed(const mpconn_opts *o, int abstract, int authenticated,
                                        uid_t uid);

/* -------------------------------------------------------------- connection */

/* A message-oriented connection over a socket or a pipe. One thread uses a
 * connection at a time, as in CPython; mpconn_conn_set_send_lock makes
 * concurrent sends from several threads safe. */
typedef struct mpconn_conn mpconn_conn;

enum { MPCONN_READABLE = 1, MPCONN_WRITABLE = 2 };

/* Wraps fd (any stream socket or pipe end). Takes ownership of fd on success
 * only: mpconn_conn_free closes it. flags: MPCONN_READABLE | MPCONN_WRITABLE.
 * opts may be NULL. */
MPCONN_API int mpconn_conn_from_fd(mpconn_conn **out, int fd, int flags, const mpconn_opts *opts);
/* Closes (if open) and frees. NULL is a no-op. */
MPCONN_API void mpconn_conn_free(mpconn_conn *c);
/* Closes the fd; the handle stays valid for state queries until freed. */
MPCONN_API int mpconn_conn_close(mpconn_conn *c);
/* The fd, still owned by the connection; -1 once closed. */
MPCONN_API int mpconn_conn_fileno(const mpconn_conn *c);
/* Hands the fd to the caller and frees the connection. Bytes already read
 * ahead into the connection's buffer are lost, so detach between messages. */
MPCONN_API int mpconn_conn_detach(mpconn_conn *c);
/* 1 while messages can still be received: 0 once closed, for the write end
 * of a pipe, and once an error has lost that direction (see the table
 * below). */
MPCONN_API int mpconn_conn_readable(const mpconn_conn *c);
/* 1 while messages can still be sent: 0 once closed, for the read end of a
 * pipe, and once an error has lost that direction (see the table below). */
MPCONN_API int mpconn_conn_writable(const mpconn_conn *c);
/* 1 once mpconn_conn_close has run, 0 before. */
MPCONN_API int mpconn_conn_closed(const mpconn_conn *c);
/* What went wrong last, with addresses and causes. Owned by c. */
MPCONN_API const char *mpconn_conn_errmsg(const mpconn_conn *c);

/* Which errors leave a connection usable. "usable": the stream is where it
 * was, and any call may follow. "lost": that direction is gone for good
 * (mpconn_conn_readable or _writable says 0, and later calls that way fail
 * with MPCONN_ERR_BROKEN, or MPCONN_ERR_NOTREADABLE after MPCONN_ERR_MSGSIZE as in
 * CPython); the other direction still works unless said.
 *
 *  receiving (recv_bytes, recv_bytes_into, recv_string, recv)
 *   -ETIMEDOUT between messages     usable: nothing was taken
 *   -ETIMEDOUT inside a message     usable: what arrived is kept and the next
 *                                   receive, of any kind, continues it
 *   MPCONN_ERR_SHORTBUF                usable: the message is kept whole for the
 *                                   next receive
 *   MPCONN_ERR_PICKLE, MPCONN_ERR_REFUSED, MPCONN_ERR_LIMIT, MPCONN_ERR_RECURSIVE,
 *   MPCONN_ERR_UNHASHABLE (recv)       usable: that message was consumed whole
 *   MPCONN_ERR_EOF                     the peer closed between messages: every
 *                                   later receive says so again
 *   MPCONN_ERR_MSGSIZE                 lost, as in CPython ("bad message length")
 *   MPCONN_ERR_EOFMSG, MPCONN_ERR_PROTO, other -errno     lost
 *  sending (send_bytes, send_slice, send_string, send)
 *   -ETIMEDOUT before any byte      usable: nothing was sent
 *   -ETIMEDOUT after part of it     lost: the stream stops inside a frame
 *                                   (the message says "inside a message")
 *   -EINVAL (a NULL value, slice bounds)   usable: nothing was sent
 *   -EPIPE, -ECONNRESET             the peer is gone: later sends fail too
 *  either
 *   MPCONN_ERR_NOKEY                   lost both ways, and every later call
 *                                   says MPCONN_ERR_NOKEY: a client without
 *                                   authkey met the listener's challenge and
 *                                   hung up, at the first send when the
 *                                   challenge was already there (nothing was
 *                                   sent), else at the first receive
 *  TLS (mpconn/tls.h)
 *   MPCONN_ERR_TLS, MPCONN_ERR_TLSVERIFY, MPCONN_ERR_TRUNCATED (the stream ended
 *   without close_notify)           lost both ways
 *   -ETIMEDOUT on a send            sending lost, even before a byte counted:
 *                                   part of a record may be out
 * Codes not listed (-ENOMEM, ...) are best taken as lost. */

/* seconds < 0: block. A timeout inside a message keeps what was read and
 * the next call continues the same message (see the table above). */
MPCONN_API int mpconn_conn_set_timeouts(mpconn_conn *c, double send_seconds, double recv_seconds);
/* Largest message c accepts from now on (0: no limit), as
 * mpconn_opts_set_max_message. */
MPCONN_API int mpconn_conn_set_max_message(mpconn_conn *c, uint64_t bytes);
/* enable != 0: sends from several threads at once are serialized, so their
 * messages never mix. Receives stay one thread's at a time. */
MPCONN_API int mpconn_conn_set_send_lock(mpconn_conn *c, int enable);

/* Sends len bytes from buf as one message. */
MPCONN_API int mpconn_conn_send_bytes(mpconn_conn *c, const void *buf, size_t len);
/* send_bytes(buf, offset, size) of CPython: size (size_t)-1 means the rest. */
MPCONN_API int mpconn_conn_send_slice(mpconn_conn *c, const void *buf, size_t buflen, size_t offset,
                                      size_t size);
/* Sends strlen(s) bytes (no terminator), as the original package did. */
MPCONN_API int mpconn_conn_send_string(mpconn_conn *c, const char *s);

/* Receives one message into a new buffer (*out, freed by the caller with
 * free(); never NULL on success, even for an empty message). maxlength 0 is
 * no limit; a longer message fails with MPCONN_ERR_MSGSIZE and the connection
 * is no longer readable (as in CPython). */
MPCONN_API int mpconn_conn_recv_bytes(mpconn_conn *c, void **out, size_t *len, size_t maxlength);
/* Receives one message into buf at offset; *len is its size. When it does
 * not fit, returns MPCONN_ERR_SHORTBUF with *len set to its size and keeps the
 * whole message: the next receive of any kind returns it. */
MPCONN_API int mpconn_conn_recv_bytes_into(mpconn_conn *c, void *buf, size_t buflen, size_t offset,
                                           size_t *len);
/* One message as a NUL-terminated string (freed with free()). */
MPCONN_API int mpconn_conn_recv_string(mpconn_conn *c, char **out, size_t maxlength);

/* 1 when a message (or EOF) can be read without blocking, 0 on timeout.
 * seconds < 0 waits forever; 0 does not wait. Counts buffered bytes. */
MPCONN_API int mpconn_conn_poll(mpconn_conn *c, double seconds);

/* File descriptor passing over a Unix socket, the wire form of
 * multiprocessing.reduction.send_handle/recv_handle: one byte holding the fd
 * count with SCM_RIGHTS. CPython waits for an 'A' acknowledgement only on
 * macOS; pass ack = 1 to speak to such a peer. The sent fd stays the
 * caller's; the received fd is the caller's (close-on-exec). */
MPCONN_API int mpconn_conn_send_fd(mpconn_conn *c, int fd, int ack);
/* *fd receives the descriptor passed by the peer: exactly the one that came
 * with its count byte. A count byte without one fails with MPCONN_ERR_PROTO
 * ("count byte arrived without a descriptor"), one the kernel discarded
 * (this process out of descriptors) with -EMFILE; the byte is consumed
 * either way. */
MPCONN_API int mpconn_conn_recv_fd(mpconn_conn *c, int *fd, int ack);
/* Descriptors a peer passes that nobody asks for are never kept: one that
 * comes as send_fd sends it (alone, with its count byte) waits only while
 * its count byte is unread in the read-ahead buffer, so at most one per
 * connection, and is closed once that byte is read as message bytes; any
 * other (inside a message or the handshake, several at once) is closed as
 * it arrives. At most 8 are taken in per read (the kernel discards the
 * rest, reported in errmsg). This counts the descriptors closed so. */
MPCONN_API size_t mpconn_conn_dropped_fds(const mpconn_conn *c);

/* ---------------------------------------------------------------- pipes */

/* duplex: a socketpair, both ends read and write. Otherwise a pipe():
 * *a reads, *b writes. Both ends are the caller's. */
MPCONN_API int mpconn_pipe(mpconn_conn **a, mpconn_conn **b, int duplex, const mpconn_opts *opts);

/* ------------------------------------------------------- listener, client */

/* Addresses: "HOST:PORT", "[V6]:PORT", a path (contains '/'), "@NAME"
 * (Linux abstract namespace), with optional "tcp:" or "unix:" prefixes;
 * "tls:HOST:PORT" and "tls:[V6]:PORT" for TLS over TCP, with a TLS config
 * in the opts (mpconn_opts_set_tls in mpconn/tls.h).
 * NULL or "" for a listener: a Unix socket at a fresh temporary path. */
typedef struct mpconn_listener mpconn_listener;

/* errmsg (may be NULL) receives the reason on failure. opts may be NULL.
 * A Unix socket path already taken is reused only when no socket of any
 * kind is bound to it (a stale file left by a dead process); otherwise
 * MPCONN_ERR_ADDRINUSE says what socket is there. A path that is not a socket
 * is never removed or followed: -EEXIST (a file, a symlink, dangling or
 * not) or -EISDIR (a directory), the message saying which. */
MPCONN_API int mpconn_listener_open(mpconn_listener **out, const char *address,
                                    const mpconn_opts *opts, char *errmsg, size_t errlen);
/* Closes the socket, removes a Unix socket file it created, frees. */
MPCONN_API void mpconn_listener_free(mpconn_listener *l);
/* Returns the next authenticated connection (*out is the caller's). Peers
 * that fail the handshake, time out or are refused by policy are dropped
 * and reported to the reject callback; the listener goes on serving.
 * Handshakes of several peers proceed concurrently. timeout < 0 waits forever;
 * on timeout returns -ETIMEDOUT. */
MPCONN_API int mpconn_listener_accept(mpconn_listener *l, mpconn_conn **out, double timeout);
/* The real address in mpconn syntax ("127.0.0.1:40123", "/tmp/...").
 * Owned by l. */
MPCONN_API const char *mpconn_listener_address(const mpconn_listener *l);
/* The listening socket, owned by l (not to be closed), for an event loop of
 * the caller's. Readable means a peer connects: mpconn_listener_accept(l,
 * &c, 0) then returns a connection or -ETIMEDOUT. Handshakes under way move
 * on sockets of their own: mpconn_listener_handshakes. */
MPCONN_API int mpconn_listener_fileno(const mpconn_listener *l);
/* For an event loop of the caller's that drives accept(l, &c, 0): the
 * handshakes under way (their TLS and authkey steps run on their own
 * sockets, not on mpconn_listener_fileno). Up to cap of their fds go to
 * fds and what each waits for (MPCONN_READABLE, MPCONN_WRITABLE) to
 * events; the number under way is returned (it may exceed cap). *wait
 * (may be NULL) gets the seconds until the earliest handshake deadline,
 * < 0 when there is none, 0 when a handshake has finished or expired:
 * accept now. The fds stay l's (not to be closed). */
MPCONN_API size_t mpconn_listener_handshakes(const mpconn_listener *l, int *fds, int *events,
                                             size_t cap, double *wait);
/* What went wrong last: the last failed accept or rejected peer, with its
 * address and cause. Owned by l; "" when nothing has. */
MPCONN_API const char *mpconn_listener_errmsg(const mpconn_listener *l);
/* Peer of the last accepted connection: its address in mpconn syntax (owned
 * by l), as CPython's last_accepted: "HOST:PORT" or "[V6]:PORT" for TCP; for
 * a Unix peer the name it is bound to ("@name" if abstract), "" when it has
 * none (the usual case). Unix peers' credentials come through pid/uid/gid
 * (-1 when unknown, always for TCP). Reject messages name a Unix peer
 * "peer pid P uid U on ADDRESS". */
MPCONN_API const char *mpconn_listener_last_accepted(const mpconn_listener *l, pid_t *pid,
                                                     uid_t *uid, gid_t *gid);
/* Called for each rejected peer with the error code and a message naming the
 * peer; the message is valid during the call only. */
typedef void (*mpconn_reject_cb)(void *data, int code, const char *message);
MPCONN_API void mpconn_listener_on_reject(mpconn_listener *l, mpconn_reject_cb cb, void *data);
/* Handshakes under way at once (default 4096; 0 is -EINVAL). At the cap,
 * the oldest is dropped (reported -ETIMEDOUT) to admit the newest peer: a
 * flood of silent peers never locks a real one out. Out of descriptors,
 * the oldest handshake makes room the same way. */
MPCONN_API int mpconn_listener_set_max_handshakes(mpconn_listener *l, size_t n);

/* What mpconn_address_kind says an address names. */
enum { MPCONN_ADDR_TCP = 1, MPCONN_ADDR_UNIX = 2, MPCONN_ADDR_ABSTRACT = 3 };
/* What an address names, from its text alone (no name is resolved, nothing
 * is touched): MPCONN_ADDR_TCP, MPCONN_ADDR_UNIX (a socket file) or
 * MPCONN_ADDR_ABSTRACT. MPCONN_ERR_ADDR when it does not parse (errmsg, which
 * may be NULL, says why: a port out of range, a missing port, ...),
 * MPCONN_ERR_NOTSUP for a form this platform lacks. */
MPCONN_API int mpconn_address_kind(const char *address, char *errmsg, size_t errlen);

/* Connects and, with an authkey, authenticates. *out is the caller's. */
MPCONN_API int mpconn_client(mpconn_conn **out, const char *address, const mpconn_opts *opts,
                             char *errmsg, size_t errlen);

/* ------------------------------------------------------------------ wait */

/* One entry of mpconn_wait: exactly one of conn, listener, or fd (>= 0).
 * A plain record of fixed layout (see the top of this header). */
typedef struct mpconn_waitable {
    mpconn_conn *conn;
    mpconn_listener *listener;
    int fd;
    int ready; /* out: 1 when ready */
} mpconn_waitable;

/* Returns how many are ready (0 on timeout). seconds < 0 waits forever.
 * A connection is ready when a message (or EOF) can be read, counting bytes
 * it has already buffered; a listener when a peer connects or one of its
 * handshakes under way can move or has timed out: call
 * mpconn_listener_accept(l, &c, 0), which may then return -ETIMEDOUT. */
MPCONN_API int mpconn_wait(mpconn_waitable *items, size_t n, double seconds);

/* ---------------------------------------------------------------- values */

/* Plain Python values: reference counted, shared when referenced twice. A
 * value is used by one thread at a time. The constructors below
 * (mpconn_value_none .. mpconn_value_frozenset) return a new reference, or
 * NULL when memory runs out, and for no other reason: they accept every
 * input (text that is not UTF-8, a NULL pointer with a length), so a NULL
 * handed on to a builder rightly says -ENOMEM. mpconn_value_unref drops a
 * reference. */
typedef struct mpconn_value mpconn_value;

typedef enum mpconn_type {
    MPCONN_NONE,
    MPCONN_BOOL,
    MPCONN_INT,
    MPCONN_FLOAT,
    MPCONN_STR,
    MPCONN_BYTES,
    MPCONN_BYTEARRAY,
    MPCONN_LIST,
    MPCONN_TUPLE,
    MPCONN_DICT,
    MPCONN_SET,
    MPCONN_FROZENSET
} mpconn_type;

/* Adds a reference to v and returns v (NULL stays NULL). */
MPCONN_API mpconn_value *mpconn_value_ref(mpconn_value *v);
/* Drops one reference; the last one frees v and drops its items' (without
 * recursion, whatever the depth). NULL is a no-op. */
MPCONN_API void mpconn_value_unref(mpconn_value *v);

/* None; never NULL. */
MPCONN_API mpconn_value *mpconn_value_none(void);
/* True when b != 0, else False. */
MPCONN_API mpconn_value *mpconn_value_bool(int b);
/* An int from any int64_t. */
MPCONN_API mpconn_value *mpconn_value_int(int64_t i);
/* An integer of any size: sign and big-endian magnitude (copied);
 * magnitude NULL stands for zero bytes. */
MPCONN_API mpconn_value *mpconn_value_bigint(int negative, const uint8_t *magnitude, size_t len);
/* A float; any double, NaN and infinities included. */
MPCONN_API mpconn_value *mpconn_value_float(double d);
/* UTF-8 text, copied. Bytes that are not strict UTF-8 (overlong forms,
 * surrogates, stray bytes) are kept by Python's "surrogateescape" rule, as
 * os.fsdecode does: each such byte B (0x80..0xFF) becomes the lone
 * surrogate U+DC00 + B, and the str is one with surrogates
 * (mpconn_value_str_surrogates), which CPython receives as the same
 * surrogateescape'd str: text.encode("utf-8", "surrogateescape") gives the
 * bytes back. s NULL is "". */
MPCONN_API mpconn_value *mpconn_value_str(const char *s);
/* The same for len bytes, which may hold NUL; s NULL stands for len NUL
 * characters. */
MPCONN_API mpconn_value *mpconn_value_strn(const char *s, size_t len);
/* Text that may hold lone surrogates (U+D800..U+DFFF), as CPython's str
 * can: s is UTF-8 in which each surrogate code point is its own 3-byte
 * sequence ED A0..BF 80..BF (Python's "surrogatepass" error handler; two
 * that would form a pair stay two code points). Copied; any other byte that
 * is not UTF-8 is escaped as by mpconn_value_strn. Strict UTF-8 gives the
 * same value as mpconn_value_strn; s NULL as there. */
MPCONN_API mpconn_value *mpconn_value_strn_surrogatepass(const char *s, size_t len);
/* 1 when v is a str holding lone surrogates: its bytes (mpconn_value_get_str)
 * are then surrogatepass UTF-8, not strict UTF-8. 0 otherwise. Such strs
 * come from pickles of such Python strings, from
 * mpconn_value_strn_surrogatepass and from text given to mpconn_value_str
 * that is not UTF-8; they compare and hash as the code points they hold,
 * and pickle back to the same Python string. */
MPCONN_API int mpconn_value_str_surrogates(const mpconn_value *v);
/* bytes and bytearray of len bytes, copied; p NULL stands for len zero
 * bytes, as Python's bytes(len). */
MPCONN_API mpconn_value *mpconn_value_bytes(const void *p, size_t len);
MPCONN_API mpconn_value *mpconn_value_bytearray(const void *p, size_t len);
/* Empty containers, filled by the builders below. */
MPCONN_API mpconn_value *mpconn_value_list(void);
MPCONN_API mpconn_value *mpconn_value_tuple(void);
MPCONN_API mpconn_value *mpconn_value_dict(void);
MPCONN_API mpconn_value *mpconn_value_set(void);
MPCONN_API mpconn_value *mpconn_value_frozenset(void);

/* Builders take over (steal) the references they are given, also on
 * failure, so calls nest: mpconn_value_append(l, mpconn_value_int(1)).
 * A NULL argument fails with -ENOMEM. */
MPCONN_API int mpconn_value_append(mpconn_value *seq, mpconn_value *item); /* list, tuple */
MPCONN_API int mpconn_value_add(mpconn_value *set, mpconn_value *item);    /* set, frozenset */
/* Keeps the first insertion position of an equal key, as Python does. */
MPCONN_API int mpconn_value_dict_set(mpconn_value *dict, mpconn_value *key, mpconn_value *val);

/* The type of v (not NULL). */
MPCONN_API mpconn_type mpconn_value_type(const mpconn_value *v);
MPCONN_API const char *mpconn_type_name(mpconn_type t); /* "int", "dict", ... */
/* Items of a container, bytes of str/bytes/bytearray, 0 otherwise. */
MPCONN_API size_t mpconn_value_len(const mpconn_value *v);
/* Borrowed item i of a list, tuple, set or frozenset (insertion order), or
 * key i of a dict; NULL when out of range. */
MPCONN_API mpconn_value *mpconn_value_item(const mpconn_value *v, size_t i);
/* Borrowed value i of a dict (pairs with mpconn_value_item). */
MPCONN_API mpconn_value *mpconn_value_dict_value(const mpconn_value *v, size_t i);
/* Borrowed value for key, NULL when absent. */
MPCONN_API mpconn_value *mpconn_value_dict_get(const mpconn_value *dict, const mpconn_value *key);
/* The same for a str key given as a C string; no allocation. */
MPCONN_API mpconn_value *mpconn_value_dict_get_str(const mpconn_value *dict, const char *key);

/* Accessors: MPCONN_ERR_TYPE (out untouched) when v is NULL or of another type.
 * get_bool takes a bool only: *out is 1 or 0. */
MPCONN_API int mpconn_value_get_bool(const mpconn_value *v, int *out);
/* MPCONN_ERR_RANGE when the integer does not fit. Bools are ints, as in Python. */
MPCONN_API int mpconn_value_get_int(const mpconn_value *v, int64_t *out);
/* Sign and big-endian magnitude (no leading zero bytes; zero has len 0),
 * borrowed from v. */
MPCONN_API int mpconn_value_get_bigint(const mpconn_value *v, int *negative,
                                       const uint8_t **magnitude, size_t *len);
/* Ints convert to double as Python's float() does. */
MPCONN_API int mpconn_value_get_float(const mpconn_value *v, double *out);
/* Borrowed, NUL-terminated (the text itself may contain NUL). Strict UTF-8
 * unless mpconn_value_str_surrogates(v). */
MPCONN_API int mpconn_value_get_str(const mpconn_value *v, const char **s, size_t *len);
/* bytes or bytearray, borrowed. */
MPCONN_API int mpconn_value_get_bytes(const mpconn_value *v, const void **p, size_t *len);

/* Python's == (1 == 1.0 == True, order of dict/set irrelevant, a NaN
 * equal only to itself as the same value): 1 or 0. Shared sub-values are
 * compared once per pair, so the cost is the size of the values as graphs,
 * not as trees. */
MPCONN_API int mpconn_value_equal(const mpconn_value *a, const mpconn_value *b);

/* Pickles v (protocol 2..5, 0 for the default 4) into a new buffer freed
 * with free(). */
MPCONN_API int mpconn_value_encode(const mpconn_value *v, int protocol, void **out, size_t *len);
/* Unpickles plain values only; opts (may be NULL) gives the limits. *out is
 * the caller's. errmsg (may be NULL) names what failed. */
MPCONN_API int mpconn_value_decode(mpconn_value **out, const void *buf, size_t len,
                                   const mpconn_opts *opts, char *errmsg, size_t errlen);

/* Python's repr(v), NUL-terminated, freed with free(). Default print
 * limits: MPCONN_ERR_LIMIT beyond 64 MiB of text or for an int of more than
 * 4300 digits (ValueError in CPython). */
MPCONN_API int mpconn_value_repr(const mpconn_value *v, char **out, size_t *len);
/* JSON text (mapping in docs/json.md), freed with free(); limits as repr. */
MPCONN_API int mpconn_value_json(const mpconn_value *v, char **out, size_t *len);
/* repr and JSON under the print limits of opts (NULL: the defaults). 0, or 1
 * when opts truncate and the text was cut; *out is the caller's either way.
 * On failure nothing is returned and errmsg (may be NULL) names the limit. */
MPCONN_API int mpconn_value_repr_opts(const mpconn_value *v, const mpconn_opts *opts, char **out,
                                      size_t *len, char *errmsg, size_t errlen);
MPCONN_API int mpconn_value_json_opts(const mpconn_value *v, const mpconn_opts *opts, char **out,
                                      size_t *len, char *errmsg, size_t errlen);
/* Parses a Python literal as ast.literal_eval accepts it for these types.
 * On error errmsg says what and at which column (1-based). Decimal ints
 * of more than 4300 digits fail with MPCONN_ERR_LIMIT, as in CPython. */
MPCONN_API int mpconn_value_parse(mpconn_value **out, const char *text, size_t len, char *errmsg,
                                  size_t errlen);
/* The same with the int digit limit of opts (NULL: the default). */
MPCONN_API int mpconn_value_parse_opts(mpconn_value **out, const char *text, size_t len,
                                       const mpconn_opts *opts, char *errmsg, size_t errlen);

/* Builds a value from a format (see README "Values at a glance") into *out,
 * the caller's (NULL on failure):
 *   n None  b bool(int)  i int  I int64_t  f double  s str(const char *)
 *   s# str(const char *, size_t)  y# bytes(const void *, size_t)
 *   O value (new reference taken)  o value (stolen)
 *   [..] list  (..) tuple  {k:v ..} dict   separators ',' ':' and spaces
 * s and s# are mpconn_value_str/_strn, y# mpconn_value_bytes. Fails with
 * MPCONN_ERR_SYNTAX when the format is bad, -ENOMEM when memory runs out
 * or an O/o argument is NULL (as the builders take it), or a builder's code
 * (MPCONN_ERR_UNHASHABLE); errmsg (may be NULL) says what and at which
 * offset of fmt. On failure 'o' arguments after the point of failure are
 * not released. The mirror of mpconn_unpack. */
MPCONN_API int mpconn_pack(mpconn_value **out, char *errmsg, size_t errlen, const char *fmt, ...);
/* The same with the arguments as a va_list (left for the caller to
 * va_end), for functions that take a format of their own. */
MPCONN_API int mpconn_vpack(mpconn_value **out, char *errmsg, size_t errlen, const char *fmt,
                            va_list ap);
/* Pulls fields out of v by the same format with pointer arguments (s gives a
 * borrowed const char *, O a borrowed mpconn_value *); in a dict format
 * "{s:i}" the key is a const char * argument. '?' after a dict key's value
 * makes it optional (left untouched when absent). errmsg names the path of a
 * mismatch, e.g. "['args'][1]: expected int, got str". */
MPCONN_API int mpconn_unpack(const mpconn_value *v, char *errmsg, size_t errlen, const char *fmt,
                             ...);

/* Objects on connections: send pickles with the connection's protocol; recv
 * unpickles with its limits. A decoding error consumes the message whole and
 * leaves the connection usable. */
MPCONN_API int mpconn_conn_send(mpconn_conn *c, const mpconn_value *v);
/* *out is the caller's, released with mpconn_value_unref. */
MPCONN_API int mpconn_conn_recv(mpconn_conn *c, mpconn_value **out);

#ifdef __cplusplus
}
#endif
#include "mpconn/proto.h" /* the protocol without I/O */
#endif
