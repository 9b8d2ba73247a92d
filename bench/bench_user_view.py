"""What a user sees: SGD called one epoch at a time, and the main job's whole run.

    python bench/bench_user_view.py [--main-epochs 30] [--n3-train 10000] [--first-runs 5]
                                    [--json PATH]

1. One-epoch calls, as the book's scripts and notebooks make them (chapter 5's
   script calls ``net.SGD(training_data, 1, ...)`` 500 times): for ``network``
   (with ``test_data``), ``network2`` (``lmbda``, ``evaluation_data`` and all four
   monitors) and ``network3`` (the first conv net, with validation and test
   data), the seconds of
   - the first call on a list (everything packed),
   - a repeated call on the same list (best of three),
   - one epoch of a 6-epoch call,
   with the ratios repeated / epoch and first / epoch, and for ``network`` and
   ``network2`` the book's algorithm (``nndl_fast.reference``) making the same
   one-epoch call.
   The first call of a fresh process is also timed in ``--first-runs`` separate
   processes (one sample each: it is the process's first), with the median and
   range of its ratio to an epoch.
2. What monitoring costs, as a share of one 50,000-image training epoch:
   ``network2``'s four monitors (each alone, in a 4-epoch call; the median of
   the last three epochs) and ``network3``'s per-epoch validation and test
   accuracy (10,000 images each) on the first conv net.
3. The main job, start of process to last line: ``python -m nndl_fast train``
   (the book's [784, 30, 10] run, per-epoch test evaluation) against the book's
   algorithm running the same loop (``nndl_fast.reference.network``), each in a
   fresh interpreter.

Times are wall-clock on this machine with its default threads; both sides of
each ratio are measured in the same run.
"""
import argparse
import contextlib
import io
import json
import os
import platform
import random
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _timed(fn):
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        fn()
    return time.perf_counter() - t0


def one_epoch_calls(name, make_net, train_call, training, reference=None):
    """Seconds of the first call, a repeated call, one epoch of a 6-epoch call."""
    from nndl_fast import _datacache
    _datacache.clear()
    np.random.seed(0)
    random.seed(0)
    net = make_net()
    data = list(training) if isinstance(training, list) else training
    first = _timed(lambda: train_call(net, data, 1))
    repeated = min(_timed(lambda: train_call(net, data, 1)) for _ in range(3))
    six = _timed(lambda: train_call(net, data, 6)) / 6
    row = {"net": name, "first_s": first, "repeated_s": repeated, "epoch_of_6_s": six,
           "repeated_ratio": repeated / six, "first_ratio": first / six}
    if reference is not None:
        np.random.seed(0)
        random.seed(0)
        ref_net = reference[0]()
        ref_data = list(training)
        row["reference_call_s"] = _timed(lambda: reference[1](ref_net, ref_data, 1))
        row["speedup_vs_reference"] = row["reference_call_s"] / repeated
    return row


DENSE_CALLS = ("network", "network2")


def dense_call(module, validation, test):
    """``(name, call)`` of the one-epoch SGD call timed for ``network`` or
    ``network2``: call(net, data, epochs) trains net as the book's scripts do."""
    if module == "network":
        def call(net, data, epochs):
            net.SGD(data, epochs, 10, 3.0, test_data=test)
        return "network [784,30,10], test_data", call

    def call(net, data, epochs):
        net.SGD(data, epochs, 10, 0.5, lmbda=5.0, evaluation_data=validation,
                monitor_evaluation_cost=True, monitor_evaluation_accuracy=True,
                monitor_training_cost=True, monitor_training_accuracy=True)
    return "network2 [784,30,10], lmbda, 4 monitors", call


