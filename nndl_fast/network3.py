"""network3 — the book's chapter-6 conv nets, without Theano, on compiled kernels.

Change one import line (``import network3`` → ``from nndl_fast import network3``)
and the book's commands run::

    from nndl_fast import network3
    from nndl_fast.network3 import Network, ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer
    training_data, validation_data, test_data = network3.load_data_shared()
    mini_batch_size = 10
    net = Network([
        ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28),
                      filter_shape=(20, 1, 5, 5), poolsize=(2, 2)),
        FullyConnectedLayer(n_in=20*12*12, n_out=100),
        SoftmaxLayer(n_in=100, n_out=10)], mini_batch_size)
    net.SGD(training_data, 60, mini_batch_size, 0.1, validation_data, test_data)

Semantics are the book's (see ``nndl_fast.reference.network3``, the NumPy
specification this module must agree with): no shuffling, the remainder of the
data dropped, L2 over all layers' weights divided by the number of training
mini-batches, accuracies as the mean over whole mini-batches, the book's
printed lines.

What is compiled (``nndl_fast._convnet`` + ``src_c/convnet.c``): training runs
up to 1000 mini-batches per call in one OpenMP team with the GIL released
(Python only prints the ``Training mini-batch number`` lines between calls),
and inference runs over a whole data set in one call. Results do not depend on
the number of threads. Several networks may train at once in Python threads.

Extra behaviour, only through keyword arguments:

* ``Network(layers, mini_batch_size, dtype=np.float32)``: the compute dtype
  (float32 as the book's Theano runs; ``np.float64`` for exact checks).
* ``dropout_seed=``: dropout masks come from a counter-based generator; the mask
  of layer l at training step t is a pure function of (seed, l, t). The default
  seed is the book's ``np.random.RandomState(0).randint(999999)``, so training
  is reproducible from ``np.random.seed`` (which fixes the initial weights).
  ``net.step`` counts the mini-batches trained so far.
* ``num_threads=``: threads of the compiled kernels (default: the package's
  policy, ``nndl_fast.set_num_threads`` / ``OMP_NUM_THREADS``, shared among the
  networks training at the same time in the process).
* ``seed=`` (an int) or ``rng=`` (a NumPy ``RandomState`` or ``Generator``): the
  layers' initial values are drawn again, layer by layer in the book's order,
  from the network's own generator; ``seed=s`` gives the values the layers get
  when built right after ``np.random.seed(s)``, without touching the global
  generator, so networks built in parallel threads do not depend on each other.
* ``net.predict(x)`` / ``net.predict_proba(x)``: labels / class probabilities for
  a whole data set; ``ensemble_predict(nets, data)`` majority-votes several nets
  (the book's ensemble of five).

Activation functions other than ``linear``, ``ReLU``, ``sigmoid`` and ``tanh``
run in inference only (by the NumPy reference); training needs one of those
four (``ValueError`` otherwise). The pure-Python mode (or a build without the
extension) runs the reference.

Checked input. Every public entry point checks what it is given before anything
is allocated or compiled code runs, and raises ``TypeError``/``ValueError``
naming what was expected and what came: the layers' shapes and how they fit
together (each layer's ``n_in`` against the previous layer's output, filter
channels against image channels, filter and pool sizes against the image, a conv
layer's ``image_shape[0]`` against ``mini_batch_size``), ``0 <= p_dropout < 1``,
finite data of the network's input size, labels in range, finite ``eta > 0`` and
``lmbda >= 0``, at least one mini-batch of training examples.

Threads. Calls from several Python threads on one network run one at a time:
every public method holds the network's lock (``net.lock``, re-entrant) for its
whole call, so each call sees the parameters as the previous call left them.
Separate networks train at once, each with the results it has alone, sharing
the cores (see ``num_threads=`` above). See docs/threads.md.

Speed: see docs/benchmarks.md (the first conv net, and the later ones).
"""
import dataclasses
import json
import math
import numbers
import os
import zipfile
import zlib

import numpy as np

from . import _config
from ._random import make_generators
from .export import ExportMixin
from ._files import atomic_write
from ._threads import NetworkLockMixin, blas_single_thread, serialised
from ._validation import _finite_or_raise, check_dtype, check_int, check_real
from ._validation import describe as describe_value
from .reference import network3 as _ref
from .reference.network3 import (ACTIVATION_TABLE, ConvPoolLayer, FullyConnectedLayer, ReLU,
                                  SharedArray, SoftmaxLayer, activation_of, dropout_mask,
                                  linear, load_data_shared, sigmoid, size, tanh)

__all__ = ["linear", "ReLU", "sigmoid", "tanh", "load_data_shared", "size", "SharedArray",
           "ConvPoolLayer", "FullyConnectedLayer", "SoftmaxLayer", "Network",
           "ensemble_predict", "ensemble_accuracy", "vote", "dropout_mask",
           "single_thread_blas", "load", "NetworkFileError", "ACTIVATIONS"]

@dataclasses.dataclass(frozen=True)
class KernelLayer:
    """One layer as the compiled kernels read it (``nf_layer`` in src_c/convnet.h),
    by name: ``kind`` is one of ``_convnet``'s KIND_* codes and ``act`` an
    :class:`Activation`'s ``code`` (``ACTIVATION_TABLE``); the conv
    sizes (input image, filters, pool) stay 0 for the other kinds; ``w`` and ``b``
    are the layer's C-contiguous parameters, which training updates in place."""
    kind: int
    act: int
    n_in: int
    n_out: int
    w: np.ndarray
    b: np.ndarray
    p_dropout: float = 0.0
    c_in: int = 0
    h_in: int = 0
    w_in: int = 0
    n_filt: int = 0
    kh: int = 0
    kw: int = 0
    ph: int = 0
    pw: int = 0


