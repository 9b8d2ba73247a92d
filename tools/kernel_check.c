/* The C kernels against plain loops written here and a few values known by
 * hand, on small deterministic inputs, with no Python: the dense kernels of
 * src_c/dense.h one by one, and the conv nets of src_c/convnet.h whole (the
 * engine's training and inference of small nets against a plain-loop
 * trainer; its small-operand GEMMs; the dropout masks). tools/arm64_check.sh
 * builds it with src_c/dense.c and src_c/convnet.c for ARM64 (run under qemu)
 * and for each x86-64 path of this processor.
 *
 *   kernel_check [PATH]     check the kernels on PATH (default: the fastest
 *                           path this build and processor run)
 *   kernel_check --list     print the paths this build and processor run
 *
 * Each kernel prints PASS or FAIL with the worst error seen as a fraction of
 * what is allowed; the exit status is 1 when any check fails, 2 on bad usage.
 *
 * Tolerances: every sum is allowed 1e-12 (double) or 1e-5 (float) of the sum
 * of its terms' magnitudes (the paths differ only in fusing multiplies and
 * adds and in the order of the backward kernel's lanes); sigmoid is allowed 4
 * ulps of 1/(1 + exp(-t)) from libm in a wider type (results below the
 * smallest normal number count as 0), tanh 1 ulp of libm's; ReLU, linear,
 * copies, scalings and sums of small integers must be exact.
 */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet.h"
#include "dense.h"
#include "nf_runtime.h"

/* ------------------------------------------------------------ bookkeeping */

typedef struct {
    char name[40];
    long n;          /* values compared */
    long bad;        /* values outside the tolerance */
    double worst;    /* the largest error / allowed error seen */
    char first[240]; /* where the first bad value was */
} check_t;

static int n_failed_checks;

static void check_begin(check_t *c, const char *name, const char *suffix)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s%s", name, suffix);
}

static void note_bad(check_t *c, const char *fmt, va_list ap)
{
    if (c->bad++ == 0)
        vsnprintf(c->first, sizeof(c->first), fmt, ap);
}

/* |got - want| <= allowed; fmt and what follows say where, for the report. */
static void expect_close(check_t *c, double got, double want, double allowed,
                         const char *fmt, ...)
{
    const double err = fabs(got - want);
    c->n++;
    if (err <= allowed) {
        if (allowed > 0 && err / allowed > c->worst)
            c->worst = err / allowed;
        return;
    }
    if (c->bad++ == 0) {
        char where[120];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(where, sizeof(where), fmt, ap);
        va_end(ap);
        snprintf(c->first, sizeof(c->first), "%.119s: got %.17g, expected %.17g (allowed %.3g)",
                 where, got, want, allowed);
    }
}

/* got == want exactly (also for the guard values a kernel must leave alone). */
static void expect_exact(check_t *c, double got, double want, const char *fmt, ...)
{
    c->n++;
    if (got == want || (isnan(got) && isnan(want)))
        return;
    if (c->bad++ == 0) {
        char where[120];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(where, sizeof(where), fmt, ap);
        va_end(ap);
        snprintf(c->first, sizeof(c->first), "%.119s: got %.17g, expected exactly %.17g",
                 where, got, want);
    }
}

static void expect_true(check_t *c, int ok, const char *fmt, ...)
{
    c->n++;
    if (ok)
        return;
    va_list ap;
    va_start(ap, fmt);
    note_bad(c, fmt, ap);
    va_end(ap);
}

static void check_end(check_t *c)
{
    if (c->bad == 0 && c->n > 0) {
        printf("PASS %-16s %6ld values, worst error %.2g of the allowed\n", c->name, c->n,
               c->worst);
    } else {
        n_failed_checks++;
        if (c->n == 0)
            printf("FAIL %-16s nothing was compared\n", c->name);
        else
            printf("FAIL %-16s %ld of %ld values wrong; first: %s\n", c->name, c->bad, c->n,
                   c->first);
    }
}

/* ------------------------------------------------------------ inputs */

/* The precision under test: the kernels' _d or _s version. */
typedef struct {
    int f32;
    double tol;       /* allowed error, relative to a sum's magnitude */
    double tiny;      /* the smallest normal number */
    const char *suffix;
} prec_t;

static const prec_t PRECISIONS[2] = {
    {0, 1e-12, DBL_MIN, "_d"},
    {1, 1e-5, FLT_MIN, "_s"},
};

static uint64_t rng_state;

static void rng_seed(uint64_t seed) { rng_state = seed * 0x9E3779B97F4A7C15ull + 1; }

static uint64_t rng_next(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [lo, hi), representable in the precision under test. */
static double uniform(const prec_t *P, double lo, double hi)
{
    const double u = (double)(rng_next() >> 11) * 0x1p-53;
    const double x = lo + (hi - lo) * u;
    return P->f32 ? (double)(float)x : x;
}

/* An integer in [-k, k]. */
static double small_int(int k) { return (double)((int)(rng_next() % (uint64_t)(2 * k + 1)) - k); }

/* A value no kernel writes: where one appears after a call, nothing was written. */
#define GUARD (-7777.25)

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "kernel_check: out of memory\n");
        exit(2);
    }
    return p;
}

/* A copy of n doubles in the precision under test (float or double). */
static void *typed(const prec_t *P, const double *src, size_t n)
{
    if (P->f32) {
        float *f = xmalloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) f[i] = (float)src[i];
        return f;
    }
    double *d = xmalloc(n * sizeof(double));
    memcpy(d, src, n * sizeof(double));
    return d;
}

static double tget(const prec_t *P, const void *p, size_t i)
{
    return P->f32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}

static double *filled(size_t n, double v)
{
    double *a = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) a[i] = v;
    return a;
}

/* The rows 0..n_rows-1 in a scrambled order (the first few: distinct rows). */
static int32_t *distinct_rows(int n_rows)
{
    int32_t *all = xmalloc((size_t)n_rows * sizeof(int32_t));
    for (int i = 0; i < n_rows; i++) all[i] = i;
    for (int i = n_rows - 1; i > 0; i--) {
        const int j = (int)(rng_next() % (uint64_t)(i + 1));
        const int32_t t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    return all;
}

/* ------------------------------------------------------------ fwd */

static void run_fwd(const prec_t *P, int m, int K, const void *X, int ldx, const void *W,
                    const int32_t *cols, void *out, int ldo)
{
    if (P->f32) {
        if (cols) nf_fwd_idx_f(m, K, X, ldx, W, cols, out, ldo);
        else nf_fwd_f(m, K, X, ldx, W, out, ldo);
    } else {
        if (cols) nf_fwd_idx_d(m, K, X, ldx, W, cols, out, ldo);
        else nf_fwd_d(m, K, X, ldx, W, out, ldo);
    }
}

/* One call of fwd (or fwd_idx) on random values (integers: exact sums). */
static void fwd_case(check_t *c, const prec_t *P, int m, int K, int indexed, int integers)
{
    const int ldx = K + 3, ldo = 16 + 5, n_rows = indexed ? K + 7 : K;
    double *X = xmalloc((size_t)m * ldx * sizeof(double) + 1);
    double *W = xmalloc((size_t)n_rows * 16 * sizeof(double) + 1);
    for (int i = 0; i < m * ldx; i++) X[i] = integers ? small_int(9) : uniform(P, -1, 1);
    for (int i = 0; i < n_rows * 16; i++) W[i] = integers ? small_int(9) : uniform(P, -1, 1);
    int32_t *cols = indexed ? distinct_rows(n_rows) : NULL;
    double *O = filled((size_t)m * ldo, GUARD);
    void *Xt = typed(P, X, (size_t)m * ldx), *Wt = typed(P, W, (size_t)n_rows * 16);
    void *Ot = typed(P, O, (size_t)m * ldo);
    run_fwd(P, m, K, Xt, ldx, Wt, cols, Ot, ldo);
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < 16; j++) {
            double want = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                const double t = X[i * ldx + k] * W[(cols ? cols[k] : k) * 16 + j];
                want += t;
                mag += fabs(t);
            }
            const double got = tget(P, Ot, (size_t)i * ldo + j);
            if (integers)
                expect_exact(c, got, want, "m=%d K=%d idx=%d integers, out[%d][%d]", m, K,
                             indexed, i, j);
            else
                expect_close(c, got, want, P->tol * mag, "m=%d K=%d idx=%d, out[%d][%d]", m,
                             K, indexed, i, j);
        }
        for (int j = 16; j < ldo; j++)
            expect_exact(c, tget(P, Ot, (size_t)i * ldo + j), GUARD,
                         "m=%d K=%d: out[%d][%d] past the block was written", m, K, i, j);
    }
    free(X); free(W); free(O); free(cols); free(Xt); free(Wt); free(Ot);
}

static void check_fwd(const prec_t *P, int indexed)
{
    check_t c;
    check_begin(&c, indexed ? "fwd_idx" : "fwd", P->suffix);
    static const int Ks[] = {0, 1, 3, 16, 37};
    for (int m = 1; m <= 14; m++)
        for (size_t a = 0; a < sizeof(Ks) / sizeof(Ks[0]); a++) {
            fwd_case(&c, P, m, Ks[a], indexed, 0);
            fwd_case(&c, P, m, Ks[a], indexed, 1);
        }
    fwd_case(&c, P, 27, 50, indexed, 0);
    check_end(&c);
}

/* ------------------------------------------------------------ upd */

static void run_upd(const prec_t *P, int rows, int m, const void *X, int ldx, const void *D,
                    int ldd, void *W, const int32_t *cols, double alpha, double beta)
{
    if (P->f32) {
        if (cols) nf_upd_idx_f(rows, m, X, ldx, D, ldd, W, cols, (float)alpha);
        else nf_upd_f(rows, m, X, ldx, D, ldd, W, (float)alpha, (float)beta);
    } else {
        if (cols) nf_upd_idx_d(rows, m, X, ldx, D, ldd, W, cols, alpha);
        else nf_upd_d(rows, m, X, ldx, D, ldd, W, alpha, beta);
    }
}

