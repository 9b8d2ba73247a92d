"""The book's results tables, run again: every reported run of chapters 1, 3 and 6.

    python -m nndl_fast reproduce ch1|ch3|ch6|all [--quick] [--out DIR] [--seeds 0,1,2]
                                                   [--rows NAME,...] [--threads N] [--list]

Each row of :data:`ROWS` is one of the book's runs with its hyper-parameters and
epochs; a row runs once per seed. Every finished run is appended at once to
``DIR/results.json`` (row, seed, best validation accuracy, test accuracy at that
epoch, the per-epoch curves, wall time, threads, machine, versions); then
``DIR/results.md`` (the book's number next to ours) and ``DIR/curves-<chapter>.png``
(validation accuracy per epoch; needs matplotlib; redrawn at most every
``PLOT_INTERVAL`` seconds, and at the end) are written again. A rerun
skips the finished runs. The run in progress is checkpointed after every epoch
(the network in its chapter's file format, the epoch, the curves so far and the
shuffling generator's state) under ``DIR/state/``, so a killed run resumes at
the next epoch and ends with the numbers an uninterrupted run gets.

From Python::

    from nndl_fast import reproduce
    reproduce.reproduce("ch1", out_dir="results")          # what the command does

The work is a list of independent tasks, so that any scheduler can run them::

    spec = reproduce.FULL                                  # or QUICK, or a DataSpec
    for task in reproduce.plan("all", out_dir, spec):      # what is left to do, in order
        result = reproduce.run_one(task.row, task.seed, spec, out_dir, threads=2)
        reproduce.record(out_dir, result, spec)            # append, rewrite table and plot

``run_task(task, spec, out_dir, threads)`` is those two calls in one. Tasks
depend on nothing but their ``requires`` (the ensemble on the dropout runs), so
a process pool can run them in waves, e.g. with joblib::

    tasks = reproduce.plan("ch6", out_dir, spec)
    for wave in ([t for t in tasks if not t.requires], [t for t in tasks if t.requires]):
        Parallel(n_jobs=2)(delayed(reproduce.run_task)(t, spec, out_dir, threads=1)
                           for t in wave)

Or on a Dask cluster: ``reproduce(..., scheduler="tcp://host:8786")`` (the
command's ``--scheduler``) runs the tasks through :func:`nndl_fast.map_tasks`,
in those two waves, and records each result here as it arrives. The workers
need the output directory on a file system they share with this process (the
checkpoints, the finished networks the ensemble votes with, the expanded data
live under ``DIR/state/``).

``run_one`` seeds chapter 6's layers through the global ``np.random`` (as the
book's code does; chapters 1 and 3 use the network's own generators, ``seed=``)
and redirects ``sys.stdout`` while training: run tasks side by side in
processes, not threads (a process runs one at a time: a second thread's task
waits for the first). Each process loads MNIST once; the expanded
training set is made once and kept in ``DIR/state/`` (an uncompressed ``.npy``,
memory-mapped, so processes share one copy).

Seeds. A run with seed ``s`` draws the numbers the book's code draws after
``random.seed(s)`` and ``np.random.seed(s)``, as ``python -m nndl_fast train --seed s``
does (chapters 1 and 3 from the network's own generators, ``seed=s``); a
chapter-6 net's dropout masks are seeded by ``np.random.RandomState(s).randint(999999)``
(for s = 0 the book's own seed), so every ensemble member drops different units.

``--quick`` (:data:`QUICK`) runs every row on small data (1,000 training images,
1,000 validation and test images, at most 2 epochs, the expanded set made from
200 images), to check the whole pipeline in seconds; its results say so and
never mix with full ones.
"""
import contextlib
import dataclasses
import datetime
import functools
import io
import json
import os
import platform
import random
import threading
import time
from typing import Optional, Tuple

import numpy as np

from ._files import atomic_write

__all__ = ["Row", "ROWS", "CHAPTERS", "DataSpec", "FULL", "QUICK", "Task", "rows_for",
           "plan", "run_one", "record", "run_task", "reproduce", "write_reports",
           "read_results", "default_out_dir", "task_key", "chapter6_layers", "network3_layers",
           "CH6_NETS", "dropout_seed", "expanded_training", "describe_rows", "RESULTS_FILE"]

RESULTS_FILE = "results.json"
TABLE_FILE = "results.md"
RESULTS_FORMAT = "nndl_fast.reproduce"
RESULTS_VERSION = 1
#: After a run, its chapter's plot is drawn again when the last drawing is older
#: than this (seconds); ``reproduce`` draws every plot at its end.
PLOT_INTERVAL = 10.0
CHECKPOINT_FORMAT = "nndl_fast.reproduce.checkpoint"

CHAPTERS = ("ch1", "ch3", "ch6")
CHAPTER_TITLES = {"ch1": "Chapter 1: network.py (quadratic cost, sigmoid)",
                  "ch3": "Chapter 3: network2.py (cross-entropy, L2, weight initialisation)",
                  "ch6": "Chapter 6: network3.py (conv nets, ReLU, expanded data, dropout)"}

