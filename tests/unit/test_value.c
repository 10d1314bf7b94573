/* The value type: constructors, Python's equality and hashing rules, dict
 * and set behaviour, reference stealing, and deep values without recursion. */
#include "testlib.h"

#include "mpconn.h"
#include "proto/value_internal.h"

#include <errno.h>
#include <math.h>
#include <time.h>

TEST(scalars)
{
    mpconn_value *v = mpconn_value_int(-5);
    int64_t i;
    CHECK(mpconn_value_type(v) == MPCONN_INT);
    CHECK_INT(mpconn_value_get_int(v, &i), 0);
    CHECK_INT(i, -5);
    double d;
    CHECK_INT(mpconn_value_get_float(v, &d), 0);
    CHECK(d == -5.0);
    const char *s;
    CHECK_INT(mpconn_value_get_str(v, &s, NULL), MPCONN_ERR_TYPE);
    mpconn_value_unref(v);
    CHECK_STR(mpconn_type_name(MPCONN_FROZENSET), "frozenset");
    CHECK_STR(mpconn_type_name(MPCONN_NONE), "NoneType");
    mpconn_value_unref(NULL);
}

/* v is a str of exactly the n bytes want, flagged as holding surrogates
 * or not. */
static void check_str(mpconn_value *v, const char *want, size_t n, int surrogates)
{
    const char *s;
    size_t len;
    CHECK(v != NULL);
    CHECK_INT(mpconn_value_get_str(v, &s, &len), 0);
    CHECK_INT(len, n);
    CHECK_MEM(s, want, n);
    CHECK_INT(mpconn_value_str_surrogates(v), surrogates);
    mpconn_value_unref(v);
}

TEST(str_validation)
{
    check_str(mpconn_value_str("\xc3\xa9"), "\xc3\xa9", 2, 0);
    /* Not UTF-8: each bad byte B is U+DC00 + B, as CPython's
     * b.decode('utf-8', 'surrogateescape') (vectors from CPython 3.11). */
    check_str(mpconn_value_str("\xc0\x80"), "\xed\xb3\x80\xed\xb2\x80", 6, 1); /* overlong */
    check_str(mpconn_value_str("\xed\xa0\x80"), "\xed\xb3\xad\xed\xb2\xa0\xed\xb2\x80", 9,
              1); /* surrogate */
    check_str(mpconn_value_str("\xf4\x90\x80\x80"),
              "\xed\xb3\xb4\xed\xb2\x90\xed\xb2\x80\xed\xb2\x80", 12, 1);      /* > U+10FFFF */
    check_str(mpconn_value_str("\xe2\x82"), "\xed\xb3\xa2\xed\xb2\x82", 6, 1); /* truncated */
    check_str(mpconn_value_strn("a\xff"
                                "b\xc3\xa9\xe2\x82z",
                                8),
              "a\xed\xb3\xbf"
              "b\xc3\xa9\xed\xb3\xa2\xed\xb2\x82z",
              14, 1);
    mpconn_value *v = mpconn_value_strn("a\0b", 3);
    const char *s;
    size_t n;
    CHECK_INT(mpconn_value_get_str(v, &s, &n), 0);
    CHECK_INT(n, 3);
    CHECK_INT(s[3], 0);
    CHECK_INT(mpconn_value_len(v), 3);
    mpconn_value_unref(v);
}

