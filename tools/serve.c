/* mpconn serve: the options, and the loop kind: an async listener on
 * mpconn's event loop that prints (and with --echo returns) every message
 * that arrives. One thread serves every client; echoes are flow-controlled
 * per client, accepting pauses at --max-clients, and complaints about peers
 * are rate-limited. --kind threads|fork and datagram addresses go to
 * serve_kinds.c. */
#include "serve.h"

#include <mpconn/async.h>
#include <mpconn/loop.h>

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const char serve_help[] =
    "usage: mpconn serve [ADDRESS] [options]\n"
    "\n"
    "Run a Listener on ADDRESS (a temporary Unix socket when omitted) and print every\n"
    "message that arrives as one line on standard output. 'listening on ADDRESS' goes to\n"
    "standard error once the listener is ready (with the real port or path). Clients are\n"
    "served at once: from one thread on mpconn's event loop (--kind loop, the default), a\n"
    "thread each (--kind threads) or a child process each (--kind fork).\n"
    "\n"
    "ADDRESS tls:HOST:PORT speaks TLS (--cert, --key): every kind and option works there,\n"
    "the handshake inside TLS; --terminator lines over TLS run on --kind loop.\n"
    "\n"
    "ADDRESS udp:HOST:PORT, udp:[V6]:PORT, unixgram:PATH or unixgram:@NAME takes datagrams:\n"
    "each prints as a bytes value (-v: its sender on standard error first), --echo sends it\n"
    "back, --max-message is the largest taken whole (default 65536; a longer one is\n"
    "reported and dropped), --count N exits after N; no handshake, terminator, timeout or\n"
    "fork kind.\n"
    "\n"
    "options:\n"
    "  --echo                 send every message back to its sender, byte for byte (a\n"
    "                         sender that does not read its echoes is not read from\n"
    "                         until it does; the others go on)\n"
    "  -q, --quiet            do not print messages\n"
    "  -v, --verbose          report connections and disconnections on standard error\n"
    "  --kind KIND            loop (default), threads or fork: how clients are served\n"
    "  --format FORMAT        repr (default): Python repr() of a pickled value, b'...' for\n"
    "                         other messages; json: JSON form; hex: the raw bytes in hex\n"
    "  --terminator STRING    messages end with STRING (C escapes: \\r \\n \\t \\\\ \\xHH ...)\n"
    "                         instead of the multiprocessing framing, with no handshake;\n"
    "                         each prints as a bytes value, --echo adds STRING back\n"
    "  --max-clients N        serve at most N connections at once (handshakes included):\n"
    "                         N threads or children at most; the others wait in the\n"
    "                         backlog until one ends (datagrams: N threads of --kind threads)\n"
    "  --count N              exit 0 after N connections have been served to their end\n"
    "  --mode OCTAL           permission bits of the Unix socket file (e.g. 600; unixgram:\n"
    "                         PATH too); a TCP, UDP or abstract address has none, so --mode\n"
    "                         with one is an error\n"
    "  --max-message BYTES    largest message accepted (default 67108864; 0: no limit)\n"
    "  --max-print BYTES      cut a message's line there, marked ' ...[cut: ...]'\n"
    "                         (default 1048576; 0: no limit)\n"
    "  --max-int-digits N     decimal digits an int may print with (default 4300, as\n"
    "                         Python; 0: no limit); a message holding a longer one prints\n"
    "                         as its bytes\n"
    "  --authkey-env NAME     authenticate clients with the key in environment variable NAME\n"
    "  --authkey-file PATH    authenticate clients with the exact bytes of file PATH\n"
    "  --digest NAME          challenge digest: sha256 (default), sha384, sha3_256,\n"
    "                         sha3_384, md5, or legacy (the 20-byte challenge of Python <= 3.11)\n"
    "  --no-legacy-md5        refuse MD5 answers (Python <= 3.11 clients cannot authenticate)\n"
    "  --timeout SECONDS      bound each handshake; close a client silent for SECONDS\n"
    "  --cert FILE, --key FILE  with a tls:HOST:PORT address: the server's certificate chain\n"
    "                         and its private key (PEM; --key may be left out when FILE has it)\n"
    "  --ca FILE              trust anchors (PEM) for client certificates\n"
    "  --require-client-cert  refuse clients without a certificate that --ca verifies\n"
    "  -h, --help             show this help\n";

