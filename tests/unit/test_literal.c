/* The literal parser against ast.literal_eval: accepted texts (expected
 * reprs made with CPython 3.11), rejected texts with the error code and the
 * column, limits, and values compared with ones built through the API. */
#include "mpconn.h"
#include "testlib.h"

#include <errno.h>
#include <math.h>

static mpconn_value *parse_ok(const char *text)
{
    mpconn_value *v = NULL;
    char err[256] = "";
    int rc = mpconn_value_parse(&v, text, strlen(text), err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "parse of \"%s\" failed (%d): %s\n", text, rc, err);
        exit(1);
    }
    CHECK(v != NULL);
    return v;
}

static const struct {
    const char *text, *repr;
} accepted[] = {
    {"None", "None"},
    {"True", "True"},
    {"False", "False"},
    {"0", "0"},
    {"-0", "0"},
    {"+7", "7"},
    {"-(1)", "-1"},
    {"- ( (2) )", "-2"},
    {"00", "0"},
    {"0_0", "0"},
    {"1_000", "1000"},
    {"0x1F", "31"},
    {"0X_ff", "255"},
    {"0o17", "15"},
    {"0b101", "5"},
    {"-0b1_0", "-2"},
    {"123456789012345678901234567890", "123456789012345678901234567890"},
    {"-0x8000000000000000", "-9223372036854775808"},
    {"0xffffffffffffffffffffffffffffffff", "340282366920938463463374607431768211455"},
    {"1.5", "1.5"},
    {"1e5", "100000.0"},
    {"1E-5", "1e-05"},
    {".5", "0.5"},
    {"5.", "5.0"},
    {"1_0.5", "10.5"},
    {"1.e5", "100000.0"},
    {"09.5", "9.5"},
    {"1e400", "inf"},
    {"-1e400", "-inf"},
    {"0e0", "0.0"},
    {"-0.0", "-0.0"},
    {"1e5_0", "1e+50"},
    {"3.141592653589793", "3.141592653589793"},
    {"''", "''"},
    {"\"\"", "''"},
    {"'a' 'b'", "'ab'"},
    {"u'x' \"y\"", "'xy'"},
    {"r'\\n'", "'\\\\n'"},
    {"R'\\d'", "'\\\\d'"},
    {"b'a' B\"b\"", "b'ab'"},
    {"rb'\\x'", "b'\\\\x'"},
    {"Br'\\''", "b\"\\\\'\""},
    {"'\\n\\t\\\\\\'\\\"\\a\\b\\f\\v\\0'", "'\\n\\t\\\\\\'\"\\x07\\x08\\x0c\\x0b\\x00'"},
    {"'\\101\\1010\\777'", "'AA0\307\277'"},
    {"b'\\777\\0'", "b'\\xff\\x00'"},
    {"'\\x41\\u00e9\\U0001F600'", "'A\303\251\360\237\230\200'"},
    {"'\\q'", "'\\\\q'"},
    {"b'\\u1234'", "b'\\\\u1234'"},
    {"'''a\012b'''", "'a\\nb'"},
    {"'''a\015\012b\015c'''", "'a\\nb\\nc'"},
    {"\"\"\"x\"y\"\"z\"\"\"", "'x\"y\"\"z'"},
    {"'a\\\012b'", "'ab'"},
    {"'caf\303\251'", "'caf\303\251'"},
    {"'''it's'''", "\"it's\""},
    {"r'''a\\'''b'''", "\"a\\\\'''b\""},
    {"[]", "[]"},
    {"[1,]", "[1]"},
    {"[1, 2, 3]", "[1, 2, 3]"},
    {"()", "()"},
    {"(1,)", "(1,)"},
    {"(1, 2,)", "(1, 2)"},
    {"((1))", "1"},
    {"1, 2", "(1, 2)"},
    {"1,", "(1,)"},
    {"{}", "{}"},
    {"{1: 2}", "{1: 2}"},
    {"{'a': [1, {'b': (2,)}],}", "{'a': [1, {'b': (2,)}]}"},
    {"{1, 2}", "{1, 2}"},
    {"{1,}", "{1}"},
    {"set()", "set()"},
    {"set ( )", "set()"},
    {"[\0121,\012# c\0122]\012", "[1, 2]"},
    {"# lead\012[1]", "[1]"},
    {"\012\0121\012\012", "1"},
    {"  \011[1]", "[1]"},
    {"{(1, (2, 'x')): b''}", "{(1, (2, 'x')): b''}"},
    {"{1: 'a', 1: 'b', 2: 'c'}", "{1: 'b', 2: 'c'}"},
    {"{1, 1.0, True}", "{1}"},
    {"[[[]], [()], [{}]]", "[[[]], [()], [{}]]"},
    {"(\0121\012,\012)", "(1,)"},
    {"1 \\\012, 2", "(1, 2)"},
    {"-1_0.5e-1_0", "-1.05e-09"},
};

