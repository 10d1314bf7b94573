/* repr(): CPython's text for every value type, checked against the pickle
 * vectors (decoded, then printed), tables made with CPython, and independent
 * arithmetic for big integers. */
#include "mpconn.h"
#include "testlib.h"
#include "proto/pickle.h"
#include "conn/opts.h"
#include "proto/text_internal.h"
#include "proto/value_internal.h"

#include <errno.h>
#include <math.h>

static char *repr(const mpconn_value *v)
{
    char *s = NULL;
    size_t len = 0;
    CHECK(v != NULL);
    CHECK_INT(mpconn_value_repr(v, &s, &len), 0);
    CHECK(s != NULL);
    CHECK_INT(strlen(s), len);
    return s;
}

/* Checks repr(v) == want and frees v. */
static void check_repr(mpconn_value *v, const char *want)
{
    char *s = repr(v);
    CHECK_STR(s, want);
    free(s);
    mpconn_value_unref(v);
}

TEST(vectors)
{
    char *all = testlib_read_file(testlib_data_path("pickle.jsonl"), NULL);
    size_t checked = 0;
    for (char *save = NULL, *l = strtok_r(all, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char *expect = testlib_json_str(l, "expect");
        if (expect && strcmp(expect, "value") == 0) {
            char *hex = testlib_json_str(l, "pickle_hex"), *want = testlib_json_str(l, "repr");
            size_t n;
            unsigned char *pk = testlib_unhex(hex, &n);
            mpconn_value *v = NULL;
            char err[256] = "";
            if (mpci_pickle_decode(pk, n, NULL, &v, err, sizeof err) != 0) {
                fprintf(stderr, "decode failed: %s: %s\n", err, l);
                exit(1);
            }
            char *got = repr(v);
            if (strcmp(got, want) != 0)
                fprintf(stderr, "row: %.200s\n", l);
            CHECK_STR(got, want);
            free(got);
            mpconn_value_unref(v);
            free(pk);
            free(hex);
            free(want);
            checked++;
        }
        free(expect);
    }
    free(all);
    CHECK(checked >= 300);
}

TEST(scalars)
{
    check_repr(mpconn_value_none(), "None");
    check_repr(mpconn_value_bool(1), "True");
    check_repr(mpconn_value_bool(0), "False");
    check_repr(mpconn_value_int(0), "0");
    check_repr(mpconn_value_int(-42), "-42");
    check_repr(mpconn_value_int(INT64_MAX), "9223372036854775807");
    check_repr(mpconn_value_int(INT64_MIN), "-9223372036854775808");
}

TEST(floats)
{
    static const struct {
        double d;
        const char *want;
    } cases[] = {
        {0.1, "0.1"},
        {1e16, "1e+16"},
        {1e-05, "1e-05"},
        {0.0001, "0.0001"},
        {1.0, "1.0"},
        {-0.0, "-0.0"},
        {0.0, "0.0"},
        {123456789012345.0, "123456789012345.0"},
        {9999999999999998.0, "9999999999999998.0"},
        {1.2345678901234567e+19, "1.2345678901234567e+19"},
        {5e-324, "5e-324"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {2.5e-5, "2.5e-05"},
        {0.30000000000000004, "0.30000000000000004"},
        {1e22, "1e+22"},
        {-1.5, "-1.5"},
        {1e100, "1e+100"},
        {1.0 / 3, "0.3333333333333333"},
        {7.120236347223045e-307, "7.120236347223045e-307"}, /* 2^-1017: lopsided interval */
        {0x1p-1022, "2.2250738585072014e-308"},
        {0x1p+1023, "8.98846567431158e+307"},
        {INFINITY, "inf"},
        {-INFINITY, "-inf"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_repr(mpconn_value_float(cases[i].d), cases[i].want);
    check_repr(mpconn_value_float(NAN), "nan");
}

/* Expected texts produced by CPython 3.11's repr(). */
static const struct {
    const char *in;
    size_t len;
    const char *want;
} str_cases[] = {
    {"", 0, "''"},
    {"a", 1, "'a'"},
    {"it's", 4, "\"it's\""},
    {"say \"hi\"", 8, "'say \"hi\"'"},
    {"it's \"x\"", 8, "'it\\'s \"x\"'"},
    {"a\011b\012c\015d\\e", 9, "'a\\tb\\nc\\rd\\\\e'"},
    {"\000\001\037\177\302\200\302\237\302\240\302\255", 12,
     "'\\x00\\x01\\x1f\\x7f\\x80\\x9f\\xa0\\xad'"},
    {"caf\303\251", 5, "'caf\303\251'"},
    {"\346\227\245\346\234\254", 6, "'\346\227\245\346\234\254'"},
    {"\360\237\230\200 ok", 7, "'\360\237\230\200 ok'"},
    {"\342\200\213\342\200\250\357\273\277", 9, "'\\u200b\\u2028\\ufeff'"},
    {"\363\240\200\201\364\217\277\277\363\260\200\200", 12, "'\\U000e0001\\U0010ffff\\U000f0000'"},
    {"\315\270\314\200", 4, "'\\u0378\314\200'"},
    {"e\314\201", 3, "'e\314\201'"},
    {"\357\277\275\357\277\277", 6, "'\357\277\275\\uffff'"},
    {"'\"", 2, "'\\'\"'"},
    {"\\'", 2, "\"\\\\'\""},
    {"\360\235\220\200", 4, "'\360\235\220\200'"},
};

TEST(strings)
{
    for (size_t i = 0; i < sizeof str_cases / sizeof str_cases[0]; i++)
        check_repr(mpconn_value_strn(str_cases[i].in, str_cases[i].len), str_cases[i].want);
}

TEST(bytes)
{
    static const struct {
        const char *in;
        size_t len;
        const char *want;
    } cases[] = {
        {"", 0, "b''"},
        {"'", 1, "b\"'\""},
        {"\"", 1, "b'\"'"},
        {"'\"", 2, "b'\\'\"'"},
        {"\000\177\200\377", 4, "b'\\x00\\x7f\\x80\\xff'"},
        {"a\\b\011\012\015", 6, "b'a\\\\b\\t\\n\\r'"},
        {"\034\035\036\037 !\"#", 8, "b'\\x1c\\x1d\\x1e\\x1f !\"#'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_repr(mpconn_value_bytes(cases[i].in, cases[i].len), cases[i].want);
    check_repr(mpconn_value_bytearray("abc", 3), "bytearray(b'abc')");
    check_repr(mpconn_value_bytearray("", 0), "bytearray(b'')");
    check_repr(mpconn_value_bytearray("\xff'", 2), "bytearray(b\"\\xff\\'\")");
}

/* Decimal of a big-endian magnitude by decimal-digit Horner steps: slow and
 * obviously right, unlike the word division repr uses. */
static char *slow_decimal(int neg, const uint8_t *mag, size_t len)
{
    size_t cap = len * 3 + 2, nd = 1;
    unsigned char *d = calloc(cap, 1); /* little-endian decimal digits */
    for (size_t i = 0; i < len; i++) {
        unsigned carry = mag[i];
        for (size_t k = 0; k < nd; k++) {
            unsigned x = d[k] * 256u + carry;
            d[k] = (unsigned char)(x % 10);
            carry = x / 10;
        }
        while (carry) {
            d[nd++] = (unsigned char)(carry % 10);
            carry /= 10;
        }
    }
    while (nd > 1 && d[nd - 1] == 0)
        nd--;
    char *s = malloc(nd + 2), *p = s;
    if (neg && !(nd == 1 && d[0] == 0))
        *p++ = '-';
    for (size_t k = nd; k-- > 0;)
        *p++ = (char)('0' + d[k]);
    *p = '\0';
    free(d);
    return s;
}

TEST(bigints)
{
    static const uint8_t two64[] = {1, 0, 0, 0, 0, 0, 0, 0, 0};
    check_repr(mpconn_value_bigint(0, two64, sizeof two64), "18446744073709551616");
    check_repr(mpconn_value_bigint(1, two64, sizeof two64), "-18446744073709551616");
    static const uint8_t i64min[] = {0x80, 0, 0, 0, 0, 0, 0, 0};
    check_repr(mpconn_value_bigint(1, i64min, sizeof i64min), "-9223372036854775808");
    check_repr(mpconn_value_bigint(0, i64min, sizeof i64min), "9223372036854775808");
    /* Sizes around word and 10^9 boundaries, and a few thousand digits. */
    uint64_t seed = 12345;
    size_t sizes[] = {9, 10, 11, 12, 13, 16, 17, 31, 32, 33, 100, 401, 1000, 1500};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        for (int rep = 0; rep < 3; rep++) {
            size_t len = sizes[si];
            uint8_t *mag = malloc(len);
            for (size_t i = 0; i < len; i++) {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                mag[i] = (uint8_t)(seed >> 56);
            }
            if (rep == 1)
                memset(mag + 1, 0, len - 1); /* 2^k-like: long zero runs */
            if (rep == 2)
                memset(mag + 1, 0xff, len - 1);
            mag[0] |= 1;
            char *want = slow_decimal(rep == 1, mag, len);
            check_repr(mpconn_value_bigint(rep == 1, mag, len), want);
            free(want);
            free(mag);
        }
    }
}

/* Against schoolbook arithmetic, past the sizes where the conversion
 * starts dividing by reciprocals (the digit limit lifted). */
TEST(bigints_large)
{
    mpconn_opts *o = NULL;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_print_limits(o, 0, MPCONN_UNLIMITED), 0);
    uint64_t seed = 777;
    size_t sizes[] = {1800, 3500, 7000, 10000};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t len = sizes[si];
        uint8_t *mag = malloc(len);
        for (size_t i = 0; i < len; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            mag[i] = (uint8_t)(seed >> 56);
        }
        mag[0] |= 1;
        char *want = slow_decimal(si & 1, mag, len), *s = NULL;
        mpconn_value *v = mpconn_value_bigint(si & 1, mag, len);
        CHECK_INT(mpconn_value_repr_opts(v, o, &s, NULL, NULL, 0), 0);
        CHECK_STR(s, want);
        free(s);
        mpconn_value_unref(v);
        free(want);
        free(mag);
    }
    mpconn_opts_free(o);
}

/* 10^n as a value, made through the parser with the limit lifted. */
static mpconn_value *power_of_ten(size_t n, int minus_one)
{
    mpconn_opts *o = NULL;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_print_limits(o, 0, MPCONN_UNLIMITED), 0);
    char *t = malloc(n + 2);
    t[0] = '1';
    memset(t + 1, '0', n);
    if (minus_one)
        memset(t, '9', n);
    mpconn_value *v = NULL;
    CHECK_INT(mpconn_value_parse_opts(&v, t, minus_one ? n : n + 1, o, NULL, 0), 0);
    free(t);
    mpconn_opts_free(o);
    return v;
}

TEST(int_digit_limit)
{
    /* str() of an int over 4300 digits is a ValueError in CPython. */
    char *s = NULL, err[256] = "";
    size_t len = 0;
    mpconn_value *v = power_of_ten(4300, 1); /* 4300 nines */
    CHECK_INT(mpconn_value_repr(v, &s, &len), 0);
    CHECK_INT(len, 4300);
    free(s);
    mpconn_value_unref(v);
    /* 10^4300 has 4301 digits, but its bit length allows 4300 too: the
     * case where the digits are counted. */
    v = power_of_ten(4300, 0);
    CHECK_INT(mpconn_value_repr_opts(v, NULL, &s, &len, err, sizeof err), MPCONN_ERR_LIMIT);
    CHECK(strstr(err, "limit (4300 digits)") && strstr(err, "has 4301 digits"));
    CHECK_INT(mpconn_value_json(v, &s, &len), MPCONN_ERR_LIMIT);
    mpconn_value *l = mpconn_value_list();
    CHECK_INT(mpconn_value_append(l, mpconn_value_ref(v)), 0);
    CHECK_INT(mpconn_value_repr(l, &s, &len), MPCONN_ERR_LIMIT);
    mpconn_value_unref(l);
    mpconn_opts *o = NULL;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_print_limits(o, 0, 4301), 0);
    CHECK_INT(mpconn_value_repr_opts(v, o, &s, &len, NULL, 0), 0);
    CHECK_INT(len, 4301);
    free(s);
    mpconn_value_unref(v);
    /* A megabyte of magnitude is refused from its length alone. */
    size_t big = (size_t)1 << 20;
    uint8_t *mag = malloc(big);
    memset(mag, 0xA5, big);
    v = mpconn_value_bigint(1, mag, big);
    free(mag);
    CHECK_INT(mpconn_value_repr_opts(v, o, &s, &len, err, sizeof err), MPCONN_ERR_LIMIT);
    CHECK(strstr(err, "limit (4301 digits)") && strstr(err, "at least 2525223 digits"));
    mpconn_value_unref(v);
    /* CPython's floor for the limit is 640. */
    CHECK_INT(mpconn_opts_set_print_limits(o, 0, 639), -EINVAL);
    CHECK_INT(mpconn_opts_set_print_limits(o, 0, 640), 0);
    mpconn_opts_free(o);
}

/* x = [x, x] nested depth times: 2^depth leaves from depth + 1 lists. */
static mpconn_value *shared_tree(int depth)
{
    mpconn_value *x = mpconn_value_list();
    for (int i = 0; i < depth; i++) {
        mpconn_value *n = mpconn_value_list();
        CHECK_INT(mpconn_value_append(n, mpconn_value_ref(x)), 0);
        CHECK_INT(mpconn_value_append(n, x), 0);
        x = n;
    }
    return x;
}

TEST(print_limit)
{
    /* Depth 32 would print 2^32 times "[]": with the default limit the
     * writer stops at 128 MiB and says why. */
    mpconn_value *bomb = shared_tree(32);
    char *s = (char *)&s, err[256] = "";
    size_t len = 0;
    CHECK_INT(mpconn_value_repr_opts(bomb, NULL, &s, &len, err, sizeof err), MPCONN_ERR_LIMIT);
    CHECK(strstr(err, "repr longer than 67108864 bytes") != NULL);
    CHECK_INT(mpconn_value_json_opts(bomb, NULL, &s, &len, err, sizeof err), MPCONN_ERR_LIMIT);
    CHECK(strstr(err, "JSON longer than 67108864 bytes") != NULL);
    CHECK_INT(mpconn_value_repr(bomb, &s, &len), MPCONN_ERR_LIMIT);
    /* Truncated: the start of the text, as a smaller tree shows it. */
    mpconn_value *small = shared_tree(10);
    char *part = repr(small);
    mpconn_value_unref(small);
    char *want = malloc(1001);
    memset(want, '[', 22);
    memcpy(want + 22, part, 1000 - 22);
    want[1000] = '\0';
    free(part);
    mpconn_opts *o = NULL;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_print_limits(o, 1000, 0), 0);
    CHECK_INT(mpconn_value_repr_opts(bomb, o, &s, &len, err, sizeof err), MPCONN_ERR_LIMIT);
    CHECK(strstr(err, "repr longer than 1000 bytes") != NULL);
    CHECK_INT(mpconn_opts_set_print_truncate(o, 1), 0);
    CHECK_INT(mpconn_value_repr_opts(bomb, o, &s, &len, NULL, 0), 1);
    CHECK_INT(len, 1000);
    CHECK_STR(s, want);
    free(s);
    CHECK_INT(mpconn_value_json_opts(bomb, o, &s, &len, NULL, 0), 1);
    CHECK_INT(len, 1000);
    CHECK_STR(s, want); /* the same text in JSON */
    free(s);
    free(want);
    /* The work done follows the text written, not the value's expansion. */
    mpci_print pr;
    mpci_print_init(&pr, &o->print, NULL, 0);
    CHECK_INT(mpci_value_repr(bomb, &pr, &s, &len), 1);
    CHECK(pr.work <= 1000);
    free(s);
    mpci_print_init(&pr, &o->print, NULL, 0);
    CHECK_INT(mpci_value_json(bomb, &pr, &s, &len), 1);
    CHECK(pr.work <= 2 * 1000);
    free(s);
    /* A text that fits exactly is not cut. */
    mpconn_value *t = mpconn_value_str("abc");
    CHECK_INT(mpconn_opts_set_print_limits(o, 5, 0), 0);
    CHECK_INT(mpconn_value_repr_opts(t, o, &s, &len, NULL, 0), 0);
    CHECK_STR(s, "'abc'");
    free(s);
    CHECK_INT(mpconn_opts_set_print_limits(o, 4, 0), 0);
    CHECK_INT(mpconn_value_repr_opts(t, o, &s, &len, NULL, 0), 1);
    CHECK_STR(s, "'abc");
    free(s);
    mpconn_value_unref(t);
    /* The cut never splits a character. */
    t = mpconn_value_str("\xc3\xa9\xc3\xa9\xe2\x82\xac");
    size_t cuts[][2] = {{1, 1}, {2, 1}, {3, 3}, {4, 3}, {5, 5}, {6, 5}, {7, 5}, {8, 8}};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        CHECK_INT(mpconn_opts_set_print_limits(o, cuts[i][0], 0), 0);
        CHECK_INT(mpconn_value_repr_opts(t, o, &s, &len, NULL, 0), 1);
        CHECK_INT(len, cuts[i][1]);
        free(s);
    }
    mpconn_value_unref(t);
    mpconn_opts_free(o);
    mpconn_value_unref(bomb);
}

