"""Ours vs the paper: every row of paper_numbers.csv, ours beside it, agrees / disagrees / not compared, and why.

A paper row is matched to our runs on study (through `Study.paper_study`), dataset, net and fan-outs, and
its quantity says what to compute. Counts that need no training (Table 1's densities, Table 2's parameter
and operation counts and reductions) come from the runs where they ran, else from the configurations of
config.yaml (`counts.load_counts`: CL weights from the density accounting, conv counts from the torch
models), so they are compared on every preset, CIFAR included. Table 2's "sparse CL params" are those of the
configuration `TABLE2` names for the row (the paper states only "the minimum overall CL density at which
there is no accuracy loss"; the choice and its basis are printed in the why column).

Agreement rules (stated in the report):
- accuracies: within ACC_TOLERANCE_PP percentage points;
- counts, densities, parameters, reductions, scatter values: equal to the paper's printed precision (within
  half a unit of its last printed digit: "6.3" covers 6.25..6.35) or within REL_TOLERANCE of its value,
  whichever is wider (derived percentages such as Table 2's reductions carry the paper's own rounding);
- yes/no statements: the same answer, ours decided with analysis.NO_LOSS_PP;
- orderings: the same order.

Why a row disagrees or is not compared: the maintainer's curated text in paper_reasons.yaml (`Reasons`),
keyed by row (source, study, fan-outs, quantity); a disagreement without an entry is "open", a row not
compared without one gets the reason computed here (not run in this preset, configuration missing, ...).

Fig. 7's claim (planned patterns of low scatter S fall below the random point) is judged per planned
configuration by `scatter_claims`: the difference of mean best validation accuracy to the study's random
point with Welch's 95 % interval over seeds.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from predsparse.errors import ReportError
from predsparse.report.analysis import (BUDGET_RTOL, NO_LOSS_PP, PAPER_METHODS, Difference, dataset_name,
                                        dense_baseline, net_label, no_accuracy_loss, savings, welch_from)
from predsparse.report.counts import ConfigCount
from predsparse.report.inputs import Group
from predsparse.report.studies import STUDIES, study_info

ACC_TOLERANCE_PP = 2.0
REL_TOLERANCE = 0.01
AGREES, DISAGREES, NOT_COMPARED = "agrees", "disagrees", "not compared"
# Quantities that need no training: computed from the runs' counts where they ran, else from config.yaml's.
COUNT_QUANTITIES = ("junction_densities", "overall_cl_density", "fc_cl_params", "sparse_cl_params",
                    "overall_param_reduction", "overall_op_reduction", "conv_params", "conv_ops")
# The random point of Fig. 7a, read from the figure's label area (not a row of paper_numbers.csv).
FIG7A_RANDOM_PAPER_PCT = 74.0
REASON_FIELDS = ("disagrees", "not_run", "not_given")


@dataclass(frozen=True)
class Table2Choice:
    """The configuration whose counts stand for a Table 2 row's sparse net, and why that one."""

    fanouts: tuple[int, ...]
    basis: str


# Table 2's sparse net per paper study. The paper: "the minimum overall CL density at which there is no
# accuracy loss"; it names that density for Morse, MNIST CL and MNIST conv+2CLs only, so the CIFAR ones are
# read off Fig. 1 and the printed parameter counts.
TABLE2: dict[str, Table2Choice] = {
    "morse_cl": Table2Choice((512, 32), "Table 2 density 50 %, fo (512, 32): Sections 2.2.3 and 2.4"),
    "mnist_cl": Table2Choice((112, 10), (
        "Table 2 density ambiguous: Table 1's x = 224 row at 50 % (fo (112, 10)) is 50.63 % overall, 0.0900 M "
        "weights, which we use; Table 2's 0.089 M and 50 % reductions are exactly 50 % overall, fo (112, 5), "
        "which config.yaml does not train")),
    "mnist_conv2cl": Table2Choice((16, 10), (
        "Table 2 density 2.35 %, fo (16, 10): Section 2.2.2 (matches FC; 0.11 M weights with the conv layers)")),
    "cifar10_conv2cl": Table2Choice((1, 1), (
        "Table 2 density not stated, read as 0.22 %, fo (1, 1): Fig. 1c gives it the FC net's 86.4 %")),
    "cifar100_conv2cl": Table2Choice((1, 32), (
        "Table 2 density not stated, read as 0.95 %, fo (1, 32): Fig. 1f gives it 59.1 % against FC 58.6 % "
        "(0.38 % loses 1.6 pp); its 20,480 weights print as 0.02 M")),
    "cifar10_conv3cl": Table2Choice((1, 2, 16), (
        "Table 2 density not stated, read as 0.41 %, fo (1, 2, 16): the Table 1 row whose 9,216 weights print "
        "as 0.009 M (Fig. 1c's conv+3CLs accuracies are unreadable)")),
    "cifar100_conv3cl": Table2Choice((1, 2, 32), (
        "Table 2 density not stated, read as 0.59 %, fo (1, 2, 32): the Table 1 row whose 13,312 weights print "
        "as 0.013 M (Fig. 1f's conv+3CLs accuracies are unreadable)")),
}