TEST(accepts)
{
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        mpconn_value *v = parse_ok(accepted[i].text);
        char *s = NULL;
        CHECK_INT(mpconn_value_repr(v, &s, NULL), 0);
        if (strcmp(s, accepted[i].repr) != 0)
            fprintf(stderr, "text: %s\n", accepted[i].text);
        CHECK_STR(s, accepted[i].repr);
        free(s);
        mpconn_value_unref(v);
    }
}

static const struct {
    const char *text;
    int code;
    int column;
    const char *what; /* a piece of the message */
} rejected[] = {
    {"", MPCONN_ERR_SYNTAX, 1, "end of input"},
    {"   ", MPCONN_ERR_SYNTAX, 4, "end of input"},
    {"[1, 2,, 3]", MPCONN_ERR_SYNTAX, 7, "expected a value"},
    {"[1 2]", MPCONN_ERR_SYNTAX, 4, "expected ',' or ']'"},
    {"(,)", MPCONN_ERR_SYNTAX, 2, "expected a value"},
    {"1 2", MPCONN_ERR_SYNTAX, 3, "end of input"},
    {"01", MPCONN_ERR_SYNTAX, 1, "leading zeros"},
    {"0_1", MPCONN_ERR_SYNTAX, 1, "leading zeros"},
    {"1__0", MPCONN_ERR_SYNTAX, 1, "invalid decimal literal"},
    {"1_", MPCONN_ERR_SYNTAX, 1, "invalid decimal literal"},
    {"1e", MPCONN_ERR_SYNTAX, 1, "invalid decimal literal"},
    {"1abc", MPCONN_ERR_SYNTAX, 1, "invalid decimal literal"},
    {"0b2", MPCONN_ERR_SYNTAX, 3, "invalid digit '2' in binary literal"},
    {"0x", MPCONN_ERR_SYNTAX, 1, "invalid hexadecimal literal"},
    {"1j", MPCONN_ERR_SYNTAX, 1, "complex"},
    {"1+2j", MPCONN_ERR_SYNTAX, 3, "complex numbers are not supported"},
    {"(1-2.5j)", MPCONN_ERR_SYNTAX, 4, "complex numbers are not supported"},
    {"[0, -1 + 1e3J]", MPCONN_ERR_SYNTAX, 10, "complex"},
    {"2j", MPCONN_ERR_SYNTAX, 1, "complex numbers are not supported"},
    {"1+2", MPCONN_ERR_SYNTAX, 2, "'+'"},
    {"--1", MPCONN_ERR_SYNTAX, 2, "sign"},
    {"-True", MPCONN_ERR_SYNTAX, 2, "sign"},
    {"-'a'", MPCONN_ERR_SYNTAX, 2, "sign"},
    {"-(1,)", MPCONN_ERR_SYNTAX, 4, "')'"},
    {"f'x'", MPCONN_ERR_SYNTAX, 1, "f-string"},
    {"ur'x'", MPCONN_ERR_SYNTAX, 1, "prefix"},
    {"'a' b'b'", MPCONN_ERR_SYNTAX, 5, "mix bytes"},
    {"'abc", MPCONN_ERR_SYNTAX, 1, "unterminated string"},
    {"'a\012b'", MPCONN_ERR_SYNTAX, 1, "unterminated string"},
    {"'''abc''", MPCONN_ERR_SYNTAX, 1, "unterminated triple-quoted"},
    {"r'\\'", MPCONN_ERR_SYNTAX, 1, "unterminated"},
    {"'\\x4'", MPCONN_ERR_SYNTAX, 2, "truncated \\x"},
    {"'\\u12'", MPCONN_ERR_SYNTAX, 2, "truncated \\u"},
    {"'\\U00110000'", MPCONN_ERR_SYNTAX, 2, "illegal Unicode"},
    {"'\\N{DASH}'", MPCONN_ERR_SYNTAX, 2, "\\N{...}"},
    {"b'caf\303\251'", MPCONN_ERR_SYNTAX, 6, "ASCII"},
    {"x", MPCONN_ERR_SYNTAX, 1, "name 'x'"},
    {"Ellipsis", MPCONN_ERR_SYNTAX, 1, "name"},
    {"...", MPCONN_ERR_SYNTAX, 1, "'...'"},
    {"set(1)", MPCONN_ERR_SYNTAX, 5, "set()"},
    {"set", MPCONN_ERR_SYNTAX, 4, "set()"},
    {"{1: 2, 3}", MPCONN_ERR_SYNTAX, 9, "':'"},
    {"{1, 2: 3}", MPCONN_ERR_SYNTAX, 6, "expected ',' or '}'"},
    {"{1: }", MPCONN_ERR_SYNTAX, 5, "expected a value"},
    {"[1, 2", MPCONN_ERR_SYNTAX, 6, "end of input"},
    {"[1)", MPCONN_ERR_SYNTAX, 3, "')'"},
    {"1,\0122", MPCONN_ERR_SYNTAX, 4, "newline"},
    {"'a'\012'b'", MPCONN_ERR_SYNTAX, 5, "newline"},
    {"-\0121", MPCONN_ERR_SYNTAX, 3, "newline"},
    {"\012  1", MPCONN_ERR_SYNTAX, 4, "indent"},
    {"1\012 2", MPCONN_ERR_SYNTAX, 4, "indent"},
    {"'\303\251' x", MPCONN_ERR_SYNTAX, 5, "got a name"}, /* columns count characters */
    {"[\303\251]", MPCONN_ERR_SYNTAX, 2, "name"},
    {"\377", MPCONN_ERR_SYNTAX, 1, "UTF-8"},
    {"'\355\240\200'", MPCONN_ERR_SYNTAX, 2, "UTF-8"},
    {"1 if 1 else 2", MPCONN_ERR_SYNTAX, 3, "a name"},
    {"[*a]", MPCONN_ERR_SYNTAX, 2, "'*'"},
    {"{**a}", MPCONN_ERR_SYNTAX, 2, "'*'"},
    {"1 \\ 2", MPCONN_ERR_SYNTAX, 3, "continuation"},
    {"{[1]: 2}", MPCONN_ERR_UNHASHABLE, 2, "unhashable dict key"},
    {"{1, [2]}", MPCONN_ERR_UNHASHABLE, 5, "unhashable set item"},
    {"{0: 0, (1, [2]): 3}", MPCONN_ERR_UNHASHABLE, 8, "unhashable"},
    {"{{}}", MPCONN_ERR_UNHASHABLE, 2, "unhashable"},
};