#: What a row's "ours" number is, as the book measured it.
MEASURES = {
    "peak_test": "the best test accuracy over the epochs",
    "final_validation": "validation accuracy after the last epoch",
    "validation_epoch1": "validation accuracy after the first epoch",
    "test_at_best_validation": "test accuracy at the epoch of best validation accuracy",
    "vote_test": "test accuracy of the members' majority vote",
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One of the book's runs.

    ``module`` is "network", "network2", "network3" or "ensemble"; ``net`` the
    layer sizes (chapters 1 and 3), the name of the chapter-6 layers
    (``network3_layers``) or, for an ensemble, the row whose nets vote.
    ``book`` is the book's figure (a fraction) and ``book_text`` how the book
    states it; ``measure`` (a key of ``MEASURES``) is what of ours compares with it.
    """
    name: str
    chapter: str
    title: str
    module: str
    net: object
    epochs: int
    eta: float
    lmbda: float = 0.0
    mini_batch_size: int = 10
    init: str = "default"
    train_size: Optional[int] = None
    expanded: bool = False
    seeds: Tuple[int, ...] = (0,)
    book: Optional[float] = None
    book_text: str = ""
    measure: str = "peak_test"
    panel: str = ""

    @property
    def short(self):
        """The name without its chapter prefix ("30" for "ch1-30")."""
        return self.name[len(self.chapter) + 1:]


_FULL_DATA = "50,000 training images"
_SMALL_DATA = "1,000 training images"

ROWS = (
    Row("ch1-30", "ch1", "[784, 30, 10], eta 3.0, mini-batch 10", "network", (784, 30, 10),
        30, 3.0, seeds=(0, 1, 2), book=0.9542, book_text="95.42% (best of three runs)"),
    Row("ch1-100", "ch1", "[784, 100, 10], eta 3.0 (chaotic: seeds differ)", "network",
        (784, 100, 10), 30, 3.0, seeds=(0, 1, 2, 3, 4), book=0.9659, book_text="96.59%"),

    Row("ch3-ce-30", "ch3", "[784, 30, 10], cross-entropy, eta 0.5, large initial weights",
        "network2", (784, 30, 10), 30, 0.5, init="large", seeds=(0, 1, 2), book=0.9549,
        book_text="95.49%", panel=_FULL_DATA),
    Row("ch3-ce-100", "ch3", "[784, 100, 10], cross-entropy, eta 0.5, large initial weights",
        "network2", (784, 100, 10), 30, 0.5, init="large", seeds=(0, 1, 2), book=0.9682,
        book_text="96.82%", panel=_FULL_DATA),
    Row("ch3-overfit-1000", "ch3", "[784, 30, 10] on 1,000 images, 400 epochs, eta 0.5",
        "network2", (784, 30, 10), 400, 0.5, init="large", train_size=1000, seeds=(0, 1, 2),
        book=0.8227, book_text="82.27% (peak)", panel=_SMALL_DATA),
    Row("ch3-l2-1000", "ch3", "[784, 30, 10] on 1,000 images, 400 epochs, lmbda 0.1",
        "network2", (784, 30, 10), 400, 0.5, lmbda=0.1, init="large", train_size=1000,
        seeds=(0, 1, 2), book=0.871, book_text="87.1% (peak)", panel=_SMALL_DATA),
    Row("ch3-l2-30", "ch3", "[784, 30, 10], eta 0.5, lmbda 5.0, large initial weights",
        "network2", (784, 30, 10), 30, 0.5, lmbda=5.0, init="large", seeds=(0, 1, 2),
        book=0.9649, book_text="96.49%", panel=_FULL_DATA),
    Row("ch3-l2-100", "ch3", "[784, 100, 10], eta 0.5, lmbda 5.0, large initial weights",
        "network2", (784, 100, 10), 30, 0.5, lmbda=5.0, init="large", seeds=(0, 1, 2),
        book=0.9792, book_text="97.92% (validation)", measure="final_validation",
        panel=_FULL_DATA),
    Row("ch3-l2-100-60", "ch3", "[784, 100, 10], 60 epochs, eta 0.1, lmbda 5.0", "network2",
        (784, 100, 10), 60, 0.1, lmbda=5.0, init="large", seeds=(0, 1, 2), book=0.9804,
        book_text="98.04% (validation)", measure="final_validation", panel=_FULL_DATA),
    Row("ch3-init-large", "ch3", "[784, 30, 10], eta 0.1, lmbda 5.0, weights N(0, 1)",
        "network2", (784, 30, 10), 30, 0.1, lmbda=5.0, init="large", seeds=(0, 1, 2),
        book=0.87, book_text="under 87% after epoch 1; ends somewhat over 96%",
        measure="validation_epoch1", panel=_FULL_DATA),
    Row("ch3-init-default", "ch3", "[784, 30, 10], eta 0.1, lmbda 5.0, weights N(0, 1/n_in)",
        "network2", (784, 30, 10), 30, 0.1, lmbda=5.0, seeds=(0, 1, 2), book=0.93,
        book_text="almost 93% after epoch 1; ends somewhat over 96%",
        measure="validation_epoch1", panel=_FULL_DATA),

    Row("ch6-fc", "ch6", "FC(784, 100) sigmoid + softmax, eta 0.1", "network3", "ch6-fc",
        60, 0.1, book=0.9780, book_text="97.80%", measure="test_at_best_validation"),
    Row("ch6-conv1", "ch6", "+ ConvPool(20 5x5), FC(2880, 100)", "network3", "ch6-conv1",
        60, 0.1, book=0.9878, book_text="98.78%", measure="test_at_best_validation"),
    Row("ch6-conv2", "ch6", "+ 2nd ConvPool(40 5x5), FC(640, 100)", "network3", "ch6-conv2",
        60, 0.1, book=0.9906, book_text="99.06%", measure="test_at_best_validation"),
    Row("ch6-relu", "ch6", "conv2 with ReLU, eta 0.03, lmbda 0.1", "network3",
        "ch6-conv2-relu", 60, 0.03, lmbda=0.1, book=0.9923, book_text="99.23%",
        measure="test_at_best_validation"),
    Row("ch6-expanded", "ch6", "ReLU net on the expanded data (250,000 images)", "network3",
        "ch6-expanded", 60, 0.03, lmbda=0.1, expanded=True, book=0.9937, book_text="99.37%",
        measure="test_at_best_validation"),
    Row("ch6-expanded-2fc", "ch6", "expanded, two FC(100) ReLU layers", "network3",
        "ch6-expanded-2fc", 60, 0.03, lmbda=0.1, expanded=True, book=0.9943,
        book_text="99.43%", measure="test_at_best_validation"),
    Row("ch6-dropout", "ch6", "expanded, 2 x FC(1000) with dropout 0.5, 40 epochs", "network3",
        "ch6-dropout", 40, 0.03, expanded=True, seeds=(0, 1, 2, 3, 4), book=0.9960,
        book_text="99.60%", measure="test_at_best_validation"),
    Row("ch6-ensemble", "ch6", "majority vote of the dropout nets", "ensemble", "ch6-dropout",
        0, 0.0, book=0.9967, book_text="99.67% (five nets)", measure="vote_test"),
)

_ROWS_BY_NAME = {row.name: row for row in ROWS}


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """How much of the data and how many epochs the rows get.

    ``None`` means the book's: all of a row's training images, 10,000 validation
    and test images, the row's epochs, the expanded set made from all 50,000
    training images. Otherwise each is a cap. ``name`` labels the results file;
    results of different specs never share one.
    """
    name: str = "full"
    train_size: Optional[int] = None
    eval_size: Optional[int] = None
    epochs: Optional[int] = None
    expand_from: Optional[int] = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("DataSpec name must be a non-empty string, got %r" % (self.name,))
        for field in ("train_size", "eval_size", "epochs", "expand_from"):
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError("DataSpec %s must be None or a positive int, got %r"
                                 % (field, value))


FULL = DataSpec("full")
QUICK = DataSpec("quick", train_size=1000, eval_size=1000, epochs=2, expand_from=200)


def default_out_dir(data_spec=FULL):
    """``nndl_fast_results`` (full runs) or ``nndl_fast_results_<name>``, in the
    current directory."""
    return "nndl_fast_results" if data_spec.name == "full" \
        else "nndl_fast_results_%s" % data_spec.name


@dataclasses.dataclass(frozen=True)
class Task:
    """One run to do: ``row`` (a row name) with ``seed`` (an int; for the ensemble,
    the tuple of its members' seeds). ``key`` names it in the results file;
    ``requires`` lists the keys that must be finished first."""
    row: str
    seed: object
    key: str
    requires: Tuple[str, ...] = ()


# ---------------------------------------------------------------- the plan
def _row(name):
    if isinstance(name, Row):
        return name
    try:
        return _ROWS_BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError("unknown row %r: expected one of %s"
                         % (name, ", ".join(_ROWS_BY_NAME))) from None


def _chapters(chapter):
    if isinstance(chapter, str):
        chapter = [chapter]
    out = []
    for c in chapter:
        if c == "all":
            out.extend(CHAPTERS)
        elif c in CHAPTERS:
            out.append(c)
        else:
            raise ValueError("unknown chapter %r: expected ch1, ch3, ch6 or all" % (c,))
    return [c for c in CHAPTERS if c in out]


def rows_for(chapter="all", rows=None):
    """The rows of ``chapter`` ("ch1", "ch3", "ch6", "all" or a list of them), in the
    book's order; ``rows`` (names, with or without the chapter prefix) picks some.
    An ensemble brings the row it votes over with it."""
    chapters = _chapters(chapter)
    available = [row for row in ROWS if row.chapter in chapters]
    if rows is None:
        return available
    if isinstance(rows, str):
        rows = [rows]
    wanted = set()
    for name in rows:
        match = [row for row in available if name in (row.name, row.short)]
        if not match:
            raise ValueError("unknown row %r for %s: expected one of %s"
                             % (name, "+".join(chapters),
                                ", ".join(row.short for row in available)))
        wanted.update(row.name for row in match)
    for row in available:
        if row.name in wanted and row.module == "ensemble":
            wanted.add(row.net)
    return [row for row in available if row.name in wanted]


def _check_seeds(seeds):
    if seeds is None:
        return None
    if isinstance(seeds, int):
        seeds = [seeds]
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed, got none")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s < 2 ** 32:
            raise ValueError("seeds must be integers in 0..2**32-1, got %r" % (s,))
    if len(set(seeds)) != len(seeds):
        raise ValueError("seeds must differ from one another, got %s" % seeds)
    return tuple(int(s) for s in seeds)


def _seeds(row, seeds):
    return row.seeds if seeds is None else seeds


def task_key(row, seed):
    """The name of one run in the results file: "ch1-30/seed-0", "ch6-ensemble/seeds-0-1-2"."""
    if isinstance(seed, (tuple, list)):
        return "%s/seeds-%s" % (row, "-".join(str(s) for s in seed))
    return "%s/seed-%d" % (row, seed)


def _tasks(rows, seeds):
    tasks = []
    for row in rows:
        if row.module == "ensemble":
            members = _seeds(_row(row.net), seeds)
            tasks.append(Task(row.name, tuple(members), task_key(row.name, tuple(members)),
                              tuple(task_key(row.net, s) for s in members)))
        else:
            tasks.extend(Task(row.name, s, task_key(row.name, s)) for s in _seeds(row, seeds))
    return tasks


def plan(chapter, out_dir, data_spec=FULL, seeds=None, rows=None):
    """The tasks of ``chapter`` not yet finished in ``out_dir``, in the order to run them.

    Raises ValueError when ``out_dir`` holds results of another data spec, or a
    finished run made with other settings than the row's now.
    """
    data_spec = _spec(data_spec)
    seeds = _check_seeds(seeds)
    selected = rows_for(chapter, rows)
    doc = read_results(out_dir)
    _check_mode(doc, out_dir, data_spec)
    done = {run["task"]: run for run in doc["runs"]} if doc else {}
    pending = []
    for task in _tasks(selected, seeds):
        run = done.get(task.key)
        if run is None:
            pending.append(task)
            continue
        want = _settings(_row(task.row), data_spec, task.seed)
        if run.get("config") != want:
            raise ValueError(
                "%s holds the run %s made with other settings than the row's now (%s): "
                "write to another directory with --out"
                % (os.path.join(out_dir, RESULTS_FILE), task.key,
                   _config_diff(run.get("config"), want)))
    return pending


def _config_diff(old, new):
    if not isinstance(old, dict):
        return "no settings recorded"
    keys = sorted(set(old) | set(new))
    return ", ".join("%s %r, now %r" % (k, old.get(k), new.get(k))
                     for k in keys if old.get(k) != new.get(k))


def _spec(data_spec):
    if isinstance(data_spec, DataSpec):
        return data_spec
    if data_spec in ("full", None):
        return FULL
    if data_spec == "quick":
        return QUICK
    raise ValueError("data_spec must be a DataSpec, 'full' or 'quick', got %r" % (data_spec,))


def _epochs(row, spec):
    return row.epochs if spec.epochs is None else min(row.epochs, spec.epochs)


def _train_size(row, spec):
    n = row.train_size
    if spec.train_size is not None:
        n = spec.train_size if n is None else min(n, spec.train_size)
    return n


def _settings(row, spec, seed=None):
    """Everything that decides a run's numbers (kept with it in the results)."""
    cfg = {"data": spec.name, "module": row.module, "epochs": _epochs(row, spec),
           "eval_size": spec.eval_size}
    if row.module == "ensemble":
        cfg["epochs"] = _epochs(_row(row.net), spec)
        cfg.update(members=row.net, member_seeds=list(seed))
        return cfg
    cfg.update(net=list(row.net) if isinstance(row.net, tuple) else row.net,
               mini_batch_size=row.mini_batch_size, eta=row.eta, lmbda=row.lmbda,
               train_size=_train_size(row, spec))
    if row.module == "network":
        cfg["cost"] = "QuadraticCost"
    elif row.module == "network2":
        cfg.update(cost="CrossEntropyCost", init=row.init)
    else:
        cfg["dtype"] = "float32"
        if row.expanded:
            cfg["expanded"] = {"from": spec.expand_from or 50000, "shuffle_seed": 0}
    return cfg


# ---------------------------------------------------------------- the data
@functools.lru_cache(maxsize=None)
def _mnist_lists():
    """The book's load_data_wrapper() lists, as tuples (each run copies what it trains on)."""
    from . import mnist_loader
    training, validation, test = mnist_loader.load_data_wrapper()
    return tuple(training), tuple(validation), tuple(test)


@functools.lru_cache(maxsize=None)
def _mnist_arrays():
    from . import mnist_loader
    return mnist_loader.load_data()


def _eval_slice(data, spec):
    return data if spec.eval_size is None else data[:spec.eval_size]


def _state_dir(out_dir, *parts):
    path = os.path.join(out_dir, "state", *parts)
    os.makedirs(path, exist_ok=True)
    ignore = os.path.join(out_dir, "state", ".gitignore")
    if not os.path.exists(ignore):
        # Checkpoints, networks and the expanded data are large: keep them out
        # of a repository that holds the results.
        with atomic_write(ignore) as f:
            f.write("# Written by nndl_fast reproduce: checkpoints, networks, cached data\n*\n")
    return path


def expanded_training(out_dir, n_source=None):
    """The expanded training set ``(x, y)`` made from the first ``n_source`` (None:
    all 50,000) training images, shuffled with seed 0; made once and kept in
    ``out_dir/state/cache`` as .npy files, read back memory-mapped."""
    from . import expand_mnist
    n = 50000 if n_source is None else int(n_source)
    cache = _state_dir(out_dir, "cache")
    stem = os.path.join(cache, "expanded-from-%d-seed-0" % n)
    paths = (stem + "-x.npy", stem + "-y.npy")
    if all(os.path.exists(p) for p in paths):
        try:
            x = np.load(paths[0], mmap_mode="r", allow_pickle=False)
            y = np.load(paths[1], allow_pickle=False)
        except (ValueError, OSError):
            x = y = None
        if x is not None and x.shape == (5 * n, 784) and x.dtype == np.float32 \
                and y.shape == (5 * n,) and y.dtype == np.int64:
            return x, y
    tr = _mnist_arrays()[0]
    if n > tr[0].shape[0]:
        raise ValueError("expand_from must be at most %d, got %d" % (tr[0].shape[0], n))
    x, y = expand_mnist.expand((tr[0][:n], tr[1][:n]), seed=0)
    for path, arr in zip(paths, (x, y)):
        with atomic_write(path, "wb") as f:
            np.save(f, arr, allow_pickle=False)
    return np.load(paths[0], mmap_mode="r", allow_pickle=False), y


# ---------------------------------------------------------------- trainers
class _DenseTrainer(object):
    """Chapters 1 and 3: network.py / network2.py, trained one SGD call per epoch on
    the same list (SGD shuffles it in place with the stdlib generator)."""

    net_suffix = ".json"

    def __init__(self, row, spec, threads):
        from . import network, network2
        self.row, self.spec, self.threads = row, spec, threads
        self.module = network if row.module == "network" else network2
        training, validation, test = _mnist_lists()
        n = _train_size(row, spec)
        self.base = training if n is None else training[:n]
        self.validation = list(_eval_slice(validation, spec))
        self.test = list(_eval_slice(test, spec))
        self.training = None
        self.net = None

    def fresh(self, seed):
        # The network's own generators (seed=: the numbers of the book's code after
        # random.seed(seed); np.random.seed(seed)), which nothing else in the
        # process draws from: a Dask worker's own threads use the global ones.
        if self.row.module == "network":
            self.net = self.module.Network(list(self.row.net), num_threads=self.threads,
                                           seed=seed)
        else:
            self.net = self.module.Network(list(self.row.net), cost=self.module.CrossEntropyCost,
                                           num_threads=self.threads, seed=seed)
            if self.row.init == "large":
                self.net.large_weight_initializer()
        self.training = list(self.base)

    def train_epoch(self):
        row = self.row
        if row.module == "network":
            self.net.SGD(self.training, 1, row.mini_batch_size, row.eta)
        else:
            self.net.SGD(self.training, 1, row.mini_batch_size, row.eta, lmbda=row.lmbda)

    def evaluate(self):
        if self.row.module == "network":
            count = self.net.evaluate
        else:
            count = self.net.accuracy
        return (count(self.validation) / len(self.validation),
                count(self.test) / len(self.test))

    def save_net(self, path):
        self.net.save(path)

    def state(self):
        """The shuffle generator's state and the training list's order."""
        index = {id(item): k for k, item in enumerate(self.base)}
        version, internal, gauss = self.net._generators.shuffle_module().getstate()
        return {"random_state": [version, list(internal), gauss],
                "order": [index[id(item)] for item in self.training]}

    def restore(self, net_path, state):
        order = state.get("order")
        rs = state.get("random_state")
        if not (isinstance(order, list) and sorted(order) == list(range(len(self.base)))):
            raise ValueError("the checkpoint's training order is not a permutation of %d items"
                             % len(self.base))
        if not (isinstance(rs, list) and len(rs) == 3 and isinstance(rs[1], list)):
            raise ValueError("the checkpoint's random_state is not the stdlib generator's")
        self.net = self.module.load(net_path, num_threads=self.threads)
        shuffle = random.Random()
        shuffle.setstate((rs[0], tuple(rs[1]), rs[2]))
        self.net._generators.shuffle = shuffle
        self.training = [self.base[k] for k in order]


class _ConvTrainer(object):
    """Chapter 6: network3, trained one SGD call per epoch (no shuffling; the
    dropout masks follow the network's step counter, which its file keeps)."""

    net_suffix = ".npz"

    def __init__(self, row, spec, threads, out_dir):
        from . import network3
        from .reference.network3 import SharedArray
        self.row, self.spec, self.threads = row, spec, threads
        self.network3 = network3
        if row.expanded:
            x, y = expanded_training(out_dir, spec.expand_from)
        else:
            x, y = _mnist_arrays()[0]
        n = _train_size(row, spec)
        if n is not None:
            x, y = x[:n], y[:n]
        self.training = (SharedArray(x), SharedArray(y.astype(np.int32)))
        self.validation, self.test = _shared_eval_data(spec)
        self.net = None

    def fresh(self, seed):
        random.seed(seed)
        np.random.seed(seed)
        self.net = self.network3.Network(chapter6_layers(self.row, self.network3),
                                         self.row.mini_batch_size,
                                         dropout_seed=dropout_seed(seed),
                                         num_threads=self.threads)

    def train_epoch(self):
        row = self.row
        self.net.SGD(self.training, 1, row.mini_batch_size, row.eta, None, None,
                     lmbda=row.lmbda)

    def evaluate(self):
        return self.net.accuracy(self.validation), self.net.accuracy(self.test)

    def save_net(self, path):
        self.net.save(path)

    def state(self):
        return {}

    def restore(self, net_path, state):
        self.net = self.network3.load(net_path, num_threads=self.threads)


def _shared_eval_data(spec):
    """network3's (validation, test) pairs of shared arrays, cut to ``spec.eval_size``."""
    from .reference.network3 import SharedArray
    _, va, te = _mnist_arrays()
    return tuple(tuple(SharedArray(a[:spec.eval_size] if spec.eval_size else a)
                       for a in (d[0], d[1].astype(np.int32))) for d in (va, te))


#: The chapter-6 networks whose hidden layers use ReLU (the others sigmoid).
_RELU_NETS = ("ch6-conv2-relu", "ch6-expanded", "ch6-expanded-2fc", "ch6-dropout")
CH6_NETS = ("ch6-fc", "ch6-conv1", "ch6-conv2") + _RELU_NETS


def network3_layers(name, mini_batch_size, network3=None):
    """New layer objects of the book's chapter-6 network ``name`` (one of
    ``CH6_NETS``, e.g. "ch6-conv2-relu"), built by ``network3`` (default
    ``nndl_fast.network3``; ``nndl_fast.reference.network3`` works too)."""
    if name not in CH6_NETS:
        raise ValueError("unknown chapter-6 network %r; expected one of %s"
                         % (name, ", ".join(CH6_NETS)))
    if network3 is None:
        from . import network3
    N, m = network3, mini_batch_size
    act = N.ReLU if name in _RELU_NETS else N.sigmoid
    if name == "ch6-fc":
        return [N.FullyConnectedLayer(n_in=784, n_out=100, activation_fn=N.sigmoid),
                N.SoftmaxLayer(n_in=100, n_out=10)]
    layers = [N.ConvPoolLayer(image_shape=(m, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                              poolsize=(2, 2), activation_fn=act)]
    if name == "ch6-conv1":
        return layers + [N.FullyConnectedLayer(n_in=20 * 12 * 12, n_out=100, activation_fn=act),
                         N.SoftmaxLayer(n_in=100, n_out=10)]
    layers.append(N.ConvPoolLayer(image_shape=(m, 20, 12, 12), filter_shape=(40, 20, 5, 5),
                                  poolsize=(2, 2), activation_fn=act))
    if name == "ch6-dropout":
        return layers + [
            N.FullyConnectedLayer(n_in=40 * 4 * 4, n_out=1000, activation_fn=act, p_dropout=0.5),
            N.FullyConnectedLayer(n_in=1000, n_out=1000, activation_fn=act, p_dropout=0.5),
            N.SoftmaxLayer(n_in=1000, n_out=10, p_dropout=0.5)]
    layers.append(N.FullyConnectedLayer(n_in=40 * 4 * 4, n_out=100, activation_fn=act))
    if name == "ch6-expanded-2fc":
        layers.append(N.FullyConnectedLayer(n_in=100, n_out=100, activation_fn=act))
    return layers + [N.SoftmaxLayer(n_in=100, n_out=10)]


def chapter6_layers(row, network3=None):
    """New layer objects of a chapter-6 row (a name such as "ch6-dropout" or
    "dropout"; the ensemble's are its members'), built by ``network3``
    (default ``nndl_fast.network3``; ``nndl_fast.reference.network3`` works too)."""
    row = _row(row if isinstance(row, Row) or str(row).startswith("ch6-") else "ch6-" + row)
    if row.chapter != "ch6":
        raise ValueError("expected a chapter-6 row, got %r" % row.name)
    if row.module == "ensemble":
        row = _row(row.net)
    return network3_layers(row.net, row.mini_batch_size, network3)


def dropout_seed(seed):
    """The dropout seed of a chapter-6 run with ``seed``: the book's for seed 0."""
    return int(np.random.RandomState(seed).randint(999999))


# ---------------------------------------------------------------- one run
def _machine():
    """The CPU's model and core counts (from /proc/cpuinfo where there is one)."""
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        text = ""
    cores = set()
    phys_id = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and cpu is None:
            cpu = value
        elif key == "physical id":
            phys_id = value
        elif key == "core id":
            cores.add((phys_id, value))
    physical = len(cores) or None
    cpu = cpu or platform.processor() or platform.machine()
    from . import _config
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "physical_cores": physical,
            "available_cpus": _config._available_cpus(), "platform": platform.platform()}


def _load_average():
    """The system's 1-minute load average (None where the OS has none): other
    programs' load on the same cores shows in the wall times."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _versions():
    from ._version import __version__
    from . import _config
    return {"nndl_fast": __version__, "numpy": np.__version__,
            "python": platform.python_version(),
            "mode": "pure Python" if _config.pure_python() else "compiled"}


def _paths(out_dir, key, suffix):
    stem = key.replace("/", "-")
    return {"state": os.path.join(_state_dir(out_dir, "checkpoints"), stem + ".json"),
            "net_stem": os.path.join(_state_dir(out_dir, "checkpoints"), stem),
            "final": os.path.join(_state_dir(out_dir, "nets"), stem + suffix)}


def _read_checkpoint(path, key, cfg, log):
    """The checkpoint of ``key`` when it exists and belongs to these settings, else None."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            state = json.load(f)
        ok = (isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT
              and state.get("task") == key and state.get("config") == cfg)
    except (OSError, ValueError):
        ok = False
    if not ok:
        log("  %s: the checkpoint %s is not for these settings; starting afresh" % (key, path))
        return None
    net_file = os.path.join(os.path.dirname(path), state.get("net_file", ""))
    if not os.path.isfile(net_file):
        log("  %s: the checkpoint's network file is missing; starting afresh" % key)
        return None
    return state, net_file


def _remove_checkpoints(paths, keep=None):
    """Remove the run's checkpoint files (all of them, or all but ``keep``)."""
    directory = os.path.dirname(paths["state"])
    prefix = os.path.basename(paths["net_stem"]) + ".epoch-"
    for name in os.listdir(directory):
        if name.startswith(prefix) and name != keep:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))
    if keep is None:
        with contextlib.suppress(OSError):
            os.unlink(paths["state"])


