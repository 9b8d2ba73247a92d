"""nndl_fast.network3: gradients, agreement with the NumPy reference, thread
independence, the book's API and printed lines."""
import contextlib
import io
import os
import re
import threading

import numpy as np
import pytest

from nndl_fast import network3 as N
from nndl_fast.reference import network3 as R
from nndl_fast.gradient_check import central_differences

# Every test here runs twice: compiled in the main suite, and on the reference
# classes in pure-Python mode (test_fallback.test_purepython_subset).
pytestmark = pytest.mark.purepython

ACTS = ["sigmoid", "tanh", "ReLU", "linear"]


def small_layers(mod, act, m, p=0.0):
    """Two conv-pool layers (odd shapes, pool 2x2 and 1x2), two FC, softmax."""
    fn = getattr(mod, act)
    return [mod.ConvPoolLayer((3, 2, 3, 3), (m, 2, 9, 8), (2, 2), fn),
            mod.ConvPoolLayer((4, 3, 2, 2), (m, 3, 3, 3), (1, 2), fn),
            mod.FullyConnectedLayer(4 * 2 * 1, 7, fn, p_dropout=p),
            mod.FullyConnectedLayer(7, 5, fn, p_dropout=p),
            mod.SoftmaxLayer(5, 4, p_dropout=p)]


def small_net(mod, act, m=4, p=0.0, dtype=np.float64, seed=3, **kw):
    np.random.seed(seed)
    layers = small_layers(mod, act, m, p)
    # the softmax starts at zero: give it weights so every gradient is exercised
    layers[-1].w.set_value(0.5 * np.random.standard_normal(layers[-1].w.shape))
    layers[-1].b.set_value(0.5 * np.random.standard_normal(layers[-1].b.shape))
    return (N.Network if mod is N else R.Network)(layers, m, dtype=dtype, **kw)


def small_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 2 * 9 * 8)), rng.integers(0, 4, n)


def params(net):
    return [p.get_value().copy() for p in net.params]


@pytest.mark.parametrize("act", ACTS)
def test_gradient_check_compiled(act):
    """One compiled SGD step (eta=1, lmbda>0) equals central differences of the cost."""
    net = small_net(N, act, num_threads=1)
    x, y = small_data(4)
    lmbda, nb = 0.3, 2
    reg = lmbda / nb

    def cost():
        p = net.predict_proba(x)
        return -np.mean(np.log(p[np.arange(4), y])) + 0.5 * reg * sum(
            np.sum(l.w.get_value() ** 2) for l in net.layers)

    guard = N.single_thread_blas()   # one BLAS limit for the many calls below
    guard.__enter__()
    try:
        _check_gradients(net, x, y, lmbda, nb, cost)
    finally:
        guard.__exit__(None, None, None)


