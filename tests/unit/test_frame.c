/* Framing: headers against CPython's vectors, and the decoders fed every
 * split of the stream. */
#include "proto/frame.h"
#include "testlib.h"

static char **read_lines(const char *file, size_t *n)
{
    char *all = testlib_read_file(testlib_data_path(file), NULL);
    char **lines = NULL;
    *n = 0;
    for (char *save = NULL, *l = strtok_r(all, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        lines = realloc(lines, (*n + 1) * sizeof *lines);
        lines[(*n)++] = strdup(l);
    }
    free(all);
    return lines;
}

static void free_lines(char **lines, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

TEST(header_vectors)
{
    size_t n;
    char **lines = read_lines("frames.jsonl", &n);
    CHECK(n >= 10);
    for (size_t i = 0; i < n; i++) {
        long long plen = testlib_json_int(lines[i], "payload_len");
        char *wire = testlib_json_str(lines[i], "wire_hex");
        char *hdr = testlib_json_str(lines[i], "header_hex");
        size_t wlen, hlen_expect;
        unsigned char *expect = testlib_unhex(wire ? wire : hdr, &wlen);
        hlen_expect = wire ? wlen - (size_t)plen : wlen;
        uint8_t h[MPCI_HDR_MAX];
        size_t hl = mpci_frame_header(h, (uint64_t)plen);
        CHECK_INT(hl, hlen_expect);
        CHECK_MEM(h, expect, hl);
        /* and back */
        mpci_hdr d = {0};
        size_t used;
        uint64_t len;
        CHECK_INT(mpci_hdr_feed(&d, expect, wlen, &used, &len), 1);
        CHECK_INT(used, hl);
        CHECK_INT(len, plen);
        free(expect);
        free(wire);
        free(hdr);
    }
    free_lines(lines, n);
}

TEST(header_long_form_accepted_for_small)
{
    /* Readers accept the 8-byte form at any size. */
    const uint8_t w[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 3};
    mpci_hdr d = {0};
    size_t used;
    uint64_t len;
    CHECK_INT(mpci_hdr_feed(&d, w, sizeof w, &used, &len), 1);
    CHECK_INT(len, 3);
}

TEST(header_negative_rejected)
{
    const uint8_t w[] = {0xff, 0xff, 0xff, 0xfe};
    mpci_hdr d = {0};
    size_t used;
    uint64_t len;
    CHECK_INT(mpci_hdr_feed(&d, w, sizeof w, &used, &len), MPCONN_ERR_PROTO);
}

TEST(header_every_split)
{
    const uint8_t w[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0};
    for (size_t cut = 0; cut <= sizeof w; cut++) {
        mpci_hdr d = {0};
        size_t used;
        uint64_t len = 0;
        int r = mpci_hdr_feed(&d, w, cut, &used, &len);
        CHECK_INT(used, cut);
        if (cut < sizeof w) {
            CHECK_INT(r, 0);
            r = mpci_hdr_feed(&d, w + cut, sizeof w - cut, &used, &len);
            CHECK_INT(used, sizeof w - cut);
        }
        CHECK_INT(r, 1);
        CHECK_INT(len, 1ull << 32);
    }
}

/* Feeds a stream of several frames cut at positions a and b. */
static void feed_split(const uint8_t *s, size_t n, size_t a, size_t b, const size_t *lens,
                       size_t nmsg)
{
    mpci_msgdec d;
    mpci_msgdec_init(&d, 0);
    size_t pieces[3][2] = {{0, a}, {a, b}, {b, n}};
    size_t got = 0, pos_expect = 0;
    for (int k = 0; k < 3; k++) {
        const uint8_t *p = s + pieces[k][0];
        size_t left = pieces[k][1] - pieces[k][0];
        while (left > 0 || (k == 2 && got < nmsg && d.in_body && d.len == 0)) {
            size_t used;
            int r = mpci_msgdec_feed(&d, p, left, &used);
            CHECK(r >= 0);
            p += used;
            left -= used;
            if (r == 1) {
                size_t len;
                uint8_t *m = mpci_msgdec_take(&d, &len);
                CHECK(got < nmsg);
                CHECK_INT(len, lens[got]);
                size_t hl = 4;
                CHECK_MEM(m, s + pos_expect + hl, len);
                pos_expect += hl + len;
                got++;
                free(m);
            }
            if (used == 0 && r == 0)
                break;
        }
    }
    CHECK_INT(got, nmsg);
    mpci_msgdec_free(&d);
}

TEST(msgdec_every_split)
{
    /* Three frames: 5 bytes, empty, 3 bytes. */
    const uint8_t s[] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o', 0,
                         0, 0, 0, 0, 0,   0,   3,   'a', 'b', 'c'};
    const size_t lens[] = {5, 0, 3};
    size_t n = sizeof s;
    for (size_t a = 0; a <= n; a++)
        for (size_t b = a; b <= n; b++)
            feed_split(s, n, a, b, lens, 3);
}

TEST(msgdec_limit_before_allocation)
{
    /* A header claiming 2^62 bytes fails on the header alone. */
    const uint8_t w[] = {0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0};
    mpci_msgdec d;
    mpci_msgdec_init(&d, 256);
    size_t used;
    CHECK_INT(mpci_msgdec_feed(&d, w, sizeof w, &used), MPCONN_ERR_MSGSIZE);
    CHECK(d.data == NULL);
    mpci_msgdec_free(&d);
}

TEST(msgdec_grows_with_arrival)
{
    /* No limit, huge claim: memory follows the bytes that came, not the claim. */
    const uint8_t w[] = {0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 'x', 'y'};
    mpci_msgdec d;
    mpci_msgdec_init(&d, 0);
    size_t used;
    CHECK_INT(mpci_msgdec_feed(&d, w, sizeof w, &used), 0);
    CHECK_INT(used, sizeof w);
    CHECK_INT(d.got, 2);
    CHECK(d.cap <= 64);
    mpci_msgdec_free(&d);
}

TESTLIB_MAIN
