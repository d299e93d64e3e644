"""The pipeline: config validation, run-table expansion, the Snakemake DAG, and its behaviour under faults.

Validation and expansion run in-process on config dicts. The Snakemake tests call the real `snakemake`
(dry runs, lint, and end-to-end runs of the smoke preset) with every result in tmp_path.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib import resources
from pathlib import Path

import pytest
import torch
import yaml

from predsparse import rundir
from predsparse.cli import main
from predsparse.density import overall_density, valid_splits
from predsparse.errors import ConfigError
from predsparse.methods.allocation import RULES, allocate
from predsparse.methods.options import DYNAMIC_DEFAULTS, METHODS, parse_method
from predsparse.pipeline import PatternRow, load_plan, read_yaml
from predsparse.pipeline.plan import Plan
from predsparse.spec import RunSpec

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
PRESETS = ("config.yaml", "config/morse.yaml", "config/smoke.yaml", "config/morse_ablation.yaml", "config/mnist.yaml",
           "config/mnist_conv.yaml")
MORSE = [64, 1024, 64]


def config(studies: dict | None = None, **top) -> dict:
    """A small valid config: one Morse study of one random pattern unless `studies` says otherwise."""
    base = {
        "results_dir": "out",
        "data": {"morse": {"variant": "baseline", "per_class": [10, 2, 2], "seed": 0}},
        "training": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 64,
                     "epochs": 2},
        "studies": studies or {"fig3a_morse": morse_study({"kind": "random", "fanouts": [128, 8]})},
    }
    return {**base, **top}


def morse_study(*patterns, seeds=(0,)) -> dict:
    return {"dataset": "morse", "model": "mlp", "net": MORSE, "seeds": list(seeds), "patterns": list(patterns)}


def error_of(cfg: dict) -> str:
    with pytest.raises(ConfigError) as info:
        Plan(cfg, "test.yaml")
    return str(info.value)


# ------------------------------------------------------------------------------------------ validation
def test_bad_fanout_names_study_key_and_nearest_valid():
    message = error_of(config({"fig3a_morse": morse_study({"kind": "random", "fanouts": [[128, 8], [104, 8]]})}))
    assert "test.yaml: study 'fig3a_morse': patterns[0]: key 'fanouts[1]' [104, 8]" in message
    assert "junction 1 (64->1024)" in message and "nearest valid fan-outs: 96, 112" in message


def test_unknown_dataset_lists_the_known_ones():
    cfg = config({"s": {**morse_study({"kind": "dense"}), "dataset": "svhn"}})
    message = error_of(cfg)
    assert "study 's': key 'dataset'" in message
    assert all(name in message for name in ("'morse'", "'mnist'", "'cifar10'", "'cifar100'"))


def test_unknown_kind_lists_the_known_ones():
    message = error_of(config({"s": morse_study({"kind": "gaussian", "fanouts": [128, 8]})}))
    assert "study 's': key 'patterns[0].kind'" in message
    assert all(kind in message for kind in ("'dense'", "'random'", "'planned'", "'unstructured'", "'csc'"))


def test_infeasible_clustering_names_the_valid_clusterings():
    # fi_1 = 8 and windows of 8 neurons: c_f must divide 8.
    message = error_of(config({"s": morse_study({"kind": "planned", "fanouts": [128, 8], "cluster": ["1:b=8", "1:f=16"]})}))
    assert "study 's': patterns[0]: key cluster '1:f=16'" in message
    assert "f=16" in message and "1, 2, 4, 8" in message  # the valid forward clusterings


def test_malformed_clustering_is_a_schema_error():
    message = error_of(config({"s": morse_study({"kind": "planned", "fanouts": [128, 8], "cluster": "1:x=8"})}))
    assert "study 's': key 'patterns[0].cluster'" in message and "'1:x=8'" in message


def test_duplicate_seeds_are_refused():
    message = error_of(config({"s": morse_study({"kind": "dense"}, seeds=(0, 1, 0))}))
    assert "study 's': key 'seeds' [0, 1, 0] repeats [0]" in message


def test_duplicate_run_names_are_refused():
    message = error_of(config({"s": morse_study({"kind": "random", "fanouts": [128, 8]},
                                                {"kind": "random", "fanouts": [[64, 4], [128, 8]]})}))
    assert "study 's': run name 'random_fo128-8_s0' comes out of both patterns[0] and patterns[1]" in message


def test_two_spellings_of_one_clustering_are_one_run_name():
    message = error_of(config({"s": morse_study({"kind": "planned", "fanouts": [128, 8],
                                                 "cluster": ["2:b=8,1:f=8", "1:f=8,2:b=8,1:b=1"]})}))
    assert "run name 'planned_fo128-8_c1f8-2b8_s0'" in message


def test_duplicate_study_in_yaml_is_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(config()) + "\n")
    text = path.read_text().replace("studies:\n", "studies:\n  fig3a_morse: {dataset: morse, patterns: [{kind: dense}]}\n")
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"key 'fig3a_morse' is given twice \(lines \d+ and \d+\)"):
        read_yaml(path)


def test_schema_type_error_names_the_key():
    message = error_of(config(training={**config()["training"], "epochs": "ten"}))
    assert message == ("test.yaml: key 'training.epochs': 'ten' is not valid: expected an integer >= 1, or a list "
                       "of them (one run each)")


def test_unknown_key_lists_the_valid_keys():
    cfg = config()
    cfg["studies"]["fig3a_morse"]["patterns"][0]["fanout"] = [1, 1]
    message = error_of(cfg)
    assert "study 'fig3a_morse': key 'patterns[0]': unknown key(s) ['fanout']; valid keys:" in message
    assert "'fanouts'" in message and "'splits'" in message


def test_missing_training_setting_comes_from_the_defaults_table():
    cfg = config()
    del cfg["training"]["lr"], cfg["training"]["optimizer"]
    spec = Plan(cfg, "test.yaml").runs[0].spec
    assert (spec.optimizer, spec.lr, spec.batch_size) == ("sgd", 0.2, 64)  # the table's, then the config's


def test_bad_training_value_is_refused():
    cfg = config()
    cfg["training"]["init"] = "xavier"
    assert "training" in error_of(cfg) and "xavier" in error_of(cfg)


def test_list_valued_training_keys_expand_to_the_grid():
    cfg = config(training={**config()["training"], "lr": [0.05, 0.1]})
    cfg["studies"]["fig3a_morse"]["training"] = {"batch_size": [32, 64, 128], "init": ["uniform", "he_dense"]}
    runs = Plan(cfg, "test.yaml").runs
    grid = [(r.spec.lr, r.spec.batch_size, r.spec.init) for r in runs]
    assert grid == [(lr, b, i) for lr in (0.05, 0.1) for b in (32, 64, 128) for i in ("uniform", "he_dense")]
    assert runs[0].name == "random_fo128-8_lr0.05_bs32_uniform_s0"
    assert runs[-1].name == "random_fo128-8_lr0.1_bs128_he_dense_s0"
    assert runs[-1].spec.extra["sweep"] == "lr=0.1,batch_size=128,init=he_dense"
    assert len({r.spec.run_id() for r in runs}) == 12 and {r.spec.epochs for r in runs} == {2}


def test_a_study_sweeps_variants_and_method_options():
    study = {**morse_study({"kind": "random", "fanouts": [128, 8], "method": {"name": "set", "update_every": [5, 10]}}),
             "variant": ["baseline", "paper2017"], "training": {"epochs": [2, 3]}}
    runs = Plan(config({"s": study}), "test.yaml").runs
    assert [r.name for r in runs[:3]] == ["set_fo128-8_ep2_baseline_ue5_s0", "set_fo128-8_ep2_baseline_ue10_s0",
                                          "set_fo128-8_ep2_paper2017_ue5_s0"]
    assert len(runs) == 8
    assert {(r.spec.variant, r.spec.method["update_every"], r.spec.epochs) for r in runs} == {
        (v, u, e) for v in ("baseline", "paper2017") for u in (5, 10) for e in (2, 3)}
    assert len({r.spec.data for r in runs}) == 2  # one data file per variant


def test_a_sweep_that_repeats_a_value_is_refused():
    message = error_of(config(training={**config()["training"], "lr": [0.05, 0.05]}))
    assert "key 'training.lr' [0.05, 0.05] repeats [0.05]" in message


def test_snakemake_config_overrides_are_typed_and_named_in_errors(tmp_path):
    from predsparse.pipeline.plan import plan_for_snakemake

    # What Snakemake hands over for --config 'training={epochs: 3, lr: 1e-3, batch_size: [32, 64]}'.
    given = {"training": {"epochs": "3", "lr": "1e-3", "batch_size": ["32", "64"]}}
    cfg = config()
    merged = {**cfg, "training": {**cfg["training"], **given["training"]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    plan = plan_for_snakemake(merged, [path], given)
    assert [(r.spec.epochs, r.spec.lr, r.spec.batch_size) for r in plan.runs] == [(3, 1e-3, 32), (3, 1e-3, 64)]
    with pytest.raises(ConfigError) as info:
        plan_for_snakemake({**merged, "training": {"epochs": "-3"}}, [path], {"training": {"epochs": "-3"}})
    assert str(info.value).startswith("--config override: key 'training.epochs': -3 is not valid")


def test_net_must_fit_the_model_and_dataset():
    cfg = config({"s": {**morse_study({"kind": "dense"}), "net": [784, 100, 64]}})
    assert "study 's': patterns[0]: key 'net' [784, 100, 64] starts with 784 neurons, but model 'mlp' on morse takes [64]" \
        in error_of(cfg)
    cfg = config({"s": {**morse_study({"kind": "dense"}), "model": "cifar_conv"}})
    assert "model 'cifar_conv' does not take morse; valid models for morse: ['mlp']" in error_of(cfg)
    cfg = config({"s": {**morse_study({"kind": "dense"}), "net": [64, 256, 32]}})
    assert "ends with 32 outputs, fewer than the 64 classes of morse" in error_of(cfg)


def test_option_of_another_kind_is_refused():
    message = error_of(config({"s": morse_study({"kind": "dense", "fanouts": [128, 8]})}))
    assert "key 'fanouts' does not apply to kind 'dense'; dense takes no pattern options" in message


def test_unknown_morse_variant_and_parameter():
    cfg = config({"s": {**morse_study({"kind": "dense"}), "variant": "noisy"}})
    assert "study 's': key 'variant': Morse variant 'noisy' is not one of ['baseline', 'difficult', 'paper2017']" in error_of(cfg)
    cfg = config()
    cfg["data"]["morse"]["set"] = {"noise": 2}
    assert "key 'data.morse': unknown Morse parameter 'noise'" in error_of(cfg)


def test_csc_budget_below_the_sparsest_net_is_refused():
    message = error_of(config({"s": morse_study({"kind": "csc", "compression": [8, 46]})}))
    assert "study 's': patterns[0]: key 'compression' 46" in message and "choose a compression <= 24.4" in message


def test_splits_that_no_fanouts_reach_are_refused():
    message = error_of(config({"s": morse_study({"kind": "random", "splits": {"overall": 0.001}})}))
    assert "key 'splits': no fan-outs of net [64, 1024, 64] give overall density 0.001" in message


# ------------------------------------------------------------------------------------------ expansion
def test_paper_config_has_every_split_of_fig3bc_and_every_table1_row():
    plan = load_plan(REPO / "config.yaml")
    studies = plan.config["studies"]
    for study, overall, splits in (("fig3b_morse_split25", 0.25, 31), ("fig3c_morse_split50", 0.5, 63)):
        runs = [r for r in plan.runs if r.study == study]
        assert len(runs) == splits * len(studies[study]["seeds"])
        assert {r.pattern.fanouts for r in runs} == set(valid_splits(MORSE, overall))
        assert all(overall_density(MORSE, r.pattern.fanouts) == pytest.approx(overall) for r in runs)
    from predsparse.report.studies import STUDIES

    ours = {(STUDIES[r.study].paper_study, r.pattern.net, r.pattern.fanouts) for r in plan.runs if r.study in STUDIES}
    table1 = resources.files("predsparse.report") / "paper_numbers.csv"
    rows = [row for row in csv.DictReader(table1.open()) if row["source"] == "table1"]
    assert rows
    for row in rows:
        key = (row["study"], tuple(map(int, row["net"].split("-"))), tuple(map(int, row["fanouts"].split("-"))))
        assert key in ours, f"Table 1 configuration {key} is not in config.yaml"


def test_every_preset_plans_and_names_its_deviations():
    for preset in PRESETS:
        plan = load_plan(REPO / preset)
        assert plan.runs and plan.run_info()["deviations"], preset
        assert len({(r.study, r.name) for r in plan.runs}) == len(plan.runs)
        assert len({r.spec.run_id() for r in plan.runs}) == len(plan.runs)
    smoke = load_plan(REPO / "config/smoke.yaml")
    assert {"planned", "csc", "dense", "random"} <= {r.pattern.kind for r in smoke.runs}


def test_split_count_keeps_both_ends_and_the_equal_split():
    plan = Plan(config({"s": morse_study({"kind": "random", "splits": {"overall": 0.5, "count": 9}})}))
    fanouts = [r.pattern.fanouts for r in plan.runs]
    assert len(fanouts) == 9
    assert fanouts[0] == (16, 63) and fanouts[-1] == (1008, 1) and (512, 32) in fanouts  # 1.6 %, 98 %, 50/50


def test_runs_sharing_a_pattern_share_its_file():
    plan = Plan(config({
        "fig3a_morse": morse_study({"kind": "dense"}, {"kind": "random", "fanouts": [128, 8]}, seeds=(0, 1)),
        "csc_morse": morse_study({"kind": "random", "fanouts": [128, 8]}, {"kind": "csc", "compression": 16},
                                 seeds=(0,)),
        "other": morse_study({"kind": "csc", "radices": "32,2/2,32"}, seeds=(3,)),
    }))
    by_name = {(r.study, r.name): r.pattern.pattern_id for r in plan.runs}
    assert by_name["fig3a_morse", "random_fo128-8_s0"] == by_name["csc_morse", "random_fo128-8_s0"]
    assert by_name["fig3a_morse", "random_fo128-8_s0"] != by_name["fig3a_morse", "random_fo128-8_s1"]
    assert by_name["fig3a_morse", "dense_s0"] == by_name["fig3a_morse", "dense_s1"]  # no seed changes dense
    assert by_name["csc_morse", "csc_x16_s0"] == by_name["other", "csc_r32.2-2.32_s3"]  # planned radices = given
    assert len(plan.patterns) == 4 and len(plan.runs) == 7


def test_pattern_id_is_stable():
    # Changing this hash would rebuild and retrain every run of every existing results folder.
    row = PatternRow("random", (64, 1024, 64), (128, 8), 0)
    assert row.pattern_id == "random-dd029d484b97"
    assert PatternRow("planned", (64, 1024, 64), (128, 8), 0, cluster="1:b=8").cli_args() == [
        "--net", "64,1024,64", "--kind", "planned", "--seed", "0", "--fanouts", "128,8", "--cluster", "1:b=8"]


def test_specs_follow_the_config():
    cfg = config({"s": {**morse_study({"kind": "random", "fanouts": [128, 8]}), "training": {"lr": 0.1}},
                  "t": {"dataset": "mnist", "model": "mlp", "net": [1024, 64, 16], "seeds": [2],
                        "patterns": [{"kind": "planned", "fanouts": [1, 4], "cluster": "1:f=16"}]}},
                 results_dir="somewhere/res", device="cuda")
    plan = Plan(cfg)
    morse, mnist = plan.runs
    assert morse.spec.lr == 0.1 and morse.spec.epochs == 2 and morse.spec.optimizer == "sgd"
    assert morse.spec.data == "resources/morse/baseline-10-2-2-s0.npz"
    assert morse.spec.pattern == f"somewhere/res/patterns/{morse.pattern.pattern_id}.npz"
    assert morse.spec.extra == {"method": "predefined", "pattern_id": morse.pattern.pattern_id, "compression": 8.0}
    assert plan.tracking_uri in ("sqlite:///somewhere/res/mlflow.db", os.environ.get("MLFLOW_TRACKING_URI"))
    assert morse.resources["gpu"] == 1 and morse.resources["threads"] == 1
    assert mnist.spec.data == "resources/mnist/mnist_pad32.npz" and mnist.spec.variant is None
    assert plan.data_args("resources/mnist/mnist_pad32.npz") == "mnist --layout pad32"
    assert mnist.name == "planned_fo1-4_c1f16_s2" and mnist.spec.seed == 2
    assert plan.metrics_path(mnist) == "somewhere/res/runs/t/planned_fo1-4_c1f16_s2/metrics.json"


def test_write_specs_replaces_a_run_folder_of_an_earlier_definition(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = Plan(config())
    run = plan.runs[0]
    run_dir = Path(plan.run_dir(run))
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps(run.spec.to_dict()))
    (run_dir / "checkpoint.pt").write_bytes(b"same run")
    plan.write_specs("log.txt")
    assert (run_dir / "checkpoint.pt").read_bytes() == b"same run"  # same definition: resumable, kept
    assert json.loads(Path(plan.spec_path(run)).read_text()) == run.spec.to_dict()

    changed = Plan(config(training={**config()["training"], "lr": 0.2}))
    assert changed.definition() != plan.definition()
    changed.write_specs("log.txt")
    assert not run_dir.exists()  # another definition: its checkpoint could not be resumed
    assert "removed" in Path("log.txt").read_text()
    assert Plan(config(device="cuda")).definition() != plan.definition() == Plan(config()).definition()


def test_plan_cli_prints_the_table_and_fails_in_one_line(tmp_path, capsys):
    assert main(["plan", str(REPO / "config/smoke.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["study", "run", "dataset"]
    assert out.rstrip().endswith("14 runs in 5 studies, 8 pattern files")
    assert main(["plan", str(REPO / "config/smoke.yaml"), "--json", "--study", "csc_morse"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in rows] == ["csc_r32.2-2.32_s0"] and rows[0]["compression"] == 16.0

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config({"s": morse_study({"kind": "random", "fanouts": [100, 8]})})))
    assert main(["plan", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"predsparse plan: error: {bad}: study 's'")


# ------------------------------------------------------------------------------------------ allocation, methods
def test_allocate_expands_into_the_allocated_fanouts():
    plan = Plan(config({"s": morse_study(
        {"kind": "random", "allocate": {"overall": [0.125, 0.03125], "rule": ["paper", "uniform", "erk"]}},
        {"kind": "planned", "allocate": {"overall": 0.125, "rule": "uniform"}, "cluster": ["", "1:b=8"]},
        seeds=(0, 1))}))
    runs = {r.name: r for r in plan.runs}
    assert len(plan.runs) == 2 * 3 * 2 + 2 * 2
    for overall in (0.125, 0.03125):
        for rule in ("paper", "uniform", "erk"):
            fanouts = allocate(MORSE, overall, rule)
            run = runs[f"random_{rule}_fo{fanouts[0]}-{fanouts[1]}_s1"]
            assert run.pattern.fanouts == fanouts and run.spec.extra["allocation"] == rule
            assert run.spec.extra["method"] == "predefined" and run.spec.extra["compression"] == 1 / overall
            assert run.row()["allocation"] == rule and run.row()["method_options"] == ""
    assert runs["random_paper_fo64-12_s0"].pattern.fanouts == (64, 12)
    # ERK gives the uniform fan-outs on this net: one pattern file, two runs.
    assert runs["random_erk_fo128-8_s0"].pattern.pattern_id == runs["random_uniform_fo128-8_s0"].pattern.pattern_id
    assert runs["random_erk_fo128-8_s0"].spec.run_id() != runs["random_uniform_fo128-8_s0"].spec.run_id()
    assert {"planned_uniform_fo128-8_s0", "planned_uniform_fo128-8_c1b8_s1"} <= set(runs)
    # Clustering is checked against the allocated fan-outs: the paper rule's fo_2 = 12 leaves no whole windows.
    message = error_of(config({"s": morse_study({"kind": "planned", "allocate": {"overall": 0.125, "rule": "paper"}})}))
    assert "study 's': patterns[0]: key cluster '' for net [64, 1024, 64], fan-outs [64, 12]" in message


def test_allocate_is_one_of_three_fanout_sources_and_checks_its_rule():
    both = {"kind": "random", "fanouts": [128, 8], "allocate": {"overall": 0.125, "rule": "paper"}}
    message = error_of(config({"s": morse_study(both)}))
    assert message == ("test.yaml: study 's': patterns[0]: kind 'random' needs exactly one of the keys 'fanouts', "
                       "'splits' and 'allocate', got ['fanouts', 'allocate']")
    message = error_of(config({"s": morse_study({"kind": "random", "allocate": {"overall": 0.1, "rule": "erdos"}})}))
    assert "study 's': key 'patterns[0].allocate.rule': 'erdos' is not valid: expected paper, uniform or erk" in message
    message = error_of(config({"s": morse_study({"kind": "csc", "allocate": {"overall": 0.1, "rule": "paper"}})}))
    assert "key 'allocate' does not apply to kind 'csc'; csc takes radices, compression" in message


def test_schema_names_the_rules_and_methods_of_the_code():
    groups = read_yaml(REPO / "workflow/schemas/config.schema.yaml")["$defs"]
    assert groups["allocation_rule"]["enum"] == list(RULES)
    assert groups["method_name"]["enum"] == list(METHODS)


def test_method_groups_get_canonical_methods_and_method_names():
    plan = Plan(config({"s": morse_study(
        {"kind": "random", "fanouts": [128, 8]},
        {"kind": "random", "fanouts": [128, 8], "method": "rigl"},
        {"kind": "unstructured", "fanouts": [128, 8], "method": {"name": "rigl", "update_every": 50}},
        {"kind": "random", "allocate": {"overall": 0.125, "rule": "paper"}, "method": "prune", "seeds": [3]},
        {"kind": "unstructured", "fanouts": [128, 8], "method": {"name": "prune", "finetune_epochs": 1},
         "name": "magnitude", "extra": {"note": "x"}},
        seeds=(0,))}))
    runs = {r.name: r for r in plan.runs}
    assert list(runs) == ["random_fo128-8_s0", "rigl_fo128-8_s0", "rigl-unstructured_fo128-8_s0",
                          "prune_paper_fo64-12_s3", "magnitude_fo128-8_s0"]
    rigl, unstructured = runs["rigl_fo128-8_s0"], runs["rigl-unstructured_fo128-8_s0"]
    assert rigl.spec.method == parse_method("rigl", 2) == {"name": "rigl", **DYNAMIC_DEFAULTS}
    assert unstructured.spec.method == {**rigl.spec.method, "update_every": 50}
    assert unstructured.row()["method_options"] == '{"fraction":0.3,"schedule":"cosine","stop":0.75,"update_every":50}'
    assert rigl.spec.extra["method"] == "rigl" and "allocation" not in rigl.spec.extra and rigl.row()["allocation"] == ""
    # A method starts from the pre-defined pattern of the same kind, fan-outs and seed.
    assert rigl.pattern.pattern_id == runs["random_fo128-8_s0"].pattern.pattern_id
    assert unstructured.pattern.kind == "unstructured" and runs["random_fo128-8_s0"].spec.method == {}
    prune = runs["prune_paper_fo64-12_s3"]
    assert prune.spec.method == {"name": "prune", "finetune_epochs": 1} and prune.spec.seed == 3
    assert prune.spec.extra == {"method": "prune", "pattern_id": prune.pattern.pattern_id, "compression": 8.0,
                                "allocation": "paper"}
    assert runs["magnitude_fo128-8_s0"].spec.extra["note"] == "x"
    assert RunSpec.from_dict(prune.spec.to_dict()) == prune.spec  # the spec file reads back as written


@pytest.mark.parametrize("kind, options", [("planned", {"fanouts": [128, 8]}), ("dense", {}),
                                           ("csc", {"radices": "32,2/2,32"})])
def test_method_on_a_kind_of_fixed_connections_is_refused(kind, options):
    message = error_of(config({"s": morse_study({"kind": kind, **options, "method": "rigl"})}))
    assert message == (f"test.yaml: study 's': patterns[0]: key 'method' does not apply to kind '{kind}'; a method "
                       "starts from a pattern of kind random or unstructured (fixed fan-in or unconstrained)")


def test_bad_method_option_names_the_study_group_and_run():
    bad = {"kind": "random", "fanouts": [128, 8], "method": {"name": "rigl", "fraction": 2}}
    assert error_of(config({"s": morse_study(bad)})) == (
        "test.yaml: study 's': patterns[0]: run 'rigl_fo128-8_s0': method option 'fraction' must be a number > 0 "
        "and < 1, got 2")
    bad = {"kind": "unstructured", "fanouts": [128, 8], "method": {"name": "prune", "finetune_epochs": 2}}
    assert "study 's': patterns[0]: run 'prune-unstructured_fo128-8_s0': method option 'finetune_epochs' must be an " \
           "integer >= 1 and < 2, got 2" in error_of(config({"s": morse_study(bad)}))
    bad = {"kind": "random", "fanouts": [128, 8], "method": "sparse"}
    message = error_of(config({"s": morse_study(bad)}))
    assert message.startswith("test.yaml: study 's': key 'patterns[0].method': 'sparse' is not valid: expected a "
                              "method name (prune, set, rigl)") and "\n" not in message


BEYOND = {  # (method, kind) of every run of each preset's beyond studies
    "config.yaml": {("dense", "dense"), ("predefined", "random"), ("prune", "random"), ("prune", "unstructured"),
                    ("set", "random"), ("rigl", "random"), ("rigl", "unstructured")},
    "config/morse.yaml": {("dense", "dense"), ("predefined", "random"), ("prune", "random"),
                          ("prune", "unstructured"), ("set", "random"), ("rigl", "random")},
    "config/smoke.yaml": {("predefined", "random"), ("prune", "random"), ("prune", "unstructured"),
                          ("set", "random"), ("rigl", "random"), ("rigl", "unstructured")},
}


@pytest.mark.parametrize("preset, studies, rules, runs, every", [
    ("config.yaml", {"beyond_morse": MORSE, "beyond_mnist_cl": (784, 224, 10), "beyond_mnist_conv2cl": (3136, 784, 10)},
     {"paper", "uniform", "erk"}, 75, 100),
    # 2 epochs of 25 steps: 7 updates.
    ("config/smoke.yaml", {"beyond_morse": MORSE}, {"paper", "uniform", "erk"}, 8, 5),
])
def test_presets_hold_the_beyond_studies(preset, studies, rules, runs, every):
    plan = load_plan(REPO / preset)
    for study, net in studies.items():
        ours = [r for r in plan.runs if r.study == study]
        assert len(ours) == runs and {r.pattern.net for r in ours} == {tuple(net)}
        assert bool(plan.run_info()["studies"][study]["description"]) == (preset != "config/smoke.yaml")
        assert {(r.spec.extra["method"], r.pattern.kind) for r in ours} == BEYOND[preset]
        assert {r.spec.extra.get("allocation") for r in ours if r.spec.extra["method"] == "predefined"} == rules
        methods = [r for r in ours if r.spec.method]
        # Every method starts from the paper rule's pre-defined patterns (same fan-outs, same weight budget).
        paper = {r.pattern.fanouts for r in ours if r.spec.extra.get("allocation") == "paper" and not r.spec.method}
        assert {r.pattern.fanouts for r in methods} == paper
        assert all(r.spec.extra["allocation"] == "paper" for r in methods)
        assert {r.spec.method.get("update_every") for r in methods if r.spec.method["name"] != "prune"} == {every}
        assert {r.spec.method.get("finetune_epochs") for r in methods if r.spec.method["name"] == "prune"} == {
            ours[0].spec.epochs // 2}


# ------------------------------------------------------------------------------------------ Snakemake
def snakemake(workdir: Path, *args: str, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREDSPARSE_DATA")}
    return subprocess.run([str(SNAKEMAKE), "--snakefile", str(SNAKEFILE), "-d", str(workdir), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, **popen)


def train_log(plan, results: Path, study: str, name: str) -> str:
    """The log of the training job (a group of runs) that trained run `name` of `study`."""
    group = next(g for g in plan.groups if any((r.study, r.name) == (study, name) for r in g.runs))
    return (results / "logs/train" / f"{group.id}.log").read_text()


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts of a dry run's 'Job stats' table."""
    lines = (result.stdout + result.stderr).split("Job stats:")[1].splitlines()
    return {parts[0]: int(parts[1]) for parts in (line.split() for line in lines[3:]) if len(parts) == 2
            and parts[1].isdigit()}


