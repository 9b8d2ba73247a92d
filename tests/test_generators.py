"""Networks with generators of their own (seed= / rng=): the book's numbers for the
same seeds, no use of the global generators, and no dependence between runs in
parallel threads."""
import random
import threading

import numpy as np
import pytest

from nndl_fast import _config, network, network2, network3
from nndl_fast.network3 import ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer


def _global_state():
    return random.getstate(), np.random.get_state()


def _same_global_state(a, b):
    return a[0] == b[0] and all(np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
                                for x, y in zip(a[1], b[1]))


def _params(net):
    return [np.array(a) for a in net.weights + net.biases]


def _dense(module, sizes, **kw):
    if module is network:
        return network.Network(sizes, **kw)
    return network2.Network(sizes, cost=network2.CrossEntropyCost, **kw)


def _sgd(module, net, data, epochs=2):
    if module is network:
        net.SGD(data, epochs, 10, 3.0)
    else:
        net.SGD(data, epochs, 10, 0.5, lmbda=1.0)


@pytest.mark.parametrize("module", [network, network2])
def test_seed_gives_the_global_seeds_numbers(module, mnist_wrapped, capsys):
    data = mnist_wrapped[0][:600]
    np.random.seed(7)
    random.seed(7)
    book = _dense(module, [784, 20, 10])
    book_data = list(data)
    _sgd(module, book, book_data)

    np.random.seed(123)
    random.seed(456)
    before = _global_state()
    own = _dense(module, [784, 20, 10], seed=7)
    own_data = list(data)
    _sgd(module, own, own_data)
    assert _same_global_state(before, _global_state())
    for a, b in zip(_params(book), _params(own)):
        assert np.array_equal(a, b)
    # The caller's list is shuffled as the book shuffles it.
    assert all(a is b for a, b in zip(book_data, own_data))


def test_network2_initializers_and_custom_cost_use_the_own_generators(mnist_wrapped, capsys):
    class MyCrossEntropy(network2.CrossEntropyCost):
        """A cost the kernel does not know: training runs the reference SGD."""

    data = mnist_wrapped[0][:200]
    np.random.seed(3)
    random.seed(3)
    book = network2.Network([784, 10, 10], cost=MyCrossEntropy)
    book.large_weight_initializer()
    book_data = list(data)
    book.SGD(book_data, 1, 10, 0.5)

    before = _global_state()
    own = network2.Network([784, 10, 10], cost=MyCrossEntropy, seed=3)
    own.large_weight_initializer()
    own_data = list(data)
    own.SGD(own_data, 1, 10, 0.5)
    assert _same_global_state(before, _global_state())
    for a, b in zip(_params(book), _params(own)):
        assert np.array_equal(a, b)
    assert all(a is b for a, b in zip(book_data, own_data))


@pytest.mark.parametrize("module", [network, network2])
@pytest.mark.parametrize("make_rng", [np.random.RandomState, np.random.default_rng])
def test_rng_leaves_the_global_state_alone_and_repeats(module, make_rng, mnist_wrapped,
                                                         capsys):
    data = mnist_wrapped[0][:300]
    before = _global_state()
    nets = []
    for _ in range(2):
        net = _dense(module, [784, 15, 10], rng=make_rng(11))
        _sgd(module, net, list(data))
        nets.append(net)
    assert _same_global_state(before, _global_state())
    for a, b in zip(_params(nets[0]), _params(nets[1])):
        assert np.array_equal(a, b)
    other = _dense(module, [784, 15, 10], rng=make_rng(12))
    assert not np.array_equal(other.weights[0], nets[0].weights[0])


