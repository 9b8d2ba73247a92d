"""Property tests: the compiled kernels against the NumPy reference over random
small problems, and the validation layer against random garbage.

Few examples each (the suite must stay fast on two shared cores); hypothesis
shrinks any failure to a minimal network.
"""
import contextlib
import io
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from nndl_fast import _dense, _packing, _shuffle, network
from nndl_fast._validation import pack_pairs
from nndl_fast.reference import network2 as ref2

FAST = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

COSTS = {
    _dense.CostKind.QUADRATIC: ref2.QuadraticCost,
    _dense.CostKind.CROSS_ENTROPY: ref2.CrossEntropyCost,
    _dense.CostKind.LOG_LIKELIHOOD: ref2.LogLikelihoodCost,
}
REGS = {_dense.Regularization.L2: "L2", _dense.Regularization.L1: "L1"}
TOL = {np.float64: dict(rtol=1e-9, atol=1e-12), np.float32: dict(rtol=2e-4, atol=2e-5)}


@st.composite
def dense_problems(draw):
    """A small network, data, an order and the epoch's hyper-parameters."""
    n_layers = draw(st.integers(1, 3))
    # Widths around 16 cross the kernel's block boundary.
    sizes = [draw(st.integers(1, 20)) for _ in range(n_layers + 1)]
    n = draw(st.integers(1, 25))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    x_dtype = draw(st.sampled_from([dtype, np.float32]))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((b, a)).astype(dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rng.standard_normal((b, 1)).astype(dtype) for b in sizes[1:]]
    X = rng.random((n, sizes[0])).astype(x_dtype)
    cost = draw(st.sampled_from(list(COSTS)))
    if cost == _dense.CostKind.LOG_LIKELIHOOD:
        Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
    else:
        Y = rng.random((n, sizes[-1])).astype(dtype)
    # An epoch may visit a subset of the rows, some twice (update_mini_batch does).
    n_order = draw(st.integers(1, 2 * n))
    order = rng.integers(0, n, n_order) if draw(st.booleans()) else rng.permutation(n)
    return dict(
        sizes=sizes, dtype=dtype, X=X, Y=Y, order=order.astype(np.int64),
        weights=weights, biases=biases, cost=cost,
        mbs=draw(st.integers(1, len(order) + 3)),
        eta=draw(st.sampled_from([0.05, 0.5, 3.0])),
        lmbda=draw(st.sampled_from([0.0, 0.1, 5.0])),
        n_total=float(draw(st.integers(1, 100))),
        reg=draw(st.sampled_from(list(REGS))),
        momentum=draw(st.sampled_from([0.0, 0.0, 0.5, 0.9])),
    )


def _reference_epoch(p):
    """The epoch run by network2's reference update_mini_batch, in float64."""
    net = ref2.Network(p["sizes"], cost=COSTS[p["cost"]])
    net.weights = [w.astype(np.float64) for w in p["weights"]]
    net.biases = [b.astype(np.float64) for b in p["biases"]]
    X = p["X"].astype(np.float64)
    Y = p["Y"].astype(np.float64)
    pairs = [(X[i].reshape(-1, 1), Y[i].reshape(-1, 1)) for i in p["order"]]
    mbs = p["mbs"]
    for k in range(0, len(pairs), mbs):
        net.update_mini_batch(pairs[k:k + mbs], p["eta"], p["lmbda"], p["n_total"],
                              regularization=REGS[p["reg"]], momentum=p["momentum"])
    velocities = getattr(net, "_velocities", None)
    return net.weights, net.biases, velocities


def _compiled_epoch(p, num_threads):
    weights = [w.copy() for w in p["weights"]]
    biases = [b.copy() for b in p["biases"]]
    vw = [np.zeros_like(w) for w in weights]
    vb = [np.zeros_like(b) for b in biases]
    _dense.train_epoch(p["X"], p["Y"], p["order"], weights, biases, p["mbs"], p["eta"],
                       lmbda=p["lmbda"], n_total=p["n_total"], cost=p["cost"], reg=p["reg"],
                       momentum=p["momentum"], velocities_w=vw, velocities_b=vb,
                       num_threads=num_threads)
    return weights, biases, (vw, vb)


