/* Helpers shared by the mpconn subcommands: a small long-option parser,
 * strict number parsing, the authentication/timeout/format options and the
 * one-line printing of a received message. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* -------------------------------------------------------------- messages */

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "mpconn%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'mpconn%s%s --help'.\n", cmd ? " " : "", cmd ? cmd : "");
    return CLI_USAGE;
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("mpconn: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

const char *cli_seconds(char *buf, size_t cap, double seconds)
{
    snprintf(buf, cap, "%g second%s", seconds, seconds == 1 ? "" : "s");
    return buf;
}

int cli_check_address(const char *cmd, const char *address)
{
    char err[256] = "";
    int kind = mpconn_address_kind(address, err, sizeof err);
    if (kind == MPCONN_ERR_ADDR)
        return -cli_usage_error(cmd, "%s", err[0] ? err : mpconn_strerror(kind));
    if (kind < 0) {
        cli_error("%s", err[0] ? err : mpconn_strerror(kind));
        return -CLI_FAIL;
    }
    return kind;
}

/* ---------------------------------------------------------- option parser */

static int looks_like_number(const char *s)
{
    if (s[0] != '-')
        return 0;
    return (s[1] >= '0' && s[1] <= '9') || (s[1] == '.' && s[2] >= '0' && s[2] <= '9');
}

int cli_next(cli_parser *p, const cli_optspec *specs, const char **arg)
{
    *arg = NULL;
    if (p->i >= p->argc)
        return -1;
    const char *a = p->argv[p->i++];
    if (p->only_args || a[0] != '-' || a[1] == 0 || looks_like_number(a)) {
        *arg = a;
        return 0;
    }
    if (strcmp(a, "--") == 0) {
        p->only_args = 1;
        return cli_next(p, specs, arg);
    }
    const cli_optspec *s = NULL;
    const char *inline_val = NULL;
    if (a[1] == '-') {
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        for (const cli_optspec *t = specs; t->name; t++)
            if (strlen(t->name) == n && strncmp(t->name, name, n) == 0)
                s = t;
        if (!s)
            return cli_usage_error(p->cmd, "unknown option '--%.*s'", (int)n, name), -2;
        if (eq)
            inline_val = eq + 1;
    } else {
        /* Short options stand alone: "-h", "-q", not "-hq". */
        for (const cli_optspec *t = specs; t->name; t++)
            if (t->short_name && t->short_name == a[1] && a[2] == 0)
                s = t;
        if (!s)
            return cli_usage_error(p->cmd, "unknown option '%s'", a), -2;
    }
    if (s->has_arg == CLI_ARG_NONE) {
        if (inline_val)
            return cli_usage_error(p->cmd, "option '--%s' takes no argument", s->name), -2;
        return s->id;
    }
    if (inline_val) {
        *arg = inline_val;
        return s->id;
    }
    if (p->i >= p->argc)
        return cli_usage_error(p->cmd, "option '--%s' needs an argument", s->name), -2;
    *arg = p->argv[p->i++];
    return s->id;
}

/* --------------------------------------------------------------- numbers */

int cli_parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(d))
        return -1;
    *out = d;
    return 0;
}

int cli_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!*s || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int hex_digit(char c)
{
    static const char digits[] = "0123456789abcdef";
    const char *p = c ? strchr(digits, tolower((unsigned char)c)) : NULL;
    return p ? (int)(p - digits) : -1;
}

int cli_unescape(const char *s, char *out, size_t cap, size_t *len, char *err, size_t errlen)
{
    static const char from[] = "nrt0abfve\\'\"";
    static const char to[] = "\n\r\t\0\a\b\f\v\033\\'\"";
    size_t n = 0;
    while (*s) {
        char c = *s++;
        if (c == '\\') {
            char e = *s++;
            const char *k = e ? strchr(from, e) : NULL;
            if (k) {
                c = to[k - from];
            } else if (e == 'x') {
                int hi = hex_digit(s[0]), lo = hi >= 0 ? hex_digit(s[1]) : -1;
                if (lo < 0) {
                    snprintf(err, errlen, "\\x needs two hex digits");
                    return -1;
                }
                c = (char)(hi * 16 + lo);
                s += 2;
            } else {
                if (e)
                    snprintf(err, errlen, "unknown escape '\\%c'", e);
                else
                    snprintf(err, errlen, "a lone backslash at the end");
                return -1;
            }
        }
        if (n == cap) {
            snprintf(err, errlen, "longer than %zu bytes", cap);
            return -1;
        }
        out[n++] = c;
    }
    *len = n;
    return 0;
}

