/* mpconn's TLS: a configuration object (certificates, trust, versions,
 * session tickets) and a TLS engine that does no I/O: ciphertext goes in
 * with mpconn_tls_feed and comes out with mpconn_tls_pull; the caller (a
 * transport, a test, a fuzzer) moves it. OpenSSL's libssl does the work. */
#ifndef MPCONN_TLS_H
#define MPCONN_TLS_H

#include <mpconn.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The TLS error codes (MPCONN_ERR_TLS, MPCONN_ERR_TLSVERIFY,
 * MPCONN_ERR_TRUNCATED, MPCONN_ERR_TLSCONFIG) are in mpconn.h's table, so
 * mpconn_strerror and mpconn_errname know them; mpconn_tls_errmsg and
 * mpconn_tls_config_errmsg say what happened. */

/* Results of the engine's steps that are neither done nor failed: the
 * engine needs ciphertext from the peer (feed some, after sending what
 * mpconn_tls_outgoing counts), or must get rid of ciphertext first (pull
 * it and send it). Positive, so "r < 0" still means failure. */
enum { MPCONN_TLS_WANT_READ = 1, MPCONN_TLS_WANT_WRITE = 2 };

enum { MPCONN_TLS_CLIENT = 1, MPCONN_TLS_SERVER = 2 };
enum { MPCONN_TLS_VERIFY_NONE = 0, MPCONN_TLS_VERIFY_OPTIONAL = 1, MPCONN_TLS_VERIFY_REQUIRED = 2 };
enum { MPCONN_TLS_1_2 = 0x0303, MPCONN_TLS_1_3 = 0x0304 };

/* ------------------------------------------------------------ configuration */

/* What every connection of one side shares: its certificate and key, the
 * trust anchors, versions and ciphers, the key-log file, and (clients) the
 * session tickets kept for the next connection to the same server name.
 * Setters are for one thread, before the first engine is made; after that
 * they fail with -EBUSY, and the config may be used by engines in several
 * threads at once. Engines hold a reference: mpconn_tls_config_free may
 * come before the engines are freed. */
typedef struct mpconn_tls_config mpconn_tls_config;

/* role: MPCONN_TLS_CLIENT or MPCONN_TLS_SERVER. Defaults: TLS 1.2 to 1.3,
 * forward-secret AEAD ciphers, no renegotiation, no compression; a client
 * verifies the server's certificate and name, against the system's trust
 * store unless a CA file or directory is set; a server asks for no client
 * certificate. *out is the caller's, released with mpconn_tls_config_free.
 * -ENOMEM; -EINVAL for another role; MPCONN_ERR_TLS when libssl fails. */
MPCONN_API int mpconn_tls_config_new(mpconn_tls_config **out, int role);
/* Drops the caller's reference; the config goes when its last engine does.
 * NULL is a no-op. */
MPCONN_API void mpconn_tls_config_free(mpconn_tls_config *cfg);
/* Takes one more reference to cfg (NULL: none) and returns it; each is
 * dropped with mpconn_tls_config_free. What mpconn_opts_set_tls does. */
MPCONN_API mpconn_tls_config *mpconn_tls_config_ref(mpconn_tls_config *cfg);
/* What the last failed setter found wrong. Owned by cfg. */
MPCONN_API const char *mpconn_tls_config_errmsg(const mpconn_tls_config *cfg);

/* Passphrase of an encrypted private key: write it into buf (at most cap
 * bytes, no NUL needed) and return its length, or a negative value to
 * refuse. Called only from inside mpconn_tls_config_set_cert_file and
 * _set_cert_mem, so data need live only until they return; set it before
 * them. NULL removes it. */
typedef int (*mpconn_tls_passphrase_cb)(char *buf, size_t cap, void *data);
MPCONN_API int mpconn_tls_config_set_key_passphrase_cb(mpconn_tls_config *cfg,
                                                       mpconn_tls_passphrase_cb cb, void *data);
/* The certificate chain (this side's certificate first, then the
 * intermediates) and its private key, both PEM. key_path NULL: the key is
 * in chain_path too. Read at once; the files may go afterwards.
 * MPCONN_ERR_TLSCONFIG when a file is missing or unreadable, the key is
 * encrypted and no passphrase fits, or key and certificate do not match. */
MPCONN_API int mpconn_tls_config_set_cert_file(mpconn_tls_config *cfg, const char *chain_path,
                                               const char *key_path);
/* The same from PEM text in memory (copied: the caller keeps its buffers).
 * key NULL: the key is in chain. */
MPCONN_API int mpconn_tls_config_set_cert_mem(mpconn_tls_config *cfg, const void *chain,
                                              size_t chain_len, const void *key, size_t key_len);
