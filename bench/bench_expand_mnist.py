"""expand_mnist: seconds to turn MNIST's 50,000 training images into 250,000.

    python bench/bench_expand_mnist.py [--n 50000] [--repeats 3] [--save]

Times ``expand`` (whole-array NumPy) without and with the seeded shuffle, and,
as the point of comparison measured in the same run, the straightforward
per-image loop (``np.roll`` each image, zero the wrapped row or column), whose
output must match. ``--save`` also times writing the gzipped pickle.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_info

from nndl_fast import expand_mnist, mnist_loader
from suite import per_image_loop


def best_of(repeats, func):
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50000, help="training images to expand")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--save", action="store_true", help="also time writing the file")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    tr, va, te = mnist_loader.load_data()
    pair = (tr[0][:args.n], tr[1][:args.n])

    t_plain, plain = best_of(args.repeats, lambda: expand_mnist.expand(pair))
    t_shuffled, _ = best_of(args.repeats, lambda: expand_mnist.expand(pair, seed=0))
    t_loop, looped = best_of(1, lambda: per_image_loop(*pair))
    if not (np.array_equal(plain[0], looped[0]) and np.array_equal(plain[1], looped[1])):
        raise SystemExit("expand and the per-image loop disagree")
    results = {"n_in": args.n, "n_out": int(plain[0].shape[0]),
               "expand_s": t_plain, "expand_shuffled_s": t_shuffled,
               "per_image_loop_s": t_loop, "speedup": t_loop / t_plain}
    print("expand_mnist: %d -> %d images" % (args.n, plain[0].shape[0]))
    print("  expand (book order)      %8.3f s" % t_plain)
    print("  expand (shuffled, seed)  %8.3f s" % t_shuffled)
    print("  per-image loop           %8.3f s   (%.1fx slower than expand)"
          % (t_loop, t_loop / t_plain))
    if args.save:
        del looped
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "mnist_expanded.pkl.gz")
            t0 = time.perf_counter()
            expand_mnist.save(path, plain, va, te)
            results["save_s"] = time.perf_counter() - t0
            results["file_bytes"] = os.path.getsize(path)
        print("  save (gzip level 6)      %8.3f s   (%.1f MB)"
              % (results["save_s"], results["file_bytes"] / 1e6))
    if args.json:
        results["numpy"] = np.__version__
        results["threadpools"] = threadpool_info()
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
