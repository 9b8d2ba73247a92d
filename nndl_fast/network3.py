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
are run by the NumPy reference (slow, but correct) if their derivative is
known; otherwise ``ValueError``. The pure-Python mode (or a build without the
extension) runs the reference too.

Threads. Each network trains with one OpenMP team; networks trained side by
side in Python threads (an ensemble) should share the cores:
``Network(..., num_threads=cores // n_networks)``. Results are the same for
every thread count and with or without other threads training.

Speed (the book's first conv net, mini-batch 10, float32, one 50,000-image
epoch, ``bench/bench_network3.py``): about 1.2 s on 2 threads of a 16-core
Xeon (2.3 s on 1), against about 34 s for the NumPy reference and 7.7 s for
PyTorch on the CPU in the same run.
"""
import json
import numbers
import os
import threading
import zipfile

import numpy as np

from . import _config
from ._random import make_generators
from .export import ExportMixin
from ._files import atomic_write
from ._validation import describe as describe_value
from .reference import network3 as _ref
from .reference.network3 import (ConvPoolLayer, FullyConnectedLayer, ReLU, SharedArray,
                                  SoftmaxLayer, dropout_mask, linear, load_data_shared,
                                  sigmoid, size, tanh)

__all__ = ["linear", "ReLU", "sigmoid", "tanh", "load_data_shared", "size", "SharedArray",
           "ConvPoolLayer", "FullyConnectedLayer", "SoftmaxLayer", "Network",
           "ensemble_predict", "ensemble_accuracy", "vote", "dropout_mask",
           "single_thread_blas", "load", "NetworkFileError", "ACTIVATIONS"]

_ACT_CODES = {id(linear): 0, id(sigmoid): 1, id(tanh): 2, id(ReLU): 3}

#: The activation functions a saved or exported network may use, by name.
ACTIVATIONS = {"linear": linear, "sigmoid": sigmoid, "tanh": tanh, "ReLU": ReLU}

# threadpoolctl's BLAS limit is process-wide: networks training in several
# Python threads share one limit, held while any of them is inside a kernel.
_blas_lock = threading.Lock()
_blas_users = 0
_blas_ctx = None


class _SingleThreadBlas(object):
    """BLAS held to one thread while our kernels run (they parallelise themselves,
    and a single-threaded team must not let OpenBLAS spawn threads either).

    Re-entrant and shared by all Python threads: the first entry sets the limit
    (which costs about a millisecond), nested or concurrent entries only count.
    """

    def __enter__(self):
        global _blas_users, _blas_ctx
        with _blas_lock:
            if _blas_users == 0:
                from ._compiled import blas_single_thread
                ctx = blas_single_thread()
                ctx.__enter__()
                _blas_ctx = ctx
            _blas_users += 1
        return self

    def __exit__(self, *exc):
        global _blas_users, _blas_ctx
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                ctx, _blas_ctx = _blas_ctx, None
                ctx.__exit__(None, None, None)
        return False


def single_thread_blas():
    """Context manager: BLAS limited to one thread for a whole block of calls
    (``net.predict`` in a loop, say); the networks' methods take it anyway."""
    return _SingleThreadBlas()


_convnet_module = None


def _convnet():
    """The compiled module, or None in the pure-Python mode or when it is missing
    (then the NumPy reference computes everything, with the same results)."""
    global _convnet_module
    use_compiled = getattr(_config, "use_compiled", None)
    if use_compiled is not None and not use_compiled():
        return None
    if _convnet_module is None:
        try:
            from . import _convnet as mod
        except ImportError as exc:  # an incomplete build
            import warnings
            warnings.warn("nndl_fast._convnet is not available (%s): network3 runs the "
                          "pure-NumPy reference" % exc, RuntimeWarning, stacklevel=3)
            _convnet_module = False
        else:
            _convnet_module = mod
    return _convnet_module or None


class Network(ExportMixin, _ref.Network):
    """The book's Network(layers, mini_batch_size), trained by compiled kernels."""

    def __init__(self, layers, mini_batch_size, dtype=np.float32, dropout_seed=None,
                 num_threads=None, seed=None, rng=None):
        generators = make_generators(seed, rng)
        super(Network, self).__init__(layers, mini_batch_size, dtype=dtype,
                                      dropout_seed=dropout_seed)
        self.num_threads = num_threads
        for layer in self.layers:
            if not isinstance(layer, (ConvPoolLayer, FullyConnectedLayer)):
                raise TypeError("layers must be ConvPoolLayer, FullyConnectedLayer or "
                                "SoftmaxLayer, got %r" % (layer,))
        seen_dense = False
        for layer in self.layers:
            if isinstance(layer, ConvPoolLayer):
                if seen_dense:
                    raise ValueError("a ConvPoolLayer must not follow a fully connected layer")
            else:
                seen_dense = True
        for prev, layer in zip(self.layers, self.layers[1:]):
            if isinstance(prev, ConvPoolLayer) and isinstance(layer, ConvPoolLayer) \
                    and tuple(layer.image_shape[1:]) != tuple(prev.output_shape):
                raise ValueError("ConvPoolLayer image_shape %s does not match the previous "
                                 "layer's output %s" % (layer.image_shape[1:],
                                                        prev.output_shape))
        if generators.own:
            for layer in self.layers:
                _draw_initial_values(layer, generators, self.dtype)

    def _threads(self):
        return _config.resolve_num_threads(self.num_threads) if self.num_threads is not None \
            else _config.shared_num_threads()

    # --- the layer description the compiled kernels read -----------------
    def _spec(self):
        """Layer tuples for _convnet, or None when the reference must compute (an
        activation without a kernel, the pure-Python mode)."""
        if _convnet() is None:
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
            if isinstance(layer, SoftmaxLayer):
                act = 0
                kind = 2
            else:
                act = _ACT_CODES.get(id(layer.activation_fn))
                if act is None:
                    return None
                kind = 0 if isinstance(layer, ConvPoolLayer) else 1
            if kind == 0:
                f, c, kh, kw = layer.filter_shape
                _, _, h, wd = layer.image_shape
                ph, pw = layer.poolsize
                spec.append((0, act, c, h, wd, f, kh, kw, ph, pw, layer.n_in, layer.n_out,
                             0.0, w, b))
            else:
                spec.append((kind, act, 0, 0, 0, 0, 0, 0, 0, 0, layer.n_in, layer.n_out,
                             float(layer.p_dropout), w, b))
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
        with _SingleThreadBlas():
            _convnet().train(spec, x, y, first, count, m, float(eta),
                             float(lmbda) / num_training_batches, self.step,
                             self.dropout_seed & 0xFFFFFFFFFFFFFFFF, nt)
        self.step += count

    def train_mini_batch(self, x, y, eta, lmbda=0.0, num_training_batches=1):
        """One SGD step on the examples x (m, n_in) with labels y (m,)."""
        x = np.ascontiguousarray(np.asarray(x).reshape(len(x), -1), dtype=self.dtype)
        y = np.ascontiguousarray(y, dtype=np.int64)
        if len(x) != self.mini_batch_size:
            raise ValueError("expected a mini-batch of %d examples, got %d"
                             % (self.mini_batch_size, len(x)))
        self._train_batches(x, y, 0, 1, eta, lmbda, num_training_batches)

    def predict_proba(self, x):
        """Class probabilities (n, n_classes) for inputs x (n, n_in) (array or shared)."""
        spec = self._spec()
        if spec is None:
            return super(Network, self).predict_proba(x)
        x = _ref._value(x)
        x = np.ascontiguousarray(x.reshape(len(x), -1), dtype=self.dtype)
        nt = self._threads()
        with _SingleThreadBlas():
            return _convnet().predict(spec, x, nt)

    def feedforward(self, x):
        """Outputs of the last layer for inputs x (n, n_in)."""
        if self._spec() is None:
            return super(Network, self).feedforward(x)
        return self.predict_proba(x)

    def SGD(self, training_data, epochs, mini_batch_size, eta,
            validation_data, test_data, lmbda=0.0):
        """Train by mini-batch SGD, printing the book's lines (see the module docstring)."""
        with _SingleThreadBlas(), _config.training_run():
            return super(Network, self).SGD(training_data, epochs, mini_batch_size, eta,
                                            validation_data, test_data, lmbda=lmbda)


    # --- files -------------------------------------------------------------
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
    for name, known in ACTIVATIONS.items():
        if fn is known:
            return name
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


def _read_archive(path):
    """(parsed metadata, [(w, b)]) from the archive at ``path``, all validated."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise NetworkFileError("expected an .npz archive written by network3's save, got a "
                               "file NumPy cannot read as one (%s)" % exc) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise NetworkFileError("expected an .npz archive written by network3's save, got a "
                               "single array")
    with archive:
        if "metadata" not in archive.files:
            raise NetworkFileError("expected an entry 'metadata' in the archive, got %s"
                                   % sorted(archive.files))
        try:
            text = archive["metadata"]
        except ValueError as exc:  # an object array, which would need unpickling
            raise NetworkFileError("metadata must be a text array: %s" % exc) from None
        if text.shape != () or text.dtype.kind != "U":
            raise NetworkFileError("metadata must be a 0-d text array, got shape %s dtype %s"
                                   % (text.shape, text.dtype))
        meta = _parse_metadata(str(text))
        n = len(meta["layers"])
        expected = {"metadata"} | {"layer%d_%s" % (l, k) for l in range(n) for k in "wb"}
        if set(archive.files) != expected:
            raise NetworkFileError("expected the entries %s for %d layers, got %s"
                                   % (sorted(expected), n, sorted(archive.files)))
        try:
            arrays = _checked_arrays(meta, archive)
        except ValueError as exc:
            if isinstance(exc, NetworkFileError):
                raise
            raise NetworkFileError("an array entry cannot be read without unpickling (%s)"
                                   % exc) from None
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
    votes = np.asarray(predictions, dtype=np.int64)
    if votes.ndim != 2:
        raise ValueError("expected predictions of shape (n_nets, n), got %s" % (votes.shape,))
    k = int(votes.max()) + 1 if n_classes is None else int(n_classes)
    counts = np.zeros((k, votes.shape[1]), dtype=np.int64)
    cols = np.arange(votes.shape[1])
    for v in votes:
        counts[v, cols] += 1
    return np.argmax(counts, axis=0)


def ensemble_predict(nets, data):
    """Majority vote of several networks' labels for data (x or an (x, y) pair)."""
    x = _inputs(data)
    return vote([net.predict(x) for net in nets], n_classes=nets[0].layers[-1].n_out)


def ensemble_accuracy(nets, data):
    """Fraction of the (x, y) data the ensemble's vote gets right (all examples)."""
    y = _ref._value(data[1])
    return float(np.mean(ensemble_predict(nets, data) == y))
