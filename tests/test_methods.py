"""Pruning and dynamic sparse training: options, the invariants of every update, and whole runs.

Invariants: every junction keeps its weight budget N_i fo_i at every step (and every right neuron its
fan-in fi under the fixed fan-in constraint); pruning keeps the largest magnitudes; an update drops the
smallest magnitudes and grows, for RigL, where the dense gradient is largest; the dense gradient RigL
reads equals autograd's through the dense masked net; a run interrupted and resumed ends as one that was not.
"""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from predsparse import rundir
from predsparse.cli.aggregate import summary_row
from predsparse.errors import ConfigError
from predsparse.methods import masks
from predsparse.methods.controllers import DynamicSparse, MagnitudePruning, make_controller
from predsparse.methods.options import DYNAMIC_DEFAULTS, drop_fraction, parse_method
from predsparse.nn import MaskedLinear, SparseLinear
from predsparse.patterns import generate_pattern, load_pattern
from predsparse.scatter import scatter_vector
from predsparse.spec import RunSpec
from predsparse.train import make_optimizer, train_epoch, train_run
from conftest import VOLATILE, make_spec, synthetic_morse

pytestmark = pytest.mark.usefixtures("one_thread")

NET = (64, 128, 64)
FANOUTS = (32, 8)  # fi = 16 and 16: junction densities 25 % and 12.5 %


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    for kind in ("random", "unstructured"):
        generate_pattern(NET, FANOUTS, kind, 0).save(root / f"{kind}.npz")
    return {"data": synthetic_morse(root / "morse.npz", n=(512, 128, 128)), "pattern": root / "random.npz",
            "root": root}


# --- options ------------------------------------------------------------------------------------------

def test_method_is_stored_canonical_and_fixed_runs_keep_their_id():
    assert parse_method("rigl", 30) == {"name": "rigl", **DYNAMIC_DEFAULTS}
    assert parse_method({"name": "set", "update_every": 7}, 30)["update_every"] == 7
    assert parse_method("prune", 30) == {"name": "prune", "finetune_epochs": 15}
    assert parse_method(None, 30) == parse_method("predefined", 30) == {}
    raw = {"study": "s", "run_name": "r", "dataset": "morse", "data": "d.npz", "pattern": "p.npz", "epochs": 10}
    fixed, rigl = RunSpec.from_dict(raw), RunSpec.from_dict({**raw, "method": "rigl"})
    assert rigl.method == parse_method("rigl", 10) and rigl.run_id() != fixed.run_id()
    # The id of a fixed-connection run of our init is the hash it had before specs had a method or an init.
    import hashlib
    payload = {k: v for k, v in fixed.to_dict().items() if k not in ("tracking_uri", "device", "preset", "method", "init")}
    assert fixed.run_id() == hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    assert RunSpec.from_dict({**raw, "init": "he_dense"}).run_id() != fixed.run_id()


@pytest.mark.parametrize("raw, message", [
    ("magic", "method 'magic' is not one of"),
    ({"name": "rigl", "every": 3}, r"unknown option\(s\) \['every'\]"),
    ({"name": "rigl", "fraction": 1.0}, "'fraction' must be a number > 0 and < 1"),
    ({"name": "set", "update_every": 0}, "'update_every' must be an integer >= 1"),
    ({"name": "set", "schedule": "linear"}, "'schedule' 'linear' is not one of"),
    ({"name": "prune", "finetune_epochs": 10}, "'finetune_epochs' must be an integer >= 1 and < 10"),
    (3, "method must be a name or a mapping"),
])
def test_bad_methods_are_refused_in_one_line(raw, message):
    with pytest.raises(ConfigError, match=message) as error:
        parse_method(raw, 10, "spec s")
    assert "\n" not in str(error.value) and str(error.value).startswith("spec s: ")


def test_drop_fraction_follows_the_cosine_schedule_and_stops():
    method = parse_method({"name": "rigl", "update_every": 10, "fraction": 0.4, "stop": 0.5}, 10)
    total = 200  # updates after steps 10, 20, ..., 90; step 100 is the stop
    fractions = {step + 1: drop_fraction(method, step, total) for step in range(total)}
    assert [s for s, f in fractions.items() if f] == list(range(10, 100, 10))
    assert fractions[50] == pytest.approx(0.4 / 2 * (1 + math.cos(math.pi * 50 / 100)))
    assert fractions[10] == pytest.approx(0.2 * (1 + math.cos(math.pi / 10)))
    constant = {**method, "schedule": "constant"}
    assert {drop_fraction(constant, s, total) for s in range(9, 99, 10)} == {0.4}


