"""Datasets: the Morse generator and MNIST / CIFAR-10 / CIFAR-100 parsed from their official archives.

Every dataset is one `.npz` holding six arrays and nothing else:

- `xtr`, `xva`, `xte`: float32 samples in [0, 1], shape (n, *sample_shape);
- `ytr`, `yva`, `yte`: int64 class indices in [0, num_classes), shape (n,).

Beside it (same stem, `.json`) a description of exactly how it was made: the generator parameters or the
source archives and their MD5s, the split rule, the class names, per-channel `normalization` (mean and std
of the training split; NOT applied, so a model can apply `(x - mean) / std` itself), and the SHA-256 of the
`.npz` bytes, which ties the JSON to the one `.npz` it describes.

Splits (train / validation / test):
- Morse: 5000 / 1000 / 1000 per class, drawn independently (the family's own split).
- MNIST, CIFAR: the official test set is the test split; the LAST 10 % of the official training set, in
  the publisher's order, is the validation split. This is Keras' `validation_split=0.1` rule (the paper's
  authors used Keras), fixed rather than seeded, so every machine gets the same split without a seed.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

# The datasets' names, classes and layouts: the catalogue's, which the loaders (morse, mnist, cifar) make.
from predsparse.catalog import DATASETS  # noqa: F401 - read by the loaders and `predsparse data`
from predsparse.errors import DatasetError
from predsparse.io import atomic_write_bytes, atomic_write_json, load_npz, npz_bytes

# split -> (x array name, y array name), in file order
SPLITS = {"train": ("xtr", "ytr"), "validation": ("xva", "yva"), "test": ("xte", "yte")}
ARRAY_NAMES = tuple(name for pair in SPLITS.values() for name in pair)
VALIDATION_FRACTION = 0.1  # of the official training set, taken from its end (MNIST, CIFAR)


def info_path(npz_path: str | Path) -> Path:
    """The JSON that describes a dataset file: same stem, `.json`."""
    return Path(npz_path).with_suffix(".json")


def check_arrays(arrays: Mapping[str, np.ndarray], where: str) -> None:
    """Raise DatasetError unless `arrays` is exactly the six arrays of the layout above."""
    names = sorted(arrays)
    if names != sorted(ARRAY_NAMES):
        raise DatasetError(f"{where}: holds arrays {names}; a dataset holds exactly {list(ARRAY_NAMES)}")
    sample_shape = arrays["xtr"].shape[1:]
    for split, (xname, yname) in SPLITS.items():
        x, y = arrays[xname], arrays[yname]
        if x.dtype != np.float32 or x.ndim < 2:
            raise DatasetError(f"{where}: {xname} is {x.dtype} of shape {x.shape}; expected float32 (n, *sample_shape)")
        if x.shape[1:] != sample_shape:
            raise DatasetError(f"{where}: {xname} samples have shape {x.shape[1:]} but xtr samples {sample_shape}")
        if y.dtype != np.int64 or y.ndim != 1 or len(y) != len(x):
            raise DatasetError(
                f"{where}: {yname} is {y.dtype} of shape {y.shape}; expected int64 ({len(x)},) to match {xname}"
            )
        if len(x) == 0:
            raise DatasetError(f"{where}: the {split} split is empty")
        lo, hi = x.min(), x.max()
        if not (lo >= 0 and hi <= 1):  # also false for NaN
            raise DatasetError(f"{where}: {xname} has values in [{lo}, {hi}]; expected [0, 1]")
        if y.min() < 0:
            raise DatasetError(f"{where}: {yname} has a negative class index {y.min()}")


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Load the six arrays of a dataset `.npz`, validated (DatasetError naming the problem otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file {path} does not exist; create it with `predsparse data ...`")
    try:
        arrays = load_npz(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path} is not a readable .npz dataset ({exc})") from None
    check_arrays(arrays, where=str(path))
    return arrays


def read_info(path: str | Path) -> dict:
    """The JSON description beside a dataset `.npz`."""
    json_path = info_path(path)
    try:
        return json.loads(json_path.read_text())
    except FileNotFoundError:
        raise DatasetError(
            f"{json_path} does not exist; `predsparse data` writes it beside {Path(path).name}"
        ) from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{json_path} cannot be read as JSON ({exc})") from None


def normalization(x: np.ndarray, chunk: int = 8192) -> dict:
    """Per-channel mean and std of `x` (channel axis 1 for (n, C, H, W) images, one channel otherwise).

    Accumulated in float64 over chunks of samples, so a 60k x 3x32x32 set needs no float64 copy.
    """
    channels = x.shape[1] if x.ndim == 4 else 1
    total = np.zeros(channels)
    squares = np.zeros(channels)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].astype(np.float64).reshape(len(x[start:start + chunk]), channels, -1)
        total += part.sum(axis=(0, 2))
        squares += np.square(part).sum(axis=(0, 2))
    count = x.size // channels
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
    return {
        "mean": [round(float(v), 6) for v in mean],
        "std": [round(float(v), 6) for v in std],
        "applied": False,
        "over": "training split, per channel",
    }


def holdout_last(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split an official training set into (x_train, y_train, x_val, y_val): the last 10 % validates."""
    n_val = int(round(len(x) * VALIDATION_FRACTION))
    if n_val < 1 or n_val >= len(x):
        raise DatasetError(f"a training set of {len(x)} samples is too small to hold out {VALIDATION_FRACTION:.0%}")
    cut = len(x) - n_val
    return x[:cut], y[:cut], x[cut:], y[cut:]


def write_dataset(path: str | Path, arrays: Mapping[str, np.ndarray], info: Mapping) -> dict:
    """Write `arrays` to `path` and its JSON description beside it, both atomically; return the JSON content.

    The JSON gets the split sizes, sample shape, normalization and the SHA-256 of the `.npz` bytes. If
    either write fails (disk full, no permission) neither file is left behind and a DatasetError says why.
    """
    path = Path(path)
    check_arrays(arrays, where=f"dataset for {path}")
    data = npz_bytes(arrays)
    meta = dict(info)
    meta["sample_shape"] = list(arrays["xtr"].shape[1:])
    meta["splits"] = {split: int(len(arrays[yname])) for split, (_, yname) in SPLITS.items()}
    meta["normalization"] = normalization(arrays["xtr"])
    meta["npz_sha256"] = hashlib.sha256(data).hexdigest()
    try:
        atomic_write_bytes(path, data)
        try:
            atomic_write_json(info_path(path), meta)
        except OSError:
            path.unlink()  # an .npz without its JSON would be trusted by a later run
            raise
    except OSError as exc:
        raise DatasetError(f"cannot write {path}: {exc.strerror or exc} (nothing was left behind)") from None
    return meta
