/* The event loop on both backends: timers, wake-ups and posts from other
 * threads, signals, closing from inside callbacks, fd reuse within one
 * iteration, and the run modes. Every case runs once per backend. */
#include "testlib.h"

#include <mpconn/loop.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define TEST_KNOWS_THREADS 1
#endif
#endif

/* The epoll backend twice: as it runs, polling a small loop without
 * epoll, and with every watcher on epoll (MPCONN_LOOP_POLL_MAX=0). */
static const struct {
    const char *name, *poll_max;
} backends[] = {{"epoll", NULL}, {"epoll", "0"}, {"poll", NULL}};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static mpconn_loop *new_loop(const char *backend)
{
    mpconn_loop *loop = NULL;
    CHECK_INT(mpconn_loop_new(&loop, backend), 0);
    CHECK_STR(mpconn_loop_backend(loop), backend);
    return loop;
}

/* Names backend i on stderr, for the failure that may follow. */
static void say_backend(size_t i)
{
    const char *max = backends[i].poll_max;
    fprintf(stderr, "backend %s%s%s\n", backends[i].name, max ? ", MPCONN_LOOP_POLL_MAX=" : "",
            max ? max : "");
}

/* Backend i's MPCONN_LOOP_POLL_MAX, which a loop reads when it is made; the
 * caller unsets it after. */
static void backend_env(size_t i)
{
    if (backends[i].poll_max)
        setenv("MPCONN_LOOP_POLL_MAX", backends[i].poll_max, 1);
}

static void each_backend(void (*fn)(const char *backend))
{
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        say_backend(i);
        backend_env(i);
        fn(backends[i].name);
        unsetenv("MPCONN_LOOP_POLL_MAX");
    }
}

static void make_pipe(int p[2])
{
    CHECK(pipe(p) == 0);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    fcntl(p[1], F_SETFL, O_NONBLOCK);
}

/* ------------------------------------------------------------------ timers */

typedef struct {
    int order[8];
    int n;
    mpconn_timer *other;
    int closes;
} tstate;

typedef struct {
    tstate *st;
    int id;
} tctx;

static void record_cb(mpconn_timer *t, void *data)
{
    (void)t;
    tctx *c = data;
    c->st->order[c->st->n++] = c->id;
}

static void timers_fire_in_deadline_order_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    tstate st = {0};
    tctx ctx[4] = {{&st, 30}, {&st, 10}, {&st, 20}, {&st, 11}};
    double after[4] = {0.030, 0.010, 0.020, 0.010};
    mpconn_timer *t[4];
    for (int i = 0; i < 4; i++) {
        CHECK_INT(mpconn_timer_new(&t[i], loop, record_cb, &ctx[i]), 0);
        CHECK_INT(mpconn_timer_start(t[i], after[i], 0), 0);
    }
    CHECK_INT(mpconn_loop_run_for(loop, 5), 0); /* returns when no timer is left */
    CHECK_INT(st.n, 4);
    /* 10 and 11 are due together: they fire in the order started. */
    CHECK_INT(st.order[0], 10);
    CHECK_INT(st.order[1], 11);
    CHECK_INT(st.order[2], 20);
    CHECK_INT(st.order[3], 30);
    for (int i = 0; i < 4; i++)
        CHECK(!mpconn_timer_active(t[i]));
    mpconn_loop_free(loop);
}

TEST(timers_fire_in_deadline_order)
{
    each_backend(timers_fire_in_deadline_order_on);
}

static void count_close(void *data)
{
    ((tstate *)data)->closes++;
}

static void cancel_cb(mpconn_timer *t, void *data)
{
    tstate *st = data;
    st->order[st->n++] = 1;
    mpconn_timer_stop(st->other);       /* due a little later: must never fire */
    mpconn_timer_close(t, count_close); /* itself, from its own callback */
    mpconn_timer_close(st->other, count_close);
}

static void must_not_fire(mpconn_timer *t, void *data)
{
    (void)t;
    ((tstate *)data)->order[((tstate *)data)->n++] = 99;
}

