"""network3.py (chapter 6) in plain NumPy: the specification, test oracle and
benchmark baseline of ``nndl_fast.network3``.

The book builds these networks with Theano, which no longer installs. This
module computes the same thing with NumPy, written to be read:

* ``ConvPoolLayer``: a 'valid' *true* convolution (kernels flipped, as Theano's
  ``conv2d``), max-pooling that ignores the border, then ``activation_fn(pooled + b)``.
* ``FullyConnectedLayer``: ``act(dropout(x)·w + b)`` in training and
  ``act((1 - p)·x·w + b)`` at inference (weight scaling, as the book).
* ``SoftmaxLayer``: softmax output, cost = mean negative log-likelihood.
* ``Network.SGD``: plain mini-batch SGD, no shuffling, the remainder of the data
  dropped; cost = last layer's cost + 0.5·lmbda·Σ‖w‖² / num_training_batches.

Gradients are written out by hand (what ``T.grad`` derives). Max-pooling passes a
gradient to *every* input equal to the window's maximum, as Theano's max-pool
gradient does. ``ReLU`` has derivative 1 where its output is > 0.

Dropout masks come from a counter-based generator (SplitMix64, see
``dropout_mask``): the mask of layer ``l`` at training step ``t`` is a pure
function of ``(seed, l, t)``, so runs are reproducible, independent of the
thread count, and the compiled module draws exactly the same masks. The seed is
the book's ``np.random.RandomState(0).randint(999999)`` unless
``Network(..., dropout_seed=s)`` says otherwise; the step counter starts at 0
when the network is built and counts every mini-batch trained.
"""
import gzip
import os

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nndl_fast._validation import check_int, check_memory, check_real, describe
from nndl_fast.reference.activations import (ACTIVATION_TABLE, Activation, ReLU,  # noqa: F401
                                            activation_of, activation_prime, linear,
                                            sigmoid, tanh)

__all__ = ["linear", "ReLU", "sigmoid", "tanh", "SharedArray", "load_data_shared",
           "size", "ConvPoolLayer", "FullyConnectedLayer", "SoftmaxLayer", "Network",
           "conv2d_valid", "conv2d_grad_filters", "conv2d_grad_input", "max_pool",
           "max_pool_grad", "dropout_mask", "splitmix64"]


# ---------------------------------------------------- Theano shared variables
class SharedArray(object):
    """A NumPy-backed stand-in for a Theano shared variable.

    ``get_value(borrow=True)`` returns the array itself (the networks update it in
    place), ``get_value()`` a copy; ``eval()`` returns the array; ``set_value``
    replaces the contents.
    """

    def __init__(self, value, name=None, borrow=True):
        self._value = np.asarray(value) if borrow else np.array(value)
        self.name = name

    def get_value(self, borrow=False):
        return self._value if borrow else self._value.copy()

    def set_value(self, value, borrow=False):
        value = np.asarray(value)
        if value.shape != self._value.shape:
            raise ValueError("expected shape %s, got %s" % (self._value.shape, value.shape))
        self._value = value if borrow else np.array(value)

    def eval(self):
        return self._value

    @property
    def shape(self):
        return self._value.shape

    @property
    def dtype(self):
        return self._value.dtype

    def __array__(self, dtype=None, copy=None):
        return self._value if dtype is None else self._value.astype(dtype)

    def __len__(self):
        return len(self._value)

    def __repr__(self):
        return "SharedArray(shape=%s, dtype=%s)" % (self._value.shape, self._value.dtype)


def _value(v):
    return v.get_value(borrow=True) if isinstance(v, SharedArray) else np.asarray(v)


def load_data_shared(filename=None):
    """MNIST as three ``(x, y)`` pairs of shared-variable stand-ins.

    ``filename=None`` reads the bundled MNIST (``mnist_loader.load_data()``); the
    book's ``mnist.pkl.gz`` or an expanded-data pickle (``mnist_expanded.pkl.gz``)
    also work. ``x`` is float32 (n, 784), ``y`` int32 (n,) as the book's
    ``T.cast(shared_y, "int32")``.
    """
    from nndl_fast import mnist_loader
    if filename is not None and not isinstance(filename, (str, bytes, os.PathLike)):
        raise TypeError("filename must be a path (str or os.PathLike) or None, got %s"
                        % describe(filename))
    if filename is not None and not os.path.exists(filename):
        raise FileNotFoundError("no data file at %r" % (filename,))
    data = mnist_loader.load_data(filename)

    def shared(d):
        return (SharedArray(np.asarray(d[0], dtype=np.float32), name="x"),
                SharedArray(np.asarray(d[1]).astype(np.int32), name="y"))
    return [shared(d) for d in data]


