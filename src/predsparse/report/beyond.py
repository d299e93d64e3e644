"""The numbers and the reading of the report's "Beyond the paper" section, from grouped runs only.

Beyond studies (names starting with `beyond`) train pre-defined sparse nets with each density allocation
(paper rule, uniform, ERK), magnitude pruning, SET and RigL at the same weight budgets. This module puts
their configurations side by side at each overall density, compares training wall times, and correlates
accuracy with scatter S across every sparse configuration of the summary (beyond studies or not).

Allocations reach an overall density only as closely as valid fan-outs allow, so configurations whose
overall densities are within DENSITY_RTOL of each other count as one density ("level").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from predsparse.catalog import METHODS
from predsparse.report.analysis import (ALLOCATION_NAMES, BUDGET_RTOL, Correlation, dataset_name, group_label,
                                        net_label, pct, spearman)
from predsparse.report.inputs import Group
from predsparse.report.studies import is_ablation, is_beyond

DENSITY_RTOL = BUDGET_RTOL  # the relative distance of weight counts that make one budget, as in Fig. 2c
MIN_LEVEL_POINTS = 4  # configurations a density needs for a correlation row of its own (a CI needs n >= 4)
# Which pre-defined sparse configuration of a density is "pre-defined sparse" when several allocations ran:
# the paper's rule first, then fan-outs given by hand, then the other rules.
ALLOCATION_ORDER = ("paper", "", "uniform", "erk")


@dataclass(frozen=True)
class Level:
    """One overall density: the range [low, high] of the configurations' densities (fractions)."""

    low: float
    high: float

    @property
    def label(self) -> str:
        """'10%', or '9.8-10.2%' where the configurations' densities differ at printed precision."""
        low, high = pct(100 * self.low), pct(100 * self.high)
        return low if low == high else f"{low[:-1]}-{high}"


def density_levels(groups: list[Group]) -> dict[Group, Level]:
    """Each group's density level: densities within DENSITY_RTOL of a level's lowest join that level."""
    clusters: list[list[Group]] = []
    for g in sorted(groups, key=lambda g: g.overall_density):
        if clusters and g.overall_density <= clusters[-1][0].overall_density * (1 + DENSITY_RTOL):
            clusters[-1].append(g)
        else:
            clusters.append([g])
    return {g: Level(c[0].overall_density, c[-1].overall_density) for c in clusters for g in c}


def order(group: Group) -> tuple:
    """Sort key of methods: dense, pre-defined (paper rule, given, uniform, ERK), CSC, pruning, SET, RigL."""
    ranks = list(METHODS)  # the catalogue's order
    method = ranks.index(group.method) if group.method in ranks else len(ranks)
    allocation = ALLOCATION_ORDER.index(group.allocation) if group.allocation in ALLOCATION_ORDER \
        else len(ALLOCATION_ORDER)
    return method, group.method, group.kind != "random", allocation, group.method_options


def series_labels(groups: list[Group]) -> dict[Group, str]:
    """Method labels made distinct within `groups` (one study): a label that several allocations, method
    options or nets share is qualified by what differs ('SET - update_every=50')."""
    by_label: dict[str, list[Group]] = {}
    for g in groups:
        by_label.setdefault(group_label(g), []).append(g)
    labels = {}
    for label, members in by_label.items():
        allocations = len({g.allocation for g in members}) > 1  # never for pre-defined: named by allocation
        nets = len({g.net for g in members}) > 1
        options = [_options(g.method_options) for g in members]
        differing = sorted(k for k in set().union(*options) if len({str(o.get(k)) for o in options}) > 1)
        for g, opts in zip(members, options):
            notes = ([ALLOCATION_NAMES.get(g.allocation, g.allocation or "given")] if allocations else []) \
                + [f"{k}={opts.get(k)}" for k in differing] + ([net_label(g.net)] if nets else [])
            labels[g] = label + (" - " + ", ".join(notes) if notes else "")
    return labels


def _options(text: str) -> dict:
    """The method options as a flat dict ('{"fraction":0.3}' -> {'fraction': 0.3}); {} when fixed."""
    return json.loads(text) if text else {}


def reference(groups: list[Group]) -> Group | None:
    """The pre-defined sparse configuration others are compared with, among `groups` (one density)."""
    candidates = [g for g in groups if g.method == "predefined" and not g.is_dense]
    return min(candidates, key=order, default=None)


