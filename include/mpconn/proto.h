/* mpconn's protocol without I/O: a frame reader fed bytes in any split, the
 * frame header writer, and the authentication handshake as a machine of
 * messages in and messages out, for programs that move the bytes themselves
 * (their own event loop, io_uring, a serial line, a test harness).
 * Reference: mpconn_proto(3). */
#ifndef MPCONN_PROTO_H
#define MPCONN_PROTO_H

#include "../mpconn.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Nothing here reads, writes, sleeps or looks at a clock; the only system
 * call is the kernel randomness mpconn_auth_start draws when no nonce was
 * given. Each object is used by one thread at a time; distinct objects are
 * independent. */

/* ------------------------------------------------------------ frames */

/* The longest frame header: -1 as 4 bytes, then an 8-byte length. */
#define MPCONN_FRAME_HEADER_MAX 12

/* Writes the header of a len-byte message into out, as CPython does: the
 * 4-byte big-endian length up to 0x7fffffff, else ff ff ff ff and the
 * 8-byte length. Returns the header's length, 4 or 12; send the header and
 * then the len payload bytes. */
MPCONN_API size_t mpconn_frame_header(uint64_t len, uint8_t out[MPCONN_FRAME_HEADER_MAX]);

/* Turns a byte stream back into whole messages. A header is a claim, not a
 * fact: the message's buffer grows as its bytes arrive, never to the length
 * a header announces, and a header above the limit fails before any of its
 * payload is kept. */
typedef struct mpconn_reader mpconn_reader;

/* A new reader (*out is the caller's, freed with mpconn_reader_free).
 * max_message is the longest message accepted, 0 for no limit. Returns 0 or
 * -ENOMEM / -EINVAL. */
MPCONN_API int mpconn_reader_new(mpconn_reader **out, uint64_t max_message);
/* Frees the reader and every byte it holds; NULL is a no-op. Messages
 * already returned by mpconn_reader_get are the caller's and stay valid. */
MPCONN_API void mpconn_reader_free(mpconn_reader *r);
/* Hands the reader the next len bytes of the stream, split anywhere (a read
 * of one byte, of a message and a half, of many messages). They are copied:
 * buf is the caller's again on return. Returns 0, -ENOMEM (the bytes were
 * not taken; feeding them again later is fine), or the reader's sticky
 * error. */
MPCONN_API int mpconn_reader_feed(mpconn_reader *r, const void *buf, size_t len);
/* The next whole message, in the order fed. Returns 1 with *msg and *len
 * set: the buffer is the caller's, freed with free(), never NULL (also for
 * an empty message). Returns 0 when more bytes are needed (*msg NULL, *len
 * 0). Returns a negative code on a malformed header (MPCONN_ERR_PROTO) or a
 * message over the limit (MPCONN_ERR_MSGSIZE): such an error is sticky, as the
 * stream has lost its place, and every later feed and get returns it; the
 * messages in front of the bad header are returned first. -ENOMEM is not
 * sticky: call again. Call it until it returns 0 after each feed. */
MPCONN_API int mpconn_reader_get(mpconn_reader *r, void **msg, size_t *len);
/* Bytes fed and not yet returned in a message. When the transport reaches
 * the end of the stream and mpconn_reader_get has returned 0, a count of 0
 * is a clean end between messages (CPython's EOFError, MPCONN_ERR_EOF) and
 * anything else is an end inside a message (MPCONN_ERR_EOFMSG). */
MPCONN_API size_t mpconn_reader_pending(const mpconn_reader *r);
/* What the sticky error was, "" while there is none. Owned by r. */
MPCONN_API const char *mpconn_reader_errmsg(const mpconn_reader *r);

/* ---------------------------------------------------- authentication */