TEST(rejects)
{
    for (size_t i = 0; i < sizeof rejected / sizeof rejected[0]; i++) {
        mpconn_value *v = (mpconn_value *)&v; /* must come back NULL */
        char err[256] = "", prefix[32];
        const char *t = rejected[i].text;
        int rc = mpconn_value_parse(&v, t, strlen(t), err, sizeof err);
        snprintf(prefix, sizeof prefix, "column %d: ", rejected[i].column);
        if (rc != rejected[i].code || strncmp(err, prefix, strlen(prefix)) != 0 ||
            !strstr(err, rejected[i].what))
            fprintf(stderr, "text \"%s\": rc %d, \"%s\"; wanted %d, \"%s...%s\"\n", t, rc, err,
                    rejected[i].code, prefix, rejected[i].what);
        CHECK_INT(rc, rejected[i].code);
        CHECK(strncmp(err, prefix, strlen(prefix)) == 0);
        CHECK(strstr(err, rejected[i].what) != NULL);
        CHECK(v == NULL);
    }
}

TEST(null_byte_and_length)
{
    mpconn_value *v = NULL;
    char err[128] = "";
    CHECK_INT(mpconn_value_parse(&v, "1\0", 2, err, sizeof err), MPCONN_ERR_SYNTAX);
    CHECK(strstr(err, "column 2: ") == err && strstr(err, "null"));
    /* Only len bytes are read: the text need not be NUL-terminated. */
    char buf[4] = {'[', '7', ']', 'x'};
    CHECK_INT(mpconn_value_parse(&v, buf, 3, NULL, 0), 0);
    int64_t x = 0;
    CHECK_INT(mpconn_value_get_int(mpconn_value_item(v, 0), &x), 0);
    CHECK_INT(x, 7);
    mpconn_value_unref(v);
    CHECK_INT(mpconn_value_parse(&v, buf, 4, NULL, 0), MPCONN_ERR_SYNTAX); /* errmsg optional */
    CHECK_INT(mpconn_value_parse(&v, NULL, 1, NULL, 0), -EINVAL);
    CHECK_INT(mpconn_value_parse(NULL, "1", 1, NULL, 0), -EINVAL);
}

