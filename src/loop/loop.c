/* The loop core: handles, the timer heap, posted functions, signals, and the
 * iteration that ties them together. Backends (backend_*.c) only register
 * interest and wait. */
#include "loop_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#endif
#if defined(__has_include)
#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define MPCI_KNOWS_THREADS 1
#endif
#endif

static uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Seconds to nanoseconds, saturating; negative and NaN count as 0. */
static uint64_t seconds_ns(double s)
{
    if (!(s > 0))
        return 0;
    if (s >= 1.8e10)
        return UINT64_MAX / 2;
    return (uint64_t)ceil(s * 1e9);
}

static void handle_init(mpci_handle *h, int kind, mpconn_loop *loop, void *data)
{
    h->kind = (uint8_t)kind;
    h->closed = 0;
    h->loop = loop;
    h->data = data;
    h->close_cb = NULL;
    h->all_prev = NULL;
    h->all_next = loop->all;
    if (loop->all)
        loop->all->all_prev = h;
    loop->all = h;
}

/* Queues h for its close callback and its free at the end of the
 * iteration (or at the next one, when closed outside mpconn_loop_run). */
static void handle_close(mpci_handle *h, mpconn_close_cb cb)
{
    mpconn_loop *loop = h->loop;
    if (h->all_prev)
        h->all_prev->all_next = h->all_next;
    else
        loop->all = h->all_next;
    if (h->all_next)
        h->all_next->all_prev = h->all_prev;
    h->closed = 1;
    h->close_cb = cb;
    h->next_closed = h->loop->closed;
    h->loop->closed = h;
}

static void finish_closes(mpconn_loop *loop)
{
    /* A close callback may close more handles: take the list each round. */
    while (loop->closed) {
        mpci_handle *h = loop->closed;
        loop->closed = NULL;
        while (h) {
            mpci_handle *next = h->next_closed;
            if (h->close_cb)
                h->close_cb(h->data);
            free(h);
            h = next;
        }
    }
}

/* ------------------------------------------------------------ timer heap */

static int timer_before(const mpconn_timer *a, const mpconn_timer *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_place(mpconn_loop *loop, size_t i, mpconn_timer *t)
{
    loop->heap[i] = t;
    t->slot = i;
}

static void heap_up(mpconn_loop *loop, size_t i)
{
    mpconn_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent]))
            break;
        heap_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_place(loop, i, t);
}

static void heap_down(mpconn_loop *loop, size_t i)
{
    mpconn_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->nheap)
            break;
        if (child + 1 < loop->nheap && timer_before(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_before(loop->heap[child], t))
            break;
        heap_place(loop, i, loop->heap[child]);
        i = child;
    }
    heap_place(loop, i, t);
}

static void heap_remove(mpconn_loop *loop, mpconn_timer *t)
{
    size_t i = t->slot;
    t->slot = SIZE_MAX;
    mpconn_timer *last = loop->heap[--loop->nheap];
    if (last == t)
        return;
    heap_place(loop, i, last);
    if (i > 0 && timer_before(last, loop->heap[(i - 1) / 2]))
        heap_up(loop, i);
    else
        heap_down(loop, i);
}

static int heap_insert(mpconn_loop *loop, mpconn_timer *t)
{
    if (loop->nheap == loop->heapcap) {
        size_t cap = loop->heapcap ? loop->heapcap * 2 : 16;
        mpconn_timer **heap = realloc(loop->heap, cap * sizeof *heap);
        if (!heap)
            return -ENOMEM;
        loop->heap = heap;
        loop->heapcap = cap;
    }
    loop->heap[loop->nheap++] = t;
    heap_up(loop, loop->nheap - 1);
    return 0;
}

int mpconn_timer_new(mpconn_timer **out, mpconn_loop *loop, mpconn_timer_cb cb, void *data)
{
    *out = NULL;
    mpconn_timer *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    handle_init(&t->h, MPCI_H_TIMER, loop, data);
    t->cb = cb;
    t->slot = SIZE_MAX;
    *out = t;
    return 0;
}

