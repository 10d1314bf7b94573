/* libFuzzer target for the pickle decoder: any bytes must decode or fail
 * cleanly, with work and memory bounded linearly in the input; whatever
 * decodes must re-encode to a pickle that decodes to an equal value (found
 * so in linear work too) and encodes to the same bytes again. */
#include "mpconn.h"
#include "conn/opts.h"
#include "proto/value_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Generous linear bounds. A step is an opcode, a hashed item, a probe or a
 * compared pair; an insert may probe up to 512 slots. Memory: an empty dict
 * from a 1-byte opcode is about 150 bytes; the memo may reach its limit. */
#define MAX_STEPS(n) (2048 * (n) + 65536)
#define MAX_BYTES(n) (512 * (n) + (1u << 20))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mpconn_opts *o = NULL, *o2 = NULL;
    if (mpconn_opts_new(&o) != 0 || mpconn_opts_new(&o2) != 0) {
        mpconn_opts_free(o);
        return 0;
    }
    /* Tight limits keep each run fast; the bounds themselves are tested.
     * The re-encoding may be larger: every container in its memo, old
     * protocols' reduce forms deeper and with more values. */
    mpconn_opts_set_decode_limits(o, 200, 100000, 10000, 64 << 20);
    mpconn_opts_set_decode_limits(o2, 1000, 500000, 500000, 256 << 20);
    mpconn_value *v = NULL;
    char err[256];
    mpci_meter m;
    int rc = mpci_pickle_decode_metered(data, size, &o->limits, &v, err, sizeof err, &m);
    if (m.steps > MAX_STEPS(size) || m.bytes > MAX_BYTES(size))
        abort();
    if (rc != 0) {
        if (v)
            abort();
        mpconn_opts_free(o);
        mpconn_opts_free(o2);
        return 0;
    }
    for (int proto = 2; proto <= 5; proto++) {
        void *a = NULL, *b = NULL;
        size_t alen, blen;
        if (mpconn_value_encode(v, proto, &a, &alen) != 0)
            continue; /* e.g. a value too large for protocol 2 */
        mpconn_value *w = NULL;
        if (mpconn_value_decode(&w, a, alen, o2, err, sizeof err) != 0)
            abort();
        mpci_eqctx cx;
        mpci_eqctx_init(&cx, 0);
        int eq = mpci_value_equal_cx(v, w, &cx);
        if (cx.steps > MAX_STEPS(size))
            abort();
        mpci_eqctx_free(&cx);
        if (!eq) {
            /* nan is never equal to another nan; the byte comparison below
             * still holds for it. */
            char *r = NULL;
            size_t rl;
            if (mpconn_value_repr(v, &r, &rl) == 0 && !strstr(r, "nan"))
                abort();
            free(r);
        }
        if (mpconn_value_encode(w, proto, &b, &blen) != 0)
            abort();
        if (alen != blen || memcmp(a, b, alen) != 0)
            abort();
        free(a);
        free(b);
        mpconn_value_unref(w);
    }
    mpconn_value_unref(v);
    mpconn_opts_free(o);
    mpconn_opts_free(o2);
    return 0;
}
