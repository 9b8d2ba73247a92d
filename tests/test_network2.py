"""network2 (chapter 3) against the NumPy reference: seeded runs, monitors, extras,
gradient checks, validation."""
import contextlib
import io
import random

import numpy as np
import pytest

from nndl_fast import _dense_common, network2
from nndl_fast.gradient_check import central_differences
from nndl_fast.reference import network2 as ref

# Every test here runs twice: compiled in the main suite, and on the reference
# classes in pure-Python mode (test_fallback.test_purepython_subset).
pytestmark = pytest.mark.purepython

COSTS = [network2.QuadraticCost, network2.CrossEntropyCost, network2.LogLikelihoodCost]
MONITORS = dict(monitor_evaluation_cost=True, monitor_evaluation_accuracy=True,
                monitor_training_cost=True, monitor_training_accuracy=True)


def synthetic(n, n_in, n_out, seed, labels=False):
    """n pairs (x (n_in, 1), y): one-hot (n_out, 1) targets, or int labels."""
    rng = np.random.default_rng(seed)
    xs = rng.random((n, n_in, 1))
    ks = rng.integers(0, n_out, n)
    if labels:
        return [(x, int(k)) for x, k in zip(xs, ks)]
    ys = np.zeros((n, n_out, 1))
    ys[np.arange(n), ks, 0] = 1.0
    return list(zip(xs, ys))


def run_both(sizes, cost, training, sgd_args, sgd_kwargs, seed=3, init=None):
    """The same seeded SGD on our Network and the reference; (ours, reference) results."""
    results = []
    for module in (network2, ref):
        np.random.seed(seed)
        random.seed(seed + 1)
        net = module.Network(sizes, cost=cost)
        if init == "large":
            net.large_weight_initializer()
        data = list(training)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            lists = net.SGD(data, *sgd_args, **sgd_kwargs)
        results.append((net, lists, data, buf.getvalue().splitlines()))
    return results


def assert_same_run(ours, theirs, tol=1e-9):
    net_a, lists_a, data_a, out_a = ours
    net_b, lists_b, data_b, out_b = theirs
    for wa, wb in zip(net_a.weights + net_a.biases, net_b.weights + net_b.biases):
        np.testing.assert_allclose(wa, wb, rtol=0, atol=tol)
    for la, lb in zip(lists_a, lists_b):
        assert len(la) == len(lb)
        np.testing.assert_allclose(np.asarray(la, dtype=float), np.asarray(lb, dtype=float),
                                   rtol=tol, atol=tol)
    for la in lists_a[1::2]:
        assert all(type(a) is int for a in la)
    # The caller's list is shuffled exactly as random.shuffle shuffles it.
    assert all(a is b for a, b in zip(data_a, data_b))
    assert len(out_a) == len(out_b)
    for la, lb in zip(out_a, out_b):
        if la.startswith("Cost on"):
            head_a, num_a = la.rsplit(" ", 1)
            head_b, num_b = lb.rsplit(" ", 1)
            assert head_a == head_b
            assert float(num_a) == pytest.approx(float(num_b), rel=tol, abs=tol)
        else:
            assert la == lb


@pytest.mark.parametrize("cost", COSTS)
def test_mnist_run_matches_reference(mnist_wrapped, cost):
    training = mnist_wrapped[0][:1500]
    evaluation = mnist_wrapped[1][:300]
    ours, theirs = run_both([784, 30, 10], cost, training, (2, 10, 0.5),
                            dict(lmbda=5.0, evaluation_data=evaluation, **MONITORS))
    assert_same_run(ours, theirs)
    assert len(ours[1][0]) == 2 and ours[3][:6] == [
        "Epoch 0 training complete", ours[3][1], ours[3][2], ours[3][3], ours[3][4], ""]
    assert ours[3][1].startswith("Cost on training data: ")
    assert ours[3][2].startswith("Accuracy on training data: ") and ours[3][2].endswith(" / 1500")
    assert ours[3][3].startswith("Cost on evaluation data: ")
    assert ours[3][4].endswith(" / 300")


