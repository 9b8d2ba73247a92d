"""Dense networks (chapters 1 and 3): a whole mini-batch SGD epoch in one call,
and batched feed-forward. Hidden layers take any activation of
``reference.activations.ACTIVATION_TABLE`` (by its code; the book's is the
sigmoid); the output layer is sigmoid, or softmax for the log-likelihood cost.

Layout. For the duration of a call the weights of each layer are repacked into
blocks of 16 output units (``src_c/dense.h``): block b of layer l is an
(n_in_l x 16) row-major matrix holding the weights from every input to units
16b..16b+15 (zero-padded past the layer's width). Activations and deltas of a
mini-batch are (m x padded_units) row-major. Padded units have activation and
delta exactly 0, so their weights stay 0 and never influence the real units.
The Network's own (n_out, n_in) arrays are updated in place at the end.

Sparse inputs. MNIST images are ~80% zeros. With ``X_sparse`` (from
``sparse_rows``) each mini-batch is gathered onto the union of its nonzero
columns only (~380 of 784 for 10 images), and layer 1's forward pass and
update run over the matching weight rows only. A zero input adds exactly
nothing to a sum of products and the other terms keep their order, so the
results are bitwise those of the dense rows.

Parallel scheme (one OpenMP team for the whole epoch, spinning barriers between
steps: ``nf_barrier`` in src_c/nf_runtime.h).
Block b of a hidden layer belongs to thread b % n_threads. Each number is
computed by one thread with a fixed summation order, whatever the thread
count, so results are bitwise identical for 1 and N threads. Every thread has
a private copy of the output layer (W^L, b^L, small) and updates all of it.
Per mini-batch:

1. every thread gathers the next mini-batch's examples into its own
   double-buffered input matrix (moving rows between cores costs more than
   gathering them twice);
2. hidden layer l: each thread computes its blocks of a^l = σ(W^l a^{l-1} + b^l);  | barrier
3. output layer: every thread computes the whole output layer and its delta;
4. backward: each thread computes its blocks of δ^{L-1} from its copy of W^L,
   then updates all of that copy; for l = L-1..2 its blocks of δ^{l-1} and
   exactly their rows of W^l (barrier between layers); biases by block owners;
5. W^1 and b^1 by blocks (W^1 is never read by the backward pass), each block
   followed at once by the next batch's layer-1 pre-activations through it,
   into the other of two A^1 buffers.

With one hidden layer that is one barrier per mini-batch: nothing another
thread reads is written before the next barrier.

The update is fused with the gradient: W ← β·W − (η/m)·Σ_i x_i δ_i^T with
β = 1 − η·λ/n (L2), so no gradient matrix is ever stored. For plain L2, W^1's
β is kept as a factor per block (``_first_layer_step``). Float32 epochs flush
subnormal numbers to zero (``src_c/dense.h``).
"""
cimport cython
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport malloc, free

import numpy as np
cimport numpy as cnp

from nndl_fast import _config

from nndl_fast._openmp_helpers cimport omp_get_thread_num

cnp.import_array()

cdef extern from "dense.h" nogil:
    int NF_BW
    void nf_fwd_d(int m, int K, const double *X, int ldx, const double *W, double *out, int ldo)
    void nf_fwd_f(int m, int K, const float *X, int ldx, const float *W, float *out, int ldo)
    void nf_upd_d(int rows, int m, const double *X, int ldx, const double *D, int ldd,
                  double *W, double alpha, double beta)
    void nf_upd_f(int rows, int m, const float *X, int ldx, const float *D, int ldd,
                  float *W, float alpha, float beta)
    void nf_act_block_d(int m, double *Z, int ldz, const double *b, int n_valid, int act)
    void nf_act_block_f(int m, float *Z, int ldz, const float *b, int n_valid, int act)
    void nf_bwd_d(int m, int rows, int nb, const double *W, Py_ssize_t bstride,
                  const double *Dn, int ldn, const double *A, int lda, double *out, int ldo,
                  int act)
    void nf_bwd_f(int m, int rows, int nb, const float *W, Py_ssize_t bstride,
                  const float *Dn, int ldn, const float *A, int lda, float *out, int ldo,
                  int act)
    ctypedef struct nndl_csr:
        const int64_t *ptr
        const int32_t *idx
        const void *val
        int val_f32
        const uint64_t *bits
        int n_words
    int nf_csr_union(int m, const nndl_csr *X, const int64_t *rows, int64_t first,
                     int32_t *cols, int32_t *pos, uint64_t *ubits)
    void nf_csr_scatter_d(int i0, int i1, const nndl_csr *X, const int64_t *rows,
                          int64_t first, int U, const int32_t *pos, const uint64_t *ubits,
                          double *Xc)
    void nf_csr_scatter_f(int i0, int i1, const nndl_csr *X, const int64_t *rows,
                          int64_t first, int U, const int32_t *pos, const uint64_t *ubits,
                          float *Xc)
    int64_t nf_csr_count_row(int64_t n_cols, const uint64_t *bits, int nw)
    int nf_csr_fill_row_d(const double *x, int64_t n_cols, const uint64_t *bits, int nw,
                          int64_t q, int64_t end, int32_t *idx, double *val)
    int nf_csr_fill_row_f(const float *x, int64_t n_cols, const uint64_t *bits, int nw,
                          int64_t q, int64_t end, int32_t *idx, float *val)
    void nf_csr_first_d(int m, const nndl_csr *X, const int64_t *rows, int64_t first,
                        int n_in, int n_blocks, const double *W, double *out, int ldo)
    void nf_csr_first_f(int m, const nndl_csr *X, const int64_t *rows, int64_t first,
                        int n_in, int n_blocks, const float *W, float *out, int ldo)
    void nf_csr_upd_d(int m, const nndl_csr *X, const int64_t *rows, const double *D,
                      int ldd, double *W, const int32_t *cols, int K, double alpha,
                      double *acc)
    void nf_csr_upd_f(int m, const nndl_csr *X, const int64_t *rows, const float *D,
                      int ldd, float *W, const int32_t *cols, int K, float alpha, float *acc)
    void nf_fwd_idx_d(int m, int K, const double *X, int ldx, const double *W,
                      const int32_t *cols, double *out, int ldo)
    void nf_fwd_idx_f(int m, int K, const float *X, int ldx, const float *W,
                      const int32_t *cols, float *out, int ldo)
    void nf_upd_idx_d(int rows, int m, const double *X, int ldx, const double *D, int ldd,
                      double *W, const int32_t *cols, double alpha)
    void nf_upd_idx_f(int rows, int m, const float *X, int ldx, const float *D, int ldd,
                      float *W, const int32_t *cols, float alpha)
    void nf_scale_d(Py_ssize_t n, double *x, double beta)
    void nf_scale_f(Py_ssize_t n, float *x, float beta)
    void nf_convert_f2d(int n, const float *src, double *dst)
    void nf_prefetch(const void *p, size_t nbytes)
    unsigned int nf_flush_denormals_begin()
    void nf_flush_denormals_end(unsigned int state)
    void nf_prefetch_l2(const void *p, size_t nbytes)
    void nf_csr_prefetch_row(const nndl_csr *X, int64_t r)
    const char *nf_dense_isa()
    int nf_dense_path_runs(const char *name)
    int nf_dense_select(const char *name)
    int nf_dense_csr_step(int f32)

cdef extern from "nf_runtime.h" nogil:
    enum: NF_LINEAR, NF_SIGMOID, NF_TANH, NF_RELU
    ctypedef struct nf_barrier:
        pass
    int NF_DENSE_SPINS
    void nf_barrier_init(nf_barrier *b, int n_threads, int spins)
    void nf_barrier_wait(nf_barrier *b, int *local_sense)
    void nf_softmax_f(const float *z, float *p, int n)
    void nf_softmax_d(const double *z, double *p, int n)

cdef enum:
    MAX_LAYERS = 64
    BW = 16

# Output cost / activation (must match network2's cost classes):
# QUADRATIC: sigmoid output, delta (a - y) a (1 - a); CROSS_ENTROPY: sigmoid
# output, delta a - y; LOG_LIKELIHOOD: softmax output, delta a - y.
cpdef enum CostKind:
    QUADRATIC = 0
    CROSS_ENTROPY = 1
    LOG_LIKELIHOOD = 2

cpdef enum Regularization:
    L2 = 0
    L1 = 1


def _activation_codes():
    """The kernels' activation codes by name (src_c/nf_runtime.h); each must be
    the code ``reference.activations.ACTIVATION_TABLE`` gives that activation."""
    from nndl_fast.reference.activations import ACTIVATION_TABLE
    kernels = {"linear": NF_LINEAR, "sigmoid": NF_SIGMOID, "tanh": NF_TANH, "ReLU": NF_RELU}
    table = {entry.name: entry.code for entry in ACTIVATION_TABLE}
    if table != kernels:
        raise ImportError("ACTIVATION_TABLE %r does not match the kernels' activation codes "
                          "%r (src_c/nf_runtime.h)" % (table, kernels))
    return kernels


