/* The value functions that take an opts: its decoder and print limits are
 * handed to the protocol layer, which knows limits, not opts. */
#include "conn/opts.h"
#include "base/err.h"

#include <errno.h>

int mpconn_value_decode(mpconn_value **out, const void *buf, size_t len, const mpconn_opts *opts,
                        char *errmsg, size_t errlen)
{
    if (!out)
        return mpci_err(errmsg, errlen, -EINVAL, "no output pointer");
    return mpci_pickle_decode(buf, len, opts ? &opts->limits : NULL, out, errmsg, errlen);
}

int mpconn_value_repr_opts(const mpconn_value *v, const mpconn_opts *opts, char **out, size_t *len,
                           char *errmsg, size_t errlen)
{
    return mpci_value_repr_limited(v, opts ? &opts->print : NULL, out, len, errmsg, errlen);
}

int mpconn_value_json_opts(const mpconn_value *v, const mpconn_opts *opts, char **out, size_t *len,
                           char *errmsg, size_t errlen)
{
    return mpci_value_json_limited(v, opts ? &opts->print : NULL, out, len, errmsg, errlen);
}

int mpconn_value_parse_opts(mpconn_value **out, const char *text, size_t len,
                            const mpconn_opts *opts, char *errmsg, size_t errlen)
{
    return mpci_value_parse_limited(text, len, opts ? &opts->print : NULL, out, errmsg, errlen);
}
