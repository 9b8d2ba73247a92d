/* The conv kernels that gain from the path's vectors, written once (a template,
 * like dense_kernels.h; nf_simd.h for the vectors): activation and dropout rows,
 * max-pooling and its gradient, and for float32 the direct convolution of
 * one-channel images (the first conv layer on MNIST) without im2col.
 * convnet.c includes it once per (instruction set, dtype), with
 *   NF_DOUBLE    1 for double, 0 for float
 *   NF_SUF       this copy's suffix (f_avx512, d_generic...): NF_FN(x) is x_<NF_SUF>
 *   NF_VBYTES    the path's vector width in bytes (64, 32 or 16)
 *   NF_DFWD_F, NF_DFWD_NP   filters and vectors of positions per sweep of the
 *                direct forward (NF_DFWD_NP * lanes must divide 32)
 *   NF_DGW_F, NF_DGW_T      filters and taps per sweep of the filter gradient
 * chosen so that a sweep's sums and operands fit the path's vector registers.
 *
 * "Wide" layout of the direct kernels: output (y, x) of a filter sits at
 * p = y*w + x, with the image's own row length w (> wc), so that the inputs
 * under tap (u, v) of consecutive positions are consecutive pixels
 * xp[p + u*w + v]. The columns wc <= x < w of every row and the positions
 * hc*w <= p < pw_pad (pw_pad: hc*w rounded up to 32) are computed from
 * whatever pixels lie there and never used: pooling reads x < wc only, and the
 * gradient dz is zero there. xp is the image followed by zeros,
 * nf_direct_xp_len(...) values, so that every load stays inside it.
 *
 * Tap (u, v) multiplies filter weight k = (kh-1-u)*kw + (kw-1-v) (the flipped
 * kernel of Theano's conv2d, as in conv_kernels.h's im2col). The sums run in a
 * fixed order on every path: forward, the taps in (u, v) order; gradient, the
 * positions in the vector's lanes, then the lanes added by halves (the order
 * of _mm512_reduce_add_ps). Paths differ only in the lanes per vector and in
 * whether a multiply and an add are fused (FMA).
 */
#ifndef NF_CONV_DIRECT_SHAPES
#define NF_CONV_DIRECT_SHAPES
static inline int nf_direct_pw_pad(int hc, int w) { return (hc * w + 31) / 32 * 32; }

static inline size_t nf_direct_xp_len(int hc, int w, int kh, int kw)
{
    return (size_t)nf_direct_pw_pad(hc, w) + (size_t)(kh - 1) * w + (size_t)kw + 32;
}

/* Largest kernel (kh*kw) the gradient's tap tables take. */
#define NF_DIRECT_MAX_TAPS 1024

/* Pooling in 2x2 windows of wide rows up to 32 wide, and im2col_rows and col2im
 * of rows up to 16 wide: on the AVX-512 path, by intrinsics (masked loads and
 * stores, lane permutes), with the same results as the portable loops, which
 * spent more on their bounds and tails than on the work. */
#define NF_DIRECT_POOL2(ly) ((ly)->ph == 2 && (ly)->pw == 2 && (ly)->w_in <= 32)
#define NF_DIRECT_NARROW(ly) ((ly)->w_in <= 16)
#if NF_MULTI_PATH
#include <immintrin.h>
#define NF_AVX512 __attribute__((target("avx512f")))

/* The lanes of a 16-float vector that start at column `from` and lie below n. */
static inline __mmask16 nf_lanes_below(int n, int from)
{
    const int k = n - from;
    return (__mmask16)(k >= 16 ? 0xFFFF : k <= 0 ? 0 : (1u << k) - 1);
}

/* 2x2 max-pooling of nf maps in wide layout (rows w <= 32 apart, maps pw_pad
 * apart): pooled (nf, ho, wo), wo <= 16. Same result as conv_kernels.h's
 * pool_max: the larger of each pair (the second on a tie, where both are equal). */
