"""Gradient checking, and why backpropagation is fast (chapter 2).

The obvious way to get ∂C/∂w is to nudge each weight: ∂C/∂w_j ≈
(C(w + εe_j) − C(w − εe_j)) / 2ε. That costs two forward passes per weight, so a
network with a million weights needs two million forward passes for one
gradient, while backpropagation gets all of them from one forward and one
backward pass. This module does the slow thing on purpose: to check
backpropagation against it, and to time the two.

Any network of the book works (duck-typed): it needs ``weights`` and
``biases`` (lists of arrays), ``feedforward(x)``, ``backprop(x, y)`` returning
``(nabla_b, nabla_w)``, and optionally ``cost`` with a ``fn(a, y)`` (network2's
cost classes or instances). Without ``cost`` the network is taken to train on
the quadratic cost 0.5‖a − y‖², as network.py does.

    >>> import numpy as np
    >>> from nndl_fast.reference import network2
    >>> np.random.seed(0)
    >>> net = network2.Network([3, 4, 2])
    >>> report = compare(net, np.random.randn(3, 1), 1)
    >>> report.max_error < 1e-7
    True
"""
import time

import numpy as np

from ._validation import check_real, describe
from .reference.network2 import QuadraticCost

__all__ = ["cost_function", "numerical_gradient", "compare", "GradientReport",
           "benchmark", "format_benchmark"]

_REQUIRED = ("weights", "biases", "feedforward", "backprop")


def _check_net(net):
    missing = [name for name in _REQUIRED if not hasattr(net, name)]
    if missing:
        raise TypeError("expected a network with %s; %s has no %s"
                        % (", ".join(_REQUIRED), type(net).__name__, ", ".join(missing)))
    if len(net.weights) != len(net.biases) or len(net.weights) == 0:
        raise ValueError("expected as many weight matrices as bias vectors (at least one), "
                         "got %d and %d" % (len(net.weights), len(net.biases)))


def cost_function(net):
    """The per-example cost ``fn(a, y)`` the network's backprop differentiates."""
    cost = getattr(net, "cost", None)
    if cost is None:
        return QuadraticCost.fn
    fn = getattr(cost, "fn", None)
    if not callable(fn):
        raise TypeError("net.cost must provide fn(a, y) (a cost class or instance), got %s"
                        % describe(cost))
    return fn


def _example(net, x, y):
    """x as an (n_in, 1) column; y as an (n_out, 1) target (an int label becomes one-hot)."""
    n_in = np.shape(net.weights[0])[1]
    n_out = np.shape(net.weights[-1])[0]
    if not isinstance(x, np.ndarray) or x.shape != (n_in, 1) or x.dtype.kind != "f":
        raise ValueError("x must be a float array of shape (%d, 1), got %s"
                         % (n_in, describe(x)))
    if isinstance(y, (int, np.integer)) and not isinstance(y, (bool, np.bool_)):
        if not 0 <= y < n_out:
            raise ValueError("label y must be in 0..%d, got %d" % (n_out - 1, y))
        target = np.zeros((n_out, 1))
        target[int(y)] = 1.0
        return x, target
    if not isinstance(y, np.ndarray) or y.shape != (n_out, 1):
        raise ValueError("y must be an int label or an array of shape (%d, 1), got %s"
                         % (n_out, describe(y)))
    return x, y


def numerical_gradient(net, x, y, epsilon=1e-5):
    """``(nabla_b, nabla_w)`` of the cost for one example, by central differences.

    Each parameter is moved by ±``epsilon`` in place and restored exactly, so
    the network is unchanged afterwards. Two forward passes per parameter.
    Use a float64 network: in float32 the differences only carry a few digits.
    """
    _check_net(net)
    x, y = _example(net, x, y)
    epsilon = check_real(epsilon, "epsilon", 0.0, allow_equal=False)
    fn = cost_function(net)
    # A first forward pass lets a compiled network put its parameters in its own
    # layout; the arrays perturbed below are then the ones it computes with.
    net.feedforward(x)

    def cost():
        return float(fn(net.feedforward(x), y))

    nabla_b = central_differences(cost, _Live(net, "biases"), epsilon)
    nabla_w = central_differences(cost, _Live(net, "weights"), epsilon)
    return nabla_b, nabla_w


def central_differences(cost, params, epsilon=1e-5):
    """(cost(p + ε) − cost(p − ε)) / 2ε for every entry of every array in ``params``.

    ``cost`` takes no arguments and reads the arrays, which are changed in place
    one entry at a time and restored exactly. ``params[l]`` is looked up again
    for every entry (a network may rebind its lists between calls). Returns one
    float64 array per parameter array.
    """
    grads = []
    for l in range(len(params)):
        grad = np.zeros(np.shape(params[l]), dtype=np.float64)
        for idx in np.ndindex(grad.shape):
            p = params[l]
            original = p[idx]
            p[idx] = original + epsilon
            c_plus = cost()
            p[idx] = original - epsilon
            c_minus = cost()
            p[idx] = original
            grad[idx] = (c_plus - c_minus) / (2.0 * epsilon)
        grads.append(grad)
    return grads


class _Live(object):
    """``net.<attr>[l]`` looked up at each use (a network may rebind its lists)."""

    def __init__(self, net, attr):
        self.net, self.attr = net, attr

    def __len__(self):
        return len(getattr(self.net, self.attr))

    def __getitem__(self, l):
        return getattr(self.net, self.attr)[l]


