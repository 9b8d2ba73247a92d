"""mnist_loader — the book's loader, on Python 3, reading the bundled MNIST.

``load_data()`` returns ``(training_data, validation_data, test_data)``; each is
a pair ``(x, y)`` with ``x`` a float32 array (n, 784) of pixels in [0, 1] and
``y`` an int64 array (n,) of digits. Training is the first 50,000 MNIST training
images, validation the last 10,000, test the 10,000 test images.

``load_data_wrapper()`` returns the same data as three *lists* of ``(x, y)``
tuples in the layout the networks use: ``x`` of shape (784, 1); for training
``y`` is a (10, 1) one-hot column (``vectorized_result``), for validation and
test it is the int label.

Both take an optional ``path``: ``None`` (the bundled MNIST), a directory of
IDX files (for example Fashion-MNIST in ``/usr/share/datasets/fashion-mnist``),
or the book's ``mnist.pkl.gz``.
"""
import functools
import os

import numpy as np

from . import datasets
from ._datacache import fresh_zeros

__all__ = ["load_data", "load_data_wrapper", "vectorized_result"]

N_TRAIN = 50000


@functools.lru_cache(maxsize=4)
def _load_cached(path):
    """The three (x, y) splits as read, kept for later calls: uint8 IDX images
    stay uint8 (a quarter of float32's memory; ``load_data`` converts them),
    the book's pickle as it is."""
    if path is not None and os.path.isfile(path):
        return datasets.load_pickle(path)
    tr_x, tr_y, te_x, te_y = datasets.load_idx_dataset(path)
    if tr_x.shape[0] <= N_TRAIN:
        raise datasets.DataFileError(
            "expected more than %d training images to split off a validation set, got %d"
            % (N_TRAIN, tr_x.shape[0]))

    def flat(images):
        x = images.reshape(images.shape[0], -1)
        if x.dtype != np.uint8:      # IDX files of other types: pixels now
            x = x.astype(np.float32)
            x /= np.float32(datasets.PIXEL_SCALE)
        return x

    tr_x, te_x = flat(tr_x), flat(te_x)
    tr_y, te_y = tr_y.astype(np.int64), te_y.astype(np.int64)
    return ((tr_x[:N_TRAIN], tr_y[:N_TRAIN]),
            (tr_x[N_TRAIN:], tr_y[N_TRAIN:]),
            (te_x, te_y))


def _pixels(x):
    """A new array of the images ``x``: uint8 ones as float32 pixel / PIXEL_SCALE,
    others copied. Each is an array of its own, so that its rows (the loader's
    (784, 1) columns) are views of it."""
    if x.dtype == np.uint8:
        out = fresh_zeros(x.shape, np.float32)
        np.divide(x, np.float32(datasets.PIXEL_SCALE), out=out)
        return out
    out = fresh_zeros(x.shape, x.dtype)
    np.copyto(out, x)
    return out


def read_ahead(path=None):
    """Read and unpack the data files of ``path`` into the cache ``load_data``
    reads from, so that its first call finds them there. Meant for a thread
    started while other modules import (unpacking and hashing release the GIL);
    errors are left for ``load_data`` to raise."""
    try:
        _load_cached(_cache_key(path))
    except Exception:
        pass


def _cache_key(path):
    return None if path is None else os.path.abspath(os.fspath(path))


def load_data(path=None):
    """MNIST as ``(training_data, validation_data, test_data)`` of ``(x, y)`` arrays."""
    path = _cache_key(path)
    if path is not None:
        if not os.path.exists(path):
            raise FileNotFoundError("no MNIST data at %r (expected a directory of IDX files "
                                    "or the book's mnist.pkl.gz)" % path)
    # Fresh arrays on each call: callers may modify them in place.
    return tuple((_pixels(x), y.copy()) for x, y in _load_cached(path))


def load_data_wrapper(path=None):
    """MNIST as three lists of ``(x, y)`` tuples, the layout the networks train on."""
    tr_d, va_d, te_d = load_data(path)
    n_in = tr_d[0].shape[1]

    def columns(x):
        # Iterating an (n, n_in, 1) view yields the (n_in, 1) columns, views of x's rows.
        return list(x.reshape(x.shape[0], n_in, 1))
    training_data = list(zip(columns(tr_d[0]),
                             list(_one_hot_rows(tr_d[1]).reshape(-1, 10, 1))))
    validation_data = list(zip(columns(va_d[0]), va_d[1].tolist()))
    test_data = list(zip(columns(te_d[0]), te_d[1].tolist()))
    return training_data, validation_data, test_data


def _one_hot_rows(labels):
    """An (n, 10) float64 array, row i ``vectorized_result(labels[i])``'s column.

    The training targets are views of its rows, as the inputs are views of the
    rows of one array: ``SGD`` then takes both matrices as they are instead of
    copying 50,000 columns on its first call."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError("expected digits 0..9, got labels from %d to %d"
                         % (labels.min(), labels.max()))
    rows = np.zeros((len(labels), 10))
    rows[np.arange(len(labels)), labels.astype(np.intp)] = 1.0
    return rows


def vectorized_result(j):
    """A (10, 1) float64 column with 1.0 in position ``j`` and zeros elsewhere."""
    if isinstance(j, (bool, np.bool_)) or not isinstance(j, (int, np.integer)):
        raise TypeError("expected an integer digit 0..9, got %r" % (j,))
    if not 0 <= j <= 9:
        raise ValueError("expected a digit 0..9, got %d" % j)
    e = np.zeros((10, 1))
    e[j] = 1.0
    return e
