"""Many independent runs at once: hyper-parameter sweeps and ensembles, on local
threads or on a Dask cluster.

* :func:`map_tasks` runs ``fn(task, **shared)`` for every task, on a pool of local
  threads or on a Dask ``distributed`` cluster (``scheduler=`` a ``Client`` or
  an address such as ``"tcp://host:8786"``). The ``shared`` objects (the data)
  go to each worker once (``client.scatter(..., broadcast=True)``), not inside
  every task. Each result reaches ``on_result`` in the driver as soon as it is
  finished; a task that raises stops the run with a :class:`TaskError` naming
  it. Tasks must be pure functions of their arguments: then a task that Dask
  runs again (its worker died) computes the same thing.
* :func:`sweep`: chapter 3's searches: one ``network2`` network per combination
  of ``eta``, ``lmbda``, ``mini_batch_size`` and ``seeds``, each result (the
  evaluation accuracy after every epoch) appended to a JSON-lines file as it
  arrives, so a killed driver loses nothing finished and a rerun trains only
  the settings not in the file yet.
* :func:`train_ensemble`: chapter 6's ensemble: several ``network3`` networks of
  one architecture, each from its own seed, trained as independent tasks.

Every run owns its random generators (``seed=``), so where it runs does not
change what it computes: a sweep gives the same numbers on one thread, on k
threads or on a cluster. Runs sharing a process share its cores
(``cores // runs`` threads each, see ``nndl_fast._config.shared_num_threads``);
Dask's worker processes start with ``OMP_NUM_THREADS=1``, so there a run takes
one thread per task slot unless ``threads_per_run`` says otherwise.
"""
import concurrent.futures
import hashlib
import itertools
import json
import math
import numbers
import os
import socket
import time
import uuid
import warnings

import numpy as np

__all__ = ["TaskError", "map_tasks", "sweep", "sweep_settings", "read_results",
           "format_table", "train_ensemble"]


class TaskError(RuntimeError):
    """A task raised: ``task`` is the task, ``__cause__`` its exception."""

    def __init__(self, message, task=None):
        super().__init__(message)
        self.task = task


