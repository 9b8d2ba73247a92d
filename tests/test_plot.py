"""Figures: files written, images of a sane size, clear errors for bad input."""
import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402

from nndl_fast import plot  # noqa: E402


def read_png(path):
    img = mpimg.imread(str(path))
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img


def test_monitoring_from_sgd_lists(tmp_path, small_training, quiet):
    from nndl_fast.reference import network2
    np.random.seed(0)
    net = network2.Network([784, 10, 10])
    evaluation = [(x, int(np.argmax(y))) for x, y in small_training[:100]]
    with quiet():
        lists = net.SGD(small_training[:200], 2, 10, 0.5, lmbda=1.0, evaluation_data=evaluation,
                        monitor_evaluation_cost=True, monitor_evaluation_accuracy=True,
                        monitor_training_cost=True, monitor_training_accuracy=True)
    path = tmp_path / "monitor.png"
    fig = plot.plot_monitoring(*lists, filename=str(path), n_evaluation=100, n_training=200)
    img = read_png(path)
    assert 300 < img.shape[1] < 3000 and 200 < img.shape[0] < 2000
    assert img.shape[1] > img.shape[0]  # two panels side by side
    assert len(fig.axes) == 2
    # Accuracy drawn in percent of the given sizes.
    acc_ax = fig.axes[1]
    ys = acc_ax.lines[0].get_ydata()
    assert np.allclose(ys, 100.0 * np.asarray(lists[3]) / 200)


def test_monitoring_only_accuracy_has_one_panel(tmp_path):
    fig = plot.plot_monitoring([], [50, 60, 70], filename=str(tmp_path / "a.png"))
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="all four monitoring lists are empty"):
        plot.plot_monitoring([], [], [], [])
    with pytest.raises(ValueError, match="one number per epoch"):
        plot.plot_monitoring([[1, 2]], filename=None)


class _Layer(object):
    def __init__(self, w):
        self.w = w


class _Shared(object):
    def __init__(self, value):
        self._value = value

    def get_value(self, borrow=False):
        return self._value


class _Net(object):
    def __init__(self, layers):
        self.layers = layers


def test_filters_from_array_layer_and_network(tmp_path):
    rng = np.random.default_rng(0)
    w4 = rng.standard_normal((20, 1, 5, 5))
    assert plot.filters_array(w4).shape == (20, 5, 5)
    assert np.array_equal(plot.filters_array(_Layer(w4)), w4[:, 0])
    net = _Net([_Layer(rng.standard_normal((784, 100))), _Layer(_Shared(w4))])
    assert np.array_equal(plot.filters_array(net), w4[:, 0])
    path = tmp_path / "filters.png"
    plot.plot_filters(net, str(path), columns=10)
    img = read_png(path)
    assert img.shape[1] > img.shape[0] and img.shape[0] > 100
    with pytest.raises(ValueError, match="no convolutional layer"):
        plot.filters_array(_Net([_Layer(np.zeros((3, 4)))]))
    with pytest.raises(ValueError, match=r"expected \(n_filters, kh, kw\)"):
        plot.filters_array(np.zeros((3, 4)))


def test_misclassified_counts_match_evaluate(tmp_path, small_training, small_test, quiet):
    from nndl_fast import network
    np.random.seed(2)
    net = network.Network([784, 20, 10])
    with quiet():
        net.SGD(list(small_training), 1, 10, 3.0)
    path = tmp_path / "wrong.png"
    fig = plot.plot_misclassified(net, small_test, str(path), max_images=12, columns=6)
    assert fig.misclassified == len(small_test) - net.evaluate(small_test)
    img = read_png(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    # The same from arrays, through a network with predict() only.

    class Predictor(object):
        def predict(self, X):
            return np.argmax(net._forward_matrix(X), axis=1)
    X = np.vstack([x.T for x, _ in small_test])
    y = np.array([label for _, label in small_test])
    fig2 = plot.plot_misclassified(Predictor(), (X, y), None)
    assert fig2.misclassified == fig.misclassified
    with pytest.raises(TypeError, match="feedforward or predict"):
        plot.plot_misclassified(object(), small_test)


def test_benchmark_chart(tmp_path):
    rows = [{"case": "network", "mini_batch_size": 10, "implementation": "reference",
             "kind": "reference", "threads": 1, "speedup_vs_reference": 1.0},
            {"case": "network", "mini_batch_size": 10, "implementation": "nndl_fast",
             "kind": "nndl_fast", "threads": 2, "speedup_vs_reference": 30.0}]
    path = tmp_path / "bench.png"
    fig = plot.plot_benchmark({"rows": rows, "quick": True}, str(path))
    read_png(path)
    assert [p.get_width() for p in fig.axes[0].patches] == [1.0, 30.0]
    with pytest.raises(ValueError, match="no benchmark rows"):
        plot.plot_benchmark({"rows": []})


@pytest.mark.parametrize("module", ["network", "network2"])
def test_sgd_progress_keyword_keeps_the_books_lines(module, small_training, capsys):
    pytest.importorskip("tqdm")
    import importlib
    import random

    import numpy as np
    mod = importlib.import_module("nndl_fast." + module)
    outs = []
    for progress in (False, True):
        np.random.seed(0)
        random.seed(0)
        net = mod.Network([784, 10, 10])
        net.SGD(list(small_training[:200]), 2, 10, 0.5, progress=progress)
        captured = capsys.readouterr()
        outs.append((captured.out, [w.copy() for w in net.weights]))
        if progress:
            assert "2/2" in captured.err
    assert outs[0][0] == outs[1][0]
    for a, b in zip(outs[0][1], outs[1][1]):
        np.testing.assert_array_equal(a, b)
