/* Block kernels of the dense SGD epoch (see nndl_fast/_dense.pyx).
 *
 * Weights are stored in blocks of NF_BW = 16 output units: a block is a
 * (n_inputs x 16) row-major matrix, so the 16 weights leaving one input are
 * contiguous (one or two SIMD registers). Activations and deltas are
 * (m x padded_units) row-major, one example per row.
 *
 * Every output element is a plain sequential sum (over inputs for the forward
 * kernel, over examples for the update kernel), so results do not depend on
 * how blocks are shared among threads.
 */
#ifndef NF_DENSE_H
#define NF_DENSE_H

#include <stddef.h>
#include <stdint.h>

#define NF_BW 16

/* out[i][0:16] = sum_k X[i][k] * W[k][0:16], i < m, k < K. */
void nf_fwd_d(int m, int K, const double *X, int ldx, const double *W, double *out, int ldo);
void nf_fwd_f(int m, int K, const float *X, int ldx, const float *W, float *out, int ldo);

/* W[r][0:16] = beta * W[r][0:16] + alpha * sum_i X[i][r] * D[i][0:16], r < rows. */
void nf_upd_d(int rows, int m, const double *X, int ldx, const double *D, int ldd,
              double *W, double alpha, double beta);
void nf_upd_f(int rows, int m, const float *X, int ldx, const float *D, int ldd,
              float *W, float alpha, float beta);

/* In a block of 16 units of m examples (rows of Z, leading dimension ldz):
 * Z[i][j] = act(Z[i][j] + b[j]) for j < n_valid, 0 beyond; act is an
 * activation code of nf_runtime.h (NF_SIGMOID: 1 / (1 + exp(-z)) ...). */
void nf_act_block_d(int m, double *Z, int ldz, const double *b, int n_valid, int act);
void nf_act_block_f(int m, float *Z, int ldz, const float *b, int n_valid, int act);

/* Backward through a layer for the inputs c < rows of one block:
 * out[i][c] = (sum_bl sum_j W[bl*bstride + c*16 + j] * Dn[i][bl*16 + j]) * act'(z),
 * act' from the activation a = A[i][c] (a(1 - a) for NF_SIGMOID); out[i][rows..15] = 0. */
void nf_bwd_d(int m, int rows, int nb, const double *W, ptrdiff_t bstride,
              const double *Dn, int ldn, const double *A, int lda, double *out, int ldo,
              int act);
void nf_bwd_f(int m, int rows, int nb, const float *W, ptrdiff_t bstride,
              const float *Dn, int ldn, const float *A, int lda, float *out, int ldo,
              int act);

/* Inputs as compressed sparse rows: the nonzeros of row r are at positions
 * ptr[r] .. ptr[r+1]-1, with columns idx[] (ascending within a row) and values
 * val[] (float when val_f32, else double); bits[r * n_words ..] has bit k set
 * when column k of row r is nonzero. MNIST-like inputs are ~80% zeros. A zero
 * input adds exactly nothing to a sum of products, so leaving zero terms out
 * (and keeping the order of the others) gives the dense kernels' numbers. */
typedef struct {
    const int64_t *ptr;
    const int32_t *idx;
    const void *val;
    int val_f32;
    const uint64_t *bits;
    int n_words;
} nndl_csr;

/* The U columns where any of the m rows rows[i] of X (first + i when rows is
 * NULL) is nonzero: cols[0..U) ascending (unless cols is NULL), the union's
 * bits in ubits (n_words), and for the portable scatter pos[cols[u]] = u.
 * Returns U. */
int nf_csr_union(int m, const nndl_csr *X, const int64_t *rows, int64_t first,
                 int32_t *cols, int32_t *pos, uint64_t *ubits);
/* Rows i0..i1-1 of those rows restricted to the union's columns:
 * Xc[i][pos[k]] = x_ik, zeros elsewhere (row-major, U columns); pos and the
 * union's bits ubits as nf_csr_union left them. */
void nf_csr_scatter_d(int i0, int i1, const nndl_csr *X, const int64_t *rows,
                      int64_t first, int U, const int32_t *pos, const uint64_t *ubits,
                      double *Xc);
void nf_csr_scatter_f(int i0, int i1, const nndl_csr *X, const int64_t *rows,
                      int64_t first, int U, const int32_t *pos, const uint64_t *ubits,
                      float *Xc);

/* How many of a row's n_cols columns are set in its bits[0..nw). */
int64_t nf_csr_count_row(int64_t n_cols, const uint64_t *bits, int nw);
/* The nonzeros of row x (its n_cols values; the set bits of bits[0..nw), columns
 * ascending) into idx/val at q .. end-1, writing nothing outside that range (so
 * rows can be filled in parallel). Returns 1 when the bits do not fill the
 * range exactly. */
