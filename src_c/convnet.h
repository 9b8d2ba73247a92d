/* Chapter-6 conv nets: layer descriptions and the entry points of convnet.c.
 *
 * A network is conv-pool layers (any number, first), then dense layers
 * (fully connected), the last of which is the softmax. Parameters belong to
 * the Python layers (C-contiguous arrays, updated in place):
 *   conv:  w (F, C, kh, kw), b (F,)
 *   dense: w (n_in, n_out),  b (n_out,)
 * Activations travel as (m, features) C-contiguous matrices; a conv layer's
 * features are (F, ho, wo) in C order, exactly the book's reshape.
 */
#ifndef NF_CONVNET_H
#define NF_CONVNET_H

#include <stdint.h>

#define NF_MAX_LAYERS 32

enum { NF_CONV = 0, NF_DENSE = 1, NF_SOFTMAX = 2 };

/* Row-major GEMM: C (m, n) = alpha op(A) op(B) + beta C (nndl_fast._blas.gemm_rowmajor). */
typedef void (*nf_gemm_f)(int ta, int tb, int m, int n, int k, float alpha,
                          const float *a, int lda, const float *b, int ldb,
                          float beta, float *c, int ldc);
typedef void (*nf_gemm_d)(int ta, int tb, int m, int n, int k, double alpha,
                          const double *a, int lda, const double *b, int ldb,
                          double beta, double *c, int ldc);

typedef struct {
    int kind, act;              /* act: NF_SIGMOID... (nf_runtime.h) */
    /* conv-pool */
    int c_in, h_in, w_in, n_filt, kh, kw, ph, pw, hc, wc, ho, wo;
    /* every layer: inputs and outputs per example; dropout of the inputs */
    int n_in, n_out;
    double p_dropout;
    void *w, *b;
} nf_layer;

typedef struct {
    int n_layers;
    int n_conv;                 /* layers[0 .. n_conv-1] are conv-pool layers */
    int n_threads;
    uint64_t dropout_seed;
    nf_gemm_f gemm_f;
    nf_gemm_d gemm_d;
    nf_layer layers[NF_MAX_LAYERS];
} nf_net;

/* Rows per block of a dense layer's inputs in training on mini-batches of m
 * (a function of the shapes only). */
int nf_dense_block(int n_in, int n_out, int m);
/* Use the kernel path named ("avx512", "avx2", "generic": the one nndl_fast._dense
 * chose); -1 when it cannot run here. */
int nf_conv_select_path(const char *name);

/* The GEMMs of small operands (small_gemm.h, on the chosen path), the
 * arguments of nf_gemm_f/d: 1 when they computed C, 0 when the shape is not
 * one they take (nf_small_gemm_fits) or the path leaves it to BLAS, which the
 * caller then calls. */
int nf_small_gemm_f(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc);
int nf_small_gemm_d(int ta, int tb, int m, int n, int k, double alpha, const double *a,
                    int lda, const double *b, int ldb, double beta, double *c, int ldc);
/* Whether the small kernels take shape (ta, tb, m, n, k) at all: m rows of A·B or
 * A·B^T, or k terms of A^T·B, at most 64 (each path gives them fewer, or none). */
int nf_small_gemm_fits(int ta, int tb, int m, int n, int k);
/* Whether nf_small_gemm_f/d are on: mode -1 the path's choice (the default),
 * 0 never, 1 always; another value only asks. */
int nf_small_gemm_mode(int mode);
/* The kernels themselves, whatever the shape (for tests): 0 for A^T·B^T and
 * for A·B^T with m > 256, which they do not compute. */
int nf_small_gemm_kernel_f(int ta, int tb, int m, int n, int k, float alpha, const float *a,
                           int lda, const float *b, int ldb, float beta, float *c, int ldc);
int nf_small_gemm_kernel_d(int ta, int tb, int m, int n, int k, double alpha, const double *a,
                           int lda, const double *b, int ldb, double beta, double *c, int ldc);

/* Whether the engine's dense layers take the sparse-input products
 * (sparse_layer.h): mode -1 where most inputs are zeros (ReLU, dropout; the
 * default), 0 never, 1 always; another value only asks. Returns the mode. */
int nf_sparse_dense_mode(int mode);

/* Train n_batches mini-batches of m examples, x (n_batches*m, n_in) and labels
 * y (n_batches*m,), in order; step numbers (for dropout) first_step, ...
 * reg = lmbda / num_training_batches. Returns 0, or -1 when memory ran out. */
int nf_train_f(const nf_net *net, const float *x, const int64_t *y, int64_t n_batches,
               int m, double eta, double reg, int64_t first_step);
int nf_train_d(const nf_net *net, const double *x, const int64_t *y, int64_t n_batches,
               int m, double eta, double reg, int64_t first_step);

/* Inference (weight-scaled dropout): out (n, n_out of the last layer). */
int nf_predict_f(const nf_net *net, const float *x, int64_t n, float *out);
int nf_predict_d(const nf_net *net, const double *x, int64_t n, double *out);

/* Single kernels, for tests (parallel over images where it makes sense). */
void nf_conv_forward_f(nf_gemm_f g, const float *x, const float *w, float *z, int m, int c,
                       int h, int wd, int f, int kh, int kw, int nt);
void nf_conv_forward_d(nf_gemm_d g, const double *x, const double *w, double *z, int m, int c,
                       int h, int wd, int f, int kh, int kw, int nt);
int nf_conv_grad_f(nf_gemm_f g, const float *x, const float *w, const float *dz, float *gw,
                   float *dx, int m, int c, int h, int wd, int f, int kh, int kw, int nt);
int nf_conv_grad_d(nf_gemm_d g, const double *x, const double *w, const double *dz,
                   double *gw, double *dx, int m, int c, int h, int wd, int f, int kh, int kw,
                   int nt);
void nf_pool_forward_f(const float *z, float *pooled, int n, int hc, int wc, int ph, int pw,
                       int nt);
void nf_pool_forward_d(const double *z, double *pooled, int n, int hc, int wc, int ph, int pw,
                       int nt);
void nf_pool_backward_f(const float *z, const float *pooled, const float *dpooled, float *dz,
                        int n, int hc, int wc, int ph, int pw, int nt);
void nf_pool_backward_d(const double *z, const double *pooled, const double *dpooled,
                        double *dz, int n, int hc, int wc, int ph, int pw, int nt);
double nf_softmax_nll_f(const float *z, const int64_t *y, float *p, float *dz, int m, int k);
double nf_softmax_nll_d(const double *z, const int64_t *y, double *p, double *dz, int m,
                        int k);
void nf_dropout_mask_f(uint64_t seed, int layer, int64_t step, int64_t n, double p, float *out);
void nf_dropout_mask_d(uint64_t seed, int layer, int64_t step, int64_t n, double p,
                       double *out);

#endif
