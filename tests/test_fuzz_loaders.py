"""The file readers under hostile input: what tools/fuzz_loaders.py found (each
finding a test here, see docs/reliability.md), and a short deterministic mutation
run of its targets that needs no atheris."""
import gzip
import importlib.util
import os
import random
import struct
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from nndl_fast import datasets, network3

_TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     "tools", "fuzz_loaders.py")


def _fuzz_tool():
    spec = importlib.util.spec_from_file_location("fuzz_loaders", _TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _peak_bytes(call):
    """(exception raised by call(), peak bytes traced while it ran)."""
    tracemalloc.start()
    try:
        try:
            call()
        except Exception as exc:  # returned to the test
            raised = exc
        else:
            raised = None
        return raised, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- the restricted unpickler --------------------------------------------------------------

PROTO2 = b"\x80\x02"
RECONSTRUCT = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"


def _write(tmp_path, raw, name="mnist.pkl"):
    path = tmp_path / name
    path.write_bytes(raw)
    return str(path)


def test_pickle_memo_index_allocates_nothing(tmp_path):
    """Finding 1: LONG_BINPUT with index 20,000,000 made the C unpickler grow its
    memo table to that size (hundreds of MB for a 9-byte file; up to 32 GB for the
    largest index)."""
    path = _write(tmp_path, PROTO2 + b"K\x00r" + struct.pack("<I", 20_000_000) + b".")
    exc, peak = _peak_bytes(lambda: datasets.load_pickle(path))
    assert isinstance(exc, datasets.DataFileError)
    assert "expected a tuple (training, validation, test), got int" in str(exc)
    assert peak < 20 * 2 ** 20


def test_pickle_array_sizes_bounded_by_the_file(tmp_path):
    """Finding 2: _reconstruct(ndarray, shape, dtype) allocates ``shape`` before any
    data is read: a 60-byte pickle could ask for any size (untouched memory that
    the checks after loading would then read)."""
    raw = (PROTO2 + RECONSTRUCT + b"J" + struct.pack("<i", 200_000_000) + b"\x85"
           + b"C\x01b" + b"\x87R.")
    path = _write(tmp_path, raw)
    exc, peak = _peak_bytes(lambda: datasets.load_pickle(path))
    assert isinstance(exc, datasets.UnsafePickleError)
    assert "asks for an array of 200000000 bytes, more than its own %d bytes" % len(raw) \
        in str(exc)
    assert peak < 20 * 2 ** 20


def _uni(text):
    return b"X" + struct.pack("<I", len(text)) + text.encode()


def test_pickle_dtype_state_checked_before_numpy_takes_it(tmp_path):
    """Finding 3: a dtype copied by the pickle (``dtype('i8', False, True)``) and then
    given a 6-item state crashed the interpreter (NumPy 2.4's ``__setstate__``
    trusts it). Run in a child process, so a crash fails the test instead of
    ending the run."""
    import subprocess
    import sys
    state = (b"(K\x03" + _uni("<") + b"NJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t")
    raw = (PROTO2 + b"cnumpy\ndtype\n" + _uni("i8") + b"\x89\x88\x87R" + state + b"b"
           + b"K\x01\x85R.")   # ... then used: dtype(1,) would read the broken dtype
    path = _write(tmp_path, raw)
    code = ("from nndl_fast import datasets\n"
            "try:\n    datasets.load_pickle(%r)\n"
            "except datasets.UnsafePickleError as exc:\n    print(exc)\n" % path)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=os.path.dirname(os.path.dirname(_TOOL)))
    assert proc.returncode == 0, proc.stderr
    assert "refusing the dtype state (3, '<', None, -1, -1, 0) for int64" in proc.stdout


def test_pickle_may_not_call_ndarray(tmp_path):
    raw = PROTO2 + b"cnumpy\nndarray\nJ" + struct.pack("<i", 10 ** 8) + b"\x85\x85R."
    with pytest.raises(datasets.UnsafePickleError, match=r"refusing to call numpy.ndarray"):
        datasets.load_pickle(_write(tmp_path, raw))


def test_pickle_reconstruct_only_of_ndarray(tmp_path):
    raw = (PROTO2 + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\n"
           + b"K\x00\x85C\x01b\x87R.")
    with pytest.raises(datasets.UnsafePickleError, match=r"refusing _reconstruct of"):
        datasets.load_pickle(_write(tmp_path, raw))


def test_books_pickle_layout_still_loads(tmp_path):
    import pickle
    rng = np.random.default_rng(0)
    parts = tuple((rng.random((n, 784)).astype(np.float32), rng.integers(0, 10, n))
                  for n in (50, 20, 10))
    for protocol in (2, 4):
        path = tmp_path / ("p%d.pkl.gz" % protocol)
        path.write_bytes(gzip.compress(pickle.dumps(parts, protocol=protocol)))
        out = datasets.load_pickle(path)
        for (x, y), (x0, y0) in zip(out, parts):
            np.testing.assert_array_equal(x, x0)
            np.testing.assert_array_equal(y, y0)


# --- network3's .npz archive -----------------------------------------------------------------

