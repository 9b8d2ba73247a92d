"""Dense sigmoid networks (chapters 1 and 3): a whole mini-batch SGD epoch in one
call, and batched feed-forward.

Layout. Weights are the Network's own (n_out, n_in) C-contiguous arrays, updated
in place; BLAS sees them column-major as W^T (n_in x n_out). Activations and
deltas of a mini-batch are (m, n_units) C-contiguous (each example contiguous),
i.e. column-major (n_units x m).

Parallel scheme (one OpenMP team for the whole epoch, barriers between steps).
The units of every layer are cut into row blocks whose size depends only on
the layer's width, never on the thread count; block b belongs to thread
b % n_threads. Every GEMM is made per block, so each number is computed by the
same BLAS call whatever the thread count: results are bitwise identical for
1 and N threads. Per mini-batch:

1. gather the mini-batch's examples into a double-buffered input matrix;  | barrier
2. hidden layer l: each thread computes its blocks of a^l = σ(W^l a^{l-1} + b^l);  | barrier
3. output layer: every thread computes the whole (small) output layer and its
   delta privately;  | barrier (nobody may update W^L while it is being read)
4. backward, l = L..2: each thread computes its blocks of δ^{l-1} (rows of
   W^l's transpose = columns of W^l), then updates exactly those columns of
   W^l; biases by their row owners;  | barrier between layers
5. W^1 and b^1 by row blocks.

The update is fused into the gradient GEMM: W ← β·W − (η/m)·δ·a^T with
β = 1 − η·λ/n (L2), so no gradient matrix is ever stored.
"""
cimport cython
from cython cimport floating
from cython.parallel cimport parallel
from libc.math cimport exp, expf
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free

import numpy as np
cimport numpy as cnp

from nndl_fast._blas cimport gemm
from nndl_fast._openmp_helpers cimport omp_get_thread_num

cnp.import_array()

cdef extern from *:
    """
    #ifdef _OPENMP
    static inline void nndl_barrier(void) { _Pragma("omp barrier") }
    #else
    static inline void nndl_barrier(void) { }
    #endif
    """
    void nndl_barrier() noexcept nogil

cdef enum:
    MAX_LAYERS = 64

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


cdef struct Plan:
    int n_layers                      # L, the number of weight layers
    int sizes[MAX_LAYERS + 1]         # sizes[0] = n_in ... sizes[L] = n_out
    int block[MAX_LAYERS + 1]         # rows per block of layer l
    int n_blocks[MAX_LAYERS + 1]
    int n_threads
    int64_t n_samples
    int mini_batch_size
    int cost
    int reg
    bint x_is_float32
    bint use_momentum
    const void *x                     # (n_samples, n_in) float32 or float64
    const int64_t *order              # rows of x in training order
    double eta
    double reg_step                   # η·λ/n
    double decay                      # 1 − η·λ/n (L2 without momentum)
    double momentum


