/* A threaded TCP echo server for multiprocessing.connection clients: each
 * connection gets a thread from a pool of at most 8, passes the handshake
 * (authkey 'secret password'), and has every object sent back to it.
 * SIGTERM or Ctrl-C shuts it down.
 * Usage: threaded_echo_server [ADDRESS]   (default 127.0.0.1:0) */
#include <mpconn/server.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int echo(mpconn_request *r, void *data)
{
    (void)data;
    mpconn_conn *c = mpconn_request_conn(r);
    const char *peer = mpconn_request_peer(r, NULL, NULL, NULL);
    for (;;) {
        mpconn_value *v;
        int rc = mpconn_conn_recv(c, &v);
        if (rc == MPCONN_ERR_EOF)
            break;
        if (rc < 0)
            return rc; /* reported through handle_error */
        char *text = NULL;
        mpconn_value_repr(v, &text, NULL);
        printf("%s sent %s\n", peer, text ? text : "?");
        fflush(stdout);
        free(text);
        rc = mpconn_conn_send(c, v);
        mpconn_value_unref(v);
        if (rc < 0)
            return rc;
    }
    printf("%s closed\n", peer);
    fflush(stdout);
    return 0;
}

static void report(mpconn_server *s, mpconn_request *r, int code, const char *message, void *data)
{
    (void)s;
    (void)r;
    (void)data;
    fprintf(stderr, "error: %s (%s)\n", message, mpconn_strerror(code));
}

static void stop(mpconn_signal *sig, int signum, void *data)
{
    (void)sig;
    (void)signum;
    mpconn_server_shutdown(data);
}

int main(int argc, char **argv)
{
    const char *address = argc > 1 ? argv[1] : "127.0.0.1:0";
    mpconn_opts *opts;
    if (mpconn_opts_new(&opts) < 0)
        return 1;
    mpconn_opts_set_authkey(opts, "secret password", strlen("secret password"));
    mpconn_server_hooks hooks = {.size = sizeof hooks, .handle = echo, .handle_error = report};
    mpconn_server *s;
    char err[256];
    int rc = mpconn_server_new(&s, address, MPCONN_SERVER_THREADS, MPCONN_HANDLER_FRAMED, &hooks,
                               NULL, opts, err, sizeof err);
    mpconn_opts_free(opts);
    if (rc < 0) {
        fprintf(stderr, "threaded_echo_server: %s\n", err);
        return 1;
    }
    mpconn_server_set_max_connections(s, 8);
    /* Signals become callbacks on the serving loop; worker threads block
     * them, so they always arrive here. */
    mpconn_signal *term, *intr;
    mpconn_signal_new(&term, mpconn_server_loop(s), SIGTERM, stop, s);
    mpconn_signal_new(&intr, mpconn_server_loop(s), SIGINT, stop, s);
    printf("listening on %s\n", mpconn_server_address(s));
    fflush(stdout);
    rc = mpconn_server_serve_forever(s);
    mpconn_signal_close(term, NULL);
    mpconn_signal_close(intr, NULL);
    mpconn_server_free(s);
    printf("shut down\n");
    return rc < 0;
}
