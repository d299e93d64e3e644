"""The scatter metric: the paper's worked example, windows, exactness against a dense reference,
planned targets, random patterns against their expected values, and the ordering key."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predsparse.errors import ScatterError
from predsparse.patterns import Pattern
from predsparse.patterns.generate import generate_pattern
from predsparse.scatter import (
    ScatterResult,
    run_scatter,
    scatter_labels,
    scatter_vector,
    window_adjacency,
    window_count,
    window_grid,
    window_ids,
    real_neuron_index,
)


def fan_in_index(rows: list[str]) -> np.ndarray:
    """Adjacency rows as printed in the paper ('00001010') -> sorted fan-in index."""
    return np.array([[k for k, bit in enumerate(row) if bit == "1"] for row in rows], dtype=np.int32)


# Fig. 4: net (8, 4, 4), fo = (1, 2), fi = (2, 2).
FIG4_A1 = ["00001010", "00100001", "10000100", "01010000"]
FIG4_A2 = ["1001", "0011", "1100", "0110"]
FIG4_A12 = ["01011010", "11010100", "00101011", "10100101"]  # printed A_{1:2} = A2 A1


@pytest.fixture
def fig4() -> Pattern:
    return Pattern((8, 4, 4), (1, 2), (fan_in_index(FIG4_A1), fan_in_index(FIG4_A2)))


# --- the paper's example --------------------------------------------------------------------------


def test_fig6_scatter_vector(fig4):
    result = scatter_vector(fig4)
    assert result.labels == ("S1f", "S1b", "S2f", "S2b", "Sf", "Sb")
    # By hand (windows: contiguous halves of each layer, and 4 windows of 2 inputs for junction 1:2):
    # S1f: right neurons reach (1, 1, 2, 2) of the 2 input windows  -> 6/8, as printed in Section 3.1
    # S1b: fo1 = 1, one right window that every input reaches        -> 1
    # S2f: (2, 1, 1, 2) of 2 windows -> 6/8;  S2b: (2, 1, 2, 1) of 2 -> 6/8
    # Sf: A_{1:2} rows reach (4, 3, 3, 4) of 4 windows -> 14/16;  Sb: columns reach 2 or 1 -> 12/16
    assert result.fractions == (Fraction(3, 4), 1, Fraction(3, 4), Fraction(3, 4), Fraction(7, 8), Fraction(3, 4))
    assert result.vector[0] == 0.75
    assert result.scatter == 0.75
    assert result.to_dict() == {
        "vector": [0.75, 1.0, 0.75, 0.75, 0.875, 0.75],
        "labels": ["S1f", "S1b", "S2f", "S2b", "Sf", "Sb"],
        "scatter": 0.75,
    }


def test_fig6_window_adjacency_matrices(fig4):
    # A^{wl}_1: connections from the input windows {0..3}, {4..7} to each hidden neuron.
    assert window_adjacency(fig4, "forward").tolist() == [[0, 2], [1, 1], [1, 1], [2, 0]]
    assert window_adjacency(fig4, "backward").tolist() == [[1] * 8]
    assert window_adjacency(fig4, "backward", 1).tolist() == [[1, 0, 1, 2], [1, 2, 1, 0]]
    # Junction 1:2 from the printed A_{1:2}: its windows of 2 inputs, and of 2 outputs.
    a12 = np.array([[int(b) for b in row] for row in FIG4_A12])
    assert np.array_equal(a12, fig4.adjacency(1) @ fig4.adjacency(0))
    assert np.array_equal(window_adjacency(fig4, "forward", 0, 1), a12.reshape(4, 4, 2).sum(axis=2))
    assert np.array_equal(window_adjacency(fig4, "backward", 0, 1), a12.reshape(2, 2, 8).sum(axis=1))


def test_dense_net_scatters_one():
    # Equivalent junction: fi_{1:2} = 8*4 = 32 > N_1 = 8, so one-neuron windows with ideal count 4.
    pattern = generate_pattern((8, 4, 2), (4, 2), "dense")
    assert window_adjacency(pattern, "forward", 0, 1).tolist() == [[4] * 8] * 2
    assert scatter_vector(pattern).vector == (1.0,) * 6


def test_appendix_5_2_morse_equivalent_windows():
    # fi_{1:2} = fo_{1:2} = 1024 for 64 neurons: windows of one neuron, ideal 16.
    assert window_count(64, 1024) == (64, 16)
    assert window_count(64, 8) == (8, 1)
    assert window_count(8, 6) == (2, 3)  # fi not dividing N: fewer, larger windows, whole ideal


def test_capped_counts_match_exact_counts():
    pattern = generate_pattern((64, 64, 64, 64), (64, 64, 64), "dense")
    # 4096 paths between every input and output: beyond 16-bit counts when uncapped.
    assert np.all(window_adjacency(pattern, "forward", 0, 2) == 4096)
    assert np.all(window_adjacency(pattern, "forward", 0, 2, cap=100) == 100)


# --- planned values -------------------------------------------------------------------------------


def test_hand_built_planned_junction():
    # 8 -> 8, fo = fi = 4, windows of 2. Every right neuron takes both neurons of 2 left windows
    # (c_f = 2) and every left neuron feeds both neurons of 2 right windows (c_b = 2).
    idx = np.array([[0, 1, 2, 3]] * 2 + [[4, 5, 6, 7]] * 2 + [[0, 1, 2, 3]] * 2 + [[4, 5, 6, 7]] * 2, dtype=np.int32)
    pattern = Pattern((8, 8), (4,), (idx,), kind="planned")
    assert scatter_vector(pattern).fractions == (Fraction(1, 2), Fraction(1, 2))
    assert scatter_vector(pattern).labels == ("S1f", "S1b")


@pytest.mark.parametrize(
    "net, fanouts, clusters, shapes, expected",
    [
        ((64, 1024, 64), (128, 8), {1: {"b": 8}}, None, (1, 1 / 8, 1, 1)),
        ((64, 1024, 64), (128, 8), {2: {"f": 8}}, None, (1, 1, 1 / 8, 1)),
        ((64, 1024, 64), (128, 8), {1: {"f": 2, "b": 4}}, None, (1 / 2, 1 / 4, 1, 1)),
        ((1024, 64, 16), (1, 4), {1: {"f": 16}, 2: {"b": 4}}, ((1, 32, 32), None, None), (1 / 16, 1, 1, 1 / 4)),
        ((4096, 512, 16), (1, 2), {1: {"f": 4}}, ((256, 4, 4), None, None), (1 / 4, 1, 1, 1)),
    ],
)
def test_planned_patterns_hit_their_targets(net, fanouts, clusters, shapes, expected):
    pattern = generate_pattern(net, fanouts, "planned", seed=3, clusters=clusters, shapes=shapes)
    assert scatter_vector(pattern).vector[:4] == expected


# --- windows --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, n, grid",
    [
        ((1, 32, 32), 16, (1, 4, 4)),  # Fig. 5a: 16 tiles of 8x8
        ((256, 4, 4), 8, (2, 2, 2)),  # Fig. 5b: cuboids of 128 features x 2 x 2
        ((64, 7, 7), 4, (4, 1, 1)),  # 7 x 7 cannot split in 2: features only
        ((256, 4, 4), 4096, (256, 4, 4)),  # one neuron per window
        ((6, 4), 6, (3, 2)),  # largest prime first keeps windows balanced
        ((1024,), 16, (16,)),
        ((1024,), 1, (1,)),
    ],
)
def test_window_grid(shape, n, grid):
    assert window_grid(shape, n) == grid
    ids = window_ids(shape, grid)
    assert np.array_equal(np.bincount(ids), np.full(n, math.prod(shape) // n))


def test_window_ids_are_tiles_in_flattening_order():
    # A (1, 4, 4) image, index = h*4 + w, in 2 x 2 tiles numbered row-major.
    ids = window_ids((1, 4, 4), (1, 2, 2)).reshape(4, 4)
    assert ids.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    # (C, H, W) = (2, 2, 2) in cuboids of (1, 2, 1): index = c*4 + h*2 + w.
    assert window_ids((2, 2, 2), (2, 1, 2)).tolist() == [0, 1, 0, 1, 2, 3, 2, 3]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: window_grid((1, 32, 32), 3), "3 windows cannot split"),
        (lambda: window_grid((0, 4), 1), "layer shape \\(0, 4\\) is not a list of positive integers"),
        (lambda: window_ids((1, 32, 32), (1, 3, 1)), "does not tile"),
        (lambda: window_ids((4, 4), (2,)), "does not tile"),
        (lambda: window_count(0, 4), "at least 1"),
    ],
)
def test_impossible_window_grids(call, message):
    with pytest.raises(ScatterError, match=message):
        call()


def test_shaped_windows_change_scatter():
    # A (1, 4, 4) image feeds 4 neurons; neuron r takes image row r. With 4 contiguous windows
    # (the image rows) each neuron reaches 1 window; with 2 x 2 tiles it reaches 2 of 4.
    idx = np.arange(16, dtype=np.int32).reshape(4, 4)
    flat = Pattern((16, 4), (1,), (idx,))
    assert scatter_vector(flat).fractions[0] == Fraction(1, 4)
    shaped = dataclasses.replace(flat, shapes=((1, 4, 4), None))
    assert scatter_vector(shaped).fractions[0] == Fraction(1, 2)


def test_bad_shapes_and_runs(fig4):
    with pytest.raises(ScatterError, match="layer 1 shape 3x3 holds 9 neurons, but the layer has 8"):
        scatter_vector(dataclasses.replace(fig4, shapes=((3, 3), None, None)))
    with pytest.raises(ScatterError, match="gives 2 layer shapes for a net of 3 layers"):
        scatter_vector(dataclasses.replace(fig4, shapes=((8,), None)))
    with pytest.raises(ScatterError, match="junction run 2:3 is invalid"):
        run_scatter(fig4, 1, 2)
    with pytest.raises(ScatterError, match="direction 'sideways'"):
        window_adjacency(fig4, "sideways")


# --- exactness against a dense reference ----------------------------------------------------------


def reference_vector(pattern: Pattern, real_in=None, real_out=None) -> list[float]:
    """Equation (1) from dense adjacency products and contiguous windows: slow and obviously right.

    `real_in` / `real_out` (index arrays): keep only those columns of A^{wr} of runs from layer 1 and
    those rows of A^{wl} of runs to the last layer."""
    values = []
    j = pattern.num_junctions
    for first, last in [(i, i) for i in range(j)] + ([(0, j - 1)] if j > 1 else []):
        a = np.eye(pattern.net[first], dtype=np.int64)
        for i in range(first, last + 1):
            a = pattern.adjacency(i) @ a
        fi = math.prod(pattern.fanins[first : last + 1])
        fo = math.prod(pattern.fanouts[first : last + 1])
        n_left, n_right = math.gcd(pattern.net[first], fi), math.gcd(pattern.net[last + 1], fo)
        forward = a.reshape(a.shape[0], n_left, -1).sum(axis=2)
        backward = a.reshape(n_right, -1, a.shape[1]).sum(axis=1)
        if real_out is not None and last == j - 1:
            forward = forward[real_out]
        if real_in is not None and first == 0:
            backward = backward[:, real_in]
        values.append(np.minimum(forward / (fi // n_left), 1).mean())
        values.append(np.minimum(backward / (fo // n_right), 1).mean())
    return values


@st.composite
def small_patterns(draw):
    layers = draw(st.integers(2, 4))
    net = [draw(st.sampled_from([1, 2, 3, 4, 6, 8, 12])) for _ in range(layers)]
    fanouts = []
    for n_left, n_right in zip(net[:-1], net[1:]):
        step = n_right // math.gcd(n_left, n_right)
        fanouts.append(draw(st.sampled_from(range(step, n_right + 1, step))))
    kind = draw(st.sampled_from(["random", "unstructured"]))
    return generate_pattern(net, fanouts, kind, seed=draw(st.integers(0, 1000)))


@settings(max_examples=60, deadline=None)
@given(small_patterns())
def test_scatter_matches_dense_reference(pattern):
    result = scatter_vector(pattern)
    assert np.allclose(result.vector, reference_vector(pattern), rtol=0, atol=1e-12)
    assert all(0 <= v <= 1 for v in result.vector)
    assert result.scatter == min(result.vector)
    assert result.labels == scatter_labels(pattern.num_junctions)


@settings(max_examples=30, deadline=None)
@given(small_patterns())
def test_window_adjacency_counts_paths(pattern):
    last = pattern.num_junctions - 1
    a = np.eye(pattern.net[0], dtype=np.int64)
    for i in range(last + 1):
        a = pattern.adjacency(i) @ a
    forward = window_adjacency(pattern, "forward", 0, last)
    backward = window_adjacency(pattern, "backward", 0, last)
    assert np.array_equal(forward, a.reshape(a.shape[0], forward.shape[1], -1).sum(axis=2))
    assert np.array_equal(backward, a.reshape(backward.shape[0], -1, a.shape[1]).sum(axis=1))


# --- random patterns: expected values, and the paper's Fig. 7 -----------------------------------


def occupancy(n: int, window: int, draws: int, rows: int) -> tuple[float, float]:
    """A right neuron drawing `draws` of n left neurons without replacement, n/window windows of `window`.

    Returns E[S] = 1 - P(window empty) = 1 - C(n - window, draws) / C(n, draws), and the standard
    deviation of S over `rows` independent rows (exact variance of the number of non-empty windows).
    In a random biregular junction each right neuron's inputs are a uniform draw of this kind, and the
    rows are nearly independent: 200 seeds of the Morse and MNIST nets give spreads within 20 % of it.
    """
    k = n // window
    q1 = comb(n - window, draws) / comb(n, draws)
    q2 = comb(n - 2 * window, draws) / comb(n, draws)
    var_row = k * q1 * (1 - q1) + k * (k - 1) * (q2 - q1 * q1)
    return 1 - q1, math.sqrt(var_row / rows) / k


def capped_overlap(hidden: int, fo1: int, fi2: int, ideal: int, entries: int) -> tuple[float, float]:
    """Junction 1:2 with one-neuron windows: paths input -> output = |fan-out set ∩ fan-in set|, a
    hypergeometric overlap of two independent draws. Returns E[min(X, c) / c] and its standard
    deviation over `entries` independent entries (the entries of a row are negatively correlated, as
    every output has exactly fi_{1:2} paths, so this overstates the spread)."""
    pmf = [comb(fo1, x) * comb(hidden - fo1, fi2 - x) / comb(hidden, fi2) for x in range(min(fo1, fi2) + 1)]
    values = [min(x, ideal) / ideal for x in range(len(pmf))]
    mean = sum(p * v for p, v in zip(pmf, values))
    var = sum(p * v * v for p, v in zip(pmf, values)) - mean * mean
    return mean, math.sqrt(var / entries)


# Morse (64, 1024, 64), fo = (128, 8), fi = (8, 128): every S entry is a mean over 8192 entries.
MORSE_EXPECTED = [
    occupancy(64, 8, 8, 1024),  # S1f: hidden neuron's 8 inputs, 8 windows of 8 inputs
    occupancy(1024, 8, 128, 64),  # S1b: input's 128 outputs, 128 windows of 8 hidden
    occupancy(1024, 8, 128, 64),  # S2f: output's 128 inputs, 128 windows of 8 hidden
    occupancy(64, 8, 8, 1024),  # S2b: hidden neuron's 8 outputs, 8 windows of 8 outputs
    capped_overlap(1024, 128, 128, 16, 64 * 64),  # Sf: 64 x 64, ideal 1024 / 64 = 16
    capped_overlap(1024, 128, 128, 16, 64 * 64),  # Sb: the same matrix A_{1:2}
]
# MNIST (1024, 64, 16), fo = (1, 4), fi = (16, 16), input as a 32 x 32 image.
MNIST_EXPECTED = [
    occupancy(1024, 64, 16, 64),  # S1f: 16 tiles of 8 x 8 (where the inputs fall is uniform)
    (1.0, 0.0),  # S1b: fo1 = 1, one right window
    occupancy(64, 4, 16, 16),  # S2f
    occupancy(16, 4, 4, 64),  # S2b
    occupancy(1024, 4, 256, 16),  # Sf: fo1 = 1 makes an output's 256 inputs distinct; 256 tiles of 2 x 2
    occupancy(16, 4, 4, 64),  # Sb = S2b exactly: each input feeds one hidden neuron
]


@pytest.mark.parametrize(
    "net, fanouts, shapes, expected",
    [
        ((64, 1024, 64), (128, 8), None, MORSE_EXPECTED),
        ((1024, 64, 16), (1, 4), ((1, 32, 32), None, None), MNIST_EXPECTED),
    ],
    ids=["morse", "mnist"],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_random_patterns_agree_with_expected_scatter(net, fanouts, shapes, expected, seed):
    # Tolerance 5 standard deviations: a correct computation on a random pattern misses it with
    # probability < 1e-6 per entry; a wrong window, ideal or cap moves Morse entries by >> 0.02.
    vector = scatter_vector(generate_pattern(net, fanouts, "random", seed=seed, shapes=shapes)).vector
    for label, value, (mean, sd) in zip(scatter_labels(2), vector, expected):
        assert abs(value - mean) <= 5 * sd + 1e-12, (label, value, mean, sd)


def test_expected_random_scatter_matches_paper_fig7():
    """The random points of Fig. 7 (a single draw each, printed to 2 decimals): within 0.005 rounding
    plus 3 standard deviations of one draw. Morse reads [0.68, 0.64, 0.66, 0.62, 0.91, 0.91]; its
    S1b (0.658 +- 0.003 expected) and S2b (0.679 +- 0.003) readings do not fit a uniformly random
    pattern and are left out. MNIST reads 0.64 for S1f and 0.68 for Sf."""
    paper = {("morse", 0): 0.68, ("morse", 2): 0.66, ("morse", 4): 0.91, ("morse", 5): 0.91,
             ("mnist", 0): 0.64, ("mnist", 1): 1.0, ("mnist", 4): 0.68}
    for (net, entry), value in paper.items():
        mean, sd = (MORSE_EXPECTED if net == "morse" else MNIST_EXPECTED)[entry]
        assert abs(mean - value) <= 0.005 + 3 * sd, (net, entry, mean, value)


# --- padded layers: real neurons only ---------------------------------------------------------------


def test_real_neurons_of_the_fig4_net_by_hand(fig4):
    # Fig. 4 with the first 4 of 8 inputs and the first 3 of 4 outputs real. By hand:
    # S1b: fo1 = 1, every input reaches the one right window -> 1 (any real inputs).
    # S2f: outputs reach (2, 1, 1, 2) of 2 hidden windows; the first 3 -> 4/6.
    # Sf: outputs reach (4, 3, 3, 4) of 4 input windows; the first 3 -> 10/12.
    # Sb: inputs 0..7 reach (2, 1, 1, 1, 2, 2, 2, 1) of 2 output windows; inputs 0..3 -> 5/8.
    # S1f and S2b (neither the first layer's backward nor the last layer's forward) are unchanged.
    result = scatter_vector(fig4, real_in=4, real_out=3)
    assert result.fractions == (Fraction(3, 4), 1, Fraction(2, 3), Fraction(3, 4), Fraction(5, 6), Fraction(5, 8))
    assert scatter_vector(fig4).fractions == (Fraction(3, 4), 1, Fraction(3, 4), Fraction(3, 4), Fraction(7, 8),
                                              Fraction(3, 4))
    assert result.to_dict()["real_neurons"] == {"input": {"real": 4, "of": 8, "spec": "4"},
                                                "output": {"real": 3, "of": 4, "spec": "3"}}
    # Any set of real neurons, not only the first ones: inputs 4, 5, 6 reach both output windows.
    assert scatter_vector(fig4, real_in=[4, 5, 6]).fractions[5] == 1
    assert scatter_vector(fig4, real_out=np.array([False, True, True, False])).fractions[2] == Fraction(1, 2)


def test_real_neurons_of_a_single_junction_by_hand():
    # 4 -> 4, fi = fo = 2; rows {0,1}, {0,2}, {1,3}, {2,3}; windows {0,1} and {2,3} on both sides.
    # Right neurons reach (1, 2, 2, 1) of 2 left windows; left neurons (1, 2, 2, 1) of 2 right ones.
    p = Pattern((4, 4), (2,), (np.array([[0, 1], [0, 2], [1, 3], [2, 3]], dtype=np.int32),))
    assert scatter_vector(p).fractions == (Fraction(3, 4), Fraction(3, 4))
    assert scatter_vector(p, real_in=3, real_out=[0, 3]).fractions == (Fraction(1, 2), Fraction(5, 6))
    assert scatter_vector(p, real_out=3).fractions == (Fraction(5, 6), Fraction(3, 4))
    assert run_scatter(p, real_in=[0, 3]) == (Fraction(3, 4), Fraction(1, 2))


@pytest.mark.parametrize("seed", [0, 1])
def test_every_neuron_real_is_the_default_exactly(seed):
    p = generate_pattern((1024, 64, 16), (1, 4), "random", seed=seed, shapes=((1, 32, 32), None, None))
    default = scatter_vector(p)
    for real_in, real_out in [(1024, 16), ("1024", "16"), ("32x32/32x32", None), (np.ones(1024, bool), range(16))]:
        result = scatter_vector(p, real_in=real_in, real_out=real_out)
        assert result.fractions == default.fractions and result.vector == default.vector
    assert "real_neurons" not in default.to_dict() and default.real_neurons is None


def test_real_neurons_of_mnist_pad32_are_where_the_data_puts_the_image():
    # predsparse data mnist --layout pad32 pads 2 zero pixels on every side (a border, not at the end).
    from predsparse.data.mnist import to_layout

    image = to_layout(np.full((1, 28, 28), 255, dtype=np.uint8), "pad32")[0]
    index, spelling = real_neuron_index("28x28/32x32", 1024)
    assert spelling == "28x28/32x32" and np.array_equal(index, np.flatnonzero(image))
    assert index[0] == 2 * 32 + 2 and index.size == 784
    assert np.array_equal(real_neuron_index("1x28x28/1x32x32", 1024)[0], index)
    assert not np.array_equal(real_neuron_index(784, 1024)[0], index)  # the authors' layout is another one
    p = generate_pattern((1024, 64, 16), (1, 4), "random", seed=0, shapes=((1, 32, 32), None, None))
    centred, first = (scatter_vector(p, real_in=r, real_out=10) for r in ("28x28/32x32", 784))
    assert centred.fractions[:4] == first.fractions[:4] and centred.fractions[5] != first.fractions[5]


@settings(max_examples=40, deadline=None)
@given(small_patterns(), st.randoms(use_true_random=False))
def test_real_neurons_match_dense_reference(pattern, random):
    real_in = np.array(sorted(random.sample(range(pattern.net[0]), random.randint(1, pattern.net[0]))))
    real_out = np.array(sorted(random.sample(range(pattern.net[-1]), random.randint(1, pattern.net[-1]))))
    result = scatter_vector(pattern, real_in=real_in, real_out=real_out)
    assert np.allclose(result.vector, reference_vector(pattern, real_in, real_out), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "real, message",
    [
        (0, "real input neurons 0: the count must be between 1 and the layer's 64"),
        (65, "the count must be between 1 and the layer's 64"),
        ("eight", "real input neurons 'eight' are not an int n"),
        ("6x6/9x9", "the outer shape 9x9 holds 81 neurons, but the layer has 64"),
        ("5x6/8x8", "the inner shape 5x6 must fit centred in 8x8"),
        ("10x10/8x8", "the inner shape 10x10 must fit centred in 8x8"),
        ([1, 1, 2], "repeat a neuron"),
        ([0, 64], "non-empty subset of 0..63"),
        ([], "non-empty subset of 0..63"),
        (np.ones(63, bool), "mask has shape \\[63\\], not \\[64\\]"),
        (1.5, "are not an int n"),
        (True, "are not an int n"),
    ],
)
def test_bad_real_neurons_name_the_value(real, message):
    p = generate_pattern((64, 64), (8,), "random", seed=0)
    with pytest.raises(ScatterError, match=message):
        scatter_vector(p, real_in=real)


# --- ordering ---------------------------------------------------------------------------------------


def result(*values) -> ScatterResult:
    return ScatterResult(scatter_labels(len(values) // 2 - 1), tuple(Fraction(v).limit_denominator() for v in values))


def test_ordering_key_breaks_ties_by_occurrences_of_the_minimum():
    # Fig. 7a: three planned Morse patterns with S = 1/8, accuracy 8 %, 12 %, 46 % for 3, 2, 1
    # occurrences of 1/8.
    three = result(1, 1 / 8, 1 / 8, 1 / 8, 1, 1)
    two = result(1, 1 / 8, 1, 1 / 8, 1, 1)
    one = result(1, 1 / 8, 1, 1, 1, 1)
    assert three.scatter == two.scatter == one.scatter == 0.125
    assert sorted([one, three, two], key=lambda r: r.key) == [three, two, one]
    # Fig. 7b: both with a single 1/16; two occurrences of 1/4 rank below one.
    assert result(1 / 16, 1, 1, 1 / 4, 1, 1 / 4).key < result(1 / 16, 1, 1, 1 / 4, 1, 1).key
    # A higher minimum always wins, whatever follows.
    assert result(1 / 4, 1 / 4, 1 / 4, 1 / 4, 1 / 4, 1 / 4).key > one.key
