/* The products of a conv net's dense layer whose inputs are mostly zeros, written
 * once (a template, like conv_direct.h; nf_simd.h for the vectors). After a ReLU
 * and dropout most inputs of a dense layer are exact zeros: in the book's dropout
 * net about 13% of the first 1000-unit layer's inputs are nonzero in training and
 * 8% of the second's. These kernels skip them, where a GEMM multiplies them all.
 * Each works on one block of the layer's input rows r0 <= k < r1 (the engine's
 * unit of work), m examples, n outputs, W (n_in, n) row-major:
 *
 *   sp_forward   C (m, n) = A[:, r0:r1] · W[r0:r1, :]
 *   sp_backward  D[i, k] = dz_i · W[k, :] where need[i, k] != 0, else 0, then
 *                W[k, :] = beta W[k, :] + alpha Σ_i A[i, k] dz_i
 *
 * Each element's sum runs over its nonzero terms in order (k, or i, ascending):
 * a GEMM's sum of the same terms, the zero products left out, rounded in the
 * order written here; the backward's dot products in vectors of partial sums,
 * added in a fixed order. The work of a block depends on its nonzeros only,
 * never on the threads.
 *
 * convnet.c includes it once per (instruction set, dtype), with NF_DOUBLE,
 * NF_SUF and NF_VBYTES as for conv_direct.h (which undefines them). ks and vs
 * are the caller's scratch: NF_SP_SCRATCH(m, r1 - r0) entries each.
 */
#ifndef NF_SP_SCRATCH
#define NF_SP_SCRATCH(m, kb) ((size_t)(2 * (m) > (kb) ? 2 * (m) : (kb)))
#endif
#include "nf_template.h"
#define NF_V NF_FN(spvec)
NF_VECTOR_TYPE(NF_V, NF_T, NF_VBYTES);

/* The nonzero entries of x[0], x[s], ... x[(cnt-1)s]: their positions first + p
 * into ks and values into vs; returns how many. Branch-free (the zeros fall at
 * random): every entry is written, then overwritten unless it was nonzero. */
NF_INLINE int NF_FN(sp_gather)(const NF_T *x, ptrdiff_t s, int cnt, int first, int *ks, NF_T *vs)
{
    int nz = 0;
    for (int p = 0; p < cnt; p++) {
        const NF_T v = x[p * s];
        ks[nz] = first + p;
        vs[nz] = v;
        nz += v != 0;
    }
    return nz;
}

/* out[j] = Σ_p vs[p] · rows[ks[p]·ld + j] for j < n (p in order): four vectors of
 * sums at a time, then one, then single values. With acc_beta set, out[j] =
 * beta out[j] + alpha · that sum instead. */
static void NF_FN(sp_combine)(int nz, const int *ks, const NF_T *vs, const NF_T *rows,
                              ptrdiff_t ld, int n, int acc_beta, NF_T alpha, NF_T beta,
                              NF_T *out)
{
    int j = 0;
    for (; j + 4 * NF_VL <= n; j += 4 * NF_VL) {
        NF_V acc[4];
        NF_UNROLL
        for (int v = 0; v < 4; v++) NF_VZERO(acc[v]);
        for (int p = 0; p < nz; p++) {
            const NF_T *r = rows + ks[p] * ld + j;
            NF_UNROLL
            for (int v = 0; v < 4; v++) {
                NF_V b;
                NF_VLOAD(b, r + v * NF_VL);
                NF_VFMA(acc[v], vs[p], b);
            }
        }
        NF_UNROLL
        for (int v = 0; v < 4; v++) {
            if (acc_beta) {
                NF_V o;
                NF_VLOAD(o, out + j + v * NF_VL);
                NF_VSCALE(o, beta);
                NF_VFMA(o, alpha, acc[v]);
                NF_VSTORE(out + j + v * NF_VL, o);
            } else {
                NF_VSTORE(out + j + v * NF_VL, acc[v]);
            }
        }
    }
    for (; j + NF_VL <= n; j += NF_VL) {
        NF_V acc;
        NF_VZERO(acc);
        for (int p = 0; p < nz; p++) {
            NF_V b;
            NF_VLOAD(b, rows + ks[p] * ld + j);
            NF_VFMA(acc, vs[p], b);
        }
        if (acc_beta) {
            NF_V o;
            NF_VLOAD(o, out + j);
            NF_VSCALE(o, beta);
            NF_VFMA(o, alpha, acc);
            NF_VSTORE(out + j, o);
        } else {
            NF_VSTORE(out + j, acc);
        }
    }
    for (; j < n; j++) {
        NF_T s = 0, o;
        for (int p = 0; p < nz; p++)
            s += vs[p] * rows[ks[p] * ld + j];
        if (acc_beta) {
            o = beta * out[j];
            o += alpha * s;
            out[j] = o;
        } else {
            out[j] = s;
        }
    }
}

