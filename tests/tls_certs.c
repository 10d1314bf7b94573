/* The TLS tests' certificate set: one shell script for the openssl
 * command, run once a day into the build tree by whichever test gets there
 * first. */
#include "tls_certs.h"
#include "testlib.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#define SKIP 77

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
const char *cert_dir(void)
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
const char *cert(const char *file)
{
    static char paths[8][4200];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", cert_dir(), file);
    return p;
}
