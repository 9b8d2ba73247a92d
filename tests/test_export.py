"""ONNX, PyTorch and safetensors export of every chapter's network, checked against
the networks' own predictions on the 10,000 MNIST test images.

Each test skips when the optional package it needs (onnx + onnxruntime, torch,
safetensors) is not installed.
"""
import contextlib
import io

import numpy as np
import pytest

from nndl_fast import export, mnist_loader, network, network2
from nndl_fast import network3 as n3

PROB_TOL = 1e-5


@pytest.fixture(scope="module")
def mnist():
    """((X_train, y_train), (X_test, y_test)): X float32 (n, 784), y int64."""
    training, _, test = mnist_loader.load_data()
    return training, test


def _quietly(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _dense_training(training, n):
    return [(x.reshape(784, 1), mnist_loader.vectorized_result(int(y)))
            for x, y in zip(training[0][:n], training[1][:n])]


def _chapter6(name):
    """Layers of the chapter-6 nets tested here (mini-batch 10)."""
    if name == "conv-sigmoid":   # the book's first conv net, smaller
        return [n3.ConvPoolLayer(image_shape=(10, 1, 28, 28), filter_shape=(8, 1, 5, 5),
                                 poolsize=(2, 2)),
                n3.FullyConnectedLayer(n_in=8 * 12 * 12, n_out=30),
                n3.SoftmaxLayer(n_in=30, n_out=10)]
    if name == "conv2-relu-tanh-dropout":
        return [n3.ConvPoolLayer(image_shape=(10, 1, 28, 28), filter_shape=(6, 1, 5, 5),
                                 poolsize=(2, 2), activation_fn=n3.ReLU),
                n3.ConvPoolLayer(image_shape=(10, 6, 12, 12), filter_shape=(8, 6, 3, 3),
                                 poolsize=(2, 2), activation_fn=n3.tanh),
                n3.FullyConnectedLayer(n_in=8 * 5 * 5, n_out=40, activation_fn=n3.ReLU,
                                       p_dropout=0.5),
                n3.FullyConnectedLayer(n_in=40, n_out=30, activation_fn=n3.linear,
                                       p_dropout=0.2),
                n3.SoftmaxLayer(n_in=30, n_out=10, p_dropout=0.5)]
    raise ValueError(name)


NETS = ["network", "network2-cross-entropy", "network2-log-likelihood",
        "network2-float32", "network2-relu-log-likelihood", "network2-tanh-float32",
        "network3-conv-sigmoid", "network3-conv2-relu-tanh-dropout"]


@pytest.fixture(scope="module")
def trained(mnist):
    """Networks trained briefly on a few thousand images (non-trivial weights)."""
    training, _ = mnist
    cache = {}

    def get(name):
        if name in cache:
            return cache[name]
        np.random.seed(1)
        import random
        random.seed(1)
        if name == "network":
            net = network.Network([784, 30, 10])
            _quietly(net.SGD, _dense_training(training, 5000), 3, 10, 3.0)
        elif name.startswith("network2"):
            cost = network2.LogLikelihoodCost if "log" in name else network2.CrossEntropyCost
            dtype = np.float32 if "float32" in name else np.float64
            act = "ReLU" if "relu" in name else "tanh" if "tanh" in name else "sigmoid"
            net = network2.Network([784, 30, 10], cost=cost, dtype=dtype, activation_fn=act)
            _quietly(net.SGD, _dense_training(training, 3000), 1, 10,
                     0.5 if act == "sigmoid" else 0.1, lmbda=1.0)
        else:
            net = n3.Network(_chapter6(name[len("network3-"):]), 10)
            data = (training[0][:3000], training[1][:3000].astype(np.int32))
            eta = 0.3 if name.endswith("sigmoid") else 0.05
            _quietly(net.SGD, data, 3, 10, eta, None, None)
        cache[name] = net
        return net
    return get


def _own_probabilities(net, X):
    """The network's own inference output (n, 10) for rows X."""
    if isinstance(net, n3.Network):
        return np.asarray(net.predict_proba(X), dtype=np.float64)
    return net.feedforward(X.T).T


# -------------------------------------------------------------------- ONNX
@pytest.fixture(scope="module")
def ort():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def _run_onnx(ort, model, X):
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"input": X.astype(np.float32)})[0]


@pytest.mark.parametrize("name", NETS)
def test_onnx_matches_the_network_on_the_test_set(ort, mnist, trained, name, tmp_path):
    import onnx
    net = trained(name)
    X, _ = mnist[1]
    path = tmp_path / "net.onnx"
    net.to_onnx(str(path))
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == export.IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", export.OPSET)]
    probs = _run_onnx(ort, model, X)
    own = _own_probabilities(net, X)
    assert probs.shape == own.shape == (10000, 10) and probs.dtype == np.float32
    assert np.abs(probs - own).max() < PROB_TOL
    assert np.array_equal(np.argmax(probs, axis=1), np.argmax(own, axis=1))
    # Trained enough that agreement means something.
    accuracy = np.mean(np.argmax(own, axis=1) == mnist[1][1])
    print("\n%s: max |p_onnx - p_net| %.3g, test accuracy %.4f"
          % (name, np.abs(probs - own).max(), accuracy))
    assert accuracy > 0.5