#: The kernels' activation codes by name (the table's, checked above).
ACT_CODES = _activation_codes()
SIGMOID = NF_SIGMOID


def _check_act(int act, what):
    if act not in ACT_CODES.values():
        raise ValueError("%s: unknown activation code %d (expected one of %s)"
                         % (what, act, sorted(ACT_CODES.values())))


def kernel_isa():
    """The kernel path in use: "avx512", "avx2" or "generic" (see :func:`kernel_paths`)."""
    return nf_dense_isa().decode()


def kernel_paths():
    """The kernel paths this build has and this processor runs, fastest first."""
    return [p for p in _config.KERNEL_PATHS if nf_dense_path_runs(p.encode())]


def _select_kernels():
    """Take the path NNDL_FAST_KERNELS names, else the fastest; once, at import."""
    cdef bytes name
    wanted = _config.requested_kernel_path()
    if wanted is None:
        nf_dense_select(NULL)
        return
    name = wanted.encode()
    if nf_dense_select(name) != 0:
        raise ValueError(
            "%s=%s: this processor (or this build) cannot run the %s kernels; the paths "
            "available here are %s" % (_config.KERNELS_ENV, wanted, wanted,
                                       ", ".join(kernel_paths())))


_select_kernels()


cdef struct Plan:
    int n_layers                      # L, the number of weight layers
    int sizes[MAX_LAYERS + 1]         # sizes[0] = n_in ... sizes[L] = n_out
    int n_blocks[MAX_LAYERS + 1]      # blocks of 16 units in layer l
    int padded[MAX_LAYERS + 1]        # 16 * n_blocks (padded[0] = n_in)
    int n_threads
    int64_t n_samples
    int mini_batch_size
    int cost
    int act                           # hidden layers' activation code (nf_runtime.h)
    int out_act                       # the output layer's, unless cost is LOG_LIKELIHOOD
    int reg
    bint x_is_float32
    bint use_momentum
    const void *x                     # (n_samples, n_in) float32 or float64
    const int64_t *order              # rows of x in training order
    const void *y                     # (n_samples, n_out) targets, compute dtype
    size_t y_row_bytes
    double eta
    double reg_step                   # η·λ/n
    double decay                      # 1 − η·λ/n (L2 without momentum)
    double momentum
    nf_barrier *barrier               # shared by the team (n_threads > 1)
    bint sparse                       # layer 1 reads the inputs from csr
    nndl_csr csr                      # x as compressed sparse rows (sparse)
    bint lazy_decay                   # L2 decay of W^1 kept as a factor per block
    double *w1_scale                  # W^1 block b = w1_scale[8b] * stored (lazy_decay)
    bint csr_step                     # layer 1 steps straight from csr (nf_dense_csr_step)
    void *sp_acc                      # csr_step: W^1 gradient sums, n_in x 16 per block
    int32_t *sp_cols                  # the sparse gather's scratch: _sparse_scratch
    int32_t *sp_pos
    uint64_t *sp_ubits


cdef inline void _fwd(int m, int K, const floating *X, int ldx, const floating *W,
                      floating *out, int ldo) noexcept nogil:
    if floating is float:
        nf_fwd_f(m, K, X, ldx, W, out, ldo)
    else:
        nf_fwd_d(m, K, X, ldx, W, out, ldo)


cdef inline void _upd(int rows, int m, const floating *X, int ldx, const floating *D,
                      int ldd, floating *W, floating alpha, floating beta) noexcept nogil:
    if floating is float:
        nf_upd_f(rows, m, X, ldx, D, ldd, W, alpha, beta)
    else:
        nf_upd_d(rows, m, X, ldx, D, ldd, W, alpha, beta)


cdef inline void _act_block(int m, floating *Z, int ldz, const floating *b, int blk,
                            int n_units, int act) noexcept nogil:
    """Z = act(Z + b) over the units of block ``blk`` (padded units 0)."""
    if floating is float:
        nf_act_block_f(m, Z + blk * BW, ldz, b + blk * BW, min(BW, n_units - blk * BW), act)
    else:
        nf_act_block_d(m, Z + blk * BW, ldz, b + blk * BW, min(BW, n_units - blk * BW), act)


cdef void _hidden_block(const floating *w_blk, const floating *b, const floating *a_prev,
                        int n_prev, int ld_prev, floating *out, int ld_out, int blk,
                        int n_units, int m, int act) noexcept nogil:
    """Units of block ``blk``: out = act(a_prev W_blk + b), padded units 0."""
    _fwd(m, n_prev, a_prev, ld_prev, w_blk, out + blk * BW, ld_out)
    _act_block(m, out, ld_out, b, blk, n_units, act)


cdef void _output_layer(const Plan *p, floating *w, const floating *b,
                        const floating *a_prev, int ld_prev, int m,
                        floating *out) noexcept nogil:
    """The whole output layer for m examples (``out_act`` or softmax), padded units 0."""
    cdef int L = p.n_layers
    cdef int n_out = p.sizes[L], ld = p.padded[L], n_prev = p.sizes[L - 1]
    cdef int i, j, blk
    cdef floating *o
    if p.cost != LOG_LIKELIHOOD:
        for blk in range(p.n_blocks[L]):
            _hidden_block(w + <Py_ssize_t> blk * n_prev * BW, b, a_prev, n_prev, ld_prev,
                          out, ld, blk, n_out, m, p.out_act)
        return
    for blk in range(p.n_blocks[L]):
        _fwd(m, n_prev, a_prev, ld_prev, w + <Py_ssize_t> blk * n_prev * BW, out + blk * BW, ld)
    for i in range(m):
        o = out + <Py_ssize_t> i * ld
        for j in range(n_out):
            o[j] = o[j] + b[j]
        if floating is float:
            nf_softmax_f(o, o, n_out)
        else:
            nf_softmax_d(o, o, n_out)
        for j in range(n_out, ld):
            o[j] = 0


cdef inline void _scale(Py_ssize_t n, floating *x, double beta) noexcept nogil:
    if floating is float:
        nf_scale_f(n, x, <float> beta)
    else:
        nf_scale_d(n, x, beta)


cdef inline void _upd_first(int rows, int m, const floating *X, int ldx, const floating *D,
                            int ldd, floating *W, floating alpha, floating beta,
                            const int32_t *cols, int K, const Plan *p=NULL,
                            const int64_t *csr_rows=NULL, floating *acc=NULL) noexcept nogil:
    """_upd over all ``rows`` rows, or, with ``cols``, where input k of X (K
    columns) is row cols[k]: the other rows get only the β scaling (their
    gradient is exactly zero). With ``csr_rows`` the inputs are those rows of
    p.csr instead of X (``acc``: the block's scratch)."""
    if cols == NULL:
        _upd(rows, m, X, ldx, D, ldd, W, alpha, beta)
        return
    if beta != 1:
        _scale(<Py_ssize_t> rows * BW, W, beta)
    if csr_rows != NULL:
        if floating is float:
            nf_csr_upd_f(m, &p.csr, csr_rows, D, ldd, W, cols, K, alpha, acc)
        else:
            nf_csr_upd_d(m, &p.csr, csr_rows, D, ldd, W, cols, K, alpha, acc)
    elif floating is float:
        nf_upd_idx_f(K, m, X, ldx, D, ldd, W, cols, alpha)
    else:
        nf_upd_idx_d(K, m, X, ldx, D, ldd, W, cols, alpha)


cdef void _update_rows(const Plan *p, floating *w, floating *v, int rows,
                       const floating *act, int ld_act, const floating *delta, int ld_delta,
                       int m, const int32_t *cols=NULL, int K=0,
                       const int64_t *csr_rows=NULL, floating *acc=NULL) noexcept nogil:
    """Update ``rows`` packed rows (16 weights each) with gradient Σ_i act_i δ_i^T
    (with ``cols``: act has K columns, column k standing for row cols[k]; with
    ``csr_rows`` too, act is those rows of p.csr, see _upd_first)."""
    cdef floating alpha = <floating> (-p.eta / m)
    cdef floating step = <floating> p.reg_step
    cdef floating mu = <floating> p.momentum
    cdef Py_ssize_t r, n = <Py_ssize_t> rows * BW
    if not p.use_momentum:
        if p.reg == L1 and step != 0:
            for r in range(n):
                if w[r] > 0:
                    w[r] = w[r] - step
                elif w[r] < 0:
                    w[r] = w[r] + step
            _upd_first(rows, m, act, ld_act, delta, ld_delta, w, alpha, <floating> 1.0, cols, K,
                       p, csr_rows, acc)
        else:
            _upd_first(rows, m, act, ld_act, delta, ld_delta, w, alpha, <floating> p.decay,
                       cols, K, p, csr_rows, acc)
        return
    # Momentum: v ← μv − step·reg'(w) − (η/m)∇w ; w ← w + v.
    for r in range(n):
        if p.reg == L1:
            v[r] = mu * v[r] - (step if w[r] > 0 else (-step if w[r] < 0 else 0))
        else:
            v[r] = mu * v[r] - step * w[r]
    _upd_first(rows, m, act, ld_act, delta, ld_delta, v, alpha, <floating> 1.0, cols, K,
               p, csr_rows, acc)
    for r in range(n):
        w[r] = w[r] + v[r]


