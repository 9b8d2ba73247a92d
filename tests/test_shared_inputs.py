"""Inputs in ``mnist_loader``'s layout are trained on where they lie.

``load_data_wrapper`` makes each x a (784, 1) view of one row of one array.
When a list's inputs are all the rows of one such array, SGD uses that array
as its input matrix (read-only, never copied), finding each item by its row;
any other list is copied. Either way the training is bitwise the same, and a
change to the array between calls is noticed like any other change.
"""
import random

import numpy as np
import pytest

from nndl_fast import _config, _datacache, _dense_common, _validation, network, network2

pytestmark = pytest.mark.skipif(_config.pure_python(),
                                reason="pure-Python mode copies every list")

if not _config.pure_python():
    from nndl_fast import _dense, _packing


def _loader_layout(mnist_wrapped, n, test=False):
    """``n`` pairs whose inputs are the rows of one new (n, 784) array, made as
    load_data_wrapper makes them; returns (list, that array)."""
    source = mnist_wrapped[2 if test else 0][:n]
    base = np.array([x[:, 0] for x, _ in source])
    data = [(np.reshape(row, (784, 1)), y if test else y.copy())
            for row, (_, y) in zip(base, source)]
    return data, base


@pytest.fixture
def count_packs(monkeypatch):
    calls = {"training": 0, "labelled": 0}
    for kind, name in (("training", "pack_training"), ("labelled", "pack_labelled")):
        real = getattr(_dense_common, name)

        def counting(*args, _real=real, _kind=kind, **kwargs):
            calls[_kind] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(_dense_common, name, counting)
    _datacache.clear()
    yield calls
    _datacache.clear()


def test_the_loaders_lists_are_not_copied(mnist_wrapped):
    training, validation, test = mnist_wrapped
    for data, shape in ((training, (50000, 784)), (validation, (10000, 784)),
                        (test, (10000, 784))):
        found = _packing.shared_rows(list(data), 0, 784)
        assert found is not None
        X, rows = found
        assert X.shape == shape and not X.flags.writeable
        assert np.shares_memory(X, data[0][0])
        np.testing.assert_array_equal(rows, np.arange(shape[0]))


def test_shared_rows_follow_the_items(mnist_wrapped):
    data, base = _loader_layout(mnist_wrapped, 300)
    random.Random(1).shuffle(data)
    (X, Y), rows, found = _validation.pack_training(data, 784, 10, np.float64, shared=True)
    assert np.shares_memory(X, base) and not X.flags.writeable
    assert sorted(rows) == list(range(300)) and not np.array_equal(rows, np.arange(300))
    for p, (x, y) in enumerate(data):
        np.testing.assert_array_equal(X[rows[p]], x[:, 0])
        np.testing.assert_array_equal(Y[rows[p]], y[:, 0])
    np.testing.assert_array_equal(found["row_bits"], _packing.scan_rows(np.array(X), 1)[1])
    assert not found["row_bits"].flags.writeable
    # The copying packer's matrices, in the list's order.
    X_copy, Y_copy = _validation.pack_training(data, 784, 10, np.float64)
    np.testing.assert_array_equal(X[rows], X_copy)
    np.testing.assert_array_equal(Y[rows], Y_copy)
    (Xl, labels), rows_l, _ = _validation.pack_labelled(data, 784, 10, "test", shared=True)
    np.testing.assert_array_equal(rows_l, rows)
    np.testing.assert_array_equal(labels[rows], [int(np.argmax(y)) for _, y in data])


def _copied_cases(data, base):
    """Lists that are not all the rows of one array in the loader's way."""
    other = base.copy()
    yield "one item a copy", data[:5] + [(data[5][0].copy(), data[5][1])] + data[6:]
    yield "a subset of the rows", data[:-1]
    yield "a row twice", data[:-1] + [data[0]]
    yield "two arrays", data[:100] + [(np.reshape(r, (784, 1)), y)
                                      for r, (_, y) in zip(other[100:], data[100:])]
    yield "pairs as lists", [list(item) for item in data]
    yield "a strided view", [(np.reshape(base[i], (784, 1))[::-1], y)
                             for i, (_, y) in enumerate(data)]
    swapped = base.astype(base.dtype.newbyteorder(">"))
    yield "byte-swapped rows", [(np.reshape(r, (784, 1)), y) for r, (_, y) in zip(swapped, data)]
    wide = np.zeros((len(data), 785), base.dtype)
    wide[:, :784] = base
    yield "rows of a wider array", [(np.reshape(r[:784], (784, 1)), y)
                                    for r, (_, y) in zip(wide, data)]


