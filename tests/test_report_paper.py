"""Every paper number judged (agrees / disagrees / not compared, and why), the training-free counts that make
most of them comparable on any preset, Fig. 7's claim with Welch intervals, and the protocol ablation table.

Fixtures are summary.csv / history.csv rows built here with known accuracies and training settings.
"""

from __future__ import annotations

import re

import csv
import json
import math

import pytest

from predsparse.errors import ReportError
from predsparse.report.ablation import ablation, cell_text
from predsparse.report.analysis import t_quantile, welch, welch_from
from predsparse.report.counts import load_counts
from predsparse.report.document import build_report
from predsparse.report.inputs import Stat, group_runs, load_history, load_paper, load_summary
from predsparse.report.paper import (AGREES, DISAGREES, NOT_COMPARED, Reasons, compare, default_paper_path,
                                     load_reasons, row_key, scatter_claims)
from predsparse.summary import HISTORY_COLUMNS, SUMMARY_COLUMNS, join_list

MORSE = (64, 1024, 64)
REFERENCE = dict(variant="paper2017", optimizer="sgd", lr="0.2", momentum="0.9", weight_decay="0.0",
                 batch_size="256", init="he_dense")
SEQUENTIAL = '{"generator":"sequential"}'
ONE_EIGHTH = (1, 0.125, 1, 1, 1, 1)
TWO_EIGHTHS = (0.125, 1, 1, 0.125, 1, 1)
PLANNED_1F8 = '{"clusters":{"1":{"f":8}}}'


def runs(study, fanouts, accs, *, net=MORSE, kind=None, options="{}", scatter=(), epochs=20, **settings):
    """Summary rows of one configuration: one run per accuracy in `accs` (seeds 0, 1, ...)."""
    weights = sum(n * fo for n, fo in zip(net, fanouts))
    dense = sum(a * b for a, b in zip(net, net[1:]))
    kind = kind or ("dense" if weights == dense else "random")
    rows = []
    for seed, best in enumerate(accs):
        run_id = f"{study}-{kind}-{join_list(fanouts)}-{options}-{seed}"
        rows.append(dict(
            study=study, run_id=run_id, run_name=run_id, method="dense" if kind == "dense" else "predefined",
            method_options="", allocation="", dataset="morse", model="mlp", net=join_list(net),
            fanouts=join_list(fanouts), kind=kind, pattern_options=options,
            junction_densities=join_list([fo / n for fo, n in zip(fanouts, net[1:])]),
            overall_density=f"{weights / dense:.6g}", weights=weights, dense_weights=dense, conv_params=0,
            conv_ops=0, scatter_vector=join_list(scatter), scatter=f"{min(scatter):.6g}" if scatter else "",
            seed=seed, epochs=epochs, best_val_acc=best, best_val_epoch=epochs, val_acc_epoch1=best / epochs,
            val_acc_epoch5=5 * best / epochs, test_acc=best - 0.01, wall_time_s=60.0, device="cpu",
            **{**REFERENCE, **settings}))
    return rows


