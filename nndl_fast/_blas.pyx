"""BLAS through SciPy's cython_blas: nothing to link, the BLAS numpy/scipy ship.

``gemm`` follows BLAS (column-major): C[m, n] = alpha * op(A) op(B) + beta * C.
``gemm_rowmajor`` takes C-ordered arrays and swaps A and B so that the caller
can think in NumPy terms: C (m, n) = alpha * op(A) @ op(B) + beta * C.
"""
from scipy.linalg.cython_blas cimport dgemm, sgemm, ddot, sdot


cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k,
               floating alpha, const floating *a, int lda,
               const floating *b, int ldb,
               floating beta, floating *c, int ldc) noexcept nogil:
    cdef char ta = b't' if trans_a else b'n'
    cdef char tb = b't' if trans_b else b'n'
    if m <= 0 or n <= 0:
        return
    if floating is float:
        sgemm(&ta, &tb, &m, &n, &k, &alpha, <float *> a, &lda, <float *> b, &ldb,
              &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &alpha, <double *> a, &lda, <double *> b, &ldb,
              &beta, c, &ldc)


cdef void gemm_rowmajor(bint trans_a, bint trans_b, int m, int n, int k,
                        floating alpha, const floating *a, int lda,
                        const floating *b, int ldb,
                        floating beta, floating *c, int ldc) noexcept nogil:
    # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
    gemm(trans_b, trans_a, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc)


cdef floating dot(int n, const floating *x, const floating *y) noexcept nogil:
    cdef int one = 1
    if floating is float:
        return sdot(&n, <float *> x, &one, <float *> y, &one)
    else:
        return ddot(&n, <double *> x, &one, <double *> y, &one)


def _gemm_rowmajor_check(a, b, bint trans_a=False, bint trans_b=False,
                         double alpha=1.0, double beta=0.0, c=None):
    """Test hook: C = alpha op(A) op(B) + beta C through the wrapper (NumPy arrays)."""
    import numpy as np
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b, dtype=a.dtype)
    m = a.shape[1] if trans_a else a.shape[0]
    k = a.shape[0] if trans_a else a.shape[1]
    n = b.shape[0] if trans_b else b.shape[1]
    kb = b.shape[1] if trans_b else b.shape[0]
    if k != kb:
        raise ValueError("inner dimensions differ: %d and %d" % (k, kb))
    out = np.zeros((m, n), dtype=a.dtype) if c is None else np.array(c, dtype=a.dtype, order="C")
    if a.dtype == np.float64:
        _gemm_d(a, b, trans_a, trans_b, alpha, beta, out)
    elif a.dtype == np.float32:
        _gemm_s(a, b, trans_a, trans_b, alpha, beta, out)
    else:
        raise TypeError("expected float32 or float64, got %s" % a.dtype)
    return out


cdef _gemm_d(const double[:, ::1] a, const double[:, ::1] b, bint ta, bint tb,
             double alpha, double beta, double[:, ::1] c):
    cdef int k = a.shape[0] if ta else a.shape[1]
    with nogil:
        gemm_rowmajor(ta, tb, <int> c.shape[0], <int> c.shape[1], k, alpha,
                      &a[0, 0], <int> a.shape[1], &b[0, 0], <int> b.shape[1],
                      beta, &c[0, 0], <int> c.shape[1])


cdef _gemm_s(const float[:, ::1] a, const float[:, ::1] b, bint ta, bint tb,
             float alpha, float beta, float[:, ::1] c):
    cdef int k = a.shape[0] if ta else a.shape[1]
    with nogil:
        gemm_rowmajor(ta, tb, <int> c.shape[0], <int> c.shape[1], k, alpha,
                      &a[0, 0], <int> a.shape[1], &b[0, 0], <int> b.shape[1],
                      beta, &c[0, 0], <int> c.shape[1])
