/* mpconn_value_repr: the text CPython's repr() gives for a plain value.
 * Containers are walked with an explicit stack, so depth costs heap, not C
 * stack; a container met again inside itself prints as Python's "[...]".
 * Every step writes text, and the walk stops at the print limit, so a value
 * sharing its containers costs what is printed, not what it expands to. */
#include "proto/text_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char hexdig[] = "0123456789abcdef";

/* Python picks ' unless the text has ' and no ". */
static char pick_quote(const void *p, size_t len)
{
    int single = memchr(p, '\'', len) != NULL;
    int dbl = memchr(p, '"', len) != NULL;
    return single && !dbl ? '"' : '\'';
}

static void put_hex(mpci_sbuf *b, char kind, uint32_t x, int ndig)
{
    char tmp[12];
    int n = 0;
    tmp[n++] = '\\';
    tmp[n++] = kind;
    for (int k = ndig - 1; k >= 0; k--)
        tmp[n++] = hexdig[(x >> (4 * k)) & 0xF];
    mpci_sbuf_put(b, tmp, (size_t)n);
}

static void repr_str(mpci_sbuf *b, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    char q = pick_quote(s, len);
    mpci_sbuf_putc(b, q);
    size_t i = 0;
    while (i < len && !b->err) {
        size_t start = i;
        int lone = mpci_utf8_is_surrogate(u, len, i);
        uint32_t cp = mpci_utf8_next(u, len, &i);
        if (lone) {
            put_hex(b, 'u', cp, 4); /* as CPython: '\ud800' */
        } else if (cp == (uint32_t)q || cp == '\\') {
            mpci_sbuf_putc(b, '\\');
            mpci_sbuf_putc(b, (char)cp);
        } else if (cp == '\t') {
            mpci_sbuf_put(b, "\\t", 2);
        } else if (cp == '\n') {
            mpci_sbuf_put(b, "\\n", 2);
        } else if (cp == '\r') {
            mpci_sbuf_put(b, "\\r", 2);
        } else if (cp >= 0x20 && cp < 0x7F) {
            mpci_sbuf_putc(b, (char)cp);
        } else if (cp >= 0x80 && mpci_unicode_printable(cp) && i - start > 1) {
            mpci_sbuf_put(b, s + start, i - start); /* printable: kept as UTF-8 */
        } else if (cp < 0x100) {
            put_hex(b, 'x', cp, 2);
        } else if (cp < 0x10000) {
            put_hex(b, 'u', cp, 4);
        } else {
            put_hex(b, 'U', cp, 8);
        }
    }
    mpci_sbuf_putc(b, q);
}

/* CPython's bytearray repr (3.11) escapes a single quote even inside
 * double quotes; bytes does not. */
static void repr_bytes(mpci_sbuf *b, const unsigned char *p, size_t len, int is_bytearray)
{
    char q = pick_quote(p, len);
    mpci_sbuf_putc(b, 'b');
    mpci_sbuf_putc(b, q);
    for (size_t i = 0; i < len && !b->err; i++) {
        unsigned c = p[i];
        if (c == (unsigned)q || c == '\\' || (is_bytearray && c == '\'')) {
            mpci_sbuf_putc(b, '\\');
            mpci_sbuf_putc(b, (char)c);
        } else if (c == '\t') {
            mpci_sbuf_put(b, "\\t", 2);
        } else if (c == '\n') {
            mpci_sbuf_put(b, "\\n", 2);
        } else if (c == '\r') {
            mpci_sbuf_put(b, "\\r", 2);
        } else if (c >= 0x20 && c < 0x7F) {
            mpci_sbuf_putc(b, (char)c);
        } else {
            put_hex(b, 'x', c, 2);
        }
    }
    mpci_sbuf_putc(b, q);
}

static int repr_scalar(mpci_sbuf *b, const mpconn_value *v, mpconn_type t, mpci_print *pr)
{
    switch (t) {
    case MPCONN_NONE: mpci_sbuf_put(b, "None", 4); return 0;
    case MPCONN_BOOL: {
        int x = 0;
        int rc = mpconn_value_get_bool(v, &x);
        if (rc)
            return rc;
        mpci_sbuf_puts(b, x ? "True" : "False");
        return 0;
    }
    case MPCONN_INT: return mpci_int_decimal(v, b, pr);
    case MPCONN_FLOAT: {
        double d = 0;
        char tmp[MPCI_FLOAT_REPR_MAX];
        int rc = mpconn_value_get_float(v, &d);
        if (rc)
            return rc;
        mpci_sbuf_put(b, tmp, mpci_float_repr(d, tmp));
        return 0;
    }
    case MPCONN_STR: {
        const char *s;
        size_t n;
        int rc = mpconn_value_get_str(v, &s, &n);
        if (rc)
            return rc;
        repr_str(b, s, n);
        return 0;
    }
    case MPCONN_BYTES:
    case MPCONN_BYTEARRAY: {
        const void *p;
        size_t n;
        int rc = mpconn_value_get_bytes(v, &p, &n);
        if (rc)
            return rc;
        if (t == MPCONN_BYTEARRAY)
            mpci_sbuf_put(b, "bytearray(", 10);
        repr_bytes(b, p, n, t == MPCONN_BYTEARRAY);
        if (t == MPCONN_BYTEARRAY)
            mpci_sbuf_putc(b, ')');
        return 0;
    }
    default: return MPCONN_ERR_TYPE;
    }
}

