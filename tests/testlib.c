/* The harness behind tests/testlib.h. */
#include "testlib.h"

#include <ctype.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TESTLIB_MAX 512

static struct {
    const char *name;
    testlib_fn fn;
} cases[TESTLIB_MAX];
static int ncases;

void testlib_register(const char *name, testlib_fn fn)
{
    if (ncases == TESTLIB_MAX) {
        fprintf(stderr, "too many test cases\n");
        exit(2);
    }
    cases[ncases].name = name;
    cases[ncases].fn = fn;
    ncases++;
}

int testlib_main(int argc, char **argv)
{
    if (argc < 2) {
        for (int i = 0; i < ncases; i++)
            printf("%s\n", cases[i].name);
        return 0;
    }
    for (int i = 0; i < ncases; i++) {
        if (strcmp(cases[i].name, argv[1]) == 0) {
            cases[i].fn();
            return 0;
        }
    }
    fprintf(stderr, "no test case named %s\n", argv[1]);
    return 2;
}

const char *testlib_data_path(const char *file)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", MPCONN_TEST_DATA, file);
    return path;
}

char *testlib_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "out of memory reading %s\n", path);
        exit(1);
    }
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

unsigned char *testlib_unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex) / 2;
    unsigned char *out = malloc(n + 1);
    CHECK(out != NULL);
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        CHECK(hi >= 0 && lo >= 0);
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    *len = n;
    return out;
}

static const char *find_key(const char *line, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(line, pat);
    return p ? p + strlen(pat) : NULL;
}

static void put_utf8(char **o, unsigned cp)
{
    unsigned char *q = (unsigned char *)*o;
    if (cp < 0x80) {
        *q++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *q++ = (unsigned char)(0xc0 | cp >> 6);
        *q++ = (unsigned char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *q++ = (unsigned char)(0xe0 | cp >> 12);
        *q++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        *q++ = (unsigned char)(0x80 | (cp & 0x3f));
    } else {
        *q++ = (unsigned char)(0xf0 | cp >> 18);
        *q++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        *q++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        *q++ = (unsigned char)(0x80 | (cp & 0x3f));
    }
    *o = (char *)q;
}

static unsigned hex4(const char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 4 | (unsigned)hexval(p[i]);
    return v;
}

char *testlib_json_str(const char *line, const char *key)
{
    const char *p = find_key(line, key);
    if (!p || *p != '"')
        return NULL;
    p++;
    char *out = malloc(strlen(p) + 1), *o = out;
    CHECK(out != NULL);
    while (*p && *p != '"') {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        p++;
        switch (*p) {
        case 'n':
            *o++ = '\n';
            p++;
            break;
        case 't':
            *o++ = '\t';
            p++;
            break;
        case 'r':
            *o++ = '\r';
            p++;
            break;
        case 'b':
            *o++ = '\b';
            p++;
            break;
        case 'f':
            *o++ = '\f';
            p++;
            break;
        case 'u': {
            unsigned cp = hex4(p + 1);
            p += 5;
            if (cp >= 0xd800 && cp < 0xdc00 && p[0] == '\\' && p[1] == 'u') {
                unsigned lo = hex4(p + 2);
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            put_utf8(&o, cp);
            break;
        }
        default: *o++ = *p++; break;
        }
    }
    *o = 0;
    return out;
}

long long testlib_json_int(const char *line, const char *key)
{
    const char *p = find_key(line, key);
    if (!p || !(isdigit((unsigned char)*p) || *p == '-'))
        return -1;
    return strtoll(p, NULL, 10);
}

unsigned char *testlib_json_hex(const char *line, const char *key, size_t *len)
{
    char *hex = testlib_json_str(line, key);
    *len = 0;
    if (!hex)
        return NULL;
    unsigned char *b = testlib_unhex(hex, len);
    free(hex);
    return b;
}

size_t testlib_read_lines(const char *file, char **text, char *lines[], size_t max)
{
    *text = testlib_read_file(testlib_data_path(file), NULL);
    size_t n = 0;
    for (char *p = *text; *p && n < max;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = 0;
        if (*p)
            lines[n++] = p;
        if (!nl)
            break;
        p = nl + 1;
    }
    return n;
}

double testlib_proc_cpu(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    CHECK(p != NULL);
    unsigned long ut = 0, st = 0;
    /* After ")": state, then fields 4..13, then utime (14) and stime (15). */
    CHECK(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

int testlib_count_dir(const char *path)
{
    DIR *d = opendir(path);
    CHECK(d != NULL);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - (strcmp(path, "/proc/self/fd") == 0);
}

ssize_t testlib_send_fds(int sock, const struct iovec *iov, int niov, const int *fds, int nfd,
                         int flags)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(TESTLIB_SEND_FDS_MAX * sizeof(int))];
    } ctl;
    CHECK(nfd > 0 && nfd <= TESTLIB_SEND_FDS_MAX);
    memset(&ctl, 0, sizeof ctl);
    struct msghdr m = {0};
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = (size_t)niov;
    m.msg_control = ctl.buf;
    m.msg_controllen = CMSG_SPACE((size_t)nfd * sizeof(int));
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN((size_t)nfd * sizeof(int));
    memcpy(CMSG_DATA(h), fds, (size_t)nfd * sizeof(int));
    return sendmsg(sock, &m, flags);
}

int testlib_tcp_connect(const char *address)
{
    const char *colon = strrchr(address, ':');
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_port = htons((uint16_t)atoi(colon ? colon + 1 : ""));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}
