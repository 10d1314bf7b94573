/* libFuzzer target for printing decoded values under a small limit: repr
 * and JSON of whatever a pickle decodes to stay within the limit, cut or
 * refused, and the work done follows the text written, not what a value
 * that shares its containers expands to. */
#include "mpconn.h"
#include "conn/opts.h"
#include "proto/text_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LIMIT 512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One writer under the limit, cut (truncate) or refused. */
static void check(int json, const mpconn_value *v, mpconn_opts *o, int truncate, size_t size)
{
    mpci_print pr;
    char *s = NULL, err[256] = "";
    size_t len = 0;
    mpconn_opts_set_print_truncate(o, truncate);
    mpci_print_init(&pr, &o->print, err, sizeof err);
    int rc = json ? mpci_value_json(v, &pr, &s, &len) : mpci_value_repr(v, &pr, &s, &len);
    if (rc >= 0) {
        if (!s || len > LIMIT || strlen(s) != len || (rc == 1 && !truncate))
            abort();
        free(s);
    } else if (!err[0] || (rc == MPCONN_ERR_LIMIT && truncate && !strstr(err, "Exceeds"))) {
        abort(); /* refusals say why; cut text is no refusal */
    }
    /* Each step writes at least a byte; a dict's keys are looked at once
     * per time it is begun, and there are no more keys than input bytes. */
    if (pr.work > 2 * (LIMIT + 1) + 2 * size + 16)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mpconn_opts *o = NULL;
    if (mpconn_opts_new(&o) != 0)
        return 0;
    mpconn_opts_set_decode_limits(o, 200, 100000, 10000, 64 << 20);
    mpconn_opts_set_print_limits(o, LIMIT, 0);
    mpconn_value *v = NULL;
    if (mpconn_value_decode(&v, data, size, o, NULL, 0) == 0) {
        for (int json = 0; json < 2; json++)
            for (int truncate = 0; truncate < 2; truncate++)
                check(json, v, o, truncate, size);
        mpconn_value_unref(v);
    }
    mpconn_opts_free(o);
    return 0;
}
