"""Quantities the paper derives from runs: the dense baseline, Table 2's savings, equal weight budgets.

Conventions: densities are fractions; a CL's operations are its weights (one multiply-accumulate per
weight per sample), as the paper states for Table 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