/* Trust anchors: a PEM file of CA certificates (read at once), or a
 * directory of them (hashed names, as `openssl rehash` makes; read by
 * libssl when a chain needs them). They add up. A server's trust anchors
 * are the ones client certificates are verified against, and the CA
 * file's names are sent as acceptable issuers. MPCONN_ERR_TLSCONFIG when the
 * file holds no certificate or the directory is not one. */
MPCONN_API int mpconn_tls_config_set_ca_file(mpconn_tls_config *cfg, const char *path);
MPCONN_API int mpconn_tls_config_set_ca_dir(mpconn_tls_config *cfg, const char *path);
/* Adds the system's default trust store (OpenSSL's default file and
 * directory, $SSL_CERT_FILE and $SSL_CERT_DIR). A client config that has
 * no trust anchors at its first engine gets it anyway. */
MPCONN_API int mpconn_tls_config_use_system_ca(mpconn_tls_config *cfg);
/* Servers: whether clients must present a certificate (MPCONN_TLS_VERIFY_*):
 * NONE asks for none (default); OPTIONAL asks, and verifies one that comes;
 * REQUIRED refuses a client without one. A server config needs trust
 * anchors for OPTIONAL and REQUIRED. -EINVAL on a client config. */
MPCONN_API int mpconn_tls_config_set_verify_client(mpconn_tls_config *cfg, int mode);
/* Lowest and highest protocol version: MPCONN_TLS_1_2 or MPCONN_TLS_1_3.
 * Default 1.2 and 1.3. -EINVAL for anything else. */
MPCONN_API int mpconn_tls_config_set_min_version(mpconn_tls_config *cfg, int version);
MPCONN_API int mpconn_tls_config_set_max_version(mpconn_tls_config *cfg, int version);
/* Cipher lists in OpenSSL's syntax, for those who must set them: tls12 for
 * TLS 1.2 (SSL_CTX_set_cipher_list), tls13 for TLS 1.3's suites
 * (SSL_CTX_set_ciphersuites). NULL leaves one as it is. MPCONN_ERR_TLSCONFIG
 * when a list selects nothing. */
MPCONN_API int mpconn_tls_config_set_ciphers(mpconn_tls_config *cfg, const char *tls12,
                                             const char *tls13);
/* Appends the session secrets of every handshake to path, in the
 * SSLKEYLOGFILE format Wireshark reads, so captures can be decrypted. For
 * debugging only: whoever reads the file can read the traffic. The library
 * never looks at $SSLKEYLOGFILE itself; a program that honours it passes
 * getenv("SSLKEYLOGFILE") here. The file (created 0600) stays open until
 * the config goes; NULL closes it. */
MPCONN_API int mpconn_tls_config_set_keylog_file(mpconn_tls_config *cfg, const char *path);
/* Clients: insecure 1 accepts any server certificate for any name. For
 * tests against throwaway certificates; anyone on the path can read and
 * change the traffic. The engines still record the verification result
 * (mpconn_tls_peer_verified says 0). -EINVAL on a server config. */
MPCONN_API int mpconn_tls_config_set_insecure_no_verify(mpconn_tls_config *cfg, int insecure);

/* Clients: the name every connection made with this config checks the
 * server's certificate against (and sends as SNI), instead of the host of
 * the tls: address or the name given to mpconn_conn_start_tls. Copied;
 * NULL goes back to those. -EINVAL on a server config. */
MPCONN_API int mpconn_tls_config_set_server_name(mpconn_tls_config *cfg, const char *name);

/* ------------------------------------------------------------------ engine */

/* One TLS connection without I/O. One thread at a time. The loop a
 * transport runs around it:
 *   - after every call, mpconn_tls_outgoing() bytes wait: pull and send them;
 *   - bytes from the peer go to mpconn_tls_feed, end of stream to _feed_eof;
 *   - MPCONN_TLS_WANT_READ: nothing more to do until the peer sends;
 *   - before sleeping on the socket, mpconn_tls_readable() must be 0, or
 *     plaintext already decrypted would be stranded.
 * Fatal errors (MPCONN_ERR_TLS, MPCONN_ERR_TLSVERIFY, MPCONN_ERR_TRUNCATED) are
 * sticky: every later call returns the same code, with the same message;
 * mpconn_tls_pull still hands out the alert that tells the peer why. */
typedef struct mpconn_tls mpconn_tls;

