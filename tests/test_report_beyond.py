"""The report's "Beyond the paper" section: methods vs pre-defined sparsity, density allocations, wall time
and the Spearman correlation of accuracy with scatter, from a synthetic summary built here.

The fixture is a `beyond_morse` study (64-1024-64, three seeds) at two overall densities, ~10.2 % and 25 %:
pre-defined sparse with the paper rule, uniform and ERK allocations (ERK = uniform on this symmetric net),
pruning, SET and RigL (fixed fan-in and unconstrained), and the dense net; plus paper-study runs with scatter
values (Fig. 3a and Fig. 7a). RigL wins at 10.2 % by more than the seeds' spread, pre-defined sparse wins at
25 % by less than it, and the dense net is cheaper per epoch than pre-defined sparse.
"""

from __future__ import annotations

import csv
import math

import pytest

from predsparse.report.analysis import Z95, method_label, spearman
from predsparse.report.beyond import reading
from predsparse.report.document import build_report
from predsparse.report.inputs import group_runs, load_summary
from predsparse.report.studies import BEYOND, STUDIES, is_beyond, study_info
from predsparse.summary import HISTORY_COLUMNS, SUMMARY_COLUMNS, join_list

NET = (64, 1024, 64)
DENSE = 64 * 1024 * 2
EPOCHS = 6
SEED_OFFSETS = (-0.01, 0.0, 0.01)  # test accuracy per seed around the mean: sample sd 1 pp
DYNAMIC = '{"fraction":0.3,"schedule":"cosine","stop":0.75,"update_every":100}'

# (method, kind, allocation, fan-outs, mean test accuracy, wall time per run in s, scatter S)
BEYOND_RUNS = (
    ("dense", "dense", "", (1024, 64), 0.86, 8.0, 1.0),
    # ~10.2 % (13,312 weights): paper rule 48-10, uniform and ERK 96-7
    ("predefined", "random", "paper", (48, 10), 0.76, 10.0, 0.30),
    ("predefined", "random", "uniform", (96, 7), 0.75, 10.0, 0.35),
    ("predefined", "random", "erk", (96, 7), 0.755, 10.0, 0.36),
    ("prune", "random", "paper", (48, 10), 0.77, 30.0, 0.40),
    ("prune", "unstructured", "paper", (48, 10), 0.74, 31.0, 0.20),
    ("set", "random", "paper", (48, 10), 0.78, 15.0, 0.50),
    ("rigl", "random", "paper", (48, 10), 0.80, 25.0, 0.55),
    ("rigl", "unstructured", "paper", (48, 10), 0.79, 26.0, 0.45),
    # 25 % (32,768 weights): paper rule 128-24, uniform and ERK 256-16
    ("predefined", "random", "paper", (128, 24), 0.85, 12.0, 0.70),
    ("predefined", "random", "uniform", (256, 16), 0.84, 12.0, 0.75),
    ("predefined", "random", "erk", (256, 16), 0.842, 12.0, 0.76),
    ("set", "random", "paper", (128, 24), 0.845, 18.0, 0.80),
)


def _rows(study, method, kind, allocation, fanouts, acc, wall, scatter, *, net=NET, dataset="morse", seeds=3,
          options=None, pattern_options="{}", index=[0]):
    weights = sum(n * fo for n, fo in zip(net, fanouts))
    dense = sum(a * b for a, b in zip(net, net[1:]))
    rows = []
    for seed, offset in zip(range(seeds), SEED_OFFSETS if seeds == 3 else (0.0,) * seeds):
        index[0] += 1
        test = acc + offset
        rows.append(dict(
            study=study, run_id=f"r{index[0]}", run_name=f"{study}_{index[0]}", method=method,
            method_options=options if options is not None else (DYNAMIC if method in ("set", "rigl") else
                                                                '{"finetune_epochs":3}' if method == "prune" else ""),
            allocation=allocation, dataset=dataset, variant="difficult" if dataset == "morse" else "",
            model="mlp", net=join_list(net), fanouts=join_list(fanouts), kind=kind, pattern_options=pattern_options,
            junction_densities=join_list([fo / net[i + 1] for i, fo in enumerate(fanouts)]),
            overall_density=f"{weights / dense:.6g}", weights=weights, dense_weights=dense, conv_params=0,
            conv_ops=0, scatter_vector=join_list([scatter] * 6 if scatter else []),
            scatter=f"{scatter:.6g}" if scatter else "", seed=seed,
            epochs=EPOCHS, best_val_acc=f"{test + 0.005:.6g}", best_val_epoch=EPOCHS,
            val_acc_epoch1=f"{0.5 * test:.6g}", val_acc_epoch5=f"{0.9 * test:.6g}", test_acc=f"{test:.6g}",
            wall_time_s=wall, device="cpu"))
    return rows