/* One call of upd (beta as given) or upd_idx (beta 1); weight rows the call
 * does not own, and the row after the last, must stay as they were. */
static void upd_case(check_t *c, const prec_t *P, int rows, int m, double alpha, double beta,
                     int indexed, int integers)
{
    const int ldx = rows + 2, ldd = 16 + 4, n_rows = indexed ? rows + 5 : rows;
    double *X = xmalloc(((size_t)m * ldx + 1) * sizeof(double));
    double *D = xmalloc(((size_t)m * ldd + 1) * sizeof(double));
    double *W = xmalloc(((size_t)(n_rows + 1) * 16) * sizeof(double));
    for (int i = 0; i < m * ldx; i++) X[i] = integers ? small_int(5) : uniform(P, -1, 1);
    for (int i = 0; i < m * ldd; i++) D[i] = integers ? small_int(5) : uniform(P, -1, 1);
    /* even integers: beta = 0.5 scales them exactly */
    for (int i = 0; i < n_rows * 16; i++)
        W[i] = integers ? 2 * small_int(20) : uniform(P, -1, 1);
    for (int i = n_rows * 16; i < (n_rows + 1) * 16; i++) W[i] = GUARD;
    int32_t *cols = indexed ? distinct_rows(n_rows) : NULL;
    if (indexed)
        beta = 1;
    void *Xt = typed(P, X, (size_t)m * ldx), *Dt = typed(P, D, (size_t)m * ldd);
    void *Wt = typed(P, W, (size_t)(n_rows + 1) * 16);
    run_upd(P, rows, m, Xt, ldx, Dt, ldd, Wt, cols, alpha, beta);
    int *owner = xmalloc((size_t)(n_rows + 1) * sizeof(int));   /* row of X for each weight row */
    for (int q = 0; q <= n_rows; q++) owner[q] = -1;
    for (int r = 0; r < rows; r++) owner[cols ? cols[r] : r] = r;
    for (int q = 0; q <= n_rows; q++)
        for (int j = 0; j < 16; j++) {
            const double got = tget(P, Wt, (size_t)q * 16 + j), w = W[q * 16 + j];
            const int r = owner[q];
            if (r < 0) {
                expect_exact(c, got, w, "rows=%d m=%d idx=%d: W[%d][%d] is not the call's, "
                             "but changed", rows, m, indexed, q, j);
                continue;
            }
            double sum = 0, mag = 0;
            for (int i = 0; i < m; i++) {
                const double t = X[i * ldx + r] * D[i * ldd + j];
                sum += t;
                mag += fabs(t);
            }
            const double want = beta * w + alpha * sum;
            if (integers)
                expect_exact(c, got, want, "rows=%d m=%d beta=%g idx=%d integers, W[%d][%d]",
                             rows, m, beta, indexed, q, j);
            else
                expect_close(c, got, want, P->tol * (fabs(beta * w) + fabs(alpha) * mag),
                             "rows=%d m=%d alpha=%g beta=%g idx=%d, W[%d][%d]", rows, m, alpha,
                             beta, indexed, q, j);
        }
    free(X); free(D); free(W); free(cols); free(owner); free(Xt); free(Dt); free(Wt);
}

static void check_upd(const prec_t *P, int indexed)
{
    check_t c;
    check_begin(&c, indexed ? "upd_idx" : "upd", P->suffix);
    static const int rows_[] = {1, 2, 3, 5, 8, 9, 15, 17, 31};
    static const int ms[] = {0, 1, 4, 11};
    static const double betas[] = {1.0, 0.75, 1.0 - 3e-5, 0.0};
    for (size_t a = 0; a < sizeof(rows_) / sizeof(rows_[0]); a++)
        for (size_t b = 0; b < sizeof(ms) / sizeof(ms[0]); b++) {
            for (size_t e = 0; e < (indexed ? 1 : sizeof(betas) / sizeof(betas[0])); e++) {
                upd_case(&c, P, rows_[a], ms[b], -0.3, betas[e], indexed, 0);
                upd_case(&c, P, rows_[a], ms[b], 1.0, betas[e], indexed, 0);
            }
            upd_case(&c, P, rows_[a], ms[b], 1.0, 1.0, indexed, 1);
            upd_case(&c, P, rows_[a], ms[b], -2.0, 0.5, indexed, 1);
        }
    check_end(&c);
}

/* ------------------------------------------------------------ sigmoid */

/* 1 / (1 + exp(-t)) in a type wider than the result. */
static double sigmoid_ref(const prec_t *P, double t)
{
    if (P->f32)
        return 1.0 / (1.0 + exp(-t));
    return (double)(1.0L / (1.0L + expl(-(long double)t)));
}

static double ulp(const prec_t *P, double x)
{
    x = fabs(x);
    if (P->f32)
        return (double)nextafterf((float)x, INFINITY) - (double)(float)x;
    return nextafter(x, INFINITY) - x;
}

/* Rows of 16 arguments z (b added to each column) through sigmoid_block. */
static void sigmoid_case(check_t *c, const prec_t *P, int m, const double *Z, const double *b,
                         int n_valid, double max_ulps, double *worst_ulps)
{
    const int ldz = 16 + 8;
    double *Zp = filled((size_t)m * ldz, GUARD);
    for (int i = 0; i < m; i++) memcpy(Zp + i * ldz, Z + i * 16, 16 * sizeof(double));
    void *Zt = typed(P, Zp, (size_t)m * ldz), *bt = typed(P, b, 16);
    if (P->f32) nf_act_block_f(m, Zt, ldz, bt, n_valid, NF_SIGMOID);
    else nf_act_block_d(m, Zt, ldz, bt, n_valid, NF_SIGMOID);
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < 16; j++) {
            const double got = tget(P, Zt, (size_t)i * ldz + j);
            if (j >= n_valid) {
                expect_exact(c, got, 0.0, "n_valid=%d: padded unit [%d][%d] is not 0",
                             n_valid, i, j);
                continue;
            }
            /* the argument as the kernel forms it, in its precision */
            const double t = P->f32 ? (double)((float)Z[i * 16 + j] + (float)b[j])
                                    : Z[i * 16 + j] + b[j];
            const double want = sigmoid_ref(P, t);
            const double allowed = fmax(max_ulps * ulp(P, want), P->tiny);
            const double ulps = fabs(got - want) / ulp(P, want);
            if (fabs(got - want) > P->tiny && ulps > *worst_ulps)
                *worst_ulps = ulps;
            expect_close(c, got, want, allowed, "sigmoid(%.17g) (n_valid=%d, [%d][%d])", t,
                         n_valid, i, j);
        }
        for (int j = 16; j < ldz; j++)
            expect_exact(c, tget(P, Zt, (size_t)i * ldz + j), GUARD,
                         "Z[%d][%d] past the block was written", i, j);
    }
    free(Zp); free(Zt); free(bt);
}

static void check_sigmoid(const prec_t *P)
{
    const double max_ulps = 4;
    check_t c;
    check_begin(&c, "sigmoid_block", P->suffix);
    double worst_ulps = 0;
    double Z[16 * 16], b[16];
    static const int n_valids[] = {16, 15, 7, 1, 0};
    /* arguments in [-40, 40] (where sigmoid is neither 0 nor 1) and biases */
    for (size_t v = 0; v < sizeof(n_valids) / sizeof(n_valids[0]); v++)
        for (int rep = 0; rep < 8; rep++) {
            for (int i = 0; i < 16 * 16; i++) Z[i] = uniform(P, -40, 40);
            for (int j = 0; j < 16; j++) b[j] = uniform(P, -2, 2);
            sigmoid_case(&c, P, 1 + rep % 3 * 7, Z, b, n_valids[v], max_ulps, &worst_ulps);
        }
    /* extreme and special arguments, no bias */
    static const double special[] = {
        0.0, -0.0, 1e-300, -1e-300, 1e-8, -1e-8, 0.5, -0.5, 1.0, -1.0, 10.0, -10.0, 17.0,
        -17.0, 36.0, -36.0, 37.5, -37.5, 87.0, -87.0, 89.0, -89.0, 100.0, -100.0, 103.0,
        -103.0, 110.0, -110.0, 700.0, -700.0, 708.0, -708.0, 709.7, -709.7, 709.8, -709.8,
        740.0, -740.0, 745.2, -745.2, 800.0, -800.0, 1e10, -1e10, 1e300, -1e300, INFINITY,
        -INFINITY};
    const int n_special = (int)(sizeof(special) / sizeof(special[0]));
    for (int j = 0; j < 16; j++) b[j] = 0;
    for (int s = 0; s < n_special; s += 16) {
        const int m = 1;
        for (int j = 0; j < 16; j++)
            Z[j] = s + j < n_special ? (P->f32 ? (double)(float)special[s + j] : special[s + j])
                                     : 0.0;
        sigmoid_case(&c, P, m, Z, b, 16, max_ulps, &worst_ulps);
        sigmoid_case(&c, P, m, Z, b, 5, max_ulps, &worst_ulps);
    }
    /* a sweep of [-120, 120] in steps of 1/64 (all the float exponents) */
    for (int s = 0; s < 240 * 64; s += 16 * 16) {
        for (int i = 0; i < 16 * 16; i++) Z[i] = -120.0 + (s + i) / 64.0;
        sigmoid_case(&c, P, 16, Z, b, 16, max_ulps, &worst_ulps);
    }
    check_end(&c);
    printf("     %-16s worst %.2f ulp against libm (allowed %.0f)\n", c.name, worst_ulps,
           max_ulps);
}

/* The other activations of act_block: tanh within an ulp of libm's (in the
 * kernel's precision), ReLU and linear exact; padded units 0. */
