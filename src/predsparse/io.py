"""Atomic, deterministic file writing shared by every module that leaves results on disk.

A result file is either absent or complete: writers go to a temporary name in the same directory and are
renamed over the target only after a flush and fsync, so a killed process never leaves a half-written
file where a later run would trust it.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from predsparse.errors import OutputError

# Fixed zip member timestamp: np.savez stamps the current time, which would make identical arrays
# produce different bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def check_output_file(path: str | os.PathLike) -> Path:
    """`path` as a Path if a file can be written there; else an OutputError naming why (nothing is created)."""
    target = Path(path)
    _check_names(target)
    if target.is_dir():
        raise OutputError(f"output {target} is a directory; give the name of a file to write")
    _check_parents(target, target.parent)
    return target


def check_output_dir(path: str | os.PathLike) -> Path:
    """`path` as a Path if it is, or can be made, a writable directory; else an OutputError (nothing is created)."""
    target = Path(path)
    _check_names(target)
    if target.exists() and not target.is_dir():
        raise OutputError(f"output folder {target} is a file, not a directory; give a folder (new or existing)")
    _check_parents(target, target)
    return target


def _check_names(target: Path) -> None:
    for part in target.parts:
        if len(os.fsencode(part)) > _NAME_MAX:
            raise OutputError(f"output path {str(target)[:60]}...: the name '{part[:40]}...' is "
                              f"{len(os.fsencode(part))} bytes long; a file or folder name holds at most {_NAME_MAX}")


def _check_parents(target: Path, folder: Path) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"output {target}: {existing} is a file, so no folder can be made under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output {target}: the folder {existing} is not writable")


_NAME_MAX = 255  # bytes in one file name on Linux and macOS file systems


def _output_error(target: Path, exc: OSError) -> OutputError:
    why = {errno.ENAMETOOLONG: f"a name in it is longer than {_NAME_MAX} bytes",
           errno.EISDIR: "it is a directory; give the name of a file",
           errno.ENOTDIR: "a part of its folder is a file",
           errno.EEXIST: "a part of its folder is a file",
           errno.ENOSPC: "the disk is full"}.get(exc.errno, exc.strerror or str(exc))
    return OutputError(f"cannot write {target}: {why}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed onto `path`.

    On any exception the temporary file is removed and `path` is untouched. A path that cannot be written
    (a directory, a folder that cannot be made, no permission, a name too long) is an OutputError.
    """
    target = Path(path)
    try:
        if target.is_dir():
            raise OutputError(f"output {target} is a directory; give the name of a file to write")
        target.parent.mkdir(parents=True, exist_ok=True)
        # The temporary name is cut so that a target name near the limit still gets one.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name[:200]}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _output_error(target, exc) from None
    os.close(fd)
    # mkstemp creates 0600; results are ordinary files, so apply the usual mode under the umask.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            raise _output_error(target, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as exc:
            raise _output_error(Path(path), exc) from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write `obj` as sorted, indented JSON (stable bytes for equal content)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_csv(path: str | os.PathLike, columns, rows) -> None:
    """Write dict rows as CSV with exactly `columns`, in that order ('\n' line ends: stable bytes)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def atomic_savefig(fig, path: str | os.PathLike, **savefig_kwargs) -> None:
    """Save a matplotlib figure atomically, in the format its file name ends with (.png, .pdf; PNG if none)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", **savefig_kwargs)


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise arrays to .npz bytes that depend only on the arrays (names sorted, fixed timestamps)."""
    buf = io.BytesIO()
    # Stored, not deflated: deflate output differs between zlib builds (e.g. zlib-ng), which would break
    # byte-identical files across machines, and compression dominated the write time of large patterns.
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            # asarray(order="C"), not ascontiguousarray: the latter turns 0-d arrays (e.g. meta) into 1-d.
            np.lib.format.write_array(member, np.asarray(arrays[name], order="C"), allow_pickle=False)
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Atomically write a byte-reproducible .npz (see `npz_bytes`)."""
    atomic_write_bytes(path, npz_bytes(arrays))


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every array of an .npz eagerly, never unpickling.

    Raises ValueError if a member is not an .npy array (np.load hands such members back as raw bytes).
    """
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):
            raise ValueError(f"member '{name}' is not a .npy array")
    return arrays
