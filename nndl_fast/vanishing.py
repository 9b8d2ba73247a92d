"""The vanishing gradient problem (chapter 5): how fast each layer learns.

The "speed of learning" of layer l is ‖∂C/∂b^l‖, the length of the gradient
of the cost with respect to that layer's biases, averaged over a set of
training examples. In a deep sigmoid network such as [784, 30, 30, 30, 30, 10]
it shrinks from the output toward the input at initialisation, and keeps
doing so during training: the early layers barely learn. ::

    from nndl_fast import mnist_loader, vanishing
    training_data, _, _ = mnist_loader.load_data_wrapper()
    net = vanishing.deep_network(seed=0)
    norms = vanishing.speed_of_learning(net, training_data[:1000])
    history = vanishing.track_speed_of_learning(net, training_data[:1000], 30, 10, 0.1)
    vanishing.plot_speed_of_learning(history, "speed.png")    # needs matplotlib

or ``python -m nndl_fast vanishing --epochs 30 --out speed.png``.

Gradients come from the network's own ``backprop(x, y)``, one example at a
time, so any network of the book works (anything with ``biases``,
``backprop`` and an ``SGD(training_data, epochs, mini_batch_size, eta, ...)``).
"""
import contextlib
import io
import numbers

import numpy as np

from ._validation import check_int, check_real, check_sizes, describe

__all__ = ["DEEP_SIZES", "deep_network", "average_bias_gradient", "speed_of_learning",
           "track_speed_of_learning", "plot_speed_of_learning"]

DEEP_SIZES = (784, 30, 30, 30, 30, 10)


def deep_network(sizes=DEEP_SIZES, seed=None):
    """A chapter-3 network (cross-entropy, weights N(0, 1/n_in)) of the given sizes.

    ``seed`` seeds ``np.random`` first, so the same seed gives the book's
    initial values. The compiled network2 is used where it is available.
    """
    sizes = check_sizes(sizes)
    try:
        from .network2 import Network
    except ImportError:
        from .reference.network2 import Network
    if seed is not None:
        np.random.seed(check_int(seed, "seed", 0))
    return Network([int(s) for s in sizes])


def _target(y, n_out, index):
    if isinstance(y, numbers.Integral) and not isinstance(y, (bool, np.bool_)):
        if not 0 <= y < n_out:
            raise ValueError("label %d is %d, expected 0..%d" % (index, y, n_out - 1))
        t = np.zeros((n_out, 1))
        t[int(y)] = 1.0
        return t
    if not isinstance(y, np.ndarray) or y.shape != (n_out, 1):
        raise ValueError("target %d must be an int label or an array of shape (%d, 1), got %s"
                         % (index, n_out, describe(y)))
    return y


def _batched_costs():
    from .reference import network2 as ref
    return ref, (ref.QuadraticCost, ref.CrossEntropyCost, ref.LogLikelihoodCost)


def _batched_bias_gradient(net, X, Y, chunk=1000):
    """Σ over the columns of X (n_in, N) of ∂C/∂b per layer, by matrix products.

    The same formulas as the book's ``backprop``, for all examples of a chunk
    at once (network2's costs: sigmoid hidden layers, sigmoid or softmax output).
    """
    ref, _ = _batched_costs()
    cost = ref.cost_class(net.cost)
    softmax_out = ref._softmax_output(net.cost)
    weights = [np.asarray(w, dtype=np.float64) for w in net.weights]
    biases = [np.asarray(b, dtype=np.float64) for b in net.biases]
    total = [np.zeros(b.shape) for b in biases]
    for start in range(0, X.shape[1], chunk):
        a = X[:, start:start + chunk]
        zs, activations = [], [a]
        for i, (b, w) in enumerate(zip(biases, weights)):
            z = w @ a + b
            zs.append(z)
            last = i == len(weights) - 1
            a = ref.softmax(z) if last and softmax_out else ref.sigmoid(z)
            activations.append(a)
        delta = cost.delta(zs[-1], activations[-1], Y[:, start:start + chunk])
        total[-1] += delta.sum(axis=1, keepdims=True)
        for l in range(2, len(biases) + 1):
            delta = (weights[-l + 1].T @ delta) * ref.sigmoid_prime(zs[-l])
            total[-l] += delta.sum(axis=1, keepdims=True)
    return total


