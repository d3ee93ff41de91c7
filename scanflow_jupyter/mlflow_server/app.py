"""The tracker process: MLflow's tracking app served in-process by uvicorn, with a watchdog.

    python -m scanflow_jupyter.mlflow_server.app --home DIR --store URI --artifacts DIR --port N
        [--idle-timeout SECONDS] [--poll SECONDS]

One process instead of the ten of ``mlflow server`` (CLI parent, uvicorn, MLflow 3's job runner
and seven huey consumers, ≈1.3 GB PSS): the same FastAPI app and store initialisation, with
MLflow's job execution off (Scanflow submits no server-side jobs). A watchdog thread stops the
server (graceful uvicorn shutdown) when

* its project folder (``--home``) disappears or is replaced, or its sqlite store file does;
* no HTTP request came for ``--idle-timeout`` seconds (0 = never) and no live process holds a
  lease (see `mlflow_server.registry`); requests carrying the ``X-Scanflow-Probe`` header (health
  checks of `scanflow tracker status|ls`) do not count as activity.

It records itself in the per-user registry and removes that entry (and ``<home>/tracker.json``
when it names this process) on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from scanflow_jupyter.mlflow_server import registry

PROBE_HEADER = b"x-scanflow-probe"
DEFAULT_POLL = 5.0


class Activity:
    """ASGI middleware: the monotonic time of the last request, and how many are in flight."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last = time.monotonic()
        self.in_flight = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        counted = scope.get("type") in ("http", "websocket") and not any(
            name == PROBE_HEADER for name, _ in scope.get("headers", []))
        if not counted:
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        self.last = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.last = time.monotonic()

    def idle_for(self) -> float:
        return 0.0 if self.in_flight else time.monotonic() - self.last


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _sqlite_file(store: str) -> Path | None:
    if not store.lower().startswith("sqlite:///"):
        return None
    return Path(store[len("sqlite:///"):].split("?", 1)[0])


class Watchdog(threading.Thread):
    """Polls the folder, the store file, idleness and leases; asks the server to stop."""

    def __init__(self, server: Any, activity: Activity, entry: registry.Entry, poll: float) -> None:
        super().__init__(name="scanflow-tracker-watchdog", daemon=True)
        self.server, self.activity, self.entry, self.poll = server, activity, entry, poll
        self.home = Path(entry.home)
        self.home_id = _identity(self.home)
        self.db = _sqlite_file(entry.backend_store_uri)
        self.db_id = _identity(self.db) if self.db else None
        self.reason = ""
        self._recorded = entry.last_activity

    def gone(self) -> str:
        """Why this tracker's store is gone, or ''."""
        if _identity(self.home) != self.home_id:
            return f"its project folder {self.home} was removed"
        if self.db_id is not None and _identity(self.db) != self.db_id:  # type: ignore[arg-type]
            return f"its store {self.db} was removed"
        return ""

    def idle(self) -> bool:
        timeout = self.entry.idle_timeout
        return timeout > 0 and self.activity.idle_for() >= timeout and registry.leases_held(self.home) == 0

    def run(self) -> None:
        while not self.server.should_exit:
            time.sleep(self.poll)
            self.reason = self.gone()
            if not self.reason and self.idle() and self._stop_if_still_idle():
                self.reason = f"no request for {self.entry.idle_timeout:g}s (idle timeout)"
            if self.reason:
                print(f"scanflow tracker (pid {os.getpid()}): stopping: {self.reason}", flush=True)
                self.server.should_exit = True
                return
            self._refresh_entry()

    def _stop_if_still_idle(self) -> bool:
        """Under the project's tracker lock (which `tracker.up` holds while it reuses a tracker),
        check again and withdraw `<home>/tracker.json`, so nobody is handed a stopping tracker."""
        try:
            with (self.home / "tracker.lock").open("a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                if not self.idle():
                    return False
                _withdraw_record(self.home)
                return True
        except OSError:
            return True  # the folder went away meanwhile

    def _refresh_entry(self) -> None:
        wall = time.time() - self.activity.idle_for()
        if wall - self._recorded >= min(self.poll, 5.0):
            self.entry.last_activity = self._recorded = wall
            with contextlib.suppress(OSError):
                registry.write(self.entry)


def _withdraw_record(home: Path) -> None:
    """Remove `<home>/tracker.json` if it names this process."""
    path = home / "tracker.json"
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _configure_mlflow(store: str, artifacts: str) -> Any:
    """What `mlflow server` does before it spawns uvicorn, minus the job runner; returns the app."""
    os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    os.environ.setdefault("MLFLOW_ENABLE_WORKSPACES", "false")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from mlflow.server.constants import (
        ARTIFACT_ROOT_ENV_VAR,
        ARTIFACTS_DESTINATION_ENV_VAR,
        BACKEND_STORE_URI_ENV_VAR,
        REGISTRY_STORE_URI_ENV_VAR,
        SERVE_ARTIFACTS_ENV_VAR,
    )
    from mlflow.utils.server_cli_utils import resolve_default_artifact_root

    artifact_root = resolve_default_artifact_root(True, None, store)
    os.environ.update({
        BACKEND_STORE_URI_ENV_VAR: store, REGISTRY_STORE_URI_ENV_VAR: store, ARTIFACT_ROOT_ENV_VAR: artifact_root,
        SERVE_ARTIFACTS_ENV_VAR: "true", ARTIFACTS_DESTINATION_ENV_VAR: artifacts,
        "_MLFLOW_SGI_NAME": "uvicorn", "_MLFLOW_SERVER_BOOT_ID": uuid.uuid4().hex, "_MLFLOW_IN_JOB_EXECUTOR": "false",
    })
    from mlflow.server.handlers import initialize_backend_stores

    initialize_backend_stores(store, store, artifact_root)
    from mlflow.server.fastapi_app import app

    return app


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    home = Path(args.home).absolute()
    app = _configure_mlflow(args.store, args.artifacts)
    activity = Activity(app)
    log_config = Path(sys.modules["mlflow.server"].__file__ or "").parent / "uvicorn_log_config.yaml"
    config = uvicorn.Config(activity, host=args.host, port=args.port, workers=1, lifespan="auto",
                            log_config=str(log_config) if log_config.is_file() else None)
    server = uvicorn.Server(config)
    entry = registry.Entry(pid=os.getpid(), port=args.port, url=f"http://{args.host}:{args.port}", home=str(home),
                           backend_store_uri=args.store, log=str(home / "tracker.log"), started_at=time.time(),
                           idle_timeout=max(0.0, args.idle_timeout))
    registry.write(entry)
    watchdog = Watchdog(server, activity, entry, max(0.05, args.poll))
    watchdog.start()
    try:
        server.run()
    finally:
        registry.remove(os.getpid())
        if home.is_dir():
            _withdraw_record(home)
    return 0 if server.started or watchdog.reason else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scanflow_jupyter.mlflow_server.app", description=__doc__.split("\n")[0])
    parser.add_argument("--home", required=True, help="the project's Scanflow folder (watched)")
    parser.add_argument("--store", required=True, help="backend store URI (sqlite:///... or a path)")
    parser.add_argument("--artifacts", required=True, help="artifacts destination folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle-timeout", type=float, default=0.0, help="seconds without requests before stopping (0: never)")
    parser.add_argument("--poll", type=float, default=float(os.environ.get("SCANFLOW_TRACKER_POLL") or DEFAULT_POLL),
                        help="watchdog interval in seconds (default: $SCANFLOW_TRACKER_POLL or 5)")
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
