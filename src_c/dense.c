/* Block kernels of the dense SGD epoch: portable C, plus AVX-512 versions
 * chosen at run time on processors that have it (the package is built for the
 * baseline instruction set; only these functions are compiled for AVX-512). */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "dense.h"
#ifdef _WIN32
#include <windows.h>
#define nndl_yield() SwitchToThread()
#else
#include <sched.h>
#define nndl_yield() sched_yield()
#endif
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#include <immintrin.h>
#define nndl_pause() _mm_pause()
#else
#define nndl_pause() ((void)0)
#endif

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define NNDL_HAVE_AVX512 1
#include <immintrin.h>
#else
#define NNDL_HAVE_AVX512 0
#endif

/* ---------------------------------------------------------------- portable */

#define DEFINE_GENERIC(T, SUF, EXP)                                                  \
static void fwd_generic_##SUF(int m, int K, const T *X, int ldx, const T *W,          \
                              const int32_t *cols, T *out, int ldo)                   \
{                                                                                     \
    for (int i = 0; i < m; i++) {                                                     \
        T acc[NNDL_BW] = {0};                                                         \
        const T *x = X + (ptrdiff_t)i * ldx;                                          \
        for (int k = 0; k < K; k++) {                                                 \
            const T xv = x[k];                                                        \
            const T *w = W + (ptrdiff_t)(cols ? cols[k] : k) * NNDL_BW;               \
            for (int j = 0; j < NNDL_BW; j++) acc[j] += xv * w[j];                    \
        }                                                                             \
        for (int j = 0; j < NNDL_BW; j++) out[(ptrdiff_t)i * ldo + j] = acc[j];      \
    }                                                                                 \
}                                                                                     \
static void upd_generic_##SUF(int rows, int m, const T *X, int ldx, const T *D,       \
                              int ldd, T *W, const int32_t *cols, T alpha, T beta)    \
{                                                                                     \
    for (int r = 0; r < rows; r++) {                                                  \
        T acc[NNDL_BW] = {0};                                                         \
        for (int i = 0; i < m; i++) {                                                 \
            const T xv = X[(ptrdiff_t)i * ldx + r];                                   \
            const T *d = D + (ptrdiff_t)i * ldd;                                      \
            for (int j = 0; j < NNDL_BW; j++) acc[j] += xv * d[j];                    \
        }                                                                             \
        T *w = W + (ptrdiff_t)(cols ? cols[r] : r) * NNDL_BW;                         \
        if (beta == (T)1)                                                             \
            for (int j = 0; j < NNDL_BW; j++) w[j] = w[j] + alpha * acc[j];           \
        else                                                                          \
            for (int j = 0; j < NNDL_BW; j++) w[j] = beta * w[j] + alpha * acc[j];    \
    }                                                                                 \
}                                                                                     \
static void sigmoid_generic_##SUF(int m, T *Z, int ldz, const T *b, int n_valid)     \
{                                                                                     \
    for (int i = 0; i < m; i++) {                                                     \
        T *z = Z + (ptrdiff_t)i * ldz;                                                \
        for (int j = 0; j < n_valid; j++) z[j] = (T)1 / ((T)1 + EXP(-(z[j] + b[j])));  \
        for (int j = n_valid; j < NNDL_BW; j++) z[j] = 0;                             \
    }                                                                                 \
}                                                                                     \
static void bwd_generic_##SUF(int m, int rows, int nb, const T *W, ptrdiff_t bstride, \
                              const T *Dn, int ldn, const T *A, int lda, T *out,      \
                              int ldo)                                                \
{                                                                                     \
    for (int i = 0; i < m; i++) {                                                     \
        const T *dn = Dn + (ptrdiff_t)i * ldn;                                        \
        const T *a = A + (ptrdiff_t)i * lda;                                          \
        T *o = out + (ptrdiff_t)i * ldo;                                              \
        for (int c = 0; c < rows; c++) {                                              \
            T s = 0;                                                                  \
            for (int bl = 0; bl < nb; bl++) {                                         \
                const T *w = W + bl * bstride + (ptrdiff_t)c * NNDL_BW;               \
                for (int j = 0; j < NNDL_BW; j++) s += w[j] * dn[bl * NNDL_BW + j];   \
            }                                                                         \
            o[c] = s * (a[c] * ((T)1 - a[c]));                                        \
        }                                                                             \
        for (int c = rows; c < NNDL_BW; c++) o[c] = 0;                                \
    }                                                                                 \
}

DEFINE_GENERIC(double, d, exp)
DEFINE_GENERIC(float, s, expf)

/* Row i of a batch of sparse rows: rows[i], or first + i when rows is NULL. */
#define CSR_ROW(rows, first, i) ((rows) ? (rows)[i] : (first) + (i))


/* ---------------------------------------------------------------- AVX-512 */
#if NNDL_HAVE_AVX512
#define AVX512 __attribute__((target("avx512f")))

/* E examples at a time: per input k, two (double) weight vectors and E
 * broadcasts feed 2E independent FMA chains (enough to hide FMA latency).
 * With cols, input k is weight row cols[k] (a compacted set of inputs). */
