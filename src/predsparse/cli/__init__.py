"""The `predsparse` command line: one module per verb under `predsparse.cli`.

Each verb module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`, and keeps
heavy imports (torch, pandas, mlflow) inside `run`, so `predsparse --help` stays instant. A verb is
registered by adding it to `VERBS`.

Any `PredsparseError` becomes one line on stderr and exit status 2; so does an argument error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from predsparse.errors import PredsparseError

# verb -> module under predsparse.cli
VERBS = {
    "pattern": "pattern",
    "scatter": "scatter",
    "density": "density",
    "data": "data",
    "train": "train",
    "mlflow-sync": "mlflow_sync",
    "aggregate": "aggregate",
    "report": "report",
    "csc": "csc",
    "plan": "plan",
    "counts": "counts",
}


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, exit status 2."""

    def error(self, message):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def parse_int_list(text: str) -> list[int]:
    """'64,1024,64' -> [64, 1024, 64]; an argparse `type` with a one-line error."""
    try:
        values = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers (e.g. 64,1024,64)")
    if not values:
        raise argparse.ArgumentTypeError("an empty list was given; expected e.g. 64,1024,64")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="predsparse",
        description="Pre-defined sparse neural networks: patterns, scatter, sparse layers, datasets, training and reports.",
    )
    from predsparse import __version__

    parser.add_argument("--version", action="version", version=f"predsparse {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=OneLineParser)
    sub.required = True
    for verb, module_name in VERBS.items():
        module = importlib.import_module(f"predsparse.cli.{module_name}")
        verb_parser = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        module.add_arguments(verb_parser)
        verb_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except PredsparseError as exc:
        sys.stderr.write(f"predsparse {args.verb}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"predsparse {args.verb}: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `predsparse plan config.yaml | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
