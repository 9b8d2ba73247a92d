"""The book's figures, redrawn from its own experiments run on nndl_fast.

``python -m nndl_fast figures ch1|ch3|ch5|ch6|all --out DIR [--quick]`` or
``make_figures("ch3", "figs")``. Each figure is run as the book's figure scripts
run it (same networks, data sizes, epochs, learning rates and regularisation)
and drawn with the book's axes, ranges, colours, titles and legends. Files are
named after the book's images (``overfitting1.png``, ``multiple_eta.png``, ...),
so a page of the book and a folder of these PNGs can be read side by side.

``quick=True`` runs every experiment on a few hundred images for a few epochs:
the same figures in seconds, for tests and a first look, not the book's curves.

Chapter 3's comparison with a support vector machine needs scikit-learn
(``nndl_fast[svm]``); without it that figure is drawn without the SVM's line
and a note says so. Everything else needs matplotlib (``nndl_fast[plot]``).
"""
import contextlib
import io
import os
import random
import time

import numpy as np

from ._validation import check_int
from .plot import finish, new_figure, predict_labels

__all__ = ["CHAPTERS", "FIGURES", "make_figures", "Settings"]

CHAPTERS = ("ch1", "ch3", "ch5", "ch6")

#: The files each chapter writes (the book's image names).
FIGURES = {
    "ch1": ["digits.png", "mnist_100_digits.png", "sigmoid.png", "step.png",
            "network_accuracy.png"],
    "ch3": ["overfitting1.png", "overfitting2.png", "overfitting3.png", "overfitting4.png",
            "overfitting_full.png", "regularized1.png", "regularized2.png",
            "regularized_full.png", "weight_initialization_30.png",
            "weight_initialization_100.png", "multiple_eta.png", "more_data.png",
            "more_data_log.png", "more_data_comparison.png"],
    "ch5": ["training_speed_2_layers.png", "training_speed_3_layers.png",
            "training_speed_4_layers.png"],
    "ch6": ["net_full_layer_0.png", "ensemble_errors.png"],
}

# The book's colours.
BLUE, ORANGE, YELLOW, RED = "#2A6EA6", "#FFA933", "#FFCD33", "#FF7033"
LAYER_COLOURS = [BLUE, ORANGE, "#FF5555", "#55FF55", "#5555FF"]

#: The seed of the book's figure scripts (``random.seed(12345678)``).
BOOK_SEED = 12345678


class Settings(object):
    """Sizes of the experiments: the book's, or ``quick`` ones for tests."""

    def __init__(self, quick=False):
        self.quick = quick
        if quick:
            self.ch1_train, self.ch1_test, self.ch1_epochs = 2000, 1000, 3
            self.small_train, self.small_epochs, self.small_xmin = 100, 30, 15
            self.full_train, self.full_epochs, self.eval_size = 2000, 3, 1000
            self.more_data_sizes, self.more_data_examples = [100, 200, 500], 5000
            self.ch5_train, self.ch5_epochs = 100, 15
            self.ch6_train, self.ch6_epochs, self.ch6_eval = 2000, 1, 500
        else:
            self.ch1_train, self.ch1_test, self.ch1_epochs = 50000, 10000, 30
            # overfitting.py: 1,000 images for 400 epochs, the plots from epoch 200.
            self.small_train, self.small_epochs, self.small_xmin = 1000, 400, 200
            self.full_train, self.full_epochs, self.eval_size = 50000, 30, 10000
            # more_data.py: 1,500,000 examples' training for each size.
            self.more_data_sizes = [100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000]
            self.more_data_examples = 1500000
            # generate_gradient.py: 1,000 images, 500 epochs.
            self.ch5_train, self.ch5_epochs = 1000, 500
            self.ch6_train, self.ch6_epochs, self.ch6_eval = 50000, 20, 10000


def _seed(seed):
    random.seed(seed)
    np.random.seed(seed)


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()):
        yield


_loaded = {}


