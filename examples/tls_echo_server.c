/* A TLS Listener with the authkey "secret password", checked inside TLS,
 * that echoes every message and says who each client is. With CA, clients
 * must present a certificate that CA signed (mutual TLS).
 * Usage: tls_echo_server ADDRESS CERT KEY [CA] (ADDRESS: tls:HOST:PORT) */
#include <mpconn/tls.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void report(void *data, int code, const char *message)
{
    (void)data;
    fprintf(stderr, "tls_echo_server: rejected a peer (%s): %s\n", mpconn_strerror(code), message);
}

static mpconn_tls_config *server_config(const char *cert, const char *key, const char *ca)
{
    mpconn_tls_config *cfg;
    if (mpconn_tls_config_new(&cfg, MPCONN_TLS_SERVER) < 0)
        return NULL;
    if (mpconn_tls_config_set_cert_file(cfg, cert, key) < 0 ||
        (ca && (mpconn_tls_config_set_ca_file(cfg, ca) < 0 ||
                mpconn_tls_config_set_verify_client(cfg, MPCONN_TLS_VERIFY_REQUIRED) < 0))) {
        fprintf(stderr, "tls_echo_server: %s\n", mpconn_tls_config_errmsg(cfg));
        mpconn_tls_config_free(cfg);
        return NULL;
    }
    return cfg;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: tls_echo_server tls:HOST:PORT CERT KEY [CA]\n");
        return 2;
    }
    mpconn_tls_config *cfg = server_config(argv[2], argv[3], argc > 4 ? argv[4] : NULL);
    mpconn_opts *opts;
    if (!cfg || mpconn_opts_new(&opts) < 0)
        return 1;
    mpconn_opts_set_tls(opts, cfg);
    mpconn_tls_config_free(cfg); /* opts holds a reference */
    mpconn_opts_set_authkey(opts, "secret password", strlen("secret password"));

    mpconn_listener *l;
    char err[512];
    int r = mpconn_listener_open(&l, argv[1], opts, err, sizeof err);
    mpconn_opts_free(opts); /* the listener keeps its own copy */
    if (r < 0) {
        fprintf(stderr, "tls_echo_server: %s\n", err);
        return 1;
    }
    mpconn_listener_on_reject(l, report, NULL);
    printf("listening on %s\n", mpconn_listener_address(l));
    fflush(stdout);

    mpconn_conn *c;
    if (mpconn_listener_accept(l, &c, -1) < 0) {
        fprintf(stderr, "tls_echo_server: %s\n", mpconn_listener_errmsg(l));
        mpconn_listener_free(l);
        return 1;
    }
    mpconn_tls *t = mpconn_conn_tls(c);
    int bits;
    const char *cipher = mpconn_tls_cipher(t, &bits);
    const char *who = mpconn_tls_peer_verified(t) ? mpconn_tls_peer_subject(t) : "(no certificate)";
    printf("%s, %s (%d bits), client %s\n", mpconn_tls_version(t), cipher, bits, who);
    void *msg;
    size_t len;
    while ((r = mpconn_conn_recv_bytes(c, &msg, &len, 0)) == 0) {
        printf("received %zu bytes, echoing\n", len);
        fflush(stdout);
        r = mpconn_conn_send_bytes(c, msg, len);
        free(msg);
        if (r < 0)
            break;
    }
    /* CPython's ssl closes without close_notify: a truncation, and the end. */
    printf("connection closed: %s\n", r == MPCONN_ERR_EOF ? "end of file" : mpconn_conn_errmsg(c));
    mpconn_conn_free(c);
    mpconn_listener_free(l);
    return 0;
}
