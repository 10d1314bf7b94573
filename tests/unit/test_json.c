/* JSON text of values: json.dumps' output for what JSON holds (the "json"
 * field of the pickle vectors), and mpconn's tagged mapping for the rest
 * (docs/json.md). */
#include "mpconn.h"
#include "testlib.h"
#include "proto/pickle.h"
#include "conn/opts.h"
#include "proto/text_internal.h"
#include "proto/value_internal.h"

#include <errno.h>
#include <math.h>

static void check_json(mpconn_value *v, const char *want)
{
    char *s = NULL;
    size_t len = 0;
    CHECK(v != NULL);
    CHECK_INT(mpconn_value_json(v, &s, &len), 0);
    CHECK_INT(strlen(s), len);
    CHECK_STR(s, want);
    free(s);
    mpconn_value_unref(v);
}

static mpconn_value *parse(const char *text)
{
    mpconn_value *v = NULL;
    char err[256] = "";
    if (mpconn_value_parse(&v, text, strlen(text), err, sizeof err) != 0) {
        fprintf(stderr, "parse %s: %s\n", text, err);
        exit(1);
    }
    return v;
}

TEST(vectors)
{
    char *all = testlib_read_file(testlib_data_path("pickle.jsonl"), NULL);
    size_t checked = 0;
    for (char *save = NULL, *l = strtok_r(all, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char *expect = testlib_json_str(l, "expect"), *want = testlib_json_str(l, "json");
        if (expect && want && strcmp(expect, "value") == 0) {
            char *hex = testlib_json_str(l, "pickle_hex");
            size_t n;
            unsigned char *pk = testlib_unhex(hex, &n);
            mpconn_value *v = NULL;
            char err[256] = "";
            if (mpci_pickle_decode(pk, n, NULL, &v, err, sizeof err) != 0) {
                fprintf(stderr, "decode failed: %s: %s\n", err, l);
                exit(1);
            }
            char *got = NULL;
            CHECK_INT(mpconn_value_json(v, &got, NULL), 0);
            if (strcmp(got, want) != 0)
                fprintf(stderr, "row: %.200s\n", l);
            CHECK_STR(got, want);
            free(got);
            mpconn_value_unref(v);
            free(pk);
            free(hex);
            checked++;
        }
        free(expect);
        free(want);
    }
    free(all);
    CHECK(checked >= 200);
}

TEST(scalars)
{
    check_json(mpconn_value_none(), "null");
    check_json(mpconn_value_bool(1), "true");
    check_json(mpconn_value_bool(0), "false");
    check_json(mpconn_value_int(-7), "-7");
    check_json(mpconn_value_float(0.1), "0.1");
    check_json(mpconn_value_float(1e16), "1e+16");
    check_json(mpconn_value_float(-0.0), "-0.0");
    check_json(mpconn_value_float(NAN), "{\"$float\": \"nan\"}");
    check_json(mpconn_value_float(INFINITY), "{\"$float\": \"inf\"}");
    check_json(mpconn_value_float(-INFINITY), "{\"$float\": \"-inf\"}");
    check_json(parse("-123456789012345678901234567890"), "-123456789012345678901234567890");
}

TEST(strings)
{
    /* As json.dumps: ensure_ascii escapes, surrogate pairs beyond the BMP. */
    check_json(parse("'a\"b\\\\c/'"), "\"a\\\"b\\\\c/\"");
    check_json(parse("'\\x00\\x01\\x08\\x09\\x0a\\x0c\\x0d\\x1f\\x7f'"),
               "\"\\u0000\\u0001\\b\\t\\n\\f\\r\\u001f\\u007f\"");
    check_json(parse("'caf\\xe9 \\u65e5 \\U0001F600 \\U0010FFFF'"),
               "\"caf\\u00e9 \\u65e5 \\ud83d\\ude00 \\udbff\\udfff\"");
}

TEST(bytes)
{
    check_json(parse("b''"), "{\"$bytes\": \"\"}");
    check_json(parse("b'f'"), "{\"$bytes\": \"Zg==\"}");
    check_json(parse("b'fo'"), "{\"$bytes\": \"Zm8=\"}");
    check_json(parse("b'foo'"), "{\"$bytes\": \"Zm9v\"}");
    check_json(parse("b'\\xff\\xfe\\x00\\x3e\\x3f'"), "{\"$bytes\": \"//4APj8=\"}");
    check_json(mpconn_value_bytearray("foob", 4), "{\"$bytes\": \"Zm9vYg==\"}");
}

TEST(sequences)
{
    check_json(parse("[]"), "[]");
    check_json(parse("()"), "[]");
    check_json(parse("(1,)"), "[1]");
    check_json(parse("[1, (2, [3]), 'x']"), "[1, [2, [3]], \"x\"]");
    check_json(parse("set()"), "[]");
    check_json(parse("{3, 1, 2}"), "[3, 1, 2]"); /* insertion order */
    mpconn_value *fs = mpconn_value_frozenset();
    CHECK_INT(mpconn_value_add(fs, mpconn_value_str("a")), 0);
    check_json(fs, "[\"a\"]");
}

TEST(dicts)
{
    check_json(parse("{}"), "{}");
    check_json(parse("{'a': 1, 'b': [None]}"), "{\"a\": 1, \"b\": [null]}");
    /* Scalar keys become strings as json.dumps makes them. */
    check_json(parse("{1: 'a', 2.5: 'b', False: 'c', None: 'd', -1: 'e'}"),
               "{\"1\": \"a\", \"2.5\": \"b\", \"false\": \"c\", \"null\": \"d\", \"-1\": \"e\"}");
    check_json(parse("{1e400: 0, -1e400: 1}"), "{\"Infinity\": 0, \"-Infinity\": 1}");
    /* Keys JSON cannot hold, or that would collide once converted. */
    check_json(parse("{(1, 2): 'pair'}"), "{\"$dict\": [[[1, 2], \"pair\"]]}");
    check_json(parse("{b'k': {'x': 1}}"), "{\"$dict\": [[{\"$bytes\": \"aw==\"}, {\"x\": 1}]]}");
    check_json(parse("{1: 'int', '1': 'str'}"), "{\"$dict\": [[1, \"int\"], [\"1\", \"str\"]]}");
    check_json(parse("{None: 0, 'null': 1}"), "{\"$dict\": [[null, 0], [\"null\", 1]]}");
    /* A lone tag-like key is never written so that it reads as a tag. */
    check_json(parse("{'$bytes': 'Zg=='}"), "{\"$dict\": [[\"$bytes\", \"Zg==\"]]}");
    check_json(parse("{'$float': 'nan'}"), "{\"$dict\": [[\"$float\", \"nan\"]]}");
    check_json(parse("{'$bytes': 1, 'x': 2}"), "{\"$bytes\": 1, \"x\": 2}");
    check_json(parse("{'k': {(): {}}}"), "{\"k\": {\"$dict\": [[[], {}]]}}");
}

TEST(recursive_is_an_error)
{
    mpconn_value *l = mpconn_value_list();
    CHECK_INT(mpconn_value_append(l, mpconn_value_ref(l)), 0);
    char *s = NULL;
    CHECK_INT(mpconn_value_json(l, &s, NULL), MPCONN_ERR_RECURSIVE);
    CHECK(s == NULL);
    mpci_value_break_cycles(&l, 1);
    mpconn_value_unref(l);
    /* Shared but acyclic is fine. */
    mpconn_value *x = parse("{'a': 1}");
    mpconn_value *t = mpconn_value_tuple();
    CHECK_INT(mpconn_value_append(t, mpconn_value_ref(x)), 0);
    CHECK_INT(mpconn_value_append(t, x), 0);
    check_json(t, "[{\"a\": 1}, {\"a\": 1}]");
}

TEST(deep_nesting)
{
    const size_t depth = 100000;
    mpconn_value *v = mpconn_value_dict();
    for (size_t i = 0; i < depth; i++) {
        mpconn_value *outer = mpconn_value_list();
        CHECK_INT(mpconn_value_append(outer, v), 0);
        v = outer;
    }
    char *s = NULL;
    size_t len = 0;
    CHECK_INT(mpconn_value_json(v, &s, &len), 0);
    CHECK_INT(len, 2 * depth + 2);
    CHECK(s[depth - 1] == '[' && s[depth] == '{' && s[depth + 1] == '}' && s[len - 1] == ']');
    free(s);
    mpconn_value_unref(v);
}

TEST(print_limit)
{
    /* x = (x, x) nested 30 deep from [], as a pickle of 64 bytes makes it
     * (DUP, TUPLE2): 2^30 leaves. Cut at 64 bytes; the work done follows
     * the text. */
    uint8_t pk[64] = {0x80, 2, ']'};
    for (int i = 0; i < 30; i++)
        memcpy(pk + 3 + 2 * i, "2\x86", 2);
    pk[63] = '.';
    mpconn_value *x = NULL;
    CHECK_INT(mpconn_value_decode(&x, pk, sizeof pk, NULL, NULL, 0), 0);
    mpconn_opts *o = NULL;
    char *s = NULL, err[256] = "";
    size_t len = 0;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_print_limits(o, 64, 0), 0);
    CHECK_INT(mpconn_value_json_opts(x, o, &s, &len, err, sizeof err), MPCONN_ERR_LIMIT);
    CHECK(strstr(err, "JSON longer than 64 bytes") != NULL);
    CHECK_INT(mpconn_opts_set_print_truncate(o, 1), 0);
    CHECK_INT(mpconn_value_json_opts(x, o, &s, &len, NULL, 0), 1);
    CHECK_STR(s, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[], []], [[], []]], [[[], []], [[]");
    free(s);
    mpci_print pr;
    mpci_print_init(&pr, &o->print, NULL, 0);
    CHECK_INT(mpci_value_json(x, &pr, &s, &len), 1);
    CHECK(pr.work <= 2 * 64);
    free(s);
    mpconn_value_unref(x);
    /* A str cut inside an escape keeps the part that fits. */
    x = mpconn_value_str("\xc3\xa9\xc3\xa9");
    CHECK_INT(mpconn_opts_set_print_limits(o, 9, 0), 0);
    CHECK_INT(mpconn_value_json_opts(x, o, &s, &len, NULL, 0), 1);
    CHECK_STR(s, "\"\\u00e9\\u");
    free(s);
    mpconn_value_unref(x);
    mpconn_opts_free(o);
}

TEST(int_digit_limit)
{
    /* Also for an int key, which becomes a string. */
    char *t = malloc(4303), *s = NULL, err[256] = "";
    t[0] = '{';
    memset(t + 1, '8', 4301);
    t[4302] = ':';
    mpconn_opts *o = NULL;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_print_limits(o, 0, MPCONN_UNLIMITED), 0);
    mpconn_value *v = NULL;
    CHECK_INT(mpconn_value_parse_opts(&v, t + 1, 4301, o, NULL, 0), 0);
    mpconn_value *d = mpconn_value_dict();
    CHECK_INT(mpconn_value_dict_set(d, mpconn_value_ref(v), mpconn_value_none()), 0);
    CHECK_INT(mpconn_value_json_opts(v, NULL, &s, NULL, err, sizeof err), MPCONN_ERR_LIMIT);
    CHECK(strstr(err, "Exceeds the limit (4300 digits)") != NULL);
    CHECK_INT(mpconn_value_json_opts(d, NULL, &s, NULL, err, sizeof err), MPCONN_ERR_LIMIT);
    CHECK_INT(mpconn_value_json_opts(d, o, &s, NULL, err, sizeof err), 0);
    CHECK(strlen(s) == 4301 + 10 && memcmp(s, "{\"8888", 6) == 0);
    free(s);
    mpconn_value_unref(d);
    mpconn_value_unref(v);
    mpconn_opts_free(o);
    free(t);
}

TESTLIB_MAIN
