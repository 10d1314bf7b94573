/* Message splitting for async connections: the multiprocessing frame, a
 * delimiter, a count, or raw. FRAME mode is frame.c's message decoder (one
 * header parser in the tree); the splitter adds what a connection needs
 * around it: a message that lies whole inside the bytes fed is handed out
 * in place; only a message split across feeds is copied, into a buffer that
 * grows as its bytes arrive (never to what a header claims). */
#include "proto/split.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void mpci_split_init(mpci_split *s, uint64_t max)
{
    memset(s, 0, sizeof *s);
    s->mode = MPCI_SPLIT_FRAME;
    mpci_msgdec_init(&s->dec, max);
}

void mpci_split_free(mpci_split *s)
{
    mpci_msgdec_free(&s->dec);
    free(s->how);
    s->how = NULL;
    s->delivered = 0;
}

int mpci_split_set(mpci_split *s, int mode, const void *delim, size_t n)
{
    switch (mode) {
    case MPCI_SPLIT_FRAME:
    case MPCI_SPLIT_RAW:
        free(s->how);
        s->how = NULL;
        break;
    case MPCI_SPLIT_DELIM:
    case MPCI_SPLIT_COUNT:
        if (mode == MPCI_SPLIT_DELIM ? !delim || n == 0 || n > MPCI_SPLIT_DELIM_MAX : n == 0)
            return -EINVAL;
        if (!s->how && !(s->how = calloc(1, sizeof *s->how)))
            return -ENOMEM;
        if (mode == MPCI_SPLIT_DELIM) {
            memcpy(s->how->delim, delim, n);
            s->how->dlen = n;
        } else {
            s->how->count = n;
        }
        break;
    default: return -EINVAL;
    }
    if (mode != s->mode)
        mpci_msgdec_next(&s->dec); /* a partial message of another mode cannot continue */
    s->mode = (uint8_t)mode;
    return 0;
}

size_t mpci_split_partial(const mpci_split *s)
{
    const mpci_msgdec *d = &s->dec;
    if (s->delivered)
        return 0;
    return d->got + (d->in_body ? 0 : d->hdr.have);
}

/* Drops the message handed out last, and its buffer: an idle connection
 * holds no memory for its input. */
static void settle(mpci_split *s)
{
    if (!s->delivered)
        return;
    s->delivered = 0;
    mpci_msgdec_free(&s->dec);
}

/* DELIM and COUNT: keeps n more bytes of a message begun, the buffer
 * doubling from 256 but never past limit (when there is one). */
static int append(mpci_split *s, const uint8_t *p, size_t n, uint64_t limit)
{
    mpci_msgdec *d = &s->dec;
    if (n == 0)
        return 0;
    if (d->got + n > d->cap) {
        size_t cap = d->cap ? d->cap : 256;
        while (cap < d->got + n)
            cap *= 2;
        if (limit && cap > limit)
            cap = (size_t)limit > d->got + n ? (size_t)limit : d->got + n;
        uint8_t *b = realloc(d->data, cap);
        if (!b)
            return -ENOMEM;
        d->data = b;
        d->cap = cap;
    }
    memcpy(d->data + d->got, p, n);
    d->got += n;
    return 0;
}

/* The message collected in the buffer, len bytes of it; the decoder is
 * ready for the next one at once, the buffer goes at the next call. */
static int hand_out(mpci_split *s, size_t len, const uint8_t **msg, size_t *outlen)
{
    *msg = s->dec.data ? s->dec.data : (const uint8_t *)"";
    *outlen = len;
    s->delivered = 1;
    mpci_msgdec_next(&s->dec);
    return 1;
}

static int feed_frame(mpci_split *s, const uint8_t *p, size_t n, size_t *used, const uint8_t **msg,
                      size_t *len)
{
    mpci_msgdec *d = &s->dec;
    size_t off = 0;
    if (!d->in_body) {
        int r = mpci_msgdec_header(d, p, n, &off);
        *used = off;
        if (r <= 0)
            return r;
        if (d->len > SIZE_MAX / 2)
            return MPCONN_ERR_MSGSIZE;
        /* Whole in what was fed: no copy. */
        if (n - off >= d->len) {
            *msg = p + off;
            *len = (size_t)d->len;
            *used = off + (size_t)d->len;
            mpci_msgdec_next(d);
            return 1;
        }
    }
    while (off < n && d->got < d->len) {
        size_t want = (size_t)d->len - d->got, k = n - off < want ? n - off : want;
        if (!(d->data && p + off == d->data + d->got)) {
            /* Copied as it arrives, unless it was read where
             * mpci_split_direct pointed. */
            size_t room;
            uint8_t *dst = mpci_msgdec_room(d, k, &room);
            if (!dst) {
                *used = off;
                return -ENOMEM;
            }
            if (k > room)
                k = room;
            memcpy(dst, p + off, k);
        }
        d->got += k;
        off += k;
    }
    *used = off;
    if (d->got < d->len)
        return 0;
    return hand_out(s, d->got, msg, len);
}

/* Where the delimiter starts in hay, or -1. */
static long find(const uint8_t *hay, size_t n, const uint8_t *d, size_t dlen)
{
    if (n < dlen)
        return -1;
    for (size_t i = 0; i + dlen <= n;) {
        const uint8_t *c = memchr(hay + i, d[0], n - dlen + 1 - i);
        if (!c)
            return -1;
        i = (size_t)(c - hay);
        if (memcmp(c, d, dlen) == 0)
            return (long)i;
        i++;
    }
    return -1;
}

