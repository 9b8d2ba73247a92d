"""How fast a last-bit difference grows in the book's network2 at a large learning rate.

Two copies of the same network are trained on the same mini-batches in the
same order; the only difference is one bias of the first hidden layer, moved
by one unit in the last place (1 ulp, about 2e-16 of its value). Every 25
mini-batches the script prints the largest difference between any two
corresponding weights or biases, and how much it grew over those 25.

    python bench/ulp_growth.py                      # the book's code (the NumPy reference)
    python bench/ulp_growth.py --net nndl_fast      # the compiled network2
    python bench/ulp_growth.py --batches 100        # a shorter run

The defaults are chapter 3's multiple_eta run at its largest rate: [784, 30, 10],
cross-entropy, eta 2.5, lmbda 5.0, mini-batch 10, on MNIST's 50,000 training
images. A rounding difference of this kind (another BLAS, another summation
order, another processor) is where two runs of the book's own code part ways.
"""
import argparse
import copy
import random
import sys

import numpy as np


def max_difference(a, b):
    """The largest |difference| between corresponding weights and biases of two nets."""
    return max(float(np.max(np.abs(np.asarray(x, dtype=np.float64) - np.asarray(y))))
               for x, y in zip(list(a.weights) + list(a.biases),
                               list(b.weights) + list(b.biases)))


def ulp_growth(net_module, batches=300, every=25, eta=2.5, lmbda=5.0, mini_batch_size=10,
               sizes=(784, 30, 10), seed=1, training_data=None):
    """Train two networks that differ by 1 ulp in one bias; returns
    [(mini-batches trained, max |difference|), ...] every ``every`` mini-batches."""
    if training_data is None:
        from nndl_fast import mnist_loader
        training_data = mnist_loader.load_data_wrapper()[0]
    training_data = list(training_data)
    np.random.seed(seed)
    a = net_module.Network(list(sizes), cost=net_module.CrossEntropyCost)
    b = copy.deepcopy(a)
    bias = np.array(b.biases[0], dtype=np.float64)
    bias[0, 0] = np.nextafter(bias[0, 0], np.inf)
    b.biases[0][...] = bias
    assert max_difference(a, b) > 0
    random.seed(seed)
    random.shuffle(training_data)
    n = len(training_data)
    rows = [(0, max_difference(a, b))]
    for k in range(batches):
        start = (k * mini_batch_size) % n
        batch = training_data[start:start + mini_batch_size]
        a.update_mini_batch(batch, eta, lmbda, n)
        b.update_mini_batch(batch, eta, lmbda, n)
        if (k + 1) % every == 0:
            rows.append((k + 1, max_difference(a, b)))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", choices=["reference", "nndl_fast"], default="reference",
                        help="the book's code (the NumPy reference, default) or nndl_fast's")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--eta", type=float, default=2.5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.net == "reference":
        from nndl_fast.reference import network2 as module
    else:
        from nndl_fast import network2 as module
    rows = ulp_growth(module, args.batches, args.every, eta=args.eta, seed=args.seed)
    print("%s network2 [784, 30, 10], eta %g, lmbda 5.0, mini-batch 10, seed %d: one bias "
          "moved by 1 ulp" % (args.net, args.eta, args.seed))
    print("mini-batches  max |difference|  growth over the last %d" % args.every)
    previous = None
    for k, d in rows:
        growth = "" if previous is None or previous == 0 else "%.0fx" % (d / previous)
        print("%12d  %16.3e  %s" % (k, d, growth))
        previous = d
    k_end, d_end = next(((k, d) for k, d in rows if d > 0.1), rows[-1])
    if k_end > 0:
        per = (d_end / rows[0][1]) ** (args.every / k_end)
        print("from %.1e to %.2g in %d mini-batches: %.0fx every %d on average"
              % (rows[0][1], d_end, k_end, per, args.every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
