"""Run a `tracking.Recorder` in a child process, so `import mlflow` overlaps with other work.

The parent starts `python -m scanflow_jupyter.runtime.recorder_process` at once; the child
imports mlflow and opens the store while the runner parses notebooks and starts kernels.
Parent and child talk JSON lines: requests on the child's stdin, replies on its stdout (the
child's own stdout and stderr go to a temporary log file, so mlflow prints nothing to the user's
terminal). The child exits when its stdin closes, including when the parent dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from scanflow_jupyter.redact import redact_uri
from scanflow_jupyter.runtime.child_protocol import load_message, write_message
from scanflow_jupyter.tracking import TrackingError, mlflow_status
from scanflow_jupyter.tracking_sync import HTTP_ENV_DEFAULTS

__all__ = ["RecorderProcess"]

_CONFIG_ENV = "_SCANFLOW_RECORDER_CONFIG"
_METHODS = frozenset({"start_pipeline", "start_step", "finish_step", "finish_pipeline", "forward"})
# Fail fast when a tracking server is unreachable or hangs (MLflow's own defaults: 7 retries
# over ~4 min, 120 s per request); only applied when the user has not set these.
_CHILD_ENV_DEFAULTS = HTTP_ENV_DEFAULTS
_STDERR_TAIL_CHARS = 3000
_CLOSE = object()


class _Pending:
    """A blocking call waiting for the child's reply."""

    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: dict[str, Any] | None = None


