/* mpconn_pack / mpconn_unpack: build values from a small format language
 * and pull fields back out, naming the path of any mismatch. The recursion
 * here follows the caller's format string, never the data. */
#include "proto/value_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static void skip_sep(const char **f)
{
    while (**f == ' ' || **f == ',' || **f == ':' || **f == '\t' || **f == '\n')
        (*f)++;
}

/* ----------------------------------------------------------------- pack */

typedef struct packer {
    va_list *ap;
    const char *fmt;
    int rc; /* why the last NULL: -ENOMEM unless the format was bad */
    char *err;
    size_t errlen;
} packer;

static mpconn_value *bad_format(packer *pk, const char *f, const char *what)
{
    pk->rc = mpci_err(pk->err, pk->errlen, MPCONN_ERR_SYNTAX, "bad format at offset %zu: %s",
                      (size_t)(f - pk->fmt), what);
    return NULL;
}

static mpconn_value *pack_one(packer *pk, const char **f);

static mpconn_value *pack_seq(packer *pk, const char **f, char close, mpconn_value *c)
{
    for (;;) {
        skip_sep(f);
        if (**f == close) {
            (*f)++;
            return c;
        }
        if (!**f) {
            mpconn_value_unref(c);
            return bad_format(pk, *f, "unclosed container");
        }
        mpconn_value *k = pack_one(pk, f);
        if (!k) {
            mpconn_value_unref(c);
            return NULL;
        }
        int rc;
        if (close == '}') {
            skip_sep(f);
            if (!**f || **f == '}') {
                mpconn_value_unref(k);
                mpconn_value_unref(c);
                return bad_format(pk, *f, "a dict key without a value");
            }
            mpconn_value *v = pack_one(pk, f);
            if (!v) {
                mpconn_value_unref(k);
                mpconn_value_unref(c);
                return NULL;
            }
            rc = mpconn_value_dict_set(c, k, v);
        } else {
            rc = mpconn_value_append(c, k);
        }
        if (rc < 0) {
            mpconn_value_unref(c);
            pk->rc = rc;
            return NULL;
        }
    }
}

static mpconn_value *pack_one(packer *pk, const char **f)
{
    va_list *ap = pk->ap;
    pk->rc = -ENOMEM;
    skip_sep(f);
    char c = *(*f)++;
    switch (c) {
    case 'n': return mpconn_value_none();
    case 'b': return mpconn_value_bool(va_arg(*ap, int));
    case 'i': return mpconn_value_int(va_arg(*ap, int));
    case 'I': return mpconn_value_int(va_arg(*ap, int64_t));
    case 'f': return mpconn_value_float(va_arg(*ap, double));
    case 's': {
        const char *s = va_arg(*ap, const char *);
        if (**f == '#') {
            (*f)++;
            size_t n = va_arg(*ap, size_t);
            return mpconn_value_strn(s, n);
        }
        return mpconn_value_str(s);
    }
    case 'y': {
        if (**f != '#')
            return bad_format(pk, *f - 1, "'y' without '#'");
        (*f)++;
        const void *p = va_arg(*ap, const void *);
        size_t n = va_arg(*ap, size_t);
        return mpconn_value_bytes(p, n);
    }
    case 'O': return mpconn_value_ref(va_arg(*ap, mpconn_value *));
    case 'o': return va_arg(*ap, mpconn_value *);
    case '[': {
        mpconn_value *l = mpconn_value_list();
        return l ? pack_seq(pk, f, ']', l) : NULL;
    }
    case '(': {
        mpconn_value *t = mpconn_value_tuple();
        return t ? pack_seq(pk, f, ')', t) : NULL;
    }
    case '{': {
        mpconn_value *d = mpconn_value_dict();
        return d ? pack_seq(pk, f, '}', d) : NULL;
    }
    case '\0': (*f)--; return bad_format(pk, *f, "a value is missing");
    default: (*f)--; return bad_format(pk, *f, "unknown letter");
    }
}

