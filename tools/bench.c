/* mpconn bench: a quick measurement of round trips, one-way throughput and
 * authenticated handshakes over a socketpair, a Unix socket and TCP loopback,
 * or (--tls) over TLS on TCP loopback. The peer runs in a forked child; the
 * parent measures. The full comparison with a raw C baseline and CPython is
 * bench/ (make bench). */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET: --cpu is Linux-only */
#include "cli.h"

#include <mpconn/tls.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char bench_help[] =
    "usage: mpconn bench [options]\n"
    "\n"
    "Measure the library over a socketpair, a Unix socket and TCP loopback, with the peer in\n"
    "a child process, and print messages (or handshakes) per second and payload MB/s.\n"
    "\n"
    "options:\n"
    "  --kind KIND            rtt (default): send, wait for the echo; throughput: send one\n"
    "                         way as fast as possible; handshake: connect + authenticate;\n"
    "                         a comma-separated list runs several\n"
    "  --sizes LIST           message sizes in bytes, k/M suffixes allowed\n"
    "                         (default 64,4k,64k,1M)\n"
    "  --seconds S            duration of each measurement (default 1)\n"
    "  --transport LIST       socketpair,unix,tcp (default: all three; handshake skips\n"
    "                         socketpair, which has no handshake)\n"
    "  --digest NAME          challenge digest of the handshake benchmark (default sha256)\n"
    "  --cpu N                pin both processes to CPU N, as make bench does; unpinned, a\n"
    "                         round trip costs a wake-up across CPUs, several times slower\n"
    "  --tls                  the same rows over TLS on TCP loopback (transport tls), with a\n"
    "                         throwaway self-signed certificate made in memory; the client\n"
    "                         does not verify it (a handshake row counts TLS and authkey)\n"
    "  --cert FILE, --key FILE  with --tls: this certificate chain and key (PEM) instead\n"
    "  -h, --help             show this help\n"
    "\n"
    "The first line says how it ran: pinned to which CPU, or on which CPUs unpinned; with\n"
    "--tls the second names the certificate and the last the TLS version and cipher.\n"
    "MB/s counts payload bytes (10^6) carried one way per second.\n";

enum {
    OPT_HELP = 1,
    OPT_KIND,
    OPT_SIZES,
    OPT_SECONDS,
    OPT_TRANSPORT,
    OPT_DIGEST,
    OPT_CPU,
    OPT_TLS,
    OPT_CERT,
    OPT_KEY
};

static const cli_optspec bench_specs[] = {
    {"help", 'h', CLI_ARG_NONE, OPT_HELP},
    {"kind", 0, CLI_ARG_REQUIRED, OPT_KIND},
    {"sizes", 0, CLI_ARG_REQUIRED, OPT_SIZES},
    {"seconds", 0, CLI_ARG_REQUIRED, OPT_SECONDS},
    {"transport", 0, CLI_ARG_REQUIRED, OPT_TRANSPORT},
    {"digest", 0, CLI_ARG_REQUIRED, OPT_DIGEST},
    {"cpu", 0, CLI_ARG_REQUIRED, OPT_CPU},
    {"tls", 0, CLI_ARG_NONE, OPT_TLS},
    {"cert", 0, CLI_ARG_REQUIRED, OPT_CERT},
    {"key", 0, CLI_ARG_REQUIRED, OPT_KEY},
    {NULL, 0, 0, 0},
};

/* The key of the handshake benchmark: it protects nothing. */
static const char bench_key[] = "mpconn bench key";

enum { KIND_RTT = 1, KIND_THROUGHPUT = 2, KIND_HANDSHAKE = 4 };
enum { T_SOCKETPAIR = 1, T_UNIX = 2, T_TCP = 4, T_TLS = 8 };
static const char *const kind_names[] = {"rtt", "throughput", "handshake"};
static const char *const transport_names[] = {"socketpair", "unix", "tcp", "tls"};

