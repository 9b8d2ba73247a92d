"""The thread contract (docs/threads.md): calls from several Python threads on one
network run one at a time, each on the parameters the previous call left;
separate networks train at once with the results they would have alone."""
import contextlib
import io
import random
import threading

import numpy as np
import pytest

from nndl_fast import network, network2
from nndl_fast import network3 as N3

N_THREADS = 4


def _run_in_threads(targets):
    """Each target() in its own thread, started together; their exceptions fail the test."""
    errors = []
    barrier = threading.Barrier(len(targets))

    def run(target):
        try:
            barrier.wait()
            target()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    with contextlib.redirect_stdout(io.StringIO()):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors


# --- one network, several threads ---------------------------------------------------------

def _dense_data(n=40, n_in=30, n_out=5, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((n_in, 1)), np.eye(n_out)[:, [i % n_out]]) for i in range(n)]


def _conv_net(seed=2, **kw):
    np.random.seed(seed)
    return N3.Network([N3.ConvPoolLayer((4, 1, 3, 3), (5, 1, 10, 10), (2, 2)),
                       N3.FullyConnectedLayer(4 * 4 * 4, 12, N3.tanh, p_dropout=0.2),
                       N3.SoftmaxLayer(12, 5)], 5, num_threads=2, **kw)


def _conv_data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 100)).astype(np.float32), rng.integers(0, 5, n)


def _chapter(name):
    """(build(), train(net, k) for thread k, outputs(net)) of one chapter's network."""
    if name == "network3":
        x, y = _conv_data()
        return (_conv_net,
                lambda net, k: net.SGD((x, y), 1, 5, 0.2, (x[:50], y[:50]), None, lmbda=0.1),
                lambda net: net.predict_proba(x[:20]))
    columns = np.random.default_rng(9).random((30, 20))
    if name == "network":
        def build():
            np.random.seed(4)
            return network.Network([30, 16, 5], num_threads=2)
        return (build, lambda net, k: net.SGD(_dense_data(), 1, 4, 2.0),
                lambda net: net.feedforward(columns))

    def build2():
        np.random.seed(4)
        return network2.Network([30, 16, 5], num_threads=2)
    return (build2,
            lambda net, k: net.SGD(_dense_data(), 1, 4, 0.5, lmbda=1.0,
                                   evaluation_data=_dense_data(10, seed=1),
                                   monitor_evaluation_accuracy=True),
            lambda net: net.feedforward(columns))


CHAPTERS = ["network", "network2", "network3"]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_concurrent_sgd_calls_on_one_network_equal_sequential_calls(chapter):
    """N threads call SGD on the same network at once: the calls run one after
    another, so the network ends as after N sequential calls. (Every call gets its
    own copy of the data, with equal contents, so the order does not matter; the
    shuffles draw from the global ``random`` in turn.)"""
    build, train, outputs = _chapter(chapter)
    random.seed(7)
    seq = build()
    with contextlib.redirect_stdout(io.StringIO()):
        for k in range(N_THREADS):
            train(seq, k)
    random.seed(7)
    net = build()
    _run_in_threads([lambda k=k: train(net, k) for k in range(N_THREADS)])
    np.testing.assert_array_equal(outputs(net), outputs(seq))
    if chapter == "network3":
        assert net.step == seq.step == N_THREADS * 40


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_reads_during_training_see_the_parameters_between_calls(chapter):
    """One thread trains (several SGD calls), others read the outputs meanwhile:
    every output read is the network's output before or after a whole call, never
    a half-updated network."""
    build, train, outputs = _chapter(chapter)
    net = build()
    n_calls = 6
    snapshots = [outputs(net)]
    done = threading.Event()

    def trainer():
        try:
            for k in range(n_calls):
                with net.lock:       # the call and its snapshot together
                    train(net, k)
                    snapshots.append(outputs(net))
        finally:
            done.set()

    seen = [[] for _ in range(2)]

    def reader(r):
        while not done.is_set():
            seen[r].append(outputs(net))

    _run_in_threads([trainer] + [lambda r=r: reader(r) for r in range(len(seen))])
    reads = [o for s in seen for o in s]
    assert reads
    for out in reads:
        assert any(np.array_equal(out, s) for s in snapshots)


def test_lock_is_reentrant_per_network_and_not_pickled():
    import copy
    import pickle
    a, b = _conv_net(), _conv_net()
    assert a.lock is a.lock and a.lock is not b.lock
    with a.lock:
        x, _ = _conv_data(10)
        a.predict(x)                       # re-entrant: a public call inside the lock
        assert b.lock.acquire(blocking=False)   # other networks are not held
        b.lock.release()
    c = pickle.loads(pickle.dumps(a))
    d = copy.deepcopy(a)
    assert c.lock is not a.lock and d.lock is not a.lock
    np.testing.assert_array_equal(c.predict_proba(x), a.predict_proba(x))


def test_a_call_waits_while_another_thread_holds_the_network():
    net = _conv_net()
    x, _ = _conv_data(10)
    started, finished = threading.Event(), threading.Event()

    def call():
        started.set()
        net.predict(x)
        finished.set()

    with net.lock:
        t = threading.Thread(target=call)
        t.start()
        started.wait(5)
        assert not finished.wait(0.2)      # blocked behind the holder
    t.join(5)
    assert finished.is_set()


# --- separate networks at once ---------------------------------------------------------------

def test_network3_separate_networks_sgd_at_once_equal_sequential():
    x, y = _conv_data(300)
    seeds = range(3)
    seq = [_conv_net(seed=s, dropout_seed=s) for s in seeds]
    with contextlib.redirect_stdout(io.StringIO()):
        for net in seq:
            net.SGD((x, y), 2, 5, 0.2, (x[:50], y[:50]), (x[50:100], y[50:100]))
    par = [_conv_net(seed=s, dropout_seed=s) for s in seeds]
    _run_in_threads([lambda net=net: net.SGD((x, y), 2, 5, 0.2, (x[:50], y[:50]),
                                             (x[50:100], y[50:100])) for net in par])
    for a, b in zip(seq, par):
        for pa, pb in zip(a.params, b.params):
            np.testing.assert_array_equal(pa.get_value(), pb.get_value())
        assert a.best_validation_accuracy == b.best_validation_accuracy


def test_network2_separate_networks_at_once_equal_sequential():
    """Each network shuffles with its own generator (``seed=``; the global ``random``
    would be drawn from in an order the scheduler decides), so each sees the
    permutations it would see alone: bitwise the sequential run, monitors included."""
    n_nets = 3
    data = [_dense_data(seed=k) for k in range(n_nets)]

    def build(k, num_threads):
        return network2.Network([30, 16, 5], num_threads=num_threads, seed=50 + k)

    def train(net, k):
        return net.SGD(list(data[k]), 3, 4, 0.5, lmbda=2.0, evaluation_data=data[k][:10],
                       monitor_evaluation_cost=True, monitor_training_accuracy=True)

    nets = [build(k, 1 + k % 2) for k in range(n_nets)]
    results = [None] * n_nets

    def run(k):
        results[k] = train(nets[k], k)

    _run_in_threads([lambda k=k: run(k) for k in range(n_nets)])
    for k in range(n_nets):
        seq = build(k, 1)
        with contextlib.redirect_stdout(io.StringIO()):
            want = train(seq, k)
        assert results[k] == want
        for a, b in zip(nets[k].weights + nets[k].biases, seq.weights + seq.biases):
            np.testing.assert_array_equal(a, b)
