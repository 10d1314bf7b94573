/* A socketserver-style server on a libuv loop the program runs itself:
 * mpconn_server (LOOP kind, framed handlers) started on the loop through
 * <mpconn/uv.h>'s adapter, beside a timer and signal handles of the
 * program's own. Each message comes back as it came. SIGINT or SIGTERM, or
 * the last of CLIENTS clients leaving, shuts the server down; uv_run then
 * returns by itself, once nothing is left on the loop. Built when
 * pkg-config finds libuv. With ECHO_AUTHKEY set, clients authenticate.
 * Usage: uv_server [ADDRESS [CLIENTS]]   (CLIENTS: exit after that many) */
#include <mpconn/server.h>
#include <mpconn/uv.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct app {
    mpconn_server *server;
    int clients_left;
    uv_signal_t sigint, sigterm;
    uv_timer_t ticker; /* the program's own work on the same loop */
    int ticks;
} app;

/* Shut down once, and let go of the program's own handles, so that the
 * loop runs out of work when the server has closed its own. */
static void stop(app *a)
{
    if (uv_is_closing((uv_handle_t *)&a->ticker))
        return;
    mpconn_server_shutdown(a->server);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->ticker, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    printf("signal %d: shutting down\n", signum);
    stop(h->data);
}

static void on_tick(uv_timer_t *t)
{
    ((app *)t->data)->ticks++;
}

static int on_setup(mpconn_request *r, void *data)
{
    (void)data;
    const char *peer = mpconn_request_peer(r, NULL, NULL, NULL);
    printf("accepted a connection%s%s\n", *peer ? " from " : "", peer);
    return 0;
}

static int on_message(mpconn_request *r, const void *msg, size_t len, void *data)
{
    (void)data;
    printf("echoing a message of %zu bytes\n", len);
    return mpconn_async_send(mpconn_request_async(r), msg, len);
}

static void on_finish(mpconn_request *r, void *data)
{
    (void)r;
    app *a = data;
    printf("connection closed by the client\n");
    if (a->clients_left > 0 && --a->clients_left == 0)
        stop(a);
}

static void on_error(mpconn_server *s, mpconn_request *r, int code, const char *message, void *data)
{
    (void)s, (void)r, (void)code, (void)data;
    fprintf(stderr, "uv_server: %s\n", message);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    const char *address = argc > 1 ? argv[1] : "127.0.0.1:0";
    app a = {.clients_left = argc > 2 ? atoi(argv[2]) : 0};
    mpconn_opts *opts;
    if (mpconn_opts_new(&opts) < 0)
        return 1;
    const char *key = getenv("ECHO_AUTHKEY");
    if (key)
        mpconn_opts_set_authkey(opts, key, strlen(key));
    mpconn_server_hooks hooks = {.size = sizeof hooks,
                                 .setup = on_setup,
                                 .on_message = on_message,
                                 .finish = on_finish,
                                 .handle_error = on_error};
    char err[256];
    int r = mpconn_server_new(&a.server, address, MPCONN_SERVER_LOOP, MPCONN_HANDLER_FRAMED, &hooks,
                              &a, opts, err, sizeof err);
    mpconn_opts_free(opts);
    if (r < 0) {
        fprintf(stderr, "uv_server: %s\n", err);
        return 1;
    }
    uv_loop_t *loop = uv_default_loop();
    if ((r = mpconn_server_start(a.server, mpconn_uv_adapter(), loop)) < 0) {
        fprintf(stderr, "uv_server: start: %s\n", mpconn_strerror(r));
        mpconn_server_free(a.server);
        return 1;
    }
    uv_signal_init(loop, &a.sigint);
    uv_signal_init(loop, &a.sigterm);
    uv_timer_init(loop, &a.ticker);
    a.sigint.data = a.sigterm.data = a.ticker.data = &a;
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);
    uv_timer_start(&a.ticker, on_tick, 100, 100);
    printf("listening on %s\n", mpconn_server_address(a.server));
    printf("on libuv %s\n", uv_version_string());
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT); /* until nothing is left on the loop */
    printf("the loop ran out of work: done\n");
    mpconn_server_free(a.server);
    uv_run(loop, UV_RUN_DEFAULT); /* the adapter's handles finish closing */
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
