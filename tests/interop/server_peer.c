/* A small server for tests/interop/test_servers_py.py: any kind, handler
 * form and address, serving ints (FRAMED: n -> n + 1; -1 makes the handler
 * fail, -2 kills it with SIGABRT), lines (RAW: a line comes back in upper
 * case) or datagrams (echoed; "who" also prints the sender's pid, uid
 * and gid). SIGTERM shuts it down; it then prints what
 * it counted and what was left: threads, descriptors, children. */
#define _GNU_SOURCE
#include <mpconn/server.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* In shared memory, so forked handlers count too. */
typedef struct counts {
    atomic_int active, max_active, served, errors;
} counts;

static counts *cnt;
static int slow_ms;
static int kind;

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - (strcmp(path, "/proc/self/fd") == 0); /* the DIR's own */
}

static void nap(void)
{
    if (slow_ms) {
        struct timespec ts = {slow_ms / 1000, (slow_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int setup(mpconn_request *r, void *data)
{
    (void)r;
    (void)data;
    int now = atomic_fetch_add(&cnt->active, 1) + 1;
    int m = atomic_load(&cnt->max_active);
    while (now > m && !atomic_compare_exchange_weak(&cnt->max_active, &m, now)) {
    }
    return 0;
}

static void finish(mpconn_request *r, void *data)
{
    (void)r;
    (void)data;
    atomic_fetch_sub(&cnt->active, 1);
    atomic_fetch_add(&cnt->served, 1);
}

/* The answer to one int (v is taken), or a failure. */
static int answer(mpconn_value *v, mpconn_value **back)
{
    int64_t n;
    int rc = mpconn_value_get_int(v, &n);
    mpconn_value_unref(v);
    if (rc < 0)
        return rc;
    if (n == -1)
        return -EINVAL;
    if (n == -2)
        abort();
    nap();
    *back = mpconn_value_int(n + 1);
    return *back ? 0 : -ENOMEM;
}

static int handle_framed(mpconn_request *r, void *data)
{
    (void)data;
    mpconn_conn *c = mpconn_request_conn(r);
    for (;;) {
        mpconn_value *v, *back;
        int rc = mpconn_conn_recv(c, &v);
        if (rc == MPCONN_ERR_EOF)
            return 0;
        if (rc < 0 || (rc = answer(v, &back)) < 0)
            return rc;
        rc = mpconn_conn_send(c, back);
        mpconn_value_unref(back);
        if (rc < 0)
            return rc;
    }
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -errno;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int handle_raw(mpconn_request *r, void *data)
{
    (void)data;
    int fd = mpconn_request_fd(r);
    char buf[4096];
    size_t have = 0;
    for (;;) {
        ssize_t k = read(fd, buf + have, sizeof buf - have);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? -errno : 0;
        have += (size_t)k;
        char *nl;
        while ((nl = memchr(buf, '\n', have))) {
            size_t len = (size_t)(nl - buf) + 1;
            if (len == 5 && memcmp(buf, "fail\n", 5) == 0)
                return -EINVAL;
            for (size_t i = 0; i < len; i++)
                buf[i] = (char)toupper((unsigned char)buf[i]);
            nap();
            int rc = write_all(fd, buf, len);
            if (rc < 0)
                return rc;
            memmove(buf, buf + len, have - len);
            have -= len;
        }
        if (have == sizeof buf)
            return -EMSGSIZE;
    }
}

static int setup_loop_raw(mpconn_request *r, void *data)
{
    mpconn_async_set_framing(mpconn_request_async(r), MPCONN_FRAME_DELIM, "\n", 1);
    return setup(r, data);
}

static int message_loop(mpconn_request *r, const void *msg, size_t len, void *data)
{
    (void)data;
    mpconn_async *a = mpconn_request_async(r);
    mpconn_value *v, *back;
    int rc = mpconn_async_decode(a, &v, msg, len);
    if (rc < 0 || (rc = answer(v, &back)) < 0)
        return rc;
    rc = mpconn_async_send_value(a, back);
    mpconn_value_unref(back);
    return rc;
}

static int message_loop_raw(mpconn_request *r, const void *msg, size_t len, void *data)
{
    (void)data;
    if (len == 4 && memcmp(msg, "fail", 4) == 0)
        return -EINVAL;
    char line[4097];
    if (len >= sizeof line)
        return -EMSGSIZE;
    for (size_t i = 0; i < len; i++)
        line[i] = (char)toupper(((const unsigned char *)msg)[i]);
    line[len] = '\n';
    return mpconn_async_send(mpconn_request_async(r), line, len + 1);
}

static int handle_dgram(mpconn_request *r, void *data)
{
    (void)data;
    size_t len;
    const void *p = mpconn_request_data(r, &len);
    if (len == 4 && memcmp(p, "fail", 4) == 0)
        return -EINVAL;
    if (len == 3 && memcmp(p, "who", 3) == 0) {
        pid_t pid;
        uid_t uid;
        gid_t gid;
        mpconn_request_peer(r, &pid, &uid, &gid);
        printf("who pid=%ld uid=%ld gid=%ld\n", (long)pid, (long)uid, (long)gid);
        fflush(stdout);
    }
    nap();
    int rc = mpconn_request_reply(r, p, len);
    return rc == MPCONN_ERR_ADDR ? 0 : rc; /* already reported */
}

static void on_error(mpconn_server *s, mpconn_request *r, int code, const char *message, void *data)
{
    (void)s;
    (void)r;
    (void)data;
    atomic_fetch_add(&cnt->errors, 1);
    printf("error %d %s: %s\n", code, mpconn_strerror(code), message);
    fflush(stdout);
}

static void on_term(mpconn_signal *sig, int signum, void *data)
{
    (void)sig;
    (void)signum;
    mpconn_server_shutdown(data);
}

static const char *arg(int argc, char **argv, const char *name)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: server_peer loop|threads|fork framed|raw ADDRESS [--cap N] "
                        "[--authkey K] [--slow MS] [--drain 1] [--max-datagram N]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    kind = strcmp(argv[1], "threads") == 0 ? MPCONN_SERVER_THREADS
           : strcmp(argv[1], "fork") == 0  ? MPCONN_SERVER_FORK
                                           : MPCONN_SERVER_LOOP;
    int raw = strcmp(argv[2], "raw") == 0;
    cnt = mmap(NULL, sizeof *cnt, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (cnt == MAP_FAILED)
        return 1;
    const char *v;
    slow_ms = (v = arg(argc, argv, "--slow")) ? atoi(v) : 0;
    int fds_before = count_dir("/proc/self/fd");

    mpconn_opts *o;
    mpconn_opts_new(&o);
    if ((v = arg(argc, argv, "--authkey")))
        mpconn_opts_set_authkey(o, v, strlen(v));
    mpconn_server_hooks h = {
        .size = sizeof h, .setup = setup, .finish = finish, .handle_error = on_error};
    int dgram = strncmp(argv[3], "udp:", 4) == 0 || strncmp(argv[3], "unixgram:", 9) == 0;
    if (dgram)
        h.handle = handle_dgram;
    else if (kind == MPCONN_SERVER_LOOP) {
        h.on_message = raw ? message_loop_raw : message_loop;
        if (raw)
            h.setup = setup_loop_raw;
    } else {
        h.handle = raw ? handle_raw : handle_framed;
    }
    char err[256];
    mpconn_server *s;
    int rc = mpconn_server_new(&s, argv[3], kind, raw ? MPCONN_HANDLER_RAW : MPCONN_HANDLER_FRAMED,
                               &h, NULL, o, err, sizeof err);
    mpconn_opts_free(o);
    if (rc < 0) {
        printf("server_new: %s: %s\n", mpconn_strerror(rc), err);
        return 1;
    }
    if ((v = arg(argc, argv, "--cap")))
        mpconn_server_set_max_connections(s, (size_t)atoi(v));
    if ((v = arg(argc, argv, "--drain")))
        mpconn_server_set_drain(s, atoi(v));
    if ((v = arg(argc, argv, "--max-datagram")))
        mpconn_server_set_max_datagram(s, (size_t)atoi(v));
    mpconn_signal *term;
    if ((rc = mpconn_signal_new(&term, mpconn_server_loop(s), SIGTERM, on_term, s)) < 0) {
        printf("signal: %s\n", mpconn_strerror(rc));
        return 1;
    }
    printf("listening on %s\n", mpconn_server_address(s));
    rc = mpconn_server_serve_forever(s);
    mpconn_signal_close(term, NULL);
    mpconn_server_free(s);
    int zombies = waitpid(-1, NULL, WNOHANG) >= 0 || errno != ECHILD;
    printf("done rc=%d served=%d max_active=%d errors=%d tasks=%d fds_left=%d children=%d\n", rc,
           atomic_load(&cnt->served), atomic_load(&cnt->max_active), atomic_load(&cnt->errors),
           count_dir("/proc/self/task"), count_dir("/proc/self/fd") - fds_before, zombies);
    return 0;
}
