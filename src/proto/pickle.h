/* The pickle codec's entry points for the layers above: encode a value,
 * decode untrusted bytes under limits. */
#ifndef MPCI_PROTO_PICKLE_H
#define MPCI_PROTO_PICKLE_H

#include "mpconn.h"

#include <stddef.h>
#include <stdint.h>

/* What one decode may cost; a zero field takes its default. */
typedef struct mpci_pickle_limits {
    size_t max_depth; /* containers inside containers */
    size_t max_items; /* items in all containers together */
    size_t max_memo;  /* memo entries */
    size_t max_alloc; /* bytes of values made */
    int py2_str;      /* MPCONN_PY2_STR_*: what a Python 2 str becomes (0: ASCII str) */
} mpci_pickle_limits;

/* The defaults, written once: what a NULL limits and a zero field mean. */
#define MPCI_PICKLE_LIMITS_DEFAULT                                                                 \
    ((mpci_pickle_limits){.max_depth = 1000,                                                       \
                          .max_items = 10000000,                                                   \
                          .max_memo = 1000000,                                                     \
                          .max_alloc = (size_t)1 << 30})

int mpci_pickle_encode(const mpconn_value *v, int protocol, void **out, size_t *len);
/* Encodes into *buf (capacity *cap, grown with realloc and kept by the
 * caller, also on failure) from offset on; *len is the pickle's length. */
int mpci_pickle_encode_into(const mpconn_value *v, int protocol, uint8_t **buf, size_t *cap,
                            size_t offset, size_t *len);
/* limits may be NULL (the defaults). */
int mpci_pickle_decode(const uint8_t *buf, size_t len, const mpci_pickle_limits *limits,
                       mpconn_value **out, char *errmsg, size_t errlen);

#endif
