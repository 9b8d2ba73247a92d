"""Carry a trained network onward: ONNX, PyTorch and safetensors.

Every chapter's network is first described the same way (``describe``): a
JSON-ready ``config`` and the parameters in the book's layouts. One list of
layer specs is made from that, and both builders (ONNX and PyTorch) read it:

* a ConvPoolLayer is Conv (kernels flipped: the book's, Theano's, conv2d is a
  true convolution, ONNX's Conv and ``torch.nn.Conv2d`` cross-correlate), then
  max-pooling over non-overlapping windows (the border ignored), then the
  bias, then the activation;
* a dense layer (chapters 1 and 3, network3's FullyConnectedLayer and
  SoftmaxLayer) is ``act(keep·x·W + b)`` with ``keep = 1 - p_dropout``, the
  book's weight scaling at inference (ONNX folds it into W);
* the output is a sigmoid layer (chapters 1 and 3) or a softmax
  (LogLikelihoodCost, network3's SoftmaxLayer).

Inputs are rows, (n, n_in) (the flattened 28×28 images for MNIST); outputs
(n, n_out) probabilities.

The optional packages are imported when used: ``pip install 'nndl_fast[export]'``
(onnx, onnxruntime, safetensors) and ``pip install 'nndl_fast[torch]'``.

    >>> net.to_onnx("net.onnx")            # any chapter's Network
    >>> module = net.to_torch()            # a torch.nn.Module, same weights and outputs
    >>> net2 = export.from_torch(module)   # and back, after training in PyTorch
    >>> net.save_safetensors("net.safetensors")   # module.load_state_dict reads it
"""
import importlib
import json

import numpy as np

from ._files import atomic_write
from ._threads import serialised
from ._validation import describe as describe_value
from .reference.activations import ACTIVATION_TABLE, resolve_activation

__all__ = ["describe", "check_config", "layer_specs", "to_onnx", "to_torch", "from_torch",
           "state_dict", "save_safetensors", "load_safetensors", "save_torch", "load_torch",
           "load_any", "ExportMixin", "OPSET", "IR_VERSION"]

#: The ONNX operator set and IR version of exported models: every onnxruntime
#: release since 1.13 (2022) runs them.
OPSET = 17
IR_VERSION = 8

_EXTRAS = {"onnx": "export", "onnxruntime": "export", "safetensors": "export",
           "torch": "torch"}


