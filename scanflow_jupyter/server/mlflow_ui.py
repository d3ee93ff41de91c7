"""The MLflow UI behind the sidebar's "Open in MLflow" links (`POST mlflow-ui`).

A local store (the project's `.scanflow/mlflow.db`, or any sqlite/file tracking URI) has no UI of
its own: the project's tracker (`scanflow_jupyter.mlflow_server`, MLflow's app, UI included) is started
on demand, bound to 127.0.0.1 on a free port, and reused by later calls (also one that
`scanflow tracker up` or a docker run started). A tracker this server started is stopped when the
server stops (unless a run holds a lease on it: it then outlives the server, see
`scanflow tracker ls|down`). A remote http(s) tracking URI is its own UI: the link is that
server's URL without user-info, query or fragment, so no credential ever lands in a link.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from scanflow_jupyter import mlflow_server as tracker
from scanflow_jupyter.mlflow_server import registry
from scanflow_jupyter.redact import redact_uri

log = logging.getLogger(__name__)


class MlflowUiError(RuntimeError):
    """No UI can be offered for this tracking URI; `status` is the HTTP status, `fix` what to do."""

    def __init__(self, status: int, message: str, fix: str) -> None:
        super().__init__(message)
        self.status, self.message, self.fix = status, message, fix


@dataclass
class UiAnswer:
    url: str  # the UI's base URL (no trailing slash); links append `/#/experiments/<id>/runs/<id>`
    remote: bool  # the tracking URI's own server (nothing was started)
    started: bool  # this call started the process
    pid: int | None  # the local UI process (None when remote)

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "remote": self.remote, "started": self.started, "pid": self.pid}


def public_url(uri: str) -> str:
    """`uri` (http or https) as a link: scheme, host, port and path only (no credentials)."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


class MlflowUi:
    """Starts (once) and stops the local MLflow UI of one project folder (`home`)."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.owned: tracker.TrackerInfo | None = None  # the tracker this server started
        self._lock = threading.Lock()

    def open(self, tracking_uri: str) -> UiAnswer:
        """The UI of `tracking_uri`, started when needed (blocking: call it in a thread)."""
        scheme = urlsplit(tracking_uri).scheme.lower() if "://" in tracking_uri else ""
        if scheme in ("http", "https"):
            return UiAnswer(public_url(tracking_uri), remote=True, started=False, pid=None)
        if not tracker.is_local_store(tracking_uri):
            raise MlflowUiError(400, f"the tracking URI {redact_uri(tracking_uri)} has no MLflow UI Scanflow can open "
                                f"(scheme '{scheme}')",
                                "open your MLflow UI yourself, or set the tracking URI to an http(s) MLflow server "
                                "or a local store (sqlite:///..., a folder)")
        with self._lock:
            before = tracker.status(self.home)
            try:
                info = tracker.up(self.home, backend_store_uri=tracking_uri)
            except tracker.TrackerError as exc:
                raise MlflowUiError(409, f"the MLflow UI could not be started: {exc}",
                                    "stop the other tracker with `scanflow tracker down`, or set the tracking URI "
                                    "to the store it serves") from None
            started = before is None or before.pid != info.pid
            if started:
                self.owned = info
            return UiAnswer(info.url, remote=False, started=started, pid=info.pid)

    def stop(self) -> None:
        """Stop the tracker this server started (idempotent); one a run holds a lease on is left running."""
        with self._lock:
            owned, self.owned = self.owned, None
            if owned is None:
                return
            running = tracker.status(self.home)
            if running is None or running.pid != owned.pid:
                return  # gone, or replaced by one somebody else started
            if registry.leases_held(self.home):
                log.warning("Scanflow: the MLflow UI (tracker pid %s, %s) stays up: a run holds a lease on it; "
                            "`scanflow tracker down` stops it", owned.pid, owned.url)
                return
            tracker.down(self.home)


def stop_with_server(serverapp: Any, stop: Any) -> None:
    """Call `stop()` when `serverapp` shuts down (its extension clean-up), and at interpreter exit."""
    import atexit

    original = serverapp.cleanup_extensions

    async def cleanup_extensions() -> None:
        try:
            stop()
        except Exception as exc:  # noqa: BLE001 - shutting down: say it, go on
            log.warning("Scanflow: could not stop the MLflow UI: %s", exc)
        await original()

    serverapp.cleanup_extensions = cleanup_extensions
    ref = weakref.WeakMethod(stop) if hasattr(stop, "__self__") else (lambda: stop)

    def at_exit() -> None:  # a server killed by a signal it does not handle never gets here
        method = ref()
        if method is not None:
            method()

    atexit.register(at_exit)
