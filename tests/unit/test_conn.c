/* Connections over pipes and socketpairs: framing on the wire, every size
 * class, receive into a buffer, limits, EOF forms, timeouts that keep the
 * stream's place, fd passing, SIGPIPE, poll and wait. */
#define _GNU_SOURCE
#include "conn/conn_internal.h"
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void duplex(mpconn_conn **a, mpconn_conn **b)
{
    CHECK_INT(mpconn_pipe(a, b, 1, NULL), 0);
}

static uint8_t *pattern(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    CHECK(p != NULL);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + 3);
    return p;
}

/* Writes raw bytes to the peer of a connection. */
static void raw_write(int fd, const void *p, size_t n)
{
    CHECK_INT(write(fd, p, n), (ssize_t)n);
}

TEST(wire_bytes_match_cpython_framing)
{
    int fds[2];
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    mpconn_conn *c;
    CHECK_INT(mpconn_conn_from_fd(&c, fds[0], MPCONN_READABLE | MPCONN_WRITABLE, NULL), 0);
    CHECK_INT(mpconn_conn_send_bytes(c, "\x03\x0a\x11\x18\x1f", 5), 0);
    uint8_t got[16];
    CHECK_INT(read(fds[1], got, sizeof got), 9);
    CHECK_MEM(got, "\x00\x00\x00\x05\x03\x0a\x11\x18\x1f", 9);
    CHECK_INT(mpconn_conn_send_bytes(c, "", 0), 0);
    CHECK_INT(read(fds[1], got, sizeof got), 4);
    CHECK_MEM(got, "\x00\x00\x00\x00", 4);
    mpconn_conn_free(c);
    close(fds[1]);
}

struct sender {
    mpconn_conn *c;
    const uint8_t *buf;
    size_t len;
    int result;
};

static void *send_thread(void *arg)
{
    struct sender *s = arg;
    s->result = mpconn_conn_send_bytes(s->c, s->buf, s->len);
    return NULL;
}

static void roundtrip_size(size_t n)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    uint8_t *p = pattern(n);
    struct sender s = {a, p, n, -1};
    pthread_t t;
    pthread_create(&t, NULL, send_thread, &s);
    void *msg;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(b, &msg, &len, 0), 0);
    pthread_join(t, NULL);
    CHECK_INT(s.result, 0);
    CHECK_INT(len, n);
    CHECK(memcmp(msg, p, n) == 0);
    free(msg);
    /* and into a caller buffer at an offset */
    pthread_create(&t, NULL, send_thread, &s);
    uint8_t *dst = malloc(n + 10);
    CHECK_INT(mpconn_conn_recv_bytes_into(b, dst, n + 10, 10, &len), 0);
    pthread_join(t, NULL);
    CHECK_INT(len, n);
    CHECK(memcmp(dst + 10, p, n) == 0);
    free(dst);
    free(p);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(sizes_0_1_16384_16385_1m)
{
    size_t sizes[] = {0, 1, 16384, 16385, 65535, 65536, 200000, 1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        roundtrip_size(sizes[i]);
}

TEST(size_64m)
{
    roundtrip_size((size_t)64 << 20);
}

TEST(many_small_messages_in_one_read)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    for (int i = 0; i < 100; i++) {
        char m[16];
        snprintf(m, sizeof m, "msg %d", i);
        CHECK_INT(mpconn_conn_send_string(a, m), 0);
    }
    for (int i = 0; i < 100; i++) {
        char *s, m[16];
        snprintf(m, sizeof m, "msg %d", i);
        CHECK_INT(mpconn_conn_recv_string(b, &s, 0), 0);
        CHECK_STR(s, m);
        free(s);
    }
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(send_slice_checks_bounds)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    const char buf[] = "0123456789";
    CHECK_INT(mpconn_conn_send_slice(a, buf, 10, 2, 3), 0);
    CHECK_INT(mpconn_conn_send_slice(a, buf, 10, 7, (size_t)-1), 0);
    CHECK_INT(mpconn_conn_send_slice(a, buf, 10, 11, 0), -EINVAL);
    CHECK_INT(mpconn_conn_send_slice(a, buf, 10, 8, 3), -EINVAL);
    char *s;
    CHECK_INT(mpconn_conn_recv_string(b, &s, 0), 0);
    CHECK_STR(s, "234");
    free(s);
    CHECK_INT(mpconn_conn_recv_string(b, &s, 0), 0);
    CHECK_STR(s, "789");
    free(s);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(recv_into_too_short_keeps_message)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    uint8_t *p = pattern(100);
    CHECK_INT(mpconn_conn_send_bytes(a, p, 100), 0);
    CHECK_INT(mpconn_conn_send_bytes(a, "next", 4), 0);
    uint8_t small[10];
    size_t len = 0;
    CHECK_INT(mpconn_conn_recv_bytes_into(b, small, sizeof small, 0, &len), MPCONN_ERR_SHORTBUF);
    CHECK_INT(len, 100);
    CHECK(strstr(mpconn_conn_errmsg(b), "100") != NULL);
    CHECK_INT(mpconn_conn_poll(b, 0), 1);
    /* still too short: same answer, nothing lost */
    CHECK_INT(mpconn_conn_recv_bytes_into(b, small, sizeof small, 5, &len), MPCONN_ERR_SHORTBUF);
    uint8_t big[200];
    CHECK_INT(mpconn_conn_recv_bytes_into(b, big, sizeof big, 50, &len), 0);
    CHECK_INT(len, 100);
    CHECK(memcmp(big + 50, p, 100) == 0);
    CHECK_INT(mpconn_conn_recv_bytes_into(b, big, sizeof big, 0, &len), 0);
    CHECK_INT(len, 4);
    CHECK_MEM(big, "next", 4);
    free(p);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(recv_bytes_after_short_buffer)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    CHECK_INT(mpconn_conn_send_bytes(a, "0123456789abcdef", 16), 0);
    uint8_t small[4];
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes_into(b, small, sizeof small, 0, &len), MPCONN_ERR_SHORTBUF);
    void *m;
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), 0);
    CHECK_INT(len, 16);
    CHECK_MEM(m, "0123456789abcdef", 16);
    free(m);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(maxlength_makes_unreadable)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    CHECK_INT(mpconn_conn_send_bytes(a, "0123456789", 10), 0);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 5), MPCONN_ERR_MSGSIZE);
    CHECK(strstr(mpconn_conn_errmsg(b), "bad message length") != NULL);
    CHECK_INT(mpconn_conn_readable(b), 0);
    CHECK_INT(mpconn_conn_writable(b), 1);
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), MPCONN_ERR_NOTREADABLE);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