static void check_act(const prec_t *P)
{
    static const int acts[] = {NF_TANH, NF_RELU, NF_LINEAR};
    static const char *names[] = {"tanh", "ReLU", "linear"};
    check_t c;
    check_begin(&c, "act_block", P->suffix);
    const int m = 3, ldz = 16 + 4, n_valid = 13;
    for (int k = 0; k < 3; k++)
        for (int rep = 0; rep < 4; rep++) {
            double Z[3 * 20], b[16];
            for (int i = 0; i < m * ldz; i++) Z[i] = uniform(P, -6, 6);
            for (int j = 0; j < 16; j++) b[j] = uniform(P, -2, 2);
            void *Zt = typed(P, Z, (size_t)m * ldz), *bt = typed(P, b, 16);
            if (P->f32) nf_act_block_f(m, Zt, ldz, bt, n_valid, acts[k]);
            else nf_act_block_d(m, Zt, ldz, bt, n_valid, acts[k]);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < ldz; j++) {
                    const double got = tget(P, Zt, (size_t)i * ldz + j);
                    if (j >= 16) {
                        expect_exact(&c, got, Z[i * ldz + j], "Z[%d][%d] past the block "
                                     "was written", i, j);
                        continue;
                    }
                    if (j >= n_valid) {
                        expect_exact(&c, got, 0.0, "%s: padded unit [%d][%d] is not 0",
                                     names[k], i, j);
                        continue;
                    }
                    const double t = P->f32 ? (double)((float)Z[i * ldz + j] + (float)b[j])
                                            : Z[i * ldz + j] + b[j];
                    if (acts[k] == NF_TANH) {
                        const double want = P->f32 ? (double)tanhf((float)t) : tanh(t);
                        expect_close(&c, got, want, ulp(P, want), "tanh(%.17g)", t);
                    } else {
                        expect_exact(&c, got, acts[k] == NF_RELU && t < 0 ? 0.0 : t,
                                     "%s(%.17g)", names[k], t);
                    }
                }
            free(Zt); free(bt);
        }
    check_end(&c);
}

/* ------------------------------------------------------------ bwd */

/* act'(z) through a = act(z), as the backward kernel takes it. */
static double act_prime(int act, double a)
{
    switch (act) {
    case NF_SIGMOID: return a * (1 - a);
    case NF_TANH: return 1 - a * a;
    case NF_RELU: return a > 0 ? 1 : 0;
    default: return 1;
    }
}

static void bwd_case(check_t *c, const prec_t *P, int m, int rows, int nb, int integers,
                     int act)
{
    const ptrdiff_t bstride = (ptrdiff_t)(rows + 3) * 16;
    const int ldn = nb * 16 + 4, lda = 16 + 2, ldo = 16 + 3;
    const size_t nW = (size_t)nb * bstride;
    double *W = xmalloc(nW * sizeof(double));
    double *Dn = xmalloc(((size_t)m * ldn) * sizeof(double));
    double *A = xmalloc(((size_t)m * lda) * sizeof(double));
    for (size_t i = 0; i < nW; i++) W[i] = integers ? small_int(4) : uniform(P, -1, 1);
    for (int i = 0; i < m * ldn; i++) Dn[i] = integers ? small_int(4) : uniform(P, -1, 1);
    /* a(1 - a) is exact for a = 1/2 and for integers */
    for (int i = 0; i < m * lda; i++) A[i] = integers ? small_int(3) : uniform(P, 0, 1);
    double *O = filled((size_t)m * ldo, GUARD);
    void *Wt = typed(P, W, nW), *Dt = typed(P, Dn, (size_t)m * ldn);
    void *At = typed(P, A, (size_t)m * lda), *Ot = typed(P, O, (size_t)m * ldo);
    if (P->f32) nf_bwd_f(m, rows, nb, Wt, bstride, Dt, ldn, At, lda, Ot, ldo, act);
    else nf_bwd_d(m, rows, nb, Wt, bstride, Dt, ldn, At, lda, Ot, ldo, act);
    for (int i = 0; i < m; i++) {
        for (int r = 0; r < 16; r++) {
            const double got = tget(P, Ot, (size_t)i * ldo + r);
            if (r >= rows) {
                expect_exact(c, got, 0.0, "rows=%d: out[%d][%d] is not 0", rows, i, r);
                continue;
            }
            double sum = 0, mag = 0;
            for (int bl = 0; bl < nb; bl++)
                for (int j = 0; j < 16; j++) {
                    const double t = W[bl * bstride + r * 16 + j] * Dn[i * ldn + bl * 16 + j];
                    sum += t;
                    mag += fabs(t);
                }
            const double a = A[i * lda + r], g = act_prime(act, a);
            const double want = sum * g;
            if (integers)
                expect_exact(c, got, want, "m=%d rows=%d nb=%d integers, out[%d][%d]", m, rows,
                             nb, i, r);
            else
                expect_close(c, got, want, P->tol * mag * fabs(g),
                             "m=%d rows=%d nb=%d, out[%d][%d]", m, rows, nb, i, r);
        }
        for (int r = 16; r < ldo; r++)
            expect_exact(c, tget(P, Ot, (size_t)i * ldo + r), GUARD,
                         "out[%d][%d] past the block was written", i, r);
    }
    free(W); free(Dn); free(A); free(O); free(Wt); free(Dt); free(At); free(Ot);
}

static void check_bwd(const prec_t *P)
{
    check_t c;
    check_begin(&c, "bwd", P->suffix);
    static const int rows_[] = {1, 5, 16};
    for (int m = 1; m <= 5; m += 2)
        for (size_t a = 0; a < sizeof(rows_) / sizeof(rows_[0]); a++)
            for (int nb = 1; nb <= 4; nb++)
                for (int act = NF_LINEAR; act <= NF_RELU; act++) {
                    bwd_case(&c, P, m, rows_[a], nb, 0, act);
                    bwd_case(&c, P, m, rows_[a], nb, 1, act);
                }
    check_end(&c);
}

/* ------------------------------------------------------------ sparse rows */

/* A matrix as compressed sparse rows, built as sparse_rows() in _dense.pyx
 * builds it: values padded with 16 zeros, bits of the nonzero columns. */
typedef struct {
    int n_rows, n_cols, n_words;
    double *dense;          /* n_rows x n_cols */
    int64_t *ptr;
    int32_t *idx;
    void *val;
    uint64_t *bits;
    nndl_csr csr;
} sparse_t;

static void sparse_make(sparse_t *s, const prec_t *V, int n_rows, int n_cols)
{
    s->n_rows = n_rows;
    s->n_cols = n_cols;
    s->n_words = (n_cols + 63) / 64;
    s->dense = xmalloc((size_t)n_rows * n_cols * sizeof(double));
    for (int r = 0; r < n_rows; r++)
        for (int k = 0; k < n_cols; k++) {
            /* row 0 empty, row 1 full, the others about 30% nonzero */
            const int nz = r == 1 || (r > 1 && rng_next() % 10 < 3);
            s->dense[(size_t)r * n_cols + k] = nz ? uniform(V, 0.001, 1) : 0.0;
        }
    s->ptr = xmalloc((size_t)(n_rows + 1) * sizeof(int64_t));
    s->bits = calloc((size_t)n_rows * s->n_words, sizeof(uint64_t));
    int64_t nnz = 0;
    for (int i = 0; i < n_rows * n_cols; i++) nnz += s->dense[i] != 0;
    s->idx = xmalloc((size_t)(nnz + 16) * sizeof(int32_t));
    double *val = calloc((size_t)nnz + 16, sizeof(double));
    int64_t q = 0;
    for (int r = 0; r < n_rows; r++) {
        s->ptr[r] = q;
        for (int k = 0; k < n_cols; k++)
            if (s->dense[(size_t)r * n_cols + k] != 0) {
                s->idx[q] = k;
                val[q++] = s->dense[(size_t)r * n_cols + k];
                s->bits[(size_t)r * s->n_words + k / 64] |= 1ull << (k % 64);
            }
    }
    s->ptr[n_rows] = q;
    s->val = typed(V, val, (size_t)nnz + 16);
    free(val);
    s->csr.ptr = s->ptr;
    s->csr.idx = s->idx;
    s->csr.val = s->val;
    s->csr.val_f32 = V->f32;
    s->csr.bits = s->bits;
    s->csr.n_words = s->n_words;
}

static void sparse_free(sparse_t *s)
{
    free(s->dense); free(s->ptr); free(s->idx); free(s->val); free(s->bits);
}

/* union and scatter of a batch of rows (listed, or first..first+m-1), then
 * the batch on the union's columns through fwd_idx, which must give exactly
 * what fwd gives on the dense rows (a zero input adds nothing), as csr_first
 * must from the rows themselves; and csr_upd exactly what upd_idx gives on the
 * scattered batch, leaving the rows outside the union alone. */