def _data():
    """The book's three lists, built once per ``make_figures`` call (callers copy
    before training: SGD shuffles its list in place)."""
    if "wrapped" not in _loaded:
        from . import mnist_loader
        _loaded["wrapped"] = mnist_loader.load_data_wrapper()
    return _loaded["wrapped"]


def _axes(path, figsize=(6.4, 4.8)):
    fig = new_figure(path, "figures", figsize)
    return fig, fig.add_subplot(111)


def _curve(path, xs, ys, xmin, xmax, title, ylim=None, xlabel="Epoch"):
    fig, ax = _axes(path)
    ax.plot(xs, ys, color=BLUE)
    ax.set_xlim([xmin, xmax])
    if ylim is not None:
        ax.set_ylim(ylim)
    ax.grid(True)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    finish(fig, path)


# ---------------------------------------------------------------- chapter 1

def _digit_images(n):
    from . import mnist_loader
    (x, _), _, _ = mnist_loader.load_data()
    return x[:n].reshape(n, 28, 28)


def chapter1(out, settings, seed=BOOK_SEED, log=print):
    """Six digits, 100 digits, the sigmoid and step functions, and network.py's accuracy."""
    images = _digit_images(100)
    path = os.path.join(out, "digits.png")
    fig, ax = _axes(path, (6.4, 1.6))
    ax.matshow(np.concatenate([im[:, 3:25] for im in images[:6]], axis=1), cmap="binary")
    ax.set_xticks([])
    ax.set_yticks([])
    finish(fig, path)

    path = os.path.join(out, "mnist_100_digits.png")
    fig, ax = _axes(path, (6.4, 6.4))
    # One image of 10 x 10 cropped digits with a white gap between them.
    mosaic = np.zeros((10 * 24, 10 * 24))
    for i in range(100):
        r, c = divmod(i, 10)
        mosaic[r * 24 + 1:r * 24 + 23, c * 24 + 1:c * 24 + 23] = images[i][3:25, 3:25]
    ax.matshow(mosaic, cmap="binary")
    ax.set_xticks([])
    ax.set_yticks([])
    finish(fig, path)

    z = np.arange(-5, 5, 0.02)
    for name, values in (("sigmoid", 1.0 / (1.0 + np.exp(-z))), ("step", (z > 0) * 1.0)):
        path = os.path.join(out, name + ".png")
        _curve(path, z, values, -5, 5, "%s function" % name, ylim=[-0.5, 1.5], xlabel="z")

    from . import network
    training_data, _, test_data = _data()
    training_data = list(training_data[:settings.ch1_train])
    test_data = test_data[:settings.ch1_test]
    path = os.path.join(out, "network_accuracy.png")
    fig, ax = _axes(path)
    lowest = 100.0
    for hidden, colour in ((30, BLUE), (100, ORANGE)):
        _seed(seed)
        net = network.Network([784, hidden, 10])
        accuracy = []
        t0 = time.perf_counter()
        for _ in range(settings.ch1_epochs):
            with _quiet():
                net.SGD(training_data, 1, 10, 3.0)
            accuracy.append(100.0 * net.evaluate(test_data) / len(test_data))
        log("  network.Network([784, %d, 10]), eta 3.0: %.2f%% after %d epochs (%.1f s)"
            % (hidden, accuracy[-1], len(accuracy), time.perf_counter() - t0))
        lowest = min(lowest, min(accuracy))
        ax.plot(np.arange(1, len(accuracy) + 1), accuracy, "o-", markersize=3, color=colour,
                label="[784, %d, 10]" % hidden)
    ax.set_xlim([0, settings.ch1_epochs + 1])
    ax.set_ylim([min(85.0, np.floor(lowest) - 1), 100])
    ax.grid(True)
    ax.set_xlabel("Epoch")
    ax.set_title("Accuracy (%) on the test data: network.py, eta 3.0")
    ax.legend(loc="lower right")
    finish(fig, path)


# ---------------------------------------------------------------- chapter 3

