/* The layout of mpconn_value and the helpers the pickle codec, repr and pack
 * share with value.c. Internal: nothing here is exported. */
#ifndef MPCI_VALUE_INTERNAL_H
#define MPCI_VALUE_INTERNAL_H

#include "proto/pickle.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/utf8.h"
#include "base/util.h"

/* Flags on a value. */
enum {
    MPCI_F_IMMORTAL = 1, /* static None/True/False/small ints: never counted or freed */
    MPCI_F_HASHED = 2,   /* the cached hash is valid */
    MPCI_F_BIG = 4,      /* an int stored as sign + magnitude */
    MPCI_F_GREY = 8,     /* transient marks for cycle searches */
    MPCI_F_BLACK = 16,
    MPCI_F_SURROGATES = 32 /* a str whose bytes hold lone surrogates (surrogatepass UTF-8) */
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

/* A container's cached hash (tuples, frozensets) or, while it is being
 * released, the next dying container. */
typedef union mpci_aux {
    uint64_t hash;
    mpconn_value *next;
} mpci_aux;

/* Each value is allocated at the size its type needs: the 8-byte head, then
 * only its own member of the union (plus inline text or items). So an int
 * or a float costs 24 or 16 bytes, not the size of the largest member;
 * nothing may touch another type's member. */
struct mpconn_value {
    uint32_t refs;
    uint8_t type;
    uint8_t flags;
    uint16_t sub; /* MPCI_CALL_* for MPCI_CALLABLE */
    union {
        int b;
        struct {
            int64_t v;
            uint8_t mag[8]; /* filled on demand by mpconn_value_get_bigint */
        } i;
        double d;
        struct {
            uint64_t hash;
            char *p; /* inline, after the struct; NUL-terminated */
            size_t len;
        } s;
        struct {
            uint64_t hash;
            uint8_t *mag; /* inline, big-endian, no leading zeros */
            size_t len;
            int neg;
        } big;
        struct {
            mpci_aux aux;
            uint32_t depth; /* 1 + deepest child container */
            mpconn_value **items;
            size_t len, cap;
        } seq;
        struct {
            mpci_aux aux;
            uint32_t depth;
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

/* 1 + the deepest container inside c (a container). */
static inline uint32_t mpci_depth(const mpconn_value *c)
{
    return (c->type == MPCONN_LIST || c->type == MPCONN_TUPLE) ? c->u.seq.depth : c->u.map.depth;
}

/* Whether a str holds lone surrogates: its bytes are then CPython's
 * "surrogatepass" UTF-8 (each of U+D800..U+DFFF as its own 3-byte sequence
 * ED A0..BF 80..BF), not strict UTF-8. Text printers decode those
 * sequences as the code points they stand for. */
static inline int mpci_str_has_surrogates(const mpconn_value *v)
{
    return v->type == MPCONN_STR && (v->flags & MPCI_F_SURROGATES) != 0;
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
/* Hash of a hashable value; MPCONN_ERR_UNHASHABLE otherwise. */
int mpci_value_hash(const mpconn_value *v, uint64_t *out);
/* The bigint's magnitude converted as Python's float() does; -ERANGE-like
 * MPCONN_ERR_RANGE when it overflows. */
int mpci_bigint_to_double(const mpconn_value *v, double *out);
/* Drops every container reference reachable from roots so that cycles
 * among them can be freed; the roots themselves are not released. */
void mpci_value_break_cycles(mpconn_value **roots, size_t n);
/* MPCONN_ERR_RECURSIVE when a container reachable from the roots contains
 * itself, 0 when not, -ENOMEM. */
int mpci_value_check_acyclic(mpconn_value **roots, size_t n);
/* What malloc really hands out for a request of n bytes (glibc: 8 bytes of
 * header, 16-byte granules, 32 at least). */
static inline size_t mpci_malloc_cost(size_t n)
{
    return n <= 24 ? 32 : (n + 8 + 15) & ~(size_t)15;
}
/* Bytes v itself holds in malloc'd memory: its struct, inline text or
 * items, a separate item array, an index; 0 for immortal values. */
size_t mpci_value_footprint(const mpconn_value *v);

/* One comparison context: pairs of values already found equal or unequal,
 * so that shared sub-values (a DAG) are compared once, not once per path.
 * With hold set (the decoder's context, which outlives single comparisons
 * while values come and go) it keeps a reference to each value it records,
 * so an address is never reused under it. steps counts work done. */
typedef struct mpci_eqctx {
    struct mpci_pair *pairs;
    size_t cap, used;
    size_t steps;
    size_t bytes; /* held by the pair table */
    int hold;
    int gave_up; /* a lookup nested too deep: its "unequal" is not proven */
} mpci_eqctx;

void mpci_eqctx_init(mpci_eqctx *cx, int hold);
void mpci_eqctx_free(mpci_eqctx *cx);
/* Python's == under a context. */
int mpci_value_equal_cx(const mpconn_value *a, const mpconn_value *b, mpci_eqctx *cx);
/* mpconn_value_dict_set (val != NULL) or mpconn_value_add (val NULL) with
 * key comparisons under cx; steals key and val. */
int mpci_map_insert(mpconn_value *m, mpconn_value *key, mpconn_value *val, mpci_eqctx *cx);

/* What one decode did, for tests and the fuzzer: steps of work (opcodes,
 * hash and comparison steps, probes) and bytes charged to max_alloc. */
typedef struct mpci_meter {
    size_t steps;
    size_t bytes;
} mpci_meter;
int mpci_pickle_decode_metered(const uint8_t *buf, size_t len, const mpci_pickle_limits *limits,
                               mpconn_value **out, char *errmsg, size_t errlen, mpci_meter *m);

#endif
