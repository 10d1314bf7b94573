/* The TLS tests' certificates, made at run time with the openssl command
 * (once a day, in the build tree) and shared by the TLS test programs. */
#ifndef MPCONN_TESTS_TLS_CERTS_H
#define MPCONN_TESTS_TLS_CERTS_H

/* ca (RSA-2048) signs server (RSA-2048, for localhost, 127.0.0.1, ::1),
 * server_ec, client, expired, other (other.example); wild; future (valid
 * from 2099); bench (RSA-2048, also *.bench.test); rogue signs untrusted
 * and rogueclient; self is self-signed. Each NAME has NAME.pem and
 * NAME.key. The set is tests/tls-certs.sh's. */
/* The directory, made on first use; exits 77 (skipped) without openssl. */
const char *cert_dir(void);
/* A path in it; a few rotate, so several may be in use in one call. */
const char *cert(const char *file);

/* A TLS config of role (MPCONN_TLS_SERVER or _CLIENT, <mpconn/tls.h>): the
 * server certificate, or trust in the CA that signed it. The caller's. */
struct mpconn_tls_config *cert_config(int role);

#endif
