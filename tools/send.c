/* mpconn send: connect as a Client and send each VALUE (a Python literal,
 * pickled; or raw bytes with --bytes) as one message, optionally printing
 * one reply per message. Every VALUE is checked before connecting. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static const char send_help[] =
    "usage: mpconn send ADDRESS [VALUE ...] [options]\n"
    "\n"
    "Connect to ADDRESS as a multiprocessing.connection Client and send each VALUE as one\n"
    "message. A VALUE is a Python literal (\"{'op': 'add', 'args': [1, 2.5]}\"), pickled as\n"
    "Python's Connection.send() would; '-' reads one VALUE per line from standard input.\n"
    "All VALUEs are parsed first: a bad one is reported and nothing is sent.\n"
    "Without --reply, send then half-closes and waits for the listener to close (up to\n"
    "--timeout, 1 second by default): a listener that wanted an authkey, or that closed\n"
    "with messages unread, makes it fail (exit 1) instead of reporting success.\n"
    "\n"
    "options:\n"
    "  --bytes                send each VALUE as its raw UTF-8 bytes (send_bytes), not pickled\n"
    "  --protocol N           pickle protocol 2..5 (default 4, as Python 3.8-3.13);\n"
    "                         2 for Python 2.7, which cannot unpickle 3 and later\n"
    "  --reply                after each message, wait for one message back and print it\n"
    "  --format FORMAT        how replies print: repr (default), json, hex\n"
    "  --max-message BYTES    largest reply accepted (default 67108864; 0: no limit)\n"
    "  --max-print BYTES      cut a reply's line there, marked ' ...[cut: ...]'\n"
    "                         (default 1048576; 0: no limit)\n"
    "  --max-int-digits N     decimal digits of an int in VALUEs and replies (default 4300,\n"
    "                         as Python; 0: no limit)\n"
    "  --authkey-env NAME     authenticate with the key in environment variable NAME\n"
    "  --authkey-file PATH    authenticate with the exact bytes of file PATH\n"
    "  --digest NAME          digest of the challenge this side sends: sha256 (default),\n"
    "                         sha384, sha3_256, sha3_384, md5, or legacy\n"
    "  --no-legacy-md5        refuse MD5 (a Python <= 3.11 Listener cannot be reached)\n"
    "  --timeout SECONDS      bound the connect, the handshake, each send and reply, and\n"
    "                         the wait for the listener to close\n"
    "  -h, --help             show this help\n";

enum { OPT_BYTES = CLI_COMMON_LAST, OPT_PROTOCOL, OPT_REPLY };

static const cli_optspec send_specs[] = {
    CLI_COMMON_SPECS,
    {"bytes", 0, CLI_ARG_NONE, OPT_BYTES},
    {"protocol", 0, CLI_ARG_REQUIRED, OPT_PROTOCOL},
    {"reply", 0, CLI_ARG_NONE, OPT_REPLY},
    {NULL, 0, 0, 0},
};

typedef struct payload {
    void *buf;
    size_t len;
} payload;

typedef struct payloads {
    payload *p;
    size_t n, cap;
    int as_bytes, protocol;
    const mpconn_opts *opts; /* the int digit limit of literals */
} payloads;

static void payloads_free(payloads *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        free(ps->p[i].buf);
    free(ps->p);
}

/* Takes buf (freed on failure too). */
static int push(payloads *ps, void *buf, size_t len)
{
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 8;
        payload *np = realloc(ps->p, cap * sizeof *np);
        if (!np) {
            free(buf);
            cli_error("out of memory");
            return CLI_FAIL;
        }
        ps->p = np;
        ps->cap = cap;
    }
    ps->p[ps->n++] = (payload){buf, len};
    return CLI_OK;
}

/* Turns one VALUE into the bytes of its message. where names it in errors. */
static int add_value(payloads *ps, const char *text, size_t len, const char *where)
{
    if (ps->as_bytes) {
        void *buf = malloc(len ? len : 1);
        if (!buf) {
            cli_error("out of memory");
            return CLI_FAIL;
        }
        memcpy(buf, text, len);
        return push(ps, buf, len);
    }
    mpconn_value *v;
    char err[256] = "";
    int r = mpconn_value_parse_opts(&v, text, len, ps->opts, err, sizeof err);
    if (r < 0) {
        cli_error("bad literal in %s: %s", where, err[0] ? err : mpconn_strerror(r));
        return CLI_USAGE;
    }
    void *buf;
    size_t n;
    r = mpconn_value_encode(v, ps->protocol, &buf, &n);
    mpconn_value_unref(v);
    if (r < 0) {
        cli_error("cannot pickle %s: %s", where, mpconn_strerror(r));
        return CLI_FAIL;
    }
    return push(ps, buf, n);
}

/* One VALUE per line of standard input; blank lines separate nothing and
 * are skipped for literals, but are empty messages with --bytes. */
