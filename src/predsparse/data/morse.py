"""The Morse code dataset family (Dey, Chugg, Beerel, "Morse Code Datasets for Machine Learning", 2018).

One sample is a frame of `framelen * dilation` values (64 by default) holding one codeword of the 64-class
codebook `morse_codebook.csv` (the paper's class order). Per sample, every dot, dash and inner space gets a
length drawn uniformly from its range; the codeword starts at the left edge, or after a uniform random number
of leading spaces when `leadingsp_rand` is on; the rest of the frame is trailing space.

Styles:
- `gray`: every value of a dot or dash is an independent Gaussian level N(symbmean, symbsd) out of `levels`,
  spaces are 0; Gaussian noise N(noisemean, noisesd) is added to every value; values are clipped to
  [0, levels], divided by `levels` and rounded to 3 decimals; with `integer_levels` (the October 2017
  generator) they are first rounded to the nearest integer, so every value is a multiple of 1/levels.

Variants: `baseline` (noise-free), `difficult` (noise sd 4, random leading spaces, dashes 3-9) and
`paper2017` (the October 2017 generator's defaults that the paper cites: noise sd 1, integer levels).
- `bw`: 1 for dot or dash, 0 for space; noise is a uniform number in [0, maxflip] of bit flips at distinct
  random positions.

Parameters keep the family generator's names (so a JSON reads against it directly):
framelen, dilation, minlendot/maxlendot, minlendash/maxlendash, minlensp/maxlensp (inner spaces),
leadingsp_rand, maxflip (bw), levels, symbmean, symbsd, noisemean, noisesd, integer_levels (gray).

Dilation d (an integer >= 1), as in the family generator: the frame becomes framelen * d values and every
length range [lo, hi] becomes [lo * d, hi * d], i.e. the whole codeword is stretched in time by d with the
same relative jitter; d = 1 is the paper's data.

Frame fit: lengths are drawn independently and never redrawn or clipped. Instead, parameters under which
any codeword could overrun the frame at its maximum lengths are refused (DatasetError naming the codeword).
In this codebook the worst case is 57 values (`-----`, `.----.`, ...: dashes of 9 and dots of 3 separated
by spaces of 3), so both named variants always fit 64; a hypothetical 6-dash codeword would need
6 * 9 + 5 * 3 = 69 > 64, and `maxlendash` >= 11 or `framelen` <= 56 is refused for the same reason.

Codebook caveat: classes 1 (`H^`) and 10 (`(`) share the code `-.--.`, so no classifier can exceed
63/64 = 98.44 % accuracy on data from this codebook. The codebook is kept as the paper used it.

Generation is vectorised per class (one numpy pass per codeword, no per-sample Python) and seeded with a
numpy Generator: the same seed and parameters give byte-identical arrays.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from predsparse.data import SPLITS, write_dataset
from predsparse.errors import DatasetError

CODEBOOK_FILE = Path(__file__).with_name("morse_codebook.csv")
STYLES = ("gray", "bw")
DEFAULT_PER_CLASS = (5000, 1000, 1000)  # train, validation, test samples per class


@functools.lru_cache(maxsize=1)
def load_codebook() -> tuple[tuple[str, str], ...]:
    """The 64 (symbol, code) pairs in class order; code is a string of '.' and '-'."""
    with open(CODEBOOK_FILE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    book = tuple((row["symbol"], row["code"]) for row in rows)
    if [int(row["class_index"]) for row in rows] != list(range(len(rows))) or any(
        not code or set(code) - {".", "-"} for _, code in book
    ):
        raise DatasetError(f"{CODEBOOK_FILE} is damaged: expected rows class_index 0.., codes of '.' and '-'")
    return book


@dataclass(frozen=True)
class MorseParams:
    """Every parameter of the generator; the defaults are the `baseline` variant."""

    style: str = "gray"
    framelen: int = 64
    dilation: int = 1
    minlendot: int = 1
    maxlendot: int = 3
    minlendash: int = 4
    maxlendash: int = 9
    minlensp: int = 1
    maxlensp: int = 3
    leadingsp_rand: bool = False
    maxflip: int = 0
    levels: int = 16
    symbmean: float = 12.0
    symbsd: float = 1.34
    noisemean: float = 0.0
    noisesd: float = 0.0
    # The October 2017 generator rounds every value to an integer level before clipping, so values are
    # multiples of 1/levels (levels + 1 of them); the 2018 family generator rounds to 3 decimals instead.
    integer_levels: bool = False

    @property
    def frame(self) -> int:
        """Values per sample: framelen * dilation."""
        return self.framelen * self.dilation

    def lengths(self, kind: str) -> tuple[int, int]:
        """Dilated (lo, hi) length range of 'dot', 'dash' or 'space'."""
        short = {"dot": "dot", "dash": "dash", "space": "sp"}[kind]
        lo, hi = getattr(self, f"minlen{short}"), getattr(self, f"maxlen{short}")
        return lo * self.dilation, hi * self.dilation

    def worst_length(self, code: str) -> int:
        """Values a codeword takes at its maximum dot, dash and space lengths."""
        return (code.count(".") * self.lengths("dot")[1] + code.count("-") * self.lengths("dash")[1]
                + (len(code) - 1) * self.lengths("space")[1])

    def check(self) -> None:
        """Raise DatasetError naming the first invalid parameter and what is valid."""
        if self.style not in STYLES:
            raise DatasetError(f"style '{self.style}' is not one of {list(STYLES)}")
        for name in ("framelen", "dilation", "levels"):
            if getattr(self, name) < 1:
                raise DatasetError(f"{name} must be >= 1, got {getattr(self, name)}")
        for short in ("dot", "dash", "sp"):
            lo, hi = getattr(self, f"minlen{short}"), getattr(self, f"maxlen{short}")
            if not 1 <= lo <= hi:
                raise DatasetError(f"minlen{short}={lo}, maxlen{short}={hi}: need 1 <= minlen{short} <= maxlen{short}")
        for name in ("symbmean", "symbsd", "noisemean", "noisesd"):
            if not math.isfinite(getattr(self, name)):
                raise DatasetError(f"{name} must be a finite number, got {getattr(self, name)}")
        for name in ("symbsd", "noisesd"):
            if getattr(self, name) < 0:
                raise DatasetError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.maxflip <= self.frame:
            raise DatasetError(f"maxflip must be between 0 and the frame length {self.frame}, got {self.maxflip}")
        # Each style has its own noise; a setting of the other style would be silently ignored otherwise.
        if self.style == "bw" and (self.noisesd or self.noisemean):
            raise DatasetError(
                f"noisesd={self.noisesd}, noisemean={self.noisemean} are gray-style noise; style bw uses maxflip "
                "(set noisesd=0 noisemean=0)"
            )
        if self.style == "gray" and self.maxflip:
            raise DatasetError(f"maxflip={self.maxflip} is bw-style noise; style gray uses noisesd (set maxflip=0)")
        symbol, code = max(load_codebook(), key=lambda entry: self.worst_length(entry[1]))
        if self.worst_length(code) > self.frame:
            raise DatasetError(
                f"codeword '{symbol}' ({code}) takes up to {self.worst_length(code)} values at the maximum lengths "
                f"but the frame holds {self.frame} (framelen {self.framelen} x dilation {self.dilation}); "
                "raise framelen or lower maxlendot/maxlendash/maxlensp"
            )


VARIANTS: dict[str, MorseParams] = {
    "baseline": MorseParams(),
    "difficult": MorseParams(noisesd=4.0, leadingsp_rand=True, minlendash=3),
    # The generator's defaults of October 2017, the version the paper cites (Dey 2017): GRAY, noise sd 1
    # on every value, integer levels. Most likely the paper's Morse data (../shared/reference).
    "paper2017": MorseParams(noisesd=1.0, integer_levels=True),
}


def _coerce(name: str, kind: type, value: object):
    """A parameter value of the field's type, from a Python value or a command-line string."""
    if isinstance(value, str):
        text = value.strip()
        if kind is bool:
            words = {"true": True, "1": True, "yes": True, "on": True,
                     "false": False, "0": False, "no": False, "off": False}
            if text.lower() not in words:
                raise DatasetError(f"{name}={value!r} is not a boolean; use true or false")
            return words[text.lower()]
        if kind is str:
            return text.lower()
        try:
            return kind(text)
        except ValueError:
            raise DatasetError(f"{name}={value!r} is not a{'n integer' if kind is int else ' number'}") from None
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if kind is bool and isinstance(value, bool):
        return value
    raise DatasetError(f"{name}={value!r} must be of type {kind.__name__}")


