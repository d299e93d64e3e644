"""Quantities derived from runs: the dense baseline, Table 2's savings, equal weight budgets, Spearman's
rank correlation with its confidence interval, and the names the report gives methods and datasets.

Conventions: densities are fractions; a CL's operations are its weights (one multiply-accumulate per
weight per sample), as the paper states for Table 2.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np
import pandas as pd

from predsparse.catalog import DATASETS, METHODS
from predsparse.report.inputs import Group
from predsparse.report.studies import STUDIES

# "No accuracy loss" (Table 2, Sections 2.2.2/2.2.3): mean best validation accuracy within this many
# percentage points of the fully connected net's.
NO_LOSS_PP = 1.0
# Weight counts within this relative distance form one weight budget (Fig. 2c's circled points); valid
# fan-outs rarely hit a budget exactly (784-224-10 at 12.5 % is 23,072 weights against 22,232 for 784-28-10).
BUDGET_RTOL = 0.10
# Methods that belong to the paper's pre-defined sparse family (a dense net is its 100 % point).
PAPER_METHODS = ("predefined", "dense")
# The CSC abstract's claim: compressed nets within 2 % of dense accuracy.
CSC_WITHIN_PP = 2.0
# Two-sided 95 % quantile of the standard normal distribution (1.95996...).
Z95 = statistics.NormalDist().inv_cdf(0.975)

# Methods' and datasets' names: the catalogue's (predsparse.catalog METHODS[m].label, DATASETS[d].label).
ALLOCATION_NAMES = {"paper": "paper rule", "uniform": "uniform", "erk": "ERK"}
# What a method keeps fixed, from its pattern file's kind (predsparse.methods.options.CONSTRAINTS).
CONSTRAINT_NAMES = {"random": "fixed fan-in", "unstructured": "unconstrained"}


def net_label(net) -> str:
    """(64, 1024, 64) -> '64-1024-64'."""
    return "-".join(str(n) for n in net)


def pct(value: float) -> str:
    """A percentage as the paper prints densities: 0.2188 -> '0.22%', 6.25 -> '6.25%', 100 -> '100%'."""
    return f"{value:.2g}%" if value < 1 else f"{value:.3g}%"


def is_table_study(name: str) -> bool:
    """Studies of Tables 1 and 2: the paper's accuracy-vs-epochs and accuracy-vs-density studies."""
    return name in STUDIES and bool({view for _, view in STUDIES[name].panels} & {"curves", "density"})


def dense_baseline(groups: list[Group], like: Group) -> Group | None:
    """The fully connected group of the same study, dataset, variant and net as `like`, if run."""
    for g in groups:
        if (g.is_dense and g.study == like.study and g.dataset == like.dataset and g.variant == like.variant
                and g.net == like.net and g.method in PAPER_METHODS):
            return g
    return None


def no_accuracy_loss(group: Group, dense: Group) -> bool:
    return group.best_val.mean >= dense.best_val.mean - NO_LOSS_PP / 100


@dataclass(frozen=True)
class Savings:
    """One row of Table 2: the sparsest net with no accuracy loss against its fully connected version."""

    study: str
    net: tuple[int, ...]
    dense: Group
    sparse: Group | None  # None: no sparse net of this study is within NO_LOSS_PP of dense

    @property
    def conv_params(self) -> float:
        return self.dense.conv_params

    @property
    def conv_ops(self) -> float:
        return self.dense.conv_ops

    def _reduction(self, conv: float) -> float:
        """(FC CL - sparse CL) / (conv + FC CL) in percent; NaN where no sparse net matches dense."""
        if self.sparse is None:
            return math.nan
        fc = self.dense.dense_weights
        return 100 * (fc - self.sparse.weights) / (conv + fc)

    @property
    def param_reduction(self) -> float:
        return self._reduction(self.conv_params)

    @property
    def op_reduction(self) -> float:
        return self._reduction(self.conv_ops)


def savings(groups: list[Group]) -> list[Savings]:
    """Table 2 rows: every (study, net) of a Table study with a dense run and sparse runs of the same net."""
    rows = []
    for dense in groups:
        if not dense.is_dense or dense.method not in PAPER_METHODS or not is_table_study(dense.study):
            continue
        sparse = [g for g in groups if g.method in PAPER_METHODS and not g.is_dense
                  and dense_baseline(groups, g) is dense]
        if sparse:
            lossless = [g for g in sparse if no_accuracy_loss(g, dense)]
            best = min(lossless, key=lambda g: (g.weights, -g.best_val.mean), default=None)
            rows.append(Savings(dense.study, dense.net, dense, best))
    return rows


def compressions(study_groups: list[Group]) -> dict[Group, float]:
    """Compression of each group of one study: the study's dense net's CL weights / the group's CL weights.

    A CSC net's own dense_weights count its expanded support layers, so the dense run of the study is the
    reference; without one, the row's dense_weights is.
    """
    dense = next((g for g in study_groups if g.method == "dense"), None)
    return {g: (dense.weights if dense else g.dense_weights) / g.weights for g in study_groups}


def equal_budgets(groups: list[Group]) -> list[list[Group]]:
    """Sets of groups of at least two different nets whose CL weight counts agree within BUDGET_RTOL."""
    ordered = sorted(groups, key=lambda g: g.weights)
    clusters: list[list[Group]] = []
    for g in ordered:
        if clusters and g.weights <= clusters[-1][0].weights * (1 + BUDGET_RTOL):
            clusters[-1].append(g)
        else:
            clusters.append([g])
    return [c for c in clusters if len({g.net for g in c}) > 1]