static void timer_cancel_and_close_inside_callback_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    tstate st = {0};
    mpconn_timer *a, *b;
    CHECK_INT(mpconn_timer_new(&a, loop, cancel_cb, &st), 0);
    CHECK_INT(mpconn_timer_new(&b, loop, must_not_fire, &st), 0);
    st.other = b;
    CHECK_INT(mpconn_timer_start(a, 0.005, 0), 0);
    CHECK_INT(mpconn_timer_start(b, 0.005, 0), 0); /* same deadline, started after a */
    CHECK_INT(mpconn_loop_run_for(loop, 5), 0);
    CHECK_INT(st.n, 1);
    CHECK_INT(st.order[0], 1);
    CHECK_INT(st.closes, 2);
    mpconn_loop_free(loop);
    CHECK_INT(st.closes, 2); /* no second close callback at free */
}

TEST(timer_cancel_and_close_inside_callback)
{
    each_backend(timer_cancel_and_close_inside_callback_on);
}

static void repeat_cb(mpconn_timer *t, void *data)
{
    tstate *st = data;
    if (++st->n == 5)
        mpconn_timer_stop(t);
}

static void timer_repeats_until_stopped_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    tstate st = {0};
    mpconn_timer *t;
    CHECK_INT(mpconn_timer_new(&t, loop, repeat_cb, &st), 0);
    double t0 = now_s();
    CHECK_INT(mpconn_timer_start(t, 0.002, 0.004), 0);
    CHECK_INT(mpconn_loop_run_for(loop, 5), 0);
    CHECK_INT(st.n, 5);
    CHECK(now_s() - t0 >= 0.018); /* 2 ms + 4 x 4 ms at the least */
    CHECK(!mpconn_timer_active(t));
    mpconn_loop_free(loop); /* frees the stopped, never-closed timer */
}

TEST(timer_repeats_until_stopped)
{
    each_backend(timer_repeats_until_stopped_on);
}

/* A timer that re-arms itself with 0 s must not keep the loop from I/O. */
typedef struct {
    int spins, reads;
} starve;

static void spin_cb(mpconn_timer *t, void *data)
{
    starve *s = data;
    s->spins++;
    if (s->reads == 0 && s->spins < 1000)
        mpconn_timer_start(t, 0, 0);
}

static void read_once_cb(mpconn_io *io, int events, void *data)
{
    (void)events;
    starve *s = data;
    char c;
    CHECK(read(mpconn_io_fd(io), &c, 1) == 1);
    s->reads++;
    mpconn_io_set(io, 0);
}

static void zero_timer_does_not_starve_io_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    starve s = {0};
    int p[2];
    make_pipe(p);
    CHECK(write(p[1], "x", 1) == 1);
    mpconn_io *io;
    mpconn_timer *t;
    CHECK_INT(mpconn_io_new(&io, loop, p[0], read_once_cb, &s), 0);
    CHECK_INT(mpconn_io_set(io, MPCONN_READABLE), 0);
    CHECK_INT(mpconn_timer_new(&t, loop, spin_cb, &s), 0);
    CHECK_INT(mpconn_timer_start(t, 0, 0), 0);
    for (int i = 0; i < 10 && s.reads == 0; i++)
        mpconn_loop_run(loop, MPCONN_RUN_NOWAIT);
    CHECK_INT(s.reads, 1);
    CHECK(s.spins <= 2);
    mpconn_loop_free(loop);
    close(p[0]);
    close(p[1]);
}

TEST(zero_timer_does_not_starve_io)
{
    each_backend(zero_timer_does_not_starve_io_on);
}

/* ------------------------------------------------------- threads: post, stop */

typedef struct {
    mpconn_loop *loop;
    int count; /* touched on the loop thread only */
    int total;
} poster;

static void bump(void *data)
{
    poster *p = data;
    if (++p->count == p->total)
        mpconn_loop_stop(p->loop);
}

static void *post_many(void *data)
{
    poster *p = data;
    for (int i = 0; i < p->total; i++)
        CHECK_INT(mpconn_loop_post(p->loop, bump, p), 0);
    return NULL;
}

static void post_from_another_thread_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    mpconn_timer *keep; /* keeps the loop alive while the thread posts */
    CHECK_INT(mpconn_timer_new(&keep, loop, must_not_fire, NULL), 0);
    CHECK_INT(mpconn_timer_start(keep, 30, 0), 0);
    poster p = {loop, 0, 1000};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, post_many, &p) == 0);
    double t0 = now_s();
    while (p.count < p.total && now_s() - t0 < 10)
        mpconn_loop_run_for(loop, 10);
    pthread_join(th, NULL);
    CHECK_INT(p.count, 1000);
    mpconn_loop_free(loop);
}

TEST(post_from_another_thread)
{
    each_backend(post_from_another_thread_on);
}

