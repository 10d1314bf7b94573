/* mpconn send: connect as a Client and send each VALUE (a Python literal,
 * pickled; or raw bytes with --bytes) as one message, optionally printing
 * one reply per message. Every VALUE is checked before connecting. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char send_help[] =
    "usage: mpconn send ADDRESS [VALUE ...] [options]\n"
    "\n"
    "Connect to ADDRESS as a multiprocessing.connection Client and send each VALUE as one\n"
    "message. A VALUE is a Python literal (\"{'op': 'add', 'args': [1, 2.5]}\"), pickled as\n"
    "Python's Connection.send() would; '-' reads one VALUE per line from standard input.\n"
    "All VALUEs are parsed first: a bad one is reported and nothing is sent.\n"
    "\n"
    "options:\n"
    "  --bytes                send each VALUE as its raw UTF-8 bytes (send_bytes), not pickled\n"
    "  --protocol N           pickle protocol 2..5 (default 4, as Python 3.8-3.13)\n"
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
    "  --timeout SECONDS      bound the connect, the handshake and each send and reply\n"
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
    int r = mpconn_value_parse_opts(text, len, ps->opts, &v, err, sizeof err);
    if (r < 0) {
        cli_error("bad literal in %s: %s", where, err[0] ? err : mpconn_strerror(r));
        return CLI_USAGE;
    }
    void *buf;
    size_t n;
    r = mpconn_value_encode(v, ps->protocol, &buf, &n);
    mpconn_value_free(v);
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

static int send_all(mpconn_conn *c, const char *address, const payloads *ps, int reply, int format,
                    double timeout, const mpconn_opts *opts)
{
    for (size_t i = 0; i < ps->n; i++) {
        if (mpconn_conn_send_bytes(c, ps->p[i].buf, ps->p[i].len) < 0) {
            cli_error("cannot send to %s: %s", address, mpconn_conn_errmsg(c));
            return CLI_FAIL;
        }
        if (!reply)
            continue;
        void *buf;
        size_t len;
        int r = mpconn_conn_recv_bytes(c, &buf, &len, 0);
        if (r == MPCONN_EEOF) {
            cli_error("%s closed the connection without replying", address);
            return CLI_FAIL;
        }
        if (r == -ETIMEDOUT) {
            cli_error("no reply from %s within %g seconds", address, timeout);
            return CLI_FAIL;
        }
        if (r < 0) {
            cli_error("cannot receive from %s: %s", address, mpconn_conn_errmsg(c));
            return CLI_FAIL;
        }
        r = cli_print_message(stdout, format, buf, len, opts);
        free(buf);
        if (r < 0) {
            cli_error("cannot write to standard output: %s", strerror(errno));
            return CLI_FAIL;
        }
    }
    return CLI_OK;
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
    int id, status = CLI_OK;
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
            /* Without a key, a listener that wants one sends a challenge we
             * never read; when it is already here, say so rather than exit 0
             * as if the messages had been taken. */
            if (status == CLI_OK && !reply && !common.authkey_env && !common.authkey_file &&
                mpconn_conn_poll(c, 0) == 1) {
                void *buf;
                size_t len;
                int r = mpconn_conn_recv_bytes(c, &buf, &len, 0);
                if (r == MPCONN_ENOKEY) {
                    cli_error("%s: %s", address, mpconn_conn_errmsg(c));
                    status = CLI_FAIL;
                } else if (r == 0) {
                    free(buf);
                }
            }
            mpconn_conn_free(c);
        }
    }
    payloads_free(&ps);
    mpconn_opts_free(opts);
    return status;
}
