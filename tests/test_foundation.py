"""Build, configuration, data loading and the BLAS wrapper."""
import gzip
import os
import pickle

import numpy as np
import pytest

import nndl_fast
from nndl_fast import _blas, _openmp_helpers, datasets, mnist_loader


def test_version_and_config(capsys):
    assert isinstance(nndl_fast.__version__, str)
    nndl_fast.show_config()
    out = capsys.readouterr().out
    assert "nndl_fast " + nndl_fast.__version__ in out
    assert "OpenMP" in out and "BLAS" in out


def test_openmp_compiled_in():
    # The build must find OpenMP on Linux/gcc; a serial build is only a fallback.
    assert _openmp_helpers.openmp_enabled()
    assert _openmp_helpers.openmp_max_threads() >= 1


def test_thread_policy(monkeypatch):
    try:
        nndl_fast.set_num_threads(3)
        assert nndl_fast.get_num_threads() == 3
        with pytest.raises(ValueError):
            nndl_fast.set_num_threads(0)
        with pytest.raises(TypeError):
            nndl_fast.set_num_threads(1.5)
        nndl_fast.set_num_threads(None)
        monkeypatch.setenv("OMP_NUM_THREADS", "5")
        assert nndl_fast.get_num_threads() == 5
    finally:
        nndl_fast.set_num_threads(None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_gemm_wrapper_matches_numpy(dtype, ta, tb):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 5)).astype(dtype)
    b = rng.standard_normal((5, 3) if not tb else (3, 5)).astype(dtype)
    a_use = a if not ta else np.ascontiguousarray(a.T)
    c0 = rng.standard_normal((7, 3)).astype(dtype)
    got = _blas._gemm_rowmajor_check(a_use, b, ta, tb, alpha=0.5, beta=2.0, c=c0)
    want = 0.5 * (a @ (b.T if tb else b)) + 2.0 * c0
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def test_load_data_shapes():
    tr, va, te = mnist_loader.load_data()
    assert tr[0].shape == (50000, 784) and tr[0].dtype == np.float32
    assert va[0].shape == (10000, 784) and te[0].shape == (10000, 784)
    assert tr[1].dtype == np.int64 and tr[1].shape == (50000,)
    assert 0.0 <= tr[0].min() and tr[0].max() <= 1.0
    assert tr[1][0] == 5 and te[1][0] == 7


def test_load_data_wrapper_lists(mnist_wrapped):
    tr, va, te = mnist_wrapped
    assert isinstance(tr, list) and isinstance(va, list) and isinstance(te, list)
    assert (len(tr), len(va), len(te)) == (50000, 10000, 10000)
    x, y = tr[0]
    assert x.shape == (784, 1) and y.shape == (10, 1) and y.dtype == np.float64
    assert int(np.argmax(y)) == 5 and y.sum() == 1.0
    assert te[0][0].shape == (784, 1) and te[0][1] == 7
    assert len(tr[:1000]) == 1000  # slicing works (the Python 3 zip complaint)


def test_load_data_gives_fresh_arrays_of_exact_pixels(tmp_path):
    d = _fake_mnist_dir(tmp_path, n_train=50005, n_test=7)
    raw = datasets.load_idx_dataset(str(d))
    first = mnist_loader.load_data(d)
    # Each pixel is its byte over PIXEL_SCALE, in float32, exactly.
    want = raw[0].reshape(-1, 784).astype(np.float32) / np.float32(datasets.PIXEL_SCALE)
    np.testing.assert_array_equal(np.concatenate([first[0][0], first[1][0]]), want)
    assert first[0][0].dtype == np.float32 and first[0][0].flags.c_contiguous
    # A caller's changes reach neither the next call nor the other splits.
    first[0][0][...] = -1
    first[0][1][...] = -1
    again = mnist_loader.load_data(d)
    np.testing.assert_array_equal(again[0][0], want[:50000])
    np.testing.assert_array_equal(again[0][1], raw[1][:50000])
    np.testing.assert_array_equal(again[1][0], want[50000:])


def test_wrapper_columns_are_rows_of_one_array(mnist_wrapped):
    # The layout SGD takes without copying (_packing.shared_rows).
    from nndl_fast import _config
    tr, va, te = mnist_wrapped
    for data in (tr, va, te):
        base = data[0][0].base
        assert base.shape == (len(data), 784)
        for p in (0, 1, len(data) - 1):
            x = data[p][0]
            assert x.base is base and x.shape == (784, 1) and x.flags.c_contiguous
            np.testing.assert_array_equal(x[:, 0], base[p])
    assert tr[7][1].base is tr[0][1].base
    assert all(type(y) is int for _, y in va[:5] + te[-5:])
    if _config.use_compiled("_packing"):
        from nndl_fast import _packing
        assert _packing.shared_rows(tr, 0, 784) is not None
        assert _packing.shared_rows(tr, 1, 10) is not None
        assert _packing.shared_rows(te, 0, 784) is not None