cdef void _update_bias(const Plan *p, floating *b, floating *vb, const floating *delta,
                       int ld_delta, int u0, int u1, int m) noexcept nogil:
    cdef int i, j
    cdef floating s
    cdef floating scale = <floating> (p.eta / m)
    for j in range(u0, u1):
        s = 0
        for i in range(m):
            s = s + delta[<Py_ssize_t> i * ld_delta + j]
        if p.use_momentum:
            vb[j] = <floating> p.momentum * vb[j] - scale * s
            b[j] = b[j] + vb[j]
        else:
            b[j] = b[j] - scale * s


# The sparse gather's per-thread scratch (``_sparse_scratch``), each piece on
# cache lines of its own: two column lists, a position table, the union's bits.
cdef inline Py_ssize_t _cols_stride(const Plan *p) noexcept nogil:
    return (p.sizes[0] + 15) // 16 * 16


cdef inline int32_t *_sp_cols(const Plan *p, int tid, int j) noexcept nogil:
    return p.sp_cols + (2 * tid + j) * _cols_stride(p)


cdef inline int32_t *_sp_pos(const Plan *p, int tid) noexcept nogil:
    return p.sp_pos + tid * _cols_stride(p)


cdef inline Py_ssize_t _ubits_stride(const Plan *p) noexcept nogil:
    return (p.csr.n_words + 7) // 8 * 8


cdef inline uint64_t *_sp_ubits(const Plan *p, int tid) noexcept nogil:
    return p.sp_ubits + tid * _ubits_stride(p)


cdef tuple _sparse_scratch(Plan *p, int num_threads):
    """Allocates the scratch above (when p.sparse) and points p at it; the
    arrays returned must outlive the kernels' use of p."""
    cdef Py_ssize_t n = num_threads * _cols_stride(p) if p.sparse else 1
    cols = _aligned_zeros((2 * n,), np.int32)
    pos = _aligned_zeros((n,), np.int32)
    ubits = _aligned_zeros((num_threads * _ubits_stride(p) if p.sparse else 1,), np.uint64)
    p.sp_cols = <int32_t *> cnp.PyArray_DATA(cols)
    p.sp_pos = <int32_t *> cnp.PyArray_DATA(pos)
    p.sp_ubits = <uint64_t *> cnp.PyArray_DATA(ubits)
    return cols, pos, ubits


cdef int _gather(const Plan *p, int64_t start, int m, floating *xb, int32_t *cols,
                 int tid) noexcept nogil:
    """Rows ``order[start:start + m]`` of x into ``xb`` (m x K, row-major, this
    thread's own copy: copying is cheaper than moving rows between cores);
    returns K. Dense: K = n_in. Sparse: only the K columns where one of the
    rows is nonzero, their weight rows listed in ``cols`` (with ``csr_step``
    only those: the kernels read the csr rows)."""
    cdef int i, j, K
    cdef int n_in = p.sizes[0]
    cdef const float *xs
    cdef const double *xd
    cdef floating *dst
    cdef int32_t *pos
    cdef uint64_t *ubits
    if p.sparse:
        pos = _sp_pos(p, tid)
        ubits = _sp_ubits(p, tid)
        K = nf_csr_union(m, &p.csr, p.order + start, 0, cols, pos, ubits)
        if p.csr_step:
            return K    # the kernels read the rows themselves
        if floating is float:
            nf_csr_scatter_f(0, m, &p.csr, p.order + start, 0, K, pos, ubits, xb)
        else:
            nf_csr_scatter_d(0, m, &p.csr, p.order + start, 0, K, pos, ubits, xb)
        return K
    for i in range(m):
        dst = xb + <Py_ssize_t> i * n_in
        if p.x_is_float32:
            xs = (<const float *> p.x) + p.order[start + i] * n_in
            if floating is double:
                nf_convert_f2d(n_in, xs, dst)
            else:
                for j in range(n_in):
                    dst[j] = xs[j]
        else:
            xd = (<const double *> p.x) + p.order[start + i] * n_in
            for j in range(n_in):
                dst[j] = <floating> xd[j]
    return n_in


cdef void _prefetch_batch(const Plan *p, int64_t start) noexcept nogil:
    """Start loading the rows (inputs and targets) of the batch at ``start``."""
    cdef int64_t i = start
    cdef int64_t end = min(start + p.mini_batch_size, p.n_samples)
    cdef size_t row_bytes = p.sizes[0] * (4 if p.x_is_float32 else 8)
    while i < end:
        nf_prefetch_l2(<const char *> p.y + p.order[i] * p.y_row_bytes, p.y_row_bytes)
        if p.sparse:
            nf_csr_prefetch_row(&p.csr, p.order[i])
        else:
            nf_prefetch(<const char *> p.x + p.order[i] * row_bytes, row_bytes)
        i += 1


cdef void _backward_block(const Plan *p, int l, int blk, floating **W, floating **VW,
                          floating **A, floating **D, const floating *d_next,
                          int m, bint delta=True) noexcept nogil:
    """δ^{l-1} for the inputs of block ``blk`` of layer l-1 (unless not ``delta``),
    then their rows of W^l."""
    cdef int s_prev = p.sizes[l - 1], ld_prev = p.padded[l - 1]
    cdef int ld_next = p.padded[l], nb = p.n_blocks[l]
    cdef int c0 = blk * BW, c1 = min(c0 + BW, s_prev)
    cdef int bl
    if delta:
        if floating is float:
            nf_bwd_f(m, c1 - c0, nb, W[l] + <Py_ssize_t> c0 * BW, <Py_ssize_t> s_prev * BW,
                     d_next, ld_next, A[l - 1] + c0, ld_prev, D[l - 1] + c0, ld_prev, p.act)
        else:
            nf_bwd_d(m, c1 - c0, nb, W[l] + <Py_ssize_t> c0 * BW, <Py_ssize_t> s_prev * BW,
                     d_next, ld_next, A[l - 1] + c0, ld_prev, D[l - 1] + c0, ld_prev, p.act)
    for bl in range(nb):
        _update_rows(p, W[l] + (<Py_ssize_t> bl * s_prev + c0) * BW,
                     VW[l] + (<Py_ssize_t> bl * s_prev + c0) * BW if p.use_momentum else NULL,
                     c1 - c0, A[l - 1] + c0, ld_prev, d_next + bl * BW, ld_next, m)


cdef inline void _fwd_first(const Plan *p, int m, int K, const int32_t *cols,
                            const floating *X, const int64_t *csr_rows, const floating *w,
                            floating *out, int ldo) noexcept nogil:
    """Pre-activations of one block of layer 1 from gathered inputs X (K columns,
    column k standing for weight row cols[k] when cols is given), or from the
    rows ``csr_rows`` of p.csr."""
    if csr_rows != NULL:
        if floating is float:
            nf_csr_first_f(m, &p.csr, csr_rows, 0, p.sizes[0], 1, w, out, ldo)
        else:
            nf_csr_first_d(m, &p.csr, csr_rows, 0, p.sizes[0], 1, w, out, ldo)
    elif cols == NULL:
        _fwd(m, K, X, K, w, out, ldo)
    elif floating is float:
        nf_fwd_idx_f(m, K, X, K, w, cols, out, ldo)
    else:
        nf_fwd_idx_d(m, K, X, K, w, cols, out, ldo)


