/* The safe pickle decoder: plain values only, protocols 0-5. A loop over
 * opcodes with an explicit stack (never recursion), bounded by the limits in
 * mpconn_opts, that refuses anything which would import or call code. */
#include "proto/pickle.h"
#include "proto/value_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

/* Python's int() refuses longer decimal strings by default (3.11); so do we,
 * which also keeps the quadratic decimal conversion cheap. */
#define MAX_DECIMAL_DIGITS 4300

typedef struct dec {
    const uint8_t *start, *p, *end;
    mpconn_value **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    mpconn_value **memo;
    size_t memocap, memolen; /* slots allocated, entries set */
    size_t memo_hi;          /* 1 + the highest index set: what cleanup visits */
    /* Every container made, each held by one reference until the end, so a
     * cycle built by a hostile pickle can always be found and broken. */
    mpconn_value **all;
    size_t nall, allcap;
    int maybe_cyclic; /* a container was fetched from the memo or DUPed */
    size_t items, alloc;
    size_t steps;    /* opcodes run; key hashing and comparisons count in cx */
    size_t cx_bytes; /* what the pair table of cx held when last charged */
    /* Key comparisons share one context for the whole decode: a pair of
     * shared sub-values compared for one insert is known for the next. */
    mpci_eqctx cx;
    size_t max_depth, max_items, max_memo, max_alloc;
    int py2_str;          /* MPCONN_PY2_STR_* */
    const uint8_t *op_at; /* the opcode being run, for messages */
    int op;
    char *err;
    size_t errlen;
    /* First storage of the arrays above, so a small pickle allocates
     * nothing but its values. */
    mpconn_value *stack0[32], *memo0[32], *all0[16];
    size_t marks0[8];
} dec;

static const char *op_name(int op)
{
    switch (op) {
    case 0x28: return "MARK";
    case 0x29: return "EMPTY_TUPLE";
    case 0x2e: return "STOP";
    case 0x30: return "POP";
    case 0x31: return "POP_MARK";
    case 0x32: return "DUP";
    case 0x42: return "BINBYTES";
    case 0x43: return "SHORT_BINBYTES";
    case 0x46: return "FLOAT";
    case 0x47: return "BINFLOAT";
    case 0x49: return "INT";
    case 0x4a: return "BININT";
    case 0x4b: return "BININT1";
    case 0x4c: return "LONG";
    case 0x4d: return "BININT2";
    case 0x4e: return "NONE";
    case 0x50: return "PERSID";
    case 0x51: return "BINPERSID";
    case 0x52: return "REDUCE";
    case 0x53: return "STRING";
    case 0x54: return "BINSTRING";
    case 0x55: return "SHORT_BINSTRING";
    case 0x56: return "UNICODE";
    case 0x58: return "BINUNICODE";
    case 0x5d: return "EMPTY_LIST";
    case 0x61: return "APPEND";
    case 0x62: return "BUILD";
    case 0x63: return "GLOBAL";
    case 0x64: return "DICT";
    case 0x65: return "APPENDS";
    case 0x67: return "GET";
    case 0x68: return "BINGET";
    case 0x69: return "INST";
    case 0x6a: return "LONG_BINGET";
    case 0x6c: return "LIST";
    case 0x6f: return "OBJ";
    case 0x70: return "PUT";
    case 0x71: return "BINPUT";
    case 0x72: return "LONG_BINPUT";
    case 0x73: return "SETITEM";
    case 0x74: return "TUPLE";
    case 0x75: return "SETITEMS";
    case 0x7d: return "EMPTY_DICT";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return NULL;
    }
}

__attribute__((format(printf, 3, 4))) static int fail(dec *d, int code, const char *fmt, ...)
{
    if (!d->err || !d->errlen)
        return code;
    char where[64];
    snprintf(where, sizeof where, "offset %zu (%s): ", (size_t)(d->op_at - d->start),
             op_name(d->op) ? op_name(d->op) : "?");
    va_list ap;
    va_start(ap, fmt);
    mpci_verr_prefixed(d->err, d->errlen, code, where, fmt, ap);
    va_end(ap);
    return code;
}

static int truncated(dec *d)
{
    return fail(d, MPCONN_ERR_PICKLE, "pickle truncated");
}

static size_t remaining(const dec *d)
{
    return (size_t)(d->end - d->p);
}

/* ----------------------------------------------------------- the stack */

static int over_alloc(dec *d)
{
    return fail(d, MPCONN_ERR_LIMIT, "more than %zu bytes allocated", d->max_alloc);
}

/* Adds bytes just allocated (or about to be) to the total. */
static int charge(dec *d, size_t bytes)
{
    d->alloc += bytes;
    if (d->alloc > d->max_alloc)
        return over_alloc(d);
    return 0;
}

/* Checks before allocating a block of this many bytes (a string, a big
 * int, a scratch buffer), whose cost is charged once it exists. */
static int room_for(dec *d, size_t bytes)
{
    if (bytes > d->max_alloc - d->alloc)
        return over_alloc(d);
    return 0;
}

/* A grown array of the decoder's own: charged at what malloc hands out. */
static int charge_array(dec *d, size_t oldcap, size_t ncap, size_t elem)
{
    return charge(d,
                  mpci_malloc_cost(ncap * elem) - (oldcap ? mpci_malloc_cost(oldcap * elem) : 0));
}

/* A container's growth (new items, entries, index) from its footprint
 * before the change; the pair table's growth comes along. */
static int charge_growth(dec *d, const mpconn_value *c, size_t before)
{
    size_t now = mpci_value_footprint(c);
    int rc = charge(d, now > before ? now - before : 0);
    if (rc == 0 && d->cx.bytes > d->cx_bytes) {
        rc = charge(d, d->cx.bytes - d->cx_bytes);
        d->cx_bytes = d->cx.bytes;
    }
    return rc;
}

/* Pushes a new value (stolen); NULL means out of memory. */
static int push_new(dec *d, mpconn_value *v)
{
    if (!v)
        return fail(d, -ENOMEM, "out of memory");
    d->items++;
    int rc = d->items > d->max_items
                 ? fail(d, MPCONN_ERR_LIMIT, "more than %zu values", d->max_items)
                 : charge_growth(d, v, 0);
    if (rc < 0) {
        mpconn_value_unref(v);
        return rc;
    }
    if (mpci_is_container(v)) {
        if (d->nall == d->allcap) {
            size_t ncap = d->allcap * 2;
            if ((rc = charge_array(d, d->allcap, ncap, sizeof *d->all)) < 0) {
                mpconn_value_unref(v);
                return rc;
            }
            mpconn_value **n = mpci_resize(d->all, d->all0, d->allcap, ncap, sizeof *n);
            if (!n) {
                mpconn_value_unref(v);
                return fail(d, -ENOMEM, "out of memory");
            }
            d->all = n;
            d->allcap = ncap;
        }
        d->all[d->nall++] = mpconn_value_ref(v);
    }
    if (d->sp == d->scap) {
        size_t ncap = d->scap * 2;
        if ((rc = charge_array(d, d->scap, ncap, sizeof *d->stack)) < 0) {
            mpconn_value_unref(v);
            return rc;
        }
        mpconn_value **n = mpci_resize(d->stack, d->stack0, d->scap, ncap, sizeof *n);
        if (!n) {
            mpconn_value_unref(v);
            return fail(d, -ENOMEM, "out of memory");
        }
        d->stack = n;
        d->scap = ncap;
    }
    d->stack[d->sp++] = v;
    return 0;
}

