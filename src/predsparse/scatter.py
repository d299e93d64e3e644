"""The scatter metric of a connectivity pattern (Dey et al., Section 3 and Appendix 5.2).

Windows
    The left neurons of junction i are grouped into windows, and so are its right neurons. The window
    size is the smallest that keeps the ideal number of connections between a window and a neuron on the
    other side a whole number. With equal windows that means n = gcd(N, fan) windows per layer, where
    fan is fi_i for the left layer and fo_i for the right one. Usually fi_i divides N_i, so there are fi_i
    left windows of N_i/fi_i neurons and fo_i right windows of N_{i+1}/fo_i neurons, each ideally joined
    to every opposite neuron by exactly c = 1 connection. For the equivalent junction X:Y of a run of
    junctions, fo_{X:Y} = prod fo_i and fi_{X:Y} = prod fi_i, and [A_{X:Y}]_{j,k} counts the paths from
    neuron k of layer X to neuron j of layer Y+1. When fi_{X:Y} exceeds N_X, the windows shrink to one
    neuron and the ideal count rises to c = fi_{X:Y} / N_X (e.g. 1024 / 64 = 16 for Morse 1:2).

Window shapes
    A layer without a shape is a line, and its windows are contiguous runs of neurons. A layer with a
    shape (`Pattern.shapes`, e.g. (1, 32, 32) for an image or (C, H, W) for conv features, flattened as
    index = c*H*W + h*W + w) gets a grid of windows: 2-D tiles of an image (Fig. 5a) or 3-D cuboids of
    features x height x width (Fig. 5b). `window_grid` factorises n over the dimensions. It takes the
    prime factors of n, largest first, and gives each one to the dimension with the fewest windows so
    far, among the dimensions whose window extent that factor divides. Ties go to the larger extent,
    then to the earlier dimension. So 16 windows of a (1, 32, 32) image are 4 x 4 tiles of 8 x 8, and
    8 windows of (256, 4, 4) features are 2 x 2 x 2 cuboids of 128 x 2 x 2.

Window adjacency matrices
    A^{wl} (N_{Y+1} x n_left) counts the connections, or paths, from each left window to each right
    neuron. A^{wr} (n_right x N_X) counts them from each left neuron to each right window (Fig. 5c).

Scatter, equation (1) of the paper, with the ideal count c (c = 1 in the paper's single junctions)
    S_f = 1/(N_{i+1} n_left)  sum_j sum_k min([A^{wl}]_{j,k} / c, 1)
    S_b = 1/(n_right N_i)     sum_j sum_k min([A^{wr}]_{j,k} / c, 1)
    A window with more than its fair share of connections to a neuron deprives another window, so no
    entry counts for more than the ideal. For c = 1 this is the fraction of entries >= 1, as in equation (1).

The vector S = [S1f, S1b, ..., SJf, SJb, Sf, Sb] ends with the equivalent junction 1:J (absent when
J = 1). The scalar S is its minimum. `ScatterResult.key` ranks patterns with equal S by the next
smallest values and how often they occur (Section 3.2).

Padded layers (real neurons only)
    A net whose input or output layer is padded (MNIST's 784 pixels in 1024 inputs, 10 classes in 16
    outputs) may be scored, as the authors do, over its real neurons only: `scatter_vector(pattern,
    real_in=..., real_out=...)`. Only the columns of real input neurons of A^{wr} count, in every run
    that starts at layer 1 (S1b and Sb), and only the rows of real output neurons of A^{wl}, in every
    run that ends at layer J+1 (SJf and Sf); the windows stay those of the whole layer, and paths
    through padded neurons still count where they end on a real one. Which neurons are real is given
    by `real_neuron_index`: an int n (the first n, the authors' layout: zeros appended at the end),
    a string "n" or "HxW/PxQ" (an H x W image centred in a P x Q zero border and flattened row-major,
    what `predsparse data mnist --layout pad32` writes: "28x28/32x32"), or the neuron indices
    themselves (or a boolean mask). With every neuron real the result equals the default exactly.

Cost
    Nothing of size N_i x N_{i+1} is built. A single junction takes one bincount over its edges. A run
    of junctions carries a (neurons x groups) count matrix through its junctions: one vectorised gather
    of rows per fan-in (or fan-out) position, so W_i x width additions per junction, in the narrowest
    integer type that holds the counts. The counts go forward from the left windows or backward from
    the right groups, whichever side has fewer. They are capped at c after every step. For
    non-negative counts min(A min(M, c), c) = min(A M, c), so the cap keeps them small and leaves
    the result unchanged. Unstructured junctions use the same edge lists, with the nominal
    fi = N_i fo_i / N_{i+1}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Sequence

import numpy as np

from predsparse.errors import PatternError, ScatterError
from predsparse.patterns.format import Pattern, check_layer_shape, fan_out_index


def window_count(n_neurons: int, fan: int) -> tuple[int, int]:
    """(number of windows n, ideal count c = fan / n) of a layer of N neurons for a fan fi or fo.

    n = gcd(N, fan) is the largest number of equal windows for which c stays a whole number.
    """
    if n_neurons < 1 or fan < 1:
        raise ScatterError(f"a layer of {n_neurons} neurons with fan {fan}: both must be at least 1")
    n = math.gcd(n_neurons, fan)
    return n, fan // n


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    if n > 1:
        factors.append(n)
    return factors


def _check_shape(shape: Sequence[int], n_neurons: int | None = None, layer: int | None = None) -> tuple[int, ...]:
    """`patterns.check_layer_shape` (layer 0-based here), as a ScatterError."""
    try:
        return check_layer_shape(shape, n_neurons, None if layer is None else layer + 1)
    except PatternError as exc:
        raise ScatterError(str(exc)) from None


def window_grid(shape: Sequence[int], n_windows: int) -> tuple[int, ...]:
    """Windows per dimension of a layer of this shape, with `n_windows` windows in all.

    Prime factors of n_windows, largest first, each go to the dimension with the fewest windows so far
    among those whose current window extent the factor divides (ties: larger extent, then earlier
    dimension). Raises ScatterError when n_windows does not divide the layer into equal windows.
    """
    shape = _check_shape(shape)
    size = math.prod(shape)
    if n_windows < 1 or size % n_windows:
        raise ScatterError(
            f"{n_windows} windows cannot split a layer of shape {list(shape)} ({size} neurons) into equal "
            f"windows; the number of windows must divide {size}"
        )
    grid = [1] * len(shape)
    for p in sorted(_prime_factors(n_windows), reverse=True):
        fits = [d for d in range(len(shape)) if (shape[d] // grid[d]) % p == 0]
        # Always non-empty: p divides the remaining neurons per window, the product of the extents.
        d = min(fits, key=lambda d: (grid[d], -(shape[d] // grid[d]), d))
        grid[d] *= p
    return tuple(grid)


def window_ids(shape: Sequence[int], grid: Sequence[int]) -> np.ndarray:
    """Window of every neuron (int64, flattening order of `shape`), windows numbered row-major over `grid`.

    Raises ScatterError when the grid does not tile the shape.
    """
    shape = _check_shape(shape)
    grid = tuple(int(g) for g in grid)
    if len(grid) != len(shape) or any(g < 1 or s % g for s, g in zip(shape, grid)):
        raise ScatterError(
            f"window grid {list(grid)} does not tile layer shape {list(shape)}; each dimension's number "
            "of windows must divide its size"
        )
    coords = np.unravel_index(np.arange(math.prod(shape), dtype=np.int64), shape)
    tile = [c // (s // g) for c, s, g in zip(coords, shape, grid)]
    return np.ravel_multi_index(tile, grid).astype(np.int64)


@dataclass(frozen=True)
class Windows:
    """The windows of one layer for one side of a (possibly equivalent) junction.

    `ids[k]` is the window of neuron k; `count` windows of equal size; `ideal` is c, the ideal number of
    connections (paths) between one window and one neuron on the other side.
    """

    ids: np.ndarray
    count: int
    ideal: int

    @property
    def size(self) -> int:
        return self.ids.size // self.count


def layer_windows(pattern: Pattern, layer: int, fan: int) -> Windows:
    """Windows of layer `layer` (0-based) of `pattern` for a fan fi (left side) or fo (right side)."""
    n_neurons = pattern.net[layer]
    count, ideal = window_count(n_neurons, fan)
    shape = _layer_shape(pattern, layer)
    return Windows(window_ids(shape, window_grid(shape, count)), count, ideal)


def _layer_shape(pattern: Pattern, layer: int) -> tuple[int, ...]:
    if len(pattern.shapes) != len(pattern.net):
        raise ScatterError(
            f"the pattern gives {len(pattern.shapes)} layer shapes for a net of {len(pattern.net)} layers"
        )
    shape = pattern.shapes[layer]
    return (pattern.net[layer],) if shape is None else _check_shape(shape, pattern.net[layer], layer)


def _singletons(n_neurons: int) -> Windows:
    """Every neuron its own group: the opposite side of a window adjacency matrix."""
    return Windows(np.arange(n_neurons, dtype=np.int64), n_neurons, 1)


class _Junctions:
    """A pattern's junctions as edge lists, grouped by right neuron and by left neuron (built on demand)."""

    def __init__(self, pattern: Pattern):
        self.pattern = pattern
        self._fan_out_lists: dict[int, np.ndarray] = {}

    def edge_ends(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(right, left) neuron of every edge of junction i, as arrays that broadcast together.

        A fixed junction gives (N_{i+1}, 1) and its (N_{i+1}, fi) fan-in index, so no per-edge copy of
        the right neuron is made; an unstructured one gives flat arrays.
        """
        if self.pattern.is_fixed(i):
            idx = self.pattern.junctions[i]
            return np.arange(idx.shape[0], dtype=np.int64)[:, None], idx
        return self.pattern.edges(i)

    def fan_in_lists(self, i: int) -> np.ndarray:
        """(max fi, N_{i+1}): column r lists the left neurons feeding right neuron r, padded with N_i."""
        if self.pattern.is_fixed(i):
            return np.ascontiguousarray(self.pattern.junctions[i].T)
        right, left = self.pattern.edges(i)
        return _padded_lists(right, left, self.pattern.net[i + 1], self.pattern.net[i])

    def fan_out_lists(self, i: int) -> np.ndarray:
        """(max fo, N_i): column k lists the right neurons fed by left neuron k, padded with N_{i+1}."""
        if i not in self._fan_out_lists:
            n_left = self.pattern.net[i]
            if self.pattern.is_fixed(i):
                right, _ = fan_out_index(self.pattern.junctions[i], n_left)
                lists = np.ascontiguousarray(right.T)
            else:
                right, left = self.pattern.edges(i)
                order = np.argsort(left, kind="stable")
                lists = _padded_lists(left[order], right[order], n_left, self.pattern.net[i + 1])
            self._fan_out_lists[i] = lists
        return self._fan_out_lists[i]

    def max_degree(self, i: int) -> int:
        """The largest fan-in or fan-out of junction i."""
        if self.pattern.is_fixed(i):
            return max(self.pattern.fanins[i], self.pattern.fanouts[i])
        right, left = self.pattern.edges(i)
        return int(max(np.bincount(right).max(initial=0), np.bincount(left).max(initial=0)))


def _padded_lists(owner: np.ndarray, member: np.ndarray, n_owners: int, pad: int) -> np.ndarray:
    """(max degree, n_owners) member lists from edges sorted by owner; short lists padded with `pad`."""
    degree = np.bincount(owner, minlength=n_owners)
    first_edge = np.cumsum(degree) - degree
    lists = np.full((int(degree.max(initial=0)), n_owners), pad, dtype=np.int64)
    lists[np.arange(owner.size) - first_edge[owner], owner] = member
    return lists


def _propagate(counts: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """One junction step: out[r] = sum of counts[s] over the sources s listed in column r of `lists`.

    `counts` has one zero row more than its layer has neurons, so the padding index of a short list
    adds nothing; the result keeps that extra zero row. One gather per list position: a vectorised
    add of (N x width) rows, much faster than gathering every edge at once and reducing.
    """
    out = np.zeros((lists.shape[1] + 1, counts.shape[1]), dtype=counts.dtype)
    body = out[:-1]
    for sources in lists:
        body += counts[sources]
    return out


def _count_dtype(bound: int, run: str) -> type:
    """The narrowest integer type that holds counts up to `bound` (narrow types gather faster)."""
    for dtype in (np.int16, np.int32, np.int64):
        if bound <= np.iinfo(dtype).max:
            return dtype
    raise ScatterError(
        f"path counts of junctions {run} can reach {bound}, beyond 64-bit integers; give a cap "
        "(the scatter metric caps at the ideal count)"
    )


def _group_rows(counts: np.ndarray, windows: Windows) -> np.ndarray:
    """Sum the rows of a (neurons x width) count matrix within each window: (windows x width)."""
    if windows.count == windows.ids.size:
        return counts  # one neuron per window: window ids are then 0..N-1 in neuron order
    order = np.argsort(windows.ids, kind="stable")
    return counts[order].reshape(windows.count, windows.size, counts.shape[1]).sum(axis=1)


def _check_run(pattern: Pattern, first: int, last: int) -> None:
    j = pattern.num_junctions
    if not (0 <= first <= last < j):
        raise ScatterError(
            f"junction run {first + 1}:{last + 1} is invalid for a net of {j} junction(s); "
            f"need 1 <= X <= Y <= {j}"
        )


def _group_adjacency(
    junctions: _Junctions, first: int, last: int, left: Windows, right: Windows, cap: int | None
) -> np.ndarray:
    """G = R^T A_{X:Y} L: paths from each left group to each right group, shape (right.count, left.count).

    Entries are min(count, cap) when cap is given (exact, see the module docstring), exact counts
    otherwise. The counts travel from the side with fewer groups, starting with one bincount over the
    edges of the junction on that side.
    """
    pattern = junctions.pattern
    degrees = [junctions.max_degree(i) for i in range(first, last + 1)]
    sizes = [left.size, right.size]
    bound = math.prod(degrees) * max(sizes) if cap is None else cap * max(degrees + sizes)
    dtype = _count_dtype(bound, f"{first + 1}:{last + 1}")

    def start(keys: np.ndarray, n_rows: int, width: int) -> np.ndarray:
        # (n_rows + 1, width) with a zero last row, as `_propagate` expects.
        flat = np.bincount(keys.reshape(-1), minlength=(n_rows + 1) * width)
        return capped(flat.astype(dtype).reshape(n_rows + 1, width))

    def capped(counts: np.ndarray) -> np.ndarray:
        return counts if cap is None else np.minimum(counts, cap, out=counts)

    if left.count <= right.count:
        # Carry left-window counts rightward: (N_{i+1} x n_left) after junction i.
        rows, cols = junctions.edge_ends(first)
        counts = start(rows * left.count + left.ids[cols], pattern.net[first + 1], left.count)
        for i in range(first + 1, last + 1):
            counts = capped(_propagate(counts, junctions.fan_in_lists(i)))
        return capped(_group_rows(counts[:-1], right))
    # Carry right-group counts leftward: (N_i x n_right) before junction i; returned transposed.
    rows, cols = junctions.edge_ends(last)
    counts = start(np.multiply(cols, right.count, dtype=np.int64) + right.ids[rows], pattern.net[last], right.count)
    for i in range(last - 1, first - 1, -1):
        counts = capped(_propagate(counts, junctions.fan_out_lists(i)))
    return capped(_group_rows(counts[:-1], left)).T


def equivalent_fans(pattern: Pattern, first: int = 0, last: int | None = None) -> tuple[int, int]:
    """(fo_{X:Y}, fi_{X:Y}) = (prod fo_i, prod fi_i) over junctions first..last (0-based, inclusive)."""
    last = pattern.num_junctions - 1 if last is None else last
    _check_run(pattern, first, last)
    return math.prod(pattern.fanouts[first : last + 1]), math.prod(pattern.fanins[first : last + 1])


def run_windows(pattern: Pattern, first: int, last: int) -> tuple[Windows, Windows]:
    """(left windows of layer X for fi_{X:Y}, right windows of layer Y+1 for fo_{X:Y})."""
    fo, fi = equivalent_fans(pattern, first, last)
    return layer_windows(pattern, first, fi), layer_windows(pattern, last + 1, fo)


def window_adjacency(
    pattern: Pattern, direction: str, first: int = 0, last: int | None = None, *, cap: int | None = None
) -> np.ndarray:
    """Window adjacency matrix of junction run first..last (0-based, inclusive; one junction by default).

    direction "forward": A^{wl} (N_{Y+1} x n_left), paths from each left window to each right neuron.
    direction "backward": A^{wr} (n_right x N_X), paths from each left neuron to each right window.
    Entries are exact path counts, or min(count, cap) when `cap` is given.
    """
    last = first if last is None else last
    _check_run(pattern, first, last)
    left, right = run_windows(pattern, first, last)
    if direction == "forward":
        right = _singletons(pattern.net[last + 1])
    elif direction == "backward":
        left = _singletons(pattern.net[first])
    else:
        raise ScatterError(f"direction {direction!r} is unknown; use 'forward' or 'backward'")
    return _group_adjacency(_Junctions(pattern), first, last, left, right, cap)


def _mean_capped(adjacency: np.ndarray, ideal: int) -> Fraction:
    """Equation (1): the mean of min(entry / c, 1), for an adjacency already capped at c."""
    return Fraction(int(adjacency.sum(dtype=np.int64)), adjacency.size * ideal)


def _run_scatter(
    junctions: _Junctions, first: int, last: int, real_in: np.ndarray | None = None, real_out: np.ndarray | None = None
) -> tuple[Fraction, Fraction]:
    """(S_f, S_b); `real_in` / `real_out` (neuron indices) keep only those columns of A^{wr} when the run
    starts at layer 1, only those rows of A^{wl} when it ends at the last layer."""
    pattern = junctions.pattern
    left, right = run_windows(pattern, first, last)
    forward = _group_adjacency(junctions, first, last, left, _singletons(pattern.net[last + 1]), left.ideal)
    backward = _group_adjacency(junctions, first, last, _singletons(pattern.net[first]), right, right.ideal)
    if real_out is not None and last == pattern.num_junctions - 1:
        forward = forward[real_out]
    if real_in is not None and first == 0:
        backward = backward[:, real_in]
    return _mean_capped(forward, left.ideal), _mean_capped(backward, right.ideal)


def run_scatter(
    pattern: Pattern, first: int = 0, last: int | None = None, *, real_in=None, real_out=None
) -> tuple[Fraction, Fraction]:
    """(S_f, S_b) of junction run first..last (0-based, inclusive; one junction by default), exact.

    `real_in`, `real_out`: the real neurons of a padded input / output layer (see `real_neuron_index`).
    """
    last = first if last is None else last
    _check_run(pattern, first, last)
    real = _real_neurons(pattern, real_in, real_out)
    return _run_scatter(_Junctions(pattern), first, last, *(r[0] if r else None for r in real))


def _centred_index(text: str, n_neurons: int, side: str) -> np.ndarray | None:
    """Indices of an inner block centred in an outer one, "HxW/PxQ" (any number of dimensions, row-major);
    None when `text` is not of that form."""
    inner_text, _, outer_text = text.partition("/")
    try:
        inner = tuple(int(d) for d in inner_text.split("x"))
        outer = tuple(int(d) for d in outer_text.split("x"))
    except ValueError:
        return None
    if len(inner) != len(outer) or min(inner + outer) < 1:
        return None
    if math.prod(outer) != n_neurons:
        raise ScatterError(
            f"real {side} neurons {text!r}: the outer shape {outer_text} holds {math.prod(outer)} neurons, but the "
            f"layer has {n_neurons}"
        )
    if any(i > o or (o - i) % 2 for i, o in zip(inner, outer)):
        raise ScatterError(
            f"real {side} neurons {text!r}: the inner shape {inner_text} must fit centred in {outer_text} (each "
            "dimension at most the outer one, with an even difference: the same border on both sides)"
        )
    offsets = [(o - i) // 2 for i, o in zip(inner, outer)]
    coords = np.indices(inner).reshape(len(inner), -1) + np.array(offsets)[:, None]
    return np.ravel_multi_index(tuple(coords), outer).astype(np.int64)


def real_neuron_index(real, n_neurons: int, side: str = "input") -> tuple[np.ndarray, str]:
    """(sorted indices of the real neurons of a layer of N neurons, the canonical spelling of `real`).

    `real` is an int n (the first n neurons: padding appended at the end, the authors' layout), a string
    "n" or "HxW/PxQ" (an H x W block centred in a P x Q layer flattened row-major; any number of
    dimensions, e.g. "28x28/32x32" for MNIST zero-padded by 2 pixels on every side), or the neuron
    indices themselves (a sequence of distinct ints) or a boolean mask of length N. The spelling is
    "n", "HxW/PxQ" or "indices". Raises ScatterError naming the value and the valid forms.
    """
    forms = 'an int n (the first n neurons), "HxW/PxQ" (HxW centred in PxQ), or the neuron indices or a mask'
    if isinstance(real, str) and not real.strip().isdigit():
        index = _centred_index(real.strip(), n_neurons, side)
        if index is None:
            raise ScatterError(f"real {side} neurons {real!r} are not {forms}")
        return index, real.strip()
    if isinstance(real, (str, int, np.integer)) and not isinstance(real, bool):
        n = int(real)
        if not 1 <= n <= n_neurons:
            raise ScatterError(f"real {side} neurons {real!r}: the count must be between 1 and the layer's {n_neurons}")
        return np.arange(n, dtype=np.int64), str(n)
    values = np.asarray(real)
    if values.ndim != 1:
        raise ScatterError(f"real {side} neurons {real!r} are not {forms}")
    if values.size == 0:
        values = values.astype(np.int64)  # reported below: an empty set
    if values.dtype == bool:
        if values.shape != (n_neurons,):
            raise ScatterError(f"real {side} neuron mask has shape {list(values.shape)}, not [{n_neurons}]")
        values = np.flatnonzero(values)
    elif not np.issubdtype(values.dtype, np.integer):
        raise ScatterError(f"real {side} neurons {real!r} are not {forms}")
    index = np.unique(values).astype(np.int64)
    if index.size != values.size:
        raise ScatterError(f"real {side} neuron indices repeat a neuron; give each once")
    if index.size == 0 or index[0] < 0 or index[-1] >= n_neurons:
        raise ScatterError(f"real {side} neuron indices must be a non-empty subset of 0..{n_neurons - 1}")
    return index, "indices"


def _real_neurons(pattern: Pattern, real_in, real_out) -> tuple[tuple[np.ndarray, str] | None, ...]:
    return tuple(
        None if real is None else real_neuron_index(real, pattern.net[layer], side)
        for real, layer, side in ((real_in, 0, "input"), (real_out, -1, "output"))
    )


@dataclass(frozen=True)
class ScatterResult:
    """The scatter vector of a pattern, exact (`fractions`) and as floats (`vector`).

    Patterns compare by `key`: a larger key is a better pattern. It is the vector sorted ascending, so
    the minimum S decides first, then the next smallest values. A pattern with fewer occurrences of
    the minimum has a larger next value, so it wins a tie on S.
    """

    labels: tuple[str, ...]
    fractions: tuple[Fraction, ...]
    # Which neurons were scored (see `scatter_vector`); None: every neuron of every layer.
    real_neurons: dict | None = field(default=None, hash=False)

    @cached_property
    def vector(self) -> tuple[float, ...]:
        return tuple(float(f) for f in self.fractions)

    @property
    def scatter(self) -> float:
        """The scalar S: the minimum of the vector."""
        return float(min(self.fractions))

    @cached_property
    def key(self) -> tuple[Fraction, ...]:
        return tuple(sorted(self.fractions))

    def to_dict(self) -> dict:
        """{"vector", "labels", "scatter"}, plus "real_neurons" when only the real neurons were scored."""
        out = {"vector": list(self.vector), "labels": list(self.labels), "scatter": self.scatter}
        if self.real_neurons is not None:
            out["real_neurons"] = self.real_neurons
        return out


def scatter_labels(num_junctions: int) -> tuple[str, ...]:
    """["S1f", "S1b", ..., "SJf", "SJb"] plus ["Sf", "Sb"] for the equivalent junction 1:J when J > 1."""
    labels = [f"S{i}{d}" for i in range(1, num_junctions + 1) for d in "fb"]
    return tuple(labels + (["Sf", "Sb"] if num_junctions > 1 else []))


def scatter_vector(pattern: Pattern, *, real_in=None, real_out=None) -> ScatterResult:
    """S = [S1f, S1b, ..., SJf, SJb, Sf, Sb] of a pattern (Sf, Sb: equivalent junction 1:J, when J > 1).

    Layer shapes come from `pattern.shapes`; use `dataclasses.replace(pattern, shapes=...)` to window a
    pattern saved without them.

    `real_in`, `real_out`: the real neurons of a padded input (layer 1) and output (layer J+1) layer,
    in any form `real_neuron_index` takes (e.g. real_in="28x28/32x32" or 784, real_out=10). S1b and Sb
    are then averaged over the real input neurons only, SJf and Sf over the real output neurons only
    (the authors' convention; see the module docstring). The result records them in `real_neurons`:
    {"input": {"real": count, "of": N_1, "spec": spelling}, "output": {...}} ("all" for a side not
    given); it stays None when neither is given.
    """
    real = _real_neurons(pattern, real_in, real_out)
    junctions = _Junctions(pattern)
    j = pattern.num_junctions
    runs = [(i, i) for i in range(j)] + ([(0, j - 1)] if j > 1 else [])
    indices = tuple(r[0] if r else None for r in real)
    fractions = [s for first, last in runs for s in _run_scatter(junctions, first, last, *indices)]
    record = None
    if real_in is not None or real_out is not None:
        record = {
            side: {"real": int(n if r is None else r[0].size), "of": int(n), "spec": "all" if r is None else r[1]}
            for side, r, n in (("input", real[0], pattern.net[0]), ("output", real[1], pattern.net[-1]))
        }
    return ScatterResult(scatter_labels(j), tuple(fractions), record)