/* The index of a one-bit mask in the name tables. */
static int bit_index(int bit)
{
    int i = 0;
    while (bit > 1) {
        bit >>= 1;
        i++;
    }
    return i;
}

#define MAX_SIZES 32
#define MAX_SIZE ((uint64_t)1 << 30)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "rtt,handshake" against names[] -> bit mask; 0 on an unknown name. */
static int parse_names(const char *list, const char *const *names, int nnames)
{
    int mask = 0;
    const char *p = list;
    for (;;) {
        size_t n = strcspn(p, ",");
        int found = 0;
        for (int i = 0; i < nnames; i++)
            if (strlen(names[i]) == n && strncmp(names[i], p, n) == 0) {
                mask |= 1 << i;
                found = 1;
            }
        if (!found)
            return 0;
        if (!p[n])
            return mask;
        p += n + 1;
    }
}

static int parse_sizes(const char *list, uint64_t *sizes, size_t *n)
{
    *n = 0;
    const char *p = list;
    for (;;) {
        size_t len = strcspn(p, ",");
        char tmp[32];
        if (len == 0 || len >= sizeof tmp || *n == MAX_SIZES)
            return -1;
        memcpy(tmp, p, len);
        tmp[len] = 0;
        uint64_t mul = 1;
        if (tmp[len - 1] == 'k' || tmp[len - 1] == 'K')
            mul = 1024;
        else if (tmp[len - 1] == 'm' || tmp[len - 1] == 'M')
            mul = 1024 * 1024;
        if (mul > 1)
            tmp[len - 1] = 0;
        uint64_t v;
        if (cli_parse_u64(tmp, &v) < 0 || v > MAX_SIZE / mul)
            return -1;
        sizes[(*n)++] = v * mul;
        if (!p[len])
            return 0;
        p += len + 1;
    }
}

/* ------------------------------------------------------------ the CPUs */

/* The CPUs in set as "0-3,6", into buf. */
static const char *cpu_list(const cpu_set_t *set, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < CPU_SETSIZE && n < cap; i++) {
        if (!CPU_ISSET(i, set))
            continue;
        int j = i;
        while (j + 1 < CPU_SETSIZE && CPU_ISSET(j + 1, set))
            j++;
        int w = j > i ? snprintf(buf + n, cap - n, "%s%d-%d", n ? "," : "", i, j)
                      : snprintf(buf + n, cap - n, "%s%d", n ? "," : "", i);
        n += w > 0 ? (size_t)w : 0;
        i = j;
    }
    return buf;
}

/* Pins this process (and so the peer it forks) to cpu, or says where it
 * runs unpinned; prints how it ran as the first line. Returns CLI_OK, or
 * CLI_USAGE for a CPU this process may not use. */
static int place(long cpu)
{
    cpu_set_t allowed;
    char list[256];
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) < 0) {
        cli_error("bench: cannot read the CPU affinity: %s", strerror(errno));
        return CLI_FAIL;
    }
    if (cpu < 0) {
        printf("# unpinned: both processes may run on CPUs %s (--cpu N pins them to one, as "
               "make bench and the README's figures do)\n",
               cpu_list(&allowed, list, sizeof list));
        return CLI_OK;
    }
    if (cpu >= CPU_SETSIZE || !CPU_ISSET((int)cpu, &allowed))
        return cli_usage_error("bench", "--cpu: CPU %ld is not one this process may use (%s)", cpu,
                               cpu_list(&allowed, list, sizeof list));
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET((int)cpu, &one);
    if (sched_setaffinity(0, sizeof one, &one) < 0) {
        cli_error("bench: cannot pin to CPU %ld: %s", cpu, strerror(errno));
        return CLI_FAIL;
    }
    printf("# pinned: both processes on CPU %ld\n", cpu);
    return CLI_OK;
}

/* ------------------------------------------------------------ the peer */

typedef struct peer {
    int kind;
    size_t size;
    char address[200];
    const mpconn_opts *opts;
} peer;

/* Runs in the child: echo (rtt), count and acknowledge (throughput) or
 * connect again and again (handshake), until the parent goes away. */