TEST(nesting_limit)
{
    /* 1000 levels parse; 1001 are refused; 100,000 are refused quickly
     * without touching the C stack. */
    size_t deep = 100000;
    char *t = malloc(2 * deep + 1);
    for (size_t depth = 1000; depth <= 1001; depth++) {
        memset(t, '[', depth);
        memset(t + depth, ']', depth);
        mpconn_value *v = NULL;
        char err[128] = "";
        int rc = mpconn_value_parse(&v, t, 2 * depth, err, sizeof err);
        if (depth == 1000) {
            CHECK_INT(rc, 0);
            char *s = NULL;
            size_t len = 0;
            CHECK_INT(mpconn_value_repr(v, &s, &len), 0);
            CHECK_INT(len, 2000);
            CHECK(memcmp(s, t, len) == 0);
            free(s);
            mpconn_value_unref(v);
        } else {
            CHECK_INT(rc, MPCONN_ERR_LIMIT);
            CHECK(strncmp(err, "column 1001: ", 13) == 0);
        }
    }
    memset(t, '(', deep);
    memset(t + deep, ')', deep);
    mpconn_value *v = NULL;
    CHECK_INT(mpconn_value_parse(&v, t, 2 * deep, NULL, 0), MPCONN_ERR_LIMIT);
    memset(t, '-', deep);
    CHECK_INT(mpconn_value_parse(&v, t, deep, NULL, 0), MPCONN_ERR_SYNTAX);
    free(t);
}

TEST(numbers_exact)
{
    mpconn_value *v = parse_ok("-0x8000000000000000");
    int64_t x = 0;
    CHECK_INT(mpconn_value_get_int(v, &x), 0);
    CHECK(x == INT64_MIN);
    mpconn_value_unref(v);
    v = parse_ok("0x8000000000000000");
    CHECK_INT(mpconn_value_get_int(v, &x), MPCONN_ERR_RANGE);
    mpconn_value_unref(v);
    /* The same big integer written four ways. */
    mpconn_value *a = parse_ok("1267650600228229401496703205376"); /* 2**100 */
    const char *same[] = {"0x10000000000000000000000000",
                          "0o2"
                          "000000000000000000000000000000000",
                          "0b1"
                          "0000000000000000000000000000000000000000000000000000000000000000"
                          "000000000000000000000000000000000000",
                          "1_267_650_600_228_229_401_496_703_205_376"};
    for (size_t i = 0; i < 4; i++) {
        mpconn_value *b = parse_ok(same[i]);
        CHECK(mpconn_value_equal(a, b));
        mpconn_value_unref(b);
    }
    const uint8_t *mag;
    size_t len;
    int neg;
    CHECK_INT(mpconn_value_get_bigint(a, &neg, &mag, &len), 0);
    CHECK(!neg && len == 13 && mag[0] == 0x10);
    for (size_t i = 1; i < len; i++)
        CHECK(mag[i] == 0);
    mpconn_value_unref(a);
    /* Floats are correctly rounded, underscores and all. */
    double d = 0;
    v = parse_ok("0.1");
    CHECK_INT(mpconn_value_get_float(v, &d), 0);
    CHECK(d == 0.1);
    mpconn_value_unref(v);
    v = parse_ok("2.2250738585072011e-308");
    CHECK_INT(mpconn_value_get_float(v, &d), 0);
    CHECK(d == 2.2250738585072011e-308);
    mpconn_value_unref(v);
    v = parse_ok("1"
                 "000000000000000000000000000000000000000000000000000000000000.000000001e-60");
    CHECK_INT(mpconn_value_get_float(v, &d), 0);
    CHECK(d == 1.0);
    mpconn_value_unref(v);
    v = parse_ok("-0.0");
    CHECK_INT(mpconn_value_get_float(v, &d), 0);
    CHECK(d == 0 && signbit(d));
    mpconn_value_unref(v);
    v = parse_ok("1e-400");
    CHECK_INT(mpconn_value_get_float(v, &d), 0);
    CHECK(d == 0 && !signbit(d));
    mpconn_value_unref(v);
}

