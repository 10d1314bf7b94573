/* The C side of the interop and fault tests: a listener or a client driven
 * from argv, reporting every step as one line on stdout for the Python
 * scripts in this folder to check.
 *
 *   peer listen ADDRESS [OPTIONS] ACTION...   prints "listening on ADDR", then
 *                                             runs the actions on each accepted
 *                                             connection (--count of them)
 *   peer connect ADDRESS [OPTIONS] ACTION...  prints "connected", runs them once
 *
 * Options: --authkey TEXT, --authkey-hex HEX, --digest NAME, --no-md5,
 * --handshake-timeout S, --recv-timeout S, --max-message N, --count N,
 * --accept-timeout S, --protocol P (pickle protocol of sendobj), --keep-going
 * (listener: an error ends only that connection).
 *
 * Actions (the pattern of an N-byte message is byte i = (i + N) % 251):
 *   send:N      send the pattern          recv:N     receive and check it
 *   recvretry:N recv:N again after each timeout (at most 50 tries)
 *   echo        send back every message until end of file
 *   recvinto:B  recv_bytes_into a B-byte buffer; "short" on ESHORTBUF
 *   recvany     receive one message and print it (escaped)
 *   eof         expect MPCONN_ERR_EOF        sendtext:T send the text T
 *   sendloop:N  send N-byte messages until one fails (at most 4096)
 *   sendfd:T    send the fd of a temporary file holding T
 *   recvfd      receive an fd and print what its file holds
 *   sendobj:L   send the Python literal L  recvobj    receive, print its repr
 *   wait        read one line from stdin (the script's "go on")
 *
 * Any failure prints "error ACTION NAME: MESSAGE" and exits 3 (after the
 * last connection with --keep-going); a content mismatch exits 4; usage 2.
 * The last line is always "maxrss KB". */
#include "mpconn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define EXIT_ERROR 3
#define EXIT_MISMATCH 4

static struct {
    int listen;
    const char *address;
    int count;
    double accept_timeout;
    int keep_going;
    char **actions;
    int nactions;
} cfg = {.count = 1, .accept_timeout = 30};

/* Peak resident memory of this program in KiB. Linux's ru_maxrss also
 * counts the address space the process had before exec (the parent's, when
 * spawned with vfork), so prefer VmHWM, which starts afresh at exec. */
static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[128];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    if (kb < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = ru.ru_maxrss;
    }
    return kb;
}

_Noreturn static void finish(int status)
{
    printf("maxrss %ld\n", peak_rss_kb());
    fflush(stdout);
    exit(status);
}

/* The code's symbolic name, as the library spells it ("MPCONN_ERR_AUTH",
 * "EPIPE"); a code it cannot name as a number. */
static const char *code_name(int code)
{
    static char buf[32];
    const char *name = mpconn_errname(code);
    if (strcmp(name, "UNKNOWN") != 0)
        return name;
    snprintf(buf, sizeof buf, "code%d", code);
    return buf;
}

static void print_escaped(const char *prefix, const unsigned char *p, size_t n)
{
    fputs(prefix, stdout);
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
            putchar(p[i]);
        else
            printf("\\x%02x", p[i]);
    }
    putchar('\n');
    fflush(stdout);
}

static unsigned char *pattern(size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    if (!p) {
        printf("error pattern ENOMEM: cannot allocate %zu bytes\n", n);
        finish(EXIT_ERROR);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i + n) % 251);
    return p;
}

static size_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end) {
        fprintf(stderr, "peer: bad number \"%s\"\n", s);
        finish(EXIT_USAGE);
    }
    return (size_t)v;
}

/* Reports the failed step of a connection; returns EXIT_ERROR. */
static int conn_error(const char *action, mpconn_conn *c, int code)
{
    printf("error %s %s: %s\n", action, code_name(code), mpconn_conn_errmsg(c));
    fflush(stdout);
    return EXIT_ERROR;
}

/* Checks (and frees) a received message against the pattern of want bytes. */
static int check_pattern(const char *action, void *msg, size_t len, size_t want)
{
    unsigned char *expect = pattern(want);
    int same = len == want && memcmp(msg, expect, len) == 0;
    free(expect);
    free(msg);
    if (!same) {
        printf("mismatch %s: got %zu bytes\n", action, len);
        return EXIT_MISMATCH;
    }
    printf("recv %zu ok\n", len);
    return 0;
}

