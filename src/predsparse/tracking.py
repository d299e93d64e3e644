"""MLflow tracking: one experiment per study, one MLflow run per training run.

The run folders under `results/runs/` are the source of truth (`predsparse.rundir`); MLflow is a window
onto them and can always be rebuilt from them with `predsparse mlflow-sync results/`.

- Store: `RunSpec.tracking_uri` if set, else `MLFLOW_TRACKING_URI`, else `sqlite:///results/mlflow.db`
  (MLflow 3's database store; artifacts of a SQLite store go to `mlartifacts/` beside the database).
- Layout: one experiment per preset and study (`experiment_name`: "smoke/fig3a_morse"), tagged for classic
  model development; each MLflow run carries MLflow's own source tags (git commit, source name), a
  description (`mlflow.note.content`), its data set (`mlflow.data`: name, digest, source) and metrics
  in sections: the learning curves first (`curves/val_acc`, step = epoch), then the single values
  (`model/`, `pattern/`, `result/`, `scatter/`).
- Identity: every MLflow run carries the tag `run_id` = `RunSpec.run_id()`. Finding a run by that tag is the
  only way a run is looked up, so a resumed training run, a rerun after the store was unreachable and
  `mlflow-sync` all land on the same MLflow run, and none is ever created twice.
- Concurrency: several processes share one store. A new SQLite store's schema is created by one process
  only (`_create_schema_once`); experiment creation tolerates losing the race to another process; every
  call is retried with jittered exponential back-off while SQLite reports "database is locked" (or a
  server is temporarily unavailable).
- Idempotence: per-epoch metrics are logged only for epochs (steps) the run does not have yet, final
  metrics and params only where missing; a run is `published` (tag) once everything is in.
- Training never fails because of tracking: `RunTracker` turns any store error into one warning and goes
  on without MLflow.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from predsparse import rundir
from predsparse.errors import ConfigError, TrackingError
from predsparse.summary import join_list

# MLflow 3's UI opens an untagged experiment in its GenAI mode ("Evaluations"); this is classic training.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
SOURCE_NAME = "predsparse train"
RUN_ID_TAG = "run_id"
PUBLISHED_TAG = "published"
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "wall_time_s")  # history.csv columns
# MLflow's UI draws one chart section per metric-name prefix, alphabetically, and the unprefixed metrics
# last: the learning curves get the prefix that sorts first, the single values theirs (`_final_metrics`).
CURVES = "curves/"


def curve_metric(column: str) -> str:
    """The MLflow name of a per-epoch history column: val_acc -> curves/val_acc."""
    return CURVES + column
# A server that does not answer should cost seconds, not MLflow's default of minutes of retries.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
_TRANSIENT = ("database is locked", "database table is locked", "temporarily_unavailable", "busy")


def default_uri(results_dir: str | Path = "results") -> str:
    """The store of a results folder when nothing else is set: a SQLite file in it."""
    return f"sqlite:///{Path(results_dir).as_posix().rstrip('/') or '/'}/mlflow.db"


def resolve_uri(uri: str | None = None, results_dir: str | Path = "results") -> str:
    """The tracking URI to use: the given one (from the run spec or config), MLFLOW_TRACKING_URI, the
    results folder's default store. The one place that says so: the pipeline, the CLI and the report ask here."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(results_dir)


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def _create_schema_once(db: Path, uri: str) -> None:
    """Let exactly one process create a new SQLite store's schema.

    MLflow creates the schema when a store is first opened, unguarded: processes opening a fresh database
    together collide ("table _alembic_tmp_metrics already exists"). Here the first one opens it under a
    lock (filelock, beside the database) and then writes a "ready" mark; the others wait on the lock, see
    the mark and go on (the check holds the lock, so it never sees a half-made schema).
    """
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    ready = db.with_name(db.name + ".ready")
    with FileLock(db.with_name(db.name + ".lock")):
        if ready.is_file() and db.is_file() and db.stat().st_size > 0:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # alembic's notes on unnamed constraints while migrating
            _retry(MlflowClient(tracking_uri=uri).search_experiments, max_results=1)
        ready.touch()


def _is_transient(exc: BaseException) -> bool:
    text = f"{getattr(exc, 'error_code', '')} {exc}".lower()
    return any(marker in text for marker in _TRANSIENT)