# --- one update at a time -----------------------------------------------------------------------------

def sparse_layer(seed=0) -> SparseLinear:
    torch.manual_seed(seed)
    return SparseLinear.from_pattern(generate_pattern([40, 24], [6], "random", seed), 0)  # fi = 10


def test_replace_per_row_drops_smallest_grows_largest_and_keeps_fan_in():
    layer = sparse_layer()
    optimizer = torch.optim.Adam(layer.parameters())
    layer(torch.randn(8, 40)).sum().backward()
    optimizer.step()
    before = {(r, int(c)): w for r in range(24)
              for c, w in zip(layer.fan_in_index[r].tolist(), layer.weight[r].tolist())}
    moments = {(r, int(c)): m for r in range(24)
               for c, m in zip(layer.fan_in_index[r].tolist(), optimizer.state[layer.weight]["exp_avg"][r].tolist())}
    scores = torch.rand(24, 40, generator=torch.Generator().manual_seed(1))
    k = 3
    new_values = torch.full((24, k), 7.0)
    masks.replace_per_row(layer, k, scores, new_values, optimizer)
    assert layer.fan_in_index.shape == (24, 10)
    for r in range(24):
        old = sorted((c for (row, c) in before if row == r), key=lambda c: abs(before[r, c]))
        dropped, kept = set(old[:k]), set(old[k:])
        candidates = [c for c in range(40) if c not in kept]
        grown = set(sorted(candidates, key=lambda c: -scores[r, c].item())[:k])
        now = layer.fan_in_index[r].tolist()
        assert now == sorted(kept | grown)  # sorted row, fan-in fi
        for c, w, m in zip(now, layer.weight[r].tolist(), optimizer.state[layer.weight]["exp_avg"][r].tolist()):
            if c in grown:
                assert (w, m) == (7.0, 0.0)
            else:  # kept connections keep their weights and optimiser state
                assert (w, m) == (pytest.approx(before[r, c]), pytest.approx(moments[r, c]))
        assert min(abs(before[r, c]) for c in kept) >= max(abs(before[r, c]) for c in dropped)


def test_replace_overall_keeps_the_count_and_grows_largest_scores():
    torch.manual_seed(0)
    layer = MaskedLinear.from_pattern(generate_pattern([40, 24], [6], "unstructured", 0), 0)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    layer(torch.randn(8, 40)).sum().backward()
    optimizer.step()
    mask, weight = layer.mask.clone(), layer.weight.detach().clone()
    scores = torch.rand(24, 40, generator=torch.Generator().manual_seed(2))
    k = 50
    masks.replace_overall(layer, k, scores, torch.full_like(weight, 5.0), optimizer)
    assert layer.mask.sum() == mask.sum() == 240
    grown = layer.mask & (layer.weight == 5.0)  # a dropped connection may come back, as new
    kept = layer.mask & ~grown
    dropped = mask & ~kept
    assert int(kept.sum()) == 240 - k and bool((kept <= mask).all()) and int(grown.sum()) == k
    assert weight.abs()[kept].min() >= weight.abs()[dropped].max()
    assert scores[grown].min() >= scores[~kept & ~grown].max()
    assert (layer.weight[grown] == 5.0).all() and (layer.weight[~layer.mask] == 0).all()
    assert torch.equal(layer.weight[kept], weight[kept])
    assert (optimizer.state[layer.weight]["momentum_buffer"][grown] == 0).all()


def test_pruning_keeps_largest_magnitudes_per_row_or_per_junction(inputs):
    for kind in ("random", "unstructured"):
        spec = make_spec(inputs, kind, method={"name": "prune", "finetune_epochs": 1}, epochs=2)
        pruning = MagnitudePruning(spec, load_pattern(spec.pattern))
        dense = pruning.build()
        assert all(type(j) is nn.Linear for j in dense.cls.junctions)
        pruning.attach(dense, make_optimizer(spec, dense))
        assert pruning.start_epoch(2 - 1) is None and pruning.eligible(2) and not pruning.eligible(1)
        pruned = pruning.start_epoch(2)
        for i, (layer, old) in enumerate(zip(pruned.cls.junctions, dense.cls.junctions)):
            w = old.weight.detach().abs()
            if kind == "random":
                assert isinstance(layer, SparseLinear) and layer.fan_in == (16, 16)[i]
                keep = torch.zeros_like(w, dtype=torch.bool).scatter_(1, layer.fan_in_index.long(), True)
                for r in range(w.shape[0]):
                    assert w[r][keep[r]].min() >= w[r][~keep[r]].max()
                torch.testing.assert_close(layer.weight, old.weight.gather(1, layer.fan_in_index.long()))
            else:
                assert isinstance(layer, MaskedLinear)
                keep = layer.mask
                assert w[keep].min() >= w[~keep].max()
            assert keep.sum() == NET[i] * FANOUTS[i]
        assert pruning.start_epoch(3) is None  # pruned once