/* A new engine of cfg's role; it takes a reference to cfg. peer_name
 * (copied), for a client, is the server's host name or IP literal (IPv6
 * without brackets), usually the host of the address: a name is sent as
 * SNI and must match the certificate's subjectAltName DNS entries (a
 * wildcard covers one whole left-most label); an IP literal must match an
 * IP entry and is not sent. NULL only with insecure_no_verify. A server
 * passes NULL. A client config with a session saved for peer_name offers
 * it. *out is the caller's, freed with mpconn_tls_free. -ENOMEM; -EINVAL
 * (no name, a bad one); MPCONN_ERR_TLSCONFIG when the config cannot work (a
 * server without certificate, client certificates asked for without trust
 * anchors, no system trust store), and mpconn_tls_config_errmsg says why:
 * the config stays open to setters until an engine could be made. */
MPCONN_API int mpconn_tls_new(mpconn_tls **out, mpconn_tls_config *cfg, const char *peer_name);
/* Frees t (no close_notify: call mpconn_tls_shutdown first for that) and
 * drops its reference to the config. NULL is a no-op. */
MPCONN_API void mpconn_tls_free(mpconn_tls *t);
/* Why the last call failed, naming the reason (untrusted issuer, expired,
 * name mismatch, alert received, ...) and the certificate's depth and
 * subject. Owned by t, valid until the next call. */
MPCONN_API const char *mpconn_tls_errmsg(const mpconn_tls *t);

/* Runs the handshake as far as the bytes allow: 0 once done (and again on
 * every later call), MPCONN_TLS_WANT_READ, or a fatal error. */
MPCONN_API int mpconn_tls_handshake(mpconn_tls *t);
/* Ciphertext from the peer, copied into the engine (-ENOMEM). A transport
 * reads a bounded chunk from its socket, feeds it, and reads plaintext
 * before feeding more. */
MPCONN_API int mpconn_tls_feed(mpconn_tls *t, const void *buf, size_t len);
/* The peer's stream has ended. A read then returns MPCONN_ERR_EOF if its
 * close_notify came first, MPCONN_ERR_TRUNCATED if not. */
MPCONN_API int mpconn_tls_feed_eof(mpconn_tls *t);
/* Ciphertext waiting to be sent. */
MPCONN_API size_t mpconn_tls_outgoing(const mpconn_tls *t);
/* Moves up to cap bytes of it into buf; *n says how many (0 when none). */
MPCONN_API int mpconn_tls_pull(mpconn_tls *t, void *buf, size_t cap, size_t *n);

/* Plaintext into buf, up to cap bytes: 0 with *n >= 1; MPCONN_TLS_WANT_READ
 * when no whole record has arrived; MPCONN_ERR_EOF (again on every later call)
 * once the peer's close_notify has come; or a fatal error. Runs the
 * handshake first if it is not done. */
MPCONN_API int mpconn_tls_read(mpconn_tls *t, void *buf, size_t cap, size_t *n);
/* Encrypts plaintext: 0 with *n >= 1 bytes taken (maybe fewer than len:
 * call again with the rest); MPCONN_TLS_WANT_WRITE, nothing taken, while
 * more than 64 KiB of ciphertext waits to be pulled; MPCONN_TLS_WANT_READ
 * while the handshake waits for the peer. */
MPCONN_API int mpconn_tls_write(mpconn_tls *t, const void *buf, size_t len, size_t *n);
/* Decrypted plaintext bytes that a read returns at once. */
MPCONN_API size_t mpconn_tls_pending(const mpconn_tls *t);
/* 1 when a read would return something (plaintext, EOF, an error) without
 * new ciphertext: decrypted bytes wait, or bytes were fed since the last
 * read that said MPCONN_TLS_WANT_READ. What a transport reports to the
 * loop's pending pass (mpconn_io_set_pending, an adapter's set_pending). */
MPCONN_API int mpconn_tls_readable(const mpconn_tls *t);

/* Closes the TLS layer both ways. The first call queues this side's
 * close_notify (pull it); then 0 once the peer's close_notify has been
 * read, else MPCONN_TLS_WANT_READ: feed more, or read first when the peer
 * still sends data (mpconn_tls_read returns it, then MPCONN_ERR_EOF), and
 * call again. After a write, no more writes: -EPIPE. */
MPCONN_API int mpconn_tls_shutdown(mpconn_tls *t);
/* After a shutdown that returned 0: the bytes fed behind the peer's
 * close_notify, which belong to the clear stream underneath. Up to cap
 * into buf, *n how many. -EINVAL before the shutdown is complete. */
MPCONN_API int mpconn_tls_unwrap(mpconn_tls *t, void *buf, size_t cap, size_t *n);

/* Per-connection facts, once the handshake is done (before: NULL, 0).
 * Strings are static or owned by t until it is freed. */
/* "TLSv1.2" or "TLSv1.3". */
MPCONN_API const char *mpconn_tls_version(const mpconn_tls *t);
/* The cipher's OpenSSL name; *bits (may be NULL) its secret bits. */
MPCONN_API const char *mpconn_tls_cipher(const mpconn_tls *t, int *bits);
/* 1 when the peer presented a certificate and it verified (chain, dates,
 * and for a client the name); 0 otherwise, e.g. with insecure_no_verify
 * or a server that asked for no client certificate. */
