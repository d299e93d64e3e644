"""The pattern file: the one format every part of predsparse reads.

A pattern describes the connections of a net of layer sizes N_1..N_{J+1}, junction i joining layer i
(left, N_i neurons) to layer i+1 (right, N_{i+1} neurons). With fan-out fo_i every left neuron sends fo_i
connections and every right neuron receives fi_i = N_i * fo_i / N_{i+1}.

On disk (`.npz`, never pickled):
- `net`: int64 (J+1,) layer sizes; `fanouts`: int64 (J,) fan-outs.
- `j1`, `j2`, ...: int32 (N_{i+1}, fi_i); row r lists, sorted, the left neurons feeding right neuron r.
  These arrays feed `SparseLinear` directly.
- A junction without fixed fan-in (kind `unstructured`) is stored CSR-style instead: `j{i}` flat int32
  left indices grouped by right neuron (sorted within each row) and `j{i}_indptr` int64 (N_{i+1}+1,).
  It still has N_i * fo_i connections.
- `meta` (optional: files of other tools may lack it): a JSON object (0-d string array) with the kind, seed,
  options and optional layer shapes. Without it, the kind follows from the junctions (unstructured if one is
  stored CSR-style, dense if all are complete, else random) and no layer has a shape.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from predsparse.errors import PatternError
from predsparse.io import load_npz, npz_bytes, save_npz

FORMAT_VERSION = 1


def valid_fanouts(n_left: int, n_right: int) -> list[int]:
    """Every fan-out fo in [1, n_right] for which fi = n_left * fo / n_right is a whole number."""
    step = n_right // math.gcd(n_left, n_right)
    return list(range(step, n_right + 1, step))


def nearest_valid_fanouts(n_left: int, n_right: int, fo: int) -> list[int]:
    """The valid fan-outs closest to `fo` (one or two of them), for error messages."""
    valid = valid_fanouts(n_left, n_right)
    best = min(abs(v - fo) for v in valid)
    return [v for v in valid if abs(v - fo) == best]


def check_net(net: Sequence[int], fanouts: Sequence[int] | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Validate a net and its fan-outs; return them as tuples of int.

    Raises PatternError naming the junction, the bad value and the nearest valid fan-outs.
    """
    net = tuple(int(n) for n in net)
    if len(net) < 2:
        raise PatternError(f"net {list(net)} has {len(net)} layer(s); a net needs at least 2 layers (one junction)")
    for i, n in enumerate(net, start=1):
        if n < 1:
            raise PatternError(f"layer {i} of net {list(net)} has {n} neurons; every layer needs at least 1")
    if fanouts is None:
        return net, tuple(net[1:])
    fanouts = tuple(int(f) for f in fanouts)
    if len(fanouts) != len(net) - 1:
        raise PatternError(
            f"net {list(net)} has {len(net) - 1} junction(s) but {len(fanouts)} fan-out(s) were given: {list(fanouts)}"
        )
    for i, (n_left, n_right, fo) in enumerate(zip(net[:-1], net[1:], fanouts), start=1):
        if not 1 <= fo <= n_right or (n_left * fo) % n_right:
            why = (
                f"must be between 1 and N_{i + 1}={n_right}"
                if not 1 <= fo <= n_right
                else f"gives fan-in fi = {n_left}*{fo}/{n_right} = {n_left * fo / n_right:g}, not a whole number"
            )
            near = nearest_valid_fanouts(n_left, n_right, fo)
            raise PatternError(
                f"junction {i} ({n_left}->{n_right}): fan-out {fo} {why}; nearest valid fan-outs: "
                + ", ".join(map(str, near))
            )
    return net, fanouts


