/* Decimal conversion of big integers, both ways, in less than quadratic
 * time: divide and conquer over the powers 10^(LEAF * 2^k), with libcrypto's
 * BIGNUM doing the multiplications (Karatsuba) and the divisions done as
 * multiplications by a reciprocal (Barrett), refined level to level. */
#include "proto/text_internal.h"

#include <errno.h>
#include <math.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#define LEAF 512         /* digits converted directly (quadratic, but small) */
#define MAXLEV 48        /* LEAF << 48 digits is more than memory holds */
#define RECIP_BITS 32768 /* below this, BN_div is as quick as a reciprocal */
#define SPLIT_WORDS 16   /* shorter operands are multiplied as they are */

struct mpci_powers {
    BN_CTX *ctx;
    BIGNUM *p[MAXLEV]; /* 10^(LEAF << k), made on first use */
    BIGNUM *r[MAXLEV]; /* floor(2^s[k] / p[k]); NULL: divide with BN_div */
    int s[MAXLEV];     /* 2 * bits of p[k] */
    int n;             /* p[0..n) made */
};

void mpci_powers_free(mpci_powers *pw)
{
    if (!pw)
        return;
    for (int k = 0; k < pw->n; k++) {
        BN_free(pw->p[k]);
        BN_free(pw->r[k]);
    }
    BN_CTX_free(pw->ctx);
    free(pw);
}

static mpci_powers *powers_get(mpci_powers **pw)
{
    if (!*pw) {
        mpci_powers *n = calloc(1, sizeof *n);
        if (n && !(n->ctx = BN_CTX_new())) {
            free(n);
            n = NULL;
        }
        *pw = n;
    }
    return *pw;
}

static int words(const BIGNUM *a)
{
    return (BN_num_bits(a) + BN_BITS2 - 1) / BN_BITS2;
}

/* r = a * b, r distinct from both. BN_mul is Karatsuba only for operands
 * whose lengths differ by at most one word, and schoolbook otherwise. So
 * the shorter operand gets a bit set in the longer one's top word, making
 * the lengths equal, and that bit's share of the product is taken back. */
static int mul_even(BIGNUM *r, const BIGNUM *a, const BIGNUM *b, BN_CTX *ctx)
{
    if (words(a) < words(b)) {
        const BIGNUM *t = a;
        a = b;
        b = t;
    }
    if (words(a) - words(b) <= 1 || words(b) < SPLIT_WORDS)
        return BN_mul(r, a, b, ctx);
    int k = (words(a) - 1) * BN_BITS2;
    BN_CTX_start(ctx);
    BIGNUM *t = BN_CTX_get(ctx);
    int ok = t && BN_copy(t, b) && BN_set_bit(t, k) && BN_mul(r, a, t, ctx) && BN_lshift(t, a, k) &&
             BN_sub(r, r, t);
    BN_CTX_end(ctx);
    return ok;
}

/* r = a * b, r distinct from both. A factor much longer than the other is
 * cut into pieces as long as the short one. That costs an addition over
 * the whole result per piece, so it pays only while the pieces are fewer
 * than the short factor's words; beyond, schoolbook is below n^1.5. */
static int mul(BIGNUM *r, const BIGNUM *a, const BIGNUM *b, BN_CTX *ctx)
{
    if (words(a) < words(b)) {
        const BIGNUM *t = a;
        a = b;
        b = t;
    }
    int aw = words(a), bw = words(b);
    if (bw < SPLIT_WORDS || aw / bw >= bw)
        return BN_mul(r, a, b, ctx);
    if (aw <= 2 * bw)
        return mul_even(r, a, b, ctx);
    int alen = BN_num_bytes(a), piece = bw * (BN_BITS2 / 8);
    unsigned char *le = malloc((size_t)alen);
    int ok = le && BN_bn2lebinpad(a, le, alen) == alen;
    BN_CTX_start(ctx);
    BIGNUM *part = BN_CTX_get(ctx), *prod = BN_CTX_get(ctx);
    ok = ok && prod;
    if (ok)
        BN_zero(r);
    for (int off = 0; ok && off < alen; off += piece) {
        int n = alen - off < piece ? alen - off : piece;
        ok = BN_lebin2bn(le + off, n, part) && mul_even(prod, part, b, ctx) &&
             BN_lshift(prod, prod, off * 8) && BN_add(r, r, prod);
    }
    BN_CTX_end(ctx);
    free(le);
    return ok;
}

