"""R runs of the same MLP shape trained in one step: their connected layers stacked, one call per junction.

`StackedConnectedLayers.from_models(models)` takes R `PatternNet`s (an `mlp`, every junction a
`SparseLinear` with fixed fan-out on the CPU gathers, the same net and fan-ins; patterns and weights may
differ) and holds junction i's weights as one (R, N_{i+1}, fi_i) parameter, its indices as (R, ...)
buffers. A step is one `StackedSparseLinearFunction` call per junction for all R runs, on feature-major
(R, N, B) activations. Each run's numbers are bit-for-bit those of training its `PatternNet` alone (see
`StackedSparseLinearFunction`); `predsparse.train_group` relies on it and a test checks it.

`load_run(r, model)` puts run r's weights into its own `PatternNet`, so checkpoints and best models are
the single run's files; `stackable` says why models cannot be stacked.
"""

from __future__ import annotations

import torch
from torch import nn

from predsparse.nn import functional, native
from predsparse.nn.sparse_linear import SparseLinear


def native_mlp(model: nn.Module) -> str | None:
    """None if every junction of `model` can run on the native CPU kernels (an `mlp` of SparseLinear
    junctions with fixed fan-out and a bias, float32 on the CPU; at any density), else why not."""
    if not native.AVAILABLE:
        return native.STATUS
    if model.features is not None:
        return "a conv model (only connected layers)"
    for layer in model.junctions():
        if not isinstance(layer, SparseLinear) or not layer.fixed_fan_out:
            return f"junction {type(layer).__name__} is not a SparseLinear with fixed fan-out (dense or masked)"
        if layer.bias is None or not native.supports(layer.weight):
            return "a junction has no bias or is not float32 on the CPU"
    return None


def stackable(models: list[nn.Module]) -> str | None:
    """None if `models` can train as one stack, else the reason they cannot."""
    shapes = []
    for model in models:
        if reason := native_mlp(model):
            return reason
        junctions = model.junctions()
        if any(layer.density >= functional.DENSE_DISPATCH_DENSITY["cpu"] for layer in junctions):
            return "a junction runs on dense blocks (its density), not on the native gathers"
        shapes.append([tuple(layer.weight.shape) + (layer.in_features,) for layer in junctions])
    if any(s != shapes[0] for s in shapes):
        return "the runs' junction shapes differ"
    return None


class StackedConnectedLayers(nn.Module):
    """The CL junctions of R same-shaped runs: ReLU after every junction but the last (as `ConnectedLayers`)."""

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor], indices: list[tuple[torch.Tensor, ...]]):
        super().__init__()
        self.weights = nn.ParameterList(weights)
        self.biases = nn.ParameterList(biases)
        for i, (fan_in_index, fan_out_right, fan_out_position) in enumerate(indices):
            self.register_buffer(f"fan_in_index{i}", fan_in_index)
            self.register_buffer(f"fan_out_right{i}", fan_out_right)
            self.register_buffer(f"fan_out_position{i}", fan_out_position)

    @classmethod
    def from_models(cls, models: list[nn.Module]) -> "StackedConnectedLayers":
        reason = stackable(models)
        if reason:
            raise ValueError(f"these runs cannot be stacked: {reason}")
        columns = list(zip(*(model.junctions() for model in models)))
        weights = [torch.stack([layer.weight.detach() for layer in column]) for column in columns]
        biases = [torch.stack([layer.bias.detach() for layer in column]) for column in columns]
        indices = [tuple(torch.stack([getattr(layer, name) for layer in column])
                         for name in ("fan_in_index", "fan_out_right", "fan_out_position")) for column in columns]
        return cls(weights, biases, indices)

    @property
    def layers(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x_t: torch.Tensor) -> torch.Tensor:
        """(R, N_1, B) feature-major inputs (stride 0 over R: the same batch for every run) -> (R, N_{J+1}, B)."""
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            # As ConnectedLayers: a hidden activation is the next junction's fused input ReLU.
            x_t = functional.StackedSparseLinearFunction.apply(
                x_t, weight, bias, getattr(self, f"fan_in_index{i}"), getattr(self, f"fan_out_right{i}"),
                getattr(self, f"fan_out_position{i}"), i > 0)
        return x_t

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(weights, biases) in the order of a single run's `make_optimizer` groups (decayed, not decayed)."""
        return list(self.weights), list(self.biases)

    @torch.no_grad()
    def load_run(self, r: int, model: nn.Module) -> None:
        """Copy run r's stacked weights and biases into `model` (its PatternNet)."""
        for layer, weight, bias in zip(model.junctions(), self.weights, self.biases):
            layer.weight.copy_(weight[r])
            layer.bias.copy_(bias[r])