def default_paper_path() -> Path:
    """The copy of paper_numbers.csv shipped with the package."""
    return Path(str(resources.files("predsparse.report") / "paper_numbers.csv"))


def default_reasons_path() -> Path:
    """The curated paper_reasons.yaml shipped with the package."""
    return Path(str(resources.files("predsparse.report") / "paper_reasons.yaml"))


@dataclass(frozen=True)
class Ours:
    """Our value for one paper row: a number, a list of numbers, a yes/no or a text."""

    value: float | tuple[float, ...] | bool | str
    groups: tuple[Group, ...]  # the run groups it was computed from (empty when from config.yaml's counts)
    anchor: float | None = None  # x position of the paper point in our figure, where it has one
    study: str = ""  # our study it comes from ("" = that of groups[0])
    source: str = "runs"  # runs | config.yaml

    @property
    def our_study(self) -> str:
        return self.study or (self.groups[0].study if self.groups else "")


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


@dataclass(frozen=True)
class Verdict:
    """One paper row judged: agrees, disagrees or not compared, with ours and why."""

    row: dict
    status: str  # AGREES | DISAGREES | NOT_COMPARED
    ours_text: str  # our value, or "not run", "not in config.yaml", "no value" ...
    source: str  # where ours comes from ("runs: fig3a_morse", "config.yaml: fig1_...", "-")
    tolerance: str
    why: str
    comparison: Comparison | None = None

    @property
    def compared(self) -> bool:
        return self.status != NOT_COMPARED


def row_key(row) -> str:
    """The key of a paper row in paper_reasons.yaml: 'source study fanouts quantity' ('-' for no fan-outs)."""
    return f"{row['source']} {row['study']} {row['fanouts'] or '-'} {row['quantity']}"


@dataclass(frozen=True)
class Reasons:
    """paper_reasons.yaml: key (row_key, parts may be fnmatch patterns such as '*') -> {field: text}."""

    entries: tuple[tuple[str, dict], ...] = ()

    def lookup(self, row) -> dict[str, str]:
        """Each field from the row's exact entry, else from the first pattern entry (file order) matching it."""
        key = row_key(row)
        found: dict[str, str] = {}
        exact = [fields for k, fields in self.entries if k == key]
        patterns = [fields for k, fields in self.entries if k != key and fnmatch.fnmatchcase(key, k)]
        for fields in exact + patterns:
            for name, text in fields.items():
                found.setdefault(name, text)
        return found