def _summary(curve):
    val, test = curve["validation"], curve["test"]
    if not val:
        return {}
    best = max(val)
    # The book's network3 counts a tie as a new best (>=): the last epoch with it.
    best_epoch = max(k for k, v in enumerate(val) if v == best)
    return {"best_validation_accuracy": best, "best_epoch": best_epoch,
            "test_accuracy": test[best_epoch], "peak_test_accuracy": max(test),
            "final_validation_accuracy": val[-1], "final_test_accuracy": test[-1]}


def _measured(measure, summary, curve):
    if measure == "peak_test":
        return summary.get("peak_test_accuracy")
    if measure == "final_validation":
        return summary.get("final_validation_accuracy")
    if measure == "validation_epoch1":
        return curve["validation"][0] if curve["validation"] else None
    if measure == "test_at_best_validation":
        return summary.get("test_accuracy")
    raise ValueError("unknown measure %r" % (measure,))


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


# One task at a time in a process: run_one seeds and reads the global generators.
_run_lock = threading.Lock()


def run_one(row, seed, data_spec, out_dir, threads=None, epoch_hook=None, log=None):
    """Run (or resume) one task and return its result (a dict, JSON-ready).

    ``row``: a row name (or :class:`Row`); ``seed``: an int, or for the ensemble
    the tuple of its members' seeds; ``data_spec``: a :class:`DataSpec`, "full" or
    "quick"; ``out_dir``: where checkpoints and final networks go (under
    ``state/``); ``threads``: the compiled kernels' threads (None: the package's
    policy). The result is not recorded: pass it to :func:`record`.

    After each epoch the network, the epoch, the curves and the generator state
    are checkpointed, then ``epoch_hook(key, epoch, curve)`` is called (epoch
    counts from 1); an exception from it stops the run, which the next call
    resumes from that checkpoint. ``log``: a function taking one line (None:
    silent).
    """
    with _run_lock:
        return _run_one(row, seed, data_spec, out_dir, threads, epoch_hook, log)


