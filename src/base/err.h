/* Error codes and the detailed messages that travel beside them: every
 * layer returns a code and writes its reason into a caller's buffer. */
#ifndef MPCI_BASE_ERR_H
#define MPCI_BASE_ERR_H

#include "mpconn.h"

#include <stdarg.h>
#include <stddef.h>

#define MPCI_ERRMSG_MAX 256

/* Formats into dst (capacity cap, may be NULL/0) and returns code, so that
 * "return mpci_err(buf, n, code, ...)" both records and reports. */
int mpci_err(char *dst, size_t cap, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int mpci_verr(char *dst, size_t cap, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
/* The same behind a prefix (may be NULL): the one helper the modules'
 * own fail() functions build on. */
int mpci_verr_prefixed(char *dst, size_t cap, int code, const char *prefix, const char *fmt,
                       va_list ap) __attribute__((format(printf, 5, 0)));
void mpci_copy_msg(char *dst, size_t cap, const char *src);

#endif
