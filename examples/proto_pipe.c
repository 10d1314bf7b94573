/* The protocol spoken by hand with <mpconn/proto.h> and nothing else: a
 * parent and a forked child authenticate over a plain pipe pair with the
 * HMAC handshake, then exchange messages, doing every read and write
 * themselves. The same loop works over any transport that moves bytes. */
#include <mpconn/proto.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char KEY[] = "secret password";

static int write_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_message(int fd, const void *p, size_t n)
{
    uint8_t hdr[MPCONN_FRAME_HEADER_MAX];
    size_t hl = mpconn_frame_header(n, hdr);
    return write_all(fd, hdr, hl) == 0 && write_all(fd, p, n) == 0 ? 0 : -1;
}

/* The next whole message from fd (1; free() it), 0 at a clean end of the
 * stream, -1 on an error, with a line saying which. */
static int next_message(const char *who, int fd, mpconn_reader *r, void **msg, size_t *len)
{
    for (;;) {
        int g = mpconn_reader_get(r, msg, len);
        if (g < 0)
            fprintf(stderr, "%s: %s\n", who, mpconn_reader_errmsg(r));
        if (g != 0)
            return g < 0 ? -1 : 1;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            perror("read");
            return -1;
        }
        if (n == 0) {
            if (mpconn_reader_pending(r) == 0)
                return 0;
            fprintf(stderr, "%s: end of stream inside a message\n", who);
            return -1;
        }
        if (mpconn_reader_feed(r, buf, (size_t)n) < 0)
            return -1;
    }
}

/* Runs one side's handshake: send what the machine says, feed it what
 * arrives, until it is done. Returns 0 when both sides hold the key. */
static int authenticate(const char *who, int role, int in, int out, mpconn_reader *r)
{
    mpconn_auth *a;
    if (mpconn_auth_new(&a, role, KEY, strlen(KEY), "sha256", 1) < 0)
        return -1;
    mpconn_auth_start(a); /* a server queues its challenge */
    int rc = 0;
    while (rc == 0) {
        const void *m;
        size_t n;
        while (rc == 0 && mpconn_auth_next_framed(a, &m, &n) == 1)
            rc = write_all(out, m, n);
        int done = mpconn_auth_done(a);
        if (rc < 0 || done == 1)
            break;
        if (done < 0) {
            fprintf(stderr, "%s: %s\n", who, mpconn_auth_errmsg(a));
            rc = -1;
            break;
        }
        void *msg;
        size_t len;
        if (next_message(who, in, r, &msg, &len) != 1) {
            rc = -1;
            break;
        }
        mpconn_auth_feed(a, msg, len);
        free(msg);
    }
    mpconn_auth_free(a);
    return rc;
}

/* The child speaks as a Client: it answers the parent's challenge, then
 * challenges back; authenticated, it asks a question and reads the answer. */
static int child(int in, int out)
{
    mpconn_reader *r;
    if (mpconn_reader_new(&r, 1 << 20) < 0)
        return 1;
    int rc = authenticate("child", MPCONN_AUTH_CLIENT, in, out, r);
    if (rc == 0) {
        printf("child:  authenticated; sending \"what is 6 x 7?\"\n");
        void *msg;
        size_t len;
        rc = send_message(out, "what is 6 x 7?", 14);
        if (rc == 0 && next_message("child", in, r, &msg, &len) == 1) {
            printf("child:  got \"%.*s\"\n", (int)len, (char *)msg);
            free(msg);
        } else {
            rc = -1;
        }
        if (rc == 0 && next_message("child", in, r, &msg, &len) == 0)
            printf("child:  the parent closed the stream between messages\n");
    }
    mpconn_reader_free(r);
    return rc == 0 ? 0 : 1;
}

/* The parent speaks as the Listener's side: it challenges first. */
static int parent(int in, int out)
{
    mpconn_reader *r;
    if (mpconn_reader_new(&r, 1 << 20) < 0)
        return 1;
    int rc = authenticate("parent", MPCONN_AUTH_SERVER, in, out, r);
    if (rc == 0) {
        printf("parent: authenticated\n");
        void *msg;
        size_t len;
        if (next_message("parent", in, r, &msg, &len) == 1) {
            printf("parent: got \"%.*s\"; answering \"42\"\n", (int)len, (char *)msg);
            free(msg);
            rc = send_message(out, "42", 2);
        } else {
            rc = -1;
        }
    }
    mpconn_reader_free(r);
    close(out); /* the child sees a clean end of the stream */
    return rc == 0 ? 0 : 1;
}

int main(void)
{
    int to_child[2], to_parent[2];
    /* A write to a pipe whose reader has gone fails with EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0); /* the two sides' lines in the order they happen */
    if (pipe(to_child) < 0 || pipe(to_parent) < 0) {
        perror("pipe");
        return 1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        int rc = child(to_child[0], to_parent[1]);
        fflush(stdout);
        _exit(rc);
    }
    close(to_child[0]);
    close(to_parent[1]);
    int rc = parent(to_parent[0], to_child[1]);
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rc = 1;
    return rc;
}
