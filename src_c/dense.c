/* The dense SGD epoch's block kernels (dense_kernels.h), compiled for each
 * instruction set this build targets and chosen once at import
 * (nf_dense_select), and the helpers of the epoch: sparse rows, prefetches,
 * the floating-point mode (the team's barrier is nf_runtime.h's). */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "nf_simd.h"
#include "dense.h"
#include "nf_runtime.h"
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------- kernels */

/* Vector width, examples, weight rows and blocks per sweep of each path
 * (see dense_kernels.h): what fits 32 registers (AVX-512; NEON, the ARM64
 * baseline) or 16 (AVX2; SSE2, the x86-64 baseline); and the first layer's
 * step from the csr rows everywhere but AVX-512, where the expanded batch is
 * faster (measured on x86-64; on ARM64 by the same count of operations). */
#if defined(__aarch64__) || defined(_M_ARM64)
#define NF_DOUBLE 1
#define NF_SUF d_generic
#define NF_VBYTES 16
#define NF_FWD_E 2
#define NF_UPD_R 2
#define NF_CSR_NB 1
#define NF_CSR_STEP 1
#include "dense_kernels.h"
#define NF_DOUBLE 0
#define NF_SUF f_generic
#define NF_VBYTES 16
#define NF_FWD_E 6
#define NF_UPD_R 4
#define NF_CSR_NB 2
#define NF_CSR_STEP 1
#include "dense_kernels.h"
#else
#define NF_DOUBLE 1
#define NF_SUF d_generic
#define NF_VBYTES 16
#define NF_FWD_E 1
#define NF_UPD_R 1
#define NF_CSR_NB 1
#define NF_CSR_STEP 1
#include "dense_kernels.h"
#define NF_DOUBLE 0
#define NF_SUF f_generic
#define NF_VBYTES 16
#define NF_FWD_E 2
#define NF_UPD_R 2
#define NF_CSR_NB 1
#define NF_CSR_STEP 1
#include "dense_kernels.h"
#endif

#if NF_MULTI_PATH
NF_TARGET_BEGIN(NF_TARGET_AVX2)
#define NF_DOUBLE 1
#define NF_SUF d_avx2
#define NF_VBYTES 32
#define NF_FWD_E 2
#define NF_UPD_R 2
#define NF_CSR_NB 1
#define NF_CSR_STEP 1
#include "dense_kernels.h"
#define NF_DOUBLE 0
#define NF_SUF f_avx2
#define NF_VBYTES 32
#define NF_FWD_E 6
#define NF_UPD_R 4
#define NF_CSR_NB 2
#define NF_CSR_STEP 1
#include "dense_kernels.h"
NF_TARGET_END

NF_TARGET_BEGIN(NF_TARGET_AVX512)
#define NF_DOUBLE 1
#define NF_SUF d_avx512
#define NF_VBYTES 64
#define NF_FWD_E 10
#define NF_UPD_R 8
#define NF_CSR_NB 4
#define NF_CSR_STEP 0
#include "dense_kernels.h"
#define NF_DOUBLE 0
#define NF_SUF f_avx512
#define NF_VBYTES 64
#define NF_FWD_E 12
#define NF_UPD_R 8
#define NF_CSR_NB 4
#define NF_CSR_STEP 0
#include "dense_kernels.h"
NF_TARGET_END
#endif

