"""Every public entry point refuses bad input with a TypeError or ValueError whose
message names what was expected and what came — before any compiled code runs,
before any large allocation."""
import contextlib
import io
import time

import numpy as np
import pytest

from nndl_fast import (_config, _dense, _shuffle, activations, datasets, expand_mnist,
                       gradient_check, mnist_loader, network, perceptron)
from nndl_fast.__main__ import main as cli_main

N_IN, N_HID, N_OUT = 6, 5, 3


def _col(n=N_IN, dtype=np.float64, fill=0.5):
    return np.full((n, 1), fill, dtype=dtype)


def _target(label=1, n=N_OUT):
    y = np.zeros((n, 1))
    y[label] = 1.0
    return y


def _good_training(n=8):
    return [(_col(fill=i / n), _target(i % N_OUT)) for i in range(n)]


def _good_test(n=4):
    return [(_col(fill=i / n), i % N_OUT) for i in range(n)]


@pytest.fixture
def net():
    np.random.seed(0)
    return network.Network([N_IN, N_HID, N_OUT])


def _replace(data, index, item):
    data = list(data)
    data[index] = item
    return data


# --- Network(sizes, dtype, num_threads) ------------------------------------------------

BAD_SIZES = [
    (None, TypeError, r"sizes must be a list of layer sizes.*got NoneType"),
    (784, TypeError, r"sizes must be a list .*got int 784"),
    ([784], ValueError, r"at least 2 layers .*got \[784\]"),
    ([], ValueError, r"at least 2 layers"),
    ([784, 0, 10], ValueError, r"sizes\[1\] must be >= 1, got 0"),
    ([784, -30, 10], ValueError, r"sizes\[1\] must be >= 1, got -30"),
    ([784, 30.0, 10], TypeError, r"sizes\[1\] must be an integer, got float 30.0"),
    ([784, "30", 10], TypeError, r"sizes\[1\] must be an integer, got str '30'"),
    ([784, True, 10], TypeError, r"sizes\[1\] must be an integer"),
    ([784, None, 10], TypeError, r"sizes\[1\] must be an integer, got NoneType"),
    ([784, 30 + 0j, 10], TypeError, r"sizes\[1\] must be an integer, got complex"),
    ([784, 10 ** 9, 10], ValueError, r"sizes\[1\] = 1000000000 is too large"),
    ([784, 2 ** 64, 10], ValueError, r"too large"),
    ([2 ** 24, 2 ** 24], ValueError, r"need \d+ weights; at most 2147483647"),
    ([50000, 50000, 10], ValueError, r"need \d+ weights; at most"),
]


@pytest.mark.parametrize("sizes,exc,match", BAD_SIZES)
def test_network_sizes(sizes, exc, match):
    t0 = time.perf_counter()
    with pytest.raises(exc, match=match):
        network.Network(sizes)
    # Refused before allocating anything large.
    assert time.perf_counter() - t0 < 0.5


def test_network_larger_than_memory_refused_before_allocating(monkeypatch):
    from nndl_fast import _validation
    monkeypatch.setattr(_validation, "physical_memory", lambda: 2 ** 30)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"need about .* GiB .* more than this machine's 1.0 GiB"):
        network.Network([20000, 20000, 10])
    assert time.perf_counter() - t0 < 0.5


def test_network_numpy_integer_sizes_accepted():
    net = network.Network(np.array([N_IN, N_HID, N_OUT]))
    assert net.sizes == [N_IN, N_HID, N_OUT] and all(type(s) is int for s in net.sizes)


@pytest.mark.parametrize("dtype,exc,match", [
    (np.int32, TypeError, r"dtype must be float32 or float64, got int32"),
    (np.complex128, TypeError, r"got complex128"),
    (object, TypeError, r"got object"),
    (np.float16, TypeError, r"got float16"),
    ("nonsense", TypeError, r"dtype must be float32 or float64, got 'nonsense'"),
])
def test_network_dtype(dtype, exc, match):
    with pytest.raises(exc, match=match):
        network.Network([N_IN, N_OUT], dtype=dtype)


@pytest.mark.parametrize("threads,exc,match", [
    (0, ValueError, r"num_threads must be >= 1, got 0"),
    (-2, ValueError, r"num_threads must be >= 1, got -2"),
    (1.5, TypeError, r"num_threads must be an int or None, got 1.5"),
    ("4", TypeError, r"num_threads must be an int or None"),
])
def test_network_num_threads(threads, exc, match):
    with pytest.raises(exc, match=match):
        network.Network([N_IN, N_OUT], num_threads=threads)
    with pytest.raises(exc, match=match):
        _config.set_num_threads(threads)


# --- SGD hyper-parameters ----------------------------------------------------------------

BAD_HYPER = [
    (dict(epochs=1.5), TypeError, r"epochs must be an integer, got float 1.5"),
    (dict(epochs=-1), ValueError, r"epochs must be >= 0, got -1"),
    (dict(epochs="3"), TypeError, r"epochs must be an integer, got str '3'"),
    (dict(epochs=None), TypeError, r"epochs must be an integer, got NoneType"),
    (dict(mini_batch_size=0), ValueError, r"mini_batch_size must be >= 1, got 0"),
    (dict(mini_batch_size=-5), ValueError, r"mini_batch_size must be >= 1, got -5"),
    (dict(mini_batch_size=10.0), TypeError, r"mini_batch_size must be an integer"),
    (dict(mini_batch_size=True), TypeError, r"mini_batch_size must be an integer"),
    (dict(eta=float("nan")), ValueError, r"eta must be finite, got nan"),
    (dict(eta=float("inf")), ValueError, r"eta must be finite, got inf"),
    (dict(eta=-float("inf")), ValueError, r"eta must be finite"),
    (dict(eta=1 + 2j), TypeError, r"eta must be a real number, got complex"),
    (dict(eta="3.0"), TypeError, r"eta must be a real number, got str"),
    (dict(eta=None), TypeError, r"eta must be a real number, got NoneType"),
    (dict(eta=np.array([3.0])), TypeError, r"eta must be a real number, got an array"),
]


@pytest.mark.parametrize("kw,exc,match", BAD_HYPER)
def test_sgd_hyper_parameters(net, kw, exc, match):
    args = dict(epochs=1, mini_batch_size=2, eta=3.0)
    args.update(kw)
    data = _good_training()
    before = [w.copy() for w in net.weights]
    with pytest.raises(exc, match=match):
        net.SGD(data, args["epochs"], args["mini_batch_size"], args["eta"])
    assert all(np.array_equal(w, w0) for w, w0 in zip(net.weights, before))
    assert data == data  # the list was not shuffled half-way: validation comes first


def test_sgd_huge_mini_batch_size_is_one_batch(net, capsys):
    # Larger than the data: one mini-batch, as the book's slicing gives.
    net.SGD(_good_training(), 1, 2 ** 40, 1.0)
    assert capsys.readouterr().out == "Epoch 0 complete\n"


def test_sgd_zero_epochs_trains_nothing(net, capsys):
    before = [w.copy() for w in net.weights]
    net.SGD(_good_training(), 0, 2, 1.0)
    assert all(np.array_equal(w, w0) for w, w0 in zip(net.weights, before))


# --- SGD training data --------------------------------------------------------------------

