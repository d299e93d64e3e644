"""Read and check the report's inputs, and group runs that differ only in their seed.

Inputs: results/summary.csv and results/history.csv (columns of `predsparse.summary`), the paper's numbers
(paper_numbers.csv) and an optional run-info JSON written by the pipeline. Any malformed input is a
`ReportError` naming the file, the row and the bad value; nothing is drawn from a file that failed.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from predsparse.errors import ReportError
from predsparse.summary import HISTORY_COLUMNS, SUMMARY_COLUMNS, split_list

PAPER_COLUMNS = ("source", "study", "dataset", "net", "fanouts", "quantity", "value", "unit", "note")

_INTEGER = ("weights", "dense_weights", "conv_params", "conv_ops", "seed", "epochs", "best_val_epoch")
_FLOAT = ("overall_density", "scatter", "best_val_acc", "val_acc_epoch1", "val_acc_epoch5", "test_acc",
          "wall_time_s")
_REQUIRED_CELLS = ("study", "run_id", "method", "dataset", "net", "fanouts", "overall_density", "weights",
                   "dense_weights", "conv_params", "conv_ops", "seed", "epochs", "best_val_acc")
_LISTS = {"net": int, "fanouts": int, "junction_densities": float, "scatter_vector": float}
# The training settings of a run (strings as summary.csv spells them; "" where not recorded).
SETTINGS = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "init")
# Columns added after summaries were first written; an older summary lacks them and reads as "" (fixed
# connections, fan-outs given rather than allocated, settings not recorded).
_LATER_COLUMNS = ("method_options", "allocation", *SETTINGS)

# The keys of the pipeline's run_info.json the report reads, and their types (others are ignored).
RUN_INFO_KEYS = {"preset": str, "description": str, "config": str, "command": str, "git_commit": str,
                 "device": str, "host": str, "tracking_uri": str, "versions": dict, "deviations": list,
                 "runs": int, "studies": dict}


def _read_csv(path: Path, columns, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{what} file {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ReportError(f"{what} file {path} is not a readable CSV: {str(exc).splitlines()[0]}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ReportError(f"{what} file {path} lacks column(s) {missing}; expected columns: {list(columns)}")
    return frame


def _numbers(frame: pd.DataFrame, column: str, path: Path, integer: bool) -> pd.Series:
    """Column as numbers; empty cells become NaN, anything else unparsable is an error."""
    def parse(row, cell):
        if cell.strip() == "":
            return math.nan
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
            bad = True
        else:
            bad = not math.isfinite(value) or (integer and value != int(value))
        if bad:
            kind = "an integer" if integer else "a finite number"
            raise ReportError(f"{path}, row {row + 2}: column '{column}' is '{cell}', expected {kind}")
        return value
    return pd.Series([parse(i, c) for i, c in enumerate(frame[column])], index=frame.index, dtype=float)


def load_summary(path) -> pd.DataFrame:
    """results/summary.csv with numbers parsed and lists (net, fan-outs, ...) as tuples."""
    path = Path(path)
    frame = _read_csv(path, [c for c in SUMMARY_COLUMNS if c not in _LATER_COLUMNS], "summary")
    for column in _LATER_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    if frame.empty:
        raise ReportError(f"summary file {path} has no runs")
    for column in _REQUIRED_CELLS:
        empty = frame.index[frame[column].str.strip() == ""]
        if len(empty):
            raise ReportError(f"{path}, row {empty[0] + 2}: column '{column}' is empty")
    for column in _INTEGER + _FLOAT:
        frame[column] = _numbers(frame, column, path, column in _INTEGER)
    for column, cast in _LISTS.items():
        def parse(row, cell, column=column, cast=cast):
            try:
                return tuple(split_list(cell, cast))
            except ValueError:
                raise ReportError(f"{path}, row {row + 2}: column '{column}' is '{cell}', expected a "
                                       f"';'-separated list of {cast.__name__}s") from None
        frame[column] = [parse(i, c) for i, c in enumerate(frame[column])]
    duplicated = frame["run_id"][frame["run_id"].duplicated()]
    if len(duplicated):
        raise ReportError(f"{path}: run_id '{duplicated.iloc[0]}' appears in more than one row")
    return frame


def load_history(path) -> pd.DataFrame:
    """results/history.csv with numbers parsed (one row per run per epoch)."""
    path = Path(path)
    frame = _read_csv(path, HISTORY_COLUMNS, "history")
    for column in HISTORY_COLUMNS[2:]:
        frame[column] = _numbers(frame, column, path, column == "epoch")
    return frame


def load_paper(path) -> pd.DataFrame:
    """paper_numbers.csv as strings (values are numbers, ';'-lists, booleans or text)."""
    return _read_csv(Path(path), PAPER_COLUMNS, "paper numbers")


def load_run_info(path) -> dict:
    """The pipeline's run-info JSON; every key optional (null counts as absent), each of a known type."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"run-info file {path} does not exist")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"run-info file {path} is not valid JSON: {exc}") from None
    if not isinstance(info, dict):
        raise ReportError(f"run-info file {path} must hold a JSON object, got {type(info).__name__}")
    info = {key: value for key, value in info.items() if value is not None}
    for key, kind in RUN_INFO_KEYS.items():
        if key in info and (not isinstance(info[key], kind) or isinstance(info[key], bool)):
            raise ReportError(f"run-info file {path}: '{key}' is {type(info[key]).__name__}, expected "
                                   f"{kind.__name__}")
    if not all(isinstance(d, str) for d in info.get("deviations", [])):
        raise ReportError(f"run-info file {path}: 'deviations' must be a list of strings")
    return info


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation over the seeds of a group (sd 0 for one seed)."""

    mean: float
    sd: float
    n: int

    @classmethod
    def of(cls, values) -> "Stat":
        values = [v for v in values if not math.isnan(v)]
        if not values:
            return cls(math.nan, math.nan, 0)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), sd, len(values))


@dataclass(frozen=True)
class Group:
    """The runs of one configuration (everything but the seed), summarised over seeds.

    net = (N_1, ..., N_{J+1}), fanouts = (fo_1, ..., fo_J); densities are fractions; scatter_vector is
    S = [S1f, S1b, ..., Sf, Sb] averaged over seeds (random patterns differ per seed). wall_time is the
    training wall time per run in seconds, epoch_time the same per epoch of each run. optimizer ... init are
    the runs' training settings as summary.csv spells them ("" in summaries written before they were columns).
    """

    study: str
    method: str
    method_options: str
    allocation: str
    dataset: str
    variant: str
    model: str
    net: tuple[int, ...]
    fanouts: tuple[int, ...]
    kind: str
    pattern_options: str
    junction_densities: tuple[float, ...]
    overall_density: float
    weights: int
    dense_weights: int
    scatter: float
    scatter_vector: tuple[float, ...]
    seeds: tuple[int, ...]
    run_ids: tuple[str, ...]
    epochs: int
    best_val: Stat
    test: Stat
    conv_params: float
    conv_ops: float
    wall_time: Stat
    epoch_time: Stat
    optimizer: str = ""
    lr: str = ""
    momentum: str = ""
    weight_decay: str = ""
    batch_size: str = ""
    init: str = ""

    @property
    def is_dense(self) -> bool:
        return self.weights == self.dense_weights


GROUP_KEY = ("study", "method", "method_options", "allocation", "dataset", "variant", "model", "net", "fanouts",
             "kind", "pattern_options", *SETTINGS)


def group_runs(summary: pd.DataFrame) -> list[Group]:
    """One Group per configuration, in a stable order (study, then first appearance)."""
    groups = []
    for key, runs in summary.groupby(list(GROUP_KEY), sort=False):
        fields = dict(zip(GROUP_KEY, key))
        first = runs.iloc[0]
        vectors = [v for v in runs["scatter_vector"] if v]
        vector = tuple(statistics.fmean(col) for col in zip(*vectors)) if vectors else ()
        groups.append(Group(
            **fields,
            junction_densities=first["junction_densities"],
            overall_density=float(first["overall_density"]),
            weights=int(first["weights"]),
            dense_weights=int(first["dense_weights"]),
            scatter=Stat.of(runs["scatter"]).mean,
            scatter_vector=vector,
            seeds=tuple(sorted(int(s) for s in runs["seed"])),
            run_ids=tuple(runs["run_id"]),
            epochs=int(runs["epochs"].max()),
            best_val=Stat.of(runs["best_val_acc"]),
            test=Stat.of(runs["test_acc"]),
            conv_params=float(first["conv_params"]),
            conv_ops=float(first["conv_ops"]),
            wall_time=Stat.of(runs["wall_time_s"]),
            epoch_time=Stat.of(runs["wall_time_s"] / runs["epochs"]),
        ))
    order = {name: i for i, name in enumerate(dict.fromkeys(summary["study"]))}
    return sorted(groups, key=lambda g: order[g.study])


def milestone_accuracies(group: Group, history: pd.DataFrame) -> dict[int, Stat]:
    """Best validation accuracy after 1, 5 and E epochs (E = the group's epochs), over seeds.

    Taken from history.csv (best over epochs 1..k of each run); the E value is the summary's best_val_acc,
    so the number printed on top of a group equals the summary.
    """
    runs = history[history["run_id"].isin(group.run_ids)]
    stats = {}
    for k in sorted({1, 5} & set(range(1, group.epochs))):
        best = runs[runs["epoch"] <= k].groupby("run_id")["val_acc"].max()
        if len(best):
            stats[k] = Stat.of(best.tolist())
    stats[group.epochs] = group.best_val
    return stats
