/* GEMM for small operands, written once (a template, like dense_kernels.h;
 * nf_simd.h for the vectors): the products of the dense layers of a conv net
 * with a mini-batch of m examples, where one dimension is m (10 in the book)
 *   forward   C (m, n_out) = A (m, kb) · B (kb, n_out)
 *   backward  C (m, kb) = A (m, n_out) · B (kb, n_out)^T
 *   update    C (kb, n_out) = beta C + alpha A (m, kb)^T · B (m, n_out)
 * (kb a block of the layer's input rows). General BLAS kernels pack both
 * operands into panels before they multiply, which costs more than the
 * product at these sizes; these kernels read the operands where they lie,
 * except for the backward's A (m x n_out values, transposed into a small
 * buffer).
 *
 * convnet.c includes it once per (instruction set, dtype), with
 *   NF_DOUBLE   1 for double, 0 for float
 *   NF_SUF      this copy's suffix (f_avx2, d_generic...): NF_FN(x) is x_<NF_SUF>
 *   NF_VBYTES   the path's vector width in bytes (64, 32 or 16)
 *   NF_SG_MR    rows per tile (<= 12)
 *   NF_SG_NV    vectors per tile row (<= 4)
 * chosen so that a tile's sums and operands fit the path's vector registers.
 *
 * Every product is a row-major C (M, N) = alpha op(A) op(B) + beta C, computed
 * as tiles of up to MR rows by NV vectors of columns: per term p of the sum,
 * the tile's NV vectors of the "vector side" (rows of B, or the buffer) and a
 * broadcast of each of its MR values of the "scalar side" feed MR * NV
 * independent chains of multiply-adds. Each element's sum runs over p in
 * order, one product at a time, then is scaled by alpha and added to
 * beta C (C is not read when beta is 0: BLAS's rule, C may hold anything).
 */
#include "nf_template.h"
#define NF_V NF_FN(sgvec)
NF_VECTOR_TYPE(NF_V, NF_T, NF_VBYTES);

/* Values of the transposition buffers of the backward (and of B where it has
 * fewer columns than a vector): terms are taken in chunks that fit. */
#ifndef NF_SG_BUF
#define NF_SG_BUF 4096
#endif

/* c[l*csc] = t[l] + beta c[l*csc] for lo <= l < hi (c not read when beta is 0);
 * a call of its own, not a loop the compiler copies into every tile. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static void NF_FN(sg_put)(const NF_T *t, int lo, int hi, NF_T beta, NF_T *c, ptrdiff_t csc)
{
    if (beta != 0)
        for (int l = lo; l < hi; l++)
            c[l * csc] = t[l] + beta * c[l * csc];
    else
        for (int l = lo; l < hi; l++)
            c[l * csc] = t[l];
}

/* One tile: rows r < R of the scalar side, A(r, p) = a[r*sai + p*sap], and NV
 * vectors of the vector side, vector v of term p at b + p*ldb + boff[v]. Lanes
 * lo[v] <= l < hi[v] of vector v are column boff[v] + l of C, element (r, col)
 * at c[r*csr + col*csc]; the other lanes are not stored. WHOLE: every vector
 * is stored whole (lo 0, hi NF_VL, csc 1). */