def _bad_training():
    good = _good_training()
    nan_x = _col()
    nan_x[2, 0] = np.nan
    inf_y = _target()
    inf_y[0, 0] = np.inf
    return [
        ([], ValueError, r"training_data is empty: expected at least one \(x, y\) pair"),
        (None, TypeError, r"training_data must be a list of \(x, y\) tuples .*got NoneType"),
        (tuple(good), TypeError, r"must be a list .*SGD shuffles it in place.*got tuple"),
        (iter(good), TypeError, r"must be a list .*list\(\.\.\.\)"),
        (zip([g[0] for g in good], [g[1] for g in good]), TypeError, r"list\(\.\.\.\)"),
        (np.zeros((8, 2)), TypeError, r"must be a list.*got an array of shape \(8, 2\)"),
        (_replace(good, 3, (_col(),)), TypeError, r"training_data item 3 must be a pair"),
        (_replace(good, 3, _col()), TypeError, r"training_data item 3 must be a pair"),
        (_replace(good, 3, (_col(), _target(), 1)), TypeError, r"item 3 must be a pair"),
        (_replace(good, 4, (np.zeros((N_IN,)), _target())), ValueError,
         r"training input 4 has shape \(6,\), expected \(6, 1\)"),
        (_replace(good, 4, (np.zeros((1, N_IN)), _target())), ValueError,
         r"training input 4 has shape \(1, 6\), expected \(6, 1\)"),
        (_replace(good, 4, (np.zeros((N_IN, 1, 1)), _target())), ValueError,
         r"training input 4 has shape \(6, 1, 1\)"),
        (_replace(good, 4, (np.zeros((N_IN + 1, 1)), _target())), ValueError,
         r"training input 4 has shape \(7, 1\), expected \(6, 1\)"),
        (_replace(good, 4, (np.zeros((N_IN, 1), dtype=np.int64), _target())), TypeError,
         r"training input 4 has dtype int64, expected float32 or float64"),
        (_replace(good, 4, (np.zeros((N_IN, 1), dtype=complex), _target())), TypeError,
         r"training input 4 has dtype complex128"),
        (_replace(good, 4, (np.zeros((N_IN, 1), dtype=object), _target())), TypeError,
         r"training input 4 has dtype object"),
        (_replace(good, 4, (np.zeros((N_IN, 1), dtype=np.float16), _target())), TypeError,
         r"dtype float16"),
        (_replace(good, 4, (np.zeros((N_IN, 1), dtype=bool), _target())), TypeError,
         r"dtype bool"),
        (_replace(good, 4, ([[0.0]] * N_IN, _target())), TypeError,
         r"training input 4 must be a numpy array of shape \(6, 1\), got list"),
        (_replace(good, 4, (None, _target())), TypeError, r"got NoneType"),
        (_replace(good, 5, (nan_x, _target())), ValueError, r"training input 5 contains NaN"),
        (_replace(good, 6, (_col(), inf_y)), ValueError, r"training target 6 contains NaN"),
        (_replace(good, 0, (_col(), 2)), ValueError,
         r"training target 0 is an int label, expected an array of shape \(3, 1\)"),
        (_replace(good, 2, (_col(), np.zeros((N_OUT + 1, 1)))), ValueError,
         r"training target 2 has shape \(4, 1\), expected \(3, 1\)"),
        (_replace(good, 2, (_col(), np.zeros((N_OUT, 1), dtype=np.int64))), TypeError,
         r"training target 2 has dtype int64"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_training())))
def test_sgd_training_data(net, case):
    data, exc, match = _bad_training()[case]
    before = [w.copy() for w in net.weights]
    with pytest.raises(exc, match=match):
        net.SGD(data, 1, 2, 3.0)
    assert all(np.array_equal(w, w0) for w, w0 in zip(net.weights, before))


def test_sgd_accepts_non_contiguous_read_only_and_byte_swapped(net, capsys):
    ref = _good_training()
    odd = []
    for i, (x, y) in enumerate(ref):
        if i % 3 == 0:
            x = np.repeat(x, 2, axis=0)[::2]          # strided view
        elif i % 3 == 1:
            x = x.astype(">f8")                      # big-endian
        x = x.copy() if x.flags.owndata else x
        x.setflags(write=False)                      # read-only
        odd.append((x, y))
    np.random.seed(0)
    a = network.Network([N_IN, N_HID, N_OUT])
    b = network.Network.__new__(network.Network)
    np.random.seed(0)
    b.__init__([N_IN, N_HID, N_OUT])
    import random
    random.seed(5)
    a.SGD(ref, 2, 3, 1.0)
    random.seed(5)
    b.SGD(odd, 2, 3, 1.0)
    for w, v in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_array_equal(w, v)


def _bad_test_data():
    good = _good_test()
    return [
        (_replace(good, 1, (_col(), N_OUT)), ValueError,
         r"test label 1 is 3, expected a class in 0\.\.2"),
        (_replace(good, 1, (_col(), -1)), ValueError, r"test label 1 is -1"),
        (_replace(good, 1, (_col(), 1.5)), ValueError,
         r"test label 1 must be an int class label or an \(3, 1\) vector, got float 1.5"),
        (_replace(good, 1, (_col(), "1")), ValueError, r"test label 1 must be an int"),
        (_replace(good, 1, (_col(), None)), ValueError, r"got NoneType"),
        (_replace(good, 1, (_col(), True)), ValueError, r"test label 1 must be an int"),
        (_replace(good, 1, (_col(), np.zeros((N_OUT, 1), dtype=complex))), ValueError,
         r"test label 1 must be an int"),
        (_replace(good, 2, (np.zeros((N_IN + 2, 1)), 0)), ValueError,
         r"test input 2 has shape \(8, 1\), expected \(6, 1\)"),
        (_replace(good, 2, 7), TypeError, r"test_data item 2 must be a pair"),
        (zip([g[0] for g in good], [g[1] for g in good]), TypeError, r"list\(\.\.\.\)"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_test_data())))
def test_evaluate_and_sgd_test_data(net, case):
    data, exc, match = _bad_test_data()[case]
    with pytest.raises(exc, match=match):
        net.evaluate(data)
    if not isinstance(data, zip):
        with pytest.raises(exc, match=match):
            net.SGD(_good_training(), 1, 2, 1.0, test_data=data)


def test_evaluate_empty_is_zero(net):
    assert net.evaluate([]) == 0


# --- feedforward and update_mini_batch ----------------------------------------------------

@pytest.mark.parametrize("a,exc,match", [
    (np.zeros((N_IN + 1, 1)), ValueError, r"input has shape \(7, 1\), expected \(6, 1\)"),
    (np.zeros((1, N_IN)), ValueError, r"input has shape \(1, 6\), expected \(6, 1\)"),
    (np.zeros((N_IN, 1, 1)), ValueError, r"input has shape \(6, 1, 1\)"),
    (np.zeros(()), ValueError, r"input has shape \(\)"),
    (np.zeros((N_IN, 1), dtype=complex), TypeError, r"input has dtype complex128, expected real"),
    (np.zeros((N_IN, 1), dtype=object), TypeError, r"input has dtype object"),
    (np.array([["a"]] * N_IN), TypeError, r"input has dtype <U1"),
    (np.full((N_IN, 1), np.nan), ValueError, r"input contains NaN or infinity"),
    (np.full((N_IN, 2), -np.inf), ValueError, r"input contains NaN or infinity"),
    (None, TypeError, r"input has dtype object"),
    ([[1.0], [2.0, 3.0]], TypeError, r"input must be an array of shape \(6, 1\)"),
])
def test_feedforward(net, a, exc, match):
    with pytest.raises(exc, match=match):
        net.feedforward(a)


def test_feedforward_accepts_lists_ints_and_views(net):
    col = np.linspace(0, 1, N_IN).reshape(N_IN, 1)
    want = net.feedforward(col)
    np.testing.assert_array_equal(net.feedforward(col.tolist()), want)
    np.testing.assert_array_equal(net.feedforward(np.repeat(col, 2, axis=1)[:, ::2]), want)
    ro = col.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(net.feedforward(ro), want)
    assert net.feedforward(np.ones((N_IN, 1), dtype=np.int64)).shape == (N_OUT, 1)


