/* mpconn_pack and mpconn_unpack: formats, exact lengths, optional keys and
 * the path named in a mismatch. */
#include "testlib.h"

#include "mpconn.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

static mpconn_value *sample(void)
{
    mpconn_value *v = NULL;
    mpconn_pack(&v, NULL, 0, "{s:s, s:[i, f, s], s:y#, s:b, s:n, s:I}", "op", "add", "args", 1, 2.5,
                "x", "blob", "\x00\x01", (size_t)2, "flag", 1, "none", "big", (int64_t)1 << 40);
    return v;
}

TEST(pack_builds)
{
    mpconn_value *v = sample();
    CHECK(v != NULL);
    CHECK(mpconn_value_type(v) == MPCONN_DICT);
    CHECK_INT(mpconn_value_len(v), 6);
    mpconn_value *args = mpconn_value_dict_get_str(v, "args");
    CHECK_INT(mpconn_value_len(args), 3);
    mpconn_value *want = mpconn_value_list();
    mpconn_value_append(want, mpconn_value_int(1));
    mpconn_value_append(want, mpconn_value_float(2.5));
    mpconn_value_append(want, mpconn_value_str("x"));
    CHECK(mpconn_value_equal(args, want));
    mpconn_value_unref(want);
    mpconn_value_unref(v);
}

TEST(pack_refs)
{
    mpconn_value *s = mpconn_value_str("s");
    mpconn_value *v = NULL;
    CHECK_INT(mpconn_pack(&v, NULL, 0, "(O, o, s#)", s, mpconn_value_int(7), "abc", (size_t)2), 0);
    CHECK(mpconn_value_item(v, 0) == s);
    const char *str;
    size_t n;
    CHECK_INT(mpconn_value_get_str(mpconn_value_item(v, 2), &str, &n), 0);
    CHECK_INT(n, 2);
    mpconn_value_unref(s); /* 'O' took its own reference */
    CHECK(mpconn_value_type(mpconn_value_item(v, 0)) == MPCONN_STR);
    mpconn_value_unref(v);
}

TEST(pack_bad_format)
{
    /* A bad format is MPCONN_ERR_SYNTAX, never a NULL that reads as "out of
     * memory"; errmsg says where. */
    char err[128];
    mpconn_value *v = mpconn_value_none();
    CHECK_INT(mpconn_pack(&v, err, sizeof err, "[i", 1), MPCONN_ERR_SYNTAX);
    CHECK(v == NULL);
    CHECK_STR(err, "bad format at offset 2: unclosed container");
    CHECK_INT(mpconn_pack(&v, err, sizeof err, "q"), MPCONN_ERR_SYNTAX);
    CHECK_STR(err, "bad format at offset 0: unknown letter");
    CHECK_INT(mpconn_pack(&v, err, sizeof err, "i i", 1, 2), MPCONN_ERR_SYNTAX);
    CHECK_STR(err, "bad format at offset 2: text after the value");
    CHECK_INT(mpconn_pack(&v, err, sizeof err, "{s}", "k"), MPCONN_ERR_SYNTAX);
    CHECK_INT(mpconn_pack(&v, err, sizeof err, "y", "x"), MPCONN_ERR_SYNTAX);
    CHECK_INT(mpconn_pack(&v, err, sizeof err, ""), MPCONN_ERR_SYNTAX);
    CHECK_INT(mpconn_pack(&v, NULL, 0, "q"), MPCONN_ERR_SYNTAX);
    CHECK_INT(mpconn_pack(NULL, err, sizeof err, "n"), -EINVAL);
    CHECK(v == NULL);
}

TEST(pack_null_value_is_enomem)
{
    /* A NULL from a failed constructor, as the builders take it. */
    char err[128];
    mpconn_value *v = NULL;
    CHECK_INT(mpconn_pack(&v, err, sizeof err, "[i o]", 1, (mpconn_value *)NULL), -ENOMEM);
    CHECK(v == NULL);
    CHECK(strstr(err, "NULL value") != NULL);
}

TEST(pack_unhashable_key)
{
    char err[128];
    mpconn_value *v = NULL;
    CHECK_INT(mpconn_pack(&v, err, sizeof err, "{[]:n}"), MPCONN_ERR_UNHASHABLE);
    CHECK(v == NULL);
    CHECK_STR(err, "unhashable value");
}