static NF_AVX512 void nf_direct_pool2(const float *z, float *pooled, int nf, int ho, int wo,
                                      int w, int pw_pad)
{
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16,
                                          14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __mmask16 lo = nf_lanes_below(w, 0), hi = nf_lanes_below(w, 16);
    const __mmask16 out = nf_lanes_below(wo, 0);
    for (int f = 0; f < nf; f++)
        for (int oy = 0; oy < ho; oy++) {
            const float *r0 = z + (size_t)f * pw_pad + (size_t)(2 * oy) * w, *r1 = r0 + w;
            const __m512 a = _mm512_max_ps(_mm512_maskz_loadu_ps(lo, r1),
                                           _mm512_maskz_loadu_ps(lo, r0));
            const __m512 b = _mm512_max_ps(_mm512_maskz_loadu_ps(hi, r1 + 16),
                                           _mm512_maskz_loadu_ps(hi, r0 + 16));
            const __m512 m = _mm512_max_ps(_mm512_permutex2var_ps(a, odd, b),
                                           _mm512_permutex2var_ps(a, even, b));
            _mm512_mask_storeu_ps(pooled + ((size_t)f * ho + oy) * wo, out, m);
        }
}

/* The gradient of nf_direct_pool2 into dz (nf maps, pw_pad apart, plus 32
 * values of slack): every input equal to its window's max gets the window's
 * gradient g (Theano's rule, as pool_max_grad), every other position of the
 * map zero. Rows are stored whole, 32 values from their start: the part past
 * a row's end is overwritten by the next row, map or the zeros of the tail.
 * (Unmasked stores to a buffer of its own: masked stores into z, right
 * before the masked loads of the next row, made every load wait.) */
static NF_AVX512 void nf_direct_pool2_grad(const float *z, const float *pooled, const float *g,
                                           float *dz, int nf, int ho, int wo, int w, int pw_pad)
{
    const __m512i half = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    const __m512i half2 = _mm512_add_epi32(half, _mm512_set1_epi32(8));
    const int used = 2 * wo;   /* columns inside windows */
    const __mmask16 lo = nf_lanes_below(w, 0), hi = nf_lanes_below(w, 16);
    const __mmask16 ulo = nf_lanes_below(used, 0), uhi = nf_lanes_below(used, 16);
    const __mmask16 in = nf_lanes_below(wo, 0);
    for (int f = 0; f < nf; f++) {
        const float *zf = z + (size_t)f * pw_pad;
        float *df = dz + (size_t)f * pw_pad;
        for (int oy = 0; oy < ho; oy++) {
            const __m512 p = _mm512_maskz_loadu_ps(in, pooled + ((size_t)f * ho + oy) * wo);
            const __m512 gv = _mm512_maskz_loadu_ps(in, g + ((size_t)f * ho + oy) * wo);
            const __m512 pa = _mm512_permutexvar_ps(half, p), pb = _mm512_permutexvar_ps(half2, p);
            const __m512 ga = _mm512_permutexvar_ps(half, gv), gb = _mm512_permutexvar_ps(half2, gv);
            for (int dy = 0; dy < 2; dy++) {
                const size_t r = (size_t)(2 * oy + dy) * w;
                const __mmask16 ka = _mm512_mask_cmp_ps_mask(ulo, _mm512_maskz_loadu_ps(lo, zf + r),
                                                             pa, _CMP_EQ_OQ);
                const __mmask16 kb = _mm512_mask_cmp_ps_mask(uhi, _mm512_maskz_loadu_ps(hi, zf + r + 16),
                                                             pb, _CMP_EQ_OQ);
                _mm512_storeu_ps(df + r, _mm512_maskz_mov_ps(ka, ga));
                _mm512_storeu_ps(df + r + 16, _mm512_maskz_mov_ps(kb, gb));
            }
        }
        memset(df + (size_t)2 * ho * w, 0, (size_t)(pw_pad - 2 * ho * w) * sizeof(float));
    }
}

/* im2col_rows and col2im of conv_kernels.h for input rows of w <= 16 (the
 * later conv layers of MNIST nets: 12 wide for the book's second): one masked
 * load and store a row, where the portable loops spent more on their bounds
 * and tails than on the copy. The same values, added in the same order. */

