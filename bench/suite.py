"""Benchmarks: seconds per 50,000-image epoch, as ratios to the NumPy reference
measured in the same run.

``python -m nndl_fast bench [--quick]`` (from a source checkout) runs the whole suite (chapters 1, 3 and,
when present, 6; evaluation throughput; expand_mnist) and prints a Markdown
table, writes JSON and a PNG bar chart. ``python -m nndl_fast bench network``
(or ``python bench/bench_network.py``) is chapter 1 alone, with the NumPy
matrix-based peer.
"""
import argparse
import contextlib
import io
import json
import os
import platform
import random
import statistics
import sys
import time

import numpy as np

import nndl_fast
from nndl_fast import _config
from nndl_fast._threads import blas_single_thread
from nndl_fast.reproduce import network3_layers

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


def _environment():
    from threadpoolctl import threadpool_info
    return {"config": _config.config_dict(), "threadpool_info": threadpool_info(),
            "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count()}


def _time(fn, repeats):
    """Median of ``repeats`` timings of ``fn()`` (after one warm-up call)."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


class MatrixNetwork(object):
    """The chapter-1 algorithm with each mini-batch as one matrix (pure NumPy).

    The fully matrix-based approach the book suggests as an exercise: a
    benchmark peer showing how far NumPy alone gets.
    """

    def __init__(self, weights, biases):
        self.weights = [w.copy() for w in weights]
        self.biases = [b.copy() for b in biases]

    def epoch(self, X, Y, order, mini_batch_size, eta):
        from nndl_fast.reference.network import sigmoid
        for k in range(0, len(order), mini_batch_size):
            idx = order[k:k + mini_batch_size]
            a = X[idx].T.astype(np.float64)
            acts = [a]
            for w, b in zip(self.weights, self.biases):
                a = sigmoid(w @ a + b)
                acts.append(a)
            delta = (a - Y[idx].T) * a * (1 - a)
            m = len(idx)
            for l in range(len(self.weights) - 1, -1, -1):
                gw = delta @ acts[l].T
                gb = delta.sum(axis=1, keepdims=True)
                if l > 0:
                    delta = (self.weights[l].T @ delta) * acts[l] * (1 - acts[l])
                self.weights[l] -= (eta / m) * gw
                self.biases[l] -= (eta / m) * gb


def _torch_epoch_fn(sizes, X, Y, order, mini_batch_size, eta, threads):
    import torch
    torch.set_num_threads(threads)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b, dtype=torch.float64), torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=eta)
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64))
    Yt = torch.from_numpy(Y)
    idx = torch.from_numpy(order)

    def run():
        for k in range(0, len(order), mini_batch_size):
            b = idx[k:k + mini_batch_size]
            opt.zero_grad()
            out = model(Xt[b])
            loss = 0.5 * ((out - Yt[b]) ** 2).sum() / len(b)
            loss.backward()
            opt.step()
    return run


def bench_network(sizes=(784, 30, 10), mini_batch_size=10, quick=False, threads=None,
                  reference_fraction=0.1, repeats=3):
    """Rows of {name, seconds per epoch, ratio vs reference} for chapter 1's network."""
    from nndl_fast import _dense, mnist_loader, network
    from nndl_fast.reference import network as ref
    from nndl_fast._validation import pack_training
    sizes = list(sizes)
    training_data, _, _ = mnist_loader.load_data_wrapper()
    n = len(training_data)
    if quick:
        reference_fraction = min(reference_fraction, 0.02)
        repeats = 1
    np.random.seed(0)
    random.seed(0)
    base = ref.Network(sizes)
    X, Y = pack_training(training_data, sizes[0], sizes[-1], np.float64)
    order = np.random.permutation(n).astype(np.int64)
    rows = []

    # The book's per-example algorithm on a fraction of an epoch, scaled up.
    n_ref = max(mini_batch_size, int(n * reference_fraction) // mini_batch_size * mini_batch_size)
    net = ref.Network(sizes)
    net.weights = [w.copy() for w in base.weights]
    net.biases = [b.copy() for b in base.biases]
    subset = [training_data[i] for i in order[:n_ref]]
    t0 = time.perf_counter()
    for k in range(0, n_ref, mini_batch_size):
        net.update_mini_batch(subset[k:k + mini_batch_size], 3.0)
    t_ref = (time.perf_counter() - t0) * n / n_ref
    rows.append({"name": "reference (book's per-example backprop)", "seconds": t_ref,
                 "note": "timed on %d examples, scaled to %d" % (n_ref, n)})

    mat = MatrixNetwork(base.weights, base.biases)
    n_mat = n if not quick else n // 10
    t_mat = _time(lambda: mat.epoch(X, Y, order[:n_mat], mini_batch_size, 3.0), 1) * n / n_mat
    rows.append({"name": "NumPy, mini-batch as a matrix", "seconds": t_mat,
                 "note": "" if n_mat == n else "timed on %d examples, scaled" % n_mat})

    all_threads = threads or _config.get_num_threads()
    for dtype in (np.float64, np.float32):
        for nt in sorted({1, all_threads}):
            fast = network.Network(sizes, dtype=dtype)
            fast.weights = [w.astype(dtype) for w in base.weights]
            fast.biases = [b.astype(dtype) for b in base.biases]
            Xd = X.astype(np.float32) if X.dtype == np.float32 else X
            Yd = Y.astype(dtype)
            Xs = fast._sparse_rows(Xd)          # as SGD does, once per call
            fast._sync_params()

            def run(fast=fast, Xd=Xd, Yd=Yd, nt=nt, Xs=Xs):
                with blas_single_thread():
                    _dense.train_epoch(Xd, Yd, order, fast.weights, fast.biases,
                                       mini_batch_size, 3.0, num_threads=nt, X_sparse=Xs)
            rows.append({"name": "nndl_fast %s, %d thread%s" % (np.dtype(dtype).name, nt,
                                                                 "s" if nt > 1 else ""),
                         "seconds": _time(run, repeats),
                         "note": "first layer on sparse inputs" if Xs is not None else ""})
            # Whole SGD call (shuffle of the caller's list, kernel, no evaluation).
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    if have_torch:
        for nt in sorted({1, all_threads}):
            fn = _torch_epoch_fn(sizes, X, Y, order if not quick else order[:n // 10],
                                 mini_batch_size, 3.0, nt)
            t = _time(fn, 1) * (1 if not quick else 10)
            rows.append({"name": "PyTorch CPU float64, %d thread%s" % (nt, "s" if nt > 1 else ""),
                         "seconds": t, "note": "" if not quick else "timed on 5,000, scaled"})
    for r in rows:
        r["speedup_vs_reference"] = t_ref / r["seconds"]
    return {"benchmark": "network", "sizes": sizes, "mini_batch_size": mini_batch_size,
            "n_train": n, "rows": rows}


def format_table(result):
    lines = ["### %s %s, mini-batch %d, one %d-image epoch"
             % (result["benchmark"], result.get("sizes", ""), result["mini_batch_size"],
                result["n_train"]), "",
             "| implementation | s / epoch | speed-up vs reference | note |",
             "| --- | ---: | ---: | --- |"]
    for r in result["rows"]:
        lines.append("| %s | %.4f | %.1fx | %s |" % (r["name"], r["seconds"],
                                                   r["speedup_vs_reference"], r["note"]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# The suite: every chapter's training at the book's settings and at
# mini-batch 100, for one thread and all threads, with FLOP rates measured
# against the machine's own GEMM peak.

#: The dense training settings the suite times (the book's chapter-1 and chapter-3 runs).
DENSE_CASES = (
    {"case": "network", "setting": "ch1 [784, 30, 10], quadratic, eta 3.0",
     "sizes": (784, 30, 10), "eta": 3.0, "lmbda": 0.0, "cost": "quadratic", "batches": (10, 100)},
    {"case": "network2", "setting": "ch3 [784, 30, 10], cross-entropy, eta 0.5, lmbda 5.0",
     "sizes": (784, 30, 10), "eta": 0.5, "lmbda": 5.0, "cost": "cross-entropy",
     "batches": (10, 100)},
)

#: Chapter 6's first convolutional network (``--preset ch6-conv1``), per mini-batch size.
CONV_CASE = {"case": "network3", "setting": "ch6 conv 20x5x5 + pool 2 + FC 100 + softmax, eta 0.1",
             "eta": 0.1, "batches": (10, 100)}

ALL_CASES = ("network", "network2", "network3", "feedforward", "expand_mnist")
N_EPOCH = 50000


def dense_flops_per_example(sizes, mini_batch_size, weight_decay=False):
    """FLOPs one training example costs in an SGD step of a dense network.

    Counted analytically, multiply-adds as two FLOPs: forward ``w·a`` is
    2·n_in·n_out per layer; backward is 2·n_in·n_out per layer for ∇w (δ·aᵀ)
    plus 2·n_in·n_out for every layer but the first for wᵀδ; the update is 2
    FLOPs per parameter (3 with L2 weight decay on the weights) once per
    mini-batch, shared by its examples. Element-wise work (bias add,
    sigmoid, σ') is O(n_out) per layer and left out.

    Returns a dict with "forward", "backward", "update" and "total".
    """
    from nndl_fast._validation import check_int, check_sizes
    sizes = [int(s) for s in check_sizes(sizes)]
    mini_batch_size = check_int(mini_batch_size, "mini_batch_size", 1)
    prods = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    forward = 2.0 * sum(prods)
    backward = 2.0 * sum(prods) + 2.0 * sum(prods[1:])
    n_weights, n_biases = sum(prods), sum(sizes[1:])
    update = ((3.0 if weight_decay else 2.0) * n_weights + 2.0 * n_biases) / mini_batch_size
    return {"forward": forward, "backward": backward, "update": update,
            "total": forward + backward + update}


def conv_flops_per_example(layers, mini_batch_size):
    """FLOPs per example of an SGD step of a chapter-6 network, counted analytically.

    ``layers`` lists ``("conv", (channels, height, width), (filters, kh, kw))``
    and ``("fc", n_in, n_out)`` in order. A 'valid' convolution's forward pass
    is 2·filters·channels·kh·kw per output pixel; backward costs as much again
    for ∇w and, except in the first layer, once more for the input gradient;
    pooling and activations are left out. The update is 2 FLOPs per parameter
    per mini-batch.
    """
    from nndl_fast._validation import check_int
    mini_batch_size = check_int(mini_batch_size, "mini_batch_size", 1)
    forward = backward = 0.0
    n_params = 0
    for i, layer in enumerate(layers):
        if layer[0] == "conv":
            (c, h, w), (f, kh, kw) = layer[1], layer[2]
            if kh > h or kw > w:
                raise ValueError("filter %dx%d larger than its %dx%d input" % (kh, kw, h, w))
            mults = f * c * kh * kw * (h - kh + 1) * (w - kw + 1)
            n_params += f * c * kh * kw + f
        elif layer[0] == "fc":
            mults = layer[1] * layer[2]
            n_params += mults + layer[2]
        else:
            raise ValueError("layer kind must be 'conv' or 'fc', got %r" % (layer[0],))
        forward += 2.0 * mults
        backward += 2.0 * mults * (2 if i > 0 else 1)
    update = 2.0 * n_params / mini_batch_size
    return {"forward": forward, "backward": backward, "update": update,
            "total": forward + backward + update}


def gemm_peak_gflops(dtype=np.float64, threads=1, n=2048, repeats=3):
    """The machine's measured GEMM rate: best of ``repeats`` n×n products through
    NumPy's BLAS limited to ``threads`` threads, in GFLOP/s."""
    from threadpoolctl import threadpool_limits
    from nndl_fast._validation import check_dtype, check_int
    dtype = check_dtype(dtype)
    threads = check_int(threads, "threads", 1)
    n = check_int(n, "n", 1)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    best = float("inf")
    with threadpool_limits(limits=threads, user_api="blas"):
        a @ b
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def _quietly(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _median_time(fn, repeats):
    ts = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _dense_network(module, case, dtype, num_threads):
    """A fresh network of ``case`` from ``module`` (compiled or reference)."""
    kwargs = {}
    if num_threads is not None:
        kwargs = {"dtype": dtype, "num_threads": num_threads}
    if case["case"] == "network2":
        return module.Network(list(case["sizes"]), cost=module.CrossEntropyCost, **kwargs)
    return module.Network(list(case["sizes"]), **kwargs)


def _sgd_epochs(net, case, data, mini_batch_size, epochs):
    if case["case"] == "network2":
        return net.SGD(data, epochs, mini_batch_size, case["eta"], lmbda=case["lmbda"])
    return net.SGD(data, epochs, mini_batch_size, case["eta"])


def _sgd_one_epoch(net, case, data, mini_batch_size):
    return _sgd_epochs(net, case, data, mini_batch_size, 1)


def _join_notes(*notes):
    return "; ".join(n for n in notes if n)


def _torch_dense_fn(case, X, Y, order, mini_batch_size, threads):
    """One epoch of ``case`` in PyTorch (float64, same algorithm), ready to time."""
    import torch
    torch.set_num_threads(threads)
    sizes = list(case["sizes"])
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b, dtype=torch.float64), torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    n = float(X.shape[0])
    # torch's weight_decay adds wd·w to the mean gradient: with wd = lmbda/n this is
    # the book's (1 - eta·lmbda/n)·w - (eta/m)·Σ∇w.
    opt = torch.optim.SGD([{"params": weights, "weight_decay": case["lmbda"] / n},
                           {"params": biases, "weight_decay": 0.0}], lr=case["eta"])
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64))
    Yt = torch.from_numpy(np.ascontiguousarray(Y, dtype=np.float64))
    idx = torch.from_numpy(np.asarray(order, dtype=np.int64))
    cross_entropy = case["cost"] == "cross-entropy"

    def run():
        for k in range(0, len(idx), mini_batch_size):
            b = idx[k:k + mini_batch_size]
            opt.zero_grad()
            out = model(Xt[b])
            if cross_entropy:
                loss = torch.nn.functional.binary_cross_entropy(out, Yt[b], reduction="sum")
            else:
                loss = 0.5 * ((out - Yt[b]) ** 2).sum()
            (loss / len(b)).backward()
            opt.step()
    return run


def _have_torch():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


class _Suite(object):
    """Runs the cases and collects the rows; one instance per ``run_suite`` call."""

    def __init__(self, quick, threads, n_train, reference_n, repeats, dtypes, use_torch,
                 gemm_n, log):
        from nndl_fast import mnist_loader
        self.quick = quick
        self.all_threads = threads or _config.get_num_threads()
        self.thread_counts = sorted({1, self.all_threads})
        self.n_train = n_train
        self.reference_n = reference_n
        self.repeats = repeats
        self.dtypes = [np.dtype(d).name for d in dtypes]
        self.use_torch = use_torch and _have_torch()
        self.gemm_n = gemm_n
        self.log = log
        self.rows, self.skipped, self.notes = [], [], []
        self.peaks = {}
        self.training_data, _, self.test_data = mnist_loader.load_data_wrapper()
        self.raw = mnist_loader.load_data()

    def peak(self, dtype, threads):
        key = "%s/%d" % (dtype, threads)
        if key not in self.peaks:
            self.peaks[key] = gemm_peak_gflops(dtype, threads, n=self.gemm_n)
            self.log("GEMM peak %s, %d thread(s): %.1f GFLOP/s" % (dtype, threads,
                                                                  self.peaks[key]))
        return self.peaks[key]

    def add(self, group, implementation, threads, dtype, seconds_per_epoch, flops, note="",
            kind=None):
        row = {"case": group["case"], "setting": group["setting"],
               "mini_batch_size": group.get("mini_batch_size"), "implementation": implementation,
               "kind": kind or implementation, "threads": threads, "dtype": dtype,
               "seconds": seconds_per_epoch, "images_per_s": N_EPOCH / seconds_per_epoch,
               "note": note}
        if flops is not None and dtype in ("float64", "float32") and threads:
            row["gflops"] = flops * N_EPOCH / seconds_per_epoch / 1e9
            row["peak_fraction"] = row["gflops"] / self.peak(dtype, threads)
        self.rows.append(row)
        self.log("  %-9s %-38s %s thread(s) %9.4f s / 50k"
                 % (group["case"], implementation, threads or "-", seconds_per_epoch))
        return row

    def dense(self, case):
        from nndl_fast import network
        from nndl_fast._validation import pack_training
        from nndl_fast.reference import network as ref_network, network2 as ref_network2
        ref_module = ref_network2 if case["case"] == "network2" else ref_network
        module = network if case["case"] == "network" else _config.import_optional("network2")
        if module is None:
            self.skipped.append("nndl_fast.network2 is not present: chapter-3 rows show the "
                                "reference only")
        n = min(self.n_train, len(self.training_data))
        n_ref = min(self.reference_n, n)
        data = list(self.training_data[:n])
        ref_data = list(self.training_data[:n_ref])
        X, Y = pack_training(data, case["sizes"][0], case["sizes"][-1], np.float64)
        order = np.random.RandomState(0).permutation(n).astype(np.int64)
        for mbs in case["batches"]:
            group = dict(case, mini_batch_size=mbs,
                         setting="%s, mini-batch %d" % (case["setting"], mbs))
            decay = case["lmbda"] > 0
            flops = dense_flops_per_example(case["sizes"], mbs, weight_decay=decay)["total"]
            self.log("%s, mini-batch %d" % (case["case"], mbs))
            # The book's per-example backprop on a part of an epoch, scaled up.
            np.random.seed(0)
            net = _dense_network(ref_module, case, None, None)
            with blas_single_thread():
                t = _median_time(lambda: _quietly(_sgd_one_epoch, net, case, ref_data, mbs), 1)
            self.add(group, "reference (book's per-example NumPy)", 1, "float64",
                     t * N_EPOCH / n_ref, flops, kind="reference",
                     note=_scaled_note(n_ref))
            if module is not None:
                for dtype in self.dtypes:
                    for nt in self.thread_counts:
                        np.random.seed(0)
                        net = _dense_network(module, case, dtype, nt)
                        _quietly(_sgd_one_epoch, net, case, list(data[:max(mbs, n // 20)]), mbs)
                        # Seconds per epoch inside a run, as the epoch loop measures
                        # them (shuffle and training): the median over the epochs
                        # of one call. The call also checks and packs the list once.
                        epochs = max(3, 2 * self.repeats + 1)
                        t0 = time.perf_counter()
                        _quietly(_sgd_epochs, net, case, data, mbs, epochs)
                        t_call = time.perf_counter() - t0
                        per_epoch = [s for s, _ in net._epoch_seconds]
                        t = float(np.median(per_epoch))
                        self.add(group, "nndl_fast", nt, dtype, t * N_EPOCH / n, flops,
                                 note=_join_notes(_scaled_note(n),
                                                  "median of %d epochs of a run (the call "
                                                  "packs the list once: +%.2f s)"
                                                  % (epochs, max(t_call - sum(per_epoch), 0.0))))
            if self.use_torch:
                for nt in self.thread_counts:
                    fn = _torch_dense_fn(case, X, Y, order, mbs, nt)
                    fn()
                    t = _median_time(fn, self.repeats)
                    self.add(group, "PyTorch CPU", nt, "float64", t * N_EPOCH / n, flops,
                             kind="torch", note=_scaled_note(n))

    def feedforward(self):
        from nndl_fast import network
        from nndl_fast.reference import network as ref_network
        sizes = (784, 30, 10)
        group = {"case": "feedforward", "setting": "evaluation of [784, 30, 10] "
                 "(forward pass + argmax)"}
        flops = 2.0 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        self.log("feedforward")
        test = self.test_data
        n_ref = min(len(test), max(100, self.reference_n * 2))
        np.random.seed(0)
        ref = ref_network.Network(list(sizes))
        with blas_single_thread():
            t = _median_time(lambda: [np.argmax(ref.feedforward(x)) for x, _ in test[:n_ref]], 1)
        self.add(group, "reference feedforward, one example at a time", 1, "float64",
                 t * N_EPOCH / n_ref, flops, kind="reference", note=_scaled_note(n_ref))
        X = np.ascontiguousarray(self.raw[2][0], dtype=np.float64)
        for dtype in self.dtypes:
            for nt in self.thread_counts:
                np.random.seed(0)
                net = network.Network(list(sizes), dtype=dtype)
                Xd = X.astype(dtype)
                net._forward_matrix(Xd[:100], num_threads=nt)
                t = _median_time(lambda: np.argmax(net._forward_matrix(Xd, num_threads=nt),
                                                   axis=1), max(3, self.repeats))
                self.add(group, "nndl_fast batched forward", nt, dtype,
                         t * N_EPOCH / X.shape[0], flops,
                         note="10,000 test images per call, scaled to 50,000")

    def expand(self):
        from nndl_fast import expand_mnist
        n = min(self.n_train, self.raw[0][0].shape[0])
        pair = (self.raw[0][0][:n], self.raw[0][1][:n])
        group = {"case": "expand_mnist", "setting": "each image + 4 one-pixel shifts "
                 "(50,000 -> 250,000)"}
        self.log("expand_mnist")
        t_loop = _median_time(lambda: per_image_loop(*pair), 1)
        self.add(group, "per-image np.roll loop", None, None, t_loop * N_EPOCH / n, None,
                 kind="reference", note=_scaled_note(n))
        t = _median_time(lambda: expand_mnist.expand(pair), self.repeats)
        self.add(group, "nndl_fast expand (whole-array NumPy)", None, None,
                 t * N_EPOCH / n, None, note=_scaled_note(n))

    def conv(self):
        network3 = _config.import_optional("network3")
        if network3 is None:
            self.skipped.append("nndl_fast.network3 is not present: chapter-6 rows skipped")
            return
        import tempfile
        from nndl_fast import expand_mnist
        n = min(self.n_train, self.raw[0][0].shape[0])
        if self.quick:
            n = min(n, 1000)
        n_eval = 1000
        tr, va, te = self.raw
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "subset.pkl.gz")
            expand_mnist.save(path, (tr[0][:n], tr[1][:n]), (va[0][:n_eval], va[1][:n_eval]),
                              (te[0][:n_eval], te[1][:n_eval]))
            training, validation, test = network3.load_data_shared(path)
        old_threads = _config.get_num_threads()
        try:
            for mbs in CONV_CASE["batches"]:
                group = dict(CONV_CASE, mini_batch_size=mbs,
                             setting="%s, mini-batch %d" % (CONV_CASE["setting"], mbs))
                self.log("network3, mini-batch %d" % mbs)
                for nt in self.thread_counts:
                    _config.set_num_threads(nt)
                    np.random.seed(0)
                    net = network3.Network(network3_layers("ch6-conv1", mbs, network3), mbs)
                    flops = conv_flops_per_example(layer_flop_spec(net.layers), mbs)["total"]
                    t = _median_time(lambda: _quietly(net.SGD, training, 1, mbs, CONV_CASE["eta"],
                                                      validation, test), 1)
                    self.add(group, "nndl_fast network3", nt, "float32"
                             if getattr(net, "dtype", None) == np.float32 else "float64",
                             t * N_EPOCH / n, flops,
                             note=_join_notes(_scaled_note(n), "includes evaluating 2 x %d images")
                             % n_eval)
        finally:
            _config.set_num_threads(old_threads)

    def finish(self):
        """Ratios within each (case, mini-batch) group, measured in this run."""
        groups = {}
        for r in self.rows:
            groups.setdefault((r["case"], r["mini_batch_size"]), []).append(r)
        for rows in groups.values():
            ref = [r for r in rows if r["kind"] == "reference"]
            torch_rows = {r["threads"]: r for r in rows if r["kind"] == "torch"}
            for r in rows:
                if ref:
                    r["speedup_vs_reference"] = ref[0]["seconds"] / r["seconds"]
                if r["threads"] in torch_rows:
                    r["speedup_vs_torch"] = torch_rows[r["threads"]]["seconds"] / r["seconds"]


def _scaled_note(n):
    return "" if n == N_EPOCH else "timed on %s images, scaled" % format(n, ",")


def run_suite(quick=False, threads=None, cases=ALL_CASES, n_train=None, reference_n=None,
              repeats=None, dtypes=("float64",), use_torch=True, gemm_n=None, log=None):
    """Run the benchmark suite; returns a JSON-ready dict (rows, GEMM peaks, environment).

    Full mode times whole 50,000-image epochs of the compiled code (median of
    ``repeats``) and 5,000 examples of the per-example reference; ``quick``
    times 5,000 and 500 and scales every time to a 50,000-image epoch.
    ``n_train`` and ``reference_n`` override those sizes.
    """
    from nndl_fast._validation import check_int
    unknown = [c for c in cases if c not in ALL_CASES]
    if unknown:
        raise ValueError("unknown benchmark case(s) %s; choose from %s"
                         % (", ".join(map(repr, unknown)), ", ".join(ALL_CASES)))
    if threads is not None:
        threads = check_int(threads, "threads", 1)
    n_train = check_int(n_train if n_train is not None else (5000 if quick else N_EPOCH),
                        "n_train", 1)
    reference_n = check_int(reference_n if reference_n is not None
                            else (500 if quick else 5000), "reference_n", 1)
    repeats = check_int(repeats if repeats is not None else (1 if quick else 3), "repeats", 1)
    gemm_n = check_int(gemm_n if gemm_n is not None else (1024 if quick else 2048),
                       "gemm_n", 16)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    suite = _Suite(quick, threads, n_train, reference_n, repeats, dtypes, use_torch, gemm_n,
                   log)
    if use_torch and not suite.use_torch:
        suite.skipped.append("PyTorch is not installed: no PyTorch rows")
    for case in cases:
        if case in ("network", "network2"):
            suite.dense([c for c in DENSE_CASES if c["case"] == case][0])
        elif case == "network3":
            suite.conv()
        elif case == "feedforward":
            suite.feedforward()
        else:
            suite.expand()
    suite.finish()
    if quick:
        suite.notes.append("quick mode: fractions of an epoch (compiled %s images, reference "
                           "%s), times scaled to 50,000 images; noisy"
                           % (format(n_train, ","), format(reference_n, ",")))
    return {"benchmark": "suite", "quick": quick, "rows": suite.rows,
            "gemm_peak_gflops": suite.peaks, "skipped": suite.skipped, "notes": suite.notes,
            "threads": suite.thread_counts, "wall_seconds": time.perf_counter() - t0,
            "environment": _environment()}


def format_suite_table(result):
    """The suite's rows as a Markdown table, followed by its notes."""
    def num(v, fmt):
        return "" if v is None else fmt % v
    lines = ["| case | implementation | threads | dtype | s / 50k images | images/s | "
             "x reference | x PyTorch | GFLOP/s | % of GEMM peak | note |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in result["rows"]:
        case = r["case"] if r.get("mini_batch_size") is None \
            else "%s, batch %d" % (r["case"], r["mini_batch_size"])
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            case, r["implementation"], r["threads"] or "-", r["dtype"] or "-",
            num(r["seconds"], "%.3f"), num(r["images_per_s"], "%.0f"),
            num(r.get("speedup_vs_reference"), "%.1f"), num(r.get("speedup_vs_torch"), "%.2f"),
            num(r.get("gflops"), "%.2f"), num(r.get("peak_fraction") and
                                              100 * r["peak_fraction"], "%.1f%%"),
            r["note"]))
    lines.append("")
    settings = []
    for r in result["rows"]:
        if r["setting"] not in settings:
            settings.append(r["setting"])
    lines.append("Settings: " + "; ".join(settings) + ".")
    if result.get("gemm_peak_gflops"):
        lines.append("GEMM peak (NumPy's BLAS, measured in this run): " + ", ".join(
            "%s %s threads %.1f GFLOP/s" % (k.split("/")[0], k.split("/")[1], v)
            for k, v in sorted(result["gemm_peak_gflops"].items())) + ".")
    for note in result.get("notes", []) + result.get("skipped", []):
        lines.append("Note: %s." % note)
    return "\n".join(lines)


def per_image_loop(x, y):
    """expand_mnist one image at a time, as a plain script would: the comparison point."""
    side = int(round(np.sqrt(x.shape[1])))
    # (roll amount, axis, index of the row/column that wrapped): up, down, left, right
    shifts = ((-1, 0, -1), (1, 0, 0), (-1, 1, -1), (1, 1, 0))
    xs, ys = [], []
    for image, label in zip(x, y):
        xs.append(image)
        ys.append(label)
        img = image.reshape(side, side)
        for amount, axis, edge in shifts:
            moved = np.roll(img, amount, axis=axis)
            if axis == 0:
                moved[edge, :] = 0
            else:
                moved[:, edge] = 0
            xs.append(moved.reshape(-1))
            ys.append(label)
    return np.array(xs, dtype=np.float32), np.array(ys, dtype=np.int64)


def layer_flop_spec(layers):
    """network3 layer objects in the form ``conv_flops_per_example`` takes."""
    out = []
    for layer in layers:
        if hasattr(layer, "filter_shape"):
            f, _, kh, kw = layer.filter_shape
            out.append(("conv", tuple(layer.image_shape[1:]), (f, kh, kw)))
        else:
            out.append(("fc", layer.n_in, layer.n_out))
    return out


# ---------------------------------------------------------------------------
# The kernel paths against each other: each path a processor runs, in fresh
# processes, on the same networks in the same run.

#: (name, what it trains) of the kernel-path benchmark: chapter 1's network in
#: both dtypes and chapter 6's first convolutional network (float32).
PATH_CASES = (("[784, 30, 10] float64", "dense", "float64"),
              ("[784, 30, 10] float32", "dense", "float32"),
              ("ConvPool(20, 1, 5, 5) + FC(2880, 100) + Softmax, float32", "conv", "float32"))
#: The most each path may take, as a multiple of the AVX-512 path's time.
PATH_TARGETS = {"avx512": None, "avx2": 1.5, "generic": 2.5}
#: What OpenBLAS (NumPy's and SciPy's GEMM, under the conv net's kernels) is
#: told to run as on each path, so that it does not use AVX-512 behind the
#: kernels' back; the AVX-512 path leaves it its own choice.
PATH_BLAS_CORETYPE = {"avx512": None, "avx2": "Haswell", "generic": "Nehalem"}


def _paths_worker(argv):
    """One timing run of every PATH_CASES case on the kernel path this process
    was started with (NNDL_FAST_KERNELS); prints one JSON line."""
    opts = json.loads(argv[0])
    from threadpoolctl import threadpool_info
    from nndl_fast import _dense, mnist_loader, network
    network3 = _config.import_optional("network3")
    threads, mbs = opts["threads"], 10
    result = {"path": _dense.kernel_isa(), "seconds": {},
              "blas": sorted({str(i.get("architecture")) for i in threadpool_info()
                              if i.get("user_api") == "blas"})}
    raw = mnist_loader.load_data()
    training_data = None
    for name, kind, dtype in PATH_CASES:
        if kind == "dense":
            if training_data is None:
                # load_data_wrapper's list, for the images timed only
                training_data = [(x.reshape(784, 1), mnist_loader.vectorized_result(y))
                                 for x, y in zip(*(a[:opts["n_dense"]] for a in raw[0]))]
            np.random.seed(0)
            random.seed(0)
            net = network.Network([784, 30, 10], dtype=dtype, num_threads=threads)
            # Two epochs of one call (the call packs the list once, outside the
            # epochs' times): the faster epoch.
            _quietly(net.SGD, training_data, 2, mbs, 3.0)
            t = min(s for s, _ in net._epoch_seconds)
            n = len(training_data)
        else:
            if network3 is None:
                continue
            _config.set_num_threads(threads)
            n = opts["n_conv"]
            x, y = raw[0][0][:n], raw[0][1][:n]
            np.random.seed(0)
            net = network3.Network(network3_layers("ch6-conv1", mbs, network3), mbs,
                                   dtype=np.dtype(dtype))
            warm = max(mbs, n // 50) // mbs * mbs
            _quietly(net.SGD, (x[:warm], y[:warm]), 1, mbs, 0.1, None, None)
            t0 = time.perf_counter()
            _quietly(net.SGD, (x, y), 1, mbs, 0.1, None, None)
            t = time.perf_counter() - t0
        result["seconds"][name] = t * N_EPOCH / n
    print(json.dumps(result))
    return 0


def _path_environment(path):
    env = dict(os.environ)
    env[_config.KERNELS_ENV] = path
    env.pop("OPENBLAS_CORETYPE", None)
    if PATH_BLAS_CORETYPE[path]:
        env["OPENBLAS_CORETYPE"] = PATH_BLAS_CORETYPE[path]
    # the children import this nndl_fast, wherever it is, and this module
    here = [os.path.dirname(os.path.dirname(os.path.abspath(nndl_fast.__file__))), BENCH_DIR]
    env["PYTHONPATH"] = os.pathsep.join(here + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    return env


def bench_kernel_paths(quick=False, threads=2, repeats=None, paths=None, log=None):
    """Seconds per 50,000-image epoch of each PATH_CASES case on each kernel path
    this processor runs, and their ratios to the fastest path's.

    Each timing run is a fresh process with NNDL_FAST_KERNELS set (and
    OPENBLAS_CORETYPE, see PATH_BLAS_CORETYPE); the paths take turns, in a
    rotated order each round, and each keeps its best of ``repeats`` (3; 1 when
    ``quick``). ``quick`` times 5,000 images of the dense networks and 500 of
    the conv net and scales the times to 50,000.
    """
    import subprocess
    from nndl_fast import _dense
    from nndl_fast._validation import check_int
    threads = check_int(threads, "threads", 1)
    repeats = check_int(repeats if repeats is not None else (1 if quick else 3), "repeats", 1)
    runs = _dense.kernel_paths()
    paths = list(paths) if paths is not None else runs
    for p in paths:
        if p not in runs:
            raise ValueError("kernel path %r: this processor runs %s" % (p, ", ".join(runs)))
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    opts = {"threads": threads, "n_dense": 5000 if quick else N_EPOCH,
            "n_conv": 500 if quick else N_EPOCH}
    seconds = {p: {} for p in paths}
    blas = {}
    t_start = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    code = ("import sys; from suite import _paths_worker; "
            "sys.exit(_paths_worker(sys.argv[1:]))")
    for r in range(repeats):
        order = paths[r % len(paths):] + paths[:r % len(paths)]
        for p in order:
            proc = subprocess.run([sys.executable, "-c", code, json.dumps(opts)],
                                  capture_output=True, text=True, env=_path_environment(p))
            if proc.returncode != 0:
                raise RuntimeError("the %s timing run failed:\n%s"
                                   % (p, (proc.stdout + proc.stderr)[-3000:]))
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            if out["path"] != p:
                raise RuntimeError("asked for the %s path, the run used %s" % (p, out["path"]))
            blas[p] = out["blas"]
            for case, t in out["seconds"].items():
                seconds[p].setdefault(case, []).append(t)
            log("round %d, %-8s %s" % (r + 1, p, ", ".join(
                "%.3f s" % t for t in out["seconds"].values())))
    base = paths[0]
    rows = []
    for case, _, _ in PATH_CASES:
        if case not in seconds[base]:
            continue
        for p in paths:
            best = min(seconds[p][case])
            ratio = best / min(seconds[base][case])
            target = PATH_TARGETS.get(p) if base == "avx512" else None
            rows.append({"case": case, "path": p, "seconds": best, "all_seconds": seconds[p][case],
                         "ratio": ratio, "target": target,
                         "meets_target": None if target is None else ratio <= target})
    return {"benchmark": "kernel_paths", "quick": quick, "threads": threads, "repeats": repeats,
            "base": base, "rows": rows, "blas": blas, "load_average_at_start": load,
            "n_images": {"dense": opts["n_dense"], "conv": opts["n_conv"]},
            "wall_seconds": time.perf_counter() - t_start, "environment": _environment()}


def format_paths_table(result):
    """The kernel-path benchmark as a Markdown table and its notes."""
    base = result["base"]
    lines = ["| case | kernel path | s / 50k images | x %s | target |" % base,
             "| --- | --- | ---: | ---: | --- |"]
    for r in result["rows"]:
        target = ""
        if r["target"] is not None:
            target = "<= %.1fx: %s" % (r["target"], "met" if r["meets_target"] else "NOT met")
        lines.append("| %s | %s | %.3f | %.2f | %s |" % (r["case"], r["path"], r["seconds"],
                                                         r["ratio"], target))
    lines.append("")
    lines.append("Mini-batch 10, %d threads; each path in fresh processes, best of %d, paths "
                 "alternating." % (result["threads"], result["repeats"]))
    lines.append("BLAS (under the conv net): " + "; ".join(
        "%s: %s" % (p, ", ".join(a)) for p, a in result["blas"].items()) + ".")
    if result["quick"]:
        lines.append("Quick mode: %s images of the dense networks and %s of the conv net, "
                     "times scaled to 50,000; noisy." % (format(result["n_images"]["dense"], ","),
                                                        format(result["n_images"]["conv"], ",")))
    if result.get("load_average_at_start") is not None:
        lines.append("Load average at the start: %.2f (on %s processors)."
                     % (result["load_average_at_start"], os.cpu_count()))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nndl_fast bench",
                                     description="Benchmarks; with no name, the whole suite.")
    parser.add_argument("what", nargs="?", default="suite",
                        choices=["suite", "network", "kernel_paths"])
    parser.add_argument("--sizes", default="784,30,10", help="network: layer sizes")
    parser.add_argument("--batch", type=int, default=10, help="network: mini-batch size")
    parser.add_argument("--threads", type=int, default=None,
                        help="the 'all threads' count (default: all available; "
                        "kernel_paths: 2)")
    parser.add_argument("--quick", action="store_true",
                        help="fractions of epochs, scaled; finishes in under a minute")
    parser.add_argument("--cases", default=",".join(ALL_CASES),
                        help="suite: comma-separated subset of %s" % ",".join(ALL_CASES))
    parser.add_argument("--dtypes", default="float64",
                        help="suite: compute dtypes of the compiled rows (float64,float32)")
    parser.add_argument("--train-size", type=int, default=None,
                        help="suite: images timed per compiled epoch (scaled to 50,000)")
    parser.add_argument("--reference-size", type=int, default=None,
                        help="suite: images timed for the per-example reference")
    parser.add_argument("--no-torch", action="store_true", help="suite: skip PyTorch rows")
    parser.add_argument("--json", default=None, help="write results as JSON here")
    parser.add_argument("--png", default=None,
                        help="suite: bar chart here (default bench/results/suite.png)")
    args = parser.parse_args(argv)
    if args.what == "kernel_paths":
        result = bench_kernel_paths(quick=args.quick,
                                    threads=args.threads if args.threads is not None else 2)
        print(format_paths_table(result))
        default_json = os.path.join("bench", "results", "kernel_paths.json")
    elif args.what == "network":
        sizes = [int(s) for s in args.sizes.split(",")]
        result = bench_network(sizes, args.batch, quick=args.quick, threads=args.threads)
        result["environment"] = _environment()
        print(format_table(result))
        default_json = os.path.join("bench", "results", "network.json")
    else:
        result = run_suite(quick=args.quick, threads=args.threads,
                           cases=[c for c in args.cases.split(",") if c],
                           n_train=args.train_size, reference_n=args.reference_size,
                           dtypes=[d for d in args.dtypes.split(",") if d],
                           use_torch=not args.no_torch)
        print(format_suite_table(result))
        default_json = os.path.join("bench", "results", "suite.json")
    print()
    print("threadpool_info:")
    for info in result["environment"]["threadpool_info"]:
        print("  %s %s %s threads=%s %s" % (info.get("user_api"), info.get("internal_api"),
                                            info.get("version"), info.get("num_threads"),
                                            info.get("architecture", "")))
    path = args.json or default_json
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print("wrote %s" % path)
    if args.what == "suite":
        png = args.png or os.path.join(os.path.dirname(path) or ".", "suite.png")
        try:
            from nndl_fast.plot import plot_benchmark
            plot_benchmark(result, png)
            print("wrote %s" % png)
        except ImportError as exc:
            print("no chart: %s" % exc)
    return 0

if __name__ == "__main__":
    sys.exit(main())
