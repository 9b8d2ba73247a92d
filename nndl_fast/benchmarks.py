"""Benchmarks: seconds per 50,000-image epoch, as ratios to the NumPy reference
measured in the same run.

``python -m nndl_fast bench network [--quick] [--json PATH]`` (or
``python bench/bench_network.py``) prints a Markdown table and writes JSON.
"""
import argparse
import json
import os
import platform
import random
import statistics
import sys
import time

import numpy as np


def _environment():
    from threadpoolctl import threadpool_info
    from . import _config
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
        from .reference.network import sigmoid
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
    from . import _compiled, _config, _dense, mnist_loader, network
    from .reference import network as ref
    from ._validation import pack_training
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
            fast._sync_params()

            def run(fast=fast, Xd=Xd, Yd=Yd, nt=nt):
                with _compiled.blas_single_thread():
                    _dense.train_epoch(Xd, Yd, order, fast.weights, fast.biases,
                                       mini_batch_size, 3.0, num_threads=nt)
            rows.append({"name": "nndl_fast %s, %d thread%s" % (np.dtype(dtype).name, nt,
                                                                 "s" if nt > 1 else ""),
                         "seconds": _time(run, repeats), "note": ""})
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nndl_fast bench")
    parser.add_argument("what", nargs="?", default="network", choices=["network"])
    parser.add_argument("--sizes", default="784,30,10")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="small samples, one repeat")
    parser.add_argument("--json", default=None, help="write results as JSON here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    result = bench_network(sizes, args.batch, quick=args.quick, threads=args.threads)
    result["environment"] = _environment()
    print(format_table(result))
    print()
    print("threadpool_info:")
    for info in result["environment"]["threadpool_info"]:
        print("  %s %s %s threads=%s %s" % (info.get("user_api"), info.get("internal_api"),
                                            info.get("version"), info.get("num_threads"),
                                            info.get("architecture", "")))
    path = args.json or os.path.join("bench", "results", "network.json")
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print("wrote %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
