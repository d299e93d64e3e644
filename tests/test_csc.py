"""CSC layers (reconstruction from the abstract): patterns, weight counts, the layer, bottom-up growth."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from predsparse.errors import ConfigError, PatternError, PredsparseError
from predsparse.methods.csc_growth import grow, write_growth
from predsparse.nn.csc import CSCLinear, csc_linear_layers
from predsparse.patterns import validate_junction
from predsparse.patterns.csc import (
    CSCConfig,
    CSCLayer,
    budget_weights,
    csc_layers_from_pattern,
    csc_pattern,
    csc_plan,
    csc_radices,
    csc_weight_count,
    cyclic_fan_in,
    format_radices,
    grow_step,
    parse_radices,
    start_config,
)

LENET = (784, 300, 100, 10)
MORSE = (64, 1024, 64)


def path_counts(pattern, n_in: int, n_out: int) -> np.ndarray:
    """Paths from every real input to every real output: the product of the support adjacency matrices."""
    product = np.eye(pattern.net[0], dtype=np.int64)
    for i in range(pattern.num_junctions):
        product = pattern.adjacency(i) @ product
    return product[:n_out, :n_in]


@st.composite
def csc_layer_args(draw):
    """A valid (n_in, n_out, radices) with small sizes, square, compressing or expanding, padded or not."""
    m = draw(st.integers(1, 24))
    big = draw(st.integers(m, 3 * m + 2))
    n_in, n_out = draw(st.sampled_from([(m, m), (big, m), (m, big)]))
    num = draw(st.integers(1, 4))
    radices = draw(st.lists(st.integers(1, m), min_size=num, max_size=num))
    try:
        CSCLayer(n_in, n_out, tuple(radices))
    except PatternError:
        radices = list(csc_radices(n_in, 1, n_out))
    return n_in, n_out, tuple(radices)


@settings(max_examples=200, deadline=None)
@given(csc_layer_args())
def test_csc_layer_invariants(args):
    """Full connectivity, fixed fan-in and fan-out per support layer, and the stated weight counts."""
    n_in, n_out, radices = args
    layer = CSCLayer(n_in, n_out, radices)
    pattern = csc_pattern([n_in, n_out], radices)
    assert pattern.net == layer.widths and pattern.kind == "csc"

    paths = path_counts(pattern, n_in, n_out)
    assert paths.min() >= 1
    if math.prod(radices) == layer.m:
        assert (paths == 1).all()  # mixed radix: exactly one path

    for l, r in enumerate(radices):
        n_left, n_right = pattern.net[l], pattern.net[l + 1]
        assert pattern.fanouts[l] == r * n_right // layer.m and pattern.fanins[l] == r * n_left // layer.m
        validate_junction(pattern.junctions[l], n_left, n_right, pattern.fanouts[l], l + 1)

    assert layer.stored_weights == sum(pattern.num_weights(i) for i in range(pattern.num_junctions))
    # Live weights: all but those on zero-padded inputs (first junction) or dropped outputs (last).
    first, last = pattern.edges(0), pattern.edges(pattern.num_junctions - 1)
    dead = int((first[1] >= n_in).sum()) + int((last[0] >= n_out).sum())
    assert layer.weights == layer.stored_weights - dead == csc_weight_count([n_in, n_out], radices)
    if n_in == n_out:
        assert layer.weights == n_in * sum(radices)
    else:
        r_big = radices[0] if n_in > n_out else radices[-1]
        others = radices[1:] if n_in > n_out else radices[:-1]
        assert layer.weights == max(n_in, n_out) * r_big + layer.m * sum(others)


def test_square_layer_is_the_reference_construction():
    pattern = csc_pattern([1024, 1024], [32, 32])
    assert pattern.net == (1024, 1024, 1024) and pattern.fanouts == (32, 32)
    # support layer 2 (stride P_2 = 32): output 5 reads 5, 37, ..., 997
    assert pattern.junctions[1][5].tolist() == list(range(5, 1024, 32))
    assert pattern.junctions[0][1020].tolist() == sorted((1020 + k) % 1024 for k in range(32))
    assert pattern.meta["N_in"] == pattern.meta["N_out"] == 1024
    assert pattern.meta["radices"] == [[32, 32]] and pattern.meta["weights"] == 1024 * 64
    assert "reconstruction" in pattern.meta["reconstruction"] and "M = min" in pattern.meta["rule"]


def test_lenet_net_weight_counts():
    pattern = csc_pattern(LENET, "3,10,10/2,10,5/1,10")
    assert pattern.net == (900, 300, 300, 300, 100, 100, 100, 10, 10)
    assert pattern.fanouts == (3, 10, 10, 2, 10, 5, 1, 10)
    assert pattern.fanins == (9, 10, 10, 6, 10, 5, 10, 10)
    # 784*3 + 300*(10+10) | 300*2 + 100*(10+5) | 100*1 + 10*10
    assert pattern.meta["weights"] == 2352 + 6000 + 600 + 1500 + 100 + 100 == 10652
    assert pattern.meta["stored_weights"] == 900 * 3 + 6000 + 2100 + 200
    assert pattern.meta["dense_weights"] == 266200
    assert pattern.meta["csc_net"] == list(LENET) and pattern.meta["N_in"] == 784 and pattern.meta["N_out"] == 10


def test_morse_net_pattern():
    pattern = csc_pattern(MORSE, [[8, 8], [8, 8]])
    # expand 64 -> 1024 unfolds in its last support layer, compress 1024 -> 64 folds in its first
    assert pattern.net == (64, 64, 1024, 64, 64)
    assert pattern.fanins == (8, 8, 128, 8) and pattern.fanouts == (8, 128, 8, 8)
    assert pattern.meta["weights"] == 2 * (64 * 8 + 1024 * 8)
    paths = path_counts(pattern, 64, 64)
    assert (paths == 64 * 16).all()  # 64 paths through each stage pair, times 16 lifts of the 1024 layer


def test_cyclic_fan_in_is_computed_without_index_memory():
    layer = CSCLayer(784, 300, (3, 10, 10))
    pattern = csc_pattern([784, 300], layer.radices)
    rows = np.array([0, 7, 299])
    for l in range(layer.num_support):
        onthefly = cyclic_fan_in(rows, layer.widths[l], layer.m, layer.strides[l], layer.radices[l])
        assert (np.sort(onthefly, axis=1) == pattern.junctions[l][rows]).all()
    # folding support layer: output 299 reads (299 + k) mod 300 and its lifts by 300 and 600
    assert cyclic_fan_in(np.array([299]), 900, 300, 1, 3).tolist() == [[299, 599, 899, 0, 300, 600, 1, 301, 601]]


def test_pattern_round_trips_through_a_file(tmp_path):
    from predsparse.patterns import load_pattern

    pattern = csc_pattern(LENET, "3,10,10/2,10,5/1,10")
    pattern.save(tmp_path / "p.npz")
    loaded = load_pattern(tmp_path / "p.npz")
    assert loaded.kind == "csc" and loaded.meta["radices"] == [[3, 10, 10], [2, 10, 5], [1, 10]]
    assert [layer.radices for layer in csc_layers_from_pattern(loaded)] == [(3, 10, 10), (2, 10, 5), (1, 10)]


def test_pattern_not_matching_its_meta_is_rejected():
    from dataclasses import replace

    pattern = csc_pattern([16, 16], [4, 4])
    swapped = replace(pattern, junctions=pattern.junctions[::-1])
    with pytest.raises(PatternError, match="does not hold the cyclic support layers"):
        csc_layers_from_pattern(swapped)
    with pytest.raises(PatternError, match="not a CSC pattern"):
        csc_layers_from_pattern(replace(pattern, kind="random"))


@pytest.mark.parametrize(
    "net, radices, message",
    [
        ([64, 64], [4, 4], "product of radices 16 < M=64"),
        ([64, 64], [8, 9], "radix 9 but stride P_2=8 repeats after 8 offsets"),
        ([64, 64], [0, 64], "every radix must be >= 1"),
        ([64, 64], [], "radices '' give 0"),
        ([784, 300, 100, 10], [32, 32], "give one radix group per layer"),
        ([5, 7, 3], "5/3", "CSC layer 1 ends at width 10 but CSC layer 2 starts at width 9"),
        ([64, 64], "8,x", "cannot be read"),
        ([64, 64], "8,8/", "cannot be read"),
        ([64, 0], [8], "layer 2 of net"),
        ([64, 64], [8.5, 8], "must be whole numbers"),
        ([64, 64], 8, "must be whole numbers"),
        ([64, 64], [["a"]], "must be whole numbers"),
    ],
)
def test_bad_radices_and_nets_are_named(net, radices, message):
    with pytest.raises(PatternError, match=message):
        csc_pattern(net, radices)


def test_a_layer_needs_a_support_layer():
    with pytest.raises(PatternError, match="at least one radix"):
        CSCLayer(8, 8, ())


def test_parse_and_format_radices():
    assert parse_radices("3,10,10/2,10,5/1,10") == ((3, 10, 10), (2, 10, 5), (1, 10))
    assert format_radices(parse_radices("32,32")) == "32,32"


@pytest.mark.parametrize(
    "n, num_layers, n_out, expected",
    [
        (1024, 2, None, (32, 32)),
        (4096, 3, None, (16, 16, 16)),
        (784, 3, 300, (3, 10, 10)),
        (64, 2, 1024, (32, 2)),
        (1024, 2, 64, (2, 32)),
        (100, 2, 10, (2, 5)),
    ],
)
def test_csc_radices_known_values(n, num_layers, n_out, expected):
    assert csc_radices(n, num_layers, n_out) == expected


@pytest.mark.parametrize("n_in, n_out", [(12, 12), (16, 16), (20, 6), (6, 20), (18, 18), (25, 10)])
@pytest.mark.parametrize("num_layers", [2, 3])
def test_csc_radices_is_the_sparsest(n_in, n_out, num_layers):
    """No valid radices (all >= 2) with the same number of support layers have fewer weights."""
    m = min(n_in, n_out)
    best = min(
        (CSCLayer(n_in, n_out, r).weights for r in itertools.product(range(2, m + 1), repeat=num_layers)
         if _is_valid(n_in, n_out, r)),
        default=None,
    )
    assert CSCLayer(n_in, n_out, csc_radices(n_in, num_layers, n_out)).weights == best


def _is_valid(n_in, n_out, radices):
    try:
        CSCLayer(n_in, n_out, radices)
    except PatternError:
        return False
    return True


def test_csc_radices_errors():
    with pytest.raises(PatternError, match="cannot have 3 support layers"):
        csc_radices(4, 3)
    with pytest.raises(PatternError, match="integer >= 1"):
        csc_radices(16, 0)


def test_scatter_of_a_csc_pattern():
    from predsparse.scatter import scatter_vector

    result = scatter_vector(csc_pattern([64, 64], [8, 8]))
    assert len(result.vector) == 2 * 2 + 2
    assert [float(s) for s in result.vector[-2:]] == [1.0, 1.0]  # equivalent junction: full connectivity
    assert all(0 < s <= 1 for s in result.vector)
    lenet = scatter_vector(csc_pattern(LENET, "3,10,10/2,10,5/1,10"))
    assert len(lenet.vector) == 2 * 8 + 2 and all(0 < s <= 1 for s in lenet.vector)


# ---------------------------------------------------------------- bottom-up growth


def test_budget_and_start():
    assert budget_weights(LENET, 10) == 26620
    start = start_config(LENET, 26620)
    assert start.radices == ((10, 30), (6, 17), (2, 5)) and start.weights == 16840 + 3500 + 250
    deeper = start_config(LENET, budget_weights(LENET, 20))  # two support layers do not fit 13310
    assert [len(r) for r in deeper.radices] == [3, 3, 3] and deeper.weights <= 13310
    with pytest.raises(PatternError, match="choose a compression <= 33.8"):
        start_config(LENET, budget_weights(LENET, 46))
    with pytest.raises(PatternError, match="compression must be a number >= 1"):
        budget_weights(LENET, 0.5)


@pytest.mark.parametrize("net, compression", [(LENET, 10), (LENET, 20), (MORSE, 8), (MORSE, 16), ((256, 256), 4)])
def test_plan_is_the_last_step_within_budget(net, compression):
    budget = budget_weights(net, compression)
    plan = csc_plan(net, compression)
    assert plan.weights <= budget and grow_step(plan, budget) is None
    assert plan.compression >= compression


def test_ladder_grows_weights_and_connectivity():
    config, budget = start_config(MORSE, 10**6), 10**6
    actions = []
    for _ in range(12):
        nxt, action = grow_step(config, budget)
        assert nxt.weights > config.weights
        assert all(math.prod(b) >= math.prod(a) for a, b in zip(config.radices, nxt.radices))
        actions.append(action)
        config = nxt
    assert actions[0] == "fan-in"


def test_support_layer_step_when_fan_in_does_not_fit():
    config = CSCConfig((60, 60), ((4, 4, 4),))  # 720 weights
    assert grow_step(config, 900) == (CSCConfig((60, 60), ((5, 5, 5),)), "fan-in")  # 60 * 15
    # fan-in (900) over budget; a radix-2 support layer in front (strides 1, 2, 8, 32) costs 60 * 14
    assert grow_step(config, 850) == (CSCConfig((60, 60), ((2, 4, 4, 4),)), "support layer")
    assert grow_step(config, 839) is None


def fake_train(accuracy_of_weights):
    trained = []

    def train(config: CSCConfig):
        trained.append(config)
        return accuracy_of_weights(config.weights), f"run-{config.slug}"

    return train, trained


def test_growth_stops_when_the_target_is_reached():
    train, trained = fake_train(lambda w: 0.9 + 0.1 * min(1.0, w / 26000))
    growth = grow(LENET, 10, target=0.02, dense_accuracy=0.98, train_fn=train)
    assert growth.stop_reason == "target reached"
    weights = [row["weights"] for row in growth.rows]
    assert weights == sorted(set(weights)) and all(w <= 26620 for w in weights)
    assert growth.final["accuracy"] >= 0.96 and all(row["accuracy"] < 0.96 for row in growth.rows[:-1])
    assert growth.rows[0]["action"] == "start" and [c.weights for c in trained] == weights


def test_growth_stops_when_the_budget_is_spent(tmp_path):
    train, trained = fake_train(lambda w: 0.5)
    seen = []
    growth = grow(MORSE, 8, target=0.01, dense_accuracy=0.9, train_fn=train, on_step=lambda g: seen.append(len(g.rows)))
    assert growth.stop_reason == "budget spent"
    assert grow_step(trained[-1], budget_weights(MORSE, 8)) is None
    assert trained[-1].radices == csc_plan(MORSE, 8).radices
    assert seen == list(range(1, len(growth.rows) + 1))
    write_growth(growth, tmp_path / "growth.csv")
    lines = (tmp_path / "growth.csv").read_text().splitlines()
    assert len(lines) == len(growth.rows) + 1 and lines[-1].endswith("budget spent")


def test_growth_step_limit_and_bad_arguments():
    train, _ = fake_train(lambda w: 0.0)
    assert grow(LENET, 5, 0.02, 0.98, train, max_steps=3).stop_reason == "step limit"
    with pytest.raises(PredsparseError, match="target must be a fraction"):
        grow(LENET, 5, 2.0, 0.98, train)
    with pytest.raises(PredsparseError, match="max_steps"):
        grow(LENET, 5, 0.02, 0.98, train, max_steps=0)


# ---------------------------------------------------------------- the layer


def dense_reference(layer, x, activation):
    """The CSC layer as dense matrices with zeros at missing connections: (output, dense weights)."""
    dense = [torch.zeros(s.out_features, s.in_features, dtype=x.dtype).scatter(1, s.fan_in_index.long(), s.weight.detach())
             .requires_grad_() for s in layer.support]
    biases = [None if s.bias is None else s.bias.detach().clone().requires_grad_() for s in layer.support]
    h = torch.nn.functional.pad(x, (0, layer.layer.widths[0] - x.shape[1]))
    for l, (w, b) in enumerate(zip(dense, biases)):
        h = torch.nn.functional.linear(h, w, b)
        if l < len(dense) - 1 and activation == "relu":
            h = torch.relu(h)
    return h[:, : layer.out_features], dense, biases


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize(
    "n_in, n_out, radices, batch",
    [(16, 16, (4, 4), 5), (20, 6, (2, 3), 3), (6, 20, (3, 2), 1), (12, 12, (12,), 4), (30, 30, (2, 3, 5), 2)],
)
def test_csc_linear_matches_a_dense_reference(n_in, n_out, radices, batch, activation):
    torch.manual_seed(0)
    layer = CSCLinear(n_in, n_out, radices, activation=activation).double()
    x = torch.randn(batch, n_in, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    grad = torch.randn(batch, n_out, dtype=torch.float64)
    y = layer(x)
    y_ref, dense, biases = dense_reference(layer, x_ref, activation)
    assert y.shape == (batch, n_out)
    torch.testing.assert_close(y, y_ref)
    y.backward(grad)
    y_ref.backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad)
    for stage, w, b in zip(layer.support, dense, biases):
        torch.testing.assert_close(stage.weight.grad, w.grad.gather(1, stage.fan_in_index.long()))
        assert (b is None) == (stage.bias is None)
        if b is not None:
            torch.testing.assert_close(stage.bias.grad, b.grad)
    # biases: the output's always, intermediate ones only with an activation between support layers
    assert [s.bias is not None for s in layer.support] == [activation is not None] * (len(radices) - 1) + [True]


def test_csc_linear_initialisation_matches_nn_linear_scale():
    torch.manual_seed(0)
    x = torch.randn(4096, 1024)
    for radices in [(32, 32), (4, 4, 4, 4, 4)]:
        layer = CSCLinear(1024, 1024, radices, bias=False)
        ratio = layer(x).var().item() / x.var().item()
        assert 0.25 < ratio < 0.42  # nn.Linear at its default initialisation: 1/3


def test_csc_linear_layers_from_a_pattern():
    pattern = csc_pattern(LENET, "3,10,10/2,10,5/1,10")
    layers = csc_linear_layers(pattern)
    assert [layer.radices for layer in layers] == [(3, 10, 10), (2, 10, 5), (1, 10)]
    support = [stage for layer in layers for stage in layer.support]
    assert [s.fan_in_index.tolist() for s in support] == [j.tolist() for j in pattern.junctions]
    assert sum(layer.layer.weights for layer in layers) == 10652
    x = torch.rand(7, 784)
    for layer in layers:
        x = torch.relu(layer(x))
    assert x.shape == (7, 10)


def test_csc_linear_bad_arguments():
    with pytest.raises(ConfigError, match="activation 'tanh'"):
        CSCLinear(16, 16, (4, 4), activation="tanh")
    with pytest.raises(PatternError, match="product of radices"):
        CSCLinear(16, 16, (2, 2))


# ---------------------------------------------------------------- command line


def test_cli_info_with_a_compression(capsys):
    from predsparse.cli import main

    assert main(["csc", "info", "--net", "784,300,100,10", "--compression", "10", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["budget"] == 26620 and info["weights"] <= 26620 and info["dense_weights"] == 266200
    assert info["radices"] == csc_plan(LENET, 10).label
    assert [layer["n_in"] for layer in info["layers"]] == [784, 300, 100]
    assert info["layers"][0]["support_widths"][0] == 900  # 784 zero-padded to 3 * 300


def test_cli_info_table_with_radices_and_layers(capsys):
    from predsparse.cli import main

    assert main(["csc", "info", "--net", "1024,1024", "--radices", "32,32"]) == 0
    out = capsys.readouterr().out
    assert "65536" in out and "16.00x" in out and out.strip().endswith("--radices 32,32")
    assert main(["csc", "info", "--net", "64,1024,64", "--layers", "3"]) == 0
    assert capsys.readouterr().out.strip().endswith("--radices 6,6,2/2,6,6")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--net", "784,300,100,10", "--compression", "46"], "choose a compression <= 33.8"),
        (["--net", "784,300", "--radices", "3,x"], "cannot be read"),
        (["--net", "64,64", "--radices", "4,4"], "product of radices 16 < M=64"),
    ],
)
def test_cli_info_errors_are_one_line(argv, message, capsys):
    from predsparse.cli import main

    assert main(["csc", "info", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_info_needs_a_choice(capsys):
    from predsparse.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["csc", "info", "--net", "784,300"])
    assert exc.value.code == 2
    assert "one of the arguments --compression --radices --layers is required" in capsys.readouterr().err