static void union_case(check_t *cu, check_t *cs, check_t *cp, const prec_t *P,
                       const sparse_t *s, const int64_t *rows, int64_t first, int m)
{
    const int n_cols = s->n_cols, nw = s->n_words, uw = (nw + 7) / 8 * 8;
    int32_t *cols = xmalloc((size_t)n_cols * sizeof(int32_t));
    int32_t *pos = xmalloc((size_t)n_cols * sizeof(int32_t));
    uint64_t *ubits = xmalloc((size_t)uw * sizeof(uint64_t));
    for (int k = 0; k < n_cols; k++) pos[k] = cols[k] = -1;
    const int U = nf_csr_union(m, &s->csr, rows, first, cols, pos, ubits);
    /* the union, column by column */
    int want_U = 0;
    for (int k = 0; k < n_cols; k++) {
        int any = 0;
        for (int i = 0; i < m; i++)
            any |= s->dense[(size_t)(rows ? rows[i] : first + i) * n_cols + k] != 0;
        const int bit = (int)(ubits[k / 64] >> (k % 64) & 1);
        expect_true(cu, bit == any, "m=%d: bit %d of the union is %d", m, k, bit);
        if (any) {
            expect_true(cu, want_U < U && cols[want_U] == k,
                        "m=%d: column %d of the union is not cols[%d]", m, k, want_U);
            /* pos is filled for the portable scatter (the AVX-512 one needs none) */
            if (strcmp(nf_dense_isa(), "avx512") != 0)
                expect_true(cu, pos[k] == want_U, "m=%d: pos[%d] = %d, expected %d", m, k,
                            pos[k], want_U);
            want_U++;
        }
    }
    expect_true(cu, U == want_U, "m=%d: union of %d columns, expected %d", m, U, want_U);
    const int U2 = nf_csr_union(m, &s->csr, rows, first, NULL, pos, ubits);
    expect_true(cu, U2 == U, "m=%d: union without cols: %d columns, expected %d", m, U2, U);
    if (U != want_U) {
        free(cols); free(pos); free(ubits);
        return;
    }
    /* scatter all rows, then rows 1..m-1 over a guard-filled copy */
    const size_t nX = (size_t)m * U + 1;
    double *G = filled(nX, GUARD);
    void *Xc = typed(P, G, nX), *Xc2 = typed(P, G, nX);
    if (P->f32) {
        nf_csr_scatter_f(0, m, &s->csr, rows, first, U, pos, ubits, Xc);
        if (m > 1) nf_csr_scatter_f(1, m, &s->csr, rows, first, U, pos, ubits, Xc2);
    } else {
        nf_csr_scatter_d(0, m, &s->csr, rows, first, U, pos, ubits, Xc);
        if (m > 1) nf_csr_scatter_d(1, m, &s->csr, rows, first, U, pos, ubits, Xc2);
    }
    for (int i = 0; i < m; i++) {
        const double *x = s->dense + (size_t)(rows ? rows[i] : first + i) * n_cols;
        for (int u = 0; u < U; u++) {
            const double want = P->f32 ? (double)(float)x[cols[u]] : x[cols[u]];
            expect_exact(cs, tget(P, Xc, (size_t)i * U + u), want, "m=%d: Xc[%d][%d]", m, i, u);
            if (m > 1)
                expect_exact(cs, tget(P, Xc2, (size_t)i * U + u), i == 0 ? GUARD : want,
                             "m=%d, rows 1..: Xc[%d][%d]", m, i, u);
        }
    }
    expect_exact(cs, tget(P, Xc, (size_t)m * U), GUARD, "m=%d: Xc past the rows was written", m);
    /* fwd_idx on the union = fwd on the dense rows, exactly */
    const int n_rows_w = n_cols;
    double *W = xmalloc((size_t)n_rows_w * 16 * sizeof(double));
    for (int i = 0; i < n_rows_w * 16; i++) W[i] = uniform(P, -1, 1);
    double *Xd = xmalloc((size_t)m * n_cols * sizeof(double) + 1);
    for (int i = 0; i < m; i++)
        for (int k = 0; k < n_cols; k++) {
            const double x = s->dense[(size_t)(rows ? rows[i] : first + i) * n_cols + k];
            Xd[i * n_cols + k] = P->f32 ? (double)(float)x : x;
        }
    double *O = filled((size_t)m * 16, 0);
    void *Wt = typed(P, W, (size_t)n_rows_w * 16), *Xdt = typed(P, Xd, (size_t)m * n_cols);
    void *Oa = typed(P, O, (size_t)m * 16), *Ob = typed(P, O, (size_t)m * 16);
    run_fwd(P, m, U, Xc, U, Wt, cols, Oa, 16);
    run_fwd(P, m, n_cols, Xdt, n_cols, Wt, NULL, Ob, 16);
    for (int i = 0; i < m * 16; i++)
        expect_exact(cs, tget(P, Oa, i), tget(P, Ob, i),
                     "m=%d: fwd_idx of the scattered rows differs from fwd of the dense rows "
                     "at [%d][%d]", m, i / 16, i % 16);
    /* the csr step: csr_first and csr_upd from the rows, listed */
    int64_t *list = xmalloc((size_t)m * sizeof(int64_t));
    for (int i = 0; i < m; i++) list[i] = rows ? rows[i] : first + i;
    void *Oc = typed(P, O, (size_t)m * 16);
    if (P->f32) nf_csr_first_f(m, &s->csr, list, 0, n_cols, 1, Wt, Oc, 16);
    else nf_csr_first_d(m, &s->csr, list, 0, n_cols, 1, Wt, Oc, 16);
    for (int i = 0; i < m * 16; i++)
        expect_exact(cp, tget(P, Oc, i), tget(P, Ob, i),
                     "m=%d: csr_first of listed rows differs from fwd at [%d][%d]", m, i / 16,
                     i % 16);
    double *D = xmalloc((size_t)m * 20 * sizeof(double));
    for (int i = 0; i < m * 20; i++) D[i] = uniform(P, -1, 1);
    void *Dt = typed(P, D, (size_t)m * 20), *Wa = typed(P, W, (size_t)n_rows_w * 16);
    void *Wb = typed(P, W, (size_t)n_rows_w * 16);
    double *A = filled((size_t)n_rows_w * 16, GUARD);
    void *acc = typed(P, A, (size_t)n_rows_w * 16);
    run_upd(P, U, m, Xc, U, Dt, 20, Wa, cols, -0.37, 1);
    if (P->f32) nf_csr_upd_f(m, &s->csr, list, Dt, 20, Wb, cols, U, -0.37f, acc);
    else nf_csr_upd_d(m, &s->csr, list, Dt, 20, Wb, cols, U, -0.37, acc);
    for (int i = 0; i < n_rows_w * 16; i++)
        expect_exact(cp, tget(P, Wb, i), tget(P, Wa, i),
                     "m=%d: csr_upd differs from upd_idx at W[%d][%d]", m, i / 16, i % 16);
    free(list); free(Oc); free(D); free(Dt); free(Wa); free(Wb); free(A); free(acc);
    free(cols); free(pos); free(ubits); free(G); free(Xc); free(Xc2);
    free(W); free(Xd); free(O); free(Wt); free(Xdt); free(Oa); free(Ob);
}

/* csr_first: the first layer's pre-activations of rows first..first+m-1 through
 * n_blocks blocks, against the plain sum and, exactly, against fwd per block. */
static void csr_first_case(check_t *c, const prec_t *P, const sparse_t *s, int64_t first,
                           int m, int n_blocks)
{
    const int n_in = s->n_cols, ldo = 16 * n_blocks + 4;
    const size_t nW = (size_t)n_blocks * n_in * 16;
    double *W = xmalloc(nW * sizeof(double));
    for (size_t i = 0; i < nW; i++) W[i] = uniform(P, -1, 1);
    double *O = filled((size_t)m * ldo, GUARD);
    void *Wt = typed(P, W, nW), *Ot = typed(P, O, (size_t)m * ldo);
    void *Ft = typed(P, O, (size_t)m * 16);
    if (P->f32) nf_csr_first_f(m, &s->csr, NULL, first, n_in, n_blocks, Wt, Ot, ldo);
    else nf_csr_first_d(m, &s->csr, NULL, first, n_in, n_blocks, Wt, Ot, ldo);
    double *Xd = xmalloc((size_t)m * n_in * sizeof(double));
    for (int i = 0; i < m; i++)
        for (int k = 0; k < n_in; k++) {
            const double x = s->dense[(size_t)(first + i) * n_in + k];
            Xd[i * n_in + k] = P->f32 ? (double)(float)x : x;
        }
    void *Xt = typed(P, Xd, (size_t)m * n_in);
    for (int b = 0; b < n_blocks; b++) {
        const size_t wb = (size_t)b * n_in * 16;
        run_fwd(P, m, n_in, Xt, n_in, (const char *)Wt + wb * (P->f32 ? 4 : 8), NULL, Ft, 16);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < 16; j++) {
                double want = 0, mag = 0;
                for (int k = 0; k < n_in; k++) {
                    const double t = Xd[i * n_in + k] * W[wb + (size_t)k * 16 + j];
                    want += t;
                    mag += fabs(t);
                }
                const double got = tget(P, Ot, (size_t)i * ldo + b * 16 + j);
                expect_close(c, got, want, P->tol * mag,
                             "first=%lld m=%d n_blocks=%d, out[%d][%d]", (long long)first, m,
                             n_blocks, i, b * 16 + j);
                expect_exact(c, got, tget(P, Ft, (size_t)i * 16 + j),
                             "first=%lld m=%d n_blocks=%d: out[%d][%d] differs from fwd",
                             (long long)first, m, n_blocks, i, b * 16 + j);
            }
    }
    for (int i = 0; i < m; i++)
        for (int j = 16 * n_blocks; j < ldo; j++)
            expect_exact(c, tget(P, Ot, (size_t)i * ldo + j), GUARD,
                         "out[%d][%d] past the blocks was written", i, j);
    free(W); free(O); free(Wt); free(Ot); free(Ft); free(Xd); free(Xt);
}

/* A row's nonzeros from its dense values and bits (nf_csr_fill_row), written at
 * an offset into guard-filled arrays: the row's columns and values exactly,
 * nothing outside its range; a range one short is refused, written no further. */
