"""`predsparse pattern` and `predsparse density`: outputs, and every bad input as one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cliutil import assert_one_line_error, cli
from predsparse.density import density
from predsparse.errors import ConfigError
from predsparse.pipeline import PatternRow
from predsparse.pipeline.plan import Plan
from predsparse.patterns import generate_pattern, load_pattern


# ------------------------------------------------------------------------------------------------
# pattern


def test_pattern_writes_the_generated_pattern(tmp_path, capsys):
    path = tmp_path / "p.npz"
    code, out, err = cli(capsys, "pattern", "--net", "64,1024,64", "--fanouts", "128,8", "--kind", "random", "--seed", "3", "-o", str(path))
    assert code == 0 and err == ""
    assert out == f"random net=64,1024,64 fo=128,8 fi=8,128 density=12.5%,12.5% overall=12.5% weights=16384/131072 -> {path}\n"
    assert path.read_bytes() == generate_pattern([64, 1024, 64], [128, 8], "random", 3).to_bytes()


def test_pattern_is_reproducible_from_the_command_line(tmp_path, capsys):
    a, b, c = (tmp_path / n for n in ("a.npz", "b.npz", "c.npz"))
    for path, seed in ((a, "1"), (b, "1"), (c, "2")):
        assert cli(capsys, "pattern", "--net", "32,32", "--fanouts", "4", "--seed", seed, "-o", str(path))[0] == 0
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_pattern_planned_clusters_and_shapes(tmp_path, capsys):
    path = tmp_path / "planned.npz"
    code, out, _ = cli(
        capsys, "pattern", "--net", "1024,64,16", "--fanouts", "1,4", "--kind", "planned",
        "--cluster", "1:f=16", "--cluster", "2:f=2,2:b=2", "--shapes", "1x32x32,-,-", "-o", str(path),
    )
    assert code == 0 and out.startswith("planned net=1024,64,16 fo=1,4 fi=16,16")
    p = load_pattern(path)
    assert p.meta["options"] == {"clusters": {"1": {"f": 16}, "2": {"b": 2, "f": 2}}}
    assert p.shapes == ((1, 32, 32), None, None)
    expected = generate_pattern(
        [1024, 64, 16], [1, 4], "planned", 0, shapes=[(1, 32, 32), None, None], clusters={1: {"f": 16}, 2: {"f": 2, "b": 2}}
    )
    assert p.to_bytes() == expected.to_bytes()


def test_pattern_sequential_generator(tmp_path, capsys):
    path = tmp_path / "seq.npz"
    code, out, err = cli(capsys, "pattern", "--net", "64,1024,64", "--fanouts", "128,8", "--generator", "sequential",
                         "--seed", "3", "-o", str(path))
    assert code == 0 and err == ""
    assert out.startswith("random (sequential) net=64,1024,64 fo=128,8 fi=8,128 density=12.5%")
    p = load_pattern(path)
    assert p.meta["options"] == {"generator": "sequential"}
    expected = generate_pattern([64, 1024, 64], [128, 8], "random", 3, generator="sequential")
    assert path.read_bytes() == expected.to_bytes()
    assert expected.to_bytes() != generate_pattern([64, 1024, 64], [128, 8], "random", 3).to_bytes()
    # --generator uniform is the default: the same file as without it.
    uniform = tmp_path / "uniform.npz"
    assert cli(capsys, "pattern", "--net", "32,32", "--fanouts", "4", "--generator", "uniform", "-o", str(uniform))[0] == 0
    assert uniform.read_bytes() == generate_pattern([32, 32], [4], "random", 0).to_bytes()


def test_pattern_dense_needs_no_fanouts(tmp_path, capsys):
    code, out, _ = cli(capsys, "pattern", "--net", "8,4", "--kind", "dense", "-o", str(tmp_path / "d.npz"))
    assert code == 0 and "density=100% overall=100% weights=32/32" in out


def test_pattern_csc(tmp_path, capsys):
    pytest.importorskip("predsparse.patterns.csc")
    code, out, err = cli(capsys, "pattern", "--net", "1024,1024", "--kind", "csc", "--radices", "32,32", "-o", str(tmp_path / "c.npz"))
    assert code == 0, err
    assert out.startswith("csc net=1024,1024,1024 fo=32,32")


def test_help_documents_the_options(capsys):
    code, out, _ = cli(capsys, "pattern", "--help")
    assert code == 0
    for needle in ("--cluster", "1:f=2,2:b=4", "--shapes", "1x32x32", "--radices", "planned", "unstructured", "csc",
                   "--generator", "sequential"):
        assert needle in out
    code, out, _ = cli(capsys, "density", "--help")
    assert code == 0 and "--overall" in out and "--pattern" in out and "--tol" in out


# ------------------------------------------------------------------------------------------------
# density


def test_density_json(capsys):
    code, out, _ = cli(capsys, "density", "--net", "4096,512,16", "--fanouts", "1,8", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["junction_densities"] == [1 / 512, 0.5]
    assert report["overall_density"] == 8192 / 2_105_344
    assert report["weights"] == 8192 and report["dense_weights"] == 2_105_344
    assert report == density([4096, 512, 16], [1, 8]).to_dict()


def test_density_table_with_other_layers(capsys):
    code, out, _ = cli(
        capsys, "density", "--net", "4096,512,16", "--fanouts", "1,1", "--other-params", "1145472", "--other-ops", "152993792"
    )
    assert code == 0
    assert "0.1953%" in out and "6.25%" in out and "0.2189%" in out and "compression 456.9x" in out
    assert "overall op reduction 1.354%" in out  # Table 2: 1.35


def test_density_of_a_pattern_file(tmp_path, capsys):
    path = tmp_path / "u.npz"
    generate_pattern([64, 1024, 64], [128, 8], "unstructured", 0).save(path)
    code, out, _ = cli(capsys, "density", "--pattern", str(path), "--json")
    assert code == 0 and json.loads(out)["weights"] == 16384


def test_density_lists_the_splits(capsys):
    code, out, _ = cli(capsys, "density", "--net", "64,1024,64", "--overall", "0.5", "--json")
    assert code == 0
    splits = json.loads(out)["splits"]
    assert len(splits) == 63 and splits[0]["fanouts"] == [16, 63]
    assert {"fanouts": [256, 48], "junction_densities": [0.25, 0.75], "overall_density": 0.5} in splits
    code, out, _ = cli(capsys, "density", "--net", "64,1024,64", "--overall", "0.25")
    assert code == 0 and out.splitlines()[0].startswith("31 valid fan-out splits")


# ------------------------------------------------------------------------------------------------
# bad input: one line on stderr, exit 2, no traceback, nothing written


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--net", "64,1024,64", "--fanouts", "100,8"], ["fi = 64*100/1024 = 6.25", "nearest valid fan-outs: 96"]),
        (["--net", "64,1024,64", "--fanouts", "128,65"], ["fan-out 65 must be between 1 and N_3=64"]),
        (["--net", "64,1024,64", "--fanouts", "0,8"], ["fan-out 0 must be between 1 and N_2=1024"]),
        (["--net", "64", "--fanouts", "8"], ["needs at least 2 layers"]),
        (["--net", "64,64", "--fanouts", "8", "--kind", "interleaver"], ["unknown pattern kind 'interleaver'"]),
        (["--net", "64,64"], ["kind random needs fan-outs"]),
        (["--net", "64,x", "--fanouts", "8"], ["'64,x' is not a comma-separated list of integers"]),
        (["--net", "64,64", "--fanouts", "8", "--cluster", "1:f=2"], ["--cluster is for kind planned"]),
        (["--net", "64,64", "--fanouts", "8", "--kind", "planned", "--cluster", "1f2"], ["cluster '1f2' is malformed"]),
        (["--net", "64,64", "--fanouts", "8", "--kind", "planned", "--cluster", "1:b=3"], ["backward clustering b=3"]),
        (["--net", "64,64", "--fanouts", "8", "--shapes", "8x9,-"], ["layer 1 shape 8x9 holds 72 neurons, but the layer has 64"]),
        (["--net", "64,64", "--fanouts", "8", "--shapes", "8by8,-"], ["layer shape '8by8'"]),
        (["--net", "64,64", "--fanouts", "8", "--radices", "8,8"], ["--radices is for kind csc"]),
        (["--net", "64,64", "--fanouts", "8", "--seed", "-1"], ["seed -1 must be a whole number >= 0"]),
        (["--net", "64,64", "--fanouts", "8", "--generator", "adjmat"],
         ["unknown generator 'adjmat'", "valid generators: uniform, sequential"]),
        (["--net", "64,64", "--fanouts", "8", "--kind", "planned", "--generator", "sequential"],
         ["--generator is for kind random, not planned"]),
    ],
)
def test_pattern_errors(tmp_path, capsys, argv, needles):
    out = tmp_path / "p.npz"
    code, _, err = cli(capsys, "pattern", *argv, "-o", str(out))
    assert_one_line_error(code, err, *needles)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_leaves_an_existing_file_alone(tmp_path, capsys):
    path = tmp_path / "p.npz"
    path.write_bytes(b"precious")
    code, _, err = cli(capsys, "pattern", "--net", "64,128", "--fanouts", "7", "-o", str(path))
    assert_one_line_error(code, err, "fan-out 7")
    assert path.read_bytes() == b"precious" and len(list(tmp_path.iterdir())) == 1


def tampered(tmp_path, name: str, change) -> str:
    """A pattern file with one array changed, written as a plain npz (not through the pattern writer)."""
    arrays = generate_pattern([16, 32, 8], [8, 2], "random", 0).to_arrays()
    change(arrays)
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def _duplicate(arrays):
    arrays["j1"][0, 1] = arrays["j1"][0, 0]


def _out_of_range(arrays):
    arrays["j2"][3, 0] = 99


def _wrong_fanouts(arrays):
    arrays["fanouts"] = np.array([8, 3])


def _missing_junction(arrays):
    del arrays["j2"]


def _bad_meta(arrays):
    arrays["meta"] = np.array("{not json")


@pytest.mark.parametrize(
    "change, needle",
    [
        (_duplicate, "not strictly increasing"),
        (_out_of_range, "out of range"),
        (_wrong_fanouts, "junction 2 (32->8, fo=3): fan-in index has shape (8, 8), expected (8, 12)"),
        (_missing_junction, "'j2' is missing"),
        (_bad_meta, "'meta' is not valid JSON"),
    ],
)
def test_density_rejects_a_tampered_pattern(tmp_path, capsys, change, needle):
    path = tampered(tmp_path, "t.npz", change)
    code, _, err = cli(capsys, "density", "--pattern", path)
    assert_one_line_error(code, err, needle)


def test_density_rejects_unequal_fan_out(tmp_path, capsys):
    def move_one_connection(arrays):
        row = arrays["j1"][0]
        spare = next(k for k in range(16) if k not in row)  # a left neuron not yet feeding right neuron 0
        row[-1] = spare
        arrays["j1"][0] = np.sort(row)

    code, _, err = cli(capsys, "density", "--pattern", tampered(tmp_path, "f.npz", move_one_connection))
    assert_one_line_error(code, err, "has fan-out", "expected 8")


@pytest.mark.parametrize(
    "content, needle",
    [(b"this is not a zip file", "not a readable pattern file"), (None, "does not exist")],
)
def test_density_rejects_unreadable_files(tmp_path, capsys, content, needle):
    path = tmp_path / "bad.npz"
    if content is not None:
        path.write_bytes(content)
    code, _, err = cli(capsys, "density", "--pattern", str(path))
    assert_one_line_error(code, err, needle)


def test_density_rejects_a_truncated_file(tmp_path, capsys):
    path = tmp_path / "cut.npz"
    generate_pattern([16, 32, 8], [8, 2], "random", 0).save(path)
    path.write_bytes(path.read_bytes()[:200])
    code, _, err = cli(capsys, "density", "--pattern", str(path))
    assert_one_line_error(code, err, "cut.npz")


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--net", "4096,512,16"], ["give --fanouts"]),
        (["--net", "4096,512,16", "--fanouts", "1,17"], ["junction 2 (512->16): fan-out 17 must be between 1 and N_3=16"]),
        (["--net", "3136,784,10", "--fanouts", "1,3"], ["fan-in fi = 784*3/10 = 235.2", "nearest valid fan-outs: 5"]),
        (["--net", "64", "--fanouts", "1"], ["needs at least 2 layers"]),
        (["--net", "64,1024,64", "--overall", "0.3"], ["closest is 0.296875 (fan-outs 16,37); widen --tol"]),
        (["--net", "64,1024,64", "--overall", "1.5"], ["overall density 1.5 must be in (0, 1]"]),
        (["--net", "64,1024,64", "--overall", "half"], ["'half' is not a number"]),
        (["--net", "64,1024,64", "--overall", "0.5", "--fanouts", "16,63"], ["not both"]),
        (["--fanouts", "1,8"], ["one of the arguments --net --pattern is required"]),
    ],
)
def test_density_errors(capsys, argv, needles):
    code, _, err = cli(capsys, "density", *argv)
    assert_one_line_error(code, err, *needles)


def test_console_script_end_to_end(tmp_path):
    path = tmp_path / "p.npz"
    ok = subprocess.run(
        [sys.executable, "-m", "predsparse", "pattern", "--net", "64,1024,64", "--fanouts", "128,8", "-o", str(path)],
        capture_output=True, text=True,
    )
    assert ok.returncode == 0 and path.is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "predsparse", "density", "--net", "64,1024,64", "--fanouts", "100,8"],
        capture_output=True, text=True,
    )
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.count("\n") == 1 and "6.25" in bad.stderr


# ------------------------------------------------------------------------------------------------
# the pipeline: a random group's generator


TRAINING = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 64, "epochs": 1}


def morse_plan(*groups, seeds=(0, 1)) -> Plan:
    return Plan({
        "results_dir": "out",
        "data": {"morse": {"variant": "baseline", "per_class": [10, 2, 2], "seed": 0}},
        "training": TRAINING,
        "studies": {"fig7a": {"dataset": "morse", "model": "mlp", "net": [64, 1024, 64], "seeds": list(seeds),
                              "patterns": list(groups)}},
    }, "test.yaml")


def test_pipeline_generator_enters_names_ids_and_options_only_when_not_default(tmp_path, capsys):
    plan = morse_plan({"kind": "random", "fanouts": [128, 8]},
                      {"kind": "random", "generator": "sequential", "fanouts": [128, 8]},
                      {"kind": "random", "generator": "sequential", "fanouts": [128, 8], "name": "adj"})
    rows = {r.name: r for r in plan.runs}
    assert set(rows) == {f"{prefix}_fo128-8_s{s}" for prefix in ("random", "random_seq", "adj_seq") for s in (0, 1)}
    default, sequential = rows["random_fo128-8_s0"], rows["random_seq_fo128-8_s0"]
    # Every existing pattern id is unchanged; the generator makes another one.
    assert default.pattern.pattern_id == PatternRow("random", (64, 1024, 64), (128, 8), 0).pattern_id == "random-dd029d484b97"
    assert sequential.pattern.pattern_id != default.pattern.pattern_id
    assert rows["adj_seq_fo128-8_s0"].pattern.pattern_id == sequential.pattern.pattern_id  # one file, two runs
    assert default.row()["options"] == {} and sequential.row()["options"] == {"generator": "sequential"}
    assert default.spec.run_id() != sequential.spec.run_id()
    args = plan.pattern_args(sequential.pattern.pattern_id)
    assert args == "--net 64,1024,64 --kind random --seed 0 --fanouts 128,8 --generator sequential"
    path = tmp_path / "p.npz"
    assert cli(capsys, "pattern", *args.split(), "-o", str(path))[0] == 0
    assert path.read_bytes() == generate_pattern([64, 1024, 64], [128, 8], "random", 0, generator="sequential").to_bytes()


def test_pipeline_generator_uniform_by_name_and_lists():
    named = morse_plan({"kind": "random", "generator": "uniform", "fanouts": [128, 8]}, seeds=(0,))
    plain = morse_plan({"kind": "random", "fanouts": [128, 8]}, seeds=(0,))
    assert [(r.name, r.pattern.pattern_id) for r in named.runs] == [(r.name, r.pattern.pattern_id) for r in plain.runs]
    both = morse_plan({"kind": "random", "generator": ["uniform", "sequential"], "fanouts": [[128, 8], [64, 4]]},
                      seeds=(0,))
    assert [r.name for r in both.runs] == ["random_fo128-8_s0", "random_seq_fo128-8_s0", "random_fo64-4_s0",
                                           "random_seq_fo64-4_s0"]


@pytest.mark.parametrize(
    "group, needles",
    [
        ({"kind": "random", "generator": "adjmat", "fanouts": [128, 8]},
         ["patterns[0]", "'adjmat'", "uniform", "sequential"]),
        ({"kind": "planned", "generator": "sequential", "fanouts": [128, 8]},
         ["key 'generator' does not apply to kind 'planned'"]),
        ({"kind": "random", "generator": ["sequential", "sequential"], "fanouts": [128, 8]},
         ["key 'generator'", "repeats ['sequential']"]),
    ],
)
def test_pipeline_bad_generator_is_a_config_error(group, needles):
    with pytest.raises(ConfigError) as info:
        morse_plan(group)
    for needle in needles:
        assert needle in str(info.value), str(info.value)
