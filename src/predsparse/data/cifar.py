"""CIFAR-10 and CIFAR-100 from the publisher's BINARY archives, verified by MD5; nothing is ever unpickled.

The archive lives in `ROOT/cifar10/` or `ROOT/cifar100/` (ROOT: `--root`, else $PREDSPARSE_DATA, else
resources/raw), or directly in ROOT when it has no such folder. It is verified by the publisher's archive
MD5 (no content MD5 is recorded for the tar streams); an archive already there with another MD5 is refused
and left untouched, never removed. Offline, nothing is written in ROOT (it may be read-only). Its members
are read straight from the tar.gz stream (never extracted to disk, so no member path can escape the
directory).

Binary records: CIFAR-10 = 1 label byte + 3072 pixel bytes; CIFAR-100 = 1 coarse + 1 fine label byte +
3072 pixel bytes (we keep the FINE label: 100 classes). Pixels are 1024 red, 1024 green, 1024 blue values,
each plane row-major, so a record is directly a (3, 32, 32) image.

Splits: train = the first 45,000 official training images (data_batch_1..5 in order for CIFAR-10),
validation = the last 5,000 (10 %, the Keras `validation_split` rule), test = the official 10,000.
x = pixel / 255 in [0, 1], layout (n, 3, 32, 32); per-channel mean and std of the training split are
recorded in the JSON, not applied.

There is one official source (the Toronto page); a second URL can be added to `urls` if one appears.
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from predsparse.data import DATASETS, holdout_last, write_dataset
from predsparse.data.download import RemoteFile, dataset_directory, fetch_all_verified
from predsparse.errors import DatasetError

PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarSource:
    """One CIFAR archive and where its records and class names are inside it."""

    remote: RemoteFile
    train_members: tuple[str, ...]
    test_member: str
    names_member: str
    label_bytes: int  # the class label is the last of them (CIFAR-100: fine after coarse)
    num_classes: int


SOURCES = {
    "cifar10": CifarSource(
        RemoteFile("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530",
                   ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",), 170052171),
        tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)),
        "cifar-10-batches-bin/test_batch.bin",
        "cifar-10-batches-bin/batches.meta.txt",
        label_bytes=1,
        num_classes=10,
    ),
    "cifar100": CifarSource(
        RemoteFile("cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8",
                   ("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",), 168513733),
        ("cifar-100-binary/train.bin",),
        "cifar-100-binary/test.bin",
        "cifar-100-binary/fine_label_names.txt",
        label_bytes=2,
        num_classes=100,
    ),
}


def read_members(path: Path, names: list[str]) -> dict[str, bytes]:
    """The bytes of the regular-file members `names` of a tar.gz, in one pass over the stream."""
    wanted, found = set(names), {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    found[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path} is truncated or not a tar.gz archive ({exc})") from None
    missing = [name for name in names if name not in found]
    if missing:
        raise DatasetError(f"{path} lacks {missing}: it is not the CIFAR binary archive")
    return found


def parse_records(raw: bytes, source: CifarSource, where: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, 3, 32, 32) and int64 labels of a CIFAR binary batch."""
    size = source.label_bytes + PIXELS
    if not raw or len(raw) % size:
        raise DatasetError(f"{where} holds {len(raw)} bytes, not a whole number of {size}-byte records "
                           "(truncated, or not a CIFAR binary batch)")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, size)
    labels = records[:, source.label_bytes - 1].astype(np.int64)
    if labels.max() >= source.num_classes:
        raise DatasetError(f"{where} holds label {labels.max()}; expected 0..{source.num_classes - 1}")
    return records[:, source.label_bytes:].reshape(-1, 3, 32, 32), labels


def _class_names(raw: bytes, source: CifarSource, where: str) -> list[str]:
    names = [line.strip() for line in raw.decode("utf-8", errors="replace").splitlines() if line.strip()]
    if len(names) != source.num_classes:
        raise DatasetError(f"{where} lists {len(names)} class names, expected {source.num_classes}")
    return names


def prepare(name: str, root: str | Path, out: str | Path, *, offline: bool = False,
            remote: RemoteFile | None = None, **fetch_options) -> dict:
    """Fetch (or find) the archive of `name` (cifar10 | cifar100) in ROOT/name, write the .npz and JSON.

    `remote` replaces the publisher's file (same member layout); `fetch_options` go to `download.fetch`.
    Returns the JSON content.
    """
    if name not in SOURCES:
        raise DatasetError(f"CIFAR dataset '{name}' is not one of {list(SOURCES)}")
    source = SOURCES[name]
    remote = remote or source.remote
    (fetched,) = fetch_all_verified([remote], dataset_directory(root, name, [remote]), offline=offline,
                                    **fetch_options)
    archive = fetched.path
    members = read_members(archive, [*source.train_members, source.test_member, source.names_member])
    parts = [parse_records(members[m], source, f"{archive}:{m}") for m in source.train_members]
    train_x = np.concatenate([images for images, _ in parts])
    train_y = np.concatenate([labels for _, labels in parts])
    test_x, test_y = parse_records(members[source.test_member], source, f"{archive}:{source.test_member}")
    classes = _class_names(members[source.names_member], source, f"{archive}:{source.names_member}")
    del members, parts  # free the raw bytes before the float32 copies (about 0.7 GB for CIFAR)
    xtr, ytr, xva, yva = holdout_last(train_x, train_y)
    scale = np.float32(255)
    arrays = {
        "xtr": xtr.astype(np.float32) / scale, "ytr": ytr,
        "xva": xva.astype(np.float32) / scale, "yva": yva,
        "xte": test_x.astype(np.float32) / scale, "yte": test_y,
    }
    info = {
        "dataset": name,
        "layout": DATASETS[name].default_layout,
        "num_classes": source.num_classes,
        "classes": classes,
        "labels": "fine" if source.label_bytes == 2 else "class",
        "scaling": "x = pixel / 255, (3, 32, 32) RGB planes",
        "split_rule": "validation = last 10% of the official training set (Keras validation_split); "
                      "test = the official test set",
        "sources": {remote.name: {"md5": remote.md5, "urls": list(remote.urls), "verified": fetched.verified,
                                  "file_md5": fetched.md5}},
    }
    return write_dataset(out, arrays, info)
