/* The one growable array: stacks, tables and byte buffers all resize
 * through these two, so the overflow checks and the move out of an inline
 * first storage are written once. */
#ifndef MPCI_BASE_BUF_H
#define MPCI_BASE_BUF_H

#include <stddef.h>

/* Resizes array p to ncap elements of elem bytes, keeping the first keep.
 * An array still in its inline first storage (p == inline_first; NULL when
 * there is none) moves to the heap and the storage is left as it is.
 * Returns the array, or NULL when out of memory or ncap * elem overflows
 * (p untouched then). */
void *mpci_resize(void *p, const void *inline_first, size_t keep, size_t ncap, size_t elem);

/* Grows heap array p (NULL when *cap is 0) to hold at least need elements,
 * doubling from *cap, or from first when *cap is 0. Returns the array with
 * *cap updated, or NULL (p and *cap untouched). */
void *mpci_grow(void *p, size_t *cap, size_t need, size_t elem, size_t first);

#endif
