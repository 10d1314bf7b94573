/* Objects on connections: a pickle of plain values per message, encoded
 * and decoded by layer 1 with the connection's protocol and limits. */
#include "mpci.h"

#include <stdlib.h>

int mpconn_conn_send(mpconn_conn *c, const mpconn_value *v)
{
    void *buf;
    size_t len;
    int r = mpci_pickle_encode(v, mpci_conn_opts(c)->pickle_protocol, &buf, &len);
    if (r < 0) {
        mpci_conn_seterr(c, r, "send: cannot pickle the value: %s", mpconn_strerror(r));
        return r;
    }
    r = mpconn_conn_send_bytes(c, buf, len);
    free(buf);
    return r;
}

int mpconn_conn_recv(mpconn_conn *c, mpconn_value **out)
{
    void *buf;
    size_t len;
    int r = mpconn_conn_recv_bytes(c, &buf, &len, 0);
    if (r < 0)
        return r;
    /* The message was read whole, so a decoding error leaves the stream intact. */
    char msg[MPCI_ERRMSG_MAX];
    r = mpci_pickle_decode(buf, len, mpci_conn_opts(c), out, msg, sizeof msg);
    free(buf);
    if (r < 0)
        mpci_conn_seterr(c, r, "recv: %s", msg);
    return r;
}
