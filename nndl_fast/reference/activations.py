"""The activation functions of the book's networks, as one table.

``network2`` (its hidden layers) and ``network3`` (every layer but the softmax)
take any of ``linear``, ``sigmoid``, ``tanh`` and ``ReLU``. Each is described
once, in :data:`ACTIVATION_TABLE`: its name (in saved files and exports), its
function, its derivative, the compiled kernels' code for it and the ONNX
operator. The compiled modules, the exporters and the file formats all read
this table.
"""
from typing import Callable, NamedTuple, Optional

import numpy as np

__all__ = ["linear", "ReLU", "sigmoid", "tanh", "Activation", "ACTIVATION_TABLE",
           "activation_of", "activation_named", "activation_prime", "resolve_activation"]


def linear(z):
    return z


def ReLU(z):
    return np.maximum(0.0, z).astype(np.asarray(z).dtype, copy=False)


def sigmoid(z):
    """The sigmoid function, 1 / (1 + e^-z); no overflow warning for large |z|."""
    with np.errstate(over="ignore", under="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def tanh(z):
    return np.tanh(z)


class Activation(NamedTuple):
    """One activation function, as every part of the package knows it: ``name``
    (in saved files and exports), ``fn`` (what a layer's ``activation_fn`` is),
    ``prime`` (its derivative, through the output ``a``), ``code`` (the compiled
    kernels' number for it: ``NF_LINEAR``... in src_c/nf_runtime.h, checked
    against it when the kernels load) and ``onnx`` (the ONNX operator; None for
    the identity)."""
    name: str
    fn: Callable
    prime: Callable
    code: int
    onnx: Optional[str]


#: The activation functions a hidden layer may take.
ACTIVATION_TABLE = (
    Activation("linear", linear, lambda a: np.ones_like(a), 0, None),
    Activation("sigmoid", sigmoid, lambda a: a * (1 - a), 1, "Sigmoid"),
    Activation("tanh", tanh, lambda a: 1 - a * a, 2, "Tanh"),
    Activation("ReLU", ReLU, lambda a: (a > 0).astype(a.dtype), 3, "Relu"),
)


def activation_of(activation_fn):
    """The :class:`Activation` whose function is ``activation_fn``, or None."""
    for entry in ACTIVATION_TABLE:
        if entry.fn is activation_fn:
            return entry
    return None


def activation_named(name):
    """The :class:`Activation` called ``name``, or None."""
    for entry in ACTIVATION_TABLE:
        if entry.name == name:
            return entry
    return None


def _names():
    return ", ".join(e.name for e in ACTIVATION_TABLE)


def resolve_activation(activation):
    """The :class:`Activation` for one of the table's functions or names;
    ValueError for anything else."""
    entry = activation_named(activation) if isinstance(activation, str) \
        else activation_of(activation)
    if entry is None:
        raise ValueError("activation must be one of the functions %s (or its name), got %r"
                         % (_names(), activation))
    return entry


def activation_prime(activation_fn, a):
    """Derivative of ``activation_fn`` expressed through its output ``a``."""
    entry = activation_of(activation_fn)
    if entry is None:
        raise ValueError("unsupported activation_fn %r: use network3's %s"
                         % (activation_fn, _names()))
    return entry.prime(a)