def _overfitting_run(training_data, test_data, epochs, lmbda, seed):
    """overfitting.py's run: [784, 30, 10], cross-entropy, large weights, eta 0.5."""
    from . import network2
    _seed(seed)
    net = network2.Network([784, 30, 10], cost=network2.CrossEntropyCost)
    net.large_weight_initializer()
    with _quiet():
        return net.SGD(list(training_data), epochs, 10, 0.5, evaluation_data=test_data,
                       lmbda=lmbda, monitor_evaluation_cost=True,
                       monitor_evaluation_accuracy=True, monitor_training_cost=True,
                       monitor_training_accuracy=True)


def _overlay(path, test_accuracy, training_accuracy, n_test, n_training):
    epochs = len(test_accuracy)
    fig, ax = _axes(path)
    ax.plot(np.arange(epochs), 100.0 * np.asarray(test_accuracy) / n_test, color=BLUE,
            label="Accuracy on the test data")
    ax.plot(np.arange(epochs), 100.0 * np.asarray(training_accuracy) / n_training,
            color=ORANGE, label="Accuracy on the training data")
    ax.grid(True)
    ax.set_xlim([0, epochs])
    ax.set_xlabel("Epoch")
    ax.set_ylim([90, 100])
    ax.legend(loc="lower right")
    finish(fig, path)


def _ch3_overfitting(out, settings, training_data, test_data, seed, log):
    s = settings
    small = training_data[:s.small_train]
    full = training_data[:s.full_train]
    epochs, xmin = s.small_epochs, s.small_xmin
    for prefix, lmbda, n_plots in (("overfitting", 0.0, 4), ("regularized", 0.1, 2)):
        t0 = time.perf_counter()
        test_cost, test_acc, train_cost, train_acc = _overfitting_run(
            small, test_data, epochs, lmbda, seed)
        log("  %d images, %d epochs, lmbda %g: test accuracy %.2f%% (%.1f s)"
            % (len(small), epochs, lmbda, 100.0 * test_acc[-1] / len(test_data),
               time.perf_counter() - t0))
        xs = np.arange(xmin, epochs)
        plots = [
            (xs, train_cost[xmin:], xmin, "Cost on the training data"),
            (xs, 100.0 * np.asarray(test_acc[xmin:]) / len(test_data), xmin,
             "Accuracy (%) on the test data"),
            (np.arange(epochs), test_cost, 0, "Cost on the test data"),
            (np.arange(epochs), 100.0 * np.asarray(train_acc) / len(small), 0,
             "Accuracy (%) on the training data"),
        ]
        for i, (x, y, lo, title) in enumerate(plots[:n_plots]):
            _curve(os.path.join(out, "%s%d.png" % (prefix, i + 1)), x, y, lo, epochs, title)
    for name, lmbda in (("overfitting_full.png", 0.0), ("regularized_full.png", 5.0)):
        t0 = time.perf_counter()
        _, test_acc, _, train_acc = _overfitting_run(full, test_data, s.full_epochs, lmbda,
                                                     seed)
        log("  %d images, %d epochs, lmbda %g: test %.2f%%, training %.2f%% (%.1f s)"
            % (len(full), s.full_epochs, lmbda, 100.0 * test_acc[-1] / len(test_data),
               100.0 * train_acc[-1] / len(full), time.perf_counter() - t0))
        _overlay(os.path.join(out, name), test_acc, train_acc, len(test_data), len(full))


def _ch3_weight_initialization(out, settings, training_data, validation_data, seed, log):
    from . import network2
    for hidden in (30, 100):
        path = os.path.join(out, "weight_initialization_%d.png" % hidden)
        fig, ax = _axes(path)
        for large, colour, label in ((True, BLUE, "Old approach to weight initialization"),
                                     (False, ORANGE, "New approach to weight initialization")):
            _seed(seed)
            net = network2.Network([784, hidden, 10], cost=network2.CrossEntropyCost)
            if large:
                net.large_weight_initializer()
            t0 = time.perf_counter()
            with _quiet():
                _, accuracy, _, _ = net.SGD(list(training_data[:settings.full_train]),
                                            settings.full_epochs, 10, 0.1, lmbda=5.0,
                                            evaluation_data=validation_data,
                                            monitor_evaluation_accuracy=True)
            accuracy = 100.0 * np.asarray(accuracy) / len(validation_data)
            log("  [784, %d, 10], %s weights: %.2f%% after epoch 1, %.2f%% after %d (%.1f s)"
                % (hidden, "large" if large else "1/sqrt(n_in)", accuracy[0], accuracy[-1],
                   len(accuracy), time.perf_counter() - t0))
            ax.plot(np.arange(len(accuracy)), accuracy, color=colour, label=label)
        ax.set_xlim([0, settings.full_epochs])
        ax.set_xlabel("Epoch")
        ax.set_ylim([85, 100])
        ax.set_title("Classification accuracy")
        ax.legend(loc="lower right")
        finish(fig, path)