# The compiled kernels' limit (NF_MAX_LAYERS in src_c/convnet.h).
_MAX_LAYERS = 32

#: The activation functions a layer may take, by name (``ACTIVATION_TABLE``'s).
ACTIVATIONS = {entry.name: entry.fn for entry in ACTIVATION_TABLE}

#: Context manager: BLAS held to one thread for a whole block of calls
#: (``net.predict`` in a loop, say); the networks' methods take it anyway.
single_thread_blas = blas_single_thread


def _convnet():
    """The compiled module, or None in the pure-Python mode (then the NumPy
    reference computes everything, with the same results)."""
    if not _config.use_compiled("_convnet"):
        return None
    from . import _convnet as mod
    return mod


# --- checks of the public entry points' arguments ----------------------------------------

_LAYER_TYPES = (ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer)


def _check_layers(layers):
    """The layer list as a list of distinct layer objects, a SoftmaxLayer last."""
    if isinstance(layers, _LAYER_TYPES):
        raise TypeError("layers must be a list of layers, got a single %s (wrap it in [...])"
                        % type(layers).__name__)
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError("layers must be a list of ConvPoolLayer, FullyConnectedLayer and "
                        "SoftmaxLayer objects, got %s" % describe_value(layers))
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: a Network needs at least a SoftmaxLayer")
    if len(layers) > _MAX_LAYERS:
        raise ValueError("expected at most %d layers, got %d" % (_MAX_LAYERS, len(layers)))
    for l, layer in enumerate(layers):
        if not isinstance(layer, _LAYER_TYPES):
            raise TypeError("layers[%d] must be a ConvPoolLayer, FullyConnectedLayer or "
                            "SoftmaxLayer, got %s" % (l, describe_value(layer)))
        for k in range(l):
            if layers[k] is layer:
                raise ValueError("layers[%d] is the same object as layers[%d]: each layer "
                                 "holds its own parameters, so build a new one" % (l, k))
    for l, layer in enumerate(layers[:-1]):
        if isinstance(layer, SoftmaxLayer):
            raise ValueError("only the last layer may be a SoftmaxLayer, got one at "
                             "layers[%d] of %d" % (l, len(layers)))
    if not isinstance(layers[-1], SoftmaxLayer):
        raise ValueError("the last layer must be a SoftmaxLayer (it defines the cost), got "
                         "%s" % type(layers[-1]).__name__)
    return layers


def _check_geometry(layers, mini_batch_size):
    """Each layer's inputs against what the previous one gives, conv layers first
    and built for the network's mini-batch size."""
    for l, layer in enumerate(layers):
        name = "layers[%d] (%s)" % (l, type(layer).__name__)
        if isinstance(layer, ConvPoolLayer):
            if l > 0 and not isinstance(layers[l - 1], ConvPoolLayer):
                raise ValueError("%s follows a %s: conv-pool layers must come first"
                                 % (name, type(layers[l - 1]).__name__))
            if layer.image_shape[0] != mini_batch_size:
                raise ValueError("%s has image_shape %s for mini-batches of %d, but the "
                                 "network's mini_batch_size is %d"
                                 % (name, layer.image_shape, layer.image_shape[0],
                                    mini_batch_size))
            if l > 0 and tuple(layer.image_shape[1:]) != tuple(layers[l - 1].output_shape):
                raise ValueError("%s expects images %s (channels, rows, columns), but "
                                 "layers[%d] gives %s" % (name, tuple(layer.image_shape[1:]),
                                                          l - 1, layers[l - 1].output_shape))
        elif l > 0 and layer.n_in != layers[l - 1].n_out:
            prev = layers[l - 1]
            extra = (" (%d filters x %d x %d)" % ((prev.output_shape[0],) + prev.output_shape[1:])
                     if isinstance(prev, ConvPoolLayer) else "")
            raise ValueError("%s has n_in=%d, but layers[%d] (%s) gives %d outputs%s"
                             % (name, layer.n_in, l - 1, type(prev).__name__, prev.n_out,
                                extra))
        if mini_batch_size * layer.n_in > _ref.INT_MAX:
            raise ValueError("%s: mini-batches of %d examples of %d inputs are too large "
                             "(at most %d values)" % (name, mini_batch_size, layer.n_in,
                                                      _ref.INT_MAX))


def _as_array(value, what, shape_hint):
    if isinstance(value, SharedArray):
        return value.get_value(borrow=True)
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (tuple, list)) \
            and len(value[0]) == 2 and isinstance(value[0][0], np.ndarray):
        raise TypeError("%s must be an array of shape %s, got a list of (x, y) pairs "
                        "(network.py's layout; network3 takes load_data_shared()'s (x, y) "
                        "arrays)" % (what, shape_hint))
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError("%s must be an array of shape %s, got %s (%s)"
                        % (what, shape_hint, describe_value(value), exc)) from None
    return arr


