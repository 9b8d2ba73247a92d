"""network2.py (chapter 3) — the book's API, trained by one compiled call per epoch.

    >>> from nndl_fast import mnist_loader, network2
    >>> training_data, validation_data, test_data = mnist_loader.load_data_wrapper()
    >>> net = network2.Network([784, 30, 10], cost=network2.CrossEntropyCost)
    >>> net.SGD(training_data, 30, 10, 0.5, lmbda=5.0, evaluation_data=validation_data,
    ...         monitor_evaluation_accuracy=True)

Same seeds, same numbers as the book: the initial values are drawn with
``np.random.randn`` in the book's order, ``SGD`` shuffles the caller's list as
``random.shuffle`` does, and the four monitors return the book's lists.

The chapter's further techniques are keyword arguments whose defaults keep the
book's behaviour: ``early_stopping_n``, ``LogLikelihoodCost`` (a softmax output
layer), ``regularization="L1"``, ``momentum`` and the learning-rate schedule
``eta_decay_n`` / ``eta_stop_ratio``.

A cost class the compiled kernel does not know (any class with static ``fn``
and ``delta``) still works: training then runs the NumPy reference code.

Threads: calls from several Python threads on one network run one at a time
(each public method holds the network's re-entrant lock, ``net.lock``, for its
whole call); separate networks train at once. See docs/threads.md.
"""
import json
import math
import os
import time

import numpy as np

from . import _config
from ._random import make_generators
from .export import ExportMixin
from ._dense_common import softmax_rows
from ._files import atomic_write
from ._threads import NetworkLockMixin, blas_single_thread, serialised

if _config.use_compiled():
    from . import _dense
    from ._compiled import CompiledDenseMixin as _DenseBase
else:  # pure-Python mode: the same class body, run by the NumPy reference
    from . import _fallback as _dense
    from ._fallback import ReferenceDenseMixin as _DenseBase
from ._validation import (check_dtype, check_int, check_real, check_sizes, describe,
                          pack_training)
from .mnist_loader import vectorized_result
from .reference import network2 as _reference
from .reference.activations import resolve_activation
from .reference.network2 import (CrossEntropyCost, LogLikelihoodCost, QuadraticCost,
                                 cost_class, sigmoid, sigmoid_prime, softmax)
from .reference.activations import ReLU, linear, tanh

__all__ = ["Network", "QuadraticCost", "CrossEntropyCost", "LogLikelihoodCost", "load",
           "vectorized_result", "sigmoid", "sigmoid_prime", "softmax", "tanh", "ReLU",
           "linear"]

# Costs the compiled kernel implements, by exact class: a subclass may redefine
# fn or delta, so it gets the reference code instead.
_KERNEL_COSTS = {
    QuadraticCost: _dense.CostKind.QUADRATIC,
    CrossEntropyCost: _dense.CostKind.CROSS_ENTROPY,
    LogLikelihoodCost: _dense.CostKind.LOG_LIKELIHOOD,
}

# The names ``load`` accepts. The book looks the name up among all of its
# module's attributes, which would let a file name any function.
COSTS_BY_NAME = {cls.__name__: cls for cls in _KERNEL_COSTS}

_REGULARIZATIONS = {"L2": _dense.Regularization.L2, "L1": _dense.Regularization.L1}


def _check_cost(cost):
    cls = cost_class(cost)
    if not (callable(getattr(cls, "fn", None)) and callable(getattr(cls, "delta", None))):
        raise TypeError("cost must be a cost class (or instance) with static methods fn(a, y) "
                        "and delta(z, a, y), such as CrossEntropyCost; got %s" % describe(cost))
    return cost


def _check_regularization(regularization):
    if not isinstance(regularization, str) or regularization not in _REGULARIZATIONS:
        raise ValueError("regularization must be 'L2' or 'L1', got %r" % (regularization,))
    return _REGULARIZATIONS[regularization]


def _check_momentum(momentum):
    momentum = check_real(momentum, "momentum", 0.0)
    if momentum > 1.0:
        raise ValueError("momentum must be in [0, 1], got %r" % momentum)
    return momentum


