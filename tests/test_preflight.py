"""The cluster run's preflight: an http(s) tracking server must answer before anything is submitted."""

import base64
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from predsparse.errors import PredsparseError, TrackingError
from predsparse.pipeline.preflight import PROBE, check_tracking_server, cluster_store_warning

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Loopback only: no proxy of the environment in between, no credentials of the environment."""
    for key in list(os.environ):
        if key.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") or key.startswith("MLFLOW_TRACKING_"):
            monkeypatch.delenv(key)


class _Server(BaseHTTPRequestHandler):
    status = 200
    body = b'{"experiments": []}'
    seen: list = []

    def do_GET(self):  # noqa: N802
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A stand-in tracking server on 127.0.0.1; its handler class sets the answer."""
    handler = type("Handler", (_Server,), {"seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_line_error(uri: str, **kwargs) -> str:
    with pytest.raises(TrackingError) as info:
        check_tracking_server(uri, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "nothing was submitted" in message
    return message


def test_an_answering_server_passes_and_is_asked_its_rest_api(server):
    uri, handler = server
    check_tracking_server(uri)
    check_tracking_server(uri + "/mlflow/")  # a path prefix (a server behind a proxy) is kept
    assert [path for path, _ in handler.seen] == ["/" + PROBE, "/mlflow/" + PROBE]


def test_a_closed_port_stops_in_one_line_naming_the_uri():
    uri = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    message = one_line_error(uri)
    assert time.monotonic() - started < 5
    assert message.startswith(f"MLflow tracking server {uri} is not reachable (Connection refused)")
    assert "MLFLOW_TRACKING_URI" in message


def test_a_server_that_never_answers_costs_the_timeout_only():
    with socket.socket() as sock:  # accepts connections (the backlog) and never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
        started = time.monotonic()
        message = one_line_error(uri, timeout=0.5)
        assert time.monotonic() - started < 3
    assert f"{uri} is not reachable (no answer within 0.5 s)" in message


@pytest.mark.parametrize("status, expected", [
    (404, "answers but is not an MLflow tracking server (HTTP 404"),
    (500, "answers with an error (HTTP 500: database is down)"),
    (503, "answers with an error (HTTP 503: database is down)"),
    (401, "refuses the request (HTTP 401: database is down)"),
    (403, "refuses the request (HTTP 403: database is down)"),
])
def test_an_error_answer_is_named(server, status, expected):
    uri, handler = server
    handler.status, handler.body = status, b"database is down\nsecond line"
    message = one_line_error(uri)
    assert uri in message and expected in message, message


def test_a_web_page_is_not_a_tracking_server(server):
    uri, handler = server
    handler.body = b"<html>a login page</html>"
    assert "answers but is not an MLflow tracking server (no JSON" in one_line_error(uri)


def test_the_clients_credentials_are_sent(server, monkeypatch):
    uri, handler = server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret")
    check_tracking_server(uri)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok")
    check_tracking_server(uri)
    assert [auth for _, auth in handler.seen] == [f"Basic {base64.b64encode(b'alice:s3cret').decode()}", "Bearer tok"]


def test_a_password_in_the_uri_is_not_printed():
    message = one_line_error(f"http://bob:hunter2@127.0.0.1:{closed_port()}")
    assert "hunter2" not in message and "bob:***@127.0.0.1" in message


def test_https_without_a_tls_server_is_a_one_line_error(server):
    uri, _ = server
    message = one_line_error(uri.replace("http://", "https://"), timeout=2)
    assert "is not reachable" in message


@pytest.mark.parametrize("uri", ["sqlite:///results/smoke/mlflow.db", "file:///tmp/mlruns", "databricks",
                                 "postgresql://u@127.0.0.1:9/db", "/tmp/mlruns"])
def test_other_stores_are_not_asked(uri):
    check_tracking_server(uri)  # no network: would raise for a closed port if it were


def test_a_sqlite_store_on_a_cluster_is_warned_about():
    warning = cluster_store_warning("sqlite:///results/smoke/mlflow.db")
    assert warning and "\n" not in warning and "tracking server" in warning
    assert cluster_store_warning("http://127.0.0.1:5000") is None
    assert issubclass(TrackingError, PredsparseError)


# ------------------------------------------------------------------------------------------ the hook
def snakemake(workdir: Path, *args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "-d", str(workdir),
                           "--configfile", str(REPO / "config/smoke.yaml"), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.skipif(importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
                    reason="snakemake-executor-plugin-slurm is not installed")
def test_a_cluster_run_against_a_dead_server_stops_before_submitting(tmp_path):
    uri = f"http://127.0.0.1:{closed_port()}"
    # sbatch, squeue ... that record being called: the run must stop before any of them submits a job
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "squeue", "sacct", "sinfo", "scontrol", "scancel", "srun", "sacctmgr", "sshare"):
        (bin_dir / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {tmp_path}/calls\nexit 1\n")
        (bin_dir / tool).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and "proxy" not in k.lower()}
    env.update(MLFLOW_TRACKING_URI=uri, PATH=f"{bin_dir}:{env['PATH']}")
    work = tmp_path / "work"
    result = snakemake(work, "--workflow-profile", str(REPO / "workflow/profiles/slurm"), env=env)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("predsparse: error:")]
    assert errors == [f"predsparse: error: MLflow tracking server {uri} is not reachable (Connection refused); "
                      "start it (README: 'A tracking server for clusters') or point MLFLOW_TRACKING_URI or the "
                      "config's tracking_uri at a running one; nothing was submitted"]
    calls = (tmp_path / "calls").read_text() if (tmp_path / "calls").exists() else ""
    assert "sbatch" not in calls
    assert not (work / "results").exists()  # no job ran, not even a local one
    assert not list((work / ".snakemake").glob("locks/*"))  # the run left no lock behind


def test_a_local_run_is_not_stopped_by_a_dead_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and "proxy" not in k.lower()}
    env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{closed_port()}"
    result = snakemake(tmp_path, "--cores", "1", "specs", env=env)  # one quick local rule
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "predsparse: error" not in result.stderr
    assert json.loads(next((tmp_path / "results/smoke/specs").rglob("*.json")).read_text())["tracking_uri"] == \
        env["MLFLOW_TRACKING_URI"]
