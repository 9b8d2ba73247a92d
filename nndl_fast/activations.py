"""Activation functions and their derivatives (*Deep Learning from Scratch*, ch. 3).

Every function takes a real array-like (or a number), works elementwise (softmax
along one axis) and stays finite without overflow warnings for |z| up to 1e4
and beyond. ``sigmoid`` and ``sigmoid_prime`` are the very functions of
``nndl_fast.network``.

The three-layer network of *Deep Learning from Scratch* (fixed weights, sigmoid
hidden layers, identity output), computed with these functions:

    >>> net = init_network()
    >>> y = forward(net, np.array([1.0, 0.5]))
    >>> print(np.round(y, 8))
    [0.31682708 0.69627909]

Softmax turns scores into probabilities, unchanged by adding a constant, so
huge scores do not overflow:

    >>> print(np.round(softmax(np.array([0.3, 2.9, 4.0])), 6))
    [0.018211 0.245192 0.736597]
    >>> print(softmax(np.array([1010.0, 1000.0, 990.0])).round(5).tolist())
    [0.99995, 5e-05, 0.0]
"""
import numpy as np

from .reference.network import sigmoid, sigmoid_prime
from .reference.network2 import softmax as _softmax_columns

__all__ = ["step", "step_prime", "sigmoid", "sigmoid_prime", "tanh", "tanh_prime",
           "relu", "relu_prime", "identity", "identity_prime", "softmax",
           "softmax_jacobian", "ACTIVATIONS", "init_network", "forward"]


def _real(z):
    """z as a float array (ints and bools become float64; float dtypes are kept)."""
    arr = np.asarray(z)
    if arr.dtype.kind not in "fiub":
        raise TypeError("expected real numbers, got an array of dtype %s" % arr.dtype)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return arr


def step(z):
    """Heaviside step: 1 where z > 0, else 0 (the perceptron's rule)."""
    z = _real(z)
    return (z > 0).astype(z.dtype)


def step_prime(z):
    """Zero everywhere (undefined at 0, taken as 0): why step units cannot learn by gradient."""
    z = _real(z)
    return np.zeros_like(z)


def tanh(z):
    """Hyperbolic tangent, (e^z − e^−z)/(e^z + e^−z)."""
    return np.tanh(_real(z))


def tanh_prime(z):
    """1 − tanh(z)²."""
    t = np.tanh(_real(z))
    return 1.0 - t * t


def relu(z):
    """Rectified linear unit, max(0, z)."""
    z = _real(z)
    return np.maximum(z, 0).astype(z.dtype, copy=False)


def relu_prime(z):
    """1 where z > 0, else 0 (the subgradient 0 is taken at z = 0)."""
    z = _real(z)
    return (z > 0).astype(z.dtype)


def identity(z):
    """z itself (the output activation for regression)."""
    return _real(z).copy()


def identity_prime(z):
    """Ones shaped like z."""
    return np.ones_like(_real(z))


def softmax(z, axis=0):
    """exp(z) / Σ exp(z) along ``axis`` (0: the book's columns and plain vectors).

    Computed after subtracting the maximum, which leaves the result unchanged
    and keeps every exponent <= 0.
    """
    z = _real(z)
    if z.ndim == 0:
        raise ValueError("softmax needs at least one axis, got a scalar")
    axis = _check_axis(axis, z.ndim)
    return np.moveaxis(_softmax_columns(np.moveaxis(z, axis, 0)), 0, axis)


def softmax_jacobian(z, axis=0):
    """The derivative of softmax: ∂s_i/∂z_j = s_i (δ_ij − s_j).

    For a vector (k,) or a column (k, 1) the result is (k, k); for other
    shapes, the softmax axis moves last and each vector gets its (k, k)
    matrix, giving shape (..., k, k).
    """
    z = _real(z)
    if z.ndim == 0:
        raise ValueError("softmax needs at least one axis, got a scalar")
    axis = _check_axis(axis, z.ndim)
    s = np.moveaxis(softmax(z, axis), axis, -1)
    jac = s[..., :, None] * (np.eye(s.shape[-1], dtype=s.dtype) - s[..., None, :])
    if z.ndim == 1 or (z.ndim == 2 and axis == 0 and z.shape[1] == 1):
        return jac.reshape(s.shape[-1], s.shape[-1])
    return jac


def _check_axis(axis, ndim):
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError("axis must be an integer, got %r" % (axis,))
    if not -ndim <= axis < ndim:
        raise ValueError("axis %d is out of range for an array with %d dimensions"
                         % (axis, ndim))
    return int(axis) % ndim


# name → (function, derivative); softmax's derivative is a Jacobian, not elementwise.
ACTIVATIONS = {
    "step": (step, step_prime),
    "sigmoid": (sigmoid, sigmoid_prime),
    "tanh": (tanh, tanh_prime),
    "relu": (relu, relu_prime),
    "identity": (identity, identity_prime),
    "softmax": (softmax, softmax_jacobian),
}


def init_network():
    """The fixed weights of the three-layer example (inputs as row vectors: x·W + b)."""
    return {
        "W1": np.array([[0.1, 0.3, 0.5], [0.2, 0.4, 0.6]]),
        "b1": np.array([0.1, 0.2, 0.3]),
        "W2": np.array([[0.1, 0.4], [0.2, 0.5], [0.3, 0.6]]),
        "b2": np.array([0.1, 0.2]),
        "W3": np.array([[0.1, 0.3], [0.2, 0.4]]),
        "b3": np.array([0.1, 0.2]),
    }


def forward(network, x):
    """Forward pass of the example: sigmoid, sigmoid, then identity.

    ``x`` is one input (2,) or a batch (n, 2) of row vectors.
    """
    keys = ("W1", "b1", "W2", "b2", "W3", "b3")
    missing = [k for k in keys if k not in network]
    if missing:
        raise KeyError("network is missing %s (expected keys %s)"
                       % (", ".join(missing), ", ".join(keys)))
    x = _real(x)
    n_in = np.shape(network["W1"])[0]
    if x.ndim not in (1, 2) or x.shape[-1] != n_in:
        raise ValueError("x has shape %s, expected (%d,) or (n, %d)" % (x.shape, n_in, n_in))
    a1 = x @ network["W1"] + network["b1"]
    z1 = sigmoid(a1)
    a2 = z1 @ network["W2"] + network["b2"]
    z2 = sigmoid(a2)
    a3 = z2 @ network["W3"] + network["b3"]
    return identity(a3)
