"""Property tests of the bad-input contract (issue 15): generated malformed configs, pattern files, dataset
files, checkpoints and run folders each end in exit status 0 (the damage happened to be harmless) or 2
with one line on stderr, never a traceback, and no file that was there is changed.

Small example counts (the whole module runs in well under a minute); every case is an in-process CLI call.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from conftest import synthetic_morse

from predsparse import rundir
from predsparse.cli import main
from predsparse.io import load_npz, save_npz
from predsparse.patterns import generate_pattern
from predsparse.train import train_run

QUICK = settings(max_examples=40, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def run_cli(*argv: str) -> tuple[int, str]:
    """`predsparse ARGV` in-process: (exit status, stderr). Any exception escaping main is a failure."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def assert_contract(code: int, err: str) -> None:
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err, err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("predsparse ") and " error: " in err, err


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 2000), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(-5, 1100), max_size=4),
    st.dictionaries(st.text(max_size=6), st.integers(-3, 3), max_size=2),
)


# ------------------------------------------------------------------------------ configs
def base_config() -> dict:
    return {
        "results_dir": "out",
        "data": {"morse": {"variant": "baseline", "per_class": [10, 2, 2], "seed": 0}},
        "training": {"optimizer": "sgd", "lr": 0.05, "batch_size": 64, "epochs": 1},
        "studies": {"s": {"dataset": "morse", "model": "mlp", "net": [64, 1024, 64], "seeds": [0],
                          "patterns": [{"kind": "random", "fanouts": [128, 8]},
                                       {"kind": "planned", "fanouts": [128, 8], "cluster": "1:b=8"}]}},
    }


