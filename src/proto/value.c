/* The plain-value type: reference counted Python values with Python's
 * equality and hashing, insertion-ordered dicts and sets with a hash index,
 * and iterative release and comparison so deep values never exhaust the stack. */
#include "proto/value_internal.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* None, True, False and the small ints are immortal: never written to, so
 * sharing them between threads is safe, and a pickle of many small ints
 * costs one pointer each, as in CPython. */
static mpconn_value none_value = {.refs = 1, .type = MPCONN_NONE, .flags = MPCI_F_IMMORTAL};
static mpconn_value true_value = {
    .refs = 1, .type = MPCONN_BOOL, .flags = MPCI_F_IMMORTAL, .u.b = 1};
static mpconn_value false_value = {
    .refs = 1, .type = MPCONN_BOOL, .flags = MPCI_F_IMMORTAL, .u.b = 0};

/* Ints SMALL_MIN..SMALL_MAX (CPython caches -5..256). */
#define SMALL_MIN (-5)
#define SMALL_MAX 256
#define SI(n)                                                                                      \
    {                                                                                              \
        .refs = 1, .type = MPCONN_INT, .flags = MPCI_F_IMMORTAL, .u.i.v = (n)                      \
    }
#define SI4(n) SI(n), SI((n) + 1), SI((n) + 2), SI((n) + 3)
#define SI16(n) SI4(n), SI4((n) + 4), SI4((n) + 8), SI4((n) + 12)
#define SI64(n) SI16(n), SI16((n) + 16), SI16((n) + 32), SI16((n) + 48)
static mpconn_value small_ints[SMALL_MAX - SMALL_MIN + 1] = {
    SI64(SMALL_MIN),      SI64(SMALL_MIN + 64), SI64(SMALL_MIN + 128), SI64(SMALL_MIN + 192),
    SI4(SMALL_MIN + 256), SI(SMALL_MIN + 260),  SI(SMALL_MIN + 261)};
_Static_assert(SMALL_MIN + 261 == SMALL_MAX, "the table ends at SMALL_MAX");
#undef SI
#undef SI4
#undef SI16
#undef SI64

/* Magnitudes of the small ints, borrowed by mpconn_value_get_bigint since an
 * immortal value is never written. */
#define B4(n) (n), (n) + 1, (n) + 2, (n) + 3
#define B16(n) B4(n), B4((n) + 4), B4((n) + 8), B4((n) + 12)
#define B64(n) B16(n), B16((n) + 16), B16((n) + 32), B16((n) + 48)
static const uint8_t byte_values[256] = {B64(0), B64(64), B64(128), B64(192)};
static const uint8_t mag_256[2] = {1, 0};
#undef B4
#undef B16
#undef B64

/* Dicts and sets this small are searched linearly: cheaper than an index. */
#define SMALL_MAP 16
/* Nested equality calls made by key lookups (frozensets of frozensets...)
 * stop here rather than deepening the C stack without bound. */
#define MAX_LOOKUP_NEST 200

/* Containers carry room for a few items right behind the struct: most
 * messages are small, and this saves an allocation and a free for each. */
#define INLINE_ITEMS 4
#define INLINE_ENTRIES 2

#define HEAD offsetof(mpconn_value, u)
#define MEMBER_SIZE(m) (HEAD + sizeof(((mpconn_value *)0)->u.m))

/* The bytes a value of this type takes before any inline data. */
static size_t base_size(int type)
{
    switch (type) {
    case MPCONN_INT: return MEMBER_SIZE(i);
    case MPCONN_FLOAT: return MEMBER_SIZE(d);
    case MPCONN_STR:
    case MPCONN_BYTES:
    case MPCONN_BYTEARRAY: return MEMBER_SIZE(s);
    case MPCONN_LIST:
    case MPCONN_TUPLE: return MEMBER_SIZE(seq);
    case MPCONN_DICT:
    case MPCONN_SET:
    case MPCONN_FROZENSET: return MEMBER_SIZE(map);
    default: return MEMBER_SIZE(b);
    }
}

static void *inline_items(const mpconn_value *v)
{
    return (char *)v + base_size(v->type);
}

/* noinline: the compiler would otherwise see a struct pointer into a block
 * smaller than the struct and warn about members it never touches. */
__attribute__((noinline)) static mpconn_value *alloc_value(int type, size_t extra)
{
    int seq = type == MPCONN_LIST || type == MPCONN_TUPLE;
    int map = type == MPCONN_DICT || type == MPCONN_SET || type == MPCONN_FROZENSET;
    if (seq)
        extra = INLINE_ITEMS * sizeof(mpconn_value *);
    else if (map)
        extra = INLINE_ENTRIES * sizeof(mpci_entry);
    size_t base = base_size(type);
    mpconn_value *v = malloc(base + extra);
    if (!v)
        return NULL;
    memset(v, 0, base);
    v->refs = 1;
    v->type = (uint8_t)type;
    if (seq) {
        v->u.seq.items = inline_items(v);
        v->u.seq.cap = INLINE_ITEMS;
        v->u.seq.depth = 1;
    } else if (map) {
        v->u.map.ents = inline_items(v);
        v->u.map.cap = INLINE_ENTRIES;
        v->u.map.depth = 1;
    }
    return v;
}

size_t mpci_value_footprint(const mpconn_value *v)
{
    if (!v || (v->flags & MPCI_F_IMMORTAL))
        return 0;
    size_t base = base_size(v->type);
    switch (v->type) {
    case MPCONN_INT:
        if (v->flags & MPCI_F_BIG)
            return mpci_malloc_cost(MEMBER_SIZE(big) + v->u.big.len);
        return mpci_malloc_cost(base);
    case MPCONN_STR:
    case MPCONN_BYTES:
    case MPCONN_BYTEARRAY: return mpci_malloc_cost(base + v->u.s.len + 1);
    case MPCONN_LIST:
    case MPCONN_TUPLE: {
        size_t n = mpci_malloc_cost(base + INLINE_ITEMS * sizeof(mpconn_value *));
        if (v->u.seq.items != inline_items(v))
            n += mpci_malloc_cost(v->u.seq.cap * sizeof(mpconn_value *));
        return n;
    }
    case MPCONN_DICT:
    case MPCONN_SET:
    case MPCONN_FROZENSET: {
        size_t n = mpci_malloc_cost(base + INLINE_ENTRIES * sizeof(mpci_entry));
        if (v->u.map.ents != inline_items(v))
            n += mpci_malloc_cost(v->u.map.cap * sizeof(mpci_entry));
        if (v->u.map.index)
            n += mpci_malloc_cost(v->u.map.icap * sizeof(uint32_t));
        return n;
    }
    default: return mpci_malloc_cost(base);
    }
}

/* realloc for an items array that may still be the inline one. */
static void *grow_items(mpconn_value *c, void *items, size_t len, size_t cap, size_t elem)
{
    return mpci_resize(items, inline_items(c), len, cap, elem);
}