static void run_peer(const peer *pr, mpconn_conn *c)
{
    if (pr->kind == KIND_HANDSHAKE) {
        for (;;) {
            if (mpconn_client(&c, pr->address, pr->opts, NULL, 0) < 0)
                return;
            mpconn_conn_free(c);
        }
    }
    for (;;) {
        void *buf;
        size_t len;
        if (mpconn_conn_recv_bytes(c, &buf, &len, 0) < 0)
            return;
        int r = 0;
        if (pr->kind == KIND_RTT)
            r = mpconn_conn_send_bytes(c, buf, len);
        else if (len != pr->size) /* the end marker of a throughput run */
            r = mpconn_conn_send_bytes(c, "", 0);
        free(buf);
        if (r < 0)
            return;
    }
}

/* The options of one side of a measurement: the listener's and the
 * peer's (the same unless TLS gives each its config). */
typedef struct sides {
    const mpconn_opts *listener, *peer;
} sides;

/* Forks the peer; *mine is the parent's connected end (NULL for handshake,
 * where the parent keeps *l and accepts). Returns the child's pid or -1. */
static pid_t start(int kind, int transport, size_t size, sides opts, mpconn_conn **mine,
                   mpconn_listener **l)
{
    peer pr = {kind, size, "", opts.peer};
    mpconn_conn *a = NULL, *b = NULL;
    char errmsg[256] = "";
    int r;
    *mine = NULL;
    *l = NULL;
    if (transport == T_SOCKETPAIR) {
        if ((r = mpconn_pipe(&a, &b, 1, NULL)) < 0) {
            cli_error("bench: socketpair: %s", mpconn_strerror(r));
            return -1;
        }
    } else {
        const char *address = transport == T_UNIX  ? NULL
                              : transport == T_TLS ? "tls:127.0.0.1:0"
                                                   : "127.0.0.1:0";
        r = mpconn_listener_open(l, address, opts.listener, errmsg, sizeof errmsg);
        if (r < 0) {
            cli_error("bench: %s", errmsg);
            return -1;
        }
        snprintf(pr.address, sizeof pr.address, "%s", mpconn_listener_address(*l));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        cli_error("bench: fork: %s", strerror(errno));
        mpconn_conn_free(a);
        mpconn_conn_free(b);
        mpconn_listener_free(*l);
        *l = NULL;
        return -1;
    }
    if (pid == 0) {
        /* The child never frees the listener: that would remove the
         * parent's socket file. */
        mpconn_conn_free(a);
        if (transport != T_SOCKETPAIR && kind != KIND_HANDSHAKE &&
            mpconn_client(&b, pr.address, opts.peer, NULL, 0) < 0)
            _exit(1);
        run_peer(&pr, b);
        _exit(0);
    }
    mpconn_conn_free(b);
    if (transport == T_SOCKETPAIR) {
        *mine = a;
    } else if (kind != KIND_HANDSHAKE) {
        r = mpconn_listener_accept(*l, mine, 10.0);
        if (r < 0)
            cli_error("bench: %s", mpconn_listener_errmsg(*l));
        mpconn_listener_free(*l);
        *l = NULL;
        if (r < 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return -1;
        }
    }
    return pid;
}

/* ----------------------------------------------------------- measuring */

/* Runs one measurement; *count is messages (or handshakes), *secs the time.
 * tls_info, when still empty, gets the TLS version and cipher seen. */