def test_rigl_gradient_is_the_dense_masked_gradient_and_guides_growth(inputs):
    spec = make_spec(inputs, "random", method={"name": "rigl", "update_every": 1})
    rigl = make_controller(spec, load_pattern(spec.pattern), steps_per_epoch=100)
    model = rigl.build()
    rigl.attach(model, make_optimizer(spec, model))
    x, y = torch.randn(16, 64), torch.randint(0, 64, (16,))
    # Reference: the same net with dense nn.Linear layers holding the sparse weights (zeros elsewhere).
    reference = [nn.Linear(64, 128), nn.Linear(128, 64)]
    for ref, layer in zip(reference, model.cls.junctions):
        ref.weight.data, ref.bias.data = layer.dense_weight(), layer.bias.detach().clone()
    out = reference[1](torch.relu(reference[0](x)))
    nn.functional.cross_entropy(out, y).backward()
    rigl.before_batch(0)
    nn.functional.cross_entropy(model(x), y).backward()
    captured = {i: g.clone() for i, g in rigl.gradients.items()}
    for i, ref in enumerate(reference):
        torch.testing.assert_close(captured[i], ref.weight.grad, atol=1e-6, rtol=1e-5)
    layer = model.cls.junctions[0]
    old = layer.fan_in_index.clone()
    rigl.after_step(0)
    assert not rigl._hooks and not rigl.gradients
    for r in range(layer.out_features):  # every grown connection beats every one not grown or kept
        new = set(layer.fan_in_index[r].tolist())
        grown = new - set(old[r].tolist())
        others = set(range(64)) - new
        if grown and others:
            g = captured[0][r].abs()
            assert min(g[c] for c in grown) >= max(g[c] for c in others)


class BudgetCheck:
    """Wraps a controller and checks every junction's budget after every optimiser step."""

    def __init__(self, inner, budgets, fan_ins):
        self.inner, self.budgets, self.fan_ins, self.updates = inner, budgets, fan_ins, 0

    def before_batch(self, step):
        self.inner.before_batch(step)
        self.updates += bool(self.inner.fraction)

    def after_step(self, step):
        self.inner.after_step(step)
        for i, layer in enumerate(self.inner.model.cls.junctions):
            if isinstance(layer, SparseLinear):
                index = layer.fan_in_index
                assert index.shape == (NET[i + 1], self.fan_ins[i])
                assert (index.sort(1).values.diff(dim=1) > 0).all()  # no repeated connection in a row
            else:
                assert int(layer.mask.sum()) == self.budgets[i]


@pytest.mark.parametrize("name", ["set", "rigl"])
@pytest.mark.parametrize("kind", ["random", "unstructured"])
def test_budget_is_kept_exactly_at_every_step(inputs, name, kind):
    spec = make_spec(inputs, kind, method={"name": name, "update_every": 2, "fraction": 0.5})
    data = np.load(inputs["data"])
    x, y = torch.from_numpy(data["xtr"]), torch.from_numpy(data["ytr"])
    controller = make_controller(spec, load_pattern(spec.pattern), steps_per_epoch=16)
    model = controller.build()
    optimizer = make_optimizer(spec, model)
    controller.attach(model, optimizer)
    start = [layer.fan_in_index.clone() if isinstance(layer, SparseLinear) else layer.mask.clone()
             for layer in model.cls.junctions]
    check = BudgetCheck(controller, [n * fo for n, fo in zip(NET, FANOUTS)], (16, 16))
    for epoch in range(2):
        train_epoch(model, optimizer, x, y, 32, torch.Generator().manual_seed(epoch), lambda *a: None, check, epoch * 16)
    assert check.updates == 16  # after steps 2, 4, ..., 32, all before the stop at 0.75 * 3 epochs * 16 = 36
    now = [layer.fan_in_index if isinstance(layer, SparseLinear) else layer.mask for layer in model.cls.junctions]
    assert any(not torch.equal(a, b) for a, b in zip(start, now))  # the connections did change