def checked_inputs(x, n_in, what="x"):
    """Inputs as a finite real array of shape (n, n_in) (a view where possible).

    ``x`` is an array, a ``SharedArray`` or anything ``np.asarray`` takes, of
    shape (n, n_in) or (n, ...) with n_in values per example.
    """
    hint = "(n, %d)" % n_in
    arr = _as_array(x, what, hint)
    if arr.dtype.kind not in "fiu":
        raise TypeError("%s has dtype %s, expected real numbers (float32 or float64)"
                        % (what, arr.dtype))
    if arr.ndim < 2 or int(np.prod(arr.shape[1:])) != n_in:
        raise ValueError("%s has shape %s, expected %s%s"
                         % (what, arr.shape, hint,
                            " (one example: x.reshape(1, -1))"
                            if arr.ndim == 1 and arr.shape[0] == n_in else ""))
    arr = arr.reshape(arr.shape[0], n_in)
    if arr.dtype.kind == "f":
        _finite_or_raise(arr, what + " example")
    return arr


def checked_labels(y, n, n_classes, what="y"):
    """Labels as an int64 array (n,) of classes 0..n_classes-1 (integral floats allowed,
    as the book's ``T.cast(shared_y, "int32")``)."""
    arr = _as_array(y, what, "(%d,)" % n)
    if arr.dtype.kind not in "fiu":
        raise TypeError("%s has dtype %s, expected integer class labels"
                        % (what, arr.dtype))
    if arr.shape != (n,):
        raise ValueError("%s has shape %s, expected (%d,): one label per example"
                         % (what, arr.shape, n))
    if arr.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if bad.size:
            raise ValueError("%s label %d is %r, expected an integer class"
                             % (what, bad[0], float(arr[bad[0]])))
    bad = np.flatnonzero((arr < 0) | (arr >= n_classes))
    if bad.size:
        raise ValueError("%s label %d is %s, expected a class in 0..%d"
                         % (what, bad[0], arr[bad[0]], n_classes - 1))
    return arr.astype(np.int64)


