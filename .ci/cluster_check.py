"""Helpers of .ci/cluster (not a test module): catch a training job mid-run and cancel it; check the results.

    python .ci/cluster_check.py cancel WORKDIR CONFIG OUT.json   # while the pipeline runs
    python .ci/cluster_check.py verify WORKDIR CONFIG CANCELLED.json TRACKING_URI ARTIFACTS FIRST_LOG

`cancel` waits for a training job (rule train_<group>) to be RUNNING on the cluster with a run of its group
checkpointed but unfinished, freezes that job's `predsparse train` process (SIGSTOP, so the moment cannot
slip by: a smoke epoch takes a fraction of a second) and cancels the job with `scancel`. It records the
job, its group and each run's checkpointed epochs.

`verify` asserts what the cluster test promises: every run exactly once in summary.csv and in the tracking
server (REST API, deleted runs included), all finished and published with their artifacts proxied into the
server's artifact folder; the cancelled runs resumed from their checkpoints (no epoch trained or logged
twice); the first run's log names the cancelled job; the report built.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path


def fail(message: str) -> None:
    sys.stderr.write(f"cluster check: FAILED: {message}\n")
    sys.exit(1)


def load(workdir: Path, config: str):
    """The plan of `config` (its paths are relative to `workdir`, Snakemake's working directory)."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the plan's paths do not depend on it
    from predsparse.pipeline import load_plan

    return load_plan(config)


def running_train_jobs() -> dict[str, str]:
    """Group id -> SLURM job id of every RUNNING training job."""
    out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True, text=True,
                         timeout=20).stdout
    jobs = {}
    for line in out.splitlines():
        job_id, _, comment = line.partition("|")
        if comment.startswith("rule_train_"):
            jobs[comment[len("rule_train_"):].split("_wildcards_")[0]] = job_id.strip()
    return jobs


def job_state(job_id: str) -> str:
    return subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                          timeout=20).stdout.strip()


def job_processes(job_id: str) -> dict[int, list[bytes]]:
    """pid -> command line of every process of a SLURM job (found by the SLURM_JOB_ID in its environment)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"SLURM_JOB_ID={job_id}".encode() in env and args[0]:
            found[int(proc.name)] = args
    return found


def train_pids(job_id: str) -> list[int]:
    """The `predsparse train` processes of a SLURM job."""
    return [pid for pid, args in job_processes(job_id).items()
            if any(a.endswith(b"predsparse") for a in args[:3]) and b"train" in args]


def epochs_done(run_dir: Path) -> int:
    """Epochs in the run's checkpoint (history.csv is written just after it, so it may lag by one)."""
    if not (run_dir / "checkpoint.pt").is_file():
        return 0
    import torch

    return len(torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["history"])


def cancel(workdir: Path, config: str, out: Path, deadline_s: float = 300) -> None:
    plan = load(workdir, config)
    groups = {g.id: [workdir / plan.run_dir(r) for r in g.runs] for g in plan.groups}
    skipped: set[str] = set()
    deadline = time.monotonic() + deadline_s
    jobs: dict[str, str] = {}
    last_poll = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() - last_poll > 0.5:
            jobs = {g: j for g, j in running_train_jobs().items() if g not in skipped}
            last_poll = time.monotonic()
        for group, job_id in jobs.items():
            dirs = groups[group]
            if not any((d / "checkpoint.pt").is_file() and not (d / "metrics.json").is_file() for d in dirs):
                continue
            pids = train_pids(job_id)
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            caught = [d for d in dirs if (d / "checkpoint.pt").is_file() and not (d / "metrics.json").is_file()]
            if not pids or not caught:  # it finished between the look and the freeze: let it go, try another
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
                skipped.add(group)
                continue
            subprocess.run(["scancel", job_id], check=True, timeout=20)
            t0 = time.monotonic()
            while job_state(job_id) not in ("CANCELLED", "") and time.monotonic() - t0 < 60:
                time.sleep(0.2)
            state = job_state(job_id)
            t0 = time.monotonic()  # SLURM must have ended every process of the job, Snakemake's included
            while (left := job_processes(job_id)) and time.monotonic() - t0 < 30:
                time.sleep(0.5)
            if left:
                fail(f"SLURM job {job_id} is {state or 'gone'} but left processes running: "
                     + "; ".join(f"{pid} {b' '.join(a).decode(errors='replace')[:120]}" for pid, a in left.items()))
            done = {d.name: epochs_done(d) for d in dirs}
            record = {"job": job_id, "group": group, "state": state, "epochs_done": done,
                      "runs": [str(d.relative_to(workdir)) for d in dirs]}
            out.write_text(json.dumps(record, indent=1))
            print(f"cluster check: cancelled SLURM job {job_id} (train_{group}, state {state}) with "
                  f"{', '.join(f'{n} at epoch {e}' for n, e in done.items())}", flush=True)
            return
        time.sleep(0.01)
    fail(f"no training job was caught mid-run within {deadline_s:g} s")


def api(uri: str, path: str, body: dict | None = None) -> dict:
    url = f"{uri.rstrip('/')}/api/2.0/mlflow/{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.load(reply)


