/* Internal interfaces shared across mpconn's source files (prefix mpci_).
 * Nothing here is exported; layer 1 (frame, auth, pickle) does no I/O. */
#ifndef MPCI_H
#define MPCI_H

#include "mpconn.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/socket.h>

#define MPCI_ERRMSG_MAX 256

/* ------------------------------------------------------------ error text */

/* Formats into dst (capacity cap, may be NULL/0) and returns code, so that
 * "return mpci_err(buf, n, code, ...)" both records and reports. */
int mpci_err(char *dst, size_t cap, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int mpci_verr(char *dst, size_t cap, int code, const char *fmt, va_list ap);
void mpci_copy_msg(char *dst, size_t cap, const char *src);

/* ---------------------------------------------------------------- opts */

struct mpconn_opts {
    unsigned char *authkey; /* NULL: no authentication */
    size_t authkey_len;
    char digest[16]; /* "sha256", ..., or "legacy" */
    int allow_md5;
    double handshake_timeout;
    double connect_timeout;
    double send_timeout;
    double recv_timeout;
    uint64_t max_message;
    int backlog;
    int mode; /* -1: leave as umask gives */
    uid_t *uids;
    size_t nuids;
    int abstract_any_uid;
    int pickle_protocol;
    size_t max_depth, max_items, max_memo, max_alloc;
    size_t max_print, max_int_digits; /* 0 in a zeroed opts: the defaults */
    int print_truncate;
    int no_pipeline;               /* not public: lets make bench measure what pipelining saves */
    struct mpci_auth_cache *cache; /* for authkey, owned; may be NULL */
};

/* Print limits (mpconn_opts_set_print_limits). */
#define MPCI_PRINT_MAX_DEFAULT ((size_t)64 << 20)
#define MPCI_INT_DIGITS_DEFAULT 4300

void mpci_opts_defaults(struct mpconn_opts *o);
/* Deep copy into dst, an initialised opts whose own storage is released. */
int mpci_opts_copy(struct mpconn_opts *dst, const struct mpconn_opts *src);
/* The plain settings only: no key, no uid list, nothing to free. */
void mpci_opts_copy_plain(struct mpconn_opts *dst, const struct mpconn_opts *src);
void mpci_opts_clear(struct mpconn_opts *o);

/* ------------------------------------------------------- frame (layer 1) */

#define MPCI_HDR_MAX 12

/* Writes the header of a len-byte payload; returns 4 or 12. */
size_t mpci_frame_header(uint8_t out[MPCI_HDR_MAX], uint64_t len);

/* Incremental header decoder: bytes may arrive in any split. */
typedef struct mpci_hdr {
    uint8_t buf[MPCI_HDR_MAX];
    size_t have;
} mpci_hdr;

static inline void mpci_hdr_reset(mpci_hdr *h)
{
    h->have = 0;
}
/* Consumes at most what the header needs from p[0..n); *used says how much.
 * Returns 1 with *len set when the header is complete, 0 when more bytes are
 * needed, MPCONN_EPROTO for a negative length other than -1. */
int mpci_hdr_feed(mpci_hdr *h, const uint8_t *p, size_t n, size_t *used, uint64_t *len);

/* Whole-message decoder for small bounded messages (handshake, async use):
 * the payload buffer grows only as bytes arrive. */
typedef struct mpci_msgdec {
    mpci_hdr hdr;
    uint64_t len;  /* payload length once the header is complete */
    int in_body;   /* header complete */
    uint8_t *data; /* payload collected so far */
    size_t got, cap;
    uint64_t max; /* 0: no limit */
} mpci_msgdec;

void mpci_msgdec_init(mpci_msgdec *d, uint64_t max);
void mpci_msgdec_free(mpci_msgdec *d);
/* Returns 1 when a message is complete (*used bytes consumed; take it with
 * mpci_msgdec_take), 0 when all n bytes were consumed and more are needed,
 * or a negative code (MPCONN_EPROTO, MPCONN_EMSGSIZE, -ENOMEM). */
int mpci_msgdec_feed(mpci_msgdec *d, const uint8_t *p, size_t n, size_t *used);
/* Hands over the completed payload (caller frees; non-NULL) and resets. */
uint8_t *mpci_msgdec_take(mpci_msgdec *d, size_t *len);

/* ------------------------------------------------ authentication (layer 1) */

#define MPCI_AUTH_MSG_MAX 256 /* the cap CPython puts on handshake messages */
#define MPCI_NONCE_LEN 40
#define MPCI_LEGACY_NONCE_LEN 20

/* What the handshakes of one authkey keep between them: a keyed HMAC
 * context per digest, made on first use and re-initialised for each MAC
 * (which keeps the key), and a pool of nonces drawn from the kernel in
 * batches, in a page the kernel wipes in a forked child. A MAC or a nonce
 * is one call, so a mutex serialises the few threads that may share a
 * cache; a thread that finds it taken goes one-shot instead of waiting. */
#define MPCI_MAC_DIGESTS 5
typedef struct mpci_auth_cache {
    const uint8_t *key; /* borrowed */
    size_t keylen;
    pthread_mutex_t lock;
    void *keyed[MPCI_MAC_DIGESTS]; /* EVP_MAC_CTX */
    struct mpci_nonce_pool *pool;  /* NULL: a getrandom() per nonce */
} mpci_auth_cache;

/* NULL when out of memory (callers then go without). */
mpci_auth_cache *mpci_auth_cache_new(const uint8_t *key, size_t keylen);
void mpci_auth_cache_free(mpci_auth_cache *c);
/* mpci_hmac through c when c (may be NULL) holds this key. */
int mpci_mac_compute(mpci_auth_cache *c, const char *digest, const uint8_t *key, size_t keylen,
                     const uint8_t *msg, size_t len, uint8_t *out);
/* A fresh challenge nonce, from c's pool when c (may be NULL) has one. */
int mpci_nonce(mpci_auth_cache *c, uint8_t out[MPCI_NONCE_LEN]);

enum { MPCI_AUTH_SERVER, MPCI_AUTH_CLIENT };
enum { MPCI_AUTH_NEED_INPUT, MPCI_AUTH_DONE, MPCI_AUTH_FAILED };

#define MPCI_AUTH_QUEUE 3

/* The challenge-response machine of one side. It consumes whole messages and
 * produces whole messages (at most MPCI_AUTH_QUEUE queued at a time: the
 * client sends its own challenge right behind its answer, saving a round
 * trip; a server fed without draining holds challenge, WELCOME and answer).
 * Randomness comes in through the nonce so the machine is deterministic. */
typedef struct mpci_auth {
    int role, state, step;
    int code;                     /* failure code once FAILED */
    char errmsg[MPCI_ERRMSG_MAX]; /* failure reason once FAILED */
    const uint8_t *key;           /* borrowed for the machine's life */
    size_t keylen;
    mpci_auth_cache *cache; /* borrowed, may be NULL */
    int no_pipeline;        /* client: challenge only after WELCOME, as CPython */
    int allow_md5;
    uint8_t challenge[MPCI_AUTH_MSG_MAX]; /* the MESSAGE we delivered (sans #CHALLENGE#) */
    size_t challenge_len;
    const char *own_digest; /* the digest our challenge asks for */
    uint8_t expect[64];     /* client: the answer it wants, made with its challenge */
    int expect_len;         /* 0: not made */
    uint8_t out[MPCI_AUTH_QUEUE][MPCI_AUTH_MSG_MAX + 16];
    size_t outlen[MPCI_AUTH_QUEUE];
    int nout, outhead;
} mpci_auth;

/* digest: "sha256", "md5", "sha384", "sha3_256", "sha3_384" or "legacy".
 * nonce must hold MPCI_NONCE_LEN bytes (the first 20 are used for legacy).
 * A server queues its challenge at once. Returns 0 or -EINVAL. */
int mpci_auth_init(mpci_auth *a, int role, const uint8_t *key, size_t keylen, const char *digest,
                   int allow_md5, const uint8_t *nonce);
/* Feeds one received message; returns the new state. */
int mpci_auth_feed(mpci_auth *a, const uint8_t *msg, size_t len);
/* Next message to send, in order; returns 0 when none is queued. The
 * pointer stays valid until the next feed. */
int mpci_auth_next_out(mpci_auth *a, const uint8_t **msg, size_t *len);

/* HMAC of msg with the named digest into out (EVP_MAX_MD_SIZE room);
 * returns its length or a negative code. */
int mpci_hmac(const char *digest, const uint8_t *key, size_t keylen, const uint8_t *msg, size_t len,
              uint8_t *out);
/* Kernel randomness (getrandom). */
int mpci_random(uint8_t *buf, size_t len);

/* ------------------------------------------------------------- addresses */

typedef struct mpci_addr {
    int family; /* AF_INET, AF_INET6, AF_UNIX */
    struct sockaddr_storage sa;
    socklen_t salen;
    int abstract;     /* AF_UNIX in the abstract namespace */
    char host[256];   /* host part as written (for name resolution) */
    int need_resolve; /* host is a name, not a numeric address */
} mpci_addr;

/* Parses mpconn's address syntax. Names are not resolved here. */
int mpci_addr_parse(mpci_addr *a, const char *text, char *errmsg, size_t errlen);
/* Formats a socket address in mpconn syntax. */
void mpci_addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t cap);
/* Fills a->sa for a need_resolve host with getaddrinfo (IPv4, as CPython's
 * (host, port) addresses are; first result). No-op for other addresses.
 * Errors name the host. */