def _one_hot(labels, n_out, what):
    """(n, n_out) float64 targets for int labels, as ``vectorized_result`` makes them."""
    bad = np.flatnonzero((labels < 0) | (labels >= n_out))
    if bad.size:
        raise ValueError("%s label %d is %d, expected a class in 0..%d"
                         % (what, bad[0], labels[bad[0]], n_out - 1))
    Y = np.zeros((labels.shape[0], n_out))
    Y[np.arange(labels.shape[0]), labels] = 1.0
    return Y


def _hot_entries(Y):
    """The flat indices (C order) of Y's ones, when every target is 0 or 1
    (one-hot labels); else None."""
    hot = Y == 1
    return np.flatnonzero(hot) if np.array_equal(hot, Y) else None


def _cost_sum(cost_kind, A, Y, hot=None):
    """Σ over examples of the cost's ``fn``, vectorised over (n, n_out) float64 A and Y.

    ``hot`` (from ``_hot_entries``) allows a cheaper evaluation for 0/1 targets
    with the same value element by element, ``nan_to_num`` included: each entry
    of the cross-entropy is then −ln a or −ln(1 − a), and only y = 1 entries of
    the log-likelihood can be nonzero.
    """
    if cost_kind == _dense.CostKind.QUADRATIC:
        d = (A - Y).ravel()
        return 0.5 * float(np.dot(d, d))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if hot is not None:
            if cost_kind == _dense.CostKind.CROSS_ENTROPY:
                T = 1 - A
                np.put(T, hot, np.take(A, hot))
            else:
                T = np.take(A, hot)
            np.log(T, out=T)
            # Σ(−ln t) is −Σ ln t exactly (negation commutes with rounding).
            # Every term is >= 0, so a finite sum means nan_to_num has nothing to do.
            total = -float(np.sum(T))
            if math.isfinite(total):
                return total
            np.negative(T, out=T)
            return float(np.sum(np.nan_to_num(T, copy=False)))
        if cost_kind == _dense.CostKind.CROSS_ENTROPY:
            terms = -Y * np.log(A) - (1 - Y) * np.log(1 - A)
        else:
            terms = -Y * np.log(A)
        return float(np.sum(np.nan_to_num(terms)))