cdef void _first_layer_step(const Plan *p, int blk, floating **W, floating **VW,
                            floating **B, floating **VB, const floating *xb, int K,
                            const int32_t *cols, const floating *delta, int m,
                            const floating *x_next, int K_next, const int32_t *cols_next,
                            int m_next, floating *z_next, const int64_t *rows,
                            const int64_t *rows_next) noexcept nogil:
    """Update block ``blk`` of W^1 and b^1 with this batch, then (m_next > 0) compute
    the next batch's pre-activations of the block through the new weights.

    With ``lazy_decay`` the block is stored as W^1 = s·V: the L2 decay
    W ← βW is s ← βs (instead of a pass over every row, most of which have no
    gradient in a sparse batch), the gradient step V ← V − (η/m)/s·∇ touches
    only the rows it changes, and the pre-activations are s·(V x). V takes s
    in whenever s leaves [1e-3, 1e3], and at the end of the epoch.

    With ``csr_step`` the inputs are the csr rows ``rows`` and ``rows_next``
    (p.order's; NULL without it), not the gathered batches.

    (The two sweeps over the block stay two: one fused loop needs more registers
    than AVX-512 has, and spills.)"""
    cdef int n_in = p.sizes[0], ld1 = p.padded[1]
    cdef floating *w = W[1] + <Py_ssize_t> blk * n_in * BW
    cdef floating *acc = NULL
    cdef double scale = 1.0
    cdef int i
    if p.csr_step:
        acc = <floating *> p.sp_acc + <Py_ssize_t> blk * n_in * BW
    if p.lazy_decay:
        scale = p.w1_scale[8 * blk] * p.decay
        if not (1e-3 <= scale <= 1e3):
            _scale(<Py_ssize_t> n_in * BW, w, scale)
            scale = 1.0
        p.w1_scale[8 * blk] = scale
        _upd_first(n_in, m, xb, K, delta + blk * BW, ld1, w, <floating> (-p.eta / m / scale),
                   <floating> 1.0, cols, K, p, rows, acc)
    else:
        _update_rows(p, w, VW[1] + <Py_ssize_t> blk * n_in * BW if p.use_momentum else NULL,
                     n_in, xb, K, delta + blk * BW, ld1, m, cols, K, rows, acc)
    if m_next > 0:
        _fwd_first(p, m_next, K_next, cols_next, x_next, rows_next, w, z_next + blk * BW, ld1)
        if p.lazy_decay and scale != 1.0:
            for i in range(m_next):
                _scale(BW, z_next + <Py_ssize_t> i * ld1 + blk * BW, scale)
    _update_bias(p, B[1], VB[1], delta, ld1, blk * BW, min(blk * BW + BW, p.sizes[1]), m)


cdef struct Step:
    # One thread's place in the epoch (``_epoch_thread``).
    int tid
    int sense                       # its side of the team's barrier
    int64_t start                   # the batch's first row in p.order
    int m, m_next                   # rows of this batch and of the next (0: none)
    int cur, nxt                    # the double buffers holding the two
    int K[2]                        # columns of the two gathered batches
    int32_t *cols[2]                # their weight rows (sparse), else NULL


cdef void _prologue(const Plan *p, Step *s, floating **W, floating **A,
                    floating **xbuf) noexcept nogil:
    """Before the first batch: its inputs and, with hidden layers, this thread's
    blocks of its layer-1 pre-activations (then what ``_first_layer_steps``
    leaves for every later batch). No barrier: nothing here is shared."""
    cdef int blk = s.tid
    s.m = <int> min(<int64_t> p.mini_batch_size, p.n_samples)
    s.K[0] = _gather(p, 0, s.m, xbuf[0], s.cols[0], s.tid)
    if p.n_layers > 1:
        while blk < p.n_blocks[1]:
            _fwd_first(p, s.m, s.K[0], s.cols[0], xbuf[0], p.order if p.csr_step else NULL,
                       W[1] + <Py_ssize_t> blk * p.sizes[0] * BW, A[1] + blk * BW, p.padded[1])
            blk += p.n_threads


cdef void _gather_next(const Plan *p, Step *s, int64_t batch, int64_t n_batches,
                       floating **xbuf) noexcept nogil:
    """The next batch's inputs into the other buffer, and a prefetch of the one
    after: before the barrier, where a thread may wait anyway."""
    cdef int mbs = p.mini_batch_size
    s.m_next = 0
    if batch + 1 < n_batches:
        s.m_next = <int> min(<int64_t> mbs, p.n_samples - s.start - mbs)
        s.K[s.nxt] = _gather(p, s.start + mbs, s.m_next, xbuf[s.nxt], s.cols[s.nxt], s.tid)
        if batch + 2 < n_batches:
            _prefetch_batch(p, s.start + 2 * mbs)


cdef void _hidden_forward(const Plan *p, Step *s, floating **W, floating **B,
                          floating **A) noexcept nogil:
    """Hidden layers, by blocks of 16 units (block b is thread b % n_threads'):
    layer 1's activation over the pre-activations the previous step left, then
    each further layer's product and activation. Each layer ends at the team's
    barrier: the next reads every block."""
    cdef int L = p.n_layers, nt = p.n_threads, blk = s.tid, l
    while blk < p.n_blocks[1]:
        _act_block(s.m, A[1], p.padded[1], B[1], blk, p.sizes[1], p.act)
        blk += nt
    if nt > 1:
        nf_barrier_wait(p.barrier, &s.sense)
    for l in range(2, L):
        blk = s.tid
        while blk < p.n_blocks[l]:
            _hidden_block(W[l] + <Py_ssize_t> blk * p.sizes[l - 1] * BW, B[l], A[l - 1],
                          p.sizes[l - 1], p.padded[l - 1], A[l], p.padded[l], blk, p.sizes[l],
                          s.m, p.act)
            blk += nt
        if nt > 1:
            nf_barrier_wait(p.barrier, &s.sense)


cdef void _output_delta(const Plan *p, Step *s, floating **W, floating **B,
                        const floating *a_prev, floating *out, floating *dout,
                        const floating *Y) noexcept nogil:
    """The output layer and its delta for the cost, privately in every thread
    (on its own copy of W^L, b^L): no barrier."""
    cdef int L = p.n_layers, n_out = p.sizes[L], ld_out = p.padded[L], i, j
    cdef const floating *y
    cdef floating *o
    cdef floating *d
    _output_layer(p, W[L], B[L], a_prev, p.padded[L - 1], s.m, out)
    for i in range(s.m):
        o = out + <Py_ssize_t> i * ld_out
        d = dout + <Py_ssize_t> i * ld_out
        y = Y + p.order[s.start + i] * n_out
        if p.cost == QUADRATIC:
            for j in range(n_out):
                d[j] = (o[j] - y[j]) * (o[j] * (1 - o[j]))
        else:
            for j in range(n_out):
                d[j] = o[j] - y[j]
        for j in range(n_out, ld_out):
            d[j] = 0


cdef void _backward(const Plan *p, Step *s, floating **W, floating **B, floating **VW,
                    floating **VB, floating **A, floating **D,
                    const floating *dout) noexcept nogil:
    """δ^{l-1} and the matching rows of W^l, l = L..2, by blocks of layer l-1:
    first the private output layer (δ^{L-1} of this thread's blocks, then every
    row of its W^L), then the shared layers by their owners, biases too. A
    barrier after each layer but the last: W^1's step reads only this thread's
    δ^1 blocks."""
    cdef int L = p.n_layers, nt = p.n_threads, l, blk
    cdef const floating *d_next = dout
    for l in range(L, 1, -1):
        if l == L:
            for blk in range(p.n_blocks[L - 1]):
                _backward_block(p, L, blk, W, VW, A, D, d_next, s.m, blk % nt == s.tid)
            _update_bias(p, B[L], VB[L], dout, p.padded[L], 0, p.sizes[L], s.m)
        else:
            blk = s.tid
            while blk < p.n_blocks[l - 1]:
                _backward_block(p, l, blk, W, VW, A, D, d_next, s.m)
                blk += nt
            blk = s.tid
            while blk < p.n_blocks[l]:
                _update_bias(p, B[l], VB[l], D[l], p.padded[l], blk * BW,
                             min(blk * BW + BW, p.sizes[l]), s.m)
                blk += nt
        if nt > 1 and l > 2:
            nf_barrier_wait(p.barrier, &s.sense)
        d_next = D[l - 1]


cdef void _first_layer_steps(const Plan *p, Step *s, floating **W, floating **VW,
                             floating **B, floating **VB, floating **D, floating **xbuf,
                             floating **a1) noexcept nogil:
    """This thread's blocks of W^1 and b^1: updated with this batch, then the
    next batch's pre-activations through them (``_first_layer_step``). No
    barrier: every thread has its own copy of the inputs and of W^L; the next
    pre-activations go to the other A^1 buffer (another thread may still be
    reading this one); and the updates of W^2..W^{L-1} are ordered before
    their next reads by the next batch's first barrier."""
    cdef int blk = s.tid
    cdef const int64_t *rows = p.order + s.start if p.csr_step else NULL
    cdef const int64_t *rows_next = rows + p.mini_batch_size if rows and s.m_next > 0 else NULL
    while blk < p.n_blocks[1]:
        _first_layer_step(p, blk, W, VW, B, VB, xbuf[s.cur], s.K[s.cur], s.cols[s.cur], D[1],
                          s.m, xbuf[s.nxt], s.K[s.nxt], s.cols[s.nxt], s.m_next, a1[s.nxt],
                          rows, rows_next)
        blk += p.n_threads