static int do_recv(mpconn_conn *c, const char *action, size_t want)
{
    void *msg;
    size_t len;
    int r = mpconn_conn_recv_bytes(c, &msg, &len, 0);
    if (r < 0)
        return conn_error(action, c, r);
    return check_pattern(action, msg, len, want);
}

static int do_echo(mpconn_conn *c)
{
    for (;;) {
        void *msg;
        size_t len;
        int r = mpconn_conn_recv_bytes(c, &msg, &len, 0);
        if (r == MPCONN_ERR_EOF) {
            printf("echo eof\n");
            return 0;
        }
        if (r < 0)
            return conn_error("echo", c, r);
        r = mpconn_conn_send_bytes(c, msg, len);
        free(msg);
        if (r < 0)
            return conn_error("echo", c, r);
        printf("echo %zu\n", len);
        fflush(stdout);
    }
}

static int do_recvinto(mpconn_conn *c, size_t bufsize)
{
    unsigned char *buf = malloc(bufsize ? bufsize : 1);
    size_t len = 0;
    if (!buf)
        return conn_error("recvinto", c, -ENOMEM);
    int r = mpconn_conn_recv_bytes_into(c, buf, bufsize, 0, &len);
    if (r == MPCONN_ERR_SHORTBUF) {
        printf("recvinto short %zu\n", len);
    } else if (r < 0) {
        free(buf);
        return conn_error("recvinto", c, r);
    } else {
        print_escaped("recvinto ok ", buf, len);
    }
    free(buf);
    return 0;
}

static int do_sendfd(mpconn_conn *c, const char *text)
{
    char path[] = "/tmp/mpconn-peer-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return conn_error("sendfd", c, -errno);
    unlink(path);
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n || lseek(fd, 0, SEEK_SET) != 0) {
        int e = errno;
        close(fd);
        return conn_error("sendfd", c, -e);
    }
    int r = mpconn_conn_send_fd(c, fd, 0);
    close(fd); /* the sent fd stays ours */
    if (r < 0)
        return conn_error("sendfd", c, r);
    printf("sendfd ok\n");
    return 0;
}

static int do_recvfd(mpconn_conn *c)
{
    int fd = -1;
    int r = mpconn_conn_recv_fd(c, &fd, 0);
    if (r < 0)
        return conn_error("recvfd", c, r);
    unsigned char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 0)
        return conn_error("recvfd", c, -errno);
    print_escaped("recvfd ", buf, (size_t)n);
    return 0;
}

static int do_sendobj(mpconn_conn *c, const char *literal)
{
    mpconn_value *v;
    char err[256];
    int r = mpconn_value_parse(&v, literal, strlen(literal), err, sizeof err);
    if (r < 0) {
        printf("error sendobj %s: cannot parse: %s\n", code_name(r), err);
        return EXIT_ERROR;
    }
    r = mpconn_conn_send(c, v);
    mpconn_value_unref(v);
    if (r < 0)
        return conn_error("sendobj", c, r);
    printf("sendobj ok\n");
    return 0;
}

static int do_recvobj(mpconn_conn *c)
{
    mpconn_value *v;
    int r = mpconn_conn_recv(c, &v);
    if (r < 0)
        return conn_error("recvobj", c, r);
    char *text;
    size_t len;
    r = mpconn_value_repr(v, &text, &len);
    mpconn_value_unref(v);
    if (r < 0) {
        printf("error recvobj %s: repr failed\n", code_name(r));
        return EXIT_ERROR;
    }
    print_escaped("recvobj ", (const unsigned char *)text, len);
    free(text);
    return 0;
}

