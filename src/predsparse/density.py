"""Density accounting of the connected layers (CLs): Section 2.1, Tables 1 and 2, the Fig. 3 sweep.

Junction i joins N_i left to N_{i+1} right neurons with W_i = N_i * fo_i = N_{i+1} * fi_i weights, so
its density is W_i / (N_i N_{i+1}) = fo_i / N_{i+1}, and the overall CL density is
sum_i W_i / sum_i N_i N_{i+1}. Biases are not counted, as in the paper's tables (e.g. CIFAR-10
conv+2CLs with fo = 1,1: 4096 + 512 = 4608 weights against 2,105,344, 457x fewer).

Operations: a CL's forward pass costs one multiply-accumulate (MAC) per weight per sample, so the CLs'
ops equal their weights (the paper: "the number of ops for CLs is nearly the same as their number of
parameters"). Overall reductions (Table 2) add the parameters and ops of the other layers (conv), which
the caller supplies: reduction = (dense CL - sparse CL) / (other + dense CL).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from predsparse.errors import PatternError
from predsparse.patterns.format import Pattern, check_net, fanins, valid_fanouts

# Enumerating fan-out combinations is exhaustive; beyond this many candidates, ask for a tolerance.
_MAX_CANDIDATES = 20_000_000


@dataclass(frozen=True)
class Density:
    """Weights, densities and ops of a net's CLs. Densities and reductions are fractions, not percent.

    `weights`/`dense_weights` are the CL totals; `macs`/`dense_macs` the CLs' multiply-accumulates per
    sample; `compression` = dense_weights / weights; `param_reduction`/`op_reduction` are the overall
    fractions saved counting `other_params`/`other_ops` (conv layers), as in Table 2.
    """

    net: tuple[int, ...]
    fanouts: tuple[int, ...]
    fanins: tuple[int, ...]
    junction_weights: tuple[int, ...]
    junction_dense_weights: tuple[int, ...]
    junction_densities: tuple[float, ...]
    weights: int
    dense_weights: int
    overall_density: float
    macs: int
    dense_macs: int
    compression: float
    other_params: int
    other_ops: int
    param_reduction: float
    op_reduction: float

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


def junction_weights(net: Sequence[int], fanouts: Sequence[int]) -> tuple[int, ...]:
    """W_i = N_i * fo_i for every junction."""
    net, fanouts = check_net(net, fanouts)
    return tuple(n * fo for n, fo in zip(net[:-1], fanouts))


def junction_densities(net: Sequence[int], fanouts: Sequence[int]) -> tuple[float, ...]:
    """W_i / (N_i N_{i+1}) = fo_i / N_{i+1} for every junction."""
    net, fanouts = check_net(net, fanouts)
    return tuple(fo / n_right for fo, n_right in zip(fanouts, net[1:]))


def dense_junction_weights(net: Sequence[int]) -> tuple[int, ...]:
    """N_i N_{i+1} for every junction: the weights of the fully connected net."""
    return tuple(a * b for a, b in zip(net[:-1], net[1:]))


def overall_density(net: Sequence[int], fanouts: Sequence[int]) -> float:
    """sum_i W_i / sum_i N_i N_{i+1}."""
    return sum(junction_weights(net, fanouts)) / sum(dense_junction_weights(net))


def _density(net, fanouts, weights, other_params: int, other_ops: int, totals: tuple[int, int] | None = None) -> Density:
    """The account of junction weights `weights`; `totals` = (weights, dense weights) overrides the CL totals."""
    for name, value in (("other_params", other_params), ("other_ops", other_ops)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise PatternError(f"{name} {value!r} must be a whole number >= 0")
    dense = dense_junction_weights(net)
    total, dense_total = totals or (sum(weights), sum(dense))
    saved = dense_total - total
    return Density(
        net=net,
        fanouts=fanouts,
        fanins=fanins(net, fanouts),
        junction_weights=tuple(weights),
        junction_dense_weights=dense,
        junction_densities=tuple(w / d for w, d in zip(weights, dense)),
        weights=total,
        dense_weights=dense_total,
        overall_density=total / dense_total,
        macs=total,
        dense_macs=dense_total,
        compression=dense_total / total,
        other_params=int(other_params),
        other_ops=int(other_ops),
        param_reduction=saved / (int(other_params) + dense_total),
        op_reduction=saved / (int(other_ops) + dense_total),
    )


def density(net: Sequence[int], fanouts: Sequence[int], other_params: int = 0, other_ops: int = 0) -> Density:
    """The full density account of `net` with fan-outs `fanouts` (see `Density`)."""
    net, fanouts = check_net(net, fanouts)
    return _density(net, fanouts, junction_weights(net, fanouts), other_params, other_ops)


def pattern_density(pattern: Pattern, other_params: int = 0, other_ops: int = 0) -> Density:
    """The density account of a pattern, counting the connections its junction arrays really hold.

    A CSC pattern's junctions are support layers; its totals compare the weights that can reach the
    output (padding excluded) with the dense layers the CSC layers replace, both recorded in its meta.
    """
    weights = tuple(pattern.num_weights(i) for i in range(pattern.num_junctions))
    totals = (int(pattern.meta["weights"]), int(pattern.meta["dense_weights"])) if pattern.kind == "csc" else None
    return _density(tuple(pattern.net), tuple(pattern.fanouts), weights, other_params, other_ops, totals)


def valid_splits(net: Sequence[int], overall: float, tol: float = 0.0) -> list[tuple[int, ...]]:
    """Every valid fan-out combination whose overall CL density is within `tol` of `overall`.

    A fan-out is valid when fi is whole and 1 <= fo <= N_{i+1}. The list is sorted by junction-1
    density, then junction 2, ... (the x-axis of Fig. 3b, c). `overall` and `tol` are fractions;
    tol = 0 keeps exact hits only.
    """
    net, _ = check_net(net)
    if not 0.0 < overall <= 1.0:
        raise PatternError(f"overall density {overall} must be in (0, 1] (a fraction, e.g. 0.25 for 25%)")
    if not tol >= 0.0:
        raise PatternError(f"tolerance {tol} must be >= 0 (a fraction of density, e.g. 0.01)")
    dense_total = sum(dense_junction_weights(net))
    # Integer weight bounds; the slack absorbs float rounding of overall * dense_total.
    low = int(np.ceil((overall - tol) * dense_total - 1e-9 * dense_total))
    high = int(np.floor((overall + tol) * dense_total + 1e-9 * dense_total))
    options = [np.asarray(valid_fanouts(a, b), dtype=np.int64) for a, b in zip(net[:-1], net[1:])]
    weights = [fo * n for fo, n in zip(options, net[:-1])]
    # Smallest and largest weights the junctions after junction k can still add: prune partial sums.
    rest_min = np.cumsum([w.min() for w in weights][::-1])[::-1].tolist() + [0]
    rest_max = np.cumsum([w.max() for w in weights][::-1])[::-1].tolist() + [0]
    choices = np.zeros((1, 0), dtype=np.int64)
    partial = np.zeros(1, dtype=np.int64)
    for k, (fo, w) in enumerate(zip(options, weights)):
        if partial.size * fo.size > _MAX_CANDIDATES:
            raise PatternError(
                f"net {list(net)} has too many fan-out combinations near {overall:g} to enumerate "
                f"({partial.size * fo.size} partial candidates at junction {k + 1}); use a smaller tolerance"
            )
        sums = (partial[:, None] + w[None, :]).ravel()
        keep = (sums + rest_min[k + 1] <= high) & (sums + rest_max[k + 1] >= low)
        rows = np.repeat(np.arange(partial.size), fo.size)[keep]
        choices = np.column_stack([choices[rows], np.tile(fo, partial.size)[keep]])
        partial = sums[keep]
    order = np.lexsort(choices.T[::-1]) if choices.size else np.zeros(0, dtype=np.int64)
    return [tuple(int(v) for v in row) for row in choices[order]]


def nearest_split(net: Sequence[int], overall: float) -> tuple[int, ...]:
    """The valid fan-out combination whose overall density is closest to `overall` (ties: lower)."""
    net, _ = check_net(net)
    tol = 1.0 / sum(dense_junction_weights(net))
    while not (splits := valid_splits(net, overall, tol)):
        tol *= 2  # reaches every combination once tol >= 1
    return min(splits, key=lambda split: (abs(overall_density(net, split) - overall), overall_density(net, split)))