TEST(constructors_take_null_data)
{
    /* NULL data with a length is that many zero bytes, never a NULL
     * result that a builder would take for -ENOMEM. */
    check_str(mpconn_value_str(NULL), "", 0, 0);
    check_str(mpconn_value_strn(NULL, 0), "", 0, 0);
    check_str(mpconn_value_strn(NULL, 3), "\0\0\0", 3, 0);
    check_str(mpconn_value_strn_surrogatepass(NULL, 2), "\0\0", 2, 0);
    mpconn_value *b = mpconn_value_bytes(NULL, 4);
    const void *p;
    size_t n;
    CHECK(b != NULL);
    CHECK_INT(mpconn_value_get_bytes(b, &p, &n), 0);
    CHECK_INT(n, 4);
    CHECK_MEM(p, "\0\0\0\0", 4);
    mpconn_value_unref(b);
    mpconn_value *ba = mpconn_value_bytearray(NULL, 2);
    CHECK(ba != NULL && mpconn_value_type(ba) == MPCONN_BYTEARRAY && mpconn_value_len(ba) == 2);
    mpconn_value_unref(ba);
    mpconn_value *z = mpconn_value_bigint(1, NULL, 5);
    int64_t i = -1;
    CHECK_INT(mpconn_value_get_int(z, &i), 0);
    CHECK_INT(i, 0);
    mpconn_value_unref(z);
    /* so a list built from them holds them all */
    mpconn_value *l = mpconn_value_list();
    CHECK_INT(mpconn_value_append(l, mpconn_value_str("\xff")), 0);
    CHECK_INT(mpconn_value_append(l, mpconn_value_bytes(NULL, 1)), 0);
    CHECK_INT(mpconn_value_len(l), 2);
    mpconn_value_unref(l);
}

TEST(bigint_normalised)
{
    const uint8_t small[] = {0, 0, 0x01, 0x00};
    mpconn_value *v = mpconn_value_bigint(1, small, sizeof small);
    int64_t i;
    CHECK_INT(mpconn_value_get_int(v, &i), 0);
    CHECK_INT(i, -256);
    mpconn_value *w = mpconn_value_int(-256);
    CHECK(mpconn_value_equal(v, w));
    mpconn_value_unref(v);
    mpconn_value_unref(w);
    const uint8_t min[] = {0x80, 0, 0, 0, 0, 0, 0, 0};
    v = mpconn_value_bigint(1, min, 8);
    CHECK_INT(mpconn_value_get_int(v, &i), 0);
    CHECK(i == INT64_MIN);
    mpconn_value_unref(v);
    v = mpconn_value_bigint(0, min, 8); /* 2**63 does not fit */
    CHECK_INT(mpconn_value_get_int(v, &i), MPCONN_ERR_RANGE);
    int neg;
    const uint8_t *mag;
    size_t len;
    CHECK_INT(mpconn_value_get_bigint(v, &neg, &mag, &len), 0);
    CHECK_INT(len, 8);
    CHECK_INT(mag[0], 0x80);
    double d;
    CHECK_INT(mpconn_value_get_float(v, &d), 0);
    CHECK(d == 9223372036854775808.0);
    /* 2**63 == 2.0**63 and they hash alike (found as a dict key). */
    mpconn_value *f = mpconn_value_float(9223372036854775808.0);
    CHECK(mpconn_value_equal(v, f));
    mpconn_value *dict = mpconn_value_dict();
    CHECK_INT(mpconn_value_dict_set(dict, mpconn_value_ref(v), mpconn_value_int(1)), 0);
    CHECK(mpconn_value_dict_get(dict, f) != NULL);
    mpconn_value_unref(dict);
    mpconn_value_unref(f);
    mpconn_value_unref(v);
    v = mpconn_value_int(0);
    CHECK_INT(mpconn_value_get_bigint(v, &neg, &mag, &len), 0);
    CHECK_INT(len, 0);
    mpconn_value_unref(v);
    /* 2**64 + 1 is not exactly a double: not equal to 2.0**64. */
    const uint8_t odd[] = {1, 0, 0, 0, 0, 0, 0, 0, 1};
    v = mpconn_value_bigint(0, odd, sizeof odd);
    f = mpconn_value_float(18446744073709551616.0);
    CHECK(!mpconn_value_equal(v, f));
    mpconn_value_unref(v);
    mpconn_value_unref(f);
}