enum {
    OPT_ECHO = CLI_COMMON_LAST,
    OPT_QUIET,
    OPT_VERBOSE,
    OPT_COUNT,
    OPT_MODE,
    OPT_TERMINATOR,
    OPT_MAX_CLIENTS,
    OPT_KIND
};

static const cli_optspec serve_specs[] = {
    CLI_COMMON_SPECS,
    {"echo", 0, CLI_ARG_NONE, OPT_ECHO},
    {"quiet", 'q', CLI_ARG_NONE, OPT_QUIET},
    {"verbose", 'v', CLI_ARG_NONE, OPT_VERBOSE},
    {"count", 0, CLI_ARG_REQUIRED, OPT_COUNT},
    {"mode", 0, CLI_ARG_REQUIRED, OPT_MODE},
    {"terminator", 0, CLI_ARG_REQUIRED, OPT_TERMINATOR},
    {"max-clients", 0, CLI_ARG_REQUIRED, OPT_MAX_CLIENTS},
    {"kind", 0, CLI_ARG_REQUIRED, OPT_KIND},
    {NULL, 0, 0, 0},
};

typedef struct server server;

typedef struct client {
    server *s;
    mpconn_async *a;
    struct client *prev, *next;
    char peer[160];
} client;

struct server {
    const serve_cfg *cfg;
    mpconn_loop *loop;
    const mpconn_adapter *inner; /* the loop's own adapter, under the counting one */
    mpconn_async_listener *l;    /* NULL while it opens and once it is closed */
    client *clients;
    size_t live; /* connections watched: handshakes under way and open ones */
    int accept_paused;
    long served;
    int status;
    int stopping; /* shutting down: no more reports, no more counting */
    /* The rate limit on lines about peers, flushed when its window ends. */
    serve_lines lines;
    mpconn_timer *peer_timer;
};

/* ------------------------------------------------------- lines about peers */