MPCONN_API int mpconn_tls_peer_verified(const mpconn_tls *t);
/* The peer certificate's subject, RFC 2253 ("CN=localhost,O=Example"),
 * NULL without one. */
MPCONN_API const char *mpconn_tls_peer_subject(mpconn_tls *t);
/* The i-th subjectAltName entry of the peer certificate, "DNS:name" or
 * "IP:addr" (other kinds are skipped); NULL past the last. */
MPCONN_API const char *mpconn_tls_peer_san(mpconn_tls *t, size_t i);
/* Servers: the name the client asked for by SNI; NULL when it sent none
 * (as for an IP address). Clients: the peer_name given. */
MPCONN_API const char *mpconn_tls_server_name(const mpconn_tls *t);
/* 1 when this handshake resumed a saved session. */
MPCONN_API int mpconn_tls_session_reused(const mpconn_tls *t);

/* ------------------------------------------------------------ connections */

/* TLS for the blocking API. A listener or client whose opts have a TLS
 * config speaks TLS on "tls:HOST:PORT" and "tls:[V6]:PORT" addresses (TCP
 * underneath). The TLS handshake comes first, within the opts' handshake
 * timeout, and the authkey handshake, when there is an authkey, runs
 * inside TLS: a stolen certificate alone lets nobody in, and no message of
 * either side is ever in clear. Failures say what failed, with the reason
 * (certificate verify failed: self-signed certificate, hostname mismatch,
 * the peer did not speak TLS, ...): MPCONN_ERR_TLSVERIFY for a certificate
 * refused or a required one missing, MPCONN_ERR_TLS for the rest, and a stream
 * cut without close_notify is MPCONN_ERR_TRUNCATED, never a clean
 * MPCONN_ERR_EOF. None of these leave the connection usable. */

/* opts takes a reference to cfg (NULL drops the one it has), and every
 * listener, client or opts copy made from it one more. cfg's setters work
 * until its first connection starts and then fail with -EBUSY: change a
 * config before handing it out. The role must fit the use: a server config
 * for mpconn_listener_open, a client config for mpconn_client, else those
 * fail with MPCONN_ERR_TLSCONFIG. A tls: address without a config is
 * MPCONN_ERR_TLSCONFIG too ("tls: address needs a TLS configuration"); a
 * config with another address kind is unused. A client checks the
 * server's certificate against the address's host (a name or an IP
 * literal), unless mpconn_tls_config_set_server_name says otherwise. */
MPCONN_API int mpconn_opts_set_tls(mpconn_opts *o, mpconn_tls_config *cfg);

/* Wraps a connected plain c in TLS (wrap_socket, or a STARTTLS-style
 * upgrade): the role is cfg's, server_name (a client's, copied; may be NULL
 * when the config has one or does not verify) the name checked. Runs the
 * TLS handshake now, bounded by c's receive timeout (none: it blocks until
 * the peer answers or goes). Bytes c had read ahead are the peer's first
 * TLS bytes. c takes a reference to cfg. On failure c is no longer usable
 * (close it); MPCONN_ERR_TLS, MPCONN_ERR_TLSVERIFY, -ETIMEDOUT, and -EINVAL when
 * c is already TLS; mpconn_conn_errmsg says why. */
MPCONN_API int mpconn_conn_start_tls(mpconn_conn *c, mpconn_tls_config *cfg,
                                     const char *server_name);
/* Ends TLS on c both ways (close_notify sent, the peer's awaited under c's
 * receive timeout); c then goes on in clear on the same fd, and bytes the
 * peer sent in clear behind its close_notify are kept for the next receive.
 * Messages the peer sent in TLS before it are kept too. The peer must
 * unwrap as well. -EINVAL when c is plain. */
MPCONN_API int mpconn_conn_unwrap_tls(mpconn_conn *c);
/* c's TLS engine, for mpconn_tls_version, _cipher, _peer_verified,
 * _peer_subject, _peer_san, _server_name, _session_reused; NULL when c is
 * plain. Owned by c, valid until it is freed or unwrapped. Not const: the
 * peer facts are made on first ask. */
MPCONN_API mpconn_tls *mpconn_conn_tls(const mpconn_conn *c);
/* The same for an async connection (<mpconn/async.h>): its engine once it
 * speaks TLS, NULL for a plain one; owned by a, valid until it closes. */
typedef struct mpconn_async mpconn_async;
MPCONN_API mpconn_tls *mpconn_async_tls(const mpconn_async *a);

#ifdef __cplusplus
}
#endif

#endif