static int add_stdin(payloads *ps)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int status = CLI_OK;
    while (status == CLI_OK && (n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        if (len && line[len - 1] == '\n')
            len--;
        if (!ps->as_bytes && strspn(line, " \t\r\n") >= len)
            continue;
        char where[64];
        snprintf(where, sizeof where, "standard input line %ld", lineno);
        status = add_value(ps, line, len, where);
    }
    if (status == CLI_OK && ferror(stdin)) {
        cli_error("cannot read standard input: %s", strerror(errno));
        status = CLI_FAIL;
    }
    free(line);
    return status;
}

/* How long the listener is given, after the last message, to show that it
 * refused them (a challenge, a reset) when --timeout says nothing. */
#define DEFAULT_CLOSE_WAIT 1.0

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void no_key(const char *address)
{
    cli_error("%s requires an authkey: it sent an authentication challenge and this side has "
              "none (give it with --authkey-env NAME or --authkey-file PATH); nothing was "
              "delivered",
              address);
}

/* Case-sensitive search for text in bytes that need not end in a NUL. */
static int contains(const void *buf, size_t len, const char *text)
{
    size_t n = strlen(text);
    const char *p = buf;
    for (size_t i = 0; n <= len && i <= len - n; i++)
        if (memcmp(p + i, text, n) == 0)
            return 1;
    return 0;
}

/* The part of a message that says a Python 2.7 peer may be the reason. */
static const char *protocol_hint(const payloads *ps)
{
    return !ps->as_bytes && ps->protocol != 2
               ? "; a Python 2.7 peer does this when it cannot unpickle protocol 3 or later "
                 "(unsupported pickle protocol): try --protocol 2"
               : "";
}

static const char size_hint[] = "the likely cause is its size limit on messages (mpconn serve "
                                "--max-message, 64 MiB by default)";

/* Whether the listener's challenge sits unread on a keyless connection: a
 * listener that wants a key drops a first message too large for an answer
 * by closing, which looks like a size limit to the sender. */
static int challenge_came(mpconn_conn *c)
{
    void *buf;
    size_t len;
    if (mpconn_conn_set_timeouts(c, -1, 0) < 0)
        return 0;
    int r = mpconn_conn_recv_bytes(c, &buf, &len, 0);
    if (r == 0)
        free(buf);
    return r == MPCONN_ERR_NOKEY;
}

static int send_one(mpconn_conn *c, const char *address, const payloads *ps, size_t i,
                    double timeout)
{
    int r = mpconn_conn_send_bytes(c, ps->p[i].buf, ps->p[i].len);
    if (r == 0)
        return CLI_OK;
    char secs[48];
    if (r == MPCONN_ERR_NOKEY || ((r == -EPIPE || r == -ECONNRESET) && challenge_came(c)))
        no_key(address);
    else if (r == -EPIPE || r == -ECONNRESET)
        cli_error("cannot send message %zu (%zu byte%s) to %s: the listener closed the "
                  "connection before taking it whole (%s); %s",
                  i + 1, ps->p[i].len, ps->p[i].len == 1 ? "" : "s", address, strerror(-r),
                  size_hint);
    else if (r == -ETIMEDOUT)
        cli_error("cannot send message %zu to %s within %s", i + 1, address,
                  cli_seconds(secs, sizeof secs, timeout));
    else
        cli_error("cannot send to %s: %s", address, mpconn_conn_errmsg(c));
    return CLI_FAIL;
}