def _require(name):
    """Import an optional package, or ImportError saying which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        extra = _EXTRAS.get(name.split(".")[0], "export")
        raise ImportError("this needs the optional package %r: pip install 'nndl_fast[%s]'"
                          % (name.split(".")[0], extra)) from None


# ------------------------------------------------------------- description
def _kind(net):
    """"network", "network2" or "network3" for a network of that chapter."""
    if hasattr(net, "layers") and hasattr(net, "mini_batch_size"):
        return "network3"
    if hasattr(net, "sizes") and hasattr(net, "weights") and hasattr(net, "biases"):
        return "network2" if hasattr(net, "cost") else "network"
    raise TypeError("expected a Network of nndl_fast.network, network2 or network3, got %s"
                    % describe_value(net))


def describe(net):
    """(config, arrays) for any chapter's network.

    ``config`` is JSON-ready. network3: ``network3.describe``'s metadata, with
    arrays [(w, b)] in its layers' shapes. network / network2: ``{"format":
    "nndl_fast.network" or "nndl_fast.network2", "sizes": [...], "cost": name,
    "dtype": name}`` (network2 with hidden layers other than sigmoid: also
    "activation": name) with arrays [(w (n_out, n_in), b (n_out, 1))], the book's.
    """
    kind = _kind(net)
    if kind == "network3":
        from .network3 import describe as describe3
        return describe3(net)
    from .reference.network2 import cost_class
    if kind == "network":
        cost = "QuadraticCost"
    else:
        from .network2 import COSTS_BY_NAME
        cls = cost_class(net.cost)
        cost = cls.__name__
        if COSTS_BY_NAME.get(cost) is not cls:
            raise ValueError("expected a network2 cost among %s, got %s"
                             % (", ".join(sorted(COSTS_BY_NAME)), cost))
    dtype = np.dtype(getattr(net, "dtype", np.float64))
    config = {"format": "nndl_fast." + kind, "sizes": [int(s) for s in net.sizes],
              "cost": cost, "dtype": dtype.name}
    if kind == "network2":
        name = resolve_activation(net.activation_fn).name
        if name != "sigmoid":
            config["activation"] = name
    arrays = [(np.array(w, dtype=dtype), np.array(b, dtype=dtype))
              for w, b in zip(net.weights, net.biases)]
    return config, arrays


_DENSE_KEYS = {"format", "sizes", "cost", "dtype"}


def check_config(config):
    """``config`` (from a file or a module) checked as ``describe`` makes it;
    ValueError naming what is wrong."""
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt == "nndl_fast.network3":
        from .network3 import _check_metadata
        _check_metadata(config)
        return config
    if fmt not in ("nndl_fast.network", "nndl_fast.network2"):
        raise ValueError("expected a config with format nndl_fast.network, network2 or "
                         "network3, got %s" % (repr(fmt) if fmt is not None
                                                else describe_value(config)))
    if set(config) - {"activation"} != _DENSE_KEYS \
            or (fmt == "nndl_fast.network" and "activation" in config):
        raise ValueError("expected the config keys %s%s, got %s"
                         % (sorted(_DENSE_KEYS), " (and activation)"
                            if fmt == "nndl_fast.network2" else "", sorted(config)))
    if "activation" in config:
        resolve_activation(config["activation"])
    from ._validation import check_sizes
    from .network2 import COSTS_BY_NAME
    if not isinstance(config["sizes"], list):
        raise ValueError("sizes must be a list of layer sizes, got %r" % (config["sizes"],))
    check_sizes(config["sizes"])
    if config["cost"] not in COSTS_BY_NAME:
        raise ValueError("cost must be one of %s, got %r"
                         % (", ".join(sorted(COSTS_BY_NAME)), config["cost"]))
    if fmt == "nndl_fast.network" and config["cost"] != "QuadraticCost":
        raise ValueError("expected cost QuadraticCost for a chapter-1 network, got %r"
                         % (config["cost"],))
    if config["dtype"] not in ("float32", "float64"):
        raise ValueError("dtype must be 'float32' or 'float64', got %r" % (config["dtype"],))
    return config


def _dense_spec(n_in, n_out, activation, p_dropout=0.0):
    return {"kind": "dense", "n_in": int(n_in), "n_out": int(n_out),
            "activation": activation, "p_dropout": float(p_dropout)}


def layer_specs(config):
    """The layers as the builders see them, from ``describe``'s config.

    ``{"kind": "conv", "in_shape": (C, H, W), "filters": F, "kernel": (kh, kw),
    "poolsize": (ph, pw), "activation": name}`` or ``{"kind": "dense", "n_in",
    "n_out", "activation": "sigmoid" | "tanh" | "ReLU" | "linear" | "softmax",
    "p_dropout"}``.
    """
    fmt = config.get("format") if isinstance(config, dict) else None
    if fmt in ("nndl_fast.network", "nndl_fast.network2"):
        sizes = config["sizes"]
        out = "softmax" if config["cost"] == "LogLikelihoodCost" else "sigmoid"
        hidden = config.get("activation", "sigmoid")
        return [_dense_spec(a, b, out if l == len(sizes) - 2 else hidden)
                for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    if fmt == "nndl_fast.network3":
        specs = []
        for layer in config["layers"]:
            if layer["type"] == "ConvPoolLayer":
                f, c, kh, kw = layer["filter_shape"]
                specs.append({"kind": "conv", "in_shape": tuple(layer["image_shape"][1:]),
                              "filters": f, "kernel": (kh, kw),
                              "poolsize": tuple(layer["poolsize"]),
                              "activation": layer["activation_fn"]})
            else:
                specs.append(_dense_spec(layer["n_in"], layer["n_out"],
                                         layer.get("activation_fn", "softmax"),
                                         layer["p_dropout"]))
        return specs
    raise ValueError("expected a config with format nndl_fast.network, network2 or network3, "
                     "got %r" % (fmt,))


def _to_cross_correlation(config, arrays):
    """[(W, b)] in the builders' layout: conv W (F, C, kh, kw) flipped for
    cross-correlation, dense W (n_out, n_in) (torch.nn.Linear's), b 1-D."""
    out = []
    network3 = config["format"] == "nndl_fast.network3"
    for spec, (w, b) in zip(layer_specs(config), arrays):
        w, b = np.asarray(w), np.asarray(b)
        if spec["kind"] == "conv":
            w = w[:, :, ::-1, ::-1]
        elif network3:
            w = w.T
        out.append((np.ascontiguousarray(w), np.ascontiguousarray(b.reshape(-1))))
    return out


def _from_cross_correlation(config, params):
    """The inverse of ``_to_cross_correlation``: the book's layouts back."""
    out = []
    network3 = config["format"] == "nndl_fast.network3"
    for spec, (w, b) in zip(layer_specs(config), params):
        if spec["kind"] == "conv":
            w = w[:, :, ::-1, ::-1]
        elif network3:
            w = w.T
        else:
            b = b.reshape(-1, 1)
        out.append((np.ascontiguousarray(w), np.ascontiguousarray(b)))
    return out


def _build(config, arrays, num_threads=None):
    """The nndl_fast network that ``describe``'s (config, arrays) describe (checked)."""
    fmt = check_config(config)["format"]
    if fmt == "nndl_fast.network3":
        from .network3 import from_description
        return from_description(config, arrays, num_threads=num_threads)
    from . import network, network2
    from ._validation import check_params
    sizes = [int(s) for s in config["sizes"]]
    dtype = np.dtype(config["dtype"])
    weights = [np.asarray(w) for w, _ in arrays]
    biases = [np.asarray(b) for _, b in arrays]
    # Shapes, dtypes and finiteness checked before a network is built.
    check_params(weights, biases, sizes, dtype)
    state = np.random.get_state()
    try:
        if fmt == "nndl_fast.network":
            net = network.Network(sizes, dtype=dtype, num_threads=num_threads)
        else:
            net = network2.Network(sizes, cost=network2.COSTS_BY_NAME[config["cost"]],
                                   dtype=dtype, num_threads=num_threads,
                                   activation_fn=config.get("activation", "sigmoid"))
    finally:
        np.random.set_state(state)
    net.weights = [np.array(w, dtype=dtype) for w in weights]
    net.biases = [np.array(b, dtype=dtype) for b in biases]
    net._sync_params()
    return net


# ------------------------------------------------------------------- ONNX
_ONNX_ACTIVATIONS = {entry.name: entry.onnx for entry in ACTIVATION_TABLE
                     if entry.onnx}


def to_onnx(net, path=None):
    """An ONNX model (``onnx.ModelProto``) computing the network's inference output.

    Input "input" float32 (N, n_in), output "probabilities" float32 (N, n_out);
    opset ``OPSET``, IR version ``IR_VERSION``; checked by ``onnx.checker``.
    Written atomically to ``path`` when given.
    """
    onnx = _require("onnx")
    from onnx import TensorProto, helper, numpy_helper
    config, arrays = describe(net)
    specs = layer_specs(config)
    params = _to_cross_correlation(config, arrays)
    nodes, initializers = [], []

    def constant(name, value):
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    x = "input"
    previous = None
    for l, (spec, (w, b)) in enumerate(zip(specs, params)):
        name = "layer%d" % l
        if spec["kind"] == "conv":
            if previous != "conv":
                shape = constant(name + ".shape", np.array((-1,) + spec["in_shape"], np.int64))
                x = node("Reshape", [x, shape], name + ".images")
            x = node("Conv", [x, constant(name + ".weight", w.astype(np.float32))],
                     name + ".conv", kernel_shape=list(spec["kernel"]))
            x = node("MaxPool", [x], name + ".pool", kernel_shape=list(spec["poolsize"]),
                     strides=list(spec["poolsize"]))
            bias = constant(name + ".bias", b.astype(np.float32).reshape(1, -1, 1, 1))
            x = node("Add", [x, bias], name + ".z")
        else:
            if previous == "conv":
                x = node("Flatten", [x], name + ".flat", axis=1)
            # The book's inference scaling by (1 - p_dropout), folded into W.
            keep = 1.0 - spec["p_dropout"]
            weight = (w * keep if keep != 1.0 else w).astype(np.float32)
            x = node("Gemm", [x, constant(name + ".weight", weight),
                              constant(name + ".bias", b.astype(np.float32))],
                     name + ".z", transB=1)
        act = spec["activation"]
        if act == "softmax":
            x = node("Softmax", [x], name + ".a", axis=1)
        elif act != "linear":
            x = node(_ONNX_ACTIVATIONS[act], [x], name + ".a")
        previous = spec["kind"]
    nodes.append(helper.make_node("Identity", [x], ["probabilities"], name="probabilities"))
    n_in = specs[0]["n_in"] if specs[0]["kind"] == "dense" else \
        int(np.prod(specs[0]["in_shape"]))
    n_out = specs[-1]["n_out"]
    graph = helper.make_graph(
        nodes, config["format"].replace(".", "_"),
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_out])],
        initializer=initializers)
    from ._version import __version__
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nndl_fast", producer_version=__version__,
                              doc_string=json.dumps(config))
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        with atomic_write(path, "wb") as f:
            f.write(model.SerializeToString())
    return model


