/* The print limits of the text forms (repr, JSON, the literal parser) for
 * the layers above, which keep them in their opts: the text forms take
 * them as this struct, never the opts. */
#ifndef MPCI_PROTO_PRINT_H
#define MPCI_PROTO_PRINT_H

#include "mpconn.h"

#include <stddef.h>

/* What one repr, JSON or parse may cost; a zero size takes its default. */
typedef struct mpci_print_limits {
    size_t max_bytes;  /* text of one repr or JSON (MPCONN_UNLIMITED: none) */
    size_t max_digits; /* decimal digits of one int, printed or parsed */
    int truncate;      /* at max_bytes: cut and succeed with 1 */
} mpci_print_limits;

#define MPCI_PRINT_MAX_DEFAULT ((size_t)64 << 20)
#define MPCI_INT_DIGITS_DEFAULT 4300
/* The defaults, written once: what a NULL limits and a zero field mean. */
#define MPCI_PRINT_LIMITS_DEFAULT                                                                  \
    ((mpci_print_limits){.max_bytes = MPCI_PRINT_MAX_DEFAULT,                                      \
                         .max_digits = MPCI_INT_DIGITS_DEFAULT,                                    \
                         .truncate = 0})

/* mpconn_value_repr_opts, _json_opts and _parse_opts with the limits
 * (NULL: the defaults) in place of an opts. */
int mpci_value_repr_limited(const mpconn_value *v, const mpci_print_limits *lim, char **out,
                            size_t *len, char *errmsg, size_t errlen);
int mpci_value_json_limited(const mpconn_value *v, const mpci_print_limits *lim, char **out,
                            size_t *len, char *errmsg, size_t errlen);
int mpci_value_parse_limited(const char *text, size_t len, const mpci_print_limits *lim,
                             mpconn_value **out, char *errmsg, size_t errlen);

#endif