mpconn_value *mpconn_value_ref(mpconn_value *v)
{
    if (v && !(v->flags & MPCI_F_IMMORTAL))
        v->refs++;
    return v;
}

/* Queues v (whose count just reached zero) for release, or frees it now
 * when it holds no references. */
static void release_one(mpconn_value *v, mpconn_value **pending)
{
    if (v->type == MPCONN_LIST || v->type == MPCONN_TUPLE) {
        v->u.seq.aux.next = *pending;
        *pending = v;
    } else if (mpci_is_container(v)) {
        v->u.map.aux.next = *pending;
        *pending = v;
    } else {
        free(v);
    }
}

static void drop_child(mpconn_value *c, mpconn_value **pending)
{
    if (c && !(c->flags & MPCI_F_IMMORTAL) && --c->refs == 0)
        release_one(c, pending);
}

void mpconn_value_unref(mpconn_value *v)
{
    if (!v || (v->flags & MPCI_F_IMMORTAL) || --v->refs > 0)
        return;
    mpconn_value *pending = NULL;
    release_one(v, &pending);
    /* A worklist threaded through the dying values themselves: no
     * allocation and no recursion, whatever the depth. */
    while (pending) {
        mpconn_value *c = pending;
        if (c->type == MPCONN_LIST || c->type == MPCONN_TUPLE) {
            pending = c->u.seq.aux.next;
            for (size_t i = 0; i < c->u.seq.len; i++)
                drop_child(c->u.seq.items[i], &pending);
            if (c->u.seq.items != inline_items(c))
                free(c->u.seq.items);
        } else {
            pending = c->u.map.aux.next;
            for (size_t i = 0; i < c->u.map.len; i++) {
                drop_child(c->u.map.ents[i].key, &pending);
                drop_child(c->u.map.ents[i].val, &pending);
            }
            if (c->u.map.ents != inline_items(c))
                free(c->u.map.ents);
            free(c->u.map.index);
        }
        free(c);
    }
}

mpconn_value *mpconn_value_none(void)
{
    return &none_value;
}

mpconn_value *mpconn_value_bool(int b)
{
    return b ? &true_value : &false_value;
}

mpconn_value *mpconn_value_int(int64_t i)
{
    if (i >= SMALL_MIN && i <= SMALL_MAX)
        return &small_ints[i - SMALL_MIN];
    mpconn_value *v = alloc_value(MPCONN_INT, 0);
    if (v)
        v->u.i.v = i;
    return v;
}

mpconn_value *mpconn_value_bigint(int negative, const uint8_t *magnitude, size_t len)
{
    if (!magnitude)
        len = 0;
    while (len && magnitude[0] == 0) {
        magnitude++;
        len--;
    }
    if (len <= 8) {
        uint64_t m = 0;
        for (size_t i = 0; i < len; i++)
            m = m << 8 | magnitude[i];
        if (!negative && m <= (uint64_t)INT64_MAX)
            return mpconn_value_int((int64_t)m);
        if (negative && m <= (uint64_t)INT64_MAX + 1)
            return mpconn_value_int(m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m);
    }
    /* A big int has the layout of its own member, not of u.i. */
    size_t base = MEMBER_SIZE(big);
    mpconn_value *v = alloc_value(MPCONN_INT, base - base_size(MPCONN_INT) + len);
    if (!v)
        return NULL;
    memset(&v->u.big, 0, sizeof v->u.big);
    v->flags |= MPCI_F_BIG;
    v->u.big.mag = (uint8_t *)v + base;
    v->u.big.len = len;
    v->u.big.neg = negative ? 1 : 0;
    memcpy(v->u.big.mag, magnitude, len);
    return v;
}

mpconn_value *mpconn_value_float(double d)
{
    mpconn_value *v = alloc_value(MPCONN_FLOAT, 0);
    if (v)
        v->u.d = d;
    return v;
}

mpconn_value *mpci_value_alloc_str(int type, size_t len, char **data)
{
    if (len > SIZE_MAX - sizeof(mpconn_value) - 1)
        return NULL;
    mpconn_value *v = alloc_value(type, len + 1);
    if (!v)
        return NULL;
    v->u.s.p = inline_items(v);
    v->u.s.len = len;
    v->u.s.p[len] = '\0';
    *data = v->u.s.p;
    return v;
}

/* p NULL stands for len zero bytes, as Python's bytes(n). */
static mpconn_value *make_str(int type, const void *p, size_t len)
{
    char *d;
    mpconn_value *v = mpci_value_alloc_str(type, len, &d);
    if (v && len) {
        if (p)
            memcpy(d, p, len);
        else
            memset(d, 0, len);
    }
    return v;
}

/* Text that failed validation: its invalid bytes as lone surrogates
 * (surrogateescape), so a constructor never refuses what it is given. */
static mpconn_value *make_escaped_str(const char *s, size_t len, int allow_surrogates)
{
    if (len > SIZE_MAX / 3)
        return NULL;
    size_t n = mpci_utf8_escape(NULL, s, len, allow_surrogates);
    char *d;
    mpconn_value *v = mpci_value_alloc_str(MPCONN_STR, n, &d);
    if (!v)
        return NULL;
    mpci_utf8_escape((uint8_t *)d, s, len, allow_surrogates);
    v->flags |= MPCI_F_SURROGATES;
    return v;
}

mpconn_value *mpconn_value_strn(const char *s, size_t len)
{
    if (!s || mpci_utf8_valid(s, len))
        return make_str(MPCONN_STR, s, len);
    return make_escaped_str(s, len, 0);
}

mpconn_value *mpconn_value_str(const char *s)
{
    return mpconn_value_strn(s, s ? strlen(s) : 0);
}

mpconn_value *mpconn_value_strn_surrogatepass(const char *s, size_t len)
{
    int rc = s ? mpci_utf8_check(s, len) : 0;
    if (rc < 0)
        return make_escaped_str(s, len, 1);
    mpconn_value *v = make_str(MPCONN_STR, s, len);
    if (v && rc)
        v->flags |= MPCI_F_SURROGATES;
    return v;
}

int mpconn_value_str_surrogates(const mpconn_value *v)
{
    return v && mpci_str_has_surrogates(v);
}

mpconn_value *mpconn_value_bytes(const void *p, size_t len)
{
    return make_str(MPCONN_BYTES, p, len);
}

mpconn_value *mpconn_value_bytearray(const void *p, size_t len)
{
    return make_str(MPCONN_BYTEARRAY, p, len);
}

mpconn_value *mpconn_value_list(void)
{
    return alloc_value(MPCONN_LIST, 0);
}
mpconn_value *mpconn_value_tuple(void)
{
    return alloc_value(MPCONN_TUPLE, 0);
}
mpconn_value *mpconn_value_dict(void)
{
    return alloc_value(MPCONN_DICT, 0);
}
mpconn_value *mpconn_value_set(void)
{
    return alloc_value(MPCONN_SET, 0);
}
mpconn_value *mpconn_value_frozenset(void)
{
    return alloc_value(MPCONN_FROZENSET, 0);
}

