"""`predsparse train`: one training run from a run spec (JSON/YAML) and/or flags; or several runs in one
process (`--spec A --out DIR_A --spec B --out DIR_B ...`), stacked into one step where they can be
(`predsparse.train_group`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HELP = ("train one run (a RunSpec file and/or flags), or several in one process (repeated --spec/--out); "
        "resumes a killed run from its checkpoint")

# flag dest -> RunSpec key, for the flags that set spec values
_SPEC_FLAGS = ("study", "run_name", "dataset", "data", "pattern", "model", "variant", "seed", "optimizer", "lr",
               "momentum", "weight_decay", "batch_size", "epochs", "init", "device", "tracking_uri")


def add_arguments(parser):
    from predsparse.catalog import DATASETS, DEFAULT_MODEL, DEVICES, METHODS, MODELS, OPTIMIZERS

    parser.add_argument("--spec", metavar="FILE", action="append",
                        help="run spec, .json or .yaml (keys of predsparse.spec.RunSpec); repeat it (with one --out "
                        "each) to train runs that share a net together in one process; "
                        "flags below override its values")
    parser.add_argument("--out", metavar="DIR", action="append",
                        help="run folder (default: results/runs/STUDY/RUN_NAME); one per --spec")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow (results are written all the same)")
    parser.add_argument("--json", action="store_true", help="print the run's metrics.json on stdout")
    quick = parser.add_argument_group(
        "run settings (without --spec: --dataset, --data and --pattern are required; optimiser, lr, batch size, "
        "epochs, L2 and init default to the table of predsparse.defaults for the dataset and model)")
    quick.add_argument("--dataset", help=" | ".join(DATASETS))
    quick.add_argument("--data", metavar="NPZ", help="dataset file from `predsparse data`")
    quick.add_argument("--pattern", metavar="NPZ", help="pattern file from `predsparse pattern`")
    quick.add_argument("--model", help=" | ".join(f"{m} (default)" if m == DEFAULT_MODEL else m for m in MODELS))
    quick.add_argument("--variant", help="Morse variant, recorded with the run")
    quick.add_argument("--study", help="study name (default: quick)")
    quick.add_argument("--run-name", help="readable run name (default: pattern file name and seed)")
    quick.add_argument("--seed", type=int)
    quick.add_argument("--optimizer", help=" | ".join(OPTIMIZERS))
    quick.add_argument("--lr", type=float)
    quick.add_argument("--momentum", type=float, help="SGD momentum")
    quick.add_argument("--weight-decay", type=float, help="L2 on weights (existing connections only)")
    quick.add_argument("--batch-size", type=int)
    quick.add_argument("--epochs", type=int)
    quick.add_argument("--init", help="CL weight initialisation: uniform (ours, U(+-1/sqrt(fi))) | he_dense (the "
                       "authors': N(0, 2/N_i) over the dense fan-in, existing connections kept)")
    quick.add_argument("--device", help=" | ".join(DEVICES))
    quick.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI or sqlite:///results/mlflow.db)")
    trained = " | ".join(name for name, method in METHODS.items() if not method.fixed)
    quick.add_argument("--method", help="how the connections come about: predefined (default: the pattern's, fixed) | "
                       f"{trained}, or a JSON mapping with options, e.g. "
                       "'{\"name\": \"rigl\", \"update_every\": 50}' (see predsparse.methods.options)")


def _method_flag(text: str):
    """--method: a name, or a JSON mapping of a method with its options."""
    from predsparse.errors import ConfigError

    if not text.lstrip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--method '{text}' is not valid JSON ({exc.msg}); give a name or a JSON mapping") from None


def _resolve(args, spec_file: str | None):
    """The RunSpec of one --spec file (or of the flags alone), flags overriding its values."""
    from predsparse.errors import ConfigError
    from predsparse.spec import RunSpec
    from predsparse.defaults import resolve_spec

    raw = RunSpec.read_raw(spec_file) if spec_file else {}
    raw.update({key: getattr(args, key) for key in _SPEC_FLAGS if getattr(args, key) is not None})
    if args.method is not None:
        raw["method"] = _method_flag(args.method)
    if not spec_file:
        missing = [f"--{k}" for k in ("dataset", "data", "pattern") if k not in raw]
        if missing:
            raise ConfigError(f"without --spec, {', '.join(missing)} must be given")
        raw.setdefault("study", "quick")
        raw.setdefault("run_name", f"{Path(raw['pattern']).stem}-seed{raw.get('seed', 0)}")
    return resolve_spec(raw, where=spec_file or "train flags")


def run(args) -> int:
    from predsparse.errors import ConfigError
    from predsparse.io import check_output_dir

    spec_files, outs = args.spec or [None], args.out or []
    if len(spec_files) > 1 and len(outs) != len(spec_files):
        raise ConfigError(f"{len(spec_files)} --spec files need as many --out folders, one each (got {len(outs)})")
    if len(spec_files) == 1 and len(outs) > 1:
        raise ConfigError(f"{len(outs)} --out folders for one run; give one --out per --spec")
    specs = [_resolve(args, spec_file) for spec_file in spec_files]
    dirs = [check_output_dir(Path(out) if out else Path("results/runs") / spec.study / spec.run_name)
            for spec, out in zip(specs, outs or [None])]
    if len(set(dirs)) < len(dirs):
        raise ConfigError("two runs were given the same --out folder; each run needs its own")
    import torch

    from predsparse.allocator import keep_freed_memory

    keep_freed_memory()  # steps reuse freed blocks instead of faulting fresh pages in (predsparse.allocator)
    # Denormal numbers flushed to zero on this thread while it trains, as the fused step does on its own
    # (_native.c's flush_denormals): a Morse run on the autograd path took 78.6 s with them and 65.7 s
    # without (benchmarks/study.py --path autograd, 30 epochs), its smallest values becoming denormal as it
    # trains. Set back to torch's default after, for a caller that calls the CLI in-process (tests).
    torch.set_flush_denormal(True)
    try:
        if len(specs) == 1:
            from predsparse.train import train_run

            results = [train_run(specs[0], dirs[0], track=not args.no_mlflow)]
        else:
            from predsparse.train_group import train_group

            results = train_group(specs, dirs, track=not args.no_mlflow)
    finally:
        torch.set_flush_denormal(False)
    for spec, out, metrics in zip(specs, dirs, results):
        if args.json:
            json.dump(metrics, sys.stdout, indent=2, sort_keys=True)
            sys.stdout.write("\n")
        else:
            sys.stdout.write(f"{spec.run_name}: best val acc {metrics['best_val_acc']:.4f} (epoch "
                             f"{metrics['best_val_epoch']}), test acc {metrics['test_acc']:.4f}; results in {out}\n")
    return 0