int mpci_addr_resolve(mpci_addr *a, char *errmsg, size_t errlen);

/* Spreads a pointer's bits for open-addressing tables keyed by address. */
static inline size_t mpci_ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

/* The value of a hexadecimal digit (either case), or -1. */
static inline int mpci_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* --------------------------------------------------------------- clock */

double mpci_now(void); /* CLOCK_MONOTONIC seconds */
/* Milliseconds left until deadline (< 0: no deadline) for poll(): -1 when
 * none, 0 when passed. */
int mpci_poll_ms(double deadline);
double mpci_deadline(double seconds); /* < 0 when seconds < 0 */

/* ------------------------------------------------------- pickle (layer 1) */

/* Defined in src/proto; the connection calls these. */
int mpci_pickle_encode(const mpconn_value *v, int protocol, void **out, size_t *len);
/* Encodes into *buf (capacity *cap, grown with realloc and kept by the
 * caller, also on failure) from offset on; *len is the pickle's length. */
int mpci_pickle_encode_into(const mpconn_value *v, int protocol, uint8_t **buf, size_t *cap,
                            size_t offset, size_t *len);
int mpci_pickle_decode(const uint8_t *buf, size_t len, const struct mpconn_opts *opts,
                       mpconn_value **out, char *errmsg, size_t errlen);