/* A path's kernels, per dtype (d: double, f: float). */
#define NF_DENSE_FIELDS(T, s)                                                           \
    void (*fwd_##s)(int, int, const T *, int, const T *, const int32_t *, T *, int);    \
    void (*upd_##s)(int, int, const T *, int, const T *, int, T *, const int32_t *, T, T); \
    void (*act_##s)(int, T *, int, const T *, int, int);                                \
    void (*bwd_##s)(int, int, int, const T *, ptrdiff_t, const T *, int, const T *, int, \
                    T *, int, int);                                                     \
    void (*csr_first_##s)(int, const nndl_csr *, const int64_t *, int64_t, int, int,      \
                          const T *, T *, int);                                         \
    void (*csr_upd_##s)(int, const nndl_csr *, const int64_t *, const T *, int, T *,     \
                        const int32_t *, int, T, T *);                                  \
    void (*scale_##s)(ptrdiff_t, T *, T);                                               \
    int csr_step_##s;
typedef struct {
    NF_DENSE_FIELDS(double, d)
    NF_DENSE_FIELDS(float, f)
    void (*convert_f2d)(int, const float *, double *);
} nf_dense_kernels;

#define NF_DENSE_ROW(s, isa)                                                          \
    fwd_##s##_##isa, upd_##s##_##isa, act_##s##_##isa, bwd_##s##_##isa,               \
    csr_first_##s##_##isa, csr_upd_##s##_##isa, scale_##s##_##isa, csr_step_##s##_##isa
#define NF_DENSE_TABLE(isa) {NF_DENSE_ROW(d, isa), NF_DENSE_ROW(f, isa), convert_f2d_d_##isa}

static const nf_dense_kernels nf_kernels_generic = NF_DENSE_TABLE(generic);
#if NF_MULTI_PATH
static const nf_dense_kernels nf_kernels_avx2 = NF_DENSE_TABLE(avx2);
static const nf_dense_kernels nf_kernels_avx512 = NF_DENSE_TABLE(avx512);
#endif

/* The chosen path and its kernels: the fastest by default (a static
 * initialiser cannot ask the processor, so the first select sets it). */
static int nf_path = NF_PATH_GENERIC;
static const nf_dense_kernels *nf_k = &nf_kernels_generic;

int nf_dense_path_runs(const char *name)
{
    for (int p = 0; p < NF_N_PATHS; p++)
        if (strcmp(name, nf_path_names[p]) == 0)
            return nf_path_runs(p);
    return 0;
}

int nf_dense_select(const char *name)
{
    int p = name ? -1 : nf_best_path();
    for (int q = 0; name && q < NF_N_PATHS; q++)
        if (strcmp(name, nf_path_names[q]) == 0)
            p = q;
    if (p < 0 || !nf_path_runs(p))
        return -1;
    nf_path = p;
#if NF_MULTI_PATH
    nf_k = p == NF_PATH_AVX512 ? &nf_kernels_avx512
         : p == NF_PATH_AVX2 ? &nf_kernels_avx2 : &nf_kernels_generic;
#endif
    return 0;
}

const char *nf_dense_isa(void) { return nf_path_names[nf_path]; }

int nf_dense_csr_step(int f32) { return f32 ? nf_k->csr_step_f : nf_k->csr_step_d; }

/* The entry points of dense.h, per dtype: the chosen path's kernels. */
#define NF_DENSE_ENTRIES(T, s)                                                          \
    void nf_fwd_##s(int m, int K, const T *X, int ldx, const T *W, T *out, int ldo)     \
    { nf_k->fwd_##s(m, K, X, ldx, W, NULL, out, ldo); }                                 \
    void nf_fwd_idx_##s(int m, int K, const T *X, int ldx, const T *W,                  \
                        const int32_t *cols, T *out, int ldo)                           \
    { nf_k->fwd_##s(m, K, X, ldx, W, cols, out, ldo); }                                 \
    void nf_upd_##s(int rows, int m, const T *X, int ldx, const T *D, int ldd, T *W,    \
                    T alpha, T beta)                                                    \
    { nf_k->upd_##s(rows, m, X, ldx, D, ldd, W, NULL, alpha, beta); }                   \
    void nf_upd_idx_##s(int rows, int m, const T *X, int ldx, const T *D, int ldd, T *W, \
                        const int32_t *cols, T alpha)                                   \
    { nf_k->upd_##s(rows, m, X, ldx, D, ldd, W, cols, alpha, (T)1); }                   \
    void nf_act_block_##s(int m, T *Z, int ldz, const T *b, int n_valid, int act)       \
    { nf_k->act_##s(m, Z, ldz, b, n_valid, act); }                                      \
    void nf_bwd_##s(int m, int rows, int nb, const T *W, ptrdiff_t bstride, const T *Dn, \
                    int ldn, const T *A, int lda, T *out, int ldo, int act)             \
    { nf_k->bwd_##s(m, rows, nb, W, bstride, Dn, ldn, A, lda, out, ldo, act); }         \
    void nf_csr_first_##s(int m, const nndl_csr *X, const int64_t *rows, int64_t first,  \
                          int n_in, int n_blocks, const T *W, T *out, int ldo)          \
    { nf_k->csr_first_##s(m, X, rows, first, n_in, n_blocks, W, out, ldo); }            \
    void nf_csr_upd_##s(int m, const nndl_csr *X, const int64_t *rows, const T *D,      \
                        int ldd, T *W, const int32_t *cols, int K, T alpha, T *acc)     \
    { nf_k->csr_upd_##s(m, X, rows, D, ldd, W, cols, K, alpha, acc); }                  \
    void nf_scale_##s(ptrdiff_t n, T *x, T beta) { nf_k->scale_##s(n, x, beta); }
NF_DENSE_ENTRIES(double, d)
NF_DENSE_ENTRIES(float, f)
void nf_convert_f2d(int n, const float *src, double *dst) { nf_k->convert_f2d(n, src, dst); }

/* ---------------------------------------------------------------- sparse rows */

/* Row i of a batch of sparse rows: rows[i], or first + i when rows is NULL. */
#define CSR_ROW(rows, first, i) ((rows) ? (rows)[i] : (first) + (i))

#if NF_MULTI_PATH
/* On the AVX-512 path, the batch's union of columns and its compacted rows by
 * the instructions made for them (compress, expand, pext): no zeroing pass,
 * no lookups; measurably faster than the portable scatter below. */
/* 16 float lanes from doubles: expand the run at src into the lanes of mk. */
static inline __attribute__((always_inline, target(NF_TARGET_AVX512)))
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
#define EXPAND_TARGET __attribute__((target(NF_TARGET_AVX512)))

/* A chunk of the run at value q into the lanes of mask mk, as T: per dtype
 * of the compacted rows, the vector type, its lanes, the expanding load from
 * float or double values and the masked store. */
#define EXPAND_LOAD_d(mk, q)                                                           \
    (X->val_f32 ? _mm512_cvtps_pd(_mm256_maskz_expand_ps(                              \
                      (__mmask8)(mk), _mm256_loadu_ps((const float *)X->val + (q))))   \
                : _mm512_maskz_expand_pd((__mmask8)(mk),                               \
                                         _mm512_loadu_pd((const double *)X->val + (q))))
#define EXPAND_LOAD_f(mk, q)                                                           \
    (X->val_f32 ? _mm512_maskz_expand_ps((__mmask16)(mk),                              \
                                         _mm512_loadu_ps((const float *)X->val + (q))) \
                : _mm512_cvtpd_ps_512((__mmask16)(mk), (const double *)X->val + (q)))
#define EXPAND_STORE_d(dst, mk, v) _mm512_mask_storeu_pd((dst), (__mmask8)(mk), (v))
#define EXPAND_STORE_f(dst, mk, v) _mm512_mask_storeu_ps((dst), (__mmask16)(mk), (v))

#define DEFINE_SCATTER_EXPAND(T, SUF, VT, LANES)                                      \
static EXPAND_TARGET void scatter_expand_##SUF(int i0, int i1, const nndl_csr *X,    \
                                               const int64_t *rows, int64_t first,    \
                                               const uint64_t *ubits, T *Xc, int U)   \
{                                                                                     \
    const int nw = X->n_words;                                                        \
    for (int i = i0; i < i1; i++) {                                                   \
        const int64_t r = CSR_ROW(rows, first, i);                                    \
        const uint64_t *eb = X->bits + r * nw;                                        \
        int64_t p = X->ptr[r];                                                        \
        T *xc = Xc + (ptrdiff_t)i * U;                                                \
        for (int w = 0; w < nw; w++) {                                                \
            const uint64_t uw = ubits[w];                                             \
            const int cu = (int)_mm_popcnt_u64(uw);                                   \
            const uint64_t pm = _pext_u64(eb[w], uw);                                 \
            /* each chunk's first value found from the mask alone (no chain           \
             * through the previous chunk) */                                         \
            for (int c = 0; c < cu; c += LANES) {                                     \
                const int64_t q = p + (c ? (int)_mm_popcnt_u64(pm << (64 - c)) : 0);  \
                const VT v = EXPAND_LOAD_##SUF(pm >> c, q);                           \
                const int left = cu - c;                                              \
                EXPAND_STORE_##SUF(xc + c, left >= LANES ? 0xFFFFu : (1u << left) - 1u, v); \
            }                                                                         \
            p += (int)_mm_popcnt_u64(eb[w]);                                          \
            xc += cu;                                                                 \
        }                                                                             \
    }                                                                                 \
}
DEFINE_SCATTER_EXPAND(double, d, __m512d, 8)
DEFINE_SCATTER_EXPAND(float, f, __m512, 16)

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
#endif

static inline int nf_ctz64(uint64_t x)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(x);
#else
    int n = 0;
    while (!(x & 1)) { x >>= 1; n++; }
    return n;
#endif
}

int nf_csr_union(int m, const nndl_csr *X, const int64_t *rows, int64_t first,
                   int32_t *cols, int32_t *pos, uint64_t *ubits)
{
    const int nw = X->n_words;
    int U = 0;
    for (int w = 0; w < nw; w++) ubits[w] = 0;
    for (int i = 0; i < m; i++) {
        const uint64_t *b = X->bits + CSR_ROW(rows, first, i) * nw;
        for (int w = 0; w < nw; w++) ubits[w] |= b[w];
    }
#if NF_MULTI_PATH
    if (nf_path == NF_PATH_AVX512) {
        /* The expanding scatter needs no pos; the columns by compress-stores. */
        if (cols) U = union_cols_avx512(ubits, nw, cols);
        else for (int w = 0; w < nw; w++) U += (int)__builtin_popcountll(ubits[w]);
        return U;
    }
#endif
    for (int w = 0; w < nw; w++) {
        for (uint64_t x = ubits[w]; x; x &= x - 1) {
            const int k = w * 64 + nf_ctz64(x);
            pos[k] = U;
            if (cols) cols[U] = k;
            U++;
        }
    }
    return U;
}

#if NF_MULTI_PATH
#define SCATTER_EXPAND(SUF)                                                           \
    if (nf_path == NF_PATH_AVX512) { scatter_expand_##SUF(i0, i1, X, rows, first, ubits, Xc, U); return; }
#else
#define SCATTER_EXPAND(SUF)
#endif

#define DEFINE_CSR_SCATTER(T, SUF)                                                    \
void nf_csr_scatter_##SUF(int i0, int i1, const nndl_csr *X, const int64_t *rows,   \
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
DEFINE_CSR_SCATTER(float, f)

/* ---------------------------------------------------------------- making sparse rows */

/* The bits of word w that stand for one of the n_cols columns. */
static inline uint64_t word_mask(int w, int64_t n_cols)
{
    const int64_t left = n_cols - 64 * (int64_t)w;
    return left >= 64 ? ~(uint64_t)0 : left <= 0 ? 0 : ((uint64_t)1 << left) - 1;
}

#if NF_MULTI_PATH
/* A row's nonzeros on the AVX-512 path: per 8 or 16 columns, the values and
 * column numbers of the set bits compressed into consecutive lanes. */
#define DEFINE_FILL_COMPRESS(T, SUF, LANES, LOADZ, COMPRESS, STORE)                    \
static EXPAND_TARGET int fill_compress_##SUF(const T *x, int64_t n_cols,              \
                                             const uint64_t *bits, int nw, int64_t q,  \
                                             int64_t end, int32_t *idx, T *val)        \
{                                                                                     \
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7,                    \
                                           8, 9, 10, 11, 12, 13, 14, 15);             \
    for (int w = 0; w < nw; w++) {                                                    \
        const uint64_t m = bits[w] & word_mask(w, n_cols);                            \
        for (int h = 0; h < 64 && (m >> h); h += LANES) {                             \
            const unsigned mk = (unsigned)(m >> h) & ((1u << LANES) - 1u);            \
            if (!mk) continue;                                                        \
            const int c = (int)_mm_popcnt_u32(mk), col = 64 * w + h;                  \
            if (q + c > end) return 1;                                                \
            STORE(val + q, (1u << c) - 1u, COMPRESS(mk, LOADZ(mk, x + col)));         \
            _mm512_mask_storeu_epi32(idx + q, (__mmask16)((1u << c) - 1u),            \
                                     _mm512_maskz_compress_epi32((__mmask16)mk,       \
                                         _mm512_add_epi32(iota, _mm512_set1_epi32(col)))); \
            q += c;                                                                   \
        }                                                                             \
    }                                                                                 \
    return q != end;                                                                  \
}
#define FILL_LOADZ_f(mk, p) _mm512_maskz_loadu_ps((__mmask16)(mk), (p))
#define FILL_LOADZ_d(mk, p) _mm512_maskz_loadu_pd((__mmask8)(mk), (p))
#define FILL_COMPRESS_f(mk, v) _mm512_maskz_compress_ps((__mmask16)(mk), (v))
#define FILL_COMPRESS_d(mk, v) _mm512_maskz_compress_pd((__mmask8)(mk), (v))
#define FILL_STORE_f(p, mk, v) _mm512_mask_storeu_ps((p), (__mmask16)(mk), (v))
#define FILL_STORE_d(p, mk, v) _mm512_mask_storeu_pd((p), (__mmask8)(mk), (v))
DEFINE_FILL_COMPRESS(float, f, 16, FILL_LOADZ_f, FILL_COMPRESS_f, FILL_STORE_f)
DEFINE_FILL_COMPRESS(double, d, 8, FILL_LOADZ_d, FILL_COMPRESS_d, FILL_STORE_d)
#define FILL_COMPRESS(SUF)                                                            \
    if (nf_path == NF_PATH_AVX512) return fill_compress_##SUF(x, n_cols, bits, nw, q, end, idx, val);
#else
#define FILL_COMPRESS(SUF)
#endif

static inline int64_t nf_popcount64(uint64_t m)
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_popcountll(m);
#else
    m = m - ((m >> 1) & 0x5555555555555555ULL);
    m = (m & 0x3333333333333333ULL) + ((m >> 2) & 0x3333333333333333ULL);
    m = (m + (m >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int64_t)((m * 0x0101010101010101ULL) >> 56);
#endif
}

int64_t nf_csr_count_row(int64_t n_cols, const uint64_t *bits, int nw)
{
    int64_t q = 0;
    for (int w = 0; w < nw; w++) q += nf_popcount64(bits[w] & word_mask(w, n_cols));
    return q;
}

#define DEFINE_CSR_FILL_ROW(T, SUF)                                                   \
int nf_csr_fill_row_##SUF(const T *x, int64_t n_cols, const uint64_t *bits, int nw,   \
                          int64_t q, int64_t end, int32_t *idx, T *val)               \
{                                                                                     \
    FILL_COMPRESS(SUF)                                                                \
    for (int w = 0; w < nw; w++)                                                      \
        for (uint64_t m = bits[w] & word_mask(w, n_cols); m; m &= m - 1) {            \
            const int j = 64 * w + nf_ctz64(m);                                       \
            if (q >= end) return 1;                                                   \
            idx[q] = j;                                                               \
            val[q++] = x[j];                                                          \
        }                                                                             \
    return q != end;                                                                  \
}
DEFINE_CSR_FILL_ROW(double, d)
DEFINE_CSR_FILL_ROW(float, f)

/* ---------------------------------------------------------------- the epoch's helpers */

unsigned int nf_flush_denormals_begin(void)
{
#if defined(__SSE__) || defined(_M_X64)
    const unsigned int old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u);          /* flush-to-zero and denormals-are-zero */
    return old;
#else
    return 0;
#endif
}

void nf_flush_denormals_end(unsigned int state)
{
#if defined(__SSE__) || defined(_M_X64)
    _mm_setcsr(state);
#else
    (void)state;
#endif
}

/* __builtin_prefetch of every line of [p, p + bytes), locality L (a constant). */
#if defined(__GNUC__)
#define NF_PREFETCH_LINES(p, bytes, L)                                                \
    for (size_t off = 0; off < (bytes); off += 64) __builtin_prefetch((const char *)(p) + off, 0, L)
#else
#define NF_PREFETCH_LINES(p, bytes, L) ((void)(p), (void)(bytes))
#endif

void nf_prefetch_l2(const void *p, size_t bytes) { NF_PREFETCH_LINES(p, bytes, 1); }

void nf_prefetch(const void *p, size_t bytes) { NF_PREFETCH_LINES(p, bytes, 3); }

void nf_csr_prefetch_row(const nndl_csr *X, int64_t r)
{
    const int64_t p0 = X->ptr[r], n = X->ptr[r + 1] - p0;
    const size_t vsize = X->val_f32 ? sizeof(float) : sizeof(double);
    nf_prefetch_l2((const char *)X->val + p0 * vsize, (size_t)n * vsize);
    nf_prefetch_l2(X->bits + r * X->n_words, (size_t)X->n_words * sizeof(uint64_t));
    if (nf_path != NF_PATH_AVX512)   /* the portable gather reads the columns too */
        nf_prefetch_l2(X->idx + p0, (size_t)n * sizeof(int32_t));
}
