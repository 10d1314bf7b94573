/* mpconn_tls_config: one SSL_CTX with safe defaults, the material loaded
 * into it (certificates, keys, trust anchors, read with close-on-exec
 * descriptors), and the client's store of sessions by server name. */
#include "tls_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* TLS 1.2 suites: ephemeral key exchange (forward secrecy) and AEAD only. */
static const char default_tls12_ciphers[] =
    "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!DSS";

static int cfg_err(mpconn_tls_config *cfg, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cfg_err(mpconn_tls_config *cfg, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cfg->errmsg, sizeof cfg->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

/* Setters run before the first engine; after it the context is shared by
 * engines that may run in other threads, so changing it is refused. */
static int check_open(mpconn_tls_config *cfg)
{
    pthread_mutex_lock(&cfg->lock);
    int ready = cfg->ready;
    pthread_mutex_unlock(&cfg->lock);
    if (ready)
        return cfg_err(cfg, -EBUSY, "the TLS config is in use by an engine and cannot change");
    return 0;
}

/* check_open, and the setting is one of role's. */
static int check_open_for(mpconn_tls_config *cfg, int role, const char *what)
{
    int rc = check_open(cfg);
    if (rc == 0 && cfg->role != role)
        rc = cfg_err(cfg, -EINVAL, "%s is a %s setting", what,
                     role == MPCONN_TLS_SERVER ? "server" : "client");
    return rc;
}

static void on_keylog(const SSL *ssl, const char *line)
{
    mpconn_tls_config *cfg = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!cfg || cfg->keylog_fd < 0)
        return;
    /* One writev on an O_APPEND file: lines of concurrent handshakes do
     * not interleave. A failed write loses a debugging aid, nothing more. */
    struct iovec iov[2] = {{(void *)line, strlen(line)}, {"\n", 1}};
    ssize_t r = writev(cfg->keylog_fd, iov, 2);
    (void)r;
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    mpconn_tls *t = SSL_get_app_data(ssl);
    if (!t || !t->name || !SSL_SESSION_is_resumable(sess))
        return 0;
    mpconn_tls_config *cfg = t->cfg;
    pthread_mutex_lock(&cfg->lock);
    struct mpci_tls_saved *slot = NULL, *oldest = &cfg->saved[0];
    for (size_t i = 0; i < MPCI_TLS_SESSIONS; i++) {
        struct mpci_tls_saved *s = &cfg->saved[i];
        if (s->name && strcmp(s->name, t->name) == 0) {
            slot = s;
            break;
        }
        if (!s->name && !slot)
            slot = s;
        if (s->name && (!oldest->name || s->stamp < oldest->stamp))
            oldest = s;
    }
    if (!slot)
        slot = oldest;
    if (!slot->name || strcmp(slot->name, t->name) != 0) {
        char *copy = strdup(t->name);
        if (!copy) {
            pthread_mutex_unlock(&cfg->lock);
            return 0;
        }
        free(slot->name);
        slot->name = copy;
    }
    if (slot->sess)
        SSL_SESSION_free(slot->sess);
    slot->sess = sess; /* returning 1 keeps libssl's reference */
    slot->stamp = ++cfg->clock;
    pthread_mutex_unlock(&cfg->lock);
    return 1;
}

SSL_SESSION *mpci_tls_session_find(mpconn_tls_config *cfg, const char *name)
{
    SSL_SESSION *out = NULL;
    pthread_mutex_lock(&cfg->lock);
    for (size_t i = 0; i < MPCI_TLS_SESSIONS; i++) {
        struct mpci_tls_saved *s = &cfg->saved[i];
        if (!s->name || strcmp(s->name, name) != 0)
            continue;
        out = s->sess;
        /* libssl marks a TLS 1.3 ticket spent once offered (a ticket used
         * twice would let an observer link the two connections; the
         * server sends fresh ones), and the session of a connection that
         * failed: both are dropped here. */
        if (!SSL_SESSION_is_resumable(out)) {
            SSL_SESSION_free(out);
            free(s->name);
            s->name = NULL;
            s->sess = NULL;
            out = NULL;
        } else {
            SSL_SESSION_up_ref(out);
        }
        break;
    }
    pthread_mutex_unlock(&cfg->lock);
    return out;
}

int mpconn_tls_config_new(mpconn_tls_config **out, int role)
{
    *out = NULL;
    if (role != MPCONN_TLS_CLIENT && role != MPCONN_TLS_SERVER)
        return -EINVAL;
    mpconn_tls_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return -ENOMEM;
    cfg->role = role;
    cfg->keylog_fd = -1;
    atomic_init(&cfg->refs, 1);
    if (pthread_mutex_init(&cfg->lock, NULL) != 0) {
        free(cfg);
        return -ENOMEM;
    }
    cfg->ctx = SSL_CTX_new(role == MPCONN_TLS_CLIENT ? TLS_client_method() : TLS_server_method());
    if (!cfg->ctx) {
        ERR_clear_error();
        pthread_mutex_destroy(&cfg->lock);
        free(cfg);
        return MPCONN_ERR_TLS;
    }
    SSL_CTX *ctx = cfg->ctx;
    SSL_CTX_set_app_data(ctx, cfg);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
#ifdef SSL_OP_NO_CLIENT_RENEGOTIATION
    SSL_CTX_set_options(ctx, SSL_OP_NO_CLIENT_RENEGOTIATION);
#endif
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* An end of stream without close_notify must stay an error: it is
     * how a truncation attack looks. */
    SSL_CTX_clear_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    if (role == MPCONN_TLS_SERVER) {
        SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
#ifdef SSL_CTX_set_dh_auto
        SSL_CTX_set_dh_auto(ctx, 1); /* the DHE suites of the default list */
#endif
        /* Without a context id, libssl refuses to resume sessions once
         * client certificates are asked for. */
        static const unsigned char sid_ctx[] = "mpconn";
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    } else {
        SSL_CTX_set_session_cache_mode(ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    }
    if (SSL_CTX_set_cipher_list(ctx, default_tls12_ciphers) != 1) {
        ERR_clear_error();
        mpconn_tls_config_free(cfg);
        return MPCONN_ERR_TLS;
    }
    *out = cfg;
    return 0;
}

void mpci_tls_config_ref(mpconn_tls_config *cfg)
{
    atomic_fetch_add(&cfg->refs, 1);
}

void mpconn_tls_config_free(mpconn_tls_config *cfg)
{
    if (!cfg || atomic_fetch_sub(&cfg->refs, 1) != 1)
        return;
    for (size_t i = 0; i < MPCI_TLS_SESSIONS; i++) {
        free(cfg->saved[i].name);
        if (cfg->saved[i].sess)
            SSL_SESSION_free(cfg->saved[i].sess);
    }
    SSL_CTX_free(cfg->ctx);
    if (cfg->keylog_fd >= 0)
        close(cfg->keylog_fd);
    pthread_mutex_destroy(&cfg->lock);
    free(cfg);
}

const char *mpconn_tls_config_errmsg(const mpconn_tls_config *cfg)
{
    return cfg ? cfg->errmsg : "";
}

/* What the first engine fixes: the default trust store where a client has
 * none, and the verify mode; a config that cannot work says why now. */
static int finish(mpconn_tls_config *cfg)
{
    SSL_CTX *ctx = cfg->ctx;
    int mode = SSL_VERIFY_NONE;
    if (cfg->role == MPCONN_TLS_SERVER) {
        if (!SSL_CTX_get0_certificate(ctx))
            return cfg_err(
                cfg, MPCONN_ERR_TLSCONFIG,
                "a server needs its certificate and key (mpconn_tls_config_set_cert_file)");
        if (cfg->verify_client != MPCONN_TLS_VERIFY_NONE && !cfg->have_ca)
            return cfg_err(cfg, MPCONN_ERR_TLSCONFIG,
                           "client certificates need trust anchors to be verified against "
                           "(mpconn_tls_config_set_ca_file)");
        if (cfg->verify_client == MPCONN_TLS_VERIFY_OPTIONAL)
            mode = SSL_VERIFY_PEER;
        else if (cfg->verify_client == MPCONN_TLS_VERIFY_REQUIRED)
            mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    } else if (!cfg->insecure) {
        mode = SSL_VERIFY_PEER;
        ERR_clear_error();
        if (!cfg->have_ca && SSL_CTX_set_default_verify_paths(ctx) != 1) {
            char why[256];
            return cfg_err(cfg, MPCONN_ERR_TLSCONFIG, "cannot load the system's trust store: %s",
                           mpci_tls_queue_text(why, sizeof why));
        }
        cfg->have_ca = 1;
    }
    SSL_CTX_set_verify(ctx, mode, mpci_tls_on_verify);
    return 0;
}

int mpci_tls_config_ready(mpconn_tls_config *cfg)
{
    int rc = 0;
    pthread_mutex_lock(&cfg->lock);
    if (!cfg->ready) {
        rc = finish(cfg);
        cfg->ready = rc == 0; /* else the setters may still mend it */
    }
    pthread_mutex_unlock(&cfg->lock);
    return rc;
}

/* Reads a whole (bounded) file through a close-on-exec descriptor; libssl's
 * own file loading uses fopen without it. */
static int read_file(mpconn_tls_config *cfg, const char *what, const char *path, char **buf,
                     size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cfg_err(cfg, MPCONN_ERR_TLSCONFIG, "cannot open the %s %s: %s", what, path,
                       strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MPCI_TLS_PEM_MAX) {
        close(fd);
        return cfg_err(cfg, MPCONN_ERR_TLSCONFIG,
                       "the %s %s is not a regular file of at most %d bytes", what, path,
                       MPCI_TLS_PEM_MAX);
    }
    size_t cap = (size_t)st.st_size, got = 0;
    char *b = malloc(cap + 1);
    if (!b) {
        close(fd);
        return cfg_err(cfg, -ENOMEM, "out of memory reading %s", path);
    }
    while (got < cap) {
        ssize_t r = read(fd, b + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(b);
            close(fd);
            return cfg_err(cfg, MPCONN_ERR_TLSCONFIG, "cannot read the %s %s: %s", what, path,
                           strerror(e));
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *buf = b;
    *len = got;
    return 0;
}

/* libssl's callback for encrypted keys. Always installed: without it
 * libssl would prompt on the terminal, and a library must not. */
static int pem_pass(char *buf, int size, int rwflag, void *data)
{
    (void)rwflag;
    mpconn_tls_config *cfg = data;
    if (!cfg->pass_cb || size <= 0)
        return -1;
    int n = cfg->pass_cb(buf, (size_t)size, cfg->pass_data);
    return n < 0 || n > size ? -1 : n;
}

static int load_cert_key(mpconn_tls_config *cfg, const char *chain_name, const void *chain,
                         size_t chain_len, const char *key_name, const void *key, size_t key_len)
{
    char why[256];
    if (chain_len > MPCI_TLS_PEM_MAX || key_len > MPCI_TLS_PEM_MAX)
        return cfg_err(cfg, MPCONN_ERR_TLSCONFIG, "PEM text longer than %d bytes",
                       MPCI_TLS_PEM_MAX);
    int rc = MPCONN_ERR_TLSCONFIG;
    X509 *leaf = NULL;
    EVP_PKEY *pkey = NULL;
    STACK_OF(X509) *extra = NULL;
    BIO *cb = BIO_new_mem_buf(chain, (int)chain_len);
    BIO *kb = key ? BIO_new_mem_buf(key, (int)key_len) : NULL;
    if (!cb || (key && !kb)) {
        rc = cfg_err(cfg, -ENOMEM, "out of memory");
        goto out;
    }
    ERR_clear_error();
    leaf = PEM_read_bio_X509_AUX(cb, NULL, pem_pass, cfg);
    if (!leaf) {
        cfg_err(cfg, rc, "no PEM certificate in %s: %s", chain_name,
                mpci_tls_queue_text(why, sizeof why));
        goto out;
    }
    extra = sk_X509_new_null();
    if (!extra) {
        rc = cfg_err(cfg, -ENOMEM, "out of memory");
        goto out;
    }
    X509 *c;
    while ((c = PEM_read_bio_X509(cb, NULL, pem_pass, cfg)) != NULL) {
        if (!sk_X509_push(extra, c)) {
            X509_free(c);
            rc = cfg_err(cfg, -ENOMEM, "out of memory");
            goto out;
        }
    }
    ERR_clear_error(); /* the end of the PEM text reads as an error */
    if (!kb) {
        kb = cb; /* the key sits in the chain's text: read it again from the start */
        BIO_reset(kb);
        cb = NULL;
        key_name = chain_name;
    }
    pkey = PEM_read_bio_PrivateKey(kb, NULL, pem_pass, cfg);
    if (!pkey) {
        cfg_err(cfg, rc, "cannot read the private key in %s: %s%s", key_name,
                mpci_tls_queue_text(why, sizeof why),
                cfg->pass_cb ? "" : " (an encrypted key needs a passphrase callback)");
        goto out;
    }
    if (X509_check_private_key(leaf, pkey) != 1) {
        ERR_clear_error();
        cfg_err(cfg, rc, "the private key in %s does not belong to the certificate in %s", key_name,
                chain_name);
        goto out;
    }
    if (SSL_CTX_use_cert_and_key(cfg->ctx, leaf, pkey, extra, 1) != 1) {
        cfg_err(cfg, rc, "the certificate in %s cannot be used: %s", chain_name,
                mpci_tls_queue_text(why, sizeof why));
        goto out;
    }
    rc = 0;
out:
    X509_free(leaf);
    EVP_PKEY_free(pkey);
    sk_X509_pop_free(extra, X509_free);
    BIO_free(cb);
    BIO_free(kb);
    ERR_clear_error();
    return rc;
}

int mpconn_tls_config_set_key_passphrase_cb(mpconn_tls_config *cfg, mpconn_tls_passphrase_cb cb,
                                            void *data)
{
    int rc = check_open(cfg);
    if (rc < 0)
        return rc;
    cfg->pass_cb = cb;
    cfg->pass_data = data;
    return 0;
}

int mpconn_tls_config_set_cert_file(mpconn_tls_config *cfg, const char *chain_path,
                                    const char *key_path)
{
    if (!chain_path)
        return cfg_err(cfg, -EINVAL, "no certificate file given");
    int rc = check_open(cfg);
    if (rc < 0)
        return rc;
    char *chain = NULL, *key = NULL;
    size_t chain_len = 0, key_len = 0;
    rc = read_file(cfg, "certificate file", chain_path, &chain, &chain_len);
    if (rc == 0 && key_path)
        rc = read_file(cfg, "key file", key_path, &key, &key_len);
    if (rc == 0)
        rc = load_cert_key(cfg, chain_path, chain, chain_len, key_path, key, key_len);
    free(chain);
    if (key) {
        OPENSSL_cleanse(key, key_len);
        free(key);
    }
    return rc;
}

int mpconn_tls_config_set_cert_mem(mpconn_tls_config *cfg, const void *chain, size_t chain_len,
                                   const void *key, size_t key_len)
{
    if (!chain)
        return cfg_err(cfg, -EINVAL, "no certificate given");
    int rc = check_open(cfg);
    if (rc < 0)
        return rc;
    return load_cert_key(cfg, "the certificate text", chain, chain_len, "the key text", key,
                         key_len);
}

int mpconn_tls_config_set_ca_file(mpconn_tls_config *cfg, const char *path)
{
    if (!path)
        return cfg_err(cfg, -EINVAL, "no CA file given");
    int rc = check_open(cfg);
    if (rc < 0)
        return rc;
    char *text;
    size_t len;
    rc = read_file(cfg, "CA file", path, &text, &len);
    if (rc < 0)
        return rc;
    BIO *b = BIO_new_mem_buf(text, (int)len);
    if (!b) {
        free(text);
        return cfg_err(cfg, -ENOMEM, "out of memory");
    }
    X509_STORE *store = SSL_CTX_get_cert_store(cfg->ctx);
    int count = 0;
    X509 *c;
    ERR_clear_error();
    while ((c = PEM_read_bio_X509_AUX(b, NULL, pem_pass, cfg)) != NULL) {
        int ok = X509_STORE_add_cert(store, c) == 1;
        /* A server names its anchors as the issuers it accepts. */
        if (ok && cfg->role == MPCONN_TLS_SERVER)
            ok = SSL_CTX_add_client_CA(cfg->ctx, c) == 1;
        X509_free(c);
        if (!ok) {
            char why[256];
            cfg_err(cfg, MPCONN_ERR_TLSCONFIG, "cannot add a certificate of %s: %s", path,
                    mpci_tls_queue_text(why, sizeof why));
            BIO_free(b);
            free(text);
            return MPCONN_ERR_TLSCONFIG;
        }
        count++;
    }
    ERR_clear_error();
    BIO_free(b);
    free(text);
    if (count == 0)
        return cfg_err(cfg, MPCONN_ERR_TLSCONFIG, "no PEM certificate in the CA file %s", path);
    cfg->have_ca = 1;
    return 0;
}

int mpconn_tls_config_set_ca_dir(mpconn_tls_config *cfg, const char *path)
{
    if (!path)
        return cfg_err(cfg, -EINVAL, "no CA directory given");
    int rc = check_open(cfg);
    if (rc < 0)
        return rc;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return cfg_err(cfg, MPCONN_ERR_TLSCONFIG, "the CA directory %s is not a directory", path);
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(cfg->ctx, NULL, path) != 1) {
        char why[256];
        return cfg_err(cfg, MPCONN_ERR_TLSCONFIG, "cannot use the CA directory %s: %s", path,
                       mpci_tls_queue_text(why, sizeof why));
    }
    cfg->have_ca = 1;
    return 0;
}

int mpconn_tls_config_use_system_ca(mpconn_tls_config *cfg)
{
    int rc = check_open(cfg);
    if (rc < 0)
        return rc;
    ERR_clear_error();
    if (SSL_CTX_set_default_verify_paths(cfg->ctx) != 1) {
        char why[256];
        return cfg_err(cfg, MPCONN_ERR_TLSCONFIG, "cannot use the system's trust store: %s",
                       mpci_tls_queue_text(why, sizeof why));
    }
    cfg->have_ca = 1;
    return 0;
}

int mpconn_tls_config_set_verify_client(mpconn_tls_config *cfg, int mode)
{
    int rc = check_open_for(cfg, MPCONN_TLS_SERVER, "verify_client");
    if (rc < 0)
        return rc;
    if (mode != MPCONN_TLS_VERIFY_NONE && mode != MPCONN_TLS_VERIFY_OPTIONAL &&
        mode != MPCONN_TLS_VERIFY_REQUIRED)
        return cfg_err(cfg, -EINVAL, "unknown client verification mode %d", mode);
    cfg->verify_client = mode;
    return 0;
}

int mpci_tls_version_name(int version, const char **name)
{
    switch (version) {
    case MPCONN_TLS_1_2: *name = "TLSv1.2"; return TLS1_2_VERSION;
    case MPCONN_TLS_1_3: *name = "TLSv1.3"; return TLS1_3_VERSION;
    default: *name = "?"; return -1;
    }
}

static int set_version(mpconn_tls_config *cfg, int version, int max)
{
    int rc = check_open(cfg);
    if (rc < 0)
        return rc;
    const char *name;
    int v = mpci_tls_version_name(version, &name);
    if (v < 0)
        return cfg_err(cfg, -EINVAL, "TLS version 0x%04x: only TLS 1.2 and 1.3 are offered",
                       (unsigned)version);
    int ok = max ? SSL_CTX_set_max_proto_version(cfg->ctx, v)
                 : SSL_CTX_set_min_proto_version(cfg->ctx, v);
    if (ok != 1) {
        ERR_clear_error();
        return cfg_err(cfg, MPCONN_ERR_TLSCONFIG, "libssl refuses %s as the %s version", name,
                       max ? "highest" : "lowest");
    }
    return 0;
}

int mpconn_tls_config_set_min_version(mpconn_tls_config *cfg, int version)
{
    return set_version(cfg, version, 0);
}

int mpconn_tls_config_set_max_version(mpconn_tls_config *cfg, int version)
{
    return set_version(cfg, version, 1);
}

int mpconn_tls_config_set_ciphers(mpconn_tls_config *cfg, const char *tls12, const char *tls13)
{
    int rc = check_open(cfg);
    if (rc < 0)
        return rc;
    char why[256];
    ERR_clear_error();
    if (tls12 && SSL_CTX_set_cipher_list(cfg->ctx, tls12) != 1)
        return cfg_err(cfg, MPCONN_ERR_TLSCONFIG,
                       "the TLS 1.2 cipher list \"%s\" selects nothing: %s", tls12,
                       mpci_tls_queue_text(why, sizeof why));
    if (tls13 && SSL_CTX_set_ciphersuites(cfg->ctx, tls13) != 1)
        return cfg_err(cfg, MPCONN_ERR_TLSCONFIG, "the TLS 1.3 suite list \"%s\" is not usable: %s",
                       tls13, mpci_tls_queue_text(why, sizeof why));
    return 0;
}

int mpconn_tls_config_set_keylog_file(mpconn_tls_config *cfg, const char *path)
{
    int rc = check_open(cfg);
    if (rc < 0)
        return rc;
    int fd = -1;
    if (path) {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
            return cfg_err(cfg, MPCONN_ERR_TLSCONFIG, "cannot open the key-log file %s: %s", path,
                           strerror(errno));
    }
    if (cfg->keylog_fd >= 0)
        close(cfg->keylog_fd);
    cfg->keylog_fd = fd;
    SSL_CTX_set_keylog_callback(cfg->ctx, fd >= 0 ? on_keylog : NULL);
    return 0;
}

int mpconn_tls_config_set_insecure_no_verify(mpconn_tls_config *cfg, int insecure)
{
    int rc = check_open_for(cfg, MPCONN_TLS_CLIENT, "insecure_no_verify");
    if (rc < 0)
        return rc;
    cfg->insecure = insecure != 0;
    return 0;
}
