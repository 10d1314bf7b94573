/* Growable arrays: one resize with the overflow checks, one doubling
 * policy on top of it. */
#include "base/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void *mpci_resize(void *p, const void *inline_first, size_t keep, size_t ncap, size_t elem)
{
    if (elem && ncap > SIZE_MAX / elem)
        return NULL;
    size_t bytes = ncap * elem;
    if (bytes == 0)
        bytes = 1;
    if (!p || p != inline_first)
        return realloc(p, bytes);
    void *n = malloc(bytes);
    if (n && keep)
        memcpy(n, p, keep * elem);
    return n;
}

void *mpci_grow(void *p, size_t *cap, size_t need, size_t elem, size_t first)
{
    if (p && need <= *cap)
        return p;
    size_t ncap = *cap ? *cap : first ? first : 1;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            ncap = need;
            break;
        }
        ncap *= 2;
    }
    void *n = mpci_resize(p, NULL, 0, ncap, elem);
    if (n)
        *cap = ncap;
    return n;
}
