/* libFuzzer target for the frame decoders: the input is a byte stream from
 * a peer, fed in pieces whose sizes the input's first bytes choose. The
 * decoders must never read out of bounds, never allocate beyond what has
 * arrived, and agree with a whole-buffer parse. */
#include "proto/frame.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t step = data[0] ? data[0] : 1;
    uint64_t max = data[1] & 1 ? 256 : 0;
    data += 2;
    size -= 2;
    mpci_msgdec d;
    mpci_msgdec_init(&d, max);
    size_t pos = 0, consumed = 0;
    while (pos < size) {
        size_t n = size - pos < step ? size - pos : step;
        size_t off = 0;
        while (off < n) {
            size_t used;
            int r = mpci_msgdec_feed(&d, data + pos + off, n - off, &used);
            if (used > n - off)
                abort();
            off += used;
            consumed += used;
            /* memory follows the bytes that came, not the announced length */
            if (d.cap > (d.got > 64 ? 2 * d.got : 64) && d.cap > d.got + 64)
                abort();
            if (r < 0)
                goto out;
            if (r == 1) {
                size_t len;
                uint8_t *m = mpci_msgdec_take(&d, &len);
                if (!m || (max && len > max))
                    abort();
                free(m);
            } else if (used == 0 && off < n) {
                abort(); /* no progress with bytes left */
            }
        }
        pos += n;
    }
out:
    if (consumed > size)
        abort();
    mpci_msgdec_free(&d);
    return 0;
}
