/* Values over connections: send/recv with the reused send buffer and the
 * in-place receive, large objects, decode errors that leave the connection
 * usable, protocol and limit options. */
#include "mpconn.h"
#include "testlib.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static mpconn_value *small_dict(int i)
{
    mpconn_value *v = NULL;
    mpconn_pack(&v, NULL, 0, "{s:s,s:[i,f,s]}", "op", "add", "args", i, 2.5, "x");
    return v;
}

TEST(send_recv_many_small)
{
    mpconn_conn *a, *b;
    CHECK_INT(mpconn_pipe(&a, &b, 1, NULL), 0);
    /* several messages queued: later ones come out of the read-ahead buffer */
    for (int i = 0; i < 50; i++) {
        mpconn_value *v = small_dict(i);
        CHECK_INT(mpconn_conn_send(a, v), 0);
        mpconn_value_unref(v);
    }
    for (int i = 0; i < 50; i++) {
        mpconn_value *got, *want = small_dict(i);
        CHECK_INT(mpconn_conn_recv(b, &got), 0);
        CHECK(mpconn_value_equal(got, want));
        mpconn_value_unref(got);
        mpconn_value_unref(want);
    }
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

struct big_sender {
    mpconn_conn *c;
    mpconn_value *v;
    int result;
};

static void *send_big(void *arg)
{
    struct big_sender *s = arg;
    s->result = mpconn_conn_send(s->c, s->v);
    return NULL;
}

TEST(large_object_then_small)
{
    mpconn_conn *a, *b;
    CHECK_INT(mpconn_pipe(&a, &b, 1, NULL), 0);
    mpconn_value *big = mpconn_value_list();
    char *blob = malloc(1000);
    memset(blob, 'z', 1000);
    for (int i = 0; i < 3000; i++)
        CHECK_INT(mpconn_value_append(big, mpconn_value_bytes(blob, 1000)), 0);
    free(blob);
    struct big_sender s = {a, big, -1};
    pthread_t t;
    pthread_create(&t, NULL, send_big, &s);
    mpconn_value *got;
    CHECK_INT(mpconn_conn_recv(b, &got), 0); /* 3 MB: read through a buffer of its own */
    pthread_join(t, NULL);
    CHECK_INT(s.result, 0);
    CHECK(mpconn_value_equal(got, big));
    mpconn_value_unref(got);
    mpconn_value *v = small_dict(7), *w;
    CHECK_INT(mpconn_conn_send(a, v), 0);
    CHECK_INT(mpconn_conn_recv(b, &w), 0);
    CHECK(mpconn_value_equal(v, w));
    mpconn_value_unref(v);
    mpconn_value_unref(w);
    mpconn_value_unref(big);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(wire_is_framed_pickle)
{
    int fds[2];
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    mpconn_conn *c;
    CHECK_INT(mpconn_conn_from_fd(&c, fds[0], MPCONN_READABLE | MPCONN_WRITABLE, NULL), 0);
    mpconn_value *v = mpconn_value_none();
    CHECK_INT(mpconn_conn_send(c, v), 0);
    uint8_t got[16];
    /* protocol 4: PROTO 4, NONE, STOP, in one frame header of 4 bytes */
    CHECK_INT(read(fds[1], got, sizeof got), 8);
    CHECK_MEM(got, "\x00\x00\x00\x04\x80\x04N.", 8);
    mpconn_value_unref(v);
    mpconn_conn_free(c);
    close(fds[1]);
}

TEST(protocol_option)
{
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_pickle_protocol(o, 2), 0);
    CHECK_INT(mpconn_opts_set_pickle_protocol(o, 6), -EINVAL);
    mpconn_conn *a, *b;
    CHECK_INT(mpconn_pipe(&a, &b, 1, o), 0);
    mpconn_value *v = mpconn_value_int(1);
    CHECK_INT(mpconn_conn_send(a, v), 0);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), 0);
    CHECK_INT(len, 5);
    CHECK_MEM(m, "\x80\x02K\x01.", 5);
    free(m);
    mpconn_value_unref(v);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
    mpconn_opts_free(o);
}

