"""sweep, map_tasks and train_ensemble on local threads: the book's numbers, results
streamed to a file and skipped on a rerun, clear errors."""
import contextlib
import io
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

import nndl_fast
from nndl_fast import network2, network3, scaleout


@pytest.fixture(scope="module")
def arrays(mnist_wrapped):
    return (scaleout._as_arrays(mnist_wrapped[0][:600], "training"),
            scaleout._as_arrays(mnist_wrapped[1][:200], "validation"))


def _strip(results):
    return [{k: v for k, v in r.items() if k not in ("seconds", "worker")} for r in results]


def test_sweep_is_the_books_sgd_for_each_setting(arrays, mnist_wrapped):
    train, valid = arrays
    results = nndl_fast.sweep(train, valid, eta=[0.5, 3.0], lmbda=[0.0, 5.0], seeds=[1],
                              sizes=(784, 20, 10), epochs=2, n_jobs=2)
    assert [(r["eta"], r["lmbda"]) for r in results] == [(0.5, 0.0), (0.5, 5.0), (3.0, 0.0),
                                                         (3.0, 5.0)]
    for r in results:
        np.random.seed(1)
        random.seed(1)
        net = network2.Network([784, 20, 10])
        with contextlib.redirect_stdout(io.StringIO()):
            curves = net.SGD(list(mnist_wrapped[0][:600]), 2, 10, r["eta"], lmbda=r["lmbda"],
                             evaluation_data=list(mnist_wrapped[1][:200]),
                             monitor_evaluation_accuracy=True)
        assert r["evaluation_accuracy"] == curves[1]
        assert r["n_evaluation"] == 200
    # Book lists give the same results as arrays, on one thread as on two.
    again = nndl_fast.sweep(list(mnist_wrapped[0][:600]), list(mnist_wrapped[1][:200]),
                            eta=[0.5, 3.0], lmbda=[0.0, 5.0], seeds=[1], sizes=(784, 20, 10),
                            epochs=2)
    assert _strip(again) == _strip(results)


def test_sweep_streams_to_a_file_and_a_rerun_skips_finished_settings(arrays, tmp_path):
    train, valid = arrays
    out = tmp_path / "sweep.jsonl"
    first = nndl_fast.sweep(train, valid, eta=[0.5], lmbda=[0.0, 1.0], sizes=(784, 10, 10),
                            epochs=1, out=out)
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["eta"] == 0.5
    # A driver killed while writing leaves a line cut short: it is skipped (with a
    # warning) and its setting trained again.
    with open(out, "a") as f:
        f.write('{"eta": 3.0, "lmbda": 0.0, "si')
    trained = []
    with pytest.warns(UserWarning, match="line 3 is cut short"):
        second = nndl_fast.sweep(train, valid, eta=[0.5, 3.0], lmbda=[0.0, 1.0],
                                 sizes=(784, 10, 10), epochs=1, out=out,
                                 on_result=trained.append)
    assert [(r["eta"], r["lmbda"]) for r in trained] in ([(3.0, 0.0), (3.0, 1.0)],
                                                         [(3.0, 1.0), (3.0, 0.0)])
    assert _strip(second[:2]) == _strip(first)
    # The line cut short is gone; the file holds the four results.
    records = scaleout.read_results(str(out))
    assert [(r["eta"], r["lmbda"]) for r in records[:2]] == [(0.5, 0.0), (0.5, 1.0)]
    assert len(records) == 4 and out.read_text().endswith("}\n")
    # Other data is another setting.
    third = nndl_fast.sweep((train[0][:300], train[1][:300]), valid, eta=[0.5], lmbda=[0.0],
                            sizes=(784, 10, 10), epochs=1, out=out)
    assert third[0]["data"] != first[0]["data"]


def test_a_failing_setting_is_named(arrays):
    train, valid = arrays
    with pytest.raises(scaleout.TaskError,
                       match=r"task eta=0\.5 lmbda=0\.0 mini_batch_size=10 seed=0 \(sizes "
                             r"783,10,10, cost cross-entropy, 1 epochs\) failed: ValueError: X "
                             r"has shape \(600, 784\), expected \(n_samples, 783\)"):
        nndl_fast.sweep(train, valid, sizes=(783, 10, 10), epochs=1)