@pytest.mark.parametrize("batch,eta,exc,match", [
    ([], 1.0, ValueError, r"mini_batch_data is empty"),
    (_good_training(2), float("nan"), ValueError, r"eta must be finite"),
    ([(_col(), 1)], 1.0, ValueError, r"mini_batch target 0 is an int label"),
    ([(_col(N_IN - 1), _target())], 1.0, ValueError, r"mini_batch input 0 has shape \(5, 1\)"),
])
def test_update_mini_batch(net, batch, eta, exc, match):
    with pytest.raises(exc, match=match):
        net.update_mini_batch(batch, eta)


@pytest.mark.parametrize("mutate,exc,match", [
    (lambda n: n.weights.__setitem__(0, np.zeros((N_HID, N_IN + 1))), ValueError,
     r"weights\[0\] has shape \(5, 7\), expected \(5, 6\)"),
    (lambda n: n.biases.__setitem__(1, np.zeros((N_OUT,))), ValueError,
     r"biases\[1\] has shape \(3,\), expected \(3, 1\)"),
    (lambda n: n.weights.__setitem__(0, np.zeros((N_HID, N_IN), dtype=np.int64)), TypeError,
     r"must be float arrays, got int64"),
    (lambda n: n.weights[1].__setitem__((0, 0), np.nan), ValueError,
     r"weights\[1\] or biases\[1\] contain NaN or infinity"),
    (lambda n: n.weights.pop(), ValueError, r"expected 2 weight matrices and bias vectors"),
])
def test_parameters_replaced_by_user(net, mutate, exc, match, capsys):
    mutate(net)
    with pytest.raises(exc, match=match):
        net.SGD(_good_training(), 1, 2, 1.0)
    with pytest.raises(exc, match=match):
        net.evaluate(_good_test())


def test_non_contiguous_and_read_only_parameters_accepted(net, capsys):
    net.weights[0] = np.asfortranarray(net.weights[0])
    net.biases[0].setflags(write=False)
    net.SGD(_good_training(), 1, 2, 1.0)
    assert net.weights[0].flags.c_contiguous and net.biases[0].flags.writeable


# --- the compiled kernels called directly -------------------------------------------------

def _kernel_args():
    rng = np.random.default_rng(0)
    w = [rng.standard_normal((N_HID, N_IN)), rng.standard_normal((N_OUT, N_HID))]
    b = [rng.standard_normal((N_HID, 1)), rng.standard_normal((N_OUT, 1))]
    X = rng.random((4, N_IN))
    Y = rng.random((4, N_OUT))
    return X, Y, np.arange(4, dtype=np.int64), w, b


@pytest.mark.parametrize("change,exc,match", [
    (dict(order=np.array([0, 4])), ValueError, r"order holds row indices outside \[0, 4\)"),
    (dict(order=np.array([-1])), ValueError, r"outside \[0, 4\)"),
    (dict(order=np.zeros((2, 2), dtype=np.int64)), ValueError, r"order must be 1-D"),
    (dict(X=np.zeros((4, N_IN + 1))), ValueError, r"X: expected .*\(n, 6\)"),
    (dict(X=np.zeros((4, N_IN), dtype=np.int64)), ValueError, r"X: expected .*float"),
    (dict(X=np.zeros((N_IN, 4)).T), ValueError, r"X: expected a C-contiguous"),
    (dict(Y=np.zeros((4, N_OUT), dtype=np.float32)), ValueError, r"Y: expected a C-contiguous float64"),
    (dict(Y=np.zeros((3, N_OUT))), ValueError, r"Y: expected .*\(4, 3\)"),
    (dict(mini_batch_size=0), ValueError, r"mini_batch_size must be >= 1, got 0"),
    (dict(num_threads=0), ValueError, r"num_threads must be >= 1"),
    (dict(cost=7), ValueError, r"unknown cost code 7"),
    (dict(reg=3), ValueError, r"unknown regularisation code 3"),
    (dict(momentum=0.5), ValueError, r"momentum needs velocities"),
    (dict(weights=[]), ValueError, r"expected 1 to 64 weight layers, got 0"),
    (dict(weights=[np.zeros((1, 1))] * 65, biases=[np.zeros((1, 1))] * 65), ValueError,
     r"expected 1 to 64 weight layers, got 65"),
    (dict(biases=[np.zeros((N_HID, 1))]), ValueError, r"expected 2 bias vectors, got 1"),
    (dict(weights="w"), TypeError, r"weights"),
])
def test_train_epoch_arguments(change, exc, match):
    X, Y, order, w, b = _kernel_args()
    args = dict(X=X, Y=Y, order=order, weights=w, biases=b, mini_batch_size=2, eta=1.0)
    args.update(change)
    with pytest.raises(exc, match=match):
        _dense.train_epoch(**args)


def test_train_epoch_refuses_read_only_and_mismatched_parameters():
    X, Y, order, w, b = _kernel_args()
    w[1].setflags(write=False)
    with pytest.raises(ValueError, match=r"weights\[1\]: expected a writeable C-contiguous"):
        _dense.train_epoch(X, Y, order, w, b, 2, 1.0)
    X, Y, order, w, b = _kernel_args()
    w[1] = np.zeros((N_OUT, N_HID + 1))
    with pytest.raises(ValueError, match=r"weights\[1\]: expected .*shape \(3, 5\)"):
        _dense.train_epoch(X, Y, order, w, b, 2, 1.0)
    X, Y, order, w, b = _kernel_args()
    w[1] = w[1].astype(np.float32)
    with pytest.raises(ValueError, match=r"weights\[1\]: expected .*float64 .*got float32"):
        _dense.train_epoch(X, Y, order, w, b, 2, 1.0)


@pytest.mark.parametrize("X,exc,match", [
    (np.zeros((2, N_IN + 1)), ValueError, r"X has 7 columns, expected 6"),
    (np.zeros((2, N_IN), dtype=np.int32), ValueError, r"X: expected a 2-D float32/float64"),
    (np.zeros(N_IN), ValueError, r"X: expected a 2-D"),
    ([[0.0] * N_IN], ValueError, r"X: expected a 2-D .*got list"),
])
def test_forward_arguments(X, exc, match):
    _, _, _, w, b = _kernel_args()
    with pytest.raises(exc, match=match):
        _dense.forward(X, w, b)


def test_forward_converts_inputs_of_the_other_float_type():
    X, _, _, w, b = _kernel_args()
    X32 = X.astype(np.float32)
    np.testing.assert_array_equal(_dense.forward(X32, w, b),
                                  _dense.forward(X32.astype(np.float64), w, b))
    w32 = [a.astype(np.float32) for a in w]
    b32 = [a.astype(np.float32) for a in b]
    got = _dense.forward(X, w32, b32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _dense.forward(X.astype(np.float32), w32, b32))


def test_forward_non_contiguous_input_and_empty_batch():
    X, _, _, w, b = _kernel_args()
    Xf = np.asfortranarray(X)
    np.testing.assert_array_equal(_dense.forward(Xf, w, b), _dense.forward(X, w, b))
    assert _dense.forward(np.zeros((0, N_IN)), w, b).shape == (0, N_OUT)


@pytest.mark.parametrize("n,exc,match", [
    (-1, ValueError, r"n must be >= 0, got -1"),
    (2 ** 33, ValueError, r"longer than 2\*\*32 - 1"),
    (2 ** 70, OverflowError, None),
    ("3", TypeError, None),
])
def test_shuffle_permutation_arguments(n, exc, match):
    with pytest.raises(exc, match=match):
        _shuffle.shuffle_permutation(n)


# --- mnist_loader and data files ----------------------------------------------------------