TEST(decode_error_leaves_connection_usable)
{
    mpconn_conn *a, *b;
    CHECK_INT(mpconn_pipe(&a, &b, 1, NULL), 0);
    /* GLOBAL os.system: refused, and the message is consumed whole */
    const char evil[] = "cos\nsystem\n(S'echo pwned'\ntR.";
    CHECK_INT(mpconn_conn_send_bytes(a, evil, sizeof evil - 1), 0);
    CHECK_INT(mpconn_conn_send_bytes(a, "not a pickle", 12), 0);
    mpconn_value *v = mpconn_value_str("after"), *got;
    CHECK_INT(mpconn_conn_send(a, v), 0);
    CHECK_INT(mpconn_conn_recv(b, &got), MPCONN_ERR_REFUSED);
    CHECK(strstr(mpconn_conn_errmsg(b), "os.system") != NULL);
    CHECK(mpconn_conn_recv(b, &got) < 0);
    CHECK_INT(mpconn_conn_recv(b, &got), 0);
    CHECK(mpconn_value_equal(got, v));
    mpconn_value_unref(got);
    mpconn_value_unref(v);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(decode_limits_from_options)
{
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_decode_limits(o, 0, 10, 0, 0), 0);
    mpconn_conn *a, *b;
    CHECK_INT(mpconn_pipe(&a, &b, 1, o), 0);
    mpconn_value *l = mpconn_value_list();
    for (int i = 0; i < 100; i++)
        CHECK_INT(mpconn_value_append(l, mpconn_value_int(i)), 0);
    CHECK_INT(mpconn_conn_send(a, l), 0);
    mpconn_value *got;
    CHECK_INT(mpconn_conn_recv(b, &got), MPCONN_ERR_LIMIT);
    mpconn_value_unref(l);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
    mpconn_opts_free(o);
}

TEST(value_decode_takes_the_opts_limits)
{
    /* mpconn_value_decode reads the decoder limits from the opts it is
     * given, the defaults from none. */
    void *pk;
    size_t n;
    mpconn_value *l = mpconn_value_list(), *got = NULL;
    for (int i = 0; i < 4; i++)
        CHECK_INT(mpconn_value_append(l, mpconn_value_int(i)), 0);
    CHECK_INT(mpconn_value_encode(l, 4, &pk, &n), 0);
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_decode_limits(o, 0, 4, 0, 0), 0);
    char err[256] = "";
    CHECK_INT(mpconn_value_decode(&got, pk, n, o, err, sizeof err), MPCONN_ERR_LIMIT);
    CHECK(got == NULL && strstr(err, "more than 4 values"));
    CHECK_INT(mpconn_opts_set_decode_limits(o, 0, 5, 0, 0), 0);
    CHECK_INT(mpconn_value_decode(&got, pk, n, o, err, sizeof err), 0);
    CHECK(mpconn_value_equal(got, l));
    mpconn_value_unref(got);
    CHECK_INT(mpconn_value_decode(&got, pk, n, NULL, err, sizeof err), 0);
    mpconn_value_unref(got);
    CHECK_INT(mpconn_value_decode(NULL, pk, n, NULL, err, sizeof err), -EINVAL);
    free(pk);
    mpconn_value_unref(l);
    mpconn_opts_free(o);
}

struct obj_sender {
    mpconn_conn *c;
    int id;
    int result;
};

static void *send_objects(void *arg)
{
    struct obj_sender *s = arg;
    mpconn_value *v = mpconn_value_list();
    for (int i = 0; i < 300; i++)
        mpconn_value_append(v, mpconn_value_int(s->id));
    s->result = 0;
    for (int k = 0; k < 200 && s->result == 0; k++)
        s->result = mpconn_conn_send(s->c, v);
    mpconn_value_unref(v);
    return NULL;
}