/* A socketpair whose fds[0] is read through a new connection (returned)
 * and whose fds[1] the test writes raw bytes to. */
static mpconn_conn *reading_end(int fds[2])
{
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    mpconn_conn *c;
    CHECK_INT(mpconn_conn_from_fd(&c, fds[0], MPCONN_READABLE, NULL), 0);
    return c;
}

TEST(huge_claim_allocates_nothing_up_front)
{
    int fds[2];
    mpconn_conn *c = reading_end(fds);
    /* -1 then 2^62, a few bytes, then the peer vanishes. */
    const uint8_t h[] = {0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 'a', 'b'};
    raw_write(fds[1], h, sizeof h);
    close(fds[1]);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), MPCONN_ERR_EOFMSG);
    CHECK(strstr(mpconn_conn_errmsg(c), "end of file during message") != NULL);
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), MPCONN_ERR_BROKEN);
    mpconn_conn_free(c);
}

TEST(max_message_checked_before_allocation)
{
    int fds[2];
    mpconn_conn *c = reading_end(fds);
    CHECK_INT(mpconn_conn_set_max_message(c, 1000), 0);
    const uint8_t h[] = {0, 0, 0x10, 0};
    raw_write(fds[1], h, sizeof h);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), MPCONN_ERR_MSGSIZE);
    CHECK(strstr(mpconn_conn_errmsg(c), "4096") != NULL);
    mpconn_conn_free(c);
    close(fds[1]);
}

TEST(negative_length_is_protocol_error)
{
    int fds[2];
    mpconn_conn *c = reading_end(fds);
    raw_write(fds[1], "\xff\xff\xff\x00", 4);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), MPCONN_ERR_PROTO);
    mpconn_conn_free(c);
    close(fds[1]);
}

TEST(eof_between_messages)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    CHECK_INT(mpconn_conn_send_bytes(a, "x", 1), 0);
    mpconn_conn_free(a);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), 0);
    free(m);
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), MPCONN_ERR_EOF);
    /* EOF stays EOF, it is not a broken stream */
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), MPCONN_ERR_EOF);
    mpconn_conn_free(b);
}

TEST(eof_inside_header)
{
    int fds[2];
    mpconn_conn *c = reading_end(fds);
    raw_write(fds[1], "\0\0", 2);
    close(fds[1]);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), MPCONN_ERR_EOFMSG);
    mpconn_conn_free(c);
}