def test_onnx_flips_the_kernels(ort):
    """One asymmetric kernel: the book's true convolution sees the bottom-right
    pixel, a cross-correlation with the same kernel would not. (A per-filter bias
    commutes with the max, so where it is added changes nothing but rounding.)"""
    np.random.seed(0)
    net = n3.Network([n3.ConvPoolLayer(image_shape=(1, 1, 4, 4), filter_shape=(1, 1, 2, 2),
                                       poolsize=(3, 3), activation_fn=n3.linear),
                      n3.SoftmaxLayer(n_in=1, n_out=2)], 1, dtype=np.float64)
    net.layers[0].w.set_value(np.array([[[[1.0, 0.0], [0.0, 0.0]]]]))
    net.layers[0].b.set_value(np.array([-0.5]))
    net.layers[1].w.set_value(np.array([[1.0, -1.0]]))
    x = np.zeros((1, 16))
    x[0, 15] = 1.0  # only the bottom-right pixel: a flipped kernel at (2, 2) sees it
    own = net.predict_proba(x)
    np.testing.assert_allclose(_run_onnx(ort, net.to_onnx(), x), own, atol=1e-7)
    z = np.log(own[0, 0] / own[0, 1]) / 2  # softmax([z, -z])
    np.testing.assert_allclose(z, 1.0 - 0.5, atol=1e-12)


def test_onnx_refuses_what_it_cannot_express():
    pytest.importorskip("onnx")

    def square(z):
        return z * z
    np.random.seed(0)
    net = n3.Network([n3.FullyConnectedLayer(4, 3, activation_fn=square),
                      n3.SoftmaxLayer(3, 2)], 2)
    with pytest.raises(ValueError, match="activation_fn must be one of network3's"):
        net.to_onnx()

    class OwnCost(network2.CrossEntropyCost):
        pass
    with pytest.raises(ValueError, match="expected a network2 cost among.*got OwnCost"):
        network2.Network([4, 2], cost=OwnCost).to_onnx()
    with pytest.raises(TypeError, match="expected a Network of nndl_fast.network"):
        export.to_onnx(object())


def test_missing_optional_package_names_the_extra(monkeypatch):
    real = export.importlib.import_module

    def no_onnx(name, *args):
        if name.split(".")[0] in ("onnx", "torch"):
            raise ImportError("No module named %r" % name)
        return real(name, *args)
    monkeypatch.setattr(export.importlib, "import_module", no_onnx)
    net = network.Network([4, 2])
    with pytest.raises(ImportError, match=r"pip install 'nndl_fast\[export\]'"):
        net.to_onnx()
    with pytest.raises(ImportError, match=r"pip install 'nndl_fast\[torch\]'"):
        net.to_torch()


# ----------------------------------------------------------------- PyTorch
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _torch_probabilities(torch, module, X):
    dtype = next(module.parameters()).dtype
    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(X)).to(dtype)).double().numpy()


def _same_description(a, b):
    (config_a, arrays_a), (config_b, arrays_b) = export.describe(a), export.describe(b)
    assert config_a == config_b
    for (wa, ba), (wb, bb) in zip(arrays_a, arrays_b):
        assert wa.dtype == wb.dtype and np.array_equal(wa, wb)
        assert ba.dtype == bb.dtype and np.array_equal(ba, bb)


@pytest.mark.parametrize("name", NETS)
def test_torch_module_matches_and_round_trips(torch, mnist, trained, name):
    net = trained(name)
    X = mnist[1][0][:2000]
    module = net.to_torch()
    assert not module.training
    own = _own_probabilities(net, X)
    probs = _torch_probabilities(torch, module, X)
    assert np.abs(probs - own).max() < PROB_TOL
    assert np.array_equal(np.argmax(probs, axis=1), np.argmax(own, axis=1))
    back = export.from_torch(module)
    assert type(back) is type(net)
    _same_description(back, net)