/* ----------------------------------------------------------- connection */

/* What the fd of a new connection is, when the library made it (saves
 * asking the kernel); MPCI_FD_NONBLOCK and MPCI_FD_RCVTIMEO (SO_RCVTIMEO is
 * still set from the handshake) may be or-ed in. */
enum { MPCI_FD_UNKNOWN = 0, MPCI_FD_PIPE = 1, MPCI_FD_INET = 2, MPCI_FD_UNIX = 3 };
#define MPCI_FD_KIND 3
#define MPCI_FD_NONBLOCK 4
#define MPCI_FD_RCVTIMEO 8

/* ------------------------------------------------------ passed descriptors */

/* Room for descriptors in one recvmsg(); the kernel discards any more in
 * one read (MSG_CTRUNC) without installing them. */
#define MPCI_FD_ROOM 8

/* What one recvmsg() brought besides its bytes. */
typedef struct mpci_fdin {
    int fd;         /* the one descriptor kept, or -1 */
    size_t dropped; /* descriptors closed here */
    int truncated;  /* MSG_CTRUNC: the kernel discarded some */
} mpci_fdin;

/* One recvmsg() of up to cap bytes into dst with flags (MSG_CMSG_CLOEXEC
 * added). A descriptor is kept only when keep is set and it came the way
 * mpconn_conn_send_fd sends one: alone, with the count byte 1 as the last
 * byte read (the kernel ends a read behind the message that carries
 * descriptors). Every other descriptor is closed at once and counted. */
ssize_t mpci_recv_fds(int fd, void *dst, size_t cap, int flags, int keep, mpci_fdin *in);