def key_paths(node, prefix=()):
    """Every (path to a mapping, key) and (path to a list, index) of a config."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix, key
            yield from key_paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield prefix, i
            yield from key_paths(value, prefix + (i,))


PATHS = list(key_paths(base_config()))
NAMES = st.one_of(st.text(max_size=12), st.text(alphabet="ab", min_size=60, max_size=300),
                  st.sampled_from(["s\n", "r;touch PWNED;", "a b", "-x", ""]))


@st.composite
def damaged_configs(draw):
    config = base_config()
    for _ in range(draw(st.integers(1, 2))):
        where, key = draw(st.sampled_from(PATHS))
        node = config
        try:
            for part in where:
                node = node[part]
            action = draw(st.sampled_from(["replace", "delete", "add", "rename"]))
            if action == "delete":
                del node[key]
            elif action == "rename" and isinstance(node, dict):
                node[draw(NAMES)] = node.pop(key)
            elif action == "add" and isinstance(node, dict):
                node[draw(st.text(min_size=1, max_size=8))] = draw(JUNK)
            else:
                node[key] = draw(JUNK)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or replaced this spot
    return config


@QUICK
@given(config=damaged_configs())
def test_damaged_configs_are_one_line_errors(config):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(config))
        before = digest(Path(tmp))
        code, err = run_cli("plan", str(path))
        assert_contract(code, err)
        assert digest(Path(tmp)) == before


# ------------------------------------------------------------------------------ pattern files
GOOD = {kind: generate_pattern([64, 128, 64], None if kind == "dense" else [16, 8], kind, 0).to_arrays()
        for kind in ("random", "unstructured", "dense")}
ARRAYS = st.one_of(
    st.builds(np.array, st.lists(st.integers(-3, 200), max_size=6)),
    st.builds(np.array, st.lists(st.floats(-3, 200), max_size=6)),
    st.builds(np.array, st.integers(-3, 200)),
    st.builds(np.array, st.text(max_size=20)),
    st.builds(lambda v: np.array(json.dumps(v)), st.recursive(
        st.one_of(st.none(), st.integers(-2, 70), st.text(max_size=5)),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(
            st.sampled_from(["kind", "shapes", "format", "seed", "options"]), inner, max_size=3)), max_leaves=6)),
)


@st.composite
def damaged_patterns(draw):
    arrays = dict(GOOD[draw(st.sampled_from(sorted(GOOD)))])
    for _ in range(draw(st.integers(1, 2))):
        name = draw(st.sampled_from(sorted(arrays) + ["j3"]))
        action = draw(st.sampled_from(["delete", "float", "reshape", "replace"]))
        if action == "delete":
            arrays.pop(name, None)
        elif name in arrays and action == "float" and arrays[name].dtype.kind in "iu":
            arrays[name] = arrays[name].astype(np.float64) + draw(st.sampled_from([0.0, 0.5]))
        elif name in arrays and action == "reshape":
            arrays[name] = arrays[name].reshape(-1)[None, :] if arrays[name].ndim else arrays[name][None]
        else:
            arrays[name] = draw(ARRAYS)
    return arrays


@QUICK
@given(arrays=damaged_patterns())
def test_damaged_pattern_files_are_one_line_errors(arrays):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.npz"
        save_npz(path, arrays)
        before = digest(Path(tmp))
        for argv in (["scatter", str(path)], ["density", "--pattern", str(path)]):
            assert_contract(*run_cli(*argv))
        assert digest(Path(tmp)) == before


# ------------------------------------------------------------------------------ dataset files
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    generate_pattern([64, 128, 64], [16, 8], "random", 0).save(root / "p.npz")
    synthetic_morse(root / "d.npz", n=(64, 16, 16))
    return root


@st.composite
def damaged_datasets(draw, good):
    arrays = dict(good)
    name = draw(st.sampled_from(sorted(arrays)))
    action = draw(st.sampled_from(["delete", "dtype", "shape", "labels", "nan", "extra"]))
    if action == "delete":
        del arrays[name]
    elif action == "dtype":
        arrays[name] = arrays[name].astype(draw(st.sampled_from([np.float64, np.int32, np.uint8, np.float16])))
    elif action == "shape":
        arrays[name] = arrays[name][: draw(st.integers(0, 3))]
    elif action == "labels":
        y = name.replace("x", "y")
        arrays[y] = np.full_like(arrays[y], draw(st.sampled_from([-1, 64, 10**6])))
    elif action == "nan":
        x = name.replace("y", "x")
        arrays[x] = np.full_like(arrays[x], draw(st.sampled_from([np.nan, np.inf, -5.0])))
    else:
        arrays["z"] = np.zeros(1)
    return arrays


def test_damaged_dataset_files_are_one_line_errors(small):
    good = load_npz(small / "d.npz")

    @settings(max_examples=20, deadline=None, derandomize=True)
    @given(arrays=damaged_datasets(good))
    def check(arrays):
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "d.npz"
            save_npz(data, arrays)
            before = digest(Path(tmp))
            code, err = run_cli("train", "--dataset", "morse", "--data", str(data), "--pattern", str(small / "p.npz"),
                                "--epochs", "1", "--batch-size", "64", "--device", "cpu", "--no-mlflow",
                                "--out", str(Path(tmp) / "run"))
            assert_contract(code, err)
            assert {k: v for k, v in digest(Path(tmp)).items() if not k.startswith("run/")} == before

    check()


# ------------------------------------------------------------------------------ checkpoints
TENSORS = st.builds(lambda shape: torch.zeros(shape), st.lists(st.integers(0, 3), max_size=2))
STATE = st.recursive(st.one_of(st.none(), st.integers(-2, 2), st.text(max_size=4), TENSORS),
                     lambda inner: st.one_of(st.lists(inner, max_size=3),
                                             st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)
KEYS = ("format", "run_id", "model", "optimizer", "best_model", "best_epoch", "history", "rng")


def test_foreign_checkpoints_are_one_line_errors(small):
    from predsparse.defaults import resolve_spec

    run_id = resolve_spec({"study": "quick", "run_name": "p-seed0", "dataset": "morse", "data": str(small / "d.npz"),
                           "pattern": str(small / "p.npz"), "epochs": 1, "batch_size": 64, "device": "cpu"}).run_id()
    ours = st.fixed_dictionaries({"format": st.just(1), "run_id": st.just(run_id)},
                                 optional={key: STATE for key in KEYS[2:]})

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(state=st.one_of(STATE, ours, st.binary(max_size=64)))
    def check(state):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            out.mkdir()
            if isinstance(state, bytes):
                (out / rundir.CHECKPOINT).write_bytes(state)
            else:
                torch.save(state, out / rundir.CHECKPOINT)
            before = digest(Path(tmp))
            code, err = run_cli("train", "--dataset", "morse", "--data", str(small / "d.npz"), "--pattern",
                                str(small / "p.npz"), "--epochs", "1", "--batch-size", "64", "--device", "cpu",
                                "--no-mlflow", "--out", str(out))
            assert code == 2, err  # no generated state is a complete checkpoint of this run
            assert_contract(code, err)
            assert digest(Path(tmp)) == before

    check()


# ------------------------------------------------------------------------------ run folders
@pytest.fixture(scope="module")
def finished(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "st" / "good"
    raw = {"study": "st", "run_name": "good", "dataset": "morse", "data": str(small / "d.npz"),
           "pattern": str(small / "p.npz"), "epochs": 1, "batch_size": 64, "device": "cpu"}
    from predsparse.defaults import resolve_spec

    train_run(resolve_spec(raw), out, track=False)
    return out


@st.composite
def damaged_metrics(draw, good):
    metrics = json.loads(json.dumps(good))
    for _ in range(draw(st.integers(1, 3))):
        node = metrics
        if isinstance(node, dict) and draw(st.booleans()):
            inner = draw(st.sampled_from([k for k, v in node.items() if isinstance(v, dict)] or [None]))
            if inner is not None:
                node = node[inner]
        if not isinstance(node, dict) or not node:
            break
        key = draw(st.sampled_from(sorted(node)))
        if draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(JUNK)
    if draw(st.integers(0, 9)) == 0:
        metrics = draw(JUNK)
    return metrics


def test_damaged_run_folders_are_one_line_errors(finished):
    good = json.loads((finished / rundir.METRICS).read_text())

    @settings(max_examples=30, deadline=None, derandomize=True)
    @given(metrics=damaged_metrics(good))
    def check(metrics):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "runs" / "st" / "good"
            shutil.copytree(finished, folder)
            (folder / rundir.METRICS).write_text(json.dumps(metrics))
            before = digest(Path(tmp))
            code, err = run_cli("aggregate", str(Path(tmp) / "runs"), "-o", str(Path(tmp) / "s.csv"),
                                "--history", str(Path(tmp) / "h.csv"))
            assert_contract(code, err)
            after = digest(Path(tmp))
            if code == 2:
                assert after == before
            else:
                assert {k: v for k, v in after.items() if k not in ("s.csv", "h.csv")} == before

    check()