def _ch3_multiple_eta(out, settings, training_data, validation_data, seed, log):
    from . import network2
    _seed(seed)
    path = os.path.join(out, "multiple_eta.png")
    fig, ax = _axes(path)
    for eta, colour in ((0.025, BLUE), (0.25, YELLOW), (2.5, RED)):
        net = network2.Network([784, 30, 10])
        t0 = time.perf_counter()
        with _quiet():
            _, _, cost, _ = net.SGD(list(training_data[:settings.full_train]),
                                    settings.full_epochs, 10, eta, lmbda=5.0,
                                    evaluation_data=validation_data,
                                    monitor_training_cost=True)
        log("  eta %g: training cost %.3f after epoch 1, %.3f after %d (%.1f s)"
            % (eta, cost[0], cost[-1], len(cost), time.perf_counter() - t0))
        ax.plot(np.arange(len(cost)), cost, "o-", label=r"$\eta$ = %s" % eta, color=colour)
    ax.set_xlim([0, settings.full_epochs])
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Cost")
    ax.legend(loc="upper right")
    finish(fig, path)


def _svm_accuracies(sizes, n_validation, log):
    try:
        from sklearn import svm
    except ImportError:
        log("  scikit-learn is not installed (pip install 'nndl_fast[svm]'): "
            "more_data_comparison.png is drawn without the SVM's line")
        return None
    from . import mnist_loader
    (x, y), (vx, vy), _ = mnist_loader.load_data()
    vx, vy = vx[:n_validation], vy[:n_validation]
    accuracies = []
    for size in sizes:
        t0 = time.perf_counter()
        # The book's svm.SVC(): scikit-learn's default gamma was then 1/n_features
        # ("auto"); today's default ("scale") beats the network at every size.
        clf = svm.SVC(gamma="auto")
        clf.fit(x[:size], y[:size])
        accuracies.append(100.0 * np.mean(clf.predict(vx) == vy))
        log("  the book's svm.SVC() (gamma='auto') on %d images: %.2f%% (%.1f s)"
            % (size, accuracies[-1], time.perf_counter() - t0))
    return accuracies


def _ch3_more_data(out, settings, training_data, validation_data, seed, log):
    from . import network2
    sizes = settings.more_data_sizes
    _seed(seed)
    net = network2.Network([784, 30, 10], cost=network2.CrossEntropyCost)
    accuracies = []
    for size in sizes:
        net.large_weight_initializer()
        epochs = settings.more_data_examples // size
        t0 = time.perf_counter()
        with _quiet():
            net.SGD(list(training_data[:size]), epochs, 10, 0.5, lmbda=size * 0.0001)
        accuracies.append(100.0 * net.accuracy(validation_data) / len(validation_data))
        log("  %d images, %d epochs: %.2f%% (%.1f s)"
            % (size, epochs, accuracies[-1], time.perf_counter() - t0))
    for name, log_x in (("more_data.png", False), ("more_data_log.png", True)):
        path = os.path.join(out, name)
        fig, ax = _axes(path)
        ax.plot(sizes, accuracies, color=BLUE)
        ax.plot(sizes, accuracies, "o", color=ORANGE)
        if log_x:
            ax.set_xscale("log")
        ax.set_xlim(100 if log_x else 0, 50000)
        ax.set_ylim(60, 100)
        ax.grid(True)
        ax.set_xlabel("Training set size")
        ax.set_title("Accuracy (%) on the validation data")
        finish(fig, path)
    svm_accuracies = _svm_accuracies(sizes, len(validation_data), log)
    path = os.path.join(out, "more_data_comparison.png")
    fig, ax = _axes(path)
    ax.plot(sizes, accuracies, color=BLUE)
    ax.plot(sizes, accuracies, "o", color=BLUE, label="Neural network accuracy (%)")
    if svm_accuracies is not None:
        ax.plot(sizes, svm_accuracies, color=ORANGE)
        ax.plot(sizes, svm_accuracies, "o", color=ORANGE, label="SVM accuracy (%)")
    ax.set_xlim(100, 50000)
    ax.set_ylim(25, 100)
    ax.set_xscale("log")
    ax.grid(True)
    ax.set_xlabel("Training set size")
    ax.legend(loc="lower right")
    finish(fig, path)


