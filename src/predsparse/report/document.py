"""results/report.md and a self-contained results/report.html, rendered from one list of blocks.

`build_report` reads the summary, history, paper numbers and optional run-info JSON, draws the figures,
writes the tables and then the document: what was run, every figure and table, what the runs beyond the
paper show (methods, density allocations, wall time, accuracy vs scatter), the protocol ablation (`ablation_*`
studies), ours vs the paper for every number of paper_numbers.csv (agrees / disagrees / not compared and why,
counted at the top) with Fig. 7's claim judged per planned pattern, the deviations from the paper's protocol,
the studies that are missing, and how to browse the runs in MLflow. The HTML embeds its PNGs as base64 and
its CSS, so it opens from file:// with no server; the PDFs it links sit beside it.
"""

from __future__ import annotations

import base64
import html
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from predsparse import __version__
from predsparse.io import atomic_write_text
from predsparse.tracking import default_uri
from predsparse.report.ablation import EARLY_EPOCHS, REFERENCE, ablation
from predsparse.report.analysis import NO_LOSS_PP
from predsparse.report.beyond import correlation_points, reading
from predsparse.report.counts import load_counts
from predsparse.report.figures import (RenderedFigure, beyond_figure_stems, plan_figures, render_beyond_figures,
                                       render_figures)
from predsparse.report.inputs import Group, group_runs, load_history, load_paper, load_run_info, load_summary
from predsparse.report.paper import (ACC_TOLERANCE_PP, AGREES, DISAGREES, FIG7A_RANDOM_PAPER_PCT, REL_TOLERANCE,
                                     ScatterClaim, Verdict, compare, comparisons, default_paper_path, describe_row,
                                     load_reasons, scatter_claims)
from predsparse.report.studies import FIGURES, STUDIES, is_ablation, is_beyond, study_info
from predsparse.report.tables import BEYOND_TABLES, Table, build_tables

TITLE = "predsparse - reproduction report"
PAPER = ('Dey, Huang, Beerel, Chugg, "Characterizing Sparse Connectivity Patterns in Neural Networks" '
         "(ICLR 2018 submission)")
BEYOND_HEADING = "Beyond the paper"
AGREEMENT_HEADING = "Ours vs the paper"
ABLATION_HEADING = "Protocol ablation"
ABLATION_TABLES = ("ablation_arms", "ablation")
# Tables drawn in sections of their own rather than under "Tables".
OWN_SECTION_TABLES = ("ours_vs_paper", "scatter_claim", *ABLATION_TABLES, *BEYOND_TABLES)
COMMAND_CHARS = 200  # longer commands (e.g. a Snakemake job's) are cut in "What was run"
MORSE_CEILING = ("Morse codebook: classes `H^` and `(` share the code `-.--.`, so no classifier can exceed "
                 "63/64 = 98.44 % on Morse data; the codebook is kept as the paper's for fidelity.")


# --- blocks -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str  # inline subset: `code`, **bold**, [text](href)


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Image:
    png: str  # relative to the report
    pdf: str
    caption: str


@dataclass(frozen=True)
class TableBlock:
    table: Table
    files: tuple[str, ...]  # relative paths of its .md and .tex


@dataclass(frozen=True)
class Contents:
    """The list of level-2 headings of the document."""


