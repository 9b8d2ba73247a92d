"""network2.save / network2.load: the book's JSON format, atomic writes, and
refusal of malformed or hostile documents."""
import contextlib
import json
import os

import numpy as np
import pytest

from nndl_fast import network2
from nndl_fast.reference import network2 as ref


def _net(cost=network2.CrossEntropyCost, sizes=(6, 4, 3), dtype=np.float64, seed=0):
    np.random.seed(seed)
    return network2.Network(list(sizes), cost=cost, dtype=dtype)


def _same_params(a, b):
    return all(np.array_equal(np.asarray(u, np.float64), np.asarray(v, np.float64))
               for u, v in zip(a.weights + a.biases, b.weights + b.biases))


@pytest.mark.purepython
def test_save_writes_the_books_document(tmp_path):
    net = _net()
    path = tmp_path / "net.json"
    net.save(str(path))
    with open(path) as f:
        doc = json.load(f)
    assert set(doc) == {"sizes", "weights", "biases", "cost"}
    assert doc["sizes"] == [6, 4, 3] and doc["cost"] == "CrossEntropyCost"
    assert np.array(doc["weights"][0]).shape == (4, 6)
    assert np.array(doc["biases"][1]).shape == (3, 1)  # nested (y, 1), as the book's
    assert doc["weights"][1] == net.weights[1].tolist()
    assert os.listdir(tmp_path) == ["net.json"]


@pytest.mark.parametrize("cost", [network2.QuadraticCost, network2.CrossEntropyCost(),
                                  network2.LogLikelihoodCost])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_roundtrip(tmp_path, cost, dtype):
    net = _net(cost=cost, dtype=dtype)
    path = tmp_path / "net.json"
    net.save(path)
    back = network2.load(path, dtype=dtype)
    assert back.sizes == net.sizes and back.dtype == dtype
    assert back.cost is ref.cost_class(cost)
    assert _same_params(back, net)
    x = np.random.default_rng(0).random((6, 1))
    np.testing.assert_allclose(back.feedforward(x), net.feedforward(x), rtol=1e-6)


@pytest.mark.purepython
def test_our_file_loads_in_the_books_code_and_back(tmp_path):
    ours = _net(cost=network2.LogLikelihoodCost, sizes=(5, 7, 2, 4))
    ours.save(tmp_path / "ours.json")
    theirs = ref.load(str(tmp_path / "ours.json"))
    assert theirs.cost is ref.LogLikelihoodCost and _same_params(theirs, ours)

    np.random.seed(3)
    book = ref.Network([5, 7, 4], cost=ref.QuadraticCost)
    book.save(str(tmp_path / "book.json"))
    loaded = network2.load(str(tmp_path / "book.json"))
    assert loaded.cost is network2.QuadraticCost and _same_params(loaded, book)


def test_load_draws_random_numbers_as_the_books_load(tmp_path):
    _net(sizes=(9, 8, 3)).save(tmp_path / "n.json")
    np.random.seed(5)
    network2.load(tmp_path / "n.json")
    ours = np.random.rand()
    np.random.seed(5)
    ref.load(str(tmp_path / "n.json"))
    assert ours == np.random.rand()


