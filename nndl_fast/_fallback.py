"""The pure-Python mode's stand-ins for ``_dense`` and ``_compiled.CompiledDenseMixin``.

A chapter module picks its base class and kernel names once, at import time::

    from . import _config
    if _config.use_compiled():
        from . import _dense
        from ._compiled import CompiledDenseMixin as _DenseBase
    else:
        from . import _fallback as _dense
        from ._fallback import ReferenceDenseMixin as _DenseBase

    class Network(_DenseBase, _reference.Network):
        ...

The class body is the same in both modes. Here the hooks it calls
(``_run_epochs``, ``_update_batch``, ``_predict_labels``, ...) run the book's
per-example algorithm from :mod:`nndl_fast.reference`: the reference class's own
``backprop`` and ``feedforward``, and the update rule of the reference
``network2.update_mini_batch`` (L2 or L1, optional momentum). Shuffling draws
from the stdlib generator exactly as ``random.shuffle`` does, as the compiled
path does, so for the same seeds both modes visit the same mini-batches.
"""
import enum
import random
import time

import numpy as np

from ._dense_common import DenseParamsMixin, softmax_rows
from ._validation import pack_training
from .reference.activations import ACTIVATION_TABLE, sigmoid as _sigmoid

__all__ = ["CostKind", "Regularization", "ReferenceDenseMixin",
           "count_correct", "forward", "train_epoch", "ACT_CODES", "SIGMOID"]

#: Activation codes by name, as ``_dense.ACT_CODES``.
ACT_CODES = {entry.name: entry.code for entry in ACTIVATION_TABLE}
SIGMOID = ACT_CODES["sigmoid"]
_BY_CODE = {entry.code: entry for entry in ACTIVATION_TABLE}


class CostKind(enum.IntEnum):
    """Same names and values as ``_dense.CostKind``."""
    QUADRATIC = 0
    CROSS_ENTROPY = 1
    LOG_LIKELIHOOD = 2


class Regularization(enum.IntEnum):
    """Same names and values as ``_dense.Regularization``."""
    L2 = 0
    L1 = 1


def forward(X, weights, biases, softmax=False, num_threads=1, chunk=256, X_sparse=None,
            activation=SIGMOID, output_activation=SIGMOID):
    """``_dense.forward`` in NumPy: outputs (n, n_out) for inputs (n, n_in)
    (``X_sparse`` is accepted and not needed)."""
    a = np.asarray(X, dtype=weights[0].dtype)     # the weights' dtype, as the kernel
    last = len(weights) - 1
    for l, (w, b) in enumerate(zip(weights, biases)):
        z = a @ w.T + b.reshape(1, -1)
        a = softmax_rows(z) if softmax and l == last else \
            _BY_CODE[output_activation if l == last else activation].fn(z)
    return np.ascontiguousarray(a, dtype=weights[0].dtype)


def count_correct(A, labels, num_threads=1):
    """``_dense.count_correct``: how many rows of A have their argmax equal to
    ``labels`` (``num_threads`` is accepted and unused)."""
    return int(np.count_nonzero(np.argmax(A, axis=1) == labels))


def train_epoch(X, Y, order, weights, biases, mini_batch_size, eta, lmbda=0.0, n_total=1.0,
                cost=CostKind.QUADRATIC, reg=Regularization.L2, momentum=0.0,
                velocities_w=None, velocities_b=None, num_threads=1, X_sparse=None,
                activation=SIGMOID):
    """``_dense.train_epoch`` in NumPy, one matrix product per layer and mini-batch.

    Updates ``weights``, ``biases`` (and the velocities) in place, like the kernel.
    """
    order = np.asarray(order, dtype=np.int64)
    dtype = weights[0].dtype
    step = eta * lmbda / n_total
    for k in range(0, len(order), mini_batch_size):
        rows = order[k:k + mini_batch_size]
        m = len(rows)
        acts = [np.asarray(X[rows], dtype=dtype)]
        for l, (w, b) in enumerate(zip(weights, biases)):
            z = acts[-1] @ w.T + b.reshape(1, -1)
            last = l == len(weights) - 1
            acts.append(softmax_rows(z) if last and cost == CostKind.LOG_LIKELIHOOD
                        else _sigmoid(z) if last else _BY_CODE[activation].fn(z))
        a = acts[-1]
        delta = a - Y[rows]
        if cost == CostKind.QUADRATIC:
            delta = delta * (a * (1 - a))
        for l in range(len(weights) - 1, -1, -1):
            grad_w = delta.T @ acts[l]
            grad_b = delta.sum(axis=0).reshape(-1, 1)
            if l > 0:
                next_delta = (delta @ weights[l]) * _BY_CODE[activation].prime(acts[l])
            w = weights[l]
            shrink = step * (w if reg == Regularization.L2 else np.sign(w))
            if momentum:
                velocities_w[l][...] = momentum * velocities_w[l] - shrink - (eta / m) * grad_w
                velocities_b[l][...] = momentum * velocities_b[l] - (eta / m) * grad_b
                w += velocities_w[l]
                biases[l] += velocities_b[l]
            else:
                w[...] = w - shrink - (eta / m) * grad_w
                biases[l][...] = biases[l] - (eta / m) * grad_b
            if l > 0:
                delta = next_delta


