/* The message splitter: every framing mode fed every split of its input,
 * limits, mode switches between messages, and partial messages at EOF. */
#include "testlib.h"

#include "mpconn.h"
#include "proto/split.h"

#include <errno.h>

typedef struct {
    char msgs[16][64];
    size_t lens[16];
    int n;
    int err;
} got;

/* Feeds data in pieces of the given sizes (cycled), collecting messages. */
static void feed_pieces(mpci_split *s, const uint8_t *data, size_t n, const size_t *sizes,
                        size_t nsizes, got *g)
{
    size_t off = 0, k = 0;
    while (off < n && !g->err) {
        size_t piece = sizes[k++ % nsizes];
        if (piece > n - off)
            piece = n - off;
        const uint8_t *p = data + off;
        size_t left = piece;
        for (;;) {
            size_t used;
            const uint8_t *msg;
            size_t len;
            int r = mpci_split_feed(s, p, left, &used, &msg, &len);
            CHECK(used <= left);
            p += used;
            left -= used;
            if (r < 0) {
                g->err = r;
                break;
            }
            if (r == 0) {
                CHECK_INT(left, 0);
                break;
            }
            CHECK(g->n < 16 && len < 64);
            memcpy(g->msgs[g->n], msg, len);
            g->lens[g->n++] = len;
        }
        off += piece;
    }
}

/* Every way to cut the input in two, and one byte at a time. */
static void every_split(int mode, const void *arg, size_t argn, uint64_t max, const char *input,
                        size_t n, const char **want, int nwant, int want_err)
{
    for (size_t cut = 0; cut <= n + 1; cut++) {
        mpci_split s;
        mpci_split_init(&s, max);
        CHECK_INT(mpci_split_set(&s, mode, arg, argn), 0);
        got g = {0};
        size_t sizes[2];
        size_t nsizes;
        if (cut <= n) {
            sizes[0] = cut ? cut : 1;
            sizes[1] = n;
            nsizes = 2;
        } else {
            sizes[0] = 1;
            nsizes = 1;
        }
        feed_pieces(&s, (const uint8_t *)input, n, sizes, nsizes, &g);
        CHECK_INT(g.err, want_err);
        if (!want_err) {
            CHECK_INT(g.n, nwant);
            for (int i = 0; i < nwant; i++) {
                CHECK_INT(g.lens[i], strlen(want[i]));
                CHECK_MEM(g.msgs[i], want[i], g.lens[i]);
            }
        }
        mpci_split_free(&s);
    }
}

TEST(frames_in_every_split)
{
    const char in[] = "\0\0\0\5hello\0\0\0\0\0\0\0\3abc\xff\xff\xff\xff\0\0\0\0\0\0\0\2hi";
    const char *want[] = {"hello", "", "abc", "hi"};
    every_split(MPCI_SPLIT_FRAME, NULL, 0, 0, in, sizeof in - 1, want, 4, 0);
}

TEST(frame_too_large_is_refused_before_any_body)
{
    const char in[] = "\0\0\0\5hello";
    every_split(MPCI_SPLIT_FRAME, NULL, 0, 4, in, sizeof in - 1, NULL, 0, MPCONN_ERR_MSGSIZE);
    /* Without a limit, a claim of 2^62 bytes is legal and allocates
     * nothing until bytes arrive. */
    mpci_split s;
    mpci_split_init(&s, 0);
    size_t used, len;
    const uint8_t *m;
    CHECK_INT(mpci_split_feed(&s, (const uint8_t *)"\xff\xff\xff\xff\x40\0\0\0\0\0\0\0", 12, &used,
                              &m, &len),
              0);
    CHECK_INT(used, 12);
    CHECK(s.cap == 0);
    CHECK_INT(mpci_split_feed(&s, (const uint8_t *)"ab", 2, &used, &m, &len), 0);
    CHECK(s.cap <= 256);
    mpci_split_free(&s);
    const char neg[] = "\x80\0\0\1";
    every_split(MPCI_SPLIT_FRAME, NULL, 0, 0, neg, sizeof neg - 1, NULL, 0, MPCONN_ERR_PROTO);
}

TEST(delimited_lines_in_every_split)
{
    const char in[] = "one\r\ntwo\r\n\r\nthree\r\n";
    const char *want[] = {"one", "two", "", "three"};
    every_split(MPCI_SPLIT_DELIM, "\r\n", 2, 0, in, sizeof in - 1, want, 4, 0);
    /* A delimiter whose first byte repeats inside it. */
    const char in2[] = "aXXXbXXcXXX";
    const char *want2[] = {"a", "bXXc"};
    every_split(MPCI_SPLIT_DELIM, "XXX", 3, 0, in2, sizeof in2 - 1, want2, 2, 0);
}

TEST(a_line_longer_than_the_limit_is_an_error)
{
    const char ok[] = "abcd\n";
    const char *want[] = {"abcd"};
    every_split(MPCI_SPLIT_DELIM, "\n", 1, 4, ok, sizeof ok - 1, want, 1, 0);
    const char bad[] = "abcde\n";
    every_split(MPCI_SPLIT_DELIM, "\n", 1, 4, bad, sizeof bad - 1, NULL, 0, MPCONN_ERR_MSGSIZE);
    /* Without any delimiter, the error comes once the limit is passed, not
     * at the end of the stream (nothing grows without bound). */
    mpci_split s;
    mpci_split_init(&s, 8);
    CHECK_INT(mpci_split_set(&s, MPCI_SPLIT_DELIM, "\n", 1), 0);
    int r = 0;
    for (int i = 0; i < 100 && r == 0; i++) {
        size_t used;
        const uint8_t *m;
        size_t len;
        r = mpci_split_feed(&s, (const uint8_t *)"xxx", 3, &used, &m, &len);
    }
    CHECK_INT(r, MPCONN_ERR_MSGSIZE);
    CHECK(s.cap <= 64);
    mpci_split_free(&s);
}