cdef void _epoch_thread(const Plan *p, floating **W, floating **B, floating **VW,
                        floating **VB, floating **A, floating **D, floating **xbuf,
                        floating *a1_alt, floating *out_all, floating *dout_all,
                        const floating *Y, int tid) noexcept nogil:
    """One thread's share of the epoch (see the module docstring), phase by
    phase: ``_prologue``, then per batch ``_gather_next``, ``_hidden_forward``,
    ``_output_delta``, ``_backward`` and ``_first_layer_steps``.

    The tables W, B, VW, VB, A, D are this thread's: with hidden layers, the
    output layer (W^L, b^L and their velocities) is a private copy that every
    thread updates in full (it is small), so no thread waits for another's
    rows of it: one barrier per mini-batch for one hidden layer. Layer 1's
    activations alternate between two buffers, A[1] and a1_alt, batch by batch.
    """
    cdef int L = p.n_layers, mbs = p.mini_batch_size, ld_out = p.padded[L], blk
    cdef floating *out = out_all + <Py_ssize_t> tid * ld_out * mbs
    cdef floating *dout = dout_all + <Py_ssize_t> tid * ld_out * mbs
    cdef int64_t batch, n_batches = (p.n_samples + mbs - 1) // mbs
    cdef unsigned int fp_state = 0
    cdef floating *a1[2]
    cdef Step s
    a1[0] = A[1]
    a1[1] = a1_alt
    xbuf = xbuf + 2 * tid           # this thread's two input buffers
    s.tid = tid
    s.sense = 0
    for blk in range(2):
        s.cols[blk] = _sp_cols(p, tid, blk) if p.sparse else NULL
    if floating is float:
        fp_state = nf_flush_denormals_begin()   # see src_c/dense.h
    _prologue(p, &s, W, A, xbuf)
    for batch in range(n_batches):
        s.start = batch * mbs
        s.m = <int> min(<int64_t> mbs, p.n_samples - s.start)
        s.cur = batch & 1
        s.nxt = 1 - s.cur
        A[1] = a1[s.cur]
        _gather_next(p, &s, batch, n_batches, xbuf)
        if L > 1:
            _hidden_forward(p, &s, W, B, A)
        _output_delta(p, &s, W, B, A[L - 1] if L > 1 else xbuf[s.cur], out, dout, Y)
        if L == 1:
            # (One thread: a network without hidden layers has nothing to share.)
            for blk in range(p.n_blocks[1]):
                _update_rows(p, W[1] + <Py_ssize_t> blk * p.sizes[0] * BW,
                             VW[1] + <Py_ssize_t> blk * p.sizes[0] * BW if p.use_momentum else NULL,
                             p.sizes[0], xbuf[s.cur], p.sizes[0], dout + blk * BW, ld_out, s.m)
            _update_bias(p, B[1], VB[1], dout, ld_out, 0, p.sizes[1], s.m)
            continue
        _backward(p, &s, W, B, VW, VB, A, D, dout)
        _first_layer_steps(p, &s, W, VW, B, VB, D, xbuf, a1)
    if p.lazy_decay:
        blk = tid
        while blk < p.n_blocks[1]:
            if p.w1_scale[8 * blk] != 1.0:
                _scale(<Py_ssize_t> p.sizes[0] * BW, W[1] + <Py_ssize_t> blk * p.sizes[0] * BW,
                       p.w1_scale[8 * blk])
            blk += p.n_threads
    if floating is float:
        nf_flush_denormals_end(fp_state)


cdef int _run_epoch(Plan *p, list weights, list biases, list vw, list vb, list top,
                    list a_bufs, cnp.ndarray a1_alt, list d_bufs, list x_bufs,
                    cnp.ndarray out_all, cnp.ndarray dout_all, cnp.ndarray Y,
                    floating dummy) except -1:
    """Runs the epoch; ``top[tid]`` = (W^L, b^L, VW^L, VB^L) of thread tid (L > 1)."""
    cdef int L = p.n_layers
    cdef int nt = p.n_threads
    cdef int l, tid
    cdef Py_ssize_t per = 6 * (L + 1)         # pointer tables per thread
    cdef floating **T = <floating **> malloc(sizeof(floating *) * (per * nt + 2 * nt))
    if T == NULL:
        raise MemoryError()
    cdef floating **X = T + per * nt
    cdef floating **W
    cdef floating *outp = <floating *> cnp.PyArray_DATA(out_all)
    cdef floating *doutp = <floating *> cnp.PyArray_DATA(dout_all)
    cdef floating *a1p = <floating *> cnp.PyArray_DATA(a1_alt)
    cdef const floating *Yp = <const floating *> cnp.PyArray_DATA(Y)
    cdef nf_barrier barrier
    nf_barrier_init(&barrier, nt, NF_DENSE_SPINS)
    p.barrier = &barrier
    try:
        for tid in range(nt):
            # Table of thread tid: W, B, VW, VB, A, D, each L + 1 long.
            W = T + per * tid
            for l in range(per):
                W[l] = NULL
            for l in range(1, L + 1):
                W[l] = <floating *> cnp.PyArray_DATA(weights[l - 1])
                W[(L + 1) + l] = <floating *> cnp.PyArray_DATA(biases[l - 1])
                if p.use_momentum:
                    W[2 * (L + 1) + l] = <floating *> cnp.PyArray_DATA(vw[l - 1])
                    W[3 * (L + 1) + l] = <floating *> cnp.PyArray_DATA(vb[l - 1])
                if l < L:
                    W[4 * (L + 1) + l] = <floating *> cnp.PyArray_DATA(a_bufs[l - 1])
                    W[5 * (L + 1) + l] = <floating *> cnp.PyArray_DATA(d_bufs[l - 1])
            if L > 1:
                W[L] = <floating *> cnp.PyArray_DATA(top[tid][0])
                W[(L + 1) + L] = <floating *> cnp.PyArray_DATA(top[tid][1])
                if p.use_momentum:
                    W[2 * (L + 1) + L] = <floating *> cnp.PyArray_DATA(top[tid][2])
                    W[3 * (L + 1) + L] = <floating *> cnp.PyArray_DATA(top[tid][3])
        for l in range(2 * nt):
            X[l] = <floating *> cnp.PyArray_DATA(x_bufs[l])
        if nt == 1:
            with nogil:
                _epoch_thread(p, T, T + (L + 1), T + 2 * (L + 1), T + 3 * (L + 1),
                              T + 4 * (L + 1), T + 5 * (L + 1), X, a1p, outp, doutp, Yp, 0)
        else:
            with nogil, parallel(num_threads=nt):
                tid = omp_get_thread_num()
                W = T + per * tid
                _epoch_thread(p, W, W + (L + 1), W + 2 * (L + 1), W + 3 * (L + 1),
                              W + 4 * (L + 1), W + 5 * (L + 1), X, a1p, outp, doutp, Yp, tid)
    finally:
        free(T)
    return 0


cdef class SparseRows:
    """The rows of a (n, n_in) input matrix as compressed sparse rows, for the
    first layer of ``train_epoch`` and ``forward``: only nonzero inputs are
    read (MNIST images are ~80% zeros), with the same results as the dense rows.

    Made by :func:`sparse_rows` only, so its arrays are consistent by
    construction: ``ptr`` (n + 1,) int64, ``idx`` (nnz,) int32 columns ascending
    within a row, ``val`` (nnz + 16,) the matrix's dtype (16 zeros after the
    values), ``bits`` (n, ceil(n_in / 64))
    uint64 with bit k of a row set where column k is nonzero. All read-only.
    """
    cdef readonly object ptr, idx, val, bits
    cdef readonly Py_ssize_t n_rows, n_cols

    @property
    def nnz(self):
        return int(self.idx.shape[0])

    @property
    def density(self):
        """Fraction of nonzero entries."""
        return self.nnz / max(1, self.n_rows * self.n_cols)

    def __repr__(self):
        return "SparseRows(%d x %d, %s, density %.3f)" % (self.n_rows, self.n_cols,
                                                          self.val.dtype, self.density)


cdef int _sparse_fill(const floating[:, ::1] X, const uint64_t[:, ::1] bits,
                      const int64_t[::1] ptr, int32_t[::1] idx, floating[::1] val,
                      int num_threads) noexcept nogil:
    """Every row's nonzeros, rows in parallel; 1 if a row's count was wrong."""
    cdef Py_ssize_t i
    cdef int wrong = 0
    for i in prange(X.shape[0], schedule="static", num_threads=num_threads):
        if floating is float:
            wrong |= nf_csr_fill_row_f(&X[i, 0], X.shape[1], &bits[i, 0], <int> bits.shape[1],
                                       ptr[i], ptr[i + 1], &idx[0], &val[0])
        else:
            wrong |= nf_csr_fill_row_d(&X[i, 0], X.shape[1], &bits[i, 0], <int> bits.shape[1],
                                       ptr[i], ptr[i + 1], &idx[0], &val[0])
    return wrong


cdef void _count_bits(const uint64_t[:, ::1] bits, Py_ssize_t n_cols,
                      int64_t[::1] counts) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(bits.shape[0]):
        counts[i] = nf_csr_count_row(n_cols, &bits[i, 0], <int> bits.shape[1])


