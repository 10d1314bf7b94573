/* The parts of mpconn serve that every kind and address uses: printing a
 * message, naming a peer, the rate-limited lines about peers, the report
 * of a connection's end, and the signals a server takes. */
#include "serve.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void serve_lines_init(serve_lines *l)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    l->window_start = mono();
}

void serve_lines_destroy(serve_lines *l)
{
    pthread_mutex_destroy(&l->mu);
}

/* Under mu. */
static void flush_locked(serve_lines *l, double t)
{
    if (l->suppressed) {
        cli_error("(%lu more such message%s in the last %g s not shown)", l->suppressed,
                  l->suppressed == 1 ? "" : "s", SERVE_PEER_WINDOW);
        l->suppressed = 0;
    }
    l->window_start = t;
    l->printed = 0;
}

void serve_lines_flush(serve_lines *l, int force)
{
    double t = mono();
    pthread_mutex_lock(&l->mu);
    if (force || t - l->window_start >= SERVE_PEER_WINDOW)
        flush_locked(l, t);
    pthread_mutex_unlock(&l->mu);
}

int serve_line(serve_lines *l, const char *fmt, ...)
{
    double t = mono();
    int first_held = 0;
    pthread_mutex_lock(&l->mu);
    if (t - l->window_start >= SERVE_PEER_WINDOW)
        flush_locked(l, t);
    if (l->printed >= SERVE_PEER_LINES) {
        first_held = l->suppressed++ == 0;
    } else {
        l->printed++;
        char buf[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        cli_error("%s", buf);
    }
    pthread_mutex_unlock(&l->mu);
    return first_held;
}

void serve_peer_name(char *buf, size_t cap, const char *addr, pid_t pid, uid_t uid)
{
    if (pid != -1 || uid != (uid_t)-1)
        snprintf(buf, cap, "peer pid %ld uid %ld", (long)pid, (long)uid);
    else if (addr && *addr)
        snprintf(buf, cap, "peer %s", addr);
    else
        snprintf(buf, cap, "peer ?");
}

int serve_show(const serve_cfg *c, const void *msg, size_t len)
{
    if (c->quiet)
        return 0;
    flockfile(stdout);
    int r = c->bytes ? cli_print_bytes(stdout, c->format, msg, len, c->opts)
                     : cli_print_message(stdout, c->format, msg, len, c->opts);
    int e = errno;
    funlockfile(stdout);
    errno = e;
    return r;
}

int serve_report_end(const serve_cfg *c, serve_lines *l, const char *peer, int reason,
                     const char *errmsg)
{
    char secs[48];
    switch (reason) {
    case 0: return 0; /* ours: already said why */
    case MPCONN_ERR_EOF:
        if (c->verbose)
            cli_error("%s closed the connection", peer);
        return 0;
    case MPCONN_ERR_EOFMSG:
        return serve_line(l, "%s: got end of file inside a %s", peer,
                          c->termlen ? "line" : "message");
    case -ETIMEDOUT:
        return serve_line(l, "%s: no message for %s; closing the connection", peer,
                          cli_seconds(secs, sizeof secs, c->timeout));
    case MPCONN_ERR_MSGSIZE:
        if (c->termlen)
            return serve_line(l,
                              "%s: line longer than %llu bytes (--max-message) without the "
                              "terminator; closing the connection",
                              peer, (unsigned long long)c->max_message);
        return serve_line(l,
                          "%s: bad message length: more than %llu bytes (--max-message); closing "
                          "the connection",
                          peer, (unsigned long long)c->max_message);
    default:
        return serve_line(l, "%s: %s", peer, errmsg && *errmsg ? errmsg : mpconn_strerror(reason));
    }
}

int serve_prepare_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0 || sigaction(SIGPIPE, &sa, NULL) < 0) {
        cli_error("cannot prepare the signals: %s", strerror(errno));
        return CLI_FAIL;
    }
    return CLI_OK;
}

void serve_report_connection(const char *peer, mpconn_tls *tls)
{
    if (!tls) {
        cli_error("connection from %s", peer);
        return;
    }
    int bits = 0;
    const char *cipher = mpconn_tls_cipher(tls, &bits);
    int verified = mpconn_tls_peer_verified(tls);
    cli_error("connection from %s (%s, %s, %d bits%s%s)", peer, mpconn_tls_version(tls), cipher,
              bits, verified ? ", client certificate " : "",
              verified ? mpconn_tls_peer_subject(tls) : "");
}
