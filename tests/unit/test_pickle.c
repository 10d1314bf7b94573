/* The pickle codec against CPython's own vectors (tests/data/pickle.jsonl),
 * plus the decoder's refusals, limits, recursion checks and deep input. */
#include "testlib.h"

#include "proto/pickle.h"
#include "proto/value_internal.h"

#include <math.h>
#include <time.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

/* A byte-string literal and its length (it may hold NULs). */
#define PK(lit) lit, sizeof(lit) - 1

typedef void (*row_fn)(const char *line, const char *name, const char *expect, int proto,
                       const unsigned char *pk, size_t pklen);

static int for_rows(row_fn fn)
{
    size_t len;
    char *data = testlib_read_file(testlib_data_path("pickle.jsonl"), &len);
    int n = 0;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        char *name = testlib_json_str(line, "name");
        char *expect = testlib_json_str(line, "expect");
        char *hex = testlib_json_str(line, "pickle_hex");
        int proto = (int)testlib_json_int(line, "protocol");
        size_t pklen;
        unsigned char *pk = testlib_unhex(hex ? hex : "", &pklen);
        fn(line, name, expect, proto, pk, pklen);
        free(pk);
        free(hex);
        free(expect);
        free(name);
        n++;
    }
    free(data);
    return n;
}

static mpconn_value *decode_ok(const void *p, size_t n)
{
    mpconn_value *v = NULL;
    char err[256] = "";
    int rc = mpci_pickle_decode(p, n, NULL, &v, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "decode failed: %d %s\n", rc, err);
    CHECK_INT(rc, 0);
    CHECK(v != NULL);
    return v;
}

/* v pickles (protocol proto) to exactly the wn bytes want, which decode to
 * a value equal to v. */
static void check_encodes_to(const mpconn_value *v, int proto, const void *want, size_t wn)
{
    void *out;
    size_t n;
    CHECK_INT(mpconn_value_encode(v, proto, &out, &n), 0);
    CHECK_INT(n, wn);
    CHECK_MEM(out, want, n);
    mpconn_value *w = decode_ok(out, n);
    CHECK(mpconn_value_equal(v, w));
    free(out);
    mpconn_value_unref(w);
}

static int decode_rc(const void *p, size_t n, const mpci_pickle_limits *o, char *err, size_t errlen)
{
    mpconn_value *v = NULL;
    int rc = mpci_pickle_decode(p, n, o, &v, err, errlen);
    if (rc == 0)
        mpconn_value_unref(v);
    else
        CHECK(v == NULL);
    return rc;
}

/* ------------------------------------------------------------- vectors */

static void row_decode(const char *line, const char *name, const char *expect, int proto,
                       const unsigned char *pk, size_t pklen)
{
    (void)proto;
    if (strcmp(expect, "value") != 0)
        return;
    mpconn_value *v = decode_ok(pk, pklen);
    char *want = testlib_json_str(line, "repr");
    char *got = NULL;
    size_t glen;
    CHECK_INT(mpconn_value_repr(v, &got, &glen), 0);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "%s/%d: repr %s != %s\n", name, proto, got, want);
    CHECK_STR(got, want);
    free(got);
    free(want);
    mpconn_value_unref(v);
}

TEST(vectors_decode)
{
    CHECK(for_rows(row_decode) > 400);
}

/* Rows whose CPython pickle we do not reproduce byte for byte, with why:
 * set iteration order in CPython follows string hashes, ours insertion. */
static const char *const known_diff[] = {NULL};

static int mismatches;

static void row_reencode(const char *line, const char *name, const char *expect, int proto,
                         const unsigned char *pk, size_t pklen)
{
    (void)line;
    if (strcmp(expect, "value") != 0 || proto < 2)
        return;
    mpconn_value *v = decode_ok(pk, pklen);
    void *out;
    size_t olen;
    CHECK_INT(mpconn_value_encode(v, proto, &out, &olen), 0);
    if (olen != pklen || memcmp(out, pk, pklen) != 0) {
        int known = 0;
        for (size_t i = 0; known_diff[i]; i++)
            if (!strcmp(known_diff[i], name))
                known = 1;
        if (!known) {
            fprintf(stderr, "differs from CPython: %s protocol %d\n", name, proto);
            mismatches++;
        }
    }
    /* Whatever the bytes, they must mean the same value. */
    mpconn_value *w = decode_ok(out, olen);
    if (strcmp(name, "float_nan") != 0) /* nan != nan, as in Python */
        CHECK(mpconn_value_equal(v, w));
    free(out);
    mpconn_value_unref(w);
    mpconn_value_unref(v);
}

TEST(vectors_reencode_identical)
{
    mismatches = 0;
    for_rows(row_reencode);
    CHECK_INT(mismatches, 0);
}

static void row_refuse(const char *line, const char *name, const char *expect, int proto,
                       const unsigned char *pk, size_t pklen)
{
    (void)line;
    (void)proto;
    if (strcmp(expect, "refuse") != 0)
        return;
    static const char *const names[][2] = {
        {"os_system", "os.system"},
        {"eval_reduce", "__builtin__.eval"},
        {"ordered_dict", "collections.OrderedDict"},
        {"datetime", "datetime.datetime"},
        {"decimal", "decimal.Decimal"},
        {"complex", "builtins.complex"},
        {"exception", "builtins.ValueError"},
    };
    const char *want = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(names[i][0], name))
            want = names[i][1];
    CHECK(want != NULL);
    char err[256] = "";
    CHECK_INT(decode_rc(pk, pklen, NULL, err, sizeof err), MPCONN_ERR_REFUSED);
    if (!strstr(err, want))
        fprintf(stderr, "%s: message \"%s\" lacks %s\n", name, err, want);
    CHECK(strstr(err, want) != NULL);
}

