"""Compiled chapter-6 conv nets: the Python face of ``src_c/convnet.c``.

``train`` runs a run of mini-batches (typically up to 1000, so that the caller
can print the book's progress lines) in one OpenMP team with the GIL released;
``predict`` computes the last layer's outputs for a whole data set. The other
functions expose single kernels for the tests.

Layer descriptions (``spec``) are lists of ``nndl_fast.network3.KernelLayer``,
read here by field name, with ``w``/``b`` C-contiguous arrays of the compute dtype,
updated in place. Everything is checked here, before the GIL is released; the C
code never raises.
"""
from libc.stdint cimport int64_t, uint64_t

import numpy as np
cimport numpy as cnp

from nndl_fast._blas cimport gemm_rowmajor

cnp.import_array()

cdef extern from "convnet.h" nogil:
    ctypedef void (*nf_gemm_f)(int ta, int tb, int m, int n, int k, float alpha,
                               const float *a, int lda, const float *b, int ldb,
                               float beta, float *c, int ldc) noexcept nogil
    ctypedef void (*nf_gemm_d)(int ta, int tb, int m, int n, int k, double alpha,
                               const double *a, int lda, const double *b, int ldb,
                               double beta, double *c, int ldc) noexcept nogil
    enum: NF_MAX_LAYERS
    enum: NF_CONV, NF_DENSE, NF_SOFTMAX
    ctypedef struct nf_layer:
        int kind, act
        int c_in, h_in, w_in, n_filt, kh, kw, ph, pw, hc, wc, ho, wo
        int n_in, n_out
        double p_dropout
        void *w
        void *b
    ctypedef struct nf_net:
        int n_layers, n_conv, n_threads
        uint64_t dropout_seed
        nf_gemm_f gemm_f
        nf_gemm_d gemm_d
        nf_layer layers[NF_MAX_LAYERS]

    int nf_dense_block(int n_in, int n_out, int m)
    int nf_small_gemm_f(int ta, int tb, int m, int n, int k, float alpha, const float *a,
                        int lda, const float *b, int ldb, float beta, float *c, int ldc)
    int nf_small_gemm_d(int ta, int tb, int m, int n, int k, double alpha, const double *a,
                        int lda, const double *b, int ldb, double beta, double *c, int ldc)
    int nf_small_gemm_fits(int ta, int tb, int m, int n, int k)
    int nf_small_gemm_mode(int mode)
    int nf_sparse_dense_mode(int mode)
    int nf_small_gemm_kernel_f(int ta, int tb, int m, int n, int k, float alpha,
                               const float *a, int lda, const float *b, int ldb, float beta,
                               float *c, int ldc)
    int nf_small_gemm_kernel_d(int ta, int tb, int m, int n, int k, double alpha,
                               const double *a, int lda, const double *b, int ldb,
                               double beta, double *c, int ldc)
    int nf_conv_select_path(const char *name)
    int nf_train_f(const nf_net *net, const float *x, const int64_t *y, int64_t n_batches,
                   int m, double eta, double reg, int64_t first_step)
    int nf_train_d(const nf_net *net, const double *x, const int64_t *y, int64_t n_batches,
                   int m, double eta, double reg, int64_t first_step)
    int nf_predict_f(const nf_net *net, const float *x, int64_t n, float *out)
    int nf_predict_d(const nf_net *net, const double *x, int64_t n, double *out)
    void nf_conv_forward_f(nf_gemm_f g, const float *x, const float *w, float *z, int m,
                           int c, int h, int wd, int f, int kh, int kw, int nt)
    void nf_conv_forward_d(nf_gemm_d g, const double *x, const double *w, double *z, int m,
                           int c, int h, int wd, int f, int kh, int kw, int nt)
    int nf_conv_grad_f(nf_gemm_f g, const float *x, const float *w, const float *dz,
                       float *gw, float *dx, int m, int c, int h, int wd, int f, int kh,
                       int kw, int nt)
    int nf_conv_grad_d(nf_gemm_d g, const double *x, const double *w, const double *dz,
                       double *gw, double *dx, int m, int c, int h, int wd, int f, int kh,
                       int kw, int nt)
    void nf_pool_forward_f(const float *z, float *pooled, int n, int hc, int wc, int ph,
                           int pw, int nt)
    void nf_pool_forward_d(const double *z, double *pooled, int n, int hc, int wc, int ph,
                           int pw, int nt)
    void nf_pool_backward_f(const float *z, const float *pooled, const float *dpooled,
                            float *dz, int n, int hc, int wc, int ph, int pw, int nt)
    void nf_pool_backward_d(const double *z, const double *pooled, const double *dpooled,
                            double *dz, int n, int hc, int wc, int ph, int pw, int nt)
    double nf_softmax_nll_f(const float *z, const int64_t *y, float *p, float *dz, int m,
                            int k)
    double nf_softmax_nll_d(const double *z, const int64_t *y, double *p, double *dz, int m,
                            int k)
    void nf_dropout_mask_f(uint64_t seed, int layer, int64_t step, int64_t n, double p,
                           float *out)
    void nf_dropout_mask_d(uint64_t seed, int layer, int64_t step, int64_t n, double p,
                           double *out)


