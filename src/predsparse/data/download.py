"""Fetch a publisher's file once, safely: verified, resumable, atomic, and safe under concurrency.

`fetch(remote, directory)` returns the path of `directory/remote.name` after making sure it is the
publisher's file. A file is genuine when EITHER check passes (`fetch_verified` says which one did):

- "archive md5": the MD5 of the file is the publisher's archive MD5;
- "content md5": the file is a gzip stream whose decompressed bytes have the known MD5 (and size). This
  accepts a genuine copy recompressed by a mirror or by hand (`gzip -n -9`), whose archive MD5 differs.
  The gunzip is streamed (never the whole decompressed file in memory). Only for files whose
  `RemoteFile.content_md5` is known.

Rules:

- A file already there (downloaded earlier or put there by the user) that passes a check is used as is
  (never fetched again). One that passes neither is NEVER removed or changed, online or offline: a
  one-line DatasetError names it, its MD5, the expected MD5s and what to do.
- Offline, nothing at all is written in the directory (no lock file, no directory created): it may be a
  read-only shared folder. Online, a directory where the lock file cannot be created (read-only) is only
  read: a genuine file there is used, a missing one is an error.
- Transfers go to `NAME.part`; a `.part` left by an interrupted run is resumed with an HTTP Range request
  (a server that ignores Range makes it start over). Each mirror gets `retries` further attempts with
  exponential backoff (backoff, 2 x backoff, ..., at most a minute), every socket operation a timeout;
  an HTTP 4xx other than 408/429 moves straight to the next mirror.
- One file's whole fetch (every mirror and attempt, waits included) has a deadline (`deadline` seconds):
  a server dripping bytes, each within the timeout, still ends there, with a DatasetError; the `.part` is
  kept for the next run to resume. Reads take what has arrived (never wait for a whole chunk).
- A file of known size is never written past it: a server announcing or sending more bytes than the file
  can have (its size; for a file with a content checksum, what a gzip of that content can take) is refused
  at once and its `.part` removed, instead of filling the disk before the checksum.
- On a terminal, a progress line on stderr shows the bytes so far, the rate and the time left.
- A complete `.part` is checked as above and only then renamed onto `NAME` (atomic). A mismatch removes
  it (the `.part` is ours) and counts; a second mismatch is a DatasetError. A failed write (disk full)
  removes the `.part` and is a DatasetError: nothing half-written is ever left under the real name.
- An exclusive lock (filelock) on `.NAME.lock` serialises processes fetching the same file: the second one
  waits, then finds the verified file.
  An offline reader takes no lock: a concurrent download appears atomically (rename), so it sees either
  no file or the whole verified one.
- Offline, or when every mirror fails, the DatasetError names the URLs, the file name, its MD5 and the
  directory to put it in by hand.

Only the standard library (urllib) talks HTTP.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import http.client
import logging
import math
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from predsparse.errors import DatasetError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_BACKOFF = 60.0  # seconds; the exponential wait between attempts stops growing here
DEADLINE = 3600.0  # seconds for one file's whole fetch, all mirrors and attempts together


ARCHIVE_MD5 = "archive md5"  # the file's own MD5 is the publisher's
CONTENT_MD5 = "content md5"  # the file's gunzipped bytes have the known MD5 (a recompressed copy)


@dataclass(frozen=True)
class RemoteFile:
    """A publisher's file: its name on disk, its MD5, the URLs serving it in order of preference, its size.

    `content_md5` / `content_size`, when known, describe the gunzipped bytes of the file: a copy with
    another archive MD5 (recompressed) but this content is accepted too.
    """

    name: str
    md5: str
    urls: tuple[str, ...]
    size: int | None = None  # bytes; for the free-space check and messages
    content_md5: str | None = None  # MD5 of the decompressed (gunzipped) bytes
    content_size: int | None = None  # bytes, decompressed

    def describe(self) -> str:
        size = f", {self.size} bytes" if self.size else ""
        content = ""
        if self.content_md5:
            content_size = f", {self.content_size} bytes" if self.content_size else ""
            content = f"; or any gzip of content md5 {self.content_md5}{content_size}"
        return f"{self.name} (md5 {self.md5}{size}{content})"


@dataclass(frozen=True)
class Fetched:
    """A verified local file: where it is, which check passed (ARCHIVE_MD5 / CONTENT_MD5), its own MD5."""

    path: Path
    verified: str
    md5: str


@dataclass(frozen=True)
class _Check:
    verified: str | None  # the check that passed, None if none did
    md5: str  # of the file as it is
    content: str = ""  # what its decompressed content turned out to be, for messages


def verify(remote: RemoteFile, path: Path) -> _Check:
    """Check `path` against `remote`: archive MD5 first, then (if known) the MD5 of its gunzipped bytes."""
    found = md5_of(path)
    if found == remote.md5:
        return _Check(ARCHIVE_MD5, found)
    if not remote.content_md5:
        return _Check(None, found)
    try:
        content_md5, content_size = gunzipped_md5(path)
    except (OSError, EOFError, zlib.error) as exc:
        return _Check(None, found, f"not a readable gzip file ({exc})")
    if content_md5 == remote.content_md5 and remote.content_size in (None, content_size):
        return _Check(CONTENT_MD5, found)
    return _Check(None, found, f"content md5 {content_md5}, {content_size} bytes decompressed")


def gunzipped_md5(path: Path) -> tuple[str, int]:
    """MD5 and size of the decompressed bytes of a gzip file, streamed chunk by chunk."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with gzip.open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def dataset_directory(root: str | Path, name: str, remotes: Iterable[RemoteFile]) -> Path:
    """Where a dataset's files are: ROOT/name, or ROOT itself when it has no `name` folder but holds
    some of the files directly (e.g. --root pointing straight at a folder of the MNIST .gz files)."""
    root = Path(root)
    nested = root / name
    if not nested.is_dir() and any((root / remote.name).is_file() for remote in remotes):
        return root
    return nested


