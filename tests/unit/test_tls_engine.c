/* The TLS engine and its config: two engines wired through memory (every
 * split of the ciphertext, both versions, the verification failures by
 * name, resumption, close_notify, truncation), and CPython's ssl module on
 * the other end of a socketpair. Certificates are made by the openssl
 * command, once a day, in the build tree. */
#include "testlib.h"

#include <mpconn/tls.h>

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WANT_READ MPCONN_TLS_WANT_READ
#define WANT_WRITE MPCONN_TLS_WANT_WRITE
#define SKIP 77

/* ------------------------------------------------------------ certificates */

/* ca (RSA-2048) signs server (RSA-2048), server_ec, client, expired, other;
 * wild (*.wild.test, f*.part.test), future (valid from 2099); rogue signs untrusted and
 * rogueclient; self is self-signed. CERTS_VERSION names the set: change it with the set. */
#define CERTS_VERSION "v2"
static const char cert_script[] =
    "set -e\n"
    "ec='-newkey ec -pkeyopt ec_paramgen_curve:P-256'\n"
    "cax='-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign'\n"
    "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem"
    " -subj /CN=mpconn-test-ca -days 3 $cax\n"
    "openssl req -x509 $ec -nodes -keyout rogue.key -out rogue.pem -subj /CN=rogue-ca"
    " -days 3 $cax\n"
    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\\n"
    "extendedKeyUsage=serverAuth\\n' > server.ext\n"
    "printf 'subjectAltName=DNS:other.example\\nextendedKeyUsage=serverAuth\\n' > other.ext\n"
    "printf 'extendedKeyUsage=clientAuth\\n' > client.ext\n"
    "printf 'subjectAltName=DNS:*.wild.test,DNS:f*.part.test\\n' > wild.ext\n"
    "leaf() {\n"
    "  name=$1 cn=$2 ca=$3 ext=$4 days=$5; shift 5\n"
    "  openssl req \"$@\" -nodes -keyout $name.key -out $name.csr -subj /CN=$cn\n"
    "  openssl x509 -req -in $name.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial"
    " -days $days -extfile $ext -out $name.pem\n"
    "}\n"
    "leaf server localhost ca server.ext 3 -newkey rsa:2048\n"
    "leaf server_ec localhost ca server.ext 3 $ec\n"
    "leaf client client ca client.ext 3 $ec\n"
    "leaf expired localhost ca server.ext -1 $ec\n"
    "leaf other other.example ca other.ext 3 $ec\n"
    "leaf untrusted localhost rogue server.ext 3 $ec\n"
    "leaf wild wild ca wild.ext 3 $ec\n"
    "leaf rogueclient client rogue client.ext 3 $ec\n"
    /* x509 -req sets no start date; `openssl ca` does */
    "mkdir db && touch db/index.txt && echo 1000 > db/serial\n"
    "printf '[ca]\\ndefault_ca=c\\n[c]\\ndatabase=db/index.txt\\nnew_certs_dir=db\\n"
    "serial=db/serial\\ndefault_md=sha256\\npolicy=p\\n[p]\\ncommonName=supplied\\n' > ca.cnf\n"
    "openssl req $ec -nodes -keyout future.key -out future.csr -subj /CN=localhost\n"
    "openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in future.csr -out future.pem"
    " -startdate 20990101000000Z -enddate 20990201000000Z -extfile server.ext\n"
    "openssl req -x509 $ec -nodes -keyout self.key -out self.pem -subj /CN=localhost -days 3"
    " -addext subjectAltName=DNS:localhost,IP:127.0.0.1\n"
    "openssl pkey -in server.key -aes256 -passout pass:sesame -out server-enc.key\n"
    "cat server.pem server.key > server-both.pem\n"
    "mkdir cadir && cp ca.pem cadir/ && openssl rehash cadir\n";

/* The certificate directory, made on first use (by whichever test process
 * gets there first: each makes its own and renames it into place). Named
 * by the day, so certificates valid for 3 days are never stale. */
