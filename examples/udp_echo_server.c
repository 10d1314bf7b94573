/* A UDP echo server on the event loop: every datagram goes back to its
 * sender. A datagram longer than 1024 bytes is reported, not echoed cut.
 * SIGTERM shuts it down.
 * Usage: udp_echo_server [ADDRESS]   (default udp:127.0.0.1:0) */
#include <mpconn/server.h>

#include <signal.h>
#include <stdio.h>

static int echo(mpconn_request *r, void *data)
{
    (void)data;
    size_t len;
    const void *p = mpconn_request_data(r, &len);
    printf("%zu bytes from %s\n", len, mpconn_request_peer(r, NULL, NULL, NULL));
    fflush(stdout);
    return mpconn_request_reply(r, p, len);
}

static void report(mpconn_server *s, mpconn_request *r, int code, const char *message, void *data)
{
    (void)s;
    (void)r;
    (void)data;
    printf("error: %s (%s)\n", message, mpconn_strerror(code));
    fflush(stdout);
}

static void stop(mpconn_signal *sig, int signum, void *data)
{
    (void)sig;
    (void)signum;
    mpconn_server_shutdown(data);
}

int main(int argc, char **argv)
{
    const char *address = argc > 1 ? argv[1] : "udp:127.0.0.1:0";
    mpconn_server_hooks hooks = {.size = sizeof hooks, .handle = echo, .handle_error = report};
    mpconn_server *s;
    char err[256];
    int rc = mpconn_server_new(&s, address, MPCONN_SERVER_LOOP, MPCONN_HANDLER_RAW, &hooks, NULL,
                               NULL, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "udp_echo_server: %s\n", err);
        return 1;
    }
    mpconn_server_set_max_datagram(s, 1024);
    mpconn_signal *term;
    mpconn_signal_new(&term, mpconn_server_loop(s), SIGTERM, stop, s);
    printf("listening on %s\n", mpconn_server_address(s));
    fflush(stdout);
    rc = mpconn_server_serve_forever(s);
    mpconn_signal_close(term, NULL);
    mpconn_server_free(s);
    printf("shut down\n");
    return rc < 0;
}
