"""The first layer on sparse inputs (``_dense.sparse_rows``): the same numbers as
the dense rows, bit for bit, in training and inference, on every kernel set."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nndl_fast import _config

pytestmark = pytest.mark.skipif(not _config.use_compiled(), reason="compiled kernels only")

if _config.use_compiled():
    from nndl_fast import _dense


def _sparse_matrix(rng, n, n_in, density, dtype):
    X = rng.rand(n, n_in).astype(dtype)
    X[rng.rand(n, n_in) > density] = 0
    return X


def _net(rng, sizes, dtype):
    W = [rng.randn(b, a).astype(dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    B = [rng.randn(b, 1).astype(dtype) for b in sizes[1:]]
    return W, B


def _targets(rng, n, n_out, dtype):
    Y = np.zeros((n, n_out), dtype)
    Y[np.arange(n), rng.randint(0, n_out, n)] = 1
    return Y


def test_sparse_rows_layout():
    rng = np.random.RandomState(0)
    X = _sparse_matrix(rng, 7, 130, 0.2, np.float32)
    X[3] = 0                                   # an empty row
    xs = _dense.sparse_rows(X)
    assert (xs.n_rows, xs.n_cols) == X.shape
    assert xs.nnz == np.count_nonzero(X)
    assert xs.bits.shape == (7, 3)
    for i in range(7):
        cols = np.nonzero(X[i])[0]
        p0, p1 = xs.ptr[i], xs.ptr[i + 1]
        np.testing.assert_array_equal(xs.idx[p0:p1], cols)
        np.testing.assert_array_equal(xs.val[p0:p1], X[i, cols])
        bits = np.zeros(3 * 64, bool)
        for w in range(3):
            bits[w * 64:(w + 1) * 64] = [(int(xs.bits[i, w]) >> b) & 1 for b in range(64)]
        np.testing.assert_array_equal(np.nonzero(bits)[0], cols)
    assert not xs.val.flags.writeable and not xs.idx.flags.writeable
    assert "density" in repr(xs)
    # Denser than asked for: no sparse rows.
    assert _dense.sparse_rows(X, max_density=xs.density + 1e-9) is not None
    assert _dense.sparse_rows(X, max_density=xs.density * 0.99) is None


def _numpy_sparse_rows(X):
    """ptr, idx, val of X's nonzeros by NumPy (the layout sparse_rows promises)."""
    rows, cols = np.nonzero(X)
    ptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=X.shape[0]))])
    return ptr, cols, X[rows, cols]


def _assert_sparse_rows_are(xs, X):
    ptr, idx, val = _numpy_sparse_rows(X)
    np.testing.assert_array_equal(xs.ptr, ptr)
    np.testing.assert_array_equal(xs.idx, idx)
    np.testing.assert_array_equal(xs.val[:xs.nnz], val)
    assert xs.val.dtype == X.dtype and len(xs.val) == xs.nnz + 16
    assert (xs.val[xs.nnz:] == 0).all()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), n_in=st.integers(1, 200), density=st.floats(0, 1),
       f32=st.booleans(), seed=st.integers(0, 2 ** 31 - 1), threads=st.integers(1, 3))
def test_sparse_rows_are_numpys_nonzeros(n, n_in, density, f32, seed, threads):
    # Every column count (whole and partial vectors and words), empty and full rows.
    rng = np.random.RandomState(seed)
    X = _sparse_matrix(rng, n, n_in, density, np.float32 if f32 else np.float64)
    X[rng.rand(n) < 0.2] = 0
    X[rng.rand(n) < 0.1] = -2.5
    _assert_sparse_rows_are(_dense.sparse_rows(X, num_threads=threads), X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_rows_of_a_large_matrix(dtype):
    # Large enough for the values and columns to get memory of their own.
    from nndl_fast import _datacache
    rng = np.random.RandomState(2)
    X = _sparse_matrix(rng, 3000, 785, 0.2, dtype)
    xs = _dense.sparse_rows(X, num_threads=2)
    assert xs.val.nbytes >= _datacache.FRESH_MIN_BYTES
    _assert_sparse_rows_are(xs, X)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sizes", [[100, 30, 10], [100, 40, 20, 10], [70, 17, 3]])
@pytest.mark.parametrize("options", [
    {},
    {"lmbda": 2.0, "n_total": 300.0},
    {"lmbda": 2.0, "n_total": 300.0, "reg": 1},
    {"momentum": 0.9},
    {"cost": 1},
    {"cost": 2},
])
def test_training_equals_dense(dtype, sizes, options):
    rng = np.random.RandomState(sum(sizes))
    n = 203                                     # a short last mini-batch
    X = _sparse_matrix(rng, n, sizes[0], 0.2, np.float32)
    X[5] = 0
    Y = _targets(rng, n, sizes[-1], dtype)
    W0, B0 = _net(rng, sizes, dtype)
    xs = _dense.sparse_rows(X)
    order = rng.permutation(n).astype(np.int64)
    results = []
    for sparse, threads in ((None, 1), (xs, 1), (xs, 2), (xs, 3)):
        W = [w.copy() for w in W0]
        B = [b.copy() for b in B0]
        kw = dict(options)
        if "momentum" in kw:
            kw["velocities_w"] = [np.zeros_like(w) for w in W]
            kw["velocities_b"] = [np.zeros_like(b) for b in B]
        _dense.train_epoch(X, Y, order, W, B, 10, 0.5, num_threads=threads, X_sparse=sparse, **kw)
        results.append(W + B)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float64_inputs_and_forward(dtype):
    rng = np.random.RandomState(3)
    X = _sparse_matrix(rng, 300, 90, 0.25, np.float64)
    W, B = _net(rng, [90, 33, 10], dtype)
    xs = _dense.sparse_rows(X)
    for softmax in (False, True):
        dense = _dense.forward(X, W, B, softmax=softmax, num_threads=2, chunk=64)
        sparse = _dense.forward(X, W, B, softmax=softmax, num_threads=2, chunk=64, X_sparse=xs)
        np.testing.assert_array_equal(dense, sparse)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), n_in=st.integers(1, 200), hidden=st.integers(1, 40),
       density=st.sampled_from([0.0, 0.05, 0.3, 1.0]), batch=st.integers(1, 12),
       seed=st.integers(0, 2 ** 16))
