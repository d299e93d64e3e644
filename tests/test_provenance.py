"""One provenance for every result: the pipeline's run_info.json and a run's metrics.json agree."""

import json
import subprocess
from importlib import metadata
from pathlib import Path

from predsparse.pipeline.plan import load_plan
from predsparse.provenance import PACKAGES, environment, git_commit, versions

REPO = Path(__file__).resolve().parents[1]


def test_versions_name_every_package_and_mark_the_absent_ones():
    found = versions()
    assert set(found) == {"python", *PACKAGES}
    assert found["torch"] == metadata.version("torch")
    assert all(v == "absent" or v[0].isdigit() for v in found.values())


def test_git_commit_is_the_checkout_head():
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_commit().removesuffix("+dirty") == head


def test_run_info_records_the_shared_environment(tmp_path):
    plan = load_plan(REPO / "config/smoke.yaml")
    plan.write_run_info(str(tmp_path / "run_info.json"))
    info = json.loads((tmp_path / "run_info.json").read_text())
    expected = environment()
    assert info["versions"] == expected["versions"] and info["git_commit"] == expected["git_commit"]
