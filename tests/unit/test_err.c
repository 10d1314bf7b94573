/* Tests of the error table (include/mpconn.h, src/base/err.c): every code
 * of the library (TLS included) has its name and its text, errno codes are
 * named by the C library, and the message helpers format and truncate. */
#include "base/err.h"
#include "testlib.h"

#include <errno.h>

static const struct {
    int code;
    const char *name;
} codes[] = {
#define ROW(name, value, text) {MPCONN_##name, "MPCONN_" #name},
    MPCONN_ERROR_LIST(ROW)
#undef ROW
};
#define NCODES (sizeof codes / sizeof *codes)

TEST(every_code_has_name_and_text)
{
    CHECK_INT(NCODES, 28);
    for (size_t i = 0; i < NCODES; i++) {
        CHECK_STR(mpconn_errname(codes[i].code), codes[i].name);
        const char *text = mpconn_strerror(codes[i].code);
        CHECK(text && *text);
        CHECK(strcmp(text, "unknown error") != 0);
        /* the codes are the ones below MPCONN_ERR_BASE, one each, and the
         * TLS ones from MPCONN_ERR_BASE - 100 */
        if (i < 24)
            CHECK_INT(codes[i].code, MPCONN_ERR_BASE - 1 - (int)i);
        else
            CHECK_INT(codes[i].code, MPCONN_ERR_BASE - 100 - (int)(i - 24));
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(mpconn_strerror(codes[j].code), text) != 0);
    }
    CHECK_INT(MPCONN_ERR_EOF, -10001);
    CHECK_INT(MPCONN_ERR_UNHASHABLE, -10024);
    CHECK_STR(mpconn_strerror(MPCONN_ERR_EOFMSG), "got end of file during message");
}

TEST(tls_codes_are_in_the_table)
{
    CHECK_INT(MPCONN_ERR_TLS, -10100);
    CHECK_INT(MPCONN_ERR_TLSCONFIG, -10103);
    CHECK_STR(mpconn_errname(MPCONN_ERR_TLS), "MPCONN_ERR_TLS");
    CHECK_STR(mpconn_errname(MPCONN_ERR_TLSVERIFY), "MPCONN_ERR_TLSVERIFY");
    CHECK_STR(mpconn_errname(MPCONN_ERR_TRUNCATED), "MPCONN_ERR_TRUNCATED");
    CHECK_STR(mpconn_errname(MPCONN_ERR_TLSCONFIG), "MPCONN_ERR_TLSCONFIG");
    CHECK_STR(mpconn_strerror(MPCONN_ERR_TLSVERIFY), "TLS certificate verification failed");
}

TEST(own_names_are_not_errno_names)
{
    /* the 0.1 spelling of MPCONN_ERR_PROTO read as -EPROTO, another code */
    CHECK_STR(mpconn_errname(MPCONN_ERR_PROTO), "MPCONN_ERR_PROTO");
    CHECK_STR(mpconn_errname(-EPROTO), "EPROTO");
    for (size_t i = 0; i < NCODES; i++)
        CHECK(strncmp(codes[i].name, "MPCONN_ERR_", 11) == 0);
}

TEST(errno_codes_named_by_the_c_library)
{
    CHECK_STR(mpconn_errname(-ECONNREFUSED), "ECONNREFUSED");
    CHECK_STR(mpconn_errname(-ETIMEDOUT), "ETIMEDOUT");
    CHECK_STR(mpconn_errname(-ENOMEM), "ENOMEM");
    CHECK_STR(mpconn_strerror(-ENOENT), strerror(ENOENT));
    CHECK_STR(mpconn_errname(0), "0");
    CHECK_STR(mpconn_strerror(0), "success");
    CHECK_STR(mpconn_errname(MPCONN_ERR_BASE), "UNKNOWN");
    CHECK_STR(mpconn_errname(MPCONN_ERR_BASE - 25), "UNKNOWN");
    CHECK_STR(mpconn_errname(1), "UNKNOWN");
    CHECK_STR(mpconn_strerror(MPCONN_ERR_BASE - 25), "unknown error");
}

TEST(messages_format_and_truncate)
{
    char buf[16];
    CHECK_INT(mpci_err(buf, sizeof buf, MPCONN_ERR_ADDR, "bad %s %d", "port", 7), MPCONN_ERR_ADDR);
    CHECK_STR(buf, "bad port 7");
    CHECK_INT(mpci_err(buf, sizeof buf, -EINVAL, "%s", "a message longer than the buffer"),
              -EINVAL);
    CHECK_INT(strlen(buf), sizeof buf - 1);
    CHECK_INT(mpci_err(NULL, 0, -EIO, "nowhere"), -EIO);
    mpci_copy_msg(buf, sizeof buf, "copied");
    CHECK_STR(buf, "copied");
}

TESTLIB_MAIN