/* p[k], making the powers up to it. */
static const BIGNUM *power(mpci_powers *pw, int k)
{
    while (pw->n <= k) {
        BIGNUM *p = BN_new();
        int ok = p != NULL;
        if (ok && pw->n == 0) {
            BIGNUM *ten = BN_new();
            ok = ten && BN_set_word(ten, 10) && BN_set_word(p, LEAF) && BN_exp(p, ten, p, pw->ctx);
            BN_free(ten);
        } else if (ok) {
            ok = mul(p, pw->p[pw->n - 1], pw->p[pw->n - 1], pw->ctx);
        }
        if (!ok) {
            BN_free(p);
            return NULL;
        }
        pw->p[pw->n] = p;
        pw->r[pw->n] = NULL;
        pw->s[pw->n] = 2 * BN_num_bits(p);
        pw->n++;
    }
    return pw->p[k];
}

/* Makes r[k] = floor(2^s / P) for a large p[k] = P. From r[k-1], whose
 * square approximates it to about half its bits, one Newton step
 * A' = 2A - P A^2 / 2^s gives all but a few units, which a loop settles;
 * so each level costs a few multiplications, not a long division. */
static int reciprocal(mpci_powers *pw, int k)
{
    const BIGNUM *P = pw->p[k];
    int s = pw->s[k], ok;
    if (pw->r[k] || BN_num_bits(P) < RECIP_BITS)
        return 1;
    if (k > 0 && !reciprocal(pw, k - 1)) /* the top level is divided first */
        return 0;
    BIGNUM *A = BN_new();
    BN_CTX *ctx = pw->ctx;
    BN_CTX_start(ctx);
    BIGNUM *T = BN_CTX_get(ctx), *U = BN_CTX_get(ctx), *E = BN_CTX_get(ctx);
    ok = A && E && BN_set_bit(E, s);
    if (ok && (k == 0 || !pw->r[k - 1])) {
        ok = BN_div(A, NULL, E, P, ctx);
    } else if (ok) {
        int sh = s - 2 * pw->s[k - 1];
        ok = mul(A, pw->r[k - 1], pw->r[k - 1], ctx) &&
             (sh >= 0 ? BN_lshift(A, A, sh) : BN_rshift(A, A, -sh)) && mul(T, A, A, ctx) &&
             mul(U, T, P, ctx) && BN_rshift(U, U, s) && BN_lshift1(A, A) && BN_sub(A, A, U);
    }
    /* Settle: A*P <= 2^s < (A+1)*P. */
    ok = ok && mul(U, A, P, ctx);
    while (ok && BN_cmp(U, E) > 0)
        ok = BN_sub_word(A, 1) && BN_sub(U, U, P);
    while (ok && BN_sub(T, E, U) && BN_cmp(T, P) >= 0)
        ok = BN_add_word(A, 1) && BN_add(U, U, P);
    BN_CTX_end(ctx);
    if (!ok) {
        BN_free(A);
        return 0;
    }
    pw->r[k] = A;
    return 1;
}

/* q, r = divmod(x, p[k]) for x < p[k]^2. */
static int divmod(mpci_powers *pw, BIGNUM *q, BIGNUM *r, const BIGNUM *x, int k)
{
    const BIGNUM *P = pw->p[k];
    if (!reciprocal(pw, k))
        return 0;
    if (!pw->r[k])
        return BN_div(q, r, x, P, pw->ctx);
    /* x * r[k] / 2^s is x / P less at most 2, less what r[k] rounds off. */
    int ok = mul(q, x, pw->r[k], pw->ctx) && BN_rshift(q, q, pw->s[k]) && mul(r, q, P, pw->ctx) &&
             BN_sub(r, x, r);
    while (ok && BN_is_negative(r))
        ok = BN_add(r, r, P) && BN_sub_word(q, 1);
    while (ok && BN_cmp(r, P) >= 0)
        ok = BN_sub(r, r, P) && BN_add_word(q, 1);
    return ok;
}

static void put_zeros(mpci_sbuf *b, size_t n)
{
    static const char z[64] = "0000000000000000000000000000000000000000000000000000000000000000";
    for (; n > 0 && !b->err; n -= n < sizeof z ? n : sizeof z)
        mpci_sbuf_put(b, z, n < sizeof z ? n : sizeof z);
}

/* Writes x < p[k+1] (p[-1+1] = p[0] for the leaves): with pad exactly
 * LEAF << (k+1) digits, else without leading zeros (x is then not 0). */
static int to_dec(mpci_powers *pw, const BIGNUM *x, int k, int pad, mpci_sbuf *b)
{
    if (b->err)
        return 1; /* the text is cut there: the remaining digits are not wanted */
    if (k < 0) {
        char *s = BN_bn2dec(x);
        if (!s)
            return 0;
        size_t n = strlen(s);
        if (pad)
            put_zeros(b, LEAF - (BN_is_zero(x) ? 0 : n));
        if (!pad || !BN_is_zero(x))
            mpci_sbuf_put(b, s, n);
        OPENSSL_free(s);
        return 1;
    }
    if (!power(pw, k))
        return 0;
    BN_CTX_start(pw->ctx);
    BIGNUM *q = BN_CTX_get(pw->ctx), *r = BN_CTX_get(pw->ctx);
    int ok = r && divmod(pw, q, r, x, k);
    if (ok && !pad && BN_is_zero(q))
        ok = to_dec(pw, r, k - 1, 0, b);
    else if (ok)
        ok = to_dec(pw, q, k - 1, pad, b) && to_dec(pw, r, k - 1, 1, b);
    BN_CTX_end(pw->ctx);
    return ok;
}

