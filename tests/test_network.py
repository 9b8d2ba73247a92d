"""nndl_fast.network against the reference: same numbers, same shuffles, same output."""
import random

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nndl_fast import _shuffle, network
from nndl_fast.reference import network as ref

# Every test here runs twice: compiled in the main suite, and on the reference
# classes in pure-Python mode (test_fallback.test_purepython_subset).
pytestmark = pytest.mark.purepython


def _train_both(data, sizes, epochs, mbs, eta, test_data=None, seed=0, **kw):
    np.random.seed(seed)
    random.seed(seed + 1)
    r = ref.Network(sizes)
    d_ref = list(data)
    r.SGD(d_ref, epochs, mbs, eta, test_data=test_data)
    state_ref = random.getstate()
    np.random.seed(seed)
    random.seed(seed + 1)
    f = network.Network(sizes, **kw)
    d_fast = list(data)
    f.SGD(d_fast, epochs, mbs, eta, test_data=test_data)
    return r, f, d_ref, d_fast, state_ref


def _max_diff(a_list, b_list):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(a_list, b_list))


@pytest.mark.parametrize("sizes,n,mbs", [
    ([784, 30, 10], 2003, 10),
    ([784, 30, 30, 10], 1001, 10),
    ([784, 10], 1000, 7),
    ([784, 50, 10], 997, 33),
])
def test_same_weights_as_reference(mnist_wrapped, sizes, n, mbs, capsys):
    data = mnist_wrapped[0][:n]
    r, f, d_ref, d_fast, state_ref = _train_both(data, sizes, 2, mbs, 3.0)
    assert _max_diff(r.weights, f.weights) <= 1e-9
    assert _max_diff(r.biases, f.biases) <= 1e-9
    # The caller's list is shuffled exactly as random.shuffle would, and the
    # generator is left in the same state.
    assert all(a is b for a, b in zip(d_ref, d_fast))
    assert random.getstate() == state_ref
    out = capsys.readouterr().out.splitlines()
    assert out == ["Epoch 0 complete", "Epoch 1 complete"] * 2


def test_printed_lines_and_evaluate(mnist_wrapped, capsys):
    data, test = mnist_wrapped[0][:1500], mnist_wrapped[2][:300]
    r, f, _, _, _ = _train_both(data, [784, 20, 10], 2, 10, 3.0, test_data=test)
    ref_lines, fast_lines = np.array_split(capsys.readouterr().out.splitlines(), 2)
    assert list(ref_lines) == list(fast_lines)
    assert fast_lines[0].startswith("Epoch 0: ") and fast_lines[0].endswith(" / 300")
    assert f.evaluate(test) == r.evaluate(test)
    assert isinstance(f.evaluate(test), int)


def test_feedforward_and_backprop_match_reference(mnist_wrapped):
    np.random.seed(2)
    f = network.Network([784, 16, 10])
    r = ref.Network([784, 16, 10])
    r.weights, r.biases = [w.copy() for w in f.weights], [b.copy() for b in f.biases]
    x, y = mnist_wrapped[0][3]
    np.testing.assert_allclose(f.feedforward(x), r.feedforward(x), rtol=1e-12, atol=1e-15)
    assert f.feedforward(x).shape == (10, 1)
    xs = np.hstack([mnist_wrapped[0][i][0] for i in range(5)])
    np.testing.assert_allclose(f.feedforward(xs), r.feedforward(xs), rtol=1e-12, atol=1e-15)
    for a, b in zip(f.backprop(x, y), r.backprop(x, y)):
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(f.cost_derivative(y * 0.5, y), -0.5 * y)
    assert network.sigmoid(0.0) == 0.5 and network.sigmoid_prime(0.0) == 0.25


def test_update_mini_batch_matches_reference(mnist_wrapped):
    np.random.seed(4)
    f = network.Network([784, 12, 10])
    r = ref.Network([784, 12, 10])
    r.weights, r.biases = [w.copy() for w in f.weights], [b.copy() for b in f.biases]
    batch = mnist_wrapped[0][:7]
    f.update_mini_batch(batch, 2.5)
    r.update_mini_batch(batch, 2.5)
    assert _max_diff(f.weights, r.weights) <= 1e-12
    assert _max_diff(f.biases, r.biases) <= 1e-12


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sizes", [[784, 30, 10], [784, 100, 30, 10]])
def test_results_identical_for_any_thread_count(mnist_wrapped, dtype, sizes, capsys):
    data = mnist_wrapped[0][:800]
    results = []
    for nt in (1, 2, 3, 5):
        np.random.seed(9)
        random.seed(9)
        net = network.Network(sizes, dtype=dtype, num_threads=nt)
        net.SGD(list(data), 2, 10, 3.0)
        results.append(net)
    for other in results[1:]:
        for a, b in zip(results[0].weights + results[0].biases, other.weights + other.biases):
            np.testing.assert_array_equal(a, b)


