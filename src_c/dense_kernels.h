/* The block kernels of the dense SGD epoch, written once (see dense.h for what
 * each computes, nf_simd.h for the vectors).
 *
 * A template: dense.c includes it once per (instruction set, dtype), with
 *   NF_DOUBLE   1 for double, 0 for float
 *   NF_SUF      this copy's suffix (d_avx512, f_generic...): NF_FN(fwd) is fwd_<NF_SUF>
 *   NF_VBYTES   the path's vector width in bytes (64, 32 or 16)
 *   NF_FWD_E    examples per sweep of the forward kernel (<= 12)
 *   NF_UPD_R    weight rows per sweep of the update kernel (8, 4, 2 or 1)
 *   NF_CSR_NB   16-unit blocks per sweep of the sparse first layer (<= 4)
 *   NF_CSR_STEP 1 when the epoch's sparse first layer steps straight from the
 *               csr rows (csr_first, csr_upd), 0 when from the batch expanded
 *               on its union of columns (fwd, upd). The expansion lets a sweep
 *               share each weight load among NF_FWD_E examples, but 60% of a
 *               10-image MNIST batch's expanded entries are zeros, each a
 *               multiply-add for nothing: only AVX-512, sharing a load among
 *               10 to 12 examples, wins that back (docs/how-it-is-built.md)
 * chosen so that a sweep's accumulators and operands fit the path's vector
 * registers (32 AVX-512 or NEON registers, 16 AVX2 or SSE2).
 *
 * Every sum runs in one fixed order on every path (over the inputs k for the
 * forward kernels, over the examples for the update, over the blocks and then
 * by halves across the lanes for the backward kernel); paths differ only in
 * whether a multiply and an add are fused (FMA), by less than an ulp a term.
 */
#include "nf_template.h"
#if NF_DOUBLE
#define NF_EXP nf_exp_d
#define NF_TANH_FN tanh
#else
#define NF_EXP nf_exp_f
#define NF_TANH_FN tanhf
#endif
#define NF_NV (16 / NF_VL)                      /* vectors per 16-unit block */
#define NF_V NF_FN(vec)
NF_VECTOR_TYPE(NF_V, NF_T, NF_VBYTES);

/* out[e][0:16] = sum_k X[e][k] W[col k][0:16] for E examples: per input k,
 * the block's NV weight vectors and E broadcasts feed E * NV independent
 * chains (enough to hide the FMA latency). */
NF_INLINE void NF_FN(fwd_group)(const int E, int K, const NF_T *X, int ldx, const NF_T *W,
                                const int32_t *cols, NF_T *out, int ldo)
{
    NF_V acc[12][NF_NV];
    NF_UNROLL
    for (int e = 0; e < E; e++)
        NF_UNROLL
        for (int v = 0; v < NF_NV; v++) NF_VZERO(acc[e][v]);
    for (int k = 0; k < K; k++) {
        const NF_T *w = W + (ptrdiff_t)(cols ? cols[k] : k) * 16;
        NF_V wv[NF_NV];
        NF_UNROLL
        for (int v = 0; v < NF_NV; v++) NF_VLOAD(wv[v], w + v * NF_VL);
        NF_UNROLL
        for (int e = 0; e < E; e++) {
            const NF_T x = X[(ptrdiff_t)e * ldx + k];
            NF_UNROLL
            for (int v = 0; v < NF_NV; v++) NF_VFMA(acc[e][v], x, wv[v]);
        }
    }
    NF_UNROLL
    for (int e = 0; e < E; e++)
        NF_UNROLL
        for (int v = 0; v < NF_NV; v++) NF_VSTORE(out + (ptrdiff_t)e * ldo + v * NF_VL, acc[e][v]);
}

#define NF_FWD_CASE(n) \
    case n: NF_FN(fwd_group)(n, K, x, ldx, W, cols, o, ldo); i += n; break;

static void NF_FN(fwd)(int m, int K, const NF_T *X, int ldx, const NF_T *W,
                       const int32_t *cols, NF_T *out, int ldo)
{
    int i = 0;
    while (i < m) {
        const NF_T *x = X + (ptrdiff_t)i * ldx;
        NF_T *o = out + (ptrdiff_t)i * ldo;
        switch (m - i >= NF_FWD_E ? NF_FWD_E : m - i) {
        NF_CAT(NF_UPTO_, NF_FWD_E)(NF_FWD_CASE)
        }
    }
}
#undef NF_FWD_CASE

/* W[row q] = beta W[row q] + alpha sum_i X[i][q] D[i][0:16] for R rows: each
 * example's NV delta vectors feed R * NV independent chains. The new weight
 * is fma(alpha, sum, w) or, with scale, fma(alpha, sum, round(beta w)). */