mpconn_value *mpci_value_callable(int sub)
{
    mpconn_value *v = alloc_value(MPCI_CALLABLE, 0);
    if (v)
        v->sub = (uint16_t)sub;
    return v;
}

/* ------------------------------------------------------------- building */

static void note_child(mpconn_value *parent, const mpconn_value *child)
{
    if (!mpci_is_container(child))
        return;
    uint32_t d = mpci_depth(child) + 1;
    if (parent->type == MPCONN_LIST || parent->type == MPCONN_TUPLE) {
        if (d > parent->u.seq.depth)
            parent->u.seq.depth = d;
    } else if (d > parent->u.map.depth) {
        parent->u.map.depth = d;
    }
}

/* A new capacity for at least want items: an eighth more, as CPython's
 * lists grow, so a large container wastes little (realloc moves big
 * blocks without copying). */
static size_t grow_cap(size_t want)
{
    return want + (want >> 3) + 6;
}

int mpci_value_reserve(mpconn_value *c, size_t n)
{
    if (c->type == MPCONN_LIST || c->type == MPCONN_TUPLE) {
        if (c->u.seq.cap - c->u.seq.len >= n)
            return 0;
        size_t want = c->u.seq.len + n;
        if (want < c->u.seq.len || want > SIZE_MAX / sizeof(mpconn_value *) / 2)
            return -ENOMEM;
        size_t cap = grow_cap(want);
        mpconn_value **p = grow_items(c, c->u.seq.items, c->u.seq.len, cap, sizeof *p);
        if (!p)
            return -ENOMEM;
        c->u.seq.items = p;
        c->u.seq.cap = cap;
        return 0;
    }
    if (c->u.map.cap - c->u.map.len >= n)
        return 0;
    size_t want = c->u.map.len + n;
    if (want < c->u.map.len || want > UINT32_MAX / 4)
        return -ENOMEM;
    size_t cap = grow_cap(want);
    mpci_entry *e = grow_items(c, c->u.map.ents, c->u.map.len, cap, sizeof *e);
    if (!e)
        return -ENOMEM;
    c->u.map.ents = e;
    c->u.map.cap = cap;
    return 0;
}

int mpconn_value_append(mpconn_value *seq, mpconn_value *item)
{
    if (!seq || !item) {
        mpconn_value_unref(item);
        return -ENOMEM;
    }
    if (seq->type != MPCONN_LIST && seq->type != MPCONN_TUPLE) {
        mpconn_value_unref(item);
        return MPCONN_ERR_TYPE;
    }
    if (seq->u.seq.len == seq->u.seq.cap && mpci_value_reserve(seq, 1) < 0) {
        mpconn_value_unref(item);
        return -ENOMEM;
    }
    seq->u.seq.items[seq->u.seq.len++] = item;
    seq->flags &= (uint8_t)~MPCI_F_HASHED;
    note_child(seq, item);
    return 0;
}

int mpci_value_extend(mpconn_value *seq, mpconn_value **items, size_t n)
{
    if (n == 0)
        return 0;
    if (mpci_value_reserve(seq, n) < 0) {
        for (size_t i = 0; i < n; i++)
            mpconn_value_unref(items[i]);
        return -ENOMEM;
    }
    memcpy(seq->u.seq.items + seq->u.seq.len, items, n * sizeof *items);
    seq->u.seq.len += n;
    seq->flags &= (uint8_t)~MPCI_F_HASHED;
    for (size_t i = 0; i < n; i++)
        note_child(seq, items[i]);
    return 0;
}

/* ------------------------------------------------------------- hashing */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return mix64(h ^ n);
}

/* Numbers hash as CPython's do: by their exact value modulo the prime
 * 2^61 - 1, with the sign, so 1, 1.0 and True hash alike, 2**64 - 1 and
 * 2**64 - 2 do not collide, and any float equal to an int hashes as it. */
#define HASH_PRIME (((uint64_t)1 << 61) - 1)

static uint64_t mod_prime(uint64_t x)
{
    x = (x & HASH_PRIME) + (x >> 61);
    return x >= HASH_PRIME ? x - HASH_PRIME : x;
}

/* x * 2^k modulo the prime, for x below it and 0 <= k < 61: 2^61 is 1
 * there, so this is a rotation of 61 bits. */
static uint64_t rot61(uint64_t x, unsigned k)
{
    return k ? ((x << k) & HASH_PRIME) | (x >> (61 - k)) : x;
}

static uint64_t num_hash(uint64_t residue, int negative)
{
    uint64_t n = negative ? (uint64_t)0 - residue : residue;
    return mix64(n ^ 0x5851f42d4c957f2dULL);
}

static uint64_t hash_int64(int64_t i)
{
    uint64_t m = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
    return num_hash(mod_prime(m), i < 0);
}

static uint64_t hash_bigint(const mpconn_value *v)
{
    uint64_t r = 0;
    for (size_t k = 0; k < v->u.big.len; k++)
        r = mod_prime(rot61(r, 8) + v->u.big.mag[k]);
    return num_hash(r, v->u.big.neg);
}

/* A NaN equals nothing but itself, so it hashes by its address (as CPython
 * 3.10 on does): many NaN keys spread over the table. */
static uint64_t hash_float(const mpconn_value *v)
{
    double d = v->u.d;
    if (isnan(d))
        return mix64((uint64_t)(uintptr_t)v ^ 0x2545f4914f6cdd1dULL);
    if (isinf(d))
        return num_hash(314159, d < 0);
    /* |d| = m * 2^e; take the mantissa 28 bits at a time into an integer
     * x with |d| = x * 2^e, then multiply by 2^e modulo the prime. */
    int e;
    double m = frexp(fabs(d), &e);
    uint64_t x = 0;
    while (m != 0) {
        x = rot61(x, 28);
        m *= 268435456.0; /* 2^28 */
        e -= 28;
        double top = floor(m);
        m -= top;
        x = mod_prime(x + (uint64_t)top);
    }
    unsigned k = e >= 0 ? (unsigned)(e % 61) : (unsigned)(60 - (-1 - e) % 61);
    return num_hash(rot61(x, k), d < 0);
}

int mpci_bigint_to_double(const mpconn_value *v, double *out)
{
    const uint8_t *m = v->u.big.mag;
    size_t len = v->u.big.len;
    /* The top 64 bits plus a sticky bit for the rest round exactly once,
     * to nearest even, as Python's int-to-float does. */
    uint64_t top = 0;
    size_t take = len < 8 ? len : 8;
    for (size_t i = 0; i < take; i++)
        top = top << 8 | m[i];
    int sticky = 0;
    for (size_t i = take; i < len; i++)
        if (m[i])
            sticky = 1;
    if (take == 8) {
        /* Normalise so the top byte is non-zero with all 64 bits used. */
        int lead = 0;
        while (!(top >> 63)) {
            top <<= 1;
            lead++;
        }
        if (lead && len > 8) {
            top |= (uint64_t)m[8] >> (8 - lead);
            if ((uint8_t)(m[8] << lead))
                sticky = 1;
            for (size_t i = 9; i < len && !sticky; i++)
                if (m[i])
                    sticky = 1;
        }
        top |= (uint64_t)sticky;
        long shift = (long)(len - 8) * 8 - lead;
        if (shift > 2000) {
            *out = v->u.big.neg ? -HUGE_VAL : HUGE_VAL;
            return MPCONN_ERR_RANGE;
        }
        double d = ldexp((double)top, (int)shift);
        if (isinf(d)) {
            *out = v->u.big.neg ? -HUGE_VAL : HUGE_VAL;
            return MPCONN_ERR_RANGE;
        }
        *out = v->u.big.neg ? -d : d;
        return 0;
    }
    *out = v->u.big.neg ? -(double)top : (double)top;
    return 0;
}

