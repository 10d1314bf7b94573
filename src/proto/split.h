/* Cutting a byte stream into messages, sans I/O: the multiprocessing frame
 * (the default), a delimiter, a byte count, or whatever arrives (raw). Fed
 * arbitrary splits; the mode may change between messages. */
#ifndef MPCI_SPLIT_H
#define MPCI_SPLIT_H

#include "proto/frame.h"

#include <stddef.h>
#include <stdint.h>

enum { MPCI_SPLIT_FRAME, MPCI_SPLIT_DELIM, MPCI_SPLIT_COUNT, MPCI_SPLIT_RAW };

#define MPCI_SPLIT_DELIM_MAX 32

/* A delimiter or a count: made only for the modes that have one, so a
 * connection that frames as multiprocessing does carries none. */
typedef struct mpci_split_how {
    size_t count; /* COUNT: bytes per message */
    size_t dlen;
    uint8_t delim[MPCI_SPLIT_DELIM_MAX];
} mpci_split_how;

typedef struct mpci_split {
    /* FRAME mode is frame.h's decoder itself: its header, its limit (max:
     * the largest message, 0 = none; a delimiter is not counted), and its
     * payload buffer, which the other modes use for a message begun in an
     * earlier feed (data, got, cap; allocated only then). */
    mpci_msgdec dec;
    mpci_split_how *how;
    uint8_t mode;
    uint8_t delivered; /* dec.data holds the last message handed out: drop it first */
} mpci_split;

void mpci_split_init(mpci_split *s, uint64_t max);
/* -EINVAL for a delimiter of 0 or more than MPCI_SPLIT_DELIM_MAX bytes, or
 * a count of 0; -ENOMEM. Takes effect for the next message; bytes of a
 * message already begun are kept only in the same mode. */
int mpci_split_set(mpci_split *s, int mode, const void *delim_or_null, size_t n);
void mpci_split_free(mpci_split *s);
/* Cuts the next message from p[0..n): returns 1 with the message in *msg, *len (borrowed:
 * inside p, or inside s until the next call), 0 when all n bytes were taken
 * and more are needed, or MPCONN_ERR_PROTO / MPCONN_ERR_MSGSIZE / -ENOMEM. *used
 * says how many bytes of p were consumed either way. After MPCONN_ERR_MSGSIZE
 * in FRAME mode, s->dec.len is the length the header announced. */
int mpci_split_feed(mpci_split *s, const uint8_t *p, size_t n, size_t *used, const uint8_t **msg,
                    size_t *len);
/* Bytes of a message begun and not finished (for EOF inside a message). */
size_t mpci_split_partial(const mpci_split *s);
/* FRAME mode inside a long payload: room to read the rest straight into
 * (NULL when the payload is not that far along or not that long). The
 * caller reads at most *room bytes there, then calls mpci_split_feed with
 * that pointer and length, which takes them without copying. */
uint8_t *mpci_split_direct(mpci_split *s, size_t *room);
/* The buffer of the message handed out last, when msg is that message and
 * lies in s's own buffer (it came in more than one feed): the caller's now
 * (free()), s keeps none. NULL otherwise (msg lies in what was fed). */
uint8_t *mpci_split_take(mpci_split *s, const uint8_t *msg);

#endif
