"""Paper-style figures (Fig. 1, 2, 3, 7 and the CSC study) and the "Beyond the paper" figures (methods
vs density, accuracy vs scatter with Spearman's rho), drawn from grouped runs only.

Every panel shows the mean over seeds; bars and bands are +/- one sample standard deviation where a
configuration has more than one seed. A figure draws the panels whose studies are in the summary and no
others; the paper's reported values are overlaid in black where paper_numbers.csv gives them.
Accuracies are best validation accuracies (the paper's y axis), except the CSC study, which uses test
accuracy (the CSC abstract's claim), and the beyond figure, which uses the test accuracy of the
best-validation checkpoint (a held-out number for comparing training methods).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from predsparse.catalog import METHODS
from predsparse.density import dense_junction_weights
from predsparse.report import theme
from predsparse.report.analysis import (CSC_WITHIN_PP, PAPER_METHODS, Correlation, compressions,
                                        dataset_name, equal_budgets, method_name, net_label, pct)
from predsparse.report.beyond import by_study, correlation_rows, density_levels, order, series_labels
from predsparse.report.inputs import Group, milestone_accuracies
from predsparse.report.paper import Comparison, scatter_label
from predsparse.report.studies import (BEYOND_FIGURES, DENSE_SENTENCES, FIGURES, GENERIC_CAPTION, STUDIES, Study,
                                       is_ablation, is_beyond, study_info)

PANEL_SIZE = (3.3, 2.55)  # inches per panel
MAX_COLUMNS = 3
LABEL_GAP = 0.075  # minimum vertical distance of scatter-vector labels, in axes fractions
DODGE = 0.025  # sideways spread of the methods' points at one density, as a fraction of x (log axis)
PAPER_MARK = dict(marker="x", color=theme.PAPER_COLOR, s=28, linewidths=1.3, zorder=5)


@dataclass(frozen=True)
class Panel:
    letter: str
    view: str
    studies: tuple[Study, ...]  # present studies drawn in this panel, in table order

    @property
    def title(self) -> str:
        titles = [s.title for s in self.studies]
        if len(titles) == 2:
            first, rest0 = titles[0].split(" ", 1)
            second, rest1 = titles[1].split(" ", 1)
            text = (f"{first} {rest0} (left), {rest1} (right)" if first == second
                    else f"{titles[0]} (left), {titles[1]} (right)")
        else:
            text = " / ".join(titles)
        return f"({self.letter}) {text}" if self.letter else text


@dataclass(frozen=True)
class RenderedFigure:
    stem: str
    caption: str
    paths: tuple[Path, ...]  # PDF and PNG; empty when no panel could be drawn
    missing: tuple[str, ...]  # studies of this figure absent from the summary
    skipped: tuple[str, ...]  # panels of present studies left out for lack of data, and why


def density_label(group: Group) -> str:
    return pct(100 * group.overall_density) + (" (FC)" if group.is_dense else "")


def _paper_groups(groups, study):
    return [g for g in groups if g.study == study.name and g.method in PAPER_METHODS]


def _errorbar(ax, x, stats, scale=100, **kwargs):
    """Means with +/- sd bars (bars only where some point has several seeds)."""
    y = [s.mean * scale for s in stats]
    yerr = [s.sd * scale for s in stats] if any(s.n > 1 for s in stats) else None
    return ax.errorbar(x, y, yerr=yerr, **kwargs)


def _percent_log_x(ax, values):
    """Log-scaled density x axis with ticks at the values drawn (up to 8) labelled in percent."""
    ax.set_xscale("log")
    ticks = sorted(set(values))
    if len(ticks) > 8:
        ticks = ticks[:: math.ceil(len(ticks) / 8)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: pct(v)))


def _draw_curves(ax, panel, groups, history, comparisons):
    study = panel.studies[0]
    selected = sorted(_paper_groups(groups, study), key=lambda g: -g.overall_density)
    for color, group in zip(theme.PALETTE * 3, selected):
        runs = history[history["run_id"].isin(group.run_ids)]
        per_epoch = runs.groupby("epoch")["val_acc"].agg(["mean", "std", "count"]).reset_index()
        if per_epoch.empty:
            continue
        mean = per_epoch["mean"] * 100
        ax.plot(per_epoch["epoch"], mean, color=color, label=density_label(group))
        if per_epoch["count"].max() > 1:
            sd = per_epoch["std"].fillna(0) * 100
            ax.fill_between(per_epoch["epoch"], mean - sd, mean + sd, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Validation accuracy (%)")
    ax.legend(title="Overall CL density", loc="lower right")


def _draw_milestones(ax, panel, groups, history, comparisons):
    """Grouped bars: best validation accuracy after 1, 5 and E epochs per density, blocks per study."""
    colors = sns.color_palette("Blues", 3).as_hex()
    slot_width, labelled, centers, tick_labels = 0.26, set(), [], []
    finals = {g.epochs for s in panel.studies for g in _paper_groups(groups, s)}
    final_label = f"after {finals.pop()} epochs" if len(finals) == 1 else "after the last epoch"
    slot_labels = ("after 1 epoch", "after 5 epochs", final_label)
    paper = {(c.our_study, c.ours.anchor): c for c in comparisons if c.row["quantity"] == "best_val_acc_30ep"}
    position = 0.0
    for study in panel.studies:
        block_start = position
        for group in sorted(_paper_groups(groups, study), key=lambda g: -g.overall_density):
            stats = milestone_accuracies(group, history)
            for epoch, stat in stats.items():
                slot = 2 if epoch == group.epochs else (0 if epoch == 1 else 1)
                x = position + (slot - 1) * slot_width
                label = slot_labels[slot] if slot not in labelled else None
                labelled.add(slot)
                ax.bar(x, stat.mean * 100, slot_width, color=colors[slot], label=label,
                       yerr=stat.sd * 100 if stat.n > 1 else None, edgecolor="white", linewidth=0.4)
            final = stats[group.epochs]
            top = (final.mean + (final.sd if final.n > 1 else 0)) * 100
            match = paper.get((study.name, group.overall_density))
            if match is not None:
                top = max(top, match.paper_value + 1)
                ax.scatter([position + slot_width], [match.paper_value], label="paper, 30 epochs"
                           if "paper" not in labelled else None, **PAPER_MARK)
                labelled.add("paper")
            ax.text(position, top + 1.5, f"{final.mean * 100:.1f}", ha="center", va="bottom", fontsize=6.5)
            centers.append(position)
            tick_labels.append(density_label(group).replace(" (FC)", "\n(FC)"))
            position += 1.0
        if len(panel.studies) > 1:
            ax.annotate(study.title.split(" ", 1)[-1], xy=((block_start + position - 1) / 2, 1.0),
                        xycoords=("data", "axes fraction"), xytext=(0, -2), textcoords="offset points",
                        ha="center", va="top", fontsize=7, style="italic")
        position += 0.6  # gap between the blocks of two studies
    ax.set_xticks(centers, tick_labels, fontsize=6.5)
    ax.grid(axis="x", visible=False)
    ax.set_ylim(0, 112)
    ax.set_yticks(range(0, 101, 20))
    ax.set_xlabel("Overall CL density")
    ax.set_ylabel("Best validation accuracy (%)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))


def _line_key(group: Group):
    """A line of a density panel: the pre-defined family of one net (its dense net is the 100 % point)."""
    method = "predefined" if group.method in PAPER_METHODS else group.method
    return (method, group.variant, net_label(group.net))


def _draw_density(ax, panel, groups, history, comparisons):
    selected = [g for g in groups if g.study in {s.name for s in panel.studies}]
    keys = list(dict.fromkeys(_line_key(g) for g in selected))
    varying = [i for i in range(3) if len({k[i] for k in keys}) > 1] or [2]
    xs = []
    for color, key in zip(theme.PALETTE * 3, keys):
        line = sorted((g for g in selected if _line_key(g) == key), key=lambda g: g.overall_density)
        x = [100 * g.overall_density for g in line]
        xs += x
        _errorbar(ax, x, [g.best_val for g in line], color=color, marker="o",
                  label=" ".join(key[i] for i in varying))
    for i, budget in enumerate(equal_budgets(selected)):
        ax.scatter([100 * g.overall_density for g in budget], [100 * g.best_val.mean for g in budget], s=110,
                   facecolors="none", edgecolors="black", linewidths=1.0, zorder=4,
                   label="equal weight budget" if i == 0 else None)
    _percent_log_x(ax, xs)
    ax.set_xlabel("Overall CL density")
    ax.set_ylabel("Best validation accuracy (%)")
    if len(ax.get_legend_handles_labels()[1]) > 2:  # many lines: keep the data clear
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        ax.legend(loc="lower right")


def _draw_split(ax, panel, groups, history, comparisons):
    """Accuracy vs junction-1 density d1 at fixed overall density; the top axis shows junction 2's d2.

    With D_i = N_i N_{i+1} and overall density d, the weights fix d2 = (d (D1 + D2) - d1 D1) / D2.
    """
    study = panel.studies[0]
    points = sorted((g for g in _paper_groups(groups, study) if len(g.junction_densities) == 2),
                    key=lambda g: g.junction_densities[0])
    x = [100 * g.junction_densities[0] for g in points]
    _errorbar(ax, x, [g.best_val for g in points], color=theme.PALETTE[0], marker="o", label="ours")
    overall = sorted({g.overall_density for g in points})
    for i, density in enumerate(overall):
        ax.axvline(100 * density, color="black", linewidth=1.0, label="equal densities" if i == 0 else None)
    ends = [c for c in comparisons if c.our_study == study.name and c.row["quantity"].startswith("acc_j1_")]
    for i, c in enumerate(ends):
        ax.scatter([100 * c.ours.anchor], [c.paper_value], label="paper (App. 5.1)" if i == 0 else None,
                   **PAPER_MARK)
    for c in comparisons:
        if c.our_study == study.name and c.row["quantity"] == "best_split":
            ax.axvline(float(c.row["value"].split(";")[0]), color="0.4", linestyle=":", linewidth=1.2,
                       label="paper's best split")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: pct(v)))
    ax.set_xlabel("Junction-1 density")
    if len(overall) == 1 and points:
        net = points[0].net
        d1_size, d2_size = dense_junction_weights(net)[:2]
        budget = 100 * overall[0] * (d1_size + d2_size)

        def other(d):  # the same linear map takes d1 to d2 and d2 to d1 when D1 = D2
            return (budget - d * d1_size) / d2_size

        def other_inverse(d):
            return (budget - d * d2_size) / d1_size

        top = ax.secondary_xaxis("top", functions=(other, other_inverse))
        top.xaxis.set_major_formatter(FuncFormatter(lambda v, _: pct(v)))
        top.set_xlabel("Junction-2 density", fontsize=7.5)
    ax.set_ylabel("Best validation accuracy (%)")
    ax.legend(loc="best")


def _place_labels(ax, points, labels):
    """Label points with their scatter vectors, pushing labels apart vertically so none overlap."""
    ymin, ymax = ax.get_ylim()
    xmin, xmax = ax.get_xlim()
    placed = []
    for (x, y), text in sorted(zip(points, labels), key=lambda item: item[0][1]):
        fx, fy = (x - xmin) / (xmax - xmin), (y - ymin) / (ymax - ymin)
        left = fx > 0.55
        for other_fx, other_fy in placed:
            if abs(other_fx - fx) < 0.5 and fy < other_fy + LABEL_GAP:
                fy = other_fy + LABEL_GAP
        placed.append((fx, fy))
        ax.annotate(text, xy=(x, y), xytext=(fx + (-0.03 if left else 0.03), fy), textcoords="axes fraction",
                    ha="right" if left else "left", va="center", fontsize=5.8,
                    arrowprops=dict(arrowstyle="-", color="0.55", linewidth=0.5, shrinkA=0, shrinkB=2))


def _draw_scatter(ax, panel, groups, history, comparisons):
    study = panel.studies[0]
    selected = [g for g in _paper_groups(groups, study) if not math.isnan(g.scatter)]
    styles = {"random": ("o", theme.PALETTE[0]), "planned": ("s", theme.PALETTE[1])}
    for kind in dict.fromkeys(g.kind for g in selected):
        marker, color = styles.get(kind, ("D", theme.PALETTE[2]))
        chosen = [g for g in selected if g.kind == kind]
        _errorbar(ax, [g.scatter for g in chosen], [g.best_val for g in chosen], fmt=marker, color=color,
                  label=kind)
    paper = [c for c in comparisons if c.our_study == study.name and c.row["quantity"].startswith("acc_S_")]
    for i, c in enumerate(paper):
        ax.scatter([c.ours.anchor], [c.paper_value], label="paper" if i == 0 else None, **PAPER_MARK)
    ax.set_xlim(0, 1.05)
    accuracies = [100 * g.best_val.mean for g in selected] + [c.paper_value for c in paper]
    ax.set_ylim(max(0, min(accuracies) - 12), min(105, max(accuracies) + 12))
    _place_labels(ax, [(g.scatter, 100 * g.best_val.mean) for g in selected],
                  [scatter_label(g.scatter_vector) for g in selected])
    ax.set_xlabel("Scatter S")
    ax.set_ylabel("Best validation accuracy (%)")
    ax.legend(loc="lower right")


def _draw_compression(ax, panel, groups, history, comparisons):
    study = panel.studies[0]
    selected = [g for g in groups if g.study == study.name]
    compression = compressions(selected)
    xs = []
    for dense in (g for g in selected if g.method == "dense"):
        mean, sd = 100 * dense.test.mean, 100 * dense.test.sd
        ax.axhline(mean, color="black", linewidth=1.0, label=f"dense ({net_label(dense.net)})")
        if dense.test.n > 1:
            ax.axhspan(mean - sd, mean + sd, color="black", alpha=0.12, linewidth=0, zorder=0)
        ax.axhspan(mean - CSC_WITHIN_PP, mean, color=theme.PALETTE[2], alpha=0.15, linewidth=0, zorder=0,
                   label=f"within {CSC_WITHIN_PP:g} pp of dense")
    names = {"csc": "CSC (reconstruction)", "predefined": "random pre-defined sparse"}
    for color, method in zip(theme.PALETTE, [m for m in dict.fromkeys(g.method for g in selected) if m != "dense"]):
        line = sorted((g for g in selected if g.method == method), key=lambda g: compression[g])
        x = [compression[g] for g in line]
        xs += x
        _errorbar(ax, x, [g.test for g in line], color=color, marker="o" if method == "csc" else "s",
                  label=names.get(method, method))
    ax.set_xscale("log")
    # Label each compression once, skipping values within 15 % of the last label (they would overlap).
    ticks = []
    for x in sorted(set(round(x, 1) for x in xs)):
        if not ticks or x / ticks[-1] > 1.15:
            ticks.append(x)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}x"))
    ax.set_xlabel("Compression of the CL weights (dense / sparse)")
    ax.set_ylabel("Test accuracy (%)")
    ax.legend(loc="lower left")


DRAW = {"curves": _draw_curves, "milestones": _draw_milestones, "density": _draw_density,
        "split": _draw_split, "scatter": _draw_scatter, "compression": _draw_compression}


def _lacking(study: Study, view: str, groups: list[Group], history_ids: set[str]) -> str | None:
    """Why a present study cannot fill a panel of this view, or None when it can."""
    mine = [g for g in groups if g.study == study.name]
    if view == "curves" and not any(r in history_ids for g in mine for r in g.run_ids):
        return "no rows in history.csv"
    if view == "scatter" and all(math.isnan(g.scatter) for g in mine):
        return "no scatter values in the summary"
    if view == "split" and not any(len(g.junction_densities) == 2 for g in mine):
        return "no two-junction runs"
    return None


def _panels(studies: list[Study], groups: list[Group], history_ids: set[str]) -> tuple[list[Panel], list[str]]:
    """(panels to draw, 'panel (x) of study: why' for panels left out) of one figure."""
    present = {g.study for g in groups}
    by_panel: dict[tuple[str, str], list[Study]] = {}
    skipped = []
    for study in (s for s in studies if s.name in present):
        for letter, view in study.panels:
            why = _lacking(study, view, groups, history_ids)
            if why:
                skipped.append(f"panel ({letter}) of `{study.name}`: {why}")
            else:
                by_panel.setdefault((letter, view), []).append(study)
    return [Panel(letter, view, tuple(s)) for (letter, view), s in sorted(by_panel.items())], skipped


def figure_stems(groups: list[Group]) -> list[str]:
    """The paper's figures in order, then one figure per study neither in STUDIES nor a beyond or ablation
    study (the ablation studies are tables: report.ablation)."""
    generic = [s for s in dict.fromkeys(g.study for g in groups)
               if s not in STUDIES and not is_beyond(s) and not is_ablation(s)]
    return list(FIGURES) + generic


def _save_grid(out_dir: Path, stem: str, panels, suptitle: str | None = None) -> list[Path]:
    """Draw panels [(title, draw(ax)), ...] on a grid of up to MAX_COLUMNS columns; write PDF and PNG."""
    columns = min(MAX_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    with theme.themed():
        fig = theme.new_figure(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows)
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        for ax, (title, draw) in zip(axes, panels):
            draw(ax)
            ax.set_title(title, loc="left")
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        if suptitle:
            fig.suptitle(suptitle, fontsize=9)
        return theme.save_figure(fig, out_dir, stem)


@dataclass(frozen=True)
class FigurePlan:
    """What one paper-style figure will show: its panels (empty: nothing to draw) and what is left out."""
    stem: str
    caption: str
    panels: tuple[Panel, ...]
    missing: tuple[str, ...]
    skipped: tuple[str, ...]


def _caption(caption: str, stem: str, dense: bool) -> str:
    """A figure's caption, saying how the dense net is drawn only when the figure has one."""
    return caption + (DENSE_SENTENCES.get(stem, "") if dense else "")