int mpconn_vpack(mpconn_value **out, char *errmsg, size_t errlen, const char *fmt, va_list ap)
{
    if (errmsg && errlen)
        errmsg[0] = '\0';
    if (!out || !fmt)
        return mpci_err(errmsg, errlen, -EINVAL, "no %s", out ? "format" : "place for the value");
    *out = NULL;
    va_list aq;
    va_copy(aq, ap);
    packer pk = {&aq, fmt, -ENOMEM, errmsg, errlen};
    const char *f = fmt;
    mpconn_value *v = pack_one(&pk, &f);
    va_end(aq);
    if (!v) {
        if (errmsg && errlen && !errmsg[0])
            mpci_err(errmsg, errlen, pk.rc, "%s",
                     pk.rc == -ENOMEM ? "out of memory, or a NULL value for 'O' or 'o'"
                                      : mpconn_strerror(pk.rc));
        return pk.rc;
    }
    skip_sep(&f);
    if (*f) {
        mpconn_value_unref(v);
        bad_format(&pk, f, "text after the value");
        return pk.rc;
    }
    *out = v;
    return 0;
}

int mpconn_pack(mpconn_value **out, char *errmsg, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = mpconn_vpack(out, errmsg, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* --------------------------------------------------------------- unpack */

typedef struct unpacker {
    char *err;
    size_t errlen;
    char path[256];
    size_t plen;
} unpacker;

static void path_push(unpacker *u, size_t *saved, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void path_push(unpacker *u, size_t *saved, const char *fmt, ...)
{
    *saved = u->plen;
    if (u->plen >= sizeof u->path - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(u->path + u->plen, sizeof u->path - u->plen, fmt, ap);
    va_end(ap);
    if (n > 0)
        u->plen = u->plen + (size_t)n < sizeof u->path ? u->plen + (size_t)n : sizeof u->path - 1;
}

static void path_pop(unpacker *u, size_t saved)
{
    u->plen = saved;
    u->path[saved] = 0;
}

__attribute__((format(printf, 3, 4))) static int ufail(unpacker *u, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (u->plen) {
        char where[sizeof u->path + 2];
        snprintf(where, sizeof where, "%s: ", u->path);
        mpci_verr_prefixed(u->err, u->errlen, code, where, fmt, ap);
    } else {
        mpci_verr(u->err, u->errlen, code, fmt, ap);
    }
    va_end(ap);
    return code;
}

static const char *tname(const mpconn_value *v)
{
    return mpconn_type_name(mpconn_value_type(v));
}

static int mismatch(unpacker *u, const char *want, const mpconn_value *v)
{
    return ufail(u, MPCONN_ERR_TYPE, "expected %s, got %s", want, tname(v));
}

/* One format item against v. With v NULL (an absent optional key) the
 * arguments are consumed and nothing is written. */
static int unpack_one(unpacker *u, const char **f, va_list *ap, const mpconn_value *v)
{
    skip_sep(f);
    char c = *(*f)++;
    switch (c) {
    case 'n':
        if (v && mpconn_value_type(v) != MPCONN_NONE)
            return mismatch(u, "None", v);
        return 0;
    case 'b': {
        int *out = va_arg(*ap, int *);
        if (!v)
            return 0;
        if (mpconn_value_type(v) != MPCONN_BOOL)
            return mismatch(u, "bool", v);
        mpconn_value_get_bool(v, out);
        return 0;
    }
    case 'i':
    case 'I': {
        int *oi = c == 'i' ? va_arg(*ap, int *) : NULL;
        int64_t *ol = c == 'I' ? va_arg(*ap, int64_t *) : NULL;
        if (!v)
            return 0;
        int64_t x;
        int rc = mpconn_value_get_int(v, &x);
        if (rc == MPCONN_ERR_TYPE)
            return mismatch(u, "int", v);
        if (rc < 0 || (oi && (x < INT_MIN || x > INT_MAX)))
            return ufail(u, MPCONN_ERR_RANGE, "int out of range");
        if (oi)
            *oi = (int)x;
        else
            *ol = x;
        return 0;
    }
    case 'f': {
        double *out = va_arg(*ap, double *);
        if (!v)
            return 0;
        int rc = mpconn_value_get_float(v, out);
        if (rc == MPCONN_ERR_TYPE)
            return mismatch(u, "float", v);
        if (rc < 0)
            return ufail(u, rc, "int too large for a float");
        return 0;
    }
    case 's': {
        const char **out = va_arg(*ap, const char **);
        size_t *len = NULL;
        if (**f == '#') {
            (*f)++;
            len = va_arg(*ap, size_t *);
        }
        if (!v)
            return 0;
        if (mpconn_value_get_str(v, out, len) < 0)
            return mismatch(u, "str", v);
        return 0;
    }
    case 'y': {
        if (**f != '#')
            return ufail(u, -EINVAL, "bad format: 'y' needs '#'");
        (*f)++;
        const void **out = va_arg(*ap, const void **);
        size_t *len = va_arg(*ap, size_t *);
        if (!v)
            return 0;
        if (mpconn_value_get_bytes(v, out, len) < 0)
            return mismatch(u, "bytes", v);
        return 0;
    }
    case 'O': {
        mpconn_value **out = va_arg(*ap, mpconn_value **);
        if (v)
            *out = (mpconn_value *)v;
        return 0;
    }
    case '[':
    case '(': {
        char close = c == '[' ? ']' : ')';
        mpconn_type want = c == '[' ? MPCONN_LIST : MPCONN_TUPLE;
        if (v && mpconn_value_type(v) != want)
            return mismatch(u, mpconn_type_name(want), v);
        size_t i = 0;
        for (;; i++) {
            skip_sep(f);
            if (**f == close) {
                (*f)++;
                break;
            }
            if (!**f)
                return ufail(u, -EINVAL, "bad format: missing '%c'", close);
            const mpconn_value *item = NULL;
            if (v) {
                item = mpconn_value_item(v, i);
                if (!item)
                    return ufail(u, MPCONN_ERR_TYPE, "expected %s of more than %zu items, got %zu",
                                 mpconn_type_name(want), i, mpconn_value_len(v));
            }
            size_t saved;
            path_push(u, &saved, "[%zu]", i);
            int rc = unpack_one(u, f, ap, item);
            if (rc < 0)
                return rc;
            path_pop(u, saved);
        }
        if (v && i != mpconn_value_len(v))
            return ufail(u, MPCONN_ERR_TYPE, "expected %s of %zu items, got %zu",
                         mpconn_type_name(want), i, mpconn_value_len(v));
        return 0;
    }
    case '{': {
        if (v && mpconn_value_type(v) != MPCONN_DICT)
            return mismatch(u, "dict", v);
        for (;;) {
            skip_sep(f);
            if (**f == '}') {
                (*f)++;
                return 0;
            }
            if (**f != 's')
                return ufail(u, -EINVAL, "bad format: dict keys are 's'");
            (*f)++;
            const char *key = va_arg(*ap, const char *);
            skip_sep(f);
            /* Find the '?' that may follow this value's format. */
            const char *vf = *f;
            const mpconn_value *item = v ? mpconn_value_dict_get_str(v, key) : NULL;
            size_t saved;
            path_push(u, &saved, "['%s']", key);
            int optional = 0;
            {
                /* Scan past the value's format to look for '?'. */
                int depth = 0;
                const char *q = vf;
                do {
                    char ch = *q;
                    if (!ch)
                        break;
                    if (ch == '[' || ch == '(' || ch == '{')
                        depth++;
                    else if (ch == ']' || ch == ')' || ch == '}')
                        depth--;
                    q++;
                    if (*q == '#')
                        q++;
                } while (depth > 0);
                while (*q == ' ')
                    q++;
                optional = *q == '?';
            }
            if (v && !item && !optional)
                return ufail(u, MPCONN_ERR_TYPE, "missing key");
            int rc = unpack_one(u, f, ap, item);
            if (rc < 0)
                return rc;
            path_pop(u, saved);
            skip_sep(f);
            if (**f == '?')
                (*f)++;
        }
    }
    default: (*f)--; return ufail(u, -EINVAL, "bad format at '%c'", c ? c : '0');
    }
}

int mpconn_unpack(const mpconn_value *v, char *errmsg, size_t errlen, const char *fmt, ...)
{
    unpacker u;
    memset(&u, 0, sizeof u);
    u.err = errmsg;
    u.errlen = errlen;
    if (!v || !fmt)
        return ufail(&u, -EINVAL, "no value or format");
    va_list ap;
    va_start(ap, fmt);
    const char *f = fmt;
    int rc = unpack_one(&u, &f, &ap, v);
    va_end(ap);
    if (rc == 0) {
        skip_sep(&f);
        if (*f)
            rc = ufail(&u, -EINVAL, "bad format: trailing '%s'", f);
    }
    return rc;
}