/* Strings made to hold lone surrogates in their "surrogatepass" bytes. */
static mpconn_value *raw_str(const char *bytes, size_t n)
{
    char *d;
    mpconn_value *v = mpci_value_alloc_str(MPCONN_STR, n, &d);
    CHECK(v != NULL);
    memcpy(d, bytes, n);
    return v;
}

TEST(lone_surrogates)
{
    check_repr(raw_str("a\xed\xa0\x80"
                       "b",
                       5),
               "'a\\ud800b'");
    check_repr(raw_str("\xed\xbf\xbf", 3), "'\\udfff'");
    /* A pair stays two escapes, as in CPython. */
    check_repr(raw_str("\xed\xa0\xbd\xed\xb8\x80", 6), "'\\ud83d\\ude00'");
    char *s = NULL;
    mpconn_value *v = raw_str("\xed\xb0\x80\xf0\x9f\x98\x80", 7);
    CHECK_INT(mpconn_value_json(v, &s, NULL), 0);
    CHECK_STR(s, "\"\\udc00\\ud83d\\ude00\"");
    free(s);
    mpconn_value_unref(v);
}

TEST(containers)
{
    check_repr(mpconn_value_list(), "[]");
    check_repr(mpconn_value_tuple(), "()");
    check_repr(mpconn_value_dict(), "{}");
    check_repr(mpconn_value_set(), "set()");
    check_repr(mpconn_value_frozenset(), "frozenset()");

    mpconn_value *t = mpconn_value_tuple();
    CHECK_INT(mpconn_value_append(t, mpconn_value_int(1)), 0);
    check_repr(mpconn_value_ref(t), "(1,)");
    CHECK_INT(mpconn_value_append(t, mpconn_value_int(2)), 0);
    check_repr(t, "(1, 2)");

    mpconn_value *l = mpconn_value_list();
    CHECK_INT(mpconn_value_append(l, mpconn_value_int(1)), 0);
    CHECK_INT(mpconn_value_append(l, mpconn_value_str("two")), 0);
    CHECK_INT(mpconn_value_append(l, mpconn_value_float(3.0)), 0);
    CHECK_INT(mpconn_value_append(l, mpconn_value_none()), 0);
    mpconn_value *inner = mpconn_value_tuple();
    CHECK_INT(mpconn_value_append(inner, mpconn_value_tuple()), 0);
    CHECK_INT(mpconn_value_append(l, inner), 0);
    check_repr(l, "[1, 'two', 3.0, None, ((),)]");

    mpconn_value *d = mpconn_value_dict();
    CHECK_INT(mpconn_value_dict_set(d, mpconn_value_str("a"), mpconn_value_int(1)), 0);
    mpconn_value *k = mpconn_value_tuple();
    CHECK_INT(mpconn_value_append(k, mpconn_value_int(1)), 0);
    CHECK_INT(mpconn_value_append(k, mpconn_value_bytes("x", 1)), 0);
    CHECK_INT(mpconn_value_dict_set(d, k, mpconn_value_list()), 0);
    CHECK_INT(mpconn_value_dict_set(d, mpconn_value_str("a"), mpconn_value_int(2)), 0);
    check_repr(d, "{'a': 2, (1, b'x'): []}");

    mpconn_value *s = mpconn_value_set();
    CHECK_INT(mpconn_value_add(s, mpconn_value_int(7)), 0);
    check_repr(mpconn_value_ref(s), "{7}");
    CHECK_INT(mpconn_value_add(s, mpconn_value_int(8)), 0);
    check_repr(s, "{7, 8}");

    mpconn_value *fs = mpconn_value_frozenset();
    CHECK_INT(mpconn_value_add(fs, mpconn_value_str("a")), 0);
    check_repr(fs, "frozenset({'a'})");
}

