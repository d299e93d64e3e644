"""Counts that need no training: the CL weights, densities and conv parameters / operations of every
Table 1 / Table 2 configuration of config.yaml, for every dataset (CIFAR included, whose data is not needed).

`config_counts.csv` (shipped beside this module) holds one row per (study, net, fan-outs) of the studies of
Tables 1 and 2 (`analysis.is_table_study`: Figs. 1, 2 and 3a) in the repository's config.yaml, the paper
preset, whatever preset the report is rendered for. Regenerate it after changing those studies:

    predsparse counts config.yaml -o src/predsparse/report/config_counts.csv

(tests/test_report_counts.py fails while the shipped file differs from what config.yaml gives). CL weights
come from `predsparse.density` (W_i = N_i fo_i); conv parameters and multiply-accumulates per sample from
the torch models (`predsparse.nn.models.count_parameters` / `count_macs`), built once per (model, net),
whose CL weight count is checked against the density accounting. Reading the file (`load_counts`) needs
no torch.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from predsparse.errors import ReportError

COLUMNS = ("study", "dataset", "model", "net", "fanouts", "kind", "junction_weights", "weights", "dense_weights",
           "junction_densities", "overall_density", "conv_params", "conv_ops")


def default_counts_path() -> Path:
    """The copy of config_counts.csv shipped with the package."""
    return Path(str(resources.files("predsparse.report") / "config_counts.csv"))


@dataclass(frozen=True)
class ConfigCount:
    """One configuration of config.yaml with its counts; densities are fractions computed from the counts."""

    study: str
    dataset: str
    model: str
    net: tuple[int, ...]
    fanouts: tuple[int, ...]
    kind: str
    junction_weights: tuple[int, ...]
    weights: int
    dense_weights: int
    conv_params: int
    conv_ops: int

    @property
    def junction_densities(self) -> tuple[float, ...]:
        return tuple(w / (a * b) for w, a, b in zip(self.junction_weights, self.net, self.net[1:]))

    @property
    def overall_density(self) -> float:
        return self.weights / self.dense_weights

    @property
    def is_dense(self) -> bool:
        return self.weights == self.dense_weights


def _ints(cell: str) -> tuple[int, ...]:
    return tuple(int(v) for v in cell.split(";")) if cell else ()


def load_counts(path=None) -> list[ConfigCount]:
    """The counts CSV (default: the shipped config_counts.csv) as ConfigCount rows."""
    path = Path(path) if path else default_counts_path()
    if not path.is_file():
        raise ReportError(f"counts file {path} does not exist")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ReportError(f"counts file {path} lacks column(s) {missing}; expected columns: {list(COLUMNS)}")
        rows = []
        for i, row in enumerate(reader):
            try:
                rows.append(ConfigCount(row["study"], row["dataset"], row["model"], _ints(row["net"]),
                                        _ints(row["fanouts"]), row["kind"], _ints(row["junction_weights"]),
                                        int(row["weights"]), int(row["dense_weights"]), int(row["conv_params"]),
                                        int(row["conv_ops"])))
            except ValueError:
                raise ReportError(f"{path}, row {i + 2}: a count is not a whole number") from None
    return rows


def build_counts(config) -> list[dict]:
    """The rows of config_counts.csv for a config (path or dict): needs torch (the models count conv layers)."""
    from predsparse.density import density
    from predsparse.nn.models import build_model, count_macs, count_parameters
    from predsparse.patterns import generate_pattern
    from predsparse.pipeline.plan import load_plan
    from predsparse.report.analysis import is_table_study
    from predsparse.summary import join_list

    plan = load_plan(config)
    configurations = {}
    for run in plan.runs:
        p = run.pattern
        if not is_table_study(run.study) or run.spec.method or p.kind not in ("dense", "random"):
            continue
        configurations.setdefault((run.study, p.net, p.fanouts), run)
    conv: dict[tuple[str, tuple[int, ...]], tuple[int, int]] = {}
    rows = []
    for (study, net, fanouts), run in configurations.items():
        d = density(net, fanouts)
        key = (run.spec.model, net)
        if key not in conv:
            # The sparsest configuration of the net keeps the model small; its CL count checks the accounting.
            sparsest = min((r for (s, n, f), r in configurations.items() if n == net and r.spec.model == key[0]),
                           key=lambda r: density(net, r.pattern.fanouts).weights)
            p = sparsest.pattern
            pattern = generate_pattern(p.net, p.fanouts, p.kind, 0, shapes=p.shapes or None,
                                       **({"generator": p.generator} if p.generator else {}))
            spec = sparsest.spec
            model = build_model(spec.model, pattern, spec.num_classes, init=spec.init, dataset=spec.dataset)
            params, macs = count_parameters(model), count_macs(model)
            expected = density(net, p.fanouts).weights
            if params["cl_weights"] != expected or macs["cl"] != expected:
                raise ReportError(f"{sparsest.study}: the model of {list(net)} has {params['cl_weights']} CL weights, "
                                  f"the density accounting {expected}")
            conv[key] = (params["conv"], macs["conv"])
        rows.append({"study": study, "dataset": run.spec.dataset, "model": run.spec.model, "net": join_list(net),
                     "fanouts": join_list(fanouts), "kind": run.pattern.kind,
                     "junction_weights": join_list(d.junction_weights), "weights": d.weights,
                     "dense_weights": d.dense_weights, "junction_densities": join_list(d.junction_densities),
                     "overall_density": f"{d.overall_density:.6g}", "conv_params": conv[key][0],
                     "conv_ops": conv[key][1]})
    return rows


def write_counts(rows: list[dict], path) -> None:
    from predsparse.io import atomic_write_csv

    atomic_write_csv(path, COLUMNS, rows)

