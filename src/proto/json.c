/* mpconn_value_json: a value as JSON text, written the way Python's
 * json.dumps(v) writes it (", " and ": " separators, ensure_ascii escapes),
 * with tagged objects for what JSON cannot hold.
 *
 * Mapping (also in docs/json.md):
 *   None, True, False     null, true, false
 *   int (any size)        a JSON integer with every digit
 *   float                 Python's repr ("0.1", "1e+16", "-0.0");
 *                         nan, inf, -inf -> {"$float": "nan" | "inf" | "-inf"}
 *   str                   a JSON string; non-ASCII as \uXXXX (surrogate pairs
 *                         beyond the BMP), control characters as \n, \u0000...,
 *                         exactly as json.dumps (ensure_ascii=True) does
 *   bytes, bytearray      {"$bytes": "<standard base64 with padding>"}
 *   list, tuple           array
 *   set, frozenset        array, in the set's iteration order
 *   dict                  an object when every key is a str, int, float, bool or
 *                         None: non-str keys become strings as json.dumps makes
 *                         them (1 -> "1", 1.5 -> "1.5", True -> "true", None ->
 *                         "null", nan -> "NaN", inf -> "Infinity"). Otherwise,
 *                         or when two keys would become the same string, or when
 *                         the only key is "$bytes", "$dict" or "$float" (so a
 *                         tag is never forged): {"$dict": [[key, value], ...]}
 *   a value that contains itself: MPCONN_ERR_RECURSIVE (json.dumps: "Circular
 *   reference detected").
 *   a lone surrogate in a str  \udXXX, as json.dumps writes it.
 * Print limits as for repr (text length, int digits).
 * The test vectors (tests/data/pickle.jsonl, field "json") are json.dumps
 * output and are matched exactly. */
#include "proto/text_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MODE_ARRAY, MODE_OBJECT, MODE_PAIRS };

static void put_u16(mpci_sbuf *b, uint32_t x)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[6] = {'\\',       'u', hex[(x >> 12) & 15], hex[(x >> 8) & 15], hex[(x >> 4) & 15],
                   hex[x & 15]};
    mpci_sbuf_put(b, tmp, 6);
}

static void json_str(mpci_sbuf *b, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    mpci_sbuf_putc(b, '"');
    size_t i = 0;
    while (i < len && !b->err) {
        /* A lone surrogate decodes to its code point, below 0x10000. */
        uint32_t cp = mpci_utf8_next(u, len, &i);
        switch (cp) {
        case '"': mpci_sbuf_put(b, "\\\"", 2); break;
        case '\\': mpci_sbuf_put(b, "\\\\", 2); break;
        case '\n': mpci_sbuf_put(b, "\\n", 2); break;
        case '\r': mpci_sbuf_put(b, "\\r", 2); break;
        case '\t': mpci_sbuf_put(b, "\\t", 2); break;
        case '\b': mpci_sbuf_put(b, "\\b", 2); break;
        case '\f': mpci_sbuf_put(b, "\\f", 2); break;
        default:
            if (cp >= 0x20 && cp < 0x7F) {
                mpci_sbuf_putc(b, (char)cp);
            } else if (cp < 0x10000) {
                put_u16(b, cp);
            } else {
                put_u16(b, 0xD800 + ((cp - 0x10000) >> 10));
                put_u16(b, 0xDC00 + ((cp - 0x10000) & 0x3FF));
            }
        }
    }
    mpci_sbuf_putc(b, '"');
}

static void json_base64(mpci_sbuf *b, const unsigned char *p, size_t len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    for (size_t i = 0; i < len && !b->err; i += 3) {
        uint32_t x = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            x |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            x |= p[i + 2];
        q[0] = tbl[(x >> 18) & 63];
        q[1] = tbl[(x >> 12) & 63];
        q[2] = i + 1 < len ? tbl[(x >> 6) & 63] : '=';
        q[3] = i + 2 < len ? tbl[x & 63] : '=';
        mpci_sbuf_put(b, q, 4);
    }
}

/* The float's text as a JSON number, or the tag for what JSON lacks. */
static void json_float(mpci_sbuf *b, double d)
{
    char tmp[MPCI_FLOAT_REPR_MAX];
    size_t n = mpci_float_repr(d, tmp);
    if (isnan(d) || isinf(d)) {
        mpci_sbuf_puts(b, "{\"$float\": \"");
        mpci_sbuf_put(b, tmp, n);
        mpci_sbuf_puts(b, "\"}");
    } else {
        mpci_sbuf_put(b, tmp, n);
    }
}

