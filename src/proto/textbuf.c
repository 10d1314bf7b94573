/* Shared machinery of the text forms (repr, JSON, literals): output buffer,
 * pointer set, float repr, big-integer decimal conversion.
 * See text_internal.h for the contracts. */
#include "proto/text_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ sbuf */

static int sbuf_reserve(mpci_sbuf *b, size_t extra)
{
    if (b->err)
        return b->err;
    if (extra < b->cap - b->len)
        return 0;
    /* Room for extra bytes and the NUL that finish() adds. */
    char *p =
        extra < SIZE_MAX - b->len ? mpci_grow(b->p, &b->cap, b->len + extra + 1, 1, 64) : NULL;
    if (!p)
        return b->err = -ENOMEM;
    b->p = p;
    return 0;
}

/* Keeps the part of s that fits under the limit, less a character the cut
 * would split. */
static void put_cut(mpci_sbuf *b, const char *s, size_t n)
{
    size_t room = b->limit - b->len;
    if (room < n) {
        size_t k = room;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
            k--; /* s[k] starts the character the cut goes through */
        if (sbuf_reserve(b, k) == 0) {
            memcpy(b->p + b->len, s, k);
            b->len += k;
        }
        b->err = MPCONN_ERR_LIMIT;
    }
}

void mpci_sbuf_put(mpci_sbuf *b, const char *s, size_t n)
{
    if (b->limit && !b->err && n > b->limit - b->len) {
        put_cut(b, s, n);
        return;
    }
    if (sbuf_reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void mpci_sbuf_puts(mpci_sbuf *b, const char *s)
{
    mpci_sbuf_put(b, s, strlen(s));
}

void mpci_sbuf_putc(mpci_sbuf *b, char c)
{
    if (b->limit && !b->err && b->len >= b->limit) {
        b->err = MPCONN_ERR_LIMIT;
        return;
    }
    if (sbuf_reserve(b, 1) != 0)
        return;
    b->p[b->len++] = c;
}

int mpci_sbuf_finish(mpci_sbuf *b, char **out, size_t *len)
{
    sbuf_reserve(b, 1);
    if (b->err) {
        int err = b->err;
        free(b->p);
        b->p = NULL;
        b->len = b->cap = 0;
        return err;
    }
    b->p[b->len] = '\0';
    *out = b->p;
    if (len)
        *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return 0;
}

/* ---------------------------------------------------------- ptrset */

int mpci_ptrset_has(const mpci_ptrset *s, const void *p)
{
    if (!s->cap)
        return 0;
    size_t mask = s->cap - 1;
    for (size_t i = mpci_ptr_hash(p) & mask; s->slots[i]; i = (i + 1) & mask)
        if (s->slots[i] == p)
            return 1;
    return 0;
}

static void ptrset_insert(const void **slots, size_t cap, const void *p)
{
    size_t mask = cap - 1, i = mpci_ptr_hash(p) & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = p;
}

int mpci_ptrset_add(mpci_ptrset *s, const void *p)
{
    /* Keep the load under one half so probes stay short. */
    if ((s->count + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        const void **slots = calloc(cap, sizeof *slots);
        if (!slots)
            return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i])
                ptrset_insert(slots, cap, s->slots[i]);
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    ptrset_insert(s->slots, s->cap, p);
    s->count++;
    return 0;
}

void mpci_ptrset_del(mpci_ptrset *s, const void *p)
{
    if (!s->cap)
        return;
    size_t mask = s->cap - 1, i = mpci_ptr_hash(p) & mask;
    while (s->slots[i] && s->slots[i] != p)
        i = (i + 1) & mask;
    if (!s->slots[i])
        return;
    /* Backward-shift deletion: later entries of the probe run move up so
     * lookups never stop early at the hole. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!s->slots[j])
            break;
        size_t home = mpci_ptr_hash(s->slots[j]) & mask;
        /* Move slots[j] into the hole unless its home lies in (i, j]. */
        int between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i] = NULL;
    s->count--;
}

void mpci_ptrset_free(mpci_ptrset *s)
{
    free(s->slots);
    s->slots = NULL;
    s->count = s->cap = 0;
}

/* ------------------------------------------------------- float repr */

/* 1 when the n digits times 10^(e-n+1) read back as x. The text has no
 * decimal point, so strtod's locale does not matter. */
static int reads_back(const char *digits, int n, int e, double x)
{
    char buf[48];
    snprintf(buf, sizeof buf, "%.*se%d", n, digits, e - (n - 1));
    return strtod(buf, NULL) == x;
}

/* The digits one unit in the last place away (dir +1 or -1); returns the new
 * count and adjusts *e when the length changes (999 + 1, 100 - 1). */
static int step_digits(char *d, int n, int *e, int dir)
{
    int k = n - 1;
    if (dir > 0) {
        while (k >= 0 && d[k] == '9')
            d[k--] = '0';
        if (k < 0) {
            d[0] = '1'; /* 99..9 + 1 = 10..0: one more power of ten */
            (*e)++;
            return n;
        }
        d[k]++;
        return n;
    }
    while (k >= 0 && d[k] == '0')
        d[k--] = '9';
    d[k]--;
    if (d[0] == '0') { /* 10..0 - 1 = 9..9, one digit shorter */
        memmove(d, d + 1, (size_t)n - 1);
        (*e)--;
        return n - 1;
    }
    return n;
}

/* Shortest significant digits of x > 0 that strtod reads back as x, and the
 * decimal exponent of the first digit. For each length, snprintf's %e gives
 * the correctly rounded digits; when x is a power of two its rounding
 * interval is lopsided, so a neighbour of those digits may read back when
 * they do not, and Python's repr would use it. */
static int shortest_digits(double x, char *digits, int *exp10)
{
    char buf[48], cand[2][24];
    int n = 0, e = 0;
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
        const char *p = buf;
        n = 0;
        for (; *p && *p != 'e'; p++)
            if (*p >= '0' && *p <= '9')
                digits[n++] = *p;
        e = *p == 'e' ? atoi(p + 1) : 0;
        if (prec == 17 || reads_back(digits, n, e, x))
            break;
        int cn[2], ce[2] = {e, e}, ok[2];
        for (int s = 0; s < 2; s++) {
            memcpy(cand[s], digits, (size_t)n);
            cn[s] = step_digits(cand[s], n, &ce[s], s ? -1 : 1);
            ok[s] = reads_back(cand[s], cn[s], ce[s], x);
        }
        if (ok[0] || ok[1]) {
            int s = ok[0] ? 0 : 1;
            if (ok[0] && ok[1]) { /* both: the nearer, as Python picks */
                char b0[48], b1[48];
                snprintf(b0, sizeof b0, "%.*se%d", cn[0], cand[0], ce[0] - (cn[0] - 1));
                snprintf(b1, sizeof b1, "%.*se%d", cn[1], cand[1], ce[1] - (cn[1] - 1));
                long double d0 = strtold(b0, NULL) - x, d1 = x - strtold(b1, NULL);
                s = d0 <= d1 ? 0 : 1;
            }
            memcpy(digits, cand[s], (size_t)cn[s]);
            n = cn[s];
            e = ce[s];
            break;
        }
    }
    while (n > 1 && digits[n - 1] == '0')
        n--;
    digits[n] = '\0';
    *exp10 = e;
    return n;
}

