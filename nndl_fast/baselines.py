"""Baselines of chapter 1: what a neural network has to beat on MNIST.

* Average darkness: how much ink each digit uses on average in the training
  set; a test image is classified as the digit whose average is closest to
  its own total darkness. The book reports 2,225 of 10,000 correct.
* A support vector machine, scikit-learn's ``svm.SVC()`` with its default
  settings, trained on the 50,000 training images: 9,435 of 10,000 in the
  book. Training it on all 50,000 images takes several minutes; ``train_size``
  fits it on a random subset. Needs scikit-learn (``pip install nndl_fast[svm]``).
  scikit-learn's defaults have changed since the book (``gamma`` is now
  ``"scale"``, it was ``1/n_features``), so today's ``SVC()`` scores higher
  than the book's figure: 9,626 of 10,000 when trained on only 10,000 images.

From the command line::

    python -m nndl_fast baseline darkness
    python -m nndl_fast baseline svm --train-size 10000

Both functions take ``(x, y)`` array pairs as ``mnist_loader.load_data()``
returns them (x: (n, 784) pixels, y: (n,) digits) and default to the bundled
MNIST: training on its 50,000 training images, scoring on its 10,000 test images.
"""
import numpy as np

from ._validation import check_int, describe

__all__ = ["darkness_averages", "darkness_predict", "average_darkness", "svm_baseline"]


def _pair(data, what):
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError("%s must be a pair (x, y) of arrays as mnist_loader.load_data() "
                        "returns, got %s" % (what, describe(data)))
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError("%s arrays have shapes %s and %s, expected (n, n_pixels) and (n,)"
                         % (what, x.shape, y.shape))
    if x.dtype.kind not in "fiu":
        raise TypeError("%s pixels have dtype %s, expected real numbers" % (what, x.dtype))
    if y.dtype.kind not in "iu":
        raise TypeError("%s labels have dtype %s, expected integers" % (what, y.dtype))
    if x.shape[0] == 0:
        raise ValueError("%s is empty: expected at least one image" % what)
    return x, y


def _default_data(training_data, test_data):
    if training_data is None or test_data is None:
        from . import mnist_loader
        tr, _, te = mnist_loader.load_data()
        training_data = tr if training_data is None else training_data
        test_data = te if test_data is None else test_data
    return _pair(training_data, "training_data"), _pair(test_data, "test_data")


def darkness_averages(x, y, n_classes=10):
    """Average total darkness (sum of pixels) of the training images of each digit.

    Returns an array (n_classes,); a digit absent from the training set gets NaN.
    """
    x, y = _pair((x, y), "training data")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError("labels must lie in 0..%d, got %d..%d"
                         % (n_classes - 1, y.min(), y.max()))
    # Sums in float64: a float32 total over 50,000 images would lose digits.
    darkness = x.sum(axis=1, dtype=np.float64)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    totals = np.bincount(y, weights=darkness, minlength=n_classes)
    with np.errstate(invalid="ignore"):
        return totals / counts


def darkness_predict(averages, x):
    """For each image in x (n, n_pixels), the digit whose average darkness is nearest."""
    averages = np.asarray(averages, dtype=np.float64)
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError("x has shape %s, expected (n, n_pixels)" % (x.shape,))
    darkness = x.sum(axis=1, dtype=np.float64)
    distance = np.abs(darkness[:, None] - averages[None, :])
    distance[:, np.isnan(averages)] = np.inf
    return np.argmin(distance, axis=1)


def average_darkness(training_data=None, test_data=None):
    """The average-darkness classifier: ``(correct, n_test)`` on ``test_data``."""
    (tr_x, tr_y), (te_x, te_y) = _default_data(training_data, test_data)
    n_classes = int(max(tr_y.max(), te_y.max())) + 1
    averages = darkness_averages(tr_x, tr_y, max(n_classes, 10))
    predictions = darkness_predict(averages, te_x)
    return int(np.sum(predictions == te_y)), int(te_y.shape[0])


def _subsample(x, y, size, rng, what):
    if size is None or size >= x.shape[0]:
        return x, y
    size = check_int(size, what, 1)
    index = np.sort(rng.choice(x.shape[0], size=size, replace=False))
    return x[index], y[index]


def svm_baseline(training_data=None, test_data=None, train_size=None, test_size=None,
                 seed=0):
    """scikit-learn's ``svm.SVC()`` with defaults: ``(correct, n_test)``.

    ``train_size`` / ``test_size`` use random subsets of that many images
    (drawn with ``seed``); None uses everything, as the book does.
    """
    try:
        from sklearn import svm
    except ImportError:
        raise ImportError("the SVM baseline needs scikit-learn: pip install scikit-learn "
                          "(or nndl_fast[svm])") from None
    if train_size is not None:
        check_int(train_size, "train_size", 1)
    if test_size is not None:
        check_int(test_size, "test_size", 1)
    (tr_x, tr_y), (te_x, te_y) = _default_data(training_data, test_data)
    rng = np.random.default_rng(seed)
    tr_x, tr_y = _subsample(tr_x, tr_y, train_size, rng, "train_size")
    te_x, te_y = _subsample(te_x, te_y, test_size, rng, "test_size")
    if np.unique(tr_y).shape[0] < 2:
        raise ValueError("the SVM needs training images of at least two digits, got only %s"
                         % np.unique(tr_y).tolist())
    clf = svm.SVC()
    clf.fit(tr_x, tr_y)
    predictions = clf.predict(te_x)
    return int(np.sum(predictions == te_y)), int(te_y.shape[0])
