/* Small inline helpers several layers share: pointer hashing for
 * open-addressing tables, hexadecimal digits. */
#ifndef MPCI_BASE_UTIL_H
#define MPCI_BASE_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Spreads a pointer's bits for open-addressing tables keyed by address. */
static inline size_t mpci_ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

/* The value of a hexadecimal digit (either case), or -1. */
static inline int mpci_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