def size(data):
    """Number of examples in a ``(x, y)`` data pair."""
    return _value(data[0]).shape[0]


# ------------------------------------------------------------ conv and pool
def conv2d_valid(x, w):
    """'valid' true convolution. x (m, C, H, W), w (F, C, kh, kw) -> (m, F, H-kh+1, W-kw+1)."""
    kh, kw = w.shape[2:]
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))  # (m, C, hc, wc, kh, kw)
    flipped = w[:, :, ::-1, ::-1]
    out = np.tensordot(windows, flipped, axes=([1, 4, 5], [1, 2, 3]))  # (m, hc, wc, F)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def conv2d_grad_filters(x, dz, filter_shape):
    """dCost/dw for z = conv2d_valid(x, w), given dz = dCost/dz."""
    kh, kw = filter_shape[2:]
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))
    g_flipped = np.tensordot(dz, windows, axes=([0, 2, 3], [0, 2, 3]))  # (F, C, kh, kw)
    return np.ascontiguousarray(g_flipped[:, :, ::-1, ::-1])


def conv2d_grad_input(dz, w, image_shape):
    """dCost/dx for z = conv2d_valid(x, w): each output spreads back over its window."""
    kh, kw = w.shape[2:]
    hc, wc = dz.shape[2:]
    dx = np.zeros(image_shape, dtype=dz.dtype)
    flipped = w[:, :, ::-1, ::-1]
    for u in range(kh):
        for v in range(kw):
            dx[:, :, u:u + hc, v:v + wc] += np.einsum("mfyx,fc->mcyx", dz, flipped[:, :, u, v])
    return dx


def _pool_view(z, poolsize):
    m, f, hc, wc = z.shape
    ph, pw = poolsize
    ho, wo = hc // ph, wc // pw
    return z[:, :, :ho * ph, :wo * pw].reshape(m, f, ho, ph, wo, pw)


def max_pool(z, poolsize):
    """Max over non-overlapping ph x pw windows, ignoring the border."""
    return _pool_view(z, poolsize).max(axis=(3, 5))


def max_pool_grad(z, pooled, dpooled, poolsize):
    """Gradient through max_pool: every input equal to its window's max gets it (Theano)."""
    view = _pool_view(z, poolsize)
    hit = view == pooled[:, :, :, None, :, None]
    dz = np.zeros_like(z)
    m, f, ho, ph, wo, pw = view.shape
    dz[:, :, :ho * ph, :wo * pw] = (hit * dpooled[:, :, :, None, :, None]).reshape(
        m, f, ho * ph, wo * pw)
    return dz