def test_idx_images_of_another_type_are_scaled(tmp_path):
    # IDX images stored as int16 (type code 0x0B) load as uint8 ones do.
    d = _fake_mnist_dir(tmp_path, n_train=50003, n_test=4)
    images = datasets.load_idx_dataset(str(d))[0].astype(">i2")
    header = bytes([0, 0, 0x0B, 3]) + b"".join(int(n).to_bytes(4, "big") for n in images.shape)
    with gzip.open(d / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + images.tobytes())
    tr, va, te = mnist_loader.load_data(d)
    want = images.reshape(-1, 784).astype(np.float32) / np.float32(datasets.PIXEL_SCALE)
    np.testing.assert_array_equal(np.concatenate([tr[0], va[0]]), want)


def test_read_ahead_fills_the_cache_load_data_reads(tmp_path):
    d = _fake_mnist_dir(tmp_path, n_train=50002, n_test=3)
    mnist_loader.read_ahead(d)                  # a path-like, as load_data takes
    misses = mnist_loader._load_cached.cache_info().misses
    tr, va, te = mnist_loader.load_data(str(d))
    assert mnist_loader._load_cached.cache_info().misses == misses
    assert tr[0].shape == (50000, 784) and te[0].shape == (3, 784)
    # Errors are load_data's to raise.
    mnist_loader.read_ahead(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        mnist_loader.load_data(tmp_path / "missing")


def test_vectorized_result():
    e = mnist_loader.vectorized_result(3)
    assert e.shape == (10, 1) and e.dtype == np.float64 and e[3, 0] == 1.0 and e.sum() == 1
    with pytest.raises(ValueError):
        mnist_loader.vectorized_result(10)
    with pytest.raises(TypeError):
        mnist_loader.vectorized_result(2.0)


def _write_idx(path, arr):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[arr.dtype], arr.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


def _fake_mnist_dir(tmp_path, n_train=60010, n_test=20):
    rng = np.random.default_rng(1)
    d = tmp_path / "fake"
    d.mkdir()
    _write_idx(d / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8))
    _write_idx(d / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, n_train, dtype=np.uint8))
    _write_idx(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8))
    _write_idx(d / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, n_test, dtype=np.uint8))
    return d


def test_load_from_idx_directory(tmp_path):
    d = _fake_mnist_dir(tmp_path)
    tr, va, te = mnist_loader.load_data(d)
    assert tr[0].shape == (50000, 784) and va[0].shape == (10010, 784) and te[0].shape == (20, 784)
    tr_l, va_l, te_l = mnist_loader.load_data_wrapper(str(d))
    assert len(te_l) == 20 and te_l[0][0].shape == (784, 1)