static void *stop_later(void *data)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    mpconn_loop_stop(data);
    return NULL;
}

static void stop_from_another_thread_wakes_the_loop_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    mpconn_timer *keep;
    CHECK_INT(mpconn_timer_new(&keep, loop, must_not_fire, NULL), 0);
    CHECK_INT(mpconn_timer_start(keep, 60, 0), 0);
    pthread_t th;
    double t0 = now_s();
    CHECK(pthread_create(&th, NULL, stop_later, loop) == 0);
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_DEFAULT), 1); /* still active */
    double took = now_s() - t0;
    pthread_join(th, NULL);
    CHECK(took < 5); /* woken, not waiting out the 60 s timer */
    mpconn_loop_free(loop);
}

TEST(stop_from_another_thread_wakes_the_loop)
{
    each_backend(stop_from_another_thread_wakes_the_loop_on);
}

/* ----------------------------------------------------------------- signals */

static void on_usr1(mpconn_signal *s, int signum, void *data)
{
    (void)s;
    CHECK_INT(signum, SIGUSR1);
    (*(int *)data)++;
    mpconn_signal_close(s, NULL);
}

static void signal_arrives_as_a_callback_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    sigset_t before, during, after;
    pthread_sigmask(SIG_BLOCK, NULL, &before);
    CHECK(!sigismember(&before, SIGUSR1));
    int got = 0;
    mpconn_signal *s;
    CHECK_INT(mpconn_signal_new(&s, loop, SIGUSR1, on_usr1, &got), 0);
    pthread_sigmask(SIG_BLOCK, NULL, &during);
    CHECK(sigismember(&during, SIGUSR1));
    CHECK(raise(SIGUSR1) == 0); /* blocked: it waits in the signalfd */
    CHECK_INT(mpconn_loop_run_for(loop, 5), 0);
    CHECK_INT(got, 1);
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    CHECK(!sigismember(&after, SIGUSR1)); /* the thread's mask is back */
    mpconn_loop_free(loop);
}

TEST(signal_arrives_as_a_callback)
{
    each_backend(signal_arrives_as_a_callback_on);
}

static void signal_closed_with_one_pending_does_not_kill_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    int got = 0;
    mpconn_signal *s;
    CHECK_INT(mpconn_signal_new(&s, loop, SIGUSR2, (mpconn_signal_cb)on_usr1, &got), 0);
    CHECK(raise(SIGUSR2) == 0);
    /* Closed before the loop read it: unblocking must not deliver it
     * to the default action (which would end this process). */
    mpconn_signal_close(s, NULL);
    mpconn_loop_free(loop);
    CHECK_INT(got, 0);
}

TEST(signal_closed_with_one_pending_does_not_kill)
{
    each_backend(signal_closed_with_one_pending_does_not_kill_on);
}

/* ---------------------------------------------------- I/O, close, fd reuse */

typedef struct iostate iostate;
typedef struct {
    iostate *st;
    int id;
} ioctx;

struct iostate {
    int calls[4];
    int closes[4];
    int last_events[4];
    mpconn_io *io[4];
    int fd[4];
    int wfd[4];
    mpconn_loop *loop;
    ioctx third;
};

static void io_close_cb(void *data)
{
    ioctx *c = data;
    c->st->closes[c->id]++;
}

static void io_record(mpconn_io *io, int events, void *data)
{
    (void)io;
    ioctx *c = data;
    c->st->calls[c->id]++;
    c->st->last_events[c->id] = events;
}

static void readable_writable_and_hangup_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    iostate st = {0};
    ioctx c0 = {&st, 0}, c1 = {&st, 1};
    int p[2];
    make_pipe(p);
    mpconn_io *r, *w;
    CHECK_INT(mpconn_io_new(&r, loop, p[0], io_record, &c0), 0);
    CHECK_INT(mpconn_io_new(&w, loop, p[1], io_record, &c1), 0);
    CHECK_INT(mpconn_io_set(r, MPCONN_READABLE), 0);
    CHECK_INT(mpconn_io_set(w, MPCONN_WRITABLE), 0);
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_NOWAIT), 1);
    CHECK_INT(st.calls[0], 0);
    CHECK_INT(st.calls[1], 1);
    CHECK_INT(st.last_events[1], MPCONN_WRITABLE);
    CHECK_INT(mpconn_io_set(w, 0), 0);
    CHECK(write(p[1], "ab", 2) == 2);
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_ONCE), 1);
    CHECK_INT(st.calls[0], 1);
    CHECK_INT(st.last_events[0], MPCONN_READABLE);
    CHECK_INT(st.calls[1], 1);
    /* A hang-up is reported as the interest, here READABLE. */
    char buf[4];
    CHECK(read(p[0], buf, sizeof buf) == 2);
    mpconn_io_close(w, NULL);
    close(p[1]);
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_ONCE), 1);
    CHECK_INT(st.calls[0], 2);
    CHECK_INT(st.last_events[0], MPCONN_READABLE);
    CHECK(read(p[0], buf, sizeof buf) == 0);
    mpconn_io_close(r, NULL);
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_DEFAULT), 0);
    close(p[0]);
    mpconn_loop_free(loop);
}

