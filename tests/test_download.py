"""Robust transfer (predsparse.data.download) against a real HTTP server on 127.0.0.1.

`LoopbackServer` serves bytes the tests choose, honours Range requests, counts requests and injects one
fault per request from a queue: drop the connection half-way, corrupt the body, hang, ignore Range,
answer 404 / 503, or send slowly (defined in conftest.py, with the `server` fixture; test_datasets.py
uses it too).
"""

from __future__ import annotations

import gzip
import hashlib
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import read_only

from predsparse.data import download
from predsparse.data.download import RemoteFile, fetch, fetch_all
from predsparse.errors import DatasetError


def closed_port_url(name: str) -> str:
    """A loopback URL nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def payload(n: int = 200_000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def leftovers(directory: Path) -> list[str]:
    """Files other than the lock files."""
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock"))


FAST = {"backoff": 0.0, "timeout": 5.0}


def test_download_verifies_and_is_never_repeated(server, tmp_path):
    data = payload()
    remote = server.remote("a.bin", data)
    path = fetch(remote, tmp_path, **FAST)
    assert path == tmp_path / "a.bin" and path.read_bytes() == data
    assert fetch(remote, tmp_path, **FAST) == path
    assert server.count("a.bin") == 1
    assert leftovers(tmp_path) == ["a.bin"]


def test_connection_dropped_halfway_resumes_with_range(server, tmp_path):
    data = payload()
    remote = server.remote("a.bin", data)
    server.faults["a.bin"] = ["drop"]
    assert fetch(remote, tmp_path, **FAST).read_bytes() == data
    assert server.requests == [("a.bin", None), ("a.bin", f"bytes={len(data) // 2}-")]
    assert leftovers(tmp_path) == ["a.bin"]


def test_partial_file_of_an_earlier_run_is_resumed(server, tmp_path):
    data = payload()
    remote = server.remote("a.bin", data)
    (tmp_path / "a.bin.part").write_bytes(data[:70_000])
    assert fetch(remote, tmp_path, **FAST).read_bytes() == data
    assert server.requests == [("a.bin", "bytes=70000-")]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data = payload()
    remote = server.remote("a.bin", data)
    (tmp_path / "a.bin.part").write_bytes(data[:70_000])
    server.faults["a.bin"] = ["ignore_range"]
    assert fetch(remote, tmp_path, **FAST).read_bytes() == data
    assert server.count("a.bin") == 1


def test_stale_partial_file_fails_checksum_then_full_retry_succeeds(server, tmp_path):
    data = payload()
    remote = server.remote("a.bin", data)
    (tmp_path / "a.bin.part").write_bytes(b"x" * 1000)  # not a prefix of the file
    assert fetch(remote, tmp_path, **FAST).read_bytes() == data
    assert server.requests == [("a.bin", "bytes=1000-"), ("a.bin", None)]


def test_corrupted_download_is_removed_retried_once_then_clear_error(server, tmp_path):
    data = payload()
    remote = server.remote("a.bin", data)
    server.faults["a.bin"] = ["corrupt", "corrupt", "corrupt"]
    with pytest.raises(DatasetError) as err:
        fetch(remote, tmp_path, **FAST)
    message = str(err.value)
    assert "twice" in message and remote.md5 in message and "a.bin" in message and str(tmp_path) in message
    assert server.count("a.bin") == 2
    assert leftovers(tmp_path) == []


def test_one_corrupted_download_is_retried(server, tmp_path):
    data = payload()
    remote = server.remote("a.bin", data)
    server.faults["a.bin"] = ["corrupt"]
    assert fetch(remote, tmp_path, **FAST).read_bytes() == data
    assert server.count("a.bin") == 2


def test_existing_bad_file_is_refused_online_and_left_untouched(server, tmp_path):
    """A file the user put there is never overwritten, even online: one clear line says what to do."""
    data = payload()
    remote = server.remote("a.bin", data)
    (tmp_path / "a.bin").write_bytes(b"not it")
    with pytest.raises(DatasetError) as err:
        fetch(remote, tmp_path, **FAST)
    message = str(err.value)
    assert "\n" not in message and "left untouched" in message and "move it away" in message
    for part in (str(tmp_path / "a.bin"), hashlib.md5(b"not it").hexdigest(), remote.md5, remote.urls[0]):
        assert part in message
    assert (tmp_path / "a.bin").read_bytes() == b"not it"
    assert server.requests == []


def test_second_mirror_after_refused_connection_and_404(server, tmp_path):
    data = payload()
    remote = server.remote("a.bin", data, extra_urls=(closed_port_url("a.bin"), server.url("gone/a.bin")))
    assert fetch(remote, tmp_path, retries=1, **FAST).read_bytes() == data
    assert server.count("gone/a.bin") == 1  # a 404 is not retried
    assert server.count("a.bin") == 1


def test_server_errors_are_retried_with_exponential_backoff(server, tmp_path, monkeypatch):
    delays = []
    monkeypatch.setattr(download.time, "sleep", delays.append)
    data = payload()
    remote = server.remote("a.bin", data)
    server.faults["a.bin"] = ["503", "503", "503"]
    assert fetch(remote, tmp_path, retries=3, backoff=0.5, timeout=5.0).read_bytes() == data
    assert delays == [0.5, 1.0, 2.0]
    assert server.count("a.bin") == 4


def test_timeout_then_retry(server, tmp_path):
    data = payload()
    remote = server.remote("a.bin", data)
    server.faults["a.bin"] = ["hang"]
    assert fetch(remote, tmp_path, retries=1, backoff=0.0, timeout=0.3).read_bytes() == data
    assert server.count("a.bin") == 2


def test_no_network_error_names_urls_file_checksum_and_directory(tmp_path):
    urls = (closed_port_url("a.bin"), closed_port_url("b/a.bin"))
    remote = RemoteFile("a.bin", "0123456789abcdef0123456789abcdef", urls, 1234)
    with pytest.raises(DatasetError) as err:
        fetch(remote, tmp_path / "raw", retries=1, **FAST)
    message = str(err.value)
    assert "\n" not in message
    for part in (*urls, "a.bin", remote.md5, str((tmp_path / "raw").resolve())):
        assert part in message
    assert leftovers(tmp_path / "raw") == []


def test_offline_uses_present_file_without_network(server, tmp_path):
    data = payload()
    remote = server.remote("a.bin", data)
    (tmp_path / "a.bin").write_bytes(data)
    assert fetch(remote, tmp_path, offline=True).read_bytes() == data
    assert server.requests == []


def test_offline_without_file_names_everything_needed(tmp_path):
    remotes = [RemoteFile(name, f"{i}" * 32, (f"https://example.org/{name}",), 10) for i, name in enumerate("xy")]
    with pytest.raises(DatasetError) as err:
        fetch_all(remotes, tmp_path / "mnist", offline=True)
    message = str(err.value)
    assert "offline" in message and "\n" not in message
    for remote in remotes:
        assert remote.name in message and remote.md5 in message and remote.urls[0] in message
    assert str((tmp_path / "mnist").resolve()) in message


def test_offline_with_wrong_file_refuses_and_leaves_it_untouched(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"wrong")
    remote = RemoteFile("a.bin", "0" * 32, ("https://example.org/a.bin",))
    with pytest.raises(DatasetError, match="left untouched") as err:
        fetch(remote, tmp_path, offline=True)
    assert hashlib.md5(b"wrong").hexdigest() in str(err.value) and remote.md5 in str(err.value)
    assert (tmp_path / "a.bin").read_bytes() == b"wrong"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]  # offline: not even a lock file


CONTENT = payload(300_000, seed=3)


def recompressed(content: bytes = CONTENT) -> tuple[bytes, bytes]:
    """The 'publisher's' gzip of `content` and another gzip of the same bytes (other level and mtime)."""
    original = gzip.compress(content, compresslevel=6, mtime=0)
    other = gzip.compress(content, compresslevel=9, mtime=1_234_567)
    assert original != other
    return original, other


