/* Chapter-6 conv nets in C: see convnet.h (interface), conv_kernels.h (im2col,
 * col2im, max-pool, softmax, dropout masks) and conv_engine.h (training and
 * inference). The two headers are templates, included once per dtype. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "convnet.h"

#ifdef _OPENMP
#include <omp.h>
static inline int nf_thread_num(void) { return omp_get_thread_num(); }
#else
static inline int nf_thread_num(void) { return 0; }
#endif

/* SplitMix64's finaliser: the dropout generator (reference.network3.splitmix64). */
static inline uint64_t nf_mix(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

int nf_dense_block(int n_in)
{
    /* About 96 rows a block, at most 32 blocks, multiples of 8 rows. */
    int n_blocks = n_in / 96;
    int block;
    if (n_blocks < 1) n_blocks = 1;
    if (n_blocks > 32) n_blocks = 32;
    block = (n_in + n_blocks - 1) / n_blocks;
    if (n_blocks > 1) block = (block + 7) / 8 * 8;
    return block > 0 ? block : 1;
}

#define REAL float
#define SFX(name) name##_f
#define SFX_GEMM(net) ((net)->gemm_f)
#define SFX_GEMM_T nf_gemm_f
#define EXP expf
#define TANH tanhf
#include "conv_kernels.h"
#include "conv_engine.h"
#undef REAL
#undef SFX
#undef SFX_GEMM
#undef SFX_GEMM_T
#undef EXP
#undef TANH
#undef NF_GEMM

#define REAL double
#define SFX(name) name##_d
#define SFX_GEMM(net) ((net)->gemm_d)
#define SFX_GEMM_T nf_gemm_d
#define EXP exp
#define TANH tanh
#include "conv_kernels.h"
#include "conv_engine.h"
