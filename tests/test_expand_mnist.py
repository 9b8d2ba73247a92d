"""expand_mnist: one-pixel shifts, order, shuffling, and the pickle file."""
import gzip

import numpy as np
import pytest

from nndl_fast import __main__ as cli
from nndl_fast import datasets, expand_mnist, mnist_loader


@pytest.fixture(scope="module")
def mnist_small():
    tr, va, te = mnist_loader.load_data()
    return (tr[0][:200], tr[1][:200]), (va[0][:30], va[1][:30]), (te[0][:20], te[1][:20])


def test_each_shift_on_a_hand_made_image():
    image = np.arange(1, 10, dtype=np.float32).reshape(3, 3)   # rows 1 2 3 / 4 5 6 / 7 8 9
    x, y = expand_mnist.expand((image.reshape(1, 9), np.array([7])))
    assert x.shape == (5, 9) and y.tolist() == [7] * 5
    got = x.reshape(5, 3, 3)
    np.testing.assert_array_equal(got[0], image)
    np.testing.assert_array_equal(got[1], [[4, 5, 6], [7, 8, 9], [0, 0, 0]])   # up
    np.testing.assert_array_equal(got[2], [[0, 0, 0], [1, 2, 3], [4, 5, 6]])   # down
    np.testing.assert_array_equal(got[3], [[2, 3, 0], [5, 6, 0], [8, 9, 0]])   # left
    np.testing.assert_array_equal(got[4], [[0, 1, 2], [0, 4, 5], [0, 7, 8]])   # right
    assert [name for name, _, _ in expand_mnist.SHIFTS] == ["up", "down", "left", "right"]


def test_zeroed_border_and_roll_elsewhere():
    rng = np.random.default_rng(0)
    images = rng.uniform(0.1, 1.0, size=(3, 28, 28)).astype(np.float32)
    x, _ = expand_mnist.expand((images.reshape(3, 784), np.arange(3)))
    shifted = x.reshape(3, 5, 28, 28)
    np.testing.assert_array_equal(shifted[:, 0], images)
    # (block index, roll amount, roll axis, index of the zeroed row/column along that axis)
    for k, amount, axis, edge in ((1, -1, 1, -1), (2, 1, 1, 0), (3, -1, 2, -1), (4, 1, 2, 0)):
        rolled = np.roll(images, amount, axis=axis)
        border = np.take(shifted[:, k], edge, axis=axis)
        assert np.all(border == 0), k
        assert np.all(np.take(rolled, edge, axis=axis) > 0)   # what wrapped is gone
        keep = [slice(None)] * 3
        keep[axis] = slice(1, None) if edge == 0 else slice(None, -1)
        np.testing.assert_array_equal(shifted[:, k][tuple(keep)], rolled[tuple(keep)])


def test_shapes_dtypes_order_and_labels(mnist_small):
    (x, y), _, _ = mnist_small
    ex, ey = expand_mnist.expand((x, y))
    assert ex.shape == (1000, 784) and ex.dtype == np.float32
    assert ey.shape == (1000,) and ey.dtype == np.int64
    np.testing.assert_array_equal(ey, np.repeat(y, 5))
    np.testing.assert_array_equal(ex[::5], x)                 # originals at 5i
    assert ex.min() >= 0 and ex.max() <= 1
    # A shift moves ink, it does not create any.
    assert np.all(ex.reshape(200, 5, 784).sum(axis=2) <= x.sum(axis=1)[:, None] + 1e-4)


def test_default_is_mnist_training_data(monkeypatch, mnist_small):
    train, va, te = mnist_small
    monkeypatch.setattr(mnist_loader, "load_data", lambda path=None: (train, va, te))
    ex, ey = expand_mnist.expand()
    assert ex.shape == (1000, 784)
    np.testing.assert_array_equal(ey, np.repeat(train[1], 5))


