/* The THREADS kind: a pool of at most cap worker threads, each serving one
 * connection (or datagram) at a time, handed to it by the acceptor (or
 * queued while all are busy). The request slots are made once, so nothing
 * is kept, or allocated, per connection; at the cap the acceptor stops
 * watching the socket. */
#define _GNU_SOURCE
#include "server_internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int srv_pool_init(mpconn_server *s)
{
    s->reqs = calloc(s->cap, sizeof *s->reqs);
    s->free_rq = calloc(s->cap, sizeof *s->free_rq);
    s->queue = calloc(s->cap, sizeof *s->queue);
    s->workers = calloc(s->cap, sizeof *s->workers);
    s->waiting = calloc(s->cap, sizeof *s->waiting);
    if (!s->reqs || !s->free_rq || !s->queue || !s->workers || !s->waiting)
        return -ENOMEM;
    for (size_t i = 0; i < s->cap; i++) {
        s->reqs[i].server = s;
        s->reqs[i].fd = -1;
        s->free_rq[i] = &s->reqs[s->cap - 1 - i];
    }
    s->nfree = s->cap;
    return 0;
}

void srv_pool_free(mpconn_server *s)
{
    if (s->reqs)
        for (size_t i = 0; i < s->cap; i++)
            free(s->reqs[i].buf);
    free(s->reqs);
    free(s->free_rq);
    free(s->queue);
    free(s->workers);
    free(s->waiting);
    s->reqs = NULL;
    s->free_rq = s->queue = NULL;
    s->workers = NULL;
    s->waiting = NULL;
}

/* Under mu. A slot is free again; the acceptor hears of it if it waits. */
static void release(mpconn_server *s, mpconn_request *r)
{
    r->busy = 0;
    s->free_rq[s->nfree++] = r;
    s->active--;
    if (s->paused) {
        s->paused = 0;
        uint64_t one = 1;
        ssize_t n = write(s->wake_fd, &one, sizeof one);
        (void)n; /* a full counter has woken the acceptor already */
    }
}

static void serve(mpconn_server *s, mpconn_request *r)
{
    if (s->dgram)
        srv_serve_dgram(s, r);
    else
        srv_serve_stream(s, r);
}