static mpconn_opts *digit_limit(size_t n)
{
    mpconn_opts *o = NULL;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_print_limits(o, 0, n), 0);
    return o;
}

static char *repeat(char c, size_t n)
{
    char *t = malloc(n + 1);
    memset(t, c, n);
    t[n] = '\0';
    return t;
}

TEST(int_digit_limit)
{
    /* As CPython's int(): 4300 decimal digits by default, then ValueError. */
    char *t = repeat('7', 20001), err[256] = "";
    mpconn_value *v = NULL;
    CHECK_INT(mpconn_value_parse(&v, t, 4300, err, sizeof err), 0);
    mpconn_value_unref(v);
    v = NULL;
    CHECK_INT(mpconn_value_parse(&v, t, 4301, err, sizeof err), MPCONN_ERR_LIMIT);
    CHECK(v == NULL);
    CHECK(strstr(err, "column 1: ") == err);
    CHECK(strstr(err, "limit (4300 digits)") && strstr(err, "has 4301 digits"));
    t[0] = '0';
    memset(t, '0', 4301); /* zeros count too, as in CPython */
    CHECK_INT(mpconn_value_parse(&v, t, 4301, err, sizeof err), MPCONN_ERR_LIMIT);
    memset(t, '7', 4301);
    /* Other bases are not limited, in CPython either. */
    char *hex = repeat('f', 20000);
    hex[0] = '0';
    hex[1] = 'x';
    CHECK_INT(mpconn_value_parse(&v, hex, 20000, err, sizeof err), 0);
    mpconn_value_unref(v);
    free(hex);
    /* A raised limit; and lifted. */
    mpconn_opts *o = digit_limit(10000);
    CHECK_INT(mpconn_value_parse_opts(&v, t, 10000, o, err, sizeof err), 0);
    mpconn_value_unref(v);
    CHECK_INT(mpconn_value_parse_opts(&v, t, 10001, o, err, sizeof err), MPCONN_ERR_LIMIT);
    CHECK(strstr(err, "limit (10000 digits)") && strstr(err, "has 10001 digits"));
    mpconn_opts_free(o);
    o = digit_limit(MPCONN_UNLIMITED);
    CHECK_INT(mpconn_value_parse_opts(&v, t, 20001, o, err, sizeof err), 0);
    mpconn_value_unref(v);
    mpconn_opts_free(o);
    CHECK_INT(mpconn_value_parse_opts(&v, t, 4300, NULL, err, sizeof err), 0);
    mpconn_value_unref(v);
    free(t);
}

/* Decimal text to int and back, with the limit lifted, across the sizes
 * where the conversions change method (leaves, reciprocal levels). The two
 * directions use different algorithms (products of powers, divisions by
 * reciprocals), so their agreement checks both; test_repr checks against
 * schoolbook arithmetic. */
TEST(big_decimal_round_trip)
{
    mpconn_opts *o = digit_limit(MPCONN_UNLIMITED);
    uint64_t seed = 99;
    size_t sizes[] = {19, 20, 255, 256, 257, 513, 4096, 4097, 9000, 40000, 70000};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        for (int rep = 0; rep < 3; rep++) {
            size_t n = sizes[si];
            char *t = repeat('9', n + 1);
            t[0] = '-';
            for (size_t i = 1; rep == 0 && i <= n; i++) {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                t[i] = (char)('0' + (seed >> 33) % 10);
            }
            if (rep == 2)
                memset(t + 2, '0', n - 1); /* 10^(n-1): long zero runs */
            t[1] = rep == 0 ? '3' : t[1];
            mpconn_value *v = NULL;
            char *s = NULL, err[256] = "";
            size_t len = 0;
            CHECK_INT(mpconn_value_parse_opts(&v, t, n + 1, o, err, sizeof err), 0);
            CHECK_INT(mpconn_value_repr_opts(v, o, &s, &len, err, sizeof err), 0);
            CHECK_INT(len, n + 1);
            CHECK(memcmp(s, t, len) == 0);
            free(s);
            mpconn_value_unref(v);
            free(t);
        }
    }
    mpconn_opts_free(o);
}