/* -------------------------------------------------------- common options */

void cli_common_init(cli_common *c)
{
    memset(c, 0, sizeof *c);
    c->timeout = -1;
    c->format = CLI_FORMAT_REPR;
    c->max_message = CLI_DEFAULT_MAX_MESSAGE;
    c->max_print = CLI_DEFAULT_MAX_PRINT;
    c->max_int_digits = 4300;
}

int cli_common_option(cli_common *c, const char *cmd, int id, const char *arg)
{
    switch (id) {
    case CLI_OPT_AUTHKEY_ENV: c->authkey_env = arg; return 0;
    case CLI_OPT_AUTHKEY_FILE: c->authkey_file = arg; return 0;
    case CLI_OPT_DIGEST: c->digest = arg; return 0;
    case CLI_OPT_NO_LEGACY_MD5: c->no_legacy_md5 = 1; return 0;
    case CLI_OPT_TIMEOUT:
        if (cli_parse_double(arg, &c->timeout) < 0 || c->timeout < 0)
            return cli_usage_error(cmd, "--timeout: '%s' is not a number of seconds >= 0", arg);
        return 0;
    case CLI_OPT_FORMAT:
        if (strcmp(arg, "repr") == 0)
            c->format = CLI_FORMAT_REPR;
        else if (strcmp(arg, "json") == 0)
            c->format = CLI_FORMAT_JSON;
        else if (strcmp(arg, "hex") == 0)
            c->format = CLI_FORMAT_HEX;
        else
            return cli_usage_error(cmd, "--format: '%s' is not one of repr, json, hex", arg);
        return 0;
    case CLI_OPT_MAX_MESSAGE:
        if (cli_parse_u64(arg, &c->max_message) < 0)
            return cli_usage_error(cmd, "--max-message: '%s' is not a number of bytes", arg);
        return 0;
    case CLI_OPT_MAX_PRINT:
        if (cli_parse_u64(arg, &c->max_print) < 0)
            return cli_usage_error(cmd, "--max-print: '%s' is not a number of bytes", arg);
        return 0;
    case CLI_OPT_MAX_INT_DIGITS:
        if (cli_parse_u64(arg, &c->max_int_digits) < 0 ||
            (c->max_int_digits > 0 && c->max_int_digits < 640))
            return cli_usage_error(cmd, "--max-int-digits: '%s' is not 0 or a number >= 640", arg);
        return 0;
    default: return cli_usage_error(cmd, "internal error: option %d", id);
    }
}

/* Reads the whole key file: the key is its exact bytes, newline included,
 * as Python's open(path, 'rb').read() would give. */