def user_calls(args):
    import importlib
    from nndl_fast import mnist_loader, network3
    training, validation, test = mnist_loader.load_data_wrapper()
    rows = []
    for module in DENSE_CALLS:
        compiled = importlib.import_module("nndl_fast." + module)
        reference = importlib.import_module("nndl_fast.reference." + module)
        name, call = dense_call(module, validation, test)
        rows.append(one_epoch_calls(
            name, lambda: compiled.Network([784, 30, 10]), call, training,
            reference=(lambda: reference.Network([784, 30, 10]), call)))

    from ch6_table import layers_for
    tr3, va3, te3 = network3.load_data_shared()
    from nndl_fast.reference.network3 import SharedArray
    n = args.n3_train
    tr3 = (SharedArray(tr3[0].get_value()[:n]), SharedArray(tr3[1].get_value()[:n]))

    def n3_call(net, data, epochs):
        net.SGD(data, epochs, 10, 0.1, va3, te3)
    rows.append(one_epoch_calls(
        "network3 first conv net (%d images), validation + test" % n,
        lambda: network3.Network(layers_for("conv1", network3), 10), n3_call, tr3))
    return rows


FIRST_CALL = """
import json, random, sys
import numpy as np
sys.path.insert(0, {here!r})
import bench_user_view as bench
from nndl_fast import mnist_loader, {module}
training, validation, test = mnist_loader.load_data_wrapper()
np.random.seed(0); random.seed(0)
net = {module}.Network([784, 30, 10])
call = bench.dense_call({module!r}, validation, test)[1]
first = bench._timed(lambda: call(net, training, 1))
epoch = bench._timed(lambda: call(net, training, 6)) / 6
print(json.dumps([first, epoch]))
"""


def first_calls_in_fresh_processes(runs):
    """Per net, the first call's ratio to an epoch, each in a process of its own."""
    out = []
    for module in DENSE_CALLS:
        ratios = []
        for _ in range(runs):
            ran = subprocess.run([sys.executable, "-c", FIRST_CALL.format(
                here=HERE, module=module)], capture_output=True, text=True)
            if ran.returncode != 0:
                raise SystemExit("first call of %s failed:\n%s" % (module, ran.stderr))
            first, epoch = json.loads(ran.stdout.strip().splitlines()[-1])
            ratios.append(first / epoch)
        out.append({"net": dense_call(module, None, None)[0], "runs": runs,
                    "median_ratio": float(np.median(ratios)), "ratios": ratios})
    return out


def monitor_shares(args):
    """Each monitor's seconds over the same epoch's training seconds."""
    from nndl_fast import mnist_loader, network2, network3
    training, validation, test = mnist_loader.load_data_wrapper()
    shares = []
    for name in ("monitor_training_cost", "monitor_training_accuracy",
                 "monitor_evaluation_cost", "monitor_evaluation_accuracy"):
        np.random.seed(0)
        random.seed(0)
        net = network2.Network([784, 30, 10])
        _timed(lambda: net.SGD(list(training), 4, 10, 0.5, lmbda=5.0,
                               evaluation_data=validation, **{name: True}))
        per_epoch = [(t - s) / s for s, t in net._epoch_seconds[1:]]
        shares.append({"net": "network2 [784,30,10], " + name,
                       "share": float(np.median(per_epoch)),
                       "epoch_s": float(np.median([s for s, _ in net._epoch_seconds[1:]]))})
    from ch6_table import layers_for
    tr3, va3, te3 = network3.load_data_shared()
    np.random.seed(0)
    net = network3.Network(layers_for("conv1", network3), 10)
    n = args.n3_train
    x, y = tr3[0].get_value()[:n], tr3[1].get_value()[:n]
    from nndl_fast.reference.network3 import SharedArray
    part = (SharedArray(x), SharedArray(y))
    _timed(lambda: net.SGD(part, 1, 10, 0.1, None, None))
    epoch = min(_timed(lambda: net.SGD(part, 1, 10, 0.1, None, None))
                for _ in range(2)) * 50000 / n
    for label, data in (("validation", va3), ("test", te3)):
        # What SGD runs per epoch: the accuracy of data checked once per call.
        xs, ys = net._checked_data(data, label)
        seconds = min(_timed(lambda: net._accuracy(xs, ys, net.mini_batch_size))
                      for _ in range(3))
        shares.append({"net": "network3 first conv net, %s accuracy" % label,
                       "share": seconds / epoch, "epoch_s": epoch})
    return shares


