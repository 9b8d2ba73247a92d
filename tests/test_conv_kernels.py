"""Each compiled conv-family kernel against the NumPy reference, on random shapes."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nndl_fast import _convnet
from nndl_fast.reference import network3 as ref

SETTINGS = settings(max_examples=12, deadline=None)
DTYPES = st.sampled_from([np.float32, np.float64])


def tol(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)


@st.composite
def conv_case(draw):
    m = draw(st.integers(1, 4))
    c = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    h = draw(st.integers(kh, kh + 7))
    w = draw(st.integers(kw, kw + 7))
    f = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    return m, c, h, w, f, kh, kw, seed


@SETTINGS
@given(conv_case(), DTYPES, st.sampled_from([1, 2]))
def test_conv_forward_matches_reference(case, dtype, threads):
    m, c, h, w, f, kh, kw, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, c, h, w)).astype(dtype)
    k = rng.standard_normal((f, c, kh, kw)).astype(dtype)
    got = _convnet.conv_forward(x, k, threads)
    np.testing.assert_allclose(got, ref.conv2d_valid(x, k), **tol(dtype))


def test_conv_is_true_convolution():
    # A kernel with a single 1 at its top-left picks the input at the bottom-right
    # of each window (the kernel is flipped, as Theano's conv2d).
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    k = np.zeros((1, 1, 2, 2))
    k[0, 0, 0, 0] = 1.0
    z = _convnet.conv_forward(x, k)
    np.testing.assert_array_equal(z[0, 0], x[0, 0, 1:, 1:])


@SETTINGS
@given(conv_case(), DTYPES, st.sampled_from([1, 2]))
def test_conv_gradients_match_reference(case, dtype, threads):
    m, c, h, w, f, kh, kw, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, c, h, w)).astype(dtype)
    k = rng.standard_normal((f, c, kh, kw)).astype(dtype)
    dz = rng.standard_normal((m, f, h - kh + 1, w - kw + 1)).astype(dtype)
    gw, dx = _convnet.conv_grads(x, k, dz, threads)
    np.testing.assert_allclose(gw, ref.conv2d_grad_filters(x, dz, k.shape), **tol(dtype))
    np.testing.assert_allclose(dx, ref.conv2d_grad_input(dz, k, x.shape), **tol(dtype))


@st.composite
def pool_case(draw):
    ph, pw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    hc = draw(st.integers(ph, 3 * ph + 2))
    wc = draw(st.integers(pw, 3 * pw + 2))
    return draw(st.integers(1, 3)), draw(st.integers(1, 4)), hc, wc, ph, pw, \
        draw(st.integers(0, 2**16)), draw(st.booleans())


@SETTINGS
@given(pool_case(), DTYPES)
def test_pool_forward_backward_match_reference(case, dtype):
    m, f, hc, wc, ph, pw, seed, ties = case
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((m, f, hc, wc)).astype(dtype)
    if ties:  # few distinct values: windows with several maxima
        z = np.round(z).astype(dtype)
    pooled = _convnet.pool_forward(z, (ph, pw))
    np.testing.assert_array_equal(pooled, ref.max_pool(z, (ph, pw)))
    dp = rng.standard_normal(pooled.shape).astype(dtype)
    dz = _convnet.pool_backward(z, pooled, dp, (ph, pw))
    np.testing.assert_array_equal(dz, ref.max_pool_grad(z, pooled, dp, (ph, pw)))


def test_pool_gradient_goes_to_every_tied_maximum():
    z = np.zeros((1, 1, 2, 2))
    pooled = _convnet.pool_forward(z, (2, 2))
    dz = _convnet.pool_backward(z, pooled, np.ones((1, 1, 1, 1)), (2, 2))
    np.testing.assert_array_equal(dz, np.ones((1, 1, 2, 2)))


@SETTINGS
@given(st.integers(1, 12), st.integers(2, 11), DTYPES, st.integers(0, 2**16))
def test_softmax_nll(m, k, dtype, seed):
    rng = np.random.default_rng(seed)
    z = (3 * rng.standard_normal((m, k))).astype(dtype)
    y = rng.integers(0, k, m)
    p, cost, dz = _convnet.softmax_nll(z, y)
    e = np.exp(z.astype(np.float64) - z.max(axis=1, keepdims=True))
    want = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, want, **tol(dtype))
    assert cost == pytest.approx(-np.mean(np.log(want[np.arange(m), y])), rel=1e-4)
    onehot = np.eye(k)[y]
    np.testing.assert_allclose(dz, (want - onehot) / m, **tol(dtype))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_masks_match_reference(p, dtype):
    for layer, step in [(0, 0), (2, 7), (5, 123456789)]:
        got = _convnet.dropout_mask(12345, layer, step, (13, 37), p, dtype)
        want = ref.dropout_mask(12345, layer, step, (13, 37), p, dtype)
        np.testing.assert_array_equal(got, want)
    big = ref.dropout_mask(1, 0, 0, (200, 500), p)
    assert abs(big.mean() - (1 - p)) < 0.01


def test_kernels_reject_bad_shapes():
    with pytest.raises(ValueError):
        _convnet.conv_forward(np.zeros((1, 2, 5, 5)), np.zeros((3, 1, 2, 2)))
    with pytest.raises(ValueError):
        _convnet.softmax_nll(np.zeros((2, 3)), [0, 3])