def load_reasons(path=None, paper: pd.DataFrame | None = None) -> Reasons:
    """The curated reasons file (default: the shipped paper_reasons.yaml), checked: every entry a mapping of
    REASON_FIELDS to non-empty texts, and (with `paper`) every key matching at least one paper row."""
    path = Path(path) if path else default_reasons_path()
    if not path.is_file():
        raise ReportError(f"reasons file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ReportError(f"reasons file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise ReportError(f"reasons file {path} must map row keys to reasons, got {type(raw).__name__}")
    keys = [row_key(r) for r in paper.to_dict("records")] if paper is not None else None
    entries = []
    for key, fields in raw.items():
        if not isinstance(fields, dict) or not fields:
            raise ReportError(f"reasons file {path}: '{key}' must map some of {list(REASON_FIELDS)} to texts")
        for name, text in fields.items():
            if name not in REASON_FIELDS:
                raise ReportError(f"reasons file {path}: '{key}' has field '{name}'; valid: {list(REASON_FIELDS)}")
            if not isinstance(text, str) or not text.strip():
                raise ReportError(f"reasons file {path}: '{key}' field '{name}' must be a non-empty text")
        if keys is not None and not any(fnmatch.fnmatchcase(k, str(key)) for k in keys):
            raise ReportError(f"reasons file {path}: '{key}' matches no row of the paper numbers "
                              "(keys are 'source study fanouts quantity', '-' for no fan-outs)")
        entries.append((str(key), {n: " ".join(t.split()) for n, t in fields.items()}))
    return Reasons(tuple(entries))


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


def eighths(vector) -> int:
    """Entries of 1/8 in a scatter vector: all six of S = [S1f, S1b, S2f, S2b, Sf, Sb] count, as in the paper's
    "number of occurrences of 1/8 in S" (the equivalent junction's Sf, Sb included)."""
    return sum(1 for s in vector if abs(s - 0.125) < 1e-9)


def _count(row, records, source: str) -> Ours | None:
    """A training-free quantity from records (run groups or ConfigCounts of the row's study, dataset and net)."""
    if not records:
        return None
    quantity, study = row["quantity"], records[0].study
    if quantity in ("junction_densities", "overall_cl_density"):
        r = _by_fanouts(row, records)
        if r is None:
            return None
        value = (tuple(100 * d for d in r.junction_densities) if quantity == "junction_densities"
                 else 100 * r.weights / r.dense_weights)
        return Ours(value, (r,) if isinstance(r, Group) else (), r.overall_density, r.study, source)
    first = records[0]
    used = (first,) if isinstance(first, Group) else ()
    if quantity == "fc_cl_params":
        return Ours(first.dense_weights / 1e6, used, study=study, source=source)
    if quantity in ("conv_params", "conv_ops"):
        value = first.conv_params / 1e6 if quantity == "conv_params" else first.conv_ops / 1e9
        return None if math.isnan(value) else Ours(value, used, study=study, source=source)
    choice = TABLE2.get(row["study"])
    sparse = next((r for r in records if choice and r.fanouts == choice.fanouts), None)
    if sparse is None:
        return None
    used = (sparse,) if isinstance(sparse, Group) else ()
    if quantity == "sparse_cl_params":
        return Ours(sparse.weights / 1e6, used, sparse.overall_density, sparse.study, source)
    other = first.conv_params if quantity == "overall_param_reduction" else first.conv_ops
    value = 100 * (sparse.dense_weights - sparse.weights) / (other + sparse.dense_weights)
    return None if math.isnan(value) else Ours(value, used, sparse.overall_density, sparse.study, source)


class _Quantities:
    """quantity name -> how to compute ours from the matching run groups (None: not given by them)."""

    def compute(self, row, groups) -> Ours | None:
        quantity = row["quantity"]
        method = getattr(self, quantity, None)
        if method is None and quantity.startswith("acc_S_eighth_x"):
            return self.acc_S_eighth(row, groups, int(quantity.rsplit("x", 1)[1]))
        return method(row, groups) if method else None

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
                 and abs(min(g.scatter_vector) - 0.125) < 1e-9 and eighths(g.scatter_vector) == count]
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


def _tolerances(row) -> tuple[str, list[float]]:
    """(the rule as text, one tolerance per value) for a paper row; no numbers for yes/no and text rows."""
    unit, quantity = row["unit"], row["quantity"]
    if unit == "bool":
        return f"same answer (no loss: within {NO_LOSS_PP:g} pp of dense)", []
    if unit == "text":
        return "same order", []
    parts = row["value"].split(";")
    if "acc" in quantity:
        return f"+/-{ACC_TOLERANCE_PP:g} pp", [ACC_TOLERANCE_PP] * len(parts)
    tolerances = [max(_half_unit(p), REL_TOLERANCE * abs(float(p))) for p in parts]
    return "+/-" + "; ".join(f"{t:.3g}" for t in tolerances), tolerances


def _judge(row, ours: Ours) -> tuple[str, str, bool, str]:
    """(ours as text, difference, agree, tolerance) for one paper row."""
    paper, unit = row["value"], row["unit"]
    tolerance, tolerances = _tolerances(row)
    if unit == "bool":
        ours_bool = bool(ours.value)
        return ("yes" if ours_bool else "no"), "", ours_bool == (paper.strip() == "1"), tolerance
    if unit == "text":
        return str(ours.value), "", str(ours.value) == paper, tolerance
    paper_parts = paper.split(";")
    ours_values = ours.value if isinstance(ours.value, tuple) else (ours.value,)
    if len(paper_parts) != len(ours_values):
        return "; ".join(_fmt(v) for v in ours_values), "", False, "same number of values"
    diffs = [o - float(p) for o, p in zip(ours_values, paper_parts)]
    agree = all(abs(d) <= t + 1e-9 for d, t in zip(diffs, tolerances))
    return ("; ".join(_fmt(v) for v in ours_values), "; ".join(f"{d:+.3g}" for d in diffs), agree, tolerance)