def slug(text: str) -> str:
    """GitHub-style heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^a-z0-9 -]", "", text.lower()).replace(" ", "-")


# --- rendering ----------------------------------------------------------------------------------------

def render_markdown(blocks) -> str:
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Para):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Code):
            out.append(f"```bash\n{block.text}\n```")
        elif isinstance(block, Image):
            out.append(f"![{block.caption.split(' - ')[0]}]({block.png})\n\n*{block.caption}* "
                       f"([PDF]({block.pdf}))")
        elif isinstance(block, TableBlock):
            table = block.table
            links = ", ".join(f"[{Path(f).suffix[1:]}]({f})" for f in block.files)
            note = f"\n{table.note}\n" if table.note else ""
            out.append(f"**{table.title}** ({links})\n\n{table.markdown()}{note}".rstrip())
        elif isinstance(block, Contents):
            out.append("\n".join(f"- [{h.text}](#{slug(h.text)})" for h in blocks
                                 if isinstance(h, Heading) and h.level == 2))
    return "\n\n".join(out) + "\n"


_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")


def inline_html(text: str) -> str:
    """The inline subset this module emits (`code`, **bold**, [text](href)) as HTML, the rest escaped."""
    out, last = [], 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[last:match.start()]))
        code, bold, label, href = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{inline_html(bold)}</strong>")
        else:
            out.append(f'<a href="{html.escape(href)}">{inline_html(label)}</a>')
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def render_html(blocks, base_dir: Path) -> str:
    """The document as one HTML page; PNGs are read from base_dir and embedded."""
    css = (resources.files("predsparse.report") / "report.css").read_text()
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f'<h{block.level} id="{slug(block.text)}">{inline_html(block.text)}</h{block.level}>')
        elif isinstance(block, Para):
            out.append(f"<p>{inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Code):
            out.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
        elif isinstance(block, Image):
            data = base64.b64encode((base_dir / block.png).read_bytes()).decode("ascii")
            out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption)}">'
                       f'<figcaption>{inline_html(block.caption)} (<a href="{html.escape(block.pdf)}">PDF</a>)'
                       "</figcaption></figure>")
        elif isinstance(block, TableBlock):
            links = ", ".join(f'<a href="{html.escape(f)}">{Path(f).suffix[1:]}</a>' for f in block.files)
            note = f"<p>{inline_html(block.table.note)}</p>" if block.table.note else ""
            out.append(f"<p><strong>{html.escape(block.table.title)}</strong> ({links})</p>"
                       f'<div class="table-wrap">{block.table.html()}</div>{note}')
        elif isinstance(block, Contents):
            items = "".join(f'<li><a href="#{slug(h.text)}">{html.escape(h.text)}</a></li>' for h in blocks
                            if isinstance(h, Heading) and h.level == 2)
            out.append(f"<nav><ul>{items}</ul></nav>")
    body = "\n".join(out)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(TITLE)}</title>'
            f"\n<style>\n{css}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n")


# --- content ------------------------------------------------------------------------------------------

def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{seconds:.0f} s" if seconds < 60 else (f"{minutes} min" if minutes < 60
                                                      else f"{minutes // 60} h {minutes % 60:02d} min")


def _listing(values) -> str:
    return ", ".join(str(v) for v in values) if len(values) else "none"


def _protocol_lines(summary) -> list[str]:
    """The protocol choices the paper leaves open, as the runs recorded them (columns absent in older
    summaries are skipped): init, optimiser and lr, batch, random generator, scatter convention."""
    lines = []
    def values(column):
        return sorted({str(v) for v in summary[column] if str(v) not in ("", "nan")}) if column in summary else []
    if inits := values("init"):
        lines.append("Initialisation: " + _listing(inits) + " (uniform: ours, U(+-1/sqrt(fi)); he_dense: the "
                     "authors', N(0, 2/N_i) over the dense fan-in)")
    if optimizers := values("optimizer"):
        lines.append("Optimiser: " + _listing(optimizers) + "; lr " + _listing(values("lr"))
                     + "; batch " + _listing(values("batch_size")))
    if "pattern_options" in summary:
        random_rows = summary[summary["kind"] == "random"]
        generators = sorted({"sequential" if "sequential" in str(o) else "uniform" for o in random_rows["pattern_options"]})
        if generators:
            lines.append("Random patterns drawn by the generator: " + _listing(generators)
                         + " (sequential: the authors'; uniform: ours)")
    if neurons := values("scatter_neurons"):
        lines.append("Scatter averaged over: " + " and ".join(
            {"all": "all neurons", "real": "the real neurons of padded layers (the authors' convention)"}[n]
            for n in neurons))
    return lines


def _what_was_run(summary, groups, run_info) -> list:
    studies = list(dict.fromkeys(summary["study"]))
    versions = run_info.get("versions")
    preset = "not recorded (no run-info JSON)"
    if "preset" in run_info:
        preset = f"`{run_info['preset']}`" + (f" - {run_info['description']}" if run_info.get("description") else "")
    planned = f" finished of {run_info['runs']} planned" if "runs" in run_info else ""
    morse_variants = sorted(set(summary.loc[summary["dataset"] == "morse", "variant"]))
    items = [
        f"Preset: {preset}",
        f"Runs: {len(summary)}{planned} ({len(groups)} configurations) in {len(studies)} studies: "
        + ", ".join(f"`{s}`" for s in studies),
        "Seeds: " + _listing(sorted({int(s) for s in summary["seed"]})),
        "Datasets: " + _listing(sorted(set(summary["dataset"])))
        + (f" (Morse variant: {_listing(morse_variants)})" if morse_variants else ""),
        "Epochs per run: " + _listing(sorted({int(e) for e in summary["epochs"]})),
        *_protocol_lines(summary),
        "Device: " + _listing(sorted(set(summary["device"]) - {""}))
        + (f" on `{run_info['host']}`" if "host" in run_info else ""),
        f"Training wall time: {_duration(summary['wall_time_s'].sum())} summed over runs",
        "Versions: " + (", ".join(f"{k} {v}" for k, v in sorted(versions.items())) if versions
                        else f"not recorded by the pipeline (report rendered by predsparse {__version__})"),
    ]
    for key, label in (("config", "Config"), ("command", "Command"), ("git_commit", "Commit")):
        if key in run_info:
            text = run_info[key]
            items.append(f"{label}: `{text if len(text) <= COMMAND_CHARS else text[:COMMAND_CHARS] + ' ...'}`")
    return [Heading(2, "What was run"), Bullets(tuple(items))]


def _figure_name(stem: str) -> str:
    """'Figure 1' or 'CSC layers (reconstruction from the abstract)': the caption's head."""
    return FIGURES[stem].split(" - ")[0] if stem in FIGURES else stem


