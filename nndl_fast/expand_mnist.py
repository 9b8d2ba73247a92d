"""expand_mnist (chapter 6): 50,000 training images become 250,000.

Every training image is kept and joined by four copies shifted by one pixel:
up, down, left and right. The row or column that a shift pushes in from the
border is zero (the pixel that would wrap around is dropped), so no ink moves
from one edge to the other.

Order. ``expand`` returns the images in blocks of five, one block per original
image in its original order: the original, then shifted up, down, left,
right. Labels are repeated accordingly. The book's script shuffles the
expanded set before saving it; here that is ``seed=`` (or ``shuffle=True``),
and the command line does it by default::

    python -m nndl_fast expand --out mnist_expanded.pkl.gz [--seed 0] [--no-shuffle]

The file is a gzipped protocol-2 pickle of ``((x, y), (va_x, va_y), (te_x,
te_y))`` holding only numpy arrays, the layout of the book's
``mnist_expanded.pkl.gz``: ``mnist_loader.load_data(path)`` and
``network3.load_data_shared(path)`` read it, validation and test data being
MNIST's own. Everything is whole-array NumPy: no Python loop over images.
"""
import gzip
import os
import pickle

import numpy as np

from ._validation import check_int, describe

__all__ = ["SHIFTS", "shift_images", "expand", "save", "main"]

# (name, axis of the (rows, cols) image, direction): direction -1 moves the
# content toward index 0 (up / left), +1 toward the last index (down / right).
SHIFTS = (("up", 0, -1), ("down", 0, 1), ("left", 1, -1), ("right", 1, 1))


def _side(n_pixels):
    side = int(round(np.sqrt(n_pixels)))
    if side * side != n_pixels or side < 2:
        raise ValueError("images must be square: expected n_pixels = side² (784 for MNIST), "
                         "got %d" % n_pixels)
    return side


def _check_shift(axis, direction):
    if axis not in (0, 1) or direction not in (-1, 1):
        raise ValueError("axis must be 0 or 1 and direction -1 or 1, got %r and %r"
                         % (axis, direction))


def _shift_into(out, images, axis, direction):
    """Write ``images`` (n, rows, cols) shifted by one pixel into ``out`` (same shape)."""
    a = axis + 1
    src = [slice(None)] * 3
    dst = [slice(None)] * 3
    edge = [slice(None)] * 3
    if direction < 0:
        src[a], dst[a], edge[a] = slice(1, None), slice(None, -1), -1
    else:
        src[a], dst[a], edge[a] = slice(None, -1), slice(1, None), 0
    out[tuple(dst)] = images[tuple(src)]
    out[tuple(edge)] = 0


