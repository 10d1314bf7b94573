/* Shared pieces of the mpconn command: exit statuses, the option parser,
 * the options every subcommand takes (authentication, timeout, format) and
 * message printing. Only the public mpconn.h API is used. */
#ifndef MPCONN_CLI_H
#define MPCONN_CLI_H

#include "mpconn.h"

#include <stdint.h>
#include <stdio.h>

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Largest message accepted unless --max-message says otherwise, so that a
 * stranger's header cannot make the tool allocate without bound. */
#define CLI_DEFAULT_MAX_MESSAGE ((uint64_t)64 << 20)
/* Longest line a received value prints as unless --max-print says
 * otherwise: a value sharing its containers can expand to more text than
 * memory holds, so the line is cut there, with a marker. */
#define CLI_DEFAULT_MAX_PRINT ((uint64_t)1 << 20)

/* ----------------------------------------------------------- option parser */

enum { CLI_ARG_NONE, CLI_ARG_REQUIRED };

typedef struct cli_optspec {
    const char *name; /* long name without "--" */
    char short_name;  /* 0 when none */
    int has_arg;
    int id;
} cli_optspec;

typedef struct cli_parser {
    const char *cmd; /* "serve", "send", ... for messages */
    int argc;
    char **argv;
    int i;         /* next argv index */
    int only_args; /* after "--" */
} cli_parser;

/* Returns the id of the next option (*arg set when it takes one), 0 with
 * *arg set for a positional argument, -1 at the end, or -2 after printing a
 * usage error. Arguments that look like negative numbers ("-1", "-.5") and
 * a lone "-" are positional. */
int cli_next(cli_parser *p, const cli_optspec *specs, const char **arg);

/* Prints "mpconn CMD: <message>" and a hint to use --help; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "mpconn: <message>" on standard error. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "1 second", "0.5 seconds", "2 seconds" into buf; returns buf. */
const char *cli_seconds(char *buf, size_t cap, double seconds);

/* Checks the syntax of ADDRESS before anything is opened. Returns its kind
 * (MPCONN_ADDR_TCP, _UNIX, _ABSTRACT), or after printing: -CLI_USAGE for an
 * address that does not parse (a usage error), -CLI_FAIL for a form this
 * platform lacks. */
int cli_check_address(const char *cmd, const char *address);

/* Strict number parsing: the whole string, in range. Return 0 or -1. */
int cli_parse_double(const char *s, double *out);
int cli_parse_u64(const char *s, uint64_t *out);
int cli_parse_int(const char *s, long min, long max, long *out);

/* The bytes a string with C escapes stands for (\n \r \t \0 \a \b \f \v
 * \e \\ \' \" \xHH), into out (cap bytes), *len set. Returns 0, or -1 with
 * err saying what is wrong (an unknown or cut escape, too long). */
int cli_unescape(const char *s, char *out, size_t cap, size_t *len, char *err, size_t errlen);

/* ------------------------------------------------------------- common options */

enum cli_format { CLI_FORMAT_REPR, CLI_FORMAT_JSON, CLI_FORMAT_HEX };

typedef struct cli_common {
    const char *authkey_env;
    const char *authkey_file;
    const char *digest;
    int no_legacy_md5;
    double timeout; /* < 0: none given */
    int format;
    uint64_t max_message;
    uint64_t max_print, max_int_digits; /* 0: no limit */
    /* TLS, for tls: addresses */
    const char *cert, *key, *ca, *server_name;
    int require_client_cert, insecure_no_verify;
} cli_common;

/* Option ids below CLI_COMMON_LAST belong to the common options. */
enum {
    CLI_OPT_HELP = 1,
    CLI_OPT_AUTHKEY_ENV,
    CLI_OPT_AUTHKEY_FILE,
    CLI_OPT_DIGEST,
    CLI_OPT_NO_LEGACY_MD5,
    CLI_OPT_TIMEOUT,
    CLI_OPT_FORMAT,
    CLI_OPT_MAX_MESSAGE,
    CLI_OPT_MAX_PRINT,
    CLI_OPT_MAX_INT_DIGITS,
    CLI_OPT_CERT,
    CLI_OPT_KEY,
    CLI_OPT_CA,
    CLI_OPT_REQUIRE_CLIENT_CERT,
    CLI_OPT_SERVER_NAME,
    CLI_OPT_INSECURE_NO_VERIFY,
    CLI_COMMON_LAST
};

