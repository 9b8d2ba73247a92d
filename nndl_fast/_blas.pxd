# Thin noexcept nogil wrappers over scipy.linalg.cython_blas, one fused type.
from cython cimport floating

cdef void gemm(bint trans_a, bint trans_b, int m, int n, int k,
               floating alpha, const floating *a, int lda,
               const floating *b, int ldb,
               floating beta, floating *c, int ldc) noexcept nogil

cdef void gemm_rowmajor(bint trans_a, bint trans_b, int m, int n, int k,
                        floating alpha, const floating *a, int lda,
                        const floating *b, int ldb,
                        floating beta, floating *c, int ldc) noexcept nogil

cdef floating dot(int n, const floating *x, const floating *y) noexcept nogil