/* Whether the big int is exactly representable as a double. */
static int bigint_exact_double(const mpconn_value *v)
{
    const uint8_t *m = v->u.big.mag;
    size_t len = v->u.big.len;
    size_t bits = len * 8;
    for (uint8_t t = m[0]; !(t & 0x80); t <<= 1)
        bits--;
    if (bits > 1024)
        return 0;
    if (bits <= 53)
        return 1;
    size_t low = bits - 53; /* these low bits must all be zero */
    for (size_t i = 0; i < low / 8; i++)
        if (m[len - 1 - i])
            return 0;
    if (low % 8 && (m[len - 1 - low / 8] & ((1u << (low % 8)) - 1)))
        return 0;
    return 1;
}

static int scalar_hash(const mpconn_value *v, uint64_t *out, size_t *steps)
{
    mpconn_value *w = (mpconn_value *)v; /* caches are not part of the value */
    switch (v->type) {
    case MPCONN_NONE: *out = 0x2545f4914f6cdd1dULL; return 0;
    case MPCONN_BOOL: *out = hash_int64(v->u.b); return 0;
    case MPCONN_INT:
        if (!(v->flags & MPCI_F_BIG)) {
            *out = hash_int64(v->u.i.v);
            return 0;
        }
        if (!(v->flags & MPCI_F_HASHED)) {
            *steps += 1 + v->u.big.len / 8;
            w->u.big.hash = hash_bigint(v);
            w->flags |= MPCI_F_HASHED;
        }
        *out = v->u.big.hash;
        return 0;
    case MPCONN_FLOAT: *out = hash_float(v); return 0;
    case MPCONN_STR:
    case MPCONN_BYTES:
        /* Keys are often one shared string (a pickle's memo), so the hash is
         * kept on the value: it never changes. */
        if (!(v->flags & MPCI_F_HASHED)) {
            *steps += 1 + v->u.s.len / 8;
            w->u.s.hash = hash_bytes(v->u.s.p, v->u.s.len, v->type == MPCONN_STR ? 1 : 2);
            w->flags |= MPCI_F_HASHED;
        }
        *out = v->u.s.hash;
        return 0;
    case MPCONN_FROZENSET:
        /* Order-independent; items already carry their hashes. Kept, so a
         * frozenset met on many paths is summed once. */
        if (!(v->flags & MPCI_F_HASHED)) {
            uint64_t h = 0x9e3779b97f4a7c15ULL ^ v->u.map.len;
            for (size_t i = 0; i < v->u.map.len; i++)
                h += mix64(v->u.map.ents[i].hash ^ 0x632be59bd9b4e019ULL);
            *steps += 1 + v->u.map.len;
            w->u.map.aux.hash = mix64(h);
            w->flags |= MPCI_F_HASHED;
        }
        *out = v->u.map.aux.hash;
        return 0;
    default: return MPCONN_ERR_UNHASHABLE;
    }
}

/* Tuples hash iteratively: an explicit stack of partly hashed tuples. Each
 * tuple keeps its hash, so a shared one is hashed once. */
struct hframe {
    const mpconn_value *t;
    size_t i;
    uint64_t acc;
};

static int value_hash(const mpconn_value *v, uint64_t *out, size_t *steps)
{
    if (v->type != MPCONN_TUPLE)
        return scalar_hash(v, out, steps);
    if (v->flags & MPCI_F_HASHED) {
        *out = v->u.seq.aux.hash;
        return 0;
    }
    struct hframe local[32], *st = local;
    size_t sp = 0, cap = 32;
    int rc = 0;
    st[sp++] = (struct hframe){v, 0, 0x345678ULL};
    uint64_t result = 0;
    while (sp) {
        struct hframe *f = &st[sp - 1];
        (*steps)++;
        if (f->i == f->t->u.seq.len) {
            uint64_t h = mix64(f->acc ^ f->t->u.seq.len);
            mpconn_value *t = (mpconn_value *)f->t; /* the cache is not part of the value */
            t->u.seq.aux.hash = h;
            t->flags |= MPCI_F_HASHED;
            sp--;
            if (sp)
                st[sp - 1].acc = (st[sp - 1].acc ^ h) * 1000003ULL;
            else
                result = h;
            continue;
        }
        const mpconn_value *c = f->t->u.seq.items[f->i++];
        uint64_t h;
        if (c->type == MPCONN_TUPLE && !(c->flags & MPCI_F_HASHED)) {
            if (sp == cap) {
                size_t ncap = cap * 2;
                struct hframe *n =
                    st == local ? malloc(ncap * sizeof *n) : realloc(st, ncap * sizeof *n);
                if (!n) {
                    rc = -ENOMEM;
                    break;
                }
                if (st == local)
                    memcpy(n, local, sizeof local);
                st = n;
                cap = ncap;
            }
            st[sp++] = (struct hframe){c, 0, 0x345678ULL};
            continue;
        }
        if (c->type == MPCONN_TUPLE)
            h = c->u.seq.aux.hash;
        else if ((rc = scalar_hash(c, &h, steps)) < 0)
            break;
        f->acc = (f->acc ^ h) * 1000003ULL;
    }
    if (st != local)
        free(st);
    if (rc == 0)
        *out = result;
    return rc;
}

int mpci_value_hash(const mpconn_value *v, uint64_t *out)
{
    size_t steps = 0;
    return value_hash(v, out, &steps);
}

/* ------------------------------------------------------------ equality */

static int is_number(const mpconn_value *v)
{
    return v->type == MPCONN_BOOL || v->type == MPCONN_INT || v->type == MPCONN_FLOAT;
}

