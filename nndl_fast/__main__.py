"""Command line: ``python -m nndl_fast {train,info,bench} ...``."""
import argparse
import random
import sys
import time

import numpy as np


def _layer_sizes(text):
    """argparse type of --sizes: comma-separated positive integers."""
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected comma-separated layer sizes such as 784,30,10, got %r" % text) from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            "expected at least two positive layer sizes such as 784,30,10, got %r" % text)
    return sizes


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a positive integer, got %r" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("expected a positive integer, got %d" % value)
    return value


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected an integer >= 0, got %r" % text) from None
    if value < 0:
        raise argparse.ArgumentTypeError("expected an integer >= 0, got %d" % value)
    return value


def _finite_float(text):
    import math
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number, got %r" % text) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError("expected a finite number, got %r" % text)
    return value


def _cmd_info(args):
    import nndl_fast
    if nndl_fast._config.use_compiled():
        from nndl_fast import _dense  # noqa: F401  (loads SciPy's BLAS so it is listed)
    nndl_fast.show_config()
    return 0


def _cmd_train(args):
    import nndl_fast
    from nndl_fast import mnist_loader, network
    if args.threads is not None:
        nndl_fast.set_num_threads(args.threads)
    sizes = args.sizes
    if args.seed is not None:
        np.random.seed(args.seed)
        random.seed(args.seed)
    t0 = time.perf_counter()
    training_data, validation_data, test_data = mnist_loader.load_data_wrapper(args.data)
    print("Loaded MNIST in %.2f s: %d training, %d test images"
          % (time.perf_counter() - t0, len(training_data), len(test_data)))
    net = network.Network(sizes, dtype=args.dtype)
    net._print_epoch_time = True
    print("network.Network(%s), %d epochs, mini-batch %d, eta %g, %s, %d thread(s)"
          % (sizes, args.epochs, args.batch, args.eta, args.dtype, nndl_fast.get_num_threads()))
    t0 = time.perf_counter()
    net.SGD(training_data, args.epochs, args.batch, args.eta, test_data=test_data)
    total = time.perf_counter() - t0
    print("Trained in %.2f s (%.3f s per epoch including evaluation)"
          % (total, total / max(args.epochs, 1)))
    return 0


def _cmd_bench(args):
    import runpy
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, "..", "bench", "bench_%s.py" % args.what)]
    for path in candidates:
        if os.path.exists(path):
            sys.argv = [path] + args.rest
            runpy.run_path(path, run_name="__main__")
            return 0
    from nndl_fast import benchmarks
    return benchmarks.main([args.what] + args.rest)


def _cmd_baseline(args):
    from nndl_fast import baselines
    data = None
    if args.data is not None:
        from nndl_fast import mnist_loader
        tr, _, te = mnist_loader.load_data(args.data)
        data = (tr, te)
    t0 = time.perf_counter()
    if args.method == "darkness":
        correct, n = baselines.average_darkness(*(data or ()))
        name = "Average darkness"
    else:
        correct, n = baselines.svm_baseline(*(data or ()), train_size=args.train_size,
                                            test_size=args.test_size, seed=args.seed)
        name = "svm.SVC() trained on %s images" % (
            "all training" if args.train_size is None else "%d" % args.train_size)
    print("%s: %d of %d test images correct (%.2f%%) in %.2f s"
          % (name, correct, n, 100.0 * correct / n, time.perf_counter() - t0))
    return 0


def _cmd_expand(args):
    from nndl_fast import expand_mnist
    expand_mnist.main(args.out, seed=args.seed, shuffle=not args.no_shuffle, data=args.data,
                      compresslevel=args.compresslevel)
    return 0


