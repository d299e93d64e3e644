"""Bottom-up training of CSC nets: grow the support layers until the accuracy is close to dense.

Reconstruction from the abstract of Hosseini et al. (DAC 2019), which trains "in a bottom-up approach by
incrementally increasing the CSC layers characteristics such as connectivity and number of synapses, to
achieve the desired accuracy given a compression rate". Our schedule (the paper's own is not available):

- Budget: a compression target x allows floor(dense_weights / x) weights (`CSCLayer.weights`, padding
  excluded) in the CSC layers together.
- Start: the sparsest fully connected configuration within the budget, at the fewest support layers
  (at least `min_layers`): every CSC layer gets `csc_radices(N_in, L, N_out)` for the smallest such L
  whose net fits. (A CSC layer that cannot have L support layers with radices >= 2 keeps as many as it can.)
- Grow, one step at a time, each step a training run and strictly more weights:
  1. fan-in: every radix of every CSC layer +1 (where that would repeat offsets mod M, the radices are
     raised one at a time, first to last, and those that cannot grow stay), if the result fits the budget;
  2. otherwise a support layer: every CSC layer gets the cheapest extra square support layer (smallest
     radix >= 2, at the first position where its offsets stay distinct), if that fits the budget;
  3. otherwise the budget is spent.
- Stop when the accuracy is within `target` of dense (acc >= dense_acc - target), the budget is spent,
  or `max_steps` runs have been trained.

`csc_plan(net, x)` walks the same ladder without training and returns its last configuration within the
budget: the fixed-compression CSC nets of the pipeline's CSC study.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from predsparse.errors import PatternError, PredsparseError
from predsparse.density import dense_junction_weights
from predsparse.patterns.csc import CSCLayer, csc_layers, csc_radices, format_radices

if TYPE_CHECKING:
    from predsparse.spec import RunSpec

# Beyond this many support layers a CSC layer of any realistic size has long stopped getting sparser.
MAX_SUPPORT_LAYERS = 16


@dataclass(frozen=True)
class CSCConfig:
    """Radices for every CSC layer of a net (one tuple per dense layer replaced)."""

    net: tuple[int, ...]
    radices: tuple[tuple[int, ...], ...]

    @cached_property
    def layers(self) -> tuple[CSCLayer, ...]:
        return csc_layers(self.net, self.radices)

    @property
    def weights(self) -> int:
        return sum(layer.weights for layer in self.layers)

    @property
    def dense_weights(self) -> int:
        return sum(layer.dense_weights for layer in self.layers)

    @property
    def compression(self) -> float:
        return self.dense_weights / self.weights

    @property
    def label(self) -> str:
        """The radices as on the command line, e.g. '3,10,10/2,10,5/1,10'."""
        return format_radices(self.radices)

    @property
    def slug(self) -> str:
        """The radices as a file/run name part, e.g. 'r3x10x10_2x10x5_1x10'."""
        return "r" + "_".join("x".join(map(str, group)) for group in self.radices)


def budget_weights(net: Sequence[int], compression: float) -> int:
    """floor(dense weights / compression): the most weights a CSC net of compression x may have."""
    if isinstance(compression, bool) or not isinstance(compression, (int, float)) or not compression >= 1:
        raise PatternError(f"compression must be a number >= 1 (dense = 1), got {compression!r}")
    dense = sum(dense_junction_weights(net))
    return math.floor(dense / compression)


def _sparsest_radices(n_in: int, n_out: int, num_layers: int) -> tuple[int, ...]:
    """`csc_radices` with at most `num_layers` support layers: as many as the layer can take."""
    for count in range(num_layers, 0, -1):
        try:
            return csc_radices(n_in, count, n_out)
        except PatternError:
            continue
    raise AssertionError("unreachable: one support layer always works")


def sparsest_config(net: Sequence[int], num_layers: int) -> CSCConfig:
    """Every CSC layer at its sparsest fully connected radices with (up to) `num_layers` support layers."""
    net = tuple(int(n) for n in net)
    radices = tuple(_sparsest_radices(a, b, num_layers) for a, b in zip(net[:-1], net[1:]))
    return CSCConfig(net, radices)


def start_config(net: Sequence[int], budget: int, min_layers: int = 2) -> CSCConfig:
    """The sparsest fully connected configuration within `budget` weights, at the fewest support layers."""
    if not isinstance(min_layers, int) or isinstance(min_layers, bool) or min_layers < 1:
        raise PatternError(f"min_layers must be an integer >= 1, got {min_layers!r}")
    sparsest = None
    for num_layers in range(min_layers, max(min_layers, MAX_SUPPORT_LAYERS) + 1):
        config = sparsest_config(net, num_layers)
        if config.weights <= budget:
            return config
        if sparsest is None or config.weights < sparsest.weights:
            sparsest = config
    raise PatternError(
        f"net {list(net)}: a budget of {budget} weights is below the sparsest fully connected CSC net "
        f"({sparsest.weights} weights, radices {sparsest.label}, compression {sparsest.compression:.1f}x); "
        f"choose a compression <= {sparsest.compression:.1f}"
    )


def _valid(layer: CSCLayer, radices: Sequence[int]) -> bool:
    try:
        CSCLayer(layer.n_in, layer.n_out, tuple(radices))
    except PatternError:
        return False
    return True


def _fan_in_step(layer: CSCLayer) -> tuple[int, ...]:
    """Every radix +1; where that repeats offsets mod M, raise them one at a time, skipping those that can't."""
    radices = [r + 1 for r in layer.radices]
    if _valid(layer, radices):
        return tuple(radices)
    radices = list(layer.radices)
    for l in range(len(radices)):
        radices[l] += 1
        if not _valid(layer, radices):
            radices[l] -= 1
    return tuple(radices)


