"""`predsparse mlflow-sync RESULTS`: load every ended run missing from MLflow from its run folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HELP = "log into MLflow every finished or failed run under RESULTS that MLflow lacks (idempotent, keyed by run id)"


def add_arguments(parser):
    parser.add_argument("results", help="results folder (searched recursively for run folders), e.g. results/")
    parser.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else "
                        "sqlite:///RESULTS/mlflow.db)")


def run(args) -> int:
    from predsparse.tracking import sync

    uri = (args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
           or f"sqlite:///{Path(args.results).as_posix().rstrip('/')}/mlflow.db")
    counts = sync(args.results, uri)
    sys.stdout.write(f"published {counts['published']} run(s), {counts['skipped']} already complete in MLflow, "
                     f"{counts['unfinished']} unfinished folder(s) left alone\n")
    return 0
