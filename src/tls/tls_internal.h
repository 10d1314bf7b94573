/* What the TLS engine's files share: the config and engine structs, the
 * config's session store, and the callbacks libssl calls into. Depends on
 * libssl, libc and mpconn's public headers only. */
#ifndef MPCI_TLS_INTERNAL_H
#define MPCI_TLS_INTERNAL_H

#include "mpconn/tls.h"

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>

#define MPCI_TLS_ERRMSG_MAX 512
/* Server names a client config keeps a session for; the oldest goes first. */
#define MPCI_TLS_SESSIONS 32
/* Ciphertext a write lets pile up before it says MPCONN_TLS_WANT_WRITE. */
#define MPCI_TLS_OUT_MAX (64 * 1024)
/* Largest PEM file read (a chain of a few certificates is a few KiB). */
#define MPCI_TLS_PEM_MAX (4 * 1024 * 1024)

struct mpci_tls_saved {
    char *name;        /* NULL: free slot */
    SSL_SESSION *sess; /* one reference, ours */
    unsigned long long stamp;
};

struct mpconn_tls_config {
    SSL_CTX *ctx;
    int role;
    atomic_int refs;
    pthread_mutex_t lock; /* ready, and the session store */
    int ready;            /* an engine was made: setters refuse */
    int have_ca;
    int verify_client;
    int insecure;
    int keylog_fd;
    char *server_name; /* clients: the name every connection checks, NULL: the address's */
    mpconn_tls_passphrase_cb pass_cb;
    void *pass_data;
    struct mpci_tls_saved saved[MPCI_TLS_SESSIONS];
    unsigned long long clock;
    char errmsg[MPCI_TLS_ERRMSG_MAX];
};

struct mpconn_tls {
    mpconn_tls_config *cfg;
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    char *name;       /* the client's peer_name; NULL for servers */
    int err;          /* sticky fatal error, 0 while none */
    int hs_done;
    int starved; /* the last read wanted more input, and none came since */
    int eof_in;
    int shut_sent, shut_done;
    int alert_in; /* fatal alert received, -1 none */
    /* first verification failure seen by the callback */
    int verr, vdepth;
    char vsubject[256];
    /* peer certificate facts, made on first ask */
    int info_done;
    char *subject;
    char **sans;
    size_t nsans;
    char errmsg[MPCI_TLS_ERRMSG_MAX];
};

/* config.c */
void mpci_tls_config_ref(mpconn_tls_config *cfg);
/* Makes the context final at the first engine (default trust, verify
 * mode) and stops the setters. */
int mpci_tls_config_ready(mpconn_tls_config *cfg);
/* The session saved for name, one reference the caller frees; NULL if
 * none, or if it can no longer be resumed. */
SSL_SESSION *mpci_tls_session_find(mpconn_tls_config *cfg, const char *name);
int mpci_tls_version_name(int version, const char **name);

/* verify.c */
int mpci_tls_on_verify(int ok, X509_STORE_CTX *store);
void mpci_tls_on_info(const SSL *ssl, int where, int ret);
/* Turns a failed libssl call (r its result) into a code; fatal ones are
 * recorded as t's sticky error with the message that names the reason. */
int mpci_tls_result(mpconn_tls *t, int r);
int mpci_tls_fail(mpconn_tls *t, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Borrowed: the session holds it. */
X509 *mpci_tls_peer_cert(const mpconn_tls *t);
int mpci_tls_peer_info(mpconn_tls *t);
void mpci_tls_peer_info_free(mpconn_tls *t);
/* The first error on the thread's queue as text (and cleared). */
const char *mpci_tls_queue_text(char *buf, size_t cap);

#endif