/* One action on a connection; 0 or an exit status. */
static int run_action(mpconn_conn *c, const char *action)
{
    char name[32];
    const char *colon = strchr(action, ':');
    const char *arg = colon ? colon + 1 : "";
    size_t nl = colon ? (size_t)(colon - action) : strlen(action);
    if (nl >= sizeof name)
        nl = sizeof name - 1;
    memcpy(name, action, nl);
    name[nl] = 0;
    int r;

    if (strcmp(name, "send") == 0) {
        size_t n = parse_size(arg);
        unsigned char *p = pattern(n);
        r = mpconn_conn_send_bytes(c, p, n);
        free(p);
        if (r < 0)
            return conn_error(action, c, r);
        printf("sent %zu\n", n);
    } else if (strcmp(name, "recv") == 0) {
        return do_recv(c, action, parse_size(arg));
    } else if (strcmp(name, "recvretry") == 0) {
        /* With --recv-timeout: report each timeout and call again. */
        size_t n = parse_size(arg);
        for (int i = 0; i < 50; i++) {
            void *msg;
            size_t len;
            r = mpconn_conn_recv_bytes(c, &msg, &len, 0);
            if (r == -ETIMEDOUT) {
                printf("timeout\n");
                fflush(stdout);
                continue;
            }
            if (r < 0)
                return conn_error(action, c, r);
            return check_pattern(action, msg, len, n);
        }
        return conn_error(action, c, -ETIMEDOUT);
    } else if (strcmp(name, "echo") == 0) {
        return do_echo(c);
    } else if (strcmp(name, "recvinto") == 0) {
        return do_recvinto(c, parse_size(arg));
    } else if (strcmp(name, "recvany") == 0) {
        void *msg;
        size_t len;
        if ((r = mpconn_conn_recv_bytes(c, &msg, &len, 0)) < 0)
            return conn_error(action, c, r);
        print_escaped("recvany ", msg, len);
        free(msg);
    } else if (strcmp(name, "eof") == 0) {
        void *msg;
        size_t len;
        r = mpconn_conn_recv_bytes(c, &msg, &len, 0);
        if (r == 0) {
            free(msg);
            printf("mismatch eof: got a %zu-byte message\n", len);
            return EXIT_MISMATCH;
        }
        if (r != MPCONN_ERR_EOF)
            return conn_error(action, c, r);
        printf("eof ok\n");
    } else if (strcmp(name, "sendtext") == 0) {
        if ((r = mpconn_conn_send_string(c, arg)) < 0)
            return conn_error(action, c, r);
        printf("sent %zu\n", strlen(arg));
    } else if (strcmp(name, "sendloop") == 0) {
        size_t n = parse_size(arg);
        unsigned char *p = pattern(n);
        r = 0;
        for (int i = 0; i < 4096 && r == 0; i++)
            r = mpconn_conn_send_bytes(c, p, n);
        free(p);
        if (r < 0)
            return conn_error(action, c, r);
        printf("sendloop: every send succeeded\n");
    } else if (strcmp(name, "sendfd") == 0) {
        return do_sendfd(c, arg);
    } else if (strcmp(name, "recvfd") == 0) {
        return do_recvfd(c);
    } else if (strcmp(name, "sendobj") == 0) {
        return do_sendobj(c, arg);
    } else if (strcmp(name, "recvobj") == 0) {
        return do_recvobj(c);
    } else if (strcmp(name, "wait") == 0) {
        char line[64];
        if (!fgets(line, sizeof line, stdin)) {
            printf("error wait: stdin closed\n");
            return EXIT_ERROR;
        }
        printf("waited\n");
    } else {
        fprintf(stderr, "peer: unknown action \"%s\"\n", action);
        finish(EXIT_USAGE);
    }
    fflush(stdout);
    return 0;
}

static int run_actions(mpconn_conn *c)
{
    for (int i = 0; i < cfg.nactions; i++) {
        int st = run_action(c, cfg.actions[i]);
        fflush(stdout);
        if (st)
            return st;
    }
    printf("done\n");
    fflush(stdout);
    return 0;
}

static void on_reject(void *data, int code, const char *message)
{
    (void)data;
    printf("reject %s: %s\n", code_name(code), message);
    fflush(stdout);
}