TEST(readable_writable_and_hangup)
{
    each_backend(readable_writable_and_hangup_on);
}

static void one_watcher_per_fd_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    int p[2];
    make_pipe(p);
    mpconn_io *a, *b;
    CHECK_INT(mpconn_io_new(&a, loop, p[0], io_record, NULL), 0);
    CHECK_INT(mpconn_io_new(&b, loop, p[0], io_record, NULL), -EEXIST);
    CHECK(b == NULL);
    mpconn_io_close(a, NULL);
    CHECK_INT(mpconn_io_new(&b, loop, p[0], io_record, NULL), 0);
    CHECK_INT(mpconn_io_new(&a, loop, -1, io_record, NULL), -EBADF);
    mpconn_loop_free(loop);
    close(p[0]);
    close(p[1]);
}

TEST(one_watcher_per_fd)
{
    each_backend(one_watcher_per_fd_on);
}

/* Both watchers are readable in one batch; whichever runs first closes the
 * other, closes its fd, and puts a new watcher on the same fd number, also
 * readable. The stale event of the old watcher reaches nobody. */
static void reuse_cb(mpconn_io *io, int events, void *data)
{
    (void)io, (void)events;
    ioctx *c = data;
    iostate *st = c->st;
    st->calls[c->id]++;
    if (c->id > 1)
        return;
    int other = 1 - c->id;
    if (st->calls[other] > 0 || st->io[other] == NULL)
        return;
    int fd = st->fd[other];
    mpconn_io_close(st->io[other], io_close_cb);
    st->io[other] = NULL;
    close(fd);
    int p[2];
    make_pipe(p);
    CHECK(write(p[1], "z", 1) == 1);
    int same = p[0];
    if (same != fd) { /* the lowest free number is fd, unless a lower one is free */
        CHECK(dup2(p[0], fd) == fd);
        close(p[0]);
        same = fd;
    }
    st->fd[2] = same;
    st->wfd[2] = p[1];
    st->third = (ioctx){st, 2};
    CHECK_INT(mpconn_io_new(&st->io[2], st->loop, same, reuse_cb, &st->third), 0);
    CHECK_INT(mpconn_io_set(st->io[2], MPCONN_READABLE), 0);
}

static void fd_reused_within_one_iteration_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    iostate st = {0};
    st.loop = loop;
    ioctx c[2] = {{&st, 0}, {&st, 1}};
    for (int i = 0; i < 2; i++) {
        int p[2];
        make_pipe(p);
        CHECK(write(p[1], "y", 1) == 1);
        st.fd[i] = p[0];
        st.wfd[i] = p[1];
        CHECK_INT(mpconn_io_new(&st.io[i], loop, p[0], reuse_cb, &c[i]), 0);
        CHECK_INT(mpconn_io_set(st.io[i], MPCONN_READABLE), 0);
    }
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_NOWAIT), 1);
    /* Exactly one of the two ran; the other was closed before its
     * event was delivered, and the new watcher got nothing yet. */
    CHECK_INT(st.calls[0] + st.calls[1], 1);
    CHECK_INT(st.closes[0] + st.closes[1], 1);
    CHECK_INT(st.calls[2], 0);
    /* Next iteration: the new watcher's own data. */
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_NOWAIT), 1);
    CHECK_INT(st.calls[2], 1);
    CHECK_INT(st.calls[0] + st.calls[1], 2); /* the survivor, still readable */
    mpconn_loop_free(loop);
    close(st.fd[st.calls[0] ? 0 : 1]); /* the survivor; the other number is fd[2] now */
    for (int i = 0; i < 3; i++)
        close(st.wfd[i]);
    close(st.fd[2]);
}