def by_study(groups: list[Group]) -> dict[str, list[Group]]:
    """The beyond studies' groups, by study in summary order."""
    out: dict[str, list[Group]] = {}
    for g in groups:
        if is_beyond(g.study):
            out.setdefault(g.study, []).append(g)
    return out


@dataclass(frozen=True)
class MethodRow:
    """One configuration of a beyond study with its density level and its pre-defined reference."""

    group: Group
    label: str
    level: Level
    reference: Group | None  # pre-defined sparse of the same study and density; None for dense nets

    @property
    def wall_ratio(self) -> float:
        """Mean wall time per run over the reference's (NaN without a reference or wall times)."""
        if self.reference is None or self.group.is_dense:
            return math.nan
        return _ratio(self.group.wall_time.mean, self.reference.wall_time.mean)


def _ratio(ours: float, theirs: float) -> float:
    """ours / theirs; NaN where either is unknown or theirs is not positive (no time recorded)."""
    return ours / theirs if theirs > 0 else math.nan  # NaN compares False


def method_rows(groups: list[Group]) -> list[MethodRow]:
    """Every configuration of the beyond studies: by study, then density, then method."""
    rows = []
    for study_groups in by_study(groups).values():
        labels, levels = series_labels(study_groups), density_levels(study_groups)
        at_level: dict[Level, list[Group]] = {}
        for g in study_groups:
            at_level.setdefault(levels[g], []).append(g)
        for level in sorted(at_level, key=lambda lv: lv.low):
            ref = reference(at_level[level])
            for g in sorted(at_level[level], key=order):
                rows.append(MethodRow(g, labels[g], level, None if g.is_dense else ref))
    return rows


@dataclass(frozen=True)
class Standing:
    """The sparse configurations of one beyond study at one density, best test accuracy first."""

    study: str
    level: Level
    ranked: tuple[MethodRow, ...]

    @property
    def best(self) -> MethodRow:
        return self.ranked[0]

    @property
    def reference(self) -> MethodRow | None:
        return next((r for r in self.ranked if r.group is r.reference), None)


def standings(rows: list[MethodRow]) -> list[Standing]:
    """One Standing per (beyond study, density) with sparse runs that have a test accuracy."""
    keyed: dict[tuple[str, Level], list[MethodRow]] = {}
    for r in rows:
        if not r.group.is_dense and not math.isnan(r.group.test.mean):
            keyed.setdefault((r.group.study, r.level), []).append(r)
    return [Standing(study, level, tuple(sorted(members, key=lambda r: -r.group.test.mean)))
            for (study, level), members in keyed.items()]


@dataclass(frozen=True)
class WallTimeRow:
    """Training wall time of one method (label) of one beyond study, over all its runs."""

    study: str
    label: str
    method: str
    runs: int
    epochs: tuple[int, ...]
    per_run: float  # seconds, mean over runs
    per_epoch: float  # seconds, mean over runs of wall time / epochs
    ratio: float  # per_epoch over pre-defined sparse's at the same densities (NaN without one)


def _run_mean(groups: list[Group], stat: str) -> float:
    """Mean over the runs of `groups` of a per-run Stat (groups weighted by their runs with a value)."""
    stats = [getattr(g, stat) for g in groups if getattr(g, stat).n]
    runs = sum(s.n for s in stats)
    return sum(s.mean * s.n for s in stats) / runs if runs else math.nan


def wall_time_rows(rows: list[MethodRow]) -> list[WallTimeRow]:
    """Per study and method label: runs, epochs, wall time per run and per epoch, and the per-epoch ratio to
    pre-defined sparse over the densities the method shares with it (a dense net, which shares none, is
    compared with pre-defined sparse at every density)."""
    out = []
    studies = list(dict.fromkeys(r.group.study for r in rows))
    for study in studies:
        mine = [r for r in rows if r.group.study == study]
        references = {r.level: r.reference for r in mine if r.reference is not None}
        for label in dict.fromkeys(r.label for r in mine):
            members = [r for r in mine if r.label == label]
            shared = [r.level for r in members if r.level in references]
            levels = shared or list(references)
            ours = [r.group for r in members if not shared or r.level in shared]
            theirs = list(dict.fromkeys(references[lv] for lv in levels))
            ratio = _ratio(_run_mean(ours, "epoch_time"), _run_mean(theirs, "epoch_time"))
            groups = [r.group for r in members]
            out.append(WallTimeRow(study, label, groups[0].method, sum(len(g.seeds) for g in groups),
                                   tuple(sorted({g.epochs for g in groups})), _run_mean(groups, "wall_time"),
                                   _run_mean(groups, "epoch_time"), ratio))
    return out