def test_failed_save_leaves_the_old_file_and_no_debris(tmp_path, monkeypatch):
    path = tmp_path / "net.json"
    old = _net(seed=1)
    old.save(path)
    before = path.read_bytes()
    real_atomic_write = network2.atomic_write

    class HalfThenFail(object):
        """The file of a disk that fills up half-way through the document."""

        def __init__(self, f):
            self.f = f

        def write(self, text):
            self.f.write(text[:len(text) // 2])
            self.f.flush()
            raise OSError(28, "No space left on device")

    @contextlib.contextmanager
    def failing_atomic_write(filename, mode="w"):
        with real_atomic_write(filename, mode) as f:
            yield HalfThenFail(f)

    monkeypatch.setattr(network2, "atomic_write", failing_atomic_write)
    with pytest.raises(OSError, match="No space left"):
        _net(seed=2).save(path)
    monkeypatch.setattr(network2, "atomic_write", real_atomic_write)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["net.json"]
    assert _same_params(network2.load(path), old)


def test_save_refuses_costs_load_cannot_find(tmp_path):
    class MyCost(network2.QuadraticCost):
        pass
    net = network2.Network([3, 2], cost=MyCost)
    with pytest.raises(ValueError, match="MyCost"):
        net.save(tmp_path / "x.json")
    assert os.listdir(tmp_path) == []


def test_save_gives_the_file_the_usual_mode(tmp_path):
    path = tmp_path / "net.json"
    _net().save(path)
    mask = os.umask(0)
    os.umask(mask)
    assert (os.stat(path).st_mode & 0o777) == (0o666 & ~mask)


def _good_doc():
    return {"sizes": [3, 2], "weights": [[[0.1, -0.2, 0.3], [1, 2, 3]]],
            "biases": [[[0.5], [-0.5]]], "cost": "QuadraticCost"}


def _with(**changes):
    doc = _good_doc()
    doc.update(changes)
    return doc


def _without(key):
    doc = _good_doc()
    del doc[key]
    return doc


BAD_DOCS = [
    ([1, 2, 3], "JSON object"),
    (_without("weights"), "lacks the key"),
    (_with(sizes="3,2"), "sizes must be a list"),
    (_with(sizes=[3]), "at least 2 layers"),
    (_with(sizes=[3, 2.0]), "must be an integer"),
    (_with(sizes=[3, True]), "must be an integer"),
    (_with(sizes=[3, -2]), ">= 1"),
    (_with(cost="Network"), "cost must be one of"),
    (_with(cost="load"), "cost must be one of"),
    (_with(cost=None), "cost must be one of"),
    (_with(weights=[]), "list of 1 arrays"),
    (_with(weights={"0": 1}), "list of 1 arrays"),
    (_with(weights=[[[0.1, 0.2, 0.3], [1, 2]]]), r"row 1 of weights\[0\] .* got a list of 2"),
    (_with(weights=[[[0.1, 0.2, 0.3]]]), r"2 rows \(expected shape \(2, 3\)\), got a list of 1"),
    (_with(weights=[[0.1, 0.2]]), r"row 0 .* got float"),
    (_with(weights=[[[[0.1], 0.2, 0.3], [1, 2, 3]]]), "type list"),
    (_with(weights=[[["0.1", 0.2, 0.3], [1, 2, 3]]]), "numbers"),
    (_with(weights=[[[True, 0.2, 0.3], [1, 2, 3]]]), "numbers"),
    (_with(weights=[[[None, 0.2, 0.3], [1, 2, 3]]]), "numbers"),
    (_with(weights=[[[10 ** 400, 0.2, 0.3], [1, 2, 3]]]), "too large"),
    (_with(biases=[[0.5, -0.5]]), r"row 0 of biases\[0\] .* got float"),
    (_with(biases=[[[0.5], [-0.5]], [[1.0]]]), "list of 1 arrays"),
    # Absurd sizes are refused from the sizes alone or from the lists' real shapes,
    # before anything of that size is allocated.
    (_with(sizes=[2 ** 30, 2]), "too large"),
    (_with(sizes=[40000, 40000, 40000]), "weights"),
    (_with(sizes=[3, 20000000 // 3]), "6666666 rows"),
]


@pytest.mark.purepython
@pytest.mark.parametrize("doc,message", BAD_DOCS)
def test_load_refuses_malformed_documents(tmp_path, doc, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(network2.NetworkFileError, match=message) as info:
        network2.load(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("text,message", [
    ("", "not a valid JSON"),
    ('{"sizes": [3, 2], "weights": [[[0.1', "not a valid JSON"),
    ("[" * 100000 + "]" * 100000, "not a valid JSON|JSON object"),
    ('{"sizes": [3, 2], "weights": [[[NaN, 0, 0], [0, 0, 0]]], "biases": [[[0], [0]]], '
     '"cost": "QuadraticCost"}', "non-finite"),
    ('{"sizes": [3, 2], "weights": [[[Infinity, 0, 0], [0, 0, 0]]], "biases": [[[0], [0]]], '
     '"cost": "QuadraticCost"}', "non-finite"),
    ('{"sizes": [3, 2], "weights": [[[1e999, 0, 0], [0, 0, 0]]], "biases": [[[0], [0]]], '
     '"cost": "QuadraticCost"}', "too large"),
    ('{"sizes": [3, 2], "weights": [[[0, 0, 0], [0, 0, 0]]], "biases": [[[0], [0]]], '
     '"cost": "QuadraticCost", "sizes": [1' + "0" * 5000 + ', 2]}', "not a valid JSON"),
])
def test_load_refuses_broken_json(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(network2.NetworkFileError, match=message):
        network2.load(path)


def test_load_accepts_extra_keys_and_int_numbers(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(_with(note="saved by hand")))
    net = network2.load(path)
    assert net.cost is network2.QuadraticCost
    np.testing.assert_array_equal(net.weights[0], [[0.1, -0.2, 0.3], [1.0, 2.0, 3.0]])
    assert net.weights[0].dtype == np.float64 and net.biases[0].shape == (2, 1)