static inline __attribute__((always_inline, target("avx512f")))
void fwd_group_d(const int E, int K, const double *X, int ldx, const double *W,
                 const int32_t *cols, double *out, int ldo)
{
    __m512d acc0[10], acc1[10];
    for (int e = 0; e < E; e++) { acc0[e] = _mm512_setzero_pd(); acc1[e] = _mm512_setzero_pd(); }
    for (int k = 0; k < K; k++) {
        const double *w = W + (ptrdiff_t)(cols ? cols[k] : k) * 16;
        const __m512d w0 = _mm512_loadu_pd(w);
        const __m512d w1 = _mm512_loadu_pd(w + 8);
        for (int e = 0; e < E; e++) {
            const __m512d v = _mm512_set1_pd(X[(ptrdiff_t)e * ldx + k]);
            acc0[e] = _mm512_fmadd_pd(v, w0, acc0[e]);
            acc1[e] = _mm512_fmadd_pd(v, w1, acc1[e]);
        }
    }
    for (int e = 0; e < E; e++) {
        _mm512_storeu_pd(out + (ptrdiff_t)e * ldo, acc0[e]);
        _mm512_storeu_pd(out + (ptrdiff_t)e * ldo + 8, acc1[e]);
    }
}

static inline __attribute__((always_inline, target("avx512f")))
void fwd_body_d(int m, int K, const double *X, int ldx, const double *W, const int32_t *cols,
                double *out, int ldo)
{
    int i = 0;
    while (i < m) {
        const int left = m - i;
        const double *x = X + (ptrdiff_t)i * ldx;
        double *o = out + (ptrdiff_t)i * ldo;
        /* Constant group sizes let the compiler keep every accumulator in a
         * register (2 per example: up to 10 examples in one sweep). */
        switch (left >= 10 ? 10 : left) {
        case 10: fwd_group_d(10, K, x, ldx, W, cols, o, ldo); i += 10; break;
        case 9: fwd_group_d(9, K, x, ldx, W, cols, o, ldo); i += 9; break;
        case 8: fwd_group_d(8, K, x, ldx, W, cols, o, ldo); i += 8; break;
        case 7: fwd_group_d(7, K, x, ldx, W, cols, o, ldo); i += 7; break;
        case 6: fwd_group_d(6, K, x, ldx, W, cols, o, ldo); i += 6; break;
        case 5: fwd_group_d(5, K, x, ldx, W, cols, o, ldo); i += 5; break;
        case 4: fwd_group_d(4, K, x, ldx, W, cols, o, ldo); i += 4; break;
        case 3: fwd_group_d(3, K, x, ldx, W, cols, o, ldo); i += 3; break;
        case 2: fwd_group_d(2, K, x, ldx, W, cols, o, ldo); i += 2; break;
        default: fwd_group_d(1, K, x, ldx, W, cols, o, ldo); i += 1; break;
        }
    }
}

static AVX512 void fwd_avx512_d(int m, int K, const double *X, int ldx,
                                const double *W, double *out, int ldo)
{
    fwd_body_d(m, K, X, ldx, W, NULL, out, ldo);
}

static AVX512 void fwd_idx_avx512_d(int m, int K, const double *X, int ldx, const double *W,
                                    const int32_t *cols, double *out, int ldo)
{
    fwd_body_d(m, K, X, ldx, W, cols, out, ldo);
}

/* E examples at a time (E <= 12): one weight vector per input k feeds E
 * independent FMA chains. */
static inline __attribute__((always_inline, target("avx512f")))
void fwd_group_s(const int E, int K, const float *X, int ldx, const float *W,
                 const int32_t *cols, float *out, int ldo)
{
    __m512 acc[12];
    for (int e = 0; e < E; e++) acc[e] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const __m512 w = _mm512_loadu_ps(W + (ptrdiff_t)(cols ? cols[k] : k) * 16);
        for (int e = 0; e < E; e++)
            acc[e] = _mm512_fmadd_ps(_mm512_set1_ps(X[(ptrdiff_t)e * ldx + k]), w, acc[e]);
    }
    for (int e = 0; e < E; e++) _mm512_storeu_ps(out + (ptrdiff_t)e * ldo, acc[e]);
}

static inline __attribute__((always_inline, target("avx512f")))
void fwd_body_s(int m, int K, const float *X, int ldx, const float *W, const int32_t *cols,
                float *out, int ldo)
{
    int i = 0;
    while (i < m) {
        const int left = m - i;
        const float *x = X + (ptrdiff_t)i * ldx;
        float *o = out + (ptrdiff_t)i * ldo;
        /* Constant group sizes keep the accumulators in registers; a whole
         * mini-batch of up to 12 goes in one sweep over the weights. */
        switch (left >= 12 ? 12 : left) {
        case 12: fwd_group_s(12, K, x, ldx, W, cols, o, ldo); i += 12; break;
        case 11: fwd_group_s(11, K, x, ldx, W, cols, o, ldo); i += 11; break;
        case 10: fwd_group_s(10, K, x, ldx, W, cols, o, ldo); i += 10; break;
        case 9: fwd_group_s(9, K, x, ldx, W, cols, o, ldo); i += 9; break;
        case 8: fwd_group_s(8, K, x, ldx, W, cols, o, ldo); i += 8; break;
        case 7: fwd_group_s(7, K, x, ldx, W, cols, o, ldo); i += 7; break;
        case 6: fwd_group_s(6, K, x, ldx, W, cols, o, ldo); i += 6; break;
        case 5: fwd_group_s(5, K, x, ldx, W, cols, o, ldo); i += 5; break;
        case 4: fwd_group_s(4, K, x, ldx, W, cols, o, ldo); i += 4; break;
        case 3: fwd_group_s(3, K, x, ldx, W, cols, o, ldo); i += 3; break;
        case 2: fwd_group_s(2, K, x, ldx, W, cols, o, ldo); i += 2; break;
        default: fwd_group_s(1, K, x, ldx, W, cols, o, ldo); i += 1; break;
        }
    }
}

static AVX512 void fwd_avx512_s(int m, int K, const float *X, int ldx,
                                const float *W, float *out, int ldo)
{
    fwd_body_s(m, K, X, ldx, W, NULL, out, ldo);
}

