/* mpconn_value_parse: Python literals as ast.literal_eval (3.11) accepts them
 * for mpconn's value types. A tokenizer plus a parser over an explicit frame
 * stack: nesting costs heap, bounded by MAX_DEPTH, never C stack.
 *
 * Differences from literal_eval, all deliberate: \N{NAME} escapes are
 * rejected (no Unicode name database here); complex numbers and Ellipsis are
 * rejected (not mpconn types); nesting is limited to MAX_DEPTH (CPython's
 * parser stops at 200). Decimal integers are limited to 4300 digits unless
 * the opts say otherwise, as in CPython; they convert in time below
 * quadratic (intdec.c), the other bases in linear time. Lone surrogates
 * ('\ud800') make a str holding their "surrogatepass" bytes. Error columns
 * count characters from the start of the whole text, newlines included. */
#include "proto/text_internal.h"
#include "proto/value_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 1000

enum {
    T_END,
    T_LPAR,
    T_RPAR,
    T_LBRACK,
    T_RBRACK,
    T_LBRACE,
    T_RBRACE,
    T_COMMA,
    T_COLON,
    T_PLUS,
    T_MINUS,
    T_NUMBER,
    T_STRING,
    T_NAME
};

typedef struct token {
    int kind;
    size_t pos, end; /* byte offsets in the text */
    int nl;          /* a newline outside brackets came before it */
    int indent;      /* ... and the token's line is indented */
    /* T_NUMBER */
    int is_float;
    double d;
    uint8_t *mag; /* big-endian magnitude, owned */
    size_t maglen;
    /* T_STRING: decoded content, owned */
    mpci_sbuf str;
    int is_bytes;
    int surrogate; /* an escape produced a lone surrogate */
} token;

typedef struct lexer {
    const char *s;
    size_t len, pos;
    int depth; /* open brackets: newlines inside them are plain space */
    int first; /* no token read yet */
    token la;  /* one token of lookahead */
    int has_la;
    int complex; /* the last error was an imaginary number */
    size_t max_digits;
    mpci_powers *pow; /* owned */
    char *errmsg;
    size_t errlen;
} lexer;

static int ch(const lexer *lx, size_t i)
{
    return i < lx->len ? (unsigned char)lx->s[i] : -1;
}