def test_idx_validation(tmp_path):
    with pytest.raises(datasets.DataFileError, match="magic"):
        datasets.parse_idx(b"\x01\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(datasets.DataFileError, match="data bytes"):
        datasets.parse_idx(b"\x00\x00\x08\x01\x00\x00\x00\x03\x05")
    with pytest.raises(datasets.DataFileError, match="type code"):
        datasets.parse_idx(b"\x00\x00\x07\x01\x00\x00\x00\x01\x05")
    with pytest.raises(datasets.DataFileError):
        datasets.parse_idx(b"\x00")
    # no data (one size is 0), but the other sizes multiply past what NumPy indexes
    with pytest.raises(datasets.DataFileError, match="too large"):
        datasets.parse_idx(b"\x00\x00\x09\x04\x04\x00\x00\x04\x06\x09\x0d\x00"
                           b"\x00\x00\x00\x00\x00\x00\x40\x04")
    # an empty array of modest shape is still read
    assert datasets.parse_idx(b"\x00\x00\x08\x02\x00\x00\x00\x00\x00\x00\x00\x05"
                              ).shape == (0, 5)


def test_checksum_detects_corruption(tmp_path):
    src = os.path.join(datasets.DATA_DIR, "t10k-labels-idx1-ubyte.gz")
    raw = bytearray(gzip.decompress(open(src, "rb").read()))
    raw[100] ^= 0xFF
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(datasets.DataFileError, match="corrupt"):
        datasets.read_idx(str(bad), datasets.MNIST_SHA256["t10k-labels-idx1-ubyte"])


def test_book_pickle_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    parts = tuple((rng.random((n, 784)).astype(np.float32), rng.integers(0, 10, n))
                  for n in (30, 10, 10))
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(parts, f, protocol=2)
    tr, va, te = mnist_loader.load_data(path)
    np.testing.assert_array_equal(tr[0], parts[0][0])
    np.testing.assert_array_equal(te[1], parts[2][1])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(_Evil(), f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        mnist_loader.load_data(path)


# --- hostile pickles: nothing but numpy arrays is ever built -------------------------------

class _CallsBuiltin:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _write_pickle(path, obj, protocol=2):
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def _hostile_objects():
    x = np.zeros((2, 784), np.float32)
    y = np.zeros(2, np.int64)
    evil = _CallsBuiltin(os.system, "echo pwned")
    return [
        ("eval", _CallsBuiltin(eval, "1 + 1")),
        ("exec", _CallsBuiltin(exec, "import os")),
        ("getattr", _CallsBuiltin(getattr, "text", "upper")),
        ("nested_in_parts", ((x, y), (x, y), ((x, evil), y))),
        ("inside_list", [evil]),
        ("object_array", ((np.array([evil, 1], dtype=object), y), (x, y), (x, y))),
        ("dict_subclass", ((x, y), (x, y), collections_counter())),
        ("numpy_load", _CallsBuiltin(np.load, "/etc/passwd")),
        ("frombuffer", _CallsBuiltin(np.frombuffer, b"\x00" * 8)),
    ]


def collections_counter():
    import collections
    return collections.Counter("ab")


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("case", range(len(_hostile_objects())))
def test_pickle_refuses_hostile_variants(tmp_path, case, protocol, capfd):
    name, obj = _hostile_objects()[case]
    path = _write_pickle(tmp_path / (name + ".pkl.gz"), obj, protocol)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        mnist_loader.load_data(path)
    # The refusal is also a ValueError (a data-file error), like every other bad file.
    with pytest.raises(datasets.DataFileError):
        datasets.load_pickle(path)
    assert "pwned" not in capfd.readouterr().out


def test_pickle_refuses_codecs_beyond_latin1(tmp_path):
    import _codecs

    path = _write_pickle(tmp_path / "c.pkl.gz", _CallsBuiltin(_codecs.encode, "x", "rot13"))
    with pytest.raises(datasets.UnsafePickleError, match="only latin-1"):
        datasets.load_pickle(path)


def test_pickle_benign_object_array_refused_by_dtype(tmp_path):
    parts = tuple((np.array([[1.0] * 784], dtype=object), np.zeros(1, np.int64))
                  for _ in range(3))
    path = _write_pickle(tmp_path / "o.pkl.gz", parts)
    with pytest.raises(datasets.DataFileError, match="dtypes object and int64, expected float"):
        datasets.load_pickle(path)


def _reconstruct_pickle(shape, data):
    """A protocol-2 pickle of one float32 array whose header claims ``shape``."""
    arr = np.zeros(1, np.float32)
    cls, args, state = arr.__reduce__()
    state = (state[0], shape, state[2], state[3], data)

    class _Arr:
        def __reduce__(self):
            return (cls, args, state)

    return _Arr()


@pytest.mark.parametrize("shape", [(10 ** 12, 784), (2 ** 62, 2 ** 62), (-1, 784)])
def test_pickle_huge_declared_shape(tmp_path, shape):
    arr = _reconstruct_pickle(shape, b"\x00" * 16)
    parts = ((arr, np.zeros(1, np.int64)),) * 3
    path = _write_pickle(tmp_path / "huge.pkl.gz", parts)
    with pytest.raises(datasets.DataFileError, match="not a readable pickle"):
        datasets.load_pickle(path)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.99])
def test_pickle_truncated_gzip(tmp_path, cut):
    parts = tuple((np.zeros((n, 784), np.float32), np.zeros(n, np.int64)) for n in (5, 2, 2))
    full = _write_pickle(tmp_path / "full.pkl.gz", parts).read_bytes()
    path = tmp_path / "cut.pkl.gz"
    path.write_bytes(full[: int(len(full) * cut)])
    with pytest.raises(datasets.DataFileError, match="corrupt gzip data"):
        mnist_loader.load_data(path)


def test_pickle_truncated_plain(tmp_path):
    parts = tuple((np.zeros((n, 784), np.float32), np.zeros(n, np.int64)) for n in (5, 2, 2))
    raw = pickle.dumps(parts, protocol=2)
    path = tmp_path / "cut.pkl"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(datasets.DataFileError, match="not a readable pickle"):
        datasets.load_pickle(path)


def test_pickle_wrong_structure_and_nan(tmp_path):
    x, y = np.zeros((2, 784), np.float32), np.zeros(2, np.int64)
    cases = [
        ([x, y], r"expected a tuple \(training, validation, test\), got list"),
        (((x, y), (x, y), (x,)), r"test part must be a pair"),
        (((x, y), (x, y), (x, y[:1])), r"shapes \(2, 784\) and \(1,\)"),
        (((x, y), (x, y), (x, x)), r"shapes"),
        (((x, y), (x, y), (np.full((2, 784), np.nan, np.float32), y)), r"NaN or infinity"),
    ]
    for k, (obj, match) in enumerate(cases):
        path = _write_pickle(tmp_path / ("s%d.pkl.gz" % k), obj)
        with pytest.raises(datasets.DataFileError, match=match):
            datasets.load_pickle(path)