int nf_csr_fill_row_d(const double *x, int64_t n_cols, const uint64_t *bits, int nw,
                      int64_t q, int64_t end, int32_t *idx, double *val);
int nf_csr_fill_row_f(const float *x, int64_t n_cols, const uint64_t *bits, int nw,
                      int64_t q, int64_t end, int32_t *idx, float *val);

/* Layer 1's pre-activations (no bias) of csr rows rows[i] (first + i when rows
 * is NULL), i < m, through the n_blocks 16-unit blocks of W (block b: n_in x 16
 * at W + b·n_in·16) into out (m x 16·n_blocks, leading dimension ldo): batched
 * inference, and the epoch's forward step where nf_dense_csr_step. */
void nf_csr_first_d(int m, const nndl_csr *X, const int64_t *rows, int64_t first, int n_in,
                    int n_blocks, const double *W, double *out, int ldo);
void nf_csr_first_f(int m, const nndl_csr *X, const int64_t *rows, int64_t first, int n_in,
                    int n_blocks, const float *W, float *out, int ldo);

/* nf_upd_idx of one block straight from the csr rows rows[0..m) (no expanded
 * batch): W[r][0:16] += alpha * sum_i x[rows[i]][r] * D[i][0:16] for the K rows
 * r = cols[u], the union of the rows' columns (nf_csr_union); acc is an
 * (n_in x 16) scratch. The same numbers as nf_upd_idx on the expanded rows. */
void nf_csr_upd_d(int m, const nndl_csr *X, const int64_t *rows, const double *D, int ldd,
                  double *W, const int32_t *cols, int K, double alpha, double *acc);
void nf_csr_upd_f(int m, const nndl_csr *X, const int64_t *rows, const float *D, int ldd,
                  float *W, const int32_t *cols, int K, float alpha, float *acc);

/* nf_fwd and nf_upd (beta = 1) where input k of X is weight row cols[k]. */
void nf_fwd_idx_d(int m, int K, const double *X, int ldx, const double *W,
                  const int32_t *cols, double *out, int ldo);
void nf_fwd_idx_f(int m, int K, const float *X, int ldx, const float *W,
                  const int32_t *cols, float *out, int ldo);
void nf_upd_idx_d(int rows, int m, const double *X, int ldx, const double *D, int ldd,
                  double *W, const int32_t *cols, double alpha);
void nf_upd_idx_f(int rows, int m, const float *X, int ldx, const float *D, int ldd,
                  float *W, const int32_t *cols, float alpha);

/* x[j] = beta * x[j] for j < n (the weight decay of rows without gradient). */
void nf_scale_d(ptrdiff_t n, double *x, double beta);
void nf_scale_f(ptrdiff_t n, float *x, float beta);

/* Kernel paths ("avx512", "avx2", "generic"; see nf_simd.h). path_runs: 1 when
 * this build has the path and this processor can run it. select: use the path
 * (NULL: the fastest that runs); -1, and no change, when it cannot run. isa:
 * the path in use. */
int nf_dense_path_runs(const char *name);
int nf_dense_select(const char *name);
const char *nf_dense_isa(void);
/* 1 when the chosen path's epoch steps layer 1 straight from the csr rows
 * (nf_csr_first, nf_csr_upd) rather than from a batch expanded on its union of
 * columns (nf_fwd_idx, nf_upd_idx): f32 for the float kernels, else double. */
int nf_dense_csr_step(int f32);
/* dst[j] = src[j] for j < n, converting float to double. */
void nf_convert_f2d(int n, const float *src, double *dst);

/* Ask the memory system to start loading [p, p + bytes) into cache. */
void nf_prefetch(const void *p, size_t bytes);
/* The same into the outer caches only (does not hold up the core's loads). */
void nf_prefetch_l2(const void *p, size_t bytes);
/* Start loading what nf_csr_union and nf_csr_scatter will read of row r. */
void nf_csr_prefetch_row(const nndl_csr *X, int64_t r);

/* Float32 epochs run with subnormal numbers flushed to zero (x86: the FTZ and
 * DAZ bits of this thread's MXCSR). Saturated sigmoids make deltas of order
 * 1e-38 and below, where every operation would take a slow microcode path;
 * flushing changes them by less than 1.2e-38. begin returns the state that
 * end restores. No effect elsewhere. */
unsigned int nf_flush_denormals_begin(void);
void nf_flush_denormals_end(unsigned int state);

#endif
