"""The report's tables, each written as Markdown and LaTeX from one `Table` value.

- table1: junction fan-outs fo_i, junction densities and overall CL density, from the runs' own counts;
- table2: FC vs sparse CL parameters and the overall parameter / operation savings (analysis.savings);
- scatter: the points of Fig. 7 with their scatter vectors;
- csc: CSC vs random pre-defined sparse vs dense at each compression;
- results: every configuration run (means over seeds);
- ours_vs_paper: every paper_numbers.csv row, ours beside it, agrees / disagrees / not compared and why;
- scatter_claim: Fig. 7's claim, each planned pattern against its study's random point (Welch 95 % CI);
- ablation_arms, ablation: the protocol ablation studies (`ablation_*`), their settings and accuracies;
- beyond, wall_time, scatter_correlation (the "Beyond the paper" section, `BEYOND_TABLES`): every method
  of the beyond studies per density, training wall time per method, and Spearman's rho of accuracy vs
  scatter per dataset (report.beyond).
Accuracies and densities are printed in percent; "a ± b" is mean ± sample sd over seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from predsparse.io import atomic_write_text
from predsparse.report.analysis import (ALLOCATION_NAMES, CSC_WITHIN_PP, NO_LOSS_PP, PAPER_METHODS, Correlation,
                                        compressions, dataset_name, is_table_study, net_label, pct, savings)
from predsparse.report.beyond import (DENSITY_RTOL, MIN_LEVEL_POINTS, correlation_rows, method_rows,
                                      wall_time_rows)
from predsparse.report.inputs import Group, Stat
from predsparse.report.ablation import EARLY_EPOCHS, Ablation, cell_text
from predsparse.report.paper import FIG7A_RANDOM_PAPER_PCT, ScatterClaim, Verdict, scatter_label
from predsparse.report.studies import study_info

NA = "n/a"
BEYOND_TABLES = ("beyond", "wall_time", "scatter_correlation")  # drawn in "Beyond the paper", in this order
# pandas escapes LaTeX's special characters in cells; these symbols it leaves as they are, and a table's
# caption (which pandas does not escape) needs both.
_LATEX_SYMBOLS = {"±": r"$\pm$", "×": r"$\times$", "−": "$-$"}
_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_ALIGN = {"l": "left", "r": "right"}


def _latex_text(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def _latex_symbols(text: str) -> str:
    for symbol, command in _LATEX_SYMBOLS.items():
        text = text.replace(symbol, command)
    return text


@dataclass(frozen=True)
class Table:
    """One report table; written as Markdown, LaTeX, CSV and HTML by pandas' writers."""
    name: str  # file stem under tables/
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: str  # one of l/r per column
    note: str = ""

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([list(r) for r in self.rows], columns=list(self.columns), dtype=object)

    def markdown(self) -> str:
        # "|" inside a cell would split its column; numbers stay as formatted (no re-parsing).
        frame = self.frame().map(lambda cell: cell.replace("|", "\\|"))
        frame.columns = [c.replace("|", "\\|") for c in self.columns]
        return frame.to_markdown(index=False, colalign=[_ALIGN[a] for a in self.align], disable_numparse=True) + "\n"

    def latex(self) -> str:
        styler = self.frame().style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
        caption = _latex_symbols(_latex_text(self.title + (". " + self.note if self.note else "")))
        return _latex_symbols(styler.to_latex(column_format=self.align, hrules=True, caption=caption,
                                              label=f"tab:{self.name}", position="ht", position_float="centering"))

    def html(self) -> str:
        styler = self.frame().style.hide(axis="index").format(escape="html").format_index(escape="html", axis=1)
        styler = styler.set_uuid(self.name).set_table_styles(
            [{"selector": f"td.col{i}, th.col{i}", "props": f"text-align: {_ALIGN[a]}"}
             for i, a in enumerate(self.align)])
        return styler.to_html()

    def write(self, tables_dir: Path) -> list[Path]:
        """tables/<name>.md (title, table, note), .tex and .csv; return their paths."""
        paths = [Path(tables_dir) / f"{self.name}.{ext}" for ext in ("md", "tex", "csv")]
        note = f"\n{self.note}\n" if self.note else ""
        atomic_write_text(paths[0], f"**{self.title}**\n\n{self.markdown()}{note}")
        atomic_write_text(paths[1], self.latex())
        atomic_write_text(paths[2], self.frame().to_csv(index=False))
        return paths