class RecorderProcess:
    """A `Tracker` whose `Recorder` lives in a child process (started on construction).

    `start_*` block until the child answers and return the MLflow run id; `finish_*` are queued
    and return at once. `close()` flushes the queue, waits for the child to exit and raises
    `TrackingError` listing every call that failed in the child. Thread-safe.
    """

    def __init__(
        self,
        tracking_uri: str,
        artifact_root: str | None = None,
        *,
        call_timeout: float | None = None,
        buffer_for: Mapping[str, str] | None = None,
        warm: bool = False,
    ) -> None:
        """`buffer_for` (`{"run_dir", "home"}`): `tracking_uri` is that run's tracking buffer,
        which the child creates first if needed (`tracking_sync.create_buffer`). `warm`: get the
        child from the warm recorder (`recorder_daemon`) when one is running, so the run does
        not wait for `import mlflow`; else (and when none runs yet: one is started) spawn it."""
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.call_timeout = call_timeout
        # Re-entrant: a signal handler may call in while the main thread holds the lock.
        self._lock = threading.RLock()
        self._next_id = 0
        self._pending: dict[int, _Pending] = {}
        self._queued: dict[int, str] = {}  # fire-and-forget calls not yet answered
        self._failures: list[str] = []
        self._ready = threading.Event()
        self._ready_info: dict[str, Any] = {}
        self._dead: str | None = None  # why the child can no longer answer
        self._closed = False
        self._outbox: queue.Queue[Any] = queue.Queue()
        self._exit_code: int | None = None

        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the child
            prefix="scanflow-recorder-", suffix=".log", delete=False
        )
        self.log_path = Path(self._log.name)
        env = dict(os.environ)
        for key, value in _CHILD_ENV_DEFAULTS.items():
            env.setdefault(key, value)
        config = {
            "tracking_uri": tracking_uri,
            "artifact_root": artifact_root,
            "log_path": str(self.log_path),
            "parent_pid": os.getpid(),
            "buffer_for": dict(buffer_for) if buffer_for else None,
        }
        env[_CONFIG_ENV] = json.dumps(config)
        # Make the package importable in the child when it runs from a source checkout.
        src_root = Path(__file__).resolve().parents[2]
        if src_root.name not in ("site-packages", "dist-packages"):
            parts = (str(src_root), env.get("PYTHONPATH"))
            env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
        env["PYTHONUNBUFFERED"] = "1"
        self._started = time.monotonic()
        self.warm = False
        self._proc: Any = None
        self._daemon_wanted = False  # no warm recorder answered: start one once our child is ready
        if warm:
            from scanflow_jupyter.runtime import recorder_daemon

            self._proc = recorder_daemon.connect(config, {k: v for k, v in env.items() if k != _CONFIG_ENV})
            self.warm = self._proc is not None
            self._daemon_wanted = not self.warm
        if self._proc is None:
            self._proc = self._spawn(env)
        self._reader = threading.Thread(
            target=self._read_replies, name="scanflow-recorder-reader", daemon=True
        )
        self._writer = threading.Thread(
            target=self._write_requests, name="scanflow-recorder-writer", daemon=True
        )
        self._reader.start()
        self._writer.start()

    def _spawn(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "scanflow_jupyter.runtime.recorder_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            close_fds=True,
        )

    # -- public --

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    def wait_ready(self, timeout: float | None = None) -> float | None:
        """Wait until the child has imported mlflow and opened the store; return seconds taken.

        Returns None on timeout. Raises `TrackingError` if the child died or cannot open the store.
        """
        if not self._ready.wait(timeout):
            return None
        if not self._ready_info:
            raise TrackingError(self._dead or "the MLflow recorder process is gone")
        if self._ready_info.get("error"):
            raise TrackingError(self._ready_info["error"])
        return self._ready_info.get("parent_seconds")

    def start_pipeline(
        self,
        app: str,
        run_id: str,
        backend: str,
        notebook: str | Path,
        params: Mapping[str, Any],
        started_at: float | None = None,
    ) -> str:
        """Create the parent run of a pipeline run; return its MLflow run id (blocks)."""
        safe_params = {str(k): str(v) for k, v in params.items()}
        return self._call(
            "start_pipeline",
            {
                "app": app,
                "run_id": run_id,
                "backend": backend,
                "notebook": str(notebook),
                "params": safe_params,
                "started_at": None if started_at is None else float(started_at),
            },
        )

    def start_step(self, parent_mlflow_id: str, app: str, run_id: str, step: str,
                   started_at: float | None = None) -> str:
        """Create the nested run of a step; return its MLflow run id (blocks)."""
        return self._call(
            "start_step",
            {"parent_mlflow_id": parent_mlflow_id, "app": app, "run_id": run_id, "step": step,
             "started_at": None if started_at is None else float(started_at)},
        )

    def finish_step(
        self,
        mlflow_id: str,
        status: str,
        attempts: int,
        cache_hit: bool,
        duration_s: float | None = None,
        artifacts: Iterable[str | Path] = (),
        error: Mapping[str, Any] | None = None,
        cached_from: str | None = None,
        finished_at: float | None = None,
        reused_step: str | None = None,
        pipeline_metrics: Iterable[str] = (),
        parent_mlflow_id: str | None = None,
    ) -> None:
        """Queue: log a step's artifacts, tags and metrics, then terminate its run (failures at `close`)."""
        mlflow_status(status)  # reject unknown words here, not in the child
        self._cast(
            "finish_step",
            {
                "mlflow_id": mlflow_id,
                "status": status,
                "attempts": int(attempts),
                "cache_hit": bool(cache_hit),
                "duration_s": None if duration_s is None else float(duration_s),
                "artifacts": [str(Path(a).absolute()) for a in artifacts],
                "error": None
                if error is None
                else {k: _jsonable(error.get(k)) for k in ("cell", "ename", "evalue")},
                "cached_from": cached_from,
                "finished_at": None if finished_at is None else float(finished_at),
                "reused_step": reused_step,
                "pipeline_metrics": [str(n) for n in pipeline_metrics],
                "parent_mlflow_id": parent_mlflow_id,
            },
            f"finish_step({mlflow_id}, {status})",
        )

    def finish_pipeline(self, mlflow_id: str, status: str, duration_s: float | None = None) -> None:
        """Queue: tag and terminate the pipeline run (failures are raised by `close`)."""
        mlflow_status(status)
        self._cast(
            "finish_pipeline",
            {
                "mlflow_id": mlflow_id,
                "status": status,
                "duration_s": None if duration_s is None else float(duration_s),
            },
            f"finish_pipeline({mlflow_id}, {status})",
        )

    def forward(self, target_uri: str, artifact_root: str | None = None) -> dict[str, Any]:
        """Deliver the buffer (`buffer_for`) to `target_uri` (blocks; `tracking_sync.forward`'s
        report). The URI travels on the child's stdin, never in its argv."""
        return self._call("forward", {"target_uri": target_uri, "artifact_root": artifact_root})

    def close(self, timeout: float | None = 60.0) -> None:
        """Flush queued calls, wait for the child to exit; raise `TrackingError` if any failed."""
        with self._lock:
            first = not self._closed
            self._closed = True
        if first:
            self._outbox.put(_CLOSE)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            self._note_dead(f"did not finish within {timeout} s and was killed")
        self._writer.join()
        self._reader.join()
        self._log.close()
        with self._lock:
            failures = list(self._failures)
        code = self._proc.returncode
        if code not in (0, None) and not failures:
            failures.append(f"the recorder process exited with code {code}")
        if failures:
            raise TrackingError(
                "MLflow recording failed:\n  - "
                + "\n  - ".join(failures)
                + f"\nRecorder log: {self.log_path}"
                + _tail_block(self.log_path)
            )
        with contextlib.suppress(OSError):
            self.log_path.unlink()

    def __enter__(self) -> RecorderProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests --

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _call(self, method: str, args: dict[str, Any]) -> Any:
        pending = _Pending()
        with self._lock:
            self._check_usable()
            rid = self._new_id()
            self._pending[rid] = pending
            self._outbox.put({"id": rid, "method": method, "args": args})
        if not pending.event.wait(self.call_timeout):
            with self._lock:
                self._pending.pop(rid, None)
            raise TrackingError(
                f"MLflow recorder did not answer {method} within {self.call_timeout} s"
                f" (store {redact_uri(self.tracking_uri)!r}); log: {self.log_path}"
            )
        reply = pending.reply or {}
        if reply.get("ok"):
            return reply.get("result")
        raise TrackingError(reply.get("error") or f"{method} failed in the recorder process")

    def _cast(self, method: str, args: dict[str, Any], label: str) -> None:
        with self._lock:
            self._check_usable()
            rid = self._new_id()
            self._queued[rid] = label
            self._outbox.put({"id": rid, "method": method, "args": args})

    def _check_usable(self) -> None:
        if self._closed:
            raise TrackingError("the MLflow recorder process is closed")
        if self._dead:
            raise TrackingError(self._dead)

    # -- threads --

    def _write_requests(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        while True:
            item = self._outbox.get()
            if item is _CLOSE:
                break
            try:
                write_message(stdin, item)
                stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                # The child is gone: the reader reports it; drain until close.
                continue
        with contextlib.suppress(BrokenPipeError, OSError):
            stdin.close()

    def _read_replies(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        for raw in stdout:
            try:
                msg = load_message(raw)
            except ValueError:
                continue
            if msg.get("event") == "exit":  # a warm child's last word (a spawned one has an exit code)
                self._exit_code = msg.get("code")
                continue
            if msg.get("event") == "ready":
                msg["parent_seconds"] = time.monotonic() - self._started
                self._ready_info = msg
                self._ready.set()
                if self._daemon_wanted:
                    from scanflow_jupyter.runtime import recorder_daemon

                    recorder_daemon.start_daemon()
                continue
            rid = msg.get("id")
            with self._lock:
                pending = self._pending.pop(rid, None)
                label = self._queued.pop(rid, None)
                if label is not None and not msg.get("ok"):
                    self._failures.append(f"{label}: {msg.get('error')}")
            if pending is not None:
                pending.reply = msg
                pending.event.set()
        if self.warm:
            self._proc.saw_eof(self._exit_code)
        code = self._proc.wait()
        self._note_dead(f"exited with code {code}")

    def _note_dead(self, how: str) -> None:
        with self._lock:
            if self._dead is None:
                expected = self._closed and self._proc.returncode == 0
                self._dead = (
                    f"the MLflow recorder process {how}"
                    + ("" if expected else f" (store {redact_uri(self.tracking_uri)!r}; log: {self.log_path})")
                    + ("" if expected else _tail_block(self.log_path))
                )
            reason = self._dead
            pending = list(self._pending.values())
            self._pending.clear()
            for label in self._queued.values():
                self._failures.append(f"{label}: not recorded, {reason}")
            self._queued.clear()
        self._ready.set()
        for p in pending:
            p.reply = {"ok": False, "error": reason}
            p.event.set()


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _tail_block(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    text = text.strip()
    if not text:
        return ""
    from scanflow_jupyter.redact import process_secrets, redact_text

    tail = redact_text(text[-_STDERR_TAIL_CHARS:], process_secrets())
    return "\n--- recorder log (tail) ---\n" + tail


# --- child side -------------------------------------------------------------------------------


def _child_main() -> int:
    """Serve Recorder calls read from stdin until it closes."""
    # Ctrl-C in the terminal reaches the whole process group; the parent decides when we stop
    # (it still has "killed" statuses to record). Closing stdin ends us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Keep the protocol on a private copy of stdout; anything printed goes to the log file.
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    config = json.loads(os.environ.pop(_CONFIG_ENV, "{}"))
    serve_calls(config, sys.stdin.buffer, proto)
    if config.get("parent_pid") and os.getppid() != config["parent_pid"]:
        # Our parent died without closing us: nobody will read or delete the log.
        with contextlib.suppress(OSError):
            os.unlink(config["log_path"])
    return 0


def serve_calls(config: Mapping[str, Any], inp: Any, proto: Any) -> None:
    """Open the store, say `ready`, then answer each request line of `inp` on `proto` until EOF
    (the child's loop; `recorder_daemon` runs it in its forked children too)."""

    def send(msg: dict[str, Any]) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            write_message(proto, msg)

    started = time.monotonic()
    from scanflow_jupyter.tracking import Recorder

    recorder = Recorder(config.get("tracking_uri", ""), config.get("artifact_root"))
    buffer_for = config.get("buffer_for")
    warm_error = None
    try:
        if buffer_for:
            from scanflow_jupyter.tracking_sync import create_buffer

            create_buffer(buffer_for["run_dir"], buffer_for["home"])
        recorder.warm_up()  # import mlflow + open/create the store, before any request
    except Exception as exc:  # noqa: BLE001 - reported to the parent as the ready error
        warm_error = str(exc) if isinstance(exc, TrackingError) else f"tracking buffer: {type(exc).__name__}: {exc}"
        print(f"scanflow recorder: {warm_error}", file=sys.stderr, flush=True)
    send({"event": "ready", "seconds": time.monotonic() - started, "error": warm_error})

    while True:
        raw = inp.readline()
        if not raw:
            break
        rid = None
        try:
            req = load_message(raw)
            rid = req.get("id")
            method = req.get("method")
            if method not in _METHODS:
                raise ValueError(f"unknown recorder method {method!r}")
            if method == "forward":
                from scanflow_jupyter.tracking_sync import forward

                result = forward(buffer_for["run_dir"], **req.get("args", {}))
            else:
                result = getattr(recorder, method)(**req.get("args", {}))
            send({"id": rid, "ok": True, "result": result})
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            message = str(exc) if isinstance(exc, TrackingError) else f"{type(exc).__name__}: {exc}"
            send({"id": rid, "ok": False, "error": message})


if __name__ == "__main__":
    _code = _child_main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Every call is synchronous and already committed: skip the ~1 s interpreter teardown
    # of mlflow's module graph.
    os._exit(_code)
