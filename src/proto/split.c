/* Message splitting for async connections: the multiprocessing frame, a
 * delimiter, a count, or raw. A message that lies whole inside the bytes fed
 * is handed out in place; only a message split across feeds is copied, into
 * a buffer that grows as its bytes arrive (never to what a header claims). */
#include "proto/split.h"
#include "proto/frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void mpci_split_init(mpci_split *s, uint64_t max)
{
    memset(s, 0, sizeof *s);
    s->mode = MPCI_SPLIT_FRAME;
    s->max = max;
}

void mpci_split_free(mpci_split *s)
{
    free(s->buf);
    s->buf = NULL;
    s->got = s->cap = 0;
}

int mpci_split_set(mpci_split *s, int mode, const void *delim, size_t n)
{
    switch (mode) {
    case MPCI_SPLIT_FRAME:
    case MPCI_SPLIT_RAW: break;
    case MPCI_SPLIT_DELIM:
        if (!delim || n == 0 || n > MPCI_SPLIT_DELIM_MAX)
            return -EINVAL;
        memcpy(s->delim, delim, n);
        s->dlen = n;
        break;
    case MPCI_SPLIT_COUNT:
        if (n == 0)
            return -EINVAL;
        s->count = n;
        break;
    default: return -EINVAL;
    }
    if (mode != s->mode) {
        /* A partial message of another mode cannot continue in this one. */
        s->hhave = 0;
        s->in_body = 0;
        s->got = 0;
    }
    s->mode = mode;
    return 0;
}

size_t mpci_split_partial(const mpci_split *s)
{
    if (s->delivered)
        return 0;
    return s->hhave + s->got;
}

/* Drops the message handed out last, and its buffer: an idle connection
 * holds no memory for its input. */
static void settle(mpci_split *s)
{
    if (!s->delivered)
        return;
    s->delivered = 0;
    s->got = 0;
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
}

static int append(mpci_split *s, const uint8_t *p, size_t n, uint64_t limit)
{
    if (n == 0)
        return 0;
    if (s->got + n > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->got + n)
            cap *= 2;
        if (limit && cap > limit)
            cap = (size_t)limit > s->got + n ? (size_t)limit : s->got + n;
        uint8_t *b = realloc(s->buf, cap);
        if (!b)
            return -ENOMEM;
        s->buf = b;
        s->cap = cap;
    }
    if (p != s->buf + s->got)
        memcpy(s->buf + s->got, p, n);
    s->got += n;
    return 0;
}

static int hand_out(mpci_split *s, const uint8_t **msg, size_t *len)
{
    *msg = s->buf ? s->buf : (const uint8_t *)"";
    *len = s->got;
    s->delivered = 1;
    return 1;
}

static int feed_frame(mpci_split *s, const uint8_t *p, size_t n, size_t *used, const uint8_t **msg,
                      size_t *len)
{
    size_t off = 0;
    if (!s->in_body) {
        mpci_hdr h;
        memcpy(h.buf, s->hdr, sizeof h.buf);
        h.have = s->hhave;
        size_t u = 0;
        uint64_t want = 0;
        int r = mpci_hdr_feed(&h, p, n, &u, &want);
        off = u;
        if (r < 0) {
            *used = off;
            return r;
        }
        if (r == 0) {
            memcpy(s->hdr, h.buf, sizeof s->hdr);
            s->hhave = h.have;
            *used = n;
            return 0;
        }
        s->hhave = 0;
        if (s->max && want > s->max) {
            s->want = want; /* for the error message: the claim */
            *used = off;
            return MPCONN_ERR_MSGSIZE;
        }
        if (want > SIZE_MAX / 2) {
            *used = off;
            return MPCONN_ERR_MSGSIZE;
        }
        s->want = want;
        s->in_body = 1;
        /* Whole in what was fed: no copy. */
        if (n - off >= want) {
            *msg = p + off;
            *len = (size_t)want;
            *used = off + (size_t)want;
            s->in_body = 0;
            return 1;
        }
    }
    size_t need = (size_t)s->want - s->got;
    size_t take = n - off < need ? n - off : need;
    int r = append(s, p + off, take, s->want);
    if (r < 0) {
        *used = off;
        return r;
    }
    *used = off + take;
    if (s->got < s->want)
        return 0;
    s->in_body = 0;
    return hand_out(s, msg, len);
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
    uint64_t limit = s->max ? s->max + s->dlen : 0;
    if (s->got == 0) {
        long at = find(p, n, s->delim, s->dlen);
        if (at >= 0 && (!s->max || (uint64_t)at <= s->max)) {
            *msg = p;
            *len = (size_t)at;
            *used = (size_t)at + s->dlen;
            return 1;
        }
        if (at >= 0 || (s->max && n > limit)) {
            *used = 0;
            return MPCONN_ERR_MSGSIZE;
        }
    }
    /* The delimiter may straddle what was kept and what came: search the
     * last dlen-1 kept bytes again. */
    size_t from = s->got >= s->dlen ? s->got - (s->dlen - 1) : 0;
    size_t take = n;
    if (limit && s->got + take > limit)
        take = (size_t)(limit - s->got);
    int r = append(s, p, take, limit);
    if (r < 0) {
        *used = 0;
        return r;
    }
    long at = find(s->buf + from, s->got - from, s->delim, s->dlen);
    if (at >= 0) {
        size_t end = from + (size_t)at; /* message length */
        size_t past = end + s->dlen;    /* kept bytes through the delimiter */
        if (s->max && end > s->max) {
            *used = 0;
            return MPCONN_ERR_MSGSIZE;
        }
        *used = take - (s->got - past);
        s->got = end;
        return hand_out(s, msg, len);
    }
    *used = take;
    if (limit && s->got >= limit)
        return MPCONN_ERR_MSGSIZE;
    return 0;
}

static int feed_count(mpci_split *s, const uint8_t *p, size_t n, size_t *used, const uint8_t **msg,
                      size_t *len)
{
    if (s->max && s->count > s->max) {
        *used = 0;
        return MPCONN_ERR_MSGSIZE;
    }
    if (s->got == 0 && n >= s->count) {
        *msg = p;
        *len = s->count;
        *used = s->count;
        return 1;
    }
    size_t take = s->count - s->got < n ? s->count - s->got : n;
    int r = append(s, p, take, s->count);
    *used = r < 0 ? 0 : take;
    if (r < 0)
        return r;
    return s->got == s->count ? hand_out(s, msg, len) : 0;
}

int mpci_split_feed(mpci_split *s, const uint8_t *p, size_t n, size_t *used, const uint8_t **msg,
                    size_t *len)
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
        *len = s->max && n > s->max ? (size_t)s->max : n;
        *used = *len;
        return 1;
    }
}

uint8_t *mpci_split_direct(mpci_split *s, size_t *room)
{
    settle(s);
    if (s->mode != MPCI_SPLIT_FRAME || !s->in_body)
        return NULL;
    size_t need = (size_t)s->want - s->got;
    if (need < 65536)
        return NULL;
    /* Grow by what has arrived so far (doubling), never to the claim. */
    size_t grow = s->got > 65536 ? s->got : 65536;
    size_t target = s->got + (need < grow ? need : grow);
    if (target > s->cap) {
        uint8_t *b = realloc(s->buf, target);
        if (!b)
            return NULL;
        s->buf = b;
        s->cap = target;
    }
    *room = s->cap - s->got;
    if (*room > need)
        *room = need;
    return s->buf + s->got;
}