int mpconn_timer_start(mpconn_timer *t, double after, double repeat)
{
    if (t->h.closed)
        return MPCONN_ERR_CLOSED;
    mpconn_loop *loop = t->h.loop;
    if (t->slot != SIZE_MAX)
        heap_remove(loop, t);
    /* The real time, not the iteration's: a timer started after a long
     * callback must not fire early. */
    t->due = clock_ns() + seconds_ns(after);
    t->repeat = seconds_ns(repeat);
    t->seq = loop->timer_seq++;
    return heap_insert(loop, t);
}

void mpconn_timer_stop(mpconn_timer *t)
{
    if (t->slot != SIZE_MAX)
        heap_remove(t->h.loop, t);
}

int mpconn_timer_active(const mpconn_timer *t)
{
    return t->slot != SIZE_MAX;
}

void mpconn_timer_close(mpconn_timer *t, mpconn_close_cb close_cb)
{
    if (!t || t->h.closed)
        return;
    mpconn_timer_stop(t);
    handle_close(&t->h, close_cb);
}

static void run_timers(mpconn_loop *loop)
{
    /* Timers started during this pass wait for the next one, so a timer
     * that re-arms itself with 0 s cannot keep the loop from its I/O. */
    uint64_t limit = loop->timer_seq;
    while (loop->nheap > 0) {
        mpconn_timer *t = loop->heap[0];
        if (t->due > loop->now || t->seq >= limit)
            break;
        heap_remove(loop, t);
        if (t->repeat > 0) {
            t->due += t->repeat;
            if (t->due <= loop->now)
                t->due = loop->now + t->repeat; /* no burst to catch up */
            t->seq = loop->timer_seq++;
            (void)heap_insert(loop, t); /* cannot fail: it reuses the slot it left */
        }
        t->cb(t, t->h.data);
    }
}

/* --------------------------------------------------------------- watchers */

static int fdtab_reserve(mpconn_loop *loop, int fd)
{
    if ((size_t)fd < loop->fdcap)
        return 0;
    size_t cap = loop->fdcap ? loop->fdcap : 64;
    while (cap <= (size_t)fd)
        cap *= 2;
    mpconn_io **tab = realloc(loop->fdtab, cap * sizeof *tab);
    if (!tab)
        return -ENOMEM;
    memset(tab + loop->fdcap, 0, (cap - loop->fdcap) * sizeof *tab);
    loop->fdtab = tab;
    loop->fdcap = cap;
    return 0;
}

int mpconn_io_new(mpconn_io **out, mpconn_loop *loop, int fd, mpconn_io_cb cb, void *data)
{
    *out = NULL;
    if (fd < 0)
        return -EBADF;
    int rc = fdtab_reserve(loop, fd);
    if (rc < 0)
        return rc;
    if (loop->fdtab[fd])
        return -EEXIST;
    mpconn_io *io = calloc(1, sizeof *io);
    if (!io)
        return -ENOMEM;
    handle_init(&io->h, MPCI_H_IO, loop, data);
    io->fd = fd;
    io->cb = cb;
    loop->fdtab[fd] = io;
    *out = io;
    return 0;
}

static int internal_io(const mpconn_io *io)
{
    return io == io->h.loop->wake_io || io == io->h.loop->sig_io;
}

int mpconn_io_set(mpconn_io *io, int events)
{
    if (io->h.closed)
        return MPCONN_ERR_CLOSED;
    events &= MPCONN_READABLE | MPCONN_WRITABLE;
    if (events == io->events)
        return 0;
    mpconn_loop *loop = io->h.loop;
    int rc = loop->be->change(loop, io, io->events, events);
    if (rc < 0)
        return rc;
    if (!internal_io(io)) {
        if (!io->events)
            loop->nactive_io++;
        else if (!events)
            loop->nactive_io--;
    }
    io->events = events;
    return 0;
}

int mpconn_io_events(const mpconn_io *io)
{
    return io->events;
}

int mpconn_io_fd(const mpconn_io *io)
{
    return io->fd;
}

void mpconn_io_set_data(mpconn_io *io, void *data)
{
    io->h.data = data;
}