TEST(fd_reused_within_one_iteration)
{
    each_backend(fd_reused_within_one_iteration_on);
}

static void close_both_cb(mpconn_io *io, int events, void *data)
{
    (void)events;
    ioctx *c = data;
    iostate *st = c->st;
    st->calls[c->id]++;
    int other = 1 - c->id;
    if (st->io[other]) {
        mpconn_io_close(st->io[other], io_close_cb);
        st->io[other] = NULL;
    }
    mpconn_io_close(io, io_close_cb);
    mpconn_io_close(io, io_close_cb); /* twice: ignored */
    st->io[c->id] = NULL;
}

static void close_self_and_other_inside_callback_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    iostate st = {0};
    ioctx c[2] = {{&st, 0}, {&st, 1}};
    int p[2][2];
    for (int i = 0; i < 2; i++) {
        make_pipe(p[i]);
        CHECK(write(p[i][1], "q", 1) == 1);
        CHECK_INT(mpconn_io_new(&st.io[i], loop, p[i][0], close_both_cb, &c[i]), 0);
        CHECK_INT(mpconn_io_set(st.io[i], MPCONN_READABLE), 0);
    }
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_NOWAIT), 0); /* nothing left */
    CHECK_INT(st.calls[0] + st.calls[1], 1);
    CHECK_INT(st.closes[0], 1);
    CHECK_INT(st.closes[1], 1);
    mpconn_loop_free(loop);
    for (int i = 0; i < 2; i++) {
        close(p[i][0]);
        close(p[i][1]);
    }
}

TEST(close_self_and_other_inside_callback)
{
    each_backend(close_self_and_other_inside_callback_on);
}

/* ------------------------------------------------------ pending user bytes */

static void pending_cb(mpconn_io *io, int events, void *data)
{
    int *n = data;
    CHECK(events & MPCONN_READABLE);
    if (++*n == 3)
        mpconn_io_set_pending(io, 0);
}

static void pending_bytes_are_delivered_without_kernel_events_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    int p[2];
    make_pipe(p); /* nothing is ever written: the kernel says nothing */
    int n = 0;
    mpconn_io *io;
    CHECK_INT(mpconn_io_new(&io, loop, p[0], pending_cb, &n), 0);
    CHECK_INT(mpconn_io_set(io, MPCONN_READABLE), 0);
    mpconn_io_set_pending(io, 1);
    double t0 = now_s();
    for (int i = 0; i < 3; i++)
        CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_ONCE), 1); /* must not block */
    CHECK(now_s() - t0 < 5);
    CHECK_INT(n, 3);
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_NOWAIT), 1);
    CHECK_INT(n, 3); /* pending cleared: no more calls */
    mpconn_loop_free(loop);
    close(p[0]);
    close(p[1]);
}

TEST(pending_bytes_are_delivered_without_kernel_events)
{
    each_backend(pending_bytes_are_delivered_without_kernel_events_on);
}

/* ---------------------------------------------------------------- run modes */

static void run_modes_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_DEFAULT), 0); /* nothing to do */
    CHECK_INT(mpconn_loop_run(loop, 7), -EINVAL);
    mpconn_timer *t;
    CHECK_INT(mpconn_timer_new(&t, loop, must_not_fire, NULL), 0);
    CHECK_INT(mpconn_timer_start(t, 30, 0), 0);
    double t0 = now_s();
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_NOWAIT), 1);
    CHECK(now_s() - t0 < 1);
    t0 = now_s();
    CHECK_INT(mpconn_loop_run_for(loop, 0.05), 1);
    double took = now_s() - t0;
    CHECK(took >= 0.049 && took < 5);
    mpconn_loop_free(loop); /* with the timer still running */
}

TEST(run_modes)
{
    each_backend(run_modes_on);
}

typedef struct {
    mpconn_loop *loop;
    int rc;
} nested;

static void nested_run_cb(mpconn_timer *t, void *data)
{
    (void)t;
    nested *n = data;
    n->rc = mpconn_loop_run(n->loop, MPCONN_RUN_NOWAIT);
}

static void run_is_not_reentrant_on(const char *backend)
{
    nested n = {new_loop(backend), 0};
    mpconn_timer *t;
    CHECK_INT(mpconn_timer_new(&t, n.loop, nested_run_cb, &n), 0);
    CHECK_INT(mpconn_timer_start(t, 0, 0), 0);
    mpconn_loop_run_for(n.loop, 5);
    CHECK_INT(n.rc, -EBUSY);
    mpconn_loop_free(n.loop);
}