@pytest.mark.parametrize("j,exc,match", [
    (10, ValueError, r"expected a digit 0\.\.9, got 10"),
    (-1, ValueError, r"got -1"),
    (1.0, TypeError, r"expected an integer digit 0\.\.9, got 1.0"),
    (True, TypeError, r"got True"),
    ("3", TypeError, r"got '3'"),
    (None, TypeError, r"got None"),
])
def test_vectorized_result(j, exc, match):
    with pytest.raises(exc, match=match):
        mnist_loader.vectorized_result(j)


def test_load_data_missing_and_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no MNIST data at .*expected a directory"):
        mnist_loader.load_data(tmp_path / "nowhere")
    with pytest.raises(datasets.DataFileError, match=r"no file train-images-idx3-ubyte"):
        mnist_loader.load_data(tmp_path)
    junk = tmp_path / "mnist.pkl.gz"
    junk.write_bytes(b"this is not a pickle")
    with pytest.raises(datasets.DataFileError, match=r"not a readable pickle"):
        mnist_loader.load_data(junk)
    with pytest.raises(TypeError):
        mnist_loader.load_data(3.5)


IDX_HEADER = b"\x00\x00\x08\x01"
BAD_IDX = [
    (b"", r"at least 4 header bytes\), got 0 bytes"),
    (b"\x00\x00\x08", r"got 3 bytes"),
    (b"\x00\x01\x08\x01\x00\x00\x00\x01\x05", r"bad IDX magic number.*got 0x00 0x01"),
    (b"PK\x03\x04", r"bad IDX magic"),
    (b"\x00\x00\x0a\x01\x00\x00\x00\x01\x05", r"unknown IDX data type code 0x0a"),
    (b"\x00\x00\x08\x00", r"IDX rank 0 out of range"),
    (b"\x00\x00\x08\x05" + b"\x00" * 20, r"IDX rank 5 out of range"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", r"truncated IDX header \(8 bytes, expected 16\)"),
    (IDX_HEADER + b"\x00\x00\x00\x03\x05\x06", r"shape \(3,\) \(3 data bytes\) but the file has 2"),
    (IDX_HEADER + b"\x00\x00\x00\x01\x05\x06", r"\(1 data bytes\) but the file has 2"),
    (IDX_HEADER + b"\xff\xff\xff\xff", r"shape \(4294967295,\)"),
    (b"\x00\x00\x0e\x04" + b"\xff\xff\xff\xff" * 4 + b"\x00" * 8,
     r"shape \(4294967295, 4294967295, 4294967295, 4294967295\) \(\d{40,} data bytes\)"),
]


@pytest.mark.parametrize("raw,match", BAD_IDX)
def test_parse_idx_refuses(raw, match):
    t0 = time.perf_counter()
    with pytest.raises(datasets.DataFileError, match=match):
        datasets.parse_idx(raw, "f")
    assert time.perf_counter() - t0 < 0.5


def test_read_idx_truncated_and_corrupt_gzip(tmp_path):
    import gzip
    good = gzip.compress(IDX_HEADER + b"\x00\x00\x00\x04" + bytes(range(4)))
    p = tmp_path / "x.gz"
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(datasets.DataFileError, match=r"corrupt gzip data"):
        datasets.read_idx(str(p))
    bad = bytearray(good)
    bad[12] ^= 0xFF
    p.write_bytes(bytes(bad))
    with pytest.raises(datasets.DataFileError, match=r"corrupt gzip data|data bytes|magic"):
        datasets.read_idx(str(p))


def test_idx_directory_with_mismatched_counts(tmp_path):
    import gzip

    def write(name, arr):
        dims = b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        (tmp_path / (name + ".gz")).write_bytes(
            gzip.compress(bytes([0, 0, 8, arr.ndim]) + dims + arr.tobytes()))

    write("train-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    write("train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    write("t10k-images-idx3-ubyte", np.zeros((1, 2, 2), np.uint8))
    write("t10k-labels-idx1-ubyte", np.zeros(1, np.uint8))
    with pytest.raises(datasets.DataFileError, match=r"3 training images but 4 labels"):
        datasets.load_idx_dataset(tmp_path)
    write("train-images-idx3-ubyte", np.zeros((4, 4), np.uint8))
    with pytest.raises(datasets.DataFileError, match=r"must have rank 3 and labels rank 1"):
        datasets.load_idx_dataset(tmp_path)
    with pytest.raises(datasets.DataFileError, match=r"expected a directory of IDX files"):
        datasets.load_idx_dataset(tmp_path / "missing")


# --- expand_mnist, perceptron, activations, gradient_check ----------------------------------

@pytest.mark.parametrize("call,exc,match", [
    (lambda: expand_mnist.shift_images(np.zeros((2, 4)), 0, 1), ValueError,
     r"images must have shape \(n, rows, cols\), got \(2, 4\)"),
    (lambda: expand_mnist.shift_images(np.zeros((1, 4, 4)), 2, 1), ValueError,
     r"axis must be 0 or 1 and direction -1 or 1, got 2 and 1"),
    (lambda: expand_mnist.shift_images(np.zeros((1, 4, 4)), 0, 0), ValueError, r"got 0 and 0"),
    (lambda: expand_mnist.expand("data"), TypeError,
     r"training_data must be a pair \(x, y\) of arrays .*got str"),
    (lambda: expand_mnist.expand((np.zeros((3, 784)), np.zeros(2, int))), ValueError,
     r"training arrays have shapes \(3, 784\) and \(2,\), expected \(n, 784\) and \(n,\)"),
    (lambda: expand_mnist.expand((np.zeros((3, 784), complex), np.zeros(3, int))), TypeError,
     r"training pixels have dtype complex128, expected real numbers"),
    (lambda: expand_mnist.expand((np.zeros((3, 784)), np.zeros(3))), TypeError,
     r"training labels have dtype float64, expected integers"),
    (lambda: expand_mnist.expand((np.zeros((3, 783)), np.zeros(3, int))), ValueError,
     r"images must be square.*got 783"),
    (lambda: perceptron.Perceptron([1.0, np.nan], 0.0), ValueError, r"weights contains NaN"),
    (lambda: perceptron.Perceptron([1.0, 2.0], float("inf")), ValueError, r"bias must be finite"),
    (lambda: perceptron.Perceptron([1j], 0.0), TypeError, r"weights must hold real numbers"),
    (lambda: perceptron.Perceptron([], 0.0), ValueError, r"non-empty 1-D sequence"),
    (lambda: perceptron.Perceptron([1.0], "0"), TypeError, r"bias must be a real number"),
    (lambda: perceptron.Perceptron([1.0, 1.0], -1.5)(np.zeros(3)), ValueError,
     r"inputs have shape \(3,\), expected \(2,\) or \(n, 2\)"),
    (lambda: perceptron.train([[0, 0], [1, 1]], [0, 2]), ValueError, r"targets must be 0 or 1"),
    (lambda: perceptron.train([[0, 0], [1, 1]], [0, 1], epochs=0), ValueError,
     r"epochs must be a positive integer, got 0"),
    (lambda: perceptron.train([[0, 0], [1, 1]], [0, 1], eta=float("nan")), ValueError,
     r"eta must be a positive real number, got nan"),
    (lambda: perceptron.train(np.zeros((0, 2)), []), ValueError, r"n >= 1"),
    (lambda: perceptron.train([[0, np.inf]], [1]), ValueError, r"inputs contain NaN"),
    (lambda: activations.softmax(np.float64(3.0)), ValueError, r"at least one axis, got a scalar"),
    (lambda: activations.softmax(np.zeros(3), axis=2), ValueError, r"axis 2 is out of range"),
    (lambda: activations.softmax(np.zeros(3), axis=0.5), TypeError, r"axis must be an integer"),
    (lambda: activations.relu(np.zeros(3, dtype=complex)), TypeError,
     r"expected real numbers, got an array of dtype complex128"),
    (lambda: activations.tanh(np.array(["a"])), TypeError, r"dtype <U1"),
    (lambda: activations.forward({}, np.zeros(2)), KeyError, r"network is missing"),
])
def test_other_modules(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("args,exc,match", [
    (lambda n: (n, np.zeros((N_IN + 1, 1)), 0), ValueError,
     r"x must be a float array of shape \(6, 1\), got an array of shape \(7, 1\)"),
    (lambda n: (n, np.zeros((N_IN, 1), dtype=int), 0), ValueError, r"x must be a float array"),
    (lambda n: (n, np.zeros((N_IN, 1)), N_OUT), ValueError, r"label y must be in 0\.\.2, got 3"),
    (lambda n: (n, np.zeros((N_IN, 1)), np.zeros((2, 1))), ValueError,
     r"y must be an int label or an array of shape \(3, 1\)"),
    (lambda n: (object(), np.zeros((N_IN, 1)), 0), TypeError, r"expected a network with"),
])
def test_gradient_check(net, args, exc, match):
    with pytest.raises(exc, match=match):
        gradient_check.compare(*args(net))
    with pytest.raises(ValueError, match=r"epsilon must be > 0, got 0.0"):
        gradient_check.numerical_gradient(net, np.zeros((N_IN, 1)), 0, epsilon=0.0)


# --- command line ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv,match", [
    (["train", "--sizes", "784,abc,10"], r"expected comma-separated layer sizes"),
    (["train", "--sizes", "784"], r"at least two positive layer sizes"),
    (["train", "--sizes", "784,0,10"], r"at least two positive layer sizes"),
    (["train", "--epochs", "-1"], r"expected an integer >= 0, got -1"),
    (["train", "--batch", "0"], r"expected a positive integer, got 0"),
    (["train", "--eta", "nan"], r"expected a finite number, got 'nan'"),
    (["train", "--eta", "fast"], r"expected a number, got 'fast'"),
    (["train", "--threads", "0"], r"expected a positive integer"),
    (["train", "--dtype", "float16"], r"invalid choice"),
    (["expand", "--compresslevel", "x"], r"invalid int value"),
])
def test_cli_bad_options_exit_2(argv, match, capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    assert info.value.code == 2
    assert pytest.importorskip("re").search(match, capsys.readouterr().err)


def test_cli_data_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["train", "--data", str(tmp_path / "nowhere"), "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m nndl_fast train: error: no MNIST data at")
    assert "Traceback" not in err and err.count("\n") == 1
    junk = tmp_path / "mnist.pkl.gz"
    junk.write_bytes(b"\x1f\x8b\x08junk")
    assert cli_main(["baseline", "darkness", "--data", str(junk)]) == 2
    assert "corrupt gzip data" in capsys.readouterr().err
    assert cli_main(["train", "--sizes", "10,10", "--epochs", "0"]) == 2
    assert "training input 0 has shape (784, 1), expected (10, 1)" in capsys.readouterr().err


def test_cli_expand_bad_compresslevel(tmp_path, capsys):
    out = tmp_path / "e.pkl.gz"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["expand", "--out", str(out), "--compresslevel", "12",
                         "--data", str(tmp_path / "none")]) == 2
    assert "error:" in capsys.readouterr().err and not out.exists()


# --- network3: layers, Network, SGD, inference, ensembles, load_data_shared ------------------

from nndl_fast import network3 as N3  # noqa: E402

M3 = 4   # the chapter-6 tests' mini-batch size


def _layers3(m=M3, **conv):
    """A small conv net: (2, 8, 7) images, 3 filters of 3x3, pool 2x2 -> 3x3x2, FC, softmax."""
    args = dict(filter_shape=(3, 2, 3, 3), image_shape=(m, 2, 8, 7), poolsize=(2, 2))
    args.update(conv)
    return [N3.ConvPoolLayer(**args), N3.FullyConnectedLayer(3 * 3 * 2, 5),
            N3.SoftmaxLayer(5, 4)]


def _net3(**kw):
    np.random.seed(1)
    return N3.Network(_layers3(), M3, **kw)


def _data3(n=12, seed=0, n_in=2 * 8 * 7, n_out=4):
    rng = np.random.default_rng(seed)
    return rng.random((n, n_in)).astype(np.float32), rng.integers(0, n_out, n)


BAD_LAYERS3 = [
    # ConvPoolLayer(filter_shape, image_shape, poolsize, activation_fn)
    (lambda: N3.ConvPoolLayer((3, 2, 3), (4, 2, 8, 7)), ValueError,
     r"filter_shape must have 4 entries \(filters, channels, rows, columns\), got \(3, 2, 3\)"),
    (lambda: N3.ConvPoolLayer(5, (4, 2, 8, 7)), TypeError,
     r"filter_shape must be a tuple of 4 integers .*got int 5"),
    (lambda: N3.ConvPoolLayer("3233", (4, 2, 8, 7)), TypeError,
     r"filter_shape must be a tuple of 4 integers .*got str '3233'"),
    (lambda: N3.ConvPoolLayer((3, 2, 3.0, 3), (4, 2, 8, 7)), TypeError,
     r"filter_shape\[2\] must be an integer, got float 3.0"),
    (lambda: N3.ConvPoolLayer((3, 2, 0, 3), (4, 2, 8, 7)), ValueError,
     r"filter_shape\[2\] must be >= 1, got 0"),
    (lambda: N3.ConvPoolLayer((3, 2, 3, 3), (4, 2, -8, 7)), ValueError,
     r"image_shape\[2\] must be >= 1, got -8"),
    (lambda: N3.ConvPoolLayer((3, 2, 3, 3), (4, 2, 8)), ValueError,
     r"image_shape must have 4 entries \(mini_batch_size, channels, rows, columns\)"),
    (lambda: N3.ConvPoolLayer((3, 2, 3, 3), None), TypeError,
     r"image_shape must be a tuple of 4 integers .*got NoneType"),
    (lambda: N3.ConvPoolLayer((3, 2, 3, 3), (4, 2, 8, 7), (2,)), ValueError,
     r"poolsize must have 2 entries \(rows, columns\), got \(2,\)"),
    (lambda: N3.ConvPoolLayer((3, 2, 3, 3), (4, 2, 8, 7), (2, 0)), ValueError,
     r"poolsize\[1\] must be >= 1, got 0"),
    (lambda: N3.ConvPoolLayer((3, 2, 3, 3), (4, 2, 8, 7), (True, 2)), TypeError,
     r"poolsize\[0\] must be an integer"),
    (lambda: N3.ConvPoolLayer((20, 1, 5, 5), (10, 3, 28, 28)), ValueError,
     r"filter_shape \(20, 1, 5, 5\) has 1 input channels, image_shape \(10, 3, 28, 28\) has 3"),
    (lambda: N3.ConvPoolLayer((3, 2, 9, 3), (4, 2, 8, 7)), ValueError,
     r"filters of 9x3 .*do not fit images of 8x7"),
    (lambda: N3.ConvPoolLayer((3, 2, 3, 8), (4, 2, 8, 7)), ValueError,
     r"filters of 3x8 .*do not fit images of 8x7"),
    (lambda: N3.ConvPoolLayer((3, 2, 3, 3), (4, 2, 8, 7), (7, 2)), ValueError,
     r"poolsize \(7, 2\) does not fit the 6x5 convolution output"),
    (lambda: N3.ConvPoolLayer((3, 2, 3, 3), (4, 2, 8, 7), activation_fn="ReLU"), TypeError,
     r"activation_fn must be a function such as network3's sigmoid.*got str 'ReLU'"),
    (lambda: N3.ConvPoolLayer((3, 1, 1, 1), (1, 1, 40000, 40000)), ValueError,
     r"ConvPoolLayer.* is too large: the convolution outputs = \d+, at most 2147483647"),
    (lambda: N3.ConvPoolLayer((2 ** 20, 2 ** 8, 3, 3), (1, 2 ** 8, 8, 8)), ValueError,
     r"too large: the filters' weights = \d+"),
    # FullyConnectedLayer(n_in, n_out, activation_fn, p_dropout)
    (lambda: N3.FullyConnectedLayer(0, 10), ValueError, r"n_in must be >= 1, got 0"),
    (lambda: N3.FullyConnectedLayer(10, -1), ValueError, r"n_out must be >= 1, got -1"),
    (lambda: N3.FullyConnectedLayer(10.0, 10), TypeError, r"n_in must be an integer, got float"),
    (lambda: N3.FullyConnectedLayer("10", 10), TypeError, r"n_in must be an integer, got str"),
    (lambda: N3.FullyConnectedLayer(10, 10, p_dropout=1.0), ValueError,
     r"p_dropout must be in \[0, 1\), got 1.0"),
    (lambda: N3.FullyConnectedLayer(10, 10, p_dropout=-0.1), ValueError,
     r"p_dropout must be in \[0, 1\), got -0.1"),
    (lambda: N3.FullyConnectedLayer(10, 10, p_dropout=float("nan")), ValueError,
     r"p_dropout must be finite, got nan"),
    (lambda: N3.FullyConnectedLayer(10, 10, p_dropout="0.5"), TypeError,
     r"p_dropout must be a real number, got str"),
    (lambda: N3.FullyConnectedLayer(10, 10, activation_fn=None), TypeError,
     r"activation_fn must be a function .*got NoneType"),
    (lambda: N3.FullyConnectedLayer(2 ** 20, 2 ** 20), ValueError,
     r"FullyConnectedLayer\(n_in=1048576, n_out=1048576\) is too large: n_in \* n_out"),
    # SoftmaxLayer(n_in, n_out, p_dropout)
    (lambda: N3.SoftmaxLayer(10, 0), ValueError, r"n_out must be >= 1, got 0"),
    (lambda: N3.SoftmaxLayer(None, 10), TypeError, r"n_in must be an integer, got NoneType"),
    (lambda: N3.SoftmaxLayer(10, 10, p_dropout=2), ValueError, r"p_dropout must be in \[0, 1\)"),
]


@pytest.mark.parametrize("call,exc,match", BAD_LAYERS3)
def test_network3_layer_constructors(call, exc, match):
    state = np.random.get_state()
    t0 = time.perf_counter()
    with pytest.raises(exc, match=match):
        call()
    assert time.perf_counter() - t0 < 0.5            # before any allocation
    # Nothing drawn: refused before the parameters are initialised.
    assert np.random.get_state()[2] == state[2] and \
        np.array_equal(np.random.get_state()[1], state[1])


def test_network3_layer_numpy_integers_accepted():
    layer = N3.ConvPoolLayer(np.array([3, 2, 3, 3]), (np.int64(4), 2, 8, 7), (2, np.int32(2)))
    assert layer.filter_shape == (3, 2, 3, 3) and all(type(s) is int for s in layer.image_shape)
    fc = N3.FullyConnectedLayer(np.int64(18), np.uint8(5), p_dropout=np.float32(0.5))
    assert (fc.n_in, fc.n_out, fc.p_dropout) == (18, 5, 0.5) and type(fc.n_out) is int


def _shared_layer_twice():
    fc = N3.FullyConnectedLayer(5, 5)
    return [N3.FullyConnectedLayer(6, 5), fc, fc, N3.SoftmaxLayer(5, 2)]


BAD_NETWORKS3 = [
    (lambda: N3.Network(N3.SoftmaxLayer(5, 2), 2), TypeError,
     r"layers must be a list of layers, got a single SoftmaxLayer"),
    (lambda: N3.Network(None, 2), TypeError, r"layers must be a list of .*got NoneType"),
    (lambda: N3.Network([], 2), ValueError, r"layers is empty"),
    (lambda: N3.Network([N3.FullyConnectedLayer(6, 5), "softmax"], 2), TypeError,
     r"layers\[1\] must be a ConvPoolLayer, FullyConnectedLayer or SoftmaxLayer, got str"),
    (lambda: N3.Network([N3.FullyConnectedLayer(6, 5), 3], 2), TypeError,
     r"layers\[1\] must be .*got int 3"),
    (lambda: N3.Network([N3.FullyConnectedLayer(6, 5)], 2), ValueError,
     r"the last layer must be a SoftmaxLayer .*got FullyConnectedLayer"),
    (lambda: N3.Network([N3.SoftmaxLayer(6, 5), N3.SoftmaxLayer(5, 2)], 2), ValueError,
     r"only the last layer may be a SoftmaxLayer, got one at layers\[0\] of 2"),
    (lambda: N3.Network([N3.FullyConnectedLayer(6, 5), N3.SoftmaxLayer(4, 2)], 2), ValueError,
     r"layers\[1\] \(SoftmaxLayer\) has n_in=4, but layers\[0\] \(FullyConnectedLayer\) gives 5"),
    (lambda: N3.Network(_layers3()[:1] + [N3.FullyConnectedLayer(20, 5), N3.SoftmaxLayer(5, 4)],
                        M3), ValueError,
     r"layers\[1\] \(FullyConnectedLayer\) has n_in=20, but layers\[0\] \(ConvPoolLayer\) "
     r"gives 18 outputs \(3 filters x 3 x 2\)"),
    (lambda: N3.Network([N3.ConvPoolLayer((3, 2, 3, 3), (M3, 2, 8, 7)),
                         N3.ConvPoolLayer((4, 2, 2, 2), (M3, 2, 4, 4), (1, 1)),
                         N3.SoftmaxLayer(36, 2)], M3), ValueError,
     r"layers\[1\] \(ConvPoolLayer\) expects images \(2, 4, 4\) .*but layers\[0\] gives "
     r"\(3, 3, 2\)"),
    (lambda: N3.Network([N3.FullyConnectedLayer(112, 112),
                         N3.ConvPoolLayer((3, 2, 3, 3), (M3, 2, 8, 7)),
                         N3.SoftmaxLayer(18, 2)], M3), ValueError,
     r"layers\[1\] \(ConvPoolLayer\) follows a FullyConnectedLayer: conv-pool layers must "
     r"come first"),
    (lambda: N3.Network(_layers3(m=10), M3), ValueError,
     r"layers\[0\] \(ConvPoolLayer\) has image_shape \(10, 2, 8, 7\) for mini-batches of 10, "
     r"but the network's mini_batch_size is 4"),
    (lambda: N3.Network(_shared_layer_twice(), 2), ValueError,
     r"layers\[2\] is the same object as layers\[1\]"),
    (lambda: N3.Network([N3.FullyConnectedLayer(3, 3) for _ in range(33)]
                        + [N3.SoftmaxLayer(3, 2)], 2), ValueError,
     r"expected at most 32 layers, got 34"),
    (lambda: N3.Network(_layers3(), 0), ValueError, r"mini_batch_size must be >= 1, got 0"),
    (lambda: N3.Network(_layers3(), 4.0), TypeError,
     r"mini_batch_size must be an integer, got float 4.0"),
    (lambda: N3.Network(_layers3(), M3, dtype=np.float16), TypeError,
     r"dtype must be float32 or float64, got float16"),
    (lambda: N3.Network(_layers3(), M3, dtype="int32"), TypeError,
     r"dtype must be float32 or float64, got int32"),
    (lambda: N3.Network(_layers3(), M3, dropout_seed=-1), ValueError,
     r"dropout_seed must be >= 0, got -1"),
    (lambda: N3.Network(_layers3(), M3, dropout_seed=2 ** 64), ValueError,
     r"dropout_seed must be < 2\*\*64"),
    (lambda: N3.Network(_layers3(), M3, dropout_seed=0.5), TypeError,
     r"dropout_seed must be an integer, got float 0.5"),
    (lambda: N3.Network(_layers3(), M3, num_threads=0), ValueError,
     r"num_threads must be >= 1, got 0"),
    (lambda: N3.Network(_layers3(), M3, num_threads="2"), TypeError,
     r"num_threads must be an int or None"),
]


@pytest.mark.parametrize("call,exc,match", BAD_NETWORKS3)
def test_network3_network(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def _nan_at(x, row):
    x = x.copy()
    x[row, 3] = np.nan
    return x


def _bad_sgd3():
    x, y = _data3()
    xv, yv = _data3(8, seed=1)
    return [
        # hyper-parameters
        (dict(epochs=-1), ValueError, r"epochs must be >= 0, got -1"),
        (dict(epochs=1.0), TypeError, r"epochs must be an integer, got float 1.0"),
        (dict(mini_batch_size=0), ValueError, r"mini_batch_size must be >= 1, got 0"),
        (dict(mini_batch_size=5), ValueError,
         r"SGD's mini_batch_size 5 differs from the network's 4"),
        (dict(eta=float("nan")), ValueError, r"eta must be finite, got nan"),
        (dict(eta=float("inf")), ValueError, r"eta must be finite, got inf"),
        (dict(eta=0.0), ValueError, r"eta must be > 0, got 0.0"),
        (dict(eta=-0.1), ValueError, r"eta must be > 0, got -0.1"),
        (dict(eta="0.1"), TypeError, r"eta must be a real number, got str"),
        (dict(lmbda=-1.0), ValueError, r"lmbda must be >= 0, got -1.0"),
        (dict(lmbda=float("nan")), ValueError, r"lmbda must be finite, got nan"),
        (dict(lmbda=None), TypeError, r"lmbda must be a real number, got NoneType"),
        # training data
        (dict(training_data=None), TypeError,
         r"training_data must be a pair \(x, y\) of arrays or SharedArrays, got NoneType"),
        (dict(training_data=(x,)), TypeError, r"got a tuple of 1 items"),
        (dict(training_data=[(x[i].reshape(-1, 1), y[i]) for i in range(12)]), TypeError,
         r"got a list of 12 items \(a list of \(x, y\) pairs is network.py's layout"),
        (dict(training_data=(_nan_at(x, 5), y)), ValueError,
         r"training_data x example 5 contains NaN or infinity"),
        (dict(training_data=(np.where(x > 0.5, np.inf, x), y)), ValueError,
         r"training_data x example \d+ contains NaN or infinity"),
        (dict(training_data=(x[:, :-1], y)), ValueError,
         r"training_data x has shape \(12, 111\), expected \(n, 112\)"),
        (dict(training_data=(x.ravel(), y)), ValueError,
         r"training_data x has shape \(1344,\), expected \(n, 112\)"),
        (dict(training_data=(x.astype(complex), y)), TypeError,
         r"training_data x has dtype complex128, expected real numbers"),
        (dict(training_data=(x > 0.5, y)), TypeError, r"training_data x has dtype bool"),
        (dict(training_data=(x, y[:-1])), ValueError,
         r"training_data y has shape \(11,\), expected \(12,\): one label per example"),
        (dict(training_data=(x, y.reshape(-1, 1))), ValueError,
         r"training_data y has shape \(12, 1\), expected \(12,\)"),
        (dict(training_data=(x, np.where(y == y[0], 4, y))), ValueError,
         r"training_data y label 0 is 4, expected a class in 0\.\.3"),
        (dict(training_data=(x, np.where(y == y[0], -1, y))), ValueError,
         r"training_data y label 0 is -1, expected a class in 0\.\.3"),
        (dict(training_data=(x, y + 0.5)), ValueError,
         r"training_data y label 0 is \d\.5, expected an integer class"),
        (dict(training_data=(x, y.astype(str))), TypeError,
         r"training_data y has dtype <U\d+, expected integer class labels"),
        (dict(training_data=(x[:3], y[:3])), ValueError,
         r"training_data has 3 examples, fewer than one mini-batch of 4"),
        # validation and test data
        (dict(validation_data=(xv, yv + 10)), ValueError,
         r"validation_data y label 0 is 1\d, expected a class in 0\.\.3"),
        (dict(validation_data=xv), TypeError,
         r"validation_data must be a pair \(x, y\) of arrays or SharedArrays, got an array"),
        (dict(test_data=(_nan_at(xv, 2), yv)), ValueError,
         r"test_data x example 2 contains NaN or infinity"),
        (dict(test_data=(xv[:, :50], yv)), ValueError,
         r"test_data x has shape \(8, 50\), expected \(n, 112\)"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_sgd3())))
def test_network3_sgd(case, capsys):
    change, exc, match = _bad_sgd3()[case]
    x, y = _data3()
    args = dict(training_data=(N3.SharedArray(x), N3.SharedArray(y)), epochs=1,
                mini_batch_size=M3, eta=0.1, validation_data=_data3(8, seed=1),
                test_data=_data3(8, seed=2), lmbda=0.0)
    args.update(change)
    net = _net3()
    before = [p.get_value().copy() for p in net.params]
    with pytest.raises(exc, match=match):
        net.SGD(**args)
    assert net.step == 0 and capsys.readouterr().out == ""   # nothing trained or printed
    for p, b in zip(net.params, before):
        np.testing.assert_array_equal(p.get_value(), b)


def test_network3_sgd_accepts_the_books_and_other_layouts(capsys):
    """Shared arrays as the book's, plain arrays, images (n, C, H, W), integral
    float labels (the book casts them), read-only and non-contiguous inputs, no
    validation or test data: all train the same."""
    x, y = _data3(16)
    runs = []
    for data in [(N3.SharedArray(x), N3.SharedArray(y.astype(np.int32))),
                 (x, y), (x.reshape(16, 2, 8, 7), y.astype(np.float64)),
                 (np.asfortranarray(x), y.astype(np.uint8))]:
        net = _net3()
        if isinstance(data[0], np.ndarray):
            data[0].setflags(write=False)
        net.SGD(data, 2, M3, 0.5, None, None, lmbda=0.1)
        runs.append([p.get_value().copy() for p in net.params])
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "feedforward"])
@pytest.mark.parametrize("x,exc,match", [
    (np.zeros(112), ValueError,
     r"x has shape \(112,\), expected \(n, 112\) \(one example: x.reshape\(1, -1\)\)"),
    (np.zeros((3, 113)), ValueError, r"x has shape \(3, 113\), expected \(n, 112\)"),
    (np.zeros(()), ValueError, r"x has shape \(\), expected \(n, 112\)"),
    (np.full((2, 112), np.nan), ValueError, r"x example 0 contains NaN or infinity"),
    (np.zeros((2, 112), dtype=object), TypeError, r"x has dtype object, expected real"),
    (np.array([["a"] * 112]), TypeError, r"x has dtype <U1"),
    (None, TypeError, r"x has dtype object"),
    ([[0.0] * 112, [0.0]], TypeError, r"x must be an array of shape \(n, 112\), got list"),
    ((np.zeros((2, 112)), np.zeros(2)), TypeError, r"x must be an array"),
])
def test_network3_inference(method, x, exc, match):
    net = _net3()
    with pytest.raises(exc, match=match):
        getattr(net, method)(x)