/* Digits of the top level: the smallest k with LEAF << (k+1) >= digits. */
static int top_level(size_t digits)
{
    int k = -1;
    while (k + 1 < MAXLEV - 1 && ((size_t)LEAF << (k + 1)) < digits)
        k++;
    return k;
}

static int convert(mpci_powers **pwp, const uint8_t *mag, size_t len, size_t digits, mpci_sbuf *b)
{
    mpci_powers *pw = powers_get(pwp);
    if (!pw || len > INT32_MAX / 8)
        return -ENOMEM;
    BIGNUM *x = BN_bin2bn(mag, (int)len, NULL);
    int ok = x && to_dec(pw, x, top_level(digits), 0, b);
    BN_free(x);
    return ok ? 0 : -ENOMEM;
}

int mpci_bigint_decimal(mpci_powers **pw, int neg, const uint8_t *mag, size_t len,
                        size_t max_digits, mpci_sbuf *b, char *errmsg, size_t errlen)
{
    if (len == 0) {
        mpci_sbuf_putc(b, '0');
        return 0;
    }
    /* 2^(bits-1) <= x < 2^bits bounds the digits; the margin covers the
     * rounding of the products in double. */
    size_t bits = (len - 1) * 8;
    for (unsigned c = mag[0]; c; c >>= 1)
        bits++;
    const double log10_2 = 0.30102999566398119521;
    size_t lo = (size_t)floor((double)(bits - 1) * log10_2 - 1e-5) + 1;
    size_t hi = (size_t)floor((double)bits * log10_2 + 1e-5) + 1;
    if (lo > max_digits)
        return mpci_err(errmsg, errlen, MPCONN_ERR_LIMIT,
                        "Exceeds the limit (%zu digits) for integer string conversion: value has "
                        "at least %zu digits; mpconn_opts_set_print_limits raises it",
                        max_digits, lo);
    if (neg)
        mpci_sbuf_putc(b, '-');
    if (hi <= max_digits)
        return convert(pw, mag, len, hi, b);
    /* One digit either side of the limit: count them, as CPython does. */
    mpci_sbuf tmp = {0};
    int rc = convert(pw, mag, len, hi, &tmp);
    if (rc == 0 && tmp.err)
        rc = tmp.err;
    if (rc == 0 && tmp.len > max_digits)
        rc = mpci_err(errmsg, errlen, MPCONN_ERR_LIMIT,
                      "Exceeds the limit (%zu digits) for integer string conversion: value has "
                      "%zu digits; mpconn_opts_set_print_limits raises it",
                      max_digits, tmp.len);
    if (rc == 0)
        mpci_sbuf_put(b, tmp.p, tmp.len);
    free(tmp.p);
    return rc;
}

/* r = the n digits at d. */
static int from_dec(mpci_powers *pw, BIGNUM *r, const char *d, size_t n)
{
    if (n <= LEAF) {
        char buf[LEAF + 1];
        memcpy(buf, d, n);
        buf[n] = '\0';
        if (n == 0) {
            BN_zero(r);
            return 1;
        }
        return BN_dec2bn(&r, buf) == (int)n;
    }
    int k = 0;
    while (((size_t)LEAF << (k + 1)) < n)
        k++;
    size_t lo_n = (size_t)LEAF << k;
    if (!power(pw, k))
        return 0;
    BN_CTX_start(pw->ctx);
    BIGNUM *hi = BN_CTX_get(pw->ctx), *lo = BN_CTX_get(pw->ctx);
    int ok = lo && from_dec(pw, hi, d, n - lo_n) && from_dec(pw, lo, d + (n - lo_n), lo_n) &&
             mul(r, hi, pw->p[k], pw->ctx) && BN_add(r, r, lo);
    BN_CTX_end(pw->ctx);
    return ok;
}

int mpci_decimal_magnitude(mpci_powers **pwp, const char *digits, size_t n, uint8_t **mag,
                           size_t *len)
{
    mpci_powers *pw = powers_get(pwp);
    BIGNUM *x = pw ? BN_new() : NULL;
    int ok = x && from_dec(pw, x, digits, n);
    size_t nb = ok ? (size_t)BN_num_bytes(x) : 0;
    *mag = ok ? malloc(nb ? nb : 1) : NULL;
    if (*mag) {
        BN_bn2bin(x, *mag);
        *len = nb;
    }
    BN_free(x);
    return *mag ? 0 : -ENOMEM;
}