def test_shuffle_is_seeded_permutation(mnist_small):
    pair = mnist_small[0]
    plain = expand_mnist.expand(pair)
    a = expand_mnist.expand(pair, seed=1)
    b = expand_mnist.expand(pair, seed=1)
    c = expand_mnist.expand(pair, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert not np.array_equal(a[1], plain[1])
    # Same (image, label) pairs, only reordered.
    def rows(x, y):
        return sorted(xi.tobytes() + bytes([yi]) for xi, yi in zip(x, y))
    assert rows(*a) == rows(*plain)
    # The documented contract: the unshuffled set permuted by default_rng(seed).
    perm = np.random.default_rng(1).permutation(1000)
    np.testing.assert_array_equal(a[0], plain[0][perm])
    np.testing.assert_array_equal(a[1], plain[1][perm])
    unseeded = expand_mnist.expand(pair, shuffle=True)
    assert rows(*unseeded) == rows(*plain)
    assert np.array_equal(expand_mnist.expand(pair, seed=3, shuffle=False)[1], plain[1])


def test_file_round_trip(tmp_path, mnist_small):
    train, va, te = mnist_small
    expanded = expand_mnist.expand(train, seed=0)
    path = tmp_path / "mnist_expanded.pkl.gz"
    assert expand_mnist.save(str(path), expanded, va, te) == str(path)
    with gzip.open(path, "rb") as f:
        assert f.read(2) == b"\x80\x02"                       # pickle protocol 2
    (tx, ty), (vx, vy), (sx, sy) = mnist_loader.load_data(str(path))
    np.testing.assert_array_equal(tx, expanded[0])
    np.testing.assert_array_equal(ty, expanded[1])
    np.testing.assert_array_equal(vx, va[0])
    np.testing.assert_array_equal(sy, te[1])
    # The arrays-only unpickler accepts it as is.
    assert datasets.load_pickle(str(path))[0][0].shape == (1000, 784)
    assert not (tmp_path / "mnist_expanded.pkl.gz.partial").exists()


def test_cli_expand(tmp_path, mnist_small, capsys):
    train, va, te = mnist_small
    source = tmp_path / "small.pkl.gz"
    expand_mnist.save(str(source), train, va, te)
    out = tmp_path / "out.pkl.gz"
    assert cli.main(["expand", "--data", str(source), "--out", str(out), "--seed", "5"]) == 0
    assert "Expanded 200 training images to 1000 (shuffled with seed 5)" in \
        capsys.readouterr().out
    (tx, ty), (vx, _), _ = mnist_loader.load_data(str(out))
    want = expand_mnist.expand(train, seed=5)
    np.testing.assert_array_equal(tx, want[0])
    np.testing.assert_array_equal(vx, va[0])


def test_bad_input_is_named(tmp_path):
    with pytest.raises(TypeError, match=r"pair \(x, y\) of arrays"):
        expand_mnist.expand(np.zeros((2, 784)))
    with pytest.raises(ValueError, match=r"shapes \(2, 784\) and \(3,\)"):
        expand_mnist.expand((np.zeros((2, 784)), np.zeros(3, int)))
    with pytest.raises(ValueError, match="images must be square.*got 780"):
        expand_mnist.expand((np.zeros((2, 780)), np.zeros(2, int)))
    with pytest.raises(TypeError, match="labels have dtype float64"):
        expand_mnist.expand((np.zeros((2, 784)), np.zeros(2)))
    with pytest.raises(ValueError, match="seed must be >= 0"):
        expand_mnist.expand((np.zeros((2, 784)), np.zeros(2, int)), seed=-1)
    with pytest.raises(ValueError, match="axis must be 0 or 1"):
        expand_mnist.shift_images(np.zeros((1, 3, 3)), 2, 1)
    small = (np.zeros((2, 4)), np.zeros(2, int))
    with pytest.raises(ValueError, match="differ in size"):
        expand_mnist.save(str(tmp_path / "x.pkl.gz"), small, small,
                          (np.zeros((1, 9)), np.zeros(1, int)))
