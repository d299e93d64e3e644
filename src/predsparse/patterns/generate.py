"""Generate connectivity patterns: dense, random, planned, unstructured (and csc).

Every kind is seeded and reproducible: junction i draws from its own numpy `Generator(PCG64)` seeded
from a SHA-256 hash of (net, fan-outs, kind, options, seed, i), so the same inputs give a byte-identical
pattern file and different junctions or kinds get independent streams.

Kinds (junction i joins N_i left to N_{i+1} right neurons, fi_i = N_i * fo_i / N_{i+1}):

- `dense`: fo_i = N_{i+1}, every left neuron feeds every right neuron.
- `random`: exactly fi_i inputs per right neuron and fo_i outputs per left neuron, no repeated
  connection, drawn at random by one of two generators (option `generator`, see `GENERATORS`):
  `uniform` (the default, `random_fan_in_index`) or `sequential`, the authors' own generator
  (`sequential_fan_in_index`).
- `planned`: a window structure chosen per junction (forward clustering c_f, backward clustering c_b)
  so that the scatter values are exactly S_if = 1/c_f and S_ib = 1/c_b (see `planned_fan_in_index`).
- `unstructured`: N_i * fo_i connections placed uniformly at random among the N_{i+1} x N_i positions,
  no fan-in or fan-out constraint (a baseline); stored CSR-style.
- `csc`: cyclic sparsely connected support layers, built by `predsparse.patterns.csc.csc_pattern`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from predsparse.errors import PatternError
from predsparse.patterns.csc import csc_pattern
from predsparse.patterns.format import Pattern, check_layer_shapes, check_net, valid_fanouts

# ---------------------------------------------------------------------------------------------------
# Seeding


def _junction_rngs(net, fanouts, kind: str, options: dict, seed: int) -> list[np.random.Generator]:
    """One independent Generator(PCG64) per junction, seeded from a hash of everything that defines it.

    The hash, not Python's `hash`, makes the streams the same on every machine and Python version.
    """
    blob = json.dumps(
        {"net": list(net), "fanouts": list(fanouts), "kind": kind, "options": options, "seed": seed},
        sort_keys=True,
        separators=(",", ":"),
    )
    entropy = int.from_bytes(hashlib.sha256(blob.encode("utf-8")).digest(), "big")
    return [
        np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=(i,))))
        for i in range(len(fanouts))
    ]


# ---------------------------------------------------------------------------------------------------
# Junction builders


def random_fan_in_index(n_left: int, n_right: int, fi: int, rng: np.random.Generator) -> np.ndarray:
    """A random biregular junction: (n_right, fi) int32 fan-in index with sorted rows.

    Every right neuron gets fi distinct left neurons and every left neuron ends with the same fan-out
    fo = n_right * fi / n_left (the caller guarantees it is whole).

    Distribution: right neurons draw in turn; each takes its fi inputs without replacement, with
    probability proportional to the inputs' remaining fan-out (an exponential race: the fi smallest
    E_k / r_k, E_k ~ Exp(1)), which is how stub matching would draw them, minus the repeats. Any input
    whose remaining fan-out equals the number of right neurons still to draw is taken first; with that
    rule a draw can always be completed (every remaining r_k <= rows left is, for equal row sums, the
    Gale-Ryser condition), so no retry or repair is ever needed. The rows are finally put in random
    order. Every valid junction has non-zero probability and the distribution is invariant under
    relabelling the neurons of either layer; it is close to, not exactly, uniform over all valid
    junctions (exact uniform sampling of biregular graphs has no practical algorithm).
    Cost: n_right vectorised steps of O(n_left).
    """
    with np.errstate(divide="ignore"):  # exhausted inputs (r_k = 0) get an infinite key: never drawn
        index = _fill_rows(n_left, n_right, fi, lambda remaining: rng.standard_exponential(n_left) / remaining)
    return index if fi == n_left else index[rng.permutation(n_right)]


def _fill_rows(n_left: int, n_right: int, fi: int, draw_keys) -> np.ndarray:
    """Rows 0, 1, ... of a biregular junction, each the fi left neurons of smallest key: `draw_keys(remaining)`
    gives one key per left neuron from their remaining fan-outs; a neuron that must be taken to finish
    the pattern (remaining fan-out = rows left) gets a key below every other. A dense junction (fi = N_i)
    draws nothing."""
    if fi == n_left:
        return np.tile(np.arange(n_left, dtype=np.int32), (n_right, 1))
    remaining = np.full(n_left, n_right * fi // n_left, dtype=np.int64)
    index = np.empty((n_right, fi), dtype=np.int32)
    for row in range(n_right):
        keys = draw_keys(remaining)
        keys[remaining == n_right - row] = -1.0
        chosen = np.argpartition(keys, fi - 1)[:fi]
        remaining[chosen] -= 1
        index[row] = np.sort(chosen)
    return index


def sequential_fan_in_index(n_left: int, n_right: int, fi: int, rng: np.random.Generator) -> np.ndarray:
    """The authors' random junction ("adjmat_basic"): (n_right, fi) int32 fan-in index with sorted rows.

    Right neurons are filled in index order 0, 1, ..., n_right - 1 and the rows are not shuffled
    afterwards. Right neuron r takes its fi inputs uniformly at random, without repeats, among the left
    neurons whose fan-out is not yet full (every such neuron equally likely, whatever its remaining
    fan-out), except that any left neuron whose remaining fan-out equals the number of right neurons
    still to fill (r included) is forced: it is taken first and the draw fills the rest. This is how the
    last right neurons are forced to take what is left. The rule always ends with fan-in fi and fan-out
    fo = n_right * fi / n_left exactly: while every remaining fan-out is at most the number of rows
    left (true at the start, and kept by the forcing), a completion exists (Gale-Ryser for equal row
    sums); the forced neurons are then at most fi, and the other non-full neurons are more than
    enough for the rest. Forcing can only happen in the last fo rows, which is where the authors' code
    applies it; before those, the draw is a plain uniform choice among the non-full neurons. So the
    leftover fan-out ends up in the last contiguous right windows: this generator is far from uniform
    over biregular junctions (on 4 -> 4 with fi = 2, junction probabilities run from 5/12 to 5/2 of uniform).
    Cost: n_right vectorised steps of O(n_left).
    """
    def draw_keys(remaining):
        # A uniform random subset of the non-full inputs: the fi smallest of i.i.d. uniform keys, full
        # inputs keyed above every uniform one.
        keys = rng.random(n_left)
        keys[remaining == 0] = 2.0
        return keys

    return _fill_rows(n_left, n_right, fi, draw_keys)


# Generators of kind random (option `generator`); the first is the default, left out of the options.
GENERATORS: dict[str, Callable[[int, int, int, np.random.Generator], np.ndarray]] = {
    "uniform": random_fan_in_index,
    "sequential": sequential_fan_in_index,
}
DEFAULT_GENERATOR = "uniform"


def _generator_options(options: dict) -> dict:
    """Random options with the generator checked; the default generator dropped, so that asking for it
    by name gives the same streams, meta and bytes as not asking."""
    generator = options.get("generator", DEFAULT_GENERATOR)
    if generator not in GENERATORS:
        raise PatternError(
            f"unknown generator {generator!r} for kind random; valid generators: {', '.join(GENERATORS)}"
        )
    return {} if generator == DEFAULT_GENERATOR else {"generator": generator}


def _grouped_in_random_order(group: np.ndarray, value: np.ndarray, n_groups: int, n_values: int, rng) -> np.ndarray:
    """`value`s gathered by `group` (every group equally large), each group in random order.

    Returns (n_groups, group size). One sort of packed int64 keys (group | random | value): the keys
    are distinct, so the result does not depend on the sort algorithm, and it is fast.
    """
    value_bits = max(int(n_values - 1).bit_length(), 1)
    random_bits = 63 - value_bits - max(int(n_groups - 1).bit_length(), 1)
    noise = rng.integers(0, 1 << random_bits, size=group.size, dtype=np.int64)
    keys = np.sort((group.astype(np.int64) << (random_bits + value_bits)) | (noise << value_bits) | value)
    return (keys & ((1 << value_bits) - 1)).reshape(n_groups, -1)


def planned_fan_in_index(
    n_left: int, n_right: int, fo: int, c_f: int, c_b: int, rng: np.random.Generator
) -> np.ndarray:
    """A junction with an exact window structure: (n_right, fi) int32 fan-in index, sorted rows.

    Windows are contiguous: fi left windows and fo right windows, both of w = N_i/fi = N_{i+1}/fo
    neurons. The adjacency matrix is an fo x fi grid of w x w blocks (block (a, b): right window a,
    left window b). Each right neuron is active in fi/c_f blocks of its block row and takes c_f
    inputs in each; each left neuron is active in fo/c_b blocks of its block column and sends c_b
    outputs into each. So every block has w/c_f active rows and w/c_b active columns joined by a
    biregular (row sum c_f, column sum c_b) band, and S_if = 1/c_f, S_ib = 1/c_b exactly. With
    c_f = c_b = 1 every block is a permutation matrix (perfect spread). Which rows and columns are
    active in which block is a random biregular assignment (`random_fan_in_index`), and the band is
    laid over them in random order. Needs w whole, c_f | gcd(fi, w), c_b | gcd(fo, w), c_f * c_b <= w
    (the caller checks, see `_check_clusters`).
    """
    fi = n_left * fo // n_right
    w = n_right // fo
    p, q = w // c_f, w // c_b  # active rows / columns per block

    # Right window a: which fi/c_f left windows each of its w neurons draws from -> per block, p rows.
    row_blocks = np.stack([random_fan_in_index(fi, w, fi // c_f, rng) for _ in range(fo)])  # (fo, w, fi/c_f)
    group = (np.arange(fo)[:, None, None] * fi + row_blocks).ravel()
    row = np.broadcast_to(np.arange(w)[None, :, None], row_blocks.shape).ravel()
    rows = _grouped_in_random_order(group, row, fo * fi, w, rng).reshape(fo, fi, p)
    rows += (np.arange(fo) * w)[:, None, None]

    # Left window b: which fo/c_b right windows each of its w neurons sends into -> per block, q columns.
    col_blocks = np.stack([random_fan_in_index(fo, w, fo // c_b, rng) for _ in range(fi)])  # (fi, w, fo/c_b)
    group = (col_blocks * fi + np.arange(fi)[:, None, None]).ravel()
    col = np.broadcast_to(np.arange(w)[None, :, None], col_blocks.shape).ravel()
    cols = _grouped_in_random_order(group, col, fo * fi, w, rng).reshape(fo, fi, q)
    cols += (np.arange(fi) * w)[None, :, None]

    # Band: active row t takes active columns t*c_f .. t*c_f + c_f - 1 (mod q); p*c_f = q*c_b, so the
    # band wraps exactly c_b times and every active column gets c_b.
    t = np.arange(p)
    band = (t[:, None] * c_f + np.arange(c_f)[None, :]) % q  # (p, c_f)
    right = np.broadcast_to(rows[:, :, :, None], (fo, fi, p, c_f))
    left = cols[:, :, band]
    keys = np.sort(right.ravel().astype(np.int64) * n_left + left.ravel())
    return (keys % n_left).astype(np.int32).reshape(n_right, fi)


def unstructured_junction(n_left: int, n_right: int, fo: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """N_i * fo connections at distinct positions drawn uniformly from the N_{i+1} x N_i matrix.

    Returns the CSR form of the pattern file: flat int32 left indices grouped by right neuron (sorted
    within a row) and int64 indptr (N_{i+1}+1,).
    """
    positions = np.sort(rng.choice(n_right * n_left, size=n_left * fo, replace=False))
    right, left = np.divmod(positions, n_left)
    indptr = np.zeros(n_right + 1, dtype=np.int64)
    np.cumsum(np.bincount(right, minlength=n_right), out=indptr[1:])
    return left.astype(np.int32), indptr


# ---------------------------------------------------------------------------------------------------
# Planned options: clusters {junction (1-based): {"f": c_f, "b": c_b}}


def parse_clusters(text: str) -> dict[int, dict[str, int]]:
    """'1:f=2,2:b=4' -> {1: {'f': 2}, 2: {'b': 4}}; a junction may appear twice ('1:f=2,1:b=4')."""
    clusters: dict[int, dict[str, int]] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            junction_text, setting = item.split(":")
            direction, value_text = setting.split("=")
            junction, value = int(junction_text), int(value_text)
        except ValueError:
            raise PatternError(
                f"cluster '{item}' is malformed; expected JUNCTION:f=C or JUNCTION:b=C, e.g. 1:b=8"
            ) from None
        direction = direction.strip()
        if direction not in ("f", "b"):
            raise PatternError(f"cluster '{item}': direction '{direction}' is not f (forward) or b (backward)")
        if direction in clusters.get(junction, {}):
            raise PatternError(f"cluster '{item}': junction {junction} {direction} is given twice")
        clusters.setdefault(junction, {})[direction] = value
    return clusters


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _normalize_clusters(clusters, net, fanouts) -> dict[str, dict[str, int]]:
    """Validate clusters against the net; return them JSON-ready ({"2": {"f": 8}}), c = 1 dropped."""
    if not isinstance(clusters, Mapping):
        raise PatternError(f"clusters must map junction -> {{'f': c_f, 'b': c_b}}, got {clusters!r}")
    out: dict[str, dict[str, int]] = {}
    for key, setting in clusters.items():
        try:
            junction = int(key)
        except (TypeError, ValueError):
            raise PatternError(f"cluster junction '{key}' is not a number; valid: 1..{len(fanouts)}") from None
        if not 1 <= junction <= len(fanouts):
            raise PatternError(
                f"cluster junction {junction} does not exist; net {list(net)} has junctions 1..{len(fanouts)}"
            )
        if not isinstance(setting, Mapping) or not set(setting) <= {"f", "b"}:
            raise PatternError(f"cluster of junction {junction} must be {{'f': c_f, 'b': c_b}}, got {setting!r}")
        kept = {}
        for direction, value in setting.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise PatternError(f"junction {junction}: clustering {direction}={value!r} must be a whole number >= 1")
            if value > 1:
                kept[direction] = int(value)
        if kept:
            out[str(junction)] = dict(sorted(kept.items()))
    return dict(sorted(out.items(), key=lambda item: int(item[0])))


def _check_clusters(junction: int, n_left: int, n_right: int, fo: int, c_f: int, c_b: int) -> None:
    """Raise PatternError unless `planned_fan_in_index` can build this junction."""
    fi = n_left * fo // n_right
    where = f"junction {junction} ({n_left}->{n_right}, fo={fo}, fi={fi})"
    if n_right % fo:
        good = [v for v in valid_fanouts(n_left, n_right) if n_right % v == 0]
        raise PatternError(
            f"{where}: planned patterns need whole windows, N_{junction + 1}/fo = {n_right}/{fo} is not whole; "
            f"fan-outs that work: {', '.join(map(str, good))}"
        )
    w = n_right // fo
    valid_f, valid_b = _divisors(math.gcd(fi, w)), _divisors(math.gcd(fo, w))
    if c_f not in valid_f:
        raise PatternError(
            f"{where}: forward clustering f={c_f} must divide fi={fi} and the window size {w}; "
            f"valid f: {', '.join(map(str, valid_f))}"
        )
    if c_b not in valid_b:
        raise PatternError(
            f"{where}: backward clustering b={c_b} must divide fo={fo} and the window size {w}; "
            f"valid b: {', '.join(map(str, valid_b))}"
        )
    if c_f * c_b > w:
        raise PatternError(
            f"{where}: clusterings f={c_f} and b={c_b} together need f*b <= the window size {w}; "
            f"with f={c_f} valid b: {', '.join(str(c) for c in valid_b if c * c_f <= w)}; "
            f"with b={c_b} valid f: {', '.join(str(c) for c in valid_f if c * c_b <= w)}"
        )


# ---------------------------------------------------------------------------------------------------
# Kinds


@dataclass(frozen=True)
class Kind:
    """A pattern kind: `build(net, fanouts, seed, options) -> Pattern`, a one-line summary, its options."""

    build: Callable[[Sequence[int], Sequence[int] | None, int, dict], Pattern]
    summary: str
    options: tuple[str, ...] = ()


def _checked(net, fanouts, kind: str):
    if fanouts is None:
        raise PatternError(f"kind {kind} needs fan-outs (one per junction)")
    return check_net(net, fanouts)


def _drawn(kind: str, net, fanouts, seed: int, options: dict, draw) -> Pattern:
    """A pattern whose junction i is `draw(i, N_i, N_{i+1}, fo_i, rng_i) -> (index, indptr or None)`,
    each junction from its own seeded stream."""
    rngs = _junction_rngs(net, fanouts, kind, options, seed)
    parts = [draw(i, a, b, fo, rng) for i, (a, b, fo, rng) in enumerate(zip(net[:-1], net[1:], fanouts, rngs))]
    junctions, indptr = zip(*parts)
    return Pattern(net, fanouts, junctions, kind, indptr, meta={"seed": seed, "options": options})


def _build_dense(net, fanouts, seed, options):
    net, fanouts = check_net(net, fanouts)
    for i, (n_right, fo) in enumerate(zip(net[1:], fanouts), start=1):
        if fo != n_right:
            raise PatternError(f"junction {i}: kind dense needs fo = N_{i + 1} = {n_right}, got fo = {fo}")
    junctions = tuple(np.tile(np.arange(n, dtype=np.int32), (m, 1)) for n, m in zip(net[:-1], net[1:]))
    return Pattern(net, fanouts, junctions, "dense", meta={"seed": seed, "options": options})


def _build_random(net, fanouts, seed, options):
    options = _generator_options(options)
    net, fanouts = _checked(net, fanouts, "random")
    fan_in_index = GENERATORS[options.get("generator", DEFAULT_GENERATOR)]
    def draw(i, n_left, n_right, fo, rng):
        return fan_in_index(n_left, n_right, n_left * fo // n_right, rng), None

    return _drawn("random", net, fanouts, seed, options, draw)


def _build_planned(net, fanouts, seed, options):
    net, fanouts = _checked(net, fanouts, "planned")
    clusters = _normalize_clusters(options.get("clusters", {}), net, fanouts)
    settings = []
    for i, (n_left, n_right, fo) in enumerate(zip(net[:-1], net[1:], fanouts), start=1):
        setting = clusters.get(str(i), {})
        settings.append((setting.get("f", 1), setting.get("b", 1)))
        _check_clusters(i, n_left, n_right, fo, *settings[-1])
    def draw(i, n_left, n_right, fo, rng):
        return planned_fan_in_index(n_left, n_right, fo, *settings[i], rng), None

    return _drawn("planned", net, fanouts, seed, {"clusters": clusters}, draw)


def _build_unstructured(net, fanouts, seed, options):
    net, fanouts = _checked(net, fanouts, "unstructured")
    def draw(i, n_left, n_right, fo, rng):
        return unstructured_junction(n_left, n_right, fo, rng)

    return _drawn("unstructured", net, fanouts, seed, options, draw)


def _build_csc(net, fanouts, seed, options):
    """Cyclic support layers are deterministic: the seed is not used."""
    if fanouts is not None:
        raise PatternError("kind csc takes radices, not fan-outs: the support layers' fan-outs are the radices")
    if "radices" not in options:
        raise PatternError("kind csc needs the option radices (e.g. radices=[32, 32] for net [1024, 1024])")
    return csc_pattern(list(net), options["radices"])


KINDS: dict[str, Kind] = {
    "dense": Kind(_build_dense, "fully connected (fo_i = N_{i+1}; fan-outs may be omitted)"),
    "random": Kind(
        _build_random,
        "exactly fi inputs per right and fo outputs per left neuron, drawn at random (option generator: "
        "uniform, the default, or sequential, the authors' generator)",
        options=("generator",),
    ),
    "planned": Kind(
        _build_planned,
        "window structure with exact scatter S_if = 1/c_f, S_ib = 1/c_b per junction (option clusters)",
        options=("clusters",),
    ),
    "unstructured": Kind(_build_unstructured, "N_i*fo_i connections anywhere, no fan-in/fan-out constraint (baseline)"),
    "csc": Kind(
        _build_csc,
        "cyclic sparsely connected support layers replacing one N_in->N_out layer (option radices, no fan-outs)",
        options=("radices",),
    ),
}


def _onto_shaped_windows(pattern: Pattern, shapes) -> Pattern:
    """Relabel each planned junction so that its contiguous windows become the scatter's shaped ones.

    Junction i is relabelled on its own (left layer by its fi_i windows, right layer by its fo_i
    windows), which keeps its planned S_if and S_ib; the windows are those of `predsparse.scatter`.
    """
    from predsparse.scatter import window_grid, window_ids  # lazy: scatter imports the pattern format

    def window_major(layer: int, n_windows: int) -> np.ndarray:
        """Neuron at each window-major position (window 0's neurons first, ...)."""
        shape = shapes[layer]
        if shape is None:
            return np.arange(pattern.net[layer])
        return np.argsort(window_ids(shape, window_grid(shape, n_windows)), kind="stable")

    junctions = []
    for i, (idx, fo, fi) in enumerate(zip(pattern.junctions, pattern.fanouts, pattern.fanins)):
        left, right = window_major(i, fi), window_major(i + 1, fo)
        relabelled = np.empty_like(idx)
        relabelled[right] = np.sort(left[idx], axis=1)
        junctions.append(relabelled)
    return replace(pattern, junctions=tuple(junctions))


def generate_pattern(
    net: Sequence[int],
    fanouts: Sequence[int] | None,
    kind: str,
    seed: int = 0,
    *,
    shapes: Sequence[Sequence[int] | None] | None = None,
    **options,
) -> Pattern:
    """Build a pattern of `kind` for `net` (N_1..N_{J+1}) with fan-outs fo_1..fo_J.

    Options by kind: random takes `generator="uniform"` (the default) or `"sequential"` (the authors'
    generator, `sequential_fan_in_index`); planned takes `clusters={junction: {"f": c_f, "b": c_b}}`
    (junctions 1-based, c = 1 where not given); csc takes `radices=[r_1, ...]` and no fan-outs
    (net = [N_in, N_out]). Options equal to their default are left out of the meta and the seeding.
    `shapes` gives optional layer shapes (one per layer, None for flat) for shaped scatter windows;
    a planned pattern is then built on those windows.
    The kind, seed and options are recorded in the pattern's meta.
    """
    if kind not in KINDS:
        raise PatternError(f"unknown pattern kind '{kind}'; valid kinds: {', '.join(KINDS)}")
    spec = KINDS[kind]
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        valid = ", ".join(spec.options) or "none"
        raise PatternError(f"kind {kind} has no option {', '.join(unknown)}; its options: {valid}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PatternError(f"seed {seed!r} must be a whole number >= 0")
    seed = int(seed)

    pattern = spec.build(net, fanouts, seed, options)
    if shapes is not None:
        shapes = check_layer_shapes(shapes, pattern.net)
        if kind == "planned":
            pattern = _onto_shaped_windows(pattern, shapes)
        pattern = replace(pattern, shapes=shapes)
    return pattern