mpconn_loop *mpconn_io_loop(const mpconn_io *io)
{
    return io->h.loop;
}

void mpconn_io_set_pending(mpconn_io *io, int pending)
{
    pending = pending != 0;
    if (io->h.closed || io->pending == pending)
        return;
    mpconn_loop *loop = io->h.loop;
    io->pending = pending;
    loop->npending += pending ? 1 : (size_t)-1;
    if (pending) {
        io->pending_prev = NULL;
        io->pending_next = loop->pending;
        if (loop->pending)
            loop->pending->pending_prev = io;
        loop->pending = io;
    } else {
        if (io->pending_prev)
            io->pending_prev->pending_next = io->pending_next;
        else
            loop->pending = io->pending_next;
        if (io->pending_next)
            io->pending_next->pending_prev = io->pending_prev;
        io->pending_prev = io->pending_next = NULL;
    }
}

void mpconn_io_close(mpconn_io *io, mpconn_close_cb close_cb)
{
    if (!io || io->h.closed)
        return;
    mpconn_loop *loop = io->h.loop;
    mpconn_io_set(io, 0); /* a failed EPOLL_CTL_DEL (fd closed already) changes nothing */
    if (io->events && !internal_io(io))
        loop->nactive_io--;
    io->events = 0;
    mpconn_io_set_pending(io, 0);
    loop->fdtab[io->fd] = NULL;
    handle_close(&io->h, close_cb);
}

/* ---------------------------------------------------- wake-up and posting */

static void drain_fd(int fd)
{
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0)
        ;
}

/* The mutex only when something was posted: every iteration reads the flag,
 * few find it set. */
static void run_posts(mpconn_loop *loop)
{
    if (!atomic_load(&loop->posted))
        return;
    pthread_mutex_lock(&loop->post_mu);
    mpci_post *p = loop->posts;
    loop->posts = loop->posts_tail = NULL;
    atomic_store(&loop->posted, 0);
    pthread_mutex_unlock(&loop->post_mu);
    while (p) {
        mpci_post *next = p->next;
        p->fn(p->data);
        free(p);
        p = next;
    }
}

/* `woken` falls with the drain, not with the posts run: a stop posts
 * nothing, and a wake-up left unread (the eventfd unwatched while the
 * process had one thread) still wakes the loop when it is watched again. */
static void wake_cb(mpconn_io *io, int events, void *data)
{
    (void)events;
    mpconn_loop *loop = data;
    pthread_mutex_lock(&loop->post_mu);
    drain_fd(io->fd);
    loop->woken = 0;
    pthread_mutex_unlock(&loop->post_mu);
}

/* Writes one wake-up unless one is unread already; under post_mu. */
static void wake_locked(mpconn_loop *loop)
{
    if (loop->woken)
        return;
    loop->woken = 1;
    uint64_t one = 1;
    /* EAGAIN means the counter or pipe is full: the loop wakes anyway. */
    ssize_t n = write(loop->wake[1], &one, loop->wake[0] == loop->wake[1] ? sizeof one : 1);
    (void)n;
}

int mpconn_loop_post(mpconn_loop *loop, void (*fn)(void *), void *data)
{
    mpci_post *p = malloc(sizeof *p);
    if (!p)
        return -ENOMEM;
    p->fn = fn;
    p->data = data;
    p->next = NULL;
    pthread_mutex_lock(&loop->post_mu);
    if (loop->posts_tail)
        loop->posts_tail->next = p;
    else
        loop->posts = p;
    loop->posts_tail = p;
    atomic_store(&loop->posted, 1);
    wake_locked(loop);
    pthread_mutex_unlock(&loop->post_mu);
    return 0;
}

void mpconn_loop_stop(mpconn_loop *loop)
{
    atomic_store(&loop->stop, 1);
    pthread_mutex_lock(&loop->post_mu);
    wake_locked(loop);
    pthread_mutex_unlock(&loop->post_mu);
}