static NF_AVX512 void nf_direct_im2col_rows(const float *in, float *col, int c_in, int h,
                                            int w, int kh, int kw, int y0, int y1)
{
    const int hc = h - kh + 1, wc = w - kw + 1, P = hc * wc;
    const __mmask16 k = nf_lanes_below(wc, 0);
    for (int c = 0; c < c_in; c++)
        for (int u = 0; u < kh; u++)
            for (int v = 0; v < kw; v++) {
                float *dst = col + (size_t)(c * kh * kw + (kh - 1 - u) * kw + (kw - 1 - v)) * P;
                const float *src = in + (size_t)c * h * w + (size_t)u * w + v;
                for (int y = y0; y < y1; y++)
                    _mm512_mask_storeu_ps(dst + (size_t)y * wc, k,
                                          _mm512_maskz_loadu_ps(k, src + (size_t)y * w));
            }
}

/* dx rows r of CB channels c0.. at once (independent sums: one alone would
 * wait on each add), each sum held in a register: adding into dx tap by tap,
 * the loads of each tap waited for the overlapping stores of the one before. */
static inline __attribute__((always_inline, target("avx512f")))
void nf_direct_col2im_rows(const int CB, const float *dcol, float *dx, int c0, int h, int w,
                           int kh, int kw, int r)
{
    const int hc = h - kh + 1, wc = w - kw + 1, P = hc * wc, K1 = kh * kw;
    __m512 acc[4];
    for (int j = 0; j < CB; j++)
        acc[j] = _mm512_setzero_ps();
    for (int u = 0; u < kh; u++) {
        const int y = r - u;
        if (y < 0 || y >= hc)
            continue;
        for (int v = 0; v < kw; v++) {   /* dcol's row y, shifted right by v */
            const float *src = dcol + ((size_t)c0 * K1 + (kh - 1 - u) * kw + (kw - 1 - v)) * P
                               + (size_t)y * wc - v;
            const __mmask16 k = (__mmask16)(nf_lanes_below(wc, 0) << v);
            for (int j = 0; j < CB; j++)
                acc[j] = _mm512_add_ps(acc[j], _mm512_maskz_loadu_ps(k, src + (size_t)j * K1 * P));
        }
    }
    for (int j = 0; j < CB; j++)
        _mm512_mask_storeu_ps(dx + ((size_t)(c0 + j) * h + r) * w, nf_lanes_below(w, 0), acc[j]);
}

static NF_AVX512 void nf_direct_col2im(const float *dcol, float *dx, int c_in, int h, int w,
                                       int kh, int kw)
{
    int c = 0;
    for (; c + 4 <= c_in; c += 4)
        for (int r = 0; r < h; r++)
            nf_direct_col2im_rows(4, dcol, dx, c, h, w, kh, kw, r);
    for (; c < c_in; c++)
        for (int r = 0; r < h; r++)
            nf_direct_col2im_rows(1, dcol, dx, c, h, w, kh, kw, r);
}
#endif
#endif

#include "nf_template.h"
#if NF_DOUBLE
#define NF_TANH_FN tanh
#define NF_VEXP exp
#else
#define NF_TANH_FN tanhf
#define NF_VEXP nf_exp_cephes_f   /* branch-free: the sigmoid loop vectorises */
#endif

/* out[j] = act(in[j] + bias) for n values. */
static void NF_FN(act_rows)(int act, const NF_T *in, NF_T bias, NF_T *out, int n)
{
    switch (act) {
    case NF_SIGMOID:
#pragma omp simd
        for (int j = 0; j < n; j++)
            out[j] = (NF_T)1 / ((NF_T)1 + NF_VEXP(-(in[j] + bias)));
        break;
    case NF_TANH:
        for (int j = 0; j < n; j++)
            out[j] = NF_TANH_FN(in[j] + bias);
        break;
    case NF_RELU:
        for (int j = 0; j < n; j++) {
            const NF_T z = in[j] + bias;
            out[j] = z > 0 ? z : (NF_T)0;
        }
        break;
    default:
        for (int j = 0; j < n; j++)
            out[j] = in[j] + bias;
    }
}