def _square_or_fail(task):
    if task == 3:
        raise ArithmeticError("three is not allowed")
    return task * task


def test_map_tasks_order_callbacks_and_errors():
    seen = []
    assert nndl_fast.map_tasks(_square_or_fail, [5, 1, 2], n_jobs=2,
                               on_result=lambda i, t, r: seen.append((i, t, r))) == [25, 1, 4]
    assert sorted(seen) == [(0, 5, 25), (1, 1, 1), (2, 2, 4)]
    with pytest.raises(scaleout.TaskError, match="task 3 failed: ArithmeticError: three is "
                                                 "not allowed") as info:
        nndl_fast.map_tasks(_square_or_fail, [1, 3, 4])
    assert info.value.task == 3 and isinstance(info.value.__cause__, ArithmeticError)
    with pytest.raises(ValueError, match="n_jobs must be an int >= 1, got 0"):
        nndl_fast.map_tasks(_square_or_fail, [1], n_jobs=0)
    pytest.importorskip("distributed")
    with pytest.raises(TypeError, match="scheduler must be None, a distributed.Client or"):
        nndl_fast.map_tasks(_square_or_fail, [1], scheduler=8786)


def _ensemble_template():
    return network3.Network([
        network3.ConvPoolLayer(image_shape=(10, 1, 28, 28), filter_shape=(3, 1, 5, 5),
                               poolsize=(2, 2)),
        network3.FullyConnectedLayer(n_in=3 * 12 * 12, n_out=20, p_dropout=0.1),
        network3.SoftmaxLayer(n_in=20, n_out=10)], 10)


def test_train_ensemble_is_the_books_sgd_per_seed(arrays):
    (X, y), (X_val, y_val) = arrays
    x = X[:300].astype(np.float32)
    nets = nndl_fast.train_ensemble(_ensemble_template(), (x, y[:300]), 2, 0.1, lmbda=0.1,
                                    seeds=[3, 4], evaluation_data=(X_val, y_val), n_jobs=2)
    assert len(nets) == 2
    for seed, net in zip([3, 4], nets):
        np.random.seed(seed)
        book = _ensemble_template()
        with contextlib.redirect_stdout(io.StringIO()):
            book.SGD((network3.SharedArray(x), network3.SharedArray(y[:300])), 2, 10, 0.1,
                     None, None, lmbda=0.1)
        for a, b in zip(book.params, net.params):
            assert np.array_equal(a.get_value(), b.get_value())
        assert net.step == book.step
        assert net.evaluation_accuracy[-1] == float(np.mean(book.predict(X_val) == y_val))
    vote = network3.ensemble_accuracy(nets, (X_val, y_val))
    assert 0.0 <= vote <= 1.0


def test_cli_sweep(tmp_path):
    out = tmp_path / "s.jsonl"
    cmd = [sys.executable, "-m", "nndl_fast", "sweep", "--eta", "0.5,3", "--lmbda", "0",
           "--epochs", "1", "--train-size", "300", "--eval-size", "100", "--sizes", "784,10,10",
           "--out", str(out)]
    env = dict(os.environ)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "Sweep of 2 settings on 300 training and 100 validation images" in proc.stdout
    assert proc.stdout.count(": best ") == 2
    assert "accuracy per epoch (%)" in proc.stdout
    assert len(out.read_text().splitlines()) == 2
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                           cwd=str(tmp_path))
    assert rerun.returncode == 0 and rerun.stdout.count(": best ") == 0
    bad = subprocess.run(cmd[:-2] + ["--sizes", "700,10", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, env=env,
                         cwd=str(tmp_path))
    assert bad.returncode == 2
    assert "error: task eta=0.5 lmbda=0.0" in bad.stderr and "expected (n_samples, 700)" \
        in bad.stderr