static int read_key_file(const char *path, unsigned char **key, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t cap = 256, n = 0;
    unsigned char *buf = malloc(cap);
    int r = 0;
    while (buf) {
        if (n == cap) {
            /* A key file is small; a huge one is a mistake, not a key. */
            if (cap >= (1u << 20)) {
                r = -EFBIG;
                break;
            }
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
        ssize_t k = read(fd, buf + n, cap - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r = -errno;
            break;
        }
        if (k == 0) {
            close(fd);
            *key = buf;
            *len = n;
            return 0;
        }
        n += (size_t)k;
    }
    close(fd);
    if (buf) {
        memset(buf, 0, cap);
        free(buf);
    }
    return r ? r : -ENOMEM;
}

int cli_common_opts(const cli_common *c, const char *cmd, mpconn_opts **out)
{
    if (c->authkey_env && c->authkey_file)
        return cli_usage_error(cmd, "--authkey-env and --authkey-file exclude each other");
    mpconn_opts *o;
    if (mpconn_opts_new(&o) < 0) {
        cli_error("out of memory");
        return CLI_FAIL;
    }
    int r;
    if (c->digest && mpconn_opts_set_digest(o, c->digest) < 0) {
        mpconn_opts_free(o);
        return cli_usage_error(cmd,
                               "--digest: '%s' is not one of sha256, sha384, sha3_256, sha3_384, "
                               "md5, legacy",
                               c->digest);
    }
    if (c->no_legacy_md5)
        mpconn_opts_set_allow_md5(o, 0);
    if (c->timeout >= 0) {
        mpconn_opts_set_connect_timeout(o, c->timeout);
        mpconn_opts_set_handshake_timeout(o, c->timeout);
        mpconn_opts_set_recv_timeout(o, c->timeout);
        mpconn_opts_set_send_timeout(o, c->timeout);
    }
    mpconn_opts_set_max_message(o, c->max_message);
    mpconn_opts_set_print_limits(o, c->max_print ? (size_t)c->max_print : MPCONN_UNLIMITED,
                                 c->max_int_digits ? (size_t)c->max_int_digits : MPCONN_UNLIMITED);
    mpconn_opts_set_print_truncate(o, 1);
    if (c->authkey_env) {
        const char *k = getenv(c->authkey_env);
        if (!k || !*k) {
            cli_error("--authkey-env: environment variable %s is %s", c->authkey_env,
                      k ? "empty" : "not set");
            mpconn_opts_free(o);
            return CLI_FAIL;
        }
        if ((r = mpconn_opts_set_authkey(o, k, strlen(k))) < 0) {
            cli_error("cannot set the authkey: %s", mpconn_strerror(r));
            mpconn_opts_free(o);
            return CLI_FAIL;
        }
    } else if (c->authkey_file) {
        unsigned char *key = NULL;
        size_t len = 0;
        if ((r = read_key_file(c->authkey_file, &key, &len)) < 0) {
            cli_error("--authkey-file: cannot read %s: %s", c->authkey_file, mpconn_strerror(r));
            mpconn_opts_free(o);
            return CLI_FAIL;
        }
        /* An empty key would silently mean "no authentication", as in Python. */
        if (len == 0) {
            free(key);
            cli_error("--authkey-file: %s is empty", c->authkey_file);
            mpconn_opts_free(o);
            return CLI_FAIL;
        }
        r = mpconn_opts_set_authkey(o, key, len);
        memset(key, 0, len);
        free(key);
        if (r < 0) {
            cli_error("cannot set the authkey: %s", mpconn_strerror(r));
            mpconn_opts_free(o);
            return CLI_FAIL;
        }
    }
    *out = o;
    return CLI_OK;
}

/* ---------------------------------------------------------------- output */

static int print_hex(FILE *out, const unsigned char *p, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        putc(digits[p[i] >> 4], out);
        putc(digits[p[i] & 15], out);
    }
    return 0;
}

/* Text of v in the chosen format (freed by the caller), a line cut at the
 * print limit marked as such; or NULL, with the reason on standard error
 * when it is a limit. */
static char *format_value(int format, const mpconn_value *v, const mpconn_opts *opts)
{
    char *s = NULL, err[256] = "";
    size_t n;
    int r = format == CLI_FORMAT_JSON ? mpconn_value_json_opts(v, opts, &s, &n, err, sizeof err)
                                      : mpconn_value_repr_opts(v, opts, &s, &n, err, sizeof err);
    if (r == MPCONN_ERR_LIMIT)
        cli_error("value shown as its bytes: %s (see --max-int-digits)", err);
    if (r == 1) {
        char *m = realloc(s, n + sizeof CLI_CUT_MARK);
        if (!m) {
            free(s);
            return NULL;
        }
        memcpy(m + n, CLI_CUT_MARK, sizeof CLI_CUT_MARK);
        s = m;
    }
    return r < 0 ? NULL : s;
}

static int print_line(FILE *out, int format, const void *buf, size_t len, const mpconn_opts *limits,
                      int as_bytes)
{
    if (format == CLI_FORMAT_HEX) {
        print_hex(out, buf, len);
    } else {
        char *text = NULL;
        mpconn_value *v = NULL;
        /* Anything that is not a pickle of plain values is shown as the bytes
         * it is, so nothing that arrived is hidden. */
        if (!as_bytes && mpconn_value_decode(&v, buf, len, limits, NULL, 0) == 0) {
            text = format_value(format, v, limits);
            mpconn_value_unref(v);
        }
        if (!text) {
            mpconn_value *b = mpconn_value_bytes(buf, len);
            text = b ? format_value(format, b, limits) : NULL;
            mpconn_value_unref(b);
        }
        if (text) {
            fputs(text, out);
            free(text);
        } else {
            /* Out of memory for the text form: hex still shows the bytes. */
            fputs("<unprintable> ", out);
            print_hex(out, buf, len);
        }
    }
    putc('\n', out);
    return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}

int cli_print_message(FILE *out, int format, const void *buf, size_t len, const mpconn_opts *limits)
{
    return print_line(out, format, buf, len, limits, 0);
}

int cli_print_bytes(FILE *out, int format, const void *buf, size_t len, const mpconn_opts *limits)
{
    return print_line(out, format, buf, len, limits, 1);
}
