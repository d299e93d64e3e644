"""Bottom-up training of CSC nets: grow the support layers until the accuracy is close to dense.

Reconstruction from the abstract of Hosseini et al. (DAC 2019), which trains "in a bottom-up approach by
incrementally increasing the CSC layers characteristics such as connectivity and number of synapses, to
achieve the desired accuracy given a compression rate". Our schedule (the paper's own is not available):
train the configurations of the growth ladder of `predsparse.patterns.csc` (budget `budget_weights`,
start `start_config`, steps `grow_step`: strictly more weights each, fan-in first, then a support layer)
one training run per step, and stop when the accuracy is within `target` of dense
(acc >= dense_acc - target), the budget is spent, or `max_steps` runs have been trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from predsparse.errors import PredsparseError
from predsparse.patterns.csc import CSCConfig, budget_weights, grow_step, start_config

if TYPE_CHECKING:
    from predsparse.spec import RunSpec

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


def _check_growth(target: float, dense_accuracy: float, max_steps: int) -> None:
    for name, value in (("target", target), ("dense_accuracy", dense_accuracy)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise PredsparseError(f"{name} must be a fraction in [0, 1], got {value!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise PredsparseError(f"max_steps must be an integer >= 1, got {max_steps!r}")


def _row(step: int, action: str, config: CSCConfig, accuracy: float, dense_accuracy: float, run_name: str) -> dict:
    return {
        "step": step, "action": action, "radices": config.label,
        "support_layers": ";".join(str(len(r)) for r in config.radices), "weights": config.weights,
        "dense_weights": config.dense_weights, "compression": config.compression, "accuracy": accuracy,
        "dense_accuracy": dense_accuracy, "gap": dense_accuracy - accuracy, "run_name": run_name,
    }


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
    _check_growth(target, dense_accuracy, max_steps)
    budget = budget_weights(net, compression)
    config, action = start_config(net, budget, min_layers), "start"
    growth = Growth()
    while True:
        accuracy, run_name = train_fn(config)
        growth.rows.append(_row(len(growth.rows), action, config, accuracy, dense_accuracy, run_name))
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