static const char *cert_dir(void)
{
    static char dir[4096];
    if (dir[0])
        return dir;
    char day[16];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(day, sizeof day, "%Y%m%d", &tm);
    snprintf(dir, sizeof dir, "%s-%s-%s", MPCONN_TLS_CERTS, CERTS_VERSION, day);
    struct stat st;
    if (stat(dir, &st) == 0)
        return dir;
    if (system("openssl version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "skipped: no openssl command to make certificates\n");
        exit(SKIP);
    }
    char tmp[4200], cmd[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", dir);
    CHECK(mkdtemp(tmp) != NULL);
    FILE *f;
    snprintf(cmd, sizeof cmd, "%s/make.sh", tmp);
    CHECK((f = fopen(cmd, "w")) != NULL);
    fputs(cert_script, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cd '%s' && sh make.sh >log 2>&1", tmp);
    if (system(cmd) != 0) {
        snprintf(cmd, sizeof cmd, "cat '%s/log' >&2", tmp);
        CHECK(system(cmd) >= 0);
        fprintf(stderr, "making the test certificates failed\n");
        exit(1);
    }
    if (rename(tmp, dir) != 0) {
        CHECK(errno == EEXIST || errno == ENOTEMPTY); /* another test was first */
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        CHECK(system(cmd) == 0);
    }
    return dir;
}

/* A path in the certificate directory; a few rotate, so several may be in
 * use in one call. */
static const char *cert(const char *file)
{
    static char paths[8][4200];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", cert_dir(), file);
    return p;
}

static int contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle)) {
        fprintf(stderr, "\"%s\" does not contain \"%s\"\n", hay ? hay : "(null)", needle);
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- configs */

static mpconn_tls_config *server_cfg(const char *name)
{
    mpconn_tls_config *cfg;
    char pem[64], key[64];
    snprintf(pem, sizeof pem, "%s.pem", name);
    snprintf(key, sizeof key, "%s.key", name);
    CHECK_INT(mpconn_tls_config_new(&cfg, MPCONN_TLS_SERVER), 0);
    int rc = mpconn_tls_config_set_cert_file(cfg, cert(pem), cert(key));
    if (rc != 0)
        fprintf(stderr, "%s\n", mpconn_tls_config_errmsg(cfg));
    CHECK_INT(rc, 0);
    return cfg;
}

static mpconn_tls_config *client_cfg(void)
{
    mpconn_tls_config *cfg;
    CHECK_INT(mpconn_tls_config_new(&cfg, MPCONN_TLS_CLIENT), 0);
    CHECK_INT(mpconn_tls_config_set_ca_file(cfg, cert("ca.pem")), 0);
    return cfg;
}

static void set_versions(mpconn_tls_config *cfg, int lo, int hi)
{
    CHECK_INT(mpconn_tls_config_set_min_version(cfg, lo), 0);
    CHECK_INT(mpconn_tls_config_set_max_version(cfg, hi), 0);
}

/* ------------------------------------------------------- engines in memory */

/* Moves what from has to send into to, step bytes at a time. */
static size_t move(mpconn_tls *from, mpconn_tls *to, size_t step)
{
    unsigned char buf[4096];
    size_t total = 0, n;
    if (step > sizeof buf)
        step = sizeof buf;
    for (int i = 0; i < 100000 && mpconn_tls_outgoing(from) > 0; i++) {
        CHECK_INT(mpconn_tls_pull(from, buf, step, &n), 0);
        CHECK(n > 0 && n <= step);
        CHECK_INT(mpconn_tls_feed(to, buf, n), 0);
        total += n;
    }
    CHECK_INT(mpconn_tls_outgoing(from), 0);
    return total;
}

/* Runs both handshakes until each is done or failed and no byte moves. */
static void handshake(mpconn_tls *c, mpconn_tls *s, int *rc, int *rs)
{
    *rc = *rs = WANT_READ;
    for (int i = 0; i < 50; i++) {
        if (*rc == WANT_READ)
            *rc = mpconn_tls_handshake(c);
        size_t m = move(c, s, 4096);
        if (*rs == WANT_READ)
            *rs = mpconn_tls_handshake(s);
        m += move(s, c, 4096);
        if (m == 0)
            return;
    }
    CHECK(!"handshake did not settle in 50 rounds");
}

static void new_pair(mpconn_tls_config *cc, const char *name, mpconn_tls_config *sc, mpconn_tls **c,
                     mpconn_tls **s)
{
    CHECK_INT(mpconn_tls_new(c, cc, name), 0);
    CHECK_INT(mpconn_tls_new(s, sc, NULL), 0);
}

static void connect_pair(mpconn_tls_config *cc, const char *name, mpconn_tls_config *sc,
                         mpconn_tls **c, mpconn_tls **s)
{
    new_pair(cc, name, sc, c, s);
    int rc, rs;
    handshake(*c, *s, &rc, &rs);
    if (rc != 0 || rs != 0)
        fprintf(stderr, "client %d: %s\nserver %d: %s\n", rc, mpconn_tls_errmsg(*c), rs,
                mpconn_tls_errmsg(*s));
    CHECK_INT(rc, 0);
    CHECK_INT(rs, 0);
}

/* Reads what to has until it wants more input, appending at out[*have]. */
static int drain(mpconn_tls *to, unsigned char *out, size_t cap, size_t *have, size_t step)
{
    for (int i = 0; i < 1000000; i++) {
        size_t n, room = cap - *have < step ? cap - *have : step;
        unsigned char scratch[1];
        int r = mpconn_tls_read(to, room ? out + *have : scratch, room ? room : 1, &n);
        if (r != 0)
            return r;
        CHECK(n >= 1 && n <= (room ? room : 1));
        CHECK(room > 0); /* more than was sent */
        *have += n;
    }
    CHECK(!"read did not stop");
    return -1;
}

static void fill(unsigned char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (unsigned char)(seed >> 16);
    }
}

/* One message from one engine to the other, its ciphertext fed in pieces
 * of every size, read in small pieces after each. */
static void every_split(mpconn_tls *from, mpconn_tls *to, size_t len)
{
    unsigned char msg[512], got[512], ct[2048];
    CHECK(len <= sizeof msg);
    for (size_t step = 1;; step++) {
        size_t n, total = 0;
        fill(msg, len, (unsigned)step);
        CHECK_INT(mpconn_tls_write(from, msg, len, &n), 0);
        CHECK_INT(n, len);
        CHECK(mpconn_tls_outgoing(from) <= sizeof ct);
        CHECK_INT(mpconn_tls_pull(from, ct, sizeof ct, &total), 0);
        CHECK_INT(mpconn_tls_outgoing(from), 0);
        size_t have = 0;
        for (size_t off = 0; off < total; off += step) {
            size_t k = total - off < step ? total - off : step;
            CHECK_INT(mpconn_tls_feed(to, ct + off, k), 0);
            CHECK_INT(drain(to, got, sizeof got, &have, step % 7 + 1), WANT_READ);
            CHECK(off + k == total || have < len);
        }
        CHECK_INT(have, len);
        CHECK_MEM(got, msg, len);
        CHECK_INT(mpconn_tls_readable(to), 0);
        if (step >= total)
            break;
    }
}

static void free_pair(mpconn_tls *c, mpconn_tls *s, mpconn_tls_config *cc, mpconn_tls_config *sc)
{
    mpconn_tls_free(c);
    mpconn_tls_free(s);
    mpconn_tls_config_free(cc);
    mpconn_tls_config_free(sc);
}

static void data_both_ways(int version)
{
    mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server");
    set_versions(cc, version, version);
    mpconn_tls *c, *s;
    connect_pair(cc, "localhost", sc, &c, &s);
    CHECK_STR(mpconn_tls_version(c), version == MPCONN_TLS_1_3 ? "TLSv1.3" : "TLSv1.2");
    CHECK_STR(mpconn_tls_version(s), mpconn_tls_version(c));
    int bits = 0;
    CHECK(mpconn_tls_cipher(c, &bits) != NULL);
    CHECK(bits >= 128);
    CHECK_INT(mpconn_tls_peer_verified(c), 1);
    CHECK_INT(mpconn_tls_peer_verified(s), 0); /* no client certificate asked for */
    CHECK_INT(mpconn_tls_readable(s), 0);      /* nothing came behind the handshake */
    every_split(c, s, 200);
    every_split(s, c, 200);
    every_split(c, s, 1);
    free_pair(c, s, cc, sc);
}

TEST(handshake_and_data_tls13)
{
    data_both_ways(MPCONN_TLS_1_3);
}

TEST(handshake_and_data_tls12)
{
    data_both_ways(MPCONN_TLS_1_2);
}

TEST(default_versions_agree_on_tls13)
{
    mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server_ec");
    mpconn_tls *c, *s;
    new_pair(cc, "localhost", sc, &c, &s);
    CHECK(mpconn_tls_version(c) == NULL); /* not before the handshake */
    CHECK(mpconn_tls_peer_subject(c) == NULL);
    int rc, rs;
    handshake(c, s, &rc, &rs);
    CHECK_INT(rc, 0);
    CHECK_INT(rs, 0);
    CHECK_STR(mpconn_tls_version(c), "TLSv1.3");
    CHECK_INT(mpconn_tls_handshake(c), 0); /* done stays done */
    free_pair(c, s, cc, sc);
}

TEST(peer_subject_and_san)
{
    mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server");
    mpconn_tls *c, *s;
    connect_pair(cc, "localhost", sc, &c, &s);
    CHECK_STR(mpconn_tls_peer_subject(c), "CN=localhost");
    CHECK_STR(mpconn_tls_peer_san(c, 0), "DNS:localhost");
    CHECK_STR(mpconn_tls_peer_san(c, 1), "IP:127.0.0.1");
    CHECK_STR(mpconn_tls_peer_san(c, 2), "IP:::1");
    CHECK(mpconn_tls_peer_san(c, 3) == NULL);
    CHECK(mpconn_tls_peer_subject(s) == NULL);
    free_pair(c, s, cc, sc);
}

TEST(large_data_with_backpressure)
{
    mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server_ec");
    mpconn_tls *c, *s;
    connect_pair(cc, "localhost", sc, &c, &s);
    size_t len = 1 << 20, sent = 0, have = 0;
    unsigned char *big = malloc(len), *out = malloc(len);
    CHECK(big && out);
    fill(big, len, 7);
    int saw_want_write = 0;
    for (int i = 0; i < 100000 && have < len; i++) {
        /* write until the engine says its output is full */
        while (sent < len) {
            size_t n;
            int r = mpconn_tls_write(c, big + sent, len - sent, &n);
            if (r == WANT_WRITE) {
                saw_want_write = 1;
                break;
            }
            CHECK_INT(r, 0);
            CHECK(n >= 1);
            sent += n;
            CHECK(mpconn_tls_outgoing(c) <= 64 * 1024 + 16384 + 512);
        }
        move(c, s, 4096);
        CHECK_INT(drain(s, out, len, &have, 65536), WANT_READ);
    }
    CHECK(saw_want_write);
    CHECK_INT(have, len);
    CHECK_MEM(out, big, len);
    free(big);
    free(out);
    free_pair(c, s, cc, sc);
}

TEST(pending_plaintext_is_reported)
{
    mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server_ec");
    mpconn_tls *c, *s;
    connect_pair(cc, "localhost", sc, &c, &s);
    /* drain the tickets the server sent */
    unsigned char buf[3000];
    size_t n, have = 0;
    CHECK_INT(drain(c, buf, sizeof buf, &have, 100), WANT_READ);
    CHECK_INT(have, 0);
    CHECK_INT(mpconn_tls_readable(c), 0);
    CHECK_INT(mpconn_tls_pending(c), 0);

    unsigned char msg[1000];
    fill(msg, sizeof msg, 3);
    CHECK_INT(mpconn_tls_write(s, msg, 600, &n), 0);
    CHECK_INT(mpconn_tls_write(s, msg + 600, 400, &n), 0); /* a second record */
    move(s, c, 4096);
    CHECK_INT(mpconn_tls_readable(c), 1); /* fed, not yet read */
    CHECK_INT(mpconn_tls_read(c, buf, 10, &n), 0);
    CHECK_INT(n, 10);
    CHECK_INT(mpconn_tls_pending(c), 590); /* the rest of the first record */
    CHECK_INT(mpconn_tls_readable(c), 1);
    CHECK_INT(mpconn_tls_read(c, buf + 10, 590, &n), 0);
    CHECK_INT(n, 590);
    CHECK_INT(mpconn_tls_pending(c), 0);
    CHECK_INT(mpconn_tls_readable(c), 1); /* the second record waits undecrypted */
    CHECK_INT(mpconn_tls_read(c, buf + 600, sizeof buf - 600, &n), 0);
    CHECK_INT(n, 400);
    CHECK_MEM(buf, msg, 1000);
    CHECK_INT(mpconn_tls_readable(c), 0); /* the read ran into "want read" */
    CHECK_INT(mpconn_tls_read(c, buf, sizeof buf, &n), WANT_READ);
    free_pair(c, s, cc, sc);
}

/* ------------------------------------------------------ failure matrix */

/* A client of cc for name against a server of cert name: the handshake
 * must fail, and the client's message must contain what. */
static void client_refuses(mpconn_tls_config *cc, const char *name, const char *server_cert,
                           int code, const char *what)
{
    mpconn_tls_config *sc = server_cfg(server_cert);
    mpconn_tls *c, *s;
    new_pair(cc, name, sc, &c, &s);
    int rc, rs;
    handshake(c, s, &rc, &rs);
    CHECK_INT(rc, code);
    CHECK(contains(mpconn_tls_errmsg(c), what));
    /* the server hears why */
    CHECK(rs < 0);
    CHECK(contains(mpconn_tls_errmsg(s), "alert"));
    /* sticky */
    size_t n;
    unsigned char b[16];
    CHECK_INT(mpconn_tls_read(c, b, sizeof b, &n), code);
    CHECK_INT(mpconn_tls_write(c, "x", 1, &n), code);
    CHECK_INT(mpconn_tls_handshake(c), code);
    CHECK(contains(mpconn_tls_errmsg(c), what));
    free_pair(c, s, cc, sc);
}

TEST(verify_untrusted_issuer)
{
    client_refuses(client_cfg(), "localhost", "untrusted", MPCONN_ERR_TLSVERIFY,
                   "unable to get local issuer certificate (depth 0, subject \"CN=localhost\")");
}

TEST(verify_self_signed)
{
    client_refuses(client_cfg(), "localhost", "self", MPCONN_ERR_TLSVERIFY, "self");
    client_refuses(client_cfg(), "localhost", "self", MPCONN_ERR_TLSVERIFY, "signed certificate");
}

TEST(verify_expired)
{
    client_refuses(client_cfg(), "localhost", "expired", MPCONN_ERR_TLSVERIFY,
                   "certificate has expired (depth 0");
}

TEST(verify_not_yet_valid)
{
    client_refuses(client_cfg(), "localhost", "future", MPCONN_ERR_TLSVERIFY,
                   "certificate verify failed: certificate is not yet valid (depth 0");
}

TEST(verify_hostname_mismatch)
{
    client_refuses(client_cfg(), "localhost", "other", MPCONN_ERR_TLSVERIFY,
                   "hostname mismatch: the certificate is not for \"localhost\"");
    /* a wildcard-free certificate does not cover a sub-name either */
    client_refuses(client_cfg(), "a.other.example", "other", MPCONN_ERR_TLSVERIFY,
                   "hostname mismatch");
}

TEST(verify_ip_mismatch)
{
    client_refuses(client_cfg(), "10.1.2.3", "server", MPCONN_ERR_TLSVERIFY,
                   "IP address mismatch: the certificate is not for \"10.1.2.3\"");
    client_refuses(client_cfg(), "::2", "server", MPCONN_ERR_TLSVERIFY, "IP address mismatch");
}

TEST(verify_wildcards)
{
    const char *good[] = {"a.wild.test", "A.WILD.TEST"};
    for (size_t i = 0; i < 2; i++) {
        mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("wild");
        mpconn_tls *c, *s;
        connect_pair(cc, good[i], sc, &c, &s);
        CHECK_INT(mpconn_tls_peer_verified(c), 1);
        CHECK_STR(mpconn_tls_peer_san(c, 0), "DNS:*.wild.test");
        free_pair(c, s, cc, sc);
    }
    /* one whole label only: not two, not none, not part of one */
    const char *bad[] = {"a.b.wild.test", "wild.test", "foo.part.test"};
    for (size_t i = 0; i < 3; i++)
        client_refuses(client_cfg(), bad[i], "wild", MPCONN_ERR_TLSVERIFY, "hostname mismatch");
}

TEST(verify_ip_match)
{
    const char *names[] = {"127.0.0.1", "::1", "LOCALHOST"};
    for (size_t i = 0; i < 3; i++) {
        mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server");
        mpconn_tls *c, *s;
        connect_pair(cc, names[i], sc, &c, &s);
        CHECK_INT(mpconn_tls_peer_verified(c), 1);
        CHECK_STR(mpconn_tls_server_name(c), names[i]);
        if (i < 2)
            CHECK(mpconn_tls_server_name(s) == NULL); /* no SNI for an address */
        else
            CHECK_STR(mpconn_tls_server_name(s), "LOCALHOST");
        free_pair(c, s, cc, sc);
    }
}

TEST(verify_no_trust_anchor_for_private_ca)
{
    /* The system store does not hold the test CA. */
    mpconn_tls_config *cc;
    CHECK_INT(mpconn_tls_config_new(&cc, MPCONN_TLS_CLIENT), 0);
    client_refuses(cc, "localhost", "server", MPCONN_ERR_TLSVERIFY, "certificate verify failed");
}

TEST(client_needs_a_name_to_verify)
{
    mpconn_tls_config *cc = client_cfg();
    mpconn_tls *c = (mpconn_tls *)1;
    CHECK_INT(mpconn_tls_new(&c, cc, NULL), -EINVAL);
    CHECK(c == NULL);
    mpconn_tls_config *sc = server_cfg("server");
    CHECK_INT(mpconn_tls_new(&c, sc, "localhost"), -EINVAL);
    mpconn_tls_config_free(cc);
    mpconn_tls_config_free(sc);
}

TEST(insecure_no_verify_accepts_anything)
{
    mpconn_tls_config *cc;
    CHECK_INT(mpconn_tls_config_new(&cc, MPCONN_TLS_CLIENT), 0);
    CHECK_INT(mpconn_tls_config_set_insecure_no_verify(cc, 1), 0);
    mpconn_tls_config *sc = server_cfg("self");
    CHECK_INT(mpconn_tls_config_set_insecure_no_verify(sc, 1), -EINVAL);
    mpconn_tls *c, *s;
    connect_pair(cc, "wrong.example", sc, &c, &s);
    CHECK_INT(mpconn_tls_peer_verified(c), 0);
    CHECK_STR(mpconn_tls_server_name(s), "wrong.example"); /* SNI still sent */
    CHECK_STR(mpconn_tls_peer_subject(c), "CN=localhost");
    every_split(c, s, 50);
    mpconn_tls_free(c);
    mpconn_tls_free(s);
    /* and without any name */
    connect_pair(cc, NULL, sc, &c, &s);
    CHECK(mpconn_tls_server_name(s) == NULL);
    free_pair(c, s, cc, sc);
}

static mpconn_tls_config *mtls_server(int mode)
{
    mpconn_tls_config *sc = server_cfg("server");
    CHECK_INT(mpconn_tls_config_set_ca_file(sc, cert("ca.pem")), 0);
    CHECK_INT(mpconn_tls_config_set_verify_client(sc, mode), 0);
    return sc;
}

TEST(client_cert_required_and_missing_tls13)
{
    mpconn_tls_config *cc = client_cfg(), *sc = mtls_server(MPCONN_TLS_VERIFY_REQUIRED);
    mpconn_tls *c, *s;
    new_pair(cc, "localhost", sc, &c, &s);
    int rc, rs;
    handshake(c, s, &rc, &rs);
    /* TLS 1.3: the client is done before the server has looked */
    CHECK_INT(rc, 0);
    CHECK_INT(rs, MPCONN_ERR_TLSVERIFY);
    CHECK(contains(mpconn_tls_errmsg(s), "the client sent no certificate"));
    unsigned char b[16];
    size_t n;
    CHECK_INT(mpconn_tls_read(c, b, sizeof b, &n), MPCONN_ERR_TLSVERIFY);
    CHECK(contains(mpconn_tls_errmsg(c), "requires a client certificate and none was sent"));
    free_pair(c, s, cc, sc);
}

TEST(client_cert_required_and_missing_tls12)
{
    mpconn_tls_config *cc = client_cfg(), *sc = mtls_server(MPCONN_TLS_VERIFY_REQUIRED);
    set_versions(cc, MPCONN_TLS_1_2, MPCONN_TLS_1_2);
    mpconn_tls *c, *s;
    new_pair(cc, "localhost", sc, &c, &s);
    int rc, rs;
    handshake(c, s, &rc, &rs);
    CHECK_INT(rs, MPCONN_ERR_TLSVERIFY);
    CHECK(contains(mpconn_tls_errmsg(s), "the client sent no certificate"));
    CHECK_INT(rc, MPCONN_ERR_TLS);
    CHECK(contains(mpconn_tls_errmsg(c), "alert"));
    free_pair(c, s, cc, sc);
}

TEST(client_cert_optional_and_missing)
{
    mpconn_tls_config *cc = client_cfg(), *sc = mtls_server(MPCONN_TLS_VERIFY_OPTIONAL);
    mpconn_tls *c, *s;
    connect_pair(cc, "localhost", sc, &c, &s);
    every_split(c, s, 20);
    CHECK_INT(mpconn_tls_peer_verified(s), 0);
    free_pair(c, s, cc, sc);
}

TEST(mutual_tls)
{
    mpconn_tls_config *cc = client_cfg(), *sc = mtls_server(MPCONN_TLS_VERIFY_REQUIRED);
    CHECK_INT(mpconn_tls_config_set_cert_file(cc, cert("client.pem"), cert("client.key")), 0);
    mpconn_tls *c, *s;
    connect_pair(cc, "localhost", sc, &c, &s);
    every_split(c, s, 30);
    CHECK_INT(mpconn_tls_peer_verified(s), 1);
    CHECK_INT(mpconn_tls_peer_verified(c), 1);
    CHECK_STR(mpconn_tls_peer_subject(s), "CN=client");
    free_pair(c, s, cc, sc);
}

TEST(client_cert_untrusted)
{
    mpconn_tls_config *cc = client_cfg(), *sc = mtls_server(MPCONN_TLS_VERIFY_OPTIONAL);
    CHECK_INT(mpconn_tls_config_set_cert_file(cc, cert("rogueclient.pem"), cert("rogueclient.key")),
              0);
    mpconn_tls *c, *s;
    new_pair(cc, "localhost", sc, &c, &s);
    int rc, rs;
    handshake(c, s, &rc, &rs);
    CHECK_INT(rs, MPCONN_ERR_TLSVERIFY);
    CHECK(contains(mpconn_tls_errmsg(s), "unable to get local issuer certificate (depth 0, "
                                         "subject \"CN=client\")"));
    unsigned char b[16];
    size_t n;
    if (rc == 0)
        rc = mpconn_tls_read(c, b, sizeof b, &n);
    CHECK_INT(rc, MPCONN_ERR_TLSVERIFY);
    CHECK(contains(mpconn_tls_errmsg(c), "the peer refused this side's certificate"));
    free_pair(c, s, cc, sc);
}

TEST(min_version_tls13_against_tls12_peer)
{
    mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server");
    set_versions(cc, MPCONN_TLS_1_2, MPCONN_TLS_1_2);
    CHECK_INT(mpconn_tls_config_set_min_version(sc, MPCONN_TLS_1_3), 0);
    mpconn_tls *c, *s;
    new_pair(cc, "localhost", sc, &c, &s);
    int rc, rs;
    handshake(c, s, &rc, &rs);
    CHECK_INT(rs, MPCONN_ERR_TLS);
    CHECK(contains(mpconn_tls_errmsg(s), "no TLS version in common with the peer"));
    CHECK(contains(mpconn_tls_errmsg(s), "this side accepts TLSv1.3 to TLSv1.3"));
    CHECK_INT(rc, MPCONN_ERR_TLS);
    CHECK(contains(mpconn_tls_errmsg(c), "no TLS version in common with the peer (alert"));
    CHECK(contains(mpconn_tls_errmsg(c), "this side accepts TLSv1.2 to TLSv1.2"));
    free_pair(c, s, cc, sc);
}

/* Bytes between a plain libssl client (which would renegotiate) and an
 * engine. */
static void raw_move(SSL *raw, mpconn_tls *t)
{
    unsigned char buf[4096];
    size_t n;
    int k;
    while ((k = BIO_read(SSL_get_wbio(raw), buf, sizeof buf)) > 0)
        CHECK_INT(mpconn_tls_feed(t, buf, (size_t)k), 0);
    while (mpconn_tls_outgoing(t) > 0) {
        CHECK_INT(mpconn_tls_pull(t, buf, sizeof buf, &n), 0);
        CHECK_INT(BIO_write(SSL_get_rbio(raw), buf, (int)n), (int)n);
    }
}

/* A plain libssl peer of the other role, at TLS 1.2 (1.3 has no
 * renegotiation), asks to renegotiate after the handshake: the engine must
 * refuse, which the peer learns as SSL_R_NO_RENEGOTIATION. */
static void refuses_renegotiation(int engine_role)
{
    int raw_server = engine_role == MPCONN_TLS_CLIENT;
    SSL_CTX *ctx = SSL_CTX_new(raw_server ? TLS_server_method() : TLS_client_method());
    CHECK(ctx != NULL);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    if (raw_server) {
        CHECK_INT(SSL_CTX_use_certificate_chain_file(ctx, cert("server_ec.pem")), 1);
        CHECK_INT(SSL_CTX_use_PrivateKey_file(ctx, cert("server_ec.key"), SSL_FILETYPE_PEM), 1);
    }
    SSL *raw = SSL_new(ctx);
    SSL_set_bio(raw, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    if (raw_server)
        SSL_set_accept_state(raw);
    else
        SSL_set_connect_state(raw);
    mpconn_tls_config *cfg = raw_server ? client_cfg() : server_cfg("server_ec");
    mpconn_tls *t;
    CHECK_INT(mpconn_tls_new(&t, cfg, raw_server ? "localhost" : NULL), 0);
    int rr = -1, rt = WANT_READ;
    for (int i = 0; i < 20 && (rr != 1 || rt != 0); i++) {
        if (rt == WANT_READ)
            rt = mpconn_tls_handshake(t);
        raw_move(raw, t);
        rr = SSL_do_handshake(raw);
        raw_move(raw, t);
    }
    CHECK_INT(rr, 1);
    CHECK_INT(rt, 0);
    CHECK_INT(SSL_renegotiate(raw), 1);
    SSL_do_handshake(raw); /* a client waits for the answer; a server has asked */
    ERR_clear_error();
    raw_move(raw, t);
    unsigned char b[16];
    size_t n;
    CHECK_INT(mpconn_tls_read(t, b, sizeof b, &n), WANT_READ); /* answers with an alert */
    raw_move(raw, t);
    CHECK(SSL_read(raw, b, sizeof b) <= 0);
    CHECK_INT(ERR_GET_REASON(ERR_peek_error()), SSL_R_NO_RENEGOTIATION);
    ERR_clear_error();
    SSL_free(raw);
    SSL_CTX_free(ctx);
    mpconn_tls_free(t);
    mpconn_tls_config_free(cfg);
}

TEST(no_renegotiation_server)
{
    refuses_renegotiation(MPCONN_TLS_SERVER);
}

TEST(no_renegotiation_client)
{
    refuses_renegotiation(MPCONN_TLS_CLIENT);
}

TEST(garbage_from_the_peer)
{
    mpconn_tls_config *sc = server_cfg("server");
    mpconn_tls *s;
    CHECK_INT(mpconn_tls_new(&s, sc, NULL), 0);
    CHECK_INT(mpconn_tls_feed(s, "GET / HTTP/1.1\r\n\r\n", 18), 0);
    CHECK_INT(mpconn_tls_handshake(s), MPCONN_ERR_TLS);
    CHECK(contains(mpconn_tls_errmsg(s), "TLS error: "));
    mpconn_tls_free(s);
    mpconn_tls_config_free(sc);
}

/* ---------------------------------------------------- sessions, shutdown */

static void resume(int version)
{
    mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server_ec");
    set_versions(cc, version, version);
    const char *names[] = {"localhost", "localhost", "127.0.0.1", "localhost"};
    int want[] = {0, 1, 0, 1};
    for (int i = 0; i < 4; i++) {
        mpconn_tls *c, *s;
        connect_pair(cc, names[i], sc, &c, &s);
        CHECK_INT(mpconn_tls_session_reused(c), want[i]);
        CHECK_INT(mpconn_tls_session_reused(s), want[i]);
        CHECK_INT(mpconn_tls_peer_verified(c), 1);
        CHECK_STR(mpconn_tls_peer_subject(c), "CN=localhost");
        /* the client reads, which takes in TLS 1.3's tickets */
        every_split(s, c, 5);
        mpconn_tls_free(c);
        mpconn_tls_free(s);
    }
    /* a connection that fails takes its session with it */
    mpconn_tls *c, *s;
    connect_pair(cc, "localhost", sc, &c, &s);
    CHECK_INT(mpconn_tls_session_reused(c), 1);
    every_split(s, c, 5);
    unsigned char junk[64], b[16];
    size_t n;
    fill(junk, sizeof junk, 1);
    junk[0] = 23, junk[1] = 3, junk[2] = 3, junk[3] = 0, junk[4] = 59; /* a forged record */
    CHECK_INT(mpconn_tls_feed(c, junk, sizeof junk), 0);
    CHECK_INT(mpconn_tls_read(c, b, sizeof b, &n), MPCONN_ERR_TLS);
    mpconn_tls_free(c);
    mpconn_tls_free(s);
    connect_pair(cc, "localhost", sc, &c, &s);
    CHECK_INT(mpconn_tls_session_reused(c), 0);
    free_pair(c, s, cc, sc);
}

TEST(session_resumption_tls13)
{
    resume(MPCONN_TLS_1_3);
}

TEST(session_resumption_tls12)
{
    resume(MPCONN_TLS_1_2);
}

/* A TLS 1.3 ticket is offered once: a connection that resumed with it and
 * read nothing (so took in no new ticket) leaves none for the next. */
TEST(session_ticket_used_once)
{
    mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server_ec");
    int want[] = {0, 1, 0};
    for (int i = 0; i < 3; i++) {
        mpconn_tls *c, *s;
        connect_pair(cc, "localhost", sc, &c, &s);
        CHECK_INT(mpconn_tls_session_reused(c), want[i]);
        if (i == 0)
            every_split(s, c, 5);
        mpconn_tls_free(c);
        mpconn_tls_free(s);
    }
    mpconn_tls_config_free(cc);
    mpconn_tls_config_free(sc);
}

TEST(session_resumption_with_client_certificates)
{
    mpconn_tls_config *cc = client_cfg(), *sc = mtls_server(MPCONN_TLS_VERIFY_REQUIRED);
    CHECK_INT(mpconn_tls_config_set_cert_file(cc, cert("client.pem"), cert("client.key")), 0);
    for (int i = 0; i < 2; i++) {
        mpconn_tls *c, *s;
        connect_pair(cc, "localhost", sc, &c, &s);
        every_split(s, c, 5);
        CHECK_INT(mpconn_tls_session_reused(c), i);
        CHECK_INT(mpconn_tls_peer_verified(s), 1);
        mpconn_tls_free(c);
        mpconn_tls_free(s);
    }
    mpconn_tls_config_free(cc);
    mpconn_tls_config_free(sc);
}

TEST(close_notify_both_ways_and_unwrap)
{
    mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server_ec");
    mpconn_tls *c, *s;
    connect_pair(cc, "localhost", sc, &c, &s);
    size_t n;
    unsigned char buf[4096];
    CHECK_INT(mpconn_tls_unwrap(c, buf, sizeof buf, &n), -EINVAL);
    /* the server still has data on its way when the client closes */
    CHECK_INT(mpconn_tls_write(s, "last words", 10, &n), 0);
    CHECK_INT(mpconn_tls_shutdown(c), WANT_READ);
    CHECK(mpconn_tls_outgoing(c) > 0); /* the close_notify */
    CHECK_INT(mpconn_tls_write(c, "x", 1, &n), -EPIPE);
    move(c, s, 4096);
    /* the server reads to the end, then closes its side */
    size_t have = 0;
    CHECK_INT(drain(s, buf, sizeof buf, &have, 100), MPCONN_ERR_EOF);
    CHECK_INT(have, 0);
    CHECK_INT(mpconn_tls_read(s, buf, sizeof buf, &n), MPCONN_ERR_EOF); /* again */
    CHECK_INT(mpconn_tls_shutdown(s), 0);
    /* its close_notify, then the clear stream that follows it */
    unsigned char wire[8192];
    size_t len;
    CHECK_INT(mpconn_tls_pull(s, wire, sizeof wire, &len), 0);
    CHECK(len > 0 && len < sizeof wire - 20);
    memcpy(wire + len, "clear text after TLS", 20);
    CHECK_INT(mpconn_tls_feed(c, wire, len + 20), 0);
    /* the data before the close_notify is not lost to the shutdown */
    CHECK_INT(mpconn_tls_shutdown(c), WANT_READ);
    have = 0;
    CHECK_INT(drain(c, buf, sizeof buf, &have, 100), MPCONN_ERR_EOF);
    CHECK_INT(have, 10);
    CHECK_MEM(buf, "last words", 10);
    CHECK_INT(mpconn_tls_shutdown(c), 0);
    CHECK_INT(mpconn_tls_shutdown(c), 0);
    CHECK_INT(mpconn_tls_unwrap(c, buf, sizeof buf, &n), 0);
    CHECK_INT(n, 20);
    CHECK_MEM(buf, "clear text after TLS", 20);
    CHECK_INT(mpconn_tls_unwrap(s, buf, sizeof buf, &n), 0);
    CHECK_INT(n, 0);
    free_pair(c, s, cc, sc);
}

TEST(shutdown_fed_in_pieces)
{
    mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server_ec");
    mpconn_tls *c, *s;
    connect_pair(cc, "localhost", sc, &c, &s);
    every_split(s, c, 3); /* tickets read */
    CHECK_INT(mpconn_tls_shutdown(s), WANT_READ);
    move(s, c, 4096);
    CHECK_INT(mpconn_tls_shutdown(c), 0); /* the server's close_notify was already in */
    int r = WANT_READ;
    for (int i = 0; i < 100 && r == WANT_READ; i++) {
        CHECK_INT(mpconn_tls_outgoing(c) > 0 || i > 0, 1);
        move(c, s, 1);
        r = mpconn_tls_shutdown(s);
    }
    CHECK_INT(r, 0);
    free_pair(c, s, cc, sc);
}

TEST(truncation_detected)
{
    mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server_ec");
    mpconn_tls *c, *s;
    connect_pair(cc, "localhost", sc, &c, &s);
    size_t n, have = 0;
    unsigned char buf[256];
    CHECK_INT(mpconn_tls_write(s, "partial", 7, &n), 0);
    move(s, c, 4096);
    CHECK_INT(mpconn_tls_feed_eof(c), 0); /* the stream ends: no close_notify */
    CHECK_INT(mpconn_tls_readable(c), 1);
    CHECK_INT(mpconn_tls_read(c, buf, sizeof buf, &n), 0);
    CHECK_INT(n, 7);
    CHECK_INT(mpconn_tls_readable(c), 1); /* the end is still to be told */
    CHECK_INT(mpconn_tls_read(c, buf, sizeof buf, &n), MPCONN_ERR_TRUNCATED);
    CHECK(contains(mpconn_tls_errmsg(c), "without close_notify"));
    CHECK_INT(mpconn_tls_read(c, buf, sizeof buf, &n), MPCONN_ERR_TRUNCATED);
    CHECK_INT(mpconn_tls_feed(c, "x", 1), -EINVAL);
    mpconn_tls_free(c);
    mpconn_tls_free(s);

    /* with close_notify first, the same end is a clean EOF */
    connect_pair(cc, "localhost", sc, &c, &s);
    CHECK_INT(mpconn_tls_shutdown(s), WANT_READ);
    move(s, c, 4096);
    CHECK_INT(mpconn_tls_feed_eof(c), 0);
    CHECK_INT(drain(c, buf, sizeof buf, &have, 100), MPCONN_ERR_EOF);
    mpconn_tls_free(c);
    mpconn_tls_free(s);

    /* an end inside the handshake */
    new_pair(cc, "localhost", sc, &c, &s);
    CHECK_INT(mpconn_tls_handshake(c), WANT_READ);
    CHECK_INT(mpconn_tls_feed_eof(c), 0);
    CHECK_INT(mpconn_tls_handshake(c), MPCONN_ERR_TLS);
    CHECK(contains(mpconn_tls_errmsg(c), "closed the stream during the TLS handshake"));
    free_pair(c, s, cc, sc);
}

/* --------------------------------------------------------------- config */

static int passphrase(char *buf, size_t cap, void *data)
{
    const char *p = data;
    size_t n = strlen(p);
    if (n > cap)
        return -1;
    memcpy(buf, p, n);
    return (int)n;
}

TEST(config_encrypted_key)
{
    mpconn_tls_config *sc;
    CHECK_INT(mpconn_tls_config_new(&sc, MPCONN_TLS_SERVER), 0);
    CHECK_INT(mpconn_tls_config_set_cert_file(sc, cert("server.pem"), cert("server-enc.key")),
              MPCONN_ERR_TLSCONFIG);
    CHECK(contains(mpconn_tls_config_errmsg(sc), "needs a passphrase callback"));
    CHECK_INT(mpconn_tls_config_set_key_passphrase_cb(sc, passphrase, "wrong"), 0);
    CHECK_INT(mpconn_tls_config_set_cert_file(sc, cert("server.pem"), cert("server-enc.key")),
              MPCONN_ERR_TLSCONFIG);
    CHECK(contains(mpconn_tls_config_errmsg(sc), "cannot read the private key in "));
    CHECK_INT(mpconn_tls_config_set_key_passphrase_cb(sc, passphrase, "sesame"), 0);
    CHECK_INT(mpconn_tls_config_set_cert_file(sc, cert("server.pem"), cert("server-enc.key")), 0);
    mpconn_tls_config *cc = client_cfg();
    mpconn_tls *c, *s;
    connect_pair(cc, "localhost", sc, &c, &s);
    free_pair(c, s, cc, sc);
}

TEST(config_cert_in_memory_and_combined_file)
{
    size_t plen, klen;
    char *pem = testlib_read_file(cert("server_ec.pem"), &plen);
    char *key = testlib_read_file(cert("server_ec.key"), &klen);
    mpconn_tls_config *sc;
    CHECK_INT(mpconn_tls_config_new(&sc, MPCONN_TLS_SERVER), 0);
    CHECK_INT(mpconn_tls_config_set_cert_mem(sc, pem, plen, key, klen), 0);
    memset(key, 0, klen); /* copied: the caller's buffers are its own */
    free(key);
    free(pem);
    mpconn_tls_config *cc = client_cfg();
    mpconn_tls *c, *s;
    connect_pair(cc, "localhost", sc, &c, &s);
    free_pair(c, s, cc, sc);

    CHECK_INT(mpconn_tls_config_new(&sc, MPCONN_TLS_SERVER), 0);
    CHECK_INT(mpconn_tls_config_set_cert_file(sc, cert("server-both.pem"), NULL), 0);
    cc = client_cfg();
    connect_pair(cc, "localhost", sc, &c, &s);
    free_pair(c, s, cc, sc);
}

TEST(config_bad_material)
{
    mpconn_tls_config *sc;
    CHECK_INT(mpconn_tls_config_new(&sc, MPCONN_TLS_SERVER), 0);
    CHECK_INT(mpconn_tls_config_set_cert_file(sc, cert("server.pem"), cert("client.key")),
              MPCONN_ERR_TLSCONFIG);
    CHECK(contains(mpconn_tls_config_errmsg(sc), "does not belong to the certificate"));
    CHECK_INT(mpconn_tls_config_set_cert_file(sc, cert("nonexistent.pem"), NULL),
              MPCONN_ERR_TLSCONFIG);
    CHECK(contains(mpconn_tls_config_errmsg(sc), "No such file or directory"));
    CHECK_INT(mpconn_tls_config_set_cert_file(sc, cert("server.ext"), NULL), MPCONN_ERR_TLSCONFIG);
    CHECK(contains(mpconn_tls_config_errmsg(sc), "no PEM certificate in "));
    CHECK_INT(mpconn_tls_config_set_cert_file(sc, cert("server.pem"), NULL), MPCONN_ERR_TLSCONFIG);
    CHECK(contains(mpconn_tls_config_errmsg(sc), "cannot read the private key"));
    CHECK_INT(mpconn_tls_config_set_ca_file(sc, cert("server.key")), MPCONN_ERR_TLSCONFIG);
    CHECK(contains(mpconn_tls_config_errmsg(sc), "no PEM certificate in the CA file"));
    CHECK_INT(mpconn_tls_config_set_ca_dir(sc, cert("ca.pem")), MPCONN_ERR_TLSCONFIG);
    CHECK_INT(mpconn_tls_config_set_ciphers(sc, "NOSUCHCIPHER", NULL), MPCONN_ERR_TLSCONFIG);
    CHECK(contains(mpconn_tls_config_errmsg(sc), "selects nothing"));
    CHECK_INT(mpconn_tls_config_set_ciphers(sc, NULL, "TLS_NO_SUCH"), MPCONN_ERR_TLSCONFIG);
    CHECK_INT(mpconn_tls_config_set_min_version(sc, 0x0301), -EINVAL); /* TLS 1.0 */
    CHECK_INT(mpconn_tls_config_set_verify_client(sc, 7), -EINVAL);
    mpconn_tls_config_free(sc);
    mpconn_tls_config *cc;
    CHECK_INT(mpconn_tls_config_new(&cc, MPCONN_TLS_CLIENT), 0);
    CHECK_INT(mpconn_tls_config_set_verify_client(cc, MPCONN_TLS_VERIFY_REQUIRED), -EINVAL);
    mpconn_tls_config_free(cc);
    CHECK_INT(mpconn_tls_config_new(&cc, 3), -EINVAL);
    CHECK(cc == NULL);
    mpconn_tls_config_free(NULL);
    mpconn_tls_free(NULL);
}

TEST(config_unusable_at_the_first_engine)
{
    mpconn_tls_config *sc;
    mpconn_tls *s = (mpconn_tls *)1;
    CHECK_INT(mpconn_tls_config_new(&sc, MPCONN_TLS_SERVER), 0);
    CHECK_INT(mpconn_tls_new(&s, sc, NULL), MPCONN_ERR_TLSCONFIG);
    CHECK(s == NULL);
    CHECK(contains(mpconn_tls_config_errmsg(sc), "a server needs its certificate and key"));
    /* still open to setters: mend it */
    CHECK_INT(mpconn_tls_config_set_cert_file(sc, cert("server.pem"), cert("server.key")), 0);
    CHECK_INT(mpconn_tls_config_set_verify_client(sc, MPCONN_TLS_VERIFY_REQUIRED), 0);
    CHECK_INT(mpconn_tls_new(&s, sc, NULL), MPCONN_ERR_TLSCONFIG);
    CHECK(contains(mpconn_tls_config_errmsg(sc), "client certificates need trust anchors"));
    CHECK_INT(mpconn_tls_config_set_ca_file(sc, cert("ca.pem")), 0);
    CHECK_INT(mpconn_tls_new(&s, sc, NULL), 0);
    CHECK_INT(mpconn_tls_config_set_ca_file(sc, cert("ca.pem")), -EBUSY);
    mpconn_tls_free(s);
    mpconn_tls_config_free(sc);
}

TEST(config_ca_dir_and_ciphers)
{
    mpconn_tls_config *cc, *sc = server_cfg("server");
    CHECK_INT(mpconn_tls_config_new(&cc, MPCONN_TLS_CLIENT), 0);
    CHECK_INT(mpconn_tls_config_set_ca_dir(cc, cert("cadir")), 0);
    set_versions(cc, MPCONN_TLS_1_2, MPCONN_TLS_1_2);
    CHECK_INT(mpconn_tls_config_set_ciphers(cc, "ECDHE-RSA-CHACHA20-POLY1305", NULL), 0);
    mpconn_tls *c, *s;
    connect_pair(cc, "localhost", sc, &c, &s);
    CHECK_STR(mpconn_tls_cipher(c, NULL), "ECDHE-RSA-CHACHA20-POLY1305");
    free_pair(c, s, cc, sc);

    cc = client_cfg();
    sc = server_cfg("server");
    CHECK_INT(mpconn_tls_config_set_ciphers(sc, NULL, "TLS_CHACHA20_POLY1305_SHA256"), 0);
    connect_pair(cc, "localhost", sc, &c, &s);
    CHECK_STR(mpconn_tls_cipher(s, NULL), "TLS_CHACHA20_POLY1305_SHA256");
    free_pair(c, s, cc, sc);
}

TEST(config_frozen_once_used_and_outlives_its_free)
{
    mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server_ec");
    mpconn_tls *c, *s;
    new_pair(cc, "localhost", sc, &c, &s);
    CHECK_INT(mpconn_tls_config_set_min_version(cc, MPCONN_TLS_1_3), -EBUSY);
    CHECK(contains(mpconn_tls_config_errmsg(cc), "in use"));
    CHECK_INT(mpconn_tls_config_set_cert_file(sc, cert("server.pem"), cert("server.key")), -EBUSY);
    /* the engines hold references */
    mpconn_tls_config_free(cc);
    mpconn_tls_config_free(sc);
    int rc, rs;
    handshake(c, s, &rc, &rs);
    CHECK_INT(rc, 0);
    CHECK_INT(rs, 0);
    every_split(c, s, 10);
    mpconn_tls_free(c);
    mpconn_tls_free(s);
}

TEST(keylog_file)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/keylog-%ld.txt", cert_dir(), (long)getpid());
    unlink(path);
    mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server_ec");
    CHECK_INT(mpconn_tls_config_set_keylog_file(cc, path), 0);
    mpconn_tls *c, *s;
    connect_pair(cc, "localhost", sc, &c, &s);
    free_pair(c, s, cc, sc);
    struct stat st;
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    size_t len;
    char *text = testlib_read_file(path, &len);
    CHECK(contains(text, "CLIENT_HANDSHAKE_TRAFFIC_SECRET "));
    CHECK(contains(text, "\nCLIENT_TRAFFIC_SECRET_0 "));
    CHECK(text[len - 1] == '\n');
    free(text);
    unlink(path);
    /* none unless asked */
    cc = client_cfg();
    sc = server_cfg("server_ec");
    connect_pair(cc, "localhost", sc, &c, &s);
    free_pair(c, s, cc, sc);
    CHECK(stat(path, &st) != 0);
}

struct shared {
    mpconn_tls_config *cc, *sc;
    int reused;
};

static void *connect_often(void *arg)
{
    struct shared *sh = arg;
    for (int i = 0; i < 10; i++) {
        mpconn_tls *c, *s;
        connect_pair(sh->cc, i % 2 ? "localhost" : "127.0.0.1", sh->sc, &c, &s);
        every_split(s, c, 2);
        __atomic_add_fetch(&sh->reused, mpconn_tls_session_reused(c), __ATOMIC_RELAXED);
        mpconn_tls_free(c);
        mpconn_tls_free(s);
    }
    return NULL;
}

/* One config of each side shared by engines in four threads: the session
 * store and the reference counts hold. */
TEST(shared_config_across_threads)
{
    struct shared sh = {client_cfg(), server_cfg("server_ec"), 0};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        CHECK_INT(pthread_create(&th[i], NULL, connect_often, &sh), 0);
    for (int i = 0; i < 4; i++)
        CHECK_INT(pthread_join(th[i], NULL), 0);
    CHECK(sh.reused > 0);
    mpconn_tls_config_free(sh.cc);
    mpconn_tls_config_free(sh.sc);
}

/* The first flights of both roles, as the fuzz target's seeds: written to
 * $MPCONN_FUZZ_SEEDS when it is set (byte 0 the role the fuzzer plays,
 * byte 1 its feed step; see fuzz_tls.c), and checked to be TLS records in any case. */
TEST(fuzz_seeds)
{
    mpconn_tls_config *cc = client_cfg(), *sc = server_cfg("server_ec");
    mpconn_tls *c, *s;
    new_pair(cc, "localhost", sc, &c, &s);
    unsigned char hello[8192], reply[16384];
    size_t hlen, rlen;
    CHECK_INT(mpconn_tls_handshake(c), WANT_READ);
    CHECK_INT(mpconn_tls_pull(c, hello + 2, sizeof hello - 2, &hlen), 0);
    CHECK_INT(mpconn_tls_feed(s, hello + 2, hlen), 0);
    CHECK_INT(mpconn_tls_handshake(s), WANT_READ);
    CHECK_INT(mpconn_tls_pull(s, reply + 2, sizeof reply - 2, &rlen), 0);
    CHECK(hlen > 5 && hello[2] == 22); /* handshake record */
    CHECK(rlen > 5 && reply[2] == 22);
    const char *dir = getenv("MPCONN_FUZZ_SEEDS");
    if (dir) {
        struct {
            const char *name;
            unsigned char *buf;
            size_t len;
            unsigned char role, step;
        } seeds[] = {{"client_hello", hello, hlen, 0, 255},
                     {"client_hello_split", hello, hlen, 0, 7},
                     {"server_flight", reply, rlen, 1, 255},
                     {"server_flight_split", reply, rlen, 1, 5},
                     {"server_flight_verifying", reply, rlen, 2, 64}};
        for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, seeds[i].name);
            seeds[i].buf[0] = seeds[i].role;
            seeds[i].buf[1] = seeds[i].step;
            FILE *f = fopen(path, "wb");
            CHECK(f != NULL);
            CHECK_INT(fwrite(seeds[i].buf, 1, seeds[i].len + 2, f), seeds[i].len + 2);
            fclose(f);
        }
    }
    free_pair(c, s, cc, sc);
}

