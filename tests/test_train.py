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

import pytest
import torch

from predsparse import rundir
from predsparse.cli import main
from predsparse.errors import ConfigError, DatasetError, TrainingError
from predsparse.nn.models import build_model
from predsparse.patterns import load_pattern
from predsparse.scatter import scatter_vector
from predsparse.summary import HISTORY_COLUMNS, SUMMARY_COLUMNS
from predsparse.defaults import HYPERPARAMETERS, resolve_spec
from predsparse import train
from predsparse.train import make_optimizer, train_run
from conftest import VOLATILE, make_spec, synthetic_morse

pytestmark = pytest.mark.usefixtures("one_thread")


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
    model = build_model(spec.model, load_pattern(inputs["pattern"]), spec.num_classes)
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


def test_cli_training_flushes_denormals_and_sets_them_back(inputs, tmp_path, monkeypatch):
    """`predsparse train` trains with denormals flushed to zero (a denormal times 1 is 0 there) and leaves
    the calling thread as torch's default after (a caller running the CLI in its own process)."""
    import predsparse.train as train

    seen = []
    real = train.train_run

    def spy(*args, **kwargs):
        seen.append((torch.tensor([1e-39]) * 1.0).item())
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "train_run", spy)
    assert main(["train", "--dataset", "morse", "--data", str(inputs["data"]), "--pattern", str(inputs["pattern"]),
                 "--epochs", "1", "--device", "cpu", "--no-mlflow", "--out", str(tmp_path / "run")]) == 0
    assert seen == [0.0]
    assert (torch.tensor([1e-39]) * 1.0).item() != 0.0


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


class _Stderr:
    """A stand-in for stderr: a terminal or a log file."""

    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def _epoch_of(progress, now: list, seconds: float) -> None:
    """One epoch reported as training reports it (every _CHECK_EVERY batches), taking `seconds` on clock `now`."""
    now[0] = 0.0
    progress.start_epoch(1)
    for done in [*range(train._CHECK_EVERY, progress.batches, train._CHECK_EVERY), progress.batches]:
        now[0] = seconds * done / progress.batches
        progress.batch(1, done, 1.5, 0.25)


def test_progress_in_a_log_is_a_line_every_tenth_of_a_slow_epoch_only(monkeypatch):
    log = _Stderr(tty=False)
    monkeypatch.setattr(sys, "stderr", log)
    now = [0.0]
    progress = train.Progress("slow", 3, 200, clock=lambda: now[0])
    _epoch_of(progress, now, 2.0)  # a fast epoch: nothing but its epoch line
    assert log.text == ""
    _epoch_of(progress, now, 40.0)  # a slow one: a line at every tenth (the first report past it)
    lines = log.text.splitlines()
    assert [line.split(":")[0] for line in lines] == ["slow epoch 1/3"] * 9, lines
    assert [int(line.split(": ")[1].split("%")[0]) for line in lines] == [16, 24, 32, 40, 56, 64, 72, 80, 96]
    assert lines[0] == "slow epoch 1/3: 16% (32/200 batches) loss 1.5000 acc 0.2500, 6 s, ~34 s left"


class _Bar:
    """Records what the training progress asks of a tqdm bar."""

    def __init__(self, description, total):
        self.description, self.total, self.n, self.updates, self.postfix, self.closed = description, total, 0, [], {}, False

    def update(self, n):
        self.updates.append(n)
        self.n += n

    def set_postfix(self, refresh=True, **values):
        assert not refresh  # the update that follows draws it, at most every REDRAW_S
        self.postfix = values

    def close(self):
        self.closed = True


def test_progress_on_a_terminal_is_a_tqdm_bar_updated_in_chunks(monkeypatch):
    terminal = _Stderr(tty=True)
    monkeypatch.setattr(sys, "stderr", terminal)
    bars, real_bar = [], train._tqdm_bar
    monkeypatch.setattr(train, "_tqdm_bar", lambda description, total: bars.append(_Bar(description, total)) or bars[-1])
    progress = train.Progress("bar", 3, 200)
    _epoch_of(progress, [0.0], 1.0)
    (bar,) = bars
    assert (bar.description, bar.total, bar.n) == ("bar 1/3", 200, 200)
    assert bar.updates == [train._CHECK_EVERY] * 12 + [8]  # one update per check, not per step
    assert bar.postfix == {"loss": "1.5000", "acc": "0.2500"}
    progress.epoch({"epoch": 1, "train_loss": 1.5, "train_acc": 0.25, "val_loss": 1.0, "val_acc": 0.5, "wall_time_s": 1.0})
    assert bar.closed and terminal.text.endswith("bar epoch 1/3 train_loss 1.5000 train_acc 0.2500 val_loss 1.0000 "
                                                 "val_acc 0.5000 (1.0 s)\033[K\n")
    monkeypatch.setattr(train, "_tqdm_bar", real_bar)  # and the real tqdm draws on the terminal
    real = train.Progress("real", 3, 200)
    real.start_epoch(2)
    real.batch(2, 16, 1.5, 0.25)
    real.close()
    assert "real 2/3" in terminal.text and "/200" in terminal.text


def test_progress_on_a_terminal_without_tqdm_is_a_bar_of_its_own(monkeypatch):
    terminal = _Stderr(tty=True)
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm fails, as on the GPU check image
    now = [0.0]
    progress = train.Progress("bar", 3, 200, clock=lambda: now[0])
    _epoch_of(progress, now, 1.0)
    draws = terminal.text.split("\r")[1:]
    assert len(draws) == 5 and draws[-1] == "bar 1/3 [" + "#" * 30 + "] 200/200 loss 1.5000 acc 0.2500"


def test_training_reports_batches_only_at_its_checks(inputs):
    spec = make_spec(inputs)
    model = build_model(spec.model, load_pattern(inputs["pattern"]), spec.num_classes)
    x, y = torch.rand(1000, 64), torch.randint(0, 64, (1000,))
    calls = []
    train.train_epoch(model, make_optimizer(spec, model), x, y, 10, torch.Generator().manual_seed(0),
                      lambda done, loss, acc: calls.append(done))
    assert calls == [*range(train._CHECK_EVERY, 100, train._CHECK_EVERY), 100]


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