def checked_data(data, n_in, n_classes, what="data"):
    """(inputs (n, n_in), int64 labels (n,)) from an (x, y) pair, both checked."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        layout = ""
        if isinstance(data, (tuple, list)) and data and isinstance(data[0], (tuple, list)):
            layout = (" (a list of (x, y) pairs is network.py's layout; network3 takes "
                      "load_data_shared()'s (x, y) arrays)")
        raise TypeError("%s must be a pair (x, y) of arrays or SharedArrays, got %s%s"
                        % (what, describe_value(data) if not isinstance(data, (tuple, list))
                           else "a %s of %d items" % (type(data).__name__, len(data)),
                           layout))
    x = checked_inputs(data[0], n_in, what + " x")
    y = checked_labels(data[1], len(x), n_classes, what + " y")
    return x, y


class Network(NetworkLockMixin, ExportMixin, _ref.Network):
    """The book's Network(layers, mini_batch_size), trained by compiled kernels."""

    def __init__(self, layers, mini_batch_size, dtype=np.float32, dropout_seed=None,
                 num_threads=None, seed=None, rng=None):
        # Everything is checked before the parent converts any parameter.
        layers = _check_layers(layers)
        mini_batch_size = check_int(mini_batch_size, "mini_batch_size", 1)
        _check_geometry(layers, mini_batch_size)
        dtype = check_dtype(dtype)
        if dropout_seed is not None:
            dropout_seed = check_int(dropout_seed, "dropout_seed", 0)
            if dropout_seed >= 2 ** 64:
                raise ValueError("dropout_seed must be < 2**64, got %d" % dropout_seed)
        if num_threads is not None:
            _config.resolve_num_threads(num_threads)
        generators = make_generators(seed, rng)
        super(Network, self).__init__(layers, mini_batch_size, dtype=dtype,
                                      dropout_seed=dropout_seed)
        self.num_threads = num_threads
        if generators.own:
            for layer in self.layers:
                _draw_initial_values(layer, generators, self.dtype)

    def _threads(self):
        return _config.resolve_num_threads(self.num_threads) if self.num_threads is not None \
            else _config.shared_num_threads()

    # --- checks of what the public methods are given -------------------------
    @property
    def n_in(self):
        """Inputs per example (the first layer's)."""
        return self.layers[0].n_in

    @property
    def n_out(self):
        """Classes (the softmax layer's outputs)."""
        return self.layers[-1].n_out

    def _checked_inputs(self, x, what="x"):
        return checked_inputs(x, self.n_in, what)

    def _checked_data(self, data, what):
        """(x as (n, n_in), int64 labels (n,)) from an (x, y) pair, checked."""
        return checked_data(data, self.n_in, self.n_out, what)

    def _check_parameters(self):
        """Finite parameters of the network's own shapes (a layer's arrays can be
        replaced through ``w.set_value``)."""
        for l, layer in enumerate(self.layers):
            for name, p in (("w", layer.w), ("b", layer.b)):
                v = _ref._value(p)
                if v.dtype.kind != "f":
                    raise TypeError("layers[%d].%s has dtype %s, expected float32 or float64"
                                    % (l, name, v.dtype))
                if not np.isfinite(v).all():
                    raise ValueError("layers[%d].%s (%s) contains NaN or infinity"
                                     % (l, name, type(layer).__name__))

    def _check_trainable(self):
        """Parameters finite, and every activation one whose derivative is known."""
        self._check_parameters()
        for l, layer in enumerate(self.layers):
            if not isinstance(layer, SoftmaxLayer) \
                    and activation_of(layer.activation_fn) is None:
                raise ValueError("layers[%d] has the activation_fn %r, whose derivative is "
                                 "not known: training needs one of network3's %s"
                                 % (l, layer.activation_fn, ", ".join(ACTIVATIONS)))

    # --- the layer description the compiled kernels read -----------------
    def _spec(self):
        """The layers as _convnet reads them (a list of :class:`KernelLayer`), or None
        when the reference must compute (an activation without a kernel, the
        pure-Python mode)."""
        cv = _convnet()
        if cv is None:
            return None
        spec = []
        for layer in self.layers:
            w = layer.w.get_value(borrow=True)
            b = layer.b.get_value(borrow=True)
            if w.dtype != self.dtype or not w.flags.c_contiguous or not w.flags.writeable:
                w = np.array(w, dtype=self.dtype, order="C")
                layer.w.set_value(w, borrow=True)
            if b.dtype != self.dtype or not b.flags.c_contiguous or not b.flags.writeable:
                b = np.array(b, dtype=self.dtype, order="C")
                layer.b.set_value(b, borrow=True)
            sizes = {"n_in": layer.n_in, "n_out": layer.n_out, "w": w, "b": b}
            if isinstance(layer, SoftmaxLayer):
                spec.append(KernelLayer(kind=cv.KIND_SOFTMAX, act=activation_of(linear).code,
                                        p_dropout=float(layer.p_dropout), **sizes))
                continue
            entry = activation_of(layer.activation_fn)
            if entry is None:
                return None
            act = entry.code
            if isinstance(layer, ConvPoolLayer):
                n_filt, c_in, kh, kw = layer.filter_shape
                _, _, h_in, w_in = layer.image_shape
                ph, pw = layer.poolsize
                spec.append(KernelLayer(kind=cv.KIND_CONV, act=act, c_in=c_in, h_in=h_in,
                                        w_in=w_in, n_filt=n_filt, kh=kh, kw=kw, ph=ph, pw=pw,
                                        **sizes))
            else:
                spec.append(KernelLayer(kind=cv.KIND_DENSE, act=act,
                                        p_dropout=float(layer.p_dropout), **sizes))
        return spec

    # --- compiled paths -------------------------------------------------
    def _train_batches(self, x, y, first, count, eta, lmbda, num_training_batches):
        spec = self._spec()
        m = self.mini_batch_size
        if spec is None:   # an activation we have no kernel for: the NumPy reference
            for k in range(first, first + count):
                _ref.Network.train_mini_batch(self, x[k * m:(k + 1) * m], y[k * m:(k + 1) * m],
                                              eta, lmbda, num_training_batches)
            return
        x = np.ascontiguousarray(x, dtype=self.dtype)
        y = np.ascontiguousarray(y, dtype=np.int64)
        nt = self._threads()
        with blas_single_thread():
            _convnet().train(spec, x, y, first, count, m, float(eta),
                             float(lmbda) / num_training_batches, self.step,
                             self.dropout_seed & 0xFFFFFFFFFFFFFFFF, nt)
        self.step += count

    @serialised
    def train_mini_batch(self, x, y, eta, lmbda=0.0, num_training_batches=1):
        """One SGD step on the examples x (m, n_in) with labels y (m,)."""
        x, y = self._checked_data((x, y), "mini-batch")
        if len(x) != self.mini_batch_size:
            raise ValueError("expected a mini-batch of %d examples, got %d"
                             % (self.mini_batch_size, len(x)))
        eta = check_real(eta, "eta", 0.0, allow_equal=False)
        lmbda = check_real(lmbda, "lmbda", 0.0)
        num_training_batches = check_int(num_training_batches, "num_training_batches", 1)
        self._check_trainable()
        self._train_batches(np.ascontiguousarray(x, dtype=self.dtype), y, 0, 1, eta, lmbda,
                            num_training_batches)

    def _proba(self, x):
        """Class probabilities for checked inputs x (n, n_in)."""
        spec = self._spec()
        if spec is None:
            return _ref.Network.predict_proba(self, x)
        x = np.ascontiguousarray(x, dtype=self.dtype)
        nt = self._threads()
        with blas_single_thread():
            return _convnet().predict(spec, x, nt)

    def _predict_labels(self, x):
        """The book's y_out for checked inputs (also kept on the last layer)."""
        probs = self._proba(x)
        labels = np.argmax(probs, axis=1)
        last = self.layers[-1]
        last.output, last.y_out = probs, labels
        return labels

    @serialised
    def predict_proba(self, x):
        """Class probabilities (n, n_classes) for inputs x (n, n_in) (array or shared)."""
        x = self._checked_inputs(x)
        self._check_parameters()
        return self._proba(x)

    @serialised
    def predict(self, x):
        """Predicted labels (n,) for inputs x (n, n_in) — the book's y_out.

        Also leaves the probabilities and labels in the last layer's ``output``
        and ``y_out`` (the book's attributes), so ``layers[-1].accuracy(y)`` works.
        """
        x = self._checked_inputs(x)
        self._check_parameters()
        return self._predict_labels(x)

    @serialised
    def feedforward(self, x):
        """Outputs of the last layer for inputs x (n, n_in)."""
        x = self._checked_inputs(x)
        self._check_parameters()
        return self._proba(x)

    @serialised
    def accuracy(self, data, mini_batch_size=None):
        """The book's accuracy of an (x, y) pair: the mean over whole mini-batches
        (of ``mini_batch_size``, the network's by default) of each one's accuracy."""
        m = self.mini_batch_size if mini_batch_size is None \
            else check_int(mini_batch_size, "mini_batch_size", 1)
        x, y = self._checked_data(data, "data")
        self._check_parameters()
        return self._accuracy(x, y, m)

    @serialised
    def cost_and_gradients(self, x, y, lmbda=0.0, num_training_batches=1):
        """(cost, [(gw, gb) per layer]) of one mini-batch (the NumPy reference's)."""
        x, y = self._checked_data((x, y), "mini-batch")
        lmbda = check_real(lmbda, "lmbda", 0.0)
        num_training_batches = check_int(num_training_batches, "num_training_batches", 1)
        self._check_trainable()
        return super(Network, self).cost_and_gradients(x, y, lmbda, num_training_batches)

    @serialised
    def SGD(self, training_data, epochs, mini_batch_size, eta,
            validation_data, test_data, lmbda=0.0):
        """Train by mini-batch SGD, printing the book's lines (see the module docstring).

        Every argument is checked before training starts: (x, y) pairs of arrays
        or ``SharedArray``s with x (n, n_in) finite and y (n,) labels in
        0..n_out-1 (``validation_data`` and ``test_data`` may be None), ``epochs``
        >= 0, ``mini_batch_size`` the network's, ``eta`` > 0 and ``lmbda`` >= 0,
        finite; at least one mini-batch of training examples.
        """
        epochs = check_int(epochs, "epochs", 0)
        mini_batch_size = check_int(mini_batch_size, "mini_batch_size", 1)
        if mini_batch_size != self.mini_batch_size:
            raise ValueError("SGD's mini_batch_size %d differs from the network's %d (its "
                             "layers are built for mini-batches of %d)"
                             % (mini_batch_size, self.mini_batch_size, self.mini_batch_size))
        eta = check_real(eta, "eta", 0.0, allow_equal=False)
        lmbda = check_real(lmbda, "lmbda", 0.0)
        training = self._checked_data(training_data, "training_data")
        if len(training[0]) < mini_batch_size:
            raise ValueError("training_data has %d examples, fewer than one mini-batch of %d"
                             % (len(training[0]), mini_batch_size))
        validation = None if validation_data is None \
            else self._checked_data(validation_data, "validation_data")
        test = None if test_data is None else self._checked_data(test_data, "test_data")
        self._check_trainable()
        with blas_single_thread(), _config.training_run():
            return super(Network, self).SGD(training, epochs, mini_batch_size, eta,
                                            validation, test, lmbda=lmbda)

    # --- files -------------------------------------------------------------
    @serialised
    def save(self, filename):
        """Save to ``filename``, an ``.npz`` archive (NumPy, no pickles), atomically.

        The archive holds ``metadata``, a JSON text (see ``describe``), and per
        layer ``layer{l}_w`` / ``layer{l}_b`` in the layer's own shapes and the
        network's dtype. ``network3.load`` reads it back.
        """
        metadata, arrays = describe(self)
        entries = {"metadata": np.array(json.dumps(metadata))}
        for l, (w, b) in enumerate(arrays):
            entries["layer%d_w" % l] = w
            entries["layer%d_b" % l] = b
        with atomic_write(filename, "wb") as f:
            np.savez(f, **entries)