def test_network3_inference_accepts_lists_images_and_no_examples():
    net = _net3()
    x, _ = _data3(5)
    want = net.predict_proba(x)
    np.testing.assert_array_equal(net.predict_proba(x.tolist()), want)
    np.testing.assert_array_equal(net.predict_proba(x.reshape(5, 2, 8, 7)), want)
    np.testing.assert_array_equal(net.predict_proba(N3.SharedArray(x)), want)
    assert net.predict_proba(np.zeros((0, 112))).shape == (0, 4)
    assert net.predict(np.zeros((0, 112))).shape == (0,)


@pytest.mark.parametrize("call,exc,match", [
    (lambda n, x, y: n.accuracy((x, y), mini_batch_size=0), ValueError,
     r"mini_batch_size must be >= 1, got 0"),
    (lambda n, x, y: n.accuracy((x, y + 4)), ValueError,
     r"data y label 0 is \d, expected a class in 0\.\.3"),
    (lambda n, x, y: n.accuracy(x), TypeError, r"data must be a pair \(x, y\)"),
    (lambda n, x, y: n.train_mini_batch(x[:3], y[:3], 0.1), ValueError,
     r"expected a mini-batch of 4 examples, got 3"),
    (lambda n, x, y: n.train_mini_batch(x[:4], y[:4], 0.0), ValueError, r"eta must be > 0"),
    (lambda n, x, y: n.train_mini_batch(x[:4], y[:4], 0.1, -1.0), ValueError,
     r"lmbda must be >= 0, got -1.0"),
    (lambda n, x, y: n.train_mini_batch(x[:4], y[:4], 0.1, 0.0, 0), ValueError,
     r"num_training_batches must be >= 1, got 0"),
    (lambda n, x, y: n.train_mini_batch(_nan_at(x, 1)[:4], y[:4], 0.1), ValueError,
     r"mini-batch x example 1 contains NaN"),
    (lambda n, x, y: n.cost_and_gradients(x[:4], y[:4] + 9), ValueError,
     r"mini-batch y label 0 is \d+, expected a class in 0\.\.3"),
])
def test_network3_accuracy_and_single_steps(call, exc, match):
    net = _net3()
    x, y = _data3()
    with pytest.raises(exc, match=match):
        call(net, x, y)
    assert net.step == 0