NF_INLINE void NF_FN(sg_tile)(const int R, const int NV, const int WHOLE, int K, const NF_T *a,
                              ptrdiff_t sai, ptrdiff_t sap, const NF_T *b, ptrdiff_t ldb,
                              const int *boff, const int *lo, const int *hi, NF_T alpha,
                              NF_T beta, NF_T *c, ptrdiff_t csr, ptrdiff_t csc)
{
    NF_V acc[12][4];
    NF_UNROLL
    for (int r = 0; r < R; r++)
        NF_UNROLL
        for (int v = 0; v < NV; v++) NF_VZERO(acc[r][v]);
    for (int p = 0; p < K; p++) {
        const NF_T *bp = b + (ptrdiff_t)p * ldb;
        const NF_T *ap = a + (ptrdiff_t)p * sap;
        NF_V bv[4];
        NF_UNROLL
        for (int v = 0; v < NV; v++) NF_VLOAD(bv[v], bp + boff[v]);
        NF_UNROLL
        for (int r = 0; r < R; r++) {
            const NF_T s = ap[(ptrdiff_t)r * sai];
            NF_UNROLL
            for (int v = 0; v < NV; v++) NF_VFMA(acc[r][v], s, bv[v]);
        }
    }
    if (WHOLE) {
        NF_UNROLL
        for (int r = 0; r < R; r++)
            NF_UNROLL
            for (int v = 0; v < NV; v++) {
                NF_T *cr = c + (ptrdiff_t)r * csr + boff[v];
                NF_VSCALE(acc[r][v], alpha);
                if (beta != 0) {
                    NF_V cv;
                    NF_VLOAD(cv, cr);
                    NF_VFMA(acc[r][v], beta, cv);
                }
                NF_VSTORE(cr, acc[r][v]);
            }
        return;
    }
    NF_UNROLL
    for (int r = 0; r < R; r++)
        NF_UNROLL
        for (int v = 0; v < NV; v++) {
            NF_T t[NF_VL];
            NF_VSCALE(acc[r][v], alpha);
            NF_VSTORE(t, acc[r][v]);
            NF_FN(sg_put)(t, lo[v], hi[v], beta, c + (ptrdiff_t)r * csr + (ptrdiff_t)boff[v] * csc,
                          csc);
        }
}

#define NF_SG_NV_CASE(nv) \
    case nv: NF_FN(sg_tile)(R, nv, 0, K, a, sai, sap, b, ldb, boff, lo, hi, alpha, beta, c, \
                            csr, csc); break;

/* A strip of R rows (a constant) across all N columns: blocks of NF_SG_NV
 * whole vectors, then the rest (vectors cut at N, or moved back to end at
 * NB; columns of C not along its rows) in tiles of up to NF_SG_NV vectors. */
NF_INLINE void NF_FN(sg_strip)(const int R, int N, int NB, int K, const NF_T *a, ptrdiff_t sai,
                               ptrdiff_t sap, const NF_T *b, ptrdiff_t ldb, NF_T alpha,
                               NF_T beta, NF_T *c, ptrdiff_t csr, ptrdiff_t csc)
{
    int col = 0;
    int boff[4], lo[4], hi[4];
    if (csc == 1) {
        const int end = N < NB ? N : NB;
        for (; col + NF_SG_NV * NF_VL <= end; col += NF_SG_NV * NF_VL) {
            NF_UNROLL
            for (int v = 0; v < NF_SG_NV; v++)
                boff[v] = col + v * NF_VL;
            NF_FN(sg_tile)(R, NF_SG_NV, 1, K, a, sai, sap, b, ldb, boff, lo, hi, alpha, beta, c,
                           csr, 1);
        }
    }
    while (col < N) {
        const int left = (N - col + NF_VL - 1) / NF_VL;
        const int nv = left < NF_SG_NV ? left : NF_SG_NV;
        for (int v = 0; v < nv; v++) {
            const int cv = col + v * NF_VL;
            boff[v] = cv < NB - NF_VL ? cv : NB - NF_VL;
            lo[v] = cv - boff[v];
            hi[v] = N - boff[v] < NF_VL ? N - boff[v] : NF_VL;
        }
        switch (nv) {
        NF_CAT(NF_UPTO_, NF_SG_NV)(NF_SG_NV_CASE)
        }
        col += nv * NF_VL;
    }
}
#undef NF_SG_NV_CASE

#define NF_SG_R_CASE(r) \
    case r: NF_FN(sg_strip)(r, N, NB, K, a + (ptrdiff_t)r0 * sai, sai, sap, b, ldb, alpha, beta, \
                            c + (ptrdiff_t)r0 * csr, csr, csc); break;

/* C(r, col) = alpha Σ_p A(r, p) Bv(p, col) + beta C(r, col) for r < M, col < N:
 * A(r, p) = a[r*sai + p*sap], Bv(p, col) = b[p*ldb + col] for col < NB, where
 * NF_VL <= NB and N <= NB; C(r, col) at c[r*csr + col*csc]. A vector that
 * would reach past NB is moved back to end there (its first lanes, columns of
 * the vector before, are not stored twice). Rows go in strips of about equal
 * size, at most NF_SG_MR. */