def verify(workdir: Path, config: str, cancelled_json: Path, uri: str, artifacts: Path, first_log: Path) -> None:
    plan = load(workdir, config)
    results = workdir / plan.results_dir
    expected = sorted(r.spec.run_id() for r in plan.runs)

    # summary.csv: every run exactly once
    with open(results / "summary.csv", newline="") as fh:
        summary = sorted(row["run_id"] for row in csv.DictReader(fh))
    if summary != expected:
        fail(f"summary.csv has {len(summary)} rows for {len(expected)} runs: "
             f"missing {sorted(set(expected) - set(summary))}, "
             f"repeated or unknown {sorted(i for i in set(summary) if summary.count(i) > 1 or i not in expected)}")

    # the tracking server: every run exactly once (deleted runs counted too), finished, published; searched
    # in every experiment, whatever the pipeline names them
    found = api(uri, "experiments/search?max_results=1000&view_type=ALL")["experiments"]
    experiments = [e["experiment_id"] for e in found]
    runs = []
    body = {"experiment_ids": experiments, "max_results": 1000, "run_view_type": "ALL"}
    while True:
        page = api(uri, "runs/search", body)
        runs += page.get("runs", [])
        if not page.get("next_page_token"):
            break
        body["page_token"] = page["next_page_token"]
    tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
    logged = sorted(t.get("run_id", "?") for t in tags)
    if logged != expected:
        fail(f"tracking server has {len(logged)} runs for {len(expected)}: "
             f"missing {sorted(set(expected) - set(logged))}, "
             f"repeated {sorted(i for i in set(logged) if logged.count(i) > 1)}")
    for run, tag in zip(runs, tags):
        info = run["info"]
        if info["lifecycle_stage"] != "active" or info["status"] != "FINISHED" or tag.get("published") != "1":
            fail(f"MLflow run {info['run_name']}: stage {info['lifecycle_stage']}, status {info['status']}, "
                 f"published {tag.get('published')}")
        if not info["artifact_uri"].startswith("mlflow-artifacts:"):
            fail(f"MLflow run {info['run_name']}: artifacts at {info['artifact_uri']}, not proxied by the server")
        listed = {f["path"] for f in api(uri, f"artifacts/list?run_id={info['run_id']}").get("files", [])}
        if "metrics.json" not in listed:
            fail(f"MLflow run {info['run_name']}: artifacts {sorted(listed)} lack metrics.json")
    stored = list(artifacts.rglob("metrics.json"))
    if len(stored) != len(expected):
        fail(f"{len(stored)} metrics.json under the server's artifact folder {artifacts}, expected {len(expected)}")

    # the cancelled job: its rule failed with the SLURM state, and its runs resumed from their checkpoints
    record = json.loads(cancelled_json.read_text())
    log = first_log.read_text(errors="replace")
    if f"Error in rule train_{record['group']}" not in log or "CANCELLED" not in log:
        fail(f"the first run's log does not report the cancelled job train_{record['group']} "
             f"(SLURM job {record['job']}) as failed with state CANCELLED")
    if not any(record["epochs_done"].values()):
        fail(f"the cancelled job train_{record['group']} had no checkpointed epoch: nothing to resume")
    train_log = (results / "logs/train" / f"{record['group']}.log").read_text(errors="replace")
    mlflow_by_tag = {t["run_id"]: r["info"]["run_id"] for r, t in zip(runs, tags)}
    try:  # the name of the per-epoch validation accuracy in MLflow, as the pipeline logs it
        from predsparse.tracking import curve_metric

        val_acc = curve_metric("val_acc")
    except ImportError:
        val_acc = "val_acc"
    epochs = int(plan.runs[0].spec.epochs)
    for rel in record["runs"]:
        name = Path(rel).name
        done = record["epochs_done"][name]
        run = next(r for r in plan.runs if plan.run_dir(r) == rel)
        if done >= 1 and f"{name} epoch 1/{epochs} " in train_log:
            fail(f"{name} was checkpointed at epoch {done} but trained epoch 1 again after the cancel")
        if done < epochs and f"{name} epoch {epochs}/{epochs} " not in train_log:
            fail(f"{name}: the rerun did not train its last epoch ({results / 'logs/train' / record['group']}.log)")
        history = [int(row["epoch"]) for row in csv.DictReader(open(workdir / rel / "history.csv", newline=""))]
        if history != list(range(1, epochs + 1)):
            fail(f"{name}: history.csv epochs {history}")
        steps = sorted(m["step"] for m in api(
            uri, "metrics/get-history?" + urllib.parse.urlencode(
                {"run_id": mlflow_by_tag[run.spec.run_id()], "metric_key": val_acc, "max_results": 1000})
        ).get("metrics", []))
        if steps != list(range(1, epochs + 1)):
            fail(f"{name}: MLflow {val_acc} steps {steps}, expected each epoch once")

    # the report
    report = results / "report.md"
    summary_time = (results / "summary.csv").stat().st_mtime
    if not report.is_file() or report.stat().st_size == 0 or report.stat().st_mtime < summary_time:
        fail(f"{report} missing, empty or older than summary.csv")
    print(f"cluster check: {len(expected)} runs exactly once in summary.csv and in the tracking server "
          f"({len(runs)} MLflow runs, artifacts proxied); train_{record['group']} (SLURM job {record['job']}) "
          f"cancelled at {record['epochs_done']} and resumed; report built", flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "cancel":
        cancel(Path(args[0]).resolve(), args[1], Path(args[2]))
    elif command == "verify":
        verify(Path(args[0]).resolve(), args[1], Path(args[2]), args[3], Path(args[4]), Path(args[5]))
    else:
        fail(f"unknown command {command}")