TEST(send_lock_covers_objects)
{
    /* Object sends share the connection's pickle buffer: with the send lock
     * on, three threads sending at once still deliver whole values. */
    mpconn_conn *a, *b;
    CHECK_INT(mpconn_pipe(&a, &b, 1, NULL), 0);
    CHECK_INT(mpconn_conn_set_send_lock(a, 1), 0);
    pthread_t t[3];
    struct obj_sender s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = (struct obj_sender){a, i + 1, -1};
        pthread_create(&t[i], NULL, send_objects, &s[i]);
    }
    for (int k = 0; k < 600; k++) {
        mpconn_value *got;
        CHECK_INT(mpconn_conn_recv(b, &got), 0);
        CHECK_INT(mpconn_value_len(got), 300);
        int64_t first, x;
        CHECK_INT(mpconn_value_get_int(mpconn_value_item(got, 0), &first), 0);
        for (size_t i = 1; i < 300; i++) {
            CHECK_INT(mpconn_value_get_int(mpconn_value_item(got, i), &x), 0);
            CHECK_INT(x, first);
        }
        mpconn_value_unref(got);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        CHECK_INT(s[i].result, 0);
    }
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TESTLIB_MAIN

/* ------------------------------------------------- Python 2 str, three ways */

/* What `pickle.dumps(['caf\xe9', 'ok', {'k': '\xff\x00'}], 2)` makes in
 * Python 2.7, and `pickle.dumps('caf\xe9', 0)`; the expected reprs are what
 * CPython 3.11's pickle.loads gives with encoding="bytes" and "latin1". */
static const char py2_list[] = "\x80\x02]q\x00(U\x04"
                               "caf\xe9q\x01U\x02okq\x02}q\x03U\x01kq\x04U\x02\xff\x00q\x05se.";
static const char py2_text[] = "S'caf\\xe9'\np0\n.";

static char *decoded_repr(const char *pk, size_t n, int as, int *code)
{
    mpconn_opts *o;
    if (mpconn_opts_new(&o) < 0)
        return NULL;
    if (as >= 0)
        CHECK_INT(mpconn_opts_set_py2_str(o, as), 0);
    mpconn_value *v = NULL;
    char err[200];
    *code = mpconn_value_decode(&v, pk, n, o, err, sizeof err);
    mpconn_opts_free(o);
    if (*code < 0) {
        if (!strstr(err, "non-ASCII Python 2 string"))
            fprintf(stderr, "error: %s\n", err);
        CHECK(strstr(err, "non-ASCII Python 2 string") != NULL);
        CHECK(strstr(err, "mpconn_opts_set_py2_str") != NULL);
        return NULL;
    }
    char *text = NULL;
    size_t len;
    CHECK_INT(mpconn_value_repr(v, &text, &len), 0);
    mpconn_value_unref(v);
    return text;
}

static void expect_repr(const char *pk, size_t n, int as, const char *want)
{
    int code;
    char *t = decoded_repr(pk, n, as, &code);
    CHECK(t && strcmp(t, want) == 0);
    free(t);
}

TEST(py2_str_ascii_by_default)
{
    int code;
    CHECK(decoded_repr(py2_list, sizeof py2_list - 1, -1, &code) == NULL);
    CHECK_INT(code, MPCONN_ERR_PICKLE);
    CHECK(decoded_repr(py2_text, sizeof py2_text - 1, MPCONN_PY2_STR_ASCII, &code) == NULL);
    CHECK_INT(code, MPCONN_ERR_PICKLE);
    expect_repr("\x80\x02U\x02okq\x00.", 9, -1, "'ok'");
}

TEST(py2_str_as_bytes)
{
    expect_repr(py2_list, sizeof py2_list - 1, MPCONN_PY2_STR_BYTES,
                "[b'caf\\xe9', b'ok', {b'k': b'\\xff\\x00'}]");
    expect_repr(py2_text, sizeof py2_text - 1, MPCONN_PY2_STR_BYTES, "b'caf\\xe9'");
}

TEST(py2_str_as_latin1)
{
    expect_repr(py2_list, sizeof py2_list - 1, MPCONN_PY2_STR_LATIN1,
                "['caf\xc3\xa9', 'ok', {'k': '\xc3\xbf\\x00'}]");
    expect_repr(py2_text, sizeof py2_text - 1, MPCONN_PY2_STR_LATIN1, "'caf\xc3\xa9'");
}

TEST(py2_str_bad_choice)
{
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_py2_str(o, 3), -EINVAL);
    CHECK_INT(mpconn_opts_set_py2_str(o, -1), -EINVAL);
    mpconn_opts_free(o);
}