@FAST
@given(p=dense_problems(), num_threads=st.sampled_from([1, 2, 3]))
def test_train_epoch_matches_reference(p, num_threads):
    w_ref, b_ref, v_ref = _reference_epoch(p)
    w, b, (vw, vb) = _compiled_epoch(p, num_threads)
    tol = TOL[p["dtype"]]
    # Single-precision rounding grows with the size of the updates.
    scale = 1.0 if p["dtype"] == np.float64 else 1.0 + p["eta"] * len(p["order"]) / p["mbs"]
    for got, want in zip(w + b, w_ref + b_ref):
        assert got.dtype == p["dtype"]
        np.testing.assert_allclose(got, want, rtol=tol["rtol"] * scale, atol=tol["atol"] * scale)
    if p["momentum"]:
        for got, want in zip(vw + vb, v_ref[0] + v_ref[1]):
            np.testing.assert_allclose(got, want, rtol=tol["rtol"] * scale,
                                       atol=tol["atol"] * scale)


@FAST
@given(p=dense_problems())
def test_train_epoch_bitwise_independent_of_thread_count(p):
    w1, b1, v1 = _compiled_epoch(p, 1)
    for nt in (2, 4):
        w, b, v = _compiled_epoch(p, nt)
        for got, want in zip(w + b + v[0] + v[1], w1 + b1 + v1[0] + v1[1]):
            np.testing.assert_array_equal(got, want)


def _reference_forward(X, weights, biases, softmax):
    a = X.astype(np.float64).T
    for l, (w, b) in enumerate(zip(weights, biases)):
        z = w.astype(np.float64) @ a + b.astype(np.float64)
        if softmax and l == len(weights) - 1:
            e = np.exp(z - z.max(axis=0))
            a = e / e.sum(axis=0)
        else:
            a = ref2.sigmoid(z)
    return a.T


@FAST
@given(p=dense_problems(), softmax=st.booleans(), chunk=st.integers(1, 40),
       num_threads=st.sampled_from([1, 3]), scale=st.sampled_from([1.0, 50.0]))
def test_forward_matches_reference(p, softmax, chunk, num_threads, scale):
    dtype = p["dtype"]
    X = (p["X"] * scale).astype(dtype)
    out = _dense.forward(X, p["weights"], p["biases"], softmax=softmax,
                         num_threads=num_threads, chunk=chunk)
    assert out.shape == (X.shape[0], p["sizes"][-1]) and out.dtype == dtype
    want = _reference_forward(X, p["weights"], p["biases"], softmax)
    np.testing.assert_allclose(out, want, **TOL[dtype])
    assert np.isfinite(out).all()


ENTRIES = st.sampled_from([0.0, -0.0, 0.25, 0.5, 1.0, np.inf, -np.inf, np.nan])


@FAST
@given(n=st.integers(0, 30), k=st.integers(1, 12), threads=st.sampled_from([1, 2]),
       data=st.data())
def test_count_correct_is_numpys_argmax_count(n, k, threads, data):
    # Few distinct values: ties, signed zeros, infinities and NaNs in most rows.
    A = np.array(data.draw(st.lists(ENTRIES, min_size=n * k, max_size=n * k)),
                 dtype=np.float64).reshape(n, k)
    A = np.tile(A, (200, 1))         # past the size that starts the thread team
    labels = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)),
                      dtype=np.int64)
    labels = np.tile(labels, 200)
    want = int(np.count_nonzero(np.argmax(A, axis=1) == labels)) if n else 0
    assert _dense.count_correct(A, labels, threads) == want
    assert _dense.count_correct(A, np.argmax(A, axis=1) if n else labels, threads) == n * 200


