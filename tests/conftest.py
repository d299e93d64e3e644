"""What several test modules share: the loopback HTTP server, the synthetic Morse set, run specs, fixtures.

Fixtures (found by pytest): `server` (a `LoopbackServer`), `inputs` (a module's synthetic Morse set and a
random pattern), `one_thread` (one torch thread for a module: `pytestmark = pytest.mark.usefixtures("one_thread")`).
Helpers (`from conftest import ...`): `LoopbackServer`, `read_only`, `synthetic_morse`, `make_spec`, `VOLATILE`.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import io
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from predsparse.data.download import RemoteFile
from predsparse.defaults import resolve_spec
from predsparse.io import save_npz
from predsparse.patterns import generate_pattern
from predsparse.spec import RunSpec

# Figures that legitimately differ between two runs of one spec (time, where it ran).
VOLATILE = {"wall_time_s", "device", "versions", "git_commit"}


# --- a loopback HTTP server -----------------------------------------------------------------------------

class LoopbackServer:
    """A threading HTTP/1.1 server on 127.0.0.1 serving `files` (name -> bytes) with injectable faults,
    or answering with `handler` (a BaseHTTPRequestHandler class of the test's own) when given."""

    def __init__(self, handler: type[BaseHTTPRequestHandler] | None = None):
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}  # name -> faults, one consumed per request
        self.requests: list[tuple[str, str | None]] = []  # (name, Range header)
        self.release = threading.Event()  # ends a 'hang' early at teardown
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler or self._handler_class())
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def remote(self, name: str, data: bytes, *, md5: str | None = None, extra_urls=()) -> RemoteFile:
        """Serve `data` as `name` and describe it as a publisher's file (MD5 of `data` unless given)."""
        self.files[name] = data
        return RemoteFile(name, md5 or hashlib.md5(data).hexdigest(), (*extra_urls, self.url(name)), len(data))

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.requests if n == name)

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next_fault(self, name):
        with self._lock:
            queue = self.faults.get(name) or []
            return queue.pop(0) if queue else None

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                with server._lock:
                    server.requests.append((name, self.headers.get("Range")))
                fault = server._next_fault(name)
                try:
                    self._answer(name, fault)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def _answer(self, name, fault):
                if name not in server.files or fault in ("404", "503"):
                    self.send_response(int(fault or 404))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault == "hang":
                    server.release.wait(timeout=5)
                    self.close_connection = True
                    return
                body = server.files[name]
                if fault == "corrupt":
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                start, wanted = 0, self.headers.get("Range")
                if wanted and fault != "ignore_range":
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                rest = body[start:]
                if fault == "drop":  # half the promised bytes, then hang up
                    self.wfile.write(rest[: len(rest) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if fault == "slow":  # long enough for a second process to arrive meanwhile
                    self.wfile.write(rest[: len(rest) // 2])
                    self.wfile.flush()
                    time.sleep(1.0)
                    rest = rest[len(rest) // 2:]
                self.wfile.write(rest)

        return Handler


@pytest.fixture
def server():
    srv = LoopbackServer()
    yield srv
    srv.close()


@contextlib.contextmanager
def read_only(directory: Path):
    """Make `directory` and its files read-only and check nothing in it changes (not even its mtime).

    Root ignores permission bits, so opening anything under `directory` for writing (or creating a folder
    there) is also made to fail with EACCES, as a read-only shared folder would.
    """
    def snapshot():
        return (directory.stat().st_mtime_ns,
                {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(directory.iterdir())})

    def inside(path) -> bool:
        try:
            return Path(os.path.abspath(os.fspath(path))).is_relative_to(directory.resolve())
        except TypeError:  # a file descriptor
            return False

    def denied(path):
        return PermissionError(errno.EACCES, "Permission denied (read-only test folder)", os.fspath(path))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def guarded_open(file, mode="r", *args, **kwargs):
        if inside(file) and any(flag in mode for flag in "wax+"):
            raise denied(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC):
            raise denied(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if inside(path) and not os.path.isdir(path):
            raise denied(path)
        return real_mkdir(path, *args, **kwargs)

    for path in directory.iterdir():
        path.chmod(0o444)
    directory.chmod(0o555)
    before = snapshot()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builtins, "open", guarded_open)
        mp.setattr(io, "open", guarded_open)
        mp.setattr(os, "open", guarded_os_open)
        mp.setattr(os, "mkdir", guarded_mkdir)
        try:
            yield
        finally:
            mp.undo()
            assert snapshot() == before, "something was written in the read-only folder"
            directory.chmod(0o755)


# --- training inputs ------------------------------------------------------------------------------------

def synthetic_morse(path: Path, n=(1024, 256, 256), features=64, seed=0):
    """A learnable 64-class set: input y is 1 for class y, the others noise in [0, 0.3)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, size in zip(("tr", "va", "te"), n):
        y = rng.integers(0, 64, size)
        x = (rng.random((size, features)) * 0.3).astype(np.float32)
        x[np.arange(size), y % features] = 1.0
        arrays[f"x{split}"], arrays[f"y{split}"] = x, y.astype(np.int64)
    save_npz(path, arrays)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread in a module and in its training subprocesses: equal results, no oversubscribed cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    generate_pattern([64, 128, 64], [32, 8], "random", 0).save(root / "p.npz")
    return {"data": synthetic_morse(root / "morse.npz"), "pattern": root / "p.npz", "root": root}


def make_spec(inputs, kind: str | None = None, **changes) -> RunSpec:
    """A short Morse run of `inputs`: its pattern, or `inputs["root"] / "<kind>.npz"`, with `changes`."""
    pattern = inputs["pattern"] if kind is None else inputs["root"] / f"{kind}.npz"
    raw = {"study": "t", "run_name": "r", "dataset": "morse", "data": str(inputs["data"]),
           "pattern": str(pattern), "epochs": 3, "batch_size": 32, "optimizer": "adam", "lr": 0.03,
           "device": "cpu", **changes}
    return resolve_spec(raw)
