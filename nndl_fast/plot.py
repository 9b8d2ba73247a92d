"""Figures for the book's experiments (optional extra ``plot``: matplotlib).

* ``plot_monitoring``: network2's cost and accuracy per epoch on training and
  evaluation data, from the four lists ``SGD`` returns (chapter 3's figures);
* ``plot_filters``: a conv layer's learned filters as a grid of images
  (chapter 6's figure of the first layer's 20 feature maps);
* ``plot_misclassified``: the test digits a network gets wrong, with the
  true and the predicted label;
* ``plot_benchmark``: the benchmark suite's speed-ups as a bar chart.

Each writes ``filename`` when given (the format follows its extension) and
returns the matplotlib figure. A figure saved to a file is drawn on its own
``matplotlib.figure.Figure`` with an Agg canvas: pyplot's backend, its open
figures and a notebook's inline display are left as they were. Without a
filename the figure comes from pyplot, so ``plt.show()`` or a notebook shows it.
"""
import numpy as np

from ._validation import check_int, describe

__all__ = ["plot_monitoring", "plot_filters", "plot_misclassified", "plot_benchmark",
           "filters_array"]


def new_figure(filename, what, figsize):
    """A figure to draw on: standalone with an Agg canvas when it is saved to
    ``filename``, else pyplot's (shown by the current backend)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("%s needs matplotlib: pip install matplotlib (or nndl_fast[plot])"
                          % what) from None
    if filename is None:
        import matplotlib.pyplot as plt
        return plt.figure(figsize=figsize)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def finish(fig, filename, tight=True):
    """Lay the figure out and write it to ``filename`` when given; returns it."""
    if tight:
        fig.tight_layout()
    if filename is not None:
        fig.savefig(filename)
    return fig


def _series(values, name):
    if values is None:
        return np.zeros(0)
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError("%s must be a list of one number per epoch, got shape %s"
                         % (name, arr.shape))
    return arr


def plot_monitoring(evaluation_cost=None, evaluation_accuracy=None, training_cost=None,
                    training_accuracy=None, filename=None, n_evaluation=None, n_training=None,
                    title=None):
    """Cost and accuracy per epoch, as chapter 3's figures.

    The four arguments are the lists network2's ``SGD`` returns, in its order
    (``plot_monitoring(*net.SGD(...), filename="ch3.png")`` works); empty or
    ``None`` lists are left out. With ``n_evaluation`` / ``n_training`` the
    accuracy counts are drawn as percentages of those sizes.
    """
    series = {"evaluation_cost": _series(evaluation_cost, "evaluation_cost"),
              "evaluation_accuracy": _series(evaluation_accuracy, "evaluation_accuracy"),
              "training_cost": _series(training_cost, "training_cost"),
              "training_accuracy": _series(training_accuracy, "training_accuracy")}
    if not any(len(s) for s in series.values()):
        raise ValueError("nothing to plot: all four monitoring lists are empty "
                         "(turn on SGD's monitor_* flags)")
    for name, n in (("n_evaluation", n_evaluation), ("n_training", n_training)):
        if n is not None:
            check_int(n, name, 1)
    panels = [p for p in ("cost", "accuracy")
              if len(series["evaluation_" + p]) or len(series["training_" + p])]
    fig = new_figure(filename, "plot_monitoring", (5.5 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for which, n, style in (("training", n_training, "-o"),
                                ("evaluation", n_evaluation, "-s")):
            values = series["%s_%s" % (which, panel)]
            if not len(values):
                continue
            if panel == "accuracy" and n is not None:
                values = 100.0 * values / n
            ax.plot(np.arange(len(values)), values, style,
                    markersize=3 if len(values) < 60 else 0,
                    label="Accuracy on %s data" % which if panel == "accuracy"
                    else "Cost on %s data" % which)
        ax.set_xlabel("Epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("Accuracy (%)" if panel == "accuracy" and
                      (n_training or n_evaluation) else panel.capitalize())
        ax.set_title("%s per epoch" % panel.capitalize())
        ax.legend(loc="best")
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    return finish(fig, filename)


def _as_array(value):
    """A plain ndarray from an array or a shared-variable-like object."""
    if hasattr(value, "get_value"):
        value = value.get_value()
    return np.asarray(value)


def filters_array(source):
    """The first input channel of a conv layer's filters, as (n_filters, kh, kw).

    ``source`` is an array (n_filters, kh, kw) or (n_filters, channels, kh, kw),
    a layer with ``.w`` of the latter shape (network3's ``ConvPoolLayer``), or
    a network whose ``.layers`` holds one (its first conv layer is used).
    """
    obj = source
    if hasattr(obj, "layers") and not hasattr(obj, "w"):
        convs = [l for l in obj.layers if hasattr(l, "w") and _as_array(l.w).ndim == 4]
        if not convs:
            raise ValueError("the network has no convolutional layer (no layer with a 4-d .w)")
        obj = convs[0]
    if hasattr(obj, "w"):
        obj = obj.w
    try:
        w = _as_array(obj).astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError("filters must be an array, a conv layer or a network, got %s"
                        % describe(source)) from None
    if w.ndim == 4:
        w = w[:, 0]
    if w.ndim != 3 or 0 in w.shape:
        raise ValueError("filters have shape %s, expected (n_filters, kh, kw) or "
                         "(n_filters, channels, kh, kw)" % (w.shape,))
    if not np.isfinite(w).all():
        raise ValueError("filters contain NaN or infinity")
    return w


def plot_filters(source, filename=None, columns=10, title=None):
    """The learned filters as a grid of small images (dark = large weight).

    Each filter is scaled on its own, as the book's figure of the first layer's
    feature maps; see ``filters_array`` for what ``source`` may be.
    """
    w = filters_array(source)
    columns = check_int(columns, "columns", 1)
    n = w.shape[0]
    cols = min(columns, n)
    rows = -(-n // cols)
    fig = new_figure(filename, "plot_filters", (0.9 * cols + 0.4, 0.9 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < n:
            ax.imshow(w[i], cmap="binary", interpolation="nearest")
        else:
            ax.axis("off")
    fig.suptitle(title or "%d learned %dx%d filters" % (n, w.shape[1], w.shape[2]))
    return finish(fig, filename)


def _images_and_labels(test_data):
    """(X (n, d), labels (n,)) from a list of (x, label) or a pair of arrays."""
    if isinstance(test_data, tuple) and len(test_data) == 2 \
            and isinstance(test_data[0], np.ndarray) and test_data[0].ndim == 2 \
            and np.ndim(test_data[1]) == 1:
        X, y = test_data
    else:
        try:
            pairs = list(test_data)
            X = np.vstack([np.asarray(x, dtype=np.float64).reshape(1, -1) for x, _ in pairs])
            y = np.array([int(np.argmax(t)) if np.ndim(t) else int(t) for _, t in pairs])
        except (TypeError, ValueError):
            raise TypeError("test_data must be a list of (x, label) pairs or a pair of "
                            "arrays (X, y), got %s" % describe(test_data)) from None
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    if X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise ValueError("test_data has %d images and %d labels, expected the same, non-zero "
                         "number" % (X.shape[0], y.shape[0]))
    return X, y


def predict_labels(net, X):
    """Predicted labels of a network for rows of X, via ``predict`` or ``feedforward``."""
    if hasattr(net, "predict"):
        return np.asarray(net.predict(X)).astype(np.int64).reshape(-1)
    if not hasattr(net, "feedforward"):
        raise TypeError("net must have a feedforward or predict method, got %s" % describe(net))
    try:
        out = np.asarray(net.feedforward(X.T))  # the book's column layout, all at once
        if out.ndim == 2 and out.shape[1] == X.shape[0]:
            return np.argmax(out, axis=0)
    except ValueError:
        pass
    return np.array([int(np.argmax(net.feedforward(x.reshape(-1, 1)))) for x in X])


def plot_misclassified(net, test_data, filename=None, max_images=36, columns=9, title=None):
    """The test digits ``net`` gets wrong, each titled "true -> predicted".

    ``net`` has ``feedforward`` (network, network2) or ``predict`` (network3);
    ``test_data`` is the book's list of (x, label) or a pair of arrays (X, y).
    Returns the figure; its ``misclassified`` attribute holds the count.
    """
    max_images = check_int(max_images, "max_images", 1)
    columns = check_int(columns, "columns", 1)
    X, y = _images_and_labels(test_data)
    predicted = predict_labels(net, X)
    wrong = np.flatnonzero(predicted != y)
    shown = wrong[:max_images]
    side = int(round(np.sqrt(X.shape[1])))
    if side * side != X.shape[1]:
        raise ValueError("images have %d pixels, expected a square number" % X.shape[1])
    cols = max(1, min(columns, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    fig = new_figure(filename, "plot_misclassified", (1.0 * cols + 0.4, 1.15 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    for ax, i in zip(axes.flat, shown):
        ax.imshow(X[i].reshape(side, side), cmap="binary", interpolation="nearest")
        ax.set_title("%d -> %d" % (y[i], predicted[i]), fontsize=8)
    fig.suptitle(title or "%d of %d test images misclassified (true -> predicted)"
                 % (len(wrong), len(y)), fontsize=9)
    fig.misclassified = int(len(wrong))
    return finish(fig, filename)


def plot_benchmark(result, filename=None):
    """The suite's speed-ups against the reference, one bar per row, log scale."""
    rows = [r for r in result.get("rows", []) if r.get("speedup_vs_reference")]
    if not rows:
        raise ValueError("no benchmark rows with a speed-up to plot")
    labels = []
    for r in rows:
        batch = "" if r.get("mini_batch_size") is None else " b%d" % r["mini_batch_size"]
        threads = "" if not r.get("threads") else " %dT" % r["threads"]
        labels.append("%s%s: %s%s" % (r["case"], batch, r["implementation"], threads))
    values = [r["speedup_vs_reference"] for r in rows]
    kinds = sorted({r["kind"] for r in rows})
    colours = dict(zip(kinds, ["C0", "C1", "C2", "C3", "C4"]))
    fig = new_figure(filename, "plot_benchmark", (8, 0.28 * len(rows) + 1.2))
    ax = fig.subplots()
    ypos = np.arange(len(rows))[::-1]
    ax.barh(ypos, values, color=[colours[r["kind"]] for r in rows])
    ax.set_yticks(ypos)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("Speed-up against the reference measured in the same run")
    ax.set_title("nndl_fast benchmarks%s" % (" (quick mode)" if result.get("quick") else ""))
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return finish(fig, filename)
