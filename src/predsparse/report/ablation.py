"""The protocol ablation: studies named `ablation_*` train the same few patterns under one changed protocol
choice each (initialisation, optimizer, learning rate, generator of random patterns, data variant, ...).

`ablation_reference` is the protocol the others change one thing of. Each pattern (net, fan-outs, kind and
options, the random generator left out since it is itself an arm's choice) is a row; each study an arm
(column), its cell the mean best validation accuracy over seeds. A derived arm costs no training: the best
validation accuracy within the first EARLY_EPOCHS epochs of the reference runs (history.csv). Each arm's
settings are read from summary.csv (the runs' specs), and the arm is described by the ones that differ from
the reference. Each pattern says which paper number it informs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from predsparse.density import dense_junction_weights, valid_splits
from predsparse.report.analysis import PAPER_METHODS
from predsparse.report.inputs import SETTINGS, Group, Stat
from predsparse.report.paper import eighths
from predsparse.report.studies import is_ablation

REFERENCE = "ablation_reference"
EARLY_EPOCHS = 12
# An arm's settings, in the order the report lists them (the generator: random patterns' `generator` option).
ARM_SETTINGS = ("variant", "init", "optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs", "generator")
DEFAULT_GENERATOR = "uniform"  # predsparse.patterns.generate.DEFAULT_GENERATOR (left out of pattern options)
# Appendix 5.1's overall densities per paper study.
SPLIT_STUDIES = {"morse_split_25": 0.25, "morse_split_50": 0.5}


def _options(text: str) -> dict:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"": text}
    return value if isinstance(value, dict) else {"": text}


def cluster_label(clusters: dict) -> str:
    """{"1": {"f": 8}, "2": {"b": 8}} -> '1:f=8,2:b=8' (the config's spelling)."""
    parts = []
    for junction in sorted(clusters, key=lambda j: int(j) if str(j).isdigit() else 0):
        setting = clusters[junction]
        if isinstance(setting, dict):
            parts += [f"{junction}:{d}={setting[d]}" for d in ("f", "b") if d in setting]
    return ",".join(parts)


@dataclass(frozen=True)
class PatternKey:
    """What a pattern is, whatever arm trained it (the random generator is an arm setting, not part of it)."""

    dataset: str
    net: tuple[int, ...]
    fanouts: tuple[int, ...]
    kind: str
    options: str  # the pattern options without the generator, canonical JSON
    method: str
    method_options: str

    @property
    def label(self) -> str:
        """'random fo (128, 8)', 'planned 1:f=8 fo (128, 8)', 'dense'."""
        options = json.loads(self.options)
        text = self.kind
        if "clusters" in options:
            text += " " + (cluster_label(options.pop("clusters")) or "c = 1")
        if options:
            text += " " + json.dumps(options, sort_keys=True)
        if self.kind != "dense":
            text += f" fo ({', '.join(map(str, self.fanouts))})"
        if self.method not in PAPER_METHODS:
            text += f" [{self.method}]"
        return text


def pattern_key(group: Group) -> PatternKey:
    options = {k: v for k, v in _options(group.pattern_options).items() if k != "generator"}
    return PatternKey(group.dataset, group.net, group.fanouts, group.kind, json.dumps(options, sort_keys=True),
                      group.method, group.method_options)


def settings(group: Group) -> dict[str, str]:
    """A group's training settings as the report prints them ("" where summary.csv does not record one)."""
    values = {"variant": group.variant, "epochs": str(group.epochs)}
    values.update({name: getattr(group, name) for name in SETTINGS})
    if group.kind == "random":
        values["generator"] = _options(group.pattern_options).get("generator", DEFAULT_GENERATOR)
    return values


@dataclass(frozen=True)
class Arm:
    name: str  # study name, or the derived arm's label
    settings: dict  # setting -> value ('/'-joined where its groups differ; "not recorded" where empty)
    differs: tuple[str, ...]  # 'setting: value (reference: value)' for each that differs from the reference
    runs: int
    derived: bool = False  # computed from the reference runs' history, no training of its own


@dataclass(frozen=True)
class AblationRow:
    key: PatternKey
    informs: str
    cells: tuple[Stat | None, ...]  # one per arm, in Ablation.arms order


@dataclass(frozen=True)
class Ablation:
    arms: tuple[Arm, ...]
    rows: tuple[AblationRow, ...]
    reference: str | None  # the reference arm's name, None when no ablation_reference ran


def _arm_settings(groups: list[Group]) -> dict[str, str]:
    merged = {}
    for name in ARM_SETTINGS:
        values = list(dict.fromkeys(v for g in groups if (v := settings(g).get(name)) is not None))
        if values:
            merged[name] = "/".join(v or "not recorded" for v in values)
    return merged


def _early_best(group: Group, history: pd.DataFrame, epochs: int) -> Stat | None:
    runs = history[history["run_id"].isin(group.run_ids) & (history["epoch"] <= epochs)]
    best = runs.groupby("run_id")["val_acc"].max()
    return Stat.of(best.tolist()) if len(best) else None


def informs(key: PatternKey, scatter_vector, paper: pd.DataFrame | None) -> str:
    """The paper numbers a pattern bears on (Morse CL-only 64-1024-64, the net the ablation trains)."""
    if key.dataset != "morse" or key.net != (64, 1024, 64):
        return "-"
    rows = paper.to_dict("records") if paper is not None else []

    def value(source, study, quantity):
        return next((r["value"] for r in rows if (r["source"], r["study"], r["quantity"]) == (source, study, quantity)),
                    None)

    texts = []
    if key.kind == "dense":
        texts.append("FC baseline of Fig. 3a, Sec. 2.2.3 and Table 2 (Morse)")
    elif key.kind == "planned" and scatter_vector:
        count = eighths(scatter_vector)
        paper_value = value("fig7a", "morse_scatter", f"acc_S_eighth_x{count}") if count else None
        if paper_value:
            texts.append(f"Fig. 7a, {count} entr{'y' if count == 1 else 'ies'} of 1/8 in S (paper {paper_value} %)")
        texts.append("Fig. 7 claim: below the random point")
    elif key.kind == "random":
        weights = sum(n * fo for n, fo in zip(key.net, key.fanouts))
        dense = sum(dense_junction_weights(key.net))
        if key.fanouts == (128, 8):
            texts.append("Fig. 7a random point (paper about 74 %, figure label)")
        if key.fanouts == (512, 32):
            texts.append("Sec. 2.2.3: 50 % with negligible loss; Table 2 (Morse)")
        for study, overall in SPLIT_STUDIES.items():
            if weights != round(overall * dense):
                continue
            splits = valid_splits(key.net, overall)
            ends = {splits[0]: "acc_j1_min_j2_max", splits[-1]: "acc_j1_max_j2_min"} if splits else {}
            if key.fanouts in ends:
                quantity = ends[key.fanouts]
                where = "junction 1 at its minimum" if quantity.endswith("min_j2_max") else "junction 1 at its maximum"
                paper_value = value("app5.1", study, quantity)
                texts.append(f"App. 5.1, {100 * overall:g} % overall, {where} (paper {paper_value} %)")
            best = value("sec2.4", study, "best_split")
            if best and tuple(round(100 * fo / n) for fo, n in zip(key.fanouts, key.net[1:])) == tuple(
                    round(float(v)) for v in best.split(";")):
                texts.append(f"Sec. 2.4: best split at {100 * overall:g} % (paper {best.replace(';', ' / ')} %)")
    return "; ".join(texts) or "-"


def ablation(groups: list[Group], history: pd.DataFrame, paper: pd.DataFrame | None = None) -> Ablation | None:
    """The ablation table of the `ablation_*` studies (None when none ran)."""
    mine = [g for g in groups if is_ablation(g.study)]
    if not mine:
        return None
    studies = list(dict.fromkeys(g.study for g in mine))
    if REFERENCE in studies:
        studies.remove(REFERENCE)
        studies.insert(0, REFERENCE)
    by_study = {s: [g for g in mine if g.study == s] for s in studies}
    reference = _arm_settings(by_study[REFERENCE]) if REFERENCE in by_study else None

    def arm(name, arm_groups, values, derived=False):
        differs = ()
        if reference is not None and name != REFERENCE:
            differs = tuple(f"{k}: {v} (reference: {reference.get(k, 'not recorded')})" for k, v in values.items()
                            if v != reference.get(k))
        return Arm(name, values, differs, sum(len(g.run_ids) for g in arm_groups), derived)

    arms = [arm(s, by_study[s], _arm_settings(by_study[s])) for s in studies]
    keys = list(dict.fromkeys(pattern_key(g) for s in studies for g in by_study[s]))
    cells: dict[tuple[PatternKey, str], Stat] = {}
    vectors: dict[PatternKey, tuple] = {}
    for s in studies:
        for g in by_study[s]:
            cells.setdefault((pattern_key(g), s), g.best_val)
            if g.scatter_vector:
                vectors.setdefault(pattern_key(g), g.scatter_vector)
    ref_groups = by_study.get(REFERENCE, [])
    if ref_groups and max(g.epochs for g in ref_groups) > EARLY_EPOCHS:
        early = {pattern_key(g): stat for g in ref_groups if (stat := _early_best(g, history, EARLY_EPOCHS))}
        if early:
            name = f"{REFERENCE}, first {EARLY_EPOCHS} epochs"
            values = {**_arm_settings(ref_groups), "epochs": f"{EARLY_EPOCHS} (best of the reference runs' first "
                                                              f"{EARLY_EPOCHS} epochs, history.csv)"}
            arms.insert(1, arm(name, ref_groups, values, derived=True))
            cells.update({(k, name): stat for k, stat in early.items()})
    rows = tuple(AblationRow(k, informs(k, vectors.get(k, ()), paper), tuple(cells.get((k, a.name)) for a in arms))
                 for k in keys)
    return Ablation(tuple(arms), rows, REFERENCE if REFERENCE in by_study else None)


def cell_text(stat: Stat | None) -> str:
    """'74.1 ± 0.5 (n=3)', '74.1 (n=1)', '-' where the arm did not train the pattern."""
    if stat is None or stat.n == 0 or math.isnan(stat.mean):
        return "-"
    spread = f" ± {100 * stat.sd:.1f}" if stat.n > 1 else ""
    return f"{100 * stat.mean:.1f}{spread} (n={stat.n})"