TEST(timeout_inside_message_continues)
{
    int fds[2];
    mpconn_conn *c = reading_end(fds);
    CHECK_INT(mpconn_conn_set_timeouts(c, -1, 0.05), 0);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), -ETIMEDOUT);
    raw_write(fds[1], "\0\0", 2); /* half a header */
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), -ETIMEDOUT);
    raw_write(fds[1], "\0\6ab", 4); /* rest of header, part of payload */
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), -ETIMEDOUT);
    raw_write(fds[1], "cdef", 4);
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), 0);
    CHECK_INT(len, 6);
    CHECK_MEM(m, "abcdef", 6);
    free(m);
    /* the same with recv_bytes_into, a large message read straight into the buffer */
    size_t n = 300000;
    uint8_t *p = pattern(n), *dst = malloc(n);
    uint8_t h[4] = {0, (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    raw_write(fds[1], h, 4);
    raw_write(fds[1], p, 100000);
    CHECK_INT(mpconn_conn_recv_bytes_into(c, dst, n, 0, &len), -ETIMEDOUT);
    raw_write(fds[1], p + 100000, n - 100000);
    memset(dst, 0, n);
    CHECK_INT(mpconn_conn_recv_bytes_into(c, dst, n, 0, &len), 0);
    CHECK_INT(len, n);
    CHECK(memcmp(dst, p, n) == 0);
    free(p);
    free(dst);
    mpconn_conn_free(c);
    close(fds[1]);
}

TEST(send_timeout)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    CHECK_INT(mpconn_conn_set_timeouts(a, 0.05, -1), 0);
    size_t n = 64 << 20;
    uint8_t *p = calloc(1, n);
    CHECK_INT(mpconn_conn_send_bytes(a, p, n), -ETIMEDOUT);
    /* part of the message left: the stream can no longer carry messages */
    CHECK_INT(mpconn_conn_send_bytes(a, "x", 1), MPCONN_ERR_BROKEN);
    free(p);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(write_to_closed_peer_no_sigpipe)
{
    /* Default SIGPIPE disposition: a raised signal would kill the test. */
    signal(SIGPIPE, SIG_DFL);
    mpconn_conn *r, *w;
    CHECK_INT(mpconn_pipe(&r, &w, 0, NULL), 0);
    mpconn_conn_free(r);
    CHECK_INT(mpconn_conn_send_bytes(w, "hello", 5), -EPIPE);
    CHECK(strstr(mpconn_conn_errmsg(w), "closed") != NULL);
    mpconn_conn_free(w);
    mpconn_conn *a, *b;
    duplex(&a, &b);
    mpconn_conn_free(b);
    int res = mpconn_conn_send_bytes(a, "hello", 5);
    CHECK(res == -EPIPE || res == -ECONNRESET);
    mpconn_conn_free(a);
    sigset_t pending;
    sigpending(&pending);
    CHECK(!sigismember(&pending, SIGPIPE));
}

TEST(one_way_pipe_ends)
{
    mpconn_conn *r, *w;
    CHECK_INT(mpconn_pipe(&r, &w, 0, NULL), 0);
    CHECK_INT(mpconn_conn_readable(r), 1);
    CHECK_INT(mpconn_conn_writable(r), 0);
    CHECK_INT(mpconn_conn_readable(w), 0);
    CHECK_INT(mpconn_conn_writable(w), 1);
    CHECK_INT(mpconn_conn_send_bytes(r, "x", 1), MPCONN_ERR_NOTWRITABLE);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(w, &m, &len, 0), MPCONN_ERR_NOTREADABLE);
    CHECK_INT(mpconn_conn_send_bytes(w, "pipe", 4), 0);
    CHECK_INT(mpconn_conn_recv_bytes(r, &m, &len, 0), 0);
    CHECK_MEM(m, "pipe", 4);
    free(m);
    mpconn_conn_free(r);
    mpconn_conn_free(w);
}

TEST(close_and_state)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    CHECK(mpconn_conn_fileno(a) >= 0);
    CHECK_INT(mpconn_conn_closed(a), 0);
    CHECK_INT(mpconn_conn_close(a), 0);
    CHECK_INT(mpconn_conn_closed(a), 1);
    CHECK_INT(mpconn_conn_fileno(a), -1);
    CHECK_INT(mpconn_conn_send_bytes(a, "x", 1), MPCONN_ERR_CLOSED);
    CHECK_INT(mpconn_conn_close(a), 0);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
    mpconn_conn_free(NULL);
}

TEST(fds_are_cloexec)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    CHECK(fcntl(mpconn_conn_fileno(a), F_GETFD) & FD_CLOEXEC);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
    CHECK_INT(mpconn_pipe(&a, &b, 0, NULL), 0);
    CHECK(fcntl(mpconn_conn_fileno(b), F_GETFD) & FD_CLOEXEC);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(poll_counts_buffered_bytes)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    CHECK_INT(mpconn_conn_poll(b, 0), 0);
    CHECK_INT(mpconn_conn_poll(b, 0.02), 0);
    CHECK_INT(mpconn_conn_send_bytes(a, "one", 3), 0);
    CHECK_INT(mpconn_conn_send_bytes(a, "two", 3), 0);
    CHECK_INT(mpconn_conn_poll(b, -1), 1);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), 0);
    free(m);
    /* "two" sits in b's read buffer now, not in the socket */
    CHECK_INT(mpconn_conn_poll(b, 0), 1);
    mpconn_waitable w[2] = {{.conn = b, .fd = -1}, {.conn = a, .fd = -1}};
    CHECK_INT(mpconn_wait(w, 2, 5), 1);
    CHECK_INT(w[0].ready, 1);
    CHECK_INT(w[1].ready, 0);
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), 0);
    free(m);
    CHECK_INT(mpconn_wait(w, 2, 0.02), 0);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(wait_many_beyond_fd_setsize)
{
    enum { N = 600 };
    mpconn_conn *a[N], *b[N];
    struct rlimit;
    mpconn_waitable *w = calloc(N, sizeof *w);
    int made = 0;
    for (int i = 0; i < N; i++) {
        if (mpconn_pipe(&a[i], &b[i], 1, NULL) < 0)
            break;
        w[i].conn = b[i];
        w[i].fd = -1;
        made++;
    }
    CHECK(made > 500); /* enough fds for fds >= 1024 */
    CHECK_INT(mpconn_conn_send_bytes(a[made - 1], "z", 1), 0);
    CHECK_INT(mpconn_wait(w, (size_t)made, 5), 1);
    CHECK_INT(w[made - 1].ready, 1);
    for (int i = 0; i < made; i++) {
        mpconn_conn_free(a[i]);
        mpconn_conn_free(b[i]);
    }
    free(w);
}