def _run_one(row, seed, data_spec, out_dir, threads, epoch_hook, log):
    row = _row(row)
    spec = _spec(data_spec)
    log = log or (lambda line: None)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    if threads is not None:
        from . import _config
        threads = _config.resolve_num_threads(threads)
    if row.module == "ensemble":
        return _run_ensemble(row, seed, spec, out_dir, threads, log)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= seed < 2 ** 32:
        raise ValueError("seed must be an integer in 0..2**32-1, got %r" % (seed,))
    seed = int(seed)
    key = task_key(row.name, seed)
    cfg = _settings(row, spec, seed)
    epochs = cfg["epochs"]
    trainer = _ConvTrainer(row, spec, threads, out_dir) if row.module == "network3" \
        else _DenseTrainer(row, spec, threads)
    paths = _paths(out_dir, key, trainer.net_suffix)

    found = _read_checkpoint(paths["state"], key, cfg, log)
    if found is not None:
        state, net_file = found
        trainer.restore(net_file, state)
        epoch = int(state["epoch"])
        curve = state["curve"]
        elapsed, train_s = state["wall_seconds"], state["train_seconds"]
        segments = state["segments"] + 1
        log("  %s: resuming after epoch %d of %d" % (key, epoch, epochs))
    else:
        _remove_checkpoints(paths)
        trainer.fresh(seed)
        epoch, curve, elapsed, train_s, segments = 0, {"validation": [], "test": [],
                                                       "seconds": []}, 0.0, 0.0, 1
    load_start = _load_average()
    t_start = time.perf_counter()
    t_log = t_start
    while epoch < epochs:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.train_epoch()
        t1 = time.perf_counter()
        val, test = trainer.evaluate()
        t2 = time.perf_counter()
        epoch += 1
        train_s += t1 - t0
        curve["validation"].append(float(val))
        curve["test"].append(float(test))
        curve["seconds"].append(round(t2 - t0, 4))
        if epoch < epochs:
            # What the next epoch needs to start from exactly here.
            net_name = "%s.epoch-%d%s" % (os.path.basename(paths["net_stem"]), epoch,
                                          trainer.net_suffix)
            trainer.save_net(os.path.join(os.path.dirname(paths["state"]), net_name))
            state = {"format": CHECKPOINT_FORMAT, "version": 1, "task": key, "config": cfg,
                     "epoch": epoch, "curve": curve, "net_file": net_name,
                     "wall_seconds": elapsed + (time.perf_counter() - t_start),
                     "train_seconds": train_s, "segments": segments}
            state.update(trainer.state())
            text = json.dumps(state, allow_nan=False)
            with atomic_write(paths["state"]) as f:
                f.write(text)
            _remove_checkpoints(paths, keep=net_name)
        now = time.perf_counter()
        if now - t_log >= 10.0 or epoch == epochs:
            t_log = now
            log("  %s: epoch %d/%d, validation %.2f%%, test %.2f%% (%.1f s per epoch)"
                % (key, epoch, epochs, 100 * val, 100 * test, t2 - t0))
        if epoch_hook is not None:
            epoch_hook(key, epoch, curve)
    trainer.save_net(paths["final"])
    wall = elapsed + (time.perf_counter() - t_start)
    summary = _summary(curve)
    result = {"task": key, "row": row.name, "chapter": row.chapter, "seed": seed,
              "config": cfg, "epochs": epochs}
    result.update(summary)
    result.update({"measure": row.measure, "value": _measured(row.measure, summary, curve),
                   "book": row.book, "curve": curve, "wall_seconds": round(wall, 3),
                   "train_seconds": round(train_s, 3), "resumed": segments - 1,
                   "threads": _threads_used(trainer.net, threads),
                   "load_average": [load_start, _load_average()],
                   "machine": _machine(), "versions": _versions(), "finished": _now(),
                   "net_file": os.path.relpath(paths["final"], out_dir)})
    return result