static AVX512 void fwd_idx_avx512_s(int m, int K, const float *X, int ldx, const float *W,
                                    const int32_t *cols, float *out, int ldo)
{
    fwd_body_s(m, K, X, ldx, W, cols, out, ldo);
}

/* R rows at a time share each example's two delta vectors: 2R independent
 * FMA chains per example. Row q of the group is W row q, or cols[q] with cols. */
static inline __attribute__((always_inline, target("avx512f")))
void upd_group_d(const int R, int m, const double *X, int ldx, const double *D, int ldd,
                 double *W, const int32_t *cols, __m512d va, __m512d vb, int scale)
{
    __m512d acc0[8], acc1[8];
    for (int q = 0; q < R; q++) { acc0[q] = _mm512_setzero_pd(); acc1[q] = _mm512_setzero_pd(); }
    for (int i = 0; i < m; i++) {
        const double *d = D + (ptrdiff_t)i * ldd;
        const __m512d d0 = _mm512_loadu_pd(d), d1 = _mm512_loadu_pd(d + 8);
        const double *x = X + (ptrdiff_t)i * ldx;
        for (int q = 0; q < R; q++) {
            const __m512d v = _mm512_set1_pd(x[q]);
            acc0[q] = _mm512_fmadd_pd(v, d0, acc0[q]);
            acc1[q] = _mm512_fmadd_pd(v, d1, acc1[q]);
        }
    }
    for (int q = 0; q < R; q++) {
        double *w = W + (ptrdiff_t)(cols ? cols[q] : q) * 16;
        __m512d w0 = _mm512_loadu_pd(w), w1 = _mm512_loadu_pd(w + 8);
        if (scale) { w0 = _mm512_mul_pd(vb, w0); w1 = _mm512_mul_pd(vb, w1); }
        _mm512_storeu_pd(w, _mm512_fmadd_pd(va, acc0[q], w0));
        _mm512_storeu_pd(w + 8, _mm512_fmadd_pd(va, acc1[q], w1));
    }
}

/* R rows at a time (R <= 8) share each example's delta vector: R independent
 * FMA chains per example. */
static inline __attribute__((always_inline, target("avx512f")))
void upd_group_s(const int R, int m, const float *X, int ldx, const float *D, int ldd,
                 float *W, const int32_t *cols, __m512 va, __m512 vb, int scale)
{
    __m512 acc[8];
    for (int q = 0; q < R; q++) acc[q] = _mm512_setzero_ps();
    for (int i = 0; i < m; i++) {
        const __m512 d = _mm512_loadu_ps(D + (ptrdiff_t)i * ldd);
        const float *x = X + (ptrdiff_t)i * ldx;
        for (int q = 0; q < R; q++)
            acc[q] = _mm512_fmadd_ps(_mm512_set1_ps(x[q]), d, acc[q]);
    }
    for (int q = 0; q < R; q++) {
        float *w = W + (ptrdiff_t)(cols ? cols[q] : q) * 16;
        __m512 w0 = _mm512_loadu_ps(w);
        if (scale) w0 = _mm512_mul_ps(vb, w0);
        _mm512_storeu_ps(w, _mm512_fmadd_ps(va, acc[q], w0));
    }
}

/* The update over all rows: groups of 8, then 4, 2 and 1 rows (each a constant
 * group size, so that the accumulators stay in registers); beta = 1 with cols. */
#define UPD_GROUPS_OF(SUF, R)                                                         \
    for (; r + (R) <= rows; r += (R))                                                 \
        upd_group_##SUF((R), m, X + r, ldx, D, ldd, cols ? W : W + (ptrdiff_t)r * 16, \
                        cols ? cols + r : NULL, va, vb, scale);

#define DEFINE_UPD_AVX512(T, SUF, VT, SET1)                                           \
static inline __attribute__((always_inline, target("avx512f")))                      \
void upd_body_##SUF(int rows, int m, const T *X, int ldx, const T *D, int ldd, T *W,  \
                    const int32_t *cols, T alpha, T beta)                             \
{                                                                                     \
    const VT va = SET1(alpha), vb = SET1(beta);                                       \
    const int scale = beta != (T)1;                                                   \
    int r = 0;                                                                        \
    UPD_GROUPS_OF(SUF, 8) UPD_GROUPS_OF(SUF, 4) UPD_GROUPS_OF(SUF, 2) UPD_GROUPS_OF(SUF, 1) \
}                                                                                     \
static AVX512 void upd_avx512_##SUF(int rows, int m, const T *X, int ldx, const T *D, \
                                    int ldd, T *W, T alpha, T beta)                   \
{                                                                                     \
    upd_body_##SUF(rows, m, X, ldx, D, ldd, W, NULL, alpha, beta);                    \
}                                                                                     \
static AVX512 void upd_idx_avx512_##SUF(int rows, int m, const T *X, int ldx,         \
                                        const T *D, int ldd, T *W,                    \
                                        const int32_t *cols, T alpha)                 \
{                                                                                     \
    upd_body_##SUF(rows, m, X, ldx, D, ldd, W, cols, alpha, (T)1);                    \
}

DEFINE_UPD_AVX512(double, d, __m512d, _mm512_set1_pd)
DEFINE_UPD_AVX512(float, s, __m512, _mm512_set1_ps)

/* exp by range reduction x = n ln2 + r, |r| <= ln2/2, and a degree-12 Taylor
 * polynomial (truncation error below 2e-16 relative); 2^n applied by scalef,
 * which gives inf/0 where exp overflows/underflows, like libm. */