def _coverage(groups, figures: list[RenderedFigure], tables: list[Table], history_ids: set[str],
              run_info: dict) -> list:
    present = {g.study for g in groups}
    missing = [s for s in STUDIES.values() if s.name not in present]
    blocks = [Heading(2, "Coverage")]
    unfinished = [s for s in run_info.get("studies", {}) if s not in present]
    if unfinished:
        blocks.append(Para("Studies of the config without a finished run (still running, failed, or not aggregated "
                           "yet): " + ", ".join(f"`{s}`" for s in unfinished) + "."))
    if missing:
        blocks += [Para("Studies of the paper not in this summary (their panels and paper numbers are left out):"),
                   Bullets(tuple(f"`{s.name}` - {s.title}: {_figure_name(s.figure)}, panel "
                                 + ", ".join(dict.fromkeys(letter for letter, _ in s.panels)) for s in missing))]
    else:
        blocks.append(Para("Every study of the paper is in this summary."))
    beyond = sorted(s for s in present if is_beyond(s))
    if beyond:
        blocks.append(Para("Studies beyond the paper (methods and density allocations at equal weight budgets), "
                           f"drawn in [{BEYOND_HEADING}](#{slug(BEYOND_HEADING)}): "
                           + ", ".join(f"`{s}`" for s in beyond) + "."))
    ablations = sorted(s for s in present if is_ablation(s))
    if ablations:
        blocks.append(Para("Protocol ablation studies (one protocol choice changed each), in "
                           f"[{ABLATION_HEADING}](#{slug(ABLATION_HEADING)}): "
                           + ", ".join(f"`{s}`" for s in ablations) + "."))
    unknown = sorted(present - set(STUDIES) - set(beyond) - set(ablations))
    if unknown:
        blocks.append(Para("Other studies beyond the paper's list, each drawn as accuracy vs overall CL density: "
                           + ", ".join(f"`{s}`" for s in unknown) + "."))
    reported = {f.stem for f in figures}  # drawn, or named in Figures with the reason
    not_drawn = [stem for stem in FIGURES if stem not in reported]
    if not_drawn:
        blocks.append(Para("Figures not drawn (none of their studies ran): " + ", ".join(not_drawn) + "."))
    without_history = sum(1 for g in groups for r in g.run_ids if r not in history_ids)
    if without_history:
        blocks.append(Para(f"{without_history} run(s) have no rows in history.csv: their epoch curves and "
                           "1/5-epoch bars are missing."))
    absent_tables = {"table1": "Table 1", "table2": "Table 2", "csc": "CSC table", "scatter": "scatter table",
                     "ours_vs_paper": "ours-vs-paper table", "scatter_claim": "Fig. 7 claim table",
                     "ablation": "ablation table", "beyond": "beyond-the-paper table",
                     "wall_time": "wall-time table", "scatter_correlation": "scatter-correlation table"}
    names = {t.name for t in tables}
    skipped = [label for name, label in absent_tables.items() if name not in names]
    if skipped:
        blocks.append(Para("Tables not produced (no runs of their kind): " + ", ".join(skipped) + "."))
    return blocks


