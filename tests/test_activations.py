"""Activation functions: values, derivatives, stability at |z| ~ 1e4, the doctest example."""
import doctest
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nndl_fast import activations as act
from nndl_fast import network

ELEMENTWISE = ["step", "sigmoid", "tanh", "relu", "identity"]


def test_sigmoid_is_the_networks_sigmoid():
    assert act.sigmoid is network.sigmoid
    assert act.sigmoid_prime is network.sigmoid_prime
    z = np.linspace(-30, 30, 101)
    np.testing.assert_allclose(act.sigmoid(z), 1.0 / (1.0 + np.exp(-z)), rtol=1e-15)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_derivatives_match_central_differences(name):
    fn, prime = act.ACTIVATIONS[name]
    rng = np.random.default_rng(1)
    z = rng.uniform(-4, 4, size=(5, 7))
    z[np.abs(z) < 1e-3] = 0.5      # step and ReLU have a kink at 0
    h = 1e-6
    numeric = (fn(z + h) - fn(z - h)) / (2 * h)
    np.testing.assert_allclose(prime(z), numeric, rtol=1e-7, atol=1e-8)
    assert fn(z).shape == z.shape and prime(z).shape == z.shape


def test_known_values():
    z = np.array([-2.0, -0.0, 0.0, 3.0])
    assert act.step(z).tolist() == [0, 0, 0, 1]
    assert act.relu(z).tolist() == [0, 0, 0, 3]
    assert act.relu_prime(z).tolist() == [0, 0, 0, 1]
    assert act.identity(z).tolist() == z.tolist()
    np.testing.assert_allclose(act.tanh(z), np.tanh(z))
    assert act.sigmoid(0.0) == 0.5 and act.sigmoid_prime(0.0) == 0.25


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_overflow_for_large_inputs(dtype):
    z = np.array([-1e5, -1e4, -800.0, -1.0, 0.0, 1.0, 800.0, 1e4, 1e5], dtype=dtype)
    # Underflow to 0 is the right answer (numpy ignores it by default); overflow,
    # invalid operations and division by zero must not happen.
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        for name in ELEMENTWISE:
            fn, prime = act.ACTIVATIONS[name]
            assert np.isfinite(fn(z)).all(), name
            assert np.isfinite(prime(z)).all(), name
        s = act.softmax(z)
        jac = act.softmax_jacobian(z)
    assert act.sigmoid(z)[1] == 0.0 and act.sigmoid(z)[-2] == 1.0
    assert act.tanh(z)[1] == -1.0 and act.tanh(z)[-2] == 1.0
    assert np.isfinite(s).all() and abs(float(s.sum()) - 1.0) < 1e-6
    assert s[-1] == pytest.approx(1.0) and np.isfinite(jac).all()


def test_float32_kept_ints_promoted():
    assert act.relu(np.ones(3, np.float32)).dtype == np.float32
    assert act.softmax(np.ones(3, np.float32)).dtype == np.float32
    assert act.step(np.array([1, -1])).dtype == np.float64


def test_softmax_axis_and_shift_invariance():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((4, 6))
    naive0 = np.exp(z) / np.exp(z).sum(axis=0, keepdims=True)
    naive1 = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(act.softmax(z), naive0, rtol=1e-13)
    np.testing.assert_allclose(act.softmax(z, axis=1), naive1, rtol=1e-13)
    np.testing.assert_allclose(act.softmax(z, axis=-1), naive1, rtol=1e-13)
    np.testing.assert_allclose(act.softmax(z + 1234.5), naive0, rtol=1e-9)


def test_softmax_jacobian_matches_central_differences():
    rng = np.random.default_rng(3)
    z = rng.standard_normal(5)
    h = 1e-6
    numeric = np.empty((5, 5))
    for j in range(5):
        e = np.zeros(5)
        e[j] = h
        numeric[:, j] = (act.softmax(z + e) - act.softmax(z - e)) / (2 * h)
    jac = act.softmax_jacobian(z)
    np.testing.assert_allclose(jac, numeric, rtol=1e-7, atol=1e-10)
    # A column gives the same matrix; a batch of rows gives one matrix per row.
    np.testing.assert_allclose(act.softmax_jacobian(z.reshape(5, 1)), jac, rtol=1e-15)
    batch = np.stack([z, 2 * z])
    jacs = act.softmax_jacobian(batch, axis=1)
    assert jacs.shape == (2, 5, 5)
    np.testing.assert_allclose(jacs[1], act.softmax_jacobian(2 * z), rtol=1e-15)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                  elements=st.floats(-1e4, 1e4)))
def test_softmax_is_a_distribution(z):
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = act.softmax(z, axis=z.ndim - 1)
    assert ((s >= 0) & (s <= 1)).all()
    np.testing.assert_allclose(s.sum(axis=-1), 1.0, rtol=1e-12)
    top = np.argmax(z, axis=-1)[..., None]
    np.testing.assert_array_equal(np.take_along_axis(s, top, axis=-1)[..., 0], s.max(axis=-1))


def test_three_layer_example():
    y = act.forward(act.init_network(), np.array([1.0, 0.5]))
    np.testing.assert_allclose(y, [0.31682708, 0.69627909], atol=5e-9)
    batch = act.forward(act.init_network(), np.array([[1.0, 0.5], [1.0, 0.5]]))
    np.testing.assert_allclose(batch, [y, y], rtol=1e-15)


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="expected real numbers, got an array of dtype <U"):
        act.relu(["a", "b"])
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        act.softmax(np.ones((2, 2)), axis=2)
    with pytest.raises(ValueError, match="scalar"):
        act.softmax(1.0)
    with pytest.raises(ValueError, match=r"expected \(2,\) or \(n, 2\)"):
        act.forward(act.init_network(), np.ones(3))
    with pytest.raises(KeyError, match="W3"):
        act.forward({"W1": 1, "b1": 1, "W2": 1, "b2": 1}, np.ones(2))


def test_module_doctests():
    result = doctest.testmod(act)
    assert result.attempted >= 4 and result.failed == 0
