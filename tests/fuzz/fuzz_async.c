/* libFuzzer target for an async connection on mpconn's loop, end to end: a
 * hostile peer on the other end of a socketpair writes the input's stream
 * in pieces (some carrying a descriptor), and the connection's on_message
 * does what the input's script says with each message: echo it, hand its
 * buffer back to send, decode it, pause reading, switch the framing, shrink
 * the limit, expect a descriptor, start a producer, close. At the end the peer shuts its side
 * down. The connection must close within a bounded number of loop turns,
 * with exactly one on_close, and leave no descriptor open; ASan and UBSan
 * see the rest.
 *
 * Input: flags, step, max (x 7), script length, the script (one action per
 * message, cycling), then the stream. */
#include <mpconn.h>
#include <mpconn/async.h>
#include <mpconn/loop.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { F_AUTHKEY = 1, F_FD_PASSING = 2, F_PASS_FDS = 4, F_WATERMARKS = 8, F_CLIENT = 16 };

typedef struct fz {
    mpconn_async *a;
    const uint8_t *script;
    size_t nscript, k;
    int closes, paused, produced;
} fz;

static void release(void *buf, void *arg)
{
    (void)arg;
    free(buf);
}

static void on_message(mpconn_async *a, const void *msg, size_t len, void *data)
{
    fz *f = data;
    int act = f->nscript ? f->script[f->k++ % f->nscript] % 15 : 0;
    mpconn_value *v = NULL;
    void *mine;
    switch (act) {
    case 1: mpconn_async_send(a, msg, len); break;
    case 2:
        mpconn_async_pause_reading(a);
        f->paused = 1;
        break;
    case 3: mpconn_async_set_framing(a, MPCONN_FRAME_DELIM, "\r\n", 2); break;
    case 4: mpconn_async_set_framing(a, MPCONN_FRAME_COUNT, NULL, 3); break;
    case 5: mpconn_async_set_framing(a, MPCONN_FRAME_MP, NULL, 0); break;
    case 6: mpconn_async_set_framing(a, MPCONN_FRAME_RAW, NULL, 0); break;
    case 7:
        if (mpconn_async_decode(a, &v, msg, len) == 0) {
            mpconn_async_send_value(a, v);
            mpconn_value_unref(v);
        }
        break;
    case 8: mpconn_async_close_when_done(a); break;
    case 9: mpconn_async_close(a); break; /* a is gone once the stack unwinds */
    case 10:
        mine = mpconn_async_take_message(a, msg, len);
        if (mine && mpconn_async_send_owned(a, mine, len, release, NULL) < 0)
            break; /* release ran: the buffer is gone either way */
        if (!mine)
            mpconn_async_send(a, msg, len);
        break;
    case 11: mpconn_async_expect_fd(a); break;
    case 12: mpconn_async_set_max_message(a, len / 2 + 1); break;
    case 13: mpconn_async_set_framing(a, MPCONN_FRAME_DELIM, "\0", 1); break;
    case 14: mpconn_async_set_producer(a, 1); break;
    default: break;
    }
}

/* Three messages at a time while the queue is low, twelve in all. */
static int produce(mpconn_async *a, void *data)
{
    fz *f = data;
    for (int i = 0; i < 3 && f->produced < 12; i++, f->produced++)
        mpconn_async_send(a, "produced", 8);
    return f->produced < 12;
}

static void on_fd(mpconn_async *a, int fd, void *data)
{
    (void)a;
    (void)data;
    close(fd);
}

static void on_close(mpconn_async *a, int reason, const char *errmsg, void *data)
{
    (void)a;
    (void)reason;
    (void)errmsg;
    fz *f = data;
    f->closes++;
}

static int open_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 256; fd++)
        n += fcntl(fd, F_GETFD) >= 0;
    return n;
}

static void drain(int peer)
{
    uint8_t sink[65536];
    while (read(peer, sink, sizeof sink) > 0)
        ;
}