def _threads_used(net, threads):
    """Threads the run's kernels used (chapters 1 and 3 use no more than the first
    layer has blocks of units)."""
    from . import _config
    if _config.pure_python():
        return 1
    if hasattr(net, "_epoch_threads"):
        return int(net._epoch_threads(threads))
    return int(_config.resolve_num_threads(threads))


def _run_ensemble(row, seeds, spec, out_dir, threads, log):
    from . import network3
    if not isinstance(seeds, (tuple, list)) or not seeds:
        raise ValueError("the ensemble's seed must be the tuple of its members' seeds, got %r"
                         % (seeds,))
    seeds = _check_seeds(seeds)
    key = task_key(row.name, seeds)
    cfg = _settings(row, spec, seeds)
    doc = read_results(out_dir)
    runs = {run["task"]: run for run in doc["runs"]} if doc else {}
    t0 = time.perf_counter()
    nets, members = [], []
    for s in seeds:
        member_key = task_key(row.net, s)
        path = _paths(out_dir, member_key, ".npz")["final"]
        run = runs.get(member_key)
        if run is None or not os.path.exists(path):
            raise ValueError("the ensemble needs the finished run %s (its result in %s and "
                             "its network %s): run it first"
                             % (member_key, os.path.join(out_dir, RESULTS_FILE), path))
        nets.append(network3.load(path, num_threads=threads))
        members.append({"seed": s, "final_test_accuracy": run.get("final_test_accuracy"),
                        "test_accuracy": run.get("test_accuracy"),
                        "wall_seconds": run.get("wall_seconds")})
    validation, test_data = _shared_eval_data(spec)
    val = network3.ensemble_accuracy(nets, validation)
    test = network3.ensemble_accuracy(nets, test_data)
    wall = time.perf_counter() - t0
    log("  %s: %d nets vote: validation %.2f%%, test %.2f%%"
        % (key, len(nets), 100 * val, 100 * test))
    return {"task": key, "row": row.name, "chapter": row.chapter, "seed": list(seeds),
            "config": cfg, "epochs": _epochs(_row(row.net), spec),
            "best_validation_accuracy": val, "best_epoch": None, "test_accuracy": test,
            "measure": row.measure, "value": test, "book": row.book,
            "members": members,
            "members_wall_seconds": round(sum(m["wall_seconds"] or 0.0 for m in members), 3),
            "curve": {"validation": [], "test": [], "seconds": []},
            "wall_seconds": round(wall, 3), "train_seconds": 0.0, "resumed": 0,
            "threads": int(threads if threads is not None else _threads_used(None, None)),
            "machine": _machine(), "versions": _versions(), "finished": _now()}