def acc(stat: Stat) -> str:
    """'86.4 ± 0.3' (percent, mean ± sd over seeds); '86.4' for one seed."""
    if stat.n == 0:
        return NA
    return f"{100 * stat.mean:.1f}" + (f" ± {100 * stat.sd:.1f}" if stat.n > 1 else "")


def percents(values) -> str:
    return ", ".join(f"{100 * v:.3g}" for v in values)


def scaled(count: float, unit: float = 1e6) -> str:
    """A count in millions (or `unit`), three significant digits; n/a when unknown."""
    return NA if math.isnan(count) else f"{count / unit:.3g}"


def seconds(value: float) -> str:
    """Seconds with three significant digits ('12.5', '1,234'); n/a when not recorded."""
    if math.isnan(value):
        return NA
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def ratio(value: float) -> str:
    return NA if math.isnan(value) else f"{value:.2f}"


def _net_name(group: Group) -> str:
    return f"{study_info(group.study).title} ({net_label(group.net)})"


def results_table(groups: list[Group]) -> Table:
    rows = tuple((g.study, g.method, g.kind, net_label(g.net), net_label(g.fanouts),
                  f"{100 * g.overall_density:.3g}", str(len(g.seeds)), str(g.epochs), acc(g.best_val), acc(g.test),
                  NA if math.isnan(g.scatter) else f"{g.scatter:.3g}") for g in groups)
    return Table("results", "Every configuration run (mean ± sd over seeds)",
                 ("Study", "Method", "Kind", "Net", "Fan-outs", "Overall CL density (%)", "Seeds", "Epochs",
                  "Best val. acc. (%)", "Test acc. (%)", "Scatter S"), rows, "lllllrrrrrr")


def table1(groups: list[Group]) -> Table | None:
    """Table 1 from our runs: studies of accuracy vs epochs or density, pre-defined sparse and dense."""
    seen, keyed = set(), []
    studies = list(dict.fromkeys(g.study for g in groups))
    for g in groups:
        key = (g.study, g.net, g.fanouts)
        if g.method in PAPER_METHODS and is_table_study(g.study) and key not in seen:
            seen.add(key)
            row = (_net_name(g), net_label(g.fanouts), percents(g.junction_densities),
                   f"{100 * g.weights / g.dense_weights:.3g}", f"{g.weights:,}", f"{g.dense_weights:,}")
            keyed.append(((studies.index(g.study), g.net, g.weights), row))
    # By study and net, then from the sparsest to the densest, as the paper lists them.
    rows = [row for _, row in sorted(keyed, key=lambda item: item[0])]
    if not rows:
        return None
    return Table("table1", "Table 1 - Densities of our sparse networks (from the runs' own counts)",
                 ("Net", "Junction fan-outs", "CL junction densities (%)", "Overall CL density (%)", "CL weights",
                  "FC CL weights"), tuple(rows), "llllrr")