/* Pushes another reference to an existing value. */
static int push_ref(dec *d, mpconn_value *v)
{
    if (d->sp == d->scap) {
        size_t ncap = d->scap * 2;
        int rc = charge_array(d, d->scap, ncap, sizeof *d->stack);
        if (rc < 0)
            return rc;
        mpconn_value **n = mpci_resize(d->stack, d->stack0, d->scap, ncap, sizeof *n);
        if (!n)
            return fail(d, -ENOMEM, "out of memory");
        d->stack = n;
        d->scap = ncap;
    }
    if (mpci_is_container(v))
        d->maybe_cyclic = 1;
    d->stack[d->sp++] = mpconn_value_ref(v);
    return 0;
}

static size_t floor_mark(const dec *d)
{
    return d->nmarks ? d->marks[d->nmarks - 1] : 0;
}

/* Items available above the innermost mark. */
static int need_stack(dec *d, size_t n)
{
    if (d->sp - floor_mark(d) < n)
        return fail(d, MPCONN_ERR_PICKLE, "stack underflow");
    return 0;
}

static int pop_mark(dec *d, size_t *at)
{
    if (!d->nmarks)
        return fail(d, MPCONN_ERR_PICKLE, "no MARK on the stack");
    *at = d->marks[--d->nmarks];
    return 0;
}

static int check_item(dec *d, const mpconn_value *v)
{
    if (v->type == MPCI_CALLABLE)
        return fail(d, MPCONN_ERR_REFUSED, "refused: a class object used as a value");
    return 0;
}

static int insert_failed(dec *d, int rc, const char *what)
{
    if (rc == MPCONN_ERR_UNHASHABLE)
        return fail(d, rc, "unhashable %s", what);
    if (rc == MPCONN_ERR_LIMIT)
        return fail(d, rc, "%ss collide: a probe run over the limit", what);
    return fail(d, rc, "out of memory");
}

static int check_depth(dec *d, const mpconn_value *c)
{
    if (mpci_depth(c) > d->max_depth)
        return fail(d, MPCONN_ERR_LIMIT, "nesting deeper than %zu", d->max_depth);
    return 0;
}

/* ------------------------------------------------------------- readers */

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* A text line ending in '\n'; *n excludes the newline. */
static int read_line(dec *d, const uint8_t **line, size_t *n)
{
    const uint8_t *nl = memchr(d->p, '\n', remaining(d));
    if (!nl)
        return truncated(d);
    *line = d->p;
    *n = (size_t)(nl - d->p);
    d->p = nl + 1;
    return 0;
}

/* Two's complement little-endian (LONG1/LONG4) to a value. */
static mpconn_value *long_from_le(const uint8_t *p, size_t n)
{
    if (n == 0)
        return mpconn_value_int(0);
    int neg = (p[n - 1] & 0x80) != 0;
    if (n <= 8) {
        uint64_t u = le(p, (int)n);
        if (neg && n < 8)
            u |= ~(uint64_t)0 << (n * 8);
        return mpconn_value_int((int64_t)u);
    }
    uint8_t *mag = malloc(n);
    if (!mag)
        return NULL;
    /* Big-endian magnitude; negate two's complement on the way. */
    unsigned carry = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned b = p[i];
        if (neg) {
            b = (~b & 0xFF) + carry;
            carry = b >> 8;
            b &= 0xFF;
        }
        mag[n - 1 - i] = (uint8_t)b;
    }
    mpconn_value *v = mpconn_value_bigint(neg, mag, n);
    free(mag);
    return v;
}

/* Decimal digits (optional sign) to an int value; ESYNTAX-like failures
 * come back as MPCONN_ERR_PICKLE through *bad. */
static mpconn_value *decimal_int(const uint8_t *s, size_t n, int *bad)
{
    *bad = 1;
    int neg = 0;
    if (n && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        s++;
        n--;
    }
    if (!n || n > MAX_DECIMAL_DIGITS)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return NULL;
    *bad = 0;
    /* Little-endian base 2^32 limbs, multiplied up digit by digit. */
    size_t cap = n / 9 + 2, used = 1;
    uint32_t *limb = calloc(cap, sizeof *limb);
    if (!limb)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        uint64_t carry = (uint64_t)(s[i] - '0');
        for (size_t k = 0; k < used; k++) {
            uint64_t t = (uint64_t)limb[k] * 10 + carry;
            limb[k] = (uint32_t)t;
            carry = t >> 32;
        }
        if (carry)
            limb[used++] = (uint32_t)carry;
    }
    uint8_t *mag = malloc(used * 4);
    mpconn_value *v = NULL;
    if (mag) {
        for (size_t k = 0; k < used; k++)
            for (int b = 0; b < 4; b++)
                mag[(used - 1 - k) * 4 + (size_t)(3 - b)] = (uint8_t)(limb[k] >> (8 * b));
        v = mpconn_value_bigint(neg, mag, used * 4);
    }
    free(mag);
    free(limb);
    return v;
}

static void put_utf8(char **o, uint32_t c)
{
    *o += mpci_utf8_put((uint8_t *)*o, c);
}

/* A str from UTF-8 as CPython writes it with "surrogatepass": lone
 * surrogates are kept as those bytes and the str is flagged. */
static int push_text(dec *d, const char *s, size_t n)
{
    int sur = mpci_utf8_check(s, n);
    if (sur < 0)
        return fail(d, MPCONN_ERR_PICKLE, "invalid UTF-8 in a string");
    int rc = room_for(d, n);
    if (rc < 0)
        return rc;
    char *data;
    mpconn_value *v = mpci_value_alloc_str(MPCONN_STR, n, &data);
    if (v) {
        if (n)
            memcpy(data, s, n);
        if (sur)
            v->flags |= MPCI_F_SURROGATES;
    }
    return push_new(d, v);
}

/* UNICODE's raw-unicode-escape: bytes are Latin-1 code points except
 * \uXXXX and \UXXXXXXXX after an odd run of backslashes. */