/* -------------------------------------------------- CPython's ssl module */

static const char py_peer[] = "import socket, ssl, sys\n"
                              "role, fd, d = sys.argv[1], int(sys.argv[2]), sys.argv[3]\n"
                              "sock = socket.socket(fileno=fd)\n"
                              "sock.settimeout(20)\n"
                              "if role == 'server':\n"
                              "    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
                              "    ctx.load_cert_chain(d + '/server.pem', d + '/server.key')\n"
                              "    s = ctx.wrap_socket(sock, server_side=True)\n"
                              "else:\n"
                              "    ctx = ssl.create_default_context(cafile=d + '/ca.pem')\n"
                              "    s = ctx.wrap_socket(sock, server_hostname='localhost')\n"
                              "    s.sendall(b'ping from python!')\n"
                              "data = b''\n"
                              "while not data.endswith(b'!'):\n"
                              "    chunk = s.recv(65536)\n"
                              "    if not chunk:\n"
                              "        sys.exit('early end: %r' % data)\n"
                              "    data += chunk\n"
                              "if role == 'server':\n"
                              "    s.sendall(data.upper() + s.version().encode() + b'!')\n"
                              "else:\n"
                              "    assert data == b'PING FROM PYTHON!', data\n"
                              "s.unwrap()\n"
                              "sock.close()\n";

