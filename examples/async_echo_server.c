/* An echo server in the style of Python's asyncore: one thread, one event
 * loop (mpconn's own), any number of clients, the multiprocessing framing.
 * With ECHO_AUTHKEY set in the environment, clients authenticate with it.
 * Usage: async_echo_server [ADDRESS [CLIENTS]]   (CLIENTS: exit after that many) */
#include <mpconn/async.h>
#include <mpconn/loop.h>

#include "async_echo.h"

#include <signal.h>
#include <stdio.h>

static void stop_loop(echo_server *s)
{
    mpconn_loop_stop(s->loop);
}

/* Ctrl-C and kill arrive as ordinary callbacks on the loop (signalfd), so
 * the listener is closed and its socket file removed on the way out. */
static void on_signal(mpconn_signal *sig, int signum, void *data)
{
    (void)sig;
    (void)signum;
    mpconn_loop_stop(data);
}

int main(int argc, char **argv)
{
    mpconn_loop *loop;
    if (mpconn_loop_new(&loop, NULL) < 0) {
        fprintf(stderr, "async_echo_server: cannot create the loop\n");
        return 1;
    }
    mpconn_signal *sigint, *sigterm;
    mpconn_signal_new(&sigint, loop, SIGINT, on_signal, loop);
    mpconn_signal_new(&sigterm, loop, SIGTERM, on_signal, loop);

    echo_server s = {0, stop_loop, loop};
    mpconn_opts *opts;
    mpconn_async_listener *l = echo_listen(argc, argv, &s, mpconn_loop_adapter(), &opts);
    if (l)
        mpconn_loop_run(loop, MPCONN_RUN_DEFAULT); /* until stopped */

    mpconn_async_listener_free(l);
    mpconn_opts_free(opts);
    mpconn_loop_free(loop); /* closes the signal watchers too */
    return l ? 0 : 1;
}