def fanins(net: Sequence[int], fanouts: Sequence[int]) -> tuple[int, ...]:
    """fi_i = N_i * fo_i / N_{i+1} for every junction (assumes `check_net` passed)."""
    return tuple(net[i] * fanouts[i] // net[i + 1] for i in range(len(fanouts)))


@dataclass(frozen=True, eq=False)
class Pattern:
    """Connections of every junction of a net.

    `junctions[i]` is the fan-in index of junction i+1: int32 (N_{i+2}, fi) with sorted rows, or, where
    `indptr[i]` is not None, the flat CSR form of a junction without fixed fan-in.
    `shapes[l]` optionally gives layer l's shape in the flattening order of the models (e.g. (1, 32, 32)
    for an image, (C, H, W) for conv features), used for shaped scatter windows.
    """

    net: tuple[int, ...]
    fanouts: tuple[int, ...]
    junctions: tuple[np.ndarray, ...]
    kind: str = "random"
    indptr: tuple[np.ndarray | None, ...] = ()
    shapes: tuple[tuple[int, ...] | None, ...] = ()
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.indptr:
            object.__setattr__(self, "indptr", (None,) * len(self.junctions))
        if not self.shapes:
            object.__setattr__(self, "shapes", (None,) * len(self.net))

    @property
    def num_junctions(self) -> int:
        return len(self.fanouts)

    @property
    def fanins(self) -> tuple[int, ...]:
        return fanins(self.net, self.fanouts)

    def is_fixed(self, i: int) -> bool:
        """Whether junction i (0-based) has fixed fan-in and fan-out."""
        return self.indptr[i] is None

    def fan_in_index(self, i: int) -> np.ndarray:
        """The (N_{i+1}, fi) fan-in index of junction i (0-based); only for fixed junctions."""
        if not self.is_fixed(i):
            raise PatternError(f"junction {i + 1} of this {self.kind} pattern has no fixed fan-in")
        return self.junctions[i]

    def edges(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(right, left) int64 arrays of every connection of junction i (0-based), grouped by right neuron."""
        idx = self.junctions[i]
        if self.is_fixed(i):
            n_right, fi = idx.shape
            return np.repeat(np.arange(n_right, dtype=np.int64), fi), idx.reshape(-1).astype(np.int64)
        ptr = self.indptr[i]
        return np.repeat(np.arange(len(ptr) - 1, dtype=np.int64), np.diff(ptr)), idx.astype(np.int64)

    def num_weights(self, i: int) -> int:
        return int(self.junctions[i].size)

    def adjacency(self, i: int) -> np.ndarray:
        """Dense 0/1 adjacency A_i (N_{i+1} x N_i). For small nets and tests only."""
        a = np.zeros((self.net[i + 1], self.net[i]), dtype=np.int64)
        right, left = self.edges(i)
        a[right, left] = 1
        return a

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {
            "net": np.asarray(self.net, dtype=np.int64),
            "fanouts": np.asarray(self.fanouts, dtype=np.int64),
        }
        for i, idx in enumerate(self.junctions, start=1):
            arrays[f"j{i}"] = np.ascontiguousarray(idx, dtype=np.int32)
            if self.indptr[i - 1] is not None:
                arrays[f"j{i}_indptr"] = np.asarray(self.indptr[i - 1], dtype=np.int64)
        meta = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "shapes": [list(s) if s is not None else None for s in self.shapes],
            **{k: v for k, v in self.meta.items() if k not in ("format", "kind", "shapes")},
        }
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True, separators=(",", ":")))
        return arrays

    def to_bytes(self) -> bytes:
        return npz_bytes(self.to_arrays())

    def save(self, path: str | os.PathLike) -> None:
        """Atomically write the pattern; equal patterns give byte-identical files."""
        save_npz(path, self.to_arrays())


def fan_out_index(fan_in_index: np.ndarray, n_left: int, pad: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Transpose a fixed fan-in index into the fixed fan-out index.

    Returns (right, position), both int64 (n_left, fo): left neuron k feeds right neurons right[k] and
    the weights of those connections sit at flat positions position[k] of the (N_{i+1}, fi) weight
    array. Raises PatternError if the left neurons do not all have the same fan-out, unless `pad`: then
    every list is padded to the largest fan-out with right neuron 0 at position N_{i+1} * fi, one past
    the last weight (the layer reads a zero there), so fan-outs may differ (pruned or rewired junctions).
    """
    idx = np.asarray(fan_in_index)
    n_right, fi = idx.shape
    flat = idx.reshape(-1).astype(np.int64)
    counts = np.bincount(flat, minlength=n_left)
    order = np.argsort(flat, kind="stable")
    if counts.size == n_left and counts.size and (pad or counts.min() == counts.max()):
        fo = int(counts.max())
        if counts.min() == fo:
            return (order // fi).reshape(n_left, fo), order.reshape(n_left, fo)
        # Slot s of left neuron k holds its s-th connection, or the pad where k has fewer than s + 1.
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        slots = np.arange(fo)[None, :]
        present = slots < counts[:, None]
        position = np.full((n_left, fo), flat.size, dtype=np.int64)
        position[present] = order[(starts[:, None] + slots)[present]]
        right = np.where(present, position // fi, 0)
        return right, position
    bad = int(np.argmax(counts != counts[0])) if counts.size == n_left else n_left
    raise PatternError(
        f"fan-outs are not equal: left neuron 0 has {int(counts[0]) if counts.size else 0} connections, left neuron "
        f"{bad} has {int(counts[bad]) if bad < counts.size else 'out-of-range'}; a fixed fan-out pattern is required"
    )


def validate_fan_in(idx: np.ndarray, n_left: int, n_right: int, junction: int, where: str | None = None) -> None:
    """Check a fan-in index (N_{i+1}, fi), fi >= 1: integer type, range, and rows without repeats (sorted
    rows strictly increase; sort a copy first to accept rows in any order)."""
    where = where or f"junction {junction} ({n_left}->{n_right})"
    if idx.ndim != 2 or idx.shape[0] != n_right or idx.shape[1] < 1:
        raise PatternError(f"{where}: fan-in index has shape {tuple(idx.shape)}, expected ({n_right}, fi) with fi >= 1")
    if not np.issubdtype(idx.dtype, np.integer):
        raise PatternError(f"{where}: fan-in index has dtype {idx.dtype}, expected an integer type")
    if idx.size and (idx.min() < 0 or idx.max() >= n_left):
        raise PatternError(
            f"{where}: left neuron index {int(idx.min()) if idx.min() < 0 else int(idx.max())} is out of range [0, {n_left})"
        )
    if idx.shape[1] > 1:
        steps = np.diff(idx.astype(np.int64), axis=1)
        if (steps <= 0).any():
            row = int(np.argwhere(steps <= 0)[0, 0])
            raise PatternError(f"{where}: row {row} is not strictly increasing (repeated or unsorted entries)")


def validate_junction(idx: np.ndarray, n_left: int, n_right: int, fo: int, junction: int) -> None:
    """Check a fixed fan-in index: shape, range, sorted rows without repeats, and equal fan-out fo."""
    fi = n_left * fo // n_right
    where = f"junction {junction} ({n_left}->{n_right}, fo={fo})"
    if idx.ndim != 2 or idx.shape != (n_right, fi):
        raise PatternError(f"{where}: fan-in index has shape {tuple(idx.shape)}, expected ({n_right}, {fi})")
    validate_fan_in(idx, n_left, n_right, junction, where)
    counts = np.bincount(idx.reshape(-1).astype(np.int64), minlength=n_left)
    if (counts != fo).any():
        k = int(np.argmax(counts != fo))
        raise PatternError(f"{where}: left neuron {k} has fan-out {int(counts[k])}, expected {fo}")


def _validate_free_junction(idx: np.ndarray, ptr: np.ndarray, n_left: int, n_right: int, fo: int, junction: int) -> None:
    where = f"junction {junction} ({n_left}->{n_right}, unstructured)"
    if ptr.shape != (n_right + 1,) or ptr[0] != 0 or (np.diff(ptr) < 0).any() or ptr[-1] != idx.size:
        raise PatternError(f"{where}: indptr is malformed")
    if idx.size != n_left * fo:
        raise PatternError(f"{where}: has {idx.size} connections, expected N_i*fo = {n_left * fo}")
    if idx.size and (idx.min() < 0 or idx.max() >= n_left):
        raise PatternError(f"{where}: left neuron index out of range [0, {n_left})")
    steps = np.diff(idx.astype(np.int64))
    row_starts = ptr[1:-1]
    inner = np.ones(steps.size, dtype=bool)
    inner[row_starts[(row_starts > 0) & (row_starts < idx.size)] - 1] = False
    if (steps[inner] <= 0).any():
        raise PatternError(f"{where}: a row has repeated or unsorted entries")


def as_pattern(path_or_pattern: Pattern | str | os.PathLike) -> Pattern:
    """The pattern itself, or the validated pattern loaded from a file path."""
    return path_or_pattern if isinstance(path_or_pattern, Pattern) else load_pattern(path_or_pattern)


def load_pattern(path: str | os.PathLike) -> Pattern:
    """Load and fully validate a pattern file; any problem raises PatternError naming it."""
    path = Path(path)
    if not path.is_file():
        raise PatternError(f"pattern file {path} does not exist")
    try:
        arrays = load_npz(path)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise PatternError(f"{path} is not a readable pattern file (.npz): {exc}") from None
    return pattern_from_arrays(arrays, str(path))


def _integer_vector(arrays: dict[str, np.ndarray], key: str, where: str) -> list[int]:
    """A 1-D integer array of a pattern file as a list (never a float silently truncated)."""
    value = arrays[key]
    if value.ndim != 1 or not np.issubdtype(value.dtype, np.integer):
        raise PatternError(f"{where}: array '{key}' has shape {tuple(value.shape)} and dtype {value.dtype}; expected "
                           "a 1-D integer array")
    return value.tolist()


def _meta(arrays: dict[str, np.ndarray], where: str) -> dict:
    """The `meta` of a pattern file: a JSON object in a 0-d string array; {} when the file has none."""
    if "meta" not in arrays:
        return {}
    value = arrays["meta"]
    if value.ndim != 0 or value.dtype.kind not in "US":
        raise PatternError(f"{where}: 'meta' has shape {tuple(value.shape)} and dtype {value.dtype}; expected a 0-d "
                           "string array holding a JSON object")
    try:
        meta = json.loads(str(value))
    except json.JSONDecodeError:
        raise PatternError(f"{where}: 'meta' is not valid JSON") from None
    if not isinstance(meta, dict):
        raise PatternError(f"{where}: 'meta' is JSON {type(meta).__name__}, expected an object, e.g. "
                           '{"kind": "random"}')
    if not isinstance(meta.get("kind", ""), str):
        raise PatternError(f"{where}: meta 'kind' is {meta['kind']!r}, expected a name such as 'random'")
    return meta


def check_layer_shape(shape, n_neurons: int | None = None, layer: int | None = None) -> tuple[int, ...]:
    """`shape` as a tuple of positive integers; a PatternError names the layer (1-based) when it is not
    one, or when it does not hold `n_neurons`. The one check of a layer shape: pattern files, the
    generator, scatter and the pipeline's config all ask here."""
    name = "layer shape" if layer is None else f"layer {layer} shape"
    if (not isinstance(shape, (list, tuple)) or not shape
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1 for d in shape)):
        raise PatternError(f"{name} {shape!r} is not a list of positive integers (or null for a flat layer)")
    shape = tuple(int(d) for d in shape)
    if n_neurons is not None and math.prod(shape) != n_neurons:
        raise PatternError(f"{name} {'x'.join(map(str, shape))} holds {math.prod(shape)} neurons, but the layer "
                           f"has {n_neurons}")
    return shape


def check_layer_shapes(shapes, net: Sequence[int]) -> tuple[tuple[int, ...] | None, ...]:
    """One shape per layer of `net` (None: a flat layer), each checked by `check_layer_shape`."""
    shapes = list(shapes)
    if len(shapes) != len(net):
        raise PatternError(f"{len(shapes)} layer shapes were given for a net of {len(net)} layers {list(net)}")
    return tuple(None if shape is None else check_layer_shape(shape, n, layer)
                 for layer, (shape, n) in enumerate(zip(shapes, net), start=1))


def _shapes(meta: dict, net: tuple[int, ...], where: str) -> tuple[tuple[int, ...] | None, ...]:
    shapes = meta.pop("shapes", None) or [None] * len(net)
    if not isinstance(shapes, list) or len(shapes) != len(net):
        raise PatternError(f"{where}: meta 'shapes' is {shapes!r}; expected a list of {len(net)} layer shapes "
                           "(a list of positive integers, or null for a flat layer), one per layer of the net")
    try:
        return check_layer_shapes(shapes, net)
    except PatternError as exc:
        raise PatternError(f"{where}: meta 'shapes': {exc}") from None


def pattern_from_arrays(arrays: dict[str, np.ndarray], where: str = "pattern") -> Pattern:
    """The validated pattern of the arrays of a pattern file (`Pattern.to_arrays`); `where` names them.

    `meta` is optional (files written by other tools): without it the pattern has no layer shapes and its
    kind follows from the junctions (see `_kind`)."""
    for key in ("net", "fanouts"):
        if key not in arrays:
            raise PatternError(f"{where} is not a pattern file: array '{key}' is missing (a pattern file holds "
                               "net, fanouts, j1..jJ and optionally meta)")
    meta = _meta(arrays, where)
    try:
        net, fanouts = check_net(_integer_vector(arrays, "net", where), _integer_vector(arrays, "fanouts", where))
    except PatternError as exc:
        raise PatternError(exc.args[0] if str(exc).startswith(where) else f"{where}: {exc}") from None
    junctions, indptr = [], []
    for i in range(1, len(net)):
        key = f"j{i}"
        if key not in arrays:
            raise PatternError(f"{where}: junction array '{key}' is missing")
        idx, ptr = arrays[key], arrays.get(f"{key}_indptr")
        if ptr is not None and (ptr.ndim != 1 or not np.issubdtype(ptr.dtype, np.integer)
                                or not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 1):
            raise PatternError(f"{where}: junction {i} is stored CSR-style but '{key}' (shape {tuple(idx.shape)}, "
                               f"{idx.dtype}) and '{key}_indptr' (shape {tuple(ptr.shape)}, {ptr.dtype}) are not both "
                               "1-D integer arrays")
        try:
            if ptr is None:
                validate_junction(idx, net[i - 1], net[i], fanouts[i - 1], i)
            else:
                _validate_free_junction(idx, ptr, net[i - 1], net[i], fanouts[i - 1], i)
        except PatternError as exc:
            raise PatternError(f"{where}: {exc}") from None
        junctions.append(idx.astype(np.int32, copy=False))
        indptr.append(ptr)
    shapes = _shapes(meta, net, where)
    # A file without a kind (another tool's): unstructured if a junction is stored CSR-style, dense if every
    # junction is complete, else random (fixed fan-in and fan-out).
    if "kind" in meta:
        kind = meta.pop("kind")
    elif any(ptr is not None for ptr in indptr):
        kind = "unstructured"
    else:
        kind = "dense" if fanouts == tuple(net[1:]) else "random"
    meta.pop("format", None)
    return Pattern(net, fanouts, tuple(junctions), kind, tuple(indptr), shapes, meta)