static void need_python_ssl(void)
{
    if (system("python3 -c 'import ssl' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "skipped: python3 with ssl is not available\n");
        exit(SKIP);
    }
}

static pid_t spawn_python(const char *role, int fd, int other)
{
    const char *dir = cert_dir();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(other);
        fcntl(fd, F_SETFD, 0);
        char fdtext[16];
        snprintf(fdtext, sizeof fdtext, "%d", fd);
        execlp("python3", "python3", "-c", py_peer, role, fdtext, dir, (char *)NULL);
        _exit(127);
    }
    close(fd);
    return pid;
}

static void wait_python(pid_t pid)
{
    int status = 0;
    for (int i = 0; i < 400; i++) { /* 20 s at most */
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            CHECK(WIFEXITED(status));
            CHECK_INT(WEXITSTATUS(status), 0);
            return;
        }
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    CHECK(!"python peer did not finish");
}

/* Sends all waiting ciphertext over fd. */
static void flush_fd(mpconn_tls *t, int fd)
{
    unsigned char buf[16384];
    size_t n;
    while (mpconn_tls_outgoing(t) > 0) {
        CHECK_INT(mpconn_tls_pull(t, buf, sizeof buf, &n), 0);
        for (size_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, n - off);
            CHECK(w > 0);
            off += (size_t)w;
        }
    }
}