def _saved_net3(path):
    np.random.seed(0)
    net = network3.Network([network3.FullyConnectedLayer(6, 4), network3.SoftmaxLayer(4, 3)], 2)
    net.save(path)
    return path


def _patched(src, dst, offset_of, patch):
    """Copy src to dst with the bytes at offset_of(raw) replaced by patch."""
    raw = bytearray(open(src, "rb").read())
    at = offset_of(bytes(raw))
    raw[at:at + len(patch)] = patch
    open(dst, "wb").write(bytes(raw))
    return dst


def _directory_entry(raw, name):
    """Offset of the central-directory record of ``name`` (46 bytes before its name,
    which the record holds last of all the copies of the name in the file)."""
    at = raw.rindex(name.encode()) - 46
    assert raw[at:at + 4] == b"PK\x01\x02"
    return at


def test_npz_bad_crc_is_a_network_file_error(tmp_path):
    """Finding 4: an entry whose data fails its CRC raised zipfile.BadZipFile."""
    good = _saved_net3(str(tmp_path / "good.npz"))
    raw = open(good, "rb").read()
    data_at = raw.index(b"\x93NUMPY", raw.index(b"layer0_w.npy")) + 200
    bad = _patched(good, str(tmp_path / "bad.npz"), lambda r: data_at, b"\x00\x01\x02\x03")
    with pytest.raises(network3.NetworkFileError, match=r"damaged archive entry "
                       r"\(BadZipFile: Bad CRC-32 for file 'layer0_w.npy'\)"):
        network3.load(bad)


def test_npz_directory_offset_outside_the_file(tmp_path):
    """Finding 5: a central directory pointing an entry outside the file raised
    OSError (EINVAL) from zipfile's seek."""
    good = _saved_net3(str(tmp_path / "good.npz"))
    bad = _patched(good, str(tmp_path / "bad.npz"),
                   lambda r: _directory_entry(r, "layer1_b.npy") + 42,
                   struct.pack("<I", 0xFFFFFFF0))
    with pytest.raises(network3.NetworkFileError, match=r"layer1_b: the zip directory puts "
                       r"it at offset \d+, outside the file"):
        network3.load(bad)


def test_npz_sizes_declared_by_the_directory_are_checked_before_reading(tmp_path):
    good = _saved_net3(str(tmp_path / "good.npz"))
    # an entry claiming 4 GB uncompressed
    bad = _patched(good, str(tmp_path / "bad.npz"),
                   lambda r: _directory_entry(r, "layer0_w.npy") + 24,
                   struct.pack("<I", 0xFFFFFFF0))
    exc, peak = _peak_bytes(lambda: network3.load(bad))
    assert isinstance(exc, network3.NetworkFileError)
    assert peak < 20 * 2 ** 20


def test_npz_array_header_checked_before_its_data_is_read(tmp_path):
    good = _saved_net3(str(tmp_path / "good.npz"))
    with zipfile.ZipFile(good) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    header = entries["layer0_w.npy"]
    assert b"'shape': (6, 4)" in header
    entries["layer0_w.npy"] = header.replace(b"'shape': (6, 4)", b"'shape': (9, 99)")
    bad = str(tmp_path / "bad.npz")
    with zipfile.ZipFile(bad, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    with pytest.raises(network3.NetworkFileError,
                       match=r"layer0_w has shape \(9, 99\), expected \(6, 4\)"):
        network3.load(bad)


def test_npz_compressed_archive_still_loads(tmp_path):
    good = _saved_net3(str(tmp_path / "good.npz"))
    with zipfile.ZipFile(good) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    packed = str(tmp_path / "deflated.npz")
    with zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    a, b = network3.load(good), network3.load(packed)
    for pa, pb in zip(a.params, b.params):
        np.testing.assert_array_equal(pa.get_value(), pb.get_value())


# --- every fuzz target, a short deterministic mutation run -------------------------------------

def _mutate(data, rng):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1 and len(data) > 1:
            del data[rng.randrange(len(data)):][:rng.randint(1, 16)]
        elif op == 2:
            at = rng.randrange(len(data) + 1)
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif data:
            at = rng.randrange(len(data))
            data[at:at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00",
                                          b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00"])
    return bytes(data)


@pytest.mark.parametrize("target", ["idx", "pickle", "network2", "network", "npz"])
def test_fuzz_target_seeds_and_mutations(target, tmp_path):
    """The fuzz harness's seeds are valid files, and 150 mutations of them raise
    only the reader's documented error (a smoke run; tools/fuzz_loaders.py with
    atheris explores much further)."""
    tool = _fuzz_tool()
    path = str(tmp_path / "input")
    seeds = tool.seeds(target)
    for k, data in enumerate(seeds):
        with open(path, "wb") as f:
            f.write(tool.file_bytes(data))
        if k == 0 or target != "network":   # (network.load refuses network2's costs)
            tool.read(target, path)         # valid: no exception at all
    rng = random.Random(target)
    t0 = time.perf_counter()
    for k in range(150):
        tool.one_input(target, _mutate(rng.choice(seeds), rng), path)
    assert time.perf_counter() - t0 < 60