static int measure(int kind, int transport, size_t size, double seconds, sides opts, double *count,
                   double *secs, char *tls_info, size_t cap)
{
    mpconn_conn *c;
    mpconn_listener *l;
    pid_t pid = start(kind, transport, size, opts, &c, &l);
    if (pid < 0)
        return -1;
    unsigned char *msg = calloc(size ? size : 1, 1);
    int r = msg ? 0 : -ENOMEM;
    double n = 0, t0 = now(), t = t0;
    while (r == 0 && t - t0 < seconds) {
        if (kind == KIND_HANDSHAKE) {
            mpconn_conn *h;
            if ((r = mpconn_listener_accept(l, &h, 10.0)) == 0)
                mpconn_conn_free(h);
        } else if ((r = mpconn_conn_send_bytes(c, msg, size)) == 0 && kind == KIND_RTT) {
            void *buf;
            size_t len;
            if ((r = mpconn_conn_recv_bytes(c, &buf, &len, 0)) == 0)
                free(buf);
        }
        if (r == 0)
            n++;
        t = now();
    }
    mpconn_tls *tls = c ? mpconn_conn_tls(c) : NULL;
    if (tls && !tls_info[0]) {
        int bits = 0;
        const char *cipher = mpconn_tls_cipher(tls, &bits);
        snprintf(tls_info, cap, "%s, %s, %d bits", mpconn_tls_version(tls), cipher, bits);
    }
    if (r == 0 && kind == KIND_THROUGHPUT) {
        /* The time counts until the peer has taken every message. */
        void *buf;
        size_t len;
        if ((r = mpconn_conn_send_bytes(c, msg, size ? 0 : 1)) == 0 &&
            (r = mpconn_conn_recv_bytes(c, &buf, &len, 0)) == 0)
            free(buf);
        t = now();
    }
    if (r < 0)
        cli_error("bench %s over %s: %s", kind_names[bit_index(kind)],
                  transport_names[bit_index(transport)],
                  l   ? mpconn_listener_errmsg(l)
                  : c ? mpconn_conn_errmsg(c)
                      : mpconn_strerror(r));
    free(msg);
    mpconn_conn_free(c);
    mpconn_listener_free(l);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    *count = n;
    *secs = t - t0;
    return r < 0 ? -1 : 0;
}

/* ------------------------------------------------------------- TLS */

/* bio's PEM text, copied into *out (the caller's) with its length. */
static int take_pem(BIO *bio, char **out, size_t *len)
{
    char *p;
    long n = BIO_get_mem_data(bio, &p);
    *out = n > 0 ? malloc((size_t)n) : NULL;
    if (!*out)
        return -1;
    memcpy(*out, p, (size_t)n);
    *len = (size_t)n;
    return 0;
}

/* A self-signed P-256 certificate valid for a day, and its key, as PEM
 * text made in memory: nothing to clean up on disk, nothing to trust. */
static int throwaway_cert(char **cert, size_t *cert_len, char **key, size_t *key_len)
{
    int ok = 0;
    *cert = *key = NULL;
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    if (pk && x && cb && kb && X509_set_version(x, 2) &&
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1) &&
        X509_gmtime_adj(X509_getm_notBefore(x), -60) &&
        X509_gmtime_adj(X509_getm_notAfter(x), 86400) && X509_set_pubkey(x, pk)) {
        X509_NAME *name = X509_get_subject_name(x);
        ok = X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                        (const unsigned char *)"mpconn bench", -1, -1, 0) &&
             X509_set_issuer_name(x, name) && X509_sign(x, pk, EVP_sha256()) &&
             PEM_write_bio_X509(cb, x) &&
             PEM_write_bio_PrivateKey(kb, pk, NULL, NULL, 0, NULL, NULL) &&
             take_pem(cb, cert, cert_len) == 0 && take_pem(kb, key, key_len) == 0;
    }
    BIO_free(cb);
    BIO_free(kb);
    X509_free(x);
    EVP_PKEY_free(pk);
    if (!ok) {
        free(*cert);
        free(*key);
        *cert = *key = NULL;
    }
    return ok ? 0 : -1;
}

/* The server and client configs of --tls: the given certificate or a
 * throwaway one; a client that accepts it unverified. Prints which. */
