/* A Listener with the authkey "secret password" that sends back every
 * message it receives, byte for byte (so pickled objects from a Python
 * Client come back as they went). Usage: echo_listener [ADDRESS] [COUNT] */
#include <mpconn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void report(void *data, int code, const char *message)
{
    (void)data;
    fprintf(stderr, "echo_listener: rejected a peer (%s): %s\n", mpconn_strerror(code), message);
}

int main(int argc, char **argv)
{
    const char *address = argc > 1 ? argv[1] : "127.0.0.1:6000";
    int count = argc > 2 ? atoi(argv[2]) : 1;

    mpconn_opts *opts;
    if (mpconn_opts_new(&opts) < 0)
        return 1;
    mpconn_opts_set_authkey(opts, "secret password", strlen("secret password"));

    mpconn_listener *l;
    char err[256];
    if (mpconn_listener_open(&l, address, opts, err, sizeof err) < 0) {
        fprintf(stderr, "echo_listener: %s\n", err);
        return 1;
    }
    mpconn_opts_free(opts); /* the listener keeps its own copy */
    mpconn_listener_on_reject(l, report, NULL);
    printf("listening on %s\n", mpconn_listener_address(l));
    fflush(stdout);

    for (int served = 0; served < count; served++) {
        mpconn_conn *c;
        if (mpconn_listener_accept(l, &c, -1) < 0) {
            fprintf(stderr, "echo_listener: %s\n", mpconn_listener_errmsg(l));
            break;
        }
        printf("connection accepted from %s\n", mpconn_listener_last_accepted(l, NULL, NULL, NULL));
        void *msg;
        size_t len;
        int r;
        while ((r = mpconn_conn_recv_bytes(c, &msg, &len, 0)) == 0) {
            printf("received %zu bytes, echoing\n", len);
            fflush(stdout);
            r = mpconn_conn_send_bytes(c, msg, len);
            free(msg);
            if (r < 0)
                break;
        }
        if (r != MPCONN_ERR_EOF)
            fprintf(stderr, "echo_listener: %s\n", mpconn_conn_errmsg(c));
        printf("connection closed\n");
        mpconn_conn_free(c);
    }
    mpconn_listener_free(l);
    return 0;
}