@pytest.mark.parametrize("mutate,exc,match", [
    (lambda n: n.layers[1].w.set_value(np.full((18, 5), np.nan)), ValueError,
     r"layers\[1\].w \(FullyConnectedLayer\) contains NaN or infinity"),
    (lambda n: n.layers[0].b.set_value(np.array([0.0, np.inf, 0.0])), ValueError,
     r"layers\[0\].b \(ConvPoolLayer\) contains NaN or infinity"),
    (lambda n: n.layers[2].w.set_value(np.zeros((5, 4), dtype=np.int64)), TypeError,
     r"layers\[2\].w has dtype int64, expected float32 or float64"),
    (lambda n: setattr(n.layers[1], "activation_fn", lambda z: z), ValueError,
     r"layers\[1\] has the activation_fn .*whose derivative is not known: training needs one "
     r"of network3's linear, sigmoid, tanh, ReLU"),
])
def test_network3_parameters_replaced_by_user(mutate, exc, match, capsys):
    net = _net3()
    mutate(net)
    x, y = _data3()
    with pytest.raises(exc, match=match):
        net.SGD((x, y), 1, M3, 0.1, None, None)
    with pytest.raises(exc, match=match):
        net.train_mini_batch(x[:4], y[:4], 0.1)
    if "derivative" not in match:       # an unknown activation still predicts
        with pytest.raises(exc, match=match):
            net.predict(x)
    assert capsys.readouterr().out == ""