static int raw_unicode_escape(dec *d, const uint8_t *s, size_t n)
{
    /* A byte yields at most 2 bytes of UTF-8; an escape of 6 or 10 bytes
     * at most 4. */
    int rc = room_for(d, n * 2 + 1);
    if (rc < 0 || (rc = charge(d, mpci_malloc_cost(n * 2 + 1))) < 0)
        return rc;
    char *buf = malloc(n * 2 + 1);
    if (!buf)
        return fail(d, -ENOMEM, "out of memory");
    char *o = buf;
    size_t i = 0;
    while (i < n) {
        if (s[i] != '\\') {
            put_utf8(&o, s[i++]);
            continue;
        }
        size_t run = 0;
        while (i + run < n && s[i + run] == '\\')
            run++;
        for (size_t k = 0; k + 1 < run; k++)
            *o++ = '\\';
        i += run;
        if (!(run & 1) || i >= n || (s[i] != 'u' && s[i] != 'U')) {
            *o++ = '\\';
            continue;
        }
        size_t digits = s[i] == 'u' ? 4 : 8;
        if (n - i - 1 < digits) {
            free(buf);
            return fail(d, MPCONN_ERR_PICKLE, "truncated \\u escape in UNICODE");
        }
        uint32_t c = 0;
        for (size_t k = 0; k < digits; k++) {
            int h = mpci_hexval(s[i + 1 + k]);
            if (h < 0) {
                free(buf);
                return fail(d, MPCONN_ERR_PICKLE, "bad \\u escape in UNICODE");
            }
            c = c << 4 | (uint32_t)h;
        }
        if (c > 0x10FFFF) {
            free(buf);
            return fail(d, MPCONN_ERR_PICKLE, "UNICODE escape is not a valid code point");
        }
        put_utf8(&o, c); /* a surrogate becomes its surrogatepass bytes */
        i += 1 + digits;
    }
    size_t len = (size_t)(o - buf);
    rc = push_text(d, buf, len);
    free(buf);
    return rc;
}

/* Python 2 str (STRING/BINSTRING/SHORT_BINSTRING), read as CPython's
 * Unpickler reads it with encoding="ASCII" (its default: non-ASCII text is
 * an error, not a guess), "bytes" or "latin1". */
static int push_py2_str(dec *d, const uint8_t *s, size_t n)
{
    if (d->py2_str == MPCONN_PY2_STR_BYTES)
        return push_new(d, mpconn_value_bytes(s, n));
    size_t high = 0;
    for (size_t i = 0; i < n; i++)
        high += s[i] >= 0x80;
    if (high == 0)
        return push_new(d, mpconn_value_strn((const char *)s, n));
    if (d->py2_str != MPCONN_PY2_STR_LATIN1)
        return fail(d, MPCONN_ERR_PICKLE,
                    "non-ASCII Python 2 string (read it as bytes or Latin-1: "
                    "mpconn_opts_set_py2_str)");
    /* Latin-1 is the first 256 code points: a high byte is two in UTF-8. */
    int rc = room_for(d, n + high);
    if (rc < 0)
        return rc;
    char *u = malloc(n + high);
    if (!u)
        return fail(d, -ENOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x80) {
            u[o++] = (char)s[i];
        } else {
            u[o++] = (char)(0xC0 | (s[i] >> 6));
            u[o++] = (char)(0x80 | (s[i] & 0x3F));
        }
    }
    rc = push_new(d, mpconn_value_strn(u, o));
    free(u);
    return rc;
}

/* FLOAT's text ("1.5", "-2e-07", "inf"). strtod reads the decimal point
 * of the program's locale, so the point is taken out first: "1.5e-3" goes
 * to strtod as "15e-4", which reads the same in every locale. */
static int text_float(const uint8_t *s, size_t n, double *out)
{
    char buf[160];
    size_t o = 0, i = 0, nfrac = 0, ndigits = 0;
    int seen_point = 0;
    if (n == 0 || n > 120)
        return -1;
    if (s[i] == '+' || s[i] == '-')
        buf[o++] = (char)s[i++];
    size_t digits_from = i;
    for (; i < n && ((s[i] >= '0' && s[i] <= '9') || (s[i] == '.' && !seen_point)); i++) {
        if (s[i] == '.') {
            seen_point = 1;
            continue;
        }
        buf[o++] = (char)s[i];
        nfrac += seen_point;
        ndigits++;
    }
    int special = i == digits_from;
    if (special) { /* inf, nan and their spellings: no point involved */
        for (; i < n && s[i] && strchr("infatyINFATY", s[i]); i++)
            buf[o++] = (char)s[i];
    } else if (ndigits == 0) {
        return -1; /* a lone point */
    }
    long long exp = 0;
    if (!special && i < n && (s[i] == 'e' || s[i] == 'E')) {
        int neg = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            neg = s[i++] == '-';
        if (i == n)
            return -1;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            if (exp < 100000)
                exp = exp * 10 + (s[i] - '0');
        exp = neg ? -exp : exp;
    }
    if (i != n)
        return -1;
    if (special)
        buf[o] = 0;
    else
        snprintf(buf + o, sizeof buf - o, "e%lld", exp - (long long)nfrac);
    char *endp;
    *out = strtod(buf, &endp);
    return *endp ? -1 : 0;
}

/* STRING: a quoted repr with backslash escapes. */
static int load_string(dec *d)
{
    const uint8_t *s = NULL;
    size_t n = 0;
    int rc = read_line(d, &s, &n);
    if (rc < 0)
        return rc;
    while (n && (s[n - 1] == '\r' || s[n - 1] == ' '))
        n--;
    if (n < 2 || (s[0] != '\'' && s[0] != '"') || s[n - 1] != s[0])
        return fail(d, MPCONN_ERR_PICKLE, "STRING is not quoted");
    s++;
    n -= 2;
    if ((rc = room_for(d, n + 1)) < 0 || (rc = charge(d, mpci_malloc_cost(n + 1))) < 0)
        return rc;
    uint8_t *buf = malloc(n + 1);
    if (!buf)
        return fail(d, -ENOMEM, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 == n) {
            buf[o++] = s[i];
            continue;
        }
        uint8_t c = s[++i];
        switch (c) {
        case '\n': break;
        case '\\': buf[o++] = '\\'; break;
        case '\'': buf[o++] = '\''; break;
        case '"': buf[o++] = '"'; break;
        case 'a': buf[o++] = 7; break;
        case 'b': buf[o++] = 8; break;
        case 'f': buf[o++] = 12; break;
        case 'n': buf[o++] = 10; break;
        case 'r': buf[o++] = 13; break;
        case 't': buf[o++] = 9; break;
        case 'v': buf[o++] = 11; break;
        case 'x':
            if (i + 2 < n + 0 && mpci_hexval(s[i + 1]) >= 0 && mpci_hexval(s[i + 2]) >= 0) {
                buf[o++] = (uint8_t)(mpci_hexval(s[i + 1]) * 16 + mpci_hexval(s[i + 2]));
                i += 2;
                break;
            }
            free(buf);
            return fail(d, MPCONN_ERR_PICKLE, "bad \\x escape in STRING");
        default:
            if (c >= '0' && c <= '7') {
                unsigned v = c - '0';
                for (int k = 0; k < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
                    v = v * 8 + (unsigned)(s[++i] - '0');
                buf[o++] = (uint8_t)v;
            } else {
                buf[o++] = '\\';
                buf[o++] = c;
            }
        }
    }
    rc = push_py2_str(d, buf, o);
    free(buf);
    return rc;
}