class ReferenceDenseMixin(DenseParamsMixin):
    """``CompiledDenseMixin``'s hooks, computed by the NumPy reference class it is mixed with.

    Must come before the reference class in the bases, which supplies
    ``backprop``, ``feedforward``, ``weights``, ``biases`` and ``sizes``.
    """

    def _sparse_rows(self, X):
        """No sparse form here: the reference computes on the dense rows."""
        return None

    def _packed_sparse_rows(self, packed):
        return None

    def _forward_matrix(self, X, num_threads=None, X_sparse=None):
        """Outputs (n, n_out) for inputs X (n, n_in): the reference feedforward on columns."""
        self._sync_params()
        X = np.asarray(X, dtype=self._dtype)
        out = super(ReferenceDenseMixin, self).feedforward(X.T)
        return np.ascontiguousarray(np.asarray(out).T)

    def _step(self, X, Y, rows, eta, lmbda, n_total, reg, momentum, velocities):
        """One gradient step on the examples ``X[rows]``, ``Y[rows]`` (rows of the packed data)."""
        self._sync_params()
        nabla_b = [np.zeros(b.shape) for b in self.biases]
        nabla_w = [np.zeros(w.shape) for w in self.weights]
        for i in rows:
            delta_b, delta_w = self.backprop(X[i].reshape(-1, 1), Y[i].reshape(-1, 1))
            nabla_b = [nb + d for nb, d in zip(nabla_b, delta_b)]
            nabla_w = [nw + d for nw, d in zip(nabla_w, delta_w)]
        m = len(rows)
        decay = eta * lmbda / n_total
        if velocities is None:
            if reg == Regularization.L2:
                self.weights = [(1 - decay) * w - (eta / m) * nw
                                for w, nw in zip(self.weights, nabla_w)]
            else:
                self.weights = [w - decay * np.sign(w) - (eta / m) * nw
                                for w, nw in zip(self.weights, nabla_w)]
            self.biases = [b - (eta / m) * nb for b, nb in zip(self.biases, nabla_b)]
        else:
            vw, vb = velocities
            for i, (w, nw) in enumerate(zip(self.weights, nabla_w)):
                shrink = decay * (w if reg == Regularization.L2 else np.sign(w))
                vw[i] = momentum * vw[i] - shrink - (eta / m) * nw
                self.weights[i] = w + vw[i]
            for i, (b, nb) in enumerate(zip(self.biases, nabla_b)):
                vb[i] = momentum * vb[i] - (eta / m) * nb
                self.biases[i] = b + vb[i]
        # The reference arithmetic promotes to float64; keep the chosen dtype.
        self._sync_params()

    def _run_epochs(self, X, Y, training_data, epochs, mini_batch_size, eta, after_epoch,
                    lmbda=0.0, cost=CostKind.QUADRATIC, reg=Regularization.L2, momentum=0.0,
                    num_threads=None, eta_for_epoch=None, velocities=None, X_sparse=None,
                    rows=None, shuffle_rng=None):
        """The epoch loop: shuffle the caller's list as random.shuffle does, train.

        ``after_epoch(j, seconds)`` runs after each epoch and may return True to stop.
        ``cost`` is implied by the reference class's ``backprop``; ``num_threads``
        has no effect here; ``rows`` and ``shuffle_rng`` as in the compiled mixin.
        """
        if shuffle_rng is None:
            shuffle_rng = random
        reg = Regularization(reg)
        n = len(training_data)
        order = list(range(n)) if rows is None else [int(r) for r in rows]
        if momentum and velocities is None:
            velocities = ([np.zeros(w.shape) for w in self.weights],
                          [np.zeros(b.shape) for b in self.biases])
        for j in range(epochs):
            t0 = time.perf_counter()
            perm = list(range(n))
            shuffle_rng.shuffle(perm)
            training_data[:] = [training_data[i] for i in perm]
            order = [order[i] for i in perm]
            cur_eta = eta if eta_for_epoch is None else eta_for_epoch()
            for k in range(0, n, mini_batch_size):
                self._step(X, Y, order[k:k + mini_batch_size], cur_eta, lmbda, float(n),
                           reg, momentum, velocities)
            if after_epoch(j, time.perf_counter() - t0):
                break

    def _update_batch(self, mini_batch, eta, lmbda=0.0, n=None, cost=CostKind.QUADRATIC,
                      reg=Regularization.L2):
        X, Y = pack_training(mini_batch, self.sizes[0], self.sizes[-1], self._dtype,
                             what="mini_batch")
        m = X.shape[0]
        self._step(X, Y, range(m), eta, lmbda, float(n if n else m),
                   Regularization(reg), 0.0, None)
