"""scikit-learn estimators for the book's networks (needs ``pip install nndl_fast[sklearn]``).

* :class:`NNDLClassifier`: the networks of chapters 1 and 3
  (``network2.Network``: sigmoid or other hidden layers, quadratic,
  cross-entropy or log-likelihood cost, L2/L1 regularization, momentum, early
  stopping).
* :class:`ConvNetClassifier`: chapter 6's convolutional networks
  (``network3.Network``: conv-pool layers, fully connected layers with dropout,
  a softmax output).

Both follow the estimator API (``fit``, ``predict``, ``predict_proba``,
``score``, ``partial_fit``, ``get_params``/``set_params``), so ``GridSearchCV``,
``cross_val_score`` and ``Pipeline`` work on them::

    from sklearn.model_selection import GridSearchCV
    from nndl_fast.sklearn import NNDLClassifier
    search = GridSearchCV(NNDLClassifier(epochs=10, random_state=0),
                          {"eta": [0.1, 0.5, 2.5], "lmbda": [0.0, 1.0, 5.0]}, n_jobs=3)
    search.fit(X, y)            # X: (n_samples, 784) pixels in [0, 1], y: digits

Every fit owns its random generators (``random_state``: an int gives the
numbers of the book's code after ``np.random.seed(s); random.seed(s)``), so
where a fit runs (a thread, a process, a Dask worker) does not change what it
computes. Fits that run at once in Python threads share the cores: with
``num_threads=None`` each takes ``cores // (fits running)`` threads. Inputs are
used as given (the book's networks expect features in about [0, 1]: put a
``MinMaxScaler`` in front for other data).
"""
import numbers

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, check_random_state
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("nndl_fast.sklearn needs scikit-learn: pip install 'nndl_fast[sklearn]' "
                      "(or pip install scikit-learn)") from exc

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

from . import _training

__all__ = ["NNDLClassifier", "ConvNetClassifier"]

_COSTS = ("quadratic", "cross-entropy", "log-likelihood")
_ACTIVATIONS = ("sigmoid", "tanh", "ReLU", "linear")

def _network_generators(random_state):
    """``Network`` keywords for a ``random_state``: an int is the network's seed
    (the book's numbers after seeding both global generators with it); None or a
    RandomState instance is the generator the network draws from."""
    if random_state is None or isinstance(random_state, np.random.RandomState):
        return {"rng": check_random_state(random_state)}
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return {"seed": int(random_state)}
    raise ValueError("random_state must be None, an int or a numpy.random.RandomState, "
                     "got %r" % (random_state,))


def _check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError("%s must be one of %s, got %r" % (name, ", ".join(map(repr, choices)),
                                                          value))
    return value


def _check_dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError("dtype must be float32 or float64, got %s" % dt)
    return dt


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError("%s must be an int >= %d, got %r" % (name, minimum, value))
    return int(value)


def _check_sizes(sizes, name):
    if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
        sizes = (sizes,)
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise ValueError("%s must be a sequence of layer sizes, got %r" % (name, sizes)) \
            from None
    return tuple(_check_int(s, "%s[%d]" % (name, i), 1) for i, s in enumerate(sizes))