@pytest.mark.parametrize("cost", COSTS)
# Ten outputs: the book's evaluation cost one-hot encodes labels with vectorized_result.
@pytest.mark.parametrize("sizes,batch,init", [([12, 9, 7, 5, 10], 7, "large"),
                                               ([12, 10], 10, None),
                                               ([12, 40, 10], 1, None)])
def test_deeper_and_odd_sizes_match_reference(cost, sizes, batch, init):
    # 103 examples: the last mini-batch is short for every batch size but 1.
    training = synthetic(103, sizes[0], sizes[-1], seed=len(sizes) + batch)
    evaluation = synthetic(29, sizes[0], sizes[-1], seed=99, labels=True)
    ours, theirs = run_both(sizes, cost, training, (3, batch, 0.3),
                            dict(lmbda=0.7, evaluation_data=evaluation, **MONITORS), init=init)
    assert_same_run(ours, theirs)


def test_monitors_off_return_empty_lists(small_training):
    np.random.seed(0)
    net = network2.Network([784, 10, 10])
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        lists = net.SGD(list(small_training[:200]), 2, 10, 0.5)
    assert lists == ([], [], [], [])
    assert buf.getvalue() == "Epoch 0 training complete\n\nEpoch 1 training complete\n\n"


@pytest.mark.parametrize("extra", [
    dict(regularization="L1", lmbda=2.0),
    dict(momentum=0.8, lmbda=1.0),
    dict(momentum=0.5, regularization="L1", lmbda=1.0),
])
@pytest.mark.parametrize("cost", [network2.CrossEntropyCost, network2.LogLikelihoodCost])
def test_extras_match_reference(mnist_wrapped, cost, extra):
    training = mnist_wrapped[0][:800]
    evaluation = mnist_wrapped[1][:200]
    ours, theirs = run_both([784, 20, 10], cost, training, (2, 10, 0.1),
                            dict(evaluation_data=evaluation, **MONITORS, **extra))
    assert_same_run(ours, theirs)


def test_momentum_state_kept_like_reference():
    training = synthetic(40, 6, 3, seed=5)
    ours, theirs = run_both([6, 5, 3], network2.CrossEntropyCost, training, (2, 8, 0.5),
                            dict(momentum=0.9, lmbda=0.1))
    assert_same_run(ours, theirs)
    # A further update continues with the velocities the run left, in both.
    batch = training[:8]
    ours[0].update_mini_batch(batch, 0.5, 0.1, 40, momentum=0.9)
    theirs[0].update_mini_batch(batch, 0.5, 0.1, 40, momentum=0.9)
    for wa, wb in zip(ours[0].weights + ours[0].biases, theirs[0].weights + theirs[0].biases):
        np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-12)


def _plateau_data():
    # Inputs that carry no information: evaluation accuracy soon stops improving.
    training = synthetic(60, 5, 3, seed=11)
    evaluation = synthetic(20, 5, 3, seed=12, labels=True)
    return training, evaluation


def test_early_stopping_matches_reference():
    training, evaluation = _plateau_data()
    ours, theirs = run_both([5, 4, 3], network2.CrossEntropyCost, training, (60, 5, 2.0),
                            dict(evaluation_data=evaluation, monitor_evaluation_accuracy=True,
                                 early_stopping_n=3))
    assert_same_run(ours, theirs)
    assert ours[3][-1] == "Early stopping: no improvement in evaluation accuracy for 3 epochs"
    assert len(ours[1][1]) < 60