def _image(fig: RenderedFigure, out_dir: Path) -> Image:
    """The image block of a drawn figure (its PNG shown, its PDF linked, both relative to the report)."""
    png, pdf = (p.relative_to(out_dir).as_posix() for p in fig.paths[::-1])
    return Image(png, pdf, fig.caption)


def _figures(figures: list[RenderedFigure], out_dir: Path) -> list:
    blocks = [Heading(2, "Figures"),
              Para("Means over seeds; error bars and bands are +/- one sample standard deviation where a "
                   "configuration has several seeds. Black crosses and lines are the paper's reported values.")]
    for fig in figures:
        blocks.append(Heading(3, _figure_name(fig.stem) if fig.stem in FIGURES else f"Study {fig.stem}"))
        if fig.paths:
            blocks.append(_image(fig, out_dir))
        if fig.missing:
            blocks.append(Para("Not drawn (study not run): " + ", ".join(f"`{s}`" for s in fig.missing) + "."))
        if fig.skipped:
            blocks.append(Para("Not drawn: " + "; ".join(fig.skipped) + "."))
    return blocks


def _beyond(groups, figures: list[RenderedFigure], table_blocks: list[TableBlock], out_dir: Path) -> list:
    """Methods and allocations of the beyond studies, wall time, accuracy vs scatter, and their reading."""
    def image(stem):
        return [_image(f, out_dir) for f in figures if f.stem == stem]

    tables = {b.table.name: b for b in table_blocks if b.table.name in BEYOND_TABLES}
    blocks = [Heading(2, BEYOND_HEADING),
              Para("Not in the paper: pre-defined sparsity against magnitude pruning and dynamic sparse training "
                   "(SET, RigL) at the same weight budgets, the density allocation across junctions (paper rule, "
                   "uniform, ERK) at equal overall density, training wall time per method, and how accuracy "
                   "follows scatter across every sparse pattern trained. Computed from results/summary.csv only.")]
    ran = any(is_beyond(g.study) for g in groups)
    if ran:
        blocks += [Heading(3, "Methods at equal overall density"), *image("beyond"), tables["beyond"],
                   Heading(3, "Training wall time"), tables["wall_time"]]
    else:
        blocks.append(Para("No `beyond*` study ran: no comparison of methods, allocations or wall times."))
    if correlation_points(groups):
        blocks += [Heading(3, "Accuracy vs scatter"), *image("scatter_correlation"), tables["scatter_correlation"]]
    else:
        blocks.append(Para("No sparse configuration has a scatter value: no correlation of accuracy with scatter."))
    items = reading(groups)
    if items:
        how = ("Generated from the numbers above." + (
            " Methods are compared on test accuracy (mean over seeds) against pre-defined sparse of the same study "
            "and density (its paper-rule allocation where that ran); a difference within one sd of the seeds is "
            "not a clear one." if ran else ""))
        blocks += [Heading(3, "Reading"), Para(how), Bullets(tuple(items))]
    return blocks


def _unit(unit: str) -> str:
    """Differences of percentages are percentage points."""
    return "pp" if unit == "percent" else unit


def count_line(verdicts: list[Verdict]) -> str:
    """'72 of 91 compared, 67 agree'."""
    compared = sum(v.compared for v in verdicts)
    agree = sum(v.status == AGREES for v in verdicts)
    return f"{compared} of {len(verdicts)} compared, {agree} agree"