size_t mpci_float_repr(double d, char *out)
{
    if (isnan(d))
        return (size_t)snprintf(out, MPCI_FLOAT_REPR_MAX, "nan");
    if (isinf(d))
        return (size_t)snprintf(out, MPCI_FLOAT_REPR_MAX, "%s", d < 0 ? "-inf" : "inf");
    char digits[24];
    int e = 0, nd;
    if (d == 0) {
        digits[0] = '0';
        digits[1] = '\0';
        nd = 1;
    } else {
        nd = shortest_digits(fabs(d), digits, &e);
    }
    size_t n = 0;
    if (signbit(d))
        out[n++] = '-';
    if (e < -4 || e >= 16) {
        out[n++] = digits[0];
        if (nd > 1) {
            out[n++] = '.';
            memcpy(out + n, digits + 1, (size_t)nd - 1);
            n += (size_t)nd - 1;
        }
        n += (size_t)snprintf(out + n, MPCI_FLOAT_REPR_MAX - n, "e%c%02d", e < 0 ? '-' : '+',
                              e < 0 ? -e : e);
        return n;
    }
    int point = e + 1; /* digits before the decimal point */
    if (point <= 0) {
        out[n++] = '0';
        out[n++] = '.';
        for (int k = 0; k < -point; k++)
            out[n++] = '0';
        memcpy(out + n, digits, (size_t)nd);
        n += (size_t)nd;
    } else if (point < nd) {
        memcpy(out + n, digits, (size_t)point);
        n += (size_t)point;
        out[n++] = '.';
        memcpy(out + n, digits + point, (size_t)(nd - point));
        n += (size_t)(nd - point);
    } else {
        memcpy(out + n, digits, (size_t)nd);
        n += (size_t)nd;
        for (int k = nd; k < point; k++)
            out[n++] = '0';
        out[n++] = '.';
        out[n++] = '0';
    }
    out[n] = '\0';
    return n;
}

