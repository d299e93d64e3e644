"""`predsparse scatter`: JSON, table, -o file, shapes, and every bad input as one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cliutil import assert_one_line_error, cli
from predsparse.patterns import Pattern, generate_pattern
from predsparse.scatter import scatter_vector


@pytest.fixture
def fig4_file(tmp_path):
    """The paper's Fig. 4 example, saved."""
    rows1 = ["00001010", "00100001", "10000100", "01010000"]
    rows2 = ["1001", "0011", "1100", "0110"]
    index = [np.array([[k for k, b in enumerate(r) if b == "1"] for r in rows], dtype=np.int32) for rows in (rows1, rows2)]
    path = tmp_path / "fig4.npz"
    Pattern((8, 4, 4), (1, 2), tuple(index)).save(path)
    return path


def test_json_output(fig4_file, capsys):
    code, out, err = cli(capsys, "scatter", str(fig4_file), "--json")
    assert code == 0 and err == ""
    assert json.loads(out) == {
        "vector": [0.75, 1.0, 0.75, 0.75, 0.875, 0.75],
        "labels": ["S1f", "S1b", "S2f", "S2b", "Sf", "Sb"],
        "scatter": 0.75,
    }


def test_table_output(fig4_file, capsys):
    code, out, err = cli(capsys, "scatter", str(fig4_file))
    assert code == 0 and err == ""
    assert "net 8-4-4, fan-outs 1-2" in out
    assert "  S1f  0.7500\n" in out and "  Sf   0.8750\n" in out
    assert out.rstrip().endswith("S    0.7500  (minimum)")


def test_output_file_is_the_json(fig4_file, tmp_path, capsys):
    target = tmp_path / "out" / "s.json"
    code, out, _ = cli(capsys, "scatter", str(fig4_file), "--json", "-o", str(target))
    assert code == 0
    assert json.loads(target.read_text()) == json.loads(out)
    assert [p.name for p in target.parent.iterdir()] == ["s.json"]  # no temporary file left


def test_shapes_option_windows_an_image(tmp_path, capsys):
    path = tmp_path / "mnist.npz"
    generate_pattern((1024, 64, 16), (1, 4), "random", seed=2).save(path)
    code, out, _ = cli(capsys, "scatter", str(path), "--json", "--shapes", "1x32x32,-,-")
    assert code == 0
    shaped = generate_pattern((1024, 64, 16), (1, 4), "random", seed=2, shapes=((1, 32, 32), None, None))
    assert json.loads(out)["vector"] == list(scatter_vector(shaped).vector)


def test_console_script_runs(fig4_file):
    done = subprocess.run(
        [sys.executable, "-m", "predsparse", "scatter", str(fig4_file), "--json"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["scatter"] == 0.75


def tampered(path):
    """Rewrite j1 so that a left neuron index is out of range."""
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["j1"] = arrays["j1"].copy()
    arrays["j1"][0, -1] = 99
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "make_bad, extra, needles",
    [
        (lambda p: p.unlink(), [], ["does not exist"]),
        (lambda p: p.write_bytes(b"not a zip"), [], ["not a readable pattern file"]),
        (tampered, [], ["out of range"]),
        (lambda p: None, ["--shapes", "3x3,-,-"], ["layer 1 shape [3, 3] holds 9 neurons"]),
        (lambda p: None, ["--shapes", "8,4"], ["2 layer shapes"]),
        (lambda p: None, ["--shapes", "2xa,-,-"], ["is not e.g. 1x32x32"]),
    ],
    ids=["missing", "garbage", "tampered", "shape-size", "shape-count", "shape-syntax"],
)
def test_bad_input_is_one_line_exit_2(fig4_file, tmp_path, capsys, make_bad, extra, needles):
    make_bad(fig4_file)
    target = tmp_path / "s.json"
    code, out, err = cli(capsys, "scatter", str(fig4_file), "-o", str(target), *extra)
    assert_one_line_error(code, err, *needles)
    assert out == "" and not target.exists()


def test_bad_input_keeps_existing_output(fig4_file, tmp_path, capsys):
    target = tmp_path / "s.json"
    target.write_text("previous")
    fig4_file.write_bytes(fig4_file.read_bytes()[:200])  # truncated
    code, _, err = cli(capsys, "scatter", str(fig4_file), "-o", str(target))
    assert_one_line_error(code, err, "not a readable pattern file")
    assert target.read_text() == "previous"