def test_random_shapes(n, n_in, hidden, density, batch, seed):
    rng = np.random.RandomState(seed)
    X = _sparse_matrix(rng, n, n_in, density, np.float32)
    Y = _targets(rng, n, 4, np.float64)
    W0, B0 = _net(rng, [n_in, hidden, 4], np.float64)
    xs = _dense.sparse_rows(X)
    order = rng.randint(0, n, n).astype(np.int64)   # repeats are allowed
    out = []
    for sparse in (None, xs):
        W = [w.copy() for w in W0]
        B = [b.copy() for b in B0]
        _dense.train_epoch(X, Y, order, W, B, batch, 1.0, num_threads=2, X_sparse=sparse)
        out.append(W + B + [_dense.forward(X, W, B, X_sparse=sparse)])
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_rejects_mismatched_sparse_rows():
    rng = np.random.RandomState(0)
    X = _sparse_matrix(rng, 20, 30, 0.2, np.float32)
    W, B = _net(rng, [30, 5, 2], np.float64)
    Y = _targets(rng, 20, 2, np.float64)
    order = np.arange(20, dtype=np.int64)
    with pytest.raises(ValueError, match=r"X_sparse: expected the rows of a \(20, 30\) matrix"):
        _dense.train_epoch(X, Y, order, W, B, 5, 1.0, X_sparse=_dense.sparse_rows(X[:10]))
    with pytest.raises(TypeError, match="X_sparse: expected SparseRows"):
        _dense.forward(X, W, B, X_sparse=(X, X))
    with pytest.raises(ValueError, match="expected a 2-D float32/float64 array"):
        _dense.sparse_rows(X.astype(np.int32))


_GENERIC_SCRIPT = r"""
import numpy as np, sys
from nndl_fast import _dense
rng = np.random.RandomState(7)
X = rng.rand(150, 130).astype(np.float32)
X[rng.rand(150, 130) > 0.2] = 0
xs = _dense.sparse_rows(X)
Y = np.zeros((150, 10)); Y[np.arange(150), rng.randint(0, 10, 150)] = 1
order = rng.permutation(150).astype(np.int64)
out = []
for dtype in (np.float64, np.float32):
    W0 = [rng.randn(40, 130).astype(dtype), rng.randn(10, 40).astype(dtype)]
    B0 = [rng.randn(40, 1).astype(dtype), rng.randn(10, 1).astype(dtype)]
    res = []
    for sparse in (None, xs):
        W = [w.copy() for w in W0]; B = [b.copy() for b in B0]
        _dense.train_epoch(X, Y.astype(dtype), order, W, B, 10, 1.0, lmbda=1.0, n_total=150.0,
                           num_threads=2, X_sparse=sparse)
        res.append(np.concatenate([a.ravel().astype(np.float64) for a in W + B]
                                  + [_dense.forward(X, W, B, X_sparse=sparse).ravel()]))
    assert np.array_equal(res[0], res[1]), "sparse differs from dense"
    out.append(res[0])
np.save(sys.argv[1], np.concatenate(out))
print(_dense.kernel_isa())
"""


def test_portable_kernels_agree(run_with_kernels):
    """NNDL_FAST_KERNELS=generic runs the portable C kernels: sparse equals dense
    there too, and both kernel sets give the same numbers to rounding."""
    outs = {k: run_with_kernels(_GENERIC_SCRIPT, k) for k in ("default", "generic")}
    assert outs["generic"][0] == "generic"
    a, g = outs["default"][1], outs["generic"][1]
    half = a.size // 2
    np.testing.assert_allclose(g[:half], a[:half], rtol=1e-10, atol=1e-12)   # float64
    np.testing.assert_allclose(g[half:], a[half:], rtol=2e-4, atol=2e-5)     # float32


@pytest.mark.parametrize("decay_per_step", [0.9999, 0.5])
@pytest.mark.parametrize("sparse", [False, True])
def test_weight_decay_as_a_factor_matches_numpy(decay_per_step, sparse):
    """Plain L2 keeps W^1's decay as a factor per block (folded into the weights
    when it leaves [1e-3, 1e3] and at the end): the same numbers as decaying
    every weight at every step, to rounding."""
    from nndl_fast import _fallback
    rng = np.random.RandomState(11)
    n, eta = 300, 0.5
    X = _sparse_matrix(rng, n, 80, 0.2, np.float32)
    Y = _targets(rng, n, 10, np.float64)
    W0, B0 = _net(rng, [80, 40, 10], np.float64)
    lmbda = (1 - decay_per_step) * n / eta
    order = rng.permutation(n).astype(np.int64)
    W, B = [w.copy() for w in W0], [b.copy() for b in B0]
    _dense.train_epoch(X, Y, order, W, B, 10, eta, lmbda=lmbda, n_total=float(n), num_threads=2,
                       X_sparse=_dense.sparse_rows(X) if sparse else None)
    Wr, Br = [w.copy() for w in W0], [b.copy() for b in B0]
    _fallback.train_epoch(X, Y, order, Wr, Br, 10, eta, lmbda=lmbda, n_total=float(n))
    for a, b in zip(W + B, Wr + Br):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
