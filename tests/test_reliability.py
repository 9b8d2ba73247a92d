"""Determinism under Python threads, the state left by an interrupted SGD, and
numerical stability of the activations for large |z|."""
import builtins
import contextlib
import importlib
import io
import random
import signal
import threading
import warnings

import numpy as np
import pytest

from nndl_fast import _dense, activations, network
from nndl_fast.reference import network as ref1
from nndl_fast.reference import network2 as ref2

N_IN, N_OUT = 784, 10


def _params(net):
    return [w.copy() for w in net.weights + net.biases]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# --- several Python threads training at once ---------------------------------------------

def _identical_examples(seed, n=60):
    """n copies of one (x, y) pair.

    SGD shuffles with the global ``random`` generator, which threads share: how
    their draws interleave depends on scheduling, so each thread's permutation is
    not reproducible. With every example the same, every permutation gives the same
    mini-batches and the same floating-point sums, so the trained weights must not
    depend on the permutation — any difference then comes from the threads
    disturbing one another's computation.
    """
    rng = np.random.default_rng(seed)
    x = rng.random((N_IN, 1)).astype(np.float32)
    y = np.zeros((N_OUT, 1))
    y[seed % N_OUT] = 1.0
    return [(x, y)] * n


def _run_in_threads(target, n):
    """target(k) in n Python threads at once; their exceptions fail the test."""
    errors = []

    def run(k):
        try:
            target(k)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_python_threads_give_the_sequential_results(dtype):
    n_nets = 4
    np.random.seed(3)
    # Built in the main thread: the initial weights come from np.random in order.
    nets = [network.Network([N_IN, 20, 18, N_OUT], dtype=dtype, num_threads=1 + k % 2)
            for k in range(n_nets)]
    initial = [_params(n) for n in nets]
    data = [_identical_examples(k) for k in range(n_nets)]

    barrier = threading.Barrier(n_nets)

    def train(k):
        barrier.wait()
        nets[k].SGD(data[k], 3, 7, 2.0)

    with contextlib.redirect_stdout(io.StringIO()):
        _run_in_threads(train, n_nets)
        for k in range(n_nets):
            seq = network.Network([N_IN, 20, 18, N_OUT], dtype=dtype, num_threads=1)
            seq.weights = [p.copy() for p in initial[k][:3]]
            seq.biases = [p.copy() for p in initial[k][3:]]
            seq.SGD(list(data[k]), 3, 7, 2.0)
            _assert_same(_params(nets[k]), _params(seq))


def test_python_threads_with_private_generators_match_sequential():
    """Distinct examples, shuffled by each network's own generator (``seed=``):
    bitwise the sequential run, at another thread count."""
    n_nets = 3
    nets = [network.Network([N_IN, 17, N_OUT], num_threads=2, seed=100 + k)
            for k in range(n_nets)]
    rng = np.random.default_rng(5)
    data = [[(rng.random((N_IN, 1)).astype(np.float32), np.eye(N_OUT)[:, [i % N_OUT]])
             for i in range(50)] for _ in range(n_nets)]
    inputs = [list(d) for d in data]

    def train(k):
        nets[k].SGD(inputs[k], 2, 6, 1.5)

    with contextlib.redirect_stdout(io.StringIO()):
        _run_in_threads(train, n_nets)
        for k in range(n_nets):
            seq = network.Network([N_IN, 17, N_OUT], num_threads=1, seed=100 + k)
            seq_data = list(data[k])
            seq.SGD(seq_data, 2, 6, 1.5)
            _assert_same(_params(nets[k]), _params(seq))
            assert [id(p) for p in inputs[k]] == [id(p) for p in seq_data]


# --- interrupted training ------------------------------------------------------------------
#
# An epoch is one compiled call that releases the GIL; Python signal handlers
# and the per-epoch print run between those calls. An interrupt therefore leaves
# the weights of the last *completed* epoch (never a partly updated layer), and
# the caller's list holds a permutation of its items: shuffled once per epoch
# started, possibly once more than the epochs completed when the interrupt
# lands between the shuffle and the compiled call.

SIZES = [50, 30, N_OUT]


def _synthetic(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((SIZES[0], 1)), np.eye(N_OUT)[:, [i % N_OUT]]) for i in range(n)]


def _snapshots(data, epochs, seed, sizes=SIZES):
    """Parameters after each epoch of an uninterrupted run (index 0: initial)."""
    np.random.seed(seed)
    random.seed(seed)
    net = network.Network(list(sizes))
    snaps = [_params(net)]
    real_print = builtins.print

    def snap(*args, **kw):
        snaps.append(_params(net))

    builtins.print = snap
    try:
        net.SGD(list(data), epochs, 10, 3.0)
    finally:
        builtins.print = real_print
    return snaps


