"""MLflow tracking: concurrent writers, resumed runs, unreachable stores, idempotent sync."""

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_spec

from predsparse import rundir
from predsparse.cli import main
from predsparse.errors import TrainingError
from predsparse.tracking import EPOCH_METRICS, RUN_ID_TAG, Store, _retry, curve_metric
from predsparse.train import train_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module (creating its schema takes seconds)."""
    return Store(f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db")


def runs_of(store, study):
    return store.client.search_runs([store.experiment_id(study)])


def steps(store, run, key="val_acc"):
    return sorted(m.step for m in store.client.get_metric_history(run.info.run_id, curve_metric(key)))


def test_retry_backs_off_only_on_transient_errors():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert _retry(flaky) == "ok" and len(calls) == 3
    calls.clear()

    def broken():
        calls.append(1)
        raise ValueError("no such table")

    with pytest.raises(ValueError):
        _retry(broken)
    assert len(calls) == 1


def test_eight_processes_share_one_sqlite_store(inputs, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"  # fresh: the schema creation races too
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = []
    for seed in range(8):
        spec = make_spec(inputs, study="parallel", run_name=f"seed{seed}", seed=seed, tracking_uri=uri)
        spec_file = tmp_path / f"seed{seed}.json"
        spec_file.write_text(json.dumps(spec.to_dict()))
        command = [sys.executable, "-m", "predsparse", "train", "--spec", str(spec_file), "--out",
                   str(tmp_path / "runs" / spec.run_name)]
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert "warning" not in err, err
    store = Store(uri)
    runs = runs_of(store, "parallel")
    assert sorted(r.info.run_name for r in runs) == [f"seed{s}" for s in range(8)]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(steps(store, r) == [1, 2, 3] for r in runs)
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        (experiments,) = db.execute("select count(*) from experiments where name = 'parallel'").fetchone()
        (epoch_rows,) = db.execute("select count(*) from metrics where step > 0").fetchone()
    assert experiments == 1
    assert epoch_rows == 8 * 3 * len(EPOCH_METRICS)


def test_resumed_run_continues_its_mlflow_run(inputs, store, tmp_path, monkeypatch):
    spec = make_spec(inputs, study="resume", run_name="interrupted", epochs=4, tracking_uri=store.uri)
    out = tmp_path / "interrupted"

    def interrupt(self, row):  # after epoch 2's checkpoint, before MLflow hears of epoch 2
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("predsparse.train.Progress.epoch", interrupt)
        with pytest.raises(KeyboardInterrupt):
            train_run(spec, out)
    (run,) = runs_of(store, "resume")
    assert run.info.status == "RUNNING" and steps(store, run) == [1]

    metrics = train_run(spec, out)
    (run,) = runs_of(store, "resume")
    assert run.info.status == "FINISHED" and run.data.tags["published"] == "1"
    assert all(steps(store, run, key) == [1, 2, 3, 4] for key in EPOCH_METRICS)  # each epoch exactly once
    assert run.data.metrics["result/test_acc"] == metrics["test_acc"]
    assert run.data.metrics["scatter/S1f"] == metrics["scatter"]["vector"][0]
    # Every metric in a section; the curves' sorts first, so MLflow's UI draws them first.
    sections = sorted({k.split("/")[0] for k in run.data.metrics if "/" in k})
    assert len(sections) == len({k.split("/")[0] for k in run.data.metrics}) and sections[0] == "curves"
    tags = run.data.tags
    assert tags[RUN_ID_TAG] == spec.run_id() and tags["study"] == "resume" and tags["pattern_id"] == "p"
    assert tags["results_path"] == out.as_posix()
    # MLflow's own tags: the UI's Source column, the run page's description, the experiment's kind.
    assert tags["mlflow.source.git.commit"] == metrics["git_commit"].removesuffix("+dirty")
    assert tags["git_dirty"] == str(metrics["git_commit"].endswith("+dirty")).lower()
    assert tags["mlflow.source.name"] == "predsparse train" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.note.content"].startswith("Study `resume`, run `interrupted`: mlp on morse")
    experiment = store.client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    (logged,) = store.client.get_run(run.info.run_id).inputs.dataset_inputs
    data = Path(spec.data)
    assert logged.dataset.name == f"morse/{data.stem}"
    assert logged.dataset.digest == hashlib.sha256(data.read_bytes()).hexdigest()[:16]
    assert json.loads(logged.dataset.source)["uri"] == str(data.resolve())
    params = run.data.params
    assert params["lr"] == str(spec.lr) and params["optimizer"] == "adam"
    assert params["pattern.junction_densities"] == "0.25;0.125" and params["pattern.kind"] == "random"
    artifacts = {a.path for a in store.client.list_artifacts(run.info.run_id)}
    assert {"curves.png", "history.csv", "metrics.json", "spec.json", "pattern"} <= artifacts

    # Results deleted and the run trained afresh: the stale MLflow run is replaced, not doubled.
    train_run(spec, tmp_path / "afresh")
    (fresh,) = runs_of(store, "resume")
    assert fresh.info.run_id != run.info.run_id and steps(store, fresh) == [1, 2, 3, 4]


def test_unreachable_store_then_idempotent_sync(inputs, store, tmp_path, capfd):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    broken = f"sqlite:///{blocker}/mlflow.db"
    runs = tmp_path / "results" / "runs"
    metrics = train_run(make_spec(inputs, study="sync", run_name="ok", tracking_uri=broken), runs / "sync" / "ok")
    err = capfd.readouterr().err
    assert err.count("warning: MLflow tracking at") == 1 and "mlflow-sync" in err
    assert (runs / "sync" / "ok" / rundir.METRICS).is_file() and metrics["test_acc"] > 0
    with pytest.raises(TrainingError):
        train_run(make_spec(inputs, study="sync", run_name="nan", optimizer="sgd", lr=1e30, tracking_uri=broken),
                  runs / "sync" / "nan")
    (runs / "sync" / "unfinished").mkdir()
    (runs / "sync" / "unfinished" / rundir.SPEC).write_text("{}")

    results = str(tmp_path / "results")
    assert main(["mlflow-sync", results, "--tracking-uri", store.uri]) == 0
    assert "published 2 run(s), 0 already complete in MLflow, 1 unfinished" in capfd.readouterr().out
    by_name = {r.info.run_name: r for r in runs_of(store, "sync")}
    assert by_name["ok"].info.status == "FINISHED" and by_name["nan"].info.status == "FAILED"
    assert steps(store, by_name["ok"]) == [1, 2, 3] and by_name["nan"].data.tags["error"]
    rows = {name: len(store.client.get_metric_history(r.info.run_id, curve_metric("val_acc"))) for name, r in by_name.items()}

    assert main(["mlflow-sync", results, "--tracking-uri", store.uri]) == 0
    assert "published 0 run(s), 2 already complete" in capfd.readouterr().out
    again = {r.info.run_name: r for r in runs_of(store, "sync")}
    assert {n: r.info.run_id for n, r in again.items()} == {n: r.info.run_id for n, r in by_name.items()}
    assert {n: len(store.client.get_metric_history(r.info.run_id, curve_metric("val_acc"))) for n, r in again.items()} == rows

    assert main(["mlflow-sync", results, "--tracking-uri", broken]) == 2
    assert capfd.readouterr().err.startswith("predsparse mlflow-sync: error: MLflow store")