TEST(fd_passing)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    int p[2];
    CHECK_INT(pipe(p), 0);
    /* a message, then an fd, then a message: the fd survives read-ahead */
    CHECK_INT(mpconn_conn_send_bytes(a, "before", 6), 0);
    CHECK_INT(mpconn_conn_send_fd(a, p[1], 0), 0);
    CHECK_INT(mpconn_conn_send_bytes(a, "after", 5), 0);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), 0);
    CHECK_MEM(m, "before", 6);
    free(m);
    int got = -1;
    CHECK_INT(mpconn_conn_recv_fd(b, &got, 0), 0);
    CHECK(got >= 0 && got != p[1]);
    CHECK(fcntl(got, F_GETFD) & FD_CLOEXEC);
    CHECK_INT(write(got, "via fd", 6), 6);
    char buf[8];
    CHECK_INT(read(p[0], buf, sizeof buf), 6);
    CHECK_MEM(buf, "via fd", 6);
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), 0);
    CHECK_MEM(m, "after", 5);
    free(m);
    close(got);
    close(p[0]);
    close(p[1]);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

struct fdack {
    mpconn_conn *c;
    int fd;
    int result;
};

static void *recv_fd_ack(void *arg)
{
    struct fdack *f = arg;
    f->result = mpconn_conn_recv_fd(f->c, &f->fd, 1);
    return NULL;
}

TEST(fd_passing_with_ack)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    struct fdack f = {b, -1, -1};
    pthread_t t;
    pthread_create(&t, NULL, recv_fd_ack, &f);
    CHECK_INT(mpconn_conn_send_fd(a, 0, 1), 0);
    pthread_join(t, NULL);
    CHECK_INT(f.result, 0);
    CHECK(f.fd >= 0);
    close(f.fd);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

/* Sends bytes with descriptors attached, in one sendmsg(). */
static void send_with_fds(int sock, const void *p, size_t n, const int *fds, size_t nfds)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * 32)];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    CHECK(nfds >= 1 && nfds <= 32);
    struct iovec iov = {(void *)p, n};
    struct msghdr m = {.msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = ctl.buf,
                       .msg_controllen = CMSG_SPACE(sizeof(int) * nfds)};
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(h), fds, sizeof(int) * nfds);
    CHECK_INT(sendmsg(sock, &m, 0), (ssize_t)n);
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Writes text through wr and expects it at rd at once (rd is made
 * non-blocking: a wrong pipe fails instead of hanging). */
static void check_pipe_gets(int wr, int rd, const char *text)
{
    CHECK_INT(fcntl(rd, F_SETFL, O_NONBLOCK), 0);
    CHECK_INT(write(wr, text, strlen(text)), (ssize_t)strlen(text));
    char buf[32];
    CHECK_INT(read(rd, buf, sizeof buf), (ssize_t)strlen(text));
    CHECK_MEM(buf, text, strlen(text));
}

/* A peer that sends descriptors with ordinary messages fills no table:
 * each is closed as it arrives and counted, and the messages still come. */
TEST(unsolicited_fds_closed_at_once)
{
    int fds[2];
    mpconn_conn *c = reading_end(fds);
    int p[2];
    CHECK_INT(pipe(p), 0);
    int four[4] = {p[0], p[1], p[0], p[1]};
    int before = open_fds();
    for (int i = 0; i < 40; i++) {
        /* every other message ends in the byte 1, as a count byte would */
        const char *msg = i % 2 ? "\0\0\0\3ab\1" : "\0\0\0\3abc";
        send_with_fds(fds[1], msg, 7, four, i % 2 ? 1 : 4);
        void *m;
        size_t len;
        CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), 0);
        CHECK_INT(len, 3);
        free(m);
        CHECK_INT(open_fds(), before);
    }
    CHECK_INT(mpconn_conn_dropped_fds(c), 20 * 4 + 20);
    CHECK(strstr(mpconn_conn_errmsg(c), "unasked") != NULL);
    close(p[0]);
    close(p[1]);
    close(fds[1]);
    mpconn_conn_free(c);
}

/* More descriptors in one read than the room given: the kernel discards
 * the rest, which is reported; the ones it installed are closed. */
TEST(truncated_descriptors_reported)
{
    int fds[2];
    mpconn_conn *c = reading_end(fds);
    int many[20];
    for (int i = 0; i < 20; i++)
        many[i] = 0;
    int before = open_fds();
    send_with_fds(fds[1], "\0\0\0\1x", 5, many, 20);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), 0);
    free(m);
    CHECK(strstr(mpconn_conn_errmsg(c), "MSG_CTRUNC") != NULL);
    CHECK(mpconn_conn_dropped_fds(c) > 0 && mpconn_conn_dropped_fds(c) < 20);
    CHECK_INT(open_fds(), before);
    close(fds[1]);
    mpconn_conn_free(c);
}

/* recv_fd returns the descriptor that came with its own count byte, never
 * one that came earlier with message bytes. */
