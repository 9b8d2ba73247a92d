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
