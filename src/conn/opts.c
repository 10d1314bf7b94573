/* mpconn_opts: the settings every listener, client and connection copies. */
#include "conn/opts.h"
#include "conn/authcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void mpci_opts_defaults(struct mpconn_opts *o)
{
    memset(o, 0, sizeof *o);
    strcpy(o->digest, "sha256");
    o->allow_md5 = 1;
    o->handshake_timeout = 20.0;
    o->connect_timeout = -1;
    o->send_timeout = -1;
    o->recv_timeout = -1;
    o->backlog = 128;
    o->mode = -1;
    o->reuse_address = 1;
    o->pickle_protocol = 4;
    o->limits = MPCI_PICKLE_LIMITS_DEFAULT;
    o->print = MPCI_PRINT_LIMITS_DEFAULT;
}

static void forget_key(struct mpconn_opts *o)
{
    mpci_auth_cache_free(o->cache);
    o->cache = NULL;
    if (o->authkey) {
        /* The key is a secret: do not leave it in freed memory. */
        memset(o->authkey, 0, o->authkey_len);
        free(o->authkey);
    }
    o->authkey = NULL;
    o->authkey_len = 0;
    o->akey = (mpci_auth_key){0};
}

static int cache_mac(void *ctx, const char *digest, const uint8_t *key, size_t keylen,
                     const uint8_t *msg, size_t len, uint8_t *out)
{
    return mpci_mac_compute(ctx, digest, key, keylen, msg, len, out);
}

/* Takes ownership of key (may be NULL). Without room for the cache the
 * handshakes still work, through one-shot HMAC and getrandom. */
static void take_key(struct mpconn_opts *o, unsigned char *key, size_t len)
{
    forget_key(o);
    o->authkey = key;
    o->authkey_len = key ? len : 0;
    o->cache = key ? mpci_auth_cache_new(key, len) : NULL;
    o->akey = (mpci_auth_key){key, o->authkey_len, o->cache ? cache_mac : NULL, o->cache};
}

void mpci_opts_clear(struct mpconn_opts *o)
{
    forget_key(o);
    free(o->uids);
    o->uids = NULL;
    mpconn_tls_config_free(o->tls);
    o->tls = NULL;
}

void mpci_opts_copy_plain(struct mpconn_opts *dst, const struct mpconn_opts *src)
{
    *dst = *src;
    dst->authkey = NULL;
    dst->authkey_len = 0;
    dst->cache = NULL;
    dst->akey = (mpci_auth_key){0};
    dst->uids = NULL;
    dst->nuids = 0;
    dst->tls = NULL;
}

int mpci_opts_copy(struct mpconn_opts *dst, const struct mpconn_opts *src)
{
    struct mpconn_opts tmp;
    mpci_opts_copy_plain(&tmp, src);
    unsigned char *key = NULL;
    if (src->authkey) {
        key = malloc(src->authkey_len ? src->authkey_len : 1);
        if (!key)
            return -ENOMEM;
        memcpy(key, src->authkey, src->authkey_len);
    }
    if (src->nuids) {
        tmp.uids = malloc(src->nuids * sizeof *src->uids);
        if (!tmp.uids) {
            if (key) {
                memset(key, 0, src->authkey_len);
                free(key);
            }
            return -ENOMEM;
        }
        memcpy(tmp.uids, src->uids, src->nuids * sizeof *src->uids);
        tmp.nuids = src->nuids;
    }
    take_key(&tmp, key, src->authkey_len);
    tmp.tls = mpconn_tls_config_ref(src->tls);
    mpci_opts_clear(dst);
    *dst = tmp;
    return 0;
}

int mpconn_opts_new(mpconn_opts **out)
{
    *out = malloc(sizeof **out);
    if (!*out)
        return -ENOMEM;
    mpci_opts_defaults(*out);
    return 0;
}

void mpconn_opts_free(mpconn_opts *o)
{
    if (!o)
        return;
    mpci_opts_clear(o);
    free(o);
}

int mpconn_opts_set_authkey(mpconn_opts *o, const void *key, size_t len)
{
    unsigned char *copy = NULL;
    if (key) {
        copy = malloc(len ? len : 1);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, key, len);
    }
    take_key(o, copy, len);
    return 0;
}

static const char *const digests[] = {"md5", "sha256", "sha384", "sha3_256", "sha3_384", "legacy"};

int mpconn_opts_set_digest(mpconn_opts *o, const char *name)
{
    for (size_t i = 0; i < sizeof digests / sizeof *digests; i++) {
        if (name && strcmp(name, digests[i]) == 0) {
            strcpy(o->digest, digests[i]);
            return 0;
        }
    }
    return -EINVAL;
}

int mpconn_opts_set_allow_md5(mpconn_opts *o, int allow)
{
    o->allow_md5 = allow != 0;
    return 0;
}

int mpconn_opts_set_handshake_timeout(mpconn_opts *o, double seconds)
{
    o->handshake_timeout = seconds;
    return 0;
}

int mpconn_opts_set_connect_timeout(mpconn_opts *o, double seconds)
{
    o->connect_timeout = seconds;
    return 0;
}