def average_bias_gradient(net, data):
    """The mean over ``data`` of ∂C/∂b for each layer: a list shaped like ``net.biases``.

    ``data`` is a list of ``(x, y)`` with x an (n_in, 1) column and y an
    (n_out, 1) target or an int label. A chapter-3 network (network2's class
    with one of its three costs) is differentiated for all examples at once by
    matrix products; any other network through its own ``backprop(x, y)``, one
    example at a time. The two agree to rounding.
    """
    if not hasattr(net, "backprop") or not hasattr(net, "biases"):
        raise TypeError("expected a network with biases and backprop(x, y), got %s"
                        % type(net).__name__)
    if isinstance(data, np.ndarray) or not hasattr(data, "__len__") or len(data) == 0:
        raise ValueError("data must be a non-empty list of (x, y) pairs, got %s"
                         % describe(data))
    n_in = np.shape(net.weights[0])[1] if hasattr(net, "weights") else None
    n_out = np.shape(net.biases[-1])[0]
    xs, ys = [], []
    for i, item in enumerate(data):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError("data item %d must be a pair (x, y), got %s" % (i, describe(item)))
        x, y = item
        if not isinstance(x, np.ndarray) or (n_in is not None and x.shape != (n_in, 1)):
            raise ValueError("input %d must be an array of shape (%s, 1), got %s"
                             % (i, n_in, describe(x)))
        xs.append(x)
        ys.append(_target(y, n_out, i))
    ref, costs = _batched_costs()
    if isinstance(net, ref.Network) and ref.cost_class(net.cost) in costs:
        X = np.hstack(xs).astype(np.float64, copy=False)
        Y = np.hstack(ys).astype(np.float64, copy=False)
        # Small products: BLAS's own threads would only contend with each other
        # (and with any OpenMP team still spinning after training).
        from ._threads import blas_single_thread
        with blas_single_thread():
            total = _batched_bias_gradient(net, X, Y)
    else:
        total = [np.zeros(np.shape(b), dtype=np.float64) for b in net.biases]
        for x, y in zip(xs, ys):
            nabla_b, _ = net.backprop(x, y)
            for acc, nb in zip(total, nabla_b):
                acc += nb
    return [t / len(data) for t in total]


def speed_of_learning(net, data):
    """‖∂C/∂b^l‖ for every layer after the input, averaged over ``data``.

    Returns a float64 array of length ``len(net.biases)``: hidden layers first,
    the output layer last.
    """
    return np.array([np.linalg.norm(g) for g in average_bias_gradient(net, data)])


def track_speed_of_learning(net, training_data, epochs, mini_batch_size, eta, data=None,
                            verbose=False, **sgd_kwargs):
    """Train ``net`` and record the speed of learning at the start and after each epoch.

    Training is ``net.SGD(training_data, 1, mini_batch_size, eta, **sgd_kwargs)``
    once per epoch, which is the same as one call for all epochs (each epoch
    shuffles ``training_data`` in place, as the book's SGD does). Gradients
    are averaged over ``data``, by default the first 1,000 examples of
    ``training_data`` as they are before training. The network's per-epoch
    lines are printed only with ``verbose=True``.

    Returns an array of shape (epochs + 1, len(net.biases)); row 0 is the
    initial network.
    """
    epochs = check_int(epochs, "epochs", 0)
    check_int(mini_batch_size, "mini_batch_size", 1)
    check_real(eta, "eta")
    if isinstance(training_data, np.ndarray) or not isinstance(training_data, list):
        raise TypeError("training_data must be a list of (x, y) tuples, got %s "
                        "(in Python 3 wrap zip(...) in list(...))" % describe(training_data))
    if data is None:
        data = list(training_data[:1000])
    history = [speed_of_learning(net, data)]
    for _ in range(epochs):
        out = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
        with out:
            net.SGD(training_data, 1, mini_batch_size, eta, **sgd_kwargs)
        history.append(speed_of_learning(net, data))
    return np.vstack(history)


def plot_speed_of_learning(history, filename=None, include_output=False, title=None):
    """Plot the speed of learning per layer against epochs, log scale, as the book does.

    ``history`` is ``track_speed_of_learning``'s array (or a single row from
    ``speed_of_learning``). Hidden layers only unless ``include_output``.
    Writes ``filename`` (PNG by its extension) when given; returns the figure.
    Needs matplotlib (``pip install nndl_fast[plot]``).
    """
    from .plot import finish, new_figure
    h = np.asarray(history, dtype=np.float64)
    if h.ndim == 1:
        h = h[None, :]
    if h.ndim != 2 or h.shape[1] < 1 or h.shape[0] < 1:
        raise ValueError("history must have shape (epochs + 1, layers), got %s" % (h.shape,))
    n_layers = h.shape[1] if include_output else max(h.shape[1] - 1, 1)
    fig = new_figure(filename, "plot_speed_of_learning", (6, 4))
    ax = fig.subplots()
    epochs = np.arange(h.shape[0])
    for l in range(n_layers):
        label = "Output layer" if l == h.shape[1] - 1 and include_output \
            else "Hidden layer %d" % (l + 1)
        ax.plot(epochs, h[:, l], marker="o" if h.shape[0] < 30 else None, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("Number of epochs of training")
    ax.set_ylabel("Speed of learning ‖∂C/∂b‖")
    ax.set_title(title or "Speed of learning per layer")
    ax.legend(loc="best")
    ax.grid(True, which="both", alpha=0.3)
    return finish(fig, filename)
