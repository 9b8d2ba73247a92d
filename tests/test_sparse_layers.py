"""The conv engine's dense layers on mostly-zero inputs (src_c/sparse_layer.h):
after a ReLU or with dropout they multiply by the nonzero inputs only. Against the
GEMMs (``_convnet.sparse_dense_mode(0)``) and the NumPy reference, for every
activation below the layer, with and without dropout; bit for bit the same for
any thread count (the blocks go to whichever thread is free). These run on the
kernel path of this process; tests/test_kernel_paths.py runs them again on every
other path this processor has."""
import numpy as np
import pytest

from nndl_fast import _config
from nndl_fast import network3 as N
from nndl_fast.reference import network3 as R

pytestmark = pytest.mark.skipif(not _config.use_compiled(), reason="compiled kernels only")

ACTS = ["sigmoid", "tanh", "ReLU", "linear"]


@pytest.fixture
def sparse_mode():
    """Sets ``_convnet.sparse_dense_mode`` for one test, then restores the default."""
    from nndl_fast import _convnet
    yield _convnet.sparse_dense_mode
    _convnet.sparse_dense_mode(-1)


def wide_net(mod, act, p, m=10, dtype=np.float64, seed=4, n_hidden=300, **kw):
    """A conv-pool layer, two dense layers wide enough for the sparse products
    (at least 256 outputs; 300 inputs in several row blocks), softmax."""
    np.random.seed(seed)
    fn = getattr(mod, act)
    layers = [mod.ConvPoolLayer((12, 1, 5, 5), (m, 1, 14, 14), (2, 2), mod.ReLU),
              mod.FullyConnectedLayer(12 * 5 * 5, n_hidden, fn, p_dropout=p),
              mod.FullyConnectedLayer(n_hidden, 256, mod.ReLU, p_dropout=p),
              mod.SoftmaxLayer(256, 10, p_dropout=p)]
    return (N.Network if mod is N else R.Network)(layers, m, dtype=dtype, **kw)


def data(n=60, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 14 * 14))
    x[x < 0.6] = 0          # inputs mostly zero, as MNIST's
    return x, rng.integers(0, 10, n)


def params(net):
    return [p.get_value().astype(np.float64) for p in net.params]


def test_sparse_dense_mode_switch(sparse_mode):
    assert sparse_mode() == -1
    assert sparse_mode(0) == 0 and sparse_mode(1) == 1 and sparse_mode(-1) == -1
    with pytest.raises(ValueError, match="mode must be"):
        sparse_mode(2)
    assert sparse_mode() == -1


def test_narrow_layers_keep_their_gemms(sparse_mode):
    """Under 256 outputs a layer after a ReLU with dropout keeps the GEMMs by
    default: the same bits as with the sparse products switched off."""
    x, y = data()
    runs = []
    for mode in (0, -1):
        sparse_mode(mode)
        np.random.seed(4)
        net = N.Network([N.ConvPoolLayer((12, 1, 5, 5), (10, 1, 14, 14), (2, 2), N.ReLU),
                         N.FullyConnectedLayer(12 * 5 * 5, 255, N.ReLU, p_dropout=0.5),
                         N.SoftmaxLayer(255, 10, p_dropout=0.5)], 10, num_threads=2)
        net._train_batches(x, y, 0, 6, 0.1, 0.0, 6)
        runs.append(params(net))
    for pa, pb in zip(*runs):
        np.testing.assert_array_equal(pa, pb)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("p", [0.0, 0.4])
def test_sparse_products_equal_reference(act, p, sparse_mode):
    """Every dense layer on the sparse products (mode 1, the small softmax too):
    the reference's weights after ten steps, whatever the activation below."""
    sparse_mode(1)
    eta = 0.02 if act == "linear" else 0.3
    a, b = wide_net(N, act, p, num_threads=2), wide_net(R, act, p)
    x, y = data()
    a._train_batches(x, y, 0, 6, eta, 0.1, 6)
    b._train_batches(x, y, 0, 6, eta, 0.1, 6)
    for pa, pb in zip(params(a), params(b)):
        np.testing.assert_allclose(pa, pb, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.predict_proba(x), b.predict_proba(x), rtol=1e-10,
                               atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_products_agree_with_the_gemms(dtype, sparse_mode):
    """The default (sparse products after the ReLUs and dropout) against GEMMs
    everywhere: the same weights to the dtype's rounding, but not bit for bit
    (the sums are rounded in another order)."""
    x, y = data()
    runs = []
    for mode in (0, -1):
        sparse_mode(mode)
        net = wide_net(N, "ReLU", 0.5, dtype=dtype, num_threads=2)
        net._train_batches(x.astype(dtype), y, 0, 6, 0.1, 0.0, 6)
        runs.append(params(net))
    tol = 2e-4 if dtype == np.float32 else 1e-10
    differ = 0
    for pa, pb in zip(*runs):
        np.testing.assert_allclose(pa, pb, rtol=tol, atol=tol)
        differ += not np.array_equal(pa, pb)
    assert differ, "GEMMs and sparse products agreed bit for bit: the sparse ones did not run"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lmbda", [0.0, 0.5])
def test_sparse_products_are_the_same_for_any_thread_count(dtype, lmbda):
    """1, 2 and 3 threads, blocks handed out as threads come free: the same bits.
    With lmbda 0 the rows of W no input reached are left as they were."""
    x, y = data(100)
    nets = [wide_net(N, "ReLU", 0.5, dtype=dtype, num_threads=t) for t in (1, 2, 3)]
    w0 = nets[0].layers[2].w.get_value().copy()
    for net in nets:
        net._train_batches(x.astype(dtype), y, 0, 10, 0.1, lmbda, 10)
    for net in nets[1:]:
        for pa, pb in zip(nets[0].params, net.params):
            np.testing.assert_array_equal(pa.get_value(), pb.get_value())
        np.testing.assert_array_equal(nets[0].predict_proba(x), net.predict_proba(x))
    changed = np.any(nets[0].layers[2].w.get_value() != w0, axis=1)
    if lmbda:
        assert changed.all()
    else:
        assert changed.any()


def test_wide_layers_with_many_examples_and_big_blocks(sparse_mode):
    """Mini-batches of 64 and layers of 3,000 inputs (blocks wider than the
    mini-batch, more than four examples a row): the reference's numbers."""
    def build(mod):
        np.random.seed(9)
        return (N.Network if mod is N else R.Network)(
            [mod.FullyConnectedLayer(196, 3000, mod.ReLU, p_dropout=0.3),
             mod.FullyConnectedLayer(3000, 300, mod.tanh, p_dropout=0.2),
             mod.SoftmaxLayer(300, 10)], 64, dtype=np.float64)
    x, y = data(128)
    a, b = build(N), build(R)
    a._train_batches(x, y, 0, 2, 0.2, 0.1, 2)
    b._train_batches(x, y, 0, 2, 0.2, 0.1, 2)
    for pa, pb in zip(params(a), params(b)):
        np.testing.assert_allclose(pa, pb, rtol=1e-9, atol=1e-11)