NF_INLINE void NF_FN(upd_group)(const int R, const int scale, const int indexed, int m,
                                const NF_T *X, int ldx, const NF_T *D, int ldd, NF_T *W,
                                const int32_t *cols, NF_T alpha, NF_T beta)
{
    NF_V acc[8][NF_NV];
    NF_UNROLL
    for (int q = 0; q < R; q++)
        NF_UNROLL
        for (int v = 0; v < NF_NV; v++) NF_VZERO(acc[q][v]);
    for (int i = 0; i < m; i++) {
        const NF_T *d = D + (ptrdiff_t)i * ldd;
        const NF_T *x = X + (ptrdiff_t)i * ldx;
        NF_V dv[NF_NV];
        NF_UNROLL
        for (int v = 0; v < NF_NV; v++) NF_VLOAD(dv[v], d + v * NF_VL);
        NF_UNROLL
        for (int q = 0; q < R; q++)
            NF_UNROLL
            for (int v = 0; v < NF_NV; v++) NF_VFMA(acc[q][v], x[q], dv[v]);
    }
    NF_UNROLL
    for (int q = 0; q < R; q++) {
        /* (branch-free, so that each product and its sum stay together
         * where the compiler fuses them) */
        NF_T *w = W + (ptrdiff_t)(indexed ? cols[q] : q) * 16;
        NF_UNROLL
        for (int v = 0; v < NF_NV; v++) {
            NF_V wv;
            NF_VLOAD(wv, w + v * NF_VL);
            if (scale) {
                NF_VSCALE(wv, beta);
                NF_VOPAQUE(wv);
            }
            NF_VFMA(wv, alpha, acc[q][v]);
            NF_VSTORE(w + v * NF_VL, wv);
        }
    }
}

/* Groups of NF_UPD_R rows, then of halves down to 1 (each a constant size). */
#define NF_UPD_GROUPS(R, S, I)                                                        \
    if ((R) <= NF_UPD_R)                                                              \
        for (; r + (R) <= rows; r += (R))                                             \
            NF_FN(upd_group)((R), (S), (I), m, X + r, ldx, D, ldd,                    \
                             (I) ? W : W + (ptrdiff_t)r * 16, (I) ? cols + r : NULL,    \
                             alpha, beta);
#define NF_UPD_ALL(S, I) \
    NF_UPD_GROUPS(8, S, I) NF_UPD_GROUPS(4, S, I) NF_UPD_GROUPS(2, S, I) NF_UPD_GROUPS(1, S, I)

static void NF_FN(upd)(int rows, int m, const NF_T *X, int ldx, const NF_T *D, int ldd,
                       NF_T *W, const int32_t *cols, NF_T alpha, NF_T beta)
{
    int r = 0;
    if (beta != (NF_T)1) {
        if (cols) { NF_UPD_ALL(1, 1) } else { NF_UPD_ALL(1, 0) }
    } else {
        if (cols) { NF_UPD_ALL(0, 1) } else { NF_UPD_ALL(0, 0) }
    }
}
#undef NF_UPD_ALL
#undef NF_UPD_GROUPS

/* Z[i][j] = act(Z[i][j] + b[j]) for j < n_valid, 0 for n_valid <= j < 16
 * (act: NF_SIGMOID, NF_TANH by libm, NF_RELU or NF_LINEAR): loops of 16 lanes
 * the compiler vectorises (nf_exp has no calls or branches). */
static void NF_FN(act)(int m, NF_T *Z, int ldz, const NF_T *b, int n_valid, int act)
{
    for (int i = 0; i < m; i++) {
        NF_T *z = Z + (ptrdiff_t)i * ldz;
        NF_T s[16];
        switch (act) {
        case NF_SIGMOID:
            for (int j = 0; j < 16; j++)
                s[j] = (NF_T)1 / ((NF_T)1 + NF_EXP(-(z[j] + b[j])));
            break;
        case NF_TANH:
            for (int j = 0; j < 16; j++) s[j] = NF_TANH_FN(z[j] + b[j]);
            break;
        case NF_RELU:
            for (int j = 0; j < 16; j++) s[j] = z[j] + b[j] > 0 ? z[j] + b[j] : (NF_T)0;
            break;
        default:
            for (int j = 0; j < 16; j++) s[j] = z[j] + b[j];
            break;
        }
        for (int j = 0; j < 16; j++) z[j] = j < n_valid ? s[j] : (NF_T)0;
    }
}

