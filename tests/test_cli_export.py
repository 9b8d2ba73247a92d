"""``train --save`` for every chapter and ``export``, run as a user runs them."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import nndl_fast

# The folder the package under test was imported from (as in test_cli_train.py).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(nndl_fast.__file__)))


def run_cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "nndl_fast"] + list(args),
                          capture_output=True, text=True, timeout=120, env=env,
                          cwd=cwd or tempfile.gettempdir())


def test_train_network3_saves_and_export_writes_onnx_and_torch(tmp_path):
    from nndl_fast import network3
    path = tmp_path / "conv.npz"
    res = run_cli("train", "--preset", "ch6-conv1", "--train-size", "200", "--eval-size",
                  "100", "--epochs", "1", "--seed", "2", "--save", str(path))
    assert res.returncode == 0, res.stderr
    assert "Saved to %s" % path in res.stdout
    net = network3.load(path)
    assert [type(l).__name__ for l in net.layers] == ["ConvPoolLayer", "FullyConnectedLayer",
                                                      "SoftmaxLayer"]
    onnx_path, torch_path = tmp_path / "conv.onnx", tmp_path / "conv.pt"
    res = run_cli("export", str(path), "--onnx", str(onnx_path), "--torch", str(torch_path))
    if res.returncode != 0 and "pip install 'nndl_fast[" in res.stderr:
        pytest.skip("the optional export packages are not installed")
    assert res.returncode == 0, res.stderr
    assert "Loaded network3 from %s: conv 5x5 x20 + max-pool 2x2 sigmoid, 2880->100 " \
           "sigmoid, 100->10 softmax" % path in res.stdout
    assert "Wrote %s (ONNX opset 17: input float32 (N, 784), output probabilities (N, 10))" \
           % onnx_path in res.stdout
    ort = pytest.importorskip("onnxruntime")
    x = np.random.default_rng(0).random((20, 784), dtype=np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], net.predict_proba(x),
                               atol=1e-5)
    pytest.importorskip("torch")
    from nndl_fast import export
    module = export.load_torch(torch_path)
    assert module.config == export.describe(net)[0]


def test_train_network_saves_and_export_detects_the_json(tmp_path):
    path = tmp_path / "net.json"
    res = run_cli("train", "--train-size", "300", "--eval-size", "100", "--epochs", "1",
                  "--seed", "1", "--save", str(path))
    assert res.returncode == 0, res.stderr
    from nndl_fast import network
    net = network.load(path)
    assert net.sizes == [784, 30, 10]
    pytest.importorskip("safetensors")
    out = tmp_path / "net.safetensors"
    res = run_cli("export", str(path), "--safetensors", str(out))
    assert res.returncode == 0, res.stderr
    assert "Loaded network from %s: 784->30 sigmoid, 30->10 sigmoid" % path in res.stdout
    from nndl_fast import export
    back = export.load_safetensors(out)
    assert type(back) is network.Network
    for a, b in zip(back.weights + back.biases, net.weights + net.biases):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("content, args, message", [
    (b'{"sizes": [2, 1]}', ["--onnx", "x.onnx"], "lacks the key(s) weights, biases, cost"),
    (b"\x00\x01 not a network", ["--onnx", "x.onnx"], "expected a network file"),
    (b"{}", [], "export needs at least one of --onnx, --torch, --safetensors"),
])
def test_export_rejects_bad_input(tmp_path, content, args, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    res = run_cli("export", str(path), *args, cwd=str(tmp_path))
    assert res.returncode != 0
    assert message in res.stderr
    assert not (tmp_path / "x.onnx").exists()
