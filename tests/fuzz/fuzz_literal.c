/* libFuzzer target for the literal parser: any text either fails cleanly or
 * gives a value whose repr parses back to an equal value. */
#include "mpconn.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* 1e400 parses as inf, whose repr "inf" is no literal (as in Python), and
 * NaN never equals itself: values holding either skip the round trip. */
static int has_nonfinite(const mpconn_value *v)
{
    mpconn_type t = mpconn_value_type(v);
    if (t == MPCONN_FLOAT) {
        double d = 0;
        mpconn_value_get_float(v, &d);
        return !isfinite(d);
    }
    size_t n = t >= MPCONN_LIST ? mpconn_value_len(v) : 0;
    for (size_t i = 0; i < n; i++) {
        if (has_nonfinite(mpconn_value_item(v, i)))
            return 1;
        if (t == MPCONN_DICT && has_nonfinite(mpconn_value_dict_value(v, i)))
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mpconn_value *v = NULL, *back = NULL;
    char err[256];
    /* A hex literal may hold more than 4300 decimal digits' worth, which
     * repr refuses by default (as CPython's str()): lift the limit. */
    mpconn_opts *o = NULL;
    if (mpconn_opts_new(&o) != 0)
        return 0;
    mpconn_opts_set_print_limits(o, 0, MPCONN_UNLIMITED);
    int rc = mpconn_value_parse_opts(&v, (const char *)data, size, o, err, sizeof err);
    if (rc != 0) {
        if (v || strncmp(err, "column ", 7) != 0)
            abort(); /* failures leave no value and always name a column */
        mpconn_opts_free(o);
        return 0;
    }
    char *text = NULL, *json = NULL;
    size_t len = 0;
    if (mpconn_value_repr_opts(v, o, &text, &len, NULL, 0) != 0)
        abort();
    if (!has_nonfinite(v)) {
        if (mpconn_value_parse_opts(&back, text, len, o, err, sizeof err) != 0)
            abort(); /* repr must be a literal again */
        if (!mpconn_value_equal(v, back))
            abort();
    }
    if (mpconn_value_json_opts(v, o, &json, NULL, NULL, 0) != 0)
        abort();
    free(json);
    free(text);
    mpconn_value_unref(back);
    mpconn_value_unref(v);
    mpconn_opts_free(o);
    return 0;
}
