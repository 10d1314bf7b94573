/* Kernel randomness, for challenge nonces. */
#ifndef MPCI_BASE_RANDOM_H
#define MPCI_BASE_RANDOM_H

#include <stddef.h>
#include <stdint.h>

/* Fills buf from getrandom(): 0 or a negative errno. */
int mpci_random(uint8_t *buf, size_t len);

#endif
