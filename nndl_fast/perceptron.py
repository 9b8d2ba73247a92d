"""Perceptrons (chapter 1; *Deep Learning from Scratch*, chapter 2).

A perceptron outputs 1 when ``w·x + b > 0`` and 0 otherwise.

    >>> from nndl_fast.perceptron import AND, NAND, OR, xor
    >>> [int(AND([a, b])) for a, b in ((0, 0), (0, 1), (1, 0), (1, 1))]
    [0, 0, 0, 1]
    >>> [int(NAND([a, b])) for a, b in ((0, 0), (0, 1), (1, 0), (1, 1))]
    [1, 1, 1, 0]
    >>> [int(OR([a, b])) for a, b in ((0, 0), (0, 1), (1, 0), (1, 1))]
    [0, 1, 1, 1]
    >>> [int(xor([a, b])) for a, b in ((0, 0), (0, 1), (1, 0), (1, 1))]
    [0, 1, 1, 0]

No single perceptron computes XOR: its two classes cannot be split by a line.
Three ways to see it are here. ``train`` runs the perceptron learning rule,
which finds a separating line whenever one exists, and on XOR it never gets
all four points right; ``grid_search`` tries every (w1, w2, b) on a grid and
none classifies more than three of the four points; ``linearly_separable``
decides the question exactly as a linear-programming feasibility problem.
The algebra behind it: f(0,0)=0 needs b <= 0, f(1,0)=f(0,1)=1 need w1 + b > 0
and w2 + b > 0, whose sum gives w1 + w2 + b > -b >= 0, so f(1,1)=1, not 0.
"""
import numbers

import numpy as np

__all__ = ["Perceptron", "AND", "OR", "NAND", "xor", "XOR_INPUTS", "XOR_TARGETS",
           "train", "grid_search", "linearly_separable"]

# The four points of every two-input truth table, in the usual order.
XOR_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
XOR_TARGETS = np.array([0, 1, 1, 0], dtype=np.int64)


def _real_vector(value, name):
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise TypeError("%s must hold real numbers, got dtype %s" % (name, arr.dtype))
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError("%s must be a non-empty 1-D sequence, got shape %s"
                         % (name, arr.shape))
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("%s contains NaN or infinity" % name)
    return arr


