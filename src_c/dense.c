/* The dense SGD epoch's block kernels (dense_kernels.h), compiled for each
 * instruction set this build targets and chosen once at import
 * (nndl_dense_select), and the helpers of the epoch: sparse rows, the team's
 * barrier, prefetches, the floating-point mode. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "nf_simd.h"
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

/* ---------------------------------------------------------------- kernels */

/* Vector width, examples, weight rows and blocks per sweep of each path
 * (see dense_kernels.h): what fits 32 registers (AVX-512; NEON, the ARM64
 * baseline) or 16 (AVX2; SSE2, the x86-64 baseline). */
#if defined(__aarch64__) || defined(_M_ARM64)
#define NF_DOUBLE 1
#define NF_SUF d_generic
#define NF_VBYTES 16
#define NF_FWD_E 2
#define NF_UPD_R 2
#define NF_CSR_NB 1
#include "dense_kernels.h"
#define NF_DOUBLE 0
#define NF_SUF s_generic
#define NF_VBYTES 16
#define NF_FWD_E 6
#define NF_UPD_R 4
#define NF_CSR_NB 2
#include "dense_kernels.h"
#else
#define NF_DOUBLE 1
#define NF_SUF d_generic
#define NF_VBYTES 16
#define NF_FWD_E 1
#define NF_UPD_R 1
#define NF_CSR_NB 1
#include "dense_kernels.h"
#define NF_DOUBLE 0
#define NF_SUF s_generic
#define NF_VBYTES 16
#define NF_FWD_E 2
#define NF_UPD_R 2
#define NF_CSR_NB 1
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
#include "dense_kernels.h"
#define NF_DOUBLE 0
#define NF_SUF s_avx2
#define NF_VBYTES 32
#define NF_FWD_E 6
#define NF_UPD_R 4
#define NF_CSR_NB 2
#include "dense_kernels.h"
NF_TARGET_END

NF_TARGET_BEGIN(NF_TARGET_AVX512)
#define NF_DOUBLE 1
#define NF_SUF d_avx512
#define NF_VBYTES 64
#define NF_FWD_E 10
#define NF_UPD_R 8
#define NF_CSR_NB 4
#include "dense_kernels.h"
#define NF_DOUBLE 0
#define NF_SUF s_avx512
#define NF_VBYTES 64
#define NF_FWD_E 12
#define NF_UPD_R 8
#define NF_CSR_NB 4
#include "dense_kernels.h"
NF_TARGET_END
#endif

typedef struct {
    void (*fwd_d)(int, int, const double *, int, const double *, const int32_t *, double *, int);
    void (*fwd_s)(int, int, const float *, int, const float *, const int32_t *, float *, int);
    void (*upd_d)(int, int, const double *, int, const double *, int, double *,
                  const int32_t *, double, double);
    void (*upd_s)(int, int, const float *, int, const float *, int, float *,
                  const int32_t *, float, float);
    void (*sigmoid_d)(int, double *, int, const double *, int);
    void (*sigmoid_s)(int, float *, int, const float *, int);
    void (*bwd_d)(int, int, int, const double *, ptrdiff_t, const double *, int,
                  const double *, int, double *, int);
    void (*bwd_s)(int, int, int, const float *, ptrdiff_t, const float *, int,
                  const float *, int, float *, int);
    void (*csr_first_d)(int, const nndl_csr *, int64_t, int, int, const double *, double *, int);
    void (*csr_first_s)(int, const nndl_csr *, int64_t, int, int, const float *, float *, int);
    void (*scale_d)(ptrdiff_t, double *, double);
    void (*scale_s)(ptrdiff_t, float *, float);
    void (*convert_f2d)(int, const float *, double *);
} nf_dense_kernels;