TEST(numeric_equality_and_hash)
{
    mpconn_value *one = mpconn_value_int(1), *onef = mpconn_value_float(1.0),
                 *t = mpconn_value_bool(1);
    CHECK(mpconn_value_equal(one, onef));
    CHECK(mpconn_value_equal(one, t));
    CHECK(mpconn_value_equal(onef, t));
    mpconn_value *d = mpconn_value_dict();
    CHECK_INT(mpconn_value_dict_set(d, mpconn_value_ref(one), mpconn_value_str("int")), 0);
    /* Same key: the value is replaced and the first key kept. */
    CHECK_INT(mpconn_value_dict_set(d, mpconn_value_ref(onef), mpconn_value_str("float")), 0);
    CHECK_INT(mpconn_value_dict_set(d, t, mpconn_value_str("bool")), 0);
    CHECK_INT(mpconn_value_len(d), 1);
    CHECK(mpconn_value_type(mpconn_value_item(d, 0)) == MPCONN_INT);
    const char *s;
    CHECK_INT(mpconn_value_get_str(mpconn_value_dict_value(d, 0), &s, NULL), 0);
    CHECK_STR(s, "bool");
    mpconn_value_unref(d);
    mpconn_value *z = mpconn_value_float(0.0), *mz = mpconn_value_float(-0.0);
    CHECK(mpconn_value_equal(z, mz));
    mpconn_value *nan = mpconn_value_float(NAN);
    CHECK(!mpconn_value_equal(nan, nan));
    /* A nan key is found only by identity. */
    mpconn_value *set = mpconn_value_set();
    CHECK_INT(mpconn_value_add(set, mpconn_value_ref(nan)), 0);
    CHECK_INT(mpconn_value_add(set, mpconn_value_ref(nan)), 0);
    CHECK_INT(mpconn_value_len(set), 1);
    CHECK_INT(mpconn_value_add(set, mpconn_value_float(NAN)), 0);
    CHECK_INT(mpconn_value_len(set), 2);
    mpconn_value_unref(set);
    mpconn_value_unref(nan);
    mpconn_value_unref(z);
    mpconn_value_unref(mz);
    mpconn_value_unref(one);
    mpconn_value_unref(onef);
}

TEST(container_equality)
{
    mpconn_value *a = NULL;
    CHECK_INT(mpconn_pack(&a, NULL, 0, "{s:[i,f],s:(s,n)}", "x", 1, 2.0, "y", "z"), 0);
    mpconn_value *b = NULL;
    CHECK_INT(mpconn_pack(&b, NULL, 0, "{s:(s,n),s:[f,i]}", "y", "z", "x", 1.0, 2), 0);
    CHECK(mpconn_value_equal(a, b));
    mpconn_value *c = NULL;
    CHECK_INT(mpconn_pack(&c, NULL, 0, "{s:(s,n),s:[f,i,i]}", "y", "z", "x", 1.0, 2, 3), 0);
    CHECK(!mpconn_value_equal(a, c));
    /* list != tuple, set == frozenset, bytes == bytearray as in Python. */
    mpconn_value *l = NULL, *t = NULL;
    CHECK_INT(mpconn_pack(&l, NULL, 0, "[i]", 1), 0);
    CHECK_INT(mpconn_pack(&t, NULL, 0, "(i)", 1), 0);
    CHECK(!mpconn_value_equal(l, t));
    mpconn_value *s = mpconn_value_set(), *fs = mpconn_value_frozenset();
    mpconn_value_add(s, mpconn_value_int(1));
    mpconn_value_add(s, mpconn_value_int(2));
    mpconn_value_add(fs, mpconn_value_int(2));
    mpconn_value_add(fs, mpconn_value_int(1));
    CHECK(mpconn_value_equal(s, fs));
    mpconn_value *by = mpconn_value_bytes("ab", 2), *ba = mpconn_value_bytearray("ab", 2);
    CHECK(mpconn_value_equal(by, ba));
    mpconn_value *str = mpconn_value_str("ab");
    CHECK(!mpconn_value_equal(by, str));
    mpconn_value *objs[] = {a, b, c, l, t, s, fs, by, ba, str};
    for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++)
        mpconn_value_unref(objs[i]);
}