/* ----------------------------------------------------------------- memo */

static int memo_put(dec *d, size_t idx, mpconn_value *v)
{
    if (idx >= d->max_memo)
        return fail(d, MPCONN_ERR_LIMIT, "memo index %zu over the limit of %zu", idx, d->max_memo);
    if (idx >= d->memocap) {
        size_t ncap = d->memocap;
        while (ncap <= idx)
            ncap *= 2;
        if (ncap > d->max_memo)
            ncap = d->max_memo;
        int rc = charge_array(d, d->memo == d->memo0 ? 0 : d->memocap, ncap, sizeof *d->memo);
        if (rc < 0)
            return rc;
        mpconn_value **n = mpci_resize(d->memo, d->memo0, d->memocap, ncap, sizeof *n);
        if (!n)
            return fail(d, -ENOMEM, "out of memory");
        d->memo = n;
        d->memocap = ncap;
    }
    /* Slots past memo_hi were never set: cleared only when skipped over.
     * The usual case, the next index in order, writes without a look. */
    if (idx >= d->memo_hi) {
        if (idx > d->memo_hi)
            memset(d->memo + d->memo_hi, 0, (idx - d->memo_hi) * sizeof *d->memo);
        d->memo_hi = idx + 1;
        d->memolen++;
        d->memo[idx] = mpconn_value_ref(v);
        return 0;
    }
    if (d->memo[idx])
        mpconn_value_unref(d->memo[idx]);
    else
        d->memolen++;
    d->memo[idx] = mpconn_value_ref(v);
    return 0;
}

static int memo_get(dec *d, size_t idx)
{
    if (idx >= d->memo_hi || !d->memo[idx])
        return fail(d, MPCONN_ERR_PICKLE, "memo entry %zu is missing", idx);
    return push_ref(d, d->memo[idx]);
}

static int parse_index(dec *d, size_t *idx)
{
    const uint8_t *s = NULL;
    size_t n = 0;
    int rc = read_line(d, &s, &n);
    if (rc < 0)
        return rc;
    if (!n || n > 18)
        return fail(d, MPCONN_ERR_PICKLE, "bad memo index");
    size_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return fail(d, MPCONN_ERR_PICKLE, "bad memo index");
        v = v * 10 + (size_t)(s[i] - '0');
    }
    *idx = v;
    return 0;
}

/* ------------------------------------------------------------ globals */

static int lookup_global(dec *d, const char *mod, size_t mlen, const char *name, size_t nlen)
{
    int sub = 0;
    int builtin = (mlen == 8 && !memcmp(mod, "builtins", 8)) ||
                  (mlen == 11 && !memcmp(mod, "__builtin__", 11));
    if (builtin) {
        if (nlen == 5 && !memcmp(name, "bytes", 5))
            sub = MPCI_CALL_BYTES;
        else if (nlen == 9 && !memcmp(name, "bytearray", 9))
            sub = MPCI_CALL_BYTEARRAY;
        else if (nlen == 3 && !memcmp(name, "set", 3))
            sub = MPCI_CALL_SET;
        else if (nlen == 9 && !memcmp(name, "frozenset", 9))
            sub = MPCI_CALL_FROZENSET;
    } else if (mlen == 7 && !memcmp(mod, "_codecs", 7) && nlen == 6 && !memcmp(name, "encode", 6)) {
        sub = MPCI_CALL_ENCODE;
    }
    if (!sub) {
        /* Name it, but printably and briefly: it comes from the peer. */
        char m[80], nm[80];
        size_t i;
        for (i = 0; i < mlen && i + 1 < sizeof m; i++)
            m[i] = (mod[i] >= 0x20 && mod[i] < 0x7f) ? mod[i] : '?';
        m[i] = 0;
        for (i = 0; i < nlen && i + 1 < sizeof nm; i++)
            nm[i] = (name[i] >= 0x20 && name[i] < 0x7f) ? name[i] : '?';
        nm[i] = 0;
        return fail(d, MPCONN_ERR_REFUSED, "refused %s %s.%s", op_name(d->op), m, nm);
    }
    return push_new(d, mpci_value_callable(sub));
}

static const char *callable_name(int sub)
{
    switch (sub) {
    case MPCI_CALL_BYTES: return "bytes";
    case MPCI_CALL_BYTEARRAY: return "bytearray";
    case MPCI_CALL_SET: return "set";
    case MPCI_CALL_FROZENSET: return "frozenset";
    default: return "_codecs.encode";
    }
}

static int is_latin1_name(const mpconn_value *v)
{
    return v->type == MPCONN_STR && ((v->u.s.len == 6 && !memcmp(v->u.s.p, "latin1", 6)) ||
                                     (v->u.s.len == 7 && !memcmp(v->u.s.p, "latin-1", 7)));
}

/* str -> Latin-1 bytes of the given type; NULL with *bad when a code point
 * is above U+00FF. */
static mpconn_value *latin1_encode(const mpconn_value *s, int type, int *bad)
{
    char *out;
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)s->u.s.p;
    for (size_t i = 0; i < s->u.s.len; i++)
        if ((p[i] & 0xC0) != 0x80)
            n++;
    mpconn_value *v = mpci_value_alloc_str(type, n, &out);
    if (!v)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < s->u.s.len;) {
        unsigned c = p[i];
        if (c < 0x80) {
            out[o++] = (char)c;
            i++;
        } else if (c == 0xC2 || c == 0xC3) {
            out[o++] = (char)(((c & 0x1F) << 6) | (p[i + 1] & 0x3F));
            i += 2;
        } else {
            *bad = 1;
            mpconn_value_unref(v);
            return NULL;
        }
    }
    return v;
}