static int num_equal(const mpconn_value *a, const mpconn_value *b)
{
    if (a->type == MPCONN_FLOAT && b->type != MPCONN_FLOAT) {
        const mpconn_value *t = a;
        a = b;
        b = t;
    }
    /* Now only b can be a float unless both are. */
    if (a->type == MPCONN_FLOAT)
        return a->u.d == b->u.d;
    int abig = (a->flags & MPCI_F_BIG) != 0;
    if (b->type == MPCONN_FLOAT) {
        double d = b->u.d;
        if (!abig) {
            int64_t i = a->type == MPCONN_BOOL ? a->u.b : a->u.i.v;
            return d >= -9223372036854775808.0 && d < 9223372036854775808.0 && d == trunc(d) &&
                   (int64_t)d == i;
        }
        double ad;
        if (!bigint_exact_double(a) || mpci_bigint_to_double(a, &ad) < 0)
            return 0;
        return ad == d;
    }
    int bbig = (b->flags & MPCI_F_BIG) != 0;
    if (abig || bbig) {
        if (!abig || !bbig)
            return 0; /* normalised: a big int never fits int64 */
        return a->u.big.neg == b->u.big.neg && a->u.big.len == b->u.big.len &&
               memcmp(a->u.big.mag, b->u.big.mag, a->u.big.len) == 0;
    }
    int64_t x = a->type == MPCONN_BOOL ? a->u.b : a->u.i.v;
    int64_t y = b->type == MPCONN_BOOL ? b->u.b : b->u.i.v;
    return x == y;
}

static int kind(int type)
{
    switch (type) {
    case MPCONN_BOOL:
    case MPCONN_INT:
    case MPCONN_FLOAT: return MPCONN_INT;
    case MPCONN_BYTEARRAY: return MPCONN_BYTES;
    case MPCONN_FROZENSET: return MPCONN_SET;
    default: return type;
    }
}

/* Both hashes known and different: the values differ (equal values hash
 * alike). */
static int hashes_differ(const mpconn_value *a, const mpconn_value *b)
{
    if (!(a->flags & b->flags & MPCI_F_HASHED) || a->type != b->type)
        return 0;
    switch (a->type) {
    case MPCONN_STR:
    case MPCONN_BYTES: return a->u.s.hash != b->u.s.hash;
    case MPCONN_TUPLE: return a->u.seq.aux.hash != b->u.seq.aux.hash;
    case MPCONN_FROZENSET: return a->u.map.aux.hash != b->u.map.aux.hash;
    default: return 0;
    }
}

/* 1 equal, 0 not, -1 needs a container walk. */
static int shallow_equal(const mpconn_value *a, const mpconn_value *b)
{
    if (kind(a->type) != kind(b->type))
        return 0;
    if (is_number(a))
        return num_equal(a, b);
    if (hashes_differ(a, b))
        return 0;
    switch (a->type) {
    case MPCONN_NONE: return 1;
    case MPCONN_STR:
    case MPCONN_BYTES:
    case MPCONN_BYTEARRAY:
        return a->u.s.len == b->u.s.len && memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0;
    case MPCONN_LIST:
    case MPCONN_TUPLE: return a->u.seq.len == b->u.seq.len ? -1 : 0;
    case MPCONN_DICT:
    case MPCONN_SET:
    case MPCONN_FROZENSET: return a->u.map.len == b->u.map.len ? -1 : 0;
    case MPCI_CALLABLE: return a->sub == b->sub;
    default: return 0;
    }
}

/* ------------------------------------------------- the pairs already known */

struct mpci_pair {
    const mpconn_value *a, *b; /* a NULL: empty slot */
    int equal;
};

void mpci_eqctx_init(mpci_eqctx *cx, int hold)
{
    memset(cx, 0, sizeof *cx);
    cx->hold = hold;
}

void mpci_eqctx_free(mpci_eqctx *cx)
{
    if (cx->hold)
        for (size_t i = 0; i < cx->cap; i++)
            if (cx->pairs[i].a) {
                mpconn_value_unref((mpconn_value *)cx->pairs[i].a);
                mpconn_value_unref((mpconn_value *)cx->pairs[i].b);
            }
    free(cx->pairs);
    cx->pairs = NULL;
    cx->cap = cx->used = cx->bytes = 0;
}

/* Only a pair of values both referenced more than once can be met again
 * (a tree never repeats a pair), and only comparisons that cost more than a
 * look-up are worth keeping. */
static int worth_keeping(const mpconn_value *a, const mpconn_value *b)
{
    if (a->refs < 2 || b->refs < 2 || (a->flags & MPCI_F_IMMORTAL) || (b->flags & MPCI_F_IMMORTAL))
        return 0;
    if (mpci_is_container(a))
        return 1;
    if (a->type == MPCONN_STR || a->type == MPCONN_BYTES || a->type == MPCONN_BYTEARRAY)
        return a->u.s.len > 64;
    return a->type == MPCONN_INT && (a->flags & MPCI_F_BIG) && a->u.big.len > 64;
}

static size_t pair_slot(const mpci_eqctx *cx, const mpconn_value *a, const mpconn_value *b)
{
    return (mpci_ptr_hash(a) ^ (mpci_ptr_hash(b) * 0x9e3779b97f4a7c15ULL)) & (cx->cap - 1);
}

/* 1 or 0 when the pair is known, -1 when not. */
static int pair_known(const mpci_eqctx *cx, const mpconn_value *a, const mpconn_value *b)
{
    if (!cx->used)
        return -1;
    if (a > b) {
        const mpconn_value *t = a;
        a = b;
        b = t;
    }
    for (size_t s = pair_slot(cx, a, b);; s = (s + 1) & (cx->cap - 1)) {
        const struct mpci_pair *p = &cx->pairs[s];
        if (!p->a)
            return -1;
        if (p->a == a && p->b == b)
            return p->equal;
    }
}

/* Records a result; out of memory only forgets it. */
static void pair_put(mpci_eqctx *cx, const mpconn_value *a, const mpconn_value *b, int equal)
{
    if (a > b) {
        const mpconn_value *t = a;
        a = b;
        b = t;
    }
    if ((cx->used + 1) * 2 > cx->cap) {
        size_t ncap = cx->cap ? cx->cap * 2 : 64;
        struct mpci_pair *n = calloc(ncap, sizeof *n);
        if (!n)
            return;
        struct mpci_pair *old = cx->pairs;
        size_t ocap = cx->cap;
        cx->pairs = n;
        cx->cap = ncap;
        for (size_t i = 0; i < ocap; i++) {
            if (!old[i].a)
                continue;
            size_t s = pair_slot(cx, old[i].a, old[i].b);
            while (n[s].a)
                s = (s + 1) & (ncap - 1);
            n[s] = old[i];
        }
        free(old);
        cx->bytes = mpci_malloc_cost(ncap * sizeof *n);
    }
    size_t s = pair_slot(cx, a, b);
    while (cx->pairs[s].a) {
        if (cx->pairs[s].a == a && cx->pairs[s].b == b)
            return;
        s = (s + 1) & (cx->cap - 1);
    }
    cx->pairs[s] = (struct mpci_pair){a, b, equal};
    cx->used++;
    if (cx->hold) {
        mpconn_value_ref((mpconn_value *)a);
        mpconn_value_ref((mpconn_value *)b);
    }
}

/* ------------------------------------------------------- the comparison */

static long map_find(const mpconn_value *m, const mpconn_value *key, uint64_t h, mpci_eqctx *cx,
                     int nest);

struct eframe {
    const mpconn_value *a, *b;
    size_t i;
};

