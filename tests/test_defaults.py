"""One table of default hyper-parameters: the CLI and the pipeline resolve the same run settings."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from predsparse.catalog import INITS
from predsparse.defaults import HYPERPARAMETERS, KEYS, REASONS, defaults_for, resolve_spec
from predsparse.errors import ConfigError
from predsparse.pipeline.plan import load_plan
from predsparse.spec import RunSpec

REPO = Path(__file__).resolve().parents[1]


def test_every_default_has_a_reason_and_is_a_valid_run_setting():
    assert set(REASONS) == set(KEYS)
    for (dataset, model), row in HYPERPARAMETERS.items():
        assert set(row) == set(KEYS)
        spec = RunSpec.from_dict({"study": "s", "run_name": "r", "dataset": dataset, "model": model, "data": "d",
                                  "pattern": "p", **row})
        assert spec.init in INITS


def test_unknown_pair_names_the_known_ones():
    with pytest.raises(ConfigError, match="mnist/mlp"):
        defaults_for("morse", "cifar_conv")


@pytest.mark.parametrize("preset, study", [("config.yaml", "fig7a_morse_scatter"), ("config/morse.yaml", "fig3a_morse"),
                                           ("config/mnist.yaml", "fig2_mnist_cl"), ("config.yaml", "fig2_mnist_conv2cl")])
def test_cli_and_pipeline_resolve_the_same_hyper_parameters(preset, study):
    """`predsparse train` given only the run's identity gets what the pipeline's spec holds, for every study
    whose config does not change a setting on purpose."""
    from predsparse.cli import train as train_cli

    plan = load_plan(REPO / preset)
    run = next(r for r in plan.runs if r.study == study)
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["--dataset", run.spec.dataset, "--model", run.spec.model, "--data", run.spec.data,
                              "--pattern", run.spec.pattern, "--seed", str(run.spec.seed)])
    raw = {k: getattr(args, k) for k in train_cli._SPEC_FLAGS if getattr(args, k) is not None}
    cli = resolve_spec({"study": "quick", "run_name": "r", **raw})
    for key in KEYS:
        assert getattr(cli, key) == getattr(run.spec, key), key
