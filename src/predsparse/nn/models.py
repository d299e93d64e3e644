"""The paper's models: connected layers (CLs) built from a pattern file, alone or after a conv stack.

Every CL junction i is the layer `layers_from_pattern` makes for it (a `SparseLinear` holding only the
N_{i+1} x fi_i existing weights; dense where fo_i = N_{i+1}); hidden CLs use ReLU, the last one gives
logits (softmax lives in the cross-entropy loss).

- `mlp`: CLs only, any net; inputs are flattened (Morse (64, 1024, 64); MNIST (784, x, 10); MNIST
  (1024, 64, 16) and (1024, 16) on 32x32 zero-padded images).
- `mnist_conv` (Section 2.2.2): two 5x5 'same' conv layers of 32 and 64 filters, each followed by ReLU
  and 2x2 max pooling: 1x28x28 -> 64x7x7 = 3136 features -> CLs, e.g. (3136, 784, 10).
- `cifar_conv` (Section 2.2.1): six 3x3 'same' conv layers [64, 64, 128, 128, 256, 256], each followed
  by batch norm then ReLU, 2x2 max pooling after every pair: 3x32x32 -> 256x4x4 = 4096 features -> CLs
  (4096, 512, 16 | 128) or (4096, 512, 256, 16 | 128). Conv layers keep their bias, as the authors'
  Keras layers do by default.

Flattening order (3-D scatter windows depend on it): conv features of shape (C, H, W) are flattened
channel-major, as `torch.flatten` does on NCHW tensors: feature index = c*H*W + h*W + w. A pattern for a
conv model that records its first layer's shape must record exactly the model's feature shape (C, H, W)
(`predsparse.catalog.MODELS[model].feature_shape`; its input shape is there too).

Padded outputs (the paper's footnote 2): the output layer N_{J+1} may exceed the dataset's number of real
classes (16 outputs for CIFAR-10's 10 classes, 128 for CIFAR-100). The extra outputs are classes no
sample has: cross-entropy runs over all N_{J+1} logits, so training pushes them down, and predictions
(`predict`) take the arg-max over the real classes only, so accuracy counts only real classes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from predsparse.catalog import MODELS
from predsparse.errors import ConfigError
from predsparse.nn.csc import CSCLinear, csc_linear_layers
from predsparse.nn.init import initialise_junctions
from predsparse.nn.sparse_linear import SparseLinear, layers_from_pattern
from predsparse.patterns import Pattern

def mnist_conv_stack() -> nn.Sequential:
    """1x28x28 -> 64x7x7: conv5x5(32), ReLU, pool2, conv5x5(64), ReLU, pool2."""
    layers: list[nn.Module] = []
    for c_in, c_out in ((1, 32), (32, 64)):
        layers += [nn.Conv2d(c_in, c_out, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers)


def cifar_conv_stack() -> nn.Sequential:
    """3x32x32 -> 256x4x4: six conv3x3 + batch norm + ReLU, 2x2 max pooling after every pair."""
    layers: list[nn.Module] = []
    c_in = 3
    for i, c_out in enumerate((64, 64, 128, 128, 256, 256)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
        c_in = c_out
    return nn.Sequential(*layers)


CONV_STACKS = {"mnist_conv": mnist_conv_stack, "cifar_conv": cifar_conv_stack}


def cl_net(pattern: Pattern) -> tuple[int, ...]:
    """Layer sizes of the CLs a pattern stands for: a CSC pattern's net lists its support layers instead."""
    return tuple(pattern.meta["csc_net"]) if pattern.kind == "csc" else tuple(pattern.net)


class ConnectedLayers(nn.Module):
    """The CL junctions of a pattern: ReLU after every junction but the last, which gives logits."""

    def __init__(self, pattern: Pattern, masked: bool = False):
        super().__init__()
        # A CSC pattern's junctions are support layers: one CSCLinear (no activation inside) per dense layer.
        layers = csc_linear_layers(pattern) if pattern.kind == "csc" else layers_from_pattern(pattern, masked=masked)
        self.junctions = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, junction in enumerate(self.junctions):
            if i == 0:
                x = junction(x)
            elif isinstance(junction, SparseLinear):  # the ReLU fused into the junction's products
                x = junction(x, input_relu=True)
            else:
                x = junction(torch.relu(x))
        return x