/* Python's == as a walk over both values side by side, identity first as
 * Python's containers compare. Pairs of shared sub-values are looked up in
 * cx and recorded there, so a DAG costs its size, not its tree size. */
static int equal_nest(const mpconn_value *a, const mpconn_value *b, mpci_eqctx *cx, int nest)
{
    /* Identity decides for everything but a NaN, which Python's == tells
     * apart from itself (only inside containers is identity enough). */
    if (a == b && a->type != MPCONN_FLOAT)
        return 1;
    int r = shallow_equal(a, b);
    if (r >= 0)
        return r;
    if (nest > MAX_LOOKUP_NEST) {
        cx->gave_up = 1;
        return 0;
    }
    if ((r = pair_known(cx, a, b)) >= 0)
        return r;
    int gave_up = cx->gave_up;
    cx->gave_up = 0;
    struct eframe local[32], *st = local;
    size_t sp = 0, cap = 32;
    st[sp++] = (struct eframe){a, b, 0};
    int result = 1;
    while (sp && result) {
        struct eframe *f = &st[sp - 1];
        const mpconn_value *x, *y;
        cx->steps++;
        if (f->a->type == MPCONN_LIST || f->a->type == MPCONN_TUPLE) {
            if (f->i == f->a->u.seq.len) {
                if (worth_keeping(f->a, f->b))
                    pair_put(cx, f->a, f->b, 1);
                sp--;
                continue;
            }
            x = f->a->u.seq.items[f->i];
            y = f->b->u.seq.items[f->i];
            f->i++;
        } else {
            if (f->i == f->a->u.map.len) {
                if (worth_keeping(f->a, f->b))
                    pair_put(cx, f->a, f->b, 1);
                sp--;
                continue;
            }
            const mpci_entry *e = &f->a->u.map.ents[f->i++];
            long j = map_find(f->b, e->key, e->hash, cx, nest + 1);
            if (j < 0) {
                result = 0;
                break;
            }
            if (f->a->type != MPCONN_DICT)
                continue;
            x = e->val;
            y = f->b->u.map.ents[j].val;
        }
        if (x == y)
            continue;
        r = shallow_equal(x, y);
        if (r < 0)
            r = pair_known(cx, x, y);
        if (r == 0) {
            result = 0;
        } else if (r < 0) {
            if (sp == cap) {
                size_t ncap = cap * 2;
                struct eframe *n =
                    st == local ? malloc(ncap * sizeof *n) : realloc(st, ncap * sizeof *n);
                if (!n) {
                    result = 0;
                    cx->gave_up = 1;
                    break;
                }
                if (st == local)
                    memcpy(n, local, sizeof local);
                st = n;
                cap = ncap;
            }
            st[sp++] = (struct eframe){x, y, 0};
        }
    }
    /* A difference makes every pair still open unequal, unless a lookup
     * gave up below (then nothing is proven). */
    if (!result && !cx->gave_up)
        for (size_t k = 0; k < sp; k++)
            if (worth_keeping(st[k].a, st[k].b))
                pair_put(cx, st[k].a, st[k].b, 0);
    cx->gave_up |= gave_up;
    if (st != local)
        free(st);
    return result;
}

int mpci_value_equal_cx(const mpconn_value *a, const mpconn_value *b, mpci_eqctx *cx)
{
    if (!a || !b)
        return a == b;
    return equal_nest(a, b, cx, 0);
}

int mpconn_value_equal(const mpconn_value *a, const mpconn_value *b)
{
    mpci_eqctx cx;
    mpci_eqctx_init(&cx, 0);
    int r = mpci_value_equal_cx(a, b, &cx);
    mpci_eqctx_free(&cx);
    return r;
}

/* ----------------------------------------------------------- dict / set */

static int keys_match(const mpci_entry *e, const mpconn_value *key, uint64_t h, mpci_eqctx *cx,
                      int nest)
{
    return e->key == key || (e->hash == h && equal_nest(e->key, key, cx, nest));
}

/* The index slot of a hash. The map's address salts it, so a peer that
 * knows the hash function still cannot aim many keys at one slot. */
static size_t home_slot(const mpconn_value *m, uint64_t h)
{
    return (size_t)mix64(h ^ (uint64_t)(uintptr_t)m) & (m->u.map.icap - 1);
}

/* Legitimate keys never probe this far at half load; keys crafted to
 * collide in the full 64-bit hash would make inserts quadratic. */
#define MAX_PROBES 512

/* Entry number of key, -1 when absent, -2 when its probe run is too long. */
static long map_find(const mpconn_value *m, const mpconn_value *key, uint64_t h, mpci_eqctx *cx,
                     int nest)
{
    if (!m->u.map.index) {
        for (size_t i = 0; i < m->u.map.len; i++) {
            cx->steps++;
            if (keys_match(&m->u.map.ents[i], key, h, cx, nest))
                return (long)i;
        }
        return -1;
    }
    size_t mask = m->u.map.icap - 1;
    size_t s = home_slot(m, h);
    for (int probes = 0; probes < MAX_PROBES; probes++, s = (s + 1) & mask) {
        cx->steps++;
        uint32_t slot = m->u.map.index[s];
        if (!slot)
            return -1;
        if (keys_match(&m->u.map.ents[slot - 1], key, h, cx, nest))
            return (long)slot - 1;
    }
    return -2;
}

static void index_insert(const mpconn_value *m, uint32_t *index, uint64_t h, uint32_t slot)
{
    size_t mask = m->u.map.icap - 1;
    size_t s = home_slot(m, h);
    while (index[s])
        s = (s + 1) & mask;
    index[s] = slot;
}

static int index_grow(mpconn_value *m)
{
    size_t icap = 32;
    while (icap < m->u.map.len * 2 + 2)
        icap *= 2;
    uint32_t *index = calloc(icap, sizeof *index);
    if (!index)
        return -ENOMEM;
    free(m->u.map.index);
    m->u.map.index = index;
    m->u.map.icap = icap;
    for (size_t i = 0; i < m->u.map.len; i++)
        index_insert(m, index, m->u.map.ents[i].hash, (uint32_t)(i + 1));
    return 0;
}

int mpci_map_insert(mpconn_value *m, mpconn_value *key, mpconn_value *val, mpci_eqctx *cx)
{
    uint64_t h;
    int rc = value_hash(key, &h, &cx->steps);
    if (rc < 0)
        goto fail;
    long j = map_find(m, key, h, cx, 0);
    if (j == -2) {
        rc = MPCONN_ERR_LIMIT;
        goto fail;
    }
    if (j >= 0) {
        mpci_entry *e = &m->u.map.ents[j];
        mpconn_value_unref(key); /* Python keeps the first key */
        if (m->type == MPCONN_DICT) {
            mpconn_value *old = e->val;
            e->val = val;
            note_child(m, val);
            mpconn_value_unref(old);
        }
        return 0;
    }
    if (m->u.map.len == m->u.map.cap && (rc = mpci_value_reserve(m, 1)) < 0)
        goto fail;
    size_t n = m->u.map.len;
    if (n + 1 > SMALL_MAP && (!m->u.map.index || (n + 1) * 2 > m->u.map.icap)) {
        m->u.map.len = n; /* index the existing entries, then add this one */
        if ((rc = index_grow(m)) < 0)
            goto fail;
    }
    m->u.map.ents[n] = (mpci_entry){h, key, val};
    m->u.map.len = n + 1;
    if (m->u.map.index)
        index_insert(m, m->u.map.index, h, (uint32_t)(n + 1));
    note_child(m, key);
    if (val)
        note_child(m, val);
    if (m->type == MPCONN_FROZENSET)
        m->flags &= (uint8_t)~MPCI_F_HASHED;
    return 0;
fail:
    mpconn_value_unref(key);
    mpconn_value_unref(val);
    return rc;
}