static void peer_line(server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void peer_line(server *s, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (serve_line(&s->lines, "%s", buf))
        mpconn_timer_start(s->peer_timer, SERVE_PEER_WINDOW, 0);
}

static void on_peer_window(mpconn_timer *t, void *data)
{
    (void)t;
    server *s = data;
    serve_lines_flush(&s->lines, 1);
}

static void on_reject(void *data, int code, const char *message)
{
    (void)code;
    peer_line(data, "%s", message);
}

/* ------------------------------------------ counting what the loop watches */

/* An adapter over the loop's own: it counts the connections the listener
 * attaches (each handshake from the moment its peer is accepted, through
 * its open life), so --max-clients can stop accepting at once, before the
 * listener takes the next peer out of the backlog. */
typedef struct watch {
    void *inner;
    server *s;
    int counted;
} watch;

static void limit_accepting(server *s)
{
    size_t max = s->cfg->max_clients;
    if (!max || !s->l)
        return;
    if (s->live >= max && !s->accept_paused) {
        s->accept_paused = 1;
        mpconn_async_listener_pause(s->l);
    } else if (s->live < max && s->accept_paused) {
        s->accept_paused = 0;
        mpconn_async_listener_resume(s->l);
    }
}

static void *watch_attach(void *loop, mpconn_ev *ev)
{
    server *s = loop;
    watch *w = malloc(sizeof *w);
    if (!w)
        return NULL;
    w->inner = s->inner->attach(s->loop, ev);
    if (!w->inner) {
        free(w);
        return NULL;
    }
    w->s = s;
    /* The listener's own socket attaches while it opens, before s->l is set. */
    w->counted = s->l != NULL;
    if (w->counted) {
        s->live++;
        limit_accepting(s);
    }
    return w;
}

static void watch_set_io(void *state, int events)
{
    watch *w = state;
    w->s->inner->set_io(w->inner, events);
}

static void watch_set_timer(void *state, double seconds)
{
    watch *w = state;
    w->s->inner->set_timer(w->inner, seconds);
}

static void watch_set_pending(void *state, int pending)
{
    watch *w = state;
    w->s->inner->set_pending(w->inner, pending);
}

static void watch_cleanup(void *state)
{
    watch *w = state;
    server *s = w->s;
    s->inner->cleanup(w->inner);
    if (w->counted) {
        s->live--;
        limit_accepting(s);
    }
    free(w);
}

/* A peer passes from its handshake to its connection: still one. */
static void watch_rebind(void *state, mpconn_ev *ev)
{
    watch *w = state;
    w->s->inner->rebind(w->inner, ev);
}

static const mpconn_adapter watch_adapter = {
    sizeof(mpconn_adapter), watch_attach,  watch_set_io, watch_set_timer,
    watch_set_pending,      watch_cleanup, watch_rebind};

/* ----------------------------------------------------------------- clients */

static void peer_name(mpconn_async *a, char *buf, size_t cap)
{
    pid_t pid;
    uid_t uid;
    const char *addr = mpconn_async_peer(a, &pid, &uid, NULL);
    serve_peer_name(buf, cap, addr, pid, uid);
}

static void on_close(mpconn_async *a, int reason, const char *errmsg, void *data);

static void fail_output(server *s)
{
    if (s->status == CLI_OK)
        cli_error("cannot write to standard output: %s", strerror(errno));
    s->status = CLI_FAIL;
    mpconn_loop_stop(s->loop);
}

static void on_message(mpconn_async *a, const void *msg, size_t len, void *data)
{
    client *c = data;
    server *s = c->s;
    if (s->status != CLI_OK) {
        mpconn_async_pause_reading(a);
        return;
    }
    const serve_cfg *cfg = s->cfg;
    if (serve_show(cfg, msg, len) < 0) {
        fail_output(s);
        mpconn_async_pause_reading(a);
        return;
    }
    if (!cfg->echo)
        return;
    /* A failed write closes the connection and frees c inside the call
     * (on_close said why); only a lack of memory leaves it open. */
    int r = mpconn_async_send(a, msg, len);
    if (r == 0 && cfg->termlen)
        r = mpconn_async_send(a, cfg->term, cfg->termlen);
    if (r == -ENOMEM) {
        peer_line(s, "%s: cannot echo: out of memory; closing the connection", c->peer);
        mpconn_async_close(a);
        return;
    }
    /* A sender that does not read its echoes is not read from until it
     * does: its queue stays near the high watermark, and nobody waits. */
    if (r == 0 && mpconn_async_above_high(a))
        mpconn_async_pause_reading(a);
}

static void on_drain(mpconn_async *a, void *data)
{
    client *c = data;
    if (c->s->status == CLI_OK)
        mpconn_async_resume_reading(a);
}

static void on_close(mpconn_async *a, int reason, const char *errmsg, void *data)
{
    (void)a;
    client *c = data;
    server *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (!s->stopping) {
        if (serve_report_end(s->cfg, &s->lines, c->peer, reason, errmsg))
            mpconn_timer_start(s->peer_timer, SERVE_PEER_WINDOW, 0);
        s->served++;
        if (s->cfg->count > 0 && s->served >= s->cfg->count)
            mpconn_loop_stop(s->loop);
    }
    free(c);
}

static void on_accept(mpconn_async_listener *l, mpconn_async *a, void *data)
{
    (void)l;
    server *s = data;
    client *c = calloc(1, sizeof *c);
    if (!c) {
        peer_line(s, "out of memory; dropping a client");
        mpconn_async_close(a);
        return;
    }
    c->s = s;
    c->a = a;
    peer_name(a, c->peer, sizeof c->peer);
    c->next = s->clients;
    if (s->clients)
        s->clients->prev = c;
    s->clients = c;
    const mpconn_async_cbs cbs = {
        .size = sizeof cbs, .on_message = on_message, .on_close = on_close, .on_drain = on_drain};
    mpconn_async_set_callbacks(a, &cbs, c);
    const serve_cfg *cfg = s->cfg;
    if (cfg->termlen &&
        mpconn_async_set_framing(a, MPCONN_FRAME_DELIM, cfg->term, cfg->termlen) < 0) {
        peer_line(s, "%s: cannot set the terminator; closing the connection", c->peer);
        mpconn_async_close(a);
        return;
    }
    if (cfg->timeout >= 0)
        mpconn_async_set_timeouts(a, cfg->timeout, -1);
    if (cfg->verbose)
        serve_report_connection(c->peer, mpconn_async_tls(a));
}

static void on_stop_signal(mpconn_signal *sig, int signum, void *data)
{
    (void)sig;
    (void)signum;
    server *s = data;
    mpconn_loop_stop(s->loop);
}

/* ------------------------------------------------------------------- setup */

static int run(server *s, const serve_cfg *cfg)
{
    mpconn_signal *sigs[2] = {NULL, NULL};
    static const int signums[2] = {SIGINT, SIGTERM};
    s->cfg = cfg;
    serve_lines_init(&s->lines);
    int r = mpconn_loop_new(&s->loop, NULL);
    if (r < 0) {
        cli_error("cannot create the event loop: %s", mpconn_strerror(r));
        serve_lines_destroy(&s->lines);
        return CLI_FAIL;
    }
    s->inner = mpconn_loop_adapter();
    int status = CLI_FAIL;
    for (int i = 0; i < 2; i++) {
        r = mpconn_signal_new(&sigs[i], s->loop, signums[i], on_stop_signal, s);
        if (r < 0) {
            cli_error("cannot watch signal %d: %s", signums[i], mpconn_strerror(r));
            goto out;
        }
    }
    r = mpconn_timer_new(&s->peer_timer, s->loop, on_peer_window, s);
    if (r < 0) {
        cli_error("cannot create a timer: %s", mpconn_strerror(r));
        goto out;
    }
    char errmsg[256];
    mpconn_async_listener *l;
    r = mpconn_async_listener_open(&l, cfg->address, cfg->opts, &watch_adapter, s, on_accept, s,
                                   errmsg, sizeof errmsg);
    if (r < 0) {
        cli_error("%s", errmsg);
        goto out;
    }
    s->l = l;
    mpconn_async_listener_on_reject(l, on_reject, s);
    fprintf(stderr, "listening on %s\n", mpconn_async_listener_address(l));
    fflush(stderr);

    r = mpconn_loop_run(s->loop, MPCONN_RUN_DEFAULT);
    if (r < 0 && s->status == CLI_OK) {
        cli_error("event loop: %s", mpconn_strerror(r));
        s->status = CLI_FAIL;
    }
    status = s->status;
    s->stopping = 1;
    s->l = NULL;
    mpconn_async_listener_free(l); /* also removes the socket file */
    while (s->clients)
        mpconn_async_close(s->clients->a); /* on_close unlinks it */
    serve_lines_flush(&s->lines, 1);
out:
    /* The loop frees the handles still open; the async objects are closed. */
    mpconn_loop_free(s->loop);
    serve_lines_destroy(&s->lines);
    return status;
}

/* ------------------------------------------------------------- arguments */

/* The combinations a datagram address does not take: each would promise
 * something (a handshake, lines, a child per client) that is not there. */
static int check_dgram(const serve_cfg *cfg, const cli_common *common, long mode)
{
    if (common->authkey_env || common->authkey_file)
        return cli_usage_error("serve",
                               "%s: datagrams have no handshake: --authkey-env and "
                               "--authkey-file apply to stream addresses only",
                               cfg->address);
    if (cfg->termlen)
        return cli_usage_error("serve",
                               "%s: a datagram is one message: --terminator applies "
                               "to stream addresses only",
                               cfg->address);
    if (cfg->kind == SERVE_FORK)
        return cli_usage_error("serve",
                               "%s: datagram servers have no fork kind (loop or "
                               "threads)",
                               cfg->address);
    if (common->timeout >= 0)
        return cli_usage_error("serve",
                               "%s: datagrams have no connection to time out: "
                               "--timeout applies to stream addresses only",
                               cfg->address);
    if (cfg->max_clients && cfg->kind != SERVE_THREADS)
        return cli_usage_error("serve",
                               "%s: --max-clients caps the threads of --kind threads; "
                               "the loop kind handles one datagram at a time",
                               cfg->address);
    if (mode >= 0 && strncmp(cfg->address, "unixgram:", 9) != 0)
        return cli_usage_error("serve",
                               "--mode applies to a Unix socket file, not to %s (a UDP "
                               "address)",
                               cfg->address);
    if (mode >= 0 && cfg->address[9] == '@')
        return cli_usage_error("serve",
                               "--mode applies to a Unix socket file, not to %s (an "
                               "abstract socket, which has no file)",
                               cfg->address);
    return CLI_OK;
}

static int parse_kind(const char *arg, int *kind)
{
    static const char *const names[] = {"loop", "threads", "fork"};
    for (int k = 0; k < 3; k++)
        if (strcmp(arg, names[k]) == 0) {
            *kind = k;
            return 0;
        }
    return -1;
}

int cli_serve(int argc, char **argv)
{
    cli_parser p = {"serve", argc, argv, 1, 0};
    cli_common common;
    cli_common_init(&common);
    serve_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kind = SERVE_LOOP;
    const char *terminator = NULL;
    long mode = -1;
    int id;
    const char *arg;
    while ((id = cli_next(&p, serve_specs, &arg)) != -1) {
        long v;
        switch (id) {
        case -2: return CLI_USAGE;
        case 0:
            if (cfg.address)
                return cli_usage_error("serve", "unexpected argument '%s'", arg);
            cfg.address = arg;
            break;
        case CLI_OPT_HELP: fputs(serve_help, stdout); return CLI_OK;
        case OPT_ECHO: cfg.echo = 1; break;
        case OPT_QUIET: cfg.quiet = 1; break;
        case OPT_VERBOSE: cfg.verbose = 1; break;
        case OPT_KIND:
            if (parse_kind(arg, &cfg.kind) < 0)
                return cli_usage_error("serve", "--kind: '%s' is not one of loop, threads, fork",
                                       arg);
            break;
        case OPT_COUNT:
            if (cli_parse_int(arg, 1, 0x7fffffff, &v) < 0)
                return cli_usage_error("serve", "--count: '%s' is not a number >= 1", arg);
            cfg.count = v;
            break;
        case OPT_MAX_CLIENTS:
            if (cli_parse_int(arg, 1, 0x7fffffff, &v) < 0)
                return cli_usage_error("serve", "--max-clients: '%s' is not a number >= 1", arg);
            cfg.max_clients = (size_t)v;
            break;
        case OPT_TERMINATOR: {
            char err[128];
            terminator = arg;
            if (cli_unescape(arg, cfg.term, sizeof cfg.term, &cfg.termlen, err, sizeof err) < 0)
                return cli_usage_error("serve", "--terminator: '%s': %s", arg, err);
            if (cfg.termlen == 0)
                return cli_usage_error("serve", "--terminator: the string is empty");
            break;
        }
        case OPT_MODE: {
            char *end;
            errno = 0;
            mode = strtol(arg, &end, 8);
            if (!*arg || *end || errno || mode < 0 || mode > 07777)
                return cli_usage_error("serve", "--mode: '%s' is not an octal mode", arg);
            break;
        }
        default:
            if (cli_common_option(&common, "serve", id, arg))
                return CLI_USAGE;
        }
    }
    const char *address = cfg.address;
    if (address && (!*address || strcmp(address, "-") == 0))
        return cli_usage_error("serve", "bad address '%s' (omit it for a temporary socket)",
                               address);
    int dgram = address && dgram_address(address);
    if (dgram) {
        int r = check_dgram(&cfg, &common, mode);
        if (r != CLI_OK)
            return r;
    } else {
        /* Lines have no handshake: a key would be a protection that is not there. */
        if (terminator && (common.authkey_env || common.authkey_file))
            return cli_usage_error("serve",
                                   "--terminator has no handshake: --authkey-env and "
                                   "--authkey-file apply to the multiprocessing framing only");
        int kind = address ? cli_check_address("serve", address) : MPCONN_ADDR_UNIX;
        if (kind < 0)
            return -kind;
        /* Only a socket file has permission bits; elsewhere --mode would be a
         * protection that is not there. */
        if (mode >= 0 && kind != MPCONN_ADDR_UNIX)
            return cli_usage_error("serve", "--mode applies to a Unix socket file, not to %s (%s)",
                                   address,
                                   kind == MPCONN_ADDR_TCP ? "a TCP address"
                                                           : "an abstract socket, which has no "
                                                             "file");
    }
    mpconn_opts *opts;
    int r = cli_common_opts(&common, "serve", &opts);
    if (r != CLI_OK)
        return r;
    if (mode >= 0)
        mpconn_opts_set_mode(opts, (unsigned)mode);
    if ((r = cli_common_tls(&common, "serve", address, 1, opts)) != CLI_OK) {
        mpconn_opts_free(opts);
        return r;
    }
    /* A THREADS or FORK line handler reads the socket itself, under the
     * TLS session: lines over TLS are the loop's. */
    if (cli_is_tls(address) && cfg.termlen && cfg.kind != SERVE_LOOP) {
        mpconn_opts_free(opts);
        return cli_usage_error("serve", "--terminator on a tls: address runs on --kind loop only");
    }
    cfg.opts = opts;
    cfg.format = common.format;
    cfg.timeout = common.timeout;
    cfg.max_message = common.max_message;
    cfg.bytes = dgram || cfg.termlen;
    int status = serve_prepare_signals();
    if (status == CLI_OK) {
        if (cfg.kind == SERVE_LOOP && !dgram) {
            server s;
            memset(&s, 0, sizeof s);
            status = run(&s, &cfg);
        } else {
            status = serve_kinds_run(&cfg);
        }
    }
    mpconn_opts_free(opts);
    return status;
}