def _draw_initial_values(layer, generators, dtype):
    """The layer's initial w and b drawn again from ``generators``, as its constructor
    draws them from ``np.random`` (a softmax layer starts at zero and draws nothing)."""
    if isinstance(layer, SoftmaxLayer):
        return
    if isinstance(layer, ConvPoolLayer):
        fs = layer.filter_shape
        n_out = fs[0] * np.prod(fs[2:]) / np.prod(layer.poolsize)
        w = generators.normal(0, np.sqrt(1.0 / n_out), fs)
        b = generators.normal(0, 1.0, (fs[0],))
    else:
        w = generators.normal(0.0, np.sqrt(1.0 / layer.n_out), (layer.n_in, layer.n_out))
        b = generators.normal(0.0, 1.0, (layer.n_out,))
    layer.w.set_value(np.ascontiguousarray(w, dtype=dtype), borrow=True)
    layer.b.set_value(np.ascontiguousarray(b, dtype=dtype), borrow=True)


def activation_name(fn):
    """The name of one of network3's activation functions (ValueError for others)."""
    entry = activation_of(fn)
    if entry is not None:
        return entry.name
    raise ValueError("activation_fn must be one of network3's %s to be saved or exported, "
                     "got %r" % (", ".join(ACTIVATIONS), fn))


