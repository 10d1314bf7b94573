/* Client of unix_echo_server: sends its arguments, prints the echoes.
 * Usage: unix_echo_client PATH WORD... */
#include <mpconn.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: unix_echo_client PATH WORD...\n");
        return 2;
    }
    mpconn_conn *c;
    char err[256];
    if (mpconn_client(&c, argv[1], NULL, err, sizeof err) < 0) {
        fprintf(stderr, "unix_echo_client: %s\n", err);
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        char *s;
        if (mpconn_conn_send_string(c, argv[i]) < 0 || mpconn_conn_recv_string(c, &s, 0) < 0) {
            fprintf(stderr, "unix_echo_client: %s\n", mpconn_conn_errmsg(c));
            mpconn_conn_free(c);
            return 1;
        }
        printf("%s\n", s);
        free(s);
    }
    mpconn_conn_free(c);
    return 0;
}
