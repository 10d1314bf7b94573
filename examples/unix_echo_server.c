/* An echo server on a Unix socket whose file only its owner may use
 * (mode 0600); it prints each client's pid and uid from the kernel.
 * Usage: unix_echo_server PATH [COUNT] */
#include <mpconn.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: unix_echo_server PATH [COUNT]\n");
        return 2;
    }
    int count = argc > 2 ? atoi(argv[2]) : 1;
    mpconn_opts *opts;
    if (mpconn_opts_new(&opts) < 0)
        return 1;
    mpconn_opts_set_mode(opts, 0600);
    mpconn_listener *l;
    char err[256];
    int r = mpconn_listener_open(&l, argv[1], opts, err, sizeof err);
    mpconn_opts_free(opts);
    if (r < 0) {
        fprintf(stderr, "unix_echo_server: %s\n", err);
        return 1;
    }
    printf("listening on %s\n", mpconn_listener_address(l));
    fflush(stdout);
    for (int served = 0; served < count; served++) {
        mpconn_conn *c;
        if (mpconn_listener_accept(l, &c, -1) < 0) {
            fprintf(stderr, "unix_echo_server: %s\n", mpconn_listener_errmsg(l));
            break;
        }
        pid_t pid;
        uid_t uid;
        mpconn_listener_last_accepted(l, &pid, &uid, NULL);
        printf("client pid %ld uid %ld\n", (long)pid, (long)uid);
        char *s;
        while (mpconn_conn_recv_string(c, &s, 1 << 20) == 0) {
            printf("echo: %s\n", s);
            fflush(stdout);
            mpconn_conn_send_string(c, s);
            free(s);
        }
        mpconn_conn_free(c);
    }
    mpconn_listener_free(l); /* removes the socket file */
    return 0;
}
