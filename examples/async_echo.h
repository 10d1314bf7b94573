/* The echo callbacks that async_echo_server.c, uv/uv_echo_server.c and
 * event/event_echo_server.c share: only the event loop differs between
 * them. Every message goes back to its sender as it came. */
#ifndef EXAMPLE_ASYNC_ECHO_H
#define EXAMPLE_ASYNC_ECHO_H

#include <mpconn/async.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct echo_server {
    int clients_left;                    /* stop after this many clients; 0: never */
    void (*stop)(struct echo_server *s); /* how this loop is stopped */
    void *loop;
} echo_server;

static void echo_on_message(mpconn_async *a, const void *msg, size_t len, void *data)
{
    (void)data;
    printf("echoing a message of %zu bytes\n", len);
    /* The send only queues (or writes what the socket takes at once). A
     * client that sends and never reads would make the queue grow without
     * end: past the high watermark, stop reading from it until it drains. */
    if (mpconn_async_send(a, msg, len) == 0 && mpconn_async_above_high(a))
        mpconn_async_pause_reading(a);
}

static void echo_on_drain(mpconn_async *a, void *data)
{
    (void)data;
    mpconn_async_resume_reading(a);
}

static void echo_on_close(mpconn_async *a, int reason, const char *errmsg, void *data)
{
    (void)a;
    echo_server *s = data;
    if (reason == MPCONN_ERR_EOF)
        printf("connection closed by the client\n");
    else
        printf("connection closed: %s\n", errmsg);
    if (s->clients_left > 0 && --s->clients_left == 0)
        s->stop(s);
}

/* The listener hands over connections already authenticated (when it has
 * a key) and attached to its loop: all that is left is to say what to do
 * with their messages. */
static void echo_on_accept(mpconn_async_listener *l, mpconn_async *a, void *data)
{
    (void)l;
    static const mpconn_async_cbs cbs = {.size = sizeof cbs,
                                         .on_message = echo_on_message,
                                         .on_close = echo_on_close,
                                         .on_drain = echo_on_drain};
    mpconn_async_set_callbacks(a, &cbs, data);
    printf("accepted a connection\n");
}

/* Parses [ADDRESS [CLIENTS]], opens the listener on the given loop through
 * its adapter and says where it listens. With ECHO_AUTHKEY set in the
 * environment, clients authenticate with that key. *opts (NULL without a
 * key) is the caller's to free. Returns NULL after printing why. */
static mpconn_async_listener *echo_listen(int argc, char **argv, echo_server *s,
                                          const mpconn_adapter *ad, mpconn_opts **opts)
{
    const char *address = argc > 1 ? argv[1] : "127.0.0.1:0";
    s->clients_left = argc > 2 ? atoi(argv[2]) : 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    *opts = NULL;
    const char *key = getenv("ECHO_AUTHKEY");
    if (key && *key &&
        (mpconn_opts_new(opts) < 0 || mpconn_opts_set_authkey(*opts, key, strlen(key)) < 0)) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        return NULL;
    }
    mpconn_async_listener *l;
    char err[256];
    if (mpconn_async_listener_open(&l, address, *opts, ad, s->loop, echo_on_accept, s, err,
                                   sizeof err) < 0) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return NULL;
    }
    printf("listening on %s\n", mpconn_async_listener_address(l));
    if (*opts)
        printf("clients authenticate with the key in ECHO_AUTHKEY\n");
    return l;
}

#endif
