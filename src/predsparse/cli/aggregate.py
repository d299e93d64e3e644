"""`predsparse aggregate RUNS`: every finished run folder -> results/summary.csv and results/history.csv.

One summary row per finished run, exactly once (two folders holding the same run id are an error), with
exactly the columns of `predsparse.summary`; history rows in the same order, one per run per epoch. Rows
are sorted by (study, run_name), numbers written in full precision: the same folders give the same bytes,
so rerunning is idempotent. Failed and unfinished runs are left out and listed on stderr.
"""

from __future__ import annotations

import json
import sys

HELP = "collect every finished run under RUNS into summary.csv (one row per run) and history.csv (one per epoch)"


def add_arguments(parser):
    parser.add_argument("runs", help="folder of run folders, searched recursively, e.g. results/runs")
    parser.add_argument("-o", "--output", default="results/summary.csv", help="summary CSV (default: %(default)s)")
    parser.add_argument("--history", default="results/history.csv", help="history CSV (default: %(default)s)")
    parser.add_argument("--scatter", metavar="DIR", help="folder of the pipeline's pattern scatter files "
                        "(<pattern id>.json): a fixed pattern's scatter is taken from there, in the convention "
                        "its study chose (all neurons, or real neurons only for padded layers)")


def summary_row(metrics: dict, scatter_dir=None) -> dict:
    """The summary.csv row (predsparse.summary.SUMMARY_COLUMNS) of a finished run's metrics.json.

    With `scatter_dir`, a run whose connections were fixed before training takes its pattern's scatter
    file from there (the study's convention); a run whose method changed them keeps the trained pattern's.
    """
    from pathlib import Path

    from predsparse.catalog import fixed_method
    from predsparse.methods.options import options_json
    from predsparse.summary import join_list

    spec, pattern, scatter = metrics["spec"], metrics["pattern"], metrics["scatter"]
    method_spec = spec.get("method") or {}
    pattern_scatter = Path(scatter_dir) / f"{pattern['id']}.json" if scatter_dir else None
    if not method_spec and pattern_scatter is not None and pattern_scatter.is_file():
        from predsparse import rundir

        scatter = rundir.read_json(pattern_scatter)
    method = method_spec.get("name") or spec["extra"].get("method") or fixed_method(pattern["kind"])
    return {
        "study": spec["study"],
        "run_id": metrics["run_id"],
        "run_name": spec["run_name"],
        "method": method,
        "method_options": options_json(method_spec),
        "allocation": spec["extra"].get("allocation", ""),
        "dataset": spec["dataset"],
        "variant": spec["variant"] or "",
        "model": spec["model"],
        "net": join_list(pattern["net"]),
        "fanouts": join_list(pattern["fanouts"]),
        "kind": pattern["kind"],
        "pattern_options": json.dumps(pattern["options"], sort_keys=True, separators=(",", ":")),
        "junction_densities": join_list(pattern["junction_densities"]),
        "overall_density": pattern["overall_density"],
        "weights": pattern["weights"],
        "dense_weights": pattern["dense_weights"],
        "conv_params": metrics["model"]["params"]["conv"],
        "conv_ops": metrics["model"]["macs"]["conv"],
        "scatter_vector": join_list(scatter["vector"]),
        "scatter": scatter["scatter"],
        "scatter_neurons": "real" if scatter.get("real_neurons") else "all",
        "seed": spec["seed"],
        "epochs": metrics["epochs"],
        "best_val_acc": metrics["best_val_acc"],
        "best_val_epoch": metrics["best_val_epoch"],
        "val_acc_epoch1": metrics["val_acc_epoch1"],
        "val_acc_epoch5": "" if metrics["val_acc_epoch5"] is None else metrics["val_acc_epoch5"],
        "test_acc": metrics["test_acc"],
        "wall_time_s": metrics["wall_time_s"],
        "device": metrics["device"],
        **{key: spec.get(key, "") for key in ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "init")},
    }


def collect(runs: str, scatter_dir=None) -> tuple[list[dict], list[dict], list[str]]:
    """(summary rows, history rows, notes on left-out folders) of every run folder under `runs`."""
    from predsparse import rundir
    from predsparse.errors import ConfigError

    finished, notes, where = [], [], {}
    for run_dir in rundir.run_dirs(runs):
        outcome = rundir.outcome(run_dir)
        if outcome is None or outcome["status"] != "finished":
            notes.append(f"{run_dir} ({'unfinished' if outcome is None else 'failed: ' + outcome.get('error', '')})")
            continue
        if outcome["run_id"] in where:
            raise ConfigError(f"run id {outcome['run_id']} is in two folders, {where[outcome['run_id']]} and "
                              f"{run_dir}; keep one of them")
        where[outcome["run_id"]] = run_dir
        try:
            row = summary_row(outcome, scatter_dir)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            raise ConfigError(f"{run_dir / rundir.METRICS} lacks a figure of a finished run or has it malformed "
                              f"({type(exc).__name__}: {exc}); rerun the run or move the folder away") from None
        finished.append((row, run_dir))
    finished.sort(key=lambda item: (item[0]["study"], item[0]["run_name"]))
    history = [row for _, run_dir in finished for row in rundir.read_history(run_dir / rundir.HISTORY)]
    return [row for row, _ in finished], history, notes


def run(args) -> int:
    from predsparse.io import atomic_write_csv, check_output_file
    from predsparse.summary import HISTORY_COLUMNS, SUMMARY_COLUMNS

    check_output_file(args.output)
    check_output_file(args.history)
    summary, history, notes = collect(args.runs, args.scatter)
    atomic_write_csv(args.output, SUMMARY_COLUMNS, summary)
    atomic_write_csv(args.history, HISTORY_COLUMNS, history)
    for note in notes:
        sys.stderr.write(f"predsparse aggregate: left out {note}\n")
    sys.stdout.write(f"{len(summary)} run(s) -> {args.output}, {len(history)} epoch row(s) -> {args.history}\n")
    return 0