def _check_gradients(net, x, y, lmbda, nb, cost):
    before = params(net)
    net.train_mini_batch(x, y, 1.0, lmbda, nb)
    analytic = [b - a for b, a in zip(before, params(net))]
    for p, v in zip(net.params, before):
        p.set_value(v.copy())
    numeric = central_differences(cost, [p.get_value(borrow=True) for p in net.params], 1e-6)
    for g, num in zip(analytic, numeric):
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_compiled_equals_reference(act, p):
    eta = 0.05 if act == "linear" else 0.5
    a = small_net(N, act, p=p)
    b = small_net(R, act, p=p)
    x, y = small_data()
    a._train_batches(x, y, 0, 10, eta, 0.2, 10)
    b._train_batches(x, y, 0, 10, eta, 0.2, 10)
    assert a.step == b.step == 10
    for pa, pb in zip(a.params, b.params):
        np.testing.assert_allclose(pa.get_value(), pb.get_value(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.predict_proba(x), b.predict_proba(x), rtol=1e-10,
                               atol=1e-12)


def test_fc_only_network_equals_reference():
    def build(mod):
        np.random.seed(5)
        return (N.Network if mod is N else R.Network)(
            [mod.FullyConnectedLayer(30, 20, mod.ReLU, p_dropout=0.2),
             mod.SoftmaxLayer(20, 10, p_dropout=0.1)], 5, dtype=np.float64)
    a, b = build(N), build(R)
    rng = np.random.default_rng(1)
    x, y = rng.random((50, 30)), rng.integers(0, 10, 50)
    a._train_batches(x, y, 0, 10, 0.3, 0.1, 10)
    b._train_batches(x, y, 0, 10, 0.3, 0.1, 10)
    for pa, pb in zip(a.params, b.params):
        np.testing.assert_allclose(pa.get_value(), pb.get_value(), rtol=1e-10, atol=1e-12)


def test_wide_dense_layers_in_small_row_blocks():
    """Row blocks of a dense layer stay under 10^6 multiply-adds when that leaves 32
    rows or more (OpenBLAS's small-matrix kernels); the results are the reference's
    and the same for any thread count."""
    from nndl_fast import _convnet
    assert _convnet.dense_block(2880, 100, 10) == 96       # the book's first conv net
    assert _convnet.dense_block(1000, 1000, 10) == 84      # its 1000-unit layers: 12 blocks
    assert _convnet.dense_block(1000, 1000, 100) == 104    # a cap under 32 rows: none
    for n_in, n_out, m, expected in [(640, 1000, 10, 80), (300, 200, 100, 40),
                                     (5000, 300, 10, 160)]:   # (the last one not capped)
        block = _convnet.dense_block(n_in, n_out, m)
        assert block == expected and m * block * n_out <= 10 ** 6
        assert -(-n_in // block) % 4 == 0      # a multiple of 4 blocks
    with pytest.raises(ValueError, match="positive sizes"):
        _convnet.dense_block(100, 0, 10)

    def build(mod, **kw):   # 300 inputs in 8 blocks of 40 rows (3 of 104 uncapped)
        np.random.seed(7)
        return (N.Network if mod is N else R.Network)(
            [mod.FullyConnectedLayer(300, 200, mod.sigmoid, p_dropout=0.1),
             mod.SoftmaxLayer(200, 10)], 100, dtype=np.float64, **kw)
    rng = np.random.default_rng(2)
    x, y = rng.random((300, 300)), rng.integers(0, 10, 300)
    nets = [build(N, num_threads=t) for t in (1, 2, 3)] + [build(R)]
    for net in nets:
        net._train_batches(x, y, 0, 3, 0.5, 0.1, 3)
    for net in nets[1:3]:
        for pa, pb in zip(nets[0].params, net.params):
            np.testing.assert_array_equal(pa.get_value(), pb.get_value())
    for pa, pb in zip(nets[0].params, nets[3].params):
        np.testing.assert_allclose(pa.get_value(), pb.get_value(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_identical_for_1_and_2_threads(dtype):
    x, y = small_data(80)
    nets = [small_net(N, "sigmoid", p=0.2, dtype=dtype, num_threads=t) for t in (1, 2)]
    for net in nets:
        net._train_batches(x, y, 0, 20, 0.5, 0.1, 20)
    for pa, pb in zip(nets[0].params, nets[1].params):
        np.testing.assert_array_equal(pa.get_value(), pb.get_value())
    np.testing.assert_array_equal(nets[0].predict_proba(x), nets[1].predict_proba(x))


def test_float32_close_to_float64():
    x, y = small_data(40)
    a = small_net(N, "sigmoid", dtype=np.float32)
    b = small_net(N, "sigmoid", dtype=np.float64)
    for net in (a, b):
        net._train_batches(x, y, 0, 10, 0.5, 0.0, 10)
    for pa, pb in zip(a.params, b.params):
        np.testing.assert_allclose(pa.get_value(), pb.get_value(), rtol=1e-3, atol=1e-4)


def test_python_threads_train_concurrently_with_same_results():
    x, y = small_data(400)
    # one OpenMP thread per network: teams of spinning threads must not outnumber cores
    seq = [small_net(N, "tanh", seed=s, dtype=np.float32, p=0.2, num_threads=1)
           for s in range(3)]
    for net in seq:
        net._train_batches(x, y, 0, 100, 0.3, 0.1, 100)
    par = [small_net(N, "tanh", seed=s, dtype=np.float32, p=0.2, num_threads=1)
           for s in range(3)]
    threads = [threading.Thread(target=net._train_batches, args=(x, y, 0, 100, 0.3, 0.1, 100))
               for net in par]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(seq, par):
        for pa, pb in zip(a.params, b.params):
            np.testing.assert_array_equal(pa.get_value(), pb.get_value())


def test_initialisation_is_the_books():
    np.random.seed(7)
    layer = N.ConvPoolLayer((20, 1, 5, 5), (10, 1, 28, 28), (2, 2))
    np.random.seed(7)
    w = np.random.normal(loc=0, scale=np.sqrt(1.0 / (20 * 25 / 4)), size=(20, 1, 5, 5))
    b = np.random.normal(loc=0, scale=1.0, size=(20,))
    np.testing.assert_array_equal(layer.w.get_value(), w)
    np.testing.assert_array_equal(layer.b.get_value(), b)
    fc = N.FullyConnectedLayer(30, 7)
    assert fc.w.get_value().shape == (30, 7) and fc.b.get_value().shape == (7,)
    sm = N.SoftmaxLayer(7, 3)
    assert not sm.w.get_value().any() and not sm.b.get_value().any()
    assert len(layer.params) == 2 and layer.params[0] is layer.w
    net = N.Network([layer, N.FullyConnectedLayer(20 * 12 * 12, 10), N.SoftmaxLayer(10, 10)], 10)
    assert layer.w.get_value(borrow=True).dtype == np.float32  # the book's floatX


def test_sgd_prints_the_books_lines_like_the_reference():
    x, y = small_data(2600)
    xv, yv = small_data(50, seed=1)
    tr = (N.SharedArray(x), N.SharedArray(y))
    va = (N.SharedArray(xv), N.SharedArray(yv))
    outs = []
    for mod in (N, R):
        net = small_net(mod, "sigmoid", m=10, dtype=np.float64)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            net.SGD(tr, 2, 10, 0.3, va, va, lmbda=0.1)
        outs.append(buf.getvalue())
    assert outs[0] == outs[1]
    lines = outs[0].splitlines()
    assert lines[0] == "Training mini-batch number 0"
    assert re.fullmatch(r"Epoch 0: validation accuracy \d+\.\d\d%", lines[1])
    assert lines[2] == "This is the best validation accuracy to date."
    assert re.fullmatch(r"The corresponding test accuracy is \d+\.\d\d%", lines[3])
    assert re.fullmatch(r"Epoch 1: validation accuracy \d+\.\d\d%", lines[4])
    assert lines[-3] == "Finished training network."
    assert re.fullmatch(r"Best validation accuracy of \d+\.\d\d% obtained at iteration "
                        r"(259|519)", lines[-2])
    assert re.fullmatch(r"Corresponding test accuracy of \d+\.\d\d%", lines[-1])


def test_sgd_mini_batch_lines_and_accuracy_semantics():
    x, y = small_data(25)   # 2 whole mini-batches of 10, remainder dropped
    net = small_net(N, "sigmoid", m=10, num_threads=1)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        net.SGD((x, y), 501, 10, 0.1, (x, y), (x, y))
    out = buf.getvalue().splitlines()
    marks = [l for l in out if l.startswith("Training mini-batch number")]
    assert marks == ["Training mini-batch number 0", "Training mini-batch number 1000"]
    assert net.step == 1002
    pred = net.predict(x)
    want = np.mean([np.mean(pred[k * 10:(k + 1) * 10] == y[k * 10:(k + 1) * 10])
                    for k in range(2)])
    assert net.accuracy((x, y)) == pytest.approx(want)


def test_load_data_shared_api():
    tr, va, te = N.load_data_shared()
    x = tr[0].get_value(borrow=True)
    assert x.shape == (50000, 784) and x.dtype == np.float32
    assert tr[1].eval().shape == (50000,) and N.size(va) == 10000 and N.size(te) == 10000
    assert tr[0].eval() is x


def test_mnist_training_learns_quickly():
    tr, va, _ = N.load_data_shared()
    np.random.seed(0)
    m = 10
    net = N.Network([N.ConvPoolLayer((20, 1, 5, 5), (m, 1, 28, 28)),
                     N.FullyConnectedLayer(20 * 12 * 12, 100), N.SoftmaxLayer(100, 10)], m)
    x = tr[0].get_value()[:5000]
    y = tr[1].get_value()[:5000].astype(np.int64)
    net._train_batches(x, y, 0, 500, 0.1, 0.0, 500)
    acc = net.accuracy((va[0].get_value()[:2000], va[1].get_value()[:2000]))
    assert acc > 0.5   # from 10% at the start (sigmoid conv nets start slowly)


def test_predict_and_ensemble_vote():
    x, y = small_data(60)
    nets = [small_net(N, "sigmoid", seed=s) for s in range(3)]
    for net in nets:
        net._train_batches(x, y, 0, 15, 0.5, 0.0, 15)
    probs = nets[0].predict_proba(x)
    assert probs.shape == (60, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_array_equal(nets[0].predict(x), probs.argmax(axis=1))
    last = nets[0].layers[-1]
    np.testing.assert_array_equal(last.y_out, probs.argmax(axis=1))
    assert last.accuracy(y) == pytest.approx(np.mean(probs.argmax(axis=1) == y))
    votes = np.stack([n.predict(x) for n in nets])
    got = N.ensemble_predict(nets, (x, y))
    for j in range(60):
        counts = np.bincount(votes[:, j], minlength=4)
        assert got[j] == np.argmax(counts)
    assert N.vote([[1, 2, 2], [1, 0, 2], [0, 0, 1]]).tolist() == [1, 0, 2]
    assert 0.0 <= N.ensemble_accuracy(nets, (x, y)) <= 1.0


def test_custom_activation_falls_back_to_reference():
    def softplus(z):
        return np.log1p(np.exp(z))
    np.random.seed(0)
    net = N.Network([N.FullyConnectedLayer(72, 5, N.sigmoid), N.SoftmaxLayer(5, 4)], 4,
                    dtype=np.float64)
    x, y = small_data(8)
    x = x[:, :72]
    net.layers[0].activation_fn = lambda z: 1 / (1 + np.exp(-z))  # not a known function
    with pytest.raises(ValueError):
        net._train_batches(x, y, 0, 2, 0.1, 0.0, 2)
    net.layers[0].activation_fn = N.sigmoid
    net._train_batches(x, y, 0, 2, 0.1, 0.0, 2)
    assert softplus  # documented: unknown activations need a derivative


def test_bad_networks_are_rejected():
    with pytest.raises(ValueError):
        N.Network([N.FullyConnectedLayer(10, 5)], 2)            # no softmax at the end
    with pytest.raises(ValueError):
        N.Network([N.FullyConnectedLayer(10, 5), N.SoftmaxLayer(6, 2)], 2)
    with pytest.raises(ValueError):
        N.ConvPoolLayer((2, 1, 5, 5), (2, 3, 28, 28))            # channel mismatch
    net = N.Network([N.FullyConnectedLayer(10, 5), N.SoftmaxLayer(5, 2)], 2)
    with pytest.raises(ValueError):
        net.SGD((np.zeros((4, 10)), np.zeros(4)), 1, 3, 0.1, None, None)


def test_load_data_shared_reads_the_books_pickle(tmp_path):
    import gzip
    import pickle
    rng = np.random.default_rng(0)
    parts = tuple((rng.random((n, 784)).astype(np.float32), rng.integers(0, 10, n))
                  for n in (30, 20, 10))   # e.g. an expanded-data file has the same layout
    path = tmp_path / "mnist_expanded.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(parts, f, protocol=2)
    data = N.load_data_shared(str(path))
    assert [N.size(d) for d in data] == [30, 20, 10]
    np.testing.assert_array_equal(data[0][0].get_value(borrow=True), parts[0][0])
    np.testing.assert_array_equal(data[2][1].eval(), parts[2][1])
    with pytest.raises(FileNotFoundError):
        N.load_data_shared(str(tmp_path / "missing.pkl.gz"))


def test_reference_fallback_gives_the_same_results(monkeypatch):
    x, y = small_data(40)
    a = small_net(N, "ReLU", p=0.2)
    b = small_net(N, "ReLU", p=0.2)
    monkeypatch.setattr(N, "_convnet", lambda: None)   # as in the pure-Python mode
    assert b._spec() is None
    b._train_batches(x, y, 0, 4, 0.3, 0.1, 4)
    pb = b.predict_proba(x)
    monkeypatch.undo()
    a._train_batches(x, y, 0, 4, 0.3, 0.1, 4)
    np.testing.assert_allclose(a.predict_proba(x), pb, rtol=1e-10, atol=1e-12)


def banded_net(mod, m=3, dtype=np.float64, seed=11, **kw):
    """Conv layers cut into bands of pooled rows (an odd filter count keeps the first
    layer off the filter-group split; odd pooling borders too)."""
    np.random.seed(seed)
    # the second layer's filter gradient (7 * 5 * 5 = 175 rows) goes in two chunks
    # (NF_GW_ROWS = 128); its rows are 12 wide (narrow im2col/col2im for float32)
    layers = [mod.ConvPoolLayer((7, 2, 5, 5), (m, 2, 28, 28), (2, 2), mod.tanh),    # 2 bands
              mod.ConvPoolLayer((40, 7, 5, 5), (m, 7, 12, 12), (2, 3), mod.ReLU),  # 2 bands
              mod.FullyConnectedLayer(40 * 4 * 2, 10, mod.sigmoid),
              mod.SoftmaxLayer(10, 3)]
    return (N.Network if mod is N else R.Network)(layers, m, dtype=dtype, **kw)


def test_banded_conv_layers_equal_reference_and_any_thread_count():
    rng = np.random.default_rng(2)
    x, y = rng.random((30, 2 * 28 * 28)), rng.integers(0, 3, 30)
    a, b = banded_net(N), banded_net(R)
    a._train_batches(x, y, 0, 10, 0.1, 0.1, 10)
    b._train_batches(x, y, 0, 10, 0.1, 0.1, 10)
    for pa, pb in zip(a.params, b.params):
        np.testing.assert_allclose(pa.get_value(), pb.get_value(), rtol=1e-9, atol=1e-11)
    nets = [banded_net(N, dtype=np.float32, num_threads=t) for t in (1, 2, 3)]
    for net in nets:
        net._train_batches(x, y, 0, 10, 0.1, 0.1, 10)
    for other in nets[1:]:
        for pa, pb in zip(nets[0].params, other.params):
            np.testing.assert_array_equal(pa.get_value(), pb.get_value())


# One-channel first conv layers with an even number of filters train by filter
# groups, in float32 by the direct kernels (src_c/conv_direct.h, compiled for
# every kernel path), in float64 by im2col + GEMM.
DIRECT_SHAPES = [
    # (filters, kh, kw, h, w, pool, activation)
    (20, 5, 5, 28, 28, (2, 2), "sigmoid"),   # the book's first conv layer
    (6, 3, 3, 9, 10, (2, 2), "ReLU"),       # odd conv rows and columns: a border
    (2, 2, 4, 12, 11, (2, 2), "tanh"),
    (4, 5, 5, 36, 34, (2, 2), "sigmoid"),   # rows over 32 wide
    (4, 3, 3, 11, 11, (3, 3), "sigmoid"),   # 3x3 pooling
    (2, 1, 1, 6, 6, (2, 2), "linear"),
]


def one_channel_net(mod, shape, m=5, dtype=np.float32, seed=4, **kw):
    nf, kh, kw_, h, w, pool, act = shape
    fn = getattr(mod, act)
    n_out = nf * ((h - kh + 1) // pool[0]) * ((w - kw_ + 1) // pool[1])
    np.random.seed(seed)
    layers = [mod.ConvPoolLayer((nf, 1, kh, kw_), (m, 1, h, w), pool, fn),
              mod.FullyConnectedLayer(n_out, 6, fn),
              mod.SoftmaxLayer(6, 3)]
    layers[-1].w.set_value(0.5 * np.random.standard_normal(layers[-1].w.shape))
    return (N.Network if mod is N else R.Network)(layers, m, dtype=dtype, **kw)


def one_channel_data(shape, n=30, seed=6):
    """Inputs with many exact zeros (as MNIST's), so that pooling windows tie."""
    h, w = shape[3], shape[4]
    rng = np.random.default_rng(seed)
    x = rng.random((n, h * w)) * (rng.random((n, h * w)) < 0.4)
    return x.astype(np.float32), rng.integers(0, 3, n)


@pytest.mark.parametrize("shape", DIRECT_SHAPES, ids=lambda s: "x".join(map(str, s[:5])))
def test_one_channel_first_layer_equals_reference_and_any_thread_count(shape):
    x, y = one_channel_data(shape)
    eta = 0.05 if shape[-1] == "linear" else 0.3
    ref = one_channel_net(R, shape)
    ref._train_batches(x, y, 0, 6, eta, 0.1, 6)
    nets = [one_channel_net(N, shape, num_threads=t) for t in (1, 2, 3)]
    for net in nets:
        net._train_batches(x, y, 0, 6, eta, 0.1, 6)
    for pa, pb in zip(nets[0].params, ref.params):
        np.testing.assert_allclose(pa.get_value(), pb.get_value(), rtol=2e-4, atol=2e-5)
    for other in nets[1:]:
        for pa, pb in zip(nets[0].params, other.params):
            np.testing.assert_array_equal(pa.get_value(), pb.get_value())


_KERNELS_SCRIPT = """
import sys
import numpy as np
sys.path[:0] = [{tests!r}]
import test_network3 as T
out = []
for shape in T.DIRECT_SHAPES:
    x, y = T.one_channel_data(shape)
    net = T.one_channel_net(T.N, shape, num_threads=2)
    net._train_batches(x, y, 0, 6, 0.05 if shape[-1] == "linear" else 0.3, 0.1, 6)
    out += [p.get_value().ravel() for p in net.params]
# then a two-channel net: im2col + GEMM in both conv layers, every GEMM by BLAS
# (the small-operand kernels of the paths that take them round otherwise)
from nndl_fast import _convnet
_convnet.small_gemm_mode(0)
rng = np.random.default_rng(2)
x, y = rng.random((30, 2 * 28 * 28)), rng.integers(0, 3, 30)
net = T.banded_net(T.N, dtype=np.float32, num_threads=2)
net._train_batches(x, y, 0, 10, 0.1, 0.1, 10)
print(sum(p.get_value().size for p in net.params))
out += [p.get_value().ravel() for p in net.params]
np.save(sys.argv[1], np.concatenate(out))
"""


def test_direct_and_portable_conv_kernels_agree(run_with_kernels):
    """NNDL_FAST_KERNELS=generic trains the same one-channel nets by the direct
    kernels of the baseline instruction set: the same numbers as the default path's,
    to float32 rounding; and a net whose conv layers take im2col + GEMM (with tanh
    and ReLU, no fused multiply-adds of ours; BLAS for every GEMM) to the last bit."""
    script = _KERNELS_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    runs = {k: run_with_kernels(script, k) for k in ("default", "generic")}
    n_banded = int(runs["default"][0])
    outs = {k: r[1] for k, r in runs.items()}
    np.testing.assert_allclose(outs["generic"], outs["default"], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(outs["generic"][-n_banded:], outs["default"][-n_banded:])


@pytest.mark.skipif(N._convnet() is None, reason="compiled kernels only")
def test_kernel_layers_are_named_and_checked_before_the_kernels():
    """The compiled kernels read each layer's fields by name, and _convnet refuses
    a description that does not fit together before any C code runs."""
    import dataclasses
    from nndl_fast import _convnet
    x, _ = small_data(8)
    net = small_net(N, "ReLU", p=0.2)
    spec = net._spec()
    C, D, S = _convnet.KIND_CONV, _convnet.KIND_DENSE, _convnet.KIND_SOFTMAX
    assert [s.kind for s in spec] == [C, C, D, D, S]
    conv = spec[0]
    assert (conv.n_filt, conv.c_in, conv.kh, conv.kw) == net.layers[0].filter_shape
    assert spec[2].p_dropout == 0.2 and spec[2].act == _convnet.ACT_CODES["ReLU"]
    assert spec[2].w is net.layers[2].w.get_value(borrow=True)     # updated in place
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec[2].n_in = 3
    x = np.ascontiguousarray(x, dtype=net.dtype)
    np.testing.assert_array_equal(_convnet.predict(spec, x, 1), net.predict_proba(x))
    for l, change, message in ((2, {"n_in": spec[2].n_in + 1}, "layer 2"),
                               (0, {"kh": 99}, "do not fit the image"),
                               (0, {"n_out": spec[0].n_out + 1}, "inconsistent conv sizes"),
                               (2, {"act": 7}, "unknown activation code 7"),
                               (3, {"p_dropout": 1.0}, "p_dropout must be in")):
        bad = list(spec)
        bad[l] = dataclasses.replace(spec[l], **change)
        with pytest.raises(ValueError, match=message):
            _convnet.predict(bad, x, 1)


def test_compiled_or_reference_is_the_package_switch(monkeypatch):
    """network3 asks _config.use_compiled, as the dense chapters do: in the
    pure-Python mode its networks compute with the reference."""
    from nndl_fast import _config
    monkeypatch.setattr(_config, "PURE_PYTHON", True)
    assert N._convnet() is None
    assert small_net(N, "ReLU")._spec() is None


def test_one_activation_table_drives_every_part():
    """network3's names, the reference's derivatives, the kernels' codes and the
    ONNX operators all come from reference.network3.ACTIVATION_TABLE."""
    from nndl_fast import _config, export
    names = [entry.name for entry in R.ACTIVATION_TABLE]
    assert list(N.ACTIVATIONS) == names
    assert sorted(export._ONNX_ACTIVATIONS) == sorted(n for n in names if n != "linear")
    a = np.array([0.0, 0.25, 0.5, 1.0])
    for entry in R.ACTIVATION_TABLE:
        assert N.ACTIVATIONS[entry.name] is entry.fn
        assert R.activation_of(entry.fn) is entry
        assert N.activation_name(entry.fn) == entry.name
        np.testing.assert_array_equal(R.activation_prime(entry.fn, a), entry.prime(a))
        if not _config.pure_python():
            from nndl_fast import _convnet
            assert _convnet.ACT_CODES[entry.name] == entry.code
    with pytest.raises(ValueError, match="unsupported activation_fn .*: use network3's "
                                         "linear, sigmoid, tanh, ReLU"):
        R.activation_prime(np.exp, a)