static void csr_fill_case(check_t *c, const prec_t *P, const sparse_t *s)
{
    void *X = typed(P, s->dense, (size_t)s->n_rows * s->n_cols);
    const int64_t off = 3, nnz = s->ptr[s->n_rows], len = nnz + off + 24;
    int32_t *idx = xmalloc((size_t)len * sizeof(int32_t));
    double *g = filled((size_t)len, GUARD);
    void *val = typed(P, g, (size_t)len);
    for (int64_t q = 0; q < len; q++) idx[q] = -1;
    for (int r = 0; r < s->n_rows; r++) {
        const int64_t q0 = s->ptr[r] + off, q1 = s->ptr[r + 1] + off;
        const uint64_t *bits = s->bits + (size_t)r * s->n_words;
        const int wrong = P->f32
            ? nf_csr_fill_row_f((const float *)X + (size_t)r * s->n_cols, s->n_cols, bits,
                                s->n_words, q0, q1, idx, val)
            : nf_csr_fill_row_d((const double *)X + (size_t)r * s->n_cols, s->n_cols, bits,
                                s->n_words, q0, q1, idx, val);
        expect_true(c, wrong == 0, "row %d of %d columns: refused", r, s->n_cols);
    }
    for (int64_t q = 0; q < len; q++) {
        const int in = q >= off && q < nnz + off;
        const double want = in ? tget(P, s->val, (size_t)(q - off)) : GUARD;
        expect_exact(c, tget(P, val, (size_t)q), want, "%d columns: value %lld",
                     s->n_cols, (long long)q);
        expect_true(c, idx[q] == (in ? s->idx[q - off] : -1), "%d columns: column %lld is %d",
                    s->n_cols, (long long)q, idx[q]);
    }
    /* the full row (row 1) given a range one short */
    const int64_t q0 = s->ptr[1] + off, q1 = s->ptr[2] + off - 1;
    for (int64_t q = 0; q < len; q++) idx[q] = -1;
    const int wrong = P->f32
        ? nf_csr_fill_row_f((const float *)X + s->n_cols, s->n_cols, s->bits + s->n_words,
                            s->n_words, q0, q1, idx, val)
        : nf_csr_fill_row_d((const double *)X + s->n_cols, s->n_cols, s->bits + s->n_words,
                            s->n_words, q0, q1, idx, val);
    expect_true(c, wrong == 1, "%d columns: a range one short was not refused", s->n_cols);
    for (int64_t q = q1; q < len; q++)
        expect_true(c, idx[q] == -1, "%d columns: column %lld written past the range",
                    s->n_cols, (long long)q);
    free(X); free(idx); free(g); free(val);
}

static void check_sparse(const prec_t *P)
{
    check_t cu, cs, cp, cf, cl;
    check_begin(&cu, "csr_union", P->suffix);
    check_begin(&cp, "csr_step", P->suffix);
    check_begin(&cs, "csr_scatter", P->suffix);
    check_begin(&cf, "csr_first", P->suffix);
    check_begin(&cl, "csr_fill_row", P->suffix);
    static const int widths[] = {150, 64, 13};
    for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++)
        for (int vf = 0; vf < 2; vf++) {   /* values stored as double, then as float */
            sparse_t s;
            sparse_make(&s, &PRECISIONS[vf], 12, widths[w]);
            static const int64_t listed[] = {7, 0, 3, 11, 1, 5, 2};
            for (int m = 1; m <= 7; m++) {
                union_case(&cu, &cs, &cp, P, &s, listed, 0, m);
                union_case(&cu, &cs, &cp, P, &s, NULL, 12 - m, m);
            }
            for (int m = 1; m <= 5; m++)
                for (int nb = 1; nb <= 5; nb++)
                    csr_first_case(&cf, P, &s, m % 3, m, nb);
            if (vf == P->f32)     /* values of the dtype the rows are made from */
                csr_fill_case(&cl, P, &s);
            sparse_free(&s);
        }
    check_end(&cu);
    check_end(&cs);
    check_end(&cp);
    check_end(&cf);
    check_end(&cl);
}

/* ------------------------------------------------------------ scale, convert */

static void check_scale(const prec_t *P)
{
    check_t c;
    check_begin(&c, "scale", P->suffix);
    static const int ns[] = {0, 1, 7, 16, 33, 100};
    static const double betas[] = {0.999, 0.5, 0.0, -1.25};
    for (size_t a = 0; a < sizeof(ns) / sizeof(ns[0]); a++)
        for (size_t e = 0; e < sizeof(betas) / sizeof(betas[0]); e++) {
            const int n = ns[a];
            double *x = xmalloc(((size_t)n + 1) * sizeof(double));
            for (int i = 0; i < n; i++) x[i] = uniform(P, -3, 3);
            x[n] = GUARD;
            void *xt = typed(P, x, (size_t)n + 1);
            if (P->f32) nf_scale_f(n, xt, (float)betas[e]);
            else nf_scale_d(n, xt, betas[e]);
            for (int i = 0; i < n; i++) {
                const double want = P->f32 ? (double)((float)betas[e] * (float)x[i])
                                           : betas[e] * x[i];
                expect_exact(&c, tget(P, xt, i), want, "n=%d beta=%g: x[%d]", n, betas[e], i);
            }
            expect_exact(&c, tget(P, xt, n), GUARD, "n=%d: x[n] was written", n);
            free(x); free(xt);
        }
    check_end(&c);
}

static void check_convert(void)
{
    check_t c;
    check_begin(&c, "convert_f2d", "");
    static const int ns[] = {0, 1, 7, 16, 33, 100};
    for (size_t a = 0; a < sizeof(ns) / sizeof(ns[0]); a++) {
        const int n = ns[a];
        float *src = xmalloc(((size_t)n + 1) * sizeof(float));
        double *dst = filled((size_t)n + 1, GUARD);
        for (int i = 0; i < n; i++) src[i] = (float)uniform(&PRECISIONS[1], -1e3, 1e3);
        if (n > 2) {
            src[0] = FLT_MAX;
            src[1] = FLT_TRUE_MIN;
            src[2] = -0.0f;
        }
        nf_convert_f2d(n, src, dst);
        for (int i = 0; i < n; i++)
            expect_exact(&c, dst[i], (double)src[i], "n=%d: dst[%d]", n, i);
        expect_exact(&c, dst[n], GUARD, "n=%d: dst[n] was written", n);
        free(src); free(dst);
    }
    check_end(&c);
}

/* ------------------------------------------------------------ known values */