static inline __attribute__((always_inline, target("avx512f"))) __m512d exp_avx512_d(__m512d x)
{
    x = _mm512_max_pd(_mm512_min_pd(x, _mm512_set1_pd(760.0)), _mm512_set1_pd(-760.0));
    const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(6.93147180369123816490e-01), x);
    r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.90821492927058770002e-10), r);
    __m512d p = _mm512_set1_pd(1.0 / 479001600.0);
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 39916800.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 3628800.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 362880.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 40320.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 5040.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 720.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 120.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 24.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0 / 6.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0.5));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
    p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
    return _mm512_scalef_pd(p, n);
}

static inline __attribute__((always_inline, target("avx512f"))) __m512 exp_avx512_s(__m512 x)
{
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(100.0f)), _mm512_set1_ps(-110.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static AVX512 void sigmoid_avx512_d(int m, double *Z, int ldz, const double *b, int n_valid)
{
    const __m512d one = _mm512_set1_pd(1.0);
    const __mmask8 k0 = (__mmask8)(n_valid >= 8 ? 0xFF : (1u << n_valid) - 1u);
    const __mmask8 k1 = (__mmask8)(n_valid >= 16 ? 0xFF : (n_valid <= 8 ? 0u : (1u << (n_valid - 8)) - 1u));
    const __m512d b0 = _mm512_loadu_pd(b), b1 = _mm512_loadu_pd(b + 8);
    for (int i = 0; i < m; i++) {
        double *z = Z + (ptrdiff_t)i * ldz;
        __m512d z0 = _mm512_add_pd(_mm512_loadu_pd(z), b0);
        __m512d z1 = _mm512_add_pd(_mm512_loadu_pd(z + 8), b1);
        z0 = _mm512_div_pd(one, _mm512_add_pd(one, exp_avx512_d(_mm512_sub_pd(_mm512_setzero_pd(), z0))));
        z1 = _mm512_div_pd(one, _mm512_add_pd(one, exp_avx512_d(_mm512_sub_pd(_mm512_setzero_pd(), z1))));
        _mm512_storeu_pd(z, _mm512_maskz_mov_pd(k0, z0));
        _mm512_storeu_pd(z + 8, _mm512_maskz_mov_pd(k1, z1));
    }
}

static AVX512 void sigmoid_avx512_s(int m, float *Z, int ldz, const float *b, int n_valid)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    const __mmask16 k = (__mmask16)(n_valid >= 16 ? 0xFFFFu : (1u << n_valid) - 1u);
    const __m512 b0 = _mm512_loadu_ps(b);
    for (int i = 0; i < m; i++) {
        float *z = Z + (ptrdiff_t)i * ldz;
        __m512 z0 = _mm512_add_ps(_mm512_loadu_ps(z), b0);
        z0 = _mm512_div_ps(one, _mm512_add_ps(one, exp_avx512_s(_mm512_sub_ps(_mm512_setzero_ps(), z0))));
        _mm512_storeu_ps(z, _mm512_maskz_mov_ps(k, z0));
    }
}

static AVX512 void bwd_avx512_d(int m, int rows, int nb, const double *W, ptrdiff_t bstride,
                                const double *Dn, int ldn, const double *A, int lda,
                                double *out, int ldo)
{
    for (int i = 0; i < m; i++) {
        const double *dn = Dn + (ptrdiff_t)i * ldn;
        const double *a = A + (ptrdiff_t)i * lda;
        double *o = out + (ptrdiff_t)i * ldo;
        for (int c = 0; c < rows; c++) {
            __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
            for (int bl = 0; bl < nb; bl++) {
                const double *w = W + bl * bstride + (ptrdiff_t)c * 16;
                s0 = _mm512_fmadd_pd(_mm512_loadu_pd(w), _mm512_loadu_pd(dn + bl * 16), s0);
                s1 = _mm512_fmadd_pd(_mm512_loadu_pd(w + 8), _mm512_loadu_pd(dn + bl * 16 + 8), s1);
            }
            const double s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
            o[c] = s * (a[c] * (1.0 - a[c]));
        }
        for (int c = rows; c < 16; c++) o[c] = 0;
    }
}

static AVX512 void bwd_avx512_s(int m, int rows, int nb, const float *W, ptrdiff_t bstride,
                                const float *Dn, int ldn, const float *A, int lda,
                                float *out, int ldo)
{
    for (int i = 0; i < m; i++) {
        const float *dn = Dn + (ptrdiff_t)i * ldn;
        const float *a = A + (ptrdiff_t)i * lda;
        float *o = out + (ptrdiff_t)i * ldo;
        for (int c = 0; c < rows; c++) {
            __m512 s0 = _mm512_setzero_ps();
            for (int bl = 0; bl < nb; bl++)
                s0 = _mm512_fmadd_ps(_mm512_loadu_ps(W + bl * bstride + (ptrdiff_t)c * 16),
                                     _mm512_loadu_ps(dn + bl * 16), s0);
            o[c] = _mm512_reduce_add_ps(s0) * (a[c] * (1.0f - a[c]));
        }
        for (int c = rows; c < 16; c++) o[c] = 0;
    }
}

static AVX512 void convert_avx512(int n, const float *src, double *dst)
{
    int j = 0;
    for (; j + 8 <= n; j += 8)
        _mm512_storeu_pd(dst + j, _mm512_cvtps_pd(_mm256_loadu_ps(src + j)));
    for (; j < n; j++) dst[j] = (double)src[j];
}


static AVX512 void scale_avx512_d(ptrdiff_t n, double *x, double beta)
{
    const __m512d vb = _mm512_set1_pd(beta);
    ptrdiff_t j = 0;
    for (; j + 8 <= n; j += 8) _mm512_storeu_pd(x + j, _mm512_mul_pd(vb, _mm512_loadu_pd(x + j)));
    for (; j < n; j++) x[j] = beta * x[j];
}