/* Only another thread can need the wake-up fd: the loop's own thread posts
 * and stops through flags it reads before it waits. So a process that the C
 * library knows to be single-threaded waits without it, as a libuv loop
 * without an async handle does, and a small loop's poll() has one fd fewer.
 * No thread can appear while the only one waits; the first pthread_create
 * clears the flag before the new thread runs, and the next wait has the fd
 * again (a wake-up written meanwhile is still there to see). */
static int sync_wake(mpconn_loop *loop)
{
#ifdef MPCI_KNOWS_THREADS
    int want = __libc_single_threaded ? 0 : MPCONN_READABLE;
#else
    int want = MPCONN_READABLE;
#endif
    return want == loop->wake_io->events ? 0 : mpconn_io_set(loop->wake_io, want);
}

static int open_wake(mpconn_loop *loop)
{
#ifdef __linux__
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd >= 0) {
        loop->wake[0] = loop->wake[1] = fd;
        return 0;
    }
#endif
    if (pipe(loop->wake) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        fcntl(loop->wake[i], F_SETFD, FD_CLOEXEC);
        fcntl(loop->wake[i], F_SETFL, O_NONBLOCK);
    }
    return 0;
}

/* ---------------------------------------------------------------- signals */

#ifdef __linux__
static void signal_cb(mpconn_io *io, int events, void *data)
{
    (void)events;
    mpconn_loop *loop = data;
    struct signalfd_siginfo si[8];
    ssize_t n;
    while ((n = read(io->fd, si, sizeof si)) > 0) {
        for (size_t i = 0; i < (size_t)n / sizeof si[0]; i++) {
            int signum = (int)si[i].ssi_signo;
            /* A callback may close watchers, so walk from the head each
             * time and skip the ones already closed. */
            for (mpconn_signal *s = loop->signals; s; s = s->next)
                if (s->signum == signum && !s->h.closed)
                    s->cb(s, signum, s->h.data);
        }
    }
}

static int update_signalfd(mpconn_loop *loop)
{
    int fd = signalfd(loop->sigfd, &loop->sigmask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    if (loop->sigfd < 0) {
        int rc = mpconn_io_new(&loop->sig_io, loop, fd, signal_cb, loop);
        if (rc == 0 && (rc = mpconn_io_set(loop->sig_io, MPCONN_READABLE)) < 0)
            mpconn_io_close(loop->sig_io, NULL);
        if (rc < 0) {
            loop->sig_io = NULL;
            close(fd);
            return rc;
        }
        loop->sigfd = fd;
    }
    return 0;
}
#endif

#ifdef __linux__
static void release_signal(mpconn_loop *loop, int signum);
#endif

int mpconn_signal_new(mpconn_signal **out, mpconn_loop *loop, int signum, mpconn_signal_cb cb,
                      void *data)
{
    *out = NULL;
#ifdef __linux__
    sigset_t valid;
    sigemptyset(&valid);
    if (signum <= 0 || sigaddset(&valid, signum) < 0 || signum == SIGKILL || signum == SIGSTOP)
        return -EINVAL;
    mpconn_signal *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    if (!sigismember(&loop->sigmask, signum)) {
        sigset_t one, old;
        sigemptyset(&one);
        sigaddset(&one, signum);
        pthread_sigmask(SIG_BLOCK, &one, &old);
        if (!sigismember(&old, signum))
            sigaddset(&loop->blocked_by_us, signum);
        sigaddset(&loop->sigmask, signum);
        int rc = update_signalfd(loop);
        if (rc < 0) {
            release_signal(loop, signum); /* the thread's mask as it was */
            free(s);
            return rc;
        }
    }
    /* Known to the loop only once nothing can fail any more. */
    handle_init(&s->h, MPCI_H_SIGNAL, loop, data);
    s->signum = signum;
    s->cb = cb;
    s->next = loop->signals;
    loop->signals = s;
    *out = s;
    return 0;
#else
    (void)loop, (void)signum, (void)cb, (void)data;
    return -ENOTSUP;
#endif
}

#ifdef __linux__
/* The last watcher of signum is gone: stop taking it, and give the thread
 * back the mask it had, without letting a signal that arrived meanwhile
 * hit its default action. */
static void release_signal(mpconn_loop *loop, int signum)
{
    sigdelset(&loop->sigmask, signum);
    if (loop->sigfd >= 0)
        signalfd(loop->sigfd, &loop->sigmask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigismember(&loop->blocked_by_us, signum)) {
        sigdelset(&loop->blocked_by_us, signum);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, signum);
        struct timespec zero = {0, 0};
        while (sigtimedwait(&one, NULL, &zero) == signum)
            ;
        pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    }
}
#endif

