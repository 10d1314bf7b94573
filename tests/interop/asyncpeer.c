/* An echo server on mpconn's own loop, for the interop scripts that point
 * many CPython clients at an async listener (test_async_py.py).
 *
 *   asyncpeer ADDRESS [--authkey TEXT] [--backend epoll|poll]
 *
 * Prints "listening on ADDR" (then "backend NAME"), echoes every message of
 * every connection, and answers each line "stats" on stdin with
 *   stats accepted=N open=N peak=N messages=N bytes=N rejects=N
 * End of file on stdin prints the stats once more and exits 0; a setup
 * failure prints "error ..." and exits 3. */
#include <mpconn/async.h>
#include <mpconn/loop.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct server {
    mpconn_loop *loop;
    long accepted, open, peak, messages, bytes, rejects;
    char line[256];
    size_t nline;
    int done;
} server;

static void print_stats(const server *s)
{
    printf("stats accepted=%ld open=%ld peak=%ld messages=%ld bytes=%ld rejects=%ld\n", s->accepted,
           s->open, s->peak, s->messages, s->bytes, s->rejects);
    fflush(stdout);
}

static void on_message(mpconn_async *a, const void *msg, size_t len, void *data)
{
    server *s = data;
    s->messages++;
    s->bytes += (long)len;
    if (mpconn_async_send(a, msg, len) < 0)
        mpconn_async_close(a);
}

static void on_close(mpconn_async *a, int reason, const char *why, void *data)
{
    (void)a;
    server *s = data;
    s->open--;
    if (reason != 0 && reason != MPCONN_ERR_EOF) {
        printf("closed %s: %s\n", mpconn_strerror(reason), why);
        fflush(stdout);
    }
}

static const mpconn_async_cbs echo_cbs = {
    .size = sizeof(mpconn_async_cbs), .on_message = on_message, .on_close = on_close};

static void on_accept(mpconn_async_listener *l, mpconn_async *a, void *data)
{
    (void)l;
    server *s = data;
    s->accepted++;
    if (++s->open > s->peak)
        s->peak = s->open;
    mpconn_async_set_callbacks(a, &echo_cbs, s);
}

static void on_reject(void *data, int code, const char *msg)
{
    (void)code, (void)msg;
    ((server *)data)->rejects++;
}

/* Commands come a line at a time on stdin; end of file ends the server. */
static void on_stdin(mpconn_io *io, int events, void *data)
{
    (void)events;
    server *s = data;
    char buf[256];
    ssize_t n = read(mpconn_io_fd(io), buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        s->done = 1;
        mpconn_loop_stop(s->loop);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] != '\n') {
            if (s->nline < sizeof s->line - 1)
                s->line[s->nline++] = buf[i];
            continue;
        }
        s->line[s->nline] = 0;
        s->nline = 0;
        if (strcmp(s->line, "stats") == 0)
            print_stats(s);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: asyncpeer ADDRESS [--authkey TEXT] [--backend NAME]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *key = NULL, *backend = NULL;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--authkey") == 0)
            key = argv[i + 1];
        else if (strcmp(argv[i], "--backend") == 0)
            backend = argv[i + 1];
        else {
            fprintf(stderr, "asyncpeer: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    server s = {0};
    int r = mpconn_loop_new(&s.loop, backend);
    if (r < 0) {
        printf("error loop: %s\n", mpconn_strerror(r));
        return 3;
    }
    mpconn_opts *o;
    mpconn_opts_new(&o);
    if (key)
        mpconn_opts_set_authkey(o, key, strlen(key));
    mpconn_async_listener *l;
    char err[256];
    r = mpconn_async_listener_open(&l, argv[1], o, mpconn_loop_adapter(), s.loop, on_accept, &s,
                                   err, sizeof err);
    if (r < 0) {
        printf("error listen: %s\n", err);
        return 3;
    }
    mpconn_async_listener_on_reject(l, on_reject, &s);
    mpconn_io *in;
    if (mpconn_io_new(&in, s.loop, 0, on_stdin, &s) < 0 || mpconn_io_set(in, MPCONN_READABLE) < 0) {
        printf("error stdin: cannot watch it\n");
        return 3;
    }
    printf("listening on %s\nbackend %s\n", mpconn_async_listener_address(l),
           mpconn_loop_backend(s.loop));
    fflush(stdout);
    while (!s.done && mpconn_loop_run(s.loop, MPCONN_RUN_DEFAULT) > 0)
        ;
    print_stats(&s);
    mpconn_io_close(in, NULL);
    mpconn_async_listener_free(l);
    mpconn_loop_free(s.loop);
    mpconn_opts_free(o);
    return 0;
}
