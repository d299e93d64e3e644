"""Where a Morse run's time goes: start-up, training steps, evaluation, checkpoints and MLflow, per run.

Runs the real `predsparse.train.train_run` (or `train_group` for `--group R` runs that share the net) at
the paper's Morse protocol (64, 1024, 64), fo (128, 8), the 320,000 training samples of the data file,
batch 256, SGD as `predsparse.defaults` says) for `--epochs` epochs, with a timer around each part:

- `imports`: `import predsparse.train, predsparse.tracking, mlflow` in a fresh interpreter;
- `data`: reading and checking the dataset file; `setup`: pattern, model, run info, spec;
- `steps`: the training epochs' batches (forward, backward, optimiser step, running loss and accuracy);
- `evaluation`: validation after every epoch and the final test; `checkpoints`: checkpoint and history
  files after every epoch; `final_files`: the curves PNG;
- `mlflow_run`: creating and publishing the run's MLflow run, `mlflow_epochs`: logging each epoch (a
  SQLite store in a temporary folder, created before timing, as the pipeline's tracking_store rule does);
- `other`: the rest.
Per-epoch parts are also projected to the protocol's 30 epochs (`projected_30_s`: measured per epoch
times 30, the rest as measured), so a short benchmark still answers "how long is a full run".
`--path` chooses how a step runs: `fused` (the default: one native call per step, `predsparse.nn.fused`),
`autograd` (the layer's native kernels through autograd and torch's SGD, the step before the fused one)
or `torch` (the layer's torch formulations, no native kernels). In a group every part is the group's
total divided by its runs. Writes results/benchmarks/study_<path>_group<R>.csv.

    python benchmarks/study.py --data resources/morse/paper2017-5000-1000-1000-s0.npz
    python benchmarks/study.py --data ... --path autograd     # before: native kernels through autograd
    python benchmarks/study.py --data ... --group 8           # 8 runs in one job (fused: one after the other)
    python benchmarks/study.py --data ... --group 8 --path autograd   # 8 runs in one stacked step
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

import predsparse.train as train
import predsparse.train_group as train_group
import predsparse.tracking as tracking
from predsparse.allocator import keep_freed_memory
from predsparse.defaults import HYPERPARAMETERS
from predsparse.io import atomic_write_csv
from predsparse.nn import fused, native
from predsparse.patterns import generate_pattern
from predsparse.spec import RunSpec

PER_EPOCH = ("steps", "evaluation", "checkpoints", "mlflow_epochs")
COLUMNS = ("config", "path", "group", "threads", "epochs", "part", "seconds_per_run", "projected_30_s")
# part -> (module, function name) wrapped by a timer; train and train_group share the helpers they import.
TIMED = {
    "data": [(train, "load_arrays"), (train_group, "load_arrays")],
    "setup": [(train, "load_pattern"), (train, "build_model"), (train, "run_info")],
    "steps": [(train, "train_epoch")],
    "evaluation": [(train, "evaluate"), (train_group, "evaluate")],
    "checkpoints": [(train, "_save_checkpoint"), (train.rundir, "write_history")],
    "final_files": [(train, "write_curves")],
    "mlflow_run": [(tracking.RunTracker, "start"), (tracking.RunTracker, "publish")],
    "mlflow_epochs": [(tracking.RunTracker, "log_epoch")],
}


def import_seconds() -> float:
    code = ("import time; t = time.perf_counter(); import predsparse.train, predsparse.tracking, mlflow; "
            "print(time.perf_counter() - t)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def timed_parts(run) -> tuple[dict[str, float], float]:
    """Seconds spent in each TIMED part while `run()` runs (outermost calls only), and the total."""
    spent: dict[str, float] = defaultdict(float)
    depth = [0]
    originals = []

    def wrap(part, fn):
        def timed(*args, **kwargs):
            depth[0] += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[part] += time.perf_counter() - start
        return timed

    for part, places in TIMED.items():
        for owner, name in places:
            originals.append((owner, name, getattr(owner, name)))
            setattr(owner, name, wrap(part, getattr(owner, name)))
    start = time.perf_counter()
    try:
        run()
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
    return dict(spent), time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="Morse dataset file (predsparse data morse ...)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs to time (projected to 30)")
    parser.add_argument("--group", type=int, default=1, help="runs trained together (train_group)")
    parser.add_argument("--path", choices=["fused", "autograd", "torch"], default="fused",
                        help="how a step runs (see the module docstring)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one core per run)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as `predsparse train` does, and:
    torch.set_flush_denormal(True)
    if args.path == "torch":
        native.AVAILABLE = False
    elif not native.AVAILABLE:
        parser.error(f"--path {args.path}: {native.STATUS}")
    fused.ENABLED = args.path == "fused"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        specs = []
        for seed in range(args.group):
            generate_pattern([64, 1024, 64], [128, 8], "random", seed).save(tmp / f"p{seed}.npz")
            specs.append(RunSpec(study="bench", run_name=f"s{seed}", dataset="morse", data=args.data,
                                 pattern=str(tmp / f"p{seed}.npz"), seed=seed, device="cpu", variant="paper2017",
                                 tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                                 **{**HYPERPARAMETERS["morse", "mlp"], "epochs": args.epochs}))
        outs = [tmp / "runs" / s.run_name for s in specs]
        tracking.Store(specs[0].tracking_uri).experiment_id("bench")  # the schema, once, as in the pipeline
        if args.group == 1:
            spent, total = timed_parts(lambda: train.train_run(specs[0], outs[0]))
        else:
            spent, total = timed_parts(lambda: train_group.train_group(specs, outs))
    if args.group > 1 and args.path != "fused":  # stacked epochs: steps are what the timed parts leave
        spent["steps"] = total - sum(v for part, v in spent.items() if part != "steps")
    spent["other"] = max(0.0, total - sum(spent.values()))
    spent["imports"] = import_seconds()  # one interpreter per job, shared by its runs
    label = f"{args.path}, {'alone' if args.group == 1 else f'group of {args.group}'}"
    rows = []
    for part in ("imports", "data", "setup", "mlflow_run", *PER_EPOCH, "final_files", "other"):
        seconds = spent.get(part, 0.0) / args.group
        projected = seconds / args.epochs * 30 if part in PER_EPOCH else seconds
        rows.append({"config": label, "path": args.path, "group": args.group, "threads": args.threads,
                     "epochs": args.epochs, "part": part, "seconds_per_run": round(seconds, 3),
                     "projected_30_s": round(projected, 2)})
    rows.append({**rows[-1], "part": "total", "seconds_per_run": round(sum(r["seconds_per_run"] for r in rows), 3),
                 "projected_30_s": round(sum(r["projected_30_s"] for r in rows), 2)})
    name = f"study_{args.path}_group{args.group}.csv"
    atomic_write_csv(args.out / name, COLUMNS, rows)
    for row in rows:
        print(f"{label:>22}  {row['part']:>12}: {row['seconds_per_run']:8.2f} s per run  "
              f"(30 epochs: {row['projected_30_s']:7.1f} s)")
    print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