class PatternNet(nn.Module):
    """An optional conv stack (`features`), channel-major flattening, then the CLs of a pattern."""

    def __init__(self, pattern: Pattern, num_classes: int, features: nn.Module | None = None,
                 input_shape: tuple[int, ...] | None = None, masked: bool = False):
        super().__init__()
        self.features = features
        self.cls = ConnectedLayers(pattern, masked)
        self.input_shape = tuple(input_shape or (cl_net(pattern)[0],))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.input_shape)
        if self.features is not None:
            x = self.features(x).flatten(1)  # index c*H*W + h*W + w
        return self.cls(x)

    def junctions(self) -> list[nn.Module]:
        """The CL junction layers in order: junction i joins CL layer i to layer i + 1 (0-based)."""
        return list(self.cls.junctions)

    def replace_junction(self, i: int, layer: nn.Module) -> None:
        """Put `layer` in place of junction i; it must join the same numbers of neurons (methods that change
        the connections, `predsparse.methods`, give a junction another layer form this way)."""
        old = self.cls.junctions[i]
        if (layer.in_features, layer.out_features) != (old.in_features, old.out_features):
            raise ValueError(f"junction {i} joins {old.in_features} to {old.out_features} neurons; the new layer "
                             f"joins {layer.in_features} to {layer.out_features}")
        self.cls.junctions[i] = layer

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Class predictions among the real classes only (padded outputs never win). A SparseLinear's
        logits are a transpose: their arg-max runs down its contiguous columns (the same first maximum,
        several times faster than across its strided rows)."""
        scores = logits[:, : self.num_classes]
        return scores.t().argmax(dim=0) if scores.t().is_contiguous() else scores.argmax(dim=1)


def build_model(model: str, pattern: Pattern, num_classes: int | None = None, *, init: str = "uniform",
                masked: bool = False, dataset: str | None = None) -> PatternNet:
    """The model `model` (mlp | mnist_conv | cifar_conv) with the CLs of `pattern` and `num_classes` real classes.

    `init` is the CL weights' initialisation (predsparse.nn.init); `masked=True` gives every sparse junction a
    `MaskedLinear` (for methods whose connections change freely); `dataset` only names the classes' dataset in
    errors.

    Raises ConfigError when the pattern's net does not fit the model: its first layer must be the
    conv features (3136 for mnist_conv, 4096 for cifar_conv) and its output layer must hold every real class.
    """
    if num_classes is None:
        raise TypeError("build_model needs num_classes")
    net = _build(model, pattern, num_classes, masked, dataset or "the dataset")
    initialise_junctions(net.cls.junctions, init)
    return net


def _build(model: str, pattern: Pattern, num_classes: int, masked: bool, dataset: str) -> PatternNet:
    net = cl_net(pattern)
    if net[-1] < num_classes:
        raise ConfigError(f"pattern net {list(net)} has {net[-1]} outputs but {dataset} has {num_classes} classes; "
                          f"the output layer needs at least {num_classes} neurons")
    if model not in MODELS:
        raise ConfigError(f"model '{model}' is not one of {list(MODELS)}")
    shape = MODELS[model].feature_shape
    if shape is None:  # CLs only
        return PatternNet(pattern, num_classes, masked=masked)
    if net[0] != math.prod(shape):
        raise ConfigError(f"model {model} gives {math.prod(shape)} conv features ({'x'.join(map(str, shape))}) but "
                          f"the pattern net {list(net)} starts with {net[0]}")
    if pattern.shapes[0] is not None and tuple(pattern.shapes[0]) != shape:
        raise ConfigError(f"pattern's first layer has shape {list(pattern.shapes[0])} but model {model} flattens "
                          f"features of shape (C, H, W) = {list(shape)}")
    return PatternNet(pattern, num_classes, CONV_STACKS[model](), MODELS[model].input_shape, masked=masked)


def _connections(module: nn.Module) -> int:
    """Weights (= multiply-accumulates per sample) of one CL junction: only existing connections count."""
    if isinstance(module, CSCLinear):
        return module.layer.weights  # padding neurons excluded: they never reach an output
    mask = getattr(module, "mask", None)
    return int(mask.count_nonzero()) if mask is not None else int(module.weight.numel())


def count_parameters(model: PatternNet) -> dict[str, int]:
    """Trainable parameters: `conv` (conv kernels and biases: what Table 2 counts as conv params, 1.15M for
    CIFAR), `batch_norm` (its scales and shifts), `cl_weights` (existing CL connections only), `cl` (those
    plus CL biases) and `total`."""
    conv = batch_norm = 0
    if model.features is not None:
        for module in model.features.modules():
            count = sum(p.numel() for p in module.parameters(recurse=False))
            if isinstance(module, nn.Conv2d):
                conv += count
            else:
                batch_norm += count
    cl_weights = sum(_connections(j) for j in model.junctions())
    cl_biases = sum(p.numel() for name, p in model.cls.named_parameters() if name.rsplit(".", 1)[-1] == "bias")
    cl = cl_weights + cl_biases
    return {"conv": conv, "batch_norm": batch_norm, "cl_weights": cl_weights, "cl": cl,
            "total": conv + batch_norm + cl}


def count_macs(model: PatternNet) -> dict[str, int]:
    """Multiply-accumulates of one sample's forward pass: `conv` (kernel products of every output value of
    every conv layer; biases, batch norm and pooling not counted), `cl` (one per existing connection), `total`."""
    conv = 0
    if model.features is not None:
        hooks = []

        def count(module, inputs, output):
            nonlocal conv
            kernel = module.in_channels // module.groups * math.prod(module.kernel_size)
            conv += output[0].numel() * kernel

        for module in model.features.modules():
            if isinstance(module, nn.Conv2d):
                hooks.append(module.register_forward_hook(count))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model.features(torch.zeros(1, *model.input_shape, device=next(model.parameters()).device))
        finally:
            model.train(was_training)
            for hook in hooks:
                hook.remove()
    cl = sum(_connections(j) for j in model.junctions())
    return {"conv": conv, "cl": cl, "total": conv + cl}
