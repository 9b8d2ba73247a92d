"""Seconds per epoch of network2.SGD on MNIST with all four monitors on.

    python -m nndl_fast bench network2 [--sizes 784,30,10] [--json PATH]

One epoch on the 50,000 training images, then the four monitors (cost and
accuracy on the training data and on the 10,000 validation images), for the
NumPy reference and for nndl_fast in float64 and float32, in the same run.

The reference is slow, so it is timed on a fraction of the data (``--ref-fraction``)
and scaled to the full sizes; the table says so. nndl_fast runs ``--epochs``
full epochs and reports the fastest (the first includes one-time start-up such as
thread creation); packing the data, done once per SGD call, is reported apart.
"""
import argparse
import contextlib
import io
import json
import os
import random
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def time_reference(sizes, training, validation, args):
    from nndl_fast.reference import network2 as ref
    frac = args.ref_fraction
    n_train = max(1, int(round(len(training) * frac)))
    n_eval = max(1, int(round(len(validation) * frac)))
    scale_train = len(training) / n_train
    scale_eval = len(validation) / n_eval
    np.random.seed(0)
    random.seed(0)
    net = ref.Network(sizes, cost=ref.CrossEntropyCost)
    sub_train = list(training[:n_train])
    sub_eval = validation[:n_eval]
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        net.SGD(sub_train, 1, args.batch, args.eta, lmbda=args.lmbda)
        t_train = (time.perf_counter() - t0) * scale_train
    t0 = time.perf_counter()
    net.total_cost(sub_train, args.lmbda)
    net.accuracy(sub_train, convert=True)
    t_mon_train = (time.perf_counter() - t0) * scale_train
    t0 = time.perf_counter()
    net.total_cost(sub_eval, args.lmbda, convert=True)
    net.accuracy(sub_eval)
    t_mon_eval = (time.perf_counter() - t0) * scale_eval
    return {"variant": "reference (NumPy)", "train_s": t_train,
            "epoch_s": t_train + t_mon_train + t_mon_eval,
            "note": "timed on %d training / %d evaluation images (%.0f%%), scaled"
                    % (n_train, n_eval, 100 * frac)}


def time_nndl_fast(sizes, dtype, training, validation, args):
    from nndl_fast import network2
    np.random.seed(0)
    random.seed(0)
    net = network2.Network(sizes, cost=network2.CrossEntropyCost, dtype=dtype,
                           num_threads=args.threads)
    data = list(training)
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        lists = net.SGD(data, args.epochs, args.batch, args.eta, lmbda=args.lmbda,
                        evaluation_data=validation, monitor_evaluation_cost=True,
                        monitor_evaluation_accuracy=True, monitor_training_cost=True,
                        monitor_training_accuracy=True)
        total = time.perf_counter() - t0
    train_s = [t for t, _ in net._epoch_seconds]
    epoch_s = [t for _, t in net._epoch_seconds]
    best = int(np.argmin(epoch_s))
    return {"variant": "nndl_fast %s" % np.dtype(dtype).name, "train_s": train_s[best],
            "epoch_s": epoch_s[best], "all_epoch_s": epoch_s,
            "pack_s": total - sum(epoch_s),
            "evaluation_accuracy": lists[1][-1], "n_evaluation": len(validation),
            "note": "fastest of %d full epochs" % len(epoch_s)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nndl_fast bench network2",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="784,30,10")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--eta", type=float, default=0.5)
    parser.add_argument("--lmbda", type=float, default=5.0)
    parser.add_argument("--epochs", type=int, default=3, help="nndl_fast epochs to time")
    parser.add_argument("--ref-fraction", type=float, default=0.1,
                        help="fraction of the data the reference is timed on")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--json", default=None,
                        help="where to write the results (default bench/results/...)")
    args = parser.parse_args(argv)
    if not 0 < args.ref_fraction <= 1:
        parser.error("--ref-fraction must be in (0, 1], got %g" % args.ref_fraction)
    if args.epochs < 1:
        parser.error("--epochs must be >= 1, got %d" % args.epochs)
    sizes = [int(s) for s in args.sizes.split(",")]

    import threadpoolctl
    import nndl_fast
    from nndl_fast import _config, mnist_loader

    t0 = time.perf_counter()
    training, validation, _ = mnist_loader.load_data_wrapper()
    print("MNIST loaded in %.1f s: %d training, %d evaluation images"
          % (time.perf_counter() - t0, len(training), len(validation)))
    print("network2.Network(%s), cross-entropy, mini-batch %d, eta %g, lmbda %g, "
          "all four monitors, %d thread(s)"
          % (sizes, args.batch, args.eta, args.lmbda,
             _config.resolve_num_threads(args.threads)))

    rows = []
    if not args.no_reference:
        rows.append(time_reference(sizes, training, validation, args))
    for dtype in (np.float64, np.float32):
        rows.append(time_nndl_fast(sizes, dtype, training, validation, args))

    base = rows[0]["epoch_s"]
    print()
    print("%-20s %14s %12s %10s  %s" % ("variant", "s/epoch+mon", "train only", "ratio",
                                        "note"))
    for r in rows:
        r["speedup_vs_first"] = base / r["epoch_s"]
        print("%-20s %14.4f %12.4f %9.1fx  %s" % (r["variant"], r["epoch_s"], r["train_s"],
                                                 r["speedup_vs_first"], r["note"]))
    for r in rows:
        if "pack_s" in r:
            print("%s: packing the data (once per SGD call) %.3f s; evaluation accuracy "
                  "after the run %d / %d" % (r["variant"], r["pack_s"],
                                             r["evaluation_accuracy"], r["n_evaluation"]))
    print("(ratio: the first row's seconds per epoch over this row's)")
    info = threadpoolctl.threadpool_info()
    print()
    print("threadpoolctl.threadpool_info():")
    for lib in info:
        print("  %s" % {k: lib.get(k) for k in ("user_api", "internal_api", "version",
                                                 "num_threads", "threading_layer",
                                                 "filepath")})

    path = args.json
    if path is None:
        results = os.path.join(HERE, "results")
        os.makedirs(results, exist_ok=True)
        path = os.path.join(results, "network2-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    report = {"benchmark": "network2 epoch with four monitors", "sizes": sizes,
              "mini_batch_size": args.batch, "eta": args.eta, "lmbda": args.lmbda,
              "n_training": len(training), "n_evaluation": len(validation),
              "nndl_fast": nndl_fast.__version__, "config": _config.config_dict(),
              "threadpool_info": info, "results": rows}
    with open(path, "w") as f:
        json.dump(report, f, indent=2, default=str)
    print("\nresults written to %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