/* Values worked out by hand, as the literal numbers. */
static void check_known(const prec_t *P)
{
    check_t c;
    check_begin(&c, "known_values", P->suffix);
    /* fwd: x = (1, 2, 3), W[k][j] = k + j: out[j] = 0*1 + 1*2 + 2*3 + 6j = 8 + 6j */
    {
        double X[3] = {1, 2, 3}, W[3 * 16], O[16] = {0};
        for (int k = 0; k < 3; k++)
            for (int j = 0; j < 16; j++) W[k * 16 + j] = k + j;
        void *Xt = typed(P, X, 3), *Wt = typed(P, W, 48), *Ot = typed(P, O, 16);
        run_fwd(P, 1, 3, Xt, 3, Wt, NULL, Ot, 16);
        expect_exact(&c, tget(P, Ot, 0), 8.0, "fwd out[0]");
        expect_exact(&c, tget(P, Ot, 1), 14.0, "fwd out[1]");
        expect_exact(&c, tget(P, Ot, 15), 98.0, "fwd out[15]");
        free(Xt); free(Wt); free(Ot);
    }
    /* upd: w_j = 2j, x = (2, 3), d0 = 1, d1_j = j, alpha = beta = 1/2:
     * w_j = j + (2 + 3j) / 2 = 1 + 2.5 j */
    {
        double X[2] = {2, 3}, D[32], W[16];
        for (int j = 0; j < 16; j++) {
            D[j] = 1;
            D[16 + j] = j;
            W[j] = 2 * j;
        }
        void *Xt = typed(P, X, 2), *Dt = typed(P, D, 32), *Wt = typed(P, W, 16);
        run_upd(P, 1, 2, Xt, 1, Dt, 16, Wt, NULL, 0.5, 0.5);
        expect_exact(&c, tget(P, Wt, 0), 1.0, "upd W[0]");
        expect_exact(&c, tget(P, Wt, 1), 3.5, "upd W[1]");
        expect_exact(&c, tget(P, Wt, 15), 38.5, "upd W[15]");
        free(Xt); free(Dt); free(Wt);
    }
    /* sigmoid: 0 -> 1/2 exactly; +-800 -> 1 and 0 exactly; +-1 to the digits */
    {
        double Z[16] = {0, 800, -800, 1, -1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, b[16] = {0};
        void *Zt = typed(P, Z, 16), *bt = typed(P, b, 16);
        if (P->f32) nf_act_block_f(1, Zt, 16, bt, 16, NF_SIGMOID);
        else nf_act_block_d(1, Zt, 16, bt, 16, NF_SIGMOID);
        expect_exact(&c, tget(P, Zt, 0), 0.5, "sigmoid(0)");
        expect_exact(&c, tget(P, Zt, 1), 1.0, "sigmoid(800)");
        expect_exact(&c, tget(P, Zt, 2), 0.0, "sigmoid(-800)");
        const double s1 = 0.7310585786300049, sm1 = 0.2689414213699951, s2 = 0.8807970779778823;
        const double eps = P->f32 ? FLT_EPSILON : DBL_EPSILON;
        expect_close(&c, tget(P, Zt, 3), s1, 2 * eps * s1, "sigmoid(1)");
        expect_close(&c, tget(P, Zt, 4), sm1, 2 * eps * sm1, "sigmoid(-1)");
        expect_close(&c, tget(P, Zt, 5), s2, 2 * eps * s2, "sigmoid(2)");
        free(Zt); free(bt);
    }
    /* bwd: W = 1, dn_j = j over 2 blocks, a = 1/2: (2 * 120) * 1/4 = 60 */
    {
        double W[2 * 16 * 16], Dn[32], A[16], O[16] = {0};
        for (int i = 0; i < 2 * 16 * 16; i++) W[i] = 1;
        for (int j = 0; j < 32; j++) Dn[j] = j % 16;
        for (int j = 0; j < 16; j++) A[j] = 0.5;
        void *Wt = typed(P, W, 512), *Dt = typed(P, Dn, 32), *At = typed(P, A, 16);
        void *Ot = typed(P, O, 16);
        if (P->f32) nf_bwd_f(1, 3, 2, Wt, 256, Dt, 32, At, 16, Ot, 16, NF_SIGMOID);
        else nf_bwd_d(1, 3, 2, Wt, 256, Dt, 32, At, 16, Ot, 16, NF_SIGMOID);
        expect_exact(&c, tget(P, Ot, 0), 60.0, "bwd out[0]");
        expect_exact(&c, tget(P, Ot, 2), 60.0, "bwd out[2]");
        expect_exact(&c, tget(P, Ot, 3), 0.0, "bwd out[3]");
        free(Wt); free(Dt); free(At); free(Ot);
    }
    check_end(&c);
}

/* ------------------------------------------------------------ paths */

static const char *const PATHS[] = {"avx512", "avx2", "generic"};

/* ------------------------------------------------------------ conv nets (convnet.h) */

/* Row-major C (m, n) = alpha op(A) op(B) + beta C by plain loops, summed in
 * double (a row of sums at a time): the GEMM the engine is handed (nndl_fast
 * hands it BLAS); C is not read when beta is 0, as in BLAS. */
#define GEMM_PLAIN(T, name)                                                                   \
    static void name(int ta, int tb, int m, int n, int k, T alpha, const T *a, int lda,       \
                     const T *b, int ldb, T beta, T *c, int ldc)                              \
    {                                                                                         \
        double *s = xmalloc((size_t)n * sizeof(double));                                      \
        for (int i = 0; i < m; i++) {                                                         \
            for (int j = 0; j < n; j++) s[j] = 0;                                             \
            for (int q = 0; q < k; q++) {                                                     \
                const double aiq = ta ? a[(size_t)q * lda + i] : a[(size_t)i * lda + q];      \
                if (tb)                                                                       \
                    for (int j = 0; j < n; j++) s[j] += aiq * b[(size_t)j * ldb + q];         \
                else                                                                          \
                    for (int j = 0; j < n; j++) s[j] += aiq * b[(size_t)q * ldb + j];         \
            }                                                                                 \
            T *ci = c + (size_t)i * ldc;                                                      \
            for (int j = 0; j < n; j++)                                                       \
                ci[j] = (T)((beta == 0 ? 0.0 : (double)beta * ci[j]) + (double)alpha * s[j]); \
        }                                                                                     \
        free(s);                                                                              \
    }
GEMM_PLAIN(float, gemm_plain_f)
GEMM_PLAIN(double, gemm_plain_d)

/* The small-operand GEMM kernels (small_gemm.h) of this path against plain
 * loops, for every shape they take among a spread of sizes. */
static void check_small_gemm(const prec_t *P)
{
    static const int sizes[] = {1, 3, 8, 16, 17, 64};
    const int ns = (int)(sizeof(sizes) / sizeof(sizes[0]));
    check_t c;
    check_begin(&c, "small_gemm", P->suffix);
    long shapes = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int im = 0; im < ns; im++)
                for (int in = 0; in < ns; in++)
                    for (int ik = 0; ik < ns; ik++) {
                        const int m = sizes[im], n = sizes[in], k = sizes[ik];
                        const int lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2, ldc = n + 3;
                        const size_t na = (size_t)(ta ? k : m) * lda;
                        const size_t nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
                        double *a = xmalloc(na * sizeof(double)), *b = xmalloc(nb * sizeof(double)),
                               *c0 = xmalloc(nc * sizeof(double));
                        for (size_t i = 0; i < na; i++) a[i] = uniform(P, -1, 1);
                        for (size_t i = 0; i < nb; i++) b[i] = uniform(P, -1, 1);
                        for (size_t i = 0; i < nc; i++) c0[i] = uniform(P, -1, 1);
                        const double alpha = -0.375, beta = (m + n + k) % 3 == 0 ? 0.0 : 0.75;
                        void *ta_ = typed(P, a, na), *tb_ = typed(P, b, nb), *tc = typed(P, c0, nc);
                        const int did = P->f32
                            ? nf_small_gemm_kernel_f(ta, tb, m, n, k, (float)alpha, ta_, lda, tb_,
                                                     ldb, (float)beta, tc, ldc)
                            : nf_small_gemm_kernel_d(ta, tb, m, n, k, alpha, ta_, lda, tb_, ldb,
                                                     beta, tc, ldc);
                        if (did) {
                            shapes++;
                            for (int i = 0; i < m; i++)
                                for (int j = 0; j < n; j++) {
                                    double s = 0, mag = 0;
                                    for (int q = 0; q < k; q++) {
                                        const double t = (ta ? a[(size_t)q * lda + i]
                                                             : a[(size_t)i * lda + q])
                                                       * (tb ? b[(size_t)j * ldb + q]
                                                             : b[(size_t)q * ldb + j]);
                                        s += t;
                                        mag += fabs(t);
                                    }
                                    const double cij = c0[(size_t)i * ldc + j];
                                    const double want = alpha * s + beta * cij;
                                    const double allowed =
                                        P->tol * (fabs(alpha) * mag + fabs(beta * cij)) + P->tiny;
                                    expect_close(&c, tget(P, tc, (size_t)i * ldc + j), want,
                                                 allowed, "ta %d tb %d m %d n %d k %d: C[%d][%d]",
                                                 ta, tb, m, n, k, i, j);
                                }
                        }
                        free(a), free(b), free(c0), free(ta_), free(tb_), free(tc);
                    }
    expect_true(&c, shapes > 0, "the kernels took no shape");
    check_end(&c);
}

/* The dropout keep-masks against bits computed by reference.network3.dropout_mask. */
static void check_dropout_mask(void)
{
    static const struct {
        uint64_t seed;
        int layer;
        int64_t step;
        double p;
        uint64_t bits;
    } known[] = {
        {12345, 2, 7, 0.5, 0x4314b5c217d6d457ull},
        {1, 0, 0, 0.25, 0xf25fcfdcf6c7f777ull},
    };
    check_t c;
    check_begin(&c, "dropout_mask", "");
    for (int t = 0; t < 2; t++) {
        double md[64];
        float mf[64];
        nf_dropout_mask_d(known[t].seed, known[t].layer, known[t].step, 64, known[t].p, md);
        nf_dropout_mask_f(known[t].seed, known[t].layer, known[t].step, 64, known[t].p, mf);
        for (int e = 0; e < 64; e++) {
            const double want = (double)((known[t].bits >> e) & 1);
            expect_exact(&c, md[e], want, "mask %d, element %d (double)", t, e);
            expect_exact(&c, mf[e], want, "mask %d, element %d (float)", t, e);
        }
    }
    check_end(&c);
}

/* A layer of a test net: conv-pool (c, h, w in; f filters kh x kw; pool ph x pw),
 * dense or softmax (n_in, n_out, dropout p of its inputs). tnet_init fills in a
 * conv layer's n_in, n_out and its map sizes: hc x wc convolved, ho x wo pooled. */
typedef struct {
    int kind, act, c, h, w, f, kh, kw, ph, pw, n_in, n_out;
    double p;
    int hc, wc, ho, wo;
} lspec_t;

enum { MAX_L = 6 };

typedef struct {
    int L;
    lspec_t s[MAX_L];
    double *w[MAX_L], *b[MAX_L];    /* the reference's parameters */
    void *tw[MAX_L], *tb[MAX_L];    /* the engine's (precision under test) */
} tnet_t;

static size_t n_weights(const lspec_t *s)
{
    return s->kind == NF_CONV ? (size_t)s->f * s->c * s->kh * s->kw : (size_t)s->n_in * s->n_out;
}

static size_t n_biases(const lspec_t *s)
{
    return s->kind == NF_CONV ? (size_t)s->f : (size_t)s->n_out;
}

/* Where conv layer s's filter f holds the weight that multiplies input (c, y + u,
 * x + v) at output (y, x): the filters are flipped (true convolution). */
static size_t flipped(const lspec_t *s, int f, int c, int u, int v)
{
    return (((size_t)f * s->c + c) * s->kh + s->kh - 1 - u) * s->kw + s->kw - 1 - v;
}

/* The largest of conv output z's (one filter's hc x wc map) pooling window
 * (oy, ox) of layer s. */
static double window_max(const lspec_t *s, const double *z, int oy, int ox)
{
    double m = -INFINITY;
    for (int dy = 0; dy < s->ph; dy++)
        for (int dx = 0; dx < s->pw; dx++) {
            const double v = z[(size_t)(oy * s->ph + dy) * s->wc + ox * s->pw + dx];
            m = v > m ? v : m;
        }
    return m;
}

/* Fill in each layer's sizes from its shape, draw its parameters. */
static void tnet_init(const prec_t *P, tnet_t *t)
{
    for (int l = 0; l < t->L; l++) {
        lspec_t *s = &t->s[l];
        if (s->kind == NF_CONV) {
            s->hc = s->h - s->kh + 1, s->wc = s->w - s->kw + 1;
            s->ho = s->hc / s->ph, s->wo = s->wc / s->pw;
            s->n_in = s->c * s->h * s->w;
            s->n_out = s->f * s->ho * s->wo;
        }
        const size_t nw = n_weights(s), nb = n_biases(s);
        const double fan_in = s->kind == NF_CONV ? (double)s->c * s->kh * s->kw : s->n_in;
        const double scale = 1.0 / sqrt(fan_in);
        t->w[l] = xmalloc(nw * sizeof(double));
        t->b[l] = xmalloc(nb * sizeof(double));
        for (size_t i = 0; i < nw; i++) t->w[l][i] = uniform(P, -2 * scale, 2 * scale);
        for (size_t i = 0; i < nb; i++) t->b[l][i] = uniform(P, -0.5, 0.5);
        t->tw[l] = typed(P, t->w[l], nw);
        t->tb[l] = typed(P, t->b[l], nb);
    }
}

static void tnet_free(tnet_t *t)
{
    for (int l = 0; l < t->L; l++) free(t->w[l]), free(t->b[l]), free(t->tw[l]), free(t->tb[l]);
}

/* ref_forward's buffers for t: in[l], layer l's inputs (in[L]: the
 * probabilities), and zc[l], a conv layer's maps before the pool (else NULL). */
static void ref_bufs(const tnet_t *t, double **in, double **zc)
{
    const int L = t->L;
    for (int l = 0; l <= L; l++)
        in[l] = xmalloc((size_t)(l < L ? t->s[l].n_in : t->s[L - 1].n_out) * sizeof(double));
    for (int l = 0; l < L; l++) {
        const lspec_t *s = &t->s[l];
        zc[l] = s->kind == NF_CONV ? xmalloc((size_t)s->f * s->hc * s->wc * sizeof(double))
                                   : NULL;
    }
}

