"""MNIST from the publisher's four IDX gzip files, verified by MD5 and parsed without any pickle.

Files live in `ROOT/mnist/` (ROOT: `--root`, else $PREDSPARSE_DATA, else resources/raw), or directly in ROOT
when it has no `mnist` folder; they are downloaded from the first mirror that serves them, or dropped
there by hand for offline use (a read-only folder is fine: nothing is written there offline). A file is
accepted when its MD5 is the publisher's archive MD5 OR its gunzipped content has the known MD5 and size
(a recompressed copy, e.g. `gzip -n -9`); the JSON records which check passed. A file that passes neither
is refused and left as it is.

Splits: train = the first 54,000 official training images, validation = the last 6,000 (10 %, the Keras
`validation_split` rule), test = the official 10,000. Pixels are stored as x = pixel / 255 in [0, 1];
the training split's mean and std are recorded in the JSON, not applied.

Layouts (one .npz each), for the models of the paper:
- `conv`: (n, 1, 28, 28), the conv+2CLs net;
- `flat`: (n, 784), row-major, the (784, x, 10) CL-only nets;
- `pad32`: (n, 1024), the image zero-padded by 2 pixels on every side to 32 x 32, then flattened
  row-major, for the (1024, 64, 16) and (1024, 16) CL-only nets.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

from predsparse.data import DATASETS, holdout_last, write_dataset
from predsparse.data.download import RemoteFile, dataset_directory, fetch_all_verified
from predsparse.errors import DatasetError

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


def _remote(name: str, md5: str, size: int, content_md5: str, content_size: int) -> RemoteFile:
    return RemoteFile(name, md5, tuple(mirror + name for mirror in MIRRORS), size, content_md5, content_size)


# role -> file; the archive MD5s are those of the original .gz files, the same on every mirror; the content
# MD5s and sizes are those of the decompressed IDX files (the same for any recompressed copy)
FILES = {
    "train_images": _remote("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422,
                            "6bbc9ace898e44ae57da46a324031adb", 47040016),
    "train_labels": _remote("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28881,
                            "a25bea736e30d166cdddb491f175f624", 60008),
    "test_images": _remote("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1648877,
                           "2646ac647ad5339dbf082846283269ea", 7840016),
    "test_labels": _remote("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4542,
                           "27ae3e4e09519cfbb04c329615203637", 10008),
}
LAYOUTS = DATASETS["mnist"].layouts
IMAGE_SIDE = 28
PAD = 2  # pixels of zeros on every side for the 32 x 32 layout (where the real ones are: DATASETS' real_inputs)


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """The uint8 array of a gzipped IDX file with `ndim` dimensions (1: labels, 3: images)."""
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path} is truncated or not a gzip file ({exc})") from None
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes with {ndim} dimension(s) (bad magic number)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != math.prod(dims):
        raise DatasetError(
            f"{path} is truncated or padded: its header promises {math.prod(dims)} bytes of data {list(dims)}, "
            f"it holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _images_and_labels(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DatasetError(f"{images_path} holds images of {images.shape[1:]}, expected (28, 28)")
    if len(images) != len(labels):
        raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
    if labels.max(initial=0) > 9:
        raise DatasetError(f"{labels_path} holds label {labels.max()}; MNIST labels are 0..9")
    return images, labels.astype(np.int64)


def to_layout(images: np.ndarray, layout: str) -> np.ndarray:
    """uint8 (n, 28, 28) images -> float32 pixel / 255 in the shape of `layout`."""
    x = images.astype(np.float32) / np.float32(255)
    if layout == "pad32":
        x = np.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD)))
    return x.reshape((len(x),) + LAYOUTS[layout])


def source_info(remote: RemoteFile, fetched) -> dict:
    """The JSON entry of one source file: expected checksums, URLs, which check passed, the file's MD5."""
    entry = {"md5": remote.md5, "urls": list(remote.urls)}
    if remote.content_md5:
        entry["content_md5"] = remote.content_md5
        entry["content_size"] = remote.content_size
    entry["verified"] = fetched.verified
    entry["file_md5"] = fetched.md5
    return entry


def prepare(root: str | Path, out: str | Path, layout: str = "conv", *, offline: bool = False,
            files: Mapping[str, RemoteFile] | None = None, **fetch_options) -> dict:
    """Fetch (or find) the IDX files in ROOT/mnist (or ROOT, see the module doc), write the .npz of `layout`
    and its JSON to `out`.

    `files` maps the roles train_images, train_labels, test_images, test_labels to the files (default
    `FILES`, the publisher's); `fetch_options` go to `download.fetch` (timeout, retries, backoff).
    Returns the JSON content.
    """
    if layout not in LAYOUTS:
        raise DatasetError(f"MNIST layout '{layout}' is not one of {list(LAYOUTS)}")
    files = FILES if files is None else files
    remotes = list(files.values())
    fetched = dict(zip(files, fetch_all_verified(remotes, dataset_directory(root, "mnist", remotes),
                                                 offline=offline, **fetch_options)))
    paths = {role: item.path for role, item in fetched.items()}
    train_x, train_y = _images_and_labels(paths["train_images"], paths["train_labels"])
    test_x, test_y = _images_and_labels(paths["test_images"], paths["test_labels"])
    xtr, ytr, xva, yva = holdout_last(train_x, train_y)
    arrays = {
        "xtr": to_layout(xtr, layout), "ytr": ytr,
        "xva": to_layout(xva, layout), "yva": yva,
        "xte": to_layout(test_x, layout), "yte": test_y,
    }
    info = {
        "dataset": "mnist",
        "layout": layout,
        "num_classes": 10,
        "classes": [str(digit) for digit in range(10)],
        "scaling": "x = pixel / 255"
                   + (", zero-padded by 2 on every side to 32x32, flattened" if layout == "pad32" else ""),
        "split_rule": "validation = last 10% of the official training set (Keras validation_split); "
                      "test = the official test set",
        "sources": {remote.name: source_info(remote, fetched[role]) for role, remote in files.items()},
    }
    return write_dataset(out, arrays, info)
