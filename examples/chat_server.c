/* A chat server in the style of Python's asynchat: clients send lines
 * ending in "\n" (try it with nc), and every line goes to every other
 * client, prefixed with who said it. One thread, mpconn's event loop, no
 * handshake: the connections use delimited framing, not multiprocessing's.
 * Usage: chat_server [ADDRESS]   (default 127.0.0.1:0, a free port) */
#include <mpconn/async.h>
#include <mpconn/loop.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE 4096          /* a longer line closes its sender */
#define MAX_BEHIND (256 << 10) /* bytes queued for a reader who does not read */

typedef struct room room;

typedef struct member {
    mpconn_async *a;
    room *room;
    int id;
    struct member *prev, *next;
} member;

struct room {
    member *members;
    int last_id;
};

/* Sends text to everyone but `except`. A member who never reads makes only
 * their own queue grow: past MAX_BEHIND they are dropped. Closing a member
 * frees it at once (on_close), so the next one is looked up first. */
static void broadcast(room *r, const member *except, const char *text, size_t len)
{
    member *next;
    for (member *m = r->members; m; m = next) {
        next = m->next;
        if (m == except)
            continue;
        if (mpconn_async_queued(m->a) > MAX_BEHIND)
            mpconn_async_close(m->a);
        else
            mpconn_async_send(m->a, text, len);
    }
}

static void on_line(mpconn_async *a, const void *line, size_t len, void *data)
{
    (void)a;
    member *from = data;
    char text[MAX_LINE + 32];
    int n =
        snprintf(text, sizeof text, "client %d: %.*s\n", from->id, (int)len, (const char *)line);
    printf("%s", text);
    broadcast(from->room, from, text, (size_t)n);
}

static void on_close(mpconn_async *a, int reason, const char *errmsg, void *data)
{
    (void)a;
    member *m = data;
    room *r = m->room;
    if (m->prev)
        m->prev->next = m->next;
    else
        r->members = m->next;
    if (m->next)
        m->next->prev = m->prev;
    printf("client %d left (%s)\n", m->id, reason == MPCONN_ERR_EOF ? "closed" : errmsg);
    free(m);
}

static void on_accept(mpconn_async_listener *l, mpconn_async *a, void *data)
{
    (void)l;
    room *r = data;
    member *m = calloc(1, sizeof *m);
    if (!m) {
        mpconn_async_close(a);
        return;
    }
    m->a = a;
    m->room = r;
    m->id = ++r->last_id;
    m->next = r->members;
    if (r->members)
        r->members->prev = m;
    r->members = m;
    static const mpconn_async_cbs cbs = {
        .size = sizeof cbs, .on_message = on_line, .on_close = on_close};
    mpconn_async_set_callbacks(a, &cbs, m);
    /* Lines instead of multiprocessing frames, both ways: what is sent goes
     * out as given. */
    mpconn_async_set_framing(a, MPCONN_FRAME_DELIM, "\n", 1);
    mpconn_async_set_max_message(a, MAX_LINE);
    char hello[64];
    int n = snprintf(hello, sizeof hello, "welcome, you are client %d\n", m->id);
    mpconn_async_send(a, hello, (size_t)n);
    printf("client %d joined\n", m->id);
}

static void on_signal(mpconn_signal *sig, int signum, void *data)
{
    (void)sig;
    (void)signum;
    mpconn_loop_stop(data);
}

int main(int argc, char **argv)
{
    const char *address = argc > 1 ? argv[1] : "127.0.0.1:0";
    setvbuf(stdout, NULL, _IOLBF, 0);
    mpconn_loop *loop;
    if (mpconn_loop_new(&loop, NULL) < 0) {
        fprintf(stderr, "chat_server: cannot create the loop\n");
        return 1;
    }
    mpconn_signal *sigint, *sigterm;
    mpconn_signal_new(&sigint, loop, SIGINT, on_signal, loop);
    mpconn_signal_new(&sigterm, loop, SIGTERM, on_signal, loop);

    room r = {NULL, 0};
    mpconn_async_listener *l;
    char err[256];
    if (mpconn_async_listener_open(&l, address, NULL, mpconn_loop_adapter(), loop, on_accept, &r,
                                   err, sizeof err) < 0) {
        fprintf(stderr, "chat_server: %s\n", err);
        mpconn_loop_free(loop);
        return 1;
    }
    printf("listening on %s\n", mpconn_async_listener_address(l));

    mpconn_loop_run(loop, MPCONN_RUN_DEFAULT); /* until a signal */

    mpconn_async_listener_free(l);
    while (r.members)
        mpconn_async_close(r.members->a); /* on_close frees the member */
    mpconn_loop_free(loop);
    return 0;
}
