/* A small test harness: each TEST(name) is one case; the binary runs the case
 * named on its command line (CTest runs each case as its own entry), or lists
 * them with no argument. A failed CHECK prints where and exits 1. */
#ifndef MPCONN_TESTLIB_H
#define MPCONN_TESTLIB_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef void (*testlib_fn)(void);
void testlib_register(const char *name, testlib_fn fn);
int testlib_main(int argc, char **argv);

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void testlib_reg_##name(void)                              \
    {                                                                                              \
        testlib_register(#name, test_##name);                                                      \
    }                                                                                              \
    static void test_##name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long testlib_a = (long long)(a), testlib_b = (long long)(b);                          \
        if (testlib_a != testlib_b) {                                                              \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b,  \
                    testlib_a, testlib_b);                                                         \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *testlib_a = (a), *testlib_b = (b);                                             \
        if (!testlib_a || !testlib_b || strcmp(testlib_a, testlib_b) != 0) {                       \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a,  \
                    #b, testlib_a ? testlib_a : "(null)", testlib_b ? testlib_b : "(null)");       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

/* Test data: the directory holding tests/data (set by CMake). */
const char *testlib_data_path(const char *file);
/* Reads a whole file; aborts the test on failure. Caller frees. */
char *testlib_read_file(const char *path, size_t *len);
/* Decodes hex into a new buffer; caller frees. */
unsigned char *testlib_unhex(const char *hex, size_t *len);
/* Extracts the string value of "key" from one JSON line (flat objects of
 * strings, numbers and null, as in the tests/data jsonl files); NULL when absent or
 * null. Caller frees. Handles \" \\ \uXXXX escapes. */
char *testlib_json_str(const char *line, const char *key);
/* The integer value of "key" in one JSON line; -1 when absent. */
long long testlib_json_int(const char *line, const char *key);
/* The bytes a hex string value of "key" holds (caller frees; *len their
 * count), NULL when absent or null. */
unsigned char *testlib_json_hex(const char *line, const char *key, size_t *len);
/* The non-empty lines of a file in tests/data, at most max, NUL-terminated
 * in place in *text (caller frees *text). Returns how many. */
size_t testlib_read_lines(const char *file, char **text, char *lines[], size_t max);

/* CPU seconds another process has used (utime + stime of /proc/PID/stat). */
double testlib_proc_cpu(pid_t pid);

/* Entries of a directory but "." and ".."; for /proc/self/fd, without the
 * descriptor that reads it. */
int testlib_count_dir(const char *path);

/* The iov bytes with nfd descriptors attached (SCM_RIGHTS, at most
 * TESTLIB_SEND_FDS_MAX), as a Unix socket peer passes them; sendmsg's
 * result. */
#define TESTLIB_SEND_FDS_MAX 8
ssize_t testlib_send_fds(int sock, const struct iovec *iov, int niov, const int *fds, int nfd,
                         int flags);

/* A plain TCP socket connected to 127.0.0.1 at the port that ends
 * address ("127.0.0.1:PORT", "tls:127.0.0.1:PORT"): blocking, close on
 * exec; -1 when it cannot connect. */
int testlib_tcp_connect(const char *address);

#define TESTLIB_MAIN                                                                               \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        return testlib_main(argc, argv);                                                           \
    }

#endif
