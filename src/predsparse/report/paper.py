"""Ours vs the paper: for every row of paper_numbers.csv our runs cover, our value beside the paper's.

A paper row is matched to our runs on study (through `Study.paper_study`), dataset, net and fan-outs, and
its quantity says what to compute. Agreement rules (stated in the report):
- accuracies: within ACC_TOLERANCE_PP percentage points;
- counts, densities, parameters, reductions, scatter values: equal to the paper's printed precision (within
  half a unit of its last printed digit: "6.3" covers 6.25..6.35) or within REL_TOLERANCE of its value,
  whichever is wider (derived percentages such as Table 2's reductions carry the paper's own rounding);
- yes/no statements: the same answer, ours decided with analysis.NO_LOSS_PP;
- orderings: the same order.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path

import pandas as pd

from predsparse.report.analysis import (BUDGET_RTOL, NO_LOSS_PP, PAPER_METHODS, Savings, dense_baseline,
                                        no_accuracy_loss, savings)
from predsparse.report.inputs import Group
from predsparse.report.studies import STUDIES

ACC_TOLERANCE_PP = 2.0
REL_TOLERANCE = 0.01


def default_paper_path() -> Path:
    """The copy of paper_numbers.csv shipped with the package."""
    return Path(str(resources.files("predsparse.report") / "paper_numbers.csv"))


@dataclass(frozen=True)
class Ours:
    """Our value for one paper row: a number, a list of numbers, a yes/no or a text."""

    value: float | tuple[float, ...] | bool | str
    groups: tuple[Group, ...]  # the run groups it was computed from
    anchor: float | None = None  # x position of the paper point in our figure, where it has one


@dataclass(frozen=True)
class Comparison:
    row: dict  # the paper_numbers.csv row
    our_study: str
    ours: Ours
    paper_text: str
    ours_text: str
    difference: str
    agree: bool
    tolerance: str

    @property
    def paper_value(self) -> float:
        return float(self.row["value"])


def _ints(cell: str) -> tuple[int, ...] | None:
    parts = [p for p in re.split(r"[-;]", cell) if p]
    return tuple(int(p) for p in parts) if parts and all(p.isdigit() for p in parts) else None


def _mean_acc_pct(groups) -> float:
    return sum(g.best_val.mean for g in groups) / len(groups) * 100


def _by_fanouts(row, groups):
    """The group of the row's fan-outs; an empty fan-out cell means the fully connected net."""
    fanouts = _ints(row["fanouts"])
    match = [g for g in groups if (g.is_dense if fanouts is None else g.fanouts == fanouts)]
    return match[0] if len(match) == 1 else None


def _split_points(groups):
    return sorted((g for g in groups if len(g.junction_densities) >= 2), key=lambda g: g.junction_densities[0])


def _eighths(group) -> int:
    return sum(1 for s in group.scatter_vector if abs(s - 0.125) < 1e-9)


class _Quantities:
    """quantity name -> how to compute ours from the matching groups (None: not covered)."""

    def __init__(self, table2: list[Savings]):
        self.table2 = table2

    def compute(self, row, groups) -> Ours | None:
        quantity = row["quantity"]
        method = getattr(self, quantity, None)
        if method is None and quantity.startswith("acc_S_eighth_x"):
            return self.acc_S_eighth(row, groups, int(quantity.rsplit("x", 1)[1]))
        return method(row, groups) if method else None

    def junction_densities(self, row, groups):
        g = _by_fanouts(row, groups)
        return g and Ours(tuple(100 * d for d in g.junction_densities), (g,), g.overall_density)

    def overall_cl_density(self, row, groups):
        g = _by_fanouts(row, groups)
        return g and Ours(100 * g.weights / g.dense_weights, (g,), g.overall_density)

    def _savings(self, groups) -> Savings | None:
        nets = {g.net for g in groups}
        match = [s for s in self.table2 if s.net in nets and s.study in {g.study for g in groups}]
        return match[0] if len(match) == 1 else None

    def fc_cl_params(self, row, groups):
        s = self._savings(groups)
        return s and Ours(s.dense.dense_weights / 1e6, (s.dense,))

    def sparse_cl_params(self, row, groups):
        s = self._savings(groups)
        return s and s.sparse and Ours(s.sparse.weights / 1e6, (s.dense, s.sparse), s.sparse.overall_density)

    def _finite(self, value, used):
        return Ours(value, used) if not math.isnan(value) else None

    def overall_param_reduction(self, row, groups):
        s = self._savings(groups)
        return s and s.sparse and self._finite(s.param_reduction, (s.dense, s.sparse))

    def overall_op_reduction(self, row, groups):
        s = self._savings(groups)
        return s and s.sparse and self._finite(s.op_reduction, (s.dense, s.sparse))

    def conv_params(self, row, groups):
        s = self._savings(groups)
        return s and self._finite(s.conv_params / 1e6, (s.dense,))

    def conv_ops(self, row, groups):
        s = self._savings(groups)
        return s and self._finite(s.conv_ops / 1e9, (s.dense,))

    def best_val_acc_30ep(self, row, groups):
        g = _by_fanouts(row, groups)
        return g and Ours(g.best_val.mean * 100, (g,), g.overall_density)

    def _within_dense(self, row, groups):
        g = _by_fanouts(row, groups)
        dense = g and dense_baseline(groups, g)
        return dense and Ours(no_accuracy_loss(g, dense), (g, dense), g.overall_density)

    matches_fc = _within_dense
    negligible_degradation = _within_dense

    def ordering(self, row, groups):
        """'224@12.5%>112@25%>...': hidden size x @ overall density, best first; ours in our order."""
        items = []
        for item in row["value"].split(">"):
            hidden, density = item.rstrip("%").split("@")
            match = [g for g in groups if len(g.net) == 3 and g.net[1] == int(hidden)
                     and math.isclose(g.overall_density * 100, float(density), rel_tol=BUDGET_RTOL)]
            if len(match) != 1:
                return None
            items.append((item, match[0]))
        ranked = sorted(items, key=lambda it: -it[1].best_val.mean)
        return Ours(">".join(item for item, _ in ranked), tuple(g for _, g in items))

    def acc_S_eighth(self, row, groups, count):
        match = [g for g in groups if g.kind == "planned" and g.scatter_vector
                 and abs(min(g.scatter_vector) - 0.125) < 1e-9 and _eighths(g) == count]
        return match and Ours(_mean_acc_pct(match), tuple(match), 0.125)

    def planned_min_S(self, row, groups):
        planned = [g for g in groups if g.kind == "planned" and not math.isnan(g.scatter)]
        return planned and Ours(min(g.scatter for g in planned), tuple(planned))

    def _split_end(self, groups, end):
        points = _split_points(groups)
        return points and Ours(_mean_acc_pct([points[end]]), (points[end],), points[end].junction_densities[0])

    def acc_j1_min_j2_max(self, row, groups):
        return self._split_end(groups, 0)

    def acc_j1_max_j2_min(self, row, groups):
        return self._split_end(groups, -1)

    def best_split(self, row, groups):
        points = _split_points(groups)
        if not points:
            return None
        best = max(points, key=lambda g: g.best_val.mean)
        return Ours(tuple(100 * d for d in best.junction_densities), (best,), best.junction_densities[0])