def test_network3_nonfinite_training_data_no_longer_trains_to_nan(capsys):
    """The issue's example: NaN data used to train the weights to NaN without a word."""
    net = _net3()
    x, y = _data3()
    x[7, 0] = np.nan
    with pytest.raises(ValueError, match=r"training_data x example 7 contains NaN"):
        net.SGD((N3.SharedArray(x), N3.SharedArray(y)), 1, M3, 0.1, None, None)
    assert all(np.isfinite(p.get_value()).all() for p in net.params)


@pytest.mark.parametrize("call,exc,match", [
    (lambda nets, x, y: N3.ensemble_predict([], x), ValueError, r"nets is empty"),
    (lambda nets, x, y: N3.ensemble_predict(nets[0], x), TypeError,
     r"nets must be a list of network3 Networks, got Network"),
    (lambda nets, x, y: N3.ensemble_predict(nets + ["net"], x), TypeError,
     r"nets\[2\] must be a network3 Network, got str"),
    (lambda nets, x, y: N3.ensemble_predict(
        nets + [N3.Network([N3.FullyConnectedLayer(112, 5), N3.SoftmaxLayer(5, 3)], M3)], x),
     ValueError, r"nets\[2\] maps 112 inputs to 3 classes, nets\[0\] 112 to 4"),
    (lambda nets, x, y: N3.ensemble_predict(nets, x[:, :7]), ValueError,
     r"x has shape \(12, 7\), expected \(n, 112\)"),
    (lambda nets, x, y: N3.ensemble_predict(nets, _nan_at(x, 4)), ValueError,
     r"x example 4 contains NaN"),
    (lambda nets, x, y: N3.ensemble_accuracy(nets, x), TypeError,
     r"data must be a pair \(x, y\)"),
    (lambda nets, x, y: N3.ensemble_accuracy(nets, (x, y[:5])), ValueError,
     r"data y has shape \(5,\), expected \(12,\)"),
    (lambda nets, x, y: N3.vote([[0, 1], [1, -1]]), ValueError,
     r"predictions hold the label -1, expected labels >= 0"),
    (lambda nets, x, y: N3.vote([[0, 1], [1, 5]], n_classes=4), ValueError,
     r"predictions hold the label 5, expected labels in 0\.\.3 \(n_classes=4\)"),
    (lambda nets, x, y: N3.vote([[0.5, 1.0]]), TypeError,
     r"predictions must be integer labels, got dtype float64"),
    (lambda nets, x, y: N3.vote([0, 1, 1]), ValueError,
     r"expected predictions of shape \(n_nets, n\) with n_nets >= 1, got \(3,\)"),
    (lambda nets, x, y: N3.vote(np.zeros((0, 3), int)), ValueError, r"got \(0, 3\)"),
    (lambda nets, x, y: N3.vote([[1]], n_classes=0), ValueError, r"n_classes must be >= 1"),
])
def test_network3_ensembles(call, exc, match):
    nets = [_net3(), _net3(dropout_seed=3)]
    x, y = _data3()
    with pytest.raises(exc, match=match):
        call(nets, x, y)


@pytest.mark.parametrize("filename,exc,match", [
    (3.5, TypeError, r"filename must be a path \(str or os.PathLike\) or None, got float 3.5"),
    (["mnist.pkl.gz"], TypeError, r"filename must be a path .*got list"),
    ("/nonexistent/mnist.pkl.gz", FileNotFoundError, r"no data file at '/nonexistent"),
])
def test_network3_load_data_shared(filename, exc, match):
    with pytest.raises(exc, match=match):
        N3.load_data_shared(filename)


def test_network3_softmax_accuracy_needs_matching_labels():
    net = _net3()
    x, y = _data3()
    net.predict(x)
    last = net.layers[-1]
    assert last.accuracy(y) == pytest.approx(np.mean(last.y_out == y))
    with pytest.raises(ValueError, match=r"y has shape \(5,\), expected \(12,\)"):
        last.accuracy(y[:5])
