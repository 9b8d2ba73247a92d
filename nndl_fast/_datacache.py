"""What ``SGD`` packs from a list of (x, y) pairs, kept for the next call on the same list.

The book's scripts and most notebooks call ``SGD`` one epoch at a time on the
same list. Packing 50,000 pairs into matrices (and their sparse rows) costs
more than the epoch itself, so the packed form is kept here, keyed by the
list's identity, and reused when the next call gets the same list holding the
same items with the same contents.

"The same contents" is checked on every call by a fingerprint of the list
(``_packing.fingerprint``: every byte of every array, each item's dtype and
shape, and the packed row each item sits in), so an array changed in place, an
item replaced, appended or removed, or a different dtype is noticed and the
list is packed again. The check reads the data once, at memory speed, far
quicker than packing it again (docs/how-it-is-built.md). SGD shuffles
the list in place and reports each shuffle to :func:`permuted`, so the list's
item ``p`` is always row ``rows[p]`` of the packed matrices.

At most ``MAX_ENTRIES`` packed lists are kept (the least recently used go
first); :func:`clear` (``nndl_fast.clear_cache()``) drops them all. No reference
to the user's list is kept. The entry holds copies of the arrays, except for
inputs in ``mnist_loader``'s layout (each x a row of one array, the rows of
the list being all the rows of that array): that array itself is the packed
input matrix, read-only, and nothing is copied (``_validation._pack_pairs``);
the fingerprint reads it on every call like any other item's bytes.
"""
import mmap
import threading
from collections import OrderedDict

import numpy as np

from . import _config

#: How many packed lists are kept (a training, a validation and a test set, and one more).
MAX_ENTRIES = 4

_lock = threading.Lock()
_entries = OrderedDict()


class Packed(object):
    """One packed list: ``arrays`` (what the packer made: e.g. X and Y, or X and
    labels), ``rows`` (int64: the list's item p is row rows[p]), and ``derived``,
    a dict for what callers compute from the arrays (sparse rows, one-hot
    targets...), which stays valid exactly as long as the arrays do."""

    __slots__ = ("arrays", "rows", "fingerprint", "derived")

    def __init__(self, arrays, rows, fingerprint):
        self.arrays = arrays
        self.rows = rows
        self.fingerprint = fingerprint
        self.derived = {}

    def get(self, name, make):
        """``derived[name]``, computed by ``make()`` the first time."""
        try:
            return self.derived[name]
        except KeyError:
            value = self.derived[name] = make()
            return value


#: Arrays of at least this many bytes get memory of their own (:func:`fresh_zeros`).
FRESH_MIN_BYTES = 1 << 20


def fresh_zeros(shape, dtype):
    """A zero-filled array for loaded or packed data, its pages all mapped before
    it returns.

    The loader and the packer write such an array once and all of it. Large
    ones are given a mapping of their own, filled in by the system in one call
    where it offers ``MAP_POPULATE`` (Linux): far cheaper than a page fault per
    page on first touch, and than NumPy's transparent huge pages, each of which
    the system must find and clear when first touched (slowest on virtual
    machines that hand unused memory back to their host;
    docs/how-it-is-built.md). Smaller arrays come from NumPy as usual.
    """
    dtype = np.dtype(dtype)
    shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = count * dtype.itemsize
    if nbytes < FRESH_MIN_BYTES:
        return np.zeros(shape, dtype)
    try:
        if hasattr(mmap, "MAP_PRIVATE"):
            # Private (a forked process gets a copy, as with any other memory),
            # filled in at once where the system can.
            buf = mmap.mmap(-1, nbytes,
                            flags=mmap.MAP_PRIVATE | getattr(mmap, "MAP_POPULATE", 0))
        else:
            buf = mmap.mmap(-1, nbytes)      # Windows: the process's own memory
    except (OSError, ValueError):
        return np.zeros(shape, dtype)
    # The array itself wraps the mapping, so that views of it (the rows the
    # loader hands out) have it as their base.
    return np.ndarray(shape, dtype=dtype, buffer=buf)


def _fingerprint(data, rows, known=None):
    from . import _packing
    return _packing.fingerprint(data, rows, _config.get_num_threads(), known)


def packed(data, kind, pack):
    """The :class:`Packed` form of the list ``data``: the kept one when ``data`` is
    the list it was made from and its contents are unchanged, else a new one
    from ``pack()``, kept for next time.

    ``pack()`` returns ``(arrays, rows, derived)``: the packed arrays, the row of
    them holding each item of ``data`` (an int64 permutation) and a dict of
    values derived from them (say which inputs are nonzero), or None; its
    ``"row_hashes"`` (the byte hash of each row of ``arrays[0]``, just read)
    spare the first fingerprint reading those rows again.

    ``kind`` (hashable) tells apart what different packers make of the same
    list (say ``("training", n_in, n_out, dtype)``). Lists that are not plain
    ``list`` objects, or whose items the fingerprint cannot read, and every list
    in pure-Python mode, are packed on every call.
    """
    cacheable = type(data) is list and _config.use_compiled("_packing")
    key = (id(data), kind)
    if cacheable:
        with _lock:
            entry = _entries.get(key)
        if entry is not None and len(entry.rows) == len(data) \
                and _fingerprint(data, entry.rows) == entry.fingerprint:
            with _lock:
                if key in _entries:
                    _entries.move_to_end(key)
            return entry
    arrays, rows, derived = pack()
    derived = dict(derived or {})
    hashes = derived.pop("row_hashes", None)
    known = None if hashes is None else (arrays[0], hashes)
    entry = Packed(arrays, rows, _fingerprint(data, rows, known) if cacheable else None)
    entry.derived.update(derived)
    if entry.fingerprint is not None:
        with _lock:
            _entries[key] = entry
            _entries.move_to_end(key)
            while len(_entries) > MAX_ENTRIES:
                _entries.popitem(last=False)
    else:
        with _lock:
            _entries.pop(key, None)
    return entry


def permuted(data, perm):
    """Record that ``data`` was reordered in place as ``data[k] = old[perm[k]]``
    (SGD's shuffle), so that every kept form of it still finds its items."""
    with _lock:
        for key, entry in list(_entries.items()):
            if key[0] == id(data):
                if len(entry.rows) == len(perm):
                    entry.rows = entry.rows[perm]
                else:
                    del _entries[key]


def clear():
    """Drop every kept packed list (frees their memory)."""
    with _lock:
        _entries.clear()
