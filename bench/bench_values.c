/* make bench, values part: pickle decode and encode of a small dict and of a
 * ~1 MiB structure (the pickles come from CPython: bench_py.py --gen),
 * objects ping-ponged over a socketpair against raw 64-byte messages, and
 * the memory a decoded list of ints takes per int. */
#define _GNU_SOURCE
#include "mpconn.h"
#include "bench_util.h"

#include <sys/socket.h>

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_values: cannot open %s: %s\n", path, strerror(errno));
        exit(1);
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf)
            bench_die("malloc", -ENOMEM);
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    fclose(f);
    *len = n;
    return buf;
}

typedef struct codec {
    const uint8_t *pickle;
    size_t len;
    mpconn_value *value;
} codec;

static int op_decode(void *p)
{
    codec *c = p;
    mpconn_value *v;
    int r = mpconn_value_decode(&v, c->pickle, c->len, NULL, NULL, 0);
    if (r < 0)
        return r;
    mpconn_value_unref(v);
    return 0;
}

static int op_encode(void *p)
{
    codec *c = p;
    void *out;
    size_t len;
    int r = mpconn_value_encode(c->value, 4, &out, &len);
    if (r < 0)
        return r;
    free(out);
    return 0;
}

static void bench_codec(const char *name, const char *path, double scale, const char *unit)
{
    codec c = {0};
    size_t len;
    uint8_t *pickle = read_file(path, &len);
    c.pickle = pickle;
    c.len = len;
    char err[256] = "";
    int r = mpconn_value_decode(&c.value, pickle, len, NULL, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, "bench_values: decoding %s: %s\n", path, err);
        bench_die("mpconn_value_decode", r);
    }
    char id[64];
    const char *const impls[] = {"mpconn"};
    bench_op ops[] = {op_decode};
    void *const ctxs[] = {&c};
    snprintf(id, sizeof id, "pickle_%s_decode", name);
    bench_compare(id, 1, impls, ops, ctxs, scale, unit, 10000000);
    /* The re-encoded value must decode to an equal value. */
    void *out;
    size_t olen;
    mpconn_value *back = NULL;
    if ((r = mpconn_value_encode(c.value, 4, &out, &olen)) < 0)
        bench_die("mpconn_value_encode", r);
    if ((r = mpconn_value_decode(&back, out, olen, NULL, err, sizeof err)) < 0 ||
        !mpconn_value_equal(back, c.value)) {
        fprintf(stderr, "bench_values: %s does not survive encode+decode: %s\n", name, err);
        exit(1);
    }
    mpconn_value_unref(back);
    free(out);
    ops[0] = op_encode;
    snprintf(id, sizeof id, "pickle_%s_encode", name);
    bench_compare(id, 1, impls, ops, ctxs, scale, unit, 10000000);
    mpconn_value_unref(c.value);
    free(pickle);
}

typedef struct pingpong {
    int fd;            /* raw */
    mpconn_conn *conn; /* objects */
    mpconn_value *value;
    uint8_t buf[68];
} pingpong;

static int op_raw_pingpong(void *p)
{
    pingpong *s = p;
    raw_put_header(s->buf, 64);
    int r = raw_write_all(s->fd, s->buf, 68);
    if (r < 0)
        return r;
    long n = raw_recv(s->fd, s->buf + 4, 64);
    return n == 64 ? 0 : n < 0 ? (int)n : -EPROTO;
}

static int op_obj_pingpong(void *p)
{
    pingpong *s = p;
    mpconn_value *v;
    int r = mpconn_conn_send(s->conn, s->value);
    if (r == 0)
        r = mpconn_conn_recv(s->conn, &v);
    if (r < 0)
        return r;
    mpconn_value_unref(v);
    return 0;
}

/* Objects (decoded and re-encoded on both sides) against the raw echo of
 * 64-byte messages, peers in forked children. */
static void bench_objects(const char *small_path)
{
    pingpong raw = {.fd = -1}, obj = {.fd = -1};
    size_t len;
    uint8_t *pickle = read_file(small_path, &len);
    int r = mpconn_value_decode(&obj.value, pickle, len, NULL, NULL, 0);
    free(pickle);
    if (r < 0)
        bench_die("mpconn_value_decode", r);
    memset(raw.buf, 'x', sizeof raw.buf);

    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
        bench_die("socketpair", -errno);
    pid_t p1 = fork();
    if (p1 < 0)
        bench_die("fork", -errno);
    if (p1 == 0) {
        bench_close_others(fds[1]);
        uint8_t b[68];
        long n;
        while ((n = raw_recv(fds[1], b + 4, 64)) >= 0) {
            raw_put_header(b, (size_t)n);
            if (raw_write_all(fds[1], b, (size_t)n + 4) < 0)
                break;
        }
        _exit(0);
    }
    close(fds[1]);
    raw.fd = fds[0];

    mpconn_conn *a, *b;
    if ((r = mpconn_pipe(&a, &b, 1, NULL)) < 0)
        bench_die("mpconn_pipe", r);
    pid_t p2 = fork();
    if (p2 < 0)
        bench_die("fork", -errno);
    if (p2 == 0) {
        bench_close_others(mpconn_conn_fileno(b));
        mpconn_value *v;
        while (mpconn_conn_recv(b, &v) == 0) {
            r = mpconn_conn_send(b, v);
            mpconn_value_unref(v);
            if (r < 0)
                break;
        }
        _exit(0);
    }
    mpconn_conn_free(b);
    obj.conn = a;

    const char *const impls[] = {"raw", "mpconn"};
    const bench_op ops[] = {op_raw_pingpong, op_obj_pingpong};
    void *const ctxs[] = {&raw, &obj};
    bench_compare("obj_rtt_socketpair", 2, impls, ops, ctxs, 1e-3, "k round trips/s", 10000000);
    close(raw.fd);
    mpconn_conn_free(obj.conn);
    mpconn_value_unref(obj.value);
    bench_reap(p1);
    bench_reap(p2);
}

