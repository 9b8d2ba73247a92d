"""Backpropagation agrees with central differences, for every network and cost."""
import numpy as np
import pytest

from nndl_fast import gradient_check, network
from nndl_fast.reference import network as ref_network
from nndl_fast.reference import network2

TOL = 1e-6


def _example(n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_in, 1)), int(rng.integers(n_out))


@pytest.mark.parametrize("cls", [network.Network, ref_network.Network],
                         ids=["compiled", "reference"])
def test_network_py_quadratic_cost(cls):
    np.random.seed(3)
    net = cls([4, 6, 5, 3])
    x, y = _example(4, 3, 0)
    report = gradient_check.compare(net, x, y)
    assert len(report.weights) == len(report.biases) == 3
    assert report.max_error <= TOL, str(report)


@pytest.mark.parametrize("cost", [network2.QuadraticCost, network2.CrossEntropyCost,
                                  network2.LogLikelihoodCost, network2.CrossEntropyCost()],
                         ids=["quadratic", "cross-entropy", "log-likelihood", "instance"])
def test_network2_each_cost(cost):
    np.random.seed(4)
    net = network2.Network([5, 7, 4], cost=cost)
    x, label = _example(5, 4, 1)
    target = np.zeros((4, 1))
    target[label] = 1.0
    report = gradient_check.compare(net, x, target)
    assert report.max_error <= TOL, str(report)
    assert max(report.weights_abs + report.biases_abs) < 1e-8


def test_cost_function_choice():
    np.random.seed(0)
    assert gradient_check.cost_function(ref_network.Network([2, 2])) is \
        network2.QuadraticCost.fn
    net = network2.Network([2, 2], cost=network2.CrossEntropyCost())
    assert gradient_check.cost_function(net) is network2.CrossEntropyCost.fn


def test_parameters_restored_exactly():
    np.random.seed(5)
    net = network2.Network([3, 4, 2])
    before = [w.copy() for w in net.weights] + [b.copy() for b in net.biases]
    x, y = _example(3, 2, 2)
    gradient_check.numerical_gradient(net, x, y)
    after = net.weights + net.biases
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


class _WrongOutputDelta(ref_network.Network):
    """Backprop that forgets σ'(z) in the output layer: a classic mistake."""

    def backprop(self, x, y):
        nabla_b, nabla_w = super().backprop(x, y)
        z = np.dot(self.weights[-1], self._hidden(x)) + self.biases[-1]
        sp = network.sigmoid_prime(z)
        nabla_b[-1] = nabla_b[-1] / sp
        nabla_w[-1] = nabla_w[-1] / sp
        return nabla_b, nabla_w

    def _hidden(self, x):
        a = x
        for b, w in zip(self.biases[:-1], self.weights[:-1]):
            a = network.sigmoid(np.dot(w, a) + b)
        return a


def test_detects_a_wrong_backprop():
    np.random.seed(6)
    net = _WrongOutputDelta([3, 4, 2])
    x, y = _example(3, 2, 3)
    report = gradient_check.compare(net, x, y)
    assert report.weights[-1] > 1e-2 and report.biases[-1] > 1e-2
    assert report.weights[0] <= TOL            # the hidden layer is still right
    assert "layer" in str(report)


def test_benchmark_rows():
    rows = gradient_check.benchmark(hidden_sizes=(2, 4), n_in=20, n_out=3)
    assert [r["n_params"] for r in rows] == [20 * 2 + 2 + 2 * 3 + 3, 20 * 4 + 4 + 4 * 3 + 3]
    for r in rows:
        assert r["backprop_s"] > 0 and r["numerical_s"] > 0
        assert r["ratio"] == pytest.approx(r["numerical_s"] / r["backprop_s"])
        assert r["max_error"] <= TOL
    assert "ratio" in gradient_check.format_benchmark(rows)


def test_bad_input_is_named():
    np.random.seed(0)
    net = network2.Network([3, 2])
    with pytest.raises(ValueError, match=r"x must be a float array of shape \(3, 1\), "
                                         r"got an array of shape \(3,\)"):
        gradient_check.compare(net, np.zeros(3), 0)
    with pytest.raises(ValueError, match=r"label y must be in 0..1, got 5"):
        gradient_check.compare(net, np.zeros((3, 1)), 5)
    with pytest.raises(ValueError, match=r"int label or an array of shape \(2, 1\)"):
        gradient_check.compare(net, np.zeros((3, 1)), np.zeros(2))
    with pytest.raises(TypeError, match="has no weights, biases, feedforward, backprop"):
        gradient_check.compare(object(), np.zeros((3, 1)), 0)
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        gradient_check.numerical_gradient(net, np.zeros((3, 1)), 0, epsilon=0.0)
    net.cost = "cross-entropy"
    with pytest.raises(TypeError, match="net.cost must provide fn"):
        gradient_check.compare(net, np.zeros((3, 1)), 0)


def test_module_doctest():
    import doctest
    result = doctest.testmod(gradient_check)
    assert result.attempted > 0 and result.failed == 0