/* --------------------------------------------------- int to decimal */

int mpci_int_decimal(const mpconn_value *v, mpci_sbuf *b, mpci_print *pr)
{
    int64_t small;
    int rc = mpconn_value_get_int(v, &small);
    if (rc == 0) {
        char tmp[24];
        int n = snprintf(tmp, sizeof tmp, "%" PRId64, small);
        mpci_sbuf_put(b, tmp, (size_t)n);
        return 0;
    }
    if (rc != MPCONN_ERR_RANGE)
        return rc;
    int neg;
    const uint8_t *mag;
    size_t len;
    rc = mpconn_value_get_bigint(v, &neg, &mag, &len);
    if (rc != 0)
        return rc;
    return mpci_bigint_decimal(&pr->pow, neg, mag, len, pr->max_digits, b, pr->errmsg, pr->errlen);
}

/* ------------------------------------------------------ print limits */

void mpci_print_init(mpci_print *pr, const mpci_print_limits *lim, char *errmsg, size_t errlen)
{
    const mpci_print_limits def = MPCI_PRINT_LIMITS_DEFAULT;
    if (!lim)
        lim = &def;
    memset(pr, 0, sizeof *pr);
    pr->max_bytes = lim->max_bytes ? lim->max_bytes : def.max_bytes;
    pr->max_digits = lim->max_digits ? lim->max_digits : def.max_digits;
    pr->truncate = lim->truncate;
    pr->errmsg = errmsg;
    pr->errlen = errlen;
}

int mpci_print_finish(mpci_print *pr, mpci_sbuf *b, int rc, const char *what, char **out,
                      size_t *len)
{
    mpci_powers_free(pr->pow);
    pr->pow = NULL;
    int cut = rc == 0 && b->err == MPCONN_ERR_LIMIT;
    if (cut && !pr->truncate)
        rc = mpci_err(pr->errmsg, pr->errlen, MPCONN_ERR_LIMIT,
                      "%s longer than %zu bytes (the print limit; "
                      "mpconn_opts_set_print_limits raises it)",
                      what, pr->max_bytes);
    if (cut) {
        b->err = 0; /* the text so far is whole up to the cut */
        b->limit = 0;
    }
    if (rc == 0)
        rc = mpci_sbuf_finish(b, out, len);
    else
        free(b->p);
    if (rc == -ENOMEM)
        mpci_err(pr->errmsg, pr->errlen, rc, "out of memory for the %s", what);
    return rc == 0 && cut ? 1 : rc;
}

typedef int (*writer)(const mpconn_value *v, mpci_print *pr, char **out, size_t *len);

static int print_with(writer write, const mpconn_value *v, const mpci_print_limits *lim, char **out,
                      size_t *len, char *errmsg, size_t errlen)
{
    if (!v || !out)
        return mpci_err(errmsg, errlen, -EINVAL, "no value or no output pointer");
    mpci_print pr;
    mpci_print_init(&pr, lim, errmsg, errlen);
    return write(v, &pr, out, len);
}

int mpci_value_repr_limited(const mpconn_value *v, const mpci_print_limits *lim, char **out,
                            size_t *len, char *errmsg, size_t errlen)
{
    return print_with(mpci_value_repr, v, lim, out, len, errmsg, errlen);
}

int mpci_value_json_limited(const mpconn_value *v, const mpci_print_limits *lim, char **out,
                            size_t *len, char *errmsg, size_t errlen)
{
    return print_with(mpci_value_json, v, lim, out, len, errmsg, errlen);
}

int mpconn_value_repr(const mpconn_value *v, char **out, size_t *len)
{
    return print_with(mpci_value_repr, v, NULL, out, len, NULL, 0);
}

int mpconn_value_json(const mpconn_value *v, char **out, size_t *len)
{
    return print_with(mpci_value_json, v, NULL, out, len, NULL, 0);
}

int mpci_walk_push(mpci_walk *w, const mpconn_value *v, int mode)
{
    mpci_wframe *st = mpci_grow(w->st, &w->cap, w->n + 1, sizeof *st, 32);
    if (!st)
        return -ENOMEM;
    w->st = st;
    if (mpci_ptrset_add(&w->open, v) != 0)
        return -ENOMEM;
    w->st[w->n++] = (mpci_wframe){.v = v, .i = 0, .phase = 0, .mode = mode};
    return 0;
}

void mpci_walk_clear(mpci_walk *w)
{
    free(w->st);
    w->st = NULL;
    w->n = w->cap = 0;
    mpci_ptrset_free(&w->open);
}
