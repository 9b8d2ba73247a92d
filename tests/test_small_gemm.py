"""The small-operand GEMM kernels of the conv engine (src_c/small_gemm.h) against
NumPy, for every transposition case the engine uses, odd sizes, alpha and beta
(beta 0 with NaN in C), float32 and float64, operands that are row slices of
larger arrays; and the conv engine with them against the engine with BLAS.
These run on the kernel path of this process; tests/test_kernel_paths.py runs
them again on every other path this processor has."""
import numpy as np
import pytest

from nndl_fast import _config

pytestmark = pytest.mark.skipif(not _config.use_compiled(), reason="compiled kernels only")

CASES = [(False, False), (False, True), (True, False)]


def _convnet():
    from nndl_fast import _convnet
    return _convnet


def _operands(rng, ta, tb, m, n, k, dtype, pad=0):
    """op(A) (m, k), op(B) (k, n) and C (m, n) as row slices of wider arrays
    (rows pad values longer than they are wide)."""
    def block(rows, cols):
        big = rng.standard_normal((rows, cols + pad + 1)).astype(dtype)
        return big[:, 1:cols + 1]
    a = block(k, m) if ta else block(m, k)
    b = block(n, k) if tb else block(k, n)
    c = block(m, n)
    return a, b, c


def _expected(a, b, c, ta, tb, alpha, beta):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    out = alpha * ((a64.T if ta else a64) @ (b64.T if tb else b64))
    if beta != 0:
        out += beta * c.astype(np.float64)
    return out