def test_eta_schedule_matches_reference():
    training, evaluation = _plateau_data()
    ours, theirs = run_both([5, 4, 3], network2.LogLikelihoodCost, training, (200, 5, 2.0),
                            dict(evaluation_data=evaluation, monitor_evaluation_accuracy=True,
                                 monitor_training_cost=True, eta_decay_n=2,
                                 eta_stop_ratio=1.0 / 8))
    assert_same_run(ours, theirs)
    halved = [l for l in ours[3] if l.startswith("Learning rate halved to ")]
    assert halved == ["Learning rate halved to 1.0", "Learning rate halved to 0.5",
                      "Learning rate halved to 0.25"]
    assert ours[3][-1] == ("Learning rate fell to 0.125 (1/8 of its initial value): "
                           "stopping")
    assert len(ours[1][1]) < 200


# -- gradient checks: central differences of the total cost ----------------------

def objective(sizes, cost, weights, biases, batch, lmbda, regularization):
    """Mean cost over the batch plus the regulariser with n = len(batch), float64."""
    net = ref.Network(sizes, cost=cost)
    net.weights, net.biases = weights, biases
    n = len(batch)
    c = sum(ref.cost_class(cost).fn(net.feedforward(x), y) for x, y in batch) / n
    if regularization == "L2":
        return c + 0.5 * (lmbda / n) * sum(np.sum(w * w) for w in weights)
    return c + (lmbda / n) * sum(np.sum(np.abs(w)) for w in weights)


def numerical_gradient(sizes, cost, weights, biases, batch, lmbda, regularization, h=1e-5):
    params = [w.copy() for w in weights] + [b.copy() for b in biases]
    L = len(weights)
    return central_differences(
        lambda: objective(sizes, cost, params[:L], params[L:], batch, lmbda, regularization),
        params, h)


GRAD_CASES = [(cost, reg) for cost in COSTS for reg in ("L2", "L1")]