static int fail(const lexer *lx, size_t pos, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(const lexer *lx, size_t pos, int code, const char *fmt, ...)
{
    size_t col = 1;
    for (size_t i = 0; i < pos && i < lx->len; i++)
        col += ((unsigned char)lx->s[i] & 0xC0) != 0x80;
    char where[32];
    snprintf(where, sizeof where, "column %zu: ", col);
    va_list ap;
    va_start(ap, fmt);
    mpci_verr_prefixed(lx->errmsg, lx->errlen, code, where, fmt, ap);
    va_end(ap);
    return code;
}

static void token_clear(token *t)
{
    free(t->mag);
    free(t->str.p);
    memset(t, 0, sizeof *t);
}

static int is_ident(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c >= 0x80;
}

/* Whether c is a digit of base (at most 16). */
static int in_base(int c, int base)
{
    int d = mpci_hexval(c);
    return d >= 0 && d < base;
}

/* Checks the whole text once, so later code may step UTF-8 freely. */
static int validate_text(lexer *lx)
{
    const unsigned char *u = (const unsigned char *)lx->s;
    size_t i = 0;
    while (i < lx->len) {
        if (u[i] == 0)
            return fail(lx, i, MPCONN_ERR_SYNTAX, "source text cannot contain null bytes");
        size_t at = i;
        uint32_t cp = mpci_utf8_next(u, lx->len, &i);
        if ((cp >= 0x80 && i - at == 1) || (cp >= 0xD800 && cp <= 0xDFFF))
            return fail(lx, at, MPCONN_ERR_SYNTAX, "invalid UTF-8");
    }
    return 0;
}

/* ------------------------------------------------------------- numbers */

/* Digits of base 2, 8 or 16 into t->mag: each digit is a fixed number of
 * bits, so they are packed from the last one up. */
static int digits_to_mag(token *t, const char *dig, size_t n, int base)
{
    int bits = base == 2 ? 1 : base == 8 ? 3 : 4;
    size_t len = (n * (size_t)bits + 7) / 8;
    uint8_t *m = calloc(len ? len : 1, 1);
    if (!m)
        return -ENOMEM;
    size_t at = 0; /* bit position from the least significant end */
    for (size_t i = n; i-- > 0; at += (size_t)bits) {
        unsigned d = (unsigned)mpci_hexval(dig[i]) << (at % 8);
        m[len - 1 - at / 8] |= (uint8_t)d;
        if ((d >> 8) && at / 8 + 1 < len)
            m[len - 2 - at / 8] |= (uint8_t)(d >> 8);
    }
    size_t lead = 0;
    while (lead < len && m[lead] == 0)
        lead++;
    memmove(m, m + lead, len - lead);
    t->mag = m;
    t->maglen = len - lead;
    return 0;
}

/* Reads digits of the base with single underscores between them into dig;
 * returns how many were read, or (size_t)-1 at a misplaced underscore. */
static size_t read_digits(lexer *lx, int base, mpci_sbuf *dig)
{
    size_t n = 0;
    for (;;) {
        int c = ch(lx, lx->pos);
        if (c == '_' && n > 0) {
            if (!in_base(ch(lx, lx->pos + 1), base))
                return (size_t)-1;
            lx->pos++;
            continue;
        }
        if (c < 0 || !in_base(c, base) || (base <= 10 && !(c >= '0' && c <= '9')))
            return n;
        mpci_sbuf_putc(dig, (char)c);
        lx->pos++;
        n++;
    }
}

static int lex_number(lexer *lx, token *t)
{
    size_t start = lx->pos;
    mpci_sbuf dig = {0};
    int rc = 0;
    t->kind = T_NUMBER;
    int c1 = ch(lx, start + 1);
    if (ch(lx, start) == '0' && c1 >= 0 && strchr("xXoObB", c1)) {
        int base = (c1 == 'x' || c1 == 'X') ? 16 : (c1 == 'o' || c1 == 'O') ? 8 : 2;
        const char *name = base == 16 ? "hexadecimal" : base == 8 ? "octal" : "binary";
        lx->pos += 2;
        if (ch(lx, lx->pos) == '_')
            lx->pos++; /* 0x_1f: one underscore may follow the prefix */
        size_t n = read_digits(lx, base, &dig);
        int next = ch(lx, lx->pos);
        if (n != (size_t)-1 && next >= '0' && next <= '9')
            rc = fail(lx, lx->pos, MPCONN_ERR_SYNTAX, "invalid digit '%c' in %s literal", next,
                      name);
        else if (n == (size_t)-1 || n == 0 || is_ident(next))
            rc = fail(lx, start, MPCONN_ERR_SYNTAX, "invalid %s literal", name);
        else
            rc = dig.err ? dig.err : digits_to_mag(t, dig.p, n, base);
        free(dig.p);
        return rc;
    }
    /* Decimal: int part, fraction, exponent; a float is handed to strtod as
     * "DIGITSeEXP" with no decimal point, so the C locale never matters. */
    size_t nint = read_digits(lx, 10, &dig), nfrac = 0;
    int isfloat = 0;
    long long exp = 0;
    if (nint == (size_t)-1)
        goto bad;
    if (ch(lx, lx->pos) == '.') {
        isfloat = 1;
        lx->pos++;
        if (ch(lx, lx->pos) >= '0' && ch(lx, lx->pos) <= '9') {
            nfrac = read_digits(lx, 10, &dig);
            if (nfrac == (size_t)-1)
                goto bad;
        }
    }
    int ce = ch(lx, lx->pos);
    if (ce == 'e' || ce == 'E') {
        int cs = ch(lx, lx->pos + 1), neg = 0;
        size_t p = lx->pos + 1;
        if (cs == '+' || cs == '-') {
            neg = cs == '-';
            p++;
        }
        if (ch(lx, p) < '0' || ch(lx, p) > '9')
            goto bad;
        isfloat = 1;
        lx->pos = p;
        mpci_sbuf ed = {0};
        size_t ne = read_digits(lx, 10, &ed);
        if (ne == (size_t)-1) {
            free(ed.p);
            goto bad;
        }
        for (size_t i = 0; i < ne; i++)
            if (exp < 1000000000LL)
                exp = exp * 10 + (ed.p[i] - '0');
        free(ed.p);
        if (neg)
            exp = -exp;
    }
    int cj = ch(lx, lx->pos);
    if (cj == 'j' || cj == 'J') {
        free(dig.p);
        lx->complex = 1;
        return fail(lx, start, MPCONN_ERR_SYNTAX, "complex numbers are not supported");
    }
    if (is_ident(cj))
        goto bad;
    if (isfloat) {
        char tail[32];
        snprintf(tail, sizeof tail, "e%lld", exp - (long long)nfrac);
        if (nint + nfrac == 0)
            mpci_sbuf_putc(&dig, '0');
        mpci_sbuf_puts(&dig, tail);
        mpci_sbuf_putc(&dig, '\0');
        if (dig.err) {
            free(dig.p);
            return -ENOMEM;
        }
        t->is_float = 1;
        t->d = strtod(dig.p, NULL);
        free(dig.p);
        return 0;
    }
    for (size_t i = 1; i < nint; i++)
        if (dig.p[0] == '0' && dig.p[i] != '0') {
            free(dig.p);
            return fail(lx, start, MPCONN_ERR_SYNTAX,
                        "leading zeros in decimal integer literals are not permitted");
        }
    if (nint > lx->max_digits)
        rc = fail(lx, start, MPCONN_ERR_LIMIT,
                  "Exceeds the limit (%zu digits) for integer string conversion: value has %zu "
                  "digits; mpconn_opts_set_print_limits raises it",
                  lx->max_digits, nint);
    else if (dig.err)
        rc = dig.err;
    else
        rc = mpci_decimal_magnitude(&lx->pow, dig.p, nint, &t->mag, &t->maglen);
    free(dig.p);
    return rc;
bad:
    free(dig.p);
    return fail(lx, start, MPCONN_ERR_SYNTAX, "invalid decimal literal");
}

/* ------------------------------------------------------------- strings */

static void put_utf8(mpci_sbuf *b, uint32_t cp)
{
    uint8_t u[MPCI_UTF8_MAX];
    mpci_sbuf_put(b, (const char *)u, mpci_utf8_put(u, cp));
}

/* Consumes a newline (\n, \r\n or \r) at pos if there is one. */
static int eat_newline(lexer *lx)
{
    int c = ch(lx, lx->pos);
    if (c == '\n') {
        lx->pos++;
        return 1;
    }
    if (c == '\r') {
        lx->pos += ch(lx, lx->pos + 1) == '\n' ? 2 : 1;
        return 1;
    }
    return 0;
}

/* An escape after a backslash in a non-raw literal; lx->pos is past it. */
static int lex_escape(lexer *lx, token *t, size_t bs)
{
    mpci_sbuf *b = &t->str;
    int c = ch(lx, lx->pos);
    if (eat_newline(lx))
        return 0; /* backslash-newline joins lines */
    lx->pos++;
    switch (c) {
    case '\\':
    case '\'':
    case '"': mpci_sbuf_putc(b, (char)c); return 0;
    case 'a': mpci_sbuf_putc(b, '\a'); return 0;
    case 'b': mpci_sbuf_putc(b, '\b'); return 0;
    case 'f': mpci_sbuf_putc(b, '\f'); return 0;
    case 'n': mpci_sbuf_putc(b, '\n'); return 0;
    case 'r': mpci_sbuf_putc(b, '\r'); return 0;
    case 't': mpci_sbuf_putc(b, '\t'); return 0;
    case 'v': mpci_sbuf_putc(b, '\v'); return 0;
    default: break;
    }
    if (c >= '0' && c <= '7') {
        uint32_t v = (uint32_t)(c - '0');
        for (int k = 0; k < 2 && ch(lx, lx->pos) >= '0' && ch(lx, lx->pos) <= '7'; k++)
            v = v * 8 + (uint32_t)(ch(lx, lx->pos++) - '0');
        if (t->is_bytes)
            mpci_sbuf_putc(b, (char)(v & 0xFF)); /* b'\777' is b'\xff' in 3.11 */
        else
            put_utf8(b, v);
        return 0;
    }
    int ndig = c == 'x' ? 2 : (c == 'u' && !t->is_bytes) ? 4 : (c == 'U' && !t->is_bytes) ? 8 : 0;
    if (ndig) {
        uint32_t v = 0;
        for (int k = 0; k < ndig; k++) {
            int d = mpci_hexval(ch(lx, lx->pos));
            if (d < 0)
                return fail(lx, bs, MPCONN_ERR_SYNTAX, "truncated \\%c escape", c);
            v = v * 16 + (uint32_t)d;
            lx->pos++;
        }
        if (t->is_bytes) {
            mpci_sbuf_putc(b, (char)v);
            return 0;
        }
        if (v > 0x10FFFF)
            return fail(lx, bs, MPCONN_ERR_SYNTAX, "illegal Unicode character in \\U escape");
        if (v >= 0xD800 && v <= 0xDFFF)
            t->surrogate = 1;
        put_utf8(b, v);
        return 0;
    }
    if (c == 'N' && !t->is_bytes)
        return fail(lx, bs, MPCONN_ERR_SYNTAX,
                    "\\N{...} escapes are not supported (no Unicode name database)");
    /* Unknown escapes keep the backslash, as Python does (with a warning). */
    mpci_sbuf_putc(b, '\\');
    lx->pos--;
    return 0;
}

/* A string literal starting at lx->pos (the prefix is already consumed). */
static int lex_string(lexer *lx, token *t, size_t start, int raw)
{
    int q = ch(lx, lx->pos);
    int triple = ch(lx, lx->pos + 1) == q && ch(lx, lx->pos + 2) == q;
    lx->pos += triple ? 3 : 1;
    t->kind = T_STRING;
    for (;;) {
        int c = ch(lx, lx->pos);
        if (c < 0)
            return fail(lx, start, MPCONN_ERR_SYNTAX, "unterminated %sstring literal",
                        triple ? "triple-quoted " : "");
        if (c == q) {
            if (!triple) {
                lx->pos++;
                break;
            }
            if (ch(lx, lx->pos + 1) == q && ch(lx, lx->pos + 2) == q) {
                lx->pos += 3;
                break;
            }
            mpci_sbuf_putc(&t->str, (char)c);
            lx->pos++;
            continue;
        }
        if (c == '\n' || c == '\r') {
            if (!triple)
                return fail(lx, start, MPCONN_ERR_SYNTAX, "unterminated string literal");
            eat_newline(lx); /* the tokenizer reads \r\n and \r as \n */
            mpci_sbuf_putc(&t->str, '\n');
            continue;
        }
        if (c == '\\') {
            size_t bs = lx->pos++;
            if (ch(lx, lx->pos) < 0)
                continue; /* reported as unterminated above */
            if (!raw) {
                int rc = lex_escape(lx, t, bs);
                if (rc)
                    return rc;
                continue;
            }
            /* Raw: the backslash stays, and it still protects the next
             * character from ending the literal. */
            mpci_sbuf_putc(&t->str, '\\');
            int n = ch(lx, lx->pos);
            if (n == '\n' || n == '\r') {
                eat_newline(lx);
                mpci_sbuf_putc(&t->str, '\n');
            } else if (n == q || n == '\\') {
                mpci_sbuf_putc(&t->str, (char)n);
                lx->pos++;
            }
            continue;
        }
        if (c >= 0x80) {
            if (t->is_bytes)
                return fail(lx, lx->pos, MPCONN_ERR_SYNTAX,
                            "bytes can only contain ASCII literal characters");
            size_t at = lx->pos;
            mpci_utf8_next((const unsigned char *)lx->s, lx->len, &lx->pos);
            mpci_sbuf_put(&t->str, lx->s + at, lx->pos - at);
            continue;
        }
        mpci_sbuf_putc(&t->str, (char)c);
        lx->pos++;
    }
    return t->str.err;
}

/* ---------------------------------------------------------------- lexer */

/* Skips blanks, comments and line joins; notes newlines outside brackets. */
static int skip_space(lexer *lx, token *t)
{
    for (;;) {
        int c = ch(lx, lx->pos);
        if (c == ' ' || c == '\t' || c == '\f') {
            lx->pos++;
            if (t->nl)
                t->indent = 1;
        } else if (c == '#') {
            while (ch(lx, lx->pos) >= 0 && ch(lx, lx->pos) != '\n' && ch(lx, lx->pos) != '\r')
                lx->pos++;
        } else if (c == '\\') {
            size_t at = lx->pos++;
            if (!eat_newline(lx))
                return fail(lx, at, MPCONN_ERR_SYNTAX,
                            "unexpected character after line continuation character");
        } else if (c == '\n' || c == '\r') {
            eat_newline(lx);
            if (lx->depth == 0) {
                t->nl = 1;
                t->indent = 0;
            }
        } else {
            return 0;
        }
    }
}

static int lex(lexer *lx, token *t)
{
    memset(t, 0, sizeof *t);
    int rc = skip_space(lx, t);
    if (rc)
        return rc;
    size_t start = lx->pos;
    t->pos = start;
    int c = ch(lx, start);
    static const char punct[] = "()[]{},:+-";
    static const int kinds[] = {T_LPAR,   T_RPAR,  T_LBRACK, T_RBRACK, T_LBRACE,
                                T_RBRACE, T_COMMA, T_COLON,  T_PLUS,   T_MINUS};
    if (c < 0) {
        t->kind = T_END;
    } else if (c && strchr(punct, c)) {
        t->kind = kinds[strchr(punct, c) - punct];
        lx->pos++;
        if (c == '(' || c == '[' || c == '{') {
            if (++lx->depth > MAX_DEPTH)
                return fail(lx, start, MPCONN_ERR_LIMIT, "nesting deeper than %d", MAX_DEPTH);
        } else if ((c == ')' || c == ']' || c == '}') && lx->depth > 0) {
            lx->depth--;
        }
    } else if ((c >= '0' && c <= '9') ||
               (c == '.' && ch(lx, start + 1) >= '0' && ch(lx, start + 1) <= '9')) {
        rc = lex_number(lx, t);
    } else if (c == '\'' || c == '"') {
        rc = lex_string(lx, t, start, 0);
    } else if (is_ident(c)) {
        while (is_ident(ch(lx, lx->pos)))
            lx->pos++;
        t->kind = T_NAME;
        int q = ch(lx, lx->pos);
        size_t n = lx->pos - start;
        if ((q == '\'' || q == '"') && n <= 2) {
            /* A string prefix: r, u, b, br, rb in any case; f is refused. */
            int raw = 0, bytes = 0, uni = 0, fmt = 0, ok = 1;
            for (size_t i = start; i < lx->pos; i++) {
                int p = lx->s[i] | 0x20;
                raw += p == 'r', bytes += p == 'b', uni += p == 'u', fmt += p == 'f';
                ok &= p == 'r' || p == 'b' || p == 'u' || p == 'f';
            }
            if (!ok || raw > 1 || bytes > 1 || uni > 1 || fmt > 1 || (uni && n > 1))
                return fail(lx, start, MPCONN_ERR_SYNTAX, "invalid string prefix '%.*s'", (int)n,
                            lx->s + start);
            if (fmt)
                return fail(lx, start, MPCONN_ERR_SYNTAX, "f-strings are not literals");
            t->is_bytes = bytes;
            rc = lex_string(lx, t, start, raw);
        }
    } else if (c == '.') {
        return fail(lx, start, MPCONN_ERR_SYNTAX, "'...' and attributes are not supported");
    } else {
        size_t at = start;
        uint32_t cp = mpci_utf8_next((const unsigned char *)lx->s, lx->len, &at);
        return fail(lx, start, MPCONN_ERR_SYNTAX, "unexpected character '%.*s' (U+%04X)",
                    (int)(at - start), lx->s + start, (unsigned)cp);
    }
    t->end = lx->pos;
    return rc;
}

/* The parser's view: one token of lookahead, and Python's rule that a
 * newline outside brackets may only end the expression. */
static int next(lexer *lx, token *t)
{
    int rc;
    if (lx->has_la) {
        *t = lx->la;
        lx->has_la = 0;
        rc = 0;
    } else {
        rc = lex(lx, t);
    }
    if (rc == 0 && t->kind != T_END && t->nl) {
        if (t->indent)
            rc = fail(lx, t->pos, MPCONN_ERR_SYNTAX, "unexpected indent");
        else if (!lx->first)
            rc = fail(lx, t->pos, MPCONN_ERR_SYNTAX, "invalid syntax: newline outside brackets");
    }
    lx->first = 0;
    if (rc)
        token_clear(t);
    return rc;
}

static int peek(lexer *lx, const token **t)
{
    if (!lx->has_la) {
        int rc = lex(lx, &lx->la);
        if (rc) {
            token_clear(&lx->la);
            return rc;
        }
        lx->has_la = 1;
    }
    *t = &lx->la;
    return 0;
}

/* --------------------------------------------------------------- values */

static int make_number(lexer *lx, const token *t, int neg, mpconn_value **out)
{
    static const uint8_t zero[1];
    (void)lx;
    if (t->is_float)
        *out = mpconn_value_float(neg ? -t->d : t->d);
    else /* small magnitudes come back as plain ints */
        *out = mpconn_value_bigint(neg, t->mag ? t->mag : zero, t->mag ? t->maglen : 0);
    return *out ? 0 : -ENOMEM;
}

/* Adjacent literals join; str and bytes do not mix. tok is the first. */
static int make_string(lexer *lx, token *tok, mpconn_value **out)
{
    for (;;) {
        const token *nx;
        int rc = peek(lx, &nx);
        if (rc)
            return rc;
        if (nx->kind != T_STRING || nx->nl)
            break;
        if (nx->is_bytes != tok->is_bytes)
            return fail(lx, nx->pos, MPCONN_ERR_SYNTAX, "cannot mix bytes and nonbytes literals");
        token more;
        if ((rc = next(lx, &more)) != 0)
            return rc;
        mpci_sbuf_put(&tok->str, more.str.p ? more.str.p : "", more.str.len);
        tok->surrogate |= more.surrogate;
        token_clear(&more);
    }
    if (tok->str.err)
        return tok->str.err;
    const char *p = tok->str.p ? tok->str.p : "";
    if (tok->is_bytes) {
        *out = mpconn_value_bytes(p, tok->str.len);
    } else if (tok->surrogate) {
        /* The text was valid UTF-8 and the escapes were written as 3-byte
         * sequences: surrogatepass UTF-8, flagged as such. */
        *out = mpconn_value_strn_surrogatepass(p, tok->str.len);
    } else {
        *out = mpconn_value_strn(p, tok->str.len);
    }
    return *out ? 0 : -ENOMEM;
}

/* ---------------------------------------------------------------- parser */

enum { F_TOP, F_PAREN, F_LIST, F_BRACE };
enum { B_UNDECIDED, B_DICT, B_SET };

typedef struct frame {
    int kind;
    int bmode;         /* F_BRACE */
    size_t pos;        /* where the bracket opened (or the text starts) */
    mpconn_value *c;   /* container so far; F_TOP/F_PAREN: tuple once a comma is seen */
    mpconn_value *key; /* F_BRACE dict: key waiting for its value */
    size_t keypos;
} frame;

typedef struct parser {
    lexer lx;
    frame *st;
    size_t n, cap;
} parser;

static int push(parser *p, int kind, size_t pos)
{
    frame *st = mpci_grow(p->st, &p->cap, p->n + 1, sizeof *st, 16);
    if (!st)
        return -ENOMEM;
    p->st = st;
    p->st[p->n++] = (frame){.kind = kind, .pos = pos};
    if (kind == F_LIST && !(p->st[p->n - 1].c = mpconn_value_list()))
        return -ENOMEM;
    return 0;
}

static mpconn_value *pop(parser *p)
{
    frame *f = &p->st[--p->n];
    mpconn_value_unref(f->key);
    return f->c;
}

/* Adds v (stolen) at vpos to the top frame's container. */
static int add_item(parser *p, mpconn_value *v, size_t vpos)
{
    frame *f = &p->st[p->n - 1];
    int rc;
    if (f->kind == F_BRACE && f->bmode == B_DICT) {
        mpconn_value *k = f->key;
        f->key = NULL;
        rc = mpconn_value_dict_set(f->c, k, v);
        vpos = f->keypos;
    } else if (f->kind == F_BRACE) {
        rc = mpconn_value_add(f->c, v);
    } else {
        if (!f->c && !(f->c = f->kind == F_LIST ? mpconn_value_list() : mpconn_value_tuple())) {
            mpconn_value_unref(v);
            return -ENOMEM;
        }
        rc = mpconn_value_append(f->c, v);
    }
    if (rc == MPCONN_ERR_UNHASHABLE)
        return fail(&p->lx, vpos, rc, "unhashable %s",
                    f->bmode == B_DICT ? "dict key" : "set item");
    return rc;
}

/* After "," in a container: 1 when the closer follows (consumed). */
static int closer_follows(parser *p, int closer, int *rc)
{
    const token *t;
    if ((*rc = peek(&p->lx, &t)) != 0)
        return 0;
    if (t->kind != closer)
        return 0;
    token tk;
    *rc = next(&p->lx, &tk);
    return *rc == 0;
}

static const char *tok_name(const token *t)
{
    static const char *const names[] = {
        [T_END] = "end of input", [T_LPAR] = "'('",   [T_RPAR] = "')'",   [T_LBRACK] = "'['",
        [T_RBRACK] = "']'",       [T_LBRACE] = "'{'", [T_RBRACE] = "'}'", [T_COMMA] = "','",
        [T_COLON] = "':'",        [T_PLUS] = "'+'",   [T_MINUS] = "'-'",  [T_NUMBER] = "a number",
        [T_STRING] = "a string",  [T_NAME] = "a name"};
    return names[t->kind];
}

static int unexpected(parser *p, const token *t, const char *wanted)
{
    return fail(&p->lx, t->pos, MPCONN_ERR_SYNTAX, "expected %s, got %s", wanted, tok_name(t));
}

/* Reads one value that is not a container opener: a literal, signed number,
 * True/False/None, or set(). tok is its first token (consumed). */
static int parse_atom(parser *p, token *tok, mpconn_value **out)
{
    lexer *lx = &p->lx;
    int rc;
    if (tok->kind == T_NUMBER)
        return make_number(lx, tok, 0, out);
    if (tok->kind == T_STRING)
        return make_string(lx, tok, out);
    if (tok->kind == T_PLUS || tok->kind == T_MINUS) {
        /* One sign on a number; parentheses around the number are only
         * grouping, so -(1) is -1, but -(-1) and -True are not literals. */
        int neg = tok->kind == T_MINUS;
        size_t parens = 0;
        token t;
        for (;;) {
            if ((rc = next(lx, &t)) != 0)
                return rc;
            if (t.kind != T_LPAR)
                break;
            parens++;
        }
        if (t.kind != T_NUMBER) {
            rc = fail(lx, t.pos, MPCONN_ERR_SYNTAX, "a sign applies only to a number");
            token_clear(&t);
            return rc;
        }
        rc = make_number(lx, &t, neg, out);
        token_clear(&t);
        for (; rc == 0 && parens > 0; parens--) {
            if ((rc = next(lx, &t)) == 0 && t.kind != T_RPAR)
                rc = unexpected(p, &t, "')'");
            token_clear(&t);
        }
        if (rc) {
            mpconn_value_unref(*out);
            *out = NULL;
        }
        return rc;
    }
    if (tok->kind == T_NAME) {
        size_t n = tok->end - tok->pos;
        const char *s = lx->s + tok->pos;
        if (n == 4 && !memcmp(s, "None", 4))
            *out = mpconn_value_none();
        else if (n == 4 && !memcmp(s, "True", 4))
            *out = mpconn_value_bool(1);
        else if (n == 5 && !memcmp(s, "False", 5))
            *out = mpconn_value_bool(0);
        else if (n == 3 && !memcmp(s, "set", 3)) {
            token t;
            for (int k = 0; k < 2; k++) {
                if ((rc = next(lx, &t)) != 0)
                    return rc;
                int want = k == 0 ? T_LPAR : T_RPAR;
                if (t.kind != want) {
                    rc = fail(lx, t.pos, MPCONN_ERR_SYNTAX,
                              "only set() with no arguments is a literal");
                    token_clear(&t);
                    return rc;
                }
            }
            *out = mpconn_value_set();
        } else {
            return fail(lx, tok->pos, MPCONN_ERR_SYNTAX, "name '%.*s' is not a literal", (int)n, s);
        }
        return *out ? 0 : -ENOMEM;
    }
    return unexpected(p, tok, "a value");
}

static int parse(parser *p, mpconn_value **out)
{
    lexer *lx = &p->lx;
    mpconn_value *v = NULL;
    size_t vpos = 0;
    token tok;
    int rc = push(p, F_TOP, 0);

    /* Two states: want a value, then have one (v at vpos) to place. */
want_value:
    if (rc)
        return rc;
    if ((rc = next(lx, &tok)) != 0)
        return rc;
    vpos = tok.pos;
    if (tok.kind == T_LPAR || tok.kind == T_LBRACK || tok.kind == T_LBRACE) {
        int kind = tok.kind == T_LPAR ? F_PAREN : tok.kind == T_LBRACK ? F_LIST : F_BRACE;
        int closer = tok.kind == T_LPAR ? T_RPAR : tok.kind == T_LBRACK ? T_RBRACK : T_RBRACE;
        token_clear(&tok);
        if ((rc = push(p, kind, vpos)) != 0)
            return rc;
        if (!closer_follows(p, closer, &rc))
            goto want_value;
        v = pop(p);
        if (!v)
            v = kind == F_PAREN ? mpconn_value_tuple() : mpconn_value_dict();
        if (!v)
            return -ENOMEM;
        goto have_value;
    }
    rc = parse_atom(p, &tok, &v);
    token_clear(&tok);
    if (rc)
        return rc;

have_value:;
    frame *f = &p->st[p->n - 1];
    if ((rc = next(lx, &tok)) != 0) {
        mpconn_value_unref(v);
        return rc;
    }
    int k = tok.kind;
    if (f->kind == F_BRACE && f->bmode == B_UNDECIDED) {
        if (k == T_COLON) {
            f->bmode = B_DICT;
            f->c = mpconn_value_dict();
        } else if (k == T_COMMA || k == T_RBRACE) {
            f->bmode = B_SET;
            f->c = mpconn_value_set();
        }
        if (!f->c && f->bmode != B_UNDECIDED) {
            mpconn_value_unref(v);
            token_clear(&tok);
            return -ENOMEM;
        }
    }
    if (f->kind == F_BRACE && f->bmode == B_DICT && !f->key) {
        if (k != T_COLON) {
            mpconn_value_unref(v);
            rc = unexpected(p, &tok, "':'");
            token_clear(&tok);
            return rc;
        }
        f->key = v;
        f->keypos = vpos;
        v = NULL;
        token_clear(&tok);
        goto want_value;
    }
    static const int closers[] = {
        [F_TOP] = T_END, [F_PAREN] = T_RPAR, [F_LIST] = T_RBRACK, [F_BRACE] = T_RBRACE};
    static const char *const wanted[] = {[F_TOP] = "',' or end of input",
                                         [F_PAREN] = "',' or ')'",
                                         [F_LIST] = "',' or ']'",
                                         [F_BRACE] = "',' or '}'"};
    int closer = closers[f->kind];
    if (k != T_COMMA && k != closer) {
        mpconn_value_unref(v);
        const token *nx;
        /* 1+2j: say what it is rather than that '+' is unexpected. */
        if ((k == T_PLUS || k == T_MINUS) && peek(lx, &nx) != 0 && lx->complex) {
            token_clear(&tok);
            return MPCONN_ERR_SYNTAX;
        }
        rc = unexpected(p, &tok,
                        f->kind == F_BRACE && f->bmode == B_UNDECIDED ? "',', ':' or '}'"
                                                                      : wanted[f->kind]);
        token_clear(&tok);
        return rc;
    }
    token_clear(&tok);
    /* A lone value in parentheses (or at the top) is just that value. */
    int grouping = (f->kind == F_TOP || f->kind == F_PAREN) && !f->c && k == closer;
    if (!grouping && (rc = add_item(p, v, vpos)) != 0)
        return rc;
    if (grouping) {
        pop(p);
    } else if (k == closer || closer_follows(p, closer, &rc)) {
        vpos = f->pos;
        v = pop(p);
    } else {
        goto want_value; /* rc from closer_follows is checked there */
    }
    if (p->n == 0) {
        *out = v;
        return 0;
    }
    goto have_value;
}

int mpci_value_parse_limited(const char *text, size_t len, const mpci_print_limits *lim,
                             mpconn_value **out, char *errmsg, size_t errlen)
{
    if (!out || (!text && len))
        return -EINVAL;
    *out = NULL;
    parser p = {
        .lx = {.s = text ? text : "",
               .len = len,
               .first = 1,
               .max_digits = lim && lim->max_digits ? lim->max_digits : MPCI_INT_DIGITS_DEFAULT,
               .errmsg = errmsg,
               .errlen = errlen}};
    /* literal_eval strips leading spaces and tabs of the first line. */
    while (p.lx.pos < len && (text[p.lx.pos] == ' ' || text[p.lx.pos] == '\t'))
        p.lx.pos++;
    int rc = validate_text(&p.lx);
    if (rc == 0)
        rc = parse(&p, out);
    while (p.n > 0)
        mpconn_value_unref(pop(&p));
    free(p.st);
    if (p.lx.has_la)
        token_clear(&p.lx.la);
    mpci_powers_free(p.lx.pow);
    if (rc != 0 && rc != MPCONN_ERR_SYNTAX && rc != MPCONN_ERR_LIMIT && rc != MPCONN_ERR_UNHASHABLE)
        mpci_err(errmsg, errlen, rc, "%s", mpconn_strerror(rc));
    return rc;
}

int mpconn_value_parse(mpconn_value **out, const char *text, size_t len, char *errmsg,
                       size_t errlen)
{
    return mpci_value_parse_limited(text, len, NULL, out, errmsg, errlen);
}