def test_float32_opt_in(mnist_wrapped, capsys):
    data = mnist_wrapped[0][:1000]
    np.random.seed(1)
    random.seed(1)
    f64 = network.Network([784, 30, 10])
    f64.SGD(list(data), 1, 10, 3.0)
    np.random.seed(1)
    random.seed(1)
    f32 = network.Network([784, 30, 10], dtype=np.float32)
    assert all(w.dtype == np.float32 for w in f32.weights + f32.biases)
    f32.SGD(list(data), 1, 10, 3.0)
    assert all(w.dtype == np.float32 for w in f32.weights + f32.biases)
    assert _max_diff(f32.weights, f64.weights) < 1e-3


def test_float64_inputs_accepted(mnist_wrapped, capsys):
    data = [(x.astype(np.float64), y) for x, y in mnist_wrapped[0][:300]]
    data32 = list(mnist_wrapped[0][:300])
    nets = []
    for d in (data, data32):
        np.random.seed(0)
        random.seed(0)
        net = network.Network([784, 10, 10])
        net.SGD(d, 1, 10, 3.0)
        nets.append(net)
    assert _max_diff(nets[0].weights, nets[1].weights) == 0.0


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 3000), seed=st.integers(0, 2 ** 32 - 1))
def test_shuffle_permutation_is_random_shuffle(n, seed):
    a = random.Random(seed)
    b = random.Random(seed)
    items = list(range(n))
    a.shuffle(items)
    perm = _shuffle.shuffle_permutation(n, b)
    assert list(perm) == items
    assert a.getstate() == b.getstate()


def test_input_validation(mnist_wrapped):
    np.random.seed(0)
    net = network.Network([784, 10, 10])
    good = list(mnist_wrapped[0][:20])
    bad = list(good)
    bad[17] = (np.zeros((28, 28), dtype=np.float32), bad[17][1])
    with pytest.raises(ValueError, match=r"training input 17 has shape \(28, 28\), expected \(784, 1\)"):
        net.SGD(bad, 1, 10, 3.0)
    bad = list(good)
    bad[2] = (bad[2][0], 3)
    with pytest.raises((ValueError, TypeError), match="target"):
        net.SGD(bad, 1, 10, 3.0)
    bad = list(good)
    x = bad[5][0].copy()
    x[3, 0] = np.nan
    bad[5] = (x, bad[5][1])
    with pytest.raises(ValueError, match="NaN"):
        net.SGD(bad, 1, 10, 3.0)
    with pytest.raises(ValueError, match="empty"):
        net.SGD([], 1, 10, 3.0)
    with pytest.raises(ValueError, match="mini_batch_size"):
        net.SGD(list(good), 1, 0, 3.0)
    with pytest.raises(TypeError, match="epochs"):
        net.SGD(list(good), 1.5, 10, 3.0)
    with pytest.raises(ValueError, match="eta"):
        net.SGD(list(good), 1, 10, float("nan"))
    with pytest.raises(TypeError, match="list"):
        net.SGD(zip([g[0] for g in good], [g[1] for g in good]), 1, 10, 3.0)
    with pytest.raises(ValueError, match=r"\(784, 1\)"):
        net.feedforward(np.zeros((28, 28)))
    with pytest.raises(ValueError, match="test input 0"):
        net.evaluate([(np.zeros((10, 1)), 3)])
    with pytest.raises((ValueError, TypeError)):
        network.Network([784])
    with pytest.raises(ValueError):
        network.Network([784, 0, 10])
    with pytest.raises(TypeError):
        network.Network([784, 10], dtype=np.int32)
    int_data = [(np.zeros((784, 1), dtype=np.int64), g[1]) for g in good]
    with pytest.raises(TypeError, match="dtype int64"):
        net.SGD(int_data, 1, 10, 3.0)


def test_weights_replaced_by_user_are_validated(mnist_wrapped):
    np.random.seed(0)
    net = network.Network([784, 10, 10])
    net.weights[0] = np.zeros((10, 783))
    with pytest.raises(ValueError, match=r"weights\[0\] has shape \(10, 783\), expected \(10, 784\)"):
        net.SGD(list(mnist_wrapped[0][:20]), 1, 10, 3.0)