def _claim_summary(claims: list[ScatterClaim]) -> list[str]:
    items = []
    for study in dict.fromkeys(c.study for c in claims):
        mine = [c for c in claims if c.study == study]
        judged = [c for c in mine if c.random is not None]
        if not judged:
            items.append(f"`{study}`: no random point to compare the {len(mine)} planned configuration(s) with.")
            continue
        below = [c for c in judged if c.below.startswith("yes")]
        sure = [c for c in judged if c.below == "yes"]
        no_ci = [c for c in judged if not c.difference.has_ci]
        low = [c for c in judged if c.planned.scatter < c.random.scatter]
        low_below = [c for c in low if c.below.startswith("yes")]
        items.append(f"`{study}`: {len(below)} of {len(judged)} planned configurations are below the random point "
                     f"({len(sure)} with the whole 95 % CI below 0; {len(no_ci)} with one seed on a side, no CI); "
                     f"of the {len(low)} with a lower S than the random point, {len(low_below)} are below it.")
    return items


def _agreement(verdicts: list[Verdict], claims: list[ScatterClaim], table_blocks: list[TableBlock]) -> list:
    tables = {b.table.name: b for b in table_blocks}
    blocks = [Heading(2, AGREEMENT_HEADING),
              Para(f"**{count_line(verdicts)}.** Every number of paper_numbers.csv is in the table below; counts "
                   "that need no training (Table 1's densities, Table 2's parameters, operations and reductions) are "
                   "computed from the configurations of config.yaml and the models on every preset, CIFAR included, "
                   "and from the runs where they ran."),
              Para(f"Tolerances: accuracies agree within +/-{ACC_TOLERANCE_PP:g} percentage points; counts, "
                   "densities, parameter numbers, reductions and scatter values agree when equal to the paper's "
                   "printed precision (half a unit of its last printed digit, so 6.25 agrees with \"6.3\") or "
                   f"within {100 * REL_TOLERANCE:g} % of its value, whichever is wider; "
                   f"yes/no statements when the answer is the same (no accuracy loss = within {NO_LOSS_PP:g} pp "
                   "of the FC net); orderings when identical. Paper values read from garbled figure labels are "
                   "approximate, and our accuracies come from a shorter protocol where the deviations say so.")]
    compared = [v for v in verdicts if v.compared]
    if compared:
        by_source = Counter(v.row["source"] for v in compared)
        agree_by_source = Counter(v.row["source"] for v in compared if v.status == AGREES)
        blocks.append(Para("Agreeing per source: "
                           + ", ".join(f"{s} {agree_by_source[s]}/{n}" for s, n in by_source.items()) + "."))
    disagreements = [v for v in verdicts if v.status == DISAGREES]
    if disagreements:
        blocks.append(Para("Where we disagree, and why (paper_reasons.yaml; open = not yet explained):"))
        items = []
        for v in disagreements:
            c = v.comparison
            difference = f" (difference {c.difference} {_unit(v.row['unit'])})" if c.difference else ""
            items.append(f"{describe_row(v.row)}: paper {c.paper_text}, ours {c.ours_text}{difference} - {v.why}")
        blocks.append(Bullets(tuple(items)))
    elif compared:
        blocks.append(Para("We agree on every number compared."))
    uncovered = [v for v in verdicts if not v.compared]
    if uncovered:
        reasons = Counter((v.row["study"], v.why) for v in uncovered)
        blocks.append(Para(f"{len(uncovered)} paper numbers are not compared:"))
        blocks.append(Bullets(tuple(f"`{study}`: {n} number{'s' if n > 1 else ''}, {why}"
                                    for (study, why), n in reasons.items())))
    if "ours_vs_paper" in tables:
        blocks.append(tables["ours_vs_paper"])
    blocks.append(Heading(3, "Fig. 7: planned patterns against the random point"))
    if claims:
        blocks += [Para("The paper's claim (Section 3.2, Fig. 7): planned patterns with low scatter S perform below "
                        "the random pattern of the same fan-outs; Fig. 7a gives 46 %, 12 % and 8 % for one, two and "
                        f"three entries of 1/8 in S against about {FIG7A_RANDOM_PAPER_PCT:g} % for the random "
                        "point. Judged per planned configuration, with Welch's 95 % interval over seeds:"),
                   Bullets(tuple(_claim_summary(claims)))]
        if "scatter_claim" in tables:
            blocks.append(tables["scatter_claim"])
    else:
        blocks.append(Para("No planned configuration of a scatter study ran: the claim is not judged."))
    return blocks