TEST(recv_fd_takes_the_fd_of_its_count_byte)
{
    int fds[2];
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    mpconn_conn *c, *peer;
    CHECK_INT(mpconn_conn_from_fd(&c, fds[0], MPCONN_READABLE | MPCONN_WRITABLE, NULL), 0);
    CHECK_INT(mpconn_conn_from_fd(&peer, fds[1], MPCONN_READABLE | MPCONN_WRITABLE, NULL), 0);
    int decoy[2], real[2];
    CHECK_INT(pipe(decoy), 0);
    CHECK_INT(pipe(real), 0);
    send_with_fds(fds[1], "\0\0\0\2hi", 6, &decoy[1], 1);
    send_with_fds(fds[1], "\0\0\0\2h\1", 6, &decoy[1], 1); /* ends like a count byte */
    CHECK_INT(mpconn_conn_send_fd(peer, real[1], 0), 0);
    void *m;
    size_t len;
    for (int i = 0; i < 2; i++) {
        CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), 0);
        CHECK_INT(len, 2);
        free(m);
    }
    int got = -1;
    CHECK_INT(mpconn_conn_recv_fd(c, &got, 0), 0);
    check_pipe_gets(got, real[0], "real");
    close(got);
    CHECK_INT(mpconn_conn_dropped_fds(c), 2);

    /* a count byte without a descriptor, after an unsolicited one */
    send_with_fds(fds[1], "\0\0\0\2hi", 6, &decoy[1], 1);
    raw_write(fds[1], "\1", 1);
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), 0);
    free(m);
    got = -1;
    CHECK_INT(mpconn_conn_recv_fd(c, &got, 0), MPCONN_ERR_PROTO);
    CHECK_INT(got, -1);
    CHECK(strstr(mpconn_conn_errmsg(c), "without a descriptor") != NULL);
    /* and one read straight from the socket (nothing read ahead) */
    raw_write(fds[1], "\1", 1);
    CHECK_INT(mpconn_conn_recv_fd(c, &got, 0), MPCONN_ERR_PROTO);
    /* the stream goes on */
    CHECK_INT(mpconn_conn_send_fd(peer, real[1], 0), 0);
    CHECK_INT(mpconn_conn_recv_fd(c, &got, 0), 0);
    check_pipe_gets(got, real[0], "again");
    close(got);
    for (int i = 0; i < 2; i++) {
        close(decoy[i]);
        close(real[i]);
    }
    mpconn_conn_free(c);
    mpconn_conn_free(peer);
}

/* A held descriptor whose count byte is read as a message header is gone
 * at once, and a detached connection leaves none open. */
TEST(held_fd_released_with_its_byte)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    int p[2];
    CHECK_INT(pipe(p), 0);
    int before = open_fds();
    CHECK_INT(mpconn_conn_send_bytes(a, "x", 1), 0);
    CHECK_INT(mpconn_conn_send_fd(a, p[1], 0), 0);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), 0);
    free(m);
    /* the count byte (and its descriptor) may have come with the read */
    CHECK(open_fds() <= before + 1);
    /* read as the first byte of a header instead: \1 \0 \0 \0 is too
     * long for the limit, the descriptor is not kept for anybody */
    CHECK_INT(mpconn_conn_send_bytes(a, "", 0), 0);
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 5), MPCONN_ERR_MSGSIZE);
    CHECK_INT(open_fds(), before);
    CHECK_INT(mpconn_conn_dropped_fds(b), 1);
    /* detach with one held */
    mpconn_conn_free(b);
    mpconn_conn *c;
    CHECK_INT(mpconn_pipe(&c, &b, 1, NULL), 0);
    mpconn_conn_free(a);
    a = c;
    before = open_fds();
    CHECK_INT(mpconn_conn_send_bytes(a, "x", 1), 0);
    CHECK_INT(mpconn_conn_send_fd(a, p[1], 0), 0);
    usleep(10000);
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), 0);
    free(m);
    int fd = mpconn_conn_detach(b);
    CHECK_INT(open_fds(), before);
    close(fd);
    close(p[0]);
    close(p[1]);
    mpconn_conn_free(a);
}

/* Out of descriptors: the kernel discards the passed one and recv_fd says
 * so instead of waiting or returning another. */