/* Internal access for the listener and client. */
int mpci_conn_new(mpconn_conn **out, int fd, int flags, const struct mpconn_opts *opts, int kind);
void mpci_conn_seterr(mpconn_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Bytes already buffered (for wait/poll). */
size_t mpci_conn_buffered(const mpconn_conn *c);
/* Bytes read past the handshake belong to the first message. */
int mpci_conn_prefill(mpconn_conn *c, const uint8_t *p, size_t n);
/* After mpci_conn_prefill: fd (>= 0; taken over) came with the last byte
 * prefilled, its count byte; dropped descriptors were closed before. */
void mpci_conn_prefill_fd(mpconn_conn *c, int fd, size_t dropped);
/* The send lock, when mpconn_conn_set_send_lock enabled it (else no-ops). */
void mpci_conn_lock(mpconn_conn *c);
void mpci_conn_unlock(mpconn_conn *c);
/* Sends payload bytes already placed at buf + MPCI_HDR_MAX (the header is
 * written in front of them): one contiguous write. The caller holds the
 * send lock. */
int mpci_conn_send_framed(mpconn_conn *c, uint8_t *buf, size_t len);
/* A reusable send buffer owned by the connection; used under the send lock. */
void mpci_conn_scratch(mpconn_conn *c, uint8_t ***buf, size_t **cap);
/* The next whole message, in place when it sits whole in the read-ahead
 * buffer (valid until the next receive; *owned NULL), else in a buffer the
 * caller frees (*owned). */
int mpci_conn_recv_view(mpconn_conn *c, const uint8_t **p, size_t *len, void **owned);
/* The options the connection was made with (pickle protocol, limits). */
const struct mpconn_opts *mpci_conn_opts(const mpconn_conn *c);
/* This side has no authkey: treat a first #CHALLENGE# as MPCONN_ENOKEY. */
void mpci_conn_set_check_first(mpconn_conn *c);

/* For mpconn_wait: the fds of the listener's handshakes under way (up to
 * cap written to out; the count is returned), the earliest handshake
 * deadline folded into *wake (< 0: none), *ready_now set when a finished
 * handshake waits to be accepted. */
struct pollfd;
size_t mpci_listener_pending(const mpconn_listener *l, struct pollfd *out, size_t cap, double *wake,
                             int *ready_now);
/* For the async listener, which uses a listener for its socket and its
 * peer policy: the listener's options, and the policy applied to one
 * accepted fd (0, or MPCONN_EPEER; peer gets the peer's description). */
const struct mpconn_opts *mpci_listener_opts(const mpconn_listener *l);
int mpci_listener_admit(mpconn_listener *l, int fd, const struct sockaddr_storage *ss, socklen_t sl,
                        char *peer, size_t cap);

/* ------------------------------------------------------------ handshake */

/* Drives one side's mpci_auth over a socket, without blocking: framing of handshake
 * messages, queued output, a deadline. Used concurrently for many peers by
 * the listener and alone by the client. */
typedef struct mpci_hs {
    int fd;
    mpci_auth auth;
    mpci_msgdec dec;
    uint8_t out[2 * (MPCI_HDR_MAX + MPCI_AUTH_MSG_MAX + 16)];
    size_t outlen, outpos;
    uint8_t left[1024]; /* bytes that followed the last handshake message */
    size_t nleft;
    int has_left_fd;    /* left ends with a count byte and left_fd came with it */
    int left_fd;        /* owned until the connection takes it */
    size_t dropped_fds; /* descriptors the peer passed during the handshake, closed */
    double deadline;
    int blocking_reads; /* recv may block: the fd bounds it (SO_RCVTIMEO) */
    int state;          /* MPCI_AUTH_NEED_INPUT, _DONE, _FAILED */
    int code;
    char errmsg[MPCI_ERRMSG_MAX];
} mpci_hs;

/* The nonce comes from the opts' cache (or the kernel). */
int mpci_hs_init(mpci_hs *h, int fd, int role, const struct mpconn_opts *o);
/* poll() events the handshake waits for. */
short mpci_hs_events(const mpci_hs *h);
/* Takes bytes from the peer (the I/O-free half of progress): whole
 * messages go to the auth machine, its answers to the output buffer, and
 * bytes behind the last handshake message to left. */
void mpci_hs_consume(mpci_hs *h, const uint8_t *p, size_t n);
/* Does what the fd allows without blocking, reading only when readable
 * (poll() said so); returns h->state. DONE only once all output is written;
 * FAILED after a best-effort flush. */
int mpci_hs_progress(mpci_hs *h, int readable);
void mpci_hs_fail(mpci_hs *h, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Frees the decoder and closes left_fd if nobody took it. */
void mpci_hs_clear(mpci_hs *h);

#endif