/* act'(z) through the activation a = act(z): sigmoid a(1 - a), tanh 1 - a^2,
 * ReLU 1 where a > 0 (else 0), linear 1. */
NF_INLINE NF_T NF_FN(act_prime)(int act, NF_T a)
{
    switch (act) {
    case NF_SIGMOID: return a * ((NF_T)1 - a);
    case NF_TANH: return (NF_T)1 - a * a;
    case NF_RELU: return a > 0 ? (NF_T)1 : (NF_T)0;
    default: return (NF_T)1;
    }
}

/* out[i][c] = (sum over blocks bl and lanes of W[bl][c][:] Dn[i][bl][:]) act'(a),
 * a = A[i][c], for c < rows; 0 for rows <= c < 16. Per (i, c): NV vector sums
 * over the blocks, added lane-wise, then halved across the lanes. */
static void NF_FN(bwd)(int m, int rows, int nb, const NF_T *W, ptrdiff_t bstride,
                       const NF_T *Dn, int ldn, const NF_T *A, int lda, NF_T *out, int ldo,
                       int act)
{
    for (int i = 0; i < m; i++) {
        const NF_T *dn = Dn + (ptrdiff_t)i * ldn;
        const NF_T *a = A + (ptrdiff_t)i * lda;
        NF_T *o = out + (ptrdiff_t)i * ldo;
        for (int c = 0; c < rows; c++) {
            NF_V s[NF_NV];
            NF_UNROLL
            for (int v = 0; v < NF_NV; v++) NF_VZERO(s[v]);
            for (int bl = 0; bl < nb; bl++) {
                const NF_T *w = W + bl * bstride + (ptrdiff_t)c * 16;
                NF_UNROLL
                for (int v = 0; v < NF_NV; v++) {
                    NF_V wv, dv;
                    NF_VLOAD(wv, w + v * NF_VL);
                    NF_VLOAD(dv, dn + bl * 16 + v * NF_VL);
                    NF_VFMAV(s[v], wv, dv);
                }
            }
            NF_UNROLL
            for (int v = 1; v < NF_NV; v++) NF_VADD(s[0], s[v]);
            NF_T lane[NF_VL];
            NF_VSTORE(lane, s[0]);
            for (int h = NF_VL / 2; h >= 1; h /= 2)
                for (int j = 0; j < h; j++) lane[j] = lane[j] + lane[j + h];
            o[c] = lane[0] * NF_FN(act_prime)(act, a[c]);
        }
        for (int c = rows; c < 16; c++) o[c] = 0;
    }
}

/* Layer 1's pre-activations of csr rows (rows[i], or first + i without rows)
 * through NB blocks: per nonzero input, a broadcast times NB weight rows, each
 * sum adding the row's nonzero inputs in ascending column order (as the dense
 * kernels add them: the zeros they add change no sum). */
NF_INLINE void NF_FN(csr_group)(const int NB, const nndl_csr *X, int64_t row, int n_in,
                                const NF_T *W, NF_T *out)
{
    NF_V acc[4][NF_NV];
    const ptrdiff_t bs = (ptrdiff_t)n_in * 16;
    NF_UNROLL
    for (int b = 0; b < NB; b++)
        NF_UNROLL
        for (int v = 0; v < NF_NV; v++) NF_VZERO(acc[b][v]);
    const float *vf = (const float *)X->val;
    const double *vd = (const double *)X->val;
    for (int64_t e = X->ptr[row]; e < X->ptr[row + 1]; e++) {
        const NF_T x = X->val_f32 ? (NF_T)vf[e] : (NF_T)vd[e];
        const NF_T *w = W + (ptrdiff_t)X->idx[e] * 16;
        NF_UNROLL
        for (int b = 0; b < NB; b++)
            NF_UNROLL
            for (int v = 0; v < NF_NV; v++) {
                NF_V wv;
                NF_VLOAD(wv, w + b * bs + v * NF_VL);
                NF_VFMA(acc[b][v], x, wv);
            }
    }
    NF_UNROLL
    for (int b = 0; b < NB; b++)
        NF_UNROLL
        for (int v = 0; v < NF_NV; v++)
            NF_VSTORE(out + b * 16 + v * NF_VL, acc[b][v]);
}

#define NF_CSR_CASE(n) \
    case n: NF_FN(csr_group)(n, X, row, n_in, wb, o); break;

