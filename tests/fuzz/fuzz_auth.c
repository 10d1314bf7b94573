/* libFuzzer target for the authentication machine, both roles: the input
 * is a sequence of messages from a hostile peer (each a length byte and
 * that many bytes). Whatever arrives, the machine must end in a defined
 * state, never queue more than it can hold, never emit a message over the
 * cap, and stay failed once failed. */
#include "proto/auth.h"

#include <stdlib.h>
#include <string.h>

static const mpci_auth_key key = {(const uint8_t *)"key", 3, NULL, NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const digests[] = {"sha256", "md5", "sha384", "sha3_256", "sha3_384", "legacy"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int role = data[0] & 1 ? MPCI_AUTH_CLIENT : MPCI_AUTH_SERVER;
    const char *digest = digests[(data[0] >> 1) % 6];
    int allow_md5 = !(data[0] & 0x80);
    if (!allow_md5 && (strcmp(digest, "md5") == 0 || strcmp(digest, "legacy") == 0))
        digest = "sha256";
    static const uint8_t nonce[MPCI_NONCE_LEN] = "0123456789abcdefghijABCDEFGHIJ0123456789";
    mpci_auth a;
    if (mpci_auth_init(&a, role, &key, digest, allow_md5, nonce) != 0)
        abort();
    size_t pos = 1;
    int failed = 0;
    while (pos < size) {
        size_t n = data[pos++];
        /* a length byte of 255 stands for a message one over the cap */
        size_t len = n == 255 ? MPCI_AUTH_MSG_MAX + 1 : n;
        uint8_t msg[MPCI_AUTH_MSG_MAX + 1];
        size_t have = size - pos < len ? size - pos : len;
        memset(msg, 'x', len);
        memcpy(msg, data + pos, have);
        pos += have;
        const uint8_t *m;
        size_t ml;
        while (mpci_auth_next_out(&a, &m, &ml))
            if (ml > MPCI_AUTH_MSG_MAX + 16)
                abort();
        int st = mpci_auth_feed(&a, msg, len);
        if (st != MPCI_AUTH_NEED_INPUT && st != MPCI_AUTH_DONE && st != MPCI_AUTH_FAILED)
            abort();
        if (failed && st != MPCI_AUTH_FAILED)
            abort();
        if (st == MPCI_AUTH_FAILED) {
            failed = 1;
            if (a.code >= 0 || !a.errmsg[0])
                abort();
        }
    }
    return 0;
}