TEST(unhashable)
{
    mpconn_value *d = mpconn_value_dict();
    CHECK_INT(mpconn_value_dict_set(d, mpconn_value_list(), mpconn_value_none()),
              MPCONN_ERR_UNHASHABLE);
    mpconn_value *key = NULL;
    CHECK_INT(mpconn_pack(&key, NULL, 0, "(i,[])", 1), 0);
    CHECK_INT(mpconn_value_dict_set(d, key, mpconn_value_none()), MPCONN_ERR_UNHASHABLE);
    CHECK_INT(mpconn_value_dict_set(d, mpconn_value_bytearray("", 0), mpconn_value_none()),
              MPCONN_ERR_UNHASHABLE);
    mpconn_value *s = mpconn_value_set();
    CHECK_INT(mpconn_value_add(s, mpconn_value_dict()), MPCONN_ERR_UNHASHABLE);
    CHECK_INT(mpconn_value_add(s, mpconn_value_set()), MPCONN_ERR_UNHASHABLE);
    /* Hashable containers: tuples of scalars, frozensets. */
    mpconn_value *item = NULL;
    CHECK_INT(mpconn_pack(&item, NULL, 0, "(i,(s,n))", 1, "a"), 0);
    CHECK_INT(mpconn_value_add(s, item), 0);
    CHECK_INT(mpconn_value_add(s, mpconn_value_frozenset()), 0);
    CHECK_INT(mpconn_value_len(s), 2);
    CHECK_INT(mpconn_value_len(d), 0);
    mpconn_value_unref(s);
    mpconn_value_unref(d);
}

TEST(builders_steal_on_failure)
{
    /* Under ASan any leak here fails the test. */
    mpconn_value *i = mpconn_value_int(3);
    CHECK_INT(mpconn_value_append(i, mpconn_value_str("x")), MPCONN_ERR_TYPE);
    CHECK_INT(mpconn_value_append(NULL, mpconn_value_str("x")), -ENOMEM);
    CHECK_INT(mpconn_value_dict_set(i, mpconn_value_str("k"), mpconn_value_str("v")),
              MPCONN_ERR_TYPE);
    mpconn_value *d = mpconn_value_dict();
    CHECK_INT(mpconn_value_dict_set(d, NULL, mpconn_value_str("v")), -ENOMEM);
    CHECK_INT(mpconn_value_add(i, mpconn_value_str("x")), MPCONN_ERR_TYPE);
    mpconn_value *t = mpconn_value_tuple();
    CHECK_INT(mpconn_value_append(t, mpconn_value_int(1)), 0); /* tuples build by append */
    CHECK_INT(mpconn_value_len(t), 1);
    mpconn_value_unref(t);
    mpconn_value_unref(d);
    mpconn_value_unref(i);
}

TEST(dict_order_and_lookup)
{
    mpconn_value *d = mpconn_value_dict();
    char key[32];
    for (int i = 0; i < 1001; i++) {
        snprintf(key, sizeof key, "k%d", 1000 - i);
        CHECK_INT(mpconn_value_dict_set(d, mpconn_value_str(key), mpconn_value_int(i)), 0);
    }
    CHECK_INT(mpconn_value_len(d), 1001);
    const char *s;
    CHECK_INT(mpconn_value_get_str(mpconn_value_item(d, 0), &s, NULL), 0);
    CHECK_STR(s, "k1000");
    for (int i = 0; i < 1001; i++) {
        snprintf(key, sizeof key, "k%d", i);
        mpconn_value *v = mpconn_value_dict_get_str(d, key);
        CHECK(v != NULL);
        int64_t x;
        mpconn_value_get_int(v, &x);
        CHECK_INT(x, 1000 - i);
    }
    CHECK(mpconn_value_dict_get_str(d, "nope") == NULL);
    /* Re-setting keeps the position. */
    CHECK_INT(mpconn_value_dict_set(d, mpconn_value_str("k1000"), mpconn_value_none()), 0);
    CHECK_INT(mpconn_value_len(d), 1001);
    CHECK(mpconn_value_type(mpconn_value_dict_value(d, 0)) == MPCONN_NONE);
    CHECK(mpconn_value_item(d, 1001) == NULL);
    mpconn_value_unref(d);
}

