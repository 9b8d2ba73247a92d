"""The NumPy reference: gradients against finite differences, and a hand-traced epoch."""
import math
import random

import numpy as np
import pytest

from nndl_fast.gradient_check import central_differences
from nndl_fast.reference import network as ref1
from nndl_fast.reference import network2 as ref2


def _numerical_gradients(cost_of, params, eps=1e-6):
    return central_differences(cost_of, params, eps)


def _example(rng, n_in, n_out, one_hot=True):
    x = rng.random((n_in, 1))
    y = np.zeros((n_out, 1))
    y[rng.integers(n_out)] = 1.0
    return x, y


@pytest.mark.parametrize("sizes", [[4, 3, 2], [5, 4, 3, 3]])
def test_network_backprop_matches_finite_differences(sizes):
    np.random.seed(3)
    net = ref1.Network(sizes)
    x, y = _example(np.random.default_rng(0), sizes[0], sizes[-1])

    def cost():
        return 0.5 * np.sum((net.feedforward(x) - y) ** 2)

    nabla_b, nabla_w = net.backprop(x, y)
    num_w = _numerical_gradients(cost, net.weights)
    num_b = _numerical_gradients(cost, net.biases)
    for a, n in zip(nabla_w + nabla_b, num_w + num_b):
        np.testing.assert_allclose(a, n, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("cost", [ref2.QuadraticCost, ref2.CrossEntropyCost,
                                  ref2.LogLikelihoodCost])
def test_network2_backprop_matches_finite_differences(cost):
    np.random.seed(5)
    net = ref2.Network([6, 5, 4], cost=cost)
    x, y = _example(np.random.default_rng(1), 6, 4)

    def c():
        return cost.fn(net.feedforward(x), y)

    nabla_b, nabla_w = net.backprop(x, y)
    num = _numerical_gradients(c, net.weights + net.biases)
    for a, n in zip(nabla_w + nabla_b, num):
        np.testing.assert_allclose(a, n, rtol=1e-6, atol=1e-9)


def _sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def _hand_step(w1, b1, w2, b2, batch, eta):
    """One mini-batch step of a 2-2-1 sigmoid net, quadratic cost, written out by hand."""
    gw1 = [[0.0, 0.0], [0.0, 0.0]]
    gb1 = [0.0, 0.0]
    gw2 = [0.0, 0.0]
    gb2 = 0.0
    for (x0, x1), y in batch:
        a1 = [_sig(w1[j][0] * x0 + w1[j][1] * x1 + b1[j]) for j in range(2)]
        a2 = _sig(w2[0] * a1[0] + w2[1] * a1[1] + b2)
        d2 = (a2 - y) * a2 * (1 - a2)
        d1 = [w2[j] * d2 * a1[j] * (1 - a1[j]) for j in range(2)]
        gb2 += d2
        for j in range(2):
            gw2[j] += d2 * a1[j]
            gb1[j] += d1[j]
            gw1[j][0] += d1[j] * x0
            gw1[j][1] += d1[j] * x1
    s = eta / len(batch)
    w1 = [[w1[j][k] - s * gw1[j][k] for k in range(2)] for j in range(2)]
    b1 = [b1[j] - s * gb1[j] for j in range(2)]
    w2 = [w2[j] - s * gw2[j] for j in range(2)]
    return w1, b1, w2, b2 - s * gb2


@pytest.mark.parametrize("mini_batch_size", [1, 2, 3])
def test_one_epoch_matches_hand_traced_example(mini_batch_size, capsys):
    w1, b1 = [[0.1, -0.2], [0.4, 0.3]], [0.05, -0.1]
    w2, b2 = [0.7, -0.5], 0.2
    examples = [((0.0, 1.0), 1.0), ((1.0, 0.0), 1.0), ((1.0, 1.0), 0.0)]
    eta = 2.0

    net = ref1.Network([2, 2, 1])
    net.weights = [np.array(w1), np.array([w2])]
    net.biases = [np.array(b1).reshape(2, 1), np.array([[b2]])]
    data = [(np.array(x, dtype=float).reshape(2, 1), np.array([[y]])) for x, y in examples]
    random.seed(11)
    net.SGD(data, 1, mini_batch_size, eta)
    assert capsys.readouterr().out == "Epoch 0 complete\n"

    order = list(range(3))
    random.Random(11).shuffle(order)
    shuffled = [examples[i] for i in order]
    for k in range(0, 3, mini_batch_size):
        w1, b1, w2, b2 = _hand_step(w1, b1, w2, b2, shuffled[k:k + mini_batch_size], eta)
    np.testing.assert_allclose(net.weights[0], w1, rtol=1e-13)
    np.testing.assert_allclose(net.weights[1], [w2], rtol=1e-13)
    np.testing.assert_allclose(net.biases[0].ravel(), b1, rtol=1e-13)
    np.testing.assert_allclose(net.biases[1].ravel(), [b2], rtol=1e-13)


def test_initial_draw_order_biases_then_weights():
    np.random.seed(7)
    net = ref1.Network([3, 2, 1])
    np.random.seed(7)
    draws = np.random.randn(2 + 1 + 6 + 2)
    np.testing.assert_array_equal(net.biases[0].ravel(), draws[:2])
    np.testing.assert_array_equal(net.biases[1].ravel(), draws[2:3])
    np.testing.assert_array_equal(net.weights[0].ravel(), draws[3:9])
    np.testing.assert_array_equal(net.weights[1].ravel(), draws[9:11])


def test_sigmoid_no_overflow_warning():
    with np.errstate(all="raise"):
        s = ref1.sigmoid(np.array([-1e4, 0.0, 1e4]))
    np.testing.assert_array_equal(s, [0.0, 0.5, 1.0])