def block_rows(int n_units):
    """Rows per block for a layer of ``n_units`` (a function of the width only)."""
    cdef int n_blocks
    if n_units < 16:
        return n_units
    n_blocks = max(2, (n_units + 127) // 128)
    return ((n_units + n_blocks - 1) // n_blocks + 7) // 8 * 8


cdef inline floating _sigmoid(floating z) noexcept nogil:
    if floating is float:
        return 1.0 / (1.0 + expf(-z))
    else:
        return 1.0 / (1.0 + exp(-z))


cdef inline floating _exp(floating z) noexcept nogil:
    if floating is float:
        return expf(z)
    else:
        return exp(z)


cdef void _forward_rows(const floating *w, const floating *b, const floating *a_prev,
                        int n_prev, floating *out, int ld_out, int r0, int r1,
                        int m) noexcept nogil:
    """out[:, r0:r1] = σ(a_prev W[r0:r1]^T + b[r0:r1]) for m examples."""
    cdef int i, j
    cdef floating *o
    gemm(True, False, r1 - r0, m, n_prev, <floating> 1.0, w + <Py_ssize_t> r0 * n_prev,
         n_prev, a_prev, n_prev, <floating> 0.0, out + r0, ld_out)
    for i in range(m):
        o = out + <Py_ssize_t> i * ld_out
        for j in range(r0, r1):
            o[j] = _sigmoid(o[j] + b[j])


cdef void _output_layer(const floating *w, const floating *b, const floating *a_prev,
                        int n_prev, int n_out, int m, bint softmax,
                        floating *out) noexcept nogil:
    """The whole output layer for m examples (sigmoid or softmax)."""
    cdef int i, j
    cdef floating *o
    cdef floating mx, s
    gemm(True, False, n_out, m, n_prev, <floating> 1.0, w, n_prev, a_prev, n_prev,
         <floating> 0.0, out, n_out)
    for i in range(m):
        o = out + <Py_ssize_t> i * n_out
        if softmax:
            for j in range(n_out):
                o[j] = o[j] + b[j]
            mx = o[0]
            for j in range(1, n_out):
                if o[j] > mx:
                    mx = o[j]
            s = 0
            for j in range(n_out):
                o[j] = _exp(o[j] - mx)
                s = s + o[j]
            for j in range(n_out):
                o[j] = o[j] / s
        else:
            for j in range(n_out):
                o[j] = _sigmoid(o[j] + b[j])


cdef void _update_block(const Plan *p, floating *w, floating *v, int rows, int cols, int ld,
                        const floating *act, int ld_act, const floating *delta, int ld_delta,
                        int m) noexcept nogil:
    """W_blk ← update with gradient act·delta^T for a (rows x cols, ld) column-major block."""
    cdef floating alpha = <floating> (-p.eta / m)
    cdef floating step = <floating> p.reg_step
    cdef floating mu = <floating> p.momentum
    cdef int r, c
    cdef floating *wc
    cdef floating *vc
    if not p.use_momentum:
        if p.reg == L1 and step != 0:
            for c in range(cols):
                wc = w + <Py_ssize_t> c * ld
                for r in range(rows):
                    if wc[r] > 0:
                        wc[r] = wc[r] - step
                    elif wc[r] < 0:
                        wc[r] = wc[r] + step
            gemm(False, True, rows, cols, m, alpha, act, ld_act, delta, ld_delta,
                 <floating> 1.0, w, ld)
        else:
            gemm(False, True, rows, cols, m, alpha, act, ld_act, delta, ld_delta,
                 <floating> p.decay, w, ld)
        return
    # Momentum: v ← μv − step·reg'(w) − (η/m)∇w ; w ← w + v.
    for c in range(cols):
        wc = w + <Py_ssize_t> c * ld
        vc = v + <Py_ssize_t> c * ld
        for r in range(rows):
            if p.reg == L1:
                vc[r] = mu * vc[r] - (step if wc[r] > 0 else (-step if wc[r] < 0 else 0))
            else:
                vc[r] = mu * vc[r] - step * wc[r]
    gemm(False, True, rows, cols, m, alpha, act, ld_act, delta, ld_delta,
         <floating> 1.0, v, ld)
    for c in range(cols):
        wc = w + <Py_ssize_t> c * ld
        vc = v + <Py_ssize_t> c * ld
        for r in range(rows):
            wc[r] = wc[r] + vc[r]


cdef void _update_bias(const Plan *p, floating *b, floating *vb, const floating *delta,
                       int ld_delta, int r0, int r1, int m) noexcept nogil:
    cdef int i, j
    cdef floating s
    cdef floating scale = <floating> (p.eta / m)
    for j in range(r0, r1):
        s = 0
        for i in range(m):
            s = s + delta[<Py_ssize_t> i * ld_delta + j]
        if p.use_momentum:
            vb[j] = <floating> p.momentum * vb[j] - scale * s
            b[j] = b[j] + vb[j]
        else:
            b[j] = b[j] - scale * s


cdef void _gather(const Plan *p, int64_t start, int m, floating *xb, int tid) noexcept nogil:
    cdef int i, j
    cdef int n_in = p.sizes[0]
    cdef const float *xs
    cdef const double *xd
    cdef floating *dst
    i = tid
    while i < m:
        dst = xb + <Py_ssize_t> i * n_in
        if p.x_is_float32:
            xs = (<const float *> p.x) + p.order[start + i] * n_in
            for j in range(n_in):
                dst[j] = <floating> xs[j]
        else:
            xd = (<const double *> p.x) + p.order[start + i] * n_in
            for j in range(n_in):
                dst[j] = <floating> xd[j]
        i += p.n_threads


cdef void _epoch_thread(const Plan *p, floating **W, floating **B, floating **VW,
                        floating **VB, floating **A, floating **D, floating **xbuf,
                        floating *out_all, floating *dout_all, const floating *Y,
                        int tid) noexcept nogil:
    cdef int L = p.n_layers
    cdef int nt = p.n_threads
    cdef int n_out = p.sizes[L]
    cdef int mbs = p.mini_batch_size
    cdef floating *out = out_all + <Py_ssize_t> tid * n_out * mbs
    cdef floating *dout = dout_all + <Py_ssize_t> tid * n_out * mbs
    cdef int64_t start, batch
    cdef int64_t n_batches = (p.n_samples + mbs - 1) // mbs
    cdef int m, l, blk, r0, r1, i, j, s_prev, s_l
    cdef floating *xb
    cdef const floating *a_prev
    cdef const floating *d_next
    cdef const floating *y
    cdef floating *o
    cdef floating *d
    cdef floating *a

    for batch in range(n_batches):
        start = batch * mbs
        m = <int> min(<int64_t> mbs, p.n_samples - start)
        xb = xbuf[batch & 1]
        _gather(p, start, m, xb, tid)
        if nt > 1:
            nndl_barrier()

        # Hidden layers, by row blocks.
        a_prev = xb
        for l in range(1, L):
            s_prev = p.sizes[l - 1]
            s_l = p.sizes[l]
            blk = tid
            while blk < p.n_blocks[l]:
                r0 = blk * p.block[l]
                r1 = min(r0 + p.block[l], s_l)
                _forward_rows(W[l], B[l], a_prev, s_prev, A[l], s_l, r0, r1, m)
                blk += nt
            if nt > 1:
                nndl_barrier()
            a_prev = A[l]

        # Output layer and its delta, privately in every thread.
        _output_layer(W[L], B[L], a_prev, p.sizes[L - 1], n_out, m,
                      p.cost == LOG_LIKELIHOOD, out)
        for i in range(m):
            o = out + <Py_ssize_t> i * n_out
            d = dout + <Py_ssize_t> i * n_out
            y = Y + p.order[start + i] * n_out
            if p.cost == QUADRATIC:
                for j in range(n_out):
                    d[j] = (o[j] - y[j]) * (o[j] * (1 - o[j]))
            else:
                for j in range(n_out):
                    d[j] = o[j] - y[j]
        if nt > 1:
            nndl_barrier()

        # Backward: δ^{l-1} and W^l by column blocks (blocks of layer l-1).
        d_next = dout
        for l in range(L, 1, -1):
            s_prev = p.sizes[l - 1]
            s_l = p.sizes[l]
            blk = tid
            while blk < p.n_blocks[l - 1]:
                r0 = blk * p.block[l - 1]
                r1 = min(r0 + p.block[l - 1], s_prev)
                gemm(False, False, r1 - r0, m, s_l, <floating> 1.0, W[l] + r0, s_prev,
                     d_next, s_l, <floating> 0.0, D[l - 1] + r0, s_prev)
                for i in range(m):
                    d = D[l - 1] + <Py_ssize_t> i * s_prev
                    a = A[l - 1] + <Py_ssize_t> i * s_prev
                    for j in range(r0, r1):
                        d[j] = d[j] * (a[j] * (1 - a[j]))
                _update_block(p, W[l] + r0, VW[l] + r0 if p.use_momentum else NULL,
                              r1 - r0, s_l, s_prev, A[l - 1] + r0, s_prev, d_next, s_l, m)
                blk += nt
            if l == L:
                if tid == 0:
                    _update_bias(p, B[L], VB[L], dout, n_out, 0, n_out, m)
            else:
                blk = tid
                while blk < p.n_blocks[l]:
                    r0 = blk * p.block[l]
                    r1 = min(r0 + p.block[l], s_l)
                    _update_bias(p, B[l], VB[l], D[l], s_l, r0, r1, m)
                    blk += nt
            if nt > 1 and l > 2:
                nndl_barrier()
            d_next = D[l - 1]

        # First layer: W^1 by row blocks (W^1 is never read by the backward pass).
        s_prev = p.sizes[0]
        s_l = p.sizes[1]
        if L == 1:
            if tid == 0:
                _update_block(p, W[1], VW[1], s_prev, s_l, s_prev, xb, s_prev, dout, s_l, m)
                _update_bias(p, B[1], VB[1], dout, s_l, 0, s_l, m)
        else:
            blk = tid
            while blk < p.n_blocks[1]:
                r0 = blk * p.block[1]
                r1 = min(r0 + p.block[1], s_l)
                _update_block(p, W[1] + <Py_ssize_t> r0 * s_prev,
                              VW[1] + <Py_ssize_t> r0 * s_prev if p.use_momentum else NULL,
                              s_prev, r1 - r0, s_prev, xb, s_prev, D[1] + r0, s_l, m)
                _update_bias(p, B[1], VB[1], D[1], s_l, r0, r1, m)
                blk += nt
        # The next gather writes the other input buffer, and its barrier orders
        # this batch's updates before the next batch's forward pass.


cdef int _run_epoch(Plan *p, list weights, list biases, list vw, list vb, list a_bufs,
                    list d_bufs, list x_bufs, cnp.ndarray out_all, cnp.ndarray dout_all,
                    cnp.ndarray Y, floating dummy) except -1:
    cdef int L = p.n_layers
    cdef int l, tid
    cdef floating **W = <floating **> malloc(sizeof(floating *) * (L + 1) * 6 + 2 * sizeof(floating *))
    if W == NULL:
        raise MemoryError()
    cdef floating **B = W + (L + 1)
    cdef floating **VW = B + (L + 1)
    cdef floating **VB = VW + (L + 1)
    cdef floating **A = VB + (L + 1)
    cdef floating **D = A + (L + 1)
    cdef floating **X = D + (L + 1)
    cdef floating *outp = <floating *> cnp.PyArray_DATA(out_all)
    cdef floating *doutp = <floating *> cnp.PyArray_DATA(dout_all)
    cdef const floating *Yp = <const floating *> cnp.PyArray_DATA(Y)
    try:
        for l in range(L + 1):
            W[l] = B[l] = VW[l] = VB[l] = A[l] = D[l] = NULL
        for l in range(1, L + 1):
            W[l] = <floating *> cnp.PyArray_DATA(weights[l - 1])
            B[l] = <floating *> cnp.PyArray_DATA(biases[l - 1])
            if p.use_momentum:
                VW[l] = <floating *> cnp.PyArray_DATA(vw[l - 1])
                VB[l] = <floating *> cnp.PyArray_DATA(vb[l - 1])
            if l < L:
                A[l] = <floating *> cnp.PyArray_DATA(a_bufs[l - 1])
                D[l] = <floating *> cnp.PyArray_DATA(d_bufs[l - 1])
        X[0] = <floating *> cnp.PyArray_DATA(x_bufs[0])
        X[1] = <floating *> cnp.PyArray_DATA(x_bufs[1])
        if p.n_threads == 1:
            with nogil:
                _epoch_thread(p, W, B, VW, VB, A, D, X, outp, doutp, Yp, 0)
        else:
            with nogil, parallel(num_threads=p.n_threads):
                tid = omp_get_thread_num()
                _epoch_thread(p, W, B, VW, VB, A, D, X, outp, doutp, Yp, tid)
    finally:
        free(W)
    return 0


def _check(arr, shape, dtype, what):
    if not isinstance(arr, np.ndarray) or arr.dtype != dtype or tuple(arr.shape) != tuple(shape) \
            or not arr.flags.c_contiguous or not arr.flags.writeable:
        raise ValueError("%s: expected a writeable C-contiguous %s array of shape %s, got %s"
                         % (what, np.dtype(dtype).name, tuple(shape),
                            "%s %s" % (getattr(arr, "dtype", type(arr).__name__),
                                       getattr(arr, "shape", ""))))


def train_epoch(X, Y, order, list weights, list biases, int mini_batch_size, double eta,
                double lmbda=0.0, double n_total=1.0, int cost=QUADRATIC, int reg=L2,
                double momentum=0.0, list velocities_w=None, list velocities_b=None,
                int num_threads=1):
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
    velocities_w, velocities_b : like weights/biases; required when momentum != 0
    num_threads : OpenMP threads (results do not depend on it)
    """
    cdef Plan p
    cdef int L = len(weights)
    cdef int l
    if L < 1 or L > MAX_LAYERS:
        raise ValueError("expected 1 to %d weight layers, got %d" % (MAX_LAYERS, L))
    if len(biases) != L:
        raise ValueError("expected %d bias vectors, got %d" % (L, len(biases)))
    if mini_batch_size < 1:
        raise ValueError("mini_batch_size must be >= 1, got %d" % mini_batch_size)
    if num_threads < 1:
        raise ValueError("num_threads must be >= 1, got %d" % num_threads)
    if cost not in (QUADRATIC, CROSS_ENTROPY, LOG_LIKELIHOOD):
        raise ValueError("unknown cost code %d" % cost)
    if reg not in (L2, L1):
        raise ValueError("unknown regularisation code %d" % reg)
    dtype = weights[0].dtype if isinstance(weights[0], np.ndarray) else None
    if dtype not in (np.float32, np.float64):
        raise ValueError("weights must be float32 or float64 arrays, got %r" % (dtype,))
    p.n_layers = L
    p.sizes[0] = weights[0].shape[1] if weights[0].ndim == 2 else -1
    for l in range(1, L + 1):
        w = weights[l - 1]
        if not isinstance(w, np.ndarray) or w.ndim != 2:
            raise ValueError("weights[%d] must be a 2-D array" % (l - 1))
        p.sizes[l] = w.shape[0]
        _check(w, (p.sizes[l], p.sizes[l - 1]), dtype, "weights[%d]" % (l - 1))
        _check(biases[l - 1], (p.sizes[l], 1), dtype, "biases[%d]" % (l - 1))
        p.block[l] = block_rows(p.sizes[l])
        p.n_blocks[l] = (p.sizes[l] + p.block[l] - 1) // p.block[l]
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
    if order.shape[0] == 0:
        return
    p.n_threads = num_threads
    p.n_samples = order.shape[0]
    p.mini_batch_size = <int> min(<int64_t> mini_batch_size, p.n_samples)
    p.cost = cost
    p.reg = reg
    p.x_is_float32 = X.dtype == np.float32
    p.x = cnp.PyArray_DATA(X)
    p.order = <const int64_t *> cnp.PyArray_DATA(order)
    p.eta = eta
    p.reg_step = eta * (lmbda / n_total)
    p.decay = 1 - eta * (lmbda / n_total)
    p.momentum = momentum
    mbs = p.mini_batch_size
    a_bufs = [np.empty((mbs, p.sizes[l]), dtype) for l in range(1, L)]
    d_bufs = [np.empty((mbs, p.sizes[l]), dtype) for l in range(1, L)]
    x_bufs = [np.empty((mbs, p.sizes[0]), dtype) for _ in range(2)]
    cdef cnp.ndarray out_all = np.empty((num_threads, mbs, p.sizes[L]), dtype)
    cdef cnp.ndarray dout_all = np.empty((num_threads, mbs, p.sizes[L]), dtype)
    cdef cnp.ndarray Y_arr = Y
    if dtype == np.float64:
        _run_epoch(&p, weights, biases, velocities_w, velocities_b, a_bufs, d_bufs, x_bufs,
                   out_all, dout_all, Y_arr, <double> 0)
    else:
        _run_epoch(&p, weights, biases, velocities_w, velocities_b, a_bufs, d_bufs, x_bufs,
                   out_all, dout_all, Y_arr, <float> 0)


cdef void _forward_chunk(int L, const int *sizes, floating **W, floating **B,
                         const floating *x, int m, bint softmax, floating *scratch,
                         floating *out) noexcept nogil:
    cdef int l, max_units = 0
    cdef const floating *a_prev = x
    cdef floating *cur
    cdef floating *bufs[2]
    for l in range(1, L):
        if sizes[l] > max_units:
            max_units = sizes[l]
    bufs[0] = scratch
    bufs[1] = scratch + <Py_ssize_t> max_units * m
    for l in range(1, L):
        cur = bufs[l & 1]
        _forward_rows(W[l], B[l], a_prev, sizes[l - 1], cur, sizes[l], 0, sizes[l], m)
        a_prev = cur
    _output_layer(W[L], B[L], a_prev, sizes[L - 1], sizes[L], m, softmax, out)


cdef int _forward_impl(int L, int *sizes, list weights, list biases, cnp.ndarray X,
                       cnp.ndarray out, bint softmax, int chunk, int num_threads,
                       floating dummy) except -1:
    cdef floating **W = <floating **> malloc(sizeof(floating *) * 2 * (L + 1))
    if W == NULL:
        raise MemoryError()
    cdef floating **B = W + (L + 1)
    cdef int l, max_units = 1
    cdef Py_ssize_t n = X.shape[0], n_chunks, c, c0
    cdef int m
    cdef const floating *xp = <const floating *> cnp.PyArray_DATA(X)
    cdef floating *op = <floating *> cnp.PyArray_DATA(out)
    for l in range(1, L + 1):
        W[l] = <floating *> cnp.PyArray_DATA(weights[l - 1])
        B[l] = <floating *> cnp.PyArray_DATA(biases[l - 1])
        if l < L and sizes[l] > max_units:
            max_units = sizes[l]
    n_chunks = (n + chunk - 1) // chunk
    scratch_arr = np.empty((n_chunks, 2 * max_units * chunk), dtype=X.dtype)
    cdef floating *scratch = <floating *> cnp.PyArray_DATA(scratch_arr)
    cdef Py_ssize_t per_chunk = 2 * max_units * chunk
    from cython.parallel import prange
    try:
        with nogil:
            for c in prange(n_chunks, num_threads=num_threads, schedule="static"):
                c0 = c * chunk
                m = <int> min(<Py_ssize_t> chunk, n - c0)
                _forward_chunk(L, sizes, W, B, xp + c0 * sizes[0], m, softmax,
                               scratch + c * per_chunk, op + c0 * sizes[L])
    finally:
        free(W)
    return 0


def forward(X, list weights, list biases, bint softmax=False, int num_threads=1,
            int chunk=256):
    """Network outputs for every row of ``X``: (n, n_in) → (n, n_out).

    X, weights and biases share one dtype (float32 or float64) and are
    C-contiguous; hidden layers are sigmoid, the output sigmoid or softmax.
    Examples are processed in chunks of ``chunk``, chunks in parallel; each
    output row depends only on its own chunk, so results do not depend on the
    thread count.
    """
    cdef int L = len(weights)
    cdef int sizes[MAX_LAYERS + 1]
    cdef int l
    if L < 1 or L > MAX_LAYERS or len(biases) != L:
        raise ValueError("expected 1 to %d weight layers with as many bias vectors" % MAX_LAYERS)
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype not in (np.float32, np.float64):
        raise ValueError("X: expected a 2-D float32/float64 array, got %s"
                         % getattr(X, "dtype", type(X).__name__))
    dtype = X.dtype
    X = np.ascontiguousarray(X)
    sizes[0] = X.shape[1]
    for l in range(1, L + 1):
        w = weights[l - 1]
        if not isinstance(w, np.ndarray) or w.ndim != 2:
            raise ValueError("weights[%d] must be a 2-D array" % (l - 1))
        sizes[l] = w.shape[0]
        if w.shape[1] != sizes[l - 1] or w.dtype != dtype or not w.flags.c_contiguous:
            raise ValueError("weights[%d]: expected C-contiguous %s (%d, %d), got %s %s"
                             % (l - 1, dtype, sizes[l], sizes[l - 1], w.dtype, w.shape))
        b = biases[l - 1]
        if not isinstance(b, np.ndarray) or b.size != sizes[l] or b.dtype != dtype \
                or not b.flags.c_contiguous:
            raise ValueError("biases[%d]: expected C-contiguous %s with %d entries"
                             % (l - 1, dtype, sizes[l]))
    if chunk < 1 or num_threads < 1:
        raise ValueError("chunk and num_threads must be >= 1")
    cdef cnp.ndarray out = np.empty((X.shape[0], sizes[L]), dtype)
    cdef cnp.ndarray X_arr = X
    if X.shape[0] == 0:
        return out
    if dtype == np.float64:
        _forward_impl(L, sizes, weights, biases, X_arr, out, softmax, chunk, num_threads,
                      <double> 0)
    else:
        _forward_impl(L, sizes, weights, biases, X_arr, out, softmax, chunk, num_threads,
                      <float> 0)
    return out