def _cmd_vanishing(args):
    from nndl_fast import mnist_loader, vanishing
    if args.seed is not None:
        random.seed(args.seed)
    sizes = args.sizes
    training_data = list(mnist_loader.load_data_wrapper(args.data)[0][:args.train_size])
    net = vanishing.deep_network(sizes, seed=args.seed)
    history = vanishing.track_speed_of_learning(net, training_data, args.epochs, args.batch,
                                                args.eta)
    print("Speed of learning ||dC/db|| per layer, averaged over %d training images"
          % len(training_data))
    print("epoch  " + "  ".join("layer %-5d" % (l + 1) for l in range(history.shape[1])))
    for e, row in enumerate(history):
        print("%5d  " % e + "  ".join("%11.4e" % v for v in row))
    if args.out:
        vanishing.plot_speed_of_learning(history, args.out)
        print("Wrote %s" % args.out)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m nndl_fast",
                                     description="The book's networks, compiled.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="print version, OpenMP, threads and BLAS")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("train", help="train the chapter-1 network on MNIST (the main job)")
    p.add_argument("--sizes", type=_layer_sizes, default=[784, 30, 10],
                   help="layer sizes (default 784,30,10)")
    p.add_argument("--epochs", type=_non_negative_int, default=30)
    p.add_argument("--batch", type=_positive_int, default=10, help="mini-batch size")
    p.add_argument("--eta", type=_finite_float, default=3.0, help="learning rate")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--threads", type=_positive_int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--data", default=None, help="directory of IDX files or mnist.pkl.gz "
                   "(default: the bundled MNIST)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("baseline", help="chapter 1's baselines: average darkness or an SVM")
    p.add_argument("method", choices=["darkness", "svm"])
    p.add_argument("--train-size", type=_positive_int, default=None,
                   help="svm: fit on a random subset of this many training images "
                   "(all 50,000 take minutes)")
    p.add_argument("--test-size", type=_positive_int, default=None,
                   help="svm: score on a random subset of this many test images")
    p.add_argument("--seed", type=int, default=0, help="svm: seed of the subsets")
    p.add_argument("--data", default=None, help="directory of IDX files or mnist.pkl.gz "
                   "(default: the bundled MNIST)")
    p.set_defaults(func=_cmd_baseline)

    p = sub.add_parser("expand", help="write the 250,000-image expanded MNIST training set "
                       "(chapter 6)")
    p.add_argument("--out", default="mnist_expanded.pkl.gz",
                   help="output file, a gzipped pickle (default mnist_expanded.pkl.gz)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default 0)")
    p.add_argument("--no-shuffle", action="store_true",
                   help="keep each original next to its four shifts")
    p.add_argument("--compresslevel", type=int, default=6, help="gzip level 0-9 (default 6)")
    p.add_argument("--data", default=None, help="directory of IDX files or mnist.pkl.gz "
                   "(default: the bundled MNIST)")
    p.set_defaults(func=_cmd_expand)

    p = sub.add_parser("vanishing", help="per-layer speed of learning of a deep sigmoid "
                       "network (chapter 5)")
    p.add_argument("--sizes", type=_layer_sizes, default=[784, 30, 30, 30, 30, 10])
    p.add_argument("--epochs", type=_non_negative_int, default=30)
    p.add_argument("--batch", type=_positive_int, default=10, help="mini-batch size")
    p.add_argument("--eta", type=_finite_float, default=0.1, help="learning rate")
    p.add_argument("--train-size", type=_positive_int, default=1000,
                   help="train on, and average gradients over, this many training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also plot to this PNG (needs matplotlib)")
    p.add_argument("--data", default=None, help="directory of IDX files or mnist.pkl.gz "
                   "(default: the bundled MNIST)")
    p.set_defaults(func=_cmd_vanishing)

    p = sub.add_parser("bench", help="run a benchmark (network, ...)")
    p.add_argument("what", nargs="?", default="network")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("%s: interrupted" % parser.prog, file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, MemoryError) as exc:
        # Bad data files, sizes or options: one line, not a traceback.
        print("%s %s: error: %s" % (parser.prog, args.command, exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