def fixture_rows():
    rows = [r for spec in BEYOND_RUNS for r in _rows("beyond_morse", *spec)]
    # Paper studies: Fig. 3a (random pre-defined, one seed) and Fig. 7a (planned patterns at 12.5 %, one seed).
    for fanouts, acc, scatter in (((1024, 64), 0.86, 1.0), ((512, 32), 0.84, 0.9), ((256, 16), 0.82, 0.75),
                                  ((128, 8), 0.78, 0.6), ((64, 4), 0.70, 0.5)):
        rows += _rows("fig3a_morse", "dense" if fanouts == (1024, 64) else "predefined",
                      "dense" if fanouts == (1024, 64) else "random", "", fanouts, acc, 9.0, scatter, seeds=1)
    for cb, acc, scatter in ((1, 0.75, 0.66), (2, 0.46, 0.125), (4, 0.12, 0.125), (8, 0.20, 0.125)):
        rows += _rows("fig7a_morse_scatter", "predefined", "planned", "", (128, 8), acc, 9.0, scatter, seeds=1,
                      options="", pattern_options=f'{{"cb": [{cb}, 1]}}')
    return rows


def write(directory, rows, columns=SUMMARY_COLUMNS):
    with open(directory / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with open(directory / "history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, HISTORY_COLUMNS)
        writer.writeheader()
        for r in rows:
            for epoch in range(1, EPOCHS + 1):
                val = float(r["best_val_acc"]) * epoch / EPOCHS
                writer.writerow(dict(study=r["study"], run_id=r["run_id"], epoch=epoch, train_loss=1 / epoch,
                                     train_acc=0.5, val_loss=1 / epoch, val_acc=val, wall_time_s=epoch))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    directory = tmp_path_factory.mktemp("beyond")
    rows = fixture_rows()
    write(directory, rows)
    written = build_report(directory / "summary.csv", directory / "history.csv", directory / "out")
    return directory / "out", rows, written


def _md_rows(path):
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("| ").split(" | ")] for line in lines[1:]]


def _section(report_md: str) -> str:
    return report_md.split("## Beyond the paper", 1)[1].split("\n## ", 1)[0]


# --- spearman and labels ----------------------------------------------------------------------------------

def test_spearman_of_a_monotone_set_is_one_with_a_collapsed_interval():
    c = spearman([1, 2, 3, 4, 5], [2, 4, 8, 16, 100])
    assert (c.rho, c.low, c.high, c.n) == (1.0, 1.0, 1.0, 5)
    assert spearman([1, 2, 3, 4, 5], [5, 3, 2, 1, -7]).rho == -1.0


def test_spearman_with_ties_matches_the_hand_computation():
    # ranks x: 1, 2.5, 2.5, 4; y: 1, 3, 2, 4 -> sum dxdy = 4.5, sum dx^2 = 4.5, sum dy^2 = 5 -> 3 / sqrt(10)
    c = spearman([1, 2, 2, 3], [1, 3, 2, 4])
    assert c.rho == pytest.approx(3 / math.sqrt(10), abs=1e-12) and c.n == 4
    # the interval is symmetric in Fisher z with the Bonett-Wright half-width Z95 * sqrt((1 + rho^2 / 2) / (n - 3))
    z_low, z_high = math.atanh(c.low), math.atanh(c.high)
    assert (z_low + z_high) / 2 == pytest.approx(math.atanh(c.rho), abs=1e-12)
    assert (z_high - z_low) / 2 == pytest.approx(Z95 * math.sqrt(1 + 0.9 / 2), abs=1e-12)
    assert Z95 == pytest.approx(1.959964, abs=1e-6)
    # ranks x: 1.5, 1.5, 3.5, 3.5; y: 4, 3, 2, 1 -> -4 / sqrt(4 * 5)
    assert spearman([1, 1, 2, 2], [4, 3, 2, 1]).rho == pytest.approx(-2 / math.sqrt(5), abs=1e-12)


