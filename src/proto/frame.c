/* Message framing of multiprocessing.connection, without I/O: the length
 * header (4-byte signed big-endian, or -1 then 8 bytes) and decoders that
 * accept the stream in any split. */
#include "proto/frame.h"
#include "base/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

size_t mpci_frame_header(uint8_t out[MPCI_HDR_MAX], uint64_t len)
{
    if (len <= 0x7fffffff) {
        for (int i = 0; i < 4; i++)
            out[i] = (uint8_t)(len >> (24 - 8 * i));
        return 4;
    }
    memset(out, 0xff, 4);
    for (int i = 0; i < 8; i++)
        out[4 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 12;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int mpci_hdr_feed(mpci_hdr *h, const uint8_t *p, size_t n, size_t *used, uint64_t *len)
{
    /* Nearly every header arrives whole with its message: decode it where
     * it lies, without the byte-wise collection below. */
    if (h->have == 0 && mpci_hdr_short(p, n, len)) {
        memcpy(h->buf, p, 4);
        h->have = 4;
        *used = 4;
        return 1;
    }
    size_t take = 0;
    for (;;) {
        size_t need = h->have < 4 ? 4 : MPCI_HDR_MAX;
        size_t k = need - h->have;
        if (k > n - take)
            k = n - take;
        memcpy(h->buf + h->have, p + take, k);
        h->have += (uint32_t)k;
        take += k;
        *used = take;
        if (h->have < need)
            return 0;
        if (need == 4) {
            uint32_t v = (uint32_t)be(h->buf, 4);
            if (v == 0xffffffffu)
                continue; /* the 8-byte length follows */
            if (v & 0x80000000u)
                return MPCONN_ERR_PROTO;
            *len = v;
            return 1;
        }
        *len = be(h->buf + 4, 8);
        return 1;
    }
}

void mpci_msgdec_init(mpci_msgdec *d, uint64_t max)
{
    memset(d, 0, sizeof *d);
    d->max = max;
}

void mpci_msgdec_next(mpci_msgdec *d)
{
    d->got = 0;
    d->in_body = 0;
    mpci_hdr_reset(&d->hdr);
}

void mpci_msgdec_free(mpci_msgdec *d)
{
    free(d->data);
    d->data = NULL;
    d->cap = 0;
    mpci_msgdec_next(d);
}

int mpci_msgdec_header(mpci_msgdec *d, const uint8_t *p, size_t n, size_t *used)
{
    int r = mpci_hdr_feed(&d->hdr, p, n, used, &d->len);
    if (r <= 0)
        return r;
    if (d->max && d->len > d->max)
        return MPCONN_ERR_MSGSIZE;
    /* The header's bytes stay counted in hdr.have until the message is
     * done (mpconn_reader_pending counts them). */
    d->in_body = 1;
    d->got = 0;
    return 1;
}

uint8_t *mpci_msgdec_room(mpci_msgdec *d, size_t first, size_t *room)
{
    if (!d->data || d->got == d->cap) {
        size_t cap = d->cap < first ? first : d->cap > SIZE_MAX / 2 ? SIZE_MAX : d->cap * 2;
        if (cap > d->len)
            cap = (size_t)d->len;
        uint8_t *nd = mpci_resize(d->data, NULL, 0, cap, 1);
        if (!nd)
            return NULL;
        d->data = nd;
        d->cap = cap;
    }
    size_t end = d->cap < d->len ? d->cap : (size_t)d->len;
    *room = end - d->got;
    return d->data + d->got;
}

int mpci_msgdec_append(mpci_msgdec *d, const uint8_t *p, size_t n)
{
    if (n > d->cap - d->got) {
        uint8_t *nd = mpci_resize(d->data, NULL, 0, d->got + n, 1);
        if (!nd)
            return -ENOMEM;
        d->data = nd;
        d->cap = d->got + n;
    }
    memcpy(d->data + d->got, p, n);
    d->got += n;
    return 0;
}

int mpci_msgdec_feed(mpci_msgdec *d, const uint8_t *p, size_t n, size_t *used)
{
    size_t off = 0;
    *used = 0;
    if (!d->in_body) {
        int r = mpci_msgdec_header(d, p, n, &off);
        *used = off;
        if (r <= 0)
            return r;
    }
    while (d->got < d->len && off < n) {
        size_t room;
        uint8_t *dst = mpci_msgdec_room(d, 64, &room);
        if (!dst)
            return -ENOMEM;
        size_t k = n - off < room ? n - off : room;
        memcpy(dst, p + off, k);
        d->got += k;
        off += k;
        *used = off;
    }
    return d->got == d->len ? 1 : 0;
}

uint8_t *mpci_msgdec_take(mpci_msgdec *d, size_t *len)
{
    uint8_t *data = d->data ? d->data : malloc(1);
    *len = d->got;
    d->data = NULL;
    d->cap = 0;
    mpci_msgdec_next(d);
    return data;
}