static void *worker(void *arg)
{
    srv_worker *w = arg;
    mpconn_server *s = w->server;
    pthread_mutex_lock(&s->mu);
    while (s->qlen || !s->quit) {
        mpconn_request *r;
        if (s->qlen) {
            r = s->queue[s->qhead];
            s->qhead = (s->qhead + 1) % s->cap;
            s->qlen--;
            if (s->quit && !s->drain) {
                /* Accepted but never begun: shut, as the running ones are. */
                srv_close_fd_locked(s, r);
                release(s, r);
                continue;
            }
            r->busy = 1;
            pthread_mutex_unlock(&s->mu);
        } else {
            s->waiting[s->nidle++] = w;
            pthread_mutex_unlock(&s->mu);
            while (sem_wait(&w->wake) < 0) { /* EINTR */
            }
            /* The post made the writes before it ours: w->req, its busy. */
            r = w->req;
            w->req = NULL;
            if (!r) { /* the pool is ending: the queue, then out */
                pthread_mutex_lock(&s->mu);
                continue;
            }
        }
        serve(s, r); /* which closes r's socket */
        pthread_mutex_lock(&s->mu);
        release(s, r);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Under mu: one more worker, which goes to the queue first. */
static int start_worker(mpconn_server *s)
{
    srv_worker *w = &s->workers[s->nthreads];
    w->server = s;
    w->req = NULL;
    if (sem_init(&w->wake, 0, 0) < 0)
        return -errno;
    int err = srv_thread_start(&w->thread, worker, w);
    if (err) {
        sem_destroy(&w->wake);
        return err;
    }
    s->nthreads++;
    return 0;
}

static int threads_start(mpconn_server *s)
{
    return srv_pool_init(s);
}

/* Takes a free slot, or pauses the acceptor when there is none. */
static mpconn_request *take_slot(mpconn_server *s)
{
    mpconn_request *r = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->nfree)
        r = s->free_rq[--s->nfree];
    else
        s->paused = 1;
    pthread_mutex_unlock(&s->mu);
    if (!r)
        srv_pause(s, 1);
    return r;
}

static void give_back(mpconn_server *s, mpconn_request *r)
{
    pthread_mutex_lock(&s->mu);
    s->free_rq[s->nfree++] = r;
    pthread_mutex_unlock(&s->mu);
}

/* Hands r to the idle worker that finished last, or queues it for the
 * first that finishes, starting one more when the pool may grow. */
static void dispatch(mpconn_server *s, mpconn_request *r)
{
    pthread_mutex_lock(&s->mu);
    s->active++;
    srv_worker *w = s->nidle ? s->waiting[--s->nidle] : NULL;
    int err = 0;
    if (w) {
        r->busy = 1;
        w->req = r;
    } else {
        s->queue[(s->qhead + s->qlen) % s->cap] = r;
        s->qlen++;
        if (s->nthreads < s->cap)
            err = start_worker(s);
    }
    int orphan = err && s->nthreads == 0;
    if (orphan) {
        s->qlen--;
        srv_close_fd_locked(s, r);
        s->free_rq[s->nfree++] = r;
        s->active--;
    }
    pthread_mutex_unlock(&s->mu);
    /* After the unlock, so the woken worker never waits for mu. */
    if (w)
        sem_post(&w->wake);
    if (orphan)
        srv_error(s, NULL, err, "server: no worker thread could start: %s", mpconn_strerror(err));
}

static void threads_readable(mpconn_server *s)
{
    for (int i = 0; i < 64; i++) {
        mpconn_request *r = take_slot(s);
        if (!r)
            return;
        if (srv_accept(s, r) <= 0) {
            give_back(s, r);
            return;
        }
        if (!srv_verify(s, r)) {
            srv_close_fd(s, r);
            give_back(s, r);
            continue;
        }
        dispatch(s, r);
    }
}

static void dgram_threads_readable(mpconn_server *s)
{
    for (int i = 0; i < 64; i++) {
        mpconn_request *r = take_slot(s);
        if (!r)
            return;
        if (!r->buf && !(r->buf = malloc(s->max_dgram))) {
            give_back(s, r);
            srv_error(s, NULL, -ENOMEM, "server: no memory for a datagram buffer");
            return;
        }
        int n = srv_dgram_recv(s, r, r->buf, s->max_dgram);
        if (n == 1 && srv_verify(s, r)) {
            dispatch(s, r);
            continue;
        }
        give_back(s, r);
        if (n <= 0)
            return;
    }
}

static void threads_woken(mpconn_server *s)
{
    pthread_mutex_lock(&s->mu);
    int room = s->nfree > 0;
    if (!room)
        s->paused = 1;
    pthread_mutex_unlock(&s->mu);
    if (room)
        srv_pause(s, 0);
}

static void threads_stop(mpconn_server *s)
{
    if (!s->reqs)
        return; /* the start failed before the pool was made */
    pthread_mutex_lock(&s->mu);
    s->quit = 1;
    if (!s->drain && !s->dgram)
        for (size_t i = 0; i < s->cap; i++)
            if (s->reqs[i].busy && s->reqs[i].fd >= 0)
                shutdown(s->reqs[i].fd, SHUT_RDWR);
    while (s->nidle) /* each wakes with no request */
        sem_post(&s->waiting[--s->nidle]->wake);
    size_t n = s->nthreads;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < n; i++) {
        pthread_join(s->workers[i].thread, NULL);
        sem_destroy(&s->workers[i].wake);
    }
    s->nthreads = 0;
}

const srv_kind srv_threads_kind = {threads_start, threads_readable, threads_woken, threads_stop};
const srv_kind srv_dgram_threads_kind = {threads_start, dgram_threads_readable, threads_woken,
                                         threads_stop};
