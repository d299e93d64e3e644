"""Training runs: outputs, determinism, resume after a real kill, failures, defaults, CLI, aggregate."""

import csv
import json
import os
from importlib import metadata
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from predsparse import rundir
from predsparse.cli import main
from predsparse.errors import ConfigError, DatasetError, TrainingError
from predsparse.io import save_npz
from predsparse.nn.models import build_model
from predsparse.patterns import generate_pattern, load_pattern
from predsparse.scatter import scatter_vector
from predsparse.spec import RunSpec
from predsparse.summary import HISTORY_COLUMNS, SUMMARY_COLUMNS
from predsparse.defaults import HYPERPARAMETERS, resolve_spec
from predsparse.train import make_optimizer, train_run

# Figures that legitimately differ between two runs of one spec (time, where it ran).
VOLATILE = {"wall_time_s", "device", "versions", "git_commit"}


def synthetic_morse(path: Path, n=(1024, 256, 256), features=64, seed=0):
    """A learnable 64-class set: input y is 1 for class y, the others noise in [0, 0.3)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, size in zip(("tr", "va", "te"), n):
        y = rng.integers(0, 64, size)
        x = (rng.random((size, features)) * 0.3).astype(np.float32)
        x[np.arange(size), y % features] = 1.0
        arrays[f"x{split}"], arrays[f"y{split}"] = x, y.astype(np.int64)
    save_npz(path, arrays)
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread here and in training subprocesses: equal results, no oversubscribed cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    generate_pattern([64, 128, 64], [32, 8], "random", 0).save(root / "p.npz")
    return {"data": synthetic_morse(root / "morse.npz"), "pattern": root / "p.npz", "root": root}


def make_spec(inputs, **changes) -> RunSpec:
    raw = {"study": "t", "run_name": "r", "dataset": "morse", "data": str(inputs["data"]),
           "pattern": str(inputs["pattern"]), "epochs": 3, "batch_size": 32, "optimizer": "adam", "lr": 0.03,
           "device": "cpu", **changes}
    return resolve_spec(raw)


def stable(metrics: dict) -> dict:
    """metrics.json without the volatile figures; history rows without their clock."""
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


def history_without_clock(run_dir) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in rundir.read_history(run_dir / rundir.HISTORY)]


@pytest.fixture(scope="module")
def finished(inputs, tmp_path_factory):
    """Two finished runs (seeds 0 and 1) under one runs folder."""
    runs = tmp_path_factory.mktemp("runs")
    out = {}
    for seed in (0, 1):
        spec = make_spec(inputs, run_name=f"r{seed}", seed=seed)
        out[seed] = (spec, runs / "t" / spec.run_name, train_run(spec, runs / "t" / spec.run_name, track=False))
    return runs, out


def test_run_folder_holds_every_output(finished, inputs):
    _, runs = finished
    spec, run_dir, metrics = runs[0]
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        [rundir.SPEC, rundir.CHECKPOINT, rundir.HISTORY, rundir.CURVES, rundir.METRICS])
    assert json.loads((run_dir / rundir.METRICS).read_text()) == metrics
    history = rundir.read_history(run_dir / rundir.HISTORY)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert list(history[0]) == list(HISTORY_COLUMNS)
    best = max(history, key=lambda row: row["val_acc"])  # first maximum on ties
    assert (metrics["best_val_epoch"], metrics["best_val_acc"]) == (best["epoch"], best["val_acc"])
    assert metrics["val_acc_epoch1"] == history[0]["val_acc"] and metrics["val_acc_epoch5"] is None
    assert metrics["best_val_acc"] > 0.3  # learns (chance is 1/64)
    assert 0 < metrics["test_acc"] <= 1
    pattern = load_pattern(inputs["pattern"])
    assert metrics["scatter"] == scatter_vector(pattern).to_dict()
    assert metrics["pattern"]["junction_densities"] == [0.25, 0.125]
    assert metrics["pattern"]["weights"] == 64 * 32 + 128 * 8
    assert metrics["run_id"] == spec.run_id() and metrics["spec"] == spec.to_dict()
    assert metrics["versions"]["torch"] == metadata.version("torch")
    assert metrics["device"].startswith("cpu")


def test_same_seed_same_run_and_other_seed_differs(finished, inputs, tmp_path):
    _, runs = finished
    spec, run_dir, metrics = runs[0]
    again = train_run(spec, tmp_path / "again", track=False)
    assert stable(again) == stable(metrics)
    assert history_without_clock(tmp_path / "again") == history_without_clock(run_dir)
    assert history_without_clock(runs[1][1]) != history_without_clock(run_dir)


def test_finished_run_is_not_trained_again(finished):
    _, runs = finished
    spec, run_dir, metrics = runs[0]
    stamp = (run_dir / rundir.CHECKPOINT).stat().st_mtime_ns
    assert train_run(spec, run_dir, track=False) == metrics
    assert (run_dir / rundir.CHECKPOINT).stat().st_mtime_ns == stamp


def test_folder_of_another_spec_is_refused(finished, inputs):
    _, runs = finished
    _, run_dir, _ = runs[0]
    with pytest.raises(ConfigError, match="holds the finished run"):
        train_run(make_spec(inputs, run_name="r0", lr=0.01), run_dir, track=False)


def test_killed_training_process_resumes_to_the_same_metrics(inputs, tmp_path):
    spec = make_spec(inputs, run_name="killed", epochs=12, batch_size=32)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec.to_dict()))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "predsparse", "train", "--spec", str(spec_file), "--out", str(out), "--no-mlflow"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    history = out / rundir.HISTORY
    deadline = time.monotonic() + 60
    while not (history.is_file() and len(history.read_text().splitlines()) >= 3):  # header + 2 epochs
        assert process.poll() is None and time.monotonic() < deadline, "training ended before it could be killed"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / rundir.METRICS).exists()
    done = len(torch.load(out / rundir.CHECKPOINT, weights_only=True)["history"])
    assert 2 <= done < 12

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert resumed.returncode == 0, resumed.stderr
    first_epoch = int(resumed.stderr.split(" epoch ")[1].split("/")[0])
    assert first_epoch == done + 1  # resumed, not restarted

    reference = train_run(spec, tmp_path / "reference", track=False)
    assert stable(json.loads((out / rundir.METRICS).read_text())) == stable(reference)
    assert history_without_clock(out) == history_without_clock(tmp_path / "reference")


def test_non_finite_loss_stops_the_run(inputs, tmp_path, capsys):
    spec = make_spec(inputs, run_name="nan", optimizer="sgd", lr=1e30)
    with pytest.raises(TrainingError, match="non-finite training loss in epoch 1"):
        train_run(spec, tmp_path / "nan", track=False)
    failure = json.loads((tmp_path / "nan" / rundir.FAILURE).read_text())
    assert failure["status"] == "failed" and failure["failed_epoch"] == 1
    assert not (tmp_path / "nan" / rundir.METRICS).exists()
    spec_file = tmp_path / "nan.json"
    spec_file.write_text(json.dumps(spec.to_dict()))
    assert main(["train", "--spec", str(spec_file), "--out", str(tmp_path / "nan2"), "--no-mlflow"]) == 2
    assert "error: run nan: non-finite training loss" in capsys.readouterr().err


def test_weight_decay_reaches_only_existing_weights(inputs):
    spec = make_spec(inputs, weight_decay=1e-3, optimizer="adam", lr=1e-3)
    model = build_model(spec, load_pattern(inputs["pattern"]))
    optimizer = make_optimizer(spec, model)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 1e-3 and plain["weight_decay"] == 0
    assert sorted(p.numel() for p in decayed["params"]) == [128 * 8, 64 * 32]  # N_i * fo_i each, nothing absent
    assert all(p.ndim == 1 for p in plain["params"])
    model(torch.rand(8, 64)).sum().backward()
    optimizer.step()
    state_sizes = sorted(optimizer.state[p]["exp_avg"].numel() for p in decayed["params"])
    assert state_sizes == [128 * 8, 64 * 32]


def test_paper_defaults_fill_only_missing_hyper_parameters(inputs):
    morse = resolve_spec({"study": "s", "run_name": "r", "dataset": "morse", "data": "d", "pattern": "p"})
    assert (morse.optimizer, morse.epochs) == ("sgd", 30)
    mnist = resolve_spec({"study": "s", "run_name": "r", "dataset": "mnist", "data": "d", "pattern": "p"})
    assert (mnist.optimizer, mnist.epochs, mnist.weight_decay) == ("adam", 100, 1e-4)
    conv = resolve_spec({"study": "s", "run_name": "r", "dataset": "mnist", "model": "mnist_conv", "data": "d",
                         "pattern": "p", "epochs": 7})
    assert (conv.epochs, conv.weight_decay) == (7, HYPERPARAMETERS["mnist", "mnist_conv"]["weight_decay"])


def test_dataset_that_does_not_fit_the_model(inputs, tmp_path):
    data = synthetic_morse(tmp_path / "narrow.npz", n=(64, 64, 64), features=32)
    with pytest.raises(DatasetError, match="samples have shape \\[32\\] but model mlp takes 64 values"):
        train_run(make_spec(inputs, data=str(data)), tmp_path / "run", track=False)


def test_cli_trains_from_flags_and_reports_bad_input(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yaml_spec = tmp_path / "run.yaml"
    yaml_spec.write_text(f"study: cli\nrun_name: yaml\ndataset: morse\ndata: {inputs['data']}\n"
                         f"pattern: {inputs['pattern']}\ndevice: cpu\nbatch_size: 128\n")
    assert main(["train", "--spec", str(yaml_spec), "--epochs", "1", "--no-mlflow", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["spec"]["optimizer"] == "sgd" and printed["spec"]["epochs"] == 1  # default, then flag
    assert (tmp_path / "results/runs/cli/yaml" / rundir.METRICS).is_file()
    assert main(["train", "--dataset", "morse", "--data", str(inputs["data"]), "--pattern", str(inputs["pattern"]),
                 "--epochs", "1", "--device", "cpu", "--no-mlflow"]) == 0
    assert "p-seed0: best val acc" in capsys.readouterr().out
    assert main(["train", "--dataset", "morse", "--pattern", "p.npz"]) == 2
    assert capsys.readouterr().err.strip() == "predsparse train: error: without --spec, --data must be given"
    assert main(["train", "--spec", str(yaml_spec), "--optimizer", "rmsprop"]) == 2
    assert "optimizer 'rmsprop' is not one of ['adam', 'sgd']" in capsys.readouterr().err


def test_one_log_line_per_epoch_without_a_terminal(inputs, tmp_path, capsys):
    train_run(make_spec(inputs, run_name="log"), tmp_path / "log", track=False)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" train_loss")[0] for line in lines] == [f"log epoch {e}/3" for e in (1, 2, 3)]


def test_aggregate_collects_each_finished_run_once(finished, inputs, tmp_path, capsys):
    runs, by_seed = tmp_path / "runs", finished[1]
    shutil.copytree(finished[0], runs)
    (runs / "t" / "killed").mkdir()  # an unfinished run: spec only
    shutil.copy(by_seed[0][1] / rundir.SPEC, runs / "t" / "killed" / rundir.SPEC)
    with pytest.raises(TrainingError):
        train_run(make_spec(inputs, run_name="nan", optimizer="sgd", lr=1e30), runs / "t" / "nan", track=False)
    summary, history = tmp_path / "summary.csv", tmp_path / "history.csv"
    command = ["aggregate", str(runs), "-o", str(summary), "--history", str(history)]
    assert main(command) == 0
    err = capsys.readouterr().err
    assert "left out" in err and "unfinished" in err and "failed" in err
    rows = list(csv.DictReader(summary.open()))
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    assert [row["run_name"] for row in rows] == ["r0", "r1"]
    metrics = by_seed[0][2]
    assert rows[0]["run_id"] == metrics["run_id"] and rows[0]["method"] == "predefined"
    assert rows[0]["net"] == "64;128;64" and rows[0]["fanouts"] == "32;8" and rows[0]["val_acc_epoch5"] == ""
    assert float(rows[0]["test_acc"]) == metrics["test_acc"]
    assert rows[0]["scatter_vector"].count(";") == len(metrics["scatter"]["vector"]) - 1
    history_rows = list(csv.DictReader(history.open()))
    assert tuple(history_rows[0]) == HISTORY_COLUMNS and len(history_rows) == 6
    before = summary.read_bytes(), history.read_bytes()
    assert main(command) == 0
    assert (summary.read_bytes(), history.read_bytes()) == before  # idempotent
    shutil.copytree(runs / "t" / "r0", runs / "copy" / "r0")
    assert main(command) == 2
    assert f"run id {metrics['run_id']} is in two folders" in capsys.readouterr().err
    assert (summary.read_bytes(), history.read_bytes()) == before  # untouched by the failed call


def test_aggregate_takes_each_fixed_patterns_scatter_file(finished, tmp_path):
    """--scatter DIR: a fixed pattern's scatter comes from the pipeline's file (its study's convention)."""
    runs, by_seed = finished
    metrics = by_seed[0][2]
    scatter_dir = tmp_path / "scatter"
    scatter_dir.mkdir()
    real = {"vector": [0.5, 0.25, 1.0, 1.0, 0.75, 0.25], "labels": [], "scatter": 0.25,
            "real_neurons": {"in": 60, "out": 60}}
    (scatter_dir / f"{metrics['pattern']['id']}.json").write_text(json.dumps(real))
    summary = tmp_path / "summary.csv"
    assert main(["aggregate", str(runs), "-o", str(summary), "--history", str(tmp_path / "h.csv"),
                 "--scatter", str(scatter_dir)]) == 0
    rows = list(csv.DictReader(summary.open()))
    # Both seeds' runs read the same pattern file p.npz.
    assert [(r["scatter_vector"], r["scatter"], r["scatter_neurons"]) for r in rows] == [
        ("0.5;0.25;1;1;0.75;0.25", "0.25", "real")] * 2
    assert main(["aggregate", str(runs), "-o", str(summary), "--history", str(tmp_path / "h.csv")]) == 0
    assert {r["scatter_neurons"] for r in csv.DictReader(summary.open())} == {"all"}
