"""Each kernel path this processor runs (AVX-512, AVX2, the baseline) on the same
networks in one run: [784, 30, 10] float64 and float32 and chapter 6's first conv
net (float32), one 50,000-image epoch, 2 threads, each path in fresh processes
(NNDL_FAST_KERNELS), best of 3 with the paths alternating; seconds and ratios to
the AVX-512 path, against the targets (AVX2 <= 1.5x, baseline <= 2.5x).

    python bench/bench_kernel_paths.py [--quick] [--threads N] [--json out.json]

Same as ``python -m nndl_fast bench kernel_paths``.
"""
import sys

from suite import main

if __name__ == "__main__":
    sys.exit(main(["kernel_paths"] + sys.argv[1:]))
