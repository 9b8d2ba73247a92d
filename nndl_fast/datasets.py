"""Reading MNIST-format data: IDX files (gzipped or raw) and the book's pickle.

The four MNIST files ship inside the package (``nndl_fast/data``), so everything
works offline. MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges;
it is distributed under the Creative Commons Attribution-Share Alike 3.0 license.
"""
import gzip
import hashlib
import io
import math
import os
import pickle
import zlib

import numpy as np

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# SHA-256 of the *uncompressed* bundled files.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

# The book's mnist.pkl.gz stores pixels as float32 multiples of 1/256.
PIXEL_SCALE = 256.0


class DataFileError(ValueError):
    """A data file is missing, corrupt or not in the expected format."""


class UnsafePickleError(DataFileError, pickle.UnpicklingError):
    """A pickle asks for something other than numpy arrays (it is not unpickled)."""


def parse_idx(raw, name="<bytes>"):
    """Parse the bytes of an IDX file into an ndarray (validating the header)."""
    if len(raw) < 4:
        raise DataFileError("%s: expected an IDX file (at least 4 header bytes), got %d bytes"
                            % (name, len(raw)))
    if raw[0] != 0 or raw[1] != 0:
        raise DataFileError("%s: bad IDX magic number: expected first two bytes 0x00 0x00, got "
                            "0x%02x 0x%02x" % (name, raw[0], raw[1]))
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise DataFileError("%s: unknown IDX data type code 0x%02x (expected one of %s)"
                            % (name, code, ", ".join("0x%02x" % c for c in sorted(_IDX_DTYPES))))
    if ndim < 1 or ndim > 4:
        raise DataFileError("%s: IDX rank %d out of range (expected 1 to 4)" % (name, ndim))
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFileError("%s: truncated IDX header (%d bytes, expected %d)"
                            % (name, len(raw), header))
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    # Python ints: a product of four 32-bit sizes can overflow int64.
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataFileError("%s: IDX header says shape %s (%d data bytes) but the file has %d"
                            % (name, shape, expected, len(raw) - header))
    # An empty array whose other sizes multiply past what NumPy can index (it
    # checks them even when one size is 0).
    if math.prod(d for d in shape if d) * dtype.itemsize > np.iinfo(np.intp).max:
        raise DataFileError("%s: IDX shape %s is too large for an array" % (name, shape))
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(
        dtype.newbyteorder("="), copy=True)


def _read_bytes(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFileError("%s: corrupt gzip data (%s)" % (path, exc)) from None
    return raw


def _find(directory, stem):
    for candidate in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz",
                      stem.replace("-idx", ".idx")):
        p = os.path.join(directory, candidate)
        if os.path.exists(p):
            return p
    raise DataFileError("%s: no file %s or %s.gz" % (directory, stem, stem))


def read_idx(path, sha256=None):
    """Read one IDX file (``.gz`` or raw); optionally check its uncompressed SHA-256."""
    raw = _read_bytes(path)
    if sha256 is not None:
        got = hashlib.sha256(raw).hexdigest()
        if got != sha256:
            raise DataFileError("%s is corrupt: SHA-256 of its content is %s, expected %s"
                                % (path, got, sha256))
    return parse_idx(raw, path)


def load_idx_dataset(directory=None):
    """The four MNIST-format arrays from a directory of IDX files.

    Returns ``(train_images, train_labels, test_images, test_labels)`` as uint8
    arrays, images of shape (n, rows, cols). ``directory=None`` reads the bundled
    MNIST and verifies its checksums.
    """
    bundled = directory is None
    directory = DATA_DIR if bundled else os.fspath(directory)
    if not os.path.isdir(directory):
        raise DataFileError("expected a directory of IDX files, got %r" % directory)
    out = []
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        stem = MNIST_FILES[key]
        path = _find(directory, stem)
        out.append(read_idx(path, MNIST_SHA256[stem] if bundled else None))
    tr_x, tr_y, te_x, te_y = out
    for x, y, what in ((tr_x, tr_y, "training"), (te_x, te_y, "test")):
        if x.ndim != 3 or y.ndim != 1:
            raise DataFileError("%s: %s images must have rank 3 and labels rank 1, got %d and %d"
                                % (directory, what, x.ndim, y.ndim))
        if x.shape[0] != y.shape[0]:
            raise DataFileError("%s: %d %s images but %d labels"
                                % (directory, x.shape[0], what, y.shape[0]))
    return tr_x, tr_y, te_x, te_y