def gz_remote(original: bytes, content: bytes = CONTENT, urls=("https://example.org/a.gz",)) -> RemoteFile:
    return RemoteFile("a.gz", hashlib.md5(original).hexdigest(), tuple(urls), len(original),
                      hashlib.md5(content).hexdigest(), len(content))


def test_recompressed_copy_is_accepted_by_content_md5_offline_and_online(server, tmp_path):
    original, other = recompressed()
    remote = gz_remote(original, urls=(server.url("a.gz"),))
    server.files["a.gz"] = original
    (tmp_path / "a.gz").write_bytes(other)
    got = download.fetch_verified(remote, tmp_path, offline=True)
    assert (got.path, got.verified, got.md5) == (tmp_path / "a.gz", "content md5", hashlib.md5(other).hexdigest())
    assert download.fetch_verified(remote, tmp_path, **FAST).verified == "content md5"
    assert server.requests == [] and (tmp_path / "a.gz").read_bytes() == other
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "a.gz").write_bytes(original)
    assert download.fetch_verified(remote, tmp_path / "b", offline=True).verified == "archive md5"


def test_mirror_serving_a_recompressed_copy_is_accepted(server, tmp_path):
    original, other = recompressed()
    remote = gz_remote(original, urls=(server.url("a.gz"),))
    server.files["a.gz"] = other
    got = download.fetch_verified(remote, tmp_path, **FAST)
    assert got.verified == "content md5" and got.path.read_bytes() == other
    assert leftovers(tmp_path) == ["a.gz"]


