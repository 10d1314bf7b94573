/* One process serving several clients at once with mpconn_wait: the
 * listener and every open connection go in one wait set, and whichever is
 * ready is served. The clients are forked children that each send a few
 * messages at their own pace. Usage: wait_server [CLIENTS] */
#include <mpconn.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MAX_CLIENTS = 16, MESSAGES = 3 };

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static int client(const char *address, int id)
{
    mpconn_conn *c;
    char err[256];
    if (mpconn_client(&c, address, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "client %d: %s\n", id, err);
        return 1;
    }
    for (int i = 1; i <= MESSAGES; i++) {
        pause_ms(10L * (id + 1)); /* each client at its own pace */
        char msg[64];
        snprintf(msg, sizeof msg, "client %d, message %d of %d", id, i, MESSAGES);
        if (mpconn_conn_send_string(c, msg) < 0) {
            fprintf(stderr, "client %d: %s\n", id, mpconn_conn_errmsg(c));
            mpconn_conn_free(c);
            return 1;
        }
    }
    mpconn_conn_free(c);
    return 0;
}

int main(int argc, char **argv)
{
    int clients = argc > 1 ? atoi(argv[1]) : 3;
    if (clients < 1 || clients > MAX_CLIENTS) {
        fprintf(stderr, "wait_server: CLIENTS is 1 to %d\n", MAX_CLIENTS);
        return 2;
    }
    mpconn_listener *l;
    char err[256];
    if (mpconn_listener_open(&l, NULL, NULL, err, sizeof err) < 0) { /* a temporary socket */
        fprintf(stderr, "wait_server: %s\n", err);
        return 1;
    }
    printf("listening on %s\n", mpconn_listener_address(l));
    fflush(stdout);
    for (int id = 0; id < clients; id++) {
        pid_t pid = fork();
        if (pid == 0) /* no mpconn_listener_free here: it would remove the parent's socket */
            _exit(client(mpconn_listener_address(l), id));
        if (pid < 0) {
            perror("fork");
            return 1;
        }
    }

    mpconn_conn *conns[MAX_CLIENTS];
    size_t open = 0;
    int accepted = 0, messages = 0, status = 0;
    while (accepted < clients || open > 0) {
        mpconn_waitable items[MAX_CLIENTS + 1];
        size_t n = 0;
        if (accepted < clients)
            items[n++] = (mpconn_waitable){.listener = l, .fd = -1};
        for (size_t i = 0; i < open; i++)
            items[n++] = (mpconn_waitable){.conn = conns[i], .fd = -1};
        int ready = mpconn_wait(items, n, 10.0);
        if (ready <= 0) {
            fprintf(stderr, "wait_server: %s\n",
                    ready == 0 ? "nothing ready for 10 s" : mpconn_strerror(ready));
            status = 1;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (!items[i].ready)
                continue;
            if (items[i].listener) {
                mpconn_conn *c;
                int r = mpconn_listener_accept(l, &c, 0); /* ready: does not block */
                if (r == -ETIMEDOUT)
                    continue; /* a handshake moved on but is not done yet */
                if (r < 0) {
                    fprintf(stderr, "wait_server: %s\n", mpconn_listener_errmsg(l));
                    continue;
                }
                conns[open++] = c;
                accepted++;
                printf("accepted connection %d (%zu open)\n", accepted, open);
                continue;
            }
            mpconn_conn *c = items[i].conn;
            char *msg;
            int r = mpconn_conn_recv_string(c, &msg, 1024);
            if (r == 0) {
                printf("received '%s'\n", msg);
                free(msg);
                messages++;
                continue;
            }
            if (r != MPCONN_ERR_EOF) {
                fprintf(stderr, "wait_server: %s\n", mpconn_conn_errmsg(c));
                status = 1;
            }
            /* Closed (or broken): drop it from the set, keeping the others in order. */
            for (size_t j = 0; j < open; j++) {
                if (conns[j] == c) {
                    memmove(&conns[j], &conns[j + 1], (open - j - 1) * sizeof *conns);
                    open--;
                    break;
                }
            }
            mpconn_conn_free(c);
            printf("a connection closed (%zu open)\n", open);
        }
    }
    for (size_t i = 0; i < open; i++)
        mpconn_conn_free(conns[i]);
    for (int id = 0; id < clients; id++) {
        int st;
        if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            status = 1;
    }
    mpconn_listener_free(l);
    printf("served %d clients, %d messages\n", accepted, messages);
    return status;
}