class Network(NetworkLockMixin, ExportMixin, _DenseBase, _reference.Network):
    """A feed-forward sigmoid network with a choice of cost (chapter 3).

    ``cost`` is a cost class or an instance of one. ``dtype`` (float64, the
    book's, or float32) is the compiled paths' arithmetic; ``num_threads``
    overrides the global thread policy. ``seed`` (an int) or ``rng`` (a NumPy
    ``RandomState`` or ``Generator``) gives the network its own generators for
    the initial values (the initializers included) and SGD's shuffles (default:
    the book's global ``np.random`` and ``random``; see ``nndl_fast._random``).
    """

    def __init__(self, sizes, cost=CrossEntropyCost, dtype=np.float64, num_threads=None,
                 seed=None, rng=None, activation_fn=sigmoid):
        sizes = check_sizes(sizes)
        _config.resolve_num_threads(num_threads)
        # Set before the base constructor: the initializers cast to it and draw from it.
        self._dtype = check_dtype(dtype)
        self._generators = make_generators(seed, rng)
        super().__init__([int(s) for s in sizes], cost=_check_cost(cost),
                         activation_fn=activation_fn)
        self._generators.initialized()
        self.num_threads = num_threads

    @serialised
    def default_weight_initializer(self):
        """Biases N(0, 1), weights N(0, 1/n_in); biases drawn first, as the book."""
        gens = self._generators
        if gens.own:
            self.biases = [gens.randn(y, 1) for y in self.sizes[1:]]
            self.weights = [gens.randn(y, x) / np.sqrt(x)
                            for x, y in zip(self.sizes[:-1], self.sizes[1:])]
        else:
            super().default_weight_initializer()
        self._set_dtype(self._dtype)

    @serialised
    def large_weight_initializer(self):
        """Biases and weights N(0, 1), as chapter 1; biases drawn first."""
        gens = self._generators
        if gens.own:
            self.biases = [gens.randn(y, 1) for y in self.sizes[1:]]
            self.weights = [gens.randn(y, x)
                            for x, y in zip(self.sizes[:-1], self.sizes[1:])]
        else:
            super().large_weight_initializer()
        self._set_dtype(self._dtype)

    # -- which code runs --------------------------------------------------

    def _kernel_cost(self):
        """The kernel's code for ``self.cost``, or None for a cost it does not know."""
        return _KERNEL_COSTS.get(cost_class(self.cost))

    def _softmax_output(self):
        return _reference._softmax_output(self.cost)

    # -- inference ----------------------------------------------------------

    @serialised
    def feedforward(self, a):
        """The output column(s) for input column(s) ``a`` of shape (n_in, 1) or (n_in, k)."""
        return self._feedforward_columns(a)

    def _outputs(self, X, X_sparse=None):
        """Output activations (n, n_out) in float64 for rows of X (compute dtype;
        ``X_sparse`` its sparse rows, when the caller has them).

        A float64 network runs all its layers in the compiled forward kernel. A
        float32 one runs its hidden layers there and the output layer's
        activation in float64, so that the costs' logarithms see what the book's
        float64 code sees: in float32 a sigmoid already rounds to exactly 1.0 at
        z ≈ 17, which would turn a confident wrong answer into an infinite
        cross-entropy.
        """
        self._sync_params()
        H = X
        nt = _config.resolve_num_threads(self.num_threads)
        # One BLAS thread for the small products here too (its idle threads
        # would spin against the kernels' threads).
        with blas_single_thread():
            act = self._act_code()
            if np.dtype(self._dtype) == np.float64:
                return _dense.forward(X, self.weights, self.biases,
                                      softmax=self._softmax_output(), num_threads=nt,
                                      X_sparse=X_sparse, activation=act)
            if self.num_layers > 2:
                H = _dense.forward(X, self.weights[:-1], self.biases[:-1], softmax=False,
                                   num_threads=nt, X_sparse=X_sparse, activation=act,
                                   output_activation=act)
            Z = np.dot(H, self.weights[-1].T).astype(np.float64, copy=False)
        Z += self.biases[-1].reshape(1, -1)
        if self._softmax_output():
            return softmax_rows(Z, out=Z)
        with np.errstate(over="ignore"):
            np.negative(Z, out=Z)
            np.exp(Z, out=Z)
            Z += 1.0
            np.reciprocal(Z, out=Z)
        return Z

    def _weight_term(self, lmbda, n):
        """The book's L2 term of the total cost, 0.5·(λ/n)·Σ‖w‖², summed in float64."""
        if not lmbda:
            return 0.0
        sq = 0.0
        for w in self.weights:
            flat = np.asarray(w, dtype=np.float64).ravel()
            sq += float(np.dot(flat, flat))
        return 0.5 * (lmbda / n) * sq

    def _compute_dtype_inputs(self, X):
        # The forward kernel converts float32 inputs chunk by chunk, so the packed
        # matrix (float32 for the book's data) serves as it is: no float64 copy.
        return np.ascontiguousarray(X)

    @serialised
    def accuracy(self, data, convert=False):
        """Number of inputs in ``data`` whose argmax output is the desired class.

        ``convert=True`` is the book's flag for one-hot targets (training data);
        the labels are read from either form whatever the flag says.
        """
        if self._kernel_cost() is None:
            return super().accuracy(data, convert=convert)
        packed = self._packed_labelled(data, "training" if convert else "evaluation")
        X, labels = packed.arrays
        if X.shape[0] == 0:
            return 0
        return self._measure(self._compute_dtype_inputs(X), labels=labels,
                             X_sparse=self._packed_sparse_rows(packed))[1]

    @serialised
    def total_cost(self, data, lmbda, convert=False):
        """Mean cost over ``data`` plus the L2 term 0.5·(λ/len(data))·Σ‖w‖².

        ``convert=True`` when the targets are int labels (validation/test data).
        """
        lmbda = check_real(lmbda, "lmbda")
        if self._kernel_cost() is None:
            return super().total_cost(data, lmbda, convert=convert)
        n_out = self.sizes[-1]
        if convert:
            packed = self._packed_labelled(data, "evaluation")
            X, labels = packed.arrays
            if X.shape[0] == 0:
                raise ValueError("evaluation_data is empty: expected at least one (x, y) pair")
            Y = packed.get("one_hot", lambda: _one_hot(labels, n_out, "evaluation"))
        else:
            packed = self._packed_training(data)
            X, Y = packed.arrays
            Y = packed.get("targets", lambda: Y.astype(np.float64, copy=False))
        hot = packed.get("hot", lambda: _hot_entries(Y))
        return self._measure(self._compute_dtype_inputs(X), Y=Y, hot=hot, lmbda=lmbda,
                             X_sparse=self._packed_sparse_rows(packed))[0]

    def _measure(self, X, labels=None, Y=None, hot=None, lmbda=0.0, X_sparse=None):
        """(total cost or None, correct count or None) over rows of X, one batched pass.

        The cost needs float64 targets ``Y`` (and ``hot`` from ``_hot_entries``), the
        count needs int ``labels``.
        """
        A = self._outputs(X, X_sparse)
        n = X.shape[0]
        cost = correct = None
        if Y is not None:
            cost = (_cost_sum(self._kernel_cost(), A, Y, hot) / n
                    + self._weight_term(lmbda, n))
        if labels is not None:
            correct = _dense.count_correct(A, labels,
                                           _config.resolve_num_threads(self.num_threads))
        return cost, correct

    # -- training -----------------------------------------------------------

    def _shuffle(self, training_data):
        """The reference SGD's shuffle (a cost without a kernel), from the network's
        generator."""
        self._generators.shuffle_module().shuffle(training_data)

    def _velocities_for_kernel(self):
        """The momentum state as compute-dtype arrays, kept in ``self._velocities``."""
        vel = getattr(self, "_velocities", None)
        if vel is None or len(vel[0]) != len(self.weights):
            vel = ([np.zeros_like(w) for w in self.weights],
                   [np.zeros_like(b) for b in self.biases])
        vw = [np.require(v, dtype=self._dtype, requirements=["C", "W"]) for v in vel[0]]
        vb = [np.require(v, dtype=self._dtype, requirements=["C", "W"]).reshape(b.shape)
              for v, b in zip(vel[1], self.biases)]
        for v, w in zip(vw, self.weights):
            if v.shape != w.shape:
                raise ValueError("momentum velocity has shape %s, expected %s"
                                 % (v.shape, w.shape))
        self._velocities = (vw, vb)
        return self._velocities

    @serialised
    def SGD(self, training_data, epochs, mini_batch_size, eta,
            lmbda=0.0,
            evaluation_data=None,
            monitor_evaluation_cost=False,
            monitor_evaluation_accuracy=False,
            monitor_training_cost=False,
            monitor_training_accuracy=False,
            early_stopping_n=0,
            regularization="L2",
            momentum=0.0,
            eta_decay_n=0,
            eta_stop_ratio=1.0 / 1024,
            progress=False):
        """Mini-batch SGD with the book's monitoring; returns the four per-epoch lists.

        Returns ``(evaluation_cost, evaluation_accuracy, training_cost,
        training_accuracy)``, each empty when its monitor is off. Extras:
        ``early_stopping_n`` stops when evaluation accuracy has not improved for
        n epochs; ``eta_decay_n`` halves eta whenever it has not improved for n
        epochs and stops once eta falls below ``eta_stop_ratio`` of its first
        value (both need ``monitor_evaluation_accuracy``); ``regularization``
        is "L2" (the book's) or "L1"; ``momentum`` is the coefficient μ;
        ``progress=True`` shows a progress bar over epochs on stderr (tqdm).
        """
        epochs = check_int(epochs, "epochs", 0)
        if progress:
            from .progress import epoch_progress
            with epoch_progress(epochs):
                return self.SGD(training_data, epochs, mini_batch_size, eta, lmbda,
                                evaluation_data, monitor_evaluation_cost,
                                monitor_evaluation_accuracy, monitor_training_cost,
                                monitor_training_accuracy, early_stopping_n, regularization,
                                momentum, eta_decay_n, eta_stop_ratio)
        mini_batch_size = check_int(mini_batch_size, "mini_batch_size", 1)
        eta = check_real(eta, "eta")
        lmbda = check_real(lmbda, "lmbda", 0.0)
        reg = _check_regularization(regularization)
        momentum = _check_momentum(momentum)
        early_stopping_n = check_int(early_stopping_n, "early_stopping_n", 0)
        eta_decay_n = check_int(eta_decay_n, "eta_decay_n", 0)
        eta_stop_ratio = check_real(eta_stop_ratio, "eta_stop_ratio", 0.0, allow_equal=False)
        if eta_stop_ratio > 1.0:
            raise ValueError("eta_stop_ratio must be in (0, 1], got %r" % eta_stop_ratio)
        monitors = [bool(monitor_training_cost), bool(monitor_training_accuracy),
                    bool(monitor_evaluation_cost), bool(monitor_evaluation_accuracy)]
        if (monitors[2] or monitors[3]) and evaluation_data is None:
            raise ValueError("monitoring evaluation cost or accuracy needs evaluation_data, "
                             "got None")
        if (early_stopping_n or eta_decay_n) and not monitors[3]:
            raise ValueError("early_stopping_n and eta_decay_n watch the evaluation accuracy: "
                             "they need evaluation_data and monitor_evaluation_accuracy=True")
        kind = self._kernel_cost()
        if kind is None:
            return super().SGD(training_data, epochs, mini_batch_size, eta, lmbda=lmbda,
                               evaluation_data=evaluation_data,
                               monitor_evaluation_cost=monitors[2],
                               monitor_evaluation_accuracy=monitors[3],
                               monitor_training_cost=monitors[0],
                               monitor_training_accuracy=monitors[1],
                               early_stopping_n=early_stopping_n,
                               regularization=regularization, momentum=momentum,
                               eta_decay_n=eta_decay_n, eta_stop_ratio=eta_stop_ratio)

        # Everything the epochs need is packed once, here.
        n_out = self.sizes[-1]
        train = self._packed_training(training_data)
        X, Y = train.arrays
        X_sparse = self._packed_sparse_rows(train)
        # Per monitored set: (name, X, its sparse rows, targets for the cost, their
        # mask, labels, lists).
        watched = []
        training_cost, training_accuracy = [], []
        evaluation_cost, evaluation_accuracy = [], []
        if monitors[0] or monitors[1]:
            # The packed matrix serves both the kernel and the monitors.
            X = self._compute_dtype_inputs(X)
            Y_train = train.get("targets", lambda: Y.astype(np.float64, copy=False))
            watched.append(("training", X, X_sparse, Y_train if monitors[0] else None,
                            train.get("hot", lambda: _hot_entries(Y_train)),
                            train.get("labels", lambda: np.argmax(Y_train, axis=1))
                            if monitors[1] else None, training_cost, training_accuracy))
        if monitors[2] or monitors[3]:
            evaluation = self._packed_labelled(evaluation_data, "evaluation")
            X_eval, labels_eval = evaluation.arrays
            if X_eval.shape[0] == 0:
                raise ValueError("evaluation_data is empty: expected at least one (x, y) pair "
                                 "to monitor")
            Y_eval = evaluation.get("one_hot", lambda: _one_hot(labels_eval, n_out,
                                                                "evaluation")) \
                if monitors[2] else None
            X_eval = self._compute_dtype_inputs(X_eval)
            hot_eval = None if Y_eval is None else \
                evaluation.get("hot", lambda: _hot_entries(Y_eval))
            watched.append(("evaluation", X_eval, self._packed_sparse_rows(evaluation), Y_eval,
                            hot_eval,
                            labels_eval if monitors[3] else None,
                            evaluation_cost, evaluation_accuracy))
        self._sync_params()
        self._velocities = None
        velocities = self._velocities_for_kernel() if momentum else None

        state = {"eta": eta, "best": None, "since_best": 0}
        timing = getattr(self, "_print_epoch_time", False)
        # Per-epoch wall times (training, training plus monitoring), for benchmarks.
        self._epoch_seconds = []

        def after_epoch(j, seconds):
            t0 = time.perf_counter()
            print("Epoch %s training complete" % j)
            for name, X_m, Xs_m, Y_m, hot_m, labels_m, costs, accuracies in watched:
                cost, correct = self._measure(X_m, labels_m, Y_m, hot_m, lmbda, Xs_m)
                if cost is not None:
                    costs.append(cost)
                    print("Cost on {} data: {}".format(name, cost))
                if correct is not None:
                    accuracies.append(correct)
                    print("Accuracy on {} data: {} / {}".format(name, correct, X_m.shape[0]))
            total = seconds + (time.perf_counter() - t0)
            self._epoch_seconds.append((seconds, total))
            if timing:
                print("Epoch time (training and monitoring): %.3f s" % total)
            print()
            if early_stopping_n or eta_decay_n:
                return self._schedule_step(state, evaluation_accuracy[-1], early_stopping_n,
                                           eta_decay_n, eta, eta_stop_ratio)
            return False

        self._run_epochs(X, Y, training_data, epochs, mini_batch_size, eta, after_epoch,
                         lmbda=lmbda, cost=kind, reg=reg, momentum=momentum,
                         num_threads=self.num_threads, eta_for_epoch=lambda: state["eta"],
                         velocities=velocities, X_sparse=X_sparse, rows=train.rows,
                         shuffle_rng=self._generators.shuffle_module())
        return evaluation_cost, evaluation_accuracy, training_cost, training_accuracy

    @staticmethod
    def _schedule_step(state, accuracy, early_stopping_n, eta_decay_n, eta0, eta_stop_ratio):
        """Early stopping and the halving schedule, as the reference; True means stop."""
        stop, message = schedule_step(state, accuracy, early_stopping_n, eta_decay_n, eta0,
                                      eta_stop_ratio)
        if message:
            print(message)
        return stop

    @serialised
    def update_mini_batch(self, mini_batch, eta, lmbda, n, regularization="L2", momentum=0.0):
        """One gradient step on ``mini_batch``; ``n`` is the size of the whole training set.

        L2: w ← (1 − ηλ/n)·w − (η/m)·∇w. With ``momentum`` μ the velocities
        persist between calls (in ``self._velocities``), as in the reference.
        """
        eta = check_real(eta, "eta")
        lmbda = check_real(lmbda, "lmbda", 0.0)
        n = check_int(n, "n", 1)
        reg = _check_regularization(regularization)
        momentum = _check_momentum(momentum)
        kind = self._kernel_cost()
        if kind is None:
            return super().update_mini_batch(mini_batch, eta, lmbda, n,
                                             regularization=regularization, momentum=momentum)
        X, Y = pack_training(mini_batch, self.sizes[0], self.sizes[-1], self._dtype,
                             what="mini_batch")
        m = X.shape[0]
        self._sync_params()
        vw = vb = None
        if momentum:
            vw, vb = self._velocities_for_kernel()
        with blas_single_thread():
            _dense.train_epoch(X, Y, np.arange(m, dtype=np.int64), self.weights, self.biases,
                               m, eta, lmbda=lmbda, n_total=float(n), cost=kind, reg=reg,
                               momentum=momentum, velocities_w=vw, velocities_b=vb,
                               num_threads=1, activation=self._act_code())

    @serialised
    def backprop(self, x, y):
        """``(nabla_b, nabla_w)``, the cost's gradient for one example (the book's code)."""
        n_in, n_out = self.sizes[0], self.sizes[-1]
        pack_training([(x, y)], n_in, n_out, np.float64, what="backprop")
        return super().backprop(x, y)

    # -- files --------------------------------------------------------------

    @serialised
    def save(self, filename):
        """Save to ``filename`` as the book's JSON document, atomically.

        The document is written to a temporary file in the same directory and
        renamed over ``filename``, so a failure never leaves a half-written file.
        """
        self._sync_params()
        name = cost_class(self.cost).__name__
        if name not in COSTS_BY_NAME or COSTS_BY_NAME[name] is not cost_class(self.cost):
            raise ValueError("only the costs %s can be saved (load finds them by name), got %s"
                             % (", ".join(sorted(COSTS_BY_NAME)), name))
        write_document(filename, self.sizes, self.weights, self.biases, name,
                       resolve_activation(self.activation_fn).name)


