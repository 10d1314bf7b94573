/* make bench, printing part: repr of big ints at CPython's digit limit and
 * at a million digits (the limit lifted), how the time grows between them,
 * and repr of a 68-byte pickle that expands without bound. Times in
 * seconds (microseconds for the small int), the best of a few runs. */
#include "mpconn.h"
#include "bench_util.h"

#include <math.h>

typedef struct job {
    const mpconn_value *v;
    const mpconn_opts *opts;
    int want; /* the return code expected */
} job;

static int op_repr(void *p)
{
    job *j = p;
    char *s = NULL;
    size_t len;
    int r = mpconn_value_repr_opts(j->v, j->opts, &s, &len, NULL, 0);
    free(s);
    return r == j->want ? 0 : (r < 0 ? r : -EINVAL);
}

/* Seconds per repr: the best of up to runs tries (and of bench_reps). */
static double seconds(job *j, int runs, double *median)
{
    double rates[BENCH_MAX_REPS], best;
    int n = runs < bench_reps ? runs : bench_reps;
    for (int i = 0; i < n; i++)
        rates[i] = bench_run_for(op_repr, j, bench_secs, 1000000);
    bench_stats(rates, n, &best, median);
    *median = 1 / *median;
    return 1 / best;
}

/* An int of n decimal digits, all 7s, through the parser. */
static mpconn_value *decimal(size_t n, const mpconn_opts *o)
{
    char *t = malloc(n);
    if (!t)
        bench_die("malloc", -ENOMEM);
    memset(t, '7', n);
    mpconn_value *v = NULL;
    int r = mpconn_value_parse_opts(&v, t, n, o, NULL, 0);
    free(t);
    if (r < 0)
        bench_die("mpconn_value_parse_opts", r);
    return v;
}

int main(int argc, char **argv)
{
    bench_parse_args(argc, argv);
    mpconn_opts *lifted = NULL, *cut = NULL;
    if (mpconn_opts_new(&lifted) < 0 || mpconn_opts_new(&cut) < 0)
        bench_die("mpconn_opts_new", -ENOMEM);
    mpconn_opts_set_print_limits(lifted, 0, MPCONN_UNLIMITED);
    mpconn_opts_set_print_limits(cut, (size_t)1 << 20, 0);
    mpconn_opts_set_print_truncate(cut, 1);

    const size_t small_n = 4300, big_n = 1000000;
    mpconn_value *small = decimal(small_n, NULL), *big = decimal(big_n, lifted);
    job js = {small, NULL, 0}, jb = {big, lifted, 0};
    double med_s, med_b;
    double ts = seconds(&js, BENCH_MAX_REPS, &med_s), tb = seconds(&jb, 3, &med_b);
    bench_result("print_int_4300", "mpconn", ts * 1e6, med_s * 1e6, "us");
    bench_result("print_int_1M", "mpconn", tb, med_b, "s");
    /* Quadratic time would make this 2. */
    double k = log((double)big_n / small_n);
    bench_result("print_int_growth", "mpconn", log(tb / ts) / k, log(med_b / med_s) / k,
                 "exponent");

    /* x = (x, x) nested 32 deep from [], as the 68-byte pickle makes it. */
    static const char head[] = "\x80\x02]", tail[] = ".";
    uint8_t pk[68];
    memcpy(pk, head, 3);
    for (int i = 0; i < 32; i++)
        memcpy(pk + 3 + 2 * i, "2\x86", 2);
    memcpy(pk + 67, tail, 1);
    mpconn_value *bomb = NULL;
    int r = mpconn_value_decode(&bomb, pk, sizeof pk, NULL, NULL, 0);
    if (r < 0)
        bench_die("mpconn_value_decode", r);
    job jd = {bomb, NULL, MPCONN_ERR_LIMIT}, jc = {bomb, cut, 1};
    double med_d, med_c;
    double td = seconds(&jd, 3, &med_d), tc = seconds(&jc, BENCH_MAX_REPS, &med_c);
    bench_result("print_bomb", "mpconn", td, med_d, "s");
    bench_result("print_bomb_cut", "mpconn", tc, med_c, "s");

    mpconn_value_unref(small);
    mpconn_value_unref(big);
    mpconn_value_unref(bomb);
    mpconn_opts_free(lifted);
    mpconn_opts_free(cut);
    return 0;
}