# ---------------------------------------------------------------- the results file
@contextlib.contextmanager
def _locked(out_dir):
    """An exclusive lock on the results of ``out_dir`` (processes recording at once
    wait for one another; a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: one process per directory
        yield
        return
    with open(os.path.join(_state_dir(out_dir), "results.lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def read_results(out_dir):
    """The results document of ``out_dir`` (a dict with "mode" and "runs"), or None."""
    path = os.path.join(os.fspath(out_dir), RESULTS_FILE)
    if not os.path.exists(path):
        return None
    if os.path.isdir(path):
        raise ValueError("%s is a directory, expected the results file" % path)
    with open(path) as f:
        try:
            doc = json.load(f)
        except ValueError as exc:
            raise ValueError("%s is not valid JSON (%s): move it away to start again"
                             % (path, exc)) from None
    if not (isinstance(doc, dict) and doc.get("format") == RESULTS_FORMAT
            and isinstance(doc.get("runs"), list)):
        raise ValueError("%s is not a results file of nndl_fast reproduce (expected format "
                         "%r with a list of runs)" % (path, RESULTS_FORMAT))
    return doc


def _check_mode(doc, out_dir, spec):
    if doc is not None and doc.get("mode") != spec.name:
        raise ValueError("%s holds %s results, not %s ones: write to another directory with "
                         "--out" % (os.path.join(out_dir, RESULTS_FILE), doc.get("mode"),
                                    spec.name))


def record(out_dir, result, data_spec=FULL, reports=True):
    """Append ``result`` to ``out_dir/results.json`` (atomically, under a lock), then
    rewrite the table and the plot of the run's chapter (unless drawn less than
    ``PLOT_INTERVAL`` seconds ago; ``reports=False``: neither)."""
    spec = _spec(data_spec)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    with _locked(out_dir):
        doc = read_results(out_dir)
        _check_mode(doc, out_dir, spec)
        if doc is None:
            doc = {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "mode": spec.name,
                   "runs": []}
        doc["runs"] = [run for run in doc["runs"] if run.get("task") != result["task"]]
        doc["runs"].append(result)
        text = _results_text(doc)
        with atomic_write(os.path.join(out_dir, RESULTS_FILE)) as f:
            f.write(text)
        # The run is recorded: its checkpoints are no longer needed.
        if _row(result["row"]).module != "ensemble":
            _remove_checkpoints(_paths(out_dir, result["task"], ""))
        if reports:
            write_reports(out_dir, doc, chapters=[result["chapter"]],
                          plot_interval=PLOT_INTERVAL)


def _results_text(doc):
    """The results document with one run per line (a new run adds one line to a diff)."""
    head = {k: v for k, v in doc.items() if k != "runs"}
    lines = [json.dumps(head, allow_nan=False)[:-1] + ', "runs": [']
    runs = [json.dumps(run, allow_nan=False) for run in doc["runs"]]
    lines += [text + "," for text in runs[:-1]] + runs[-1:]
    lines.append("]}")
    return "\n".join(lines) + "\n"


def run_task(task, data_spec, out_dir, threads=None, log=None, epoch_hook=None):
    """``run_one`` then ``record``: one task, start to end (what a scheduler maps)."""
    result = run_one(task.row, task.seed, data_spec, out_dir, threads=threads,
                     epoch_hook=epoch_hook, log=log)
    record(out_dir, result, data_spec)
    return result


def _remote_task(job):
    """A task on a scheduler's worker: ``run_one`` of (task, spec, out_dir, threads)."""
    task, spec, out_dir, threads = job
    return run_one(task.row, task.seed, spec, out_dir, threads=threads)


