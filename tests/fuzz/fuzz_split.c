/* libFuzzer target for the message splitter of async connections: a peer's
 * byte stream cut by the multiprocessing frame, a delimiter, a count or raw,
 * the mode switching between messages as the input's script says. The
 * stream is cut twice: fed whole, and fed in pieces (sometimes read straight
 * into the splitter's buffer, sometimes with the buffer taken over by the
 * caller). Both cuttings must hand out the same messages and end the same
 * way, no call may stall with bytes left, and a message begun holds memory
 * in proportion to the bytes that came, never to a length a header claims.
 *
 * Input: step, flags, max, count, delimiter length and 4 delimiter bytes,
 * 2 bytes of mode script (2 bits per message, cycling), then the stream. */
#include "proto/split.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HEAD 11
#define MAX_MSGS 4096

typedef struct cut {
    size_t nmsg;
    size_t off[MAX_MSGS + 1]; /* message k is bytes[off[k]..off[k+1]) */
    uint8_t *bytes;           /* every message, concatenated */
    size_t nbytes, cap;
    size_t raw_from; /* messages from here on were cut in RAW mode */
    int end;         /* 0, or the error that ended the stream */
    size_t partial;  /* bytes of a message begun at the end, when no error ended it */
} cut;

typedef struct params {
    uint64_t max;
    size_t count, dlen;
    uint8_t delim[4];
    unsigned script;
} params;

static void keep(cut *c, const uint8_t *m, size_t len)
{
    if (c->nbytes + len > c->cap) {
        c->cap = (c->nbytes + len) * 2 + 64;
        c->bytes = realloc(c->bytes, c->cap);
        if (!c->bytes)
            abort();
    }
    if (len)
        memcpy(c->bytes + c->nbytes, m, len);
    c->nbytes += len;
    c->off[++c->nmsg] = c->nbytes;
}

/* RAW is where a script ends: what it hands out depends on how the bytes
 * came, so no later message could be counted alike in both cuttings. */
static int next_mode(mpci_split *s, const params *pr, size_t k)
{
    if (s->mode == MPCI_SPLIT_RAW)
        return 0;
    int mode = (int)((pr->script >> (2 * (k % 8))) & 3);
    if (mode == MPCI_SPLIT_DELIM)
        return mpci_split_set(s, mode, pr->delim, pr->dlen);
    return mpci_split_set(s, mode, NULL, mode == MPCI_SPLIT_COUNT ? pr->count : 0);
}

/* A message begun holds what came, doubled, or a read's worth ahead
 * (mpci_split_direct), or 16 times what came: never what was claimed. */
static void check_memory(const mpci_split *s)
{
    const mpci_msgdec *d = &s->dec;
    size_t bound = 2 * d->got + 256;
    if (bound < 16 * d->got)
        bound = 16 * d->got;
    if (d->cap > bound + 65536)
        abort();
}

static void run(const uint8_t *p, size_t n, size_t step, int direct, int take, const params *pr,
                cut *c)
{
    mpci_split s;
    mpci_split_init(&s, pr->max);
    c->raw_from = MAX_MSGS;
    if (next_mode(&s, pr, 0) < 0)
        abort();
    size_t pos = 0;
    uint8_t *scratch = NULL;
    while (pos < n && !c->end) {
        size_t piece = n - pos < step ? n - pos : step, off = 0;
        while (off < piece && !c->end) {
            const uint8_t *at = p + pos + off;
            size_t avail = piece - off, room;
            uint8_t *dst = direct ? mpci_split_direct(&s, &room) : NULL;
            if (dst) {
                /* Read into the splitter's buffer, as a connection does. */
                avail = avail < room ? avail : room;
                memcpy(dst, at, avail);
                at = dst;
            }
            size_t used, len;
            const uint8_t *msg;
            int r = mpci_split_feed(&s, at, avail, &used, &msg, &len);
            if (used > avail)
                abort();
            off += used;
            if (r < 0) {
                c->end = r;
                break;
            }
            if (r == 0) {
                if (used != avail)
                    abort(); /* more wanted, yet bytes were left */
                check_memory(&s);
                continue;
            }
            if (used == 0)
                abort(); /* a message from no bytes: a connection would spin */
            if (pr->max && len > pr->max)
                abort();
            if (c->nmsg == MAX_MSGS)
                goto out;
            if (s.mode == MPCI_SPLIT_RAW && c->raw_from == MAX_MSGS)
                c->raw_from = c->nmsg;
            keep(c, msg, len);
            if (take) {
                free(scratch);
                scratch = mpci_split_take(&s, msg);
            }
            if (next_mode(&s, pr, c->nmsg) < 0)
                abort();
        }
        pos += off;
    }
    if (!c->end)
        c->partial = mpci_split_partial(&s);
out:
    free(scratch);
    mpci_split_free(&s);
}

static int same(const cut *a, const cut *b)
{
    if (a->end != b->end || a->raw_from != b->raw_from)
        return 0;
    if (a->nmsg == MAX_MSGS || b->nmsg == MAX_MSGS)
        return 1; /* cut short alike: nothing more to compare */
    if (a->partial != b->partial || a->nbytes != b->nbytes)
        return 0;
    if (a->nbytes && memcmp(a->bytes, b->bytes, a->nbytes) != 0)
        return 0;
    size_t upto = a->raw_from < a->nmsg ? a->raw_from : a->nmsg;
    if (upto > b->nmsg)
        return 0;
    for (size_t k = 0; k <= upto; k++)
        if (a->off[k] != b->off[k])
            return 0;
    return a->raw_from < a->nmsg || a->nmsg == b->nmsg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEAD)
        return 0;
    params pr = {0};
    size_t step = data[0] ? data[0] : 1;
    uint8_t flags = data[1];
    pr.max = flags & 1 ? 1 + (uint64_t)data[2] * (flags & 8 ? 97 : 1) : 0;
    pr.count = 1 + (size_t)(data[3] & 0x7f) * (data[3] & 0x80 ? 37 : 1);
    pr.dlen = 1 + data[4] % 4;
    memcpy(pr.delim, data + 5, 4);
    pr.script = (unsigned)data[9] | (unsigned)data[10] << 8;
    data += HEAD;
    size -= HEAD;

    cut *whole = calloc(1, sizeof *whole), *pieces = calloc(1, sizeof *pieces);
    if (!whole || !pieces)
        abort();
    run(data, size, size ? size : 1, 0, 0, &pr, whole);
    run(data, size, step, flags & 2, flags & 4, &pr, pieces);
    int ok = same(whole, pieces);
    free(whole->bytes);
    free(pieces->bytes);
    free(whole);
    free(pieces);
    if (!ok)
        abort();
    return 0;
}
