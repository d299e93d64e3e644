"""Checks a cluster run makes before it submits anything (workflow/rules/common.smk, `onstart`).

A sweep on a cluster logs to a tracking server every node reaches. If that server is down, mistyped or
refuses the client, every training job would spend its MLflow retries and the sweep would end with
nothing tracked; so the submitting Snakemake asks the server once, with a few seconds' timeout, and stops
with one line naming the URI when it does not answer. Once the sweep runs, a server that goes away is
tolerated as before: training goes on and `predsparse mlflow-sync` loads the missing runs later.

- `http://` and `https://` URIs: one GET of the REST API (`/api/2.0/mlflow/experiments/search`), with
  the credentials and TLS settings the MLflow client takes from the environment
  (MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD,
  MLFLOW_TRACKING_INSECURE_TLS, MLFLOW_TRACKING_SERVER_CERT_PATH; proxies as `requests` finds them).
- `sqlite:` URIs: no check, a warning: a SQLite file on a shared file system is not safe for many nodes.
- Anything else (databricks, postgresql://, file stores): left to MLflow.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from predsparse.errors import TrackingError

# A few seconds to connect and as many to answer: an unreachable server costs seconds, not a hang.
TIMEOUT_S = 5.0
PROBE = "api/2.0/mlflow/experiments/search?max_results=1"


def _safe(uri: str) -> str:
    """The URI as it may be printed: a password in it is replaced by ***."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _reason(exc: BaseException, timeout: float) -> str:
    """A short cause of a failed request: the innermost OS error ('Connection refused'), else a first line."""
    import requests

    if isinstance(exc, requests.exceptions.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed (set MLFLOW_TRACKING_SERVER_CERT_PATH to the server's CA certificate)"
    seen, cause = set(), exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__ or (cause.args[0] if cause.args and
                                                         isinstance(cause.args[0], BaseException) else None)
    text = str(exc)
    for marker in ("Failed to resolve", "Name or service not known", "nodename nor servname"):
        if marker in text:
            return "host name not found"
    return ((text.strip().splitlines() or [type(exc).__name__])[0])[:200]


def _request_options() -> dict:
    """Credentials and TLS options of the MLflow client, read from the same environment variables."""
    options: dict = {"headers": {"Accept": "application/json"}}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if token:
        options["headers"]["Authorization"] = f"Bearer {token}"
    elif user and password:
        options["auth"] = (user, password)
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        options["verify"] = False
    elif os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        options["verify"] = os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    return options


def check_tracking_server(uri: str, timeout: float = TIMEOUT_S) -> None:
    """Raise TrackingError (one line, naming `uri`) unless the MLflow server at an http(s) `uri` answers
    its REST API. Other URIs are not checked."""
    if urlsplit(uri).scheme.lower() not in ("http", "https"):
        return
    import requests

    url = uri.rstrip("/") + "/" + PROBE
    shown = _safe(uri)
    advice = ("start it (README: 'A tracking server for clusters') or point MLFLOW_TRACKING_URI or the config's "
              "tracking_uri at a running one; nothing was submitted")
    try:
        reply = requests.get(url, timeout=(timeout, timeout), allow_redirects=True, **_request_options())
    except Exception as exc:  # noqa: BLE001 - any failure to get an answer is the same answer
        reason = _reason(exc, timeout)
        raise TrackingError(f"MLflow tracking server {shown} is not reachable ({reason}); {advice}") from None
    if reply.status_code in (401, 403):
        raise TrackingError(
            f"MLflow tracking server {shown} refuses the request (HTTP {reply.status_code}"
            f"{': ' + _first_line(reply.text) if _first_line(reply.text) else ''}); set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), or start the server with --allowed-hosts naming "
            "the host in the URI; nothing was submitted")
    if reply.status_code == 404:
        raise TrackingError(f"{shown} answers but is not an MLflow tracking server (HTTP 404 for "
                            f"/{PROBE.split('?')[0]}); check the URI (scheme, host, port, path prefix); nothing was "
                            "submitted")
    if reply.status_code >= 400:
        detail = _first_line(reply.text)
        raise TrackingError(f"MLflow tracking server {shown} answers with an error (HTTP {reply.status_code}"
                            f"{': ' + detail if detail else ''}): is its backend store (database) up? nothing was "
                            "submitted")
    try:
        answer = reply.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise TrackingError(f"{shown} answers but is not an MLflow tracking server (no JSON from "
                            f"/{PROBE.split('?')[0]}); check the URI (scheme, host, port, path prefix); nothing was "
                            "submitted")


def _first_line(text: str) -> str:
    return ((text or "").strip().splitlines() or [""])[0][:200]


def cluster_store_warning(uri: str) -> str | None:
    """A one-line warning for a store that many nodes should not share, else None."""
    if uri.startswith("sqlite:"):
        return (f"MLflow store {uri} is a SQLite file: not safe for training jobs on many nodes of a shared file "
                "system; run a tracking server (README: 'A tracking server for clusters') and set "
                "MLFLOW_TRACKING_URI=http://<server>:<port>")
    return None