TEST(lone_surrogates)
{
    /* '\ud800' makes a str holding Python's "surrogatepass" bytes: each
     * surrogate its own 3-byte sequence, a pair not joined. */
    static const struct {
        const char *text, *bytes, *repr;
    } cases[] = {
        {"'\\ud800'", "\xed\xa0\x80", "'\\ud800'"},
        {"'a\\udfffb'",
         "a\xed\xbf\xbf"
         "b",
         "'a\\udfffb'"},
        {"'\\ud83d\\ude00'", "\xed\xa0\xbd\xed\xb8\x80", "'\\ud83d\\ude00'"},
        {"'x' '\\U0000dc00'", "x\xed\xb0\x80", "'x\\udc00'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mpconn_value *v = NULL;
        char err[256] = "", *s = NULL;
        CHECK_INT(mpconn_value_parse(&v, cases[i].text, strlen(cases[i].text), err, sizeof err), 0);
        const char *p;
        size_t n;
        CHECK_INT(mpconn_value_get_str(v, &p, &n), 0);
        CHECK_INT(n, strlen(cases[i].bytes));
        CHECK_MEM(p, cases[i].bytes, n);
        CHECK_INT(mpconn_value_repr(v, &s, NULL), 0);
        CHECK_STR(s, cases[i].repr);
        /* Flagged, and the same value as one made from those bytes. */
        CHECK_INT(mpconn_value_str_surrogates(v), 1);
        mpconn_value *w = mpconn_value_strn_surrogatepass(cases[i].bytes, n);
        CHECK(w && mpconn_value_equal(v, w));
        mpconn_value_unref(w);
        free(s);
        mpconn_value_unref(v);
    }
}

TEST(values_match_api)
{
    mpconn_value *want = mpconn_value_dict();
    mpconn_value *l = mpconn_value_list();
    CHECK_INT(mpconn_value_append(l, mpconn_value_int(1)), 0);
    CHECK_INT(mpconn_value_append(l, mpconn_value_float(2.5)), 0);
    CHECK_INT(mpconn_value_append(l, mpconn_value_strn("x\0y", 3)), 0);
    CHECK_INT(mpconn_value_append(l, mpconn_value_bytes("\0\xff", 2)), 0);
    CHECK_INT(mpconn_value_dict_set(want, mpconn_value_str("k"), l), 0);
    mpconn_value *s = mpconn_value_set();
    CHECK_INT(mpconn_value_add(s, mpconn_value_none()), 0);
    CHECK_INT(mpconn_value_dict_set(want, mpconn_value_bool(0), s), 0);
    mpconn_value *got = parse_ok("{'k': [1, 2.5, 'x\\x00y', b'\\x00\\xff'], False: {None}}");
    CHECK(mpconn_value_equal(got, want));
    CHECK_INT(mpconn_value_type(mpconn_value_dict_get_str(got, "k")), MPCONN_LIST);
    mpconn_value_unref(got);
    /* One difference must show. */
    got = parse_ok("{'k': [1, 2.5, 'x\\x00y', b'\\x00\\xfe'], False: {None}}");
    CHECK(!mpconn_value_equal(got, want));
    mpconn_value_unref(got);
    mpconn_value_unref(want);
}

TEST(repr_round_trip)
{
    /* repr's output is a literal that parses back to an equal value. */
    const char *texts[] = {
        "{'a': (1, [2.5, None, True]), (1, 'x'): b'\\x00\\'\"'}",
        "['\\U0001f600\\u200b\\x7f\\'\"', -123456789012345678901234567890, 1e+300, -0.0]",
        "({1, 2}, set(), (), (1,), [[], {}])",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        mpconn_value *a = parse_ok(texts[i]);
        char *s = NULL;
        CHECK_INT(mpconn_value_repr(a, &s, NULL), 0);
        mpconn_value *b = parse_ok(s);
        CHECK(mpconn_value_equal(a, b));
        free(s);
        mpconn_value_unref(a);
        mpconn_value_unref(b);
    }
}

TESTLIB_MAIN
