/* The byte side of one peer's handshake, without I/O: the auth machine fed
 * by the message decoder, its answers framed into an output buffer, and the
 * bytes that came in behind the last handshake message kept for the
 * connection. conn/handshake_io.h moves these bytes over a socket. */
#ifndef MPCI_PROTO_HANDSHAKE_H
#define MPCI_PROTO_HANDSHAKE_H

#include "proto/auth.h"
#include "proto/frame.h"

/* The framed output one step can leave unsent: a client's answer and its
 * challenge (62 + 65 bytes), then a WELCOME, at most. */
#define MPCI_HS_OUT_MAX 144
/* Bytes kept from behind the last handshake message, at most. */
#define MPCI_HS_LEFT_MAX 1024

/* One handshake in progress, a few hundred bytes: buffers that only some
 * handshakes need (a message split across reads, bytes behind the last
 * message) are allocated when their bytes arrive, and the framed output
 * only while some of it is unsent, so a server that has sent its challenge
 * keeps the machine alone. Not to be moved once started: errmsg points
 * into it. */
typedef struct mpci_hs {
    mpci_auth auth;
    mpci_msgdec *dec; /* a message split across reads; NULL otherwise */
    uint8_t *left;    /* bytes that followed the last handshake message (heap) */
    uint8_t *out;     /* framed output, MPCI_HS_OUT_MAX bytes (heap); NULL once all is sent */
    uint16_t nleft;   /* at most MPCI_HS_LEFT_MAX */
    uint16_t outlen, outpos; /* out[outpos..outlen) not yet sent */
    uint8_t state;           /* MPCI_AUTH_NEED_INPUT, _DONE, _FAILED */
    /* Filled by the I/O side (conn/handshake_io.c), which reads them: */
    uint8_t has_left_fd; /* left ends with a count byte and left_fd came with it */
    int left_fd;         /* owned until the connection takes it */
    int code;
    uint32_t dropped_fds; /* descriptors the peer passed during the handshake, closed */
} mpci_hs;

/* Starts the machine (see mpci_auth_init); a server's challenge is framed
 * into the output at once. 0 or a negative code. */
int mpci_hs_start(mpci_hs *h, int role, const mpci_auth_key *k, const char *digest, int allow_md5,
                  const uint8_t nonce[MPCI_NONCE_LEN]);
/* Takes bytes from the peer: whole messages go to the auth machine, its
 * answers to the output buffer, and bytes behind the last handshake
 * message to left. */
void mpci_hs_consume(mpci_hs *h, const uint8_t *p, size_t n);
void mpci_hs_fail(mpci_hs *h, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Frees the decoder, the output and the bytes kept (take left first),
 * and closes left_fd if nobody took it. */
void mpci_hs_clear(mpci_hs *h);
/* n more bytes of the output were sent: the buffer goes once all is. */
void mpci_hs_sent(mpci_hs *h, size_t n);

/* The reason once FAILED (in the machine's buffer), else "". */
static inline const char *mpci_hs_errmsg(const mpci_hs *h)
{
    return h->state == MPCI_AUTH_FAILED ? h->auth.errmsg : "";
}

/* Whether framed output waits to be sent (out[outpos..outlen)). */
static inline int mpci_hs_has_output(const mpci_hs *h)
{
    return h->out && h->outpos < h->outlen;
}

#endif
