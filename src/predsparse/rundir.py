"""The folder of one training run (`results/runs/<study>/<run_name>/`): its files and how to read them.

Training writes it, `predsparse aggregate` and `predsparse mlflow-sync` read it; it is the source of truth
that MLflow mirrors. Light on imports (no torch, no pandas) so readers stay fast.

- `spec.json`: the run spec, written before training starts (a killed run's folder says what it was);
- `checkpoint.pt`: state after the last finished epoch (model, optimizer, RNG states, history, best model);
- `history.csv`: one row per finished epoch, columns `predsparse.summary.HISTORY_COLUMNS`;
- `curves.png`: loss and accuracy per epoch;
- `final_pattern.npz`: the connections trained, for a method that changes them (pruning, SET, RigL);
- `metrics.json`: written last, only by a run that finished: the run's figures (see `predsparse.train`);
- `failure.json`: instead of `metrics.json` when the run stopped on an error (e.g. a non-finite loss).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from predsparse.errors import ConfigError
from predsparse.io import atomic_write_csv
from predsparse.summary import HISTORY_COLUMNS

SPEC = "spec.json"
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.csv"
CURVES = "curves.png"
METRICS = "metrics.json"
FINAL_PATTERN = "final_pattern.npz"
FAILURE = "failure.json"


def write_history(path: str | Path, rows: list[dict]) -> None:
    """Atomically write per-epoch rows (dicts with at least HISTORY_COLUMNS) as CSV."""
    atomic_write_csv(path, HISTORY_COLUMNS, ({key: row[key] for key in HISTORY_COLUMNS} for row in rows))


def read_history(path: str | Path) -> list[dict]:
    """Rows of a history.csv with numbers parsed (epoch int, figures float)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != HISTORY_COLUMNS:
            raise ConfigError(f"{path}: columns {reader.fieldnames} are not the history columns {list(HISTORY_COLUMNS)}")
        return [
            {k: (v if k in ("study", "run_id") else int(v) if k == "epoch" else float(v)) for k, v in row.items()}
            for row in reader
        ]


def read_json(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read as JSON: {exc}") from None


# MLflow's own folders hold copies of run files as artifacts; they are not run folders.
_NOT_RUNS = {"mlartifacts", "mlruns"}


def run_dirs(root: str | Path) -> list[Path]:
    """Every run folder (one holding a spec.json) under `root`, sorted by path, MLflow's folders excluded."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"results folder {root} does not exist")
    return sorted(
        p.parent for p in root.rglob(SPEC)
        if not _NOT_RUNS.intersection(p.relative_to(root).parts) and not any(
            part.startswith(".") for part in p.relative_to(root).parts)
    )


def outcome(run_dir: str | Path) -> dict | None:
    """The run's metrics.json, else its failure.json, else None (still running or killed).

    A file that is not a run's outcome (not an object with `status`, `run_id` and a `spec` naming its study,
    run name and `extra` tags) is a ConfigError naming it; the figures are checked by their readers.
    """
    run_dir = Path(run_dir)
    for name in (METRICS, FAILURE):
        if (run_dir / name).is_file():
            found = read_json(run_dir / name)
            _check_outcome(found, run_dir / name)
            return found
    return None


def _check_outcome(found, path: Path) -> None:
    def bad(what: str):
        raise ConfigError(f"{path} is not a predsparse run outcome: {what}; rerun the run (predsparse train) or "
                          "move the folder away")

    if not isinstance(found, dict):
        bad(f"it holds a JSON {type(found).__name__}, not an object")
    for key in ("status", "run_id"):
        if not isinstance(found.get(key), str):
            bad(f"key '{key}' is {repr(found[key]) if key in found else 'missing'}, expected a string")
    spec = found.get("spec")
    if not isinstance(spec, dict):
        bad(f"key 'spec' is {type(spec).__name__ if spec is not None else 'missing'}, expected the run spec (an object)")
    for key in ("study", "run_name"):
        if not isinstance(spec.get(key), str):
            bad(f"spec key '{key}' is {spec.get(key)!r}, expected a string")
    if not isinstance(spec.get("extra", {}), dict):
        bad(f"spec key 'extra' is {spec['extra']!r}, expected an object of tags")