@pytest.mark.parametrize("module", [network, network2])
def test_runs_in_threads_equal_sequential_runs(module, mnist_wrapped, capsys):
    data = mnist_wrapped[0][:1000]
    seeds = [1, 2, 1]

    def run(seed, out, index):
        net = _dense(module, [784, 30, 10], seed=seed)
        _sgd(module, net, list(data), epochs=3)
        out[index] = _params(net)

    sequential = [None] * len(seeds)
    for i, s in enumerate(seeds):
        run(s, sequential, i)
    before = _global_state()
    concurrent = [None] * len(seeds)
    threads = [threading.Thread(target=run, args=(s, concurrent, i))
               for i, s in enumerate(seeds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _same_global_state(before, _global_state())
    for seq, con in zip(sequential, concurrent):
        for a, b in zip(seq, con):
            assert np.array_equal(a, b)
    # Same seed, same run; another seed, another run.
    assert all(np.array_equal(a, b) for a, b in zip(sequential[0], sequential[2]))
    assert not np.array_equal(sequential[0][0], sequential[1][0])
    assert _config.active_runs() == 0


def _conv_layers():
    return [ConvPoolLayer(image_shape=(10, 1, 28, 28), filter_shape=(4, 1, 5, 5),
                          poolsize=(2, 2)),
            FullyConnectedLayer(n_in=4 * 12 * 12, n_out=20, p_dropout=0.2),
            SoftmaxLayer(n_in=20, n_out=10)]


def _conv_values(net):
    return [np.array(p.get_value()) for p in net.params]


def test_network3_seed_gives_the_global_seeds_layers():
    np.random.seed(5)
    book = network3.Network(_conv_layers(), 10)
    np.random.seed(99)
    before = _global_state()
    own = network3.Network(_conv_layers(), 10, seed=5)
    after = _global_state()
    # Building the layers drew from np.random (the book's constructors); the
    # network's own draws did not.
    np.random.seed(99)
    _conv_layers()
    assert _same_global_state(after, _global_state())
    assert not _same_global_state(before, after)
    for a, b in zip(_conv_values(book), _conv_values(own)):
        assert np.array_equal(a, b)
        assert b.dtype == np.float32


def test_network3_threads_equal_sequential_runs(mnist_wrapped, capsys):
    x = np.stack([np.asarray(p[0]).ravel() for p in mnist_wrapped[0][:200]]).astype(np.float32)
    y = np.array([int(np.argmax(p[1])) for p in mnist_wrapped[0][:200]])
    data = (network3.SharedArray(x), network3.SharedArray(y))

    def run(seed, out, index):
        net = network3.Network(_conv_layers(), 10, seed=seed, dtype=np.float64)
        net.SGD(data, 2, 10, 0.1, data, None)
        out[index] = _conv_values(net)

    sequential = [None, None]
    for i, s in enumerate([4, 4]):
        run(s, sequential, i)
    concurrent = [None, None]
    threads = [threading.Thread(target=run, args=(4, concurrent, i)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seq, con in zip(sequential, concurrent):
        for a, b in zip(seq, con):
            assert np.array_equal(a, b)


def test_bad_seed_and_rng():
    with pytest.raises(ValueError, match="seed= or rng=, not both"):
        network.Network([4, 2], seed=1, rng=np.random.RandomState(1))
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*32\), got -1"):
        network2.Network([4, 2], seed=-1)
    with pytest.raises(ValueError, match="seed must be an int"):
        network.Network([4, 2], seed=1.5)
    with pytest.raises(TypeError, match="rng must be a numpy.random.RandomState or "
                                        "numpy.random.Generator, got"):
        network3.Network(_conv_layers(), 10, rng=random.Random(1))


def test_shared_num_threads_divides_the_cores_among_active_runs(monkeypatch):
    monkeypatch.setattr(_config, "get_num_threads", lambda: 8)
    assert _config.shared_num_threads() == 8
    with _config.training_run():
        assert _config.shared_num_threads() == 8
        with _config.training_run(), _config.training_run():
            assert _config.active_runs() == 3
            assert _config.shared_num_threads() == 2
    assert _config.active_runs() == 0


def test_blas_limit_outlives_a_concurrent_run():
    """The BLAS limit set for one run is not undone by another run ending first."""
    from threadpoolctl import threadpool_info
    from nndl_fast._threads import blas_single_thread

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    outside = blas_threads()
    a, b = blas_single_thread(), blas_single_thread()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    assert all(n == 1 for n in blas_threads())
    b.__exit__(None, None, None)
    assert blas_threads() == outside
