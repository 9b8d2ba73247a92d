"""Sweeps on a real Dask scheduler: a LocalCluster of two worker processes on 127.0.0.1.

The same numbers as a local run, work on more than one worker, a worker killed in
the middle of a task (Dask runs the task again, with the same result), a failing
task named by its settings, and GridSearchCV through joblib's Dask backend.
"""
import os
import signal
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import nndl_fast  # noqa: E402
from nndl_fast import scaleout  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture(scope="module")
def arrays(mnist_wrapped):
    return (scaleout._as_arrays(mnist_wrapped[0][:800], "training"),
            scaleout._as_arrays(mnist_wrapped[1][:200], "validation"))


def _strip(results):
    return [{k: v for k, v in r.items() if k not in ("seconds", "worker")} for r in results]


SWEEP = dict(eta=[0.5, 3.0], lmbda=[0.0, 5.0], seeds=[2], sizes=(784, 30, 10), epochs=6)


def test_cluster_sweep_equals_the_local_sweep(client, arrays, tmp_path):
    train, valid = arrays
    local = nndl_fast.sweep(train, valid, **SWEEP)
    out = tmp_path / "sweep.jsonl"
    remote = nndl_fast.sweep(train, valid, scheduler=client, out=out, **SWEEP)
    assert _strip(remote) == _strip(local)
    assert len(out.read_text().splitlines()) == 4
    workers = {r["worker"] for r in remote}
    assert len(workers) > 1, workers
    assert all(w.split(":")[1] != str(os.getpid()) for w in workers)
    # The scheduler's address works as well as a client; nothing runs again.
    again = nndl_fast.sweep(train, valid, scheduler=client.scheduler.address, out=out, **SWEEP)
    assert again == remote


def test_shared_data_reaches_each_worker_once(client):
    """Every task on a worker gets that worker's one copy of the scattered array."""
    def where(task, X):
        return os.getpid(), id(X), float(X.sum())

    X = np.arange(200000, dtype=np.float64)
    results = nndl_fast.map_tasks(where, range(12), scheduler=client, shared={"X": X})
    by_pid = {}
    for pid, ident, total in results:
        assert total == float(X.sum())
        by_pid.setdefault(pid, set()).add(ident)
    assert all(len(idents) == 1 for idents in by_pid.values()), by_pid
    assert os.getpid() not in by_pid


def test_a_failing_setting_is_named_on_the_cluster(client, arrays):
    train, valid = arrays
    with pytest.raises(scaleout.TaskError, match=r"task eta=0\.5 lmbda=0\.0 mini_batch_size=10 "
                                                 r"seed=0 \(sizes 700,10.*failed: ValueError: "
                                                 r"X has shape \(800, 784\), expected "
                                                 r"\(n_samples, 700\)"):
        nndl_fast.sweep(train, valid, sizes=(700, 10), epochs=1, scheduler=client)


def test_a_worker_killed_mid_task_changes_nothing(client, arrays, tmp_path):
    train, valid = arrays
    settings = dict(SWEEP, eta=[0.5, 1.0, 3.0], epochs=25)
    local = nndl_fast.sweep(train, valid, **settings)
    pids = client.run(os.getpid)
    out = tmp_path / "sweep.jsonl"
    box = {}

    def drive():
        try:
            box["results"] = nndl_fast.sweep(train, valid, scheduler=client, out=out,
                                             **settings)
        except BaseException as exc:  # reported below
            box["error"] = exc

    driver = threading.Thread(target=drive)
    driver.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and driver.is_alive():
        executing = client.run(lambda dask_worker: len(dask_worker.state.executing))
        busy = [addr for addr, n in executing.items() if n and addr in pids]
        if busy:
            victim = busy[0]
        else:
            time.sleep(0.05)
    assert victim is not None, "no task started on a worker"
    os.kill(pids[victim], signal.SIGKILL)
    driver.join(180)
    assert not driver.is_alive()
    assert "error" not in box, box.get("error")
    assert _strip(box["results"]) == _strip(local)
    assert len(out.read_text().splitlines()) == len(local)
    client.wait_for_workers(2, timeout=60)


def test_grid_search_through_joblibs_dask_backend(client, arrays):
    pytest.importorskip("sklearn")
    from joblib import parallel_config
    from sklearn.model_selection import GridSearchCV
    from nndl_fast.sklearn import NNDLClassifier
    (X, y), _ = arrays
    grid = {"eta": [0.5, 3.0]}
    est = NNDLClassifier(hidden_sizes=(10,), epochs=2, random_state=0)
    serial = GridSearchCV(est, grid, cv=2).fit(X, y)
    with parallel_config(backend="dask"):
        remote = GridSearchCV(est, grid, cv=2, n_jobs=2).fit(X, y)
    assert np.array_equal(serial.cv_results_["mean_test_score"],
                          remote.cv_results_["mean_test_score"])


def test_reproduce_on_the_cluster_equals_the_local_runs(client, tmp_path):
    """reproduce(..., scheduler=client): the book's chapter-1 rows (quick data) on the
    cluster's worker processes, recorded here as they finish, with the numbers of the
    same runs made locally."""
    from nndl_fast import reproduce
    kw = dict(quick=True, seeds=[0, 1], rows=["ch1-30"], log=None)
    local = reproduce.reproduce("ch1", out_dir=str(tmp_path / "local"), **kw)
    remote = reproduce.reproduce("ch1", out_dir=str(tmp_path / "cluster"), scheduler=client,
                                 **kw)
    assert sorted(r["task"] for r in remote) == sorted(r["task"] for r in local)
    by_key = {r["task"]: r for r in local}
    for r in remote:
        assert r["value"] == by_key[r["task"]]["value"]
        timeless = lambda c: {k: v for k, v in c.items() if k != "seconds"}   # noqa: E731
        assert timeless(r["curve"]) == timeless(by_key[r["task"]]["curve"])
    recorded = reproduce.plan("ch1", str(tmp_path / "cluster"), reproduce.QUICK, [0, 1],
                              ["ch1-30"])
    assert recorded == []       # both runs were recorded by the driver