static int json_scalar(mpci_sbuf *b, const mpconn_value *v, mpconn_type t, mpci_print *pr)
{
    int rc = 0;
    switch (t) {
    case MPCONN_NONE: mpci_sbuf_puts(b, "null"); break;
    case MPCONN_BOOL: {
        int x = 0;
        if ((rc = mpconn_value_get_bool(v, &x)) == 0)
            mpci_sbuf_puts(b, x ? "true" : "false");
        break;
    }
    case MPCONN_INT: rc = mpci_int_decimal(v, b, pr); break;
    case MPCONN_FLOAT: {
        double d = 0;
        if ((rc = mpconn_value_get_float(v, &d)) == 0)
            json_float(b, d);
        break;
    }
    case MPCONN_STR: {
        const char *s;
        size_t n;
        if ((rc = mpconn_value_get_str(v, &s, &n)) == 0)
            json_str(b, s, n);
        break;
    }
    case MPCONN_BYTES:
    case MPCONN_BYTEARRAY: {
        const void *p;
        size_t n;
        if ((rc = mpconn_value_get_bytes(v, &p, &n)) == 0) {
            mpci_sbuf_puts(b, "{\"$bytes\": \"");
            json_base64(b, p, n);
            mpci_sbuf_puts(b, "\"}");
        }
        break;
    }
    default: rc = MPCONN_ERR_TYPE;
    }
    return rc;
}

/* A dict key as the object key json.dumps would write (without quotes):
 * 0, -1 when the key has no such form, or an int's error. */
static int key_text(const mpconn_value *k, mpci_sbuf *b, mpci_print *pr)
{
    switch (mpconn_value_type(k)) {
    case MPCONN_STR: {
        const char *s;
        size_t n;
        if (mpconn_value_get_str(k, &s, &n) != 0)
            return -1;
        mpci_sbuf_put(b, s, n);
        return 0;
    }
    case MPCONN_INT: return mpci_int_decimal(k, b, pr);
    case MPCONN_BOOL: {
        int x = 0;
        mpconn_value_get_bool(k, &x);
        mpci_sbuf_puts(b, x ? "true" : "false");
        return 0;
    }
    case MPCONN_NONE: mpci_sbuf_puts(b, "null"); return 0;
    case MPCONN_FLOAT: {
        double d = 0;
        char tmp[MPCI_FLOAT_REPR_MAX];
        mpconn_value_get_float(k, &d);
        if (isnan(d))
            mpci_sbuf_puts(b, "NaN");
        else if (isinf(d))
            mpci_sbuf_puts(b, d > 0 ? "Infinity" : "-Infinity");
        else
            mpci_sbuf_put(b, tmp, mpci_float_repr(d, tmp));
        return 0;
    }
    default: return -1;
    }
}

typedef struct keytext {
    char *p;
    size_t len;
} keytext;

