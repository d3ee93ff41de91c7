"""A local MLflow tracking server for the project's store (`scanflow tracker up|down|status`).

Containers and agents cannot open the project's sqlite store, so `up` serves that same store
over HTTP on 127.0.0.1 (reachable from step containers started with the host's network): MLflow's
tracking app with ``--artifacts-destination <home>/mlartifacts``, so artifacts sent through the
server land on the host. It runs as one lean process (`mlflow_server.app`: no job runner, no huey
consumers), detached in its own session (a Ctrl-C of a pipeline run does not stop it), recorded
in ``<home>/tracker.json`` and in the per-user registry (`mlflow_server.registry`); `down` stops exactly
that process, `down_all` every one of the user's. It stops by itself when its project folder
disappears, and, when started with an idle timeout (trackers that runs start:
``$SCANFLOW_TRACKER_IDLE_TIMEOUT``, default 600 s), after that long without requests while no run
holds a lease. The docker backend calls `ensure_tracker` when the run's tracking URI is a local store.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scanflow_jupyter.mlflow_server import registry
from scanflow_jupyter.tracking import default_artifact_root, default_tracking_uri, scanflow_home

DEFAULT_PORT = 5050
HOST = "127.0.0.1"
START_TIMEOUT = 120.0
DEFAULT_IDLE_TIMEOUT = 600.0
PROBE = {"X-Scanflow-Probe": "1"}  # health checks that do not keep a tracker from idling out


def auto_idle_timeout() -> float:
    """Idle timeout (seconds) of trackers that runs start: $SCANFLOW_TRACKER_IDLE_TIMEOUT or 600."""
    raw = os.environ.get("SCANFLOW_TRACKER_IDLE_TIMEOUT", "").strip()
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_IDLE_TIMEOUT
    except ValueError as exc:
        raise TrackerError(f"SCANFLOW_TRACKER_IDLE_TIMEOUT={raw!r} is not a number of seconds. "
                           "Fix: set it to e.g. 600, or 0 to never stop an idle tracker.") from exc


class TrackerError(RuntimeError):
    """The tracking server could not be started or stopped; the message says why and what to do."""


@dataclass
class TrackerInfo:
    """A tracking server started by `up` (as recorded in `<home>/tracker.json`)."""

    pid: int
    port: int
    url: str
    backend_store_uri: str
    artifacts_destination: str
    log: str
    started_at: float
    idle_timeout: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _state_path(home: Path) -> Path:
    return home / "tracker.json"


def is_local_store(uri: str) -> bool:
    """Is `uri` a store on this machine's disk (sqlite or a file path), which containers cannot open?"""
    lowered = uri.lower()
    return lowered.startswith(("sqlite:", "file:")) or "://" not in uri


