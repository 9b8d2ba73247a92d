"""Speed of learning per layer in a deep sigmoid network (the vanishing gradient)."""
import random

import numpy as np
import pytest

from nndl_fast import vanishing
from nndl_fast.reference import network2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_norms_shrink_toward_the_input_at_initialisation(mnist_wrapped, seed):
    net = vanishing.deep_network(seed=seed)
    assert net.sizes == list(vanishing.DEEP_SIZES)
    norms = vanishing.speed_of_learning(net, mnist_wrapped[0][:300])
    assert norms.shape == (5,)
    assert np.all(np.diff(norms) > 0), norms
    # Not a marginal effect: the first hidden layer learns far slower than the fourth.
    assert norms[3] / norms[0] > 10


def test_average_is_the_mean_of_backprop(mnist_wrapped):
    np.random.seed(7)
    net = network2.Network([784, 8, 10])
    data = mnist_wrapped[0][:3]
    grads = vanishing.average_bias_gradient(net, data)
    expected = [sum(net.backprop(x, y)[0][l] for x, y in data) / 3 for l in range(2)]
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-14)
    # Int labels are taken as one-hot targets.
    labelled = [(x, int(np.argmax(y))) for x, y in data]
    np.testing.assert_allclose(vanishing.speed_of_learning(net, labelled),
                               [np.linalg.norm(e) for e in expected], rtol=1e-14)


def test_tracking_during_training(mnist_wrapped):
    def run():
        random.seed(0)
        net = vanishing.deep_network(seed=3)
        initial = vanishing.speed_of_learning(net, mnist_wrapped[0][:100])
        history = vanishing.track_speed_of_learning(net, list(mnist_wrapped[0][:100]),
                                                    2, 10, 0.1)
        return initial, history

    initial, history = run()
    assert history.shape == (3, 5)
    np.testing.assert_array_equal(history[0], initial)
    assert not np.allclose(history[1], history[0])
    assert np.all(np.isfinite(history)) and np.all(history > 0)
    np.testing.assert_array_equal(run()[1], history)       # seeded: reproducible


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    history = np.array([[0.003, 0.015, 0.06, 0.33, 1.5], [0.001, 0.004, 0.02, 0.1, 0.5]])
    path = tmp_path / "speed.png"
    vanishing.plot_speed_of_learning(history, str(path), include_output=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    with pytest.raises(ValueError, match="history must have shape"):
        vanishing.plot_speed_of_learning(np.ones((2, 2, 2)), str(tmp_path / "x.png"))


def test_bad_input_is_named(mnist_wrapped):
    net = vanishing.deep_network([4, 3, 2], seed=0)
    with pytest.raises(ValueError, match="non-empty list of"):
        vanishing.speed_of_learning(net, [])
    with pytest.raises(ValueError, match=r"input 0 must be an array of shape \(4, 1\)"):
        vanishing.speed_of_learning(net, [(np.zeros(4), 0)])
    with pytest.raises(ValueError, match=r"label 0 is 7, expected 0..1"):
        vanishing.speed_of_learning(net, [(np.zeros((4, 1)), 7)])
    with pytest.raises(TypeError, match="expected a network with biases and backprop"):
        vanishing.speed_of_learning(object(), [(np.zeros((4, 1)), 0)])
    with pytest.raises(TypeError, match="training_data must be a list"):
        vanishing.track_speed_of_learning(net, zip([], []), 1, 10, 0.1)
    with pytest.raises(ValueError, match="sizes must list at least 2 layers"):
        vanishing.deep_network([784])


def test_cli(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from nndl_fast import __main__ as cli
    out = tmp_path / "speed.png"
    assert cli.main(["vanishing", "--epochs", "1", "--train-size", "50",
                     "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Speed of learning") and "50 training images" in lines[0]
    first = [float(v) for v in lines[2].split()[1:]]
    assert len(first) == 5 and first == sorted(first)       # grows toward the output
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("cost", ["QuadraticCost", "CrossEntropyCost", "LogLikelihoodCost"])
def test_batched_gradient_matches_backprop_per_example(cost, mnist_wrapped):
    """network2's nets are differentiated by matrix products over all examples at once;
    that equals the mean of the book's backprop(x, y), one example at a time."""
    from nndl_fast import network2
    np.random.seed(3)
    net = network2.Network([784, 20, 15, 10], cost=getattr(network2, cost))
    data = list(mnist_wrapped[0][:150]) + [(x, int(y)) for x, y in mnist_wrapped[1][:50]]
    batched = vanishing.average_bias_gradient(net, data)
    per_example = [np.zeros(b.shape) for b in net.biases]
    for x, y in data:
        t = y if isinstance(y, np.ndarray) else network2.vectorized_result(y)
        for acc, nb in zip(per_example, net.backprop(x, t)[0]):
            acc += nb
    for got, want in zip(batched, per_example):
        np.testing.assert_allclose(got, want / len(data), rtol=1e-10, atol=1e-15)