/* Inserts key (and val for dicts) under a context of its own; steals both. */
static int map_insert(mpconn_value *m, mpconn_value *key, mpconn_value *val)
{
    mpci_eqctx cx;
    mpci_eqctx_init(&cx, 0);
    int rc = mpci_map_insert(m, key, val, &cx);
    mpci_eqctx_free(&cx);
    return rc;
}

int mpconn_value_dict_set(mpconn_value *dict, mpconn_value *key, mpconn_value *val)
{
    if (!dict || !key || !val) {
        mpconn_value_unref(key);
        mpconn_value_unref(val);
        return -ENOMEM;
    }
    if (dict->type != MPCONN_DICT) {
        mpconn_value_unref(key);
        mpconn_value_unref(val);
        return MPCONN_ERR_TYPE;
    }
    return map_insert(dict, key, val);
}

int mpconn_value_add(mpconn_value *set, mpconn_value *item)
{
    if (!set || !item) {
        mpconn_value_unref(item);
        return -ENOMEM;
    }
    if (set->type != MPCONN_SET && set->type != MPCONN_FROZENSET) {
        mpconn_value_unref(item);
        return MPCONN_ERR_TYPE;
    }
    return map_insert(set, item, NULL);
}

/* Looks key up under a context of its own. */
static long map_lookup(const mpconn_value *m, const mpconn_value *key, uint64_t h)
{
    mpci_eqctx cx;
    mpci_eqctx_init(&cx, 0);
    long j = map_find(m, key, h, &cx, 0);
    mpci_eqctx_free(&cx);
    return j;
}

/* ------------------------------------------------------------ accessors */

mpconn_type mpconn_value_type(const mpconn_value *v)
{
    return (mpconn_type)v->type;
}

const char *mpconn_type_name(mpconn_type t)
{
    switch (t) {
    case MPCONN_NONE: return "NoneType";
    case MPCONN_BOOL: return "bool";
    case MPCONN_INT: return "int";
    case MPCONN_FLOAT: return "float";
    case MPCONN_STR: return "str";
    case MPCONN_BYTES: return "bytes";
    case MPCONN_BYTEARRAY: return "bytearray";
    case MPCONN_LIST: return "list";
    case MPCONN_TUPLE: return "tuple";
    case MPCONN_DICT: return "dict";
    case MPCONN_SET: return "set";
    case MPCONN_FROZENSET: return "frozenset";
    }
    return "unknown";
}

size_t mpconn_value_len(const mpconn_value *v)
{
    if (!v)
        return 0;
    switch (v->type) {
    case MPCONN_STR:
    case MPCONN_BYTES:
    case MPCONN_BYTEARRAY: return v->u.s.len;
    case MPCONN_LIST:
    case MPCONN_TUPLE: return v->u.seq.len;
    case MPCONN_DICT:
    case MPCONN_SET:
    case MPCONN_FROZENSET: return v->u.map.len;
    default: return 0;
    }
}

mpconn_value *mpconn_value_item(const mpconn_value *v, size_t i)
{
    if (!v)
        return NULL;
    if (v->type == MPCONN_LIST || v->type == MPCONN_TUPLE)
        return i < v->u.seq.len ? v->u.seq.items[i] : NULL;
    if (v->type == MPCONN_DICT || v->type == MPCONN_SET || v->type == MPCONN_FROZENSET)
        return i < v->u.map.len ? v->u.map.ents[i].key : NULL;
    return NULL;
}

mpconn_value *mpconn_value_dict_value(const mpconn_value *v, size_t i)
{
    if (!v || v->type != MPCONN_DICT || i >= v->u.map.len)
        return NULL;
    return v->u.map.ents[i].val;
}

mpconn_value *mpconn_value_dict_get(const mpconn_value *dict, const mpconn_value *key)
{
    uint64_t h;
    if (!dict || !key || dict->type != MPCONN_DICT || mpci_value_hash(key, &h) < 0)
        return NULL;
    long j = map_lookup(dict, key, h);
    return j < 0 ? NULL : dict->u.map.ents[j].val;
}

mpconn_value *mpconn_value_dict_get_str(const mpconn_value *dict, const char *key)
{
    if (!dict || !key || dict->type != MPCONN_DICT)
        return NULL;
    size_t n = strlen(key);
    /* A stack-built str: no allocation for the common lookup. */
    mpconn_value k;
    memset(&k, 0, sizeof k);
    k.refs = 1;
    k.type = MPCONN_STR;
    k.flags = MPCI_F_IMMORTAL;
    k.u.s.p = (char *)key;
    k.u.s.len = n;
    uint64_t h = hash_bytes(key, n, 1);
    long j = map_lookup(dict, &k, h);
    return j < 0 ? NULL : dict->u.map.ents[j].val;
}

int mpconn_value_get_bool(const mpconn_value *v, int *out)
{
    if (!v || v->type != MPCONN_BOOL)
        return MPCONN_ERR_TYPE;
    *out = v->u.b;
    return 0;
}

int mpconn_value_get_int(const mpconn_value *v, int64_t *out)
{
    if (!v)
        return MPCONN_ERR_TYPE;
    if (v->type == MPCONN_BOOL) {
        *out = v->u.b;
        return 0;
    }
    if (v->type != MPCONN_INT)
        return MPCONN_ERR_TYPE;
    if (v->flags & MPCI_F_BIG)
        return MPCONN_ERR_RANGE;
    *out = v->u.i.v;
    return 0;
}

int mpconn_value_get_bigint(const mpconn_value *v, int *negative, const uint8_t **magnitude,
                            size_t *len)
{
    if (!v || (v->type != MPCONN_INT && v->type != MPCONN_BOOL))
        return MPCONN_ERR_TYPE;
    if (v->flags & MPCI_F_BIG) {
        *negative = v->u.big.neg;
        *magnitude = v->u.big.mag;
        *len = v->u.big.len;
        return 0;
    }
    if (v->type == MPCONN_BOOL) {
        *negative = 0;
        *magnitude = &byte_values[1];
        *len = v->u.b ? 1 : 0;
        return 0;
    }
    int64_t i = v->u.i.v;
    uint64_t m = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
    *negative = i < 0;
    if (v->flags & MPCI_F_IMMORTAL) { /* a small int: never written */
        *magnitude = m == 256 ? mag_256 : &byte_values[m];
        *len = m == 0 ? 0 : m == 256 ? 2 : 1;
        return 0;
    }
    /* The magnitude lives in the value so the pointer can be borrowed. */
    mpconn_value *w = (mpconn_value *)v;
    size_t n = 0;
    for (int k = 7; k >= 0; k--) {
        uint8_t b = (uint8_t)(m >> (k * 8));
        if (b || n)
            w->u.i.mag[n++] = b;
    }
    *magnitude = w->u.i.mag;
    *len = n;
    return 0;
}