def table2(groups: list[Group]) -> Table | None:
    rows = []
    for s in savings(groups):
        sparse = s.sparse
        rows.append((_net_name(s.dense), scaled(s.conv_params), scaled(s.conv_ops, 1e9),
                     scaled(s.dense.dense_weights),
                     scaled(sparse.weights) if sparse else f"none within {NO_LOSS_PP:g} pp",
                     pct(100 * sparse.overall_density) if sparse else NA,
                     NA if math.isnan(s.param_reduction) else f"{s.param_reduction:.2f}",
                     NA if math.isnan(s.op_reduction) else f"{s.op_reduction:.2f}"))
    if not rows:
        return None
    return Table("table2", "Table 2 - Savings due to pre-defined sparsity",
                 ("Net", "Conv params (M)", "Conv ops (B)", "FC CL params (M)", "Sparse CL params (M)",
                  "at overall CL density", "Overall param reduction (%)", "Overall op reduction (%)"),
                 tuple(rows), "lrrrrrrr",
                 note=f"Sparse CL params: the sparsest net whose best validation accuracy is within {NO_LOSS_PP:g} "
                      "percentage point of the FC net's. CL ops = CL weights (one multiply-accumulate per weight). "
                      "n/a: no sparse net is within that margin.")


def ours_vs_paper_table(verdicts: list[Verdict]) -> Table | None:
    """Every paper number: the paper's value, ours, agrees / disagrees / not compared, and why."""
    rows = []
    for v in verdicts:
        row = v.row
        difference = v.comparison.difference if v.comparison and v.comparison.difference else "-"
        rows.append((row["source"], row["study"], row["net"], row["fanouts"] or "-", row["quantity"], row["unit"],
                     row["value"], v.ours_text, difference, v.status, v.tolerance, v.source, v.why or "-",
                     row["note"] or "-"))
    if not rows:
        return None
    return Table("ours_vs_paper", "Ours vs the paper: every number of paper_numbers.csv",
                 ("Source", "Paper study", "Net", "Fan-outs", "Quantity", "Unit", "Paper", "Ours", "Ours - paper",
                  "Verdict", "Tolerance", "Ours from", "Why", "Paper note"), tuple(rows), "llllllrrrlllll",
                 note="Ours from: runs (the summary's groups) or config.yaml (training-free counts of the "
                      "configurations config.yaml trains: CL weights from the density accounting, conv params and "
                      "ops from the torch models). Why: for disagreements the maintainer's measured reason "
                      "(paper_reasons.yaml) or open; for rows not compared what is missing.")


def scatter_claim_table(claims: list[ScatterClaim]) -> Table | None:
    """Fig. 7's claim per planned configuration: its accuracy against the random point of its study."""
    rows = []
    for c in claims:
        g, r, d = c.planned, c.random, c.difference
        paper = "-"
        if c.paper_acc is not None:
            paper = f"{c.paper_acc:g} ({c.paper_acc - FIG7A_RANDOM_PAPER_PCT:+g})"
        rows.append((c.study, scatter_label(g.scatter_vector) if g.scatter_vector else NA,
                     NA if math.isnan(g.scatter) else f"{g.scatter:.3g}", str(c.minimum_entries), str(g.best_val.n),
                     acc(g.best_val), acc(r.best_val) if r else NA,
                     f"{100 * d.diff:+.1f}" if d is not None and not math.isnan(d.diff) else NA, c.ci_text, c.below,
                     paper))
    if not rows:
        return None
    return Table("scatter_claim", "Fig. 7 - planned patterns against the random point of their study",
                 ("Study", "Scatter vector", "S", "Entries at min S", "Seeds", "Best val. acc. (%)",
                  "Random point (%)", "Planned - random (pp)", "95 % CI (pp)", "Below random", "Paper (vs ~74)"),
                 tuple(rows), "llrrrrrrrll",
                 note="The paper: planned points of low scatter S lie below the random point. Difference of mean best "
                      "validation accuracy over seeds, with Welch's t interval (unequal variances; each side needs two "
                      "seeds). Below random: yes where the whole interval is below 0. Paper: Fig. 7a's accuracy for a "
                      "planned point with as many entries of 1/8 in S (all six entries counted, Sf and Sb included), "
                      "and "
                      f"its difference to the random point's ~{FIG7A_RANDOM_PAPER_PCT:g} % (Fig. 7a label area).")


