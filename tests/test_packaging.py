"""Install metadata: pyproject.toml and environment.yml list the same dependencies with the same pins;
the library installs without the pipeline; the lock file pins what pyproject allows."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _requirement(text: str) -> str:
    """'triton>=3.0,<4; platform_system == "Linux"' -> 'triton>=3.0,<4' (markers apart)."""
    return text.split(";")[0].strip().replace(" ", "")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_pyproject_and_environment_yml_pin_the_same_packages():
    project = _pyproject()
    listed = {_requirement(r) for r in project["dependencies"]}
    listed |= {_requirement(r) for extra in project["optional-dependencies"].values() for r in extra
               if not r.startswith("predsparse[")}
    conda = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    pip = next(d["pip"] for d in conda if isinstance(d, dict))
    assert {_requirement(r) for r in pip if r != "-e ."} == listed


def test_the_library_needs_neither_snakemake_nor_triton():
    project = _pyproject()
    core = " ".join(project["dependencies"])
    assert "snakemake" not in core and "triton" not in core
    extras = project["optional-dependencies"]
    assert any(r.startswith("snakemake>=") for r in extras["pipeline"])
    assert any("snakemake-executor-plugin-slurm" in r for r in extras["slurm"])
    assert all("platform_system" in r for r in extras["gpu"])  # Triton ships Linux wheels only
    assert project["license"] == "MIT" and (REPO / "LICENSE").read_text().startswith("MIT License")


def test_lock_file_pins_every_package_within_pyproject_ranges():
    from packaging.requirements import Requirement
    from packaging.version import Version

    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith(("#", "-")):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = Version(version)
    project = _pyproject()
    wanted = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra
                                        if not r.startswith("predsparse[")]
    for text in wanted:
        requirement = Requirement(text)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, str(pins[name]))
    assert "predsparse" not in pins  # the project itself is installed from the checkout


def test_citation_cites_the_paper():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    paper = citation["preferred-citation"]
    assert paper["title"] == "Characterizing Sparse Connectivity Patterns in Neural Networks"
    assert [a["family-names"] for a in paper["authors"]] == ["Dey", "Huang", "Beerel", "Chugg"]


def test_library_imports_and_runs_without_the_pipeline_and_gpu_extras():
    """What `pip install predsparse` (no extras) gives: the layers, patterns and scatter work on the CPU."""
    import subprocess
    import sys

    code = """
import sys
for name in ("snakemake", "snakemake_executor_plugin_slurm", "triton"):
    sys.modules[name] = None  # import name now raises ImportError, as without the extras
import torch
from predsparse.nn import SparseLinear
from predsparse.patterns import generate_pattern
from predsparse.scatter import scatter_vector
pattern = generate_pattern([64, 128, 16], [32, 4], "random", seed=0)
layer = SparseLinear.from_pattern(pattern, 0)
assert layer(torch.randn(5, 64)).shape == (5, 128)
print(scatter_vector(pattern).to_dict()["scatter"])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert 0 < float(done.stdout.strip()) <= 1