def describe(net):
    """(metadata, arrays): the network's layers as a JSON-ready dict, and its
    parameters as a list of (w, b) per layer.

    Layer entries: ``{"type": "ConvPoolLayer", "filter_shape": [F, C, kh, kw],
    "image_shape": [m, C, H, W], "poolsize": [ph, pw], "activation_fn": name}``
    with w (F, C, kh, kw) (true-convolution kernels, as the book) and b (F,);
    ``{"type": "FullyConnectedLayer", "n_in", "n_out", "activation_fn",
    "p_dropout"}`` and ``{"type": "SoftmaxLayer", "n_in", "n_out", "p_dropout"}``
    with w (n_in, n_out) and b (n_out,).
    """
    layers, arrays = [], []
    for layer in net.layers:
        if isinstance(layer, ConvPoolLayer):
            entry = {"type": "ConvPoolLayer", "filter_shape": list(layer.filter_shape),
                     "image_shape": list(layer.image_shape), "poolsize": list(layer.poolsize),
                     "activation_fn": activation_name(layer.activation_fn)}
        elif isinstance(layer, SoftmaxLayer):
            entry = {"type": "SoftmaxLayer", "n_in": layer.n_in, "n_out": layer.n_out,
                     "p_dropout": float(layer.p_dropout)}
        elif isinstance(layer, FullyConnectedLayer):
            entry = {"type": "FullyConnectedLayer", "n_in": layer.n_in, "n_out": layer.n_out,
                     "activation_fn": activation_name(layer.activation_fn),
                     "p_dropout": float(layer.p_dropout)}
        else:
            raise TypeError("expected ConvPoolLayer, FullyConnectedLayer or SoftmaxLayer, "
                            "got %s" % type(layer).__name__)
        layers.append(entry)
        arrays.append((np.ascontiguousarray(_ref._value(layer.w), dtype=net.dtype),
                       np.ascontiguousarray(_ref._value(layer.b), dtype=net.dtype)))
    metadata = {"format": FILE_FORMAT, "version": FILE_VERSION,
                "mini_batch_size": int(net.mini_batch_size), "dtype": np.dtype(net.dtype).name,
                "dropout_seed": int(net.dropout_seed), "step": int(net.step),
                "layers": layers}
    return metadata, arrays


FILE_FORMAT = "nndl_fast.network3"
FILE_VERSION = 1

_LAYER_KEYS = {
    "ConvPoolLayer": {"type", "filter_shape", "image_shape", "poolsize", "activation_fn"},
    "FullyConnectedLayer": {"type", "n_in", "n_out", "activation_fn", "p_dropout"},
    "SoftmaxLayer": {"type", "n_in", "n_out", "p_dropout"},
}


_LAYER_CLASSES = {"ConvPoolLayer": ConvPoolLayer, "FullyConnectedLayer": FullyConnectedLayer,
                  "SoftmaxLayer": SoftmaxLayer}


class NetworkFileError(ValueError):
    """A file is not a valid network3 archive."""