def _not_given(row, studies: list[str]) -> str:
    """Why the runs of the row's studies give no value for it."""
    quantity, fanouts = row["quantity"], row["fanouts"]
    ran = ", ".join(studies)
    if quantity.startswith("acc_S_eighth_x"):
        count = quantity.rsplit("x", 1)[1]
        return f"no planned configuration with {count} entries of 1/8 in S (its minimum) among the runs of {ran}"
    if quantity == "planned_min_S":
        return f"no planned configuration with a scatter value among the runs of {ran}"
    if quantity in ("matches_fc", "negligible_degradation"):
        return f"needs fo {fanouts} and the dense net among the runs of {ran}"
    if quantity == "ordering":
        return f"needs the four nets of the equal weight budget ({row['value']}) among the runs of {ran}"
    if quantity.startswith("acc_j1_") or quantity == "best_split":
        return f"no two-junction split runs of {row['net']} in {ran}"
    if fanouts:
        return f"fo {fanouts} of {row['net']} not among the runs of {ran}"
    if row["source"] == "fig1c" or row["source"] == "fig1f":
        return f"no dense run of {row['net']} in {ran}"
    return f"not given by the runs of {ran} (configuration, dense baseline or count missing)"


def _table2_notes(row: dict, curated: dict, trained_table2: dict, ours_studies: list[str], net) -> list[str]:
    """For a Table 2 count: the density it was counted at (unless a curated reason says it) and what our
    runs found (the sparsest net within 1 pp of FC)."""
    if not (row["source"] == "table2" and row["quantity"] in COUNT_QUANTITIES[3:6] and row["study"] in TABLE2):
        return []
    notes = [TABLE2[row["study"]].basis] if curated.get("disagrees", "open") == "open" else []
    trained = next((s for (study, n), s in trained_table2.items() if study in ours_studies and n == net), None)
    if trained is not None and row["quantity"] == "sparse_cl_params":
        notes.append("our runs' sparsest net within 1 pp of FC: " + (
            f"fo {net_label(trained.sparse.fanouts)}, {trained.sparse.weights / 1e6:.3g} M"
            if trained.sparse else "none"))
    return notes


def compare(paper: pd.DataFrame, groups: list[Group], counts: list[ConfigCount] = (),
            reasons: Reasons | None = None) -> list[Verdict]:
    """Every paper row judged against our runs (and config.yaml's counts for the training-free quantities)."""
    reasons = reasons or Reasons()
    quantities = _Quantities()
    trained_table2 = {(s.study, s.net): s for s in savings(groups)}
    present = {g.study for g in groups}
    verdicts = []
    for row in paper.to_dict("records"):
        ours_studies = [s.name for s in STUDIES.values() if s.paper_study == row["study"]]
        net = _ints(row["net"])

        def matches(x):
            return x.study in ours_studies and x.dataset == row["dataset"] and (net is None or x.net == net)

        candidates = [g for g in groups if matches(g) and g.method in PAPER_METHODS]
        counted = row["quantity"] in COUNT_QUANTITIES
        if counted:
            ours = (_count(row, candidates, "runs")
                    or _count(row, [c for c in counts if matches(c)], "config.yaml"))
        else:
            ours = quantities.compute(row, candidates) if candidates else None
        tolerance = _tolerances(row)[0]
        curated = reasons.lookup(row)
        notes = _table2_notes(row, curated, trained_table2, ours_studies, net)
        if not ours:
            if not ours_studies:
                cause, ours_text, why = "not_given", "no study", "no study of ours reproduces it"
            elif counted:
                cause, ours_text = "not_given", "not in config.yaml"
                fanouts = (row["fanouts"] if row["quantity"] in COUNT_QUANTITIES[:2]
                           else net_label(TABLE2[row["study"]].fanouts) if row["study"] in TABLE2 else "")
                why = ((f"fo {fanouts} of " if fanouts else "") + f"{row['net']} is not a configuration of "
                       f"{', '.join(ours_studies)} in the counts of config.yaml (predsparse counts)")
            elif not present & set(ours_studies):
                cause = "not_run"
                ours_text = "not run" + (" (needs CIFAR data)" if row["dataset"].startswith("cifar") else "")
                why = (f"needs {dataset_name(row['dataset'])} runs (config.yaml: {', '.join(ours_studies)}); "
                       "none in this preset")
            else:
                cause, ours_text, why = "not_given", "no value", _not_given(row, ours_studies)
            why = "; ".join([curated.get(cause, why), *notes])
            verdicts.append(Verdict(row, NOT_COMPARED, ours_text, "-", tolerance, why))
            continue
        ours_text, difference, agree, tolerance = _judge(row, ours)
        comparison = Comparison(row, ours.our_study, ours, row["value"], ours_text, difference, agree, tolerance)
        source = f"{ours.source}: {ours.our_study}"
        epochs = sorted({g.epochs for g in ours.groups})
        expected = study_info(ours.our_study).paper_epochs or 30
        if ours.source == "runs" and "acc" in row["quantity"] and epochs and epochs != [expected]:
            source += f" ({'/'.join(map(str, epochs))} epochs, paper {expected})"
        why = "; ".join(([] if agree else [curated.get("disagrees", "open")]) + notes)
        verdicts.append(Verdict(row, AGREES if agree else DISAGREES, ours_text, source, tolerance, why, comparison))
    return verdicts