#define NF_DENSE_TABLE(isa)                                                           \
    {fwd_d_##isa, fwd_s_##isa, upd_d_##isa, upd_s_##isa, sigmoid_d_##isa,             \
     sigmoid_s_##isa, bwd_d_##isa, bwd_s_##isa, csr_first_d_##isa, csr_first_s_##isa, \
     scale_d_##isa, scale_s_##isa, convert_f2d_d_##isa}

static const nf_dense_kernels nf_kernels_generic = NF_DENSE_TABLE(generic);
#if NF_MULTI_PATH
static const nf_dense_kernels nf_kernels_avx2 = NF_DENSE_TABLE(avx2);
static const nf_dense_kernels nf_kernels_avx512 = NF_DENSE_TABLE(avx512);
#endif

/* The chosen path and its kernels: the fastest by default (a static
 * initialiser cannot ask the processor, so the first select sets it). */
static int nf_path = NF_PATH_GENERIC;
static const nf_dense_kernels *nf_k = &nf_kernels_generic;

int nndl_dense_path_runs(const char *name)
{
    for (int p = 0; p < NF_N_PATHS; p++)
        if (strcmp(name, nf_path_names[p]) == 0)
            return nf_path_runs(p);
    return 0;
}

int nndl_dense_select(const char *name)
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

const char *nndl_dense_isa(void) { return nf_path_names[nf_path]; }

void nndl_fwd_d(int m, int K, const double *X, int ldx, const double *W, double *out, int ldo)
{ nf_k->fwd_d(m, K, X, ldx, W, NULL, out, ldo); }
void nndl_fwd_s(int m, int K, const float *X, int ldx, const float *W, float *out, int ldo)
{ nf_k->fwd_s(m, K, X, ldx, W, NULL, out, ldo); }
void nndl_fwd_idx_d(int m, int K, const double *X, int ldx, const double *W,
                    const int32_t *cols, double *out, int ldo)
{ nf_k->fwd_d(m, K, X, ldx, W, cols, out, ldo); }
void nndl_fwd_idx_s(int m, int K, const float *X, int ldx, const float *W,
                    const int32_t *cols, float *out, int ldo)
{ nf_k->fwd_s(m, K, X, ldx, W, cols, out, ldo); }
void nndl_upd_d(int rows, int m, const double *X, int ldx, const double *D, int ldd,
                double *W, double alpha, double beta)
{ nf_k->upd_d(rows, m, X, ldx, D, ldd, W, NULL, alpha, beta); }
void nndl_upd_s(int rows, int m, const float *X, int ldx, const float *D, int ldd,
                float *W, float alpha, float beta)
{ nf_k->upd_s(rows, m, X, ldx, D, ldd, W, NULL, alpha, beta); }
void nndl_upd_idx_d(int rows, int m, const double *X, int ldx, const double *D, int ldd,
                    double *W, const int32_t *cols, double alpha)
{ nf_k->upd_d(rows, m, X, ldx, D, ldd, W, cols, alpha, 1.0); }
void nndl_upd_idx_s(int rows, int m, const float *X, int ldx, const float *D, int ldd,
                    float *W, const int32_t *cols, float alpha)
{ nf_k->upd_s(rows, m, X, ldx, D, ldd, W, cols, alpha, 1.0f); }
void nndl_sigmoid_block_d(int m, double *Z, int ldz, const double *b, int n_valid)
{ nf_k->sigmoid_d(m, Z, ldz, b, n_valid); }
void nndl_sigmoid_block_s(int m, float *Z, int ldz, const float *b, int n_valid)
{ nf_k->sigmoid_s(m, Z, ldz, b, n_valid); }
void nndl_bwd_d(int m, int rows, int nb, const double *W, ptrdiff_t bstride,
                const double *Dn, int ldn, const double *A, int lda, double *out, int ldo)
{ nf_k->bwd_d(m, rows, nb, W, bstride, Dn, ldn, A, lda, out, ldo); }
void nndl_bwd_s(int m, int rows, int nb, const float *W, ptrdiff_t bstride,
                const float *Dn, int ldn, const float *A, int lda, float *out, int ldo)
{ nf_k->bwd_s(m, rows, nb, W, bstride, Dn, ldn, A, lda, out, ldo); }
void nndl_csr_first_d(int m, const nndl_csr *X, int64_t first, int n_in, int n_blocks,
                      const double *W, double *out, int ldo)
{ nf_k->csr_first_d(m, X, first, n_in, n_blocks, W, out, ldo); }
void nndl_csr_first_s(int m, const nndl_csr *X, int64_t first, int n_in, int n_blocks,
                      const float *W, float *out, int ldo)
{ nf_k->csr_first_s(m, X, first, n_in, n_blocks, W, out, ldo); }
void nndl_scale_d(ptrdiff_t n, double *x, double beta) { nf_k->scale_d(n, x, beta); }
void nndl_scale_s(ptrdiff_t n, float *x, float beta) { nf_k->scale_s(n, x, beta); }
void nndl_convert_f2d(int n, const float *src, double *dst) { nf_k->convert_f2d(n, src, dst); }

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
#endif

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
            const int k = w * 64 + nndl_ctz64(x);
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

/* ---------------------------------------------------------------- the epoch's helpers */

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
    if (nf_path != NF_PATH_AVX512)   /* the portable gather reads the columns too */
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
