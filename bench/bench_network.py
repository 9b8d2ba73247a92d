"""Chapter 1's network: one 50k epoch, reference vs NumPy matrix vs nndl_fast (vs PyTorch).

    python bench/bench_network.py [--quick] [--sizes 784,100,10] [--json out.json]
"""
import sys

from suite import main

if __name__ == "__main__":
    sys.exit(main(["network"] + sys.argv[1:]))