def comparisons(verdicts: list[Verdict]) -> list[Comparison]:
    """The compared rows' comparisons (what the figures overlay)."""
    return [v.comparison for v in verdicts if v.comparison is not None]


# --- Fig. 7: planned patterns of low scatter against the random point -------------------------------------

@dataclass(frozen=True)
class ScatterClaim:
    """A planned configuration of a scatter study against the study's random point (accuracies in percent)."""

    study: str
    planned: Group
    random: Group | None
    difference: Difference | None  # planned - random, fractions of accuracy
    minimum_entries: int  # entries of S equal to its minimum
    paper_acc: float | None  # Fig. 7a's accuracy for a planned point with this many entries of 1/8

    @property
    def below(self) -> str:
        """'yes' / 'no (above)' / 'not clearly (CI spans 0)', or with one seed a side '... (1 seed, no CI)'."""
        d = self.difference
        if d is None or math.isnan(d.diff):
            return "no random point"
        if not d.has_ci:
            return ("yes" if d.diff < 0 else "no") + " (1 seed, no CI)"
        if d.high < 0:
            return "yes"
        return "no (above)" if d.low > 0 else "not clearly (CI spans 0)"

    @property
    def ci_text(self) -> str:
        d = self.difference
        if d is None or math.isnan(d.diff):
            return "-"
        if not d.has_ci:
            return "1 seed, no CI"
        return f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}]"


def scatter_claims(groups: list[Group], paper: pd.DataFrame | None = None) -> list[ScatterClaim]:
    """Every planned configuration of the scatter studies (Fig. 7) against the random point of its study (same
    net and fan-outs, pre-defined random pattern), with Fig. 7a's paper value where one applies."""
    paper_eighths = {}
    if paper is not None:
        for row in paper.to_dict("records"):
            if row["quantity"].startswith("acc_S_eighth_x"):
                paper_eighths[(row["study"], int(row["quantity"].rsplit("x", 1)[1]))] = float(row["value"])
    claims = []
    for g in groups:
        info = study_info(g.study)
        if "scatter" not in {view for _, view in info.panels} or g.kind != "planned" or g.method not in PAPER_METHODS:
            continue
        random = next((r for r in groups if r.study == g.study and r.kind == "random" and r.method == "predefined"
                       and r.net == g.net and r.fanouts == g.fanouts), None)
        difference = random and welch_from(g.best_val.mean, g.best_val.sd, g.best_val.n,
                                           random.best_val.mean, random.best_val.sd, random.best_val.n)
        vector = g.scatter_vector
        minimum = sum(1 for s in vector if abs(s - min(vector)) < 1e-9) if vector else 0
        paper_acc = None
        if vector and abs(min(vector) - 0.125) < 1e-9:
            paper_acc = paper_eighths.get((info.paper_study, eighths(vector)))
        claims.append(ScatterClaim(g.study, g, random, difference, minimum, paper_acc))
    return claims


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