def test_other_lists_are_copied(mnist_wrapped):
    data, base = _loader_layout(mnist_wrapped, 200)
    for name, case in _copied_cases(data, base):
        assert _packing.shared_rows(case, 0, 784) is None, name
        (X, Y), rows, _ = _validation.pack_training(case, 784, 10, np.float64, shared=True)
        assert not np.shares_memory(X, base), name
        np.testing.assert_array_equal(rows, np.arange(len(case)))
        np.testing.assert_array_equal(X, [np.asarray(x, np.float64)[:, 0] for x, _ in case])
    # The targets are separate arrays: copied; asked for another dtype: copied.
    assert _packing.shared_rows(data, 1, 10) is None
    X64 = _validation._pack_pairs(data, 0, 784, "input", "data", dtype=np.float64,
                                  shared=True)[0]
    assert X64.dtype == np.float64 and not np.shares_memory(X64, base)


def test_non_finite_input_names_the_item(mnist_wrapped):
    data, base = _loader_layout(mnist_wrapped, 100)
    random.Random(2).shuffle(data)
    rows = _packing.shared_rows(data, 0, 784)[1]
    base[rows[40], 3] = np.inf
    base[rows[70], 5] = np.nan
    with pytest.raises(ValueError, match="training input 40 contains NaN or infinity"):
        _validation.pack_training(data, 784, 10, np.float64, shared=True)
    with pytest.raises(ValueError, match="training input 40 contains NaN or infinity"):
        _validation.pack_training(data, 784, 10, np.float64)


def _train(module, training, test, calls, between=None, cached=True, seed=5):
    np.random.seed(seed)
    random.seed(seed)
    net = module.Network([784, 20, 10])
    for k in range(calls):
        if between is not None and k:
            between(k)
        if not cached:
            _datacache.clear()
        if module is network:
            net.SGD(training, 1, 10, 3.0, test_data=test)
        else:
            net.SGD(training, 1, 10, 0.5, lmbda=1.0, evaluation_data=test,
                    monitor_evaluation_accuracy=True, monitor_evaluation_cost=True,
                    monitor_training_cost=True, monitor_training_accuracy=True)
    return net.weights + net.biases


def _changes(training, test, base, test_base):
    def in_place(k):
        base[7 + k, 100:110] = 0.25 * k                # the array under the list
        test_base[3, 50 + k] = 1.0

    def rows_swapped(k):
        base[[1, 2]] = base[[2, 1]]

    def item_copied(k):
        training[5] = (training[5][0].copy(), training[5][1])

    def item_replaced(k):
        training[5] = (training[6][0], training[6][1])

    def appended(k):
        training.append((training[0][0] * 0.5, training[0][1]))

    def shuffled(k):
        random.Random(k).shuffle(training)
        random.Random(k).shuffle(test)
    return [None, in_place, rows_swapped, item_copied, item_replaced, appended, shuffled]


@pytest.mark.parametrize("module", [network, network2])
@pytest.mark.parametrize("change", range(7))
def test_shared_inputs_train_as_copies(module, change, mnist_wrapped, quiet, count_packs):
    """The same training with the kept (shared) packing and with a fresh copy
    before each call, whatever happens to the list or its array between calls."""
    results = []
    for cached in (True, False):
        training, base = _loader_layout(mnist_wrapped, 500)
        test, test_base = _loader_layout(mnist_wrapped, 200, test=True)
        random.Random(9).shuffle(training)         # rows in another order than the items
        between = _changes(training, test, base, test_base)[change]
        with quiet():
            results.append(_train(module, training, test, 3, between, cached=cached))
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_change_to_the_array_is_packed_again(mnist_wrapped, quiet, count_packs):
    training, base = _loader_layout(mnist_wrapped, 300)
    with quiet():
        _train(network, training, None, 2)
    assert count_packs["training"] == 1
    base[17, 300] += 0.5
    with quiet():
        _train(network, training, None, 1)
    assert count_packs["training"] == 2


