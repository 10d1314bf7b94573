/* mpconn serve: a Listener that prints (and with --echo returns) every
 * message that arrives. Many clients are served at once from one thread: a
 * poll-style loop over mpconn_wait on a self-pipe, the listener and every
 * connection; SIGINT/SIGTERM end it cleanly. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A sender that does not read its echoes is dropped after this long (unless
 * --timeout says otherwise), so it cannot stall the other clients. */
#define DEFAULT_ECHO_TIMEOUT 30.0

static const char serve_help[] =
    "usage: mpconn serve [ADDRESS] [options]\n"
    "\n"
    "Run a Listener on ADDRESS (a temporary Unix socket when omitted) and print every\n"
    "message that arrives as one line on standard output. 'listening on ADDRESS' goes to\n"
    "standard error once the listener is ready (with the real port or path).\n"
    "\n"
    "options:\n"
    "  --echo                 send every message back to its sender, byte for byte\n"
    "  -q, --quiet            do not print messages\n"
    "  -v, --verbose          report connections and disconnections on standard error\n"
    "  --format FORMAT        repr (default): Python repr() of a pickled value, b'...' for\n"
    "                         other messages; json: JSON form; hex: the raw bytes in hex\n"
    "  --count N              exit 0 after N connections have been served to their end\n"
    "  --mode OCTAL           permission bits of the Unix socket file (e.g. 600); a TCP or\n"
    "                         abstract address has none, so --mode with one is an error\n"
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
    "  -h, --help             show this help\n";

enum { OPT_ECHO = CLI_COMMON_LAST, OPT_QUIET, OPT_VERBOSE, OPT_COUNT, OPT_MODE };

static const cli_optspec serve_specs[] = {
    CLI_COMMON_SPECS,
    {"echo", 0, CLI_ARG_NONE, OPT_ECHO},
    {"quiet", 'q', CLI_ARG_NONE, OPT_QUIET},
    {"verbose", 'v', CLI_ARG_NONE, OPT_VERBOSE},
    {"count", 0, CLI_ARG_REQUIRED, OPT_COUNT},
    {"mode", 0, CLI_ARG_REQUIRED, OPT_MODE},
    {NULL, 0, 0, 0},
};

/* The tool's only process-wide state: what a signal handler may touch. */
static volatile sig_atomic_t stop_signal;
static int wake_fd = -1;

static void on_signal(int sig)
{
    int saved = errno;
    stop_signal = sig;
    if (wake_fd >= 0) {
        ssize_t w = write(wake_fd, "", 1);
        (void)w; /* a full pipe already holds a wake-up */
    }
    errno = saved;
}

typedef struct client {
    mpconn_conn *conn;
    char peer[160];
    double idle_deadline; /* < 0: none */
    int done;             /* finished: freed at the end of the wake-up */
} client;

typedef struct server {
    mpconn_listener *l;
    const mpconn_opts *opts;
    client *clients;
    size_t n, cap;
    int echo, quiet, verbose, format;
    double timeout;      /* idle limit per client; < 0 none */
    double echo_timeout; /* send limit of an echo */
    long count, served;
} server;

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

/* Frees the finished clients, keeping the others in order. */
static void drop_done(server *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->clients[i].done) {
            mpconn_conn_free(s->clients[i].conn);
            s->served++;
        } else {
            s->clients[k++] = s->clients[i];
        }
    }
    s->n = k;
}

static int add_client(server *s, mpconn_conn *c)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        client *nc = realloc(s->clients, cap * sizeof *nc);
        if (!nc) {
            cli_error("out of memory; dropping a client");
            mpconn_conn_free(c);
            return 0;
        }
        s->clients = nc;
        s->cap = cap;
    }
    client *cl = &s->clients[s->n];
    cl->conn = c;
    pid_t pid;
    uid_t uid;
    const char *addr = mpconn_listener_last_accepted(s->l, &pid, &uid, NULL);
    /* A Unix peer goes by pid and uid: most have no address of their own. */
    if (pid >= 0)
        snprintf(cl->peer, sizeof cl->peer, "peer pid %ld uid %ld", (long)pid, (long)uid);
    else
        snprintf(cl->peer, sizeof cl->peer, "peer %s", addr);
    cl->idle_deadline = s->timeout >= 0 ? now() + s->timeout : -1;
    cl->done = 0;
    /* Receives never block the loop: a message that has only partly arrived
     * is kept inside the connection and completed on a later wake-up. */
    int r = mpconn_conn_set_timeouts(c, s->echo_timeout, 0);
    if (r < 0) {
        cli_error("%s: %s", cl->peer, mpconn_strerror(r));
        mpconn_conn_free(c);
        return 0;
    }
    s->n++;
    if (s->verbose)
        cli_error("connection from %s", cl->peer);
    return 0;
}