TEST(run_is_not_reentrant)
{
    each_backend(run_is_not_reentrant_on);
}

TEST(backend_chosen_by_name_or_environment)
{
    mpconn_loop *loop = NULL;
    CHECK_INT(mpconn_loop_new(&loop, "kqueue"), -ENOTSUP);
    CHECK(loop == NULL);
    setenv("MPCONN_LOOP_BACKEND", "poll", 1);
    CHECK_INT(mpconn_loop_new(&loop, NULL), 0);
    CHECK_STR(mpconn_loop_backend(loop), "poll");
    mpconn_loop_free(loop);
    unsetenv("MPCONN_LOOP_BACKEND");
    CHECK_INT(mpconn_loop_new(&loop, NULL), 0);
    CHECK_STR(mpconn_loop_backend(loop), "epoll");
    mpconn_loop_free(loop);
    mpconn_loop_free(NULL);
}

static void closed_cb_counter(void *data)
{
    (*(int *)data)++;
}

static void free_with_handles_still_open_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    int p[2];
    make_pipe(p);
    mpconn_io *io, *idle;
    mpconn_timer *running, *stopped, *closed;
    mpconn_signal *sig;
    int closes = 0;
    CHECK_INT(mpconn_io_new(&io, loop, p[0], io_record, NULL), 0);
    CHECK_INT(mpconn_io_set(io, MPCONN_READABLE), 0);
    CHECK_INT(mpconn_io_new(&idle, loop, p[1], io_record, NULL), 0);
    CHECK_INT(mpconn_timer_new(&running, loop, must_not_fire, NULL), 0);
    CHECK_INT(mpconn_timer_start(running, 10, 1), 0);
    CHECK_INT(mpconn_timer_new(&stopped, loop, must_not_fire, NULL), 0);
    CHECK_INT(mpconn_timer_new(&closed, loop, must_not_fire, &closes), 0);
    mpconn_timer_close(closed, closed_cb_counter); /* owed, not yet run */
    CHECK_INT(mpconn_signal_new(&sig, loop, SIGUSR1, on_usr1, NULL), 0);
    mpconn_loop_free(loop); /* ASan reports anything left behind */
    CHECK_INT(closes, 1);   /* the owed close callback ran, no other */
    sigset_t after;
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    CHECK(!sigismember(&after, SIGUSR1));
    CHECK(fcntl(p[0], F_GETFD) >= 0); /* the loop closes no fd of the user's */
    close(p[0]);
    close(p[1]);
}

TEST(free_with_handles_still_open)
{
    each_backend(free_with_handles_still_open_on);
}

/* The epoll backend's poll set. The loop's epoll fd and wake-up eventfd are
 * the ones that appear with it; what epoll holds is read from
 * /proc/self/fdinfo. */
static int anon_fds(const char *kind, int *out, int cap)
{
    char want[64];
    snprintf(want, sizeof want, "anon_inode:[%s]", kind);
    int n = 0;
    for (int fd = 0; fd < 1024 && n < cap; fd++) {
        char path[64], link[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t k = readlink(path, link, sizeof link - 1);
        if (k > 0 && (link[k] = 0, strcmp(link, want) == 0))
            out[n++] = fd;
    }
    return n;
}

static int in_epoll(int epfd, int fd)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", epfd);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    int found = 0, tfd;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "tfd: %d", &tfd) == 1 && tfd == fd)
            found = 1;
    fclose(f);
    return found;
}

/* An epoll loop with its epoll fd and (wakefd not NULL) its wake-up
 * eventfd. */
static mpconn_loop *epoll_loop(int *epfd, int *wakefd)
{
    static const char *const kinds[2] = {"eventpoll", "eventfd"};
    int before[2][64], nb[2];
    for (int k = 0; k < 2; k++)
        nb[k] = anon_fds(kinds[k], before[k], 64);
    mpconn_loop *loop = new_loop("epoll");
    int *out[2] = {epfd, wakefd};
    for (int k = 0; k < 2 && out[k]; k++) {
        int after[64], na = anon_fds(kinds[k], after, 64);
        *out[k] = -1;
        for (int i = 0; i < na; i++) {
            int seen = 0;
            for (int j = 0; j < nb[k]; j++)
                seen |= after[i] == before[k][j];
            if (!seen)
                *out[k] = after[i];
        }
        CHECK(*out[k] >= 0);
    }
    return loop;
}

