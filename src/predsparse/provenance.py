"""What ran a result: the commit of this checkout and the versions of the software that matter.

One place for both, read by training (metrics.json), the pipeline (run_info.json) and MLflow's source
tags. Torch-free: it asks package metadata, never imports the packages.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

# The packages whose versions a result records (an absent one is recorded as "absent").
PACKAGES = ("predsparse", "torch", "numpy", "triton", "mlflow", "snakemake")


def git_commit() -> str:
    """The commit of the checkout this package runs from, "+dirty" appended when tracked files are
    modified; "unknown" outside git."""
    where = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def versions() -> dict[str, str]:
    """Python's version and each of PACKAGES' ("absent" where not installed)."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    return found


def environment() -> dict:
    """versions, host and git commit together (the pipeline's run_info.json)."""
    return {"versions": versions(), "host": platform.node(), "git_commit": git_commit()}
