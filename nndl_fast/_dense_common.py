"""What the compiled and the pure-Python dense mixins share: the parameters'
dtype and layout, and the book-style column interface over ``_forward_matrix``.
"""
import numpy as np

from . import _datacache
from ._random import Generators
from .reference.activations import resolve_activation, sigmoid
from ._validation import check_dtype, check_params, pack_labelled, pack_training


def softmax_rows(Z, out=None):
    """The softmax of each row of ``Z``, shifted by the row's maximum, into ``out``
    (a new array by default; ``Z`` itself to work in place)."""
    out = np.subtract(Z, Z.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
    return out


class DenseParamsMixin(object):
    """Parameters in one dtype, and feedforward/argmax on top of ``_forward_matrix``."""

    _dtype = np.dtype(np.float64)
    # The book's global generators, until a constructor's seed= or rng= says otherwise.
    _generators = Generators()

    @property
    def dtype(self):
        """Dtype of the parameters and of the arithmetic (float64 is the book's)."""
        return self._dtype

    def _set_dtype(self, dtype):
        self._dtype = check_dtype(dtype)
        self._sync_params()

    def _sync_params(self):
        """Make weights/biases C-contiguous arrays of the chosen dtype, in place."""
        self.weights, self.biases = check_params(self.weights, self.biases, self.sizes,
                                                 self._dtype)

    def _packed_training(self, data, what="training"):
        """``pack_training(data)`` as X, Y in a ``_datacache.Packed`` (kept for the
        next call on the same, unchanged list)."""
        n_in, n_out = self.sizes[0], self.sizes[-1]
        return _datacache.packed(
            data, ("training", n_in, n_out, self._dtype.str),
            lambda: pack_training(data, n_in, n_out, self._dtype, what=what, shared=True))

    def _packed_labelled(self, data, what):
        """``pack_labelled(data)`` as X, labels in a ``_datacache.Packed``."""
        n_in, n_out = self.sizes[0], self.sizes[-1]
        return _datacache.packed(
            data, ("labelled", n_in, n_out),
            lambda: pack_labelled(data, n_in, n_out, what, shared=True))

    def _softmax_output(self):
        return False

    def _act_code(self):
        """The kernels' code for the hidden layers' activation (``activation_fn``,
        network2's; chapter 1's network is sigmoid)."""
        return resolve_activation(getattr(self, "activation_fn", sigmoid)).code

    def _predict_labels(self, X, X_sparse=None):
        return np.argmax(self._forward_matrix(X, X_sparse=X_sparse), axis=1)

    def _feedforward_columns(self, a):
        """Book-style feedforward: a (n_in, 1) column or (n_in, k) columns in, columns out."""
        a_arr = np.asarray(a)
        if a_arr.ndim == 1 and a_arr.shape[0] == self.sizes[0]:
            return self._forward_matrix(a_arr.reshape(1, -1))[0]
        if a_arr.ndim != 2 or a_arr.shape[0] != self.sizes[0]:
            raise ValueError("input has shape %s, expected (%d, 1)"
                             % (a_arr.shape, self.sizes[0]))
        if a_arr.dtype.kind not in "fiub":
            raise TypeError("input has dtype %s, expected a real dtype" % a_arr.dtype)
        if not np.isfinite(a_arr).all():
            raise ValueError("input contains NaN or infinity")
        return self._forward_matrix(a_arr.T).T.copy()