/* The keep-mask of columns r0..r1 of the m rows of layer `layer`'s inputs at
 * `step` (see reference.network3.dropout_mask): mask[e] = 1 keeps, 0 drops; the
 * inputs times the mask into xd when xd is not NULL. Element e is kept when
 * (h >> 11) * 2^-53 < 1 - p for its hash h, that is when the integer h >> 11 is
 * below ceil((1 - p) * 2^53) (exact: both sides scale by a power of two), a
 * test the compiler vectorises. */
static void NF_FN(dropout_rows)(uint64_t seed, int layer, int64_t step, double p, int m,
                                int n_in, int r0, int r1, const NF_T *in, NF_T *mask, NF_T *xd)
{
    const uint64_t base = nf_mix(nf_mix(seed + (uint64_t)layer) ^ (uint64_t)step);
    const uint64_t below = (uint64_t)ceil((1.0 - p) * 9007199254740992.0);
    for (int i = 0; i < m; i++) {
        const size_t e0 = (size_t)i * n_in;
        NF_T *mk = mask + e0;
        for (int j = r0; j < r1; j++)
            mk[j] = (nf_mix(base ^ (uint64_t)(e0 + j)) >> 11) < below ? (NF_T)1 : (NF_T)0;
        if (xd)
            for (int j = r0; j < r1; j++)
                xd[e0 + j] = in[e0 + j] * mk[j];
    }
}

/* pooled (n, ho, wo) = max over ph x pw windows of z (n, hc, wc), border ignored;
 * pooled rows oy0 <= oy < oy1 only. Rows of z are ldr apart and maps ldf apart
 * (wc and hc*wc, or the wide layout's w and pw_pad). */
static void NF_FN(pool_max)(const NF_T *z, NF_T *pooled, int n, int hc, int wc, int ph, int pw,
                            int oy0, int oy1, int ldr, size_t ldf)
{
    const int ho = hc / ph, wo = wc / pw;
    for (int f = 0; f < n; f++) {
        for (int oy = oy0; oy < oy1; oy++) {
            const NF_T *row = z + (size_t)f * ldf + (size_t)oy * ph * ldr;
            NF_T *pr = pooled + ((size_t)f * ho + oy) * wo;
            if (ph == 2 && pw == 2) {
                const NF_T *r2 = row + ldr;
                for (int ox = 0; ox < wo; ox++) {
                    NF_T m0 = row[2 * ox] > row[2 * ox + 1] ? row[2 * ox] : row[2 * ox + 1];
                    NF_T m1 = r2[2 * ox] > r2[2 * ox + 1] ? r2[2 * ox] : r2[2 * ox + 1];
                    pr[ox] = m1 > m0 ? m1 : m0;
                }
                continue;
            }
            for (int ox = 0; ox < wo; ox++)
                pr[ox] = row[(size_t)ox * pw];
            for (int dy = 0; dy < ph; dy++) {
                const NF_T *r = row + (size_t)dy * ldr;
                for (int dx = 0; dx < pw; dx++)
                    for (int ox = 0; ox < wo; ox++) {
                        const NF_T v = r[(size_t)ox * pw + dx];
                        pr[ox] = v > pr[ox] ? v : pr[ox];
                    }
            }
        }
    }
}

/* dz (n, hc, wc) from d pooled: every input equal to its window's max receives
 * the window's gradient (Theano's rule); the ignored border gets zero. dz may be z.
 * Only the rows of pooled rows oy0 <= oy < oy1, and the border rows when oy1 == ho.
 * Rows ldr apart (zero from wo*pw to ldr), maps ldf apart (zero from hc*ldr to
 * ldf when oy1 == ho), as in pool_max. */
