"""nndl_fast.sklearn: scikit-learn's estimator checks, the book's numbers for the same
seeds, and the ecosystem's tools (GridSearchCV on threads, cross_val_score, Pipeline)."""
import contextlib
import io
import random
import threading

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from nndl_fast import _config, network2, network3  # noqa: E402
from nndl_fast.sklearn import ConvNetClassifier, NNDLClassifier  # noqa: E402


# Every check of the installed scikit-learn passes (none is expected to fail):
# fit takes no sample_weight, so the sample-weight checks do not apply.
@parametrize_with_checks([
    NNDLClassifier(hidden_sizes=(8,), epochs=5, eta=2.0, random_state=0),
    NNDLClassifier(hidden_sizes=(8,), cost="log-likelihood", epochs=5, eta=1.0,
                   early_stopping_n=2, random_state=0),
    ConvNetClassifier(conv_layers=((2, 1, 1),), hidden_sizes=(8,), epochs=10, eta=0.5,
                      random_state=0),
])
def test_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits(mnist_wrapped):
    """1,000 training and 300 validation images as arrays."""
    train, valid = mnist_wrapped[0][:1000], mnist_wrapped[1][:300]
    X = np.stack([x.ravel() for x, _ in train])
    y = np.array([int(np.argmax(t)) for _, t in train])
    X_val = np.stack([x.ravel() for x, _ in valid])
    y_val = np.array([int(t) for _, t in valid])
    return X, y, X_val, y_val