def schedule_step(state, accuracy, early_stopping_n, eta_decay_n, eta0, eta_stop_ratio):
    """One epoch's step of early stopping and the halving schedule (the reference's
    rules): ``(stop, message or None)``, updating ``state`` ({"eta", "best",
    "since_best"}) with this epoch's evaluation ``accuracy``."""
    if state["best"] is None or accuracy > state["best"]:
        state["best"], state["since_best"] = accuracy, 0
    else:
        state["since_best"] += 1
    if early_stopping_n and state["since_best"] >= early_stopping_n:
        return True, ("Early stopping: no improvement in evaluation accuracy "
                      "for {} epochs".format(early_stopping_n))
    if eta_decay_n and state["since_best"] >= eta_decay_n:
        state["eta"] /= 2.0
        state["since_best"] = 0
        if state["eta"] < eta0 * eta_stop_ratio:
            return True, ("Learning rate fell to {} (1/{:g} of its initial value): "
                          "stopping".format(state["eta"], 1.0 / eta_stop_ratio))
        return False, "Learning rate halved to {}".format(state["eta"])
    return False, None


def write_document(filename, sizes, weights, biases, cost_name, activation="sigmoid"):
    """Write the book's JSON document atomically (network.py's ``save`` uses it too).

    ``weights[l]`` (sizes[l+1], sizes[l]) and ``biases[l]`` (sizes[l+1], 1), any
    float dtype; the numbers are written as float64. Hidden layers other than
    sigmoid add the key "activation" (the book's documents have none).
    """
    data = {"sizes": [int(s) for s in sizes],
            "weights": [np.asarray(w, dtype=np.float64).tolist() for w in weights],
            "biases": [np.asarray(b, dtype=np.float64).tolist() for b in biases],
            "cost": cost_name}
    if activation != "sigmoid":
        data["activation"] = activation
    # json.dumps, not json.dump: only the one-shot encoder is the C one.
    text = json.dumps(data, allow_nan=False)
    with atomic_write(filename, "w") as f:
        f.write(text)