static void NF_FN(pool_max_grad)(const NF_T *z, const NF_T *pooled, const NF_T *dpooled,
                                 NF_T *dz, int n, int hc, int wc, int ph, int pw, int oy0,
                                 int oy1, int ldr, size_t ldf)
{
    const int ho = hc / ph, wo = wc / pw;
    for (int f = 0; f < n; f++) {
        for (int oy = oy0; oy < oy1; oy++) {
            const NF_T *pr = pooled + ((size_t)f * ho + oy) * wo;
            const NF_T *gr = dpooled + ((size_t)f * ho + oy) * wo;
            for (int dy = 0; dy < ph; dy++) {
                const size_t r = (size_t)f * ldf + ((size_t)oy * ph + dy) * ldr;
                const NF_T *zr = z + r;
                NF_T *dr = dz + r;
                if (pw == 2) {
                    /* unconditional loads, so that the selects vectorise */
                    for (int ox = 0; ox < wo; ox++) {
                        const NF_T p = pr[ox], gv = gr[ox];
                        const NF_T z0 = zr[2 * ox], z1 = zr[2 * ox + 1];
                        dr[2 * ox] = z0 == p ? gv : (NF_T)0;
                        dr[2 * ox + 1] = z1 == p ? gv : (NF_T)0;
                    }
                } else {
                    for (int ox = 0; ox < wo; ox++)
                        for (int dx = 0; dx < pw; dx++) {
                            const size_t i = (size_t)ox * pw + dx;
                            dr[i] = zr[i] == pr[ox] ? gr[ox] : (NF_T)0;
                        }
                }
                for (int x = wo * pw; x < ldr; x++)
                    dr[x] = 0;
            }
        }
        if (oy1 == ho)
            memset(dz + (size_t)f * ldf + (size_t)ho * ph * ldr, 0,
                   (ldf - (size_t)ho * ph * ldr) * sizeof(NF_T));
    }
}

#if !NF_DOUBLE
#define NF_V NF_FN(vec)
NF_VECTOR_TYPE(NF_V, float, NF_VBYTES);

/* z[fb][p ..] for FB filters, NF_DFWD_NP vectors of positions per step. */
NF_INLINE void NF_FN(direct_fwd_block)(const int FB, const float *xp, int w, int kh, int kw,
                                       const float *wf, int K, float *z, int pw_pad)
{
    for (int p = 0; p < pw_pad; p += NF_DFWD_NP * NF_VL) {
        NF_V acc[NF_DFWD_F][NF_DFWD_NP];
        NF_UNROLL
        for (int fb = 0; fb < FB; fb++)
            NF_UNROLL
            for (int j = 0; j < NF_DFWD_NP; j++) NF_VZERO(acc[fb][j]);
        for (int u = 0; u < kh; u++)
            for (int v = 0; v < kw; v++) {
                const float *src = xp + p + u * w + v;
                const int k = (kh - 1 - u) * kw + (kw - 1 - v);
                NF_V x[NF_DFWD_NP];
                NF_UNROLL
                for (int j = 0; j < NF_DFWD_NP; j++) NF_VLOAD(x[j], src + j * NF_VL);
                NF_UNROLL
                for (int fb = 0; fb < FB; fb++) {
                    const float wv = wf[(size_t)fb * K + k];
                    NF_UNROLL
                    for (int j = 0; j < NF_DFWD_NP; j++) NF_VFMA(acc[fb][j], wv, x[j]);
                }
            }
        NF_UNROLL
        for (int fb = 0; fb < FB; fb++)
            NF_UNROLL
            for (int j = 0; j < NF_DFWD_NP; j++)
                NF_VSTORE(z + (size_t)fb * pw_pad + p + j * NF_VL, acc[fb][j]);
    }
}

/* z (nf, pw_pad) = the nf filters wf (nf, kh*kw) over the image xp. */
static void NF_FN(direct_fwd)(const float *xp, int w, int kh, int kw, const float *wf, int nf,
                              float *z, int pw_pad)
{
    const int K = kh * kw;
    int f = 0;
    for (; f + NF_DFWD_F <= nf; f += NF_DFWD_F)
        NF_FN(direct_fwd_block)(NF_DFWD_F, xp, w, kh, kw, wf + (size_t)f * K, K,
                                z + (size_t)f * pw_pad, pw_pad);
    for (; f < nf; f++)
        NF_FN(direct_fwd_block)(1, xp, w, kh, kw, wf + (size_t)f * K, K,
                                z + (size_t)f * pw_pad, pw_pad);
}