TEST(recv_fd_out_of_descriptors)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    struct rlimit old, low;
    CHECK_INT(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 64;
    CHECK_INT(setrlimit(RLIMIT_NOFILE, &low), 0);
    int filler[64], n = 0;
    CHECK_INT(mpconn_conn_send_fd(a, 0, 0), 0);
    while (n < 64 && (filler[n] = dup(0)) >= 0)
        n++;
    CHECK(n < 64);
    int got = -1;
    CHECK_INT(mpconn_conn_recv_fd(b, &got, 0), -EMFILE);
    CHECK(strstr(mpconn_conn_errmsg(b), "discarded") != NULL);
    for (int i = 0; i < n; i++)
        close(filler[i]);
    CHECK_INT(setrlimit(RLIMIT_NOFILE, &old), 0);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(fd_passing_needs_unix_socket)
{
    mpconn_conn *r, *w;
    CHECK_INT(mpconn_pipe(&r, &w, 0, NULL), 0);
    CHECK_INT(mpconn_conn_send_fd(w, 0, 0), MPCONN_ERR_NOTSUP);
    mpconn_conn_free(r);
    mpconn_conn_free(w);
}

struct locker {
    mpconn_conn *c;
    int id;
};

static void *lock_sender(void *arg)
{
    struct locker *l = arg;
    uint8_t *p = malloc(100000);
    memset(p, 'a' + l->id, 100000);
    for (int i = 0; i < 20; i++)
        CHECK_INT(mpconn_conn_send_bytes(l->c, p, 100000), 0);
    free(p);
    return NULL;
}

TEST(send_lock_keeps_messages_whole)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    CHECK_INT(mpconn_conn_set_send_lock(a, 1), 0);
    pthread_t t[3];
    struct locker l[3];
    for (int i = 0; i < 3; i++) {
        l[i] = (struct locker){a, i};
        pthread_create(&t[i], NULL, lock_sender, &l[i]);
    }
    for (int k = 0; k < 60; k++) {
        void *m;
        size_t len;
        CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), 0);
        CHECK_INT(len, 100000);
        uint8_t *p = m;
        for (size_t i = 1; i < len; i++)
            CHECK(p[i] == p[0]);
        free(m);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(detach_returns_fd)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    int fd = mpconn_conn_fileno(a);
    CHECK_INT(mpconn_conn_detach(a), fd);
    CHECK(fcntl(fd, F_GETFD) >= 0);
    close(fd);
    mpconn_conn_free(b);
}

/* ------------------------------------------------------------------------
 * Which errors leave a connection usable: one TEST per row of the table in
 * include/mpconn.h ("usable_*": the stream keeps its place and a message sent
 * after the error arrives whole; "lost_*": that direction is gone). */

/* Writes one framed message to fd by hand. */
static void raw_frame(int fd, const void *p, size_t n)
{
    uint8_t h[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    raw_write(fd, h, 4);
    if (n)
        raw_write(fd, p, n);
}

/* The next message on c is exactly text. */
static void expect_next(mpconn_conn *c, const char *text)
{
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), 0);
    CHECK_INT(len, strlen(text));
    CHECK_MEM(m, text, len);
    free(m);
}

TEST(usable_recv_timeout_between_messages)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    CHECK_INT(mpconn_conn_set_timeouts(b, -1, 0.02), 0);
    void *m;
    size_t len;
    mpconn_value *v;
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), -ETIMEDOUT);
    CHECK_INT(mpconn_conn_recv(b, &v), -ETIMEDOUT);
    CHECK_INT(mpconn_conn_readable(b), 1);
    CHECK_INT(mpconn_conn_send_bytes(a, "after", 5), 0);
    expect_next(b, "after");
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(usable_recv_timeout_inside_message)
{
    /* Each kind continuing itself is timeout_inside_message_continues; here the
     * object receive, cut inside the header, then recv_bytes_into cut inside the
     * pickle, and the object receive finishing what the other began. */
    int fds[2];
    mpconn_conn *c = reading_end(fds);
    CHECK_INT(mpconn_conn_set_timeouts(c, -1, 0.02), 0);
    void *pk;
    size_t n;
    mpconn_value *v = NULL;
    CHECK_INT(mpconn_pack(&v, NULL, 0, "[i s]", 7, "seven"), 0);
    CHECK_INT(mpconn_value_encode(v, 4, &pk, &n), 0);
    uint8_t h[4] = {0, 0, 0, (uint8_t)n};
    mpconn_value *got;
    raw_write(fds[1], h, 2);
    CHECK_INT(mpconn_conn_recv(c, &got), -ETIMEDOUT);
    raw_write(fds[1], h + 2, 2);
    raw_write(fds[1], pk, n / 2);
    uint8_t room[256];
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes_into(c, room, sizeof room, 0, &len), -ETIMEDOUT);
    CHECK_INT(mpconn_conn_readable(c), 1);
    raw_write(fds[1], (uint8_t *)pk + n / 2, n - n / 2);
    CHECK_INT(mpconn_conn_recv(c, &got), 0);
    CHECK(mpconn_value_equal(got, v));
    mpconn_value_unref(got);
    mpconn_value_unref(v);
    free(pk);
    mpconn_conn_free(c);
    close(fds[1]);
}

TEST(usable_recv_short_buffer)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    CHECK_INT(mpconn_conn_send_bytes(a, "0123456789", 10), 0);
    CHECK_INT(mpconn_conn_send_bytes(a, "after", 5), 0);
    uint8_t small[4];
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes_into(b, small, sizeof small, 0, &len), MPCONN_ERR_SHORTBUF);
    CHECK_INT(mpconn_conn_readable(b), 1);
    expect_next(b, "0123456789");
    expect_next(b, "after");
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(short_buffer_message_counts_bytes_in_words)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    CHECK_INT(mpconn_conn_send_bytes(a, "x", 1), 0);
    CHECK_INT(mpconn_conn_send_bytes(a, "xy", 2), 0);
    uint8_t none[1];
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes_into(b, none, 0, 0, &len), MPCONN_ERR_SHORTBUF);
    CHECK(strstr(mpconn_conn_errmsg(b), "message of 1 byte does not fit in 0") != NULL);
    expect_next(b, "x");
    CHECK_INT(mpconn_conn_recv_bytes_into(b, none, 1, 0, &len), MPCONN_ERR_SHORTBUF);
    CHECK(strstr(mpconn_conn_errmsg(b), "message of 2 bytes does not fit in 1") != NULL);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

