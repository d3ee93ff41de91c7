"""Every sensor and actuator call, logged as one MLflow run in experiment `<app>-agents`.

Calls are queued and written by a background thread through an explicit `MlflowClient`
(`tracking.Recorder`), so a slow or unavailable tracking store never delays a sensor. A call
that cannot be logged is kept (up to `MAX_BACKLOG`) and retried with backoff, so the calls made
while the store was briefly unavailable appear once it is back.

Run layout: run name `<agent>.<name>`; tags `scanflow.app`, `scanflow.agent`, `scanflow.kind`
(`sensor` | `actuator`), `scanflow.call` (its name), `scanflow.trigger`, `scanflow.status`
(`ok` | `error`), `scanflow.error`, `scanflow.result` (JSON), `scanflow.caller`; params
`input.*` (JSON); metrics `duration_s` and `value` (when the result is a number). Status
FINISHED, or FAILED when the call raised.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanflow_jupyter.redact import redact_text, redact_uri, secret_values

__all__ = ["AGENTS_EXPERIMENT_SUFFIX", "CallJournal", "CallRecord", "experiment_name", "open_client"]

AGENTS_EXPERIMENT_SUFFIX = "-agents"
MAX_BACKLOG = 1000
_log = logging.getLogger("scanflow.agents")

TAG_AGENT = "scanflow.agent"
TAG_CALL_KIND = "scanflow.kind"
TAG_CALL = "scanflow.call"
TAG_TRIGGER = "scanflow.trigger"
TAG_CALL_STATUS = "scanflow.status"
TAG_ERROR = "scanflow.error"
TAG_RESULT = "scanflow.result"
TAG_CALLER = "scanflow.caller"


def experiment_name(app: str) -> str:
    return f"{app}{AGENTS_EXPERIMENT_SUFFIX}"


@contextlib.contextmanager
def _file_lock(path: Path | None):
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_import_lock = threading.Lock()


def import_mlflow() -> None:
    """Import mlflow once, on one thread: mlflow's package has import cycles that break when
    two threads import it at the same moment ("partially initialized module")."""
    with _import_lock:
        import mlflow.entities  # noqa: F401
        import mlflow.tracking  # noqa: F401


def open_client(tracking_uri: str, lock_path: Path | None = None) -> Any:
    """An `MlflowClient` for `tracking_uri`; the first store access runs under `lock_path`, so
    several agents starting together never create a fresh sqlite store's tables at once."""
    import_mlflow()
    from mlflow.tracking import MlflowClient

    with _file_lock(lock_path):  # creating the client may create/migrate a sqlite store
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            client.search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - unavailable now; calls report it later
            _log.warning("MLflow store %s not reachable at start: %s", redact_uri(tracking_uri), _one_line(exc))
    return client


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact_text(f"{type(exc).__name__}: {text[0] if text else ''}", secret_values(os.environ))[:500]


@dataclass
class CallRecord:
    """One sensor/actuator call, as it is logged."""

    kind: str  # sensor | actuator
    name: str
    trigger: str
    started: float
    duration_s: float
    ok: bool
    inputs: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    caller: str | None = None
    mlflow_run_id: str | None = None  # set once created, so a retry does not create a second run
    attempts: int = 0


class CallJournal:
    """Queue of calls written to MLflow by one background thread."""

    def __init__(self, tracking_uri: str, app: str, agent: str, *, artifact_root: str | None = None,
                 lock_path: Path | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.app = app
        self.agent = agent
        self.experiment = experiment_name(app)
        self.artifact_root = artifact_root
        self.lock_path = lock_path
        self._pending: deque[CallRecord] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self.logged = 0
        self.dropped = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._recorder: Any = None
        self._thread = threading.Thread(target=self._work, name=f"journal-{agent}", daemon=True)
        self._thread.start()

    # -- producer side

    def record(self, call: CallRecord) -> None:
        """Queue `call` for logging (never blocks; the oldest call is dropped past MAX_BACKLOG)."""
        with self._cond:
            if len(self._pending) >= MAX_BACKLOG:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(call)
            self._cond.notify()

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {"experiment": self.experiment, "logged": self.logged,
                    "pending": len(self._pending) + (1 if self._busy else 0),
                    "dropped": self.dropped, "failures": self.failures,
                    "last_error": self.last_error, "last_error_at": self.last_error_at}

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def close(self, timeout: float = 3.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)

    # -- the writer thread

    def _work(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed and not self._pending:
                    return
                if backoff:
                    self._cond.wait(backoff)
                    if self._closed:
                        return
                call = self._pending.popleft()
                self._busy = True
            try:
                self._write(call)
            except Exception as exc:  # noqa: BLE001 - the store may be down: keep and retry
                call.attempts += 1
                with self._cond:
                    self.failures += 1
                    self.last_error = _one_line(exc)
                    self.last_error_at = time.time()
                    self._pending.appendleft(call)
                    self._busy = False
                    self._cond.notify_all()
                backoff = min(5.0, max(0.25, backoff * 2))
                continue
            backoff = 0.0
            with self._cond:
                self.logged += 1
                self._busy = False
                self._cond.notify_all()

    def _recorder_client(self) -> tuple[Any, str]:
        if self._recorder is None:
            from scanflow_jupyter.tracking import Recorder

            import_mlflow()

            recorder = Recorder(self.tracking_uri, self.artifact_root)
            with _file_lock(self.lock_path):
                # Open, never create (`agents up` created the store): a store that vanished during
                # an outage stays an error here instead of being replaced by an empty one.
                recorder.client.search_experiments(max_results=1)
            self._recorder = recorder
        return self._recorder.client, self._recorder.experiment_id(self.experiment)

    def _write(self, call: CallRecord) -> None:
        client, exp_id = self._recorder_client()
        from mlflow.entities import Metric, Param, RunTag

        from scanflow_jupyter.tracking import TAG_APP

        if call.mlflow_run_id is None:
            tags = {TAG_APP: self.app, TAG_AGENT: self.agent, TAG_CALL_KIND: call.kind,
                    TAG_CALL: call.name, TAG_TRIGGER: call.trigger}
            run = client.create_run(exp_id, start_time=int(call.started * 1000), tags=tags,
                                    run_name=f"{self.agent}.{call.name}")
            call.mlflow_run_id = run.info.run_id
        run_id = call.mlflow_run_id
        tags = {TAG_CALL_STATUS: "ok" if call.ok else "error"}
        if call.error:
            tags[TAG_ERROR] = call.error[:8000]
        if call.caller:
            tags[TAG_CALLER] = call.caller
        result_text = json.dumps(call.result, default=str)
        tags[TAG_RESULT] = result_text[:8000]
        params = {f"input.{k}"[:250]: json.dumps(v, default=str)[:6000] for k, v in call.inputs.items()}
        metrics = {"duration_s": float(call.duration_s)}
        if isinstance(call.result, (int, float)) and not isinstance(call.result, bool):
            metrics["value"] = float(call.result)
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                         params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True)
        client.set_terminated(run_id, status="FINISHED" if call.ok else "FAILED",
                              end_time=int((call.started + call.duration_s) * 1000))


def quiet_mlflow_logs() -> None:
    """MLflow logs a full traceback for every failed store call; the agent reports them itself."""
    for name in ("mlflow.store.db.utils", "mlflow.utils.rest_utils", "alembic"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