def test_spearman_is_undefined_where_it_should_be():
    for c in (spearman([], []), spearman([1], [2]), spearman([1, 2, 3], [4, 4, 4]), spearman([7, 7], [1, 2])):
        assert math.isnan(c.rho) and math.isnan(c.low) and math.isnan(c.high)
    three = spearman([1, 2, 3], [1, 3, 2])
    assert three.rho == pytest.approx(0.5) and math.isnan(three.low) and math.isnan(three.high)
    assert three.text() == "rho = 0.50, n = 3" and not three.excludes_zero
    with pytest.raises(ValueError, match="as many x as y"):
        spearman([1, 2], [1])


def test_method_labels():
    cases = {("predefined", "random", "paper"): "pre-defined (paper rule)",
             ("predefined", "random", "uniform"): "pre-defined (uniform)",
             ("predefined", "random", "erk"): "pre-defined (ERK)",
             ("predefined", "random", ""): "pre-defined",
             ("prune", "random", "paper"): "pruning (fixed fan-in)",
             ("prune", "unstructured", ""): "pruning (unconstrained)",
             ("set", "random", "paper"): "SET", ("rigl", "random", ""): "RigL",
             ("rigl", "unstructured", "erk"): "RigL (unconstrained)", ("dense", "dense", ""): "dense"}
    assert {key: method_label(*key) for key in cases} == cases


def test_beyond_studies_are_not_paper_studies():
    assert set(BEYOND) == {"beyond_morse", "beyond_mnist_cl", "beyond_mnist_conv2cl"}
    assert not set(BEYOND) & set(STUDIES)
    for name in (*BEYOND, "beyond_cifar10"):
        assert is_beyond(name) and study_info(name).figure == "beyond"
        assert study_info(name).panels == (("", "methods"),) and study_info(name).paper_epochs is None
    assert study_info("beyond_cifar10").title == "beyond_cifar10"
    assert not is_beyond("fig3a_morse") and study_info("my_study").panels == (("", "density"),)


# --- the rendered section -----------------------------------------------------------------------------

