"""Dense sigmoid networks (chapters 1 and 3): a whole mini-batch SGD epoch in one
call, and batched feed-forward.

Layout. For the duration of a call the weights of each layer are repacked into
blocks of 16 output units (``src_c/dense.h``): block b of layer l is an
(n_in_l x 16) row-major matrix holding the weights from every input to units
16b..16b+15 (zero-padded past the layer's width). Activations and deltas of a
mini-batch are (m x padded_units) row-major. Padded units have activation and
delta exactly 0, so their weights stay 0 and never influence the real units.
The Network's own (n_out, n_in) arrays are updated in place at the end.

Parallel scheme (one OpenMP team for the whole epoch, spinning barriers between
steps: ``nndl_spin_barrier`` in src_c/dense.c).
Block b of a layer belongs to thread b % n_threads. Each number is computed by
one thread with a fixed summation order, whatever the thread count, so results
are bitwise identical for 1 and N threads. Per mini-batch:

1. every thread gathers the mini-batch's examples into its own double-buffered
   input matrix (no sharing of the inputs between cores);
2. hidden layer l: each thread computes its blocks of a^l = σ(W^l a^{l-1} + b^l);  | barrier
3. output layer: every thread computes the whole (small) output layer and its
   delta privately;  | barrier (nobody may update W^L while it is being read)
4. backward, l = L..2: each thread computes its blocks of δ^{l-1} (which read
   only the rows of the packed W^l belonging to those inputs), then updates
   exactly those rows of W^l; biases by their block owners;  | barrier between layers
5. W^1 and b^1 by blocks (W^1 is never read by the backward pass), each block
   followed at once by the next batch's layer-1 pre-activations through it.

The update is fused with the gradient: W ← β·W − (η/m)·Σ_i x_i δ_i^T with
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

from nndl_fast._openmp_helpers cimport omp_get_thread_num

cnp.import_array()

cdef extern from "dense.h" nogil:
    int NNDL_BW
    void nndl_fwd_d(int m, int K, const double *X, int ldx, const double *W,
                    double *out, int ldo)
    void nndl_fwd_s(int m, int K, const float *X, int ldx, const float *W,
                    float *out, int ldo)
    void nndl_upd_d(int rows, int m, const double *X, int ldx, const double *D, int ldd,
                    double *W, double alpha, double beta)
    void nndl_upd_s(int rows, int m, const float *X, int ldx, const float *D, int ldd,
                    float *W, float alpha, float beta)
    void nndl_sigmoid_block_d(int m, double *Z, int ldz, const double *b, int n_valid)
    void nndl_sigmoid_block_s(int m, float *Z, int ldz, const float *b, int n_valid)
    void nndl_bwd_d(int m, int rows, int nb, const double *W, Py_ssize_t bstride,
                    const double *Dn, int ldn, const double *A, int lda, double *out, int ldo)
    void nndl_bwd_s(int m, int rows, int nb, const float *W, Py_ssize_t bstride,
                    const float *Dn, int ldn, const float *A, int lda, float *out, int ldo)
    void nndl_convert_f2d(int n, const float *src, double *dst)
    void nndl_prefetch(const void *p, size_t nbytes)
    const char *nndl_dense_isa()
    ctypedef struct nndl_spin_barrier:
        pass
    void nndl_spin_barrier_init(nndl_spin_barrier *b, int n_threads)
    void nndl_spin_barrier_wait(nndl_spin_barrier *b, int *local_sense)

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


def kernel_isa():
    """The instruction set the block kernels run on here ("avx512" or "generic")."""
    return nndl_dense_isa().decode()


cdef struct Plan:
    int n_layers                      # L, the number of weight layers
    int sizes[MAX_LAYERS + 1]         # sizes[0] = n_in ... sizes[L] = n_out
    int n_blocks[MAX_LAYERS + 1]      # blocks of 16 units in layer l
    int padded[MAX_LAYERS + 1]        # 16 * n_blocks (padded[0] = n_in)
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
    nndl_spin_barrier *barrier        # shared by the team (n_threads > 1)


cdef inline floating _exp(floating z) noexcept nogil:
    if floating is float:
        return expf(z)
    else:
        return exp(z)


cdef inline void _fwd(int m, int K, const floating *X, int ldx, const floating *W,
                      floating *out, int ldo) noexcept nogil:
    if floating is float:
        nndl_fwd_s(m, K, X, ldx, W, out, ldo)
    else:
        nndl_fwd_d(m, K, X, ldx, W, out, ldo)


cdef inline void _upd(int rows, int m, const floating *X, int ldx, const floating *D,
                      int ldd, floating *W, floating alpha, floating beta) noexcept nogil:
    if floating is float:
        nndl_upd_s(rows, m, X, ldx, D, ldd, W, alpha, beta)
    else:
        nndl_upd_d(rows, m, X, ldx, D, ldd, W, alpha, beta)


cdef void _hidden_block(const floating *w_blk, const floating *b, const floating *a_prev,
                        int n_prev, int ld_prev, floating *out, int ld_out, int blk,
                        int n_units, int m) noexcept nogil:
    """Units of block ``blk``: out = σ(a_prev W_blk + b), padded units 0."""
    cdef int u0 = blk * BW
    cdef int n_valid = min(BW, n_units - u0)
    _fwd(m, n_prev, a_prev, ld_prev, w_blk, out + u0, ld_out)
    if floating is float:
        nndl_sigmoid_block_s(m, out + u0, ld_out, b + u0, n_valid)
    else:
        nndl_sigmoid_block_d(m, out + u0, ld_out, b + u0, n_valid)


cdef void _output_layer(const Plan *p, floating *w, const floating *b,
                        const floating *a_prev, int ld_prev, int m,
                        floating *out) noexcept nogil:
    """The whole output layer for m examples (sigmoid or softmax), padded units 0."""
    cdef int L = p.n_layers
    cdef int n_out = p.sizes[L], ld = p.padded[L], n_prev = p.sizes[L - 1]
    cdef int i, j, blk
    cdef floating *o
    cdef floating mx, s
    if p.cost != LOG_LIKELIHOOD:
        for blk in range(p.n_blocks[L]):
            _hidden_block(w + <Py_ssize_t> blk * n_prev * BW, b, a_prev, n_prev, ld_prev,
                          out, ld, blk, n_out, m)
        return
    for blk in range(p.n_blocks[L]):
        _fwd(m, n_prev, a_prev, ld_prev, w + <Py_ssize_t> blk * n_prev * BW, out + blk * BW, ld)
    for i in range(m):
        o = out + <Py_ssize_t> i * ld
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
        for j in range(n_out, ld):
            o[j] = 0


cdef void _update_rows(const Plan *p, floating *w, floating *v, int rows,
                       const floating *act, int ld_act, const floating *delta, int ld_delta,
                       int m) noexcept nogil:
    """Update ``rows`` packed rows (16 weights each) with gradient Σ_i act_i δ_i^T."""
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
            _upd(rows, m, act, ld_act, delta, ld_delta, w, alpha, <floating> 1.0)
        else:
            _upd(rows, m, act, ld_act, delta, ld_delta, w, alpha, <floating> p.decay)
        return
    # Momentum: v ← μv − step·reg'(w) − (η/m)∇w ; w ← w + v.
    for r in range(n):
        if p.reg == L1:
            v[r] = mu * v[r] - (step if w[r] > 0 else (-step if w[r] < 0 else 0))
        else:
            v[r] = mu * v[r] - step * w[r]
    _upd(rows, m, act, ld_act, delta, ld_delta, v, alpha, <floating> 1.0)
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


cdef void _gather(const Plan *p, int64_t start, int m, floating *xb) noexcept nogil:
    """Rows ``order[start:start + m]`` of x into ``xb`` (this thread's own copy)."""
    cdef int i, j
    cdef int n_in = p.sizes[0]
    cdef const float *xs
    cdef const double *xd
    cdef floating *dst
    for i in range(m):
        dst = xb + <Py_ssize_t> i * n_in
        if p.x_is_float32:
            xs = (<const float *> p.x) + p.order[start + i] * n_in
            if floating is double:
                nndl_convert_f2d(n_in, xs, dst)
            else:
                for j in range(n_in):
                    dst[j] = xs[j]
        else:
            xd = (<const double *> p.x) + p.order[start + i] * n_in
            for j in range(n_in):
                dst[j] = <floating> xd[j]


cdef void _prefetch_batch(const Plan *p, int64_t start) noexcept nogil:
    """Start loading the rows of the batch at ``start``."""
    cdef int64_t i = start
    cdef int64_t end = min(start + p.mini_batch_size, p.n_samples)
    cdef size_t row_bytes = p.sizes[0] * (4 if p.x_is_float32 else 8)
    while i < end:
        nndl_prefetch(<const char *> p.x + p.order[i] * row_bytes, row_bytes)
        i += 1


cdef void _backward_block(const Plan *p, int l, int blk, floating **W, floating **VW,
                          floating **A, floating **D, const floating *d_next,
                          int m) noexcept nogil:
    """δ^{l-1} for the inputs of block ``blk`` of layer l-1, then their rows of W^l."""
    cdef int s_prev = p.sizes[l - 1], ld_prev = p.padded[l - 1]
    cdef int ld_next = p.padded[l], nb = p.n_blocks[l]
    cdef int c0 = blk * BW, c1 = min(c0 + BW, s_prev)
    cdef int bl
    if floating is float:
        nndl_bwd_s(m, c1 - c0, nb, W[l] + <Py_ssize_t> c0 * BW, <Py_ssize_t> s_prev * BW,
                   d_next, ld_next, A[l - 1] + c0, ld_prev, D[l - 1] + c0, ld_prev)
    else:
        nndl_bwd_d(m, c1 - c0, nb, W[l] + <Py_ssize_t> c0 * BW, <Py_ssize_t> s_prev * BW,
                   d_next, ld_next, A[l - 1] + c0, ld_prev, D[l - 1] + c0, ld_prev)
    for bl in range(nb):
        _update_rows(p, W[l] + (<Py_ssize_t> bl * s_prev + c0) * BW,
                     VW[l] + (<Py_ssize_t> bl * s_prev + c0) * BW if p.use_momentum else NULL,
                     c1 - c0, A[l - 1] + c0, ld_prev, d_next + bl * BW, ld_next, m)


cdef void _first_layer_step(const Plan *p, int blk, floating **W, floating **VW,
                            floating **B, floating **VB, const floating *xb,
                            const floating *delta, int m, const floating *x_next,
                            int m_next, floating *z_next) noexcept nogil:
    """Update block ``blk`` of W^1 and b^1 with this batch, then (m_next > 0) compute
    the next batch's pre-activations of the block through the new weights.

    (Fusing the two sweeps over the block into one was measured slower: the
    combined loop needs more registers than AVX-512 has.)"""
    cdef int n_in = p.sizes[0], ld1 = p.padded[1]
    cdef floating *w = W[1] + <Py_ssize_t> blk * n_in * BW
    _update_rows(p, w, VW[1] + <Py_ssize_t> blk * n_in * BW if p.use_momentum else NULL,
                 n_in, xb, n_in, delta + blk * BW, ld1, m)
    if m_next > 0:
        _fwd(m_next, n_in, x_next, n_in, w, z_next + blk * BW, ld1)
    _update_bias(p, B[1], VB[1], delta, ld1, blk * BW, min(blk * BW + BW, p.sizes[1]), m)


cdef void _epoch_thread(const Plan *p, floating **W, floating **B, floating **VW,
                        floating **VB, floating **A, floating **D, floating **xbuf,
                        floating *out_all, floating *dout_all, const floating *Y,
                        int tid) noexcept nogil:
    """One thread's share of the epoch (see the module docstring).

    With hidden layers, the first layer's update for batch k and its forward
    pass for batch k+1 are one step (``_first_layer_step``), done by the owner
    of each block right after the backward pass: the next batch's
    pre-activations of layer 1 wait in A[1] for the next iteration, so one
    barrier serves both the gather and the ordering of the updates.
    """
    cdef int L = p.n_layers
    cdef int nt = p.n_threads
    cdef int n_in = p.sizes[0], n_out = p.sizes[L], ld_out = p.padded[L]
    cdef int mbs = p.mini_batch_size
    cdef floating *out = out_all + <Py_ssize_t> tid * ld_out * mbs
    cdef floating *dout = dout_all + <Py_ssize_t> tid * ld_out * mbs
    cdef int64_t start, batch
    cdef int64_t n_batches = (p.n_samples + mbs - 1) // mbs
    cdef int m, m_next, l, blk, i, j, ld_prev
    cdef floating *xb
    cdef const floating *a_prev
    cdef const floating *d_next
    cdef const floating *y
    cdef floating *o
    cdef floating *d
    cdef int sense = 0
    xbuf = xbuf + 2 * tid           # this thread's two input buffers

    if L > 1:
        # Prologue: the first batch's layer-1 pre-activations.
        m = <int> min(<int64_t> mbs, p.n_samples)
        _gather(p, 0, m, xbuf[0])
        _prefetch_batch(p, mbs)
        blk = tid
        while blk < p.n_blocks[1]:
            _fwd(m, n_in, xbuf[0], n_in, W[1] + <Py_ssize_t> blk * n_in * BW,
                 A[1] + blk * BW, p.padded[1])
            blk += nt

    for batch in range(n_batches):
        start = batch * mbs
        m = <int> min(<int64_t> mbs, p.n_samples - start)
        xb = xbuf[batch & 1]
        if L == 1:
            _gather(p, start, m, xb)
            _prefetch_batch(p, start + mbs)
            # Orders thread 0's update of the previous batch before this forward pass.
            if nt > 1:
                nndl_spin_barrier_wait(p.barrier, &sense)
            a_prev = xb
            ld_prev = n_in
        else:
            # Layer 1: its pre-activations were computed by the previous step.
            blk = tid
            while blk < p.n_blocks[1]:
                if floating is float:
                    nndl_sigmoid_block_s(m, A[1] + blk * BW, p.padded[1], B[1] + blk * BW,
                                         min(BW, p.sizes[1] - blk * BW))
                else:
                    nndl_sigmoid_block_d(m, A[1] + blk * BW, p.padded[1], B[1] + blk * BW,
                                         min(BW, p.sizes[1] - blk * BW))
                blk += nt
            if nt > 1:
                nndl_spin_barrier_wait(p.barrier, &sense)
            a_prev = A[1]
            ld_prev = p.padded[1]
            # Further hidden layers, by blocks.
            for l in range(2, L):
                blk = tid
                while blk < p.n_blocks[l]:
                    _hidden_block(W[l] + <Py_ssize_t> blk * p.sizes[l - 1] * BW, B[l], a_prev,
                                  p.sizes[l - 1], ld_prev, A[l], p.padded[l], blk, p.sizes[l], m)
                    blk += nt
                if nt > 1:
                    nndl_spin_barrier_wait(p.barrier, &sense)
                a_prev = A[l]
                ld_prev = p.padded[l]

        # Output layer and its delta, privately in every thread.
        _output_layer(p, W[L], B[L], a_prev, ld_prev, m, out)
        for i in range(m):
            o = out + <Py_ssize_t> i * ld_out
            d = dout + <Py_ssize_t> i * ld_out
            y = Y + p.order[start + i] * n_out
            if p.cost == QUADRATIC:
                for j in range(n_out):
                    d[j] = (o[j] - y[j]) * (o[j] * (1 - o[j]))
            else:
                for j in range(n_out):
                    d[j] = o[j] - y[j]
            for j in range(n_out, ld_out):
                d[j] = 0
        if nt > 1:
            nndl_spin_barrier_wait(p.barrier, &sense)

        if L == 1:
            # No hidden layer: thread 0 updates the only (output) layer.
            if tid == 0:
                for blk in range(p.n_blocks[1]):
                    _update_rows(p, W[1] + <Py_ssize_t> blk * n_in * BW,
                                 VW[1] + <Py_ssize_t> blk * n_in * BW if p.use_momentum else NULL,
                                 n_in, xb, n_in, dout + blk * BW, ld_out, m)
                _update_bias(p, B[1], VB[1], dout, ld_out, 0, n_out, m)
            continue

        # Backward: δ^{l-1} and the matching rows of W^l, by blocks of layer l-1.
        d_next = dout
        for l in range(L, 1, -1):
            blk = tid
            while blk < p.n_blocks[l - 1]:
                _backward_block(p, l, blk, W, VW, A, D, d_next, m)
                blk += nt
            if l == L:
                if tid == 0:
                    _update_bias(p, B[L], VB[L], dout, ld_out, 0, n_out, m)
            else:
                blk = tid
                while blk < p.n_blocks[l]:
                    _update_bias(p, B[l], VB[l], D[l], p.padded[l], blk * BW,
                                 min(blk * BW + BW, p.sizes[l]), m)
                    blk += nt
            if nt > 1 and l > 2:
                nndl_spin_barrier_wait(p.barrier, &sense)
            d_next = D[l - 1]

        # First layer: update with this batch, forward the next one.
        m_next = 0
        if batch + 1 < n_batches:
            m_next = <int> min(<int64_t> mbs, p.n_samples - start - mbs)
            _gather(p, start + mbs, m_next, xbuf[(batch + 1) & 1])
            _prefetch_batch(p, start + 2 * mbs)
        # No barrier here: every thread has its own copy of the inputs, and the
        # updates of W^2..W^L are ordered before their next reads by the barrier
        # that follows layer 1's activation in the next iteration.
        blk = tid
        while blk < p.n_blocks[1]:
            _first_layer_step(p, blk, W, VW, B, VB, xb, D[1], m, xbuf[(batch + 1) & 1],
                              m_next, A[1])
            blk += nt


cdef int _run_epoch(Plan *p, list weights, list biases, list vw, list vb, list a_bufs,
                    list d_bufs, list x_bufs, cnp.ndarray out_all, cnp.ndarray dout_all,
                    cnp.ndarray Y, floating dummy) except -1:
    cdef int L = p.n_layers
    cdef int l, tid
    cdef floating **W = <floating **> malloc(sizeof(floating *) * ((L + 1) * 6 + 2 * p.n_threads))
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
    cdef nndl_spin_barrier barrier
    nndl_spin_barrier_init(&barrier, p.n_threads)
    p.barrier = &barrier
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
        for l in range(2 * p.n_threads):
            X[l] = <floating *> cnp.PyArray_DATA(x_bufs[l])
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


cdef void _set_layers(Plan *p, list sizes):
    """Layer sizes, their 16-unit blocks and padded widths (the input is not padded)."""
    cdef int l
    p.n_layers = len(sizes) - 1
    for l in range(p.n_layers + 1):
        p.sizes[l] = sizes[l]
        p.n_blocks[l] = (sizes[l] + BW - 1) // BW
        p.padded[l] = p.n_blocks[l] * BW if l > 0 else sizes[0]


def pack_weights(w):
    """(n_out, n_in) → (n_blocks, n_in, 16) blocks of 16 output units, zero-padded."""
    n_out, n_in = w.shape
    nb = (n_out + BW - 1) // BW
    padded = np.zeros((nb * BW, n_in), dtype=w.dtype)
    padded[:n_out] = w
    return np.ascontiguousarray(padded.reshape(nb, BW, n_in).transpose(0, 2, 1))


def unpack_weights(wp, int n_out):
    """Inverse of pack_weights: (n_blocks, n_in, 16) → (n_out, n_in)."""
    nb, n_in, _ = wp.shape
    return wp.transpose(0, 2, 1).reshape(nb * BW, n_in)[:n_out]


def pack_bias(b):
    n_out = b.shape[0]
    out = np.zeros(((n_out + BW - 1) // BW) * BW, dtype=b.dtype)
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
    velocities_w, velocities_b : like weights/biases; required when momentum != 0  # IN/OUT
    num_threads : OpenMP threads (results do not depend on it)
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
    sizes, dtype = _check_layers(weights, biases)
    _set_layers(&p, sizes)
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
    packed_w = [pack_weights(w) for w in weights]
    packed_b = [pack_bias(b) for b in biases]
    packed_vw = [pack_weights(v) for v in velocities_w] if p.use_momentum else None
    packed_vb = [pack_bias(v) for v in velocities_b] if p.use_momentum else None
    a_bufs = [np.zeros((mbs, p.padded[l]), dtype) for l in range(1, L)]
    d_bufs = [np.zeros((mbs, p.padded[l]), dtype) for l in range(1, L)]
    x_bufs = [np.empty((mbs, p.sizes[0]), dtype) for _ in range(2 * num_threads)]
    cdef cnp.ndarray out_all = np.zeros((num_threads, mbs, p.padded[L]), dtype)
    cdef cnp.ndarray dout_all = np.zeros((num_threads, mbs, p.padded[L]), dtype)
    cdef cnp.ndarray Y_arr = Y
    if dtype == np.float64:
        _run_epoch(&p, packed_w, packed_b, packed_vw, packed_vb, a_bufs, d_bufs, x_bufs,
                   out_all, dout_all, Y_arr, <double> 0)
    else:
        _run_epoch(&p, packed_w, packed_b, packed_vw, packed_vb, a_bufs, d_bufs, x_bufs,
                   out_all, dout_all, Y_arr, <float> 0)
    for l in range(L):
        weights[l][...] = unpack_weights(packed_w[l], p.sizes[l + 1])
        biases[l][:, 0] = packed_b[l][:p.sizes[l + 1]]
        if p.use_momentum:
            velocities_w[l][...] = unpack_weights(packed_vw[l], p.sizes[l + 1])
            velocities_b[l][:, 0] = packed_vb[l][:p.sizes[l + 1]]


cdef void _forward_chunk(const Plan *p, floating **W, floating **B, const floating *x,
                         int m, floating *scratch, floating *out) noexcept nogil:
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
    for l in range(1, L):
        cur = bufs[l & 1]
        for blk in range(p.n_blocks[l]):
            _hidden_block(W[l] + <Py_ssize_t> blk * p.sizes[l - 1] * BW, B[l], a_prev,
                          p.sizes[l - 1], ld_prev, cur, p.padded[l], blk, p.sizes[l], m)
        a_prev = cur
        ld_prev = p.padded[l]
    cur = bufs[L & 1]
    _output_layer(p, W[L], B[L], a_prev, ld_prev, m, cur)
    for i in range(m):
        for j in range(p.sizes[L]):
            out[<Py_ssize_t> i * p.sizes[L] + j] = cur[<Py_ssize_t> i * p.padded[L] + j]


cdef void _convert_rows(const void *src, bint src_f32, Py_ssize_t n_values,
                        floating *dst) noexcept nogil:
    """Inputs of another float type into the compute type (exact for float → double)."""
    cdef Py_ssize_t j
    if src_f32:
        if floating is double:
            nndl_convert_f2d(<int> n_values, <const float *> src, dst)
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
    cdef bint convert = X.dtype != out.dtype
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
    scratch_arr = np.empty((num_threads, per_thread), dtype=out.dtype)
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
                _forward_chunk(p, W, B, x_chunk, m, buf, op + c0 * p.sizes[L])
    finally:
        free(W)
    return 0


def forward(X, list weights, list biases, bint softmax=False, int num_threads=1,
            int chunk=256):
    """Network outputs for every row of ``X``: (n, n_in) → (n, n_out).

    Weights and biases share one dtype (float32 or float64), the compute
    dtype; weights are (n_out, n_in), biases (n_out, 1). ``X`` may be float32 or
    float64 (converted chunk by chunk, no copy of the whole matrix). Hidden
    layers are sigmoid, the output sigmoid or softmax. Examples are processed
    in chunks of ``chunk``, chunks in parallel; each output row depends only on
    its own example, so results do not depend on the thread count.
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
    _set_layers(&p, sizes)
    p.cost = LOG_LIKELIHOOD if softmax else CROSS_ENTROPY
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