def chapter3(out, settings, seed=BOOK_SEED, log=print):
    """Overfitting and regularisation, weight initialisation, learning rates, more data."""
    training_data, validation_data, test_data = _data()
    test_data = test_data[:settings.eval_size]
    validation_data = validation_data[:settings.eval_size]
    log(" overfitting and regularisation (overfitting1-4, regularized1-2, *_full)")
    _ch3_overfitting(out, settings, training_data, test_data, seed, log)
    log(" weight initialisation")
    _ch3_weight_initialization(out, settings, training_data, validation_data, seed, log)
    log(" learning rates")
    _ch3_multiple_eta(out, settings, training_data, validation_data, seed, log)
    log(" more training data")
    _ch3_more_data(out, settings, training_data, validation_data, seed, log)


# ---------------------------------------------------------------- chapter 5

def chapter5(out, settings, seed=BOOK_SEED, log=print):
    """The speed of learning of each hidden layer of 2, 3 and 4 hidden-layer networks.

    generate_gradient.py: 1,000 training images, batch gradient descent
    (mini-batch 1,000), eta 0.1, lmbda 5.0; ‖∂C/∂b‖ of each hidden layer,
    averaged over the 1,000 images, before each epoch.
    """
    from . import vanishing
    training_data = list(_data()[0][:settings.ch5_train])
    epochs = settings.ch5_epochs
    for n_hidden in (2, 3, 4):
        _seed(seed)
        net = vanishing.deep_network([784] + [30] * n_hidden + [10])
        t0 = time.perf_counter()
        data = list(training_data)
        history = vanishing.track_speed_of_learning(net, list(training_data), epochs - 1,
                                                    len(training_data), 0.1, data=data,
                                                    lmbda=5.0)
        log("  %d hidden layers: speed of learning %s at the start, %s before epoch %d "
            "(%.1f s)" % (n_hidden, np.array2string(history[0, :-1], precision=3),
                          np.array2string(history[-1, :-1], precision=3), epochs - 1,
                          time.perf_counter() - t0))
        path = os.path.join(out, "training_speed_%d_layers.png" % n_hidden)
        fig, ax = _axes(path)
        for j in range(n_hidden):
            ax.plot(np.arange(epochs), history[:, j], color=LAYER_COLOURS[j],
                    label="Hidden layer %d" % (j + 1))
        ax.set_xlim([0, epochs])
        ax.grid(True)
        ax.set_xlabel("Number of epochs of training")
        ax.set_title("Speed of learning: %d hidden layers" % n_hidden)
        ax.set_yscale("log")
        ax.legend(loc="upper right")
        finish(fig, path)


# ---------------------------------------------------------------- chapter 6

def _shared_subset(network3, pair, n):
    x, y = pair
    return (network3.SharedArray(np.asarray(x[:n], dtype=np.float32), name="x"),
            network3.SharedArray(np.asarray(y[:n]).astype(np.int32), name="y"))