static void ref_bufs_free(const tnet_t *t, double **in, double **zc)
{
    for (int l = 0; l <= t->L; l++) free(in[l]);
    for (int l = 0; l < t->L; l++) free(zc[l]);
}

/* The engine's description of t (its parameters: the typed copies). */
static void tnet_engine(const tnet_t *t, nf_net *net, uint64_t seed)
{
    memset(net, 0, sizeof(*net));
    net->n_layers = t->L;
    net->n_threads = 1;
    net->dropout_seed = seed;
    net->gemm_f = gemm_plain_f;
    net->gemm_d = gemm_plain_d;
    for (int l = 0; l < t->L; l++) {
        const lspec_t *s = &t->s[l];
        nf_layer *ly = &net->layers[l];
        ly->kind = s->kind;
        ly->act = s->act;
        ly->n_in = s->n_in;
        ly->n_out = s->n_out;
        ly->p_dropout = s->p;
        ly->w = t->tw[l];
        ly->b = t->tb[l];
        if (s->kind == NF_CONV) {
            net->n_conv++;
            ly->c_in = s->c, ly->h_in = s->h, ly->w_in = s->w, ly->n_filt = s->f;
            ly->kh = s->kh, ly->kw = s->kw, ly->ph = s->ph, ly->pw = s->pw;
            ly->hc = s->hc, ly->wc = s->wc, ly->ho = s->ho, ly->wo = s->wo;
        }
    }
}

static double act_of(int act, double z)
{
    switch (act) {
    case NF_SIGMOID: return 1 / (1 + exp(-z));
    case NF_TANH: return tanh(z);
    case NF_RELU: return z > 0 ? z : 0;
    default: return z;
    }
}

/* One example through the net in double, by the book's definitions: 'valid'
 * true convolution, max-pool with the border ignored, bias and activation
 * after the pool; dense inputs times their keep-mask (masks[l], NULL for
 * none) in training, or outputs scaled by 1 - p without masks (inference);
 * softmax last. in[l] are layer l's inputs (in[L]: the probabilities), zc[l]
 * a conv layer's convolution before the pool. */
static void ref_forward(const tnet_t *t, const double *x, double *const *masks, int train,
                        double **in, double **zc)
{
    memcpy(in[0], x, (size_t)t->s[0].n_in * sizeof(double));
    for (int l = 0; l < t->L; l++) {
        const lspec_t *s = &t->s[l];
        const double *a = in[l], *w = t->w[l], *b = t->b[l];
        double *out = in[l + 1];
        if (s->kind == NF_CONV) {
            const int hc = s->hc, wc = s->wc, ho = s->ho, wo = s->wo;
            for (int f = 0; f < s->f; f++) {
                double *zf = zc[l] + (size_t)f * hc * wc;
                for (int y = 0; y < hc; y++)
                    for (int x0 = 0; x0 < wc; x0++) {
                        double sum = 0;
                        for (int c = 0; c < s->c; c++)
                            for (int u = 0; u < s->kh; u++)
                                for (int v = 0; v < s->kw; v++)
                                    sum += a[((size_t)c * s->h + y + u) * s->w + x0 + v]
                                         * w[flipped(s, f, c, u, v)];
                        zf[(size_t)y * wc + x0] = sum;
                    }
                for (int oy = 0; oy < ho; oy++)
                    for (int ox = 0; ox < wo; ox++)
                        out[((size_t)f * ho + oy) * wo + ox] =
                            act_of(s->act, window_max(s, zf, oy, ox) + b[f]);
            }
            continue;
        }
        for (int j = 0; j < s->n_out; j++) {
            double sum = 0;
            for (int i = 0; i < s->n_in; i++)
                sum += (masks && masks[l] ? a[i] * masks[l][i] : a[i])
                       * w[(size_t)i * s->n_out + j];
            out[j] = (train ? sum : (1 - s->p) * sum) + b[j];
        }
        if (s->kind == NF_SOFTMAX) {
            double top = out[0], total = 0;
            for (int j = 1; j < s->n_out; j++) top = out[j] > top ? out[j] : top;
            for (int j = 0; j < s->n_out; j++) total += out[j] = exp(out[j] - top);
            for (int j = 0; j < s->n_out; j++) out[j] /= total;
        } else {
            for (int j = 0; j < s->n_out; j++) out[j] = act_of(s->act, out[j]);
        }
    }
}

/* n_batches mini-batches of m examples, as nf_train: per batch, the mean
 * log-likelihood's gradient plus reg * w for the weights, a step of eta. */
static void ref_train(tnet_t *t, const double *x, const int64_t *y, int n_batches, int m,
                      double eta, double reg, uint64_t seed, int64_t first_step)
{
    const int L = t->L;
    double *in[MAX_L + 1], *zc[MAX_L], *g[MAX_L + 1], *gw[MAX_L], *gb[MAX_L], *masks[MAX_L];
    ref_bufs(t, in, zc);    /* and g[l] the size of in[l] */
    for (int l = 0; l <= L; l++)
        g[l] = xmalloc((size_t)(l < L ? t->s[l].n_in : t->s[L - 1].n_out) * sizeof(double));
    for (int l = 0; l < L; l++) {
        const lspec_t *s = &t->s[l];
        gw[l] = xmalloc(n_weights(s) * sizeof(double));
        gb[l] = xmalloc(n_biases(s) * sizeof(double));
        masks[l] = s->p > 0 ? xmalloc((size_t)m * s->n_in * sizeof(double)) : NULL;
    }
    for (int k = 0; k < n_batches; k++) {
        for (int l = 0; l < L; l++) {
            memset(gw[l], 0, n_weights(&t->s[l]) * sizeof(double));
            memset(gb[l], 0, n_biases(&t->s[l]) * sizeof(double));
            if (masks[l])
                nf_dropout_mask_d(seed, l, first_step + k, (int64_t)m * t->s[l].n_in, t->s[l].p,
                                  masks[l]);
        }
        for (int i = 0; i < m; i++) {
            const int64_t e = (int64_t)k * m + i;
            double *mi[MAX_L];
            for (int l = 0; l < L; l++)
                mi[l] = masks[l] ? masks[l] + (size_t)i * t->s[l].n_in : NULL;
            ref_forward(t, x + (size_t)e * t->s[0].n_in, mi, 1, in, zc);
            /* g[l + 1]: the cost's gradient at layer l's pre-activations (its
             * pooled ones for conv), then at its inputs, into g[l] */
            const int K = t->s[L - 1].n_out;
            for (int j = 0; j < K; j++) g[L][j] = (in[L][j] - (j == y[e] ? 1.0 : 0.0)) / m;
            for (int l = L - 1; l >= 0; l--) {
                const lspec_t *s = &t->s[l];
                const double *a = in[l], *w = t->w[l];
                double *d = g[l + 1];
                if (s->kind != NF_SOFTMAX)
                    for (int j = 0; j < s->n_out; j++) d[j] *= act_prime(s->act, in[l + 1][j]);
                if (s->kind == NF_CONV) {
                    const int hc = s->hc, wc = s->wc, ho = s->ho, wo = s->wo;
                    memset(g[l], 0, (size_t)s->n_in * sizeof(double));
                    for (int f = 0; f < s->f; f++)
                        for (int oy = 0; oy < ho; oy++)
                            for (int ox = 0; ox < wo; ox++) {
                                const size_t q = ((size_t)f * ho + oy) * wo + ox;
                                const double *zf = zc[l] + (size_t)f * hc * wc;
                                const double top = window_max(s, zf, oy, ox);
                                gb[l][f] += d[q];
                                /* every position equal to its window's max takes the gradient */
                                for (int dy = 0; dy < s->ph; dy++)
                                    for (int dx = 0; dx < s->pw; dx++) {
                                        const int yy = oy * s->ph + dy, xx = ox * s->pw + dx;
                                        if (zf[(size_t)yy * wc + xx] != top) continue;
                                        for (int c = 0; c < s->c; c++)
                                            for (int u = 0; u < s->kh; u++)
                                                for (int v = 0; v < s->kw; v++) {
                                                    const size_t wi = flipped(s, f, c, u, v);
                                                    const size_t xi =
                                                        ((size_t)c * s->h + yy + u) * s->w + xx + v;
                                                    gw[l][wi] += a[xi] * d[q];
                                                    g[l][xi] += w[wi] * d[q];
                                                }
                                    }
                            }
                    continue;
                }
                for (int ii = 0; ii < s->n_in; ii++) {
                    const double xin = mi[l] ? a[ii] * mi[l][ii] : a[ii];
                    double back = 0;
                    for (int j = 0; j < s->n_out; j++) {
                        gw[l][(size_t)ii * s->n_out + j] += xin * d[j];
                        back += w[(size_t)ii * s->n_out + j] * d[j];
                    }
                    g[l][ii] = mi[l] ? back * mi[l][ii] : back;
                }
                for (int j = 0; j < s->n_out; j++) gb[l][j] += d[j];
            }
        }
        for (int l = 0; l < L; l++) {
            for (size_t i = 0; i < n_weights(&t->s[l]); i++)
                t->w[l][i] -= eta * (gw[l][i] + reg * t->w[l][i]);
            for (size_t i = 0; i < n_biases(&t->s[l]); i++) t->b[l][i] -= eta * gb[l][i];
        }
    }
    ref_bufs_free(t, in, zc);
    for (int l = 0; l <= L; l++) free(g[l]);
    for (int l = 0; l < L; l++) free(gw[l]), free(gb[l]), free(masks[l]);
}

/* Inputs for n examples of t: a tenth of them blank (all 0), the rest
 * MNIST-like (most pixels 0, the others in (0, 1)). */