class NetworkFileError(ValueError):
    """A network file is not a valid network document."""


def _reject_constant(name):
    raise NetworkFileError("non-finite number %s in the document" % name)


def _number_array(value, shape, what):
    """``value``, a list of ``shape[0]`` lists of ``shape[1]`` numbers, as a float64 array."""
    rows, cols = shape
    if not isinstance(value, list) or len(value) != rows:
        raise NetworkFileError("%s must be a list of %d rows (expected shape %s), got %s"
                               % (what, rows, shape, "a list of %d" % len(value)
                                  if isinstance(value, list) else type(value).__name__))
    types = set()
    for i, row in enumerate(value):
        if not isinstance(row, list) or len(row) != cols:
            raise NetworkFileError("row %d of %s must be a list of %d numbers (expected shape "
                                   "%s), got %s" % (i, what, cols, shape,
                                                    "a list of %d" % len(row)
                                                    if isinstance(row, list)
                                                    else type(row).__name__))
        types.update(map(type, row))
    # Exact types: JSON true/false arrive as bool, which NumPy would take for 1 and 0.
    if not types <= {int, float}:
        raise NetworkFileError("%s must hold numbers, got values of type %s"
                               % (what, ", ".join(sorted(t.__name__ for t in types
                                                         - {int, float}))))
    try:
        arr = np.array(value, dtype=np.float64)
    except OverflowError:
        arr = None
    if arr is None or not np.isfinite(arr).all():
        raise NetworkFileError("%s contains a number too large for a float" % what)
    return arr


