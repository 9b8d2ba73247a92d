"""The book's chapter-6 results, row by row, with nndl_fast.network3.

    python bench/ch6_table.py                         # the book's epochs (hours)
    python bench/ch6_table.py --epochs 1 --train-size 5000 --rows fc,conv1
    python bench/ch6_table.py --list

Rows (the book's test accuracies in brackets):
  fc        FullyConnected(784, 100) + Softmax, sigmoid, eta 0.1, 60 epochs   [97.80%]
  conv1     + ConvPool(20 5x5), FC(2880, 100)                                  [98.78%]
  conv2     + 2nd ConvPool(40 5x5), FC(640, 100)                               [99.06%]
  relu      conv2 with ReLU, eta 0.03, lmbda 0.1                                [99.23%]
  expanded  relu on the expanded data (250,000 images)                          [99.37%]
  dropout   2 conv + 2 x FC(1000, p_dropout 0.5), expanded, 40 epochs           [99.60%]
  ensemble  majority vote of five dropout nets                                  [99.67%]

The expanded rows need ``nndl_fast.expand_mnist.expand``; without it they are
skipped with a message. Each row prints the best validation accuracy, the test
accuracy at that epoch (the book's reporting) and the wall time.
"""
import argparse
import contextlib
import io
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

M = 10
BOOK = {"fc": 0.9780, "conv1": 0.9878, "conv2": 0.9906, "relu": 0.9923,
        "expanded": 0.9937, "dropout": 0.9960, "ensemble": 0.9967}
ORDER = ["fc", "conv1", "conv2", "relu", "expanded", "dropout", "ensemble"]


def layers_for(row, N):
    conv1 = lambda act: N.ConvPoolLayer(image_shape=(M, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                                        poolsize=(2, 2), activation_fn=act)
    conv2 = lambda act: N.ConvPoolLayer(image_shape=(M, 20, 12, 12),
                                        filter_shape=(40, 20, 5, 5), poolsize=(2, 2),
                                        activation_fn=act)
    if row == "fc":
        return [N.FullyConnectedLayer(n_in=784, n_out=100), N.SoftmaxLayer(n_in=100, n_out=10)]
    if row == "conv1":
        return [conv1(N.sigmoid), N.FullyConnectedLayer(n_in=20 * 12 * 12, n_out=100),
                N.SoftmaxLayer(n_in=100, n_out=10)]
    if row == "conv2":
        return [conv1(N.sigmoid), conv2(N.sigmoid),
                N.FullyConnectedLayer(n_in=40 * 4 * 4, n_out=100),
                N.SoftmaxLayer(n_in=100, n_out=10)]
    if row in ("relu", "expanded"):
        return [conv1(N.ReLU), conv2(N.ReLU),
                N.FullyConnectedLayer(n_in=40 * 4 * 4, n_out=100, activation_fn=N.ReLU),
                N.SoftmaxLayer(n_in=100, n_out=10)]
    if row in ("dropout", "ensemble"):
        return [conv1(N.ReLU), conv2(N.ReLU),
                N.FullyConnectedLayer(n_in=40 * 4 * 4, n_out=1000, activation_fn=N.ReLU,
                                      p_dropout=0.5),
                N.FullyConnectedLayer(n_in=1000, n_out=1000, activation_fn=N.ReLU,
                                      p_dropout=0.5),
                N.SoftmaxLayer(n_in=1000, n_out=10, p_dropout=0.5)]
    raise ValueError(row)


def hyper(row):
    """(eta, lmbda, the book's epochs, expanded data?)"""
    return {"fc": (0.1, 0.0, 60, False), "conv1": (0.1, 0.0, 60, False),
            "conv2": (0.1, 0.0, 60, False), "relu": (0.03, 0.1, 60, False),
            "expanded": (0.03, 0.1, 60, True), "dropout": (0.03, 0.1, 40, True),
            "ensemble": (0.03, 0.1, 40, True)}[row]


def expanded_training(cache):
    if "expanded" not in cache:
        try:
            from nndl_fast.expand_mnist import expand
        except ImportError:
            cache["expanded"] = None
        else:
            x, y = expand(seed=0)
            cache["expanded"] = (x, y.astype(np.int32))
    return cache["expanded"]


def train_one(row, seed, training, validation, test, epochs, verbose):
    from nndl_fast import network3 as N
    eta, lmbda, _, _ = hyper(row)
    np.random.seed(seed)
    net = N.Network(layers_for(row, N), M)
    out = io.StringIO()
    with (contextlib.nullcontext() if verbose else contextlib.redirect_stdout(out)):
        net.SGD(training, epochs, M, eta, validation, test, lmbda=lmbda)
    return net


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=",".join(ORDER),
                   help="comma-separated subset of: " + ", ".join(ORDER))
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs for every row (default: the book's 60 / 40)")
    p.add_argument("--train-size", type=int, default=None,
                   help="use only the first N training images (quick runs)")
    p.add_argument("--ensemble-size", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true", help="show the book's per-epoch lines")
    p.add_argument("--list", action="store_true")
    args = p.parse_args(argv)
    if args.list:
        print(__doc__)
        return 0
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    for r in rows:
        if r not in ORDER:
            p.error("unknown row %r (choose from %s)" % (r, ", ".join(ORDER)))

    import nndl_fast
    from nndl_fast import network3 as N
    if args.threads:
        nndl_fast.set_num_threads(args.threads)
    training, validation, test = N.load_data_shared()
    tr = (training[0].get_value(borrow=True), training[1].get_value(borrow=True))
    cache = {}
    print("%-9s %7s %10s %10s %10s %9s" % ("row", "epochs", "best val", "test", "book",
                                          "wall s"))
    for row in rows:
        eta, lmbda, book_epochs, expanded = hyper(row)
        epochs = args.epochs or book_epochs
        data = tr
        if expanded:
            data = expanded_training(cache)
            if data is None:
                print("%-9s skipped: nndl_fast.expand_mnist is not available" % row)
                continue
        if args.train_size:
            data = (data[0][:args.train_size], data[1][:args.train_size])
        t0 = time.perf_counter()
        if row == "ensemble":
            nets = [train_one(row, args.seed + k, data, validation, test, epochs, args.verbose)
                    for k in range(args.ensemble_size)]
            test_acc = N.ensemble_accuracy(nets, test)
            val_acc = N.ensemble_accuracy(nets, validation)
        else:
            net = train_one(row, args.seed, data, validation, test, epochs, args.verbose)
            val_acc, test_acc = net.best_validation_accuracy, net.test_accuracy
        wall = time.perf_counter() - t0
        print("%-9s %7d %9.2f%% %9.2f%% %9.2f%% %9.1f" % (row, epochs, 100 * val_acc,
                                                         100 * test_acc, 100 * BOOK[row], wall))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