def _check(got, want, k, dtype):
    eps = np.finfo(dtype).eps
    # each element is a sum of k products: error up to about k ulps of the
    # magnitudes summed
    atol = 4 * (k + 2) * eps * 3.0 * max(1.0, np.sqrt(k))
    np.testing.assert_allclose(got, want, rtol=4 * (k + 2) * eps, atol=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", CASES)
def test_small_gemm_kernel_matches_numpy(ta, tb, dtype):
    C = _convnet()
    rng = np.random.default_rng(7)
    for m in (1, 3, 10, 16, 17):
        for n in (100, 10, 1, 17):
            for k in range(1, 34, 4 if n == 100 else 1):
                for alpha, beta in ((1.0, 0.0), (-0.37, 1.0), (0.5, 0.9999)):
                    a, b, c = _operands(rng, ta, tb, m, n, k, dtype, pad=k % 3)
                    want = _expected(a, b, c, ta, tb, alpha, beta)
                    if beta == 0:
                        c[...] = np.nan   # BLAS's rule: C is not read
                    got = C.small_gemm(a, b, c, ta, tb, alpha, beta)
                    assert got is c
                    _check(c, want, k, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", CASES)
def test_small_gemm_kernel_engine_shapes(ta, tb, dtype):
    """The dense layers' shapes at mini-batch 10 (blocks of 96 of 2880 inputs,
    100, 10 and 1000 outputs), long sums past the kernels' buffer chunks, and
    what the engine's dispatch (kernel or BLAS) gives."""
    C = _convnet()
    rng = np.random.default_rng(8)
    shapes = {(False, False): [(10, 100, 96), (10, 10, 100), (10, 1000, 96), (10, 7, 1500)],
              (False, True): [(10, 96, 100), (10, 100, 10), (10, 96, 1000), (16, 5, 700)],
              (True, False): [(96, 100, 10), (100, 10, 10), (96, 1000, 10), (33, 3, 16)]}
    for m, n, k in shapes[(ta, tb)]:
        for kernel in (True, False):
            a, b, c = _operands(rng, ta, tb, m, n, k, dtype, pad=3)
            want = _expected(a, b, c, ta, tb, -0.01, 0.999)
            C.small_gemm(a, b, c, ta, tb, -0.01, 0.999, kernel=kernel)
            _check(c, want, k, dtype)
            c[...] = np.nan
            C.small_gemm(a, b, c, ta, tb, 1.0, 0.0, kernel=kernel)
            _check(c, _expected(a, b, c, ta, tb, 1.0, 0.0), k, dtype)


def test_small_gemm_kernel_empty_and_bad_arguments():
    C = _convnet()
    a = np.ones((3, 0), np.float32)
    b = np.ones((0, 4), np.float32)
    c = np.full((3, 4), 2.0, np.float32)
    C.small_gemm(a, b, c, beta=0.5)
    np.testing.assert_array_equal(c, 1.0)
    x = np.ones((3, 3))
    with pytest.raises(ValueError, match="both operands transposed"):
        C.small_gemm(x, x, x.copy(), True, True)
    with pytest.raises(ValueError, match="shapes do not match"):
        C.small_gemm(x, np.ones((4, 3)), x.copy())
    with pytest.raises(TypeError, match="one dtype"):
        C.small_gemm(x, x.astype(np.float32), x.copy())
    with pytest.raises(ValueError, match="contiguous rows"):
        C.small_gemm(np.ones((3, 6))[:, ::2], x, x.copy())
    with pytest.raises(ValueError, match="m <= 256"):
        C.small_gemm(np.ones((300, 2)), np.ones((3, 2)), np.ones((300, 3)), False, True)
    with pytest.raises(ValueError, match="mode"):
        C.small_gemm_mode(2)


def test_small_gemm_kernel_rule_and_path_choice():
    C = _convnet()
    from nndl_fast import _dense
    assert C.small_gemm_fits(False, False, 10, 100, 96)
    assert C.small_gemm_fits(False, True, 10, 96, 100)
    assert C.small_gemm_fits(True, False, 96, 100, 10)
    assert C.small_gemm_fits(False, False, 64, 100, 500)
    assert C.small_gemm_fits(False, True, 40, 96, 100)
    assert C.small_gemm_fits(True, False, 500, 64, 40)
    assert not C.small_gemm_fits(False, False, 65, 100, 96)
    assert not C.small_gemm_fits(False, True, 65, 96, 100)
    assert not C.small_gemm_fits(True, False, 96, 100, 65)
    assert not C.small_gemm_fits(True, True, 2, 2, 2)
    # AVX-512 keeps BLAS (OpenBLAS's small-matrix kernels for that processor
    # were faster); AVX2 and the baseline take the kernels
    assert C.small_gemm_mode() == (_dense.kernel_isa() != "avx512")
    try:
        assert C.small_gemm_mode(0) is False
        assert C.small_gemm_mode(1) is True
    finally:
        C.small_gemm_mode(-1)
    assert C.small_gemm_mode() == (_dense.kernel_isa() != "avx512")


def test_small_gemm_path_sends_each_shape_where_it_is_faster():
    """The conv engine's GEMM (kernel=False) on this path: on AVX2 and the
    baseline the kernels take A·B with up to 64 rows (the second conv layer's
    40 filters) and A^T·B with up to 64 terms, BLAS A·B^T beyond 16 rows; on
    AVX-512 BLAS takes them all. Each result is, bit for bit, the one of the
    side it was sent to."""
    C = _convnet()
    from nndl_fast import _dense
    rng = np.random.default_rng(5)
    f = np.float32
    W, col, dz = (rng.standard_normal(s).astype(f) for s in ((40, 500), (500, 64), (40, 64)))
    cases = [((W, col, False, False), (40, 64), 64),            # conv forward W·col
             ((W, dz, True, False), (500, 64), 64),             # input gradient W^T·dz
             ((dz, col, False, True), (40, 500), 16),           # filter gradient dz·col^T
             ((dz[:10], col, False, True), (10, 500), 16)]      # ten rows of it
    on = _dense.kernel_isa() != "avx512"
    differ = 0
    for (a, b, ta, tb), shape, limit in cases:
        side = a.shape[0]   # rows of A·B and A·B^T, terms of A^T·B
        kernel = C.small_gemm(a, b, np.zeros(shape, f), ta, tb, kernel=True)
        try:
            C.small_gemm_mode(0)
            blas = C.small_gemm(a, b, np.zeros(shape, f), ta, tb, kernel=False)
        finally:
            C.small_gemm_mode(-1)
        got = C.small_gemm(a, b, np.zeros(shape, f), ta, tb, kernel=False)
        want = kernel if on and side <= limit else blas
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(kernel, blas, rtol=1e-4, atol=1e-3)
        differ += not np.array_equal(kernel, blas)
    assert differ, "the kernels and BLAS agreed bit for bit: the test tells nothing"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_net_with_small_gemm_kernel_agrees_with_blas(dtype):
    """A conv net (conv-pool, two FC layers with dropout, softmax; mini-batch 10)
    trained with the kernels and with BLAS alone ends with the same weights,
    to the dtype's rounding."""
    from nndl_fast import network3 as N
    C = _convnet()
    rng = np.random.default_rng(3)
    x, y = rng.random((60, 1 * 12 * 12)), rng.integers(0, 10, 60)
    nets = []
    try:
        for mode in (0, 1):
            C.small_gemm_mode(mode)
            np.random.seed(4)
            net = N.Network([N.ConvPoolLayer((6, 1, 5, 5), (10, 1, 12, 12), (2, 2)),
                             N.FullyConnectedLayer(6 * 4 * 4, 30, N.ReLU, p_dropout=0.2),
                             N.FullyConnectedLayer(30, 20, N.sigmoid),
                             N.SoftmaxLayer(20, 10, p_dropout=0.1)], 10, dtype=dtype)
            net._train_batches(x.astype(dtype), y, 0, 6, 0.1, 0.5, 6)
            nets.append([p.get_value().astype(np.float64) for p in net.params])
    finally:
        C.small_gemm_mode(-1)
    tol = 2e-4 if dtype == np.float32 else 1e-10
    for pa, pb in zip(*nets):
        np.testing.assert_allclose(pa, pb, rtol=tol, atol=tol)