/* C (m, n) = A[:, r0:r1] · W[r0:r1, :], A's rows lda apart: per example, its
 * nonzero inputs of the block, then their rows of W combined (each row of W
 * read whole and in order, so that it streams from L3). */
static void NF_FN(sp_forward)(int m, int lda, int r0, int r1, const NF_T *a, const NF_T *w,
                              int n, NF_T *c, int *ks, NF_T *vs)
{
    for (int i = 0; i < m; i++) {
        const int nz = NF_FN(sp_gather)(a + (size_t)i * lda + r0, 1, r1 - r0, r0, ks, vs);
        NF_FN(sp_combine)(nz, ks, vs, w, n, n, 0, 0, 0, c + (size_t)i * n);
    }
}

/* One row wk of W against N <= 4 examples es[e] (rows of dz (., n)): their dot
 * products dz_e · wk (old weights) into dots[e], and with fuse, in the same
 * sweep, wk = beta wk + alpha Σ_e vs[e] dz_e (the sum in list order, then
 * scaled: what sp_combine computes). A dot runs in two vectors of lanes over
 * chunks of 2·NF_VL values (one vector for a last chunk of NF_VL), the two
 * added, their lanes added in order, then the tail's products added one by
 * one. N and fuse are constants where it is inlined: the sums stay in
 * registers. */
NF_INLINE void NF_FN(sp_row)(const int N, const int fuse, const int *es, const NF_T *vs,
                             const NF_T *dz, int n, NF_T *wk, NF_T alpha, NF_T beta,
                             NF_T *dots)
{
    NF_V acc[4][2];
    NF_T tail[4] = {0, 0, 0, 0};
    const NF_T *z[4] = {dz, dz, dz, dz};
    int j = 0;
    NF_UNROLL
    for (int e = 0; e < N; e++) {
        z[e] = dz + (size_t)es[e] * n;
        NF_VZERO(acc[e][0]);
        NF_VZERO(acc[e][1]);
    }
    for (; j + 2 * NF_VL <= n; j += 2 * NF_VL) {
        NF_V w0, w1, u0, u1;
        NF_VLOAD(w0, wk + j);
        NF_VLOAD(w1, wk + j + NF_VL);
        NF_VZERO(u0);
        NF_VZERO(u1);
        NF_UNROLL
        for (int e = 0; e < N; e++) {
            NF_V a0, a1;
            NF_VLOAD(a0, z[e] + j);
            NF_VLOAD(a1, z[e] + j + NF_VL);
            NF_VFMAV(acc[e][0], a0, w0);
            NF_VFMAV(acc[e][1], a1, w1);
            if (fuse) {
                NF_VFMA(u0, vs[e], a0);
                NF_VFMA(u1, vs[e], a1);
            }
        }
        if (fuse) {
            NF_VSCALE(w0, beta);
            NF_VFMA(w0, alpha, u0);
            NF_VSCALE(w1, beta);
            NF_VFMA(w1, alpha, u1);
            NF_VSTORE(wk + j, w0);
            NF_VSTORE(wk + j + NF_VL, w1);
        }
    }
    if (j + NF_VL <= n) {
        NF_V w0, u0;
        NF_VLOAD(w0, wk + j);
        NF_VZERO(u0);
        NF_UNROLL
        for (int e = 0; e < N; e++) {
            NF_V a0;
            NF_VLOAD(a0, z[e] + j);
            NF_VFMAV(acc[e][0], a0, w0);
            if (fuse)
                NF_VFMA(u0, vs[e], a0);
        }
        if (fuse) {
            NF_VSCALE(w0, beta);
            NF_VFMA(w0, alpha, u0);
            NF_VSTORE(wk + j, w0);
        }
        j += NF_VL;
    }
    for (; j < n; j++) {
        const NF_T old = wk[j];
        NF_T u = 0;
        NF_UNROLL
        for (int e = 0; e < N; e++) {
            tail[e] += z[e][j] * old;
            if (fuse)
                u += vs[e] * z[e][j];
        }
        if (fuse) {
            NF_T o = beta * old;
            o += alpha * u;
            wk[j] = o;
        }
    }
    NF_UNROLL
    for (int e = 0; e < N; e++) {
        NF_T lanes[NF_VL], s = 0;
        NF_VADD(acc[e][0], acc[e][1]);
        NF_VSTORE(lanes, acc[e][0]);
        for (int l = 0; l < NF_VL; l++)
            s += lanes[l];
        dots[e] = s + tail[e];
    }
}