def _retry(call, *args, attempts: int = 10, **kwargs):
    """call(*args, **kwargs), retried with jittered exponential back-off (up to 0.05 s, 0.1 s, ... 5 s) while it
    fails with a transient error; any other error, or the last attempt's, propagates as it is."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

    retrying = Retrying(stop=stop_after_attempt(attempts), wait=wait_random_exponential(multiplier=0.05, max=5.0),
                        retry=retry_if_exception(_is_transient), reraise=True)
    return retrying(call, *args, **kwargs)


def _flat_params(outcome: dict) -> dict[str, str]:
    """MLflow params of a run: its whole spec plus the pattern's densities and weight counts."""
    params: dict[str, str] = {}
    for key, value in outcome["spec"].items():
        if key == "extra":
            params.update({f"extra.{k}": json.dumps(v) if not isinstance(v, str) else v for k, v in value.items()})
        elif isinstance(value, dict):  # the method: {} for fixed connections
            params[key] = json.dumps(value, sort_keys=True) if value else ""
        else:
            params[key] = "" if value is None else str(value)
    pattern = outcome["pattern"]
    for key in ("net", "fanouts", "fanins", "junction_densities"):
        params[f"pattern.{key}"] = join_list(pattern[key])
    for key in ("kind", "overall_density", "weights", "dense_weights"):
        params[f"pattern.{key}"] = str(pattern[key])
    params["pattern.options"] = json.dumps(pattern["options"], sort_keys=True)
    return params


def _final_metrics(outcome: dict) -> dict[str, float]:
    """Figures of a finished run (or what a failed one got to), the scatter vector and the model size.

    Named with a section prefix ("result/best_val_acc", "scatter/S1f", "model/macs") that sorts after the
    learning curves' ("curves/"), so that MLflow's UI draws the curves first."""
    final: dict[str, float] = {}
    for key in ("best_val_acc", "best_val_epoch", "val_acc_epoch1", "val_acc_epoch5", "test_acc", "test_loss",
                "wall_time_s", "epochs_done"):
        if outcome.get(key) is not None:
            # The run's whole wall time has a name of its own: per-epoch `wall_time_s` (cumulative, step =
            # epoch) is another metric.
            final["result/" + ("total_wall_time_s" if key == "wall_time_s" else key)] = float(outcome[key])
    for key, value in (outcome.get("final") or {}).items():
        final[f"result/final_{key}"] = float(value)
    scatter = outcome["scatter"]
    final["scatter/S"] = float(scatter["scatter"])
    final.update({f"scatter/{label}": float(v) for label, v in zip(scatter["labels"], scatter["vector"])})
    final["pattern/overall_density"] = float(outcome["pattern"]["overall_density"])
    for key in ("params", "macs"):
        final[f"model/{key}"] = float(outcome["model"][key]["total"])
    return final


def experiment_name(spec: dict) -> str:
    """The MLflow experiment of a run: "<preset>/<study>" (smoke and paper runs never share one on a
    shared server), or the study alone for a run outside any preset (`predsparse train` by hand)."""
    return f"{spec['preset']}/{spec['study']}" if spec.get("preset") else spec["study"]


def describe(spec: dict, pattern: dict) -> str:
    """The run's description in words (MLflow's `mlflow.note.content`, shown on its run page)."""
    method = (spec.get("method") or {}).get("name") or (spec.get("extra") or {}).get("method", "predefined")
    fanouts = "-".join(str(f) for f in pattern["fanouts"])
    data = spec["dataset"] + (f" ({spec['variant']})" if spec.get("variant") else "")
    return (f"Study `{spec['study']}`, run `{spec['run_name']}`: {spec['model']} on {data}, net "
            f"{'-'.join(str(n) for n in pattern['net'])}, {pattern['kind']} pattern with fan-outs {fanouts} "
            f"(overall density {100 * float(pattern['overall_density']):.3g} %), connections {method}; "
            f"{spec['optimizer']} lr {spec['lr']:g}, batch {spec['batch_size']}, {spec['epochs']} epochs, "
            f"seed {spec['seed']}.")