def resolve_params(variant: str = "baseline", overrides: Mapping[str, object] | None = None) -> MorseParams:
    """The parameters of a named variant with `overrides` applied (values may be strings), validated."""
    if variant not in VARIANTS:
        raise DatasetError(f"Morse variant '{variant}' is not one of {list(VARIANTS)}")
    kinds = {f.name: {"str": str, "int": int, "bool": bool, "float": float}[f.type]
             for f in dataclasses.fields(MorseParams)}
    changes = {}
    for name, value in (overrides or {}).items():
        if name not in kinds:
            raise DatasetError(f"unknown Morse parameter '{name}'; valid parameters: {', '.join(kinds)}")
        changes[name] = _coerce(name, kinds[name], value)
    params = dataclasses.replace(VARIANTS[variant], **changes)
    params.check()
    return params


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """['noisesd=2', 'style=bw'] -> {'noisesd': '2', 'style': 'bw'} (values converted by resolve_params)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise DatasetError(f"'{item}' is not NAME=VALUE (e.g. noisesd=2)")
        out[name.strip()] = value
    return out


def check_per_class(per_class: Sequence[int]) -> tuple[int, int, int]:
    per_class = tuple(int(n) for n in per_class)
    if len(per_class) != 3 or min(per_class) < 1:
        raise DatasetError(
            f"per-class sizes {list(per_class)}: expected three counts >= 1 (train, validation, test), "
            "e.g. 5000,1000,1000"
        )
    return per_class


def _mark_mask(code: str, n: int, params: MorseParams, rng: np.random.Generator) -> np.ndarray:
    """(n, frame) bool: True where a dot or dash of `code` lies, for n independent draws of the lengths."""
    dash = np.array([c == "-" for c in code])
    (dot_lo, dot_hi), (dash_lo, dash_hi) = params.lengths("dot"), params.lengths("dash")
    lo = np.where(dash, dash_lo, dot_lo)
    hi = np.where(dash, dash_hi, dot_hi)
    marks = rng.integers(lo, hi + 1, size=(n, len(code)))
    sp_lo, sp_hi = params.lengths("space")
    gaps = rng.integers(sp_lo, sp_hi + 1, size=(n, len(code) - 1))
    frame = params.frame
    room = frame - marks.sum(axis=1) - gaps.sum(axis=1)  # >= 0: check() bounds the worst case
    lead = rng.integers(0, room + 1) if params.leadingsp_rand else np.zeros(n, dtype=np.int64)
    steps = np.zeros_like(marks)
    steps[:, 1:] = marks[:, :-1] + gaps
    starts = lead[:, None] + np.cumsum(steps, axis=1)
    ends = starts + marks
    # +1 where a mark starts, -1 where it ends; gaps >= 1 keep every edge of a row distinct.
    edges = np.zeros((n, frame + 1), dtype=np.int8)
    rows = np.arange(n)[:, None]
    edges[rows, starts] = 1
    edges[rows, ends] = -1
    return np.cumsum(edges[:, :frame], axis=1, dtype=np.int8) > 0


def flip_bits(x: np.ndarray, maxflip: int, rng: np.random.Generator) -> np.ndarray:
    """Flip a uniform number in [0, maxflip] of bits at distinct random positions of each row (in place)."""
    if maxflip == 0:
        return x
    n, width = x.shape
    counts = rng.integers(0, maxflip + 1, size=n)
    positions = np.argsort(rng.random((n, width)), axis=1)[:, :maxflip]
    chosen = np.arange(maxflip) < counts[:, None]
    rows = np.broadcast_to(np.arange(n)[:, None], positions.shape)[chosen]
    cols = positions[chosen]
    x[rows, cols] = 1 - x[rows, cols]
    return x


def _class_samples(code: str, n: int, params: MorseParams, rng: np.random.Generator) -> np.ndarray:
    """(n, frame) float64 samples of one codeword in [0, 1]."""
    on = _mark_mask(code, n, params, rng)
    if params.style == "bw":
        return flip_bits(on.astype(np.float64), params.maxflip, rng)
    levels = params.symbsd * rng.standard_normal(on.shape) + params.symbmean
    x = np.where(on, levels, 0.0)
    if params.noisesd or params.noisemean:
        x += params.noisesd * rng.standard_normal(on.shape) + params.noisemean
    if params.integer_levels:
        return np.clip(np.rint(x), 0.0, params.levels) / params.levels
    return np.round(np.clip(x, 0.0, params.levels) / params.levels, 3)


def generate(params: MorseParams, per_class: Sequence[int] = DEFAULT_PER_CLASS, seed: int = 0) -> dict[str, np.ndarray]:
    """The six arrays of a Morse dataset: per class, per_class[0] train, [1] validation, [2] test samples.

    Each class's samples are drawn in one block and cut into the splits (as the family generator does);
    every split is shuffled by writing each sample straight to its row under a random permutation.
    Deterministic for (params, per_class, seed).
    """
    params.check()
    per_class = check_per_class(per_class)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"seed must be an integer >= 0, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    codes = [code for _, code in load_codebook()]
    num_classes = len(codes)
    # rows[s][c * m + k] is where the k-th sample of class c lands in split s
    rows = [rng.permutation(num_classes * m) for m in per_class]
    xs = [np.empty((num_classes * m, params.frame), dtype=np.float32) for m in per_class]
    for c, code in enumerate(codes):
        block = _class_samples(code, sum(per_class), params, rng)
        offset = 0
        for x, dest, m in zip(xs, rows, per_class):
            x[dest[c * m:(c + 1) * m]] = block[offset:offset + m]
            offset += m
    arrays = {}
    for (xname, yname), x, dest, m in zip(SPLITS.values(), xs, rows, per_class):
        y = np.empty(len(x), dtype=np.int64)
        y[dest] = np.repeat(np.arange(num_classes, dtype=np.int64), m)
        arrays[xname], arrays[yname] = x, y
    return arrays


def plot_examples(arrays: Mapping[str, np.ndarray], path: str | Path, title: str) -> None:
    """A PNG with the first training sample of every class, one row each, labelled symbol and code."""
    from matplotlib.figure import Figure  # the object API: no pyplot, no global backend change

    from predsparse.io import atomic_savefig

    book = load_codebook()
    classes, first = np.unique(arrays["ytr"], return_index=True)
    fig = Figure(figsize=(9, 0.19 * len(classes) + 1.2))
    ax = fig.add_subplot()
    ax.imshow(arrays["xtr"][first], cmap="gray_r", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(classes)), [f"{c} {book[c][0]}  {book[c][1]}" for c in classes],
                  fontsize=6, family="monospace")
    ax.set_xlabel("position in frame")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)


def save(path: str | Path, variant: str = "baseline", overrides: Mapping[str, object] | None = None,
         per_class: Sequence[int] = DEFAULT_PER_CLASS, seed: int = 0, figure: str | Path | None = None) -> dict:
    """Generate a variant (with overrides) and write the .npz, its JSON and the figure; return the JSON content.

    The figure goes to `figure`, or beside the .npz with suffix .png.
    """
    import predsparse

    params = resolve_params(variant, overrides)
    per_class = check_per_class(per_class)
    arrays = generate(params, per_class, seed)
    book = load_codebook()
    values = dataclasses.asdict(params)
    info = {
        "dataset": "morse",
        "variant": variant,
        "overrides": {name: values[name] for name in (overrides or {})},
        "params": values,
        "seed": int(seed),
        "per_class": dict(zip(SPLITS, per_class)),
        "split_rule": "each class's samples are drawn as one block, cut into train, validation, test in that "
                      "order; every split is then shuffled",
        "layout": "flat",
        "num_classes": len(book),
        "classes": [symbol for symbol, _ in book],
        "codes": [code for _, code in book],
        "notes": "classes 1 (H^) and 10 (() share the code -.--.: accuracy cannot exceed 63/64 = 98.44 %",
        "generator": "predsparse.data.morse",
        "predsparse_version": predsparse.__version__,
        "numpy_version": np.__version__,
    }
    meta = write_dataset(path, arrays, info)
    figure = Path(figure) if figure is not None else Path(path).with_suffix(".png")
    try:
        plot_examples(arrays, figure, f"Morse '{variant}' (seed {seed}): first training sample of each class")
    except OSError as exc:
        raise DatasetError(f"cannot write figure {figure}: {exc.strerror or exc}") from None
    return meta
