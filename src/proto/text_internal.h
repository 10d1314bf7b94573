/* Helpers shared by the text forms of values (repr.c, json.c, literal.c):
 * a growable output buffer, a pointer set for cycle detection, float and
 * integer formatting, and the printable-character table. */
#ifndef MPCI_TEXT_INTERNAL_H
#define MPCI_TEXT_INTERNAL_H

#include "proto/print.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/utf8.h"
#include "base/util.h"

#include <stddef.h>
#include <stdint.h>

/* 1 when str.isprintable() is true for the code point (unicode_printable.c). */
int mpci_unicode_printable(uint32_t cp);

/* Output text. Any failed append sets err (-ENOMEM) and later appends are
 * ignored, so writers check once at the end. With a limit, an append that
 * would pass it keeps what fits, cut at a UTF-8 character boundary, and
 * sets err to MPCONN_ERR_LIMIT. */
typedef struct mpci_sbuf {
    char *p;
    size_t len, cap;
    int err;
    size_t limit; /* 0: none */
} mpci_sbuf;

void mpci_sbuf_put(mpci_sbuf *b, const char *s, size_t n);
void mpci_sbuf_puts(mpci_sbuf *b, const char *s);
void mpci_sbuf_putc(mpci_sbuf *b, char c);
/* Hands the NUL-terminated text to the caller (free()), or returns the
 * error and frees what was written. */
int mpci_sbuf_finish(mpci_sbuf *b, char **out, size_t *len);

/* Pointers of the containers being written, so a value that contains itself
 * is noticed in O(1) per container instead of scanning the stack. */
typedef struct mpci_ptrset {
    const void **slots;
    size_t count, cap; /* cap is 0 or a power of two */
} mpci_ptrset;

int mpci_ptrset_has(const mpci_ptrset *s, const void *p);
int mpci_ptrset_add(mpci_ptrset *s, const void *p); /* 0 or -ENOMEM */
void mpci_ptrset_del(mpci_ptrset *s, const void *p);
void mpci_ptrset_free(mpci_ptrset *s);

/* Python's repr(float): the shortest digits that read back as d, laid out by
 * Python's rules. out needs MPCI_FLOAT_REPR_MAX bytes; returns the length. */
#define MPCI_FLOAT_REPR_MAX 32
size_t mpci_float_repr(double d, char *out);

/* Powers of ten kept between conversions of big integers (intdec.c). */
typedef struct mpci_powers mpci_powers;
void mpci_powers_free(mpci_powers *pw);
/* Appends sign and decimal digits of a big integer (big-endian magnitude
 * without leading zeros). More than max_digits digits (SIZE_MAX: no limit)
 * is MPCONN_ERR_LIMIT with errmsg set, decided before converting except when
 * the bit length leaves the count one either side of the limit. *pw (NULL
 * at first) caches powers of ten; the caller frees it. */
int mpci_bigint_decimal(mpci_powers **pw, int neg, const uint8_t *mag, size_t len,
                        size_t max_digits, mpci_sbuf *b, char *errmsg, size_t errlen);
/* n decimal digits into a big-endian magnitude without leading zeros
 * (*mag freed by the caller; *len 0 for zero). 0 or -ENOMEM. */
int mpci_decimal_magnitude(mpci_powers **pw, const char *digits, size_t n, uint8_t **mag,
                           size_t *len);

/* The print limits of one repr or JSON call and what the writer keeps
 * across its values. */
typedef struct mpci_print {
    size_t max_bytes, max_digits; /* SIZE_MAX: no limit */
    int truncate;                 /* at max_bytes: cut and succeed (1) */
    char *errmsg;
    size_t errlen;
    size_t work;      /* values begun, characters scanned, dict keys examined */
    mpci_powers *pow; /* owned */
} mpci_print;

/* Limits from lim (NULL: the defaults); errmsg may be NULL. */
void mpci_print_init(mpci_print *pr, const mpci_print_limits *lim, char *errmsg, size_t errlen);
/* Ends a writer that returned rc with its text in b: hands the text over
 * (0, or 1 when cut at the limit) or frees it and returns the error with
 * errmsg set; what names the form ("repr", "JSON") in messages. Frees
 * what pr holds. */
int mpci_print_finish(mpci_print *pr, mpci_sbuf *b, int rc, const char *what, char **out,
                      size_t *len);
/* repr and JSON (v and out not NULL) with the work done left in pr->work,
 * for the tests. */
int mpci_value_repr(const mpconn_value *v, mpci_print *pr, char **out, size_t *len);
int mpci_value_json(const mpconn_value *v, mpci_print *pr, char **out, size_t *len);

/* Appends an int value in decimal (any size) under pr's digit limit. 0 or
 * a negative code. */
int mpci_int_decimal(const mpconn_value *v, mpci_sbuf *b, mpci_print *pr);

/* 1 when s[i..] is a lone surrogate in the form of Python's "surrogatepass"
 * (ED A0..BF 80..BF). Strict UTF-8 forbids these bytes, so a str holds
 * them only when it was made to carry lone surrogates. */
static inline int mpci_utf8_is_surrogate(const unsigned char *s, size_t len, size_t i)
{
    return i + 2 < len && s[i] == 0xED && (s[i + 1] & 0xE0) == 0xA0 && (s[i + 2] & 0xC0) == 0x80;
}

/* Growable stack of container frames used by the iterative writers. */
typedef struct mpci_wframe {
    const mpconn_value *v;
    size_t i;  /* next item */
    int phase; /* dict: 0 before the key, 1 before the value */
    int mode;  /* writer-specific */
} mpci_wframe;

/* The state of an iterative writer: its output, the containers open on its
 * stack (also as a set, to notice a value that contains itself). */
typedef struct mpci_walk {
    mpci_sbuf out;
    mpci_ptrset open;
    mpci_wframe *st;
    size_t n, cap;
    mpci_print *pr;
} mpci_walk;

/* Pushes a frame for container v (the caller checked it is not open yet).
 * 0 or -ENOMEM. */
int mpci_walk_push(mpci_walk *w, const mpconn_value *v, int mode);
/* Frees the stack and the set; the output stays. */
void mpci_walk_clear(mpci_walk *w);

#endif