/* Sends bad (a message that mpconn_conn_recv refuses with code), then a good
 * pickle: the error consumed exactly the bad message. */
static void decode_error_row(const char *bad, size_t badlen, int code, const mpconn_opts *o)
{
    int fds[2];
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    mpconn_conn *c;
    CHECK_INT(mpconn_conn_from_fd(&c, fds[0], MPCONN_READABLE, o), 0);
    raw_frame(fds[1], bad, badlen);
    raw_frame(fds[1], "\x80\x04K\x2a.", 5); /* 42 */
    mpconn_value *v = NULL;
    CHECK_INT(mpconn_conn_recv(c, &v), code);
    CHECK_INT(mpconn_conn_readable(c), 1);
    CHECK_INT(mpconn_conn_recv(c, &v), 0);
    int64_t i = 0;
    CHECK_INT(mpconn_value_get_int(v, &i), 0);
    CHECK_INT(i, 42);
    mpconn_value_unref(v);
    mpconn_conn_free(c);
    close(fds[1]);
}

TEST(usable_recv_malformed_pickle)
{
    decode_error_row("\x80\x04K", 3, MPCONN_ERR_PICKLE, NULL); /* no STOP */
}

TEST(usable_recv_refused_pickle)
{
    /* GLOBAL os.system */
    decode_error_row("\x80\x02"
                     "cos\nsystem\n.",
                     14, MPCONN_ERR_REFUSED, NULL);
}

TEST(usable_recv_decoder_limit)
{
    mpconn_opts *o;
    CHECK_INT(mpconn_opts_new(&o), 0);
    CHECK_INT(mpconn_opts_set_decode_limits(o, 2, 0, 0, 0), 0);
    /* [[[[]]]] */
    decode_error_row("\x80\x02]q\x00]q\x01]q\x02]q\x03\x61\x61\x61.", 18, MPCONN_ERR_LIMIT, o);
    mpconn_opts_free(o);
}

TEST(usable_recv_recursive_pickle)
{
    decode_error_row("\x80\x02]q\x00h\x00\x61.", 9, MPCONN_ERR_RECURSIVE, NULL); /* l = [l] */
}

TEST(usable_recv_unhashable_key)
{
    decode_error_row("\x80\x02}]K\x01s.", 8, MPCONN_ERR_UNHASHABLE, NULL); /* {[]: 1} */
}

TEST(lost_recv_eof_repeats)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    mpconn_conn_free(a);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), MPCONN_ERR_EOF);
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 0), MPCONN_ERR_EOF);
    mpconn_conn_free(b);
}

TEST(lost_recv_message_too_long)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    CHECK_INT(mpconn_conn_send_bytes(a, "0123456789", 10), 0);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(b, &m, &len, 4), MPCONN_ERR_MSGSIZE);
    CHECK_INT(mpconn_conn_readable(b), 0);
    /* sending still works */
    CHECK_INT(mpconn_conn_writable(b), 1);
    CHECK_INT(mpconn_conn_send_bytes(b, "back", 4), 0);
    expect_next(a, "back");
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(lost_recv_eof_inside_message)
{
    int fds[2];
    mpconn_conn *c = reading_end(fds);
    raw_write(fds[1], "\0\0\0\5ab", 6);
    close(fds[1]);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), MPCONN_ERR_EOFMSG);
    CHECK_INT(mpconn_conn_readable(c), 0);
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), MPCONN_ERR_BROKEN);
    mpconn_conn_free(c);
}

TEST(lost_recv_bad_header)
{
    int fds[2];
    mpconn_conn *c = reading_end(fds);
    raw_write(fds[1], "\xff\xff\xff\xfe", 4);
    raw_frame(fds[1], "after", 5);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), MPCONN_ERR_PROTO);
    CHECK_INT(mpconn_conn_readable(c), 0);
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), MPCONN_ERR_BROKEN);
    mpconn_conn_free(c);
    close(fds[1]);
}

TEST(usable_send_timeout_before_any_byte)
{
    int fds[2];
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    mpconn_conn *c;
    CHECK_INT(mpconn_conn_from_fd(&c, fds[0], MPCONN_READABLE | MPCONN_WRITABLE, NULL), 0);
    CHECK_INT(mpconn_conn_set_timeouts(c, 0.02, -1), 0);
    /* Fill the socket by hand, a byte at a time, until not one more fits. */
    size_t filled = 0;
    while (filled < (64u << 20) && write(fds[0], "", 1) == 1)
        filled++;
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    CHECK_INT(mpconn_conn_send_bytes(c, "after", 5), -ETIMEDOUT);
    CHECK_INT(mpconn_conn_writable(c), 1);
    /* The peer drains the filler; the same send now goes out whole. */
    CHECK_INT(mpconn_conn_set_timeouts(c, -1, -1), 0);
    mpconn_conn *peer;
    CHECK_INT(mpconn_conn_from_fd(&peer, fds[1], MPCONN_READABLE, NULL), 0);
    char junk[4096];
    for (size_t got = 0; got < filled;) {
        ssize_t k = read(fds[1], junk, filled - got < sizeof junk ? filled - got : sizeof junk);
        CHECK(k > 0);
        got += (size_t)k;
    }
    CHECK_INT(mpconn_conn_send_bytes(c, "after", 5), 0);
    expect_next(peer, "after");
    mpconn_conn_free(c);
    mpconn_conn_free(peer);
}

