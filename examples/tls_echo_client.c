/* A TLS Client with the authkey "secret password" that sends two strings
 * and prints what comes back, checking the server against CA (and showing
 * CERT and KEY, when given, for mutual TLS).
 * Usage: tls_echo_client tls:HOST:PORT CA [CERT KEY] */
#include <mpconn/tls.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tls_echo_client tls:HOST:PORT CA [CERT KEY]\n");
        return 2;
    }
    mpconn_tls_config *cfg;
    mpconn_opts *opts;
    if (mpconn_tls_config_new(&cfg, MPCONN_TLS_CLIENT) < 0 || mpconn_opts_new(&opts) < 0)
        return 1;
    if (mpconn_tls_config_set_ca_file(cfg, argv[2]) < 0 ||
        (argc > 4 && mpconn_tls_config_set_cert_file(cfg, argv[3], argv[4]) < 0)) {
        fprintf(stderr, "tls_echo_client: %s\n", mpconn_tls_config_errmsg(cfg));
        return 1;
    }
    mpconn_opts_set_tls(opts, cfg);
    mpconn_tls_config_free(cfg); /* opts holds a reference */
    mpconn_opts_set_authkey(opts, "secret password", strlen("secret password"));

    mpconn_conn *c;
    char err[512];
    int r = mpconn_client(&c, argv[1], opts, err, sizeof err);
    mpconn_opts_free(opts);
    if (r < 0) {
        fprintf(stderr, "tls_echo_client: %s\n", err);
        return 1;
    }
    mpconn_tls *t = mpconn_conn_tls(c);
    printf("%s with %s, verified: %d\n", mpconn_tls_version(t), mpconn_tls_peer_subject(t),
           mpconn_tls_peer_verified(t));
    const char *words[] = {"hello", "world"};
    for (int i = 0; i < 2 && r == 0; i++) {
        char *back;
        if ((r = mpconn_conn_send_string(c, words[i])) == 0 &&
            (r = mpconn_conn_recv_string(c, &back, 0)) == 0) {
            printf("sent '%s', got back '%s'\n", words[i], back);
            free(back);
        }
    }
    if (r < 0)
        fprintf(stderr, "tls_echo_client: %s\n", mpconn_conn_errmsg(c));
    mpconn_conn_free(c); /* sends close_notify */
    return r < 0;
}