/* Waits (10 s at most) for bytes from fd and feeds them. */
static void fill_fd(mpconn_tls *t, int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    CHECK_INT(poll(&p, 1, 10000), 1);
    unsigned char buf[16384];
    ssize_t r = read(fd, buf, sizeof buf);
    CHECK(r >= 0);
    if (r == 0)
        CHECK_INT(mpconn_tls_feed_eof(t), 0);
    else
        CHECK_INT(mpconn_tls_feed(t, buf, (size_t)r), 0);
}

/* Runs step (a handshake, read or shutdown) over fd until it is not
 * "want read". */
static int blocking(mpconn_tls *t, int fd, int (*step)(mpconn_tls *, void *), void *arg)
{
    for (int i = 0; i < 1000; i++) {
        int r = step(t, arg);
        flush_fd(t, fd);
        if (r != WANT_READ)
            return r;
        fill_fd(t, fd);
    }
    CHECK(!"no progress over the socket");
    return -1;
}

static int step_handshake(mpconn_tls *t, void *arg)
{
    (void)arg;
    return mpconn_tls_handshake(t);
}

static int step_shutdown(mpconn_tls *t, void *arg)
{
    (void)arg;
    return mpconn_tls_shutdown(t);
}

struct readbuf {
    char data[256];
    size_t len;
};

