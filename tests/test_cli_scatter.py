"""`predsparse scatter`: JSON, table, -o file, shapes, and every bad input as one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cliutil import assert_one_line_error, cli
from predsparse.errors import ConfigError
from predsparse.pipeline.plan import Plan
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


def test_real_neurons_options(fig4_file, capsys):
    code, out, err = cli(capsys, "scatter", str(fig4_file), "--json", "--real-in", "4", "--real-out", "3")
    assert code == 0 and err == ""
    assert json.loads(out) == {
        "vector": [0.75, 1.0, 2 / 3, 0.75, 5 / 6, 0.625],
        "labels": ["S1f", "S1b", "S2f", "S2b", "Sf", "Sb"],
        "scatter": 0.625,
        "real_neurons": {"input": {"real": 4, "of": 8, "spec": "4"}, "output": {"real": 3, "of": 4, "spec": "3"}},
    }
    code, out, _ = cli(capsys, "scatter", str(fig4_file), "--real-in", "4")
    assert code == 0 and "  real input neurons: 4 of 8 (4)\n" in out and "  real output neurons: 4 of 4 (all)\n" in out
    assert "  Sb   0.6250\n" in out


def test_real_neurons_of_a_padded_mnist_input(tmp_path, capsys):
    path = tmp_path / "mnist.npz"
    pattern = generate_pattern((1024, 64, 16), (1, 4), "random", seed=2, shapes=((1, 32, 32), None, None))
    pattern.save(path)
    code, out, _ = cli(capsys, "scatter", str(path), "--json", "--real-in", "28x28/32x32", "--real-out", "10")
    assert code == 0
    result = json.loads(out)
    expected = scatter_vector(pattern, real_in="28x28/32x32", real_out=10)
    assert result["vector"] == list(expected.vector) != list(scatter_vector(pattern).vector)
    assert result["real_neurons"]["input"] == {"real": 784, "of": 1024, "spec": "28x28/32x32"}
    # Every neuron real: the default vector.
    code, out, _ = cli(capsys, "scatter", str(path), "--json", "--real-in", "1024", "--real-out", "16")
    assert json.loads(out)["vector"] == list(scatter_vector(pattern).vector)


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
        (lambda p: None, ["--shapes", "3x3,-,-"], ["layer 1 shape 3x3 holds 9 neurons, but the layer has 8"]),
        (lambda p: None, ["--shapes", "8,4"], ["2 layer shapes"]),
        (lambda p: None, ["--shapes", "2xa,-,-"], ["is not e.g. 1x32x32"]),
        (lambda p: None, ["--real-in", "9"], ["real input neurons '9': the count must be between 1 and the layer's 8"]),
        (lambda p: None, ["--real-in", "2x2/3x3"], ["the outer shape 3x3 holds 9 neurons, but the layer has 8"]),
        (lambda p: None, ["--real-out", "ten"], ["real output neurons 'ten' are not an int n"]),
    ],
    ids=["missing", "garbage", "tampered", "shape-size", "shape-count", "shape-syntax", "real-count", "real-shape",
         "real-syntax"],
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


# ------------------------------------------------------------------------------------------------
# the pipeline: a study's scatter over real neurons only


TRAINING = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 64, "epochs": 1}


def plan_of(**studies) -> Plan:
    return Plan({"results_dir": "out", "training": TRAINING, "studies": studies}, "test.yaml")


def study(dataset, model, net, *groups, real=None, shapes=None):
    body = {"dataset": dataset, "model": model, "net": net, "seeds": [0], "patterns": list(groups)}
    if real is not None:
        body["scatter"] = {"neurons": "real" if real else "all"}
    if shapes:
        body["shapes"] = shapes
    return body


def test_pipeline_scatter_counts_the_real_neurons_where_the_data_puts_them(tmp_path, capsys):
    random = {"kind": "random", "fanouts": [1, 4]}
    plan = plan_of(
        fig7b=study("mnist", "mlp", [1024, 64, 16], random, real=True, shapes=[[1, 32, 32], None, None]),
        fig2c=study("mnist", "mlp", [784, 112, 10], {"kind": "random", "fanouts": [14, 10]}, real=True),
        fig7c=study("cifar10", "cifar_conv", [4096, 512, 16], {"kind": "random", "fanouts": [1, 2]}, real=True),
        plain=study("mnist", "mlp", [1024, 64, 16], {"kind": "random", "fanouts": [2, 4]}),
    )
    args = {r.study: plan.scatter_args(r.pattern.pattern_id) for r in plan.runs}
    # pad32: the 28x28 image sits inside a 2-pixel zero border; 10 classes of 16 outputs.
    assert args == {"fig7b": "--real-in 28x28/32x32 --real-out 10", "fig2c": "", "fig7c": "--real-out 10",
                    "plain": ""}
    fig7b = next(r for r in plan.runs if r.study == "fig7b")
    pattern_file, json_file = tmp_path / "p.npz", tmp_path / "s.json"
    assert cli(capsys, "pattern", *plan.pattern_args(fig7b.pattern.pattern_id).split(), "-o", str(pattern_file))[0] == 0
    code, _, err = cli(capsys, "scatter", str(pattern_file), *args["fig7b"].split(), "--json", "-o", str(json_file))
    assert code == 0, err
    result = json.loads(json_file.read_text())
    assert result["real_neurons"] == {"input": {"real": 784, "of": 1024, "spec": "28x28/32x32"},
                                      "output": {"real": 10, "of": 16, "spec": "10"}}
    pattern = generate_pattern([1024, 64, 16], [1, 4], "random", 0, shapes=[(1, 32, 32), None, None])
    assert result["vector"] == list(scatter_vector(pattern, real_in="28x28/32x32", real_out=10).vector)


def test_pipeline_scatter_of_every_neuron_is_the_default():
    random = {"kind": "random", "fanouts": [1, 4]}
    for real in (None, False):
        plan = plan_of(s=study("mnist", "mlp", [1024, 64, 16], random, real=real))
        assert [plan.scatter_args(r.pattern.pattern_id) for r in plan.runs] == [""]
    with pytest.raises(ConfigError, match="no pattern 'random-000000000000'"):
        plan.scatter_args("random-000000000000")


def test_pipeline_scatter_one_pattern_two_conventions_is_refused():
    random = {"kind": "random", "fanouts": [1, 4]}
    with pytest.raises(ConfigError) as info:
        plan_of(a=study("mnist", "mlp", [1024, 64, 16], random, real=True),
                b=study("mnist", "mlp", [1024, 64, 16], random))
    message = str(info.value)
    assert "study 'b'" in message and "also in study 'a'" in message and "scatter: {neurons: ...}" in message


def test_pipeline_scatter_option_is_checked_by_the_schema():
    with pytest.raises(ConfigError, match="'some' is not one of \\['all', 'real'\\]"):
        plan_of(s={**study("mnist", "mlp", [1024, 64, 16], {"kind": "dense"}), "scatter": {"neurons": "some"}})