# ---------------------------------------------------------------- PyTorch
def state_dict(net):
    """The network's parameters as NumPy arrays under the names of ``to_torch``'s
    module (``layers.{l}.conv.weight``, ``layers.{l}.bias``, ``layers.{l}.linear.weight``,
    ``layers.{l}.linear.bias``), in the network's dtype."""
    config, arrays = describe(net)
    return _named(config, _to_cross_correlation(config, arrays))


def _named(config, params):
    out = {}
    for l, (spec, (w, b)) in enumerate(zip(layer_specs(config), params)):
        if spec["kind"] == "conv":
            out["layers.%d.conv.weight" % l], out["layers.%d.bias" % l] = w, b
        else:
            out["layers.%d.linear.weight" % l], out["layers.%d.linear.bias" % l] = w, b
    return out


def _unnamed(config, named):
    """[(W, b)] per layer from a state dict of NumPy arrays (names checked)."""
    specs = layer_specs(config)
    expected = set(_named(config, [(None, None)] * len(specs)))
    if set(named) != expected:
        raise ValueError("expected the parameters %s, got %s" % (sorted(expected), sorted(named)))
    params = []
    for l, spec in enumerate(specs):
        if spec["kind"] == "conv":
            params.append((named["layers.%d.conv.weight" % l], named["layers.%d.bias" % l]))
        else:
            params.append((named["layers.%d.linear.weight" % l],
                           named["layers.%d.linear.bias" % l]))
    return params