static double *net_inputs(const prec_t *P, const tnet_t *t, int n, int64_t *y)
{
    const int n_in = t->s[0].n_in, K = t->s[t->L - 1].n_out;
    double *x = xmalloc((size_t)n * n_in * sizeof(double));
    for (int e = 0; e < n; e++) {
        y[e] = (int64_t)(rng_next() % (uint64_t)K);
        for (int i = 0; i < n_in; i++)
            x[(size_t)e * n_in + i] = e % 10 == 3 || rng_next() % 5 ? 0.0 : uniform(P, 0.01, 1.0);
    }
    return x;
}

/* The conv engine (conv_engine.h: nf_train, nf_predict) on whole small nets
 * against ref_train and ref_forward: the first conv layer by the direct
 * kernels (float32, one channel, an even number of filters) or by im2col and
 * GEMM; two conv layers; dense layers by GEMM or by the sparse products (256
 * outputs or more, dropout or ReLU below; and every dense layer, forced);
 * sigmoid, tanh and ReLU. Probabilities are allowed tol, parameters tol of
 * (1 + |w|) after three mini-batches of M examples (the errors seen
 * are 1e-16 and 1e-8). */
static void check_conv_net(const prec_t *P, const char *name, const lspec_t *spec, int L,
                           const int M)
{
    enum { BATCHES = 3 };
    const double eta = 0.1, reg = 0.02;
    const uint64_t seed = 2024;
    const int64_t first_step = 5;
    check_t c;
    check_begin(&c, name, P->suffix);
    tnet_t t;
    t.L = L;
    memcpy(t.s, spec, (size_t)L * sizeof(lspec_t));
    tnet_init(P, &t);
    const int n = M * BATCHES, n_in = t.s[0].n_in, K = t.s[L - 1].n_out;
    int64_t *y = xmalloc((size_t)n * sizeof(int64_t));
    double *x = net_inputs(P, &t, n, y);
    void *tx = typed(P, x, (size_t)n * n_in);
    /* the starting parameters, for each training run */
    void *w0[MAX_L], *b0[MAX_L];
    const size_t es = P->f32 ? sizeof(float) : sizeof(double);
    for (int l = 0; l < L; l++) {
        w0[l] = xmalloc(n_weights(&t.s[l]) * es);
        b0[l] = xmalloc(n_biases(&t.s[l]) * es);
        memcpy(w0[l], t.tw[l], n_weights(&t.s[l]) * es);
        memcpy(b0[l], t.tb[l], n_biases(&t.s[l]) * es);
    }
    nf_net net;
    tnet_engine(&t, &net, seed);
    /* inference first, on the starting parameters */
    double *in[MAX_L + 1], *zc[MAX_L];
    ref_bufs(&t, in, zc);
    void *probs = xmalloc((size_t)n * K * es);
    const int rc = P->f32 ? nf_predict_f(&net, tx, n, probs) : nf_predict_d(&net, tx, n, probs);
    expect_true(&c, rc == 0, "nf_predict returned %d", rc);
    for (int e = 0; e < n; e++) {
        ref_forward(&t, x + (size_t)e * n_in, NULL, 0, in, zc);
        for (int j = 0; j < K; j++)
            expect_close(&c, tget(P, probs, (size_t)e * K + j), in[L][j], P->tol,
                         "predict: example %d, class %d", e, j);
    }
    /* training, with the dense layers' sparse products never, always and by
     * the default rule (each mode's sums in an order of its own) */
    ref_train(&t, x, y, BATCHES, M, eta, reg, seed, first_step);
    const int mode = nf_sparse_dense_mode(2);
    static const int modes[3] = {0, 1, -1};
    for (int r = 0; r < 3; r++) {
        nf_sparse_dense_mode(modes[r]);
        for (int l = 0; l < L; l++) {
            memcpy(t.tw[l], w0[l], n_weights(&t.s[l]) * es);
            memcpy(t.tb[l], b0[l], n_biases(&t.s[l]) * es);
        }
        const int rt = P->f32 ? nf_train_f(&net, tx, y, BATCHES, M, eta, reg, first_step)
                              : nf_train_d(&net, tx, y, BATCHES, M, eta, reg, first_step);
        expect_true(&c, rt == 0, "nf_train returned %d", rt);
        for (int l = 0; l < L; l++) {
            for (size_t i = 0; i < n_weights(&t.s[l]); i++)
                expect_close(&c, tget(P, t.tw[l], i), t.w[l][i],
                             P->tol * (1 + fabs(t.w[l][i])),
                             "sparse mode %d, layer %d: w[%zu] after %d mini-batches", modes[r],
                             l, i, (int)BATCHES);
            for (size_t i = 0; i < n_biases(&t.s[l]); i++)
                expect_close(&c, tget(P, t.tb[l], i), t.b[l][i],
                             P->tol * (1 + fabs(t.b[l][i])),
                             "sparse mode %d, layer %d: b[%zu] after %d mini-batches", modes[r],
                             l, i, (int)BATCHES);
        }
    }
    nf_sparse_dense_mode(mode);
    for (int l = 0; l < L; l++) free(w0[l]), free(b0[l]);
    ref_bufs_free(&t, in, zc);
    free(x), free(tx), free(y), free(probs);
    tnet_free(&t);
    check_end(&c);
}

static void check_conv_nets(const prec_t *P)
{
    /* the book's first conv net, smaller: 1 channel, 8 filters 5x5 on 20x20
     * (the direct kernels in float32), pool 2x2, sigmoid; dense 30; softmax */
    const lspec_t conv1[] = {
        {.kind = NF_CONV, .act = NF_SIGMOID, .c = 1, .h = 20, .w = 20, .f = 8, .kh = 5, .kw = 5,
         .ph = 2, .pw = 2},
        {.kind = NF_DENSE, .act = NF_SIGMOID, .n_in = 512, .n_out = 30},
        {.kind = NF_SOFTMAX, .act = NF_LINEAR, .n_in = 30, .n_out = 10},
    };
    /* two conv layers (an odd filter count: im2col and GEMM for the first, in
     * two bands of each image), ReLU and tanh, dense layers of 300 and 260
     * with dropout (the sparse products), dropout into the softmax */
    const lspec_t deep[] = {
        {.kind = NF_CONV, .act = NF_RELU, .c = 1, .h = 28, .w = 28, .f = 13, .kh = 5, .kw = 5,
         .ph = 2, .pw = 2},
        {.kind = NF_CONV, .act = NF_TANH, .c = 13, .h = 12, .w = 12, .f = 6, .kh = 3, .kw = 3,
         .ph = 2, .pw = 2},
        {.kind = NF_DENSE, .act = NF_RELU, .n_in = 150, .n_out = 300, .p = 0.5},
        {.kind = NF_DENSE, .act = NF_RELU, .n_in = 300, .n_out = 260, .p = 0.5},
        {.kind = NF_SOFTMAX, .act = NF_LINEAR, .n_in = 260, .n_out = 10, .p = 0.5},
    };
    check_conv_net(P, "conv_net1", conv1, 3, 10);
    check_conv_net(P, "conv_net2", deep, 5, 4);
}

static void check_select(const char *path)
{
    check_t c;
    check_begin(&c, "select", "");
    expect_true(&c, nf_dense_path_runs("generic") == 1, "the generic path does not run");
    expect_true(&c, nf_dense_path_runs("sse9") == 0, "an unknown path runs");
    expect_true(&c, nf_dense_select("sse9") == -1, "an unknown path was accepted");
    expect_true(&c, nf_dense_select(NULL) == 0, "select(NULL) failed");
    const char *best = nf_dense_isa();
    int first_running = -1;
    for (int p = 0; p < 3 && first_running < 0; p++)
        if (nf_dense_path_runs(PATHS[p])) first_running = p;
    expect_true(&c, first_running >= 0 && strcmp(best, PATHS[first_running]) == 0,
                "select(NULL) chose %s, not the fastest path that runs", best);
    for (int p = 0; p < 3; p++)
        if (!nf_dense_path_runs(PATHS[p])) {
            expect_true(&c, nf_dense_select(PATHS[p]) == -1, "%s was accepted", PATHS[p]);
            expect_true(&c, strcmp(nf_dense_isa(), best) == 0,
                                                "refusing %s changed the path", PATHS[p]);
        }
    expect_true(&c, nf_dense_select(path) == 0, "select(%s) failed", path);
    expect_true(&c, strcmp(nf_dense_isa(), path) == 0, "isa() says %s after select(%s)",
                                        nf_dense_isa(), path);
    check_end(&c);
}

int main(int argc, char **argv)
{
    if (argc > 2 || (argc == 2 && argv[1][0] == '-' && strcmp(argv[1], "--list") != 0)) {
        fprintf(stderr, "usage: %s [--list | avx512 | avx2 | generic]\n", argv[0]);
        return 2;
    }
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (int p = 0; p < 3; p++)
            if (nf_dense_path_runs(PATHS[p])) printf("%s\n", PATHS[p]);
        return 0;
    }
    const char *path = argc == 2 ? argv[1] : NULL;
    if (path && nf_dense_select(path) != 0) {
        fprintf(stderr, "kernel_check: this build or processor cannot run the %s path\n", path);
        return 2;
    }
    if (!path) {
        nf_dense_select(NULL);
        path = nf_dense_isa();
    }
    if (nf_conv_select_path(path) != 0) {
        fprintf(stderr, "kernel_check: the conv kernels cannot run the %s path\n", path);
        return 2;
    }
    printf("kernel path: %s\n", path);
    check_select(path);
    rng_seed(17);
    for (int f = 0; f < 2; f++) {
        const prec_t *P = &PRECISIONS[f];
        check_known(P);
        check_fwd(P, 0);
        check_fwd(P, 1);
        check_upd(P, 0);
        check_upd(P, 1);
        check_sigmoid(P);
        check_act(P);
        check_bwd(P);
        check_sparse(P);
        check_scale(P);
        check_small_gemm(P);
        check_conv_nets(P);
    }
    check_convert();
    check_dropout_mask();
    if (n_failed_checks) {
        printf("kernel_check %s: %d check(s) FAILED\n", path, n_failed_checks);
        return 1;
    }
    printf("kernel_check %s: all checks passed\n", path);
    return 0;
}