static int tls_configs(const char *cert_file, const char *key_file, mpconn_tls_config **server,
                       mpconn_tls_config **client)
{
    int r = mpconn_tls_config_new(server, MPCONN_TLS_SERVER);
    if (r == 0)
        r = mpconn_tls_config_new(client, MPCONN_TLS_CLIENT);
    if (r == 0)
        r = mpconn_tls_config_set_insecure_no_verify(*client, 1);
    if (r < 0) {
        cli_error("bench: TLS: %s", mpconn_strerror(r));
        return CLI_FAIL;
    }
    if (cert_file) {
        if (mpconn_tls_config_set_cert_file(*server, cert_file, key_file) < 0) {
            cli_error("bench: --cert: %s", mpconn_tls_config_errmsg(*server));
            return CLI_FAIL;
        }
        printf("# tls: certificate %s, not verified by the client\n", cert_file);
        return CLI_OK;
    }
    char *pem, *key;
    size_t pem_len, key_len;
    if (throwaway_cert(&pem, &pem_len, &key, &key_len) < 0) {
        cli_error("bench: cannot make a certificate with libcrypto");
        return CLI_FAIL;
    }
    r = mpconn_tls_config_set_cert_mem(*server, pem, pem_len, key, key_len);
    free(pem);
    free(key);
    if (r < 0) {
        cli_error("bench: %s", mpconn_tls_config_errmsg(*server));
        return CLI_FAIL;
    }
    printf("# tls: a throwaway self-signed P-256 certificate made in memory, not verified by "
           "the client\n");
    return CLI_OK;
}

/* Options of one side: cfg's TLS (NULL: none), and with keyed the bench
 * key and digest. NULL when out of memory or the digest is unknown
 * (*bad_digest set). */
static mpconn_opts *side_opts(mpconn_tls_config *cfg, int keyed, const char *digest,
                              int *bad_digest)
{
    mpconn_opts *o;
    if (mpconn_opts_new(&o) < 0)
        return NULL;
    int r = cfg ? mpconn_opts_set_tls(o, cfg) : 0;
    if (r == 0 && keyed)
        r = mpconn_opts_set_authkey(o, bench_key, sizeof bench_key - 1);
    if (r == 0 && keyed && digest && (r = mpconn_opts_set_digest(o, digest)) < 0)
        *bad_digest = 1;
    if (r < 0) {
        mpconn_opts_free(o);
        return NULL;
    }
    return o;
}