TEST(shared_and_recursive)
{
    mpconn_value *x = mpconn_value_list();
    CHECK_INT(mpconn_value_append(x, mpconn_value_int(1)), 0);
    mpconn_value *l = mpconn_value_list();
    CHECK_INT(mpconn_value_append(l, mpconn_value_ref(x)), 0);
    CHECK_INT(mpconn_value_append(l, x), 0);
    check_repr(l, "[[1], [1]]"); /* shared is not recursive */

    mpconn_value *r = mpconn_value_list();
    CHECK_INT(mpconn_value_append(r, mpconn_value_int(0)), 0);
    CHECK_INT(mpconn_value_append(r, mpconn_value_ref(r)), 0);
    char *s = repr(r);
    CHECK_STR(s, "[0, [...]]");
    free(s);
    mpconn_value *d = mpconn_value_dict();
    CHECK_INT(mpconn_value_dict_set(d, mpconn_value_str("me"), mpconn_value_ref(d)), 0);
    CHECK_INT(mpconn_value_dict_set(d, mpconn_value_str("r"), mpconn_value_ref(r)), 0);
    s = repr(d);
    CHECK_STR(s, "{'me': {...}, 'r': [0, [...]]}");
    free(s);
    mpconn_value *roots[] = {r, d};
    mpci_value_break_cycles(roots, 2);
    mpconn_value_unref(r);
    mpconn_value_unref(d);
}

TEST(deep_nesting)
{
    /* 100,000 levels: an explicit stack, not the C stack. */
    const size_t depth = 100000;
    mpconn_value *v = mpconn_value_list();
    for (size_t i = 0; i < depth; i++) {
        mpconn_value *outer = mpconn_value_list();
        CHECK_INT(mpconn_value_append(outer, v), 0);
        v = outer;
    }
    char *s = NULL;
    size_t len = 0;
    CHECK_INT(mpconn_value_repr(v, &s, &len), 0);
    CHECK_INT(len, 2 * (depth + 1));
    for (size_t i = 0; i <= depth; i++)
        CHECK(s[i] == '[' && s[len - 1 - i] == ']');
    free(s);
    mpconn_value_unref(v);
}

TEST(bad_args)
{
    char *s = NULL;
    CHECK_INT(mpconn_value_repr(NULL, &s, NULL), -EINVAL);
    mpconn_value *v = mpconn_value_int(5);
    CHECK_INT(mpconn_value_repr(v, NULL, NULL), -EINVAL);
    CHECK_INT(mpconn_value_repr(v, &s, NULL), 0); /* len is optional */
    CHECK_STR(s, "5");
    free(s);
    mpconn_value_unref(v);
}

TESTLIB_MAIN