/* REDUCE of one of the recognised callables with plain arguments. */
static int apply(dec *d, const mpconn_value *fn, const mpconn_value *args)
{
    size_t n = args->u.seq.len;
    const mpconn_value *a0 = n > 0 ? args->u.seq.items[0] : NULL;
    const mpconn_value *a1 = n > 1 ? args->u.seq.items[1] : NULL;
    mpconn_value *r = NULL;
    int bad = 0;
    switch (fn->sub) {
    case MPCI_CALL_BYTES:
    case MPCI_CALL_BYTEARRAY: {
        int type = fn->sub == MPCI_CALL_BYTES ? MPCONN_BYTES : MPCONN_BYTEARRAY;
        if (n == 0)
            r = type == MPCONN_BYTES ? mpconn_value_bytes("", 0) : mpconn_value_bytearray("", 0);
        else if (n == 1 && (a0->type == MPCONN_BYTES || a0->type == MPCONN_BYTEARRAY))
            r = type == MPCONN_BYTES ? mpconn_value_bytes(a0->u.s.p, a0->u.s.len)
                                     : mpconn_value_bytearray(a0->u.s.p, a0->u.s.len);
        else if (n == 2 && a0->type == MPCONN_STR && is_latin1_name(a1))
            r = latin1_encode(a0, type, &bad);
        else
            goto refuse;
        break;
    }
    case MPCI_CALL_ENCODE:
        if (n == 2 && a0->type == MPCONN_STR && is_latin1_name(a1))
            r = latin1_encode(a0, MPCONN_BYTES, &bad);
        else
            goto refuse;
        break;
    case MPCI_CALL_SET:
    case MPCI_CALL_FROZENSET: {
        r = fn->sub == MPCI_CALL_SET ? mpconn_value_set() : mpconn_value_frozenset();
        if (!r)
            break;
        if (n == 0)
            break;
        if (n != 1 || (a0->type != MPCONN_LIST && a0->type != MPCONN_TUPLE)) {
            mpconn_value_unref(r);
            goto refuse;
        }
        int rc = room_for(d, a0->u.seq.len * (sizeof(mpci_entry) + 2 * sizeof(uint32_t)));
        if (rc < 0) {
            mpconn_value_unref(r);
            return rc;
        }
        rc = mpci_value_reserve(r, a0->u.seq.len);
        for (size_t i = 0; rc == 0 && i < a0->u.seq.len; i++)
            rc = mpci_map_insert(r, mpconn_value_ref(a0->u.seq.items[i]), NULL, &d->cx);
        if (rc < 0) {
            mpconn_value_unref(r);
            return insert_failed(d, rc, "set item");
        }
        break;
    }
    default: goto refuse;
    }
    if (bad)
        return fail(d, MPCONN_ERR_PICKLE, "latin-1 encode of a character above U+00FF");
    return push_new(d, r);
refuse:
    return fail(d, MPCONN_ERR_REFUSED, "refused REDUCE of %s with these arguments",
                callable_name(fn->sub));
}

/* ----------------------------------------------------------- containers */

/* Builds a tuple of the stack items from position at. */
static int make_tuple(dec *d, size_t at)
{
    size_t n = d->sp - at;
    for (size_t i = at; i < d->sp; i++) {
        int rc = check_item(d, d->stack[i]);
        if (rc < 0)
            return rc;
    }
    mpconn_value *t = mpconn_value_tuple();
    if (!t)
        return fail(d, -ENOMEM, "out of memory");
    /* Its items are charged with it, by push_new. */
    int rc = room_for(d, n * sizeof(mpconn_value *));
    if (rc == 0 && n)
        rc = mpci_value_extend(t, d->stack + at, n) < 0 ? fail(d, -ENOMEM, "out of memory") : 0;
    else
        for (size_t i = at; i < d->sp; i++)
            mpconn_value_unref(d->stack[i]);
    d->sp = at;
    if (rc < 0) {
        mpconn_value_unref(t);
        return rc;
    }
    rc = check_depth(d, t);
    if (rc < 0) {
        mpconn_value_unref(t);
        return rc;
    }
    return push_new(d, t);
}

/* Appends stack[at..sp) to the list at stack[at-1]. */
static int do_appends(dec *d, size_t at)
{
    if (at == 0)
        return fail(d, MPCONN_ERR_PICKLE, "stack underflow");
    mpconn_value *l = d->stack[at - 1];
    if (l->type != MPCONN_LIST)
        return fail(d, MPCONN_ERR_PICKLE, "append to a %s",
                    l->type == MPCI_CALLABLE ? "class" : mpconn_type_name(l->type));
    for (size_t i = at; i < d->sp; i++) {
        int rc = check_item(d, d->stack[i]);
        if (rc < 0)
            return rc;
    }
    size_t n = d->sp - at;
    size_t before = mpci_value_footprint(l);
    int rc = room_for(d, n * sizeof(mpconn_value *));
    if (rc < 0)
        return rc;
    rc = mpci_value_extend(l, d->stack + at, n);
    d->sp = at;
    if (rc < 0)
        return fail(d, -ENOMEM, "out of memory");
    if ((rc = charge_growth(d, l, before)) < 0)
        return rc;
    return check_depth(d, l);
}

/* Sets pairs stack[at..sp) into the dict at stack[at-1]. */
static int do_setitems(dec *d, size_t at)
{
    if (at == 0)
        return fail(d, MPCONN_ERR_PICKLE, "stack underflow");
    mpconn_value *m = d->stack[at - 1];
    if (m->type != MPCONN_DICT)
        return fail(d, MPCONN_ERR_PICKLE, "set item on a %s",
                    m->type == MPCI_CALLABLE ? "class" : mpconn_type_name(m->type));
    if ((d->sp - at) & 1)
        return fail(d, MPCONN_ERR_PICKLE, "odd number of items for SETITEMS");
    for (size_t i = at; i < d->sp; i++) {
        int rc = check_item(d, d->stack[i]);
        if (rc < 0)
            return rc;
    }
    size_t before = mpci_value_footprint(m);
    int rc = room_for(d, (d->sp - at) / 2 * (sizeof(mpci_entry) + 2 * sizeof(uint32_t)));
    if (rc < 0)
        return rc;
    if (mpci_value_reserve(m, (d->sp - at) / 2) < 0)
        return fail(d, -ENOMEM, "out of memory");
    size_t i = at;
    for (; i < d->sp; i += 2) {
        rc = mpci_map_insert(m, d->stack[i], d->stack[i + 1], &d->cx);
        if (rc < 0)
            break;
    }
    if (rc < 0)
        for (size_t k = i + 2; k < d->sp; k++)
            mpconn_value_unref(d->stack[k]);
    d->sp = at;
    if (rc < 0)
        return insert_failed(d, rc, "dict key");
    if ((rc = charge_growth(d, m, before)) < 0)
        return rc;
    return check_depth(d, m);
}

/* Adds stack[at..sp) to the set s (not on the stack). */
static int do_additems(dec *d, mpconn_value *s, size_t at)
{
    for (size_t i = at; i < d->sp; i++) {
        int rc = check_item(d, d->stack[i]);
        if (rc < 0)
            return rc;
    }
    size_t before = mpci_value_footprint(s);
    int rc = room_for(d, (d->sp - at) * (sizeof(mpci_entry) + 2 * sizeof(uint32_t)));
    if (rc < 0)
        return rc;
    if (mpci_value_reserve(s, d->sp - at) < 0)
        return fail(d, -ENOMEM, "out of memory");
    size_t i = at;
    for (; i < d->sp; i++) {
        rc = mpci_map_insert(s, d->stack[i], NULL, &d->cx);
        if (rc < 0)
            break;
    }
    if (rc < 0)
        for (size_t k = i + 1; k < d->sp; k++)
            mpconn_value_unref(d->stack[k]);
    d->sp = at;
    if (rc < 0)
        return insert_failed(d, rc, "set item");
    if ((rc = charge_growth(d, s, before)) < 0)
        return rc;
    return check_depth(d, s);
}

/* ------------------------------------------------------------- the loop */