def _quietly(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


@pytest.mark.parametrize("cost,init,book_cost", [
    ("cross-entropy", "default", network2.CrossEntropyCost),
    ("quadratic", "large", network2.QuadraticCost),
    ("log-likelihood", "default", network2.LogLikelihoodCost),
])
def test_nndl_classifier_is_the_books_sgd(digits, mnist_wrapped, cost, init, book_cost):
    X, y, _, _ = digits
    np.random.seed(4)
    random.seed(4)
    book = network2.Network([784, 20, 10], cost=book_cost)
    if init == "large":
        book.large_weight_initializer()
    _quietly(book.SGD, list(mnist_wrapped[0][:1000]), 3, 10, 0.5, lmbda=2.0)
    before = random.getstate()
    clf = NNDLClassifier(hidden_sizes=(20,), cost=cost, weight_init=init, eta=0.5, lmbda=2.0,
                         epochs=3, random_state=4).fit(X, y)
    assert random.getstate() == before
    net = clf.network_
    for a, b in zip(book.weights + book.biases, net.weights + net.biases):
        assert np.array_equal(a, b)
    proba = clf.predict_proba(X[:50])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(clf.predict(X[:50]), np.argmax(proba, axis=1))


def test_nndl_classifier_labels_early_stopping_and_partial_fit(digits):
    X, y, _, _ = digits
    names = np.array(list("abcdefghij"))[y]
    clf = NNDLClassifier(hidden_sizes=(20,), epochs=30, eta=3.0, early_stopping_n=2,
                         random_state=0).fit(X, names)
    assert list(clf.classes_) == list("abcdefghij")
    assert set(clf.predict(X[:20])) <= set("abcdefghij")
    assert 2 < clf.n_epochs_ < 30      # stopped early
    assert len(clf.validation_accuracy_) == clf.n_epochs_
    # far above chance (0.1). Where early stopping ends moves with rounding at
    # eta 3.0: 0.715-0.930 over seeds 0-5 and the three kernel paths.
    assert clf.score(X, names) > 0.6

    inc = NNDLClassifier(hidden_sizes=(20,), eta=3.0, random_state=0)
    inc.partial_fit(X[:500], y[:500], classes=np.arange(10))
    first = inc.network_.weights[0].copy()
    inc.partial_fit(X[500:], y[500:])
    assert inc.n_epochs_ == 1 and not np.array_equal(first, inc.network_.weights[0])
    # far above chance (0.1): the two halves were learnt. The figure itself moves
    # with rounding at eta 3.0: 0.502, 0.500 and 0.499 on the AVX-512, AVX2 and
    # baseline kernels for this seed, 0.49-0.63 over seeds 0-5.
    assert inc.score(X, y) > 0.4
    with pytest.raises(ValueError, match="label 10, not one of the classes"):
        inc.partial_fit(X[:5], np.array([0, 1, 2, 3, 10]))
    with pytest.raises(ValueError, match="X has 783 features, but NNDLClassifier is expecting "
                                         "784 features"):
        inc.predict(X[:3, 1:])


def test_nndl_classifier_hidden_activation_is_network2s(digits, mnist_wrapped):
    X, y, _, _ = digits
    np.random.seed(5)
    random.seed(5)
    book = network2.Network([784, 20, 10], activation_fn=network2.tanh)
    _quietly(book.SGD, list(mnist_wrapped[0][:1000]), 2, 10, 0.1)
    clf = NNDLClassifier(hidden_sizes=(20,), activation="tanh", eta=0.1, epochs=2,
                         random_state=5).fit(X, y)
    assert clf.network_.activation_fn is network2.tanh
    for a, b in zip(book.weights + book.biases, clf.network_.weights + clf.network_.biases):
        assert np.array_equal(a, b)


def test_bad_parameters_say_what_was_expected(digits):
    X, y, _, _ = digits
    with pytest.raises(ValueError, match="cost must be one of 'quadratic', 'cross-entropy', "
                                         "'log-likelihood', got 'hinge'"):
        NNDLClassifier(cost="hinge").fit(X[:20], y[:20])
    with pytest.raises(ValueError, match=r"hidden_sizes\[1\] must be an int >= 1, got 0"):
        NNDLClassifier(hidden_sizes=(5, 0)).fit(X[:20], y[:20])
    with pytest.raises(ValueError, match="random_state must be None, an int or a numpy"):
        NNDLClassifier(random_state="seven").fit(X[:20], y[:20])
    with pytest.raises(ValueError, match="activation must be one of"):
        ConvNetClassifier(activation="gelu").fit(X[:20], y[:20])
    with pytest.raises(ValueError, match="activation must be one of"):
        NNDLClassifier(activation="gelu").fit(X[:20], y[:20])
    with pytest.raises(ValueError, match=r"image_shape \(1, 20, 20\) does not describe the 784"):
        ConvNetClassifier(image_shape=(1, 20, 20)).fit(X[:20], y[:20])


def _small_conv_layers():
    return [network3.ConvPoolLayer(image_shape=(10, 1, 28, 28), filter_shape=(4, 1, 5, 5),
                                   poolsize=(2, 2)),
            network3.FullyConnectedLayer(n_in=4 * 12 * 12, n_out=20),
            network3.SoftmaxLayer(n_in=20, n_out=10)]


def test_conv_classifier_is_the_books_sgd(digits):
    X, y, X_val, y_val = digits
    np.random.seed(2)
    book = network3.Network(_small_conv_layers(), 10)
    shared = (network3.SharedArray(X[:400].astype(np.float32)), network3.SharedArray(y[:400]))
    _quietly(book.SGD, shared, 2, 10, 0.1, None, None)
    clf = ConvNetClassifier(conv_layers=((4, 5, 2),), hidden_sizes=(20,), epochs=2, eta=0.1,
                            random_state=2).fit(X[:400], y[:400])
    for a, b in zip(book.params, clf.network_.params):
        assert np.array_equal(a.get_value(), b.get_value())
    proba = clf.predict_proba(X_val)
    assert proba.shape == (300, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert clf.score(X_val, y_val) == float(np.mean(book.predict(X_val) == y_val))


def test_grid_search_on_threads_equals_the_serial_search(digits):
    from joblib import parallel_config
    X, y, _, _ = digits
    grid = {"eta": [0.5, 3.0], "lmbda": [0.0, 5.0]}
    est = NNDLClassifier(hidden_sizes=(16,), epochs=2, random_state=1)
    serial = GridSearchCV(est, grid, cv=2, n_jobs=1).fit(X, y)
    with parallel_config(backend="threading"):
        threaded = GridSearchCV(est, grid, cv=2, n_jobs=2).fit(X, y)
    assert np.array_equal(serial.cv_results_["mean_test_score"],
                          threaded.cv_results_["mean_test_score"])
    assert serial.best_params_ == threaded.best_params_
    assert _config.active_runs() == 0


def test_fits_in_threads_share_the_cores(digits, monkeypatch):
    """Two fits training at once each take get_num_threads() // 2 threads."""
    pytest.importorskip("nndl_fast._dense")
    from nndl_fast import _dense
    X, y, _, _ = digits
    monkeypatch.setattr(_config, "get_num_threads", lambda: 8)
    real = _dense.train_epoch
    barrier = threading.Barrier(2, timeout=60)
    seen = {}

    def train_epoch(*args, **kwargs):
        me = threading.current_thread().name
        calls = seen.setdefault(me, [])
        calls.append(kwargs["num_threads"])
        if len(calls) <= 2:
            barrier.wait()   # both fits are training: the second epoch sees two runs
        return real(*args, **kwargs)

    monkeypatch.setattr(_dense, "train_epoch", train_epoch)
    fits = [threading.Thread(target=NNDLClassifier(hidden_sizes=(200,), epochs=3,
                                                   random_state=k).fit, args=(X, y))
            for k in range(2)]
    for t in fits:
        t.start()
    for t in fits:
        t.join()
    assert len(seen) == 2
    assert all(calls[1] == 4 for calls in seen.values()), seen


def test_cross_val_score_and_pipeline(digits):
    X, y, _, _ = digits
    pipe = make_pipeline(MinMaxScaler(), NNDLClassifier(hidden_sizes=(20,), epochs=3, eta=3.0,
                                                        random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.4   # chance is 0.1
    again = cross_val_score(pipe, X, y, cv=3)
    assert np.array_equal(scores, again)
