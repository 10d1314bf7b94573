/* A forking server on a Unix socket speaking a line protocol (a raw
 * handler: the socket itself): each connection is served by a child
 * process, which answers every line with its pid and the line reversed.
 * Children are reaped the moment they exit. SIGTERM shuts it down.
 * Usage: forking_unix_server PATH */
#include <mpconn/server.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int serve_lines(mpconn_request *r, void *data)
{
    (void)data;
    int fd = mpconn_request_fd(r);
    char line[512];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, line + have, sizeof line - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : 0;
        have += (size_t)n;
        char *nl;
        while ((nl = memchr(line, '\n', have))) {
            size_t len = (size_t)(nl - line);
            char out[600];
            int k = snprintf(out, sizeof out, "child %ld: ", (long)getpid());
            for (size_t i = 0; i < len; i++)
                out[k + (int)i] = line[len - 1 - i];
            k += (int)len;
            out[k++] = '\n';
            if (send(fd, out, (size_t)k, MSG_NOSIGNAL) != k)
                return -EPIPE;
            have -= len + 1;
            memmove(line, nl + 1, have);
        }
        if (have == sizeof line)
            return -EMSGSIZE;
    }
}

static void stop(mpconn_signal *sig, int signum, void *data)
{
    (void)sig;
    (void)signum;
    mpconn_server_shutdown(data);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: forking_unix_server PATH\n");
        return 2;
    }
    mpconn_opts *opts;
    if (mpconn_opts_new(&opts) < 0)
        return 1;
    mpconn_opts_set_mode(opts, 0600); /* only this user may connect */
    mpconn_server_hooks hooks = {.size = sizeof hooks, .handle = serve_lines};
    mpconn_server *s;
    char err[256];
    int rc = mpconn_server_new(&s, argv[1], MPCONN_SERVER_FORK, MPCONN_HANDLER_RAW, &hooks, NULL,
                               opts, err, sizeof err);
    mpconn_opts_free(opts);
    if (rc < 0) {
        fprintf(stderr, "forking_unix_server: %s\n", err);
        return 1;
    }
    mpconn_server_set_max_connections(s, 16);
    mpconn_server_set_drain(s, 1); /* at shutdown, let children finish */
    mpconn_signal *term;
    mpconn_signal_new(&term, mpconn_server_loop(s), SIGTERM, stop, s);
    printf("listening on %s\n", mpconn_server_address(s));
    fflush(stdout);
    rc = mpconn_server_serve_forever(s);
    mpconn_signal_close(term, NULL);
    mpconn_server_free(s);
    printf("shut down, socket file removed: %s\n", access(argv[1], F_OK) ? "yes" : "no");
    return rc < 0;
}