/* 1 when a loop keeps its wake-up fd among its watchers: once the process
 * has had a second thread, or always where the C library does not say. */
static int wake_watched(void)
{
#ifdef TEST_KNOWS_THREADS
    return !__libc_single_threaded;
#else
    return 1;
#endif
}

enum { NWATCH = 12 };

TEST(epoll_backend_polls_a_small_loop_without_epoll_ctl)
{
    int epfd;
    mpconn_loop *loop = epoll_loop(&epfd, NULL);
    int w = wake_watched();
    iostate st = {0};
    ioctx c0 = {&st, 0}, c1 = {&st, 1};
    int p[NWATCH][2];
    mpconn_io *io[NWATCH];
    for (int i = 0; i < NWATCH; i++)
        make_pipe(p[i]);
    /* A small loop (one watcher, and the wake-up if other threads could
     * wake it) is polled, epoll left empty; level triggered all along. */
    CHECK_INT(mpconn_io_new(&io[0], loop, p[0][0], io_record, &c0), 0);
    CHECK_INT(mpconn_io_set(io[0], MPCONN_READABLE), 0);
    CHECK(write(p[0][1], "x", 1) == 1);
    for (int k = 1; k <= 3; k++) {
        CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_NOWAIT), 1);
        CHECK_INT(st.calls[0], k);
        CHECK(!in_epoll(epfd, p[0][0]));
    }
    /* A watcher that comes and goes never enters epoll. */
    int q[2];
    make_pipe(q);
    mpconn_io *brief;
    CHECK_INT(mpconn_io_new(&brief, loop, q[0], io_record, &c1), 0);
    CHECK_INT(mpconn_io_set(brief, MPCONN_READABLE), 0);
    CHECK(write(q[1], "z", 1) == 1);
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_NOWAIT), 1);
    CHECK_INT(st.calls[1], 1);
    CHECK(!in_epoll(epfd, q[0]));
    mpconn_io_close(brief, NULL);
    close(q[0]);
    close(q[1]);
    /* Past 8 watchers (the wake-up is one when watched) every one moves to
     * epoll, the unread byte still reported at every turn. */
    for (int i = 1; i < NWATCH; i++) {
        CHECK_INT(mpconn_io_new(&io[i], loop, p[i][0], io_record, &c0), 0);
        CHECK_INT(mpconn_io_set(io[i], MPCONN_READABLE), 0);
        CHECK(in_epoll(epfd, p[0][0]) == (i + w >= 8));
    }
    for (int i = 0; i < NWATCH; i++)
        CHECK(in_epoll(epfd, p[i][0]));
    int calls = st.calls[0];
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_NOWAIT), 1);
    CHECK_INT(st.calls[0], calls + 1);
    for (int i = 1; i < NWATCH; i++)
        CHECK(write(p[i][1], "y", 1) == 1);
    calls = st.calls[0];
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_NOWAIT), 1);
    CHECK_INT(st.calls[0], calls + NWATCH);
    /* What epoll refuses (a regular file) is polled beside it, always
     * ready, as the poll backend watches it. */
    FILE *tf = tmpfile();
    CHECK(tf != NULL);
    mpconn_io *file;
    ioctx c2 = {&st, 2};
    CHECK_INT(mpconn_io_new(&file, loop, fileno(tf), io_record, &c2), 0);
    CHECK_INT(mpconn_io_set(file, MPCONN_READABLE), 0);
    calls = st.calls[0];
    for (int k = 1; k <= 3; k++) {
        CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_NOWAIT), 1);
        CHECK_INT(st.calls[2], k);
    }
    CHECK_INT(st.calls[0], calls + 3 * NWATCH);
    mpconn_io_close(file, NULL);
    fclose(tf);
    /* Down to 4, they come back to the poll set; events as before. */
    for (int i = NWATCH - 1; i >= 3; i--) {
        mpconn_io_close(io[i], NULL);
        close(p[i][0]);
        close(p[i][1]);
        CHECK(in_epoll(epfd, p[0][0]) == (i + w > 4));
    }
    for (int i = 0; i < 3; i++)
        CHECK(!in_epoll(epfd, p[i][0]));
    calls = st.calls[0];
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_NOWAIT), 1);
    CHECK_INT(st.calls[0], calls + 3);
    for (int i = 0; i < 3; i++) {
        mpconn_io_close(io[i], NULL);
        close(p[i][0]);
        close(p[i][1]);
    }
    CHECK_INT(mpconn_loop_run(loop, MPCONN_RUN_DEFAULT), 0);
    mpconn_loop_free(loop);
    /* MPCONN_LOOP_POLL_MAX=0: every watcher goes to epoll. */
    setenv("MPCONN_LOOP_POLL_MAX", "0", 1);
    loop = epoll_loop(&epfd, NULL);
    unsetenv("MPCONN_LOOP_POLL_MAX");
    make_pipe(q);
    CHECK_INT(mpconn_io_new(&brief, loop, q[0], io_record, &c1), 0);
    CHECK_INT(mpconn_io_set(brief, MPCONN_READABLE), 0);
    CHECK(in_epoll(epfd, q[0]));
    mpconn_io_close(brief, NULL);
    close(q[0]);
    close(q[1]);
    mpconn_loop_free(loop);
}