def test_training_goes_on_in_torch_and_comes_back(torch, mnist, trained):
    """A few SGD steps in PyTorch on the book's cost; the network made from the
    module predicts what the module predicts."""
    net = trained("network3-conv2-relu-tanh-dropout")
    module = net.to_torch().train()
    X, y = mnist[0][0][3000:3200], mnist[0][1][3000:3200]
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    torch.manual_seed(0)
    for k in range(0, 200, 10):
        probs = module(torch.from_numpy(X[k:k + 10]))
        loss = torch.nn.functional.nll_loss(torch.log(probs), torch.from_numpy(y[k:k + 10]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    back = export.from_torch(module)
    changed = [not np.array_equal(a[0], b[0]) for a, b in
               zip(export.describe(back)[1], export.describe(net)[1])]
    assert all(changed)
    X_test = mnist[1][0][:1000]
    np.testing.assert_allclose(_own_probabilities(back, X_test),
                               _torch_probabilities(torch, module, X_test), atol=PROB_TOL)


def test_from_torch_checks_the_module(torch):
    np.random.seed(0)
    net = network2.Network([5, 4, 3])
    with pytest.raises(TypeError, match="expected a torch.nn.Module, got"):
        export.from_torch(net)
    plain = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Sigmoid())
    with pytest.raises(ValueError, match="expected a module made by to_torch"):
        export.from_torch(plain)
    # Another module with the same names and shapes, given the layout by like=.
    module = net.to_torch()
    other = type(module)(module.config, export.layer_specs(module.config)).double()
    other.load_state_dict(module.state_dict())
    del other.config
    _same_description(export.from_torch(other, like=net), net)
    with pytest.raises(ValueError, match="expected the parameters"):
        export.from_torch(plain, like=net)
    with torch.no_grad():
        module.layers[1].linear.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="layer 1's weight contains NaN"):
        export.from_torch(module)


def test_save_torch_loads_with_weights_only(torch, trained, tmp_path, mnist):
    net = trained("network3-conv-sigmoid")
    path = tmp_path / "net.pt"
    export.save_torch(net, path)
    data = torch.load(path, weights_only=True)
    assert set(data) == {"config", "state_dict"}
    module = export.load_torch(path)
    X = mnist[1][0][:500]
    assert np.abs(_torch_probabilities(torch, module, X) - _own_probabilities(net, X)).max() \
        < PROB_TOL
    _same_description(export.load_any(path), net)


# ------------------------------------------------------------- safetensors
@pytest.mark.parametrize("name", ["network2-log-likelihood", "network3-conv-sigmoid"])
def test_safetensors_without_torch_and_into_torch(trained, name, tmp_path, mnist):
    pytest.importorskip("safetensors")
    from safetensors.numpy import load_file
    net = trained(name)
    path = tmp_path / "net.safetensors"
    net.save_safetensors(path)
    arrays = load_file(str(path))
    expected = export.state_dict(net)
    assert set(arrays) == set(expected)
    for key in expected:
        assert np.array_equal(arrays[key], expected[key])
    _same_description(export.load_safetensors(path), net)
    _same_description(export.load_any(path), net)
    try:
        import torch
        from safetensors.torch import load_file as load_torch_file
    except ImportError:
        return
    module = net.to_torch()
    for p in module.parameters():
        torch.nn.init.zeros_(p)
    module.load_state_dict(load_torch_file(str(path)))
    X = mnist[1][0][:500]
    assert np.abs(_torch_probabilities(torch, module, X) - _own_probabilities(net, X)).max() \
        < PROB_TOL


@pytest.mark.parametrize("config, arrays, message", [
    ({"format": "keras"}, {}, "expected a config with format nndl_fast.network, network2 or "
                              "network3, got 'keras'"),
    ({"format": "nndl_fast.network2", "sizes": [3, "2"], "cost": "CrossEntropyCost",
      "dtype": "float64"}, {}, r"sizes\[1\] must be an integer"),
    ({"format": "nndl_fast.network2", "sizes": [3, 2], "cost": "eval",
      "dtype": "float64"}, {}, "cost must be one of"),
    ({"format": "nndl_fast.network", "sizes": [3, 2], "cost": "QuadraticCost",
      "dtype": "float64"}, {"layers.0.linear.weight": np.zeros((2, 4)),
                            "layers.0.linear.bias": np.zeros(2)},
     r"layer 0's weight has shape \(2, 4\), expected \(2, 3\)"),
    ({"format": "nndl_fast.network", "sizes": [3, 2], "cost": "QuadraticCost",
      "dtype": "float64"}, {"layers.0.weight": np.zeros((2, 3))}, "expected the parameters"),
    ({"format": "nndl_fast.network3", "layers": []}, {}, "metadata must be an object"),
])
def test_load_safetensors_checks_the_file(tmp_path, config, arrays, message):
    pytest.importorskip("safetensors")
    import json
    from safetensors.numpy import save_file
    path = tmp_path / "bad.safetensors"
    save_file(arrays or {"x": np.zeros(1)}, str(path), metadata={"nndl_fast": json.dumps(config)})
    with pytest.raises(ValueError, match=message) as info:
        export.load_safetensors(path)
    assert str(path) in str(info.value)
    save_file({"x": np.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="expected safetensors metadata 'nndl_fast'"):
        export.load_safetensors(path)
