"""save / load for chapter 1's and chapter 6's networks: round trips, atomic
writes, and refusal of malformed files."""
import contextlib
import json
import os

import numpy as np
import pytest

from nndl_fast import network, network2
from nndl_fast.reference import network2 as ref2

# Every test here runs twice: compiled in the main suite, and on the reference
# classes in pure-Python mode (test_fallback.test_purepython_subset).
pytestmark = pytest.mark.purepython


# ------------------------------------------------------------- network.py
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_network_roundtrip_and_the_books_loader_reads_it(tmp_path, dtype):
    np.random.seed(1)
    net = network.Network([6, 5, 3], dtype=dtype)
    path = tmp_path / "net.json"
    net.save(path)
    back = network.load(path, dtype=dtype)
    assert back.sizes == [6, 5, 3] and back.dtype == dtype
    for a, b in zip(net.weights + net.biases, back.weights + back.biases):
        assert np.array_equal(a, b)
    book = ref2.load(str(path))
    assert book.cost is ref2.QuadraticCost
    x = np.random.default_rng(0).random((6, 1))
    np.testing.assert_allclose(book.feedforward(x), net.feedforward(x), rtol=1e-6)
    assert os.listdir(tmp_path) == ["net.json"]


def test_network_load_refuses_another_cost(tmp_path):
    path = tmp_path / "ce.json"
    network2.Network([4, 2]).save(path)
    with pytest.raises(ValueError, match="expected a sigmoid network with cost QuadraticCost.*"
                                         "got CrossEntropyCost"):
        network.load(path)


def test_network_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "net.json"
    np.random.seed(0)
    network.Network([3, 2]).save(path)
    before = path.read_bytes()
    real_atomic_write = network2.atomic_write

    class PartThenFail(object):
        def __init__(self, f):
            self.f = f

        def write(self, text):
            self.f.write(text[:10])
            raise OSError("disk full")

    @contextlib.contextmanager
    def failing_atomic_write(filename, mode="w"):
        with real_atomic_write(filename, mode) as f:
            yield PartThenFail(f)
    monkeypatch.setattr(network2, "atomic_write", failing_atomic_write)
    with pytest.raises(OSError, match="disk full"):
        network.Network([3, 2]).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.json"]


# ------------------------------------------------------------ network3.py
def _net3(dtype=np.float32, seed=0):
    from nndl_fast import network3 as n3
    np.random.seed(seed)
    return n3.Network([
        n3.ConvPoolLayer(filter_shape=(3, 1, 5, 5), image_shape=(4, 1, 12, 12),
                         poolsize=(2, 2), activation_fn=n3.ReLU),
        n3.FullyConnectedLayer(n_in=3 * 4 * 4, n_out=8, activation_fn=n3.tanh, p_dropout=0.25),
        n3.SoftmaxLayer(n_in=8, n_out=5, p_dropout=0.5)], 4, dtype=dtype)


def _params(net):
    return [p.get_value() for p in net.params]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_network3_roundtrip_keeps_predictions_and_training(tmp_path, dtype):
    from nndl_fast import network3 as n3
    net = _net3(dtype)
    rng = np.random.default_rng(0)
    x = rng.random((8, 144)).astype(np.float32)
    y = rng.integers(0, 5, 8)
    net.train_mini_batch(x[:4], y[:4], 0.5)
    path = tmp_path / "net.npz"
    net.save(path)
    state = np.random.get_state()[1].copy()
    back = n3.load(path)
    assert np.array_equal(np.random.get_state()[1], state)  # the caller's stream untouched
    assert back.dtype == dtype and back.mini_batch_size == 4 and back.step == 1
    assert back.dropout_seed == net.dropout_seed
    assert [type(l) for l in back.layers] == [type(l) for l in net.layers]
    assert back.layers[0].activation_fn is n3.ReLU and back.layers[1].p_dropout == 0.25
    for a, b in zip(_params(net), _params(back)):
        assert a.dtype == b.dtype == dtype and np.array_equal(a, b)
    assert np.array_equal(back.predict_proba(x), net.predict_proba(x))
    # Training goes on exactly as it would have (same dropout masks: same step).
    net.train_mini_batch(x[4:], y[4:], 0.5)
    back.train_mini_batch(x[4:], y[4:], 0.5)
    for a, b in zip(_params(net), _params(back)):
        assert np.array_equal(a, b)
    assert os.listdir(tmp_path) == ["net.npz"]


def test_network3_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "net.npz"
    _net3(seed=0).save(path)
    before = path.read_bytes()
    real = np.lib.format.write_array
    calls = []

    def write_some_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # midway through the archive
            raise OSError("disk full")
        return real(*args, **kwargs)
    monkeypatch.setattr(np.lib.format, "write_array", write_some_then_fail)
    with pytest.raises(OSError, match="disk full"):
        _net3(seed=1).save(path)
    assert len(calls) == 3
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.npz"]


