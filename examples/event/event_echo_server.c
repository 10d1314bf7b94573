/* The echo server of async_echo_server.c on a libevent event_base: the
 * same callbacks, attached through the header-only adapter in
 * <mpconn/event.h>. Built when pkg-config finds libevent. With
 * ECHO_AUTHKEY set, clients authenticate with it.
 * Usage: event_echo_server [ADDRESS [CLIENTS]]   (CLIENTS: exit after that many) */
#include <mpconn/event.h>

#include "../async_echo.h"

#include <stdio.h>

static void stop_loop(echo_server *s)
{
    event_base_loopbreak(s->loop);
}

int main(int argc, char **argv)
{
    struct event_base *base = event_base_new();
    if (!base) {
        fprintf(stderr, "event_echo_server: cannot create the event base\n");
        return 1;
    }
    echo_server s = {0, stop_loop, base};
    mpconn_opts *opts;
    mpconn_async_listener *l = echo_listen(argc, argv, &s, mpconn_event_adapter(), &opts);
    if (l) {
        printf("on libevent %s (%s)\n", event_get_version(), event_base_get_method(base));
        event_base_dispatch(base); /* until stop_loop */
    }
    mpconn_async_listener_free(l); /* frees its events at once */
    event_base_free(base);
    mpconn_opts_free(opts);
    return l ? 0 : 1;
}
