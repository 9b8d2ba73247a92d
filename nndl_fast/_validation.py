"""Checks and conversions shared by the Python layers (run before any compiled code).

Every error names what was expected and what came.
"""
import math
import numbers

import numpy as np

from ._datacache import fresh_zeros

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def describe(obj):
    """A short description of a value for error messages."""
    if isinstance(obj, np.ndarray):
        return "an array of shape %s and dtype %s" % (obj.shape, obj.dtype)
    return "%s %r" % (type(obj).__name__, obj) if isinstance(obj, (int, float, str)) \
        else type(obj).__name__


def check_int(value, name, minimum=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError("%s must be an integer, got %s" % (name, describe(value)))
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError("%s must be >= %d, got %d" % (name, minimum, value))
    return value


def check_real(value, name, minimum=None, allow_equal=True):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError("%s must be a real number, got %s" % (name, describe(value)))
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("%s must be finite, got %r" % (name, value))
    if minimum is not None and (value < minimum or (not allow_equal and value == minimum)):
        raise ValueError("%s must be %s %g, got %r"
                         % (name, ">=" if allow_equal else ">", minimum, value))
    return value


def check_sizes(sizes, min_layers=2):
    """The layer sizes list: at least two positive ints."""
    try:
        sizes_list = list(sizes)
    except TypeError:
        raise TypeError("sizes must be a list of layer sizes such as [784, 30, 10], got %s"
                        % describe(sizes)) from None
    if len(sizes_list) < min_layers:
        raise ValueError("sizes must list at least %d layers (input and output), got %r"
                         % (min_layers, sizes_list))
    for i, s in enumerate(sizes_list):
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError("sizes[%d] must be an integer, got %s" % (i, describe(s)))
        if s < 1:
            raise ValueError("sizes[%d] must be >= 1, got %d" % (i, s))
        if s > 2 ** 24:
            raise ValueError("sizes[%d] = %d is too large (at most %d units per layer)"
                             % (i, s, 2 ** 24))
    total = sum(int(a) * int(b) for a, b in zip(sizes_list[:-1], sizes_list[1:]))
    if total > 2 ** 31 - 1:
        raise ValueError("sizes %r need %d weights; at most %d are supported"
                         % (sizes_list, total, 2 ** 31 - 1))
    check_memory(total + sum(int(s) for s in sizes_list[1:]), "sizes %r" % (sizes_list,))
    return sizes_list


def physical_memory():
    """Bytes of physical memory, or None where the platform does not say."""
    import os
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


# Parameters are held in float64 by the constructor; training keeps the user's
# arrays, a blocked copy and (with momentum) velocities of each: about four
# float64 copies at the peak.
_COPIES_AT_PEAK = 4


def check_memory(n_params, what):
    """Refuse, before allocating, networks whose parameters cannot fit in memory."""
    need = int(n_params) * 8 * _COPIES_AT_PEAK
    have = physical_memory()
    if have is not None and need > have:
        raise ValueError("%s need about %.1f GiB for %d parameters, more than this "
                         "machine's %.1f GiB of memory"
                         % (what, need / 2.0 ** 30, n_params, have / 2.0 ** 30))


def check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError("dtype must be float32 or float64, got %r" % (dtype,)) from None
    if dt not in FLOAT_DTYPES:
        raise TypeError("dtype must be float32 or float64, got %s" % dt)
    return dt


def _pair(item, what, index):
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError("%s item %d must be a pair (x, y), got %s"
                        % (what, index, describe(item)))
    return item


def _finite_or_raise(M, what, rows=None):
    """Raise for the first item whose row of ``M`` holds NaN or infinity (item p is
    row ``rows[p]``, or row p without ``rows``). Returns what the compiled scan
    (one parallel read of ``M``) found besides, when it ran, else None: a dict
    with ``"row_bits"``, which entries of each row are nonzero (read-only,
    for ``_dense.sparse_rows``), and ``"row_hashes"``, each row's byte hash
    (for ``_packing.fingerprint``)."""
    from . import _config
    if _config.use_compiled("_packing") and M.ndim == 2 and M.flags.c_contiguous \
            and M.dtype.isnative and M.dtype in FLOAT_DTYPES:
        from . import _packing
        first_bad, bits, hashes = _packing.scan_rows(M, _config.get_num_threads())
        if first_bad < 0:
            bits.flags.writeable = False
            return {"row_bits": bits, "row_hashes": hashes}
    # A float64 sum is finite exactly when no entry is NaN/inf, unless huge finite
    # values overflow it; only then pay for the full element-wise check.
    elif np.isfinite(M.sum(dtype=np.float64)) or np.isfinite(M).all():
        return None
    bad_rows = np.flatnonzero(~np.isfinite(M).all(axis=1))
    bad = bad_rows[0] if rows is None else np.flatnonzero(np.isin(rows, bad_rows))[0]
    raise ValueError("%s %d contains NaN or infinity" % (what, int(bad)))


def _column_error(what, index, obj, n_rows):
    if not isinstance(obj, np.ndarray):
        return TypeError("%s %d must be a numpy array of shape (%d, 1), got %s"
                         % (what, index, n_rows, type(obj).__name__))
    if obj.shape != (n_rows, 1):
        return ValueError("%s %d has shape %s, expected (%d, 1)"
                          % (what, index, obj.shape, n_rows))
    return TypeError("%s %d has dtype %s, expected float32 or float64"
                     % (what, index, obj.dtype))


def _first_dtype(seq, which):
    """dtype of ``seq[0][which]`` when it is an array, else None."""
    if len(seq) and isinstance(seq[0], (tuple, list)) and len(seq[0]) == 2 \
            and isinstance(seq[0][which], np.ndarray):
        return seq[0][which].dtype
    return None


class _PythonPacking(object):
    """``_packing``'s checks and copies in Python (pure-Python mode; much slower)."""

    @staticmethod
    def pack_columns(seq, which, n_rows, out, what, pair_what):
        all_f32 = True
        for i, item in enumerate(seq):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise TypeError("%s item %d must be a pair (x, y), got %s"
                                % (pair_what, i, type(item).__name__))
            obj = item[which]
            if not isinstance(obj, np.ndarray) or obj.shape != (n_rows, 1) \
                    or obj.dtype.kind != "f" or obj.dtype.itemsize not in (4, 8):
                raise _column_error(what, i, obj, n_rows)
            out[i] = obj[:, 0]
            all_f32 = all_f32 and obj.dtype.itemsize == 4
        return all_f32


def _packing_module():
    from . import _config
    if _config.use_compiled("_packing"):
        from . import _packing
        return _packing
    return _PythonPacking


def pack_pairs(data, which, n_rows, what, pair_what, dtype=None):
    """Stack element ``which`` of each (x, y) pair — (n_rows, 1) columns — into an
    (n, n_rows) C-contiguous matrix, checking every item; rejects NaN/inf.

    With ``dtype=None`` the matrix keeps float32 when the first item is float32
    (exact; re-packed as float64 if a later item is not), else float64.
    """
    return _pack_pairs(data, which, n_rows, what, pair_what, dtype)[0]


def _pack_pairs(data, which, n_rows, what, pair_what, dtype=None, shared=False):
    """``(M, rows, found)``: ``pack_pairs``' matrix, the row of it holding each
    item (None: item p is row p) and what the scan of M found besides
    (``_finite_or_raise``: its nonzero bits and row hashes; None when not
    scanned).

    ``shared=True`` lets ``M`` be the items' own array when they are the rows of
    one (``_packing.shared_rows``: ``mnist_loader``'s layout), of the dtype asked
    for: a read-only view of it, in which item p is row ``rows[p]``; nothing is
    copied. Any other list is copied as without ``shared``.
    """
    _packing = _packing_module()
    if shared and _packing is not _PythonPacking and type(data) is list:
        found = _packing.shared_rows(data, which, n_rows)
        if found is not None and (dtype is None or found[0].dtype == dtype):
            M, rows = found
            return M, rows, _finite_or_raise(M, what, rows)
    n = len(data)
    auto = dtype is None
    if auto:
        first = _first_dtype(data, which)
        dtype = np.float32 if first == np.float32 else np.float64
    M = fresh_zeros((n, n_rows), dtype)
    all_f32 = _packing.pack_columns(data, which, n_rows, M, what, pair_what)
    if auto and M.dtype == np.float32 and not all_f32:
        M = fresh_zeros((n, n_rows), np.float64)
        _packing.pack_columns(data, which, n_rows, M, what, pair_what)
    found = _finite_or_raise(M, what)
    if found is not None:
        del found["row_hashes"]         # a copy's rows are never the items' memory
    return M, None, found


def _in_rows(a, rows):
    """``a`` (in list order) rearranged so that item p is row ``rows[p]``."""
    if rows is None or np.array_equal(rows, np.arange(len(rows))):
        return a
    out = np.empty_like(a)
    out[rows] = a
    return out


def _check_sequence(data, what):
    if isinstance(data, np.ndarray) or not hasattr(data, "__len__") \
            or not hasattr(data, "__getitem__"):
        raise TypeError("%s_data must be a list of (x, y) tuples, got %s "
                        "(in Python 3 wrap zip(...) in list(...))" % (what, describe(data)))


def check_training_list(training_data, what="training"):
    """SGD shuffles the caller's list in place, as the book's random.shuffle does."""
    if not isinstance(training_data, list):
        raise TypeError("%s_data must be a list of (x, y) tuples (SGD shuffles it in place), "
                        "got %s%s" % (what, describe(training_data),
                                      " (in Python 3 wrap zip(...) in list(...))"
                                      if not isinstance(training_data, (tuple, np.ndarray))
                                      else ""))


def check_input_columns(a, n_in):
    """A feed-forward input: (n_in, 1) or (n_in, k) columns, or an (n_in,) vector."""
    if isinstance(a, np.ndarray):
        arr = a
    else:
        try:
            arr = np.asarray(a)
        except (TypeError, ValueError) as exc:
            raise TypeError("input must be an array of shape (%d, 1), got %s (%s)"
                            % (n_in, describe(a), exc)) from None
    if arr.dtype.kind not in "fiub":
        raise TypeError("input has dtype %s, expected real numbers (float32 or float64)"
                        % arr.dtype)
    if not ((arr.ndim == 2 and arr.shape[0] == n_in) or arr.shape == (n_in,)):
        raise ValueError("input has shape %s, expected (%d, 1)" % (arr.shape, n_in))
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("input contains NaN or infinity")
    return arr


def pack_training(training_data, n_in, n_out, dtype, what="training", shared=False):
    """(X, Y) from a list of (x, y): x (n_in, 1) columns, y (n_out, 1) target columns.

    ``shared=True`` (for SGD's kept packing) returns ``((X, Y), rows, found)``: X
    may be the inputs' own array, read-only, with item p in row ``rows[p]`` of X
    and Y; ``found``: what the scan of X found besides, or None (``_pack_pairs``).
    """
    _check_sequence(training_data, what)
    if len(training_data) == 0:
        raise ValueError("%s_data is empty: expected at least one (x, y) pair" % what)
    X, rows, found = _pack_pairs(training_data, 0, n_in, what + " input", what + "_data",
                                 shared=shared)
    try:
        Y, rows_y, _ = _pack_pairs(training_data, 1, n_out, what + " target", what + "_data",
                                   dtype=dtype, shared=shared)
    except (TypeError, ValueError) as exc:
        first_y = training_data[0][1]
        if isinstance(first_y, numbers.Integral):
            raise ValueError("%s target 0 is an int label, expected an array of shape (%d, 1) "
                             "such as vectorized_result(y)" % (what, n_out)) from None
        raise exc
    if not shared:
        return X, Y
    rows = np.arange(len(training_data), dtype=np.int64) if rows is None else rows
    if rows_y is not None and not np.array_equal(rows_y, rows):
        Y = Y[rows_y]           # the targets in list order (a copy)
    elif rows_y is not None:
        return (X, Y), rows, found
    return (X, _in_rows(Y, rows)), rows, found


def _labels_in_python(data, n_out, what):
    labels = np.empty(len(data), dtype=np.int64)
    for i, item in enumerate(data):
        x, y = _pair(item, what + "_data", i)
        if isinstance(y, (numbers.Integral, np.integer)) and not isinstance(y, (bool, np.bool_)):
            label = int(y)
        elif isinstance(y, np.ndarray) and y.shape == (n_out, 1) and y.dtype.kind in "fiu":
            label = int(np.argmax(y))
        elif isinstance(y, np.ndarray) and y.shape in ((), (1,), (1, 1)) and y.dtype.kind in "iu":
            label = int(y.reshape(()))
        else:
            raise ValueError("%s label %d must be an int class label or an (%d, 1) vector, "
                             "got %s" % (what, i, n_out, describe(y)))
        if not 0 <= label < n_out:
            raise ValueError("%s label %d is %d, expected a class in 0..%d"
                             % (what, i, label, n_out - 1))
        labels[i] = label
    return labels


def pack_labelled(data, n_in, n_out, what="test", shared=False):
    """(X, labels) from (x, y) pairs where y is an int label or an (n_out, 1) vector.

    ``shared=True``: ``((X, labels), rows, found)``, as for :func:`pack_training`.
    """
    _check_sequence(data, what)
    labels = None
    if type(data) is list:
        packing = _packing_module()
        if packing is not _PythonPacking:
            # The common labels (ints, float64 one-hot columns) in one C loop;
            # None for anything else, which the Python loop handles or rejects.
            labels = packing.labels(data, n_out)
    if labels is None:
        labels = _labels_in_python(data, n_out, what)
    X, rows, found = _pack_pairs(data, 0, n_in, what + " input", what + "_data", shared=shared)
    if not shared:
        return X, labels
    rows = np.arange(len(data), dtype=np.int64) if rows is None else rows
    return (X, _in_rows(labels, rows)), rows, found


def check_params(weights, biases, sizes, dtype):
    """Network parameters as C-contiguous arrays of ``dtype`` with the right shapes."""
    if len(weights) != len(sizes) - 1 or len(biases) != len(sizes) - 1:
        raise ValueError("expected %d weight matrices and bias vectors for sizes %r, got %d and %d"
                         % (len(sizes) - 1, sizes, len(weights), len(biases)))
    ws, bs = [], []
    for l, (w, b) in enumerate(zip(weights, biases)):
        shape_w, shape_b = (sizes[l + 1], sizes[l]), (sizes[l + 1], 1)
        w = np.asarray(w)
        b = np.asarray(b)
        if w.shape != shape_w:
            raise ValueError("weights[%d] has shape %s, expected %s" % (l, w.shape, shape_w))
        if b.shape != shape_b:
            raise ValueError("biases[%d] has shape %s, expected %s" % (l, b.shape, shape_b))
        if w.dtype.kind != "f" or b.dtype.kind != "f":
            raise TypeError("weights[%d] and biases[%d] must be float arrays, got %s and %s"
                            % (l, l, w.dtype, b.dtype))
        ws.append(np.require(w, dtype=dtype, requirements=["C", "W"]))
        bs.append(np.require(b, dtype=dtype, requirements=["C", "W"]))
        if not (np.isfinite(ws[-1]).all() and np.isfinite(bs[-1]).all()):
            raise ValueError("weights[%d] or biases[%d] contain NaN or infinity" % (l, l))
    return ws, bs
