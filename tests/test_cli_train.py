"""The train and bench command lines, run as a user runs them (subprocesses, tiny settings)."""
import json
import os
import subprocess
import tempfile
import sys

import numpy as np
import pytest

import nndl_fast

# The folder the package under test was imported from (the checkout with an
# in-place build, or site-packages when installed): subprocesses import the same.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(nndl_fast.__file__)))


def run_cli(*args, timeout=120, cwd=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    # Not from the checkout's root: "python -m" would import the source tree there.
    return subprocess.run([sys.executable, "-m", "nndl_fast"] + list(args),
                          capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=cwd or tempfile.gettempdir())


def test_train_network_tiny_saves_a_loadable_network(tmp_path):
    path = tmp_path / "net.json"
    res = run_cli("train", "--train-size", "500", "--eval-size", "200", "--epochs", "2",
                  "--seed", "1", "--save", str(path))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    epochs = [l for l in lines if l.startswith("Epoch ")]
    assert [l.split(":")[0] for l in epochs] == ["Epoch 0", "Epoch 1"]
    assert all(" / 200  [" in l for l in epochs)
    assert "network.Network([784, 30, 10]), 2 epochs, mini-batch 10, eta 3" in res.stdout
    from nndl_fast.reference import network2
    net = network2.load(str(path))
    assert net.sizes == [784, 30, 10]
    assert net.cost is network2.QuadraticCost
    # The saved parameters reproduce the reported accuracy of the last epoch.
    from nndl_fast import mnist_loader
    test = mnist_loader.load_data_wrapper()[2][:200]
    correct = sum(int(np.argmax(net.feedforward(x)) == y) for x, y in test)
    assert epochs[-1].startswith("Epoch 1: %d / 200" % correct)


def test_train_preset_ch3_prints_the_books_monitoring_lines(tmp_path):
    path = tmp_path / "net2.json"
    res = run_cli("train", "--preset", "ch3", "--train-size", "300", "--eval-size", "100",
                  "--epochs", "1", "--save", str(path))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    i = out.index("Epoch 0 training complete")
    block = out[i:].splitlines()[:6]
    assert block[1].startswith("Cost on training data: ")
    assert block[2] == "Accuracy on training data: %s / 300" % block[2].split()[-3]
    assert block[3].startswith("Cost on evaluation data: ")
    assert block[4].endswith(" / 100") and block[4].startswith("Accuracy on evaluation data:")
    assert block[5] == ""
    assert "lmbda 5, " in out and "eta 0.5" in out
    with open(path) as f:
        doc = json.load(f)
    assert doc["cost"] == "CrossEntropyCost" and doc["sizes"] == [784, 30, 10]


def test_train_network2_relu_saves_its_activation(tmp_path):
    path = tmp_path / "relu.json"
    res = run_cli("train", "--net", "network2", "--activation", "ReLU", "--sizes",
                  "784,40,10", "--eta", "0.1", "--train-size", "300", "--eval-size", "100",
                  "--epochs", "1", "--save", str(path))
    assert res.returncode == 0, res.stderr
    assert "Network([784, 40, 10], cost=CrossEntropyCost, activation_fn=ReLU)" in res.stdout
    with open(path) as f:
        assert json.load(f)["activation"] == "ReLU"


def test_train_network3_absent_or_present():
    try:
        import nndl_fast.network3  # noqa: F401
    except ModuleNotFoundError:
        res = run_cli("train", "--net", "network3", "--epochs", "1")
        assert res.returncode == 2
        assert "network3 is not present" in res.stderr
    else:
        res = run_cli("train", "--preset", "ch6-fc", "--train-size", "100", "--eval-size",
                      "100", "--epochs", "1")
        assert res.returncode == 0, res.stderr
        assert "Finished training network." in res.stdout


@pytest.mark.parametrize("args, message", [
    (["--preset", "ch3", "--net", "network"], "trains network2"),
    (["--epochs", "-1"], "expected an integer >= 0, got -1"),
    (["--train-size", "0"], "--train-size must be at least 1"),
    (["--activation", "tanh"], "only network2's hidden layers take another activation"),
    (["--net", "network2", "--activation", "softplus"], "invalid choice: 'softplus'"),
    (["--preset", "ch6-dropout", "--data", None], None),
])
def test_train_rejects_bad_options(args, message, tmp_path):
    if message is None:  # expanded presets need the expanded file when no --data is given
        res = subprocess.run([sys.executable, "-m", "nndl_fast", "train", "--preset",
                              "ch6-dropout"], capture_output=True, text=True, cwd=str(tmp_path),
                             env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
        assert res.returncode != 0
        assert "python -m nndl_fast expand" in res.stderr
        return
    res = run_cli("train", *args)
    assert res.returncode != 0
    assert message in res.stderr


def test_train_progress_keeps_stdout_identical():
    pytest.importorskip("tqdm")
    common = ["train", "--train-size", "300", "--eval-size", "100", "--epochs", "2",
              "--seed", "3"]
    plain = run_cli(*common)
    bar = run_cli(*(common + ["--progress"]))
    assert plain.returncode == 0 and bar.returncode == 0, bar.stderr

    def book_lines(out):
        return [l.split("  [")[0] for l in out.splitlines() if l.startswith("Epoch ")]
    assert book_lines(bar.stdout) == book_lines(plain.stdout)
    assert len(book_lines(plain.stdout)) == 2
    assert "2/2" in bar.stderr and "epoch" in bar.stderr
    assert "2/2" not in plain.stderr


def test_bench_quick_suite_subset(tmp_path):
    out = tmp_path / "suite.json"
    res = run_cli("bench", "--quick", "--cases", "network,expand_mnist", "--train-size", "1000",
                  "--reference-size", "100", "--no-torch", "--threads", "1",
                  "--json", str(out), "--png", str(tmp_path / "suite.png"))
    assert res.returncode == 0, res.stderr
    assert "| network, batch 10 | nndl_fast | 1 | float64 |" in res.stdout
    assert "| network, batch 100 |" in res.stdout
    assert "quick mode" in res.stdout
    with open(out) as f:
        result = json.load(f)
    cases = {(r["case"], r["kind"]) for r in result["rows"]}
    assert ("network", "reference") in cases and ("expand_mnist", "reference") in cases
    assert result["environment"]["threadpool_info"]
    for r in result["rows"]:
        assert r["seconds"] > 0 and r["speedup_vs_reference"] > 0
        if r["case"] == "network":
            assert 0 < r["peak_fraction"] < 5
