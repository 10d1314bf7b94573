/* A Listener that sends values: one list holding a record (built with
 * mpconn_pack), then raw bytes, then an array of int32 for recv_bytes_into;
 * it reads the client's answer back with mpconn_unpack. Authkey
 * "secret password". Usage: object_listener [ADDRESS]  (object_client is
 * its peer; a Python multiprocessing.connection.Client works as well). */
#include <mpconn.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int serve(mpconn_conn *c)
{
    /* The record goes out boxed in a list, so the peer unpacks "[...]". */
    mpconn_value *v;
    if (mpconn_pack(&v, NULL, 0, "[{s:s, s:[f f f], s:b}]", "name", "sensor-1", "readings", 20.5,
                    21.0, 19.75, "ok", 1) < 0)
        return -1;
    char *text;
    size_t len;
    if (mpconn_value_repr(v, &text, &len) == 0) {
        printf("sending %s\n", text);
        free(text);
    }
    int r = mpconn_conn_send(c, v);
    mpconn_value_unref(v);
    if (r < 0)
        return r;
    if ((r = mpconn_conn_send_bytes(c, "hello", 5)) < 0)
        return r;
    int32_t numbers[] = {42, 1729};
    if ((r = mpconn_conn_send_bytes(c, numbers, sizeof numbers)) < 0)
        return r;

    mpconn_value *answer;
    if ((r = mpconn_conn_recv(c, &answer)) < 0)
        return r;
    const char *word;
    int count;
    char err[256];
    r = mpconn_unpack(answer, err, sizeof err, "(s i)", &word, &count);
    if (r == 0)
        printf("client answered (%s, %d)\n", word, count);
    else
        fprintf(stderr, "object_listener: unexpected answer: %s\n", err);
    mpconn_value_unref(answer); /* word pointed into it */
    return r;
}

int main(int argc, char **argv)
{
    const char *address = argc > 1 ? argv[1] : "127.0.0.1:6000";
    mpconn_opts *opts;
    if (mpconn_opts_new(&opts) < 0)
        return 1;
    mpconn_opts_set_authkey(opts, "secret password", strlen("secret password"));
    mpconn_listener *l;
    char err[256];
    int r = mpconn_listener_open(&l, address, opts, err, sizeof err);
    mpconn_opts_free(opts);
    if (r < 0) {
        fprintf(stderr, "object_listener: %s\n", err);
        return 1;
    }
    printf("listening on %s\n", mpconn_listener_address(l));
    fflush(stdout);

    mpconn_conn *c;
    if (mpconn_listener_accept(l, &c, -1) < 0) {
        fprintf(stderr, "object_listener: %s\n", mpconn_listener_errmsg(l));
        mpconn_listener_free(l);
        return 1;
    }
    printf("connection accepted from %s\n", mpconn_listener_last_accepted(l, NULL, NULL, NULL));
    r = serve(c);
    if (r < 0)
        fprintf(stderr, "object_listener: %s\n", mpconn_conn_errmsg(c));
    mpconn_conn_free(c);
    mpconn_listener_free(l);
    return r < 0 ? 1 : 0;
}