def shift_images(images, axis, direction):
    """Images of shape (n, side, side) moved one pixel along ``axis`` (0 rows, 1 columns).

    ``direction`` -1 moves the content up (axis 0) or left (axis 1), +1 down or
    right. The row/column left empty is zero. Returns a new array.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError("images must have shape (n, rows, cols), got %s" % (images.shape,))
    _check_shift(axis, direction)
    out = np.empty_like(images)
    _shift_into(out, images, axis, direction)
    return out


def _training_pair(training_data):
    if training_data is None:
        from . import mnist_loader
        return mnist_loader.load_data()[0]
    if not (isinstance(training_data, (tuple, list)) and len(training_data) == 2):
        raise TypeError("training_data must be a pair (x, y) of arrays as "
                        "mnist_loader.load_data() returns, got %s" % describe(training_data))
    x, y = np.asarray(training_data[0]), np.asarray(training_data[1])
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError("training arrays have shapes %s and %s, expected (n, 784) and (n,)"
                         % (x.shape, y.shape))
    if x.dtype.kind not in "fiu":
        raise TypeError("training pixels have dtype %s, expected real numbers" % x.dtype)
    if y.dtype.kind not in "iu":
        raise TypeError("training labels have dtype %s, expected integers" % y.dtype)
    return x, y


def expand(training_data=None, seed=None, shuffle=None):
    """The expanded training set ``(x, y)``: x (5n, n_pixels) float32, y (5n,) int64.

    ``training_data``: an ``(x, y)`` pair (x (n, 784), y (n,)) or None for
    MNIST's 50,000 training images. Unshuffled, image ``5i`` is original ``i``
    and ``5i+1 .. 5i+4`` are it shifted up, down, left, right. ``shuffle``
    defaults to ``seed is not None``: giving a seed shuffles the pairs, the
    result being the unshuffled set indexed by
    ``np.random.default_rng(seed).permutation(5n)``; ``shuffle=True`` without a
    seed shuffles with fresh entropy.
    """
    x, y = _training_pair(training_data)
    n, n_pixels = x.shape
    side = _side(n_pixels)
    if seed is not None:
        seed = check_int(seed, "seed", 0)
    if shuffle is None:
        shuffle = seed is not None
    images = np.asarray(x, dtype=np.float32).reshape(n, side, side)
    n_versions = 1 + len(SHIFTS)
    labels = np.repeat(y.astype(np.int64), n_versions)
    if not shuffle:
        out = np.empty((n, n_versions, side, side), dtype=np.float32)
        out[:, 0] = images
        for k, (_, axis, direction) in enumerate(SHIFTS, start=1):
            _shift_into(out[:, k], images, axis, direction)
        return out.reshape(n * n_versions, n_pixels), labels
    # The shuffled set is unshuffled[perm]. Each version is scattered straight to
    # its final rows (unshuffled row m lands at inverse[m]) rather than built in
    # order and gathered: one 250,000-row array in memory instead of two, and
    # contiguous reads.
    perm = np.random.default_rng(seed).permutation(n * n_versions)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(perm.shape[0])
    dest = inverse.reshape(n, n_versions)
    out = np.empty((n * n_versions, n_pixels), dtype=np.float32)
    out[dest[:, 0]] = images.reshape(n, n_pixels)
    scratch = np.empty_like(images)
    for k, (_, axis, direction) in enumerate(SHIFTS, start=1):
        _shift_into(scratch, images, axis, direction)
        out[dest[:, k]] = scratch.reshape(n, n_pixels)
    return out, labels[perm]


def save(path, expanded, validation_data=None, test_data=None, compresslevel=6):
    """Write ``((x, y), validation, test)`` as a gzipped protocol-2 pickle of arrays.

    ``validation_data`` / ``test_data`` default to MNIST's (from
    ``mnist_loader.load_data()``). Arrays are stored as float32 pixels and
    int64 labels.
    """
    compresslevel = check_int(compresslevel, "compresslevel", 0)
    if compresslevel > 9:
        raise ValueError("compresslevel must be 0..9, got %d" % compresslevel)
    if validation_data is None or test_data is None:
        from . import mnist_loader
        _, va, te = mnist_loader.load_data()
        validation_data = va if validation_data is None else validation_data
        test_data = te if test_data is None else test_data
    parts = []
    for data, what in ((expanded, "expanded"), (validation_data, "validation_data"),
                       (test_data, "test_data")):
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise TypeError("%s must be a pair (x, y) of arrays, got %s" % (what, describe(data)))
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError("%s arrays have shapes %s and %s, expected (n, n_pixels) and (n,)"
                             % (what, x.shape, y.shape))
        parts.append((np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64)))
    if len({p[0].shape[1] for p in parts}) != 1:
        raise ValueError("training, validation and test images differ in size: %s"
                         % [p[0].shape[1] for p in parts])
    tmp = os.fspath(path) + ".partial"
    with gzip.open(tmp, "wb", compresslevel=compresslevel) as f:
        pickle.dump(tuple(parts), f, protocol=2)
    # Renamed only when complete, so an interrupted run leaves no truncated file
    # behind under the name a later load would pick up.
    os.replace(tmp, path)
    return os.fspath(path)


def main(out, seed=0, shuffle=True, data=None, compresslevel=6, verbose=True):
    """Expand MNIST's training images and write them with MNIST's validation and test sets."""
    import time
    from . import mnist_loader
    t0 = time.perf_counter()
    tr, va, te = mnist_loader.load_data(data)
    t1 = time.perf_counter()
    expanded = expand(tr, seed=seed if shuffle else None, shuffle=shuffle)
    t2 = time.perf_counter()
    save(out, expanded, va, te, compresslevel=compresslevel)
    t3 = time.perf_counter()
    if verbose:
        print("Expanded %d training images to %d (%s) in %.2f s; wrote %s in %.2f s "
              "(loading took %.2f s)"
              % (tr[0].shape[0], expanded[0].shape[0],
                 "shuffled with seed %s" % seed if shuffle else "unshuffled",
                 t2 - t1, out, t3 - t2, t1 - t0))
    return expanded


if __name__ == "__main__":
    import sys
    from .__main__ import main as _cli
    sys.exit(_cli(["expand"] + sys.argv[1:]))