def _inputs(x, n_inputs):
    """x as a float64 array whose last axis has ``n_inputs`` entries."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError("inputs must be real numbers, got dtype %s" % arr.dtype)
    if arr.ndim == 0 or arr.shape[-1] != n_inputs:
        raise ValueError("inputs have shape %s, expected (%d,) or (n, %d)"
                         % (arr.shape, n_inputs, n_inputs))
    return arr.astype(np.float64)


def _matrix(inputs):
    """A batch of inputs as a float64 (n, n_inputs) array."""
    arr = np.asarray(inputs)
    if arr.dtype.kind not in "fiub":
        raise TypeError("inputs must be real numbers, got dtype %s" % arr.dtype)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError("inputs must have shape (n, n_inputs) with n >= 1, got %s"
                         % (arr.shape,))
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("inputs contain NaN or infinity")
    return arr


def _labels(y, n, name="targets"):
    arr = np.asarray(y)
    if arr.dtype.kind not in "iub" or arr.shape != (n,):
        raise ValueError("%s must be %d integer labels 0 or 1, got %s of dtype %s"
                         % (name, n, arr.shape, arr.dtype))
    if not np.isin(arr, (0, 1)).all():
        raise ValueError("%s must be 0 or 1, got values %s" % (name, np.unique(arr)))
    return arr.astype(np.int64)


class Perceptron(object):
    """A threshold unit: ``1 if w·x + b > 0 else 0``.

    ``weights`` is a 1-D sequence (one weight per input), ``bias`` a number.
    Calling the perceptron on one input ``(n_inputs,)`` gives a 0-d int array;
    on a batch ``(n, n_inputs)`` it gives ``(n,)`` ints.
    """

    def __init__(self, weights, bias):
        self.weights = _real_vector(weights, "weights")
        if isinstance(bias, (bool, np.bool_)) or not isinstance(bias, numbers.Real):
            raise TypeError("bias must be a real number, got %r" % (bias,))
        if not np.isfinite(bias):
            raise ValueError("bias must be finite, got %r" % (bias,))
        self.bias = float(bias)

    @property
    def n_inputs(self):
        return self.weights.shape[0]

    def __call__(self, x):
        x = _inputs(x, self.n_inputs)
        return (x @ self.weights + self.bias > 0).astype(np.int64)

    def __repr__(self):
        return "Perceptron(weights=%s, bias=%r)" % (self.weights.tolist(), self.bias)


# Hand-set gates (the weights of *Deep Learning from Scratch*; the book's NAND
# uses -2, -2, 3, which is the same gate).
AND = Perceptron([0.5, 0.5], -0.7)
NAND = Perceptron([-0.5, -0.5], 0.7)
OR = Perceptron([0.5, 0.5], -0.2)


def xor(x):
    """XOR by a two-layer network of perceptrons: AND(NAND(x), OR(x)).

    ``x`` is one pair ``(x1, x2)`` or a batch of shape (n, 2).
    """
    x = _inputs(x, 2)
    hidden = np.stack([NAND(x), OR(x)], axis=-1)
    return AND(hidden)


def train(inputs, targets, epochs=100, eta=1.0, weights=None, bias=0.0):
    """The perceptron learning rule, example by example in the given order.

    For each example, ``w += eta·(t − f(x))·x`` and ``b += eta·(t − f(x))``.
    Training stops early after an epoch without a mistake. Returns
    ``(perceptron, errors)`` where ``errors[e]`` is the number of examples
    misclassified during epoch ``e``. When the classes are linearly separable
    the rule is guaranteed to reach an epoch with no errors; on XOR it never does.
    """
    X = _matrix(inputs)
    t = _labels(targets, X.shape[0])
    if isinstance(epochs, (bool, np.bool_)) or not isinstance(epochs, numbers.Integral) \
            or epochs < 1:
        raise ValueError("epochs must be a positive integer, got %r" % (epochs,))
    if isinstance(eta, (bool, np.bool_)) or not isinstance(eta, numbers.Real) \
            or not eta > 0 or not np.isfinite(eta):
        raise ValueError("eta must be a positive real number, got %r" % (eta,))
    w = np.zeros(X.shape[1]) if weights is None else _real_vector(weights, "weights").copy()
    if w.shape[0] != X.shape[1]:
        raise ValueError("weights have %d entries, expected %d (one per input)"
                         % (w.shape[0], X.shape[1]))
    p = Perceptron(w, bias)
    errors = []
    for _ in range(int(epochs)):
        mistakes = 0
        for x, target in zip(X, t):
            update = float(eta * (int(target) - int(p(x))))
            if update:
                p.weights += update * x
                p.bias += update
                mistakes += 1
        errors.append(mistakes)
        if mistakes == 0:
            break
    return p, errors


def grid_search(inputs, targets, values=np.linspace(-2.0, 2.0, 41)):
    """Try every perceptron with weights and bias drawn from ``values``.

    Returns ``(best_correct, n_perfect)``: the largest number of points any
    grid perceptron classifies correctly, and how many grid perceptrons get
    every point right. All ``len(values) ** (n_inputs + 1)`` candidates are
    evaluated at once.
    """
    X = _matrix(inputs)
    t = _labels(targets, X.shape[0])
    v = _real_vector(values, "values")
    n_params = X.shape[1] + 1
    if v.shape[0] ** n_params > 10 ** 7:
        raise ValueError("grid of %d values over %d parameters has %d points, more than 1e7"
                         % (v.shape[0], n_params, v.shape[0] ** n_params))
    grids = np.meshgrid(*([v] * n_params), indexing="ij")
    params = np.stack([g.ravel() for g in grids], axis=1)   # (n_candidates, n_inputs + 1)
    out = (params[:, :-1] @ X.T + params[:, -1:] > 0).astype(np.int64)
    correct = (out == t).sum(axis=1)
    return int(correct.max()), int(np.sum(correct == X.shape[0]))


def linearly_separable(inputs, targets):
    """Whether some perceptron classifies every point, decided by linear programming.

    A perceptron with ``w·x + b > 0`` on the 1s and ``<= 0`` on the 0s exists
    exactly when one exists with ``w·x + b >= 1`` on the 1s (scale it), so
    feasibility of those linear inequalities settles the question. Returns
    ``(separable, perceptron_or_None)``.
    """
    from scipy.optimize import linprog

    X = _matrix(inputs)
    t = _labels(targets, X.shape[0])
    A = np.hstack([X, np.ones((X.shape[0], 1))])
    # Rows for the 1s are negated so both kinds read "A_ub · (w, b) <= b_ub".
    sign = np.where(t == 1, -1.0, 1.0)
    A_ub = A * sign[:, None]
    b_ub = np.where(t == 1, -1.0, 0.0)
    res = linprog(np.zeros(A.shape[1]), A_ub=A_ub, b_ub=b_ub,
                  bounds=[(None, None)] * A.shape[1], method="highs")
    if res.status == 2:
        return False, None
    if res.status != 0:
        raise RuntimeError("linear program did not finish: %s" % res.message)
    return True, Perceptron(res.x[:-1], float(res.x[-1]))
