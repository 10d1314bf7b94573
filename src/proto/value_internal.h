/* The layout of mpconn_value and the helpers the pickle codec, repr and pack
 * share with value.c. Internal: nothing here is exported. */
#ifndef MPCI_VALUE_INTERNAL_H
#define MPCI_VALUE_INTERNAL_H

#include "base/buf.h"
#include "base/err.h"
#include "base/utf8.h"
#include "base/util.h"

/* Flags on a value. */
enum {
    MPCI_F_IMMORTAL = 1, /* static None/True/False: never counted or freed */
    MPCI_F_HASHED = 2,   /* aux.hash is valid */
    MPCI_F_BIG = 4,      /* an int stored as sign + magnitude */
    MPCI_F_GREY = 8,     /* transient marks for cycle searches */
    MPCI_F_BLACK = 16
};

/* A pseudo-type the decoder uses for the few callables it accepts (bytes,
 * bytearray, set, frozenset, _codecs.encode); never handed to a user. */
enum { MPCI_CALLABLE = 64 };
enum {
    MPCI_CALL_BYTES = 1,
    MPCI_CALL_BYTEARRAY,
    MPCI_CALL_SET,
    MPCI_CALL_FROZENSET,
    MPCI_CALL_ENCODE
};

typedef struct mpci_entry {
    uint64_t hash;
    mpconn_value *key;
    mpconn_value *val; /* NULL in sets */
} mpci_entry;

struct mpconn_value {
    uint32_t refs;
    uint8_t type;
    uint8_t flags;
    uint16_t sub;   /* MPCI_CALL_* for MPCI_CALLABLE */
    uint32_t depth; /* containers: 1 + deepest child container */
    union {
        uint64_t hash;      /* cached hash (tuples, str, bytes) */
        mpconn_value *next; /* free list while being released */
    } aux;
    union {
        int b;
        struct {
            int64_t v;
            uint8_t mag[8]; /* filled on demand by mpconn_value_get_bigint */
        } i;
        double d;
        struct {
            char *p; /* inline, after the struct; NUL-terminated */
            size_t len;
        } s;
        struct {
            uint8_t *mag; /* inline, big-endian, no leading zeros */
            size_t len;
            int neg;
        } big;
        struct {
            mpconn_value **items;
            size_t len, cap;
        } seq;
        struct {
            mpci_entry *ents; /* insertion order */
            size_t len, cap;
            uint32_t *index; /* open addressing, entry number + 1; NULL while small */
            size_t icap;
        } map;
    } u;
};

static inline int mpci_is_container(const mpconn_value *v)
{
    return v->type >= MPCONN_LIST && v->type <= MPCONN_FROZENSET;
}

/* A value of an internal type (MPCI_CALLABLE) with the given sub-kind. */
mpconn_value *mpci_value_callable(int sub);
/* An uninitialised str or bytes of len bytes (plus a NUL) to fill in place. */
mpconn_value *mpci_value_alloc_str(int type, size_t len, char **data);
/* Appends n stolen items to a list or tuple at once (all are released on
 * failure). */
int mpci_value_extend(mpconn_value *seq, mpconn_value **items, size_t n);
/* Reserves room for n more items in a list, tuple, dict or set. */
int mpci_value_reserve(mpconn_value *c, size_t n);
/* Hash of a hashable value; MPCONN_EUNHASHABLE otherwise. */
int mpci_value_hash(const mpconn_value *v, uint64_t *out);
/* The bigint's magnitude converted as Python's float() does; -ERANGE-like
 * MPCONN_ERANGE when it overflows. */
int mpci_bigint_to_double(const mpconn_value *v, double *out);
/* Drops every container reference reachable from roots so that cycles
 * among them can be freed; the roots themselves are not released. */
void mpci_value_break_cycles(mpconn_value **roots, size_t n);
/* MPCONN_ERECURSIVE when a container reachable from the roots contains
 * itself, 0 when not, -ENOMEM. */
int mpci_value_check_acyclic(mpconn_value **roots, size_t n);

#endif
