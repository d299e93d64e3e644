"""Fetch a publisher's file once, safely: verified, resumable, atomic, and safe under concurrency.

`fetch(remote, directory)` returns the path of `directory/remote.name` after making sure its MD5 is the
publisher's:

- A file already there with the right MD5 is used as is (never fetched again); one with a wrong MD5 is
  removed and fetched anew (or reported, offline).
- Transfers go to `NAME.part`; a `.part` left by an interrupted run is resumed with an HTTP Range request
  (a server that ignores Range makes it start over). Each mirror gets `retries` further attempts with
  exponential backoff (backoff, 2 x backoff, ..., at most a minute), every socket operation a timeout;
  an HTTP 4xx other than 408/429 moves straight to the next mirror.
- A complete `.part` is checked against the MD5 and only then renamed onto `NAME` (atomic). A mismatch
  removes it and counts; a second mismatch is a DatasetError. A failed write (disk full) removes the
  `.part` and is a DatasetError: nothing half-written is ever left under the real name.
- An exclusive `fcntl.flock` on `.NAME.lock` serialises processes fetching the same file: the second one
  waits, then finds the verified file. The empty lock file stays (removing it would race with waiters).
- Offline, or when every mirror fails, the DatasetError names the URLs, the file name, its MD5 and the
  directory to put it in by hand.

Only the standard library (urllib) talks HTTP.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import http.client
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from predsparse.errors import DatasetError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_BACKOFF = 60.0  # seconds; the exponential wait between attempts stops growing here


@dataclass(frozen=True)
class RemoteFile:
    """A publisher's file: its name on disk, its MD5, the URLs serving it in order of preference, its size."""

    name: str
    md5: str
    urls: tuple[str, ...]
    size: int | None = None  # bytes; for the free-space check and messages

    def describe(self) -> str:
        size = f", {self.size} bytes" if self.size else ""
        return f"{self.name} (md5 {self.md5}{size})"


class _TransferFailed(Exception):
    """One attempt failed in a way another attempt may fix."""


class _MirrorFailed(Exception):
    """This URL will not serve the file (e.g. HTTP 404); try the next mirror."""


class _WriteFailed(Exception):
    """Writing the .part failed (disk full, quota, no permission): no attempt can fix it."""


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(directory: Path, name: str) -> Iterator[None]:
    path = directory / f".{name}.lock"
    try:
        lock = open(path, "a")
    except OSError as exc:
        raise DatasetError(f"cannot create lock file {path}: {exc.strerror or exc}") from None
    with lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released by close, or by the kernel if we die
        yield


def _manual_hint(remote: RemoteFile, directory: Path) -> str:
    return (f"download {remote.describe()} by hand from {' or '.join(remote.urls)} "
            f"and put it in {directory.resolve()}/")


