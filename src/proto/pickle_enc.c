/* The pickle encoder: values to the bytes CPython's pickle.dumps writes for
 * them (protocols 2-5), framing and memo included. One growing buffer, an
 * explicit stack instead of recursion, shared sub-values become memo GETs. */
#include "proto/pickle.h"
#include "proto/value_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#define FRAME_TARGET 65536 /* CPython's _FRAME_SIZE_TARGET */
#define FRAME_MIN 4
#define FRAME_HDR 9
#define BATCH 1000

enum { IN_PROGRESS = 0xFFFFFFFFu };

/* Stand-ins for the objects CPython memoizes that are not values of ours:
 * the callables of the reduce forms and the 'latin1' argument. */
enum { PS_ENCODE, PS_LATIN1, PS_BYTES, PS_BYTEARRAY, PS_SET, PS_FROZENSET, PS_COUNT };

struct memo_slot {
    const void *key;
    uint32_t idx;
};

typedef struct frame {
    const mpconn_value *v;
    size_t i; /* next child */
    size_t n; /* children */
    int old;  /* set/frozenset as a reduce of a list (protocol < 4) */
} frame;

typedef struct enc {
    uint8_t *buf;
    size_t len, cap;
    int proto;
    int framing;
    size_t frame_start; /* SIZE_MAX: no open frame */
    struct memo_slot *memo;
    size_t mcap, mused;
    uint32_t memo_next;
    char pseudo[PS_COUNT];
    frame *st;
    size_t sp, scap;
    int err;
    frame st0[16]; /* first storage of st: shallow values allocate nothing */
} enc;

/* ------------------------------------------------------------- output */

static int grow(enc *e, size_t n)
{
    if (e->cap - e->len >= n)
        return 0;
    uint8_t *b = n <= SIZE_MAX - e->len ? mpci_grow(e->buf, &e->cap, e->len + n, 1, 256) : NULL;
    if (!b)
        return -ENOMEM;
    e->buf = b;
    return 0;
}