def ablation_table(result: Ablation | None) -> Table | None:
    """Rows = patterns, columns = arms (studies), cells = mean best validation accuracy (± sd, n seeds)."""
    if result is None:
        return None
    rows = tuple((r.key.label, net_label(r.key.net), r.informs, *(cell_text(c) for c in r.cells)) for r in result.rows)
    return Table("ablation", "Protocol ablation - best validation accuracy (%) per pattern and arm",
                 ("Pattern", "Net", "Informs", *(a.name for a in result.arms)), rows,
                 "lll" + "r" * len(result.arms),
                 note="Mean ± sample sd over seeds (n seeds); - where the arm did not train the pattern. Each arm "
                      "changes one protocol choice of ablation_reference (see the arms table); the first-"
                      f"{EARLY_EPOCHS}-epochs arm is read from the reference runs' history, no training of its own.")


def ablation_arms_table(result: Ablation | None) -> Table | None:
    if result is None:
        return None
    rows = []
    for a in result.arms:
        if a.name == result.reference or result.reference is None:
            what = "; ".join(f"{k}: {v}" for k, v in a.settings.items())
        else:
            what = "; ".join(a.differs) or "none recorded (settings equal to the reference's)"
        rows.append((a.name, "derived" if a.derived else str(a.runs), what))
    return Table("ablation_arms", "Protocol ablation - the arms and what each changes",
                 ("Arm", "Runs", "Settings (the reference: all; other arms: those differing from it)"), tuple(rows),
                 "lrl", note="Settings from summary.csv (the runs' specs); generator: the random patterns' generator.")


def csc_table(groups: list[Group]) -> Table | None:
    rows = []
    for g in groups:
        if "compression" not in {view for _, view in study_info(g.study).panels}:
            continue
        compression = compressions([d for d in groups if d.study == g.study])[g]
        dense = next((d for d in groups if d.study == g.study and d.method == "dense"), None)
        delta = 100 * (g.test.mean - dense.test.mean) if dense else math.nan
        within = NA if math.isnan(delta) or g.method == "dense" else ("yes" if delta >= -CSC_WITHIN_PP else "no")
        rows.append((g.study, net_label(g.net), g.method, f"{compression:.3g}x", f"{g.weights:,}",
                     str(len(g.seeds)), acc(g.test), NA if math.isnan(delta) else f"{delta:+.2f}", within))
    if not rows:
        return None
    return Table("csc", "CSC layers (reconstruction from the abstract) vs random pre-defined sparse vs dense",
                 ("Study", "Net", "Method", "Compression", "CL weights", "Seeds", "Test acc. (%)",
                  "vs dense (pp)", f"Within {CSC_WITHIN_PP:g} pp"), tuple(rows), "lllrrrrrl",
                 note="Compression = CL weights of the study's dense net (of the row's fully connected net where "
                      "the study has no dense run) / CL weights present.")


def scatter_table(groups: list[Group]) -> Table | None:
    """The points of Fig. 7 with their full scatter vectors."""
    rows = tuple((g.study, g.kind, net_label(g.fanouts), scatter_label(g.scatter_vector), f"{g.scatter:.3g}",
                  acc(g.best_val)) for g in groups
                 if "scatter" in {view for _, view in study_info(g.study).panels} and not math.isnan(g.scatter))
    if not rows:
        return None
    return Table("scatter", "Fig. 7 points: scatter vectors S = [S1f, S1b, S2f, S2b, Sf, Sb] and accuracy",
                 ("Study", "Kind", "Fan-outs", "Scatter vector", "S", "Best val. acc. (%)"), rows, "llllrr")


