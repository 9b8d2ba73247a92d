"""Pure-NumPy reference implementations of the book's algorithms.

These modules are the specification of nndl_fast: written for clarity, they
compute exactly what the book's code computes (per-example backpropagation
summed over the mini-batch, stdlib ``random.shuffle``, ``np.random.randn`` in
the book's draw order). The compiled modules are tested against them and every
benchmark reports its speed relative to them.
"""