/* Made and run while the process has one thread (each test case runs in a
 * process of its own), a loop waits without its wake-up fd: only another
 * thread would write it. From the first wait after a thread appears it
 * watches it again, on every backend: a stop from that thread ends a wait
 * that a 60 s timer would otherwise end. */
TEST(a_loop_watches_its_wake_up_once_the_process_has_threads)
{
    enum { N = sizeof backends / sizeof backends[0] };
    mpconn_loop *loops[N];
    int epfd = -1, wakefd = -1;
    for (int i = 0; i < N; i++) {
        const char *max = backends[i].poll_max;
        backend_env((size_t)i);
        /* The loop with every watcher on epoll shows its set in fdinfo. */
        loops[i] =
            max && strcmp(max, "0") == 0 ? epoll_loop(&epfd, &wakefd) : new_loop(backends[i].name);
        unsetenv("MPCONN_LOOP_POLL_MAX");
        mpconn_timer *keep;
        CHECK_INT(mpconn_timer_new(&keep, loops[i], must_not_fire, NULL), 0);
        CHECK_INT(mpconn_timer_start(keep, 60, 0), 0);
        CHECK_INT(mpconn_loop_run(loops[i], MPCONN_RUN_NOWAIT), 1);
    }
    CHECK(epfd >= 0);
    CHECK(in_epoll(epfd, wakefd) == wake_watched());
#ifdef TEST_KNOWS_THREADS
    CHECK(!in_epoll(epfd, wakefd)); /* glibc says: one thread */
#endif
    for (int i = 0; i < N; i++) {
        say_backend((size_t)i);
        pthread_t th;
        double t0 = now_s();
        CHECK(pthread_create(&th, NULL, stop_later, loops[i]) == 0);
        CHECK_INT(mpconn_loop_run(loops[i], MPCONN_RUN_DEFAULT), 1);
        double took = now_s() - t0;
        pthread_join(th, NULL);
        CHECK(took < 5);
    }
    CHECK(in_epoll(epfd, wakefd));
    for (int i = 0; i < N; i++)
        mpconn_loop_free(loops[i]);
}

/* No descriptor left for the signalfd: the watcher fails cleanly, the
 * thread's mask is as it was, and the loop frees nothing twice. */
static void signal_new_fails_cleanly_on(const char *backend)
{
    mpconn_loop *loop = new_loop(backend);
    int fds[4096];
    int n = 0;
    while (n < 4096) {
        int fd = dup(0);
        if (fd < 0)
            break;
        fds[n++] = fd;
    }
    CHECK(n < 4096); /* ran out of descriptors */
    mpconn_signal *s = NULL;
    CHECK_INT(mpconn_signal_new(&s, loop, SIGUSR1, on_usr1, NULL), -EMFILE);
    CHECK(s == NULL);
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    CHECK(!sigismember(&now, SIGUSR1));
    for (int i = 0; i < n; i++)
        close(fds[i]);
    int got = 0;
    CHECK_INT(mpconn_signal_new(&s, loop, SIGUSR1, on_usr1, &got), 0); /* works again */
    CHECK(raise(SIGUSR1) == 0);
    CHECK_INT(mpconn_loop_run_for(loop, 5), 0);
    CHECK_INT(got, 1);
    mpconn_loop_free(loop);
}

TEST(signal_new_fails_cleanly_without_descriptors)
{
    struct rlimit old, low;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    low = old;
    low.rlim_cur = 256;
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    each_backend(signal_new_fails_cleanly_on);
    setrlimit(RLIMIT_NOFILE, &old);
}

TESTLIB_MAIN
