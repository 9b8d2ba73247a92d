"""The machinery network.py and network2.py share: parameters in the compute dtype,
one compiled call per epoch, batched feed-forward, BLAS held to one thread inside
our own OpenMP regions.
"""
import random
import time

import numpy as np

from . import _config, _datacache, _dense, _shuffle
from ._dense_common import DenseParamsMixin
from ._threads import blas_single_thread

# Inputs at most this dense go to the first layer as sparse rows: a mini-batch
# of 10 MNIST images (19% nonzero) has ~380 of its 784 columns nonzero
# somewhere, so the first layer does about half the dense work.
SPARSE_DENSITY = 0.3


class CompiledDenseMixin(DenseParamsMixin):
    """Adds compiled training and inference to a reference Network class."""

    def _epoch_threads(self, num_threads):
        """Threads for the training kernel: as given, else the package's policy
        shared among the runs training now (``_config.shared_num_threads``), but
        no more than the first layer has 16-unit blocks (a thread without a block
        would only wait at the barriers)."""
        if num_threads is not None:
            return _config.resolve_num_threads(num_threads)
        n_blocks = -(-self.sizes[1] // 16)
        return max(1, min(_config.shared_num_threads(), n_blocks))

    def _sparse_rows(self, X, row_bits=None):
        """``X`` as sparse rows for the first layer when that pays (a hidden layer,
        and at most SPARSE_DENSITY of the inputs nonzero, as for MNIST's ~19%);
        else None. The results are the same either way. ``row_bits``: X's
        nonzero entries (``_packing.scan_rows``), when known."""
        if len(self.sizes) < 3 or X.ndim != 2 or X.size == 0:
            return None
        return _dense.sparse_rows(X, max_density=SPARSE_DENSITY, row_bits=row_bits,
                                  num_threads=_config.get_num_threads())

    def _packed_sparse_rows(self, packed):
        """``_sparse_rows`` of a kept packed set's X (``_datacache.Packed``), made
        once per packed set (from the nonzero bits its packing found, if any)."""
        if len(self.sizes) < 3:
            return None
        return packed.get("sparse_rows", lambda: self._sparse_rows(
            packed.arrays[0], packed.derived.get("row_bits")))

    def _forward_matrix(self, X, num_threads=None, X_sparse=None):
        """Outputs (n, n_out) for inputs X (n, n_in), through the compiled kernel
        (``X_sparse``: ``_sparse_rows(X)``, when the caller has it)."""
        self._sync_params()
        X = np.asarray(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(self._dtype)
            X_sparse = None
        nt = _config.resolve_num_threads(num_threads)
        with blas_single_thread():
            return _dense.forward(X, self.weights, self.biases,
                                  softmax=self._softmax_output(), num_threads=nt,
                                  X_sparse=X_sparse, activation=self._act_code())

    def _run_epochs(self, X, Y, training_data, epochs, mini_batch_size, eta, after_epoch,
                    lmbda=0.0, cost=_dense.CostKind.QUADRATIC, reg=_dense.Regularization.L2, momentum=0.0,
                    num_threads=None, eta_for_epoch=None, velocities=None, X_sparse=None,
                    rows=None, shuffle_rng=None):
        """The epoch loop: shuffle the caller's list as random.shuffle does, train.

        ``after_epoch(j, seconds)`` runs after each epoch and may return True to stop.
        ``velocities`` (a pair of lists shaped like weights and biases, compute dtype)
        lets the caller keep the momentum state; by default it starts at zero.
        ``X_sparse``: ``_sparse_rows(X)`` when the caller has it already.
        ``rows``: the row of X holding each item of ``training_data`` (default:
        item k is row k); each shuffle is reported to ``_datacache.permuted``.
        ``shuffle_rng``: the ``random.Random`` to shuffle with (default: the
        ``random`` module's, as the book).
        """
        n = len(training_data)
        if X_sparse is None:
            X_sparse = self._sparse_rows(X)
        if shuffle_rng is None:
            shuffle_rng = random
        order = np.arange(n, dtype=np.int64) if rows is None else np.array(rows, np.int64)
        if not momentum:
            velocities = None
        elif velocities is None:
            velocities = ([np.zeros_like(w) for w in self.weights],
                          [np.zeros_like(b) for b in self.biases])
        # BLAS stays on one thread for the whole run, monitoring included: its
        # idle threads spin for a while after each call and would take the
        # cores from the kernels' threads.
        with blas_single_thread(), _config.training_run():
            for j in range(epochs):
                t0 = time.perf_counter()
                # Asked every epoch: the cores are shared among the runs training now.
                nt = self._epoch_threads(num_threads)
                perm = _shuffle.shuffle_permutation(n, shuffle_rng)
                _shuffle.apply_permutation(training_data, perm)
                _datacache.permuted(training_data, perm)
                order = order[perm]
                self._sync_params()
                cur_eta = eta if eta_for_epoch is None else eta_for_epoch()
                _dense.train_epoch(X, Y, order, self.weights, self.biases,
                                   mini_batch_size, cur_eta, lmbda=lmbda, n_total=float(n),
                                   cost=cost, reg=reg, momentum=momentum,
                                   velocities_w=velocities[0] if velocities else None,
                                   velocities_b=velocities[1] if velocities else None,
                                   num_threads=nt, X_sparse=X_sparse,
                                   activation=self._act_code())
                if after_epoch(j, time.perf_counter() - t0):
                    break

    def _update_batch(self, mini_batch, eta, lmbda=0.0, n=None, cost=_dense.CostKind.QUADRATIC,
                      reg=_dense.Regularization.L2):
        from ._validation import pack_training
        self._sync_params()
        X, Y = pack_training(mini_batch, self.sizes[0], self.sizes[-1], self._dtype,
                             what="mini_batch")
        m = X.shape[0]
        with blas_single_thread():
            _dense.train_epoch(X, Y, np.arange(m, dtype=np.int64), self.weights, self.biases,
                               m, eta, lmbda=lmbda, n_total=float(n if n else m),
                               cost=cost, reg=reg, num_threads=1,
                               activation=self._act_code())
