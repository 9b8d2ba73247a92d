"""Training on arrays, without printing: what the scikit-learn estimators, ``sweep``
and the ensemble trainer run.

``train_dense`` takes the steps ``network2.Network.SGD`` takes on the list
``[(x_i column, one-hot y_i)]`` made from the rows of X in order (the same
shuffles from the network's generator, the same kernel calls), so a run here
and the book's call agree bitwise; only the per-epoch lines are not printed and
no list of pairs is built or packed. ``train_conv`` does the same for
``network3.Network.SGD``. Both return the per-epoch evaluation accuracies.
"""
import numpy as np

from . import _config
from ._threads import blas_single_thread, network_lock
from ._validation import check_int, check_real

__all__ = ["as_inputs", "as_labels", "one_hot", "train_dense", "train_conv"]


def as_inputs(X, n_in, what="X"):
    """X as a C-contiguous (n, n_in) float32 or float64 array of finite values."""
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise TypeError("%s has dtype %s, expected real numbers" % (what, X.dtype))
    if X.ndim != 2 or X.shape[1] != n_in:
        raise ValueError("%s has shape %s, expected (n_samples, %d)" % (what, X.shape, n_in))
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    X = np.ascontiguousarray(X)
    if not np.isfinite(X).all():
        raise ValueError("%s contains NaN or infinity" % what)
    return X


def as_labels(labels, n, n_out, what="labels"):
    """Labels as an int64 (n,) array of classes in 0..n_out-1."""
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError("%s has shape %s, expected (%d,)" % (what, y.shape, n))
    if y.dtype.kind not in "iu":
        raise TypeError("%s has dtype %s, expected int class labels" % (what, y.dtype))
    y = y.astype(np.int64)
    bad = np.flatnonzero((y < 0) | (y >= n_out))
    if bad.size:
        raise ValueError("%s[%d] is %d, expected a class in 0..%d"
                         % (what, bad[0], y[bad[0]], n_out - 1))
    return y


def one_hot(labels, n_out, dtype):
    """(n, n_out) targets of ``dtype``: 1 at each label, as ``vectorized_result``."""
    Y = np.zeros((labels.shape[0], n_out), dtype=dtype)
    Y[np.arange(labels.shape[0]), labels] = 1
    return Y


