/* The Client for echo_listener: authenticates with "secret password",
 * sends a few messages and prints what comes back.
 * Usage: echo_client ADDRESS */
#include <mpconn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        fprintf(stderr, "echo_client: %s\n", err);
        return 1;
    }
    const char *messages[] = {"hello", "world", "",
                              "a longer message to show that size does not matter"};
    for (size_t i = 0; i < sizeof messages / sizeof *messages; i++) {
        char *reply;
        if (mpconn_conn_send_string(c, messages[i]) < 0 ||
            mpconn_conn_recv_string(c, &reply, 0) < 0) {
            fprintf(stderr, "echo_client: %s\n", mpconn_conn_errmsg(c));
            mpconn_conn_free(c);
            return 1;
        }
        printf("sent '%s', got back '%s'\n", messages[i], reply);
        free(reply);
    }
    mpconn_conn_free(c);
    return 0;
}
