"""PyTorch modules with the book's layers (imported only by ``nndl_fast.export``,
when torch is installed).

Layouts: ``ConvPool.conv.weight`` (F, C, kh, kw) holds the book's kernels
flipped (Conv2d cross-correlates), ``ConvPool.bias`` (F,) is added after the
pooling; ``Dense.linear`` is ``torch.nn.Linear`` (weight (n_out, n_in)).
"""
import numpy as np
import torch
from torch import nn

_ACTIVATIONS = {"linear": lambda z: z, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                "ReLU": torch.relu, "softmax": lambda z: torch.softmax(z, dim=1)}


class BookDropout(nn.Module):
    """The book's dropout: training keeps each input with probability 1 - p and
    does not rescale; inference multiplies the inputs by 1 - p instead."""

    def __init__(self, p):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        if self.p == 0.0:
            return x
        if self.training:
            return x * (torch.rand_like(x) < 1.0 - self.p).to(x.dtype)
        return x * (1.0 - self.p)

    def extra_repr(self):
        return "p=%g" % self.p


class ConvPool(nn.Module):
    """act(maxpool(conv(x)) + b): network3's ConvPoolLayer, x (N, C, H, W)."""

    def __init__(self, in_channels, filters, kernel, poolsize, activation):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, filters, tuple(kernel), bias=False)
        self.pool = nn.MaxPool2d(tuple(poolsize))  # stride = window, border ignored
        self.bias = nn.Parameter(torch.zeros(filters))
        self.activation = activation

    def forward(self, x):
        z = self.pool(self.conv(x)) + self.bias.view(1, -1, 1, 1)
        return _ACTIVATIONS[self.activation](z)

    def extra_repr(self):
        return "activation=%s" % self.activation


class Dense(nn.Module):
    """act(linear(dropout(x))), x (N, n_in): a sigmoid layer of chapters 1 and 3,
    network3's FullyConnectedLayer or SoftmaxLayer."""

    def __init__(self, n_in, n_out, activation, p_dropout=0.0):
        super().__init__()
        self.dropout = BookDropout(p_dropout)
        self.linear = nn.Linear(n_in, n_out)
        self.activation = activation

    def forward(self, x):
        return _ACTIVATIONS[self.activation](self.linear(self.dropout(x)))

    def extra_repr(self):
        return "activation=%s" % self.activation


class BookNet(nn.Module):
    """The layers in order; input (N, n_in) rows, output (N, n_out) probabilities.

    ``config`` is ``nndl_fast.export.describe``'s, kept so ``from_torch`` can
    build the nndl_fast network again.
    """

    def __init__(self, config, specs):
        super().__init__()
        self.config = config
        layers = []
        for spec in specs:
            if spec["kind"] == "conv":
                layers.append(ConvPool(spec["in_shape"][0], spec["filters"], spec["kernel"],
                                       spec["poolsize"], spec["activation"]))
            else:
                layers.append(Dense(spec["n_in"], spec["n_out"], spec["activation"],
                                    spec["p_dropout"]))
        self.layers = nn.ModuleList(layers)
        # Where the rows become images again: the input shape of each first conv layer.
        self._images = [tuple(spec["in_shape"]) if spec["kind"] == "conv" else None
                        for spec in specs]

    def forward(self, x):
        for layer, image_shape in zip(self.layers, self._images):
            if image_shape is not None:
                if x.dim() == 2:
                    x = x.reshape((x.shape[0],) + image_shape)
            elif x.dim() != 2:
                x = x.flatten(1)
            x = layer(x)
        return x

    def load_numpy(self, named):
        """Copy NumPy arrays (names as ``state_dict``'s) into the parameters; the
        module takes their dtype."""
        dtypes = {np.asarray(v).dtype for v in named.values()}
        if len(dtypes) == 1:
            self.to(torch.float64 if dtypes.pop() == np.float64 else torch.float32)
        self.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in named.items()})
        return self