def _support_step(layer: CSCLayer) -> tuple[int, ...]:
    """The cheapest extra square support layer: smallest radix >= 2 at the first valid position."""
    radices = list(layer.radices)
    # Square positions: after the folding first support layer, before the unfolding last one.
    first = 1 if layer.n_in > layer.n_out else 0
    last = len(radices) - 1 if layer.n_out > layer.n_in else len(radices)
    for radix in range(2, layer.m + 1):
        for position in range(first, last + 1):
            candidate = radices[:position] + [radix] + radices[position:]
            if _valid(layer, candidate):
                return tuple(candidate)
    return layer.radices


def grow_step(config: CSCConfig, budget: int) -> tuple[CSCConfig, str] | None:
    """The next configuration of the ladder and its action ('fan-in' or 'support layer'), or None."""
    for action, step in (("fan-in", _fan_in_step), ("support layer", _support_step)):
        grown = CSCConfig(config.net, tuple(step(layer) for layer in config.layers))
        if grown.radices != config.radices and grown.weights <= budget:
            return grown, action
    return None


def csc_plan(net: Sequence[int], compression: float, min_layers: int = 2) -> CSCConfig:
    """The largest configuration of the growth ladder within the budget of `compression`."""
    budget = budget_weights(net, compression)
    config = start_config(net, budget, min_layers)
    while (step := grow_step(config, budget)) is not None:
        config = step[0]
    return config


GROWTH_COLUMNS = ("step", "action", "radices", "support_layers", "weights", "dense_weights", "compression",
                  "accuracy", "dense_accuracy", "gap", "run_name")


@dataclass
class Growth:
    """The rows of a growth (one per trained configuration) and why it stopped."""

    rows: list[dict] = field(default_factory=list)
    stop_reason: str = ""

    @property
    def final(self) -> dict:
        return self.rows[-1]


def grow(
    net: Sequence[int],
    compression: float,
    target: float,
    dense_accuracy: float,
    train_fn: Callable[[CSCConfig], tuple[float, str]],
    *,
    min_layers: int = 2,
    max_steps: int = 20,
    on_step: Callable[[Growth], None] | None = None,
) -> Growth:
    """Train CSC configurations bottom-up until within `target` of `dense_accuracy` or out of budget.

    `train_fn(config)` trains one configuration and returns (accuracy, run name); accuracies are
    fractions. `on_step(growth)` is called after every step (e.g. to write the rows to disk).
    Stop reasons: 'target reached', 'budget spent', 'step limit'.
    """
    for name, value in (("target", target), ("dense_accuracy", dense_accuracy)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise PredsparseError(f"{name} must be a fraction in [0, 1], got {value!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise PredsparseError(f"max_steps must be an integer >= 1, got {max_steps!r}")
    budget = budget_weights(net, compression)
    config, action = start_config(net, budget, min_layers), "start"
    growth = Growth()
    while True:
        accuracy, run_name = train_fn(config)
        growth.rows.append({
            "step": len(growth.rows), "action": action, "radices": config.label,
            "support_layers": ";".join(str(len(r)) for r in config.radices), "weights": config.weights,
            "dense_weights": config.dense_weights, "compression": config.compression, "accuracy": accuracy,
            "dense_accuracy": dense_accuracy, "gap": dense_accuracy - accuracy, "run_name": run_name,
        })
        step = grow_step(config, budget)
        if accuracy >= dense_accuracy - target:
            growth.stop_reason = "target reached"
        elif step is None:
            growth.stop_reason = "budget spent"
        elif len(growth.rows) >= max_steps:
            growth.stop_reason = "step limit"
        if on_step is not None:
            on_step(growth)
        if growth.stop_reason:
            return growth
        config, action = step


def write_growth(growth: Growth, path: str | Path) -> None:
    """Atomically write the growth rows as CSV (`GROWTH_COLUMNS`, plus stop_reason on every row)."""
    from predsparse.io import atomic_write_csv

    rows = ({**row, "stop_reason": growth.stop_reason} for row in growth.rows)
    atomic_write_csv(path, (*GROWTH_COLUMNS, "stop_reason"), rows)


def run_trainer(base: "RunSpec", out_root: str | Path, compression: float, track: bool = True):
    """A `train_fn` for `grow` that trains each configuration with `predsparse.train.train_run`.

    Configuration c becomes the run `<base.run_name>-csc<x>x-<c.slug>` in `out_root/<run name>/` (its
    pattern file `pattern.npz` beside the results), with the base spec's dataset and hyper-parameters and
    `extra` = {method: csc, compression: x, radices, csc_weights}: an MLflow run and a summary row. A
    finished run is not trained again, so a killed growth resumes where it stopped.
    """
    from dataclasses import replace

    from predsparse.patterns.csc import csc_pattern
    from predsparse.train import train_run

    def train(config: CSCConfig) -> tuple[float, str]:
        name = f"{base.run_name}-csc{compression:g}x-{config.slug}"
        run_dir = Path(out_root) / name
        pattern_path = run_dir / "pattern.npz"
        csc_pattern(config.net, config.radices).save(pattern_path)
        extra = {**base.extra, "method": "csc", "compression": compression, "radices": config.label,
                 "csc_weights": config.weights}
        spec = replace(base, run_name=name, pattern=str(pattern_path), extra=extra)
        metrics = train_run(spec, run_dir, track=track)
        return float(metrics["best_val_acc"]), name

    return train