def to_torch(net):
    """A ``torch.nn.Module`` with the network's weights and outputs.

    ``module(x)``, x (N, n_in), gives the probabilities (N, n_out) the network's
    inference gives (in ``module.eval()``; in training mode dropout draws masks
    as the book's does, without rescaling). Parameters are in the network's
    dtype; ``module.config`` describes the layers (``from_torch`` reads it).
    """
    _require("torch")
    from ._torch_modules import BookNet
    config, arrays = describe(net)
    module = BookNet(config, layer_specs(config))
    module.load_numpy(_named(config, _to_cross_correlation(config, arrays)))
    return module.eval()


def from_torch(module, like=None, num_threads=None):
    """The nndl_fast network with ``module``'s current weights.

    ``module`` is one ``to_torch`` made (perhaps trained since). Another module
    with the same parameter names and shapes works too when ``like`` is a
    network with that layout. Shapes and values are checked (ValueError).
    """
    torch = _require("torch")
    if not isinstance(module, torch.nn.Module):
        raise TypeError("expected a torch.nn.Module, got %s" % describe_value(module))
    config = getattr(module, "config", None)
    if like is not None:
        config = describe(like)[0]
    if not isinstance(config, dict):
        raise ValueError("expected a module made by to_torch (with a .config), or like= a "
                         "network with the same layout; got a %s without either"
                         % type(module).__name__)
    check_config(config)
    named = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    config = dict(config)
    dtypes = {v.dtype for v in named.values()}
    if len(dtypes) == 1 and dtypes <= {np.dtype(np.float32), np.dtype(np.float64)}:
        config["dtype"] = dtypes.pop().name
    params = _from_cross_correlation(config, _checked_params(config, named))
    return _build(config, params, num_threads)


def _checked_params(config, named):
    params = _unnamed(config, named)
    for l, (spec, (w, b)) in enumerate(zip(layer_specs(config), params)):
        if spec["kind"] == "conv":
            c = spec["in_shape"][0]
            w_shape = (spec["filters"], c) + tuple(spec["kernel"])
            b_shape = (spec["filters"],)
        else:
            w_shape, b_shape = (spec["n_out"], spec["n_in"]), (spec["n_out"],)
        for what, value, shape in (("weight", w, w_shape), ("bias", b, b_shape)):
            if value.shape != shape:
                raise ValueError("layer %d's %s has shape %s, expected %s"
                                 % (l, what, value.shape, shape))
            if not np.isfinite(value).all():
                raise ValueError("layer %d's %s contains NaN or infinity" % (l, what))
    return params


