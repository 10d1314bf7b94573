/* Error codes to text, and the helpers every module uses to record a
 * detailed message next to the code it returns. */
#include "mpci.h"

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
    case MPCONN_EEOF: return "end of file: the peer closed the connection";
    case MPCONN_EEOFMSG: return "got end of file during message";
    case MPCONN_EMSGSIZE: return "bad message length";
    case MPCONN_ESHORTBUF: return "buffer too short for the message";
    case MPCONN_EAUTH: return "authentication failed";
    case MPCONN_EAUTHPROTO: return "authentication protocol error";
    case MPCONN_ENOKEY: return "authkey on one side only";
    case MPCONN_EPROTO: return "malformed message header";
    case MPCONN_EBROKEN: return "connection broken by an earlier error";
    case MPCONN_ECLOSED: return "handle is closed";
    case MPCONN_ENOTREADABLE: return "connection is write-only";
    case MPCONN_ENOTWRITABLE: return "connection is read-only";
    case MPCONN_EADDR: return "bad address";
    case MPCONN_ENOTSUP: return "not available on this platform";
    case MPCONN_EADDRINUSE: return "address in use by a live socket";
    case MPCONN_EPEER: return "peer refused by policy";
    case MPCONN_EPICKLE: return "malformed pickle";
    case MPCONN_EREFUSED: return "pickle refused: it would import or call something";
    case MPCONN_ELIMIT: return "decoder limit exceeded";
    case MPCONN_ETYPE: return "value of the wrong type";
    case MPCONN_ESYNTAX: return "syntax error";
    case MPCONN_ERANGE: return "integer out of range";
    case MPCONN_ERECURSIVE: return "value contains itself";
    case MPCONN_EUNHASHABLE: return "unhashable value";
    default: break;
    }
    if (code < 0 && code > MPCONN_EBASE)
        return strerror(-code);
    return "unknown error";
}

int mpci_verr(char *dst, size_t cap, int code, const char *fmt, va_list ap)
{
    if (dst && cap)
        vsnprintf(dst, cap, fmt, ap);
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