# --- whole runs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, method", [
    ("random", {"name": "prune", "finetune_epochs": 2}),
    ("unstructured", {"name": "prune", "finetune_epochs": 2}),
    ("random", {"name": "set", "update_every": 4}),
    ("random", {"name": "rigl", "update_every": 4}),
    ("unstructured", {"name": "rigl", "update_every": 4}),
])
def test_run_saves_its_final_pattern_and_describes_it(inputs, tmp_path, kind, method):
    spec = make_spec(inputs, kind, method=method)
    metrics = train_run(spec, tmp_path, track=False)
    final = load_pattern(tmp_path / rundir.FINAL_PATTERN)
    initial = load_pattern(spec.pattern)
    assert [final.num_weights(i) for i in range(2)] == [initial.num_weights(i) for i in range(2)]
    if kind == "random":  # fixed fan-in kept: equal row lengths
        for i in range(2):
            assert set(np.diff(final.indptr[i])) == {initial.fanins[i]}
    assert metrics["scatter"] == scatter_vector(final).to_dict()
    assert metrics["initial"]["scatter"] == scatter_vector(initial).to_dict()
    assert metrics["pattern"]["weights"] == metrics["initial"]["pattern"]["weights"] == 64 * 32 + 128 * 8
    assert metrics["model"]["params"]["cl_weights"] == 64 * 32 + 128 * 8
    if method["name"] == "prune":
        assert metrics["best_val_epoch"] > 1  # epoch 1 is the dense phase
    row = summary_row(metrics)
    assert row["method"] == method["name"] and row["kind"] == kind
    assert json.loads(row["method_options"]) == {k: v for k, v in spec.method.items() if k != "name"}
    assert row["scatter"] == scatter_vector(final).scatter


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("method, stop_after", [
    ({"name": "prune", "finetune_epochs": 2}, 1),  # killed at the end of the dense phase
    ({"name": "prune", "finetune_epochs": 3}, 2),  # killed while fine-tuning
    ({"name": "rigl", "update_every": 4}, 2),
    ({"name": "set", "update_every": 4}, 1),
])
def test_interrupted_run_resumes_to_the_same_result(inputs, tmp_path, monkeypatch, method, stop_after):
    spec = make_spec(inputs, "random", method=method, epochs=4)
    reference = train_run(spec, tmp_path / "reference", track=False)
    from predsparse import train

    save = train._save_checkpoint
    calls = []

    def save_then_die(path, state):
        save(path, state)
        calls.append(path)
        if len(calls) == stop_after:
            raise Interrupted

    monkeypatch.setattr(train, "_save_checkpoint", save_then_die)
    with pytest.raises(Interrupted):
        train_run(spec, tmp_path / "run", track=False)
    monkeypatch.setattr(train, "_save_checkpoint", save)
    resumed = train_run(spec, tmp_path / "run", track=False)

    def stable(m):
        return {k: v for k, v in m.items() if k not in VOLATILE}
    assert stable(resumed) == stable(reference)
    assert (tmp_path / "run" / rundir.FINAL_PATTERN).read_bytes() == \
        (tmp_path / "reference" / rundir.FINAL_PATTERN).read_bytes()


def test_method_needs_a_pattern_with_a_constraint(inputs, tmp_path):
    generate_pattern(NET, FANOUTS, "planned", 0).save(tmp_path / "planned.npz")
    spec = make_spec(inputs, method="rigl", pattern=str(tmp_path / "planned.npz"))
    with pytest.raises(ConfigError, match="needs a pattern of kind random or unstructured"):
        train_run(spec, tmp_path / "run", track=False)


def test_new_connections_follow_the_runs_init_law():
    """SET's regrown weights: U(+-1/sqrt(fi)) under our init, N(0, 2/N_i) under the authors'."""
    from predsparse.methods import masks

    g = torch.Generator().manual_seed(0)
    ours = masks.init_like(torch.empty(4096, 8), torch.tensor(8.0), g)
    assert ours.abs().max() <= 8 ** -0.5 and abs(ours.std().item() * (3 * 8) ** 0.5 - 1) < 0.03
    authors = masks.init_like(torch.empty(4096, 8), torch.tensor(8.0), g, "he_dense", in_features=64)
    assert abs(authors.std().item() * (64 / 2) ** 0.5 - 1) < 0.03 and authors.abs().max() > 8 ** -0.5
