/* mpconn's event loop: fd watchers, timers on a min-heap, signals, and
 * functions posted from other threads, on epoll (Linux) or poll(). One loop
 * per thread; only mpconn_loop_stop and mpconn_loop_post may be called from
 * another thread. Every handle is opaque; every function that can fail
 * returns 0 (or a documented count) or a negative code (negative errno, or
 * MPCONN_ERR_* from mpconn.h). Reference: mpconn_loop(3). */
#ifndef MPCONN_LOOP_H
#define MPCONN_LOOP_H

#include <mpconn.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpconn_loop mpconn_loop;
typedef struct mpconn_io mpconn_io;
typedef struct mpconn_timer mpconn_timer;
typedef struct mpconn_signal mpconn_signal;

/* A close callback gets the data the handle was made with; it runs once,
 * from the loop, after the last callback of the handle, and is the place to
 * free that data. The handle itself is freed by the loop right after. */
typedef void (*mpconn_close_cb)(void *data);

/* backend: "epoll", "poll", or NULL for $MPCONN_LOOP_BACKEND when set, else
 * the best one available (epoll on Linux). -ENOTSUP for a name this build
 * lacks. *out is the caller's, freed with mpconn_loop_free. */
MPCONN_API int mpconn_loop_new(mpconn_loop **out, const char *backend);
/* Frees the loop. Close callbacks still owed run first; handles still open
 * are then freed without any callback (pointers to them become invalid).
 * Not to be called from inside one of the loop's callbacks. NULL is a
 * no-op. Does not close any fd the handles watched. */
MPCONN_API void mpconn_loop_free(mpconn_loop *loop);
/* "epoll" or "poll". Static string. */
MPCONN_API const char *mpconn_loop_backend(const mpconn_loop *loop);

enum {
    MPCONN_RUN_DEFAULT = 0, /* until stopped, or until nothing is active */
    MPCONN_RUN_ONCE = 1,    /* one iteration; may block for events */
    MPCONN_RUN_NOWAIT = 2   /* one iteration; never blocks */
};
/* Runs the loop. Returns 1 when handles are still active (stopped, or one
 * iteration done), 0 when nothing is left to wait for, negative when the
 * backend fails (-EINVAL for an unknown mode). Active: fd watchers with an
 * interest, running timers, signal watchers, posted functions not yet run
 * and close callbacks owed. Not reentrant: -EBUSY from inside a
 * callback. */
MPCONN_API int mpconn_loop_run(mpconn_loop *loop, int mode);
/* Runs until stopped, nothing is active, or seconds have passed (< 0: no
 * limit). Same return values as mpconn_loop_run. */
MPCONN_API int mpconn_loop_run_for(mpconn_loop *loop, double seconds);
/* Makes the running (or next) mpconn_loop_run return after the current
 * iteration. Safe from any thread and from a signal watcher; not from a
 * signal handler (it takes a mutex). */
MPCONN_API void mpconn_loop_stop(mpconn_loop *loop);
/* Runs fn(data) on the loop's thread in its next iteration. Safe from any
 * thread. Functions posted before mpconn_loop_free that never ran are
 * dropped without a call. -ENOMEM when the queue node cannot be allocated. */
MPCONN_API int mpconn_loop_post(mpconn_loop *loop, void (*fn)(void *data), void *data);
/* The loop's cached monotonic time in seconds, updated when an iteration
 * starts and again when it wakes from waiting. */
MPCONN_API double mpconn_loop_now(const mpconn_loop *loop);

/* ------------------------------------------------------------ fd watchers */

/* cb runs with the events that occurred, a subset of the interest
 * (MPCONN_READABLE | MPCONN_WRITABLE); an error or hang-up on the fd is
 * reported as every event of the interest, so the read or write that
 * follows sees it. */
typedef void (*mpconn_io_cb)(mpconn_io *io, int events, void *data);

/* Watches fd (which stays the caller's; close the watcher before closing
 * the fd). Starts with no interest. One watcher per fd and loop: -EEXIST
 * for a second; -EBADF for fd < 0. *out belongs to the loop until
 * mpconn_io_close. */
