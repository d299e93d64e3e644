"""One vocabulary (predsparse.catalog): every part of the package knows the catalogue's datasets, models,
methods and run-setting choices, and none spells them a second time."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from predsparse import catalog
from predsparse.catalog import DATASETS, INITS, KIND_METHODS, METHODS, MODELS, OPTIMIZERS, input_layouts, pairs
from predsparse.errors import ConfigError
from predsparse.pipeline.plan import load_plan

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "predsparse"
PRESETS = ("config.yaml", "config/morse.yaml", "config/smoke.yaml", "config/morse_ablation.yaml", "config/mnist.yaml",
           "config/mnist_conv.yaml")
# Names the catalogue's concepts had before it existed (and obvious new ones): no module but the catalogue
# may define them at top level. Importing them from the catalogue is fine.
CONCEPT_NAMES = {"DATASETS", "NUM_CLASSES", "MODELS", "OPTIMIZERS", "INITS", "DEVICES", "INPUT_LAYOUTS", "INPUT_SHAPES",
                 "FEATURE_SHAPES", "JOB_RESOURCES", "METHOD", "METHOD_NAMES", "METHOD_ORDER", "METHOD_MARKERS",
                 "MARKERS", "DATASET_NAMES", "REAL_INPUTS", "KIND_METHODS", "DatasetInfo"}


def _top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
    return names


def test_no_module_but_the_catalogue_defines_a_concept_of_it():
    defined = {str(path.relative_to(SRC)): sorted(_top_level_names(path) & CONCEPT_NAMES)
               for path in SRC.rglob("*.py") if path.name != "catalog.py"}
    assert {path: names for path, names in defined.items() if names} == {}


def test_the_catalogue_imports_nothing_heavy_and_its_readers_no_torch():
    code = ("import sys; import predsparse.catalog; heavy = sorted(m for m in ('numpy', 'torch', 'yaml') "
            "if m in sys.modules); import predsparse.spec, predsparse.pipeline.plan, predsparse.report, "
            "predsparse.report.analysis, predsparse.cli.aggregate, predsparse.cli.train, predsparse.data; "
            "print(heavy, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[] False"


def test_spec_and_data_read_the_catalogue():
    from predsparse import data, spec
    from predsparse.data import cifar, mnist, morse
    from predsparse.spec import RunSpec

    assert (spec.DATASETS, spec.MODELS, spec.OPTIMIZERS, spec.INITS, spec.DEVICES) == (
        DATASETS, MODELS, OPTIMIZERS, INITS, catalog.DEVICES)
    assert data.DATASETS is DATASETS and mnist.LAYOUTS is DATASETS["mnist"].layouts
    base = {"study": "s", "run_name": "r", "data": "d", "pattern": "p"}
    for dataset in DATASETS:
        assert RunSpec.from_dict({**base, "dataset": dataset}).num_classes == DATASETS[dataset].num_classes
    with pytest.raises(ConfigError, match=str(list(MODELS)).replace("[", r"\[").replace("]", r"\]")):
        RunSpec.from_dict({**base, "dataset": "mnist", "model": "resnet"})
    # The loaders make what the catalogue says.
    assert {name: source.num_classes for name, source in cifar.SOURCES.items()} == {
        name: DATASETS[name].num_classes for name in cifar.SOURCES}
    assert len(morse.load_codebook()) == DATASETS["morse"].num_classes
    assert (morse.MorseParams().framelen,) == DATASETS["morse"].layouts["flat"]
    side, padded = mnist.IMAGE_SIDE, mnist.IMAGE_SIDE + 2 * mnist.PAD
    assert DATASETS["mnist"].real_inputs == {"pad32": f"{side}x{side}/{padded}x{padded}"}
    assert DATASETS["mnist"].layouts["pad32"] == (padded * padded,)
    assert DATASETS["mnist"].layouts["conv"] == (1, side, side)


def test_input_layouts_are_the_table_the_pipeline_had():
    """Derived from the layouts' shapes and the models' input shapes, they are the table plan.py spelled out."""
    table = {(d, m): input_layouts(d, m) for d, m in pairs()}
    assert table == {("morse", "mlp"): {64: "flat"}, ("mnist", "mlp"): {784: "flat", 1024: "pad32"},
                     ("mnist", "mnist_conv"): {3136: "conv"}, ("cifar10", "cifar_conv"): {4096: "conv"},
                     ("cifar100", "cifar_conv"): {4096: "conv"}}
    from predsparse.defaults import HYPERPARAMETERS

    assert sorted(HYPERPARAMETERS) == sorted(pairs())  # every pair that goes together has its defaults


def test_models_build_the_catalogues_shapes():
    torch = pytest.importorskip("torch")
    from predsparse.nn import models

    assert set(models.CONV_STACKS) == {m for m, info in MODELS.items() if info.feature_shape is not None}
    for name, stack in models.CONV_STACKS.items():
        info = MODELS[name]
        with torch.no_grad():
            out = stack().eval()(torch.zeros(1, *info.input_shape))
        assert tuple(out.shape[1:]) == info.feature_shape, name
        assert math.prod(info.feature_shape) in {n for d, m in pairs() if m == name for n in input_layouts(d, m)}


def test_methods_and_kinds_are_the_ones_the_code_knows():
    from predsparse.methods.options import METHODS as TRAINED
    from predsparse.patterns.generate import KINDS

    assert tuple(m for m, info in METHODS.items() if not info.fixed) == TRAINED
    assert set(KIND_METHODS) == set(KINDS) and set(KIND_METHODS.values()) <= set(METHODS)
    assert all(METHODS[m].fixed for m in KIND_METHODS.values())


def test_the_config_schema_spells_the_catalogue():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    study = schema["properties"]["studies"]["additionalProperties"]["properties"]
    training = schema["$defs"]["training"]["properties"]
    assert study["dataset"]["enum"] == list(DATASETS) and study["model"]["enum"] == list(MODELS)
    assert list(schema["properties"]["resources"]["properties"]) == list(MODELS)
    assert all(set(m.job_resources) == set(schema["$defs"]["job_resources"]["properties"]) for m in MODELS.values())
    assert training["optimizer"]["oneOf"][0]["enum"] == list(OPTIMIZERS)
    assert training["init"]["oneOf"][0]["enum"] == list(INITS)
    assert schema["properties"]["device"]["enum"] == list(catalog.DEVICES)
    assert schema["$defs"]["method_name"]["enum"] == [m for m, info in METHODS.items() if not info.fixed]
    assert schema["$defs"]["pattern_group"]["properties"]["kind"]["enum"] == list(KIND_METHODS)


def test_report_names_orders_and_draws_methods_and_datasets_as_the_catalogue():
    from predsparse.report.analysis import dataset_name, method_label, method_name
    from predsparse.report.beyond import order
    from predsparse.report.figures import _marker

    assert [method_name(m) for m in METHODS] == [info.label for info in METHODS.values()]
    assert method_label("predefined", "random", "erk") == "pre-defined (ERK)" and method_label("rigl") == "RigL"
    assert [dataset_name(d) for d in DATASETS] == ["Morse", "MNIST", "CIFAR-10", "CIFAR-100"]
    assert [_marker(m) for m in METHODS] == ["P", "o", "^", "v", "s", "D"] and _marker("other") == "P"

    @dataclasses.dataclass(frozen=True)
    class G:
        method: str
        kind: str = "random"
        allocation: str = ""
        method_options: str = ""

    assert sorted((G(m) for m in reversed(list(METHODS))), key=order) == [G(m) for m in METHODS]


def test_job_resources_come_from_the_catalogue_and_configs_change_what_they_name():
    plan = load_plan(REPO / "config.yaml")  # the paper preset reserves exactly the catalogue's
    for run in plan.runs:
        assert run.resources == {**MODELS[run.spec.model].job_resources, "gpu": 0}
    mnist = load_plan(REPO / "config/mnist.yaml")  # changes the runtime only
    assert {json.dumps(r.resources, sort_keys=True) for r in mnist.runs} == {
        json.dumps({**MODELS["mlp"].job_resources, "runtime": 60, "gpu": 0}, sort_keys=True)}


def _identity_flags(spec) -> list[str]:
    """The `predsparse train` flags that name a run: everything of its spec but the hyper-parameters."""
    flags = ["--study", spec.study, "--run-name", spec.run_name, "--dataset", spec.dataset, "--data", spec.data,
             "--pattern", spec.pattern, "--model", spec.model, "--seed", str(spec.seed), "--device", spec.device]
    if spec.variant is not None:
        flags += ["--variant", spec.variant]
    if spec.tracking_uri is not None:
        flags += ["--tracking-uri", spec.tracking_uri]
    if spec.method:
        flags += ["--method", json.dumps(spec.method)]
    return flags


@pytest.mark.parametrize("preset", PRESETS)
def test_cli_train_and_the_pipeline_resolve_the_same_run_spec(preset, tmp_path):
    """For every run of a study whose config leaves the hyper-parameters alone, `predsparse train` given the
    run's identity by flags resolves the pipeline's spec (but for the tags it cannot set: extra, preset),
    and given the pipeline's spec file resolves it exactly."""
    from predsparse.cli import train as train_cli

    plan = load_plan(REPO / preset)
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    compared = 0
    for run in plan.runs:
        if "training" in plan.config or "training" in plan.config["studies"][run.study]:
            continue
        cli = train_cli._resolve(parser.parse_args(_identity_flags(run.spec)), None)
        assert dataclasses.replace(cli, extra=run.spec.extra, preset=run.spec.preset) == run.spec, run.name
        compared += 1
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(plan.runs[0].spec.to_dict()))
    assert train_cli._resolve(parser.parse_args(["--spec", str(spec_file)]), str(spec_file)) == plan.runs[0].spec
    assert compared or preset == "config/smoke.yaml"