def _run_on_scheduler(tasks, spec, out_dir, threads, scheduler, log):
    from .scaleout import map_tasks
    results = []

    def finished(i, job, result):
        record(out_dir, result, spec)
        results.append(result)
        log("  %s: %s %.2f%% (book %s) in %s"
            % (job[0].key, result["measure"].replace("_", " "), 100 * result["value"],
               _row(job[0].row).book_text, _duration(result["wall_seconds"])))
    # The ensemble waits for its members (the first wave).
    for wave in ([t for t in tasks if not t.requires], [t for t in tasks if t.requires]):
        if wave:
            log("%d run(s) on %s: %s" % (len(wave), scheduler, ", ".join(t.key for t in wave)))
            map_tasks(_remote_task, [(t, spec, out_dir, threads) for t in wave],
                      scheduler=scheduler, on_result=finished,
                      describe=lambda job: job[0].key, name="reproduce")
    return results


def reproduce(chapter="all", out_dir=None, data_spec=None, quick=False, seeds=None,
              rows=None, threads=None, log=print, epoch_hook=None, scheduler=None):
    """Run every pending task of ``chapter`` in order, recording each at once.

    ``data_spec`` defaults to :data:`QUICK` with ``quick=True``, else :data:`FULL`;
    ``out_dir`` to :func:`default_out_dir`. ``scheduler``: a Dask scheduler's
    address or a ``distributed.Client`` to run the tasks on (see the module's
    notes), else they run here one after another. Returns the results of the
    runs done by this call.
    """
    spec = _spec(data_spec if data_spec is not None else (QUICK if quick else FULL))
    out_dir = os.fspath(out_dir if out_dir is not None else default_out_dir(spec))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError("--out %s is a file, expected a directory" % out_dir)
    log = log or (lambda line: None)
    if threads is not None:
        from . import _config
        _config.resolve_num_threads(threads)
    tasks = plan(chapter, out_dir, spec, seeds, rows)
    total = len(_tasks(rows_for(chapter, rows), _check_seeds(seeds)))
    log("nndl_fast reproduce %s (%s data): %d of %d runs to do, results in %s"
        % ("+".join(_chapters(chapter)), spec.name, len(tasks), total,
           os.path.join(out_dir, RESULTS_FILE)))
    os.makedirs(out_dir, exist_ok=True)
    if scheduler is not None:
        if epoch_hook is not None:
            raise ValueError("epoch_hook runs here, not on a scheduler's workers")
        results = _run_on_scheduler(tasks, spec, out_dir, threads, scheduler, log)
        written = write_reports(out_dir)
        if written:
            log("Wrote %s" % ", ".join(written))
        return results
    results = []
    for k, task in enumerate(tasks, 1):
        log("[%d/%d] %s" % (k, len(tasks), task.key))
        result = run_task(task, spec, out_dir, threads=threads, log=log,
                          epoch_hook=epoch_hook)
        log("  %s: %s %.2f%% (book %s) in %s"
            % (task.key, result["measure"].replace("_", " "), 100 * result["value"],
               _row(task.row).book_text, _duration(result["wall_seconds"])))
        results.append(result)
    written = write_reports(out_dir)
    if written:
        log("Wrote %s" % ", ".join(written))
    return results


# ---------------------------------------------------------------- reports
def _duration(seconds):
    if seconds is None:
        return "—"
    if seconds < 90:
        return "%.1f s" % seconds
    if seconds < 5400:
        return "%.1f min" % (seconds / 60)
    return "%.2f h" % (seconds / 3600)


def _pct(x):
    return "—" if x is None else "%.2f%%" % (100 * x)


def _runs_by_row(doc):
    by_row = {}
    for run in doc["runs"]:
        by_row.setdefault(run.get("row"), []).append(run)
    return by_row


