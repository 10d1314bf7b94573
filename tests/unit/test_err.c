/* Tests of the error table (include/mpconn.h, src/base/err.c): every code
 * of the library has its name and its text, errno codes are named by the
 * C library, and the message helpers format and truncate. */
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
    CHECK_INT(NCODES, 24);
    for (size_t i = 0; i < NCODES; i++) {
        CHECK_STR(mpconn_errname(codes[i].code), codes[i].name);
        const char *text = mpconn_strerror(codes[i].code);
        CHECK(text && *text);
        CHECK(strcmp(text, "unknown error") != 0);
        /* the codes are the ones below MPCONN_ERR_BASE, one each */
        CHECK_INT(codes[i].code, MPCONN_ERR_BASE - 1 - (int)i);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(mpconn_strerror(codes[j].code), text) != 0);
    }
    CHECK_INT(MPCONN_ERR_EOF, -10001);
    CHECK_INT(MPCONN_ERR_UNHASHABLE, -10024);
    CHECK_STR(mpconn_strerror(MPCONN_ERR_EOFMSG), "got end of file during message");
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
