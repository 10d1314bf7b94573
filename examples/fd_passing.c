/* Passing file descriptors between a parent and a forked child over a
 * duplex mpconn_pipe (a socketpair), in the wire form of CPython's
 * multiprocessing.reduction.send_handle/recv_handle. The parent hands the
 * child an open file it cannot name (unlinked); the child reads it and
 * hands back the write end of a new pipe, through which the parent writes
 * to it. */
#include <mpconn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int child(mpconn_conn *c)
{
    int file;
    if (mpconn_conn_recv_fd(c, &file, 0) < 0) { /* the fd is ours now */
        fprintf(stderr, "child: %s\n", mpconn_conn_errmsg(c));
        return 1;
    }
    char text[128];
    ssize_t n = pread(file, text, sizeof text - 1, 0);
    close(file);
    if (n < 0)
        return 1;
    text[n] = '\0';
    char reply[192];
    snprintf(reply, sizeof reply, "the child read %zd bytes: %s", n, text);
    if (mpconn_conn_send_string(c, reply) < 0)
        return 1;

    int p[2];
    if (pipe(p) < 0)
        return 1;
    /* Sending does not give the fd away: close our copy after. */
    int r = mpconn_conn_send_fd(c, p[1], 0);
    close(p[1]);
    if (r < 0) {
        close(p[0]);
        return 1;
    }
    /* The parent now holds the only write end: read until it closes it. */
    size_t got = 0;
    while (got < sizeof text - 1 && (n = read(p[0], text + got, sizeof text - 1 - got)) > 0)
        got += (size_t)n;
    close(p[0]);
    text[got] = '\0';
    snprintf(reply, sizeof reply, "the child read from its pipe: %s", text);
    return mpconn_conn_send_string(c, reply) < 0;
}

static int parent(mpconn_conn *c)
{
    char path[] = "/tmp/mpconn-fd-XXXXXX";
    int file = mkstemp(path);
    if (file < 0) {
        perror("mkstemp");
        return 1;
    }
    unlink(path); /* only the fd reaches the file now */
    const char text[] = "written by the parent before passing the fd";
    if (write(file, text, strlen(text)) < 0) {
        close(file);
        return 1;
    }
    int r = mpconn_conn_send_fd(c, file, 0);
    close(file);
    char *reply;
    if (r < 0 || mpconn_conn_recv_string(c, &reply, 1024) < 0) {
        fprintf(stderr, "parent: %s\n", mpconn_conn_errmsg(c));
        return 1;
    }
    printf("parent: %s\n", reply);
    free(reply);

    int w;
    if (mpconn_conn_recv_fd(c, &w, 0) < 0) {
        fprintf(stderr, "parent: %s\n", mpconn_conn_errmsg(c));
        return 1;
    }
    const char hello[] = "written by the parent into the child's pipe";
    ssize_t n = write(w, hello, strlen(hello));
    close(w); /* the child reads to end of file */
    if (n < 0 || mpconn_conn_recv_string(c, &reply, 1024) < 0)
        return 1;
    printf("parent: %s\n", reply);
    free(reply);
    return 0;
}

int main(void)
{
    mpconn_conn *a, *b;
    if (mpconn_pipe(&a, &b, 1, NULL) < 0) { /* duplex: fds travel only on sockets */
        perror("mpconn_pipe");
        return 1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        mpconn_conn_free(a);
        int r = child(b);
        mpconn_conn_free(b);
        _exit(r);
    }
    mpconn_conn_free(b);
    int r = parent(a);
    mpconn_conn_free(a);
    int status;
    waitpid(pid, &status, 0);
    printf("child exited with %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return r == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
