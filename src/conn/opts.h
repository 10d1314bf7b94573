/* struct mpconn_opts: the settings listeners, clients and connections copy,
 * and the few ways the library copies them. */
#ifndef MPCI_CONN_OPTS_H
#define MPCI_CONN_OPTS_H

#include "mpconn.h"
#include "mpconn/tls.h"
#include "proto/auth.h"
#include "proto/pickle.h"
#include "proto/print.h"

#include <stddef.h>
#include <stdint.h>

struct mpconn_opts {
    unsigned char *authkey; /* NULL: no authentication */
    size_t authkey_len;
    char digest[16]; /* "sha256", ..., or "legacy" */
    int allow_md5;
    double handshake_timeout;
    double connect_timeout;
    double send_timeout;
    double recv_timeout;
    uint64_t max_message;
    int backlog;
    int mode; /* -1: leave as umask gives */
    int reuse_address;
    uid_t *uids;
    size_t nuids;
    int abstract_any_uid;
    int pickle_protocol;
    mpci_pickle_limits limits;
    mpci_print_limits print;
    struct mpci_auth_cache *cache; /* for authkey, owned; may be NULL */
    mpci_auth_key akey;            /* authkey and the cache's MAC, as handshakes borrow them */
    mpconn_tls_config *tls;        /* one reference, or NULL: no TLS */
};

void mpci_opts_defaults(struct mpconn_opts *o);
/* Whether a Unix peer's uid decides under o: an allowed-uid list, or an
 * abstract name without authentication (no file permissions guard one,
 * CVE-2022-42919), open to our own uid alone. mpconn_opts_peer_allowed
 * lets every uid in otherwise. */
int mpci_opts_uid_decides(const struct mpconn_opts *o, int abstract, int authenticated);
/* Deep copy into dst, an initialised opts whose own storage is released. */
int mpci_opts_copy(struct mpconn_opts *dst, const struct mpconn_opts *src);
/* The plain settings only: no key, no uid list, no TLS config, nothing to
 * free. */
void mpci_opts_copy_plain(struct mpconn_opts *dst, const struct mpconn_opts *src);
void mpci_opts_clear(struct mpconn_opts *o);

#endif