def plan_figures(groups: list[Group], history_ids: set[str]) -> list[FigurePlan]:
    """Every paper-style figure with at least one study in the summary (drawn or not), without drawing:
    `render_figures` draws exactly these, and the pipeline declares their files from it."""
    present = {g.study for g in groups}
    plans = []
    for stem in figure_stems(groups):
        studies = [s for s in STUDIES.values() if s.figure == stem] or [study_info(stem)]
        panels, skipped = _panels(studies, groups, history_ids)
        if panels or skipped:
            drawn = {s.name for p in panels for s in p.studies}
            dense = any(g.is_dense for g in groups if g.study in drawn)
            caption = _caption(FIGURES.get(stem, GENERIC_CAPTION.format(name=stem)), stem, dense)
            plans.append(FigurePlan(stem, caption, tuple(panels),
                                    tuple(s.name for s in studies if s.name not in present), tuple(skipped)))
    return plans


def render_figures(groups: list[Group], history: pd.DataFrame, comparisons: list[Comparison],
                   out_dir: Path) -> list[RenderedFigure]:
    """Draw every figure of `plan_figures` that has a panel; write PDF and PNG to out_dir.

    A figure whose studies ran but cannot fill a panel is returned without paths, with the reasons.
    The beyond studies are drawn by `render_beyond_figures`.
    """
    rendered = []
    for plan in plan_figures(groups, set(history["run_id"])):
        paths = ()
        if plan.panels:
            drawers = [(panel.title,
                        lambda ax, panel=panel: DRAW[panel.view](ax, panel, groups, history, comparisons))
                       for panel in plan.panels]
            paths = tuple(_save_grid(out_dir, plan.stem, drawers,
                                     "CSC layers - reconstruction from the abstract" if plan.stem == "csc" else None))
        rendered.append(RenderedFigure(plan.stem, plan.caption, paths, plan.missing, plan.skipped))
    return rendered


