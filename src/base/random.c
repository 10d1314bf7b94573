/* Kernel randomness (getrandom), whole or not at all. */
#include "base/random.h"

#include <errno.h>
#include <sys/random.h>

int mpci_random(uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(buf, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}