/* One byte with a descriptor, as multiprocessing.reduction sends one. */
static ssize_t write_with_fd(int peer, const uint8_t *p, size_t n, int fd)
{
    struct iovec iov = {(void *)p, n};
    char ctl[CMSG_SPACE(sizeof(int))];
    memset(ctl, 0, sizeof ctl);
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(peer, &m, MSG_DONTWAIT);
}

/* A few iterations of the loop, the peer reading all that came, reading
 * resumed after each: every turn delivers at least one message or ends. */
static void turn(mpconn_loop *loop, fz *f, int peer)
{
    for (int i = 0; i < 4; i++) {
        mpconn_loop_run(loop, MPCONN_RUN_NOWAIT);
        drain(peer);
        if (f->paused && !f->closes) {
            f->paused = 0;
            mpconn_async_resume_reading(f->a);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint8_t flags = data[0];
    size_t step = data[1] ? data[1] : 1, nscript = data[3] % 16;
    if (size < 4 + nscript)
        return 0;
    fz f = {.script = data + 4, .nscript = nscript};
    const uint8_t *stream = data + 4 + nscript;
    size_t len = size - 4 - nscript;

    int before = open_fds();
    mpconn_loop *loop;
    if (mpconn_loop_new(&loop, NULL) != 0)
        abort();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    mpconn_opts *o = NULL;
    if (mpconn_opts_new(&o) != 0)
        abort();
    if (flags & F_AUTHKEY)
        mpconn_opts_set_authkey(o, "key", 3);
    if (data[2])
        mpconn_opts_set_max_message(o, (uint64_t)data[2] * 7);
    mpconn_async_cbs cbs = {.size = sizeof cbs,
                            .on_message = on_message,
                            .on_close = on_close,
                            .on_fd = on_fd,
                            .produce = produce};
    /* With an authkey the peer is a client to answer, or a server whose
     * challenge and welcome the connection must judge. */
    int role = !(flags & F_AUTHKEY) ? MPCONN_ASYNC_PLAIN
               : flags & F_CLIENT   ? MPCONN_ASYNC_CLIENT
                                    : MPCONN_ASYNC_SERVER;
    if (mpconn_async_from_fd(&f.a, sv[0], role, o, &cbs, &f) != 0)
        abort();
    mpconn_opts_free(o);
    if (flags & F_FD_PASSING)
        mpconn_async_set_fd_passing(f.a, 1);
    if (flags & F_WATERMARKS)
        mpconn_async_set_watermarks(f.a, 64, 16);
    if (mpconn_async_attach(f.a, mpconn_loop_adapter(), loop) != 0)
        abort();
    int peer = sv[1], spare = open("/dev/null", O_RDONLY | O_CLOEXEC);

    size_t pos = 0;
    for (int stuck = 0; pos < len && !f.closes && stuck < 64;) {
        size_t n = len - pos < step ? len - pos : step;
        ssize_t w = flags & F_PASS_FDS && stream[pos] & 1
                        ? write_with_fd(peer, stream + pos, 1, spare)
                        : write(peer, stream + pos, n);
        if (w > 0) {
            pos += (size_t)w;
            stuck = 0;
        } else if (w < 0 && errno != EAGAIN) {
            break; /* the connection is gone */
        } else {
            stuck++;
        }
        turn(loop, &f, peer);
    }
    shutdown(peer, SHUT_WR);
    /* Each message takes at least one byte: a turn per byte is enough. */
    for (size_t i = 0; i < len + 64 && !f.closes; i++)
        turn(loop, &f, peer);
    if (f.closes != 1)
        abort(); /* no close after the peer's EOF: the connection hangs */
    mpconn_loop_run(loop, MPCONN_RUN_NOWAIT);
    mpconn_loop_free(loop);
    close(peer);
    close(spare);
    if (open_fds() != before)
        abort(); /* a descriptor the connection took in was not closed */
    return 0;
}