class _TransferFailed(Exception):
    """One attempt failed in a way another attempt may fix."""


class _MirrorFailed(Exception):
    """This URL will not serve the file (e.g. HTTP 404); try the next mirror."""


class _WriteFailed(Exception):
    """Writing the .part failed (disk full, quota, no permission): no attempt can fix it."""


class _DeadlinePassed(Exception):
    """The file's deadline passed during an attempt."""


def most_bytes(remote: RemoteFile) -> int | None:
    """The most bytes a genuine copy of `remote` can have: its size, or for a file with a content checksum
    what a gzip of that content can take (stored blocks: 5 bytes per 64 KiB, plus header); None if unknown."""
    if not remote.size:
        return None
    if remote.content_md5 and remote.content_size:
        return max(remote.size, remote.content_size + remote.content_size // 8192 + 1024)
    return remote.size


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


@contextlib.contextmanager
def _locked(directory: Path, name: str) -> Iterator[bool]:
    """Hold the lock of `name` in `directory`; yields False (no lock) if the directory is read-only."""
    from filelock import FileLock

    path = directory / f".{name}.lock"
    try:
        open(path, "a").close()
    except OSError as exc:
        if exc.errno in READ_ONLY_ERRNOS:  # nothing can be written there by us: only read it
            yield False
            return
        raise DatasetError(f"cannot create lock file {path}: {exc.strerror or exc}") from None
    with FileLock(path):  # released on exit, or by the kernel if we die
        yield True


def _manual_hint(remote: RemoteFile, directory: Path) -> str:
    return (f"download {remote.describe()} by hand from {' or '.join(remote.urls)} "
            f"and put it in {directory.resolve()}/")


def _expected(remote: RemoteFile) -> str:
    expected = f"the publisher's archive md5 {remote.md5}"
    if remote.content_md5:
        size = f", {remote.content_size} bytes" if remote.content_size else ""
        expected += f" or a gzip whose decompressed content has md5 {remote.content_md5}{size}"
    return expected


def _use_present(remote: RemoteFile, target: Path, *, offline: bool) -> Fetched:
    """The file already at `target` if it passes a check; otherwise refuse, leaving it untouched."""
    try:
        check = verify(remote, target)
    except OSError as exc:
        raise DatasetError(f"cannot read {target}: {exc.strerror or exc}; it was left untouched") from None
    if check.verified:
        log.info("using %s (%s verified)", target, check.verified)
        return Fetched(target, check.verified, check.md5)
    found = f"md5 {check.md5}" + (f"; {check.content}" if check.content else "")
    todo = "and run again" if offline else "or move it away and run again to download it"
    raise DatasetError(
        f"{target} is not a genuine {remote.name}: it has {found}; expected {_expected(remote)}. "
        f"It was left untouched: replace it with a genuine copy (from {' or '.join(remote.urls)}) {todo}"
    )


def fetch(remote: RemoteFile, directory: str | Path, **options) -> Path:
    """The verified local copy of `remote` in `directory`, downloaded if needed (see the module doc)."""
    return fetch_verified(remote, directory, **options).path


def fetch_verified(remote: RemoteFile, directory: str | Path, *, offline: bool = False, timeout: float = 60.0,
                   retries: int = 3, backoff: float = 1.0, deadline: float = DEADLINE) -> Fetched:
    """`fetch`, also saying which check the file passed and its MD5."""
    directory = Path(directory)
    target = directory / remote.name
    if offline:  # read only: no directory created, no lock file, nothing written
        if target.is_file():
            return _use_present(remote, target, offline=True)
        raise DatasetError(f"{remote.name} is not in {directory.resolve()} and downloads are off (offline); "
                           + _manual_hint(remote, directory))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create data directory {directory}: {exc.strerror or exc}") from None
    with _locked(directory, remote.name) as locked:
        if target.exists():
            return _use_present(remote, target, offline=False)
        if not locked:
            raise DatasetError(f"{remote.name} is not in {directory.resolve()}, which is read-only (no lock "
                               "file can be created there, so nothing can be downloaded into it); "
                               + _manual_hint(remote, directory) + ", or give a writable root")
        return _download(remote, target, timeout=timeout, retries=retries, backoff=backoff, deadline=deadline)


def fetch_all(remotes: Sequence[RemoteFile], directory: str | Path, *, offline: bool = False,
              **options) -> list[Path]:
    """`fetch` every file of a dataset; offline, one error lists every file that is missing."""
    return [fetched.path for fetched in fetch_all_verified(remotes, directory, offline=offline, **options)]


def fetch_all_verified(remotes: Sequence[RemoteFile], directory: str | Path, *, offline: bool = False,
                       **options) -> list[Fetched]:
    """`fetch_all`, also saying which check each file passed and its MD5."""
    directory = Path(directory)
    if offline:
        missing = [r for r in remotes if not (directory / r.name).exists()]
        if missing:
            raise DatasetError(
                f"{len(missing)} file(s) missing in {directory.resolve()}/ and downloads are off (offline): "
                + "; ".join(f"{r.describe()} from {' or '.join(r.urls)}" for r in missing)
                + f"; download them by hand and put them in {directory.resolve()}/"
            )
    return [fetch_verified(remote, directory, offline=offline, **options) for remote in remotes]


def _download(remote: RemoteFile, target: Path, *, timeout: float, retries: int, backoff: float,
              deadline: float = DEADLINE) -> Fetched:
    part = target.with_name(target.name + ".part")
    _check_free_space(remote, part)
    failures: dict[str, str] = {}  # url -> why its last attempt failed
    mismatches = 0
    end = time.monotonic() + deadline

    def passed(url: str, why: str) -> DatasetError:
        kept = (f"the {part.stat().st_size} bytes received are kept in {part} and resumed next time"
                if part.exists() else "nothing was kept")
        return DatasetError(f"{remote.name}: the deadline of {deadline:g} s for the whole download passed ({why}; "
                            f"last from {url}); {kept}. Raise --deadline, or " + _manual_hint(remote, target.parent))

    # A loop of our own rather than tenacity's: one attempt ends in one of four ways (retry this mirror,
    # give up on this mirror, a checksum mismatch counted across mirrors, a deadline that also bounds the
    # next back-off), and the message of each names what happened; tenacity would need nested retriers
    # and a custom stop for the same, and could say less.
    for url in remote.urls:
        for attempt in range(retries + 1):
            if attempt:
                wait = min(backoff * 2 ** (attempt - 1), MAX_BACKOFF)
                if time.monotonic() + wait >= end:
                    raise passed(url, f"before attempt {attempt + 1}: {failures.get(url, 'no answer')}")
                time.sleep(wait)
            try:
                _transfer(url, part, timeout, end=end, most=most_bytes(remote), label=remote.name)
            except _DeadlinePassed as exc:
                raise passed(url, str(exc)) from None
            except _MirrorFailed as exc:
                failures[url] = str(exc)
                break
            except _TransferFailed as exc:
                failures[url] = str(exc)
                continue
            except _WriteFailed as exc:
                part.unlink(missing_ok=True)
                raise DatasetError(f"cannot write {part}: {exc}; nothing was kept") from None
            check = verify(remote, part)
            found = check.md5
            if check.verified:
                os.replace(part, target)
                log.info("downloaded %s (%s verified)", target, check.verified)
                return Fetched(target, check.verified, found)
            part.unlink()  # our own .part: removing it changes nothing the user put there
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


def _transfer(url: str, part: Path, timeout: float, *, end: float | None = None, most: int | None = None,
              label: str = "") -> None:
    """One attempt: resume or start `part` from `url` and read to the end.

    `end` (time.monotonic) is the file's deadline: no socket operation outlasts it by more than a moment.
    `most` is the most bytes the whole file can have: the transfer stops before writing more.
    """
    end = math.inf if end is None else end
    offset = part.stat().st_size if part.exists() else 0
    response = _connect(url, part, offset, timeout, end)
    with response:
        resumed = bool(offset) and response.status == 206 and _range_start(response) == offset
        expected = response.headers.get("Content-Length")
        start = offset if resumed else 0
        if most is not None and expected is not None and expected.isdigit() and start + int(expected) > most:
            raise _MirrorFailed(f"announces {start + int(expected)} bytes, more than the {most} a genuine copy has")
        progress = _Progress(label or part.name, start, int(expected) + start if expected and expected.isdigit()
                             else most)
        try:
            out = open(part, "ab" if resumed else "wb")
        except OSError as exc:
            raise _WriteFailed(exc.strerror or str(exc)) from None
        with out:
            received = _receive(response, out, part, start, end, most, progress)
    if expected is not None and received < int(expected):
        raise _TransferFailed(f"connection closed after {received} of {expected} bytes")


def _connect(url: str, part: Path, offset: int, timeout: float, end: float):
    """The response of `url` (from byte `offset` when resuming), or the failure that says what to do next."""
    headers = {"User-Agent": "predsparse-data"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    log.info("downloading %s%s", url, f" (resuming at byte {offset})" if offset else "")
    left = end - time.monotonic()
    if left <= 0:
        raise _DeadlinePassed("before connecting")
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=min(timeout, left))
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # the .part is not a prefix the server recognises: start over
            part.unlink()
            raise _TransferFailed("HTTP 416 on resume; restarting") from None
        if exc.code in (408, 429) or exc.code >= 500:
            raise _TransferFailed(f"HTTP {exc.code}") from None
        raise _MirrorFailed(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if time.monotonic() >= end:
            raise _DeadlinePassed(f"connecting: {_reason(exc)}") from None
        raise _TransferFailed(_reason(exc)) from None


def _receive(response, out, part: Path, start: int, end: float, most: int | None, progress: "_Progress") -> int:
    """Copy the response body into `out` (the .part, already holding `start` bytes) and sync it; the
    bytes received."""
    received = 0
    while True:
        if time.monotonic() >= end:
            progress.done()
            raise _DeadlinePassed(f"{start + received} bytes received")
        try:
            # read1: whatever has arrived (one recv), so a dripping server cannot hold a read past the deadline
            chunk = response.read1(CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            progress.done()
            if time.monotonic() >= end:
                raise _DeadlinePassed(f"{start + received} bytes received; {_reason(exc)}") from None
            raise _TransferFailed(f"connection lost after {received} bytes ({_reason(exc)})") from None
        if not chunk:
            break
        if most is not None and start + received + len(chunk) > most:
            out.close()
            part.unlink(missing_ok=True)  # our own .part, of content no genuine copy has
            progress.done()
            raise _MirrorFailed(f"sent more than the {most} bytes a genuine copy has (stopped there; removed)")
        try:
            out.write(chunk)
        except OSError as exc:
            raise _WriteFailed(_write_reason(exc)) from None
        received += len(chunk)
        progress.update(start + received)
    progress.done()
    try:
        out.flush()
        os.fsync(out.fileno())
    except OSError as exc:
        raise _WriteFailed(_write_reason(exc)) from None
    return received


class _Progress:
    """'NAME: 1.2 of 9.5 MiB (12%), 850 KiB/s, 10 s left' on stderr, redrawn at most twice a second; only on a
    terminal (logs and pipes get the one 'downloading' line)."""

    def __init__(self, name: str, start: int, total: int | None):
        self.name, self.start, self.total = name, start, total
        self.tty = sys.stderr.isatty()
        self.began = time.monotonic()
        self._last = -math.inf  # the first update is shown at once
        self.shown = False

    def update(self, have: int) -> None:
        now = time.monotonic()
        if not self.tty or now - self._last < 0.5:
            return
        self._last = now
        rate = (have - self.start) / max(now - self.began, 1e-9)
        line = f"{self.name}: {have / 2**20:.1f}"
        if self.total:
            line += f" of {self.total / 2**20:.1f} MiB ({100 * have / self.total:.0f}%)"
        else:
            line += " MiB"
        line += f", {rate / 1024:.0f} KiB/s"
        if self.total and rate > 0:
            line += f", {max(self.total - have, 0) / rate:.0f} s left"
        sys.stderr.write("\r" + line + "\033[K")
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.shown = False


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