/* This process's own peak RSS in KiB: VmHWM belongs to the address space,
 * where ru_maxrss also keeps the peak of the process that forked it. */
static long peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

/* bench_values --int-memory FILE: in a fresh process (so no memory freed
 * earlier is reused), prints the peak RSS growth in KiB while decoding FILE
 * and the length of the list it holds. */
static int int_memory_child(const char *path)
{
    size_t len;
    uint8_t *pickle = read_file(path, &len);
    long before = peak_rss_kib();
    mpconn_value *v = NULL;
    int r = mpconn_value_decode(&v, pickle, len, NULL, NULL, 0);
    long after = peak_rss_kib();
    if (r < 0 || before < 0 || after < 0)
        return 1;
    printf("%ld %zu\n", after - before, mpconn_value_len(v));
    return 0;
}

/* Peak RSS growth per int decoding a list of ints, as bench_py.py measures
 * pickle.loads. */
static void bench_int_memory(const char *name, const char *path)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'/proc/%ld/exe' --int-memory '%s'", (long)getpid(), path);
    FILE *f = popen(cmd, "r");
    long kib = -1;
    size_t count = 0;
    if (!f || fscanf(f, "%ld %zu", &kib, &count) != 2 || kib < 0 || !count)
        bench_die("decoding the int list", -EPROTO);
    pclose(f);
    double per = (double)kib * 1024.0 / (double)count;
    char id[64];
    snprintf(id, sizeof id, "mem_ints_%s", name);
    bench_result(id, "mpconn", per, per, "B/int");
}

/* A hostile pickle under 1 KiB: two separately built equal tuple DAGs 26
 * levels deep (4^26 leaves as trees) as keys of one dict. Reported as
 * milliseconds per decode (the target: under 10). */
static void bench_dag_keys(void)
{
    static uint8_t pk[1024];
    size_t n = 0;
    uint32_t memo = 0;
    memcpy(pk, "\x80\x04}(", 4);
    n = 4;
    for (int key = 0; key < 2; key++) {
        memcpy(pk + n, "K\x01", 2);
        n += 2;
        for (int k = 0; k < 52; k++, memo++) {
            uint8_t op[7] = {0x94, 'j', (uint8_t)memo, (uint8_t)(memo >> 8), 0, 0, 0x86};
            memcpy(pk + n, op, sizeof op);
            n += sizeof op;
        }
        memcpy(pk + n, key ? "K\x02" : "K\x01", 2);
        n += 2;
    }
    memcpy(pk + n, "u.", 2);
    n += 2;
    codec c = {pk, n, NULL};
    double rates[BENCH_MAX_REPS], best, median;
    for (int r = 0; r < bench_reps; r++)
        rates[r] = bench_run_for(op_decode, &c, bench_secs, 1000000);
    bench_stats(rates, bench_reps, &best, &median);
    bench_result("hostile_dag_keys", "mpconn", 1000.0 / best, 1000.0 / median, "ms");
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--int-memory") == 0)
        return int_memory_child(argv[2]);
    bench_parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    const char *dir = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--data") == 0)
            dir = argv[i + 1];
    if (!dir) {
        fprintf(stderr, "usage: bench_values [--reps N] [--time S] --data DIR\n"
                        "DIR holds small.pickle and big.pickle (bench_py.py --gen DIR)\n");
        return 2;
    }
    char small[512], big[512];
    snprintf(small, sizeof small, "%s/small.pickle", dir);
    snprintf(big, sizeof big, "%s/big.pickle", dir);
    bench_codec("small", small, 1e-3, "k ops/s");
    bench_codec("big", big, 1.0, "ops/s");
    char ints[512];
    snprintf(ints, sizeof ints, "%s/ints_small.pickle", dir);
    bench_int_memory("small", ints);
    snprintf(ints, sizeof ints, "%s/ints_wide.pickle", dir);
    bench_int_memory("wide", ints);
    bench_dag_keys();
    bench_objects(small);
    return 0;
}
