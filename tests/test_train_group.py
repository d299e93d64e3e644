"""Grouped training: runs that share a net trained in one stacked step (Adam) or one after the other on
the fused step (SGD), each bit-for-bit as if alone."""

import json

import pytest
import torch

from predsparse import rundir
from predsparse.errors import ConfigError, TrainingError
from predsparse.nn import native
from predsparse.patterns import generate_pattern
from predsparse.spec import RunSpec
from predsparse.train import train_run
from predsparse.train_group import train_group
from conftest import VOLATILE, synthetic_morse

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason=native.STATUS)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("group")
    data = synthetic_morse(root / "morse.npz")
    for seed in (0, 1, 2):
        generate_pattern([64, 128, 64], [32, 8], "random", seed).save(root / f"p{seed}.npz")
    generate_pattern([64, 128, 64], [64, 4], "random", 0).save(root / "other.npz")

    def spec(seed, pattern=None, **changes):
        settings = dict(study="g", run_name=f"s{seed}", dataset="morse", data=str(data),
                        pattern=str(root / (pattern or f"p{seed}.npz")), seed=seed, optimizer="adam", lr=0.01,
                        weight_decay=1e-4, batch_size=100, epochs=3, device="cpu")
        return RunSpec(**{**settings, **changes})

    return root, spec


def _comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in VOLATILE | {"group"}}


def _history(out) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in rundir.read_history(out / rundir.HISTORY)]


@pytest.mark.parametrize("threads, batch_size", [(1, 100), (2, 100), (1, 10)])  # 10: x under the weights' count
def test_grouped_runs_equal_their_single_runs_bit_for_bit(setting, tmp_path, threads, batch_size):
    _, spec = setting
    specs = [spec(seed, batch_size=batch_size, epochs=3 if batch_size == 100 else 1) for seed in (0, 1, 2)]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        grouped = train_group(specs, [tmp_path / "g" / s.run_name for s in specs], track=False)
        alone = [train_run(s, tmp_path / "a" / s.run_name, track=False) for s in specs]
    finally:
        torch.set_num_threads(before)
    for s, g, a in zip(specs, grouped, alone):
        assert g["group"]["runs"] == 3 and g["group"]["stacked"] and "group" not in a
        assert _comparable(g) == _comparable(a)
        assert _history(tmp_path / "g" / s.run_name) == _history(tmp_path / "a" / s.run_name)
        ours = torch.load(tmp_path / "g" / s.run_name / rundir.CHECKPOINT, weights_only=True)
        theirs = torch.load(tmp_path / "a" / s.run_name / rundir.CHECKPOINT, weights_only=True)
        for part in ("model", "best_model"):
            assert ours[part].keys() == theirs[part].keys()
            for key in ours[part]:
                assert torch.equal(ours[part][key], theirs[part][key]), (part, key)
        for pid, state in theirs["optimizer"]["state"].items():
            for key, value in state.items():  # Adam's step, exp_avg, exp_avg_sq
                assert torch.equal(torch.as_tensor(ours["optimizer"]["state"][pid][key]), torch.as_tensor(value))
    assert len({g["test_acc"] for g in grouped}) > 1  # the runs really differ


def test_sgd_groups_train_one_after_the_other_on_the_fused_step(setting, tmp_path, monkeypatch):
    """SGD runs are not stacked: each trains alone on the fused step, so each is its single run."""
    import predsparse.train_group as train_group_module

    _, spec = setting
    torch.set_num_threads(1)
    specs = [spec(seed, optimizer="sgd", lr=0.1, momentum=0.9) for seed in (0, 1)]

    def no_stack(models):
        raise AssertionError("SGD runs were stacked")

    monkeypatch.setattr(train_group_module.StackedConnectedLayers, "from_models", no_stack)
    grouped = train_group(specs, [tmp_path / "g" / s.run_name for s in specs], track=False)
    for s, g in zip(specs, grouped):
        assert "group" not in g
        assert _comparable(g) == _comparable(train_run(s, tmp_path / "a" / s.run_name, track=False))
        assert _history(tmp_path / "g" / s.run_name) == _history(tmp_path / "a" / s.run_name)