int mpconn_opts_set_send_timeout(mpconn_opts *o, double seconds)
{
    o->send_timeout = seconds;
    return 0;
}

int mpconn_opts_set_recv_timeout(mpconn_opts *o, double seconds)
{
    o->recv_timeout = seconds;
    return 0;
}

int mpconn_opts_set_max_message(mpconn_opts *o, uint64_t bytes)
{
    o->max_message = bytes;
    return 0;
}

int mpconn_opts_set_backlog(mpconn_opts *o, int backlog)
{
    if (backlog < 0)
        return -EINVAL;
    o->backlog = backlog;
    return 0;
}

int mpconn_opts_set_reuse_address(mpconn_opts *o, int reuse)
{
    o->reuse_address = reuse != 0;
    return 0;
}

int mpconn_opts_set_mode(mpconn_opts *o, unsigned mode)
{
    if (mode > 07777)
        return -EINVAL;
    o->mode = (int)mode;
    return 0;
}

int mpconn_opts_set_allowed_uids(mpconn_opts *o, const uid_t *uids, size_t n)
{
    uid_t *copy = NULL;
    if (n) {
        copy = malloc(n * sizeof *uids);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, uids, n * sizeof *uids);
    }
    free(o->uids);
    o->uids = copy;
    o->nuids = n;
    return 0;
}

int mpconn_opts_set_tls(mpconn_opts *o, mpconn_tls_config *cfg)
{
    mpconn_tls_config *old = o->tls;
    o->tls = mpconn_tls_config_ref(cfg);
    mpconn_tls_config_free(old);
    return 0;
}

int mpconn_opts_set_abstract_any_uid(mpconn_opts *o, int allow)
{
    o->abstract_any_uid = allow != 0;
    return 0;
}

int mpconn_opts_set_pickle_protocol(mpconn_opts *o, int protocol)
{
    if (protocol < 2 || protocol > 5)
        return -EINVAL;
    o->pickle_protocol = protocol;
    return 0;
}

int mpconn_opts_set_decode_limits(mpconn_opts *o, size_t max_depth, size_t max_items,
                                  size_t max_memo, size_t max_alloc)
{
    if (max_depth)
        o->limits.max_depth = max_depth;
    if (max_items)
        o->limits.max_items = max_items;
    if (max_memo)
        o->limits.max_memo = max_memo;
    if (max_alloc)
        o->limits.max_alloc = max_alloc;
    return 0;
}

int mpconn_opts_set_py2_str(mpconn_opts *o, int as)
{
    if (as != MPCONN_PY2_STR_ASCII && as != MPCONN_PY2_STR_BYTES && as != MPCONN_PY2_STR_LATIN1)
        return -EINVAL;
    o->limits.py2_str = as;
    return 0;
}

int mpconn_opts_set_print_limits(mpconn_opts *o, size_t max_bytes, size_t max_int_digits)
{
    if (max_int_digits && max_int_digits < 640)
        return -EINVAL;
    if (max_bytes)
        o->print.max_bytes = max_bytes;
    if (max_int_digits)
        o->print.max_digits = max_int_digits;
    return 0;
}

int mpconn_opts_set_print_truncate(mpconn_opts *o, int truncate)
{
    o->print.truncate = truncate != 0;
    return 0;
}

int mpconn_opts_new_auth(mpconn_auth **out, const mpconn_opts *o, int role)
{
    *out = NULL;
    if (!o || !o->authkey)
        return MPCONN_ERR_NOKEY;
    return mpconn_auth_new(out, role, o->authkey, o->authkey_len, o->digest, o->allow_md5);
}

double mpconn_opts_handshake_timeout(const mpconn_opts *o)
{
    return o ? o->handshake_timeout : 20.0;
}

int mpconn_opts_mode(const mpconn_opts *o)
{
    return o ? o->mode : -1;
}

int mpconn_opts_reuse_address(const mpconn_opts *o)
{
    return o ? o->reuse_address : 1;
}

int mpconn_opts_dup(mpconn_opts **out, const mpconn_opts *o)
{
    int r = mpconn_opts_new(out);
    if (r < 0 || !o)
        return r;
    r = mpci_opts_copy(*out, o);
    if (r < 0) {
        mpconn_opts_free(*out);
        *out = NULL;
    }
    return r;
}

int mpci_opts_uid_decides(const struct mpconn_opts *o, int abstract, int authenticated)
{
    return o->nuids || (abstract && !authenticated && !o->abstract_any_uid);
}

int mpconn_opts_peer_allowed(const mpconn_opts *o, int abstract, int authenticated, uid_t uid)
{
    struct mpconn_opts defaults;
    if (!o) {
        mpci_opts_defaults(&defaults);
        o = &defaults;
    }
    if (!mpci_opts_uid_decides(o, abstract, authenticated))
        return 1;
    if (o->nuids) {
        for (size_t i = 0; i < o->nuids; i++)
            if (o->uids[i] == uid)
                return 1;
        return 0;
    }
    return uid == getuid();
}
