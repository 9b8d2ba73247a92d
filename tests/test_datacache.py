"""SGD called one epoch at a time on the same list: what the first call packs is
kept and reused (``nndl_fast._datacache``), and any change to the list is noticed.

Every test trains twice from the same seeds: once with the kept packing, once
with the kept packing dropped before each call; the weights must be bitwise
equal, so a stale packing (which would train on the old data) cannot pass.
"""
import os
import random

import numpy as np
import pytest

from nndl_fast import _config, _datacache, _dense_common, network, network2

pytestmark = pytest.mark.skipif(_config.pure_python(),
                                reason="pure-Python mode packs on every call")


@pytest.fixture
def count_packs(monkeypatch):
    """calls["training"] / calls["labelled"]: how often each packer ran."""
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


def _copy(data):
    """The same pairs in new arrays (so changing one list leaves the other alone)."""
    return [(x.copy(), y.copy() if isinstance(y, np.ndarray) else y) for x, y in data]


def _train(module, training, test, calls, between=None, cached=True, seed=3):
    """Weights after ``len(calls)`` one-epoch SGD calls; ``between(k)`` runs before
    call k (k >= 1) and may change the lists."""
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
                    monitor_evaluation_accuracy=True, monitor_training_cost=True)
    return net.weights + net.biases


def _same_training(module, mnist_wrapped, quiet, between_factory, calls=3):
    """Train with and without the kept packing, changing the lists alike."""
    results = []
    for cached in (True, False):
        training = _copy(mnist_wrapped[0][:600])
        test = _copy(mnist_wrapped[2][:200])
        with quiet():
            results.append(_train(module, training, test, calls,
                                  between_factory(training, test), cached=cached))
    for a, b in zip(*results):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("module", [network, network2])
def test_repeated_calls_pack_once(module, mnist_wrapped, quiet, count_packs):
    training = list(mnist_wrapped[0][:600])
    test = list(mnist_wrapped[2][:200])
    with quiet():
        _train(module, training, test, 4)
    assert count_packs == {"training": 1, "labelled": 1}


@pytest.mark.parametrize("module", [network, network2])
def test_kept_packing_trains_as_a_fresh_one(module, mnist_wrapped, quiet, count_packs):
    _same_training(module, mnist_wrapped, quiet, lambda tr, te: None, calls=4)


def _in_place(training, test):
    def change(k):
        training[7][0][100:110, 0] = 0.5 * k          # an input changed in place
        test[3][0][50, 0] = 1.0
    return change


def _target_in_place(training, test):
    def change(k):
        y = training[11][1]
        y[...] = np.roll(y, 1)                          # a target changed in place
    return change


def _replaced(training, test):
    def change(k):
        training[5] = (training[6][0].copy(), training[6][1].copy())
        test[0] = (test[1][0], (test[0][1] + 1) % 10)   # an int label replaced
    return change


def _appended_and_removed(training, test):
    def change(k):
        if k == 1:
            training.append((training[0][0] * 0.5, training[0][1]))
        else:
            del training[3]
            test.pop()
    return change


def _dtype_changed(training, test):
    def change(k):
        for i in range(0, len(training), 2):
            x, y = training[i]
            training[i] = (x.astype(np.float64), y)
    return change


def _shuffled_by_the_caller(training, test):
    def change(k):
        random.Random(k).shuffle(training)
        random.Random(k).shuffle(test)
    return change


def _swapped_contents(training, test):
    def change(k):
        a, b = training[1][0], training[2][0]
        tmp = a.copy()
        a[...] = b
        b[...] = tmp
    return change


@pytest.mark.parametrize("module", [network, network2])
@pytest.mark.parametrize("change", [_in_place, _target_in_place, _replaced,
                                    _appended_and_removed, _dtype_changed,
                                    _shuffled_by_the_caller, _swapped_contents])
def test_changes_between_calls_are_noticed(module, change, mnist_wrapped, quiet,
                                           count_packs):
    _same_training(module, mnist_wrapped, quiet, change)


def test_changed_list_is_packed_again(mnist_wrapped, quiet, count_packs):
    training = _copy(mnist_wrapped[0][:300])
    _train(network, training, None, 1)
    assert count_packs["training"] == 1
    training[0][0][0, 0] = 0.25
    with quiet():
        _train(network, training, None, 1)
    assert count_packs["training"] == 2


def test_fingerprint_reads_every_byte_and_the_layout():
    from nndl_fast import _packing
    data = [(np.arange(12.0).reshape(12, 1) + i, i % 3) for i in range(40)]
    rows = np.arange(40, dtype=np.int64)
    base = _packing.fingerprint(data, rows, 2)
    assert base == _packing.fingerprint(_copy(data), rows, 1)     # contents, not identity
    perm = np.random.RandomState(0).permutation(40)
    assert base == _packing.fingerprint([data[i] for i in perm], rows[perm], 2)
    assert base != _packing.fingerprint([data[i] for i in perm], rows, 2)
    for i in (0, 17, 39):
        for j in (0, 11):
            changed = _copy(data)
            changed[i][0][j, 0] = np.nextafter(changed[i][0][j, 0], np.inf)   # one ulp
            assert _packing.fingerprint(changed, rows, 2) != base
    retyped = _copy(data)
    retyped[8] = (retyped[8][0].astype(np.float32), retyped[8][1])
    assert _packing.fingerprint(retyped, rows, 2) != base
    relabelled = _copy(data)
    relabelled[4] = (relabelled[4][0], 2)
    assert _packing.fingerprint(relabelled, rows, 2) != base
    reshaped = _copy(data)
    reshaped[2] = (reshaped[2][0].reshape(1, 12), reshaped[2][1])
    assert _packing.fingerprint(reshaped, rows, 2) != base
    assert _packing.fingerprint(data[:1] + [(data[1][0][::2], 1)] + data[2:], rows, 2) is None
    assert _packing.fingerprint(data[:1] + [None] + data[2:], rows, 2) is None
    with pytest.raises(ValueError, match="permutation"):
        _packing.fingerprint(data, np.zeros(40, np.int64), 2)


def test_cache_is_bounded_and_clearable(mnist_wrapped, quiet, count_packs):
    lists = [_copy(mnist_wrapped[0][k * 50:(k + 1) * 50])
             for k in range(_datacache.MAX_ENTRIES + 2)]
    for data in lists:
        _train(network, data, None, 1)
    assert len(_datacache._entries) == _datacache.MAX_ENTRIES
    import nndl_fast
    nndl_fast.clear_cache()
    assert len(_datacache._entries) == 0


def test_fresh_zeros():
    for shape, dtype in (((1000, 785), np.float32), (300001, np.int32), ((3, 5), np.float64),
                         (0, np.float64), ((0, 784), np.float32)):
        a = _datacache.fresh_zeros(shape, dtype)
        assert a.shape == ((shape,) if np.ndim(shape) == 0 else shape)
        assert a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
        assert not a.any()
        a[...] = 7
        assert (a == 7).all()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fresh_zeros_are_private_to_a_process():
    # A forked process's writes stay in its own copy, as with NumPy's memory.
    a = _datacache.fresh_zeros((1000, 785), np.float32)
    assert a.nbytes >= _datacache.FRESH_MIN_BYTES
    pid = os.fork()
    if pid == 0:
        a[...] = 1
        os._exit(0 if (a == 1).all() else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert not a.any()