@pytest.mark.parametrize("preset", PRESETS)
def test_dry_run_of_each_preset(preset, tmp_path):
    result = snakemake(tmp_path, "-n", "--configfile", str(REPO / preset))
    assert result.returncode == 0, result.stderr + result.stdout
    jobs, plan = planned_jobs(result), load_plan(REPO / preset)
    train_jobs = {rule: count for rule, count in jobs.items() if rule.startswith("train_")}
    assert sorted(train_jobs) == sorted(f"train_{group.id}" for group in plan.groups)
    assert sum(len(group.runs) for group in plan.groups) == len(plan.runs) and set(train_jobs.values()) == {1}
    assert jobs["specs"] == jobs["tracking_store"] == 1
    assert jobs["pattern"] == jobs["scatter"] == len(plan.patterns)
    assert jobs["aggregate"] == jobs["report"] == jobs["mlflow_sync"] == 1


def test_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, "--lint", "--configfile", str(REPO / "config/smoke.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_invalid_config_stops_snakemake_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config({"s": morse_study({"kind": "planned", "fanouts": [128, 8],
                                                            "cluster": "2:b=3"})})))
    result = snakemake(tmp_path, "--cores", "1", "--configfile", str(bad))
    assert result.returncode != 0
    assert "study 's': patterns[0]: key cluster '2:b=3'" in result.stdout + result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "resources").exists()


