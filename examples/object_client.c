/* The Client for object_listener: receives the list holding a record and
 * takes it apart with mpconn_unpack, then a message of bytes and one
 * received into an int32 array; answers with a tuple. Authkey "secret
 * password". Usage: object_client ADDRESS */
#include <mpconn.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int talk(mpconn_conn *c)
{
    mpconn_value *v;
    int r = mpconn_conn_recv(c, &v);
    if (r < 0)
        return r;
    /* Strings and sub-values unpacked are borrowed from v: read them before
     * freeing it. */
    const char *name;
    mpconn_value *readings;
    int ok;
    char err[256];
    if (mpconn_unpack(v, err, sizeof err, "[{s:s, s:O, s:b}]", "name", &name, "readings", &readings,
                      "ok", &ok) < 0) {
        fprintf(stderr, "object_client: unexpected value: %s\n", err);
        mpconn_value_unref(v);
        return -1;
    }
    size_t n = mpconn_value_len(readings);
    printf("received [record] for %s, ok=%s, %zu readings:", name, ok ? "True" : "False", n);
    for (size_t i = 0; i < n; i++) {
        double d;
        if (mpconn_value_get_float(mpconn_value_item(readings, i), &d) == 0)
            printf(" %g", d);
    }
    printf("\n");
    mpconn_value_unref(v);

    void *bytes;
    size_t len;
    if ((r = mpconn_conn_recv_bytes(c, &bytes, &len, 0)) < 0)
        return r;
    printf("received bytes %.*s\n", (int)len, (const char *)bytes);
    free(bytes);

    /* recv_bytes_into: the message lands in the caller's buffer. */
    int32_t numbers[5] = {0};
    if ((r = mpconn_conn_recv_bytes_into(c, numbers, sizeof numbers, 0, &len)) < 0)
        return r;
    printf("received %zu bytes into int32[5]: %d %d %d %d %d\n", len, numbers[0], numbers[1],
           numbers[2], numbers[3], numbers[4]);

    mpconn_value *answer;
    if (mpconn_pack(&answer, NULL, 0, "(s i)", "thanks", (int)n) < 0)
        return -1;
    r = mpconn_conn_send(c, answer);
    mpconn_value_unref(answer);
    return r;
}

int main(int argc, char **argv)
{
    const char *address = argc > 1 ? argv[1] : "127.0.0.1:6000";
    mpconn_opts *opts;
    if (mpconn_opts_new(&opts) < 0)
        return 1;
    mpconn_opts_set_authkey(opts, "secret password", strlen("secret password"));
    mpconn_conn *c;
    char err[256];
    int r = mpconn_client(&c, address, opts, err, sizeof err);
    mpconn_opts_free(opts);
    if (r < 0) {
        fprintf(stderr, "object_client: %s\n", err);
        return 1;
    }
    r = talk(c);
    if (r < 0)
        fprintf(stderr, "object_client: %s\n", mpconn_conn_errmsg(c));
    mpconn_conn_free(c);
    return r < 0 ? 1 : 0;
}