TEST(counted_messages_in_every_split)
{
    const char in[] = "abcdefghi";
    const char *want[] = {"abc", "def", "ghi"};
    every_split(MPCI_SPLIT_COUNT, NULL, 3, 0, in, sizeof in - 1, want, 3, 0);
}

TEST(raw_delivers_what_arrives)
{
    mpci_split s;
    mpci_split_init(&s, 4);
    CHECK_INT(mpci_split_set(&s, MPCI_SPLIT_RAW, NULL, 0), 0);
    size_t used, len;
    const uint8_t *m;
    CHECK_INT(mpci_split_feed(&s, (const uint8_t *)"abcdef", 6, &used, &m, &len), 1);
    CHECK_INT(len, 4); /* at most the limit at a time */
    CHECK_INT(used, 4);
    CHECK_INT(mpci_split_feed(&s, (const uint8_t *)"ef", 2, &used, &m, &len), 1);
    CHECK_INT(len, 2);
    CHECK_INT(mpci_split_partial(&s), 0);
    mpci_split_free(&s);
}

TEST(mode_switch_between_messages)
{
    /* A line, then 3 counted bytes, then a frame: as a text protocol that
     * announces a binary payload would do. */
    const uint8_t in[] = "LEN 3\nxyz\0\0\0\2ok";
    mpci_split s;
    mpci_split_init(&s, 0);
    CHECK_INT(mpci_split_set(&s, MPCI_SPLIT_DELIM, "\n", 1), 0);
    const uint8_t *p = in;
    size_t n = sizeof in - 1, used, len;
    const uint8_t *m;
    CHECK_INT(mpci_split_feed(&s, p, n, &used, &m, &len), 1);
    CHECK_INT(len, 5);
    CHECK_MEM(m, "LEN 3", 5);
    p += used, n -= used;
    CHECK_INT(mpci_split_set(&s, MPCI_SPLIT_COUNT, NULL, 3), 0);
    CHECK_INT(mpci_split_feed(&s, p, n, &used, &m, &len), 1);
    CHECK_MEM(m, "xyz", 3);
    p += used, n -= used;
    CHECK_INT(mpci_split_set(&s, MPCI_SPLIT_FRAME, NULL, 0), 0);
    CHECK_INT(mpci_split_feed(&s, p, n, &used, &m, &len), 1);
    CHECK_INT(len, 2);
    CHECK_MEM(m, "ok", 2);
    CHECK_INT(used, n);
    mpci_split_free(&s);
}

TEST(partial_message_is_known_at_eof)
{
    mpci_split s;
    mpci_split_init(&s, 0);
    size_t used, len;
    const uint8_t *m;
    CHECK_INT(mpci_split_partial(&s), 0);
    CHECK_INT(mpci_split_feed(&s, (const uint8_t *)"\0\0", 2, &used, &m, &len), 0);
    CHECK_INT(mpci_split_partial(&s), 2);
    CHECK_INT(mpci_split_feed(&s, (const uint8_t *)"\0\2o", 3, &used, &m, &len), 0);
    CHECK_INT(mpci_split_partial(&s), 1);
    CHECK_INT(mpci_split_feed(&s, (const uint8_t *)"k", 1, &used, &m, &len), 1);
    CHECK_INT(mpci_split_feed(&s, (const uint8_t *)"", 0, &used, &m, &len), 0);
    CHECK_INT(mpci_split_partial(&s), 0);
    CHECK(s.buf == NULL); /* an idle splitter holds no buffer */
    mpci_split_free(&s);
}

TEST(direct_reads_into_a_long_payload)
{
    mpci_split s;
    mpci_split_init(&s, 0);
    size_t used, len, room;
    const uint8_t *m;
    uint8_t hdr[4] = {0, 0x10, 0, 0}; /* 1 MiB */
    CHECK(mpci_split_direct(&s, &room) == NULL);
    CHECK_INT(mpci_split_feed(&s, hdr, 4, &used, &m, &len), 0);
    size_t total = 0;
    for (int i = 0; i < 100 && total < 1048576; i++) {
        uint8_t *dst = mpci_split_direct(&s, &room);
        uint8_t tmp[65536];
        size_t n;
        if (dst) {
            CHECK(room <= 1048576 - total);
            n = room;
            memset(dst, 'z', n);
        } else {
            dst = tmp;
            n = 1048576 - total < sizeof tmp ? 1048576 - total : sizeof tmp;
            memset(dst, 'z', n);
        }
        int r = mpci_split_feed(&s, dst, n, &used, &m, &len);
        CHECK_INT(used, n);
        total += n;
        if (r == 1) {
            CHECK_INT(len, 1048576);
            CHECK(m[0] == 'z' && m[len - 1] == 'z');
        }
    }
    CHECK_INT(total, 1048576);
    CHECK(s.cap <= 1048576);
    mpci_split_free(&s);
}

TEST(bad_settings)
{
    mpci_split s;
    mpci_split_init(&s, 0);
    CHECK_INT(mpci_split_set(&s, MPCI_SPLIT_DELIM, "", 0), -EINVAL);
    CHECK_INT(mpci_split_set(&s, MPCI_SPLIT_DELIM, "0123456789012345678901234567890123", 33),
              -EINVAL);
    CHECK_INT(mpci_split_set(&s, MPCI_SPLIT_COUNT, NULL, 0), -EINVAL);
    CHECK_INT(mpci_split_set(&s, 42, NULL, 0), -EINVAL);
    mpci_split_free(&s);
}

TESTLIB_MAIN