TEST(lost_send_timeout_inside_message)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    CHECK_INT(mpconn_conn_set_timeouts(a, 0.02, -1), 0);
    size_t n = 16 << 20;
    uint8_t *p = calloc(1, n);
    CHECK_INT(mpconn_conn_send_bytes(a, p, n), -ETIMEDOUT);
    CHECK(strstr(mpconn_conn_errmsg(a), "inside a message") != NULL);
    CHECK_INT(mpconn_conn_writable(a), 0);
    CHECK_INT(mpconn_conn_send_bytes(a, "x", 1), MPCONN_ERR_BROKEN);
    /* receiving still works */
    CHECK_INT(mpconn_conn_send_bytes(b, "back", 4), 0);
    expect_next(a, "back");
    free(p);
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

TEST(lost_send_peer_gone)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    mpconn_conn_free(b);
    int r = mpconn_conn_send_bytes(a, "x", 1);
    CHECK(r == -EPIPE || r == -ECONNRESET);
    r = mpconn_conn_send_bytes(a, "x", 1);
    CHECK(r == -EPIPE || r == -ECONNRESET);
    mpconn_conn_free(a);
}

TEST(usable_send_refused_argument)
{
    mpconn_conn *a, *b;
    duplex(&a, &b);
    CHECK_INT(mpconn_conn_send_slice(a, "abc", 3, 2, 5), -EINVAL);
    CHECK_INT(mpconn_conn_send(a, NULL), -EINVAL);
    CHECK_INT(mpconn_conn_writable(a), 1);
    CHECK_INT(mpconn_conn_send_bytes(a, "after", 5), 0);
    expect_next(b, "after");
    mpconn_conn_free(a);
    mpconn_conn_free(b);
}

/* A keyless client connection (as mpconn_client makes it) whose listener
 * has already sent its challenge. */
static mpconn_conn *keyless_client_facing_challenge(int fds[2])
{
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    mpconn_conn *c;
    CHECK_INT(mpconn_conn_from_fd(&c, fds[0], MPCONN_READABLE | MPCONN_WRITABLE, NULL), 0);
    mpci_conn_set_check_first(c);
    raw_frame(fds[1], "#CHALLENGE#{sha256}0123456789012345678901234567890123456789", 59);
    return c;
}

TEST(lost_send_listener_wants_key)
{
    int fds[2];
    mpconn_conn *c = keyless_client_facing_challenge(fds);
    CHECK_INT(mpconn_conn_send_bytes(c, "hello", 5), MPCONN_ERR_NOKEY);
    CHECK(strstr(mpconn_conn_errmsg(c), "nothing was sent") != NULL);
    CHECK_INT(mpconn_conn_writable(c), 0);
    CHECK_INT(mpconn_conn_readable(c), 0);
    mpconn_value *v = mpconn_value_int(1);
    CHECK_INT(mpconn_conn_send(c, v), MPCONN_ERR_NOKEY);
    mpconn_value_unref(v);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), MPCONN_ERR_NOKEY);
    /* not a byte of "hello" reached the listener, which sees the hang-up */
    uint8_t buf[16];
    CHECK_INT(read(fds[1], buf, sizeof buf), 0);
    mpconn_conn_free(c);
    close(fds[1]);
}

TEST(lost_send_object_listener_wants_key)
{
    int fds[2];
    mpconn_conn *c = keyless_client_facing_challenge(fds);
    mpconn_value *v = mpconn_value_str("hello");
    CHECK_INT(mpconn_conn_send(c, v), MPCONN_ERR_NOKEY);
    mpconn_value_unref(v);
    uint8_t buf[16];
    CHECK_INT(read(fds[1], buf, sizeof buf), 0);
    mpconn_conn_free(c);
    close(fds[1]);
}

TEST(send_without_challenge_goes_out)
{
    /* A keyless listener sends nothing first: the check costs the send nothing. */
    int fds[2];
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    mpconn_conn *c, *peer;
    CHECK_INT(mpconn_conn_from_fd(&c, fds[0], MPCONN_READABLE | MPCONN_WRITABLE, NULL), 0);
    CHECK_INT(mpconn_conn_from_fd(&peer, fds[1], MPCONN_READABLE | MPCONN_WRITABLE, NULL), 0);
    mpci_conn_set_check_first(c);
    CHECK_INT(mpconn_conn_send_bytes(c, "hello", 5), 0);
    expect_next(peer, "hello");
    /* a challenge that comes later is the first recv's to find */
    CHECK_INT(mpconn_conn_send_bytes(peer, "#CHALLENGE#0123456789abcdefghij", 31), 0);
    CHECK_INT(mpconn_conn_send_bytes(c, "again", 5), 0);
    void *m;
    size_t len;
    CHECK_INT(mpconn_conn_recv_bytes(c, &m, &len, 0), MPCONN_ERR_NOKEY);
    mpconn_conn_free(c);
    mpconn_conn_free(peer);
}

TESTLIB_MAIN