static AVX512 void scale_avx512_s(ptrdiff_t n, float *x, float beta)
{
    const __m512 vb = _mm512_set1_ps(beta);
    ptrdiff_t j = 0;
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(x + j, _mm512_mul_ps(vb, _mm512_loadu_ps(x + j)));
    for (; j < n; j++) x[j] = beta * x[j];
}

static int avx512_checked = 0, avx512_ok = 0, expand_ok = 0;

static void check_cpu(void)
{
    /* A benign race: every thread computes the same answers. */
    if (!avx512_checked) {
        /* NNDL_FAST_KERNELS=generic selects the portable kernels (tests). */
        const char *env = getenv("NNDL_FAST_KERNELS");
        __builtin_cpu_init();
        avx512_ok = __builtin_cpu_supports("avx512f") && !(env && strcmp(env, "generic") == 0);
        expand_ok = avx512_ok && __builtin_cpu_supports("avx512vl")
                    && __builtin_cpu_supports("bmi2");
        avx512_checked = 1;
    }
}

static int have_avx512(void) { check_cpu(); return avx512_ok; }
static int have_expand(void) { check_cpu(); return expand_ok; }

/* 16 float lanes from doubles: expand the run at src into the lanes of mk. */
static inline __attribute__((always_inline, target("avx512f,avx512vl,bmi2,popcnt")))
__m512 _mm512_cvtpd_ps_512(__mmask16 mk, const double *src)
{
    const __mmask8 lo = (__mmask8)mk, hi = (__mmask8)(mk >> 8);
    const __m256 a = _mm512_cvtpd_ps(_mm512_maskz_expand_pd(lo, _mm512_loadu_pd(src)));
    const __m256 b = _mm512_cvtpd_ps(_mm512_maskz_expand_pd(hi, _mm512_loadu_pd(src + _mm_popcnt_u32(lo))));
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(a)),
                                               _mm256_castps_pd(b), 1));
}

/* The rows of a sparse batch on the union's columns, by expanding each row's
 * run of values into the union positions it occupies (pext of the row's bits
 * by the union's bits), 8 or 16 lanes at a time: no zeroing pass, no lookups. */
#define EXPAND_TARGET __attribute__((target("avx512f,avx512vl,bmi2,popcnt")))

static EXPAND_TARGET void scatter_expand_d(int i0, int i1, const nndl_csr *X,
                                           const int64_t *rows, int64_t first,
                                           const uint64_t *ubits, double *Xc, int U)
{
    const int nw = X->n_words;
    for (int i = i0; i < i1; i++) {
        const int64_t r = CSR_ROW(rows, first, i);
        const uint64_t *eb = X->bits + r * nw;
        int64_t p = X->ptr[r];
        double *xc = Xc + (ptrdiff_t)i * U;
        for (int w = 0; w < nw; w++) {
            const uint64_t uw = ubits[w];
            const int cu = (int)_mm_popcnt_u64(uw);
            const uint64_t pm = _pext_u64(eb[w], uw);
            /* Each chunk's first value found from the mask alone (no chain
             * through the previous chunk). */
            for (int c = 0; c < cu; c += 8) {
                const __mmask8 mk = (__mmask8)(pm >> c);
                const int64_t q = p + (c ? (int)_mm_popcnt_u64(pm << (64 - c)) : 0);
                __m512d v;
                if (X->val_f32)
                    v = _mm512_cvtps_pd(_mm256_maskz_expand_ps(mk, _mm256_loadu_ps((const float *)X->val + q)));
                else
                    v = _mm512_maskz_expand_pd(mk, _mm512_loadu_pd((const double *)X->val + q));
                const int left = cu - c;
                _mm512_mask_storeu_pd(xc + c, (__mmask8)(left >= 8 ? 0xFF : (1u << left) - 1u), v);
            }
            p += (int)_mm_popcnt_u64(eb[w]);
            xc += cu;
        }
    }
}

static EXPAND_TARGET void scatter_expand_s(int i0, int i1, const nndl_csr *X,
                                           const int64_t *rows, int64_t first,
                                           const uint64_t *ubits, float *Xc, int U)
{
    const int nw = X->n_words;
    for (int i = i0; i < i1; i++) {
        const int64_t r = CSR_ROW(rows, first, i);
        const uint64_t *eb = X->bits + r * nw;
        int64_t p = X->ptr[r];
        float *xc = Xc + (ptrdiff_t)i * U;
        for (int w = 0; w < nw; w++) {
            const uint64_t uw = ubits[w];
            const int cu = (int)_mm_popcnt_u64(uw);
            const uint64_t pm = _pext_u64(eb[w], uw);
            for (int c = 0; c < cu; c += 16) {
                const __mmask16 mk = (__mmask16)(pm >> c);
                const int64_t q = p + (c ? (int)_mm_popcnt_u64(pm << (64 - c)) : 0);
                __m512 v;
                if (X->val_f32)
                    v = _mm512_maskz_expand_ps(mk, _mm512_loadu_ps((const float *)X->val + q));
                else
                    v = _mm512_cvtpd_ps_512(mk, (const double *)X->val + q);
                const int left = cu - c;
                _mm512_mask_storeu_ps(xc + c, (__mmask16)(left >= 16 ? 0xFFFFu : (1u << left) - 1u), v);
            }
            p += (int)_mm_popcnt_u64(eb[w]);
            xc += cu;
        }
    }
}
/* cols[] = the positions of the set bits of ubits[0..nw), ascending; returns
 * how many. Sixteen bits at a time by compress-store. */
