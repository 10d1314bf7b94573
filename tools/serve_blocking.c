/* mpconn serve on the blocking listener and mpconn_wait, one thread for
 * every client: what serves tls: addresses until the event loop's
 * connections speak TLS. Prints and echoes as the loop's serve does. */
#include "cli.h"

#include <errno.h>
#include <mpconn/tls.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct peer {
    mpconn_conn *c;
    char name[224];
    double idle_since;
} peer;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_reject(void *data, int code, const char *message)
{
    (void)data;
    (void)code;
    cli_error("%s", message);
}

/* Reads one message of p: 1 while the connection goes on, 0 once it has
 * ended (said why), -1 when standard output failed. */
static int serve_one(peer *p, const cli_serve_settings *s, const mpconn_opts *opts)
{
    void *buf;
    size_t len;
    int r = mpconn_conn_recv_bytes(p->c, &buf, &len, 0);
    if (r == MPCONN_ERR_EOF) {
        if (s->verbose)
            cli_error("%s closed the connection", p->name);
        return 0;
    }
    if (r < 0) {
        cli_error("%s: %s", p->name, mpconn_conn_errmsg(p->c));
        return 0;
    }
    p->idle_since = now();
    if (!s->quiet && cli_print_message(stdout, s->format, buf, len, opts) < 0) {
        free(buf);
        cli_error("cannot write to standard output: %s", strerror(errno));
        return -1;
    }
    if (s->echo && mpconn_conn_send_bytes(p->c, buf, len) < 0) {
        free(buf);
        cli_error("%s: cannot echo: %s", p->name, mpconn_conn_errmsg(p->c));
        return 0;
    }
    free(buf);
    return 1;
}

int cli_serve_blocking(const char *address, mpconn_opts *opts, const cli_serve_settings *s)
{
    mpconn_listener *l;
    char err[512];
    if (mpconn_listener_open(&l, address, opts, err, sizeof err) < 0) {
        cli_error("%s", err);
        return CLI_FAIL;
    }
    mpconn_listener_on_reject(l, on_reject, NULL);
    fprintf(stderr, "listening on %s\n", mpconn_listener_address(l));
    fflush(stderr);
    peer *peers = NULL;
    mpconn_waitable *items = NULL;
    size_t n = 0, cap = 0;
    long served = 0;
    int status = CLI_OK;
    while (status == CLI_OK && (s->count == 0 || served < s->count)) {
        if (n + 1 > cap) {
            size_t nc = cap ? 2 * cap : 16;
            peer *np = realloc(peers, nc * sizeof *np);
            if (np)
                peers = np;
            mpconn_waitable *ni = np ? realloc(items, (nc + 1) * sizeof *ni) : NULL;
            if (!ni) {
                cli_error("out of memory");
                status = CLI_FAIL;
                break;
            }
            items = ni;
            cap = nc;
        }
        /* The listener first, while there is room for one more. */
        int listening = s->max_clients == 0 || n < s->max_clients;
        size_t k = 0;
        if (listening)
            items[k++] = (mpconn_waitable){.listener = l, .fd = -1};
        double wake = -1, t = now();
        for (size_t i = 0; i < n; i++) {
            items[k++] = (mpconn_waitable){.conn = peers[i].c, .fd = -1};
            double left = peers[i].idle_since + s->timeout - t;
            if (s->timeout >= 0 && (wake < 0 || left < wake))
                wake = left < 0 ? 0 : left;
        }
        int w = mpconn_wait(items, k, wake);
        if (w < 0) {
            cli_error("wait: %s", mpconn_strerror(w));
            status = CLI_FAIL;
            break;
        }
        /* Connections first, from the end: an ended one is replaced by the
         * last, which has been looked at already. */
        t = now();
        for (size_t i = n; i-- > 0;) {
            int r = 1;
            if (items[i + (listening ? 1 : 0)].ready)
                r = serve_one(&peers[i], s, opts);
            else if (s->timeout >= 0 && t - peers[i].idle_since >= s->timeout)
                r = (cli_error("%s: no message for %g s; closing the connection", peers[i].name,
                               s->timeout),
                     0);
            if (r < 0)
                status = CLI_FAIL;
            if (r <= 0) {
                mpconn_conn_free(peers[i].c);
                peers[i] = peers[--n];
                served++;
            }
        }
        mpconn_conn *c;
        if (listening && items[0].ready && mpconn_listener_accept(l, &c, 0) == 0) {
            peer *p = &peers[n++];
            p->c = c;
            p->idle_since = now();
            snprintf(p->name, sizeof p->name, "peer %s",
                     mpconn_listener_last_accepted(l, NULL, NULL, NULL));
            if (s->verbose) {
                mpconn_tls *tls = mpconn_conn_tls(c);
                int bits = 0;
                const char *cipher = tls ? mpconn_tls_cipher(tls, &bits) : NULL;
                if (tls)
                    cli_error("connection from %s (%s, %s, %d bits%s%s)", p->name,
                              mpconn_tls_version(tls), cipher, bits,
                              mpconn_tls_peer_verified(tls) ? ", client certificate " : "",
                              mpconn_tls_peer_verified(tls) ? mpconn_tls_peer_subject(tls) : "");
                else
                    cli_error("connection from %s", p->name);
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        mpconn_conn_free(peers[i].c);
    free(peers);
    free(items);
    mpconn_listener_free(l);
    return status;
}