def fetch(remote: RemoteFile, directory: str | Path, *, offline: bool = False, timeout: float = 60.0,
          retries: int = 3, backoff: float = 1.0) -> Path:
    """The verified local copy of `remote` in `directory`, downloaded if needed (see the module doc)."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create data directory {directory}: {exc.strerror or exc}") from None
    target = directory / remote.name
    with _locked(directory, remote.name):
        if target.exists():
            found = md5_of(target)
            if found == remote.md5:
                return target
            target.unlink()
            log.warning("removed %s: md5 %s, expected %s", target, found, remote.md5)
            if offline:
                raise DatasetError(f"{target} had md5 {found}, not the publisher's; it was removed; "
                                   + _manual_hint(remote, directory))
        if offline:
            raise DatasetError(f"{remote.name} is not in {directory.resolve()} and downloads are off (offline); "
                               + _manual_hint(remote, directory))
        return _download(remote, target, timeout=timeout, retries=retries, backoff=backoff)


def fetch_all(remotes: Sequence[RemoteFile], directory: str | Path, *, offline: bool = False,
              **options) -> list[Path]:
    """`fetch` every file of a dataset; offline, one error lists every file that is missing."""
    directory = Path(directory)
    if offline:
        missing = [r for r in remotes if not (directory / r.name).exists()]
        if missing:
            raise DatasetError(
                f"{len(missing)} file(s) missing in {directory.resolve()}/ and downloads are off (offline): "
                + "; ".join(f"{r.describe()} from {' or '.join(r.urls)}" for r in missing)
                + f"; download them by hand and put them in {directory.resolve()}/"
            )
    return [fetch(remote, directory, offline=offline, **options) for remote in remotes]


def _download(remote: RemoteFile, target: Path, *, timeout: float, retries: int, backoff: float) -> Path:
    part = target.with_name(target.name + ".part")
    _check_free_space(remote, part)
    failures: dict[str, str] = {}  # url -> why its last attempt failed
    mismatches = 0
    for url in remote.urls:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(min(backoff * 2 ** (attempt - 1), MAX_BACKOFF))
            try:
                _transfer(url, part, timeout)
            except _MirrorFailed as exc:
                failures[url] = str(exc)
                break
            except _TransferFailed as exc:
                failures[url] = str(exc)
                continue
            except _WriteFailed as exc:
                part.unlink(missing_ok=True)
                raise DatasetError(f"cannot write {part}: {exc}; nothing was kept") from None
            found = md5_of(part)
            if found == remote.md5:
                os.replace(part, target)
                log.info("downloaded %s", target)
                return target
            part.unlink()
            mismatches += 1
            if mismatches == 2:
                raise DatasetError(
                    f"{remote.name} from {url} has md5 {found}, expected {remote.md5}, twice; the bad file was "
                    "removed. The mirror serves different content: " + _manual_hint(remote, target.parent)
                )
            failures[url] = f"md5 {found} != {remote.md5} (removed)"
    raise DatasetError(
        f"cannot download {remote.name} ({retries + 1} attempt(s) per mirror): "
        + "; ".join(f"{url} ({why})" for url, why in failures.items()) + ". "
        + _manual_hint(remote, target.parent)
    )


def _check_free_space(remote: RemoteFile, part: Path) -> None:
    if not remote.size:
        return
    have = part.stat().st_size if part.exists() else 0
    free = shutil.disk_usage(part.parent).free
    if free < remote.size - have:
        raise DatasetError(
            f"not enough free space in {part.parent} for {remote.name}: {free} bytes free, "
            f"{remote.size - have} needed"
        )


def _transfer(url: str, part: Path, timeout: float) -> None:
    """One attempt: resume or start `part` from `url` and read to the end."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "predsparse-data"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    log.info("downloading %s%s", url, f" (resuming at byte {offset})" if offset else "")
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # the .part is not a prefix the server recognises: start over
            part.unlink()
            raise _TransferFailed("HTTP 416 on resume; restarting") from None
        if exc.code in (408, 429) or exc.code >= 500:
            raise _TransferFailed(f"HTTP {exc.code}") from None
        raise _MirrorFailed(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _TransferFailed(_reason(exc)) from None
    with response:
        resumed = bool(offset) and response.status == 206 and _range_start(response) == offset
        expected = response.headers.get("Content-Length")
        received = 0
        try:
            out = open(part, "ab" if resumed else "wb")
        except OSError as exc:
            raise _WriteFailed(exc.strerror or str(exc)) from None
        with out:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _TransferFailed(f"connection lost after {received} bytes ({_reason(exc)})") from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise _WriteFailed(_write_reason(exc)) from None
                received += len(chunk)
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise _WriteFailed(_write_reason(exc)) from None
    if expected is not None and received < int(expected):
        raise _TransferFailed(f"connection closed after {received} of {expected} bytes")


def _range_start(response) -> int | None:
    """First byte of a 206 response, from 'Content-Range: bytes START-END/TOTAL'."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__


def _write_reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    return exc.strerror or str(exc)
