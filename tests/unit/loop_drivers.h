/* The loops a test runs its scenarios on: mpconn's (both backends), libuv
 * and libevent when the build found them (MPCONN_HAVE_LIBUV,
 * MPCONN_HAVE_LIBEVENT), each behind one driver, and the helpers that run
 * the current one. Included by one test file each: everything is static. */
#ifndef MPCONN_TEST_LOOP_DRIVERS_H
#define MPCONN_TEST_LOOP_DRIVERS_H

#include "testlib.h"

#include <mpconn/async.h>
#include <mpconn/loop.h>
#ifdef MPCONN_HAVE_LIBUV
#include <mpconn/uv.h>
#endif
#ifdef MPCONN_HAVE_LIBEVENT
#include <mpconn/event.h>
#endif

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct driver {
    const char *name;
    void *(*make)(void);
    const mpconn_adapter *(*adapter)(void);
    void (*wait)(void *loop, int block); /* one iteration; waits at most ~10 ms */
    void (*destroy)(void *loop);
} driver;

static inline void tick(mpconn_timer *t, void *data)
{
    (void)t, (void)data;
}

typedef struct {
    mpconn_loop *loop;
    mpconn_timer *tick;
} own_loop;

static inline void *own_make(const char *backend)
{
    own_loop *o = calloc(1, sizeof *o);
    CHECK_INT(mpconn_loop_new(&o->loop, backend), 0);
    CHECK_INT(mpconn_timer_new(&o->tick, o->loop, tick, NULL), 0);
    CHECK_INT(mpconn_timer_start(o->tick, 0.01, 0.01), 0);
    return o;
}
static inline void *epoll_make(void)
{
    return own_make("epoll");
}
/* Every watcher on epoll, none in the small loop's poll set. */
static inline void *epoll_only_make(void)
{
    setenv("MPCONN_LOOP_POLL_MAX", "0", 1);
    void *o = own_make("epoll");
    unsetenv("MPCONN_LOOP_POLL_MAX");
    return o;
}
static inline void *poll_make(void)
{
    return own_make("poll");
}
static inline const mpconn_adapter *own_adapter(void)
{
    return mpconn_loop_adapter();
}
static inline void own_wait(void *loop, int block)
{
    mpconn_loop_run(((own_loop *)loop)->loop, block ? MPCONN_RUN_ONCE : MPCONN_RUN_NOWAIT);
}
static inline void own_destroy(void *loop)
{
    own_loop *o = loop;
    mpconn_loop_free(o->loop);
    free(o);
}

#ifdef MPCONN_HAVE_LIBUV
typedef struct {
    uv_loop_t loop;
    uv_timer_t tick;
} uv_drv;
static inline void uv_tick(uv_timer_t *t)
{
    (void)t;
}
static inline void *uv_make(void)
{
    uv_drv *u = calloc(1, sizeof *u);
    CHECK_INT(uv_loop_init(&u->loop), 0);
    uv_timer_init(&u->loop, &u->tick);
    uv_timer_start(&u->tick, uv_tick, 10, 10);
    return u;
}
static inline void *uv_loop_of(void *loop)
{
    return &((uv_drv *)loop)->loop;
}
static inline void uv_wait(void *loop, int block)
{
    uv_run(uv_loop_of(loop), block ? UV_RUN_ONCE : UV_RUN_NOWAIT);
}
static inline void uv_destroy(void *loop)
{
    uv_drv *u = loop;
    uv_close((uv_handle_t *)&u->tick, NULL);
    int r = uv_loop_close(&u->loop);
    for (int i = 0; i < 100 && r == UV_EBUSY; i++) {
        uv_run(&u->loop, UV_RUN_NOWAIT);
        r = uv_loop_close(&u->loop);
    }
    CHECK_INT(r, 0); /* every handle of ours was closed */
    free(u);
}
#endif

#ifdef MPCONN_HAVE_LIBEVENT
typedef struct {
    struct event_base *base;
    struct event *tick;
} ev_drv;
static inline void ev_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}
static inline void *ev_make(void)
{
    ev_drv *e = calloc(1, sizeof *e);
    e->base = event_base_new();
    CHECK(e->base != NULL);
    e->tick = event_new(e->base, -1, EV_PERSIST, ev_tick, NULL);
    struct timeval tv = {0, 10000};
    event_add(e->tick, &tv);
    return e;
}
static inline void ev_wait(void *loop, int block)
{
    event_base_loop(((ev_drv *)loop)->base, block ? EVLOOP_ONCE : EVLOOP_NONBLOCK);
}
static inline void ev_destroy(void *loop)
{
    ev_drv *e = loop;
    event_free(e->tick);
    event_base_free(e->base);
    free(e);
}
#endif

static const driver drivers[] = {
    {"mpconn loop, epoll", epoll_make, own_adapter, own_wait, own_destroy},
    {"mpconn loop, epoll only", epoll_only_make, own_adapter, own_wait, own_destroy},
    {"mpconn loop, poll", poll_make, own_adapter, own_wait, own_destroy},
#ifdef MPCONN_HAVE_LIBUV
    {"libuv", uv_make, mpconn_uv_adapter, uv_wait, uv_destroy},
#endif
#ifdef MPCONN_HAVE_LIBEVENT
    {"libevent", ev_make, mpconn_event_adapter, ev_wait, ev_destroy},
#endif
};

/* The loop argument the adapter takes. */
static inline void *loop_arg(const driver *d, void *loop)
{
    if (d->destroy == own_destroy)
        return ((own_loop *)loop)->loop;
#ifdef MPCONN_HAVE_LIBUV
    if (d->destroy == uv_destroy)
        return uv_loop_of(loop);
#endif
#ifdef MPCONN_HAVE_LIBEVENT
    if (d->destroy == ev_destroy)
        return ((ev_drv *)loop)->base;
#endif
    return loop;
}

static const driver *cur; /* the driver of the scenario running */

static inline void each_loop(void (*fn)(void))
{
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof drivers / sizeof drivers[0]; i++) {
        fprintf(stderr, "loop: %s\n", drivers[i].name);
        cur = &drivers[i];
        fn();
    }
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the loop until *flag is set or max seconds pass. Returns whether
 * the flag was set. */
static inline int run_until(void *loop, volatile int *flag, double max)
{
    double t0 = now_s();
    while (!*flag && now_s() - t0 < max)
        cur->wait(loop, 1);
    cur->wait(loop, 0);
    return *flag;
}

static inline void *new_loop(void)
{
    return cur->make();
}

static inline void free_loop(void *loop)
{
    cur->destroy(loop);
}

static inline const mpconn_adapter *adapter(void)
{
    return cur->adapter();
}

static inline void step(void *loop)
{
    cur->wait(loop, 0);
}

#endif