def test_beyond_figures_and_tables_exist(report):
    out, _, written = report
    for stem in ("beyond", "scatter_correlation"):
        assert out / "figures" / f"{stem}.pdf" in written
        assert (out / "figures" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("beyond", "wall_time", "scatter_correlation"):
        assert (out / "tables" / f"{name}.md").stat().st_size > 0 and out / "tables" / f"{name}.tex" in written
    assert not (out / "figures" / "beyond_morse.png").exists()  # not drawn as a generic study
    md = (out / "report.md").read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings.index("## Beyond the paper") == headings.index("## Tables") + 1
    assert headings[headings.index("## Beyond the paper") + 1] == "## Ours vs the paper"
    section = _section(md)
    for link in ("figures/beyond.png", "figures/scatter_correlation.png", "tables/beyond.md", "tables/wall_time.md",
                 "tables/scatter_correlation.md"):
        assert f"]({link})" in section
    assert "Tables not produced (no runs of their kind): CSC table, ablation table." in md
    coverage = md.split("## Coverage", 1)[1].split("\n## ", 1)[0]
    assert "`beyond_morse`" not in coverage.split("Studies beyond the paper (")[0]  # not a missing paper study
    assert "drawn in [Beyond the paper](#beyond-the-paper): `beyond_morse`." in coverage
    assert "each drawn as accuracy vs overall CL density" not in coverage


def test_beyond_table_rows_and_wall_time_ratio(report):
    out, _, _ = report
    rows = {(r[1], r[2]): r for r in _md_rows(out / "tables" / "beyond.md")}
    assert len(rows) == len(BEYOND_RUNS)
    # RigL at 10.2 %: 25 s per run over pre-defined (paper rule)'s 10 s at the same density
    assert rows[("RigL", "10.2")] == ["beyond_morse", "RigL", "10.2", "paper rule", "3", "80.0 ± 1.0",
                                      "80.5 ± 1.0", "25", "2.50"]
    assert rows[("pruning (unconstrained)", "10.2")][7:] == ["31", "3.10"]
    assert rows[("pre-defined (paper rule)", "25")][7:] == ["12", "1.00"]
    assert rows[("SET", "25")][7:] == ["18", "1.50"]  # against 12 s at 25 %, not 10 s at 10.2 %
    assert rows[("dense", "100")][3:] == ["-", "3", "86.0 ± 1.0", "86.5 ± 1.0", "8", "n/a"]
    time = {r[1]: r for r in _md_rows(out / "tables" / "wall_time.md")}
    # per epoch over pre-defined sparse at the densities both ran: SET (15 + 18) / (10 + 12)
    assert time["SET"] == ["beyond_morse", "SET", "6", "6", "16.5", "2.75", f"{(15 + 18) / (10 + 12):.2f}"]
    assert time["RigL"][6] == "2.50"
    assert time["dense"][6] == f"{8 / 11:.2f}"  # the dense net against pre-defined sparse at every density
    assert time["pre-defined (paper rule)"][6] == "1.00"


def _points(rows):
    """(density, scatter, best val) of every sparse configuration: means over the seeds of one group."""
    groups = {}
    for r in rows:
        if r["method"] == "dense":
            continue
        key = (r["study"], r["method"], r["method_options"], r["allocation"], r["kind"], r["fanouts"],
               r["pattern_options"])
        groups.setdefault(key, []).append(r)
    return [(float(g[0]["overall_density"]), sum(float(r["scatter"]) for r in g) / len(g),
             sum(float(r["best_val_acc"]) for r in g) / len(g)) for g in groups.values()]


def test_scatter_correlation_table_equals_spearman_on_the_same_points(report):
    out, rows, _ = report
    points = _points(rows)
    table = _md_rows(out / "tables" / "scatter_correlation.md")
    expected = []
    for label, chosen in (("all (pooled)", points),
                          ("10.2%", [p for p in points if abs(p[0] - 13312 / DENSE) < 1e-6]),
                          ("12.5%", [p for p in points if abs(p[0] - 0.125) < 1e-6]),
                          ("25%", [p for p in points if abs(p[0] - 0.25) < 1e-6])):
        c = spearman([p[1] for p in chosen], [p[2] for p in chosen])
        expected.append(["Morse", label, str(len(chosen)), f"{c.rho:.2f}", f"[{c.low:.2f}, {c.high:.2f}]"])
    assert table == expected
    assert [int(r[2]) for r in table] == [20, 8, 5, 5]  # 6.25 % and 50 % have one configuration each: no row


def test_reading_names_the_right_best_method(report):
    out, rows, _ = report
    section = _section((out / "report.md").read_text())
    assert ("`beyond_morse` at 10.2%: RigL is best (80.0 %, 3 seeds), +4.0 pp over pre-defined (paper rule) "
            "(76.0 %, 3 seeds); larger than the seeds' sd (up to 1.0 pp).") in section
    assert ("`beyond_morse` at 25%: pre-defined sparse is best - pre-defined (paper rule) (85.0 %, 3 seeds), "
            "0.5 pp ahead of the next, SET (84.5 %, 3 seeds); within one sd of the seeds (up to 1.0 pp): not a "
            "clear difference.") in section
    assert ("`beyond_morse` at 10.2%, density allocation: pre-defined (paper rule) is best (76.0 %, 3 seeds), "
            "+0.5 pp over pre-defined (ERK) (75.5 %, 3 seeds); within one sd of the seeds (up to 1.0 pp): not a "
            "clear difference.") in section
    assert ("`beyond_morse`: pre-defined sparse is **not** the cheapest in wall time per epoch: dense took "
            f"{8 / 11:.2f}x the wall time per epoch of pre-defined sparse.") in section
    assert ("`beyond_morse`: ERK and uniform allocation gave identical fan-outs at 10.2%, 25% - ERK's junction "
            "densities are proportional to") in section and "every junction of 64-1024-64" in section
    points = _points(rows)
    pooled = spearman([p[1] for p in points], [p[2] for p in points])
    confound = spearman([p[0] for p in points], [p[1] for p in points])
    assert pooled.excludes_zero and pooled.rho > 0
    assert (f"Morse: over 20 sparse configurations, densities pooled, Spearman {pooled.text(with_n=False)}; the CI "
            "excludes 0: accuracy tends to rise with scatter. Pooling densities mixes the effect of density with that "
            f"of scatter (density vs scatter: {confound.text(with_n=False)}).") in section
    assert "at 25% rho = -0.05 [-0.89, 0.87], n = 5, the CI includes 0: no monotone relation" in section


def test_old_summary_without_the_new_columns_still_renders(tmp_path):
    rows = [r for r in fixture_rows() if not is_beyond(r["study"])]
    write(tmp_path, rows, [c for c in SUMMARY_COLUMNS if c not in ("method_options", "allocation")])
    summary = load_summary(tmp_path / "summary.csv")
    assert set(summary["method_options"]) == {""} and set(summary["allocation"]) == {""}
    written = build_report(tmp_path / "summary.csv", tmp_path / "history.csv", tmp_path / "out")
    assert tmp_path / "out" / "tables" / "scatter_correlation.md" in written
    assert not (tmp_path / "out" / "tables" / "beyond.md").exists()
    section = _section((tmp_path / "out" / "report.md").read_text())
    assert "No `beyond*` study ran: no comparison of methods, allocations or wall times." in section
    assert "](figures/scatter_correlation.png)" in section and "](figures/beyond.png)" not in section


def test_reading_of_a_users_beyond_study_names_coinciding_rules_and_cheaper_methods(tmp_path):
    """A `beyond_*` study the report does not list, on an asymmetric net where the paper rule and uniform
    happened to give the same fan-outs, and SET ran faster per epoch than pre-defined sparse; no scatter.
    ERK's 22,624 weights (12.7 %) and the others' 23,072 (13.0 %) count as one density."""
    net = (784, 224, 10)
    rows = (_rows("beyond_cifar10", "predefined", "random", "paper", (28, 5), 0.90, 20.0, None, net=net, seeds=1)
            + _rows("beyond_cifar10", "predefined", "random", "uniform", (28, 5), 0.90, 20.0, None, net=net, seeds=1)
            + _rows("beyond_cifar10", "predefined", "random", "erk", (26, 10), 0.91, 20.0, None, net=net, seeds=1)
            + _rows("beyond_cifar10", "set", "random", "paper", (28, 5), 0.89, 16.0, None, net=net, seeds=1))
    write(tmp_path, rows)
    items = reading(group_runs(load_summary(tmp_path / "summary.csv")))
    assert items == [
        "`beyond_cifar10` at 12.7-13%: pre-defined (ERK) is best (91.0 %, 1 seed), +1.0 pp over pre-defined (paper "
        "rule) (90.0 %, 1 seed); one seed, so no spread to judge it by.",
        "`beyond_cifar10` at 12.7-13%, density allocation: pre-defined (ERK) is best (91.0 %, 1 seed), +1.0 pp over "
        "pre-defined (paper rule) (90.0 %, 1 seed); one seed, so no spread to judge it by.",
        "`beyond_cifar10`: pre-defined sparse is **not** the cheapest in wall time per epoch: SET took 0.80x the "
        "wall time per epoch of pre-defined sparse.",
        "`beyond_cifar10`: paper rule and uniform allocation gave identical fan-outs at 12.7-13%.",
    ]