# --- the book's mnist.pkl.gz, read without running arbitrary pickled code -----------

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # Protocol-2 pickles written by Python 3 rebuild bytes with _codecs.encode.
    ("_codecs", "encode"),
}


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` as protocol-2 pickles use it (str → latin-1 bytes), and no
    other codec: the codec registry can reach modules outside numpy."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") \
            or errors != "strict":
        raise UnsafePickleError("refusing _codecs.encode(%s, %r) in the pickle: only "
                                "latin-1 encoding of str is allowed"
                                % (type(obj).__name__, encoding))
    return obj.encode("latin-1")


def _numpy_global(module, name):
    import importlib
    for mod in (module.replace("numpy.core", "numpy._core"), module):
        if not mod.startswith("numpy"):
            break
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise UnsafePickleError("cannot find %s.%s" % (module, name))


class _NdarrayClass(object):
    """Stands for ``numpy.ndarray`` in a pickle, where it is the class that
    ``_reconstruct`` instantiates; calling it (``ndarray(shape)`` would allocate
    any size) is refused."""

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError("refusing to call numpy.ndarray from the pickle: arrays are "
                                "rebuilt by _reconstruct only")


_NDARRAY = _NdarrayClass()


def _nbytes(shape, dtype):
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise UnsafePickleError("expected an array shape of non-negative ints, got %r"
                                % (shape,))
    return math.prod(shape) * np.dtype(dtype).itemsize


def _check_dtype_state(dtype, state):
    """``state`` must be what NumPy pickles for a plain (not structured, not
    sub-array) dtype: ``(3, byteorder, None, None, None, elsize, alignment, flags)``,
    with a ninth item (metadata) None or a dict for version 4."""
    ok = (isinstance(state, tuple) and len(state) in (8, 9)
          and state[0] == (3 if len(state) == 8 else 4)
          and state[1] in ("<", ">", "=", "|") and state[2:5] == (None, None, None)
          and all(type(v) is int for v in state[5:8])
          and state[5] in (-1, dtype.itemsize) and state[6] in (-1, dtype.alignment)
          and state[7] == dtype.flags
          and (len(state) == 8 or state[8] is None or isinstance(state[8], dict))
          and dtype.fields is None and dtype.subdtype is None)
    if not ok:
        raise UnsafePickleError("refusing the dtype state %.200r for %s: only the states "
                                "of plain dtypes are allowed" % (state, dtype))


class _ArrayOnlyUnpickler(pickle._Unpickler):
    """Rebuilds numpy arrays, dtypes, tuples and lists; refuses every other global.

    The pure-Python unpickler, whose memo is a dict: the C one grows its memo table
    to the largest index a PUT names, so five bytes of pickle can ask for gigabytes.
    Array and scalar sizes are bounded by the pickle's own size (a real pickle
    carries the data of every array it rebuilds).
    """

    def __init__(self, file, n_bytes, **kwargs):
        super().__init__(file, **kwargs)
        self._max_bytes = n_bytes

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(
                "refusing to load %s.%s from the pickle: only numpy arrays are allowed"
                % (module, name))
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if name == "ndarray":
            return _NDARRAY
        found = _numpy_global(module, name)
        if name == "_reconstruct":
            return self._reconstruct(found)
        if name == "scalar":
            return self._scalar(found)
        return found

    def _check_size(self, n, what):
        if n > self._max_bytes:
            raise UnsafePickleError("the pickle asks for %s of %d bytes, more than its own "
                                    "%d bytes could hold" % (what, n, self._max_bytes))

    def _reconstruct(self, real):
        def reconstruct(subtype, shape, dtype):
            if subtype is not _NDARRAY:
                raise UnsafePickleError("refusing _reconstruct of %s: only numpy.ndarray"
                                        % type(subtype).__name__)
            self._check_size(_nbytes(shape, dtype), "an array")
            return real(np.ndarray, shape, dtype)
        return reconstruct

    def load_build(self):
        """BUILD, with a dtype's state checked first: NumPy's ``dtype.__setstate__``
        trusts its argument (a 6-item state makes NumPy 2.4 crash later). Only the
        states NumPy writes for plain dtypes are let through."""
        inst, state = self.stack[-2], self.stack[-1]
        if isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)
        super().load_build()

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build

    def _scalar(self, real):
        def scalar(dtype, *args):
            if not isinstance(dtype, np.dtype):
                raise UnsafePickleError("expected a numpy dtype for a scalar, got %s"
                                        % type(dtype).__name__)
            self._check_size(dtype.itemsize, "a scalar")
            return real(dtype, *args)
        return scalar


def load_pickle(path):
    """Read the book's ``mnist.pkl.gz`` (a Python 2 pickle) safely.

    Returns ``((tr_x, tr_y), (va_x, va_y), (te_x, te_y))`` with x float32 (n, 784)
    and y int64 (n,).
    """
    raw = _read_bytes(os.fspath(path))
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(raw), len(raw), encoding="latin1").load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # a malformed pickle can raise almost anything
        raise DataFileError("%s: not a readable pickle (%s: %s)"
                            % (path, type(exc).__name__, exc)) from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 3):
        raise DataFileError("%s: expected a tuple (training, validation, test), got %s"
                            % (path, type(obj).__name__))
    out = []
    for part, what in zip(obj, ("training", "validation", "test")):
        if not (isinstance(part, (tuple, list)) and len(part) == 2):
            raise DataFileError("%s: %s part must be a pair (x, y)" % (path, what))
        x, y = part
        if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
            raise DataFileError("%s: %s part must hold numpy arrays" % (path, what))
        if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise DataFileError("%s: %s arrays have shapes %s and %s, expected (n, d) and (n,)"
                                % (path, what, x.shape, y.shape))
        if x.dtype.kind != "f" or y.dtype.kind not in "iu":
            raise DataFileError("%s: %s arrays have dtypes %s and %s, expected float and int"
                                % (path, what, x.dtype, y.dtype))
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise DataFileError("%s: %s images contain NaN or infinity" % (path, what))
        out.append((x, y.astype(np.int64)))
    return tuple(out)