def _parse_document(data):
    """(sizes, cost class, weights, biases, activation name) from a decoded
    document, validated."""
    if not isinstance(data, dict):
        raise NetworkFileError("expected a JSON object with keys sizes, weights, biases, cost; "
                               "got %s" % type(data).__name__)
    missing = [k for k in ("sizes", "weights", "biases", "cost") if k not in data]
    if missing:
        raise NetworkFileError("the document lacks the key(s) %s (expected sizes, weights, "
                               "biases, cost)" % ", ".join(missing))
    sizes = data["sizes"]
    if not isinstance(sizes, list):
        raise NetworkFileError("sizes must be a list of layer sizes, got %s"
                               % type(sizes).__name__)
    try:
        sizes = check_sizes(sizes)
    except (TypeError, ValueError) as exc:
        raise NetworkFileError(str(exc)) from None
    sizes = [int(s) for s in sizes]
    cost_name = data["cost"]
    if not isinstance(cost_name, str) or cost_name not in COSTS_BY_NAME:
        raise NetworkFileError("cost must be one of %s, got %r"
                               % (", ".join(sorted(COSTS_BY_NAME)), cost_name))
    activation = data.get("activation", "sigmoid")
    try:
        activation = resolve_activation(activation).name
    except ValueError as exc:
        raise NetworkFileError(str(exc)) from None
    n_layers = len(sizes) - 1
    for key in ("weights", "biases"):
        if not isinstance(data[key], list) or len(data[key]) != n_layers:
            raise NetworkFileError("%s must be a list of %d arrays for sizes %s, got %s"
                                   % (key, n_layers, sizes,
                                      "a list of %d" % len(data[key])
                                      if isinstance(data[key], list)
                                      else type(data[key]).__name__))
    # Shapes are checked against the document's own lists, whose size is bounded by
    # the file's, before the network (sized by ``sizes``) is allocated.
    weights = [_number_array(w, (sizes[l + 1], sizes[l]), "weights[%d]" % l)
               for l, w in enumerate(data["weights"])]
    biases = [_number_array(b, (sizes[l + 1], 1), "biases[%d]" % l)
              for l, b in enumerate(data["biases"])]
    return sizes, COSTS_BY_NAME[cost_name], weights, biases, activation