static int reply_one(mpconn_conn *c, const char *address, const payloads *ps, size_t i, int format,
                     double timeout, const mpconn_opts *opts)
{
    void *buf;
    size_t len;
    char secs[48];
    int r = mpconn_conn_recv_bytes(c, &buf, &len, 0);
    if (r == MPCONN_ERR_EOF) {
        cli_error("%s closed the connection without replying to message %zu%s", address, i + 1,
                  protocol_hint(ps));
        return CLI_FAIL;
    }
    if (r == -ECONNRESET) {
        cli_error("%s closed the connection without reading all of message %zu (%s); %s", address,
                  i + 1, strerror(-r), size_hint);
        return CLI_FAIL;
    }
    if (r == MPCONN_ERR_NOKEY) {
        no_key(address);
        return CLI_FAIL;
    }
    if (r == -ETIMEDOUT) {
        cli_error("no reply from %s within %s", address, cli_seconds(secs, sizeof secs, timeout));
        return CLI_FAIL;
    }
    if (r < 0) {
        cli_error("cannot receive from %s: %s", address, mpconn_conn_errmsg(c));
        return CLI_FAIL;
    }
    r = cli_print_message(stdout, format, buf, len, opts);
    /* A peer that reports the error it ran into: Python 2.7 reads pickle
     * protocols 0 to 2 only. */
    int old_python =
        !ps->as_bytes && ps->protocol != 2 && contains(buf, len, "unsupported pickle protocol");
    free(buf);
    if (r < 0) {
        cli_error("cannot write to standard output: %s", strerror(errno));
        return CLI_FAIL;
    }
    if (old_python) {
        cli_error("%s could not read message %zu: it replied 'unsupported pickle protocol' "
                  "(Python 2.7 reads protocols 0 to 2): try --protocol 2",
                  address, i + 1);
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* After the last message without --reply: half-close, then wait a little
 * for the listener to close in turn. A listener that wanted a key has sent
 * its challenge (at accept, so it comes however fast the messages went)
 * and took the first message as a wrong answer; one that closed with
 * messages unread resets the connection. Anything else it sends is read
 * and dropped; its end of file, or silence until the bound, is success. */
static int wait_for_close(mpconn_conn *c, const char *address, double timeout)
{
    if (shutdown(mpconn_conn_fileno(c), SHUT_WR) < 0)
        return CLI_OK; /* nothing to learn from a socket that is already gone */
    double deadline = now() + timeout;
    for (;;) {
        double left = deadline - now();
        if (left <= 0 || mpconn_conn_set_timeouts(c, -1, left) < 0)
            return CLI_OK;
        void *buf;
        size_t len;
        int r = mpconn_conn_recv_bytes(c, &buf, &len, 0);
        if (r == 0) {
            free(buf);
            continue;
        }
        if (r == MPCONN_ERR_NOKEY) {
            no_key(address);
            return CLI_FAIL;
        }
        if (r == -ECONNRESET) {
            cli_error("%s closed the connection without reading every message (%s); %s", address,
                      strerror(-r), size_hint);
            return CLI_FAIL;
        }
        return CLI_OK;
    }
}

static int send_all(mpconn_conn *c, const char *address, const payloads *ps, int reply, int format,
                    double timeout, const mpconn_opts *opts)
{
    for (size_t i = 0; i < ps->n; i++) {
        if (send_one(c, address, ps, i, timeout) != CLI_OK)
            return CLI_FAIL;
        if (reply && reply_one(c, address, ps, i, format, timeout, opts) != CLI_OK)
            return CLI_FAIL;
    }
    if (reply && ps->n > 0)
        return CLI_OK;
    return wait_for_close(c, address, timeout >= 0 ? timeout : DEFAULT_CLOSE_WAIT);
}

int cli_send(int argc, char **argv)
{
    cli_parser p = {"send", argc, argv, 1, 0};
    cli_common common;
    cli_common_init(&common);
    payloads ps = {NULL, 0, 0, 0, 0, NULL};
    int reply = 0;
    const char *address = NULL;
    /* VALUEs are kept as given until all options are known (--bytes may come last). */
    const char **values = calloc((size_t)argc, sizeof *values);
    size_t nvalues = 0;
    if (!values) {
        cli_error("out of memory");
        return CLI_FAIL;
    }
    int id, r, status = CLI_OK;
    const char *arg;
    while (status == CLI_OK && (id = cli_next(&p, send_specs, &arg)) != -1) {
        long v;
        switch (id) {
        case -2: status = CLI_USAGE; break;
        case 0:
            if (!address)
                address = arg;
            else
                values[nvalues++] = arg;
            break;
        case CLI_OPT_HELP:
            fputs(send_help, stdout);
            free(values);
            return CLI_OK;
        case OPT_BYTES: ps.as_bytes = 1; break;
        case OPT_REPLY: reply = 1; break;
        case OPT_PROTOCOL:
            if (cli_parse_int(arg, 2, 5, &v) < 0)
                status = cli_usage_error("send", "--protocol: '%s' is not a number 2..5", arg);
            ps.protocol = (int)v;
            break;
        default: status = cli_common_option(&common, "send", id, arg);
        }
    }
    if (status == CLI_OK && !address)
        status = cli_usage_error("send", "missing ADDRESS");
    if (status == CLI_OK && (r = cli_check_address("send", address)) < 0)
        status = -r;
    if (status == CLI_OK && ps.as_bytes && ps.protocol)
        status = cli_usage_error("send", "--protocol has no meaning with --bytes");
    mpconn_opts *opts = NULL;
    if (status == CLI_OK)
        status = cli_common_opts(&common, "send", &opts);
    ps.opts = opts;
    int stdin_read = 0;
    for (size_t i = 0; status == CLI_OK && i < nvalues; i++) {
        if (strcmp(values[i], "-") == 0) {
            /* A second '-' would find standard input at its end anyway. */
            if (!stdin_read)
                status = add_stdin(&ps);
            stdin_read = 1;
            continue;
        }
        char where[32];
        snprintf(where, sizeof where, "VALUE %zu", i + 1);
        status = add_value(&ps, values[i], strlen(values[i]), where);
    }
    free(values);
    if (status == CLI_OK) {
        mpconn_conn *c;
        char errmsg[256];
        if (mpconn_client(&c, address, opts, errmsg, sizeof errmsg) < 0) {
            cli_error("%s", errmsg);
            status = CLI_FAIL;
        } else {
            status = send_all(c, address, &ps, reply, common.format, common.timeout, opts);
            mpconn_conn_free(c);
        }
    }
    payloads_free(&ps);
    mpconn_opts_free(opts);
    return status;
}