int mpconn_value_get_float(const mpconn_value *v, double *out)
{
    if (!v)
        return MPCONN_ERR_TYPE;
    switch (v->type) {
    case MPCONN_FLOAT: *out = v->u.d; return 0;
    case MPCONN_BOOL: *out = v->u.b; return 0;
    case MPCONN_INT:
        if (v->flags & MPCI_F_BIG)
            return mpci_bigint_to_double(v, out);
        *out = (double)v->u.i.v;
        return 0;
    default: return MPCONN_ERR_TYPE;
    }
}

int mpconn_value_get_str(const mpconn_value *v, const char **s, size_t *len)
{
    if (!v || v->type != MPCONN_STR)
        return MPCONN_ERR_TYPE;
    *s = v->u.s.p;
    if (len)
        *len = v->u.s.len;
    return 0;
}

int mpconn_value_get_bytes(const mpconn_value *v, const void **p, size_t *len)
{
    if (!v || (v->type != MPCONN_BYTES && v->type != MPCONN_BYTEARRAY))
        return MPCONN_ERR_TYPE;
    *p = v->u.s.p;
    if (len)
        *len = v->u.s.len;
    return 0;
}

/* --------------------------------------------------------------- cycles */

/* Children of a container, one at a time: lists and tuples by index, maps
 * by key then value. */
static mpconn_value *child_at(const mpconn_value *c, size_t k)
{
    if (c->type == MPCONN_LIST || c->type == MPCONN_TUPLE)
        return k < c->u.seq.len ? c->u.seq.items[k] : NULL;
    if (k / 2 >= c->u.map.len)
        return NULL;
    const mpci_entry *e = &c->u.map.ents[k / 2];
    return (k & 1) ? e->val : e->key;
}

static size_t child_count(const mpconn_value *c)
{
    if (c->type == MPCONN_LIST || c->type == MPCONN_TUPLE)
        return c->u.seq.len;
    return c->u.map.len * 2;
}

struct cframe {
    mpconn_value *c;
    size_t k;
};

/* Depth-first walk with colours. Returns 1 when a back edge (a cycle) was
 * seen, 0 when none, -ENOMEM. Every container reached is appended to
 * *seen (so its marks can be cleared). */
static int walk(mpconn_value **roots, size_t nroots, mpconn_value ***seen, size_t *nseen,
                int stop_at_cycle)
{
    struct cframe *st = NULL;
    size_t sp = 0, cap = 0, scap = 0;
    int found = 0, rc = 0;
    for (size_t r = 0; r < nroots && !(found && stop_at_cycle); r++) {
        mpconn_value *root = roots[r];
        if (!root || !mpci_is_container(root) || (root->flags & (MPCI_F_GREY | MPCI_F_BLACK)))
            continue;
        mpconn_value *push = root;
        for (;;) {
            if (push) {
                if (sp == cap || *nseen == scap) {
                    size_t ncap = cap ? cap * 2 : 64;
                    size_t nscap = scap ? scap * 2 : 64;
                    struct cframe *n = realloc(st, ncap * sizeof *n);
                    if (n) {
                        st = n;
                        cap = ncap;
                    }
                    mpconn_value **s = realloc(*seen, nscap * sizeof *s);
                    if (s) {
                        *seen = s;
                        scap = nscap;
                    }
                    if (!n || !s) {
                        rc = -ENOMEM;
                        goto out;
                    }
                }
                push->flags |= MPCI_F_GREY;
                (*seen)[(*nseen)++] = push;
                st[sp++] = (struct cframe){push, 0};
                push = NULL;
            }
            if (!sp)
                break;
            struct cframe *f = &st[sp - 1];
            if (f->k == child_count(f->c)) {
                f->c->flags = (uint8_t)((f->c->flags & ~MPCI_F_GREY) | MPCI_F_BLACK);
                sp--;
                continue;
            }
            mpconn_value *ch = child_at(f->c, f->k++);
            if (!ch || !mpci_is_container(ch) || (ch->flags & MPCI_F_BLACK))
                continue;
            if (ch->flags & MPCI_F_GREY) {
                found = 1;
                if (stop_at_cycle)
                    goto out;
                continue;
            }
            push = ch;
        }
    }
out:
    free(st);
    return rc < 0 ? rc : found;
}

static void clear_marks(mpconn_value **seen, size_t n)
{
    for (size_t i = 0; i < n; i++)
        seen[i]->flags &= (uint8_t) ~(MPCI_F_GREY | MPCI_F_BLACK);
}

int mpci_value_check_acyclic(mpconn_value **roots, size_t n)
{
    mpconn_value **seen = NULL;
    size_t nseen = 0;
    int rc = walk(roots, n, &seen, &nseen, 1);
    clear_marks(seen, nseen);
    free(seen);
    if (rc < 0)
        return rc;
    return rc ? MPCONN_ERR_RECURSIVE : 0;
}

void mpci_value_break_cycles(mpconn_value **roots, size_t n)
{
    mpconn_value **seen = NULL;
    size_t nseen = 0;
    int rc = walk(roots, n, &seen, &nseen, 0);
    clear_marks(seen, nseen);
    if (rc < 0) {
        /* Out of memory while walking: the containers seen so far still get
         * emptied below, the rest may leak; nothing unsafe happens. */
    }
    /* Hold every container, empty them all, then let go: whatever was in a
     * cycle now has no references from inside it. */
    for (size_t i = 0; i < nseen; i++)
        mpconn_value_ref(seen[i]);
    for (size_t i = 0; i < nseen; i++) {
        mpconn_value *c = seen[i];
        if (c->type == MPCONN_LIST || c->type == MPCONN_TUPLE) {
            size_t len = c->u.seq.len;
            c->u.seq.len = 0;
            for (size_t k = 0; k < len; k++)
                mpconn_value_unref(c->u.seq.items[k]);
        } else {
            size_t len = c->u.map.len;
            c->u.map.len = 0;
            free(c->u.map.index);
            c->u.map.index = NULL;
            c->u.map.icap = 0;
            for (size_t k = 0; k < len; k++) {
                mpconn_value_unref(c->u.map.ents[k].key);
                mpconn_value_unref(c->u.map.ents[k].val);
            }
        }
    }
    for (size_t i = 0; i < nseen; i++)
        mpconn_value_unref(seen[i]);
    free(seen);
}