void mpconn_signal_close(mpconn_signal *s, mpconn_close_cb close_cb)
{
    if (!s || s->h.closed)
        return;
#ifdef __linux__
    mpconn_loop *loop = s->h.loop;
    mpconn_signal **pp = &loop->signals;
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    int others = 0;
    for (mpconn_signal *o = loop->signals; o; o = o->next)
        others |= o->signum == s->signum;
    if (!others)
        release_signal(loop, s->signum);
#endif
    handle_close(&s->h, close_cb);
}

/* -------------------------------------------------------------- the loop */

static const mpci_backend *find_backend(const char *name)
{
    if (!name || !*name) {
#ifdef __linux__
        return &mpci_backend_epoll;
#else
        return &mpci_backend_poll;
#endif
    }
    if (strcmp(name, "poll") == 0)
        return &mpci_backend_poll;
#ifdef __linux__
    if (strcmp(name, "epoll") == 0)
        return &mpci_backend_epoll;
#endif
    return NULL;
}

int mpconn_loop_new(mpconn_loop **out, const char *backend)
{
    *out = NULL;
    if (!backend)
        backend = getenv("MPCONN_LOOP_BACKEND");
    const mpci_backend *be = find_backend(backend);
    if (!be)
        return -ENOTSUP;
    mpconn_loop *loop = calloc(1, sizeof *loop);
    if (!loop)
        return -ENOMEM;
    loop->be = be;
    loop->wake[0] = loop->wake[1] = -1;
    loop->sigfd = -1;
    sigemptyset(&loop->sigmask);
    sigemptyset(&loop->blocked_by_us);
    atomic_init(&loop->stop, 0);
    atomic_init(&loop->posted, 0);
    loop->now = clock_ns();
    int rc = pthread_mutex_init(&loop->post_mu, NULL);
    if (rc != 0) {
        free(loop);
        return -rc;
    }
    rc = be->init(loop);
    if (rc == 0)
        rc = open_wake(loop);
    if (rc == 0)
        rc = mpconn_io_new(&loop->wake_io, loop, loop->wake[0], wake_cb, loop);
    if (rc == 0)
        rc = sync_wake(loop);
    if (rc < 0) {
        mpconn_loop_free(loop);
        return rc;
    }
    *out = loop;
    return 0;
}

void mpconn_loop_free(mpconn_loop *loop)
{
    if (!loop)
        return;
    finish_closes(loop);
    while (loop->all) {
        mpci_handle *h = loop->all;
        if (h->kind == MPCI_H_IO)
            mpconn_io_close((mpconn_io *)h, NULL);
        else if (h->kind == MPCI_H_TIMER)
            mpconn_timer_close((mpconn_timer *)h, NULL);
        else
            mpconn_signal_close((mpconn_signal *)h, NULL);
    }
    finish_closes(loop);
    if (loop->be_state)
        loop->be->fini(loop);
    if (loop->sigfd >= 0)
        close(loop->sigfd);
    if (loop->wake[0] >= 0)
        close(loop->wake[0]);
    if (loop->wake[1] >= 0 && loop->wake[1] != loop->wake[0])
        close(loop->wake[1]);
    mpci_post *p = loop->posts;
    while (p) {
        mpci_post *next = p->next;
        free(p);
        p = next;
    }
    pthread_mutex_destroy(&loop->post_mu);
    free(loop->fdtab);
    free(loop->heap);
    free(loop->batch);
    free(loop);
}

const char *mpconn_loop_backend(const mpconn_loop *loop)
{
    return loop->be->name;
}

double mpconn_loop_now(const mpconn_loop *loop)
{
    return (double)loop->now / 1e9;
}

