"""`predsparse mlflow-sync RESULTS`: load every ended run missing from MLflow from its run folder."""

from __future__ import annotations

import sys

HELP = "log into MLflow every finished or failed run under RESULTS that MLflow lacks (idempotent, keyed by run id)"


def add_arguments(parser):
    parser.add_argument("results", help="results folder (searched recursively for run folders), e.g. results/")
    parser.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else "
                        "sqlite:///RESULTS/mlflow.db)")


def run(args) -> int:
    from predsparse.tracking import resolve_uri, sync

    counts = sync(args.results, resolve_uri(args.tracking_uri, args.results))
    sys.stdout.write(f"published {counts['published']} run(s), {counts['skipped']} already complete in MLflow, "
                     f"{counts['unfinished']} unfinished folder(s) left alone\n")
    return 0
