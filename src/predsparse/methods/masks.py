"""The tensor operations of pruning and dynamic sparse training, on one junction at a time.

Two layer forms hold a junction's connections (`predsparse.nn.sparse_linear`):
- `SparseLinear` (fixed fan-in fi): weight and fan-in index (N_{i+1}, fi). Every operation here keeps
  fi connections on every row, so the layer keeps running on the sparse kernels.
- `MaskedLinear` (no constraint): a dense weight and a boolean mask; operations keep the mask's count.

`pattern_of` turns a model's current connections back into a `Pattern` (saved as `final_pattern.npz`,
and held in checkpoints so a killed run resumes with the connections it had).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn

from predsparse.io import load_npz
from predsparse.nn.sparse_linear import MaskedLinear, SparseLinear
from predsparse.patterns import Pattern, pattern_from_arrays


def largest_per_row(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(R, k) column indices of the k largest scores of every row, ascending by column (a fan-in index)."""
    return torch.topk(scores, k, dim=1).indices.sort(dim=1).values


def largest_overall(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of scores' shape marking its k largest entries."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    mask[torch.topk(scores.reshape(-1), k).indices] = True
    return mask.view(scores.shape)


def init_like(weights: torch.Tensor, fan_in: torch.Tensor, generator: torch.Generator, init: str = "uniform",
              in_features: int | None = None) -> torch.Tensor:
    """Values for new connections from the run's initialisation law (predsparse.nn.init): `uniform`,
    U(-1/sqrt(fi), 1/sqrt(fi)) with fi the fan-in of each value's right neuron (`fan_in` broadcasts
    against `weights`), or `he_dense`, N(0, 2 / N_i) with N_i = `in_features`. Drawn on the CPU so a seed
    gives the same values on any device."""
    if init == "he_dense":
        values = torch.randn(weights.shape, generator=generator, dtype=torch.float64)
        return (values * (2.0 / in_features) ** 0.5).to(weights)
    bound = fan_in.to(torch.float64).clamp(min=1).rsqrt().cpu()
    values = torch.rand(weights.shape, generator=generator, dtype=torch.float64) * 2 - 1
    return (values * bound).to(weights)


def _reset_optimizer_state(optimizer: torch.optim.Optimizer, param: torch.Tensor, order: torch.Tensor | None,
                           fresh: torch.Tensor) -> None:
    """Move the per-weight optimiser state (momentum, Adam moments) with its weights (`order`: the row
    permutation applied to them) and zero it for new connections (`fresh`)."""
    for value in optimizer.state.get(param, {}).values():
        if torch.is_tensor(value) and value.shape == param.shape:
            if order is not None:
                value.copy_(value.gather(1, order))
            value[fresh] = 0


@torch.no_grad()
def replace_per_row(layer: SparseLinear, k: int, grow_scores: torch.Tensor, new_values: torch.Tensor,
                    optimizer: torch.optim.Optimizer | None = None) -> None:
    """Drop the k smallest-magnitude connections of every right neuron of a `SparseLinear` and grow, on each
    row, the k connections of largest `grow_scores` (N_{i+1}, N_i) among those not kept (a dropped one
    may come back, as new). New connections take `new_values` (N_{i+1}, k); their optimiser state is 0.
    Every row keeps its fan-in fi."""
    weight, index = layer.weight, layer.fan_in_index.long()
    ranked = torch.argsort(weight.abs(), dim=1, stable=True)  # ascending magnitude
    drop, keep = ranked[:, :k], ranked[:, k:]
    scores = grow_scores.clone().scatter_(1, index.gather(1, keep), float("-inf"))
    grown = torch.topk(scores, k, dim=1).indices
    new_index = index.scatter(1, drop, grown)
    new_weight = weight.scatter(1, drop, new_values.to(weight))
    fresh = torch.zeros_like(index, dtype=torch.bool).scatter_(1, drop, True)
    order = torch.argsort(new_index, dim=1)  # rows sorted, as a pattern file stores them
    layer.rewire(new_index.gather(1, order))
    weight.copy_(new_weight.gather(1, order))
    if optimizer is not None:
        _reset_optimizer_state(optimizer, weight, order, fresh.gather(1, order))


@torch.no_grad()
def replace_overall(layer: MaskedLinear, k: int, grow_scores: torch.Tensor, new_values: torch.Tensor,
                    optimizer: torch.optim.Optimizer | None = None) -> None:
    """Drop the k smallest-magnitude connections of a `MaskedLinear` and grow the k of largest `grow_scores`
    among those not kept; new connections take `new_values` (the weights' shape, read where grown), their
    optimiser state is 0. The number of connections stays the same."""
    mask, weight = layer.mask, layer.weight
    magnitude = torch.where(mask, weight.abs(), torch.full_like(weight, float("inf")))
    dropped = largest_overall(-magnitude, k)
    kept = mask & ~dropped
    grown = largest_overall(grow_scores.masked_fill(kept, float("-inf")), k)
    mask.copy_(kept | grown)
    weight.masked_fill_(~mask, 0.0)
    weight.copy_(torch.where(grown, new_values.to(weight), weight))
    if optimizer is not None:
        _reset_optimizer_state(optimizer, weight, None, grown | dropped)


@torch.no_grad()
def kept_per_row(layer: nn.Linear, index: torch.Tensor, junction: int) -> SparseLinear:
    """A `SparseLinear` (free fan-outs) keeping the connections `index` (N_{i+1}, fi) of a dense layer:
    their weights, the layer's bias. Draws nothing from the global RNG."""
    weight = layer.weight
    with torch.random.fork_rng(devices=[]):  # the new layer's own initialisation is overwritten at once
        kept = SparseLinear(layer.in_features, layer.out_features, index.to(torch.int32), layer.bias is not None,
                            junction=junction, fixed_fan_out=False, dtype=weight.dtype)
    kept = kept.to(weight.device)
    kept.weight.copy_(weight.gather(1, index.long()))
    if layer.bias is not None:
        kept.bias.copy_(layer.bias)
    return kept


@torch.no_grad()
def kept_overall(layer: nn.Linear, keep: torch.Tensor) -> MaskedLinear:
    """A `MaskedLinear` keeping the connections `keep` (a boolean mask of the weight's shape) of a dense
    layer: their weights (0 elsewhere), the layer's bias. Draws nothing from the global RNG."""
    weight = layer.weight
    with torch.random.fork_rng(devices=[]):
        kept = MaskedLinear(layer.in_features, layer.out_features, keep, layer.bias is not None, dtype=weight.dtype)
    kept = kept.to(weight.device)
    kept.weight.copy_(weight * keep)
    if layer.bias is not None:
        kept.bias.copy_(layer.bias)
    return kept


def index_junction(index: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """A fan-in index (N_{i+1}, fi) whose fan-outs may differ, in the pattern file's CSR form."""
    index = np.sort(index.cpu().numpy(), axis=1).astype(np.int32)
    return index.reshape(-1), np.arange(0, index.size + 1, index.shape[1], dtype=np.int64)


def mask_junction(mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """A boolean mask (N_{i+1}, N_i) in the pattern file's CSR form."""
    rows, cols = (t.cpu().numpy() for t in mask.nonzero(as_tuple=True))  # row-major: rows come sorted
    indptr = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=mask.shape[0]))))
    return cols.astype(np.int32), indptr.astype(np.int64)


