"""The book's figures: every file written, drawn with the book's axes and legends."""
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from nndl_fast import figures  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory):
    """``make_figures("all", quick=True)``, with every figure it finished kept by name."""
    out = tmp_path_factory.mktemp("figures")
    drawn = {}
    real_finish = figures.finish

    def recording_finish(fig, filename, tight=True):
        drawn[os.path.basename(filename)] = fig
        return real_finish(fig, filename, tight)

    lines = []
    mp = pytest.MonkeyPatch()
    mp.setattr(figures, "finish", recording_finish)
    try:
        written = figures.make_figures("all", str(out), quick=True, log=lines.append)
    finally:
        mp.undo()
    return out, written, drawn, lines


def test_every_chapter_writes_its_pngs(quick_all):
    out, written, drawn, lines = quick_all
    expected = [f for c in figures.CHAPTERS for f in figures.FIGURES[c]]
    assert [os.path.basename(p) for p in written] == expected
    for name in expected:
        data = (out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 3000, name
    assert any("svm.SVC()" in line for line in lines) or \
        any("scikit-learn is not installed" in line for line in lines)


def _axis(fig):
    return fig.axes[0]


def test_chapter3_axes_match_the_books(quick_all):
    _, _, drawn, _ = quick_all
    s = figures.Settings(quick=True)
    ax = _axis(drawn["overfitting1.png"])
    assert ax.get_title() == "Cost on the training data"
    assert ax.get_xlim() == (s.small_xmin, s.small_epochs)
    assert ax.get_xlabel() == "Epoch"
    assert _axis(drawn["overfitting2.png"]).get_title() == "Accuracy (%) on the test data"
    assert _axis(drawn["overfitting3.png"]).get_xlim() == (0, s.small_epochs)
    ax = _axis(drawn["overfitting4.png"])
    assert ax.get_title() == "Accuracy (%) on the training data"
    assert np.max(ax.lines[0].get_ydata()) <= 100.0
    ax = _axis(drawn["regularized_full.png"])
    assert ax.get_ylim() == (90, 100)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "Accuracy on the test data", "Accuracy on the training data"]
    ax = _axis(drawn["weight_initialization_30.png"])
    assert ax.get_ylim() == (85, 100) and ax.get_title() == "Classification accuracy"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "Old approach to weight initialization", "New approach to weight initialization"]
    ax = _axis(drawn["multiple_eta.png"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        r"$\eta$ = 0.025", r"$\eta$ = 0.25", r"$\eta$ = 2.5"]
    assert ax.get_ylabel() == "Cost" and len(ax.lines[0].get_ydata()) == s.full_epochs
    ax = _axis(drawn["more_data_log.png"])
    assert ax.get_xscale() == "log" and ax.get_xlim() == (100, 50000)
    assert ax.get_ylim() == (60, 100)
    assert list(ax.lines[0].get_xdata()) == s.more_data_sizes


def test_chapter5_and_6(quick_all):
    _, _, drawn, _ = quick_all
    s = figures.Settings(quick=True)
    for n in (2, 3, 4):
        ax = _axis(drawn["training_speed_%d_layers.png" % n])
        assert ax.get_yscale() == "log"
        assert ax.get_title() == "Speed of learning: %d hidden layers" % n
        assert len(ax.lines) == n and len(ax.lines[0].get_ydata()) == s.ch5_epochs
        # The vanishing gradient: at the start, each layer learns faster than the one before.
        first = [line.get_ydata()[0] for line in ax.lines]
        assert first == sorted(first)
    fig = drawn["ensemble_errors.png"]
    assert 0 < len([a for a in fig.axes if a.images]) <= 33


def test_without_sklearn_the_comparison_has_no_svm_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    lines = []
    s = figures.Settings(quick=True)
    s.more_data_sizes, s.more_data_examples = [100, 200], 400
    training, validation, _ = figures._data()
    try:
        figures._ch3_more_data(str(tmp_path), s, training, validation[:200], 0, lines.append)
    finally:
        figures._loaded.clear()
    assert any("scikit-learn is not installed" in line for line in lines)
    assert (tmp_path / "more_data_comparison.png").read_bytes()[:8] == PNG


def test_cli(tmp_path):
    out = tmp_path / "figs"
    proc = subprocess.run([sys.executable, "-m", "nndl_fast", "figures", "ch6", "--quick",
                           "--out", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Wrote 2 figures to" in proc.stdout
    assert sorted(os.listdir(out)) == sorted(figures.FIGURES["ch6"])
    proc = subprocess.run([sys.executable, "-m", "nndl_fast", "figures", "ch2"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "invalid choice: 'ch2'" in proc.stderr
    with pytest.raises(ValueError, match="chapter must be one of ch1, ch3, ch5, ch6"):
        figures.make_figures("ch4", str(tmp_path))


SCRIPT = r"""
import sys
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
import numpy as np
open_fig = plt.figure()
out = sys.argv[1]
from nndl_fast import plot, vanishing
plot.plot_monitoring([3, 2, 1], [50, 60, 70], filename=out + "/m.png")
plot.plot_filters(np.random.rand(4, 5, 5), out + "/f.png")
class Net(object):
    def predict(self, X):
        return np.zeros(len(X), dtype=int)
plot.plot_misclassified(Net(), (np.random.rand(6, 4), np.arange(6) % 3), out + "/x.png")
plot.plot_benchmark({"rows": [{"case": "c", "implementation": "i", "kind": "k",
                               "speedup_vs_reference": 2.0}]}, out + "/b.png")
vanishing.plot_speed_of_learning(np.array([[1.0, 2.0], [0.5, 1.0]]), out + "/v.png")
from nndl_fast import figures
figures._curve(out + "/c.png", [0, 1], [0, 1], 0, 1, "t")
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert plt.get_fignums() == [open_fig.number], plt.get_fignums()
print("backend kept")
"""


def test_saving_keeps_the_backend_and_open_figures(tmp_path):
    """Saving draws on a standalone Figure with an Agg canvas: pyplot's backend and its
    open figures (a notebook's inline display) are left alone."""
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "backend kept" in proc.stdout
    for name in "mfxbvc":
        assert (tmp_path / (name + ".png")).read_bytes()[:8] == PNG