def _table(doc):
    by_row = _runs_by_row(doc)
    chapters = [c for c in CHAPTERS if any(run.get("chapter") == c for run in doc["runs"])]
    lines = ["# The book's results, run again with nndl_fast", ""]
    machines = {json.dumps(run.get("machine"), sort_keys=True) for run in doc["runs"]}
    threads = sorted({run.get("threads") for run in doc["runs"]})
    versions = {json.dumps(run.get("versions"), sort_keys=True) for run in doc["runs"]}
    for m in sorted(machines):
        m = json.loads(m) or {}
        lines.append("Machine: %s, %s logical CPUs (%s physical cores, %s available to the "
                     "run); %s." % (m.get("cpu"), m.get("logical_cpus"),
                                    m.get("physical_cores") or "?", m.get("available_cpus"),
                                    m.get("platform")))
    for v in sorted(versions):
        v = json.loads(v) or {}
        lines.append("Versions: nndl_fast %s (%s), NumPy %s, Python %s."
                     % (v.get("nndl_fast"), v.get("mode"), v.get("numpy"), v.get("python")))
    loads = [x for run in doc["runs"] for x in run.get("load_average") or [] if x is not None]
    if loads:
        busy = max(loads) > max(t or 1 for t in threads) + 1
        lines.append("System load average (1 minute) at the start and end of the runs: "
                     "%.1f to %.1f%s." % (min(loads), max(loads),
                                          " (more than the runs' own threads: other programs "
                                          "shared the cores, and wall times are longer than "
                                          "on an idle machine)" if busy else ""))
    lines.append("Threads: %s. Data: %s." % (", ".join(str(t) for t in threads),
                                             "the book's (MNIST's 50,000 / 10,000 / 10,000 "
                                             "images, the book's epochs)"
                                             if doc.get("mode") == "full" else
                                             "%s (small subsets and few epochs: a check of "
                                             "the pipeline, not of the book's numbers)"
                                             % doc.get("mode")))
    total = sum(run.get("wall_seconds") or 0.0 for run in doc["runs"])
    lines.append("Runs: %d, %s of training and evaluation in all."
                 % (len(doc["runs"]), _duration(total)))
    lines.append("")
    lines.append("Ours: the best / the mean over the runs (seeds) of the measure the book "
                 "reports for that run; Spread: lowest to highest. Time: wall time of one "
                 "run (the mean), training and evaluating every epoch.")
    for chapter in chapters:
        lines += ["", "## " + CHAPTER_TITLES[chapter], "",
                  "| Run | Book | Ours: best / mean | Spread | Runs | Epochs | Time per run "
                  "| Measure |",
                  "|---|---|---|---|---|---|---|---|"]
        chapter_seconds = 0.0
        for row in ROWS:
            if row.chapter != chapter:
                continue
            runs = by_row.get(row.name, [])
            values = [run["value"] for run in runs if run.get("value") is not None]
            seconds = [(run.get("wall_seconds") or 0.0) + (run.get("members_wall_seconds")
                                                           or 0.0) for run in runs]
            chapter_seconds += sum(run.get("wall_seconds") or 0.0 for run in runs)
            if values:
                ours = "%s / %s" % (_pct(max(values)), _pct(sum(values) / len(values)))
                spread = "%s – %s" % (_pct(min(values)), _pct(max(values))) \
                    if len(values) > 1 else "—"
                time_text = _duration(sum(seconds) / len(seconds))
                if row.module == "ensemble":
                    n = len(runs[-1].get("members", []))
                    ours = "%s (%d nets)" % (_pct(values[-1]), n)
                    time_text = "%s (vote %s)" % (_duration(seconds[-1]),
                                                  _duration(runs[-1]["wall_seconds"]))
                epochs = ", ".join(sorted({str(run.get("epochs")) for run in runs}))
            else:
                ours, spread, time_text, epochs = "not run yet", "—", "—", str(row.epochs)
            lines.append("| %s | %s | %s | %s | %d | %s | %s | %s |"
                         % (row.title, row.book_text or "—", ours, spread, len(runs), epochs,
                            time_text, MEASURES[row.measure]))
        lines += ["", "Chapter total: %s." % _duration(chapter_seconds)]
        lines += ["", "![%s](curves-%s.png)" % (CHAPTER_TITLES[chapter], chapter)]
    return "\n".join(lines) + "\n"


def _plot(doc, chapter, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    by_row = _runs_by_row(doc)
    rows = [row for row in ROWS if row.chapter == chapter and by_row.get(row.name)
            and row.module != "ensemble"]
    panels = []
    for row in rows:
        if row.panel not in panels:
            panels.append(row.panel)
    if not panels:
        return False
    fig = Figure(figsize=(7.5 * len(panels), 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    colors = ["C%d" % k for k in range(10)]
    for p, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        values = []
        for k, row in enumerate(r for r in rows if r.panel == panel):
            color = colors[k % len(colors)]
            for j, run in enumerate(by_row[row.name]):
                val = [100 * v for v in run["curve"]["validation"]]
                values.extend(val[len(val) // 4:] if len(val) > 3 else val)
                ax.plot(range(1, len(val) + 1), val, color=color, linewidth=1.0, alpha=0.8,
                        marker="o" if len(val) < 4 else None, markersize=3,
                        label=row.title if j == 0 else None)
            if row.book is not None and row.measure != "validation_epoch1":
                ax.axhline(100 * row.book, color=color, linestyle=":", linewidth=0.8)
        if values:
            lo, hi = float(np.percentile(values, 2)), max(values)
            margin = max(0.1, 0.08 * (hi - lo))
            ax.set_ylim(lo - margin, hi + margin)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (%)")
        title = CHAPTER_TITLES[chapter].split(":")[0]
        ax.set_title(title + (" — " + panel if panel else ""))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.text(0.01, 0.005, "dotted: the book's figure" + (" (%s data)" % doc.get("mode")
                                                         if doc.get("mode") != "full" else ""),
             fontsize=7)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    return True


def write_reports(out_dir, doc=None, chapters=CHAPTERS, plot_interval=0.0):
    """Rewrite ``results.md`` and the plots ``curves-<chapter>.png`` of ``chapters``
    from the results file (or ``doc``). A plot younger than ``plot_interval``
    seconds is left as it is (drawing one takes a good fraction of a second,
    longer than a quick run). Plots need matplotlib; without it only the table
    is written. Returns the paths written."""
    out_dir = os.fspath(out_dir)
    doc = doc if doc is not None else read_results(out_dir)
    if doc is None:
        return []
    written = []
    with atomic_write(os.path.join(out_dir, TABLE_FILE)) as f:
        f.write(_table(doc))
    written.append(os.path.join(out_dir, TABLE_FILE))
    try:
        import matplotlib  # noqa: F401  (plots are optional)
    except ImportError:
        return written
    for chapter in chapters:
        path = os.path.join(out_dir, "curves-%s.png" % chapter)
        with contextlib.suppress(OSError):
            if time.time() - os.path.getmtime(path) < plot_interval:
                continue
        if _plot(doc, chapter, path):
            written.append(path)
    return written


def describe_rows(chapter="all", rows=None, seeds=None, data_spec=FULL):
    """Lines listing the rows of ``chapter``: name, what the book ran, its number."""
    spec = _spec(data_spec)
    seeds = _check_seeds(seeds)
    lines = []
    for row in rows_for(chapter, rows):
        if row.module == "ensemble":
            what = "vote of %s over seeds %s" % (row.net, list(_seeds(_row(row.net), seeds)))
        else:
            what = "%s, %d epochs, seeds %s" % (row.module, _epochs(row, spec),
                                                list(_seeds(row, seeds)))
        lines.append("%-18s %-58s book %s" % (row.name, row.title, row.book_text))
        lines.append("%-18s %s" % ("", what))
    return lines
