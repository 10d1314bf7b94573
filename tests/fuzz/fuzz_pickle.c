/* libFuzzer target for the pickle decoder: any bytes must decode or fail
 * cleanly; whatever decodes must re-encode to a pickle that decodes to the
 * same value and encodes to the same bytes again. */
#include "mpconn.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Counts nodes as a tree (shared values once per path) up to a budget:
 * equality on heavily shared values can take time exponential in depth. */
static int tree_small(const mpconn_value *v, size_t budget)
{
    const mpconn_value **st = malloc(budget * sizeof *st);
    if (!st)
        return 0;
    size_t sp = 0, seen = 0;
    st[sp++] = v;
    int ok = 1;
    while (sp && ok) {
        const mpconn_value *c = st[--sp];
        if (++seen > budget) {
            ok = 0;
            break;
        }
        mpconn_type t = mpconn_value_type(c);
        if (t < MPCONN_LIST)
            continue;
        size_t n = mpconn_value_len(c);
        for (size_t i = 0; i < n && ok; i++) {
            if (sp + 2 > budget) {
                ok = 0;
                break;
            }
            st[sp++] = mpconn_value_item(c, i);
            if (t == MPCONN_DICT)
                st[sp++] = mpconn_value_dict_value(c, i);
        }
    }
    free(st);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mpconn_opts *o = NULL;
    if (mpconn_opts_new(&o) != 0)
        return 0;
    /* Tight limits keep each run fast; the bounds themselves are tested. */
    mpconn_opts_set_decode_limits(o, 200, 100000, 10000, 64 << 20);
    mpconn_value *v = NULL;
    char err[256];
    int rc = mpconn_value_decode(data, size, o, &v, err, sizeof err);
    if (rc != 0) {
        if (v)
            abort();
        mpconn_opts_free(o);
        return 0;
    }
    for (int proto = 2; proto <= 5; proto++) {
        void *a = NULL, *b = NULL;
        size_t alen, blen;
        if (mpconn_value_encode(v, proto, &a, &alen) != 0)
            continue; /* e.g. a value too large for protocol 2 */
        mpconn_value *w = NULL;
        if (mpconn_value_decode(a, alen, o, &w, err, sizeof err) != 0)
            abort();
        if (tree_small(v, 10000) && !mpconn_value_equal(v, w)) {
            /* nan is never equal to itself; the byte comparison below
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
        mpconn_value_free(w);
    }
    mpconn_value_free(v);
    mpconn_opts_free(o);
    return 0;
}
