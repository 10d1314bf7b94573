/* A parent and a forked child talking over mpconn_pipe: the child squares
 * the numbers it is sent until the parent sends "stop". */
#include <mpconn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int child(mpconn_conn *c)
{
    char *s;
    while (mpconn_conn_recv_string(c, &s, 64) == 0) {
        if (strcmp(s, "stop") == 0) {
            free(s);
            break;
        }
        long n = strtol(s, NULL, 10);
        free(s);
        char out[32];
        snprintf(out, sizeof out, "%ld", n * n);
        if (mpconn_conn_send_string(c, out) < 0)
            return 1;
    }
    return 0;
}

int main(void)
{
    mpconn_conn *parent_end, *child_end;
    if (mpconn_pipe(&parent_end, &child_end, 1, NULL) < 0) {
        perror("mpconn_pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        mpconn_conn_free(parent_end);
        int r = child(child_end);
        mpconn_conn_free(child_end);
        _exit(r);
    }
    mpconn_conn_free(child_end);
    for (int i = 1; i <= 5; i++) {
        char msg[16], *reply;
        snprintf(msg, sizeof msg, "%d", i);
        if (mpconn_conn_send_string(parent_end, msg) < 0 ||
            mpconn_conn_recv_string(parent_end, &reply, 64) < 0) {
            fprintf(stderr, "pipe_fork: %s\n", mpconn_conn_errmsg(parent_end));
            return 1;
        }
        printf("parent sent %s, child answered %s\n", msg, reply);
        free(reply);
    }
    mpconn_conn_send_string(parent_end, "stop");
    mpconn_conn_free(parent_end);
    int status;
    waitpid(pid, &status, 0);
    printf("child exited with %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
