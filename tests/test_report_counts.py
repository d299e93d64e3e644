"""The training-free counts the report compares with Tables 1 and 2: config_counts.csv, shipped with the
report, is what `predsparse counts config.yaml` writes, and its conv counts are the torch models'."""

from __future__ import annotations

from cliutil import cli

from predsparse.pipeline.config import DEFAULT_CONFIG
from predsparse.report.counts import build_counts, default_counts_path, load_counts, write_counts
from predsparse.report.inputs import load_paper
from predsparse.report.paper import TABLE2, _ints, default_paper_path


def _conv(layers, size):
    """(params, MACs per sample) of 'same' 3x3 / 5x5 conv layers [(c_in, c_out, k, output side)], biases included."""
    params = sum(c_out * (c_in * k * k + 1) for c_in, c_out, k, _ in layers)
    macs = sum(side * side * c_out * c_in * k * k for c_in, c_out, k, side in layers)
    return params, macs


CIFAR = _conv([(3, 64, 3, 32), (64, 64, 3, 32), (64, 128, 3, 16), (128, 128, 3, 16), (128, 256, 3, 8),
               (256, 256, 3, 8)], 32)
MNIST = _conv([(1, 32, 5, 28), (32, 64, 5, 14)], 28)


def test_shipped_counts_are_what_config_yaml_gives(tmp_path, capsys):
    code, out, err = cli(capsys, "counts", str(DEFAULT_CONFIG), "-o", str(tmp_path / "counts.csv"))
    assert code == 0, err
    assert (tmp_path / "counts.csv").read_text() == default_counts_path().read_text(), \
        "config.yaml's Table 1/2 studies changed: run `predsparse counts config.yaml` to refresh the shipped CSV"


def test_conv_counts_are_the_models_closed_forms():
    assert CIFAR == (1_145_408, 152_764_416)  # Table 2: 1.15 M conv params, 0.15 B conv ops
    assert MNIST == (52_096, 10_662_400)      # Table 2: 0.05 M; its 0.1 B ops do not fit its 18.29 % reduction
    by_model = {(c.model, c.conv_params, c.conv_ops) for c in load_counts()}
    assert by_model == {("cifar_conv", *CIFAR), ("mnist_conv", *MNIST), ("mlp", 0, 0)}


def test_every_table1_and_table2_configuration_is_counted():
    counts = load_counts()
    from predsparse.report.studies import STUDIES

    for row in load_paper(default_paper_path()).to_dict("records"):
        if row["source"] not in ("table1", "table2"):
            continue
        studies = {s.name for s in STUDIES.values() if s.paper_study == row["study"]}
        mine = [c for c in counts if c.study in studies and c.net == _ints(row["net"])]
        fanouts = _ints(row["fanouts"]) if row["fanouts"] else TABLE2[row["study"]].fanouts
        assert any(c.fanouts == fanouts for c in mine), (row["study"], fanouts)
        assert any(c.is_dense for c in mine), row["study"]


def test_counts_round_trip(tmp_path):
    study = {"dataset": "morse", "model": "mlp", "net": [64, 1024, 64], "seeds": [0],
             "patterns": [{"kind": "random", "fanouts": [[16, 1]]}]}
    config = {"data": {"morse": {"variant": "paper2017", "per_class": [10, 10, 10], "seed": 0}},
              "studies": {"fig3a_morse": study}}
    rows = build_counts(config)
    write_counts(rows, tmp_path / "c.csv")
    (count,) = load_counts(tmp_path / "c.csv")
    assert (count.weights, count.dense_weights, count.junction_densities, count.overall_density) == \
        (2048, 131072, (1 / 64, 1 / 64), 1 / 64)