def _interrupt_evaluation(monkeypatch, module, after: int) -> None:
    """Make `module.evaluate` raise KeyboardInterrupt (a kill) on its call number after + 1."""
    real, calls = module.evaluate, []

    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "evaluate", evaluate)


def test_killed_group_resumes_stacked_to_the_same_results(setting, tmp_path, monkeypatch):
    import predsparse.train_group as train_group_module

    _, spec = setting
    torch.set_num_threads(1)
    specs = [spec(0), spec(1)]
    outs = [tmp_path / "g" / s.run_name for s in specs]
    _interrupt_evaluation(monkeypatch, train_group_module, after=4)  # killed in epoch 3, both at epoch 2
    with pytest.raises(KeyboardInterrupt):
        train_group(specs, outs, track=False)
    monkeypatch.undo()
    assert [len(rundir.read_history(out / rundir.HISTORY)) for out in outs] == [2, 2]
    resumed = train_group(specs, outs, track=False)
    for s, g in zip(specs, resumed):
        assert _comparable(g) == _comparable(train_run(s, tmp_path / "a" / s.run_name, track=False))


def test_group_takes_over_a_run_killed_alone(setting, tmp_path, monkeypatch):
    """A run killed after two epochs alone resumes in a group (here alone: the other run is at epoch 0)."""
    import predsparse.train as train_module

    _, spec = setting
    torch.set_num_threads(1)
    specs = [spec(0), spec(1)]
    outs = [tmp_path / "g" / s.run_name for s in specs]
    _interrupt_evaluation(monkeypatch, train_module, after=2)
    with pytest.raises(KeyboardInterrupt):
        train_run(specs[0], outs[0], track=False)
    monkeypatch.undo()
    results = train_group(specs, outs, track=False)
    for s, g in zip(specs, results):
        assert _comparable(g) == _comparable(train_run(s, tmp_path / "a" / s.run_name, track=False))


def test_only_runs_that_share_everything_but_pattern_and_seed_group(setting, tmp_path):
    _, spec = setting
    assert spec(0).group_key() == spec(1).group_key() == spec(2, pattern="other.npz").group_key()
    assert spec(0).group_key() != spec(0, lr=0.2).group_key()
    assert spec(0, method={"name": "prune"}).group_key() is None
    with pytest.raises(ConfigError, match="differ in more than"):
        train_group([spec(0), spec(1, lr=0.2)], [tmp_path / "a", tmp_path / "b"], track=False)


def test_runs_of_other_shapes_train_one_after_the_other(setting, tmp_path):
    _, spec = setting
    torch.set_num_threads(1)
    specs = [spec(0), spec(2, pattern="other.npz")]  # fan-ins 16 and 32: they cannot stack
    grouped = train_group(specs, [tmp_path / "g0", tmp_path / "g1"], track=False)
    assert all("group" not in g for g in grouped)
    assert _comparable(grouped[1]) == _comparable(train_run(specs[1], tmp_path / "a1", track=False))


def test_a_diverging_run_fails_alone_and_the_others_finish(setting, tmp_path, monkeypatch):
    import predsparse.train_group as train_group_module

    _, spec = setting
    torch.set_num_threads(1)
    specs = [spec(0), spec(1)]
    outs = [tmp_path / "g" / s.run_name for s in specs]
    real = train_group_module.StackedConnectedLayers.from_models

    def poisoned(models):
        stack = real(models)
        with torch.no_grad():
            stack.weights[0][1].fill_(float("nan"))  # run 1 diverges at once
        return stack

    monkeypatch.setattr(train_group_module.StackedConnectedLayers, "from_models", poisoned)
    with pytest.raises(TrainingError, match="run s1 failed"):
        train_group(specs, outs, track=False)
    failure = json.loads((outs[1] / rundir.FAILURE).read_text())
    assert failure["status"] == "failed" and "non-finite training loss in epoch 1" in failure["error"]
    assert not (outs[1] / rundir.METRICS).exists()
    monkeypatch.undo()
    ok = json.loads((outs[0] / rundir.METRICS).read_text())
    assert _comparable(ok) == _comparable(train_run(specs[0], tmp_path / "a0", track=False))