/* Takes every authenticated connection the listener has ready. */
static int accept_ready(server *s)
{
    for (;;) {
        mpconn_conn *c;
        int r = mpconn_listener_accept(s->l, &c, 0);
        if (r == -ETIMEDOUT)
            return 0;
        if (r < 0) {
            cli_error("%s", mpconn_listener_errmsg(s->l));
            return -1;
        }
        add_client(s, c);
    }
}

/* Receives what the client has; returns 1 when it is finished, 0 when it
 * stays, -1 when standard output failed. */
static int serve_client(server *s, client *cl)
{
    void *buf;
    size_t len;
    if (s->timeout >= 0)
        cl->idle_deadline = now() + s->timeout;
    int r = mpconn_conn_recv_bytes(cl->conn, &buf, &len, 0);
    if (r == -ETIMEDOUT || r == -EAGAIN)
        return 0;
    if (r == MPCONN_EEOF) {
        if (s->verbose)
            cli_error("%s closed the connection", cl->peer);
        return 1;
    }
    if (r < 0) {
        cli_error("%s: %s", cl->peer, mpconn_conn_errmsg(cl->conn));
        return 1;
    }
    int done = 0;
    if (!s->quiet && cli_print_message(stdout, s->format, buf, len, s->opts) < 0) {
        cli_error("cannot write to standard output: %s", strerror(errno));
        done = -1;
    } else if (s->echo && (r = mpconn_conn_send_bytes(cl->conn, buf, len)) < 0) {
        cli_error("%s: cannot echo: %s", cl->peer, mpconn_conn_errmsg(cl->conn));
        done = 1;
    }
    free(buf);
    return done;
}

static int make_wake_pipe(int fds[2])
{
    if (pipe(fds) < 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
    return 0;
}

static int install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
        return -1;
    /* A closed standard output is reported as an error, not a silent death
     * that would leave the socket file behind. */
    sa.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &sa, NULL);
}

static int run(server *s, int wake_r)
{
    mpconn_waitable *items = NULL;
    size_t items_cap = 0;
    int status = CLI_OK;
    while (!stop_signal) {
        size_t n = 2 + s->n;
        if (n > items_cap) {
            mpconn_waitable *ni = realloc(items, n * 2 * sizeof *ni);
            if (!ni) {
                cli_error("out of memory");
                status = CLI_FAIL;
                break;
            }
            items = ni;
            items_cap = n * 2;
        }
        items[0] = (mpconn_waitable){.fd = wake_r};
        items[1] = (mpconn_waitable){.listener = s->l, .fd = -1};
        /* mpconn_wait also wakes for the listener's handshakes under way. */
        double t = now(), wait_s = -1;
        for (size_t i = 0; i < s->n; i++) {
            items[2 + i] = (mpconn_waitable){.conn = s->clients[i].conn, .fd = -1};
            double d = s->clients[i].idle_deadline;
            if (d >= 0 && (wait_s < 0 || d - t < wait_s))
                wait_s = d > t ? d - t : 0;
        }
        int r = mpconn_wait(items, n, wait_s);
        if (r < 0 && r != -EINTR) {
            cli_error("wait: %s", mpconn_strerror(r));
            status = CLI_FAIL;
            break;
        }
        if (stop_signal)
            break;
        if (r > 0 && items[0].ready) {
            char drain[64];
            while (read(wake_r, drain, sizeof drain) > 0) {
            }
        }
        /* Clients in the order they came, so that messages print in the
         * order they arrived as far as one wake-up can tell. */
        t = now();
        for (size_t i = 0; i < s->n; i++) {
            client *cl = &s->clients[i];
            if (r > 0 && items[2 + i].ready) {
                int done = serve_client(s, cl);
                if (done < 0) {
                    status = CLI_FAIL;
                    goto out;
                }
                cl->done = done;
            } else if (cl->idle_deadline >= 0 && t >= cl->idle_deadline) {
                char secs[48];
                cli_error("%s: no message for %s; closing the connection", cl->peer,
                          cli_seconds(secs, sizeof secs, s->timeout));
                cl->done = 1;
            }
        }
        drop_done(s);
        if (s->count > 0 && s->served >= s->count)
            break;
        if (r > 0 && items[1].ready && accept_ready(s) < 0) {
            status = CLI_FAIL;
            break;
        }
    }
out:
    free(items);
    return status;
}