@dataclass(frozen=True)
class CorrelationRow:
    """Spearman's rho of best validation accuracy vs scatter over the sparse configurations of a dataset,
    pooled over densities (level None) or within one density."""

    dataset: str
    level: Level | None
    points: tuple[Group, ...]
    correlation: Correlation


def correlation_points(groups: list[Group]) -> list[Group]:
    """Every sparse configuration with a scatter value and an accuracy (dense nets excluded: S = 1 and
    density 100 % say nothing about sparse patterns; so are the protocol ablation studies, whose changed
    protocols would mix with the scatter effect)."""
    return [g for g in groups if not g.is_dense and g.method != "dense" and not math.isnan(g.scatter)
            and not math.isnan(g.best_val.mean) and not is_ablation(g.study)]


def _correlate(points) -> Correlation:
    return spearman([g.scatter for g in points], [g.best_val.mean for g in points])


def correlation_rows(groups: list[Group]) -> list[CorrelationRow]:
    """Per dataset: the pooled row, then one per density with at least MIN_LEVEL_POINTS configurations (only
    where the dataset has several densities; otherwise the pooled row is that density's)."""
    points = correlation_points(groups)
    out = []
    for dataset in dict.fromkeys(g.dataset for g in points):
        mine = [g for g in points if g.dataset == dataset]
        out.append(CorrelationRow(dataset, None, tuple(mine), _correlate(mine)))
        levels = density_levels(mine)
        if len(set(levels.values())) > 1:
            for level in sorted(set(levels.values()), key=lambda lv: lv.low):
                inside = [g for g in mine if levels[g] == level]
                if len(inside) >= MIN_LEVEL_POINTS:
                    out.append(CorrelationRow(dataset, level, tuple(inside), _correlate(inside)))
    return out


# --- the reading ----------------------------------------------------------------------------------------

def _acc(group: Group) -> str:
    seeds = len(group.seeds)
    return f"{100 * group.test.mean:.1f} %, {seeds} seed{'s' if seeds > 1 else ''}"


def _spread(a: Group, b: Group, difference_pp: float) -> str:
    """How a difference compares with the seeds' spread (the larger sd of the two)."""
    if min(a.test.n, b.test.n) < 2:
        return "one seed, so no spread to judge it by"
    spread = 100 * max(a.test.sd, b.test.sd)
    if abs(difference_pp) <= spread:
        return f"within one sd of the seeds (up to {spread:.1f} pp): not a clear difference"
    return f"larger than the seeds' sd (up to {spread:.1f} pp)"


def _standing_text(s: Standing) -> str:
    head = f"`{s.study}` at {s.level.label}"
    best, ref = s.best, s.reference
    if len(s.ranked) == 1:
        return f"{head}: only {best.label} ran ({_acc(best.group)})."
    if ref is None:
        return (f"{head}: {best.label} is best ({_acc(best.group)}); no pre-defined sparse run at this density to "
                "compare with.")
    if best is ref:
        other = s.ranked[1]
        diff = 100 * (ref.group.test.mean - other.group.test.mean)
        return (f"{head}: pre-defined sparse is best - {ref.label} ({_acc(ref.group)}), {diff:.1f} pp ahead of "
                f"the next, {other.label} ({_acc(other.group)}); {_spread(ref.group, other.group, diff)}.")
    diff = 100 * (best.group.test.mean - ref.group.test.mean)
    return (f"{head}: {best.label} is best ({_acc(best.group)}), {diff:+.1f} pp over {ref.label} "
            f"({_acc(ref.group)}); {_spread(best.group, ref.group, diff)}.")


def _allocation_text(s: Standing) -> str | None:
    """How the density allocations of pre-defined sparse compare at one density (None with fewer than two)."""
    allocated = [r for r in s.ranked if r.group.method == "predefined" and r.group.allocation]
    if len({r.group.fanouts for r in allocated}) < 2:
        return None
    best = allocated[0]
    other = next((r for r in allocated if r.group.allocation == "paper" and r is not best), allocated[1])
    diff = 100 * (best.group.test.mean - other.group.test.mean)
    return (f"`{s.study}` at {s.level.label}, density allocation: {best.label} is best ({_acc(best.group)}), "
            f"{diff:+.1f} pp over {other.label} ({_acc(other.group)}); {_spread(best.group, other.group, diff)}.")