@dataclass(frozen=True)
class Correlation:
    """Spearman's rho of n points with its 95 % confidence interval [low, high] (NaN where undefined)."""

    rho: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0  # False when the interval is NaN

    def text(self, with_n: bool = True) -> str:
        """'rho = 0.41 [0.12, 0.64], n = 23'; the interval or rho as n/a where undefined."""
        n = f", n = {self.n}" if with_n else ""
        if math.isnan(self.rho):
            return f"rho = n/a{n}"
        ci = "" if math.isnan(self.low) else f" [{self.low:.2f}, {self.high:.2f}]"
        return f"rho = {self.rho:.2f}{ci}{n}"


def spearman(x, y) -> Correlation:
    """Spearman's rank correlation of finite x and y: Pearson's correlation of their ranks, ties given the
    average of the ranks they span.

    The 95 % confidence interval is tanh(atanh(rho) +/- Z95 * se) with Bonett and Wright's (2000) standard
    error se = sqrt((1 + rho^2 / 2) / (n - 3)), which keeps the Fisher z interval close to its nominal
    coverage for Spearman's rho. rho is NaN for fewer than 2 points or when either side is constant; the
    interval is NaN for fewer than 4 points (n - 3 must be positive) and collapses to rho when |rho| = 1.
    """
    x, y = list(x), list(y)
    if len(x) != len(y):
        raise ValueError(f"spearman needs as many x as y values, got {len(x)} and {len(y)}")
    n = len(x)
    nan = Correlation(math.nan, math.nan, math.nan, n)
    if n < 2:
        return nan
    rx = pd.Series(x, dtype=float).rank(method="average").to_numpy()
    ry = pd.Series(y, dtype=float).rank(method="average").to_numpy()
    dx, dy = rx - rx.mean(), ry - ry.mean()
    spread = math.sqrt(float(np.dot(dx, dx)) * float(np.dot(dy, dy)))
    if spread == 0:
        return nan
    rho = min(1.0, max(-1.0, float(np.dot(dx, dy)) / spread))
    if n < 4:
        return Correlation(rho, math.nan, math.nan, n)
    if abs(rho) == 1:
        return Correlation(rho, rho, rho, n)
    z, se = math.atanh(rho), math.sqrt((1 + rho ** 2 / 2) / (n - 3))
    return Correlation(rho, math.tanh(z - Z95 * se), math.tanh(z + Z95 * se), n)


def method_name(method: str) -> str:
    """The report's bare name of a method (the catalogue's label): 'pre-defined', 'pruning', 'RigL'."""
    return METHODS[method].label if method in METHODS else method


def method_label(method: str, kind: str = "", allocation: str = "") -> str:
    """The report's name of a method: 'pre-defined (paper rule)', 'pruning (fixed fan-in)', 'SET',
    'RigL (unconstrained)', 'dense'.

    Pre-defined sparse is named by its density allocation; pruning always by its constraint (the pattern
    file's kind: random = fixed fan-in, unstructured = unconstrained); pre-defined sparse, SET and RigL by
    theirs only where it is not the fixed fan-in default (unconstrained, or planned patterns).
    """
    name = method_name(method)
    notes = []
    if method == "predefined" and allocation:
        notes.append(ALLOCATION_NAMES.get(allocation, allocation))
    if method == "prune":
        notes.append(CONSTRAINT_NAMES.get(kind, kind))
    elif method in ("predefined", "set", "rigl") and kind in ("unstructured", "planned"):
        notes.append(CONSTRAINT_NAMES.get(kind, kind))
    return f"{name} ({', '.join(notes)})" if notes else name


def group_label(group: Group) -> str:
    return method_label(group.method, group.kind, group.allocation)


def dataset_name(dataset: str) -> str:
    return DATASETS[dataset].label if dataset in DATASETS else dataset


# --- Welch's t interval ----------------------------------------------------------------------------------

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df (> 0, not necessarily whole) degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p quantile of Student's t with df degrees of freedom (bisection on t_cdf, to 1e-12)."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) over seeds with Welch's 95 % interval [low, high] (NaN where a side has one seed:
    its spread is unknown) and Welch-Satterthwaite degrees of freedom df."""

    diff: float
    low: float
    high: float
    df: float
    n_a: int
    n_b: int

    @property
    def has_ci(self) -> bool:
        return not math.isnan(self.low)


def welch_from(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int,
               level: float = 0.95) -> Difference:
    """Welch's t interval for mean_a - mean_b from each side's mean, sample sd and count:
    diff +/- t_{(1+level)/2, df} * se with se^2 = s_a^2/n_a + s_b^2/n_b and
    df = se^4 / ((s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1)). Both sides need two values for an
    interval (NaN otherwise); where both spreads are 0 the interval is the point."""
    if n_a < 1 or n_b < 1:
        return Difference(math.nan, math.nan, math.nan, math.nan, n_a, n_b)
    diff = mean_a - mean_b
    if n_a < 2 or n_b < 2:
        return Difference(diff, math.nan, math.nan, math.nan, n_a, n_b)
    va, vb = sd_a ** 2 / n_a, sd_b ** 2 / n_b
    se2 = va + vb
    if se2 == 0:
        return Difference(diff, diff, diff, math.inf, n_a, n_b)
    df = se2 ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    half = t_quantile((1 + level) / 2, df) * math.sqrt(se2)
    return Difference(diff, diff - half, diff + half, df, n_a, n_b)


def welch(a, b, level: float = 0.95) -> Difference:
    """`welch_from` of two lists of values (NaN values dropped)."""
    a = [float(v) for v in a if not math.isnan(v)]
    b = [float(v) for v in b if not math.isnan(v)]
    def spread(values):
        return statistics.stdev(values) if len(values) > 1 else 0.0
    return welch_from(statistics.fmean(a) if a else math.nan, spread(a), len(a),
                      statistics.fmean(b) if b else math.nan, spread(b), len(b), level)