static int load_binstr(dec *d, int type, size_t n)
{
    if (n > remaining(d))
        return fail(d, MPCONN_ERR_PICKLE, "length %zu exceeds the %zu bytes left", n, remaining(d));
    const uint8_t *s = d->p;
    d->p += n;
    if (type == MPCONN_STR)
        return push_text(d, (const char *)s, n);
    int rc = room_for(d, n);
    if (rc < 0)
        return rc;
    char *data;
    mpconn_value *v = mpci_value_alloc_str(type, n, &data);
    if (v && n)
        memcpy(data, s, n);
    return push_new(d, v);
}

static int run(dec *d, mpconn_value **out)
{
    for (;;) {
        if (d->p >= d->end)
            return fail(d, MPCONN_ERR_PICKLE, "pickle ended without STOP");
        d->op_at = d->p;
        d->op = *d->p++;
        d->steps++;
        int rc = 0;
        size_t at = 0;
        const uint8_t *s = NULL;
        size_t n = 0;
        switch (d->op) {
        case 0x80: /* PROTO */
            if (remaining(d) < 1)
                return truncated(d);
            if (*d->p > 5)
                return fail(d, MPCONN_ERR_PICKLE, "unsupported protocol %d", *d->p);
            d->p++;
            break;
        case 0x95: /* FRAME */
            if (remaining(d) < 8)
                return truncated(d);
            {
                uint64_t flen = le(d->p, 8);
                d->p += 8;
                if (flen > remaining(d))
                    return fail(d, MPCONN_ERR_PICKLE,
                                "frame of %llu bytes exceeds the %zu bytes left",
                                (unsigned long long)flen, remaining(d));
            }
            break;
        case 0x2e: /* STOP */
            if (d->nmarks)
                return fail(d, MPCONN_ERR_PICKLE, "MARK left open at STOP");
            if (d->sp == 0)
                return fail(d, MPCONN_ERR_PICKLE, "stack underflow");
            if (d->sp != 1)
                return fail(d, MPCONN_ERR_PICKLE, "%zu values left on the stack at STOP", d->sp);
            if (d->p != d->end)
                return fail(d, MPCONN_ERR_PICKLE, "%zu trailing bytes after STOP", remaining(d));
            if ((rc = check_item(d, d->stack[0])) < 0)
                return rc;
            *out = d->stack[--d->sp];
            return 0;
        case 0x28: /* MARK */
            if (d->nmarks == d->mcap) {
                size_t ncap = d->mcap * 2;
                if ((rc = charge_array(d, d->marks == d->marks0 ? 0 : d->mcap, ncap,
                                       sizeof *d->marks)) < 0)
                    return rc;
                size_t *m = mpci_resize(d->marks, d->marks0, d->mcap, ncap, sizeof *m);
                if (!m)
                    return fail(d, -ENOMEM, "out of memory");
                d->marks = m;
                d->mcap = ncap;
            }
            if (d->nmarks >= d->max_depth)
                return fail(d, MPCONN_ERR_LIMIT, "more than %zu open MARKs", d->max_depth);
            d->marks[d->nmarks++] = d->sp;
            break;
        case 0x30: /* POP */
            if (d->nmarks && d->marks[d->nmarks - 1] == d->sp) {
                d->nmarks--; /* CPython pops a bare MARK too */
                break;
            }
            if ((rc = need_stack(d, 1)) < 0)
                return rc;
            mpconn_value_unref(d->stack[--d->sp]);
            break;
        case 0x31: /* POP_MARK */
            if ((rc = pop_mark(d, &at)) < 0)
                return rc;
            while (d->sp > at)
                mpconn_value_unref(d->stack[--d->sp]);
            break;
        case 0x32: /* DUP */
            if ((rc = need_stack(d, 1)) < 0)
                return rc;
            rc = push_ref(d, d->stack[d->sp - 1]);
            break;
        case 0x4e: rc = push_new(d, mpconn_value_none()); break;
        case 0x88: rc = push_new(d, mpconn_value_bool(1)); break;
        case 0x89: rc = push_new(d, mpconn_value_bool(0)); break;
        case 0x4b: /* BININT1 */
            if (remaining(d) < 1)
                return truncated(d);
            rc = push_new(d, mpconn_value_int(*d->p++));
            break;
        case 0x4d: /* BININT2 */
            if (remaining(d) < 2)
                return truncated(d);
            rc = push_new(d, mpconn_value_int((int64_t)le(d->p, 2)));
            d->p += 2;
            break;
        case 0x4a: /* BININT */
            if (remaining(d) < 4)
                return truncated(d);
            rc = push_new(d, mpconn_value_int((int32_t)(uint32_t)le(d->p, 4)));
            d->p += 4;
            break;
        case 0x8a: /* LONG1 */
        case 0x8b: /* LONG4 */
        {
            int w = d->op == 0x8a ? 1 : 4;
            if (remaining(d) < (size_t)w)
                return truncated(d);
            uint64_t len = le(d->p, w);
            if (d->op == 0x8b && (len & 0x80000000u))
                return fail(d, MPCONN_ERR_PICKLE, "negative LONG4 length");
            d->p += w;
            if (len > remaining(d))
                return fail(d, MPCONN_ERR_PICKLE, "length %llu exceeds the %zu bytes left",
                            (unsigned long long)len, remaining(d));
            /* The value, and a scratch magnitude for a big one. */
            if ((rc = room_for(d, (size_t)len * 2 + 64)) < 0 ||
                (len > 8 && (rc = charge(d, mpci_malloc_cost((size_t)len))) < 0))
                return rc;
            rc = push_new(d, long_from_le(d->p, (size_t)len));
            d->p += len;
            break;
        }
        case 0x49: /* INT */
        case 0x4c: /* LONG */
        {
            if ((rc = read_line(d, &s, &n)) < 0)
                return rc;
            if (d->op == 0x49 && n == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1')) {
                rc = push_new(d, mpconn_value_bool(s[1] == '1'));
                break;
            }
            if (d->op == 0x4c && n && s[n - 1] == 'L')
                n--;
            int bad;
            mpconn_value *v = decimal_int(s, n, &bad);
            if (bad)
                return fail(d, MPCONN_ERR_PICKLE, "bad integer text");
            rc = push_new(d, v);
            break;
        }
        case 0x46: /* FLOAT */
        {
            if ((rc = read_line(d, &s, &n)) < 0)
                return rc;
            double x;
            if (text_float(s, n, &x) < 0)
                return fail(d, MPCONN_ERR_PICKLE, "bad float text");
            rc = push_new(d, mpconn_value_float(x));
            break;
        }
        case 0x47: /* BINFLOAT */
        {
            if (remaining(d) < 8)
                return truncated(d);
            uint64_t bits = 0;
            for (int i = 0; i < 8; i++)
                bits = bits << 8 | d->p[i];
            d->p += 8;
            double x;
            memcpy(&x, &bits, sizeof x);
            rc = push_new(d, mpconn_value_float(x));
            break;
        }
        case 0x8c: /* SHORT_BINUNICODE */
            if (remaining(d) < 1)
                return truncated(d);
            n = *d->p++;
            rc = load_binstr(d, MPCONN_STR, n);
            break;
        case 0x58: /* BINUNICODE */
            if (remaining(d) < 4)
                return truncated(d);
            n = (size_t)le(d->p, 4);
            d->p += 4;
            rc = load_binstr(d, MPCONN_STR, n);
            break;
        case 0x8d: /* BINUNICODE8 */
        case 0x8e: /* BINBYTES8 */
        case 0x96: /* BYTEARRAY8 */
        {
            if (remaining(d) < 8)
                return truncated(d);
            uint64_t len = le(d->p, 8);
            d->p += 8;
            if (len > remaining(d))
                return fail(d, MPCONN_ERR_PICKLE, "length %llu exceeds the %zu bytes left",
                            (unsigned long long)len, remaining(d));
            rc = load_binstr(d,
                             d->op == 0x8d   ? MPCONN_STR
                             : d->op == 0x8e ? MPCONN_BYTES
                                             : MPCONN_BYTEARRAY,
                             (size_t)len);
            break;
        }
        case 0x43: /* SHORT_BINBYTES */
            if (remaining(d) < 1)
                return truncated(d);
            n = *d->p++;
            rc = load_binstr(d, MPCONN_BYTES, n);
            break;
        case 0x42: /* BINBYTES */
            if (remaining(d) < 4)
                return truncated(d);
            n = (size_t)le(d->p, 4);
            d->p += 4;
            rc = load_binstr(d, MPCONN_BYTES, n);
            break;
        case 0x56: /* UNICODE */
            if ((rc = read_line(d, &s, &n)) < 0)
                return rc;
            rc = raw_unicode_escape(d, s, n);
            break;
        case 0x53: rc = load_string(d); break;
        case 0x55: /* SHORT_BINSTRING */
        case 0x54: /* BINSTRING */
        {
            int w = d->op == 0x55 ? 1 : 4;
            if (remaining(d) < (size_t)w)
                return truncated(d);
            uint64_t len = le(d->p, w);
            if (w == 4 && (len & 0x80000000u))
                return fail(d, MPCONN_ERR_PICKLE, "negative BINSTRING length");
            d->p += w;
            if (len > remaining(d))
                return fail(d, MPCONN_ERR_PICKLE, "length %llu exceeds the %zu bytes left",
                            (unsigned long long)len, remaining(d));
            s = d->p;
            d->p += len;
            rc = push_py2_str(d, s, (size_t)len);
            break;
        }
        case 0x5d: rc = push_new(d, mpconn_value_list()); break;
        case 0x7d: rc = push_new(d, mpconn_value_dict()); break;
        case 0x8f: rc = push_new(d, mpconn_value_set()); break;
        case 0x29: rc = push_new(d, mpconn_value_tuple()); break;
        case 0x6c: /* LIST */
        {
            if ((rc = pop_mark(d, &at)) < 0)
                return rc;
            mpconn_value *l = mpconn_value_list();
            /* Slip the new list under its items, then APPENDS them. */
            if ((rc = push_new(d, l)) < 0)
                return rc;
            memmove(d->stack + at + 1, d->stack + at, (d->sp - 1 - at) * sizeof *d->stack);
            d->stack[at] = l;
            rc = do_appends(d, at + 1);
            break;
        }
        case 0x64: /* DICT */
        {
            if ((rc = pop_mark(d, &at)) < 0)
                return rc;
            mpconn_value *m = mpconn_value_dict();
            if ((rc = push_new(d, m)) < 0)
                return rc;
            memmove(d->stack + at + 1, d->stack + at, (d->sp - 1 - at) * sizeof *d->stack);
            d->stack[at] = m;
            rc = do_setitems(d, at + 1);
            break;
        }
        case 0x74: /* TUPLE */
            if ((rc = pop_mark(d, &at)) < 0)
                return rc;
            rc = make_tuple(d, at);
            break;
        case 0x85:
        case 0x86:
        case 0x87: /* TUPLE1..3 */
            n = (size_t)(d->op - 0x84);
            if ((rc = need_stack(d, n)) < 0)
                return rc;
            rc = make_tuple(d, d->sp - n);
            break;
        case 0x61: /* APPEND */
            if ((rc = need_stack(d, 2)) < 0)
                return rc;
            rc = do_appends(d, d->sp - 1);
            break;
        case 0x65: /* APPENDS */
            if ((rc = pop_mark(d, &at)) < 0)
                return rc;
            rc = do_appends(d, at);
            break;
        case 0x73: /* SETITEM */
            if ((rc = need_stack(d, 3)) < 0)
                return rc;
            rc = do_setitems(d, d->sp - 2);
            break;
        case 0x75: /* SETITEMS */
            if ((rc = pop_mark(d, &at)) < 0)
                return rc;
            rc = do_setitems(d, at);
            break;
        case 0x90: /* ADDITEMS */
            if ((rc = pop_mark(d, &at)) < 0)
                return rc;
            if (at == 0)
                return fail(d, MPCONN_ERR_PICKLE, "stack underflow");
            if (d->stack[at - 1]->type != MPCONN_SET)
                return fail(d, MPCONN_ERR_PICKLE, "ADDITEMS to a non-set");
            rc = do_additems(d, d->stack[at - 1], at);
            break;
        case 0x91: /* FROZENSET */
        {
            if ((rc = pop_mark(d, &at)) < 0)
                return rc;
            mpconn_value *f = mpconn_value_frozenset();
            if ((rc = push_new(d, f)) < 0)
                return rc;
            d->sp--; /* keep it off the stack while its items go in */
            rc = do_additems(d, f, at);
            if (rc < 0) {
                mpconn_value_unref(f);
                return rc;
            }
            d->stack[d->sp++] = f; /* room exists: the items were above */
            break;
        }
        case 0x70: /* PUT */
            if ((rc = parse_index(d, &n)) < 0)
                return rc;
            goto put;
        case 0x71: /* BINPUT */
            if (remaining(d) < 1)
                return truncated(d);
            n = *d->p++;
            goto put;
        case 0x72: /* LONG_BINPUT */
            if (remaining(d) < 4)
                return truncated(d);
            n = (size_t)le(d->p, 4);
            d->p += 4;
            goto put;
        case 0x94: /* MEMOIZE */
            n = d->memolen;
        put:
            if ((rc = need_stack(d, 1)) < 0)
                return rc;
            rc = memo_put(d, n, d->stack[d->sp - 1]);
            break;
        case 0x67: /* GET */
            if ((rc = parse_index(d, &n)) < 0)
                return rc;
            rc = memo_get(d, n);
            break;
        case 0x68: /* BINGET */
            if (remaining(d) < 1)
                return truncated(d);
            rc = memo_get(d, *d->p++);
            break;
        case 0x6a: /* LONG_BINGET */
            if (remaining(d) < 4)
                return truncated(d);
            n = (size_t)le(d->p, 4);
            d->p += 4;
            rc = memo_get(d, n);
            break;
        case 0x63: /* GLOBAL */
        {
            const uint8_t *mod = NULL, *name = NULL;
            size_t mlen = 0, nlen = 0;
            if ((rc = read_line(d, &mod, &mlen)) < 0 || (rc = read_line(d, &name, &nlen)) < 0)
                return rc;
            rc = lookup_global(d, (const char *)mod, mlen, (const char *)name, nlen);
            break;
        }
        case 0x93: /* STACK_GLOBAL */
        {
            if ((rc = need_stack(d, 2)) < 0)
                return rc;
            mpconn_value *mod = d->stack[d->sp - 2], *name = d->stack[d->sp - 1];
            if (mod->type != MPCONN_STR || name->type != MPCONN_STR)
                return fail(d, MPCONN_ERR_PICKLE, "STACK_GLOBAL needs two strings");
            rc = lookup_global(d, mod->u.s.p, mod->u.s.len, name->u.s.p, name->u.s.len);
            if (rc < 0)
                return rc;
            mpconn_value *g = d->stack[--d->sp];
            d->sp -= 2;
            mpconn_value_unref(mod);
            mpconn_value_unref(name);
            d->stack[d->sp++] = g;
            break;
        }
        case 0x52: /* REDUCE */
        {
            if ((rc = need_stack(d, 2)) < 0)
                return rc;
            mpconn_value *fn = d->stack[d->sp - 2], *args = d->stack[d->sp - 1];
            if (fn->type != MPCI_CALLABLE)
                return fail(d, MPCONN_ERR_REFUSED, "refused REDUCE of a %s",
                            mpconn_type_name(fn->type));
            if (args->type != MPCONN_TUPLE)
                return fail(d, MPCONN_ERR_PICKLE, "REDUCE arguments are not a tuple");
            if ((rc = apply(d, fn, args)) < 0)
                return rc;
            mpconn_value *r = d->stack[--d->sp];
            d->sp -= 2;
            mpconn_value_unref(fn);
            mpconn_value_unref(args);
            d->stack[d->sp++] = r;
            break;
        }
        case 0x62: /* BUILD */
        case 0x69: /* INST */
        case 0x6f: /* OBJ */
        case 0x81: /* NEWOBJ */
        case 0x92: /* NEWOBJ_EX */
        case 0x50: /* PERSID */
        case 0x51: /* BINPERSID */
        case 0x82: /* EXT1 */
        case 0x83: /* EXT2 */
        case 0x84: /* EXT4 */
        case 0x97: /* NEXT_BUFFER */
        case 0x98: /* READONLY_BUFFER */
            if (d->op == 0x69 && read_line(d, &s, &n) == 0) {
                const uint8_t *name = NULL;
                size_t nlen = 0;
                if (read_line(d, &name, &nlen) == 0)
                    return fail(d, MPCONN_ERR_REFUSED, "refused INST %.*s.%.*s",
                                (int)(n < 60 ? n : 60), (const char *)s,
                                (int)(nlen < 60 ? nlen : 60), (const char *)name);
            }
            return fail(d, MPCONN_ERR_REFUSED, "refused %s", op_name(d->op));
        default: return fail(d, MPCONN_ERR_PICKLE, "bad opcode 0x%02x", d->op);
        }
        if (rc < 0)
            return rc;
    }
}