def write(directory, rows):
    """summary.csv and history.csv (validation accuracy rising linearly to each run's best at its last epoch)."""
    with open(directory / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with open(directory / "history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, HISTORY_COLUMNS)
        writer.writeheader()
        for r in rows:
            for epoch in range(1, r["epochs"] + 1):
                writer.writerow(dict(study=r["study"], run_id=r["run_id"], epoch=epoch, train_loss=1 / epoch,
                                     train_acc=0.5, val_loss=1 / epoch, val_acc=r["best_val_acc"] * epoch / r["epochs"],
                                     wall_time_s=3 * epoch))
    return directory / "summary.csv", directory / "history.csv"


def morse_preset():
    """The Morse preset's studies (config/morse.yaml) with known accuracies, 30 epochs, one or three seeds."""
    kw = dict(epochs=30, options=SEQUENTIAL)
    rows = runs("fig3a_morse", (1024, 64), [0.80], epochs=30)
    for fanouts, acc in (((16, 1), 0.30), ((32, 2), 0.45), ((64, 4), 0.60), ((128, 8), 0.70), ((256, 16), 0.76),
                         ((512, 32), 0.795)):
        rows += runs("fig3a_morse", fanouts, [acc], **kw)
    # Appendix 5.1 at 25 %: junction 1 at its minimum 30 % (paper 36: disagrees), at its maximum 66 % (paper 67).
    for fanouts, acc in (((16, 31), 0.30), ((128, 24), 0.60), ((256, 16), 0.70), ((496, 1), 0.66)):
        rows += runs("fig3b_morse_split25", fanouts, [acc], **kw)
    # At 50 %: 25 / 75 % is the best split (Section 2.4), the ends are 37 % and 74 % (paper 36, 75).
    for fanouts, acc in (((16, 63), 0.37), ((256, 48), 0.80), ((512, 32), 0.79), ((1008, 1), 0.74)):
        rows += runs("fig3c_morse_split50", fanouts, [acc], **kw)
    rows += runs("fig7a_morse_scatter", (128, 8), [0.74, 0.75, 0.76], scatter=(0.7, 0.68, 0.7, 0.66, 0.9, 0.9), **kw)
    rows += runs("fig7a_morse_scatter", (128, 8), [0.40, 0.44, 0.48], kind="planned", options=PLANNED_1F8,
                 scatter=ONE_EIGHTH, epochs=30)
    rows += runs("fig7a_morse_scatter", (128, 8), [0.13], kind="planned", options='{"clusters":{"1":{"b":8}}}',
                 scatter=TWO_EIGHTHS, epochs=30)
    return rows


@pytest.fixture(scope="module")
def paper():
    return load_paper(default_paper_path())


def _verdicts(directory, rows, paper):
    summary, _ = write(directory, rows)
    return compare(paper, group_runs(load_summary(summary)), load_counts(), load_reasons(None, paper))


def _by_key(verdicts):
    return {row_key(v.row): v for v in verdicts}


# --- ours vs the paper ------------------------------------------------------------------------------------

def test_morse_preset_compares_most_paper_numbers(tmp_path, paper):
    verdicts = _verdicts(tmp_path, morse_preset(), paper)
    assert len(verdicts) == 91
    compared = [v for v in verdicts if v.compared]
    # 72 training-free counts (every Table 1 and 2 row, CIFAR included) + Sec. 2.2.3, Fig. 7a x1 and x2,
    # Appendix 5.1 (4) and Sec. 2.4.
    assert len(compared) == 80 >= 60
    v = _by_key(verdicts)
    assert (v["table1 cifar10_conv2cl 1-1 overall_cl_density"].status,
            v["table1 cifar10_conv2cl 1-1 overall_cl_density"].ours_text,
            v["table1 cifar10_conv2cl 1-1 overall_cl_density"].source) == (AGREES, "0.2189",
                                                                           "config.yaml: fig1_cifar10_conv2cl")
    assert v["table1 morse_cl 512-32 overall_cl_density"].source == "runs: fig3a_morse"
    rounding = v["table1 cifar100_conv3cl 1-1-16 overall_cl_density"]
    assert (rounding.status, rounding.ours_text) == (DISAGREES, "0.385") and rounding.why.startswith("rounding:")
    ops = v["table2 mnist_conv2cl - conv_ops"]
    assert (ops.status, ops.ours_text, ops.comparison.difference) == (DISAGREES, "0.01066", "-0.0893")
    assert "10,662,400 multiply-accumulates" in ops.why
    assert (v["table2 mnist_conv2cl - overall_op_reduction"].status,
            v["table2 mnist_conv2cl - overall_op_reduction"].ours_text) == (AGREES, "18.34")
    assert (v["table2 cifar10_conv2cl - overall_op_reduction"].status,
            v["table2 cifar10_conv2cl - overall_op_reduction"].ours_text) == (AGREES, "1.356")  # paper 1.35
    assert v["table2 cifar100_conv2cl - sparse_cl_params"].ours_text == "0.02048"
    assert "read as 0.95 %, fo (1, 32)" in v["table2 cifar100_conv2cl - sparse_cl_params"].why
    assert v["table2 mnist_cl - sparse_cl_params"].why.startswith("ambiguous Table 2 density")
    assert v["table2 mnist_cl - fc_cl_params"].status == AGREES
    cifar = v["fig1c cifar10_conv2cl 1-8 best_val_acc_30ep"]
    assert (cifar.status, cifar.ours_text) == (NOT_COMPARED, "not run (needs CIFAR data)")
    assert cifar.why == "needs CIFAR runs (config.yaml: fig1_* studies); none in this preset"
    assert (v["app5.1 morse_split_25 - acc_j1_max_j2_min"].status, v["app5.1 morse_split_25 - acc_j1_max_j2_min"].why) \
        == (AGREES, "")
    low = v["app5.1 morse_split_25 - acc_j1_min_j2_max"]
    assert (low.status, low.ours_text, low.why) == (DISAGREES, "30", "open")
    assert (v["sec2.4 morse_split_50 - best_split"].status, v["sec2.4 morse_split_50 - best_split"].ours_text) == \
        (AGREES, "25; 75")
    assert v["sec2.2.3 morse_cl 512-32 negligible_degradation"].ours_text == "yes"
    assert v["fig7a morse_scatter 128-8 acc_S_eighth_x1"].ours_text == "44"
    assert v["fig7a morse_scatter 128-8 acc_S_eighth_x2"].status == AGREES  # 13 against 12
    three = v["fig7a morse_scatter 128-8 acc_S_eighth_x3"]
    assert three.status == NOT_COMPARED and three.why.startswith("config.yaml's deviations: our planned construction")


def test_smoke_preset_still_compares_every_training_free_number(tmp_path, paper):
    rows = runs("fig3a_morse", (1024, 64), [0.05], epochs=2) + runs("fig3a_morse", (128, 8), [0.04], epochs=2)
    verdicts = _verdicts(tmp_path, rows, paper)
    compared = [v for v in verdicts if v.compared]
    assert len(compared) == 72 >= 60
    assert {v.row["source"] for v in compared} == {"table1", "table2"}
    assert sum(v.status == AGREES for v in compared) == 67  # the 5 disagreements of paper_reasons.yaml
    assert _by_key(verdicts)["sec2.2.3 morse_cl 512-32 negligible_degradation"].why == \
        "needs fo 512-32 and the dense net among the runs of fig3a_morse"


def test_reasons_file_lookup_and_checks(tmp_path, paper):
    path = tmp_path / "reasons.yaml"
    path.write_text("'app5.1 * - *':\n  disagrees: pattern text\n  not_run: not run text\n"
                    "app5.1 morse_split_25 - acc_j1_min_j2_max:\n  disagrees: exact text\n")
    reasons = load_reasons(path, paper)
    row = dict(source="app5.1", study="morse_split_25", fanouts="", quantity="acc_j1_min_j2_max")
    assert reasons.lookup(row) == {"disagrees": "exact text", "not_run": "not run text"}
    assert Reasons().lookup(row) == {}
    path.write_text("table9 nothing - x:\n  disagrees: open\n")
    with pytest.raises(ReportError, match="'table9 nothing - x' matches no row"):
        load_reasons(path, paper)
    path.write_text("'app5.1 * - *':\n  because: open\n")
    with pytest.raises(ReportError, match="has field 'because'"):
        load_reasons(path, paper)
    shipped = load_reasons(None, paper)  # every key of the shipped file matches a row
    assert len({row_key(r) for r in paper.to_dict("records")}) == 91  # keys identify rows


# --- Welch and Fig. 7 -------------------------------------------------------------------------------------

def test_t_quantiles_and_welch_interval_by_hand():
    assert [round(t_quantile(0.975, df), 4) for df in (1, 4, 10)] == [12.7062, 2.7764, 2.2281]
    assert t_quantile(0.025, 4) == pytest.approx(-2.7764, abs=1e-4)
    d = welch([0.40, 0.44, 0.48], [0.74, 0.75, 0.76])
    # s = 0.04 and 0.01: se^2 = (0.0016 + 0.0001) / 3, df = 2 * 0.0017^2 / (0.0016^2 + 0.0001^2) = 2.2490
    se = math.sqrt(0.0017 / 3)
    assert d.df == pytest.approx(2 * 0.0017 ** 2 / (0.0016 ** 2 + 0.0001 ** 2))
    assert d.diff == pytest.approx(-0.31)
    assert (d.low, d.high) == pytest.approx((-0.31 - 3.876895 * se, -0.31 + 3.876895 * se), abs=1e-6)
    assert (d.low, d.high) == pytest.approx((-0.40229, -0.21771), abs=1e-5)
    assert not welch([0.4], [0.7, 0.8]).has_ci and welch([0.4], [0.7, 0.8]).diff == pytest.approx(-0.35)
    same = welch_from(0.5, 0.0, 2, 0.6, 0.0, 3)
    assert (same.low, same.high) == pytest.approx((-0.1, -0.1))


def test_fig7_claim_per_planned_configuration(tmp_path, paper):
    summary, _ = write(tmp_path, morse_preset())
    claims = {c.planned.pattern_options: c for c in scatter_claims(group_runs(load_summary(summary)), paper)}
    one = claims[PLANNED_1F8]
    assert (one.minimum_entries, one.paper_acc, one.below, one.ci_text) == (1, 46.0, "yes", "[-40.2, -21.8]")
    two = claims['{"clusters":{"1":{"b":8}}}']
    assert (two.minimum_entries, two.paper_acc, two.below, two.ci_text) == (2, 12.0, "yes (1 seed, no CI)",
                                                                           "1 seed, no CI")
    assert two.difference.diff == pytest.approx(0.13 - 0.75)


# --- the protocol ablation --------------------------------------------------------------------------------

def ablation_rows():
    patterns = [((128, 8), "random", SEQUENTIAL, (), 0.74), ((128, 8), "planned", PLANNED_1F8, ONE_EIGHTH, 0.46),
                ((496, 1), "random", SEQUENTIAL, (), 0.66), ((16, 31), "random", SEQUENTIAL, (), 0.35)]
    rows = []
    for fanouts, kind, options, scatter, acc in patterns:
        rows += runs("ablation_reference", fanouts, [acc - 0.004, acc + 0.004], kind=kind, options=options,
                     scatter=scatter)
        rows += runs("ablation_init_uniform", fanouts, [acc - 0.10], kind=kind, options=options, scatter=scatter,
                     init="uniform")
        if kind == "random":  # the generator arm: the default (uniform) generator, left out of the options
            rows += runs("ablation_generator_uniform", fanouts, [acc + 0.01, acc + 0.03], kind=kind, scatter=scatter)
    rows += runs("ablation_adam", (128, 8), [0.70, 0.72, 0.74], options=SEQUENTIAL, optimizer="adam", lr="0.001")
    return rows


def test_ablation_table_cells_and_arms(tmp_path, paper):
    summary, history = write(tmp_path, ablation_rows())
    result = ablation(group_runs(load_summary(summary)), load_history(history), paper)
    arms = [a.name for a in result.arms]
    assert arms == ["ablation_reference", "ablation_reference, first 12 epochs", "ablation_init_uniform",
                    "ablation_generator_uniform", "ablation_adam"]
    rows = {r.key.label: [cell_text(c) for c in r.cells] for r in result.rows}
    assert rows["random fo (128, 8)"] == ["74.0 ± 0.6 (n=2)", "44.4 ± 0.3 (n=2)", "64.0 (n=1)", "76.0 ± 1.4 (n=2)",
                                          "72.0 ± 2.0 (n=3)"]
    assert rows["planned 1:f=8 fo (128, 8)"] == ["46.0 ± 0.6 (n=2)", "27.6 ± 0.3 (n=2)", "36.0 (n=1)", "-", "-"]
    assert rows["random fo (16, 31)"][:3] == ["35.0 ± 0.6 (n=2)", "21.0 ± 0.3 (n=2)", "25.0 (n=1)"]
    differs = {a.name: a.differs for a in result.arms}
    assert differs["ablation_init_uniform"] == ("init: uniform (reference: he_dense)",)
    assert differs["ablation_generator_uniform"] == ("generator: uniform (reference: sequential)",)
    assert differs["ablation_adam"] == ("optimizer: adam (reference: sgd)", "lr: 0.001 (reference: 0.2)")
    assert differs["ablation_reference, first 12 epochs"] == (
        "epochs: 12 (best of the reference runs' first 12 epochs, history.csv) (reference: 20)",)
    assert result.arms[0].settings == {"variant": "paper2017", "init": "he_dense", "optimizer": "sgd", "lr": "0.2",
                                       "momentum": "0.9", "weight_decay": "0.0", "batch_size": "256",
                                       "epochs": "20", "generator": "sequential"}
    informs = {r.key.label: r.informs for r in result.rows}
    assert informs["random fo (496, 1)"] == "App. 5.1, 25 % overall, junction 1 at its maximum (paper 67 %)"
    assert informs["random fo (16, 31)"] == "App. 5.1, 25 % overall, junction 1 at its minimum (paper 36 %)"
    assert informs["planned 1:f=8 fo (128, 8)"] == \
        "Fig. 7a, 1 entry of 1/8 in S (paper 46 %); Fig. 7 claim: below the random point"
    assert informs["random fo (128, 8)"].startswith("Fig. 7a random point")


def test_report_with_ablation_and_morse_studies(tmp_path):
    write(tmp_path, morse_preset() + ablation_rows())
    written = build_report(tmp_path / "summary.csv", tmp_path / "history.csv", tmp_path / "out")
    names = {p.name for p in written}
    assert {"ablation.md", "ablation_arms.md", "scatter_claim.md", "ours_vs_paper.md"} <= names
    assert not any(n.startswith("ablation_") and n.endswith(".png") for n in names)  # no generic figures
    md = (tmp_path / "out" / "report.md").read_text()
    assert "**80 of 91 compared, " in md
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings.index("## Protocol ablation") + 1 == headings.index("## Ours vs the paper")
    coverage = md.split("## Coverage", 1)[1].split("\n## ", 1)[0]
    assert "Protocol ablation studies (one protocol choice changed each)" in coverage
    assert "each drawn as accuracy vs overall CL density" not in coverage
    arms = re.sub(r" {2,}", " ", md.split("**Protocol ablation - the arms", 1)[1])  # cells are padded
    assert "| ablation_init_uniform | 4 | init: uniform (reference: he_dense) |" in arms
    table = [line for line in md.split("**Ours vs the paper: every number", 1)[1].split("\n\n")[1].splitlines()
             if line.startswith("| ")]
    assert len(table) == 1 + 91  # the header and one row per paper number


def test_summary_without_settings_columns_still_loads(tmp_path):
    rows = runs("fig3a_morse", (128, 8), [0.7])
    old = [c for c in SUMMARY_COLUMNS if c not in ("optimizer", "lr", "momentum", "weight_decay", "batch_size",
                                                   "init")]
    with open(tmp_path / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, old, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    group = group_runs(load_summary(tmp_path / "summary.csv"))[0]
    assert (group.optimizer, group.init, group.best_val) == ("", "", Stat(0.7, 0.0, 1))
    assert json.loads(group.pattern_options) == {}


def test_cli_takes_counts_and_reasons_and_rejects_a_bad_reasons_file(tmp_path, capsys):
    from cliutil import cli

    from predsparse.report.counts import default_counts_path

    summary, history = write(tmp_path, runs("fig3a_morse", (128, 8), [0.7]))
    code, out, err = cli(capsys, "report", "--summary", str(summary), "--history", str(history), "--out",
                         str(tmp_path / "out"), "--counts", str(default_counts_path()))
    assert code == 0, err
    assert "**72 of 91 compared, 67 agree**" in (tmp_path / "out" / "report.md").read_text()
    (tmp_path / "reasons.yaml").write_text("fig1c * * best_val_acc_30ep: open\n")
    code, out, err = cli(capsys, "report", "--summary", str(summary), "--history", str(history), "--out",
                         str(tmp_path / "bad"), "--reasons", str(tmp_path / "reasons.yaml"))
    assert code == 2 and err.count("\n") == 1
    assert "'fig1c * * best_val_acc_30ep' must map some of ['disagrees', 'not_run', 'not_given'] to texts" in err
    assert not (tmp_path / "bad").exists()