def test_interrupt_from_print_keeps_last_completed_epoch(monkeypatch):
    data = _synthetic(300)
    snaps = _snapshots(data, 4, seed=2)
    np.random.seed(2)
    random.seed(2)
    net = network.Network(SIZES)
    calls = []

    def interrupting_print(*args, **kw):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(builtins, "print", interrupting_print)
    work = list(data)
    with pytest.raises(KeyboardInterrupt):
        net.SGD(work, 4, 10, 3.0)
    monkeypatch.undo()
    # Epoch 1 finished, its line was being printed: the state after epoch 1.
    _assert_same(_params(net), snaps[2])
    assert sorted(map(id, work)) == sorted(map(id, data))
    # Training goes on from there like an uninterrupted run (same generator state).
    with contextlib.redirect_stdout(io.StringIO()):
        net.SGD(work, 2, 10, 3.0)
    _assert_same(_params(net), snaps[4])


def test_interrupt_from_signal_handler_leaves_a_completed_epoch():
    if not hasattr(signal, "setitimer"):
        pytest.skip("needs signal.setitimer")
    data = _synthetic(2000, seed=1)
    epochs = 30
    snaps = _snapshots(data, epochs, seed=4)
    np.random.seed(4)
    random.seed(4)
    net = network.Network(SIZES)
    work = list(data)

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, handler)
    interrupted = False
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        with contextlib.redirect_stdout(io.StringIO()):
            net.SGD(work, epochs, 10, 3.0)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    params = _params(net)
    matches = [k for k, s in enumerate(snaps)
               if all(np.array_equal(a, b) for a, b in zip(params, s))]
    assert matches, "interrupted network is not in the state of any completed epoch"
    if not interrupted:
        assert matches == [epochs]
    assert sorted(map(id, work)) == sorted(map(id, data))
    assert all(np.isfinite(p).all() for p in params)


# --- numerics: |z| up to 1e4 -----------------------------------------------------------------

Z = np.array([-1e4, -745.2, -88.8, -30.0, -1e-8, 0.0, 1e-8, 30.0, 88.8, 745.2, 1e4])


@contextlib.contextmanager
def strict_numerics(**errstate):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(**(errstate or dict(all="raise"))):
            yield


@pytest.mark.parametrize("fn", [network.sigmoid, ref1.sigmoid, ref2.sigmoid,
                                activations.sigmoid if hasattr(activations, "sigmoid")
                                else ref2.sigmoid])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_module_functions_stable(fn, dtype):
    z = Z.astype(dtype).reshape(-1, 1)
    with strict_numerics():
        s = fn(z)
    assert np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()
    assert s[0] == 0 and s[-1] == 1 and s[5] == 0.5
    with strict_numerics():
        sp = network.sigmoid_prime(z)
    assert np.isfinite(sp).all() and (sp >= 0).all() and sp[0] == 0 and sp[-1] == 0


@pytest.mark.parametrize("fn", [activations.tanh, activations.tanh_prime, activations.relu,
                                activations.relu_prime, activations.step,
                                activations.identity])
def test_other_activations_stable(fn):
    with strict_numerics():
        out = fn(Z)
    assert np.isfinite(out).all()


def _softmax_cases():
    return [np.array([[-1e4], [0.0], [1e4]]), np.array([[1e4], [1e4 - 1.0], [-1e4]]),
            np.full((4, 1), -1e4), np.array([[3.0], [1e4]], dtype=np.float32)]


@pytest.mark.parametrize("fn", [activations.softmax, ref2.softmax])
@pytest.mark.parametrize("case", range(4))
def test_softmax_no_overflow_or_nan(fn, case):
    z = _softmax_cases()[case]
    # Underflow to exactly 0 is the right answer for exp(-2e4); see the next test.
    with strict_numerics(over="raise", invalid="raise", divide="raise"):
        s = fn(z)
    assert np.isfinite(s).all() and abs(float(np.sum(s)) - 1.0) < 1e-6


@pytest.mark.xfail(strict=True, raises=FloatingPointError,
                   reason="softmax computes exp(z - max) with numpy's error state, so "
                          "np.errstate(all='raise') turns the harmless underflow of "
                          "exp(-2e4) to 0 into FloatingPointError (activations.softmax "
                          "and reference.network2.softmax)")