static int has_posts(mpconn_loop *loop)
{
    return atomic_load(&loop->posted);
}

static int alive(mpconn_loop *loop)
{
    return loop->nactive_io > 0 || loop->nheap > 0 || loop->signals || loop->closed ||
           has_posts(loop);
}

/* Milliseconds to wait: 0 when there is work already, -1 for no limit. */
static int alive(mpconn_loop *loop);

static int wait_ms(mpconn_loop *loop, int mode, uint64_t until)
{
    if (mode == MPCONN_RUN_NOWAIT || loop->pending || loop->closed || atomic_load(&loop->stop) ||
        !alive(loop))
        return 0;
    uint64_t due = until;
    if (loop->nheap > 0 && loop->heap[0]->due < due)
        due = loop->heap[0]->due;
    if (due == UINT64_MAX)
        return -1;
    uint64_t now = clock_ns();
    if (due <= now)
        return 0;
    uint64_t ms = (due - now + 999999) / 1000000;
    return ms > 2147483647u ? 2147483647 : (int)ms;
}

static int iterate(mpconn_loop *loop, int mode, uint64_t until)
{
    loop->now = clock_ns();
    run_timers(loop);
    run_posts(loop);

    if (!loop->batch) {
        loop->batchcap = 256;
        loop->batch = malloc((size_t)loop->batchcap * sizeof *loop->batch);
        if (!loop->batch)
            return -ENOMEM;
    }
    int n = sync_wake(loop);
    if (n == 0)
        n = loop->be->wait(loop, wait_ms(loop, mode, until), loop->batch,
                           loop->batchcap < 256 ? loop->batchcap : 256);
    if (n < 0)
        return n;
    loop->now = clock_ns();

    /* Watchers with bytes already buffered in user space join the batch
     * as READABLE, whatever the kernel said; one already in it gets a
     * single callback with the union. */
    loop->iter++;
    for (int i = 0; i < n; i++)
        loop->batch[i].io->stamp = loop->iter;
    if (loop->npending > 0) {
        size_t need = (size_t)n + loop->npending;
        if (need > (size_t)loop->batchcap) {
            mpci_event *b = realloc(loop->batch, need * sizeof *b);
            if (!b)
                return -ENOMEM;
            loop->batch = b;
            loop->batchcap = (int)need;
        }
        for (mpconn_io *io = loop->pending; io; io = io->pending_next)
            if (io->stamp != loop->iter)
                loop->batch[n++] = (mpci_event){io, MPCONN_READABLE};
    }
    for (int i = 0; i < n; i++) {
        mpconn_io *io = loop->batch[i].io;
        if (io->h.closed)
            continue; /* closed earlier in this iteration: a stale event */
        int ev = loop->batch[i].events | (io->pending ? MPCONN_READABLE : 0);
        ev &= io->events;
        if (ev)
            io->cb(io, ev, io->h.data);
    }
    finish_closes(loop);
    return 0;
}

static int run(mpconn_loop *loop, int mode, uint64_t until)
{
    if (loop->running)
        return -EBUSY;
    loop->running = 1;
    int rc = 0;
    for (;;) {
        rc = iterate(loop, mode, until);
        if (rc < 0)
            break;
        if (atomic_exchange(&loop->stop, 0)) {
            rc = alive(loop);
            break;
        }
        rc = alive(loop);
        if (!rc || mode != MPCONN_RUN_DEFAULT || (until != UINT64_MAX && clock_ns() >= until))
            break;
    }
    loop->running = 0;
    return rc;
}

int mpconn_loop_run(mpconn_loop *loop, int mode)
{
    if (mode != MPCONN_RUN_DEFAULT && mode != MPCONN_RUN_ONCE && mode != MPCONN_RUN_NOWAIT)
        return -EINVAL;
    return run(loop, mode, UINT64_MAX);
}

int mpconn_loop_run_for(mpconn_loop *loop, double seconds)
{
    uint64_t until = seconds < 0 || isnan(seconds) ? UINT64_MAX : clock_ns() + seconds_ns(seconds);
    return run(loop, MPCONN_RUN_DEFAULT, until);
}