def _layer_error(numeric, analytic):
    """(relative, absolute) discrepancy of one layer's gradient.

    Relative to the layer's largest gradient entry rather than entry by entry:
    finite differences carry an absolute error near ε_machine·C/ε, so entries
    close to zero would show large "relative" errors that say nothing about
    backpropagation.
    """
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError("backprop returned a gradient of shape %s, expected %s"
                         % (analytic.shape, numeric.shape))
    diff = float(np.max(np.abs(numeric - analytic))) if numeric.size else 0.0
    scale = max(float(np.max(np.abs(numeric))), float(np.max(np.abs(analytic)))) \
        if numeric.size else 0.0
    return (diff / scale if scale > 0 else diff), diff


class GradientReport(object):
    """Per-layer discrepancies between backprop's and the numerical gradient.

    ``weights[l]`` / ``biases[l]``: max |numeric − backprop| over layer l
    divided by the largest |gradient entry| of that layer; ``weights_abs`` /
    ``biases_abs``: the max absolute difference. Layers count from the first
    layer after the input, as ``net.weights`` does.
    """

    def __init__(self, weights, biases, weights_abs, biases_abs):
        self.weights, self.biases = weights, biases
        self.weights_abs, self.biases_abs = weights_abs, biases_abs

    @property
    def max_error(self):
        """The largest relative error over all layers, weights and biases."""
        return max(self.weights + self.biases)

    def __str__(self):
        lines = ["layer  weights rel err  biases rel err"]
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            lines.append("%5d  %15.3e  %14.3e" % (l + 1, w, b))
        return "\n".join(lines)

    __repr__ = __str__


def compare(net, x, y, epsilon=1e-5):
    """Check ``net.backprop(x, y)`` against central differences; a GradientReport.

    ``x``: an (n_in, 1) float column; ``y``: an (n_out, 1) target or an int label.
    """
    _check_net(net)
    x, y = _example(net, x, y)
    num_b, num_w = numerical_gradient(net, x, y, epsilon)
    result = net.backprop(x, y)
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise TypeError("backprop must return (nabla_b, nabla_w), got %s" % describe(result))
    bp_b, bp_w = result
    if len(bp_b) != len(num_b) or len(bp_w) != len(num_w):
        raise ValueError("backprop returned %d bias and %d weight gradients, expected %d each"
                         % (len(bp_b), len(bp_w), len(num_w)))
    w_err = [_layer_error(n, a) for n, a in zip(num_w, bp_w)]
    b_err = [_layer_error(n, a) for n, a in zip(num_b, bp_b)]
    return GradientReport([e[0] for e in w_err], [e[0] for e in b_err],
                          [e[1] for e in w_err], [e[1] for e in b_err])


def _best_time(func, min_seconds=0.05, repeats=3):
    """Best of ``repeats`` timings, each looping ``func`` for at least ``min_seconds``."""
    best = float("inf")
    for _ in range(repeats):
        calls, t0 = 0, time.perf_counter()
        while True:
            func()
            calls += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / calls)
    return best


def benchmark(hidden_sizes=(5, 10, 20, 40), n_in=784, n_out=10, network_class=None,
              seed=0):
    """Time backprop against the finite-difference gradient as networks grow.

    For each hidden size h a network ``[n_in, h, n_out]`` (by default the
    reference network.py class) gets one gradient both ways on a random input.
    Returns a list of dicts: ``sizes``, ``n_params``, ``backprop_s``,
    ``numerical_s``, ``ratio`` (numerical / backprop) and ``max_error``.
    The ratio grows about linearly with the number of parameters.
    """
    if network_class is None:
        from .reference.network import Network as network_class
    rows = []
    for h in hidden_sizes:
        sizes = [int(n_in), int(h), int(n_out)]
        np.random.seed(seed)
        net = network_class(sizes)
        rng = np.random.default_rng(seed)
        x = rng.random((n_in, 1))
        y = int(rng.integers(n_out))
        _, target = _example(net, x, y)
        n_params = sum(w.size for w in net.weights) + sum(b.size for b in net.biases)
        backprop_s = _best_time(lambda: net.backprop(x, target))
        t0 = time.perf_counter()
        num_b, num_w = numerical_gradient(net, x, target)
        numerical_s = time.perf_counter() - t0
        bp_b, bp_w = net.backprop(x, target)
        error = max(_layer_error(n, a)[0] for n, a in zip(num_w + num_b, bp_w + bp_b))
        rows.append({"sizes": sizes, "n_params": n_params, "backprop_s": backprop_s,
                     "numerical_s": numerical_s, "ratio": numerical_s / backprop_s,
                     "max_error": error})
    return rows


def format_benchmark(rows):
    """The benchmark rows as a text table."""
    lines = ["%-16s %9s %13s %13s %10s %10s" % ("sizes", "params", "backprop [s]",
                                                "numeric [s]", "ratio", "rel err")]
    for r in rows:
        lines.append("%-16s %9d %13.3e %13.3e %10.0f %10.1e"
                     % (str(r["sizes"]).replace(" ", ""), r["n_params"], r["backprop_s"],
                        r["numerical_s"], r["ratio"], r["max_error"]))
    return "\n".join(lines)
