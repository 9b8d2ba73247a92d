/* Direct convolution of one-channel images (the first conv layer on MNIST),
 * float32, AVX-512: the forward pass and the filter gradient without im2col.
 *
 * "Wide" layout: output (y, x) of a filter sits at p = y*w + x, with the image's
 * own row length w (> wc), so that the inputs under tap (u, v) of 16
 * consecutive positions are 16 consecutive pixels xp[p + u*w + v]. The columns
 * wc <= x < w of every row and the positions hc*w <= p < pw_pad (pw_pad: hc*w
 * rounded up to 32) are computed from whatever pixels lie there and never used:
 * pooling reads x < wc only, and the gradient dz is zero there.
 *
 * xp is the image followed by zeros, nf_direct_xp_len(...) values, so that
 * every load of every position stays inside it.
 *
 * Tap (u, v) multiplies filter weight k = (kh-1-u)*kw + (kw-1-v) (the flipped
 * kernel of Theano's conv2d, as in conv_kernels.h's im2col). The sums run in a
 * fixed order (forward: taps in (u, v) order; gradient: positions in 16 lanes,
 * then _mm512_reduce_add_ps), the same for any number of threads.
 */

static inline int nf_direct_pw_pad(int hc, int w) { return (hc * w + 31) / 32 * 32; }

static inline size_t nf_direct_xp_len(int hc, int w, int kh, int kw)
{
    return (size_t)nf_direct_pw_pad(hc, w) + (size_t)(kh - 1) * w + (size_t)kw + 32;
}

/* Pooling in 2x2 windows of rows up to 32 wide: nf_direct_pool2(_grad). */
#define NF_DIRECT_POOL2(ly) ((ly)->ph == 2 && (ly)->pw == 2 && (ly)->w_in <= 32)

/* Largest kernel (kh*kw) the gradient's tap tables take. */
#define NF_DIRECT_MAX_TAPS 1024

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define NF_HAVE_DIRECT 1
#include <immintrin.h>
#define NF_AVX512 __attribute__((target("avx512f")))

/* z[fb][p .. p+31] for FB filters, 32 positions per step. */
static inline __attribute__((always_inline, target("avx512f")))
void nf_direct_fwd_block(const int FB, const float *xp, int w, int kh, int kw,
                         const float *wf, int K, float *z, int pw_pad)
{
    for (int p = 0; p < pw_pad; p += 32) {
        __m512 a0[5], a1[5];
        for (int fb = 0; fb < FB; fb++) {
            a0[fb] = _mm512_setzero_ps();
            a1[fb] = _mm512_setzero_ps();
        }
        for (int u = 0; u < kh; u++)
            for (int v = 0; v < kw; v++) {
                const float *src = xp + p + u * w + v;
                const __m512 x0 = _mm512_loadu_ps(src), x1 = _mm512_loadu_ps(src + 16);
                const int k = (kh - 1 - u) * kw + (kw - 1 - v);
                for (int fb = 0; fb < FB; fb++) {
                    const __m512 wv = _mm512_set1_ps(wf[(size_t)fb * K + k]);
                    a0[fb] = _mm512_fmadd_ps(wv, x0, a0[fb]);
                    a1[fb] = _mm512_fmadd_ps(wv, x1, a1[fb]);
                }
            }
        for (int fb = 0; fb < FB; fb++) {
            _mm512_storeu_ps(z + (size_t)fb * pw_pad + p, a0[fb]);
            _mm512_storeu_ps(z + (size_t)fb * pw_pad + p + 16, a1[fb]);
        }
    }
}