TEST(big_set_is_indexed)
{
    /* 200k distinct ints, each looked up: fails by timeout if O(n). */
    mpconn_value *s = mpconn_value_set();
    for (int i = 0; i < 200000; i++)
        CHECK_INT(mpconn_value_add(s, mpconn_value_int(i * 7919LL)), 0);
    for (int i = 0; i < 200000; i++)
        CHECK_INT(mpconn_value_add(s, mpconn_value_float(i * 7919.0)), 0);
    CHECK_INT(mpconn_value_len(s), 200000);
    mpconn_value_unref(s);
}

TEST(deep_free_and_equal)
{
    /* A million nested lists built through the API: compare and free
     * without recursion. */
    mpconn_value *a = mpconn_value_list(), *b = mpconn_value_list();
    for (int i = 0; i < 1000000; i++) {
        mpconn_value *na = mpconn_value_list(), *nb = mpconn_value_list();
        CHECK_INT(mpconn_value_append(na, a), 0);
        CHECK_INT(mpconn_value_append(nb, b), 0);
        a = na;
        b = nb;
    }
    CHECK(mpconn_value_equal(a, b));
    CHECK_INT(mpconn_value_append(mpconn_value_item(b, 0), mpconn_value_none()), 0);
    CHECK(!mpconn_value_equal(a, b));
    mpconn_value_unref(a);
    mpconn_value_unref(b);
    /* Deep tuples as a dict key: hashing is iterative too. */
    mpconn_value *t = mpconn_value_tuple();
    for (int i = 0; i < 200000; i++) {
        mpconn_value *n = mpconn_value_tuple();
        mpconn_value_append(n, t);
        t = n;
    }
    mpconn_value *d = mpconn_value_dict();
    CHECK_INT(mpconn_value_dict_set(d, t, mpconn_value_none()), 0);
    mpconn_value_unref(d);
}

TEST(refcount_sharing)
{
    mpconn_value *s = mpconn_value_str("x");
    mpconn_value *l = mpconn_value_list();
    mpconn_value_append(l, mpconn_value_ref(s));
    mpconn_value_append(l, mpconn_value_ref(s));
    mpconn_value_unref(s);
    CHECK(mpconn_value_item(l, 0) == mpconn_value_item(l, 1));
    mpconn_value_unref(l);
    /* None/True/False are shared and survive extra frees of references. */
    mpconn_value *n = mpconn_value_none();
    CHECK(n == mpconn_value_none());
    mpconn_value_unref(n);
    CHECK(mpconn_value_type(mpconn_value_none()) == MPCONN_NONE);
}

TEST(colliding_keys_are_bounded)
{
    /* Keys crafted to share one full 64-bit hash (simulated by planting the
     * cached hash): inserting them must stop with an error, not go
     * quadratic. */
    mpconn_value *d = mpconn_value_dict();
    int rc = 0, n = 0;
    for (; n < 2000 && rc == 0; n++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", n);
        mpconn_value *key = mpconn_value_str(k);
        key->u.s.hash = 0x1234;
        key->flags |= MPCI_F_HASHED;
        rc = mpconn_value_dict_set(d, key, mpconn_value_int(n));
    }
    CHECK_INT(rc, MPCONN_ERR_LIMIT);
    CHECK(n > 500 && n < 600);
    /* what went in is still there and found */
    mpconn_value *probe = mpconn_value_str("k7");
    probe->u.s.hash = 0x1234;
    probe->flags |= MPCI_F_HASHED;
    int64_t v;
    CHECK_INT(mpconn_value_get_int(mpconn_value_dict_get(d, probe), &v), 0);
    CHECK_INT(v, 7);
    mpconn_value_unref(probe);
    mpconn_value_unref(d);
}