def main_job(args):
    """Wall seconds of the main job, compiled and the book's algorithm."""
    compiled = [sys.executable, "-m", "nndl_fast", "train", "--epochs", str(args.main_epochs),
                "--seed", "1"]
    book = [sys.executable, "-c",
            "import random, numpy as np\n"
            "from nndl_fast import mnist_loader\n"
            "from nndl_fast.reference import network\n"
            "np.random.seed(1); random.seed(1)\n"
            "tr, va, te = mnist_loader.load_data_wrapper()\n"
            "net = network.Network([784, 30, 10])\n"
            "net.SGD(tr, %d, 10, 3.0, test_data=te)\n" % args.main_epochs]
    out = {}
    for label, cmd in (("nndl_fast", compiled), ("book's algorithm", book)):
        t0 = time.perf_counter()
        ran = subprocess.run(cmd, capture_output=True, text=True, cwd=args.cwd)
        out[label] = time.perf_counter() - t0
        if ran.returncode != 0:
            raise SystemExit("%s failed:\n%s" % (label, ran.stderr))
        out[label + " last line"] = ran.stdout.strip().splitlines()[-1]
    out["speedup"] = out["book's algorithm"] / out["nndl_fast"]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--main-epochs", type=int, default=30,
                        help="epochs of the main job (the book's: 30; 0 skips it)")
    parser.add_argument("--n3-train", type=int, default=10000,
                        help="training images for the network3 calls")
    parser.add_argument("--first-runs", type=int, default=5,
                        help="fresh processes timing the first call (0 skips them)")
    parser.add_argument("--cwd", default=os.getcwd(), help="where the main job runs")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_info
    import nndl_fast
    results = {"machine": platform.processor() or platform.machine(),
               "threads": nndl_fast.get_num_threads(),
               "blas": [i.get("internal_api") for i in threadpool_info()],
               "calls": user_calls(args)}
    print("One-epoch SGD calls (seconds; ratios against one epoch of a 6-epoch call)")
    print("%-48s %8s %8s %8s %9s %7s %10s %8s" % ("", "first", "repeat", "epoch/6",
                                                 "repeat/ep", "first/ep", "book's call",
                                                 "speed-up"))
    for r in results["calls"]:
        print("%-48s %8.3f %8.3f %8.3f %8.2fx %6.2fx %10s %8s" % (
            r["net"], r["first_s"], r["repeated_s"], r["epoch_of_6_s"], r["repeated_ratio"],
            r["first_ratio"],
            "%.2f" % r["reference_call_s"] if "reference_call_s" in r else "-",
            "%.1fx" % r["speedup_vs_reference"] if "speedup_vs_reference" in r else "-"))
    if args.first_runs:
        results["first_calls"] = first_calls_in_fresh_processes(args.first_runs)
        print()
        print("The first call of a fresh process over one epoch of a 6-epoch call "
              "(%d processes)" % args.first_runs)
        for r in results["first_calls"]:
            print("%-48s median %.2fx  (%s)" % (r["net"], r["median_ratio"], ", ".join(
                "%.2f" % x for x in sorted(r["ratios"]))))
    results["monitors"] = monitor_shares(args)
    print()
    print("Monitoring, as a share of one 50,000-image training epoch")
    for r in results["monitors"]:
        print("%-56s %5.1f%%  (epoch %.3f s)" % (r["net"], 100 * r["share"], r["epoch_s"]))
    if args.main_epochs:
        job = results["main_job"] = main_job(args)
        print()
        print("Main job, %d epochs, start of process to last line: nndl_fast %.1f s, "
              "the book's algorithm %.1f s (%.1fx)"
              % (args.main_epochs, job["nndl_fast"], job["book's algorithm"], job["speedup"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