def sparse_rows(X, max_density=None, row_bits=None, int num_threads=1):
    """:class:`SparseRows` of a 2-D float32/float64 array (native byte order), or
    None when more than ``max_density`` of its entries are nonzero.

    ``row_bits``: which entries of X are nonzero, when the caller has them
    already (``_packing.scan_rows(X)``'s bits; they become the result's
    ``bits``). X is read on ``num_threads`` threads.
    """
    from nndl_fast import _packing
    from nndl_fast._datacache import fresh_zeros
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype not in (np.float32, np.float64):
        raise ValueError("X: expected a 2-D float32/float64 array, got %s %s"
                         % (getattr(X, "dtype", type(X).__name__), getattr(X, "shape", "")))
    if X.shape[1] >= 2 ** 31:
        raise ValueError("X has %d columns, expected fewer than 2**31" % X.shape[1])
    if num_threads < 1:
        raise ValueError("num_threads must be >= 1, got %d" % num_threads)
    X = np.ascontiguousarray(X)
    if not X.dtype.isnative:
        X = X.astype(X.dtype.newbyteorder("="))
    cdef Py_ssize_t n = X.shape[0]
    cdef Py_ssize_t n_words = max(1, (X.shape[1] + 63) // 64)
    if row_bits is None:
        bits = _packing.scan_rows(X, num_threads)[1]
    else:
        bits = row_bits
        if not isinstance(bits, np.ndarray) or bits.shape != (n, n_words) \
                or bits.dtype != np.uint64 or not bits.flags.c_contiguous \
                or not bits.dtype.isnative:
            raise ValueError("row_bits: expected a C-contiguous uint64 array of shape "
                             "(%d, %d), got %s %s" % (n, n_words,
                                                      getattr(bits, "dtype", type(bits)),
                                                      getattr(bits, "shape", "")))
        if X.shape[1] % 64 and (bits[:, -1] >> (X.shape[1] % 64)).any():
            raise ValueError("row_bits: bits set past column %d" % (X.shape[1] - 1))
        if bits.flags.writeable:
            bits = bits.copy()
    counts = np.empty(n, np.int64)
    _count_bits(bits, X.shape[1], counts)
    ptr = np.empty(n + 1, np.int64)
    ptr[0] = 0
    np.cumsum(counts, out=ptr[1:])
    cdef int64_t nnz = ptr[n]
    if max_density is not None and nnz > max_density * X.size:
        return None
    # 16 zeros after the values let kernels load whole vectors past a row's end.
    idx = fresh_zeros(nnz + 16, np.int32)
    val = fresh_zeros(nnz + 16, X.dtype)
    cdef int wrong = 0
    if n and X.shape[1]:
        if X.dtype == np.float32:
            wrong = _sparse_fill[float](X, bits, ptr, idx, val, num_threads)
        else:
            wrong = _sparse_fill[double](X, bits, ptr, idx, val, num_threads)
    if wrong:
        raise RuntimeError("sparse_rows: the rows' nonzero counts changed while they were read")
    idx = idx[:nnz]
    cdef SparseRows out = SparseRows.__new__(SparseRows)
    for a in (ptr, idx, val, bits):
        a.flags.writeable = False
    out.ptr, out.idx, out.val, out.bits = ptr, idx, val, bits
    out.n_rows, out.n_cols = X.shape[0], X.shape[1]
    return out


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _count_correct(const double[:, ::1] a, const int64_t[::1] labels,
                               int num_threads) noexcept nogil:
    cdef Py_ssize_t i, j, k = a.shape[1], count = 0
    cdef int64_t c
    cdef double t, v
    cdef bint ok
    for i in prange(a.shape[0], schedule="static", num_threads=num_threads):
        c = labels[i]
        t = a[i, c]
        ok = True
        # Every row runs all k columns (loops that end at the label would
        # mispredict their exits): label c is the argmax when every entry
        # before it is smaller and every one after it no larger (a NaN
        # anywhere would be the argmax) or, for a NaN at c, when no NaN comes
        # before it.
        if t == t:
            for j in range(k):
                v = a[i, j]
                ok = ok & ((v < t) | (j >= c)) & ((v <= t) | (j <= c))
        else:
            for j in range(k):
                v = a[i, j]
                ok = ok & ((v == v) | (j >= c))
        count += ok
    return count


def count_correct(A, labels, int num_threads=1):
    """How many rows of A have their argmax (``np.argmax(A, axis=1)``: the first
    of equal maxima, the first NaN of a row that has one) equal to ``labels``.

    ``A``: 2-D float64 with at least one column; ``labels``: int64 classes in
    ``0 .. A.shape[1] - 1``, one per row. Each row's comparisons are independent
    of each other, where finding its argmax is a chain of them. Read on
    ``num_threads`` threads.
    """
    if not isinstance(A, np.ndarray) or A.ndim != 2 or A.dtype != np.float64:
        raise TypeError("A: expected a 2-D float64 array, got %s %s"
                        % (getattr(A, "dtype", type(A).__name__), getattr(A, "shape", "")))
    if A.shape[1] == 0:
        raise ValueError("A has no columns: an argmax needs at least one")
    labels = np.asarray(labels)
    if labels.shape != (A.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError("labels: expected %d int labels, got %s %s"
                         % (A.shape[0], labels.dtype, labels.shape))
    if labels.size and (labels.min() < 0 or labels.max() >= A.shape[1]):
        raise ValueError("labels: expected classes in 0..%d, got %d..%d"
                         % (A.shape[1] - 1, labels.min(), labels.max()))
    if num_threads < 1:
        raise ValueError("num_threads must be >= 1, got %d" % num_threads)
    if A.shape[0] < 4096:
        num_threads = 1                     # less work than a thread team's start
    return int(_count_correct(np.ascontiguousarray(A, dtype=np.float64),
                              np.ascontiguousarray(labels, dtype=np.int64), num_threads))


cdef void _set_sparse(Plan *p, SparseRows xs):
    p.sparse = True
    p.csr.ptr = <const int64_t *> cnp.PyArray_DATA(xs.ptr)
    p.csr.idx = <const int32_t *> cnp.PyArray_DATA(xs.idx)
    p.csr.val = cnp.PyArray_DATA(xs.val)
    p.csr.val_f32 = xs.val.dtype == np.float32
    p.csr.bits = <const uint64_t *> cnp.PyArray_DATA(xs.bits)
    p.csr.n_words = <int> xs.bits.shape[1]


def _check_sparse(X_sparse, Py_ssize_t n_rows, Py_ssize_t n_cols):
    if not isinstance(X_sparse, SparseRows):
        raise TypeError("X_sparse: expected SparseRows from sparse_rows(X), got %s"
                        % type(X_sparse).__name__)
    if (X_sparse.n_rows, X_sparse.n_cols) != (n_rows, n_cols):
        raise ValueError("X_sparse: expected the rows of a (%d, %d) matrix, got (%d, %d)"
                         % (n_rows, n_cols, X_sparse.n_rows, X_sparse.n_cols))


cdef void _set_layers(Plan *p, list sizes):
    """Layer sizes, their 16-unit blocks and padded widths (the input is not padded)."""
    cdef int l
    p.n_layers = len(sizes) - 1
    for l in range(p.n_layers + 1):
        p.sizes[l] = sizes[l]
        p.n_blocks[l] = (sizes[l] + BW - 1) // BW
        p.padded[l] = p.n_blocks[l] * BW if l > 0 else sizes[0]


def _aligned_zeros(shape, dtype):
    """Zeros whose data start on a 64-byte cache line: buffers that threads
    share by rows or blocks then never share a line across a boundary that
    is a multiple of 64 bytes (no false sharing)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(n + 64, np.uint8)
    off = (-raw.ctypes.data) % 64
    return raw[off:off + n].view(dtype).reshape(shape)


def _aligned_copy(a):
    out = _aligned_zeros(a.shape, a.dtype)
    out[...] = a
    return out


def pack_weights(w):
    """(n_out, n_in) → (n_blocks, n_in, 16) blocks of 16 output units, zero-padded."""
    n_out, n_in = w.shape
    nb = (n_out + BW - 1) // BW
    out = _aligned_zeros((nb, n_in, BW), w.dtype)
    padded = np.zeros((nb * BW, n_in), dtype=w.dtype)
    padded[:n_out] = w
    out[...] = padded.reshape(nb, BW, n_in).transpose(0, 2, 1)
    return out


def unpack_weights(wp, int n_out):
    """Inverse of pack_weights: (n_blocks, n_in, 16) → (n_out, n_in)."""
    nb, n_in, _ = wp.shape
    return wp.transpose(0, 2, 1).reshape(nb * BW, n_in)[:n_out]


def pack_bias(b):
    n_out = b.shape[0]
    out = _aligned_zeros((((n_out + BW - 1) // BW) * BW,), b.dtype)
    out[:n_out] = b.reshape(-1)
    return out


def _check(arr, shape, dtype, what):
    if not isinstance(arr, np.ndarray) or arr.dtype != dtype or tuple(arr.shape) != tuple(shape) \
            or not arr.flags.c_contiguous or not arr.flags.writeable:
        raise ValueError("%s: expected a writeable C-contiguous %s array of shape %s, got %s"
                         % (what, np.dtype(dtype).name, tuple(shape),
                            "%s %s" % (getattr(arr, "dtype", type(arr).__name__),
                                       getattr(arr, "shape", ""))))


def _check_layers(list weights, list biases, dtype=None):
    """Validated sizes from weights/biases lists; returns (sizes, dtype)."""
    cdef int L = len(weights)
    if L < 1 or L > MAX_LAYERS:
        raise ValueError("expected 1 to %d weight layers, got %d" % (MAX_LAYERS, L))
    if len(biases) != L:
        raise ValueError("expected %d bias vectors, got %d" % (L, len(biases)))
    if dtype is None:
        dtype = weights[0].dtype if isinstance(weights[0], np.ndarray) else None
    if dtype not in (np.float32, np.float64):
        raise ValueError("weights must be float32 or float64 arrays, got %r" % (dtype,))
    if not isinstance(weights[0], np.ndarray) or weights[0].ndim != 2:
        raise ValueError("weights[0] must be a 2-D array")
    sizes = [weights[0].shape[1]]
    for l in range(L):
        w = weights[l]
        if not isinstance(w, np.ndarray) or w.ndim != 2:
            raise ValueError("weights[%d] must be a 2-D array" % l)
        _check(w, (w.shape[0], sizes[l]), dtype, "weights[%d]" % l)
        sizes.append(w.shape[0])
        _check(biases[l], (sizes[l + 1], 1), dtype, "biases[%d]" % l)
    if min(sizes) < 1:
        raise ValueError("layer sizes must be >= 1, got %s" % sizes)
    return sizes, np.dtype(dtype)


def train_epoch(X, Y, order, list weights, list biases, int mini_batch_size, double eta,
                double lmbda=0.0, double n_total=1.0, int cost=QUADRATIC, int reg=L2,
                double momentum=0.0, list velocities_w=None, list velocities_b=None,
                int num_threads=1, X_sparse=None, int activation=NF_SIGMOID):
    """One epoch of mini-batch SGD over ``X[order]``, updating the weights in place.

    Parameters
    ----------
    X : (n_samples, n_in) float32 or float64, C-contiguous         # IN
    Y : (n_samples, n_out) compute dtype, C-contiguous (targets)    # IN
    order : (n_epoch,) int64, rows of X in training order           # IN
    weights : list of (n_out_l, n_in_l) compute dtype, C-contiguous # IN/OUT
    biases : list of (n_out_l, 1) compute dtype                      # IN/OUT
    mini_batch_size, eta, lmbda, n_total : as the book's SGD (n_total is n)
    cost : QUADRATIC, CROSS_ENTROPY or LOG_LIKELIHOOD
    reg : L2 or L1; momentum : μ (0 = plain SGD, the book's)
    velocities_w, velocities_b : like weights/biases; required when momentum != 0  # IN/OUT
    num_threads : OpenMP threads (results do not depend on it)
    X_sparse : ``sparse_rows(X)`` or None; with a hidden layer, the first layer
        then reads only the nonzero inputs (same results, less work when most
        inputs are 0)
    activation : the hidden layers' activation code (``ACT_CODES``); the
        output layer is sigmoid, or softmax for LOG_LIKELIHOOD
    """
    cdef Plan p
    cdef int L = len(weights)
    cdef int l
    if mini_batch_size < 1:
        raise ValueError("mini_batch_size must be >= 1, got %d" % mini_batch_size)
    if num_threads < 1:
        raise ValueError("num_threads must be >= 1, got %d" % num_threads)
    if cost not in (QUADRATIC, CROSS_ENTROPY, LOG_LIKELIHOOD):
        raise ValueError("unknown cost code %d" % cost)
    if reg not in (L2, L1):
        raise ValueError("unknown regularisation code %d" % reg)
    _check_act(activation, "activation")
    sizes, dtype = _check_layers(weights, biases)
    _set_layers(&p, sizes)
    p.act = activation
    p.out_act = NF_SIGMOID
    if not (isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype in (np.float32, np.float64)
            and X.flags.c_contiguous and X.shape[1] == p.sizes[0]):
        raise ValueError("X: expected a C-contiguous float32/float64 array (n, %d), got %s %s"
                         % (p.sizes[0], getattr(X, "dtype", type(X)), getattr(X, "shape", "")))
    if not (isinstance(Y, np.ndarray) and Y.dtype == dtype and Y.flags.c_contiguous
            and Y.shape == (X.shape[0], p.sizes[L])):
        raise ValueError("Y: expected a C-contiguous %s array %s, got %s %s"
                         % (np.dtype(dtype).name, (X.shape[0], p.sizes[L]),
                            getattr(Y, "dtype", type(Y)), getattr(Y, "shape", "")))
    order = np.ascontiguousarray(order, dtype=np.int64)
    if order.ndim != 1:
        raise ValueError("order must be 1-D, got shape %s" % (order.shape,))
    if order.shape[0] and (order.min() < 0 or order.max() >= X.shape[0]):
        raise ValueError("order holds row indices outside [0, %d)" % X.shape[0])
    p.use_momentum = momentum != 0.0
    if p.use_momentum:
        if velocities_w is None or velocities_b is None or len(velocities_w) != L \
                or len(velocities_b) != L:
            raise ValueError("momentum needs velocities_w and velocities_b like the weights")
        for l in range(L):
            _check(velocities_w[l], weights[l].shape, dtype, "velocities_w[%d]" % l)
            _check(velocities_b[l], biases[l].shape, dtype, "velocities_b[%d]" % l)
    p.sparse = False
    if X_sparse is not None:
        _check_sparse(X_sparse, X.shape[0], p.sizes[0])
        if L > 1:
            _set_sparse(&p, X_sparse)
    p.csr_step = p.sparse and nf_dense_csr_step(dtype == np.float32) != 0
    p.sp_acc = NULL
    if order.shape[0] == 0:
        return
    if L == 1:
        num_threads = 1   # the output layer alone: nothing to share out
    p.n_threads = num_threads
    p.n_samples = order.shape[0]
    p.mini_batch_size = <int> min(<int64_t> mini_batch_size, p.n_samples)
    p.cost = cost
    p.reg = reg
    p.x_is_float32 = X.dtype == np.float32
    p.x = cnp.PyArray_DATA(X)
    p.order = <const int64_t *> cnp.PyArray_DATA(order)
    p.y = cnp.PyArray_DATA(Y)
    p.y_row_bytes = p.sizes[L] * Y.dtype.itemsize
    p.eta = eta
    p.reg_step = eta * (lmbda / n_total)
    p.decay = 1 - eta * (lmbda / n_total)
    p.momentum = momentum
    mbs = p.mini_batch_size
    packed_w = [pack_weights(w) for w in weights]
    packed_b = [pack_bias(b) for b in biases]
    packed_vw = [pack_weights(v) for v in velocities_w] if p.use_momentum else None
    packed_vb = [pack_bias(v) for v in velocities_b] if p.use_momentum else None
    a_bufs = [_aligned_zeros((mbs, p.padded[l]), dtype) for l in range(1, L)]
    cdef cnp.ndarray a1_alt = _aligned_zeros((mbs, p.padded[1]), dtype)
    # With hidden layers every thread has its own copy of the output layer;
    # thread 0's are the arrays unpacked below.
    top = []
    if L > 1:
        top.append((packed_w[L - 1], packed_b[L - 1],
                    packed_vw[L - 1] if p.use_momentum else None,
                    packed_vb[L - 1] if p.use_momentum else None))
        for _ in range(1, num_threads):
            top.append(tuple(_aligned_copy(a) if a is not None else None for a in top[0]))
    d_bufs = [_aligned_zeros((mbs, p.padded[l]), dtype) for l in range(1, L)]
    # Per thread: two input buffers, for sparse inputs their column lists and
    # the gather's scratch.
    x_bufs = [_aligned_zeros((mbs, p.sizes[0]), dtype) for _ in range(2 * num_threads)]
    sp_scratch = _sparse_scratch(&p, num_threads)
    sp_acc = None
    if p.csr_step:
        sp_acc = _aligned_zeros((p.n_blocks[1], p.sizes[0], BW), dtype)
        p.sp_acc = cnp.PyArray_DATA(sp_acc)
    # Plain L2 (no momentum): W^1's decay as a factor per block (8 doubles
    # apart: each on its owner's cache line).
    p.lazy_decay = L > 1 and not p.use_momentum and reg == L2 and p.decay != 1.0
    w1_scale = _aligned_zeros((8 * p.n_blocks[1],), np.float64)
    w1_scale[...] = 1.0
    p.w1_scale = <double *> cnp.PyArray_DATA(w1_scale)
    cdef cnp.ndarray out_all = _aligned_zeros((num_threads, mbs, p.padded[L]), dtype)
    cdef cnp.ndarray dout_all = _aligned_zeros((num_threads, mbs, p.padded[L]), dtype)
    cdef cnp.ndarray Y_arr = Y
    if dtype == np.float64:
        _run_epoch(&p, packed_w, packed_b, packed_vw, packed_vb, top, a_bufs, a1_alt, d_bufs,
                   x_bufs, out_all, dout_all, Y_arr, <double> 0)
    else:
        _run_epoch(&p, packed_w, packed_b, packed_vw, packed_vb, top, a_bufs, a1_alt, d_bufs,
                   x_bufs, out_all, dout_all, Y_arr, <float> 0)
    for l in range(L):
        weights[l][...] = unpack_weights(packed_w[l], p.sizes[l + 1])
        biases[l][:, 0] = packed_b[l][:p.sizes[l + 1]]
        if p.use_momentum:
            velocities_w[l][...] = unpack_weights(packed_vw[l], p.sizes[l + 1])
            velocities_b[l][:, 0] = packed_vb[l][:p.sizes[l + 1]]


cdef void _forward_chunk(const Plan *p, floating **W, floating **B, const floating *x,
                         int m, floating *scratch, floating *out,
                         int64_t first=0) noexcept nogil:
    """Outputs of m examples: rows of ``x``, or rows first.. of csr when sparse."""
    cdef int L = p.n_layers
    cdef int l, blk, i, j, ld_prev = p.sizes[0], max_pad = 0
    cdef const floating *a_prev = x
    cdef floating *cur
    cdef floating *bufs[2]
    for l in range(1, L + 1):
        if p.padded[l] > max_pad:
            max_pad = p.padded[l]
    bufs[0] = scratch
    bufs[1] = scratch + <Py_ssize_t> max_pad * m
    cur = bufs[1]
    for l in range(1, L + 1):
        cur = bufs[l & 1]
        if l == L and not (l == 1 and p.sparse):
            _output_layer(p, W[L], B[L], a_prev, ld_prev, m, cur)
            break
        if l == 1 and p.sparse:
            # (A sparse first layer is not softmax: forward() checks.)
            if floating is float:
                nf_csr_first_f(m, &p.csr, NULL, first, p.sizes[0], p.n_blocks[1], W[1], cur, p.padded[1])
            else:
                nf_csr_first_d(m, &p.csr, NULL, first, p.sizes[0], p.n_blocks[1], W[1], cur, p.padded[1])
        for blk in range(p.n_blocks[l]):
            if l == 1 and p.sparse:
                _act_block(m, cur, p.padded[1], B[1], blk, p.sizes[1],
                           p.act if L > 1 else p.out_act)
            else:
                _hidden_block(W[l] + <Py_ssize_t> blk * p.sizes[l - 1] * BW, B[l], a_prev,
                              p.sizes[l - 1], ld_prev, cur, p.padded[l], blk, p.sizes[l], m,
                              p.act)
        a_prev = cur
        ld_prev = p.padded[l]
    for i in range(m):
        for j in range(p.sizes[L]):
            out[<Py_ssize_t> i * p.sizes[L] + j] = cur[<Py_ssize_t> i * p.padded[L] + j]


cdef void _convert_rows(const void *src, bint src_f32, Py_ssize_t n_values,
                        floating *dst) noexcept nogil:
    """Inputs of another float type into the compute type (exact for float → double)."""
    cdef Py_ssize_t j
    if src_f32:
        if floating is double:
            nf_convert_f2d(<int> n_values, <const float *> src, dst)
        else:
            for j in range(n_values):
                dst[j] = (<const float *> src)[j]
    else:
        for j in range(n_values):
            dst[j] = <floating> (<const double *> src)[j]


cdef int _forward_impl(Plan *p, list weights, list biases, cnp.ndarray X,
                       cnp.ndarray out, int chunk, int num_threads,
                       floating dummy) except -1:
    cdef int L = p.n_layers
    cdef int n_in = p.sizes[0]
    cdef floating **W = <floating **> malloc(sizeof(floating *) * 2 * (L + 1))
    if W == NULL:
        raise MemoryError()
    cdef floating **B = W + (L + 1)
    cdef int l, max_pad = 1, tid
    cdef Py_ssize_t n = X.shape[0], n_chunks, c, c0
    cdef int m
    cdef bint x_f32 = X.dtype == np.float32
    cdef bint convert = X.dtype != out.dtype and not p.sparse
    cdef const char *xp = <const char *> cnp.PyArray_DATA(X)
    cdef Py_ssize_t x_row_bytes = n_in * X.dtype.itemsize
    cdef floating *op = <floating *> cnp.PyArray_DATA(out)
    cdef const floating *x_chunk
    cdef floating *buf
    for l in range(1, L + 1):
        W[l] = <floating *> cnp.PyArray_DATA(weights[l - 1])
        B[l] = <floating *> cnp.PyArray_DATA(biases[l - 1])
        if p.padded[l] > max_pad:
            max_pad = p.padded[l]
    n_chunks = (n + chunk - 1) // chunk
    if num_threads > n_chunks:
        num_threads = <int> n_chunks
    # Scratch per thread (not per chunk): activations, and the chunk's inputs
    # converted to the compute dtype when they come in the other one.
    cdef Py_ssize_t per_thread = 2 * max_pad * chunk + (<Py_ssize_t> chunk * n_in if convert else 0)
    per_thread = (per_thread + 15) // 16 * 16               # own cache lines
    scratch_arr = _aligned_zeros((num_threads, per_thread), out.dtype)
    cdef floating *scratch = <floating *> cnp.PyArray_DATA(scratch_arr)
    from cython.parallel import prange
    try:
        with nogil:
            for c in prange(n_chunks, num_threads=num_threads, schedule="static"):
                tid = omp_get_thread_num()
                buf = scratch + tid * per_thread
                c0 = c * chunk
                m = <int> min(<Py_ssize_t> chunk, n - c0)
                if convert:
                    x_chunk = buf + 2 * max_pad * chunk
                    _convert_rows(xp + c0 * x_row_bytes, x_f32, <Py_ssize_t> m * n_in,
                                  <floating *> x_chunk)
                else:
                    x_chunk = <const floating *> (xp + c0 * x_row_bytes)
                _forward_chunk(p, W, B, x_chunk, m, buf, op + c0 * p.sizes[L], c0)
    finally:
        free(W)
    return 0


def forward(X, list weights, list biases, bint softmax=False, int num_threads=1,
            int chunk=256, X_sparse=None, int activation=NF_SIGMOID,
            int output_activation=NF_SIGMOID):
    """Network outputs for every row of ``X``: (n, n_in) → (n, n_out).

    Weights and biases share one dtype (float32 or float64), the compute
    dtype; weights are (n_out, n_in), biases (n_out, 1). ``X`` may be float32 or
    float64 (converted chunk by chunk, no copy of the whole matrix). Hidden
    layers apply ``activation``, the output ``output_activation`` (codes of
    ``ACT_CODES``; sigmoid by default) or softmax. Examples are processed
    in chunks of ``chunk``, chunks in parallel; each output row depends only on
    its own example, so results do not depend on the thread count.
    ``X_sparse`` (``sparse_rows(X)``) lets the first hidden layer read only the
    nonzero inputs, with the same results.
    """
    cdef Plan p
    cdef int L = len(weights)
    cdef int l
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype not in (np.float32, np.float64):
        raise ValueError("X: expected a 2-D float32/float64 array, got %s"
                         % getattr(X, "dtype", type(X).__name__))
    X = np.ascontiguousarray(X)
    if not X.dtype.isnative:
        X = X.astype(X.dtype.newbyteorder("="))
    if L < 1 or not isinstance(weights[0], np.ndarray):
        raise ValueError("expected a list of weight arrays, got %r" % (weights[:1],))
    sizes, dtype = _check_layers(weights, biases)
    if sizes[0] != X.shape[1]:
        raise ValueError("X has %d columns, expected %d" % (X.shape[1], sizes[0]))
    if chunk < 1 or num_threads < 1:
        raise ValueError("chunk and num_threads must be >= 1")
    _check_act(activation, "activation")
    _check_act(output_activation, "output_activation")
    _set_layers(&p, sizes)
    p.act = activation
    p.out_act = output_activation
    p.cost = LOG_LIKELIHOOD if softmax else CROSS_ENTROPY
    p.sparse = False
    p.csr_step = False
    if X_sparse is not None:
        _check_sparse(X_sparse, X.shape[0], sizes[0])
        if L > 1 or not softmax:
            _set_sparse(&p, X_sparse)
    cdef cnp.ndarray out = np.empty((X.shape[0], sizes[L]), dtype)
    cdef cnp.ndarray X_arr = X
    if X.shape[0] == 0:
        return out
    packed_w = [pack_weights(w) for w in weights]
    packed_b = [pack_bias(b) for b in biases]
    if dtype == np.float64:
        _forward_impl(&p, packed_w, packed_b, X_arr, out, chunk, num_threads, <double> 0)
    else:
        _forward_impl(&p, packed_w, packed_b, X_arr, out, chunk, num_threads, <float> 0)
    return out