static EXPAND_TARGET int union_cols_avx512(const uint64_t *ubits, int nw, int32_t *cols)
{
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int U = 0;
    for (int w = 0; w < nw; w++) {
        const uint64_t x = ubits[w];
        for (int h = 0; h < 4; h++) {
            const __mmask16 mk = (__mmask16)(x >> (16 * h));
            if (!mk) continue;
            _mm512_mask_compressstoreu_epi32(cols + U, mk,
                                             _mm512_add_epi32(iota, _mm512_set1_epi32(w * 64 + 16 * h)));
            U += _mm_popcnt_u32(mk);
        }
    }
    return U;
}
#else
static int have_avx512(void) { return 0; }
static int have_expand(void) { return 0; }
#endif

/* ---------------------------------------------------------------- dispatch */

void nndl_fwd_d(int m, int K, const double *X, int ldx, const double *W,
                double *out, int ldo)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { fwd_avx512_d(m, K, X, ldx, W, out, ldo); return; }
#endif
    fwd_generic_d(m, K, X, ldx, W, NULL, out, ldo);
}

void nndl_fwd_s(int m, int K, const float *X, int ldx, const float *W,
                float *out, int ldo)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { fwd_avx512_s(m, K, X, ldx, W, out, ldo); return; }
#endif
    fwd_generic_s(m, K, X, ldx, W, NULL, out, ldo);
}

void nndl_upd_d(int rows, int m, const double *X, int ldx, const double *D, int ldd,
                double *W, double alpha, double beta)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { upd_avx512_d(rows, m, X, ldx, D, ldd, W, alpha, beta); return; }
#endif
    upd_generic_d(rows, m, X, ldx, D, ldd, W, NULL, alpha, beta);
}

void nndl_upd_s(int rows, int m, const float *X, int ldx, const float *D, int ldd,
                float *W, float alpha, float beta)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { upd_avx512_s(rows, m, X, ldx, D, ldd, W, alpha, beta); return; }
#endif
    upd_generic_s(rows, m, X, ldx, D, ldd, W, NULL, alpha, beta);
}

void nndl_sigmoid_block_d(int m, double *Z, int ldz, const double *b, int n_valid)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { sigmoid_avx512_d(m, Z, ldz, b, n_valid); return; }
#endif
    sigmoid_generic_d(m, Z, ldz, b, n_valid);
}

void nndl_sigmoid_block_s(int m, float *Z, int ldz, const float *b, int n_valid)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { sigmoid_avx512_s(m, Z, ldz, b, n_valid); return; }
#endif
    sigmoid_generic_s(m, Z, ldz, b, n_valid);
}

void nndl_bwd_d(int m, int rows, int nb, const double *W, ptrdiff_t bstride,
                const double *Dn, int ldn, const double *A, int lda, double *out, int ldo)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { bwd_avx512_d(m, rows, nb, W, bstride, Dn, ldn, A, lda, out, ldo); return; }
#endif
    bwd_generic_d(m, rows, nb, W, bstride, Dn, ldn, A, lda, out, ldo);
}

void nndl_bwd_s(int m, int rows, int nb, const float *W, ptrdiff_t bstride,
                const float *Dn, int ldn, const float *A, int lda, float *out, int ldo)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { bwd_avx512_s(m, rows, nb, W, bstride, Dn, ldn, A, lda, out, ldo); return; }
#endif
    bwd_generic_s(m, rows, nb, W, bstride, Dn, ldn, A, lda, out, ldo);
}

/* ---------------------------------------------------------------- sparse rows */

static inline int nndl_ctz64(uint64_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(x);
#else
    int n = 0;
    while (!(x & 1)) { x >>= 1; n++; }
    return n;
#endif
}

int nndl_csr_union(int m, const nndl_csr *X, const int64_t *rows, int64_t first,
                   int32_t *cols, int32_t *pos, uint64_t *ubits)
{
    const int nw = X->n_words;
    int U = 0;
    for (int w = 0; w < nw; w++) ubits[w] = 0;
    for (int i = 0; i < m; i++) {
        const uint64_t *b = X->bits + CSR_ROW(rows, first, i) * nw;
        for (int w = 0; w < nw; w++) ubits[w] |= b[w];
    }
#if NNDL_HAVE_AVX512
    if (have_expand()) {
        /* The expanding scatter needs no pos; the columns by compress-stores. */
        if (cols) U = union_cols_avx512(ubits, nw, cols);
        else for (int w = 0; w < nw; w++) U += (int)__builtin_popcountll(ubits[w]);
        return U;
    }
#endif
    for (int w = 0; w < nw; w++) {
        for (uint64_t x = ubits[w]; x; x &= x - 1) {
            const int k = w * 64 + nndl_ctz64(x);
            pos[k] = U;
            if (cols) cols[U] = k;
            U++;
        }
    }
    return U;
}

#if NNDL_HAVE_AVX512
#define SCATTER_EXPAND(SUF)                                                           \
    if (have_expand()) { scatter_expand_##SUF(i0, i1, X, rows, first, ubits, Xc, U); return; }
#else
#define SCATTER_EXPAND(SUF)
#endif

#define DEFINE_CSR_SCATTER(T, SUF)                                                    \
void nndl_csr_scatter_##SUF(int i0, int i1, const nndl_csr *X, const int64_t *rows,   \
                            int64_t first, int U, const int32_t *pos,                 \
                            const uint64_t *ubits, T *Xc)                             \
{                                                                                     \
    SCATTER_EXPAND(SUF)                                                               \
    for (ptrdiff_t j = (ptrdiff_t)i0 * U; j < (ptrdiff_t)i1 * U; j++) Xc[j] = 0;     \
    for (int i = i0; i < i1; i++) {                                                   \
        const int64_t r = CSR_ROW(rows, first, i);                                    \
        const int64_t p0 = X->ptr[r], p1 = X->ptr[r + 1];                             \
        const int32_t *idx = X->idx;                                                  \
        T *xc = Xc + (ptrdiff_t)i * U;                                                \
        if (X->val_f32) {                                                             \
            const float *val = (const float *)X->val;                                 \
            for (int64_t p = p0; p < p1; p++) xc[pos[idx[p]]] = (T)val[p];            \
        } else {                                                                      \
            const double *val = (const double *)X->val;                               \
            for (int64_t p = p0; p < p1; p++) xc[pos[idx[p]]] = (T)val[p];            \
        }                                                                             \
    }                                                                                 \
}

