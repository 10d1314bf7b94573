/* Cutting a byte stream into messages, sans I/O: the multiprocessing frame
 * (the default), a delimiter, a byte count, or whatever arrives (raw). Fed
 * arbitrary splits; the mode may change between messages. */
#ifndef MPCI_SPLIT_H
#define MPCI_SPLIT_H

#include <stddef.h>
#include <stdint.h>

enum { MPCI_SPLIT_FRAME, MPCI_SPLIT_DELIM, MPCI_SPLIT_COUNT, MPCI_SPLIT_RAW };

#define MPCI_SPLIT_DELIM_MAX 32

typedef struct mpci_split {
    int mode;
    uint64_t max; /* largest message, 0 = none; a delimiter is not counted */
    size_t count; /* COUNT: bytes per message */
    uint8_t delim[MPCI_SPLIT_DELIM_MAX];
    size_t dlen;
    /* A message begun in an earlier feed (allocated only then). */
    uint8_t hdr[12];
    size_t hhave;
    uint64_t want; /* FRAME: payload length once the header is whole */
    int in_body;
    uint8_t *buf;
    size_t got, cap;
    int delivered; /* buf holds the last message handed out: drop it first */
} mpci_split;

void mpci_split_init(mpci_split *s, uint64_t max);
/* -EINVAL for a delimiter of 0 or more than MPCI_SPLIT_DELIM_MAX bytes, or
 * a count of 0. Takes effect for the next message; bytes of a message
 * already begun are kept only in the same mode. */
int mpci_split_set(mpci_split *s, int mode, const void *delim_or_null, size_t n);
void mpci_split_free(mpci_split *s);
/* Cuts the next message from p[0..n): returns 1 with the message in *msg, *len (borrowed:
 * inside p, or inside s until the next call), 0 when all n bytes were taken
 * and more are needed, or MPCONN_ERR_PROTO / MPCONN_ERR_MSGSIZE / -ENOMEM. *used
 * says how many bytes of p were consumed either way. */
int mpci_split_feed(mpci_split *s, const uint8_t *p, size_t n, size_t *used, const uint8_t **msg,
                    size_t *len);
/* Bytes of a message begun and not finished (for EOF inside a message). */
size_t mpci_split_partial(const mpci_split *s);
/* FRAME mode inside a long payload: room to read the rest straight into
 * (NULL when the payload is not that far along or not that long). The
 * caller reads at most *room bytes there, then calls mpci_split_feed with
 * that pointer and length, which takes them without copying. */
uint8_t *mpci_split_direct(mpci_split *s, size_t *room);

#endif
