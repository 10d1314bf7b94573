/* Objects on connections: a pickle of plain values per message, encoded
 * and decoded by layer 1 with the connection's protocol and limits. The
 * pickle is written behind room for its header in a buffer the connection
 * keeps, and read where it lies in the read-ahead buffer when it can be:
 * a small object costs no allocation for its bytes either way. */
#include "conn/conn_internal.h"
#include "proto/pickle.h"

#include <stdlib.h>

int mpconn_conn_send(mpconn_conn *c, const mpconn_value *v)
{
    uint8_t **buf;
    size_t *cap, len;
    /* The send buffer is the connection's: concurrent senders take turns
     * from encoding to the last byte written. */
    mpci_conn_lock(c);
    mpci_conn_scratch(c, &buf, &cap);
    int r = mpci_pickle_encode_into(v, mpci_conn_opts(c)->pickle_protocol, buf, cap, MPCI_HDR_MAX,
                                    &len);
    if (r < 0)
        mpci_conn_seterr(c, "send: cannot pickle the value: %s", mpconn_strerror(r));
    else
        r = mpci_conn_send_framed(c, *buf, len);
    /* A one-off large object should not pin its memory to the connection. */
    if (*cap > 1 << 20) {
        free(*buf);
        *buf = NULL;
        *cap = 0;
    }
    mpci_conn_unlock(c);
    return r;
}

int mpconn_conn_recv(mpconn_conn *c, mpconn_value **out)
{
    const uint8_t *p;
    size_t len;
    void *owned;
    int r = mpci_conn_recv_view(c, &p, &len, &owned);
    if (r < 0)
        return r;
    /* The message was read whole, so a decoding error leaves the stream intact. */
    char msg[MPCI_ERRMSG_MAX];
    r = mpci_pickle_decode(p, len, &mpci_conn_opts(c)->limits, out, msg, sizeof msg);
    free(owned);
    if (r < 0)
        mpci_conn_seterr(c, "recv: %s", msg);
    return r;
}