static void dec_release(dec *d, int cyclic)
{
    if (cyclic)
        mpci_value_break_cycles(d->all, d->nall);
    for (size_t i = 0; i < d->sp; i++)
        mpconn_value_unref(d->stack[i]);
    for (size_t i = 0; i < d->memo_hi; i++)
        mpconn_value_unref(d->memo[i]);
    for (size_t i = 0; i < d->nall; i++)
        mpconn_value_unref(d->all[i]);
    if (d->stack != d->stack0)
        free(d->stack);
    if (d->marks != d->marks0)
        free(d->marks);
    if (d->memo != d->memo0)
        free(d->memo);
    if (d->all != d->all0)
        free(d->all);
}

int mpci_pickle_decode_metered(const uint8_t *buf, size_t len, const mpci_pickle_limits *limits,
                               mpconn_value **out, char *errmsg, size_t errlen, mpci_meter *m)
{
    const mpci_pickle_limits def = MPCI_PICKLE_LIMITS_DEFAULT;
    if (!limits)
        limits = &def;
    dec d;
    memset(&d, 0, offsetof(dec, stack0));
    d.stack = d.stack0;
    d.scap = sizeof d.stack0 / sizeof *d.stack0;
    d.memo = d.memo0;
    d.memocap = sizeof d.memo0 / sizeof *d.memo0;
    d.all = d.all0;
    d.allcap = sizeof d.all0 / sizeof *d.all0;
    d.marks = d.marks0;
    d.mcap = sizeof d.marks0 / sizeof *d.marks0;
    d.start = d.p = d.op_at = buf;
    d.end = buf + len;
    d.max_depth = limits->max_depth ? limits->max_depth : def.max_depth;
    d.max_items = limits->max_items ? limits->max_items : def.max_items;
    d.max_memo = limits->max_memo ? limits->max_memo : def.max_memo;
    d.max_alloc = limits->max_alloc ? limits->max_alloc : def.max_alloc;
    d.py2_str = limits->py2_str;
    d.err = errmsg;
    d.errlen = errlen;
    d.op = -1;
    mpci_eqctx_init(&d.cx, 1);
    if (m)
        m->steps = m->bytes = 0;
    *out = NULL;
    if (!buf && len)
        return mpci_err(errmsg, errlen, -EINVAL, "no buffer");
    if (len == 0)
        return mpci_err(errmsg, errlen, MPCONN_ERR_PICKLE, "empty pickle");
    mpconn_value *v = NULL;
    int rc = run(&d, &v);
    if (m) {
        m->steps = d.steps + d.cx.steps;
        m->bytes = d.alloc;
    }
    mpci_eqctx_free(&d.cx);
    if (rc == 0 && d.maybe_cyclic) {
        /* Any cycle anywhere (even among discarded values) is refused; the
         * walk covers every container the pickle made. */
        rc = mpci_value_check_acyclic(d.all, d.nall);
        if (rc == MPCONN_ERR_RECURSIVE)
            mpci_err(errmsg, errlen, rc, "recursive structure: a container contains itself");
        else if (rc < 0)
            mpci_err(errmsg, errlen, rc, "out of memory");
    }
    if (rc < 0 && v) {
        d.stack[d.sp++] = v; /* there is room: it came off the stack */
        v = NULL;
    }
    dec_release(&d, rc < 0 && d.maybe_cyclic);
    if (rc < 0)
        return rc;
    *out = v;
    return 0;
}

int mpci_pickle_decode(const uint8_t *buf, size_t len, const mpci_pickle_limits *limits,
                       mpconn_value **out, char *errmsg, size_t errlen)
{
    return mpci_pickle_decode_metered(buf, len, limits, out, errmsg, errlen, NULL);
}