static int feed_delim(mpci_split *s, const uint8_t *p, size_t n, size_t *used, const uint8_t **msg,
                      size_t *len)
{
    mpci_msgdec *d = &s->dec;
    const mpci_split_how *h = s->how;
    uint64_t limit = d->max ? d->max + h->dlen : 0;
    if (d->got == 0) {
        long at = find(p, n, h->delim, h->dlen);
        if (at >= 0 && (!d->max || (uint64_t)at <= d->max)) {
            *msg = p;
            *len = (size_t)at;
            *used = (size_t)at + h->dlen;
            return 1;
        }
        if (at >= 0 || (d->max && n > limit)) {
            *used = 0;
            return MPCONN_ERR_MSGSIZE;
        }
    }
    /* The delimiter may straddle what was kept and what came: search the
     * last dlen-1 kept bytes again. */
    size_t from = d->got >= h->dlen ? d->got - (h->dlen - 1) : 0;
    size_t take = n;
    if (limit && d->got + take > limit)
        take = (size_t)(limit - d->got);
    int r = append(s, p, take, limit);
    if (r < 0) {
        *used = 0;
        return r;
    }
    long at = find(d->data + from, d->got - from, h->delim, h->dlen);
    if (at >= 0) {
        size_t end = from + (size_t)at; /* message length */
        size_t past = end + h->dlen;    /* kept bytes through the delimiter */
        if (d->max && end > d->max) {
            *used = 0;
            return MPCONN_ERR_MSGSIZE;
        }
        *used = take - (d->got - past);
        d->got = end;
        return hand_out(s, d->got, msg, len);
    }
    *used = take;
    if (limit && d->got >= limit)
        return MPCONN_ERR_MSGSIZE;
    return 0;
}

static int feed_count(mpci_split *s, const uint8_t *p, size_t n, size_t *used, const uint8_t **msg,
                      size_t *len)
{
    mpci_msgdec *d = &s->dec;
    const mpci_split_how *h = s->how;
    if (d->max && h->count > d->max) {
        *used = 0;
        return MPCONN_ERR_MSGSIZE;
    }
    if (d->got == 0 && n >= h->count) {
        *msg = p;
        *len = h->count;
        *used = h->count;
        return 1;
    }
    size_t take = h->count - d->got < n ? h->count - d->got : n;
    int r = append(s, p, take, h->count);
    *used = r < 0 ? 0 : take;
    if (r < 0)
        return r;
    return d->got == h->count ? hand_out(s, d->got, msg, len) : 0;
}

/* Everything but the common case below; not inlined into it, so that the
 * common case sets up no stack frame. */
__attribute__((noinline)) static int feed(mpci_split *s, const uint8_t *p, size_t n, size_t *used,
                                          const uint8_t **msg, size_t *len)
{
    settle(s);
    *used = 0;
    switch (s->mode) {
    case MPCI_SPLIT_FRAME: return feed_frame(s, p, n, used, msg, len);
    case MPCI_SPLIT_DELIM:
        if (n == 0)
            return 0;
        return feed_delim(s, p, n, used, msg, len);
    case MPCI_SPLIT_COUNT:
        if (n == 0)
            return 0;
        return feed_count(s, p, n, used, msg, len);
    default: /* RAW: whatever arrived, up to the limit at a time */
        if (n == 0)
            return 0;
        *msg = p;
        *len = s->dec.max && n > s->dec.max ? (size_t)s->dec.max : n;
        *used = *len;
        return 1;
    }
}

int mpci_split_feed(mpci_split *s, const uint8_t *p, size_t n, size_t *used, const uint8_t **msg,
                    size_t *len)
{
    /* The common case, a whole message with the short header at a message
     * boundary of FRAME mode: handed out where it lies, the decoder left as
     * it is. Any other (a limit to report, a header in pieces, a buffer to
     * drop) takes the steps of feed. */
    const mpci_msgdec *d = &s->dec;
    uint64_t hl;
    if (s->mode == MPCI_SPLIT_FRAME && !s->delivered && !d->in_body && d->hdr.have == 0 &&
        mpci_hdr_short(p, n, &hl) && n - 4 >= hl && (!d->max || hl <= d->max)) {
        *msg = p + 4;
        *len = (size_t)hl;
        *used = 4 + (size_t)hl;
        return 1;
    }
    return feed(s, p, n, used, msg, len);
}

uint8_t *mpci_split_direct(mpci_split *s, size_t *room)
{
    settle(s);
    mpci_msgdec *d = &s->dec;
    if (s->mode != MPCI_SPLIT_FRAME || !d->in_body)
        return NULL;
    size_t need = (size_t)d->len - d->got;
    if (need < 65536)
        return NULL;
    if (d->cap - d->got < 65536) {
        /* One read's worth first; once that much has come, to 16 times
         * what has arrived (a 1 MiB message in one step, not four copies):
         * a peer holds at most 16 times what it sent, never the claim. */
        size_t grow = d->got >= 65536 ? 15 * d->got : 65536;
        size_t target = d->got + (need < grow ? need : grow);
        uint8_t *b = realloc(d->data, target);
        if (!b)
            return NULL;
        d->data = b;
        d->cap = target;
    }
    *room = d->cap - d->got;
    if (*room > need)
        *room = need;
    return d->data + d->got;
}

uint8_t *mpci_split_take(mpci_split *s, const uint8_t *msg)
{
    mpci_msgdec *d = &s->dec;
    if (!s->delivered || !d->data || msg != d->data)
        return NULL;
    uint8_t *b = d->data;
    d->data = NULL;
    d->cap = 0;
    return b;
}