static int run_listener(const mpconn_opts *opts)
{
    mpconn_listener *l;
    char err[256];
    int r = mpconn_listener_open(&l, cfg.address, opts, err, sizeof err);
    if (r < 0) {
        printf("error listen %s: %s\n", code_name(r), err);
        return EXIT_ERROR;
    }
    mpconn_listener_on_reject(l, on_reject, NULL);
    printf("listening on %s\n", mpconn_listener_address(l));
    fflush(stdout);
    int status = 0;
    for (int i = 0; i < cfg.count; i++) {
        mpconn_conn *c;
        if ((r = mpconn_listener_accept(l, &c, cfg.accept_timeout)) < 0) {
            printf("error accept %s: %s\n", code_name(r), mpconn_listener_errmsg(l));
            status = EXIT_ERROR;
            break;
        }
        printf("accepted %s\n", mpconn_listener_last_accepted(l, NULL, NULL, NULL));
        fflush(stdout);
        int st = run_actions(c);
        mpconn_conn_free(c);
        if (st && !status)
            status = st;
        if (st && !cfg.keep_going)
            break;
    }
    mpconn_listener_free(l);
    return status;
}

static int run_client(const mpconn_opts *opts)
{
    mpconn_conn *c;
    char err[256];
    int r = mpconn_client(&c, cfg.address, opts, err, sizeof err);
    if (r < 0) {
        printf("error connect %s: %s\n", code_name(r), err);
        return EXIT_ERROR;
    }
    printf("connected\n");
    fflush(stdout);
    int st = run_actions(c);
    mpconn_conn_free(c);
    return st;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

_Noreturn static void usage(void)
{
    fprintf(stderr, "usage: peer listen|connect ADDRESS [OPTIONS] ACTION...\n"
                    "(see the comment at the top of tests/interop/peer.c)\n");
    finish(EXIT_USAGE);
}

static void check(int r, const char *what)
{
    if (r < 0) {
        fprintf(stderr, "peer: %s: %s\n", what, mpconn_strerror(r));
        finish(EXIT_USAGE);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3)
        usage();
    if (strcmp(argv[1], "listen") == 0)
        cfg.listen = 1;
    else if (strcmp(argv[1], "connect") != 0)
        usage();
    cfg.address = argv[2];
    cfg.actions = calloc((size_t)argc, sizeof *cfg.actions);
    mpconn_opts *opts;
    if (!cfg.actions || mpconn_opts_new(&opts) < 0)
        return EXIT_ERROR;

    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (strcmp(a, "--no-md5") == 0) {
            check(mpconn_opts_set_allow_md5(opts, 0), a);
            takes = 0;
        } else if (strcmp(a, "--keep-going") == 0) {
            cfg.keep_going = 1;
            takes = 0;
        } else if (strncmp(a, "--", 2) != 0) {
            cfg.actions[cfg.nactions++] = argv[i];
            takes = 0;
        } else if (!v) {
            usage();
        } else if (strcmp(a, "--authkey") == 0) {
            check(mpconn_opts_set_authkey(opts, v, strlen(v)), a);
        } else if (strcmp(a, "--authkey-hex") == 0) {
            size_t n = strlen(v) / 2;
            unsigned char key[256];
            if (strlen(v) % 2 || n > sizeof key)
                usage();
            for (size_t k = 0; k < n; k++) {
                int hi = hexval(v[2 * k]), lo = hexval(v[2 * k + 1]);
                if (hi < 0 || lo < 0)
                    usage();
                key[k] = (unsigned char)(hi * 16 + lo);
            }
            check(mpconn_opts_set_authkey(opts, key, n), a);
        } else if (strcmp(a, "--digest") == 0) {
            check(mpconn_opts_set_digest(opts, v), a);
        } else if (strcmp(a, "--handshake-timeout") == 0) {
            check(mpconn_opts_set_handshake_timeout(opts, atof(v)), a);
        } else if (strcmp(a, "--recv-timeout") == 0) {
            check(mpconn_opts_set_recv_timeout(opts, atof(v)), a);
        } else if (strcmp(a, "--max-message") == 0) {
            check(mpconn_opts_set_max_message(opts, parse_size(v)), a);
        } else if (strcmp(a, "--protocol") == 0) {
            check(mpconn_opts_set_pickle_protocol(opts, (int)parse_size(v)), a);
        } else if (strcmp(a, "--count") == 0) {
            cfg.count = (int)parse_size(v);
        } else if (strcmp(a, "--accept-timeout") == 0) {
            cfg.accept_timeout = atof(v);
        } else {
            usage();
        }
        i += takes;
    }
    int status = cfg.listen ? run_listener(opts) : run_client(opts);
    mpconn_opts_free(opts);
    free(cfg.actions);
    finish(status);
}