/* sp_row with N = cnt (1 to 4) a constant. */
NF_INLINE void NF_FN(sp_rows)(int cnt, const int fuse, const int *es, const NF_T *vs,
                              const NF_T *dz, int n, NF_T *wk, NF_T alpha, NF_T beta,
                              NF_T *dots)
{
    switch (cnt) {
    case 1: NF_FN(sp_row)(1, fuse, es, vs, dz, n, wk, alpha, beta, dots); break;
    case 2: NF_FN(sp_row)(2, fuse, es, vs, dz, n, wk, alpha, beta, dots); break;
    case 3: NF_FN(sp_row)(3, fuse, es, vs, dz, n, wk, alpha, beta, dots); break;
    default: NF_FN(sp_row)(4, fuse, es, vs, dz, n, wk, alpha, beta, dots); break;
    }
}

/* The backward of a block of rows r0 <= k < r1, row by row of W (each row read
 * from L3 once, and all its work done while it is in L1):
 *   D[i, k] = dz_i · W[k, :] (old weights) where need[i·lda + k] != 0 (every
 *             example when need is NULL), else 0; nothing when D is NULL;
 *   W[k, :] = beta W[k, :] + alpha Σ_i A[i, k] dz_i over the i with A[i, k] != 0
 *             in order (a row with none is only scaled: left alone when beta
 *             is 1, as a GEMM leaves it).
 * A and D have rows lda apart, dz is (m, n). When need is A (after a ReLU) the
 * dots' examples are the update's, and up to four of them share one sweep over
 * the row. ks, vs: at least 2m entries. */
static void NF_FN(sp_backward)(int m, int lda, int r0, int r1, const NF_T *a, const NF_T *need,
                               const NF_T *dz, NF_T *w, int n, NF_T *d, NF_T alpha, NF_T beta,
                               int *ks, NF_T *vs)
{
    int *kd = ks + m;
    NF_T dots[4];
    for (int k = r0; k < r1; k++) {
        NF_T *wk = w + (size_t)k * n;
        const int nu = NF_FN(sp_gather)(a + k, lda, m, 0, ks, vs);
        const int *ed = ks;
        int nd = 0;
        if (d) {
            for (int i = 0; i < m; i++)
                d[(size_t)i * lda + k] = 0;
            if (need == a) {
                nd = nu;
            } else if (need) {
                nd = NF_FN(sp_gather)(need + k, lda, m, 0, kd, vs + m);
                ed = kd;
            } else {
                for (int i = 0; i < m; i++)
                    kd[i] = i;
                nd = m;
                ed = kd;
            }
        }
        if (ed == ks && nd >= 1 && nd <= 4) {   /* the dots and the update in one sweep */
            NF_FN(sp_rows)(nd, 1, ks, vs, dz, n, wk, alpha, beta, dots);
            for (int e = 0; e < nd; e++)
                d[(size_t)ks[e] * lda + k] = dots[e];
            continue;
        }
        for (int p = 0; p < nd; p += 4) {
            const int cnt = nd - p < 4 ? nd - p : 4;
            NF_FN(sp_rows)(cnt, 0, ed + p, vs, dz, n, wk, alpha, beta, dots);
            for (int e = 0; e < cnt; e++)
                d[(size_t)ed[p + e] * lda + k] = dots[e];
        }
        if (nu > 0)
            NF_FN(sp_combine)(nu, ks, vs, dz, n, n, 1, alpha, beta, wk);
        else if (beta != 1)
            for (int j = 0; j < n; j++)
                wk[j] *= beta;
    }
}
#undef NF_V
#undef NF_VL
#undef NF_FN
#undef NF_T