def _wall_time_text(study: str, rows: list[WallTimeRow]) -> str | None:
    rated = [r for r in rows if r.study == study and not math.isnan(r.ratio)]
    others = [r for r in rated if r.method != "predefined"]
    if not others:
        return None
    cheaper = [r for r in others if r.ratio < 1]
    if cheaper:
        names = ", ".join(f"{r.label} took {r.ratio:.2f}x" for r in sorted(cheaper, key=lambda r: r.ratio))
        return (f"`{study}`: pre-defined sparse is **not** the cheapest in wall time per epoch: {names} the "
                "wall time per epoch of pre-defined sparse.")
    low, high = min(others, key=lambda r: r.ratio), max(others, key=lambda r: r.ratio)
    spanned = f"{low.ratio:.2f}x ({low.label})" + (f" to {high.ratio:.2f}x ({high.label})" if high is not low else "")
    return (f"`{study}`: pre-defined sparse is the cheapest in wall time per epoch; the other methods took "
            f"{spanned} its wall time per epoch.")


def _direction(c: Correlation) -> str:
    if math.isnan(c.low):
        return "too few configurations (or no spread) for a confidence interval"
    if c.excludes_zero:
        return "the CI excludes 0: accuracy tends to " + ("rise" if c.rho > 0 else "fall") + " with scatter"
    return "the CI includes 0: no monotone relation between scatter and accuracy is shown"


def _correlation_text(dataset: str, rows: list[CorrelationRow]) -> str:
    pooled = next(r for r in rows if r.dataset == dataset and r.level is None)
    c = pooled.correlation
    text = (f"{dataset_name(dataset)}: over {c.n} sparse configuration{'s' if c.n != 1 else ''}, densities pooled, "
            f"Spearman {c.text(with_n=False)}; {_direction(c)}.")
    if len(set(density_levels(list(pooled.points)).values())) > 1:
        confound = spearman([g.overall_density for g in pooled.points], [g.scatter for g in pooled.points])
        text += (" Pooling densities mixes the effect of density with that of scatter (density vs scatter: "
                 f"{confound.text(with_n=False)}).")
        within = [r for r in rows if r.dataset == dataset and r.level is not None]
        if within:
            text += " Within one density: " + "; ".join(
                f"at {r.level.label} {r.correlation.text()}, {_direction(r.correlation)}" for r in within) + "."
        else:
            text += f" No density has the {MIN_LEVEL_POINTS} configurations a correlation of its own needs."
    return text


def _same_allocation_texts(study: str, rows: list[MethodRow]) -> list[str]:
    """Where two density allocations of a study gave the same fan-outs, one sentence per pair of rules; for
    ERK and uniform also why when the net makes them equal (ERK's densities are proportional to
    (N_i + N_{i+1}) / (N_i N_{i+1}), the same for every junction of a symmetric net such as 64-1024-64)."""
    def key(g):
        return g.method, g.kind, g.method_options, g.net, g.fanouts

    mine = [r for r in rows if r.group.study == study]
    texts = []
    for first, second in (("erk", "uniform"), ("paper", "uniform"), ("paper", "erk")):
        others = {key(r.group) for r in mine if r.group.allocation == second}
        same = [r for r in mine if r.group.allocation == first and key(r.group) in others]
        if not same:
            continue
        levels = ", ".join(dict.fromkeys(r.level.label for r in same))
        text = (f"`{study}`: {ALLOCATION_NAMES[first]} and {ALLOCATION_NAMES[second]} allocation gave identical "
                f"fan-outs at {levels}")
        nets = list(dict.fromkeys(r.group.net for r in same))
        if first == "erk" and all(len({(a + b) / (a * b) for a, b in zip(n, n[1:])}) == 1 for n in nets):
            text += (" - ERK's junction densities are proportional to (N_i + N_(i+1)) / (N_i N_(i+1)), equal for "
                     f"every junction of {', '.join(net_label(n) for n in nets)}, so ERK is uniform on this net")
        texts.append(text + ".")
    return texts


def reading(groups: list[Group]) -> list[str]:
    """The honest reading of the section, one sentence (or a few) per finding, all from the numbers."""
    rows = method_rows(groups)
    ranked = standings(rows)
    items = [_standing_text(s) for s in ranked] + [t for t in map(_allocation_text, ranked) if t]
    times = wall_time_rows(rows)
    for study in dict.fromkeys(r.group.study for r in rows):
        items += [t for t in [_wall_time_text(study, times), *_same_allocation_texts(study, rows)] if t]
    correlations = correlation_rows(groups)
    items += [_correlation_text(d, correlations) for d in dict.fromkeys(r.dataset for r in correlations)]
    return items
