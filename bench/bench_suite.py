"""The whole benchmark suite: every chapter at the book's settings and at mini-batch 100.

    python bench/bench_suite.py [--quick] [--threads N] [--json out.json] [--png out.png]

Same as ``python -m nndl_fast bench``.
"""
import sys

from suite import main

if __name__ == "__main__":
    sys.exit(main(["suite"] + sys.argv[1:]))
