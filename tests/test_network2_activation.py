"""network2's hidden layers with any activation of the table (sigmoid, tanh, ReLU,
linear): the compiled kernels against the reference, files and bad input."""
import json
import random

import numpy as np
import pytest

from nndl_fast import _config, _dense, network, network2
from nndl_fast import network3 as n3
from nndl_fast.reference import network2 as ref
from nndl_fast.reference.activations import ACTIVATION_TABLE

# Every test here runs twice: compiled in the main suite, and on the reference
# classes in pure-Python mode (test_fallback.test_purepython_subset).
pytestmark = pytest.mark.purepython

ACTIVATIONS = [entry.name for entry in ACTIVATION_TABLE]
COSTS = [network2.CrossEntropyCost, network2.QuadraticCost, network2.LogLikelihoodCost]


def _train_both(data, sizes, activation, cost, epochs=1, mbs=10, eta=0.05, lmbda=1.0,
                **kw):
    np.random.seed(1)
    random.seed(2)
    r = ref.Network(sizes, cost=cost, activation_fn=activation)
    r.SGD(list(data), epochs, mbs, eta, lmbda=lmbda, **kw)
    np.random.seed(1)
    random.seed(2)
    f = network2.Network(sizes, cost=cost, activation_fn=activation)
    f.SGD(list(data), epochs, mbs, eta, lmbda=lmbda, **kw)
    return r, f


def _max_diff(a_list, b_list):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(a_list, b_list))


@pytest.mark.parametrize("cost", COSTS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_same_weights_as_reference(mnist_wrapped, activation, cost, capsys):
    data, test = mnist_wrapped[0][:1003], mnist_wrapped[2][:300]
    r, f = _train_both(data, [784, 30, 20, 10], activation, cost)
    assert _max_diff(r.weights, f.weights) <= 1e-9
    assert _max_diff(r.biases, f.biases) <= 1e-9
    assert f.accuracy(test) == r.accuracy(test)
    assert abs(f.total_cost(test, 1.0, convert=True)
               - r.total_cost(test, 1.0, convert=True)) <= 1e-9
    x = test[0][0]
    assert np.allclose(f.feedforward(x), r.feedforward(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "ReLU"])
def test_momentum_l1_and_monitors_match_reference(mnist_wrapped, activation, capsys):
    data, evaluation = mnist_wrapped[0][:600], mnist_wrapped[1][:200]
    r, f = _train_both(data, [784, 40, 10], activation, network2.CrossEntropyCost, epochs=2,
                       evaluation_data=evaluation, monitor_evaluation_cost=True,
                       monitor_training_accuracy=True, momentum=0.5, regularization="L1")
    ref_lines, fast_lines = np.array_split(capsys.readouterr().out.splitlines(), 2)
    assert _max_diff(r.weights, f.weights) <= 1e-9
    # Costs are printed to 17 digits: compare the lines as numbers.
    for a, b in zip(ref_lines, fast_lines):
        if a.startswith("Cost"):
            assert abs(float(a.split(": ")[1]) - float(b.split(": ")[1])) <= 1e-9
        else:
            assert a == b


@pytest.mark.parametrize("activation", ["tanh", "ReLU", "linear"])
def test_float32_close_to_reference(mnist_wrapped, activation):
    data = mnist_wrapped[0][:500]
    np.random.seed(1)
    random.seed(2)
    r = ref.Network([784, 30, 10], activation_fn=activation)
    r.SGD(list(data), 1, 10, 0.05)
    np.random.seed(1)
    random.seed(2)
    f = network2.Network([784, 30, 10], dtype=np.float32, activation_fn=activation)
    f.SGD(list(data), 1, 10, 0.05)
    assert f.weights[0].dtype == np.float32
    assert _max_diff(r.weights, f.weights) <= 1e-4


def test_functions_and_names_are_the_same_choice():
    for entry in ACTIVATION_TABLE:
        by_name = network2.Network([4, 3, 2], activation_fn=entry.name)
        by_fn = network2.Network([4, 3, 2], activation_fn=entry.fn)
        assert by_name.activation_fn is by_fn.activation_fn is entry.fn
    # network2's and network3's functions are the table's.
    assert network2.tanh is n3.tanh and network2.ReLU is n3.ReLU
    assert network2.sigmoid is n3.sigmoid
    assert network2.Network([4, 3, 2]).activation_fn is network2.sigmoid


@pytest.mark.parametrize("bad", ["softplus", np.tanh, None, 3])
def test_unknown_activation_is_refused(bad):
    with pytest.raises(ValueError, match="activation must be one of"):
        network2.Network([4, 3, 2], activation_fn=bad)
    with pytest.raises(ValueError, match="activation must be one of"):
        ref.Network([4, 3, 2], activation_fn=bad)


@pytest.mark.skipif(not _config.use_compiled(), reason="compiled kernels only")
def test_kernels_refuse_an_unknown_code():
    w = [np.zeros((3, 4)), np.zeros((2, 3))]
    b = [np.zeros((3, 1)), np.zeros((2, 1))]
    X = np.zeros((5, 4))
    with pytest.raises(ValueError, match="unknown activation code 9"):
        _dense.forward(X, w, b, activation=9)
    with pytest.raises(ValueError, match="output_activation: unknown activation code -1"):
        _dense.forward(X, w, b, output_activation=-1)
    with pytest.raises(ValueError, match="unknown activation code 4"):
        _dense.train_epoch(X, np.zeros((5, 2)), np.arange(5), w, b, 2, 0.1, activation=4)


def test_save_and_load_keep_the_activation(tmp_path, mnist_wrapped):
    np.random.seed(0)
    net = network2.Network([784, 20, 10], activation_fn="ReLU")
    net.SGD(list(mnist_wrapped[0][:200]), 1, 10, 0.1)
    path = tmp_path / "relu.json"
    net.save(str(path))
    assert json.loads(path.read_text())["activation"] == "ReLU"
    for loaded in (network2.load(str(path)), ref.load(str(path))):
        assert loaded.activation_fn is network2.ReLU
        x = mnist_wrapped[2][0][0]
        assert np.allclose(loaded.feedforward(x), net.feedforward(x), rtol=0, atol=1e-12)
    # A chapter-1 network is a sigmoid network: network.load says where to go.
    with pytest.raises(network2.NetworkFileError, match="ReLU hidden layers; network2.load"):
        network.load(str(path))
    # The book's documents (no key) are sigmoid networks, and ours for them too.
    sig = tmp_path / "sigmoid.json"
    network2.Network([4, 3, 2]).save(str(sig))
    assert "activation" not in json.loads(sig.read_text())
    assert network2.load(str(sig)).activation_fn is network2.sigmoid


@pytest.mark.parametrize("value", ["softplus", 3, None])
def test_load_refuses_an_unknown_activation(tmp_path, value):
    path = tmp_path / "net.json"
    network2.Network([4, 3, 2]).save(str(path))
    doc = json.loads(path.read_text())
    doc["activation"] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(network2.NetworkFileError, match="activation must be one of"):
        network2.load(str(path))