/* The sum of a's lanes, by halves (the order of _mm512_reduce_add_ps). */
NF_INLINE float NF_FN(hsum)(NF_V a)
{
    float lane[NF_VL];
    for (int j = 0; j < NF_VL; j++)
#if NF_VECTOR_EXT
        lane[j] = a[j];
#else
        lane[j] = a.x[j];
#endif
    for (int h = NF_VL / 2; h >= 1; h /= 2)
        for (int j = 0; j < h; j++) lane[j] = lane[j] + lane[j + h];
    return lane[0];
}

/* gw[fb][kidx[t]] = sum_p dz[fb][p] xp[p + off[t]] for FB filters and TB taps. */
NF_INLINE void NF_FN(direct_gw_block)(const int FB, const int TB, const float *xp,
                                      const int *off, const int *kidx, const float *dz,
                                      int pw_pad, float *gw, int K)
{
    NF_V acc[NF_DGW_F][NF_DGW_T];
    NF_UNROLL
    for (int fb = 0; fb < FB; fb++)
        NF_UNROLL
        for (int tb = 0; tb < TB; tb++) NF_VZERO(acc[fb][tb]);
    for (int p = 0; p < pw_pad; p += NF_VL) {
        NF_V d[NF_DGW_F], x[NF_DGW_T];
        NF_UNROLL
        for (int fb = 0; fb < FB; fb++) NF_VLOAD(d[fb], dz + (size_t)fb * pw_pad + p);
        NF_UNROLL
        for (int tb = 0; tb < TB; tb++) NF_VLOAD(x[tb], xp + p + off[tb]);
        NF_UNROLL
        for (int fb = 0; fb < FB; fb++)
            NF_UNROLL
            for (int tb = 0; tb < TB; tb++) NF_VFMAV(acc[fb][tb], d[fb], x[tb]);
    }
    NF_UNROLL
    for (int fb = 0; fb < FB; fb++)
        NF_UNROLL
        for (int tb = 0; tb < TB; tb++) gw[(size_t)fb * K + kidx[tb]] = NF_FN(hsum)(acc[fb][tb]);
}

#define NF_DGW_TAPS(FB)                                                               \
    for (t = 0; t + NF_DGW_T <= K; t += NF_DGW_T)                                     \
        NF_FN(direct_gw_block)(FB, NF_DGW_T, xp, off + t, kidx + t, d, pw_pad, g, K); \
    for (; t < K; t++)                                                                \
        NF_FN(direct_gw_block)(FB, 1, xp, off + t, kidx + t, d, pw_pad, g, K);

/* gw (nf, kh*kw) = the filter gradient of dz (nf, pw_pad; zero where unused). */
static void NF_FN(direct_gw)(const float *xp, int w, int kh, int kw, const float *dz, int nf,
                             int pw_pad, float *gw)
{
    const int K = kh * kw;
    int off[NF_DIRECT_MAX_TAPS], kidx[NF_DIRECT_MAX_TAPS];
    for (int u = 0; u < kh; u++)
        for (int v = 0; v < kw; v++) {
            off[u * kw + v] = u * w + v;
            kidx[u * kw + v] = (kh - 1 - u) * kw + (kw - 1 - v);
        }
    for (int f = 0, t; f < nf;) {
        const int fb = nf - f >= NF_DGW_F ? NF_DGW_F : 1;
        const float *d = dz + (size_t)f * pw_pad;
        float *g = gw + (size_t)f * K;
        if (fb == NF_DGW_F) {
            NF_DGW_TAPS(NF_DGW_F)
        } else {
            NF_DGW_TAPS(1)
        }
        f += fb;
    }
}
#undef NF_DGW_TAPS
#undef NF_V
#endif

/* The template's parameters are used up. */
#undef NF_VL
#undef NF_T
#undef NF_TANH_FN
#undef NF_VEXP
#undef NF_FN
#undef NF_DOUBLE
#undef NF_SUF
#undef NF_VBYTES
#undef NF_DFWD_F
#undef NF_DFWD_NP
#undef NF_DGW_F
#undef NF_DGW_T
