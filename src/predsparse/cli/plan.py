"""`predsparse plan CONFIG`: check a pipeline config and print its run table."""

from __future__ import annotations

import json
import sys

HELP = "check a pipeline config (schema and semantics) and print its run table, one row per training run"

COLUMNS = ("study", "run", "dataset", "variant", "model", "net", "fanouts", "kind", "method", "pattern_id", "seed",
           "epochs")


def add_arguments(parser):
    parser.add_argument("config", help="pipeline config YAML, e.g. config/morse.yaml")
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list (every column)")
    parser.add_argument("--study", action="append", metavar="NAME", help="only this study (repeatable)")


def _cell(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def run(args) -> int:
    from predsparse.errors import ConfigError
    from predsparse.pipeline import load_plan

    plan = load_plan(args.config)
    rows = plan.table()
    if args.study:
        unknown = sorted(set(args.study) - {r["study"] for r in rows})
        if unknown:
            raise ConfigError(f"{args.config}: no study {unknown}; studies: {sorted(plan.config['studies'])}")
        rows = [r for r in rows if r["study"] in args.study]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    cells = [COLUMNS] + [tuple(_cell(r[c]) for c in COLUMNS) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    for row in cells:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
    studies = len({r["study"] for r in rows})
    patterns = len({r["pattern_id"] for r in rows})
    sys.stdout.write(f"{len(rows)} runs in {studies} studies, {patterns} pattern files\n")
    return 0