/* Room for n bytes inside the current frame (opened on demand). */
static uint8_t *room(enc *e, size_t n)
{
    if (e->err)
        return NULL;
    if (grow(e, n + FRAME_HDR) < 0) {
        e->err = -ENOMEM;
        return NULL;
    }
    if (e->framing && e->frame_start == SIZE_MAX) {
        e->frame_start = e->len;
        e->len += FRAME_HDR;
    }
    uint8_t *p = e->buf + e->len;
    e->len += n;
    return p;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void op1(enc *e, uint8_t op)
{
    uint8_t *p = room(e, 1);
    if (p)
        *p = op;
}

static void commit_frame(enc *e)
{
    if (e->frame_start == SIZE_MAX)
        return;
    size_t flen = e->len - e->frame_start - FRAME_HDR;
    uint8_t *h = e->buf + e->frame_start;
    if (flen >= FRAME_MIN) {
        h[0] = 0x95;
        put_le(h + 1, flen, 8);
    } else {
        memmove(h, h + FRAME_HDR, flen);
        e->len -= FRAME_HDR;
    }
    e->frame_start = SIZE_MAX;
}

/* CPython checks the frame size before saving each object. */
static void boundary(enc *e)
{
    if (e->frame_start != SIZE_MAX && e->len - e->frame_start - FRAME_HDR >= FRAME_TARGET)
        commit_frame(e);
}

/* An opcode with a length and a payload; large payloads go outside any
 * frame, as CPython writes them. */
static void op_data(enc *e, const uint8_t *hdr, size_t hlen, const void *data, size_t n)
{
    if (e->err)
        return;
    int framing = e->framing;
    if (framing && n >= FRAME_TARGET) {
        commit_frame(e);
        e->framing = 0;
    }
    uint8_t *p = room(e, hlen + n);
    if (p) {
        memcpy(p, hdr, hlen);
        if (n)
            memcpy(p + hlen, data, n);
    }
    e->framing = framing;
}

/* --------------------------------------------------------------- memo */

static struct memo_slot *memo_find(enc *e, const void *key)
{
    if (!e->mcap)
        return NULL;
    size_t mask = e->mcap - 1;
    for (size_t s = mpci_ptr_hash(key) & mask;; s = (s + 1) & mask) {
        if (e->memo[s].key == key)
            return &e->memo[s];
        if (!e->memo[s].key)
            return NULL;
    }
}

static void memo_set(enc *e, const void *key, uint32_t idx)
{
    struct memo_slot *s = memo_find(e, key);
    if (s) {
        s->idx = idx;
        return;
    }
    if ((e->mused + 1) * 2 > e->mcap) {
        size_t ncap = e->mcap ? e->mcap * 2 : 64;
        struct memo_slot *n = calloc(ncap, sizeof *n);
        if (!n) {
            e->err = -ENOMEM;
            return;
        }
        for (size_t i = 0; i < e->mcap; i++) {
            if (!e->memo[i].key)
                continue;
            size_t k = mpci_ptr_hash(e->memo[i].key) & (ncap - 1);
            while (n[k].key)
                k = (k + 1) & (ncap - 1);
            n[k] = e->memo[i];
        }
        free(e->memo);
        e->memo = n;
        e->mcap = ncap;
    }
    size_t mask = e->mcap - 1, k = mpci_ptr_hash(key) & mask;
    while (e->memo[k].key)
        k = (k + 1) & mask;
    e->memo[k] = (struct memo_slot){key, idx};
    e->mused++;
}

/* Writes MEMOIZE/BINPUT for the next memo index, recording key (when it
 * may be met again). */
static void memoize(enc *e, const void *key, int shared)
{
    uint32_t idx = e->memo_next++;
    if (e->proto >= 4) {
        op1(e, 0x94);
    } else if (idx < 256) {
        uint8_t *p = room(e, 2);
        if (p) {
            p[0] = 0x71;
            p[1] = (uint8_t)idx;
        }
    } else {
        uint8_t *p = room(e, 5);
        if (p) {
            p[0] = 0x72;
            put_le(p + 1, idx, 4);
        }
    }
    if (shared && key)
        memo_set(e, key, idx);
}

static void memo_get(enc *e, uint32_t idx)
{
    if (idx < 256) {
        uint8_t *p = room(e, 2);
        if (p) {
            p[0] = 0x68;
            p[1] = (uint8_t)idx;
        }
    } else {
        uint8_t *p = room(e, 5);
        if (p) {
            p[0] = 0x6a;
            put_le(p + 1, idx, 4);
        }
    }
}

static int shared(const mpconn_value *v)
{
    return v->refs > 1;
}

/* ------------------------------------------------------------- scalars */

static void save_str_raw(enc *e, const char *s, size_t n)
{
    uint8_t hdr[9];
    if (e->proto >= 4 && n < 256) {
        hdr[0] = 0x8c;
        hdr[1] = (uint8_t)n;
        op_data(e, hdr, 2, s, n);
    } else if (n <= 0xFFFFFFFFu) {
        hdr[0] = 0x58;
        put_le(hdr + 1, n, 4);
        op_data(e, hdr, 5, s, n);
    } else if (e->proto >= 4) {
        hdr[0] = 0x8d;
        put_le(hdr + 1, n, 8);
        op_data(e, hdr, 9, s, n);
    } else {
        e->err = -EOVERFLOW;
    }
}

static void save_bytes_raw(enc *e, const void *s, size_t n)
{
    uint8_t hdr[9];
    if (n < 256) {
        hdr[0] = 0x43;
        hdr[1] = (uint8_t)n;
        op_data(e, hdr, 2, s, n);
    } else if (n <= 0xFFFFFFFFu) {
        hdr[0] = 0x42;
        put_le(hdr + 1, n, 4);
        op_data(e, hdr, 5, s, n);
    } else if (e->proto >= 4) {
        hdr[0] = 0x8e;
        put_le(hdr + 1, n, 8);
        op_data(e, hdr, 9, s, n);
    } else {
        e->err = -EOVERFLOW;
    }
}

/* A module-level name, memoized once like CPython's save_global. */
static void save_global(enc *e, int ps)
{
    static const char *const names[PS_COUNT] = {"encode",    "",    "bytes",
                                                "bytearray", "set", "frozenset"};
    struct memo_slot *m = memo_find(e, &e->pseudo[ps]);
    if (m) {
        memo_get(e, m->idx);
        return;
    }
    const char *mod = ps == PS_ENCODE ? "_codecs" : e->proto >= 3 ? "builtins" : "__builtin__";
    const char *name = names[ps];
    if (e->proto >= 4) {
        save_str_raw(e, mod, strlen(mod));
        memoize(e, NULL, 0);
        save_str_raw(e, name, strlen(name));
        memoize(e, NULL, 0);
        op1(e, 0x93);
    } else {
        size_t ml = strlen(mod), nl = strlen(name);
        uint8_t *p = room(e, ml + nl + 3);
        if (p) {
            p[0] = 0x63;
            memcpy(p + 1, mod, ml);
            p[1 + ml] = '\n';
            memcpy(p + 2 + ml, name, nl);
            p[2 + ml + nl] = '\n';
        }
    }
    memoize(e, &e->pseudo[ps], 1);
}

/* Protocol 2 bytes: _codecs.encode(text, 'latin1'), or bytes() when empty. */
static void save_bytes_p2(enc *e, const uint8_t *s, size_t n)
{
    if (n == 0) {
        save_global(e, PS_BYTES);
        op1(e, 0x29);
        op1(e, 0x52);
        return;
    }
    save_global(e, PS_ENCODE);
    size_t ulen = n;
    for (size_t i = 0; i < n; i++)
        ulen += s[i] >> 7;
    uint8_t *p = room(e, 5 + ulen);
    if (!p)
        return;
    p[0] = 0x58;
    put_le(p + 1, ulen, 4);
    p += 5;
    for (size_t i = 0; i < n; i++)
        p += mpci_utf8_put(p, s[i]); /* Latin-1 code points */
    memoize(e, NULL, 0);
    struct memo_slot *m = memo_find(e, &e->pseudo[PS_LATIN1]);
    if (m) {
        memo_get(e, m->idx);
    } else {
        save_str_raw(e, "latin1", 6);
        memoize(e, &e->pseudo[PS_LATIN1], 1);
    }
    op1(e, 0x86);
    memoize(e, NULL, 0);
    op1(e, 0x52);
}

static void save_int(enc *e, const mpconn_value *v)
{
    if (v->type == MPCONN_BOOL) {
        op1(e, v->u.b ? 0x88 : 0x89);
        return;
    }
    uint8_t tmp[16];
    if (!(v->flags & MPCI_F_BIG)) {
        int64_t x = v->u.i.v;
        uint8_t *p;
        if (x >= 0 && x < 256) {
            if ((p = room(e, 2))) {
                p[0] = 0x4b;
                p[1] = (uint8_t)x;
            }
            return;
        }
        if (x >= 256 && x < 65536) {
            if ((p = room(e, 3))) {
                p[0] = 0x4d;
                put_le(p + 1, (uint64_t)x, 2);
            }
            return;
        }
        if (x >= INT32_MIN && x <= INT32_MAX) {
            if ((p = room(e, 5))) {
                p[0] = 0x4a;
                put_le(p + 1, (uint64_t)x, 4);
            }
            return;
        }
        /* Minimal two's complement, as CPython's encode_long. */
        uint64_t mag = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
        int bits = 0;
        while (bits < 64 && (mag >> bits))
            bits++;
        size_t nb = (size_t)(bits >> 3) + 1;
        put_le(tmp, (uint64_t)x, 8);
        tmp[8] = x < 0 ? 0xFF : 0;
        if (x < 0 && nb > 1 && tmp[nb - 1] == 0xFF && (tmp[nb - 2] & 0x80))
            nb--;
        if ((p = room(e, 2 + nb))) {
            p[0] = 0x8a;
            p[1] = (uint8_t)nb;
            memcpy(p + 2, tmp, nb);
        }
        return;
    }
    const uint8_t *m = v->u.big.mag;
    size_t len = v->u.big.len;
    int top = 0;
    while (top < 8 && (m[0] >> top))
        top++;
    size_t bits = (len - 1) * 8 + (size_t)top;
    size_t nb = (bits >> 3) + 1;
    uint8_t *out = malloc(nb);
    if (!out) {
        e->err = -ENOMEM;
        return;
    }
    /* Little-endian magnitude, then negate in place for negatives. */
    for (size_t i = 0; i < nb; i++)
        out[i] = i < len ? m[len - 1 - i] : 0;
    if (v->u.big.neg) {
        unsigned carry = 1;
        for (size_t i = 0; i < nb; i++) {
            unsigned b = (~out[i] & 0xFFu) + carry;
            out[i] = (uint8_t)b;
            carry = b >> 8;
        }
        if (nb > 1 && out[nb - 1] == 0xFF && (out[nb - 2] & 0x80))
            nb--;
    }
    uint8_t hdr[5];
    if (nb < 256) {
        hdr[0] = 0x8a;
        hdr[1] = (uint8_t)nb;
        op_data(e, hdr, 2, out, nb);
    } else {
        hdr[0] = 0x8b;
        put_le(hdr + 1, nb, 4);
        op_data(e, hdr, 5, out, nb);
    }
    free(out);
}

static void save_float(enc *e, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    uint8_t *p = room(e, 9);
    if (!p)
        return;
    p[0] = 0x47;
    for (int i = 0; i < 8; i++)
        p[1 + i] = (uint8_t)(bits >> (56 - 8 * i));
}

/* Scalars and memo hits; returns 1 when v still needs a container frame. */
static int save_simple(enc *e, const mpconn_value *v)
{
    boundary(e);
    if (shared(v) && (v->type >= MPCONN_STR)) {
        struct memo_slot *m = memo_find(e, v);
        if (m) {
            if (m->idx == IN_PROGRESS) {
                e->err = MPCONN_ERR_RECURSIVE;
                return 0;
            }
            memo_get(e, m->idx);
            return 0;
        }
    }
    switch (v->type) {
    case MPCONN_NONE: op1(e, 0x4e); return 0;
    case MPCONN_BOOL:
    case MPCONN_INT: save_int(e, v); return 0;
    case MPCONN_FLOAT: save_float(e, v->u.d); return 0;
    case MPCONN_STR:
        save_str_raw(e, v->u.s.p, v->u.s.len);
        memoize(e, v, shared(v));
        return 0;
    case MPCONN_BYTES:
        if (e->proto >= 3)
            save_bytes_raw(e, v->u.s.p, v->u.s.len);
        else
            save_bytes_p2(e, (const uint8_t *)v->u.s.p, v->u.s.len);
        memoize(e, v, shared(v));
        return 0;
    case MPCONN_BYTEARRAY:
        if (e->proto >= 5) {
            uint8_t hdr[9];
            hdr[0] = 0x96;
            put_le(hdr + 1, v->u.s.len, 8);
            op_data(e, hdr, 9, v->u.s.p, v->u.s.len);
        } else {
            save_global(e, PS_BYTEARRAY);
            if (v->u.s.len == 0) {
                op1(e, 0x29);
            } else {
                if (e->proto >= 3)
                    save_bytes_raw(e, v->u.s.p, v->u.s.len);
                else
                    save_bytes_p2(e, (const uint8_t *)v->u.s.p, v->u.s.len);
                memoize(e, NULL, 0);
                op1(e, 0x85);
                memoize(e, NULL, 0);
            }
            op1(e, 0x52);
        }
        memoize(e, v, shared(v));
        return 0;
    case MPCONN_TUPLE:
        if (v->u.seq.len == 0) {
            op1(e, 0x29);
            return 0;
        }
        return 1;
    case MPCONN_LIST:
    case MPCONN_DICT:
    case MPCONN_SET:
    case MPCONN_FROZENSET: return 1;
    default: e->err = MPCONN_ERR_TYPE; return 0;
    }
}

/* ---------------------------------------------------------- containers */

static void open_container(enc *e, frame *f)
{
    const mpconn_value *v = f->v;
    switch (v->type) {
    case MPCONN_LIST:
        op1(e, 0x5d);
        memoize(e, v, shared(v));
        f->n = v->u.seq.len;
        break;
    case MPCONN_DICT:
        op1(e, 0x7d);
        memoize(e, v, shared(v));
        f->n = v->u.map.len * 2;
        break;
    case MPCONN_TUPLE:
        if (shared(v))
            memo_set(e, v, IN_PROGRESS);
        if (v->u.seq.len > 3)
            op1(e, 0x28);
        f->n = v->u.seq.len;
        break;
    case MPCONN_SET:
    case MPCONN_FROZENSET:
        f->n = v->u.map.len;
        if (e->proto >= 4) {
            if (v->type == MPCONN_SET) {
                op1(e, 0x8f);
                memoize(e, v, shared(v));
            } else {
                op1(e, 0x28);
            }
        } else {
            f->old = 1;
            save_global(e, v->type == MPCONN_SET ? PS_SET : PS_FROZENSET);
            op1(e, 0x5d);
            memoize(e, NULL, 0);
        }
        break;
    default: break;
    }
}

static void close_container(enc *e, frame *f)
{
    const mpconn_value *v = f->v;
    if (v->type == MPCONN_TUPLE) {
        size_t n = v->u.seq.len;
        op1(e, n > 3 ? 0x74 : (uint8_t)(0x84 + n));
        memoize(e, v, shared(v)); /* replaces IN_PROGRESS */
    } else if (f->old) {
        op1(e, 0x85);
        memoize(e, NULL, 0);
        op1(e, 0x52);
        memoize(e, v, shared(v));
    } else if (v->type == MPCONN_FROZENSET) {
        op1(e, 0x91);
        memoize(e, v, shared(v));
    }
}

static const mpconn_value *child(const frame *f)
{
    const mpconn_value *v = f->v;
    if (v->type == MPCONN_LIST || v->type == MPCONN_TUPLE)
        return v->u.seq.items[f->i];
    if (v->type == MPCONN_DICT) {
        const mpci_entry *en = &v->u.map.ents[f->i / 2];
        return (f->i & 1) ? en->val : en->key;
    }
    return v->u.map.ents[f->i].key;
}

/* Opcodes around child i: MARK before a batch, APPENDS/SETITEMS/ADDITEMS
 * after it, batched by 1000 as CPython does. */
static void before_child(enc *e, const frame *f)
{
    const mpconn_value *v = f->v;
    size_t i = f->i;
    if (v->type == MPCONN_LIST || f->old) {
        if (f->n > 1 && i % BATCH == 0)
            op1(e, 0x28);
    } else if (v->type == MPCONN_DICT) {
        if (f->n > 2 && !(i & 1) && (i / 2) % BATCH == 0)
            op1(e, 0x28);
    } else if (v->type == MPCONN_SET && i % BATCH == 0) {
        op1(e, 0x28);
    }
}

static void after_child(enc *e, const frame *f)
{
    const mpconn_value *v = f->v;
    size_t i = f->i; /* the child just saved */
    if (v->type == MPCONN_LIST || f->old) {
        if (f->n == 1)
            op1(e, 0x61);
        else if ((i + 1) % BATCH == 0 || i + 1 == f->n)
            op1(e, 0x65);
    } else if (v->type == MPCONN_DICT) {
        if (!(i & 1))
            return;
        if (f->n == 2)
            op1(e, 0x73);
        else if ((i / 2 + 1) % BATCH == 0 || i + 1 == f->n)
            op1(e, 0x75);
    } else if (v->type == MPCONN_SET) {
        if ((i + 1) % BATCH == 0 || i + 1 == f->n)
            op1(e, 0x90);
    }
}

static int push_frame(enc *e, const mpconn_value *v)
{
    if (e->sp == e->scap) {
        size_t ncap = e->scap * 2;
        frame *n = mpci_resize(e->st, e->st0, e->sp, ncap, sizeof *n);
        if (!n)
            return e->err = -ENOMEM;
        e->st = n;
        e->scap = ncap;
    }
    frame *f = &e->st[e->sp++];
    memset(f, 0, sizeof *f);
    f->v = v;
    open_container(e, f);
    return e->err;
}

static int save(enc *e, const mpconn_value *root)
{
    if (!save_simple(e, root) || e->err)
        return e->err;
    if (push_frame(e, root) < 0)
        return e->err;
    while (e->sp && !e->err) {
        frame *f = &e->st[e->sp - 1];
        if (f->i == f->n) {
            close_container(e, f);
            e->sp--;
            if (e->sp) {
                f = &e->st[e->sp - 1];
                after_child(e, f);
                f->i++;
            }
            continue;
        }
        before_child(e, f);
        const mpconn_value *c = child(f);
        if (save_simple(e, c)) {
            push_frame(e, c); /* f may move: do not touch it after this */
            continue;
        }
        after_child(e, f);
        f->i++;
    }
    return e->err;
}

int mpci_pickle_encode_into(const mpconn_value *v, int protocol, uint8_t **buf, size_t *cap,
                            size_t offset, size_t *len)
{
    if (!v || !buf || !cap || !len)
        return -EINVAL;
    if (protocol == 0)
        protocol = 4;
    if (protocol < 2 || protocol > 5)
        return -EINVAL;
    enc e;
    memset(&e, 0, offsetof(enc, st0));
    e.st = e.st0;
    e.scap = sizeof e.st0 / sizeof *e.st0;
    e.buf = *buf;
    e.cap = *cap;
    if (e.cap < offset && grow(&e, offset) < 0)
        return -ENOMEM;
    e.len = offset;
    e.proto = protocol;
    e.frame_start = SIZE_MAX;
    uint8_t *p = room(&e, 2);
    if (p) {
        p[0] = 0x80;
        p[1] = (uint8_t)protocol;
    }
    e.framing = protocol >= 4;
    int rc = e.err ? e.err : save(&e, v);
    if (rc == 0) {
        op1(&e, 0x2e);
        commit_frame(&e);
        rc = e.err;
    }
    free(e.memo);
    if (e.st != e.st0)
        free(e.st);
    *buf = e.buf;
    *cap = e.cap;
    *len = e.len - offset;
    return rc;
}

int mpci_pickle_encode(const mpconn_value *v, int protocol, void **out, size_t *len)
{
    if (!out)
        return -EINVAL;
    uint8_t *buf = NULL;
    size_t cap = 0;
    int rc = mpci_pickle_encode_into(v, protocol, &buf, &cap, 0, len);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

int mpconn_value_encode(const mpconn_value *v, int protocol, void **out, size_t *len)
{
    return mpci_pickle_encode(v, protocol, out, len);
}