MPCONN_API int mpconn_io_new(mpconn_io **out, mpconn_loop *loop, int fd, mpconn_io_cb cb,
                             void *data);
/* Sets the interest: 0, MPCONN_READABLE, MPCONN_WRITABLE or both. Returns
 * 0, the backend's negative errno, or MPCONN_ERR_CLOSED once closed. */
MPCONN_API int mpconn_io_set(mpconn_io *io, int events);
/* The interest. */
MPCONN_API int mpconn_io_events(const mpconn_io *io);
/* The fd watched. */
MPCONN_API int mpconn_io_fd(const mpconn_io *io);
/* The data the callback (and close_cb) gets from now on: a watcher handed
 * to another owner. */
MPCONN_API void mpconn_io_set_data(mpconn_io *io, void *data);
/* The loop that watches io. */
MPCONN_API mpconn_loop *mpconn_io_loop(const mpconn_io *io);
/* Marks bytes as already buffered in user space for this fd (TLS records
 * decrypted ahead, a read-ahead buffer): while pending is set and the
 * interest includes MPCONN_READABLE, the loop does not sleep and delivers
 * MPCONN_READABLE every iteration, whatever the kernel says. Clear it when
 * the bytes are gone or reading stops: while it is set, the loop does not
 * sleep whatever the interest. */
MPCONN_API void mpconn_io_set_pending(mpconn_io *io, int pending);
/* Stops watching at once; no callback runs for io after this returns, not
 * even for events already fetched in the current iteration. close_cb (may
 * be NULL) runs at the end of the iteration (closed outside
 * mpconn_loop_run: of the next one, or in mpconn_loop_free); the handle is
 * freed right after. A second close before then is an error the loop
 * ignores. */
MPCONN_API void mpconn_io_close(mpconn_io *io, mpconn_close_cb close_cb);

/* ----------------------------------------------------------------- timers */

typedef void (*mpconn_timer_cb)(mpconn_timer *t, void *data);

/* *out belongs to the loop until mpconn_timer_close. */
MPCONN_API int mpconn_timer_new(mpconn_timer **out, mpconn_loop *loop, mpconn_timer_cb cb,
                                void *data);
/* Fires after `after` seconds from the call (not from the cached time;
 * negative counts as 0), then every `repeat` seconds when repeat > 0,
 * without a burst to catch up when the loop fell behind. Restarting a
 * running timer moves it. Timers due at the same time fire in the order
 * they were started; one started from a callback fires in a later
 * iteration at the earliest. -ENOMEM, or MPCONN_ERR_CLOSED once closed. */
MPCONN_API int mpconn_timer_start(mpconn_timer *t, double after, double repeat);
/* Stops a running timer; a stopped one is left as it is. */
MPCONN_API void mpconn_timer_stop(mpconn_timer *t);
/* 1 from mpconn_timer_start until the timer fires or is stopped (a
 * repeating one stays active), else 0: a one-shot timer is no longer
 * active in its own callback. */
MPCONN_API int mpconn_timer_active(const mpconn_timer *t);
/* As mpconn_io_close. */
MPCONN_API void mpconn_timer_close(mpconn_timer *t, mpconn_close_cb close_cb);

/* ---------------------------------------------------------------- signals */

typedef void (*mpconn_signal_cb)(mpconn_signal *s, int signum, void *data);

/* Delivers signum as a callback on the loop (signalfd). The signal is
 * blocked in the calling thread; a program with other threads must block it
 * in them too (before creating them), or a thread that does not will take
 * it. The mask is restored when the last watcher of signum closes.
 * -ENOTSUP where signalfd is missing; -EINVAL for an invalid signum,
 * SIGKILL or SIGSTOP. *out belongs to the loop until
 * mpconn_signal_close. */
MPCONN_API int mpconn_signal_new(mpconn_signal **out, mpconn_loop *loop, int signum,
                                 mpconn_signal_cb cb, void *data);
/* As mpconn_io_close. */
MPCONN_API void mpconn_signal_close(mpconn_signal *s, mpconn_close_cb close_cb);

#ifdef __cplusplus
}
#endif
#endif