def _read(home: Path) -> TrackerInfo | None:
    try:
        return TrackerInfo(**json.loads(_state_path(home).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _process_is_server(info: TrackerInfo) -> bool:
    """Is `info.pid` still the tracker we started (and not a recycled pid)?"""
    args = registry.cmdline(info.pid)
    if any(m in args for m in registry.SERVER_MODULES):
        return str(info.port) in args and registry.is_tracker_process(info.pid)
    # a tracker started by an older Scanflow (`mlflow server`): still recognised, so `down` stops it
    return "server" in args and any("mlflow" in a for a in args) and str(info.port) in args


def healthy(url: str, timeout: float = 2.0, probe: bool = False) -> bool:
    """Does the tracker at `url` answer /health? A `probe` does not count as activity."""
    request = urllib.request.Request(f"{url}/health", headers=PROBE if probe else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - local URL
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def status(home: Path | None = None) -> TrackerInfo | None:
    """The running tracker of this project, or None (a stale record is removed)."""
    home = Path(home) if home else scanflow_home()
    info = _read(home)
    if info is None:
        return None
    if not _process_is_server(info):
        with contextlib.suppress(OSError):
            _state_path(home).unlink()
        return None
    return info


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _locked(home: Path) -> Any:
    home.mkdir(parents=True, exist_ok=True)
    with (home / "tracker.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def up(home: Path | None = None, *, port: int | None = None, backend_store_uri: str | None = None,
       timeout: float = START_TIMEOUT, idle_timeout: float = 0.0) -> TrackerInfo:
    """Serve the project's store (idempotent: a running tracker of the same store is returned).

    `idle_timeout` (seconds, 0 = never) applies to a tracker this call starts. A caller that needs
    the tracker for longer than that without sending requests takes a lease first
    (`registry.take_lease`): a tracker that is stopping withdraws `<home>/tracker.json`
    under the same lock this function holds, so it is never handed out.
    """
    home = Path(home) if home else scanflow_home()
    store = backend_store_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(home)
    if not is_local_store(store):
        from scanflow_jupyter.redact import redact_uri

        raise TrackerError(f"the tracking URI {redact_uri(store)} is already a server: there is nothing to serve. "
                           "Fix: use it directly, or unset MLFLOW_TRACKING_URI to serve the project's own store.")
    with _locked(home):
        running = status(home)
        if running is not None:
            if running.backend_store_uri != store:
                raise TrackerError(f"a tracker (pid {running.pid}, {running.url}) already serves {running.backend_store_uri}, "
                                   f"not {store}. Fix: `scanflow tracker down` first.")
            if _wait_healthy(running, timeout):
                return running
            raise TrackerError(f"the tracker (pid {running.pid}) at {running.url} does not answer; see {running.log}. "
                               "Fix: `scanflow tracker down`, then `scanflow tracker up`.")
        wanted = port or int(os.environ.get("SCANFLOW_TRACKER_PORT") or DEFAULT_PORT)
        if not _port_free(wanted):
            if port:
                raise TrackerError(f"port {port} on {HOST} is in use. Fix: pick another with --port.")
            wanted = _free_port()
        artifacts = default_artifact_root(home)
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        log_path = home / "tracker.log"
        last_error = ""
        for _attempt in range(2):  # a fresh store may be migrated by a client at the same moment
            info = _start(home, store, artifacts, wanted, idle_timeout, log_path)
            _state_path(home).write_text(json.dumps(info.to_dict(), indent=1) + "\n", encoding="utf-8")
            if _wait_healthy(info, timeout):
                return info
            last_error = _log_tail(log_path)
            _stop(info)
            with contextlib.suppress(OSError):
                _state_path(home).unlink()
        raise TrackerError(f"the tracker (MLflow's server) did not answer on {HOST}:{wanted} within {timeout:.0f}s. Last log lines "
                           f"({log_path}):\n{last_error}\nFix: check that the full `mlflow` package is installed "
                           "(mlflow-skinny cannot serve) and that the store is readable.")


def _start(home: Path, store: str, artifacts: str, port: int, idle_timeout: float, log_path: Path) -> TrackerInfo:
    cmd = [sys.executable, "-m", registry.SERVER_MODULE, "--home", str(home.absolute()), "--store", store,
           "--artifacts", artifacts, "--host", HOST, "--port", str(port), "--idle-timeout", f"{idle_timeout:g}"]
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    with log_path.open("ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env, cwd=str(log_path.parent))
    return TrackerInfo(pid=proc.pid, port=port, url=f"http://{HOST}:{port}", backend_store_uri=store,
                       artifacts_destination=artifacts, log=str(log_path), started_at=time.time(),
                       idle_timeout=idle_timeout)


def _wait_healthy(info: TrackerInfo, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(info.url):  # not a probe: whoever waits for the tracker is about to use it
            return True
        if not _process_is_server(info) and not _alive(info.pid):
            return False
        time.sleep(0.25)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(info: TrackerInfo, timeout: float = 15.0) -> None:
    """Stop the server's whole session (uvicorn workers included): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(info.pid, sig)
        except ProcessLookupError:
            return
        except PermissionError as exc:
            raise TrackerError(f"cannot stop the tracker (pid {info.pid}): {exc}") from exc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(info.pid):
                return
            time.sleep(0.1)


def down(home: Path | None = None) -> TrackerInfo | None:
    """Stop the project's tracker; return what was stopped (None if none ran)."""
    home = Path(home) if home else scanflow_home()
    with _locked(home):
        info = status(home)
        if info is None:
            return None
        _stop(info)
        registry.remove(info.pid)
        with contextlib.suppress(OSError):
            _state_path(home).unlink()
        return info


def wait_for_experiment(tracking_uri: str, experiment: str, timeout: float = 60.0,
                        stop: Callable[[], bool] | None = None) -> bool:
    """Wait until a sqlite store holds `experiment` (its schema is then complete).

    A pipeline run opens (and, when fresh, migrates) its store itself; an MLflow server started
    at the same moment would migrate it concurrently, and one of the two would fail. So the
    docker backend waits for the run's experiment before serving the store.
    """
    import sqlite3

    if not tracking_uri.lower().startswith("sqlite:///"):
        return True
    db = Path(tracking_uri[len("sqlite:///"):])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (stop and stop()):
        if db.exists():
            try:
                with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
                    row = conn.execute("SELECT count(*) FROM experiments WHERE name = ?", (experiment,)).fetchone()
                if row and row[0]:
                    return True
            except sqlite3.Error:
                pass
        time.sleep(0.2)
    return False


def ensure_tracker(tracking_uri: str, home: Path | None = None) -> str:
    """The URI containers should use: the server itself, or a tracker serving the local store.

    A tracker started here stops after `auto_idle_timeout()` seconds without requests (and no lease).
    """
    if not is_local_store(tracking_uri):
        return tracking_uri
    return up(home, backend_store_uri=tracking_uri, idle_timeout=auto_idle_timeout()).url


def list_all() -> list[registry.Entry]:
    """Every tracker of this user (all folders); trackers whose folder is gone are stopped."""
    found = []
    for entry in registry.entries():
        if not Path(entry.home).is_dir():
            _stop_entry(entry)
            continue
        found.append(entry)
    return found


def _stop_entry(entry: registry.Entry) -> None:
    _stop(TrackerInfo(pid=entry.pid, port=entry.port, url=entry.url, backend_store_uri=entry.backend_store_uri,
                      artifacts_destination="", log=entry.log, started_at=entry.started_at))
    registry.remove(entry.pid)


def down_all() -> list[registry.Entry]:
    """Stop every tracker of this user; return what was stopped."""
    stopped = []
    for entry in registry.entries():
        home = Path(entry.home)
        if home.is_dir():
            down(home)  # under the project's lock; also clears <home>/tracker.json
        if registry.is_tracker_process(entry.pid, entry.home):  # not the one tracker.json names
            _stop_entry(entry)
        registry.remove(entry.pid)
        stopped.append(entry)
    return stopped