static int is_container(mpconn_type t)
{
    return t == MPCONN_LIST || t == MPCONN_TUPLE || t == MPCONN_DICT || t == MPCONN_SET ||
           t == MPCONN_FROZENSET;
}

typedef mpci_walk walk;

static void put_close(walk *w, const mpconn_value *v)
{
    switch (mpconn_value_type(v)) {
    case MPCONN_LIST: mpci_sbuf_putc(&w->out, ']'); break;
    case MPCONN_TUPLE: mpci_sbuf_puts(&w->out, mpconn_value_len(v) == 1 ? ",)" : ")"); break;
    case MPCONN_FROZENSET: mpci_sbuf_puts(&w->out, "})"); break;
    default: mpci_sbuf_putc(&w->out, '}'); break;
    }
}

/* Writes v whole if it is a scalar, empty, or already open (recursive);
 * otherwise writes its opening and pushes a frame. */
static int begin_value(walk *w, const mpconn_value *v)
{
    if (!v)
        return -EINVAL;
    mpconn_type t = mpconn_value_type(v);
    w->pr->work++;
    if (!is_container(t))
        return repr_scalar(&w->out, v, t, w->pr);
    static const char *const empty[] = {[MPCONN_LIST] = "[]",
                                        [MPCONN_TUPLE] = "()",
                                        [MPCONN_DICT] = "{}",
                                        [MPCONN_SET] = "set()",
                                        [MPCONN_FROZENSET] = "frozenset()"};
    static const char *const again[] = {[MPCONN_LIST] = "[...]",
                                        [MPCONN_TUPLE] = "(...)",
                                        [MPCONN_DICT] = "{...}",
                                        [MPCONN_SET] = "set(...)",
                                        [MPCONN_FROZENSET] = "frozenset(...)"};
    static const char *const open[] = {[MPCONN_LIST] = "[",
                                       [MPCONN_TUPLE] = "(",
                                       [MPCONN_DICT] = "{",
                                       [MPCONN_SET] = "{",
                                       [MPCONN_FROZENSET] = "frozenset({"};
    if (mpconn_value_len(v) == 0) {
        mpci_sbuf_puts(&w->out, empty[t]);
        return 0;
    }
    if (mpci_ptrset_has(&w->open, v)) {
        mpci_sbuf_puts(&w->out, again[t]);
        return 0;
    }
    if (mpci_walk_push(w, v, 0) != 0)
        return -ENOMEM;
    mpci_sbuf_puts(&w->out, open[t]);
    return 0;
}

static int walk_all(walk *w, const mpconn_value *root)
{
    int rc = begin_value(w, root);
    while (rc == 0 && w->n > 0 && !w->out.err) {
        mpci_wframe *f = &w->st[w->n - 1];
        const mpconn_value *child;
        if (f->phase == 1) {
            mpci_sbuf_put(&w->out, ": ", 2);
            child = mpconn_value_dict_value(f->v, f->i++);
            f->phase = 0;
        } else if (f->i < mpconn_value_len(f->v)) {
            if (f->i > 0)
                mpci_sbuf_put(&w->out, ", ", 2);
            child = mpconn_value_item(f->v, f->i);
            if (mpconn_value_type(f->v) == MPCONN_DICT)
                f->phase = 1;
            else
                f->i++;
        } else {
            put_close(w, f->v);
            mpci_ptrset_del(&w->open, f->v);
            w->n--;
            continue;
        }
        rc = begin_value(w, child); /* may move w->st: f is dead after this */
    }
    return rc;
}

int mpci_value_repr(const mpconn_value *v, mpci_print *pr, char **out, size_t *len)
{
    walk w = {.out = {.limit = pr->max_bytes}, .pr = pr};
    int rc = walk_all(&w, v);
    mpci_walk_clear(&w);
    return mpci_print_finish(pr, &w.out, rc, "repr", out, len);
}
