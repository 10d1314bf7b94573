/* UTF-8 in one place: the writer every encoder uses, the lenient reader of
 * the text forms and the strict validator of str values. */
#ifndef MPCI_BASE_UTF8_H
#define MPCI_BASE_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define MPCI_UTF8_MAX 4

/* Writes code point cp (at most U+10FFFF; surrogates written as their
 * 3-byte forms, as a Python str may hold them) to out; returns 1..4. */
size_t mpci_utf8_put(uint8_t *out, uint32_t cp);

/* Decodes the code point at s[*i] and advances *i. Accepts the 3-byte forms
 * of surrogates (a str may hold them); a byte that starts no valid sequence
 * comes back as itself, one byte consumed, so callers never loop forever. */
uint32_t mpci_utf8_next(const unsigned char *s, size_t len, size_t *i);

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
int mpci_utf8_valid(const void *s, size_t n);
/* 0 for strict UTF-8, 1 for surrogatepass UTF-8 that holds surrogates,
 * -1 for anything else. */
int mpci_utf8_check(const void *s, size_t n);

/* Text with Python's "surrogateescape" rule: valid sequences (strict, or
 * surrogatepass when allow_surrogates) are copied, each other byte B
 * becomes the lone surrogate U+DC00 + B as its 3-byte form. Writes to out
 * (NULL: only counts) and returns the length, at most 3 * n. */
size_t mpci_utf8_escape(uint8_t *out, const void *s, size_t n, int allow_surrogates);

#endif