static uint64_t hash_of(const mpconn_value *v)
{
    uint64_t h = 0;
    CHECK_INT(mpci_value_hash(v, &h), 0);
    return h;
}

TEST(numbers_hash_exactly)
{
    /* Equal numbers hash alike, whatever their type... */
    mpconn_value *one = mpconn_value_int(1), *onef = mpconn_value_float(1.0);
    CHECK(hash_of(one) == hash_of(onef));
    CHECK(hash_of(one) == hash_of(mpconn_value_bool(1)));
    CHECK(hash_of(mpconn_value_bool(0)) == hash_of(mpconn_value_int(0)));
    mpconn_value *z = mpconn_value_float(0.0), *mz = mpconn_value_float(-0.0);
    CHECK(hash_of(z) == hash_of(mz));
    CHECK(hash_of(z) == hash_of(mpconn_value_int(0)));
    mpconn_value *half = mpconn_value_float(-2.5), *big = mpconn_value_float(1e300);
    CHECK(hash_of(half) != hash_of(mpconn_value_int(-2)));
    /* 2**100 as an int and as a float. */
    uint8_t p100[13] = {0x10};
    mpconn_value *b100 = mpconn_value_bigint(0, p100, sizeof p100);
    mpconn_value *f100 = mpconn_value_float(ldexp(1.0, 100));
    CHECK(mpconn_value_equal(b100, f100));
    CHECK(hash_of(b100) == hash_of(f100));
    uint8_t n100[13] = {0x10};
    mpconn_value *bm100 = mpconn_value_bigint(1, n100, sizeof n100);
    mpconn_value *fm100 = mpconn_value_float(-ldexp(1.0, 100));
    CHECK(hash_of(bm100) == hash_of(fm100));
    CHECK(hash_of(bm100) != hash_of(b100));
    CHECK(hash_of(big) != hash_of(f100));
    /* ...and neighbouring big ints do not collide (they did when hashed by
     * their double value). */
    uint8_t a[9] = {0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    mpconn_value *m1 = mpconn_value_bigint(0, a, sizeof a); /* 2**64 - 1 */
    a[8] = 0xfe;
    mpconn_value *m2 = mpconn_value_bigint(0, a, sizeof a); /* 2**64 - 2 */
    CHECK(hash_of(m1) != hash_of(m2));
    mpconn_value *max = mpconn_value_int(INT64_MAX), *max1 = mpconn_value_int(INT64_MAX - 1);
    CHECK(hash_of(max) != hash_of(max1));
    mpconn_value *objs[] = {one,  onef,  z,     mz, half, big, b100,
                            f100, bm100, fm100, m1, m2,   max, max1};
    for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++)
        mpconn_value_unref(objs[i]);
}

TEST(nan_keys_spread)
{
    /* Each NaN is its own key and hashes by identity: 5000 of them fill a
     * dict instead of one probe run (which failed at 512). */
    mpconn_value *d = mpconn_value_dict();
    mpconn_value *first = mpconn_value_float(NAN);
    CHECK_INT(mpconn_value_dict_set(d, mpconn_value_ref(first), mpconn_value_int(-1)), 0);
    for (int i = 0; i < 5000; i++)
        CHECK_INT(mpconn_value_dict_set(d, mpconn_value_float(NAN), mpconn_value_int(i)), 0);
    CHECK_INT(mpconn_value_len(d), 5001);
    CHECK(mpconn_value_dict_get(d, first) != NULL); /* found by identity */
    mpconn_value *other = mpconn_value_float(NAN);
    CHECK(mpconn_value_dict_get(d, other) == NULL);
    CHECK(hash_of(first) == hash_of(first));
    mpconn_value_unref(other);
    mpconn_value_unref(first);
    mpconn_value_unref(d);
}

