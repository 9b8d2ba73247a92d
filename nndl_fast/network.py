"""network.py (chapter 1) — the book's API, trained by one compiled call per epoch.

    >>> from nndl_fast import mnist_loader, network
    >>> training_data, validation_data, test_data = mnist_loader.load_data_wrapper()
    >>> net = network.Network([784, 30, 10])
    >>> net.SGD(training_data, 30, 10, 3.0, test_data=test_data)

Same seeds, same numbers: ``Network(sizes)`` draws its initial values with
``np.random.randn`` in the book's order, and ``SGD`` shuffles the caller's list
with the stdlib generator exactly as ``random.shuffle`` does.
``Network(sizes, seed=s)`` (or ``rng=``) gives the network generators of its
own: the numbers of ``random.seed(s); np.random.seed(s)`` without touching the
global ones, so runs in parallel threads do not depend on each other.

Threads: calls from several Python threads on one network run one at a time
(each public method holds the network's re-entrant lock, ``net.lock``, for its
whole call); separate networks train at once. See docs/threads.md.
"""
import time

import numpy as np

from . import _config
from ._random import make_generators
from .export import ExportMixin
from ._threads import NetworkLockMixin, serialised
from ._validation import (check_input_columns, check_int, check_real, check_sizes,
                          check_training_list)
from .reference import network as _reference
from .reference.network import sigmoid, sigmoid_prime

if _config.use_compiled():
    from . import _dense
    from ._compiled import CompiledDenseMixin as _DenseBase
else:  # pure-Python mode: the same class body, run by the NumPy reference
    from . import _fallback as _dense
    from ._fallback import ReferenceDenseMixin as _DenseBase

__all__ = ["Network", "load", "sigmoid", "sigmoid_prime"]


class Network(NetworkLockMixin, ExportMixin, _DenseBase, _reference.Network):
    """A feed-forward sigmoid network trained with the quadratic cost.

    ``dtype`` (float64, the book's, or float32) is the compiled paths'
    arithmetic; ``num_threads`` overrides the global thread policy. ``seed``
    (an int) or ``rng`` (a NumPy ``RandomState`` or ``Generator``) gives the
    network its own generators for the initial values and SGD's shuffles
    (default: the book's global ``np.random`` and ``random``; see
    ``nndl_fast._random``).
    """

    def __init__(self, sizes, dtype=np.float64, num_threads=None, seed=None, rng=None):
        sizes = check_sizes(sizes)
        self._generators = make_generators(seed, rng)
        if self._generators.own:
            # The reference constructor, drawing from the network's generator.
            self.num_layers = len(sizes)
            self.sizes = [int(s) for s in sizes]
            self.biases = [self._generators.randn(y, 1) for y in self.sizes[1:]]
            self.weights = [self._generators.randn(y, x)
                            for x, y in zip(self.sizes[:-1], self.sizes[1:])]
            self._generators.initialized()
        else:
            super().__init__([int(s) for s in sizes])
        self._set_dtype(dtype)
        if num_threads is not None:
            _config.resolve_num_threads(num_threads)
        self.num_threads = num_threads

    @serialised
    def feedforward(self, a):
        """The output column(s) for input column(s) ``a`` of shape (n_in, 1) or (n_in, k)."""
        return self._feedforward_columns(check_input_columns(a, self.sizes[0]))

    @serialised
    def SGD(self, training_data, epochs, mini_batch_size, eta, test_data=None,
            progress=False):
        """Mini-batch stochastic gradient descent (the book's semantics and output).

        ``progress=True`` shows a progress bar over epochs on stderr (tqdm); the
        printed lines stay the book's.
        """
        epochs = check_int(epochs, "epochs", 0)
        if progress:
            from .progress import epoch_progress
            with epoch_progress(epochs):
                return self.SGD(training_data, epochs, mini_batch_size, eta, test_data)
        mini_batch_size = check_int(mini_batch_size, "mini_batch_size", 1)
        eta = check_real(eta, "eta")
        check_training_list(training_data)
        train = self._packed_training(training_data)
        X, Y = train.arrays
        # Slicing makes larger sizes one mini-batch; the kernel takes a C int.
        mini_batch_size = min(mini_batch_size, len(training_data))
        if test_data:
            test = self._packed_labelled(test_data, "test")
            X_test, y_test = test.arrays
            Xs_test = self._packed_sparse_rows(test)
            n_test = len(test_data)
        timing = getattr(self, "_print_epoch_time", False)
        # Per-epoch wall times (training, training plus evaluation), for benchmarks.
        self._epoch_seconds = []

        def after_epoch(j, seconds):
            t0 = time.perf_counter()
            suffix = "  [%.3f s]" % seconds if timing else ""
            if test_data:
                correct = int(np.sum(self._predict_labels(X_test, Xs_test) == y_test))
                print("Epoch {0}: {1} / {2}{3}".format(j, correct, n_test, suffix))
            else:
                print("Epoch {0} complete{1}".format(j, suffix))
            self._epoch_seconds.append((seconds, seconds + time.perf_counter() - t0))

        self._run_epochs(X, Y, training_data, epochs, mini_batch_size, eta, after_epoch,
                         cost=_dense.CostKind.QUADRATIC, num_threads=self.num_threads,
                         X_sparse=self._packed_sparse_rows(train), rows=train.rows,
                         shuffle_rng=self._generators.shuffle_module())

    @serialised
    def update_mini_batch(self, mini_batch, eta):
        """One gradient-descent step on ``mini_batch`` (a list of (x, y))."""
        eta = check_real(eta, "eta")
        self._update_batch(mini_batch, eta, cost=_dense.CostKind.QUADRATIC)

    @serialised
    def backprop(self, x, y):
        """(nabla_b, nabla_w): the gradient of the cost for one example (the book's)."""
        return super().backprop(x, y)

    @serialised
    def evaluate(self, test_data):
        """Number of test inputs whose argmax output equals the label."""
        test = self._packed_labelled(test_data, "test")
        X, labels = test.arrays
        if X.shape[0] == 0:
            return 0
        return int(np.sum(self._predict_labels(X, self._packed_sparse_rows(test)) == labels))

    # -- files --------------------------------------------------------------

    @serialised
    def save(self, filename):
        """Save to ``filename`` as network2's JSON document with cost "QuadraticCost"
        (chapter 1's cost), atomically; ``network.load`` and ``network2.load`` (ours
        and the book's) read it."""
        from .network2 import write_document
        self._sync_params()
        write_document(filename, self.sizes, self.weights, self.biases, "QuadraticCost")


def load(filename, dtype=np.float64, num_threads=None):
    """A ``Network`` from a file written by ``Network.save`` (or by network2's
    ``save`` for a QuadraticCost network).

    Raises ``network2.NetworkFileError`` (a ValueError) when the file is not a
    valid network document or holds a network trained with another cost (chapter
    1's network is the quadratic-cost one; ``network2.load`` reads the others).
    """
    from .network2 import NetworkFileError, QuadraticCost, read_document
    sizes, cost, weights, biases, activation = read_document(filename)
    if cost is not QuadraticCost or activation != "sigmoid":
        raise NetworkFileError("%s: expected a sigmoid network with cost QuadraticCost "
                               "(chapter 1's), got %s%s; network2.load reads it"
                               % (filename, cost.__name__, "" if activation == "sigmoid"
                                  else " with %s hidden layers" % activation))
    net = Network(sizes, dtype=dtype, num_threads=num_threads)
    net.weights = weights
    net.biases = biases
    net._sync_params()
    return net