static void NF_FN(csr_first)(int m, const nndl_csr *X, const int64_t *rows, int64_t first,
                             int n_in, int n_blocks, const NF_T *W, NF_T *out, int ldo)
{
    for (int i = 0; i < m; i++) {
        const int64_t row = rows ? rows[i] : first + i;
        for (int b = 0; b < n_blocks; b += NF_CSR_NB) {
            const NF_T *wb = W + (ptrdiff_t)b * n_in * 16;
            NF_T *o = out + (ptrdiff_t)i * ldo + b * 16;
            switch (n_blocks - b >= NF_CSR_NB ? NF_CSR_NB : n_blocks - b) {
            NF_CAT(NF_UPTO_, NF_CSR_NB)(NF_CSR_CASE)
            }
        }
    }
}
#undef NF_CSR_CASE

/* acc[idx[e]][0:16] += x_e D_i[0:16] over one row's nonzeros e0 .. e1-1 (values
 * float when f32, else double): the row's part of csr_upd's sums. */
NF_INLINE void NF_FN(csr_upd_row)(const int f32, const void *val, const int32_t *idx,
                                  int64_t e0, int64_t e1, const NF_V *dv, NF_T *acc)
{
    for (int64_t e = e0; e < e1; e++) {
        const NF_T x = f32 ? (NF_T)((const float *)val)[e] : (NF_T)((const double *)val)[e];
        NF_T *a = acc + (ptrdiff_t)idx[e] * 16;
        NF_UNROLL
        for (int v = 0; v < NF_NV; v++) {
            NF_V av;
            NF_VLOAD(av, a + v * NF_VL);
            NF_VFMA(av, x, dv[v]);
            NF_VSTORE(a + v * NF_VL, av);
        }
    }
}

/* upd (beta 1) of one block straight from csr rows rows[0..m): the K weight
 * rows cols[] where one of them is nonzero (their union) get
 * W[q] += alpha sum_i x_iq D[i][0:16]. Each sum is gathered in acc (n_in x 16
 * scratch) nonzero by nonzero, the examples in order: upd_group's sums less
 * their zero terms, so the same numbers without the work on zeros. */
static void NF_FN(csr_upd)(int m, const nndl_csr *X, const int64_t *rows, const NF_T *D,
                           int ldd, NF_T *W, const int32_t *cols, int K, NF_T alpha, NF_T *acc)
{
    const int64_t *ptr = X->ptr;
    const int32_t *idx = X->idx;
    const void *val = X->val;
    NF_V zero;
    NF_VZERO(zero);
    for (int u = 0; u < K; u++)
        NF_UNROLL
        for (int v = 0; v < NF_NV; v++) NF_VSTORE(acc + (ptrdiff_t)cols[u] * 16 + v * NF_VL, zero);
    for (int i = 0; i < m; i++) {
        NF_V dv[NF_NV];
        NF_UNROLL
        for (int v = 0; v < NF_NV; v++) NF_VLOAD(dv[v], D + (ptrdiff_t)i * ldd + v * NF_VL);
        const int64_t e0 = ptr[rows[i]], e1 = ptr[rows[i] + 1];
        if (X->val_f32)
            NF_FN(csr_upd_row)(1, val, idx, e0, e1, dv, acc);
        else
            NF_FN(csr_upd_row)(0, val, idx, e0, e1, dv, acc);
    }
    for (int u = 0; u < K; u++) {
        NF_T *w = W + (ptrdiff_t)cols[u] * 16;
        const NF_T *a = acc + (ptrdiff_t)cols[u] * 16;
        NF_UNROLL
        for (int v = 0; v < NF_NV; v++) {
            NF_V wv, av;
            NF_VLOAD(wv, w + v * NF_VL);
            NF_VLOAD(av, a + v * NF_VL);
            NF_VFMA(wv, alpha, av);
            NF_VSTORE(w + v * NF_VL, wv);
        }
    }
}

/* Whether this path's epoch takes the csr kernels (NF_CSR_STEP). */
enum { NF_FN(csr_step) = NF_CSR_STEP };

/* x[j] *= beta, j < n (loops the compiler vectorises) */
static void NF_FN(scale)(ptrdiff_t n, NF_T *x, NF_T beta)
{
    for (ptrdiff_t j = 0; j < n; j++) x[j] = beta * x[j];
}

#if NF_DOUBLE
/* dst[j] = src[j], float to double */
static void NF_FN(convert_f2d)(int n, const float *src, double *dst)
{
    for (int j = 0; j < n; j++) dst[j] = (double)src[j];
}
#endif

/* The template's parameters are used up. */
#undef NF_NV
#undef NF_VL
#undef NF_T
#undef NF_V
#undef NF_EXP
#undef NF_TANH_FN
#undef NF_FN
#undef NF_DOUBLE
#undef NF_SUF
#undef NF_FWD_E
#undef NF_UPD_R
#undef NF_CSR_NB
#undef NF_CSR_STEP
#undef NF_VBYTES