def _int(value, what, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise NetworkFileError("%s must be an integer, got %r" % (what, value))
    if value < minimum:
        raise NetworkFileError("%s must be >= %d, got %d" % (what, minimum, value))
    return int(value)


def _ints(value, n, what):
    if not isinstance(value, list) or len(value) != n:
        raise NetworkFileError("%s must be a list of %d integers, got %r" % (what, n, value))
    return tuple(_int(v, "%s[%d]" % (what, i), 1) for i, v in enumerate(value))


def _p_dropout(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0.0 <= value < 1.0:
        raise NetworkFileError("%s must be a number in [0, 1), got %r" % (what, value))
    return float(value)


def _activation(value, what):
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise NetworkFileError("%s must be one of %s, got %r"
                               % (what, ", ".join(ACTIVATIONS), value))
    return ACTIVATIONS[value]


def _parse_layers(entries):
    """[(type name, constructor kwargs, w shape, b shape)] from the metadata's layers."""
    if not isinstance(entries, list) or not entries:
        raise NetworkFileError("metadata 'layers' must be a non-empty list, got %r"
                               % (entries,))
    parsed = []
    for l, entry in enumerate(entries):
        what = "layers[%d]" % l
        kind = entry.get("type") if isinstance(entry, dict) else None
        if kind not in _LAYER_KEYS:
            raise NetworkFileError("%s must be an object with 'type' one of %s, got %r"
                                   % (what, ", ".join(_LAYER_KEYS), entry))
        if set(entry) != _LAYER_KEYS[kind]:
            raise NetworkFileError("%s (%s) must have the keys %s, got %s"
                                   % (what, kind, sorted(_LAYER_KEYS[kind]), sorted(entry)))
        if kind == "ConvPoolLayer":
            filter_shape = _ints(entry["filter_shape"], 4, what + ".filter_shape")
            kwargs = {"filter_shape": filter_shape,
                      "image_shape": _ints(entry["image_shape"], 4, what + ".image_shape"),
                      "poolsize": _ints(entry["poolsize"], 2, what + ".poolsize"),
                      "activation_fn": _activation(entry["activation_fn"],
                                                   what + ".activation_fn")}
            shapes = (filter_shape, (filter_shape[0],))
        else:
            n_in = _int(entry["n_in"], what + ".n_in", 1)
            n_out = _int(entry["n_out"], what + ".n_out", 1)
            kwargs = {"n_in": n_in, "n_out": n_out,
                      "p_dropout": _p_dropout(entry["p_dropout"], what + ".p_dropout")}
            if kind == "FullyConnectedLayer":
                kwargs["activation_fn"] = _activation(entry["activation_fn"],
                                                      what + ".activation_fn")
            shapes = ((n_in, n_out), (n_out,))
        parsed.append((kind, kwargs) + shapes)
    return parsed


def _parse_metadata(text):
    try:
        meta = json.loads(text, parse_constant=lambda name: float("nan"))
    except (ValueError, RecursionError) as exc:
        raise NetworkFileError("metadata is not valid JSON: %s" % exc) from None
    return _check_metadata(meta)


def _check_metadata(meta):
    """The metadata dict (as ``describe`` makes it) checked, with layer kwargs and the
    expected array shapes."""
    expected = {"format", "version", "mini_batch_size", "dtype", "dropout_seed", "step",
                "layers"}
    if not isinstance(meta, dict) or set(meta) != expected:
        raise NetworkFileError("metadata must be an object with the keys %s, got %s"
                               % (sorted(expected), sorted(meta) if isinstance(meta, dict)
                                  else type(meta).__name__))
    if meta["format"] != FILE_FORMAT or meta["version"] != FILE_VERSION:
        raise NetworkFileError("expected format %r version %d, got %r version %r"
                               % (FILE_FORMAT, FILE_VERSION, meta["format"], meta["version"]))
    if meta["dtype"] not in ("float32", "float64"):
        raise NetworkFileError("dtype must be 'float32' or 'float64', got %r" % (meta["dtype"],))
    return {"mini_batch_size": _int(meta["mini_batch_size"], "mini_batch_size", 1),
            "dtype": np.dtype(meta["dtype"]),
            "dropout_seed": _int(meta["dropout_seed"], "dropout_seed", 0),
            "step": _int(meta["step"], "step", 0),
            "layers": _parse_layers(meta["layers"])}


def _checked_array(entries, key, shape):
    value = entries[key]
    if not isinstance(value, np.ndarray):
        raise NetworkFileError("%s must be an array, got %s" % (key, type(value).__name__))
    if value.shape != tuple(shape):
        raise NetworkFileError("%s has shape %s, expected %s (from the metadata)"
                               % (key, value.shape, tuple(shape)))
    if value.dtype not in (np.float32, np.float64):
        raise NetworkFileError("%s has dtype %s, expected float32 or float64"
                               % (key, value.dtype))
    if not np.isfinite(value).all():
        raise NetworkFileError("%s contains NaN or infinity" % key)
    return value


def _checked_arrays(meta, entries):
    """[(w, b)] per layer from ``entries`` (a mapping with layer{l}_w / layer{l}_b)."""
    return [(_checked_array(entries, "layer%d_w" % l, w_shape),
             _checked_array(entries, "layer%d_b" % l, b_shape))
            for l, (_, _, w_shape, b_shape) in enumerate(meta["layers"])]


# Deflate expands at most about 1032-fold: an entry that says it holds more than
# this many bytes per stored byte is not a real one.
_MAX_EXPANSION = 1032

# What reading a damaged zip entry can raise (zipfile's own checks, the
# decompressor, an unsupported method or encryption, a short .npy header).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
               ValueError, OverflowError)


def _read_entry(archive, key, archive_size, check_header):
    """The array ``key`` of the open archive, read without unpickling and only after
    its .npy header has passed ``check_header(shape, dtype)`` and the sizes the zip
    directory declares fit the header and the file: a damaged or hostile file
    cannot make this allocate more than its own size warrants."""
    name = key + ".npy"
    info = archive.zip.getinfo(name)
    if not 0 <= info.header_offset < archive_size:
        raise NetworkFileError("%s: the zip directory puts it at offset %d, outside the file "
                               "of %d bytes" % (key, info.header_offset, archive_size))
    if info.compress_size > archive_size \
            or info.file_size > max(info.compress_size, 1) * _MAX_EXPANSION:
        raise NetworkFileError("%s: the zip directory says %d bytes (%d stored), which a file "
                               "of %d bytes cannot hold" % (key, info.file_size,
                                                            info.compress_size, archive_size))
    with archive.zip.open(name) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise NetworkFileError("%s: .npy format version %d.%d, expected 1.0 or 2.0"
                                   % ((key,) + tuple(version)))
        check_header(shape, dtype)
        n_bytes = math.prod(shape) * dtype.itemsize
        if f.tell() + n_bytes != info.file_size:
            raise NetworkFileError("%s: shape %s of %s needs %d bytes, the entry holds %d"
                                   % (key, shape, dtype, n_bytes, info.file_size - f.tell()))
        data = f.read(n_bytes)
    if len(data) != n_bytes:
        raise NetworkFileError("%s: truncated (%d of %d bytes)" % (key, len(data), n_bytes))
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _check_text_header(shape, dtype):
    if shape != () or dtype.kind != "U":
        raise NetworkFileError("metadata must be a 0-d text array, got shape %s dtype %s"
                               % (shape, dtype))


def _array_header_check(key, expected_shape):
    def check(shape, dtype):
        if shape != tuple(expected_shape):
            raise NetworkFileError("%s has shape %s, expected %s (from the metadata)"
                                   % (key, shape, tuple(expected_shape)))
        if dtype not in (np.float32, np.float64):
            raise NetworkFileError("%s has dtype %s, expected float32 or float64"
                                   % (key, dtype))
    return check


def _read_archive(path):
    """(parsed metadata, [(w, b)]) from the archive at ``path``, all validated."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile, NotImplementedError, zlib.error) as exc:
        raise NetworkFileError("expected an .npz archive written by network3's save, got a "
                               "file NumPy cannot read as one (%s)" % exc) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise NetworkFileError("expected an .npz archive written by network3's save, got a "
                               "single array")
    size = os.path.getsize(path)
    with archive:
        if "metadata" not in archive.files:
            raise NetworkFileError("expected an entry 'metadata' in the archive, got %s"
                                   % sorted(archive.files))
        try:
            text = _read_entry(archive, "metadata", size, _check_text_header)
            meta = _parse_metadata(str(text))
            n = len(meta["layers"])
            expected = {"metadata"} | {"layer%d_%s" % (l, k) for l in range(n) for k in "wb"}
            if set(archive.files) != expected:
                raise NetworkFileError("expected the entries %s for %d layers, got %s"
                                       % (sorted(expected), n, sorted(archive.files)))
            entries = {}
            for l, (_, _, w_shape, b_shape) in enumerate(meta["layers"]):
                for key, shape in (("layer%d_w" % l, w_shape), ("layer%d_b" % l, b_shape)):
                    entries[key] = _read_entry(archive, key, size,
                                               _array_header_check(key, shape))
            arrays = _checked_arrays(meta, entries)
        except NetworkFileError:
            raise
        except _ZIP_ERRORS as exc:
            raise NetworkFileError("a damaged archive entry (%s: %s)"
                                   % (type(exc).__name__, exc)) from None
    return meta, arrays


def _build(meta, arrays, num_threads=None):
    """The Network that checked metadata and arrays describe. The layers'
    constructors draw initial values: the caller's random stream is kept as it
    was (what they draw is replaced)."""
    state = np.random.get_state()
    try:
        layers = [_LAYER_CLASSES[kind](**kwargs) for kind, kwargs, _, _ in meta["layers"]]
        net = Network(layers, meta["mini_batch_size"], dtype=meta["dtype"],
                      dropout_seed=meta["dropout_seed"], num_threads=num_threads)
    except (ValueError, TypeError) as exc:
        raise NetworkFileError("the layers do not fit together: %s" % exc) from None
    finally:
        np.random.set_state(state)
    net.step = meta["step"]
    for layer, (w, b) in zip(net.layers, arrays):
        layer.w.set_value(np.array(w, dtype=net.dtype, order="C"), borrow=True)
        layer.b.set_value(np.array(b, dtype=net.dtype, order="C"), borrow=True)
    return net


def from_description(metadata, arrays, num_threads=None):
    """A ``Network`` from ``describe``'s (metadata, arrays), checked as ``load`` checks
    a file (raises ``NetworkFileError``)."""
    meta = _check_metadata(metadata)
    if not isinstance(arrays, (list, tuple)) or len(arrays) != len(meta["layers"]):
        raise NetworkFileError("expected %d (w, b) pairs, got %s"
                               % (len(meta["layers"]), describe_value(arrays)))
    entries = {}
    for l, pair in enumerate(arrays):
        entries["layer%d_w" % l], entries["layer%d_b" % l] = pair
    return _build(meta, _checked_arrays(meta, entries), num_threads)


def load(filename, num_threads=None):
    """A ``Network`` from a file written by ``Network.save``.

    Reads with ``allow_pickle=False``, checks the metadata, each array's shape
    against the layer geometry, and that every value is finite; raises
    ``NetworkFileError`` (a ValueError) naming the file and what is wrong.
    The global NumPy random state is left as it was.
    """
    path = os.fspath(filename)
    try:
        meta, arrays = _read_archive(path)
        return _build(meta, arrays, num_threads)
    except NetworkFileError as exc:
        raise NetworkFileError("%s: %s" % (path, exc)) from None


def _inputs(data):
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0]
    return data


def vote(predictions, n_classes=None):
    """Majority vote over rows of labels (n_nets, n); ties go to the smallest label."""
    votes = np.asarray(predictions)
    if votes.ndim != 2 or votes.shape[0] == 0:
        raise ValueError("expected predictions of shape (n_nets, n) with n_nets >= 1, got %s"
                         % (votes.shape,))
    if votes.dtype.kind not in "iu":
        raise TypeError("predictions must be integer labels, got dtype %s" % votes.dtype)
    votes = votes.astype(np.int64)
    if votes.size and votes.min() < 0:
        raise ValueError("predictions hold the label %d, expected labels >= 0"
                         % votes.min())
    top = int(votes.max()) + 1 if votes.size else 1
    if n_classes is None:
        k = top
    else:
        k = check_int(n_classes, "n_classes", 1)
        if top > k:
            raise ValueError("predictions hold the label %d, expected labels in 0..%d "
                             "(n_classes=%d)" % (top - 1, k - 1, k))
    return _ref.vote(votes, k)


def _check_ensemble(nets):
    if isinstance(nets, _ref.Network) or not isinstance(nets, (list, tuple)):
        raise TypeError("nets must be a list of network3 Networks, got %s"
                        % describe_value(nets))
    if not nets:
        raise ValueError("nets is empty: expected at least one network")
    for i, net in enumerate(nets):
        if not isinstance(net, _ref.Network):
            raise TypeError("nets[%d] must be a network3 Network, got %s"
                            % (i, describe_value(net)))
        first = nets[0]
        if (net.layers[0].n_in, net.layers[-1].n_out) != (first.layers[0].n_in,
                                                          first.layers[-1].n_out):
            raise ValueError("nets[%d] maps %d inputs to %d classes, nets[0] %d to %d: an "
                             "ensemble's networks must agree"
                             % (i, net.layers[0].n_in, net.layers[-1].n_out,
                                first.layers[0].n_in, first.layers[-1].n_out))
    return nets[0].layers[0].n_in, nets[0].layers[-1].n_out


def ensemble_predict(nets, data):
    """Majority vote of several networks' labels for data (x or an (x, y) pair)."""
    n_in, _ = _check_ensemble(nets)
    return _ref.ensemble_predict(nets, checked_inputs(_inputs(data), n_in))


def ensemble_accuracy(nets, data):
    """Fraction of the (x, y) data the ensemble's vote gets right (all examples)."""
    n_in, n_out = _check_ensemble(nets)
    x, y = checked_data(data, n_in, n_out)
    return float(np.mean(ensemble_predict(nets, x) == y))