def _ablation(result, table_blocks: list[TableBlock]) -> list:
    tables = {b.table.name: b for b in table_blocks}
    if result is None:
        return []
    blocks = [Heading(2, ABLATION_HEADING),
              Para(f"Studies named `ablation_*` train the same patterns under one changed protocol choice each; "
                   f"`{REFERENCE}` is the protocol the others change"
                   + ("" if result.reference else " (not in this summary: every arm is shown in full)") + ". "
                   + (f"The arm `{REFERENCE}, first {EARLY_EPOCHS} epochs` is the reference runs' best validation "
                      "accuracy within their first epochs (history.csv), at no training cost. "
                      if any(a.derived for a in result.arms) else "")
                   + "The Informs column names "
                   "the paper number each pattern bears on; the reasons for the disagreements in "
                   f"[{AGREEMENT_HEADING}](#{slug(AGREEMENT_HEADING)}) are written from this table "
                   "(paper_reasons.yaml).")]
    blocks += [tables[name] for name in ABLATION_TABLES if name in tables]
    return blocks


def _deviations(summary, groups, run_info) -> list:
    items = []
    for study in dict.fromkeys(g.study for g in groups):
        expected = study_info(study).paper_epochs
        epochs = sorted({g.epochs for g in groups if g.study == study})
        if expected is not None and epochs != [expected]:
            items.append(f"`{study}`: trained for {_listing(epochs)} epochs (paper: {expected}).")
    if "morse" in set(summary["dataset"]):
        variants = sorted(set(summary.loc[summary["dataset"] == "morse", "variant"]) - {""}) or ["not recorded"]
        items.append(f"Morse variant: {', '.join(variants)}; the paper does not say which data it used (paper2017 "
                     "is the October 2017 generator it cites, with that generator's defaults).")
        items.append(MORSE_CEILING)
    if any(len(g.seeds) > 1 for g in groups):
        items.append("Our points are means over several seeds; the paper does not say how many runs its points are.")
    if any(g.method == "csc" for g in groups):
        items.append("CSC layers are a reconstruction from the abstract of the CSC paper (mixed-radix cyclic "
                     "support layers); only the abstract is available.")
    items += run_info.get("deviations", [])
    return [Heading(2, "Deviations from the paper's protocol"),
            Bullets(tuple(items)) if items else Para("None recorded.")]