DEFINE_CSR_SCATTER(double, d)
DEFINE_CSR_SCATTER(float, s)

/* Layer 1's pre-activations of m csr rows (first, first + 1, ...) for NB
 * consecutive 16-unit blocks of W (each n_in x 16): per nonzero input, a
 * broadcast times NB weight rows into NB independent 16-wide sums (NB <= 4,
 * held in 64-byte vector variables, which compilers keep in registers: four
 * AVX-512 or sixteen SSE registers a block of doubles). Each sum adds the
 * row's nonzero inputs in ascending column order, as the dense kernels do
 * (the zeros they add change no sum). One body: compiled for AVX-512 by its
 * wrapper's target, and for the baseline. */
#if defined(__GNUC__)
typedef double nndl_vd __attribute__((vector_size(64)));
typedef float nndl_vs __attribute__((vector_size(64)));
#define NNDL_VZERO(a) ((a) = (__typeof__(a)){0})
#define NNDL_VMADD(a, v, src)                                                         \
    do { __typeof__(a) w_; memcpy(&w_, (src), 64); (a) += (v) * w_; } while (0)
#define NNDL_VSTORE(dst, a) memcpy((dst), &(a), 64)
#else   /* other compilers: the same sums, one lane at a time */
typedef struct { double x[8]; } nndl_vd;
typedef struct { float x[16]; } nndl_vs;
#define NNDL_VLANES(a) ((int)(sizeof((a).x) / sizeof((a).x[0])))
#define NNDL_VZERO(a) memset(&(a), 0, sizeof(a))
#define NNDL_VMADD(a, v, src)                                                         \
    do { for (int l_ = 0; l_ < NNDL_VLANES(a); l_++) (a).x[l_] += (v) * (src)[l_]; } while (0)
#define NNDL_VSTORE(dst, a) memcpy((dst), &(a), sizeof(a))
#endif
#define DEFINE_CSR_FIRST(T, SUF, V)                                                   \
static inline __attribute__((always_inline))                                          \
void csr_group_##SUF(const int NB, const nndl_csr *X, int64_t row, int n_in,          \
                     const T *W, T *out)                                              \
{                                                                                     \
    enum { NV = 16 * sizeof(T) / 64 };           /* vectors per 16-unit block */      \
    V acc[4][NV];                                                                     \
    for (int b = 0; b < NB; b++)                                                      \
        for (int k = 0; k < NV; k++) NNDL_VZERO(acc[b][k]);                           \
    const int64_t p0 = X->ptr[row], p1 = X->ptr[row + 1];                             \
    const ptrdiff_t bs = (ptrdiff_t)n_in * 16;                                        \
    for (int64_t p = p0; p < p1; p++) {                                               \
        const T v = X->val_f32 ? (T)((const float *)X->val)[p]                        \
                               : (T)((const double *)X->val)[p];                      \
        const T *w = W + (ptrdiff_t)X->idx[p] * 16;                                   \
        for (int b = 0; b < NB; b++)                                                  \
            for (int k = 0; k < NV; k++)                                              \
                NNDL_VMADD(acc[b][k], v, w + b * bs + k * (64 / sizeof(T)));          \
    }                                                                                 \
    for (int b = 0; b < NB; b++)                                                      \
        for (int k = 0; k < NV; k++)                                                  \
            NNDL_VSTORE(out + b * 16 + k * (64 / sizeof(T)), acc[b][k]);              \
}                                                                                     \
                                                                                      \
static inline __attribute__((always_inline))                                          \
void csr_first_body_##SUF(int m, const nndl_csr *X, int64_t first, int n_in,          \
                          int n_blocks, const T *W, T *out, int ldo)                  \
{                                                                                     \
    for (int i = 0; i < m; i++) {                                                     \
        for (int b = 0; b < n_blocks; b += 4) {                                       \
            const T *wb = W + (ptrdiff_t)b * n_in * 16;                               \
            T *o = out + (ptrdiff_t)i * ldo + b * 16;                                 \
            switch (n_blocks - b >= 4 ? 4 : n_blocks - b) {                           \
            case 4: csr_group_##SUF(4, X, first + i, n_in, wb, o); break;             \
            case 3: csr_group_##SUF(3, X, first + i, n_in, wb, o); break;             \
            case 2: csr_group_##SUF(2, X, first + i, n_in, wb, o); break;             \
            default: csr_group_##SUF(1, X, first + i, n_in, wb, o); break;            \
            }                                                                         \
        }                                                                             \
    }                                                                                 \
}                                                                                     \
                                                                                      \
static void csr_first_generic_##SUF(int m, const nndl_csr *X, int64_t first, int n_in, \
                                    int n_blocks, const T *W, T *out, int ldo)        \
{                                                                                     \
    csr_first_body_##SUF(m, X, first, n_in, n_blocks, W, out, ldo);                   \
}

DEFINE_CSR_FIRST(double, d, nndl_vd)
DEFINE_CSR_FIRST(float, s, nndl_vs)

#if NNDL_HAVE_AVX512
static AVX512 void csr_first_avx512_d(int m, const nndl_csr *X, int64_t first, int n_in,
                                      int n_blocks, const double *W, double *out, int ldo)
{
    csr_first_body_d(m, X, first, n_in, n_blocks, W, out, ldo);
}