def test_count_correct_refuses_what_it_cannot_count():
    A = np.zeros((3, 4))
    with pytest.raises(TypeError, match="float64"):
        _dense.count_correct(A.astype(np.float32), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="no columns"):
        _dense.count_correct(np.zeros((3, 0)), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="expected 3 int labels"):
        _dense.count_correct(A, np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="expected 3 int labels"):
        _dense.count_correct(A, np.zeros(3))
    with pytest.raises(ValueError, match=r"classes in 0..3, got 0..4"):
        _dense.count_correct(A, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="num_threads"):
        _dense.count_correct(A, np.zeros(3, np.int64), 0)


# --- _shuffle -------------------------------------------------------------------------

@FAST
@given(n=st.integers(0, 400), seed=st.integers(0, 2 ** 64), calls=st.integers(1, 3))
def test_shuffle_permutation_tracks_random_shuffle_over_calls(n, seed, calls):
    a, b = random.Random(seed), random.Random(seed)
    items = list(range(n))
    mirror = list(range(n))
    for _ in range(calls):
        a.shuffle(items)
        _shuffle.apply_permutation(mirror, _shuffle.shuffle_permutation(n, b))
        assert mirror == items
    assert a.getstate() == b.getstate()
    # Interleaving other draws keeps the two generators in step too.
    assert a.random() == b.random()


@FAST
@given(n=st.integers(0, 50), data=st.data())
def test_apply_permutation_validates(n, data):
    items = list(range(n))
    perm = np.array(data.draw(st.lists(st.integers(-3, n + 3), min_size=0, max_size=n + 2)),
                    dtype=np.int64)
    valid = len(perm) == n and all(0 <= v < n for v in perm)
    if valid:
        _shuffle.apply_permutation(items, perm)
        assert items == [int(v) for v in perm]
    else:
        with pytest.raises(ValueError):
            _shuffle.apply_permutation(items, perm)
        assert items == list(range(n))


class _FakeRng(object):
    def __init__(self, state):
        self.state = state

    def getstate(self):
        return self.state

    def setstate(self, state):
        self.state = state


@FAST
@given(index=st.integers(-2 ** 40, 2 ** 40), word=st.integers(-2 ** 40, 2 ** 40),
       version=st.sampled_from([2, 3]))
def test_shuffle_refuses_corrupt_generator_state(index, word, version):
    words = (word,) + (1,) * 623
    rng = _FakeRng((version, words + (index,), None))
    ok = version == 3 and 0 <= word < 2 ** 32 and 0 <= index <= 624
    if ok:
        perm = _shuffle.shuffle_permutation(20, rng)
        assert sorted(perm) == list(range(20))
    else:
        with pytest.raises(ValueError):
            _shuffle.shuffle_permutation(20, rng)


# --- _packing -------------------------------------------------------------------------

@st.composite
def column_lists(draw):
    n_rows = draw(st.integers(1, 12))
    n = draw(st.integers(0, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 31 - 1)))
    cols = []
    for _ in range(n):
        dtype = np.dtype(draw(st.sampled_from(["<f8", ">f8", "<f4", ">f4"])))
        layout = draw(st.sampled_from(["c", "strided", "fortran", "readonly"]))
        base = rng.standard_normal(n_rows * 3)
        if layout == "strided":
            col = base.astype(dtype)[::3].reshape(n_rows, 1)
        elif layout == "fortran":
            col = np.asfortranarray(base[:n_rows].reshape(n_rows, 1).astype(dtype))
        else:
            col = base[:n_rows].reshape(n_rows, 1).astype(dtype)
            if layout == "readonly":
                col.setflags(write=False)
        cols.append(col)
    return n_rows, cols


@FAST
@given(cl=column_lists(), which=st.sampled_from([0, 1]), out_dtype=st.sampled_from([None, np.float64, np.float32]))
def test_pack_pairs_equals_numpy_stack(cl, which, out_dtype):
    n_rows, cols = cl
    pairs = [(c, c) if which == 0 else (None, c) for c in cols]
    M = pack_pairs(pairs, which, n_rows, "input", "data", dtype=out_dtype)
    want = np.array([c[:, 0].astype(np.float64) for c in cols]).reshape(len(cols), n_rows)
    assert M.shape == (len(cols), n_rows) and M.flags.c_contiguous
    if out_dtype is None and M.dtype == np.float32:
        # Kept in single precision only when that is exact.
        assert all(c.dtype.itemsize == 4 for c in cols)
    if M.dtype == np.float64:
        np.testing.assert_array_equal(M, want.astype(np.float64))
    else:
        np.testing.assert_array_equal(M, want.astype(np.float32))