int cli_serve(int argc, char **argv)
{
    cli_parser p = {"serve", argc, argv, 1, 0};
    cli_common common;
    cli_common_init(&common);
    server s;
    memset(&s, 0, sizeof s);
    s.format = CLI_FORMAT_REPR;
    const char *address = NULL;
    long mode = -1;
    int id;
    const char *arg;
    while ((id = cli_next(&p, serve_specs, &arg)) != -1) {
        long v;
        switch (id) {
        case -2: return CLI_USAGE;
        case 0:
            if (address)
                return cli_usage_error("serve", "unexpected argument '%s'", arg);
            address = arg;
            break;
        case CLI_OPT_HELP: fputs(serve_help, stdout); return CLI_OK;
        case OPT_ECHO: s.echo = 1; break;
        case OPT_QUIET: s.quiet = 1; break;
        case OPT_VERBOSE: s.verbose = 1; break;
        case OPT_COUNT:
            if (cli_parse_int(arg, 1, 0x7fffffff, &v) < 0)
                return cli_usage_error("serve", "--count: '%s' is not a number >= 1", arg);
            s.count = v;
            break;
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
    if (address && (!*address || strcmp(address, "-") == 0))
        return cli_usage_error("serve", "bad address '%s' (omit it for a temporary socket)",
                               address);
    int kind = address ? cli_check_address("serve", address) : MPCONN_ADDR_UNIX;
    if (kind < 0)
        return -kind;
    /* Only a socket file has permission bits; elsewhere --mode would be a
     * protection that is not there. */
    if (mode >= 0 && kind != MPCONN_ADDR_UNIX)
        return cli_usage_error(
            "serve", "--mode applies to a Unix socket file, not to %s (%s)", address,
            kind == MPCONN_ADDR_TCP ? "a TCP address" : "an abstract socket, which has no file");
    mpconn_opts *opts;
    int r = cli_common_opts(&common, "serve", &opts);
    if (r != CLI_OK)
        return r;
    if (mode >= 0)
        mpconn_opts_set_mode(opts, (unsigned)mode);
    s.opts = opts;
    s.format = common.format;
    s.timeout = common.timeout;
    s.echo_timeout = common.timeout >= 0 ? common.timeout : DEFAULT_ECHO_TIMEOUT;

    int wake[2];
    if (make_wake_pipe(wake) < 0) {
        cli_error("cannot create a pipe: %s", strerror(errno));
        mpconn_opts_free(opts);
        return CLI_FAIL;
    }
    wake_fd = wake[1];
    /* Handlers go in before the socket exists, so a signal at any point
     * after it is created still removes it. */
    if (install_signals() < 0) {
        cli_error("cannot install signal handlers: %s", strerror(errno));
        close(wake[0]);
        close(wake[1]);
        mpconn_opts_free(opts);
        return CLI_FAIL;
    }
    char errmsg[256];
    r = mpconn_listener_open(&s.l, address, opts, errmsg, sizeof errmsg);
    if (r < 0) {
        cli_error("%s", errmsg);
        close(wake[0]);
        close(wake[1]);
        mpconn_opts_free(opts);
        return CLI_FAIL;
    }
    mpconn_listener_on_reject(s.l, on_reject, &s);
    fprintf(stderr, "listening on %s\n", mpconn_listener_address(s.l));
    fflush(stderr);

    int status = run(&s, wake[0]);

    for (size_t i = 0; i < s.n; i++)
        mpconn_conn_free(s.clients[i].conn);
    free(s.clients);
    mpconn_listener_free(s.l); /* also removes the socket file */
    mpconn_opts_free(opts);
    wake_fd = -1;
    close(wake[0]);
    close(wake[1]);
    return status;
}
