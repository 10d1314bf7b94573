/* The TLS tests' certificate set: tests/tls-certs.sh (shared with the
 * CPython interop suite and the TLS benchmark) for the openssl command, run
 * once a day into the build tree by whichever test gets there first. */
#include "tls_certs.h"
#include "testlib.h"

#include <mpconn/tls.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#define SKIP 77

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
    snprintf(dir, sizeof dir, "%s-%s", MPCONN_TLS_CERTS, day);
    struct stat st;
    if (stat(dir, &st) == 0)
        return dir;
    if (system("openssl version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "skipped: no openssl command to make certificates\n");
        exit(SKIP);
    }
    char tmp[4200], cmd[8800];
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", dir);
    CHECK(mkdtemp(tmp) != NULL);
    snprintf(cmd, sizeof cmd, "cd '%s' && sh '%s' >log 2>&1", tmp, MPCONN_TLS_CERT_SCRIPT);
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

mpconn_tls_config *cert_config(int role)
{
    mpconn_tls_config *cfg;
    CHECK_INT(mpconn_tls_config_new(&cfg, role), 0);
    if (role == MPCONN_TLS_SERVER)
        CHECK_INT(mpconn_tls_config_set_cert_file(cfg, cert("server.pem"), cert("server.key")), 0);
    else
        CHECK_INT(mpconn_tls_config_set_ca_file(cfg, cert("ca.pem")), 0);
    return cfg;
}