def train_dense(net, X, labels, epochs, mini_batch_size, eta, lmbda=0.0, regularization="L2",
                momentum=0.0, evaluation=None, early_stopping_n=0, eta_decay_n=0,
                eta_stop_ratio=1.0 / 1024, after_epoch=None):
    """Train a ``network2.Network`` on the rows of X with int ``labels``.

    ``evaluation``: an (X_eval, labels_eval) pair whose correct count is taken
    after every epoch (needed by ``early_stopping_n`` and ``eta_decay_n``, which
    follow ``SGD``'s rules). ``after_epoch(epoch, correct)`` is called after each
    epoch (``correct`` None without ``evaluation``). Returns a dict with
    ``evaluation_accuracy`` (the correct counts), ``n_evaluation`` and ``epochs``
    (the epochs run).
    """
    from . import network2
    kind = net._kernel_cost()
    if kind is None:
        raise TypeError("training on arrays needs one of the costs %s, got %s"
                        % (", ".join(sorted(network2.COSTS_BY_NAME)),
                           type(net.cost).__name__))
    n_in, n_out = net.sizes[0], net.sizes[-1]
    epochs = check_int(epochs, "epochs", 0)
    mini_batch_size = check_int(mini_batch_size, "mini_batch_size", 1)
    eta = check_real(eta, "eta")
    lmbda = check_real(lmbda, "lmbda", 0.0)
    reg = network2._check_regularization(regularization)
    momentum = network2._check_momentum(momentum)
    early_stopping_n = check_int(early_stopping_n, "early_stopping_n", 0)
    eta_decay_n = check_int(eta_decay_n, "eta_decay_n", 0)
    eta_stop_ratio = check_real(eta_stop_ratio, "eta_stop_ratio", 0.0, allow_equal=False)
    X = as_inputs(X, n_in)
    if X.shape[0] == 0:
        raise ValueError("X is empty: expected at least one training example")
    labels = as_labels(labels, X.shape[0], n_out)
    Y = one_hot(labels, n_out, net.dtype)
    if (early_stopping_n or eta_decay_n) and evaluation is None:
        raise ValueError("early_stopping_n and eta_decay_n watch the evaluation accuracy: "
                         "they need evaluation=(X_eval, labels_eval)")
    if evaluation is not None:
        X_eval = as_inputs(evaluation[0], n_in, "X_eval")
        labels_eval = as_labels(evaluation[1], X_eval.shape[0], n_out, "labels_eval")
        if X_eval.shape[0] == 0:
            raise ValueError("X_eval is empty: expected at least one example to evaluate")
        X_eval_sparse = net._sparse_rows(X_eval)
    # The network's lock for the whole run, as its SGD holds it (docs/threads.md).
    with network_lock(net):
        n = X.shape[0]
        net._sync_params()
        net._velocities = None
        velocities = net._velocities_for_kernel() if momentum else None
        state = {"eta": eta, "best": None, "since_best": 0}
        accuracies = []
        epochs_run = [0]

        def epoch_done(j, seconds):
            epochs_run[0] = j + 1
            correct = None
            if evaluation is not None:
                correct = net._measure(X_eval, labels=labels_eval, X_sparse=X_eval_sparse)[1]
                accuracies.append(correct)
            if after_epoch is not None:
                after_epoch(j, correct)
            if early_stopping_n or eta_decay_n:
                return network2.schedule_step(state, correct, early_stopping_n, eta_decay_n, eta,
                                              eta_stop_ratio)[0]
            return False

        # The shuffles permute a list of row numbers, as SGD's permute the caller's list.
        net._run_epochs(X, Y, list(range(n)), epochs, min(mini_batch_size, n), eta, epoch_done,
                        lmbda=lmbda, cost=kind, reg=reg, momentum=momentum,
                        num_threads=net.num_threads, eta_for_epoch=lambda: state["eta"],
                        velocities=velocities, shuffle_rng=net._generators.shuffle_module())
        return {"evaluation_accuracy": accuracies,
                "n_evaluation": 0 if evaluation is None else int(X_eval.shape[0]),
                "epochs": epochs_run[0]}


def train_conv(net, x, labels, epochs, eta, lmbda=0.0, evaluation=None, after_epoch=None):
    """Train a ``network3.Network`` on the rows of x with int ``labels``: the
    mini-batches of ``net.SGD`` (in order, the remainder dropped), without printing.

    ``evaluation``: an (x_eval, labels_eval) pair; after each epoch the fraction
    of it predicted right is recorded (all of its examples, not the book's mean
    over whole mini-batches). Returns a dict with ``evaluation_accuracy`` and
    ``epochs``.
    """
    epochs = check_int(epochs, "epochs", 0)
    eta = check_real(eta, "eta")
    lmbda = check_real(lmbda, "lmbda", 0.0)
    n_in, n_out = net.layers[0].n_in, net.layers[-1].n_out
    x = as_inputs(x, n_in, "x").astype(net.dtype, copy=False)
    labels = as_labels(labels, x.shape[0], n_out)
    m = net.mini_batch_size
    n_batches = x.shape[0] // m
    if n_batches == 0:
        raise ValueError("fewer training examples (%d) than one mini-batch (%d)"
                         % (x.shape[0], m))
    if evaluation is not None:
        x_eval = as_inputs(evaluation[0], n_in, "x_eval")
        labels_eval = as_labels(evaluation[1], x_eval.shape[0], n_out, "labels_eval")
    accuracies = []
    with network_lock(net), blas_single_thread(), _config.training_run():
        for epoch in range(epochs):
            k = 0
            while k < n_batches:
                # The book's chunks: up to the next multiple of 1000 mini-batches.
                iteration = n_batches * epoch + k
                count = min(n_batches - k, 1000 - iteration % 1000)
                net._train_batches(x, labels, k, count, eta, lmbda, n_batches)
                k += count
            correct = None
            if evaluation is not None:
                correct = float(np.mean(net.predict(x_eval) == labels_eval))
                accuracies.append(correct)
            if after_epoch is not None:
                after_epoch(epoch, correct)
    return {"evaluation_accuracy": accuracies, "epochs": epochs}