/* The common option specs, for inclusion in a command's table. */
#define CLI_COMMON_SPECS                                                                           \
    {"help", 'h', CLI_ARG_NONE, CLI_OPT_HELP},                                                     \
        {"authkey-env", 0, CLI_ARG_REQUIRED, CLI_OPT_AUTHKEY_ENV},                                 \
        {"authkey-file", 0, CLI_ARG_REQUIRED, CLI_OPT_AUTHKEY_FILE},                               \
        {"digest", 0, CLI_ARG_REQUIRED, CLI_OPT_DIGEST},                                           \
        {"no-legacy-md5", 0, CLI_ARG_NONE, CLI_OPT_NO_LEGACY_MD5},                                 \
        {"timeout", 0, CLI_ARG_REQUIRED, CLI_OPT_TIMEOUT},                                         \
        {"format", 0, CLI_ARG_REQUIRED, CLI_OPT_FORMAT},                                           \
        {"max-message", 0, CLI_ARG_REQUIRED, CLI_OPT_MAX_MESSAGE},                                 \
        {"max-print", 0, CLI_ARG_REQUIRED, CLI_OPT_MAX_PRINT},                                     \
        {"max-int-digits", 0, CLI_ARG_REQUIRED, CLI_OPT_MAX_INT_DIGITS},                           \
        {"cert", 0, CLI_ARG_REQUIRED, CLI_OPT_CERT}, {"key", 0, CLI_ARG_REQUIRED, CLI_OPT_KEY},    \
        {"ca", 0, CLI_ARG_REQUIRED, CLI_OPT_CA},                                                   \
        {"require-client-cert", 0, CLI_ARG_NONE, CLI_OPT_REQUIRE_CLIENT_CERT},                     \
        {"server-name", 0, CLI_ARG_REQUIRED, CLI_OPT_SERVER_NAME},                                 \
    {                                                                                              \
        "insecure-no-verify", 0, CLI_ARG_NONE, CLI_OPT_INSECURE_NO_VERIFY                          \
    }

void cli_common_init(cli_common *c);
/* Applies one common option; returns 0 or CLI_USAGE (after printing). */
int cli_common_option(cli_common *c, const char *cmd, int id, const char *arg);
/* Checks the combination (both authkey options, ...) and builds the opts:
 * authkey, digest, MD5 policy, timeouts, max message, print limits (text
 * cut at --max-print). Returns CLI_OK,
 * CLI_USAGE or CLI_FAIL (after printing); *out is the caller's. */
int cli_common_opts(const cli_common *c, const char *cmd, mpconn_opts **out);
/* For a tls: address, a TLS config from the TLS options put into o: a
 * server's (server != 0: --cert, --key, --ca, --require-client-cert) or a
 * client's (--ca or the system's trust store, --cert/--key for mutual TLS,
 * --server-name, --insecure-no-verify); $SSLKEYLOGFILE, when set, gets the
 * session secrets. TLS options with another address, or of the other
 * side, are usage errors. Returns CLI_OK, CLI_USAGE or CLI_FAIL (after
 * printing). */
int cli_common_tls(const cli_common *c, const char *cmd, const char *address, int server,
                   mpconn_opts *o);
/* Whether address is a tls: one. */
int cli_is_tls(const char *address);
/* Whether r, from a receive on c, is the TLS peer refusing this side (its
 * certificate, or none sent, as TLS 1.3 says after the handshake); then
 * says so: "TLS with ADDRESS failed: ...". */
int cli_tls_refused(mpconn_conn *c, int r, const char *address);
/* Half-closes c (close_notify first on a TLS connection, so the peer sees
 * an end, not a truncation): 0, or -1 when the socket is already gone
 * (never for TLS: what the peer said before it went is still to read). */
int cli_half_close(mpconn_conn *c);

/* ---------------------------------------------------------------- output */

/* Prints one message as one line on out in the chosen format and flushes:
 * a pickle of plain values as repr()/JSON, anything else as a bytes value.
 * limits (may be NULL) bounds the pickle decoder and the text: a line cut
 * at the print limit ends in CLI_CUT_MARK. Returns 0, or -1 when out
 * cannot be written. */
#define CLI_CUT_MARK " ...[cut: longer than the --max-print limit]"
int cli_print_message(FILE *out, int format, const void *buf, size_t len,
                      const mpconn_opts *limits);
/* The same for a message that is bytes whatever they hold (a line): never
 * decoded as a pickle. */
int cli_print_bytes(FILE *out, int format, const void *buf, size_t len, const mpconn_opts *limits);

/* ------------------------------------------------------------- commands */

int cli_serve(int argc, char **argv);
int cli_send(int argc, char **argv);
int cli_bench(int argc, char **argv);

#endif