def read_document(filename):
    """(sizes, cost class, weights, biases, the hidden layers' activation name) of
    the network document at ``filename``.

    Raises ``NetworkFileError`` (a ValueError) naming the file and what is wrong
    when it is not a valid network document.
    """
    path = os.fspath(filename)
    with open(path, "r") as f:
        try:
            data = json.load(f, parse_constant=_reject_constant)
        except NetworkFileError as exc:
            raise NetworkFileError("%s: %s" % (path, exc)) from None
        except (ValueError, RecursionError) as exc:
            raise NetworkFileError("%s is not a valid JSON document: %s"
                                   % (path, exc)) from None
    try:
        return _parse_document(data)
    except NetworkFileError as exc:
        raise NetworkFileError("%s: %s" % (path, exc)) from None


def load(filename, dtype=np.float64, num_threads=None):
    """Load a network saved by ``save`` (ours or the book's).

    Raises ``NetworkFileError`` (a ValueError) naming what is wrong when the file
    is not a valid network document.
    """
    sizes, cost, weights, biases, activation = read_document(filename)
    # The constructor draws initial values as the book's load does, so the
    # global NumPy random state afterwards is the book's too.
    net = Network(sizes, cost=cost, dtype=dtype, num_threads=num_threads,
                  activation_fn=activation)
    net.weights = weights
    net.biases = biases
    net._sync_params()
    return net