def dense_junction(n_left: int, n_right: int) -> tuple[np.ndarray, None]:
    return np.tile(np.arange(n_left, dtype=np.int32), (n_right, 1)), None


def connections(layer: nn.Module) -> tuple[np.ndarray, np.ndarray | None]:
    """(junction array, indptr or None) of one CL junction layer as a pattern file stores it."""
    if isinstance(layer, SparseLinear):
        if layer.fixed_fan_out:
            return np.sort(layer.fan_in_index.cpu().numpy(), axis=1).astype(np.int32), None
        return index_junction(layer.fan_in_index)
    if isinstance(layer, MaskedLinear):
        return mask_junction(layer.mask)
    if isinstance(layer, nn.Linear):
        return dense_junction(layer.in_features, layer.out_features)
    raise TypeError(f"junction layer {type(layer).__name__} has no pattern form")


def pattern_from_junctions(template: Pattern, junctions: list[tuple[np.ndarray, np.ndarray | None]], kind: str,
                           meta: dict) -> Pattern:
    """A validated Pattern of `template`'s net and shapes with these (junction array, indptr) pairs."""
    fanouts = tuple(junction.size // n_left for (junction, _), n_left in zip(junctions, template.net))
    pattern = Pattern(template.net, fanouts, tuple(j for j, _ in junctions), kind, tuple(p for _, p in junctions),
                      template.shapes, meta)
    return pattern_from_arrays(pattern.to_arrays(), f"connections of the {kind} model")


def pattern_of(model: nn.Module, template: Pattern, kind: str, meta: dict) -> Pattern:
    """The current connections of a PatternNet's CLs as a validated Pattern (net and shapes of `template`)."""
    return pattern_from_junctions(template, [connections(layer) for layer in model.junctions()], kind, meta)


def pattern_to_tensor(pattern: Pattern) -> torch.Tensor:
    """A pattern as the bytes of its file, in a uint8 tensor (a checkpoint holds tensors only)."""
    return torch.frombuffer(bytearray(pattern.to_bytes()), dtype=torch.uint8)


def pattern_from_tensor(data: torch.Tensor, where: str) -> Pattern:
    return pattern_from_arrays(load_npz(io.BytesIO(data.cpu().numpy().tobytes())), where)
