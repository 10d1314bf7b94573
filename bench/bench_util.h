/* Helpers shared by the C benchmarks: a clock, best-of-N repetitions that
 * interleave the implementations compared, the raw framing done by hand (the
 * baseline), fork helpers and the result lines bench/run.sh reads. */
#ifndef MPCONN_BENCH_UTIL_H
#define MPCONN_BENCH_UTIL_H

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_MAX_REPS 15
#define BENCH_MAX_IMPLS 8

/* Repetitions and seconds per repetition; set from the command line. */
static int bench_reps = 5;
static double bench_secs = 0.15;

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void bench_die(const char *what, int code)
{
    fprintf(stderr, "bench: %s failed: %d (%s)\n", what, code,
            code < 0 && code > -4096 ? strerror(-code) : "mpconn error");
    exit(1);
}

/* One operation of a measured implementation; returns < 0 on failure. */
typedef int (*bench_op)(void *ctx);

/* Runs op for about secs seconds (at least once, at most max_ops times) and
 * returns operations per second. The clock is read once per batch, and the
 * batch grows until it lasts about a millisecond, so cheap operations are
 * not dominated by clock reads. */
static inline double bench_run_for(bench_op op, void *ctx, double secs, long max_ops)
{
    long n = 0, batch = 1;
    double t0 = bench_now(), t = t0, tb = t0;
    while (n < max_ops) {
        for (long k = 0; k < batch; k++) {
            int r = op(ctx);
            if (r < 0)
                bench_die("operation", r);
        }
        n += batch;
        t = bench_now();
        if (t - t0 >= secs)
            break;
        if (t - tb < 1e-3 && batch < (1L << 20))
            batch *= 2;
        tb = t;
    }
    return (double)n / (t - t0);
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Best (highest) and median of n rates. */
static inline void bench_stats(const double *v, int n, double *best, double *median)
{
    double s[BENCH_MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *v);
    qsort(s, (size_t)n, sizeof *s, bench_cmp_double);
    *best = s[n - 1];
    *median = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* The line bench/run.sh collects: id, implementation, best, median, unit. */
static inline void bench_result(const char *id, const char *impl, double best, double median,
                                const char *unit)
{
    printf("RESULT\t%s\t%s\t%.6g\t%.6g\t%s\n", id, impl, best, median, unit);
    fflush(stdout);
}

/* Measures n implementations of the same thing, interleaving their
 * repetitions so background load hits all of them alike: warm-up, then
 * bench_reps rounds of one repetition each. Rates are multiplied by scale
 * (e.g. bytes per operation) before they are reported. */
static inline void bench_compare(const char *id, int n, const char *const *impls,
                                 const bench_op *ops, void *const *ctxs, double scale,
                                 const char *unit, long max_ops)
{
    double rates[BENCH_MAX_IMPLS][BENCH_MAX_REPS];
    if (n > BENCH_MAX_IMPLS)
        bench_die("bench_compare: too many implementations", -EINVAL);
    for (int i = 0; i < n; i++)
        bench_run_for(ops[i], ctxs[i], bench_secs / 3, max_ops);
    for (int rep = 0; rep < bench_reps; rep++)
        for (int i = 0; i < n; i++)
            rates[i][rep] = bench_run_for(ops[i], ctxs[i], bench_secs, max_ops) * scale;
    for (int i = 0; i < n; i++) {
        double best, median;
        bench_stats(rates[i], bench_reps, &best, &median);
        bench_result(id, impls[i], best, median, unit);
    }
}

static inline void bench_parse_args(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--reps") == 0)
            bench_reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--time") == 0)
            bench_secs = atof(argv[i + 1]);
    }
    if (bench_reps < 1)
        bench_reps = 1;
    if (bench_reps > BENCH_MAX_REPS)
        bench_reps = BENCH_MAX_REPS;
    if (bench_secs <= 0 || bench_secs > 10)
        bench_secs = 0.15;
}

/* 1 when part is named on the command line (the arguments that are not
 * "--option value"), or when no part is named at all. */
static inline int bench_wants(int argc, char **argv, const char *part)
{
    int any = 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) == 0) {
            i++;
            continue;
        }
        any = 1;
        if (strcmp(argv[i], part) == 0)
            return 1;
    }
    return !any;
}

/* The lines of the rows whose every repetition is kept (run.sh turns them
 * into median and range): one sample, or what could not be measured. */
static inline void bench_sample(const char *id, const char *col, double v, const char *unit)
{
    printf("SAMPLE\t%s\t%s\t%.6g\t%s\n", id, col, v, unit);
    fflush(stdout);
}

static inline void bench_missing(const char *what)
{
    printf("MISSING\t%s\n", what);
    fflush(stdout);
}

static inline void bench_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ------------------------------------------------------ raw framing */

static inline int raw_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* 1 when len bytes were read, 0 at end of stream before the first byte. */
static inline int raw_read_exact(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return got == 0 ? 0 : -EPIPE;
        got += (size_t)n;
    }
    return 1;
}

/* The 4-byte big-endian header of messages below 2 GiB. */
static inline void raw_put_header(uint8_t *p, size_t len)
{
    p[0] = (uint8_t)(len >> 24);
    p[1] = (uint8_t)(len >> 16);
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
}

/* Reads one message into buf (cap bytes): exactly the 4-byte header, then
 * exactly the payload. Returns its length, or -EPIPE at end of stream, or a
 * negative errno. */
static inline long raw_recv(int fd, uint8_t *buf, size_t cap)
{
    uint8_t h[4];
    int r = raw_read_exact(fd, h, 4);
    if (r <= 0)
        return r == 0 ? -EPIPE : r;
    size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    if (len > cap)
        return -EMSGSIZE;
    r = raw_read_exact(fd, buf, len);
    return r < 0 ? r : (long)len;
}

/* ------------------------------------------------------ processes */

/* In a freshly forked child: closes every inherited fd but keep, so a peer
 * sees end of stream as soon as the parent closes its end; bounds its life. */
static inline void bench_close_others(int keep)
{
    /* A peer never outlives the benchmark: it dies with its parent, and in
     * any case after five minutes. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(300);
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 4096)
        max = 4096;
    for (int fd = 3; fd < max; fd++)
        if (fd != keep)
            close(fd);
}

static inline void bench_reap(pid_t pid)
{
    if (pid <= 0)
        return;
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

/* Reads the first line a server child writes on fd (the read end of its
 * pipe, taken): its address, into addr without the newline. When none
 * comes, says "<who> did not start", kills and reaps pid: -1. */
static inline int bench_child_addr(int fd, pid_t pid, char *addr, size_t cap, const char *who)
{
    FILE *f = fdopen(fd, "r");
    if (!f || !fgets(addr, (int)cap, f)) {
        fprintf(stderr, "%s did not start\n", who);
        if (f)
            fclose(f);
        else
            close(fd);
        kill(pid, SIGKILL);
        bench_reap(pid);
        return -1;
    }
    fclose(f);
    addr[strcspn(addr, "\n")] = 0;
    return 0;
}

/* CPU time used so far, in nanoseconds: this process's (pid 0), or a
 * child's from /proc/PID/schedstat; -1 when unknown. */
static inline double bench_cpu_ns(pid_t pid)
{
    if (pid == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pid);
    FILE *f = fopen(path, "r");
    double ns = -1;
    if (f && fscanf(f, "%lf", &ns) != 1)
        ns = -1;
    if (f)
        fclose(f);
    return ns;
}

/* Peak resident set of this process in KiB. */
static inline long bench_maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

#endif