int cli_bench(int argc, char **argv)
{
    cli_parser p = {"bench", argc, argv, 1, 0};
    int kinds = KIND_RTT, transports = T_SOCKETPAIR | T_UNIX | T_TCP, tls = 0, transport_set = 0;
    uint64_t sizes[MAX_SIZES] = {64, 4096, 65536, 1048576};
    size_t nsizes = 4;
    double seconds = 1;
    const char *digest = NULL, *cert_file = NULL, *key_file = NULL;
    long cpu = -1;
    int id;
    const char *arg;
    while ((id = cli_next(&p, bench_specs, &arg)) != -1) {
        switch (id) {
        case -2: return CLI_USAGE;
        case 0: return cli_usage_error("bench", "unexpected argument '%s'", arg);
        case OPT_HELP: fputs(bench_help, stdout); return CLI_OK;
        case OPT_KIND:
            if (!(kinds = parse_names(arg, kind_names, 3)))
                return cli_usage_error("bench", "--kind: '%s' is not rtt, throughput, handshake",
                                       arg);
            break;
        case OPT_TRANSPORT:
            if (!(transports = parse_names(arg, transport_names, 3)))
                return cli_usage_error("bench", "--transport: '%s' is not socketpair, unix, tcp",
                                       arg);
            transport_set = 1;
            break;
        case OPT_SIZES:
            if (parse_sizes(arg, sizes, &nsizes) < 0)
                return cli_usage_error("bench", "--sizes: '%s' is not a list of sizes", arg);
            break;
        case OPT_SECONDS:
            if (cli_parse_double(arg, &seconds) < 0 || seconds <= 0 || seconds > 3600)
                return cli_usage_error("bench", "--seconds: '%s' is not a duration in seconds",
                                       arg);
            break;
        case OPT_DIGEST: digest = arg; break;
        case OPT_CPU:
            if (cli_parse_int(arg, 0, 1 << 20, &cpu) < 0)
                return cli_usage_error("bench", "--cpu: '%s' is not a CPU number", arg);
            break;
        case OPT_TLS: tls = 1; break;
        case OPT_CERT: cert_file = arg; break;
        case OPT_KEY: key_file = arg; break;
        }
    }
    if ((cert_file || key_file) && !tls)
        return cli_usage_error("bench", "--cert and --key apply with --tls only");
    if (key_file && !cert_file)
        return cli_usage_error("bench", "--key needs --cert FILE");
    if (tls && transport_set)
        return cli_usage_error("bench", "--tls runs over TCP loopback: --transport does not "
                                        "apply");
    if (tls)
        transports = T_TLS;
    int bad_digest = 0;
    mpconn_opts *probe = side_opts(NULL, 1, digest, &bad_digest);
    mpconn_opts_free(probe);
    if (bad_digest)
        return cli_usage_error("bench", "--digest: '%s' is not a digest name", digest);
    int placed = place(cpu);
    if (placed != CLI_OK)
        return placed;
    mpconn_tls_config *scfg = NULL, *ccfg = NULL;
    int status = tls ? tls_configs(cert_file, key_file, &scfg, &ccfg) : CLI_OK;
    /* data[]: rtt and throughput; hs[]: handshakes. Listener, then peer. */
    mpconn_opts *data[2] = {NULL, NULL}, *hs[2] = {NULL, NULL};
    if (status == CLI_OK) {
        hs[0] = side_opts(scfg, 1, digest, &bad_digest);
        hs[1] = side_opts(ccfg, 1, digest, &bad_digest);
        if (tls) {
            data[0] = side_opts(scfg, 0, NULL, &bad_digest);
            data[1] = side_opts(ccfg, 0, NULL, &bad_digest);
        }
        if (!hs[0] || !hs[1] || (tls && (!data[0] || !data[1]))) {
            cli_error("out of memory");
            status = CLI_FAIL;
        }
    }
    mpconn_tls_config_free(scfg); /* the opts hold them */
    mpconn_tls_config_free(ccfg);
    char tls_info[128] = "";
    int ready = status == CLI_OK;
    if (ready)
        printf("%-11s %-11s %10s %14s %10s\n", "kind", "transport", "size", "messages/s", "MB/s");
    for (int k = KIND_RTT; ready && k <= KIND_HANDSHAKE; k <<= 1) {
        if (!(kinds & k))
            continue;
        for (int t = T_SOCKETPAIR; t <= T_TLS; t <<= 1) {
            if (!(transports & t) || (k == KIND_HANDSHAKE && t == T_SOCKETPAIR))
                continue;
            size_t ns = k == KIND_HANDSHAKE ? 1 : nsizes;
            sides opts = k == KIND_HANDSHAKE ? (sides){hs[0], hs[1]} : (sides){data[0], data[1]};
            for (size_t i = 0; i < ns; i++) {
                double n, secs;
                size_t size = k == KIND_HANDSHAKE ? 0 : (size_t)sizes[i];
                if (measure(k, t, size, seconds, opts, &n, &secs, tls_info, sizeof tls_info) < 0) {
                    status = CLI_FAIL;
                    continue;
                }
                double rate = secs > 0 ? n / secs : 0;
                if (k == KIND_HANDSHAKE)
                    printf("%-11s %-11s %10s %14.1f %10s\n", kind_names[bit_index(k)],
                           transport_names[bit_index(t)], "-", rate, "-");
                else
                    printf("%-11s %-11s %10zu %14.1f %10.2f\n", kind_names[bit_index(k)],
                           transport_names[bit_index(t)], size, rate, rate * (double)size / 1e6);
                fflush(stdout);
            }
        }
    }
    if (tls_info[0])
        printf("# tls: %s\n", tls_info);
    for (int i = 0; i < 2; i++) {
        mpconn_opts_free(data[i]);
        mpconn_opts_free(hs[i]);
    }
    return status;
}
