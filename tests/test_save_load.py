"""save / load for chapter 1's and chapter 6's networks: round trips, atomic
writes, and refusal of malformed files."""
import json
import os

import numpy as np
import pytest

from nndl_fast import network, network2
from nndl_fast.reference import network2 as ref2


# ------------------------------------------------------------- network.py
@pytest.mark.purepython
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_network_roundtrip_and_the_books_loader_reads_it(tmp_path, dtype):
    np.random.seed(1)
    net = network.Network([6, 5, 3], dtype=dtype)
    path = tmp_path / "net.json"
    net.save(path)
    back = network.load(path, dtype=dtype)
    assert back.sizes == [6, 5, 3] and back.dtype == dtype
    for a, b in zip(net.weights + net.biases, back.weights + back.biases):
        assert np.array_equal(a, b)
    book = ref2.load(str(path))
    assert book.cost is ref2.QuadraticCost
    x = np.random.default_rng(0).random((6, 1))
    np.testing.assert_allclose(book.feedforward(x), net.feedforward(x), rtol=1e-6)
    assert os.listdir(tmp_path) == ["net.json"]


def test_network_load_refuses_another_cost(tmp_path):
    path = tmp_path / "ce.json"
    network2.Network([4, 2]).save(path)
    with pytest.raises(ValueError, match="expected a network with cost QuadraticCost.*"
                                         "got CrossEntropyCost"):
        network.load(path)


def test_network_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "net.json"
    np.random.seed(0)
    network.Network([3, 2]).save(path)
    before = path.read_bytes()

    def dump_half_then_fail(obj, f, **kwargs):
        f.write(json.dumps(obj)[:10])
        raise OSError("disk full")
    monkeypatch.setattr(network2.json, "dump", dump_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        network.Network([3, 2]).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.json"]