def _rewrite(src, dst, change):
    """Copy the archive at src to dst with ``change(entries)`` applied (a dict)."""
    with np.load(src) as z:
        entries = {k: z[k] for k in z.files}
    change(entries)
    np.savez(dst, **entries)


def _set_meta(**updates):
    def change(entries):
        meta = json.loads(str(entries["metadata"]))
        for key, value in updates.items():
            target = meta
            *path, last = key.split(".")
            for p in path:
                target = target[int(p)] if p.isdigit() else target[p]
            target[last] = value
        entries["metadata"] = np.array(json.dumps(meta))
    return change


@pytest.mark.parametrize("change, message", [
    (lambda e: e.update(layer1_w=e["layer1_w"][:-1]),
     r"layer1_w has shape \(47, 8\), expected \(48, 8\)"),
    (lambda e: e["layer2_b"].__setitem__(0, np.nan), "layer2_b contains NaN or infinity"),
    (lambda e: e.update(layer0_b=e["layer0_b"].astype(np.int64)),
     "layer0_b has dtype int64, expected float32 or float64"),
    (lambda e: e.pop("layer2_b"), "expected the entries"),
    (lambda e: e.update(extra=np.zeros(2)), "expected the entries"),
    (lambda e: e.pop("metadata"), "expected an entry 'metadata'"),
    (lambda e: e.update(metadata=np.array("{not json")), "metadata is not valid JSON"),
    (lambda e: e.update(metadata=np.frombuffer(b"{}", np.uint8)), "0-d text array"),
    (_set_meta(**{"layers.0.activation_fn": "os.system"}),
     r"layers\[0\].activation_fn must be one of linear, sigmoid, tanh, ReLU, got 'os.system'"),
    (_set_meta(**{"layers.1.type": "EvalLayer"}), r"layers\[1\] must be an object with 'type'"),
    (_set_meta(**{"layers.1.p_dropout": 1.5}), r"p_dropout must be a number in \[0, 1\)"),
    (_set_meta(**{"layers.0.filter_shape": [3, 1, 5, 0]}), r"filter_shape\[3\] must be >= 1"),
    (_set_meta(mini_batch_size=True), "mini_batch_size must be an integer, got True"),
    (_set_meta(dtype="float16"), "dtype must be 'float32' or 'float64', got 'float16'"),
    (_set_meta(format="keras"), "expected format 'nndl_fast.network3' version 1, got 'keras'"),
    # Shapes that match their own metadata but layers that do not fit together.
    (lambda e: (_set_meta(**{"layers.1.n_in": 40})(e), e.update(layer1_w=np.zeros((40, 8),
                                                                                   np.float32))),
     r"the layers do not fit together: layers\[1\] \(FullyConnectedLayer\) has n_in=40, but "
     r"layers\[0\] \(ConvPoolLayer\) gives 48 outputs"),
])
def test_network3_load_refuses_bad_archives(tmp_path, change, message):
    from nndl_fast import network3 as n3
    good = tmp_path / "good.npz"
    _net3().save(good)
    bad = tmp_path / "bad.npz"
    _rewrite(good, bad, change)
    with pytest.raises(n3.NetworkFileError, match=message) as info:
        n3.load(bad)
    assert str(bad) in str(info.value)
    assert isinstance(info.value, ValueError)


class _Trap(object):
    """Unpickling this would record that it happened."""
    triggered = []

    def __reduce__(self):
        return (_Trap.triggered.append, ("unpickled",))


def test_network3_load_never_unpickles(tmp_path):
    from nndl_fast import network3 as n3
    good = tmp_path / "good.npz"
    _net3().save(good)
    for key in ("metadata", "layer0_w"):
        bad = tmp_path / ("bad_%s.npz" % key)
        _rewrite(good, bad, lambda e: e.update({key: np.array([_Trap()], dtype=object)}))
        with pytest.raises(n3.NetworkFileError):
            n3.load(bad)
    pickled = tmp_path / "net.pkl"
    import pickle
    pickled.write_bytes(pickle.dumps(_Trap()))
    with pytest.raises(n3.NetworkFileError, match="expected an .npz archive"):
        n3.load(pickled)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(n3.NetworkFileError, match="got a single array"):
        n3.load(tmp_path / "one.npy")
    assert _Trap.triggered == []


def test_network3_load_refuses_a_truncated_archive(tmp_path):
    from nndl_fast import network3 as n3
    path = tmp_path / "net.npz"
    _net3().save(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(n3.NetworkFileError, match="expected an .npz archive"):
        n3.load(path)
    with pytest.raises(FileNotFoundError):
        n3.load(tmp_path / "missing.npz")
