"""Cyclic sparsely connected (CSC) layers: the support-layer patterns.

Reconstruction from the abstract. The CSC paper (Hosseini et al., DAC 2019) is only available as an
abstract: a CSC layer replaces one dense layer N_in -> N_out by a few sequential "support layers" whose
product connects every input to every output, with O(N log N) weights and no index memory. The
construction below is ours, built on the sourced mixed-radix cyclic shifts (RadiX-Nets, Robinett and
Kepner 2019); it is not the paper's own, which we cannot see.

Square layers (N_in = N_out = N)
    L support layers with radices r_1..r_L and strides P_l = r_1 * ... * r_{l-1} (P_1 = 1). Support layer
    l connects output j to inputs (j + k*P_l) mod N for k = 0..r_l-1: fixed fan-in fi = fixed fan-out
    fo = r_l. A path from input i to output j exists iff i - j = sum_l k_l*P_l (mod N); the sums are the
    mixed-radix numbers 0..prod(r)-1, so prod(r) >= N connects every input to every output (exactly one
    path each when prod(r) = N). Weights: N * sum(r_l).

Non-square layers: the cyclic width is the smaller side (our rule, `RULE`)
    Let M = min(N_in, N_out) and pad the larger side up to Nbig = M * ceil(max(N_in, N_out) / M). The
    support layers are cyclic on Z_M; the one support layer that touches the larger side is rectangular
    and maps it onto Z_M by m -> m mod M (a compressing layer folds its Nbig inputs in its first support
    layer, an expanding layer unfolds into its Nbig outputs in its last). One formula covers every
    support layer from n_left to n_right neurons (both multiples of M): output j reads

        ((j + k*P_l) mod M) + t*M    for k = 0..r_l-1, t = 0..n_left/M - 1,

    so fi_l = r_l * n_left / M and fo_l = r_l * n_right / M, both fixed. Every input reaches every
    output iff prod(r) >= M. The padding is zeros at inputs N_in..Nbig-1 of a compressing layer, and
    outputs N_out..Nbig-1 of an expanding layer are dropped; the weights on those neurons never affect
    the output and are not counted. Weights = max(N_in, N_out) * r_big + M * (sum of the other r_l),
    where r_big is the radix of the rectangular support layer (N * sum(r_l) when square).
    Why the small side: the product of the support layers has rank <= M whatever their width, so running
    them at width M costs no rank and keeps every weight count O(M log M) + O(max side).

Within a support layer the r_l offsets k*P_l must be distinct mod M: r_l <= M / gcd(M, P_l).

A net of several dense layers (e.g. LeNet-300-100, 784 -> 300 -> 100 -> 10) becomes one pattern whose
junctions are the support layers of every CSC layer in order, with `meta` recording the real net, the
radices of each CSC layer (`3,10,10/2,10,5/1,10` on the command line) and the weight counts. Consecutive
CSC layers must meet at the same width (true whenever no padding is needed between them, as in
LeNet-300-100 and Morse (64, 1024, 64)).

Planning (the budget of a compression target and the growth ladder; `predsparse.methods.csc_growth`
trains along the ladder): a compression target x allows floor(dense_weights / x) weights
(`budget_weights`, padding excluded) in the CSC layers together. The ladder starts at the sparsest
fully connected configuration within the budget at the fewest support layers (at least `min_layers`:
`start_config`), and every step (`grow_step`) has strictly more weights: first every radix of every CSC
layer +1 (where that would repeat offsets mod M, the radices are raised one at a time, first to last, and
those that cannot grow stay), else the cheapest extra square support layer for every CSC layer (smallest
radix >= 2, at the first position where its offsets stay distinct), while the result fits the budget.
`csc_plan(net, x)` walks the ladder to its last configuration within the budget: the fixed-compression
CSC nets of the pipeline's CSC study.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence, Union

import numpy as np

from predsparse.errors import PatternError
from predsparse.patterns.format import Pattern, check_net

RECONSTRUCTION = (
    "reconstruction from the abstract of Hosseini et al. (DAC 2019): mixed-radix cyclic support layers "
    "(RadiX-Nets construction), not the paper's own"
)
RULE = (
    "cyclic width M = min(N_in, N_out); the larger side is zero-padded (inputs) or truncated (outputs) to a "
    "multiple of M and folded onto Z_M by its rectangular support layer; weights = max(N_in, N_out) * r_big "
    "+ M * sum(other radices)"
)

Radices = Union[str, Sequence[int], Sequence[Sequence[int]]]


def cyclic_fan_in(rows: np.ndarray, n_left: int, m: int, stride: int, radix: int) -> np.ndarray:
    """Fan-in of support-layer outputs `rows`, computed from the indices alone (no index memory).

    Output j reads left neurons ((j + k*P) mod M) + t*M for k < r, t < n_left / M, in that (k, t) order;
    returns int64 (len(rows), r * n_left / M). M is the cyclic width, P = `stride`, r = `radix`.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 1, 1)
    k = np.arange(radix, dtype=np.int64).reshape(1, -1, 1)
    t = np.arange(n_left // m, dtype=np.int64).reshape(1, 1, -1)
    return ((rows + k * stride) % m + t * m).reshape(rows.shape[0], -1)


@dataclass(frozen=True)
class CSCLayer:
    """One CSC layer N_in -> N_out made of L = len(radices) support layers (see the module docstring)."""

    n_in: int
    n_out: int
    radices: tuple[int, ...]

    def __post_init__(self):
        where = f"CSC layer {self.n_in}->{self.n_out} with radices {list(self.radices)}"
        try:
            object.__setattr__(self, "radices", tuple(operator.index(r) for r in self.radices))
        except TypeError:
            raise PatternError(f"{where}: radices must be whole numbers") from None
        if not self.radices:
            raise PatternError(f"{where}: at least one radix (support layer) is needed")
        if min(self.radices) < 1:
            raise PatternError(f"{where}: every radix must be >= 1")
        m = self.m
        for l, (r, p) in enumerate(zip(self.radices, self.strides), start=1):
            limit = m // math.gcd(m, p)
            if r > limit:
                raise PatternError(
                    f"{where}: support layer {l} has radix {r} but stride P_{l}={p} repeats after "
                    f"{limit} offsets mod M={m}; use a radix <= {limit} there"
                )
        if math.prod(self.radices) < m:
            raise PatternError(
                f"{where}: product of radices {math.prod(self.radices)} < M={m}, so not every input reaches "
                f"every output; the product must be >= {m}"
            )

    @property
    def m(self) -> int:
        """Cyclic width M = min(N_in, N_out)."""
        return min(self.n_in, self.n_out)

    @property
    def n_big(self) -> int:
        """The larger side padded to a multiple of M."""
        return self.m * -(-max(self.n_in, self.n_out) // self.m)

    @property
    def num_support(self) -> int:
        return len(self.radices)

    @property
    def widths(self) -> tuple[int, ...]:
        """Sizes of the L+1 layers the support layers join: [Nbig, M, .., M], [M, .., M, Nbig] or [N]*(L+1)."""
        inner = [self.m] * (self.num_support - 1)
        left = self.n_big if self.n_in > self.n_out else self.m
        right = self.n_big if self.n_out > self.n_in else self.m
        return (left, *inner, right)

    @property
    def strides(self) -> tuple[int, ...]:
        """P_l = r_1 * ... * r_{l-1}."""
        return tuple(math.prod(self.radices[:l]) for l in range(self.num_support))

    @property
    def fanouts(self) -> tuple[int, ...]:
        """fo_l = r_l * n_right / M."""
        w = self.widths
        return tuple(r * w[l + 1] // self.m for l, r in enumerate(self.radices))

    @property
    def fanins(self) -> tuple[int, ...]:
        """fi_l = r_l * n_left / M."""
        w = self.widths
        return tuple(r * w[l] // self.m for l, r in enumerate(self.radices))

    @property
    def stored_weights(self) -> int:
        """Weights of the support layers as stored, padding neurons included."""
        return sum(fi * n for fi, n in zip(self.fanins, self.widths[1:]))

    @property
    def weights(self) -> int:
        """Weights that can affect the output: max(N_in, N_out) * r_big + M * sum(other r_l)."""
        pad_in = self.widths[0] - self.n_in  # zero inputs, each with fan-out r_1
        pad_out = self.widths[-1] - self.n_out  # dropped outputs, each with fan-in r_L
        return self.stored_weights - pad_in * self.radices[0] - pad_out * self.radices[-1]

    @property
    def dense_weights(self) -> int:
        return self.n_in * self.n_out

    def fan_in_index(self, l: int, rows: np.ndarray | None = None) -> np.ndarray:
        """Cyclic fan-in of support layer l (0-based) for `rows` (default: all), in (k, t) order."""
        if rows is None:
            rows = np.arange(self.widths[l + 1])
        return cyclic_fan_in(rows, self.widths[l], self.m, self.strides[l], self.radices[l])


def parse_radices(text: str) -> tuple[tuple[int, ...], ...]:
    """'3,10,10/2,10,5/1,10' -> ((3, 10, 10), (2, 10, 5), (1, 10)): one group per CSC layer."""
    groups = []
    for group in str(text).split("/"):
        try:
            radices = tuple(int(v) for v in group.split(",") if v.strip())
        except ValueError:
            radices = ()
        if not radices:
            raise PatternError(
                f"radices '{text}' cannot be read: expected comma-separated integers per CSC layer, "
                "layers separated by '/', e.g. 32,32 or 3,10,10/2,10,5/1,10"
            )
        groups.append(radices)
    return tuple(groups)


def format_radices(radices: Sequence[Sequence[int]]) -> str:
    """((3, 10, 10), (1, 10)) -> '3,10,10/1,10' (the inverse of `parse_radices`)."""
    return "/".join(",".join(str(int(r)) for r in group) for group in radices)


def _radix_groups(net: Sequence[int], radices: Radices) -> tuple[tuple[int, ...], ...]:
    """Radices as one tuple per CSC layer; a flat list is allowed for a single CSC layer."""
    if isinstance(radices, str):
        groups = parse_radices(radices)
    else:
        try:
            items = list(radices)
            if items and all(isinstance(r, (int, np.integer)) for r in items):
                items = [items]
            groups = tuple(tuple(operator.index(r) for r in group) for group in items)
        except TypeError:
            raise PatternError(
                f"radices {radices!r} must be whole numbers: a list such as [32, 32], one list per CSC layer, "
                "or a string such as '3,10,10/2,10,5/1,10'"
            ) from None
    if len(groups) != len(net) - 1:
        raise PatternError(
            f"net {list(net)} has {len(net) - 1} dense layer(s) to replace but radices "
            f"'{format_radices(groups)}' give {len(groups)}; give one radix group per layer, separated by '/'"
        )
    return groups


def csc_layers(net: Sequence[int], radices: Radices) -> tuple[CSCLayer, ...]:
    """Validated CSC layers replacing every junction of `net`, checked to meet at equal widths."""
    net, _ = check_net(net)
    layers = tuple(CSCLayer(a, b, r) for a, b, r in zip(net[:-1], net[1:], _radix_groups(net, radices)))
    for i, (left, right) in enumerate(zip(layers[:-1], layers[1:]), start=1):
        if left.widths[-1] != right.widths[0]:
            raise PatternError(
                f"net {list(net)}: CSC layer {i} ends at width {left.widths[-1]} but CSC layer {i + 1} "
                f"starts at width {right.widths[0]} (layer {i + 1} has {net[i]} neurons); choose sizes where "
                "the smaller side of each layer divides the larger"
            )
    return layers


def csc_weight_count(net: Sequence[int], radices: Radices) -> int:
    """Weights of the CSC net that can affect its output (padding excluded)."""
    return sum(layer.weights for layer in csc_layers(net, radices))


def csc_pattern(net: Sequence[int], radices: Radices) -> Pattern:
    """The pattern of a CSC net: every support layer of every CSC layer as a junction (kind 'csc').

    For net (N, N) and radices r_1..r_L its net becomes [N] * (L+1) and its fan-outs the radices. `meta`
    records the real net (`csc_net`), the radices per CSC layer, N_in, N_out, the non-square rule and the
    weight counts (`weights` excludes padding neurons; `stored_weights` includes them).
    """
    layers = csc_layers(net, radices)
    sizes = [layers[0].widths[0]]
    fanouts, junctions = [], []
    for layer in layers:
        sizes.extend(layer.widths[1:])
        fanouts.extend(layer.fanouts)
        junctions.extend(
            np.sort(layer.fan_in_index(l), axis=1).astype(np.int32) for l in range(layer.num_support)
        )
    meta = {
        "csc_net": [int(n) for n in net],
        "radices": [list(layer.radices) for layer in layers],
        "N_in": int(net[0]),
        "N_out": int(net[-1]),
        "rule": RULE,
        "reconstruction": RECONSTRUCTION,
        "weights": sum(layer.weights for layer in layers),
        "stored_weights": sum(layer.stored_weights for layer in layers),
        "dense_weights": sum(layer.dense_weights for layer in layers),
    }
    return Pattern(tuple(sizes), tuple(fanouts), tuple(junctions), "csc", meta=meta)


def csc_layers_from_pattern(pattern: Pattern) -> tuple[CSCLayer, ...]:
    """The CSC layers a 'csc' pattern was built from, checked against its junctions."""
    if pattern.kind != "csc" or "csc_net" not in pattern.meta or "radices" not in pattern.meta:
        raise PatternError(f"a pattern of kind '{pattern.kind}' is not a CSC pattern (kind 'csc' with csc_net, radices)")
    net, radices = pattern.meta["csc_net"], pattern.meta["radices"]
    expected = csc_pattern(net, radices)
    same = expected.net == pattern.net and expected.fanouts == pattern.fanouts and all(
        np.array_equal(a, b) for a, b in zip(expected.junctions, pattern.junctions)
    )
    if not same:
        raise PatternError(
            f"CSC pattern for net {net} with radices {format_radices(radices)} does not hold the cyclic "
            "support layers its meta describes"
        )
    return csc_layers(net, radices)


def _balanced(target: int, count: int) -> list[int]:
    """`count` radices differing by at most one, of minimal sum, with product >= target.

    For a fixed count the minimal-sum integers with a product bound differ by at most one: replacing
    a, b (a >= b + 2) by a - 1, b + 1 keeps the sum and raises the product.
    """
    q = max(1, round(target ** (1.0 / count)))
    while q > 1 and q**count > target:
        q -= 1
    while (q + 1) ** count <= target:
        q += 1
    for b in range(count + 1):
        if q ** (count - b) * (q + 1) ** b >= target:
            return [q] * (count - b) + [q + 1] * b
    raise AssertionError("unreachable: (q+1)**count > target")


def csc_radices(n: int, num_layers: int, n_out: int | None = None) -> tuple[int, ...]:
    """The sparsest fully connected radices with `num_layers` support layers for a CSC layer n -> n_out.

    Minimises the weight count (`CSCLayer.weights`) subject to prod(r) >= M: balanced radices on the
    square support layers, and every radix r_big of the rectangular one tried (it costs max(N_in, N_out)
    per unit instead of M). Every radix is >= 2 (unless M = 1): a square support layer of radix 1 only
    scales, and a rectangular one of radix 1 would merge the inputs (or outputs) of a residue class mod M
    into one signal up to a scale. Ties go to the smaller largest radix. n_out defaults to n (square).
    """
    n_out = n if n_out is None else n_out
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
        raise PatternError(f"number of support layers must be an integer >= 1, got {num_layers!r}")
    check_net([n, n_out])
    m = min(n, n_out)
    if m == 1:
        return (1,) * num_layers
    if n == n_out:
        candidates = [(None, _balanced(m, num_layers))]
    elif num_layers == 1:
        candidates = [(m, [])]
    else:
        candidates = [(r, _balanced(-(-m // r), num_layers - 1)) for r in range(2, m + 1)]
    best = None
    for r_big, rest in candidates:
        rest = [max(2, r) for r in rest]
        for order in (sorted(rest), sorted(rest, reverse=True)):
            radices = order if r_big is None else ([r_big] + order if n > n_out else order + [r_big])
            try:
                layer = CSCLayer(n, n_out, tuple(radices))
            except PatternError:
                continue
            key = (layer.weights, max(radices), tuple(radices))
            if best is None or key < best:
                best = key
    if best is None:
        raise PatternError(
            f"CSC layer {n}->{n_out} cannot have {num_layers} support layers with every radix >= 2: their "
            f"offsets would repeat mod M={m}; use fewer support layers"
        )
    return best[2]


# --- planning: the budget of a compression target and the growth ladder -------------------------------

# Beyond this many support layers a CSC layer of any realistic size has long stopped getting sparser.
MAX_SUPPORT_LAYERS = 16


@dataclass(frozen=True)
class CSCConfig:
    """Radices for every CSC layer of a net (one tuple per dense layer replaced)."""

    net: tuple[int, ...]
    radices: tuple[tuple[int, ...], ...]

    @cached_property
    def layers(self) -> tuple[CSCLayer, ...]:
        return csc_layers(self.net, self.radices)

    @property
    def weights(self) -> int:
        return sum(layer.weights for layer in self.layers)

    @property
    def dense_weights(self) -> int:
        return sum(layer.dense_weights for layer in self.layers)

    @property
    def compression(self) -> float:
        return self.dense_weights / self.weights

    @property
    def label(self) -> str:
        """The radices as on the command line, e.g. '3,10,10/2,10,5/1,10'."""
        return format_radices(self.radices)

    @property
    def slug(self) -> str:
        """The radices as a file/run name part, e.g. 'r3x10x10_2x10x5_1x10'."""
        return "r" + "_".join("x".join(map(str, group)) for group in self.radices)


def budget_weights(net: Sequence[int], compression: float) -> int:
    """floor(dense weights / compression): the most weights a CSC net of compression x may have."""
    if isinstance(compression, bool) or not isinstance(compression, (int, float)) or not compression >= 1:
        raise PatternError(f"compression must be a number >= 1 (dense = 1), got {compression!r}")
    from predsparse.density import dense_junction_weights  # not at import: density imports predsparse.patterns

    return math.floor(sum(dense_junction_weights(net)) / compression)


def _sparsest_radices(n_in: int, n_out: int, num_layers: int) -> tuple[int, ...]:
    """`csc_radices` with at most `num_layers` support layers: as many as the layer can take."""
    for count in range(num_layers, 0, -1):
        try:
            return csc_radices(n_in, count, n_out)
        except PatternError:
            continue
    raise AssertionError("unreachable: one support layer always works")


def sparsest_config(net: Sequence[int], num_layers: int) -> CSCConfig:
    """Every CSC layer at its sparsest fully connected radices with (up to) `num_layers` support layers."""
    net = tuple(int(n) for n in net)
    radices = tuple(_sparsest_radices(a, b, num_layers) for a, b in zip(net[:-1], net[1:]))
    return CSCConfig(net, radices)


def start_config(net: Sequence[int], budget: int, min_layers: int = 2) -> CSCConfig:
    """The sparsest fully connected configuration within `budget` weights, at the fewest support layers."""
    if not isinstance(min_layers, int) or isinstance(min_layers, bool) or min_layers < 1:
        raise PatternError(f"min_layers must be an integer >= 1, got {min_layers!r}")
    sparsest = None
    for num_layers in range(min_layers, max(min_layers, MAX_SUPPORT_LAYERS) + 1):
        config = sparsest_config(net, num_layers)
        if config.weights <= budget:
            return config
        if sparsest is None or config.weights < sparsest.weights:
            sparsest = config
    raise PatternError(
        f"net {list(net)}: a budget of {budget} weights is below the sparsest fully connected CSC net "
        f"({sparsest.weights} weights, radices {sparsest.label}, compression {sparsest.compression:.1f}x); "
        f"choose a compression <= {sparsest.compression:.1f}"
    )


def _valid(layer: CSCLayer, radices: Sequence[int]) -> bool:
    try:
        CSCLayer(layer.n_in, layer.n_out, tuple(radices))
    except PatternError:
        return False
    return True


def _fan_in_step(layer: CSCLayer) -> tuple[int, ...]:
    """Every radix +1; where that repeats offsets mod M, raise them one at a time, skipping those that can't."""
    radices = [r + 1 for r in layer.radices]
    if _valid(layer, radices):
        return tuple(radices)
    radices = list(layer.radices)
    for l in range(len(radices)):
        radices[l] += 1
        if not _valid(layer, radices):
            radices[l] -= 1
    return tuple(radices)


def _support_step(layer: CSCLayer) -> tuple[int, ...]:
    """The cheapest extra square support layer: smallest radix >= 2 at the first valid position."""
    radices = list(layer.radices)
    # Square positions: after the folding first support layer, before the unfolding last one.
    first = 1 if layer.n_in > layer.n_out else 0
    last = len(radices) - 1 if layer.n_out > layer.n_in else len(radices)
    for radix in range(2, layer.m + 1):
        for position in range(first, last + 1):
            candidate = radices[:position] + [radix] + radices[position:]
            if _valid(layer, candidate):
                return tuple(candidate)
    return layer.radices


def grow_step(config: CSCConfig, budget: int) -> tuple[CSCConfig, str] | None:
    """The next configuration of the ladder and its action ('fan-in' or 'support layer'), or None."""
    for action, step in (("fan-in", _fan_in_step), ("support layer", _support_step)):
        grown = CSCConfig(config.net, tuple(step(layer) for layer in config.layers))
        if grown.radices != config.radices and grown.weights <= budget:
            return grown, action
    return None


def csc_plan(net: Sequence[int], compression: float, min_layers: int = 2) -> CSCConfig:
    """The largest configuration of the growth ladder within the budget of `compression`."""
    budget = budget_weights(net, compression)
    config = start_config(net, budget, min_layers)
    while (step := grow_step(config, budget)) is not None:
        config = step[0]
    return config
