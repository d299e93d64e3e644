"""Density allocation across junctions (predsparse.methods.allocation) and `predsparse density --allocate`."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predsparse.cli import main
from predsparse.density import junction_densities, overall_density
from predsparse.errors import PatternError
from predsparse.methods.allocation import PAPER_RATIO, RULES, allocate, target_densities
from predsparse.patterns import check_net

MORSE = (64, 1024, 64)
MNIST_CL = (784, 224, 10)
MNIST_CONV = (3136, 784, 10)


def budget(net, densities) -> float:
    """sum_i d_i N_i N_{i+1} / sum_i N_i N_{i+1}: the overall density of junction densities."""
    dense = [a * b for a, b in zip(net[:-1], net[1:])]
    return sum(d * w for d, w in zip(densities, dense)) / sum(dense)


# ------------------------------------------------------------------------------------------ targets
@pytest.mark.parametrize("net", [MORSE, MNIST_CL, (4096, 512, 256, 16), (100, 7)])
def test_uniform_gives_every_junction_the_overall_density(net):
    assert target_densities(net, 0.2, "uniform") == (0.2,) * (len(net) - 1)


def test_paper_rule_triples_the_density_from_junction_to_junction():
    assert PAPER_RATIO == 3
    assert target_densities(MORSE, 0.125, "paper") == pytest.approx((0.0625, 0.1875))  # 25 % / 75 % of the budget
    assert target_densities((100, 100, 100, 100), 0.13, "paper") == pytest.approx((0.03, 0.09, 0.27))


def test_paper_rule_caps_at_100_percent_and_keeps_its_ratio_among_the_rest():
    assert target_densities(MORSE, 0.75, "paper") == pytest.approx((0.5, 1.0))
    # Equal junction sizes at 50 %: d = x(1, 3, 9) would put junction 3 at 104 %; capped, x(1 + 3) = 0.5.
    assert target_densities((100, 100, 100, 100), 0.5, "paper") == pytest.approx((0.125, 0.375, 1.0))
    # At 90 % the cap reaches junction 2 as well: junction 1 takes the remaining 70 %.
    assert target_densities((100, 100, 100, 100), 0.9, "paper") == pytest.approx((0.7, 1.0, 1.0))
    assert target_densities(MORSE, 1.0, "paper") == (1.0, 1.0)


def test_erk_is_proportional_to_fan_sum_over_fan_product():
    net = (64, 256, 32)
    d = target_densities(net, 0.05, "erk")
    erk = [(a + b) / (a * b) for a, b in zip(net[:-1], net[1:])]
    assert d[1] / d[0] == pytest.approx(erk[1] / erk[0])
    assert budget(net, d) == pytest.approx(0.05)
    # MNIST CL: junction 2 would be 18x junction 1, above 100 % at 12.5 % overall: capped.
    capped = target_densities(MNIST_CL, 0.125, "erk")
    assert capped[1] == 1.0 and budget(MNIST_CL, capped) == pytest.approx(0.125)


def test_erk_equals_uniform_on_the_symmetric_morse_net():
    for overall in (0.5, 0.125, 0.03125):
        assert target_densities(MORSE, overall, "erk") == pytest.approx(target_densities(MORSE, overall, "uniform"))
        assert allocate(MORSE, overall, "erk") == allocate(MORSE, overall, "uniform")


@settings(max_examples=60, deadline=None)
@given(net=st.lists(st.integers(1, 300), min_size=2, max_size=5), overall=st.floats(0.001, 1.0),
       rule=st.sampled_from(RULES))
def test_targets_spend_the_budget_without_exceeding_100_percent(net, overall, rule):
    d = target_densities(net, overall, rule)
    assert all(0 < x <= 1 for x in d)
    assert budget(net, d) == pytest.approx(overall, rel=1e-9)
    if rule == "paper":  # later junctions never sparser
        assert all(b >= a * (1 - 1e-12) for a, b in zip(d, d[1:]))


# ------------------------------------------------------------------------------------------ allocation
@pytest.mark.parametrize("overall, paper, uniform", [(0.125, (64, 12), (128, 8)), (0.03125, (16, 3), (32, 2)),
                                                    (0.5, (256, 48), (512, 32))])
def test_morse_allocations_meet_the_overall_density_exactly(overall, paper, uniform):
    assert allocate(MORSE, overall, "paper") == paper and allocate(MORSE, overall, "uniform") == uniform
    for rule in RULES:
        fanouts = allocate(MORSE, overall, rule)
        check_net(MORSE, fanouts)
        assert overall_density(MORSE, fanouts) == overall  # the weight count is exactly overall * 131072
        assert junction_densities(MORSE, fanouts) == pytest.approx(target_densities(MORSE, overall, rule))


def test_morse_allocation_without_an_exact_split_rounds_within_a_step():
    # 10 % of 131,072 weights is 13,107.2: the nearest weight counts are multiples of 1024 (one step of
    # either junction), so the closest achievable, 13,312, is taken by every rule.
    for rule in RULES:
        fanouts = allocate(MORSE, 0.1, rule)
        check_net(MORSE, fanouts)
        assert sum(n * fo for n, fo in zip(MORSE, fanouts)) == 13_312
    assert allocate(MORSE, 0.1, "paper") == (48, 10)  # 4.7 % / 15.6 % for targets 5 % / 15 %


@pytest.mark.parametrize("net, overalls", [(MORSE, (0.03125, 0.125, 0.5)), (MNIST_CL, (0.05, 0.125, 0.5)),
                                            (MNIST_CONV, (0.0029, 0.0083, 0.0235))])
def test_paper_rule_puts_junction_2_denser_than_junction_1(net, overalls):
    for overall in overalls:
        d1, d2 = junction_densities(net, allocate(net, overall, "paper"))
        assert d2 > d1, overall


def test_mnist_nets_let_the_rule_choose_the_coarse_junction():
    # 784-224-10: fo_2 is 5 or 10 (50 % or 100 %); junction 1 (steps of 2) takes up the rest.
    assert allocate(MNIST_CL, 0.125, "paper") == allocate(MNIST_CL, 0.125, "uniform") == (26, 5)
    assert allocate(MNIST_CL, 0.125, "erk") == (26, 10)  # ERK asks 100 % of junction 2
    assert allocate(MNIST_CL, 0.5, "uniform") == (112, 5)  # exactly 50 %
    # 3136-784-10 at Table 1's 2.35 %: ERK lands on Table 1's own (16, 10).
    assert allocate(MNIST_CONV, 0.0235, "erk") == (16, 10)
    assert allocate(MNIST_CONV, 0.0235, "paper") == (17, 5)
    for net, overalls in ((MNIST_CL, (0.05, 0.125, 0.5)), (MNIST_CONV, (0.0029, 0.0083, 0.0235, 0.125, 0.5))):
        half_step = net[0] * (net[1] // math.gcd(net[0], net[1])) / 2  # half a junction-1 step, in weights
        dense = sum(a * b for a, b in zip(net[:-1], net[1:]))
        for overall in overalls:
            for rule in RULES:
                fanouts = allocate(net, overall, rule)
                check_net(net, fanouts)
                weights = sum(n * fo for n, fo in zip(net, fanouts))
                assert abs(weights - overall * dense) <= half_step, (net, overall, rule)
    # Below the sparsest valid split (2, 5) = 1.5 %, every rule gets that split.
    assert {allocate(MNIST_CL, 0.005, rule) for rule in RULES} == {(2, 5)}


@settings(max_examples=60, deadline=None)
@given(net=st.lists(st.integers(1, 200), min_size=2, max_size=4), overall=st.floats(0.001, 1.0),
       rule=st.sampled_from(RULES))
def test_allocations_are_valid_and_full_density_is_dense(net, overall, rule):
    fanouts = allocate(net, overall, rule)
    check_net(net, fanouts)
    assert allocate(net, 1.0, rule) == tuple(net[1:])


@pytest.mark.parametrize("rule, overall, message", [
    ("erdos", 0.1, "allocation rule 'erdos' is not one of ['paper', 'uniform', 'erk']"),
    ("paper", 0.0, "overall density 0.0 must be a number in (0, 1]"),
    ("uniform", 1.5, "overall density 1.5 must be a number in (0, 1]"),
    ("erk", True, "overall density True must be a number in (0, 1]"),
])
def test_bad_rule_or_density_names_the_value_and_the_choices(rule, overall, message):
    for function in (allocate, target_densities):
        with pytest.raises(PatternError) as info:
            function(MORSE, overall, rule)
        assert message in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------ CLI
def test_cli_prints_the_allocated_fanouts_and_their_densities(capsys):
    assert main(["density", "--net", "64,1024,64", "--overall", "0.125", "--allocate", "paper"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("paper allocation of overall density 0.125 over net 64,1024,64: fan-outs 64,12")
    assert out[1].split() == ["junction", "N_i->N_i+1", "fo", "fi", "weights", "dense", "density"]
    assert out[4].split() == ["all", "16384", "131072", "12.5%"]

    assert main(["density", "--net", "784,224,10", "--overall", "0.125", "--allocate", "erk", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["fanouts"] == [26, 10] and record["allocation"] == "erk" and record["target_overall"] == 0.125
    assert record["target_densities"][1] == 1.0 and record["weights"] == 784 * 26 + 224 * 10


@pytest.mark.parametrize("args, message", [
    (["--overall", "0.1", "--allocate", "erdos"], "allocation rule 'erdos' is not one of ['paper', 'uniform', 'erk']"),
    (["--overall", "2", "--allocate", "paper"], "overall density 2.0 must be a number in (0, 1]"),
    (["--allocate", "paper"], "--allocate RULE takes --net and --overall"),
    (["--overall", "0.1", "--fanouts", "16,1", "--allocate", "paper"], "drop --fanouts/--tol"),
])
def test_cli_refuses_bad_allocations_in_one_line(args, message, capsys):
    assert main(["density", "--net", "64,1024,64", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("predsparse density: error: ") and message in err