@pytest.mark.parametrize("placed, why", [
    (gzip.compress(CONTENT[:-1] + b"?", mtime=5), "content md5 "),  # another content, same size
    (gzip.compress(CONTENT + b"!", mtime=5), "300001 bytes decompressed"),
    (gzip.compress(CONTENT, mtime=5)[:-100], "not a readable gzip file"),  # truncated
    (b"<html>not gzip</html>", "not a readable gzip file"),
])
def test_file_failing_both_checks_is_refused_and_left_byte_identical(server, tmp_path, placed, why):
    original, _ = recompressed()
    remote = gz_remote(original, urls=(server.url("a.gz"),))
    server.files["a.gz"] = original
    (tmp_path / "a.gz").write_bytes(placed)
    for offline in (True, False):
        with pytest.raises(DatasetError) as err:
            fetch(remote, tmp_path, offline=offline, **FAST)
        message = str(err.value)
        assert "\n" not in message and why in message and "left untouched" in message
        for part in (str(tmp_path / "a.gz"), hashlib.md5(placed).hexdigest(), remote.md5, remote.content_md5):
            assert part in message
        assert (tmp_path / "a.gz").read_bytes() == placed
    assert server.requests == []


def test_read_only_folder_is_only_read_offline_and_online(server, tmp_path):
    original, other = recompressed()
    remote = gz_remote(original, urls=(server.url("a.gz"),))
    server.files["a.gz"] = original
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "a.gz").write_bytes(other)
    missing = RemoteFile("b.gz", "1" * 32, (server.url("b.gz"),))
    with read_only(shared):
        assert fetch(remote, shared, offline=True) == shared / "a.gz"
        assert fetch(remote, shared, **FAST) == shared / "a.gz"  # online: no lock can be made, only read
        with pytest.raises(DatasetError, match="read-only"):
            fetch(missing, shared, **FAST)
        with pytest.raises(DatasetError, match="offline"):
            fetch(missing, shared, offline=True)
    assert server.requests == []


def test_not_enough_free_space_is_refused_before_downloading(server, tmp_path):
    remote = server.remote("a.bin", payload(1000))
    remote = RemoteFile(remote.name, remote.md5, remote.urls, size=10 ** 18)
    with pytest.raises(DatasetError, match="not enough free space"):
        fetch(remote, tmp_path, **FAST)
    assert server.requests == []


FETCH_SCRIPT = """
import sys
from predsparse.data.download import RemoteFile, fetch
name, md5, url, directory = sys.argv[1:5]
fetch(RemoteFile(name, md5, (url,)), directory, backoff=0.0, timeout=10.0)
"""


def _fetch_process(remote: RemoteFile, directory: Path, preamble: str = "") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", preamble + FETCH_SCRIPT, remote.name, remote.md5, remote.urls[-1], str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_two_processes_fetching_at_once_download_once(server, tmp_path):
    data = payload()
    remote = server.remote("a.bin", data)
    server.faults["a.bin"] = ["slow", "slow"]
    procs = [_fetch_process(remote, tmp_path) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert server.count("a.bin") == 1
    assert (tmp_path / "a.bin").read_bytes() == data
    assert leftovers(tmp_path) == ["a.bin"]


def test_a_waiting_process_takes_the_file_the_lock_holder_wrote(server, tmp_path):
    data = payload()
    remote = server.remote("a.bin", data)
    with download._locked(tmp_path, "a.bin"):
        proc = _fetch_process(remote, tmp_path)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.5)  # blocked on the lock
        (tmp_path / "a.bin").write_bytes(data)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert server.requests == []


def test_failed_write_leaves_nothing_behind(server, tmp_path):
    """A write error mid-download (here: a file-size limit, as a full disk would) -> clear error, no files."""
    remote = server.remote("a.bin", payload())
    limit = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))\n"
    )
    proc = _fetch_process(remote, tmp_path, preamble=limit)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "DatasetError: cannot write" in err and "nothing was kept" in err
    assert leftovers(tmp_path) == []
