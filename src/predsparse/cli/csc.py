"""`predsparse csc`: CSC layers (reconstruction from the abstract): weight counts and bottom-up training.

    predsparse csc info --net 784,300,100,10 --compression 10
    predsparse csc info --net 1024,1024 --radices 32,32 --json
    predsparse csc info --net 64,1024,64 --layers 3
    predsparse csc grow --spec dense.yaml --compression 10 --target 0.02 [--dense-acc 0.98]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from predsparse.cli import parse_int_list

HELP = "CSC layers (reconstruction from the abstract): radices and weight counts (info), bottom-up training (grow)"

_INFO_HELP = (
    "print the CSC net of a dense net: per CSC layer its radices, support-layer widths and weight counts. "
    "Choose the radices by --compression (the largest configuration of the growth ladder within "
    "dense_weights / x weights), --radices (given), or --layers (the sparsest fully connected net with L "
    "support layers per CSC layer). Weights exclude padding neurons; stored weights include them."
)
_GROW_HELP = (
    "bottom-up training: start from the sparsest fully connected CSC net within the compression budget, "
    "train it, and grow it (every radix +1, else one more support layer per CSC layer) until its best "
    "validation accuracy is within --target of dense or the budget is spent. Every step is a training run "
    "(predsparse train: run folder, MLflow run, summary row) named <run_name>-csc<x>x-r<radices>; the "
    "steps are written to <out>/<run_name>-csc<x>x-growth.csv. A rerun resumes: finished steps are not "
    "trained again."
)


def add_arguments(parser):
    sub = parser.add_subparsers(dest="csc_command", metavar="COMMAND", parser_class=type(parser))
    sub.required = True

    info = sub.add_parser("info", help="radices and weight counts of a CSC net", description=_INFO_HELP)
    info.add_argument("--net", type=parse_int_list, required=True, metavar="N1,N2,...",
                      help="layer sizes of the dense net, e.g. 784,300,100,10; every junction becomes a CSC layer")
    choice = info.add_mutually_exclusive_group(required=True)
    choice.add_argument("--compression", type=float, metavar="X", help="compression target x >= 1 (dense = 1)")
    choice.add_argument("--radices", metavar="R", help="radices per CSC layer, layers separated by '/', e.g. 3,10,10/2,10,5/1,10")
    choice.add_argument("--layers", type=int, metavar="L", help="support layers per CSC layer (sparsest fully connected)")
    info.add_argument("--min-layers", type=int, default=2, metavar="L",
                      help="with --compression: fewest support layers to start from (default 2)")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(_csc=_info)

    grow = sub.add_parser("grow", help="bottom-up training to an accuracy target within a compression", description=_GROW_HELP)
    grow.add_argument("--spec", required=True, metavar="FILE",
                      help="run spec (.json/.yaml) of the DENSE run: dataset, data, hyper-parameters; its pattern "
                           "gives the net (e.g. 784,300,100,10)")
    grow.add_argument("--compression", type=float, required=True, metavar="X", help="compression budget x >= 1")
    grow.add_argument("--target", type=float, default=0.02, metavar="F",
                      help="accepted accuracy loss vs dense, a fraction (default 0.02 = 2 points, the abstract's)")
    grow.add_argument("--dense-acc", type=float, metavar="F",
                      help="dense best validation accuracy (a fraction); without it the dense spec is trained first")
    grow.add_argument("--min-layers", type=int, default=2, metavar="L", help="fewest support layers to start from (default 2)")
    grow.add_argument("--max-steps", type=int, default=20, metavar="K", help="most CSC runs to train (default 20)")
    grow.add_argument("--out", metavar="DIR", help="folder of the runs (default results/runs/STUDY)")
    grow.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow (results are written all the same)")
    grow.add_argument("--json", action="store_true", help="print the growth rows and stop reason as JSON")
    grow.set_defaults(_csc=_grow)


def run(args) -> int:
    return args._csc(args)


def _describe(config) -> dict:
    from predsparse.patterns.csc import RECONSTRUCTION, RULE

    layers = [
        {
            "n_in": layer.n_in, "n_out": layer.n_out, "cyclic_width": layer.m, "radices": list(layer.radices),
            "support_widths": list(layer.widths), "weights": layer.weights, "stored_weights": layer.stored_weights,
            "dense_weights": layer.dense_weights, "compression": layer.dense_weights / layer.weights,
        }
        for layer in config.layers
    ]
    return {
        "net": list(config.net), "radices": config.label, "layers": layers, "weights": config.weights,
        "stored_weights": sum(layer.stored_weights for layer in config.layers),
        "dense_weights": config.dense_weights, "compression": config.compression,
        "rule": RULE, "construction": RECONSTRUCTION,
    }


def _check_layers(net, flag: str, layers: int) -> None:
    """Refuse a support-layer count no CSC layer of `net` can have: every radix is >= 2 and their product
    need not pass the cyclic width M = min(N_in, N_out), so a layer has at most floor(log2 M) of them."""
    from predsparse.errors import PatternError
    from predsparse.patterns import check_net

    net, _ = check_net(net)
    most = max(max(1, math.floor(math.log2(min(a, b)))) for a, b in zip(net[:-1], net[1:]))
    if not 1 <= layers <= most:
        raise PatternError(f"{flag} {layers}: the CSC layers of net {','.join(map(str, net))} take 1 to {most} support "
                           f"layers (radices >= 2, product at least the cyclic width M = min(N_in, N_out))")


def _info(args) -> int:
    from predsparse.errors import PatternError
    from predsparse.patterns.csc import CSCConfig, budget_weights, csc_plan, parse_radices, sparsest_config

    net = tuple(args.net)
    if args.compression is not None:
        _check_layers(net, "--min-layers", args.min_layers)
        config = csc_plan(net, args.compression, args.min_layers)
    elif args.radices is not None:
        config = CSCConfig(net, parse_radices(args.radices))
    else:
        _check_layers(net, "--layers", args.layers)
        config = sparsest_config(net, args.layers)
    info = _describe(config)
    if args.compression is not None:
        info["budget"] = budget_weights(net, args.compression)
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    out = [f"CSC net {'-'.join(map(str, net))} ({info['construction']})", f"rule: {info['rule']}"]
    if "budget" in info:
        out.append(f"budget: {info['budget']} weights (compression {args.compression:g}x)")
    header = ("layer", "N_in->N_out", "M", "radices", "support widths", "weights", "stored", "dense", "compression")
    rows = [
        (str(i), f"{l['n_in']}->{l['n_out']}", str(l["cyclic_width"]), ",".join(map(str, l["radices"])),
         "-".join(map(str, l["support_widths"])), str(l["weights"]), str(l["stored_weights"]),
         str(l["dense_weights"]), f"{l['compression']:.2f}x")
        for i, l in enumerate(info["layers"], start=1)
    ]
    rows.append(("total", "", "", "", "", str(info["weights"]), str(info["stored_weights"]),
                 str(info["dense_weights"]), f"{info['compression']:.2f}x"))
    widths = [max(len(r[c]) for r in (header, *rows)) for c in range(len(header))]
    for row in (header, *rows):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    out.append(f"--radices {info['radices']}")
    print("\n".join(out))
    return 0


def _grow(args) -> int:
    from predsparse.methods.csc_growth import grow, run_trainer, write_growth
    from predsparse.errors import ConfigError
    from predsparse.patterns import load_pattern
    from predsparse.spec import RunSpec
    from predsparse.defaults import resolve_spec
    from predsparse.train import train_run

    base = resolve_spec(RunSpec.read_raw(args.spec), where=args.spec)
    pattern = load_pattern(base.pattern)
    if pattern.kind == "csc":
        raise ConfigError(f"{args.spec}: --spec must be the dense run's spec, but its pattern {base.pattern} is a CSC pattern")
    out = Path(args.out) if args.out else Path("results/runs") / base.study
    dense_acc = args.dense_acc
    if dense_acc is None:
        dense_acc = float(train_run(base, out / base.run_name, track=not args.no_mlflow)["best_val_acc"])
    table = out / f"{base.run_name}-csc{args.compression:g}x-growth.csv"
    growth = grow(
        pattern.net, args.compression, args.target, dense_acc,
        run_trainer(base, out, args.compression, track=not args.no_mlflow),
        min_layers=args.min_layers, max_steps=args.max_steps, on_step=lambda g: write_growth(g, table),
    )
    if args.json:
        json.dump({"rows": growth.rows, "stop_reason": growth.stop_reason, "table": str(table)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for row in growth.rows:
        print(f"step {row['step']} {row['action']:<13} radices {row['radices']:<24} weights {row['weights']:>8} "
              f"({row['compression']:.2f}x) acc {row['accuracy']:.4f} gap {row['gap']:+.4f}")
    print(f"stopped: {growth.stop_reason} (dense {dense_acc:.4f}, target {args.target:g}); table {table}")
    return 0