class _NNDLBase(ClassifierMixin, BaseEstimator):
    """What both classifiers share: labels, data checks, predictions."""

    def _encode_first(self, y, classes=None):
        check_classification_targets(y)
        if classes is None:
            self.classes_, encoded = np.unique(y, return_inverse=True)
            return encoded.reshape(-1)
        self.classes_ = np.unique(np.asarray(classes))
        return self._encode(y)

    def _encode(self, y):
        check_classification_targets(y)
        y = np.asarray(y)
        index = np.searchsorted(self.classes_, y)
        index[index >= len(self.classes_)] = 0
        bad = np.flatnonzero(self.classes_[index] != y)
        if bad.size:
            raise ValueError("y contains the label %r, not one of the classes %s given to the "
                             "first partial_fit" % (y[bad[0]].tolist(), self.classes_.tolist()))
        return index.astype(np.int64)

    def _split_validation(self, X, y, rng):
        """(X_train, y_train, evaluation) for early stopping: ``validation_fraction``
        of the rows, drawn with ``rng``, held out to watch the accuracy."""
        fraction = self.validation_fraction
        if not isinstance(fraction, numbers.Real) or not 0.0 < fraction < 1.0:
            raise ValueError("validation_fraction must be in (0, 1), got %r" % (fraction,))
        n = X.shape[0]
        n_val = int(np.ceil(fraction * n))
        if n_val >= n:
            raise ValueError("early stopping holds out %d of %d samples: too few samples to "
                             "train on (lower validation_fraction)" % (n_val, n))
        perm = rng.permutation(n)
        held, kept = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        return X[kept], y[kept], (X[held], y[held])

    def predict(self, X):
        """The class of each row of X."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]



class NNDLClassifier(_NNDLBase):
    """A chapter 1 / chapter 3 network (``network2.Network``) as a classifier.

    Parameters
    ----------
    hidden_sizes : tuple of int, default (30,)
        Neurons of the hidden layers (the book's ``sizes`` without the input
        and output layers, which the data decide).
    cost : {"cross-entropy", "quadratic", "log-likelihood"}, default "cross-entropy"
        Chapter 3's ``CrossEntropyCost``, chapter 1's ``QuadraticCost``, or a
        softmax output layer with the log-likelihood cost.
    weight_init : {"default", "large"}, default "default"
        ``default_weight_initializer`` (weights N(0, 1/n_in), chapter 3) or
        ``large_weight_initializer`` (N(0, 1), chapter 1).
    activation : {"sigmoid", "ReLU", "tanh", "linear"}, default "sigmoid"
        The hidden layers' ``activation_fn`` (the output layer is sigmoid, or
        softmax with the log-likelihood cost).
    eta, lmbda : float, defaults 0.5 and 0.0
        Learning rate and regularization parameter (L2 unless ``regularization="L1"``).
    epochs, mini_batch_size : int, defaults 30 and 10
    momentum : float, default 0.0
    early_stopping_n : int, default 0
        Stop when the accuracy on ``validation_fraction`` of the training data
        (held out) has not improved for this many epochs; 0 trains all epochs.
    validation_fraction : float, default 0.1
    random_state : None, int or RandomState
    num_threads : int or None
        Threads of the compiled kernels (None: the package's policy, shared
        among fits running at the same time).
    dtype : {"float64", "float32"}

    Attributes: ``classes_``, ``n_features_in_``, ``network_`` (the trained
    ``network2.Network``), ``validation_accuracy_`` (per epoch, with early stopping),
    ``n_epochs_`` (epochs run by the last fit or partial_fit).
    """

    def __init__(self, hidden_sizes=(30,), cost="cross-entropy", weight_init="default",
                 eta=0.5, lmbda=0.0, epochs=30, mini_batch_size=10, regularization="L2",
                 momentum=0.0, early_stopping_n=0, validation_fraction=0.1,
                 random_state=None, num_threads=None, dtype="float64", activation="sigmoid"):
        self.hidden_sizes = hidden_sizes
        self.cost = cost
        self.weight_init = weight_init
        self.eta = eta
        self.lmbda = lmbda
        self.epochs = epochs
        self.mini_batch_size = mini_batch_size
        self.regularization = regularization
        self.momentum = momentum
        self.early_stopping_n = early_stopping_n
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.num_threads = num_threads
        self.dtype = dtype
        self.activation = activation

    def _new_network(self, n_in, n_out):
        from . import network2
        costs = {"quadratic": network2.QuadraticCost,
                 "cross-entropy": network2.CrossEntropyCost,
                 "log-likelihood": network2.LogLikelihoodCost}
        cost = costs[_check_choice(self.cost, "cost", _COSTS)]
        init = _check_choice(self.weight_init, "weight_init", ("default", "large"))
        sizes = [n_in] + list(_check_sizes(self.hidden_sizes, "hidden_sizes")) + [n_out]
        net = network2.Network(sizes, cost=cost, dtype=_check_dtype(self.dtype),
                               num_threads=self.num_threads,
                               activation_fn=_check_choice(self.activation, "activation",
                                                           _ACTIVATIONS),
                               **_network_generators(self.random_state))
        if init == "large":
            net.large_weight_initializer()
        return net

    def _train(self, X, y, epochs, evaluation=None):
        result = _training.train_dense(
            self.network_, X, y, epochs, _check_int(self.mini_batch_size, "mini_batch_size", 1),
            self.eta, lmbda=self.lmbda, regularization=self.regularization,
            momentum=self.momentum, evaluation=evaluation,
            early_stopping_n=self.early_stopping_n if evaluation is not None else 0)
        self.n_epochs_ = result["epochs"]
        return result

    def fit(self, X, y):
        """Train a new network on X (n_samples, n_features) and labels y for ``epochs``."""
        X, y = _validate_data(self, X, y, dtype=[np.float64, np.float32])
        y = self._encode_first(y)
        epochs = _check_int(self.epochs, "epochs", 0)
        early = _check_int(self.early_stopping_n, "early_stopping_n", 0)
        self.network_ = self._new_network(X.shape[1], len(self.classes_))
        evaluation = None
        if early:
            X, y, evaluation = self._split_validation(
                X, y, check_random_state(self.random_state))
        result = self._train(X, y, epochs, evaluation)
        if evaluation is not None:
            n_val = len(evaluation[1])
            self.validation_accuracy_ = [c / n_val for c in result["evaluation_accuracy"]]
        return self

    def partial_fit(self, X, y, classes=None):
        """One epoch of SGD on X, y (a new network on the first call, which needs
        ``classes`` unless y holds every class)."""
        first = not hasattr(self, "network_")
        X, y = _validate_data(self, X, y, dtype=[np.float64, np.float32], reset=first)
        if first:
            y = self._encode_first(y, classes)
            self.network_ = self._new_network(X.shape[1], len(self.classes_))
        else:
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError("classes %s differ from the first partial_fit's %s"
                                 % (np.unique(classes).tolist(), self.classes_.tolist()))
            y = self._encode(y)
        self._train(X, y, 1)
        return self

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes): the output activations, each
        row divided by its sum (a softmax output layer's rows already sum to 1)."""
        check_is_fitted(self, "network_")
        X = _validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        A = self.network_._outputs(np.ascontiguousarray(X))
        total = A.sum(axis=1, keepdims=True)
        # A row of sigmoids that all underflowed to 0: no preference.
        np.copyto(A, 1.0, where=total == 0)
        return A / A.sum(axis=1, keepdims=True)