/* One side of the mutual HMAC challenge-response that a Listener and a
 * Client run when they have an authkey: whole message payloads in, whole
 * message payloads out. Frame what it gives with mpconn_frame_header (or
 * take it framed from mpconn_auth_next_framed) and feed it the payloads an
 * mpconn_reader returns.
 *
 * The server (the side that accepted) challenges first, then answers; the
 * client answers, then challenges, sending its challenge right behind its
 * answer (which CPython's Listener reads in the same order). A loop:
 *
 *     mpconn_auth_start(a);
 *     for (;;) {
 *         while (mpconn_auth_next_framed(a, &out, &outlen))
 *             write_all(fd, out, outlen);
 *         if (mpconn_auth_done(a) != 0)
 *             break;   // 1: authenticated; < 0: failed
 *         ... read bytes, mpconn_reader_feed, then for each message
 *             mpconn_auth_feed(a, msg, len) ...
 *     }
 *
 * Send everything next gives also after the last feed: the client's last
 * #WELCOME#, and the #FAILURE# that tells a peer it failed, come out after
 * the machine has finished. Messages behind the handshake in the stream are
 * the application's: once done is 1, stop feeding the machine. */
typedef struct mpconn_auth mpconn_auth;

enum { MPCONN_AUTH_SERVER = 1, MPCONN_AUTH_CLIENT = 2 };

/* A new machine (*out is the caller's, freed with mpconn_auth_free) for
 * role MPCONN_AUTH_SERVER or MPCONN_AUTH_CLIENT. The key (keylen bytes; NULL
 * only when keylen is 0) is copied, and wiped when the machine is freed.
 * digest names the challenge this side delivers: "sha256" (NULL means it),
 * "md5", "sha384", "sha3_256", "sha3_384", or "legacy" for the 20-byte
 * challenge of CPython <= 3.11. allow_md5 = 0 refuses MD5 in every form
 * (legacy answers and challenges, {md5}). Returns 0, -ENOMEM, or -EINVAL
 * for a bad role, an unknown digest, a NULL key of non-zero length or a
 * digest that needs the MD5 that allow_md5 refuses. */
MPCONN_API int mpconn_auth_new(mpconn_auth **out, int role, const void *key, size_t keylen,
                               const char *digest, int allow_md5);
/* Wipes the key and frees; NULL is a no-op. */
MPCONN_API void mpconn_auth_free(mpconn_auth *a);
/* The random part of this side's challenge (copied), for reproducible runs
 * and tests: 20 bytes for "legacy", 40 otherwise. Without it the machine
 * draws them from the kernel. A challenge must never be issued twice, so
 * outside tests leave this alone. Before mpconn_auth_start only; returns 0
 * or -EINVAL (wrong length, NULL, or the challenge is already made). */
MPCONN_API int mpconn_auth_set_nonce(mpconn_auth *a, const void *nonce, size_t len);
/* Makes this side's challenge; a server queues it to be sent. A machine
 * not started starts at its first mpconn_auth_feed or mpconn_auth_next, so
 * the call is optional; it is where a failure to draw the nonce shows.
 * Returns 0 (also when already started) or the negative code that also
 * fails the machine. */
MPCONN_API int mpconn_auth_start(mpconn_auth *a);
/* One whole message payload received from the peer (borrowed for the
 * call). Returns what mpconn_auth_done returns afterwards. Once done or
 * failed, the machine takes no more input and a feed changes nothing. */
MPCONN_API int mpconn_auth_feed(mpconn_auth *a, const void *msg, size_t len);
/* The next message payload to send, in order: returns 1 with *msg and *len
 * set, 0 when nothing is queued. *msg is owned by a and stays valid until
 * the next mpconn_auth_feed or mpconn_auth_free. */
MPCONN_API int mpconn_auth_next(mpconn_auth *a, const void **msg, size_t *len);
/* The same message with its frame header in front, ready to write as is.
 * *msg is owned by a and stays valid until the next call of any
 * mpconn_auth_ function on a. */
MPCONN_API int mpconn_auth_next_framed(mpconn_auth *a, const void **msg, size_t *len);
/* 1 once both sides have proved they hold the key, 0 while the handshake
 * goes on (or has not started), or the negative code it failed with:
 * MPCONN_ERR_AUTH (wrong key, answer rejected, MD5 refused), MPCONN_ERR_AUTHPROTO
 * (a message the handshake does not allow, or over its 256 bytes),
 * MPCONN_ERR_NOKEY (the peer seems to have no authkey), -errno. */
MPCONN_API int mpconn_auth_done(const mpconn_auth *a);
/* Why it failed, "" while it has not. Owned by a. */
MPCONN_API const char *mpconn_auth_errmsg(const mpconn_auth *a);

#ifdef __cplusplus
}
#endif
#endif
