"""Backpropagation against finite differences: seconds for one gradient of one example.

    python bench/bench_gradient_check.py [--hidden 5,10,20,40] [--compiled]

The finite-difference gradient needs two forward passes per parameter, so its
cost grows with the square of the network's size while backprop's grows
linearly; the ratio column is the book's "in what sense is backpropagation a
fast algorithm", measured.
"""
import argparse
import json
import sys

import numpy as np
from threadpoolctl import threadpool_info

from nndl_fast import gradient_check


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", default="5,10,20,40",
                        help="hidden layer sizes of the [784, h, 10] networks")
    parser.add_argument("--compiled", action="store_true",
                        help="use the compiled network.Network instead of the NumPy reference")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    if args.compiled:
        from nndl_fast.network import Network
    else:
        from nndl_fast.reference.network import Network
    rows = gradient_check.benchmark(hidden_sizes=hidden, network_class=Network)
    print("%s.Network, one example, float64" % Network.__module__)
    print(gradient_check.format_benchmark(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "network": Network.__module__,
                       "numpy": np.__version__, "threadpools": threadpool_info()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