static AVX512 void csr_first_avx512_s(int m, const nndl_csr *X, int64_t first, int n_in,
                                      int n_blocks, const float *W, float *out, int ldo)
{
    csr_first_body_s(m, X, first, n_in, n_blocks, W, out, ldo);
}
#endif

void nndl_csr_first_d(int m, const nndl_csr *X, int64_t first, int n_in, int n_blocks,
                      const double *W, double *out, int ldo)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { csr_first_avx512_d(m, X, first, n_in, n_blocks, W, out, ldo); return; }
#endif
    csr_first_generic_d(m, X, first, n_in, n_blocks, W, out, ldo);
}

void nndl_csr_first_s(int m, const nndl_csr *X, int64_t first, int n_in, int n_blocks,
                      const float *W, float *out, int ldo)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { csr_first_avx512_s(m, X, first, n_in, n_blocks, W, out, ldo); return; }
#endif
    csr_first_generic_s(m, X, first, n_in, n_blocks, W, out, ldo);
}

void nndl_fwd_idx_d(int m, int K, const double *X, int ldx, const double *W,
                    const int32_t *cols, double *out, int ldo)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { fwd_idx_avx512_d(m, K, X, ldx, W, cols, out, ldo); return; }
#endif
    fwd_generic_d(m, K, X, ldx, W, cols, out, ldo);
}

void nndl_fwd_idx_s(int m, int K, const float *X, int ldx, const float *W,
                    const int32_t *cols, float *out, int ldo)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { fwd_idx_avx512_s(m, K, X, ldx, W, cols, out, ldo); return; }
#endif
    fwd_generic_s(m, K, X, ldx, W, cols, out, ldo);
}

void nndl_upd_idx_d(int rows, int m, const double *X, int ldx, const double *D, int ldd,
                    double *W, const int32_t *cols, double alpha)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { upd_idx_avx512_d(rows, m, X, ldx, D, ldd, W, cols, alpha); return; }
#endif
    upd_generic_d(rows, m, X, ldx, D, ldd, W, cols, alpha, 1.0);
}

void nndl_upd_idx_s(int rows, int m, const float *X, int ldx, const float *D, int ldd,
                    float *W, const int32_t *cols, float alpha)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { upd_idx_avx512_s(rows, m, X, ldx, D, ldd, W, cols, alpha); return; }
#endif
    upd_generic_s(rows, m, X, ldx, D, ldd, W, cols, alpha, 1.0f);
}

void nndl_scale_d(ptrdiff_t n, double *x, double beta)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { scale_avx512_d(n, x, beta); return; }
#endif
    for (ptrdiff_t j = 0; j < n; j++) x[j] = beta * x[j];
}

void nndl_scale_s(ptrdiff_t n, float *x, float beta)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { scale_avx512_s(n, x, beta); return; }
#endif
    for (ptrdiff_t j = 0; j < n; j++) x[j] = beta * x[j];
}

void nndl_convert_f2d(int n, const float *src, double *dst)
{
#if NNDL_HAVE_AVX512
    if (have_avx512()) { convert_avx512(n, src, dst); return; }
#endif
    for (int j = 0; j < n; j++) dst[j] = (double)src[j];
}

unsigned int nndl_flush_denormals_begin(void)
{
#if defined(__SSE__) || defined(_M_X64)
    const unsigned int old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u);          /* flush-to-zero and denormals-are-zero */
    return old;
#else
    return 0;
#endif
}

void nndl_flush_denormals_end(unsigned int state)
{
#if defined(__SSE__) || defined(_M_X64)
    _mm_setcsr(state);
#else
    (void)state;
#endif
}

void nndl_spin_barrier_init(nndl_spin_barrier *b, int n_threads)
{
    b->n_threads = n_threads;
    b->count = n_threads;
    b->sense = 0;
}

void nndl_spin_barrier_wait(nndl_spin_barrier *b, int *local_sense)
{
    const int sense = !*local_sense;
    *local_sense = sense;
    if (__atomic_sub_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == 0) {
        /* Last to arrive: re-arm, then release the others (the release store
         * publishes every write made before the barrier). */
        __atomic_store_n(&b->count, b->n_threads, __ATOMIC_RELAXED);
        __atomic_store_n(&b->sense, sense, __ATOMIC_RELEASE);
        return;
    }
    for (long spins = 0; __atomic_load_n(&b->sense, __ATOMIC_ACQUIRE) != sense; spins++) {
        if (spins < 4000)
            nndl_pause();
        else
            nndl_yield();
    }
}

void nndl_prefetch_l2(const void *p, size_t bytes)
{
#if defined(__GNUC__)
    const char *c = (const char *)p;
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, 1);
#else
    (void)p; (void)bytes;
#endif
}

void nndl_csr_prefetch_row(const nndl_csr *X, int64_t r)
{
#if defined(__GNUC__)
    const int64_t p0 = X->ptr[r], n = X->ptr[r + 1] - p0;
    const size_t vsize = X->val_f32 ? sizeof(float) : sizeof(double);
    nndl_prefetch_l2((const char *)X->val + p0 * vsize, (size_t)n * vsize);
    nndl_prefetch_l2(X->bits + r * X->n_words, (size_t)X->n_words * sizeof(uint64_t));
    if (!have_expand())   /* the portable gather reads the columns too */
        nndl_prefetch_l2(X->idx + p0, (size_t)n * sizeof(int32_t));
#else
    (void)X; (void)r;
#endif
}

void nndl_prefetch(const void *p, size_t bytes)
{
#if defined(__GNUC__)
    const char *c = (const char *)p;
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, 3);
#else
    (void)p; (void)bytes;
#endif
}

const char *nndl_dense_isa(void)
{
    return have_avx512() ? "avx512" : "generic";
}