class ConvNetClassifier(_NNDLBase):
    """A chapter 6 convolutional network (``network3.Network``) as a classifier.

    Parameters
    ----------
    image_shape : (channels, height, width) or None
        How a row of X is read as an image (None: one square channel when the
        number of features is a square, as MNIST's 784 = 28·28, else one row).
    conv_layers : sequence of (filters, kernel, pool), default ((20, 5, 2),)
        ``ConvPoolLayer``s: ``filters`` kernel×kernel filters, then pool×pool max-pooling.
    hidden_sizes : tuple of int, default (100,)
        ``FullyConnectedLayer``s before the ``SoftmaxLayer``.
    activation : {"sigmoid", "ReLU", "tanh", "linear"}, default "sigmoid"
    p_dropout : float, default 0.0
        Dropout of the fully connected and softmax layers.
    eta, lmbda, epochs, mini_batch_size : the book's SGD parameters (0.1, 0.0, 60, 10)
    random_state : None, int or RandomState
        The layers' initial values (an int gives the values after ``np.random.seed``).
    dropout_seed : int or None
        Seed of the dropout masks (None: the book's).
    num_threads : int or None
    dtype : {"float32", "float64"}, default "float32" (the book's Theano runs)

    Attributes: ``classes_``, ``n_features_in_``, ``network_`` (the trained
    ``network3.Network``), ``n_epochs_``.
    """

    def __init__(self, image_shape=None, conv_layers=((20, 5, 2),), hidden_sizes=(100,),
                 activation="sigmoid", p_dropout=0.0, eta=0.1, lmbda=0.0, epochs=60,
                 mini_batch_size=10, random_state=None, dropout_seed=None, num_threads=None,
                 dtype="float32"):
        self.image_shape = image_shape
        self.conv_layers = conv_layers
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.p_dropout = p_dropout
        self.eta = eta
        self.lmbda = lmbda
        self.epochs = epochs
        self.mini_batch_size = mini_batch_size
        self.random_state = random_state
        self.dropout_seed = dropout_seed
        self.num_threads = num_threads
        self.dtype = dtype

    def _image_shape(self, n_features):
        if self.image_shape is None:
            side = int(round(np.sqrt(n_features)))
            return (1, side, side) if side * side == n_features else (1, 1, n_features)
        shape = tuple(_check_int(s, "image_shape[%d]" % i, 1)
                      for i, s in enumerate(self.image_shape))
        if len(shape) != 3 or int(np.prod(shape)) != n_features:
            raise ValueError("image_shape %r does not describe the %d features of X (expected "
                             "(channels, height, width) with that product)"
                             % (self.image_shape, n_features))
        return shape

    def _new_network(self, n_features, n_classes, n_samples):
        from . import network3
        act = getattr(network3, _check_choice(self.activation, "activation", _ACTIVATIONS))
        m = min(_check_int(self.mini_batch_size, "mini_batch_size", 1), n_samples)
        channels, h, w = self._image_shape(n_features)
        p = float(self.p_dropout)
        layers = []
        for i, spec in enumerate(self.conv_layers):
            if len(tuple(spec)) != 3:
                raise ValueError("conv_layers[%d] must be (filters, kernel, pool), got %r"
                                 % (i, spec))
            filters, kernel, pool = (_check_int(v, "conv_layers[%d]" % i, 1) for v in spec)
            layer = network3.ConvPoolLayer(image_shape=(m, channels, h, w),
                                           filter_shape=(filters, channels, kernel, kernel),
                                           poolsize=(pool, pool), activation_fn=act)
            layers.append(layer)
            channels, h, w = layer.output_shape
        n_in = channels * h * w
        for size in _check_sizes(self.hidden_sizes, "hidden_sizes"):
            layers.append(network3.FullyConnectedLayer(n_in=n_in, n_out=size,
                                                       activation_fn=act, p_dropout=p))
            n_in = size
        layers.append(network3.SoftmaxLayer(n_in=n_in, n_out=n_classes, p_dropout=p))
        return network3.Network(layers, m, dtype=_check_dtype(self.dtype),
                                dropout_seed=self.dropout_seed, num_threads=self.num_threads,
                                **_network_generators(self.random_state))

    def fit(self, X, y):
        """Train a new network on X (n_samples, n_features) and labels y for ``epochs``."""
        X, y = _validate_data(self, X, y, dtype=[np.float32, np.float64])
        y = self._encode_first(y)
        epochs = _check_int(self.epochs, "epochs", 0)
        self.network_ = self._new_network(X.shape[1], len(self.classes_), X.shape[0])
        self.n_epochs_ = _training.train_conv(self.network_, X, y, epochs, self.eta,
                                              lmbda=self.lmbda)["epochs"]
        return self

    def partial_fit(self, X, y, classes=None):
        """One epoch on X, y (a new network on the first call, which needs ``classes``
        unless y holds every class). X must hold at least one mini-batch."""
        first = not hasattr(self, "network_")
        X, y = _validate_data(self, X, y, dtype=[np.float32, np.float64], reset=first)
        if first:
            y = self._encode_first(y, classes)
            self.network_ = self._new_network(X.shape[1], len(self.classes_), X.shape[0])
        else:
            if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
                raise ValueError("classes %s differ from the first partial_fit's %s"
                                 % (np.unique(classes).tolist(), self.classes_.tolist()))
            y = self._encode(y)
        self.n_epochs_ = _training.train_conv(self.network_, X, y, 1, self.eta,
                                              lmbda=self.lmbda)["epochs"]
        return self

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes) from the softmax layer."""
        check_is_fitted(self, "network_")
        X = _validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        P = np.asarray(self.network_.predict_proba(X), dtype=np.float64)
        return P / P.sum(axis=1, keepdims=True)