# ------------------------------------------------------------------ dropout
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x):
    """SplitMix64's finaliser on a uint64 array (wrapping arithmetic)."""
    z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def dropout_mask(seed, layer_index, step, shape, p_dropout, dtype=np.float64):
    """Keep-mask (1 = keep, probability 1 - p) of layer ``layer_index`` at step ``step``.

    Element ``e`` (row-major index) keeps when ``u(e) < 1 - p`` with
    ``u = (h >> 11) / 2**53`` and ``h = mix(mix(mix(seed + layer) ^ step) ^ e)``.
    """
    with np.errstate(over="ignore"):
        h = splitmix64(np.uint64(seed) + np.uint64(layer_index))
        h = splitmix64(h ^ np.uint64(step))
        e = np.arange(int(np.prod(shape)), dtype=np.uint64)
        h = splitmix64(h ^ e)
    u = (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return (u < 1.0 - p_dropout).astype(dtype).reshape(shape)


def book_dropout_seed():
    """The seed of the book's ``shared_randomstreams.RandomStreams``."""
    return int(np.random.RandomState(0).randint(999999))


# ------------------------------------------------------------------- layers
# The compiled kernels index with C ints: every per-example count and each
# layer's parameter count must fit one.
INT_MAX = 2 ** 31 - 1


def _positive_ints(value, n, name, meaning):
    """``value`` as a tuple of ``n`` ints >= 1 (``meaning`` names the entries)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError("%s must be a tuple of %d integers (%s), got %s"
                        % (name, n, meaning, describe(value)))
    if len(value) != n:
        raise ValueError("%s must have %d entries (%s), got %r"
                         % (name, n, meaning, tuple(value)))
    return tuple(check_int(v, "%s[%d]" % (name, i), 1) for i, v in enumerate(value))


def _check_fits_int(counts, what):
    for name, count in counts:
        if count > INT_MAX:
            raise ValueError("%s is too large: %s = %d, at most %d are supported"
                             % (what, name, count, INT_MAX))


def _check_activation(activation_fn):
    if not callable(activation_fn):
        raise TypeError("activation_fn must be a function such as network3's sigmoid, tanh, "
                        "ReLU or linear, got %s" % describe(activation_fn))
    return activation_fn


def _check_dense_args(kind, n_in, n_out, p_dropout):
    n_in = check_int(n_in, "n_in", 1)
    n_out = check_int(n_out, "n_out", 1)
    p_dropout = check_real(p_dropout, "p_dropout")
    if not 0.0 <= p_dropout < 1.0:
        raise ValueError("p_dropout must be in [0, 1), got %r" % (p_dropout,))
    what = "%s(n_in=%d, n_out=%d)" % (kind, n_in, n_out)
    _check_fits_int([("n_in * n_out", n_in * n_out)], what)
    check_memory(n_in * n_out + n_out, what)
    return n_in, n_out, p_dropout


class ConvPoolLayer(object):
    """Convolution ('valid', flipped kernels) + max-pooling + activation."""

    def __init__(self, filter_shape, image_shape, poolsize=(2, 2), activation_fn=sigmoid):
        # Everything is checked before the parameters are drawn.
        self.filter_shape = _positive_ints(filter_shape, 4, "filter_shape",
                                           "filters, channels, rows, columns")
        self.image_shape = _positive_ints(image_shape, 4, "image_shape",
                                          "mini_batch_size, channels, rows, columns")
        self.poolsize = _positive_ints(poolsize, 2, "poolsize", "rows, columns")
        self.activation_fn = _check_activation(activation_fn)
        n_filt, c, kh, kw = self.filter_shape
        h, w = self.image_shape[2:]
        if c != self.image_shape[1]:
            raise ValueError("filter_shape %s has %d input channels, image_shape %s has %d: "
                             "they must be equal" % (self.filter_shape, c, self.image_shape,
                                                     self.image_shape[1]))
        if kh > h or kw > w:
            raise ValueError("filters of %dx%d (filter_shape %s) do not fit images of %dx%d "
                             "(image_shape %s)" % (kh, kw, self.filter_shape, h, w,
                                                   self.image_shape))
        hc, wc = h - kh + 1, w - kw + 1
        if self.poolsize[0] > hc or self.poolsize[1] > wc:
            raise ValueError("poolsize %s does not fit the %dx%d convolution output (images "
                             "of %dx%d, filters of %dx%d)"
                             % (self.poolsize, hc, wc, h, w, kh, kw))
        what = "ConvPoolLayer(filter_shape=%s, image_shape=%s)" % (self.filter_shape,
                                                                    self.image_shape)
        _check_fits_int([("channels * rows * columns", c * h * w),
                         ("the filters' weights", n_filt * c * kh * kw),
                         ("the convolution outputs", n_filt * hc * wc),
                         ("the unrolled image (channels * filter area * positions)",
                          c * kh * kw * hc * wc)], what)
        check_memory(n_filt * c * kh * kw + n_filt, what)
        self.conv_shape = (self.filter_shape[0], hc, wc)
        self.output_shape = (self.filter_shape[0], hc // self.poolsize[0],
                             wc // self.poolsize[1])
        n_out = (self.filter_shape[0] * np.prod(self.filter_shape[2:]) /
                 np.prod(self.poolsize))
        self.w = SharedArray(np.random.normal(loc=0, scale=np.sqrt(1.0 / n_out),
                                              size=self.filter_shape), name="w")
        self.b = SharedArray(np.random.normal(loc=0, scale=1.0,
                                              size=(self.filter_shape[0],)), name="b")
        self.params = [self.w, self.b]

    p_dropout = 0.0

    @property
    def n_in(self):
        return int(np.prod(self.image_shape[1:]))

    @property
    def n_out(self):
        return int(np.prod(self.output_shape))

    def forward(self, x, train=False, mask=None):
        x = x.reshape((x.shape[0],) + self.image_shape[1:])
        w, b = _value(self.w), _value(self.b)
        z = conv2d_valid(x, w)
        pooled = max_pool(z, self.poolsize)
        a = self.activation_fn(pooled + b[None, :, None, None])
        cache = (x, z, pooled, a)
        return a.reshape(x.shape[0], -1), cache

    def backward(self, cache, delta_out, need_input_grad):
        """Gradients (gw, gb) and dCost/dinput from dCost/doutput (m, n_out)."""
        x, z, pooled, a = cache
        w = _value(self.w)
        d_pooled = delta_out.reshape(a.shape) * activation_prime(self.activation_fn, a)
        gb = d_pooled.sum(axis=(0, 2, 3))
        dz = max_pool_grad(z, pooled, d_pooled, self.poolsize)
        gw = conv2d_grad_filters(x, dz, self.filter_shape)
        dx = conv2d_grad_input(dz, w, x.shape).reshape(x.shape[0], -1) \
            if need_input_grad else None
        return gw, gb, dx


class FullyConnectedLayer(object):
    def __init__(self, n_in, n_out, activation_fn=sigmoid, p_dropout=0.0):
        self.n_in, self.n_out, self.p_dropout = _check_dense_args(
            "FullyConnectedLayer", n_in, n_out, p_dropout)
        self.activation_fn = _check_activation(activation_fn)
        self.w = SharedArray(np.random.normal(loc=0.0, scale=np.sqrt(1.0 / self.n_out),
                                              size=(self.n_in, self.n_out)), name="w")
        self.b = SharedArray(np.random.normal(loc=0.0, scale=1.0, size=(self.n_out,)),
                             name="b")
        self.params = [self.w, self.b]

    def _z(self, x, train, mask):
        w, b = _value(self.w), _value(self.b)
        if train:
            xd = x * mask if mask is not None else x
            return xd, xd @ w + b
        return x, (1 - self.p_dropout) * (x @ w) + b

    def forward(self, x, train=False, mask=None):
        x = x.reshape(x.shape[0], self.n_in)
        xd, z = self._z(x, train, mask)
        a = self.activation_fn(z)
        return a, (xd, mask, a)

    def backward(self, cache, delta_out, need_input_grad):
        xd, mask, a = cache
        dz = delta_out * activation_prime(self.activation_fn, a)
        return self._grads(xd, mask, dz, need_input_grad)

    def _grads(self, xd, mask, dz, need_input_grad):
        w = _value(self.w)
        gw = xd.T @ dz
        gb = dz.sum(axis=0)
        dx = None
        if need_input_grad:
            dx = dz @ w.T
            if mask is not None:
                dx = dx * mask
        return gw, gb, dx


class SoftmaxLayer(FullyConnectedLayer):
    def __init__(self, n_in, n_out, p_dropout=0.0):
        self.n_in, self.n_out, self.p_dropout = _check_dense_args(
            "SoftmaxLayer", n_in, n_out, p_dropout)
        self.activation_fn = None
        self.w = SharedArray(np.zeros((self.n_in, self.n_out)), name="w")
        self.b = SharedArray(np.zeros((self.n_out,)), name="b")
        self.params = [self.w, self.b]

    def forward(self, x, train=False, mask=None):
        x = x.reshape(x.shape[0], self.n_in)
        xd, z = self._z(x, train, mask)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        return p, (xd, mask, p)

    def accuracy(self, y):
        """Fraction of y that the last ``Network.predict`` got right (the book's accuracy)."""
        if getattr(self, "y_out", None) is None:
            raise ValueError("no predictions yet: call the network's predict(x) first")
        y = np.asarray(_value(y))
        if y.shape != self.y_out.shape:
            raise ValueError("y has shape %s, expected %s: one label per example of the "
                             "last predict" % (y.shape, self.y_out.shape))
        return float(np.mean(y == self.y_out))

    def cost(self, p, y):
        """Mean negative log-likelihood of the labels y."""
        return -np.mean(np.log(p[np.arange(len(y)), y]))

    def backward_from_labels(self, cache, y, need_input_grad):
        xd, mask, p = cache
        dz = p.copy()
        dz[np.arange(len(y)), y] -= 1
        dz /= len(y)
        return self._grads(xd, mask, dz, need_input_grad)


# ------------------------------------------------------------------ network
class Network(object):
    """The book's Network: a list of layers trained by mini-batch SGD.

    ``dtype`` (float32 by default, as the book ran chapter 6 with
    floatX=float32) is the compute dtype; the layers' parameters are converted
    to it. ``dropout_seed`` seeds the dropout masks (see ``dropout_mask``).
    """

    def __init__(self, layers, mini_batch_size, dtype=np.float32, dropout_seed=None):
        self.layers = list(layers)
        self.mini_batch_size = int(mini_batch_size)
        if not self.layers:
            raise ValueError("a Network needs at least one layer")
        if not isinstance(self.layers[-1], SoftmaxLayer):
            raise ValueError("the last layer must be a SoftmaxLayer (it defines the cost)")
        for prev, layer in zip(self.layers, self.layers[1:]):
            if prev.n_out != layer.n_in:
                raise ValueError("layer %s gives %d outputs but %s expects %d inputs"
                                 % (type(prev).__name__, prev.n_out, type(layer).__name__,
                                    layer.n_in))
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError("dtype must be float32 or float64, got %s" % self.dtype)
        for layer in self.layers:
            for p in layer.params:
                p.set_value(np.ascontiguousarray(p.get_value(borrow=True), dtype=self.dtype),
                            borrow=True)
        self.params = [p for layer in self.layers for p in layer.params]
        self.dropout_seed = book_dropout_seed() if dropout_seed is None else int(dropout_seed)
        self.step = 0

    # --- inference ------------------------------------------------------
    def feedforward(self, x):
        """Output of the last layer (class probabilities) for inputs x (n, n_in)."""
        return self._feedforward(x)

    def _feedforward(self, x):
        a = np.asarray(x, dtype=self.dtype).reshape(len(x), -1)
        for layer in self.layers:
            a, _ = layer.forward(a, train=False)
        return a

    def predict_proba(self, x, batch=1000):
        x = _value(x)
        return np.concatenate([self._feedforward(x[k:k + batch])
                               for k in range(0, len(x), batch)]) if len(x) else \
            np.zeros((0, self.layers[-1].n_out), self.dtype)

    def predict(self, x):
        """Predicted labels (n,) for inputs x (n, n_in) — the book's y_out.

        Also leaves the probabilities and labels in the last layer's ``output``
        and ``y_out`` (the book's attributes), so ``layers[-1].accuracy(y)`` works.
        """
        probs = self.predict_proba(x)
        labels = np.argmax(probs, axis=1)
        last = self.layers[-1]
        last.output, last.y_out = probs, labels
        return labels

    def accuracy(self, data, mini_batch_size=None):
        """The book's accuracy: mean over whole mini-batches of each batch's accuracy."""
        m = mini_batch_size or self.mini_batch_size
        return self._accuracy(_value(data[0]), _value(data[1]), m)

    def _accuracy(self, x, y, m):
        """``accuracy`` of the arrays x, y in mini-batches of m (what SGD calls)."""
        n_batches = len(x) // m
        if n_batches == 0:
            return 0.0
        pred = self._predict_labels(x[:n_batches * m])
        return float(np.mean(np.mean((pred == y[:n_batches * m]).reshape(n_batches, m),
                                     axis=1)))

    def _predict_labels(self, x):
        return self.predict(x)

    # --- training -------------------------------------------------------
    def cost_and_gradients(self, x, y, lmbda=0.0, num_training_batches=1):
        """(cost, [(gw, gb) per layer]) of one mini-batch; dropout masks of self.step."""
        x = np.asarray(x, dtype=self.dtype).reshape(len(x), -1)
        caches = []
        a = x
        for l, layer in enumerate(self.layers):
            mask = None
            if layer.p_dropout > 0:
                mask = dropout_mask(self.dropout_seed, l, self.step, a.shape,
                                    layer.p_dropout, self.dtype)
            a, cache = layer.forward(a, train=True, mask=mask)
            caches.append(cache)
        reg = lmbda / num_training_batches
        cost = self.layers[-1].cost(a, y) + 0.5 * reg * sum(
            float(np.sum(_value(layer.w).astype(np.float64) ** 2)) for layer in self.layers)
        grads = [None] * len(self.layers)
        gw, gb, delta = self.layers[-1].backward_from_labels(caches[-1], y,
                                                             len(self.layers) > 1)
        grads[-1] = (gw, gb)
        for l in range(len(self.layers) - 2, -1, -1):
            gw, gb, delta = self.layers[l].backward(caches[l], delta, l > 0)
            grads[l] = (gw, gb)
        if reg:
            grads = [(gw + reg * _value(layer.w), gb)
                     for (gw, gb), layer in zip(grads, self.layers)]
        return cost, grads

    def train_mini_batch(self, x, y, eta, lmbda=0.0, num_training_batches=1):
        """One SGD step (all gradients first, then all updates, as Theano)."""
        cost, grads = self.cost_and_gradients(x, y, lmbda, num_training_batches)
        for layer, (gw, gb) in zip(self.layers, grads):
            w, b = _value(layer.w), _value(layer.b)
            w -= (eta * gw).astype(self.dtype)
            b -= (eta * gb).astype(self.dtype)
        self.step += 1
        return cost

    def _train_batches(self, x, y, first, count, eta, lmbda, num_training_batches):
        m = self.mini_batch_size
        for k in range(first, first + count):
            self.train_mini_batch(x[k * m:(k + 1) * m], y[k * m:(k + 1) * m], eta, lmbda,
                                  num_training_batches)

    def SGD(self, training_data, epochs, mini_batch_size, eta,
            validation_data, test_data, lmbda=0.0):
        """Train with mini-batch SGD, printing the book's progress lines."""
        if int(mini_batch_size) != self.mini_batch_size:
            raise ValueError("SGD's mini_batch_size %d differs from the network's %d"
                             % (mini_batch_size, self.mini_batch_size))
        m = self.mini_batch_size
        training_x = np.ascontiguousarray(_value(training_data[0]), dtype=self.dtype)
        training_y = np.ascontiguousarray(_value(training_data[1]), dtype=np.int64)
        num_training_batches = size(training_data) // m
        num_validation_batches = size(validation_data) // m if validation_data else 0
        if num_training_batches == 0:
            raise ValueError("fewer training examples (%d) than one mini-batch (%d)"
                             % (size(training_data), m))
        best_validation_accuracy = 0.0
        best_iteration = 0
        test_accuracy = 0.0
        for epoch in range(epochs):
            k = 0
            while k < num_training_batches:
                iteration = num_training_batches * epoch + k
                if iteration % 1000 == 0:
                    print("Training mini-batch number {0}".format(iteration))
                # Train up to the next multiple of 1000 iterations or the epoch's end.
                count = min(num_training_batches - k, 1000 - iteration % 1000)
                self._train_batches(training_x, training_y, k, count, eta, lmbda,
                                    num_training_batches)
                k += count
            iteration = num_training_batches * (epoch + 1) - 1
            if num_validation_batches:
                validation_accuracy = self._accuracy(_value(validation_data[0]),
                                                     _value(validation_data[1]), m)
                print("Epoch {0}: validation accuracy {1:.2%}".format(
                    epoch, validation_accuracy))
                if validation_accuracy >= best_validation_accuracy:
                    print("This is the best validation accuracy to date.")
                    best_validation_accuracy = validation_accuracy
                    best_iteration = iteration
                    if test_data:
                        test_accuracy = self._accuracy(_value(test_data[0]),
                                                       _value(test_data[1]), m)
                        print('The corresponding test accuracy is {0:.2%}'.format(
                            test_accuracy))
        print("Finished training network.")
        print("Best validation accuracy of {0:.2%} obtained at iteration {1}".format(
            best_validation_accuracy, best_iteration))
        print("Corresponding test accuracy of {0:.2%}".format(test_accuracy))
        self.best_validation_accuracy = best_validation_accuracy
        self.best_iteration = best_iteration
        self.test_accuracy = test_accuracy
        return best_validation_accuracy


def vote(votes, n_classes):
    """Majority vote over the rows of labels ``votes`` (n_nets, n) in 0..n_classes-1;
    ties go to the smallest label."""
    counts = np.zeros((n_classes, votes.shape[1]), dtype=np.int64)
    for v in votes:
        counts[v, np.arange(votes.shape[1])] += 1
    return np.argmax(counts, axis=0)


def ensemble_predict(nets, x):
    """Majority vote of the nets' predicted labels (ties go to the smallest label)."""
    x = _value(x)
    votes = np.stack([np.asarray(net.predict(x)) for net in nets])  # (n_nets, n)
    return vote(votes, max(int(net.layers[-1].n_out) for net in nets))