/* x = leaf, then depth times x = ((x, x), (x, x)), through the API. */
static mpconn_value *dag(int depth)
{
    mpconn_value *x = mpconn_value_str("leaf");
    for (int i = 0; i < depth; i++) {
        mpconn_value *p = mpconn_value_tuple();
        mpconn_value_append(p, mpconn_value_ref(x));
        mpconn_value_append(p, x);
        mpconn_value *q = mpconn_value_tuple();
        mpconn_value_append(q, mpconn_value_ref(p));
        mpconn_value_append(q, p);
        x = q;
    }
    return x;
}

TEST(equal_dags_compare_in_their_size)
{
    /* 4^40 leaves as trees, 80 tuples as graphs: compared, hashed and used
     * as keys in well under the loose bound (seconds per level before). */
    mpconn_value *a = dag(40), *b = dag(40);
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    mpci_eqctx cx;
    mpci_eqctx_init(&cx, 0);
    CHECK(mpci_value_equal_cx(a, b, &cx));
    CHECK(cx.steps < 1000);
    mpci_eqctx_free(&cx);
    CHECK(mpconn_value_equal(a, b));
    CHECK(hash_of(a) == hash_of(b));
    mpconn_value *d = mpconn_value_dict();
    CHECK_INT(mpconn_value_dict_set(d, mpconn_value_ref(a), mpconn_value_int(1)), 0);
    CHECK_INT(mpconn_value_dict_set(d, mpconn_value_ref(b), mpconn_value_int(2)), 0);
    CHECK_INT(mpconn_value_len(d), 1);
    /* One leaf differs deep inside: unequal, as fast. */
    mpconn_value *c = mpconn_value_tuple();
    mpconn_value_append(c, mpconn_value_ref(a));
    mpconn_value_append(c, mpconn_value_int(1));
    mpconn_value *e = mpconn_value_tuple();
    mpconn_value_append(e, mpconn_value_ref(b));
    mpconn_value_append(e, mpconn_value_int(2));
    CHECK(!mpconn_value_equal(c, e));
    CHECK((double)clock() / CLOCKS_PER_SEC - t0 < 2.0);
    mpconn_value_unref(c);
    mpconn_value_unref(e);
    mpconn_value_unref(d);
    mpconn_value_unref(a);
    mpconn_value_unref(b);
}

TEST(small_values_cost_what_they_need)
{
    /* Small ints are shared; others take 32 bytes of malloc, as CPython's
     * int and float objects do; the old layout took 80 for any value. */
    CHECK(mpconn_value_int(7) == mpconn_value_int(7));
    CHECK(mpconn_value_int(-5) == mpconn_value_int(-5));
    CHECK(mpconn_value_int(256) == mpconn_value_int(256));
    CHECK_INT(mpci_value_footprint(mpconn_value_int(100)), 0);
    mpconn_value *i = mpconn_value_int(1000), *f = mpconn_value_float(0.5);
    CHECK_INT(mpci_value_footprint(i), 32);
    CHECK_INT(mpci_value_footprint(f), 32);
    mpconn_value *s = mpconn_value_str("abc");
    CHECK(mpci_value_footprint(s) <= 48);
    /* Shared small ints still give their magnitude. */
    int neg;
    const uint8_t *mag;
    size_t len;
    CHECK_INT(mpconn_value_get_bigint(mpconn_value_int(256), &neg, &mag, &len), 0);
    CHECK_INT(len, 2);
    CHECK(mag[0] == 1 && mag[1] == 0);
    CHECK_INT(mpconn_value_get_bigint(mpconn_value_int(-5), &neg, &mag, &len), 0);
    CHECK(neg && len == 1 && mag[0] == 5);
    CHECK_INT(mpconn_value_get_bigint(mpconn_value_int(0), &neg, &mag, &len), 0);
    CHECK_INT(len, 0);
    mpconn_value_unref(mpconn_value_int(3)); /* freeing a shared one is harmless */
    mpconn_value_unref(i);
    mpconn_value_unref(f);
    mpconn_value_unref(s);
}

TESTLIB_MAIN