def _mlflow(run_info) -> list:
    uri = run_info.get("tracking_uri") or default_uri()
    preset = run_info.get("preset")
    experiment = f"`{preset}/<study>`" if preset and preset != "custom" else "named after its study"
    where = (f"Each study is an MLflow experiment ({experiment}) and each run an MLflow run named by its "
             "`run_name` and tagged with its `run_id` (columns of the summary; search `tags.run_id = '<run_id>'`). "
             "MLflow 3.17's UI opens in its GenAI mode: choose \"Model training\" at its top left, or add "
             "`?workflowType=machine_learning` to its address.")
    if uri.startswith(("http://", "https://")):
        return [Heading(2, "Browse the runs in MLflow"), Para(f"{where} The runs are on the tracking server {uri}.")]
    return [Heading(2, "Browse the runs in MLflow"),
            Para(f"{where} Start the UI from the repository root and open "
                 "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning:"),
            Code(f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1")]


@dataclass(frozen=True)
class _Inputs:
    """What the report is computed from, and everything decided before drawing."""
    summary: object
    history: object
    run_info: dict
    groups: list
    verdicts: list
    claims: list
    ablation: object
    tables: list


def _read_inputs(summary_path, history_path, run_info_path, paper_path, counts_path, reasons_path) -> _Inputs:
    summary = load_summary(summary_path)
    history = load_history(history_path)
    paper = load_paper(paper_path or default_paper_path())
    reasons = load_reasons(reasons_path, paper)
    groups: list[Group] = group_runs(summary)
    verdicts = compare(paper, groups, load_counts(counts_path), reasons)
    claims = scatter_claims(groups, paper)
    ablation_result = ablation(groups, history, paper)
    return _Inputs(summary, history, load_run_info(run_info_path) if run_info_path else {}, groups, verdicts,
                   claims, ablation_result, build_tables(groups, verdicts, claims, ablation_result))


def report_files(summary_path, history_path, paper_path=None, counts_path=None, reasons_path=None) -> dict[str, list[str]]:
    """The files `build_report` writes for these inputs, without drawing anything, relative to its out_dir:
    {"figures": PNGs, "figure_pdfs": PDFs, "tables": Markdown tables, "table_csv": their CSV, "table_tex":
    LaTeX tables}, besides report.md and report.html. The pipeline declares them as outputs."""
    inputs = _read_inputs(summary_path, history_path, None, paper_path, counts_path, reasons_path)
    stems = [p.stem for p in plan_figures(inputs.groups, set(inputs.history["run_id"])) if p.panels]
    stems += beyond_figure_stems(inputs.groups)
    return {"figures": [f"figures/{s}.png" for s in stems], "figure_pdfs": [f"figures/{s}.pdf" for s in stems],
            "tables": [f"tables/{t.name}.md" for t in inputs.tables],
            "table_csv": [f"tables/{t.name}.csv" for t in inputs.tables],
            "table_tex": [f"tables/{t.name}.tex" for t in inputs.tables]}


def build_report(summary_path, history_path, out_dir, run_info_path=None, paper_path=None, counts_path=None,
                 reasons_path=None) -> list[Path]:
    """Write figures/, tables/, report.md and report.html under out_dir; return every path written.

    counts_path: the training-free counts of config.yaml's configurations (default: the shipped
    config_counts.csv); reasons_path: the curated reasons (default: the shipped paper_reasons.yaml)."""
    out_dir = Path(out_dir)
    inputs = _read_inputs(summary_path, history_path, run_info_path, paper_path, counts_path, reasons_path)
    summary, history, run_info, groups = inputs.summary, inputs.history, inputs.run_info, inputs.groups
    verdicts, claims, ablation_result, tables = inputs.verdicts, inputs.claims, inputs.ablation, inputs.tables

    figures = render_figures(groups, history, comparisons(verdicts), out_dir / "figures")
    beyond_figures = render_beyond_figures(groups, out_dir / "figures")
    written = [p for f in figures + beyond_figures for p in f.paths]
    table_blocks = []
    for table in tables:
        paths = table.write(out_dir / "tables")
        written += paths
        table_blocks.append(TableBlock(table, tuple(p.relative_to(out_dir).as_posix() for p in paths)))

    blocks = [Heading(1, TITLE),
              Para(f"Reproduction of {PAPER}, and of the CSC-layer experiments (reconstruction from the abstract). "
                   f"Everything below is computed from `{summary_path}` and `{history_path}`. "
                   f"[{AGREEMENT_HEADING}](#{slug(AGREEMENT_HEADING)}): **{count_line(verdicts)}**."),
              Contents()]
    blocks += _what_was_run(summary, groups, run_info)
    blocks += _coverage(groups, figures, tables, set(history["run_id"]), run_info)
    blocks += _figures(figures, out_dir)
    blocks += [Heading(2, "Tables"),
               *[b for b in table_blocks if b.table.name not in OWN_SECTION_TABLES]]
    blocks += _beyond(groups, beyond_figures, table_blocks, out_dir)
    blocks += _ablation(ablation_result, table_blocks)
    blocks += _agreement(verdicts, claims, table_blocks)
    blocks += _deviations(summary, groups, run_info)
    blocks += _mlflow(run_info)

    atomic_write_text(out_dir / "report.md", render_markdown(blocks))
    atomic_write_text(out_dir / "report.html", render_html(blocks, out_dir))
    return written + [out_dir / "report.md", out_dir / "report.html"]