@pytest.mark.parametrize("cost,regularization", GRAD_CASES)
def test_compiled_step_is_the_gradient(cost, regularization):
    sizes = [6, 5, 4, 3]
    np.random.seed(7)
    net = network2.Network(sizes, cost=cost)
    batch = synthetic(5, 6, 3, seed=8)
    lmbda = 0.3
    w0 = [w.copy() for w in net.weights]
    b0 = [b.copy() for b in net.biases]
    eta = 1.0
    net.update_mini_batch(batch, eta, lmbda, len(batch), regularization=regularization)
    step = [(a - b) / eta for a, b in zip(w0 + b0, net.weights + net.biases)]
    want = numerical_gradient(sizes, cost, w0, b0, batch, lmbda, regularization)
    for got, exp in zip(step, want):
        np.testing.assert_allclose(got, exp, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("cost", COSTS)
def test_backprop_is_the_gradient(cost):
    sizes = [6, 5, 3]
    np.random.seed(9)
    net = network2.Network(sizes, cost=cost)
    (x, y), = synthetic(1, 6, 3, seed=10)
    nabla_b, nabla_w = net.backprop(x, y)
    want = numerical_gradient(sizes, cost, net.weights, net.biases, [(x, y)], 0.0, "L2")
    for got, exp in zip(nabla_w + nabla_b, want):
        np.testing.assert_allclose(got, exp, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("regularization", ["L2", "L1"])
@pytest.mark.parametrize("cost", [network2.CrossEntropyCost, network2.LogLikelihoodCost])
def test_momentum_step_uses_the_gradient(cost, regularization):
    # v1 = -η∇C(w0), w1 = w0 + v1; v2 = μ·v1 − η∇C(w1), w2 = w1 + v2.
    sizes = [6, 5, 3]
    mu, eta, lmbda = 0.7, 0.5, 0.2
    np.random.seed(12)
    net = network2.Network(sizes, cost=cost)
    batch = synthetic(4, 6, 3, seed=13)
    p0 = [p.copy() for p in net.weights + net.biases]
    net.update_mini_batch(batch, eta, lmbda, 4, regularization=regularization, momentum=mu)
    p1 = [p.copy() for p in net.weights + net.biases]
    net.update_mini_batch(batch, eta, lmbda, 4, regularization=regularization, momentum=mu)
    p2 = [p.copy() for p in net.weights + net.biases]
    L = len(sizes) - 1
    g0 = numerical_gradient(sizes, cost, p0[:L], p0[L:], batch, lmbda, regularization)
    g1 = numerical_gradient(sizes, cost, p1[:L], p1[L:], batch, lmbda, regularization)
    for a, b, c, d0, d1 in zip(p0, p1, p2, g0, g1):
        v1 = b - a
        np.testing.assert_allclose(-v1 / eta, d0, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose((mu * v1 - (c - b)) / eta, d1, rtol=1e-6, atol=1e-9)


# -- API ---------------------------------------------------------------------------

def test_initial_values_match_the_book():
    for init in ("default_weight_initializer", "large_weight_initializer"):
        np.random.seed(21)
        a = network2.Network([7, 5, 2])
        getattr(a, init)()
        np.random.seed(21)
        b = ref.Network([7, 5, 2])
        getattr(b, init)()
        for u, v in zip(a.weights + a.biases, b.weights + b.biases):
            assert np.array_equal(u, v)
    assert a.num_layers == 3 and a.sizes == [7, 5, 2] and a.cost is network2.CrossEntropyCost


def test_module_api():
    for name in ("Network", "QuadraticCost", "CrossEntropyCost", "LogLikelihoodCost", "load",
                 "vectorized_result", "sigmoid", "sigmoid_prime"):
        assert hasattr(network2, name)
    e = network2.vectorized_result(4)
    assert e.shape == (10, 1) and e[4, 0] == 1.0 and e.sum() == 1.0
    z = np.linspace(-5, 5, 11)
    np.testing.assert_allclose(network2.sigmoid_prime(z),
                               network2.sigmoid(z) * (1 - network2.sigmoid(z)))
    a, y = np.array([[0.2], [0.9]]), np.array([[0.0], [1.0]])
    assert network2.QuadraticCost.fn(a, y) == pytest.approx(0.5 * (0.04 + 0.01))
    assert network2.CrossEntropyCost.fn(a, y) == pytest.approx(-np.log(0.8) - np.log(0.9))
    np.testing.assert_allclose(network2.CrossEntropyCost.delta(None, a, y), a - y)


def test_cost_instance_works(small_training, small_test):
    np.random.seed(1)
    random.seed(1)
    net = network2.Network([784, 10, 10], cost=network2.CrossEntropyCost())
    with contextlib.redirect_stdout(io.StringIO()):
        lists = net.SGD(list(small_training[:300]), 1, 10, 0.5, lmbda=1.0,
                        evaluation_data=small_test[:100], monitor_evaluation_cost=True)
    assert len(lists[0]) == 1 and np.isfinite(lists[0][0])


@pytest.mark.parametrize("cost", COSTS)
def test_accuracy_and_total_cost_match_reference(mnist_wrapped, cost):
    np.random.seed(4)
    net = network2.Network([784, 15, 10], cost=cost)
    other = ref.Network([784, 15, 10], cost=cost)
    other.weights, other.biases = net.weights, net.biases
    training, validation = mnist_wrapped[0][:300], mnist_wrapped[1][:300]
    assert net.accuracy(training, convert=True) == other.accuracy(training, convert=True)
    assert net.accuracy(validation) == other.accuracy(validation)
    for data, convert in ((training, False), (validation, True)):
        got = net.total_cost(data, 2.5, convert=convert)
        assert got == pytest.approx(other.total_cost(data, 2.5, convert=convert), rel=1e-12)
    assert net.accuracy([]) == 0


def test_feedforward_and_backprop_match_reference():
    np.random.seed(6)
    net = network2.Network([8, 6, 4], cost=network2.LogLikelihoodCost)
    other = ref.Network([8, 6, 4], cost=network2.LogLikelihoodCost)
    other.weights, other.biases = net.weights, net.biases
    (x, y), = synthetic(1, 8, 4, seed=1)
    out = net.feedforward(x)
    assert out.shape == (4, 1)
    np.testing.assert_allclose(out, other.feedforward(x), rtol=1e-13)
    assert out.sum() == pytest.approx(1.0)
    for a, b in zip(sum(net.backprop(x, y), []), sum(other.backprop(x, y), [])):
        np.testing.assert_allclose(a, b, rtol=1e-13)


def test_float32_trains_close_to_float64(small_training, small_test):
    lists = {}
    for dtype in (np.float64, np.float32):
        np.random.seed(2)
        random.seed(2)
        net = network2.Network([784, 20, 10], dtype=dtype)
        assert all(w.dtype == dtype for w in net.weights + net.biases)
        with contextlib.redirect_stdout(io.StringIO()):
            lists[dtype] = net.SGD(list(small_training), 2, 10, 0.5, lmbda=1.0,
                                   evaluation_data=small_test, **MONITORS)
        assert all(w.dtype == dtype for w in net.weights + net.biases)
    for a, b in zip(lists[np.float32], lists[np.float64]):
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=2e-2)


def test_thread_count_does_not_change_results():
    training = synthetic(150, 40, 5, seed=3)
    weights = []
    for nt in (1, 2):
        np.random.seed(5)
        random.seed(5)
        net = network2.Network([40, 300, 5], num_threads=nt)
        with contextlib.redirect_stdout(io.StringIO()):
            net.SGD(list(training), 1, 10, 0.5, lmbda=0.5, momentum=0.5)
        weights.append(net.weights + net.biases)
    for a, b in zip(*weights):
        assert np.array_equal(a, b)


def test_monitors_are_batched_and_data_packed_once(mnist_wrapped, monkeypatch):
    np.random.seed(0)
    net = network2.Network([784, 10, 10])
    calls = {"pack_training": 0, "pack_labelled": 0}
    for name in calls:
        real = getattr(_dense_common, name)

        def counting(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(_dense_common, name, counting)

    def per_example(*args, **kwargs):
        raise AssertionError("monitoring must not feed examples forward one by one")
    monkeypatch.setattr(net, "feedforward", per_example)
    with contextlib.redirect_stdout(io.StringIO()):
        lists = net.SGD(list(mnist_wrapped[0][:200]), 3, 10, 0.5, lmbda=1.0,
                        evaluation_data=mnist_wrapped[1][:50], **MONITORS)
    assert [len(l) for l in lists] == [3, 3, 3, 3]
    assert calls == {"pack_training": 1, "pack_labelled": 1}


def test_unknown_cost_runs_the_reference_code():
    class HalfQuadratic(network2.QuadraticCost):
        @staticmethod
        def fn(a, y):
            return 0.25 * np.linalg.norm(a - y) ** 2

    training = synthetic(30, 5, 10, seed=2)
    evaluation = synthetic(10, 5, 10, seed=3, labels=True)
    ours, theirs = run_both([5, 4, 10], HalfQuadratic, training, (2, 4, 0.5),
                            dict(lmbda=0.2, evaluation_data=evaluation, **MONITORS))
    assert_same_run(ours, theirs, tol=1e-12)


# -- validation ----------------------------------------------------------------------

def test_bad_arguments_raise_clear_errors(small_training, small_test):
    with pytest.raises(TypeError, match="cost must be a cost class"):
        network2.Network([4, 2], cost="CrossEntropyCost")
    with pytest.raises(TypeError, match="dtype"):
        network2.Network([4, 2], dtype=np.int32)
    with pytest.raises(ValueError, match="sizes"):
        network2.Network([4])
    net = network2.Network([784, 5, 10])
    data = list(small_training[:20])
    with pytest.raises(ValueError, match="needs evaluation_data"):
        net.SGD(data, 1, 10, 0.5, monitor_evaluation_accuracy=True)
    with pytest.raises(ValueError, match="monitor_evaluation_accuracy"):
        net.SGD(data, 1, 10, 0.5, early_stopping_n=2)
    with pytest.raises(ValueError, match="monitor_evaluation_accuracy"):
        net.SGD(data, 1, 10, 0.5, eta_decay_n=2, evaluation_data=small_test)
    with pytest.raises(ValueError, match="'L2' or 'L1', got 'L3'"):
        net.SGD(data, 1, 10, 0.5, regularization="L3")
    with pytest.raises(ValueError, match="momentum"):
        net.SGD(data, 1, 10, 0.5, momentum=-0.1)
    with pytest.raises(ValueError, match="eta_stop_ratio"):
        net.SGD(data, 1, 10, 0.5, eta_stop_ratio=0.0)
    with pytest.raises(ValueError, match="lmbda"):
        net.SGD(data, 1, 10, 0.5, lmbda=-1.0)
    with pytest.raises(ValueError, match="mini_batch_size"):
        net.SGD(data, 1, 0, 0.5)
    with pytest.raises(TypeError, match="list"):
        net.SGD(zip(*zip(*data)), 1, 10, 0.5)
    with pytest.raises(ValueError, match=r"expected an array of shape \(10, 1\)"):
        net.SGD([(x, 3) for x, _ in data], 1, 10, 0.5)
    with pytest.raises(ValueError, match=r"expected \(784, 1\)"):
        net.SGD([(x.reshape(28, 28), y) for x, y in data], 1, 10, 0.5)
    with pytest.raises(ValueError, match="empty"):
        net.SGD(data, 1, 10, 0.5, evaluation_data=[], monitor_evaluation_cost=True)
    with pytest.raises(ValueError, match="label 0 is 12"):
        net.total_cost([(small_test[0][0], 12)], 0.0, convert=True)
    bad = [(small_test[0][0] * np.nan, 1)]
    with pytest.raises(ValueError, match="NaN"):
        net.accuracy(bad)
    with pytest.raises(ValueError, match=r"expected \(784, 1\)"):
        net.backprop(np.zeros((10, 1)), np.zeros((10, 1)))
    assert data == list(small_training[:20])  # nothing was shuffled by a refused call


@pytest.mark.parametrize("cost", COSTS)
def test_vectorised_cost_equals_the_book_fn_even_at_saturation(cost):
    kind = network2._KERNEL_COSTS[cost]
    rng = np.random.default_rng(0)
    A = rng.random((40, 4))
    A[:6] = [[1.0, 0.0, 0.5, 0.2], [0.0, 1.0, 0.3, 0.1], [0.2, 0.7, 1.0, 0.0],
             [1.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5], [1e-300, 1 - 1e-16, 0.4, 0.6]]
    Y = np.zeros_like(A)
    Y[np.arange(40), rng.integers(0, 4, 40)] = 1.0
    Y_soft = rng.random((40, 4))  # targets that are not 0/1 take the general path
    with np.errstate(all="ignore"):
        for targets in (Y, Y_soft):
            hot = network2._hot_entries(targets)
            want = sum(cost.fn(a.reshape(-1, 1), y.reshape(-1, 1)) for a, y in zip(A, targets))
            got = network2._cost_sum(kind, A, targets, hot)
            assert got == pytest.approx(want, rel=1e-12)
    assert network2._hot_entries(Y) is not None and network2._hot_entries(Y_soft) is None


def test_bench_is_reachable_from_the_command_line():
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    ok = subprocess.run([sys.executable, "-m", "nndl_fast", "bench", "network2", "--help"],
                        cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "--json" in ok.stdout and "--ref-fraction" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "nndl_fast", "bench", "network2",
                          "--ref-fraction", "0"], cwd=root, env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "--ref-fraction must be in (0, 1]" in bad.stderr