def _file_digest(path: Path) -> str:
    """The sha256 (16 hex) of a data file, read once per process for a given file state: the runs of a
    grouped job share one data file, which would otherwise be hashed once per run."""
    stat = path.stat()
    return _digest_of(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _digest_of(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a rewritten file is hashed anew
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _dataset_input(spec: dict):
    """The run's data file as an MLflow dataset input (name "<dataset>/<file stem>", e.g.
    morse/baseline-5000-1000-1000-s0, its sha256 digest and its path), or None when the file is gone."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    path = Path(str(spec.get("data", "")))
    if not path.is_file():
        return None
    with warnings.catch_warnings():  # a local path resolves to MLflow's local-file source (it says so, twice)
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(str(path.resolve()))
    dataset = MetaDataset(source, name=f"{spec['dataset']}/{path.stem}", digest=_file_digest(path))
    # One file holds the train, validation and test splits.
    return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "train/validation/test")])


class Store:
    """An MLflow tracking store, with the retries that many concurrent writers need. Errors propagate."""

    def __init__(self, uri: str | None = None):
        self.uri = resolve_uri(uri)
        db = _sqlite_path(self.uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
            self.artifact_root = (db.parent / "mlartifacts").resolve().as_uri()
        else:
            self.artifact_root = None  # a server chooses its own artifact store
            for key, value in _HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
        for name in ("mlflow.store.db.utils", "alembic"):  # schema set-up chatter on first use
            logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        self._experiments: dict[str, str] = {}
        if db is not None:
            _create_schema_once(db, self.uri)
        self.client = MlflowClient(tracking_uri=self.uri)

    def _call(self, method: str, *args, **kwargs):
        return _retry(getattr(self.client, method), *args, **kwargs)

    def experiment_id(self, name: str) -> str:
        """The id of an experiment (`experiment_name`), created once even when several processes race to
        create it, and tagged EXPERIMENT_TAGS."""
        if name not in self._experiments:
            exp = self._call("get_experiment_by_name", name)
            if exp is None:
                try:
                    exp_id = self._call("create_experiment", name, artifact_location=self.artifact_root,
                                        tags=EXPERIMENT_TAGS)
                except Exception:
                    exp = self._call("get_experiment_by_name", name)  # another process created it first
                    if exp is None:
                        raise
                    exp_id = exp.experiment_id
            else:
                exp_id = exp.experiment_id
                if exp.lifecycle_stage == "deleted":
                    self._call("restore_experiment", exp_id)
            if exp is not None:  # made before experiments were tagged, or by someone else
                for key, value in EXPERIMENT_TAGS.items():
                    if exp.tags.get(key) != value:
                        self._call("set_experiment_tag", exp_id, key, value)
            self._experiments[name] = exp_id
        return self._experiments[name]

    def find_run(self, spec: dict, run_id: str):
        """The active MLflow run of this spec's experiment tagged with this predsparse run id, or None."""
        runs = self._call("search_runs", [self.experiment_id(experiment_name(spec))],
                          filter_string=f"tags.{RUN_ID_TAG} = '{run_id}'", max_results=2)
        return runs[0] if runs else None

    def create_run(self, info: dict, results_path: str) -> str:
        """A new MLflow run for `info` (the run's spec, id, commit and pattern), with its tags, description
        and data set."""
        from mlflow.utils.mlflow_tags import (MLFLOW_GIT_COMMIT, MLFLOW_RUN_NOTE, MLFLOW_SOURCE_NAME,
                                              MLFLOW_SOURCE_TYPE)

        spec = info["spec"]
        tags = {
            RUN_ID_TAG: info["run_id"],
            "study": spec["study"],
            "results_path": results_path,
            "pattern_id": info["pattern"]["id"],
            MLFLOW_SOURCE_NAME: SOURCE_NAME,
            MLFLOW_SOURCE_TYPE: "LOCAL",
            MLFLOW_RUN_NOTE: describe(spec, info["pattern"]),
        }
        commit = str(info.get("git_commit") or "unknown")
        if commit != "unknown":  # provenance.git_commit: "<sha>" or "<sha>+dirty"
            tags[MLFLOW_GIT_COMMIT] = commit.removesuffix("+dirty")
            tags["git_dirty"] = str(commit.endswith("+dirty")).lower()
        run = self._call("create_run", self.experiment_id(experiment_name(spec)), run_name=spec["run_name"],
                         tags=tags)
        dataset = _dataset_input(spec)
        if dataset is not None:
            self._call("log_inputs", run.info.run_id, datasets=[dataset])
        return run.info.run_id

    def logged_steps(self, mlflow_run_id: str) -> set[int]:
        """Epochs already logged: log_batch writes all metrics of an epoch in one transaction, so one key tells."""
        return {m.step for m in self._call("get_metric_history", mlflow_run_id, curve_metric("val_acc"))}

    def log_params(self, mlflow_run_id: str, params: dict[str, str], present: dict[str, str]) -> None:
        from mlflow.entities import Param

        missing = [Param(k, v) for k, v in sorted(params.items()) if k not in present]
        for start in range(0, len(missing), 100):  # MLflow's limit of params per batch
            self._call("log_batch", mlflow_run_id, params=missing[start:start + 100])

    def log_epochs(self, mlflow_run_id: str, rows: list[dict], logged: set[int]) -> None:
        """Log the per-epoch metrics (step = epoch) of every row whose epoch is not in `logged`."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for row in rows:
            if row["epoch"] in logged:
                continue
            metrics = [Metric(curve_metric(k), float(row[k]), now, int(row["epoch"])) for k in EPOCH_METRICS]
            self._call("log_batch", mlflow_run_id, metrics=metrics)
            logged.add(row["epoch"])

    def publish(self, run_dir: str | Path, within: str | Path | None = None) -> str:
        """Bring the MLflow run of a finished or failed run folder up to date; idempotent. Returns its id.

        Artifacts are the run folder's own files (a link leading out of it is skipped) and the spec's pattern
        file; with `within` (mlflow-sync: the results folder) the pattern file is uploaded only from inside it
        or the run folder, never from wherever else a run folder's spec points.
        """
        run_dir = Path(run_dir)
        outcome = rundir.outcome(run_dir)
        if outcome is None:
            raise TrackingError(f"{run_dir} has neither {rundir.METRICS} nor {rundir.FAILURE}: the run has not ended")
        run = self.find_run(outcome["spec"], outcome["run_id"])
        if run is not None and run.data.tags.get(PUBLISHED_TAG) == "1":
            return run.info.run_id
        mlflow_run_id = run.info.run_id if run else self.create_run(outcome, run_dir.as_posix())
        params, metrics = (run.data.params, run.data.metrics) if run else ({}, {})
        self.log_params(mlflow_run_id, _flat_params(outcome), params)
        history = rundir.read_history(run_dir / rundir.HISTORY) if (run_dir / rundir.HISTORY).is_file() else []
        self.log_epochs(mlflow_run_id, history, self.logged_steps(mlflow_run_id))
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        final = [Metric(k, v, now, 0) for k, v in sorted(_final_metrics(outcome).items()) if k not in metrics]
        if final:
            self._call("log_batch", mlflow_run_id, metrics=final)
        for name in (rundir.SPEC, rundir.HISTORY, rundir.METRICS, rundir.FAILURE, rundir.CURVES,
                     rundir.FINAL_PATTERN):
            if (run_dir / name).is_file() and _inside(run_dir / name, [run_dir]):
                self._call("log_artifact", mlflow_run_id, str(run_dir / name))
        pattern_file = Path(str(outcome["spec"].get("pattern", "")))
        if not pattern_file.is_file():
            _warn(f"pattern file {pattern_file} of {run_dir} not found; MLflow run logged without it")
        elif within is not None and not _inside(pattern_file, [run_dir, Path(within)]):
            _warn(f"pattern file {pattern_file} named by the spec of {run_dir} is outside {Path(within)} and the "
                  "run folder; MLflow run logged without it")
        else:
            self._call("log_artifact", mlflow_run_id, str(pattern_file), "pattern")
        failed = outcome["status"] != "finished"
        if failed:
            self._call("set_tag", mlflow_run_id, "error", outcome.get("error", ""))
        self._call("set_tag", mlflow_run_id, PUBLISHED_TAG, "1")
        self._call("set_terminated", mlflow_run_id, "FAILED" if failed else "FINISHED")
        return mlflow_run_id


def _inside(path: Path, folders: list[Path]) -> bool:
    """Whether `path`, links resolved, lies inside one of `folders`."""
    real = path.resolve()
    return any(real.is_relative_to(folder.resolve()) for folder in folders)


def _warn(message: str) -> None:
    sys.stderr.write(f"predsparse: warning: {message}\n")
    sys.stderr.flush()


class RunTracker:
    """The MLflow side of one training run. Never raises: a store error warns once and disables tracking."""

    def __init__(self, uri: str | None):
        self.uri = resolve_uri(uri)
        self.disabled = False
        self.mlflow_run_id: str | None = None
        self._store: Store | None = None
        self._logged: set[int] = set()

    def _run(self, action: str, fn) -> None:
        if self.disabled:
            return
        try:
            if self._store is None:
                self._store = Store(self.uri)
            fn(self._store)
        except Exception as exc:  # tracking must never stop training
            self.disabled = True
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            _warn(f"MLflow tracking at {self.uri} disabled ({action} failed: {first_line}); results are still "
                  f"written; load them later with `predsparse mlflow-sync results/`")

    def start(self, info: dict, out_dir: str | Path, history: list[dict], resumed: bool) -> None:
        """Find or create this run's MLflow run; catch up on epochs `history` holds that MLflow lacks.

        A fresh start (no checkpoint) discards an MLflow run left with metrics by an earlier attempt whose
        results are gone, so MLflow never shows epochs the results folder does not have.
        """
        def begin(store: Store):
            run = store.find_run(info["spec"], info["run_id"])
            if run is not None and not resumed and store.logged_steps(run.info.run_id):
                store._call("delete_run", run.info.run_id)
                run = None
            self.mlflow_run_id = run.info.run_id if run else store.create_run(info, Path(out_dir).as_posix())
            if run is not None:  # training again: the run is not complete until published anew
                store._call("update_run", self.mlflow_run_id, status="RUNNING")
                if run.data.tags.get(PUBLISHED_TAG):
                    store._call("delete_tag", self.mlflow_run_id, PUBLISHED_TAG)
            store.log_params(self.mlflow_run_id, _flat_params(info), run.data.params if run else {})
            self._logged = store.logged_steps(self.mlflow_run_id)
            store.log_epochs(self.mlflow_run_id, history, self._logged)

        self._run("start", begin)

    def log_epoch(self, row: dict) -> None:
        self._run("log_epoch", lambda store: store.log_epochs(self.mlflow_run_id, [row], self._logged))

    def publish(self, out_dir: str | Path) -> None:
        """After metrics.json or failure.json is written: final metrics, artifacts, status (idempotent)."""
        self._run("publish", lambda store: store.publish(out_dir))


def sync(results: str | Path, uri: str | None = None) -> dict[str, int]:
    """Publish every ended run under `results` that MLflow lacks or has incomplete; idempotent.

    Returns counts: runs `published` now, `skipped` because already complete, `unfinished` folders
    (killed or running) left alone.
    """
    counts = {"published": 0, "skipped": 0, "unfinished": 0}
    folders = rundir.run_dirs(results)
    ended = [(d, o) for d in folders if (o := rundir.outcome(d)) is not None]
    counts["unfinished"] = len(folders) - len(ended)
    for run_dir, outcome in ended:  # every folder readable before the store is touched
        try:
            _flat_params(outcome), _final_metrics(outcome)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            name = rundir.METRICS if (Path(run_dir) / rundir.METRICS).is_file() else rundir.FAILURE
            raise ConfigError(f"{Path(run_dir) / name} lacks a figure MLflow logs or has it malformed "
                              f"({type(exc).__name__}: {exc}); rerun the run or move the folder away") from None
    # The results folder of the pipeline's layout (RESULTS/runs/STUDY/RUN): pattern files come from there only.
    root = Path(results).parent if Path(results).name == "runs" else Path(results)
    try:
        store = Store(uri)
        for run_dir, outcome in ended:
            run = store.find_run(outcome["spec"], outcome["run_id"])
            if run is not None and run.data.tags.get(PUBLISHED_TAG) == "1":
                counts["skipped"] += 1
            else:
                store.publish(run_dir, within=root)
                counts["published"] += 1
    except TrackingError:
        raise
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise TrackingError(f"MLflow store {resolve_uri(uri)} cannot be used ({first_line}); "
                            f"{counts['published']} run(s) were published before the error") from None
    return counts