TEST(vectors_refuse)
{
    for_rows(row_refuse);
}

static void row_error(const char *line, const char *name, const char *expect, int proto,
                      const unsigned char *pk, size_t pklen)
{
    (void)line;
    (void)proto;
    if (strcmp(expect, "error") != 0)
        return;
    char err[256] = "";
    int rc = decode_rc(pk, pklen, NULL, err, sizeof err);
    CHECK_INT(rc, MPCONN_ERR_PICKLE);
    CHECK(err[0] != 0);
    (void)name;
}

TEST(vectors_error)
{
    for_rows(row_error);
}

static void row_truncate(const char *line, const char *name, const char *expect, int proto,
                         const unsigned char *pk, size_t pklen)
{
    (void)line;
    (void)name;
    (void)proto;
    if (strcmp(expect, "value") != 0)
        return;
    for (size_t n = 0; n < pklen; n++) {
        /* A copy of exactly n bytes, so ASan sees any read past the end. */
        unsigned char *cut = malloc(n ? n : 1);
        memcpy(cut, pk, n);
        char err[256];
        int rc = decode_rc(cut, n, NULL, err, sizeof err);
        CHECK(rc == MPCONN_ERR_PICKLE);
        free(cut);
        if (pklen > 4000 && n > 64)
            n += 997; /* big vectors: a sample of the cut points */
    }
}

TEST(truncation_every_length)
{
    for_rows(row_truncate);
}

/* -------------------------------------------------------------- messages */

TEST(error_messages)
{
    char err[256];
    CHECK_INT(decode_rc(PK("\x80\x04\xff."), NULL, err, sizeof err), MPCONN_ERR_PICKLE);
    CHECK(strstr(err, "0xff") && strstr(err, "offset 2"));
    CHECK_INT(decode_rc(PK("\x80\x04N.N"), NULL, err, sizeof err), MPCONN_ERR_PICKLE);
    CHECK(strstr(err, "trailing"));
    CHECK_INT(decode_rc(PK("\x80\x04h\x07."), NULL, err, sizeof err), MPCONN_ERR_PICKLE);
    CHECK(strstr(err, "memo"));
    CHECK_INT(decode_rc(PK("\x80\x04"
                           "e."),
                        NULL, err, sizeof err),
              MPCONN_ERR_PICKLE);
    CHECK(strstr(err, "MARK"));
    CHECK_INT(decode_rc(PK("\x80\x04"
                           "a."),
                        NULL, err, sizeof err),
              MPCONN_ERR_PICKLE);
    CHECK(strstr(err, "underflow"));
    CHECK_INT(decode_rc(PK("\x80\x04\x8c\x02\xc3\x28."), NULL, err, sizeof err), MPCONN_ERR_PICKLE);
    CHECK(strstr(err, "UTF-8"));
    /* A surrogate's bytes cut short, or a code point above U+10FFFF, are
     * not even surrogatepass UTF-8. */
    CHECK_INT(decode_rc(PK("\x80\x04\x8c\x02\xed\xa0."), NULL, err, sizeof err), MPCONN_ERR_PICKLE);
    CHECK_INT(decode_rc(PK("\x80\x04\x8c\x04\xf4\x90\x80\x80."), NULL, err, sizeof err),
              MPCONN_ERR_PICKLE);
    CHECK_INT(decode_rc(PK("\x80\x04}]K\x01s."), NULL, err, sizeof err), MPCONN_ERR_UNHASHABLE);
    CHECK_INT(decode_rc(PK("\x80\x04\x8f(]\x90."), NULL, err, sizeof err), MPCONN_ERR_UNHASHABLE);
}

TEST(huge_lengths_fail_fast)
{
    char err[256];
    /* BINUNICODE8 claiming 2^62 bytes: an error, not an allocation. */
    CHECK_INT(
        decode_rc(PK("\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x40x."), NULL, err, sizeof err),
        MPCONN_ERR_PICKLE);
    CHECK_INT(decode_rc(PK("\x80\x04\x8b\xff\xff\xff\x7f."), NULL, err, sizeof err),
              MPCONN_ERR_PICKLE);
    CHECK_INT(decode_rc(PK("\x80\x04X\xff\xff\xff\xff."), NULL, err, sizeof err),
              MPCONN_ERR_PICKLE);
    CHECK_INT(decode_rc(PK("\x80\x04r\xff\xff\xff\xff"
                           "N."),
                        NULL, err, sizeof err),
              MPCONN_ERR_PICKLE);
}