/* z (nf, pw_pad) = the nf filters wf (nf, kh*kw) over the image xp. */
static NF_AVX512 void nf_direct_fwd(const float *xp, int w, int kh, int kw, const float *wf,
                                    int nf, float *z, int pw_pad)
{
    const int K = kh * kw;
    int f = 0;
    for (; f + 5 <= nf; f += 5)
        nf_direct_fwd_block(5, xp, w, kh, kw, wf + (size_t)f * K, K, z + (size_t)f * pw_pad,
                            pw_pad);
    for (; f < nf; f++)
        nf_direct_fwd_block(1, xp, w, kh, kw, wf + (size_t)f * K, K, z + (size_t)f * pw_pad,
                            pw_pad);
}

/* gw[fb][k(t)] = Σ_p dz[fb][p] · xp[p + off[t]] for FB filters and TB taps. */
static inline __attribute__((always_inline, target("avx512f")))
void nf_direct_gw_block(const int FB, const int TB, const float *xp, const int *off,
                        const int *kidx, const float *dz, int pw_pad, float *gw, int K)
{
    __m512 acc[5][4];   /* 5 x 4 sums + 5 + 4 operands: 29 of the 32 registers */
    for (int fb = 0; fb < FB; fb++)
        for (int tb = 0; tb < TB; tb++)
            acc[fb][tb] = _mm512_setzero_ps();
    for (int p = 0; p < pw_pad; p += 16) {
        __m512 d[5], x[4];
        for (int fb = 0; fb < FB; fb++)
            d[fb] = _mm512_loadu_ps(dz + (size_t)fb * pw_pad + p);
        for (int tb = 0; tb < TB; tb++)
            x[tb] = _mm512_loadu_ps(xp + p + off[tb]);
        for (int fb = 0; fb < FB; fb++)
            for (int tb = 0; tb < TB; tb++)
                acc[fb][tb] = _mm512_fmadd_ps(d[fb], x[tb], acc[fb][tb]);
    }
    for (int fb = 0; fb < FB; fb++)
        for (int tb = 0; tb < TB; tb++)
            gw[(size_t)fb * K + kidx[tb]] = _mm512_reduce_add_ps(acc[fb][tb]);
}

/* gw (nf, kh*kw) = the filter gradient of dz (nf, pw_pad; zero where unused). */
static NF_AVX512 void nf_direct_gw(const float *xp, int w, int kh, int kw, const float *dz,
                                   int nf, int pw_pad, float *gw)
{
    const int K = kh * kw;
    int off[NF_DIRECT_MAX_TAPS], kidx[NF_DIRECT_MAX_TAPS];
    for (int u = 0; u < kh; u++)
        for (int v = 0; v < kw; v++) {
            off[u * kw + v] = u * w + v;
            kidx[u * kw + v] = (kh - 1 - u) * kw + (kw - 1 - v);
        }
    for (int f = 0; f < nf;) {
        const int fb = nf - f >= 5 ? 5 : 1;
        const float *d = dz + (size_t)f * pw_pad;
        float *g = gw + (size_t)f * K;
        int t = 0;
        if (fb == 5) {
            for (; t + 4 <= K; t += 4)
                nf_direct_gw_block(5, 4, xp, off + t, kidx + t, d, pw_pad, g, K);
            for (; t < K; t++)
                nf_direct_gw_block(5, 1, xp, off + t, kidx + t, d, pw_pad, g, K);
        } else {
            for (; t + 4 <= K; t += 4)
                nf_direct_gw_block(1, 4, xp, off + t, kidx + t, d, pw_pad, g, K);
            for (; t < K; t++)
                nf_direct_gw_block(1, 1, xp, off + t, kidx + t, d, pw_pad, g, K);
        }
        f += fb;
    }
}

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
#define NF_DIRECT_NARROW(ly) ((ly)->w_in <= 16)

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

/* The direct kernels run on the AVX-512 path (nf_conv_select_path; the
 * others take im2col + GEMM). */
static int nf_direct_on = 0;
static int nf_direct_available(void) { return nf_direct_on; }
#else
#define NF_HAVE_DIRECT 0
static int nf_direct_on = 0;
static int nf_direct_available(void) { return 0; }
#endif