def _misclassified(path, net, test_x, test_y, max_images=33):
    """The book's figure of misclassified digits: the true label at the top right,
    the network's guess at the bottom right."""
    predicted = predict_labels(net, test_x)
    wrong = np.flatnonzero(predicted != test_y)
    shown = wrong[:max_images]
    cols = 11
    rows = max(1, -(-len(shown) // cols))
    fig = new_figure(path, "figures", (cols * 0.85, rows * 0.85 + 0.5))
    for ax in fig.subplots(rows, cols, squeeze=False).flat:
        ax.axis("off")
    for ax, i in zip(fig.axes, shown):
        ax.imshow(test_x[i].reshape(28, 28), cmap="binary", interpolation="nearest")
        ax.text(1.0, 1.0, str(test_y[i]), transform=ax.transAxes, ha="right", va="top",
                fontsize=8, color="green")
        ax.text(1.0, 0.0, str(predicted[i]), transform=ax.transAxes, ha="right",
                va="bottom", fontsize=8, color="red")
    fig.suptitle("%d of %d test images misclassified (top right: true label, bottom right: "
                 "the network's guess)" % (len(wrong), len(test_y)), fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.01, right=0.99, bottom=0.01,
                        top=1 - 0.4 / (rows * 0.85 + 0.5))
    finish(fig, path, tight=False)
    return len(wrong)


def chapter6(out, settings, seed=BOOK_SEED, log=print):
    """The first conv layer's learned filters, and the test digits the conv net gets wrong."""
    from . import mnist_loader, network3
    from .reproduce import network3_layers
    from .plot import plot_filters
    tr, va, te = mnist_loader.load_data()
    training = _shared_subset(network3, tr, settings.ch6_train)
    validation = _shared_subset(network3, va, settings.ch6_eval)
    test = _shared_subset(network3, te, settings.ch6_eval)
    _seed(seed)
    mini_batch_size = 10
    net = network3.Network(network3_layers("ch6-conv1", mini_batch_size, network3),
                           mini_batch_size)
    t0 = time.perf_counter()
    with _quiet():
        net.SGD(training, settings.ch6_epochs, mini_batch_size, 0.1, validation, test)
    log("  conv 20x5x5 + pool + FC 100 + softmax, %d images, %d epochs (%.1f s)"
        % (settings.ch6_train, settings.ch6_epochs, time.perf_counter() - t0))
    plot_filters(net, os.path.join(out, "net_full_layer_0.png"), columns=10,
                 title="The first convolutional layer's 20 learned 5x5 filters")
    test_x, test_y = te[0][:settings.ch6_eval], np.asarray(te[1][:settings.ch6_eval])
    wrong = _misclassified(os.path.join(out, "ensemble_errors.png"), net, test_x, test_y)
    log("  test accuracy %.2f%% (%d of %d misclassified)"
        % (100.0 * (1 - wrong / len(test_y)), wrong, len(test_y)))


_CHAPTER_FUNCTIONS = {"ch1": chapter1, "ch3": chapter3, "ch5": chapter5, "ch6": chapter6}


def make_figures(chapter, out, quick=False, seed=BOOK_SEED, log=print):
    """Run ``chapter``'s experiments ("ch1", "ch3", "ch5", "ch6" or "all") and write
    its figures into the folder ``out`` (made if missing). Returns the paths written."""
    if chapter != "all" and chapter not in CHAPTERS:
        raise ValueError("chapter must be one of %s or 'all', got %r"
                         % (", ".join(CHAPTERS), chapter))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("figures need matplotlib: pip install matplotlib "
                          "(or nndl_fast[plot])") from None
    seed = check_int(seed, "seed", 0)
    os.makedirs(out, exist_ok=True)
    settings = Settings(quick)
    written = []
    try:
        for name in (CHAPTERS if chapter == "all" else (chapter,)):
            t0 = time.perf_counter()
            log("%s%s:" % (name, " (quick)" if quick else ""))
            _CHAPTER_FUNCTIONS[name](out, settings, seed=seed, log=log)
            paths = [os.path.join(out, f) for f in FIGURES[name]]
            log("  wrote %s in %.1f s" % (", ".join(FIGURES[name]), time.perf_counter() - t0))
            written.extend(paths)
    finally:
        _loaded.clear()
    return written