TEST(refused_opcodes)
{
    static const char *const cases[][2] = {
        {"\x80\x04N\x85}b.", "BUILD"},
        {"\x80\x04(ios\nsystem\n.", "os.system"},
        {"\x80\x04"
         "P1\n.",
         "PERSID"},
        {"\x80\x04\x82\x01.", "EXT1"},
        {"\x80\x05\x97.", "NEXT_BUFFER"},
        {"\x80\x04"
         "cos\nsystem\n.",
         "GLOBAL os.system"},
        {"\x80\x04\x8c\x02os\x8c\x06system\x93.", "STACK_GLOBAL os.system"},
        {"\x80\x04N)R.", "REDUCE"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        CHECK_INT(decode_rc(cases[i][0], strlen(cases[i][0]), NULL, err, sizeof err),
                  MPCONN_ERR_REFUSED);
        if (!strstr(err, cases[i][1]))
            fprintf(stderr, "\"%s\" lacks \"%s\"\n", err, cases[i][1]);
        CHECK(strstr(err, cases[i][1]) != NULL);
    }
    /* A class object itself is not a plain value, even an allowed one. */
    char err[256];
    CHECK_INT(decode_rc(PK("\x80\x02"
                           "c__builtin__\nset\n."),
                        NULL, err, sizeof err),
              MPCONN_ERR_REFUSED);
    CHECK_INT(decode_rc(PK("\x80\x02]c__builtin__\nset\na."), NULL, err, sizeof err),
              MPCONN_ERR_REFUSED);
    /* An allowed callable with arguments of the wrong kind. */
    CHECK_INT(decode_rc(PK("\x80\x02"
                           "c__builtin__\nset\nK\x01\x85R."),
                        NULL, err, sizeof err),
              MPCONN_ERR_REFUSED);
}

/* ---------------------------------------------------------- old opcodes */

TEST(protocol0_text_forms)
{
    mpconn_value *v = decode_ok(PK("I01\n."));
    CHECK(mpconn_value_type(v) == MPCONN_BOOL);
    mpconn_value_unref(v);
    v = decode_ok(PK("I-123456789012\n."));
    int64_t i;
    CHECK_INT(mpconn_value_get_int(v, &i), 0);
    CHECK_INT(i, -123456789012LL);
    mpconn_value_unref(v);
    v = decode_ok(PK("L-1000000000000000000000000000000L\n."));
    mpconn_value *big =
        decode_ok(PK("\x80\x02\x8a\x0d\x00\x00\x00\xc0\x15\x12\x8b\xb9\x2f\x63\xd3\x60\xf3."));
    CHECK(mpconn_value_equal(v, big));
    mpconn_value_unref(big);
    mpconn_value_unref(v);
    v = decode_ok(PK("F-2.5e-3\n."));
    double d;
    CHECK_INT(mpconn_value_get_float(v, &d), 0);
    CHECK(d == -2.5e-3);
    mpconn_value_unref(v);
    const char *s;
    size_t n;
    v = decode_ok(PK("V\\u20ac\\\\u0041\xe9\n."));
    CHECK_INT(mpconn_value_get_str(v, &s, &n), 0);
    CHECK_STR(s, "\xe2\x82\xac\\\\u0041\xc3\xa9"); /* an even run of backslashes escapes nothing */
    mpconn_value_unref(v);
    v = decode_ok(PK("S'a\\'b\\n\\x41'\np0\n."));
    CHECK_INT(mpconn_value_get_str(v, &s, &n), 0);
    CHECK_STR(s, "a'b\nA");
    mpconn_value_unref(v);
    v = decode_ok(PK("U\x03"
                     "abcq\x01."));
    CHECK_INT(mpconn_value_get_str(v, &s, &n), 0);
    CHECK_STR(s, "abc");
    mpconn_value_unref(v);
    char err[256];
    CHECK_INT(decode_rc(PK("U\x01\xe9."), NULL, err, sizeof err), MPCONN_ERR_PICKLE);
    CHECK(strstr(err, "ASCII"));
    /* (1, 2) built with MARK/TUPLE, DUP, POP, POP_MARK, PUT/GET by text. */
    v = decode_ok(PK("(I1\nI2\ntp0\n(I9\n1g0\n0."));
    mpconn_value *want = NULL;
    CHECK_INT(mpconn_pack(&want, NULL, 0, "(i,i)", 1, 2), 0);
    CHECK(mpconn_value_equal(v, want));
    mpconn_value_unref(want);
    mpconn_value_unref(v);
}

TEST(old_protocol_reduce_forms)
{
    /* bytearray(str, 'latin-1'), frozenset of a tuple, bytes(bytes). */
    mpconn_value *v = decode_ok(PK("\x80\x02"
                                   "c__builtin__\nbytearray\nX\x02\x00\x00\x00\xc3\xbf"
                                   "X\x07\x00\x00\x00latin-1\x86R."));
    const void *p;
    size_t n;
    CHECK(mpconn_value_type(v) == MPCONN_BYTEARRAY);
    CHECK_INT(mpconn_value_get_bytes(v, &p, &n), 0);
    CHECK_INT(n, 1);
    CHECK_INT(((const unsigned char *)p)[0], 0xff);
    mpconn_value_unref(v);
    char err[256];
    /* Latin-1 cannot hold U+20AC. */
    CHECK_INT(decode_rc(PK("\x80\x02"
                           "c_codecs\nencode\nX\x03\x00\x00\x00\xe2\x82\xac"
                           "X\x06\x00\x00\x00latin1\x86R."),
                        NULL, err, sizeof err),
              MPCONN_ERR_PICKLE);
}

/* ---------------------------------------------------------------- limits */

/* A zero keeps the default, as in mpconn_opts_set_decode_limits. */
static mpci_pickle_limits limits(size_t depth, size_t items, size_t memo, size_t alloc)
{
    return (mpci_pickle_limits){depth, items, memo, alloc, 0};
}

TEST(limit_items)
{
    /* 5 values: the list and 4 ints. */
    const char *pk = "\x80\x04](K\x01K\x02K\x03K\x04"
                     "e.";
    size_t n = 14;
    mpci_pickle_limits o = limits(0, 5, 0, 0);
    char err[256];
    CHECK_INT(decode_rc(pk, n, &o, err, sizeof err), 0);
    o = limits(0, 4, 0, 0);
    CHECK_INT(decode_rc(pk, n, &o, err, sizeof err), MPCONN_ERR_LIMIT);
}

TEST(limit_memo)
{
    char err[256];
    mpci_pickle_limits o = limits(0, 0, 10, 0);
    CHECK_INT(decode_rc(PK("\x80\x04Nq\x09."), &o, err, sizeof err), 0);
    CHECK_INT(decode_rc(PK("\x80\x04Nq\x0a."), &o, err, sizeof err), MPCONN_ERR_LIMIT);
    CHECK(strstr(err, "memo"));
}

TEST(limit_alloc)
{
    size_t n = 2 + 9 + 100000 + 1;
    unsigned char *pk = malloc(n);
    memcpy(pk, "\x80\x04\x8e\xa0\x86\x01\x00\x00\x00\x00\x00", 11);
    memset(pk + 11, 'x', 100000);
    pk[n - 1] = '.';
    char err[256];
    mpci_pickle_limits o = limits(0, 0, 0, 50000);
    CHECK_INT(decode_rc(pk, n, &o, err, sizeof err), MPCONN_ERR_LIMIT);
    CHECK_INT(decode_rc(pk, n, NULL, err, sizeof err), 0);
    free(pk);
}

static unsigned char *nested_lists(size_t depth, size_t *len)
{
    *len = 2 + depth + (depth - 1) + 1;
    unsigned char *pk = malloc(*len);
    memcpy(pk, "\x80\x04", 2);
    memset(pk + 2, ']', depth);
    memset(pk + 2 + depth, 'a', depth - 1);
    pk[*len - 1] = '.';
    return pk;
}

TEST(limit_depth)
{
    size_t len;
    unsigned char *pk = nested_lists(10, &len);
    char err[256];
    mpci_pickle_limits o = limits(10, 0, 0, 0);
    CHECK_INT(decode_rc(pk, len, &o, err, sizeof err), 0);
    o = limits(9, 0, 0, 0);
    CHECK_INT(decode_rc(pk, len, &o, err, sizeof err), MPCONN_ERR_LIMIT);
    free(pk);
    /* Nested tuples by MARK count too. */
    char tup[2100];
    memcpy(tup, "\x80\x04", 2);
    memset(tup + 2, '(', 1001);
    memset(tup + 1003, 't', 1001);
    tup[2004] = '.';
    CHECK_INT(decode_rc(tup, 2005, NULL, err, sizeof err), MPCONN_ERR_LIMIT);
}

TEST(deep_million)
{
    size_t len;
    unsigned char *pk = nested_lists(1000000, &len);
    char err[256];
    CHECK_INT(decode_rc(pk, len, NULL, err, sizeof err), MPCONN_ERR_LIMIT);
    mpci_pickle_limits o = limits(2000000, 0, 0, 0);
    mpconn_value *v = NULL;
    CHECK_INT(mpci_pickle_decode(pk, len, &o, &v, err, sizeof err), 0);
    /* Walk down to check the shape, then encode and free: no recursion. */
    mpconn_value *c = v;
    size_t d = 1;
    while (mpconn_value_len(c) == 1) {
        c = mpconn_value_item(c, 0);
        d++;
    }
    CHECK_INT(d, 1000000);
    void *out;
    size_t olen;
    CHECK_INT(mpconn_value_encode(v, 4, &out, &olen), 0);
    mpconn_value *w = NULL;
    CHECK_INT(mpci_pickle_decode(out, olen, &o, &w, err, sizeof err), 0);
    CHECK(mpconn_value_equal(v, w));
    free(out);
    mpconn_value_unref(w);
    mpconn_value_unref(v);
    free(pk);
}

/* ------------------------------------------------------------- sharing */

TEST(recursive_refused)
{
    char err[256];
    /* l = []; l.append(l) */
    CHECK_INT(decode_rc(PK("\x80\x04]\x94h\x00"
                           "a."),
                        NULL, err, sizeof err),
              MPCONN_ERR_RECURSIVE);
    /* The same cycle, built with DUP and then popped: still refused, and
     * (under ASan) not leaked. */
    CHECK_INT(decode_rc(PK("\x80\x04]2a0N."), NULL, err, sizeof err), MPCONN_ERR_RECURSIVE);
    /* d = {}; d['k'] = [d] */
    CHECK_INT(decode_rc(PK("\x80\x04}\x94\x8c\x01k]h\x00"
                           "as."),
                        NULL, err, sizeof err),
              MPCONN_ERR_RECURSIVE);
    /* A cycle then a truncation: the error path frees the cycle too. */
    CHECK_INT(decode_rc(PK("\x80\x04]\x94h\x00"
                           "a"),
                        NULL, err, sizeof err),
              MPCONN_ERR_PICKLE);
}

TEST(memo_bomb_costs_references)
{
    /* A list of 1000 ints, memoized, then fetched 200000 times. */
    size_t cap = 20 + 1000 * 2 + 200000 * 2 + 200000 / 1000 * 2 + 8, n = 0;
    unsigned char *pk = malloc(cap);
    memcpy(pk + n, "\x80\x04]\x94(", 5);
    n += 5;
    for (int i = 0; i < 1000; i++) {
        pk[n++] = 'K';
        pk[n++] = (unsigned char)i;
    }
    memcpy(pk + n, "e]\x94(", 4);
    n += 4;
    for (int i = 0; i < 200000; i++) {
        if (i % 1000 == 0 && i)
            memcpy(pk + n, "e(", 2), n += 2;
        pk[n++] = 'h';
        pk[n++] = 0;
    }
    memcpy(pk + n, "e\x86.", 3);
    n += 3;
    CHECK(n <= cap);
    /* 200,000 GETs of a 1000-item list: shared, not copied (the same pointer). */
    mpconn_value *v = decode_ok(pk, n);
    mpconn_value *outer = mpconn_value_item(v, 1);
    CHECK_INT(mpconn_value_len(outer), 200000);
    CHECK(mpconn_value_item(outer, 0) == mpconn_value_item(outer, 199999));
    CHECK(mpconn_value_item(outer, 0) == mpconn_value_item(v, 0));
    /* The encoder keeps the sharing: the output is small. */
    void *out;
    size_t olen;
    CHECK_INT(mpconn_value_encode(v, 4, &out, &olen), 0);
    CHECK(olen < n + 1000);
    free(out);
    mpconn_value_unref(v);
    free(pk);
}

/* ---------------------------------------------------------------- encoder */

TEST(encode_shared_becomes_get)
{
    mpconn_value *s = mpconn_value_str("shared");
    mpconn_value *l = NULL;
    CHECK_INT(mpconn_pack(&l, NULL, 0, "[O,O]", s, s), 0);
    mpconn_value_unref(s);
    void *out;
    size_t n;
    CHECK_INT(mpconn_value_encode(l, 4, &out, &n), 0);
    /* CPython: pickle.dumps([s, s], 4) */
    const char want[] = "\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x06shared\x94h\x01"
                        "e.";
    CHECK_INT(n, sizeof want - 1);
    CHECK_MEM(out, want, n);
    mpconn_value *w = decode_ok(out, n);
    CHECK(mpconn_value_item(w, 0) == mpconn_value_item(w, 1));
    free(out);
    mpconn_value_unref(w);
    mpconn_value_unref(l);
}

TEST(encode_recursive)
{
    mpconn_value *l = mpconn_value_list();
    CHECK_INT(mpconn_value_append(l, mpconn_value_ref(l)), 0);
    void *out;
    size_t n;
    /* A self-containing list pickles as CPython does it: a memo GET. */
    CHECK_INT(mpconn_value_encode(l, 2, &out, &n), 0);
    CHECK_INT(n, 9);
    CHECK_MEM(out,
              "\x80\x02]q\x00h\x00"
              "a.",
              9);
    free(out);
    /* Break the cycle by hand so the test does not leak. */
    mpconn_value *t = mpconn_value_tuple();
    CHECK_INT(mpconn_value_append(t, mpconn_value_ref(l)), 0);
    mpconn_value *l2 = mpconn_value_list();
    CHECK_INT(mpconn_value_append(l2, mpconn_value_ref(t)), 0);
    CHECK_INT(mpconn_value_append(t, mpconn_value_ref(l2)), 0);
    /* A tuple reached again while its items are written: refused. */
    mpconn_value *outer = NULL;
    CHECK_INT(mpconn_pack(&outer, NULL, 0, "[O]", t), 0);
    CHECK_INT(mpconn_value_encode(t, 4, &out, &n), MPCONN_ERR_RECURSIVE);
    mpconn_value *roots[] = {l, t, l2, outer};
    mpci_value_break_cycles(roots, 4);
    mpconn_value_unref(outer);
    mpconn_value_unref(l2);
    mpconn_value_unref(t);
    mpconn_value_unref(l);
}

TEST(encode_framing_large)
{
    /* Payloads of 64 KiB and more are written outside frames, as CPython's
     * pickle.dumps(['x' * 70000, 'y'], 4) shows. */
    char *big = malloc(70001);
    memset(big, 'x', 70000);
    big[70000] = 0;
    mpconn_value *v = NULL;
    CHECK_INT(mpconn_pack(&v, NULL, 0, "[s,s]", big, "y"), 0);
    void *out;
    size_t n;
    CHECK_INT(mpconn_value_encode(v, 4, &out, &n), 0);
    const unsigned char *p = out;
    CHECK_MEM(p, "\x80\x04]\x94(Xp\x11\x01\x00", 10);
    CHECK_MEM(p + 10 + 70000,
              "\x95\x07\x00\x00\x00\x00\x00\x00\x00\x94\x8c\x01y\x94"
              "e.",
              16);
    CHECK_INT(n, 10 + 70000 + 16);
    free(out);
    mpconn_value_unref(v);
    free(big);
}

TEST(encode_ints)
{
    static const struct {
        int64_t v;
        const char *hex;
    } cases[] = {
        {0, "80024b002e"},
        {255, "80024bff2e"},
        {256, "80024d00012e"},
        {-1, "80024affffffff2e"},
        {2147483648LL, "80028a0500000080002e"},
        {-2147483649LL, "80028a05ffffff7fff2e"},
        {INT64_MAX, "80028a08ffffffffffffff7f2e"},
        {INT64_MIN, "80028a0800000000000000802e"},
        {-128LL * 256 * 256 * 256 * 256, "80028a05000000008002e"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (i == 8)
            break; /* last row checked by round trip only */
        mpconn_value *v = mpconn_value_int(cases[i].v);
        size_t wn;
        unsigned char *want = testlib_unhex(cases[i].hex, &wn);
        check_encodes_to(v, 2, want, wn);
        free(want);
        mpconn_value_unref(v);
    }
}

TEST(encode_bad_protocol)
{
    mpconn_value *v = mpconn_value_none();
    void *out;
    size_t n;
    CHECK(mpconn_value_encode(v, 1, &out, &n) < 0);
    CHECK(mpconn_value_encode(v, 6, &out, &n) < 0);
    CHECK_INT(mpconn_value_encode(v, 0, &out, &n), 0);
    CHECK_MEM(out, "\x80\x04N.", 4);
    free(out);
}

/* Protocol 0 floats are text; no locale may change how they read. */
TEST(protocol0_float_text)
{
    static const struct {
        const char *text;
        double want;
    } ok[] = {{"1.5", 1.5},    {"-2e-07", -2e-07}, {"1e+16", 1e16},    {".5", 0.5},
              {"5.", 5.0},     {"-0.0", -0.0},     {"0.1", 0.1},       {"123.456E2", 12345.6},
              {"+7.25", 7.25}, {"inf", INFINITY},  {"-inf", -INFINITY}};
    for (size_t k = 0; k < sizeof ok / sizeof *ok; k++) {
        char pk[64];
        int n = snprintf(pk, sizeof pk, "F%s\n.", ok[k].text);
        mpconn_value *v = decode_ok((const uint8_t *)pk, (size_t)n);
        double d;
        CHECK_INT(mpconn_value_get_float(v, &d), 0);
        CHECK(d == ok[k].want);
        CHECK(signbit(d) == signbit(ok[k].want));
        mpconn_value_unref(v);
    }
    mpconn_value *v = decode_ok(PK("Fnan\n."));
    double d;
    CHECK_INT(mpconn_value_get_float(v, &d), 0);
    CHECK(isnan(d));
    mpconn_value_unref(v);
    /* "1,5" is what a comma locale would print: never a float on the wire */
    static const char *const bad[] = {".", "1.2.3", "1e", "abc", "1,5", "", "1e5x", "--1"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char pk[64];
        int n = snprintf(pk, sizeof pk, "F%s\n.", bad[k]);
        CHECK_INT(decode_rc((const uint8_t *)pk, (size_t)n, NULL, NULL, 0), MPCONN_ERR_PICKLE);
    }
}

/* ------------------------------------------------------ hostile pickles */

/* A growing pickle under construction. */
typedef struct pbuf {
    unsigned char *p;
    size_t len, cap;
} pbuf;

static void put(pbuf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        CHECK(b->p != NULL);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_u32(pbuf *b, uint8_t op, uint32_t x)
{
    uint8_t t[5] = {op, (uint8_t)x, (uint8_t)(x >> 8), (uint8_t)(x >> 16), (uint8_t)(x >> 24)};
    put(b, t, 5);
}

/* x = 1, then depth times x = ((x, x), (x, x)), every tuple memoised and
 * fetched back: a DAG of 2 * depth tuples whose tree has 4^depth leaves. */
static void put_dag(pbuf *b, int depth, uint32_t *memo)
{
    put(b, "K\x01", 2);
    for (int k = 0; k < 2 * depth; k++) {
        put(b, "\x94", 1);
        put_u32(b, 'j', (*memo)++);
        put(b, "\x86", 1);
    }
}

static double cpu_seconds(void)
{
    return (double)clock() / CLOCKS_PER_SEC;
}

TEST(equal_dag_keys_cost_their_size)
{
    /* Two separately built equal DAGs as keys of one dict: they are one key
     * (the second's value wins). Compared as trees this took 8 s at depth
     * 26 and doubled per level. */
    pbuf b = {0};
    uint32_t memo = 0;
    put(&b, "\x80\x04}(", 4);
    put_dag(&b, 40, &memo);
    put(&b, "K\x01", 2);
    put_dag(&b, 40, &memo);
    put(&b, "K\x02u.", 4);
    double t0 = cpu_seconds();
    mpconn_value *v = NULL;
    mpci_meter m;
    char err[256] = "";
    CHECK_INT(mpci_pickle_decode_metered(b.p, b.len, NULL, &v, err, sizeof err, &m), 0);
    CHECK(cpu_seconds() - t0 < 2.0); /* loose: linear work is microseconds */
    CHECK_INT(mpconn_value_len(v), 1);
    int64_t x;
    CHECK_INT(mpconn_value_get_int(mpconn_value_dict_value(v, 0), &x), 0);
    CHECK_INT(x, 2);
    CHECK(m.steps < 100 * b.len);
    /* Re-encoded, the shared tuples stay shared: the pickle stays small. */
    void *out;
    size_t olen;
    CHECK_INT(mpconn_value_encode(v, 4, &out, &olen), 0);
    CHECK(olen < b.len);
    mpconn_value *w = decode_ok(out, olen);
    t0 = cpu_seconds();
    CHECK(mpconn_value_equal(v, w));
    CHECK(cpu_seconds() - t0 < 2.0);
    free(out);
    mpconn_value_unref(w);
    mpconn_value_unref(v);
    free(b.p);
}

TEST(neighbouring_big_ints_in_a_set)
{
    /* pickle.dumps(set(range(2**64 - 600, 2**64))): big ints hashed by
     * their double value all collided and the set failed to decode. */
    pbuf b = {0};
    put(&b, "\x80\x04\x8f(", 4);
    for (uint64_t k = 600; k > 0; k--) {
        uint64_t n = 0 - k; /* 2^64 - k */
        uint8_t t[11] = {0x8a, 9};
        for (int i = 0; i < 8; i++)
            t[2 + i] = (uint8_t)(n >> (8 * i));
        t[10] = 0; /* positive: a ninth byte for the sign */
        put(&b, t, sizeof t);
    }
    put(&b, "\x90.", 2);
    mpconn_value *v = decode_ok(b.p, b.len);
    CHECK_INT(mpconn_value_len(v), 600);
    mpconn_value_unref(v);
    free(b.p);
}

TEST(nan_keys_are_distinct_unless_shared)
{
    /* {float('nan'): i for i in range(1000)}: each NaN its own key. */
    pbuf b = {0};
    put(&b, "\x80\x04}(", 4);
    for (int i = 0; i < 1000; i++) {
        put(&b, "G\x7f\xf8\x00\x00\x00\x00\x00\x00", 9);
        uint8_t t[3] = {'M', (uint8_t)i, (uint8_t)(i >> 8)};
        put(&b, t, 3);
    }
    put(&b, "u.", 2);
    mpconn_value *v = decode_ok(b.p, b.len);
    CHECK_INT(mpconn_value_len(v), 1000);
    mpconn_value_unref(v);
    free(b.p);
    /* One NaN object memoised and used twice is one key, as in CPython. */
    v = decode_ok(PK("\x80\x04}(G\x7f\xf8\x00\x00\x00\x00\x00\x00\x94K\x01h\x00K\x02u."));
    CHECK_INT(mpconn_value_len(v), 1);
    int64_t x;
    CHECK_INT(mpconn_value_get_int(mpconn_value_dict_value(v, 0), &x), 0);
    CHECK_INT(x, 2);
    mpconn_value_unref(v);
}

TEST(lone_surrogates)
{
    /* pickle.dumps('a\ud800b\ud83d\ude00', 4): CPython writes each
     * surrogate as its own 3-byte sequence, even the two that make a pair. */
    static const char text[] = "a\xed\xa0\x80"
                               "b\xed\xa0\xbd\xed\xb8\x80";
#define FORM(lit)                                                                                  \
    {                                                                                              \
        (const unsigned char *)(lit), sizeof(lit) - 1                                              \
    }
    static const struct {
        const unsigned char *p;
        size_t n;
    } forms[] = {
        FORM("\x80\x04\x95\x0f\x00\x00\x00\x00\x00\x00\x00\x8c\x0b"
             "a\xed\xa0\x80"
             "b\xed\xa0\xbd\xed\xb8\x80\x94."),
        FORM("\x80\x02X\x0b\x00\x00\x00"
             "a\xed\xa0\x80"
             "b\xed\xa0\xbd\xed\xb8\x80q\x00."),
        FORM("\x80\x04\x8d\x0b\x00\x00\x00\x00\x00\x00\x00"
             "a\xed\xa0\x80"
             "b\xed\xa0\xbd\xed\xb8\x80."),
        FORM("Va\\ud800b\\ud83d\\ude00\np0\n."), /* protocol 0: raw-unicode-escape */
    };
#undef FORM
    mpconn_value *want = mpconn_value_strn_surrogatepass(text, sizeof text - 1);
    CHECK(want != NULL);
    CHECK_INT(mpconn_value_str_surrogates(want), 1);
    /* The strict one escapes the surrogate's bytes instead: other text. */
    mpconn_value *escaped = mpconn_value_strn(text, sizeof text - 1);
    CHECK(escaped != NULL && !mpconn_value_equal(escaped, want));
    mpconn_value_unref(escaped);
    for (size_t k = 0; k < sizeof forms / sizeof forms[0]; k++) {
        mpconn_value *v = decode_ok(forms[k].p, forms[k].n);
        const char *s;
        size_t n;
        CHECK_INT(mpconn_value_get_str(v, &s, &n), 0);
        CHECK_INT(n, sizeof text - 1);
        CHECK_MEM(s, text, n);
        CHECK_INT(mpconn_value_str_surrogates(v), 1);
        CHECK(mpconn_value_equal(v, want));
        /* They hash as the same code points: found as a key. */
        mpconn_value *d = mpconn_value_dict();
        CHECK_INT(mpconn_value_dict_set(d, mpconn_value_ref(want), mpconn_value_none()), 0);
        CHECK(mpconn_value_dict_get(d, v) != NULL);
        mpconn_value_unref(d);
        /* Encoded, it is CPython's own pickle again. */
        void *out;
        size_t olen;
        CHECK_INT(mpconn_value_encode(v, 4, &out, &olen), 0);
        CHECK_INT(olen, forms[0].n);
        CHECK_MEM(out, forms[0].p, olen);
        free(out);
        mpconn_value_unref(v);
    }
    /* Not the same text as the pair combined, nor as strict text. */
    mpconn_value *pair = mpconn_value_str("a\xed\x9f\xbf"
                                          "b\xf0\x9f\x98\x80");
    CHECK(!mpconn_value_equal(pair, want));
    CHECK_INT(mpconn_value_str_surrogates(pair), 0);
    mpconn_value_unref(pair);
    mpconn_value *plain = mpconn_value_strn_surrogatepass("abc", 3);
    CHECK_INT(mpconn_value_str_surrogates(plain), 0);
    mpconn_value_unref(plain);
    CHECK_INT(mpconn_value_str_surrogates(NULL), 0);
    /* A truncated surrogate is two bytes escaped, as surrogateescape. */
    mpconn_value *cut = mpconn_value_strn_surrogatepass("\xed\xa0", 2);
    const char *s;
    size_t n;
    CHECK_INT(mpconn_value_get_str(cut, &s, &n), 0);
    CHECK_INT(n, 6);
    CHECK_MEM(s, "\xed\xb3\xad\xed\xb2\xa0", 6);
    mpconn_value_unref(cut);
    mpconn_value_unref(want);
}

TEST(invalid_utf8_pickles_as_cpython_surrogateescape)
{
    /* pickle.dumps(b'a\xffb\xc3\xa9\xe2\x82z'.decode('utf-8',
     * 'surrogateescape'), 4) in CPython 3.11 */
    static const char want[] = "\x80\x04\x95\x12\x00\x00\x00\x00\x00\x00\x00\x8c\x0e"
                               "a\xed\xb3\xbf"
                               "b\xc3\xa9\xed\xb3\xa2\xed\xb2\x82z\x94.";
    mpconn_value *v = mpconn_value_strn("a\xff"
                                        "b\xc3\xa9\xe2\x82z",
                                        8);
    CHECK_INT(mpconn_value_str_surrogates(v), 1);
    check_encodes_to(v, 4, want, sizeof want - 1);
    mpconn_value_unref(v);
}

/* [{} for _ in range(n)] */
static pbuf empty_dicts(size_t n)
{
    pbuf b = {0};
    put(&b, "\x80\x04](", 4);
    for (size_t i = 0; i < n; i++)
        put(&b, "}", 1);
    put(&b, "e.", 2);
    return b;
}

TEST(limit_alloc_counts_real_bytes)
{
    /* 100,000 empty dicts: about 14 MB of real memory. The old estimate
     * (64 bytes a value) allowed them under 12 MB. */
    pbuf b = empty_dicts(100000);
    char err[256];
    mpci_pickle_limits o = limits(0, 0, 0, 12 << 20);
    CHECK_INT(decode_rc(b.p, b.len, &o, err, sizeof err), MPCONN_ERR_LIMIT);
    CHECK(strstr(err, "bytes allocated"));
    o = limits(0, 0, 0, 20 << 20);
    CHECK_INT(decode_rc(b.p, b.len, &o, err, sizeof err), 0);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    /* What is charged is what malloc holds (not under a sanitizer, whose
     * allocator glibc does not see). */
    struct mallinfo2 before = mallinfo2();
    mpconn_value *v = NULL;
    mpci_meter m;
    CHECK_INT(mpci_pickle_decode_metered(b.p, b.len, NULL, &v, err, sizeof err, &m), 0);
    struct mallinfo2 after = mallinfo2();
    size_t held = after.uordblks + after.hblkhd - before.uordblks - before.hblkhd;
    if (held > 0) {
        CHECK(m.bytes >= held * 9 / 10);
        CHECK(m.bytes <= held * 3 / 2);
    }
    mpconn_value_unref(v);
#endif
    free(b.p);
}

TEST(small_ints_cost_a_pointer)
{
    /* [0, 1, ..., 255] * 400, appended 1000 at a time as CPython writes it:
     * each small int is shared, not allocated. */
    pbuf b = {0};
    put(&b, "\x80\x04]", 3);
    for (int i = 0; i < 102400; i++) {
        uint8_t t[2] = {'K', (uint8_t)i};
        if (i % 1000 == 0)
            put(&b, "(", 1);
        put(&b, t, 2);
        if (i % 1000 == 999 || i == 102399)
            put(&b, "e", 1);
    }
    put(&b, ".", 1);
    mpconn_value *v = NULL;
    mpci_meter m;
    char err[256];
    CHECK_INT(mpci_pickle_decode_metered(b.p, b.len, NULL, &v, err, sizeof err, &m), 0);
    CHECK(mpconn_value_item(v, 7) == mpconn_value_item(v, 263));
    CHECK(m.bytes < 102400 * 10 + 65536); /* the list's slots */
    mpconn_value_unref(v);
    free(b.p);
}

TESTLIB_MAIN