# --- Beyond the paper -----------------------------------------------------------------------------------

def _marker(method: str) -> str:
    """The catalogue's marker of a method; "P" for one without a marker of its own (dense, unknown)."""
    return (METHODS[method].marker if method in METHODS else None) or "P"


def _draw_methods(ax, study_groups: list[Group]):
    """Test accuracy vs overall density, one line per method label; dense nets as horizontal lines."""
    labels = series_labels(study_groups)
    for dense in (g for g in study_groups if g.is_dense):
        mean, sd = 100 * dense.test.mean, 100 * dense.test.sd
        ax.axhline(mean, color="black", linewidth=1.0, label=labels[dense])
        if dense.test.n > 1:
            ax.axhspan(mean - sd, mean + sd, color="black", alpha=0.12, linewidth=0, zorder=0)
    sparse = [g for g in study_groups if not g.is_dense]
    series = list(dict.fromkeys(labels[g] for g in sorted(sparse, key=order)))
    xs = []
    for k, (color, label) in enumerate(zip(theme.PALETTE * 3, series)):
        line = sorted((g for g in sparse if labels[g] == label), key=lambda g: g.overall_density)
        # Methods that reach the same accuracy at one density would hide each other: spread them sideways.
        dodge = 1 + DODGE * (k - (len(series) - 1) / 2)
        xs += [100 * g.overall_density for g in line]  # the ticks: the densities themselves
        x = [100 * g.overall_density * dodge for g in line]
        _errorbar(ax, x, [g.test for g in line], color=color, marker=_marker(line[0].method),
                  linestyle="--" if line[0].kind == "unstructured" else "-", label=label)
    if xs:
        _percent_log_x(ax, xs)
    ax.set_xlabel("Overall CL density")
    ax.set_ylabel("Test accuracy (%)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))


def _correlation_title(dataset: str, c: Correlation) -> str:
    return f"{dataset_name(dataset)}\nSpearman {c.text().replace('rho', 'ρ')}"


def _draw_correlation(ax, points: list[Group]):
    """Best validation accuracy vs scatter, colour = density level, marker = method."""
    levels = density_levels(points)
    ordered_levels = sorted(set(levels.values()), key=lambda lv: lv.low)
    colors = dict(zip(ordered_levels, theme.PALETTE * 3))
    for g in points:
        ax.scatter([g.scatter], [100 * g.best_val.mean], color=colors[levels[g]], s=18, linewidths=0.4,
                   edgecolors="white", marker=_marker(g.method), zorder=3)
    # One legend: the densities (colours), then the methods (markers) under a header entry of their own.
    handles = [Line2D([], [], color=colors[lv], marker="o", linestyle="", label=lv.label) for lv in ordered_levels]
    handles.append(Line2D([], [], linestyle="", label="Method"))
    methods = dict.fromkeys(g.method for g in sorted(points, key=order))
    handles += [Line2D([], [], color="0.35", marker=_marker(m), linestyle="", label=method_name(m))
                for m in methods]
    ax.legend(handles=handles, title="Overall CL density", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("Scatter S")
    ax.set_ylabel("Best validation accuracy (%)")


def beyond_figure_stems(groups: list[Group]) -> list[str]:
    """The "Beyond the paper" figures the summary supports: "beyond" (one panel per beyond study) when a
    beyond study ran, "scatter_correlation" (one panel per dataset) when some sparse configuration has a
    scatter value."""
    stems = ["beyond"] if by_study(groups) else []
    return stems + (["scatter_correlation"] if _pooled_correlations(groups) else [])


def _pooled_correlations(groups: list[Group]):
    return [r for r in correlation_rows(groups) if r.level is None]


def render_beyond_figures(groups: list[Group], out_dir: Path) -> list[RenderedFigure]:
    """Draw the figures of `beyond_figure_stems`."""
    rendered = []
    stems = beyond_figure_stems(groups)
    if "beyond" in stems:
        panels = [(study_info(name).title, lambda ax, mine=mine: _draw_methods(ax, mine))
                  for name, mine in by_study(groups).items()]
        paths = _save_grid(out_dir, "beyond", panels)
        dense = any(g.is_dense for mine in by_study(groups).values() for g in mine)
        rendered.append(RenderedFigure("beyond", _caption(BEYOND_FIGURES["beyond"], "beyond", dense), tuple(paths),
                                       (), ()))
    if "scatter_correlation" in stems:
        panels = [(_correlation_title(r.dataset, r.correlation),
                   lambda ax, r=r: _draw_correlation(ax, list(r.points))) for r in _pooled_correlations(groups)]
        paths = _save_grid(out_dir, "scatter_correlation", panels)
        rendered.append(RenderedFigure("scatter_correlation", BEYOND_FIGURES["scatter_correlation"], tuple(paths),
                                       (), ()))
    return rendered