@pytest.mark.parametrize("fn", [activations.softmax, ref2.softmax])
def test_softmax_under_errstate_all_raise(fn):
    with strict_numerics():
        fn(np.array([[-1e4], [0.0], [1e4]]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("softmax", [False, True])
def test_compiled_forward_stable_for_large_z(dtype, softmax):
    # z = ±1e4 at every unit of both layers.
    w = [np.full((5, 3), 1e4 / 3, dtype=dtype), np.tile([[1e4], [-1e4]], (1, 5)).astype(dtype)
         / 5 * 2]
    b = [np.zeros((5, 1), dtype), np.zeros((2, 1), dtype)]
    X = np.array([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [0.0, 0.0, 0.0]], dtype=dtype)
    with strict_numerics():
        out = _dense.forward(X, w, b, softmax=softmax)
    assert np.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()
    if softmax:
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("cost", list(_dense.CostKind))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_epoch_finite_with_saturated_units(cost, dtype):
    rng = np.random.default_rng(0)
    w = [(rng.standard_normal((7, 4)) * 1e4).astype(dtype),
         (rng.standard_normal((3, 7)) * 1e4).astype(dtype)]
    b = [np.zeros((7, 1), dtype), np.zeros((3, 1), dtype)]
    X = rng.random((9, 4)).astype(dtype)
    Y = np.eye(3, dtype=dtype)[rng.integers(0, 3, 9)]
    with strict_numerics():
        _dense.train_epoch(X, Y, np.arange(9), w, b, 4, 0.5, lmbda=0.1, n_total=9.0,
                           cost=int(cost))
    assert all(np.isfinite(p).all() for p in w + b)


@pytest.mark.parametrize("threads", [1, 2])
def test_float32_epoch_flushes_subnormals_and_restores_the_fp_state(threads):
    """Float32 epochs treat subnormal numbers as zero (their slow path would
    otherwise dominate once sigmoids saturate), the same in every thread, and
    leave the caller's floating-point state as it was."""
    tiny = np.float32(1e-39)                    # subnormal in float32
    rng = np.random.default_rng(1)
    X = rng.random((40, 30)).astype(np.float32)
    X[:, :5] = tiny                             # subnormal inputs
    Y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 40)]
    runs = []
    for nt in (1, threads):
        w = [rng.standard_normal((20, 30)).astype(np.float32) * 0 + 0.1,
             np.full((4, 20), 0.1, np.float32)]
        b = [np.zeros((20, 1), np.float32), np.zeros((4, 1), np.float32)]
        _dense.train_epoch(X, Y, np.arange(40), w, b, 8, 0.5, num_threads=nt)
        runs.append(w + b)
        assert all(np.isfinite(p).all() for p in w + b)
    _assert_same(runs[0], runs[1])
    # Subnormal arithmetic works again in this thread afterwards.
    assert np.array([tiny], np.float32)[0] * np.float32(1.0) == tiny
    assert (np.array([tiny], np.float32) * np.float32(1.0))[0] != 0


def test_network_feedforward_large_inputs(capsys):
    np.random.seed(0)
    net = network.Network([3, 4, 2])
    with strict_numerics():
        out = net.feedforward(np.array([[1e4], [-1e4], [1e4]]))
        ref = ref1.Network.feedforward(net, np.array([[1e4], [-1e4], [1e4]]))
    np.testing.assert_allclose(out, ref, rtol=1e-12)


def _cost_modules():
    mods = [ref2]
    try:
        mods.append(importlib.import_module("nndl_fast.network2"))
    except ImportError:
        pass
    return mods


@pytest.mark.parametrize("mod", _cost_modules(), ids=lambda m: m.__name__)
def test_cross_entropy_finite_where_the_book_uses_nan_to_num(mod):
    # One saturated wrong output: the book's nan_to_num gives the largest float.
    a = np.array([[0.0], [0.5], [1.0]])
    y = np.array([[1.0], [1.0], [1.0]])
    with strict_numerics():
        c = mod.CrossEntropyCost.fn(a, y)
        assert np.isfinite(c)
        # 0·log 0 terms count as 0.
        assert mod.CrossEntropyCost.fn(np.array([[1.0], [0.0]]), np.array([[1.0], [0.0]])) == 0
        assert np.isfinite(mod.LogLikelihoodCost.fn(np.array([[0.0], [1.0]]),
                                                    np.array([[1.0], [0.0]])))


@pytest.mark.xfail(strict=True, raises=(FloatingPointError, RuntimeWarning),
                   reason="CrossEntropyCost.fn sums nan_to_num(inf) = 1.8e308 terms: two "
                          "saturated wrong outputs overflow the sum to inf (the book's "
                          "code does the same, with a RuntimeWarning)")
@pytest.mark.parametrize("mod", _cost_modules(), ids=lambda m: m.__name__)
def test_cross_entropy_two_saturated_outputs(mod):
    with strict_numerics():
        c = mod.CrossEntropyCost.fn(np.array([[0.0], [1.0]]), np.array([[1.0], [0.0]]))
    assert np.isfinite(c)
