"""Hardening (issue 15): no shell injection, no tracebacks, downloads with deadlines, bounded sizes.

One regression test per case found: each bad input ends as one line on stderr with exit status 2 (or as
correct behaviour), and nothing already on disk is lost or changed.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cliutil import assert_one_line_error, cli
from conftest import LoopbackServer, make_spec

from predsparse import rundir
from predsparse.cli import pattern as pattern_cli
from predsparse.data import download
from predsparse.data.download import RemoteFile
from predsparse.errors import ConfigError, DatasetError
from predsparse.io import load_npz, save_npz
from predsparse.patterns import generate_pattern, load_pattern
from predsparse.pipeline.plan import Plan
from predsparse.train import train_run

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
HOSTILE = "r;touch PWNED;'q\" x"  # a ';', a quote of each kind and a space


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (links not followed) -> the sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def small_config(**top) -> dict:
    base = {
        "results_dir": "out",
        "data": {"morse": {"variant": "baseline", "per_class": [10, 2, 2], "seed": 0}},
        "training": {"optimizer": "sgd", "lr": 0.05, "batch_size": 64, "epochs": 1},
        "studies": {"s": {"dataset": "morse", "model": "mlp", "net": [64, 1024, 64],
                          "patterns": [{"kind": "random", "fanouts": [128, 8]}]}},
    }
    return {**base, **top}


def with_group(**group) -> dict:
    cfg = small_config()
    cfg["studies"]["s"]["patterns"] = [{"kind": "random", "fanouts": [128, 8], **group}]
    return cfg


def config_error(cfg: dict) -> str:
    with pytest.raises(ConfigError) as info:
        Plan(cfg, "test.yaml")
    message = str(info.value)
    assert "\n" not in message, message
    return message


def snakemake(workdir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREDSPARSE_DATA")}
    return subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "-d", str(workdir), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


# ------------------------------------------------------------------------------ 1. shell injection
_SHELL = re.compile(r"^\s+shell:\s*\n((?:[ \t]+\"(?:[^\"\\]|\\.)*\"[ \t]*\n)+)", re.M)
_FIELD = re.compile(r"\{(\w+)(?:\.(\w+))?(?::\w+)?\}")


def rule_shell_commands() -> dict[str, str]:
    """rules file:index -> the shell string of every rule in workflow/rules (string pieces joined)."""
    found = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for i, block in enumerate(_SHELL.findall(smk.read_text())):
            found[f"{smk.stem}:{i}"] = "".join(ast.literal_eval(line.strip()) for line in block.strip().splitlines())
    return found


def test_every_rule_shell_command_passes_hostile_paths_as_single_arguments(tmp_path):
    """A path with ';', quotes and a space, formatted by Snakemake's own formatter into every rule's shell
    command, arrives as one argument and runs nothing else."""
    from snakemake.iocontainers import Namedlist
    from snakemake.utils import format as snakemake_format

    commands = rule_shell_commands()
    assert len(commands) >= 8, commands  # data (2), pattern, scatter, train, aggregate, mlflow_sync, report
    stub = tmp_path / "bin" / "predsparse"
    stub.parent.mkdir()
    stub.write_text("#!/usr/bin/env python3\nimport json, os, sys\n"
                    "open(os.environ['ARGV_LOG'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    stub.chmod(0o755)
    (tmp_path / HOSTILE).mkdir()
    for name, command in commands.items():
        fields: dict[str, dict[str, str]] = {}
        for obj, attr in _FIELD.findall(command):
            value = ("--seed 0" if attr == "args" else f"sqlite:///{HOSTILE}/mlflow.db" if attr == "uri"
                     else f"{HOSTILE}/{obj}{'.' + attr if attr else ''}")
            fields.setdefault(obj, {})[attr] = value
        namespace = {obj: Namedlist(toclone=[attrs[""]]) if "" in attrs else Namedlist(fromdict=attrs)
                     for obj, attrs in fields.items()}
        shell = snakemake_format(command, **namespace)
        argv_log = tmp_path / f"{name}.argv"
        result = subprocess.run(["bash", "-c", shell], cwd=tmp_path, capture_output=True, text=True,
                                env={**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}",
                                     "ARGV_LOG": str(argv_log)})
        assert result.returncode == 0, (name, shell, result.stderr)
        assert not list(tmp_path.rglob("PWNED")), (name, shell)
        argv = json.loads(argv_log.read_text())
        paths = [v for attrs in fields.values() for a, v in attrs.items() if a != "args" and "log" not in v]
        for value in paths:
            assert value in argv, (name, value, argv)  # whole, as one argument
        if "log" in fields:
            assert (tmp_path / fields["log"][""]).is_file(), (name, shell)  # the redirect went to the real path


@pytest.mark.parametrize("key", ["results_dir", "resources_dir"])
@pytest.mark.parametrize("value", ["r;touch PWNED;", "a'b", 'a"b', "a`id`", "$(id)", "a|b", "a&b", "a\nb",
                                   "-rf", "a>b"])
def test_config_paths_with_shell_characters_are_refused(key, value):
    message = config_error(small_config(**{key: value}))
    assert f"key '{key}'" in message and "is not a usable folder path" in message and "letters, digits" in message


def test_snakemake_refuses_a_hostile_results_dir_in_one_line_and_runs_nothing(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(small_config(results_dir="r;touch PWNED;")))
    result = snakemake(tmp_path, "--cores", "1", "--configfile", str(cfg))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("Using workflow specific profile")]
    assert len(lines) == 1 and "key 'results_dir'" in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".snakemake") == ["bad.yaml"]


def test_a_results_dir_with_a_space_runs_a_rule(tmp_path):
    """A real rule (pattern) run by Snakemake into a results folder whose name has a space."""
    cfg = small_config(results_dir="my results")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    (pattern_id,) = Plan(cfg).patterns
    target = f"my results/patterns/{pattern_id}.npz"
    result = snakemake(tmp_path, target, "--cores", "1", "--configfile", str(tmp_path / "c.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert load_pattern(tmp_path / target).fanouts == (128, 8)
    assert (tmp_path / "my results" / "logs" / "patterns" / f"{pattern_id}.log").is_file()
    assert not (tmp_path / "my").exists()


# ------------------------------------------------------------------------------ 3. downloads
class _Misbehaving(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = bytes(range(256)) * 2  # 512 bytes

    def log_message(self, *args):
        pass

    def do_GET(self):
        try:
            getattr(self, "_" + self.path.strip("/"))()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _drip(self):  # every byte within any timeout, the whole file in about 25 s
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        for i in range(len(self.body)):
            self.wfile.write(self.body[i:i + 1])
            self.wfile.flush()
            time.sleep(0.05)

    def _endless(self):  # no Content-Length, never ends
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        block = b"\0" * 65536
        for _ in range(100_000):  # 6.5 GB at most
            self.wfile.write(block)
        self.close_connection = True

    def _huge(self):  # announces a gigabyte
        self.send_response(200)
        self.send_header("Content-Length", str(10**9))
        self.end_headers()
        self.wfile.write(b"\0" * 65536)

    def _ok(self):  # 3 MiB, a little at a time
        data = _payload()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        for start in range(0, len(data), 1 << 18):
            self.wfile.write(data[start:start + (1 << 18)])
            self.wfile.flush()
            time.sleep(0.02)


def _payload() -> bytes:
    return np.random.default_rng(1).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()


@pytest.fixture
def bad_server():
    srv = LoopbackServer(_Misbehaving)
    yield srv.base_url
    srv.close()


def test_a_dripping_server_ends_at_the_deadline(bad_server, tmp_path):
    body = _Misbehaving.body
    remote = RemoteFile("a.bin", hashlib.md5(body).hexdigest(), (f"{bad_server}/drip",), len(body))
    started = time.monotonic()
    with pytest.raises(DatasetError) as info:
        download.fetch(remote, tmp_path, timeout=3.0, retries=0, backoff=0.0, deadline=1.5)
    elapsed = time.monotonic() - started
    assert elapsed < 6, elapsed  # the file would take ~25 s
    message = str(info.value)
    assert "deadline of 1.5 s" in message and "\n" not in message and "kept in" in message
    assert not (tmp_path / "a.bin").exists()
    assert 0 < (tmp_path / "a.bin.part").stat().st_size < len(body)  # kept, to resume


def test_an_endless_stream_stops_at_the_known_size(bad_server, tmp_path):
    remote = RemoteFile("a.bin", "0" * 32, (f"{bad_server}/endless",), 200_000)
    started = time.monotonic()
    with pytest.raises(DatasetError) as info:
        download.fetch(remote, tmp_path, timeout=5.0, retries=0, backoff=0.0)
    assert time.monotonic() - started < 10
    assert "sent more than the 200000 bytes" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == []  # no .part


def test_a_server_announcing_more_than_the_file_is_refused_before_reading(bad_server, tmp_path):
    remote = RemoteFile("a.bin", "0" * 32, (f"{bad_server}/huge",), 200_000)
    with pytest.raises(DatasetError) as info:
        download.fetch(remote, tmp_path, timeout=5.0, retries=0, backoff=0.0)
    assert "announces 1000000000 bytes, more than the 200000" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == []


def test_download_shows_progress_on_a_terminal(bad_server, tmp_path, monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(download.sys, "stderr", terminal)
    data = _payload()
    remote = RemoteFile("a.bin", hashlib.md5(data).hexdigest(), (f"{bad_server}/ok",), len(data))
    assert download.fetch(remote, tmp_path, timeout=5.0, retries=0, backoff=0.0).read_bytes() == data
    shown = terminal.getvalue()
    assert re.search(r"a\.bin: [0-9.]+ of 3\.0 MiB \(\d+%\), \d+ KiB/s, \d+ s left", shown), shown
    assert shown.endswith("\n")


def test_data_cli_refuses_a_bad_deadline(capsys, tmp_path):
    code, _, err = cli(capsys, "data", "mnist", "--root", str(tmp_path), "--deadline", "0", "-o", str(tmp_path / "m.npz"))
    assert_one_line_error(code, err, "--deadline must be > 0")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ 4. one line, not a traceback
@pytest.fixture
def area(tmp_path):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("keep")
    return tmp_path


PATTERN = ["pattern", "--net", "64,128,64", "--fanouts", "16,8"]


@pytest.mark.parametrize("argv, needle", [
    (PATTERN + ["-o", "{d}/adir"], "adir is a directory"),
    (PATTERN + ["-o", "{d}/afile/x.npz"], "afile is a file, so no folder can be made under it"),
    (PATTERN + ["-o", "{d}/" + "x" * 300 + ".npz"], "is 304 bytes long; a file or folder name holds at most 255"),
    (PATTERN + ["-o", "/proc/x"], "/proc/x"),
    (["aggregate", "{d}/adir", "-o", "{d}/adir", "--history", "{d}/h.csv"], "adir is a directory"),
    (["aggregate", "{d}/adir", "-o", "{d}/s.csv", "--history", "{d}/afile/h.csv"], "afile is a file"),
    (["report", "--summary", "{d}/s.csv", "--history", "{d}/h.csv", "--out", "{d}/afile"],
     "output folder {d}/afile is a file, not a directory"),
    (["train", "--dataset", "morse", "--data", "{data}", "--pattern", "{pattern}", "--no-mlflow", "--out", "{d}/afile"],
     "output folder {d}/afile is a file, not a directory"),
    (["train", "--dataset", "morse", "--data", "{data}", "--pattern", "{pattern}", "--no-mlflow",
      "--run-name", "r" * 300], "run_name 'rrrr"),
    (["data", "morse", "--per-class", "2,1,1", "-o", "{d}/adir"], "adir is a directory"),
])
def test_unwritable_outputs_are_one_line(capsys, area, inputs, monkeypatch, argv, needle):
    monkeypatch.chdir(area)
    fill = {"d": str(area), "data": str(inputs["data"]), "pattern": str(inputs["pattern"])}
    before = snapshot(area)
    code, _, err = cli(capsys, *(a.format(**fill) for a in argv))
    assert_one_line_error(code, err, needle.format(**fill))
    assert snapshot(area) == before and (area / "afile").read_text() == "keep"
    assert not (area / "results").exists()


def test_run_name_longer_than_a_folder_name_is_refused_saying_the_limit(capsys, inputs, tmp_path):
    code, _, err = cli(capsys, "train", "--dataset", "morse", "--data", str(inputs["data"]), "--pattern",
                       str(inputs["pattern"]), "--no-mlflow", "--run-name", "r" * 300, "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "is 300 characters long; names hold at most 200")


def _good_arrays(kind="random"):
    fanouts = None if kind == "dense" else [16, 8]
    return generate_pattern([64, 128, 64], fanouts, kind, 0).to_arrays()


PATTERN_CASES = {
    "meta a list": (lambda a: {**a, "meta": np.array("[1, 2]")}, "'meta' is JSON list, expected an object"),
    "meta a number": (lambda a: {**a, "meta": np.array("3")}, "'meta' is JSON int, expected an object"),
    "meta 1-d": (lambda a: {**a, "meta": np.array([str(a["meta"])])}, "'meta' has shape (1,)"),
    "meta bytes": (lambda a: {**a, "meta": np.frombuffer(b"abcd", np.uint8)}, "expected a 0-d string array"),
    "kind a number": (lambda a: {**a, "meta": np.array('{"kind": 3}')}, "meta 'kind' is 3"),
    "shapes too few": (lambda a: {**a, "meta": np.array('{"shapes": [null]}')}, "expected a list of 3 layer shapes"),
    "shapes a number": (lambda a: {**a, "meta": np.array('{"shapes": 5}')}, "meta 'shapes' is 5"),
    "shape of text": (lambda a: {**a, "meta": np.array('{"shapes": ["ab", null, null]}')},
                      "layer 1 shape 'ab' is not a list of positive integers"),
    "net 2-d": (lambda a: {**a, "net": a["net"][None, :]}, "array 'net' has shape (1, 3)"),
    "net 0-d": (lambda a: {**a, "net": np.array(64)}, "array 'net' has shape ()"),
    "net float": (lambda a: {**a, "net": np.array([64.7, 128.2, 64.0])}, "array 'net' has shape (3,) and dtype float64"),
    "fanouts float": (lambda a: {**a, "fanouts": np.array([16.0, 8.0])}, "array 'fanouts' has shape (2,) and dtype float64"),
    "net text": (lambda a: {**a, "net": np.array(["a", "b", "c"])}, "expected a 1-D integer array"),
}


@pytest.mark.parametrize("case", sorted(PATTERN_CASES))
def test_malformed_pattern_files_are_one_line(capsys, tmp_path, case):
    change, needle = PATTERN_CASES[case]
    path = tmp_path / "bad.npz"
    save_npz(path, change(_good_arrays()))
    before = path.read_bytes()
    for argv in (["scatter", str(path)], ["density", "--pattern", str(path)]):
        code, _, err = cli(capsys, *argv)
        assert_one_line_error(code, err, str(path), needle)
    assert path.read_bytes() == before


@pytest.mark.parametrize("change, needle", [
    (lambda a: {**a, "j1_indptr": a["j1_indptr"].astype(float)}, "'j1_indptr' (shape (129,), float64)"),
    (lambda a: {**a, "j1_indptr": a["j1_indptr"][None, :]}, "'j1_indptr' (shape (1, 129), int64)"),
    (lambda a: {**a, "j1": a["j1"].astype(float)}, "'j1' (shape (1024,), float64)"),
])
def test_malformed_unstructured_junctions_are_one_line(capsys, tmp_path, change, needle):
    path = tmp_path / "bad.npz"
    save_npz(path, change(_good_arrays("unstructured")))
    code, _, err = cli(capsys, "scatter", str(path))
    assert_one_line_error(code, err, "junction 1 is stored CSR-style", needle)


def _spec_args(inputs, out):
    return ["train", "--dataset", "morse", "--data", str(inputs["data"]), "--pattern", str(inputs["pattern"]),
            "--epochs", "1", "--batch-size", "256", "--no-mlflow", "--device", "cpu", "--out", str(out)]


JUNK_STATE = {"model": [], "optimizer": 3, "best_model": "x", "best_epoch": "1", "history": [1],
              "rng": {"shuffle": 1, "torch": 2}}


@pytest.mark.parametrize("state, needle", [
    (lambda run_id: [1, 2, 3], "it holds a list, not a mapping of run state"),
    (lambda run_id: {"format": 1, "run_id": run_id},
     "it lacks ['model', 'optimizer', 'best_model', 'best_epoch', 'history', 'rng']"),
    (lambda run_id: {"format": 1, "run_id": run_id, **JUNK_STATE},
     "its model, optimizer, best_model, best_epoch, history, rng are not what training saves"),
    (lambda run_id: {"format": 1, "run_id": "0" * 16}, "belongs to another run"),
    # The right id and types, but weights of another shape: a forged or torn checkpoint.
    (lambda run_id: {"format": 1, "run_id": run_id, "model": {"cls.junctions.0.weight": torch.zeros(3, 3)},
                     "optimizer": {"state": {}, "param_groups": []}, "best_model": None, "best_epoch": 0,
                     "history": [], "rng": {"shuffle": torch.Generator().get_state(), "torch": torch.get_rng_state()}},
     "does not fit this run's model"),
])
def test_checkpoints_that_are_not_ours_are_one_line(capsys, inputs, tmp_path, state, needle):
    from predsparse.defaults import resolve_spec

    out = tmp_path / "run"
    out.mkdir()
    raw = {"study": "quick", "run_name": f"{Path(inputs['pattern']).stem}-seed0", "dataset": "morse",
           "data": str(inputs["data"]), "pattern": str(inputs["pattern"]), "epochs": 1, "batch_size": 256,
           "device": "cpu"}
    torch.save(state(resolve_spec(raw).run_id()), out / rundir.CHECKPOINT)
    before = snapshot(out)
    code, _, err = cli(capsys, *_spec_args(inputs, out))
    assert_one_line_error(code, err, str(out / rundir.CHECKPOINT), needle)
    assert snapshot(out) == before


@pytest.fixture(scope="module")
def finished_run(inputs, tmp_path_factory):
    """A finished run folder (no MLflow), to copy and damage."""
    out = tmp_path_factory.mktemp("finished") / "runs" / "st" / "good"
    train_run(make_spec(inputs, study="st", run_name="good", epochs=2), out, track=False)
    return out


def _damaged(finished_run, root: Path, change) -> Path:
    folder = root / "runs" / "st" / "good"
    shutil.copytree(finished_run, folder)
    metrics = json.loads((folder / rundir.METRICS).read_text())
    (folder / rundir.METRICS).write_text(json.dumps(change(metrics)))
    return folder


RUN_FOLDER_CASES = {
    "a list": (lambda m: [], "it holds a JSON list, not an object"),
    "no spec": (lambda m: {k: v for k, v in m.items() if k != "spec"}, "key 'spec' is missing"),
    "extra a list": (lambda m: {**m, "spec": {**m["spec"], "extra": [1]}}, "spec key 'extra' is [1]"),
    "spec a string": (lambda m: {**m, "spec": "x"}, "key 'spec' is str"),
    "no status": (lambda m: {k: v for k, v in m.items() if k != "status"}, "key 'status' is missing"),
    "no pattern": (lambda m: {k: v for k, v in m.items() if k != "pattern"}, "KeyError: 'pattern'"),
    "scatter malformed": (lambda m: {**m, "scatter": {"vector": 3}}, "has it malformed"),
}


@pytest.mark.parametrize("case", sorted(RUN_FOLDER_CASES))
def test_damaged_run_folders_are_one_line_in_aggregate_and_mlflow_sync(capsys, finished_run, tmp_path, case):
    change, needle = RUN_FOLDER_CASES[case]
    folder = _damaged(finished_run, tmp_path, change)
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "aggregate", str(tmp_path / "runs"), "-o", str(tmp_path / "s.csv"),
                       "--history", str(tmp_path / "h.csv"))
    assert_one_line_error(code, err, str(folder / rundir.METRICS), needle)
    code, _, err = cli(capsys, "mlflow-sync", str(tmp_path / "runs"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db")
    assert_one_line_error(code, err, str(folder / rundir.METRICS))
    assert "MLflow store" not in err  # the folder is to blame, not the store
    assert snapshot(tmp_path) == before  # no summary, no store


# ------------------------------------------------------------------------------ 5. resource limits
def test_a_pattern_too_big_for_memory_is_refused_before_building_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(pattern_cli, "available_memory", lambda: 2**30)
    out = tmp_path / "p.npz"
    code, _, err = cli(capsys, "pattern", "--net", "60000,60000", "--kind", "dense", "-o", str(out))
    assert_one_line_error(code, err, "net 60000,60000 (dense) has 3,600,000,000 connections",
                          "about 107.3 GiB of memory, more than the 1.0 GiB available")
    code, _, err = cli(capsys, "pattern", "--net", "8192,8192,8192", "--fanouts", "4096,4096", "-o", str(out))
    assert_one_line_error(code, err, "has 67,108,864 connections")
    assert not out.exists()


def test_a_memory_error_while_building_is_one_line(capsys, tmp_path, monkeypatch):
    import predsparse.patterns.generate as generate

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(generate, "generate_pattern", exhausted)
    code, _, err = cli(capsys, "pattern", "--net", "64,64", "--kind", "dense", "-o", str(tmp_path / "p.npz"))
    assert_one_line_error(code, err, "out of memory building the dense pattern of net 64,64")


@pytest.mark.parametrize("argv", [["--layers", "100000"], ["--layers", "7"], ["--layers", "0"],
                                  ["--compression", "2", "--min-layers", "100000"]])
def test_csc_support_layers_beyond_what_a_layer_takes_are_refused_at_once(capsys, argv):
    started = time.monotonic()
    code, _, err = cli(capsys, "csc", "info", "--net", "64,64", *argv)
    assert time.monotonic() - started < 5
    assert_one_line_error(code, err, "the CSC layers of net 64,64 take 1 to 6 support layers")
    code, out, _ = cli(capsys, "csc", "info", "--net", "64,64", "--layers", "6")
    assert code == 0 and "--radices 2,2,2,2,2,2" in out


# ------------------------------------------------------------------------------ 6. config gaps
def test_names_with_a_trailing_newline_are_refused():
    assert "study name 's\\n' is not valid" in config_error(
        {**small_config(), "studies": {"s\n": small_config()["studies"]["s"]}})
    assert "key 'patterns[0].name': 'n\\n' is not a valid name" in config_error(with_group(name="n\n"))
    assert "key 'preset': 'p\\n' is not a valid name" in config_error(small_config(preset="p\n"))


def test_names_longer_than_64_characters_are_refused_early():
    message = config_error({**small_config(), "studies": {"s" * 300: small_config()["studies"]["s"]}})
    assert "names are 1 to 64 characters (this one has 300)" in message and len(message) < 300
    message = config_error(with_group(name="n" * 65))
    assert "key 'patterns[0].name'" in message and "(this one has 65)" in message
    assert Plan(with_group(name="n" * 64)).runs[0].name.startswith("n" * 64)


@pytest.mark.parametrize("extra, reserved", [({"method": "rigl"}, "['method']"),
                                             ({"pattern_id": "x", "compression": 1}, "['compression', 'pattern_id']"),
                                             ({"allocation": "erk"}, "['allocation']")])
def test_extra_cannot_set_the_tags_predsparse_sets(extra, reserved):
    message = config_error(with_group(extra=extra))
    assert f"patterns[0]: key 'extra' sets {reserved}, tags predsparse sets itself" in message
    run = Plan(with_group(extra={"note": "mine"})).runs[0]
    assert run.spec.extra["method"] == "predefined" and run.spec.extra["note"] == "mine"


@pytest.mark.parametrize("fanouts, why", [([0, 8], "at [0], 0 is less than the minimum of 1"),
                                          ([[128, 8], [-3, 8]], "at [1][0], -3 is less than the minimum of 1")])
def test_bad_fanouts_say_why_and_what_is_valid(fanouts, why):
    message = config_error(with_group(fanouts=fanouts))
    assert "key 'patterns[0].fanouts'" in message and why in message
    assert "expected fan-outs fo_1..fo_J, one integer >= 1 per junction" in message


def test_a_cluster_error_is_one_line():
    cfg = small_config()
    cfg["studies"]["s"]["patterns"] = [{"kind": "planned", "fanouts": [128, 8], "cluster": "1:x=8"}]
    assert "'1:x=8' is not a clustering; spell it 'J:f=C'" in config_error(cfg)
    cfg["studies"]["s"]["patterns"] = [{"kind": "csc", "compression": 0}]
    message = config_error(cfg)
    assert "0 is less than the minimum of 1" in message and "expected csc patterns" in message


# ------------------------------------------------------------------------------ 7. MLflow
def test_mlflow_gets_the_total_wall_time_and_no_file_from_outside_the_results(finished_run, tmp_path, capsys):
    from predsparse.tracking import Store

    results = tmp_path / "results"
    shutil.copytree(finished_run.parent.parent, results / "runs")
    good = results / "runs" / "st" / "good"
    metrics = json.loads((good / rundir.METRICS).read_text())
    secret = tmp_path / "secret.txt"
    secret.write_text("not for MLflow")
    # A second run folder naming a file outside the results as its pattern, and linking another in.
    evil = results / "runs" / "st" / "evil"
    shutil.copytree(good, evil)
    forged = {**metrics, "run_id": "e" * 16, "spec": {**metrics["spec"], "run_name": "evil", "pattern": str(secret)}}
    (evil / rundir.METRICS).write_text(json.dumps(forged))
    (evil / rundir.CURVES).unlink()
    (evil / rundir.CURVES).symlink_to(secret)

    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    code, out, err = cli(capsys, "mlflow-sync", str(results / "runs"), "--tracking-uri", uri)
    assert code == 0 and "published 2 run(s)" in out, err
    assert f"pattern file {secret}" in err and "MLflow run logged without it" in err
    store = Store(uri)
    runs = {r.info.run_name: r for r in store.client.search_runs([store.experiment_id("st")])}
    assert runs["good"].data.metrics["result/total_wall_time_s"] == metrics["wall_time_s"]
    epochs = store.client.get_metric_history(runs["good"].info.run_id, "curves/wall_time_s")
    assert sorted(m.step for m in epochs) == [1, 2]  # the per-epoch metric keeps its own name
    artifacts = {a.path for a in store.client.list_artifacts(runs["evil"].info.run_id)}
    assert "pattern" not in artifacts and rundir.CURVES not in artifacts and rundir.METRICS in artifacts


# ------------------------------------------------------------------------------ 8. torch's advice
class _Hostile:
    def __reduce__(self):
        return (os.system, ("touch HOSTILE_RAN",))


def test_a_hostile_checkpoint_is_refused_without_torchs_advice(capsys, inputs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    for payload in (pickle.dumps(_Hostile()), b"not a torch file"):
        (out / rundir.CHECKPOINT).write_bytes(payload)
        code, _, err = cli(capsys, *_spec_args(inputs, out))
        assert_one_line_error(code, err, "is not a predsparse checkpoint", "so it was not loaded")
        assert "weights_only" not in err and "will likely succeed" not in err
        assert (out / rundir.CHECKPOINT).read_bytes() == payload
    assert not (tmp_path / "HOSTILE_RAN").exists()


# ------------------------------------------------------------------------------ 9. meta is optional
@pytest.mark.parametrize("kind", ["random", "dense", "unstructured"])
def test_pattern_files_without_meta_load(capsys, tmp_path, kind):
    arrays = _good_arrays(kind)
    del arrays["meta"]
    path = tmp_path / "other_tool.npz"
    np.savez(path, **arrays)  # as another tool would write it
    pattern = load_pattern(path)
    assert pattern.kind == kind and pattern.shapes == (None, None, None)
    assert [a.tolist() for a in pattern.junctions] == [arrays["j1"].tolist(), arrays["j2"].tolist()]
    code, out, err = cli(capsys, "scatter", str(path))
    assert code == 0 and f"kind {kind}" in out, err