# The C code multiplies through these two: the path's small-operand kernels
# (src_c/small_gemm.h) for the shapes and paths where they beat BLAS, else BLAS
# (nndl_fast._blas, SciPy's cython_blas).
cdef void _gemm_f(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc) noexcept nogil:
    if not nf_small_gemm_f(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        gemm_rowmajor(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


cdef void _gemm_d(int ta, int tb, int m, int n, int k, double alpha, const double *a, int lda,
                  const double *b, int ldb, double beta, double *c, int ldc) noexcept nogil:
    if not nf_small_gemm_d(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        gemm_rowmajor(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


KIND_CONV, KIND_DENSE, KIND_SOFTMAX = NF_CONV, NF_DENSE, NF_SOFTMAX
MAX_LAYERS = NF_MAX_LAYERS


#: The kernels' activation codes by name (checked against the table by _dense).
from nndl_fast._dense import ACT_CODES


def _select_path():
    """The kernel path _dense chose (NNDL_FAST_KERNELS, else the fastest)."""
    from nndl_fast import _dense
    if nf_conv_select_path(_dense.kernel_isa().encode()) != 0:
        raise ValueError("the conv kernels cannot run the %s path" % _dense.kernel_isa())


_select_path()


def dense_block(int n_in, int n_out, int mini_batch_size):
    """Rows per block of a dense layer in training (independent of threads)."""
    if min(n_in, n_out, mini_batch_size) < 1:
        raise ValueError("expected positive sizes, got n_in=%d, n_out=%d, mini_batch_size=%d"
                         % (n_in, n_out, mini_batch_size))
    return nf_dense_block(n_in, n_out, mini_batch_size)


cdef void *_data(object a):
    return cnp.PyArray_DATA(<cnp.ndarray> a)


cdef _check_array(a, dtype, what):
    if not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.c_contiguous \
            or not a.flags.writeable:
        raise ValueError("%s must be a writeable C-contiguous %s array" % (what, dtype))


cdef _fill_net(nf_net *net, list spec, dtype, int num_threads, uint64_t seed):
    cdef int l, n_conv = 0
    cdef nf_layer *ly
    if not 1 <= len(spec) <= NF_MAX_LAYERS:
        raise ValueError("expected 1 to %d layers, got %d" % (NF_MAX_LAYERS, len(spec)))
    if num_threads < 1:
        raise ValueError("num_threads must be >= 1, got %d" % num_threads)
    net.n_layers = len(spec)
    net.n_threads = num_threads
    net.dropout_seed = seed
    net.gemm_f = _gemm_f
    net.gemm_d = _gemm_d
    for l, s in enumerate(spec):
        kind, act, n_in, n_out, p = s.kind, s.act, s.n_in, s.n_out, s.p_dropout
        w, b = s.w, s.b
        ly = &net.layers[l]
        ly.kind, ly.act = kind, act
        ly.n_in, ly.n_out, ly.p_dropout = n_in, n_out, p
        if kind == KIND_CONV:
            if l != n_conv:
                raise ValueError("conv-pool layers must come before the other layers")
            n_conv += 1
            c_in, h_in, w_in, n_filt = s.c_in, s.h_in, s.w_in, s.n_filt
            kh, kw, ph, pw = s.kh, s.kw, s.ph, s.pw
            ly.c_in, ly.h_in, ly.w_in, ly.n_filt = c_in, h_in, w_in, n_filt
            ly.kh, ly.kw, ly.ph, ly.pw = kh, kw, ph, pw
            ly.hc, ly.wc = h_in - kh + 1, w_in - kw + 1
            ly.ho, ly.wo = ly.hc // ph, ly.wc // pw
            if min(ly.hc, ly.wc, ph, pw, ly.ho, ly.wo, c_in, n_filt) < 1:
                raise ValueError("layer %d: filter/pool do not fit the image" % l)
            if n_in != c_in * h_in * w_in or n_out != n_filt * ly.ho * ly.wo:
                raise ValueError("layer %d: inconsistent conv sizes" % l)
            if w.shape != (n_filt, c_in, kh, kw) or b.shape != (n_filt,):
                raise ValueError("layer %d: w %s / b %s, expected (%d, %d, %d, %d) / (%d,)"
                                 % (l, w.shape, b.shape, n_filt, c_in, kh, kw, n_filt))
        elif kind in (KIND_DENSE, KIND_SOFTMAX):
            if (kind == KIND_SOFTMAX) != (l == len(spec) - 1):
                raise ValueError("the last layer, and only it, must be a softmax layer")
            if w.shape != (n_in, n_out) or b.shape != (n_out,):
                raise ValueError("layer %d: w %s / b %s, expected (%d, %d) / (%d,)"
                                 % (l, w.shape, b.shape, n_in, n_out, n_out))
            if not 0.0 <= p < 1.0:
                raise ValueError("layer %d: p_dropout must be in [0, 1), got %r" % (l, p))
        else:
            raise ValueError("layer %d: unknown kind %r" % (l, kind))
        if act not in ACT_CODES.values():
            raise ValueError("layer %d: unknown activation code %r" % (l, act))
        if l > 0 and spec[l - 1].n_out != n_in:
            raise ValueError("layer %d expects %d inputs, the layer before gives %d"
                             % (l, n_in, spec[l - 1].n_out))
        _check_array(w, dtype, "layer %d's w" % l)
        _check_array(b, dtype, "layer %d's b" % l)
        ly.w = _data(w)
        ly.b = _data(b)
    if net.layers[net.n_layers - 1].kind != KIND_SOFTMAX:
        raise ValueError("the last layer must be a softmax layer")
    net.n_conv = n_conv


def train(list spec, cnp.ndarray x, cnp.ndarray y, Py_ssize_t first_batch,
          Py_ssize_t n_batches, int mini_batch_size, double eta, double reg,
          long long first_step, unsigned long long seed, int num_threads):
    """Train mini-batches ``first_batch .. first_batch + n_batches - 1`` in order.

    x : (n, n_in) C-contiguous, the compute dtype     # IN
    y : (n,) int64 labels                              # IN
    The layers' w and b (in ``spec``) are updated in place. ``reg`` is
    lmbda / num_training_batches. Mini-batch k uses the dropout step
    ``first_step + k - first_batch``.
    """
    cdef nf_net net
    cdef int rc
    cdef int m = mini_batch_size
    dtype = x.dtype
    if dtype != np.float32 and dtype != np.float64:
        raise TypeError("x must be float32 or float64, got %s" % dtype)
    _fill_net(&net, spec, dtype, num_threads, seed)
    if x.ndim != 2 or x.shape[1] != net.layers[0].n_in or not x.flags.c_contiguous:
        raise ValueError("x must be C-contiguous (n, %d), got %s"
                         % (net.layers[0].n_in, (<object> x).shape))
    if y.ndim != 1 or y.dtype != np.int64 or not y.flags.c_contiguous \
            or y.shape[0] != x.shape[0]:
        raise ValueError("y must be a C-contiguous int64 array of %d labels" % x.shape[0])
    if m < 1 or first_batch < 0 or n_batches < 0 or \
            (first_batch + n_batches) * m > x.shape[0]:
        raise ValueError("mini-batches %d..%d of %d examples do not fit %d examples"
                         % (first_batch, first_batch + n_batches, m, x.shape[0]))
    if n_batches == 0:
        return
    yv = y[first_batch * m:(first_batch + n_batches) * m]
    if yv.min() < 0 or yv.max() >= net.layers[net.n_layers - 1].n_out:
        raise ValueError("labels must be in [0, %d)" % net.layers[net.n_layers - 1].n_out)
    cdef const int64_t *yp = (<const int64_t *> _data(y)) + first_batch * m
    cdef Py_ssize_t off = first_batch * m * x.shape[1]
    cdef void *xp = _data(x)
    cdef bint is_f32 = dtype == np.float32
    with nogil:
        if is_f32:
            rc = nf_train_f(&net, (<const float *> xp) + off, yp, n_batches, m, eta, reg,
                            first_step)
        else:
            rc = nf_train_d(&net, (<const double *> xp) + off, yp, n_batches, m, eta, reg,
                            first_step)
    if rc != 0:
        raise MemoryError("nndl_fast: could not allocate the training buffers")


def predict(list spec, cnp.ndarray x, int num_threads):
    """Outputs of the last layer (n, n_out) for inputs x (n, n_in), weight-scaled dropout."""
    cdef nf_net net
    cdef int rc
    dtype = x.dtype
    if dtype != np.float32 and dtype != np.float64:
        raise TypeError("x must be float32 or float64, got %s" % dtype)
    _fill_net(&net, spec, dtype, num_threads, 0)
    if x.ndim != 2 or x.shape[1] != net.layers[0].n_in or not x.flags.c_contiguous:
        raise ValueError("x must be C-contiguous (n, %d), got %s"
                         % (net.layers[0].n_in, (<object> x).shape))
    cdef cnp.ndarray out = np.empty((x.shape[0], net.layers[net.n_layers - 1].n_out),
                                    dtype=dtype)
    cdef int64_t n = x.shape[0]
    cdef void *xp = _data(x)
    cdef void *op = _data(out)
    if n == 0:
        return out
    cdef bint is_f32 = dtype == np.float32
    with nogil:
        if is_f32:
            rc = nf_predict_f(&net, <const float *> xp, n, <float *> op)
        else:
            rc = nf_predict_d(&net, <const double *> xp, n, <double *> op)
    if rc != 0:
        raise MemoryError("nndl_fast: could not allocate the inference buffers")
    return out


# ------------------------------------------------------------------ test hooks
def _floating(a, dtype=None):
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.dtype != np.float32 and a.dtype != np.float64:
        raise TypeError("expected float32 or float64, got %s" % a.dtype)
    return a


def conv_forward(x, w, int num_threads=1):
    """'valid' true convolution: x (m, C, H, W), w (F, C, kh, kw) -> (m, F, hc, wc)."""
    xa = _floating(x)
    wa = _floating(w, xa.dtype)
    m, c, h, wd = xa.shape
    f, c2, kh, kw = wa.shape
    if c2 != c or kh > h or kw > wd:
        raise ValueError("filters %s do not fit images %s" % (wa.shape, xa.shape))
    z = np.empty((m, f, h - kh + 1, wd - kw + 1), dtype=xa.dtype)
    if xa.dtype == np.float32:
        nf_conv_forward_f(_gemm_f, <float *> _data(xa), <float *> _data(wa),
                          <float *> _data(z), m, c, h, wd, f, kh, kw, num_threads)
    else:
        nf_conv_forward_d(_gemm_d, <double *> _data(xa), <double *> _data(wa),
                          <double *> _data(z), m, c, h, wd, f, kh, kw, num_threads)
    return z


def conv_grads(x, w, dz, int num_threads=1):
    """(dCost/dw, dCost/dx) of z = conv_forward(x, w) given dz."""
    xa = _floating(x)
    wa = _floating(w, xa.dtype)
    da = _floating(dz, xa.dtype)
    m, c, h, wd = xa.shape
    f, c2, kh, kw = wa.shape
    if c2 != c or da.shape != (m, f, h - kh + 1, wd - kw + 1):
        raise ValueError("shapes do not match: x %s, w %s, dz %s" % (xa.shape, wa.shape,
                                                                    da.shape))
    gw = np.empty_like(wa)
    dx = np.empty_like(xa)
    cdef int rc
    if xa.dtype == np.float32:
        rc = nf_conv_grad_f(_gemm_f, <float *> _data(xa), <float *> _data(wa),
                            <float *> _data(da), <float *> _data(gw), <float *> _data(dx),
                            m, c, h, wd, f, kh, kw, num_threads)
    else:
        rc = nf_conv_grad_d(_gemm_d, <double *> _data(xa), <double *> _data(wa),
                            <double *> _data(da), <double *> _data(gw), <double *> _data(dx),
                            m, c, h, wd, f, kh, kw, num_threads)
    if rc != 0:
        raise MemoryError()
    return gw, dx


def pool_forward(z, poolsize, int num_threads=1):
    """Max-pool (ignore border) of z (..., hc, wc)."""
    za = _floating(z)
    ph, pw = poolsize
    hc, wc = za.shape[za.ndim - 2], za.shape[za.ndim - 1]
    if not (1 <= ph <= hc and 1 <= pw <= wc):
        raise ValueError("pool %s does not fit %s" % (poolsize, za.shape))
    n = za.size // (hc * wc)
    out = np.empty(za.shape[:za.ndim - 2] + (hc // ph, wc // pw), dtype=za.dtype)
    if za.dtype == np.float32:
        nf_pool_forward_f(<float *> _data(za), <float *> _data(out), n, hc, wc, ph, pw,
                          num_threads)
    else:
        nf_pool_forward_d(<double *> _data(za), <double *> _data(out), n, hc, wc, ph, pw,
                          num_threads)
    return out


def pool_backward(z, pooled, dpooled, poolsize, int num_threads=1):
    """Gradient through pool_forward (all tied maxima receive it, as Theano)."""
    za = _floating(z)
    pa = _floating(pooled, za.dtype)
    ga = _floating(dpooled, za.dtype)
    ph, pw = poolsize
    hc, wc = za.shape[za.ndim - 2], za.shape[za.ndim - 1]
    n = za.size // (hc * wc)
    if pa.shape != za.shape[:za.ndim - 2] + (hc // ph, wc // pw) or ga.shape != pa.shape:
        raise ValueError("pooled/dpooled shapes %s/%s do not match z %s"
                         % (pa.shape, ga.shape, za.shape))
    dz = np.empty_like(za)
    if za.dtype == np.float32:
        nf_pool_backward_f(<float *> _data(za), <float *> _data(pa), <float *> _data(ga),
                           <float *> _data(dz), n, hc, wc, ph, pw, num_threads)
    else:
        nf_pool_backward_d(<double *> _data(za), <double *> _data(pa), <double *> _data(ga),
                           <double *> _data(dz), n, hc, wc, ph, pw, num_threads)
    return dz


def softmax_nll(z, y):
    """(probabilities, mean negative log-likelihood, dCost/dz) for logits z (m, k)."""
    za = _floating(z)
    ya = np.ascontiguousarray(y, dtype=np.int64)
    m, k = za.shape
    if ya.shape != (m,) or (m and (ya.min() < 0 or ya.max() >= k)):
        raise ValueError("expected %d labels in [0, %d)" % (m, k))
    p = np.empty_like(za)
    dz = np.empty_like(za)
    if za.dtype == np.float32:
        cost = nf_softmax_nll_f(<float *> _data(za), <int64_t *> _data(ya), <float *> _data(p),
                                <float *> _data(dz), m, k)
    else:
        cost = nf_softmax_nll_d(<double *> _data(za), <int64_t *> _data(ya),
                                <double *> _data(p), <double *> _data(dz), m, k)
    return p, cost, dz


def dropout_mask(unsigned long long seed, int layer, long long step, shape, double p,
                 dtype=np.float64):
    """The keep-mask the training kernel draws (see reference.network3.dropout_mask)."""
    out = np.empty(shape, dtype=dtype)
    if out.size > 2**31 - 1:
        raise ValueError("mask too large")
    if out.dtype == np.float32:
        nf_dropout_mask_f(seed, layer, step, out.size, p, <float *> _data(out))
    elif out.dtype == np.float64:
        nf_dropout_mask_d(seed, layer, step, out.size, p, <double *> _data(out))
    else:
        raise TypeError("dtype must be float32 or float64")
    return out


def small_gemm_mode(mode=None):
    """Whether the conv engine's GEMMs take the small-operand kernels for the
    shapes they fit: ``None`` asks, ``-1`` restores the kernel path's choice,
    ``0`` always BLAS, ``1`` always the kernels (for benchmarks and tests)."""
    if mode is None:
        return bool(nf_small_gemm_mode(-2))
    if mode not in (-1, 0, 1):
        raise ValueError("mode must be None, -1, 0 or 1, got %r" % (mode,))
    return bool(nf_small_gemm_mode(mode))


def sparse_dense_mode(mode=None):
    """Whether the conv engine's dense layers multiply by their nonzero inputs
    only (``src_c/sparse_layer.h``): ``None`` asks, ``-1`` restores the default
    (layers after a ReLU or with dropout, at least 256 outputs), ``0`` never (the
    GEMMs), ``1`` always (for benchmarks and tests). Returns the mode."""
    if mode is None:
        return nf_sparse_dense_mode(-2)
    if mode not in (-1, 0, 1):
        raise ValueError("mode must be None, -1, 0 or 1, got %r" % (mode,))
    return nf_sparse_dense_mode(mode)


def small_gemm_fits(bint trans_a, bint trans_b, int m, int n, int k):
    """Whether the small-operand kernels take this shape (when they are on)."""
    return bool(nf_small_gemm_fits(trans_a, trans_b, m, n, k))


def _rows(a, what, writable=False):
    if not isinstance(a, np.ndarray) or a.ndim != 2:
        raise TypeError("%s must be a 2-d NumPy array" % what)
    if a.dtype != np.float32 and a.dtype != np.float64:
        raise TypeError("%s must be float32 or float64, got %s" % (what, a.dtype))
    isz = a.itemsize
    if writable and not a.flags.writeable:
        raise ValueError("%s must be writeable" % what)
    if a.size == 0:
        return max(a.shape[1], 1)
    if a.shape[1] > 1 and a.strides[1] != isz or a.shape[0] > 1 and (
            a.strides[0] % isz or a.strides[0] < a.shape[1] * isz):
        raise ValueError("%s must have contiguous rows, got strides %s" % (what, a.strides))
    return max(a.strides[0] // isz if a.shape[0] > 1 else a.shape[1], 1)


def small_gemm(a, b, c, bint trans_a=False, bint trans_b=False, alpha=1.0, beta=0.0,
               kernel=True):
    """c = alpha op(a) op(b) + beta c in place, by the small-operand kernel of
    this kernel path (``kernel=True``, whatever the shape) or by what the conv
    engine calls (``kernel=False``: the kernel where it fits, else BLAS).
    Arrays of one dtype with contiguous rows (row slices of larger arrays
    too); c is not read when beta is 0. Returns c."""
    lda = _rows(a, "a")
    ldb = _rows(b, "b")
    ldc = _rows(c, "c", True)
    if b.dtype != a.dtype or c.dtype != a.dtype:
        raise TypeError("a, b and c must have one dtype, got %s, %s, %s"
                        % (a.dtype, b.dtype, c.dtype))
    cdef int m = a.shape[1] if trans_a else a.shape[0]
    cdef int k = a.shape[0] if trans_a else a.shape[1]
    cdef int n = b.shape[0] if trans_b else b.shape[1]
    kb = b.shape[1] if trans_b else b.shape[0]
    if kb != k or c.shape != (m, n):
        raise ValueError("shapes do not match: op(a) (%d, %d), op(b) (%d, %d), c %s"
                         % (m, k, kb, n, c.shape))
    if trans_a and trans_b:
        raise ValueError("the small-operand kernels do not take both operands transposed")
    if kernel and trans_b and m > 256:
        raise ValueError("the small-operand kernels take a.b^T with m <= 256, got m=%d" % m)
    if min(m, n, k) == 0:
        if min(m, n) > 0:
            c *= beta
        return c
    cdef int ia = lda, ib = ldb, ic = ldc, ta = trans_a, tb = trans_b
    cdef Py_ssize_t pa = a.__array_interface__["data"][0]
    cdef Py_ssize_t pb = b.__array_interface__["data"][0]
    cdef Py_ssize_t pc = c.__array_interface__["data"][0]
    cdef bint ker = kernel
    cdef float fa = alpha, fb = beta
    cdef double da = alpha, db = beta
    if a.dtype == np.float32:
        with nogil:
            if ker:
                nf_small_gemm_kernel_f(ta, tb, m, n, k, fa, <const float *> pa, ia,
                                       <const float *> pb, ib, fb, <float *> pc, ic)
            else:
                _gemm_f(ta, tb, m, n, k, fa, <const float *> pa, ia, <const float *> pb, ib,
                        fb, <float *> pc, ic)
    else:
        with nogil:
            if ker:
                nf_small_gemm_kernel_d(ta, tb, m, n, k, da, <const double *> pa, ia,
                                       <const double *> pb, ib, db, <double *> pc, ic)
            else:
                _gemm_d(ta, tb, m, n, k, da, <const double *> pa, ia, <const double *> pb, ib,
                        db, <double *> pc, ic)
    return c
