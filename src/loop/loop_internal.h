/* What the loop core and its backends share: the handle layouts and the
 * backend contract. Internal to src/loop/. */
#ifndef MPCI_LOOP_INTERNAL_H
#define MPCI_LOOP_INTERNAL_H

#include <mpconn/loop.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

enum { MPCI_H_IO, MPCI_H_TIMER, MPCI_H_SIGNAL };

/* The part every handle starts with. A closed handle stays allocated, with
 * `closed` set, until the end of the iteration: stale events and timer
 * entries that still point at it are recognised and dropped. */
typedef struct mpci_handle {
    uint8_t kind;
    uint8_t closed;
    mpconn_loop *loop;
    void *data;
    mpconn_close_cb close_cb;
    struct mpci_handle *all_prev;
    /* The next live handle of the loop; once closed, the next closed one
     * (a closed handle has left the live list). */
    union {
        struct mpci_handle *all_next;
        struct mpci_handle *next_closed;
    };
} mpci_handle;

/* Laid out small: an idle connection on the loop has one. */
struct mpconn_io {
    mpci_handle h;
    int fd;
    uint8_t events;
    uint8_t pending;
    uint8_t be_slot; /* the epoll backend's: 1 + its index in the poll set, 0 if not there */
    uint64_t stamp;  /* the iteration whose batch holds this io */
    mpconn_io_cb cb;
    mpconn_io *pending_prev, *pending_next; /* list of ios with pending set */
};

struct mpconn_timer {
    mpci_handle h;
    mpconn_timer_cb cb;
    size_t slot;               /* index in the heap, or SIZE_MAX when not running */
    uint64_t due, repeat, seq; /* nanoseconds; seq orders equal deadlines */
};

struct mpconn_signal {
    mpci_handle h;
    int signum;
    mpconn_signal_cb cb;
    mpconn_signal *next; /* other watchers of the same loop */
};

/* One event of a backend's batch. */
typedef struct mpci_event {
    mpconn_io *io;
    int events;
} mpci_event;

/* A backend: one small file each. `change` moves an fd from one interest
 * to another (0 = not registered); `wait` fills at most max events and
 * returns how many, 0 on timeout or EINTR, or a negative errno. */
typedef struct mpci_backend {
    const char *name;
    int (*init)(mpconn_loop *loop);
    void (*fini)(mpconn_loop *loop);
    int (*change)(mpconn_loop *loop, mpconn_io *io, int old_events, int new_events);
    int (*wait)(mpconn_loop *loop, int timeout_ms, mpci_event *out, int max);
} mpci_backend;

/* poll(2)'s words for a watcher's interest and for what came back. */
static inline short mpci_poll_interest(int events)
{
    return (short)(((events & MPCONN_READABLE) ? POLLIN : 0) |
                   ((events & MPCONN_WRITABLE) ? POLLOUT : 0));
}

static inline int mpci_poll_ready(short revents)
{
    int mask = 0;
    if (revents & (POLLIN | POLLPRI))
        mask |= MPCONN_READABLE;
    if (revents & POLLOUT)
        mask |= MPCONN_WRITABLE;
    if (revents & (POLLERR | POLLHUP | POLLNVAL))
        mask |= MPCONN_READABLE | MPCONN_WRITABLE;
    return mask;
}

extern const mpci_backend mpci_backend_poll;
#ifdef __linux__
extern const mpci_backend mpci_backend_epoll;
#endif

typedef struct mpci_post {
    void (*fn)(void *);
    void *data;
    struct mpci_post *next;
} mpci_post;

struct mpconn_loop {
    const mpci_backend *be;
    void *be_state;

    mpconn_io **fdtab; /* fd -> its watcher */
    size_t fdcap;
    size_t nactive_io; /* watchers with interest, the wake-up's excluded */

    mpconn_timer **heap;
    size_t nheap, heapcap;
    uint64_t timer_seq;

    mpci_handle *closed; /* closed this iteration, close callbacks owed */
    mpconn_io *pending;  /* ios with bytes buffered in user space */
    size_t npending;
    mpci_handle *all; /* every handle not yet closed */
    uint64_t iter;

    mpci_event *batch;
    int batchcap;

    uint64_t now; /* nanoseconds, CLOCK_MONOTONIC, cached per iteration */
    int running;
    atomic_int stop;

    /* Wake-up: an eventfd (wake[0] == wake[1]) or a pipe. */
    int wake[2];
    mpconn_io *wake_io;
    pthread_mutex_t post_mu;
    mpci_post *posts, *posts_tail;
    int woken;         /* a wake-up is written, not yet drained; under post_mu */
    atomic_int posted; /* posts wait: read without the mutex on every iteration */

    /* Signals: one signalfd for every signal watched. */
    int sigfd;
    mpconn_io *sig_io;
    sigset_t sigmask;
    sigset_t blocked_by_us;
    mpconn_signal *signals;
};

#endif