def _client(scheduler):
    """(client, whether we made it) for a ``scheduler=`` value that is not None."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError("a scheduler needs Dask's distributed: pip install "
                          "'nndl_fast[dask]'") from exc
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    if isinstance(scheduler, str):
        return distributed.Client(scheduler), True
    raise TypeError("scheduler must be None, a distributed.Client or a scheduler address such "
                    "as 'tcp://host:8786', got %r" % (scheduler,))


def map_tasks(fn, tasks, scheduler=None, n_jobs=1, shared=None, on_result=None,
              describe=repr, name=None):
    """``[fn(task, **shared) for task in tasks]``, the calls run in parallel.

    Parameters
    ----------
    fn : callable
        A module-level function (Dask pickles it by reference), pure in its
        arguments.
    tasks : iterable
        One argument per call (small and picklable: settings, seeds).
    scheduler : None, ``distributed.Client`` or str
        None runs the calls on ``n_jobs`` local threads (the compiled kernels
        release the GIL); a client or a scheduler address runs them on that Dask
        cluster (``n_jobs`` is then the cluster's business).
    shared : dict or None
        Keyword arguments every call gets (the data). With Dask they are
        scattered to every worker once, and each task receives the worker's copy.
    on_result : callable or None
        ``on_result(index, task, result)``, called in this thread as each call
        finishes (in the order they finish).
    describe : callable
        Names a task in the :class:`TaskError` raised when a call fails; the
        calls not yet finished are then cancelled.
    name : str or None
        Prefix of the Dask task keys (shown on its dashboard).

    Returns the results in the order of ``tasks``.
    """
    tasks = list(tasks)
    shared = dict(shared or {})
    results = [None] * len(tasks)
    if not tasks:
        return results
    if scheduler is None:
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs < 1:
            raise ValueError("n_jobs must be an int >= 1, got %r" % (n_jobs,))
        with concurrent.futures.ThreadPoolExecutor(max_workers=int(n_jobs)) as pool:
            index_of = {pool.submit(fn, task, **shared): i for i, task in enumerate(tasks)}
            try:
                for future in concurrent.futures.as_completed(index_of):
                    i = index_of[future]
                    exc = future.exception()
                    if exc is not None:
                        raise TaskError("task %s failed: %s: %s"
                                        % (describe(tasks[i]), type(exc).__name__, exc),
                                        tasks[i]) from exc
                    results[i] = future.result()
                    if on_result is not None:
                        on_result(i, tasks[i], results[i])
            except BaseException:
                for future in index_of:
                    future.cancel()
                raise
        return results

    import distributed
    client, own = _client(scheduler)
    futures = []
    try:
        # Arrays go to every worker once; small values travel with each task.
        arrays = {k: v for k, v in shared.items() if isinstance(v, np.ndarray)}
        scattered = {k: v for k, v in shared.items() if k not in arrays}
        if arrays:
            # Keys of this call's own (a list, hash=False: random keys): the same
            # arrays scattered by an earlier call got the same keys (their hash, or
            # a dict's own keys), which the scheduler may still be releasing, and
            # tasks then failed with "lost dependencies".
            names = list(arrays)
            sent = client.scatter([arrays[k] for k in names], broadcast=True, hash=False)
            scattered.update(zip(names, sent))
        prefix = "%s-%s" % (name or getattr(fn, "__name__", "task"), uuid.uuid4().hex[:8])
        futures = [client.submit(fn, task, key="%s-%d" % (prefix, i), pure=False, **scattered)
                   for i, task in enumerate(tasks)]
        index_of = {f.key: i for i, f in enumerate(futures)}
        for future in distributed.as_completed(futures):
            i = index_of[future.key]
            if future.status == "error":
                exc = future.exception()
                raise TaskError("task %s failed: %s: %s"
                                % (describe(tasks[i]), type(exc).__name__, exc),
                                tasks[i]) from exc
            results[i] = future.result()
            if on_result is not None:
                on_result(i, tasks[i], results[i])
            future.release()
    finally:
        for future in futures:
            if not future.done():
                future.cancel()
        if own:
            client.close()
    return results


# -------------------------------------------------------------------- sweeps

_SETTING_KEYS = ("sizes", "cost", "epochs", "eta", "lmbda", "mini_batch_size", "seed", "data")
_COSTS = ("cross-entropy", "quadratic", "log-likelihood")


def _as_arrays(data, what):
    """(X float32/float64 (n, n_in), int labels (n,)) from an (X, y) pair of arrays
    or the book's list of (x, y) pairs (y a one-hot column or an int)."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        X, y = np.asarray(data[0]), np.asarray(data[1])
    elif isinstance(data, list):
        if not data:
            raise ValueError("%s_data is empty" % what)
        X = np.stack([np.asarray(x).ravel() for x, _ in data])
        y = np.array([int(np.argmax(t)) if np.ndim(t) else int(t) for _, t in data])
    else:
        raise TypeError("%s_data must be an (X, y) pair of arrays or a list of (x, y) pairs, "
                        "got %s" % (what, type(data).__name__))
    if y.ndim == 2:
        y = np.argmax(y, axis=1)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError("%s_data: expected X (n, n_in) and y (n,), got %s and %s"
                         % (what, X.shape, y.shape))
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    return np.ascontiguousarray(X), y.astype(np.int64)


def _fingerprint(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()[:16]


def _number_list(values, name, kind=float):
    if isinstance(values, (numbers.Number, str)):
        values = [values]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError("%s values must be finite numbers, got %r" % (name, v))
        out.append(kind(v) if kind is float else int(v))
    if not out:
        raise ValueError("%s needs at least one value" % name)
    return list(dict.fromkeys(out))


def sweep_settings(eta=(0.5,), lmbda=(0.0,), mini_batch_size=(10,), seeds=(0,),
                   sizes=(784, 30, 10), cost="cross-entropy", epochs=30, data=None):
    """The settings of a sweep, one dict per combination (the sweep's order:
    eta, then lmbda, then mini_batch_size, then seed)."""
    sizes = [int(s) for s in sizes]
    return [{"sizes": sizes, "cost": cost, "epochs": int(epochs), "eta": e, "lmbda": l,
             "mini_batch_size": m, "seed": s, "data": data}
            for e, l, m, s in itertools.product(_number_list(eta, "eta"),
                                                _number_list(lmbda, "lmbda"),
                                                _number_list(mini_batch_size,
                                                             "mini_batch_size", int),
                                                _number_list(seeds, "seeds", int))]


def _setting_key(setting):
    return json.dumps({k: setting[k] for k in _SETTING_KEYS}, sort_keys=True)


def describe_setting(setting):
    """``eta=0.5 lmbda=5.0 mini_batch_size=10 seed=0 (sizes 784,30,10, ...)``."""
    return ("eta=%r lmbda=%r mini_batch_size=%r seed=%r (sizes %s, cost %s, %d epochs)"
            % (setting["eta"], setting["lmbda"], setting["mini_batch_size"], setting["seed"],
               ",".join(map(str, setting["sizes"])), setting["cost"], setting["epochs"]))


def train_setting(setting, X, y, X_eval, y_eval, threads_per_run=None):
    """One sweep run: a ``network2`` network for ``setting`` trained on (X, y), its
    accuracy on (X_eval, y_eval) after every epoch. A pure function of its
    arguments (the network's generators come from ``setting["seed"]``)."""
    from . import _training, network2
    costs = {"cross-entropy": network2.CrossEntropyCost, "quadratic": network2.QuadraticCost,
             "log-likelihood": network2.LogLikelihoodCost}
    if setting["cost"] not in costs:
        raise ValueError("cost must be one of %s, got %r" % (", ".join(_COSTS), setting["cost"]))
    t0 = time.perf_counter()
    net = network2.Network(setting["sizes"], cost=costs[setting["cost"]],
                           num_threads=threads_per_run, seed=setting["seed"])
    run = _training.train_dense(net, X, y, setting["epochs"], setting["mini_batch_size"],
                                setting["eta"], lmbda=setting["lmbda"],
                                evaluation=(X_eval, y_eval))
    result = dict(setting)
    result.update(evaluation_accuracy=run["evaluation_accuracy"],
                  n_evaluation=run["n_evaluation"],
                  seconds=round(time.perf_counter() - t0, 3),
                  worker="%s:%d" % (socket.gethostname(), os.getpid()))
    return result


def read_results(path):
    """The results in a sweep's JSON-lines file (a last line cut short by a killed
    writer is skipped with a warning)."""
    results = []
    if not os.path.exists(path):
        return results
    with open(path, "r") as f:
        lines = f.read().split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number >= len(lines) - 1:
                warnings.warn("%s: line %d is cut short (a run was stopped while writing "
                              "it); its setting runs again" % (path, number))
                continue
            raise ValueError("%s: line %d is not a JSON record" % (path, number)) from None
        if not isinstance(record, dict) or not all(k in record for k in _SETTING_KEYS):
            raise ValueError("%s: line %d is not a sweep result (expected the keys %s)"
                             % (path, number, ", ".join(_SETTING_KEYS)))
        results.append(record)
    return results


def _append(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _drop_cut_line(path):
    """Remove a last line cut short (no newline: its writer was stopped), so that
    the next record starts a line of its own and the file stays valid."""
    if not os.path.exists(path) or not os.path.getsize(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def sweep(training_data, evaluation_data, eta=(0.5,), lmbda=(0.0,), mini_batch_size=(10,),
          seeds=(0,), sizes=(784, 30, 10), cost="cross-entropy", epochs=30, out=None,
          scheduler=None, n_jobs=1, threads_per_run=None, on_result=None):
    """Train one ``network2`` network per combination of ``eta``, ``lmbda``,
    ``mini_batch_size`` and ``seeds``; return one result per combination.

    ``training_data`` / ``evaluation_data``: the book's lists of (x, y) pairs or
    (X, y) pairs of arrays (X (n, n_in), y int labels or one-hot rows). A result
    is the setting (``sizes, cost, epochs, eta, lmbda, mini_batch_size, seed``
    and ``data``, a fingerprint of the two data sets) with
    ``evaluation_accuracy`` (correct answers after each epoch), ``n_evaluation``,
    ``seconds`` and ``worker`` (host:pid). With ``out`` (a path) each result is
    appended to that JSON-lines file as soon as it is finished, and settings
    already in it are not trained again. ``scheduler`` / ``n_jobs``: see
    :func:`map_tasks`; ``threads_per_run``: the ``num_threads`` of every network
    (None: the package's policy, shared among the runs of a process).
    ``on_result(result)`` is called as each new result arrives.
    """
    if cost not in _COSTS:
        raise ValueError("cost must be one of %s, got %r" % (", ".join(_COSTS), cost))
    X, y = _as_arrays(training_data, "training")
    X_eval, y_eval = _as_arrays(evaluation_data, "evaluation")
    settings = sweep_settings(eta, lmbda, mini_batch_size, seeds, sizes, cost, epochs,
                              data=_fingerprint(X, y, X_eval, y_eval))
    done = {}
    if out is not None:
        out = os.fspath(out)
        for record in read_results(out):
            done[_setting_key(record)] = record
        _drop_cut_line(out)
    todo = [s for s in settings if _setting_key(s) not in done]

    def finished(index, setting, result):
        if out is not None:
            _append(out, result)
        done[_setting_key(setting)] = result
        if on_result is not None:
            on_result(result)

    map_tasks(train_setting, todo, scheduler=scheduler, n_jobs=n_jobs,
              shared={"X": X, "y": y, "X_eval": X_eval, "y_eval": y_eval,
                      "threads_per_run": threads_per_run},
              on_result=finished, describe=describe_setting, name="sweep")
    return [done[_setting_key(s)] for s in settings]


def format_table(results):
    """A text table: one row per result (eta, lmbda, mini-batch size, seed, best and
    final accuracy, the accuracy after each epoch)."""
    rows = ["%8s %8s %5s %5s %8s %8s  %s" % ("eta", "lmbda", "batch", "seed", "best", "final",
                                            "accuracy per epoch (%)")]
    for r in results:
        n = float(r["n_evaluation"]) or 1.0
        curve = [100.0 * c / n for c in r["evaluation_accuracy"]]
        rows.append("%8g %8g %5d %5d %7.2f%% %7.2f%%  %s"
                    % (r["eta"], r["lmbda"], r["mini_batch_size"], r["seed"],
                       max(curve) if curve else float("nan"),
                       curve[-1] if curve else float("nan"),
                       " ".join("%.1f" % c for c in curve)))
    return "\n".join(rows)


# ------------------------------------------------------------------ ensembles

def train_member(task, x, y, x_eval=None, y_eval=None, threads_per_run=None):
    """One ensemble member: a copy of ``task["template"]`` (a ``network3.Network``)
    with initial values drawn from ``task["seed"]``, trained by the book's SGD.
    Returns ``(metadata, arrays, evaluation_accuracy)`` (``network3.describe``'s
    metadata and arrays)."""
    import copy
    from . import _training, network3
    from ._random import make_generators
    net = copy.deepcopy(task["template"])
    net.num_threads = threads_per_run
    net.step = 0
    if task.get("dropout_seed") is not None:
        net.dropout_seed = int(task["dropout_seed"])
    generators = make_generators(seed=task["seed"])
    for layer in net.layers:
        network3._draw_initial_values(layer, generators, net.dtype)
    evaluation = None if x_eval is None else (x_eval, y_eval)
    run = _training.train_conv(net, x, y, task["epochs"], task["eta"], lmbda=task["lmbda"],
                               evaluation=evaluation)
    metadata, arrays = network3.describe(net)
    return metadata, arrays, run["evaluation_accuracy"]


def train_ensemble(template, training_data, epochs, eta, lmbda=0.0, seeds=range(5),
                   evaluation_data=None, dropout_seeds=None, scheduler=None, n_jobs=1,
                   threads_per_run=None):
    """Chapter 6's ensemble: one network per seed, each with ``template``'s layers
    (a ``network3.Network``; its values are not used) and initial values from its
    seed, trained by the book's SGD for ``epochs`` (as ``net.SGD(training_data,
    epochs, mini_batch_size, eta, ..., lmbda=lmbda)`` after ``np.random.seed``,
    without its printing), as independent tasks of :func:`map_tasks`.

    ``training_data`` / ``evaluation_data``: (x, y) pairs of arrays or of
    ``SharedArray`` (``load_data_shared``'s). ``dropout_seeds``: one per
    network (default: the template's, the book's). Returns the trained
    networks; each has ``evaluation_accuracy``, the fraction of
    ``evaluation_data`` right after every epoch. Vote with
    ``network3.ensemble_accuracy(nets, test_data)``.
    """
    from . import network3
    from .reference.network3 import _value
    if not isinstance(template, network3.Network):
        raise TypeError("template must be a network3.Network, got %s" % type(template).__name__)
    seeds = [int(s) for s in seeds]
    if dropout_seeds is not None and len(dropout_seeds) != len(seeds):
        raise ValueError("expected one dropout seed per seed (%d), got %d"
                         % (len(seeds), len(dropout_seeds)))
    tasks = [{"template": template, "seed": s, "epochs": int(epochs),
              "eta": float(eta), "lmbda": float(lmbda),
              "dropout_seed": None if dropout_seeds is None else int(dropout_seeds[i])}
             for i, s in enumerate(seeds)]
    x = np.asarray(_value(training_data[0]))
    shared = {"x": np.ascontiguousarray(x.reshape(len(x), -1)),
              "y": np.asarray(_value(training_data[1])), "threads_per_run": threads_per_run}
    if evaluation_data is not None:
        xe = np.asarray(_value(evaluation_data[0]))
        shared.update(x_eval=np.ascontiguousarray(xe.reshape(len(xe), -1)),
                      y_eval=np.asarray(_value(evaluation_data[1])))
    results = map_tasks(train_member, tasks, scheduler=scheduler, n_jobs=n_jobs,
                        shared=shared, name="ensemble",
                        describe=lambda t: "ensemble member seed=%d" % t["seed"])
    nets = []
    for meta, arrs, accuracy in results:
        net = network3.from_description(meta, arrs, num_threads=template.num_threads)
        net.evaluation_accuracy = accuracy
        nets.append(net)
    return nets