def _half_unit(text: str) -> float:
    """Half a unit of the last printed digit: '6.3' -> 0.05, '13' -> 0.5."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return 0.5 * 10.0 ** -decimals


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"


def _judge(row, ours: Ours) -> tuple[str, str, bool, str]:
    """(ours as text, difference, agree, tolerance) for one paper row."""
    paper, unit, quantity = row["value"], row["unit"], row["quantity"]
    if unit == "bool":
        ours_bool = bool(ours.value)
        return ("yes" if ours_bool else "no"), "", ours_bool == (paper.strip() == "1"), \
            f"same answer (no loss: within {NO_LOSS_PP:g} pp of dense)"
    if unit == "text":
        return str(ours.value), "", str(ours.value) == paper, "same order"
    paper_parts = paper.split(";")
    ours_values = ours.value if isinstance(ours.value, tuple) else (ours.value,)
    if len(paper_parts) != len(ours_values):
        return "; ".join(_fmt(v) for v in ours_values), "", False, "same number of values"
    diffs = [o - float(p) for o, p in zip(ours_values, paper_parts)]
    if "acc" in quantity:
        tolerances = [ACC_TOLERANCE_PP] * len(diffs)
        tolerance = f"+/-{ACC_TOLERANCE_PP:g} pp"
    else:
        tolerances = [max(_half_unit(p), REL_TOLERANCE * abs(float(p))) for p in paper_parts]
        tolerance = "+/-" + "; ".join(f"{t:.3g}" for t in tolerances)
    agree = all(abs(d) <= t + 1e-9 for d, t in zip(diffs, tolerances))
    return ("; ".join(_fmt(v) for v in ours_values), "; ".join(f"{d:+.3g}" for d in diffs), agree, tolerance)


def compare(paper: pd.DataFrame, groups: list[Group]) -> tuple[list[Comparison], list[tuple[dict, str]]]:
    """(comparisons for the paper rows our runs cover, (row, why not) for the rows they do not cover)."""
    quantities = _Quantities(savings(groups))
    covered, uncovered = [], []
    for row in paper.to_dict("records"):
        ours_studies = [s.name for s in STUDIES.values() if s.paper_study == row["study"]]
        net = _ints(row["net"])
        candidates = [g for g in groups if g.study in ours_studies and g.dataset == row["dataset"]
                      and g.method in PAPER_METHODS and (net is None or g.net == net)]
        ours = quantities.compute(row, candidates) if candidates else None
        if not ours:
            if not ours_studies:
                why = "no study of ours reproduces it"
            elif not candidates:
                why = f"not run ({', '.join(ours_studies)})"
            else:
                why = "not given by the runs (configuration, dense baseline or count missing)"
            uncovered.append((row, why))
            continue
        ours_text, difference, agree, tolerance = _judge(row, ours)
        covered.append(Comparison(row, ours.groups[0].study, ours, row["value"], ours_text, difference, agree,
                                  tolerance))
    return covered, uncovered


def fraction_label(value: float, max_denominator: int = 1024) -> str:
    """1 -> '1', 0.125 -> '1/8', 0.75 -> '3/4' where exact with a power-of-two denominator (window counts
    of the paper's nets); anything else with two decimals ('0.68')."""
    frac = Fraction(value).limit_denominator(max_denominator)
    exact = abs(float(frac) - value) < 1e-9 and frac.denominator & (frac.denominator - 1) == 0
    if exact:
        return str(frac.numerator) if frac.denominator == 1 else f"{frac.numerator}/{frac.denominator}"
    return f"{value:.2f}"


def scatter_label(vector) -> str:
    """The paper's label of a point in Fig. 7: '[1, 1/8, 1, 1, 1, 1]'."""
    return "[" + ", ".join(fraction_label(v) for v in vector) + "]"


def describe_row(row) -> str:
    """'table1 cifar10_conv2cl 4096-512-16 fo 1-8 junction_densities' (for lists of rows)."""
    parts = [row["source"], row["study"], row["net"]]
    if row["fanouts"]:
        parts.append(f"fo {row['fanouts']}")
    parts.append(row["quantity"])
    return " ".join(parts)

