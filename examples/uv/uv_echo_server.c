/* The echo server of async_echo_server.c on a libuv loop: the same
 * callbacks, attached through the header-only adapter in <mpconn/uv.h>.
 * Built when pkg-config finds libuv. With ECHO_AUTHKEY set, clients
 * authenticate with it.
 * Usage: uv_echo_server [ADDRESS [CLIENTS]]   (CLIENTS: exit after that many) */
#include <mpconn/uv.h>

#include "../async_echo.h"

#include <stdio.h>

static void stop_loop(echo_server *s)
{
    uv_stop(s->loop);
}

int main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    echo_server s = {0, stop_loop, loop};
    mpconn_opts *opts;
    mpconn_async_listener *l = echo_listen(argc, argv, &s, mpconn_uv_adapter(), &opts);
    if (l) {
        printf("on libuv %s\n", uv_version_string());
        uv_run(loop, UV_RUN_DEFAULT); /* until stop_loop */
    }
    mpconn_async_listener_free(l);
    uv_run(loop, UV_RUN_DEFAULT); /* the adapter's handles finish closing */
    uv_loop_close(loop);
    mpconn_opts_free(opts);
    return l ? 0 : 1;
}