TEST(pack_invalid_utf8_escaped)
{
    /* 's' is mpconn_value_str: invalid bytes become lone surrogates. */
    mpconn_value *v = NULL;
    CHECK_INT(mpconn_pack(&v, NULL, 0, "s", "a\xff"), 0);
    CHECK(mpconn_value_str_surrogates(v));
    const char *s;
    size_t n;
    CHECK_INT(mpconn_value_get_str(v, &s, &n), 0);
    CHECK_MEM(s, "a\xed\xb3\xbf", 4);
    CHECK_INT(n, 4);
    mpconn_value_unref(v);
}

TEST(unpack_fields)
{
    mpconn_value *v = sample();
    const char *op, *x;
    int i, flag;
    double f;
    const void *blob;
    size_t blen;
    int64_t big;
    char err[128];
    CHECK_INT(mpconn_unpack(v, err, sizeof err, "{s:s, s:[i, f, s], s:y#, s:b, s:n, s:I}", "op",
                            &op, "args", &i, &f, &x, "blob", &blob, &blen, "flag", &flag, "none",
                            "big", &big),
              0);
    CHECK_STR(op, "add");
    CHECK_INT(i, 1);
    CHECK(f == 2.5);
    CHECK_STR(x, "x");
    CHECK_INT(blen, 2);
    CHECK_INT(flag, 1);
    CHECK(big == (int64_t)1 << 40);
    /* f accepts an int. */
    CHECK_INT(mpconn_unpack(v, err, sizeof err, "{s:[f,f,s]}", "args", &f, &f, &x), 0);
    CHECK(f == 2.5);
    mpconn_value *o = NULL;
    CHECK_INT(mpconn_unpack(v, err, sizeof err, "{s:O}", "args", &o), 0);
    CHECK(o == mpconn_value_dict_get_str(v, "args"));
    mpconn_value_unref(v);
}

TEST(unpack_mismatch_path)
{
    mpconn_value *v = sample();
    const char *op, *x;
    int i, j;
    char err[128];
    CHECK_INT(
        mpconn_unpack(v, err, sizeof err, "{s:s, s:[i, i, s]}", "op", &op, "args", &i, &j, &x),
        MPCONN_ERR_TYPE);
    CHECK_STR(err, "['args'][1]: expected int, got float");
    double d;
    CHECK_INT(mpconn_unpack(v, err, sizeof err, "{s:[i, f]}", "args", &i, &d), MPCONN_ERR_TYPE);
    CHECK(strstr(err, "['args']") && strstr(err, "3"));
    CHECK_INT(mpconn_unpack(v, err, sizeof err, "{s:i}", "missing", &i), MPCONN_ERR_TYPE);
    CHECK_STR(err, "['missing']: missing key");
    CHECK_INT(mpconn_unpack(v, err, sizeof err, "[i]", &i), MPCONN_ERR_TYPE);
    CHECK_STR(err, "expected list, got dict");
    CHECK_INT(mpconn_unpack(v, err, sizeof err, "{s:(i,f,s)}", "args", &i, (double *)NULL, &x),
              MPCONN_ERR_TYPE);
    CHECK_STR(err, "['args']: expected tuple, got list");
    mpconn_value_unref(v);
}

TEST(unpack_optional)
{
    mpconn_value *v = sample();
    int timeout = 42, flag = 0;
    const char *a = "untouched", *b = "untouched";
    char err[128];
    CHECK_INT(mpconn_unpack(v, err, sizeof err, "{s:i?, s:[s,s]?, s:b?}", "timeout", &timeout,
                            "nolist", &a, &b, "flag", &flag),
              0);
    CHECK_INT(timeout, 42);
    CHECK_STR(a, "untouched");
    CHECK_INT(flag, 1);
    /* Present but of the wrong type is still an error. */
    CHECK_INT(mpconn_unpack(v, err, sizeof err, "{s:i?}", "op", &timeout), MPCONN_ERR_TYPE);
    CHECK_STR(err, "['op']: expected int, got str");
    mpconn_value_unref(v);
}

TEST(unpack_range)
{
    mpconn_value *v = NULL;
    CHECK_INT(mpconn_pack(&v, NULL, 0, "[I]", (int64_t)1 << 40), 0);
    int i;
    int64_t l;
    char err[128];
    CHECK_INT(mpconn_unpack(v, err, sizeof err, "[i]", &i), MPCONN_ERR_RANGE);
    CHECK_INT(mpconn_unpack(v, err, sizeof err, "[I]", &l), 0);
    mpconn_value_unref(v);
    v = mpconn_value_none();
    CHECK_INT(mpconn_unpack(v, err, sizeof err, "n"), 0);
    CHECK_INT(mpconn_unpack(v, err, sizeof err, "i", &i), MPCONN_ERR_TYPE);
    CHECK_STR(err, "expected int, got NoneType");
}

TESTLIB_MAIN