def save_torch(net, path):
    """Write ``{"config": ..., "state_dict": ...}`` with ``torch.save`` (atomically);
    ``torch.load(path, weights_only=True)`` reads it, ``load_torch`` makes the
    module again."""
    torch = _require("torch")
    module = to_torch(net)
    with atomic_write(path, "wb") as f:
        torch.save({"config": json.dumps(module.config), "state_dict": module.state_dict()}, f)


def load_torch(path):
    """The ``torch.nn.Module`` of a file written by ``save_torch`` (no pickled code)."""
    torch = _require("torch")
    from ._torch_modules import BookNet
    data = torch.load(path, weights_only=True)
    if not isinstance(data, dict) or set(data) != {"config", "state_dict"}:
        raise ValueError("%s: expected a dict with keys config and state_dict (save_torch's), "
                         "got %s" % (path, describe_value(data)))
    try:
        config = check_config(json.loads(data["config"]))
        if not all(isinstance(v, torch.Tensor) for v in data["state_dict"].values()):
            raise ValueError("expected a state_dict of tensors")
        named = {k: v.numpy() for k, v in data["state_dict"].items()}
        _checked_params(config, named)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError("%s: %s" % (path, exc)) from None
    module = BookNet(config, layer_specs(config))
    module.load_numpy(named)
    return module.eval()


# ------------------------------------------------------------ safetensors
def save_safetensors(net, path):
    """Write ``state_dict(net)`` as a safetensors file (no torch needed), with the
    config in its metadata (key "nndl_fast"); written atomically.

    ``module.load_state_dict(safetensors.torch.load_file(path))`` loads it into
    ``to_torch``'s module; ``load_safetensors`` makes the network again.
    """
    st = _require("safetensors.numpy")
    config, _ = describe(net)
    data = st.save(state_dict(net), metadata={"nndl_fast": json.dumps(config)})
    with atomic_write(path, "wb") as f:
        f.write(data)


def load_safetensors(path, num_threads=None):
    """The nndl_fast network of a file written by ``save_safetensors`` (checked)."""
    _require("safetensors")
    from safetensors import safe_open
    with safe_open(str(path), framework="np") as f:
        metadata = f.metadata() or {}
        if "nndl_fast" not in metadata:
            raise ValueError("%s: expected safetensors metadata 'nndl_fast' (written by "
                             "save_safetensors), got the keys %s" % (path, sorted(metadata)))
        named = {k: f.get_tensor(k) for k in f.keys()}
    try:
        config = check_config(json.loads(metadata["nndl_fast"]))
        params = _from_cross_correlation(config, _checked_params(config, named))
        return _build(config, params, num_threads)
    except (ValueError, TypeError) as exc:
        raise ValueError("%s: %s" % (path, exc)) from None


# ------------------------------------------------------------------ files
def load_any(path, num_threads=None):
    """A network from any of the formats: the book's JSON (network2, or network for
    QuadraticCost), network3's .npz, safetensors or ``save_torch``'s file; the
    format is told by the file's first bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
    stripped = head.lstrip()
    if stripped.startswith(b"{"):
        from . import network, network2
        sizes, cost, _, _, activation = network2.read_document(path)
        if cost is network2.QuadraticCost and activation == "sigmoid":
            return network.load(path, num_threads=num_threads)
        return network2.load(path, num_threads=num_threads)
    if head.startswith(b"PK"):
        # An .npz and torch.save's archive are both zip files.
        import zipfile
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if "metadata.npy" in names:
            from . import network3
            return network3.load(path, num_threads=num_threads)
        return from_torch(load_torch(path), num_threads=num_threads)
    if len(head) >= 9 and head[8:9] == b"{":
        # safetensors: an 8-byte header length, then the JSON header.
        return load_safetensors(path, num_threads=num_threads)
    raise ValueError("%s: expected a network file (the book's JSON, network3's .npz, "
                     "safetensors or save_torch's), got one starting with %r" % (path, head))


class ExportMixin(object):
    """``to_onnx``, ``to_torch`` and ``save_safetensors`` on every chapter's Network."""

    @serialised
    def to_onnx(self, path=None):
        """The ONNX model of this network (see ``nndl_fast.export.to_onnx``)."""
        return to_onnx(self, path)

    @serialised
    def to_torch(self):
        """A ``torch.nn.Module`` with this network's weights (``nndl_fast.export``)."""
        return to_torch(self)

    @serialised
    def save_safetensors(self, path):
        """The parameters as a safetensors file (``nndl_fast.export``); no torch needed."""
        save_safetensors(self, path)
