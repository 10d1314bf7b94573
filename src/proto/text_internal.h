/* Helpers shared by the text forms of values (repr.c, json.c, literal.c):
 * a growable output buffer, a pointer set for cycle detection, float and
 * integer formatting, and the printable-character table. */
#ifndef MPCI_TEXT_INTERNAL_H
#define MPCI_TEXT_INTERNAL_H

#include "base/buf.h"
#include "base/err.h"
#include "base/utf8.h"
#include "base/util.h"

#include <stddef.h>
#include <stdint.h>

/* 1 when str.isprintable() is true for the code point (unicode_printable.c). */
int mpci_unicode_printable(uint32_t cp);

/* Output text. Any failed append sets err (-ENOMEM) and later appends are
 * ignored, so writers check once at the end. */
typedef struct mpci_sbuf {
    char *p;
    size_t len, cap;
    int err;
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

/* Appends an int value in decimal (any size). 0 or a negative code. */
int mpci_int_decimal(const mpconn_value *v, mpci_sbuf *b);

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
} mpci_walk;

/* Pushes a frame for container v (the caller checked it is not open yet).
 * 0 or -ENOMEM. */
int mpci_walk_push(mpci_walk *w, const mpconn_value *v, int mode);
/* Frees the stack and the set; the output stays. */
void mpci_walk_clear(mpci_walk *w);

#endif
