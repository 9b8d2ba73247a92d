/* Chapter-6 conv nets in C: see convnet.h (interface), conv_kernels.h (im2col,
 * col2im, max-pool, softmax, dropout masks) and conv_engine.h (training and
 * inference). The two headers are templates, included once per dtype;
 * conv_direct.h (direct convolution of one-channel images, float32 AVX-512)
 * is included once; small_gemm.h (the products of small operands that the
 * GEMM calls of nndl_fast._convnet take instead of BLAS) once per path and dtype. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nf_simd.h"
#include "nf_runtime.h"
#include "convnet.h"

#ifdef _OPENMP
#include <omp.h>
static inline int nf_thread_num(void) { return omp_get_thread_num(); }
static inline int nf_num_threads(void) { return omp_get_num_threads(); }
#else
static inline int nf_thread_num(void) { return 0; }
static inline int nf_num_threads(void) { return 1; }
#endif

/* SplitMix64's finaliser: the dropout generator (reference.network3.splitmix64). */
static inline uint64_t nf_mix(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* exp for float in a form GCC vectorises (no calls, no branches): Cephes'
 * range reduction and polynomial, about 1 ulp. Arguments are clamped to
 * [-87.3, 88.7], so the result is never 0 or inf (sigmoid's 1/(1 + e^-z) stays
 * within 4e-39 of the exact value). */
static inline float nf_exp_cephes_f(float x)
{
    union { int32_t i; float f; } scale;
    float n, y, z;
    x = x < 88.3762626647949f ? x : 88.3762626647949f;
    x = x > -87.3365447504019f ? x : -87.3365447504019f;
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick (SSE2 has no vector floor) */
    n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    x = x - n * 0.693359375f;
    x = x - n * -2.12194440e-4f;
    z = x * x;
    y = ((((1.9875691500E-4f * x + 1.3981999507E-3f) * x + 8.3334519073E-3f) * x
          + 4.1665795894E-2f) * x + 1.6666665459E-1f) * x + 5.0000001201E-1f;
    y = y * z + x + 1.0f;
    scale.i = ((int32_t)n + 127) << 23;
    return y * scale.f;
}

/* Parts (bands of pooled rows) a conv layer's image is cut into for training:
 * a function of the layer's shape only (results never depend on the threads).
 * At least 32 conv positions a part: OpenBLAS's small-matrix kernel runs
 * markedly faster on bands of 32 positions than of 16 (the numbers are in
 * docs/how-it-is-built.md). */
static int nf_conv_parts(const nf_layer *ly)
{
    const double work = (double)ly->n_filt * ly->c_in * ly->kh * ly->kw * ly->hc * ly->wc;
    int parts = (int)(work / 80000.0);
    int cap = ly->ho < 4 ? ly->ho : 4;
    if (cap > ly->hc * ly->wc / 32) cap = ly->hc * ly->wc / 32;
    if (parts > cap) parts = cap;
    return parts < 1 ? 1 : parts;
}

/* Filter groups of the first conv layer in training: 2 when the filters split
 * evenly (with row blocks of the next dense layer in the same two halves, each
 * thread of two then reads only activations it computed), else 1 (the
 * (image, band) split). A function of the layer's shape only. */
static int nf_conv_groups(const nf_layer *ly)
{
    return ly->n_filt >= 2 && ly->n_filt % 2 == 0 ? 2 : 1;
}

int nf_dense_block(int n_in, int n_out, int m)
{
    /* About 96 rows a block, at most 32 blocks, multiples of 8 rows; and no more
     * than 10^6 multiply-adds a block's product (m * rows * n_out) where that
     * still leaves 32 rows or more (then a multiple of 4 blocks). Up to that size
     * OpenBLAS multiplies with its small-matrix kernels; above it, it first packs
     * both operands, and with few examples the packing costs more than the
     * product (docs/how-it-is-built.md). */
    const int small = (int)(1e6 / ((double)m * n_out)) / 8 * 8;
    int n_blocks = n_in / 96;
    int block;
    if (n_blocks < 1) n_blocks = 1;
    if (n_blocks > 32) n_blocks = 32;
    block = (n_in + n_blocks - 1) / n_blocks;
    if (n_blocks > 1) block = (block + 7) / 8 * 8;
    if (small >= 32 && block > small) {
        /* a multiple of 4 blocks of a multiple of 4 rows, so that 2 or 4 threads
         * get about the same rows */
        n_blocks = (n_in + small - 1) / small;
        n_blocks = (n_blocks + 3) / 4 * 4;
        block = ((n_in + n_blocks - 1) / n_blocks + 3) / 4 * 4;
    }
    return block > 0 ? block : 1;
}

/* Whether dense layer l of a training call takes sparse_layer.h's products:
 * when most of its inputs are exact zeros -- they pass through dropout, or come
 * out of a ReLU -- and it is wide (NF_SP_MIN_OUT outputs), so that a row of W
 * fetched for one nonzero input is long work. The book's 1000-unit layers gain
 * most; its 100-unit ReLU layers took the same time either way
 * (docs/how-it-is-built.md). A function of the layer's shape only, as is every
 * other choice of the engine, unless nf_sparse_dense_mode says. */
#define NF_SP_MIN_OUT 256
static int nf_sp_mode = -1;   /* nf_sparse_dense_mode: -1 the rule above, 0 never, 1 always */

int nf_sparse_dense_mode(int mode)
{
    if (mode >= -1 && mode <= 1)
        nf_sp_mode = mode;
    return nf_sp_mode;
}

static int nf_sparse_layer(const nf_net *net, int l)
{
    const nf_layer *ly = &net->layers[l];
    if (nf_sp_mode >= 0)
        return nf_sp_mode;
    return ly->n_out >= NF_SP_MIN_OUT
           && (ly->p_dropout > 0 || (l > 0 && net->layers[l - 1].act == NF_RELU));
}

/* ------------------------------------------------------- per-path kernels */

/* conv_direct.h for each instruction set and dtype: vector width, and filters,
 * position vectors and taps per sweep of the direct kernels, what fits 32
 * registers (AVX-512; NEON, the ARM64 baseline) or 16 (AVX2; SSE2). */
#define NF_DOUBLE 1
#define NF_SUF d_generic
#define NF_VBYTES 16
#include "sparse_layer.h"
#include "conv_direct.h"
#define NF_DOUBLE 0
#define NF_SUF f_generic
#define NF_VBYTES 16
#if defined(__aarch64__) || defined(_M_ARM64)
#define NF_DFWD_F 5
#define NF_DFWD_NP 2
#define NF_DGW_F 5
#define NF_DGW_T 4
#else
#define NF_DFWD_F 2
#define NF_DFWD_NP 4
#define NF_DGW_F 2
#define NF_DGW_T 3
#endif
#include "sparse_layer.h"
#include "conv_direct.h"

#if NF_MULTI_PATH
NF_TARGET_BEGIN(NF_TARGET_AVX2)
#define NF_DOUBLE 1
#define NF_SUF d_avx2
#define NF_VBYTES 32
#include "sparse_layer.h"
#include "conv_direct.h"
#define NF_DOUBLE 0
#define NF_SUF f_avx2
#define NF_VBYTES 32
#define NF_DFWD_F 5
#define NF_DFWD_NP 2
#define NF_DGW_F 2
#define NF_DGW_T 4
#include "sparse_layer.h"
#include "conv_direct.h"
NF_TARGET_END

/* (AVX-512F alone, the target of the kernels this copy replaced: compilers fuse
 * multiply-adds in its 16-lane vectors and scalars but not in 8-lane loop
 * tails, so its sigmoid rows round as they always did.) */
NF_TARGET_BEGIN("avx512f")
#define NF_DOUBLE 1
#define NF_SUF d_avx512
#define NF_VBYTES 64
#include "sparse_layer.h"
#include "conv_direct.h"
#define NF_DOUBLE 0
#define NF_SUF f_avx512
#define NF_VBYTES 64
#define NF_DFWD_F 5
#define NF_DFWD_NP 2
#define NF_DGW_F 5
#define NF_DGW_T 4
#include "sparse_layer.h"
#include "conv_direct.h"
NF_TARGET_END
#endif

#define NF_CONV_PATH_FIELDS(T, s)                                                      \
    void (*act_rows_##s)(int, const T *, T, T *, int);                                 \
    void (*dropout_rows_##s)(uint64_t, int, int64_t, double, int, int, int, int,       \
                             const T *, T *, T *);                                     \
    void (*pool_max_##s)(const T *, T *, int, int, int, int, int, int, int, int, size_t); \
    void (*pool_max_grad_##s)(const T *, const T *, const T *, T *, int, int, int, int, \
                              int, int, int, int, size_t);                        \
    void (*sp_forward_##s)(int, int, int, int, const T *, const T *, int, T *, int *, T *); \
    void (*sp_backward_##s)(int, int, int, int, const T *, const T *, const T *, T *, int, \
                            T *, T, T, int *, T *);
typedef struct {
    NF_CONV_PATH_FIELDS(float, f)
    NF_CONV_PATH_FIELDS(double, d)
    void (*direct_fwd)(const float *, int, int, int, const float *, int, float *, int);
    void (*direct_gw)(const float *, int, int, int, const float *, int, int, float *);
    /* NF_DIRECT_POOL2's pooling and its gradient where a path has its own, else NULL; */
    void (*pool2)(const float *, float *, int, int, int, int, int);
    void (*pool2_grad)(const float *, const float *, const float *, float *, int, int, int,
                       int, int);
    /* NF_DIRECT_NARROW's im2col_rows and col2im where a path has its own, else NULL */
    void (*im2col_narrow)(const float *, float *, int, int, int, int, int, int, int);
    void (*col2im_narrow)(const float *, float *, int, int, int, int, int);
} nf_conv_kernels;

#define NF_CONV_TABLE(isa)                                                             \
    act_rows_f_##isa, dropout_rows_f_##isa, pool_max_f_##isa, pool_max_grad_f_##isa,  \
     sp_forward_f_##isa, sp_backward_f_##isa,                                         \
     act_rows_d_##isa, dropout_rows_d_##isa, pool_max_d_##isa, pool_max_grad_d_##isa,  \
     sp_forward_d_##isa, sp_backward_d_##isa,                                         \
     direct_fwd_f_##isa, direct_gw_f_##isa

static const nf_conv_kernels nf_conv_generic = {NF_CONV_TABLE(generic), NULL, NULL, NULL, NULL};
#if NF_MULTI_PATH
static const nf_conv_kernels nf_conv_avx2 = {NF_CONV_TABLE(avx2), NULL, NULL, NULL, NULL};
static const nf_conv_kernels nf_conv_avx512 = {NF_CONV_TABLE(avx512), nf_direct_pool2,
                                               nf_direct_pool2_grad, nf_direct_im2col_rows,
                                               nf_direct_col2im};
#endif
/* The path's kernels (nf_conv_select_path, once at import). */
static const nf_conv_kernels *nf_ck = &nf_conv_generic;

/* ------------------------------------------------------ small-operand GEMM */

/* small_gemm.h for each instruction set and dtype: rows and vectors per tile,
 * what fits 16 registers (SSE2, without FMA: a product needs one more; AVX2)
 * or 32 (NEON; AVX-512). */
#if defined(__aarch64__) || defined(_M_ARM64)
#define NF_SG_GENERIC_MR 8
#define NF_SG_GENERIC_NV 3
#else
#ifndef NF_SG_GENERIC_MR
#define NF_SG_GENERIC_MR 6
#endif
#ifndef NF_SG_GENERIC_NV
#define NF_SG_GENERIC_NV 2
#endif
#endif
#define NF_DOUBLE 1
#define NF_SUF d_generic
#define NF_VBYTES 16
#define NF_SG_MR NF_SG_GENERIC_MR
#define NF_SG_NV NF_SG_GENERIC_NV
#include "small_gemm.h"
#define NF_DOUBLE 0
#define NF_SUF f_generic
#define NF_VBYTES 16
#define NF_SG_MR NF_SG_GENERIC_MR
#define NF_SG_NV NF_SG_GENERIC_NV
#include "small_gemm.h"

#if NF_MULTI_PATH
NF_TARGET_BEGIN(NF_TARGET_AVX2)
#define NF_DOUBLE 1
#define NF_SUF d_avx2
#define NF_VBYTES 32
#define NF_SG_MR 6
#define NF_SG_NV 2
#include "small_gemm.h"
#define NF_DOUBLE 0
#define NF_SUF f_avx2
#define NF_VBYTES 32
#define NF_SG_MR 6
#define NF_SG_NV 2
#include "small_gemm.h"
NF_TARGET_END

NF_TARGET_BEGIN(NF_TARGET_AVX512)
#define NF_DOUBLE 1
#define NF_SUF d_avx512
#define NF_VBYTES 64
#define NF_SG_MR 6
#define NF_SG_NV 2
#include "small_gemm.h"
#define NF_DOUBLE 0
#define NF_SUF f_avx512
#define NF_VBYTES 64
#define NF_SG_MR 6
#define NF_SG_NV 2
#include "small_gemm.h"
NF_TARGET_END
#endif

typedef struct {
    int (*f)(int, int, int, int, int, float, const float *, int, const float *, int, float,
             float *, int);
    int (*d)(int, int, int, int, int, double, const double *, int, const double *, int,
             double, double *, int);
    /* The shapes the path gives them (the rest go to BLAS): A·B and A·B^T
     * with m at most nn and nt rows, A^T·B with k at most tn terms (0: none). */
    int nn, nt, tn;
} nf_small_gemms;

/* What the kernels beat BLAS at, per path, measured on the conv nets'
 * products one thread each (see docs/how-it-is-built.md): a mini-batch side
 * of 10 (the dense layers' row blocks) and the 40 filters of chapter 6's
 * second conv layer (its forward W·col, input gradient W^T·dz, filter gradient
 * dz·col^T). Against OpenBLAS's Haswell and Nehalem kernels, which pack their
 * operands first, the AVX2 and baseline kernels win at all of them but A·B^T
 * with 40 rows. On AVX-512 OpenBLAS's small-matrix kernels are kept: the
 * kernels won some products alone but lost whole nets (in the engine the
 * weights come from L2 and L3, not L1). */
#define NF_SG_MAX 64
static const nf_small_gemms nf_sg_generic = {small_gemm_f_generic, small_gemm_d_generic,
                                             NF_SG_MAX, 16, NF_SG_MAX};
#if NF_MULTI_PATH
static const nf_small_gemms nf_sg_avx2 = {small_gemm_f_avx2, small_gemm_d_avx2,
                                          NF_SG_MAX, 16, NF_SG_MAX};
static const nf_small_gemms nf_sg_avx512 = {small_gemm_f_avx512, small_gemm_d_avx512,
                                            0, 0, 0};
#endif
static const nf_small_gemms *nf_sg = &nf_sg_generic;
static int nf_sg_mode = -1;   /* nf_small_gemm_mode: -1 the path's choice, 0 never, 1 always */

int nf_small_gemm_mode(int mode)
{
    if (mode >= -1 && mode <= 1)
        nf_sg_mode = mode;
    return nf_sg_mode == -1 ? (nf_sg->nn | nf_sg->nt | nf_sg->tn) != 0 : nf_sg_mode;
}

/* The shapes the kernels take at all: one side of the product (m rows of A·B
 * or A·B^T, k terms of A^T·B) at most NF_SG_MAX. */
int nf_small_gemm_fits(int ta, int tb, int m, int n, int k)
{
    (void)n;
    if (ta && tb)
        return 0;
    return ta ? k <= NF_SG_MAX : m <= NF_SG_MAX;
}

/* Whether this call goes to the kernels: mode 1, any shape they take; mode
 * -1, the shapes the path gives them. */
static int nf_small_gemm_takes(int ta, int tb, int m, int n, int k)
{
    if (nf_sg_mode == 0 || !nf_small_gemm_fits(ta, tb, m, n, k))
        return 0;
    if (nf_sg_mode == 1)
        return 1;
    return ta ? k <= nf_sg->tn : m <= (tb ? nf_sg->nt : nf_sg->nn);
}

int nf_small_gemm_f(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc)
{
    if (!nf_small_gemm_takes(ta, tb, m, n, k))
        return 0;
    return nf_sg->f(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int nf_small_gemm_d(int ta, int tb, int m, int n, int k, double alpha, const double *a,
                    int lda, const double *b, int ldb, double beta, double *c, int ldc)
{
    if (!nf_small_gemm_takes(ta, tb, m, n, k))
        return 0;
    return nf_sg->d(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int nf_small_gemm_kernel_f(int ta, int tb, int m, int n, int k, float alpha, const float *a,
                           int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    return nf_sg->f(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int nf_small_gemm_kernel_d(int ta, int tb, int m, int n, int k, double alpha, const double *a,
                           int lda, const double *b, int ldb, double beta, double *c, int ldc)
{
    return nf_sg->d(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ------------------------------------------------------ the dtype templates */

/* The end of a phase of conv_engine.h's training (c: the thread's nf_ctx). */
#define NF_BARRIER(c) nf_barrier_wait((c)->bar, &(c)->sense)

#define REAL float
#define NF_DIRECT 1   /* the direct kernels are float32 only */
#define SFX(name) name##_f
#define SFX_GEMM(net) ((net)->gemm_f)
#define SFX_GEMM_T nf_gemm_f
#define EXP expf
#define TANH tanhf
#include "conv_kernels.h"
#include "conv_engine.h"
#undef REAL
#undef NF_DIRECT
#undef SFX
#undef SFX_GEMM
#undef SFX_GEMM_T
#undef EXP
#undef TANH
#undef NF_GEMM

#define REAL double
#define NF_DIRECT 0
#define SFX(name) name##_d
#define SFX_GEMM(net) ((net)->gemm_d)
#define SFX_GEMM_T nf_gemm_d
#define EXP exp
#define TANH tanh
#include "conv_kernels.h"
#include "conv_engine.h"

int nf_conv_select_path(const char *name)
{
    for (int p = 0; p < NF_N_PATHS; p++)
        if (strcmp(name, nf_path_names[p]) == 0 && nf_path_runs(p)) {
#if NF_MULTI_PATH
            nf_ck = p == NF_PATH_AVX512 ? &nf_conv_avx512
                  : p == NF_PATH_AVX2 ? &nf_conv_avx2 : &nf_conv_generic;
            nf_sg = p == NF_PATH_AVX512 ? &nf_sg_avx512
                  : p == NF_PATH_AVX2 ? &nf_sg_avx2 : &nf_sg_generic;
#endif
            return 0;
        }
    return -1;
}