/* Reads until the message ends with '!' (0), or the end (MPCONN_ERR_EOF). */
static int step_read(mpconn_tls *t, void *arg)
{
    struct readbuf *b = arg;
    for (;;) {
        if (b->len && b->data[b->len - 1] == '!')
            return 0;
        size_t n;
        CHECK(b->len < sizeof b->data - 1);
        int r = mpconn_tls_read(t, b->data + b->len, sizeof b->data - 1 - b->len, &n);
        if (r != 0)
            return r;
        b->len += n;
        b->data[b->len] = 0;
    }
}

TEST(python_server_engine_client)
{
    need_python_ssl();
    int sv[2];
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = spawn_python("server", sv[1], sv[0]);
    int fd = sv[0];
    mpconn_tls_config *cc = client_cfg();
    mpconn_tls *c;
    CHECK_INT(mpconn_tls_new(&c, cc, "localhost"), 0);
    int r = blocking(c, fd, step_handshake, NULL);
    if (r != 0)
        fprintf(stderr, "%s\n", mpconn_tls_errmsg(c));
    CHECK_INT(r, 0);
    CHECK_INT(mpconn_tls_peer_verified(c), 1);
    size_t n;
    CHECK_INT(mpconn_tls_write(c, "hello from c!", 13, &n), 0);
    CHECK_INT(n, 13);
    struct readbuf b = {{0}, 0};
    CHECK_INT(blocking(c, fd, step_read, &b), 0);
    char want[64];
    snprintf(want, sizeof want, "HELLO FROM C!%s!", mpconn_tls_version(c));
    CHECK_STR(b.data, want);
    /* python's unwrap sends close_notify and waits for ours */
    b.len = 0;
    CHECK_INT(blocking(c, fd, step_read, &b), MPCONN_ERR_EOF);
    CHECK_INT(blocking(c, fd, step_shutdown, NULL), 0);
    wait_python(pid);
    close(fd);
    mpconn_tls_free(c);
    mpconn_tls_config_free(cc);
}

TEST(python_client_engine_server)
{
    need_python_ssl();
    int sv[2];
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = spawn_python("client", sv[1], sv[0]);
    int fd = sv[0];
    mpconn_tls_config *sc = server_cfg("server");
    mpconn_tls *s;
    CHECK_INT(mpconn_tls_new(&s, sc, NULL), 0);
    CHECK_INT(blocking(s, fd, step_handshake, NULL), 0);
    struct readbuf b = {{0}, 0};
    CHECK_INT(blocking(s, fd, step_read, &b), 0);
    CHECK_STR(b.data, "ping from python!");
    size_t n;
    CHECK_INT(mpconn_tls_write(s, "PING FROM PYTHON!", 17, &n), 0);
    flush_fd(s, fd);
    int r = blocking(s, fd, step_shutdown, NULL);
    if (r != 0)
        fprintf(stderr, "%s\n", mpconn_tls_errmsg(s));
    CHECK_INT(r, 0);
    wait_python(pid);
    close(fd);
    mpconn_tls_free(s);
    mpconn_tls_config_free(sc);
}

TESTLIB_MAIN