def test_typed_config_override_through_snakemake(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config()))
    result = snakemake(tmp_path, "-n", "--configfile", str(path), "--config", "training={epochs: 3, lr: [0.05, 1e-1]}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "random_fo128-8_lr0.05_s0" in result.stdout and "random_fo128-8_lr0.1_s0" in result.stdout
    result = snakemake(tmp_path, "-n", "--configfile", str(path), "--config", "training={epochs: zero}")
    assert result.returncode == 2
    assert "predsparse: error: --config override: key 'training.epochs': 'zero' is not valid" in result.stderr


@pytest.mark.skipif(importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
                    reason="snakemake-executor-plugin-slurm is not installed")
def test_slurm_profile_dry_run(tmp_path):
    result = snakemake(tmp_path, "--workflow-profile", str(REPO / "workflow/profiles/slurm"), "-n", "--configfile",
                       str(REPO / "config/smoke.yaml"), "--config", "device=cuda", cwd=REPO)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "gpu=1" in result.stdout


# ------------------------------------------------------------------------------------------ end to end
def smoke_config(folder: Path, name: str = "smoke.yaml", edit=None) -> Path:
    """The smoke preset, optionally edited, written into `folder`."""
    cfg = read_yaml(REPO / "config/smoke.yaml")
    if edit:
        edit(cfg)
    path = folder / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def summary_ids(results: Path) -> list[str]:
    with open(results / "summary.csv", newline="") as fh:
        return sorted(row["run_id"] for row in csv.DictReader(fh))


def mlflow_runs(results: Path) -> list:
    """(client, run) of every MLflow run in the results folder's store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return [(client, run) for run in client.search_runs(experiments, max_results=10000)]


def epochs_logged(client, run) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, "curves/val_acc"))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke preset, run once with --cores 4; the folder it ran in."""
    workdir = tmp_path_factory.mktemp("smoke")
    result = snakemake(workdir, "--cores", "4", "--configfile", str(smoke_config(workdir)), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir


@pytest.mark.slow
def test_smoke_with_4_cores_logs_every_run_and_epoch(smoke_run):
    plan = load_plan(REPO / "config/smoke.yaml")
    results = smoke_run / plan.results_dir
    expected = sorted(run.spec.run_id() for run in plan.runs)
    assert summary_ids(results) == expected
    assert (results / "report.md").stat().st_size > 0 and (results / "run_info.json").is_file()
    runs = mlflow_runs(results)
    assert sorted(run.data.tags["run_id"] for _, run in runs) == expected
    for client, run in runs:
        assert epochs_logged(client, run) == list(range(1, plan.runs[0].spec.epochs + 1)), run.info.run_name


@pytest.mark.slow
def test_every_report_output_is_declared_and_every_job_benchmarked(smoke_run):
    """Deleting any figure, table or the HTML makes `snakemake -n` plan the report again; every rule
    that ran left a benchmark file."""
    results = smoke_run / "results/smoke"
    figures = sorted((results / "figures").iterdir())
    tables = sorted((results / "tables").iterdir())
    assert {p.suffix for p in figures} == {".png", ".pdf"} and {p.suffix for p in tables} == {".md", ".tex", ".csv"}
    for victim in (figures[0], tables[-1], results / "report.html"):
        aside = victim.with_name(victim.name + ".aside")
        victim.rename(aside)  # rename keeps the mtime, so putting it back leaves the run as it was
        try:
            result = snakemake(smoke_run, "-n", "--configfile", str(smoke_config(smoke_run)))
        finally:
            aside.rename(victim)
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"Missing output files: results/smoke/{victim.relative_to(results)}" in result.stdout + result.stderr
    benchmarks = results / "benchmarks"
    ran = {p.relative_to(benchmarks).parts[0].removesuffix(".tsv") for p in benchmarks.rglob("*.tsv")}
    assert ran == {"aggregate", "data", "mlflow_sync", "patterns", "report", "run_info", "scatter", "specs",
                   "tracking_store", "train"}
    header = next(benchmarks.rglob("*.tsv")).read_text().splitlines()[0].split("\t")
    assert header[:3] == ["s", "h:m:s", "max_rss"]


@pytest.mark.slow
def test_snakemake_report_lists_every_figure_and_table(smoke_run):
    import zipfile

    result = snakemake(smoke_run, "--report", "report.zip", "--configfile", str(smoke_config(smoke_run)))
    assert result.returncode == 0, result.stderr[-2000:]
    names = {Path(n).name for n in zipfile.ZipFile(smoke_run / "report.zip").namelist()}
    results = smoke_run / "results/smoke"
    pngs = {p.name for p in (results / "figures").glob("*.png")}
    csvs = {p.name for p in (results / "tables").glob("*.csv")}
    assert pngs and csvs and pngs | csvs | {"report.html"} <= names


@pytest.mark.slow
def test_adding_a_sweep_runs_only_the_new_runs(smoke_run):
    def add(cfg):
        cfg["studies"]["fig3a_morse"]["patterns"].append({"kind": "random", "fanouts": [[256, 16], [64, 4]]})

    more = smoke_config(smoke_run, "more.yaml", add)
    result = snakemake(smoke_run, "-n", "--printshellcmds", "--configfile", str(more))
    assert result.returncode == 0, result.stderr
    trained = sorted(line.split("--spec ")[1].split()[0] for line in (result.stdout + result.stderr).splitlines()
                     if "predsparse train --spec" in line)
    assert trained == ["results/smoke/specs/fig3a_morse/random_fo256-16_s0.json",
                       "results/smoke/specs/fig3a_morse/random_fo64-4_s0.json"]


@pytest.mark.slow
def test_mlflow_ui_lists_the_smoke_runs(smoke_run):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = f"sqlite:///{smoke_run / 'results/smoke/mlflow.db'}"
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", store,
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{api}/experiments/search?max_results=100", timeout=5) as reply:
                    experiments = {e["name"]: e["experiment_id"] for e in json.load(reply)["experiments"]}
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the MLflow UI did not come up"
                time.sleep(1)
        plan = load_plan(REPO / "config/smoke.yaml")
        assert {f"smoke/{run.study}" for run in plan.runs} == set(experiments) - {"Default"}  # preset/study
        query = json.dumps({"experiment_ids": list(experiments.values()), "max_results": 1000}).encode()
        request = urllib.request.Request(f"{api}/runs/search", data=query, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            names = sorted(run["info"]["run_name"] for run in json.load(reply)["runs"])
        assert names == sorted(run.name for run in plan.runs)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_killed_pipeline_reruns_to_completion_without_duplicates(tmp_path):
    epochs = 40  # a smoke epoch takes milliseconds: enough of them that the kill falls mid-training

    def longer(cfg):  # two runs, long enough to be killed mid-training
        cfg["studies"] = {"fig3a_morse": cfg["studies"]["fig3a_morse"]}
        cfg["training"]["epochs"] = epochs

    path = smoke_config(tmp_path, edit=longer)
    plan = load_plan(path)
    results = tmp_path / plan.results_dir
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    pipeline = subprocess.Popen([str(SNAKEMAKE), "--snakefile", str(SNAKEFILE), "-d", str(tmp_path), "--cores", "2",
                                 "--configfile", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    deadline = time.monotonic() + 300
    while not list(results.glob("runs/*/*/history.csv")):  # a first epoch is checkpointed
        assert pipeline.poll() is None and time.monotonic() < deadline, "training never started"
        time.sleep(0.02)
    os.killpg(pipeline.pid, signal.SIGKILL)  # Snakemake and its training jobs, mid-epoch
    pipeline.wait(timeout=30)
    # Epochs done as the checkpoint says: it is written before history.csv, so a kill between the two
    # leaves history.csv an epoch behind what the rerun resumes from.
    started = {p.parent.name: len(torch.load(p.parent / rundir.CHECKPOINT, weights_only=True)["history"])
               for p in results.glob("runs/*/*/history.csv")}
    assert started and not list(results.glob("runs/*/*/metrics.json"))

    assert snakemake(tmp_path, "--unlock", "--configfile", str(path)).returncode == 0
    result = snakemake(tmp_path, "--cores", "2", "--configfile", str(path), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    expected = sorted(run.spec.run_id() for run in plan.runs)
    assert summary_ids(results) == expected
    assert any(done < epochs for done in started.values()), f"no run was killed mid-training: {started}"
    for name, done in started.items():  # resumed from the checkpoint, not restarted
        log = train_log(plan, results, "fig3a_morse", name)
        # A run that had checkpointed its last epoch but not written its results (the kill fell between
        # the two) only finishes: it has no epoch to train.
        resumed = done == epochs or f"epoch {done + 1}/{epochs}" in log
        assert resumed and f"epoch 1/{epochs} " not in log, (name, done, log[-500:])
    runs = mlflow_runs(results)
    assert sorted(run.data.tags["run_id"] for _, run in runs) == expected
    for client, run in runs:
        assert epochs_logged(client, run) == list(range(1, epochs + 1)), run.info.run_name


@pytest.mark.slow
def test_a_failing_run_fails_alone_with_its_message(tmp_path):
    def diverging(cfg):
        ok = {**cfg["studies"]["fig3a_morse"], "patterns": [{"kind": "dense"}]}
        cfg["studies"] = {"fig3a_morse": ok, "fig3c_morse_split50": {**ok, "training": {"lr": 1.0e30}}}

    path = smoke_config(tmp_path, edit=diverging)
    result = snakemake(tmp_path, "--cores", "2", "--configfile", str(path), timeout=600)
    assert result.returncode != 0
    results = tmp_path / "results/smoke"
    assert (results / "runs/fig3a_morse/dense_s0/metrics.json").is_file()
    assert "non-finite" in train_log(load_plan(path), results, "fig3c_morse_split50", "dense_s0")
    assert not (results / "runs/fig3c_morse_split50/dense_s0/metrics.json").exists()


def test_runs_that_share_a_net_share_a_training_job(tmp_path):
    plan = load_plan(smoke_config(tmp_path))
    for group in plan.groups:
        assert len({(r.spec.group_key(), r.pattern.net, r.pattern.fanouts) for r in group.runs}) == 1
        assert len(group.runs) == 1 or all(r.spec.device == "cpu" for r in group.runs)
    assert max(len(g.runs) for g in plan.groups) > 1
    assert sorted(r.name for g in plan.groups for r in g.runs) == sorted(r.name for r in plan.runs)
    args = shlex.split(plan.train_args(plan.groups[0]))
    assert args[::4] == ["--spec"] * len(plan.groups[0].runs) and args[2::4] == ["--out"] * len(plan.groups[0].runs)

    def capped(cfg):
        cfg["group_runs"] = 1

    alone = load_plan(smoke_config(tmp_path, "alone.yaml", edit=capped))
    assert len(alone.groups) == len(alone.runs)
    message = error_of({**read_yaml(REPO / "config/smoke.yaml"), "group_runs": 0})
    assert "group_runs" in message


def test_rules_ask_the_plan_for_every_path():
    """Output paths are built by Plan alone (path, log_path, benchmark_path, pattern_path, ...); a rule
    that spells one itself would drift from what `predsparse plan` and the CLI use."""
    rules = [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]
    for path in rules:
        text = "\n".join(line.split("#")[0] for line in path.read_text().splitlines())  # code, not comments
        for spelled in ("{RESULTS}", "{RESOURCES}", "results/", "resources/", '"logs/', '"benchmarks/'):
            assert spelled not in text, f"{path.name} builds a path itself: {spelled}"


def test_the_largest_training_jobs_get_the_highest_priority():
    plan = load_plan(REPO / "config/morse.yaml")
    ranks = plan.priorities
    assert sorted(ranks) == sorted(g.id for g in plan.groups)
    assert sorted(ranks.values()) == list(range(len(plan.groups)))
    by_rank = sorted(plan.groups, key=lambda g: ranks[g.id])
    assert [g.work for g in by_rank] == sorted(g.work for g in plan.groups)
    # the 64-1024-64 job at fo (128, 8) with 8 runs: 8 x (64 x 128 + 1024 x 8) weights x 30 epochs
    eight = next(g for g in plan.groups if len(g.runs) == 8 and g.runs[0].pattern.fanouts == (128, 8))
    assert eight.work == 8 * (64 * 128 + 1024 * 8) * 30
    assert ranks[eight.id] > ranks[min(plan.groups, key=lambda g: g.work).id]