static void NF_FN(sg_panel)(int M, int N, int NB, int K, const NF_T *a, ptrdiff_t sai,
                            ptrdiff_t sap, const NF_T *b, ptrdiff_t ldb, NF_T alpha, NF_T beta,
                            NF_T *c, ptrdiff_t csr, ptrdiff_t csc)
{
    const int n_tiles = (M + NF_SG_MR - 1) / NF_SG_MR;
    for (int t = 0; t < n_tiles; t++) {
        const int r0 = (int)((int64_t)t * M / n_tiles);
        const int r1 = (int)((int64_t)(t + 1) * M / n_tiles);
        switch (r1 - r0) {
        NF_CAT(NF_UPTO_, NF_SG_MR)(NF_SG_R_CASE)
        }
    }
}
#undef NF_SG_R_CASE

/* Row-major C (m, n) = alpha op(A) op(B) + beta C, the arguments of
 * nndl_fast._blas.gemm_rowmajor. Returns 0 (and computes nothing) for the
 * shapes it does not take: both operands transposed, or A·B^T with m > 256. */
static int NF_FN(small_gemm)(int ta, int tb, int m, int n, int k, NF_T alpha, const NF_T *a,
                             int lda, const NF_T *b, int ldb, NF_T beta, NF_T *c, int ldc)
{
    NF_T buf[NF_SG_BUF];
    if (ta && tb)
        return 0;
    if (tb && (m + NF_VL - 1) / NF_VL * NF_VL > NF_SG_BUF)
        return 0;
    if (m <= 0 || n <= 0)
        return 1;
    if (!tb) {
        /* rows of C along rows of A (A^T: its columns), vectors along rows of B */
        const ptrdiff_t sai = ta ? 1 : lda, sap = ta ? lda : 1;
        if (n >= NF_VL) {
            NF_FN(sg_panel)(m, n, n, k, a, sai, sap, b, ldb, alpha, beta, c, ldc, 1);
            return 1;
        }
        /* fewer columns than a vector: B's rows, padded with zeros, in buf */
        const int kc = NF_SG_BUF / NF_VL;
        int k0 = 0;
        do {
            const int kn = k - k0 < kc ? k - k0 : kc;
            for (int p = 0; p < kn; p++)
                for (int j = 0; j < NF_VL; j++)
                    buf[p * NF_VL + j] = j < n ? b[(ptrdiff_t)(k0 + p) * ldb + j] : (NF_T)0;
            NF_FN(sg_panel)(m, n, NF_VL, kn, a + (ptrdiff_t)k0 * sap, sai, sap, buf, NF_VL,
                            alpha, k0 > 0 ? (NF_T)1 : beta, c, ldc, 1);
            k0 += kn;
        } while (k0 < k);
        return 1;
    }
    /* A·B^T as its transpose C^T (n, m) = B · A^T: rows of B on the scalar side,
     * vectors along A^T's rows, which buf holds (m values and zeros to a whole
     * number of vectors a term), C written transposed. */
    const int mp = (m + NF_VL - 1) / NF_VL * NF_VL;
    const int kc = NF_SG_BUF / mp;
    int k0 = 0;
    do {
        const int kn = k - k0 < kc ? k - k0 : kc;
        for (int p = 0; p < kn; p++) {
            for (int i = 0; i < m; i++)
                buf[p * mp + i] = a[(ptrdiff_t)i * lda + k0 + p];
            for (int i = m; i < mp; i++)
                buf[p * mp + i] = 0;
        }
        NF_FN(sg_panel)(n, m, mp, kn, b + k0, ldb, 1, buf, mp, alpha,
                        k0 > 0 ? (NF_T)1 : beta, c, 1, ldc);
        k0 += kn;
    } while (k0 < k);
    return 1;
}

#undef NF_T
#undef NF_FN
#undef NF_VL
#undef NF_V
#undef NF_DOUBLE
#undef NF_SUF
#undef NF_VBYTES
#undef NF_SG_MR
#undef NF_SG_NV
