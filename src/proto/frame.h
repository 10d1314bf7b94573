/* Message framing of multiprocessing.connection without I/O: the length
 * header, an incremental header decoder and a whole-message decoder that
 * take the stream in any split. */
#ifndef MPCI_PROTO_FRAME_H
#define MPCI_PROTO_FRAME_H

#include "mpconn.h"

#include <stddef.h>
#include <stdint.h>

#define MPCI_HDR_MAX 12

/* Writes the header of a len-byte payload; returns 4 or 12. */
size_t mpci_frame_header(uint8_t out[MPCI_HDR_MAX], uint64_t len);

/* Incremental header decoder: bytes may arrive in any split. */
typedef struct mpci_hdr {
    uint8_t buf[MPCI_HDR_MAX];
    uint32_t have; /* at most MPCI_HDR_MAX; small, as every idle async connection holds one */
} mpci_hdr;

static inline void mpci_hdr_reset(mpci_hdr *h)
{
    h->have = 0;
}
/* The common header, whole at p: the 4-byte form of a length below 2 GiB.
 * 1 with *len set, else 0 (fewer bytes, the long form, or a bad length:
 * mpci_hdr_feed tells them apart). Inline, for the decoders' fast paths. */
static inline int mpci_hdr_short(const uint8_t *p, size_t n, uint64_t *len)
{
    if (n < 4 || p[0] >= 0x80)
        return 0;
    *len = (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3];
    return 1;
}
/* Consumes at most what the header needs from p[0..n); *used says how much.
 * Returns 1 with *len set when the header is complete, 0 when more bytes are
 * needed, MPCONN_ERR_PROTO for a negative length other than -1. */
int mpci_hdr_feed(mpci_hdr *h, const uint8_t *p, size_t n, size_t *used, uint64_t *len);

/* Whole-message decoder: the payload buffer grows only as bytes arrive,
 * never with what a header merely claims. Whole messages come from
 * mpci_msgdec_feed; a connection that moves the payload itself (straight
 * from its read-ahead buffer or the fd) uses the steps below it. */
typedef struct mpci_msgdec {
    mpci_hdr hdr;
    uint64_t len;  /* payload length once the header is complete */
    uint8_t *data; /* payload collected so far */
    size_t got, cap;
    uint64_t max; /* 0: no limit */
    int in_body;  /* header complete */
} mpci_msgdec;

void mpci_msgdec_init(mpci_msgdec *d, uint64_t max);
/* Frees the buffer and forgets any message under way (max stays). */
void mpci_msgdec_free(mpci_msgdec *d);
/* Returns 1 when a message is complete (*used bytes consumed; take it with
 * mpci_msgdec_take), 0 when all n bytes were consumed and more are needed,
 * or a negative code (MPCONN_ERR_PROTO, MPCONN_ERR_MSGSIZE, -ENOMEM). */
int mpci_msgdec_feed(mpci_msgdec *d, const uint8_t *p, size_t n, size_t *used);
/* Hands over the completed payload (caller frees; NULL only when out of
 * memory) and resets for the next message. */
uint8_t *mpci_msgdec_take(mpci_msgdec *d, size_t *len);

/* The header step: consumes what the header still needs from p[0..n).
 * Returns 1 when it is complete (d->len set, the payload next), 0 when
 * more is needed, MPCONN_ERR_PROTO or MPCONN_ERR_MSGSIZE (over max). */
int mpci_msgdec_header(mpci_msgdec *d, const uint8_t *p, size_t n, size_t *used);
/* Where the payload's next bytes go, *room of them (> 0; call while
 * d->got < d->len): the buffer doubles, starting at first bytes, only once
 * the bytes that came have filled it, and never past d->len. The caller
 * adds what it wrote to d->got. NULL when out of memory. */
uint8_t *mpci_msgdec_room(mpci_msgdec *d, size_t first, size_t *room);
/* Appends n payload bytes collected elsewhere: 0 or -ENOMEM. */
int mpci_msgdec_append(mpci_msgdec *d, const uint8_t *p, size_t n);
/* The whole payload is in d->data (a message of 0 bytes as soon as its
 * header is). */
static inline int mpci_msgdec_complete(const mpci_msgdec *d)
{
    return d->in_body && d->got == d->len;
}
/* Done with the current message, read in place: the buffer stays for the
 * next one. */
void mpci_msgdec_next(mpci_msgdec *d);

#endif
