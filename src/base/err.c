/* Error codes to text, and the helpers every module uses to record a
 * detailed message next to the code it returns. */
#define _GNU_SOURCE /* strerrorname_np */
#include "base/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *mpconn_version(void)
{
    return MPCONN_VERSION_STRING;
}

const char *mpconn_strerror(int code)
{
    switch (code) {
    case 0: return "success";
#define TEXT(name, value, text)                                                                    \
    case MPCONN_##name: return text;
        MPCONN_ERROR_LIST(TEXT)
#undef TEXT
    default: break;
    }
    if (code < 0 && code > MPCONN_ERR_BASE)
        return strerror(-code);
    return "unknown error";
}

#if !(defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32)))
/* Where the C library cannot name an errno: the ones the library returns. */
static const char *errno_name(int e)
{
    switch (e) {
#define NAME(e)                                                                                    \
    case e: return #e;
        NAME(EACCES)
        NAME(EADDRINUSE)
        NAME(EADDRNOTAVAIL)
        NAME(EAGAIN)
        NAME(EBADF)
        NAME(ECONNREFUSED)
        NAME(ECONNRESET)
        NAME(EINTR)
        NAME(EINVAL)
        NAME(EIO)
        NAME(ENOBUFS)
        NAME(ENOENT)
        NAME(ENOMEM)
        NAME(ENOTSUP)
        NAME(EPIPE)
        NAME(ETIMEDOUT)
#undef NAME
    default: return NULL;
    }
}
#else
static const char *errno_name(int e)
{
    return strerrorname_np(e);
}
#endif

const char *mpconn_errname(int code)
{
    switch (code) {
    case 0: return "0";
#define NAME(name, value, text)                                                                    \
    case MPCONN_##name: return "MPCONN_" #name;
        MPCONN_ERROR_LIST(NAME)
#undef NAME
    default: break;
    }
    const char *n = code < 0 && code > MPCONN_ERR_BASE ? errno_name(-code) : NULL;
    return n ? n : "UNKNOWN";
}

int mpci_verr(char *dst, size_t cap, int code, const char *fmt, va_list ap)
{
    return mpci_verr_prefixed(dst, cap, code, NULL, fmt, ap);
}

int mpci_verr_prefixed(char *dst, size_t cap, int code, const char *prefix, const char *fmt,
                       va_list ap)
{
    if (!dst || !cap)
        return code;
    size_t n = 0;
    if (prefix) {
        int k = snprintf(dst, cap, "%s", prefix);
        if (k < 0 || (size_t)k >= cap)
            return code;
        n = (size_t)k;
    }
    vsnprintf(dst + n, cap - n, fmt, ap);
    return code;
}

int mpci_err(char *dst, size_t cap, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mpci_verr(dst, cap, code, fmt, ap);
    va_end(ap);
    return code;
}

void mpci_copy_msg(char *dst, size_t cap, const char *src)
{
    if (dst && cap)
        snprintf(dst, cap, "%s", src);
}