GARBAGE = st.one_of(
    st.none(), st.integers(), st.floats(), st.text(max_size=3), st.binary(max_size=3),
    st.just(np.zeros((3, 1), dtype=np.int64)), st.just(np.zeros((3, 1), dtype=complex)),
    st.just(np.zeros((3, 1), dtype=object)), st.just(np.zeros((3,))),
    st.just(np.zeros((1, 3))), st.just(np.zeros((3, 1, 1))), st.just(np.array(3.0)),
    st.just(np.zeros((0, 1))), st.just(np.array([[1.0], [np.nan], [0.0]])),
    st.just(np.array([[np.inf], [0.0], [0.0]], dtype=np.float32)),
    st.just(np.zeros((3, 1))), st.just(np.zeros((3, 1), dtype=np.float32)),
    st.lists(st.floats(), max_size=4), st.tuples(st.integers(), st.integers()),
)


@FAST
@given(items=st.lists(st.one_of(GARBAGE, st.tuples(GARBAGE, GARBAGE),
                                st.lists(GARBAGE, min_size=2, max_size=2)), max_size=4),
       which=st.sampled_from([0, 1]))
def test_pack_pairs_garbage_only_raises_documented_errors(items, which):
    try:
        M = pack_pairs(items, which, 3, "input", "data")
    except (TypeError, ValueError):
        return
    assert M.shape == (len(items), 3) and np.isfinite(M).all()


# --- the network's public entry points on garbage --------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=2),
                    st.complex_numbers(max_magnitude=3), st.just(np.float32(1.5)),
                    st.just(np.int64(3)), st.just([]), st.just(np.zeros(2)))


@FAST
@given(sizes=st.one_of(SCALARS, st.lists(SCALARS, max_size=4),
                       st.lists(st.integers(-3, 2 ** 40), max_size=4)))
def test_network_constructor_garbage(sizes):
    try:
        net = network.Network(sizes)
    except (TypeError, ValueError):
        return
    assert net.num_layers == len(net.sizes) >= 2
    assert all(isinstance(s, int) and s >= 1 for s in net.sizes)


@FAST
@given(epochs=SCALARS, mbs=SCALARS, eta=SCALARS,
       data=st.one_of(SCALARS, st.lists(st.one_of(GARBAGE, st.tuples(GARBAGE, GARBAGE)),
                                        max_size=3)),
       test_data=st.one_of(st.none(), st.lists(st.tuples(GARBAGE, SCALARS), max_size=2)))
def test_sgd_garbage_only_raises_documented_errors(epochs, mbs, eta, data, test_data):
    np.random.seed(0)
    net = network.Network([3, 4, 3])
    before = [w.copy() for w in net.weights]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            net.SGD(data, epochs, mbs, eta, test_data=test_data)
    except (TypeError, ValueError):
        # Validation runs before any training: nothing changed.
        for w, w0 in zip(net.weights, before):
            np.testing.assert_array_equal(w, w0)
        return
    assert all(np.isfinite(w).all() for w in net.weights)


@FAST
@given(a=st.one_of(GARBAGE, SCALARS, st.lists(st.lists(st.floats(), max_size=2), max_size=4)))
def test_feedforward_and_evaluate_garbage(a):
    np.random.seed(0)
    net = network.Network([3, 4, 3])
    try:
        out = net.feedforward(a)
    except (TypeError, ValueError):
        pass
    else:
        assert np.isfinite(out).all()
    try:
        net.evaluate([(a, 1)])
    except (TypeError, ValueError):
        pass