def test_shared_array_is_never_written(mnist_wrapped, quiet, count_packs):
    training, base = _loader_layout(mnist_wrapped, 400)
    test, test_base = _loader_layout(mnist_wrapped, 100, test=True)
    before, test_before = base.copy(), test_base.copy()
    with quiet():
        _train(network, training, test, 2)
        _train(network2, training, test, 2)
    np.testing.assert_array_equal(base, before)
    np.testing.assert_array_equal(test_base, test_before)
    assert base.flags.writeable                       # the user's array is left as it was


# --- the one read of the packed inputs, the sparse rows, the labels -------------------

def _bits_of(M):
    """Bit k of word w of row i set when M[i, 64 w + k] != 0, in NumPy."""
    n, m = M.shape
    padded = np.zeros((n, max(1, -(-m // 64)) * 64), bool)
    padded[:, :m] = M != 0
    weights = np.uint64(1) << np.arange(64, dtype=np.uint64)
    return (padded.reshape(n, -1, 64).astype(np.uint64) * weights).sum(axis=2,
                                                                       dtype=np.uint64)


def _byte_hash(row):
    """The fingerprint's hash of an array's bytes, in Python: the 8-byte words
    (the last zero-padded) each xor'ed with its position times a constant,
    summed with the byte count, modulo 2**64."""
    raw = row.tobytes()
    if not raw:
        return 0
    step, mask = 0x9E3779B97F4A7C15, 2 ** 64 - 1
    n_words = len(raw) // 8
    padded = raw + bytes(8 - len(raw) % 8 if len(raw) % 8 else 8)
    total = len(raw)
    for k in range(n_words + 1):
        word = int.from_bytes(padded[8 * k:8 * k + 8], "little")
        total += word ^ ((k * step) & mask)
    return total & mask


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [131, 128, 64, 5, 3, 0])
def test_scan_rows(dtype, m):
    rng = np.random.RandomState(0)
    M = rng.rand(57, m).astype(dtype)
    M[rng.rand(57, m) < 0.7] = 0
    M[4] = 0
    M[9, :5] = -0.0
    for nt in (1, 2, 3):
        bad, bits, hashes = _packing.scan_rows(M, nt)
        assert bad == -1
        np.testing.assert_array_equal(bits, _bits_of(M))
        assert [int(h) for h in hashes] == [_byte_hash(row) for row in M]
    if m >= 5:
        M[30, 2] = np.nan
        M[30, 1] = -0.0
        M[12, m - 1] = -np.inf
        M[50, 0] = np.inf
        assert _packing.scan_rows(M, 2)[0] == 12
        M[12, m - 1] = np.finfo(dtype).max
        assert _packing.scan_rows(M, 2)[0] == 30
    assert _packing.scan_rows(M[:0], 2)[0] == -1
    with pytest.raises(ValueError, match="C-contiguous"):
        _packing.scan_rows(np.zeros((4, 6), dtype).T, 1)


def test_fingerprint_takes_the_hashes_of_the_rows_it_would_read(mnist_wrapped):
    data, base = _loader_layout(mnist_wrapped, 300)
    random.Random(3).shuffle(data)
    X, rows = _packing.shared_rows(data, 0, 784)
    _, _, hashes = _packing.scan_rows(X, 2)
    plain = _packing.fingerprint(data, rows, 2)
    assert _packing.fingerprint(data, rows, 2, known=(X, hashes)) == plain
    wrong = hashes.copy()
    wrong[rows[7]] += np.uint64(1)
    # Used for the items that are X's rows...
    assert _packing.fingerprint(data, rows, 2, known=(X, wrong)) != plain
    # ...and for no other item (a copy of a row is read).
    copied = list(data)
    copied[7] = (data[7][0].copy(), data[7][1])
    assert _packing.fingerprint(copied, rows, 2, known=(X, wrong)) == \
        _packing.fingerprint(copied, rows, 2)
    with pytest.raises(ValueError, match="known"):
        _packing.fingerprint(data, rows, 2, known=(X[:10], hashes[:10]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_rows_from_bits_and_threads(dtype):
    rng = np.random.RandomState(1)
    X = rng.rand(301, 200).astype(dtype)
    X[rng.rand(301, 200) < 0.8] = 0
    X[[0, 150, 300]] = 0                              # empty rows, first and last
    X[77] = 1                                         # a full row
    one = _dense.sparse_rows(X)
    bits = _packing.scan_rows(X, 2)[1]
    for kwargs in (dict(num_threads=2), dict(num_threads=3, row_bits=bits),
                   dict(row_bits=bits)):
        xs = _dense.sparse_rows(X, **kwargs)
        for name in ("ptr", "idx", "val", "bits"):
            np.testing.assert_array_equal(getattr(xs, name), getattr(one, name))
    assert (one.val[one.nnz:] == 0).all() and len(one.val) == one.nnz + 16
    assert one.nnz == np.count_nonzero(X)
    # Given bits are kept (read-only) or copied (writeable), never changed.
    assert _dense.sparse_rows(X, row_bits=bits).bits is not bits
    bits.flags.writeable = False
    assert _dense.sparse_rows(X, row_bits=bits).bits is bits
    for bad in (bits[:-1], bits.astype(np.int64), bits[:, :3], np.asfortranarray(bits)):
        with pytest.raises(ValueError, match="row_bits"):
            _dense.sparse_rows(X, row_bits=bad)
    past = bits.copy()
    past[5, -1] |= np.uint64(1) << np.uint64(63)
    with pytest.raises(ValueError, match="past column 199"):
        _dense.sparse_rows(X, row_bits=past)
    with pytest.raises(ValueError, match="num_threads"):
        _dense.sparse_rows(X, num_threads=0)


def test_labels_in_c_as_in_python():
    col = np.zeros((4, 1))
    col[2] = 1.0
    nan_col = np.array([[0.5], [np.nan], [np.nan], [3.0]])
    tie = np.array([[1.0], [3.0], [3.0], [0.0]])
    data = [(None, 3), (None, np.int32(1)), (None, np.uint8(0)), (None, col),
            (None, nan_col), (None, tie), (None, col[::-1].copy()),
            (None, np.asfortranarray(np.array([[0.0], [0.0], [0.0], [2.0]])))]
    want = _validation._labels_in_python(data, 4, "test")
    np.testing.assert_array_equal(_packing.labels(data, 4), want)
    np.testing.assert_array_equal(want, [3, 1, 0, 2, 1, 1, 1, 3])
    # Everything else goes to the Python loop (which reads it or raises).
    for y in (True, 4, -1, 2 ** 70, np.uint64(2 ** 64 - 1), col.astype(np.float32),
              np.array([[2]]), 2.0, None, col[:3]):
        assert _packing.labels([(None, 0), (None, y)], 4) is None
    assert _packing.labels([(None, 0), [None, 1]], 4) is None
    assert _packing.labels([(None, 0), (None, 1, 2)], 4) is None
    np.testing.assert_array_equal(
        _validation.pack_labelled([(np.zeros((2, 1)), np.array([[2]]))], 2, 4)[1], [2])
    with pytest.raises(ValueError, match="test label 1 is 4, expected a class in 0..3"):
        _validation.pack_labelled([(np.zeros((2, 1)), 0), (np.zeros((2, 1)), 4)], 2, 4)


@pytest.mark.parametrize("module", [network, network2])
def test_shared_and_copied_lists_train_alike(module, mnist_wrapped, quiet, count_packs):
    """The same items trained on where they lie and as copies (another packing,
    rows in the list's order): the same weights and the same printed lines, but
    for the costs' last digits (a sum over the rows, in their order)."""
    results, printed = [], []
    for shared in (True, False):
        training, base = _loader_layout(mnist_wrapped, 500)
        test, _ = _loader_layout(mnist_wrapped, 200, test=True)
        random.Random(4).shuffle(training)
        random.Random(5).shuffle(test)
        if not shared:
            training = [(x.copy(), y) for x, y in training]
            test = [(x.copy(), y) for x, y in test]
        assert (_packing.shared_rows(training, 0, 784) is not None) == shared
        with quiet() as out:
            results.append(_train(module, training, test, 2))
        printed.append(out.getvalue())
    for a, b in zip(*results):
        assert np.array_equal(a, b)
    lines = [text.splitlines() for text in printed]
    assert len(lines[0]) == len(lines[1])
    for a, b in zip(*lines):
        if a.startswith("Cost on"):
            head, value = a.rsplit(" ", 1)
            assert b.startswith(head + " ")
            assert float(b.rsplit(" ", 1)[1]) == pytest.approx(float(value), rel=1e-12)
        else:
            assert a == b


def _loader_targets(data, seed=None):
    """``data`` with its targets remade as views of the rows of one one-hot array,
    item p's target in the row holding its input, as ``load_data_wrapper`` makes
    them (in a random row order when ``seed``); returns (list, that array)."""
    labels = [int(np.argmax(y)) for _, y in data]
    order = _packing.shared_rows(data, 0, 784)[1] if seed is None else \
        np.random.RandomState(seed).permutation(len(data))
    targets = np.zeros((len(data), 10))
    targets[order, labels] = 1.0
    return [(x, np.reshape(targets[order[p]], (10, 1))) for p, (x, _) in enumerate(data)], \
        targets


def test_the_loaders_targets_are_not_copied(mnist_wrapped):
    training = list(mnist_wrapped[0])
    found = _packing.shared_rows(training, 1, 10)
    assert found is not None and found[0].shape == (50000, 10)
    (X, Y), rows, _ = _validation.pack_training(training, 784, 10, np.float64, shared=True)
    assert np.shares_memory(Y, training[0][1]) and not Y.flags.writeable
    np.testing.assert_array_equal(Y[rows[:100]], [y[:, 0] for _, y in training[:100]])
    # asked for float32 targets, they are copied
    (_, Y32), _, _ = _validation.pack_training(training[:50], 784, 10, np.float32, shared=True)
    assert Y32.dtype == np.float32 and not np.shares_memory(Y32, training[0][1])


@pytest.mark.parametrize("targets_order", [None, 3])
def test_shared_targets_follow_their_items(targets_order, mnist_wrapped):
    """Targets shared in the inputs' row order or in another one: row rows[p] of
    the packed Y is item p's target either way."""
    data, base = _loader_layout(mnist_wrapped, 300)
    random.Random(1).shuffle(data)
    data, targets = _loader_targets(data, targets_order)
    (X, Y), rows, _ = _validation.pack_training(data, 784, 10, np.float64, shared=True)
    assert np.shares_memory(X, base)
    assert np.shares_memory(Y, targets) == (targets_order is None)
    np.testing.assert_array_equal(X[rows], [x[:, 0] for x, _ in data])
    np.testing.assert_array_equal(Y[rows], [y[:, 0] for _, y in data])


@pytest.mark.parametrize("module", [network, network2])
@pytest.mark.parametrize("change", ["none", "in_place", "rows_swapped", "item_copied"])
def test_shared_targets_train_as_copies(module, change, mnist_wrapped, quiet, count_packs):
    """Kept (shared) targets train as a fresh copy before each call would, whatever
    happens to the targets' array or items between calls."""
    results = []
    for cached in (True, False):
        training, _ = _loader_layout(mnist_wrapped, 400)
        test, _ = _loader_layout(mnist_wrapped, 100, test=True)
        random.Random(9).shuffle(training)
        training, targets = _loader_targets(training)

        def between(k):
            if change == "in_place":
                targets[5 + k] = np.roll(targets[5 + k], 1)
            elif change == "rows_swapped":
                targets[[1, 2]] = targets[[2, 1]]
            elif change == "item_copied":
                training[7] = (training[7][0], training[7][1].copy())
        with quiet():
            results.append(_train(module, training, test, 3, between, cached=cached))
    for a, b in zip(*results):
        assert np.array_equal(a, b)
