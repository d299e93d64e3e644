"""`predsparse train`: one training run from a run spec (JSON/YAML) and/or flags."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HELP = "train one run (a RunSpec file and/or flags); resumes a killed run from its checkpoint"

# flag dest -> RunSpec key, for the flags that set spec values
_SPEC_FLAGS = ("study", "run_name", "dataset", "data", "pattern", "model", "variant", "seed", "optimizer", "lr",
               "momentum", "weight_decay", "batch_size", "epochs", "init", "device", "tracking_uri")


def add_arguments(parser):
    parser.add_argument("--spec", metavar="FILE", help="run spec, .json or .yaml (keys of predsparse.spec.RunSpec); "
                        "flags below override its values")
    parser.add_argument("--out", metavar="DIR", help="run folder (default: results/runs/STUDY/RUN_NAME)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow (results are written all the same)")
    parser.add_argument("--json", action="store_true", help="print the run's metrics.json on stdout")
    quick = parser.add_argument_group(
        "run settings (without --spec: --dataset, --data and --pattern are required; optimiser, lr, batch size, "
        "epochs, L2 and init default to the table of predsparse.defaults for the dataset and model)")
    quick.add_argument("--dataset", help="morse | mnist | cifar10 | cifar100")
    quick.add_argument("--data", metavar="NPZ", help="dataset file from `predsparse data`")
    quick.add_argument("--pattern", metavar="NPZ", help="pattern file from `predsparse pattern`")
    quick.add_argument("--model", help="mlp (default) | mnist_conv | cifar_conv")
    quick.add_argument("--variant", help="Morse variant, recorded with the run")
    quick.add_argument("--study", help="study name (default: quick)")
    quick.add_argument("--run-name", help="readable run name (default: pattern file name and seed)")
    quick.add_argument("--seed", type=int)
    quick.add_argument("--optimizer", help="adam | sgd")
    quick.add_argument("--lr", type=float)
    quick.add_argument("--momentum", type=float, help="SGD momentum")
    quick.add_argument("--weight-decay", type=float, help="L2 on weights (existing connections only)")
    quick.add_argument("--batch-size", type=int)
    quick.add_argument("--epochs", type=int)
    quick.add_argument("--init", help="CL weight initialisation: uniform (ours, U(+-1/sqrt(fi))) | he_dense (the "
                       "authors': N(0, 2/N_i) over the dense fan-in, existing connections kept)")
    quick.add_argument("--device", help="cpu | cuda | auto")
    quick.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI or sqlite:///results/mlflow.db)")
    quick.add_argument("--method", help="how the connections come about: predefined (default: the pattern's, fixed) | "
                       "prune | set | rigl, or a JSON mapping with options, e.g. "
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


def run(args) -> int:
    from predsparse.errors import ConfigError
    from predsparse.spec import RunSpec
    from predsparse.defaults import resolve_spec
    from predsparse.io import check_output_dir
    from predsparse.train import train_run

    raw = RunSpec.read_raw(args.spec) if args.spec else {}
    raw.update({key: getattr(args, key) for key in _SPEC_FLAGS if getattr(args, key) is not None})
    if args.method is not None:
        raw["method"] = _method_flag(args.method)
    if not args.spec:
        missing = [f"--{k}" for k in ("dataset", "data", "pattern") if k not in raw]
        if missing:
            raise ConfigError(f"without --spec, {', '.join(missing)} must be given")
        raw.setdefault("study", "quick")
        raw.setdefault("run_name", f"{Path(raw['pattern']).stem}-seed{raw.get('seed', 0)}")
    spec = resolve_spec(raw, where=args.spec or "train flags")
    out = check_output_dir(Path(args.out) if args.out else Path("results/runs") / spec.study / spec.run_name)
    metrics = train_run(spec, out, track=not args.no_mlflow)
    if args.json:
        json.dump(metrics, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(f"{spec.run_name}: best val acc {metrics['best_val_acc']:.4f} (epoch "
                         f"{metrics['best_val_epoch']}), test acc {metrics['test_acc']:.4f}; results in {out}\n")
    return 0