def beyond_table(groups: list[Group]) -> Table | None:
    """Every configuration of the beyond studies, by study, density and method."""
    rows = []
    for r in method_rows(groups):
        g = r.group
        allocation = "-" if g.is_dense else ALLOCATION_NAMES.get(g.allocation, g.allocation or "given")
        rows.append((g.study, r.label, f"{100 * g.overall_density:.3g}", allocation, str(len(g.seeds)), acc(g.test),
                     acc(g.best_val), seconds(g.wall_time.mean), ratio(r.wall_ratio)))
    if not rows:
        return None
    return Table("beyond", "Beyond the paper - every method at each overall CL density (mean ± sd over seeds)",
                 ("Study", "Method", "Overall CL density (%)", "Allocation", "Seeds", "Test acc. (%)",
                  "Best val. acc. (%)", "Wall time per run (s)", "Wall time vs pre-defined"), tuple(rows),
                 "llrlrrrrr",
                 note="Test accuracy of the best-validation checkpoint. Allocation: how the overall density was split "
                      "across junctions (given: fan-outs set in the config). Wall time vs pre-defined: mean training "
                      "wall time per run over that of pre-defined sparse (paper rule where it ran) in the same study "
                      f"at the same overall density (densities within {100 * DENSITY_RTOL:g} % of each other count "
                      "as one); a pruning run's time includes its dense phase.")


def wall_time_table(groups: list[Group]) -> Table | None:
    rows = tuple((r.study, r.label, str(r.runs), "/".join(map(str, r.epochs)), seconds(r.per_run),
                  seconds(r.per_epoch), ratio(r.ratio)) for r in wall_time_rows(method_rows(groups)))
    if not rows:
        return None
    return Table("wall_time", "Training wall time per method (beyond studies)",
                 ("Study", "Method", "Runs", "Epochs", "Wall time per run (s)", "Wall time per epoch (s)",
                  "Per epoch vs pre-defined"), rows, "llrlrrr",
                 note="Means over runs, as measured on the runs' device. Per epoch vs pre-defined: the method's mean "
                      "wall time per epoch over pre-defined sparse's (paper rule where it ran) at the overall "
                      "densities both ran; the dense net is compared with pre-defined sparse at every density.")


def _rho(c: Correlation) -> tuple[str, str]:
    return (NA if math.isnan(c.rho) else f"{c.rho:.2f}",
            NA if math.isnan(c.low) else f"[{c.low:.2f}, {c.high:.2f}]")


def scatter_correlation_table(groups: list[Group]) -> Table | None:
    rows = tuple((dataset_name(r.dataset), "all (pooled)" if r.level is None else r.level.label, str(r.correlation.n),
                  *_rho(r.correlation)) for r in correlation_rows(groups))
    if not rows:
        return None
    return Table("scatter_correlation", "Spearman rank correlation of best validation accuracy with scatter S",
                 ("Dataset", "Overall CL density", "Configurations", "Spearman rho", "95 % CI"), rows, "llrrr",
                 note="Every sparse configuration trained (all studies and methods with a scatter value; dense nets "
                      "excluded), one point per configuration (mean over seeds); a pattern trained in several studies "
                      "or under several allocation names counts once per configuration. 95 % CI: Fisher z with the "
                      "Bonett-Wright standard error; n/a below 4 configurations. Pooling densities mixes the effect "
                      f"of density with that of scatter, so densities with at least {MIN_LEVEL_POINTS} "
                      "configurations get rows of their own.")


def build_tables(groups: list[Group], verdicts: list[Verdict], claims: list[ScatterClaim] = (),
                 ablation_result: Ablation | None = None) -> list[Table]:
    """The tables our runs support, in report order (absent ones are skipped, and named by the report)."""
    candidates = [table1(groups), table2(groups), scatter_table(groups), csc_table(groups), results_table(groups),
                  ours_vs_paper_table(verdicts), scatter_claim_table(list(claims)),
                  ablation_arms_table(ablation_result), ablation_table(ablation_result), beyond_table(groups), wall_time_table(groups),
                  scatter_correlation_table(groups)]
    return [t for t in candidates if t is not None]