static int keytext_cmp(const void *a, const void *b)
{
    const keytext *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* MODE_OBJECT when the dict can be written as a JSON object, else
 * MODE_PAIRS; or a negative code. Looks at every key: this is work beyond
 * the text, but once per dict written, whose keys then print. */
static int dict_mode(const mpconn_value *d, mpci_print *pr)
{
    size_t n = mpconn_value_len(d), nonstr = 0;
    pr->work += n;
    for (size_t i = 0; i < n; i++) {
        mpconn_type t = mpconn_value_type(mpconn_value_item(d, i));
        if (t != MPCONN_STR && t != MPCONN_INT && t != MPCONN_FLOAT && t != MPCONN_BOOL &&
            t != MPCONN_NONE)
            return MODE_PAIRS;
        nonstr += t != MPCONN_STR;
    }
    if (n == 1 && nonstr == 0) {
        const char *s;
        size_t len;
        mpconn_value_get_str(mpconn_value_item(d, 0), &s, &len);
        if (!strcmp(s, "$bytes") || !strcmp(s, "$dict") || !strcmp(s, "$float"))
            return MODE_PAIRS;
    }
    if (nonstr == 0)
        return MODE_OBJECT; /* distinct str keys stay distinct */
    /* 1 and "1" would collide once converted: sort the texts and look. */
    keytext *kt = calloc(n, sizeof *kt);
    if (!kt)
        return -ENOMEM;
    int mode = MODE_OBJECT;
    size_t made = 0;
    for (; made < n; made++) {
        mpci_sbuf b = {0};
        int rc = key_text(mpconn_value_item(d, made), &b, pr);
        if (rc == 0)
            rc = mpci_sbuf_finish(&b, &kt[made].p, &kt[made].len);
        else
            free(b.p);
        if (rc != 0) {
            mode = rc;
            break;
        }
    }
    if (mode == MODE_OBJECT) {
        qsort(kt, n, sizeof *kt, keytext_cmp);
        for (size_t i = 1; i < n; i++)
            if (keytext_cmp(&kt[i - 1], &kt[i]) == 0)
                mode = MODE_PAIRS;
    }
    for (size_t i = 0; i < made; i++)
        free(kt[i].p);
    free(kt);
    return mode;
}

typedef mpci_walk walk;

static int begin_value(walk *w, const mpconn_value *v)
{
    if (!v)
        return -EINVAL;
    mpconn_type t = mpconn_value_type(v);
    int mode = MODE_ARRAY;
    w->pr->work++;
    if (t == MPCONN_DICT) {
        mode = dict_mode(v, w->pr);
        if (mode < 0)
            return mode;
    } else if (t != MPCONN_LIST && t != MPCONN_TUPLE && t != MPCONN_SET && t != MPCONN_FROZENSET) {
        return json_scalar(&w->out, v, t, w->pr);
    }
    if (mpci_ptrset_has(&w->open, v))
        return mpci_err(w->pr->errmsg, w->pr->errlen, MPCONN_ERR_RECURSIVE,
                        "circular reference: a container contains itself");
    if (mpci_walk_push(w, v, mode) != 0)
        return -ENOMEM;
    mpci_sbuf_puts(&w->out, mode == MODE_ARRAY ? "[" : mode == MODE_OBJECT ? "{" : "{\"$dict\": [");
    return 0;
}

/* Emits the next piece of the top frame; returns the child to write next, or
 * NULL when the frame produced text only (or closed). */
static const mpconn_value *step(walk *w, mpci_wframe *f)
{
    size_t len = mpconn_value_len(f->v);
    mpci_sbuf *b = &w->out;
    if (f->mode == MODE_PAIRS) {
        if (f->phase == 1) {
            f->phase = 2;
            mpci_sbuf_put(b, ", ", 2);
            return mpconn_value_dict_value(f->v, f->i);
        }
        if (f->phase == 2) {
            mpci_sbuf_putc(b, ']');
            f->phase = 0;
            f->i++;
            return NULL;
        }
    }
    if (f->i >= len) {
        mpci_sbuf_puts(b, f->mode == MODE_PAIRS ? "]}" : f->mode == MODE_OBJECT ? "}" : "]");
        mpci_ptrset_del(&w->open, f->v);
        w->n--;
        return NULL;
    }
    if (f->i > 0)
        mpci_sbuf_put(b, ", ", 2);
    const mpconn_value *item = mpconn_value_item(f->v, f->i);
    if (f->mode == MODE_ARRAY) {
        f->i++;
        return item;
    }
    if (f->mode == MODE_PAIRS) {
        mpci_sbuf_putc(b, '[');
        f->phase = 1;
        return item;
    }
    /* Object: the key is text, so only the value is a child. Its int form
     * was already made once, in dict_mode. */
    if (mpconn_value_type(item) == MPCONN_STR) {
        json_scalar(b, item, MPCONN_STR, w->pr);
    } else {
        mpci_sbuf_putc(b, '"');
        key_text(item, b, w->pr); /* digits, true, NaN...: nothing to escape */
        mpci_sbuf_putc(b, '"');
    }
    mpci_sbuf_put(b, ": ", 2);
    return mpconn_value_dict_value(f->v, f->i++);
}

int mpci_value_json(const mpconn_value *v, mpci_print *pr, char **out, size_t *len)
{
    walk w = {.out = {.limit = pr->max_bytes}, .pr = pr};
    int rc = begin_value(&w, v);
    while (rc == 0 && w.n > 0 && !w.out.err) {
        w.pr->work++;
        const mpconn_value *child = step(&w, &w.st[w.n - 1]);
        if (child)
            rc = begin_value(&w, child);
    }
    mpci_walk_clear(&w);
    return mpci_print_finish(pr, &w.out, rc, "JSON", out, len);
}
